#!/bin/sh
# icl-train's run folder: the lock, refusal of another run's checkpoints,
# resume checks naming what differs, --resume-if-possible, stale temporaries,
# checkpoint rotation (--save-total-limit, --load-best-model-at-end),
# --save-only-model, the log history across resume, a closed metrics pipe.
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"

awk 'BEGIN { srand(7); for (e = 0; e < 24; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok
awk 'BEGIN { srand(11); for (e = 0; e < 8; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >val.tok
A="-m $LLAMA --batch-size 4 --threads 1"

test_expect_success 'a second run on a folder in use is refused while the first runs (named once, with or without a trailing slash)' '
	icl-train -q $A --max-steps 100000 -o busy rand.tok >m.busy 2>err.busy &
	pid=$! &&
	i=0; while ! [ $(cat m.busy 2>/dev/null | wc -l) -ge 1 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done &&
	{ icl-train -q $A --max-steps 2 -o busy rand.tok >m2 2>err; echo $? >rc.second; } &&
	{ icl-train -q $A --max-steps 2 -o busy/ rand.tok >m3 2>err3; echo $? >rc.third; } &&
	kill -TERM $pid &&
	{ wait $pid; echo $? >rc.first; } &&
	test "$(cat rc.first)" -eq 143 &&
	test "$(cat rc.second)" -eq 1 &&
	test_grep "busy: in use by another icl-train (busy/.lock is locked)" err &&
	! test -s m2 &&
	test "$(cat rc.third)" -eq 1 &&
	test_grep "busy/: in use by another icl-train (busy/.lock is locked)" err3 &&
	icl-train -q $A --max-steps 2 -o busy --overwrite-output-dir rand.tok >m2 2>err &&
	test $(wc -l <m2) -eq 2
'

test_expect_success 'a new run into a folder with another run'"'"'s checkpoints is refused' '
	icl-train -q $A --max-steps 8 --save-every 4 -o rc rand.tok >m8 &&
	test_must_fail icl-train -q $A --max-steps 4 -o rc rand.tok >m4 2>err &&
	test_grep "rc: holds checkpoints of another run (checkpoint-8 ...): continue it with --resume" err &&
	! test -s m4 && test -d rc/checkpoint-8 && test -d rc/checkpoint-4
'

test_expect_success '--overwrite-output-dir deletes them; --resume then continues the new run' '
	icl-train $A --max-steps 4 -o rc --overwrite-output-dir rand.tok >m4 2>err &&
	test_grep "deleted 2 checkpoints of an earlier run" err &&
	test "$(ls rc | grep checkpoint)" = "checkpoint-4" &&
	cp rc/model.safetensors m4.safetensors &&
	icl-train -q $A --max-steps 4 -o rc --resume rand.tok >m4r &&
	test_cmp m4 m4r &&
	cmp m4.safetensors rc/model.safetensors
'

test_expect_success 'a LoRA run into a model folder, or a full run into an adapter folder, is refused (-m DIR would load the other); --overwrite-output-dir deletes the other kind'"'"'s files' '
	icl-train -q $A --max-steps 1 -o kind rand.tok >/dev/null && rm -r kind/checkpoint-1 &&
	test_must_fail icl-train -q $A --lora-r 2 --max-steps 1 -o kind rand.tok >m 2>err &&
	test_grep "kind: holds a model (config.json, model.safetensors, generation_config.json): this run.s adapter would be written beside it, and -m kind would load that model and ignore the adapter; give another -o, or --overwrite-output-dir" err &&
	! test -s m && test -f kind/config.json && ! test -e kind/adapter_config.json &&
	icl-train $A --lora-r 2 --max-steps 1 -o kind --overwrite-output-dir rand.tok >m 2>err &&
	test_grep "kind: deleted config.json, model.safetensors, generation_config.json of an earlier model (--overwrite-output-dir)" err &&
	! test -e kind/config.json && ! test -e kind/model.safetensors && test -f kind/adapter_config.json &&
	rm -r kind/checkpoint-1 &&
	test_must_fail icl-train -q $A --max-steps 1 -o kind rand.tok 2>err &&
	test_grep "kind: holds a LoRA adapter (adapter_config.json, adapter_model.safetensors): this run.s model would be written beside it" err &&
	icl-train -q $A --max-steps 1 -o kind --overwrite-output-dir rand.tok >/dev/null 2>err &&
	! test -e kind/adapter_config.json && ! test -e kind/adapter_model.safetensors && test -f kind/config.json
'

test_expect_success 'a LoRA run whose -o is the base model'"'"'s own folder is refused, even with --overwrite-output-dir, and deletes nothing' '
	icl-train -q $A --max-steps 1 -o base rand.tok >/dev/null &&
	test_must_fail icl-train -q -m base/ --threads 1 --lora-r 2 --max-steps 1 -o ./base --overwrite-output-dir rand.tok 2>err &&
	test_grep "^icl-train: -o ./base is the folder of -m base/, which this run starts from: its results would be written over or beside it; give another -o$" err &&
	test -f base/config.json && test -f base/model.safetensors && test -d base/checkpoint-1 && ! test -e base/adapter_config.json
'

test_expect_success '--resume names every setting that differs' '
	test_must_fail icl-train -q $A --max-steps 4 --lr 1e-3 --schedule cosine -o rc --resume rand.tok 2>err &&
	test_grep "rc/checkpoint-4: cannot resume: --lr is 0.001 here but 5e-05 in the checkpoint; --schedule is cosine here but linear in the checkpoint (give the same" err &&
	test_must_fail icl-train -q $A --max-steps 5 -o rc --resume rand.tok 2>err &&
	test_grep "the number of steps (--epochs, --max-steps) is 5 here but 4 in the checkpoint" err &&
	test_grep "or to train further start a new run from the model it wrote: icl-train -m rc -o NEW_DIR" err &&
	test_must_fail icl-train -q $A --max-steps 5 --lr 1e-3 -o rc --resume rand.tok 2>err &&
	! test_grep "to train further" err &&
	icl-train -q $A --lora-r 2 --max-steps 2 -o lr rand.tok >/dev/null &&
	test_must_fail icl-train -q $A --lora-r 2 --max-steps 3 -o lr --resume rand.tok 2>err &&
	test_grep "from the adapter it wrote: icl-train -m BASE --adapter lr -o NEW_DIR" err &&
	mkdir cut && cp -R lr/checkpoint-2 cut/ &&
	test_must_fail icl-train -q $A --lora-r 2 --max-steps 3 -o cut --resume rand.tok 2>err &&
	test_grep "from the adapter it wrote: icl-train -m BASE --adapter cut/checkpoint-2 -o NEW_DIR" err &&
	icl-train -q $A --adapter cut/checkpoint-2 --max-steps 1 -o cut2 rand.tok >/dev/null &&
	test -f cut2/adapter_model.safetensors &&
	mkdir rcut && cp -R rc/checkpoint-4 rcut/ &&
	test_must_fail icl-train -q $A --max-steps 5 -o rcut --resume rand.tok 2>err &&
	test_grep "from the model it wrote: icl-train -m rcut/checkpoint-4 -o NEW_DIR" err &&
	mkdir other && cp "$LLAMA"/* other/ && sed "s/\"rms_norm_eps\"/ \"rms_norm_eps\"/" "$LLAMA/config.json" >other/config.json &&
	! cmp -s other/config.json "$LLAMA/config.json" &&
	test_must_fail icl-train -q -m other --batch-size 4 --threads 1 --max-steps 4 -o rc --resume rand.tok 2>err &&
	test_grep "cannot resume: the model (xxh3 of -m'"'"'s config.json) is xxh3:[0-9a-f]* here but xxh3:" err &&
	head -20 rand.tok >less.tok &&
	test_must_fail icl-train -q $A --max-steps 4 -o rc --resume less.tok 2>err &&
	test_grep "the number of examples is 20 here but 24 in the checkpoint; the training data (xxh3 of the kept examples) is xxh3:" err
'

test_expect_success '--resume without a checkpoint fails; --resume-if-possible starts afresh' '
	test_must_fail icl-train -q $A --max-steps 2 -o fresh --resume rand.tok 2>err &&
	test_grep "fresh: no complete checkpoint to resume from (--resume-if-possible starts afresh then)" err &&
	icl-train -q $A --max-steps 2 -o fresh --resume-if-possible rand.tok >m 2>err &&
	test_grep "no checkpoint to resume from: starting a new run" err &&
	test $(wc -l <m) -eq 2 && test -d fresh/checkpoint-2
'

test_expect_success '--resume takes the newest checkpoint-N by its canonical name: checkpoint-02 is no checkpoint (was: resumed a missing checkpoint-2)' '
	icl-train -q $A --max-steps 2 --save-steps 1 -o zero rand.tok >/dev/null &&
	mv zero/checkpoint-2 zero/checkpoint-02 &&
	icl-train $A --max-steps 2 --save-steps 1 -o zero --resume rand.tok >m 2>err &&
	test_grep "resuming from zero/checkpoint-1" err && test $(wc -l <m) -eq 2 &&
	test -d zero/checkpoint-2 && test -d zero/checkpoint-02
'

test_expect_success 'temporaries left by a killed run are removed on the next start' '
	mkdir rc/.tmp-checkpoint-6.AbCdEf && echo x >rc/.tmp-checkpoint-6.AbCdEf/model.safetensors &&
	echo x >rc/model.safetensors.tmp.XyZ123 && echo keep >rc/notes.txt &&
	icl-train $A --max-steps 4 -o rc --resume rand.tok >m 2>err &&
	test_grep "removing rc/.tmp-checkpoint-6.AbCdEf, left by an interrupted run" err &&
	test_grep "removing rc/model.safetensors.tmp.XyZ123, left by an interrupted run" err &&
	! test -e rc/.tmp-checkpoint-6.AbCdEf && ! test -e rc/model.safetensors.tmp.XyZ123 &&
	test -f rc/notes.txt
'

if [ "$(id -u)" = 0 ]; then
	test_skip 'an unwritable -o is found before step 1' 'root writes anywhere'
else
	test_expect_success 'an unwritable -o is found before step 1' '
		mkdir ro && chmod 555 ro &&
		test_must_fail icl-train -q $A --max-steps 2 --save-every 0 -o ro rand.tok >m 2>err &&
		chmod 755 ro &&
		test_grep "ro: not writable" err && ! test -s m
	'
fi

test_expect_success '--save-total-limit keeps the newest N' '
	icl-train -q $A --max-steps 10 --save-every 2 --save-total-limit 2 -o rot rand.tok >m &&
	test "$(ls rot | grep checkpoint | tr "\n" " ")" = "checkpoint-10 checkpoint-8 "
'

test_expect_success '--save-total-limit with --load-best-model-at-end keeps the best too, loads it and names it' '
	icl-train $A --max-steps 12 --lr 0.05 --save-every 2 --eval-every 2 --valid val.tok --save-total-limit 1 \
		--load-best-model-at-end -o best rand.tok >m 2>err &&
	best=$(grep val_loss m | sed "s/.*\"step\": \([0-9]*\),.*\"val_loss\": \([0-9.e+-]*\)}/\2 \1/" | sort -k1,1g -k2,2n | head -1 | cut -d" " -f2) &&
	echo "best step $best" &&
	test "$best" -lt 12 &&
	test "$(ls best | grep checkpoint | sort | tr "\n" " ")" = "$(printf "checkpoint-%s\ncheckpoint-12\n" $best | sort | tr "\n" " ")" &&
	cmp best/model.safetensors best/checkpoint-$best/model.safetensors &&
	test_grep "\"best_model_checkpoint\": \"best/checkpoint-$best\"" best/checkpoint-12/trainer_state.json &&
	test_grep "^icl-train: done: 12 steps; model of the best checkpoint, best/checkpoint-$best (val_loss [0-9.]*), in best; last checkpoint best/checkpoint-12$" err
'

test_expect_success 'a best_model_checkpoint edited to a short name that is no checkpoint-N is refused by name on --resume (was read past its end by the rotation)' '
	icl-train -q $A --max-steps 6 --save-every 2 --eval-every 2 --valid val.tok --save-total-limit 2 \
		--load-best-model-at-end -o hb rand.tok >/dev/null &&
	rm -r hb/checkpoint-6 && mkdir hb/x &&
	st=$(ls -d hb/checkpoint-* | sort -t- -k2 -n | tail -1) &&
	sed -e "s|\"best_model_checkpoint\": \"[^\"]*\"|\"best_model_checkpoint\": \"hb/x\"|" \
		-e "s|\"best_metric\": [0-9.e+-]*|\"best_metric\": 0.0|" $st/trainer_state.json >st &&
	cp st $st/trainer_state.json && test_grep "\"best_model_checkpoint\": \"hb/x\"" $st/trainer_state.json &&
	test_grep "\"best_metric\": 0.0" $st/trainer_state.json &&
	test_must_fail icl-train -q $A --max-steps 6 --save-every 2 --eval-every 2 --valid val.tok --save-total-limit 2 \
		--load-best-model-at-end -o hb --resume rand.tok >/dev/null 2>err &&
	test_grep "trainer_state.json: \"best_model_checkpoint\" \"hb/x\" is no checkpoint-N folder (edited by hand?)" err &&
	test ! -e hb/checkpoint-6
'

test_expect_success 'best_model_checkpoint is read in the run folder by its last part: a moved run keeps its best, a path outside it leads nowhere else' '
	B="--max-steps 12 --lr 0.05 --save-every 2 --eval-every 2 --valid val.tok --load-best-model-at-end" &&
	icl-train -q $A $B -o mv1 rand.tok >m &&
	best=$(grep val_loss m | sed "s/.*\"step\": \([0-9]*\),.*\"val_loss\": \([0-9.e+-]*\)}/\2 \1/" | sort -k1,1g -k2,2n | head -1 | cut -d" " -f2) &&
	echo "best step $best" && test "$best" -lt 10 &&
	mv mv1 mv2 && rm -r mv2/checkpoint-12 mv2/model.safetensors &&
	test_grep "\"best_model_checkpoint\": \"mv1/checkpoint-$best\"" mv2/checkpoint-10/trainer_state.json &&
	mkdir -p elsewhere && cp -r mv2/checkpoint-10 elsewhere/checkpoint-$best &&
	sed "s|\"best_model_checkpoint\": \"[^\"]*\"|\"best_model_checkpoint\": \"$PWD/elsewhere/checkpoint-$best\"|" \
		mv2/checkpoint-10/trainer_state.json >st && cp st mv2/checkpoint-10/trainer_state.json &&
	icl-train $A $B --save-total-limit 2 -o mv2 --resume rand.tok >/dev/null 2>err &&
	test_grep "^icl-train: loading the best model (val_loss [0-9.]*) from mv2/checkpoint-$best$" err &&
	cmp mv2/model.safetensors mv2/checkpoint-$best/model.safetensors &&
	test "$(ls mv2 | grep checkpoint | sort | tr "\n" " ")" = "$(printf "checkpoint-%s\ncheckpoint-12\n" $best | sort | tr "\n" " ")" &&
	test_grep "\"best_model_checkpoint\": \"mv2/checkpoint-$best\"" mv2/checkpoint-12/trainer_state.json
'

test_expect_success 'a best checkpoint deleted by hand keeps its val_loss: no worse one is taken for the best, the last model stays' '
	B="--max-steps 12 --lr 0.05 --save-every 2 --eval-every 2 --valid val.tok --load-best-model-at-end" &&
	icl-train -q $A $B -o gone rand.tok >m &&
	best=$(grep val_loss m | sed "s/.*\"step\": \([0-9]*\),.*\"val_loss\": \([0-9.e+-]*\)}/\2 \1/" | sort -k1,1g -k2,2n | head -1 | cut -d" " -f2) &&
	test "$best" -lt 10 &&
	rm -r gone/checkpoint-12 gone/checkpoint-$best &&
	icl-train $A $B -o gone --resume rand.tok >/dev/null 2>err &&
	test_grep "the best checkpoint so far, gone/checkpoint-$best (val_loss [0-9.]*), is gone: only a lower val_loss makes a new best" err &&
	test_grep "^icl-train: the best checkpoint, gone/checkpoint-$best (val_loss [0-9.]*), is gone: gone gets the last step.s model$" err &&
	test_grep "^icl-train: done: 12 steps; model in gone, last checkpoint gone/checkpoint-12$" err &&
	cmp gone/model.safetensors gone/checkpoint-12/model.safetensors &&
	test_grep "\"best_model_checkpoint\": \"gone/checkpoint-$best\"" gone/checkpoint-12/trainer_state.json
'

test_expect_success 'best_model_checkpoint not a string, or best_metric not a number, is refused by name on --resume' '
	B="--max-steps 4 --save-every 2 --eval-every 2 --valid val.tok --load-best-model-at-end" &&
	icl-train -q $A $B -o bn rand.tok >/dev/null && rm -r bn/checkpoint-4 &&
	cp bn/checkpoint-2/trainer_state.json st.orig &&
	sed "s|\"best_model_checkpoint\": \"[^\"]*\"|\"best_model_checkpoint\": 42|" st.orig >bn/checkpoint-2/trainer_state.json &&
	test_must_fail icl-train -q $A $B -o bn --resume rand.tok >/dev/null 2>err &&
	test_grep "trainer_state.json: \"best_model_checkpoint\" is neither a string nor null (edited by hand?)" err &&
	sed "s|\"best_metric\": [0-9.e+-]*|\"best_metric\": \"x\"|" st.orig >bn/checkpoint-2/trainer_state.json &&
	test_must_fail icl-train -q $A $B -o bn --resume rand.tok >/dev/null 2>err &&
	test_grep "trainer_state.json: \"best_metric\" is not a number, with \"best_model_checkpoint\" \"bn/checkpoint-2\" (edited by hand?)" err
'

test_expect_success 'LoRA with --load-best-model-at-end: OUT_DIR gets the adapter of the best checkpoint' '
	icl-train $A --lora-r 4 --max-steps 12 --lr 3 --save-every 2 --eval-every 2 --valid val.tok \
		--load-best-model-at-end -o lb rand.tok >m 2>err &&
	best=$(grep val_loss m | sed "s/.*\"step\": \([0-9]*\),.*\"val_loss\": \([0-9.e+-]*\)}/\2 \1/" | sort -k1,1g -k2,2n | head -1 | cut -d" " -f2) &&
	echo "best step $best" && test "$best" -lt 12 &&
	cmp lb/adapter_model.safetensors lb/checkpoint-$best/adapter_model.safetensors &&
	! cmp lb/adapter_model.safetensors lb/checkpoint-12/adapter_model.safetensors &&
	test_grep "^icl-train: loading the best adapter (val_loss [0-9.]*) from lb/checkpoint-$best$" err &&
	test_grep "^icl-train: done: 12 steps; adapter of the best checkpoint, lb/checkpoint-$best" err &&
	rm -r lb/checkpoint-12 &&
	sed "s|\"lora_alpha\": [0-9.]*|\"lora_alpha\": 99|" lb/checkpoint-$best/adapter_config.json >ac &&
	cp ac lb/checkpoint-$best/adapter_config.json &&
	test_must_fail icl-train -q $A --lora-r 4 --max-steps 12 --lr 3 --save-every 2 --eval-every 2 --valid val.tok \
		--load-best-model-at-end -o lb --resume rand.tok >/dev/null 2>err &&
	test_grep "lb/checkpoint-$best: the best checkpoint is not this run.s adapter: lora_alpha is 8 here but 99 in the checkpoint" err
'

test_expect_success 'resuming a LoRA run without its LoRA options says so (was: checkpoint-N/config.json missing)' '
	icl-train -q $A --lora-r 2 --max-steps 2 --save-every 1 -o lrn rand.tok >/dev/null && rm -r lrn/checkpoint-2 &&
	test_must_fail icl-train -q $A --max-steps 2 --save-every 1 -o lrn --resume rand.tok >/dev/null 2>err &&
	test_grep "lrn/checkpoint-1 holds a LoRA adapter: resume the run with the LoRA options it was started with" err
'

test_expect_success 'resuming a LoRA run whose checkpoint names no base asks for -m BASE with --resume (was: --adapter, a new run)' '
	sed "s|\"base_model_name_or_path\": \"[^\"]*\"|\"base_model_name_or_path\": \"\"|" lrn/checkpoint-1/adapter_config.json >ac &&
	cp ac lrn/checkpoint-1/adapter_config.json &&
	test_must_fail icl-train -q --batch-size 4 --threads 1 --lora-r 2 --max-steps 2 --save-every 1 -o lrn --resume rand.tok >/dev/null 2>err &&
	test_grep "lrn/checkpoint-1/adapter_config.json names no base_model_name_or_path: give the base, -m BASE with --resume$" err
'

test_expect_code 2 '--load-best-model-at-end needs --valid' 'icl-train $A --load-best-model-at-end -o x rand.tok'
test_expect_code 2 '--eval-every needs --valid' 'icl-train $A --eval-every 2 -o x rand.tok'
test_expect_code 2 '--load-best-model-at-end needs --save-every a multiple of --eval-every' \
	'icl-train $A --valid val.tok --eval-every 3 --save-every 2 --load-best-model-at-end -o x rand.tok'

test_expect_success '--load-best-model-at-end needs --eval-every and --save-every, each named (was: the last step called the best)' '
	{ icl-train $A --valid val.tok --eval-every 2 --load-best-model-at-end -o x rand.tok 2>err; echo $? >rc.lb; } &&
	test "$(cat rc.lb)" -eq 2 &&
	test_grep "load-best-model-at-end needs --save-every N, a multiple of --eval-every (only saved checkpoints can be loaded)" err &&
	{ icl-train $A --valid val.tok --save-every 2 --load-best-model-at-end -o x rand.tok 2>err; echo $? >rc.lb; } &&
	test "$(cat rc.lb)" -eq 2 &&
	test_grep "load-best-model-at-end needs --eval-every N (without it the run validates only at its end)" err &&
	test ! -e x
'

test_expect_success '--save-only-model: no optimizer state, and --resume says it cannot' '
	icl-train -q $A --max-steps 3 --save-every 2 --save-only-model -o slim rand.tok >m &&
	test -f slim/checkpoint-2/model.safetensors && ! test -e slim/checkpoint-2/optimizer.safetensors &&
	test_must_fail icl-train -q $A --max-steps 3 -o slim --resume rand.tok 2>err &&
	test_grep "slim/checkpoint-3: saved with --save-only-model (no optimizer state): it cannot be resumed; start a new run from it with -m slim/checkpoint-3$" err &&
	icl-train -q $A --lora-r 2 --max-steps 2 --save-every 1 --save-only-model -o slimlo rand.tok >m &&
	test_must_fail icl-train -q $A --lora-r 2 --max-steps 2 -o slimlo --resume rand.tok 2>err &&
	test_grep "start a new run from its adapter with -m BASE --adapter slimlo/checkpoint-2$" err &&
	icl-train -q $A --adapter slimlo/checkpoint-2 --max-steps 1 -o slimlo2 rand.tok >m &&
	test -f slimlo2/adapter_model.safetensors
'

test_expect_success 'trainer_state.json keeps the log history; --resume re-emits it, --no-log-history not' '
	icl-train -q $A --max-steps 6 --log-every 2 --save-every 3 -o hist rand.tok >m.full &&
	test $(wc -l <m.full) -eq 3 &&
	grep -c "\"tokens_per_s\"" hist/checkpoint-6/trainer_state.json >n && test "$(cat n)" -eq 3 &&
	grep -c "\"tokens_per_s\"" hist/checkpoint-3/trainer_state.json >n && test "$(cat n)" -eq 1 &&
	mkdir h2 && cp -r hist/checkpoint-3 h2/ &&
	icl-train -q $A --max-steps 6 --log-every 2 --save-every 3 -o h2 --resume rand.tok >m.res &&
	head -1 m.full >a && head -1 m.res >b && test_cmp a b &&
	sed "s/, \"tokens_per_s\": [0-9.]*//" m.full >a && sed "s/, \"tokens_per_s\": [0-9.]*//" m.res >b && test_cmp a b &&
	rm -r h2/checkpoint-6 &&
	icl-train -q $A --max-steps 6 --log-every 2 --save-every 3 -o h2 --resume --no-log-history rand.tok >m.new &&
	test $(wc -l <m.new) -eq 2 && grep -q "\"step\": 4," m.new
'

test_expect_success 'a closed metrics pipe (| head -1) saves a checkpoint and exits 141' '
	{ icl-train -q $A --max-steps 100000 --schedule constant -o pipe rand.tok 2>err; echo $? >rc.pipe; } | head -1 >first &&
	test "$(cat rc.pipe)" -eq 141 &&
	test_grep "\"step\": 1," first &&
	test_grep "interrupted at step" err &&
	ck=$(ls pipe | grep "^checkpoint-" | sed "s/checkpoint-//") &&
	test -f pipe/checkpoint-$ck/optimizer.safetensors
'

test_expect_success '--epochs accepts fractions (ceil of the fraction of an epoch'"'"'s steps); the summary says what runs' '
	icl-train $A --epochs 0.5 -o half rand.tok >m 2>err &&
	test $(wc -l <m) -eq 3 && test_grep "steps 3 (from 0) epochs 0.5 " err &&
	icl-train $A --epochs 1.4 -o more rand.tok >m 2>err &&
	test $(wc -l <m) -eq 9 && test_grep "steps 9 (from 0) epochs 1.4 " err &&
	icl-train $A --max-steps 9 -o ms rand.tok >m 2>err &&
	test_grep "steps 9 (from 0) epochs 1.5 " err
'
test_expect_success 'the metrics'"'"' epoch counts steps as the summary does, across resume (packing: examples per step vary)' '
	P="-m $LLAMA --batch-size 2 --seq-len 24 --packing --threads 1" &&
	icl-train $P --max-steps 8 -o ep rand.tok >m 2>err &&
	test_grep "steps 8 (from 0) epochs 1.6 " err &&
	sed "s/, \"loss.*//" m >epochs &&
	printf "{\"step\": %d, \"epoch\": %s\n" 1 0.2 2 0.4 3 0.6 4 0.8 5 1 6 1.2 7 1.4 8 1.6 >expect &&
	test_cmp expect epochs &&
	grep -m1 "\"epoch\": " ep/checkpoint-8/trainer_state.json | grep -q "\"epoch\": 1.6" &&
	icl-train $P --max-steps 8 --save-every 3 -o ep2 rand.tok >/dev/null 2>&1 &&
	rm -r ep2/checkpoint-6 ep2/checkpoint-8 &&
	icl-train $P --max-steps 8 --save-every 3 --resume -o ep2 rand.tok >m2 2>err &&
	sed "s/, \"loss.*//" m2 >epochs2 &&
	test_cmp expect epochs2
'
test_expect_code 2 '--epochs 0 is a usage error' 'icl-train $A --epochs 0 -o x rand.tok'

test_expect_success 'paths are printed without doubled slashes' '
	icl-train $A --max-steps 2 -o slash/ rand.tok >m 2>err &&
	test_grep "last checkpoint slash/checkpoint-2" err &&
	! grep -q "//" err
'

test_expect_success 'checkpoint and model folders get the same permissions (the umask)' '
	(umask 027 && icl-train -q $A --max-steps 2 -o perm rand.tok >m) &&
	test "$(stat -c %a perm)" = 750 && test "$(stat -c %a perm/checkpoint-2)" = 750 &&
	(umask 022 && icl-train -q $A --max-steps 2 -o perm2 rand.tok >m) &&
	test "$(stat -c %a perm2)" = 755 && test "$(stat -c %a perm2/checkpoint-2)" = 755
'

test_expect_success 'messages name the cause (issue 18 defect 12): sizes, and an id past 2^63' '
	TOK512="$DATA/tok/bytelevel-512.json" &&
	test_must_fail icl-train -q --arch llama --hidden-size 30 --num-attention-heads 4 -t "$TOK512" -o sz rand.tok 2>err &&
	test_grep "hidden-size 30 is not a multiple of --num-attention-heads 4" err &&
	test_must_fail icl-train -q --arch llama --hidden-size 28 --num-attention-heads 4 -t "$TOK512" -o sz rand.tok 2>err &&
	test_grep "head_dim 7 (--hidden-size / --num-attention-heads) must be even for rotary embeddings" err &&
	printf "1 2\t18446744073709551616\n" >big.tok &&
	test_must_fail icl-train -q $A -o big big.tok 2>err &&
	test_grep "big.tok:1: token id 18446744073709551616 is out of range (ids are below 2^31)" err
'

test_expect_success 'a checkpoint edited by hand is refused by name: moments (NaN, a negative second moment, a transposed shape), its step, its format' '
	icl-train -q $A --lora-r 2 --lora-targets q_proj --max-steps 3 --save-every 2 -o hcfull rand.tok >m &&
	mkdir hc0 && cp -r hcfull/checkpoint-2 hc0/ &&
	edit_moment() { # FOLDER TENSOR-SUFFIX VALUE|transpose
		python3 -c "import json,struct,sys
p=sys.argv[1]+\"/checkpoint-2/optimizer.safetensors\"; f=open(p,\"rb\"); n=struct.unpack(\"<Q\",f.read(8))[0]; h=json.loads(f.read(n)); d=bytearray(f.read())
k=[k for k in h if k.endswith(sys.argv[2])][0]; a,b=h[k][\"data_offsets\"]
if sys.argv[3]==\"transpose\": h[k][\"shape\"]=h[k][\"shape\"][::-1]
else: d[a:a+4]=struct.pack(\"<f\",float(sys.argv[3]))
hb=json.dumps(h).encode(); open(p,\"wb\").write(struct.pack(\"<Q\",len(hb))+hb+d)" "$@"
	} &&
	for c in "exp_avg nan first" "exp_avg_sq -1 second" "exp_avg_sq inf second"; do
		set -- $c && rm -rf hc && cp -r hc0 hc && edit_moment hc "lora_A.weight.$1" "$2" &&
		test_must_fail icl-train -q $A --lora-r 2 --lora-targets q_proj --max-steps 3 -o hc --resume rand.tok 2>err &&
		test_grep "hc/checkpoint-2/optimizer.safetensors: base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight.$1\[0\] is -*[a-z0-9]*: not an AdamW $3 moment" err &&
		! test -e hc/checkpoint-3 || return 1
	done &&
	rm -rf hc && cp -r hc0 hc && edit_moment hc lora_A.weight.exp_avg transpose &&
	test_must_fail icl-train -q $A --lora-r 2 --lora-targets q_proj --max-steps 3 -o hc --resume rand.tok 2>err &&
	test_grep "lora_A.weight.exp_avg has shape \[64, 2\], its parameter.s is \[2, 64\]" err &&
	rm -rf hc && cp -r hc0 hc &&
	sed "s/\"step\": 2,/\"step\": 4611686018427387904,/" hc0/checkpoint-2/trainer_state.json >hc/checkpoint-2/trainer_state.json &&
	test_must_fail icl-train -q $A --lora-r 2 --lora-targets q_proj --max-steps 3 -o hc --resume rand.tok 2>err &&
	test_grep "trainer_state.json: \"icl.step\" is 4611686018427387904, but the folder is checkpoint-2" err &&
	sed "s/icl-trainer-state 1/icl-trainer-state 99/" hc0/checkpoint-2/trainer_state.json >hc/checkpoint-2/trainer_state.json &&
	test_must_fail icl-train -q $A --lora-r 2 --lora-targets q_proj --max-steps 3 -o hc --resume rand.tok 2>err &&
	test_grep "\"icl.format\" is \"icl-trainer-state 99\", not \"icl-trainer-state 1\"" err &&
	rm -rf hc && cp -r hc0 hc &&
	icl-train -q $A --lora-r 2 --lora-targets q_proj --max-steps 3 -o hc --resume rand.tok >m &&
	test -d hc/checkpoint-3
'

test_expect_success '--adapter given twice is refused' '
	test_must_fail icl-train -q $A -o two --adapter hcfull --adapter hcfull rand.tok 2>err &&
	test_grep "icl-train: --adapter hcfull: given twice (icl-train starts from one adapter" err
'

test_done
