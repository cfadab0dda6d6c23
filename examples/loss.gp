# loss.gp - the loss curves of the demo: gnuplot -e "dir='out'" loss.gp
# Reads dir/base.loss.dat and dir/tuned.loss.dat (step, loss, val_loss;
# made by metrics.awk from icl-train's metrics), writes dir/loss.png.
if (!exists("dir")) dir = 'out'
set terminal pngcairo size 900,540 font ",11"
set output dir.'/loss.png'
set datafile missing '?'
set datafile separator "\t"
set title "icl demo: pre-training on C4 text, then instruction tuning"
set xlabel "optimizer step"
set ylabel "loss (nats per target token)"
set key top right
set grid
stats dir.'/base.loss.dat' using 1 nooutput
boundary = STATS_max
set arrow from boundary, graph 0 to boundary, graph 1 nohead dashtype 2 lc rgb "#888888"
set label "instruction tuning starts" at boundary, graph 0.95 offset 1,0
plot dir.'/base.loss.dat'  using 1:2 with lines lw 2 lc rgb "#1f77b4" title "pre-training: train loss (C4 text)", \
     dir.'/base.loss.dat'  using 1:3 with linespoints pt 7 lc rgb "#2ca02c" title "held-out Alpaca responses (validation)", \
     dir.'/tuned.loss.dat' using 1:2 with lines lw 2 lc rgb "#d62728" title "instruction tuning: train loss", \
     dir.'/tuned.loss.dat' using 1:3 with linespoints pt 7 lc rgb "#2ca02c" notitle
