/* linear.c - weights by storage type, linear maps, low-rank adapters.  See linear.h. */
#include "linear.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "ops.h"
#include "qlinear.h"
#include "util.h"

/* Loops over fewer elements than this run on one thread (as ops.c). */
#define ICL_PAR_MIN 32768

/* ---------------------------------------------------------------- float32: GEMM kernels (BLIS) */

/* Strides (row, column) of the logical W^T [in, out] in the storage. */
static void f32_wt_strides(const icl_weight *w, long *rs, long *cs)
{
    if (w->conv1d) {
        *rs = w->out;
        *cs = 1;
    } else {
        *rs = 1;
        *cs = w->in;
    }
}

/* y[N, out] = x[N, in] W^T + beta y */
static void f32_gemm_forward(const icl_weight *w, float *y, long ldy, const float *x, long ldx, int N, float beta)
{
    long rs, cs;
    f32_wt_strides(w, &rs, &cs);
    icl_gemm(N, w->out, w->in, 1.0f, x, ldx, 1, (const float *)w->data, rs, cs, beta, y, ldy, 1, 0);
}

/* dx[N, in] = dy[N, out] W + beta dx */
static void f32_input_grad(const icl_weight *w, float *dx, long lddx, float beta, const float *dy, long lddy, int N)
{
    long rs, cs;
    f32_wt_strides(w, &rs, &cs);
    icl_gemm(N, w->in, w->out, 1.0f, dy, lddy, 1, (const float *)w->data, cs, rs, beta, dx, lddx, 1, 0);
}

/* dW^T [in, out] += x^T dy */
static void f32_weight_grad(const icl_weight *w, const float *dy, long lddy, const float *x, long ldx, int N)
{
    long rs, cs;
    f32_wt_strides(w, &rs, &cs);
    icl_gemm(w->in, w->out, N, 1.0f, x, 1, ldx, dy, lddy, 1, 1.0f, w->grad, rs, cs, 0);
}

static void f32_dequantize_row(const icl_weight *w, int r, float *out)
{
    const float *W = (const float *)w->data;
    if (w->conv1d)
        for (int k = 0; k < w->in; k++)
            out[k] = W[(size_t)k * w->out + r];
    else
        memcpy(out, W + (size_t)r * w->in, (size_t)w->in * sizeof(float));
}

/* ---------------------------------------------------------------- float32: rows kernel (decoding) */

/* 16 floats; loads and stores through memcpy (unaligned vmovups). */
typedef float v16 __attribute__((vector_size(64)));

static inline v16 ld16(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Horizontal sum in a fixed order: fold halves (16 -> 8 -> 4 -> 2 -> 1). */
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));
static inline float hsum(v16 a)
{
    v8 lo, hi;
    memcpy(&lo, &a, sizeof lo);
    memcpy(&hi, (const char *)&a + sizeof lo, sizeof hi);
    v8 s8 = lo + hi;
    v4 l4, h4;
    memcpy(&l4, &s8, sizeof l4);
    memcpy(&h4, (const char *)&s8 + sizeof l4, sizeof h4);
    v4 s4 = l4 + h4;
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

#define RB 4 /* rows of x per pass over a weight row */

/* out[r] = dot(w[0..n), xs[r][0..n)) for r < nr (nr <= RB).  Every row uses
 * the same sequence of operations whatever nr is: two vector accumulators
 * over 32-float chunks, one 16-float step, fixed-order horizontal sum, then
 * a scalar tail. */
static inline __attribute__((always_inline)) void dot_rows(const float *w, const float *const *xs, int nr, int n,
                                                           float *out)
{
    v16 a[RB][2];
    memset(a, 0, sizeof a);
    int k = 0;
    for (; k + 32 <= n; k += 32) {
        v16 w0 = ld16(w + k), w1 = ld16(w + k + 16);
        for (int r = 0; r < nr; r++) {
            a[r][0] += w0 * ld16(xs[r] + k);
            a[r][1] += w1 * ld16(xs[r] + k + 16);
        }
    }
    if (k + 16 <= n) {
        v16 w0 = ld16(w + k);
        for (int r = 0; r < nr; r++)
            a[r][0] += w0 * ld16(xs[r] + k);
        k += 16;
    }
    for (int r = 0; r < nr; r++) {
        float s = hsum(a[r][0] + a[r][1]);
        for (int j = k; j < n; j++)
            s += w[j] * xs[r][j];
        out[r] = s;
    }
}

/* W [out, in]: blocks of 16 weight rows, each row read from memory once for
 * (up to) 8 rows of x, the 16 x 8 results gathered in yl and written out
 * together (rows of y are a multiple of 4 KiB apart for the LM head:
 * storing them one by one thrashes an L1 set). */
static void rows_linear(float *y, long ldy, const float *x, long ldx, int B, const float *W, const float *bias,
                        int in, int out, float beta, int nt)
{
    int nblk = (out + 15) / 16;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int jb = 0; jb < nblk; jb++) {
        int j0 = jb * 16, nj = out - j0 < 16 ? out - j0 : 16;
        for (int g0 = 0; g0 < B; g0 += 2 * RB) {
            int ng = B - g0 < 2 * RB ? B - g0 : 2 * RB;
            float yl[2 * RB][16];
            for (int jj = 0; jj < nj; jj++) {
                const float *w = W + (size_t)(j0 + jj) * in;
                for (int b0 = 0; b0 < ng; b0 += RB) {
                    int nr = ng - b0 < RB ? ng - b0 : RB;
                    const float *xs[RB];
                    float o[RB];
                    for (int r = 0; r < nr; r++)
                        xs[r] = x + (size_t)(g0 + b0 + r) * ldx;
                    switch (nr) { /* constant row counts: accumulators stay in registers */
                    case 1: dot_rows(w, xs, 1, in, o); break;
                    case 2: dot_rows(w, xs, 2, in, o); break;
                    case 3: dot_rows(w, xs, 3, in, o); break;
                    default: dot_rows(w, xs, 4, in, o); break;
                    }
                    for (int r = 0; r < nr; r++)
                        yl[b0 + r][jj] = o[r];
                }
            }
            for (int r = 0; r < ng; r++) {
                float *yo = y + (size_t)(g0 + r) * ldy + j0;
                for (int jj = 0; jj < nj; jj++) {
                    float t = yl[r][jj] + (bias ? bias[j0 + jj] : 0.0f);
                    yo[jj] = beta != 0.0f ? yo[jj] + t : t;
                }
            }
        }
    }
}

/* W [in, out] (Conv1D): blocks of 64 output columns; y[b, j] = sum_k x[b,k]
 * W[k,j] accumulated in k order. */
