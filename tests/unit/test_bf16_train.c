/* The bf16 training path (lib/bf16.h's packed products, icl_model_set_bf16
 * with a backward, icl_model_bf16_sync):
 *  - y = x B (+ bias, + beta y) with B packed from either layout, and the
 *    weight gradient c += a^T b (either output layout), element by element
 *    against double-precision sums of the float32 operands within bf16.h's
 *    bound (2^-7 + 2^-16 + K 2^-24) sum_k |x_k b_k|, and against the
 *    bf16-rounded operands within the float32 summation alone
 *    (K 2^-24 sum |x^_k b^_k|);
 *  - the portable path gives the same bits as the AVX512-BF16 one (its
 *    vdpbf16ps emulation: odd product first, one rounding each), rows do
 *    not depend on M or the thread count;
 *  - where the CPU and OS allow AMX-BF16 (else skipped, saying so): the
 *    AMX path within the same bounds, rows independent of M and the thread
 *    count, and within the float32 summation bound of the AVX512-BF16
 *    path's results (each is, so the two are within twice that); its K
 *    blocks (long K) give the bits of unblocked sums;
 *  - whole models (tiny Llama and GPT-2 fixtures, Conv1D included): the
 *    loss and every gradient of a bf16 forward + backward against float32's
 *    (themselves checked against transformers and finite differences in
 *    test_model.c), portable = AVX512-BF16 bit for bit (but for
 *    attention with heads of a multiple of 32: bf16 operands on
 *    AVX512-BF16, float32 on the portable path; near, not equal), and
 *    icl_model_bf16_sync after a weight change equals packing afresh (on
 *    the best path: AMX where there is one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "config.h"
#include "model.h"
#include "ops.h"
#include "util.h"

static uint64_t st = 0x9e3779b97f4a7c15ull;
static uint32_t rnd32(void)
{
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return (uint32_t)(st >> 32);
}
static float unif(void) { return (float)(rnd32() >> 8) / 16777216.0f; }

static double rounded(float f)
{
    uint16_t h;
    float r;
    icl_bf16_from_f32_row(&f, &h, 1);
    icl_bf16_to_f32_row(&h, &r, 1);
    return r;
}

/* 1 when the AMX-BF16 path runs here; else says once why its checks are
 * skipped. */
static int have_amx(void)
{
    static int said;
    int a = icl_bf16_amx();
    if (!a && !said++)
        print_message("# SKIP the AMX-BF16 checks: this CPU lacks AMX-BF16/AMX-TILE, or the OS does not grant the "
                      "tile state, or ICL_BF16_AMX=0\n");
    return a;
}

/* u (this path's result, AMX) within twice the float32 summation bound of
 * v (the AVX512-BF16 path's) for every element (m, n) of a product over k
 * with the same operands: X (m, k) at x[m xm + k xk], B (k, n) at
 * b[k bk + n bn], outputs at [m om + n on]; bound 2 K 2^-24 sum_k
 * |x^_k b^_k| + 2^-23 (|u| + |v|) + 2^-21 (the roundings of + bias and
 * + beta y, whose terms are below 1.5 in these tests). */
static void near_paths(const float *u, const float *v, int M, int N, int K, const float *x, long xm, long xk,
                       const float *b, long bk, long bn, long om, long on)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double absr = 0;
            for (int k = 0; k < K; k++)
                absr += fabs(rounded(x[m * xm + k * xk]) * rounded(b[k * bk + n * bn]));
            double p = u[m * om + n * on], q = v[m * om + n * on];
            double bound = 2 * K * 0x1p-24 * absr + 0x1p-23 * (fabs(p) + fabs(q)) + 0x1p-21;
            if (!(fabs(p - q) <= bound))
                fail_msg("M %d N %d K %d: [%d,%d] AMX %.9g, AVX512-BF16 %.9g (bound %.3g)", M, N, K, m, n, p, q, bound);
        }
}

/* y = x B + bias + beta y0 with B [K, N] given in layout kn, element by
 * element; returns y (caller frees) for the bit comparisons.  vs: NULL, or
 * the AVX512-BF16 path's y on the same operands, which y must be near
 * (near_paths). */
