/* generate.c - batched KV-cache decoding, generation loop, streaming text.
 * See generate.h.  The step mirrors icl_model_decode (model.c) and HF's
 * modeling_llama.py / modeling_gpt2.py. */
#define _GNU_SOURCE
#include "generate.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
#include <string.h>

#include "ops.h"

#define NONE ((size_t)-1)

static void seterr(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- small-batch linear */

/* 16 floats; loads and stores through memcpy (unaligned vmovups). */
typedef float v16 __attribute__((vector_size(64)));

static inline v16 ld16(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Horizontal sum in a fixed order: fold halves (16 -> 8 -> 4 -> 2 -> 1). */
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));
static inline float hsum(v16 a)
{
    v8 lo, hi;
    memcpy(&lo, &a, sizeof lo);
    memcpy(&hi, (const char *)&a + sizeof lo, sizeof hi);
    v8 s8 = lo + hi;
    v4 l4, h4;
    memcpy(&l4, &s8, sizeof l4);
    memcpy(&h4, (const char *)&s8 + sizeof l4, sizeof h4);
    v4 s4 = l4 + h4;
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

#define RB 4 /* rows of x per pass over a weight row */

/* out[r] = dot(w[0..n), xs[r][0..n)) for r < nr (nr <= RB).  Every row uses
 * the same sequence of operations whatever nr is: two vector accumulators
 * over 32-float chunks, one 16-float step, fixed-order horizontal sum, then
 * a scalar tail. */
static inline __attribute__((always_inline)) void dot_rows(const float *w, const float *const *xs, int nr, int n, float *out)
{
    v16 a[RB][2];
    memset(a, 0, sizeof a);
    int k = 0;
    for (; k + 32 <= n; k += 32) {
        v16 w0 = ld16(w + k), w1 = ld16(w + k + 16);
        for (int r = 0; r < nr; r++) {
            a[r][0] += w0 * ld16(xs[r] + k);
            a[r][1] += w1 * ld16(xs[r] + k + 16);
        }
    }
    if (k + 16 <= n) {
        v16 w0 = ld16(w + k);
        for (int r = 0; r < nr; r++)
            a[r][0] += w0 * ld16(xs[r] + k);
        k += 16;
    }
    for (int r = 0; r < nr; r++) {
        float s = hsum(a[r][0] + a[r][1]);
        for (int j = k; j < n; j++)
            s += w[j] * xs[r][j];
        out[r] = s;
    }
}

/* icl_gen_linear on nt threads (none when the product is small). */
static void gen_linear(float *y, long ldy, const float *x, long ldx, int B, const float *W, const float *bias, int in,
                       int out, int conv1d, float beta, int nt)
{
    if ((double)B * in * out < 65536.0)
        nt = 1;
    if (!conv1d) {
        /* W [out, in]: blocks of 16 weight rows, each row read from memory
         * once for (up to) 8 rows of x, the 16 x 8 results gathered in yl
         * and written out together (rows of y are a multiple of 4 KiB apart
         * for the LM head: storing them one by one thrashes an L1 set) */
        int nblk = (out + 15) / 16;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int jb = 0; jb < nblk; jb++) {
            int j0 = jb * 16, nj = out - j0 < 16 ? out - j0 : 16;
            for (int g0 = 0; g0 < B; g0 += 2 * RB) {
                int ng = B - g0 < 2 * RB ? B - g0 : 2 * RB;
                float yl[2 * RB][16];
                for (int jj = 0; jj < nj; jj++) {
                    const float *w = W + (size_t)(j0 + jj) * in;
                    for (int b0 = 0; b0 < ng; b0 += RB) {
                        int nr = ng - b0 < RB ? ng - b0 : RB;
                        const float *xs[RB];
                        float o[RB];
                        for (int r = 0; r < nr; r++)
                            xs[r] = x + (size_t)(g0 + b0 + r) * ldx;
                        switch (nr) { /* constant row counts: accumulators stay in registers */
                        case 1: dot_rows(w, xs, 1, in, o); break;
                        case 2: dot_rows(w, xs, 2, in, o); break;
                        case 3: dot_rows(w, xs, 3, in, o); break;
                        default: dot_rows(w, xs, 4, in, o); break;
                        }
                        for (int r = 0; r < nr; r++)
                            yl[b0 + r][jj] = o[r];
                    }
                }
                for (int r = 0; r < ng; r++) {
                    float *yo = y + (size_t)(g0 + r) * ldy + j0;
                    for (int jj = 0; jj < nj; jj++) {
                        float t = yl[r][jj] + (bias ? bias[j0 + jj] : 0.0f);
                        yo[jj] = beta != 0.0f ? yo[jj] + t : t;
                    }
                }
            }
        }
        return;
    }
    /* W [in, out]: blocks of 64 output columns; y[b, j] = sum_k x[b,k] W[k,j]
     * accumulated in k order */
    int nblk = (out + 63) / 64;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int jb = 0; jb < nblk; jb++) {
        int j0 = jb * 64, nj = out - j0 < 64 ? out - j0 : 64;
        for (int b = 0; b < B; b++) {
            float acc[64] = {0};
            const float *xb = x + (size_t)b * ldx;
            for (int k = 0; k < in; k++) {
                const float *w = W + (size_t)k * out + j0;
                float xk = xb[k];
#pragma omp simd
                for (int j = 0; j < 64; j++)
                    acc[j] += xk * (j < nj ? w[j] : 0.0f);
            }
            float *yo = y + (size_t)b * ldy + j0;
            for (int j = 0; j < nj; j++) {
                float t = acc[j] + (bias ? bias[j0 + j] : 0.0f);
                yo[j] = beta != 0.0f ? yo[j] + t : t;
            }
        }
    }
}