static void rows_conv1d(float *y, long ldy, const float *x, long ldx, int B, const float *W, const float *bias,
                        int in, int out, float beta, int nt)
{
    int nblk = (out + 63) / 64;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int jb = 0; jb < nblk; jb++) {
        int j0 = jb * 64, nj = out - j0 < 64 ? out - j0 : 64;
        for (int b = 0; b < B; b++) {
            float acc[64] = {0};
            const float *xb = x + (size_t)b * ldx;
            for (int k = 0; k < in; k++) {
                const float *w = W + (size_t)k * out + j0;
                float xk = xb[k];
#pragma omp simd
                for (int j = 0; j < 64; j++)
                    acc[j] += xk * (j < nj ? w[j] : 0.0f);
            }
            float *yo = y + (size_t)b * ldy + j0;
            for (int j = 0; j < nj; j++) {
                float t = acc[j] + (bias ? bias[j0 + j] : 0.0f);
                yo[j] = beta != 0.0f ? yo[j] + t : t;
            }
        }
    }
}

static void f32_rows_forward(const icl_weight *w, const float *bias, float *y, long ldy, const float *x, long ldx,
                             int N, float beta, int nt)
{
    if ((double)N * w->in * w->out < 65536.0)
        nt = 1;
    if (w->conv1d)
        rows_conv1d(y, ldy, x, ldx, N, (const float *)w->data, bias, w->in, w->out, beta, nt);
    else
        rows_linear(y, ldy, x, ldx, N, (const float *)w->data, bias, w->in, w->out, beta, nt);
}

/* ---------------------------------------------------------------- the table */

static const icl_weight_ops f32_ops = {
    .name = "f32",
    .gemm_forward = f32_gemm_forward,
    .rows_forward = f32_rows_forward,
    .input_grad = f32_input_grad,
    .weight_grad = f32_weight_grad,
    .dequantize_row = f32_dequantize_row,
};

/* One row per icl_weight_type. */
static const icl_weight_ops *const kernels[ICL_WEIGHT_NTYPES] = {
    [ICL_WEIGHT_F32] = &f32_ops,
    [ICL_WEIGHT_BF16] = &icl_bf16_weight_ops, /* bf16.c */
    [ICL_WEIGHT_QBLOCK] = &icl_qblock_ops,    /* qlinear.c */
    [ICL_WEIGHT_QBLOCK_BF16] = &icl_qblock_bf16_ops, /* qlinear.c */
};

const icl_weight_ops *icl_weight_kernels(icl_weight_type t)
{
    return (unsigned)t < ICL_WEIGHT_NTYPES ? kernels[t] : NULL;
}

/* ---------------------------------------------------------------- linear maps */

/* Largest adapter rank of l (0: none); *drop_in: the widest input of an
 * adapter with dropout (0: none); *rsum: the sum of the ranks. */
static int lora_rmax(const icl_linear *l, int *drop_in, int *rsum)
{
    int r = 0;
    *drop_in = 0;
    *rsum = 0;
    for (int i = 0; i < l->n_lora; i++) {
        r = l->lora[i].r > r ? l->lora[i].r : r;
        *rsum += l->lora[i].r;
        if (l->lora[i].dropout > 0 && l->lora[i].in > *drop_in)
            *drop_in = l->lora[i].in;
    }
    return r;
}

size_t icl_linear_work(const icl_linear *l, int N)
{
    int din, rsum, r = lora_rmax(l, &din, &rsum);
    return ((size_t)r + 2 * (size_t)rsum + (size_t)din) * (size_t)N;
}

size_t icl_linear_xa_size(const icl_linear *l, int N)
{
    int din, rsum;
    lora_rmax(l, &din, &rsum);
    return (size_t)rsum * (size_t)N;
}

/* y[N, out] += b */
static void add_bias(float *y, long ldy, const float *b, int N, int out)
{
#pragma omp parallel for schedule(static) if ((long)N * out >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *yi = y + (long)i * ldy;
#pragma omp simd
        for (int j = 0; j < out; j++)
            yi[j] += b[j];
    }
}

/* db[j] += sum_i dy[i, j], parallel over column blocks (deterministic). */
static void colsum_acc(float *db, const float *dy, long ld, int N, int n)
{
#pragma omp parallel for schedule(static) if ((long)N * n >= ICL_PAR_MIN)
    for (int j0 = 0; j0 < n; j0 += 64) {
        int nb = n - j0 < 64 ? n - j0 : 64;
        float acc[64] = {0};
        for (int i = 0; i < N; i++) {
            const float *r = dy + (long)i * ld + j0;
#pragma omp simd
            for (int j = 0; j < nb; j++)
                acc[j] += r[j];
        }
        for (int j = 0; j < nb; j++)
            db[j0 + j] += acc[j];
    }
}

/* ---------------------------------------------------------------- adapters' products
 *
 * The rank-r updates of an adapter, y[N, out] += scale (x A^T) B^T in the
 * forward and dx[N, in] += t A in the backward (k = r, 8-64), are mostly
 * traffic over y or dx; BLIS ran them at 20-45 GFLOP/s on one core here
 * (bench/lora_linear.c; the base products: ~100), paying its packing and a
 * load and store of C per rank-r microkernel call.  lora_rows_expand does
 * them in one pass over C, parallel over blocks of RB rows: about twice as
 * fast on 1 and on 2 threads.  Every element is summed over k in order from
 * 0, then scaled and added, the same whatever N and the thread count (row
 * i depends only on row i).  The other products (x A^T, dy B: n = r with a
 * long k; dA, dB: sums over the N rows) have their own kernels below
 * (lora_skinny, lora_reduce). */

/* Products below this many multiply-adds run on one thread. */
#define LORA_PAR_MIN 262144.0

/* The rows i0..i0+nr of C[:, j0:j0+64] = alpha * (P M)[...] (+ C when
 * beta): acc = sum over k in order of P[i, k] M[k, j], from 0. */
static inline __attribute__((always_inline)) void expand_block(float *C, long ldc, const float *P, long ldp,
                                                               const float *M, long ldm, int r, int nr, int j0,
                                                               float alpha, int beta)
{
    v16 acc[RB][4];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < r; k++) {
        const float *m = M + (size_t)k * ldm + j0;
        v16 m0 = ld16(m), m1 = ld16(m + 16), m2 = ld16(m + 32), m3 = ld16(m + 48);
        for (int q = 0; q < nr; q++) {
            float p = P[(size_t)q * ldp + k];
            acc[q][0] += p * m0;
            acc[q][1] += p * m1;
            acc[q][2] += p * m2;
            acc[q][3] += p * m3;
        }
    }
    for (int q = 0; q < nr; q++)
        for (int c = 0; c < 4; c++) {
            float *d = C + (size_t)q * ldc + j0 + 16 * c;
            v16 v = alpha * acc[q][c];
            if (beta)
                v += ld16(d);
            memcpy(d, &v, sizeof v);
        }
}

