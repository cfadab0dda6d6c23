/* model.c - parameters, HF folders, forward/backward of Llama/Qwen2/GPT-2, KV cache. */
#include "model.h"
#include "bf16.h"
#include "fileio.h"
#include "gguf_model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "ops.h"
#include "qlinear.h"
#include "safetensors.h"
#include "sniff.h"
#include "util.h"

#define NONE ((size_t)-1)
/* The loss head's rows of logits at a time.  Its weight gradient dW +=
 * dlogits^T h sums over rows: it is always accumulated over chunks of
 * min(T, HEAD_ROWS) target rows (T the batch's length), so that its
 * rounding depends on neither the buffers' capacity nor checkpointing.
 * When the head is a float32 or packed bf16 matrix with a vocabulary of at
 * least ICL_GEMM_LONG (float32: ops.h, BLIS's large path; bf16: bf16.h,
 * every element one fixed sequence over K; either way each row's logits and
 * dh the same whatever the rows around it), the logits and dh are computed over
 * as many such chunks at once as HEAD_BYTES of logits hold (SmolLM2: 1280
 * rows, whose products run 1.2-1.5x faster than 256 rows' on 2 threads of
 * a Xeon: bench/gemm_shapes.c HEAD_ROWS=), except with gradient
 * checkpointing (which asks for the least memory); else one chunk at a
 * time. */
#define HEAD_ROWS 256
#define HEAD_BYTES ((size_t)256 << 20)


/* ---------------------------------------------------------------- parameter table */

static size_t add_view(icl_param_set *m, int *cap, const char *name, int ndim, int64_t d0, int64_t d1)
{
    if (m->n_views == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        m->views = xreallocarray(m->views, (size_t)*cap, sizeof *m->views);
    }
    icl_param_view *v = &m->views[m->n_views++];
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    v->ndim = ndim;
    v->shape[0] = d0;
    v->shape[1] = ndim > 1 ? d1 : 0;
    v->numel = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1);
    v->offset = m->num_params;
    m->num_params += v->numel;
    return v->offset;
}

/* Lay out every tensor of the architecture in one buffer, in HF names;
 * the products q keeps quantized (q may be NULL) are left out. */
static void build_views(icl_model *mo, const icl_qlayout *q)
{
    const icl_config *c = &mo->cfg;
    icl_param_set *m = &mo->base;
    int cap = 0, L = c->num_hidden_layers;
    int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, hd = c->head_dim;
    int64_t Q = c->num_attention_heads * hd, K = c->num_key_value_heads * hd;
    char nm[128];
    mo->layer = xcalloc((size_t)L, sizeof *mo->layer);
    mo->pos_embed = mo->normf_b = mo->embed = NONE;
#define QT(l, p) (q && q->proj ? q->proj[(size_t)(l) * ICL_NPROJ + (p)] : 0)
    int qe = q && q->embed, qh = q && (c->tie_word_embeddings ? q->embed : q->head);
    if (c->arch == ICL_ARCH_LLAMA) {
        if (!qe)
            mo->embed = add_view(m, &cap, "model.embed_tokens.weight", 2, V, C);
        for (int l = 0; l < L; l++) {
            icl_layer_offsets *o = &mo->layer[l];
            memset(o, 0xff, sizeof *o);
#define N(s) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, s), nm)
            o->ln1_w = add_view(m, &cap, N("input_layernorm.weight"), 1, C, 0);
            if (!QT(l, ICL_PROJ_QKV)) {
                o->qkv_w = add_view(m, &cap, N("self_attn.q_proj.weight"), 2, Q, C);
                add_view(m, &cap, N("self_attn.k_proj.weight"), 2, K, C);
                add_view(m, &cap, N("self_attn.v_proj.weight"), 2, K, C);
            }
            if (c->qkv_bias) {
                o->qkv_b = add_view(m, &cap, N("self_attn.q_proj.bias"), 1, Q, 0);
                add_view(m, &cap, N("self_attn.k_proj.bias"), 1, K, 0);
                add_view(m, &cap, N("self_attn.v_proj.bias"), 1, K, 0);
            }
            if (!QT(l, ICL_PROJ_O))
                o->o_w = add_view(m, &cap, N("self_attn.o_proj.weight"), 2, C, Q);
            if (c->o_bias)
                o->o_b = add_view(m, &cap, N("self_attn.o_proj.bias"), 1, C, 0);
            o->ln2_w = add_view(m, &cap, N("post_attention_layernorm.weight"), 1, C, 0);
            if (!QT(l, ICL_PROJ_UP)) {
                o->up_w = add_view(m, &cap, N("mlp.gate_proj.weight"), 2, I, C);
                add_view(m, &cap, N("mlp.up_proj.weight"), 2, I, C);
            }
            if (c->mlp_bias) {
                o->up_b = add_view(m, &cap, N("mlp.gate_proj.bias"), 1, I, 0);
                add_view(m, &cap, N("mlp.up_proj.bias"), 1, I, 0);
            }
            if (!QT(l, ICL_PROJ_DOWN))
                o->down_w = add_view(m, &cap, N("mlp.down_proj.weight"), 2, C, I);
            if (c->mlp_bias)
                o->down_b = add_view(m, &cap, N("mlp.down_proj.bias"), 1, C, 0);
#undef N
        }
        mo->normf_w = add_view(m, &cap, "model.norm.weight", 1, C, 0);
    } else {
        if (!qe)
            mo->embed = add_view(m, &cap, "transformer.wte.weight", 2, V, C);
        mo->pos_embed = add_view(m, &cap, "transformer.wpe.weight", 2, c->max_position_embeddings, C);
        for (int l = 0; l < L; l++) {
            icl_layer_offsets *o = &mo->layer[l];
            memset(o, 0xff, sizeof *o);
#define N(s) (snprintf(nm, sizeof nm, "transformer.h.%d.%s", l, s), nm)
            o->ln1_w = add_view(m, &cap, N("ln_1.weight"), 1, C, 0);
            o->ln1_b = add_view(m, &cap, N("ln_1.bias"), 1, C, 0);
            if (!QT(l, ICL_PROJ_QKV))
                o->qkv_w = add_view(m, &cap, N("attn.c_attn.weight"), 2, C, 3 * C);
            o->qkv_b = add_view(m, &cap, N("attn.c_attn.bias"), 1, 3 * C, 0);
            if (!QT(l, ICL_PROJ_O))
                o->o_w = add_view(m, &cap, N("attn.c_proj.weight"), 2, C, C);
            o->o_b = add_view(m, &cap, N("attn.c_proj.bias"), 1, C, 0);
            o->ln2_w = add_view(m, &cap, N("ln_2.weight"), 1, C, 0);
            o->ln2_b = add_view(m, &cap, N("ln_2.bias"), 1, C, 0);
            if (!QT(l, ICL_PROJ_UP))
                o->up_w = add_view(m, &cap, N("mlp.c_fc.weight"), 2, C, I);
            o->up_b = add_view(m, &cap, N("mlp.c_fc.bias"), 1, I, 0);
            if (!QT(l, ICL_PROJ_DOWN))
                o->down_w = add_view(m, &cap, N("mlp.c_proj.weight"), 2, I, C);
            o->down_b = add_view(m, &cap, N("mlp.c_proj.bias"), 1, C, 0);
#undef N
        }
        mo->normf_w = add_view(m, &cap, "transformer.ln_f.weight", 1, C, 0);
        mo->normf_b = add_view(m, &cap, "transformer.ln_f.bias", 1, C, 0);
    }
    mo->lm_head = c->tie_word_embeddings ? mo->embed : qh ? NONE : add_view(m, &cap, "lm_head.weight", 2, V, C);
#undef QT
}

/* The model without its parameter buffer (base.params NULL): the views
 * laid out, so that a loader can check them against the files before
 * allocating (icl_model_load). */
static icl_model *model_shell(const icl_config *cfg, const icl_qlayout *q)
{
    icl_model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->cfg.raw = cfg->raw ? json_deep_copy(cfg->raw) : NULL;
    build_views(m, q);
    snprintf(m->base.name, sizeof m->base.name, "base");
    m->base.trainable = 1;
    return m;
}

static icl_model *model_alloc(const icl_config *cfg, const icl_qlayout *q)
{
    icl_model *m = model_shell(cfg, q);
    /* on huge pages: BLIS packs the weights (icl_xcalloc_huge) */
    m->base.params = icl_xcalloc_huge(m->base.num_params ? m->base.num_params : 1, sizeof(float));
    return m;
}

icl_model *icl_model_new(const icl_config *cfg) { return model_alloc(cfg, NULL); }

/* Logical shape [out, in] of product p of a block. */
static void proj_shape(const icl_config *c, int p, int *in, int *out)
{
    int C = c->hidden_size, I = c->intermediate_size, g2 = c->arch == ICL_ARCH_GPT2;
    int Datt = c->num_attention_heads * c->head_dim, Dqkv = Datt + 2 * c->num_key_value_heads * c->head_dim;
    switch (p) {
    case ICL_PROJ_QKV: *in = C, *out = Dqkv; break;
    case ICL_PROJ_O: *in = Datt, *out = C; break;
    case ICL_PROJ_UP: *in = C, *out = g2 ? I : 2 * I; break;
    default: *in = I, *out = C; break;
    }
}

#define QALIGN 64

icl_model *icl_model_new_quantized(const icl_config *cfg, const icl_qlayout *q, char *err, size_t errsz)
{
    int L = cfg->num_hidden_layers, C = cfg->hidden_size, V = cfg->vocab_size;
    int qh = cfg->tie_word_embeddings ? 0 : q->head;
    /* check every entry, then size the blocks */
    size_t bytes = 0;
    char e2[256];
    static const char *const pname[ICL_NPROJ] = {"q|k|v", "o", "up", "down"};
#define NEED(qt, in, out, ...)                                                                    \
    do {                                                                                          \
        if (qt) {                                                                                 \
            if (icl_qblock_check(qt, in, e2, sizeof e2)) {                                        \
                icl_seterr(err, errsz, __VA_ARGS__);                                              \
                return NULL;                                                                      \
            }                                                                                     \
            bytes += (icl_qblock_row_bytes(qt, in) * (size_t)(out) + QALIGN - 1) / QALIGN * QALIGN; \
        }                                                                                         \
    } while (0)
    NEED(q->embed, C, V, "token embedding: %s", e2);
    NEED(qh, C, V, "LM head: %s", e2);
    for (int l = 0; q->proj && l < L; l++)
        for (int p = 0; p < ICL_NPROJ; p++) {
            int in, out;
            proj_shape(cfg, p, &in, &out);
            NEED(q->proj[(size_t)l * ICL_NPROJ + p], in, out, "layer %d %s product: %s", l, pname[p], e2);
        }
#undef NEED
    icl_model *m = model_alloc(cfg, q);
    icl_model_freeze_base(m);
    m->qbytes = bytes;
    m->qdata = bytes ? xmalloc(bytes) : NULL;
    m->qproj = xcalloc((size_t)L * ICL_NPROJ, sizeof *m->qproj);
    char *at = m->qdata;
#define TAKE(w, qt, in, out)                                                                              \
    do {                                                                                                  \
        (w) = (icl_weight){ICL_WEIGHT_QBLOCK, qt, out, in, 0, at, NULL};                                  \
        at += (icl_qblock_row_bytes(qt, in) * (size_t)(out) + QALIGN - 1) / QALIGN * QALIGN;              \
    } while (0)
    if (q->embed)
        TAKE(m->qembed, q->embed, C, V);
    for (int l = 0; q->proj && l < L; l++)
        for (int p = 0; p < ICL_NPROJ; p++) {
            int in, out, qt = q->proj[(size_t)l * ICL_NPROJ + p];
            proj_shape(cfg, p, &in, &out);
            if (qt)
                TAKE(m->qproj[(size_t)l * ICL_NPROJ + p], qt, in, out);
        }
    if (qh)
        TAKE(m->qhead, qh, C, V);
    else if (cfg->tie_word_embeddings)
        m->qhead = m->qembed;
#undef TAKE
    return m;
}

