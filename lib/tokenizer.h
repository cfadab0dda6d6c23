/* tokenizer.h - Hugging Face tokenizer.json: load, encode, decode (BPE).
 *
 * The reference is the Rust crate `tokenizers` (huggingface/tokenizers):
 * encoding runs the same pipeline, and each step mirrors its behaviour:
 *
 *   text --added tokens (AddedVocabulary::extract_and_normalize)--> segments
 *        --normalizer--> --added tokens marked "normalized"--> --pre_tokenizer-->
 *        words --model BPE (merge by rank, ties leftmost)--> ids
 *
 * Supported components (anything else is refused at load time with an error
 * naming the component, never tokenized differently):
 *   model        BPE: vocab, merges ("a b" strings or ["a","b"] pairs),
 *                byte_fallback, unk_token, fuse_unk, ignore_merges,
 *                dropout null or 0, continuing_subword_prefix/end_of_word_suffix
 *                null or "".
 *   normalizer   NFC, NFKC, NFD, NFKD (libutf8proc), Prepend, Replace
 *                (String or Regex), Lowercase, Strip, Sequence.
 *   pre_tokenizer ByteLevel (add_prefix_space, use_regex: GPT-2's regex),
 *                Split (String or Regex pattern, behavior, invert), Digits,
 *                Metaspace (replacement, prepend_scheme, split), Sequence.
 *                Regexes go to PCRE2 (UTF, UCP, JIT) exactly as written.
 *   decoder      ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence.
 *   post_processor TemplateProcessing, ByteLevel, Sequence of those: only
 *                read to learn whether BOS/EOS ids wrap a single sequence.
 *   added_tokens special or not, lstrip, rstrip, single_word, normalized.
 *
 * Regexes: \s and \S mean Oniguruma's White_Space (tokenizers' regex
 * engine), not PCRE2's; otherwise PCRE2 10.42 semantics.  Known limit:
 * characters first assigned in Unicode 15/16 (PCRE2 10.42 knows 14,
 * utf8proc 2.8 knows 15) can pre-tokenize or normalize differently from
 * tokenizers; everything older matched in fuzzing (tests/data/tok/extra).
 *
 * Long words: BPE uses a heap, O(n log n); a word longer than 256 bytes is
 * first cut where no vocabulary token contains the two adjacent units, which
 * is exact (see bpe.c) and keeps a 10 MB line of text fast.
 *
 * Thread safety: a loaded icl_tokenizer is read-only; encoding needs a
 * per-thread icl_tok_state (word cache, regex match data, scratch).
 */
#ifndef ICL_TOKENIZER_H
#define ICL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct icl_tokenizer icl_tokenizer;
typedef struct icl_tok_state icl_tok_state;

/* A growable array of token ids; owned by the struct, free with icl_ids_free. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} icl_ids;
void icl_ids_grow(icl_ids *a); /* make room for one more id */
static inline void icl_ids_push(icl_ids *a, int32_t id)
{
    if (a->n == a->cap)
        icl_ids_grow(a);
    a->v[a->n++] = id;
}
void icl_ids_free(icl_ids *a);
/* The short names still used by lib/generate.c (issue 10, branch core). */
#define ids_push(...) icl_ids_push(__VA_ARGS__)
#define ids_free(...) icl_ids_free(__VA_ARGS__)

/* Largest tokenizer.json read (bytes); real ones are 2-35 MB. */
#define ICL_TOK_MAX_BYTES (512u << 20)

/* Load a tokenizer from `path`: a tokenizer.json file or a directory
 * holding one.  The special ids (the one source of truth for every program:
 * icl-tok, icl-train, icl-gen, icl-eval) come from the files beside it,
 * first found wins: generation_config.json's bos/eos/pad_token_id (eos: the
 * first of a list: the end-of-generation set icl-gen stops at, see
 * icl_gen_config_load), then config.json's, then tokenizer_config.json's
 * bos_token/eos_token/pad_token, then tokenizer.json's post-processor and
 * well-known names.  add_bos_token / add_eos_token come from
 * tokenizer_config.json.  On failure returns NULL with "what is wrong" in err (the
 * caller prefixes the path).  Caller frees with icl_tok_free. */
