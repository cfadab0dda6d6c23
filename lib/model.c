/* model.c - parameters, HF folders, forward/backward of Llama/Qwen2/GPT-2, KV cache. */
#include "model.h"
#include "gguf_model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ops.h"
#include "safetensors.h"
#include "util.h"

#define NONE ((size_t)-1)
/* Rows of logits the loss head computes at a time (at most T): bounds its
 * buffer to HEAD_ROWS x V floats whatever the batch. */
#define HEAD_ROWS 256


/* ---------------------------------------------------------------- parameter table */

static size_t add_view(icl_model *m, int *cap, const char *name, int ndim, int64_t d0, int64_t d1)
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

/* Lay out every tensor of the architecture in one buffer, in HF names. */
static void build_views(icl_model *m)
{
    const icl_config *c = &m->cfg;
    int cap = 0, L = c->num_hidden_layers;
    int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, hd = c->head_dim;
    int64_t Q = c->num_attention_heads * hd, K = c->num_key_value_heads * hd;
    char nm[128];
    m->layer = xcalloc((size_t)L, sizeof *m->layer);
    m->pos_embed = m->normf_b = NONE;
    if (c->arch == ICL_ARCH_LLAMA) {
        m->embed = add_view(m, &cap, "model.embed_tokens.weight", 2, V, C);
        for (int l = 0; l < L; l++) {
            icl_layer_offsets *o = &m->layer[l];
            memset(o, 0xff, sizeof *o);
#define N(s) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, s), nm)
            o->ln1_w = add_view(m, &cap, N("input_layernorm.weight"), 1, C, 0);
            o->qkv_w = add_view(m, &cap, N("self_attn.q_proj.weight"), 2, Q, C);
            add_view(m, &cap, N("self_attn.k_proj.weight"), 2, K, C);
            add_view(m, &cap, N("self_attn.v_proj.weight"), 2, K, C);
            if (c->qkv_bias) {
                o->qkv_b = add_view(m, &cap, N("self_attn.q_proj.bias"), 1, Q, 0);
                add_view(m, &cap, N("self_attn.k_proj.bias"), 1, K, 0);
                add_view(m, &cap, N("self_attn.v_proj.bias"), 1, K, 0);
            }
            o->o_w = add_view(m, &cap, N("self_attn.o_proj.weight"), 2, C, Q);
            if (c->o_bias)
                o->o_b = add_view(m, &cap, N("self_attn.o_proj.bias"), 1, C, 0);
            o->ln2_w = add_view(m, &cap, N("post_attention_layernorm.weight"), 1, C, 0);
            o->up_w = add_view(m, &cap, N("mlp.gate_proj.weight"), 2, I, C);
            add_view(m, &cap, N("mlp.up_proj.weight"), 2, I, C);
            if (c->mlp_bias) {
                o->up_b = add_view(m, &cap, N("mlp.gate_proj.bias"), 1, I, 0);
                add_view(m, &cap, N("mlp.up_proj.bias"), 1, I, 0);
            }
            o->down_w = add_view(m, &cap, N("mlp.down_proj.weight"), 2, C, I);
            if (c->mlp_bias)
                o->down_b = add_view(m, &cap, N("mlp.down_proj.bias"), 1, C, 0);
#undef N
        }
        m->normf_w = add_view(m, &cap, "model.norm.weight", 1, C, 0);
    } else {
        m->embed = add_view(m, &cap, "transformer.wte.weight", 2, V, C);
        m->pos_embed = add_view(m, &cap, "transformer.wpe.weight", 2, c->max_position_embeddings, C);
        for (int l = 0; l < L; l++) {
            icl_layer_offsets *o = &m->layer[l];
#define N(s) (snprintf(nm, sizeof nm, "transformer.h.%d.%s", l, s), nm)
            o->ln1_w = add_view(m, &cap, N("ln_1.weight"), 1, C, 0);
            o->ln1_b = add_view(m, &cap, N("ln_1.bias"), 1, C, 0);
            o->qkv_w = add_view(m, &cap, N("attn.c_attn.weight"), 2, C, 3 * C);
            o->qkv_b = add_view(m, &cap, N("attn.c_attn.bias"), 1, 3 * C, 0);
            o->o_w = add_view(m, &cap, N("attn.c_proj.weight"), 2, C, C);
            o->o_b = add_view(m, &cap, N("attn.c_proj.bias"), 1, C, 0);
            o->ln2_w = add_view(m, &cap, N("ln_2.weight"), 1, C, 0);
            o->ln2_b = add_view(m, &cap, N("ln_2.bias"), 1, C, 0);
            o->up_w = add_view(m, &cap, N("mlp.c_fc.weight"), 2, C, I);
            o->up_b = add_view(m, &cap, N("mlp.c_fc.bias"), 1, I, 0);
            o->down_w = add_view(m, &cap, N("mlp.c_proj.weight"), 2, I, C);
            o->down_b = add_view(m, &cap, N("mlp.c_proj.bias"), 1, C, 0);
#undef N
        }
        m->normf_w = add_view(m, &cap, "transformer.ln_f.weight", 1, C, 0);
        m->normf_b = add_view(m, &cap, "transformer.ln_f.bias", 1, C, 0);
    }
    m->lm_head = c->tie_word_embeddings ? m->embed : add_view(m, &cap, "lm_head.weight", 2, V, C);
}

