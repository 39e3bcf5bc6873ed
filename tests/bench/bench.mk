# Benchmarks (not tests: `make check` never runs them). `make bench` builds
# everything and runs `bench-run`, which depends on one run target per
# benchmark. A benchmark adds its binary to BENCH_BINS (built optimized, never
# sanitized) and its run target as a prerequisite of bench-run.

BENCH_DIR := $(BUILD)/tests/bench
BENCH_CFLAGS = $(BASE_CFLAGS) -O3 -DNDEBUG $(CFLAGS)

BENCH_BINS += $(BENCH_DIR)/bench-heap

.PHONY: bench-run bench-bins bench-heap
bench-bins: $(BENCH_BINS)

# Heap core (issue 2): cache and locked alloc+free, 1 GiB vs 1 TiB pools,
# scavenger vs raw punch-hole, metadata overhead.
$(BENCH_DIR)/bench-heap: tests/bench/bench-heap.c lib/heap/heap.h $(LIBSCAV_A)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(LIBSCAV_A) -pthread -lm

bench-heap: $(BENCH_DIR)/bench-heap
	$<

bench-run: bench-heap
