/* SPDX-License-Identifier: MIT */
/*
 * demo: two processes share one scavd pool.
 *
 *   1. The parent allocates a frame, writes a message into it and publishes
 *      it under a name. The child finds it by that name: no offset passed
 *      by hand (a pointer means nothing in another process; the name leads
 *      to the same bytes in every process that maps the pool). The name and
 *      the child each hold a reference, so the frame lives as long as any
 *      of them does, even if the parent dies.
 *   2. Both fill the pool with scratch memory, and touch it, so that the
 *      kernel really backs it.
 *   3. The child reads the message through its own mapping, answers in the
 *      same frame, drops its reference, frees its scratch and exits.
 *   4. The parent reads the answer, unpublishes the name and frees
 *      everything. Freed memory is
 *      still backed (ready for reuse) until the scavenger returns it to the
 *      kernel: here we ask for that at once with scav_scavenge(), as Go's
 *      debug.FreeOSMemory() would.
 *
 * Build:  cc demo.c $(pkg-config --cflags --libs libscav) -o demo
 * Run:    ./demo [POOL [MiB per process]]      (scavd must be running)
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <scav.h>

#define CHUNK (1u << 20)
#define FRAME_NAME "demo/frame"

static void show(scav_pool *p, const char *when) {
        struct scav_stats st;
        struct stat sb;

        if (scav_stats(p, &st) < 0 || fstat(scav_heap_fd(p), &sb) < 0)
                return;
        /* st_blocks: what the kernel really holds for the pool's memfd. */
        printf("  %-34s in use %6.1f MiB   backed by the kernel %6.1f MiB   clients %llu   names %llu\n", when,
               st.inuse / 1048576.0, sb.st_blocks * 512 / 1048576.0, (unsigned long long) st.clients,
               (unsigned long long) st.names);
}

static int die(const char *what, int r) {
        fprintf(stderr, "demo: %s: %s\n", what, strerror(-r));
        return 1;
}

/* Allocates n MiB in 1 MiB pieces and writes to every page. */
static int fill(scav_pool *p, uint64_t *offs, unsigned n, unsigned char byte) {
        for (unsigned i = 0; i < n; i++) {
                int r = scav_alloc(p, CHUNK, 0, &offs[i]);
                if (r < 0)
                        return r;
                memset(scav_ptr(p, offs[i]), byte, CHUNK);
        }
        return 0;
}

static int unfill(scav_pool *p, const uint64_t *offs, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                int r = scav_free(p, offs[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int child(const char *pool, unsigned mib, int from_parent, int to_parent) {
        uint64_t msg_off, *offs = calloc(mib, sizeof(*offs));
        scav_pool *p;
        char *msg, c;
        int r;

        /* A child opens the pool itself: it gets a client slot of its own. */
        r = scav_open(pool, &p);
        if (r < 0)
                return die("child: scav_open", r);
        /* The frame by its name (waiting for it if need be); the lookup takes
         * a reference of ours, so the frame stays while we read it. */
        r = scav_lookup_wait(p, FRAME_NAME, 10000, &msg_off);
        if (r < 0)
                return die("child: scav_lookup_wait " FRAME_NAME, r);

        r = fill(p, offs, mib, 0xc4);
        if (r < 0)
                return die("child: scav_alloc", r);
        msg = scav_ptr(p, msg_off);
        printf("child  %d: found \"" FRAME_NAME "\" at offset 0x%llx: \"%s\"\n", getpid(),
               (unsigned long long) msg_off, msg);
        fflush(stdout);
        snprintf(msg, 4096, "hello back from process %d, who filled %u MiB", getpid(), mib);
        r = scav_unref(p, msg_off);
        if (r < 0)
                return die("child: scav_unref", r);

        /* Tell the parent we are full, wait until it has looked. */
        if (write(to_parent, "f", 1) != 1 || read(from_parent, &c, 1) != 1)
                return 1;
        r = unfill(p, offs, mib);
        if (r < 0)
                return die("child: scav_free", r);
        scav_close(p);
        free(offs);
        return 0;
}

int main(int argc, char **argv) {
        const char *pool = argc > 1 ? argv[1] : "default";
        unsigned mib = argc > 2 ? (unsigned) atoi(argv[2]) : 128;
        int down[2], up[2], status, r;
        uint64_t msg_off, *offs;
        struct scav_stats st;
        int64_t released;
        scav_pool *p;
        char *msg, c;
        pid_t pid;

        r = scav_open(pool, &p);
        if (r == -ECONNREFUSED)
                fprintf(stderr, "demo: no scavd listening (set SCAVD_SOCKET?)\n");
        if (r < 0)
                return die("scav_open", r);
        if (scav_stats(p, &st) == 0 && (uint64_t) mib * 2 * CHUNK > st.capacity / 2)
                mib = (unsigned) (st.capacity / 4 / CHUNK);  /* leave room: the pool is shared */
        offs = calloc(mib, sizeof(*offs));
        printf("pool \"%s\": %llu MiB capacity; two processes fill %u MiB each\n", pool,
               (unsigned long long) (st.capacity >> 20), mib);
        show(p, "start");

        /* 1. A frame, passed by name. */
        r = scav_alloc(p, CHUNK, SCAV_ALLOC_ZERO, &msg_off);
        if (r < 0)
                return die("scav_alloc", r);
        msg = scav_ptr(p, msg_off);
        snprintf(msg, 4096, "hello from process %d", getpid());
        r = scav_publish(p, FRAME_NAME, msg_off);
        if (r < 0)
                return die("scav_publish " FRAME_NAME, r);

        if (pipe(down) < 0 || pipe(up) < 0)
                return die("pipe", -errno);
        fflush(stdout);  /* so the child does not inherit buffered lines */
        pid = fork();
        if (pid == 0)
                _exit(child(pool, mib, down[0], up[1]));

        /* 2. Both fill. */
        r = fill(p, offs, mib, 0x3b);
        if (r < 0)
                return die("scav_alloc", r);
        if (read(up[0], &c, 1) != 1)
                return 1;
        show(p, "both processes full");

        /* 3. The child answered in the shared buffer; it frees and leaves. */
        if (write(down[1], "x", 1) != 1 || waitpid(pid, &status, 0) != pid)
                return 1;
        printf("parent %d: read \"" FRAME_NAME "\" again: \"%s\"\n", getpid(), msg);
        show(p, "child freed its memory and exited");

        /* 4. Free ours (the name's reference first, then our own: the last one
         * frees the frame), then give the memory back to the kernel. */
        r = unfill(p, offs, mib);
        if (r >= 0)
                r = scav_unpublish(p, FRAME_NAME);
        if (r >= 0)
                r = scav_free(p, msg_off);
        if (r < 0)
                return die("scav_free", r);
        show(p, "everything freed");
        released = scav_scavenge(p, 0);
        if (released < 0)
                return die("scav_scavenge", (int) released);
        printf("scav_scavenge released %.1f MiB to the kernel\n", released / 1048576.0);
        show(p, "after scavenging");

        scav_close(p);
        free(offs);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
