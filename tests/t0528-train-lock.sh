#!/bin/sh
# icl-train's OUT_DIR/.lock lasts as long as the run: held while it trains,
# removed when it ends in order (done, or stopped by a signal with its
# checkpoint saved), a .lock a killed run left included.  (A failed run:
# t0526; a second run refused while the lock is held: t0501.)
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"

awk 'BEGIN { srand(7); for (e = 0; e < 12; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >good.tok
ARGS="-q -m $LLAMA --batch-size 2 --threads 1"

test_expect_success 'a run that finishes leaves no .lock, in a folder it made or one that existed' '
	icl-train $ARGS --max-steps 2 -o run good.tok >m &&
	test $(wc -l <m) -eq 2 && test -f run/model.safetensors && test -d run/checkpoint-2 &&
	! test -e run/.lock &&
	mkdir mine && echo keep >mine/notes.txt &&
	icl-train $ARGS --max-steps 1 -o mine good.tok >m &&
	test -f mine/model.safetensors && test "$(cat mine/notes.txt)" = keep &&
	! test -e mine/.lock
'

test_expect_success 'the next run on the folder takes it again, and leaves no .lock either' '
	icl-train $ARGS --max-steps 3 -o run --overwrite-output-dir good.tok >m &&
	test $(wc -l <m) -eq 3 && test -d run/checkpoint-3 && ! test -e run/checkpoint-2 &&
	! test -e run/.lock
'

test_expect_success 'the .lock is there while the run trains; SIGTERM saves, exits 143 and removes it' '
	icl-train $ARGS --max-steps 100000 -o long good.tok >m.long 2>err.long &
	pid=$! &&
	i=0; while ! [ $(cat m.long 2>/dev/null | wc -l) -ge 1 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done &&
	test -f long/.lock &&
	kill -TERM $pid &&
	{ wait $pid; echo $? >rc; } &&
	test "$(cat rc)" -eq 143 &&
	test_grep "continue with --resume" err.long &&
	ls -d long/checkpoint-* >/dev/null &&
	! test -e long/.lock
'

test_expect_success 'a .lock left by a killed run is taken over, and removed when the run ends' '
	mkdir killed && : >killed/.lock &&
	icl-train $ARGS --max-steps 1 -o killed good.tok >m &&
	test -f killed/model.safetensors &&
	! test -e killed/.lock
'

test_done