int icl_model_qsummary(const icl_model *m, char *buf, size_t bufsz)
{
    int cnt[64] = {0}, n = 0;
    size_t bytes = 0;
    const icl_weight *w[2] = {&m->qembed, m->cfg.tie_word_embeddings ? NULL : &m->qhead};
    for (int i = 0; i < 2; i++)
        if (w[i] && w[i]->data && w[i]->qtype >= 0 && w[i]->qtype < 64) {
            cnt[w[i]->qtype]++, n++;
            bytes += icl_qblock_row_bytes(w[i]->qtype, w[i]->in) * (size_t)w[i]->out;
        }
    for (int i = 0; m->qproj && i < m->cfg.num_hidden_layers * ICL_NPROJ; i++)
        if (m->qproj[i].data && m->qproj[i].qtype >= 0 && m->qproj[i].qtype < 64) {
            cnt[m->qproj[i].qtype]++, n++;
            bytes += icl_qblock_row_bytes(m->qproj[i].qtype, m->qproj[i].in) * (size_t)m->qproj[i].out;
        }
    if (buf && bufsz) {
        icl_buf b = {0};
        char t[96];
        snprintf(t, sizeof t, "%d %s in quantized blocks (", n, n == 1 ? "matrix" : "matrices");
        buf_puts(&b, t);
        for (int k = 0, first = 1; k < 64; k++)
            if (cnt[k]) {
                snprintf(t, sizeof t, "%s%s x %d", first ? "" : ", ", icl_ggml_type_name((uint32_t)k), cnt[k]);
                buf_puts(&b, t);
                first = 0;
            }
        snprintf(t, sizeof t, "), %.1f MB", bytes / 1e6);
        buf_puts(&b, t);
        snprintf(buf, bufsz, "%.*s", (int)b.len, b.data);
        buf_free(&b);
    }
    return n;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void icl_model_init_random(icl_model *m, uint64_t seed, float std)
{
    if (std <= 0)
        std = 0.02f;
    uint64_t s = seed;
    for (int i = 0; i < m->base.n_views; i++) {
        const icl_param_view *v = &m->base.views[i];
        float *p = m->base.params + v->offset;
        const char *suf = strrchr(v->name, '.');
        int is_norm = v->ndim == 1 && strstr(v->name, "norm") ? 1 : v->ndim == 1 && strstr(v->name, "ln_") ? 1 : 0;
        if (v->ndim == 1 && suf && !strcmp(suf, ".bias")) {
            memset(p, 0, v->numel * sizeof *p);
        } else if (is_norm) {
            for (size_t j = 0; j < v->numel; j++)
                p[j] = 1.0f;
        } else {
            /* HF _init_weights: GPT-2 scales the residual projections by 1/sqrt(2 n_layer) */
            float sd = std;
            if (m->cfg.arch == ICL_ARCH_GPT2 && suf && strstr(v->name, "c_proj.weight"))
                sd = std / sqrtf(2.0f * m->cfg.num_hidden_layers);
            for (size_t j = 0; j < v->numel; j += 2) {
                double u1 = ((splitmix(&s) >> 11) + 1.0) / 9007199254740993.0, u2 = (splitmix(&s) >> 11) / 9007199254740992.0;
                double r = sqrt(-2 * log(u1));
                p[j] = (float)(sd * r * cos(2 * M_PI * u2));
                if (j + 1 < v->numel)
                    p[j + 1] = (float)(sd * r * sin(2 * M_PI * u2));
            }
        }
    }
    /* and zeroes the padding_idx row of Llama/Qwen2 embeddings */
    if (m->cfg.arch == ICL_ARCH_LLAMA && m->cfg.pad_token_id >= 0 && m->embed != NONE)
        memset(m->base.params + m->embed + (size_t)m->cfg.pad_token_id * m->cfg.hidden_size, 0,
               (size_t)m->cfg.hidden_size * sizeof(float));
}

const icl_param_view *icl_param_set_view(const icl_param_set *s, const char *name)
{
    for (int i = 0; i < s->n_views; i++)
        if (!strcmp(s->views[i].name, name))
            return &s->views[i];
    return NULL;
}

const icl_param_view *icl_model_view(const icl_model *m, const char *name)
{
    return icl_param_set_view(&m->base, name);
}

int icl_model_trainable(icl_model *m, icl_param_set **out, int max)
{
    int n = 0;
    if (m->base.trainable && n++ < max)
        out[n - 1] = &m->base;
    for (int i = 0; i < m->n_sets; i++)
        if (m->sets[i]->trainable && n++ < max)
            out[n - 1] = m->sets[i];
    return n;
}

static void set_alloc_grads(icl_param_set *s)
{
    if (s->trainable && !s->grads)
        s->grads = icl_xcalloc_huge(s->num_params, sizeof(float)); /* dW of BLIS products */
}

/* Point the adapters' dA, dB at their set's gradients (NULL while it has none). */
static void lora_bind(icl_model *m)
{
    const icl_param_set *s = m->lora_set;
    for (int l = 0; m->lora && l < m->cfg.num_hidden_layers; l++)
        for (int p = 0; p < ICL_NPROJ; p++)
            for (int i = 0; i < m->lora[l].n[p]; i++) {
                icl_lora *a = &m->lora[l].lora[p][i];
                a->dA = s->grads ? s->grads + (a->A - s->params) : NULL;
                a->dB = s->grads ? s->grads + (a->B - s->params) : NULL;
            }
}

void icl_model_alloc_grads(icl_model *m)
{
    set_alloc_grads(&m->base);
    for (int i = 0; i < m->n_sets; i++)
        set_alloc_grads(m->sets[i]);
    lora_bind(m);
}

static void set_alloc_moments(icl_param_set *s)
{
    if (!s->trainable)
        return;
    if (!s->m)
        s->m = xcalloc(s->num_params, sizeof(float));
    if (!s->v)
        s->v = xcalloc(s->num_params, sizeof(float));
}

void icl_model_alloc_moments(icl_model *m)
{
    set_alloc_moments(&m->base);
    for (int i = 0; i < m->n_sets; i++)
        set_alloc_moments(m->sets[i]);
}

void icl_model_zero_grads(icl_model *m)
{
    icl_model_alloc_grads(m);
    if (m->base.grads)
        memset(m->base.grads, 0, m->base.num_params * sizeof(float));
    for (int i = 0; i < m->n_sets; i++)
        if (m->sets[i]->grads)
            memset(m->sets[i]->grads, 0, m->sets[i]->num_params * sizeof(float));
}

static void set_free_state(icl_param_set *s)
{
    free(s->grads);
    free(s->m);
    free(s->v);
    s->grads = s->m = s->v = NULL;
}

void icl_model_freeze_base(icl_model *m)
{
    m->base.trainable = 0;
    set_free_state(&m->base);
}

void icl_model_set_gradient_checkpointing(icl_model *m, int on)
{
    m->gradient_checkpointing = on != 0; /* the next forward lays out its activations so */
}

int icl_model_set_lora_dropout(icl_model *m, float p, char *err, size_t errsz)
{
    if (!(p >= 0 && p < 1)) {
        icl_seterr(err, errsz, "LoRA dropout %g is not in [0, 1)", (double)p);
        return -1;
    }
    m->lora_dropout = p;
    return 0;
}

void icl_model_set_dropout_key(icl_model *m, uint64_t key) { m->dropout_key = key; }

static void set_free(icl_param_set *s)
{
    set_free_state(s);
    free(s->params);
    free(s->views);
}

static void acts_free(icl_acts *a);

/* icl_model_set_bf16's packed weights: product l * ICL_NPROJ + p of layer
 * l, the LM head at L * ICL_NPROJ; w[i].fwd NULL for a product in
 * quantized blocks. */
struct icl_model_bf16 {
    int n, have_bwd;
    icl_bf16_weight *w;
    uint16_t **fwd, **bwd; /* owned: the buffers of w[i] */
};

static void bf16_free(struct icl_model_bf16 *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->n; i++) {
        free(h->fwd[i]);
        free(h->bwd[i]);
    }
    free(h->w);
    free(h->fwd);
    free(h->bwd);
    free(h);
}

void icl_model_free(icl_model *m)
{
    if (!m)
        return;
    icl_config_free(&m->cfg);
    set_free(&m->base);
    for (int i = 0; i < m->n_sets; i++) {
        set_free(m->sets[i]);
        free(m->sets[i]);
    }
    free(m->sets);
    if (m->lora)
        for (int l = 0; l < m->cfg.num_hidden_layers; l++)
            for (int p = 0; p < ICL_NPROJ; p++) {
                for (int i = 0; i < m->lora[l].n[p]; i++)
                    icl_lora_unpack(&m->lora[l].lora[p][i]);
                free(m->lora[l].lora[p]);
            }
    free(m->lora);
    free(m->layer);
    free(m->qproj);
    free(m->qdata);
    free(m->src_dir);
    acts_free(m->acts);
    bf16_free(m->bf16);
    free(m);
}

/* ---------------------------------------------------------------- low-rank adapters */

/* A projection an adapter can target: its PEFT module path (after the
 * "base_model.model." prefix), the block projection and column offset. */
typedef struct {
    char path[96];
    const char *leaf; /* the name PEFT's target_modules matches */
    int proj, out_off, out, in;
} lora_site;

/* The adaptable projections of layer l of a model of configuration c, in
 * the order of HF's modules. */
static int lora_sites_cfg(const icl_config *c, int l, lora_site *s)
{
    int C = c->hidden_size, I = c->intermediate_size, n = 0;
    int Q = c->num_attention_heads * c->head_dim, K = c->num_key_value_heads * c->head_dim;
#define SITE(fmt, lf, p, off, o, i)                                                                     \
    (snprintf(s[n].path, sizeof s[n].path, fmt, l, lf), s[n].leaf = lf, s[n].proj = p, s[n].out_off = off, \
     s[n].out = o, s[n].in = i, n++)
    if (c->arch == ICL_ARCH_LLAMA) {
        SITE("model.layers.%d.self_attn.%s", "q_proj", ICL_PROJ_QKV, 0, Q, C);
        SITE("model.layers.%d.self_attn.%s", "k_proj", ICL_PROJ_QKV, Q, K, C);
        SITE("model.layers.%d.self_attn.%s", "v_proj", ICL_PROJ_QKV, Q + K, K, C);
        SITE("model.layers.%d.self_attn.%s", "o_proj", ICL_PROJ_O, 0, C, Q);
        SITE("model.layers.%d.mlp.%s", "gate_proj", ICL_PROJ_UP, 0, I, C);
        SITE("model.layers.%d.mlp.%s", "up_proj", ICL_PROJ_UP, I, I, C);
        SITE("model.layers.%d.mlp.%s", "down_proj", ICL_PROJ_DOWN, 0, C, I);
    } else {
        SITE("transformer.h.%d.attn.%s", "c_attn", ICL_PROJ_QKV, 0, 3 * C, C);
        SITE("transformer.h.%d.attn.%s", "c_proj", ICL_PROJ_O, 0, C, C);
        SITE("transformer.h.%d.mlp.%s", "c_fc", ICL_PROJ_UP, 0, I, C);
        SITE("transformer.h.%d.mlp.%s", "c_proj", ICL_PROJ_DOWN, 0, C, I);
    }
#undef SITE
    return n;
}

static int lora_sites(const icl_model *m, int l, lora_site *s)
{
    return lora_sites_cfg(&m->cfg, l, s);
}

char **icl_config_modules(const icl_config *c, int *n)
{
    lora_site site[8];
    int L = c->num_hidden_layers, ns = lora_sites_cfg(c, 0, site), k = 0;
    char **out = xcalloc((size_t)L * ns + 4, sizeof *out);
    for (int l = 0; l < L; l++) {
        lora_sites_cfg(c, l, site);
        for (int i = 0; i < ns; i++)
            out[k++] = xstrdup(site[i].path);
    }
    if (c->arch == ICL_ARCH_GPT2) {
        out[k++] = xstrdup("transformer.wte");
        out[k++] = xstrdup("transformer.wpe");
    } else
        out[k++] = xstrdup("model.embed_tokens");
    out[k++] = xstrdup("lm_head");
    *n = k;
    return out;
}

/* PEFT's match of a module name against a target: the name itself, or the
 * name ending in "." target (peft.tuners.tuners_utils.check_target_module_exists):
 * "q_proj" selects every layer's, "model.layers.0.self_attn.q_proj" one. */
static int lora_match(const char *path, const char *target)
{
    size_t lp = strlen(path), lt = strlen(target);
    return lp == lt ? !strcmp(path, target) : lp > lt && path[lp - lt - 1] == '.' && !strcmp(path + lp - lt, target);
}

/* The first of the n targets that selects path: its index, or -1. */
static int lora_wanted(const char *path, const char *const *targets, int n)
{
    for (int i = 0; i < n; i++)
        if (lora_match(path, targets[i]))
            return i;
    return -1;
}

/* icl_model_add_lora; with ranks, a module's rank is ranks[t] of the first
 * target t selecting it and its scale 1 (r and alpha unused). */
