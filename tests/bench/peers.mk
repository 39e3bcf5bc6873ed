# Side-by-side benchmarks against the peers (issue 7): glibc, jemalloc,
# tcmalloc, Boost.Interprocess, a memfd per allocation, Go 1.19's scavenger,
# jemalloc's background thread. `make bench` runs them through bench-run;
# tests/bench/peer-bench.py runs every driver several times and writes
# docs/benchmarks.md and the plots in docs/.
#
# Binaries go to $(BUILD)/bench-peers/, built by the explicit rules below
# (never sanitized: these measure speed). Not part of `make check`.

PEER_DIR := $(BUILD)/bench-peers
PEER_CFLAGS = $(BASE_CFLAGS) $(CFLAGS)
PEER_CXXFLAGS = -std=gnu++17 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE -pthread \
	-Iinclude $(CXXFLAGS)
PEER_LIBS = -pthread -lm
CXX ?= g++
GO ?= go

PEER_ALLOC_C := glibc jemalloc tcmalloc memfd scav
PEER_BINS := $(PEER_ALLOC_C:%=$(PEER_DIR)/alloc-%) $(PEER_DIR)/alloc-boost \
	$(PEER_DIR)/release $(PEER_DIR)/floor $(PEER_DIR)/scale \
	$(PEER_DIR)/trace-scav $(PEER_DIR)/trace-jemalloc $(PEER_DIR)/trace-go

.PHONY: bench-peers bench-peers-bins
bench-peers-bins: $(PEER_BINS)

# The daemon the scavd rows run against is the one `make all` built in $(BUILD).
bench-peers: bench-peers-bins $(BUILD)/scavd $(BUILD)/scavctl
	python3 tests/bench/peer-bench.py --build $(BUILD) --out docs/benchmarks.md

bench-run: bench-peers

# What each guarantee of libscav's fast path costs, against tcmalloc
# (docs/bench-ablation.md, issue 13). Not part of bench-run: it builds
# seven copies of the driver and runs each under callgrind.
.PHONY: bench-ablation
bench-ablation: bench-deps $(PEER_DIR)/alloc-tcmalloc $(BUILD)/scavd
	/usr/bin/python3 tests/bench/fast-ablation.py --build $(BUILD) --out docs/bench-ablation.md

PEER_LOOP_H := tests/bench/peer-alloc-loop.h

$(PEER_DIR)/alloc-glibc: tests/bench/peer-alloc-glibc.c $(PEER_LOOP_H)
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) -o $@ $< $(PEER_LIBS)

$(PEER_DIR)/alloc-memfd: tests/bench/peer-alloc-memfd.c $(PEER_LOOP_H)
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) -o $@ $< $(PEER_LIBS)

$(PEER_DIR)/alloc-jemalloc: tests/bench/peer-alloc-jemalloc.c $(PEER_LOOP_H)
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) $$($(PKG_CONFIG) --cflags jemalloc) -o $@ $< \
		$$($(PKG_CONFIG) --libs jemalloc) $(PEER_LIBS)

$(PEER_DIR)/alloc-tcmalloc: tests/bench/peer-alloc-tcmalloc.c $(PEER_LOOP_H)
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) -fno-builtin-malloc -fno-builtin-free $$($(PKG_CONFIG) --cflags libtcmalloc_minimal) \
		-o $@ $< $$($(PKG_CONFIG) --libs libtcmalloc_minimal) $(PEER_LIBS)

$(PEER_DIR)/alloc-scav: tests/bench/peer-alloc-scav.c $(PEER_LOOP_H) $(LIBSCAV_A)
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) -o $@ $< $(LIBSCAV_A) $(PEER_LIBS)

$(PEER_DIR)/alloc-boost: tests/bench/peer-alloc-boost.cc $(PEER_LOOP_H)
	@mkdir -p $(dir $@)
	$(CXX) $(PEER_CXXFLAGS) -o $@ $< -lrt $(PEER_LIBS)

$(PEER_DIR)/release: tests/bench/peer-release.c tests/bench/peer-util.h $(LIBSCAV_A)
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) -o $@ $< $(LIBSCAV_A) $(PEER_LIBS)

$(PEER_DIR)/floor: tests/bench/peer-floor.c tests/bench/peer-util.h
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) -o $@ $< $(PEER_LIBS)

$(PEER_DIR)/scale: tests/bench/peer-scale.c tests/bench/peer-util.h $(LIBSCAV_A)
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) -o $@ $< $(LIBSCAV_A) $(PEER_LIBS)

$(PEER_DIR)/trace-scav: tests/bench/peer-trace-scav.c tests/bench/peer-trace-loop.h tests/bench/peer-util.h $(LIBSCAV_A)
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) -o $@ $< $(LIBSCAV_A) $(PEER_LIBS)

$(PEER_DIR)/trace-jemalloc: tests/bench/peer-trace-jemalloc.c tests/bench/peer-trace-loop.h tests/bench/peer-util.h
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) $$($(PKG_CONFIG) --cflags jemalloc) -o $@ $< \
		$$($(PKG_CONFIG) --libs jemalloc) $(PEER_LIBS)

# Go 1.19 from Debian (golang-go); standard library only, no module, no network.
$(PEER_DIR)/trace-go: tests/bench/peer-trace.go
	@mkdir -p $(dir $@)
	cd tests/bench && GO111MODULE=off GOFLAGS= GOCACHE=$(abspath $(PEER_DIR))/go-cache \
		$(GO) build -o $(abspath $@) peer-trace.go
