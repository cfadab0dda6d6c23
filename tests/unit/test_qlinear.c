/* Unit tests of lib/qlinear.c, the quantized-block (QBLOCK) weight kernels,
 * against the float32 kernels on the dequantized matrix (quant.c's
 * dequantizers are checked bit for bit against the gguf package in
 * test_quant.c), for Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K:
 *   - gemm_forward and input_grad, beta 0 and 1, row strides wider than the
 *     rows, an odd number of rows, a matrix of several tiles: equal to the
 *     float32 GEMM to float32 rounding, and bit-identical from call to call;
 *   - rows_forward (with bias, beta 0/1, 1 and 2 threads) bit-identical to
 *     the float32 rows kernel on the dequantized matrix, and a row's result
 *     independent of the number of rows;
 *   - dequantize_row equals icl_dequantize's row;
 *   - icl_linear with a low-rank adapter over a QBLOCK weight gives the
 *     float32 weight's output, input and adapter gradients;
 *   - icl_qblock_check refuses float types and rows that are not whole
 *     blocks;
 *   - the bf16 path (ICL_WEIGHT_QBLOCK_BF16): gemm_forward, input_grad (K =
 *     OUT odd) and rows_forward (qdot off, with bias) bit-identical to the
 *     ICL_WEIGHT_BF16 kernels on the dequantized matrix packed by
 *     icl_bf16_pack, on the AVX512-BF16 and the portable path, 1 and 2
 *     threads, 7 rows and 200 rows (several row blocks: groups shared by
 *     two threads), strides wider than the rows, beta 0 and 1; within the
 *     bf16 error bound of bf16.h of the float32 product. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "gguf.h"
#include "linear.h"
#include "qdot.h"
#include "qlinear.h"
#include "quant.h"
#include "util.h"

static uint64_t rng = 777;
static uint32_t rnd32(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)(rnd32() / 4294967296.0 * 2 - 1); }
static float *rnd(size_t n)
{
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
    return p;
}

static void put_f16(uint8_t *p, float f)
{
    uint16_t h = icl_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* out rows of in values of type t: quantized from random floats where icl
 * can quantize (Q8_0, Q4_0, Q4_1), else random blocks with sane fp16 scales. */
static void *make_blocks(uint32_t t, int out, int in, size_t *nbytes)
{
    size_t rb = icl_ggml_row_size(t, in), n = rb * (size_t)out;
    uint8_t *b = xmalloc(n);
    *nbytes = n;
    char err[256];
    const icl_quant_traits *q = icl_quant_traits_of(t);
    if (q->from_float) {
        float *f = rnd((size_t)out * in);
        if (icl_quantize(t, f, (int64_t)out * in, b, n, "w", err, sizeof err))
            fail_msg("%s", err);
        free(f);
        return b;
    }
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rnd32();
    for (size_t k = 0; k < n / q->size; k++) {
        uint8_t *blk = b + k * q->size;
        if (t == ICL_GGML_Q6_K) {
            put_f16(blk + 208, 0.004f * (1 + frand()));
        } else { /* Q4_K, Q5_K: d, dmin */
            put_f16(blk, 0.01f * (1 + frand()));
            put_f16(blk + 2, 0.02f * (1 + frand()));
        }
    }
    return b;
}

static double max_rel(const float *a, const float *b, int rows, int cols, long lda, long ldb)
{
    double num = 0, den = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double d = fabs((double)a[i * lda + j] - b[i * ldb + j]), m = fabs((double)b[i * ldb + j]);
            num = d > num ? d : num;
            den = m > den ? m : den;
        }
    return num / (den > 0 ? den : 1);
}

static const uint32_t TYPES[] = {ICL_GGML_Q8_0, ICL_GGML_Q4_0, ICL_GGML_Q4_1,
                                 ICL_GGML_Q4_K, ICL_GGML_Q5_K, ICL_GGML_Q6_K};
#define NTYPES (sizeof TYPES / sizeof TYPES[0])

/* IN a multiple of 256 (K-quants); OUT * IN spans three 1 Mi-float
 * tiles; N odd; strides wider than the rows. */
enum { N = 7, IN = 512, OUT = 4111, LDX = IN + 5, LDY = OUT + 3 };

typedef struct {
    uint32_t t;
    void *blocks;
    float *wf; /* dequantized [OUT, IN] */
    icl_weight q, f;
} wcase;