/* C[N, n] (row stride ldc) = alpha * P[N, r] M + beta C (beta 0 or 1),
 * P row stride ldp, M [r, n] with row stride ldm: the rank-r update of the
 * adapters' up product (M = B^T) and of the input gradient (M = A). */
static void lora_rows_expand(float *C, long ldc, const float *P, long ldp, int N, const float *M, long ldm, int r,
                             int n, float alpha, int beta)
{
    int nb = (N + RB - 1) / RB, n64 = n / 64 * 64;
#pragma omp parallel for schedule(static) if ((double)N * r * n >= LORA_PAR_MIN)
    for (int b = 0; b < nb; b++) {
        int i0 = b * RB, nr = N - i0 < RB ? N - i0 : RB;
        float *Cb = C + (size_t)i0 * ldc;
        const float *Pb = P + (size_t)i0 * ldp;
        for (int j0 = 0; j0 < n64; j0 += 64)
            switch (nr) { /* constant row counts: accumulators stay in registers */
            case 1: expand_block(Cb, ldc, Pb, ldp, M, ldm, r, 1, j0, alpha, beta); break;
            case 2: expand_block(Cb, ldc, Pb, ldp, M, ldm, r, 2, j0, alpha, beta); break;
            case 3: expand_block(Cb, ldc, Pb, ldp, M, ldm, r, 3, j0, alpha, beta); break;
            default: expand_block(Cb, ldc, Pb, ldp, M, ldm, r, 4, j0, alpha, beta); break;
            }
        for (int q = 0; q < nr; q++) /* the last n % 64 columns */
            for (int j = n64; j < n; j++) {
                float acc = 0;
                for (int k = 0; k < r; k++)
                    acc += Pb[(size_t)q * ldp + k] * M[(size_t)k * ldm + j];
                float v = alpha * acc;
                Cb[(size_t)q * ldc + j] = beta ? Cb[(size_t)q * ldc + j] + v : v;
            }
    }
}

/* One rank-r term of lora_rows_expand_add: alpha * P[N, r] M, P row
 * stride ldp, M [r, n] row stride ldm. */
typedef struct {
    const float *P;
    long ldp;
    const float *M;
    long ldm;
    int r;
    float alpha;
} lora_term;

/* C[N, n] += term 0, then += term 1, ...: the same sums and additions, in
 * the same order, as one lora_rows_expand(..., beta 1) per term, but in one
 * pass over C (a block of 4 rows by 64 columns stays in L1 while every
 * term is added to it): the input gradient of adapters that share their
 * input (q, k, v on q|k|v; gate, up on gate|up). */
static void lora_rows_expand_add(float *C, long ldc, int N, int n, const lora_term *tm, int nterm)
{
    int nb = (N + RB - 1) / RB, n64 = n / 64 * 64;
    double work = 0;
    for (int u = 0; u < nterm; u++)
        work += (double)N * tm[u].r * n;
#pragma omp parallel for schedule(static) if (work >= LORA_PAR_MIN)
    for (int b = 0; b < nb; b++) {
        int i0 = b * RB, nr = N - i0 < RB ? N - i0 : RB;
        float *Cb = C + (size_t)i0 * ldc;
        for (int j0 = 0; j0 < n64; j0 += 64)
            for (int u = 0; u < nterm; u++) {
                const float *Pb = tm[u].P + (size_t)i0 * tm[u].ldp;
                long ldp = tm[u].ldp, ldm = tm[u].ldm;
                const float *M = tm[u].M;
                int r = tm[u].r;
                float alpha = tm[u].alpha;
                switch (nr) {
                case 1: expand_block(Cb, ldc, Pb, ldp, M, ldm, r, 1, j0, alpha, 1); break;
                case 2: expand_block(Cb, ldc, Pb, ldp, M, ldm, r, 2, j0, alpha, 1); break;
                case 3: expand_block(Cb, ldc, Pb, ldp, M, ldm, r, 3, j0, alpha, 1); break;
                default: expand_block(Cb, ldc, Pb, ldp, M, ldm, r, 4, j0, alpha, 1); break;
                }
            }
        for (int u = 0; u < nterm; u++) { /* the last n % 64 columns */
            const float *Pb = tm[u].P + (size_t)i0 * tm[u].ldp;
            for (int q = 0; q < nr; q++)
                for (int j = n64; j < n; j++) {
                    float acc = 0;
                    for (int k = 0; k < tm[u].r; k++)
                        acc += Pb[(size_t)q * tm[u].ldp + k] * tm[u].M[(size_t)k * tm[u].ldm + j];
                    float v = tm[u].alpha * acc;
                    Cb[(size_t)q * ldc + j] = Cb[(size_t)q * ldc + j] + v;
                }
        }
    }
}

/* ---------------------------------------------------------------- adapters' skinny products
 *
 * The other four products of an adapter have one side of rank r: the down
 * product xa = x A^T and the backward's t = scale dy B ([N, K] times [K, r],
 * K = in or out: one output row per input row, a sum over the long K), and
 * the gradients dA += t^T x and dB += scale dy^T xa ([N, r]^T times [N, W],
 * W = in or out: sums over the N rows).  BLIS ran them at 40-100 GFLOP/s on
 * one core, and its sums can change with the thread count at some shapes
 * (edge tiles split between threads); own kernels, whose sums never do:
 *  - lora_skinny: blocks of rows of P, each row's r sums in registers
 *    (r / 16 vectors, a row of Q per step of K; a block of 12 rows at once
 *    where r <= 16, 6 rows at a time otherwise and in shorter blocks),
 *    parallel over row blocks:
 *    row i's results are the sums over K in order from 0 of row i alone,
 *    then scaled: the same whatever N and the thread count.  Adapters that
 *    share their input (q, k, v; gate, up) take the same block of x from L1
 *    one after the other (terms).
 *  - lora_reduce: strips of 16 columns of X, up to 16 of the r sums per
 *    column in registers (the 16 columns as lanes; 3 strips x 8 ranks at
 *    once where they remain, fewer loads per FMA), over blocks of RD_RB
 *    rows (each block's sums from 0 in row order, added to the element's
 *    running sum block after block), then scaled and added to the
 *    gradient; parallel over strips: every element is one thread's sum in
 *    one order, whatever the thread count.  Adapters sharing X take each
 *    strip of a block while it is in L1.
 * Sources: Hu et al. 2021 (LoRA), PEFT's lora.Linear (the products). */

#define SK_RB 6   /* rows of P per register block of lora_skinny: 6 x 4 vectors of 16 sums */
#define SK_RB1 12 /* rows of P per block where r <= 16: 12 x 1 vector of 16 sums */

