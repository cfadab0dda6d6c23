/* bf16.c - bfloat16 products with float32 accumulation.  See bf16.h. */
#include "bf16.h"
#include "x86tiles.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define BF_X86 1
#include <immintrin.h>
#else
#define BF_X86 0
#endif

static int native = -1, amx = -1, forced;

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

#if BF_X86 && defined(__linux__)
#define BF_AMX 1
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023 /* <asm/prctl.h>, Linux 5.16 */
#define XFEATURE_XTILEDATA 18
#else
#define BF_AMX 0
#endif

/* AMX-BF16 usable: CPUID.(7,0):EDX bit 22 (AMX-BF16) and 24 (AMX-TILE),
 * the OS enabling the tile state in XCR0 (bits 17 XTILECFG, 18 XTILEDATA;
 * all three from icl_cpu_probe, lib/util.h), and Linux
 * granting this process the tile data (arch_prctl ARCH_REQ_XCOMP_PERM;
 * Documentation/arch/x86/xstate.rst), asked once.  Also needs the
 * AVX512-BF16 path (the conversions and epilogues).  ICL_BF16_AMX=0 in the
 * environment turns it off (for comparisons). */
int icl_bf16_amx(void)
{
    int a = __atomic_load_n(&amx, __ATOMIC_ACQUIRE);
    if (a < 0) {
        a = 0;
#if BF_AMX
        const char *e = getenv("ICL_BF16_AMX");
        icl_cpu_facts cpu;
        icl_cpu_probe(&cpu);
        if (icl_bf16_native() && !(e && e[0] == '0') && cpu.amx && cpu.amx_bf16 && cpu.amx_os &&
            syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0)
            a = 1;
#endif
        __atomic_store_n(&amx, a, __ATOMIC_RELEASE);
    }
    return a;
}

/* The AMX path's K block, in chunks of 32 k (see amx_item). */
#define KBC 64
static int kblock = KBC;

void icl_bf16_set_amx_kblock(int chunks) { kblock = chunks > 0 ? chunks : KBC; }

static int use_native(void) { return icl_bf16_native() && forced != ICL_BF16_PORTABLE; }
static int use_amx(void) { return use_native() && forced == ICL_BF16_BEST && icl_bf16_amx(); }

void icl_bf16_force_path(int path) { forced = path; }

int icl_bf16_amx_active(void) { return use_amx(); }

int icl_bf16_native_active(void) { return use_native(); }

void icl_bf16_force_portable(int force) { forced = force ? ICL_BF16_PORTABLE : ICL_BF16_BEST; }