static wcase make_case(uint32_t t)
{
    wcase c;
    size_t nb;
    char err[256];
    c.t = t;
    c.blocks = make_blocks(t, OUT, IN, &nb);
    c.wf = xmalloc((size_t)OUT * IN * sizeof(float));
    if (icl_dequantize(t, c.blocks, nb, c.wf, (int64_t)OUT * IN, "w", err, sizeof err))
        fail_msg("%s", err);
    c.q = (icl_weight){ICL_WEIGHT_QBLOCK, (int)t, OUT, IN, 0, c.blocks, NULL};
    c.f = (icl_weight){ICL_WEIGHT_F32, 0, OUT, IN, 0, c.wf, NULL};
    return c;
}

static void free_case(wcase *c)
{
    free(c->blocks);
    free(c->wf);
}

static void table_entry(void **state)
{
    (void)state;
    const icl_weight_ops *k = icl_weight_kernels(ICL_WEIGHT_QBLOCK);
    assert_non_null(k);
    assert_string_equal(k->name, "qblock");
    assert_non_null(k->gemm_forward);
    assert_non_null(k->rows_forward);
    assert_non_null(k->input_grad);
    assert_null(k->weight_grad); /* a quantized base is frozen */
    assert_non_null(k->dequantize_row);
}

static void gemm_and_input_grad(void **state)
{
    (void)state;
    const icl_weight_ops *kq = icl_weight_kernels(ICL_WEIGHT_QBLOCK), *kf = icl_weight_kernels(ICL_WEIGHT_F32);
    icl_set_threads(2);
    for (size_t ti = 0; ti < NTYPES; ti++) {
        wcase c = make_case(TYPES[ti]);
        float *x = rnd((size_t)N * LDX), *y0 = rnd((size_t)N * LDY);
        float *yq = xmalloc((size_t)N * LDY * sizeof(float)), *yf = xmalloc((size_t)N * LDY * sizeof(float));
        float *yq2 = xmalloc((size_t)N * LDY * sizeof(float));
        for (int beta = 0; beta < 2; beta++) {
            memcpy(yq, y0, (size_t)N * LDY * sizeof(float));
            memcpy(yf, y0, (size_t)N * LDY * sizeof(float));
            memcpy(yq2, y0, (size_t)N * LDY * sizeof(float));
            kq->gemm_forward(&c.q, yq, LDY, x, LDX, N, (float)beta);
            kq->gemm_forward(&c.q, yq2, LDY, x, LDX, N, (float)beta);
            kf->gemm_forward(&c.f, yf, LDY, x, LDX, N, (float)beta);
            double r = max_rel(yq, yf, N, OUT, LDY, LDY);
            print_message("# %-5s gemm_forward  beta %d: max rel diff %.2e vs float32\n",
                          icl_ggml_type_name(c.t), beta, r);
            assert_true(r < 1e-6);
            assert_memory_equal(yq, yq2, (size_t)N * LDY * sizeof(float)); /* deterministic, pads untouched */
            for (int i = 0; i < N; i++) /* the stride's padding is not written */
                for (int j = OUT; j < LDY; j++)
                    assert_true(yq[i * LDY + j] == y0[i * LDY + j]);
        }
        /* input_grad: dx[N, IN] = dy[N, OUT] W + beta dx */
        float *dy = rnd((size_t)N * LDY), *dx0 = rnd((size_t)N * LDX);
        float *dxq = xmalloc((size_t)N * LDX * sizeof(float)), *dxf = xmalloc((size_t)N * LDX * sizeof(float));
        float *dxq2 = xmalloc((size_t)N * LDX * sizeof(float));
        for (int beta = 0; beta < 2; beta++) {
            memcpy(dxq, dx0, (size_t)N * LDX * sizeof(float));
            memcpy(dxf, dx0, (size_t)N * LDX * sizeof(float));
            memcpy(dxq2, dx0, (size_t)N * LDX * sizeof(float));
            kq->input_grad(&c.q, dxq, LDX, (float)beta, dy, LDY, N);
            kq->input_grad(&c.q, dxq2, LDX, (float)beta, dy, LDY, N);
            kf->input_grad(&c.f, dxf, LDX, (float)beta, dy, LDY, N);
            double r = max_rel(dxq, dxf, N, IN, LDX, LDX);
            print_message("# %-5s input_grad    beta %d: max rel diff %.2e vs float32\n",
                          icl_ggml_type_name(c.t), beta, r);
            assert_true(r < 1e-5);
            assert_memory_equal(dxq, dxq2, (size_t)N * LDX * sizeof(float));
            for (int i = 0; i < N; i++)
                for (int j = IN; j < LDX; j++)
                    assert_true(dxq[i * LDX + j] == dx0[i * LDX + j]);
        }
        /* dequantize_row */
        float row[IN];
        for (int r = 0; r < OUT; r += 1397) {
            kq->dequantize_row(&c.q, r, row);
            assert_memory_equal(row, c.wf + (size_t)r * IN, sizeof row);
        }
        free(x), free(y0), free(yq), free(yf), free(yq2), free(dy), free(dx0), free(dxq), free(dxf), free(dxq2);
        free_case(&c);
    }
}

