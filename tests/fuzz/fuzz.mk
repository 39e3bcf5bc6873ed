# Fuzz targets (libFuzzer, clang) and the unit-test links that need daemon
# objects. `make fuzz` builds build-fuzz/fuzz-*; tests/run.sh runs each for
# a bounded time on tests/fuzz/corpus/<name>/.

FUZZ_BUILD := build-fuzz
FUZZ_CFLAGS := -std=gnu17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-D_GNU_SOURCE -Ilib -Iinclude

fuzz: $(FUZZ_BUILD)/fuzz-config $(FUZZ_BUILD)/fuzz-proto $(FUZZ_BUILD)/fuzz-pool

$(FUZZ_BUILD)/fuzz-config: tests/fuzz/fuzz-config.c daemon/config.c daemon/config.h lib/proto.h lib/heap/heap.h
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) $$($(PKG_CONFIG) --cflags inih) tests/fuzz/fuzz-config.c daemon/config.c \
		-o $@ $$($(PKG_CONFIG) --libs inih)

$(FUZZ_BUILD)/fuzz-proto: tests/fuzz/fuzz-proto.c lib/proto.c lib/proto.h
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) tests/fuzz/fuzz-proto.c lib/proto.c -o $@

# The daemon's work on a pool (poolwork.c) over a meta region scribbled on between operations.
FUZZ_POOL_SRCS := daemon/poolwork.c daemon/pacer.c $(filter-out lib/heap/testing.c,$(sort $(wildcard lib/heap/*.c)))
$(FUZZ_BUILD)/fuzz-pool: tests/fuzz/fuzz-pool.c $(FUZZ_POOL_SRCS) daemon/poolwork.h daemon/pacer.h $(wildcard lib/heap/*.h) lib/macro.h
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -pthread -Idaemon tests/fuzz/fuzz-pool.c $(FUZZ_POOL_SRCS) -o $@ -lm

# test-config links the parser itself (daemon objects are not in libscav).
$(BUILD)/tests/unit/test-config: $(BUILD)/tests/unit/test-config.o $(BUILD)/daemon/config.o $(TESTLIB_OBJS) $(LIBSCAV_A)
	$(CC) -o $@ $< $(BUILD)/daemon/config.o $(TESTLIB_OBJS) $(LIBSCAV_A) $(ALL_LDFLAGS) $(PKG_LIBS) -lm

# test-access links the access check (and config.o for pool_config_defaults).
$(BUILD)/tests/unit/test-access: $(BUILD)/tests/unit/test-access.o $(BUILD)/daemon/access.o $(BUILD)/daemon/config.o $(TESTLIB_OBJS) $(LIBSCAV_A)
	$(CC) -o $@ $< $(BUILD)/daemon/access.o $(BUILD)/daemon/config.o $(TESTLIB_OBJS) $(LIBSCAV_A) $(ALL_LDFLAGS) $(PKG_LIBS) -lm
