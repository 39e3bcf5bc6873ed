# Row 7 of docs/benchmarks.md at a glance: µs to make a NumPy array, hand it
# to a worker process and back, and drop it; one cluster per size, one bar
# per way of sharing, log scale. Called by tests/bench/py-share-bench.py with
#   gnuplot -e "out='x.png'; data='trips.dat'" py-share.gp
# data: a header line "size scav shared_memory pickle", then one line per size.
set terminal pngcairo size 960,480 font "sans,10" noenhanced
set output out
set title "A NumPy array to a worker and back: make, fill, hand off, drop (µs per array, lower is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 10
set yrange [1:*]
set ylabel "µs per array (log scale)"
set grid ytics
set key outside right top
set xtics nomirror
plot for [i=2:4] data using i:xtic(1) title columnheader(i)