static void rows_kernel(void **state)
{
    (void)state;
    const icl_weight_ops *kq = icl_weight_kernels(ICL_WEIGHT_QBLOCK), *kf = icl_weight_kernels(ICL_WEIGHT_F32);
    for (size_t ti = 0; ti < NTYPES; ti++) {
        wcase c = make_case(TYPES[ti]);
        float *x = rnd((size_t)N * LDX), *bias = rnd(OUT), *y0 = rnd((size_t)N * LDY);
        float *yq = xmalloc((size_t)N * LDY * sizeof(float)), *yf = xmalloc((size_t)N * LDY * sizeof(float));
        float *y1 = xmalloc((size_t)LDY * sizeof(float));
        for (int nt = 1; nt <= 2; nt++)
            for (int beta = 0; beta < 2; beta++) {
                memcpy(yq, y0, (size_t)N * LDY * sizeof(float));
                memcpy(yf, y0, (size_t)N * LDY * sizeof(float));
                kq->rows_forward(&c.q, bias, yq, LDY, x, LDX, N, (float)beta, nt);
                kf->rows_forward(&c.f, bias, yf, LDY, x, LDX, N, (float)beta, nt);
                /* decoding runs on the blocks (icl_qmatvec, x quantized per
                 * 32 to int8): its bits exactly, and float32's within the
                 * activation-quantization bound: |x_i - d q_i| <= d / 2 with
                 * d = amax / 127 of x_i's block, so |dy_j| <= sum_i |w_ji| d / 2. */
                float *yd = xmalloc((size_t)N * LDY * sizeof(float));
                memcpy(yd, y0, (size_t)N * LDY * sizeof(float));
                assert_int_equal(icl_qmatvec(c.t, c.q.data, OUT, IN, x, LDX, N, yd, LDY, (float)beta, bias, nt), 0);
                assert_memory_equal(yq, yd, (size_t)N * LDY * sizeof(float));
                /* icl_linear_set_qdot off: the dequantized tiles, float32's bits */
                memcpy(yd, y0, (size_t)N * LDY * sizeof(float));
                int was = icl_linear_set_qdot(0);
                kq->rows_forward(&c.q, bias, yd, LDY, x, LDX, N, (float)beta, nt);
                icl_linear_set_qdot(was);
                assert_memory_equal(yd, yf, (size_t)N * LDY * sizeof(float));
                free(yd);
                for (int i = 0; i < N; i++) {
                    float dblk[IN / 32];
                    for (int b = 0; b < IN / 32; b++) {
                        float amax = 0;
                        for (int k = 0; k < 32; k++)
                            amax = fmaxf(amax, fabsf(x[i * LDX + b * 32 + k]));
                        dblk[b] = amax / 127.0f;
                    }
                    for (int j = 0; j < OUT; j++) {
                        double bound = 0;
                        for (int k = 0; k < IN; k++)
                            bound += fabs(c.wf[(size_t)j * IN + k]) * dblk[k / 32] / 2;
                        double d = fabs((double)yq[i * LDY + j] - yf[i * LDY + j]);
                        assert_true(d <= 1.01 * bound + 1e-5 * fabs(yf[i * LDY + j]) + 1e-6);
                    }
                    for (int j = OUT; j < LDY; j++)
                        assert_true(yq[i * LDY + j] == y0[i * LDY + j]);
                }
                /* row 3 alone gives the same floats */
                memcpy(y1, y0 + 3 * LDY, (size_t)LDY * sizeof(float));
                kq->rows_forward(&c.q, bias, y1, LDY, x + 3 * LDX, LDX, 1, (float)beta, nt);
                assert_memory_equal(y1, yq + 3 * LDY, (size_t)OUT * sizeof(float));
            }
        print_message("# %-5s rows_forward: icl_qmatvec's bits, float32's within the int8-activation bound (1, 2 threads, beta 0/1, 1 or %d rows)\n",
                      icl_ggml_type_name(c.t), N);
        free(x), free(bias), free(y0), free(yq), free(yf), free(y1);
        free_case(&c);
    }
}

