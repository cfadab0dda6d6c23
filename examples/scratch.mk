# examples/scratch.mk - the earlier demo (`make demo-scratch`): what
# instruction tuning is for, on a model pre-trained from scratch.
#
# A small Llama-family model is pre-trained from scratch on web text (C4
# sample), then instruction-tuned on Alpaca instructions plus two
# classification tasks phrased as instructions (Amazon review polarity, AG
# News topic).  The pre-trained-only model ("base") and the tuned model
# ("tuned") are compared on held-out prompts: response perplexity, how often
# generation ends by itself (EOS), and classification accuracy against the
# majority-class baseline.  Everything is made by the icl programs; awk, sed,
# gnuplot and python3 only move numbers around.
#
#   make -C examples -f scratch.mk             run what is out of date, print the report
#   make -C examples -f scratch.mk THREADS=2   (default 1, see THREADS below)
#   make -C examples -f scratch.mk clean       remove out-scratch/
#
# Every step is a file under out-scratch/; change a variable or a file and only what
# follows is rebuilt.  Each knob below is recorded in out/params/NAME, so a
# changed knob rebuilds from the first step that uses it.
# Provenance and licences of data/: data/MANIFEST.md.

BIN     ?= $(abspath ../bin)
O       ?= out-scratch
D       ?= data
# One thread by default: the demo's model is so small that a second thread
# gains little, and on a busy 2-core machine the programs' fine-grained
# parallel regions lose a lot (measured: icl-train 11x slower with 2 threads
# than with 1 at load average 7.5).  THREADS= uses all cores.
THREADS ?= 1
T       := $(if $(THREADS),--threads $(THREADS))

# --- the experiment's knobs -------------------------------------------------
SEED        ?= 1
VOCAB       ?= 2048
# model (Llama: RMSNorm, RoPE, SwiGLU; about 1.3M parameters)
HIDDEN      ?= 128
LAYERS      ?= 4
HEADS       ?= 4
KV_HEADS    ?= 4
FFN         ?= 352
# pre-training on C4 text, in chunks of SEQ-1 tokens
SEQ         ?= 256
PT_STEPS    ?= 250
PT_LR       ?= 4e-3
# instruction tuning: Alpaca + the classification records CLS_REPEAT times
# (the loss is the mean over the target tokens of a step, and a label is 2-4
# tokens against about 150 for an Alpaca answer, so labels need the repeats)
SFT_EPOCHS  ?= 4
SFT_LR      ?= 2e-3
CLS_REPEAT  ?= 6
BATCH       ?= 8
# generation (greedy) on the held-out prompts
GEN_TOKENS  ?= 256
CLS_TOKENS  ?= 8

PARAMS := SEED VOCAB HIDDEN LAYERS HEADS KV_HEADS FFN SEQ PT_STEPS PT_LR \
          SFT_EPOCHS SFT_LR CLS_REPEAT BATCH GEN_TOKENS CLS_TOKENS

FMT   := $(BIN)/icl-fmt
TOK   := $(BIN)/icl-tok
TRAIN := $(BIN)/icl-train
GEN   := $(BIN)/icl-gen
EVAL  := $(BIN)/icl-eval

MODELS := base tuned
TASKS  := amazon agnews

all: $(O)/REPORT.md
	@sed -n '/^## Before and after/,/^## Loss/p' $< | sed '$$d'
	@echo "report: $(abspath $(O))/REPORT.md   plot: $(abspath $(O))/loss.png"

# One file per knob: a step depends on the knobs it uses, so changing one
# rebuilds what follows it and nothing before.
$(O)/params/%: FORCE
	@mkdir -p $(@D)
	@echo '$($*)' | cmp -s - $@ || echo '$($*)' > $@
FORCE:
p = $(addprefix $(O)/params/,$(1))

# --- 1. records: icl-fmt ----------------------------------------------------
# Alpaca (a JSON array): 899 train, 50 validation, 50 test.
$(O)/alpaca.train.jsonl $(O)/alpaca.rest.jsonl &: $(D)/alpaca_en_demo.json $(call p,SEED)
	@mkdir -p $(O)
	$(FMT) -q --shuffle --seed $(SEED) --split 0.9 --split-out $(O)/alpaca.rest.jsonl $< > $(O)/alpaca.train.jsonl
