/* Unit tests of lib/linear.c and the model's parameter sets:
 *   - icl_linear with low-rank adapters (two on column blocks of one fused
 *     product, as q_proj / v_proj on Llama's q|k|v): forward against a
 *     double-precision product, backward (dx, dW, db, dA, dB) against
 *     central finite differences, both weight layouts, and a frozen weight
 *     (no dW, input and adapter gradients unchanged);
 *   - the ROWS (decoding) kernel with adapters equals the GEMM kernel to
 *     float32 rounding;
 *   - the adapters' own kernels at odd shapes and ranks 1 to 72 against
 *     double precision, the same bits on 1, 2 and 3 threads;
 *   - the down products kept for the backward (icl_linear.xa) and the one
 *     pass adding adapters' input gradients give the bits of recomputing
 *     and of adding them one at a time;
 *   - icl_model_add_lora on llama-tiny and gpt2-tiny: with B = 0 the logits
 *     are bit-identical to the base model's; with the base frozen no base
 *     gradient or moment buffer exists and the model's adapter gradients
 *     match finite differences of the model's loss;
 *   - adapters folded into a bf16 weight's products (packs with room, kx):
 *     y and dx within bf16's bound of double precision, dA and dB the bits
 *     of the unfolded bf16 path, the same bits on 1 and 2 threads, and a
 *     plain product through packs with room the bits of one without, and
 *     with a bias, beta 1 and the down products recomputed the bits of
 *     the product plus those, decoding's ROWS kernel the GEMM's bits;
 *   - model errors are returned (NAN and m->err, -1 and err), not fatal;
 *   - parity with PEFT (tests/data/lora-llama-tiny, made by its
 *     tests/hf/fixtures/make_fixtures2.py): PEFT's adapter file read into the set by its
 *     names, then logits, loss, adapter gradients and one AdamW step
 *     (icl_train_step, base frozen) against PEFT's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bf16.h"
#include "linear.h"
#include "model.h"
#include "safetensors.h"
#include "trainer.h"
#include "util.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/data"
#endif

static uint64_t rng = 4242;
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
static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
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
    print_message("# %-34s rel L2 err %.2e over %zu inputs (|g| %.3g)\n", name, r, n, sqrt(den));
    return r;
}

/* ------------------------------------------------------------ icl_linear with adapters */

enum { N = 5, IN = 12, OUT = 10, R1 = 3, R2 = 2 };
typedef struct {
    float *x, *w, *b, *y, *R, *A1, *B1, *A2, *B2;
    icl_lora lo[2];
    icl_linear l;
} lin_case;

static double lin_loss(void *ctx)
{
    lin_case *c = ctx;
    icl_linear l = c->l;
    float work[2 * N * R1];
    icl_linear_forward(&l, c->y, OUT, c->x, IN, N, 0.0f, ICL_LIN_GEMM, 0, work);
    return dot(c->y, c->R, (size_t)N * OUT);
}

/* Adapters at sizes where linear.c's own rank-r kernel (lora_rows_expand)
 * takes its 64-column blocks, a column tail and a partial block of rows,
 * and runs on several threads: y and dx against double precision, and the
 * same bits on 1 and 2 threads and for a row computed alone. */
static void lora_linear_wide(void **state)
{
    (void)state;
    enum { WN = 37, WIN = 130, WOUT = 200, WR = 5, WOUT1 = 150, WOFF1 = 40 };
    float *x = rnd((size_t)WN * WIN, 1), *w = rnd((size_t)WIN * WOUT, 0.1f), *dy = rnd((size_t)WN * WOUT, 1);
    float *A = rnd((size_t)WR * WIN, 0.3f), *B = rnd((size_t)WOUT1 * WR, 0.3f);
    float *dA = xcalloc((size_t)WR * WIN, 4), *dB = xcalloc((size_t)WOUT1 * WR, 4);
    for (int drop = 0; drop < 2; drop++) {
        icl_lora lo = {WR, WIN, WOUT1, WOFF1, 1.5f, A, B, dA, dB, drop ? 0.25f : 0.0f, 77, NULL, NULL};
        icl_linear l = {{ICL_WEIGHT_F32, 0, WOUT, WIN, 0, w, NULL}, NULL, NULL, &lo, 1, NULL};
        float *work = xmalloc(icl_linear_work(&l, WN) * sizeof(float));
        float *y[2], *dx[2], *y1 = xmalloc((size_t)WOUT * sizeof(float));
        for (int t = 0; t < 2; t++) {
            icl_set_threads(t + 1);
            y[t] = xmalloc((size_t)WN * WOUT * sizeof(float));
            dx[t] = xmalloc((size_t)WN * WIN * sizeof(float));
            icl_linear_forward(&l, y[t], WOUT, x, WIN, WN, 0.0f, ICL_LIN_GEMM, t + 1, work);
            icl_linear_backward(&l, dx[t], WIN, 0.0f, dy, WOUT, x, WIN, WN, work);
        }
        assert_memory_equal(y[0], y[1], (size_t)WN * WOUT * sizeof(float));
        assert_memory_equal(dx[0], dx[1], (size_t)WN * WIN * sizeof(float));
        if (!drop) { /* row 36 alone (the partial block) gives the same bits as in the batch */
            icl_linear_forward(&l, y1, WOUT, x + (size_t)36 * WIN, WIN, 1, 0.0f, ICL_LIN_GEMM, 1, work);
            assert_memory_equal(y1, y[0] + (size_t)36 * WOUT, (size_t)WOUT * sizeof(float));
        }
        double s = 1.0 / (1.0 - lo.dropout);
        for (int i = 0; i < WN; i++) {
            double xa[WR], t[WR];
            for (int q = 0; q < WR; q++) {
                xa[q] = 0;
                t[q] = 0;
                for (int k = 0; k < WIN; k++) { /* dropout(x): the mask as linear.h defines it */
                    uint64_t z = lo.key + ((uint64_t)i * WIN + (uint64_t)k + 1) * 0x9e3779b97f4a7c15ull;
                    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
                    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
                    z ^= z >> 31;
                    double keep = !drop || (z >> 32) >= (uint64_t)(0.25 * 4294967296.0) ? s : 0.0;
                    xa[q] += keep * x[(size_t)i * WIN + k] * A[q * WIN + k];
                }
                for (int j = 0; j < WOUT1; j++)
                    t[q] += (double)dy[(size_t)i * WOUT + WOFF1 + j] * B[j * WR + q];
            }
            for (int j = 0; j < WOUT; j++) {
                double r = 0;
                for (int k = 0; k < WIN; k++)
                    r += (double)x[(size_t)i * WIN + k] * w[(size_t)j * WIN + k];
                if (j >= WOFF1 && j < WOFF1 + WOUT1)
                    for (int q = 0; q < WR; q++)
                        r += lo.scale * xa[q] * B[(j - WOFF1) * WR + q];
                assert_true(fabs(r - y[0][(size_t)i * WOUT + j]) <= 1e-4 * (1 + fabs(r)));
            }
            for (int k = 0; k < WIN; k++) {
                uint64_t z = lo.key + ((uint64_t)i * WIN + (uint64_t)k + 1) * 0x9e3779b97f4a7c15ull;
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
                z ^= z >> 31;
                double keep = !drop || (z >> 32) >= (uint64_t)(0.25 * 4294967296.0) ? s : 0.0;
                double r = 0, ra = 0;
                for (int j = 0; j < WOUT; j++)
                    r += (double)dy[(size_t)i * WOUT + j] * w[(size_t)j * WIN + k];
                for (int q = 0; q < WR; q++)
                    ra += lo.scale * t[q] * A[q * WIN + k];
                r += keep * ra;
                assert_true(fabs(r - dx[0][(size_t)i * WIN + k]) <= 1e-4 * (1 + fabs(r)));
            }
        }
        for (int t = 0; t < 2; t++)
            free(y[t]), free(dx[t]);
        free(y1), free(work);
    }
    icl_set_threads(0);
    free(x), free(w), free(dy), free(A), free(B), free(dA), free(dB);
}

