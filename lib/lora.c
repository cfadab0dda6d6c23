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

#include "gguf_model.h"
#include "safetensors.h"
#include "util.h"

#define PREFIX "base_model.model."
/* a tensor name longer than PREFIX + 200 + ".lora_A.weight": said before the
 * other messages, which it would cut before their reason */
#define LONG_NAME "%s: tensor %.60s... has a name of %zu bytes: no PEFT module name is that long (at most 200 bytes)"

/* A hint for an adapter that does not fit the model: most likely one of
 * another base, which its config names ("" when it names none). */
static const char *other_base(const icl_lora_config *c, char *buf, size_t n)
{
    if (!c->base_model_name_or_path || !*c->base_model_name_or_path)
        return "";
    snprintf(buf, n, " (an adapter of another base model? its adapter_config.json names %.400s)",
             c->base_model_name_or_path);
    return buf;
}

/* ------------------------------------------------------------ attaching */

static int target_selects(const char *target, const char *mod, size_t n);
static int layer_of(const char *name);
static int file_layers(const icl_st_file *f);

/* c's target_modules as "a, b, c" for a message, into list[n] (n > 8): a
 * list that does not fit ends in "..." after the last whole character. */
static void targets_list(const icl_lora_config *c, char *list, size_t n)
{
    size_t ll = 0;
    list[0] = 0;
    for (int i = 0; i < c->n_targets; i++) {
        const char *t = c->target_modules[i];
        size_t tl = strlen(t);
        if (ll + (i ? 2 : 0) + tl + 4 > n) { /* room for "..." and the NUL */
            size_t k = n - 4 - ll;
            if (i && k >= 3) { /* ", " and at least a byte of the name */
                memcpy(list + ll, ", ", 2);
                ll += 2;
                k -= 2;
            } else if (i) { /* "a..." rather than a name run into the last */
                k = 0;
            }
            size_t j = tl < k ? tl : k; /* whole UTF-8 sequences only: back to the lead byte that does not fit */
            while (j > 0 && j < tl && ((unsigned char)t[j] & 0xC0) == 0x80)
                j--;
            memcpy(list + ll, t, j);
            memcpy(list + ll + j, "...", 4);
            return;
        }
        ll += (size_t)snprintf(list + ll, n - ll, "%s%s", i ? ", " : "", t);
    }
}

/* icl_lora_attach (peft 0) and icl_lora_attach_peft (peft 1) */
static icl_param_set *attach(icl_model *m, const icl_lora_config *c, uint64_t seed, int peft, char *err,
                             size_t errsz)
{
    if (!(c->lora_dropout >= 0 && c->lora_dropout < 1)) {
        icl_seterr(err, errsz, "LoRA dropout %g is not in [0, 1)", c->lora_dropout);
        return NULL;
    }
    icl_lora_config tmp = {0};
    const char **targets = xcalloc((size_t)c->n_targets + 8, sizeof *targets);
    int n = 0;
    if (c->n_targets == 1 && !strcmp(c->target_modules[0], "all-linear")) {
        icl_lora_set_targets(&tmp, &m->cfg, "all-linear", NULL, 0);
        for (int i = 0; i < tmp.n_targets; i++)
            targets[n++] = tmp.target_modules[i];
    } else {
        int nm = 0;
        char **mods = peft ? icl_config_modules(&m->cfg, &nm) : NULL;
        for (int i = 0; i < c->n_targets; i++) {
            int hit = !peft; /* PEFT: a name that selects none of the model's modules is left out */
            for (int k = 0; k < nm && !hit; k++)
                hit = target_selects(c->target_modules[i], mods[k], strlen(mods[k]));
            if (hit)
                targets[n++] = c->target_modules[i];
        }
        for (int k = 0; k < nm; k++)
            free(mods[k]);
        free(mods);
    }
    icl_param_set *s = NULL;
    if (!n) {
        char list[256];
        targets_list(c, list, sizeof list);
        icl_seterr(err, errsz, "target_modules [%s] select no module of this %s model", list, m->cfg.model_type);
    } else if (!icl_model_set_lora_dropout(m, (float)c->lora_dropout, err, errsz)) {
        icl_model_freeze_base(m);
        s = icl_model_add_lora(m, targets, n, c->r, (float)c->lora_alpha, seed, err, errsz);
    }
    icl_lora_config_free(&tmp);
    free(targets);
    if (!s)
        return NULL;
    float scale = (float)icl_lora_scale(c);
    for (int l = 0; l < m->cfg.num_hidden_layers; l++)
        for (int p = 0; p < ICL_NPROJ; p++)
            for (int i = 0; i < m->lora[l].n[p]; i++)
                m->lora[l].lora[p][i].scale = scale;
    return s;
}

icl_param_set *icl_lora_attach(icl_model *m, const icl_lora_config *c, uint64_t seed, char *err, size_t errsz)
{
    return attach(m, c, seed, 0, err, errsz);
}

icl_param_set *icl_lora_attach_peft(icl_model *m, const icl_lora_config *c, uint64_t seed, char *err, size_t errsz)
{
    return attach(m, c, seed, 1, err, errsz);
}

