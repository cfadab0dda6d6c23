/* bench/bf16.c - lib/bf16.c's product y = x W^T (bf16 operands, float32
 * sums, vdpbf16ps) against BLIS sgemm on the same shapes, same run: the
 * forward products of SmolLM2-135M (hidden 576, q|k|v 960, gate|up 3072,
 * down 1536 -> 576, head 49152) for M rows (default 2048 = 8 x 256 tokens).
 * Compare the GFLOP/s with bench-peak's bf16 and fp32 peaks.
 * usage: bf16 [THREADS [M [REPS]]] */
#include <stdio.h>
#include <stdlib.h>

#include "bf16.h"
#include "cli.h"
#include "ops.h"
#include "util.h"

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    int nt = icl_set_threads(argc > 1 ? atoi(argv[1]) : 0), M = argc > 2 ? atoi(argv[2]) : 2048;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    if (M < 1 || reps < 1) {
        fprintf(stderr, "usage: bf16 [THREADS [M [REPS]]]\n");
        return 2;
    }
    static const int shapes[][2] = {{576, 960}, {576, 576}, {576, 3072}, {1536, 576}, {576, 49152}}; /* in, out */
    int ns = sizeof shapes / sizeof shapes[0];
    size_t maxw = 0;
    for (int s = 0; s < ns; s++)
        maxw = (size_t)shapes[s][0] * shapes[s][1] > maxw ? (size_t)shapes[s][0] * shapes[s][1] : maxw;
    float *x = malloc(sizeof(float) * M * 1536), *w = malloc(sizeof(float) * maxw), *y = malloc(sizeof(float) * M * 49152);
    uint16_t *wb = malloc(sizeof(uint16_t) * maxw);
    if (!x || !w || !y || !wb) {
        fprintf(stderr, "bf16: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)M * 1536; i++)
        x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < maxw; i++)
        w[i] = (float)((i * 104729) % 1000) / 20000.0f - 0.025f;
    icl_bf16_from_f32_row(w, wb, maxw);
    printf("# bf16 path %s; BLIS %s; %d threads, %d rows\n", icl_bf16_path_name(), icl_blis_arch(), nt, M);
    double tb_all = 0, ts_all = 0, fl_all = 0;
    for (int s = 0; s < ns; s++) {
        int in = shapes[s][0], out = shapes[s][1];
        double tb = 1e30, ts = 1e30, fl = 2.0 * M * in * out;
        for (int r = 0; r < reps; r++) {
            double t0 = icl_now();
            if (icl_bf16_gemm(M, out, in, x, in, wb, in, NULL, y, out, 0.0f, nt)) {
                fprintf(stderr, "bf16: out of memory\n");
                return 1;
            }
            double t1 = icl_now();
            icl_gemm(M, out, in, 1.0f, x, in, 1, w, 1, in, 0.0f, y, out, 1, 0);
            double t2 = icl_now();
            tb = t1 - t0 < tb ? t1 - t0 : tb;
            ts = t2 - t1 < ts ? t2 - t1 : ts;
        }
        printf("in %5d out %5d: bf16 %7.1f GFLOP/s | sgemm %7.1f GFLOP/s | ratio %.2fx\n", in, out, fl / tb / 1e9,
               fl / ts / 1e9, ts / tb);
        tb_all += tb, ts_all += ts, fl_all += fl;
    }
    printf("all: bf16 %.1f GFLOP/s | sgemm %.1f GFLOP/s | ratio %.2fx\n", fl_all / tb_all / 1e9, fl_all / ts_all / 1e9,
           ts_all / tb_all);
    free(x);
    free(w);
    free(y);
    free(wb);
    return 0;
}
