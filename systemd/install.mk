# Installs what makes scavd a system service: the units, the sysusers.d and
# tmpfiles.d entries, the journal catalog, the default configuration, the
# man pages (with one .so page per libscav function, so that `man scav_alloc`
# works), the shell completions of scavctl and the example client. Called by
# `make install` (DESTDIR=, PREFIX= and the directories the Makefile names);
# uninstall-data removes the same files.
#
# Directories come from `pkg-config systemd`. When PREFIX is not systemd's
# own prefix (the default /usr/local), they are rebased under PREFIX
# (/usr/local/lib/systemd/system, /usr/local/lib/sysusers.d, ...), all of
# which systemd searches. The configuration always goes to $(SYSCONFDIR)
# (/etc), since the daemon reads /etc/scavd/scavd.conf.

# SYSCONFDIR, SBINDIR, BINDIR, MANDIR, DATADIR and DOCDIR come from the
# Makefile. Completions go where bash-completion and zsh look by default.
BASHCOMPLETIONDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPLETIONDIR ?= $(DATADIR)/zsh/site-functions

SYSTEMD_PREFIX := $(shell $(PKG_CONFIG) --variable=prefix systemd 2>/dev/null)
ifeq ($(PREFIX),$(SYSTEMD_PREFIX))
SYSTEMD_PC = $(PKG_CONFIG) systemd
else
SYSTEMD_PC = $(PKG_CONFIG) systemd --define-variable=prefix=$(PREFIX) \
	--define-variable=root_prefix=$(PREFIX) --define-variable=rootprefix=$(PREFIX)
endif
# Fallbacks when systemd.pc is missing: systemd's own defaults under PREFIX.
pc_or = $(or $(shell $(SYSTEMD_PC) --variable=$(1) 2>/dev/null),$(2))
UNITDIR ?= $(call pc_or,systemdsystemunitdir,$(PREFIX)/lib/systemd/system)
SYSUSERSDIR ?= $(call pc_or,sysusersdir,$(PREFIX)/lib/sysusers.d)
TMPFILESDIR ?= $(call pc_or,tmpfilesdir,$(PREFIX)/lib/tmpfiles.d)
CATALOGDIR ?= $(call pc_or,catalogdir,$(PREFIX)/lib/systemd/catalog)

