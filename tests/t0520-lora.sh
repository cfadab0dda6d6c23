#!/bin/sh
# icl-train --lora-r: PEFT adapter folders as output, checkpoints holding
# only the adapters and their moments, exact resume, option errors.
# (PEFT parity of the numbers: tests/unit/test_linear.c and test_lora.c.)
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"
GPT2="$DATA/model/gpt2-tiny/model"

awk 'BEGIN { srand(7); for (e = 0; e < 24; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok

# tensor names of a safetensors file, one a line, sorted
st_names() { python3 -c 'import json,struct,sys
f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; h=json.loads(f.read(n))
for k in sorted(h):
    if k!="__metadata__": print(k, h[k]["dtype"], h[k]["shape"])' "$1"; }

test_expect_success '--help lists the LoRA options' '
	icl-train --help >help &&
	for o in --lora-r --lora-alpha --lora-dropout --lora-targets --use-rslora; do grep -q -e "$o" help || return 1; done
'

test_expect_code 2 'LoRA options without --lora-r are a usage error' 'icl-train -m "$LLAMA" -o out --use-rslora rand.tok'
test_expect_code 2 'LoRA with --arch is a usage error' 'icl-train --arch llama -t x -o out --lora-r 4 rand.tok'
test_expect_code 2 'an --lora-r above what adapter_config.json may hold (65536) is a usage error' 'icl-train -m "$LLAMA" -o out --lora-r 65537 rand.tok'
test_expect_code 2 '--lora-dropout 1 is a usage error' 'icl-train -m "$LLAMA" -o out --lora-r 4 --lora-dropout 1 rand.tok'

test_expect_success 'the closing note says the output folder holds an adapter' '
	icl-train -m "$LLAMA" -o done --lora-r 4 --max-steps 1 rand.tok >m 2>err &&
	test_grep "done: 1 step; adapter in done, last checkpoint done/checkpoint-1" err &&
	test -f done/adapter_config.json
'

test_expect_success 'a target the model does not have is an error naming it' '
	test_must_fail icl-train -q -m "$LLAMA" -o out --lora-r 4 --lora-targets q_proj,c_attn rand.tok 2>err &&
	test_grep "LoRA target \"c_attn\" names no projection of this llama model" err
'

ARGS="-q -m $LLAMA --lora-r 4 --lora-alpha 8 --lora-targets q_proj,v_proj,down_proj --batch-size 3 --grad-accum 2 --epochs 3 --lr 1e-2 --weight-decay 0.1 --schedule cosine --warmup-steps 2 --save-every 5 --threads 2"

test_expect_success 'the output is a PEFT adapter folder with the names and shapes PEFT writes' '
	icl-train $ARGS -o full rand.tok >m.full &&
	test $(wc -l <m.full) -eq 12 &&
	! test -e full/model.safetensors && ! test -e full/checkpoint-5/model.safetensors &&
	st_names full/adapter_model.safetensors >got &&
	st_names "$DATA/lora-llama-tiny/adapter/adapter_model.safetensors" >want &&
	test_cmp want got &&
	python3 -c "import json,sys
a=json.load(open(\"full/adapter_config.json\")); b=json.load(open(sys.argv[1]))
for k in (\"peft_type\",\"task_type\",\"r\",\"lora_alpha\",\"use_rslora\",\"bias\",\"fan_in_fan_out\"):
    assert a[k]==b[k], (k,a[k],b[k])
assert sorted(a[\"target_modules\"])==sorted(b[\"target_modules\"])
assert a[\"base_model_name_or_path\"]==sys.argv[2]" "$DATA/lora-llama-tiny/adapter/adapter_config.json" "$LLAMA"
'

test_expect_success 'checkpoints hold only the adapters moments' '
	st_names full/checkpoint-5/optimizer.safetensors >o &&
	test $(wc -l <o) -eq 24 &&
	! grep -v "^base_model.model.model.layers.[01].*lora_[AB].weight.exp_avg" o
'

test_expect_success 'the loss changes: the adapters are trained (B starts at zero)' '
	python3 -c "import json,struct,sys
f=open(\"full/adapter_model.safetensors\",\"rb\"); n=struct.unpack(\"<Q\",f.read(8))[0]; h=json.loads(f.read(n)); d=f.read()
t=h[\"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight\"]; a,b=t[\"data_offsets\"]
v=struct.unpack(\"<%df\"%((b-a)//4), d[a:b]); assert max(abs(x) for x in v)>1e-4, max(v)"
'

test_expect_success 'resume: 5 steps + resume == uninterrupted run, bit for bit' '
	mkdir part && cp -r full/checkpoint-5 part/ &&
	icl-train $ARGS -o part --resume rand.tok >m.part &&
	test $(wc -l <m.part) -eq 12 &&
	cmp full/adapter_model.safetensors part/adapter_model.safetensors &&
	cmp full/checkpoint-12/optimizer.safetensors part/checkpoint-12/optimizer.safetensors &&
	# the 5 logged steps replayed from trainer_state.json'"'"'s log_history, then the 7 new ones
	sed "s/, \"tokens_per_s\": [0-9.]*//" m.full >a &&
	sed "s/, \"tokens_per_s\": [0-9.]*//" m.part >b &&
	test_cmp a b
'

test_expect_success 'resume without -m takes the base from base_model_name_or_path' '
	mkdir part2 && cp -r full/checkpoint-5 part2/ &&
	icl-train $(echo "$ARGS" | sed "s|-m [^ ]*||") -o part2 --resume rand.tok >m.part2 &&
	cmp full/adapter_model.safetensors part2/adapter_model.safetensors
'

test_expect_success '-m naming an adapter folder says how to train it further' '
	test_must_fail icl-train -q -m full -o ad2 --max-steps 1 rand.tok 2>err &&
	test_grep "icl-train: -m full: a LoRA adapter folder, not a model: train it further with -m .*llama-tiny/model --adapter full" err &&
	test_must_fail icl-train -q -m full --lora-r 4 -o ad2 --max-steps 1 rand.tok 2>err &&
	test_grep "a LoRA adapter folder, not a model" err
'

test_expect_success 'resume refuses other LoRA options' '
	test_must_fail icl-train $ARGS --lora-alpha 16 -o part --resume rand.tok 2>err &&
	test_grep "cannot resume: lora_alpha is 16 here but 8 in the checkpoint (give the same LoRA options" err &&
	test_must_fail icl-train $(echo "$ARGS" | sed "s/--lora-r 4/--lora-r 2/; s/,down_proj//") -o part --resume rand.tok 2>err &&
	test_grep "cannot resume: r is 2 here but 4 in the checkpoint; target_modules is q_proj,v_proj here but q_proj,v_proj,down_proj in the checkpoint" err
'

test_expect_success 'rsLoRA and all-linear: GPT-2 Conv1D modules, fan_in_fan_out as PEFT sets it' '
	icl-train -q -m "$GPT2" --lora-r 2 --lora-targets all-linear --use-rslora --max-steps 2 --batch-size 4 -o g rand.tok >m.g &&
	python3 -c "import json
a=json.load(open(\"g/adapter_config.json\"))
assert a[\"use_rslora\"] is True and a[\"fan_in_fan_out\"] is True and a[\"r\"]==2
assert sorted(a[\"target_modules\"])==[\"c_attn\",\"c_fc\",\"c_proj\"]" &&
	st_names g/adapter_model.safetensors >gn &&
	test_grep "^base_model.model.transformer.h.0.attn.c_attn.lora_A.weight F32 \[2, 64\]" gn &&
	test_grep "^base_model.model.transformer.h.0.mlp.c_proj.lora_B.weight F32 \[64, 2\]" gn
'

PEFT="$DATA/lora-llama-tiny/adapter"

test_expect_success 'icl-eval -m BASE --adapter PEFT_DIR equals the merged model icl-convert writes' '
	icl-convert --adapter "$PEFT" "$LLAMA" merged &&
	test -f merged/model.safetensors &&
	icl-eval -m merged rand.tok >e.merged &&
	icl-eval -m "$LLAMA" --adapter "$PEFT" rand.tok >e.adapter &&
	test_cmp e.merged e.adapter &&
	icl-eval -m "$LLAMA" rand.tok >e.base &&
	! cmp -s e.base e.adapter
'

test_expect_success '--adapter DIR:0 is the base; DIR:0.5 twice is DIR once (within rounding)' '
	icl-eval -m "$LLAMA" --adapter "$PEFT:0" rand.tok >e.zero &&
	test_cmp e.base e.zero &&
	icl-eval -m "$LLAMA" --adapter "$PEFT:0.5" --adapter "$PEFT:0.5" rand.tok >e.half &&
	python3 -c "import json,sys
a=json.load(open(\"e.adapter\")); b=json.load(open(\"e.half\"))
assert abs(a[\"loss\"]-b[\"loss\"]) < 1e-5*abs(a[\"loss\"]), (a,b)"
'

test_expect_success 'an adapter folder icl-train wrote works as -m (its base_model_name_or_path)' '
	icl-eval -m full rand.tok >e.full1 &&
	icl-eval -m "$LLAMA" --adapter full rand.tok >e.full2 &&
	test_cmp e.full1 e.full2 &&
	! cmp -s e.base e.full1 &&
	icl-gen --ids -n 4 -m full <rand.tok >g1 &&
	icl-gen --ids -n 4 -m "$LLAMA" --adapter full <rand.tok >g2 &&
	test_cmp g1 g2
'

test_expect_success 'merged GGUF (F32) gives the same loss as the merged folder' '
	icl-convert --adapter "$PEFT" "$LLAMA" merged.gguf &&
	icl-eval -m merged.gguf rand.tok >e.gguf &&
	test_cmp e.merged e.gguf &&
	icl-convert --adapter "$PEFT" --type Q8_0 "$LLAMA" merged.q8.gguf &&
	icl-eval -m merged.q8.gguf rand.tok >e.q8 &&
	python3 -c "import json
a=json.load(open(\"e.merged\")); b=json.load(open(\"e.q8\"))
assert abs(a[\"loss\"]-b[\"loss\"]) < 0.02*abs(a[\"loss\"]), (a,b)"
'

test_expect_success 'adapters that do not fit the model are refused by name' '
	test_must_fail icl-eval -m "$GPT2" --adapter "$PEFT" rand.tok 2>err &&
	test_grep "adapts model.layers.0.mlp.down_proj.weight, which the model does not have (an adapter of another base model? its adapter_config.json names ./llama-tiny/model)$" err &&
	test_must_fail icl-eval -m "$DATA/model/stories260K/model" --adapter "$PEFT" rand.tok 2>err &&
	test_grep "have shapes that do not fit .* (an adapter of another base model? its adapter_config.json names ./llama-tiny/model)$" err &&
	test_must_fail icl-eval -m "$LLAMA" --adapter nowhere rand.tok 2>err &&
	test_grep "nowhere: no such adapter folder" err &&
	test_must_fail icl-eval -m "$LLAMA" --adapter "$LLAMA" rand.tok 2>err &&
	test_grep "model: a model folder (config.json), not a LoRA adapter folder (adapter_config.json and adapter_model.safetensors)$" err &&
	test_must_fail icl-eval --adapter "$PEFT" rand.tok 2>err
'

test_expect_success 'icl-train -o that is the --adapter or -m folder it starts from, or one of its checkpoints, is refused (it replaced the input)' '
	cp -r "$PEFT" start && cp -r "$LLAMA" base0 && cp start/adapter_model.safetensors keep.st &&
	test_must_fail icl-train -q -m "$LLAMA" --adapter start --max-steps 1 -o start/ rand.tok 2>err &&
	echo "icl-train: -o start/ is the folder of --adapter start, which this run starts from: its results would be written over or beside it; give another -o" >want &&
	test_cmp want err && cmp keep.st start/adapter_model.safetensors &&
	icl-train -q -m "$LLAMA" --adapter start --max-steps 2 --save-every 1 -o run1 rand.tok >/dev/null &&
	test_must_fail icl-train -q -m "$LLAMA" --adapter run1/checkpoint-1 --max-steps 1 --overwrite-output-dir \
		-o run1 rand.tok 2>err && test -d run1/checkpoint-1 &&
	test_grep "^icl-train: -o run1 holds --adapter run1/checkpoint-1, which this run starts from, as a checkpoint of an earlier run there (a new run deletes them); give another -o$" err &&
	test_must_fail icl-train -q -m base0 --max-steps 1 -o ./base0 rand.tok 2>err &&
	test_grep "is the folder of -m base0, which this run starts from" err &&
	mkdir outer && cp -r start outer/ad && icl-train -q -m "$LLAMA" --adapter outer/ad --max-steps 1 -o outer rand.tok >/dev/null &&
	cmp keep.st outer/ad/adapter_model.safetensors
'

test_expect_success 'an adapter folder without adapter_config.json given as the model, and a config without r or lora_alpha, say so' '
	mkdir -p wonly && cp "$PEFT/adapter_model.safetensors" wonly/ &&
	echo "wonly: no config.json but adapter_model.safetensors: the weights of a LoRA adapter whose adapter_config.json is missing, not a model" >want &&
	test_must_fail icl-gen --ids -n 2 -m wonly <rand.tok 2>err && sed "s/^icl-gen: //" err >got && test_cmp want got &&
	test_must_fail icl-convert wonly w.gguf 2>err && sed "s/^icl-convert: //" err >got && test_cmp want got && ! test -e w.gguf &&
	printf "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"]}" >wonly/adapter_config.json &&
	test_must_fail icl-eval -m "$LLAMA" --adapter wonly rand.tok 2>err &&
	test_grep "wonly/adapter_config.json: no \"lora_alpha\" (PEFT writes it; a config written by hand must give it)$" err &&
	printf "{\"peft_type\": \"LORA\", \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]}" >wonly/adapter_config.json &&
	test_must_fail icl-eval -m "$LLAMA" --adapter wonly rand.tok 2>err &&
	test_grep "wonly/adapter_config.json: no \"r\" (PEFT writes the rank; a config written by hand must give it)$" err
'

test_expect_success 'icl-train --adapter of another model: the depths, or the width, and the base it names' '
	test_must_fail icl-train -q -m "$DATA/model/stories260K/model" --adapter "$PEFT" --max-steps 1 -o deep rand.tok 2>err &&
	test_grep "adapter_model.safetensors: no tensor base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight: .* whose adapter the file lacks: its adapters cover 2 layers, this model has 5 (a truncated file, or an adapter of another base model? its adapter_config.json names ./llama-tiny/model)$" err &&
	icl-train -q -m "$GPT2" --lora-r 2 --max-steps 1 -o gpt2ad rand.tok >/dev/null 2>&1 &&
	icl-train -q --arch gpt2 --hidden-size 64 --num-hidden-layers 3 --num-attention-heads 4 \
		-t "$DATA/tok/bytelevel-512.json" --max-steps 1 -o gpt2deep rand.tok >/dev/null 2>&1 &&
	test_must_fail icl-train -q -m gpt2deep --adapter gpt2ad --max-steps 1 -o deep rand.tok 2>err &&
	test_grep "no tensor base_model.model.transformer.h.2.attn.c_attn.lora_A.weight: .* its adapters cover 2 layers, this model has 3 (a truncated file, or an adapter of another base model? its adapter_config.json names .*gpt2-tiny/model)$" err &&
	icl-train -q --arch llama --hidden-size 64 --num-hidden-layers 2 --num-attention-heads 4 --num-key-value-heads 2 \
		--intermediate-size 96 -t "$DATA/tok/bytelevel-512.json" --max-steps 1 -o narrow rand.tok >/dev/null 2>&1 &&
	test_must_fail icl-train -q -m narrow --adapter "$PEFT" --max-steps 1 -o wide rand.tok 2>err &&
	test_grep "adapter_model.safetensors: base_model.model.model.layers.0.mlp.down_proj.lora_A.weight has shape \[4, 160\], want \[4, 96\] (an adapter of another base model? its adapter_config.json names ./llama-tiny/model)$" err &&
	! test -e deep && ! test -e wide
'

test_expect_success 'an adapter folder with adapter_model.bin alone: pickles are not read, said by every program' '
	mkdir -p binonly && cp "$PEFT/adapter_config.json" binonly/ && echo x >binonly/adapter_model.bin &&
	echo "binonly: no adapter_model.safetensors, only adapter_model.bin: PyTorch pickles are not read (loading one can run code); save the adapter with safe_serialization=True (PEFT'"'"'s default since 0.6)" >want.bin &&
	test_must_fail icl-eval -m "$LLAMA" --adapter binonly rand.tok 2>err &&
	sed "s/^icl-eval: //" err >got && test_cmp want.bin got &&
	test_must_fail icl-convert -b "$LLAMA" binonly bin.gguf 2>err &&
	sed "s/^icl-convert: //" err >got && test_cmp want.bin got && ! test -e bin.gguf &&
	test_must_fail icl-convert --adapter binonly "$LLAMA" binmerged 2>err &&
	sed "s/^icl-convert: //" err >got && test_cmp want.bin got && ! test -e binmerged
'

test_expect_success 'weights target_modules does not select, or selected modules without weights, are refused' '
	mkdir -p part && cp "$PEFT/adapter_model.safetensors" part/ &&
	sed "s/\"down_proj\",//" "$PEFT/adapter_config.json" >part/adapter_config.json &&
	test_must_fail icl-eval -m "$LLAMA" --adapter part rand.tok 2>err &&
	test_grep "part/adapter_model.safetensors: tensor base_model.model.model.layers.0.mlp.down_proj.lora_A.weight adapts model.layers.0.mlp.down_proj, which adapter_config.json.s target_modules \[v_proj, q_proj\] do not select: PEFT would not load it" err &&
	test_must_fail icl-convert --adapter part "$LLAMA" x.gguf 2>err &&
	test_grep "do not select: PEFT would not load it" err &&
	test_must_fail icl-train -q -m "$LLAMA" --adapter part --max-steps 1 -o x rand.tok 2>err &&
	test_grep "part/adapter_model.safetensors: tensor base_model.model.model.layers.0.mlp.down_proj.lora_A.weight adapts model.layers.0.mlp.down_proj, which adapter_config.json.s target_modules \\[v_proj, q_proj\\] do not select" err &&
	sed "s/\"q_proj\"/\"q_proj\", \"o_proj\"/" "$PEFT/adapter_config.json" >part/adapter_config.json &&
	test_must_fail icl-gen --ids -n 1 -m "$LLAMA" --adapter part <rand.tok 2>err &&
	test_grep "no tensor base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight: adapter_config.json.s target_modules \[v_proj, down_proj, q_proj, o_proj\] select model.layers.0.self_attn.o_proj" err &&
	test_must_fail icl-train -q -m "$LLAMA" --adapter part --max-steps 1 -o y rand.tok 2>err &&
	test_grep "no tensor base_model.model.model.layers.0.self_attn.o_proj.lora_" err
'

test_expect_success 'target_modules of 300000 names loads at once (no quadratic search)' '
	mkdir -p many && cp "$PEFT/adapter_model.safetensors" many/ &&
	python3 -c "import json,sys
a=json.load(open(sys.argv[1])); a[\"target_modules\"]=[\"t%d\" % i for i in range(300000)]+a[\"target_modules\"]
json.dump(a, open(\"many/adapter_config.json\", \"w\"))" "$PEFT/adapter_config.json" &&
	timeout 60 icl-eval -m "$LLAMA" --adapter many rand.tok >e.many &&
	test_cmp e.adapter e.many
'

test_expect_success 'adapter_config.json: flags that are not booleans, a lora_dropout not a number, a base_model_name_or_path not a string, exclude_modules and activated LoRA are refused by name' '
	mkdir -p types && cp "$PEFT/adapter_model.safetensors" types/ &&
	for kv in "use_rslora=\"false\"|\"use_rslora\" is not true or false" "use_dora=1|\"use_dora\" is not true or false" \
		"lora_dropout=\"0.1\"|\"lora_dropout\" is not a number" "exclude_modules=[\"q_proj\"]|\"exclude_modules\" is not supported" \
		"alora_invocation_tokens=[1, 2]|\"alora_invocation_tokens\" is not supported" \
		"trainable_token_indices=[5, 7]|\"trainable_token_indices\" is not supported" \
		"base_model_name_or_path=42|base_model_name_or_path is not a string (a model folder or name, or null)"; do
		python3 -c "import json,sys
a=json.load(open(sys.argv[1])); k,v=sys.argv[2].split(\"=\",1); a[k]=json.loads(v)
json.dump(a, open(\"types/adapter_config.json\", \"w\"))" "$PEFT/adapter_config.json" "${kv%%|*}" &&
		test_must_fail icl-eval -m "$LLAMA" --adapter types rand.tok 2>err &&
		echo "icl-eval: types/adapter_config.json: ${kv#*|}" >want && test_cmp want err || return 1
	done &&
	python3 -c "import json,sys
a=json.load(open(sys.argv[1])); a[\"exclude_modules\"]=[]; a[\"lora_dropout\"]=None; a[\"use_rslora\"]=None; a[\"trainable_token_indices\"]=None
json.dump(a, open(\"types/adapter_config.json\", \"w\"))" "$PEFT/adapter_config.json" &&
	icl-eval -m "$LLAMA" --adapter types rand.tok >e.types && test_cmp e.adapter e.types
'

test_expect_success 'icl-train --adapter: a target_modules name the model lacks is left out as PEFT (and icl-eval) do; targets that select nothing name the file' '
	mkdir -p tfoo && cp "$PEFT/adapter_model.safetensors" tfoo/ &&
	python3 -c "import json,sys
a=json.load(open(sys.argv[1])); a[\"target_modules\"]=list(a[\"target_modules\"])+[\"foo_proj\"]
json.dump(a, open(\"tfoo/adapter_config.json\", \"w\"))" "$PEFT/adapter_config.json" &&
	icl-train -q -m "$LLAMA" --adapter tfoo -o tfo --max-steps 1 --seed 3 rand.tok >l.foo &&
	icl-train -q -m "$LLAMA" --adapter "$PEFT" -o tpe --max-steps 1 --seed 3 rand.tok >l.peft &&
	sed "s/, \"tokens_per_s.*//" l.peft >a && sed "s/, \"tokens_per_s.*//" l.foo >b && test_cmp a b &&
	cmp tpe/adapter_model.safetensors tfo/adapter_model.safetensors &&
	test_grep "\"foo_proj\"" tfo/adapter_config.json &&
	mkdir -p tnone && cp "$PEFT/adapter_config.json" tnone/ &&
	python3 -c "import json,struct
open(\"tnone/adapter_model.safetensors\",\"wb\").write(struct.pack(\"<Q\",8)+b\"{}      \")
a=json.load(open(\"tnone/adapter_config.json\")); a[\"target_modules\"]=[\"foo_proj\", \"bar\"]
json.dump(a, open(\"tnone/adapter_config.json\", \"w\"))" &&
	test_must_fail icl-train -q -m "$LLAMA" --adapter tnone -o tno --max-steps 1 rand.tok 2>err &&
	echo "icl-train: tnone/adapter_config.json: target_modules [foo_proj, bar] select no module of this llama model" >want &&
	test_cmp want err && test ! -e tno
'

test_expect_success 'a target list too long for the message ends in "..." after a whole character' '
	mkdir -p tlong && cp tnone/adapter_model.safetensors tnone/adapter_config.json tlong/ &&
	python3 -c "import json
a=json.load(open(\"tlong/adapter_config.json\")); a[\"target_modules\"]=[\"t%d\" % i for i in range(40)]+[\"x\"+\"\u00e9\"*200]
json.dump(a, open(\"tlong/adapter_config.json\", \"w\"))" &&
	test_must_fail icl-train -q -m "$LLAMA" --adapter tlong -o tlo --max-steps 1 rand.tok 2>err &&
	cat err &&
	python3 -c "import re, sys
s = open(sys.argv[1], \"rb\").read().decode(\"utf-8\")  # strict: a cut character fails here
assert re.fullmatch(r\"icl-train: tlong/adapter_config.json: target_modules \[t0, t1, .*, t39, x\u00e9+[.][.][.]\] \"
                    r\"select no module of this llama model\n\", s), s" err
'

test_expect_success 'a lora_A of other than 2 dimensions is named with its dimensions' '
	mkdir -p t1d && cp "$PEFT/adapter_config.json" t1d/ &&
	python3 -c "import json,struct,sys
f=open(sys.argv[1],\"rb\").read(); n=struct.unpack(\"<Q\",f[:8])[0]; h=json.loads(f[8:8+n])
k=[k for k in h if k.endswith(\"lora_A.weight\")][0]; s=h[k][\"shape\"]; h[k][\"shape\"]=[s[0]*s[1]]
b=json.dumps(h).encode(); b+=b\" \"*(-len(b)%8)
open(\"t1d/adapter_model.safetensors\",\"wb\").write(struct.pack(\"<Q\",len(b))+b+f[8+n:])
print(k)" "$PEFT/adapter_model.safetensors" >k &&
	test_must_fail icl-train -q -m "$LLAMA" --adapter t1d -o t1o --max-steps 1 rand.tok 2>err &&
	test_grep "t1d/adapter_model.safetensors: $(cat k) has 1 dimensions, not 2 (lora_A \[r, in\], lora_B \[out, r\])" err
'

test_expect_success 'an lm_head target is refused as one icl-train does not adapt, not as a missing module' '
	test_must_fail icl-train -q -m "$LLAMA" --lora-r 2 --lora-targets q_proj,lm_head -o tlm --max-steps 1 rand.tok 2>err &&
	test_grep "LoRA target \"lm_head\": adapters of the embeddings and the output head are not trained" err
'

test_expect_success 'a tensor name of 100000 bytes is refused saying so, not with a message cut before its reason' '
	mkdir -p long && cp "$PEFT/adapter_config.json" long/ &&
	python3 -c "import json,struct,sys
f=open(sys.argv[1],\"rb\").read(); n=struct.unpack(\"<Q\",f[:8])[0]; h=json.loads(f[8:8+n])
h[\"base_model.model.\"+\"x\"*99969+\".lora_A.weight\"]={\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}
b=json.dumps(h).encode(); b+=b\" \"*(-len(b)%8)
open(\"long/adapter_model.safetensors\",\"wb\").write(struct.pack(\"<Q\",len(b))+b+f[8+n:])" "$PEFT/adapter_model.safetensors" &&
	msg="long/adapter_model.safetensors: tensor base_model.model.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... has a name of 100000 bytes: no PEFT module name is that long (at most 200 bytes)" &&
	test_must_fail icl-eval -m "$LLAMA" --adapter long rand.tok 2>err &&
	echo "icl-eval: $msg" >want && test_cmp want err &&
	test_must_fail icl-convert -b "$LLAMA" long long.gguf 2>err &&
	echo "icl-convert: $msg" >want && test_cmp want err &&
	test_must_fail icl-train -q -m "$LLAMA" --adapter long --max-steps 1 -o tl rand.tok 2>err &&
	echo "icl-train: $msg" >want && test_cmp want err
'

test_expect_success 'icl-train --adapter starts from a PEFT adapter (lr 0 keeps it: same merged model); --lora-alpha needs --lora-r and is not taken with --adapter (was: a silent full fine-tune)' '
	test_must_fail icl-train -q -m "$LLAMA" --adapter "$PEFT" --lora-r 4 -o x rand.tok 2>err &&
	test_grep "brings its own r" err &&
	test_must_fail icl-train -q -m "$LLAMA" --adapter "$PEFT" --lora-alpha 16 -o x rand.tok 2>err &&
	test_grep "brings its own r, lora_alpha" err &&
	test_must_fail icl-train -q -m "$LLAMA" --lora-alpha 16 --max-steps 1 -o x rand.tok 2>err &&
	test_grep "lora-alpha, --lora-targets, --lora-dropout and --use-rslora need --lora-r R (without it every weight is trained)" err &&
	! test -e x &&
	icl-train -q -m "$LLAMA" --adapter "$PEFT" --lr 0 --max-steps 2 --batch-size 4 -o keep rand.tok >m.keep &&
	python3 -c "import json
a=json.load(open(\"keep/adapter_config.json\"))
assert a[\"r\"]==4 and a[\"lora_alpha\"]==8 and sorted(a[\"target_modules\"])==[\"down_proj\",\"q_proj\",\"v_proj\"]" &&
	icl-eval -m "$LLAMA" --adapter keep rand.tok >e.keep &&
	test_cmp e.adapter e.keep &&
	icl-train -q -m "$LLAMA" --adapter "$PEFT" --lr 1e-2 --max-steps 2 --batch-size 4 -o moved rand.tok >m.moved &&
	icl-eval -m "$LLAMA" --adapter moved rand.tok >e.moved &&
	! cmp -s e.adapter e.moved
'

test_done
