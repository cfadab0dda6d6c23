/* bench/own_gemm.c - a hand-written AVX-512 float32 GEMM against BLIS at the
 * layer shapes of a SmolLM2-135M training step (issue 14's experiment: can
 * an own kernel beat BLIS 0.9's zen3 kernels at K = 576 / 1536, N = 2048?).
 *
 * The products, as lib/linear.c calls icl_gemm (N = 8 x 256 rows):
 *   fwd  y[N,out]  = x[N,in] W^T      A row-major, B = W^T (column-major)
 *   dx   dx[N,in]  = dy[N,out] W      A row-major, B row-major
 *   dW   dW^T[in,out] += x^T dy       C column-major: computed as
 *                                     C^T = dy^T x (A column-major, B row-major)
 * for q|k|v (576 -> 960), o (576 -> 576), gate|up (576 -> 3072), down (1536 -> 576).
 *
 * The own GEMM ("own"): C row-major; an MR x NR = 14 x 32 register tile (28
 * zmm accumulators, two zmm of B and one broadcast of A per row and k); B
 * packed into KC x NR panels (KC x NC blocks sized for L2), A read in place
 * when it is row-major (broadcasts from 14 row pointers, no packing) or
 * packed per 14-row micro-panel when it is column-major (a copy of 14
 * contiguous floats per k); k split into equal blocks of at most $KC (576:
 * one block by default); threads take disjoint ranges of 14-row panels of C
 * and each packs the B it needs (no barrier inside a product).
 *
 * Each shape is timed own/BLIS interleaved call by call, the minimum over
 * REPS calls (after one untimed call), on 1 thread and then on 2 ($ONLY1 /
 * $ONLY2 to skip one), by wall clock or with $CPUTIME by process CPU seconds
 * (bench_clock.h: then GFLOP/s are per CPU-second and the percentages
 * against one core's peak, whatever the thread count).  The results are checked against BLIS: "err" is the
 * largest |own - blis| / (0.05^2 sqrt(k)) (the operands are uniform in
 * +-0.05: the size of a sum of k random-sign products).
 * Knobs: $KC (576) the largest k block (k splits into equal blocks); $NC
 * (576) and $BBLK (163840 floats) bound the B block KC x NC kept in L2;
 * $PACKA (2): 0 reads a row-major A in place, 1 packs every micro-panel, 2
 * packs only rows whose stride puts them in the same L1 sets (a multiple of
 * 4 KiB give or take 1 KiB: gate|up's dx, rows of 3072 floats); $REUSE=1
 * packs B once and keeps it while the same weight comes back (fwd and dx:
 * what a step could do, since the weights change once per step; dW's B is
 * activations, always packed); $HOT=KC times the micro-kernel alone on
 * operands in L1/L2 (its ceiling) and exits.  $PEAK1 / $PEAK2: the fp32
 * peaks for the percentages (116.1 / 227.6, bench/peak.c on this machine).
 * Not run by make bench: make build/bench/own_gemm, then
 * usage: own_gemm [REPS [FILTER]]   (default 5) */
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ops.h"
#include "util.h"

#include "bench_clock.h"

#define MR 14
#define NR 32

#if defined(__AVX512F__)
static int PACKA = 2, KCMAX = 576, NCMAX = 576, BBLK = 163840; /* B block KC x NC at most BBLK floats (L2) */

/* C[MR, NR] (+)= A[MR, kc] B[kc, NR]: A(i, k) at a[i * rsa + k * csa], B
 * packed (NR floats per k).  first: C = acc + beta C (beta 0: C not read). */
static inline __attribute__((always_inline)) void kernel(int kc, const float *a, long rsa, long csa, const float *b,
                                                         float *c, long ldc, int first, float beta)
{
    __m512 c0[MR], c1[MR];
    for (int i = 0; i < MR; i++)
        c0[i] = c1[i] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(a[i * rsa]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
        a += csa;
        b += NR;
    }
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        if (first && beta == 0) {
            _mm512_storeu_ps(ci, c0[i]);
            _mm512_storeu_ps(ci + 16, c1[i]);
        } else {
            __m512 s = first ? _mm512_set1_ps(beta) : _mm512_set1_ps(1.0f);
            _mm512_storeu_ps(ci, _mm512_fmadd_ps(s, _mm512_loadu_ps(ci), c0[i]));
            _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(s, _mm512_loadu_ps(ci + 16), c1[i]));
        }
    }
}