/* One term of lora_skinny: C[N, r] (row stride ldc) = alpha * P Q, Q [K,
 * rp] row-major with rp = r rounded up to 16, zero beyond r. */
typedef struct {
    const float *Q;
    int r;
    float *C;
    long ldc;
    float alpha;
} skinny_term;

static inline int up16(int r) { return (r + 15) & ~15; }

/* Rows i < nr of P (stride ldp): the 16 nv sums from vector v0 of Q (nr
 * nv <= 24: SK_RB x 4 or SK_RB1 x 1; constant at every call, so that the
 * sums stay in registers). */
static inline __attribute__((always_inline)) void skinny_block(const float *P, long ldp, int nr, int K, const float *Q,
                                                               int rp, int v0, int nv, const skinny_term *t)
{
    v16 acc[SK_RB * 4];
    memset(acc, 0, sizeof acc);
    const float *q = Q + 16 * v0;
    for (int j = 0; j < K; j++, q += rp) {
        v16 qv[4];
        for (int v = 0; v < nv; v++)
            qv[v] = ld16(q + 16 * v);
        for (int i = 0; i < nr; i++) {
            float p = P[(size_t)i * ldp + j];
            for (int v = 0; v < nv; v++)
                acc[i * nv + v] += p * qv[v];
        }
    }
    for (int i = 0; i < nr; i++)
        for (int v = 0; v < nv; v++) {
            int k0 = 16 * (v0 + v), n = t->r - k0 < 16 ? t->r - k0 : 16;
            v16 s = t->alpha * acc[i * nv + v];
            float *c = t->C + (size_t)i * t->ldc + k0;
            if (n == 16)
                memcpy(c, &s, sizeof s);
            else
                for (int l = 0; l < n; l++)
                    c[l] = s[l];
        }
}

/* Rows 0 .. nr-1 (nr <= SK_RB) of t's C = alpha * P Q, Q with rp columns. */
static void skinny_rows6(const float *Pb, long ldp, int nr, int K, int rp, const skinny_term *t)
{
    for (int v0 = 0; v0 < rp / 16; v0 += 4) {
        int nv = rp / 16 - v0 < 4 ? rp / 16 - v0 : 4;
#define SK_(a, c)                                                                                                    \
    case (a) * 8 + (c): skinny_block(Pb, ldp, a, K, t->Q, rp, v0, c, t); break;
        switch (nr * 8 + nv) { /* constant sizes: the sums stay in registers */
            SK_(1, 1) SK_(1, 2) SK_(1, 3) SK_(1, 4) SK_(2, 1) SK_(2, 2) SK_(2, 3) SK_(2, 4)
            SK_(3, 1) SK_(3, 2) SK_(3, 3) SK_(3, 4) SK_(4, 1) SK_(4, 2) SK_(4, 3) SK_(4, 4)
            SK_(5, 1) SK_(5, 2) SK_(5, 3) SK_(5, 4) SK_(6, 1) SK_(6, 2) SK_(6, 3)
        default: skinny_block(Pb, ldp, SK_RB, K, t->Q, rp, v0, 4, t); break;
        }
#undef SK_
    }
}

/* For each term: rows i0 .. i0+nr-1 (nr <= SK_RB1) of its C = alpha * P Q.
 * One vector of sums a row (r <= 16) takes 12 rows at once, so that 12
 * FMA chains hide the FMA's latency; more vectors take 6 rows at a time. */
static void skinny_rows(const float *P, long ldp, int i0, int nr, int K, const skinny_term *tm, int nterm)
{
    const float *Pb = P + (size_t)i0 * ldp;
    for (int u = 0; u < nterm; u++) {
        skinny_term t = tm[u];
        t.C += (size_t)i0 * t.ldc;
        int rp = up16(t.r);
        if (rp == 16 && nr == SK_RB1) {
            skinny_block(Pb, ldp, SK_RB1, K, t.Q, rp, 0, 1, &t);
            continue;
        }
        for (int j = 0; j < nr; j += SK_RB) {
            skinny_term tj = t;
            tj.C += (size_t)j * t.ldc;
            skinny_rows6(Pb + (size_t)j * ldp, ldp, nr - j < SK_RB ? nr - j : SK_RB, K, rp, &tj);
        }
    }
}

/* For each term: C[N, r] = alpha * P[N, K] Q (P row stride ldp). */
static void lora_skinny(const float *P, long ldp, int N, int K, const skinny_term *tm, int nterm)
{
    double work = 0;
    int narrow = 1;
    for (int u = 0; u < nterm; u++) {
        work += (double)N * K * tm[u].r;
        narrow &= tm[u].r <= 16;
    }
    /* 12-row blocks where they are whole 12-row kernels and leave blocks for
     * both threads at decoding's few rows; 6 rows otherwise */
    int rb = narrow && N >= 4 * SK_RB1 ? SK_RB1 : SK_RB, nb = (N + rb - 1) / rb;
#pragma omp parallel for schedule(static) if (work >= LORA_PAR_MIN)
    for (int b = 0; b < nb; b++) {
        int i0 = b * rb, nr = N - i0 < rb ? N - i0 : rb;
        skinny_rows(P, ldp, i0, nr, K, tm, nterm);
    }
}

/* Q [in, up16(r)] = A^T zero-padded (A [r, in]), malloc'd. */
static float *lora_at_new(const icl_lora *a)
{
    int rp = up16(a->r);
    float *q = xcalloc((size_t)a->in * rp, sizeof(float));
    for (int k = 0; k < a->r; k++)
        for (int c = 0; c < a->in; c++)
            q[(size_t)c * rp + k] = a->A[(size_t)k * a->in + c];
    return q;
}

/* lora_at_new's Q: a->At when icl_lora_pack made it (*own 0), else a new
 * one (*own 1: the caller frees it). */
static const float *lora_at(const icl_lora *a, int *own)
{
    *own = a->At == NULL;
    return a->At ? a->At : lora_at_new(a);
}

/* B [out, r] as Q [out, up16(r)]: B itself when r is a multiple of 16
 * (*own 0), else a zero-padded copy (*own 1, malloc'd). */
static const float *lora_bq(const icl_lora *a, int *own)
{
    int rp = up16(a->r);
    *own = rp != a->r;
    if (!*own)
        return a->B;
    float *q = xcalloc((size_t)a->out * rp, sizeof(float));
    for (int j = 0; j < a->out; j++)
        memcpy(q + (size_t)j * rp, a->B + (size_t)j * a->r, (size_t)a->r * sizeof(float));
    return q;
}

/* One term of lora_reduce: G += alpha * P[N, r]^T X, G [r, W] row-major
 * (trans 0: dA) or G^T [W, r] row-major (trans 1: dB). */
