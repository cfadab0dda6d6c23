/* generate.c - generation loop, sampling, streaming text.  See generate.h.
 * The model (prefill and batched decode steps) is model.c's. */
#define _GNU_SOURCE
#include "generate.h"
#include "fileio.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
#include <string.h>

#include "ops.h"


/* ---------------------------------------------------------------- generation config */

static int gen_int(json_t *root, const char *key, long lo, long hi, long *out, char *err, size_t errsz)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        icl_seterr(err, errsz, "generation_config.json: \"%s\" is not an integer in [%ld, %ld]", key, lo, hi);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

static int gen_real(json_t *root, const char *key, float *out, char *err, size_t errsz)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v)) {
        icl_seterr(err, errsz, "generation_config.json: \"%s\" is not a number", key);
        return -1;
    }
    *out = (float)json_number_value(v);
    return 0;
}

int icl_gen_config_load(icl_gen_config *g, const char *dir, const icl_config *cfg, char *err, size_t errsz)
{
    memset(g, 0, sizeof *g);
    icl_sampler_defaults(&g->sp);
    g->sp.top_k = 50;
    g->max_new_tokens = 256;
    if (cfg)
        for (int i = 0; i < cfg->n_eos && g->n_eos < 16; i++)
            g->eos[g->n_eos++] = cfg->eos_token_id[i];
    if (!dir)
        return 0;
    char *path = icl_path_join(dir, "generation_config.json");
    size_t len;
    char rerr[512];
    /* icl_read_file: capped, and a FIFO there never blocks */
    char *text = icl_read_file(path, (size_t)64 << 20, &len, rerr, sizeof rerr);
    int e = errno;
    free(path);
    if (!text) {
        if (e == ENOENT)
            return 0; /* no file: the defaults */
        const char *why = strrchr(rerr, ':'); /* "PATH: reason" */
        icl_seterr(err, errsz, "generation_config.json: %s", why ? why + 2 : rerr); /* not silently ignored */
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root || !json_is_object(root)) {
        icl_seterr(err, errsz, "generation_config.json:%d: %s", root ? 1 : je.line,
               root ? "not a JSON object" : je.text);
        json_decref(root);
        return -1;
    }
    int rc = -1;
    long k = g->sp.top_k, mx = g->max_new_tokens;
    json_t *ds = json_object_get(root, "do_sample"), *eos = json_object_get(root, "eos_token_id");
    if (ds && !json_is_null(ds)) {
        if (!json_is_boolean(ds)) {
            icl_seterr(err, errsz, "generation_config.json: \"do_sample\" is not true or false");
            goto out;
        }
        g->do_sample = json_is_true(ds);
    }
    if (gen_real(root, "temperature", &g->sp.temperature, err, errsz) ||
        gen_real(root, "top_p", &g->sp.top_p, err, errsz) || gen_real(root, "min_p", &g->sp.min_p, err, errsz) ||
        gen_real(root, "repetition_penalty", &g->sp.repetition_penalty, err, errsz) ||
        gen_int(root, "top_k", 0, 1L << 30, &k, err, errsz) ||
        gen_int(root, "max_new_tokens", 1, 1L << 30, &mx, err, errsz))
        goto out;
    g->sp.top_k = (int)k;
    g->max_new_tokens = mx;
    if (eos && !json_is_null(eos)) {
        g->n_eos = 0;
        if (json_is_integer(eos)) {
            if (json_integer_value(eos) < 0 || json_integer_value(eos) > INT32_MAX) {
                icl_seterr(err, errsz, "generation_config.json: \"eos_token_id\" is not a token id");
                goto out;
            }
            g->eos[g->n_eos++] = (int32_t)json_integer_value(eos);
        } else if (json_is_array(eos) && json_array_size(eos) <= 16) {
            size_t i;
            json_t *x;
            json_array_foreach(eos, i, x)
            {
                if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
                    icl_seterr(err, errsz, "generation_config.json: \"eos_token_id\"[%zu] is not a token id", i);
                    goto out;
                }
                g->eos[g->n_eos++] = (int32_t)json_integer_value(x);
            }
        } else {
            icl_seterr(err, errsz, "generation_config.json: \"eos_token_id\" is not an id or a list of at most 16");
            goto out;
        }
    }
    /* as config.json's (icl_config_load): an id the model has no logit for
     * could never stop generation */
    for (int i = 0; cfg && i < g->n_eos; i++)
        if (g->eos[i] >= cfg->vocab_size) {
            icl_seterr(err, errsz, "generation_config.json: eos_token_id %d is not below vocab_size %d (config.json)",
                       (int)g->eos[i], cfg->vocab_size);
            goto out;
        }
    if (icl_sampler_check(&g->sp, err, errsz) != 0) {
        char m2[256];
        snprintf(m2, sizeof m2, "generation_config.json: %s", err);
        icl_seterr(err, errsz, "%s", m2);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

icl_sampler_params icl_gen_sampler_params(const icl_gen_config *g)
{
    icl_sampler_params p = g->sp;
    if (!g->do_sample) {
        icl_sampler_defaults(&p);
        p.temperature = 0.0f;
        p.repetition_penalty = g->sp.repetition_penalty;
    }
    return p;
}

/* ---------------------------------------------------------------- generation loop */

static int is_eos(const icl_gen_config *g, int32_t id)
{
    for (int i = 0; i < g->n_eos; i++)
        if (g->eos[i] == id)
            return 1;
    return 0;
}

/* Thread count of the prefill and of the decode steps, chosen by
 * measurement.  Neither result depends on the thread count (icl_gen_step by
 * construction; the prefill because BLIS never splits the k loop, checked by
 * test_generate), so this choice never changes the output.  On a quiet
 * machine the team reads the weights faster; on a busy one every join of
 * the team (and every BLIS barrier) may wait a whole scheduler slice for a
 * descheduled thread, and one thread is several times faster.  So: time
 * work with the team and with one thread (moving averages of seconds per
 * unit: per step, per prompt token), use the faster, and try the other
 * again every 64 uses.  The averages live for the process (icl_generate is
 * called once per batch), in static storage: like the model, generation is
 * not thread-safe. */
typedef struct {
    int nt;            /* the team size the averages were measured with */
    double avg[2];     /* seconds per unit: [0] team, [1] one thread; 0 = not measured */
    long uses;
} thread_tuner;

static thread_tuner step_tuner, prefill_tuner;

/* 1 if the next use should run on one thread. */
static int pick_threads(thread_tuner *t, int nt)
{
    if (t->nt != nt) { /* new team size: measure afresh */
        t->nt = nt;
        t->avg[0] = t->avg[1] = 0;
        t->uses = 0;
    }
    if (nt <= 1)
        return 0;
    if (t->avg[0] == 0 || t->avg[1] == 0) /* measure each once first */
        return t->avg[0] == 0 ? 0 : 1;
    int best = t->avg[1] < t->avg[0];
    return t->uses % 64 == 63 ? !best : best;
}

static void tuner_record(thread_tuner *t, int one, double per_unit)
{
    t->uses++;
    t->avg[one] = t->avg[one] == 0 ? per_unit : 0.7 * t->avg[one] + 0.3 * per_unit;
}

/* Start sequence s: check its prompt, its token limit, RNG and history,
 * a KV cache holding the prefilled prompt, the next-token logits [V]. */
static int start_seq(icl_model *m, const icl_gen_config *g, icl_gen_seq *s, icl_kv_cache **kc, icl_rng *rng,
                     icl_ids *hist, long *limit, float *logits, int nt, char *err, size_t errsz)
{
    int maxpos = m->cfg.max_position_embeddings;
    s->out.n = 0;
    s->stop = ICL_STOP_NONE;
    if (s->n_prompt < 1) {
        icl_seterr(err, errsz, "empty prompt");
        return -1;
    }
    if ((long)s->n_prompt > maxpos) {
        icl_seterr(err, errsz, "the prompt has %zu tokens, more than the model's context (max_position_embeddings %d)",
                   s->n_prompt, maxpos);
        return -1;
    }
    /* new tokens allowed: the last one is never fed back, so a prompt of
     * n tokens leaves maxpos - n + 1 */
    *limit = g->max_new_tokens;
    if (*limit > (long)maxpos - (long)s->n_prompt + 1)
        *limit = (long)maxpos - (long)s->n_prompt + 1;
    icl_rng_seed(rng, g->seed, s->index);
    for (size_t i = 0; i < s->n_prompt; i++)
        ids_push(hist, s->prompt[i]);
    int need = (int)(s->n_prompt + (size_t)*limit - 1), from = 0; /* positions, prompt ids already cached */
    if (s->cache) { /* the caller's, holding prompt[0 .. len) */
        *kc = s->cache;
        if ((size_t)(*kc)->len >= s->n_prompt)
            (*kc)->len = (int)s->n_prompt - 1;
        icl_kv_cache_reserve(*kc, m, need);
        from = (*kc)->len;
    } else {
        *kc = icl_kv_cache_new(m, need);
    }
    int one = pick_threads(&prefill_tuner, nt);
    double t0 = icl_now();
    if (one)
        icl_set_threads(1); /* OpenMP and BLIS */
    int st = icl_model_decode(m, *kc, s->prompt + from, (int)s->n_prompt - from, logits, 0, err, errsz);
    if (one)
        icl_set_threads(nt);
    if (st != 0)
        return -1;
    tuner_record(&prefill_tuner, one, (icl_now() - t0) / (double)(s->n_prompt - (size_t)from));
    return 0;
}

int icl_generate(icl_model *m, const icl_gen_config *g, icl_gen_seq *seqs, int B, icl_gen_token_fn on_token,
                 void *ctx, char *err, size_t errsz)
{
    int nt = omp_get_max_threads();
    int V = m->cfg.vocab_size, rc = -1;
    icl_sampler_params sp = icl_gen_sampler_params(g);
    if (icl_sampler_check(&sp, err, errsz) != 0)
        return -1;
    icl_sampler smp;
    icl_sampler_init(&smp, V);
    icl_kv_cache **kc = xcalloc((size_t)B, sizeof *kc), **act_kc = xcalloc((size_t)B, sizeof *act_kc);
    icl_rng *rng = xcalloc((size_t)B, sizeof *rng);
    icl_ids *hist = xcalloc((size_t)B, sizeof *hist); /* prompt + generated, for the repetition penalty */
    long *limit = xcalloc((size_t)B, sizeof *limit);
    int *act = xcalloc((size_t)B, sizeof *act), nact = 0;
    int32_t *next = xcalloc((size_t)B, sizeof *next);
    float *logits = xmalloc((size_t)B * V * sizeof(float));
    for (int b = 0; b < B; b++) {
        if (start_seq(m, g, &seqs[b], &kc[b], &rng[b], &hist[b], &limit[b], logits + (size_t)b * V, nt, err, errsz))
            goto out;
        act[nact++] = b;
    }
    /* act[i] is the sequence whose logits are in row i */
    while (nact > 0) {
        int nn = 0;
        for (int i = 0; i < nact; i++) {
            int b = act[i];
            icl_gen_seq *s = &seqs[b];
            float *row = logits + (size_t)i * V;
            for (int j = g->n_sample_ids > 0 ? g->n_sample_ids : V; j < V; j++)
                row[j] = -INFINITY; /* padding ids: no token to decode */
            int id = icl_sample(&smp, &sp, row, hist[b].v, hist[b].n, &rng[b]);
            if (id < 0) {
                icl_seterr(err, errsz, "the model produced no finite logit (NaN or -inf everywhere)");
                goto out;
            }
            ids_push(&s->out, id);
            ids_push(&hist[b], id);
            if (on_token && on_token(ctx, b, id))
                s->stop = ICL_STOP_CALLER;
            else if (is_eos(g, id))
                s->stop = ICL_STOP_EOS;
            else if ((long)s->out.n >= limit[b])
                s->stop = s->out.n >= (size_t)g->max_new_tokens ? ICL_STOP_LENGTH : ICL_STOP_CONTEXT;
            if (s->stop == ICL_STOP_NONE) {
                act[nn] = b;
                next[nn] = id;
                act_kc[nn] = kc[b];
                nn++;
            }
        }
        nact = nn;
        if (nact > 0) {
            int one = pick_threads(&step_tuner, nt);
            double t0 = icl_now();
            if (one)
                omp_set_num_threads(1);
            int st = icl_model_step(m, act_kc, next, nact, logits, err, errsz);
            if (one)
                omp_set_num_threads(nt);
            if (st != 0)
                goto out;
            tuner_record(&step_tuner, one, icl_now() - t0);
        }
    }
    rc = 0;
out:
    for (int b = 0; b < B; b++) {
        if (!seqs[b].cache)
            icl_kv_cache_free(kc[b]);
        ids_free(&hist[b]);
    }
    free(kc);
    free(act_kc);
    free(rng);
    free(hist);
    free(limit);
    free(act);
    free(next);
    free(logits);
    icl_sampler_free(&smp);
    return rc;
}

/* ---------------------------------------------------------------- streaming text */

void icl_gen_text_init(icl_gen_text *t, const icl_tokenizer *tok, char **stop, int n_stop)
{
    memset(t, 0, sizeof *t);
    t->tok = tok;
    t->stop = stop;
    t->n_stop = n_stop;
    for (int i = 0; i < n_stop; i++)
        if (strlen(stop[i]) > t->max_stop)
            t->max_stop = strlen(stop[i]);
    icl_tok_stream_init(&t->ds, ICL_TOK_CONTINUATION, 1);
    buf_reserve(&t->text, 64);
}

void icl_gen_text_free(icl_gen_text *t)
{
    icl_tok_stream_free(&t->ds);
    buf_free(&t->text);
}

/* The earliest occurrence of a stop string in text that appeared since
 * `from` bytes (an occurrence may start up to max_stop - 1 bytes
 * earlier), as a byte offset; t->text.len when there is none. */
static size_t stop_at(const icl_gen_text *t, size_t from)
{
    size_t start = from >= t->max_stop ? from - t->max_stop + 1 : 0, cut = t->text.len;
    for (int i = 0; i < t->n_stop; i++) {
        size_t sl = strlen(t->stop[i]);
        const char *p = memmem(t->text.data + start, t->text.len - start, t->stop[i], sl);
        if (p && (size_t)(p - t->text.data) < cut)
            cut = (size_t)(p - t->text.data);
    }
    return cut;
}

/* Look for the stop strings in text that appeared since `from` bytes; cut
 * before the earliest. */
static int find_stop(icl_gen_text *t, size_t from)
{
    if (!t->n_stop)
        return 0;
    size_t cut = stop_at(t, from);
    if (cut == t->text.len)
        return 0;
    t->text.len = cut;
    t->text.data[cut] = '\0';
    t->stopped = 1;
    if (t->emitted > cut) /* cannot happen: a stop string's prefix is held back */
        t->emitted = cut;
    return 1;
}

int icl_gen_text_update(icl_gen_text *t, const int32_t *ids, size_t n, char *err, size_t errsz)
{
    if (t->stopped)
        return 1;
    size_t from = t->text.len;
    for (; t->fed < n; t->fed++)
        if (icl_tok_stream_put(t->tok, &t->ds, ids[t->fed], &t->text, err, errsz) != 0)
            return -1;
    int r = find_stop(t, from);
    if (r || !t->n_stop || t->ds.ids.n == t->ds.read)
        return r;
    /* Text the decoder holds back (a run of <0xNN> tokens whose text a
     * later byte could still change, a skipped special token) may already
     * hold a stop string ("\n" is <0x0A> in SentencePiece vocabularies):
     * were the sequence to end here, the flush would release it.  Look in
     * it; on a hit, end the sequence: flush and cut. */
    size_t len = t->text.len;
    if (icl_tok_stream_peek(t->tok, &t->ds, &t->text, err, errsz) != 0)
        return -1;
    int hit = stop_at(t, from) < t->text.len;
    t->text.len = len;
    t->text.data[len] = '\0';
    if (!hit)
        return 0;
    if (icl_tok_stream_flush(t->tok, &t->ds, &t->text, err, errsz) != 0)
        return -1;
    return find_stop(t, from);
}

int icl_gen_text_finish(icl_gen_text *t, char *err, size_t errsz)
{
    if (t->finished || t->stopped) {
        t->finished = 1;
        return t->stopped;
    }
    t->finished = 1;
    size_t from = t->text.len;
    if (icl_tok_stream_flush(t->tok, &t->ds, &t->text, err, errsz) != 0)
        return -1;
    return find_stop(t, from);
}

const char *icl_gen_text_stream(icl_gen_text *t, size_t *len)
{
    size_t end = t->text.len;
    if (!t->finished && !t->stopped) {
        size_t hold = 0;
        for (int i = 0; i < t->n_stop; i++) {
            size_t sl = strlen(t->stop[i]);
            for (size_t k = sl - 1; k > hold; k--)
                if (k <= end && memcmp(t->text.data + end - k, t->stop[i], k) == 0) {
                    hold = k;
                    break;
                }
        }
        end -= hold;
    }
    if (end < t->emitted)
        end = t->emitted;
    const char *p = t->text.data + t->emitted;
    *len = end - t->emitted;
    t->emitted = end;
    return p;
}

/* ---------------------------------------------------------------- prompts of records */

int icl_gen_prompt_ids(const icl_tokenizer *t, icl_tok_state *st, const icl_tokrec_opts *o, const json_t *rec,
                       icl_ids *out, char *err, size_t errsz)
{
    json_t *p = json_object_get(rec, "prompt"), *r = json_object_get(rec, "response");
    json_t *tmp = json_object(), *pa = NULL, *ra = NULL;
    int rc = -1;
    if (!p) {
        icl_seterr(err, errsz, "no \"prompt\"");
        goto out;
    }
    if (json_is_string(p)) {
        json_object_set(tmp, "prompt", p);
        json_object_set_new(tmp, "response", json_string(""));
    } else if (json_is_array(p) && json_array_size(p) > 0) {
        size_t n = json_array_size(p);
        for (size_t i = 0; i < n; i++)
            if (!json_is_string(json_array_get(p, i))) {
                icl_seterr(err, errsz, "\"prompt\"[%zu] is not a string", i);
                goto out;
            }
        pa = json_array();
        ra = json_array();
        if (json_is_array(r)) {
            if (json_array_size(r) + 1 != n && json_array_size(r) != n) {
                icl_seterr(err, errsz, "\"prompt\" has %zu turns, so \"response\" needs %zu (or %zu), not %zu", n,
                       n - 1, n, json_array_size(r));
                goto out;
            }
            for (size_t i = 0; i < n; i++) {
                json_array_append(pa, json_array_get(p, i));
                json_t *ri = i + 1 < n ? json_array_get(r, i) : NULL;
                if (ri && !json_is_string(ri)) {
                    icl_seterr(err, errsz, "\"response\"[%zu] is not a string", i);
                    goto out;
                }
                json_array_append_new(ra, ri ? json_incref(ri) : json_string(""));
            }
        } else {
            if (n % 2 == 0) {
                icl_seterr(err, errsz, "\"prompt\" has %zu segments without a \"response\" array: want an odd "
                       "number (prompt, response, ..., prompt)", n);
                goto out;
            }
            for (size_t i = 0; i < n; i += 2) {
                json_array_append(pa, json_array_get(p, i));
                json_array_append_new(ra, i + 1 < n ? json_incref(json_array_get(p, i + 1)) : json_string(""));
            }
        }
        json_object_set(tmp, "prompt", pa);
        json_object_set(tmp, "response", ra);
    } else {
        icl_seterr(err, errsz, "\"prompt\" is not a string or a non-empty array of strings");
        goto out;
    }
    /* a record rendered by a chat template (icl-fmt --chat-template) is
     * tokenized as icl-tok encode does: special-token text parsed, no BOS
     * or EOS added (the template wrote them) */
    int chat = json_is_true(json_object_get(rec, "chat"));
    if (chat)
        json_object_set_new(tmp, "chat", json_true());
    icl_tokrec_opts oo = *o;
    oo.max_len = 0;
    icl_buf line = {0};
    int st2 = icl_tokrec_encode(t, st, &oo, tmp, &line, err, errsz);
    if (st2 == 0) {
        /* the line is ids separated by spaces and TABs */
        size_t n0 = out->n;
        const char *s = line.data ? line.data : "";
        while (*s) {
            if (*s == ' ' || *s == '\t') {
                s++;
                continue;
            }
            char *e;
            long v = strtol(s, &e, 10);
            if (e == s)
                break;
            ids_push(out, (int32_t)v);
            s = e;
        }
        if (oo.eos && !chat && out->n > n0)
            out->n--; /* the EOS after the empty last response */
        rc = 0;
    }
    buf_free(&line);
out:
    json_decref(pa);
    json_decref(ra);
    json_decref(tmp);
    return rc;
}