/* The adapters' own kernels (linear.c: lora_skinny for x A^T and scale dy
 * B, lora_reduce for dA and dB, lora_rows_expand* for the rank-r updates)
 * at shapes that take every path: ranks 1, 8, 16, 64 and 72 (more than the
 * 4 vectors and 16 sums a block holds), row counts not a multiple of the
 * blocks (6 and 64 rows), in / out not multiples of 16, adapters sharing x
 * (one pass) and one with dropout (its own pass), gradients accumulated
 * onto nonzero ones, over a zero base weight.  y, dx, dA and dB against double precision (each
 * element within 2e-5 of the sum of its terms' magnitudes), and the same
 * bits on 1, 2 and 3 threads. */
typedef struct {
    int n, in, out, nl, r[3], off[3], width[3];
    float drop[3];
} kcase;

static int keep_of(uint64_t key, float p, uint64_t e) /* linear.h's dropout mask */
{
    uint64_t z = key + (e + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return p <= 0 || (z >> 32) >= (uint64_t)((double)p * 4294967296.0);
}

static double kmax_err; /* the largest error / magnitude seen */
static void kcheck(float got, double ref, double mag)
{
    double e = fabs((double)got - ref);
    if (e / (mag + 1e-300) > kmax_err)
        kmax_err = e / (mag + 1e-300);
    assert_true(e <= 2e-5 * mag + 1e-30);
}

static void lora_kernels_ref(void **state)
{
    (void)state;
    static const kcase cs[] = {
        {301, 45, 83, 3, {1, 8, 16}, {0, 30, 50}, {30, 20, 33}, {0, 0, 0}},
        {77, 83, 150, 3, {64, 72, 16}, {3, 50, 130}, {40, 80, 20}, {0, 0, 0.25f}},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const kcase *k = &cs[c];
        int n = k->n, in = k->in, out = k->out, nl = k->nl;
        /* W = 0: BLIS's own sums can change with the thread count at such
         * shapes (edge tiles split between threads), the adapters' must not */
        float *x = rnd((size_t)n * in, 1), *w = xcalloc((size_t)out * in, sizeof(float)), *dy = rnd((size_t)n * out, 1);
        float *A[3], *B[3], *dA0[3], *dB0[3], *dA[4][3], *dB[4][3], *y[4], *dx[4];
        icl_lora lo[4][3];
        for (int a = 0; a < nl; a++) {
            A[a] = rnd((size_t)k->r[a] * in, 0.3f);
            B[a] = rnd((size_t)k->width[a] * k->r[a], 0.3f);
            dA0[a] = rnd((size_t)k->r[a] * in, 0.1f); /* gradients accumulate onto what is there */
            dB0[a] = rnd((size_t)k->width[a] * k->r[a], 0.1f);
        }
        kmax_err = 0;
        for (int t = 1; t <= 3; t++) { /* threads */
            icl_set_threads(t);
            for (int a = 0; a < nl; a++) {
                size_t na = (size_t)k->r[a] * in, nb = (size_t)k->width[a] * k->r[a];
                dA[t][a] = xmalloc(na * sizeof(float));
                dB[t][a] = xmalloc(nb * sizeof(float));
                memcpy(dA[t][a], dA0[a], na * sizeof(float));
                memcpy(dB[t][a], dB0[a], nb * sizeof(float));
                lo[t][a] = (icl_lora){k->r[a], in, k->width[a], k->off[a], 1.5f / k->r[a], A[a], B[a], dA[t][a],
                                      dB[t][a], k->drop[a], 99 + (uint64_t)a, NULL, NULL};
            }
            icl_linear l = {{ICL_WEIGHT_F32, 0, out, in, 0, w, NULL}, NULL, NULL, lo[t], nl, NULL};
            l.xa = xmalloc(icl_linear_xa_size(&l, n) * sizeof(float));
            float *work = xmalloc(icl_linear_work(&l, n) * sizeof(float));
            y[t] = xmalloc((size_t)n * out * sizeof(float));
            dx[t] = xmalloc((size_t)n * in * sizeof(float));
            icl_linear_forward(&l, y[t], out, x, in, n, 0.0f, ICL_LIN_GEMM, t, work);
            icl_linear_backward(&l, dx[t], in, 0.0f, dy, out, x, in, n, work);
            free(work), free(l.xa);
            if (t > 1) {
                assert_memory_equal(y[t], y[1], (size_t)n * out * sizeof(float));
                assert_memory_equal(dx[t], dx[1], (size_t)n * in * sizeof(float));
                for (int a = 0; a < nl; a++) {
                    assert_memory_equal(dA[t][a], dA[1][a], (size_t)k->r[a] * in * sizeof(float));
                    assert_memory_equal(dB[t][a], dB[1][a], (size_t)k->width[a] * k->r[a] * sizeof(float));
                }
            }
        }
        icl_set_threads(0);
        /* double precision, with magnitudes (sums of |terms|): the base */
        double *ry = xcalloc((size_t)n * out, sizeof(double)), *my = xcalloc((size_t)n * out, sizeof(double));
        double *rx = xcalloc((size_t)n * in, sizeof(double)), *mx = xcalloc((size_t)n * in, sizeof(double));
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++)
                for (int q = 0; q < in; q++) {
                    double p = (double)x[(size_t)i * in + q] * w[(size_t)j * in + q];
                    double g = (double)dy[(size_t)i * out + j] * w[(size_t)j * in + q];
                    ry[(size_t)i * out + j] += p, my[(size_t)i * out + j] += fabs(p);
                    rx[(size_t)i * in + q] += g, mx[(size_t)i * in + q] += fabs(g);
                }
        for (int a = 0; a < nl; a++) { /* each adapter: xd = dropout(x), xa = xd A^T, t = s dy B */
            const icl_lora *L = &lo[1][a];
            int r = L->r, wd = L->out;
            double s = L->dropout > 0 ? 1.0 / (1.0 - L->dropout) : 1.0;
            double *xd = xmalloc((size_t)n * in * sizeof(double)), *xa = xcalloc((size_t)n * r, sizeof(double));
            double *xam = xcalloc((size_t)n * r, sizeof(double)), *tt = xcalloc((size_t)n * r, sizeof(double));
            double *ttm = xcalloc((size_t)n * r, sizeof(double));
            for (int i = 0; i < n; i++)
                for (int j = 0; j < in; j++)
                    xd[(size_t)i * in + j] =
                        keep_of(L->key, L->dropout, (uint64_t)i * in + j) ? s * x[(size_t)i * in + j] : 0.0;
            for (int i = 0; i < n; i++)
                for (int q = 0; q < r; q++) {
                    for (int j = 0; j < in; j++) {
                        double p = xd[(size_t)i * in + j] * L->A[(size_t)q * in + j];
                        xa[(size_t)i * r + q] += p, xam[(size_t)i * r + q] += fabs(p);
                    }
                    for (int j = 0; j < wd; j++) {
                        double p = L->scale * (double)dy[(size_t)i * out + L->out_off + j] * L->B[(size_t)j * r + q];
                        tt[(size_t)i * r + q] += p, ttm[(size_t)i * r + q] += fabs(p);
                    }
                }
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < wd; j++) /* y += s xa B^T */
                    for (int q = 0; q < r; q++) {
                        double bq = L->scale * (double)L->B[(size_t)j * r + q];
                        ry[(size_t)i * out + L->out_off + j] += xa[(size_t)i * r + q] * bq;
                        my[(size_t)i * out + L->out_off + j] += xam[(size_t)i * r + q] * fabs(bq);
                    }
                for (int j = 0; j < in; j++) { /* dx += mask (t A) */
                    double ks = keep_of(L->key, L->dropout, (uint64_t)i * in + j) ? s : 0.0;
                    for (int q = 0; q < r; q++) {
                        rx[(size_t)i * in + j] += ks * tt[(size_t)i * r + q] * L->A[(size_t)q * in + j];
                        mx[(size_t)i * in + j] += ks * ttm[(size_t)i * r + q] * fabs(L->A[(size_t)q * in + j]);
                    }
                }
            }
            for (int q = 0; q < r; q++) { /* dA = dA0 + t^T xd */
                for (int j = 0; j < in; j++) {
                    double v = dA0[a][(size_t)q * in + j], m = fabs(v);
                    for (int i = 0; i < n; i++) {
                        v += tt[(size_t)i * r + q] * xd[(size_t)i * in + j];
                        m += ttm[(size_t)i * r + q] * fabs(xd[(size_t)i * in + j]);
                    }
                    kcheck(dA[1][a][(size_t)q * in + j], v, m);
                }
                for (int j = 0; j < wd; j++) { /* dB = dB0 + s dy^T xa */
                    double v = dB0[a][(size_t)j * r + q], m = fabs(v);
                    for (int i = 0; i < n; i++) {
                        double d = L->scale * (double)dy[(size_t)i * out + L->out_off + j];
                        v += d * xa[(size_t)i * r + q];
                        m += fabs(d) * xam[(size_t)i * r + q];
                    }
                    kcheck(dB[1][a][(size_t)j * r + q], v, m);
                }
            }
            free(xd), free(xa), free(xam), free(tt), free(ttm);
        }
        for (size_t e = 0; e < (size_t)n * out; e++)
            kcheck(y[1][e], ry[e], my[e]);
        for (size_t e = 0; e < (size_t)n * in; e++)
            kcheck(dx[1][e], rx[e], mx[e]);
        print_message("# lora kernels, case %zu: largest error / magnitude %.2e\n", c, kmax_err);
        free(ry), free(my), free(rx), free(mx);
        for (int a = 0; a < nl; a++) {
            free(A[a]), free(B[a]), free(dA0[a]), free(dB0[a]);
            for (int t = 1; t <= 3; t++)
                free(dA[t][a]), free(dB[t][a]);
        }
        for (int t = 1; t <= 3; t++)
            free(y[t]), free(dx[t]);
        free(x), free(w), free(dy);
    }
}

