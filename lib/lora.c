/* lora.c - PEFT LoRA adapter folders: attaching, weights, merging (the
 * configuration is lora_config.c).  See lora.h. */
#include "lora.h"
#include "fileio.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "safetensors.h"
#include "util.h"

#define PREFIX "base_model.model."

static char *join2(const char *dir, const char *file)
{
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", file);
    return p;
}

/* ------------------------------------------------------------ attaching */

icl_param_set *icl_lora_attach(icl_model *m, const icl_lora_config *c, uint64_t seed, char *err, size_t errsz)
{
    if (!(c->lora_dropout >= 0 && c->lora_dropout < 1)) {
        icl_seterr(err, errsz, "LoRA dropout %g is not in [0, 1)", c->lora_dropout);
        return NULL;
    }
    const char *all[8];
    int n = 0;
    icl_lora_config tmp = {0};
    const char *const *targets = (const char *const *)c->target_modules;
    n = c->n_targets;
    if (n == 1 && !strcmp(c->target_modules[0], "all-linear")) {
        icl_lora_set_targets(&tmp, &m->cfg, "all-linear", NULL, 0);
        n = tmp.n_targets;
        for (int i = 0; i < n; i++)
            all[i] = tmp.target_modules[i];
        targets = all;
    }
    if (icl_model_set_lora_dropout(m, (float)c->lora_dropout, err, errsz))
        return NULL;
    icl_model_freeze_base(m);
    icl_param_set *s = icl_model_add_lora(m, targets, n, c->r, (float)c->lora_alpha, seed, err, errsz);
    icl_lora_config_free(&tmp);
    if (!s)
        return NULL;
    float scale = (float)icl_lora_scale(c);
    for (int l = 0; l < m->cfg.num_hidden_layers; l++)
        for (int p = 0; p < ICL_NPROJ; p++)
            for (int i = 0; i < m->lora[l].n[p]; i++)
                m->lora[l].lora[p][i].scale = scale;
    return s;
}

/* ------------------------------------------------------------ weights */

int icl_lora_load_weights(icl_model *m, const char *path, char *err, size_t errsz)
{
    icl_param_set *s = m->lora_set;
    if (!s) {
        icl_seterr(err, errsz, "the model has no adapters to load %s into", path);
        return -1;
    }
    struct stat sb;
    char *p = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? join2(path, "adapter_model.safetensors") : xstrdup(path);
    char e2[256];
    int rc = -1;
    icl_st_file *f = icl_st_open(p, e2, sizeof e2);
    if (!f) {
        icl_seterr(err, errsz, "%s", e2);
        goto out;
    }
    if (icl_st_count(f) != s->n_views) {
        icl_seterr(err, errsz, "%s: %d tensors, the adapters of these options have %d (other r or targets?)", p,
                   icl_st_count(f), s->n_views);
        goto out;
    }
    for (int i = 0; i < s->n_views; i++) {
        const icl_param_view *v = &s->views[i];
        const icl_st_tensor *t = icl_st_find(f, v->name);
        if (!t) {
            icl_seterr(err, errsz, "%s: no tensor %s", p, v->name);
            goto out;
        }
        if (t->ndim != 2 || t->shape[0] != v->shape[0] || t->shape[1] != v->shape[1]) {
            icl_seterr(err, errsz, "%s: %s has shape [%lld, %lld], want [%lld, %lld]", p, v->name,
                       (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0),
                       (long long)v->shape[0], (long long)v->shape[1]);
            goto out;
        }
        if (icl_st_read_f32(t, s->params + v->offset, v->numel, e2, sizeof e2)) {
            icl_seterr(err, errsz, "%s: %s", p, e2);
            goto out;
        }
    }
    rc = 0;
out:
    icl_st_close(f);
    free(p);
    return rc;
}