$(O)/alpaca.valid.jsonl $(O)/alpaca.test.jsonl &: $(O)/alpaca.rest.jsonl
	$(FMT) -q --split 0.5 --seed $(SEED) --split-out $(O)/alpaca.test.jsonl $< > $(O)/alpaca.valid.jsonl

# T0 classification (JSON Lines {prompt, completion}): rendered with the
# same Alpaca template, so they are instructions like the others; the
# literal "<|endoftext|>" ending each completion is removed (the tokenizer
# adds its own EOS).  150 train, 50 test each.
$(O)/amazon.train.jsonl $(O)/amazon.test.jsonl &: $(D)/t0_amazon_polarity_Is_this_review.jsonl $(call p,SEED)
	@mkdir -p $(O)
	sed 's/<|endoftext|>"}$$/"}/' $< | $(FMT) -q --map instruction=prompt,output=completion \
	  --shuffle --seed $(SEED) --split 0.75 --split-out $(O)/amazon.test.jsonl > $(O)/amazon.train.jsonl
$(O)/agnews.train.jsonl $(O)/agnews.test.jsonl &: $(D)/t0_ag_news_classify_with_choices.jsonl $(call p,SEED)
	@mkdir -p $(O)
	sed 's/<|endoftext|>"}$$/"}/' $< | $(FMT) -q --map instruction=prompt,output=completion \
	  --shuffle --seed $(SEED) --split 0.75 --split-out $(O)/agnews.test.jsonl > $(O)/agnews.train.jsonl

# Role-play prompts (a real CSV: CRLF rows, LF and doubled quotes inside
# quoted fields): act -> prompt pairs, 180 train, 20 test.
$(O)/prompts.train.jsonl $(O)/prompts.test.jsonl &: $(D)/awesome_chatgpt_prompts_head200.csv $(call p,SEED)
	@mkdir -p $(O)
	$(FMT) -q --map instruction=act,output=prompt --shuffle --seed $(SEED) --split 0.9 \
	  --split-out $(O)/prompts.test.jsonl $< > $(O)/prompts.train.jsonl

$(O)/cls.test.jsonl: $(TASKS:%=$(O)/%.test.jsonl)
	cat $^ > $@
# the instruction-tuning mix: Alpaca and the role-play prompts once, the
# classification records CLS_REPEAT times
$(O)/sft.jsonl: $(O)/alpaca.train.jsonl $(O)/prompts.train.jsonl $(TASKS:%=$(O)/%.train.jsonl) $(call p,CLS_REPEAT)
	cat $(O)/alpaca.train.jsonl $(O)/prompts.train.jsonl > $@.tmp
	for i in $$(seq $(CLS_REPEAT)); do cat $(TASKS:%=$(O)/%.train.jsonl) >> $@.tmp; done
	mv $@.tmp $@

# --- 2. tokenizer and token lines: icl-tok ---------------------------------
# Byte-level BPE trained on the pre-training text and the training records
# (never on validation or test); <|endoftext|> is id 0 and the EOS.
$(O)/tok.json: $(D)/c4_demo.jsonl $(O)/alpaca.train.jsonl $(O)/prompts.train.jsonl $(TASKS:%=$(O)/%.train.jsonl) $(call p,VOCAB)
	$(TOK) train --vocab-size $(VOCAB) --special '<|endoftext|>' -o $@ $(filter-out $(O)/params/%,$^)

# Pre-training text: each document is one all-target token line; documents
# longer than SEQ-1 tokens are cut into chunks (awk over the ids), EOS at
# the end of the last one.
$(O)/pt.tok: $(D)/c4_demo.jsonl $(O)/tok.json $(call p,SEQ)
	$(TOK) encode -t $(O)/tok.json $< | awk -v n=$$(( $(SEQ) - 1 )) \
	  'BEGIN { FS = OFS = "\t" } \
	   /^#/ || !/^\t/ { print; next } \
	   { m = split($$2, a, " "); \
	     for (i = 1; i <= m; i += n) { s = a[i]; for (j = i + 1; j < i + n && j <= m; j++) s = s " " a[j]; print "", s } }' > $@.tmp
	mv $@.tmp $@