const char *icl_bf16_path_name(void)
{
    return use_amx()            ? "amx-bf16"
           : use_native()       ? "avx512bf16"
           : icl_bf16_native() ? "portable (forced)"
                                : "portable (this CPU lacks AVX512-BF16)";
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

/* ---------------------------------------------------------------- packed products (GEMM and training) */

/* Layout of a packed B [K, N] (bf16.h): panels of PNR columns; in a panel,
 * pair p of rows (2p, 2p + 1) is PNR (B[2p, n], B[2p+1, n]) pairs, one
 * 32-bit word each, the form vdpbf16ps multiplies with a broadcast pair of
 * x.  Zero beyond K (odd K) and beyond N (the last panel). */
#define PNR 64 /* columns per panel: 4 vectors of 16 float32 sums */
#define PMR 6  /* rows of x per micro-tile: 6 x 4 = 24 accumulators */
#define PMB 96 /* rows of x per work item (16 micro-tiles) */
#define AMR 16 /* rows of an AMX tile (the AMX path: blocks of 2 AMR rows) */

static inline int kpad(int K) { return K > 0 ? (K + 1) & ~1 : 0; }

size_t icl_bf16_packed_size(int K, int N)
{
    if (K <= 0 || N <= 0)
        return 0;
    return (size_t)((N + PNR - 1) / PNR) * PNR * (size_t)kpad(K);
}

/* One panel from a [N, K] source (rows of K): converts each of its rows,
 * then scatters the 32-bit pairs.  tmp: PNR kpad(K) bf16. */
static void pack_panel_nk(const float *B, long ldb, int K, int N, int j0, uint16_t *dst, uint16_t *tmp)
{
    int Kp = kpad(K), nc = N - j0 < PNR ? N - j0 : PNR;
    for (int c = 0; c < PNR; c++) {
        uint16_t *t = tmp + (size_t)c * Kp;
        if (c < nc) {
            icl_bf16_from_f32_row(B + (size_t)(j0 + c) * ldb, t, (size_t)K);
            if (Kp > K)
                t[K] = 0;
        } else {
            memset(t, 0, (size_t)Kp * sizeof *t);
        }
    }
    uint32_t *d = (uint32_t *)dst;
    for (int p = 0; p < Kp / 2; p++)
        for (int c = 0; c < PNR; c++) {
            uint32_t w;
            memcpy(&w, tmp + (size_t)c * Kp + 2 * p, 4);
            d[(size_t)p * PNR + c] = w;
        }
}

#if BF_X86
/* One panel from a [K, N] source (rows of N): rows 2p and 2p + 1 converted
 * 16 columns at a time and interleaved into pairs. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void pack_panel_kn_native(const float *B, long ldb,
                                                                                          int K, int N, int j0,
                                                                                          uint16_t *dst)
{
    int nc = N - j0 < PNR ? N - j0 : PNR;
    for (int p = 0; p < kpad(K) / 2; p++) {
        const float *r0 = B + (size_t)(2 * p) * ldb + j0, *r1 = 2 * p + 1 < K ? r0 + ldb : NULL;
        for (int c = 0; c < PNR; c += 16) {
            int n = nc - c < 0 ? 0 : nc - c > 16 ? 16 : nc - c;
            __mmask16 m = (__mmask16)((1u << n) - 1);
            __m256bh h0 = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r0 + c));
            __m512i w = _mm512_cvtepu16_epi32((__m256i)h0);
            if (r1) {
                __m256bh h1 = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r1 + c));
                w = _mm512_or_si512(w, _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)h1), 16));
            }
            _mm512_storeu_si512(dst + (size_t)p * 2 * PNR + 2 * c, w);
        }
    }
}
#endif

static void pack_panel_kn(const float *B, long ldb, int K, int N, int j0, uint16_t *dst)
{
#if BF_X86
    if (use_native()) {
        pack_panel_kn_native(B, ldb, K, N, j0, dst);
        return;
    }
#endif
    int nc = N - j0 < PNR ? N - j0 : PNR;
    for (int p = 0; p < kpad(K) / 2; p++)
        for (int c = 0; c < PNR; c++) {
            uint16_t *o = dst + (size_t)p * 2 * PNR + 2 * c;
            o[0] = c < nc ? to_bf16(B[(size_t)(2 * p) * ldb + j0 + c]) : 0;
            o[1] = c < nc && 2 * p + 1 < K ? to_bf16(B[(size_t)(2 * p + 1) * ldb + j0 + c]) : 0;
        }
}

void icl_bf16_pack_panel(const float *B, long ldb, int kn, int K, int nc, uint16_t *dst, uint16_t *tmp)
{
    if (K <= 0 || nc <= 0)
        return;
    if (kn)
        pack_panel_kn(B, ldb, K, nc, 0, dst);
    else
        pack_panel_nk(B, ldb, K, nc, 0, dst, tmp);
}

/* icl_bf16_pack into panels of kpad(Kt) rows (Kt >= K, K even when
 * Kt > K), the rows beyond K zero. */
static int pack_into(const float *B, long ldb, int kn, int K, int Kt, int N, uint16_t *P, int nthreads)
{
    if (K <= 0 || N <= 0)
        return 0;
    int np = (N + PNR - 1) / PNR, Kp = kpad(K), Ks = kpad(Kt), nt = nthreads < 1 ? 1 : nthreads, fail = 0;
    if ((double)K * N < 65536.0)
        nt = 1;
#pragma omp parallel num_threads(nt) reduction(| : fail)
    {
        uint16_t *tmp = kn ? NULL : malloc((size_t)PNR * Kp * sizeof *tmp);
        if (!kn && !tmp)
            fail = 1;
        else {
#pragma omp for schedule(static)
            for (int jp = 0; jp < np; jp++) {
                uint16_t *d = P + (size_t)jp * PNR * Ks;
                if (kn)
                    pack_panel_kn(B, ldb, K, N, jp * PNR, d);
                else
                    pack_panel_nk(B, ldb, K, N, jp * PNR, d, tmp);
                if (Ks > Kp)
                    memset(d + (size_t)Kp * PNR, 0, (size_t)(Ks - Kp) * PNR * sizeof *d);
            }
        }
        free(tmp);
    }
    return fail ? -1 : 0;
}

int icl_bf16_pack(const float *B, long ldb, int kn, int K, int N, uint16_t *P, int nthreads)
{
    return pack_into(B, ldb, kn, K, K, N, P, nthreads);
}

int icl_bf16_room(int in, int out, int ke) { return ke > 0 && in % 32 == 0 && out % 32 == 0 ? (ke + 31) & ~31 : ke; }

int icl_bf16_pack_ext(const float *B, long ldb, int kn, int K, int kx, int N, uint16_t *P, int nthreads)
{
    if (kx > 0 && (K & 1))
        return -1;
    return pack_into(B, ldb, kn, K, K + (kx > 0 ? kx : 0), N, P, nthreads);
}

void icl_bf16_pack_rows(const float *E, long lde, int k0, int ke, int Kt, int N, uint16_t *P)
{
    if (ke <= 0 || N <= 0)
        return;
    int Ks = kpad(Kt);
    for (int jp = 0; jp < (N + PNR - 1) / PNR; jp++)
        pack_panel_kn(E, lde, ke, N, jp * PNR, P + (size_t)jp * PNR * Ks + (size_t)k0 * PNR);
}

/* The epilogue of a micro-tile: o[i][j] (i < mr, j < nc) + bias into y
 * (beta 0: overwrite, else add), or into y^T (yt: element (i, j) at
 * y[j ldy + i]).  o: mr rows of PNR. */
static inline void put_micro(float *y, long ldy, int yt, int mr, int nc, const float (*o)[PNR], const float *bias,
                             float beta)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nc; j++) {
            float t = o[i][j] + (bias ? bias[j] : 0.0f);
            float *yo = yt ? y + (size_t)j * ldy + i : y + (size_t)i * ldy + j;
            *yo = beta != 0.0f ? *yo + t : t;
        }
}

#if BF_X86
/* The first min(left, 16) floats of t (+ bias, when not NULL) into yo
 * (beta 0: overwrite, else add): one 16-float piece of a row of a
 * micro-tile's epilogue, from registers (micro_native) or from the sums
 * stored from AMX tiles (amx_put).  0 when left <= 0 (nothing done). */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) int
put16(float *yo, __m512 t, int left, const float *bias, float beta)
{
    if (left <= 0)
        return 0;
    __mmask16 m = (__mmask16)((1u << (left > 16 ? 16 : left)) - 1);
    if (bias)
        t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, bias));
    if (beta != 0.0f)
        t = _mm512_add_ps(_mm512_maskz_loadu_ps(m, yo), t);
    _mm512_mask_storeu_ps(yo, m, t);
    return 1;
}

