# BPF programs of the daemon (issue 6), included by the Makefile before the
# scavd link rule.
#
#   $(BUILD)/vmlinux.h          the running kernel's types, from its BTF (CO-RE)
#   $(BUILD)/daemon/bpf/*.bpf.o programs (clang -target bpf)
#   $(BUILD)/*.skel.h           libbpf skeletons embedding those objects
#
# The skeletons carry the BPF objects inside kernel.o, so nothing extra is
# linked into scavd (BPF_DAEMON_OBJS stays empty).

BPFTOOL ?= bpftool
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -I$(BUILD) -Idaemon/bpf

BPF_SRCS := $(sort $(wildcard daemon/bpf/*.bpf.c))
BPF_OBJS := $(BPF_SRCS:%.c=$(BUILD)/%.o)
BPF_SKELS := $(patsubst daemon/bpf/%.bpf.c,$(BUILD)/%.skel.h,$(BPF_SRCS))
BPF_DAEMON_OBJS +=

# Without BTF to build CO-RE programs against (or without bpftool/clang):
# a skeleton whose open fails, so that the daemon still builds and falls
# back at run time. `make deps` installs bpftool and clang.
BPF_MISSING := $(if $(wildcard $(VMLINUX_BTF)),,$(VMLINUX_BTF)) \
	$(if $(shell command -v $(BPFTOOL) 2>/dev/null),,$(BPFTOOL)) \
	$(if $(shell command -v $(CLANG) 2>/dev/null),,$(CLANG))
ifneq ($(strip $(BPF_MISSING)),)
$(info bpf.mk: no $(strip $(BPF_MISSING)): building scavd without BPF programs)
$(BUILD)/kernel.skel.h: daemon/bpf/kernel-nobtf.skel.h
	@mkdir -p $(dir $@)
	cp $< $@
else
$(BUILD)/vmlinux.h:
	@mkdir -p $(dir $@)
	$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@.tmp && mv $@.tmp $@

$(BUILD)/daemon/bpf/%.bpf.o: daemon/bpf/%.bpf.c daemon/bpf/kernel-abi.h $(BUILD)/vmlinux.h
	@mkdir -p $(dir $@)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# Skeleton struct names: kernel.bpf.c -> struct kernel_bpf, kernel_bpf__open() ...
$(BUILD)/%.skel.h: $(BUILD)/daemon/bpf/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $*_bpf > $@.tmp && mv $@.tmp $@
endif

.SECONDARY: $(BPF_OBJS)

$(BUILD)/daemon/kernel.o: $(BPF_SKELS)

# Tests of kernel.c alone link daemon/kernel.o and log.o with libsystemd and
# libbpf (the generic integration-test rule links neither).
KERNEL_TEST_BINS := $(patsubst %.c,$(BUILD)/%,$(wildcard tests/integration/test-kernel-faults.c \
	tests/integration/test-kernel-pressure-*.c tests/integration/test-kernel-fallback.c))
KERNEL_TEST_OBJS := $(BUILD)/daemon/kernel.o $(BUILD)/daemon/log.o
$(KERNEL_TEST_BINS): $(BUILD)/%: $(BUILD)/%.o $(KERNEL_TEST_OBJS)
	$(CC) -o $@ $< $(KERNEL_TEST_OBJS) $(ALL_LDFLAGS) $(PKG_LIBS) -lm

# End-to-end tests against the real daemon also link the test library and
# libscav (a client), and kernel.o to time the kernel's events themselves.
KERNEL_DAEMON_TEST_BINS := $(patsubst %.c,$(BUILD)/%,$(wildcard tests/integration/test-kernel-daemon-*.c))
$(KERNEL_DAEMON_TEST_BINS): $(BUILD)/%: $(BUILD)/%.o $(KERNEL_TEST_OBJS) $(TESTLIB_OBJS) $(LIBSCAV_A)
	$(CC) -o $@ $< $(KERNEL_TEST_OBJS) $(TESTLIB_OBJS) $(LIBSCAV_A) $(ALL_LDFLAGS) $(PKG_LIBS) -lm