static float *check_packed(int M, int N, int K, int kn, int nt, int with_bias, float beta, const float *vs)
{
    long ldx = K + 3, ldy = N + 1, ldb = kn ? N + 2 : K + 2;
    float *x = xmalloc(sizeof(float) * M * ldx), *B = xmalloc(sizeof(float) * (kn ? K : N) * ldb);
    float *y = xmalloc(sizeof(float) * M * ldy), *y0 = xmalloc(sizeof(float) * M * ldy), *y1 = xmalloc(sizeof(float) * ldy);
    float *bias = with_bias ? xmalloc(sizeof(float) * N) : NULL;
    uint16_t *P = xmalloc(sizeof(uint16_t) * (icl_bf16_packed_size(K, N) + 1));
    for (long i = 0; i < (long)M * ldx; i++)
        x[i] = (unif() - 0.5f) * 4.0f;
    for (long i = 0; i < (long)(kn ? K : N) * ldb; i++)
        B[i] = (unif() - 0.5f) * 0.2f;
    for (long i = 0; i < (long)M * ldy; i++)
        y[i] = y0[i] = unif();
    for (int n = 0; with_bias && n < N; n++)
        bias[n] = unif() - 0.5f;
    assert_int_equal(icl_bf16_pack(B, ldb, kn, K, N, P, nt), 0);
    assert_int_equal(icl_bf16_gemm_packed(M, N, K, x, ldx, P, bias, y, ldy, beta, nt), 0);
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            double ref = 0, refr = 0, abs_ = 0, absr = 0;
            for (int k = 0; k < K; k++) {
                float xv = x[(size_t)m * ldx + k], bv = kn ? B[(size_t)k * ldb + n] : B[(size_t)n * ldb + k];
                ref += (double)xv * bv;
                abs_ += fabs((double)xv * bv);
                refr += rounded(xv) * rounded(bv);
                absr += fabs(rounded(xv) * rounded(bv));
            }
            double add = (bias ? bias[n] : 0.0) + (beta != 0.0f ? y0[(size_t)m * ldy + n] : 0.0);
            /* + the roundings of acc + bias and of that + y0 */
            double v = y[(size_t)m * ldy + n], b1 = (0x1p-7 + 0x1p-16 + K * 0x1p-24) * abs_,
                   b2 = K * 0x1p-24 * absr,
                   b3 = 0x1p-23 * (absr + fabs(v) + (bias ? fabs(bias[n]) : 0) + fabs(y0[(size_t)m * ldy + n]));
            if (!(fabs(v - add - ref) <= b1 + b3) || !(fabs(v - add - refr) <= b2 + b3))
                fail_msg("M %d N %d K %d kn %d (%s): y[%d,%d] %.9g, float %.9g (bound %.3g), rounded operands %.9g "
                         "(bound %.3g)",
                         M, N, K, kn, icl_bf16_path_name(), m, n, v, add + ref, b1 + b3, add + refr, b2 + b3);
        }
        assert_true(y[(size_t)m * ldy + N] == y0[(size_t)m * ldy + N]); /* beyond N: untouched */
        /* row m alone, one thread: the same bits */
        memcpy(y1, y0 + (size_t)m * ldy, sizeof(float) * ldy);
        assert_int_equal(icl_bf16_gemm_packed(1, N, K, x + (size_t)m * ldx, ldx, P, bias, y1, ldy, beta, 1), 0);
        assert_memory_equal(y1, y + (size_t)m * ldy, N * sizeof(float));
    }
    if (vs)
        near_paths(y, vs, M, N, K, x, ldx, 1, B, kn ? ldb : 1, kn ? 1 : ldb, ldy, 1);
    free(x), free(B), free(y0), free(y1), free(bias), free(P);
    return y;
}

static void packed(void **state)
{
    (void)state;
    static const int Ms[] = {1, 5, 6, 7, 113}, Ns[] = {1, 63, 64, 65, 130}, Ks[] = {1, 2, 33, 576};
    int cnt = 0;
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
            for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++, cnt++) {
                int kn = cnt % 2, nt = 1 + cnt % 3 / 2, wb = cnt % 3 == 0;
                float beta = cnt % 4 == 1 ? 1.0f : 0.0f;
                uint64_t seed = st;
                float *y[3] = {NULL, NULL, NULL};
                static const int path[3] = {ICL_BF16_NO_AMX, ICL_BF16_PORTABLE, ICL_BF16_BEST};
                for (int pass = 0; pass < 2 + have_amx(); pass++) {
                    st = seed;
                    icl_bf16_force_path(path[pass]);
                    y[pass] = check_packed(Ms[a], Ns[b], Ks[c], kn, nt, wb, beta, pass == 2 ? y[0] : NULL);
                }
                icl_bf16_force_path(ICL_BF16_BEST);
                /* portable = AVX512-BF16, bit for bit */
                assert_memory_equal(y[0], y[1], sizeof(float) * Ms[a] * (Ns[b] + 1));
                free(y[0]), free(y[1]), free(y[2]);
            }
}

