# Row 6 (issue 11): what references, handles and names cost through libscav,
# beside an 8 KiB alloc+free pair. peer-bench.py runs it against its daemon.

$(PEER_DIR)/share-scav: tests/bench/peer-share-scav.c include/scav.h $(LIBSCAV_A)
	@mkdir -p $(dir $@)
	$(CC) $(PEER_CFLAGS) -o $@ $< $(LIBSCAV_A) $(PEER_LIBS)

bench-peers-bins: $(PEER_DIR)/share-scav