/* y[i, 0..nc) for mr rows of A (bf16, stride lda, padded to Kp with zero)
 * times one packed panel: each sum runs over the pairs in order, one
 * vdpbf16ps per pair, whatever mr, nc or the caller's tiling. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline __attribute__((always_inline)) void
micro_native(int mr, int Kp, const uint16_t *A, long lda, const uint16_t *Pp, float *y, long ldy, int yt, int nc,
             const float *bias, float beta)
{
    __m512 acc[PMR][4];
    for (int i = 0; i < PMR; i++)
        for (int v = 0; v < 4; v++)
            acc[i][v] = _mm512_setzero_ps();
    if (!yt) /* the tile's rows of y, into L1 with write intent while the sums run (y is
                often out of L2: a store missing L1 stalls the next tile) */
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nc; v += 16)
                __builtin_prefetch(y + (size_t)i * ldy + v, 1, 3);
    for (int p = 0; p < Kp / 2; p++) {
        const uint16_t *bp = Pp + (size_t)p * 2 * PNR;
        __m512i b0 = _mm512_loadu_si512(bp), b1 = _mm512_loadu_si512(bp + 32), b2 = _mm512_loadu_si512(bp + 64),
                b3 = _mm512_loadu_si512(bp + 96);
        for (int i = 0; i < mr; i++) {
            int32_t w;
            memcpy(&w, A + (size_t)i * lda + 2 * p, 4);
            __m512bh a = (__m512bh)_mm512_set1_epi32(w);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a, (__m512bh)b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a, (__m512bh)b1);
            acc[i][2] = _mm512_dpbf16_ps(acc[i][2], a, (__m512bh)b2);
            acc[i][3] = _mm512_dpbf16_ps(acc[i][3], a, (__m512bh)b3);
        }
    }
    if (!yt) {
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < 4; v++) {
                if (!put16(y + (size_t)i * ldy + 16 * v, acc[i][v], nc - 16 * v, bias ? bias + 16 * v : NULL, beta))
                    break;
            }
        return;
    }
    float o[PMR][PNR];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++)
            _mm512_storeu_ps(o[i] + 16 * v, acc[i][v]);
    put_micro(y, ldy, yt, mr, nc, (const float(*)[PNR])o, bias, beta);
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void micro_any(int mr, int Kp, const uint16_t *A,
                                                                               long lda, const uint16_t *Pp, float *y,
                                                                               long ldy, int yt, int nc,
                                                                               const float *bias, float beta)
{
    switch (mr) { /* constant row counts: the accumulators stay in registers */
    case 1: micro_native(1, Kp, A, lda, Pp, y, ldy, yt, nc, bias, beta); break;
    case 2: micro_native(2, Kp, A, lda, Pp, y, ldy, yt, nc, bias, beta); break;
    case 3: micro_native(3, Kp, A, lda, Pp, y, ldy, yt, nc, bias, beta); break;
    case 4: micro_native(4, Kp, A, lda, Pp, y, ldy, yt, nc, bias, beta); break;
    case 5: micro_native(5, Kp, A, lda, Pp, y, ldy, yt, nc, bias, beta); break;
    default: micro_native(6, Kp, A, lda, Pp, y, ldy, yt, nc, bias, beta); break;
    }
}
#endif

#if BF_AMX
/* ---- AMX-BF16: blocks of AMR rows of A by one panel, four 16 x 16
 * float32 tiles of sums (tmm0-3), A in tmm4 (16 rows x 32 bf16), B in
 * tmm5-7 (16 pairs x 16 columns: the panel's pair rows, 64 bytes of each,
 * stride 2 PNR bf16).  Every sum: one TDPBF16PS per chunk of 32 k, in k
 * order from a zero tile, the last chunk zero-padded (bf16.h). */

/* Releases the tiles (tilerelease) after a thread's blocks (icl_amx_begin configured them). */
__attribute__((target("amx-tile"))) static void amx_end(void) { _tile_release(); }

/* The epilogue of an AMX block: the sums o[i][j] (i < mr, j < nc, stored
 * from the tiles, 64-byte aligned rows) + bias into y (beta 0: overwrite,
 * else add), or into y^T when yt (put_micro); micro_native's epilogue. */
__attribute__((target("avx512f"), always_inline)) static inline void amx_put(float *y, long ldy, int yt, int mr, int nc,
                                                       const float (*o)[PNR], const float *bias, float beta)
{
    if (yt) {
        put_micro(y, ldy, yt, mr, nc, o, bias, beta);
        return;
    }
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 4; v++) {
            if (!put16(y + (size_t)i * ldy + 16 * v, _mm512_load_ps(o[i] + 16 * v), nc - 16 * v,
                       bias ? bias + 16 * v : NULL, beta))
                break;
        }
}

/* One chunk: A tile from a (byte stride sa), the 4 B tiles from b (byte
 * stride sb), into the 4 sums. */
#define AMX_CHUNK(a, sa, b, sb)                                                                                      \
    do {                                                                                                             \
        _tile_loadd(4, (a), (sa));                                                                                   \
        _tile_loadd(5, (b), (sb));                                                                                   \
        _tile_loadd(6, (b) + 32, (sb));                                                                              \
        _tile_dpbf16ps(0, 4, 5);                                                                                     \
        _tile_loadd(7, (b) + 64, (sb));                                                                              \
        _tile_dpbf16ps(1, 4, 6);                                                                                     \
        _tile_loadd(5, (b) + 96, (sb));                                                                              \
        _tile_dpbf16ps(2, 4, 7);                                                                                     \
        _tile_dpbf16ps(3, 4, 5);                                                                                     \
    } while (0)

/* As micro_native, for mr <= AMR rows of A (bf16, stride lda, padded to Kp
 * with zero) times one packed panel, with the tiles configured (icl_amx_begin)
 * on this thread.  Fewer than AMR rows, and the last chunk when Kp is not
 * a multiple of 32, go through zero-padded copies (the sums of the rows
 * that exist do not change: rows of a tile product are independent, and
 * the padding adds exact zeros). */
__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16"))) static void
amx_block(int mr, int Kp, const uint16_t *A, long lda, const uint16_t *Pp, float *y, long ldy, int yt, int nc,
          const float *bias, float beta)
{
    _Alignas(64) float o[AMR][PNR];
    _Alignas(64) uint16_t ab[AMR][32];
    _Alignas(64) uint16_t bb[16][2 * PNR];
    const int full = Kp / 32, rem = Kp % 32;
    const long sa = lda * 2, sb = 2 * PNR * 2;
    if (!yt)
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nc; v += 16)
                __builtin_prefetch(y + (size_t)i * ldy + v, 1, 3);
    __asm__ volatile("" ::: "memory"); /* the tile intrinsics name no memory operands */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    if (mr == AMR) {
        for (int c = 0; c < full; c++)
            AMX_CHUNK(A + 32 * c, sa, Pp + (size_t)c * 32 * PNR, sb);
    } else {
        memset(ab, 0, sizeof ab);
        for (int c = 0; c < full; c++) {
            for (int i = 0; i < mr; i++)
                memcpy(ab[i], A + (size_t)i * lda + 32 * c, 64);
            __asm__ volatile("" ::: "memory");
            AMX_CHUNK(ab[0], 64, Pp + (size_t)c * 32 * PNR, sb);
            __asm__ volatile("" ::: "memory");
        }
    }
    if (rem) {
        memset(ab, 0, sizeof ab);
        memset(bb, 0, sizeof bb);
        for (int i = 0; i < mr; i++)
            memcpy(ab[i], A + (size_t)i * lda + 32 * full, (size_t)rem * 2);
        memcpy(bb, Pp + (size_t)full * 32 * PNR, (size_t)rem / 2 * 2 * PNR * 2);
        __asm__ volatile("" ::: "memory");
        AMX_CHUNK(ab[0], 64, bb[0], sb);
    }
    _tile_stored(0, o[0], PNR * 4);
    _tile_stored(1, o[0] + 16, PNR * 4);
    _tile_stored(2, o[0] + 32, PNR * 4);
    _tile_stored(3, o[0] + 48, PNR * 4);
    __asm__ volatile("" ::: "memory");
    amx_put(y, ldy, yt, mr, nc, (const float(*)[PNR])o, bias, beta);
}
#undef AMX_CHUNK

