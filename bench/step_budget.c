/* bench/step_budget.c - where a SmolLM2-135M full fine-tuning step goes.
 *
 * The model has SmolLM2-135M-Instruct's shapes (llama, vocab 49152, hidden
 * 576, 30 layers, 9 heads / 3 KV heads of 64, intermediate 1536, tied
 * embeddings, rope 100000) with random weights; batch 8 x 256 (one document
 * per row, every position a target), float32, as icl-train's step:
 * zero_grads, forward (with the loss), backward, the gradient norm
 * (icl_sumsq), the clipping scale (icl_scale) and AdamW over every parameter.
 *
 * Each repetition runs, one after the other (interleaved, so the machine's
 * drift hits all alike), the whole step (timed by phase) and then its parts
 * alone on buffers of the step's shapes:
 *   layer GEMMs  the 30 layers' linear maps (q|k|v, o, gate|up, down):
 *                forward, input grad and weight grad as lib/linear.c calls
 *                them (icl_gemm, operands on huge pages)
 *   head GEMMs   the tied LM head over 8 chunks of 256 rows (model.c's
 *                HEAD_ROWS): forward, dx, dW
 *   attention    icl_attention_forward + icl_attention_backward, 30 layers
 *   xent         icl_xent_rows over the 8 logits chunks
 *   norms+swiglu icl_rmsnorm forward+backward (61 per step) and
 *                icl_swiglu forward+backward (30)
 * and reports the minimum over REPS of each (the least disturbed), its
 * share of the step, and GFLOP/s against the fp32 peak ($PEAK, default
 * 227.6 GFLOP/s with 2 threads, 116.1 with 1: bench/peak.c's figures on
 * this machine; pass the ones measured in the same session).  $CPUTIME:
 * time by process CPU seconds instead of wall-clock (see now()).  "rest"
 * is the step minus the parts (RoPE, embedding, residual adds, copies,
 * OpenMP barriers, and whatever the parts cost more inside the step than
 * alone: caches).  The step's rate
 * counts 6 x 134.5M FLOP per token (issue 14's measure: attention excluded).
 *
 * $STEP_ONLY=1: the step alone (no parts), with each repetition's wall and
 * CPU seconds, the cores busy (CPU / wall), the voluntary and involuntary
 * context switches and the minor page faults (getrusage), for perf record /
 * perf stat; prints the best step.
 * $MODEL=DIR: the weights of a folder of SmolLM2-135M's shapes (bench-train's
 * icl-convert of the GGUF) instead of random ones.  $PACKED=1: the batch as
 * icl-train builds it (target, doc and pos set, one document per row).
 * $TRAINSTEP=1: the step through icl_train_step (icl-train's: AdamW per
 * tensor, clipping only when the norm exceeds 1) instead of the calls here.
 * Not run by make bench (no .sh): make build/bench/step_budget, then
 * usage: step_budget [threads [reps]]   (defaults 2 and 3) */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "model.h"
#include "ops.h"
#include "optim.h"
#include "trainer.h"
#include "util.h"

#define B 8
#define T 256
#define N (B * T)
#define HR 256 /* head rows per chunk (lib/model.c HEAD_ROWS) */

#include "bench_clock.h"

#include <sys/resource.h>

static double gemm_layers(float *x, float *y, float *w, float *g, int C, int I, int Q, int K, int L)
{
    int sh[4][2] = {{C, Q + 2 * K}, {Q, C}, {C, 2 * I}, {I, C}}; /* in, out; W [out, in] */
    double t0 = now();
    for (int l = 0; l < L; l++)
        for (int s = 0; s < 4; s++) {
            int in = sh[s][0], out = sh[s][1];
            icl_gemm(N, out, in, 1, x, in, 1, w, 1, in, 0, y, out, 1, 0);  /* y = x W^T */
            icl_gemm(N, in, out, 1, y, out, 1, w, in, 1, 0, x, in, 1, 0);  /* dx = dy W */
            icl_gemm(in, out, N, 1, x, 1, in, y, out, 1, 1, g, 1, in, 0);  /* dW^T += x^T dy */
        }
    return now() - t0;
}