MAN_PAGES := $(sort $(wildcard docs/man/*.[1358]))
# Every function named in libscav(3)'s NAME line gets a page that sources it.
MAN3_LINKS := $(filter-out libscav,$(shell sed -n '/^\.SH NAME/{n;s/ *\\-.*//;s/,/ /g;p;q;}' docs/man/libscav.3))

.PHONY: install-data uninstall-data

# ExecStart= names the installed daemon, so scavd.service is made from its
# template at install time, for this SBINDIR.
install-data:
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(DESTDIR)$(SYSCONFDIR)/scavd/scavd.conf.d
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' systemd/scavd.service.in \
		> $(DESTDIR)$(UNITDIR)/scavd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/scavd.service
	install -m 0644 systemd/scavd.socket $(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/scavd.sysusers $(DESTDIR)$(SYSUSERSDIR)/scavd.conf
	install -m 0644 systemd/scavd.tmpfiles $(DESTDIR)$(TMPFILESDIR)/scavd.conf
	@if [ -f systemd/scavd.catalog ]; then \
		echo install -m 0644 systemd/scavd.catalog $(DESTDIR)$(CATALOGDIR)/scavd.catalog; \
		install -d $(DESTDIR)$(CATALOGDIR) && \
		install -m 0644 systemd/scavd.catalog $(DESTDIR)$(CATALOGDIR)/scavd.catalog; \
	else echo "install-data: systemd/scavd.catalog missing, not installed" >&2; fi
	@# An administrator's edited configuration is kept; the default goes beside it.
	@if [ ! -f conf/scavd.conf ]; then \
		echo "install-data: conf/scavd.conf missing, not installed" >&2; \
	elif [ -e $(DESTDIR)$(SYSCONFDIR)/scavd/scavd.conf ] && \
	     ! cmp -s conf/scavd.conf $(DESTDIR)$(SYSCONFDIR)/scavd/scavd.conf; then \
		echo "install-data: keeping $(DESTDIR)$(SYSCONFDIR)/scavd/scavd.conf, new default as scavd.conf.default"; \
		install -m 0644 conf/scavd.conf $(DESTDIR)$(SYSCONFDIR)/scavd/scavd.conf.default; \
	else \
		echo install -m 0644 conf/scavd.conf $(DESTDIR)$(SYSCONFDIR)/scavd/scavd.conf; \
		install -m 0644 conf/scavd.conf $(DESTDIR)$(SYSCONFDIR)/scavd/scavd.conf; \
	fi
	@# The pages say the version of the Makefile.
	@for m in $(MAN_PAGES); do \
		s=$${m##*.}; d=$(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; \
		echo "install $$m -> $$d"; \
		install -d $${d%/*} && sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' $$m > $$d && chmod 0644 $$d || exit 1; \
	done
	@for f in $(MAN3_LINKS); do \
		echo ".so man3/libscav.3" > $(DESTDIR)$(MANDIR)/man3/$$f.3 && chmod 0644 $(DESTDIR)$(MANDIR)/man3/$$f.3 || exit 1; \
	done
	@echo "install .so pages: $(MAN3_LINKS:%=$(MANDIR)/man3/%.3)"
	install -Dm0644 shell-completion/bash/scavctl $(DESTDIR)$(BASHCOMPLETIONDIR)/scavctl
	install -Dm0644 shell-completion/zsh/_scavctl $(DESTDIR)$(ZSHCOMPLETIONDIR)/_scavctl
	install -Dm0644 docs/examples/demo.c $(DESTDIR)$(DOCDIR)/examples/demo.c
	@# On a live system (no DESTDIR, systemd running) make the user, the
	@# runtime directory and the catalog take effect now.
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemd-sysusers $(SYSUSERSDIR)/scavd.conf; \
		systemd-tmpfiles --create $(TMPFILESDIR)/scavd.conf; \
		journalctl --update-catalog 2>/dev/null || true; \
		systemctl daemon-reload || true; \
	fi

# The configuration goes only if it is the default as shipped: an edited
# one is the administrator's (as dpkg keeps a changed conffile until purge).
# The scavd user stays, as systemd-sysusers never removes one either.
uninstall-data:
	rm -f $(DESTDIR)$(UNITDIR)/scavd.service $(DESTDIR)$(UNITDIR)/scavd.socket \
		$(DESTDIR)$(SYSUSERSDIR)/scavd.conf $(DESTDIR)$(TMPFILESDIR)/scavd.conf \
		$(DESTDIR)$(CATALOGDIR)/scavd.catalog \
		$(foreach m,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m))) \
		$(MAN3_LINKS:%=$(DESTDIR)$(MANDIR)/man3/%.3) \
		$(DESTDIR)$(BASHCOMPLETIONDIR)/scavctl $(DESTDIR)$(ZSHCOMPLETIONDIR)/_scavctl \
		$(DESTDIR)$(DOCDIR)/examples/demo.c
	@for f in scavd.conf scavd.conf.default; do \
		p=$(DESTDIR)$(SYSCONFDIR)/scavd/$$f; \
		[ -e $$p ] || continue; \
		if cmp -s conf/scavd.conf $$p; then echo rm -f $$p; rm -f $$p; \
		else echo "uninstall-data: keeping $$p: it is not the default as installed"; fi; \
	done
	@for d in $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/scavd/scavd.conf.d \
			$(DESTDIR)$(SYSCONFDIR)/scavd; do \
		if [ -d $$d ]; then echo rmdir --ignore-fail-on-non-empty $$d; rmdir --ignore-fail-on-non-empty $$d; fi; \
	done
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		journalctl --update-catalog 2>/dev/null || true; \
		systemctl daemon-reload || true; \
	fi

# test-systemd-fdstore tests daemon/fdstore.c itself against the protocol, so
# it links that object and the log it writes with, besides the test objects.
$(BUILD)/tests/integration/test-systemd-fdstore: $(BUILD)/tests/integration/test-systemd-fdstore.o \
		$(BUILD)/daemon/fdstore.o $(BUILD)/daemon/log.o $(TESTLIB_OBJS) $(LIBSCAV_A)
	$(CC) -o $@ $^ $(ALL_LDFLAGS) $(PKG_LIBS) -lm
