/* Unit tests of LoRA dropout (PEFT's lora_dropout; lib/linear.c, model.c):
 *   - semantics: with W = A = B = I and scale 1, y = x + dropout(x): every
 *     output is 1 (dropped: the base product still sees x) or exactly
 *     1 + 1/(1 - p) for x = 1;
 *   - statistics of the mask over 131072 elements for p = 0.1, 0.5, 0.9:
 *     the fraction dropped within 4.5 standard deviations of p, each
 *     column's within 5.5, neighbouring elements and two adapters' masks
 *     independent (joint drop rate p^2 within 4.5 sd); the same key gives
 *     the same mask on 1 and 2 threads, another key another mask;
 *   - icl_linear with two dropped adapters (fixed keys), both weight
 *     layouts, frozen or not: dx, dW, db, dA, dB against central finite
 *     differences of the forward with the same masks;
 *   - the model (llama-tiny: q_proj, v_proj; gpt2-tiny: c_attn, c_proj) with
 *     dropout 0.3: adapter gradients against finite differences of the
 *     training loss (fixed key); evaluation (loss_scale 0) and KV-cache
 *     decoding never drop (bit-identical to p = 0); training does, and
 *     depends on the key; p = 0 is bit-identical to a model never given a
 *     dropout or a key;
 *   - icl_dropout_key differs across seed, step and micro-batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linear.h"
#include "lora.h"
#include "model.h"
#include "trainer.h"
#include "util.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/data"
#endif

static uint64_t rng = 777;
static float frand(void) /* uniform in [-1, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / (double)(1ull << 24) * 2 - 1);
}
static float *rnd(size_t n, float s)
{
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = s * frand();
    return p;
}

typedef double (*lossfn)(void *ctx);

/* Relative L2 error of the analytic gradient g against central differences on x[0..n). */
static double fd_check(const char *name, float *x, size_t n, const float *g, lossfn f, void *ctx, float h)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        float xi = x[i];
        x[i] = xi + h;
        double lp = f(ctx);
        x[i] = xi - h;
        double lm = f(ctx);
        x[i] = xi;
        double d = (lp - lm) / (2.0 * h), e = d - g[i];
        num += e * e;
        den += d * d;
    }
    double r = sqrt(num / (den > 0 ? den : 1));
    print_message("# %-40s rel L2 err %.2e over %zu inputs (|g| %.3g)\n", name, r, n, sqrt(den));
    assert_true(den > 0); /* a gradient that is all zero proves nothing */
    return r;
}

/* ------------------------------------------------------------ semantics and statistics */

enum { SN = 2048, SD = 64 };

/* y [SN, SD] for x = 1 through W = I plus an identity adapter (scale 1). */
static void identity_run(float p, uint64_t key, float *y, int threads)
{
    float *eye = xcalloc((size_t)SD * SD, sizeof(float)), *x = xmalloc(sizeof(float) * SN * SD);
    for (int i = 0; i < SD; i++)
        eye[i * SD + i] = 1.0f;
    for (int i = 0; i < SN * SD; i++)
        x[i] = 1.0f;
    icl_lora a = {SD, SD, SD, 0, 1.0f, eye, eye, NULL, NULL, p, key, NULL, NULL};
    icl_linear l = {{ICL_WEIGHT_F32, 0, SD, SD, 0, eye, NULL}, NULL, NULL, &a, 1, NULL};
    size_t nw = icl_linear_work(&l, SN);
    assert_int_equal(nw, (size_t)SN * (3 * SD + (p > 0 ? SD : 0))); /* N (r_max + 2 r_sum + in) */
    float *work = xmalloc(nw * sizeof(float));
    int nt = omp_get_max_threads();
    omp_set_num_threads(threads);
    icl_linear_forward(&l, y, SD, x, SD, SN, 0.0f, ICL_LIN_GEMM, 0, work);
    omp_set_num_threads(nt);
    free(work);
    free(x);
    free(eye);
}