static void lora_linear_fd(void **state)
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
            c.A1 = rnd((size_t)R1 * IN, 0.5f);
            c.B1 = rnd((size_t)4 * R1, 0.5f); /* adapter 1: columns 0..3 */
            c.A2 = rnd((size_t)R2 * IN, 0.5f);
            c.B2 = rnd((size_t)3 * R2, 0.5f); /* adapter 2: columns 6..8 */
            float *dx = xcalloc((size_t)N * IN, 4), *dw = xcalloc((size_t)IN * OUT, 4), *db = xcalloc(OUT, 4);
            float *dA1 = xcalloc((size_t)R1 * IN, 4), *dB1 = xcalloc((size_t)4 * R1, 4);
            float *dA2 = xcalloc((size_t)R2 * IN, 4), *dB2 = xcalloc((size_t)3 * R2, 4);
            c.lo[0] = (icl_lora){R1, IN, 4, 0, 2.0f / R1, c.A1, c.B1, dA1, dB1, 0.0f, 0, NULL, NULL};
            c.lo[1] = (icl_lora){R2, IN, 3, 6, 0.5f, c.A2, c.B2, dA2, dB2, 0.0f, 0, NULL, NULL};
            c.l = (icl_linear){{ICL_WEIGHT_F32, 0, OUT, IN, conv, c.w, frozen ? NULL : dw}, c.b, db, c.lo, 2, NULL};
            assert_int_equal(icl_linear_work(&c.l, N), N * (R1 + 2 * (R1 + R2))); /* N (r_max + 2 r_sum) */
            /* forward against double precision */
            lin_loss(&c);
            for (int i = 0; i < N; i++)
                for (int j = 0; j < OUT; j++) {
                    double r = c.b[j];
                    for (int k = 0; k < IN; k++)
                        r += (double)c.x[i * IN + k] * (conv ? c.w[k * OUT + j] : c.w[j * IN + k]);
                    for (int a = 0; a < 2; a++) {
                        const icl_lora *lo = &c.lo[a];
                        if (j < lo->out_off || j >= lo->out_off + lo->out)
                            continue;
                        for (int q = 0; q < lo->r; q++) {
                            double xa = 0;
                            for (int k = 0; k < IN; k++)
                                xa += (double)c.x[i * IN + k] * lo->A[q * IN + k];
                            r += lo->scale * xa * lo->B[(j - lo->out_off) * lo->r + q];
                        }
                    }
                    assert_true(fabs(r - c.y[i * OUT + j]) <= 1e-5 * (1 + fabs(r)));
                }
            float work[N * (R1 + R1 + R2)];
            icl_linear_backward(&c.l, dx, IN, 0.0f, c.R, OUT, c.x, IN, N, work);
            assert_true(fd_check("lora dx", c.x, (size_t)N * IN, dx, lin_loss, &c, 1e-2f) < 1e-3);
            assert_true(fd_check("lora dA (q block)", c.A1, (size_t)R1 * IN, dA1, lin_loss, &c, 1e-2f) < 1e-3);
            assert_true(fd_check("lora dB (q block)", c.B1, (size_t)4 * R1, dB1, lin_loss, &c, 1e-2f) < 1e-3);
            assert_true(fd_check("lora dA (v block)", c.A2, (size_t)R2 * IN, dA2, lin_loss, &c, 1e-2f) < 1e-3);
            assert_true(fd_check("lora dB (v block)", c.B2, (size_t)3 * R2, dB2, lin_loss, &c, 1e-2f) < 1e-3);
            assert_true(fd_check("bias db", c.b, OUT, db, lin_loss, &c, 1e-2f) < 1e-3);
            if (frozen) {
                for (int i = 0; i < IN * OUT; i++)
                    assert_true(dw[i] == 0.0f); /* a frozen weight gets nothing */
            } else {
                assert_true(fd_check(conv ? "conv1d dW" : "linear dW", c.w, (size_t)IN * OUT, dw, lin_loss, &c,
                                     1e-2f) < 1e-3);
            }
            /* the ROWS kernel with the same adapters agrees with GEMM */
            float *y2 = xmalloc((size_t)N * OUT * sizeof(float));
            icl_linear_forward(&c.l, c.y, OUT, c.x, IN, N, 0.0f, ICL_LIN_GEMM, 0, work);
            icl_linear_forward(&c.l, y2, OUT, c.x, IN, N, 0.0f, ICL_LIN_ROWS, 2, work);
            for (int i = 0; i < N * OUT; i++)
                assert_true(fabsf(y2[i] - c.y[i]) <= 1e-5f * (1 + fabsf(c.y[i])));
            free(y2);
            free(c.x); free(c.w); free(c.b); free(c.y); free(c.R);
            free(c.A1); free(c.B1); free(c.A2); free(c.B2);
            free(dx); free(dw); free(db); free(dA1); free(dB1); free(dA2); free(dB2);
        }
}

