/* lora_gguf.c - a PEFT LoRA adapter folder written as a llama.cpp LoRA
 * adapter GGUF (what llama.cpp's convert_lora_to_gguf.py writes and
 * src/llama-adapter.cpp loads with --lora).  See lora.h. */
#include "lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "gguf_model.h"
#include "quant.h"
#include "safetensors.h"
#include "fileio.h"
#include "util.h"

#define PREFIX "base_model.model."

/* One adapted module: its table row, GGUF name, sizes and PEFT tensors. */
typedef struct {
    const icl_gguf_tensor_map *row;
    int layer;
    char gguf[96];
    int64_t out, in;
    const icl_st_tensor *A, *B;
} item;

static int item_order(const void *pa, const void *pb)
{
    const item *a = pa, *b = pb;
    if (a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    return a->row < b->row ? -1 : a->row > b->row;
}

/* Add one tensor of HF-row-major floats (rows x cols; GGUF ne {cols, rows})
 * in type (F32 when the rows are not whole blocks of it).  The encoded
 * buffer (if any) is pushed on bufs for the caller to free after writing. */
static int add(icl_gguf_writer *w, const char *name, uint32_t type, const float *src, int64_t rows, int64_t cols,
               void **bufs, int *nb, char *err, size_t errsz)
{
    int64_t ne[2] = {cols, rows};
    uint32_t tt = icl_ggml_row_size(type, cols) ? type : ICL_GGML_F32;
    const void *data = src;
    size_t nbytes = (size_t)rows * (size_t)cols * sizeof(float);
    if (tt != ICL_GGML_F32) {
        nbytes = icl_ggml_row_size(tt, cols) * (size_t)rows;
        void *q = xmalloc(nbytes);
        bufs[(*nb)++] = q;
        if (icl_quant_check_range(tt, src, rows * cols, name, err, errsz) ||
            icl_quantize(tt, src, rows * cols, q, nbytes, name, err, errsz))
            return -1;
        data = q;
    }
    return icl_gguf_add_tensor(w, name, tt, 2, ne, data, nbytes, err, errsz);
}

/* The base's config: from a GGUF file (*gm keeps it) or a folder's
 * config.json (*own holds it). */
static const icl_config *base_config(const char *base, icl_gguf_model **gm, icl_config *own, int *own_set,
                                     char *err, size_t errsz)
{
    if (icl_is_gguf_file(base)) {
        if (!(*gm = icl_gguf_model_open(base, err, errsz)))
            return NULL;
        return icl_gguf_model_config(*gm);
    }
    struct stat st;
    if (stat(base, &st) == 0 && !S_ISDIR(st.st_mode)) { /* not "FILE/config.json: Not a directory" */
        icl_seterr(err, errsz, "%s: neither a GGUF file nor a model folder", base);
        return NULL;
    }
    char *cp = icl_path_join(base, "config.json");
    int rc = icl_config_load(own, cp, err, errsz);
    free(cp);
    if (rc)
        return NULL;
    *own_set = 1;
    return own;
}

int icl_lora_save_gguf(const char *dir, const char *base, const char *path, uint32_t type, char *err, size_t errsz)
{
    if (type != ICL_GGML_F32 && type != ICL_GGML_F16 && type != ICL_GGML_BF16 && type != ICL_GGML_Q8_0) {
        icl_seterr(err, errsz, "%s: a LoRA adapter GGUF is written as F32, F16, BF16 or Q8_0, not %s", path,
                   icl_ggml_type_name(type) ? icl_ggml_type_name(type) : "an unknown type");
        return -1;
    }
    icl_lora_config lc;
    if (icl_lora_read_config(dir, &lc, err, errsz))
        return -1;
    int rc = -1, ni = 0, nt = 0, nb = 0, own_set = 0;
    char *bp = base ? xstrdup(base) : icl_lora_base_path(dir, err, errsz);
    char *ap = icl_path_join(dir, "adapter_model.safetensors"), e2[512];
    icl_gguf_model *gm = NULL;
    icl_config own;
    icl_st_file *f = NULL;
    item *items = NULL;
    icl_gguf_writer *w = NULL;
    void **bufs = NULL;
    if (!bp)
        goto out;
    const icl_config *c = base_config(bp, &gm, &own, &own_set, e2, sizeof e2);
    if (!c) {
        icl_seterr(err, errsz, "the base model of %s: %s", dir, e2);
        goto out;
    }
    /* llama.cpp scales by adapter.lora.alpha / r (r = lora_a's ne[1]), and
     * by 1 when alpha is 0; rsLoRA's alpha / sqrt(r) is alpha * sqrt(r) / r. */
    double alpha = lc.use_rslora ? lc.lora_alpha * sqrt((double)lc.r) : lc.lora_alpha;
    if (!(alpha != 0 && isfinite(alpha) && fabs(alpha) < 3.0e38)) {
        icl_seterr(err, errsz, "%s/adapter_config.json: lora_alpha %g cannot be written for llama.cpp (it reads an "
                   "alpha of 0 as a scale of 1)", dir, lc.lora_alpha);
        goto out;
    }
    if (!(f = icl_lora_open_weights(dir, e2, sizeof e2))) {
        icl_seterr(err, errsz, "%s", e2);
        goto out;
    }
    nt = icl_st_count(f);
    items = xcalloc((size_t)nt + 1, sizeof *items);
    for (int i = 0; i < nt; i++) {
        const icl_st_tensor *t = icl_st_get(f, i);
        const char *nm = t->name, *mp;
        size_t ml;
        int kind = icl_lora_tensor_kind(ap, nm, &mp, &ml, err, errsz);
        if (kind < 0)
            goto out;
        if (kind == 2)
            continue;
        char mod[256], bn[320];
        snprintf(mod, sizeof mod, "%.*s", (int)ml, mp);
        snprintf(bn, sizeof bn, PREFIX "%s.lora_B.weight", mod);
        const icl_st_tensor *B = icl_st_find(f, bn);
        if (!B) {
            icl_seterr(err, errsz, "%s: %s has no %s", ap, nm, bn);
            goto out;
        }
        item *it = &items[ni];
        int64_t shape[2];
        snprintf(bn, sizeof bn, "%s.weight", mod);
        it->row = icl_gguf_map_hf(c, bn, &it->layer, it->gguf, sizeof it->gguf, shape);
        if (!it->row || !shape[1]) {
            if (!strcmp(bn, "lm_head.weight") && c->tie_word_embeddings)
                icl_seterr(err, errsz, "%s: %s adapts lm_head, which the base shares with the embeddings (tied): "
                           "llama.cpp's GGUF has no output.weight to adapt", ap, nm);
            else
                icl_seterr(err, errsz, "%s: %s adapts %s, which is not a matrix of llama.cpp's %s model with this "
                           "base's config", ap, nm, bn, c->model_type);
            goto out;
        }
        if (!strcmp(it->row->role, "token_embd") || !strcmp(it->row->role, "position_embd")) {
            icl_seterr(err, errsz, "%s: %s adapts the embedding %s: not supported (llama.cpp wants embedding adapters "
                       "in another layout)", ap, nm, bn);
            goto out;
        }
        int conv1d = it->row->xform == ICL_GGUF_TRANSPOSE; /* gpt2 Conv1D: HF [in, out] */
        it->out = conv1d ? shape[1] : shape[0];
        it->in = conv1d ? shape[0] : shape[1];
        if (t->ndim != 2 || B->ndim != 2 || t->shape[0] != lc.r || t->shape[1] != it->in || B->shape[0] != it->out ||
            B->shape[1] != lc.r) {
            icl_seterr(err, errsz, "%s: %s [%lld, %lld] and lora_B [%lld, %lld] do not fit %s [out %lld, in %lld] at "
                       "r %d (lora_A [r, in], lora_B [out, r])", ap, nm, (long long)t->shape[0],
                       (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)B->shape[0],
                       (long long)(B->ndim > 1 ? B->shape[1] : 0), bn, (long long)it->out, (long long)it->in, lc.r);
            goto out;
        }
        it->A = t;
        it->B = B;
        ni++;
    }
    if (!ni || 2 * ni != nt) {
        icl_seterr(err, errsz, ni ? "%s: %d tensors are not lora_A/lora_B pairs" : "%s: no lora_A/lora_B pairs", ap,
                   nt - 2 * ni);
        goto out;
    }
    if (icl_lora_check_targets(&lc, c, f, ap, err, errsz))
        goto out;
    qsort(items, (size_t)ni, sizeof *items, item_order);

    w = icl_gguf_writer_new();
    const char *arch = c->model_type;
    icl_gguf_set_str(w, "general.architecture", arch, strlen(arch));
    icl_gguf_set_str(w, "general.type", "adapter", 7);
    icl_gguf_set_str(w, "general.name", "icl", 3);
    icl_gguf_set_str(w, "adapter.type", "lora", 4);
    icl_gguf_set_f32(w, "adapter.lora.alpha", (float)alpha);
    icl_gguf_set_hparams(w, c);
    icl_gguf_set_u32(w, "general.file_type", (uint32_t)icl_gguf_file_type_of(type));
    bufs = xcalloc(5 * (size_t)ni + 1, sizeof *bufs); /* A, B, permuted B, two encodings */
    int r = lc.r;
    for (int k = 0; k < ni; k++) {
        item *it = &items[k];
        float *A = xmalloc((size_t)r * (size_t)it->in * sizeof *A), *B = xmalloc((size_t)it->out * r * sizeof *B);
        bufs[nb++] = A;
        bufs[nb++] = B;
        if (icl_st_read_f32(it->A, A, (size_t)r * (size_t)it->in, e2, sizeof e2) ||
            icl_st_read_f32(it->B, B, (size_t)it->out * r, e2, sizeof e2)) {
            icl_seterr(err, errsz, "%s: %s", ap, e2);
            goto out;
        }
        /* as icl_lora_merge: llama.cpp would compute with them */
        double mx[2] = {icl_lora_max_abs(A, (size_t)r * (size_t)it->in), icl_lora_max_abs(B, (size_t)it->out * r)};
        if (!isfinite(mx[0]) || !isfinite(mx[1])) {
            icl_seterr(err, errsz, "%s: %s holds values that are not finite", ap,
                       isfinite(mx[0]) ? it->B->name : it->A->name);
            goto out;
        }
        double bound = fabs(icl_lora_scale(&lc)) * r * mx[0] * mx[1];
        if (bound > ICL_LORA_MAX_UPDATE) {
            icl_seterr(err, errsz, "%s: lora_alpha %g over r %d makes updates of up to %g, beyond %g, where float32 "
                       "activations overflow", dir, lc.lora_alpha, lc.r, bound, ICL_LORA_MAX_UPDATE);
            goto out;
        }
        /* llama's q/k rope permutation acts on the output rows: lora_b's */
        if (it->row->xform == ICL_GGUF_PERMUTE_Q || it->row->xform == ICL_GGUF_PERMUTE_K) {
            int heads = it->row->xform == ICL_GGUF_PERMUTE_Q ? c->num_attention_heads : c->num_key_value_heads;
            float *P = xmalloc((size_t)it->out * r * sizeof *P);
            bufs[nb++] = P;
            icl_gguf_permute_rows(B, P, heads, c->head_dim, (size_t)r, 1);
            B = P;
        }
        char name[sizeof it->gguf + 16]; /* ".lora_a" always fits: no truncation */
        snprintf(name, sizeof name, "%s.lora_a", it->gguf);
        if (add(w, name, type, A, r, it->in, bufs, &nb, err, errsz))
            goto out;
        snprintf(name, sizeof name, "%s.lora_b", it->gguf);
        if (add(w, name, type, B, it->out, r, bufs, &nb, err, errsz))
            goto out;
    }
    rc = icl_gguf_write(w, path, err, errsz);
out:
    for (int i = 0; i < nb; i++)
        free(bufs[i]);
    free(bufs);
    icl_gguf_writer_free(w);
    free(items);
    icl_st_close(f);
    if (own_set)
        icl_config_free(&own);
    icl_gguf_model_close(gm);
    free(ap);
    free(bp);
    icl_lora_config_free(&lc);
    return rc;
}
