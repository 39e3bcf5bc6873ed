# scavd — build, test, install, demo.
#
#   make            build everything into build/
#   make check      every test: plain build, then ASan+UBSan build (build-san/)
#   make demo       run the daemon with the default configuration and a demo client
#   make bench      benchmarks against the peers; writes docs/benchmarks.md
#   make install    DESTDIR= PREFIX= (default /usr/local), LIBDIR= ... (below)
#   make uninstall  the same variables: removes what install put
#   make deps       install missing build dependencies with apt-get
#
# For a distribution build: CPPFLAGS, CFLAGS and LDFLAGS are honoured (after
# ours, so they win), WERROR=0 keeps warnings warnings, and the directories
# below can be set one by one, e.g. for Debian
#   make WERROR=0 PREFIX=/usr LIBDIR=/usr/lib/$(DEB_HOST_MULTIARCH)
#   make install DESTDIR=debian/tmp PREFIX=/usr LIBDIR=/usr/lib/$(DEB_HOST_MULTIARCH)

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/scavd
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SYSCONFDIR ?= /etc
BUILD ?= build
SAN ?= 0
WERROR ?= 1

CC ?= cc
CLANG ?= clang
PKG_CONFIG ?= pkg-config

# The version of scavd, libscav, scavctl and the man pages: change it here.
# include/scav.h's SCAV_VERSION_MAJOR/MINOR must agree (the build says so
# if they do not). SO_VERSION/SO_MINOR are the library's ABI, not this.
VERSION := 0.1
VERSION_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
VERSION_MINOR := $(word 2,$(subst ., ,$(VERSION)))
SO_VERSION := 0
SO_MINOR := 0.1

# Debian packages a build and `make check` need (binary -> package pairs are in deps).
DEB_BUILD := gcc make pkg-config clang bpftool libsystemd-dev libinih-dev libbpf-dev \
	libclang-rt-14-dev systemd libcap2-bin util-linux procps python3 zsh
DEB_BENCH := libjemalloc-dev libgoogle-perftools-dev libboost-dev golang-go gnuplot-nox valgrind linux-perf

PKGS := libsystemd inih libbpf
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra $(if $(filter 0,$(WERROR)),,-Werror) -Wno-unused-parameter -Wshadow \
	-Wstrict-prototypes -Wmissing-prototypes
