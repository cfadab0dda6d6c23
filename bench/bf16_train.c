/* bench/bf16_train.c - lib/bf16.c's packed products (forward y = x W^T,
 * input gradient dx = dy W, weight gradient dW += dy^T x; bf16 operands,
 * float32 sums) against BLIS sgemm on the same shapes in the same run:
 * T rows (default 2048 = 8 x 256 tokens), K = 576 (SmolLM2-135M's hidden
 * size), N = 576, 192, 1536, 49152.  Times are the best of REPS; with
 * THREADS 1 also the thread's CPU time (meaningful on a loaded machine).
 * usage: bf16_train [THREADS [T [REPS]]] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bf16.h"
#include "cli.h"
#include "ops.h"
#include "util.h"

static double now_cpu(int threads)
{
    if (threads != 1)
        return icl_now();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    int nt = icl_set_threads(argc > 1 ? atoi(argv[1]) : 0), T = argc > 2 ? atoi(argv[2]) : 2048;
    int reps = argc > 3 ? atoi(argv[3]) : 3, K = 576;
    static const int Ns[] = {576, 192, 1536, 49152};
    if (T < 1 || reps < 1) {
        fprintf(stderr, "usage: bf16_train [THREADS [T [REPS]]]\n");
        return 2;
    }
    size_t maxw = (size_t)K * 49152;
    float *x = malloc(sizeof(float) * T * K), *w = malloc(sizeof(float) * maxw), *y = malloc(sizeof(float) * T * 49152),
          *dw = malloc(sizeof(float) * maxw), *dx = malloc(sizeof(float) * T * K);
    uint16_t *pf = malloc(sizeof(uint16_t) * icl_bf16_packed_size(K, 49152)),
             *pb = malloc(sizeof(uint16_t) * icl_bf16_packed_size(49152, K));
    if (!x || !w || !y || !dw || !dx || !pf || !pb) {
        fprintf(stderr, "bf16_train: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)T * K; i++)
        x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < maxw; i++)
        w[i] = (float)((i * 104729) % 1000) / 20000.0f - 0.025f;
    for (size_t i = 0; i < (size_t)T * 49152; i++)
        y[i] = (float)((i * 31) % 1000) / 1e5f;
    printf("# bf16 path %s; BLIS %s; %d threads, T %d, K %d (%s time)\n", icl_bf16_path_name(), icl_blis_arch(), nt, T,
           K, nt == 1 ? "thread CPU" : "wall");
    static const char *what[3] = {"forward   ", "input grad", "weight grad"};
    for (int s = 0; s < 4; s++) {
        int N = Ns[s];
        icl_bf16_pack(w, K, 0, K, N, pf, nt);
        icl_bf16_pack(w, K, 1, N, K, pb, nt);
        for (int op = 0; op < 3; op++) {
            double tb = 1e30, ts = 1e30, fl = 2.0 * T * K * N;
            for (int r = 0; r < reps; r++) {
                double t0 = now_cpu(nt);
                int rc = op == 0   ? icl_bf16_gemm_packed(T, N, K, x, K, pf, NULL, y, N, 0.0f, nt)
                         : op == 1 ? icl_bf16_gemm_packed(T, K, N, y, N, pb, NULL, dx, K, 0.0f, nt)
                         : N <= K  ? icl_bf16_gemm_tn(N, K, T, y, N, x, K, dw, K, 0, nt)
                                   : icl_bf16_gemm_tn(K, N, T, x, K, y, N, dw, K, 1, nt);
                double t1 = now_cpu(nt);
                if (rc) {
                    fprintf(stderr, "bf16_train: out of memory\n");
                    return 1;
                }
                if (op == 0)
                    icl_gemm(T, N, K, 1.0f, x, K, 1, w, 1, K, 0.0f, y, N, 1, 0);
                else if (op == 1)
                    icl_gemm(T, K, N, 1.0f, y, N, 1, w, K, 1, 0.0f, dx, K, 1, 0);
                else
                    icl_gemm(K, N, T, 1.0f, x, 1, K, y, N, 1, 1.0f, dw, 1, K, 0);
                double t2 = now_cpu(nt);
                tb = t1 - t0 < tb ? t1 - t0 : tb;
                ts = t2 - t1 < ts ? t2 - t1 : ts;
            }
            printf("N %5d %s: bf16 %6.1f GFLOP/s | sgemm %6.1f GFLOP/s | ratio %.2fx\n", N, what[op], fl / tb / 1e9,
                   fl / ts / 1e9, ts / tb);
        }
    }
    icl_bf16_release_scratch();
    free(x), free(w), free(y), free(dw), free(dx), free(pf), free(pb);
    return 0;
}