/* c += a^T b, a [T, M], b [T, N]; ctrans: c stored [N, M].  vs: NULL, or
 * the AVX512-BF16 path's c, which c must be near (near_paths). */
static float *check_tn(int M, int N, int T, int ctrans, int nt, const float *vs)
{
    long lda = M + 1, ldb = N + 3, ldc = (ctrans ? M : N) + 2;
    long rows = ctrans ? N : M;
    float *a = xmalloc(sizeof(float) * T * lda), *b = xmalloc(sizeof(float) * T * ldb);
    float *c = xmalloc(sizeof(float) * rows * ldc), *c0 = xmalloc(sizeof(float) * rows * ldc);
    for (long i = 0; i < (long)T * lda; i++)
        a[i] = (unif() - 0.5f) * 2.0f;
    for (long i = 0; i < (long)T * ldb; i++)
        b[i] = (unif() - 0.5f) * 0.01f;
    for (long i = 0; i < rows * ldc; i++)
        c[i] = c0[i] = (unif() - 0.5f) * 0.1f;
    assert_int_equal(icl_bf16_gemm_tn(M, N, T, a, lda, b, ldb, c, ldc, ctrans, nt), 0);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref = 0, refr = 0, abs_ = 0, absr = 0;
            for (int t = 0; t < T; t++) {
                float av = a[(size_t)t * lda + i], bv = b[(size_t)t * ldb + j];
                ref += (double)av * bv;
                abs_ += fabs((double)av * bv);
                refr += rounded(av) * rounded(bv);
                absr += fabs(rounded(av) * rounded(bv));
            }
            size_t o = ctrans ? (size_t)j * ldc + i : (size_t)i * ldc + j;
            double v = c[o], old = c0[o], b1 = (0x1p-7 + 0x1p-16 + T * 0x1p-24) * abs_, b2 = T * 0x1p-24 * absr,
                   b3 = 0x1p-23 * (fabs(old) + absr);
            if (!(fabs(v - old - ref) <= b1 + b3) || !(fabs(v - old - refr) <= b2 + b3))
                fail_msg("M %d N %d T %d ctrans %d (%s): c[%d,%d] %.9g, float %.9g (bound %.3g), rounded %.9g "
                         "(bound %.3g)",
                         M, N, T, ctrans, icl_bf16_path_name(), i, j, v, old + ref, b1 + b3, old + refr, b2 + b3);
        }
    for (long r = 0; r < rows; r++) /* padding columns untouched */
        for (long k = ctrans ? M : N; k < ldc; k++)
            assert_true(c[r * ldc + k] == c0[r * ldc + k]);
    if (vs)
        near_paths(c, vs, M, N, T, a, 1, lda, b, ldb, 1, ctrans ? 1 : ldc, ctrans ? ldc : 1);
    free(a), free(b), free(c0);
    return c;
}

static void weight_grads(void **state)
{
    (void)state;
    static const int Ms[] = {1, 7, 90}, Ns[] = {3, 64, 100}, Ts[] = {1, 2, 31, 300};
    int cnt = 0;
    for (size_t x = 0; x < sizeof Ms / sizeof *Ms; x++)
        for (size_t y = 0; y < sizeof Ns / sizeof *Ns; y++)
            for (size_t z = 0; z < sizeof Ts / sizeof *Ts; z++, cnt++) {
                int ct = cnt % 2, nt = 1 + cnt % 3 / 2;
                uint64_t seed = st;
                float *c[3] = {NULL, NULL, NULL};
                static const int path[3] = {ICL_BF16_NO_AMX, ICL_BF16_PORTABLE, ICL_BF16_BEST};
                for (int pass = 0; pass < 2 + have_amx(); pass++) {
                    st = seed;
                    icl_bf16_force_path(path[pass]);
                    c[pass] = check_tn(Ms[x], Ns[y], Ts[z], ct, nt, pass == 2 ? c[0] : NULL);
                }
                icl_bf16_force_path(ICL_BF16_BEST);
                assert_memory_equal(c[0], c[1], sizeof(float) * (ct ? Ns[y] : Ms[x]) * ((ct ? Ms[x] : Ns[y]) + 2));
                free(c[0]), free(c[1]), free(c[2]);
            }
    icl_bf16_release_scratch();
}

