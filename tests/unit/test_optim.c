/* Unit tests of lib/optim.c: AdamW against a float64 reference and the
 * closed form of the first step; schedules against transformers' own lrs
 * (tests/data/optim/train_curve.json, made by tests/hf/fixtures/make_fixtures.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/data"
#endif

static void adamw_first_step_is_signed_lr(void **state)
{
    (void)state;
    float p[4] = {1.0f, -2.0f, 0.5f, 0.0f}, g[4] = {0.3f, -0.01f, 2.0f, -5.0f};
    float m[4] = {0}, v[4] = {0};
    icl_adamw h = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    float p0[4];
    for (int i = 0; i < 4; i++) p0[i] = p[i];
    icl_adamw_update(p, g, m, v, 4, &h, h.lr, 1, 1);
    for (int i = 0; i < 4; i++) {
        /* bias-corrected m/sqrt(v) is g/|g| on the first step */
        double want = p0[i] * (1 - 1e-2 * 0.1) - 1e-2 * (g[i] / (fabs(g[i]) + 1e-8));
        assert_true(fabs(p[i] - want) < 1e-6);
        assert_true(fabs(m[i] - 0.1 * g[i]) < 1e-7);
        assert_true(fabs(v[i] - 0.05 * g[i] * g[i]) < 1e-6);
    }
    /* no decay: only the Adam term moves the parameter */
    float q[1] = {3.0f}, gq[1] = {1.0f}, mq[1] = {0}, vq[1] = {0};
    icl_adamw_update(q, gq, mq, vq, 1, &h, h.lr, 1, 0);
    assert_true(fabs(q[0] - (3.0 - 1e-2)) < 1e-6);
}

static void adamw_matches_float64_over_many_steps(void **state)
{
    (void)state;
    enum { N = 1000, STEPS = 50 };
    float *p = calloc(N, 4), *g = calloc(N, 4), *m = calloc(N, 4), *v = calloc(N, 4);
    double *pd = calloc(N, 8), *md = calloc(N, 8), *vd = calloc(N, 8);
    icl_adamw h = {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
        pd[i] = p[i];
    }
    for (long t = 1; t <= STEPS; t++) {
        for (int i = 0; i < N; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            g[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.1f;
        }
        icl_adamw_update(p, g, m, v, N, &h, h.lr, t, 1);
        for (int i = 0; i < N; i++) {
            pd[i] *= 1 - h.lr * h.weight_decay;
            md[i] = h.beta1 * md[i] + (1 - h.beta1) * g[i];
            vd[i] = h.beta2 * vd[i] + (1 - h.beta2) * (double)g[i] * g[i];
            double mh = md[i] / (1 - pow(h.beta1, t)), vh = vd[i] / (1 - pow(h.beta2, t));
            pd[i] -= h.lr * mh / (sqrt(vh) + h.eps);
        }
    }
    double maxerr = 0;
    for (int i = 0; i < N; i++)
        maxerr = fmax(maxerr, fabs(p[i] - pd[i]));
    assert_true(maxerr < 2e-6);
    free(p); free(g); free(m); free(v); free(pd); free(md); free(vd);
}

static void clipping_as_torch(void **state)
{
    (void)state;
    float g[3] = {3.0f, 4.0f, 0.0f};
    double norm = sqrt(icl_sumsq(g, 3));
    assert_true(norm == 5.0);
    double c = icl_clip_coef(norm, 1.0);
    assert_true(fabs(c - 1.0 / (5.0 + 1e-6)) < 1e-15);
    assert_true(icl_clip_coef(0.5, 1.0) == 1.0);
    assert_true(icl_clip_coef(50.0, 0.0) == 1.0); /* off */
    icl_scale(g, 3, (float)c);
    assert_true(fabs(sqrt(icl_sumsq(g, 3)) - 1.0) < 1e-6);
}

/* The global norm must not depend on the thread count (icl-train changes it
 * during a run, issue 18): the same bits on 1, 2, 3 and 7 threads, for
 * lengths around the block size, and the value of an exact sum. */
static void sumsq_same_bits_for_any_thread_count(void **state)
{
    (void)state;
    size_t lens[] = {1, 16383, 16384, 16385, 100003, 1000003, 17000003};
    int saved = omp_get_max_threads();
    for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
        size_t n = lens[l];
        float *g = malloc(n * sizeof *g);
        assert_non_null(g);
        uint64_t x = 88172645463325252ULL;
        long double exact = 0;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* magnitudes from 1e-6 to 1e2: rounding depends on the order */
            g[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * powf(10.0f, (float)(x % 9) - 6.0f);
            exact += (long double)g[i] * g[i];
        }
        double ref = 0;
        for (int t = 1; t <= 7; t += t == 3 ? 4 : 1) {
            if (t == 4)
                continue;
            omp_set_num_threads(t);
            double s = icl_sumsq(g, n);
            if (t == 1)
                ref = s;
            else
                assert_memory_equal(&s, &ref, sizeof s);
        }
        assert_true(fabsl((long double)ref - exact) <= 1e-12L * exact);
        free(g);
    }
    omp_set_num_threads(saved);
}