int icl_lora_save(const icl_model *m, const icl_lora_config *c, const char *dir, char *err, size_t errsz)
{
    const icl_param_set *s = m->lora_set;
    if (!s) {
        icl_seterr(err, errsz, "the model has no adapters to save");
        return -1;
    }
    if (icl_mkdirs(dir)) {
        icl_seterr(err, errsz, "%s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    char *txt = icl_lora_config_json(c, m->cfg.arch == ICL_ARCH_GPT2);
    char *cp = join2(dir, "adapter_config.json"), *wp = join2(dir, "adapter_model.safetensors");
    size_t len = strlen(txt);
    int rc = icl_write_file_atomic(cp, txt, len, err, errsz);
    free(txt);
    if (!rc) {
        icl_st_entry *e = xcalloc((size_t)s->n_views + 1, sizeof *e);
        for (int i = 0; i < s->n_views; i++) {
            const icl_param_view *v = &s->views[i];
            e[i].name = v->name;
            e[i].data = s->params + v->offset;
            e[i].ndim = 2;
            e[i].shape[0] = v->shape[0];
            e[i].shape[1] = v->shape[1];
        }
        rc = icl_st_write(wp, e, s->n_views, err, errsz);
        free(e);
    }
    free(cp);
    free(wp);
    return rc;
}

/* ------------------------------------------------------------ merging */

typedef struct {
    float *W;                /* base weight in its storage */
    int out, in, conv1d;
    const icl_st_tensor *A, *B;
} merge_item;

int icl_lora_merge(icl_model *m, const char *dir, double mult, char *err, size_t errsz)
{
    icl_lora_config c;
    if (icl_lora_read_config(dir, &c, err, errsz))
        return -1;
    char *p = join2(dir, "adapter_model.safetensors"), e2[256];
    icl_st_file *f = icl_st_open(p, e2, sizeof e2);
    int rc = -1, nt = 0, ni = 0;
    merge_item *items = NULL;
    if (!f) {
        icl_seterr(err, errsz, "%s", e2);
        goto out;
    }
    nt = icl_st_count(f);
    items = xcalloc((size_t)nt + 1, sizeof *items);
    /* check everything first: m is unchanged on any error */
    for (int i = 0; i < nt; i++) {
        const icl_st_tensor *t = icl_st_get(f, i);
        const char *nm = t->name;
        size_t n = strlen(nm);
        static const char sa[] = ".lora_A.weight", sb[] = ".lora_B.weight";
        size_t ls = sizeof sa - 1;
        int isA = n > ls && !strcmp(nm + n - ls, sa), isB = n > ls && !strcmp(nm + n - ls, sb);
        if (!isA && !isB) {
            icl_seterr(err, errsz, "%s: tensor %s is not a lora_A/lora_B weight (not supported)", p, nm);
            goto out;
        }
        if (isB)
            continue;
        if (strncmp(nm, PREFIX, strlen(PREFIX)) || n - ls - strlen(PREFIX) > 200) {
            icl_seterr(err, errsz, "%s: tensor %s does not start with " PREFIX, p, nm);
            goto out;
        }
        char mod[256], bn[288];
        snprintf(mod, sizeof mod, "%.*s", (int)(n - ls - strlen(PREFIX)), nm + strlen(PREFIX));
        snprintf(bn, sizeof bn, PREFIX "%s.lora_B.weight", mod);
        const icl_st_tensor *B = icl_st_find(f, bn);
        if (!B) {
            icl_seterr(err, errsz, "%s: %s has no %s", p, nm, bn);
            goto out;
        }
        snprintf(bn, sizeof bn, "%s.weight", mod);
        const icl_param_view *v = icl_model_view(m, bn);
        if (!v || v->ndim != 2) {
            icl_seterr(err, errsz, "%s: %s adapts %s, which the model does not have", p, nm, bn);
            goto out;
        }
        int conv1d = m->cfg.arch == ICL_ARCH_GPT2;
        int out = (int)(conv1d ? v->shape[1] : v->shape[0]), in = (int)(conv1d ? v->shape[0] : v->shape[1]);
        if (t->ndim != 2 || B->ndim != 2 || t->shape[1] != in || B->shape[0] != out || B->shape[1] != t->shape[0]) {
            icl_seterr(err, errsz, "%s: %s and lora_B have shapes that do not fit %s [out %d, in %d]", p, nm, bn, out,
                       in);
            goto out;
        }
        if (t->shape[0] != c.r) {
            icl_seterr(err, errsz, "%s: %s has rank %lld, adapter_config.json says r %d", p, nm,
                       (long long)t->shape[0], c.r);
            goto out;
        }
        items[ni++] = (merge_item){m->base.params + v->offset, out, in, conv1d, t, B};
    }
    if (2 * ni != nt) {
        icl_seterr(err, errsz, "%s: %d tensors are not lora_A/lora_B pairs", p, nt - 2 * ni);
        goto out;
    }
    float s = (float)(mult * icl_lora_scale(&c));
    int r = c.r;
    for (int k = 0; k < ni; k++) {
        merge_item *it = &items[k];
        float *A = xmalloc((size_t)r * it->in * sizeof *A), *B = xmalloc((size_t)it->out * r * sizeof *B);
        if (icl_st_read_f32(it->A, A, (size_t)r * it->in, e2, sizeof e2) ||
            icl_st_read_f32(it->B, B, (size_t)it->out * r, e2, sizeof e2)) {
            /* only reachable on a dtype the reader refuses: checked before any write would be better,
             * but the reader validates sizes at open time, so this is a dtype problem */
            free(A);
            free(B);
            icl_seterr(err, errsz, "%s: %s", p, e2);
            goto out;
        }
#pragma omp parallel for schedule(static)
        for (int o = 0; o < it->out; o++) {
            const float *b = B + (size_t)o * r;
            for (int i = 0; i < it->in; i++) {
                float d = 0;
                for (int j = 0; j < r; j++)
                    d += b[j] * A[(size_t)j * it->in + i];
                float *w = it->conv1d ? &it->W[(size_t)i * it->out + o] : &it->W[(size_t)o * it->in + i];
                *w += d * s;
            }
        }
        free(A);
        free(B);
    }
    rc = 0;
out:
    free(items);
    icl_st_close(f);
    free(p);
    icl_lora_config_free(&c);
    return rc;
}

/* ------------------------------------------------------------ specs and bases */

char *icl_lora_base_path(const char *dir, char *err, size_t errsz)
{
    icl_lora_config c;
    if (icl_lora_read_config(dir, &c, err, errsz))
        return NULL;
    char *b = c.base_model_name_or_path, *res = NULL;
    struct stat sb;
    if (!b)
        icl_seterr(err, errsz, "%s/adapter_config.json names no base_model_name_or_path: give -m BASE", dir);
    else if (stat(b, &sb) == 0)
        res = xstrdup(b);
    else if (b[0] != '/') {
        char *p = join2(dir, b);
        if (stat(p, &sb) == 0)
            res = p;
        else
            free(p);
    }
    if (b && !res)
        icl_seterr(err, errsz, "%s: the base model \"%s\" of adapter_config.json is not found (give -m BASE)", dir, b);
    icl_lora_config_free(&c);
    return res;
}

icl_model *icl_lora_load_merged(const char *model, const char *const *specs, int n_specs, char **base, char *err,
                                size_t errsz)
{
    *base = NULL;
    char *cfg = join2(model, "config.json"), *acfg = join2(model, "adapter_config.json"), e2[768];
    struct stat sb;
    int is_adapter = stat(cfg, &sb) != 0 && stat(acfg, &sb) == 0;
    free(cfg);
    free(acfg);
    char *b = is_adapter ? icl_lora_base_path(model, err, errsz) : xstrdup(model);
    if (!b)
        return NULL;
    icl_model *m = icl_model_load(b, e2, sizeof e2);
    if (!m) {
        icl_seterr(err, errsz, "%s: %s", b, e2);
        free(b);
        return NULL;
    }
    if (is_adapter && icl_lora_merge(m, model, 1.0, err, errsz))
        goto bad;
    for (int i = 0; i < n_specs; i++) {
        double sc;
        char *d = icl_lora_parse_spec(specs[i], &sc, err, errsz);
        if (!d)
            goto bad;
        int rc = icl_lora_merge(m, d, sc, err, errsz);
        free(d);
        if (rc)
            goto bad;
    }
    *base = b;
    return m;
bad:
    icl_model_free(m);
    free(b);
    return NULL;
}
