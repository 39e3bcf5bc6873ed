# The Python extension module `scav` (python/, docs/python.md), built for
# Debian's /usr/bin/python3 with the flags of its python3-dev, against
# libscav.a (linked in: the module needs no libscav.so at run time, and
# exports nothing but PyInit_scav).
#
#   make                     -> $(BUILD)/python/scav.cpython-3XX-<arch>.so
#   PYTHONPATH=build/python /usr/bin/python3 -c 'import scav'
#   make install             -> $(PYTHON_SITEDIR) (Debian's layout, below)
#
# The tests are pytest modules in python/tests/, run by
# tests/integration/test-python.sh from `make check` for both builds.

DEB_BUILD += python3-dev python3-numpy python3-pytest

PYTHON ?= /usr/bin/python3
PYTHON_CONFIG ?= $(PYTHON)-config
PY_INCLUDES := $(shell $(PYTHON_CONFIG) --includes 2>/dev/null)
PY_EXT_SUFFIX := $(shell $(PYTHON_CONFIG) --extension-suffix 2>/dev/null)
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
# Debian: packaged modules live in /usr/lib/python3/dist-packages, local
# ones (PREFIX=/usr/local) in /usr/local/lib/python3.X/dist-packages; both
# are on /usr/bin/python3's sys.path. Other prefixes get the same shape.
PYTHON_SITEDIR ?= $(if $(filter /usr,$(PREFIX)),/usr/lib/python3/dist-packages,$(PREFIX)/lib/python$(PY_VERSION)/dist-packages)

PY_SRCS := $(sort $(wildcard python/*.c))
PY_OBJS := $(PY_SRCS:%.c=$(BUILD)/%.o)
PY_MODULE := $(BUILD)/python/scav$(PY_EXT_SUFFIX)

.PHONY: python install-python uninstall-python
all: python
python: $(PY_MODULE)

$(BUILD)/python/%.o: python/%.c
	@mkdir -p $(dir $@)
	@test -n "$(PY_INCLUDES)" || { echo "no $(PYTHON_CONFIG): install python3-dev (make deps)" >&2; exit 1; }
	$(CC) $(ALL_CFLAGS) $(PY_INCLUDES) -DSCAVPY_VERSION='"$(VERSION)"' -MMD -MP -c $< -o $@

# A shared object links with undefined symbols and fails only at import:
# whatever libscav symbol is left undefined fails the build instead.
$(PY_MODULE): $(PY_OBJS) $(LIBSCAV_A) python/scav.sym
	$(CC) -shared -Wl,--version-script=python/scav.sym -o $@ $(PY_OBJS) $(LIBSCAV_A) $(ALL_LDFLAGS)
	@if nm -u $@ | grep -E ' (scav|heap)_'; then echo "$@: libscav symbols left undefined" >&2; rm -f $@; exit 1; fi

install: install-python
install-python: $(PY_MODULE)
	install -d $(DESTDIR)$(PYTHON_SITEDIR)
	install -m 0644 $(PY_MODULE) $(DESTDIR)$(PYTHON_SITEDIR)/

uninstall: uninstall-python
uninstall-python:
	rm -f $(DESTDIR)$(PYTHON_SITEDIR)/$(notdir $(PY_MODULE))
