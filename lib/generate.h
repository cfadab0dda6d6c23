/* generate.h - autoregressive generation with a KV cache: batched decode
 * steps, stop conditions, samplers, incremental (streaming) detokenisation.
 *
 * Layers, from the bottom:
 *   icl_model_step      (model.h) one new token for each of B sequences, each
 *                       with its own KV cache at its own length; the B rows
 *                       go through every weight matrix together.
 *   icl_gen_config      what the model folder's generation_config.json (and
 *                       config.json) say: eos ids, sampler defaults, max_new_tokens.
 *   icl_generate        prefill + decode loop for a batch of prompts until each
 *                       one stops (eos id, max_new_tokens, context full, or the
 *                       caller's per-token callback, which handles stop strings).
 *   icl_gen_text        decoded text of a growing id sequence: UTF-8 safe
 *                       streaming and --stop strings.
 *
 * Reproducibility: sequence s draws from its own icl_rng seeded (seed, index
 * of s in the whole input), one uniform per sampled token, and the logits
 * of a sequence are computed by the same arithmetic whatever the other rows
 * of the batch are (see icl_model_step), so the output does not depend on the
 * batch size.  Nor on the thread count: the step's sums never split over
 * threads, and BLIS (the prefill) splits its m and n loops, never k (both
 * checked bit for bit by test_generate).  icl_generate picks the thread
 * count of each prefill and step by timing (one thread wins on a busy
 * machine), which is therefore free of side effects.
 */
#ifndef ICL_GENERATE_H
#define ICL_GENERATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "sample.h"
#include "tokenizer.h"
#include "tokrec.h"
#include "util.h"

/* Generation settings, defaults as transformers' GenerationConfig merged
 * with the model folder's generation_config.json. */
typedef struct {
    int do_sample;             /* 0: greedy (argmax after the repetition penalty) */
    icl_sampler_params sp;     /* used when do_sample (greedy forces temperature 0) */
    long max_new_tokens;       /* > 0 */
    int n_eos;
    int32_t eos[16];           /* stop ids (generation_config's, else config.json's) */
    uint64_t seed;
    int n_sample_ids;          /* > 0: ids >= it are never generated (the tokenizer's vocabulary
                                * size, below a padded config vocab_size as Qwen2.5's); 0: all */
} icl_gen_config;

/* Defaults: do_sample 0, temperature 1, top_k 50, top_p 1, min_p 0,
 * repetition_penalty 1 (transformers' GenerationConfig), max_new_tokens 256
 * (transformers' max_length 20 counts the prompt: too short to be useful),
 * seed 0, eos from config.json (cfg may be NULL).  Then, if dir (may be
 * NULL) holds a
 * generation_config.json, its do_sample, temperature, top_k, top_p, min_p,
 * repetition_penalty, max_new_tokens and eos_token_id (an int or a list)
 * override these (null values are ignored).  0 ok; -1 with err
 * ("generation_config.json: ...", the caller names the folder) when the
 * file is not valid JSON, a value has the wrong type or range, or (cfg
 * given) an eos id is not below cfg->vocab_size, as config.json's are
 * checked. */
int icl_gen_config_load(icl_gen_config *g, const char *dir, const icl_config *cfg, char *err, size_t errsz);

/* The sampler parameters generation uses: g->sp, or greedy (temperature 0,
 * the repetition penalty kept) when !g->do_sample. */
icl_sampler_params icl_gen_sampler_params(const icl_gen_config *g);

/* Why a sequence stopped. */
typedef enum { ICL_STOP_NONE, ICL_STOP_EOS, ICL_STOP_LENGTH, ICL_STOP_CONTEXT, ICL_STOP_CALLER } icl_stop_reason;

/* One sequence of a batch.  The caller fills prompt/n_prompt (not owned,
 * n_prompt >= 1) and index (the RNG stream: the record's number in the whole
 * input); icl_generate fills out (the generated ids, an eos id that ended
 * the sequence included; owned, free with ids_free) and stop.
 *
 * cache (optional, zeroed: NULL) lets a caller keep the keys and values
 * between calls (a chat, each turn's prompt extending the last): NULL,
 * icl_generate uses a cache of its own; else the caller's (still the
 * caller's: icl_kv_cache_new, icl_kv_cache_free), which must hold the
 * keys and values of prompt[0 .. cache->len) exactly (the caller keeps the
 * ids it fed and truncates the cache to the common prefix with the new
 * prompt, icl_kv_cache_truncate).  Positions from n_prompt - 1 on are
 * dropped (the last prompt id is always fed: its logits pick the first
 * new id), only the rest of the prompt is prefilled, and the cache is
 * grown as needed (icl_kv_cache_reserve).  On return it holds prompt and
 * out less its last id (never fed): cache->len == n_prompt + out.n - 1.
 * After an error its contents are undefined: reset it. */
typedef struct {
    const int32_t *prompt;
    size_t n_prompt;
    uint64_t index;
    icl_ids out;
    icl_stop_reason stop;
    icl_kv_cache *cache;
} icl_gen_seq;

