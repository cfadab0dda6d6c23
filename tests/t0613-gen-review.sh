#!/bin/sh
# Regression tests from the second review of icl-gen and icl-eval: each test
# names the bug it guards against.
. "$(dirname "$0")/lib.sh"
S="$DATA/model/stories260K/model"
hdr() { printf '#icl-tokens 1 fingerprint=xxh3:%016x vocab_size=512 bos=1 eos=2 pad=-1 source=t%s\n' "$1" "$1"; }
{ hdr 1; printf '1 461\t401\n'; } >a.tok
{ hdr 2; printf '1 300\t401\n'; } >b.tok
{ hdr 1; printf '1 300\t401\n'; } >a2.tok

test_expect_code 1 'icl-gen --ids: a later file from another tokenizer is an error (was ignored)' '
	icl-gen -m $S --ids -n 2 a.tok b.tok >out 2>err
'
test_expect_success '... and the message names that file and its header line' '
	test_grep "icl-gen: b.tok:1: tokens made by another tokenizer" err
'
test_expect_success 'icl-gen --ids: files of one tokenizer still concatenate, with one header' '
	icl-gen -m $S --ids -n 2 a.tok a2.tok >out &&
	test $(grep -c "^#icl-tokens" out) = 1 && test $(wc -l <out) = 3
'
test_expect_code 1 'icl-eval -m: a later file from another tokenizer is an error (was summed in)' '
	icl-eval -m $S a.tok b.tok >out 2>err
'
test_expect_success '... with a message naming it' '
	test_grep "icl-eval: b.tok:1: tokens made by another tokenizer" err
'
test_expect_success 'icl-eval -m: files of one tokenizer still add up' '
	icl-eval -m $S a.tok a2.tok >out && test_grep "\"records\":2," out
'

# a tokenizer with fewer ids (300) than the model (512): ids past it have no
# token and are never generated (issue 18, defect 5; was: an error naming
# the record, tested here before)
mkdir m300 && cp $S/* m300/ &&
for i in 1 2 3 4 5 6 7 8; do echo "Once upon a time there was a little girl named Lily. $i"; done >corpus &&
icl-tok train --vocab-size 300 -o m300/tokenizer.json corpus 2>/dev/null
printf '{"prompt":"x"}\n{"prompt":"Once upon"}\n' >two.jsonl
test_expect_success 'icl-gen: ids the tokenizer cannot decode are never generated' '
	printf "1 2 3\n4 5\n" | icl-gen -m m300 -n 40 -b 1 --ids >ids 2>err &&
	test $(wc -l <ids) -eq 2 &&
	cut -f2 ids | tr " " "\n" | awk "\$1 >= 300 { exit 1 }" &&
	icl-gen -m m300 -n 40 -b 1 two.jsonl >out 2>err &&
	test $(grep -c "\"completion\":" out) -eq 2 && ! test -s err
'

test_expect_success 'the --stop example passes a real blank line (was "\n\n": two backslash-n)' '
	grep -F -q -- "--stop \$\\(aq\\(rsn\\(rsn\\(aq" "$TESTS_DIR/../man/man1/icl-gen.1" &&
	! grep -F -q -- "--stop \"\\(rsn" "$TESTS_DIR/../man/man1/icl-gen.1" &&
	icl-gen --help | grep -F -q "taken literally"
'

test_expect_code_in() { want=$1; shift; rc=0; "$@" || rc=$?; test "$rc" -eq "$want"; }
printf '{"completion":"a","response":"a"}\n' >self.jsonl
test_expect_success 'icl-eval -e naming its own input is refused, the input kept (issue 18 defect 8; was: truncated it first, 0 records, then replaced it by the scores)' '
	cp self.jsonl keep &&
	test_expect_code_in 2 icl-eval -e self.jsonl self.jsonl >sum 2>err &&
	test_grep "self.jsonl is both an input and the --per-example output" err &&
	test_cmp keep self.jsonl
'
printf '{"completion":"a","response":"a"}\n{"completion":1}\n' >bad.jsonl
echo old >per.old
test_expect_code 1 'icl-eval -e: a failed run ...' 'icl-eval -e per.old bad.jsonl'
test_expect_success '... leaves the old per-example file as it was' '
	echo old >want && test_cmp want per.old
'

mkdir meos && cp $S/* meos/ && cp m300/tokenizer.json meos/ &&
echo '{"eos_token_id": [400, 2]}' >meos/generation_config.json
test_expect_code 1 'an eos id of generation_config.json past the tokenizer ...' '
	echo "{\"prompt\":\"x\"}" | icl-gen -m meos -n 2 2>err
'
test_expect_success '... is named, with where it may come from (was: a bare "out of the vocabulary")' '
	test_grep "eos 400, 300 ids (the ids may come from generation_config.json" err
'

mkdir mbig && cp $S/* mbig/ && echo '{"eos_token_id": 4294967298}' >mbig/generation_config.json
test_expect_code 1 'an integer eos_token_id past int32 is an error (was taken as id 2)' '
	echo 1 | icl-gen -m mbig --ids -n 2 2>err
'
test_expect_success '... naming the file and key' '
	test_grep "generation_config.json: \"eos_token_id\" is not a token id" err
'

mkdir mloop && cp $S/config.json $S/model.safetensors mloop/ &&
ln -s generation_config.json mloop/generation_config.json
test_expect_code 1 'an unreadable generation_config.json is an error (was ignored: defaults used silently)' '
	echo 1 | icl-gen -m mloop --ids -n 2 2>err
'
test_expect_success '... that says why' '
	test_grep "mloop/generation_config.json: Too many levels of symbolic links" err
'
test_expect_success 'a missing one still means the defaults' '
	rm mloop/generation_config.json && echo 1 | icl-gen -m mloop --ids -n 2 >out &&
	printf "1\t461 461\n" >want && test_cmp want out
'

mkdir m && cp $S/* m/ && cp "$DATA/tok/bytelevel-512.json" m/tokenizer.json
if [ -w /dev/full ]; then
	test_expect_code 1 'icl-gen --stream to a full disk fails ...' '
		icl-gen -m m -n 4 --stream two.jsonl >/dev/full 2>err
	'
	test_expect_success '... saying why (was: "write error: Success", after generating everything)' '
		test_grep "icl-gen: <stdout>: write error: No space left on device" err
	'
else
	test_skip 'icl-gen --stream to a full disk' 'no /dev/full'
fi

test_done
