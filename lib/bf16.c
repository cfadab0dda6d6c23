/* bf16.c - bfloat16 products with float32 accumulation.  See bf16.h. */
#include "bf16.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define BF_X86 1
#include <immintrin.h>
#else
#define BF_X86 0
#endif

static int native = -1, forced;

int icl_bf16_native(void)
{
    int n = __atomic_load_n(&native, __ATOMIC_RELAXED);
    if (n < 0) {
#if BF_X86
        __builtin_cpu_init();
        n = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512bf16");
#else
        n = 0;
#endif
        __atomic_store_n(&native, n, __ATOMIC_RELAXED);
    }
    return n;
}

static int use_native(void) { return icl_bf16_native() && !forced; }

void icl_bf16_force_portable(int force) { forced = force != 0; }

const char *icl_bf16_path_name(void)
{
    return use_native() ? "avx512bf16" : icl_bf16_native() ? "portable (forced)" : "portable (this CPU lacks AVX512-BF16)";
}

/* ---------------------------------------------------------------- conversions */

/* vcvtneps2bf16 on one value: NaN stays NaN (quiet bit set), denormals
 * become signed zero, else round to nearest even (overflow to infinity). */
static inline uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    if ((u & 0x7f800000u) == 0)
        return (uint16_t)((u >> 16) & 0x8000);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static inline float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#if BF_X86
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void cvt_native(const float *x, uint16_t *out, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
        memcpy(out + i, &h, 32);
    }
    for (; i < n; i++)
        out[i] = to_bf16(x[i]);
}
#endif

