/* sample.c - see sample.h. */
#define _GNU_SOURCE /* qsort_r */
#include "sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void icl_sampler_defaults(icl_sampler_params *p)
{
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
}

int icl_sampler_check(const icl_sampler_params *p, char *err, size_t errsz)
{
    if (!(p->temperature >= 0) || isinf(p->temperature))
        snprintf(err, errsz, "temperature must be a number >= 0 (0 = greedy), not %g", p->temperature);
    else if (p->top_k < 0)
        snprintf(err, errsz, "top-k must be >= 0 (0 = off), not %d", p->top_k);
    else if (!(p->top_p >= 0 && p->top_p <= 1))
        snprintf(err, errsz, "top-p must be in [0, 1] (1 = off, 0 = greedy), not %g", p->top_p);
    else if (!(p->min_p >= 0 && p->min_p <= 1))
        snprintf(err, errsz, "min-p must be in [0, 1] (0 = off), not %g", p->min_p);
    else if (!(p->repetition_penalty > 0) || isinf(p->repetition_penalty))
        snprintf(err, errsz, "repetition penalty must be a number > 0 (1 = off), not %g",
                 p->repetition_penalty);
    else
        return 0;
    return -1;
}

int icl_sampler_is_greedy(const icl_sampler_params *p)
{
    return p->temperature == 0 || p->top_p == 0;
}

void icl_sampler_init(icl_sampler *s, int V)
{
    s->V = V;
    s->prob = icl_xcalloc((size_t)V, sizeof *s->prob);
    s->idx = icl_xcalloc((size_t)V, sizeof *s->idx);
    s->tmp = icl_xcalloc((size_t)V, sizeof *s->tmp);
    s->seen = icl_xcalloc((size_t)V, 1);
}

void icl_sampler_free(icl_sampler *s)
{
    free(s->prob);
    free(s->idx);
    free(s->tmp);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

void icl_repetition_penalty(icl_sampler *s, float *logits, const int32_t *ids,
                            size_t n, float penalty)
{
    if (penalty == 1.0f)
        return;
    int V = s->V;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= V || s->seen[id])
            continue;
        s->seen[id] = 1;
        float x = logits[id];
        logits[id] = x < 0 ? x * penalty : x / penalty;
    }
    for (size_t i = 0; i < n; i++) /* leave seen[] all zero again */
        if (ids[i] >= 0 && ids[i] < V)
            s->seen[ids[i]] = 0;
}

static float row_max(const float *l, int V)
{
    float m = -INFINITY;
    for (int i = 0; i < V; i++)
        if (l[i] > m)
            m = l[i];
    return m;
}

void icl_temperature(float *logits, int V, float t)
{
    /* A tiny t (below ~1e-38) would send the largest logits to +inf (their
     * softmax is then NaN) or every logit to -inf: then divide distances
     * from the max instead, the same distribution in exact arithmetic. */
    float mx = row_max(logits, V);
    if (isfinite(mx) && !isfinite(mx / t)) {
        for (int i = 0; i < V; i++)
            logits[i] = (logits[i] - mx) / t;
        return;
    }
    for (int i = 0; i < V; i++)
        logits[i] = logits[i] / t;
}

/* k-th largest (k from 1) of a[0..n), reordering a (quickselect, median of 3). */
static float kth_largest(float *a, int n, int k)
{
    int lo = 0, hi = n - 1, want = k - 1; /* position in descending order */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        float x = a[lo], y = a[mid], z = a[hi];
        float pivot = (x > y) ? ((y > z) ? y : (x > z ? z : x)) : ((x > z) ? x : (y > z ? z : y));
        int i = lo, j = hi;
        while (i <= j) { /* descending partition */
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i]; a[i] = a[j]; a[j] = t;
                i++; j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return a[want];
    }
    return a[want];
}

void icl_top_k(icl_sampler *s, float *logits, int k)
{
    int V = s->V;
    if (k <= 0 || k >= V)
        return;
    memcpy(s->tmp, logits, (size_t)V * sizeof *logits);
    float th = kth_largest(s->tmp, V, k);
    for (int i = 0; i < V; i++)
        if (logits[i] < th)
            logits[i] = -INFINITY;
}

