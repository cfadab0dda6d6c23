/* bench/attn_step.c - the attention of one SmolLM2-135M training step:
 * icl_attention_forward + icl_attention_backward for 30 layers at batch 8 x
 * 256, 9 query heads and 3 KV heads of 64 (GQA), q|k|v rows as model.c lays
 * them out.  Usage: attn_step THREADS REPS [DOCS]: DOCS 0 (default) no doc
 * ids (full causal rows, as step_budget's attention part), N > 0 each row
 * packed with documents of lengths cycling through 40, 90, 150, 60, ...
 * (N distinct lengths; icl-train's packing).  Prints, per repetition, the
 * wall and process CPU seconds of the 30 layers, and the best of each.
 * $BF16=1: bf16 operands (icl_attn_shape.bf16, `--dtype bf16`'s attention:
 * AMX tiles or AVX512-BF16 where there are, icl_attention_bf16_kernels).
 * For A/B runs of two builds (the program uses only ops.h's API). */
#include <stdio.h>
#include <stdlib.h>

#include "bench_clock.h"
#include "cli.h"
#include "ops.h"
#include "util.h"

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 3,
        docs = argc > 3 ? atoi(argv[3]) : 0;
    icl_set_threads(threads);
    int B = 8, T = 256, H = 9, KV = 3, hd = 64, L = 30;
    long Q = (long)H * hd, ld = Q + 2L * KV * hd;
    int bf16 = getenv("BF16") && atoi(getenv("BF16"));
    icl_attn_shape s = {B, T, H, KV, hd, ld, 0, Q, Q + (long)KV * hd, 0.125f, bf16};
    size_t N = (size_t)B * T;
    float *qkv = aligned_alloc(64, N * ld * 4), *out = aligned_alloc(64, N * Q * 4), *lse = malloc((size_t)B * H * T * 4),
          *dqkv = aligned_alloc(64, N * ld * 4), *dout = aligned_alloc(64, N * Q * 4);
    uint64_t x = 1;
    for (size_t i = 0; i < N * ld; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        qkv[i] = (float)((x >> 40) / (double)(1ull << 24) * 2 - 1);
    }
    for (size_t i = 0; i < N * Q; i++)
        dout[i] = qkv[i % (N * ld)] * 0.01f;
    int32_t *doc = malloc(4 * N);
    static const int lens[] = {40, 90, 150, 60, 120, 30, 200, 75};
    for (int b = 0, k = 0; b < B; b++)
        for (int t = 0, id = 0, left = 0; t < T; t++) {
            if (left == 0)
                left = lens[k++ % (docs > 0 ? (docs < 8 ? docs : 8) : 1)], id++;
            doc[(long)b * T + t] = id;
            left--;
        }
    double bw = 1e9, bc = 1e9;
    for (int r = 0; r < reps; r++) {
        double w0 = icl_now(), c0 = bench_cpu_s();
        for (int l = 0; l < L; l++) {
            icl_attention_forward(out, Q, lse, qkv, docs ? doc : NULL, &s);
            icl_attention_backward(dqkv, dout, Q, out, Q, lse, qkv, docs ? doc : NULL, &s);
        }
        double w = icl_now() - w0, c = bench_cpu_s() - c0;
        printf("rep %d: %d layers fwd+bwd, %d threads, docs %d, %s: wall %.3f s, CPU %.3f s\n", r, L, threads, docs,
               !bf16                               ? "float32"
               : icl_attention_bf16_kernels(hd) == 2 ? "bf16 on AMX"
               : icl_attention_bf16_kernels(hd) == 1 ? "bf16 on AVX512-BF16"
                                                   : "bf16 asked, float32 kernels",
               w, c);
        bw = w < bw ? w : bw;
        bc = c < bc ? c : bc;
    }
    printf("best: wall %.3f s, CPU %.3f s (out[0] %.6g, dqkv[5] %.6g)\n", bw, bc, out[0], dqkv[5]);
    free(qkv), free(out), free(lse), free(dqkv), free(dout), free(doc);
    return 0;
}