typedef struct {
    const float *P;
    long ldp;
    int r;
    float *G;
    float alpha;
    int trans;
} reduce_term;

#define RD_RB 64 /* rows of X per block of lora_reduce */

/* S[k][0..16) += the sums over rows 0 .. nrow-1 of P[i, k0 + k] X[i, w0..w0+nw)
 * for k < nk (nw <= 16), each from 0 in row order (add 0: S = the sums);
 * the lines 4 strips ahead are prefetched. */
static inline __attribute__((always_inline)) void reduce_strip(const float *X, long ldx, int nrow, int w0, int nw,
                                                               int W, const float *P, long ldp, int nk, float *S,
                                                               int add)
{
    v16 acc[16];
    memset(acc, 0, sizeof acc);
    int pf = w0 + 64 < W;
    if (nw == 16) {
        for (int i = 0; i < nrow; i++, P += ldp) {
            const float *xr = X + (size_t)i * ldx + w0;
            if (pf)
                __builtin_prefetch(xr + 64);
            v16 xv = ld16(xr);
            for (int k = 0; k < nk; k++)
                acc[k] += P[k] * xv;
        }
    } else {
        for (int i = 0; i < nrow; i++, P += ldp) {
            v16 xv = {0};
            memcpy(&xv, X + (size_t)i * ldx + w0, (size_t)nw * sizeof(float));
            for (int k = 0; k < nk; k++)
                acc[k] += P[k] * xv;
        }
    }
    for (int k = 0; k < nk; k++) {
        v16 s = add ? ld16(S + 16 * k) + acc[k] : acc[k];
        memcpy(S + 16 * k, &s, sizeof s);
    }
}

/* reduce_strip for 3 whole strips (columns w0 .. w0+47) and 8 of the
 * ranks at once: S[j sstr + 16 k] (+)= the sums over rows 0 .. nrow-1 of
 * P[i, k] X[i, w0 + 16 j + l], j < 3, k < 8.  Per row 3 loads of X and 8
 * of P feed 24 FMAs (reduce_strip: 1 + nk loads for nk), and each sum is
 * the same as reduce_strip's: from 0 in row order, one FMA a row.  The
 * lines two groups ahead are prefetched. */
static inline __attribute__((always_inline)) void reduce_tile(const float *X, long ldx, int nrow, int w0, int W,
                                                              const float *P, long ldp, float *S, long sstr,
                                                              int add)
{
    v16 acc[3][8];
    memset(acc, 0, sizeof acc);
    int pf = w0 + 144 <= W;
    for (int i = 0; i < nrow; i++, P += ldp) {
        const float *xr = X + (size_t)i * ldx + w0;
        if (pf) {
            __builtin_prefetch(xr + 96);
            __builtin_prefetch(xr + 112);
            __builtin_prefetch(xr + 128);
        }
        v16 x0 = ld16(xr), x1 = ld16(xr + 16), x2 = ld16(xr + 32);
        for (int k = 0; k < 8; k++) {
            float p = P[k];
            acc[0][k] += p * x0;
            acc[1][k] += p * x1;
            acc[2][k] += p * x2;
        }
    }
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 8; k++) {
            float *d = S + j * sstr + 16 * k;
            v16 s = add ? ld16(d) + acc[j][k] : acc[j][k];
            memcpy(d, &s, sizeof s);
        }
}

/* The sums of strips s0 .. s1-1 of X [nrow, W] against ranks 0 .. r-1 of
 * P (row stride ldp): strip s, rank k at S[(s - s0) sstr + 16 k] (add 0:
 * set, 1: added).  reduce_tile where 3 whole strips and 8 ranks remain,
 * reduce_strip for the rest; every sum the same either way. */
static inline __attribute__((always_inline)) void reduce_strips(const float *X, long ldx, int nrow, int s0, int s1,
                                                                int W, const float *P, long ldp, int r, float *S,
                                                                long sstr, int add)
{
    for (int s = s0; s < s1;) {
        int g = s1 - s >= 3 && 16 * (s + 3) <= W ? 3 : 1, k0 = 0;
        float *Ss = S + (size_t)(s - s0) * sstr;
        if (g == 3)
            for (; k0 + 8 <= r; k0 += 8)
                reduce_tile(X, ldx, nrow, 16 * s, W, P + k0, ldp, Ss + 16 * k0, sstr, add);
        for (int j = 0; j < g; j++) {
            int w0 = 16 * (s + j), nw = W - w0 < 16 ? W - w0 : 16;
            for (int k = k0; k < r; k += 16) {
                int nk = r - k < 16 ? r - k : 16;
                float *d = Ss + (size_t)j * sstr + 16 * k;
#define RS_(c)                                                                                                       \
    case c: reduce_strip(X, ldx, nrow, w0, nw, W, P + k, ldp, c, d, add); break;
                switch (nk) { /* constant sizes: the sums stay in registers */
                    RS_(1) RS_(2) RS_(3) RS_(4) RS_(5) RS_(6) RS_(7) RS_(8)
                    RS_(9) RS_(10) RS_(11) RS_(12) RS_(13) RS_(14) RS_(15)
                default: reduce_strip(X, ldx, nrow, w0, nw, W, P + k, ldp, 16, d, add); break;
                }
#undef RS_
            }
        }
        s += g;
    }
}

/* For each term: its G += alpha * P^T X, X [N, W] (row stride ldx).  Each
 * thread takes a fixed range of 16-column strips and walks the rows in
 * blocks of RD_RB (a block of X stays in L2 while its strips pass), each
 * block's sums added to a running sum per element: the same order
 * whatever the thread count. */
