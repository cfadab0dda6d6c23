/* ops.c - transformer kernels: BLIS GEMM, fused attention, vectorised C with OpenMP. */
#include "ops.h"

#include <blis.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "util.h"

/* Loops over fewer elements than this run on one thread: a parallel region
 * costs more than the work (decoding one token, tiny models). */
#define ICL_PAR_MIN 32768

void icl_gemm(int m, int n, int k, float alpha, const float *a, long rsa, long csa, const float *b, long rsb,
              long csb, float beta, float *c, long rsc, long csc, int nthreads)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) { /* C = beta C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                c[i * rsc + j * csc] = beta == 0 ? 0 : beta * c[i * rsc + j * csc];
        return;
    }
    float al = alpha, be = beta;
    if (nthreads == 1 || (double)m * n * k < 262144.0) { /* tiny: threads cost more than they give */
        rntm_t rntm = BLIS_RNTM_INITIALIZER;
        bli_rntm_set_num_threads(1, &rntm);
        if (n >= ICL_GEMM_LONG || k >= ICL_GEMM_LONG)
            bli_rntm_disable_l3_sup(&rntm);
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &al, (float *)a, rsa, csa, (float *)b, rsb, csb,
                     &be, c, rsc, csc, NULL, &rntm);
    } else if (n >= ICL_GEMM_LONG || k >= ICL_GEMM_LONG) {
        rntm_t rntm;
        bli_rntm_init_from_global(&rntm);
        bli_rntm_disable_l3_sup(&rntm);
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &al, (float *)a, rsa, csa, (float *)b, rsb, csb,
                     &be, c, rsc, csc, NULL, &rntm);
    } else {
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &al, (float *)a, rsa, csa, (float *)b, rsb, csb, &be,
                  c, rsc, csc);
    }
}

/* ---------------------------------------------------------------- norms */

/* y[N,C] = w * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps)  (LlamaRMSNorm) */
void icl_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C;
        float *yi = y + (long)i * C;
        float ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++)
            ss += xi[c] * xi[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        rstd[i] = r;
#pragma omp simd
        for (int c = 0; c < C; c++)
            yi[c] = w[c] * (xi[c] * r);
    }
}

/* xhat = x r; dxhat = dy w; dx = r (dxhat - xhat mean(dxhat xhat)); dw += sum dy xhat */
void icl_rmsnorm_backward(float *dx, float beta, float *dw, const float *dy, const float *x, const float *w,
                          const float *rstd, int N, int C)
{
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C, *dyi = dy + (long)i * C;
        float *dxi = dx + (long)i * C;
        float r = rstd[i], dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++)
            dot += dyi[c] * w[c] * xi[c];
        float k = dot * r * r / (float)C;
        if (beta == 0) {
#pragma omp simd
            for (int c = 0; c < C; c++)
                dxi[c] = r * (dyi[c] * w[c] - xi[c] * k);
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++)
                dxi[c] += r * (dyi[c] * w[c] - xi[c] * k);
        }
    }
    if (!dw)
        return;
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int c0 = 0; c0 < C; c0 += 64) {
        int nb = C - c0 < 64 ? C - c0 : 64;
        float acc[64] = {0};
        for (int i = 0; i < N; i++) {
            const float *xi = x + (long)i * C + c0, *dyi = dy + (long)i * C + c0;
            float r = rstd[i];
#pragma omp simd
            for (int c = 0; c < nb; c++)
                acc[c] += dyi[c] * (xi[c] * r);
        }
        for (int c = 0; c < nb; c++)
            dw[c0 + c] += acc[c];
    }
}

/* y = (x - mean) rstd w + b  (torch.nn.LayerNorm, biased variance) */
void icl_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                           int C, float eps)
{
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C;
        float *yi = y + (long)i * C;
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++)
            s += xi[c];
        float m = s / (float)C, v = 0;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++)
            v += (xi[c] - m) * (xi[c] - m);
        float r = 1.0f / sqrtf(v / (float)C + eps);
        mean[i] = m;
        rstd[i] = r;
#pragma omp simd
        for (int c = 0; c < C; c++)
            yi[c] = (xi[c] - m) * r * w[c] + b[c];
    }
}

/* dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy w */
void icl_layernorm_backward(float *dx, float beta, float *dw, float *db, const float *dy, const float *x,
                            const float *w, const float *mean, const float *rstd, int N, int C)
{
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C, *dyi = dy + (long)i * C;
        float *dxi = dx + (long)i * C;
        float m = mean[i], r = rstd[i], s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (int c = 0; c < C; c++) {
            float g = dyi[c] * w[c];
            s1 += g;
            s2 += g * (xi[c] - m) * r;
        }
        s1 /= (float)C;
        s2 /= (float)C;
        if (beta == 0) {
#pragma omp simd
            for (int c = 0; c < C; c++)
                dxi[c] = r * (dyi[c] * w[c] - s1 - (xi[c] - m) * r * s2);
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++)
                dxi[c] += r * (dyi[c] * w[c] - s1 - (xi[c] - m) * r * s2);
        }
    }
    if (!dw) /* frozen */
        return;
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int c0 = 0; c0 < C; c0 += 64) {
        int nb = C - c0 < 64 ? C - c0 : 64;
        float aw[64] = {0}, ab[64] = {0};
        for (int i = 0; i < N; i++) {
            const float *xi = x + (long)i * C + c0, *dyi = dy + (long)i * C + c0;
            float m = mean[i], r = rstd[i];
#pragma omp simd
            for (int c = 0; c < nb; c++) {
                aw[c] += dyi[c] * (xi[c] - m) * r;
                ab[c] += dyi[c];
            }
        }
        for (int c = 0; c < nb; c++) {
            dw[c0 + c] += aw[c];
            db[c0 + c] += ab[c];
        }
    }
}

/* ---------------------------------------------------------------- rotary */

/* HF _compute_default_rope_parameters / _compute_llama3_parameters */
void icl_rope_inv_freq(float *inv_freq, int hd, const icl_rope_params *p)
{
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)hd;
        inv_freq[i] = 1.0f / powf((float)p->theta, e);
    }
    if (!p->llama3)
        return;
    double old = p->original_max_pos, lw = old / p->low_freq_factor, hw = old / p->high_freq_factor;
    for (int i = 0; i < half; i++) {
        double f = inv_freq[i], wl = 2 * M_PI / f, nf;
        if (wl < hw) {
            nf = f;
        } else if (wl > lw) {
            nf = f / p->factor;
        } else {
            double sm = (old / wl - p->low_freq_factor) / (p->high_freq_factor - p->low_freq_factor);
            nf = (1 - sm) * f / p->factor + sm * f;
        }
        inv_freq[i] = (float)nf;
    }
}

void icl_rope_tables(float *cs, float *sn, const int32_t *pos, int N, int hd, const icl_rope_params *p)
{
    int half = hd / 2;
    float inv[half > 0 ? half : 1];
    icl_rope_inv_freq(inv, hd, p);
#pragma omp parallel for schedule(static) if ((long)N * half >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++)
        for (int j = 0; j < half; j++) {
            float a = (float)pos[i] * inv[j]; /* float32 product, as HF */
            cs[(long)i * half + j] = (float)cos((double)a);
            sn[(long)i * half + j] = (float)sin((double)a);
        }
}

void icl_rope_apply(float *x, long ld, int N, int nh, int hd, const float *cs, const float *sn, int backward)
{
    int half = hd / 2;
    float sg = backward ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static) if ((long)N * nh * hd >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *c = cs + (long)i * half, *s = sn + (long)i * half;
        for (int h = 0; h < nh; h++) {
            float *x1 = x + (long)i * ld + (long)h * hd, *x2 = x1 + half;
#pragma omp simd
            for (int j = 0; j < half; j++) {
                float a = x1[j], b = x2[j], sj = sg * s[j];
                x1[j] = a * c[j] - b * sj;
                x2[j] = b * c[j] + a * sj;
            }
        }
    }
}

/* ---------------------------------------------------------------- attention */

static inline int allowed(const int32_t *doc, int t, int s) { return s <= t && (!doc || doc[s] == doc[t]); }

/* The fused kernels (FlashAttention-2's tiling, Dao 2023, with its
 * recomputation of P in the backward from q, k and the saved lse).  Queries
 * go in tiles of ATT_RB rows of one head; tile [r0, r1) only needs keys
 * [k0, r1): r1 by the causal mask, k0 = the first key that belongs to a
 * document of the tile, so attention costs about sum(doc_len^2) instead of
 * T^2.  A tile's scores over all its keys (at most ATT_RB x T floats: 16 KB
 * at T = 256) stay in a per-thread buffer, so the softmax is the exact
 * two-pass one (row maximum, then exponentials) rather than FA-2's online
 * rescaling; every product is a register-blocked kernel below.  Scores are
 * computed over whole 16-key chunks [c0, c1) (c0 = k0 rounded down, c1 =
 * r1 rounded up, against a transposed, zero-padded copy of k or v), the
 * masked ones set to 0 after the exponential; the products with v, k and
 * q run over [k0, r1) with the zeros in (adding 0 changes no sum), so the
 * key-range loops and the per-key tests give the same bits. */
#define ATT_RB 16
#define ATT_KW 16 /* key chunk: one 16-float vector */

