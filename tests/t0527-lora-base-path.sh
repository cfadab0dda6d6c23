#!/bin/sh
# An adapter icl-train writes names its base by absolute path, so that
# `icl-gen -m ADAPTER` works from any folder; a relative
# base_model_name_or_path (PEFT writes what it was given) is tried from the
# current folder, then from the adapter's; a base not found is an error
# naming adapter_config.json and the paths tried.
. "$(dirname "$0")/lib.sh"

awk 'BEGIN { srand(7); for (e = 0; e < 12; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok
cp -r "$DATA/model/llama-tiny/model" base
HERE=$(pwd -P)
# base_model_name_or_path of adapter folder $1
base_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1] + "/adapter_config.json"))["base_model_name_or_path"])' "$1"; }
# set it to $2
set_base() { python3 -c 'import json,sys
p = sys.argv[1] + "/adapter_config.json"; c = json.load(open(p)); c["base_model_name_or_path"] = sys.argv[2]
json.dump(c, open(p, "w"))' "$1" "$2"; }

test_expect_success 'a relative -m is written absolute (lexically: ./ and x/.. dropped)' '
	mkdir -p work/sub && (cd work/sub && icl-train -q -m ../../work/../base/ --lora-r 2 --max-steps 3 --save-every 2 --batch-size 4 \
		--threads 1 -o ../../ad ../../rand.tok >/dev/null) &&
	echo "$HERE/base" >want && base_of ad >got && test_cmp want got &&
	base_of ad/checkpoint-2 >got && test_cmp want got
'

test_expect_success 'icl-gen -m ADAPTER and icl-eval -m ADAPTER work from another folder' '
	icl-gen --ids -n 3 --threads 1 -m base --adapter ad <rand.tok >want &&
	(cd work/sub && icl-gen --ids -n 3 --threads 1 -m ../../ad <../../rand.tok) >got && test_cmp want got &&
	(cd / && icl-eval -m "$HERE/ad" "$HERE/rand.tok") >e1 &&
	icl-eval -m base --adapter ad rand.tok >e2 && test_cmp e2 e1
'

test_expect_success 'a relative base is tried from the current folder, then from the adapter folder' '
	mkdir ship && cp -r base ship/base && cp -r ad ship/ad && set_base ship/ad ../base &&
	(cd work/sub && icl-gen --ids -n 3 --threads 1 -m ../../ship/ad <../../rand.tok) >got && test_cmp want got &&
	set_base ship/ad base &&
	icl-gen --ids -n 3 --threads 1 -m ship/ad <rand.tok >got && test_cmp want got
'

test_expect_success 'a base not found names adapter_config.json and the paths tried' '
	set_base ship/ad HuggingFaceTB/SmolLM2-135M-Instruct &&
	test_must_fail icl-gen -m ship/ad <rand.tok 2>err &&
	test_grep "icl-gen: ship/ad/adapter_config.json: the base model \"HuggingFaceTB/SmolLM2-135M-Instruct\" (base_model_name_or_path) is neither HuggingFaceTB/SmolLM2-135M-Instruct (from the current folder) nor ship/ad/HuggingFaceTB/SmolLM2-135M-Instruct (from the adapter.s; icl reads no Hugging Face hub ids): give it, -m BASE --adapter ship/ad" err &&
	test $(wc -l <err) -eq 1 &&
	set_base ship/ad /nonexistent/base &&
	test_must_fail icl-eval -m ship/ad rand.tok 2>err &&
	test_grep "ship/ad/adapter_config.json: the base model \"/nonexistent/base\" (base_model_name_or_path) does not exist: give it, -m BASE --adapter ship/ad" err &&
	set_base ship/ad "" &&
	test_must_fail icl-gen -m ship/ad <rand.tok 2>err &&
	test_grep "ship/ad/adapter_config.json names no base_model_name_or_path" err &&
	set_base ship/ad . &&
	test_must_fail icl-gen -m ship/ad <rand.tok 2>err &&
	test_grep "(the base model of adapter ship/ad, its adapter_config.json.s base_model_name_or_path)" err
'

test_expect_success 'a base_model_name_or_path of 6 MB is shown shortened, the message whole' '
	python3 -c "import json
p = \"ship/ad/adapter_config.json\"; c = json.load(open(p)); c[\"base_model_name_or_path\"] = \"x/\" * 3000000
json.dump(c, open(p, \"w\"))" &&
	test_must_fail icl-eval -m ship/ad rand.tok 2>err &&
	python3 -c "b = \"x/\" * 100 + \"...\"; p = (\"ship/ad/\" + \"x/\" * 100)[:200] + \"...\"
print(\"icl-eval: ship/ad/adapter_config.json: the base model \\\"%s\\\" (base_model_name_or_path) is neither %s (from the \"
      \"current folder) nor %s (from the adapter\\x27s; icl reads no Hugging Face hub ids): give it, -m BASE --adapter ship/ad\" % (b, b, p))" >want &&
	test_cmp want err
'

test_expect_success 'resume without -m, from another folder: the base the checkpoint names' '
	mkdir r2 && cp -r ad/checkpoint-2 r2/ && cd work &&
	icl-train -q --lora-r 2 --max-steps 3 --batch-size 4 --threads 1 -o ../r2 --resume ../rand.tok >/dev/null &&
	cd .. && echo "$HERE/base" >want && base_of r2 >got && test_cmp want got &&
	cmp ad/adapter_model.safetensors r2/adapter_model.safetensors
'

test_done