static void lora_reduce(const float *X, long ldx, int N, int W, const reduce_term *tm, int nterm)
{
    int ns = (W + 15) / 16, kt = 0;
    double work = 0;
    for (int u = 0; u < nterm; u++) {
        work += (double)N * W * tm[u].r;
        kt += tm[u].r;
    }
    float *S = xcalloc((size_t)ns * kt * 16, sizeof(float)); /* strip s, row k of the terms: 16 sums */
    int nt = work >= LORA_PAR_MIN ? omp_get_max_threads() : 1;
    if (nt > ns)
        nt = ns;
#pragma omp parallel num_threads(nt)
    {
        int th = omp_get_thread_num(), n = omp_get_num_threads();
        int s0 = (int)((long)ns * th / n), s1 = (int)((long)ns * (th + 1) / n);
        for (int i0 = 0; i0 < N; i0 += RD_RB) {
            int nrow = N - i0 < RD_RB ? N - i0 : RD_RB;
            const float *Xb = X + (size_t)i0 * ldx;
            for (int s = s0; s < s1; s += 3) { /* 3 strips of the block at a time, every term */
                int se = s1 - s < 3 ? s1 : s + 3, ko = 0;
                for (int u = 0; u < nterm; u++) {
                    const float *Pb = tm[u].P + (size_t)i0 * tm[u].ldp;
                    reduce_strips(Xb, ldx, nrow, s, se, W, Pb, tm[u].ldp, tm[u].r, S + ((size_t)s * kt + ko) * 16,
                                  (long)kt * 16, 1);
                    ko += tm[u].r;
                }
            }
        }
    }
    for (int s = 0; s < ns; s++) { /* G += alpha S */
        int w0 = 16 * s, nw = W - w0 < 16 ? W - w0 : 16;
        const float *Ss = S + (size_t)s * kt * 16;
        for (int u = 0; u < nterm; u++) {
            const reduce_term *t = &tm[u];
            for (int k0 = 0; k0 < t->r; k0 += 16) {
                int nk = t->r - k0 < 16 ? t->r - k0 : 16;
                for (int k = 0; k < nk; k++)
                    for (int l = 0; l < nw; l++) {
                        float v = t->alpha * Ss[16 * k + l];
                        if (t->trans)
                            t->G[(size_t)(w0 + l) * t->r + k0 + k] += v;
                        else
                            t->G[(size_t)(k0 + k) * W + w0 + l] += v;
                    }
                Ss += 16 * nk;
            }
        }
    }
    free(S);
}

/* The backward's two products over dy in one pass: t[N, r] (row stride
 * ldt) = alpha * D Q (Q: B [W, r] as lora_bq gives it, zero-padded to
 * up16(r) columns) and dB [W, r] += alpha * D^T xa (xa [N, r], row stride
 * r), D [N, W] with row stride ldd.  Parallel over blocks of RD_RB rows of
 * D: each block's rows of t (lora_skinny's sums, row by row: the same
 * bits), then, while the block is in cache, its sums for dB, each element
 * from 0 in row order (as lora_reduce's blocks), kept per block for
 * DY_CHUNK blocks at a time and added to a running sum in block order from
 * 0, which is finally scaled and added to dB: the very additions
 * lora_reduce makes, so the same bits as lora_skinny followed by
 * lora_reduce, whatever the thread count, with D read from memory once
 * instead of twice.  Scratch (icl_scratch_take: reused, not allocated per
 * call): DY_CHUNK + 1 blocks' sums of W x up16(r) floats; above DY_MAX
 * bytes of it (large ranks), the two passes instead. */
#define DY_CHUNK 16
#define DY_MAX ((size_t)64 << 20)
static void lora_dy(const float *D, long ldd, int N, int W, const float *xa, int r, const float *Q, float alpha,
                    float *dB, float *t, long ldt)
{
    int nb = (N + RD_RB - 1) / RD_RB, ns = (W + 15) / 16, rp = up16(r), nc = nb < DY_CHUNK ? nb : DY_CHUNK;
    size_t per = (size_t)ns * rp * 16; /* a block's sums: strip s, row k, 16 lanes at (s rp + k) 16 */
    skinny_term st = {Q, r, t, ldt, alpha};
    if ((size_t)(nc + 1) * per * sizeof(float) > DY_MAX) {
        reduce_term rd = {xa, r, r, dB, alpha, 1};
        lora_reduce(D, ldd, N, W, &rd, 1);
        lora_skinny(D, ldd, N, W, &st, 1);
        return;
    }
    size_t got;
    float *S = icl_scratch_take((size_t)(nc + 1) * per * sizeof(float), &got), *R = S + (size_t)nc * per;
    if (!S)
        icl_out_of_memory("LoRA backward sums");
    memset(R, 0, per * sizeof(float));
    for (int c0 = 0; c0 < nb; c0 += DY_CHUNK) {
        int ce = nb - c0 < DY_CHUNK ? nb : c0 + DY_CHUNK;
#pragma omp parallel for schedule(static) if (2.0 * N * W * r >= LORA_PAR_MIN)
        for (int b = c0; b < ce; b++) {
            int i0 = b * RD_RB, nrow = N - i0 < RD_RB ? N - i0 : RD_RB;
            for (int j = 0; j < nrow; j += SK_RB1)
                skinny_rows(D, ldd, i0 + j, nrow - j < SK_RB1 ? nrow - j : SK_RB1, W, &st, 1);
            const float *Db = D + (size_t)i0 * ldd, *Pb = xa + (size_t)i0 * r;
            float *Sb = S + (size_t)(b - c0) * per;
            reduce_strips(Db, ldd, nrow, 0, ns, W, Pb, r, r, Sb, (long)rp * 16, 0);
        }
#pragma omp parallel for schedule(static) if ((double)(ce - c0) * W * r >= LORA_PAR_MIN)
        for (int s = 0; s < ns; s++) /* the running sums += the chunk's blocks' sums, in block order */
            for (int k = 0; k < r; k++) {
                float *rs = R + ((size_t)s * rp + k) * 16;
                v16 acc = ld16(rs);
                for (int b = c0; b < ce; b++)
                    acc += ld16(S + (size_t)(b - c0) * per + ((size_t)s * rp + k) * 16);
                memcpy(rs, &acc, sizeof acc);
            }
    }
    for (int s = 0; s < ns; s++) { /* dB += alpha (the running sums) */
        int w0 = 16 * s, nw = W - w0 < 16 ? W - w0 : 16;
        for (int k = 0; k < r; k++)
            for (int l = 0; l < nw; l++)
                dB[(size_t)(w0 + l) * r + k] += alpha * R[((size_t)s * rp + k) * 16 + l];
    }
    icl_scratch_give(S, got);
}

/* B^T [r, out] of an adapter's B [out, r], malloc'd. */
static float *lora_bt_new(const icl_lora *a)
{
    float *bt = xmalloc((size_t)a->r * a->out * sizeof(float));
    for (int j = 0; j < a->out; j++)
        for (int k = 0; k < a->r; k++)
            bt[(size_t)k * a->out + j] = a->B[(size_t)j * a->r + k];
    return bt;
}

/* lora_bt_new's B^T: a->Bt when icl_lora_pack made it (*own 0), else a
 * new one (*own 1: the caller frees it). */
static const float *lora_bt(const icl_lora *a, int *own)
{
    *own = a->Bt == NULL;
    return a->Bt ? a->Bt : lora_bt_new(a);
}

void icl_lora_pack(icl_lora *a)
{
    icl_lora_unpack(a);
    a->At = lora_at_new(a);
    a->Bt = lora_bt_new(a);
}

void icl_lora_unpack(icl_lora *a)
{
    free((void *)a->At);
    free((void *)a->Bt);
    a->At = a->Bt = NULL;
}

