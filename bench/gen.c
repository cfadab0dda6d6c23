/* bench/gen.c - decode throughput of icl's generation (lib/generate.c) on
 * the Llama config of bench-model (vocab 8192, hidden 512, 8 layers, 8 heads,
 * intermediate 1376; random weights), greedy, no eos.
 * usage: gen THREADS BATCH [NEW_TOKENS [PROMPT_LEN]]
 * Prints one line: generated tokens/s over B prompts of PROMPT_LEN ids, the
 * prefill included (as bench/torch_gen.py measures it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "llama_config.h"
#include "model.h"
#include "cli.h"
#include "util.h"

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    if (argc < 3) {
        fprintf(stderr, "usage: gen THREADS BATCH [NEW_TOKENS [PROMPT_LEN]]\n");
        return 2;
    }
    int threads = icl_set_threads(atoi(argv[1])), B = atoi(argv[2]);
    int N = argc > 3 ? atoi(argv[3]) : 128, P = argc > 4 ? atoi(argv[4]) : 16;
    icl_config cfg;
    bench_llama_config(&cfg, 2048);
    icl_model *m = icl_model_new(&cfg);
    icl_model_init_random(m, 42, 0.02f);
    icl_gen_config g;
    char err[256];
    icl_gen_config_load(&g, NULL, NULL, err, sizeof err);
    g.n_eos = 0;
    g.max_new_tokens = N;
    int32_t *prompts = malloc(sizeof(int32_t) * (size_t)B * P);
    for (int i = 0; i < B * P; i++)
        prompts[i] = (int32_t)((i * 7919 + 13) % cfg.vocab_size);
    icl_gen_seq *seqs = calloc((size_t)B, sizeof *seqs);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) { /* best of 3 (the first warms up) */
        for (int b = 0; b < B; b++) {
            seqs[b].prompt = prompts + (size_t)b * P;
            seqs[b].n_prompt = (size_t)P;
            seqs[b].index = (uint64_t)b;
        }
        double t0 = icl_now();
        if (icl_generate(m, &g, seqs, B, NULL, NULL, err, sizeof err) != 0) {
            fprintf(stderr, "gen: %s\n", err);
            return 1;
        }
        double dt = icl_now() - t0, tps = (double)B * N / dt;
        best = tps > best ? tps : best;
        for (int b = 0; b < B; b++)
            ids_free(&seqs[b].out);
    }
    printf("icl      threads %d batch %d: %8.1f tokens/s (BLIS %s)\n", threads, B, best, icl_blis_arch());
    free(seqs);
    free(prompts);
    icl_model_free(m);
    return 0;
}