/* k0 of every block of every sequence: [B, ceil(T / ATT_RB)], caller frees. */
static int *block_k0_table(const int32_t *doc, int B, int T)
{
    int nb = (T + ATT_RB - 1) / ATT_RB;
    int *k0 = xcalloc((size_t)B * nb, sizeof(int));
    if (!doc)
        return k0;
    for (int b = 0; b < B; b++) {
        const int32_t *d = doc + (long)b * T;
        for (int j = 0; j < nb; j++) {
            int r0 = j * ATT_RB, r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, nd = 0, ids[8];
            for (int t = r0; t < r1 && nd <= 8; t++) { /* the block's distinct documents */
                int seen = 0;
                for (int i = 0; i < nd && i < 8; i++)
                    seen |= ids[i] == d[t];
                if (!seen) {
                    if (nd < 8)
                        ids[nd] = d[t];
                    nd++;
                }
            }
            int s = 0;
            if (nd <= 8) /* first key of any of them (else keep 0) */
                for (s = 0; s < r0; s++) {
                    int hit = 0;
                    for (int i = 0; i < nd; i++)
                        hit |= ids[i] == d[s];
                    if (hit)
                        break;
                }
            k0[(long)b * nb + j] = s;
        }
    }
    return k0;
}

/* The first key each query may attend: lo[b * T + t] = the start of the run
 * of equal doc ids that holds t, when every row's documents are contiguous
 * runs (each id in one run, as packing lays them out): then allowed(doc, t,
 * s) holds exactly for lo <= s <= t and the softmax loops run over that
 * range without a test per key (vectorised).  NULL (caller frees otherwise)
 * when doc is NULL (lo = 0: every s <= t) or some id comes back after
 * another run: the loops then test allowed() per key. */
static int *doc_run_starts(const int32_t *doc, int B, int T)
{
    if (!doc)
        return NULL;
    int *lo = xmalloc((size_t)B * T * sizeof(int));
    for (int b = 0; b < B; b++) {
        const int32_t *d = doc + (long)b * T;
        int *l = lo + (long)b * T;
        int32_t top = T > 0 ? d[0] : 0; /* the largest id of the runs so far */
        for (int t = 0, s = 0; t < T; t++) {
            if (t > 0 && d[t] != d[t - 1]) { /* a new run: its id must not occur before it */
                if (d[t] > top) /* packing's increasing ids: nothing to search */
                    top = d[t];
                else
                    for (int u = 0; u < t; u++) /* once per row for the padding's -1 */
                        if (d[u] == d[t]) {
                            free(lo);
                            return NULL;
                        }
                s = t;
            }
            l[t] = s;
        }
    }
    return lo;
}

/* The AVX-512 tiles are compiled in every x86-64 build (a target pragma,
 * as qdot.c) and chosen at run time when the CPU has AVX-512F, so the
 * generic build (PORTABLE=1) runs them too. */
#if defined(__x86_64__) && defined(__GNUC__)
#define ATT_X86 1
#include <immintrin.h>
#else
#define ATT_X86 0
#endif
#if ATT_X86 && defined(__linux__)
#define ATT_AMX 1 /* bf16 operands on AMX tiles or AVX512-BF16 (icl_attention_bf16_kernels says which run) */
#include <stdint.h>
#include "bf16.h"
#include "x86tiles.h"
#else
#define ATT_AMX 0
#endif

static int att_cpu = -1, att_off; /* att_cpu: AVX-512F here (-1: not asked yet); att_off: set_simd(0) */

static int att_avx512(void)
{
    int n = __atomic_load_n(&att_cpu, __ATOMIC_RELAXED);
    if (n < 0) {
#if ATT_X86
        __builtin_cpu_init();
        n = __builtin_cpu_supports("avx512f") != 0;
#else
        n = 0;
#endif
        __atomic_store_n(&att_cpu, n, __ATOMIC_RELAXED);
    }
    return n && !att_off;
}

int icl_attention_set_simd(int on)
{
    int was = att_avx512();
    if (on >= 0)
        att_off = !on;
    return was;
}

/* The three products, each element a chain of multiply-adds in a fixed
 * order (the generic C loops and the AVX-512 tiles do the same per-element
 * arithmetic; gcc contracts a * b + c to an FMA where the target has one).
 *
 * att_scores: S[i][s] = scale * sum_j a[i][j] bt[j][s] for i < nr, s in
 * [c0, c1) (multiples of ATT_KW; S column s at S + i lds + s - c0);
 * a [nr, hd] row stride lda, bt [hd, >= c1] row stride ldb. */
static void att_scores_c(float *S, long lds, const float *a, long lda, const float *bt, long ldb, int nr, int c0,
                         int c1, int hd, float scale)
{
    for (int i = 0; i < nr; i++) {
        float *Si = S + (long)i * lds - c0;
        for (int s = c0; s < c1; s++)
            Si[s] = 0;
        for (int j = 0; j < hd; j++) {
            float x = a[(long)i * lda + j];
            const float *br = bt + (long)j * ldb;
#pragma omp simd
            for (int s = c0; s < c1; s++)
                Si[s] += x * br[s];
        }
#pragma omp simd
        for (int s = c0; s < c1; s++)
            Si[s] *= scale;
    }
}

/* att_rows: O[i][j] = scale * sum_{s < n} P[i][s] b[s][j], i < nr, j < hd;
 * P row stride ldp, b [n, hd] row stride ldb, O row stride ldo.
 * att_cols: O[s][j] += scale * sum_{i < nr} P[i][s] a[i][j] for s < n, j <
 * hd (the transposed product: dK += dS^T q, dV += P^T dO).
 *
 * att_prod_c, the generic loops of both: C[r][j] = scale * sum_{k < K}
 * A(r, k) B[k][j] (add 0) or C[r][j] += that (add 1), r < R, j < hd, with
 * A(r, k) = A[r ars + k aks] (att_rows: ars ldp, aks 1; att_cols: P^T, ars
 * 1, aks ldp), B row stride ldb, C row stride ldc.  Each sum runs over k in
 * order from zero (as att_tile's FMA chains). */
static void att_prod_c(float *C, long ldc, const float *A, long ars, long aks, const float *B, long ldb, int R, int K,
                       int hd, float scale, int add)
{
    float acc[hd];
    for (int r = 0; r < R; r++) {
        for (int j = 0; j < hd; j++)
            acc[j] = 0;
        for (int k = 0; k < K; k++) {
            float p = A[(long)r * ars + (long)k * aks];
            const float *br = B + (long)k * ldb;
#pragma omp simd
            for (int j = 0; j < hd; j++)
                acc[j] += p * br[j];
        }
        float *Cr = C + (long)r * ldc;
        if (add) {
#pragma omp simd
            for (int j = 0; j < hd; j++)
                Cr[j] += acc[j] * scale;
        } else {
#pragma omp simd
            for (int j = 0; j < hd; j++)
                Cr[j] = acc[j] * scale;
        }
    }
}

#if ATT_X86
#ifdef __clang__ /* clang ignores GCC's target pragma (clang 14: always_inline errors) */
#pragma clang attribute push(__attribute__((target("avx512f,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,fma")
#endif
#define AI static inline __attribute__((always_inline))
/* A loaded vector kept in a register: without it gcc folds the load into
 * each multiply-add that uses it (one 64-byte load per FMA, load-bound). */
AI __m512 att_reg(__m512 x)
{
    __asm__("" : "+v"(x));
    return x;
}
#define ATT_REG(x) att_reg(x)

/* The register tile behind all three products, written once:
 *
 *   add 0:  C[r][16 w + l]  = scale * sum_{k < K} A(r, k) B[k][16 w + l]
 *   add 1:  C[r][16 w + l] += scale * sum_{k < K} A(r, k) B[k][16 w + l]
 *
 * for r < R (<= 8), w < W (<= 4), R W <= 16, l < 16; A(r, k) = A[r ars +
 * k aks] (ars the row stride and aks 1: A as stored; ars 1 and aks the row
 * stride: A transposed); B [K, >= 16 W] row stride ldb; C row stride ldc.
 * Each element's sum is one FMA chain over k = 0, 1, ..., K - 1 from zero,
 * then times scale: rounded and stored (add 0), or one FMA into C (add 1);
 * the same arithmetic as the generic loops above (att_scores_c,
 * att_prod_c).  The R x W accumulators and the W vectors of B's row k fit
 * the 32 zmm registers.
 * R, W and add must be constants at each call (always_inline and the
 * switches below): gcc then unrolls the r and w loops and keeps acc in
 * registers; with variable bounds it would live in memory.
 *
 * The shapes used: att_scores 8 x 2 (8 rows of q or dO against 32 keys of
 * k^T or v^T, K = hd), att_rows 4 x 4 (4 rows of P against 64 columns of v
 * or k, K = keys), att_cols 4 x 4 transposed with add (4 keys' rows of dk or
 * dv from P^T and 64 columns of q or dO, K = query rows). */
AI void att_tile(int R, int W, int add, float *C, long ldc, const float *A, long ars, long aks, const float *B,
                 long ldb, int K, float scale)
{
    __m512 acc[8][4];
    for (int r = 0; r < R; r++)
        for (int w = 0; w < W; w++)
            acc[r][w] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m512 bv[4];
        for (int w = 0; w < W; w++)
            bv[w] = ATT_REG(_mm512_loadu_ps(B + (long)k * ldb + 16 * w));
        for (int r = 0; r < R; r++) {
            __m512 x = _mm512_set1_ps(A[(long)r * ars + (long)k * aks]);
            for (int w = 0; w < W; w++)
                acc[r][w] = _mm512_fmadd_ps(x, bv[w], acc[r][w]);
        }
    }
    __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++)
        for (int w = 0; w < W; w++) {
            float *c = C + (long)r * ldc + 16 * w;
            __m512 y = add ? _mm512_fmadd_ps(acc[r][w], sc, _mm512_loadu_ps(c)) : _mm512_mul_ps(acc[r][w], sc);
            _mm512_storeu_ps(c, y);
        }
}