void icl_gen_linear(float *y, long ldy, const float *x, long ldx, int B, const float *W, const float *bias, int in,
                    int out, int conv1d, float beta)
{
    gen_linear(y, ldy, x, ldx, B, W, bias, in, out, conv1d, beta, omp_get_max_threads());
}

/* ---------------------------------------------------------------- one decode step */

static const float *PP(const icl_model *m, size_t off) { return off == NONE ? NULL : m->params + off; }

static void norm(const icl_model *m, float *y, float *mean, float *rstd, const float *x, size_t w, size_t b, int N)
{
    const icl_config *c = &m->cfg;
    if (c->arch == ICL_ARCH_LLAMA)
        icl_rmsnorm_forward(y, rstd, x, PP(m, w), N, c->hidden_size, (float)c->norm_eps);
    else
        icl_layernorm_forward(y, mean, rstd, x, PP(m, w), PP(m, b), N, c->hidden_size, (float)c->norm_eps);
}

int icl_gen_step(icl_model *m, icl_kv_cache *const *caches, const int32_t *ids, int B, float *logits, char *err,
                 size_t errsz)
{
    const icl_config *c = &m->cfg;
    int C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, L = c->num_hidden_layers,
        hd = c->head_dim, KV = c->num_key_value_heads, H = c->num_attention_heads, g2 = c->arch == ICL_ARCH_GPT2;
    if (B < 1)
        return 0;
    for (int b = 0; b < B; b++) {
        if (ids[b] < 0 || ids[b] >= V) {
            seterr(err, errsz, "token id %d is not below vocab_size %d", ids[b], V);
            return -1;
        }
        if (caches[b]->len >= caches[b]->max_pos) {
            seterr(err, errsz, "KV cache full: %d positions", caches[b]->max_pos);
            return -1;
        }
        if (g2 && caches[b]->len >= c->max_position_embeddings) {
            seterr(err, errsz, "position %d is not below n_positions %d", caches[b]->len,
                   c->max_position_embeddings);
            return -1;
        }
    }
    long Datt = (long)H * hd, Dqkv = Datt + 2L * KV * hd, Dup = g2 ? I : 2L * I;
    int half = hd / 2;
    size_t nC = (size_t)B * C;
    float *buf = xmalloc((nC * 2 + (size_t)B * (Dqkv + Datt + Dup + I + 2 + 2 * half)) * sizeof(float));
    float *x = buf, *ln = x + nC, *qkv = ln + nC, *att = qkv + (size_t)B * Dqkv, *up = att + (size_t)B * Datt,
          *act = up + (size_t)B * Dup, *mean = act + (size_t)B * I, *rstd = mean + B, *cs = rstd + B,
          *sn = cs + (size_t)B * half;
    int32_t *pos = xmalloc((size_t)B * sizeof(int32_t));
    int maxlen = 0;
    for (int b = 0; b < B; b++) {
        pos[b] = caches[b]->len;
        maxlen = pos[b] + 1 > maxlen ? pos[b] + 1 : maxlen;
    }
    /* Only the matrix products (and a long attention) run on several
     * threads: the elementwise ops of one step are too small to pay for a
     * team's fork and join, which on a busy machine costs far more than
     * the work (each join waits for the slowest thread to be scheduled). */
    int nt = omp_get_max_threads(), att_nt = (double)B * H * maxlen * hd > 262144.0 ? nt : 1;
    omp_set_num_threads(1);
    if (!g2) {
        icl_rope_params rp = {c->rope_theta, c->rope_llama3, c->rope_factor, c->rope_low_freq_factor,
                              c->rope_high_freq_factor, c->rope_original_max_pos};
        icl_rope_tables(cs, sn, pos, B, hd, &rp);
    }
    /* embedding (+ learned positions for GPT-2) */
    const float *E = PP(m, m->embed), *Pe = PP(m, m->pos_embed);
    for (int b = 0; b < B; b++) {
        const float *e = E + (size_t)ids[b] * C;
        float *xb = x + (size_t)b * C;
        if (Pe) {
            const float *p = Pe + (size_t)pos[b] * C;
            for (int j = 0; j < C; j++)
                xb[j] = e[j] + p[j];
        } else {
            memcpy(xb, e, (size_t)C * sizeof(float));
        }
    }
    float scale = 1.0f / sqrtf((float)hd);
    int grp = H / KV;
    for (int l = 0; l < L; l++) {
        const icl_layer_offsets *o = &m->layer[l];
        norm(m, ln, mean, rstd, x, o->ln1_w, o->ln1_b, B);
        gen_linear(qkv, Dqkv, ln, C, B, PP(m, o->qkv_w), PP(m, o->qkv_b), C, (int)Dqkv, g2, 0.0f, nt);
        if (!g2) {
            icl_rope_apply(qkv, Dqkv, B, H, hd, cs, sn, 0);
            icl_rope_apply(qkv + Datt, Dqkv, B, KV, hd, cs, sn, 0);
        }
        for (int b = 0; b < B; b++) {
            icl_kv_cache *kc = caches[b];
            size_t lo = (size_t)l * KV * kc->max_pos * hd;
            for (int g = 0; g < KV; g++) {
                size_t at = lo + ((size_t)g * kc->max_pos + pos[b]) * hd;
                memcpy(kc->k + at, qkv + (size_t)b * Dqkv + Datt + (size_t)g * hd, (size_t)hd * sizeof(float));
                memcpy(kc->v + at, qkv + (size_t)b * Dqkv + Datt + (size_t)(KV + g) * hd,
                       (size_t)hd * sizeof(float));
            }
        }
        /* one query per (sequence, head) against its cache */
#pragma omp parallel for schedule(dynamic, 1) num_threads(att_nt)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H, g = h / grp, n = pos[b] + 1;
            const icl_kv_cache *kc = caches[b];
            size_t lo = ((size_t)l * KV + g) * kc->max_pos * hd;
            const float *q = qkv + (size_t)b * Dqkv + (size_t)h * hd, *K = kc->k + lo, *Vc = kc->v + lo;
            float *s = xmalloc((size_t)n * sizeof(float)), mx = -INFINITY;
            for (int t = 0; t < n; t++) {
                const float *k = K + (size_t)t * hd;
                float d = 0;
#pragma omp simd reduction(+ : d)
                for (int j = 0; j < hd; j++)
                    d += q[j] * k[j];
                s[t] = d * scale;
                mx = s[t] > mx ? s[t] : mx;
            }
            float sum = 0;
            for (int t = 0; t < n; t++) {
                s[t] = icl_expf(s[t] - mx);
                sum += s[t];
            }
            float inv = 1.0f / sum, *out = att + (size_t)b * Datt + (size_t)h * hd;
            for (int j = 0; j < hd; j++)
                out[j] = 0;
            for (int t = 0; t < n; t++) {
                const float *v = Vc + (size_t)t * hd;
                float p = s[t] * inv;
#pragma omp simd
                for (int j = 0; j < hd; j++)
                    out[j] += p * v[j];
            }
            free(s);
        }
        gen_linear(x, C, att, Datt, B, PP(m, o->o_w), PP(m, o->o_b), (int)Datt, C, g2, 1.0f, nt);
        norm(m, ln, mean, rstd, x, o->ln2_w, o->ln2_b, B);
        gen_linear(up, Dup, ln, C, B, PP(m, o->up_w), PP(m, o->up_b), C, (int)Dup, g2, 0.0f, nt);
        if (g2)
            icl_gelu_forward(act, up, (size_t)B * I);
        else
            icl_swiglu_forward(act, up, Dup, B, I);
        gen_linear(x, C, act, I, B, PP(m, o->down_w), PP(m, o->down_b), I, C, g2, 1.0f, nt);
    }
    norm(m, ln, mean, rstd, x, m->normf_w, m->normf_b, B);
    gen_linear(logits, V, ln, C, B, PP(m, m->lm_head), NULL, C, V, 0, 0.0f, nt);
    omp_set_num_threads(nt);
    for (int b = 0; b < B; b++)
        caches[b]->len++;
    free(pos);
    free(buf);
    return 0;
}