/* The adapters' down products kept by the forward (icl_linear.xa) give the
 * backward the same bits as recomputing them, with and without dropout,
 * and the input gradients of adapters sharing the input (3 on column
 * blocks, as q, k, v on q|k|v; ranks 5, 3, 4; in 150: not a multiple of
 * the kernel's 64 columns), added to dx in one pass, equal adding them one
 * linear at a time (the base first, then each adapter over a zero weight
 * with beta_dx 1): bit for bit, on 1 and 2 threads. */
enum { KN = 301, KIN = 150, KOUT = 100 };
static void lora_kept_and_fused(void **state)
{
    (void)state;
    static const int r[3] = {5, 3, 4}, off[3] = {0, 60, 80}, out[3] = {60, 20, 20};
    float *x = rnd((size_t)KN * KIN, 1), *w = rnd((size_t)KOUT * KIN, 0.3f), *dy = rnd((size_t)KN * KOUT, 1);
    float *zero = xcalloc((size_t)KOUT * KIN, sizeof(float)), *A[3], *B[3];
    for (int i = 0; i < 3; i++) {
        A[i] = rnd((size_t)r[i] * KIN, 0.5f);
        B[i] = rnd((size_t)out[i] * r[i], 0.5f);
    }
    size_t ny = (size_t)KN * KOUT, nx = (size_t)KN * KIN;
    for (int th = 1; th <= 2; th++)
        for (int drop = 0; drop < 2; drop++) {
            icl_set_threads(th);
            float *y[2], *dx[2], *dA[2][3], *dB[2][3];
            icl_lora lo[2][3];
            for (int v = 0; v < 2; v++) {
                y[v] = xmalloc(ny * sizeof(float));
                dx[v] = xmalloc(nx * sizeof(float));
                for (int i = 0; i < 3; i++) {
                    dA[v][i] = xcalloc((size_t)r[i] * KIN, sizeof(float));
                    dB[v][i] = xcalloc((size_t)out[i] * r[i], sizeof(float));
                    lo[v][i] = (icl_lora){r[i], KIN, out[i], off[i], 2.0f / r[i], A[i], B[i], dA[v][i], dB[v][i],
                                          drop ? 0.25f : 0.0f, 77 + (uint64_t)i, NULL, NULL};
                }
            }
            /* v 0: recomputed; v 1: kept in xa */
            icl_linear l0 = {{ICL_WEIGHT_F32, 0, KOUT, KIN, 0, w, NULL}, NULL, NULL, lo[0], 3, NULL};
            icl_linear l1 = l0;
            l1.lora = lo[1];
            assert_int_equal(icl_linear_xa_size(&l0, KN), (size_t)KN * 12);
            assert_int_equal(icl_linear_work(&l0, KN), (size_t)KN * (5 + 2 * 12 + (drop ? KIN : 0)));
            float *work = xmalloc(icl_linear_work(&l0, KN) * sizeof(float));
            l1.xa = xmalloc(icl_linear_xa_size(&l1, KN) * sizeof(float));
            icl_linear_forward(&l0, y[0], KOUT, x, KIN, KN, 0.0f, ICL_LIN_GEMM, th, work);
            icl_linear_backward(&l0, dx[0], KIN, 0.0f, dy, KOUT, x, KIN, KN, work);
            icl_linear_forward(&l1, y[1], KOUT, x, KIN, KN, 0.0f, ICL_LIN_GEMM, th, work);
            memset(work, 0xff, icl_linear_work(&l0, KN) * sizeof(float)); /* NaNs: nothing read from it */
            icl_linear_backward(&l1, dx[1], KIN, 0.0f, dy, KOUT, x, KIN, KN, work);
            assert_memory_equal(y[0], y[1], ny * sizeof(float));
            assert_memory_equal(dx[0], dx[1], nx * sizeof(float));
            for (int i = 0; i < 3; i++) {
                assert_memory_equal(dA[0][i], dA[1][i], (size_t)r[i] * KIN * sizeof(float));
                assert_memory_equal(dB[0][i], dB[1][i], (size_t)out[i] * r[i] * sizeof(float));
            }
            if (!drop) { /* one linear at a time: base + adapter 0, then + 1, + 2 over W = 0 */
                float *dxs = xmalloc(nx * sizeof(float));
                for (int i = 0; i < 3; i++) {
                    icl_linear li = {{ICL_WEIGHT_F32, 0, KOUT, KIN, 0, i ? zero : w, NULL}, NULL, NULL, &lo[1][i], 1,
                                     NULL};
                    icl_linear_backward(&li, dxs, KIN, i ? 1.0f : 0.0f, dy, KOUT, x, KIN, KN, work);
                }
                assert_memory_equal(dxs, dx[0], nx * sizeof(float));
                free(dxs);
            }
            for (int v = 0; v < 2; v++) {
                free(y[v]), free(dx[v]);
                for (int i = 0; i < 3; i++)
                    free(dA[v][i]), free(dB[v][i]);
            }
            free(work), free(l1.xa);
        }
    icl_set_threads(0);
    for (int i = 0; i < 3; i++)
        free(A[i]), free(B[i]);
    free(x), free(w), free(dy), free(zero);
}

/* icl_lora_pack: A and B laid out once give the same bits as laid out at
 * every call, for decoding's few rows (ROWS kernel) and a batch's (GEMM),
 * with the down products kept or recomputed, with and without dropout,
 * ranks with and without padding to 16; the backward (which reads them
 * when xa is not kept) too.  The laid-out copies are what the products
 * read (a change of B alone does not show), and packing again follows the
 * change. */
