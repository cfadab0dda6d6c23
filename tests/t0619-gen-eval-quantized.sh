#!/bin/sh
# icl-gen and icl-eval -m on a quantized GGUF keep its blocks (icl_lora_load,
# lib/lora.h): batched products (icl-eval, icl-gen's prefill) dequantize tile
# by tile and equal --dequantize's float32 model; decode steps use integer dot
# products with activations quantized to int8 (qdot.h); adapters apply
# unmerged (icl_lora_apply) and equal the float32 merge.  Greedy ids of the
# decode path against float32 where the logit margin allows: test_qgen.c.
# The real model (perplexity, memory): t1105.
. "$(dirname "$0")/lib.sh"
Q="$DATA/gguf/llama-tiny.q4_1.gguf" # Q4_1 blocks, Q8_0 token_embd and output
PEFT="$DATA/lora-llama-tiny/adapter" # q_proj, v_proj (PEFT 0.21)
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" <"$2"; }
# rel A B TOL: |A - B| <= TOL * |B|
rel() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= t * m) }'; }
same_loss() { test $(field tokens "$1") = $(field tokens "$2") && rel $(field loss "$1") $(field loss "$2") "$3"; }

awk 'BEGIN { srand(11); for (e = 0; e < 24; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok

test_expect_success '--help names --dequantize (and icl-eval --decode; t0011 checks the man pages)' '
	icl-gen --help >h && grep -q -e "--dequantize" h &&
	icl-eval --help >h && grep -q -e "--dequantize" h && grep -q -e "--decode" h
'

test_expect_code 2 'icl-eval --dequantize without -m is a usage error' 'icl-eval --dequantize rand.tok'
test_expect_code 2 'icl-eval --decode without -m is a usage error' 'icl-eval --decode rand.tok'

test_expect_success 'icl-eval -m GGUF keeps the blocks, says so, and equals --dequantize (1e-5 relative)' '
	icl-eval -m "$Q" rand.tok >e.q 2>err.q &&
	test_grep "10 matrices in quantized blocks (Q4_1 x 8, Q8_0 x 2)" err.q &&
	test_grep "kept as stored: products dequantize tile by tile (" err.q &&
	icl-eval -m "$Q" --dequantize rand.tok >e.f 2>err.f &&
	test_grep "dequantized to float32" err.f &&
	test $(field records e.q) = 24 &&
	same_loss e.q e.f 1e-5
'

# issue 14: quantized decoding keeps the perplexity within 1% of float32's
test_expect_success 'icl-eval --decode: the decode path, quantized within 1% of float32; float32 == one forward' '
	icl-eval -m "$Q" --decode rand.tok >d.q 2>err.d &&
	test_grep "kept as stored: batched products dequantize tile by tile, decode steps use integer dot products (" err.d &&
	icl-eval -m "$Q" --dequantize --decode rand.tok >d.f &&
	same_loss d.f e.f 1e-5 &&
	same_loss d.q d.f 0.01 &&
	! test_cmp d.q d.f
'

test_expect_success 'an adapter on the quantized base: unmerged, equal to the float32 merge (1e-5)' '
	icl-eval -m "$Q" --adapter "$PEFT" rand.tok >a.q 2>err &&
	test_grep "1 adapter applied unmerged (combined rank 4)" err &&
	icl-eval -m "$Q" --dequantize --adapter "$PEFT" rand.tok >a.f 2>err &&
	test_grep "1 adapter merged" err &&
	same_loss a.q a.f 1e-5 &&
	! same_loss a.q e.q 1e-3
'

test_expect_success 'an adapter of one module (target_modules a whole name, as PEFT matches): unmerged == merged; icl-train continues it' '
	mkdir -p one && python3 -c "
