/* bench/gemm_shapes.c - BLIS sgemm alone at the shapes, strides and
 * transposes of a SmolLM2-135M training step (hidden 576, q|k|v 576+192+192
 * fused, gate|up 2 x 1536 fused, down 1536 -> 576, tied head 49152 x 576
 * over chunks of 256 target rows), each as lib/linear.c calls it:
 *   fwd  y[N,out]  = x[N,in] W^T          (icl_gemm N x out x in)
 *   dx   dx[N,in]  = dy[N,out] W          (icl_gemm N x in x out)
 *   dW   dW^T[in,out] += x^T dy           (icl_gemm in x out x N; W [out,in]
 *                                          row-major, so C has row stride 1)
 * as GFLOP/s and as a fraction of the fp32 FMA peak (bench/peak.c: PEAK1 and
 * PEAK2 GFLOP/s on 1 and 2 threads; defaults 116.1 and 227.6, this
 * machine's, override with $PEAK1 / $PEAK2), the minimum over REPS calls
 * (the minimum is what a shared machine disturbs least).
 * The kernels BLIS runs follow $BLIS_ARCH_TYPE (as in icl: icl_init's
 * icl_blis_setup; the line "kernels:" says which).  $WAYS lists variants,
 * ';'-separated, timed interleaved call by call (default "blis"):
 *   blis      as icl calls it (icl_gemm, BLIS's own partitioning)
 *   jc,ic,jr  2-thread products with that partitioning (bli_rntm_set_ways),
 *             e.g. "2,1,1", "1,2,1", "1,1,2" (1 thread: as blis)
 *   T         operands laid out otherwise: fwd from a row-major copy of
 *             W^T [in, out]; dW as dy^T x into a row-major [out, in]
 *   H         as blis, every operand on transparent huge pages (madvise)
 *   K         as blis with KC (BLIS's k blocking) set per call so that k
 *             splits into equal blocks (576: 2 x 288, not 256 + 256 + 64)
 *   S         as blis without BLIS's "sup" path for small dimensions
 *             (bli_rntm_disable_l3_sup): products with m < 512, n < 200 or
 *             k < 240 (zen3's thresholds: the head's 256-row chunks) go
 *             through the packed large-matrix path instead
 * Not run by make bench (no .sh): make build/bench/gemm_shapes, then run it.
 * usage: gemm_shapes [N [REPS [FILTER]]]   N rows (default 2048 = 8 x 256),
 * REPS (default 5), FILTER: only the shapes whose name contains it.
 * $HEAD_CHUNKS: time only that many of the head's N/256 chunks (default 8);
 * $ONLY2: skip the 1-thread runs; $ONLY1: skip the 2-thread runs; $CPUTIME:
 * time by process CPU seconds (see now()).  $HEAD_ROWS: rows per head chunk (default 256, lib/model.c's HEAD_ROWS:
 * its chunks with gradient checkpointing; without, a float32 or bf16 head takes 1280 rows of SmolLM2 at once, and
 * the "blis" variant here, like icl_gemm, takes BLIS's large path for them: WAYS=S).
 * The "step" line weighs each layer product by 30 (the layers), the head
 * by its N/256 chunks. */
#define _GNU_SOURCE /* madvise, MADV_HUGEPAGE: blis.h sets _POSIX_C_SOURCE */
#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cli.h"
#include "ops.h"
#include "util.h"

#include "bench_clock.h"

/* n floats on transparent huge pages (2 MiB; THP is "madvise" here) */
static float *huge(size_t n)
{
    size_t sz = (n * sizeof(float) + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
    float *p = aligned_alloc(2u << 20, sz);
    madvise(p, sz, MADV_HUGEPAGE);
    memset(p, 0, sz);
    return p;
}

static float *rnd(size_t n, unsigned *s)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) {
        *s = *s * 1664525u + 1013904223u;
        p[i] = ((*s >> 8) / 16777216.0f - 0.5f) * 0.1f;
    }
    return p;
}

#define MAXV 8
typedef struct {
    int ways[3]; /* jc, ic, jr for 2 threads; 0: BLIS's choice */
    int wt;      /* products on transposed operands (see the top) */
    int hp;      /* operands on huge pages */
    int kc;      /* k in blocks of equal size (see gemm) */
    int nosup;   /* BLIS's sup path off */
    char name[16];
} variant;