/* ------------------------------------------------------------ weights */

/* PEFT's match of a module path against one target_modules entry: equal,
 * or ending in "." target.  n: the length of mod. */
static int target_selects(const char *target, const char *mod, size_t n)
{
    size_t t = strlen(target);
    return t <= n && !memcmp(mod + n - t, target, t) && (t == n || mod[n - t - 1] == '.');
}

int icl_lora_check_targets(const icl_lora_config *c, const icl_config *mc, const icl_st_file *f, const char *path,
                           char *err, size_t errsz)
{
    static const char sa[] = ".lora_A.weight", sb[] = ".lora_B.weight";
    const size_t ls = sizeof sa - 1, lp = strlen(PREFIX);
    icl_lora_config all = {0};
    const icl_lora_config *t = c;
    if (c->n_targets == 1 && !strcmp(c->target_modules[0], "all-linear")) {
        icl_lora_set_targets(&all, mc, "all-linear", NULL, 0);
        t = &all;
    }
    char list[256]; /* for the messages: the targets, cut to fit */
    targets_list(c, list, sizeof list);
    int rc = -1, nm = 0;
    char **mods = NULL;
    for (int i = 0; i < icl_st_count(f); i++) {
        const char *name = icl_st_get(f, i)->name;
        size_t n = strlen(name);
        if (n > lp + 200 + ls) {
            icl_seterr(err, errsz, LONG_NAME, path, name, n);
            goto out;
        }
        if (n < lp + ls + 1 || strncmp(name, PREFIX, lp) || (strcmp(name + n - ls, sa) && strcmp(name + n - ls, sb)))
            continue; /* not a lora_A/lora_B weight: the callers refuse such names */
        int hit = 0;
        for (int k = 0; k < t->n_targets && !hit; k++)
            hit = target_selects(t->target_modules[k], name + lp, n - lp - ls);
        if (!hit) {
            icl_seterr(err, errsz, "%s: tensor %s adapts %.*s, which adapter_config.json's target_modules [%s] do "
                       "not select: PEFT would not load it (the weights and the config of different adapters?)",
                       path, name, (int)(n - lp - ls), name + lp, list);
            goto out;
        }
    }
    mods = icl_config_modules(mc, &nm);
    for (int i = 0; i < nm; i++) {
        int hit = 0;
        for (int k = 0; k < t->n_targets && !hit; k++)
            hit = target_selects(t->target_modules[k], mods[i], strlen(mods[i]));
        for (int ab = 0; hit && ab < 2; ab++) {
            char tn[320];
            snprintf(tn, sizeof tn, PREFIX "%.200s%s", mods[i], ab ? sb : sa);
            if (!icl_st_find(f, tn)) {
                char mb[500], why[640];
                int nl = file_layers(f);
                const char *ob = other_base(c, mb, sizeof mb);
                if (nl > 0 && layer_of(mods[i]) >= nl) /* the file stops below this layer: cut short, or a shallower model's */
                    snprintf(why, sizeof why, ": its adapters cover %d layer%s, this model has %d (a truncated file, "
                             "or an adapter of another base model?%s%s)", nl, nl > 1 ? "s" : "",
                             mc->num_hidden_layers, *ob ? " its adapter_config.json names " : "",
                             *ob ? c->base_model_name_or_path : "");
                else
                    snprintf(why, sizeof why, " (a truncated file, or the config of another adapter?)%s", ob);
                icl_seterr(err, errsz, "%s: no tensor %s: adapter_config.json's target_modules [%s] select %s, "
                           "whose adapter the file lacks%s", path, tn, list, mods[i], why);
                goto out;
            }
        }
    }
    rc = 0;
out:
    for (int i = 0; i < nm; i++)
        free(mods[i]);
    free(mods);
    icl_lora_config_free(&all);
    return rc;
}

icl_st_file *icl_lora_open_weights(const char *dir, char *err, size_t errsz)
{
    char *p = icl_path_join(dir, "adapter_model.safetensors"), *bin = icl_path_join(dir, "adapter_model.bin");
    icl_st_file *f = NULL;
    struct stat sb;
    if (stat(p, &sb) != 0 && errno == ENOENT && stat(bin, &sb) == 0)
        icl_seterr(err, errsz, "%s: no adapter_model.safetensors, only adapter_model.bin: PyTorch pickles are not "
                   "read (loading one can run code); save the adapter with safe_serialization=True (PEFT's "
                   "default since 0.6)", dir);
    else
        f = icl_st_open(p, err, errsz);
    free(p);
    free(bin);
    return f;
}

