/* sample.h - next-token selection from one row of logits, as Hugging Face
 * transformers' generate() does it (transformers 4.46,
 * generation/logits_process.py and GenerationMixin._get_logits_processor).
 *
 * A logits row is float32 [V] (V = vocabulary size), modified in place.
 * Order of application, as in _get_logits_processor:
 *   1. repetition penalty (a "logits processor": applied in greedy mode too)
 *   2. temperature, 3. top-k, 4. top-p, 5. min-p   (the "warpers": sampling only)
 *   6. a draw from softmax of what is left, by inverse CDF with an icl_rng
 *      (transformers uses torch.multinomial; the distribution is the same, the
 *      random numbers are not).
 * Greedy mode (temperature == 0 or top_p == 0): step 1, then the argmax (the
 * first index of the largest logit, as torch.argmax).  Nothing divides by
 * zero; no NaN is produced.
 *
 * Removed tokens are set to -INFINITY (transformers' filter_value).  NaN
 * logits are treated as -INFINITY by icl_argmax and the draw.
 *
 * Reproducibility: the draw uses exactly one icl_rng_uniform per call (none
 * in greedy mode), so with one icl_rng per sequence seeded (seed, sequence
 * index) the tokens do not depend on batch size or threads.
 *
 * Note: transformers' GenerationConfig defaults are temperature 1.0, top_k 50,
 * top_p 1.0, min_p None, repetition_penalty 1.0; icl_sampler_defaults gives
 * the "everything off" values (top_k 0); a program wanting HF's defaults sets
 * top_k = 50 (or reads generation_config.json).
 */
#ifndef ICL_SAMPLE_H
#define ICL_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

typedef struct {
    float temperature;        /* > 0 divides logits; 1 = off; 0 = greedy */
    int top_k;                /* keep the k largest (ties with the k-th kept); 0 = off */
    float top_p;              /* nucleus mass in [0, 1]; 1 = off; 0 = greedy */
    float min_p;              /* in [0, 1]: drop p < min_p * max p; 0 = off */
    float repetition_penalty; /* > 0; 1 = off */
} icl_sampler_params;

/* temperature 1, top_k 0, top_p 1, min_p 0, repetition_penalty 1. */
void icl_sampler_defaults(icl_sampler_params *p);

/* Check ranges as transformers does (temperature >= 0, top_k >= 0,
 * 0 <= top_p <= 1, 0 <= min_p <= 1, repetition_penalty > 0, none NaN).
 * Returns 0, or -1 with a message naming the parameter in err. */
int icl_sampler_check(const icl_sampler_params *p, char *err, size_t errsz);

/* Greedy mode: temperature == 0 or top_p == 0. */
int icl_sampler_is_greedy(const icl_sampler_params *p);

/* Scratch space for one vocabulary size; reuse across calls and sequences
 * (one per thread).  Owned; release with icl_sampler_free. */
typedef struct {
    int V;
    double *prob;  /* [V] */
    int32_t *idx;  /* [V] */
    float *tmp;    /* [V] */
    uint8_t *seen; /* [V] */
} icl_sampler;

/* Scratch for a vocabulary of V ids (dies if memory runs out); free with
 * icl_sampler_free.  One sampler per thread. */
void icl_sampler_init(icl_sampler *s, int V);
void icl_sampler_free(icl_sampler *s);

/* RepetitionPenaltyLogitsProcessor: for every distinct id in ids[0..n)
 * (the sequence so far, prompt included), logit < 0 -> logit * penalty,
 * else logit / penalty.  Applied once per distinct id however often it
 * occurs.  Ids outside [0, V) are ignored.  penalty 1 changes nothing. */
void icl_repetition_penalty(icl_sampler *s, float *logits, const int32_t *ids,
                            size_t n, float penalty);

/* TemperatureLogitsWarper: logits[i] /= t (float division).  t must be > 0.
 * When that would overflow the largest logit (t below ~1e-38), logits[i] =
 * (logits[i] - max) / t instead: the same distribution, and no NaN. */
void icl_temperature(float *logits, int V, float t);

/* TopKLogitsWarper: k' = min(max(k, 1), V); every logit strictly below the
 * k'-th largest becomes -INFINITY (so ties with the k'-th are kept).
 * k <= 0 changes nothing. */
void icl_top_k(icl_sampler *s, float *logits, int k);

/* TopPLogitsWarper: sort ascending (stable: among equal logits the lower
 * index first), cumulative softmax mass c_j; remove a token when
 * c_j <= (1 - p) * (1 + 1e-6), except the largest one (always kept).
 * Equivalently: keep the smallest set of largest tokens whose mass reaches
 * p.  The relative slack of 1e-6 makes boundaries that are exact in real
 * arithmetic (p = 0.75 on masses 0.0625+0.1875) behave as exact despite
 * float rounding; transformers compares in float32 with no slack.
 * Probabilities in double.  p >= 1 changes nothing (transformers does not
 * add the warper); p == 0 keeps only the top token. */
void icl_top_p(icl_sampler *s, float *logits, float p);

/* MinPLogitsWarper: probs = softmax(logits) (double); remove tokens with
 * prob < min_p * max prob.  The top token always stays.  min_p <= 0
 * changes nothing. */
void icl_min_p(icl_sampler *s, float *logits, float min_p);

/* Index of the largest logit (first one on ties), NaN ignored; -1 when no
 * logit is > -INFINITY. */
int icl_argmax(const float *logits, int V);

/* Draw from softmax(logits) (double precision, max subtracted) by inverse
 * CDF: u = icl_rng_uniform(rng) * total mass; the first index whose
 * cumulative mass exceeds u.  Exactly one uniform is drawn.  Returns -1 when
 * no logit is finite (all -INFINITY or NaN). */
int icl_sample_softmax(icl_sampler *s, const float *logits, icl_rng *rng);

/* The whole pipeline above on logits [V] (modified in place).  ids[0..n) are
 * the tokens seen so far, for the repetition penalty.  rng may be NULL in
 * greedy mode.  Returns the chosen id, or -1 when no finite logit is left
 * (the model produced only -inf/NaN: the caller reports it). */
int icl_sample(icl_sampler *s, const icl_sampler_params *p, float *logits,
               const int32_t *ids, size_t n, icl_rng *rng);

#endif
