/* lmeval.c - loss, perplexity, token accuracy of a model on token lines.  See lmeval.h. */
#include "lmeval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"
#include "util.h"

void icl_lm_eval_init(icl_lm_eval *e) { memset(e, 0, sizeof *e); }

void icl_lm_eval_free(icl_lm_eval *e)
{
    free(e->logits);
    memset(e, 0, sizeof *e);
}

int icl_lm_eval_line(icl_model *m, icl_lm_eval *e, const int32_t *ids, const uint8_t *target, size_t n, char *err,
                     size_t errsz)
{
    e->records++;
    if (n < 2)
        return 0; /* no position has a next token */
    if (n > (size_t)1 << 30) {
        snprintf(err, errsz, "line of %zu ids is too long", n);
        return -1;
    }
    if (m->cfg.max_position_embeddings > 0 && n > (size_t)m->cfg.max_position_embeddings) {
        /* the rule of icl-gen (a prompt must fit the context); icl-train
         * instead fits examples to --seq-len, dropping the prompt's start */
        snprintf(err, errsz, "the line has %zu tokens, more than the model's context (max_position_embeddings %d)", n,
                 m->cfg.max_position_embeddings);
        return -1;
    }
    icl_batch b = {1, (int)n, ids, target, NULL, NULL, NULL};
    if (icl_batch_validate(m, &b, err, errsz) != 0)
        return -1;
    int V = m->cfg.vocab_size;
    if (n > e->cap) {
        free(e->logits);
        e->logits = icl_xmalloc(n * (size_t)V * sizeof(float));
        e->cap = n;
    }
    long nt = 0;
    double loss = icl_model_forward(m, &b, e->logits, 0, &nt);
    e->loss_sum += loss;
    e->tokens += nt;
    for (size_t t = 0; t + 1 < n; t++)
        if (target[t + 1] && icl_argmax(e->logits + t * (size_t)V, V) == ids[t + 1])
            e->correct++;
    return 0;
}

int icl_lm_eval_line_decode(icl_model *m, icl_lm_eval *e, const int32_t *ids, const uint8_t *target, size_t n,
                            char *err, size_t errsz)
{
    size_t t0 = 0;
    while (t0 + 1 < n && !target[t0 + 1])
        t0++;
    if (n < 2 || t0 + 1 >= n) {
        e->records++;
        return 0;
    }
    if (m->cfg.max_position_embeddings > 0 && n > (size_t)m->cfg.max_position_embeddings) {
        snprintf(err, errsz, "the line has %zu tokens, more than the model's context (max_position_embeddings %d)", n,
                 m->cfg.max_position_embeddings);
        return -1;
    }
    icl_batch b = {1, (int)n, ids, target, NULL, NULL, NULL};
    if (icl_batch_validate(m, &b, err, errsz) != 0)
        return -1;
    int V = m->cfg.vocab_size;
    if (e->cap < 1) {
        free(e->logits);
        e->logits = icl_xmalloc((size_t)V * sizeof(float));
        e->cap = 1;
    }
    icl_kv_cache *c = icl_kv_cache_new(m, (int)n);
    double loss = 0;
    long nt = 0, ok = 0;
    int rc = icl_model_decode(m, c, ids, (int)t0 + 1, e->logits, 0, err, errsz);
    for (size_t t = t0; rc == 0 && t + 1 < n; t++) {
        if (t > t0 && (rc = icl_model_step(m, &c, &ids[t], 1, e->logits, err, errsz)) != 0)
            break;
        if (!target[t + 1])
            continue;
        const float *z = e->logits;
        double mx = z[0], s = 0;
        for (int v = 1; v < V; v++)
            mx = z[v] > mx ? z[v] : mx;
        for (int v = 0; v < V; v++)
            s += exp((double)z[v] - mx);
        loss += mx + log(s) - z[ids[t + 1]];
        nt++;
        ok += icl_argmax(z, V) == ids[t + 1];
    }
    icl_kv_cache_free(c);
    if (rc)
        return -1;
    e->records++;
    e->loss_sum += loss;
    e->tokens += nt;
    e->correct += ok;
    return 0;
}

double icl_lm_eval_loss(const icl_lm_eval *e) { return e->tokens ? e->loss_sum / (double)e->tokens : NAN; }

double icl_lm_eval_perplexity(const icl_lm_eval *e) { return e->tokens ? exp(icl_lm_eval_loss(e)) : NAN; }

double icl_lm_eval_accuracy(const icl_lm_eval *e)
{
    return e->tokens ? (double)e->correct / (double)e->tokens : NAN;
}