int icl_lora_tensor_kind(const char *path, const char *name, const char **mod, size_t *modlen, char *err,
                         size_t errsz)
{
    static const char sa[] = ".lora_A.weight", sb[] = ".lora_B.weight";
    const size_t ls = sizeof sa - 1, lp = strlen(PREFIX), n = strlen(name);
    int isA = n > ls && !strcmp(name + n - ls, sa), isB = n > ls && !strcmp(name + n - ls, sb);
    if (n > lp + 200 + ls)
        return icl_seterr(err, errsz, LONG_NAME, path, name, n), -1;
    if (!isA && !isB)
        return icl_seterr(err, errsz, "%s: tensor %s is not a lora_A/lora_B weight (not supported)", path, name), -1;
    if (isB)
        return 2;
    if (n < lp + ls + 1 || strncmp(name, PREFIX, lp)) /* a module between */
        return icl_seterr(err, errsz, "%s: tensor %s does not start with " PREFIX " and a module name", path, name), -1;
    *mod = name + lp;
    *modlen = n - lp - ls;
    return 1;
}

int icl_lora_check_dir(const char *dir, const icl_config *mc, char *err, size_t errsz)
{
    icl_lora_config c;
    if (icl_lora_read_config(dir, &c, err, errsz))
        return -1;
    char *p = icl_path_join(dir, "adapter_model.safetensors"), e2[512];
    icl_st_file *f = icl_lora_open_weights(dir, e2, sizeof e2);
    int rc = -1;
    if (!f)
        icl_seterr(err, errsz, "%s", e2);
    else
        rc = icl_lora_check_targets(&c, mc, f, p, err, errsz);
    /* the rank the config gives is the tensors': a caller sizes buffers by it */
    for (int i = 0; rc == 0 && i < icl_st_count(f); i++) {
        const icl_st_tensor *t = icl_st_get(f, i);
        size_t n = strlen(t->name);
        int a = n >= 13 && !strcmp(t->name + n - 13, "lora_A.weight"), b = n >= 13 && !strcmp(t->name + n - 13, "lora_B.weight");
        if ((a || b) && t->ndim != 2) {
            icl_seterr(err, errsz, "%s: %s has %d dimensions, not 2 (lora_A [r, in], lora_B [out, r])", p, t->name,
                       t->ndim);
            rc = -1;
        } else if ((a || b) && t->shape[a ? 0 : 1] != c.r) {
            icl_seterr(err, errsz, "%s: %s has rank %lld, adapter_config.json says r %d", p, t->name,
                       (long long)t->shape[a ? 0 : 1], c.r);
            rc = -1;
        }
    }
    icl_st_close(f);
    free(p);
    icl_lora_config_free(&c);
    return rc;
}

/* The layer index N of a tensor or module named "...layers.N...." (Llama,
 * Qwen2) or "...h.N...." (GPT-2's transformer.h.N), or -1. */
static int layer_of(const char *name)
{
    const char *q = strstr(name, "layers."), *d = q ? q + 7 : NULL;
    for (q = name; !d && (q = strstr(q, "h.")); q += 2)
        if ((q == name || q[-1] == '.') && q[2] >= '0' && q[2] <= '9')
            d = q + 2;
    if (!d || *d < '0' || *d > '9')
        return -1;
    long n = strtol(d, NULL, 10);
    return n > 100000 ? 100000 : (int)n;
}

/* The layers an adapter file covers: 1 + its largest layer_of, or 0 when no
 * tensor names a layer. */
static int file_layers(const icl_st_file *f)
{
    int top = -1;
    for (int i = 0; i < icl_st_count(f); i++) {
        int l = layer_of(icl_st_get(f, i)->name);
        top = l > top ? l : top;
    }
    return top + 1;
}

/* Why an adapter file does not hold this model's adapters (its tensor count
 * differs): the layers it covers against the model's, else the first tensor
 * one side has and the other lacks. */
static void describe_mismatch(const icl_st_file *f, const icl_param_set *s, int layers, const char *p, char *err,
                              size_t errsz)
{
    int nf = icl_st_count(f), nl = file_layers(f);
    if (nl > 0 && nl != layers) {
        icl_seterr(err, errsz,
                   "%s: adapters for %d layers, this model has %d: trained on another base model? (%d tensors, "
                   "these options want %d)", p, nl, layers, nf, s->n_views);
        return;
    }
    for (int i = 0; i < s->n_views; i++)
        if (!icl_st_find(f, s->views[i].name)) {
            icl_seterr(err, errsz, "%s: %d tensors, these options want %d: no tensor %s (adapter_config.json's "
                       "target_modules or r do not match the weights?)", p, nf, s->n_views, s->views[i].name);
            return;
        }
    for (int i = 0; i < nf; i++) {
        const char *name = icl_st_get(f, i)->name;
        int known = 0;
        for (int j = 0; j < s->n_views && !known; j++)
            known = !strcmp(s->views[j].name, name);
        if (!known) {
            icl_seterr(err, errsz, "%s: %d tensors, these options want %d: %s is not one of this model's adapters "
                       "(adapter_config.json's target_modules do not match the weights?)", p, nf, s->n_views, name);
            return;
        }
    }
    icl_seterr(err, errsz, "%s: %d tensors, these options want %d (a name given twice?)", p, nf, s->n_views);
}