void icl_bf16_from_f32_row(const float *x, uint16_t *out, size_t n)
{
#if BF_X86
    if (use_native()) {
        cvt_native(x, out, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        out[i] = to_bf16(x[i]);
}

void icl_bf16_to_f32_row(const uint16_t *h, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = from_bf16(h[i]);
}

/* ---------------------------------------------------------------- products */

#define TB 32 /* W rows (and x rows) per cache block */

/* Writes o[i][j] (+ bias, beta) for an mr x nr tile at y[i0.., j0..]. */
static inline void put_tile(float *y, long ldy, int i0, int j0, int mr, int nr, const float o[4][4],
                            const float *bias, float beta)
{
    for (int i = 0; i < mr; i++) {
        float *yo = y + (size_t)(i0 + i) * ldy + j0;
        for (int j = 0; j < nr; j++) {
            float t = o[i][j] + (bias ? bias[j0 + j] : 0.0f);
            yo[j] = beta != 0.0f ? yo[j] + t : t;
        }
    }
}

#if BF_X86
/* o[i][j] = dot(xs[i], ws[j]) over K bf16 values: 16 float lanes, lane l
 * accumulating pairs 2l, 2l+1 of each 32-value step (vdpbf16ps), the tail
 * zero-filled, then a fixed tree over the lanes: the same for every (i, j)
 * and every tile size. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline __attribute__((always_inline)) void
tile_native(const uint16_t *const *xs, int mr, const uint16_t *const *ws, int nr, int K, float o[4][4])
{
    __m512 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            acc[i][j] = _mm512_setzero_ps();
    int k = 0;
    __m512i a[4], b[4];
    for (; k + 32 <= K; k += 32) {
        for (int i = 0; i < mr; i++)
            a[i] = _mm512_loadu_si512(xs[i] + k);
        for (int j = 0; j < nr; j++)
            b[j] = _mm512_loadu_si512(ws[j] + k);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
                acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)a[i], (__m512bh)b[j]);
    }
    if (k < K) {
        __mmask32 m = (__mmask32)((1ull << (K - k)) - 1);
        for (int i = 0; i < mr; i++)
            a[i] = _mm512_maskz_loadu_epi16(m, xs[i] + k);
        for (int j = 0; j < nr; j++)
            b[j] = _mm512_maskz_loadu_epi16(m, ws[j] + k);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
                acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)a[i], (__m512bh)b[j]);
    }
    /* The 16 horizontal sums at once, each folding halves (lane l + l+8,
     * then + l+4, then + l+2, then + l+1) whatever the tile size (absent
     * rows and columns are zero vectors, summed apart). */
    __m512 s1[8], s2[4], s3[2];
    for (int p = 0; p < 8; p++) {
        __m512 a0 = acc[(2 * p) / 4][(2 * p) % 4], a1 = acc[(2 * p + 1) / 4][(2 * p + 1) % 4];
        s1[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xEE));
    }
    for (int q = 0; q < 4; q++)
        s2[q] = _mm512_add_ps(_mm512_shuffle_f32x4(s1[2 * q], s1[2 * q + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm512_shuffle_f32x4(s1[2 * q], s1[2 * q + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int a = 0; a < 2; a++)
        s3[a] = _mm512_add_ps(_mm512_shuffle_ps(s2[2 * a], s2[2 * a + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_ps(s2[2 * a], s2[2 * a + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 r = _mm512_add_ps(_mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(3, 1, 3, 1)));
    float t[16]; /* lane 4j + i: element (i, j) */
    _mm512_storeu_ps(t, r);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++)
            o[i][j] = t[4 * j + i];
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void
tile_any(const uint16_t *const *xs, int mr, const uint16_t *const *ws, int nr, int K, float o[4][4])
{
    /* constant tile sizes: the accumulators stay in registers */
#define T_(a, b)                                                                                                     \
    case (a) * 8 + (b): tile_native(xs, a, ws, b, K, o); break;
    switch (mr * 8 + nr) {
        T_(1, 1) T_(1, 2) T_(1, 3) T_(1, 4) T_(2, 1) T_(2, 2) T_(2, 3) T_(2, 4)
        T_(3, 1) T_(3, 2) T_(3, 3) T_(3, 4) T_(4, 1) T_(4, 2) T_(4, 3) default: tile_native(xs, 4, ws, 4, K, o);
    }
#undef T_
}
#endif

/* Portable: the same operands, sums in k order. */
static void tile_portable(const uint16_t *const *xs, int mr, const uint16_t *const *ws, int nr, int K, float o[4][4])
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++)
                s += from_bf16(xs[i][k]) * from_bf16(ws[j][k]);
            o[i][j] = s;
        }
}

int icl_bf16_gemm(int M, int N, int K, const float *x, long ldx, const uint16_t *W, long ldw, const float *bias,
                  float *y, long ldy, float beta, int nthreads)
{
    if (M <= 0 || N <= 0)
        return 0;
    uint16_t *xb = malloc((size_t)M * (K > 0 ? K : 1) * sizeof *xb);
    if (!xb)
        return -1;
    int nt = nthreads < 1 ? 1 : nthreads;
    if ((double)M * N * K < 65536.0)
        nt = 1;
#pragma omp parallel for schedule(static) num_threads(nt) if ((double)M * K >= 65536.0)
    for (int i = 0; i < M; i++)
        icl_bf16_from_f32_row(x + (size_t)i * ldx, xb + (size_t)i * K, (size_t)K);
    int nat = use_native();
    const int nblk = (N + TB - 1) / TB;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int jb = 0; jb < nblk; jb++) {
        int j0 = jb * TB, nj = N - j0 < TB ? N - j0 : TB;
        for (int ib = 0; ib < M; ib += TB) {
            int ni = M - ib < TB ? M - ib : TB;
            for (int jj = 0; jj < nj; jj += 4) {
                int nr = nj - jj < 4 ? nj - jj : 4;
                const uint16_t *ws[4];
                for (int j = 0; j < nr; j++)
                    ws[j] = W + (size_t)(j0 + jj + j) * ldw;
                for (int ii = 0; ii < ni; ii += 4) {
                    int mr = ni - ii < 4 ? ni - ii : 4;
                    const uint16_t *xs[4];
                    for (int i = 0; i < mr; i++)
                        xs[i] = xb + (size_t)(ib + ii + i) * K;
                    float o[4][4];
#if BF_X86
                    if (nat)
                        tile_any(xs, mr, ws, nr, K, o);
                    else
#endif
                        tile_portable(xs, mr, ws, nr, K, o);
                    put_tile(y, ldy, ib + ii, j0 + jj, mr, nr, o, bias, beta);
                }
            }
        }
    }
    (void)nat;
    free(xb);
    return 0;
}

/* ---------------------------------------------------------------- linear.c's BF16 row */

static void nan_rows(float *y, long ldy, int N, int out)
{
    for (int i = 0; i < N; i++)
        for (int j = 0; j < out; j++)
            y[(size_t)i * ldy + j] = NAN;
}

static void w_gemm_forward(const icl_weight *w, float *y, long ldy, const float *x, long ldx, int N, float beta)
{
    if (icl_bf16_gemm(N, w->out, w->in, x, ldx, w->data, w->in, NULL, y, ldy, beta, omp_get_max_threads()))
        nan_rows(y, ldy, N, w->out);
}

static void w_rows_forward(const icl_weight *w, const float *bias, float *y, long ldy, const float *x, long ldx, int N,
                           float beta, int nthreads)
{
    if (icl_bf16_gemm(N, w->out, w->in, x, ldx, w->data, w->in, bias, y, ldy, beta, nthreads))
        nan_rows(y, ldy, N, w->out);
}

static void w_dequantize_row(const icl_weight *w, int r, float *out)
{
    icl_bf16_to_f32_row((const uint16_t *)w->data + (size_t)r * w->in, out, (size_t)w->in);
}

const icl_weight_ops icl_bf16_weight_ops = {
    .name = "bf16",
    .gemm_forward = w_gemm_forward,
    .rows_forward = w_rows_forward,
    .input_grad = NULL,
    .weight_grad = NULL,
    .dequantize_row = w_dequantize_row,
};
