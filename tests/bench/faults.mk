# Fault accounting overhead (issue 6): bench-faults times a page-fault-heavy
# loop with and without the BPF programs attached, in one run. Links the
# daemon's kernel.o (and log.o) with libsystemd and libbpf.
BENCH_BINS += $(BENCH_DIR)/bench-faults

$(BENCH_DIR)/bench-faults: tests/bench/bench-faults.c $(BUILD)/daemon/kernel.o $(BUILD)/daemon/log.o
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(PKG_CFLAGS) -o $@ $< $(BUILD)/daemon/kernel.o $(BUILD)/daemon/log.o \
		-pthread $(PKG_LIBS) -lm

.PHONY: bench-faults
bench-faults: $(BENCH_DIR)/bench-faults
	$<

bench-run: bench-faults