static void cosine_schedule_matches_transformers(void **state)
{
    (void)state;
    json_error_t e;
    json_t *d = json_load_file(TEST_DATA "/optim/train_curve.json", 0, &e);
    assert_non_null(d);
    json_t *hp = json_object_get(d, "hyperparameters");
    icl_schedule s = {.kind = ICL_SCHED_COSINE,
                      .lr = json_real_value(json_object_get(hp, "lr")),
                      .warmup_steps = json_integer_value(json_object_get(hp, "warmup_steps")),
                      .total_steps = json_integer_value(json_object_get(hp, "total_steps"))};
    json_t *steps = json_object_get(d, "steps");
    assert_int_equal(json_array_size(steps), 10);
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st) {
        double want = json_number_value(json_object_get(st, "lr"));
        double got = icl_lr_at(&s, json_integer_value(json_object_get(st, "step")));
        assert_true(fabs(got - want) <= 1e-15 * fmax(1.0, fabs(want)));
    }
    json_decref(d);
}

static void other_schedules(void **state)
{
    (void)state;
    icl_schedule s = {.kind = ICL_SCHED_LINEAR, .lr = 1.0, .warmup_steps = 4, .total_steps = 12};
    assert_true(icl_lr_at(&s, 0) == 0.0);
    assert_true(icl_lr_at(&s, 2) == 0.5);
    assert_true(icl_lr_at(&s, 4) == 1.0);
    assert_true(icl_lr_at(&s, 8) == 0.5);
    assert_true(icl_lr_at(&s, 12) == 0.0);
    assert_true(icl_lr_at(&s, 20) == 0.0); /* clamped, never negative */
    s.kind = ICL_SCHED_CONSTANT;
    assert_true(icl_lr_at(&s, 1) == 0.25);
    assert_true(icl_lr_at(&s, 100) == 1.0);
    s.kind = ICL_SCHED_COSINE;
    s.min_lr = 0.1;
    assert_true(fabs(icl_lr_at(&s, 8) - 0.55) < 1e-15); /* halfway: min + (lr-min)/2 */
    assert_true(fabs(icl_lr_at(&s, 12) - 0.1) < 1e-15);
    icl_sched_kind k;
    assert_int_equal(icl_sched_parse("cosine", &k), 0);
    assert_int_equal(k, ICL_SCHED_COSINE);
    assert_int_equal(icl_sched_parse("cosin", &k), -1);
}

/* lib/optim.c's loop with the same roundings (its fused steps where the
 * machine has FMA), not vectorised: the vectorised loop must give the same
 * bits for every lane and the tail.  (At -O3 these are also the bits of
 * the scalar loop optim.c had before, whose fusions the compiler chose.) */
#ifdef __FMA__
#define REF_FMA(a, b, c) fmaf(a, b, c)
#else
#define REF_FMA(a, b, c) ((a) * (b) + (c))
#endif
__attribute__((optimize("no-tree-vectorize"))) static void adamw_ref(float *p, const float *g, float *m, float *v, size_t n, const icl_adamw *h, double lr, long step,
                      int decay)
{
    const float keep = decay ? (float)(1.0 - lr * h->weight_decay) : 1.0f;
    const float w1 = (float)(1.0 - h->beta1), b2 = (float)h->beta2, w2 = (float)(1.0 - h->beta2);
    const float step_size = (float)(lr / (1.0 - pow(h->beta1, (double)step)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(h->beta2, (double)step)), eps = (float)h->eps;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float pi = p[i] * keep;
        float mi = REF_FMA(w1, gi - m[i], m[i]); /* lerp(m, g, 1-b1) */
        float vi = REF_FMA(v[i], b2, w2 * gi * gi);
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = REF_FMA(-step_size, mi / denom, pi);
        m[i] = mi;
        v[i] = vi;
    }
}

static void adamw_same_bits_as_scalar(void **state)
{
    (void)state;
    enum { N = 4099 }; /* lanes and a tail */
    float *p = malloc(N * 4), *g = malloc(N * 4), *m = calloc(N, 4), *v = calloc(N, 4);
    float *p2 = malloc(N * 4), *m2 = calloc(N, 4), *v2 = calloc(N, 4);
    uint64_t r = 7;
    for (int i = 0; i < N; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(r >> 11) / 9007199254740992.0; /* [0, 1) */
        p[i] = p2[i] = (float)(u - 0.5);
        /* magnitudes from 1e-30 to 1e2, both signs, some zeros */
        g[i] = i % 17 == 0 ? 0.0f : (float)((i & 1 ? -1 : 1) * pow(10.0, -30.0 + 32.0 * u));
    }
    icl_adamw h = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
    for (long t = 1; t <= 5; t++)
        for (int decay = 0; decay < 2; decay++) {
            icl_adamw_update(p, g, m, v, N, &h, 3e-4 * (double)t, t, decay);
            adamw_ref(p2, g, m2, v2, N, &h, 3e-4 * (double)t, t, decay);
            assert_memory_equal(p, p2, N * 4);
            assert_memory_equal(m, m2, N * 4);
            assert_memory_equal(v, v2, N * 4);
        }
    free(p), free(g), free(m), free(v), free(p2), free(m2), free(v2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(adamw_first_step_is_signed_lr),
        cmocka_unit_test(adamw_matches_float64_over_many_steps),
        cmocka_unit_test(adamw_same_bits_as_scalar),
        cmocka_unit_test(clipping_as_torch),
        cmocka_unit_test(sumsq_same_bits_for_any_thread_count),
        cmocka_unit_test(cosine_schedule_matches_transformers),
        cmocka_unit_test(other_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