static void mask_statistics(void **state)
{
    (void)state;
    static const float ps[] = {0.1f, 0.5f, 0.9f};
    float *y = xmalloc(sizeof(float) * SN * SD), *y2 = xmalloc(sizeof(float) * SN * SD),
          *y3 = xmalloc(sizeof(float) * SN * SD);
    for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
        float p = ps[k], keep = 1.0f + 1.0f / (1.0f - p);
        identity_run(p, 0x1234 + k, y, 1);
        long n = (long)SN * SD, dropped = 0, pairs = 0, both = 0, both2 = 0;
        for (long i = 0; i < n; i++) {
            assert_true(y[i] == 1.0f || y[i] == keep); /* the base product always sees x */
            dropped += y[i] == 1.0f;
        }
        double f = (double)dropped / n, sd = sqrt(p * (1.0 - p) / n), worst = 0;
        for (int j = 0; j < SD; j++) { /* per column */
            long d = 0;
            for (int i = 0; i < SN; i++)
                d += y[(long)i * SD + j] == 1.0f;
            worst = fmax(worst, fabs((double)d / SN - p) / sqrt(p * (1.0 - p) / SN));
        }
        for (int i = 0; i < SN; i++) /* neighbours in a row */
            for (int j = 0; j + 1 < SD; j += 2, pairs++)
                both += y[(long)i * SD + j] == 1.0f && y[(long)i * SD + j + 1] == 1.0f;
        /* the same key on 2 threads; another key (another adapter or step) */
        identity_run(p, 0x1234 + k, y2, 2);
        assert_memory_equal(y, y2, sizeof(float) * SN * SD);
        identity_run(p, 0x9876 + k, y3, 1);
        long differ = 0;
        for (long i = 0; i < n; i++) {
            both2 += y[i] == 1.0f && y3[i] == 1.0f;
            differ += y[i] != y3[i];
        }
        double pp = (double)p * p, sdp = sqrt(pp * (1 - pp) / pairs), sd2 = sqrt(pp * (1 - pp) / n);
        print_message("# p %.1f: dropped %.5f (%.2f sd), worst column %.2f sd, neighbours both dropped %.5f "
                      "(p^2 %.4f, %.2f sd), two keys both dropped %.5f (%.2f sd)\n",
                      p, f, (f - p) / sd, worst, (double)both / pairs, pp, ((double)both / pairs - pp) / sdp,
                      (double)both2 / n, ((double)both2 / n - pp) / sd2);
        assert_true(fabs(f - p) <= 4.5 * sd);
        assert_true(worst <= 5.5);
        assert_true(fabs((double)both / pairs - pp) <= 4.5 * sdp);
        assert_true(fabs((double)both2 / n - pp) <= 4.5 * sd2);
        assert_true(differ > n / 20);
    }
    /* p 0: the adapter sees x whatever the key */
    identity_run(0.0f, 5, y, 1);
    for (long i = 0; i < (long)SN * SD; i++)
        assert_true(y[i] == 2.0f);
    free(y);
    free(y2);
    free(y3);
}

/* ------------------------------------------------------------ icl_linear gradients */

enum { N = 7, IN = 12, OUT = 10, R1 = 3, R2 = 2 };
typedef struct {
    float *x, *w, *b, *y, *R;
    icl_lora lo[2];
    icl_linear l;
    float *work;
} lin_case;

static double lin_loss(void *ctx)
{
    lin_case *c = ctx;
    icl_linear_forward(&c->l, c->y, OUT, c->x, IN, N, 0.0f, ICL_LIN_GEMM, 0, c->work);
    double s = 0;
    for (int i = 0; i < N * OUT; i++)
        s += (double)c->y[i] * c->R[i];
    return s;
}