icl_tokenizer *icl_tok_load(const char *path, char *err, size_t errsz);
/* Load from a JSON text already in memory (len bytes); dir (may be NULL) is
 * where to look for tokenizer_config.json / generation_config.json. */
icl_tokenizer *icl_tok_load_mem(const char *json, size_t len, const char *dir,
                                char *err, size_t errsz);
void icl_tok_free(icl_tokenizer *t);

/* Number of ids: 1 + the largest id of the vocabulary and added tokens. */
int icl_tok_vocab_size(const icl_tokenizer *t);
/* The tokenizer's identity, recorded in token-line headers (toklines.h):
 * XXH3-64 over the pieces by id, the merges by rank, the added tokens, the
 * model options and the components (compact JSON, sorted keys); the same
 * tokenizer saved with other formatting or key order has the same one. */
uint64_t icl_tok_fingerprint(const icl_tokenizer *t);
/* The token string of id (model vocab or added token), its length in *len;
 * NULL if the id is out of range or unassigned.  Owned by t. */
const char *icl_tok_piece(const icl_tokenizer *t, int32_t id, size_t *len);
/* The id of a token string (added tokens first, then the model vocab), or -1. */
int32_t icl_tok_id(const icl_tokenizer *t, const char *s, size_t len);
/* 1 if id is an added token marked special. */
int icl_tok_is_special(const icl_tokenizer *t, int32_t id);

/* Special ids learned from the file and its neighbours; -1 when unknown.
 * add_bos/add_eos: whether the post-processor (or tokenizer_config.json's
 * add_bos_token / add_eos_token, or GGUF's tokenizer.ggml.add_bos_token /
 * add_eos_token) wraps a sequence in them.  eot: end of turn
 * (tokenizer.ggml.eot_token_id; GGUF only), which ends generation as eos does. */
typedef struct {
    int32_t bos, eos, pad, unk;
    int add_bos, add_eos;
    int32_t eot;
} icl_tok_specials;
const icl_tok_specials *icl_tok_get_specials(const icl_tokenizer *t);
/* 1 if the pre-tokenizer is byte level (every string round-trips). */
int icl_tok_is_byte_level(const icl_tokenizer *t);
/* The chat template (Jinja source) kept with the tokenizer: tokenizer_config.json's
 * "chat_template" (a string, or of a list of {name, template} the "default"
 * one), overridden by a chat_template.jinja beside tokenizer.json, or GGUF's
 * tokenizer.chat_template; NULL when there is none.  Owned by t. */
const char *icl_tok_chat_template(const icl_tokenizer *t);

/* Per-thread encoding state: a word cache keyed by XXH3 (as HF's BPE cache,
 * words up to 256 bytes, cleared when full) and regex match data.
 * Free with icl_tok_state_free. */
icl_tok_state *icl_tok_state_new(const icl_tokenizer *t);
void icl_tok_state_free(icl_tok_state *s);
/* How many special added tokens icl_tok_encode found written in the text and,
 * without ICL_TOK_PARSE_SPECIAL, encoded as plain text, over all calls with
 * st; *id (if not NULL) gets the id of the last one, untouched when none.
 * Lets a program hint that a template's "<|im_start|>" wants --parse-special. */
long icl_tok_state_special_text(const icl_tok_state *st, int32_t *id);
/* How many characters icl_tok_encode dropped (no token, no byte-fallback
 * token, no unk_token: Hugging Face tokenizers drops them; a GGUF
 * tokenizer refuses them instead) over all calls with st; *cp (if not
 * NULL) gets the code point of the first, untouched when none (a raw byte
 * of byte-level text: that byte's value).  Lets a program say that text was
 * lost. */
long icl_tok_state_dropped(const icl_tok_state *st, uint32_t *cp);