/* The AMX path's K blocks (icl_bf16_set_amx_kblock): a long K multiplied
 * in blocks of 64 (the default) or 3 chunks of 32 gives the bits of the
 * unblocked sums, within the bounds (K odd, partial last chunk and block,
 * rows beyond a multiple of 32, transposed output). */
static void amx_kblocks(void **state)
{
    (void)state;
    if (!have_amx())
        return;
    static const int Ms[] = {40, 97}, Ks[] = {2100, 4097}, kb[3] = {1000, 0, 3};
    for (int c = 0; c < 2; c++) {
        uint64_t seed = st;
        float *y[3], *w[3];
        for (int q = 0; q < 3; q++) {
            icl_bf16_set_amx_kblock(kb[q]);
            st = seed;
            y[q] = check_packed(Ms[c], 70, Ks[c], c, 1 + c, c, c ? 1.0f : 0.0f, NULL);
            w[q] = check_tn(Ms[c], 70, Ks[c], c, 2 - c, NULL);
        }
        icl_bf16_set_amx_kblock(0);
        for (int q = 1; q < 3; q++) {
            assert_memory_equal(y[0], y[q], sizeof(float) * Ms[c] * 71);
            assert_memory_equal(w[0], w[q], sizeof(float) * (c ? 70 : Ms[c]) * ((c ? Ms[c] : 70) + 2));
        }
        for (int q = 0; q < 3; q++)
            free(y[q]), free(w[q]);
    }
    icl_bf16_release_scratch();
}

/* ---------------------------------------------------------------- whole models */

static icl_model *load(const char *name)
{
    char err[512], path[512];
    if (!strcmp(name, "llama-hd32")) { /* heads of 32: attention's bf16 operands on AMX or AVX512-BF16 */
        static const char cfg[] = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_attention_heads\": 2, "
                                  "\"num_key_value_heads\": 1, \"intermediate_size\": 96, \"num_hidden_layers\": 2, "
                                  "\"vocab_size\": 128, \"max_position_embeddings\": 64}";
        icl_config c;
        if (icl_config_parse(&c, cfg, strlen(cfg), "hd32", err, sizeof err))
            fail_msg("%s", err);
        icl_model *m = icl_model_new(&c);
        icl_config_free(&c);
        icl_model_init_random(m, 7, 0.1f);
        return m;
    }
    snprintf(path, sizeof path, "%s/model/%s/model", TEST_DATA, name);
    icl_model *m = icl_model_load(path, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    return m;
}

/* loss and gradients of one forward + backward on a fixed batch */
static double fwd_bwd(icl_model *m, float *grads)
{
    enum { B = 2, T = 16 };
    int32_t ids[B * T];
    uint8_t tgt[B * T];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)((i * 7919 + 13) % m->cfg.vocab_size);
        tgt[i] = i % T >= 4;
    }
    icl_batch b = {B, T, ids, tgt, NULL, NULL, NULL};
    char err[256];
    icl_model_zero_grads(m);
    long nt = 0;
    double loss = icl_model_forward(m, &b, NULL, 1.0f, &nt);
    assert_true(isfinite(loss));
    if (icl_model_backward(m, &b, err, sizeof err))
        fail_msg("%s", err);
    memcpy(grads, m->base.grads, m->base.num_params * sizeof(float));
    return loss / (double)nt;
}

/* The largest relative L2 distance ||b - a|| / ||a|| over m's tensors
 * (gradients a and b laid out as m's parameters), *wname the tensor's. */
static double worst_rel(const icl_model *m, const float *a, const float *b, const char **wname)
{
    double worst = 0;
    *wname = "";
    for (int v = 0; v < m->base.n_views; v++) {
        const icl_param_view *pv = &m->base.views[v];
        double d = 0, r = 0;
        for (size_t i = 0; i < pv->numel; i++) {
            double x = a[pv->offset + i], y = b[pv->offset + i];
            d += (x - y) * (x - y);
            r += x * x;
        }
        double rel = r > 0 ? sqrt(d / r) : sqrt(d);
        assert_true(isfinite(rel));
        if (rel > worst)
            worst = rel, *wname = pv->name;
    }
    return worst;
}