/* Two A tiles (rows 0-15 and 16-31, tmm4 and tmm5) by two B tiles
 * (columns 16 v0 .. 16 v0 + 31 of the panel, tmm6 and tmm7): sums
 * (rows 0-15, 16-31) x (columns v0, v0 + 1) in tmm0, tmm1, tmm2, tmm3. */
#define AMX_CHUNK2(a0, a1, sa0, sa1, b, sb)                                                                          \
    do {                                                                                                             \
        _tile_loadd(4, (a0), (sa0));                                                                                 \
        _tile_loadd(6, (b), (sb));                                                                                   \
        _tile_loadd(7, (b) + 32, (sb));                                                                              \
        _tile_dpbf16ps(0, 4, 6);                                                                                     \
        _tile_loadd(5, (a1), (sa1));                                                                                 \
        _tile_dpbf16ps(1, 4, 7);                                                                                     \
        _tile_dpbf16ps(2, 5, 6);                                                                                     \
        _tile_dpbf16ps(3, 5, 7);                                                                                     \
    } while (0)

/* As amx_block for AMR < mr <= 2 AMR rows: the panel in two halves of 32
 * columns, each a 2 x 2 block of tiles (half the B traffic per product of
 * amx_block's 1 x 4); rows beyond mr through a zero-padded copy.  Each sum
 * is the same sequence of TDPBF16PS as amx_block's: the same bits. */
__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16"))) static void
amx_block2(int mr, int Kp, const uint16_t *A, long lda, const uint16_t *Pp, float *y, long ldy, int yt, int nc,
           const float *bias, float beta)
{
    _Alignas(64) float o[2 * AMR][PNR];
    _Alignas(64) uint16_t ab[AMR][32], at[2 * AMR][32];
    _Alignas(64) uint16_t bb[16][2 * PNR];
    const int full = Kp / 32, rem = Kp % 32, m1 = mr - AMR; /* rows of the second A tile */
    const long sa = lda * 2, sb = 2 * PNR * 2;
    const uint16_t *A1 = A + (size_t)AMR * lda;
    if (!yt)
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nc; v += 16)
                __builtin_prefetch(y + (size_t)i * ldy + v, 1, 3);
    if (rem) { /* the last chunk's operands, zero-padded */
        memset(at, 0, sizeof at);
        memset(bb, 0, sizeof bb);
        for (int i = 0; i < mr; i++)
            memcpy(at[i], A + (size_t)i * lda + 32 * full, (size_t)rem * 2);
        memcpy(bb, Pp + (size_t)full * 32 * PNR, (size_t)rem / 2 * 2 * PNR * 2);
    }
    memset(ab, 0, sizeof ab);
    __asm__ volatile("" ::: "memory"); /* the tile intrinsics name no memory operands */
    for (int h = 0; h < (nc > 32 ? 2 : 1); h++) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        const uint16_t *Ph = Pp + 64 * h;
        if (m1 == AMR) {
            for (int c = 0; c < full; c++)
                AMX_CHUNK2(A + 32 * c, A1 + 32 * c, sa, sa, Ph + (size_t)c * 32 * PNR, sb);
        } else {
            for (int c = 0; c < full; c++) {
                for (int i = 0; i < m1; i++)
                    memcpy(ab[i], A1 + (size_t)i * lda + 32 * c, 64);
                __asm__ volatile("" ::: "memory");
                AMX_CHUNK2(A + 32 * c, ab[0], sa, 64, Ph + (size_t)c * 32 * PNR, sb);
                __asm__ volatile("" ::: "memory");
            }
        }
        if (rem)
            AMX_CHUNK2(at[0], at[AMR], 64, 64, bb[0] + 64 * h, sb);
        _tile_stored(0, o[0] + 32 * h, PNR * 4);
        _tile_stored(1, o[0] + 32 * h + 16, PNR * 4);
        _tile_stored(2, o[AMR] + 32 * h, PNR * 4);
        _tile_stored(3, o[AMR] + 32 * h + 16, PNR * 4);
    }
    __asm__ volatile("" ::: "memory");
    amx_put(y, ldy, yt, mr, nc, (const float(*)[PNR])o, bias, beta);
}

/* ---- K blocks: when a panel's K is long (the head's input gradient: K =
 * vocabulary), the blocks above stream the whole panel and their rows of A
 * past the core once per 32 rows, from memory.  amx_item then runs the
 * chunks in blocks of kblock (KBC: 2048 k, 256 KB of the panel and 96 rows
 * x 4 KB of A, within L2) for every 32 rows before the next block, the
 * sums kept in memory between blocks: float32 stored and loaded exactly,
 * the same TDPBF16PS sequence per sum, so the same bits as amx_rows. */
#define AMX_IR 96 /* rows of an item whose sums stay in memory */

/* Chunks c0 .. c1-1 (and the zero-padded last one when dorem) of mr <= 2 AMR
 * rows of A by columns 0 .. 32 nh - 1 of the panel, into the sums o (row
 * stride PNR): from zero tiles when first, else from o. */
