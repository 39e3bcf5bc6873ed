// SPDX-License-Identifier: MIT
//
// Row 4 driver: the burst trace of tests/bench/peer-trace-loop.h in Go 1.19
// (Debian's golang-go), whose page scavenger is the released descendant of
// the seed. Run with GODEBUG=scavtrace=1; the runner reads the process's
// anonymous RSS as the footprint.
//
// Go frees by dropping references: the burst's blocks become garbage, and
// only a GC cycle turns them into free pages the scavenger may release.
// Nothing here calls runtime.GC or debug.FreeOSMemory, as an application
// that just lets go of a burst would not, unless --gc-after-free is given
// (a separate case, to tell "no GC ran" from "the scavenger did not run").
//
//	trace-go active|idle [--burst B] [--obj B] [--keep B] [--churn B] [--churn-ms MS] [--window S] [--gc-after-free 1]
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

var sink []byte

func parseSize(s string) uint64 {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad size %q\n", s)
		os.Exit(2)
	}
	return v * mult
}

// monoNs reads CLOCK_MONOTONIC, the clock the runner and the C drivers use.
func monoNs() uint64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0)
	return uint64(ts.Sec)*1e9 + uint64(ts.Nsec)
}

// threadCPUNs is the CPU time of the calling OS thread; main is locked to its thread.
func threadCPUNs() uint64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3 /* CLOCK_THREAD_CPUTIME_ID */, uintptr(unsafe.Pointer(&ts)), 0)
	return uint64(ts.Sec)*1e9 + uint64(ts.Nsec)
}

func touch(b []byte, v byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = v
	}
}

func main() {
	runtime.LockOSThread()
	if len(os.Args) < 2 || (os.Args[1] != "active" && os.Args[1] != "idle") {
		fmt.Fprintln(os.Stderr, "usage: trace-go active|idle [options]")
		os.Exit(2)
	}
	active := os.Args[1] == "active"
	burst, obj, keep, churn := uint64(1<<30), uint64(256<<10), uint64(64<<20), uint64(1<<20)
	churnMs, window, gcAfterFree := 10, 15.0, false
	for i := 2; i+1 < len(os.Args); i += 2 {
		k, v := os.Args[i], os.Args[i+1]
		switch k {
		case "--burst":
			burst = parseSize(v)
		case "--obj":
			obj = parseSize(v)
		case "--keep":
			keep = parseSize(v)
		case "--churn":
			churn = parseSize(v)
		case "--churn-ms":
			churnMs, _ = strconv.Atoi(v)
		case "--window":
			window, _ = strconv.ParseFloat(v, 64)
		case "--gc-after-free":
			gcAfterFree = v == "1"
		default:
			fmt.Fprintf(os.Stderr, "bad option %s\n", k)
			os.Exit(2)
		}
	}
	n := int(burst / obj)
	nkeep := int(keep / obj)

	fmt.Printf("ready pid=%d heap_fd=-1\n", os.Getpid())
	stop := make(chan struct{}, 2)
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n')
	go func() {
		in.ReadString('\n')
		stop <- struct{}{}
	}()

	blocks := make([][]byte, n)
	for i := range blocks {
		blocks[i] = make([]byte, obj)
		touch(blocks[i], byte(i))
	}
	fmt.Printf("burst t=%d\n", monoNs())
	kept := 0
	for i := range blocks {
		if nkeep > 0 && kept < nkeep && i%(n/nkeep) == 0 {
			kept++
			continue
		}
		blocks[i] = nil
	}
	if gcAfterFree {
		runtime.GC()
	}
	fmt.Printf("freed t=%d app_cpu_ns=%d\n", monoNs(), threadCPUNs())

	deadline := time.After(time.Duration(window * float64(time.Second)))
	var tick <-chan time.Time
	if active {
		t := time.NewTicker(time.Duration(churnMs) * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
loop:
	for {
		select {
		case <-stop:
			break loop
		case <-deadline:
			break loop
		case <-tick:
			sink = make([]byte, churn)
			touch(sink, 7)
			sink = nil
		}
	}
	fmt.Printf("done t=%d app_cpu_ns=%d\n", monoNs(), threadCPUNs())

	samples := []metrics.Sample{
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	metrics.Read(samples)
	v := func(i int) uint64 { return samples[i].Value.Uint64() }
	retained := v(2) + v(3) + v(4)
	// Go 1.19's gcPaceScavenger aims at (heap goal, scaled by the last
	// in-use) + retainExtraPercent (10%); heap goal x 1.1 is its steady state.
	fmt.Printf("state goal=%d heap_goal=%d retained=%d released=%d gc_cycles=%d kept=%d\n",
		v(0)+v(0)/10, v(0), retained, v(1), v(5), len(blocks[:kept]))
	runtime.KeepAlive(blocks)
}
