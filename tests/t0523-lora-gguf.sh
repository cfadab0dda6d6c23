#!/bin/sh
# icl-convert ADAPTER_DIR LORA.gguf: a PEFT adapter folder as a llama.cpp
# LoRA adapter GGUF (the contents against PEFT's tensors and the merged
# model: tests/unit/test_lora_gguf.c; llama.cpp itself:
# bench/lora_llamacpp.sh).  Here: the command, its base, its options.
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"
PEFT="$DATA/lora-llama-tiny/adapter"

awk 'BEGIN { srand(3); for (e = 0; e < 8; e++) { n = 4 + int(rand() * 8); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok

# "key=value" of the string and float32 keys, then "name type ne0 ne1" of the tensors
gguf_dump() { python3 -c 'import struct,sys
d=open(sys.argv[1],"rb").read(); o=4
def u(f,n):
    global o; v=struct.unpack_from(f,d,o)[0]; o+=n; return v
def s():
    global o; n=u("<Q",8); v=d[o:o+n].decode(); o+=n; return v
ver=u("<I",4); nt=u("<Q",8); nk=u("<Q",8)
size={0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
for i in range(nk):
    k=s(); t=u("<I",4)
    if t==8: print(k+"="+s())
    elif t==6: print(k+"=%g"%u("<f",4))
    elif t==9: raise SystemExit("array")
    else: o+=size[t]
for i in range(nt):
    n=s(); nd=u("<I",4); ne=[u("<Q",8) for _ in range(nd)]; t=u("<I",4); u("<Q",8)
    print(n, t, *ne)' "$1"; }

test_expect_success 'an adapter folder is written as a LoRA GGUF with llama.cpp'"'"'s keys and names' '
	icl-convert --base "$LLAMA" "$PEFT" lora.gguf &&
	gguf_dump lora.gguf >dump &&
	test_grep "^general.type=adapter$" dump &&
	test_grep "^adapter.type=lora$" dump &&
	test_grep "^adapter.lora.alpha=8$" dump &&
	test_grep "^general.architecture=llama$" dump &&
	grep "^blk" dump >tensors &&
	cat >want <<-\EOF &&
	blk.0.attn_q.weight.lora_a 0 64 4
	blk.0.attn_q.weight.lora_b 0 4 64
	blk.0.attn_v.weight.lora_a 0 64 4
	blk.0.attn_v.weight.lora_b 0 4 32
	blk.0.ffn_down.weight.lora_a 0 160 4
	blk.0.ffn_down.weight.lora_b 0 4 64
	blk.1.attn_q.weight.lora_a 0 64 4
	blk.1.attn_q.weight.lora_b 0 4 64
	blk.1.attn_v.weight.lora_a 0 64 4
	blk.1.attn_v.weight.lora_b 0 4 32
	blk.1.ffn_down.weight.lora_a 0 160 4
	blk.1.ffn_down.weight.lora_b 0 4 64
	EOF
	test_cmp want tensors
'

test_expect_success '--type F16 / Q8_0: lora_a encoded, a lora_b of rank 4 (not a Q8_0 block) stays F32' '
	icl-convert -b "$LLAMA" --type F16 "$PEFT" lora16.gguf &&
	gguf_dump lora16.gguf | grep "^blk" | awk "{ print \$2 }" | sort -u >t16 &&
	echo 1 >w16 && test_cmp w16 t16 &&
	icl-convert -b "$LLAMA" --type Q8_0 "$PEFT" lora8.gguf &&
	gguf_dump lora8.gguf | grep "^blk.0.attn_q" >t8 &&
	printf "blk.0.attn_q.weight.lora_a 8 64 4\nblk.0.attn_q.weight.lora_b 0 4 64\n" >w8 && test_cmp w8 t8
'

test_expect_success 'without --base: the base_model_name_or_path icl-train wrote' '
	icl-train -q -m "$LLAMA" --lora-r 2 --lora-targets all-linear --max-steps 1 --batch-size 4 -o run rand.tok >m &&
	icl-convert run run.gguf &&
	gguf_dump run.gguf | grep -c "^blk" >n && echo 28 >w && test_cmp w n &&
	icl-convert --base "$LLAMA" run run2.gguf && cmp run.gguf run2.gguf
'

test_expect_success 'a base that is missing or does not fit is an error naming it; nothing written' '
	mkdir lost && cp "$PEFT"/* lost/ &&
	test_must_fail icl-convert lost lost.gguf 2>err &&
	test_grep "lost/adapter_config.json: the base model \"./llama-tiny/model\" (base_model_name_or_path) is neither ./llama-tiny/model (from the current folder) nor lost/./llama-tiny/model" err &&
	test_must_fail icl-convert --base "$DATA/model/gpt2-tiny/model" lost lost.gguf 2>err &&
	test_grep "adapts model.layers.0.mlp.down_proj.weight, which is not a matrix of llama.cpp.s gpt2 model" err &&
	test_must_fail icl-convert --base "$DATA/model/stories260K/model" run lost.gguf 2>err &&
	test_grep "do not fit" err &&
	! test -e lost.gguf
'

test_expect_success 'lm_head of a tied base: llama.cpp has no output.weight to adapt' '
	icl-train -q -m "$DATA/model/qwen2-tiny/model" --lora-r 2 --lora-targets q_proj --max-steps 1 --batch-size 4 -o q rand.tok >m &&
	sed "s/\"q_proj\"/\"q_proj\", \"lm_head\"/" q/adapter_config.json >c && mv c q/adapter_config.json &&
	python3 -c "import json,struct
f=open(\"q/adapter_model.safetensors\",\"rb\"); n=struct.unpack(\"<Q\",f.read(8))[0]; h=json.loads(f.read(n)); d=f.read()
h.pop(\"__metadata__\",None); o=len(d)
h[\"base_model.model.lm_head.lora_A.weight\"]={\"dtype\":\"F32\",\"shape\":[2,64],\"data_offsets\":[o,o+512]}
h[\"base_model.model.lm_head.lora_B.weight\"]={\"dtype\":\"F32\",\"shape\":[96,2],\"data_offsets\":[o+512,o+512+768]}
j=json.dumps(h).encode(); j+=b\" \"*(-len(j)%8)
open(\"q/adapter_model.safetensors\",\"wb\").write(struct.pack(\"<Q\",len(j))+j+d+bytes(512+768))" &&
	test_must_fail icl-convert q q.gguf 2>err &&
	test_grep "adapts lm_head, which the base shares with the embeddings (tied)" err &&
	! test -e q.gguf
'

test_expect_code 2 '--base with a model folder is a usage error' 'icl-convert --base "$LLAMA" "$LLAMA" x.gguf'
test_expect_code 2 '--type Q4_0 for a LoRA GGUF is a usage error' 'icl-convert --type Q4_0 -b "$LLAMA" "$PEFT" x.gguf'
test_expect_code 2 '--adapter with an adapter folder as input is a usage error' 'icl-convert --adapter "$PEFT" "$PEFT" x.gguf'
test_expect_success '--like with an adapter folder as input is a usage error saying what to do instead' '
	{ icl-convert --like lora.gguf -b "$LLAMA" "$PEFT" x.gguf 2>err; test $? -eq 2; } &&
	test_grep "is a LoRA adapter folder, written as a llama.cpp LoRA GGUF as it is, without --like" err &&
	test_grep "to merge it into its base model instead, give the base as input: icl-convert --adapter .*adapter BASE_DIR OUT.gguf" err &&
	! test -e x.gguf
'
test_expect_success 'an adapter folder written to a folder (existing, or named with a slash): a usage error asking for a file name' '
	mkdir outdir &&
	{ icl-convert -b "$LLAMA" "$PEFT" outdir 2>err; test $? -eq 2; } &&
	test_grep "is a LoRA adapter folder, written as a llama.cpp LoRA GGUF file, and outdir is a folder: give a file name (e.g. OUT.gguf)" err &&
	{ icl-convert -b "$LLAMA" "$PEFT" newdir/ 2>err; test $? -eq 2; } &&
	test_grep "and newdir/ is a folder: give a file name" err &&
	! test -e newdir && test -z "$(ls outdir)"
'

test_expect_success '--like a LoRA adapter GGUF, or the GGUF of another architecture, is refused by name; nothing written' '
	icl-convert -b "$LLAMA" "$PEFT" like.gguf &&
	test_must_fail icl-convert --like like.gguf "$LLAMA" x.gguf 2>err &&
	echo "icl-convert: like.gguf: general.type is \"adapter\", not a model: its metadata cannot be a model'"'"'s" >want &&
	test_cmp want err &&
	test_must_fail icl-convert --like "$DATA/gguf/gpt2-tiny.f32.gguf" "$LLAMA" x.gguf 2>err &&
	echo "icl-convert: $DATA/gguf/gpt2-tiny.f32.gguf: its general.architecture is not \"llama\", the model'"'"'s: its metadata cannot be this model'"'"'s" >want &&
	test_cmp want err &&
	! test -e x.gguf &&
	icl-convert --like "$DATA/gguf/llama-tiny.f32.gguf" "$LLAMA" x.gguf
'

test_expect_success '--base naming a file that is no GGUF says so, not FILE/config.json: Not a directory' '
	printf "GGU" >short.gguf &&
	test_must_fail icl-convert -b short.gguf "$PEFT" short-out.gguf 2>err &&
	echo "icl-convert: the base model of $PEFT: short.gguf: neither a GGUF file nor a model folder" >want &&
	test_cmp want err && ! test -e short-out.gguf
'

test_done
