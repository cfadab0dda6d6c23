/* lmeval.h - a model's loss, perplexity and token accuracy on token lines
 * (icl-eval -m).
 *
 * Definitions (as the fixtures' "loss" of transformers, tests/hf/fixtures):
 * for one line of ids x[0..n) with a target flag per id, position t (t+1 < n)
 * is a target position when x[t+1] belongs to a target segment; its loss is
 * -log softmax(logits_t)[x[t+1]] in nats (icl_model_forward's sum) and it is
 * correct when the argmax of logits_t (first index on ties, as torch.argmax)
 * is x[t+1].  Over a whole file:
 *   loss = total loss / total target positions  (per token, corpus level:
 *          not a mean of per-line means), perplexity = exp(loss),
 *   token_accuracy = correct / total target positions.
 */
#ifndef ICL_LMEVAL_H
#define ICL_LMEVAL_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    long records;       /* lines scored */
    long tokens;        /* target positions */
    double loss_sum;    /* sum of their losses, nats */
    long correct;       /* target positions whose argmax is the next token */
    float *logits;      /* scratch [cap, V], owned */
    size_t cap;
} icl_lm_eval;

/* Zero the totals; free the scratch logits (e can be reused after init). */
void icl_lm_eval_init(icl_lm_eval *e);
void icl_lm_eval_free(icl_lm_eval *e);

/* Score one line: ids[0..n), target[0..n) (1 = id in a target segment).
 * One forward pass of the whole line (logits [n, V] kept in e->logits).
 * 0 ok; -1 with err when the line does not fit the model (an id >= vocab
 * size, more tokens than max_position_embeddings: as icl-gen refuses such
 * a prompt, a loss past the trained positions is not reported). */
int icl_lm_eval_line(icl_model *m, icl_lm_eval *e, const int32_t *ids, const uint8_t *target, size_t n, char *err,
                     size_t errsz);

/* Score one line as icl_lm_eval_line does, through the path icl-gen
 * decodes with: ids[0..t0] in one prefill (icl_model_decode, batched
 * products), t0 the first target position, then each later position by a
 * decode step (icl_model_step: the rows kernels; on a quantized base,
 * integer dot products with activations quantized per 32 to int8, qdot.h).
 * Losses are -log softmax in double from the float32 logits.  Same totals
 * and errors as icl_lm_eval_line (a line with no target position is a
 * record with nothing scored). */
int icl_lm_eval_line_decode(icl_model *m, icl_lm_eval *e, const int32_t *ids, const uint8_t *target, size_t n,
                            char *err, size_t errsz);

/* loss, perplexity and token accuracy of what was scored; NAN when no target
 * position was seen. */
double icl_lm_eval_loss(const icl_lm_eval *e);
double icl_lm_eval_perplexity(const icl_lm_eval *e);
double icl_lm_eval_accuracy(const icl_lm_eval *e);

#endif
