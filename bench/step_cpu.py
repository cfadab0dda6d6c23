#!/usr/bin/env python3
"""bench/step_cpu.py - a command's CPU seconds per logged step.

Runs CMD (icl-train with --log-every 1: one JSON line per step on stdout)
and prints, as each line arrives, the step, its tokens/s, the wall seconds
and the process's CPU seconds (user + system, from /proc/PID/stat) since the
previous line.  CPU seconds are what a shared machine disturbs least.
usage: python3 bench/step_cpu.py bin/icl-train ... --log-every 1 DATA
"""
import json
import os
import subprocess
import sys
import time

tck = os.sysconf("SC_CLK_TCK")
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)


def cpu():
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) / tck, int(f[12]) / tck  # utime, stime


w0, c0 = time.time(), cpu()
for line in p.stdout:
    w, c = time.time(), cpu()
    try:
        j = json.loads(line)
    except ValueError:
        continue
    u, s = c[0] - c0[0], c[1] - c0[1]
    print(f"step {j.get('step')} tok/s {j.get('tokens_per_s')} wall {w - w0:.2f} cpu {u + s:.2f} "
          f"(user {u:.2f} sys {s:.2f}) loss {j.get('loss')}", flush=True)
    w0, c0 = w, c
sys.exit(p.wait())
