/* optim.c - see optim.h. */
#include "optim.h"

#include <math.h>
#include <string.h>

/* The loop below is vectorised (the Makefile compiles this file with
 * -fno-math-errno: a sqrtf that may set errno keeps it scalar).  Its
 * roundings are pinned to those of the -O3 scalar loop it replaced, whose
 * contractions the compiler chose (-ffp-contract=fast): where the machine
 * has FMA, mi and vi in one fused step each and p updated by one fused
 * step from p * keep rounded; without FMA, every product rounded.  Left
 * to itself the vectoriser fuses p * keep into the last step instead, and
 * -O1 (the sanitizer build) fused nothing: now every build rounds alike. */
#ifdef __FMA__
#define ADAMW_FMA(a, b, c) fmaf(a, b, c)
#else
#define ADAMW_FMA(a, b, c) ((a) * (b) + (c))
#endif

void icl_adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                      const icl_adamw *h, double lr, long step, int decay)
{
    /* torch computes the scalars in Python doubles, then the tensor ops run in
     * float32 with the scalars cast to float: we do the same. */
    const float keep = decay ? (float)(1.0 - lr * h->weight_decay) : 1.0f;
    const float w1 = (float)(1.0 - h->beta1);
    const float b2 = (float)h->beta2, w2 = (float)(1.0 - h->beta2);
    const double bc1 = 1.0 - pow(h->beta1, (double)step);
    const double bc2 = 1.0 - pow(h->beta2, (double)step);
    const float step_size = (float)(lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float eps = (float)h->eps;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float pi = p[i] * keep;
        float mi = ADAMW_FMA(w1, gi - m[i], m[i]); /* lerp(m, g, 1-b1) */
        float vi = ADAMW_FMA(v[i], b2, w2 * gi * gi);
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = ADAMW_FMA(-step_size, mi / denom, pi);
        m[i] = mi;
        v[i] = vi;
    }
}

/* Fixed blocks, whatever the thread count: each block summed in order (one
 * simd loop), then the blocks' sums added in block order.  A reduction
 * clause would split the sum where the team splits the loop, and the
 * rounding (so the clipping coefficient, so the model) would depend on the
 * thread count, which the programs change during a run (issue 18). */
#define SUMSQ_BLOCKS 1024
double icl_sumsq(const float *g, size_t n)
{
    size_t bs = (n + SUMSQ_BLOCKS - 1) / SUMSQ_BLOCKS;
    bs = bs < 16384 ? 16384 : (bs + 15) / 16 * 16;
    size_t nb = (n + bs - 1) / bs;
    double part[SUMSQ_BLOCKS];
#pragma omp parallel for schedule(static) if (nb > 1)
    for (size_t b = 0; b < nb; b++) {
        const float *x = g + b * bs;
        size_t m = n - b * bs < bs ? n - b * bs : bs;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (size_t i = 0; i < m; i++)
            s += (double)x[i] * (double)x[i];
        part[b] = s;
    }
    double s = 0.0;
    for (size_t b = 0; b < nb; b++)
        s += part[b];
    return s;
}

double icl_clip_coef(double norm, double max_norm)
{
    if (max_norm <= 0.0)
        return 1.0;
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? c : 1.0;
}

void icl_scale(float *g, size_t n, float s)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        g[i] *= s;
}

double icl_lr_at(const icl_schedule *s, long step)
{
    if (step < s->warmup_steps)
        return s->lr * (double)step / (double)(s->warmup_steps > 1 ? s->warmup_steps : 1);
    long span = s->total_steps - s->warmup_steps;
    double progress = (double)(step - s->warmup_steps) / (double)(span > 1 ? span : 1);
    double f;
    switch (s->kind) {
    case ICL_SCHED_LINEAR:
        f = (double)(s->total_steps - step) / (double)(span > 1 ? span : 1);
        break;
    case ICL_SCHED_COSINE:
        f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
        break;
    default:
        return s->lr;
    }
    if (f < 0.0)
        f = 0.0;
    return s->min_lr + (s->lr - s->min_lr) * f;
}

int icl_sched_parse(const char *name, icl_sched_kind *out)
{
    static const char *names[] = {"constant", "linear", "cosine"};
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (icl_sched_kind)i;
            return 0;
        }
    return -1;
}

const char *icl_sched_name(icl_sched_kind k)
{
    return k == ICL_SCHED_LINEAR ? "linear" : k == ICL_SCHED_COSINE ? "cosine" : "constant";
}
