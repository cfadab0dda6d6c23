/* lib/qdot.c: quantized weight rows times 8-bit activations.
 *
 * References: the weights as floats come from gguf.quants.dequantize
 * (tests/data/gguf/quant.gguf, made by tests/data/gguf/make_quant_fixtures.py:
 * random blocks of every type with the floats gguf-py makes of them) and, for
 * rows of other sizes, from icl_dequantize (itself bit-identical to gguf-py,
 * test_quant.c).  The dot product with float activations x is computed in
 * double and the quantized result must lie within the bound the activation
 * quantization implies:
 *   |x_k - d_b q_k| <= d_b / 2 (+ one rounding of x_k / d_b),
 *   so |sum_k w_k x_k - sum_k w_k d_b q_k| <= sum_b (d_b / 2)(1 + 2^-16) sum_{k in b} |w_k|,
 * plus float32 rounding of the kernel's sums (a few ulps of sum |w_k x^_k|,
 * bounded by 2^-16 of it here).  Against the activations as quantized
 * (x^_k = d_b q_k) only that rounding term remains.  All code paths the CPU
 * has (scalar, AVX2, AVX-512 VNNI) must give the same bits (their integer
 * sums are exact and their float order is the same). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "qdot.h"
#include "quant.h"
#include "util.h"

static const int TYPES[] = {ICL_GGML_Q8_0, ICL_GGML_Q4_0, ICL_GGML_Q4_1, ICL_GGML_Q4_K, ICL_GGML_Q5_K, ICL_GGML_Q6_K};
#define NTYPES (int)(sizeof TYPES / sizeof TYPES[0])

static uint64_t st = 0x9e3779b97f4a7c15ull;
static double unif(void) /* [0, 1) */
{
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return (double)(st >> 11) / 9007199254740992.0;
}

/* Activations: mostly N(0,1)-ish, one block of zeros, one with an outlier. */
static void make_x(float *x, int n)
{
    for (int k = 0; k < n; k++)
        x[k] = (float)((unif() + unif() + unif() - 1.5) * 2.0);
    if (n >= 64)
        memset(x + 32, 0, 32 * sizeof *x);
    if (n >= 96)
        x[70] = 40.0f;
}