static void linear_fd(void **state)
{
    (void)state;
    for (int conv = 0; conv < 2; conv++)
        for (int frozen = 0; frozen < 2; frozen++) {
            lin_case c;
            c.x = rnd((size_t)N * IN, 1);
            c.w = rnd((size_t)IN * OUT, 0.5f);
            c.b = rnd(OUT, 1);
            c.y = xmalloc((size_t)N * OUT * sizeof(float));
            c.R = rnd((size_t)N * OUT, 1);
            float *A1 = rnd((size_t)R1 * IN, 0.5f), *B1 = rnd((size_t)4 * R1, 0.5f);
            float *A2 = rnd((size_t)R2 * IN, 0.5f), *B2 = rnd((size_t)3 * R2, 0.5f);
            float *dx = xcalloc((size_t)N * IN, 4), *dw = xcalloc((size_t)IN * OUT, 4), *db = xcalloc(OUT, 4);
            float *dA1 = xcalloc((size_t)R1 * IN, 4), *dB1 = xcalloc((size_t)4 * R1, 4);
            float *dA2 = xcalloc((size_t)R2 * IN, 4), *dB2 = xcalloc((size_t)3 * R2, 4);
            c.lo[0] = (icl_lora){R1, IN, 4, 0, 2.0f / R1, A1, B1, dA1, dB1, 0.4f, 11, NULL, NULL};
            c.lo[1] = (icl_lora){R2, IN, 3, 6, 0.5f, A2, B2, dA2, dB2, 0.25f, 12, NULL, NULL};
            c.l = (icl_linear){{ICL_WEIGHT_F32, 0, OUT, IN, conv, c.w, frozen ? NULL : dw}, c.b, db, c.lo, 2, NULL};
            assert_int_equal(icl_linear_work(&c.l, N), N * (R1 + 2 * (R1 + R2) + IN)); /* N (r_max + 2 r_sum + in) */
            c.work = xmalloc(icl_linear_work(&c.l, N) * sizeof(float));
            /* the masks do something: not the output without dropout */
            float *y0 = xmalloc((size_t)N * OUT * sizeof(float));
            lin_loss(&c);
            memcpy(y0, c.y, (size_t)N * OUT * sizeof(float));
            c.lo[0].dropout = c.lo[1].dropout = 0;
            lin_loss(&c);
            assert_true(memcmp(y0, c.y, (size_t)N * OUT * sizeof(float)) != 0);
            c.lo[0].dropout = 0.4f;
            c.lo[1].dropout = 0.25f;
            icl_linear_backward(&c.l, dx, IN, 0.0f, c.R, OUT, c.x, IN, N, c.work);
            const char *lay = conv ? "conv1d" : "linear";
            char nm[64];
#define FD(what, p, n, g)                                                                                  \
    (snprintf(nm, sizeof nm, "dropout %s %s", lay, what), assert_true(fd_check(nm, p, n, g, lin_loss, &c, 1e-2f) < 1e-3))
            FD("dx", c.x, (size_t)N * IN, dx);
            FD("dA (adapter 1)", A1, (size_t)R1 * IN, dA1);
            FD("dB (adapter 1)", B1, (size_t)4 * R1, dB1);
            FD("dA (adapter 2)", A2, (size_t)R2 * IN, dA2);
            FD("dB (adapter 2)", B2, (size_t)3 * R2, dB2);
            FD("db", c.b, OUT, db);
            if (!frozen)
                FD("dW (the base sees x undropped)", c.w, (size_t)IN * OUT, dw);
#undef FD
            free(y0);
            free(c.work);
            free(c.x); free(c.w); free(c.b); free(c.y); free(c.R);
            free(A1); free(B1); free(A2); free(B2);
            free(dx); free(dw); free(db); free(dA1); free(dB1); free(dA2); free(dB2);
        }
}

/* ------------------------------------------------------------ the model */

