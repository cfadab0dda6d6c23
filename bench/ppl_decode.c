/* bench/ppl_decode.c - response perplexity through the decoding path: each
 * token line's prompt is prefilled (icl_model_decode, batched products), then
 * the response is fed one token at a time (icl_model_step: the decode-step
 * products, on a quantized model icl_qmatvec with int8 activations), and
 * -log p(response token | everything before) is summed from the logits that
 * precede each token.  For issue 14's check that Q4_1 decoding keeps
 * quality: run once on the GGUF's blocks and once --float (every tensor
 * dequantized to float32), each loaded by icl_lora_load (lora.h) as icl-gen
 * loads it (--float: as icl-gen --dequantize), and compare.  icl-eval -m
 * MODEL --decode computes the same on token lines' target segments.
 * usage: ppl_decode [--float] MODEL.gguf THREADS FILE.tok
 *   FILE.tok: icl-tok encode's token lines; the last TAB-separated segment
 *   of a line is the response, the segments before it the prompt.
 * Prints "ppl P nll_sum S tokens N lines L". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gguf_model.h"
#include "lora.h"
#include "model.h"
#include "util.h"

static int parse(char *s, int32_t *out, int max)
{
    int n = 0;
    for (char *t = strtok(s, " \t\r\n"); t && n < max; t = strtok(NULL, " \t\r\n"))
        out[n++] = (int32_t)atol(t);
    return n;
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    int fl = argc > 1 && !strcmp(argv[1], "--float");
    if (argc != 4 + fl) {
        fprintf(stderr, "usage: ppl_decode [--float] MODEL.gguf THREADS FILE.tok\n");
        return 2;
    }
    const char *path = argv[1 + fl], *file = argv[3 + fl];
    icl_set_threads(atoi(argv[2 + fl]));
    char err[512], *base = NULL;
    icl_model *m = icl_lora_load(path, NULL, 0, fl ? ICL_LOAD_DEQUANTIZE : 0, &base, err, sizeof err);
    if (!m) {
        fprintf(stderr, "ppl_decode: %s\n", err);
        return 1;
    }
    int V = m->cfg.vocab_size, maxp = m->cfg.max_position_embeddings;
    icl_kv_cache *kc = icl_kv_cache_new(m, maxp);
    float *logits = malloc(sizeof(float) * (size_t)V);
    int32_t *p = malloc(sizeof(int32_t) * (size_t)maxp), *r = malloc(sizeof(int32_t) * (size_t)maxp);
    FILE *f = fopen(file, "r");
    if (!f || !kc || !logits || !p || !r) {
        fprintf(stderr, "ppl_decode: %s: cannot read\n", file);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    double nll = 0;
    long ntok = 0, nlines = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#')
            continue;
        char *tab = strrchr(line, '\t');
        if (!tab)
            continue;
        *tab = 0;
        int np = parse(line, p, maxp), nr = parse(tab + 1, r, maxp);
        if (np < 1 || nr < 1 || np + nr > maxp)
            continue;
        icl_kv_cache_reset(kc);
        if (icl_model_decode(m, kc, p, np, logits, 0, err, sizeof err) != 0) {
            fprintf(stderr, "ppl_decode: %s\n", err);
            return 1;
        }
        for (int k = 0; k < nr; k++) {
            float mx = logits[0];
            for (int v = 1; v < V; v++)
                mx = logits[v] > mx ? logits[v] : mx;
            double s = 0;
            for (int v = 0; v < V; v++)
                s += exp((double)logits[v] - mx);
            nll += log(s) + mx - logits[r[k]];
            ntok++;
            if (k + 1 < nr && icl_model_step(m, &kc, &r[k], 1, logits, err, sizeof err) != 0) {
                fprintf(stderr, "ppl_decode: %s\n", err);
                return 1;
            }
        }
        nlines++;
    }
    printf("ppl %.6f nll_sum %.4f tokens %ld lines %ld (%s)\n", exp(nll / (ntok ? ntok : 1)), nll, ntok, nlines,
           fl ? "float32, dequantized" : "quantized blocks");
    fclose(f);
    free(line), free(p), free(r), free(logits);
    icl_kv_cache_free(kc);
    icl_model_free(m);
    free(base);
    return 0;
}
