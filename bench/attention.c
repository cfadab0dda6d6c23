/* bench/attention.c - attention forward+backward of one layer at T = 2048
 * (8 heads of 64, one thread): one document against 8 packed documents of 256,
 * which the block skipping of lib/ops.c should make about 8x cheaper in
 * FLOPs.  Run by bench/model.sh; best of 3 each, interleaved. */
#include <stdio.h>
#include <stdlib.h>

#include "ops.h"
#include "cli.h"
#include "util.h"

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    icl_set_threads(1);
    int B = 1, T = 2048, H = 8, hd = 64;
    long ld = 3L * H * hd;
    icl_attn_shape s = {B, T, H, H, hd, ld, 0, (long)H * hd, 2L * H * hd, 0.125f, 0};
    size_t N = (size_t)B * T;
    float *qkv = calloc(N * ld, 4), *out = calloc(N * H * hd, 4), *lse = calloc((size_t)B * H * T, 4),
          *dq = calloc(N * ld, 4), *dout = calloc(N * H * hd, 4);
    int32_t *doc = malloc(4 * N);
    for (int t = 0; t < T; t++)
        doc[t] = t / 256;
    double best[2] = {1e9, 1e9};
    for (int r = 0; r < 3; r++)
        for (int p = 0; p < 2; p++) {
            double t0 = icl_now();
            icl_attention_forward(out, (long)H * hd, lse, qkv, p ? doc : NULL, &s);
            icl_attention_backward(dq, dout, (long)H * hd, out, (long)H * hd, lse, qkv, p ? doc : NULL, &s);
            double t = icl_now() - t0;
            best[p] = t < best[p] ? t : best[p];
        }
    printf("attention T=2048, 8 heads x 64, forward+backward of one layer, 1 thread: one document %.3f s, "
           "8 packed documents of 256 %.3f s (%.1fx)\n", best[0], best[1], best[0] / best[1]);
    free(qkv);
    free(out);
    free(lse);
    free(dq);
    free(dout);
    free(doc);
    return 0;
}