/* ---------------------------------------------------------------- generation config */

static int gen_int(json_t *root, const char *key, long lo, long hi, long *out, char *err, size_t errsz)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        seterr(err, errsz, "generation_config.json: \"%s\" is not an integer in [%ld, %ld]", key, lo, hi);
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
        seterr(err, errsz, "generation_config.json: \"%s\" is not a number", key);
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
    size_t n = strlen(dir) + 32;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/generation_config.json", dir);
    FILE *f = fopen(path, "r");
    free(path);
    if (!f)
        return 0;
    json_error_t je;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root || !json_is_object(root)) {
        seterr(err, errsz, "generation_config.json:%d: %s", root ? 1 : je.line,
               root ? "not a JSON object" : je.text);
        json_decref(root);
        return -1;
    }
    int rc = -1;
    long k = g->sp.top_k, mx = g->max_new_tokens;
    json_t *ds = json_object_get(root, "do_sample"), *eos = json_object_get(root, "eos_token_id");
    if (ds && !json_is_null(ds)) {
        if (!json_is_boolean(ds)) {
            seterr(err, errsz, "generation_config.json: \"do_sample\" is not true or false");
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
            g->eos[g->n_eos++] = (int32_t)json_integer_value(eos);
        } else if (json_is_array(eos) && json_array_size(eos) <= 16) {
            size_t i;
            json_t *x;
            json_array_foreach(eos, i, x)
            {
                if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
                    seterr(err, errsz, "generation_config.json: \"eos_token_id\"[%zu] is not a token id", i);
                    goto out;
                }
                g->eos[g->n_eos++] = (int32_t)json_integer_value(x);
            }
        } else {
            seterr(err, errsz, "generation_config.json: \"eos_token_id\" is not an id or a list of at most 16");
            goto out;
        }
    }
    if (icl_sampler_check(&g->sp, err, errsz) != 0) {
        char m2[256];
        snprintf(m2, sizeof m2, "generation_config.json: %s", err);
        seterr(err, errsz, "%s", m2);
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

int icl_generate(icl_model *m, const icl_gen_config *g, icl_gen_seq *seqs, int B, icl_gen_token_fn on_token,
                 void *ctx, char *err, size_t errsz)
{
    int nt = omp_get_max_threads();
    int V = m->cfg.vocab_size, maxpos = m->cfg.max_position_embeddings, rc = -1;
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
        icl_gen_seq *s = &seqs[b];
        s->out.n = 0;
        s->stop = ICL_STOP_NONE;
        if (s->n_prompt < 1) {
            seterr(err, errsz, "empty prompt");
            goto out;
        }
        if ((long)s->n_prompt > maxpos) {
            seterr(err, errsz, "the prompt has %zu tokens, more than the model's context (max_position_embeddings %d)",
                   s->n_prompt, maxpos);
            goto out;
        }
        /* new tokens allowed: the last one is never fed back, so a prompt of
         * n tokens leaves maxpos - n + 1 */
        limit[b] = g->max_new_tokens;
        if (limit[b] > (long)maxpos - (long)s->n_prompt + 1)
            limit[b] = (long)maxpos - (long)s->n_prompt + 1;
        icl_rng_seed(&rng[b], g->seed, s->index);
        for (size_t i = 0; i < s->n_prompt; i++)
            ids_push(&hist[b], s->prompt[i]);
        kc[b] = icl_kv_cache_new(m, (int)(s->n_prompt + (size_t)limit[b] - 1));
        int one = pick_threads(&prefill_tuner, nt);
        double t0 = icl_now();
        if (one)
            icl_set_threads(1); /* OpenMP and BLIS */
        int st = icl_model_decode(m, kc[b], s->prompt, (int)s->n_prompt, logits + (size_t)b * V, 0, err, errsz);
        if (one)
            icl_set_threads(nt);
        if (st != 0)
            goto out;
        tuner_record(&prefill_tuner, one, (icl_now() - t0) / (double)s->n_prompt);
        act[nact++] = b;
    }
    /* act[i] is the sequence whose logits are in row i */
    while (nact > 0) {
        int nn = 0;
        for (int i = 0; i < nact; i++) {
            int b = act[i];
            icl_gen_seq *s = &seqs[b];
            int id = icl_sample(&smp, &sp, logits + (size_t)i * V, hist[b].v, hist[b].n, &rng[b]);
            if (id < 0) {
                seterr(err, errsz, "the model produced no finite logit (NaN or -inf everywhere)");
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
            int st = icl_gen_step(m, act_kc, next, nact, logits, err, errsz);
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

/* Look for the stop strings in text that appeared since `from` bytes (an
 * occurrence may start up to max_stop - 1 bytes earlier); cut before the
 * earliest. */
static int find_stop(icl_gen_text *t, size_t from)
{
    if (!t->n_stop)
        return 0;
    size_t start = from >= t->max_stop ? from - t->max_stop + 1 : 0, cut = t->text.len;
    for (int i = 0; i < t->n_stop; i++) {
        size_t sl = strlen(t->stop[i]);
        const char *p = memmem(t->text.data + start, t->text.len - start, t->stop[i], sl);
        if (p && (size_t)(p - t->text.data) < cut)
            cut = (size_t)(p - t->text.data);
    }
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
        seterr(err, errsz, "no \"prompt\"");
        goto out;
    }
    if (json_is_string(p)) {
        json_object_set(tmp, "prompt", p);
        json_object_set_new(tmp, "response", json_string(""));
    } else if (json_is_array(p) && json_array_size(p) > 0) {
        size_t n = json_array_size(p);
        for (size_t i = 0; i < n; i++)
            if (!json_is_string(json_array_get(p, i))) {
                seterr(err, errsz, "\"prompt\"[%zu] is not a string", i);
                goto out;
            }
        pa = json_array();
        ra = json_array();
        if (json_is_array(r)) {
            if (json_array_size(r) + 1 != n && json_array_size(r) != n) {
                seterr(err, errsz, "\"prompt\" has %zu turns, so \"response\" needs %zu (or %zu), not %zu", n,
                       n - 1, n, json_array_size(r));
                goto out;
            }
            for (size_t i = 0; i < n; i++) {
                json_array_append(pa, json_array_get(p, i));
                json_t *ri = i + 1 < n ? json_array_get(r, i) : NULL;
                if (ri && !json_is_string(ri)) {
                    seterr(err, errsz, "\"response\"[%zu] is not a string", i);
                    goto out;
                }
                json_array_append_new(ra, ri ? json_incref(ri) : json_string(""));
            }
        } else {
            if (n % 2 == 0) {
                seterr(err, errsz, "\"prompt\" has %zu segments without a \"response\" array: want an odd "
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
        seterr(err, errsz, "\"prompt\" is not a string or a non-empty array of strings");
        goto out;
    }
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
        if (oo.eos && out->n > n0)
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
