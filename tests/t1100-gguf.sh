#!/bin/sh
# GGUF files as models: icl-gen, icl-eval and icl-train take a .gguf where they
# take a model folder (same results as the folder), icl-convert both ways with
# exact round trips, hostile files, and transformers' tokenizer_config.json
# "no limit" sentinel.  The GGUF fixtures and their check against
# transformers' GGUF reader: tests/data/gguf/make_model_ggufs.py.
. "$(dirname "$0")/lib.sh"
M="$DATA/model"
G="$DATA/gen"
GG="$DATA/gguf"
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }
field() { python3 -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print("null" if v is None else v)' "$1" <"$2"; }

test_expect_success 'icl-convert --help teaches and exits 0; --version' '
	icl-convert --help >help &&
	test_grep "^Usage: icl-convert" help &&
	test_grep "Q8_0" help &&
	icl-convert -V >v && test_grep "^icl-convert (icl) " v
'
test_expect_code 2 'icl-convert with one argument is a usage error' 'icl-convert $GG/llama-tiny.f32.gguf'
test_expect_code 2 'icl-convert --type Q4_K is a usage error' 'icl-convert --type Q4_K $M/llama-tiny/model x.gguf'
test_expect_code 2 '--type with a GGUF input is a usage error' 'icl-convert --type F16 $GG/llama-tiny.f32.gguf out'
test_expect_success 'a folder input with a folder output (new with /, or existing) is a usage error saying what OUT can be' '
	{ icl-convert $M/llama-tiny/model s2/ 2>err; test $? -eq 2; } &&
	test_grep "is a model folder, converted to a GGUF file, and s2/ is a folder: give a file name" err &&
	test_grep "a folder is written to a folder only when merging adapters" err && ! test -e s2 &&
	mkdir s3 && { icl-convert $M/llama-tiny/model s3 2>err; test $? -eq 2; } &&
	test_grep "and s3 is a folder: give a file name" err && test -z "$(ls s3)"
'
test_expect_success 'a GGUF input with an output named .gguf is a usage error, not a folder named .gguf' '
	rc=0; icl-convert $GG/llama-tiny.f32.gguf o.gguf 2>err || rc=$?
	test $rc = 2 &&
	test_grep "llama-tiny.f32.gguf is a GGUF file, converted to a Hugging Face folder, and o.gguf names a .gguf file" err &&
	test ! -e o.gguf &&
	rc=0; icl-convert --adapter x $GG/llama-tiny.f32.gguf o.gguf 2>err || rc=$?
	test $rc = 2 &&
	test_grep "icl-convert --adapter ADAPTER IN.gguf DIR" err &&
	test ! -e o.gguf
'
test_expect_success 'README'"'"'s merge-and-quantize line on a GGUF base (--adapter, --type, OUT.gguf) names the two steps with that --type' '
	rc=0; icl-convert --adapter x --type Q8_0 $GG/llama-tiny.f32.gguf o.gguf 2>err || rc=$?
	test $rc = 2 &&
	test_grep "and o.gguf names a .gguf file: convert to a folder first" err &&
	test_grep "icl-convert --like IN.gguf --type Q8_0 DIR OUT.gguf" err &&
	rc=0; icl-convert --like $GG/llama-tiny.f32.gguf $GG/llama-tiny.f32.gguf o.gguf 2>err || rc=$?
	test $rc = 2 && test_grep "names a .gguf file" err &&
	test ! -e o.gguf
'
test_expect_success 'icl-convert of something else names it' '
	test_must_fail icl-convert help out 2>err &&
	test_grep "help: neither a GGUF file nor a model folder" err
'

for m in llama-tiny gpt2-tiny qwen2-tiny; do
	test_expect_success "$m: icl-gen -m FILE.gguf gives the folder's greedy ids (transformers')" "
		icl-gen -m $GG/$m.f32.gguf --ids -n 12 <$G/$m.greedy.in >out &&
		test_cmp $G/$m.greedy.out out
	"
	test_expect_success "$m: icl-eval -m FILE.gguf gives transformers' loss" "
		icl-eval -m $GG/$m.f32.gguf $G/$m.tok >sum &&
		read want n <$G/$m.loss &&
		test \$(field tokens sum) = \$n &&
		close \$(field loss sum) \$want 1e-5
	"
done

test_expect_success 'icl-train -m FILE.gguf trains from the GGUF weights, as from the folder' '
	icl-train -q -m $GG/llama-tiny.f32.gguf -o run1 --max-steps 2 --seed 3 --no-shuffle $DATA/train/llama-tiny.tok >m1 &&
	icl-train -q -m $M/llama-tiny/model -o run2 --max-steps 2 --seed 3 --no-shuffle $DATA/train/llama-tiny.tok >m2 &&
	test -f run1/model.safetensors && test -f run1/config.json &&
	cmp run1/model.safetensors run2/model.safetensors &&
	sed "s/, \"tokens_per_s\": [0-9.]*//" m1 >a && sed "s/, \"tokens_per_s\": [0-9.]*//" m2 >b &&
	test_cmp a b && test $(wc -l <a) = 2
'

for t in F32 F16 BF16 Q8_0 Q4_0; do
	test_expect_success "folder -> $t GGUF -> folder -> $t GGUF: the same file" "
		icl-convert --type $t $M/llama-tiny/model a.gguf &&
		icl-convert a.gguf f1 &&
		icl-convert --type $t f1 b.gguf &&
		cmp a.gguf b.gguf &&
		icl-convert b.gguf f2 &&
		cmp f1/model.safetensors f2/model.safetensors &&
		rm -rf a.gguf b.gguf f1 f2
	"
done

test_expect_success 'GGUF (as llama.cpp lays it out) -> folder -> GGUF: the same tensors; the folder loads as the GGUF' '
	icl-convert $GG/qwen2-tiny.f32.gguf q &&
	test -f q/config.json && test -f q/generation_config.json &&
	icl-convert q q.gguf &&
	icl-eval -m q $G/qwen2-tiny.tok >s1 && icl-eval -m q.gguf $G/qwen2-tiny.tok >s2 &&
	test_cmp s1 s2 &&
	grep -q "\"model_type\": \"qwen2\"" q/config.json
'

test_expect_success 'icl-convert --like Q.gguf without --type writes the general.file_type of its tensor types (was 0, F32): the source'"'"'s, else that of most matrices' '
	icl-convert "$GG/llama-tiny.q4_1.gguf" q41dir >/dev/null &&
	icl-convert --like "$GG/llama-tiny.q4_1.gguf" q41dir q41.gguf >/dev/null &&
	icl-convert --like "$GG/llama-tiny.q4_1.gguf" --type Q8_0 q41dir q80.gguf >/dev/null &&
	for f in "$GG/llama-tiny.q4_1.gguf" q41.gguf q80.gguf; do
		python3 -c "import struct,sys
d=open(sys.argv[1],\"rb\").read(); o=[8]
def u(f,n): v=struct.unpack_from(f,d,o[0])[0]; o[0]+=n; return v
def s(): n=u(\"<Q\",8); v=d[o[0]:o[0]+n].decode(); o[0]+=n; return v
size={0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
def skip(t):
    if t==8: s()
    elif t==9:
        et=u(\"<I\",4); n=u(\"<Q\",8)
        for _ in range(n): skip(et)
    else: o[0]+=size[t]
nt=u(\"<Q\",8); nk=u(\"<Q\",8)
for _ in range(nk):
    k=s(); t=u(\"<I\",4)
    if k==\"general.file_type\": print(u(\"<I\",4)); break
    skip(t)
else: print(\"none\")" "$f" || return 1
	done >ft &&
	printf "none\n3\n7\n" >want && test_cmp want ft
'

test_expect_success 'a truncated GGUF is an error naming the file, not a crash' '
	head -c 3000 $GG/llama-tiny.f32.gguf >t.gguf &&
	test_must_fail icl-eval -m t.gguf $G/llama-tiny.tok 2>err &&
	test_grep "t.gguf: .*runs past the end of the file" err &&
	test_must_fail icl-convert t.gguf t-out 2>err2 &&
	test_grep "t.gguf" err2 && test ! -e t-out
'

# transformers writes "model_max_length": 1000000000000000019884624838656 (its
# "no limit"), past jansson's integers: the copy here is SmolLM2's, as written
# by tests/data/smollm2/make_refs.py.
test_expect_success 'tokenizer_config.json with the model_max_length sentinel loads' '
	mkdir tm && cp $M/llama-tiny/model/* tm/ &&
	cp $DATA/tok/bytelevel-512.json tm/tokenizer.json &&
	cp $DATA/smollm2/tokenizer_config.json tm/ &&
	grep -q "\"model_max_length\": 1000000000000000019884624838656" tm/tokenizer_config.json &&
	echo "{\"prompt\":\"hi\",\"response\":\"yo\"}" | icl-tok encode -t tm >ids &&
	test -s ids
'
test_expect_success 'a tokenizer_config.json key that would change the ids is refused by name' '
	sed "s/\"model_max_length\"/\"do_lower_case\": true, \"model_max_length\"/" $DATA/smollm2/tokenizer_config.json >tm/tokenizer_config.json &&
	echo "{\"prompt\":\"hi\",\"response\":\"yo\"}" | test_must_fail icl-tok encode -t tm 2>err &&
	test_grep "do_lower_case" err
'

test_expect_success 'icl-train --save-gguf writes the final model as icl-convert does (full and LoRA)' '
	icl-train -q -m $M/llama-tiny/model -o sg --max-steps 2 --seed 3 --no-shuffle --save-gguf Q8_0 \
		$DATA/train/llama-tiny.tok >m &&
	icl-convert --type Q8_0 sg want.gguf &&
	cmp want.gguf sg/model.gguf &&
	icl-train -q -m $M/llama-tiny/model -o sl --max-steps 2 --seed 3 --no-shuffle --lora-r 2 --lr 1e-2 \
		--save-gguf F32 $DATA/train/llama-tiny.tok >m &&
	icl-convert --adapter sl $M/llama-tiny/model wantl.gguf &&
	cmp wantl.gguf sl/model.gguf &&
	test_must_fail icl-train -q -m $M/llama-tiny/model -o sx --save-gguf Q6_K $DATA/train/llama-tiny.tok 2>err &&
	test_grep "not one of F32" err
'

test_expect_success 'icl-train -o DIR/ --save-gguf names DIR/model.gguf without a doubled slash' '
	icl-train -m $M/llama-tiny/model -o sd/ --max-steps 1 --save-gguf F32 $DATA/train/llama-tiny.tok >m 2>err &&
	test_grep "icl-train: wrote sd/model.gguf (F32)" err && ! test_grep "//" err && test -f sd/model.gguf
'

test_expect_success 'llama3 rope scaling (Llama 3.1+) goes to GGUF as rope_freqs.weight and comes back' '
	icl-convert $M/llama3-bias-tiny/model l3.gguf &&
	icl-convert l3.gguf l3 &&
	tr -d " \n" <l3/config.json >c1 &&
	test_grep "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":4.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":16}" c1 &&
	icl-eval -q -m $M/llama3-bias-tiny/model $DATA/gen/llama-tiny.tok >want &&
	icl-eval -q -m l3.gguf $DATA/gen/llama-tiny.tok >got && test_cmp want got &&
	icl-eval -q -m l3 $DATA/gen/llama-tiny.tok >got && test_cmp want got &&
	# the same weights without the scaling (the fixture) score otherwise: the rope counts
	icl-eval -q -m $DATA/gguf/llama-bias-tiny.f32.gguf $DATA/gen/llama-tiny.tok >other &&
	! cmp -s want other
'

test_expect_success 'a weight beyond F16'"'"'s range: F16 refuses it naming the tensor, nothing written; BF16 and Q8_0 (scale 70000 / 127) write it' '
	mkdir -p big && cp $M/llama-tiny/model/* big/ &&
	python3 -c "
import json, struct
p = \"big/model.safetensors\"; b = bytearray(open(p, \"rb\").read())
n = struct.unpack(\"<Q\", b[:8])[0]; h = json.loads(b[8:8 + n])
t = h[\"model.layers.1.mlp.up_proj.weight\"]; assert t[\"dtype\"] == \"F32\"
o = 8 + n + t[\"data_offsets\"][0] + 4 * 7
b[o:o + 4] = struct.pack(\"<f\", -70000.0)
open(p, \"wb\").write(b)
" &&
	test_must_fail icl-convert --type F16 big big.gguf 2>err &&
	test_grep "^icl-convert: .*blk.1.ffn_up.weight: a value of magnitude 70000 is beyond what F16 holds (its F16 value would be infinite): write F32 or BF16$" err &&
	! test -e big.gguf &&
	icl-convert --type BF16 big big.gguf && test -s big.gguf &&
	icl-convert --type Q8_0 big big8.gguf && test -s big8.gguf
'

test_done