static void att_scores_v(float *S, long lds, const float *a, long lda, const float *bt, long ldb, int nr, int c0,
                         int c1, int hd, float scale)
{
    for (int i0 = 0; i0 < nr; i0 += 8) {
        int R = nr - i0 < 8 ? nr - i0 : 8;
        const float *ai = a + (long)i0 * lda;
        for (int s0 = c0; s0 < c1; s0 += 32) {
            int W = c1 - s0 >= 32 ? 2 : 1;
            float *Sp = S + (long)i0 * lds + (s0 - c0);
            const float *bp = bt + s0;
#define SC(r, w) att_tile(r, w, 0, Sp, lds, ai, lda, 1, bp, ldb, hd, scale)
            switch (R * 2 + W - 1) {
            case 2: SC(1, 1); break;
            case 3: SC(1, 2); break;
            case 4: SC(2, 1); break;
            case 5: SC(2, 2); break;
            case 6: SC(3, 1); break;
            case 7: SC(3, 2); break;
            case 8: SC(4, 1); break;
            case 9: SC(4, 2); break;
            case 10: SC(5, 1); break;
            case 11: SC(5, 2); break;
            case 12: SC(6, 1); break;
            case 13: SC(6, 2); break;
            case 14: SC(7, 1); break;
            case 15: SC(7, 2); break;
            case 16: SC(8, 1); break;
            default: SC(8, 2); break;
            }
#undef SC
        }
    }
}

/* F(R, W) for the 4 x 4 tiles, R in 1..4 and W in 1..4 constants */
#define RW_CASES(F)                                                                                                   \
    switch (R * 4 + W - 1) {                                                                                          \
    case 4: F(1, 1); break;                                                                                           \
    case 5: F(1, 2); break;                                                                                           \
    case 6: F(1, 3); break;                                                                                           \
    case 7: F(1, 4); break;                                                                                           \
    case 8: F(2, 1); break;                                                                                           \
    case 9: F(2, 2); break;                                                                                           \
    case 10: F(2, 3); break;                                                                                          \
    case 11: F(2, 4); break;                                                                                          \
    case 12: F(3, 1); break;                                                                                          \
    case 13: F(3, 2); break;                                                                                          \
    case 14: F(3, 3); break;                                                                                          \
    case 15: F(3, 4); break;                                                                                          \
    case 16: F(4, 1); break;                                                                                          \
    case 17: F(4, 2); break;                                                                                          \
    case 18: F(4, 3); break;                                                                                          \
    default: F(4, 4); break;                                                                                          \
    }

static void att_rows_v(float *O, long ldo, const float *P, long ldp, const float *b, long ldb, int nr, int n, int hd,
                       float scale)
{
    for (int i0 = 0; i0 < nr; i0 += 4) {
        int R = nr - i0 < 4 ? nr - i0 : 4;
        for (int j0 = 0; j0 < hd; j0 += 64) {
            int W = (hd - j0) / 16 < 4 ? (hd - j0) / 16 : 4;
#define RW(r, w) att_tile(r, w, 0, O + (long)i0 * ldo + j0, ldo, P + (long)i0 * ldp, ldp, 1, b + j0, ldb, n, scale)
            RW_CASES(RW)
#undef RW
        }
    }
}

static void att_cols_v(float *O, long ldo, const float *P, long ldp, const float *a, long lda, int nr, int n, int hd,
                       float scale)
{
    for (int s0 = 0; s0 < n; s0 += 4) {
        int R = n - s0 < 4 ? n - s0 : 4;
        for (int j0 = 0; j0 < hd; j0 += 64) {
            int W = (hd - j0) / 16 < 4 ? (hd - j0) / 16 : 4;
#define CL(r, w) att_tile(r, w, 1, O + (long)s0 * ldo + j0, ldo, P + s0, 1, ldp, a + j0, lda, nr, scale)
            RW_CASES(CL)
#undef CL
        }
    }
}
#undef RW_CASES
#undef AI
#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

static void att_scores(float *S, long lds, const float *a, long lda, const float *bt, long ldb, int nr, int c0, int c1,
                       int hd, float scale)
{
#if ATT_X86
    if (att_avx512()) {
        att_scores_v(S, lds, a, lda, bt, ldb, nr, c0, c1, hd, scale);
        return;
    }
#endif
    att_scores_c(S, lds, a, lda, bt, ldb, nr, c0, c1, hd, scale);
}

static void att_rows(float *O, long ldo, const float *P, long ldp, const float *b, long ldb, int nr, int n, int hd,
                     float scale)
{
#if ATT_X86
    if (att_avx512() && hd % 16 == 0) {
        att_rows_v(O, ldo, P, ldp, b, ldb, nr, n, hd, scale);
        return;
    }
#endif
    att_prod_c(O, ldo, P, ldp, 1, b, ldb, nr, n, hd, scale, 0);
}

static void att_cols(float *O, long ldo, const float *P, long ldp, const float *a, long lda, int nr, int n, int hd,
                     float scale)
{
#if ATT_X86
    if (att_avx512() && hd % 16 == 0) {
        att_cols_v(O, ldo, P, ldp, a, lda, nr, n, hd, scale);
        return;
    }
#endif
    att_prod_c(O, ldo, P, 1, ldp, a, lda, n, nr, hd, scale, 1);
}

/* xt [hd, Tp] = x[0:T]^T (x row stride ld), columns T..Tp-1 zero */
static void att_transpose(float *xt, long Tp, const float *x, long ld, int T, int hd)
{
    for (int s0 = 0; s0 < T; s0 += 16) {
        int n = T - s0 < 16 ? T - s0 : 16;
        for (int j = 0; j < hd; j++)
            for (int s = 0; s < n; s++)
                xt[(long)j * Tp + s0 + s] = x[(long)(s0 + s) * ld + j];
    }
    for (int j = 0; j < hd; j++)
        for (long s = T; s < Tp; s++)
            xt[(long)j * Tp + s] = 0;
}

/* The sum of r[c0:c1) (c1 - c0 a multiple of ATT_KW) in ATT_KW lanes, then
 * the lanes pairwise: the same bits in any build. */
static float att_sum(const float *r, int c0, int c1)
{
    float l[ATT_KW] = {0};
    for (int s = c0; s < c1; s += ATT_KW)
#pragma omp simd
        for (int i = 0; i < ATT_KW; i++)
            l[i] += r[s + i];
    for (int w = ATT_KW / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++)
            l[i] += l[i + w];
    return l[0];
}

/* sum_j a[j] b[j] in ATT_KW lanes (j mod ATT_KW), then the lanes pairwise. */
static float att_dot(const float *a, const float *b, int n)
{
    float l[ATT_KW] = {0};
    int j0 = 0;
    for (; j0 + ATT_KW <= n; j0 += ATT_KW)
#pragma omp simd
        for (int i = 0; i < ATT_KW; i++)
            l[i] += a[j0 + i] * b[j0 + i];
    for (int i = 0; j0 + i < n; i++)
        l[i] += a[j0 + i] * b[j0 + i];
    for (int w = ATT_KW / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++)
            l[i] += l[i + w];
    return l[0];
}

/* Row t's probabilities in place: r[s] (key s, s in [c0, c1)) holds the
 * scaled score; afterwards exp(score - sub) for the keys t attends, 0 for
 * the others.  sub = -INFINITY: the row maximum is found and subtracted
 * (forward; returned), else sub (the backward's lse). */
static float att_exp_row(float *r, int c0, int c1, int k0, int t, int lo, int ranged, const int32_t *d, float sub)
{
    if (ranged) {
        if (sub == -INFINITY) {
#pragma omp simd reduction(max : sub)
            for (int s = lo; s <= t; s++)
                sub = r[s] > sub ? r[s] : sub;
        }
        for (int s = c0; s < lo; s++)
            r[s] = 0;
#pragma omp simd
        for (int s = lo; s <= t; s++)
            r[s] = icl_expf(r[s] - sub);
        for (int s = t + 1; s < c1; s++)
            r[s] = 0;
    } else {
        if (sub == -INFINITY) {
            for (int s = k0; s <= t; s++)
                if (allowed(d, t, s) && r[s] > sub)
                    sub = r[s];
        }
        for (int s = c0; s < c1; s++)
            r[s] = s >= k0 && allowed(d, t, s) ? icl_expf(r[s] - sub) : 0.0f;
    }
    return sub;
}

