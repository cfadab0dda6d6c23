/* bench/lora_linear.c - where a LoRA training step of SmolLM2-135M spends
 * its time per thread count: the products of one decoder layer (hidden 576,
 * q|k|v 576+192+192, gate|up 2 x 1536, down 1536 -> 576) with r-R adapters
 * on every projection (all-linear: q, k, v on the fused q|k|v weight, o,
 * gate, up on the fused gate|up weight, down), through icl_linear_forward /
 * icl_linear_backward exactly as the model calls them (the forward keeping
 * the adapters' down products for the backward: icl_linear.xa), frozen
 * float32 base.
 * For each product: the base alone (forward GEMM, input gradient) and the
 * adapters' extra work (forward with adapters minus without; backward
 * likewise), the minimum over REPS repetitions (the minimum is what a
 * shared machine disturbs least), for 1 and 2 threads in the same run, and
 * the 2-thread speed-up of each.  A second table times each adapter
 * product alone through BLIS (icl_gemm) as linear.c called them before its
 * own kernels (lora_rows_expand replaced "up" and "dx+=t A"; lora_skinny
 * "down" and "t=dy B"; lora_reduce "dB" and "dA": lora13b).
 * Not run by make bench (no .sh): make build/bench/lora_linear, then run it.
 * usage: lora_linear [N [R [REPS]]]   N rows (default 2048 = 8 x 256), R
 * rank (16), REPS (10) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "linear.h"
#include "ops.h"
#include "util.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
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

typedef struct {
    const char *name;
    int in, out, nl;
    int lo[2], lout[2]; /* adapters: output offset and width */
} proj;

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    int N = argc > 1 ? atoi(argv[1]) : 2048, R = argc > 2 ? atoi(argv[2]) : 16, reps = argc > 3 ? atoi(argv[3]) : 10;
    /* q,k,v on q|k|v (3 adapters), o, gate+up on gate|up (2), down */
    static const proj P[] = {{"qkv", 576, 960, 3, {0, 576}, {576, 192}},
                             {"o", 576, 576, 1, {0}, {576}},
                             {"gate_up", 576, 3072, 2, {0, 1536}, {1536, 1536}},
                             {"down", 1536, 576, 1, {0}, {576}}};
    unsigned seed = 1;
    printf("lora_linear: N %d, r %d, best of %d; ms per call (1 thread, 2 threads, speed-up)\n", N, R, reps);
    printf("%-8s %-22s %9s %9s %7s\n", "proj", "part", "1t_ms", "2t_ms", "2t/1t");
    double tot[2][4] = {{0}};
    for (size_t p = 0; p < sizeof P / sizeof P[0]; p++) {
        int in = P[p].in, out = P[p].out;
        float *W = rnd((size_t)in * out, &seed), *x = rnd((size_t)N * in, &seed), *dy = rnd((size_t)N * out, &seed);
        float *y = calloc((size_t)N * out, sizeof *y), *dx = calloc((size_t)N * in, sizeof *dx);
        icl_lora lo[3];
        /* the v adapter of q|k|v sits at 768 */
        int offs[3] = {0, 576, 768}, outs[3] = {576, 192, 192};
        int nl = p == 0 ? 3 : P[p].nl;
        for (int i = 0; i < nl; i++) {
            int o = p == 0 ? outs[i] : P[p].lout[i], off = p == 0 ? offs[i] : P[p].lo[i];
            lo[i] = (icl_lora){R, in, o, off, 2.0f, rnd((size_t)R * in, &seed), rnd((size_t)o * R, &seed),
                               calloc((size_t)R * in, sizeof(float)), calloc((size_t)o * R, sizeof(float)), 0.0f, 0, NULL, NULL};
        }
        icl_linear base = {{ICL_WEIGHT_F32, 0, out, in, 0, W, NULL}, NULL, NULL, NULL, 0, NULL};
        icl_linear with = base;
        with.lora = lo;
        with.n_lora = nl;
        with.xa = malloc(icl_linear_xa_size(&with, N) * sizeof(float)); /* as the model: kept down products */
        float *work = malloc(icl_linear_work(&with, N) * sizeof(float));
        double t[2][4];
        for (int th = 1; th <= 2; th++) {
            icl_set_threads(th);
            double best[4] = {1e9, 1e9, 1e9, 1e9};
            for (int r = 0; r < reps; r++) {
                double t0 = now();
                icl_linear_forward(&base, y, out, x, in, N, 0.0f, ICL_LIN_GEMM, th, NULL);
                double t1 = now();
                icl_linear_forward(&with, y, out, x, in, N, 0.0f, ICL_LIN_GEMM, th, work);
                double t2 = now();
                icl_linear_backward(&base, dx, in, 0.0f, dy, out, x, in, N, NULL);
                double t3 = now();
                icl_linear_backward(&with, dx, in, 0.0f, dy, out, x, in, N, work);
                double t4 = now();
                double d[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
                for (int k = 0; k < 4; k++)
                    best[k] = d[k] < best[k] ? d[k] : best[k];
            }
            for (int k = 0; k < 4; k++)
                t[th - 1][k] = best[k];
        }
        const char *part[4] = {"fwd base", "fwd adapters (extra)", "bwd base dx", "bwd adapters (extra)"};
        for (int k = 0; k < 4; k++) {
            double a = k & 1 ? t[0][k] - t[0][k - 1] : t[0][k], b = k & 1 ? t[1][k] - t[1][k - 1] : t[1][k];
            tot[0][k] += a;
            tot[1][k] += b;
            printf("%-8s %-22s %9.3f %9.3f %6.2fx\n", P[p].name, part[k], a * 1e3, b * 1e3, a / b);
        }
        for (int i = 0; i < nl; i++) {
            free((void *)lo[i].A), free((void *)lo[i].B), free(lo[i].dA), free(lo[i].dB);
        }
        free(W), free(x), free(dy), free(y), free(dx), free(work), free(with.xa);
    }
    const char *part[4] = {"fwd base", "fwd adapters", "bwd base dx", "bwd adapters"};
    double s1 = 0, s2 = 0;
    for (int k = 0; k < 4; k++) {
        printf("%-8s %-22s %9.3f %9.3f %6.2fx\n", "layer", part[k], tot[0][k] * 1e3, tot[1][k] * 1e3,
               tot[0][k] / tot[1][k]);
        s1 += tot[0][k], s2 += tot[1][k];
    }
    printf("%-8s %-22s %9.3f %9.3f %6.2fx\n", "layer", "all", s1 * 1e3, s2 * 1e3, s1 / s2);

    /* the adapter's own products, as linear.c calls them (one adapter, in -> out, y/dx row stride ld) */
    static const int sh[][3] = {{576, 576, 960}, {576, 192, 960}, {576, 1536, 3072}, {1536, 576, 576}};
    printf("\n%-14s %-28s %9s %9s %7s\n", "in->out", "product (m x n x k)", "1t_ms", "2t_ms", "2t/1t");
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        int in = sh[s][0], out = sh[s][1];
        long ld = sh[s][2] > in ? sh[s][2] : in;
        float *x = rnd((size_t)N * ld, &seed), *y = rnd((size_t)N * ld, &seed), *A = rnd((size_t)R * in, &seed);
        float *B = rnd((size_t)out * R, &seed), *xa = rnd((size_t)N * R, &seed), *g = rnd((size_t)R * ld, &seed);
        const char *nm[6] = {"down xa=x A^T", "up y+=xa B^T", "dB+=dy^T xa", "t=dy B", "dA+=t^T x", "dx+=t A"};
        double best[2][6];
        for (int th = 1; th <= 2; th++) {
            icl_set_threads(th);
            for (int k = 0; k < 6; k++)
                best[th - 1][k] = 1e9;
            for (int r = 0; r < reps; r++)
                for (int k = 0; k < 6; k++) {
                    double t0 = now();
                    switch (k) {
                    case 0: icl_gemm(N, R, in, 1.0f, x, ld, 1, A, 1, in, 0.0f, xa, R, 1, 0); break;
                    case 1: icl_gemm(N, out, R, 2.0f, xa, R, 1, B, 1, R, 1.0f, y, ld, 1, 0); break;
                    case 2: icl_gemm(out, R, N, 2.0f, y, 1, ld, xa, R, 1, 1.0f, g, R, 1, 0); break;
                    case 3: icl_gemm(N, R, out, 2.0f, y, ld, 1, B, R, 1, 0.0f, xa, R, 1, 0); break;
                    case 4: icl_gemm(R, in, N, 1.0f, xa, 1, R, x, ld, 1, 1.0f, g, in, 1, 0); break;
                    default: icl_gemm(N, in, R, 1.0f, xa, R, 1, A, in, 1, 1.0f, y, ld, 1, 0); break;
                    }
                    double d = now() - t0;
                    best[th - 1][k] = d < best[th - 1][k] ? d : best[th - 1][k];
                }
        }
        for (int k = 0; k < 6; k++) {
            char lab[32], prod[40];
            snprintf(lab, sizeof lab, "%d->%d", in, out);
            int mm[6] = {N, N, out, N, R, N}, nn[6] = {R, out, R, R, in, in}, kk[6] = {in, R, N, out, N, R};
            snprintf(prod, sizeof prod, "%s %dx%dx%d", nm[k], mm[k], nn[k], kk[k]);
            double fl = 2.0 * mm[k] * nn[k] * kk[k];
            printf("%-14s %-28s %9.3f %9.3f %6.2fx  %5.1f GF/s 1t\n", lab, prod, best[0][k] * 1e3, best[1][k] * 1e3,
                   best[0][k] / best[1][k], fl / best[0][k] * 1e-9);
        }
        free(x), free(y), free(A), free(B), free(xa), free(g);
    }
    return 0;
}