double icl_lora_max_abs(const float *v, size_t n)
{
    double mx = 0;
    for (size_t j = 0; j < n && isfinite(mx); j++) {
        double x = fabs(v[j]);
        if (!(x <= mx)) /* larger, or NaN */
            mx = isnan(x) ? INFINITY : x;
    }
    return mx;
}

/* Lay out again (icl_lora_pack) m's adapters that are laid out (all: every
 * adapter), after their A and B were written. */
static void lora_repack(icl_model *m, int all)
{
    for (int l = 0; m->lora && l < m->cfg.num_hidden_layers; l++)
        for (int p = 0; p < ICL_NPROJ; p++)
            for (int q = 0; q < m->lora[l].n[p]; q++)
                if (all || m->lora[l].lora[p][q].At)
                    icl_lora_pack(&m->lora[l].lora[p][q]);
}

int icl_lora_load_weights(icl_model *m, const char *path, char *err, size_t errsz)
{
    icl_param_set *s = m->lora_set;
    if (!s) {
        icl_seterr(err, errsz, "the model has no adapters to load %s into", path);
        return -1;
    }
    struct stat sb;
    int isdir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    char *p = isdir ? icl_path_join(path, "adapter_model.safetensors") : xstrdup(path);
    char e2[256];
    int rc = -1;
    icl_st_file *f = icl_st_open(p, e2, sizeof e2);
    if (!f) {
        icl_seterr(err, errsz, "%s", e2);
        goto out;
    }
    if (icl_st_count(f) != s->n_views) {
        describe_mismatch(f, s, m->cfg.num_hidden_layers, p, err, errsz);
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
            /* the names fit and a width does not: another model of this depth
             * (its config, when path is the folder, names the base) */
            icl_lora_config c;
            char mb[600], ce[64];
            const char *hint = t->ndim != 2 ? "" : " (an adapter of another base model?)";
            if (*hint && isdir && !icl_lora_read_config(path, &c, ce, sizeof ce)) {
                if (*other_base(&c, mb, sizeof mb))
                    hint = mb;
                icl_lora_config_free(&c);
            }
            icl_seterr(err, errsz, "%s: %s has shape [%lld, %lld], want [%lld, %lld]%s", p, v->name,
                       (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0),
                       (long long)v->shape[0], (long long)v->shape[1], hint);
            goto out;
        }
        if (icl_st_read_f32(t, s->params + v->offset, v->numel, e2, sizeof e2)) {
            icl_seterr(err, errsz, "%s: %s", p, e2);
            goto out;
        }
    }
    /* as icl_lora_merge: finite values, and updates that stay finite */
    for (int l = 0; m->lora && l < m->cfg.num_hidden_layers; l++)
        for (int q = 0; q < ICL_NPROJ; q++)
            for (int i = 0; i < m->lora[l].n[q]; i++) {
                const icl_lora *a = &m->lora[l].lora[q][i];
                double mx[2] = {icl_lora_max_abs(a->A, (size_t)a->r * a->in),
                                icl_lora_max_abs(a->B, (size_t)a->out * a->r)};
                double bound = fabs((double)a->scale) * a->r * mx[0] * mx[1];
                if (isfinite(mx[0]) && isfinite(mx[1]) && bound <= ICL_LORA_MAX_UPDATE)
                    continue;
                const char *nm = "?";
                for (int j = 0; j < s->n_views; j++)
                    if (s->params + s->views[j].offset == (isfinite(mx[0]) ? a->B : a->A))
                        nm = s->views[j].name;
                if (!isfinite(mx[0]) || !isfinite(mx[1]))
                    icl_seterr(err, errsz, "%s: %s holds values that are not finite", p, nm);
                else
                    icl_seterr(err, errsz, "%s: %s and its lora_A make updates of up to %g at scale %g "
                               "(lora_alpha over r), beyond %g, where float32 activations overflow", p, nm, bound,
                               (double)a->scale, ICL_LORA_MAX_UPDATE);
                goto out;
            }
    rc = 0;
