#!/bin/sh
# One rule for every output, file or folder: it is created in a folder that
# exists.  An output folder (icl-train -o, icl-convert's DIR) is made when
# missing, as mkdir(1) without -p; a missing parent is refused naming it,
# as for an output file (icl-fmt -o, icl-tok train -o), so a mistyped path
# is an error, not a new tree (new-user trial: icl-convert made every
# missing parent, icl-train refused with "cannot create: No such file").
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"
TOK="$DATA/gen/llama-tiny.tok"
printf '{"instruction":"Say hi","output":"hi"}\n' >i.jsonl

test_expect_success 'icl-train -o: the folder is made, a missing parent is refused and nothing is made' '
	icl-train -q -m "$LLAMA" -o run --max-steps 1 "$TOK" >/dev/null &&
	test -f run/model.safetensors &&
	test_must_fail icl-train -q -m "$LLAMA" -o nope/deeper/run --max-steps 1 "$TOK" 2>err >/dev/null &&
	echo "icl-train: nope/deeper/run: no folder nope/deeper to create it in" >want && test_cmp want err &&
	test ! -e nope &&
	test_must_fail icl-train -q -m "$LLAMA" -o i.jsonl/run --max-steps 1 "$TOK" 2>err >/dev/null &&
	echo "icl-train: i.jsonl/run: i.jsonl is not a folder" >want && test_cmp want err
'

test_expect_success 'icl-convert DIR: the same rule, checked before converting' '
	icl-convert "$LLAMA" m.gguf &&
	icl-convert m.gguf conv && test -f conv/config.json &&
	test_must_fail icl-convert m.gguf nope/deeper/conv 2>err &&
	echo "icl-convert: nope/deeper/conv: no folder nope/deeper to create it in" >want && test_cmp want err &&
	test ! -e nope &&
	icl-convert m.gguf conv2/ && test -f conv2/config.json
'

test_expect_success 'output files: the same message (icl-fmt -o, icl-convert OUT.gguf)' '
	test_must_fail icl-fmt -o nope/x.jsonl i.jsonl 2>err &&
	echo "icl-fmt: nope/x.jsonl: no folder nope to create it in" >want && test_cmp want err &&
	test_must_fail icl-convert "$LLAMA" nope/m.gguf 2>err &&
	echo "icl-convert: nope/m.gguf: no folder nope to create it in" >want && test_cmp want err &&
	test ! -e nope
'

test_expect_success 'an output folder FILE/ where FILE is a file names FILE, not its parent' '
	icl-convert "$LLAMA" m.gguf && echo x >afile &&
	test_must_fail icl-convert m.gguf afile/ 2>err &&
	echo "icl-convert: afile/: exists and is not a folder" >want && test_cmp want err &&
	test_must_fail icl-train -q -m "$LLAMA" -o afile/ --max-steps 1 "$TOK" 2>err >/dev/null &&
	echo "icl-train: afile/: exists and is not a folder" >want && test_cmp want err &&
	test_must_fail icl-convert m.gguf afile/sub 2>err &&
	echo "icl-convert: afile/sub: afile is not a folder" >want && test_cmp want err &&
	echo x >want && test_cmp want afile
'

test_expect_success 'an output file named "" or naming a FIFO (or a device) is refused; nothing written, the FIFO stays' '
	mkdir e && (cd e && test_must_fail icl-convert "$LLAMA" "" 2>../err) &&
	echo "icl-convert: '"''"': an empty file name" >want && test_cmp want err &&
	test -z "$(ls -A e)" &&
	mkfifo fifo.gguf &&
	test_must_fail icl-convert "$LLAMA" fifo.gguf 2>err &&
	echo "icl-convert: fifo.gguf: not a regular file: this file is written whole beside it and renamed over it, which would replace it" >want &&
	test_cmp want err && test -p fifo.gguf && ! ls -d fifo.gguf.tmp.* 2>/dev/null &&
	test_must_fail icl-convert -b "$LLAMA" "$DATA/lora-llama-tiny/adapter" fifo.gguf 2>err &&
	test_cmp want err && test -p fifo.gguf
'

test_expect_success 'a link to nothing is refused, as mkdir(1) does; a link to a folder is the folder; "." takes the files' '
	ln -s nowhere/run dangling &&
	test_must_fail icl-train -q -m "$LLAMA" -o dangling --max-steps 1 "$TOK" 2>err >/dev/null &&
	echo "icl-train: dangling: a link to nowhere/run, which does not exist" >want && test_cmp want err &&
	icl-convert "$LLAMA" m.gguf &&
	test_must_fail icl-convert m.gguf dangling/ 2>err &&
	echo "icl-convert: dangling/: a link to nowhere/run, which does not exist" >want && test_cmp want err &&
	test ! -e nowhere && ! ls -d dangling.tmp.* 2>/dev/null &&
	mkdir real && ln -s real tolink &&
	icl-convert m.gguf tolink && test -f real/config.json && test -L tolink &&
	mkdir here && (cd here && icl-convert ../m.gguf .) && test -f here/config.json && test -f here/model.safetensors &&
	! ls -d here.tmp.* 2>/dev/null
'

test_done
