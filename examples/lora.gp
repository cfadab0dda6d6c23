# lora.gp - the demo's training loss: gnuplot -e "dir='out'" lora.gp
# Reads dir/lora.loss.dat (step, loss, val_loss; made by metrics.awk from
# icl-train's metrics), writes dir/loss.png.
if (!exists("dir")) dir = 'out'
set terminal pngcairo size 900,540 font ",11"
set output dir.'/loss.png'
set datafile missing '?'
set datafile separator "\t"
set title "icl demo: LoRA on SmolLM2-135M-Instruct (training mix)"
set xlabel "optimizer step"
set ylabel "loss (nats per target token)"
set key top right
set grid
plot dir.'/lora.loss.dat' using 1:2 with linespoints pt 7 ps 0.6 lw 2 lc rgb "#d62728" title "train loss (target tokens of the step)"