/* ---- bf16 operands on AMX tiles, or on AVX512-BF16 where there is no AMX
 * (icl_attn_shape.bf16; the `--dtype bf16` training path, as PyTorch's
 * autocast runs scaled_dot_product_attention in bfloat16).  The same
 * tiling, masks, softmax (float32, att_exp_row) and float32 D = rowsum(dO
 * o) as above; the six products take bf16 operands (q, k, v, dO rounded as
 * read, P and dS rounded after the float32 softmax) with float32 sums on
 * TDPBF16PS, 32 k per instruction in k order from a zero tile (bf16.h
 * describes the unit's sums), or on vdpbf16ps, a pair per instruction in k
 * order (vdp_gemm).  Parallel over (b,
 * kv head), forward and backward: k and v are packed once for the group's
 * heads.  dk and dv are summed in float32 buffers per kv head, transposed
 * (dk^T += q^T dS, dv^T += dO^T P), over the group's heads and blocks of 64
 * queries in order, dk scaled at the end; S, dP and dq are one sum each,
 * times scale.  So the results do not depend on the thread count.
 * Operands, all rounded to bf16 (pairs of bf16 in uint32, the tiles' "VNNI"
 * rows, where a product's k runs over pairs):
 *   A of S, dP:  16 query rows of q, dO [16][hd] (K = hd);
 *   B of S, dP:  k, v by dim pairs, Xd[p][s] = (x[s][2p], x[s][2p+1]);
 *   A of O, dq:  16 rows of P, dS [16][kp], kp keys from c0 (zero-padded);
 *   B of O, dq:  v, k by key pairs, Xk[u][j] = (x[2u][j], x[2u+1][j]);
 *   A of dk^T, dv^T: q^T, dO^T of a block [hd][64] (K = the 64 queries);
 *   B of dk^T, dv^T: dS, P of a block by query pairs [32][keys].
 * Zero rows and columns pad every operand to whole tiles (padding adds
 * exact zeros), and key ranges start at multiples of 16. */
#if ATT_AMX
#define AMX_T __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16")))
#define ATT_QB 64 /* queries per block of the dk, dv products */

/* 16 floats -> 16 bf16 (vcvtneps2bf16, as icl_bf16_from_f32_row) */
AMX_T static inline __m256i att_bf(const float *x) { return (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x)); }

/* out[j][i] = in[i][j] for i < 16 n (rows of in, row stride ldi 32-bit
 * elements), j < 16 m (out row stride ldo); 32-bit elements */
AMX_T static void att_transpose32(uint32_t *out, long ldo, const uint32_t *in, long ldi, int n, int m)
{
    __m512i r[16];
    for (int bi = 0; bi < n; bi++)
        for (int bj = 0; bj < m; bj++) {
            for (int i = 0; i < 16; i++)
                r[i] = _mm512_loadu_si512(in + (long)(16 * bi + i) * ldi + 16 * bj);
            icl_tr16x16(r);
            for (int j = 0; j < 16; j++)
                _mm512_storeu_si512(out + (long)(16 * bj + j) * ldo + 16 * bi, r[j]);
        }
}

/* Rows of x (row stride ld, n < np of them, the rest zero) rounded, in pairs:
 * P[u][j] = (x[2u][j], x[2u+1][j]) for u < np / 2, j < hd (row stride hd) */
AMX_T static void att_pairs(uint32_t *P, const float *x, long ld, int n, int np, int hd)
{
    for (int u = 0; u < np / 2; u++)
        for (int j = 0; j < hd; j += 16) {
            __m512i a = 2 * u < n ? _mm512_cvtepu16_epi32(att_bf(x + (long)(2 * u) * ld + j)) : _mm512_setzero_si512();
            __m512i b = 2 * u + 1 < n ? _mm512_cvtepu16_epi32(att_bf(x + (long)(2 * u + 1) * ld + j))
                                      : _mm512_setzero_si512();
            _mm512_storeu_si512(P + (long)u * hd + j, _mm512_or_si512(a, _mm512_slli_epi32(b, 16)));
        }
}

/* Xd [hd/2][Tp] (dim pairs by key) from x [T, hd] (row stride ld), keys past T zero.  tmp: 16 hd bf16. */
AMX_T static void att_pack_dims(uint32_t *Xd, long Tp, const float *x, long ld, int T, int hd, uint16_t *tmp)
{
    for (int s0 = 0; s0 < Tp; s0 += 16) {
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < hd; j += 16)
                _mm256_storeu_si256((__m256i *)(tmp + (long)i * hd + j),
                                    s0 + i < T ? att_bf(x + (long)(s0 + i) * ld + j) : _mm256_setzero_si256());
        att_transpose32(Xd + s0, Tp, (const uint32_t *)tmp, hd / 2, 1, hd / 32);
    }
}

/* A [16][hd] bf16: rows of x (row stride ld), rows past nr zero */
AMX_T static void att_round_rows(uint16_t *A, const float *x, long ld, int nr, int hd)
{
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < hd; j += 16)
            _mm256_storeu_si256((__m256i *)(A + (long)i * hd + j),
                                i < nr ? att_bf(x + (long)i * ld + j) : _mm256_setzero_si256());
}

/* S[16][c1 - c0] (row stride lds floats) = scale * A Xd[:, c0:c1), A [16][hd] bf16 */
AMX_T static void att_amx_scores(float *S, long lds, const uint16_t *A, const uint32_t *Xd, long Tp, int c0, int c1,
                                 int hd, float scale)
{
    for (int s0 = c0; s0 < c1; s0 += 16) {
        _tile_zero(0);
        for (int kc = 0; kc < hd / 32; kc++) {
            _tile_loadd(4, A + kc * 32, hd * 2);
            _tile_loadd(5, Xd + (long)kc * 16 * Tp + s0, Tp * 4);
            _tile_dpbf16ps(0, 4, 5);
        }
        _tile_stored(0, S + (s0 - c0), lds * 4);
    }
    __m512 sc = _mm512_set1_ps(scale);
    for (int i = 0; i < 16; i++)
        for (int s = 0; s < c1 - c0; s += 16)
            _mm512_storeu_ps(S + (long)i * lds + s, _mm512_mul_ps(_mm512_loadu_ps(S + (long)i * lds + s), sc));
}

/* Pr [16][kp] bf16 = rows of P [16][n] (row stride ldp) rounded, zero to kp (n, kp multiples of 16) */
AMX_T static void att_round_tile(uint16_t *Pr, const float *P, long ldp, int n, int kp)
{
    for (int i = 0; i < 16; i++)
        for (int s = 0; s < kp; s += 16)
            _mm256_storeu_si256((__m256i *)(Pr + (long)i * kp + s),
                                s < n ? att_bf(P + (long)i * ldp + s) : _mm256_setzero_si256());
}

/* O[16][hd] (row stride ldo) = Pr Xk[keys c0 .. c0 + kp), Pr [16][kp] bf16 (kp a multiple of 32), Xk from key
 * pair c0 / 2 */
AMX_T static void att_amx_rows(float *O, long ldo, const uint16_t *Pr, int kp, const uint32_t *Xk, int c0, int hd)
{
    for (int j0 = 0; j0 < hd; j0 += 64) {
        int nw = (hd - j0) / 16 < 4 ? (hd - j0) / 16 : 4;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int k = 0; k < kp; k += 32) {
            const uint32_t *b = Xk + (long)(c0 + k) / 2 * hd + j0;
            _tile_loadd(4, Pr + k, kp * 2);
            _tile_loadd(5, b, hd * 4);
            _tile_dpbf16ps(0, 4, 5);
            if (nw > 1) {
                _tile_loadd(6, b + 16, hd * 4);
                _tile_dpbf16ps(1, 4, 6);
            }
            if (nw > 2) {
                _tile_loadd(7, b + 32, hd * 4);
                _tile_dpbf16ps(2, 4, 7);
            }
            if (nw > 3) {
                _tile_loadd(5, b + 48, hd * 4);
                _tile_dpbf16ps(3, 4, 5);
            }
        }
        _tile_stored(0, O + j0, ldo * 4);
        if (nw > 1)
            _tile_stored(1, O + j0 + 16, ldo * 4);
        if (nw > 2)
            _tile_stored(2, O + j0 + 32, ldo * 4);
        if (nw > 3)
            _tile_stored(3, O + j0 + 48, ldo * 4);
    }
}

/* CT[j][s] (row stride ldc floats; keys s < n16 from the block's first key) += AT[j][0:64] Bp[0:32][s]: AT [hd][64]
 * bf16 (a block's q^T or dO^T), Bp [32][ldb] pairs (its dS or P by query pairs) */
AMX_T static void att_amx_cols(float *CT, long ldc, const uint16_t *AT, const uint32_t *Bp, long ldb, int n16, int hd)
{
    for (int s0 = 0; s0 < n16; s0 += 16) {
        _tile_loadd(5, Bp + s0, ldb * 4);
        _tile_loadd(6, Bp + 16 * ldb + s0, ldb * 4);
        for (int j0 = 0; j0 < hd; j0 += 16) {
            _tile_loadd(0, CT + (long)j0 * ldc + s0, ldc * 4);
            _tile_loadd(4, AT + (long)j0 * 64, 128);
            _tile_dpbf16ps(0, 4, 5);
            _tile_loadd(7, AT + (long)j0 * 64 + 32, 128);
            _tile_dpbf16ps(0, 7, 6);
            _tile_stored(0, CT + (long)j0 * ldc + s0, ldc * 4);
        }
    }
}

/* Pairs of rows of a [16][n] tile (row stride ld, n a multiple of 16) into B [8][ldb] at column off: B[u][off + s]
 * = (a[2u][s], a[2u+1][s]) */
