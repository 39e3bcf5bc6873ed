# Retained memory after a burst (row 4 of docs/benchmarks.md), one line per
# system. Called by tests/bench/peer-bench.py with
#   gnuplot -e "out='x.png'; series='file:label ...'; ttl='...'; goal=70.4" peer-retained.gp
# Each data file: seconds since the free, footprint in MiB, CPU ms.
set terminal pngcairo size 960,540 font "sans,10"
set output out
set title ttl
set xlabel "seconds since the burst was freed"
set ylabel "retained (MiB)"
set grid
set key outside right top
set yrange [0:*]
set xrange [0:*]
n = words(series)
file(i) = substr(word(series, i), 1, strstrt(word(series, i), ":") - 1)
label(i) = substr(word(series, i), strstrt(word(series, i), ":") + 1, strlen(word(series, i)))
set arrow from graph 0, first goal to graph 1, first goal nohead dashtype 2 lc rgb "gray40"
set label "1.1 x kept" at graph 0.01, first goal offset 0, 0.6 tc rgb "gray40"
plot for [i=1:n] file(i) using 1:2 with lines lw 2 title label(i)
