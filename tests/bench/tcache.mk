# Row 8 (issue 13): what client threads' caches keep after a burst, and how
# soon the daemon takes it back once they go idle. peer-bench.py runs it
# against its daemon.

$(PEER_DIR)/tcache-scav: tests/bench/peer-tcache-scav.c tests/bench/peer-util.h include/scav.h $(LIBSCAV_A)
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) -o $@ $< $(LIBSCAV_A) $(PEER_LIBS)

bench-peers-bins: $(PEER_DIR)/tcache-scav