/* Encoding flags. */
enum {
    /* Match added tokens marked special (HF's default; the opposite of HF's
     * split_special_tokens).  Non-special added tokens always match. */
    ICL_TOK_PARSE_SPECIAL = 1,
    /* The text continues a sequence already begun: no prefix space or ▁ is
     * added at its start (Prepend normalizer, ByteLevel add_prefix_space,
     * Metaspace prepend_scheme).  Used for responses after a prompt so that
     * decode(prompt ids ++ response ids) == prompt + response. */
    ICL_TOK_CONTINUATION = 2,
};

/* Encode s[0..n) (valid UTF-8; icl_utf8_valid is the check) and append the
 * ids to out.  No post-processing: BOS/EOS are the caller's (see specials).
 * st may be NULL (a temporary state is used).  A character with no token,
 * no byte-fallback token and no unknown token is dropped as HF tokenizers
 * drops it, except for a tokenizer read from a GGUF file
 * (icl_tok_from_gguf: llama.cpp never drops one), where it is an error
 * naming the character and its position, and out is left as it was.
 * Returns 0, or -1 with a message in err (s is not valid UTF-8, such a
 * character, a normalizer that failed). */
int icl_tok_encode(const icl_tokenizer *t, icl_tok_state *st, const char *s, size_t n,
                   int flags, icl_ids *out, char *err, size_t errsz);

/* Decode ids through the decoder chain, appending UTF-8 to out (invalid byte
 * sequences become U+FFFD as Rust's from_utf8_lossy does).  Spaces are never
 * "cleaned up".  skip_special drops added tokens marked special.
 * continuation (ICL_TOK_CONTINUATION) decodes ids that follow others: the
 * start-of-text strip of Metaspace/Strip decoders is not applied.  Returns 0,
 * or -1 with a message in err if an id is out of range or a decoder Replace's
 * regex gives up (PCRE2's match limit: "decoder Replace regex failed"; out's
 * text is then not the whole decoding). */
int icl_tok_decode(const icl_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                   int flags, icl_buf *out, char *err, size_t errsz);

/* Streaming decode, for text printed as it is generated (tokenizers'
 * DecodeStream): ids come one at a time; text is released once it no longer
 * ends in an incomplete character, so a character spread over several
 * byte-level or <0xNN> tokens never shows as U+FFFD in the middle of valid
 * text, and the concatenation of everything released (after flush) equals
 * icl_tok_decode of all the ids; each release is UTF-8.  The window keeps
 * the ids of the last release and those since: a few, but a run of <0xNN>
 * tokens under a ByteFallback decoder is held until a token of another
 * kind ends it (a later byte can turn the run's text into U+FFFD), and
 * under a decoder that works on the text a ByteLevel or Fuse joined (any
 * but a Fuse or a Strip of the start: never in the files Hugging Face's
 * converters write) everything is held until the flush. */
typedef struct {
    icl_ids ids;         /* the window: ids[0..read) already released */
    size_t read;
    int started;         /* some text was released: decode as a continuation */
    int flags, skip_special;
    icl_buf a, b;
} icl_tok_stream;
/* flags: ICL_TOK_CONTINUATION if the ids continue text decoded elsewhere
 * (a response after its prompt).  skip_special: drop special tokens. */
void icl_tok_stream_init(icl_tok_stream *s, int flags, int skip_special);
/* Add one id; append the text it completes (maybe none) to out.  Returns 0,
 * or -1 with a message in err for an id outside the vocabulary. */
int icl_tok_stream_put(const icl_tokenizer *t, icl_tok_stream *s, int32_t id, icl_buf *out,
                       char *err, size_t errsz);
/* Append to out what icl_tok_stream_flush would release now, leaving the
 * stream as it is: text held back, e.g. to look for a stop string in it
 * (generate.c).  Returns 0, or -1 with a message in err (a decoder's regex
 * that gave up). */
int icl_tok_stream_peek(const icl_tokenizer *t, icl_tok_stream *s, icl_buf *out, char *err,
                        size_t errsz);
/* Release what is left (an incomplete character as U+FFFD). */
int icl_tok_stream_flush(const icl_tokenizer *t, icl_tok_stream *s, icl_buf *out, char *err,
                         size_t errsz);
void icl_tok_stream_free(icl_tok_stream *s);

#endif