__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16"))) static void
amx_part(int mr, int c0, int c1, int dorem, int first, int nh, int Kp, const uint16_t *A, long lda, const uint16_t *Pp,
         float (*o)[PNR])
{
    _Alignas(64) uint16_t ab[AMR][32], z[AMR][32], at[2 * AMR][32];
    _Alignas(64) uint16_t bb[16][2 * PNR];
    const int full = Kp / 32, rem = Kp % 32, m0 = mr < AMR ? mr : AMR, m1 = mr - AMR;
    const long sa = lda * 2, sb = 2 * PNR * 2;
    memset(z, 0, sizeof z);
    if (dorem) {
        memset(at, 0, sizeof at);
        memset(bb, 0, sizeof bb);
        for (int i = 0; i < mr; i++)
            memcpy(at[i], A + (size_t)i * lda + 32 * full, (size_t)rem * 2);
        memcpy(bb, Pp + (size_t)full * 32 * PNR, (size_t)rem / 2 * 2 * PNR * 2);
    }
    memset(ab, 0, sizeof ab);
    __asm__ volatile("" ::: "memory"); /* the tile intrinsics name no memory operands */
    for (int h = 0; h < nh; h++) {
        if (first) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
        } else {
            _tile_loadd(0, o[0] + 32 * h, PNR * 4);
            _tile_loadd(1, o[0] + 32 * h + 16, PNR * 4);
            _tile_loadd(2, o[AMR] + 32 * h, PNR * 4);
            _tile_loadd(3, o[AMR] + 32 * h + 16, PNR * 4);
        }
        const uint16_t *Ph = Pp + 64 * h;
        for (int c = c0; c < c1; c++) {
            /* rows 0-15: A itself when all there; rows 16-31: A, a copy, or zeros */
            const uint16_t *a0 = A + 32 * c, *a1 = A + (size_t)AMR * lda + 32 * c;
            long s0 = sa, s1 = sa;
            if (m0 < AMR) {
                for (int i = 0; i < m0; i++)
                    memcpy(ab[i], A + (size_t)i * lda + 32 * c, 64);
                a0 = ab[0], s0 = 64, a1 = z[0], s1 = 64;
            } else if (m1 < AMR) {
                for (int i = 0; i < m1; i++)
                    memcpy(ab[i], A + (size_t)(AMR + i) * lda + 32 * c, 64);
                a1 = ab[0], s1 = 64;
            }
            __asm__ volatile("" ::: "memory");
            AMX_CHUNK2(a0, a1, s0, s1, Ph + (size_t)c * 32 * PNR, sb);
            __asm__ volatile("" ::: "memory");
        }
        if (dorem)
            AMX_CHUNK2(at[0], at[AMR], 64, 64, bb[0] + 64 * h, sb);
        _tile_stored(0, o[0] + 32 * h, PNR * 4);
        _tile_stored(1, o[0] + 32 * h + 16, PNR * 4);
        _tile_stored(2, o[AMR] + 32 * h, PNR * 4);
        _tile_stored(3, o[AMR] + 32 * h + 16, PNR * 4);
    }
    __asm__ volatile("" ::: "memory");
}

/* mr <= 2 AMR rows by one panel: amx_block2, or amx_block for up to AMR. */
static void amx_rows(int mr, int Kp, const uint16_t *A, long lda, const uint16_t *Pp, float *y, long ldy, int yt,
                     int nc, const float *bias, float beta)
{
    if (mr > AMR)
        amx_block2(mr, Kp, A, lda, Pp, y, ldy, yt, nc, bias, beta);
    else
        amx_block(mr, Kp, A, lda, Pp, y, ldy, yt, nc, bias, beta);
}

/* y (+)= mr rows of A by one panel (+ bias), as amx_rows on every 2 AMR
 * rows; in K blocks (above) when the panel has more than kblock chunks. */
static void amx_item(int mr, int Kp, const uint16_t *A, long lda, const uint16_t *Pp, float *y, long ldy, int yt,
                     int nc, const float *bias, float beta)
{
    const int full = Kp / 32, kb = kblock;
    if (full <= kb) {
        for (int i = 0; i < mr; i += 2 * AMR) {
            float *yo = yt ? y + i : y + (size_t)i * ldy;
            amx_rows(mr - i < 2 * AMR ? mr - i : 2 * AMR, Kp, A + (size_t)i * lda, lda, Pp, yo, ldy, yt, nc, bias, beta);
        }
        return;
    }
    _Alignas(64) float o[AMX_IR][PNR];
    const int nkb = (full + kb - 1) / kb, nh = nc > 32 ? 2 : 1;
    for (int g = 0; g < mr; g += AMX_IR) {
        int gm = mr - g < AMX_IR ? mr - g : AMX_IR;
        const uint16_t *Ag = A + (size_t)g * lda;
        for (int b = 0; b < nkb; b++) {
            int c0 = b * kb, c1 = c0 + kb < full ? c0 + kb : full;
            for (int i = 0; i < gm; i += 2 * AMR)
                amx_part(gm - i < 2 * AMR ? gm - i : 2 * AMR, c0, c1, b == nkb - 1 && Kp % 32, b == 0, nh, Kp,
                         Ag + (size_t)i * lda, lda, Pp, o + i);
        }
        float *yo = yt ? y + g : y + (size_t)g * ldy;
        put_micro(yo, ldy, yt, gm, nc, (const float(*)[PNR])o, bias, beta);
    }
}
#endif

static inline float ftz(float x) { return fabsf(x) < 1.17549435e-38f ? copysignf(0.0f, x) : x; }

/* vdpbf16ps on one lane, as the hardware rounds: the odd product added
 * first, then the even one, each a single rounding (products of bf16
 * values are exact), denormal sums flushed to zero. */
static inline float dp_pair(float acc, uint32_t a, uint32_t b)
{
    acc = ftz(fmaf(from_bf16((uint16_t)(a >> 16)), from_bf16((uint16_t)(b >> 16)), ftz(acc)));
    return ftz(fmaf(from_bf16((uint16_t)a), from_bf16((uint16_t)b), acc));
}

static void micro_portable(int mr, int Kp, const uint16_t *A, long lda, const uint16_t *Pp, float *y, long ldy,
                           int yt, int nc, const float *bias, float beta)
{
    float o[PMR][PNR];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nc; j++) {
            float s = 0.0f;
            for (int p = 0; p < Kp / 2; p++) {
                uint32_t a, b;
                memcpy(&a, A + (size_t)i * lda + 2 * p, 4);
                memcpy(&b, Pp + (size_t)p * 2 * PNR + 2 * j, 4);
                s = dp_pair(s, a, b);
            }
            o[i][j] = s;
        }
    put_micro(y, ldy, yt, mr, nc, (const float(*)[PNR])o, bias, beta);
}

/* Work items of gemm_core: when the whole packed B is small enough to stay
 * in L3 (LLC_B bytes), MC rows of A by one panel, row-block-major, MC as
 * many rows as keep MC x Kp bf16 of A within L2_A bytes (1 MiB of L2 per
 * core here, the rest for the panel streaming by): a thread's rows of A
 * stay in its L2 while every panel passes by.  Else (the head's input
 * gradient, K 49152) PMB rows by one panel, panel-major: the panel stays
 * in L3 while the rows pass by.  (MC: a multiple of the micro-tile's rows,
 * unit: PMR, or AMR on the AMX path; PMB is a multiple of both.) */