static icl_param_set *add_lora(icl_model *m, const char *const *targets, const int *ranks, int n_targets, int r,
                               float alpha, uint64_t seed, char *err, size_t errsz)
{
    int L = m->cfg.num_hidden_layers;
    lora_site site[8];
    for (int t = 0; ranks && t < n_targets && r >= 1; t++)
        r = ranks[t] < r ? ranks[t] : r; /* the smallest, for the check below */
    if (r < 1 || m->lora) {
        icl_seterr(err, errsz, r < 1 ? "LoRA rank %d is below 1" : "the model has adapters already (rank %d)", r);
        return NULL;
    }
    int ns = lora_sites(m, 0, site);
    for (int t = 0; t < n_targets; t++) {
        int hit = 0;
        for (int i = 0; i < ns; i++)
            hit |= !strcmp(site[i].leaf, targets[t]);
        for (int l = 0; l < L && !hit && strchr(targets[t], '.'); l++) { /* a path: some layer's module */
            lora_sites(m, l, site);
            for (int i = 0; i < ns; i++)
                hit |= lora_match(site[i].path, targets[t]);
        }
        if (!hit) {
            const char *dot = strrchr(targets[t], '.'), *leaf = dot ? dot + 1 : targets[t];
            if (!strcmp(leaf, "lm_head") || !strcmp(leaf, "embed_tokens") || !strcmp(leaf, "wte") ||
                !strcmp(leaf, "wpe"))
                icl_seterr(err, errsz, "LoRA target \"%s\": adapters of the embeddings and the output head are "
                           "not trained, only of the layers' projections (merged into float32 weights, as icl-convert "
                           "--adapter does, such adapters apply)", targets[t]);
            else
                icl_seterr(err, errsz, "LoRA target \"%s\" names no projection of this %s model", targets[t],
                           m->cfg.model_type);
            return NULL;
        }
    }
    icl_param_set *set = xcalloc(1, sizeof *set);
    snprintf(set->name, sizeof set->name, "lora");
    set->trainable = 1;
    int cap = 0;
    char nm[128];
    for (int l = 0; l < L; l++) {
        lora_sites(m, l, site);
        for (int i = 0; i < ns; i++) {
            int t = lora_wanted(site[i].path, targets, n_targets);
            if (t >= 0) {
                int rs = ranks ? ranks[t] : r;
                snprintf(nm, sizeof nm, "base_model.model.%.95s.lora_A.weight", site[i].path);
                add_view(set, &cap, nm, 2, rs, site[i].in);
                snprintf(nm, sizeof nm, "base_model.model.%.95s.lora_B.weight", site[i].path);
                add_view(set, &cap, nm, 2, site[i].out, rs);
            }
        }
    }
    set->params = xcalloc(set->num_params, sizeof(float));
    m->lora = xcalloc((size_t)L, sizeof *m->lora);
    uint64_t st = seed;
    int v = 0;
    for (int l = 0; l < L; l++) {
        lora_sites(m, l, site);
        for (int i = 0; i < ns; i++) {
            int t = lora_wanted(site[i].path, targets, n_targets);
            if (t < 0)
                continue;
            int rs = ranks ? ranks[t] : r;
            float scale = ranks ? 1.0f : alpha / (float)r;
            const icl_param_view *va = &set->views[v++], *vb = &set->views[v++];
            /* PEFT: kaiming_uniform_(A, a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0 */
            float *A = set->params + va->offset, bound = 1.0f / sqrtf((float)site[i].in);
            for (size_t j = 0; j < va->numel; j++)
                A[j] = (float)((2.0 * ((splitmix(&st) >> 11) / 9007199254740992.0) - 1.0) * bound);
            icl_layer_lora *ll = &m->lora[l];
            int p = site[i].proj;
            ll->lora[p] = xreallocarray(ll->lora[p], (size_t)ll->n[p] + 1, sizeof *ll->lora[p]);
            ll->lora[p][ll->n[p]++] = (icl_lora){rs, site[i].in, site[i].out, site[i].out_off, scale, A,
                                                 set->params + vb->offset, NULL, NULL, 0.0f, 0, NULL, NULL};
        }
    }
    m->sets = xreallocarray(m->sets, (size_t)m->n_sets + 1, sizeof *m->sets);
    m->sets[m->n_sets++] = set;
    m->lora_set = set;
    return set;
}

icl_param_set *icl_model_add_lora(icl_model *m, const char *const *targets, int n_targets, int r, float alpha,
                                  uint64_t seed, char *err, size_t errsz)
{
    return add_lora(m, targets, NULL, n_targets, r, alpha, seed, err, errsz);
}

icl_param_set *icl_model_add_lora_ranked(icl_model *m, const char *const *targets, const int *ranks, int n_targets,
                                         char *err, size_t errsz)
{
    return add_lora(m, targets, ranks, n_targets, 1, 1.0f, 0, err, errsz);
}

/* ---------------------------------------------------------------- loading and saving */

/* The weight files of a folder: model.safetensors, or the shards listed by
 * model.safetensors.index.json ("weight_map": name -> file in the folder). */
typedef struct {
    int n;
    icl_st_file **f;
    char **path;
} shards;

static void shards_close(shards *s)
{
    for (int i = 0; i < s->n; i++) {
        icl_st_close(s->f[i]);
        free(s->path[i]);
    }
    free(s->f);
    free(s->path);
    memset(s, 0, sizeof *s);
}

static int shards_open(shards *s, const char *dir, char *err, size_t errsz)
{
    memset(s, 0, sizeof *s);
    char *wp = icl_path_join(dir, "model.safetensors"), *ip = icl_path_join(dir, "model.safetensors.index.json");
    struct stat st;
    int rc = -1;
    if (stat(wp, &st) == 0 || stat(ip, &st) != 0) {
        s->f = xmalloc(sizeof *s->f);
        s->path = xmalloc(sizeof *s->path);
        if ((s->f[0] = icl_st_open(wp, err, errsz))) {
            s->path[0] = wp;
            wp = NULL;
            s->n = 1;
            rc = 0;
        }
        goto out;
    }
    json_error_t je;
    json_t *ix = json_load_file(ip, JSON_REJECT_DUPLICATES, &je), *wm = json_object_get(ix, "weight_map");
    if (!json_is_object(wm)) {
        icl_seterr(err, errsz, "%s: %s", ip, ix ? "no \"weight_map\" object" : je.text);
        json_decref(ix);
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) {
        const char *fn = json_string_value(v);
        if (!fn || !*fn || strchr(fn, '/') || !strcmp(fn, "..")) {
            icl_seterr(err, errsz, "%s: weight_map[\"%s\"] is not a file name in the folder", ip, k);
            json_decref(ix);
            goto out;
        }
        char *p = icl_path_join(dir, fn);
        int seen = 0;
        for (int i = 0; i < s->n && !seen; i++)
            seen = !strcmp(s->path[i], p);
        if (seen) {
            free(p);
            continue;
        }
        s->f = xreallocarray(s->f, (size_t)s->n + 1, sizeof *s->f);
        s->path = xreallocarray(s->path, (size_t)s->n + 1, sizeof *s->path);
        if (!(s->f[s->n] = icl_st_open(p, err, errsz))) {
            free(p);
            json_decref(ix);
            goto out;
        }
        s->path[s->n++] = p;
    }
    json_decref(ix);
    rc = 0;
out:
    free(wp);
    free(ip);
    if (rc)
        shards_close(s);
    return rc;
}

static const icl_st_tensor *shards_find(const shards *s, const char *name, const char **path)
{
    for (int i = 0; i < s->n; i++) {
        const icl_st_tensor *t = icl_st_find(s->f[i], name);
        if (t) {
            *path = s->path[i];
            return t;
        }
    }
    return NULL;
}

/* The tensor of view v in the open files, its shape checked against v's
 * (NULL with err naming the file; *wp: the file it is in). */
