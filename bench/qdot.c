/* bench/qdot.c - the decoding products of SmolLM2-135M (hidden 576, 30
 * layers, q 576, k/v 192, FFN 1536, vocab 49152 tied head) from quantized
 * weights (lib/qdot.c, icl_qmatvec) against the float32 rows kernel
 * (linear.c, ICL_LIN_ROWS) on the same weights dequantized, same run.
 * Layers use TYPE (default Q4_1, the real file's), the head Q8_0 (the real
 * file's token_embd).  Reports, per batch and thread count, the time of all
 * the model's products for one decoding step and the weight bytes streamed
 * per second.
 * usage: qdot [THREADS [BATCH [REPS [TYPE]]]]   TYPE: q4_0 q4_1 q8_0 (the
 * K-quants need rows that are a multiple of 256: 576 is not) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gguf.h"
#include "linear.h"
#include "qdot.h"
#include "quant.h"
#include "util.h"

typedef struct {
    int in, out, count, qtype;
    void *q;
    float *f;
} shape;

int main(int argc, char **argv)
{
    int nt = argc > 1 ? atoi(argv[1]) : 1, B = argc > 2 ? atoi(argv[2]) : 1, reps = argc > 3 ? atoi(argv[3]) : 20;
    int lt = ICL_GGML_Q4_1;
    if (argc > 4) { /* K-quants do not fit: SmolLM2's rows of 576 are not a multiple of 256 */
        static const struct { const char *n; int t; } names[] = {
            {"q4_0", ICL_GGML_Q4_0}, {"q4_1", ICL_GGML_Q4_1}, {"q8_0", ICL_GGML_Q8_0}};
        lt = -1;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (!strcasecmp(argv[4], names[i].n))
                lt = names[i].t;
    }
    int L = 30;
    if (nt < 1 || B < 1 || reps < 1 || lt < 0) {
        fprintf(stderr, "usage: qdot [THREADS [BATCH [REPS [q4_0|q4_1|q8_0]]]]\n");
        return 2;
    }
    icl_set_threads(nt);
    /* one layer's weights, reused by all L layers (the real model streams
     * 30 different ones: take L copies when memory allows) */
    shape sh[] = {{576, 576 + 2 * 192, L, lt, 0, 0}, {576, 576, L, lt, 0, 0}, {576, 2 * 1536, L, lt, 0, 0},
                  {1536, 576, L, lt, 0, 0}, {576, 49152, 1, ICL_GGML_Q8_0, 0, 0}};
    int ns = sizeof sh / sizeof sh[0];
    char err[256];
    double qbytes = 0, fbytes = 0, flops = 0;
    for (int s = 0; s < ns; s++) {
        size_t n = (size_t)sh[s].in * sh[s].out * sh[s].count, rs = icl_ggml_row_size(sh[s].qtype, sh[s].in);
        size_t qsz = rs * sh[s].out * sh[s].count;
        float *src = malloc(n * sizeof *src);
        sh[s].q = malloc(qsz);
        sh[s].f = malloc(n * sizeof(float));
        if (!src || !sh[s].q || !sh[s].f) {
            fprintf(stderr, "qdot: out of memory\n");
            return 1;
        }
        uint64_t st = 12345 + s;
        for (size_t i = 0; i < n; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            src[i] = (float)((int)(st >> 40) - (1 << 23)) / (float)(1 << 23) * 0.05f;
        }
        int qt = sh[s].qtype;
        if (icl_quantize(qt, src, (int64_t)n, sh[s].q, qsz, "bench", err, sizeof err)) {
            fprintf(stderr, "qdot: %s\n", err);
            return 1;
        }
        if (icl_dequantize(qt, sh[s].q, qsz, sh[s].f, (int64_t)n, "bench", err, sizeof err)) {
            fprintf(stderr, "qdot: %s\n", err);
            return 1;
        }
        free(src);
        qbytes += (double)qsz;
        fbytes += (double)n * sizeof(float);
        flops += 2.0 * n * B;
    }
    float *x = malloc(sizeof(float) * 1536 * B), *y = malloc(sizeof(float) * 49152 * B);
    for (int i = 0; i < 1536 * B; i++)
        x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    double best_q = 1e30, best_f = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = icl_now();
        for (int s = 0; s < ns; s++) {
            size_t rs = icl_ggml_row_size(sh[s].qtype, sh[s].in);
            for (int c = 0; c < sh[s].count; c++)
                if (icl_qmatvec(sh[s].qtype, (const char *)sh[s].q + rs * sh[s].out * c, sh[s].out, sh[s].in, x,
                                sh[s].in, B, y, sh[s].out, 0.0f, NULL, nt)) {
                    fprintf(stderr, "qdot: icl_qmatvec failed\n");
                    return 1;
                }
        }
        double t1 = icl_now();
        for (int s = 0; s < ns; s++)
            for (int c = 0; c < sh[s].count; c++) {
                icl_linear l = {{ICL_WEIGHT_F32, 0, sh[s].out, sh[s].in, 0,
                                 sh[s].f + (size_t)sh[s].in * sh[s].out * c, NULL}, NULL, NULL, NULL, 0, NULL};
                icl_linear_forward(&l, y, sh[s].out, x, sh[s].in, B, 0.0f, ICL_LIN_ROWS, nt, NULL);
            }
        double t2 = icl_now();
        best_q = t1 - t0 < best_q ? t1 - t0 : best_q;
        best_f = t2 - t1 < best_f ? t2 - t1 : best_f;
    }
    printf("threads %d batch %d: %s+Q8_0 head (%s) %8.2f ms/step %6.1f GB/s %6.1f GFLOP/s | f32 rows %8.2f ms/step "
           "%6.1f GB/s | speedup %.2fx\n",
           nt, B, icl_ggml_type_name(lt), icl_qdot_path_name(), best_q * 1e3, qbytes / best_q / 1e9,
           flops / best_q / 1e9, best_f * 1e3, fbytes / best_f / 1e9, best_f / best_q);
    for (int s = 0; s < ns; s++) {
        free(sh[s].q);
        free(sh[s].f);
    }
    free(x);
    free(y);
    return 0;
}
