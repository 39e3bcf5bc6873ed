# Row 1 of docs/benchmarks.md at a glance: ns per alloc+free pair, one
# cluster per size, one bar per allocator, log scale. Called by
# tests/bench/peer-bench.py with
#   gnuplot -e "out='x.png'; data='alloc.dat'; ttl='...'" peer-alloc.gp
# data: a header line "size alloc1 alloc2 ...", then one line per size.
set terminal pngcairo size 960,480 font "sans,10"
set output out
set title ttl
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 10
set yrange [1:*]
set ylabel "ns per alloc+free pair (log scale, lower is better)"
set grid ytics
set key outside right top
set xtics nomirror
plot for [i=2:7] data using i:xtic(1) title columnheader(i)