#define L2_A (384 << 10)
#define LLC_B (8 << 20)

static int rows_per_block(int M, int N, int Kp, int unit, int *rowmajor)
{
    long mc = L2_A / (2L * (Kp ? Kp : 2)) / unit * unit;
    *rowmajor = 2.0 * (Kp ? Kp : 2) * N <= LLC_B;
    if (!*rowmajor || mc < unit)
        mc = *rowmajor ? unit : PMB;
    return mc > M ? M : (int)mc;
}

/* y[M, N] (+)= A[M, Kp] P (+ bias), A bf16 rows of stride lda; work items
 * as above, split statically over nt threads.  The order of the items
 * changes no sum. */
static void gemm_core(int M, int N, int Kp, const uint16_t *A, long lda, const uint16_t *P, const float *bias,
                      float *y, long ldy, int yt, float beta, int nt)
{
    int am = use_amx(), nat = use_native(), step = am ? 2 * AMR : PMR;
    int rowmajor, np = (N + PNR - 1) / PNR, mc = rows_per_block(M, N, Kp, step, &rowmajor), nmb = (M + mc - 1) / mc;
    long items = (long)np * nmb;
    if ((double)M * N * (Kp ? Kp : 1) < 65536.0 || items < 2)
        nt = 1;
#pragma omp parallel num_threads(nt)
    {
#if BF_AMX
        if (am)
            icl_amx_begin();
#endif
#pragma omp for schedule(static)
        for (long it = 0; it < items; it++) {
            int jp = rowmajor ? (int)(it % np) : (int)(it / nmb), i0 = (int)(rowmajor ? it / np : it % nmb) * mc;
            int j0 = jp * PNR, nc = N - j0 < PNR ? N - j0 : PNR, ie = M - i0 < mc ? M : i0 + mc;
            const uint16_t *Pp = P + (size_t)jp * PNR * Kp;
            const float *bj = bias ? bias + j0 : NULL;
#if BF_AMX
            if (am) {
                float *yo = yt ? y + (size_t)j0 * ldy + i0 : y + (size_t)i0 * ldy + j0;
                amx_item(ie - i0, Kp, A + (size_t)i0 * lda, lda, Pp, yo, ldy, yt, nc, bj, beta);
                continue;
            }
#endif
            for (int i = i0; i < ie; i += step) {
                int mr = ie - i < step ? ie - i : step;
                float *yo = yt ? y + (size_t)j0 * ldy + i : y + (size_t)i * ldy + j0;
#if BF_X86
                if (nat) {
                    micro_any(mr, Kp, A + (size_t)i * lda, lda, Pp, yo, ldy, yt, nc, bj, beta);
                    continue;
                }
#endif
                micro_portable(mr, Kp, A + (size_t)i * lda, lda, Pp, yo, ldy, yt, nc, bj, beta);
            }
        }
#if BF_AMX
        if (am)
            amx_end();
#endif
    }
    (void)nat, (void)am;
}

void icl_bf16_release_scratch(void) { icl_scratch_release(); }


/* A[M, Kt] = [x | xe | 0]: x [M, K] and xe [M, ke] rounded side by side,
 * zero up to Kt (K even when ke > 0; ke 0: x rounded and zero-padded). */
static void round_rows_ext(const float *x, long ldx, int K, const float *xe, long ldxe, int ke, int M, int Kt,
                           uint16_t *A, int nt)
{
#pragma omp parallel for schedule(static) num_threads(nt) if ((double)M * K >= 65536.0)
    for (int i = 0; i < M; i++) {
        uint16_t *a = A + (size_t)i * Kt;
        icl_bf16_from_f32_row(x + (size_t)i * ldx, a, (size_t)K);
        if (ke > 0)
            icl_bf16_from_f32_row(xe + (size_t)i * ldxe, a + K, (size_t)ke);
        memset(a + K + ke, 0, (size_t)(Kt - K - ke) * sizeof *a);
    }
}

#if BF_X86
/* round_transposed's block of 32 t by 16 m (AVX-512): rows t0 + 2q and
 * t0 + 2q + 1 rounded 16 m at a time (vcvtneps2bf16) and interleaved into
 * 16 pairs (a vector per q, lane m), then the 16 x 16 words transposed so
 * that row m gets its 16 pairs as 64 contiguous bytes. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void
round_block_native(const float *a, long lda, int T, int t0, int m0, int nm, uint16_t *A, int Tp)
{
    __mmask16 mm = (__mmask16)((1u << nm) - 1);
    __m512i w[16];
    for (int t = t0 + 32; t < t0 + 64 && t < T; t++) /* the next block's rows (round_transposed's order) */
        _mm_prefetch((const char *)(a + (size_t)t * lda + m0), _MM_HINT_T0);
    for (int q = 0; q < 16; q++) {
        int t = t0 + 2 * q;
        w[q] = _mm512_setzero_si512();
        if (t < T) {
            __m256bh h0 = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mm, a + (size_t)t * lda + m0));
            w[q] = _mm512_cvtepu16_epi32((__m256i)h0);
        }
        if (t + 1 < T) {
            __m256bh h1 = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mm, a + (size_t)(t + 1) * lda + m0));
            w[q] = _mm512_or_si512(w[q], _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)h1), 16));
        }
    }
    icl_tr16x16(w); /* w[m]: row m's 16 pairs */
    int np = (Tp - t0) / 2 < 16 ? (Tp - t0) / 2 : 16;
    __mmask16 pm = (__mmask16)((1u << np) - 1);
    for (int m = 0; m < nm; m++)
        _mm512_mask_storeu_epi32(A + (size_t)(m0 + m) * Tp + t0, pm, w[m]);
}
#endif

/* A[M, Tp] = a[T, M]^T rounded, zero-padded: blocks of 32 x 32, each row
 * piece rounded with the row converter, then transposed (AVX-512: blocks
 * of 32 x 16 rounded and transposed in registers). */