static void model_grads(const char *name)
{
    char err[256];
    icl_model *m = load(name);
    size_t np = m->base.num_params;
    float *g32 = xmalloc(np * sizeof(float)), *g16 = xmalloc(np * sizeof(float)), *gp = xmalloc(np * sizeof(float));
    double l32 = fwd_bwd(m, g32);
    assert_int_equal(icl_model_set_bf16(m, err, sizeof err), 0);
    double l16 = fwd_bwd(m, g16);
    /* the loss: bf16's relative effect, well under 1% on these */
    print_message("# %s (%s): mean loss float32 %.6f bf16 %.6f (rel %.2g)\n", name, icl_bf16_path_name(), l32, l16,
                  fabs(l16 - l32) / l32);
    assert_true(fabs(l16 - l32) <= 1e-2 * l32);
    /* every tensor's gradient: relative L2 distance to float32's; a
     * product with a wrong layout, a missing gradient or a transposed
     * store gives O(1) */
    const char *wname;
    double worst = worst_rel(m, g32, g16, &wname);
    print_message("# %s: worst gradient relative L2 error %.3g (%s)\n", name, worst, wname);
    assert_true(worst <= 0.05);
    /* the portable path: the AVX512-BF16 path's bits (the best path above
     * when the CPU lacks AMX; else the AMX path was checked above against
     * float32 like them), except for attention: with heads of a multiple
     * of 32 its operands are bf16 on AVX512-BF16 (and AMX) and float32 on
     * the portable path (ops.h, icl_attention_bf16_kernels) */
    float *gn = xmalloc(np * sizeof(float));
    icl_bf16_force_path(ICL_BF16_NO_AMX);
    int natt = icl_attention_bf16_kernels(m->cfg.head_dim);
    double ln = fwd_bwd(m, gn);
    icl_bf16_force_path(ICL_BF16_PORTABLE);
    double lp = fwd_bwd(m, gp);
    icl_bf16_force_path(ICL_BF16_BEST);
    if (!natt) {
        assert_true(lp == ln);
        assert_memory_equal(gp, gn, np * sizeof(float));
    } else {
        print_message("# %s: mean loss AVX512-BF16 %.9g, portable %.9g (attention's operands bf16 on AVX512-BF16 "
                      "only)\n",
                      name, ln, lp);
        assert_true(fabs(lp - ln) <= 1e-3 * fabs(ln));
        assert_true(lp != ln);
        const char *wn;
        double w = worst_rel(m, gp, gn, &wn);
        print_message("# %s: gradients AVX512-BF16 against portable: worst relative L2 %.3g (%s)\n", name, w, wn);
        assert_true(w > 0 && w <= 0.05); /* as bf16 against float32 above */
    }
    if (!have_amx()) {
        assert_true(ln == l16);
        assert_memory_equal(gn, g16, np * sizeof(float));
    } else {
        /* the same operands, attention's included; float32 sums in the
         * tile unit's order */
        print_message("# %s: mean loss AMX %.9g, AVX512-BF16 %.9g\n", name, l16, ln);
        assert_true(fabs(l16 - ln) <= 1e-4 * fabs(ln));
    }
    free(gn);
    /* a weight change, then sync: as packing afresh */
    for (size_t i = 0; i < np; i++)
        m->base.params[i] *= 1.0f + 0.01f * (float)(i % 3);
    assert_int_equal(icl_model_bf16_sync(m, err, sizeof err), 0);
    double ls = fwd_bwd(m, g16);
    icl_model *f = load(name);
    memcpy(f->base.params, m->base.params, np * sizeof(float));
    assert_int_equal(icl_model_set_bf16(f, err, sizeof err), 0);
    double lf = fwd_bwd(f, gp);
    assert_true(ls == lf);
    assert_memory_equal(gp, g16, np * sizeof(float));
    assert_true(ls != l16);
    icl_model_free(f);
    icl_model_free(m);
    free(g32), free(g16), free(gp);
}

static void models(void **state)
{
    (void)state;
    model_grads("llama-tiny");
    model_grads("gpt2-tiny"); /* Conv1D [in, out] weights and gradients */
    model_grads("qwen2-tiny"); /* q|k|v biases */
    model_grads("llama-hd32"); /* attention's products in bf16 (AMX, AVX512-BF16) */
    icl_bf16_release_scratch();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(packed),
        cmocka_unit_test(weight_grads),
        cmocka_unit_test(amx_kblocks),
        cmocka_unit_test(models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