static void lora_packed(void **state)
{
    (void)state;
    static const int r[3] = {5, 16, 4}, off[3] = {0, 60, 80}, out[3] = {60, 20, 20}, ns[4] = {1, 3, 8, KN};
    float *x = rnd((size_t)KN * KIN, 1), *w = rnd((size_t)KOUT * KIN, 0.3f), *dy = rnd((size_t)KN * KOUT, 1);
    float *A[3], *B[3];
    for (int i = 0; i < 3; i++) {
        A[i] = rnd((size_t)r[i] * KIN, 0.5f);
        B[i] = rnd((size_t)out[i] * r[i], 0.5f);
    }
    for (int t = 0; t < 4; t++)
        for (int kept = 0; kept < 2; kept++)
            for (int kern = 0; kern < 4; kern++) {
                int n = ns[t], drop = kern >= 2;
                icl_lin_kernel kk = kern & 1 ? ICL_LIN_ROWS : ICL_LIN_GEMM;
                float *y[2], *dx[2], *dA[2][3], *dB[2][3];
                icl_lora lo[2][3];
                for (int v = 0; v < 2; v++) {
                    y[v] = xmalloc((size_t)n * KOUT * sizeof(float));
                    dx[v] = xmalloc((size_t)n * KIN * sizeof(float));
                    for (int i = 0; i < 3; i++) {
                        dA[v][i] = xcalloc((size_t)r[i] * KIN, sizeof(float));
                        dB[v][i] = xcalloc((size_t)out[i] * r[i], sizeof(float));
                        lo[v][i] = (icl_lora){r[i], KIN, out[i], off[i], 2.0f / r[i], A[i], B[i], dA[v][i], dB[v][i],
                                              drop ? 0.25f : 0.0f, 31 + (uint64_t)i, NULL, NULL};
                        if (v)
                            icl_lora_pack(&lo[v][i]);
                    }
                }
                for (int v = 0; v < 2; v++) {
                    icl_linear l = {{ICL_WEIGHT_F32, 0, KOUT, KIN, 0, w, NULL}, NULL, NULL, lo[v], 3, NULL};
                    float *work = xmalloc(icl_linear_work(&l, n) * sizeof(float));
                    if (kept)
                        l.xa = xmalloc(icl_linear_xa_size(&l, n) * sizeof(float));
                    icl_linear_forward(&l, y[v], KOUT, x, KIN, n, 0.0f, kk, 2, work);
                    icl_linear_backward(&l, dx[v], KIN, 0.0f, dy, KOUT, x, KIN, n, work);
                    free(work), free(l.xa);
                }
                assert_non_null(lo[1][0].At);
                assert_non_null(lo[1][1].Bt);
                assert_memory_equal(y[0], y[1], (size_t)n * KOUT * sizeof(float));
                assert_memory_equal(dx[0], dx[1], (size_t)n * KIN * sizeof(float));
                for (int i = 0; i < 3; i++) {
                    assert_memory_equal(dA[0][i], dA[1][i], (size_t)r[i] * KIN * sizeof(float));
                    assert_memory_equal(dB[0][i], dB[1][i], (size_t)out[i] * r[i] * sizeof(float));
                }
                /* B changed: unpacked, the change shows; packed, not until packed again */
                B[1][3] += 0.25f;
                float *yp = xmalloc((size_t)n * KOUT * sizeof(float));
                for (int pass = 0; pass < 2; pass++) {
                    if (pass) {
                        icl_lora_pack(&lo[1][1]);
                        icl_lora_unpack(&lo[1][0]);
                        assert_null(lo[1][0].At);
                        assert_null(lo[1][0].Bt);
                    }
                    memcpy(yp, y[1], (size_t)n * KOUT * sizeof(float));
                    for (int v = 0; v < 2; v++) {
                        icl_linear l = {{ICL_WEIGHT_F32, 0, KOUT, KIN, 0, w, NULL}, NULL, NULL, lo[v], 3, NULL};
                        float *work = xmalloc(icl_linear_work(&l, n) * sizeof(float));
                        icl_linear_forward(&l, y[v], KOUT, x, KIN, n, 0.0f, kk, 2, work);
                        free(work);
                    }
                    if (pass) {
                        assert_memory_equal(y[0], y[1], (size_t)n * KOUT * sizeof(float));
                    } else {
                        assert_memory_equal(y[1], yp, (size_t)n * KOUT * sizeof(float));
                        assert_memory_not_equal(y[0], y[1], (size_t)n * KOUT * sizeof(float));
                    }
                }
                free(yp);
                B[1][3] -= 0.25f;
                for (int v = 0; v < 2; v++) {
                    free(y[v]), free(dx[v]);
                    for (int i = 0; i < 3; i++) {
                        icl_lora_unpack(&lo[v][i]);
                        free(dA[v][i]), free(dB[v][i]);
                    }
                }
            }
    for (int i = 0; i < 3; i++)
        free(A[i]), free(B[i]);
    free(x), free(w), free(dy);
}

/* One bf16 weight [out, in] packed with kx rows of room (both packs). */
static icl_bf16_weight bf16_packs(const float *w, int in, int out, int kx)
{
    uint16_t *f = xmalloc(icl_bf16_packed_size(in + kx, out) * sizeof(uint16_t));
    uint16_t *b = xmalloc(icl_bf16_packed_size(out + kx, in) * sizeof(uint16_t));
    assert_int_equal(icl_bf16_pack_ext(w, in, 0, in, kx, out, f, 2), 0);
    assert_int_equal(icl_bf16_pack_ext(w, in, 1, out, kx, in, b, 2), 0);
    return (icl_bf16_weight){f, b, kx};
}