/* Descending by logit; among equal logits the higher index first (the
 * reverse of a stable ascending sort, which is what transformers' top-p
 * walks from the bottom). */
static int cmp_desc(const void *a, const void *b, void *ctx)
{
    const float *l = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (l[i] > l[j]) return -1;
    if (l[i] < l[j]) return 1;
    return (i < j) - (i > j);
}

void icl_top_p(icl_sampler *s, float *logits, float p)
{
    int V = s->V;
    if (p >= 1.0f || V <= 1)
        return;
    float mx = row_max(logits, V);
    if (mx == -INFINITY)
        return;
    double total = 0;
    for (int i = 0; i < V; i++)
        total += s->prob[i] = exp((double)logits[i] - mx);
    /* Keep token j (in descending order) while the mass strictly above it,
     * taken as 1 - (its ascending cumulative mass c_j) + prob_j, leaves
     * c_j > (1 - p)(1 + 1e-6). */
    double limit = (1.0 - (double)p) * (1.0 + 1e-6) * total;
    /* Only tokens with prob >= m can be kept once the set {prob >= m} has
     * mass >= total - limit: find such an m by halving, sort just those. */
    double need = total - limit, m = 1.0; /* probabilities relative to the max */
    int nc;
    for (;;) {
        double mass = 0;
        nc = 0;
        for (int i = 0; i < V; i++)
            if (s->prob[i] >= m) {
                mass += s->prob[i];
                s->idx[nc++] = i;
            }
        if (mass >= need || m == 0)
            break;
        m = m > 1e-300 ? m / 16 : 0;
    }
    qsort_r(s->idx, (size_t)nc, sizeof *s->idx, cmp_desc, logits);
    /* c_j (ascending cumulative mass up to and including j) = total - above_j. */
    double above = 0;
    int keep = 0;
    for (int r = 0; r < nc; r++) {
        int32_t j = s->idx[r];
        if (r > 0 && total - above <= limit)
            break;
        above += s->prob[j];
        keep = r + 1;
    }
    /* Mark kept tokens in prob (reuse as flags), filter the rest. */
    for (int r = 0; r < keep; r++)
        s->prob[s->idx[r]] = -1;
    for (int i = 0; i < V; i++)
        if (s->prob[i] != -1)
            logits[i] = -INFINITY;
}

void icl_min_p(icl_sampler *s, float *logits, float min_p)
{
    int V = s->V;
    if (!(min_p > 0))
        return;
    float mx = row_max(logits, V);
    if (mx == -INFINITY)
        return;
    for (int i = 0; i < V; i++)
        if (exp((double)logits[i] - mx) < (double)min_p) /* prob / max prob */
            logits[i] = -INFINITY;
}

int icl_argmax(const float *logits, int V)
{
    int best = -1;
    float m = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] > m) {
            m = logits[i];
            best = i;
        }
    return best;
}

int icl_sample_softmax(icl_sampler *s, const float *logits, icl_rng *rng)
{
    int V = s->V;
    double u = icl_rng_uniform(rng);
    float mx = row_max(logits, V);
    if (mx == -INFINITY)
        return -1;
    double total = 0;
    for (int i = 0; i < V; i++)
        total += s->prob[i] = logits[i] > -INFINITY ? exp((double)logits[i] - mx) : 0.0;
    double target = u * total, c = 0;
    int last = -1;
    for (int i = 0; i < V; i++) {
        if (s->prob[i] <= 0)
            continue;
        c += s->prob[i];
        last = i;
        if (c > target)
            return i;
    }
    return last; /* rounding left target at the very top */
}

int icl_sample(icl_sampler *s, const icl_sampler_params *p, float *logits,
               const int32_t *ids, size_t n, icl_rng *rng)
{
    int V = s->V;
    for (int i = 0; i < V; i++)
        if (isnan(logits[i]))
            logits[i] = -INFINITY;
    icl_repetition_penalty(s, logits, ids, n, p->repetition_penalty);
    if (icl_sampler_is_greedy(p))
        return icl_argmax(logits, V);
    if (p->temperature != 1.0f)
        icl_temperature(logits, V, p->temperature);
    icl_top_k(s, logits, p->top_k);
    icl_top_p(s, logits, p->top_p);
    icl_min_p(s, logits, p->min_p);
    return icl_sample_softmax(s, logits, rng);
}