AMX_T static void att_tile_pairs(uint32_t *B, long ldb, long off, const float *a, long ld, int n)
{
    for (int u = 0; u < 8; u++)
        for (int s = 0; s < n; s += 16) {
            __m512i x = _mm512_cvtepu16_epi32(att_bf(a + (long)(2 * u) * ld + s));
            __m512i y = _mm512_cvtepu16_epi32(att_bf(a + (long)(2 * u + 1) * ld + s));
            _mm512_storeu_si512(B + (long)u * ldb + off + s, _mm512_or_si512(x, _mm512_slli_epi32(y, 16)));
        }
}

/* The same three products on AVX512-BF16 (vdpbf16ps), for CPUs with it
 * and without AMX (icl_bf16_native_active; Zen 4, say): the operands in the
 * layouts above, each output's sum from zero (or from C, att_amx_cols's
 * add) over the pairs in order, one vdpbf16ps per pair (bf16.h: the odd
 * product, then the even one, each rounded once; products of bf16 are
 * exact), then times scale.  Within a TDPBF16PS chunk the AMX unit sums
 * in another order (bf16.h), so the two paths agree to float32's
 * summation error, not bit for bit; each is independent of the thread
 * count.  Registers: R x W accumulators of 16 floats (R <= 6 rows of A, W
 * <= 4 vectors of 16 columns; constants at each call, as att_tile), the W
 * vectors of B's pair row and a broadcast pair of A: 29 of the 32. */
#define VDP_T __attribute__((target("avx512f,avx512bw,avx512bf16")))

VDP_T static inline __attribute__((always_inline)) void vdp_tile(int R, int W, int add, float *C, long ldc,
                                                                 const uint16_t *A, long lda, const uint32_t *B,
                                                                 long ldb, int np, float scale)
{
    __m512 acc[6][4];
    for (int r = 0; r < R; r++)
        for (int w = 0; w < W; w++)
            acc[r][w] = add ? _mm512_loadu_ps(C + (long)r * ldc + 16 * w) : _mm512_setzero_ps();
    for (int p = 0; p < np; p++) {
        __m512i bv[4];
        for (int w = 0; w < W; w++)
            bv[w] = _mm512_loadu_si512(B + (long)p * ldb + 16 * w);
        for (int r = 0; r < R; r++) {
            int32_t x;
            memcpy(&x, A + (long)r * lda + 2 * p, 4);
            __m512bh a = (__m512bh)_mm512_set1_epi32(x);
            for (int w = 0; w < W; w++)
                acc[r][w] = _mm512_dpbf16_ps(acc[r][w], a, (__m512bh)bv[w]);
        }
    }
    __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++)
        for (int w = 0; w < W; w++)
            _mm512_storeu_ps(C + (long)r * ldc + 16 * w, scale != 1.0f ? _mm512_mul_ps(acc[r][w], sc) : acc[r][w]);
}

/* C[i][j] = scale * sum_{p < np} A(i, p) . B[p][j] (add 0), or C[i][j] +=
 * the sum (add 1, scale 1), for i < M, j < N (a multiple of 16): A [M][2
 * np] bf16 (row stride lda bf16; A(i, p) its pair p), B [np][N] pairs (row
 * stride ldb). */
VDP_T static void vdp_gemm(float *C, long ldc, const uint16_t *A, long lda, const uint32_t *B, long ldb, int M, int N,
                           int np, int add, float scale)
{
    for (int j0 = 0; j0 + 16 <= N; j0 += 64) { /* W >= 1: N a multiple of 16, as every caller's */
        int W = (N - j0) / 16 < 4 ? (N - j0) / 16 : 4;
        for (int i0 = 0; i0 < M; i0 += 6) {
            int R = M - i0 < 6 ? M - i0 : 6;
            float *c = C + (long)i0 * ldc + j0;
            const uint16_t *a = A + (long)i0 * lda;
            const uint32_t *b = B + j0;
#define VT(r, w)                                                                                                      \
    case r * 4 + w - 1:                                                                                               \
        if (add)                                                                                                      \
            vdp_tile(r, w, 1, c, ldc, a, lda, b, ldb, np, 1.0f);                                                      \
        else                                                                                                          \
            vdp_tile(r, w, 0, c, ldc, a, lda, b, ldb, np, scale);                                                     \
        break;
#define VT4(r) VT(r, 1) VT(r, 2) VT(r, 3) VT(r, 4)
            switch (R * 4 + W - 1) {
                VT4(1)
                VT4(2)
                VT4(3)
                VT4(4)
                VT4(5)
                VT4(6)
            }
#undef VT4
#undef VT
        }
    }
}

/* The products of a forward or backward on AMX tiles (amx) or AVX512-BF16,
 * in att_amx_scores', att_amx_rows' and att_amx_cols' terms. */
AMX_T static void att_bf_scores(int amx, float *S, long lds, const uint16_t *A, const uint32_t *Xd, long Tp, int c0,
                                int c1, int hd, float scale)
{
    if (amx)
        att_amx_scores(S, lds, A, Xd, Tp, c0, c1, hd, scale);
    else
        vdp_gemm(S, lds, A, hd, Xd + c0, Tp, 16, c1 - c0, hd / 2, 0, scale);
}

AMX_T static void att_bf_rows(int amx, float *O, long ldo, const uint16_t *Pr, int kp, const uint32_t *Xk, int c0,
                              int hd)
{
    if (amx)
        att_amx_rows(O, ldo, Pr, kp, Xk, c0, hd);
    else
        vdp_gemm(O, ldo, Pr, kp, Xk + (long)c0 / 2 * hd, hd, 16, hd, kp / 2, 0, 1.0f);
}

AMX_T static void att_bf_cols(int amx, float *CT, long ldc, const uint16_t *AT, const uint32_t *Bp, long ldb, int n16,
                              int hd)
{
    if (amx)
        att_amx_cols(CT, ldc, AT, Bp, ldb, n16, hd);
    else
        vdp_gemm(CT, ldc, AT, 64, Bp, ldb, hd, n16, 32, 1, 1.0f);
}

/* Scratch of one thread: byte offsets of 64-byte aligned pieces.  Tp = T
 * rounded up to 16; Tq = T rounded up to 32 plus 32 (a P tile of kp
 * columns from c0 reads key pairs up to c0 + kp). */
typedef struct {
    long Tp, Tq;
    size_t S, Pr, Kd, Vd, Kk, Vk, O, A, tmp, Pb, Sb, qT, oT, dKT, dVT, W, D, total;
} att_amx_lay;

static att_amx_lay att_amx_layout(int T, int hd, int bwd)
{
    att_amx_lay L;
    L.Tp = (T + 15) / 16 * 16;
    L.Tq = (T + 31) / 32 * 32 + 32;
    size_t o = 0, b = (size_t)bwd;
#define TAKE(f, bytes) (L.f = o, o += ((size_t)(bytes) + 63) / 64 * 64)
    TAKE(S, (1 + b) * 16 * L.Tp * 4);             /* scores (P) and dP of a tile */
    TAKE(Pr, (size_t)16 * L.Tq * 2);              /* a rounded P or dS tile */
    TAKE(Kd, (size_t)(hd / 2) * L.Tp * 4);        /* k by dim pairs */
    TAKE(Vd, b * (hd / 2) * L.Tp * 4);            /* v by dim pairs (dP) */
    TAKE(Kk, b * (L.Tq / 2) * hd * 4);            /* k by key pairs (dq) */
    TAKE(Vk, (1 - b) * (L.Tq / 2) * hd * 4);      /* v by key pairs (O) */
    TAKE(O, (size_t)16 * hd * 4);                 /* an output tile */
    TAKE(A, (1 + b) * 16 * hd * 2);               /* rounded q (and dO) rows */
    TAKE(tmp, (size_t)16 * hd * 2);
    TAKE(Pb, b * 32 * L.Tp * 4);                  /* a block's P by query pairs */
    TAKE(Sb, b * 32 * L.Tp * 4);                  /* and its dS */
    TAKE(qT, b * hd * ATT_QB * 2);                /* a block's q^T */
    TAKE(oT, b * hd * ATT_QB * 2);                /* and dO^T */
    TAKE(dKT, b * hd * L.Tp * 4);                 /* dk^T sums */
    TAKE(dVT, b * hd * L.Tp * 4);                 /* dv^T sums */
    TAKE(W, b * (ATT_QB / 2) * hd * 4);           /* a block's rows by pairs, before transposing */
    TAKE(D, b * L.Tp * 4);
    TAKE(total, 0);
#undef TAKE
    return L;
}

/* What a forward or backward shares: the layout, the threads' scratch
 * (64-byte aligned), the key-block table and the documents' runs. */
typedef struct {
    att_amx_lay L;
    char *base, *scr;
    int *k0t, *lot, nblk, ranged, amx; /* amx: the products on AMX tiles, else AVX512-BF16 */
} att_amx_run;

static void att_amx_run_init(att_amx_run *r, const icl_attn_shape *sh, const int32_t *doc, int bwd)
{
    r->L = att_amx_layout(sh->T, sh->hd, bwd);
    r->base = xmalloc((size_t)omp_get_max_threads() * r->L.total + 64);
    r->scr = (char *)(((uintptr_t)r->base + 63) & ~(uintptr_t)63);
    r->k0t = block_k0_table(doc, sh->B, sh->T);
    r->nblk = (sh->T + ATT_RB - 1) / ATT_RB;
    r->lot = doc_run_starts(doc, sh->B, sh->T);
    r->ranged = !doc || r->lot;
    r->amx = icl_bf16_amx_active();
}