BASE_CFLAGS := -std=gnu17 $(WARN) -g -O2 -fPIC -D_GNU_SOURCE -pthread -Ilib -Iinclude -I$(BUILD)
ifeq ($(SAN),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
endif
ALL_CFLAGS = $(BASE_CFLAGS) $(SAN_FLAGS) $(CPPFLAGS) $(CFLAGS)
ALL_LDFLAGS = -pthread $(SAN_FLAGS) $(LDFLAGS)

LIB_SRCS := $(sort $(wildcard lib/*.c lib/heap/*.c))
DAEMON_SRCS := $(sort $(wildcard daemon/*.c))
CTL_SRCS := $(sort $(wildcard daemon/ctl/*.c))
UNIT_SRCS := $(sort $(wildcard tests/unit/test-*.c))
INTEG_SRCS := $(sort $(wildcard tests/integration/test-*.c))
TESTLIB_SRCS := $(sort $(wildcard tests/lib/*.c))
HELPER_SRCS := $(sort $(wildcard tests/integration/helper-*.c))

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
DAEMON_OBJS := $(DAEMON_SRCS:%.c=$(BUILD)/%.o)
CTL_OBJS := $(CTL_SRCS:%.c=$(BUILD)/%.o)
TESTLIB_OBJS := $(TESTLIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_BINS := $(UNIT_SRCS:%.c=$(BUILD)/%)
INTEG_BINS := $(INTEG_SRCS:%.c=$(BUILD)/%) $(HELPER_SRCS:%.c=$(BUILD)/%)

LIBSCAV_A := $(BUILD)/libscav.a
LIBSCAV_SO := $(BUILD)/libscav.so.$(SO_MINOR)

# Keep objects of test programs: they are not intermediate files to delete.
.SECONDARY:
.PRECIOUS: $(BUILD)/%.o

.PHONY: all lib daemon tests check check-run deps bench-deps demo bench install uninstall clean fuzz \
	print-version FORCE
all: lib daemon tests

lib: $(LIBSCAV_A) $(LIBSCAV_SO) $(BUILD)/libscav.pc

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(LIBSCAV_A): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBSCAV_SO): $(LIB_OBJS) lib/libscav.sym
	$(CC) -shared -Wl,-soname,libscav.so.$(SO_VERSION) -Wl,--version-script=lib/libscav.sym \
		-Wl,--no-undefined -Wl,-z,nodelete -o $@ $(LIB_OBJS) $(ALL_LDFLAGS)
	ln -sf libscav.so.$(SO_MINOR) $(BUILD)/libscav.so.$(SO_VERSION)
	ln -sf libscav.so.$(SO_VERSION) $(BUILD)/libscav.so

# The version for the programs' --version and scav_version(), made anew when
# VERSION changes (the stamp is named after it, so `make VERSION=...` counts
# too) and when this Makefile does.
$(BUILD)/build-version.h: Makefile $(BUILD)/version-$(VERSION).stamp
	@printf '#define SCAV_BUILD_VERSION "%s"\n#define SCAV_BUILD_VERSION_MAJOR %s\n#define SCAV_BUILD_VERSION_MINOR %s\n' \
		'$(VERSION)' '$(VERSION_MAJOR)' '$(VERSION_MINOR)' > $@

$(BUILD)/version-%.stamp:
	@mkdir -p $(dir $@)
	@rm -f $(BUILD)/version-*.stamp && touch $@

$(BUILD)/lib/scav-version.o $(BUILD)/daemon/main.o $(BUILD)/daemon/ctl/scavctl.o: $(BUILD)/build-version.h

# libscav.pc names where the library and header are installed, so it is
# made from these variables: by `make install` into DESTDIR with the values
# of that command line, and here in the build (what the same variables would
# install), rewritten only when they change. Directories under PREFIX are
# written as ${prefix}/..., as pkg-config users expect.
pc_dir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
PC_SED = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(call pc_dir,$(LIBDIR))|g' \
	-e 's|@INCLUDEDIR@|$(call pc_dir,$(INCLUDEDIR))|g' -e 's|@VERSION@|$(VERSION)|g'

$(BUILD)/libscav.pc: lib/libscav.pc.in FORCE
	@mkdir -p $(dir $@)
	@$(PC_SED) $< > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

# BPF programs and their skeletons (vmlinux.h, *.skel.h) come from this fragment.
-include daemon/bpf/bpf.mk

daemon: $(BUILD)/scavd $(BUILD)/scavctl

$(BUILD)/scavd: $(DAEMON_OBJS) $(BPF_DAEMON_OBJS) $(LIBSCAV_A)
	$(CC) -o $@ $(DAEMON_OBJS) $(BPF_DAEMON_OBJS) $(LIBSCAV_A) $(ALL_LDFLAGS) $(PKG_LIBS) -lm

# scavctl links only libscav.
$(BUILD)/scavctl: $(CTL_OBJS) $(LIBSCAV_A)
	$(CC) -o $@ $(CTL_OBJS) $(LIBSCAV_A) $(ALL_LDFLAGS) -lm

tests: $(UNIT_BINS) $(INTEG_BINS) $(TEST_EXTRA)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(TESTLIB_OBJS) $(LIBSCAV_A)
	$(CC) -o $@ $< $(TESTLIB_OBJS) $(LIBSCAV_A) $(ALL_LDFLAGS) -lm

$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(TESTLIB_OBJS) $(LIBSCAV_A)
	$(CC) -o $@ $< $(TESTLIB_OBJS) $(LIBSCAV_A) $(ALL_LDFLAGS) -lm

# Objects of the daemon that unit tests may link (pure policy: pacer, config).
$(BUILD)/daemon.a: $(filter-out $(BUILD)/daemon/main.o,$(DAEMON_OBJS))
	rm -f $@ && ar rcs $@ $^

-include tests/fuzz/fuzz.mk
-include $(sort $(wildcard tests/bench/*.mk))
-include python/python.mk

deps:
	@missing=""; \
	for p in $(DEB_BUILD); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "make deps: missing packages:$$missing (run as root)" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

bench-deps: deps
	@missing=""; \
	for p in $(DEB_BENCH); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Plain build, then AddressSanitizer+UndefinedBehaviorSanitizer build; one
# closing line for both.
check: deps
	$(MAKE) all
	$(MAKE) BUILD=build-san SAN=1 all
	$(MAKE) fuzz
	tests/run.sh build build-san

demo: deps all
	tests/demo.sh $(BUILD)

bench: bench-deps all
	$(MAKE) bench-run

# Installs what `make` built; it builds nothing that a plain `make` did not
# (libscav.pc is written straight into DESTDIR for this PREFIX and LIBDIR).
install: lib daemon
	install -Dm0755 $(LIBSCAV_SO) $(DESTDIR)$(LIBDIR)/libscav.so.$(SO_MINOR)
	ln -sf libscav.so.$(SO_MINOR) $(DESTDIR)$(LIBDIR)/libscav.so.$(SO_VERSION)
	ln -sf libscav.so.$(SO_VERSION) $(DESTDIR)$(LIBDIR)/libscav.so
	install -Dm0644 include/scav.h $(DESTDIR)$(INCLUDEDIR)/scav.h
	install -d $(DESTDIR)$(PKGCONFIGDIR)
	$(PC_SED) lib/libscav.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/libscav.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/libscav.pc
	install -Dm0755 $(BUILD)/scavd $(DESTDIR)$(SBINDIR)/scavd
	install -Dm0755 $(BUILD)/scavctl $(DESTDIR)$(BINDIR)/scavctl
	$(MAKE) install-data

# Removes exactly what install put (an edited configuration stays, see
# uninstall-data), and the directories that only held it.
uninstall: uninstall-data
	rm -f $(DESTDIR)$(LIBDIR)/libscav.so.$(SO_MINOR) $(DESTDIR)$(LIBDIR)/libscav.so.$(SO_VERSION) \
		$(DESTDIR)$(LIBDIR)/libscav.so $(DESTDIR)$(INCLUDEDIR)/scav.h \
		$(DESTDIR)$(PKGCONFIGDIR)/libscav.pc $(DESTDIR)$(SBINDIR)/scavd $(DESTDIR)$(BINDIR)/scavctl

-include systemd/install.mk

# For packaging scripts and tests: `make -s print-version`.
print-version:
	@echo $(VERSION)

clean:
	rm -rf build build-san build-fuzz build-bench

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