icl_model *icl_model_new(const icl_config *cfg)
{
    icl_model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->cfg.raw = cfg->raw ? json_deep_copy(cfg->raw) : NULL;
    build_views(m);
    m->params = xcalloc(m->num_params, sizeof(float));
    return m;
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
    for (int i = 0; i < m->n_views; i++) {
        const icl_param_view *v = &m->views[i];
        float *p = m->params + v->offset;
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
    if (m->cfg.arch == ICL_ARCH_LLAMA && m->cfg.pad_token_id >= 0)
        memset(m->params + m->embed + (size_t)m->cfg.pad_token_id * m->cfg.hidden_size, 0,
               (size_t)m->cfg.hidden_size * sizeof(float));
}

const icl_param_view *icl_model_view(const icl_model *m, const char *name)
{
    for (int i = 0; i < m->n_views; i++)
        if (!strcmp(m->views[i].name, name))
            return &m->views[i];
    return NULL;
}

void icl_model_alloc_grads(icl_model *m)
{
    if (!m->grads)
        m->grads = xcalloc(m->num_params, sizeof(float));
}

void icl_model_alloc_moments(icl_model *m)
{
    if (!m->m)
        m->m = xcalloc(m->num_params, sizeof(float));
    if (!m->v)
        m->v = xcalloc(m->num_params, sizeof(float));
}

void icl_model_zero_grads(icl_model *m)
{
    icl_model_alloc_grads(m);
    memset(m->grads, 0, m->num_params * sizeof(float));
}

static void acts_free(icl_acts *a);

void icl_model_free(icl_model *m)
{
    if (!m)
        return;
    icl_config_free(&m->cfg);
    free(m->views);
    free(m->params);
    free(m->grads);
    free(m->m);
    free(m->v);
    free(m->layer);
    free(m->src_dir);
    acts_free(m->acts);
    free(m);
}

/* ---------------------------------------------------------------- loading and saving */

static char *join(const char *dir, const char *file)
{
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s%s%s", dir, (*dir && dir[strlen(dir) - 1] == '/') ? "" : "/", file);
    return p;
}

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
    char *wp = join(dir, "model.safetensors"), *ip = join(dir, "model.safetensors.index.json");
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
        char *p = join(dir, fn);
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

/* Read every view of m from the open files into buf (num_params floats). */
static int read_views(const icl_model *m, float *buf, const shards *sh, const char *where, char *err, size_t errsz)
{
    for (int i = 0; i < m->n_views; i++) {
        const icl_param_view *v = &m->views[i];
        const char *wp = sh->path[0];
        const icl_st_tensor *t = shards_find(sh, v->name, &wp);
        if (!t && !strncmp(v->name, "transformer.", 12)) /* original GPT-2 checkpoints have no prefix */
            t = shards_find(sh, v->name + 12, &wp);
        if (!t) {
            icl_seterr(err, errsz, "%s: missing tensor \"%s\"", sh->n == 1 ? wp : where, v->name);
            return -1;
        }
        int ok = t->ndim == v->ndim && t->shape[0] == v->shape[0] && (v->ndim == 1 || t->shape[1] == v->shape[1]);
        if (!ok) {
            char shp[64] = "";
            for (int d = 0; d < t->ndim && d < 4; d++)
                snprintf(shp + strlen(shp), sizeof shp - strlen(shp), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            icl_seterr(err, errsz, "%s: tensor \"%s\" has shape [%s], config.json needs [%lld%s%.0lld]", wp, v->name,
                   shp, (long long)v->shape[0], v->ndim > 1 ? ", " : "", (long long)v->shape[1]);
            return -1;
        }
        char e2[256];
        if (icl_st_read_f32(t, buf + v->offset, v->numel, e2, sizeof e2)) {
            icl_seterr(err, errsz, "%s: %s", wp, e2);
            return -1;
        }
    }
    return 0;
}

icl_model *icl_model_load(const char *dir, char *err, size_t errsz)
{
    if (icl_is_gguf_file(dir)) /* a .gguf file instead of a folder: lib/gguf_model.c */
        return icl_model_load_gguf(dir, err, errsz);
    char *cp = join(dir, "config.json");
    icl_config cfg;
    icl_model *m = NULL;
    shards sh = {0};
    if (icl_config_load(&cfg, cp, err, errsz))
        goto out;
    m = icl_model_new(&cfg);
    icl_config_free(&cfg);
    if (shards_open(&sh, dir, err, errsz) || read_views(m, m->params, &sh, dir, err, errsz)) {
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
    icl_st_entry *e = xcalloc((size_t)m->n_views, sizeof *e);
    for (int i = 0; i < m->n_views; i++) {
        e[i].name = m->views[i].name;
        e[i].data = buf + m->views[i].offset;
        e[i].ndim = m->views[i].ndim;
        e[i].shape[0] = m->views[i].shape[0];
        e[i].shape[1] = m->views[i].shape[1];
    }
    int r = icl_st_write(path, e, m->n_views, err, errsz);
    free(e);
    return r;
}

static int copy_file_atomic(const char *from, const char *to, char *err, size_t errsz)
{
    FILE *f = fopen(from, "rb");
    if (!f)
        return errno == ENOENT ? 0 : (icl_seterr(err, errsz, "%s: %s", from, strerror(errno)), -1);
    icl_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        buf_append(&b, tmp, n);
    int bad = ferror(f);
    fclose(f);
    int r = bad ? (icl_seterr(err, errsz, "%s: read error", from), -1) : icl_write_file_atomic(to, b.data ? b.data : "", b.len, err, errsz);
    buf_free(&b);
    return r;
}

/* mkdir -p */
static int mkdirs(const char *dir)
{
    char *p = xstrdup(dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                free(p);
                return -1;
            }
            *s = '/';
        }
    free(p);
    return mkdir(dir, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

int icl_model_save(const icl_model *m, const char *dir, char *err, size_t errsz)
{
    if (mkdirs(dir) < 0) {
        icl_seterr(err, errsz, "%s: cannot create folder: %s", dir, strerror(errno));
        return -1;
    }
    int rc = -1;
    char *p = join(dir, "config.json");
    if (icl_config_save(&m->cfg, p, err, errsz))
        goto out;
    free(p);
    p = join(dir, "model.safetensors");
    int r = icl_model_write_tensors(m, m->params, p, err, errsz);
    if (r)
        goto out;
    free(p);
    p = join(dir, "generation_config.json");
    char *src = m->src_dir ? join(m->src_dir, "generation_config.json") : NULL;
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
                                    "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json"};
        for (size_t i = 0; i < sizeof tok / sizeof tok[0]; i++) {
            char *from = join(m->src_dir, tok[i]), *to = join(dir, tok[i]);
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
    int hrows;           /* rows per head chunk: min(T, HEAD_ROWS) */
    float *hbuf, *lbuf;  /* [hrows, C], [hrows, V] */
    int fused;           /* last forward fused the head backward */
    long ntarg;
    size_t cur_n;        /* B * T of the last forward */
    float *slab;         /* one allocation for everything */
};

static void acts_free(icl_acts *a)
{
    if (!a)
        return;
    free(a->x);
    free(a->slab);
    free(a->pos);
    free(a->trow);
    free(a->tlab);
    free(a->tloss);
    free(a);
}

static void dims(const icl_config *c, long *Dqkv, long *Dup, long *Datt)
{
    long hd = c->head_dim;
    *Datt = (long)c->num_attention_heads * hd;
    *Dqkv = *Datt + 2L * c->num_key_value_heads * hd;
    *Dup = c->arch == ICL_ARCH_LLAMA ? 2L * c->intermediate_size : c->intermediate_size;
}

static icl_acts *acts_get(icl_model *m, int B, int T)
{
    icl_acts *a = m->acts;
    if (a && a->N >= (size_t)B * T && a->T >= T) {
        a->B = B;
        return a;
    }
    acts_free(a);
    const icl_config *c = &m->cfg;
    int L = c->num_hidden_layers;
    size_t N = (size_t)B * T, C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    long Dqkv, Dup, Datt;
    dims(c, &Dqkv, &Dup, &Datt);
    size_t H = c->num_attention_heads, half = c->head_dim / 2;
    size_t per = N * (2 * C + 4 + Dqkv + (size_t)Datt + C + Dup + I) + H * N;
    size_t total = (size_t)(L + 1) * N * C + L * per + N * (C + 2) + 2 * N * half + N * C +
                   N * (2 * C + Dqkv + Datt + Dup + I) + (T < HEAD_ROWS ? (size_t)T : HEAD_ROWS) * (C + V);
    size_t hr = T < HEAD_ROWS ? (size_t)T : HEAD_ROWS;
    a = xcalloc(1, sizeof *a);
    a->hrows = (int)hr;
    a->B = B;
    a->T = T;
    a->N = N;
    a->slab = xmalloc(total * sizeof(float));
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
    float *s = a->slab;
#define TAKE(n) (s += (n), s - (n))
    for (int l = 0; l <= L; l++)
        a->x[l] = TAKE(N * C);
    for (int l = 0; l < L; l++) {
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
    a->pos = xmalloc(N * sizeof(int32_t));
    a->trow = xmalloc(N * sizeof(int32_t));
    a->tlab = xmalloc(N * sizeof(int32_t));
    a->tloss = xmalloc(N * sizeof(float));
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

static icl_linear lin(icl_model *m, size_t w, size_t bias, int in, int out, int conv1d)
{
    icl_linear l = {m->params + w, bias == NONE ? NULL : m->params + bias, NULL, NULL, in, out, conv1d};
    if (m->grads) {
        l.dw = m->grads + w;
        l.db = bias == NONE ? NULL : m->grads + bias;
    }
    return l;
}

static float *P(icl_model *m, size_t off) { return off == NONE ? NULL : m->params + off; }
static float *G(icl_model *m, size_t off) { return off == NONE ? NULL : m->grads + off; }

static void norm_fwd(const icl_model *m, float *y, float *mean, float *rstd, const float *x, const float *w,
                     const float *b, int N)
{
    const icl_config *c = &m->cfg;
    if (c->arch == ICL_ARCH_LLAMA)
        icl_rmsnorm_forward(y, rstd, x, w, N, c->hidden_size, (float)c->norm_eps);
    else
        icl_layernorm_forward(y, mean, rstd, x, w, b, N, c->hidden_size, (float)c->norm_eps);
}

static void norm_bwd(icl_model *m, float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                     const float *mean, const float *rstd, int N)
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

/* Embedding: x[N, C] = wte[ids] (+ wpe[pos] for GPT-2) */
static void embed_forward(icl_model *m, float *x, const int32_t *ids, const int32_t *pos, int N)
{
    int C = m->cfg.hidden_size;
    const float *E = P(m, m->embed), *Pe = P(m, m->pos_embed);
#pragma omp parallel for schedule(static) if ((long)N * C >= 32768)
    for (int i = 0; i < N; i++) {
        const float *e = E + (size_t)ids[i] * C;
        float *xi = x + (size_t)i * C;
        if (Pe) {
            const float *p = Pe + (size_t)pos[i] * C;
#pragma omp simd
            for (int j = 0; j < C; j++)
                xi[j] = e[j] + p[j];
        } else {
            memcpy(xi, e, (size_t)C * sizeof(float));
        }
    }
}

/* dwte[ids[i]] += dx[i] (and dwpe[pos[i]]): parallel over column blocks, so rows
 * never race.  As HF's Llama/Qwen2 (nn.Embedding(padding_idx=pad_token_id)),
 * lookups of the pad id give its row no gradient; GPT-2 has no padding_idx. */
static void embed_backward(icl_model *m, const float *dx, const int32_t *ids, const int32_t *pos, int N)
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

/* One block forward: x[N,C] -> y[N,C] (B, T) */
static void block_forward(icl_model *m, icl_acts *a, int l, const icl_batch *b)
{
    const icl_config *c = &m->cfg;
    const icl_layer_offsets *o = &m->layer[l];
    int N = b->B * b->T, C = c->hidden_size, I = c->intermediate_size, g2 = c->arch == ICL_ARCH_GPT2;
    long Dqkv, Dup, Datt;
    dims(c, &Dqkv, &Dup, &Datt);
    /* attention: ln1 = norm(x); qkv = ln1 Wqkv; rotary; att = softmax(q k^T) v; res2 = x + att Wo */
    norm_fwd(m, a->ln1[l], a->m1[l], a->r1[l], a->x[l], P(m, o->ln1_w), P(m, o->ln1_b), N);
    icl_linear Lqkv = lin(m, o->qkv_w, o->qkv_b, C, (int)Dqkv, g2);
    icl_linear_forward(&Lqkv, a->qkv[l], Dqkv, a->ln1[l], C, N, 0.0f);
    if (!g2) {
        icl_rope_apply(a->qkv[l], Dqkv, N, c->num_attention_heads, c->head_dim, a->cos, a->sin, 0);
        icl_rope_apply(a->qkv[l] + Datt, Dqkv, N, c->num_key_value_heads, c->head_dim, a->cos, a->sin, 0);
    }
    icl_attn_shape sh = {b->B, b->T, c->num_attention_heads, c->num_key_value_heads, c->head_dim,
                         Dqkv, 0, Datt, Datt + (long)c->num_key_value_heads * c->head_dim,
                         1.0f / sqrtf((float)c->head_dim)};
    icl_attention_forward(a->att[l], Datt, a->lse[l], a->qkv[l], b->doc, &sh);
    memcpy(a->res2[l], a->x[l], (size_t)N * C * sizeof(float));
    icl_linear Lo = lin(m, o->o_w, o->o_b, (int)Datt, C, g2);
    icl_linear_forward(&Lo, a->res2[l], C, a->att[l], Datt, N, 1.0f);
    /* MLP: ln2 = norm(res2); up = ln2 Wup; act = swiglu/gelu(up); x[l+1] = res2 + act Wdown */
    norm_fwd(m, a->ln2[l], a->m2[l], a->r2[l], a->res2[l], P(m, o->ln2_w), P(m, o->ln2_b), N);
    icl_linear Lup = lin(m, o->up_w, o->up_b, C, (int)Dup, g2);
    icl_linear_forward(&Lup, a->up[l], Dup, a->ln2[l], C, N, 0.0f);
    if (g2)
        icl_gelu_forward(a->act[l], a->up[l], (size_t)N * I);
    else
        icl_swiglu_forward(a->act[l], a->up[l], Dup, N, I);
    memcpy(a->x[l + 1], a->res2[l], (size_t)N * C * sizeof(float));
    icl_linear Ldown = lin(m, o->down_w, o->down_b, I, C, g2);
    icl_linear_forward(&Ldown, a->x[l + 1], C, a->act[l], I, N, 1.0f);
}

/* One block backward: a->dres holds dL/dx[l+1] on entry, dL/dx[l] on exit. */
static void block_backward(icl_model *m, icl_acts *a, int l, const icl_batch *b)
{
    const icl_config *c = &m->cfg;
    const icl_layer_offsets *o = &m->layer[l];
    int N = b->B * b->T, C = c->hidden_size, I = c->intermediate_size, g2 = c->arch == ICL_ARCH_GPT2;
    long Dqkv, Dup, Datt;
    dims(c, &Dqkv, &Dup, &Datt);
    /* MLP */
    icl_linear Ldown = lin(m, o->down_w, o->down_b, I, C, g2);
    icl_linear_backward(&Ldown, a->dact, I, 0.0f, a->dres, C, a->act[l], I, N);
    if (g2)
        icl_gelu_backward(a->dup, a->dact, a->up[l], (size_t)N * I);
    else
        icl_swiglu_backward(a->dup, Dup, a->dact, a->up[l], Dup, N, I);
    icl_linear Lup = lin(m, o->up_w, o->up_b, C, (int)Dup, g2);
    icl_linear_backward(&Lup, a->dtmp, C, 0.0f, a->dup, Dup, a->ln2[l], C, N);
    norm_bwd(m, a->dres, G(m, o->ln2_w), G(m, o->ln2_b), a->dtmp, a->res2[l], P(m, o->ln2_w), a->m2[l], a->r2[l], N);
    /* attention */
    icl_linear Lo = lin(m, o->o_w, o->o_b, (int)Datt, C, g2);
    icl_linear_backward(&Lo, a->datt, Datt, 0.0f, a->dres, C, a->att[l], Datt, N);
    icl_attn_shape sh = {b->B, b->T, c->num_attention_heads, c->num_key_value_heads, c->head_dim,
                         Dqkv, 0, Datt, Datt + (long)c->num_key_value_heads * c->head_dim,
                         1.0f / sqrtf((float)c->head_dim)};
    icl_attention_backward(a->dqkv, a->datt, Datt, a->att[l], Datt, a->lse[l], a->qkv[l], b->doc, &sh);
    if (!g2) {
        icl_rope_apply(a->dqkv, Dqkv, N, c->num_attention_heads, c->head_dim, a->cos, a->sin, 1);
        icl_rope_apply(a->dqkv + Datt, Dqkv, N, c->num_key_value_heads, c->head_dim, a->cos, a->sin, 1);
    }
    icl_linear Lqkv = lin(m, o->qkv_w, o->qkv_b, C, (int)Dqkv, g2);
    icl_linear_backward(&Lqkv, a->dtmp, C, 0.0f, a->dqkv, Dqkv, a->ln1[l], C, N);
    norm_bwd(m, a->dres, G(m, o->ln1_w), G(m, o->ln1_b), a->dtmp, a->x[l], P(m, o->ln1_w), a->m1[l], a->r1[l], N);
}

/* Loss head over target rows, in chunks of at most min(T, hrows) rows:
 * logits = h W^T, cross-entropy, and (scale != 0) dh into dlnf,
 * dW += dlogits^T h.  T is the batch's (a->T and a->hrows come from the
 * buffers' capacity): the chunking, hence the rounding of dW, must not
 * depend on earlier, larger batches, or a resumed run would not be
 * bit-identical to an uninterrupted one. */
static double head_loss(icl_model *m, icl_acts *a, long nt, float scale, int Tb)
{
    const icl_config *c = &m->cfg;
    int C = c->hidden_size, V = c->vocab_size, T = Tb < a->hrows ? Tb : a->hrows;
    const float *W = P(m, m->lm_head);
    float *dW = scale != 0 ? G(m, m->lm_head) : NULL;
    double total = 0;
    for (long r0 = 0; r0 < nt; r0 += T) {
        int n = (int)(nt - r0 < T ? nt - r0 : T);
        for (int i = 0; i < n; i++)
            memcpy(a->hbuf + (size_t)i * C, a->lnf + (size_t)a->trow[r0 + i] * C, (size_t)C * sizeof(float));
        /* logits [n, V] = h [n, C] W^T, W [V, C] */
        icl_gemm(n, V, C, 1.0f, a->hbuf, C, 1, W, 1, C, 0.0f, a->lbuf, V, 1, 0);
        total += icl_xent_rows(a->lbuf, V, n, V, a->tlab + r0, a->tloss + r0, scale);
        if (scale != 0) {
            /* dh [n, C] = dlogits W, scattered to the target rows */
            icl_gemm(n, C, V, 1.0f, a->lbuf, V, 1, W, C, 1, 0.0f, a->hbuf, C, 1, 0);
            for (int i = 0; i < n; i++)
                memcpy(a->dlnf + (size_t)a->trow[r0 + i] * C, a->hbuf + (size_t)i * C, (size_t)C * sizeof(float));
            /* dW [V, C] += dlogits^T h: recompute h rows (hbuf now holds dh) */
            for (int i = 0; i < n; i++)
                memcpy(a->hbuf + (size_t)i * C, a->lnf + (size_t)a->trow[r0 + i] * C, (size_t)C * sizeof(float));
            icl_gemm(V, C, n, 1.0f, a->lbuf, 1, V, a->hbuf, C, 1, 1.0f, dW, C, 1, 0);
        }
    }
    return total;
}

double icl_model_forward(icl_model *m, const icl_batch *b, float *logits, float loss_scale, long *n_targets)
{
    char err[256];
    if (icl_batch_validate(m, b, err, sizeof err))
        die("model forward: %s", err);
    const icl_config *c = &m->cfg;
    int B = b->B, T = b->T, N = B * T, C = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers;
    if (loss_scale != 0)
        icl_model_alloc_grads(m);
    icl_acts *a = acts_get(m, B, T);
    for (int i = 0; i < N; i++)
        a->pos[i] = b->pos ? b->pos[i] : i % T;
    if (c->arch == ICL_ARCH_LLAMA) {
        icl_rope_params rp = rope_params(c);
        icl_rope_tables(a->cos, a->sin, a->pos, N, c->head_dim, &rp);
    }
    embed_forward(m, a->x[0], b->ids, a->pos, N);
    for (int l = 0; l < L; l++)
        block_forward(m, a, l, b);
    norm_fwd(m, a->lnf, a->mf, a->rf, a->x[L], P(m, m->normf_w), P(m, m->normf_b), N);
    /* target rows: position t predicts ids[t+1] when that token is a target of the same document */
    long nt = 0;
    for (int bb = 0; bb < B; bb++)
        for (int t = 0; t + 1 < T; t++) {
            long i = (long)bb * T + t;
            if ((!b->target || b->target[i + 1]) && (!b->doc || b->doc[i + 1] == b->doc[i])) {
                a->trow[nt] = (int32_t)i;
                a->tlab[nt++] = b->ids[i + 1];
            }
        }
    a->ntarg = nt;
    a->cur_n = (size_t)N;
    if (n_targets)
        *n_targets = nt;
    double loss = 0;
    if (loss_scale != 0)
        memset(a->dlnf, 0, (size_t)N * C * sizeof(float));
    a->fused = loss_scale != 0;
    if (logits) {
        icl_gemm(N, V, C, 1.0f, a->lnf, C, 1, P(m, m->lm_head), 1, C, 0.0f, logits, V, 1, 0);
        if (loss_scale == 0) {
            for (long r = 0; r < nt; r++) {
                const float *row = logits + (size_t)a->trow[r] * V;
                float mx = -INFINITY;
                for (int j = 0; j < V; j++)
                    mx = row[j] > mx ? row[j] : mx;
                double s = 0;
                for (int j = 0; j < V; j++)
                    s += exp((double)row[j] - mx);
                double l = mx + log(s) - row[a->tlab[r]];
                a->tloss[r] = (float)l;
                loss += l;
            }
            return loss;
        }
    }
    return head_loss(m, a, nt, loss_scale, T);
}

void icl_model_token_losses(const icl_model *m, float *loss)
{
    const icl_acts *a = m->acts;
    if (!a)
        die("model token losses: no forward before it");
    memset(loss, 0, a->cur_n * sizeof(float));
    for (long r = 0; r < a->ntarg; r++)
        loss[a->trow[r]] = a->tloss[r];
}

void icl_model_backward(icl_model *m, const icl_batch *b)
{
    icl_acts *a = m->acts;
    if (!a || !a->fused || a->B != b->B || a->T < b->T)
        die("model backward: no forward with loss_scale != 0 on this batch before it");
    const icl_config *c = &m->cfg;
    int N = b->B * b->T, L = c->num_hidden_layers;
    icl_model_alloc_grads(m);
    /* final norm: dres = dL/dx[L] */
    memset(a->dres, 0, (size_t)N * c->hidden_size * sizeof(float));
    norm_bwd(m, a->dres, G(m, m->normf_w), G(m, m->normf_b), a->dlnf, a->x[L], P(m, m->normf_w), a->mf, a->rf, N);
    for (int l = L - 1; l >= 0; l--)
        block_backward(m, a, l, b);
    embed_backward(m, a->dres, b->ids, a->pos, N);
    a->fused = 0;
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

int icl_model_decode(icl_model *m, icl_kv_cache *kc, const int32_t *ids, int n, float *logits, int all_logits,
                     char *err, size_t errsz)
{
    const icl_config *c = &m->cfg;
    int C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, L = c->num_hidden_layers,
        hd = c->head_dim, KV = c->num_key_value_heads, H = c->num_attention_heads, g2 = c->arch == ICL_ARCH_GPT2;
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
    long Dqkv, Dup, Datt;
    dims(c, &Dqkv, &Dup, &Datt);
    int p0 = kc->len, half = hd / 2;
    size_t nC = (size_t)n * C;
    float *buf = xmalloc((nC * 2 + (size_t)n * (Dqkv + Datt + Dup + I + 4 + 2 * half)) * sizeof(float));
    float *x = buf, *ln = x + nC, *qkv = ln + nC, *att = qkv + (size_t)n * Dqkv,
          *up = att + (size_t)n * Datt, *act = up + (size_t)n * Dup, *mean = act + (size_t)n * I, *rstd = mean + n,
          *cs = rstd + n, *sn = cs + (size_t)n * half;
    int32_t *pos = xmalloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++)
        pos[i] = p0 + i;
    if (!g2) {
        icl_rope_params rp = rope_params(c);
        icl_rope_tables(cs, sn, pos, n, hd, &rp);
    }
    embed_forward(m, x, ids, pos, n);
    for (int l = 0; l < L; l++) {
        const icl_layer_offsets *o = &m->layer[l];
        norm_fwd(m, ln, mean, rstd, x, P(m, o->ln1_w), P(m, o->ln1_b), n);
        icl_linear Lqkv = lin(m, o->qkv_w, o->qkv_b, C, (int)Dqkv, g2);
        icl_linear_forward(&Lqkv, qkv, Dqkv, ln, C, n, 0.0f);
        if (!g2) {
            icl_rope_apply(qkv, Dqkv, n, H, hd, cs, sn, 0);
            icl_rope_apply(qkv + Datt, Dqkv, n, KV, hd, cs, sn, 0);
        }
        size_t lo = (size_t)l * KV * kc->max_pos * hd;
        for (int i = 0; i < n; i++)
            for (int g = 0; g < KV; g++) {
                size_t at = lo + ((size_t)g * kc->max_pos + p0 + i) * hd;
                memcpy(kc->k + at, qkv + (size_t)i * Dqkv + Datt + (size_t)g * hd, (size_t)hd * sizeof(float));
                memcpy(kc->v + at, qkv + (size_t)i * Dqkv + Datt + (size_t)KV * hd + (size_t)g * hd,
                       (size_t)hd * sizeof(float));
            }
        icl_attention_cached(att, Datt, qkv, Dqkv, kc->k + lo, kc->v + lo, n, p0, kc->max_pos, H, KV, hd,
                             1.0f / sqrtf((float)hd));
        icl_linear Lo = lin(m, o->o_w, o->o_b, (int)Datt, C, g2);
        icl_linear_forward(&Lo, x, C, att, Datt, n, 1.0f);
        norm_fwd(m, ln, mean, rstd, x, P(m, o->ln2_w), P(m, o->ln2_b), n);
        icl_linear Lup = lin(m, o->up_w, o->up_b, C, (int)Dup, g2);
        icl_linear_forward(&Lup, up, Dup, ln, C, n, 0.0f);
        if (g2)
            icl_gelu_forward(act, up, (size_t)n * I);
        else
            icl_swiglu_forward(act, up, Dup, n, I);
        icl_linear Ldown = lin(m, o->down_w, o->down_b, I, C, g2);
        icl_linear_forward(&Ldown, x, C, act, I, n, 1.0f);
    }
    norm_fwd(m, ln, mean, rstd, x, P(m, m->normf_w), P(m, m->normf_b), n);
    const float *W = P(m, m->lm_head);
    if (all_logits)
        icl_gemm(n, V, C, 1.0f, ln, C, 1, W, 1, C, 0.0f, logits, V, 1, 0);
    else
        icl_gemm(1, V, C, 1.0f, ln + (size_t)(n - 1) * C, C, 1, W, 1, C, 0.0f, logits, V, 1, 0);
    kc->len += n;
    free(pos);
    free(buf);
    return 0;
}