out:
    lora_repack(m, 0); /* adapters laid out before (icl_lora_apply's) follow what was read */
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
    char *cp = icl_path_join(dir, "adapter_config.json"), *wp = icl_path_join(dir, "adapter_model.safetensors");
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
    char *p = icl_path_join(dir, "adapter_model.safetensors"), e2[512];
    icl_st_file *f = icl_lora_open_weights(dir, e2, sizeof e2);
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
        const char *nm = t->name, *mp;
        size_t ml;
        int kind = icl_lora_tensor_kind(p, nm, &mp, &ml, err, errsz);
        if (kind < 0)
            goto out;
        if (kind == 2)
            continue;
        char mod[256], bn[288], mb[600];
        snprintf(mod, sizeof mod, "%.*s", (int)ml, mp);
        snprintf(bn, sizeof bn, PREFIX "%s.lora_B.weight", mod);
        const icl_st_tensor *B = icl_st_find(f, bn);
        if (!B) {
            icl_seterr(err, errsz, "%s: %s has no %s", p, nm, bn);
            goto out;
        }
        snprintf(bn, sizeof bn, "%s.weight", mod);
        const icl_param_view *v = icl_model_view(m, bn);
        if (!v || v->ndim != 2) {
            icl_seterr(err, errsz, "%s: %s adapts %s, which the model does not have%s", p, nm, bn,
                       other_base(&c, mb, sizeof mb));
            goto out;
        }
        int conv1d = m->cfg.arch == ICL_ARCH_GPT2;
        int out = (int)(conv1d ? v->shape[1] : v->shape[0]), in = (int)(conv1d ? v->shape[0] : v->shape[1]);
        if (t->ndim != 2 || B->ndim != 2 || t->shape[1] != in || B->shape[0] != out || B->shape[1] != t->shape[0]) {
            icl_seterr(err, errsz, "%s: %s and lora_B have shapes that do not fit %s [out %d, in %d]%s", p, nm, bn,
                       out, in, other_base(&c, mb, sizeof mb));
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
    if (icl_lora_check_targets(&c, &m->cfg, f, p, err, errsz))
        goto out;
    float s = (float)(mult * icl_lora_scale(&c));
    int r = c.r;
    /* finite values, and updates that stay finite (|s B A| <= |s| r max|B| max|A|), before anything is written */
    double bound = 0;
    for (int k = 0; k < ni && isfinite(s); k++) {
        const icl_st_tensor *ts[2] = {items[k].A, items[k].B};
        double mx[2] = {0, 0};
        for (int q = 0; q < 2; q++) {
            size_t n = (size_t)ts[q]->numel;
            float *v = xmalloc(n * sizeof *v);
            if (icl_st_read_f32(ts[q], v, n, e2, sizeof e2)) {
                free(v);
                icl_seterr(err, errsz, "%s: %s", p, e2);
                goto out;
            }
            mx[q] = icl_lora_max_abs(v, n);
            free(v);
            if (!isfinite(mx[q])) {
                icl_seterr(err, errsz, "%s: %s holds values that are not finite", p, ts[q]->name);
                goto out;
            }
        }
        double b = fabs((double)s) * r * mx[0] * mx[1];
        bound = b > bound ? b : bound;
    }
    if (!isfinite(s) || bound > ICL_LORA_MAX_UPDATE) {
        icl_seterr(err, errsz, "%s: lora_alpha %g over r %d (times %g) makes updates of up to %g, beyond %g, where "
                   "float32 activations overflow", dir, c.lora_alpha, c.r, mult, isfinite(s) ? bound : (double)s,
                   ICL_LORA_MAX_UPDATE);
        goto out;
    }
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
        /* W[o, i] += s (B A)[o, i], each (B A)[o, i] summed over j in order
         * from 0: row o of B A built a row of A at a time (A's rows
         * contiguous, not one column walk per element) */
#pragma omp parallel
        {
            float *d = xmalloc((size_t)it->in * sizeof *d);
#pragma omp for schedule(static)
            for (int o = 0; o < it->out; o++) {
                const float *b = B + (size_t)o * r;
                memset(d, 0, (size_t)it->in * sizeof *d);
                for (int j = 0; j < r; j++) {
                    const float bj = b[j], *a = A + (size_t)j * it->in;
                    for (int i = 0; i < it->in; i++)
                        d[i] += bj * a[i];
                }
                for (int i = 0; i < it->in; i++) {
                    float *w = it->conv1d ? &it->W[(size_t)i * it->out + o] : &it->W[(size_t)o * it->in + i];
                    *w += d[i] * s;
                }
            }
            free(d);
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

/* s for a message: its first 200 bytes and "...", so that a path of a
 * megabyte does not cut the message before its reason */
static const char *shortened(char buf[208], const char *s)
{
    snprintf(buf, 208, "%.200s%s", s, strlen(s) > 200 ? "..." : "");
    return buf;
}

char *icl_lora_base_path(const char *dir, char *err, size_t errsz)
{
    icl_lora_config c;
    if (icl_lora_read_config(dir, &c, err, errsz))
        return NULL;
    char *b = c.base_model_name_or_path, *res = NULL, *cfg = icl_path_join(dir, "adapter_config.json");
    char sh1[208], sh2[208];
    struct stat sb;
    if (!b || !*b) {
        icl_seterr(err, errsz, "%s names no base_model_name_or_path: give the base, -m BASE --adapter %s", cfg, dir);
    } else if (stat(b, &sb) == 0) {
        res = xstrdup(b);
    } else if (b[0] == '/') {
        icl_seterr(err, errsz, "%s: the base model \"%s\" (base_model_name_or_path) does not exist: give it, -m BASE "
                               "--adapter %s", cfg, shortened(sh1, b), dir);
    } else {
        char *p = icl_path_join(dir, b);
        if (stat(p, &sb) == 0) {
            res = p;
        } else {
            icl_seterr(err, errsz, "%s: the base model \"%s\" (base_model_name_or_path) is neither %s (from the "
                                   "current folder) nor %s (from the adapter's; icl reads no Hugging Face hub ids): "
                                   "give it, -m BASE --adapter %s", cfg, shortened(sh1, b), shortened(sh1, b),
                       shortened(sh2, p), dir);
            free(p);
        }
    }
    free(cfg);
    icl_lora_config_free(&c);
    return res;
}

/* One adapter folder's tensors, checked: ni lora_A/lora_B pairs. */
typedef struct {
    char *path;                /* DIR/adapter_model.safetensors */
    icl_st_file *f;
    icl_lora_config c;
    int ni;
    const icl_st_tensor **A, **B;
    int *tix;                  /* [ni] pair k adapts module tix[k] of icl_lora_apply's targets */
} unmerged_src;

static void unmerged_free(unmerged_src *u)
{
    icl_st_close(u->f);
    free(u->path);
    free(u->A);
    free(u->B);
    free(u->tix);
    icl_lora_config_free(&u->c);
}

/* Open dir's adapter and pair its tensors (the checks of icl_lora_merge
 * that do not need the base's float weights). */
static int unmerged_open(unmerged_src *u, const char *dir, char *err, size_t errsz)
{
    memset(u, 0, sizeof *u);
    if (icl_lora_read_config(dir, &u->c, err, errsz))
        return -1;
    u->path = icl_path_join(dir, "adapter_model.safetensors");
    char e2[512];
    if (!(u->f = icl_lora_open_weights(dir, e2, sizeof e2))) {
        icl_seterr(err, errsz, "%s", e2);
        return -1;
    }
    int nt = icl_st_count(u->f);
    u->A = xcalloc((size_t)nt + 1, sizeof *u->A);
    u->B = xcalloc((size_t)nt + 1, sizeof *u->B);
    for (int i = 0; i < nt; i++) {
        const icl_st_tensor *t = icl_st_get(u->f, i);
        const char *nm = t->name, *mp;
        size_t ml;
        int kind = icl_lora_tensor_kind(u->path, nm, &mp, &ml, err, errsz);
        if (kind < 0)
            return -1;
        if (kind == 2)
            continue;
        char bn[288];
        snprintf(bn, sizeof bn, PREFIX "%.*s.lora_B.weight", (int)ml, mp);
        const icl_st_tensor *B = icl_st_find(u->f, bn);
        if (!B) {
            icl_seterr(err, errsz, "%s: %s has no %s", u->path, nm, bn);
            return -1;
        }
        if (t->ndim != 2 || B->ndim != 2 || B->shape[1] != t->shape[0] || t->shape[0] != u->c.r) {
            icl_seterr(err, errsz, "%s: %s and its lora_B are not [r %d, in] and [out, r %d]", u->path, nm, u->c.r,
                       u->c.r);
            return -1;
        }
        u->A[u->ni] = t;
        u->B[u->ni++] = B;
    }
    if (2 * u->ni != nt) {
        icl_seterr(err, errsz, "%s: %d tensors are not lora_A/lora_B pairs", u->path, nt - 2 * u->ni);
        return -1;
    }
    return 0;
}

static const icl_param_view *set_view(const icl_param_set *s, const char *name)
{
    for (int i = 0; i < s->n_views; i++)
        if (!strcmp(s->views[i].name, name))
            return &s->views[i];
    return NULL;
}

int icl_lora_apply(icl_model *m, const char *const *dirs, const double *mults, int n, char *err, size_t errsz)
{
    if (n < 1)
        return 0;
    if (m->lora) {
        icl_seterr(err, errsz, "the model has adapters already");
        return -1;
    }
    unmerged_src *u = xcalloc((size_t)n, sizeof *u);
    const char **tg = NULL;
    int ntg = 0, rc = -1, nmod = 0, *rk = NULL, *fill = NULL; /* per target: the ranks on it; rows filled */
    char **mods = icl_config_modules(&m->cfg, &nmod);
    json_t *modset = json_object(); /* the model's modules: an adapter's 10^5 others are no quadratic search */
    for (int j = 0; j < nmod; j++)
        json_object_set_new(modset, mods[j], json_null());
    for (int i = 0; i < n; i++) {
        if (unmerged_open(&u[i], dirs[i], err, errsz))
            goto out;
        u[i].tix = xcalloc((size_t)u[i].ni + 1, sizeof *u[i].tix);
        for (int k = 0; k < u[i].ni; k++) { /* targets: the modules the files adapt, by their whole names */
            const char *nm = u[i].A[k]->name, *end = nm + strlen(nm) - strlen(".lora_A.weight");
            const char *mod = nm + strlen(PREFIX), *lf = mod; /* the module: its whole name */
            if (!json_object_getn(modset, mod, (size_t)(end - mod))) {
                icl_seterr(err, errsz, "%s: %s adapts %.*s, which the model does not have", u[i].path, nm,
                           (int)(end - mod), mod);
                goto out;
            }
            int seen = -1;
            for (int j = 0; j < ntg && seen < 0; j++)
                if (strlen(tg[j]) == (size_t)(end - lf) && !strncmp(tg[j], lf, (size_t)(end - lf)))
                    seen = j;
            if (seen < 0) {
                tg = xreallocarray(tg, (size_t)ntg + 1, sizeof *tg);
                rk = xreallocarray(rk, (size_t)ntg + 1, sizeof *rk);
                char *c = xmalloc((size_t)(end - lf) + 1);
                memcpy(c, lf, (size_t)(end - lf));
                c[end - lf] = 0;
                rk[ntg] = 0;
                tg[seen = ntg++] = c;
            }
            u[i].tix[k] = seen;
            rk[seen] += u[i].c.r; /* r <= 65536 (adapter_config.json), a module at most once a file */
        }
        /* after the modules are known to be the model's: tensors x targets stays small */
        if (icl_lora_check_targets(&u[i].c, &m->cfg, u[i].f, u[i].path, err, errsz))
            goto out;
    }
    if (!ntg) { /* adapters without tensors change nothing */
        rc = 0;
        goto out;
    }
    char e2[256];
    /* each module's rank: the sum of the ranks of the adapters on it, not of
     * all (an adapter of one module and rank 65536 enlarges that one); scale
     * 1: the weights carry mult * scaling */
    icl_param_set *s = icl_model_add_lora_ranked(m, tg, rk, ntg, e2, sizeof e2);
    if (!s) {
        icl_seterr(err, errsz, "%s: %s (such adapters apply only merged into float32 weights)", dirs[0], e2);
        goto out;
    }
    s->trainable = 0;
    memset(s->params, 0, s->num_params * sizeof *s->params);
    fill = xcalloc((size_t)ntg, sizeof *fill); /* a module's rank rows [fill, fill + r) are the next adapter's */
    for (int i = 0; i < n; i++) {
        int r = u[i].c.r;
        float sc = (float)(mults[i] * icl_lora_scale(&u[i].c));
        for (int k = 0; k < u[i].ni; k++) {
            const icl_st_tensor *A = u[i].A[k], *B = u[i].B[k];
            const icl_param_view *va = set_view(s, A->name), *vb = set_view(s, B->name);
            if (!va || !vb) {
                char mb[600];
                icl_seterr(err, errsz, "%s: %s adapts a module the model does not have%s", u[i].path, A->name,
                           other_base(&u[i].c, mb, sizeof mb));
                goto out;
            }
            int in = (int)va->shape[1], out = (int)vb->shape[0];
            if (A->shape[1] != in || B->shape[0] != out) {
                char mb[600];
                icl_seterr(err, errsz, "%s: %s and lora_B have shapes that do not fit the module [out %d, in %d]%s",
                           u[i].path, A->name, out, in, other_base(&u[i].c, mb, sizeof mb));
                goto out;
            }
            float *a = xmalloc((size_t)r * in * sizeof *a), *b = xmalloc((size_t)out * r * sizeof *b);
            if (icl_st_read_f32(A, a, (size_t)r * in, e2, sizeof e2) ||
                icl_st_read_f32(B, b, (size_t)out * r, e2, sizeof e2)) {
                free(a);
                free(b);
                icl_seterr(err, errsz, "%s: %s", u[i].path, e2);
                goto out;
            }
            /* as icl_lora_merge: finite values, and updates that stay finite */
            double mx[2] = {icl_lora_max_abs(a, (size_t)r * in), icl_lora_max_abs(b, (size_t)out * r)};
            double bound = fabs((double)sc) * r * mx[0] * mx[1];
            if (!isfinite(mx[0]) || !isfinite(mx[1]) || !isfinite(sc) || bound > ICL_LORA_MAX_UPDATE) {
                if (!isfinite(mx[0]) || !isfinite(mx[1]))
                    icl_seterr(err, errsz, "%s: %s holds values that are not finite", u[i].path,
                               isfinite(mx[0]) ? B->name : A->name);
                else
                    icl_seterr(err, errsz, "%s: lora_alpha %g over r %d (times %g) makes updates of up to %g, "
                               "beyond %g, where float32 activations overflow", dirs[i], u[i].c.lora_alpha, r,
                               mults[i], isfinite(sc) ? bound : (double)sc, ICL_LORA_MAX_UPDATE);
                free(a);
                free(b);
                goto out;
            }
            float *dA = s->params + va->offset, *dB = s->params + vb->offset;
            int Rm = (int)va->shape[0], off = fill[u[i].tix[k]]; /* the module's rank: its adapters' */
            memcpy(dA + (size_t)off * in, a, (size_t)r * in * sizeof *a);
            for (int o = 0; o < out; o++)
                for (int j = 0; j < r; j++)
                    dB[(size_t)o * Rm + off + j] = sc * b[(size_t)o * r + j];
            fill[u[i].tix[k]] += r;
            free(a);
            free(b);
        }
    }
    lora_repack(m, 1); /* frozen from here on: A and B laid out once for the products */
    rc = 0;
out:
    for (int i = 0; i < n; i++)
        unmerged_free(&u[i]);
    free(u);
    for (int j = 0; j < ntg; j++)
        free((char *)tg[j]);
    free(tg);
    free(rk);
    free(fill);
    for (int j = 0; j < nmod; j++)
        free(mods[j]);
    free(mods);
    json_decref(modset);
    return rc;
}

icl_model *icl_lora_load(const char *model, const char *const *specs, int n_specs, int flags, char **base, char *err,
                         size_t errsz)
{
    *base = NULL;
    char *cfg = icl_path_join(model, "config.json"), *acfg = icl_path_join(model, "adapter_config.json"), e2[768];
    struct stat sb;
    int is_adapter = stat(cfg, &sb) != 0 && stat(acfg, &sb) == 0;
    free(cfg);
    free(acfg);
    char *b = is_adapter ? icl_lora_base_path(model, err, errsz) : xstrdup(model);
    if (!b)
        return NULL;
    int quant = !(flags & ICL_LOAD_DEQUANTIZE) && icl_is_gguf_file(b);
    icl_model *m = quant ? icl_model_load_gguf_quantized(b, e2, sizeof e2) : icl_model_load(b, e2, sizeof e2);
    if (!m) {
        if (is_adapter) /* the loader names the file; say where its path came from */
            icl_seterr(err, errsz, "%s (the base model of adapter %s, its adapter_config.json's "
                       "base_model_name_or_path)", e2, model);
        else
            icl_seterr(err, errsz, "%s", e2);
        free(b);
        return NULL;
    }
    if (quant && !icl_model_qsummary(m, NULL, 0))
        quant = 0; /* no matrix kept in blocks: a float32 model, merge as one */
    int n = n_specs + is_adapter;
    const char **dirs = xcalloc((size_t)n + 1, sizeof *dirs);
    double *mults = xcalloc((size_t)n + 1, sizeof *mults);
    int nd = 0, rc = -1;
    if (is_adapter) {
        dirs[nd] = xstrdup(model);
        mults[nd++] = 1.0;
    }
    for (int i = 0; i < n_specs; i++) {
        char *d = icl_lora_parse_spec(specs[i], &mults[nd], err, errsz);
        if (!d)
            goto done;
        dirs[nd++] = d;
    }
    if (quant)
        rc = icl_lora_apply(m, dirs, mults, nd, err, errsz);
    else {
        rc = 0;
        for (int i = 0; i < nd && !rc; i++)
            rc = icl_lora_merge(m, dirs[i], mults[i], err, errsz);
    }
done:
    for (int i = 0; i < nd; i++)
        free((char *)dirs[i]);
    free(dirs);
    free(mults);
    if (rc) {
        icl_model_free(m);
        free(b);
        return NULL;
    }
    *base = b;
    return m;
}

icl_model *icl_lora_load_merged(const char *model, const char *const *specs, int n_specs, char **base, char *err,
                                size_t errsz)
{
    return icl_lora_load(model, specs, n_specs, ICL_LOAD_DEQUANTIZE, base, err, errsz);
}

void icl_lora_describe(const icl_model *m, const char *base, int n_adapters, int uses, char *buf, size_t bufsz)
{
    char qs[256];
    int R = 0;
    for (int l = 0; m->lora && l < m->cfg.num_hidden_layers; l++)
        for (int p = 0; p < ICL_NPROJ; p++)
            for (int i = 0; i < m->lora[l].n[p]; i++)
                R = m->lora[l].lora[p][i].r > R ? m->lora[l].lora[p][i].r : R;
    char ad[128] = "";
    int blocks = icl_model_qsummary(m, qs, sizeof qs);
    if (n_adapters && m->lora)
        snprintf(ad, sizeof ad, "; %d adapter%s applied unmerged (combined rank %d)", n_adapters,
                 n_adapters > 1 ? "s" : "", R);
    else if (n_adapters && blocks) /* icl_lora_apply added nothing: no adapter had a tensor */
        snprintf(ad, sizeof ad, "; %d adapter%s without tensors: nothing applied", n_adapters,
                 n_adapters > 1 ? "s" : "");
    else if (n_adapters)
        snprintf(ad, sizeof ad, "; %d adapter%s merged into the float32 weights", n_adapters, n_adapters > 1 ? "s" : "");
    const char *how = (uses & ICL_DESCRIBE_BATCHED) && (uses & ICL_DESCRIBE_DECODE)
                          ? "batched products dequantize tile by tile, decode steps use integer dot products"
                      : uses & ICL_DESCRIBE_DECODE ? "decode steps use integer dot products"
                                                   : "products dequantize tile by tile";
    /* (icl-gen and icl-eval --decode: prefill batched, then decode steps;
     * icl-eval's scoring: batched only) */
    const char *bf = uses & ICL_DESCRIBE_BF16 ? "; --dtype bf16: the products then take these weights rounded to bf16"
                                              : "";
    if (blocks)
        snprintf(buf, bufsz, "%s: %s kept as stored: %s (--dequantize: float32)%s%s", base, qs, how, ad, bf);
    else if (icl_is_gguf_file(base))
        snprintf(buf, bufsz, "%s: dequantized to float32%s%s", base, ad, bf);
    else
        snprintf(buf, bufsz, "%s: float32%s%s", base, ad, bf);
}