/* A in place, row-major (csa == 1) */
static __attribute__((noinline)) void kernel_rows(int kc, const float *a, long lda, const float *b, float *c, long ldc,
                                                  int first, float beta)
{
    kernel(kc, a, lda, 1, b, c, ldc, first, beta);
}

/* A packed (MR floats per k) */
static __attribute__((noinline)) void kernel_packed(int kc, const float *a, const float *b, float *c, long ldc,
                                                    int first, float beta)
{
    kernel(kc, a, 1, MR, b, c, ldc, first, beta);
}

/* B[p0:p0+kc, j0:j0+nc] into NR-wide panels of kc x NR (zero-padded) at d */
static void pack_b(const float *b, long rsb, long csb, int j0, int nc, int p0, int kc, float *d0)
{
    for (int jp = 0; jp < nc; jp += NR) {
        float *d = d0 + (size_t)jp * kc;
        int w = nc - jp < NR ? nc - jp : NR;
        if (csb == 1) {
            for (int kk = 0; kk < kc; kk++) {
                const float *s = b + (size_t)(p0 + kk) * rsb + j0 + jp;
                memcpy(d + (size_t)kk * NR, s, sizeof(float) * w);
                for (int j = w; j < NR; j++)
                    d[(size_t)kk * NR + j] = 0;
            }
        } else {
            for (int j = 0; j < NR; j++) {
                if (j >= w) {
                    for (int kk = 0; kk < kc; kk++)
                        d[(size_t)kk * NR + j] = 0;
                    continue;
                }
                const float *s = b + (size_t)(j0 + jp + j) * csb + (size_t)p0 * rsb;
                for (int kk = 0; kk < kc; kk++)
                    d[(size_t)kk * NR + j] = s[(size_t)kk * rsb];
            }
        }
    }
}

/* the blocking: k in equal blocks of at most KCMAX, n in blocks of NR
 * multiples with KC x NC at most BBLK floats */
static void blocking(int n, int k, int *kcb, int *ncb)
{
    int nkb = (k + KCMAX - 1) / KCMAX;
    *kcb = (k + nkb - 1) / nkb;
    int ncmax = BBLK / *kcb < NCMAX ? BBLK / *kcb : NCMAX;
    ncmax = ncmax < NR ? NR : ncmax;
    int nnb = (n + ncmax - 1) / ncmax;
    *ncb = ((n + nnb - 1) / nnb + NR - 1) / NR * NR;
}

/* all of B packed, block (j0, p0) at j0 k + p0 round_up(nc, NR) */
static void pack_b_all(const float *b, long rsb, long csb, int n, int k, float *d)
{
    int kcb, ncb;
    blocking(n, k, &kcb, &ncb);
    for (int j0 = 0; j0 < n; j0 += ncb) {
        int nc = n - j0 < ncb ? n - j0 : ncb, ncp = (nc + NR - 1) / NR * NR;
        for (int p0 = 0; p0 < k; p0 += kcb)
            pack_b(b, rsb, csb, j0, nc, p0, k - p0 < kcb ? k - p0 : kcb, d + (size_t)j0 * k + (size_t)p0 * ncp);
    }
}

/* one thread: rows [m0, m1) of C; bpk: all of B packed (pack_b_all), or
 * NULL to pack each block into pb */