static void put_h(uint8_t *p, float f)
{
    uint16_t h = icl_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* A random row of type t, in values: random bytes, fp16 fields set to
 * sensible scales. */
static void make_row(int t, uint8_t *row, int in)
{
    const icl_quant_traits *tr = icl_quant_traits_of((uint32_t)t);
    int nb = in / tr->blck;
    for (size_t i = 0; i < (size_t)nb * tr->size; i++)
        row[i] = (uint8_t)(unif() * 256);
    for (int b = 0; b < nb; b++) {
        uint8_t *p = row + (size_t)b * tr->size;
        float d = (float)(0.002 + 0.02 * unif()) * (unif() < 0.5 ? -1 : 1), m = (float)(-0.1 * unif());
        switch (t) {
        case ICL_GGML_Q8_0: case ICL_GGML_Q4_0: put_h(p, d); break;
        case ICL_GGML_Q4_1: put_h(p, fabsf(d)); put_h(p + 2, m); break;
        case ICL_GGML_Q4_K: case ICL_GGML_Q5_K: put_h(p, fabsf(d) / 8); put_h(p + 2, -m / 16); break;
        case ICL_GGML_Q6_K: put_h(p + 208, d / 16); break;
        }
    }
}

static int npaths(icl_qdot_path *paths)
{
    int n = 0;
    for (int p = ICL_QDOT_SCALAR; p <= ICL_QDOT_VNNI; p++)
        if (icl_qdot_select((icl_qdot_path)p) == 0)
            paths[n++] = (icl_qdot_path)p;
    return n;
}

static void restore_best(void)
{
    if (icl_qdot_select(ICL_QDOT_VNNI) && icl_qdot_select(ICL_QDOT_AVX2))
        icl_qdot_select(ICL_QDOT_SCALAR);
}

/* Checks one weight row (w: its floats) against x; returns the result. */
static float check_row(int t, const uint8_t *row, const float *w, const float *x, int in, const char *what)
{
    int nb = in / ICL_QK8;
    icl_q8blk *xq = xmalloc((size_t)nb * sizeof *xq);
    icl_q8_quantize_row(x, in, xq);
    icl_qdot_path paths[3];
    int np = npaths(paths);
    assert_true(np >= 1);
    float y[3] = {0};
    for (int p = 0; p < np; p++) {
        icl_qdot_select(paths[p]);
        y[p] = icl_qdot(t, row, xq, in);
    }
    restore_best();
    for (int p = 1; p < np; p++)
        if (memcmp(&y[p], &y[0], sizeof y[0]))
            fail_msg("%s: path %d gives %.9g, scalar %.9g", what, (int)paths[p], y[p], y[0]);
    double ref = 0, refq = 0, bound = 0, absq = 0;
    for (int b = 0; b < nb; b++) {
        double sw = 0;
        for (int k = 32 * b; k < 32 * b + 32; k++) {
            double xh = (double)xq[b].d * xq[b].q[k - 32 * b];
            ref += (double)w[k] * x[k];
            refq += (double)w[k] * xh;
            absq += fabs((double)w[k] * xh);
            sw += fabs(w[k]);
        }
        bound += xq[b].d * 0.5 * (1 + 0x1p-16) * sw;
    }
    double round = 0x1p-16 * absq + 1e-30;
    if (!(fabs(y[0] - refq) <= round))
        fail_msg("%s: %.9g against the quantized activations' %.9g (|diff| %.3g > %.3g)", what, y[0], refq,
                 fabs(y[0] - refq), round);
    if (!(fabs(y[0] - ref) <= bound + round))
        fail_msg("%s: %.9g against float %.9g (|diff| %.3g > bound %.3g)", what, y[0], ref, fabs(y[0] - ref),
                 bound + round);
    free(xq);
    return y[0];
}

static void activation_quantization(void **state)
{
    (void)state;
    float x[96];
    make_x(x, 96);
    x[5] = -2.5f; /* one bigger value in block 0 */
    icl_q8blk q[3];
    icl_q8_quantize_row(x, 96, q);
    for (int b = 0; b < 3; b++) {
        float amax = 0;
        int s0 = 0, s1 = 0;
        for (int k = 0; k < 32; k++) {
            amax = fmaxf(amax, fabsf(x[32 * b + k]));
            assert_true(q[b].q[k] >= -127 && q[b].q[k] <= 127);
            assert_true(fabs(x[32 * b + k] - (double)q[b].d * q[b].q[k]) <= q[b].d * 0.5 * (1 + 0x1p-16));
            *(k < 16 ? &s0 : &s1) += q[b].q[k];
        }
        assert_true(q[b].d == amax / 127.0f);
        assert_int_equal(q[b].sum16[0], s0);
        assert_int_equal(q[b].sum16[1], s1);
        assert_true(q[b].s == q[b].d * (float)(s0 + s1));
    }
    assert_true(q[0].q[5] == -127);                     /* the block's largest magnitude maps to 127 */
    assert_true(q[1].d == 0.0f && q[1].s == 0.0f);      /* zeros: d 0, q 0 */
    for (int k = 0; k < 32; k++)
        assert_int_equal(q[1].q[k], 0);
    x[40] = NAN; /* non-finite: NaN scale, no crash */
    icl_q8_quantize_row(x, 96, q);
    assert_true(isnan(q[1].d));
}

/* Rows from gguf-py: quant.gguf's deq.TYPE (2 rows of 512) with the floats
 * gguf.quants.dequantize made of them. */
static void against_gguf_py(void **state)
{
    (void)state;
    char err[512];
    icl_gguf *g = icl_gguf_open(TEST_DATA "/gguf/quant.gguf", err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    float x[512];
    make_x(x, 512);
    for (int i = 0; i < NTYPES; i++) {
        char name[64], oname[80];
        snprintf(name, sizeof name, "deq.%s", icl_ggml_type_name((uint32_t)TYPES[i]));
        snprintf(oname, sizeof oname, "%s.out", name);
        const icl_gguf_tensor *t = icl_gguf_find_tensor(g, name), *o = icl_gguf_find_tensor(g, oname);
        assert_non_null(t);
        assert_non_null(o);
        assert_int_equal(t->ne[0], 512);
        size_t rs = icl_ggml_row_size(t->type, 512);
        for (int r = 0; r < (int)t->ne[1]; r++) {
            char what[96];
            snprintf(what, sizeof what, "%s row %d", name, r);
            check_row(TYPES[i], (const uint8_t *)t->data + r * rs, (const float *)o->data + r * 512, x, 512, what);
        }
        print_message("# %s: 2 rows within the activation-quantization bound, paths identical\n", name);
    }
    icl_gguf_close(g);
}

/* Random rows of several sizes (odd block counts too) against icl_dequantize. */
static void random_rows(void **state)
{
    (void)state;
    static const int sizes32[] = {32, 96, 544, 1536}, sizesK[] = {256, 768, 1536};
    char err[256];
    for (int i = 0; i < NTYPES; i++) {
        int t = TYPES[i], K = icl_quant_traits_of((uint32_t)t)->blck == 256;
        const int *sizes = K ? sizesK : sizes32;
        int ns = K ? 3 : 4;
        for (int s = 0; s < ns; s++) {
            int in = sizes[s];
            size_t rs = icl_ggml_row_size((uint32_t)t, in);
            for (int rep = 0; rep < 4; rep++) {
                uint8_t *row = xmalloc(rs);
                float *w = xmalloc((size_t)in * sizeof *w), *x = xmalloc((size_t)in * sizeof *x);
                make_row(t, row, in);
                if (icl_dequantize((uint32_t)t, row, rs, w, in, "row", err, sizeof err))
                    fail_msg("%s", err);
                make_x(x, in);
                char what[64];
                snprintf(what, sizeof what, "%s in %d rep %d", icl_ggml_type_name((uint32_t)t), in, rep);
                check_row(t, row, w, x, in, what);
                free(row);
                free(w);
                free(x);
            }
        }
    }
}

/* icl_qmatvec: every output row as icl_qdot gives it, whatever N and the
 * thread count; bias and beta; the same bits on every path. */
static void matvec(void **state)
{
    (void)state;
    const int out = 37, Nmax = 11;
    for (int i = 0; i < NTYPES; i++) {
        int t = TYPES[i], in = icl_quant_traits_of((uint32_t)t)->blck == 256 ? 512 : 160, nb = in / 32;
        size_t rs = icl_ggml_row_size((uint32_t)t, in);
        uint8_t *W = xmalloc(rs * out);
        for (int j = 0; j < out; j++)
            make_row(t, W + j * rs, in);
        long ldx = in + 3, ldy = out + 5;
        float *x = xmalloc(sizeof(float) * ldx * Nmax), bias[37];
        for (int r = 0; r < Nmax; r++)
            make_x(x + r * ldx, in);
        for (int j = 0; j < out; j++)
            bias[j] = (float)(unif() - 0.5);
        /* expected: icl_qdot per row */
        float *want = xmalloc(sizeof(float) * out * Nmax);
        icl_q8blk *xq = xmalloc(sizeof *xq * nb);
        for (int r = 0; r < Nmax; r++) {
            icl_q8_quantize_row(x + r * ldx, in, xq);
            for (int j = 0; j < out; j++)
                want[r * out + j] = icl_qdot(t, W + j * rs, xq, in);
        }
        free(xq);
        icl_qdot_path paths[3];
        int np = npaths(paths);
        float *y = xmalloc(sizeof(float) * ldy * Nmax);
        for (int p = 0; p < np; p++) {
            icl_qdot_select(paths[p]);
            for (int N = 1; N <= Nmax; N++)
                for (int nt = 1; nt <= 2; nt++) {
                    for (long k = 0; k < ldy * Nmax; k++)
                        y[k] = -7.0f;
                    assert_int_equal(icl_qmatvec(t, W, out, in, x, ldx, N, y, ldy, 0.0f, NULL, nt), 0);
                    for (int r = 0; r < Nmax; r++)
                        for (int j = 0; j < ldy; j++) {
                            float v = y[r * ldy + j];
                            if (r < N && j < out) {
                                if (memcmp(&v, &want[r * out + j], sizeof v))
                                    fail_msg("%s path %d N %d threads %d: y[%d,%d] %.9g, icl_qdot %.9g",
                                             icl_ggml_type_name((uint32_t)t), (int)paths[p], N, nt, r, j, v,
                                             want[r * out + j]);
                            } else {
                                assert_true(v == -7.0f); /* nothing written outside y[N, out] */
                            }
                        }
                    /* beta 1 with bias: y += x W^T + bias */
                    assert_int_equal(icl_qmatvec(t, W, out, in, x, ldx, N, y, ldy, 1.0f, bias, nt), 0);
                    for (int r = 0; r < N; r++)
                        for (int j = 0; j < out; j++) {
                            float e = want[r * out + j] + (want[r * out + j] + bias[j]);
                            assert_true(y[r * ldy + j] == e);
                        }
                }
        }
        restore_best();
        free(W);
        free(x);
        free(y);
        free(want);
    }
}

static void refuses_bad_shapes(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(icl_qdot_check(ICL_GGML_Q4_0, 100, err, sizeof err), -1);
    assert_non_null(strstr(err, "Q4_0 rows of 100 values"));
    assert_int_equal(icl_qdot_check(ICL_GGML_Q4_K, 288, err, sizeof err), -1); /* a multiple of 32, not of 256 */
    assert_non_null(strstr(err, "256-value block"));
    assert_int_equal(icl_qdot_check(ICL_GGML_Q6_K, 0, err, sizeof err), -1);
    assert_int_equal(icl_qdot_check(ICL_GGML_Q5_0, 64, err, sizeof err), -1);
    assert_non_null(strstr(err, "Q5_0"));
    assert_int_equal(icl_qdot_check(ICL_GGML_F32, 64, err, sizeof err), -1);
    assert_int_equal(icl_qdot_check(12345, 64, err, sizeof err), -1);
    assert_int_equal(icl_qdot_check(ICL_GGML_Q4_K, 512, err, sizeof err), 0);
    assert_false(icl_qdot_supported(ICL_GGML_Q5_0));
    assert_true(icl_qdot_supported(ICL_GGML_Q6_K));
    float x[100] = {0}, y[4] = {1, 2, 3, 4};
    uint8_t W[256] = {0};
    assert_int_equal(icl_qmatvec(ICL_GGML_Q4_0, W, 2, 100, x, 100, 1, y, 4, 0.0f, NULL, 1), -1);
    assert_int_equal(icl_qmatvec(ICL_GGML_Q4_K, W, 1, 96, x, 96, 1, y, 4, 0.0f, NULL, 1), -1);
    assert_true(y[0] == 1 && y[1] == 2 && y[2] == 3 && y[3] == 4); /* untouched */
    assert_int_equal(icl_qmatvec(ICL_GGML_Q4_0, W, 2, 64, x, 64, 0, y, 4, 0.0f, NULL, 1), 0); /* N 0: nothing */
    assert_true(y[0] == 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(activation_quantization),
        cmocka_unit_test(against_gguf_py),
        cmocka_unit_test(random_rows),
        cmocka_unit_test(matvec),
        cmocka_unit_test(refuses_bad_shapes),
    };
    print_message("# qdot path on this CPU: %s\n", icl_qdot_path_name());
    return cmocka_run_group_tests(tests, NULL, NULL);
}