static void att_amx_run_free(att_amx_run *r)
{
    free(r->base);
    free(r->k0t);
    free(r->lot);
}

AMX_T static void att_amx_forward(float *out, long ldo, float *lse, const float *qkv, const int32_t *doc,
                                  const icl_attn_shape *sh)
{
    int B = sh->B, T = sh->T, H = sh->H, KV = sh->KV, hd = sh->hd, grp = sh->H / sh->KV;
    long ld = sh->ld;
    att_amx_run R;
    att_amx_run_init(&R, sh, doc, 0);
    att_amx_lay L = R.L;
    long Tp = L.Tp, Tq = L.Tq;
    char *scr = R.scr;
    const int *k0t = R.k0t, *lot = R.lot;
    int nblk = R.nblk, ranged = R.ranged, amx = R.amx;
#pragma omp parallel if ((long)B * H * T * hd >= ICL_PAR_MIN)
    {
        char *w = scr + (size_t)omp_get_thread_num() * L.total;
        float *S = (float *)(w + L.S), *O = (float *)(w + L.O);
        uint16_t *Pr = (uint16_t *)(w + L.Pr), *Aq = (uint16_t *)(w + L.A), *tmp = (uint16_t *)(w + L.tmp);
        uint32_t *Kd = (uint32_t *)(w + L.Kd), *Vk = (uint32_t *)(w + L.Vk);
        if (amx)
            icl_amx_begin();
#pragma omp for schedule(dynamic, 1)
        for (int bg = 0; bg < B * KV; bg++) {
            int b = bg / KV, g = bg % KV;
            const float *k = qkv + (long)b * T * ld + sh->ko + (long)g * hd;
            const float *v = qkv + (long)b * T * ld + sh->vo + (long)g * hd;
            const int32_t *d = doc ? doc + (long)b * T : NULL;
            att_pack_dims(Kd, Tp, k, ld, T, hd, tmp);
            att_pairs(Vk, v, ld, T, (int)Tq, hd);
            for (int h = g * grp; h < (g + 1) * grp; h++) {
                const float *q = qkv + (long)b * T * ld + sh->qo + (long)h * hd;
                float *lh = lse + ((long)b * H + h) * T;
                for (int r0 = 0; r0 < T; r0 += ATT_RB) {
                    int r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, nr = r1 - r0, k0 = k0t[(long)b * nblk + r0 / ATT_RB];
                    int c0 = k0 / ATT_KW * ATT_KW, c1 = (r1 + ATT_KW - 1) / ATT_KW * ATT_KW;
                    int kp = (c1 - c0 + 31) / 32 * 32;
                    att_round_rows(Aq, q + (long)r0 * ld, ld, nr, hd);
                    att_bf_scores(amx, S, Tp, Aq, Kd, Tp, c0, c1, hd, sh->scale);
                    for (int t = r0; t < r1; t++) {
                        float *r = S + (long)(t - r0) * Tp - c0;
                        int lo = lot && lot[(long)b * T + t] > k0 ? lot[(long)b * T + t] : k0;
                        float m = att_exp_row(r, c0, c1, k0, t, lo, ranged, d, -INFINITY);
                        float sum = att_sum(r, c0, c1), inv = 1.0f / sum;
#pragma omp simd
                        for (int s = k0; s < r1; s++)
                            r[s] *= inv;
                        lh[t] = m + logf(sum);
                    }
                    att_round_tile(Pr, S, Tp, c1 - c0, kp);
                    att_bf_rows(amx, O, hd, Pr, kp, Vk, c0, hd);
                    for (int i = 0; i < nr; i++)
                        memcpy(out + ((long)b * T + r0 + i) * ldo + (long)h * hd, O + (long)i * hd, (size_t)hd * 4);
                }
            }
        }
#ifdef __clang__
        if (amx)
            icl_amx_end();
#else
        if (amx)
            _tile_release();
#endif
    }
    att_amx_run_free(&R);
}

#ifdef __clang__
/* y[j] = x[j] * s for j < n (n a multiple of 16), one rounding each: what
 * att_amx_backward's loops do inline under gcc.  clang 14 compiles an
 * OpenMP region without its function's target attribute, so AVX-512
 * intrinsics there do not compile; the region calls this instead. */
AMX_T static void att_scale16(float *y, const float *x, int n, float s)
{
    __m512 sc = _mm512_set1_ps(s);
    for (int j = 0; j < n; j += 16)
        _mm512_storeu_ps(y + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), sc));
}
#endif

AMX_T static void att_amx_backward(float *dqkv, const float *dout, long lddo, const float *out, long ldo,
                                   const float *lse, const float *qkv, const int32_t *doc, const icl_attn_shape *sh)
{
    int B = sh->B, T = sh->T, H = sh->H, KV = sh->KV, hd = sh->hd, grp = sh->H / sh->KV;
    long ld = sh->ld;
    att_amx_run R;
    att_amx_run_init(&R, sh, doc, 1);
    att_amx_lay L = R.L;
    long Tp = L.Tp, Tq = L.Tq;
    char *scr = R.scr;
    const int *k0t = R.k0t, *lot = R.lot;
    int nblk = R.nblk, ranged = R.ranged, amx = R.amx;
#pragma omp parallel if ((long)B * KV * T * hd >= ICL_PAR_MIN)
    {
        char *w = scr + (size_t)omp_get_thread_num() * L.total;
        float *P = (float *)(w + L.S), *dP = P + 16 * Tp, *O = (float *)(w + L.O), *D = (float *)(w + L.D);
        float *dKT = (float *)(w + L.dKT), *dVT = (float *)(w + L.dVT);
        uint16_t *Pr = (uint16_t *)(w + L.Pr), *Aq = (uint16_t *)(w + L.A), *Ao = Aq + 16 * hd;
        uint16_t *tmp = (uint16_t *)(w + L.tmp), *qT = (uint16_t *)(w + L.qT), *oT = (uint16_t *)(w + L.oT);
        uint32_t *Kd = (uint32_t *)(w + L.Kd), *Vd = (uint32_t *)(w + L.Vd), *Kk = (uint32_t *)(w + L.Kk);
        uint32_t *Pb = (uint32_t *)(w + L.Pb), *Sb = (uint32_t *)(w + L.Sb), *W = (uint32_t *)(w + L.W);
        if (amx)
            icl_amx_begin();
#pragma omp for schedule(dynamic, 1)
        for (int bg = 0; bg < B * KV; bg++) {
            int b = bg / KV, g = bg % KV;
            const float *k = qkv + (long)b * T * ld + sh->ko + (long)g * hd;
            const float *v = qkv + (long)b * T * ld + sh->vo + (long)g * hd;
            float *dk = dqkv + (long)b * T * ld + sh->ko + (long)g * hd;
            float *dv = dqkv + (long)b * T * ld + sh->vo + (long)g * hd;
            const int32_t *d = doc ? doc + (long)b * T : NULL;
            memset(dKT, 0, (size_t)hd * Tp * 4);
            memset(dVT, 0, (size_t)hd * Tp * 4);
            att_pack_dims(Kd, Tp, k, ld, T, hd, tmp);
            att_pack_dims(Vd, Tp, v, ld, T, hd, tmp);
            att_pairs(Kk, k, ld, T, (int)Tq, hd);
            for (int h = g * grp; h < (g + 1) * grp; h++) {
                const float *q = qkv + (long)b * T * ld + sh->qo + (long)h * hd;
                float *dq = dqkv + (long)b * T * ld + sh->qo + (long)h * hd;
                const float *o = out + (long)b * T * ldo + (long)h * hd;
                const float *dO = dout + (long)b * T * lddo + (long)h * hd;
                const float *Lh = lse + ((long)b * H + h) * T;
                for (int t = 0; t < T; t++)
                    D[t] = att_dot(dO + (long)t * lddo, o + (long)t * ldo, hd);
                for (int rb0 = 0; rb0 < T; rb0 += ATT_QB) {
                    int rb1 = rb0 + ATT_QB < T ? rb0 + ATT_QB : T;
                    int bc0 = k0t[(long)b * nblk + rb0 / ATT_RB] / ATT_KW * ATT_KW;
                    for (int r0 = rb0 + ATT_RB; r0 < rb1; r0 += ATT_RB) { /* the block's first key (k0 may fall) */
                        int c = k0t[(long)b * nblk + r0 / ATT_RB] / ATT_KW * ATT_KW;
                        bc0 = c < bc0 ? c : bc0;
                    }
                    int bc1 = (rb1 + ATT_KW - 1) / ATT_KW * ATT_KW, nb = bc1 - bc0;
                    for (int u = 0; u < ATT_QB / 2; u++) { /* rows past the block's and keys outside a tile's: 0 */
                        memset(Pb + (long)u * Tp, 0, (size_t)nb * 4);
                        memset(Sb + (long)u * Tp, 0, (size_t)nb * 4);
                    }
                    for (int r0 = rb0; r0 < rb1; r0 += ATT_RB) {
                        int r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, nr = r1 - r0;
                        int k0 = k0t[(long)b * nblk + r0 / ATT_RB];
                        int c0 = k0 / ATT_KW * ATT_KW, c1 = (r1 + ATT_KW - 1) / ATT_KW * ATT_KW;
                        int kp = (c1 - c0 + 31) / 32 * 32;
                        att_round_rows(Aq, q + (long)r0 * ld, ld, nr, hd);
                        att_round_rows(Ao, dO + (long)r0 * lddo, lddo, nr, hd);
                        /* P [16, c1 - c0] recomputed from q, k and lse; dP = dO v^T; dS = P (dP - D) */
                        att_bf_scores(amx, P, Tp, Aq, Kd, Tp, c0, c1, hd, sh->scale);
                        att_bf_scores(amx, dP, Tp, Ao, Vd, Tp, c0, c1, hd, 1.0f);
                        for (int t = r0; t < r1; t++) {
                            float *r = P + (long)(t - r0) * Tp - c0, *dr = dP + (long)(t - r0) * Tp - c0, Dt = D[t];
                            int lo = lot && lot[(long)b * T + t] > k0 ? lot[(long)b * T + t] : k0;
                            att_exp_row(r, c0, c1, k0, t, lo, ranged, d, Lh[t]);
#pragma omp simd
                            for (int s = c0; s < c1; s++)
                                dr[s] = r[s] * (dr[s] - Dt);
                        }
                        for (int i = nr; i < 16; i++) { /* rows past T: no queries */
                            memset(P + (long)i * Tp, 0, (size_t)(c1 - c0) * 4);
                            memset(dP + (long)i * Tp, 0, (size_t)(c1 - c0) * 4);
                        }
                        /* dq = scale dS k */
                        att_round_tile(Pr, dP, Tp, c1 - c0, kp);
                        att_bf_rows(amx, O, hd, Pr, kp, Kk, c0, hd);
#ifdef __clang__
                        for (int i = 0; i < nr; i++)
                            att_scale16(dq + (long)(r0 + i) * ld, O + (long)i * hd, hd, sh->scale);
#else
                        __m512 sc = _mm512_set1_ps(sh->scale);
                        for (int i = 0; i < nr; i++)
                            for (int j = 0; j < hd; j += 16)
                                _mm512_storeu_ps(dq + (long)(r0 + i) * ld + j,
                                                 _mm512_mul_ps(_mm512_loadu_ps(O + (long)i * hd + j), sc));
#endif
                        /* the tile's P and dS rows by pairs, into the block's */
                        long u0 = (r0 - rb0) / 2;
                        att_tile_pairs(Pb + u0 * Tp, Tp, c0 - bc0, P, Tp, c1 - c0);
                        att_tile_pairs(Sb + u0 * Tp, Tp, c0 - bc0, dP, Tp, c1 - c0);
                    }
                    /* q^T, dO^T of the block [hd][64] bf16: rows by pairs, transposed */
                    att_pairs(W, q + (long)rb0 * ld, ld, rb1 - rb0, ATT_QB, hd);
                    att_transpose32((uint32_t *)qT, ATT_QB / 2, W, hd, ATT_QB / 32, hd / 16);
                    att_pairs(W, dO + (long)rb0 * lddo, lddo, rb1 - rb0, ATT_QB, hd);
                    att_transpose32((uint32_t *)oT, ATT_QB / 2, W, hd, ATT_QB / 32, hd / 16);
                    /* dk^T[:, bc0:bc1) += q^T dS; dv^T += dO^T P */
                    att_bf_cols(amx, dKT + bc0, Tp, qT, Sb, Tp, nb, hd);
                    att_bf_cols(amx, dVT + bc0, Tp, oT, Pb, Tp, nb, hd);
                }
            }
            /* dk = scale (dk^T)^T, dv = (dv^T)^T, rows < T */
#ifndef __clang__
            __m512 sc = _mm512_set1_ps(sh->scale);
#endif
            for (int s0 = 0; s0 < T; s0 += 16) {
                float blk[2][16 * 64];
                for (int j0 = 0; j0 < hd; j0 += 16) {
                    att_transpose32((uint32_t *)blk[0], 16, (const uint32_t *)(dKT + (long)j0 * Tp + s0), Tp, 1, 1);
                    att_transpose32((uint32_t *)blk[1], 16, (const uint32_t *)(dVT + (long)j0 * Tp + s0), Tp, 1, 1);
                    for (int i = 0; i < 16 && s0 + i < T; i++) {
#ifdef __clang__
                        att_scale16(dk + (long)(s0 + i) * ld + j0, blk[0] + 16 * i, 16, sh->scale);
                        memcpy(dv + (long)(s0 + i) * ld + j0, blk[1] + 16 * i, 16 * sizeof(float));
#else
                        _mm512_storeu_ps(dk + (long)(s0 + i) * ld + j0, _mm512_mul_ps(_mm512_loadu_ps(blk[0] + 16 * i), sc));
                        _mm512_storeu_ps(dv + (long)(s0 + i) * ld + j0, _mm512_loadu_ps(blk[1] + 16 * i));
#endif
                    }
                }
            }
        }
#ifdef __clang__
        if (amx)
            icl_amx_end();
#else
        if (amx)
            _tile_release();
#endif
    }
    att_amx_run_free(&R);
}
#undef ATT_QB
#undef AMX_T
#endif