static void own_part(int m0, int m1, int n, int k, const float *a, long rsa, long csa, const float *b, long rsb,
                     long csb, const float *bpk, float beta, float *c, long ldc, float *pb, float *pa)
{
    int kcb, ncb;
    blocking(n, k, &kcb, &ncb);
    for (int j0 = 0; j0 < n; j0 += ncb) {
        int nc = n - j0 < ncb ? n - j0 : ncb, ncp = (nc + NR - 1) / NR * NR;
        for (int p0 = 0; p0 < k; p0 += kcb) {
            int kc = k - p0 < kcb ? k - p0 : kcb;
            if (bpk)
                pb = (float *)bpk + (size_t)j0 * k + (size_t)p0 * ncp;
            else
                pack_b(b, rsb, csb, j0, nc, p0, kc, pb);
            int first = p0 == 0;
            for (int i0 = m0; i0 < m1; i0 += MR) {
                const float *ai = a + (size_t)i0 * rsa + (size_t)p0 * csa;
                int h = m1 - i0 < MR ? m1 - i0 : MR;
                if (h < MR) { /* the last rows: A packed with zero rows, C through a tile */
                    for (int kk = 0; kk < kc; kk++)
                        for (int i = 0; i < MR; i++)
                            pa[(size_t)kk * MR + i] = i < h ? ai[(size_t)kk * csa + (size_t)i * rsa] : 0;
                    for (int jp = 0; jp < nc; jp += NR) {
                        float tile[MR * NR];
                        int w = nc - jp < NR ? nc - jp : NR;
                        kernel_packed(kc, pa, pb + (size_t)jp * kc, tile, NR, 1, 0);
                        for (int i = 0; i < h; i++)
                            for (int j = 0; j < w; j++) {
                                float *cc = c + (size_t)(i0 + i) * ldc + j0 + jp + j;
                                *cc = tile[i * NR + j] + (first ? (beta == 0 ? 0 : beta * *cc) : *cc);
                            }
                    }
                    continue;
                }
                /* PACKA 0: pack only a column-major A; 1: always; 2: also a row-major A whose rows
                 * are a multiple of 4 KiB apart up to 1 KiB (the rows share L1 sets) */
                long rb = (rsa * 4) % 4096;
                int pack = csa != 1 || PACKA == 1 || (PACKA == 2 && (rb < 1024 || rb > 3072));
                if (pack) { /* pack the micro-panel: MR floats per k */
                    if (rsa == 1)
                        for (int kk = 0; kk < kc; kk++)
                            memcpy(pa + (size_t)kk * MR, ai + (size_t)kk * csa, sizeof(float) * MR);
                    else
                        for (int kk = 0; kk < kc; kk++)
                            for (int i = 0; i < MR; i++)
                                pa[(size_t)kk * MR + i] = ai[(size_t)kk * csa + (size_t)i * rsa];
                }
                for (int jp = 0; jp < nc; jp += NR) {
                    float *cij = c + (size_t)i0 * ldc + j0 + jp;
                    if (nc - jp < NR) { /* the last columns: through a tile */
                        float tile[MR * NR];
                        int w = nc - jp;
                        if (!pack)
                            kernel_rows(kc, ai, rsa, pb + (size_t)jp * kc, tile, NR, 1, 0);
                        else
                            kernel_packed(kc, pa, pb + (size_t)jp * kc, tile, NR, 1, 0);
                        for (int i = 0; i < MR; i++)
                            for (int j = 0; j < w; j++) {
                                float *cc = cij + (size_t)i * ldc + j;
                                *cc = tile[i * NR + j] + (first ? (beta == 0 ? 0 : beta * *cc) : *cc);
                            }
                    } else if (!pack)
                        kernel_rows(kc, ai, rsa, pb + (size_t)jp * kc, cij, ldc, first, beta);
                    else
                        kernel_packed(kc, pa, pb + (size_t)jp * kc, cij, ldc, first, beta);
                }
            }
        }
    }
}

