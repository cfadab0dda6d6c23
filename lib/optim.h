/* optim.h - AdamW, learning-rate schedules and gradient clipping.
 *
 * Parameters, gradients and the two AdamW moments live in flat float32
 * buffers (see model.h); these functions work on any contiguous span of
 * them, so the optimizer is one loop per tensor (the weight-decay choice is
 * per tensor: only tensors with 2 or more dims decay, as in transformers'
 * Trainer and the fixtures).
 */
#ifndef ICL_OPTIM_H
#define ICL_OPTIM_H

#include <stddef.h>

/* AdamW hyper-parameters (transformers TrainingArguments names). */
typedef struct {
    double lr;           /* peak learning rate */
    double beta1, beta2; /* adam_beta1 0.9, adam_beta2 0.999 by default */
    double eps;          /* adam_epsilon 1e-8 */
    double weight_decay; /* decoupled: p -= lr * weight_decay * p */
} icl_adamw;

/* One AdamW step on n parameters, in place.
 * p: parameters [n]; g: gradients [n] (read only); m, v: first and second
 * moments [n], zero before the first step; lr: this step's learning rate;
 * step: 1 for the first update (bias corrections 1 - beta^step); decay:
 * apply weight decay to this span (nonzero) or not.
 * Formula and order of float32 operations as torch.optim.AdamW
 * (_single_tensor_adamw, amsgrad off, maximize off):
 *   p *= 1 - lr*wd;  m += (1-b1)(g - m);  v = b2 v + (1-b2) g^2;
 *   p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 * (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019). */
void icl_adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                      const icl_adamw *h, double lr, long step, int decay);

/* Sum of squares of g[0..n) accumulated in double (for a global L2 norm:
 * sqrt of the sum over all tensors).  Summed in fixed blocks (at most 1024,
 * of at least 16384 elements) whose sums are added in order: the same bits
 * for any thread count. */
double icl_sumsq(const float *g, size_t n);

/* Clipping coefficient as torch.nn.utils.clip_grad_norm_: for the global
 * norm `norm` and max_norm > 0, min(1, max_norm / (norm + 1e-6)); 1 when
 * max_norm <= 0 (clipping off). Multiply every gradient by it. */
double icl_clip_coef(double norm, double max_norm);

/* g[i] *= s for i < n. */
void icl_scale(float *g, size_t n, float s);

/* Learning-rate schedules of transformers.optimization. */
typedef enum {
    ICL_SCHED_CONSTANT, /* get_constant_schedule_with_warmup */
    ICL_SCHED_LINEAR,   /* get_linear_schedule_with_warmup */
    ICL_SCHED_COSINE,   /* get_cosine_schedule_with_warmup (num_cycles 0.5) */
} icl_sched_kind;

typedef struct {
    icl_sched_kind kind;
    double lr;          /* peak lr, reached at the end of warmup */
    double min_lr;      /* floor for linear/cosine decay (0 = transformers' default);
                           the factor f in [0,1] maps to min_lr + (lr - min_lr) f, as
                           get_cosine_with_min_lr_schedule_with_warmup does */
    long warmup_steps;  /* linear warmup from 0: step 0 runs at lr 0 */
    long total_steps;   /* number of optimizer steps of the whole run */
} icl_schedule;

/* Learning rate for optimizer step `step` (0-based, as the scheduler's
 * current_step in transformers: the lr used by the (step+1)-th update). */
double icl_lr_at(const icl_schedule *s, long step);

/* Parse "constant", "linear" or "cosine"; returns -1 for anything else. */
int icl_sched_parse(const char *name, icl_sched_kind *out);
const char *icl_sched_name(icl_sched_kind k);

#endif