static void gemm(const variant *v, int th, int m, int n, int k, float beta, const float *a, long rsa, long csa,
                 const float *b_, long rsb, long csb, float *c, long rsc, long csc)
{
    const float *b = b_;
    if (v->kc) { /* KC: k split into ceil(k / KC0) equal blocks (a multiple of 8) */
        cntx_t cx = *bli_gks_query_cntx();
        blksz_t *b = bli_cntx_get_blksz(BLIS_KC, &cx);
        long kc0 = bli_blksz_get_def(BLIS_FLOAT, b), nb = (k + kc0 - 1) / kc0, kc = ((k + nb - 1) / nb + 7) / 8 * 8;
        bli_blksz_set_def(kc, BLIS_FLOAT, b);
        bli_blksz_set_max(kc, BLIS_FLOAT, b);
        float al = 1.0f, be = beta;
        rntm_t rntm = BLIS_RNTM_INITIALIZER;
        bli_rntm_set_num_threads(th, &rntm);
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &al, (float *)a, rsa, csa, (float *)b_, rsb, csb,
                     &be, c, rsc, csc, &cx, &rntm);
    } else if (v->nosup) {
        float al = 1.0f, be = beta;
        rntm_t rntm;
        bli_rntm_init_from_global(&rntm);
        bli_rntm_set_num_threads(th, &rntm);
        bli_rntm_disable_l3_sup(&rntm);
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &al, (float *)a, rsa, csa, (float *)b, rsb, csb,
                     &be, c, rsc, csc, NULL, &rntm);
    } else if (th == 2 && v->ways[0] > 0) {
        float al = 1.0f, be = beta;
        rntm_t rntm = BLIS_RNTM_INITIALIZER;
        bli_rntm_set_ways(v->ways[0], 1, v->ways[1], v->ways[2], 1, &rntm);
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &al, (float *)a, rsa, csa, (float *)b, rsb, csb,
                     &be, c, rsc, csc, NULL, &rntm);
    } else
        icl_gemm(m, n, k, 1.0f, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, th);
}