static icl_model *load_lora(const char *name, float p)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/model/%s/model", TEST_DATA, name);
    icl_model *m = icl_model_load(path, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    icl_lora_config c = {0};
    c.r = 4;
    c.lora_alpha = 8;
    c.lora_dropout = p;
    assert_int_equal(icl_lora_set_targets(&c, &m->cfg, m->cfg.arch == ICL_ARCH_GPT2 ? "c_attn,c_proj" : "q_proj,v_proj",
                                          err, sizeof err), 0);
    icl_param_set *s = icl_lora_attach(m, &c, 1, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    icl_lora_config_free(&c);
    uint64_t st = 5;
    for (int i = 0; i < s->n_views; i++)
        if (strstr(s->views[i].name, "lora_B"))
            for (size_t j = 0; j < s->views[i].numel; j++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                s->params[s->views[i].offset + j] = (float)((st >> 40) / 16777216.0 - 0.5) * 0.4f;
            }
    return m;
}

typedef struct {
    icl_model *m;
    icl_batch b;
} model_case;

static double train_loss(void *ctx) /* the training forward: with dropout */
{
    model_case *c = ctx;
    long nt;
    return icl_model_forward(c->m, &c->b, NULL, 1.0f, &nt);
}

static void model_dropout(void **state)
{
    (void)state;
    static const char *const names[2] = {"llama-tiny", "gpt2-tiny"};
    for (int k = 0; k < 2; k++) {
        icl_model *m = load_lora(names[k], 0.3f), *m0 = load_lora(names[k], 0.0f), *plain = load_lora(names[k], 0.0f);
        int V = m->cfg.vocab_size, T = 8;
        int32_t ids[16];
        for (int i = 0; i < 16; i++)
            ids[i] = (i * 7 + 3) % V;
        model_case c = {m, {2, T, ids, NULL, NULL, NULL, NULL}};
        char err[256];
        long nt;
        /* evaluation and decoding never drop */
        float *l1 = xmalloc(sizeof(float) * 16 * V), *l0 = xmalloc(sizeof(float) * 16 * V);
        icl_model_set_dropout_key(m, 42);
        double e1 = icl_model_forward(m, &c.b, l1, 0, &nt), e0 = icl_model_forward(m0, &c.b, l0, 0, &nt);
        assert_true(e1 == e0);
        assert_memory_equal(l0, l1, sizeof(float) * 16 * V);
        icl_kv_cache *k1 = icl_kv_cache_new(m, T), *k0 = icl_kv_cache_new(m0, T);
        assert_int_equal(icl_model_decode(m, k1, ids, T, l1, 1, err, sizeof err), 0);
        assert_int_equal(icl_model_decode(m0, k0, ids, T, l0, 1, err, sizeof err), 0);
        assert_memory_equal(l0, l1, sizeof(float) * T * V);
        icl_kv_cache_free(k1);
        icl_kv_cache_free(k0);
        /* training drops: another loss than p 0, the same for the same key, another for another key */
        double t42 = train_loss(&c), t0 = icl_model_forward(m0, &c.b, NULL, 1.0f, &nt);
        assert_true(t42 != t0);
        assert_true(train_loss(&c) == t42);
        icl_model_set_dropout_key(m, 43);
        assert_true(train_loss(&c) != t42);
        /* p 0 with a key is a model never given either, bit for bit */
        icl_model_set_dropout_key(m0, 43);
        icl_model_zero_grads(m0);
        icl_model_zero_grads(plain);
        assert_true(icl_model_forward(m0, &c.b, NULL, 1.0f, &nt) == icl_model_forward(plain, &c.b, NULL, 1.0f, &nt));
        icl_model_zero_grads(m0);
        assert_true(icl_model_forward(m0, &c.b, NULL, 1.0f, &nt) == icl_model_forward(plain, &c.b, NULL, 0.0f, &nt));
        assert_int_equal(icl_model_backward(m0, &c.b, err, sizeof err), 0);
        icl_model_zero_grads(plain);
        icl_model_forward(plain, &c.b, NULL, 1.0f, &nt);
        assert_int_equal(icl_model_backward(plain, &c.b, err, sizeof err), 0);
        assert_memory_equal(m0->lora_set->grads, plain->lora_set->grads, m0->lora_set->num_params * sizeof(float));
        /* gradients with the masks of key 43 against finite differences of the training loss */
        icl_param_set *s = m->lora_set;
        icl_model_zero_grads(m);
        train_loss(&c);
        assert_int_equal(icl_model_backward(m, &c.b, err, sizeof err), 0);
        float *g = xmalloc(s->num_params * sizeof(float));
        memcpy(g, s->grads, s->num_params * sizeof(float));
        for (int i = 0; i < 4; i++) {
            const icl_param_view *v = &s->views[i];
            size_t n = v->numel < 48 ? v->numel : 48;
            char nm[160];
            snprintf(nm, sizeof nm, "%s %s", names[k], v->name + 17);
            assert_true(fd_check(nm, s->params + v->offset, n, g + v->offset, train_loss, &c, 2e-2f) < 5e-3);
        }
        free(g);
        free(l0);
        free(l1);
        icl_model_free(m);
        icl_model_free(m0);
        icl_model_free(plain);
    }
    /* the model refuses a dropout outside [0, 1) */
    icl_model *m = load_lora("llama-tiny", 0.0f);
    char err[256];
    assert_int_equal(icl_model_set_lora_dropout(m, 1.0f, err, sizeof err), -1);
    assert_non_null(strstr(err, "[0, 1)"));
    icl_model_free(m);
}

static void dropout_keys(void **state)
{
    (void)state;
    uint64_t k = icl_dropout_key(42, 1, 0);
    assert_true(k == icl_dropout_key(42, 1, 0));
    assert_true(k != icl_dropout_key(43, 1, 0));
    assert_true(k != icl_dropout_key(42, 2, 0));
    assert_true(k != icl_dropout_key(42, 1, 1));
    assert_true(icl_dropout_key(42, 1, 2) != icl_dropout_key(42, 2, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mask_statistics),
        cmocka_unit_test(linear_fd),
        cmocka_unit_test(model_dropout),
        cmocka_unit_test(dropout_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