static void lora_bf16_folded(void **state)
{
    (void)state;
    /* in, out multiples of 32 (room rounded up to 32) and merely even (room = r_sum) */
    static const int shp[2][3] = {{64, 96, 32}, {66, 98, 13}};
    for (int c = 0; c < 2; c++) {
        int n = 70, in = shp[c][0], out = shp[c][1], kx = shp[c][2];
        int r[2] = {8, 5}, off[2] = {0, 50}, wid[2] = {40, out - 50};
        float *x = rnd((size_t)n * in, 1), *w = rnd((size_t)out * in, 0.3f), *dy = rnd((size_t)n * out, 1);
        float *A[2], *B[2];
        for (int a = 0; a < 2; a++) {
            A[a] = rnd((size_t)r[a] * in, 0.3f);
            B[a] = rnd((size_t)wid[a] * r[a], 0.3f);
        }
        icl_bf16_weight pk[2] = {bf16_packs(w, in, out, 0), bf16_packs(w, in, out, kx)};
        float *y[4], *dx[4], *dA[4][2], *dB[4][2], *bias = rnd((size_t)out, 1);
        float *y0 = rnd((size_t)n * out, 1), *dx0 = rnd((size_t)n * in, 1);
        /* 0: unfolded; 1: folded, 1 thread; 2: folded, 2 threads; 3: folded, the down products not kept
         * (l.xa NULL: recomputed), a bias, and y and dx added to (beta 1) */
        for (int v = 0; v < 4; v++) {
            icl_set_threads(v == 2 ? 2 : 1);
            icl_lora lo[2];
            for (int a = 0; a < 2; a++) {
                dA[v][a] = xcalloc((size_t)r[a] * in, sizeof(float));
                dB[v][a] = xcalloc((size_t)wid[a] * r[a], sizeof(float));
                lo[a] = (icl_lora){r[a], in, wid[a], off[a], 2.0f / r[a], A[a], B[a], dA[v][a], dB[v][a], 0, 0, NULL, NULL};
            }
            icl_linear l = {{ICL_WEIGHT_BF16, 0, out, in, 0, &pk[v > 0], NULL}, v == 3 ? bias : NULL, NULL, lo, 2,
                            NULL};
            if (v < 3)
                l.xa = xmalloc(icl_linear_xa_size(&l, n) * sizeof(float));
            float *work = xmalloc(icl_linear_work(&l, n) * sizeof(float));
            y[v] = xmalloc((size_t)n * out * sizeof(float));
            dx[v] = xmalloc((size_t)n * in * sizeof(float));
            if (v == 3) {
                memcpy(y[v], y0, (size_t)n * out * sizeof(float));
                memcpy(dx[v], dx0, (size_t)n * in * sizeof(float));
            }
            icl_linear_forward(&l, y[v], out, x, in, n, v == 3 ? 1.0f : 0.0f, ICL_LIN_GEMM, 1, work);
            icl_linear_backward(&l, dx[v], in, v == 3 ? 1.0f : 0.0f, dy, out, x, in, n, work);
            free(work), free(l.xa);
        }
        icl_set_threads(0);
        { /* decoding's ROWS kernel folds too: the same product, the same bits */
            icl_lora lo[2];
            for (int a = 0; a < 2; a++)
                lo[a] = (icl_lora){r[a], in, wid[a], off[a], 2.0f / r[a], A[a], B[a], NULL, NULL, 0, 0, NULL, NULL};
            icl_linear l = {{ICL_WEIGHT_BF16, 0, out, in, 0, &pk[1], NULL}, NULL, NULL, lo, 2, NULL};
            float *work = xmalloc(icl_linear_work(&l, n) * sizeof(float)), *yr = xmalloc((size_t)n * out * sizeof(float));
            icl_linear_forward(&l, yr, out, x, in, n, 0.0f, ICL_LIN_ROWS, 2, work);
            assert_memory_equal(yr, y[1], (size_t)n * out * sizeof(float));
            free(work), free(yr);
        }
        /* beta 1 and a bias: the product's sums, then + y, then + bias, as without them */
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < out; j++) {
                float e = (y[1][(size_t)i * out + j] + y0[(size_t)i * out + j]) + bias[j];
                assert_memory_equal(&y[3][(size_t)i * out + j], &e, sizeof e);
            }
            for (int k = 0; k < in; k++) {
                float e = dx[1][(size_t)i * in + k] + dx0[(size_t)i * in + k];
                assert_memory_equal(&dx[3][(size_t)i * in + k], &e, sizeof e);
            }
        }
        /* y and dx against double precision: within bf16's bound (bf16.h:
         * (2^-7 + 2^-16 + K 2^-24) sum |terms|, xa and t rounded once more) */
        double worst = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) {
                double ref = 0, mag = 0;
                for (int k = 0; k < in; k++) {
                    double t = (double)x[(size_t)i * in + k] * w[(size_t)j * in + k];
                    ref += t, mag += fabs(t);
                }
                for (int a = 0; a < 2; a++) {
                    if (j < off[a] || j >= off[a] + wid[a])
                        continue;
                    for (int q = 0; q < r[a]; q++) {
                        double xa = 0, xm = 0;
                        for (int k = 0; k < in; k++) {
                            xa += (double)x[(size_t)i * in + k] * A[a][(size_t)q * in + k];
                            xm += fabs((double)x[(size_t)i * in + k] * A[a][(size_t)q * in + k]);
                        }
                        double bq = 2.0 / r[a] * B[a][(size_t)(j - off[a]) * r[a] + q];
                        ref += xa * bq, mag += xm * fabs(bq);
                    }
                }
                double e = fabs(y[1][(size_t)i * out + j] - ref) / mag;
                worst = e > worst ? e : worst;
                assert_true(e <= 2.0 * (0.0078125 + 1.6e-5 + (in + 16) * 6e-8));
            }
        print_message("# folded bf16 adapters (in %d, out %d, room %d): forward largest error / magnitude %.2e\n", in,
                      out, kx, worst);
        worst = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < in; k++) {
                double ref = 0, mag = 0;
                for (int j = 0; j < out; j++) {
                    double t = (double)dy[(size_t)i * out + j] * w[(size_t)j * in + k];
                    ref += t, mag += fabs(t);
                }
                for (int a = 0; a < 2; a++)
                    for (int q = 0; q < r[a]; q++) {
                        double tq = 0, tm = 0;
                        for (int j = 0; j < wid[a]; j++) {
                            double p = 2.0 / r[a] * dy[(size_t)i * out + off[a] + j] * B[a][(size_t)j * r[a] + q];
                            tq += p, tm += fabs(p);
                        }
                        ref += tq * A[a][(size_t)q * in + k], mag += tm * fabs(A[a][(size_t)q * in + k]);
                    }
                double e = fabs(dx[1][(size_t)i * in + k] - ref) / mag;
                worst = e > worst ? e : worst;
                assert_true(e <= 2.0 * (0.0078125 + 1.6e-5 + (out + 16) * 6e-8));
            }
        print_message("# folded bf16 adapters (in %d, out %d, room %d): input gradient largest error / magnitude "
                      "%.2e\n", in, out, kx, worst);
        /* the adapters' own gradients are the float32 kernels' in both paths */
        for (int a = 0; a < 2; a++) {
            assert_memory_equal(dA[1][a], dA[0][a], (size_t)r[a] * in * sizeof(float));
            assert_memory_equal(dB[1][a], dB[0][a], (size_t)wid[a] * r[a] * sizeof(float));
            assert_memory_equal(dA[2][a], dA[1][a], (size_t)r[a] * in * sizeof(float));
            assert_memory_equal(dB[2][a], dB[1][a], (size_t)wid[a] * r[a] * sizeof(float));
            assert_memory_equal(dA[3][a], dA[1][a], (size_t)r[a] * in * sizeof(float));
            assert_memory_equal(dB[3][a], dB[1][a], (size_t)wid[a] * r[a] * sizeof(float));
        }
        assert_memory_equal(y[2], y[1], (size_t)n * out * sizeof(float));
        assert_memory_equal(dx[2], dx[1], (size_t)n * in * sizeof(float));
        /* folded is not unfolded: the adapters' terms go into the same sums */
        assert_memory_not_equal(y[1], y[0], (size_t)n * out * sizeof(float));
        assert_memory_not_equal(dx[1], dx[0], (size_t)n * in * sizeof(float));
        /* without adapters, packs with room give the bits of packs without */
        float *p0 = xmalloc((size_t)n * out * sizeof(float)), *p1 = xmalloc((size_t)n * out * sizeof(float));
        float *q0 = xmalloc((size_t)n * in * sizeof(float)), *q1 = xmalloc((size_t)n * in * sizeof(float));
        float *row0 = xmalloc((size_t)in * sizeof(float)), *row1 = xmalloc((size_t)in * sizeof(float));
        for (int v = 0; v < 2; v++) {
            icl_linear l = {{ICL_WEIGHT_BF16, 0, out, in, 0, &pk[v], NULL}, NULL, NULL, NULL, 0, NULL};
            icl_linear_forward(&l, v ? p1 : p0, out, x, in, n, 0.0f, ICL_LIN_GEMM, 1, NULL);
            icl_linear_backward(&l, v ? q1 : q0, in, 0.0f, dy, out, x, in, n, NULL);
            icl_weight_kernels(ICL_WEIGHT_BF16)->dequantize_row(&l.w, 7, v ? row1 : row0);
        }
        assert_memory_equal(p1, p0, (size_t)n * out * sizeof(float));
        assert_memory_equal(q1, q0, (size_t)n * in * sizeof(float));
        assert_memory_equal(row1, row0, (size_t)in * sizeof(float));
        free(p0), free(p1), free(q0), free(q1), free(row0), free(row1);
        free(bias), free(y0), free(dx0);
        for (int v = 0; v < 4; v++) {
            free(y[v]), free(dx[v]);
            for (int a = 0; a < 2; a++)
                free(dA[v][a]), free(dB[v][a]);
        }
        for (int v = 0; v < 2; v++)
            free((void *)pk[v].fwd), free((void *)pk[v].bwd);
        for (int a = 0; a < 2; a++)
            free(A[a]), free(B[a]);
        free(x), free(w), free(dy);
    }
}