import json, struct, sys
src = sys.argv[1]
b = open(src + \"/adapter_model.safetensors\", \"rb\").read()
n = struct.unpack(\"<Q\", b[:8])[0]
h = json.loads(b[8:8 + n]); data = b[8 + n:]
keep = [k for k in h if k.startswith(\"base_model.model.model.layers.0.self_attn.q_proj.\")]
assert len(keep) == 2, keep
out, off = {}, 0
blob = b\"\"
for k in sorted(keep):
    s, e = h[k][\"data_offsets\"]
    out[k] = dict(h[k], data_offsets=[off, off + e - s]); blob += data[s:e]; off += e - s
hj = json.dumps(out).encode(); hj += b\" \" * (-len(hj) % 8)
open(\"one/adapter_model.safetensors\", \"wb\").write(struct.pack(\"<Q\", len(hj)) + hj + blob)
c = json.load(open(src + \"/adapter_config.json\")); c[\"target_modules\"] = [\"model.layers.0.self_attn.q_proj\"]
json.dump(c, open(\"one/adapter_config.json\", \"w\"))
" "$PEFT" &&
	icl-eval -m "$Q" --adapter one rand.tok >one.q 2>err &&
	test_grep "1 adapter applied unmerged" err &&
	icl-eval -m "$Q" --dequantize --adapter one rand.tok >one.f &&
	same_loss one.q one.f 1e-5 && ! same_loss one.q e.q 1e-4 && ! same_loss one.q a.q 1e-4 &&
	icl-train -m "$Q" --adapter one --max-steps 2 --lr 1e-2 --batch-size 4 -o onet rand.tok >/dev/null 2>err &&
	test_grep "98624 parameters, 512 trainable" err &&
	python3 -c "
import json, struct
b = open(\"onet/adapter_model.safetensors\", \"rb\").read()
h = json.loads(b[8:8 + struct.unpack(\"<Q\", b[:8])[0]])
assert sorted(k for k in h if k != \"__metadata__\") == [\"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight\", \"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight\"], list(h)
assert json.load(open(\"onet/adapter_config.json\"))[\"target_modules\"] == [\"model.layers.0.self_attn.q_proj\"]
"
'

test_expect_success 'an icl-trained QLoRA adapter (all-linear) and PEFT'"'"'s, with scales: sum as merged (1e-5)' '
	icl-train -q -m "$Q" --lora-r 3 --lora-targets all-linear --max-steps 4 --lr 2e-2 --batch-size 4 -o ql rand.tok >/dev/null &&
	icl-eval -m "$Q" --adapter ql:0.7 --adapter "$PEFT:-1.5" rand.tok >s.q 2>err &&
	test_grep "2 adapters applied unmerged (combined rank 7)" err &&
	icl-eval -m "$Q" --dequantize --adapter ql:0.7 --adapter "$PEFT:-1.5" rand.tok >s.f &&
	same_loss s.q s.f 1e-5 &&
	icl-eval -m "$Q" --adapter ql rand.tok >o.q &&
	! same_loss s.q o.q 1e-3 &&
	icl-eval -m "$Q" --adapter "$PEFT:0.5" --adapter "$PEFT:0.5" rand.tok >h.q &&
	same_loss h.q a.q 1e-5
'

test_expect_success '-m ADAPTER whose base is the GGUF: unmerged on the blocks; decode path within 1%' '
	icl-eval -m ql rand.tok >m.q 2>err &&
	test_grep "quantized blocks" err && test_grep "1 adapter applied unmerged" err &&
	icl-eval -m "$Q" --adapter ql rand.tok >m2.q &&
	test_cmp m.q m2.q &&
	icl-eval -m ql --decode rand.tok >md.q &&
	icl-eval -m ql --dequantize --decode rand.tok >md.f &&
	same_loss md.q md.f 0.01
'

test_expect_success 'icl-gen -m GGUF: the blocks by default, --dequantize float32, each says so' '
	cut -f1 rand.tok | head -6 >p.in &&
	icl-gen -m "$Q" --ids --greedy -n 6 <p.in >g.q 2>err &&
	test_grep "quantized blocks" err &&
	test $(wc -l <g.q) = 6 &&
	icl-gen -m "$Q" --dequantize --ids --greedy -n 6 <p.in >g.f 2>err &&
	test_grep "dequantized to float32" err &&
	icl-gen -m "$Q" --adapter "$PEFT" --ids --greedy -n 6 <p.in >g.a 2>err &&
	test_grep "1 adapter applied unmerged" err &&
	icl-gen -m "$Q" --dtype bf16 --ids --greedy -n 6 <p.in >g.b 2>err &&
	test_grep "dequantized to float32; --dtype bf16: the products then take these weights rounded to bf16$" err &&
	icl-eval -m "$Q" --dtype bf16 rand.tok >e.b 2>err &&
	test_grep "dequantized to float32; --dtype bf16: the products then take these weights rounded to bf16$" err
'

test_expect_success 'an adapter on a module the blocks cannot carry unmerged is an error naming the file' '
	mkdir bad && cp "$PEFT/adapter_config.json" bad/ &&
	python3 -c "import json,struct,sys
h={\"base_model.model.lm_head.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[4,64],\"data_offsets\":[0,1024]},
   \"base_model.model.lm_head.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[96,4],\"data_offsets\":[1024,2560]}}
b=json.dumps(h).encode(); b+=b\" \"*(-len(b)%8)
open(\"bad/adapter_model.safetensors\",\"wb\").write(struct.pack(\"<Q\",len(b))+b+bytes(2560))" &&
	test_must_fail icl-eval -m "$Q" --adapter bad rand.tok 2>err &&
	test_grep "bad" err && test_grep "lm_head" err
'

test_expect_success 'each module carries the ranks of the adapters on it: an adapter of rank 65536 and no tensors adds none (was every module rank 65540)' '
	mkdir empty && sed "s/\"r\": 4/\"r\": 65536/; s/\"q_proj\"/\"no_such_proj\"/; s/\"v_proj\",//; s/\"down_proj\",//" \
		"$PEFT/adapter_config.json" >empty/adapter_config.json &&
	grep -q "\"r\": 65536" empty/adapter_config.json &&
	printf "\002\000\000\000\000\000\000\000{}" >empty/adapter_model.safetensors &&
	icl-eval -m "$Q" --adapter "$PEFT" rand.tok >e1.q &&
	icl-eval -m "$Q" --adapter "$PEFT" --adapter empty rand.tok >e2.q 2>err &&
	test_grep "2 adapters applied unmerged (combined rank 4)" err &&
	test_cmp e1.q e2.q &&
	icl-eval -m "$Q" --adapter empty rand.tok >e3.q 2>err &&
	test_grep "kept as stored.*; 1 adapter without tensors: nothing applied" err &&
	! grep -q "merged into the float32 weights" err
'

test_expect_success 'a tensor base_model.model.lora_A.weight (no module between) is refused, not a crash' '
	mkdir nomod && cp "$PEFT/adapter_config.json" nomod/ &&
	python3 -c "import json,struct
h={\"base_model.model.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[4,64],\"data_offsets\":[0,1024]},
   \"base_model.model.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[64,4],\"data_offsets\":[1024,2048]}}
b=json.dumps(h).encode(); b+=b\" \"*(-len(b)%8)
open(\"nomod/adapter_model.safetensors\",\"wb\").write(struct.pack(\"<Q\",len(b))+b+bytes(2048))" &&
	echo "icl-eval: nomod/adapter_model.safetensors: tensor base_model.model.lora_A.weight does not start with base_model.model. and a module name" >want &&
	test_must_fail icl-eval -m "$Q" --adapter nomod rand.tok 2>err && test_cmp want err &&
	test_must_fail icl-eval -m "$Q" --dequantize --adapter nomod rand.tok 2>err && test_cmp want err
'

test_expect_success 'non-finite adapter values or updates are refused on the blocks as by the float32 merge (and by icl-convert to a LoRA GGUF)' '
	mkdir nan && cp "$PEFT/adapter_config.json" nan/ &&
	python3 -c "import json,struct,sys
f=open(sys.argv[1],\"rb\").read(); n=struct.unpack(\"<Q\",f[:8])[0]; h=json.loads(f[8:8+n])
k=\"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight\"; o=8+n+h[k][\"data_offsets\"][0]
open(\"nan/adapter_model.safetensors\",\"wb\").write(f[:o]+struct.pack(\"<f\",float(\"nan\"))+f[o+4:])" "$PEFT/adapter_model.safetensors" &&
	echo "icl-eval: nan/adapter_model.safetensors: base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight holds values that are not finite" >want &&
	test_must_fail icl-eval -m "$Q" --adapter nan rand.tok 2>err && test_cmp want err &&
	test_must_fail icl-eval -m "$Q" --dequantize --adapter nan rand.tok 2>err && test_cmp want err &&
	test_must_fail icl-convert -b "$Q" nan nan.gguf 2>err &&
	sed "s/^icl-eval/icl-convert/" want >want2 && test_cmp want2 err && test ! -e nan.gguf &&
	test_must_fail icl-gen --ids -n 1 -m "$Q" --adapter "$PEFT:1e300" <rand.tok 2>err &&
	test_grep "lora_alpha 8 over r 4 (times 1e+300) makes updates of up to inf, beyond 1e+12, where float32 activations overflow" err
'

test_expect_success 'finite updates beyond 1e12 are refused too (they gave uniform logits: loss ln V, exit 0), by icl-train --adapter and the LoRA GGUF export as well; NaN by icl-train too' '
	test_must_fail icl-eval -m "$Q" --adapter "$PEFT:1e15" rand.tok 2>err &&
	test_grep "^icl-eval: .*adapter: lora_alpha 8 over r 4 (times 1e+15) makes updates of up to [0-9.e+]*, beyond 1e+12" err &&
	icl-eval -m "$Q" --adapter "$PEFT:1000" rand.tok >ok.json &&
	mkdir big && sed "s/\"lora_alpha\": *8/\"lora_alpha\": 8e15/" "$PEFT/adapter_config.json" >big/adapter_config.json &&
	cp "$PEFT/adapter_model.safetensors" big/ && grep -q 8e15 big/adapter_config.json &&
	test_must_fail icl-train -q -m "$Q" --adapter big -o tb --max-steps 1 --batch-size 2 rand.tok 2>err &&
	test_grep "^icl-train: big/adapter_model.safetensors: base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight and its lora_A make updates of up to .*, beyond 1e+12" err &&
	test_must_fail icl-convert -b "$Q" big big.gguf 2>err &&
	test_grep "^icl-convert: big: lora_alpha 8e+15 over r 4 makes updates of up to .*, beyond 1e+12" err && test ! -e big.gguf &&
	test_must_fail icl-train -q -m "$Q" --adapter nan -o tn --max-steps 1 --batch-size 2 rand.tok 2>err &&
	test_grep "^icl-train: nan/adapter_model.safetensors: base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight holds values that are not finite" err &&
	mkdir r64k && sed "s/\"r\": *4/\"r\": 65536/" "$PEFT/adapter_config.json" >r64k/adapter_config.json &&
	cp "$PEFT/adapter_model.safetensors" r64k/ && grep -q 65536 r64k/adapter_config.json &&
	test_must_fail icl-train -q -m "$Q" --adapter r64k -o tr --max-steps 1 --batch-size 2 rand.tok 2>err &&
	test_grep "^icl-train: r64k/adapter_model.safetensors: base_model.model.model.layers.0.[a-z_.]*.lora_A.weight has rank 4, adapter_config.json says r 65536" err &&
	test ! -e tr
'

test_expect_success 'icl-eval -m fails, naming the line, when the loss is not finite (it printed null and exited 0)' '
	cp -r "$DATA/model/llama-tiny/model" inf &&
	python3 -c "import json,struct
p=\"inf/model.safetensors\"; f=open(p,\"rb\"); n=struct.unpack(\"<Q\",f.read(8))[0]; hr=f.read(n); d=bytearray(f.read()); h=json.loads(hr)
a,b=h[\"model.layers.0.mlp.down_proj.weight\"][\"data_offsets\"]
d[a:b]=struct.pack(\"<f\",3e38)*((b-a)//4)
open(p,\"wb\").write(struct.pack(\"<Q\",n)+hr+d)" &&
	test_must_fail icl-eval -m inf rand.tok >out 2>err &&
	test_grep "^icl-eval: rand.tok:1: the loss is not finite (NaN or Inf)" err && test ! -s out
'

test_expect_success 'an adapter file of 200000 tensor pairs is refused at once (no quadratic search), naming the first module the model lacks' '
	mkdir many && cp "$PEFT/adapter_config.json" many/ &&
	python3 -c "import json,struct
h={}
for ab, shape in ((\"B\", [0, 4]), (\"A\", [4, 0])):
    for i in range(200000):
        h[\"base_model.model.z%d.lora_%s.weight\" % (i, ab)] = {\"dtype\": \"F32\", \"shape\": shape, \"data_offsets\": [0, 0]}
b=json.dumps(h).encode(); b+=b\" \"*(-len(b)%8)
open(\"many/adapter_model.safetensors\",\"wb\").write(struct.pack(\"<Q\",len(b))+b)" &&
	test_must_fail timeout 60 icl-eval -m "$Q" --adapter many rand.tok 2>err &&
	echo "icl-eval: many/adapter_model.safetensors: base_model.model.z0.lora_A.weight adapts z0, which the model does not have" >want &&
	test_cmp want err
'

test_done