typedef struct {
    const char *name;
    int in, out, rows; /* rows: per call (the head: 256 per chunk) */
} proj;

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    bench_clock_init();
    int N = argc > 1 ? atoi(argv[1]) : 2048, reps = argc > 2 ? atoi(argv[2]) : 5;
    const char *filter = argc > 3 ? argv[3] : "";
    double peak[2] = {getenv("PEAK1") ? atof(getenv("PEAK1")) : 116.1,
                      getenv("PEAK2") ? atof(getenv("PEAK2")) : 227.6};
    const char *w = getenv("WAYS");
    int hchunks = getenv("HEAD_CHUNKS") ? atoi(getenv("HEAD_CHUNKS")) : 8;
    int hrows = getenv("HEAD_ROWS") ? atoi(getenv("HEAD_ROWS")) : 256;
    variant V[MAXV] = {{{0, 0, 0}, 0, 0, 0, 0, "blis"}};
    int nv = 1;
    if (w) { /* ';'-separated: "blis", "T", or "jc,ic,jr" */
        char buf[256];
        snprintf(buf, sizeof buf, "%s", w);
        nv = 0;
        for (char *sp, *t = strtok_r(buf, ";", &sp); t && nv < MAXV; t = strtok_r(NULL, ";", &sp)) {
            variant v = {{0, 0, 0}, !strcmp(t, "T"), !strcmp(t, "H") || !strcmp(t, "S"), !strcmp(t, "K"), !strcmp(t, "S"), ""};
            if (sscanf(t, "%d,%d,%d", &v.ways[0], &v.ways[1], &v.ways[2]) != 3)
                v.ways[0] = 0;
            snprintf(v.name, sizeof v.name, "%s", t);
            V[nv++] = v;
        }
    }
    static const proj P[] = {{"qkv", 576, 960, 0},     {"q", 576, 576, 0},         {"kv", 576, 192, 0},
                             {"o", 576, 576, 0},       {"gate_up", 576, 3072, 0},  {"down", 1536, 576, 0},
                             {"head", 576, 49152, 256}};
    printf("gemm_shapes: N %d, best of %d, kernels: %s\n", N, reps, icl_blis_arch());
    printf("%-6s %-8s %-4s %-18s %9s %7s %6s %9s %7s %6s\n", "var", "proj", "prod", "m x n x k", "1t_ms", "GF/s",
           "peak", "2t_ms", "GF/s", "peak");
    unsigned seed = 1;
    double tot[MAXV][2] = {{0}}, fltot = 0;
    for (size_t p = 0; p < sizeof P / sizeof P[0]; p++) {
        if (!strstr(P[p].name, filter))
            continue;
        int in = P[p].in, out = P[p].out, R = P[p].rows ? hrows : N, calls = N / R;
        if (calls > hchunks) /* the head: rate per chunk is what counts; time a few */
            calls = hchunks;
        float *W = rnd((size_t)in * out, &seed), *x = rnd((size_t)R * in, &seed), *dy = rnd((size_t)R * out, &seed);
        float *y = calloc((size_t)R * out, sizeof *y), *dx = calloc((size_t)R * in, sizeof *dx);
        float *g = calloc((size_t)in * out, sizeof *g), *Wt = malloc((size_t)in * out * sizeof *Wt);
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++)
                Wt[(size_t)i * out + o] = W[(size_t)o * in + i];
        float *hW = huge((size_t)in * out), *hx = huge((size_t)R * in), *hdy = huge((size_t)R * out);
        float *hy = huge((size_t)R * out), *hdx = huge((size_t)R * in), *hg = huge((size_t)in * out);
        memcpy(hW, W, (size_t)in * out * sizeof *W), memcpy(hx, x, (size_t)R * in * sizeof *x);
        memcpy(hdy, dy, (size_t)R * out * sizeof *dy);
        double best[MAXV][2][3];
        for (int th = 1; th <= 2; th++) {
            for (int v = 0; v < nv; v++)
                for (int k = 0; k < 3; k++)
                    best[v][th - 1][k] = 1e30;
            if ((th == 1 && getenv("ONLY2")) || (th == 2 && getenv("ONLY1")))
                continue;
            icl_set_threads(th);
            for (int r = 0; r < reps; r++)
                for (int k = 0; k < 3; k++)
                    for (int v = 0; v < nv; v++) { /* interleaved: the machine's drift hits all alike */
                        const variant *vv = &V[v];
                        double t0 = now();
                        for (int c = 0; c < calls; c++) {
                            if (vv->hp)
                                switch (k) {
                                case 0: gemm(vv, th, R, out, in, 0.0f, hx, in, 1, hW, 1, in, hy, out, 1); break;
                                case 1: gemm(vv, th, R, in, out, 0.0f, hdy, out, 1, hW, in, 1, hdx, in, 1); break;
                                default: gemm(vv, th, in, out, R, 1.0f, hx, 1, in, hdy, out, 1, hg, 1, in); break;
                                }
                            else if (!vv->wt)
                                switch (k) {
                                case 0: gemm(vv, th, R, out, in, 0.0f, x, in, 1, W, 1, in, y, out, 1); break;
                                case 1: gemm(vv, th, R, in, out, 0.0f, dy, out, 1, W, in, 1, dx, in, 1); break;
                                default: gemm(vv, th, in, out, R, 1.0f, x, 1, in, dy, out, 1, g, 1, in); break;
                                }
                            else /* fwd from a row-major W^T copy; dW as dy^T x into row-major [out, in] */
                                switch (k) {
                                case 0: gemm(vv, th, R, out, in, 0.0f, x, in, 1, Wt, out, 1, y, out, 1); break;
                                case 1: gemm(vv, th, R, in, out, 0.0f, dy, out, 1, W, in, 1, dx, in, 1); break;
                                default: gemm(vv, th, out, in, R, 1.0f, dy, 1, out, x, in, 1, g, in, 1); break;
                                }
                        }
                        double d = now() - t0;
                        best[v][th - 1][k] = d < best[v][th - 1][k] ? d : best[v][th - 1][k];
                    }
        }
        static const char *nm[3] = {"fwd", "dx", "dW"};
        for (int v = 0; v < nv; v++)
            for (int k = 0; k < 3; k++) {
                int mm[3] = {R, R, in}, nn[3] = {out, in, out}, kk[3] = {in, out, R};
                char dims[40];
                snprintf(dims, sizeof dims, "%dx%dx%d%s", mm[k], nn[k], kk[k], calls > 1 ? "*" : "");
                double fl = 2.0 * mm[k] * nn[k] * kk[k] * calls, g1 = fl / best[v][0][k] * 1e-9,
                       g2 = fl / best[v][1][k] * 1e-9;
                printf("%-6s %-8s %-4s %-18s %9.3f %7.1f %5.0f%% %9.3f %7.1f %5.0f%%\n", V[v].name, P[p].name, nm[k],
                       dims, best[v][0][k] * 1e3, g1, 100 * g1 / peak[0], best[v][1][k] * 1e3, g2,
                       100 * g2 / peak[1]);
                if (strcmp(P[p].name, "q") && strcmp(P[p].name, "kv")) { /* in the step (fused into qkv) */
                    double L = P[p].rows ? (double)(N / R) / calls : 30; /* 30 layers; the head's chunks */
                    tot[v][0] += L * best[v][0][k], tot[v][1] += L * best[v][1][k];
                    if (v == 0)
                        fltot += L * fl;
                }
            }
        free(hW), free(hx), free(hdy), free(hy), free(hdx), free(hg);
        free(W), free(Wt), free(x), free(dy), free(y), free(dx), free(g);
    }
    for (int v = 0; fltot > 0 && v < nv; v++)
        printf("%-6s %-8s %-4s %-18s %9.3f %7.1f %5.0f%% %9.3f %7.1f %5.0f%%\n", V[v].name, "step", "all",
               "30layers+head", tot[v][0] * 1e3, fltot / tot[v][0] * 1e-9, 100 * fltot / tot[v][0] * 1e-9 / peak[0],
               tot[v][1] * 1e3, fltot / tot[v][1] * 1e-9, 100 * fltot / tot[v][1] * 1e-9 / peak[1]);
    return 0;
}