/* Called after each generated token of sequence seq (its ids so far in
 * seqs[seq].out).  Return nonzero to stop that sequence (e.g. a stop string
 * appeared); the token stays in out, the caller trims what it must. */
typedef int (*icl_gen_token_fn)(void *ctx, int seq, int32_t id);

/* Generate for B sequences together: each prompt is prefilled into its own
 * KV cache (icl_model_decode; with seqs[b].cache, the caller's, only the
 * ids after what it holds), then one icl_model_step per new token for the
 * sequences still running.  A sequence stops after an id in g->eos, after
 * g->max_new_tokens ids, when the model's context (max_position_embeddings)
 * is full, or when on_token returns nonzero.  on_token may be NULL.
 * 0 ok; -1 with err (prompt longer than the context, id out of range, the
 * model produced no finite logit). */
int icl_generate(icl_model *m, const icl_gen_config *g, icl_gen_seq *seqs, int B, icl_gen_token_fn on_token,
                 void *ctx, char *err, size_t errsz);

/* The prompt ids of a record, tokenized exactly as icl-tok encode does
 * (tokrec.h, with the same BOS/EOS options o; o->max_len is ignored) for
 * everything before the response to generate:
 *   "prompt": P (a string)              ->  [BOS] ids(P)
 *   "prompt": [P1..Pn], "response": [R1..R(n-1)] (or n: the last one, a
 *     reference, is ignored)              ->  [BOS] ids(P1) ids(R1) EOS ... ids(Pn)
 *   "prompt": [S1..Sk] and no response array: S1, S3, ... are prompts and
 *     S2, S4, ... responses (k odd)      ->  the same rendering
 * i.e. the token line icl-tok would write with an empty last response, all
 * segments concatenated, without that response's EOS.  A record with
 * "chat": true (rendered by a chat template, icl-fmt --chat-template) is
 * tokenized as icl-tok encode does it: special-token text parsed, no BOS or
 * EOS added (the template's text holds them).  Appends to out;
 * returns 0, or -1 with "what is wrong" in err. */
int icl_gen_prompt_ids(const icl_tokenizer *t, icl_tok_state *st, const icl_tokrec_opts *o, const json_t *rec,
                       icl_ids *out, char *err, size_t errsz);

/* Text of a growing completion, decoded incrementally with the tokenizer's
 * streaming decoder (icl_tok_stream, as tokenizers' DecodeStream) as a
 * continuation (no leading space stripped: prompt text + completion text ==
 * text of prompt ids + ids), special tokens skipped.  Text is appended only
 * once its characters are complete, so a character whose bytes span tokens
 * never shows as U+FFFD; stop strings are looked for in what was appended
 * and in what the decoder holds back (icl_tok_stream_peek: a run of <0xNN>
 * tokens, "\n" in SentencePiece vocabularies), and the text cut before the
 * earliest one; the streamable part also holds back any tail that could
 * still become a stop string. */
typedef struct {
    const icl_tokenizer *tok;
    char **stop;         /* stop strings (not owned), n_stop of them, non-empty */
    int n_stop;
    size_t max_stop;     /* the longest stop string's length */
    icl_tok_stream ds;   /* the incremental decoder */
    size_t fed;          /* ids given to it so far */
    icl_buf text;        /* the decoded completion, cut before a stop string once found */
    size_t emitted;      /* bytes of text already handed out by icl_gen_text_stream */
    int stopped;         /* a stop string was found (text ends before it) */
    int finished;        /* icl_gen_text_finish was called */
} icl_gen_text;

/* Start the text of one completion, decoded with tok as a continuation of
 * the prompt.  tok and the n_stop stop strings (non-empty, NUL-terminated)
 * are borrowed: they must outlive t.  icl_gen_text_free frees t's own
 * buffers. */
void icl_gen_text_init(icl_gen_text *t, const icl_tokenizer *tok, char **stop, int n_stop);
void icl_gen_text_free(icl_gen_text *t);
/* The completion's ids are now ids[0..n) (the earlier ones unchanged, as
 * icl_gen_seq.out grows): decode the new ones into t->text and look for
 * the stop strings.  Returns 1 when a stop string has been found (then
 * nothing more is added), else 0; -1 with err on a decoding error. */
int icl_gen_text_update(icl_gen_text *t, const int32_t *ids, size_t n, char *err, size_t errsz);
/* The sequence is over: release what the decoder holds back (an unfinished
 * character becomes U+FFFD, as a full decode does).  Returns as update. */
int icl_gen_text_finish(icl_gen_text *t, char *err, size_t errsz);
/* Bytes that are final and not yet emitted: *len bytes at the returned
 * pointer (into t->text), then marked emitted.  Before icl_gen_text_finish
 * a tail that is a prefix of a stop string is held back. */
const char *icl_gen_text_stream(icl_gen_text *t, size_t *len);

#endif