static void round_transposed(const float *a, long lda, int T, int M, uint16_t *A, int nt)
{
    int Tp = kpad(T), nbt = (T + 31) / 32, nbm = (M + 31) / 32;
#if BF_X86
    if (use_native()) {
        int nb16 = (M + 15) / 16;
#pragma omp parallel for schedule(static) num_threads(nt) if ((double)M * T >= 65536.0)
        for (long b = 0; b < (long)nbt * nb16; b++) {
            int t0 = (int)(b % nbt) * 32, m0 = (int)(b / nbt) * 16;
            round_block_native(a, lda, T, t0, m0, M - m0 < 16 ? M - m0 : 16, A, Tp);
        }
        return;
    }
#endif
#pragma omp parallel for schedule(static) num_threads(nt) if ((double)M * T >= 65536.0)
    for (long b = 0; b < (long)nbt * nbm; b++) {
        int t0 = (int)(b / nbm) * 32, m0 = (int)(b % nbm) * 32;
        int nt_ = T - t0 < 32 ? T - t0 : 32, nm = M - m0 < 32 ? M - m0 : 32;
        uint16_t tile[32][32];
        for (int t = 0; t < nt_; t++)
            icl_bf16_from_f32_row(a + (size_t)(t0 + t) * lda + m0, tile[t], (size_t)nm);
        for (int m = 0; m < nm; m++) {
            uint16_t *o = A + (size_t)(m0 + m) * Tp + t0;
            for (int t = 0; t < nt_; t++)
                o[t] = tile[t][m];
            if (t0 + nt_ == T && Tp > T)
                o[nt_] = 0;
        }
    }
}

int icl_bf16_gemm_packed(int M, int N, int K, const float *x, long ldx, const uint16_t *P, const float *bias,
                         float *y, long ldy, float beta, int nthreads)
{
    if (M <= 0 || N <= 0)
        return 0;
    int Kp = kpad(K), nt = nthreads < 1 ? 1 : nthreads;
    size_t need = (size_t)M * (Kp ? Kp : 2) * sizeof(uint16_t), got;
    uint16_t *A = icl_scratch_take(need, &got);
    if (!A)
        return -1;
    round_rows_ext(x, ldx, K, NULL, 0, 0, M, Kp, A, nt);
    gemm_core(M, N, Kp, A, Kp ? Kp : 2, P, bias, y, ldy, 0, beta, nt);
    icl_scratch_give(A, got);
    return 0;
}


int icl_bf16_gemm_packed_ext(int M, int N, int K, const float *x, long ldx, const float *xe, long ldxe, int ke,
                             int kx, const uint16_t *P, const float *bias, float *y, long ldy, float beta,
                             int nthreads)
{
    if (kx <= 0)
        return icl_bf16_gemm_packed(M, N, K, x, ldx, P, bias, y, ldy, beta, nthreads);
    if (M <= 0 || N <= 0)
        return 0;
    if ((K & 1) || ke > kx || (ke > 0 && !xe))
        return -1;
    int Kt = kpad(K + kx), nt = nthreads < 1 ? 1 : nthreads;
    size_t got;
    uint16_t *A = icl_scratch_take((size_t)M * Kt * sizeof(uint16_t), &got);
    if (!A)
        return -1;
    round_rows_ext(x, ldx, K, xe, ldxe, ke, M, Kt, A, nt);
    gemm_core(M, N, Kt, A, Kt, P, bias, y, ldy, 0, beta, nt);
    icl_scratch_give(A, got);
    return 0;
}

/* n rounded up to a multiple of 32 (64 bytes of bf16). */
static size_t up32(size_t n) { return (n + 31) & ~(size_t)31; }

int icl_bf16_gemm_fill(int M, int N, int K, const float *x, long ldx, icl_bf16_fill_fn fill, void *ctx, int group,
                       size_t work_bytes, const float *bias, float *y, long ldy, float beta, int nthreads)
{
    return icl_bf16_gemm_fill_ext(M, N, K, x, ldx, NULL, 0, 0, 0, NULL, fill, ctx, group, work_bytes, bias, y, ldy,
                                  beta, nthreads);
}

int icl_bf16_gemm_fill_ext(int M, int N, int K, const float *x, long ldx, const float *xe, long ldxe, int ke, int kx,
                           const uint16_t *Pe, icl_bf16_fill_fn fill, void *ctx, int group, size_t work_bytes,
                           const float *bias, float *y, long ldy, float beta, int nthreads)
{
    if (M <= 0 || N <= 0)
        return 0;
    if (kx < 0 || ke > kx || (kx > 0 && ((K & 1) || !Pe || (ke > 0 && !xe))))
        return -1;
    int Kb = kpad(K), Kp = kpad(K + kx), Ka = Kp ? Kp : 2, nt = nthreads < 1 ? 1 : nthreads, Kep = Kp - Kb;
    if (group < 1)
        group = 1;
    int np = (N + PNR - 1) / PNR, ng = (np + group - 1) / group, nmb = (M + PMB - 1) / PMB;
    long items = (long)ng * nmb;
    if ((double)M * N * Ka < 65536.0 || items < 2)
        nt = 1;
    size_t na = up32((size_t)M * Ka), npan = up32((size_t)group * PNR * Ka), per = npan + up32((work_bytes + 1) / 2);
    size_t need = (na + (size_t)nt * per) * sizeof(uint16_t), got;
    uint16_t *A = icl_scratch_take(need, &got);
    if (!A)
        return -1;
    round_rows_ext(x, ldx, K, xe, ldxe, ke, M, Kp, A, nt);
    int nat = use_native(), am = use_amx(), step = am ? 2 * AMR : PMR;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
#if BF_AMX
        if (am)
            icl_amx_begin();
#endif
        uint16_t *pan = A + na + (size_t)t * per;
        void *work = pan + npan;
        long i0 = items * t / T, i1 = items * (t + 1) / T;
        long have = -1;
        for (long it = i0; it < i1; it++) {
            long g = it / nmb;
            int jp0 = (int)g * group, ngp = np - jp0 < group ? np - jp0 : group;
            if (g != have) {
                fill(ctx, jp0, ngp, pan, work);
                /* with room: the panels spread to K + kx rows each (last
                 * first: they only move up), Pe's rows after W's */
                for (int q = kx ? ngp - 1 : -1; q >= 0; q--) {
                    uint16_t *d = pan + (size_t)q * PNR * Ka;
                    memmove(d, pan + (size_t)q * PNR * Kb, (size_t)PNR * Kb * sizeof *d);
                    memcpy(d + (size_t)Kb * PNR, Pe + (size_t)(jp0 + q) * PNR * Kep, (size_t)PNR * Kep * sizeof *d);
                }
                have = g;
            }
            int r0 = (int)(it % nmb) * PMB, re = M - r0 < PMB ? M : r0 + PMB;
            for (int q = 0; q < ngp; q++) {
                int j0 = (jp0 + q) * PNR, nc = N - j0 < PNR ? N - j0 : PNR;
                const uint16_t *Pp = pan + (size_t)q * PNR * Ka;
                const float *bj = bias ? bias + j0 : NULL;
#if BF_AMX
                if (am) {
                    amx_item(re - r0, Kp, A + (size_t)r0 * Ka, Ka, Pp, y + (size_t)r0 * ldy + j0, ldy, 0, nc, bj, beta);
                    continue;
                }
#endif
                for (int i = r0; i < re; i += step) {
                    int mr = re - i < step ? re - i : step;
                    float *yo = y + (size_t)i * ldy + j0;
#if BF_X86
                    if (nat) {
                        micro_any(mr, Kp, A + (size_t)i * Ka, Ka, Pp, yo, ldy, 0, nc, bj, beta);
                        continue;
                    }
#endif
                    micro_portable(mr, Kp, A + (size_t)i * Ka, Ka, Pp, yo, ldy, 0, nc, bj, beta);
                }
            }
        }
#if BF_AMX
        if (am)
            amx_end();
#endif
    }
    (void)nat, (void)am;
    icl_scratch_give(A, got);
    return 0;
}