/* C = A B + beta C, alpha 1 (an experiment, not a general GEMM: no alpha) */
static void own_gemm(int nt, int m, int n, int k, const float *a, long rsa, long csa, const float *b, long rsb,
                     long csb, float beta, float *c, long rsc, long csc, int reuse)
{
    if (csc != 1) { /* C column-major: C^T = B^T A^T */
        own_gemm(nt, n, m, k, b, csb, rsb, a, csa, rsa, beta, c, csc, rsc, reuse);
        return;
    }
    /* reuse: B is a weight, packed once and kept while (b, n, k, strides) are the same */
    static const float *kb;
    static long kn, kk, krs, kcs;
    static float *kept;
    const float *bpk = NULL;
    if (reuse) {
        if (!kept)
            kept = aligned_alloc(64, sizeof(float) * 3072 * 1600);
        if (kb != b || kn != n || kk != k || krs != rsb || kcs != csb) {
            pack_b_all(b, rsb, csb, n, k, kept);
            kb = b, kn = n, kk = k, krs = rsb, kcs = csb;
        }
        bpk = kept;
    }
    int panels = (m + MR - 1) / MR;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        static __thread float *pb, *pa;
        if (!pb) {
            pb = aligned_alloc(64, sizeof(float) * 1536 * 3072 + 64);
            pa = aligned_alloc(64, sizeof(float) * MR * 2048 + 64);
        }
        int p0 = panels * t / T, p1 = panels * (t + 1) / T;
        own_part(p0 * MR, p1 * MR < m ? p1 * MR : m, n, k, a, rsa, csa, b, rsb, csb, bpk, beta, c, rsc, pb, pa);
    }
}

static float *rnd(size_t n, unsigned *s)
{
    float *p = icl_xcalloc_huge(n, sizeof *p);
    for (size_t i = 0; i < n; i++) {
        *s = *s * 1664525u + 1013904223u;
        p[i] = ((*s >> 8) / 16777216.0f - 0.5f) * 0.1f;
    }
    return p;
}