$(O)/%.tok: $(O)/%.jsonl $(O)/tok.json
	$(TOK) encode -t $(O)/tok.json $< > $@

# --- 3. models: icl-train ----------------------------------------------------
# icl-train writes one JSON line of metrics per logged step.
# It checks the token lines' header against the tokenizer it trains with.
$(O)/base/model.safetensors $(O)/base.metrics.jsonl &: $(O)/pt.tok $(O)/alpaca.valid.tok \
    $(call p,HIDDEN LAYERS HEADS KV_HEADS FFN SEQ PT_STEPS PT_LR BATCH SEED)
	rm -rf $(O)/base
	$(TRAIN) -q --arch llama -t $(O)/tok.json -o $(O)/base \
	  --hidden-size $(HIDDEN) --num-hidden-layers $(LAYERS) --num-attention-heads $(HEADS) \
	  --num-key-value-heads $(KV_HEADS) --intermediate-size $(FFN) \
	  --seq-len $(SEQ) --batch-size $(BATCH) --packing --max-steps $(PT_STEPS) \
	  --lr $(PT_LR) --schedule cosine --warmup-steps 10 --min-lr 3e-4 --seed $(SEED) \
	  --valid $(O)/alpaca.valid.tok --eval-every 50 --log-every 10 $(T) $(O)/pt.tok > $(O)/base.metrics.jsonl.tmp
	mv $(O)/base.metrics.jsonl.tmp $(O)/base.metrics.jsonl

$(O)/tuned/model.safetensors $(O)/tuned.metrics.jsonl &: $(O)/base/model.safetensors $(O)/sft.tok \
    $(O)/alpaca.valid.tok $(call p,SEQ SFT_EPOCHS SFT_LR BATCH SEED)
	rm -rf $(O)/tuned
	$(TRAIN) -q -m $(O)/base -o $(O)/tuned \
	  --seq-len $(SEQ) --batch-size $(BATCH) --packing --epochs $(SFT_EPOCHS) \
	  --lr $(SFT_LR) --schedule cosine --warmup-steps 10 --seed $(SEED) \
	  --valid $(O)/alpaca.valid.tok --eval-every 50 --log-every 10 $(T) $(O)/sft.tok > $(O)/tuned.metrics.jsonl.tmp
	mv $(O)/tuned.metrics.jsonl.tmp $(O)/tuned.metrics.jsonl

# --- 4. held-out evaluation, before (base) and after (tuned) ---------------
# response perplexity (target tokens only, per token over the file)
$(O)/%.ppl.alpaca.json: $(O)/%/model.safetensors $(O)/alpaca.test.tok
	$(EVAL) -m $(O)/$* $(T) $(O)/alpaca.test.tok > $@
$(O)/%.ppl.cls.json: $(O)/%/model.safetensors $(O)/cls.test.tok
	$(EVAL) -m $(O)/$* $(T) $(O)/cls.test.tok > $@
$(O)/%.ppl.prompts.json: $(O)/%/model.safetensors $(O)/prompts.test.tok
	$(EVAL) -m $(O)/$* $(T) $(O)/prompts.test.tok > $@

# completions of the held-out prompts (greedy)
$(O)/%.gen.alpaca.jsonl: $(O)/%/model.safetensors $(O)/alpaca.test.jsonl $(call p,GEN_TOKENS)
	$(GEN) -m $(O)/$* --greedy -n $(GEN_TOKENS) $(T) $(O)/alpaca.test.jsonl > $@
$(O)/%.gen.cls.jsonl: $(O)/%/model.safetensors $(O)/cls.test.jsonl $(call p,CLS_TOKENS)
	$(GEN) -m $(O)/$* --greedy -n $(CLS_TOKENS) $(T) $(O)/cls.test.jsonl > $@