static double gemm_head(float *x, float *lg, float *w, float *g, int C, int V)
{
    double t0 = now();
    for (int c = 0; c < N / HR; c++) {
        icl_gemm(HR, V, C, 1, x, C, 1, w, 1, C, 0, lg, V, 1, 0);
        icl_gemm(HR, C, V, 1, lg, V, 1, w, C, 1, 0, x, C, 1, 0);
        icl_gemm(C, V, HR, 1, x, 1, C, lg, V, 1, 1, g, 1, C, 0);
    }
    return now() - t0;
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    int threads = icl_set_threads(argc > 1 ? atoi(argv[1]) : 2);
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    int step_only = getenv("STEP_ONLY") && atoi(getenv("STEP_ONLY")); /* the step alone (for perf) */
    bench_clock_init();
    double peak = getenv("PEAK") ? atof(getenv("PEAK")) : threads == 1 ? 116.1 : 227.6;
    icl_config cfg;
    icl_config_defaults(&cfg, "llama");
    cfg.vocab_size = 49152;
    cfg.hidden_size = 576;
    cfg.intermediate_size = 1536;
    cfg.num_hidden_layers = 30;
    cfg.num_attention_heads = 9;
    cfg.num_key_value_heads = 3;
    cfg.head_dim = 64;
    cfg.max_position_embeddings = 8192;
    cfg.rope_theta = 100000;
    cfg.norm_eps = 1e-5;
    cfg.tie_word_embeddings = 1;
    int C = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size, L = cfg.num_hidden_layers;
    int Hh = cfg.num_attention_heads, KV = cfg.num_key_value_heads, hd = cfg.head_dim, Q = Hh * hd, K = KV * hd;
    const char *mdir = getenv("MODEL"); /* a folder (bench-train's icl-convert of the GGUF) instead of random weights */
    icl_model *m;
    if (mdir) {
        char e2[512];
        if (!(m = icl_model_load(mdir, e2, sizeof e2))) {
            fprintf(stderr, "step_budget: %s\n", e2);
            return 1;
        }
        if (m->cfg.vocab_size != V || m->cfg.hidden_size != C || m->cfg.num_hidden_layers != L) {
            fprintf(stderr, "step_budget: %s is not SmolLM2-135M's shape\n", mdir);
            return 1;
        }
    } else {
        m = icl_model_new(&cfg);
        icl_model_init_random(m, 42, 0.02f);
    }
    icl_model_alloc_grads(m);
    icl_model_alloc_moments(m);
    icl_param_set *s = &m->base;
    int32_t *ids = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++)
        ids[i] = (int32_t)((i * 7919L + 13) % V);
    icl_batch bt = {B, T, ids, NULL, NULL, NULL, NULL};
    /* $PACKED=1: the batch as icl_dataset_next builds it for icl-train (one
     * example of T ids per row, every id a target): target, doc and pos set */
    int packed = getenv("PACKED") && atoi(getenv("PACKED"));
    uint8_t *btg = malloc(N);
    int32_t *bdoc = malloc(sizeof(int32_t) * N), *bpos = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++)
        btg[i] = 1, bdoc[i] = 0, bpos[i] = i % T;
    if (packed)
        bt.target = btg, bt.doc = bdoc, bt.pos = bpos;
    /* $TRAINSTEP=1: the step through icl_train_step (icl-train's), not the calls below */
    int trainstep = getenv("TRAINSTEP") && atoi(getenv("TRAINSTEP"));
    long ntg = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++)
            ntg += !bt.target || bt.target[b * T + t + 1];
    icl_adamw h = {1e-4, 0.9, 0.999, 1e-8, 0.0};

    /* the parts' buffers, on huge pages as the model's */
    size_t big = (size_t)N * 2 * I > (size_t)HR * V ? (size_t)N * 2 * I : (size_t)HR * V;
    float *x = icl_xcalloc_huge((size_t)N * 2 * I, 4), *y = icl_xcalloc_huge(big, 4);
    float *z = icl_xcalloc_huge((size_t)N * 2 * I, 4);
    float *w = icl_xcalloc_huge((size_t)V * C, 4), *g = icl_xcalloc_huge((size_t)V * C, 4);
    float *qkv = icl_xcalloc_huge((size_t)N * (Q + 2 * K), 4), *dqkv = icl_xcalloc_huge((size_t)N * (Q + 2 * K), 4);
    float *att = icl_xcalloc_huge((size_t)N * Q, 4), *datt = icl_xcalloc_huge((size_t)N * Q, 4);
    float *lse = icl_xcalloc_huge((size_t)Hh * N, 4), *rstd = xcalloc(N, 4), *nw = xcalloc(C, 4), *dnw = xcalloc(C, 4);
    float *loss = xcalloc(HR, 4);
    int32_t *tgt = malloc(sizeof(int32_t) * HR);
    unsigned sd = 1;
    for (size_t i = 0; i < (size_t)N * (Q + 2 * K); i++) {
        sd = sd * 1664525u + 1013904223u;
        qkv[i] = ((sd >> 8) / 16777216.0f - 0.5f);
    }
    for (size_t i = 0; i < (size_t)N * Q; i++)
        datt[i] = qkv[i % ((size_t)N * (Q + 2 * K))] * 0.1f;
    for (int i = 0; i < C; i++)
        nw[i] = 1.0f;
    for (int i = 0; i < HR; i++)
        tgt[i] = ids[i];
    icl_attn_shape ash = {B, T, Hh, KV, hd, Q + 2 * K, 0, Q, Q + K, 1.0f / sqrtf((float)hd), 0};

    enum { ZERO, FWD, BWD, NORM, OPT, STEP, GL, GH, ATT, XENT, NS, NP };
    static const char *nm[NP] = {"zero_grads", "forward (with loss)", "backward", "grad norm + clip scale",
                                 "AdamW", "step", "layer GEMMs alone", "head GEMMs alone", "attention alone",
                                 "cross-entropy alone", "norms + SwiGLU alone"};
    double best[NP];
    for (int i = 0; i < NP; i++)
        best[i] = 1e30;
    long nt = 0;
    for (int r = 0; r <= reps; r++) { /* r == 0: warm-up (first touch of the activations) */
        struct rusage ru0;
        getrusage(RUSAGE_SELF, &ru0);
        double w0 = icl_now(), c0 = bench_cpu_s();
        double t[NP], a = now();
        if (trainstep) {
            icl_step_opts so = {h, 1.0, NULL, NULL, NULL, 42, 0, 1, NULL, NULL, 0};
            icl_step_result sr;
            char e2[256];
            if (icl_train_step(m, &bt, 1, ntg, 1e-4, r + 1, &so, &sr, e2, sizeof e2)) {
                fprintf(stderr, "step_budget: %s\n", e2);
                return 1;
            }
            t[STEP] = now() - a;
            t[FWD] = t[BWD] = t[NORM] = t[OPT] = 0;
            goto stepped;
        }
        icl_model_zero_grads(m);
        t[ZERO] = now() - a;
        double b0 = now();
        icl_model_forward(m, &bt, NULL, 1.0f / (N - B), &nt);
        t[FWD] = now() - b0;
        b0 = now();
        icl_model_backward(m, &bt, NULL, 0);
        t[BWD] = now() - b0;
        b0 = now();
        double nrm = sqrt(icl_sumsq(s->grads, s->num_params));
        icl_scale(s->grads, s->num_params, (float)icl_clip_coef(nrm, 1.0));
        t[NORM] = now() - b0;
        b0 = now();
        icl_adamw_update(s->params, s->grads, s->m, s->v, s->num_params, &h, 1e-4, r + 1, 1);
        t[OPT] = now() - b0;
        t[STEP] = now() - a;
    stepped:
        if (step_only) {
            struct rusage ru1;
            getrusage(RUSAGE_SELF, &ru1);
            double w1 = icl_now(), c1 = bench_cpu_s();
            fprintf(stderr,
                    "rep %d: step %.3f s (fwd %.3f, bwd %.3f, norm %.3f, AdamW %.3f); wall %.3f s, CPU %.3f s (%.2f "
                    "cores busy), %ld voluntary and %ld involuntary context switches, %ld minor page faults\n",
                    r, t[STEP], t[FWD], t[BWD], t[NORM], t[OPT], w1 - w0, c1 - c0, (c1 - c0) / (w1 - w0),
                    ru1.ru_nvcsw - ru0.ru_nvcsw, ru1.ru_nivcsw - ru0.ru_nivcsw, ru1.ru_minflt - ru0.ru_minflt);
            if (r > 0 && t[STEP] < best[STEP])
                best[STEP] = t[STEP];
            continue;
        }
        t[GL] = gemm_layers(x, y, w, g, C, I, Q, K, L);
        t[GH] = gemm_head(x, y, w, g, C, V);
        b0 = now();
        for (int l = 0; l < L; l++) {
            icl_attention_forward(att, Q, lse, qkv, NULL, &ash);
            icl_attention_backward(dqkv, datt, Q, att, Q, lse, qkv, NULL, &ash);
        }
        t[ATT] = now() - b0;
        t[XENT] = 0;
        for (int c = 0; c < N / HR; c++) {
            for (size_t i = 0; i < (size_t)HR * V; i++) /* fresh logits (the head writes them) */
                y[i] = (float)(i % 97) * 0.01f;
            double x0 = now();
            icl_xent_rows(y, V, HR, V, tgt, loss, 1.0f / N);
            t[XENT] += now() - x0;
        }
        b0 = now();
        for (int l = 0; l < 2 * L + 1; l++) {
            icl_rmsnorm_forward(y, rstd, x, nw, N, C, 1e-5f);
            icl_rmsnorm_backward(dqkv, 0.0f, dnw, y, x, nw, rstd, N, C);
        }
        for (int l = 0; l < L; l++) {
            icl_swiglu_forward(x, y, 2 * I, N, I);
            icl_swiglu_backward(z, 2 * I, x, y, 2 * I, N, I);
        }
        t[NS] = now() - b0;
        for (int i = 0; r > 0 && i < NP; i++)
            best[i] = t[i] < best[i] ? t[i] : best[i];
        fprintf(stderr, "rep %d: step %.3f s, layer GEMMs %.3f s, head GEMMs %.3f s, attention %.3f s\n", r, t[STEP],
                t[GL], t[GH], t[ATT]);
    }
    if (step_only) {
        printf("step_budget: step alone, %d threads, best %.3f s (%s)\n", threads, best[STEP],
               cputime ? "CPU seconds" : "wall seconds");
        icl_model_free(m);
        return 0;
    }
    double fl_l = 6.0 * L * ((double)C * (Q + 2 * K) + (double)Q * C + 3.0 * C * I) * N, fl_h = 6.0 * V * C * (double)N;
    double fl_step = 6.0 * (double)s->num_params * N;
    /* attention FLOPs, causal (half the T x T products): QK^T and PV forward,
     * recompute + 4 products backward, 2 x hd each per kept pair */
    double fl_att = (double)L * B * Hh * (T * (T + 1) / 2.0) * hd * 2.0 * 7.0;
    printf("step_budget: SmolLM2-135M shapes (%.1fM parameters), batch %d x %d, float32, %d threads, kernels %s, "
           "best of %d, peak %.1f GFLOP/s, %s\n",
           s->num_params / 1e6, B, T, threads, icl_blis_arch(), reps, peak, cputime ? "CPU seconds" : "wall seconds");
    printf("%-26s %9s %7s %9s %7s\n", "part", "s", "share", "GFLOP/s", "peak");
    double st = best[STEP], parts = 0;
    for (int i = 0; i < NP; i++) {
        double fl = i == STEP ? fl_step : i == GL ? fl_l : i == GH ? fl_h : i == ATT ? fl_att : 0;
        if (i == GL || i == GH || i == ATT || i == XENT || i == NS || i == OPT || i == NORM || i == ZERO)
            parts += best[i];
        if (fl > 0)
            printf("%-26s %9.3f %6.1f%% %9.1f %6.1f%%\n", nm[i], best[i], 100 * best[i] / st, fl / best[i] * 1e-9,
                   100 * fl / best[i] * 1e-9 / peak);
        else
            printf("%-26s %9.3f %6.1f%%\n", nm[i], best[i], 100 * best[i] / st);
    }
    printf("%-26s %9.3f %6.1f%%\n", "rest (step - parts)", st - parts, 100 * (st - parts) / st);
    printf("tokens/s %.1f; the step at %.1f%% of peak; its GEMMs alone at %.1f%%\n", N / st,
           100 * fl_step / st * 1e-9 / peak, 100 * (fl_l + fl_h) / (best[GL] + best[GH]) * 1e-9 / peak);
    free(btg), free(bdoc), free(bpos);
    free(ids), free(tgt), free(loss), free(rstd), free(nw), free(dnw);
    free(x), free(y), free(z), free(w), free(g), free(qkv), free(dqkv), free(att), free(datt), free(lse);
    icl_model_free(m);
    return 0;
}