static void kernel_table(void **state)
{
    (void)state;
    const icl_weight_ops *k = icl_weight_kernels(ICL_WEIGHT_F32);
    assert_non_null(k);
    assert_string_equal(k->name, "f32");
    assert_non_null(k->gemm_forward);
    assert_non_null(k->rows_forward);
    assert_non_null(k->input_grad);
    assert_non_null(k->weight_grad);
    assert_non_null(k->dequantize_row);
    assert_null(icl_weight_kernels(ICL_WEIGHT_NTYPES));
    /* dequantize_row gives row r of the logical [out, in] for both layouts */
    float w[6] = {1, 2, 3, 4, 5, 6}, row[3];
    icl_weight a = {ICL_WEIGHT_F32, 0, 2, 3, 0, w, NULL}, b = {ICL_WEIGHT_F32, 0, 3, 2, 1, w, NULL};
    k->dequantize_row(&a, 1, row);
    assert_true(row[0] == 4 && row[1] == 5 && row[2] == 6);
    k->dequantize_row(&b, 2, row); /* stored [in 2, out 3]: row 2 is column 2 */
    assert_true(row[0] == 3 && row[1] == 6);
}

/* ------------------------------------------------------------ adapters in the model */

static icl_model *load(const char *name)
{
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/model/%s/model", TEST_DATA, name);
    icl_model *m = icl_model_load(p, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    return m;
}

typedef struct {
    icl_model *m;
    icl_batch b;
} model_case;

static double model_loss(void *ctx)
{
    model_case *c = ctx;
    long nt;
    return icl_model_forward(c->m, &c->b, NULL, 0, &nt);
}

static void lora_model(void **state)
{
    (void)state;
    static const char *const targets[2][2] = {{"q_proj", "v_proj"}, {"c_attn", "c_proj"}};
    static const char *const names[2] = {"llama-tiny", "gpt2-tiny"};
    for (int k = 0; k < 2; k++) {
        icl_model *m = load(names[k]);
        int V = m->cfg.vocab_size, T = 6;
        int32_t ids[12];
        for (int i = 0; i < 12; i++)
            ids[i] = (i * 7 + 3) % V;
        model_case c = {m, {2, T, ids, NULL, NULL, NULL, NULL}};
        float *l0 = xmalloc(sizeof(float) * 12 * V), *l1 = xmalloc(sizeof(float) * 12 * V);
        long nt;
        icl_model_forward(m, &c.b, l0, 0, &nt);
        char err[256];
        const char *bad[1] = {"nope_proj"};
        assert_null(icl_model_add_lora(m, bad, 1, 4, 8.0f, 1, err, sizeof err));
        assert_non_null(strstr(err, "nope_proj"));
        icl_param_set *s = icl_model_add_lora(m, targets[k], 2, 4, 8.0f, 1, err, sizeof err);
        assert_non_null(s);
        assert_null(icl_model_add_lora(m, targets[k], 2, 4, 8.0f, 1, err, sizeof err)); /* only once */
        /* views: PEFT names; llama: q and v per layer; gpt2: c_attn, attn.c_proj, mlp.c_proj */
        int L = m->cfg.num_hidden_layers;
        assert_int_equal(s->n_views, 2 * L * (k == 0 ? 2 : 3));
        assert_non_null(icl_param_set_view(s, k == 0 ? "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"
                                                      : "base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight"));
        /* B = 0: the adapted model is the base model, bit for bit */
        icl_model_forward(m, &c.b, l1, 0, &nt);
        assert_memory_equal(l0, l1, sizeof(float) * 12 * V);
        /* give B values, freeze the base: gradients only for the adapters */
        for (int i = 0; i < s->n_views; i++)
            if (strstr(s->views[i].name, "lora_B"))
                for (size_t j = 0; j < s->views[i].numel; j++)
                    s->params[s->views[i].offset + j] = 0.05f * frand();
        icl_model_freeze_base(m);
        icl_param_set *tr[4];
        assert_int_equal(icl_model_trainable(m, tr, 4), 1);
        assert_ptr_equal(tr[0], s);
        icl_model_zero_grads(m);
        icl_model_alloc_moments(m);
        double loss = icl_model_forward(m, &c.b, NULL, 1.0f, &nt);
        assert_true(isfinite(loss));
        assert_int_equal(icl_model_backward(m, &c.b, err, sizeof err), 0);
        assert_null(m->base.grads);
        assert_null(m->base.m);
        assert_null(m->base.v);
        assert_non_null(s->grads);
        assert_non_null(s->m);
        /* the first adapters' A and B of layer 0 against finite differences */
        for (int i = 0; i < 4; i++) {
            const icl_param_view *v = &s->views[i];
            size_t n = v->numel < 48 ? v->numel : 48;
            assert_true(fd_check(v->name + 17, s->params + v->offset, n, s->grads + v->offset, model_loss, &c,
                                 2e-2f) < 5e-3);
        }
        free(l0);
        free(l1);
        icl_model_free(m);
    }
}

/* The model reports errors instead of exiting: a rejected batch gives NAN
 * and the message in m->err; backward or token losses without their
 * forward return -1 with a message. */
static void model_errors(void **state)
{
    (void)state;
    icl_model *m = load("llama-tiny");
    char err[256] = "";
    float loss[8];
    assert_int_equal(icl_model_token_losses(m, loss, err, sizeof err), -1);
    assert_non_null(strstr(err, "no forward"));
    int32_t ids[4] = {1, 2, 96, 3};
    icl_batch b = {1, 4, ids, NULL, NULL, NULL, NULL};
    long nt = -1;
    assert_true(isnan(icl_model_forward(m, &b, NULL, 1.0f, &nt)));
    assert_non_null(strstr(m->err, "token id 96"));
    err[0] = 0;
    assert_int_equal(icl_model_backward(m, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "no forward"));
    ids[2] = 5;
    assert_true(isfinite(icl_model_forward(m, &b, NULL, 0, &nt)));
    assert_int_equal(nt, 3);
    assert_int_equal(icl_model_backward(m, &b, err, sizeof err), -1); /* loss_scale 0: nothing to go back through */
    assert_int_equal(icl_model_token_losses(m, loss, err, sizeof err), 0);
    icl_model_free(m);
}

/* ------------------------------------------------------------ parity with PEFT */

static float *read_tensor(icl_st_file *f, const char *name, size_t numel)
{
    const icl_st_tensor *t = icl_st_find(f, name);
    if (!t)
        fail_msg("no tensor %s", name);
    assert_int_equal(t->numel, numel);
    float *x = xmalloc(numel * sizeof(float));
    char err[256];
    assert_int_equal(icl_st_read_f32(t, x, numel, err, sizeof err), 0);
    return x;
}

/* PEFT's in-memory names carry the adapter name: ...lora_A.default.weight */
static void default_name(char *out, size_t n, const char *name)
{
    const char *w = strstr(name, ".weight");
    snprintf(out, n, "%.*s.default.weight", (int)(w - name), name);
}

static void lora_peft_parity(void **state)
{
    (void)state;
    char err[512], p[512];
    icl_model *m = load("llama-tiny");
    snprintf(p, sizeof p, "%s/model/llama-tiny/expected.json", TEST_DATA);
    json_error_t je;
    json_t *exp = json_load_file(p, 0, &je), *lexp;
    assert_non_null(exp);
    snprintf(p, sizeof p, "%s/lora-llama-tiny/expected.json", TEST_DATA);
    lexp = json_load_file(p, 0, &je);
    assert_non_null(lexp);
    /* the batch (as test_model.c): padding is its own document */
    json_t *jids = json_object_get(exp, "input_ids"), *lab = json_object_get(exp, "labels"),
           *am = json_object_get(exp, "attention_mask");
    int B = (int)json_array_size(jids), T = (int)json_array_size(json_array_get(jids, 0)), V = m->cfg.vocab_size;
    int32_t *ids = xmalloc(sizeof(int32_t) * B * T), *doc = xmalloc(sizeof(int32_t) * B * T);
    uint8_t *target = xmalloc((size_t)B * T), *valid = xmalloc((size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            ids[i] = (int32_t)json_integer_value(json_array_get(json_array_get(jids, b), t));
            target[i] = json_integer_value(json_array_get(json_array_get(lab, b), t)) != -100;
            valid[i] = json_integer_value(json_array_get(json_array_get(am, b), t)) != 0;
            doc[i] = valid[i] ? 0 : -1;
        }
    icl_batch batch = {B, T, ids, target, doc, NULL, NULL};
    /* the adapter: r 4, alpha 8 on q_proj, v_proj, down_proj, PEFT's file read by view name */
    static const char *const targets[] = {"q_proj", "v_proj", "down_proj"};
    json_t *lc = json_object_get(lexp, "lora");
    icl_param_set *s = icl_model_add_lora(m, targets, 3, (int)json_integer_value(json_object_get(lc, "r")),
                                          (float)json_number_value(json_object_get(lc, "lora_alpha")), 1, err,
                                          sizeof err);
    assert_non_null(s);
    assert_int_equal(s->n_views, 12);
    snprintf(p, sizeof p, "%s/lora-llama-tiny/adapter/adapter_model.safetensors", TEST_DATA);
    icl_st_file *af = icl_st_open(p, err, sizeof err);
    assert_non_null(af);
    assert_int_equal(icl_st_count(af), s->n_views);
    for (int i = 0; i < s->n_views; i++) {
        const icl_param_view *v = &s->views[i];
        float *x = read_tensor(af, v->name, v->numel);
        memcpy(s->params + v->offset, x, v->numel * sizeof(float));
        free(x);
    }
    icl_st_close(af);
    icl_model_freeze_base(m);
    /* logits and loss */
    float *logits = xmalloc(sizeof(float) * B * T * V);
    long nt = 0;
    double lsum = icl_model_forward(m, &batch, logits, 0, &nt);
    snprintf(p, sizeof p, "%s/lora-llama-tiny/logits.safetensors", TEST_DATA);
    icl_st_file *lf = icl_st_open(p, err, sizeof err);
    assert_non_null(lf);
    float *ref = read_tensor(lf, "logits", (size_t)B * T * V);
    icl_st_close(lf);
    double maxabs = 0, maxerr = 0;
    for (int i = 0; i < B * T; i++)
        for (int j = 0; valid[i] && j < V; j++) {
            maxabs = fmax(maxabs, fabs(ref[i * V + j]));
            maxerr = fmax(maxerr, fabs(ref[i * V + j] - logits[i * V + j]));
        }
    double want = json_number_value(json_object_get(lexp, "loss"));
    print_message("# LoRA vs PEFT: logits max abs err %.3g (max |logit| %.3g); loss %.9g want %.9g\n", maxerr,
                  maxabs, lsum / nt, want);
    assert_true(maxerr <= 1e-5 * maxabs);
    assert_true(fabs(lsum / nt - want) <= 1e-5 * want);
    /* one step: gradients and AdamW as PEFT + torch.optim.AdamW (no clipping) */
    json_t *ad = json_object_get(lexp, "adamw");
    icl_adamw h = {json_number_value(json_object_get(ad, "lr")),
                   json_number_value(json_array_get(json_object_get(ad, "betas"), 0)),
                   json_number_value(json_array_get(json_object_get(ad, "betas"), 1)),
                   json_number_value(json_object_get(ad, "eps")),
                   json_number_value(json_object_get(ad, "weight_decay"))};
    icl_step_opts so = {h, 0.0, NULL, NULL, NULL, 0, 0, 1, NULL, NULL, 0};
    icl_step_result r;
    float *before = xmalloc(s->num_params * sizeof(float));
    memcpy(before, s->params, s->num_params * sizeof(float));
    assert_int_equal(icl_train_step(m, &batch, 1, nt, h.lr, 1, &so, &r, err, sizeof err), 0);
    assert_null(m->base.grads);
    snprintf(p, sizeof p, "%s/lora-llama-tiny/lora_grads.safetensors", TEST_DATA);
    icl_st_file *gf = icl_st_open(p, err, sizeof err);
    snprintf(p, sizeof p, "%s/lora-llama-tiny/lora_after_adamw.safetensors", TEST_DATA);
    icl_st_file *pf = icl_st_open(p, err, sizeof err);
    assert_non_null(gf);
    assert_non_null(pf);
    double gnum = 0, gden = 0, pmax = 0;
    for (int i = 0; i < s->n_views; i++) {
        const icl_param_view *v = &s->views[i];
        char nm[192];
        default_name(nm, sizeof nm, v->name);
        float *g = read_tensor(gf, nm, v->numel), *pa = read_tensor(pf, nm, v->numel);
        for (size_t j = 0; j < v->numel; j++) {
            double d = (double)g[j] - s->grads[v->offset + j];
            gnum += d * d;
            gden += (double)g[j] * g[j];
            /* a first Adam step moves each parameter by about lr * sign(g): compare
             * where the gradient is above rounding noise */
            if (fabs(g[j]) > 1e-6)
                pmax = fmax(pmax, fabs(pa[j] - s->params[v->offset + j]));
            else
                assert_true(fabs(s->params[v->offset + j] - before[v->offset + j]) <= 1.1 * h.lr);
        }
        free(g);
        free(pa);
    }
    print_message("# LoRA vs PEFT: adapter gradients rel L2 err %.3g; after one AdamW step max abs err %.3g\n",
                  sqrt(gnum / gden), pmax);
    assert_true(sqrt(gnum / gden) <= 1e-5);
    assert_true(pmax <= 1e-5);
    icl_st_close(gf);
    icl_st_close(pf);
    free(before);
    free(ref);
    free(logits);
    free(ids);
    free(doc);
    free(target);
    free(valid);
    json_decref(exp);
    json_decref(lexp);
    icl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lora_linear_fd),
        cmocka_unit_test(lora_linear_wide),
        cmocka_unit_test(lora_kept_and_fused),
        cmocka_unit_test(lora_packed),
        cmocka_unit_test(lora_kernels_ref),
        cmocka_unit_test(lora_bf16_folded),
        cmocka_unit_test(kernel_table),
        cmocka_unit_test(lora_model),
        cmocka_unit_test(lora_peft_parity),
        cmocka_unit_test(model_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
