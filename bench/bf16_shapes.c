/* bench/bf16_shapes.c - lib/bf16.c's products at the shapes and in the calls
 * of a SmolLM2-135M bf16 training step (lib/linear.c's ICL_WEIGHT_BF16 row:
 * hidden 576, q|k|v fused 576 -> 960, o 576 -> 576, gate|up fused 576 ->
 * 3072, down 1536 -> 576, tied head 576 -> 49152 over chunks of 256 rows),
 * each in its three forms:
 *   fwd  y[N,out] = x[N,in] W^T   (icl_bf16_gemm_packed: M N, N out, K in)
 *   dx   dx[N,in] = dy[N,out] W   (icl_bf16_gemm_packed: M N, N in, K out)
 *   dW   dW += dy^T x             (icl_bf16_gemm_tn)
 * each through icl_bf16_weight_ops, the calls training makes
 * as GFLOP/s and as a fraction of the bf16 dot-product peak measured in the
 * same run (vdpbf16ps on 12 independent accumulators, bench/peak.c's loop,
 * times the thread count), the minimum time over REPS calls.  The "share"
 * table gives each product's part of the step's bf16 GEMM time (layer products
 * weighed by 30, the head by its N/256 chunks); the last line is the whole
 * step's products: the GFLOP/s the step would reach if it did nothing else.
 * Time: with 1 thread the process's CPU seconds (what the work costs,
 * whatever else the machine runs), else wall seconds.  Operands on huge
 * pages (icl_xcalloc_huge) as in training; the packed weights as
 * lib/model.c allocates them (malloc).
 * usage: bf16_shapes [THREADS [N [REPS [FILTER]]]]  (defaults 1, 2048, 3;
 * FILTER: only shapes whose name contains it).  The best path is timed (the
 * first line names it): ICL_BF16_AMX=0 in the environment times the
 * AVX512-BF16 one on a CPU with AMX; the peak column is vdpbf16ps's either
 * way (AMX-BF16 passes it). */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bf16.h"
#include "cli.h"
#include "util.h"

#include "bench_clock.h"
#include "peak_kernels.h"

/* 1 thread: the process's CPU seconds; more: wall seconds. */
static double clk(int nt) { return nt == 1 ? bench_cpu_s() : icl_now(); }

static volatile float sink;

/* One thread's bf16 peak (FLOP/s, best of 3 runs of ~0.2 s, CPU time). */
static double peak1(void)
{
    long iters = 1 << 20;
    double best = 0;
    for (int r = 0; r < 4; r++) {
        double t0 = clk(1);
        sink += k_bf16(iters);
        double s = clk(1) - t0;
        if (s < 0.1) {
            iters *= 2, r--;
            continue;
        }
        double v = 64.0 * 12 * iters / s;
        best = v > best ? v : best;
    }
    return best;
}

