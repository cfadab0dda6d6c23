#!/bin/sh
# One EOS truth: a model folder whose tokenizer_config.json names one EOS
# (<|im_start|>, 512) and generation_config.json another (<|im_end|>, 513,
# what generation stops at).  icl-tok encode appends the model's (513) and
# records it in the header; icl-train refuses token lines whose EOS the model
# does not stop at (--allow-eos-mismatch: a warning).
. "$(dirname "$0")/lib.sh"
FIX="$DATA/model/eos-mismatch"

cat >recs.jsonl <<'EOF2'
{"prompt":"Name a colour.","response":"Blue."}
{"prompt":"Say hello.","response":"Hello!"}
{"prompt":"Opposite of hot?","response":"Cold."}
EOF2

test_expect_success 'icl-tok encode takes generation_config.json'"'"'s EOS over tokenizer_config.json'"'"'s' '
	icl-tok encode -t "$FIX" <recs.jsonl >good.tok &&
	head -1 good.tok | grep -q " eos=513 " &&
	sed -n 2p good.tok | grep -q " 513$" &&
	mkdir tokonly && cp "$FIX/tokenizer.json" "$FIX/tokenizer_config.json" tokonly/ &&
	icl-tok encode -t tokonly <recs.jsonl >bad.tok &&
	head -1 bad.tok | grep -q " eos=512 " &&
	sed -n 2p bad.tok | grep -q " 512$" &&
	icl-tok encode --no-eos -t "$FIX" <recs.jsonl >none.tok &&
	head -1 none.tok | grep -q " eos=-1 "
'

test_expect_success 'config.json comes before tokenizer_config.json' '
	mkdir cfg && cp "$FIX/tokenizer.json" "$FIX/tokenizer_config.json" cfg/ &&
	echo "{\"eos_token_id\": 513}" >cfg/config.json &&
	icl-tok encode -t cfg <recs.jsonl >cfg.tok &&
	head -1 cfg.tok | grep -q " eos=513 "
'

test_expect_success 'a model from scratch on the fixture stops at 513' '
	icl-train -q --arch llama --hidden-size 16 --num-hidden-layers 1 --num-attention-heads 2 --intermediate-size 32 \
		-t "$FIX" -o model --max-steps 1 good.tok >m &&
	test_grep "\"eos_token_id\": 513" model/config.json &&
	cp "$FIX/tokenizer_config.json" "$FIX/generation_config.json" model/
'

test_expect_success 'icl-train refuses token lines whose EOS the model does not stop at, naming both' '
	test_must_fail icl-train -q -m model -o ft bad.tok >m 2>err &&
	test_grep "bad.tok:1: the token lines end responses with EOS id 512 but the model stops generating at 513" err &&
	test_grep "re-encode with icl-tok encode -t model (or give --allow-eos-mismatch)" err &&
	! test -s m
'

test_expect_success '--allow-eos-mismatch makes it a warning; the right EOS passes silently' '
	icl-train -q -m model -o ft2 --max-steps 1 --allow-eos-mismatch bad.tok >m 2>err &&
	test_grep "icl-train: bad.tok:1: the token lines end responses with EOS id 512 but the model stops generating at 513" err && test $(wc -l <m) -eq 1 &&
	icl-train -q -m model -o ft3 --max-steps 1 good.tok >m 2>err &&
	! grep -q EOS err
'

test_expect_success 'icl-gen warns when the token lines'"'"' EOS is not one the model stops at' '
	cut -f1 bad.tok >badp.tok && cut -f1 good.tok >goodp.tok &&
	icl-gen -m model --ids -n 2 <badp.tok >out 2>err &&
	test_grep "<stdin>:1: the token lines end responses with EOS id 512, which the model does not stop at (its generation_config.json / config.json eos_token_id 513)" err &&
	test $(grep -c . out) -eq 4 &&
	icl-gen -m model --ids -n 2 <goodp.tok >out 2>err &&
	! grep -q EOS err
'

test_expect_success 'token lines without a header: icl-train and icl-eval say the tokenizer goes unchecked' '
	grep -v "^#" good.tok >nohdr.tok &&
	icl-train -q -m model -o ft4 --max-steps 1 nohdr.tok >m 2>err &&
	test_grep "icl-train: nohdr.tok: no #icl-tokens header (not from icl-tok encode?): its ids are checked against the vocabulary size [0-9]* only, not against the model" err &&
	icl-eval -m model nohdr.tok >e 2>err &&
	test_grep "icl-eval: nohdr.tok: no #icl-tokens header" err &&
	icl-eval -q -m model nohdr.tok >e 2>err && ! test -s err &&
	icl-eval -m model good.tok >e 2>err && ! test -s err &&
	icl-train -q -m model -o ft5 --max-steps 1 good.tok >m 2>err && ! test -s err
'

test_done