/* xa[N, r] = x[N, in] A^T */
static void lora_down(const icl_lora *a, float *xa, const float *x, long ldx, int N)
{
    int own;
    const float *q = lora_at(a, &own);
    skinny_term t = {q, a->r, xa, a->r, 1.0f};
    lora_skinny(x, ldx, N, a->in, &t, 1);
    if (own)
        free((void *)q);
}

/* Dropout of an adapter's input (linear.h): dst[i, j] = keep(i, j) src[i, j]
 * / (1 - p), or dst += that when acc (the backward's masked dx).  keep:
 * the top 32 bits of splitmix64's finalizer of key + (i in + j) golden
 * are at least p 2^32. */
static void lora_dropout(const icl_lora *a, float *dst, long ldd, const float *src, long lds, int N, int acc)
{
    uint64_t thr = (uint64_t)((double)a->dropout * 4294967296.0);
    float s = 1.0f / (1.0f - a->dropout);
    int in = a->in;
#pragma omp parallel for schedule(static) if ((long)N * in >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *d = dst + (long)i * ldd;
        const float *x = src + (long)i * lds;
        uint64_t base = (uint64_t)i * (uint64_t)in;
#pragma omp simd
        for (int j = 0; j < in; j++) {
            uint64_t z = a->key + (base + (uint64_t)j + 1) * 0x9e3779b97f4a7c15ull;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            float v = (z >> 32) >= thr ? x[j] * s : 0.0f;
            d[j] = acc ? d[j] + v : v;
        }
    }
}

/* ---------------------------------------------------------------- adapters folded into bf16 products
 *
 * A bf16 weight packed with kx = r_sum rows of room (icl_bf16_weight.kx,
 * model.c) takes its adapters into the base's product: the forward's
 * y = [x | xa_0 | xa_1 ...] [W^T; s_0 B_0^T; s_1 B_1^T ...] (each B_i^T
 * in its adapter's output columns, zero elsewhere) and the backward's
 * dx = [dy | t_0 | t_1 ...] [W; A_0; A_1 ...] (t_i = s_i dy_i B_i) are one
 * icl_bf16_gemm_packed_ext each: y and dx are read and written once, not
 * again for rank-r updates that cost little arithmetic and much memory
 * traffic.  Each sum then runs over the adapters' k after the base's, all
 * in float32, with xa, t and s B rounded to bf16 as the product's other
 * operands are (PEFT under autocast rounds them too).  The down products
 * (xa, t) and the gradients dA, dB are the float32 kernels above. */

/* 1 when l's weight type takes its adapters into its product (fwd: 1 the
 * forward's GEMM kernel, 2 its ROWS kernel, 0 the input gradient): a
 * lowrank kernel with room for r_sum more rows of K. */
static int folds(const icl_linear *l, int rsum, int fwd)
{
    const icl_weight_ops *k = icl_weight_kernels(l->w.type);
    return l->n_lora && k && k->lowrank && k->room && k->room(&l->w, fwd) >= rsum;
}

/* Columns off .. off+r-1 of cat [N, rsum] = src [N, r]. */
static void cat_ranks_one(float *cat, int rsum, const float *src, int r, size_t off, int N)
{
#pragma omp parallel for schedule(static) if ((long)N * r >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++)
        memcpy(cat + (size_t)i * rsum + off, src + (size_t)i * r, (size_t)r * sizeof(float));
}

/* cat[N, rsum] = the adapters' [N, r_i] blocks side by side (block i at
 * src + N off_i). */
static void cat_ranks(float *cat, const float *src, const icl_linear *l, int N, int rsum)
{
    size_t off = 0;
    for (int u = 0; u < l->n_lora; u++) {
        cat_ranks_one(cat, rsum, src + (size_t)N * off, l->lora[u].r, off, N);
        off += (size_t)l->lora[u].r;
    }
}

/* E [rsum, out]: row off_i + k, column n = s_i B_i[n - out_off_i, k]
 * inside adapter i's columns, else 0 (malloc'd). */
static float *fold_fwd_rows(const icl_linear *l, int rsum)
{
    int out = l->w.out;
    float *E = xcalloc((size_t)rsum * out, sizeof(float));
    size_t off = 0;
    for (int u = 0; u < l->n_lora; u++) {
        const icl_lora *a = &l->lora[u];
        for (int k = 0; k < a->r; k++)
            for (int j = 0; j < a->out; j++)
                E[(off + (size_t)k) * out + a->out_off + j] = a->scale * a->B[(size_t)j * a->r + k];
        off += (size_t)a->r;
    }
    return E;
}

/* E [rsum, in]: rows off_i .. off_i + r_i - 1 = A_i (malloc'd). */
static float *fold_bwd_rows(const icl_linear *l, int rsum)
{
    int in = l->w.in;
    float *E = xmalloc((size_t)rsum * in * sizeof(float));
    size_t off = 0;
    for (int u = 0; u < l->n_lora; u++) {
        memcpy(E + off * in, l->lora[u].A, (size_t)l->lora[u].r * in * sizeof(float));
        off += (size_t)l->lora[u].r;
    }
    return E;
}

