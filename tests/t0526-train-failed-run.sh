#!/bin/sh
# A failed icl-train leaves nothing it created: the -o folder it made is
# removed with its .lock; a folder that existed is left as it was (its
# files, its checkpoints even with --overwrite-output-dir, a .lock it had).
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"

awk 'BEGIN { srand(7); for (e = 0; e < 12; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >good.tok
printf '1 2 3\t4 5\n7 x 9\t10\n' >bad.tok
mkdir badmodel && echo '{"model_type": "llama"}' >badmodel/config.json
ARGS="-q --max-steps 2 --batch-size 2 --threads 1"

# listing DIR: its entries, hidden ones too, with their sizes
listing() { (cd "$1" && find . | sort | while read -r f; do echo "$f $(test -f "$f" && wc -c <"$f")"; done); }

test_expect_success 'bad data: the -o folder it created is gone, .lock and all' '
	test_must_fail icl-train $ARGS -m "$LLAMA" -o run bad.tok 2>err &&
	test_grep "bad.tok:2" err &&
	! test -e run
'

test_expect_success 'a model that does not load: nothing left' '
	test_must_fail icl-train $ARGS -m badmodel -o run good.tok 2>err &&
	test_grep "badmodel" err &&
	! test -e run
'

test_expect_success 'LoRA refused for its targets: nothing left' '
	test_must_fail icl-train $ARGS -m "$LLAMA" --lora-r 2 --lora-targets nosuch_proj -o run good.tok 2>err &&
	test_grep "nosuch_proj" err &&
	! test -e run
'

test_expect_success 'a missing data file: nothing left, nested -o too' '
	test_must_fail icl-train $ARGS -m "$LLAMA" -o run nosuch.tok 2>err &&
	test_grep "nosuch.tok" err &&
	! test -e run &&
	test_must_fail icl-train $ARGS -m "$LLAMA" -o a/b nosuch.tok 2>err &&
	! test -e a
'

test_expect_success 'a folder that existed is left as it was' '
	mkdir mine && echo keep >mine/notes.txt &&
	listing mine >before &&
	test_must_fail icl-train $ARGS -m "$LLAMA" -o mine bad.tok &&
	listing mine >after && test_cmp before after
'

test_expect_success 'a run folder of an earlier run keeps its checkpoints and a .lock it had (--overwrite-output-dir)' '
	icl-train $ARGS -m "$LLAMA" --save-every 1 -o prev good.tok >m &&
	test -d prev/checkpoint-1 && test -d prev/checkpoint-2 && ! test -e prev/.lock &&
	listing prev >before &&
	test_must_fail icl-train $ARGS -m "$LLAMA" --overwrite-output-dir -o prev bad.tok 2>err &&
	test_grep "bad.tok:2" err &&
	listing prev >after && test_cmp before after &&
	: >prev/.lock &&
	listing prev >before &&
	test_must_fail icl-train $ARGS -m "$LLAMA" --overwrite-output-dir -o prev bad.tok 2>err &&
	test_grep "bad.tok:2" err &&
	listing prev >after && test_cmp before after &&
	test_must_fail icl-train $ARGS -m badmodel --overwrite-output-dir -o prev good.tok &&
	listing prev >after && test_cmp before after
'

test_expect_success 'the same run with good data succeeds and then deletes them' '
	icl-train $ARGS -m "$LLAMA" --overwrite-output-dir -o prev good.tok >m 2>err &&
	test -f prev/model.safetensors
'

test_done