typedef struct {
    const char *name;
    int in, out;
} proj;

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    bench_clock_init();
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    const char *filter = argc > 2 ? argv[2] : NULL;
    if (getenv("KC"))
        KCMAX = atoi(getenv("KC"));
    int reuse = getenv("REUSE") && atoi(getenv("REUSE"));
    if (getenv("PACKA"))
        PACKA = atoi(getenv("PACKA"));
    if (getenv("BBLK"))
        BBLK = atoi(getenv("BBLK"));
    if (getenv("NC"))
        NCMAX = atoi(getenv("NC"));
    double pk[3] = {0, getenv("PEAK1") ? atof(getenv("PEAK1")) : 116.1, getenv("PEAK2") ? atof(getenv("PEAK2")) : 227.6};
    if (getenv("HOT")) { /* the micro-kernel alone on operands in L1/L2: its ceiling */
        int kc = atoi(getenv("HOT")), it = 20000;
        float *pa = icl_xcalloc_huge((size_t)MR * kc, 4), *pbb = icl_xcalloc_huge((size_t)NR * kc * 4, 4);
        float *cc = icl_xcalloc_huge((size_t)MR * 128, 4);
        double t0 = now();
        for (int i = 0; i < it; i++)
            kernel_packed(kc, pa, pbb + (size_t)(i & 3) * NR * kc, cc + (i & 3) * NR, 128, 0, 1);
        double dt = now() - t0, fl = 2.0 * MR * NR * kc * it * 1e-9;
        printf("micro-kernel %dx%d, kc %d, A packed, B 4 panels: %.1f GFLOP/s (%.1f%% of %.1f)\n", MR, NR, kc,
               fl / dt, 100 * fl / dt / pk[1], pk[1]);
        return 0;
    }
    const int N = 2048; /* 8 x 256 */
    proj pr[] = {{"q|k|v", 576, 960}, {"o", 576, 576}, {"gate|up", 576, 3072}, {"down", 1536, 576}};
    unsigned sd = 7;
    float *x = rnd((size_t)N * 3072, &sd), *dy = rnd((size_t)N * 3072, &sd), *W = rnd((size_t)3072 * 1536, &sd);
    float *c1 = icl_xcalloc_huge((size_t)N * 3072, 4), *c2 = icl_xcalloc_huge((size_t)N * 3072, 4);
    printf("own_gemm: %dx%d tile, KC <= %d, NC <= %d, KC x NC <= %d, PACKA %d; BLIS kernels %s; %s; best of %d\n",
           MR, NR, KCMAX, NCMAX, BBLK, PACKA,
           icl_blis_arch(), cputime ? "CPU seconds" : "wall seconds", reps);
    printf("%-8s %-4s %-16s %2s %9s %9s %7s %7s %7s %9s\n", "proj", "prod", "m x n x k", "t", "blis GF/s", "own GF/s",
           "blis%", "own%", "own/bl", "err");
    double tot[3][2] = {{0}};
    for (int th = 1; th <= 2; th++) {
        if ((th == 1 && getenv("ONLY2")) || (th == 2 && getenv("ONLY1")))
            continue;
        icl_set_threads(th);
        for (size_t s = 0; s < sizeof pr / sizeof *pr; s++)
            for (int pd = 0; pd < 3; pd++) {
                static const char *pn[3] = {"fwd", "dx", "dW"};
                int in = pr[s].in, out = pr[s].out;
                char lab[64];
                snprintf(lab, sizeof lab, "%s %s", pr[s].name, pn[pd]);
                if (filter && !strstr(lab, filter))
                    continue;
                int m = 0, n = 0, k = 0;
                double tb = 1e30, to = 1e30, err = 0;
                memset(c1, 0, sizeof(float) * N * 3072), memset(c2, 0, sizeof(float) * N * 3072);
                for (int r = 0; r <= reps; r++) {
                    for (int v = 0; v < 2; v++) {
                        float *c = v ? c2 : c1;
                        double t0 = now();
                        if (pd == 0) { /* y[N,out] = x[N,in] W^T, W [out,in] */
                            m = N, n = out, k = in;
                            if (v)
                                own_gemm(th, N, n, k, x, in, 1, W, 1, in, 0, c, out, 1, reuse);
                            else
                                icl_gemm(N, out, in, 1, x, in, 1, W, 1, in, 0, c, out, 1, 0);
                        } else if (pd == 1) { /* dx[N,in] = dy[N,out] W */
                            m = N, n = in, k = out;
                            if (v)
                                own_gemm(th, N, n, k, dy, out, 1, W, in, 1, 0, c, in, 1, reuse);
                            else
                                icl_gemm(N, in, out, 1, dy, out, 1, W, in, 1, 0, c, in, 1, 0);
                        } else { /* dW^T[in,out] (rs 1, cs in) += x^T dy */
                            m = in, n = out, k = N;
                            if (v)
                                own_gemm(th, in, out, N, x, 1, in, dy, out, 1, 1, c, 1, in, 0);
                            else
                                icl_gemm(in, out, N, 1, x, 1, in, dy, out, 1, 1, c, 1, in, 0);
                        }
                        double dt = now() - t0;
                        if (r > 0)
                            *(v ? &to : &tb) = dt < (v ? to : tb) ? dt : (v ? to : tb);
                    }
                    if (r == 0) { /* check: the same product from the same C (dW: accumulate into equal C) */
                        size_t cnt = (size_t)m * n;
                        double scale = 0.05 * 0.05 * sqrt((double)k); /* |a||b| sqrt(k): random signs */
                        for (size_t i = 0; i < cnt; i++) {
                            double e = fabs((double)c1[i] - c2[i]) / scale;
                            err = e > err ? e : err;
                        }
                    }
                }
                double fl = 2.0 * m * n * k * 1e-9;
                double P = cputime ? pk[1] : pk[th]; /* CPU seconds: per CPU-second, against one core */
                printf("%-8s %-4s %5dx%5dx%5d %2d %9.1f %9.1f %6.1f%% %6.1f%% %6.3fx %9.2e\n", pr[s].name, pn[pd], m,
                       n, k, th, fl / tb, fl / to, 100 * fl / tb / P, 100 * fl / to / P, tb / to, err);
                tot[th][0] += tb;
                tot[th][1] += to;
                fflush(stdout);
            }
        if (tot[th][0] > 0)
            printf("sum of the shapes' times, %d thread(s): blis %.4f s, own %.4f s: own/blis %.3fx faster\n", th,
                   tot[th][0], tot[th][1], tot[th][0] / tot[th][1]);
    }
    return 0;
}
#else
int main(void)
{
    (void)bench_clock_init, (void)now;
    fprintf(stderr, "own_gemm: needs AVX-512F (build with -march=native on such a CPU)\n");
    return 1;
}
#endif