void icl_linear_forward(const icl_linear *l, float *y, long ldy, const float *x, long ldx, int N, float beta,
                        icl_lin_kernel kernel, int nthreads, float *work)
{
    const icl_weight_ops *k = icl_weight_kernels(l->w.type);
    int din, rsum, rmax = lora_rmax(l, &din, &rsum);
    int bw = folds(l, rsum, kernel == ICL_LIN_ROWS ? 2 : 1);
    if (bw) {
    } else if (kernel == ICL_LIN_ROWS && k->rows_forward) {
        k->rows_forward(&l->w, l->b, y, ldy, x, ldx, N, beta, nthreads);
    } else {
        k->gemm_forward(&l->w, y, ldy, x, ldx, N, beta);
        if (l->b)
            add_bias(y, ldy, l->b, N, l->w.out);
    }
    float *xd = din ? work + (size_t)N * (rmax + rsum) : NULL; /* [N, in]: the dropped input */
    /* kept down products of the adapters without dropout: one pass over x */
    int shared = l->xa && l->n_lora <= 8;
    if (shared) {
        skinny_term st[8];
        int ns = 0, own[8];
        size_t o = 0;
        for (int i = 0; i < l->n_lora; i++) {
            const icl_lora *a = &l->lora[i];
            if (a->dropout <= 0) {
                st[ns] = (skinny_term){lora_at(a, &own[ns]), a->r, l->xa + (size_t)N * o, a->r, 1.0f};
                ns++;
            }
            o += (size_t)a->r;
        }
        if (ns)
            lora_skinny(x, ldx, N, l->w.in, st, ns);
        for (int u = 0; u < ns; u++)
            if (own[u])
                free((void *)st[u].Q);
    }
    size_t off = 0;
    for (int i = 0; i < l->n_lora; i++) {
        const icl_lora *a = &l->lora[i];
        const float *xs = x;
        long lds = ldx;
        float *xa = l->xa ? l->xa + (size_t)N * off : work; /* [N, r]: kept for the backward when xa */
        off += (size_t)a->r;
        if (a->dropout > 0) {
            lora_dropout(a, xd, a->in, x, ldx, N, 0);
            xs = xd;
            lds = a->in;
        }
        /* y[:, off:off+out] += scale * xa B^T, B [out, r] */
        if (!shared || a->dropout > 0)
            lora_down(a, xa, xs, lds, N);
        if (bw) { /* folded below: xa into its columns of cat */
            if (!l->xa)
                cat_ranks_one(work + (size_t)N * (rmax + rsum + din), rsum, xa, a->r, off - a->r, N);
            continue;
        }
        int own;
        const float *bt = lora_bt(a, &own);
        lora_rows_expand(y + a->out_off, ldy, xa, a->r, N, bt, a->out, a->r, a->out, a->scale, 1);
        if (own)
            free((void *)bt);
    }
    if (bw) { /* y = [x | xa...] [W^T; s B^T...] (+ beta y) */
        float *cat = work + (size_t)N * (rmax + rsum + din);
        if (l->xa)
            cat_ranks(cat, l->xa, l, N, rsum);
        float *E = fold_fwd_rows(l, rsum);
        k->lowrank(&l->w, 1, y, ldy, x, ldx, N, beta, cat, rsum, E);
        free(E);
        if (l->b)
            add_bias(y, ldy, l->b, N, l->w.out);
    }
}

/* The adapters' part of icl_linear_backward.  Work: xa [N, r_max] (when
 * l->xa is NULL), t [N, r_sum] (every adapter's scale dy B, at the same
 * offsets as l->xa), then the dropped input [N, din].  Without dropout the
 * adapters' input gradients are added to dx in one pass, adapter by
 * adapter in order (lora_rows_expand_add); with it, each in turn. */
static void lora_backward(const icl_linear *l, float *dx, long lddx, float beta_dx, const float *dy, long lddy,
                          const float *x, long ldx, int N, float *work, int bw)
{
    int din, rsum, rmax = lora_rmax(l, &din, &rsum);
    float *tall = work + (size_t)N * rmax, *xd = din ? tall + (size_t)N * rsum : NULL;
    lora_term tm[8];
    reduce_term rt[8];
    int nterm = 0, nrt = 0, fuse = !din && l->n_lora <= 8 && !bw;
    size_t off = 0;
    for (int i = 0; i < l->n_lora; i++) {
        const icl_lora *a = &l->lora[i];
        const float *dys = dy + a->out_off, *xs = x;
        long lds = ldx;
        float *xa = l->xa ? l->xa + (size_t)N * off : work, *t = tall + (size_t)N * off;
        off += (size_t)a->r;
        if (a->dropout > 0 && (a->dA || a->dB)) {
            lora_dropout(a, xd, a->in, x, ldx, N, 0);
            xs = xd;
            lds = a->in;
        }
        int want_t = a->dA || dx;
        if (a->dB && !l->xa)
            lora_down(a, xa, xs, lds, N);
        if (a->dB && !want_t) { /* dB [out, r] += scale * dys^T xa */
            reduce_term rd = {xa, a->r, a->r, a->dB, a->scale, 1};
            lora_reduce(dys, lddy, N, a->out, &rd, 1);
        }
        if (!want_t)
            continue;
        /* t [N, r] = scale * dys B (and dB in the same pass over dys) */
        int own;
        const float *bq = lora_bq(a, &own);
        if (a->dB) {
            lora_dy(dys, lddy, N, a->out, xa, a->r, bq, a->scale, a->dB, t, a->r);
        } else {
            skinny_term st = {bq, a->r, t, a->r, a->scale};
            lora_skinny(dys, lddy, N, a->out, &st, 1);
        }
        if (own)
            free((void *)bq);
        if (a->dA) { /* dA [r, in] += t^T x: with x shared, after the loop in one pass */
            reduce_term rd = {t, a->r, a->r, a->dA, 1.0f, 0};
            if (a->dropout > 0 || nrt == 8)
                lora_reduce(xs, lds, N, a->in, &rd, 1);
            else
                rt[nrt++] = rd;
        }
        if (dx && bw) { /* folded below */
        } else if (dx && fuse) { /* dx += t A, below */
            tm[nterm++] = (lora_term){t, a->r, a->A, a->in, a->r, 1.0f};
        } else if (dx && a->dropout > 0) { /* dx += mask (t A) / (1 - p) */
            lora_rows_expand(xd, a->in, t, a->r, N, a->A, a->in, a->r, a->in, 1.0f, 0);
            lora_dropout(a, dx, lddx, xd, a->in, N, 1);
        } else if (dx) { /* dx += t A */
            lora_rows_expand(dx, lddx, t, a->r, N, a->A, a->in, a->r, a->in, 1.0f, 1);
        }
    }
    if (nrt)
        lora_reduce(x, ldx, N, l->w.in, rt, nrt);
    if (nterm)
        lora_rows_expand_add(dx, lddx, N, l->w.in, tm, nterm);
    if (dx && bw) { /* dx = [dy | t...] [W; A...] + beta_dx dx */
        float *cat = work + (size_t)N * (rmax + rsum + din);
        cat_ranks(cat, tall, l, N, rsum);
        float *E = fold_bwd_rows(l, rsum);
        icl_weight_kernels(l->w.type)->lowrank(&l->w, 0, dx, lddx, dy, lddy, N, beta_dx, cat, rsum, E);
        free(E);
    }
}

void icl_linear_backward(const icl_linear *l, float *dx, long lddx, float beta_dx, const float *dy, long lddy,
                         const float *x, long ldx, int N, float *work)
{
    const icl_weight_ops *k = icl_weight_kernels(l->w.type);
    int din, rsum;
    lora_rmax(l, &din, &rsum);
    /* the adapters' input gradients folded into the base's (no dropout: its
     * mask applies to their part alone) */
    int bw = dx && !din && folds(l, rsum, 0);
    if (dx && !bw)
        k->input_grad(&l->w, dx, lddx, beta_dx, dy, lddy, N);
    if (l->w.grad)
        k->weight_grad(&l->w, dy, lddy, x, ldx, N);
    if (l->db)
        colsum_acc(l->db, dy, lddy, N, l->w.out);
    if (l->n_lora)
        lora_backward(l, dx, lddx, beta_dx, dy, lddy, x, ldx, N, work, bw);
}
