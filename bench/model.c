/* bench/model.c - forward+backward throughput of the model core against the
 * BLIS sgemm rate on the same shapes, measured in the same run.
 * usage: model [threads] [steps]   (config of issue 4: Llama, vocab 8192,
 * hidden 512, 8 layers, 8 heads, intermediate 1376, seq 256, batch 8) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_config.h"
#include "model.h"
#include "ops.h"
#include "cli.h"
#include "util.h"

static double gemm_set(int M, int L, int C, int V, int I, int Q, int K, int reps, float *a, float *b, float *c)
{
    /* the model's linear maps: y = x W^T (W [out, in]), dx = dy W, dW += dy^T x; head the same */
    int shapes[5][2] = {{C, Q + 2 * K}, {Q, C}, {C, 2 * I}, {I, C}, {C, V}}; /* in, out */
    double t0 = icl_now();
    for (int r = 0; r < reps; r++)
        for (int s = 0; s < 5; s++) {
            int in = shapes[s][0], out = shapes[s][1], n = s == 4 ? 1 : L;
            for (int l = 0; l < n; l++) {
                icl_gemm(M, out, in, 1, a, in, 1, b, 1, in, 0, c, out, 1, 0);   /* forward */
                icl_gemm(M, in, out, 1, c, out, 1, b, in, 1, 0, a, in, 1, 0);   /* dx */
                icl_gemm(out, in, M, 1, c, 1, out, a, in, 1, 1, b, in, 1, 0);   /* dW */
            }
        }
    return (icl_now() - t0) / reps;
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    int threads = icl_set_threads(argc > 1 ? atoi(argv[1]) : 0);
    int steps = argc > 2 ? atoi(argv[2]) : 5;
    icl_config cfg;
    bench_llama_config(&cfg, 256);
    int B = 8, T = 256, N = B * T;
    icl_model *m = icl_model_new(&cfg);
    icl_model_init_random(m, 42, 0.02f);
    icl_model_alloc_grads(m);
    int32_t *ids = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++)
        ids[i] = (i * 7919 + 13) % cfg.vocab_size;
    icl_batch b = {B, T, ids, NULL, NULL, NULL, NULL};
    int C = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size, L = cfg.num_hidden_layers;
    int Q = cfg.num_attention_heads * cfg.head_dim, K = cfg.num_key_value_heads * cfg.head_dim;
    double matp = (double)L * (C * (Q + 2.0 * K) + Q * C + 3.0 * C * I) + (double)V * C;
    double flops = 6.0 * matp * N + 12.0 * L * C * (double)T * N; /* 6N + attention (PaLM appendix B) */
    double gemm_flops = 6.0 * matp * N;
    /* warm-up */
    long nt;
    icl_model_zero_grads(m);
    icl_model_forward(m, &b, NULL, 1.0f / (N - B), &nt);
    icl_model_backward(m, &b, NULL, 0);
    /* Interleave model steps and GEMM sets and keep the fastest of each: the
     * machine is shared, and the minimum is the least disturbed measurement. */
    float *ga = calloc((size_t)N * 2 * I, 4), *gb = calloc((size_t)V * C, 4), *gc = calloc((size_t)N * V, 4);
    gemm_set(N, L, C, V, I, Q, K, 1, ga, gb, gc);
    double step = 1e30, tf = 1e30, tg = 1e30, loss = 0;
    for (int s = 0; s < steps; s++) {
        icl_model_zero_grads(m);
        double a = icl_now();
        loss = icl_model_forward(m, &b, NULL, 1.0f / nt, &nt) / nt;
        double f = icl_now() - a;
        icl_model_backward(m, &b, NULL, 0);
        double st = icl_now() - a;
        tf = f < tf ? f : tf;
        step = st < step ? st : step;
        double g = gemm_set(N, L, C, V, I, Q, K, 1, ga, gb, gc);
        tg = g < tg ? g : tg;
    }
    double model_gf = flops / step / 1e9, blis_gf = gemm_flops / tg / 1e9;
    printf("model: llama vocab %d hidden %d layers %d heads %d inter %d, batch %d x seq %d, %.1fM params, BLIS kernels %s, threads %d\n",
           V, C, L, cfg.num_attention_heads, I, B, T, m->base.num_params / 1e6, icl_blis_arch(), threads);
    printf("  icl fwd+bwd: %.3f s/step (forward %.3f s), %.0f tokens/s, %.1f GFLOP/s (loss %.4f), best of %d\n",
           step, tf, N / step, model_gf, loss, steps);
    printf("  BLIS sgemm, same shapes and strides: %.3f s, %.1f GFLOP/s\n", tg, blis_gf);
    printf("  ratio icl / BLIS sgemm rate: %.2f\n", model_gf / blis_gf);
    free(ga);
    free(gb);
    free(gc);
    free(ids);
    icl_model_free(m);
    return 0;
}
