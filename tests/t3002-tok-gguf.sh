#!/bin/sh
# icl-tok encode / decode with a GGUF file as the tokenizer.
. "$(dirname "$0")/lib.sh"

G="$DATA/tok/gguf"
SMOL=${ICL_SMOLLM2_GGUF:-$HOME/.cache/icl/SmolLM2-135M-Instruct.Q4_1.gguf}

test_expect_success 'a GGUF vocabulary encodes and decodes (llama SPM, add_bos from the file)' '
	printf "%s\n" "{\"prompt\":\"Hello\",\"response\":\" world\"}" "{\"text\":\"   Hello\\n\"}" >r.jsonl &&
	icl-tok encode -t "$G/ggml-vocab-llama-spm.gguf" r.jsonl >r.tok &&
	head -1 r.tok | grep -q "^#icl-tokens 1 fingerprint=xxh3:[0-9a-f]\{16\} vocab_size=668 bos=1 eos=2 " &&
	sed -n 2p r.tok | grep -q "^1 " &&
	icl-tok decode -t "$G/ggml-vocab-llama-spm.gguf" r.tok >back.jsonl &&
	test_cmp r.jsonl back.jsonl
'

test_expect_success 'a GGUF without a tokenizer is refused by name' '
	head -c 100 "$G/ggml-vocab-gpt-2.gguf" >cut.gguf &&
	echo "{\"text\":\"x\"}" >x.jsonl &&
	test_must_fail icl-tok encode -t cut.gguf x.jsonl 2>err &&
	test_grep "cut.gguf" err
'

if [ -r "$SMOL" ]; then
test_expect_success 'SmolLM2 GGUF: transformers'"'"' ids, no BOS (add_bos_token false), EOS 2' '
	echo "{\"text\":\"Hello world, 12345 tokens! 你好\"}" >h.jsonl &&
	icl-tok encode -t "$SMOL" h.jsonl >h.tok &&
	head -1 h.tok | grep -q " vocab_size=49152 bos=-1 eos=2 pad=2 " &&
	printf "\t19556 905 28 216 33 34 35 36 37 17837 17 216 18645 250 48392 138 2\n" >want &&
	tail -1 h.tok >got && test_cmp want got &&
	icl-tok decode -t "$SMOL" h.tok >back && test_cmp h.jsonl back
'
test_expect_success 'SmolLM2 GGUF: <|im_start|> is special (parsed only with --parse-special)' '
	echo "{\"text\":\"<|im_start|>user\"}" >s.jsonl &&
	icl-tok encode -t "$SMOL" --parse-special --no-eos s.jsonl | tail -1 >got &&
	printf "\t1 4093\n" >want && test_cmp want got &&
	icl-tok encode -t "$SMOL" --no-eos s.jsonl 2>/dev/null | tail -1 | grep -qv "^	1 "
'
else
test_skip 'SmolLM2 GGUF encode' "$SMOL missing (make deps fetches it)"
test_skip 'SmolLM2 GGUF specials' "$SMOL missing"
fi

# spm_gguf FILE [UNK]: a SentencePiece ("llama") tokenizer GGUF written by
# hand: <s> </s> ▁ a b ▁a <0xC3> <0xA9> (é's bytes), and <unk> as
# tokenizer.ggml.unknown_token_id when UNK is given.
spm_gguf() {
	python3 - "$@" <<'PY'
import struct, sys
def s(b): b = b.encode(); return struct.pack("<Q", len(b)) + b
toks = ["<s>", "</s>", "\u2581", "a", "b", "\u2581a", "<0xC3>", "<0xA9>"]
types = [3, 3, 1, 1, 1, 1, 6, 6]
unk = len(sys.argv) > 2
if unk:
    toks.append("<unk>"); types.append(2)
kv = [("general.architecture", 8, s("llama")), ("tokenizer.ggml.model", 8, s("llama")),
      ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(toks)) + b"".join(s(t) for t in toks)),
      ("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, len(toks)) + struct.pack("<%df" % len(toks), *[-float(i) for i in range(len(toks))])),
      ("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, len(toks)) + struct.pack("<%di" % len(toks), *types)),
      ("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 0)), ("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 1))]
if unk:
    kv.append(("tokenizer.ggml.unknown_token_id", 4, struct.pack("<I", 8)))
out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(s(k) + struct.pack("<I", t) + v for k, t, v in kv)
open(sys.argv[1], "wb").write(out)
PY
}

test_expect_success 'a SentencePiece GGUF without an unknown token refuses a character it cannot spell, naming it' '
	spm_gguf spm.gguf &&
	printf "%s\n" "{\"prompt\":\"a b\",\"response\":\"ab\"}" "{\"prompt\":\"a\",\"response\":\"b\\u00e9\"}" >ok.jsonl &&
	icl-tok encode -t spm.gguf ok.jsonl >ok.tok &&
	printf "%s\n" "{\"prompt\":\"a\",\"response\":\"b\\u00fc a\"}" >bad.jsonl &&
	cat ok.jsonl bad.jsonl >mixed.jsonl &&
	test_must_fail icl-tok encode -t spm.gguf mixed.jsonl >out 2>err &&
	test_grep "mixed.jsonl:3: \"response\": character 2 (byte 1), U+00FC .*: the tokenizer has no token for it, no byte-fallback token and no unknown token: refused rather than dropped" err &&
	spm_gguf unk.gguf unk &&
	icl-tok encode -t unk.gguf bad.jsonl >unk.tok &&
	grep -q "	.* 8 " unk.tok
'

test_done