int icl_attention_bf16_kernels(int hd)
{
#if ATT_AMX
    if (hd % 32 || hd > 256 || !att_avx512())
        return 0;
    return icl_bf16_amx_active() ? 2 : icl_bf16_native_active() ? 1 : 0;
#else
    (void)hd;
    return 0;
#endif
}

/* bf16 operands asked (sh->bf16) and kernels for them here */
static int att_amx_ok(const icl_attn_shape *sh) { return sh->bf16 && icl_attention_bf16_kernels(sh->hd); }

/* out = softmax(scale q k^T + mask) v, per (b, h) */
void icl_attention_forward(float *out, long ldo, float *lse, const float *qkv, const int32_t *doc,
                           const icl_attn_shape *sh)
{
#if ATT_AMX
    if (att_amx_ok(sh)) {
        att_amx_forward(out, ldo, lse, qkv, doc, sh);
        return;
    }
#endif
    int B = sh->B, T = sh->T, H = sh->H, hd = sh->hd, grp = sh->H / sh->KV;
    long ld = sh->ld, Tp = (T + ATT_KW - 1) / ATT_KW * ATT_KW;
    int nt = omp_get_max_threads();
    size_t per = (size_t)ATT_RB * Tp + (size_t)hd * Tp;
    float *scr = xmalloc((size_t)nt * per * sizeof(float));
    int *k0t = block_k0_table(doc, B, T), nblk = (T + ATT_RB - 1) / ATT_RB;
    int *lot = doc_run_starts(doc, B, T);
    int ranged = !doc || lot; /* allowed(t, s) <=> lo(t) <= s <= t */
#pragma omp parallel for schedule(dynamic, 1) if ((long)B * H * T * hd >= ICL_PAR_MIN)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H, g = h / grp;
        float *S = scr + (size_t)omp_get_thread_num() * per, *Kt = S + (size_t)ATT_RB * Tp;
        const float *q = qkv + (long)b * T * ld + sh->qo + (long)h * hd;
        const float *k = qkv + (long)b * T * ld + sh->ko + (long)g * hd;
        const float *v = qkv + (long)b * T * ld + sh->vo + (long)g * hd;
        const int32_t *d = doc ? doc + (long)b * T : NULL;
        att_transpose(Kt, Tp, k, ld, T, hd);
        for (int r0 = 0; r0 < T; r0 += ATT_RB) {
            int r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, nr = r1 - r0, k0 = k0t[(long)b * nblk + r0 / ATT_RB];
            int c0 = k0 / ATT_KW * ATT_KW, c1 = (r1 + ATT_KW - 1) / ATT_KW * ATT_KW;
            /* S[i][s - c0] = scale q[r0 + i] . k[s] */
            att_scores(S, Tp, q + (long)r0 * ld, ld, Kt, Tp, nr, c0, c1, hd, sh->scale);
            for (int t = r0; t < r1; t++) {
                float *r = S + (long)(t - r0) * Tp - c0; /* r[s] for key s */
                int lo = lot && lot[(long)b * T + t] > k0 ? lot[(long)b * T + t] : k0;
                float m = att_exp_row(r, c0, c1, k0, t, lo, ranged, d, -INFINITY);
                float sum = att_sum(r, c0, c1), inv = 1.0f / sum;
#pragma omp simd
                for (int s = k0; s < r1; s++)
                    r[s] *= inv;
                lse[(long)bh * T + t] = m + logf(sum);
            }
            /* out[r0:r1] = P v[k0:r1] */
            att_rows(out + ((long)b * T + r0) * ldo + (long)h * hd, ldo, S + (k0 - c0), Tp, v + (long)k0 * ld, ld, nr,
                     r1 - k0, hd, 1.0f);
        }
    }
    free(scr);
    free(k0t);
    free(lot);
}