static const icl_st_tensor *view_tensor(const icl_param_view *v, const shards *sh, const char *where, const char **wp,
                                        char *err, size_t errsz)
{
    *wp = sh->path[0];
    const icl_st_tensor *t = shards_find(sh, v->name, wp);
    if (!t && !strncmp(v->name, "transformer.", 12)) /* original GPT-2 checkpoints have no prefix */
        t = shards_find(sh, v->name + 12, wp);
    if (!t) {
        icl_seterr(err, errsz, "%s: missing tensor \"%s\"", sh->n == 1 ? *wp : where, v->name);
        return NULL;
    }
    int ok = t->ndim == v->ndim && t->shape[0] == v->shape[0] && (v->ndim == 1 || t->shape[1] == v->shape[1]);
    if (!ok) {
        char shp[64] = "";
        for (int d = 0; d < t->ndim && d < 4; d++)
            snprintf(shp + strlen(shp), sizeof shp - strlen(shp), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        icl_seterr(err, errsz, "%s: tensor \"%s\" has shape [%s], config.json needs [%lld%s%.0lld]", *wp, v->name,
                   shp, (long long)v->shape[0], v->ndim > 1 ? ", " : "", (long long)v->shape[1]);
        return NULL;
    }
    return t;
}

/* Check every view of m against the open files (present, same shape)
 * before anything the size of the model is allocated: a config.json that
 * claims a huge model fails here, not in an allocation of its size. */
static int check_views(const icl_model *m, const shards *sh, const char *where, char *err, size_t errsz)
{
    const char *wp;
    for (int i = 0; i < m->base.n_views; i++)
        if (!view_tensor(&m->base.views[i], sh, where, &wp, err, errsz))
            return -1;
    return 0;
}

/* Read every view of m from the open files into buf (num_params floats). */
static int read_views(const icl_model *m, float *buf, const shards *sh, const char *where, char *err, size_t errsz)
{
    for (int i = 0; i < m->base.n_views; i++) {
        const icl_param_view *v = &m->base.views[i];
        const char *wp;
        const icl_st_tensor *t = view_tensor(v, sh, where, &wp, err, errsz);
        if (!t)
            return -1;
        char e2[256];
        if (icl_st_read_f32(t, buf + v->offset, v->numel, e2, sizeof e2)) {
            icl_seterr(err, errsz, "%s: %s", wp, e2);
            return -1;
        }
    }
    return 0;
}

/* What a file given as the model looks like (sniff.h), as "; it looks
 * like ..." for the message, "" when nothing is recognised: a file of a
 * model folder (its config.json, weights, tokenizer.json) is told to give
 * the folder, data to be given as data. */
static void not_model_hint(const char *path, char *hint, size_t n)
{
    icl_file_kind k = icl_sniff_file(path);
    hint[0] = 0;
    switch (k) {
    case ICL_KIND_TOKENIZER_JSON: case ICL_KIND_MODEL_CONFIG: case ICL_KIND_SAFETENSORS:
    case ICL_KIND_TOKENIZER_CONFIG: case ICL_KIND_ADAPTER_CONFIG: {
        const char *sl = strrchr(path, '/');
        char *par = sl ? xstrndup(path, sl == path ? 1 : (size_t)(sl - path)) : xstrdup(".");
        char *cfg = icl_path_join(par, k == ICL_KIND_ADAPTER_CONFIG ? "adapter_config.json" : "config.json");
        struct stat st;
        if (stat(cfg, &st) == 0 && S_ISREG(st.st_mode))
            snprintf(hint, n, "; it looks like %s: give its folder %s", icl_file_kind_name(k), par);
        else
            snprintf(hint, n, "; it looks like %s: give the model folder that holds it", icl_file_kind_name(k));
        free(cfg);
        free(par);
        break;
    }
    case ICL_KIND_TOKEN_LINES: case ICL_KIND_RECORDS: case ICL_KIND_TEXT: case ICL_KIND_JSON:
        snprintf(hint, n, "; it looks like %s, which is data, not a model", icl_file_kind_name(k));
        break;
    case ICL_KIND_EMPTY:
        snprintf(hint, n, "; it is empty");
        break;
    default:
        break;
    }
}

icl_model *icl_model_load(const char *dir, char *err, size_t errsz)
{
    if (icl_is_gguf_file(dir)) /* a .gguf file instead of a folder: lib/gguf_model.c */
        return icl_model_load_gguf(dir, err, errsz);
    struct stat st;
    if (!*dir) {
        icl_seterr(err, errsz, "'': an empty model name (want a model folder or a GGUF file)");
        return NULL;
    }
    if (stat(dir, &st) != 0) { /* not "DIR/config.json: No such file": the model itself is missing */
        icl_seterr(err, errsz, "%s: %s (want a model folder or a GGUF file)", dir, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        char hint[512];
        not_model_hint(dir, hint, sizeof hint);
        icl_seterr(err, errsz, "%s: neither a GGUF file nor a model folder (config.json and *.safetensors)%s", dir,
                   hint);
        return NULL;
    }
    char *cp = icl_path_join(dir, "config.json");
    icl_config cfg;
    icl_model *m = NULL;
    shards sh = {0};
    if (access(cp, F_OK) != 0 && errno == ENOENT) { /* say what the folder holds instead, when it is an adapter's */
        char *aw = icl_path_join(dir, "adapter_model.safetensors");
        int ad = access(aw, F_OK) == 0;
        free(aw);
        if (ad) {
            icl_seterr(err, errsz, "%s: no config.json but adapter_model.safetensors: the weights of a LoRA adapter "
                       "whose adapter_config.json is missing, not a model", dir);
            goto out;
        }
    }
    if (icl_config_load(&cfg, cp, err, errsz))
        goto out;
    m = model_shell(&cfg, NULL);
    icl_config_free(&cfg);
    if (shards_open(&sh, dir, err, errsz) || check_views(m, &sh, dir, err, errsz)) {
        icl_model_free(m);
        m = NULL;
        goto out;
    }
    /* the tensors are all there with their shapes: now the buffer */
    m->base.params = icl_calloc_huge(m->base.num_params ? m->base.num_params : 1, sizeof(float));
    if (!m->base.params)
        icl_seterr(err, errsz, "%s: out of memory for %zu parameters (%zu MiB)", dir, m->base.num_params,
                   m->base.num_params * sizeof(float) >> 20);
    if (!m->base.params || read_views(m, m->base.params, &sh, dir, err, errsz)) {
        icl_model_free(m);
        m = NULL;
        goto out;
    }
    m->src_dir = xstrdup(dir);
out:
    shards_close(&sh);
    free(cp);
    return m;
}

int icl_model_read_tensors(const icl_model *m, float *buf, const char *path, char *err, size_t errsz)
{
    shards sh = {0};
    sh.f = xmalloc(sizeof *sh.f);
    sh.path = xmalloc(sizeof *sh.path);
    if (!(sh.f[0] = icl_st_open(path, err, errsz))) {
        shards_close(&sh);
        return -1;
    }
    sh.path[0] = xstrdup(path);
    sh.n = 1;
    int r = read_views(m, buf, &sh, path, err, errsz);
    shards_close(&sh);
    return r;
}

int icl_model_write_tensors(const icl_model *m, const float *buf, const char *path, char *err, size_t errsz)
{
    icl_st_entry *e = xcalloc((size_t)m->base.n_views, sizeof *e);
    for (int i = 0; i < m->base.n_views; i++) {
        e[i].name = m->base.views[i].name;
        e[i].data = buf + m->base.views[i].offset;
        e[i].ndim = m->base.views[i].ndim;
        e[i].shape[0] = m->base.views[i].shape[0];
        e[i].shape[1] = m->base.views[i].shape[1];
    }
    int r = icl_st_write(path, e, m->base.n_views, err, errsz);
    free(e);
    return r;
}

static int copy_file_atomic(const char *from, const char *to, char *err, size_t errsz)
{
    size_t n;
    char *b = icl_read_file(from, (size_t)512 << 20, &n, err, errsz); /* the caps of the files copied */
    if (!b)
        return errno == ENOENT ? 0 : -1;
    int r = icl_write_file_atomic(to, b, n, err, errsz);
    free(b);
    return r;
}


int icl_model_save(const icl_model *m, const char *dir, char *err, size_t errsz)
{
    if (m->qdata) {
        icl_seterr(err, errsz, "%s: a model with quantized base weights cannot be saved as a model folder", dir);
        return -1;
    }
    if (icl_mkdirs(dir) < 0) {
        icl_seterr(err, errsz, "%s: cannot create folder: %s", dir, strerror(errno));
        return -1;
    }
    int rc = -1;
    char *p = icl_path_join(dir, "config.json");
    if (icl_config_save(&m->cfg, p, err, errsz))
        goto out;
    free(p);
    p = icl_path_join(dir, "model.safetensors");
    int r = icl_model_write_tensors(m, m->base.params, p, err, errsz);
    if (r)
        goto out;
    free(p);
    p = icl_path_join(dir, "generation_config.json");
    char *src = m->src_dir ? icl_path_join(m->src_dir, "generation_config.json") : NULL;
    struct stat st;
    int same = 0;
    if (m->src_dir) {
        struct stat a, b;
        same = stat(m->src_dir, &a) == 0 && stat(dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    }
    if (src && !same && stat(src, &st) == 0) {
        r = copy_file_atomic(src, p, err, errsz);
    } else if (!same || stat(p, &st) != 0) {
        json_t *g = json_object();
        const icl_config *c = &m->cfg;
        if (c->bos_token_id >= 0)
            json_object_set_new(g, "bos_token_id", json_integer(c->bos_token_id));
        if (c->n_eos == 1)
            json_object_set_new(g, "eos_token_id", json_integer(c->eos_token_id[0]));
        else if (c->n_eos > 1) {
            json_t *a = json_array();
            for (int i = 0; i < c->n_eos; i++)
                json_array_append_new(a, json_integer(c->eos_token_id[i]));
            json_object_set_new(g, "eos_token_id", a);
        }
        if (c->pad_token_id >= 0)
            json_object_set_new(g, "pad_token_id", json_integer(c->pad_token_id));
        char *s = json_dumps(g, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(g);
        icl_buf b = {0};
        buf_puts(&b, s);
        buf_putc(&b, '\n');
        free(s);
        r = icl_write_file_atomic(p, b.data, b.len, err, errsz);
        buf_free(&b);
    }
    free(src);
    if (r)
        goto out;
    if (m->src_dir && !same) {
        static const char *tok[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                    "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json",
                                    "chat_template.jinja"};
        for (size_t i = 0; i < sizeof tok / sizeof tok[0]; i++) {
            char *from = icl_path_join(m->src_dir, tok[i]), *to = icl_path_join(dir, tok[i]);
            r = copy_file_atomic(from, to, err, errsz);
            free(from);
            free(to);
            if (r)
                goto out;
        }
    }
    rc = 0;
out:
    free(p);
    return rc;
}

/* ---------------------------------------------------------------- activations */

struct icl_acts {
    int B, T;           /* capacity is for B*T rows and T */
    size_t N;
    float **x;          /* [L+1][N, C] residual stream: x[l] is block l's input */
    float **ln1, **ln2; /* [L][N, C] normalised inputs */
    float **m1, **r1, **m2, **r2; /* [L][N] mean (LayerNorm) and rstd */
    float **qkv;        /* [L][N, Dqkv] after rotary */
    float **lse;        /* [L][B, H, T] */
    float **att;        /* [L][N, H*hd] */
    float **res2;       /* [L][N, C] after the attention residual */
    float **up;         /* [L][N, Dup] */
    float **act;        /* [L][N, I] */
    float *lnf, *mf, *rf; /* final norm [N, C], [N], [N] */
    float *cos, *sin;   /* [N, hd/2] */
    int32_t *pos;       /* [N] */
    float *dlnf;        /* [N, C] gradient into the final norm output */
    /* backward scratch */
    float *dres, *dtmp, *dqkv, *datt, *dup, *dact;
    /* loss head */
    int32_t *trow, *tlab; /* [N] target rows and labels */
    float *tloss;         /* [N] loss of each target row */
    float *twt;           /* [N] weight of each target row (icl_batch.weight), when tw */
    int tw;               /* the last forward's batch had weights */
    int hrows;           /* rows per head chunk: min(T, HEAD_ROWS) */
    float *hbuf, *lbuf;  /* [hrows, C], [hrows, V] */
    int fused;           /* last forward fused the head backward */
    long ntarg;
    size_t cur_n;        /* B * T of the last forward */
    float *slab;         /* one allocation for everything, 64-byte aligned */
    void *slab_raw;      /* as allocated */
    size_t slab_n;       /* its floats (buffers rounded up to 16 floats each) */
    int ckpt;            /* gradient checkpointing layout: one set of layer buffers */
    float drop_p;        /* LoRA dropout of the last forward (0: none, or not training) */
    uint64_t drop_key;   /* and its key */
    float *lwork;        /* adapters' scratch (icl_linear_work), lwork_n floats */
    size_t lwork_n;
    float *xa;           /* adapters' down products kept for the backward (icl_linear.xa): */
    size_t xa_n;         /* xa_n floats, layer l's at xa + l xa_layer (0 with checkpointing: */
    size_t xa_layer;     /* one set, refilled by the recomputed forward) */
};

static void acts_free(icl_acts *a)
{
    if (!a)
        return;
    free(a->x);
    free(a->slab_raw);
    free(a->pos);
    free(a->trow);
    free(a->tlab);
    free(a->tloss);
    free(a->twt);
    free(a->lwork);
    free(a->xa);
    free(a);
}

static void dims(const icl_config *c, long *Dqkv, long *Dup, long *Datt)
{
    long hd = c->head_dim;
    *Datt = (long)c->num_attention_heads * hd;
    *Dqkv = *Datt + 2L * c->num_key_value_heads * hd;
    *Dup = c->arch == ICL_ARCH_LLAMA ? 2L * c->intermediate_size : c->intermediate_size;
}

/* Floats [*off, *off + n) of the slab (NULL while counting), every buffer
 * starting on 64 bytes: with or without checkpointing a buffer has the same
 * alignment, so vectorised loops split their work the same way. */
static float *take(float *slab, size_t *off, size_t n)
{
    size_t o = *off;
    *off += (n + 15) & ~(size_t)15;
    return slab ? slab + o : NULL;
}

static icl_linear head_lin(const icl_model *m);

/* Whether the loss head computes several chunks of rows at once (see
 * HEAD_ROWS): a float32 head on BLIS's large path or a packed bf16 one, no
 * checkpointing (not the quantized blocks: their products are not tested
 * for it). */
static int head_wide(const icl_model *m, int ckpt)
{
    icl_weight_type t = head_lin(m).w.type;
    return !ckpt && m->cfg.vocab_size >= ICL_GEMM_LONG && (t == ICL_WEIGHT_F32 || t == ICL_WEIGHT_BF16);
}

/* The activations for a B x T batch.  Layout (model.h "Memory"): x[0..L]
 * always; the per-layer buffers once per layer, or once for all layers with
 * gradient checkpointing.  They are reused while they hold the batch; else
 * reallocated for the largest rows (B T) AND length (T) seen so far, so that
 * batches of alternating shapes (8 x 150 then 4 x 300...) do not free and
 * fault in the whole slab (about 1 GB for SmolLM2-135M at 1200 rows) at
 * every step.  Capacity never changes results: every use is sized by the
 * batch. */
static icl_acts *acts_get(icl_model *m, int B, int T)
{
    icl_acts *a = m->acts;
    int ckpt = m->gradient_checkpointing != 0;
    if (a && a->N >= (size_t)B * T && a->T >= T && a->ckpt == ckpt) {
        a->B = B;
        return a;
    }
    size_t N = (size_t)B * T;
    if (a) {
        N = a->N > N ? a->N : N;
        T = a->T > T ? a->T : T;
    }
    acts_free(a);
    const icl_config *c = &m->cfg;
    int L = c->num_hidden_layers;
    size_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    long Dqkv, Dup, Datt;
    dims(c, &Dqkv, &Dup, &Datt);
    size_t H = c->num_attention_heads, half = c->head_dim / 2;
    size_t hr = T < HEAD_ROWS ? (size_t)T : HEAD_ROWS; /* a chunk of dW's rows (head_loss) */
    if (head_wide(m, ckpt)) { /* as many chunks as HEAD_BYTES of logits hold, at most the batch's rows */
        size_t k = HEAD_BYTES / (V * sizeof(float) * hr), kn = (N + hr - 1) / hr;
        hr *= k < 1 ? 1 : k < kn ? k : kn;
    }
    a = xcalloc(1, sizeof *a);
    a->hrows = (int)hr;
    a->B = B;
    a->T = T;
    a->N = N;
    a->ckpt = ckpt;
    a->x = xmalloc((size_t)(13 * L + 1) * sizeof(float *));
    float **pp = a->x + L + 1;
    a->ln1 = pp; pp += L;
    a->ln2 = pp; pp += L;
    a->m1 = pp; pp += L;
    a->r1 = pp; pp += L;
    a->m2 = pp; pp += L;
    a->r2 = pp; pp += L;
    a->qkv = pp; pp += L;
    a->lse = pp; pp += L;
    a->att = pp; pp += L;
    a->res2 = pp; pp += L;
    a->up = pp; pp += L;
    a->act = pp; pp += L;
    /* pass 0 counts, pass 1 points into the slab */
    for (int pass = 0; pass < 2; pass++) {
        float *s = NULL;
        size_t off = 0;
        if (pass) {
            a->slab_raw = icl_xcalloc_huge(a->slab_n * sizeof(float) + 64, 1); /* GEMM operands */
            s = a->slab = (float *)(((uintptr_t)a->slab_raw + 63) & ~(uintptr_t)63);
        }
#define TAKE(n) take(s, &off, (n))
        for (int l = 0; l <= L; l++)
            a->x[l] = TAKE(N * C);
        for (int l = 0; l < L; l++) {
            if (ckpt && l > 0) { /* every layer uses layer 0's buffers */
                a->ln1[l] = a->ln1[0], a->ln2[l] = a->ln2[0], a->m1[l] = a->m1[0], a->r1[l] = a->r1[0];
                a->m2[l] = a->m2[0], a->r2[l] = a->r2[0], a->qkv[l] = a->qkv[0], a->lse[l] = a->lse[0];
                a->att[l] = a->att[0], a->res2[l] = a->res2[0], a->up[l] = a->up[0], a->act[l] = a->act[0];
                continue;
            }
            a->ln1[l] = TAKE(N * C);
            a->ln2[l] = TAKE(N * C);
            a->m1[l] = TAKE(N);
            a->r1[l] = TAKE(N);
            a->m2[l] = TAKE(N);
            a->r2[l] = TAKE(N);
            a->qkv[l] = TAKE(N * Dqkv);
            a->lse[l] = TAKE(H * N);
            a->att[l] = TAKE(N * Datt);
            a->res2[l] = TAKE(N * C);
            a->up[l] = TAKE(N * Dup);
            a->act[l] = TAKE(N * I);
        }
        a->lnf = TAKE(N * C);
        a->mf = TAKE(N);
        a->rf = TAKE(N);
        a->cos = TAKE(N * half);
        a->sin = TAKE(N * half);
        a->dlnf = TAKE(N * C);
        a->dres = TAKE(N * C);
        a->dtmp = TAKE(N * C);
        a->dqkv = TAKE(N * Dqkv);
        a->datt = TAKE(N * Datt);
        a->dup = TAKE(N * Dup);
        a->dact = TAKE(N * I);
        a->hbuf = TAKE(hr * C);
        a->lbuf = TAKE(hr * V);
#undef TAKE
        a->slab_n = off;
    }
    a->pos = xmalloc(N * sizeof(int32_t));
    a->trow = xmalloc(N * sizeof(int32_t));
    a->tlab = xmalloc(N * sizeof(int32_t));
    a->tloss = xmalloc(N * sizeof(float));
    a->twt = xmalloc(N * sizeof(float));
    m->acts = a;
    return a;
}

/* ---------------------------------------------------------------- forward / backward */

int icl_batch_validate(const icl_model *m, const icl_batch *b, char *err, size_t errsz)
{
    const icl_config *c = &m->cfg;
    if (b->B < 1 || b->T < 1 || (size_t)b->B * b->T > ((size_t)1 << 31) / (size_t)c->hidden_size) {
        icl_seterr(err, errsz, "batch of %d x %d positions is empty or too large", b->B, b->T);
        return -1;
    }
    for (long i = 0; i < (long)b->B * b->T; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= c->vocab_size) {
            icl_seterr(err, errsz, "token id %d at row %ld position %ld is not below vocab_size %d", b->ids[i],
                   i / b->T, i % b->T, c->vocab_size);
            return -1;
        }
        int p = b->pos ? b->pos[i] : (int)(i % b->T);
        if (p < 0 || (c->arch == ICL_ARCH_GPT2 && p >= c->max_position_embeddings)) {
            icl_seterr(err, errsz, "position %d at row %ld is outside [0, %d)", p, i / b->T,
                   c->arch == ICL_ARCH_GPT2 ? c->max_position_embeddings : 1 << 30);
            return -1;
        }
    }
    return 0;
}

static float *P(const icl_model *m, size_t off) { return off == NONE ? NULL : m->base.params + off; }
/* A gradient of the base set, NULL when frozen (or the tensor is absent). */
static float *G(const icl_model *m, size_t off) { return off == NONE || !m->base.grads ? NULL : m->base.grads + off; }

/* Largest adapter rank on any projection (0: none). */
static int lora_rmax(const icl_model *m)
{
    int r = 0;
    for (int l = 0; m->lora && l < m->cfg.num_hidden_layers; l++)
        for (int p = 0; p < ICL_NPROJ; p++)
            for (int i = 0; i < m->lora[l].n[p]; i++)
                r = m->lora[l].lora[p][i].r > r ? m->lora[l].lora[p][i].r : r;
    return r;
}

/* Sum of the adapters' ranks on projection p of layer l. */
static int lora_rsum_p(const icl_model *m, int l, int p)
{
    int r = 0;
    for (int i = 0; m->lora && i < m->lora[l].n[p]; i++)
        r += m->lora[l].lora[p][i].r;
    return r;
}

/* Largest sum of ranks on one projection (icl_linear_work) and on one
 * layer (the kept down products). */
static void lora_rsums(const icl_model *m, int *proj, int *layer)
{
    *proj = *layer = 0;
    for (int l = 0; m->lora && l < m->cfg.num_hidden_layers; l++) {
        int t = 0;
        for (int p = 0; p < ICL_NPROJ; p++) {
            int r = lora_rsum_p(m, l, p);
            *proj = r > *proj ? r : *proj;
            t += r;
        }
        *layer = t > *layer ? t : *layer;
    }
}

/* The base weight at offset w (logical [out, in]; GPT-2 stores Conv1D
 * [in, out]) with its gradient when trainable: float32, or the packed
 * bf16 copy idx (icl_model_set_bf16) when there is one. */
static icl_weight weight(const icl_model *m, size_t w, int in, int out, int conv1d, int idx)
{
    if (m->bf16 && m->bf16->w[idx].fwd) {
        icl_weight B = {ICL_WEIGHT_BF16, 0, out, in, conv1d, &m->bf16->w[idx], G(m, w)};
        return B;
    }
    icl_weight W = {ICL_WEIGHT_F32, 0, out, in, conv1d, m->base.params + w, G(m, w)};
    return W;
}

/* A product kept in quantized blocks: on the bf16 path (m->bf16) the
 * blocks are dequantized straight to packed bf16 (ICL_WEIGHT_QBLOCK_BF16,
 * qlinear.h), else tile by tile to float32. */
static icl_weight qweight(const icl_model *m, const icl_weight *q)
{
    icl_weight w = *q;
    if (m->bf16)
        w.type = ICL_WEIGHT_QBLOCK_BF16;
    return w;
}

/* The linear map of projection p of layer l, with its adapters. */
static icl_linear lin(const icl_model *m, int l, int p)
{
    const icl_config *c = &m->cfg;
    const icl_layer_offsets *o = &m->layer[l];
    int C = c->hidden_size, I = c->intermediate_size, g2 = c->arch == ICL_ARCH_GPT2;
    long Datt = (long)c->num_attention_heads * c->head_dim, Dqkv = Datt + 2L * c->num_key_value_heads * c->head_dim,
         Dup = g2 ? I : 2L * I;
    size_t w, b;
    int in, out;
    switch (p) {
    case ICL_PROJ_QKV: w = o->qkv_w, b = o->qkv_b, in = C, out = (int)Dqkv; break;
    case ICL_PROJ_O: w = o->o_w, b = o->o_b, in = (int)Datt, out = C; break;
    case ICL_PROJ_UP: w = o->up_w, b = o->up_b, in = C, out = (int)Dup; break;
    default: w = o->down_w, b = o->down_b, in = I, out = C; break;
    }
    const icl_weight *qw = m->qproj ? &m->qproj[(size_t)l * ICL_NPROJ + p] : NULL;
    icl_linear L = {qw && qw->data ? qweight(m, qw) : weight(m, w, in, out, g2, l * ICL_NPROJ + p), P(m, b), G(m, b),
                    NULL, 0, NULL};
    if (m->lora) {
        L.lora = m->lora[l].lora[p];
        L.n_lora = m->lora[l].n[p];
    }
    return L;
}

/* The LM head: W [V, C] (the embedding when tied; never Conv1D). */
static icl_linear head_lin(const icl_model *m)
{
    icl_linear L = {m->qhead.data ? qweight(m, &m->qhead)
                                  : weight(m, m->lm_head, m->cfg.hidden_size, m->cfg.vocab_size, 0,
                                           m->cfg.num_hidden_layers * ICL_NPROJ),
                    NULL, NULL, NULL, 0, NULL};
    return L;
}

/* Packs product i of m (float32 L.w) into h: the forward copy (B = W^T,
 * K = in, N = out) and, when bwd, the input-gradient one (B = W, K = out,
 * N = in).  Linear [out, in] and Conv1D [in, out] differ only in which
 * side is the rows.  0, or -1 when memory fails. */
static int bf16_pack_one(struct icl_model_bf16 *h, int i, const icl_weight *w, int bwd)
{
    int nt = omp_get_max_threads(), kx = h->w[i].kx;
    uint16_t **slot = bwd ? &h->bwd[i] : &h->fwd[i];
    int K = bwd ? w->out : w->in, N = bwd ? w->in : w->out;
    if (!*slot && !(*slot = malloc(icl_bf16_packed_size(K + kx, N) * sizeof(uint16_t))))
        return -1;
    /* fwd: element (k = in, n = out) is W[n in + k] (Linear: rows of K) or
     * W[k out + n] (Conv1D: rows of N); bwd the other way round; kx rows
     * of room after them (bf16_kx) */
    if (icl_bf16_pack_ext(w->data, w->conv1d ? w->out : w->in, w->conv1d != bwd, K, kx, N, *slot, nt))
        return -1;
    if (bwd)
        h->w[i].bwd = *slot;
    else
        h->w[i].fwd = *slot;
    return 0;
}

/* The float32 product i (layer i / ICL_NPROJ, or the head), data NULL for
 * one in quantized blocks. */
static icl_weight f32_product(const icl_model *m, int i)
{
    int L = m->cfg.num_hidden_layers;
    struct icl_model_bf16 *keep = m->bf16;
    ((icl_model *)m)->bf16 = NULL; /* lin() and head_lin() without the bf16 copies */
    icl_linear lw = i < L * ICL_NPROJ ? lin(m, i / ICL_NPROJ, i % ICL_NPROJ) : head_lin(m);
    ((icl_model *)m)->bf16 = keep;
    if (lw.w.type != ICL_WEIGHT_F32)
        lw.w.data = NULL;
    return lw.w;
}

/* The rows of room product i's packs keep after the weight's for its
 * adapters (icl_bf16_weight.kx): icl_bf16_room of the sum of their ranks
 * (576 + 48 unaligned columns ran the products 14% slower than 576 + 64),
 * so that linear.c folds their products into the base's; 0 without
 * adapters, for the head, or when in or out is odd (the base's rows must
 * end on a pair). */
static int bf16_kx(const icl_model *m, int i, const icl_weight *w)
{
    if (!m->lora || i >= m->cfg.num_hidden_layers * ICL_NPROJ || (w->in & 1) || (w->out & 1))
        return 0;
    const icl_layer_lora *ll = &m->lora[i / ICL_NPROJ];
    int p = i % ICL_NPROJ, k = 0;
    for (int u = 0; u < ll->n[p]; u++)
        k += ll->lora[p][u].r;
    return icl_bf16_room(w->in, w->out, k);
}

/* (Re)packs every float32 product: the forward copies, and the backward
 * ones when bwd (allocating those that are missing, and again those whose
 * room for adapters changed). */
static int bf16_pack_all(icl_model *m, int bwd, char *err, size_t errsz)
{
    struct icl_model_bf16 *h = m->bf16;
    for (int i = 0; i < h->n; i++) {
        icl_weight w = f32_product(m, i);
        if (!w.data)
            continue;
        int kx = bf16_kx(m, i, &w);
        if (kx != h->w[i].kx) { /* new packs of the new size (the old kept when memory fails) */
            uint16_t *f = malloc(icl_bf16_packed_size(w.in + kx, w.out) * sizeof(uint16_t));
            uint16_t *b = h->bwd[i] ? malloc(icl_bf16_packed_size(w.out + kx, w.in) * sizeof(uint16_t)) : NULL;
            if (!f || (h->bwd[i] && !b)) {
                free(f), free(b);
                icl_seterr(err, errsz, "bf16 weights: out of memory");
                return -1;
            }
            free(h->fwd[i]);
            free(h->bwd[i]);
            h->fwd[i] = f, h->bwd[i] = b;
            h->w[i].fwd = h->w[i].bwd = NULL;
            h->w[i].kx = kx;
        }
        if (bf16_pack_one(h, i, &w, 0) || ((bwd || h->bwd[i]) && bf16_pack_one(h, i, &w, 1))) {
            icl_seterr(err, errsz, "bf16 weights: out of memory");
            return -1;
        }
    }
    return 0;
}

int icl_model_set_bf16(icl_model *m, char *err, size_t errsz)
{
    if (m->bf16)
        return 0;
    struct icl_model_bf16 *h = calloc(1, sizeof *h);
    int n = m->cfg.num_hidden_layers * ICL_NPROJ + 1;
    if (h) {
        h->n = n;
        h->w = calloc((size_t)n, sizeof *h->w);
        h->fwd = calloc((size_t)n, sizeof *h->fwd);
        h->bwd = calloc((size_t)n, sizeof *h->bwd);
    }
    if (!h || !h->w || !h->fwd || !h->bwd) {
        bf16_free(h);
        icl_seterr(err, errsz, "bf16 weights: out of memory");
        return -1;
    }
    m->bf16 = h;
    if (bf16_pack_all(m, 0, err, errsz)) {
        bf16_free(h);
        m->bf16 = NULL;
        return -1;
    }
    return 0;
}

int icl_model_bf16_sync(icl_model *m, char *err, size_t errsz)
{
    if (!m->bf16 || !m->base.trainable)
        return 0;
    return bf16_pack_all(m, 0, err, errsz);
}

static void norm_fwd(const icl_model *m, float *y, float *mean, float *rstd, const float *x, const float *w,
                     const float *b, int N)
{
    const icl_config *c = &m->cfg;
    if (c->arch == ICL_ARCH_LLAMA)
        icl_rmsnorm_forward(y, rstd, x, w, N, c->hidden_size, (float)c->norm_eps);
    else
        icl_layernorm_forward(y, mean, rstd, x, w, b, N, c->hidden_size, (float)c->norm_eps);
}

static void norm_bwd(const icl_model *m, float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, const float *mean, const float *rstd, int N)
{
    const icl_config *c = &m->cfg;
    if (c->arch == ICL_ARCH_LLAMA)
        icl_rmsnorm_backward(dx, 1.0f, dw, dy, x, w, rstd, N, c->hidden_size);
    else
        icl_layernorm_backward(dx, 1.0f, dw, db, dy, x, w, mean, rstd, N, c->hidden_size);
}

static icl_rope_params rope_params(const icl_config *c)
{
    icl_rope_params p = {c->rope_theta, c->rope_llama3, c->rope_factor, c->rope_low_freq_factor,
                         c->rope_high_freq_factor, c->rope_original_max_pos};
    return p;
}

/* Embedding: x[N, C] = wte[ids] (+ wpe[pos] for GPT-2); a quantized wte's
 * rows are dequantized into x. */
static void embed_forward(const icl_model *m, float *x, const int32_t *ids, const int32_t *pos, int N)
{
    int C = m->cfg.hidden_size;
    const float *E = P(m, m->embed), *Pe = P(m, m->pos_embed);
    const icl_weight *qe = m->qembed.data ? &m->qembed : NULL;
    const icl_weight_ops *qk = qe ? icl_weight_kernels(qe->type) : NULL;
#pragma omp parallel for schedule(static) if ((long)N * C >= 32768)
    for (int i = 0; i < N; i++) {
        float *xi = x + (size_t)i * C;
        const float *e = xi;
        if (qe)
            qk->dequantize_row(qe, ids[i], xi);
        else
            e = E + (size_t)ids[i] * C;
        if (Pe) {
            const float *p = Pe + (size_t)pos[i] * C;
#pragma omp simd
            for (int j = 0; j < C; j++)
                xi[j] = e[j] + p[j];
        } else if (e != xi) {
            memcpy(xi, e, (size_t)C * sizeof(float));
        }
    }
}

/* dwte[ids[i]] += dx[i] (and dwpe[pos[i]]): parallel over column blocks, so rows
 * never race.  As HF's Llama/Qwen2 (nn.Embedding(padding_idx=pad_token_id)),
 * lookups of the pad id give its row no gradient; GPT-2 has no padding_idx. */
static void embed_backward(const icl_model *m, const float *dx, const int32_t *ids, const int32_t *pos, int N)
{
    int C = m->cfg.hidden_size;
    int pad = m->cfg.arch == ICL_ARCH_LLAMA ? m->cfg.pad_token_id : -1;
    float *dE = G(m, m->embed), *dP = G(m, m->pos_embed);
#pragma omp parallel for schedule(static) if ((long)N * C >= 32768)
    for (int c0 = 0; c0 < C; c0 += 32) {
        int nb = C - c0 < 32 ? C - c0 : 32;
        for (int i = 0; i < N; i++) {
            const float *d = dx + (size_t)i * C + c0;
            float *e = dE + (size_t)ids[i] * C + c0;
            if (ids[i] != pad)
                for (int j = 0; j < nb; j++)
                    e[j] += d[j];
            if (dP) {
                float *p = dP + (size_t)pos[i] * C + c0;
                for (int j = 0; j < nb; j++)
                    p[j] += d[j];
            }
        }
    }
}

/* ---------------------------------------------------------------- the layer */

/* How one pass of layer_forward gets its attention context and runs its
 * products.  N rows (tokens):
 *   batch   b != NULL: the B*T rows of a training or evaluation batch;
 *           attention inside each row's documents (icl_attention_forward,
 *           log-sum-exp kept for the backward);
 *   cached  caches != NULL: n_cache KV caches with n_new consecutive new
 *           tokens each (row i: cache i / n_new, position len + i % n_new);
 *           their keys and values are appended to the caches, the queries
 *           attend to everything cached (the caches' len advances later). */
typedef struct {
    int N;
    const icl_batch *b;
    icl_kv_cache *const *caches;
    int n_cache, n_new;
    const float *cos, *sin; /* rotary tables [N, hd/2] (Llama/Qwen2) */
    icl_lin_kernel kernel;  /* GEMM: batch and prefill; ROWS: decode steps */
    int nt, att_nt;         /* ROWS: threads of the products and of the attention */
    float *work;            /* adapters' scratch: the largest icl_linear_work for N rows */
    float drop_p;           /* LoRA dropout of a training pass (0: none) */
    uint64_t drop_key;      /* its masks' key (icl_model_set_dropout_key) */
} layer_ctx;

/* The key of adapter i of projection p of layer l from the pass's key. */
static uint64_t adapter_key(uint64_t key, int l, int p, int i)
{
    uint64_t s = key ^ (((uint64_t)l * ICL_NPROJ + (uint64_t)p) * 8 + (uint64_t)i + 1) * 0xd1b54a32d192ed03ull;
    return splitmix(&s);
}

/* lin(m, l, p) in the pass cx: during training with LoRA dropout its
 * adapters are copies in tmp[4] (q|k|v: at most 3) with the dropout and
 * each one's mask key.  xa: the layer's kept down products (NULL: none),
 * projection p's after those of the projections before it. */
static icl_linear lin_cx(const icl_model *m, int l, int p, const layer_ctx *cx, icl_lora *tmp, float *xa)
{
    icl_linear L = lin(m, l, p);
    if (xa && L.n_lora > 0) {
        size_t off = 0;
        for (int q = 0; q < p; q++)
            off += (size_t)lora_rsum_p(m, l, q);
        L.xa = xa + off * (size_t)cx->N;
    }
    if (cx->drop_p > 0 && L.n_lora > 0 && L.n_lora <= 4) {
        for (int i = 0; i < L.n_lora; i++) {
            tmp[i] = L.lora[i];
            tmp[i].dropout = cx->drop_p;
            tmp[i].key = adapter_key(cx->drop_key, l, p, i);
        }
        L.lora = tmp;
    }
    return L;
}

/* One layer's buffers.  The forward of a batch keeps them per layer for the
 * backward (with gradient checkpointing all layers share one set, which
 * the backward refills from x_in); decoding reuses one set in place
 * (x_in == res2 == x_out). */
typedef struct {
    float *x_in;      /* [N, C] block input (residual stream) */
    float *ln1, *ln2; /* [N, C] normalised inputs of attention and MLP */
    float *m1, *r1, *m2, *r2; /* [N] mean (LayerNorm) and rstd of both norms */
    float *qkv;       /* [N, Dqkv] q|k|v after rotary */
    float *lse;       /* [B, H, T] attention log-sum-exp (batch only) */
    float *att;       /* [N, H*hd] attention output */
    float *res2;      /* [N, C] x_in + attention */
    float *up;        /* [N, Dup] gate|up (Llama) or c_fc output (GPT-2) */
    float *act;       /* [N, I] after SwiGLU / GELU */
    float *x_out;     /* [N, C] block output; NULL: stop once act is made (a recomputation) */
    float *xa;        /* the adapters' kept down products (icl_linear.xa) of the 4 projections
                       * in order, or NULL (decoding) */
} layer_bufs;

static layer_bufs batch_bufs(const icl_acts *a, int l)
{
    layer_bufs lb = {a->x[l], a->ln1[l], a->ln2[l], a->m1[l], a->r1[l], a->m2[l], a->r2[l], a->qkv[l],
                     a->lse[l], a->att[l], a->res2[l], a->up[l], a->act[l], a->x[l + 1],
                     a->xa ? a->xa + (size_t)l * a->xa_layer : NULL};
    return lb;
}

/* Append the keys and values of the rows to their caches (layout
 * [layer, kv_head, pos, hd]). */
static void kv_append(const icl_model *m, int l, const layer_ctx *cx, const float *qkv, long Dqkv, long Datt)
{
    int KV = m->cfg.num_key_value_heads, hd = m->cfg.head_dim;
    for (int i = 0; i < cx->N; i++) {
        icl_kv_cache *kc = cx->caches[i / cx->n_new];
        size_t lo = (size_t)l * KV * kc->max_pos * hd;
        int p = kc->len + i % cx->n_new;
        for (int g = 0; g < KV; g++) {
            size_t at = lo + ((size_t)g * kc->max_pos + p) * hd;
            memcpy(kc->k + at, qkv + (size_t)i * Dqkv + Datt + (size_t)g * hd, (size_t)hd * sizeof(float));
            memcpy(kc->v + at, qkv + (size_t)i * Dqkv + Datt + (size_t)(KV + g) * hd, (size_t)hd * sizeof(float));
        }
    }
}

/* Decode-step attention: the one query of each (sequence, head) against
 * its cache, softmax(q k^T scale) v with the max subtracted; sums in
 * position order, so a row does not depend on the others (n_new == 1). */
static void attend_rows(const icl_model *m, int l, const layer_ctx *cx, const float *qkv, long Dqkv, float *att,
                        long Datt)
{
    int H = m->cfg.num_attention_heads, KV = m->cfg.num_key_value_heads, hd = m->cfg.head_dim, grp = H / KV;
    int B = cx->n_cache;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(dynamic, 1) num_threads(cx->att_nt)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H, g = h / grp;
        const icl_kv_cache *kc = cx->caches[b];
        int n = kc->len + 1;
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
}

/* Block l, pre-norm as HF's LlamaDecoderLayer / GPT2Block:
 *   ln1  = norm(x_in)                                    [N, C]
 *   qkv  = ln1 Wqkv^T (+ b); rotary on q and k (Llama)   [N, Dqkv]
 *   att  = softmax(q k^T / sqrt(hd), causal, docs) v     [N, H*hd]
 *   res2 = x_in + att Wo^T (+ b)                         [N, C]
 *   ln2  = norm(res2); up = ln2 Wup^T (+ b)              [N, Dup]
 *   act  = silu(gate) * up (Llama) | gelu_new(up)        [N, I]
 *   x_out = res2 + act Wdown^T (+ b)                     [N, C] */
static void layer_forward(const icl_model *m, int l, const layer_ctx *cx, const layer_bufs *a)
{
    const icl_config *c = &m->cfg;
    const icl_layer_offsets *o = &m->layer[l];
    int N = cx->N, C = c->hidden_size, I = c->intermediate_size, g2 = c->arch == ICL_ARCH_GPT2;
    int H = c->num_attention_heads, KV = c->num_key_value_heads, hd = c->head_dim;
    long Dqkv, Dup, Datt;
    dims(c, &Dqkv, &Dup, &Datt);
    icl_lora tmp[4];
    norm_fwd(m, a->ln1, a->m1, a->r1, a->x_in, P(m, o->ln1_w), P(m, o->ln1_b), N);
    icl_linear L = lin_cx(m, l, ICL_PROJ_QKV, cx, tmp, a->xa);
    icl_linear_forward(&L, a->qkv, Dqkv, a->ln1, C, N, 0.0f, cx->kernel, cx->nt, cx->work);
    if (!g2) {
        icl_rope_apply(a->qkv, Dqkv, N, H, hd, cx->cos, cx->sin, 0);
        icl_rope_apply(a->qkv + Datt, Dqkv, N, KV, hd, cx->cos, cx->sin, 0);
    }
    if (cx->b) {
        icl_attn_shape sh = {cx->b->B, cx->b->T, H, KV, hd, Dqkv, 0, Datt, Datt + (long)KV * hd,
                             1.0f / sqrtf((float)hd), m->bf16 != NULL};
        icl_attention_forward(a->att, Datt, a->lse, a->qkv, cx->b->doc, &sh);
    } else {
        kv_append(m, l, cx, a->qkv, Dqkv, Datt);
        if (cx->kernel == ICL_LIN_ROWS)
            attend_rows(m, l, cx, a->qkv, Dqkv, a->att, Datt);
        else
            for (int k = 0; k < cx->n_cache; k++) {
                const icl_kv_cache *kc = cx->caches[k];
                size_t lo = (size_t)l * KV * kc->max_pos * hd, r0 = (size_t)k * cx->n_new;
                icl_attention_cached(a->att + r0 * Datt, Datt, a->qkv + r0 * Dqkv, Dqkv, kc->k + lo, kc->v + lo,
                                     cx->n_new, kc->len, kc->max_pos, H, KV, hd, 1.0f / sqrtf((float)hd));
            }
    }
    if (a->res2 != a->x_in)
        memcpy(a->res2, a->x_in, (size_t)N * C * sizeof(float));
    L = lin_cx(m, l, ICL_PROJ_O, cx, tmp, a->xa);
    icl_linear_forward(&L, a->res2, C, a->att, Datt, N, 1.0f, cx->kernel, cx->nt, cx->work);
    norm_fwd(m, a->ln2, a->m2, a->r2, a->res2, P(m, o->ln2_w), P(m, o->ln2_b), N);
    L = lin_cx(m, l, ICL_PROJ_UP, cx, tmp, a->xa);
    icl_linear_forward(&L, a->up, Dup, a->ln2, C, N, 0.0f, cx->kernel, cx->nt, cx->work);
    if (g2)
        icl_gelu_forward(a->act, a->up, (size_t)N * I);
    else
        icl_swiglu_forward(a->act, a->up, Dup, N, I);
    if (!a->x_out) /* a recomputation for the backward: act is all it needs */
        return;
    if (a->x_out != a->res2)
        memcpy(a->x_out, a->res2, (size_t)N * C * sizeof(float));
    L = lin_cx(m, l, ICL_PROJ_DOWN, cx, tmp, a->xa);
    icl_linear_forward(&L, a->x_out, C, a->act, I, N, 1.0f, cx->kernel, cx->nt, cx->work);
}

/* Backward of block l over a batch: the acts' dres holds dL/dx_out on
 * entry and dL/dx_in on exit (need_dx 0: dL/dx_in is not wanted, and the
 * q|k|v input gradient and ln1's backward are skipped; dres then holds
 * only the residual path's part); weight, bias and adapter gradients
 * accumulate (+=) into the trainable sets, nothing into a frozen base. */
static void layer_backward(const icl_model *m, int l, const layer_ctx *cx, const layer_bufs *a, icl_acts *d,
                           int need_dx)
{
    const icl_config *c = &m->cfg;
    const icl_layer_offsets *o = &m->layer[l];
    int N = cx->N, C = c->hidden_size, I = c->intermediate_size, g2 = c->arch == ICL_ARCH_GPT2;
    int H = c->num_attention_heads, KV = c->num_key_value_heads, hd = c->head_dim;
    long Dqkv, Dup, Datt;
    dims(c, &Dqkv, &Dup, &Datt);
    icl_lora tmp[4];
    /* MLP: dact = dres Wdown; dup; dln2 = dup Wup; dres += norm'(dln2) */
    /* a recomputed layer (checkpointing: x_out NULL) stopped before the down
     * projection: its adapters' down products are not kept, the backward
     * makes them */
    icl_linear L = lin_cx(m, l, ICL_PROJ_DOWN, cx, tmp, a->x_out ? a->xa : NULL);
    icl_linear_backward(&L, d->dact, I, 0.0f, d->dres, C, a->act, I, N, cx->work);
    if (g2)
        icl_gelu_backward(d->dup, d->dact, a->up, (size_t)N * I);
    else
        icl_swiglu_backward(d->dup, Dup, d->dact, a->up, Dup, N, I);
    L = lin_cx(m, l, ICL_PROJ_UP, cx, tmp, a->xa);
    icl_linear_backward(&L, d->dtmp, C, 0.0f, d->dup, Dup, a->ln2, C, N, cx->work);
    norm_bwd(m, d->dres, G(m, o->ln2_w), G(m, o->ln2_b), d->dtmp, a->res2, P(m, o->ln2_w), a->m2, a->r2, N);
    /* attention: datt = dres Wo; dqkv (flash-style recompute); inverse rotary; dres += norm'(dqkv Wqkv) */
    L = lin_cx(m, l, ICL_PROJ_O, cx, tmp, a->xa);
    icl_linear_backward(&L, d->datt, Datt, 0.0f, d->dres, C, a->att, Datt, N, cx->work);
    icl_attn_shape sh = {cx->b->B, cx->b->T, H, KV, hd, Dqkv, 0, Datt, Datt + (long)KV * hd,
                         1.0f / sqrtf((float)hd), m->bf16 != NULL};
    icl_attention_backward(d->dqkv, d->datt, Datt, a->att, Datt, a->lse, a->qkv, cx->b->doc, &sh);
    if (!g2) {
        icl_rope_apply(d->dqkv, Dqkv, N, H, hd, cx->cos, cx->sin, 1);
        icl_rope_apply(d->dqkv + Datt, Dqkv, N, KV, hd, cx->cos, cx->sin, 1);
    }
    L = lin_cx(m, l, ICL_PROJ_QKV, cx, tmp, a->xa);
    icl_linear_backward(&L, need_dx ? d->dtmp : NULL, C, 0.0f, d->dqkv, Dqkv, a->ln1, C, N, cx->work);
    if (need_dx)
        norm_bwd(m, d->dres, G(m, o->ln1_w), G(m, o->ln1_b), d->dtmp, a->x_in, P(m, o->ln1_w), a->m1, a->r1, N);
}

/* Loss head over target rows, in chunks of R rows: logits = h W^T,
 * cross-entropy, and (scale != 0) dh into dlnf, dW += dlogits^T h (when
 * the head is trainable) over sub-chunks of t0 = min(T, HEAD_ROWS) rows.
 * T is the batch's, R the largest multiple of t0 the buffers hold (a->hrows,
 * from their capacity): dW's rounding depends on t0 alone and the rest on
 * nothing of the chunking, so a resumed run (whose buffers may be smaller)
 * and a checkpointed one (R = t0) are bit-identical to an uninterrupted
 * one.  Returns the sum over the target rows, in order, of their
 * (weighted) losses. */
static double head_loss(const icl_model *m, icl_acts *a, long nt, float scale, int Tb)
{
    const icl_config *c = &m->cfg;
    int C = c->hidden_size, V = c->vocab_size, t0 = Tb < HEAD_ROWS ? Tb : HEAD_ROWS;
    int R = head_wide(m, a->ckpt) ? a->hrows / t0 * t0 : t0;
    icl_linear H = head_lin(m);
    for (long r0 = 0; r0 < nt; r0 += R) {
        int n = (int)(nt - r0 < R ? nt - r0 : R);
        for (int i = 0; i < n; i++)
            memcpy(a->hbuf + (size_t)i * C, a->lnf + (size_t)a->trow[r0 + i] * C, (size_t)C * sizeof(float));
        /* logits [n, V] = h [n, C] W^T, W [V, C] */
        icl_linear_forward(&H, a->lbuf, V, a->hbuf, C, n, 0.0f, ICL_LIN_GEMM, 0, NULL);
        icl_xent_rows_w(a->lbuf, V, n, V, a->tlab + r0, a->tloss + r0, scale, a->tw ? a->twt + r0 : NULL);
        if (scale != 0) {
            /* dh [n, C] = dlogits W, scattered to the target rows, then
             * dW [V, C] += dlogits^T h: h rows recomputed (hbuf held dh) */
            icl_linear dxonly = H;
            dxonly.w.grad = NULL;
            icl_linear_backward(&dxonly, a->hbuf, C, 0.0f, a->lbuf, V, NULL, 0, n, NULL);
            for (int i = 0; i < n; i++)
                memcpy(a->dlnf + (size_t)a->trow[r0 + i] * C, a->hbuf + (size_t)i * C, (size_t)C * sizeof(float));
            if (H.w.grad) {
                for (int i = 0; i < n; i++)
                    memcpy(a->hbuf + (size_t)i * C, a->lnf + (size_t)a->trow[r0 + i] * C, (size_t)C * sizeof(float));
                for (int s0 = 0; s0 < n; s0 += t0)
                    icl_linear_backward(&H, NULL, 0, 0.0f, a->lbuf + (size_t)s0 * V, V, a->hbuf + (size_t)s0 * C, C,
                                        n - s0 < t0 ? n - s0 : t0, NULL);
            }
        }
    }
    double total = 0; /* in row order: the same for any chunking or thread count */
    for (long i = 0; i < nt; i++)
        total += a->tw ? (double)a->twt[i] * (double)a->tloss[i] : a->tloss[i];
    return total;
}

/* Make sure the adapters' scratch holds icl_linear_work for N rows, and
 * the kept down products (acts' xa) their N rows of every layer. */
static float *lwork_get(icl_acts *a, const icl_model *m, int N)
{
    int rproj, rlayer;
    lora_rsums(m, &rproj, &rlayer);
    size_t layers = a->ckpt ? 1 : (size_t)m->cfg.num_hidden_layers, xn = layers * (size_t)N * (size_t)rlayer;
    a->xa_layer = a->ckpt ? 0 : (size_t)N * (size_t)rlayer;
    if (xn > a->xa_n) {
        free(a->xa);
        a->xa = icl_xcalloc_huge(xn, sizeof(float));
        a->xa_n = xn;
    }
    size_t need = (size_t)N * ((size_t)lora_rmax(m) + 2 * (size_t)rproj);
    if (m->lora && m->lora_dropout > 0) { /* the dropped input [N, in] of the widest adapter input */
        const icl_config *c = &m->cfg;
        size_t w = (size_t)c->hidden_size, att = (size_t)c->num_attention_heads * c->head_dim;
        w = att > w ? att : w;
        w = (size_t)c->intermediate_size > w ? (size_t)c->intermediate_size : w;
        need += (size_t)N * w;
    }
    if (need > a->lwork_n) {
        free(a->lwork);
        a->lwork = xmalloc(need * sizeof(float));
        a->lwork_n = need;
    }
    return a->lwork;
}

/* The batch's layer context (rotary tables of a must be filled), with the
 * LoRA dropout the forward chose (a->drop_p, a->drop_key). */
static layer_ctx batch_ctx(const icl_acts *a, const icl_batch *b)
{
    layer_ctx cx = {b->B * b->T, b, NULL, 0, 0, a->cos, a->sin, ICL_LIN_GEMM, 0, 0, a->lwork, a->drop_p, a->drop_key};
    return cx;
}

/* Target rows: position t predicts ids[t+1] when that token is a target of
 * the same document.  Returns their count. */
static long find_targets(icl_acts *a, const icl_batch *b)
{
    long nt = 0;
    for (int bb = 0; bb < b->B; bb++)
        for (int t = 0; t + 1 < b->T; t++) {
            long i = (long)bb * b->T + t;
            if ((!b->target || b->target[i + 1]) && (!b->doc || b->doc[i + 1] == b->doc[i])) {
                a->trow[nt] = (int32_t)i;
                if (b->weight)
                    a->twt[nt] = b->weight[i + 1];
                a->tlab[nt++] = b->ids[i + 1];
            }
        }
    a->tw = b->weight != NULL;
    return nt;
}

/* Summed loss of the target rows from full logits [N, V] (no backward). */
static double logits_loss(icl_acts *a, const float *logits, int V)
{
    double loss = 0;
    for (long r = 0; r < a->ntarg; r++) {
        const float *row = logits + (size_t)a->trow[r] * V;
        float mx = -INFINITY;
        for (int j = 0; j < V; j++)
            mx = row[j] > mx ? row[j] : mx;
        double s = 0;
        for (int j = 0; j < V; j++)
            s += exp((double)row[j] - mx);
        double l = mx + log(s) - row[a->tlab[r]];
        a->tloss[r] = (float)l;
        loss += a->tw ? (double)a->twt[r] * l : l;
    }
    return loss;
}

double icl_model_forward(icl_model *m, const icl_batch *b, float *logits, float loss_scale, long *n_targets)
{
    if (icl_batch_validate(m, b, m->err, sizeof m->err)) {
        if (m->acts)
            m->acts->fused = 0;
        return NAN;
    }
    if (loss_scale != 0 && m->bf16 && !m->bf16->have_bwd) { /* bf16: the input-gradient copies, once */
        if (bf16_pack_all(m, 1, m->err, sizeof m->err)) {
            if (m->acts)
                m->acts->fused = 0;
            return NAN;
        }
        m->bf16->have_bwd = 1;
    }
    const icl_config *c = &m->cfg;
    int B = b->B, T = b->T, N = B * T, C = c->hidden_size, L = c->num_hidden_layers;
    if (loss_scale != 0)
        icl_model_alloc_grads(m);
    icl_acts *a = acts_get(m, B, T);
    lwork_get(a, m, N);
    for (int i = 0; i < N; i++)
        a->pos[i] = b->pos ? b->pos[i] : i % T;
    if (c->arch == ICL_ARCH_LLAMA) {
        icl_rope_params rp = rope_params(c);
        icl_rope_tables(a->cos, a->sin, a->pos, N, c->head_dim, &rp);
    }
    embed_forward(m, a->x[0], b->ids, a->pos, N);
    /* LoRA dropout in training passes only; the backward uses the same */
    a->drop_p = loss_scale != 0 && m->lora ? m->lora_dropout : 0.0f;
    a->drop_key = m->dropout_key;
    layer_ctx cx = batch_ctx(a, b);
    for (int l = 0; l < L; l++) {
        layer_bufs lb = batch_bufs(a, l);
        layer_forward(m, l, &cx, &lb);
    }
    norm_fwd(m, a->lnf, a->mf, a->rf, a->x[L], P(m, m->normf_w), P(m, m->normf_b), N);
    long nt = find_targets(a, b);
    a->ntarg = nt;
    a->cur_n = (size_t)N;
    if (n_targets)
        *n_targets = nt;
    if (loss_scale != 0)
        memset(a->dlnf, 0, (size_t)N * C * sizeof(float));
    a->fused = loss_scale != 0;
    if (logits) {
        icl_linear H = head_lin(m);
        icl_linear_forward(&H, logits, c->vocab_size, a->lnf, C, N, 0.0f, ICL_LIN_GEMM, 0, NULL);
        if (loss_scale == 0)
            return logits_loss(a, logits, c->vocab_size);
    }
    return head_loss(m, a, nt, loss_scale, T);
}

int icl_model_token_losses(const icl_model *m, float *loss, char *err, size_t errsz)
{
    const icl_acts *a = m->acts;
    if (!a) {
        icl_seterr(err, errsz, "model token losses: no forward before it");
        return -1;
    }
    memset(loss, 0, a->cur_n * sizeof(float));
    for (long r = 0; r < a->ntarg; r++)
        loss[a->trow[r]] = a->tloss[r];
    return 0;
}

/* First float of block l's tensors in set s (l == L: the end of the
 * blocks); see icl_model_grad_range. */
static size_t block_begin(const icl_model *m, const icl_param_set *s, int l)
{
    int L = m->cfg.num_hidden_layers;
    if (s == &m->base)
        return l < L ? m->layer[l].ln1_w : m->normf_w;
    /* the LoRA set: its views go block by block (icl_model_add_lora) */
    for (; l < L; l++) {
        size_t lo = SIZE_MAX;
        for (int p = 0; m->lora && p < ICL_NPROJ; p++)
            for (int i = 0; i < m->lora[l].n[p]; i++) {
                const icl_lora *a = &m->lora[l].lora[p][i];
                size_t oa = (size_t)(a->A - s->params), ob = (size_t)(a->B - s->params);
                lo = oa < lo ? oa : lo;
                lo = ob < lo ? ob : lo;
            }
        if (lo != SIZE_MAX)
            return lo;
    }
    return s->num_params;
}

void icl_model_grad_range(const icl_model *m, const icl_param_set *s, int stage, size_t *begin, size_t *end)
{
    int L = m->cfg.num_hidden_layers;
    *begin = *end = 0;
    if (stage < -1 || stage > L)
        return;
    if (s != &m->base && s != m->lora_set) {
        if (stage == -1)
            *end = s->num_params;
        return;
    }
    *begin = stage < 0 ? 0 : block_begin(m, s, stage);
    *end = stage < L ? block_begin(m, s, stage + 1) : s->num_params;
    if (s != &m->base && stage == -1)
        *end = 0; /* adapters have no embeddings */
    else if (s != &m->base && stage == L)
        *begin = *end; /* nor a head */
}

int icl_model_backward(icl_model *m, const icl_batch *b, char *err, size_t errsz)
{
    return icl_model_backward_notify(m, b, NULL, NULL, err, errsz);
}

int icl_model_backward_notify(icl_model *m, const icl_batch *b, icl_grads_ready_fn ready, void *ctx, char *err,
                              size_t errsz)
{
    icl_acts *a = m->acts;
    if (!a || !a->fused || a->B != b->B || a->T < b->T) {
        icl_seterr(err, errsz, "model backward: no forward with loss_scale != 0 on this batch before it");
        return -1;
    }
    const icl_config *c = &m->cfg;
    int N = b->B * b->T, L = c->num_hidden_layers;
    icl_model_alloc_grads(m);
    /* final norm: dres = dL/dx[L] */
    memset(a->dres, 0, (size_t)N * c->hidden_size * sizeof(float));
    norm_bwd(m, a->dres, G(m, m->normf_w), G(m, m->normf_b), a->dlnf, a->x[L], P(m, m->normf_w), a->mf, a->rf, N);
    if (ready)
        ready(ctx, m, L); /* the head's gradient was accumulated by the forward */
    /* with the base frozen nothing below the lowest adapter needs a gradient */
    int lmin = 0;
    if (!m->base.grads) {
        lmin = L; /* no adapters: no layer */
        for (int l = 0; l < L && m->lora && lmin == L; l++)
            for (int p = 0; p < ICL_NPROJ; p++)
                if (m->lora[l].n[p] > 0)
                    lmin = l;
    }
    layer_ctx cx = batch_ctx(a, b);
    for (int l = L - 1; l >= lmin; l--) {
        layer_bufs lb = batch_bufs(a, l);
        if (a->ckpt && l < L - 1) {
            /* checkpointing: the layer's activations again, from its input
             * (the top layer's are still there from the forward) */
            lb.x_out = NULL;
            layer_forward(m, l, &cx, &lb);
        }
        /* the lowest layer of a frozen base: no gradient below its q|k|v
         * products (its ln1 weight and the embedding are frozen) */
        layer_backward(m, l, &cx, &lb, a, l > lmin || m->base.grads);
        if (ready)
            ready(ctx, m, l);
    }
    if (ready) /* blocks below the lowest adapter of a frozen base */
        for (int l = lmin - 1; l >= 0; l--)
            ready(ctx, m, l);
    if (G(m, m->embed))
        embed_backward(m, a->dres, b->ids, a->pos, N);
    a->fused = 0;
    if (ready)
        ready(ctx, m, -1);
    return 0;
}

/* ---------------------------------------------------------------- KV cache decoding */

icl_kv_cache *icl_kv_cache_new(const icl_model *m, int max_pos)
{
    const icl_config *c = &m->cfg;
    icl_kv_cache *k = xcalloc(1, sizeof *k);
    k->n_layer = c->num_hidden_layers;
    k->n_kv = c->num_key_value_heads;
    k->hd = c->head_dim;
    k->max_pos = max_pos > 0 ? max_pos : 1;
    if (c->arch == ICL_ARCH_GPT2 && k->max_pos > c->max_position_embeddings)
        k->max_pos = c->max_position_embeddings;
    size_t n = (size_t)k->n_layer * k->n_kv * k->max_pos * k->hd;
    k->k = xcalloc(n, sizeof(float));
    k->v = xcalloc(n, sizeof(float));
    return k;
}

void icl_kv_cache_free(icl_kv_cache *c)
{
    if (!c)
        return;
    free(c->k);
    free(c->v);
    free(c);
}

int icl_kv_cache_truncate(icl_kv_cache *c, int len, char *err, size_t errsz)
{
    if (len < 0 || len > c->len) {
        icl_seterr(err, errsz, "cannot truncate a KV cache of %d positions to %d", c->len, len);
        return -1;
    }
    c->len = len;
    return 0;
}

void icl_kv_cache_reserve(icl_kv_cache *c, const icl_model *m, int max_pos)
{
    if (m->cfg.arch == ICL_ARCH_GPT2 && max_pos > m->cfg.max_position_embeddings)
        max_pos = m->cfg.max_position_embeddings;
    if (max_pos <= c->max_pos)
        return;
    size_t rows = (size_t)c->n_layer * c->n_kv, hd = (size_t)c->hd;
    float *k = xcalloc(rows * (size_t)max_pos * hd, sizeof(float));
    float *v = xcalloc(rows * (size_t)max_pos * hd, sizeof(float));
    for (size_t r = 0; r < rows; r++) { /* each (layer, head): its c->len positions */
        memcpy(k + r * (size_t)max_pos * hd, c->k + r * (size_t)c->max_pos * hd, (size_t)c->len * hd * sizeof(float));
        memcpy(v + r * (size_t)max_pos * hd, c->v + r * (size_t)c->max_pos * hd, (size_t)c->len * hd * sizeof(float));
    }
    free(c->k);
    free(c->v);
    c->k = k;
    c->v = v;
    c->max_pos = max_pos;
}

/* Decode the rows of cx (cached mode: n_cache caches, n_new tokens each):
 * embeddings, every layer in place on one set of buffers, final norm, LM
 * head (logits [N, V] when all_logits, else the last row of each cache),
 * then advance the caches. */
static void decode_rows(const icl_model *m, layer_ctx *cx, const int32_t *ids, float *logits, int all_logits)
{
    const icl_config *c = &m->cfg;
    int n = cx->N, C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, hd = c->head_dim;
    long Dqkv, Dup, Datt;
    dims(c, &Dqkv, &Dup, &Datt);
    int half = hd / 2;
    int rproj, rlayer;
    lora_rsums(m, &rproj, &rlayer);
    size_t nC = (size_t)n * C, nw = (size_t)n * ((size_t)lora_rmax(m) + 2 * (size_t)rproj);
    float *buf = xmalloc((nC * 2 + (size_t)n * (Dqkv + Datt + Dup + I + 4 + 2 * half) + nw) * sizeof(float));
    float *x = buf, *ln = x + nC, *qkv = ln + nC, *att = qkv + (size_t)n * Dqkv, *up = att + (size_t)n * Datt,
          *act = up + (size_t)n * Dup, *mean = act + (size_t)n * I, *rstd = mean + n, *cs = rstd + n,
          *sn = cs + (size_t)n * half;
    int32_t *pos = xmalloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++)
        pos[i] = cx->caches[i / cx->n_new]->len + i % cx->n_new;
    if (c->arch == ICL_ARCH_LLAMA) {
        icl_rope_params rp = rope_params(c);
        icl_rope_tables(cs, sn, pos, n, hd, &rp);
    }
    cx->cos = cs;
    cx->sin = sn;
    cx->work = nw ? sn + (size_t)n * half : NULL;
    embed_forward(m, x, ids, pos, n);
    layer_bufs lb = {x, ln, ln, mean, rstd, mean, rstd, qkv, NULL, att, x, up, act, x, NULL};
    for (int l = 0; l < c->num_hidden_layers; l++)
        layer_forward(m, l, cx, &lb);
    norm_fwd(m, ln, mean, rstd, x, P(m, m->normf_w), P(m, m->normf_b), n);
    icl_linear H = head_lin(m);
    if (all_logits || cx->n_new == 1)
        icl_linear_forward(&H, logits, V, ln, C, n, 0.0f, cx->kernel, cx->nt, NULL);
    else
        for (int k = 0; k < cx->n_cache; k++)
            icl_linear_forward(&H, logits + (size_t)k * V, V, ln + ((size_t)k * cx->n_new + cx->n_new - 1) * C, C,
                               1, 0.0f, cx->kernel, cx->nt, NULL);
    for (int k = 0; k < cx->n_cache; k++)
        cx->caches[k]->len += cx->n_new;
    free(pos);
    free(buf);
}

int icl_model_decode(icl_model *m, icl_kv_cache *kc, const int32_t *ids, int n, float *logits, int all_logits,
                     char *err, size_t errsz)
{
    int V = m->cfg.vocab_size;
    if (n < 1)
        return 0;
    if (kc->len + n > kc->max_pos) {
        icl_seterr(err, errsz, "KV cache full: %d + %d positions > %d", kc->len, n, kc->max_pos);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            icl_seterr(err, errsz, "token id %d is not below vocab_size %d", ids[i], V);
            return -1;
        }
    layer_ctx cx = {n, NULL, &kc, 1, n, NULL, NULL, ICL_LIN_GEMM, 0, 0, NULL, 0.0f, 0}; /* never dropout */
    decode_rows(m, &cx, ids, logits, all_logits);
    return 0;
}

int icl_model_step(icl_model *m, icl_kv_cache *const *caches, const int32_t *ids, int B, float *logits, char *err,
                   size_t errsz)
{
    const icl_config *c = &m->cfg;
    int V = c->vocab_size;
    if (B < 1)
        return 0;
    int maxlen = 0;
    for (int b = 0; b < B; b++) {
        if (ids[b] < 0 || ids[b] >= V) {
            icl_seterr(err, errsz, "token id %d is not below vocab_size %d", ids[b], V);
            return -1;
        }
        if (caches[b]->len >= caches[b]->max_pos) {
            icl_seterr(err, errsz, "KV cache full: %d positions", caches[b]->max_pos);
            return -1;
        }
        if (c->arch == ICL_ARCH_GPT2 && caches[b]->len >= c->max_position_embeddings) {
            icl_seterr(err, errsz, "position %d is not below n_positions %d", caches[b]->len,
                       c->max_position_embeddings);
            return -1;
        }
        maxlen = caches[b]->len + 1 > maxlen ? caches[b]->len + 1 : maxlen;
    }
    /* Only the matrix products (and a long attention) run on several
     * threads: the elementwise ops of one step are too small to pay for a
     * team's fork and join, which on a busy machine costs far more than
     * the work (each join waits for the slowest thread to be scheduled). */
    int nt = omp_get_max_threads(),
        att_nt = (double)B * c->num_attention_heads * maxlen * c->head_dim > 262144.0 ? nt : 1;
    omp_set_num_threads(1);
    layer_ctx cx = {B, NULL, caches, B, 1, NULL, NULL, ICL_LIN_ROWS, nt, att_nt, NULL, 0.0f, 0}; /* never dropout */
    decode_rows(m, &cx, ids, logits, 1);
    omp_set_num_threads(nt);
    return 0;
}