int icl_bf16_gemm_tn(int M, int N, int T, const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                     int ctrans, int nthreads)
{
    if (M <= 0 || N <= 0 || T <= 0)
        return 0;
    int Tp = kpad(T), nt = nthreads < 1 ? 1 : nthreads;
    size_t na = (size_t)M * Tp, need = (na + icl_bf16_packed_size(T, N)) * sizeof(uint16_t), got;
    uint16_t *A = icl_scratch_take(need, &got);
    if (!A)
        return -1;
    uint16_t *P = A + na;
    round_transposed(a, lda, T, M, A, nt);
    if (icl_bf16_pack(b, ldb, 1, T, N, P, nt)) {
        icl_scratch_give(A, got);
        return -1;
    }
    gemm_core(M, N, Tp, A, Tp, P, NULL, c, ldc, ctrans, 1.0f, nt);
    icl_scratch_give(A, got);
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
    const icl_bf16_weight *b = w->data;
    if (icl_bf16_gemm_packed_ext(N, w->out, w->in, x, ldx, NULL, 0, 0, b->kx, b->fwd, NULL, y, ldy, beta,
                                 omp_get_max_threads()))
        nan_rows(y, ldy, N, w->out);
}

static void w_rows_forward(const icl_weight *w, const float *bias, float *y, long ldy, const float *x, long ldx, int N,
                           float beta, int nthreads)
{
    const icl_bf16_weight *b = w->data;
    if (icl_bf16_gemm_packed_ext(N, w->out, w->in, x, ldx, NULL, 0, 0, b->kx, b->fwd, bias, y, ldy, beta, nthreads))
        nan_rows(y, ldy, N, w->out);
}

static void w_input_grad(const icl_weight *w, float *dx, long lddx, float beta, const float *dy, long lddy, int N)
{
    const icl_bf16_weight *b = w->data;
    if (!b->bwd || icl_bf16_gemm_packed_ext(N, w->in, w->out, dy, lddy, NULL, 0, 0, b->kx, b->bwd, NULL, dx, lddx,
                                            beta, omp_get_max_threads()))
        nan_rows(dx, lddx, N, w->in);
}

/* dW += dy^T x, the result stored as it lies in the master's layout:
 * [out, in] += dy^T x (dy rounded transposed, x packed), Conv1D's
 * [in, out] += x^T dy.  (Storing transposed, ctrans 1, writes 6 floats to
 * each of 64 lines per micro-tile, scalar; for the head's 256-row chunks
 * that cost as much as the sums.)  Either way each element is the same
 * sum of the same exact products: the same bits. */
static void w_weight_grad(const icl_weight *w, const float *dy, long lddy, const float *x, long ldx, int N)
{
    int nt = omp_get_max_threads(), rc;
    if (!w->conv1d)
        rc = icl_bf16_gemm_tn(w->out, w->in, N, dy, lddy, x, ldx, w->grad, w->in, 0, nt);
    else
        rc = icl_bf16_gemm_tn(w->in, w->out, N, x, ldx, dy, lddy, w->grad, w->out, 0, nt);
    if (rc)
        nan_rows(w->grad, 1, 1, w->out * w->in);
}

static void w_dequantize_row(const icl_weight *w, int r, float *out)
{
    const icl_bf16_weight *b = w->data;
    int Kp = kpad(w->in + b->kx);
    const uint16_t *pp = b->fwd + (size_t)(r / PNR) * PNR * Kp + 2 * (r % PNR);
    for (int k = 0; k < w->in; k++)
        out[k] = from_bf16(pp[(size_t)(k / 2) * 2 * PNR + (k & 1)]);
}

/* The room rows icl_bf16_weight.kx keeps in the packs (the ROWS kernel,
 * fwd 2, is the same product). */
static int w_room(const icl_weight *w, int fwd)
{
    const icl_bf16_weight *b = w->data;
    return fwd || b->bwd ? b->kx : 0;
}

/* E's rows into the pack's room, then one product over W's rows and them. */
static void w_lowrank(const icl_weight *w, int fwd, float *y, long ldy, const float *x, long ldx, int N, float beta,
                      const float *xe, int ke, const float *E)
{
    const icl_bf16_weight *b = w->data;
    int K = fwd ? w->in : w->out, Nn = fwd ? w->out : w->in;
    uint16_t *P = (uint16_t *)(fwd ? b->fwd : b->bwd);
    if (!P || ke > b->kx || (K & 1)) {
        nan_rows(y, ldy, N, Nn);
        return;
    }
    icl_bf16_pack_rows(E, Nn, K, ke, K + b->kx, Nn, P);
    if (icl_bf16_gemm_packed_ext(N, Nn, K, x, ldx, xe, ke, ke, b->kx, P, NULL, y, ldy, beta, omp_get_max_threads()))
        nan_rows(y, ldy, N, Nn);
}

const icl_weight_ops icl_bf16_weight_ops = {
    .name = "bf16",
    .gemm_forward = w_gemm_forward,
    .rows_forward = w_rows_forward,
    .input_grad = w_input_grad,
    .weight_grad = w_weight_grad,
    .dequantize_row = w_dequantize_row,
    .room = w_room,
    .lowrank = w_lowrank,
};