void icl_attention_backward(float *dqkv, const float *dout, long lddo, const float *out, long ldo,
                            const float *lse, const float *qkv, const int32_t *doc, const icl_attn_shape *sh)
{
#if ATT_AMX
    if (att_amx_ok(sh)) {
        att_amx_backward(dqkv, dout, lddo, out, ldo, lse, qkv, doc, sh);
        return;
    }
#endif
    int B = sh->B, T = sh->T, H = sh->H, KV = sh->KV, hd = sh->hd, grp = sh->H / sh->KV;
    long ld = sh->ld, Tp = (T + ATT_KW - 1) / ATT_KW * ATT_KW;
    int nt = omp_get_max_threads();
    size_t per = 2 * (size_t)ATT_RB * Tp + 2 * (size_t)hd * Tp + (size_t)T;
    float *scr = xmalloc((size_t)nt * per * sizeof(float));
    int *k0t = block_k0_table(doc, B, T), nblk = (T + ATT_RB - 1) / ATT_RB;
    int *lot = doc_run_starts(doc, B, T);
    int ranged = !doc || lot; /* as in the forward */
#pragma omp parallel for schedule(dynamic, 1) if ((long)B * KV * T * hd >= ICL_PAR_MIN)
    for (int bg = 0; bg < B * KV; bg++) {
        int b = bg / KV, g = bg % KV;
        float *P = scr + (size_t)omp_get_thread_num() * per, *dP = P + (size_t)ATT_RB * Tp,
              *Kt = dP + (size_t)ATT_RB * Tp, *Vt = Kt + (size_t)hd * Tp, *D = Vt + (size_t)hd * Tp;
        const float *k = qkv + (long)b * T * ld + sh->ko + (long)g * hd;
        const float *v = qkv + (long)b * T * ld + sh->vo + (long)g * hd;
        float *dk = dqkv + (long)b * T * ld + sh->ko + (long)g * hd;
        float *dv = dqkv + (long)b * T * ld + sh->vo + (long)g * hd;
        const int32_t *d = doc ? doc + (long)b * T : NULL;
        for (int t = 0; t < T; t++) {
            memset(dk + (long)t * ld, 0, (size_t)hd * sizeof(float));
            memset(dv + (long)t * ld, 0, (size_t)hd * sizeof(float));
        }
        att_transpose(Kt, Tp, k, ld, T, hd);
        att_transpose(Vt, Tp, v, ld, T, hd);
        for (int h = g * grp; h < (g + 1) * grp; h++) {
            const float *q = qkv + (long)b * T * ld + sh->qo + (long)h * hd;
            float *dq = dqkv + (long)b * T * ld + sh->qo + (long)h * hd;
            const float *o = out + (long)b * T * ldo + (long)h * hd;
            const float *dO = dout + (long)b * T * lddo + (long)h * hd;
            const float *L = lse + ((long)b * H + h) * T;
            for (int t = 0; t < T; t++)
                D[t] = att_dot(dO + (long)t * lddo, o + (long)t * ldo, hd);
            for (int r0 = 0; r0 < T; r0 += ATT_RB) {
                int r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, nr = r1 - r0, k0 = k0t[(long)b * nblk + r0 / ATT_RB];
                int c0 = k0 / ATT_KW * ATT_KW, c1 = (r1 + ATT_KW - 1) / ATT_KW * ATT_KW;
                /* P [nr, c1 - c0] (row stride Tp) recomputed from q, k and lse; dP = dO v^T */
                att_scores(P, Tp, q + (long)r0 * ld, ld, Kt, Tp, nr, c0, c1, hd, sh->scale);
                att_scores(dP, Tp, dO + (long)r0 * lddo, lddo, Vt, Tp, nr, c0, c1, hd, 1.0f);
                for (int t = r0; t < r1; t++) {
                    float *r = P + (long)(t - r0) * Tp - c0, *dr = dP + (long)(t - r0) * Tp - c0, Dt = D[t];
                    int lo = lot && lot[(long)b * T + t] > k0 ? lot[(long)b * T + t] : k0;
                    att_exp_row(r, c0, c1, k0, t, lo, ranged, d, L[t]);
#pragma omp simd
                    for (int s = c0; s < c1; s++) /* dS = P (dP - D) */
                        dr[s] = r[s] * (dr[s] - Dt);
                }
                /* dq[r0:r1] = scale dS k[k0:r1]; dk[k0:r1] += scale dS^T q[r0:r1]; dv[k0:r1] += P^T dO[r0:r1] */
                const float *dS = dP + (k0 - c0), *Pk = P + (k0 - c0);
                att_rows(dq + (long)r0 * ld, ld, dS, Tp, k + (long)k0 * ld, ld, nr, r1 - k0, hd, sh->scale);
                att_cols(dk + (long)k0 * ld, ld, dS, Tp, q + (long)r0 * ld, ld, nr, r1 - k0, hd, sh->scale);
                att_cols(dv + (long)k0 * ld, ld, Pk, Tp, dO + (long)r0 * lddo, lddo, nr, r1 - k0, hd, 1.0f);
            }
        }
    }
    free(scr);
    free(k0t);
    free(lot);
}

void icl_attention_cached(float *out, long ldo, const float *q, long ldq, const float *kc, const float *vc, int n,
                          int p0, int maxpos, int H, int KV, int hd, float scale)
{
    int L = p0 + n, grp = H / KV;
    int nt = omp_get_max_threads();
    float *scr = xmalloc((size_t)nt * n * L * sizeof(float));
#pragma omp parallel for schedule(dynamic, 1) if ((long)n * L * H * hd >= ICL_PAR_MIN)
    for (int h = 0; h < H; h++) {
        int g = h / grp;
        float *S = scr + (size_t)omp_get_thread_num() * n * L;
        const float *k = kc + (long)g * maxpos * hd, *v = vc + (long)g * maxpos * hd;
        icl_gemm(n, L, hd, scale, q + (long)h * hd, ldq, 1, k, 1, hd, 0.0f, S, L, 1, 1);
        for (int i = 0; i < n; i++) {
            float *r = S + (long)i * L, m = -INFINITY;
            int last = p0 + i;
            for (int s = 0; s <= last; s++)
                m = r[s] > m ? r[s] : m;
            float sum = 0;
            for (int s = 0; s <= last; s++) {
                r[s] = icl_expf(r[s] - m);
                sum += r[s];
            }
            float inv = 1.0f / sum;
            for (int s = 0; s <= last; s++)
                r[s] *= inv;
            for (int s = last + 1; s < L; s++)
                r[s] = 0;
        }
        icl_gemm(n, hd, L, 1.0f, S, L, 1, v, hd, 1, 0.0f, out + (long)h * hd, ldo, 1, 1);
    }
    free(scr);
}

/* ---------------------------------------------------------------- MLP activations */

void icl_swiglu_forward(float *h, const float *gu, long ldgu, int N, int I)
{
#pragma omp parallel for schedule(static) if ((long)N * I >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *g = gu + (long)i * ldgu, *u = g + I;
        float *hi = h + (long)i * I;
#pragma omp simd
        for (int j = 0; j < I; j++)
            hi[j] = g[j] / (1.0f + icl_expf(-g[j])) * u[j];
    }
}

void icl_swiglu_backward(float *dgu, long lddgu, const float *dh, const float *gu, long ldgu, int N, int I)
{
#pragma omp parallel for schedule(static) if ((long)N * I >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *g = gu + (long)i * ldgu, *u = g + I, *d = dh + (long)i * I;
        float *dg = dgu + (long)i * lddgu, *du = dg + I;
#pragma omp simd
        for (int j = 0; j < I; j++) {
            float s = 1.0f / (1.0f + icl_expf(-g[j])), si = g[j] * s;
            du[j] = d[j] * si;
            dg[j] = d[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
        }
    }
}

#define GELU_A 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_B 0.044715f

void icl_gelu_forward(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) if ((long)n >= ICL_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(GELU_A * (v + GELU_B * v * v * v)));
    }
}

void icl_gelu_backward(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) if ((long)n >= ICL_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i], t = tanhf(GELU_A * (v + GELU_B * v * v * v));
        float dt = (1.0f - t * t) * GELU_A * (1.0f + 3.0f * GELU_B * v * v);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * dt);
    }
}

/* ---------------------------------------------------------------- cross-entropy */

double icl_xent_rows(float *logits, long ld, int n, int V, const int32_t *target, float *loss, float scale)
{
    return icl_xent_rows_w(logits, ld, n, V, target, loss, scale, NULL);
}

double icl_xent_rows_w(float *logits, long ld, int n, int V, const int32_t *target, float *loss, float scale,
                       const float *w)
{
    float *li = loss ? loss : xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
#pragma omp parallel for schedule(static) if ((long)n * V >= ICL_PAR_MIN)
    for (int i = 0; i < n; i++) {
        float *r = logits + (long)i * ld, m = -INFINITY;
#pragma omp simd reduction(max : m) /* a maximum is the same in any order */
        for (int j = 0; j < V; j++)
            m = r[j] > m ? r[j] : m;
        /* summed in double: a float sum of V exps near 1 drops every term
         * below half its ulp, and how many it drops depends on how the
         * compiler splits the loop into lanes (the sanitizer build's scalar
         * loop lost ~1e-4 of SmolLM2's loss, the 16-lane -O3 loop a
         * sixteenth of that); in double the result is the same to float
         * precision for any order */
        double sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++)
            sum += (double)icl_expf(r[j] - m);
        double lsed = (double)m + log(sum);
        float lse = (float)lsed;
        li[i] = (float)(lsed - (double)r[target[i]]);
        if (scale != 0) {
            float sc = w ? (float)((double)scale * (double)w[i]) : scale;
#pragma omp simd
            for (int j = 0; j < V; j++)
                r[j] = icl_expf(r[j] - lse) * sc;
            r[target[i]] -= sc;
        }
    }
    double total = 0; /* summed in row order: the same result for any thread count */
    for (int i = 0; i < n; i++)
        total += w ? (double)w[i] * (double)li[i] : li[i];
    if (!loss)
        free(li);
    return total;
}