/* icl_linear over QBLOCK with an adapter on columns 100..399 equals the
 * float32 weight's: output, input gradient and adapter gradients. */
static void linear_with_adapter(void **state)
{
    (void)state;
    enum { R = 4, AO = 300, OFF = 100 };
    wcase c = make_case(ICL_GGML_Q4_1);
    float *A = rnd((size_t)R * IN), *B = rnd((size_t)AO * R), *x = rnd((size_t)N * IN), *dy = rnd((size_t)N * OUT);
    float *y[2], *dx[2], *dA[2], *dB[2];
    for (int k = 0; k < 2; k++) {
        y[k] = xmalloc((size_t)N * OUT * sizeof(float));
        dx[k] = xmalloc((size_t)N * IN * sizeof(float));
        dA[k] = xcalloc((size_t)R * IN, sizeof(float));
        dB[k] = xcalloc((size_t)AO * R, sizeof(float));
        icl_lora lo = {R, IN, AO, OFF, 0.5f, A, B, dA[k], dB[k], 0.0f, 0, NULL, NULL};
        icl_linear l = {k ? c.f : c.q, NULL, NULL, &lo, 1, NULL};
        float work[3 * N * R];
        assert_int_equal(icl_linear_work(&l, N), 3 * N * R); /* N (r_max + 2 r_sum) */
        icl_linear_forward(&l, y[k], OUT, x, IN, N, 0.0f, ICL_LIN_GEMM, 0, work);
        icl_linear_backward(&l, dx[k], IN, 0.0f, dy, OUT, x, IN, N, work);
    }
    assert_true(max_rel(y[0], y[1], N, OUT, OUT, OUT) < 1e-6);
    assert_true(max_rel(dx[0], dx[1], N, IN, IN, IN) < 1e-5);
    assert_memory_equal(dB[0], dB[1], (size_t)AO * R * sizeof(float)); /* dB needs no product with W */
    assert_true(max_rel(dA[0], dA[1], R, IN, IN, IN) < 1e-6);
    for (int k = 0; k < 2; k++)
        free(y[k]), free(dx[k]), free(dA[k]), free(dB[k]);
    free(A), free(B), free(x), free(dy);
    free_case(&c);
}


/* Bound of bf16.h: |y - y32| <= (2^-7 + 2^-16 + K 2^-24) sum_k |x_k w_k|,
 * checked for y = x W^T (K = IN) row by row. */
static void check_bf16_bound(const float *y, const float *x, const float *wf, int n, long ldx, long ldy)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < OUT; j += 37) {
            double s = 0, a = 0;
            for (int k = 0; k < IN; k++) {
                s += (double)x[i * ldx + k] * wf[(size_t)j * IN + k];
                a += fabs((double)x[i * ldx + k] * wf[(size_t)j * IN + k]);
            }
            assert_true(fabs(y[i * ldy + j] - s) <= (ldexp(1, -7) + ldexp(1, -16) + IN * ldexp(1, -24)) * a + 1e-6);
        }
}