typedef struct {
    const char *name;
    int in, out, rows, times; /* rows per call, calls per step */
} shape;

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    int nt = icl_set_threads(argc > 1 ? atoi(argv[1]) : 1), N = argc > 2 ? atoi(argv[2]) : 2048;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    const char *filter = argc > 4 ? argv[4] : "";
    if (N < 1 || reps < 1) {
        fprintf(stderr, "usage: bf16_shapes [THREADS [N [REPS [FILTER]]]]\n");
        return 2;
    }
    if (!icl_bf16_native())
        fprintf(stderr, "bf16_shapes: this CPU lacks AVX512-BF16; the portable path is timed, peak n/a\n");
    int hr = N < 256 ? N : 256;
    shape sh[] = {{"qkv", 576, 960, N, 30},    {"o", 576, 576, N, 30},         {"gate_up", 576, 3072, N, 30},
                  {"down", 1536, 576, N, 30}, {"head", 576, 49152, hr, (N + hr - 1) / hr}};
    int ns = sizeof sh / sizeof sh[0];
    double pk = icl_bf16_native() ? peak1() * nt : 0;
    size_t maxw = (size_t)576 * 49152, nx = (size_t)N * 3072, ny = nx > (size_t)hr * 49152 ? nx : (size_t)hr * 49152;
    /* on huge pages, as lib/model.c's activations and gradients */
    float *x = icl_xcalloc_huge(nx, sizeof(float)), *dy = icl_xcalloc_huge(ny, sizeof(float)),
          *w = icl_xcalloc_huge(maxw, sizeof(float)), *y = icl_xcalloc_huge(ny, sizeof(float)),
          *dw = icl_xcalloc_huge(maxw, sizeof(float));
    uint16_t *pf = malloc(sizeof(uint16_t) * icl_bf16_packed_size(576, 49152)),
             *pb = malloc(sizeof(uint16_t) * icl_bf16_packed_size(49152, 576));
    if (!x || !dy || !w || !y || !dw || !pf || !pb) {
        fprintf(stderr, "bf16_shapes: out of memory\n");
        return 1;
    }
    unsigned s = 1;
    for (size_t i = 0; i < ny; i++) {
        s = s * 1664525u + 1013904223u;
        dy[i] = (float)((s >> 8) / 16777216.0 - 0.5) * 1e-3f;
        if (i < nx)
            x[i] = dy[i] * 1e3f;
    }
    for (size_t i = 0; i < maxw; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = (float)((s >> 8) / 16777216.0 - 0.5) * 0.05f;
    }
    printf("# bf16 path %s; %d thread%s, N %d rows (head chunks of %d); %s time; bf16 peak %.1f GFLOP/s (same run); "
           "load %s",
           icl_bf16_path_name(), nt, nt == 1 ? "" : "s", N, hr, nt == 1 ? "process CPU" : "wall", pk / 1e9, "");
    FILE *la = fopen("/proc/loadavg", "r");
    char lbuf[64] = "?\n";
    if (la) {
        if (!fgets(lbuf, sizeof lbuf, la))
            strcpy(lbuf, "?\n");
        fclose(la);
    }
    fputs(lbuf, stdout);
    printf("%-8s %-4s %6s %6s %6s %8s %7s\n", "shape", "form", "rows", "in", "out", "GFLOP/s", "%peak");
    static const char *form[3] = {"fwd", "dx", "dW"};
    double tsec[5][3] = {{0}}, tot = 0, fl_tot = 0;
    for (int i = 0; i < ns; i++) {
        if (!strstr(sh[i].name, filter))
            continue;
        int in = sh[i].in, out = sh[i].out, R = sh[i].rows;
        icl_bf16_pack(w, in, 0, in, out, pf, nt); /* B = W^T [in, out] */
        icl_bf16_pack(w, in, 1, out, in, pb, nt); /* B = W [out, in] */
        icl_bf16_weight bw = {pf, pb, 0};
        icl_weight W = {ICL_WEIGHT_BF16, 0, out, in, 0, &bw, dw};
        for (int f = 0; f < 3; f++) {
            double best = 1e30;
            for (int r = 0; r < reps + 1; r++) { /* one untimed warm-up */
                double t0 = clk(nt);
                if (f == 0)
                    icl_bf16_weight_ops.gemm_forward(&W, y, out, x, in, R, 0.0f);
                else if (f == 1)
                    icl_bf16_weight_ops.input_grad(&W, y, in, 0.0f, dy, out, R);
                else
                    icl_bf16_weight_ops.weight_grad(&W, dy, out, x, in, R);
                double t = clk(nt) - t0;
                if (y[0] != y[0] || dw[0] != dw[0]) { /* the ops' out-of-memory mark */
                    fprintf(stderr, "bf16_shapes: out of memory\n");
                    return 1;
                }
                if (r && t < best)
                    best = t;
            }
            double fl = 2.0 * R * in * out, g = fl / best;
            tsec[i][f] = best * sh[i].times;
            tot += tsec[i][f];
            fl_tot += fl * sh[i].times;
            printf("%-8s %-4s %6d %6d %6d %8.1f %6.1f%%\n", sh[i].name, form[f], R, in, out, g / 1e9,
                   pk > 0 ? 100 * g / pk : 0.0);
        }
    }
    printf("share of the step's product time (layers x30, head x%d chunks):\n", sh[4].times);
    for (int i = 0; i < ns; i++) {
        if (!strstr(sh[i].name, filter))
            continue;
        printf("  %-8s fwd %5.1f%%  dx %5.1f%%  dW %5.1f%%\n", sh[i].name, 100 * tsec[i][0] / tot,
               100 * tsec[i][1] / tot, 100 * tsec[i][2] / tot);
    }
    printf("step products: %.3f s, %.1f GFLOP/s, %.1f%% of peak (%.1f tok/s if the step were only these)\n", tot,
           fl_tot / tot / 1e9, pk > 0 ? 100 * fl_tot / tot / pk : 0.0, N / tot);
    icl_bf16_release_scratch();
    free(x), free(dy), free(w), free(y), free(dw), free(pf), free(pb);
    return 0;
}
