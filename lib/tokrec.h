/* tokrec.h - records (stream 1) <-> token lines (stream 2) through a tokenizer.
 *
 * Encoding a record:
 *   {"prompt": P, "response": R}        ->  ids(P) TAB ids(R) EOS
 *   {"prompt": [P1,P2], "response": [R1,R2]} (multi-turn, equal lengths)
 *                                       ->  ids(P1) TAB ids(R1) EOS TAB ids(P2) TAB ids(R2) EOS
 *   {"text": T}                         ->  TAB ids(T) EOS          (all target)
 * BOS (when enabled) starts the first segment; with a "text" record the line
 * is then "BOS TAB ids(T) EOS".  BOS is never doubled: a prompt that starts
 * with the BOS token's text (a template that writes "<s>" itself) has that
 * text encoded as the BOS id, whether or not special tokens are parsed, and
 * no other BOS is added.
 * Segments are encoded separately, so no token spans a boundary; every
 * segment after the first is encoded as a continuation (no prefix space or
 * ▁ added), so decode(whole line) == P + R (+ EOS text).
 * A record with "chat": true (icl-fmt --chat-template) is a conversation
 * rendered by the model's own chat template: its segments are encoded with
 * special tokens parsed and neither BOS nor EOS is added (the template wrote
 * them, as transformers' apply_chat_template(tokenize=True) does).
 * max_len > 0 bounds the ids per line: tokens are dropped from the left of
 * the line (after BOS), never from the last response; an example whose last
 * response (+ EOS, + BOS) alone exceeds max_len is skipped.
 */
#ifndef ICL_TOKREC_H
#define ICL_TOKREC_H

#include <jansson.h>

#include "tokenizer.h"

typedef struct {
    int bos;           /* add BOS (needs specials.bos >= 0) */
    int eos;           /* add EOS after each response / text (needs specials.eos >= 0) */
    int parse_special; /* special-token text in the data becomes special ids */
    long max_len;      /* 0: no limit */
    int drop_blank;    /* responses that are empty or whitespace-only (ASCII) are no targets, as
                        * icl-fmt treats them: such a turn among others is context (its text
                        * joins the next prompt's segment, no EOS; a last one is left out), and
                        * a record with no other response, or a blank "text", is dropped.
                        * 0: encoded as any other (a target of EOS alone): what icl-gen's
                        * generation prompts, whose last response is "", need */
} icl_tokrec_opts;

/* Encode rec into one token line appended to out (no '\n').  Returns 0, 1
 * if the example was skipped by max_len (out unchanged), with drop_blank 2
 * if it was dropped for blank responses (out unchanged; err says which,
 * "empty response", "whitespace-only response 2", "empty text") or 3 when
 * the line was written with some blank responses as context (err names the
 * first: "empty response 2"), or -1 with "what is wrong" in err (missing
 * fields, wrong types, unequal turn counts, text the tokenizer refuses). */
int icl_tokrec_encode(const icl_tokenizer *t, icl_tok_state *st, const icl_tokrec_opts *o,
                      const json_t *rec, icl_buf *out, char *err, size_t errsz);

/* The ids of a prompt exactly as icl_tokrec_encode makes its first
 * segment (BOS rules included), appended to out: what icl-gen feeds the
 * model.  Returns 0, or -1 with a message in err. */
int icl_tokrec_encode_prompt(const icl_tokenizer *t, icl_tok_state *st, const icl_tokrec_opts *o,
                             const char *prompt, size_t n, icl_ids *out, char *err, size_t errsz);

/* Decode one token line (ids split in nseg segments, see toklines.h) into
 * a new record: "text" for a line whose first segment is empty and that has
 * one target; else "prompt"/"response" (strings for one turn, arrays for
 * more; a missing last response is "").  bos and eos are the ids the
 * encoder added (the #icl-tokens header's bos and eos; -1: none): a
 * leading bos and an eos ending a response are removed, any other id is
 * decoded (a chat template's BOS text that is the BOS id stays in the
 * prompt).  Returns the record (caller json_decref's), or NULL with a
 * message in err. */
json_t *icl_tokrec_decode(const icl_tokenizer *t, const int32_t *ids, const size_t *seg_end,
                          size_t nseg, int32_t bos, int32_t eos, char *err, size_t errsz);

#endif