/* QBLOCK_BF16 against BF16 on the packed dequantized matrix: the same bits. */
static void bf16_path(void **state)
{
    (void)state;
    const icl_weight_ops *kq = icl_weight_kernels(ICL_WEIGHT_QBLOCK_BF16), *kb = icl_weight_kernels(ICL_WEIGHT_BF16);
    assert_non_null(kq);
    assert_string_equal(kq->name, "qblock-bf16");
    assert_null(kq->weight_grad);
    enum { NB = 200 };
    for (size_t ti = 0; ti < NTYPES; ti++) {
        wcase c = make_case(TYPES[ti]);
        uint16_t *pf = xmalloc(icl_bf16_packed_size(IN, OUT) * sizeof(uint16_t));
        uint16_t *pb = xmalloc(icl_bf16_packed_size(OUT, IN) * sizeof(uint16_t));
        assert_int_equal(icl_bf16_pack(c.wf, IN, 0, IN, OUT, pf, 2), 0);
        assert_int_equal(icl_bf16_pack(c.wf, IN, 1, OUT, IN, pb, 2), 0);
        icl_bf16_weight bw = {pf, pb, 0};
        icl_weight wb = {ICL_WEIGHT_BF16, 0, OUT, IN, 0, &bw, NULL}, wq = c.q;
        wq.type = ICL_WEIGHT_QBLOCK_BF16;
        float row[IN];
        kq->dequantize_row(&wq, 1000, row);
        assert_memory_equal(row, c.wf + (size_t)1000 * IN, sizeof row);
        float *x = rnd((size_t)NB * LDX), *y0 = rnd((size_t)NB * LDY), *bias = rnd(OUT);
        float *dy = rnd((size_t)NB * LDY), *dx0 = rnd((size_t)NB * LDX);
        float *a = xmalloc((size_t)NB * LDY * sizeof(float)), *b = xmalloc((size_t)NB * LDY * sizeof(float));
        for (int port = 0; port < 2; port++) {
            icl_bf16_force_portable(port);
            for (int nt = 1; nt <= 2; nt++) {
                icl_set_threads(nt);
                for (int n = N; n <= NB; n += NB - N) {
                    if (port && n > N) /* the portable path is slow: 7 rows */
                        continue;
                    for (int beta = 0; beta < 2; beta++) {
                        size_t ny = (size_t)n * LDY * sizeof(float), nx = (size_t)n * LDX * sizeof(float);
                        memcpy(a, y0, ny), memcpy(b, y0, ny);
                        kq->gemm_forward(&wq, a, LDY, x, LDX, n, (float)beta);
                        kb->gemm_forward(&wb, b, LDY, x, LDX, n, (float)beta);
                        assert_memory_equal(a, b, ny); /* the strides' padding included */
                        if (!beta && nt == 2)
                            check_bf16_bound(a, x, c.wf, n < 9 ? n : 9, LDX, LDY);
                        memcpy(a, dx0, nx), memcpy(b, dx0, nx);
                        kq->input_grad(&wq, a, LDX, (float)beta, dy, LDY, n);
                        kb->input_grad(&wb, b, LDX, (float)beta, dy, LDY, n);
                        assert_memory_equal(a, b, nx);
                        int was = icl_linear_set_qdot(0);
                        memcpy(a, y0, ny), memcpy(b, y0, ny);
                        kq->rows_forward(&wq, bias, a, LDY, x, LDX, n, (float)beta, nt);
                        kb->rows_forward(&wb, bias, b, LDY, x, LDX, n, (float)beta, nt);
                        icl_linear_set_qdot(was);
                        assert_memory_equal(a, b, ny);
                    }
                }
            }
        }
        icl_bf16_force_portable(0);
        print_message("# %-5s qblock-bf16: forward, input gradient, rows: the bits of bf16 on the dequantized matrix "
                      "(1 and 2 threads; avx512bf16%s: %d and %d rows, portable: %d)\n",
                      icl_ggml_type_name(c.t), icl_bf16_native() ? "" : " [absent here]", N, NB, N);
        free(x), free(y0), free(bias), free(dy), free(dx0), free(a), free(b), free(pf), free(pb);
        free_case(&c);
    }
    icl_bf16_release_scratch();
}

static void check_errors(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(icl_qblock_check(ICL_GGML_Q4_1, 576, err, sizeof err), 0);
    assert_int_equal(icl_qblock_row_bytes(ICL_GGML_Q4_1, 576), 18 * 20);
    assert_int_equal(icl_qblock_check(ICL_GGML_Q4_K, 576, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a whole number of Q4_K blocks of 256"));
    assert_int_equal(icl_qblock_row_bytes(ICL_GGML_Q4_K, 576), 0);
    assert_int_equal(icl_qblock_check(ICL_GGML_F32, 64, err, sizeof err), -1);
    assert_non_null(strstr(err, "F32"));
    assert_int_equal(icl_qblock_check(ICL_GGML_F16, 64, err, sizeof err), -1);
    assert_int_equal(icl_qblock_check(ICL_GGML_Q8_K, 256, err, sizeof err), -1); /* no dequantizer in icl */
    assert_int_equal(icl_qblock_check(1000, 256, err, sizeof err), -1);
    assert_non_null(strstr(err, "(1000)"));
}

static int teardown(void **state)
{
    (void)state;
    icl_qblock_scratch_free();
    icl_bf16_release_scratch();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_entry),        cmocka_unit_test(gemm_and_input_grad),
        cmocka_unit_test(rows_kernel),        cmocka_unit_test(linear_with_adapter),
        cmocka_unit_test(check_errors),       cmocka_unit_test(bf16_path),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