# did generation end by itself?  The same greedy decoding on token lines
# (--ids) keeps the EOS id; count the completions that end in it.
$(O)/%.eos.alpaca.json: $(O)/%/model.safetensors $(O)/alpaca.test.tok $(call p,GEN_TOKENS)
	$(GEN) -m $(O)/$* --greedy --ids -n $(GEN_TOKENS) $(T) $(O)/alpaca.test.tok | \
	  awk -v eos=$$(sed -n '1s/.* eos=\([0-9-]*\).*/\1/p' $(O)/alpaca.test.tok) -f eos.awk > $@
$(O)/%.eos.cls.json: $(O)/%/model.safetensors $(O)/cls.test.tok $(call p,CLS_TOKENS)
	$(GEN) -m $(O)/$* --greedy --ids -n $(CLS_TOKENS) $(T) $(O)/cls.test.tok | \
	  awk -v eos=$$(sed -n '1s/.* eos=\([0-9-]*\).*/\1/p' $(O)/cls.test.tok) -f eos.awk > $@

# scores: ROUGE-L/BLEU/F1 on Alpaca; accuracy (first line vs label) per task
$(O)/%.eval.alpaca.json: $(O)/%.gen.alpaca.jsonl
	$(EVAL) $< > $@
$(O)/%.eval.amazon.json: $(O)/%.gen.cls.jsonl
	grep -F 'Is the review positive or negative?' $< | $(EVAL) -M accuracy > $@
$(O)/%.eval.agnews.json: $(O)/%.gen.cls.jsonl
	grep -F 'Is this a piece of news' $< | $(EVAL) -M accuracy > $@

# the majority-class baseline: each test record answered with the most
# frequent label of its task's training records, scored by icl-eval
$(O)/majority.%.json: $(O)/%.train.jsonl $(O)/%.test.jsonl
	label=$$(grep -o '"response":"[^"]*"' $< | sort | uniq -c | sort -k1,1nr | head -1 | sed 's/.*"response":"\(.*\)"/\1/'); \
	sed "s/}\$$/,\"completion\":\"$$label\"}/" $(O)/$*.test.jsonl | $(EVAL) -M accuracy > $@

# --- 5. plot and report ------------------------------------------------------
$(O)/loss.png: $(O)/base.metrics.jsonl $(O)/tuned.metrics.jsonl loss.gp
	awk -f metrics.awk $(O)/base.metrics.jsonl > $(O)/base.loss.dat
	awk -v offset=$$(awk -f metrics.awk $(O)/base.metrics.jsonl | tail -1 | cut -f1) \
	  -f metrics.awk $(O)/tuned.metrics.jsonl > $(O)/tuned.loss.dat
	gnuplot -e "dir='$(O)'" loss.gp

EVALS := $(foreach m,$(MODELS),$(O)/$(m).ppl.alpaca.json $(O)/$(m).ppl.cls.json $(O)/$(m).ppl.prompts.json \
           $(O)/$(m).eos.alpaca.json $(O)/$(m).eos.cls.json $(O)/$(m).eval.alpaca.json \
           $(foreach t,$(TASKS),$(O)/$(m).eval.$(t).json)) \
         $(TASKS:%=$(O)/majority.%.json)

$(O)/REPORT.md: scratch_report.py $(EVALS) $(O)/loss.png $(MODELS:%=$(O)/%.gen.alpaca.jsonl) $(MODELS:%=$(O)/%.gen.cls.jsonl)
	python3 scratch_report.py $(O) $(foreach v,$(PARAMS),$(v)=$($(v))) > $@.tmp
	mv $@.tmp $@

# sha256 of the shipped data against data/MANIFEST.md
verify:
	cd $(D) && sed -n 's/^| `\([^`]*\)` |.*| `\([0-9a-f]\{64\}\)` |.*/\2  \1/p' MANIFEST.md | sha256sum -c

clean:
	rm -rf $(O)

.PHONY: all verify clean FORCE
.DELETE_ON_ERROR:
# keep every step (chained pattern rules would otherwise delete them)
.SECONDARY:
