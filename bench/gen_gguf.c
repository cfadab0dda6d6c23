/* bench/gen_gguf.c - prefill and decode throughput of icl's generation
 * (lib/generate.c) on a real model file, loaded as icl-gen loads it (a GGUF
 * keeps its quantized blocks where the loader does), greedy, no eos.
 * usage: gen_gguf MODEL THREADS BATCH NEW_TOKENS PROMPT_LEN IDS_FILE [--dequantize | --adapter DIR]
 *   MODEL is loaded by icl_lora_load (lora.h) as icl-gen loads it;
 *   --dequantize: a GGUF as float32 (icl-gen --dequantize);
 *   --adapter DIR: with the PEFT adapter DIR applied unmerged, as
 *   icl-gen -m MODEL --adapter DIR applies it (over a GGUF's blocks).
 *   IDS_FILE: whitespace-separated token ids; each of the BATCH prompts is
 *   PROMPT_LEN consecutive ids from it (prompt b starts at id b * 7).
 * Prints one line: prefill tokens/s (BATCH * PROMPT_LEN over the time of a
 * generation of 1 token) and decode tokens/s (BATCH * (NEW_TOKENS - 1) over
 * the rest), each the best of 3 runs (bench/llamacpp_gen.py measures the
 * same for llama.cpp). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "generate.h"
#include "lora.h"
#include "model.h"
#include "util.h"

static double run(icl_model *m, icl_gen_config *g, icl_gen_seq *seqs, const int32_t *ids, int B, int P, int N)
{
    char err[256];
    g->max_new_tokens = N;
    for (int b = 0; b < B; b++) {
        memset(&seqs[b], 0, sizeof seqs[b]);
        seqs[b].prompt = ids + (size_t)b * 7;
        seqs[b].n_prompt = (size_t)P;
        seqs[b].index = (uint64_t)b;
    }
    double t0 = icl_now();
    if (icl_generate(m, g, seqs, B, NULL, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "gen_gguf: %s\n", err);
        exit(1);
    }
    double dt = icl_now() - t0;
    for (int b = 0; b < B; b++)
        ids_free(&seqs[b].out);
    return dt;
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    int deq = argc == 8 && !strcmp(argv[7], "--dequantize"), ad = argc == 9 && !strcmp(argv[7], "--adapter");
    if (argc != 7 && !deq && !ad) {
        fprintf(stderr, "usage: gen_gguf MODEL THREADS BATCH NEW_TOKENS PROMPT_LEN IDS_FILE [--dequantize | "
                        "--adapter DIR]\n");
        return 2;
    }
    int threads = icl_set_threads(atoi(argv[2])), B = atoi(argv[3]), N = atoi(argv[4]), P = atoi(argv[5]);
    if (B < 1 || N < 2 || P < 1) {
        fprintf(stderr, "gen_gguf: want BATCH >= 1, NEW_TOKENS >= 2, PROMPT_LEN >= 1\n");
        return 2;
    }
    char err[512], *base = NULL;
    icl_model *m = icl_lora_load(argv[1], ad ? (const char *const *)&argv[8] : NULL, ad, deq ? ICL_LOAD_DEQUANTIZE : 0, &base, err, sizeof err);
    if (!m) {
        fprintf(stderr, "gen_gguf: %s\n", err);
        return 1;
    }
    size_t need = (size_t)(B - 1) * 7 + (size_t)P, n = 0, cap = need;
    int32_t *ids = malloc(sizeof *ids * cap);
    FILE *f = fopen(argv[6], "r");
    long v;
    while (f && n < need && fscanf(f, "%ld", &v) == 1)
        ids[n++] = (int32_t)v;
    if (f)
        fclose(f);
    if (n < need) {
        fprintf(stderr, "gen_gguf: %s: want %zu ids, found %zu\n", argv[6], need, n);
        return 1;
    }
    icl_gen_config g;
    icl_gen_config_load(&g, NULL, NULL, err, sizeof err);
    g.n_eos = 0;
    icl_gen_seq *seqs = calloc((size_t)B, sizeof *seqs);
    double pre = 1e30, all = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double a = run(m, &g, seqs, ids, B, P, 1), b = run(m, &g, seqs, ids, B, P, N);
        pre = a < pre ? a : pre;
        all = b < all ? b : all;
    }
    double dec = all - pre > 1e-9 ? all - pre : 1e-9;
    printf("icl threads %d batch %d prompt %d new %d: prefill %.1f tokens/s decode %.1f tokens/s\n", threads, B, P, N,
           (double)B * P / pre, (double)B * (N - 1) / dec);
    free(seqs);
    free(ids);
    free(base);
    icl_model_free(m);
    return 0;
}
