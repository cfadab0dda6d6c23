/* gguf_model.c - llama / qwen2 / gpt2 models from and to GGUF.  See gguf_model.h. */
#include "gguf_model.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops.h"
#include "qlinear.h"
#include "quant.h"
#include "util.h"

/* ------------------------------------------------------------------ tables */

#define L_ "model.layers.%d."
static const icl_gguf_tensor_map LLAMA[] = {
    {"token_embd", "model.embed_tokens.weight", "token_embd.weight", "VC", ICL_GGUF_AS_IS},
    {"attn_norm", L_ "input_layernorm.weight", "blk.%d.attn_norm.weight", "C", ICL_GGUF_AS_IS},
    {"attn_q", L_ "self_attn.q_proj.weight", "blk.%d.attn_q.weight", "QC", ICL_GGUF_PERMUTE_Q},
    {"attn_k", L_ "self_attn.k_proj.weight", "blk.%d.attn_k.weight", "KC", ICL_GGUF_PERMUTE_K},
    {"attn_v", L_ "self_attn.v_proj.weight", "blk.%d.attn_v.weight", "KC", ICL_GGUF_AS_IS},
    {"attn_q.bias", L_ "self_attn.q_proj.bias", "blk.%d.attn_q.bias", "Q", ICL_GGUF_PERMUTE_Q},
    {"attn_k.bias", L_ "self_attn.k_proj.bias", "blk.%d.attn_k.bias", "K", ICL_GGUF_PERMUTE_K},
    {"attn_v.bias", L_ "self_attn.v_proj.bias", "blk.%d.attn_v.bias", "K", ICL_GGUF_AS_IS},
    {"attn_output", L_ "self_attn.o_proj.weight", "blk.%d.attn_output.weight", "CQ", ICL_GGUF_AS_IS},
    {"attn_output.bias", L_ "self_attn.o_proj.bias", "blk.%d.attn_output.bias", "C", ICL_GGUF_AS_IS},
    {"ffn_norm", L_ "post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", "C", ICL_GGUF_AS_IS},
    {"ffn_gate", L_ "mlp.gate_proj.weight", "blk.%d.ffn_gate.weight", "IC", ICL_GGUF_AS_IS},
    {"ffn_up", L_ "mlp.up_proj.weight", "blk.%d.ffn_up.weight", "IC", ICL_GGUF_AS_IS},
    {"ffn_gate.bias", L_ "mlp.gate_proj.bias", "blk.%d.ffn_gate.bias", "I", ICL_GGUF_AS_IS},
    {"ffn_up.bias", L_ "mlp.up_proj.bias", "blk.%d.ffn_up.bias", "I", ICL_GGUF_AS_IS},
    {"ffn_down", L_ "mlp.down_proj.weight", "blk.%d.ffn_down.weight", "CI", ICL_GGUF_AS_IS},
    {"ffn_down.bias", L_ "mlp.down_proj.bias", "blk.%d.ffn_down.bias", "C", ICL_GGUF_AS_IS},
    {"output_norm", "model.norm.weight", "output_norm.weight", "C", ICL_GGUF_AS_IS},
    {"output", "lm_head.weight", "output.weight", "VC", ICL_GGUF_AS_IS},
};

/* qwen2: llama's names, no rope permutation (convert_hf_to_gguf.py's Qwen2Model). */
static const icl_gguf_tensor_map QWEN2[] = {
    {"token_embd", "model.embed_tokens.weight", "token_embd.weight", "VC", ICL_GGUF_AS_IS},
    {"attn_norm", L_ "input_layernorm.weight", "blk.%d.attn_norm.weight", "C", ICL_GGUF_AS_IS},
    {"attn_q", L_ "self_attn.q_proj.weight", "blk.%d.attn_q.weight", "QC", ICL_GGUF_AS_IS},
    {"attn_k", L_ "self_attn.k_proj.weight", "blk.%d.attn_k.weight", "KC", ICL_GGUF_AS_IS},
    {"attn_v", L_ "self_attn.v_proj.weight", "blk.%d.attn_v.weight", "KC", ICL_GGUF_AS_IS},
    {"attn_q.bias", L_ "self_attn.q_proj.bias", "blk.%d.attn_q.bias", "Q", ICL_GGUF_AS_IS},
    {"attn_k.bias", L_ "self_attn.k_proj.bias", "blk.%d.attn_k.bias", "K", ICL_GGUF_AS_IS},
    {"attn_v.bias", L_ "self_attn.v_proj.bias", "blk.%d.attn_v.bias", "K", ICL_GGUF_AS_IS},
    {"attn_output", L_ "self_attn.o_proj.weight", "blk.%d.attn_output.weight", "CQ", ICL_GGUF_AS_IS},
    {"attn_output.bias", L_ "self_attn.o_proj.bias", "blk.%d.attn_output.bias", "C", ICL_GGUF_AS_IS},
    {"ffn_norm", L_ "post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", "C", ICL_GGUF_AS_IS},
    {"ffn_gate", L_ "mlp.gate_proj.weight", "blk.%d.ffn_gate.weight", "IC", ICL_GGUF_AS_IS},
    {"ffn_up", L_ "mlp.up_proj.weight", "blk.%d.ffn_up.weight", "IC", ICL_GGUF_AS_IS},
    {"ffn_gate.bias", L_ "mlp.gate_proj.bias", "blk.%d.ffn_gate.bias", "I", ICL_GGUF_AS_IS},
    {"ffn_up.bias", L_ "mlp.up_proj.bias", "blk.%d.ffn_up.bias", "I", ICL_GGUF_AS_IS},
    {"ffn_down", L_ "mlp.down_proj.weight", "blk.%d.ffn_down.weight", "CI", ICL_GGUF_AS_IS},
    {"ffn_down.bias", L_ "mlp.down_proj.bias", "blk.%d.ffn_down.bias", "C", ICL_GGUF_AS_IS},
    {"output_norm", "model.norm.weight", "output_norm.weight", "C", ICL_GGUF_AS_IS},
    {"output", "lm_head.weight", "output.weight", "VC", ICL_GGUF_AS_IS},
};
#undef L_

#define H_ "transformer.h.%d."
static const icl_gguf_tensor_map GPT2[] = {
    {"token_embd", "transformer.wte.weight", "token_embd.weight", "VC", ICL_GGUF_AS_IS},
    {"position_embd", "transformer.wpe.weight", "position_embd.weight", "PC", ICL_GGUF_AS_IS},
    {"attn_norm", H_ "ln_1.weight", "blk.%d.attn_norm.weight", "C", ICL_GGUF_AS_IS},
    {"attn_norm.bias", H_ "ln_1.bias", "blk.%d.attn_norm.bias", "C", ICL_GGUF_AS_IS},
    {"attn_qkv", H_ "attn.c_attn.weight", "blk.%d.attn_qkv.weight", "CT", ICL_GGUF_TRANSPOSE},
    {"attn_qkv.bias", H_ "attn.c_attn.bias", "blk.%d.attn_qkv.bias", "T", ICL_GGUF_AS_IS},
    {"attn_output", H_ "attn.c_proj.weight", "blk.%d.attn_output.weight", "CC", ICL_GGUF_TRANSPOSE},
    {"attn_output.bias", H_ "attn.c_proj.bias", "blk.%d.attn_output.bias", "C", ICL_GGUF_AS_IS},
    {"ffn_norm", H_ "ln_2.weight", "blk.%d.ffn_norm.weight", "C", ICL_GGUF_AS_IS},
    {"ffn_norm.bias", H_ "ln_2.bias", "blk.%d.ffn_norm.bias", "C", ICL_GGUF_AS_IS},
    {"ffn_up", H_ "mlp.c_fc.weight", "blk.%d.ffn_up.weight", "CI", ICL_GGUF_TRANSPOSE},
    {"ffn_up.bias", H_ "mlp.c_fc.bias", "blk.%d.ffn_up.bias", "I", ICL_GGUF_AS_IS},
    {"ffn_down", H_ "mlp.c_proj.weight", "blk.%d.ffn_down.weight", "IC", ICL_GGUF_TRANSPOSE},
    {"ffn_down.bias", H_ "mlp.c_proj.bias", "blk.%d.ffn_down.bias", "C", ICL_GGUF_AS_IS},
    {"output_norm", "transformer.ln_f.weight", "output_norm.weight", "C", ICL_GGUF_AS_IS},
    {"output_norm.bias", "transformer.ln_f.bias", "output_norm.bias", "C", ICL_GGUF_AS_IS},
    {"output", "lm_head.weight", "output.weight", "VC", ICL_GGUF_AS_IS},
};
#undef H_

const icl_gguf_tensor_map *icl_gguf_arch_table(const char *mt, int *n)
{
#define RET(t) (*n = (int)(sizeof t / sizeof t[0]), t)
    if (!strcmp(mt, "llama"))
        return RET(LLAMA);
    if (!strcmp(mt, "qwen2"))
        return RET(QWEN2);
    if (!strcmp(mt, "gpt2"))
        return RET(GPT2);
#undef RET
    *n = 0;
    return NULL;
}

/* Whether the model has an output.weight of its own (untied embeddings). */
static int row_needed_output(const icl_config *c)
{
    return !c->tie_word_embeddings;
}

/* Does the config have this row's tensor? */
static int row_needed(const icl_config *c, const icl_gguf_tensor_map *r)
{
    if (!strcmp(r->role, "output"))
        return row_needed_output(c);
    if (c->arch == ICL_ARCH_GPT2)
        return 1;
    if (!strcmp(r->role, "attn_q.bias") || !strcmp(r->role, "attn_k.bias") || !strcmp(r->role, "attn_v.bias"))
        return c->qkv_bias;
    if (!strcmp(r->role, "attn_output.bias"))
        return c->o_bias;
    if (strstr(r->role, "ffn_") && strstr(r->role, ".bias"))
        return c->mlp_bias;
    return 1;
}

static int64_t dim_of(const icl_config *c, char d)
{
    switch (d) {
    case 'V': return c->vocab_size;
    case 'C': return c->hidden_size;
    case 'I': return c->intermediate_size;
    case 'Q': return (int64_t)c->num_attention_heads * c->head_dim;
    case 'K': return (int64_t)c->num_key_value_heads * c->head_dim;
    case 'P': return c->max_position_embeddings;
    case 'T': return 3 * (int64_t)c->hidden_size;
    default: return 0;
    }
}

/* The GGUF ne[] of an HF shape. */
static void gguf_ne(const icl_gguf_tensor_map *r, const int64_t shape[2], int *nd, int64_t ne[2])
{
    if (!shape[1]) {
        *nd = 1;
        ne[0] = shape[0];
        ne[1] = 1;
    } else if (r->xform == ICL_GGUF_TRANSPOSE) {
        *nd = 2;
        ne[0] = shape[0];
        ne[1] = shape[1];
    } else {
        *nd = 2;
        ne[0] = shape[1];
        ne[1] = shape[0];
    }
}

const icl_gguf_tensor_map *icl_gguf_map_hf(const icl_config *c, const char *hf, int *layer, char *gguf, size_t gsz,
                                           int64_t shape[2])
{
    int nrows;
    const icl_gguf_tensor_map *tab = icl_gguf_arch_table(c->model_type, &nrows);
    for (int r = 0; tab && r < nrows; r++) {
        const icl_gguf_tensor_map *row = &tab[r];
        if (!row_needed(c, row))
            continue;
        int per_layer = strstr(row->hf, "%d") != NULL;
        for (int l = 0; l < (per_layer ? c->num_hidden_layers : 1); l++) {
            char name[128];
            snprintf(name, sizeof name, row->hf, l);
            if (strcmp(name, hf))
                continue;
            *layer = per_layer ? l : -1;
            snprintf(gguf, gsz, row->gguf, l);
            shape[0] = dim_of(c, row->shape[0]);
            shape[1] = row->shape[1] ? dim_of(c, row->shape[1]) : 0;
            return row;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ layout transforms */

void icl_gguf_permute_rows(const float *src, float *dst, int n_heads, int hd, size_t row_len, int to_gguf)
{
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++)
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < half; i++) {
                size_t hf = (size_t)h * hd + (size_t)s * half + i, gg = (size_t)h * hd + 2 * (size_t)i + s;
                size_t from = to_gguf ? hf : gg, to = to_gguf ? gg : hf;
                memcpy(dst + to * row_len, src + from * row_len, row_len * sizeof *dst);
            }
}

static void transpose(const float *src, float *dst, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[c * rows + r] = src[r * cols + c];
}

/* ------------------------------------------------------------------ reading */

struct icl_gguf_model {
    icl_gguf *g;
    icl_config cfg;
    int n;
    icl_gguf_model_tensor *e;
};

void icl_gguf_model_close(icl_gguf_model *gm)
{
    if (!gm)
        return;
    icl_gguf_close(gm->g);
    icl_config_free(&gm->cfg);
    free(gm->e);
    free(gm);
}

const icl_config *icl_gguf_model_config(const icl_gguf_model *gm) { return &gm->cfg; }
const icl_gguf *icl_gguf_model_file(const icl_gguf_model *gm) { return gm->g; }
int icl_gguf_model_count(const icl_gguf_model *gm) { return gm->n; }
const icl_gguf_model_tensor *icl_gguf_model_at(const icl_gguf_model *gm, int i)
{
    return i >= 0 && i < gm->n ? &gm->e[i] : NULL;
}
const icl_gguf_model_tensor *icl_gguf_model_find(const icl_gguf_model *gm, const char *hf)
{
    for (int i = 0; i < gm->n; i++)
        if (!strcmp(gm->e[i].hf, hf))
            return &gm->e[i];
    return NULL;
}

/* An integer key ARCH.SUFFIX into *out (int range > 0); req: absence is an error. */
static int key_int(const icl_gguf *g, const char *arch, const char *suffix, int req, int *out, char *err, size_t errsz)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suffix);
    int64_t v;
    int rc = icl_gguf_get_int(g, k, &v, err, errsz);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        if (req) {
            icl_seterr(err, errsz, "%s: missing key %s", icl_gguf_name(g), k);
            return -1;
        }
        return 0;
    }
    if (v <= 0 || v > INT32_MAX) {
        icl_seterr(err, errsz, "%s: %s = %" PRId64 " is out of range", icl_gguf_name(g), k, v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int key_float(const icl_gguf *g, const char *arch, const char *suffix, double *out, char *err, size_t errsz)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suffix);
    int rc = icl_gguf_get_float(g, k, out, err, errsz);
    return rc < 0 ? -1 : 0;
}

/* A token id key into *out (-1 stays when absent). */
static int tok_id(const icl_gguf *g, const char *k, int *out, char *err, size_t errsz)
{
    uint64_t v;
    int rc = icl_gguf_get_uint(g, k, &v, err, errsz);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        if (v > INT32_MAX) {
            icl_seterr(err, errsz, "%s: %s = %" PRIu64 " is out of range", icl_gguf_name(g), k, v);
            return -1;
        }
        *out = (int)v;
    }
    return 0;
}

void icl_gguf_llama3_rope_factors(const icl_config *c, float *out)
{
    int half = c->head_dim / 2;
    float *inv = xmalloc((size_t)(half > 0 ? half : 1) * sizeof *inv);
    icl_rope_params p = {c->rope_theta, 0, 0, 0, 0, 0};
    icl_rope_inv_freq(inv, c->head_dim, &p); /* freqs = 1 / base^(2i/dim), float32 as torch */
    double old = c->rope_original_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    double low_wl = old / lo, high_wl = old / hi;
    for (int i = 0; i < half; i++) {
        double wl = 2 * M_PI / inv[i], f;
        if (wl < high_wl) {
            f = 1;
        } else if (wl > low_wl) {
            f = c->rope_factor;
        } else {
            double smooth = (old / wl - lo) / (hi - lo);
            f = 1 / ((1 - smooth) / c->rope_factor + smooth);
        }
        out[i] = (float)f;
    }
    free(inv);
}

/* rope_freqs.weight (llama.cpp's per-frequency rope divisors, which its
 * converter writes for llama3 rope scaling: Llama 3.1, 3.2, 3.3) as
 * llama3 parameters in c: factor is the largest divisor; low_freq_factor,
 * high_freq_factor and original_max_position_embeddings (not in the
 * metadata) are the first of the usual values (Llama 3.1+: 1, 4, 8192;
 * then low 1 or 2, high 4, 2 or 8, a power of two up to 2^20) whose
 * divisors (icl_gguf_llama3_rope_factors) match the tensor to 1e-5
 * relative; all that match give the same frequencies.  0, or -1 with err:
 * factors that are not llama3 scaling are not supported. */
static int rope_freqs_llama3(icl_config *c, const icl_gguf_tensor *t, const char *name, char *err, size_t errsz)
{
    int half = c->head_dim / 2;
    if (t->type != ICL_GGML_F32 || t->n_dims != 1 || t->nelements != half || half < 1) {
        icl_seterr(err, errsz, "%s: tensor rope_freqs.weight is not %d F32 values (half the head size %d)", name, half,
                   c->head_dim);
        return -1;
    }
    float *have = xmalloc((size_t)half * sizeof *have), *want = xmalloc((size_t)half * sizeof *want);
    memcpy(have, t->data, (size_t)half * sizeof *have);
    double factor = 0;
    for (int i = 0; i < half; i++)
        factor = have[i] > factor ? have[i] : factor;
    /* (original_max_position_embeddings, low, high) and (k times each) give
     * the same divisors: low_freq_factor 1 first, then the powers of two */
    static const double los[] = {1, 2}, his[] = {4, 2, 8};
    int found = 0;
    for (size_t b = 0; !found && factor >= 1 && b < sizeof los / sizeof *los; b++)
        for (size_t h = 0; !found && h < sizeof his / sizeof *his; h++)
            for (int a = -1; !found && a <= 20; a++) {
                int old = a < 0 ? 8192 : 1 << a; /* Llama 3.1+'s 8192 first */
                if (!(his[h] > los[b]) || (a >= 0 && old == 8192))
                    continue;
                c->rope_factor = factor;
                c->rope_low_freq_factor = los[b];
                c->rope_high_freq_factor = his[h];
                c->rope_original_max_pos = old;
                icl_gguf_llama3_rope_factors(c, want);
                found = 1;
                for (int i = 0; found && i < half; i++)
                    found = fabs((double)want[i] - have[i]) <= 1e-5 * fabs((double)have[i]);
            }
    free(have);
    free(want);
    if (!found) {
        icl_seterr(err, errsz, "%s: tensor rope_freqs.weight holds rope frequency factors that are not llama3 rope "
                   "scaling (Llama 3.1+) with the usual low/high frequency factors: not supported", name);
        return -1;
    }
    c->rope_llama3 = 1;
    return 0;
}

static int config_from_gguf(const icl_gguf *g, icl_config *c, char *err, size_t errsz)
{
    const char *name = icl_gguf_name(g);
    icl_gguf_str as;
    int rc = icl_gguf_get_str(g, "general.architecture", &as, err, errsz);
    if (rc) {
        if (rc > 0)
            icl_seterr(err, errsz, "%s: missing key general.architecture", name);
        return -1;
    }
    char arch[32];
    snprintf(arch, sizeof arch, "%.*s", (int)(as.len < 31 ? as.len : 31), as.p);
    if (as.len > 31 || (strcmp(arch, "llama") && strcmp(arch, "qwen2") && strcmp(arch, "gpt2"))) {
        icl_seterr(err, errsz, "%s: architecture \"%.*s\" is not supported (llama, qwen2, gpt2)", name,
                   (int)(as.len < 40 ? as.len : 40), as.p);
        return -1;
    }
    icl_gguf_str gt;
    if (icl_gguf_get_str(g, "general.type", &gt, err, errsz) == 0 && !(gt.len == 5 && !memcmp(gt.p, "model", 5))) {
        icl_seterr(err, errsz, "%s: general.type is \"%.*s\", not a model (a LoRA adapter is not a base model)", name,
                   (int)(gt.len < 40 ? gt.len : 40), gt.p);
        return -1;
    }
    icl_config_defaults(c, arch);
    int gpt2 = c->arch == ICL_ARCH_GPT2;
    int ff = 0;
    if (key_int(g, arch, "block_count", 1, &c->num_hidden_layers, err, errsz) ||
        key_int(g, arch, "embedding_length", 1, &c->hidden_size, err, errsz) ||
        key_int(g, arch, "attention.head_count", 1, &c->num_attention_heads, err, errsz) ||
        key_int(g, arch, "feed_forward_length", !gpt2, &ff, err, errsz) ||
        key_int(g, arch, "context_length", 1, &c->max_position_embeddings, err, errsz))
        return -1;
    if (!ff && c->hidden_size > INT32_MAX / 4) {
        icl_seterr(err, errsz, "%s: %s.embedding_length %d is out of range", name, arch, c->hidden_size);
        return -1;
    }
    c->intermediate_size = ff ? ff : 4 * c->hidden_size;
    c->num_key_value_heads = c->num_attention_heads;
    c->head_dim = c->hidden_size / c->num_attention_heads;
    if (key_int(g, arch, "attention.head_count_kv", 0, &c->num_key_value_heads, err, errsz) ||
        key_int(g, arch, "attention.key_length", 0, &c->head_dim, err, errsz))
        return -1;
    int vl = c->head_dim, rd = c->head_dim;
    if (key_int(g, arch, "attention.value_length", 0, &vl, err, errsz) ||
        key_int(g, arch, "rope.dimension_count", 0, &rd, err, errsz))
        return -1;
    if ((int64_t)c->num_attention_heads * c->head_dim > INT32_MAX / 4) { /* products stay ints downstream */
        icl_seterr(err, errsz, "%s: %s.attention.head_count %d x head size %d is out of range", name, arch,
                   c->num_attention_heads, c->head_dim);
        return -1;
    }
    if (vl != c->head_dim) {
        icl_seterr(err, errsz, "%s: %s.attention.value_length %d differs from key_length %d (not supported)", name, arch,
                   vl, c->head_dim);
        return -1;
    }
    if (!gpt2 && rd != c->head_dim) {
        icl_seterr(err, errsz, "%s: %s.rope.dimension_count %d is not the head size %d (partial rope is not supported)",
                   name, arch, rd, c->head_dim);
        return -1;
    }
    if (key_float(g, arch, gpt2 ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon", &c->norm_eps,
                  err, errsz) ||
        key_float(g, arch, "rope.freq_base", &c->rope_theta, err, errsz))
        return -1;
    char k[128];
    icl_gguf_str st;
    snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
    if ((rc = icl_gguf_get_str(g, k, &st, err, errsz)) < 0)
        return -1;
    if (rc == 0 && !(st.len == 4 && !memcmp(st.p, "none", 4))) {
        icl_seterr(err, errsz, "%s: %s = \"%.*s\": rope scaling from GGUF is not supported", name, k,
                   (int)(st.len < 20 ? st.len : 20), st.p);
        return -1;
    }
    double sf = 1;
    snprintf(k, sizeof k, "%s.rope.scale_linear", arch);
    if (icl_gguf_get_float(g, k, &sf, err, errsz) < 0)
        return -1;
    if (sf != 1) {
        icl_seterr(err, errsz, "%s: %s = %g: rope scaling from GGUF is not supported", name, k, sf);
        return -1;
    }
    const icl_gguf_tensor *rf = icl_gguf_find_tensor(g, "rope_freqs.weight");
    if (rf && gpt2) {
        icl_seterr(err, errsz, "%s: tensor rope_freqs.weight in a gpt2 model (no rope)", name);
        return -1;
    }
    if (rf && rope_freqs_llama3(c, rf, name, err, errsz))
        return -1;
    const icl_gguf_tensor *emb = icl_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2 || emb->ne[0] != c->hidden_size || emb->ne[1] > INT32_MAX) {
        icl_seterr(err, errsz, "%s: %s", name,
                   emb ? "token_embd.weight is not [vocab, embedding_length]" : "missing tensor token_embd.weight");
        return -1;
    }
    c->vocab_size = (int)emb->ne[1];
    const icl_gguf_kv *toks;
    if ((rc = icl_gguf_get_arr(g, "tokenizer.ggml.tokens", ICL_GGUF_STRING, &toks, err, errsz)) < 0)
        return -1;
    if (rc == 0 && toks->n > (uint64_t)c->vocab_size) {
        icl_seterr(err, errsz, "%s: tokenizer.ggml.tokens has %" PRIu64 " tokens, token_embd.weight only %d rows", name,
                   toks->n, c->vocab_size);
        return -1;
    }
    c->bos_token_id = c->pad_token_id = -1;
    int eos = -1;
    if (tok_id(g, "tokenizer.ggml.bos_token_id", &c->bos_token_id, err, errsz) ||
        tok_id(g, "tokenizer.ggml.eos_token_id", &eos, err, errsz) ||
        tok_id(g, "tokenizer.ggml.padding_token_id", &c->pad_token_id, err, errsz))
        return -1;
    c->n_eos = 0;
    if (eos >= 0)
        c->eos_token_id[c->n_eos++] = eos;
    const icl_gguf_tensor *out = icl_gguf_find_tensor(g, "output.weight");
    c->tie_word_embeddings = !out;
    if (out && gpt2 && out->type == emb->type && out->nbytes == emb->nbytes && out->n_dims == emb->n_dims &&
        out->ne[0] == emb->ne[0] && out->ne[1] == emb->ne[1] && !memcmp(out->data, emb->data, emb->nbytes))
        c->tie_word_embeddings = 1; /* llama.cpp's converter writes GPT-2's tied head as a copy */
    if (!gpt2) {
        c->qkv_bias = icl_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
        c->o_bias = icl_gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
        c->mlp_bias = icl_gguf_find_tensor(g, "blk.0.ffn_up.bias") != NULL;
    }
    return icl_config_validate(c, name, err, errsz);
}

icl_gguf_model *icl_gguf_model_from(icl_gguf *g, char *err, size_t errsz)
{
    icl_gguf_model *gm = xcalloc(1, sizeof *gm);
    gm->g = g;
    const char *name = icl_gguf_name(g);
    if (config_from_gguf(g, &gm->cfg, err, errsz))
        goto fail;
    int nrows;
    const icl_gguf_tensor_map *tab = icl_gguf_arch_table(gm->cfg.model_type, &nrows);
    const icl_config *c = &gm->cfg;
    int L = c->num_hidden_layers, cap = 0;
    uint8_t *used = xcalloc((size_t)icl_gguf_n_tensors(g) + 1, 1);
    for (int r = 0; r < nrows; r++) {
        const icl_gguf_tensor_map *row = &tab[r];
        if (!row_needed(c, row))
            continue;
        int per_layer = strstr(row->hf, "%d") != NULL;
        for (int l = 0; l < (per_layer ? L : 1); l++) {
            if (gm->n == cap) {
                cap = cap ? 2 * cap : 64;
                gm->e = xreallocarray(gm->e, (size_t)cap, sizeof *gm->e);
            }
            icl_gguf_model_tensor *e = &gm->e[gm->n++];
            memset(e, 0, sizeof *e);
            char gn[128];
            snprintf(e->hf, sizeof e->hf, row->hf, l);
            snprintf(gn, sizeof gn, row->gguf, l);
            e->map = row;
            e->shape[0] = dim_of(c, row->shape[0]);
            e->shape[1] = row->shape[1] ? dim_of(c, row->shape[1]) : 0;
            e->t = icl_gguf_find_tensor(g, gn);
            if (!e->t) {
                icl_seterr(err, errsz, "%s: missing tensor %s (%s for %s)", name, gn, row->role, e->hf);
                free(used);
                goto fail;
            }
            used[e->t - icl_gguf_tensor_at(g, 0)] = 1;
            int nd;
            int64_t ne[2];
            gguf_ne(row, e->shape, &nd, ne);
            if (e->t->n_dims != nd || e->t->ne[0] != ne[0] || e->t->ne[1] != ne[1]) {
                char have[96] = "";
                for (int d = 0; d < e->t->n_dims; d++)
                    snprintf(have + strlen(have), sizeof have - strlen(have), "%s%" PRId64, d ? ", " : "", e->t->ne[d]);
                icl_seterr(err, errsz, "%s: tensor %s has ne [%s], the metadata needs [%" PRId64 "%s%.0" PRId64 "]", name,
                           gn, have, ne[0], nd > 1 ? ", " : "", nd > 1 ? ne[1] : 0);
                free(used);
                goto fail;
            }
            const icl_quant_traits *q = icl_quant_traits_of(e->t->type);
            if (!q || !q->to_float) {
                icl_seterr(err, errsz, "%s: tensor %s: ggml type %s (%" PRIu32 ") cannot be dequantized by icl", name, gn,
                           q ? q->name : "?", e->t->type);
                free(used);
                goto fail;
            }
        }
    }
    for (int i = 0; i < icl_gguf_n_tensors(g); i++) {
        const icl_gguf_tensor *t = icl_gguf_tensor_at(g, i);
        int tied_copy = c->tie_word_embeddings && !strcmp(t->name, "output.weight");
        if (!used[i] && !tied_copy && !(c->rope_llama3 && !strcmp(t->name, "rope_freqs.weight"))) {
            icl_seterr(err, errsz, "%s: tensor %s is not part of a %s model as icl knows it", name, t->name,
                       c->model_type);
            free(used);
            goto fail;
        }
    }
    free(used);
    return gm;
fail:
    icl_gguf_model_close(gm);
    return NULL;
}

icl_gguf_model *icl_gguf_model_open(const char *path, char *err, size_t errsz)
{
    icl_gguf *g = icl_gguf_open(path, err, errsz);
    return g ? icl_gguf_model_from(g, err, errsz) : NULL;
}

int icl_gguf_model_read_f32(const icl_gguf_model *gm, const icl_gguf_model_tensor *e, float *dst, size_t numel,
                            char *err, size_t errsz)
{
    const icl_gguf_tensor *t = e->t;
    if ((size_t)t->nelements != numel) {
        icl_seterr(err, errsz, "%s: tensor %s has %" PRId64 " values, %s needs %zu", icl_gguf_name(gm->g), t->name,
                   t->nelements, e->hf, numel);
        return -1;
    }
    icl_gguf_xform x = e->map->xform;
    float *tmp = x == ICL_GGUF_AS_IS ? dst : xmalloc(numel * sizeof *tmp);
    char e2[256];
    if (icl_dequantize(t->type, t->data, t->nbytes, tmp, t->nelements, t->name, e2, sizeof e2)) {
        icl_seterr(err, errsz, "%s: %s", icl_gguf_name(gm->g), e2);
        if (tmp != dst)
            free(tmp);
        return -1;
    }
    const icl_config *c = &gm->cfg;
    size_t row = e->shape[1] ? (size_t)e->shape[1] : 1;
    if (x == ICL_GGUF_PERMUTE_Q || x == ICL_GGUF_PERMUTE_K)
        icl_gguf_permute_rows(tmp, dst, x == ICL_GGUF_PERMUTE_Q ? c->num_attention_heads : c->num_key_value_heads,
                              c->head_dim, row, 0);
    else if (x == ICL_GGUF_TRANSPOSE)
        transpose(tmp, dst, t->ne[1], t->ne[0]); /* GGUF [out, in] -> HF [in, out] */
    if (tmp != dst)
        free(tmp);
    return 0;
}

/* ------------------------------------------------------------------ quantized bases (QLoRA) */

/* The tensor of role (a table row's role) in layer l, or NULL. */
static const icl_gguf_model_tensor *part(const icl_gguf_model *gm, const char *role, int l)
{
    int n;
    const icl_gguf_tensor_map *tab = icl_gguf_arch_table(gm->cfg.model_type, &n);
    for (int r = 0; r < n; r++)
        if (!strcmp(tab[r].role, role)) {
            char hf[128];
            snprintf(hf, sizeof hf, tab[r].hf, l);
            return icl_gguf_model_find(gm, hf);
        }
    return NULL;
}

/* The GGUF tensors of product p of a block, in the order of its rows. */
static int product_parts(const icl_gguf_model *gm, int l, int p, const icl_gguf_model_tensor **e)
{
    static const char *const llama[ICL_NPROJ][3] = {
        {"attn_q", "attn_k", "attn_v"}, {"attn_output"}, {"ffn_gate", "ffn_up"}, {"ffn_down"}};
    static const char *const gpt2[ICL_NPROJ][3] = {{"attn_qkv"}, {"attn_output"}, {"ffn_up"}, {"ffn_down"}};
    const char *const *roles = gm->cfg.arch == ICL_ARCH_GPT2 ? gpt2[p] : llama[p];
    int n = 0;
    for (int i = 0; i < 3 && roles[i]; i++)
        if ((e[n] = part(gm, roles[i], l)))
            n++;
    return n;
}

/* The ggml type a product keeps its blocks in: the type its parts share
 * when that is a quantized block type icl computes with, else 0 (float32:
 * a float type, or parts of different types). */
static int block_type(const icl_gguf_model_tensor *const *e, int n)
{
    if (n < 1 || !e[0])
        return 0;
    uint32_t t = e[0]->t->type;
    for (int i = 1; i < n; i++)
        if (e[i]->t->type != t)
            return 0;
    return icl_qblock_check((int)t, (int)e[0]->t->ne[0], NULL, 0) ? 0 : (int)t;
}

/* Copy tensor e's blocks to dst in HF's row order (llama's q/k rows
 * un-permuted: whole rows of blocks move).  Returns the bytes written. */
static size_t copy_blocks(const icl_gguf_model *gm, const icl_gguf_model_tensor *e, uint8_t *dst)
{
    const icl_gguf_tensor *t = e->t;
    const uint8_t *src = t->data;
    icl_gguf_xform x = e->map->xform;
    if (x == ICL_GGUF_PERMUTE_Q || x == ICL_GGUF_PERMUTE_K) {
        size_t rb = icl_ggml_row_size(t->type, t->ne[0]);
        int nh = x == ICL_GGUF_PERMUTE_Q ? gm->cfg.num_attention_heads : gm->cfg.num_key_value_heads;
        int hd = gm->cfg.head_dim, half = hd / 2;
        for (int h = 0; h < nh; h++)
            for (int s = 0; s < 2; s++)
                for (int i = 0; i < half; i++)
                    memcpy(dst + ((size_t)h * hd + (size_t)s * half + i) * rb,
                           src + ((size_t)h * hd + 2 * (size_t)i + s) * rb, rb);
    } else { /* as is; gpt2's Conv1D weights are stored [out, in], the logical layout */
        memcpy(dst, src, t->nbytes);
    }
    return t->nbytes;
}

/* Read every float32 view of m's base set from gm (in parallel); 0 ok, -1
 * with err (the first failing view in order).  *n_read gets the count. */
static int read_float_views(const icl_gguf_model *gm, icl_model *m, const char *path, int *n_read_out, char *err,
                            size_t errsz)
{
    int n_read = 0, bad = 0, first_bad = m->base.n_views;
    /* one view per thread at a time; the first failing view (in order) reports */
#pragma omp parallel for schedule(dynamic) reduction(+ : n_read)
    for (int i = 0; i < m->base.n_views; i++) {
        const icl_param_view *v = &m->base.views[i];
        const icl_gguf_model_tensor *e = icl_gguf_model_find(gm, v->name);
        char e2[512];
        int rc;
        if (!e) {
            icl_seterr(e2, sizeof e2, "%s: no GGUF tensor maps to %s", path, v->name);
            rc = -1;
        } else {
            rc = icl_gguf_model_read_f32(gm, e, m->base.params + v->offset, v->numel, e2, sizeof e2);
            n_read++;
        }
        if (rc)
#pragma omp critical(icl_gguf_load)
            if (i < first_bad) {
                first_bad = i;
                bad = 1;
                icl_seterr(err, errsz, "%s", e2);
            }
    }
    *n_read_out = n_read;
    return bad ? -1 : 0;
}

icl_model *icl_gguf_model_load(const icl_gguf_model *gm, int keep_blocks, char *err, size_t errsz)
{
    const char *path = icl_gguf_name(gm->g);
    const icl_config *c = &gm->cfg;
    int L = c->num_hidden_layers, n_blocks = 0, n_read = 0;
    icl_model *m = NULL;
    if (keep_blocks) {
        icl_qlayout q = {0, 0, xcalloc((size_t)L * ICL_NPROJ, sizeof(int))};
        const icl_gguf_model_tensor *e[3];
        e[0] = part(gm, "token_embd", 0);
        q.embed = block_type(e, 1);
        if (!c->tie_word_embeddings) {
            e[0] = part(gm, "output", 0);
            q.head = block_type(e, 1);
        }
        for (int l = 0; l < L; l++)
            for (int p = 0; p < ICL_NPROJ; p++) {
                int n = product_parts(gm, l, p, e);
                q.proj[(size_t)l * ICL_NPROJ + p] = block_type(e, n);
            }
        char e2[384];
        m = icl_model_new_quantized(c, &q, e2, sizeof e2);
        if (!m) { /* block_type checked each product: not expected */
            icl_seterr(err, errsz, "%s: %s", path, e2);
            free(q.proj);
            return NULL;
        }
        /* the blocks, in the order icl_model_new_quantized laid them out */
        if (q.embed) {
            e[0] = part(gm, "token_embd", 0);
            copy_blocks(gm, e[0], (uint8_t *)m->qembed.data);
            n_blocks++;
        }
        for (int l = 0; l < L; l++)
            for (int p = 0; p < ICL_NPROJ; p++) {
                if (!q.proj[(size_t)l * ICL_NPROJ + p])
                    continue;
                int n = product_parts(gm, l, p, e);
                uint8_t *dst = (uint8_t *)m->qproj[(size_t)l * ICL_NPROJ + p].data;
                for (int i = 0; i < n; i++)
                    dst += copy_blocks(gm, e[i], dst);
                n_blocks += n;
            }
        if (q.head) {
            e[0] = part(gm, "output", 0);
            copy_blocks(gm, e[0], (uint8_t *)m->qhead.data);
            n_blocks++;
        }
        free(q.proj);
    } else {
        m = icl_model_new(c);
    }
    int bad = read_float_views(gm, m, path, &n_read, err, errsz);
    if (!bad && n_read + n_blocks != gm->n) {
        icl_seterr(err, errsz, "%s: %d tensors mapped, the model has %d", path, gm->n, n_read + n_blocks);
        bad = 1;
    }
    if (bad) {
        icl_model_free(m);
        return NULL;
    }
    return m;
}

static icl_model *load_gguf(const char *path, int keep_blocks, char *err, size_t errsz)
{
    icl_gguf_model *gm = icl_gguf_model_open(path, err, errsz);
    if (!gm)
        return NULL;
    icl_model *m = icl_gguf_model_load(gm, keep_blocks, err, errsz);
    icl_gguf_model_close(gm);
    return m;
}

icl_model *icl_model_load_gguf(const char *path, char *err, size_t errsz) { return load_gguf(path, 0, err, errsz); }

icl_model *icl_model_load_gguf_quantized(const char *path, char *err, size_t errsz)
{
    return load_gguf(path, 1, err, errsz);
}

int icl_is_gguf_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char b[4];
    int ok = read(fd, b, 4) == 4 && !memcmp(b, "GGUF", 4);
    close(fd);
    return ok;
}

/* ------------------------------------------------------------------ writing */

int icl_gguf_file_type_of(uint32_t t)
{
    switch (t) {
    case ICL_GGML_F32: return 0;
    case ICL_GGML_F16: return 1;
    case ICL_GGML_Q4_0: return 2;
    case ICL_GGML_Q4_1: return 3;
    case ICL_GGML_Q8_0: return 7;
    case ICL_GGML_BF16: return 32;
    default: return -1;
    }
}

void icl_gguf_set_hparams(icl_gguf_writer *w, const icl_config *c)
{
    const char *arch = c->model_type;
    char k[128];
#define K(s) (snprintf(k, sizeof k, "%s.%s", arch, s), k)
    icl_gguf_set_u32(w, K("context_length"), (uint32_t)c->max_position_embeddings);
    icl_gguf_set_u32(w, K("embedding_length"), (uint32_t)c->hidden_size);
    icl_gguf_set_u32(w, K("block_count"), (uint32_t)c->num_hidden_layers);
    icl_gguf_set_u32(w, K("feed_forward_length"), (uint32_t)c->intermediate_size);
    icl_gguf_set_u32(w, K("attention.head_count"), (uint32_t)c->num_attention_heads);
    if (c->arch == ICL_ARCH_GPT2) {
        icl_gguf_set_f32(w, K("attention.layer_norm_epsilon"), (float)c->norm_eps);
    } else {
        icl_gguf_set_u32(w, K("attention.head_count_kv"), (uint32_t)c->num_key_value_heads);
        icl_gguf_set_f32(w, K("rope.freq_base"), (float)c->rope_theta);
        icl_gguf_set_f32(w, K("attention.layer_norm_rms_epsilon"), (float)c->norm_eps);
        icl_gguf_set_u32(w, K("rope.dimension_count"), (uint32_t)c->head_dim);
        if (c->head_dim * c->num_attention_heads != c->hidden_size) {
            icl_gguf_set_u32(w, K("attention.key_length"), (uint32_t)c->head_dim);
            icl_gguf_set_u32(w, K("attention.value_length"), (uint32_t)c->head_dim);
        }
        icl_gguf_set_u32(w, K("vocab_size"), (uint32_t)c->vocab_size);
    }
#undef K
}

int icl_gguf_save_model(const icl_model *m, const char *path, uint32_t type, const icl_gguf *extra, int extra_types,
                        icl_gguf_tok_writer tok, char *err, size_t errsz)
{
    const icl_config *c = &m->cfg;
    if (icl_gguf_file_type_of(type) < 0) {
        icl_seterr(err, errsz, "%s: cannot write tensors as %s (F32, F16, BF16, Q8_0, Q4_0, Q4_1)", path,
                   icl_ggml_type_name(type) ? icl_ggml_type_name(type) : "an unknown type");
        return -1;
    }
    int nrows;
    const icl_gguf_tensor_map *tab = icl_gguf_arch_table(c->model_type, &nrows);
    if (!tab) {
        icl_seterr(err, errsz, "%s: model_type %s has no GGUF mapping", path, c->model_type);
        return -1;
    }
    const char *arch = c->model_type;
    /* extra's keys describe a model of this architecture: another's ARCH.*
     * keys and tokenizer, or a LoRA adapter's general.type and adapter.*,
     * would make a file that is no such model */
    icl_gguf_str es;
    if (extra && icl_gguf_get_str(extra, "general.type", &es, NULL, 0) == 0 && !(es.len == 5 && !memcmp(es.p, "model", 5))) {
        icl_seterr(err, errsz, "%s: general.type is \"%.*s\", not a model: its metadata cannot be a model's",
                   icl_gguf_name(extra), (int)(es.len < 40 ? es.len : 40), es.p);
        return -1;
    }
    if (extra && (icl_gguf_get_str(extra, "general.architecture", &es, NULL, 0) != 0 || es.len != strlen(arch) ||
                  memcmp(es.p, arch, es.len))) {
        icl_seterr(err, errsz, "%s: its general.architecture is not \"%s\", the model's: its metadata cannot be this "
                   "model's", icl_gguf_name(extra), arch);
        return -1;
    }
    icl_gguf_writer *w = icl_gguf_writer_new();
    icl_gguf_set_str(w, "general.architecture", arch, strlen(arch));
    if (extra)
        for (int i = 0; i < icl_gguf_n_kv(extra); i++) {
            const icl_gguf_kv *kv = icl_gguf_kv_at(extra, i);
            size_t al = strlen(arch);
            if (!strcmp(kv->key, "general.architecture") || !strcmp(kv->key, "general.alignment") ||
                !strcmp(kv->key, "general.file_type") || (!strncmp(kv->key, arch, al) && kv->key[al] == '.'))
                continue;
            icl_gguf_set_kv(w, kv);
        }
    if (!extra || !icl_gguf_find_kv(extra, "general.name"))
        icl_gguf_set_str(w, "general.name", "icl", 3);
    icl_gguf_set_hparams(w, c);
    /* the file type names the matrices' main type, set again below from
     * the types written (here for its place among the keys) */
    icl_gguf_set_u32(w, "general.file_type", (uint32_t)icl_gguf_file_type_of(type));
    /* special token ids from the config unless the source GGUF had them */
    static const char *const idk[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                      "tokenizer.ggml.padding_token_id"};
    int ids[3] = {c->bos_token_id, c->n_eos ? c->eos_token_id[0] : -1, c->pad_token_id};
    for (int i = 0; i < 3; i++)
        if (ids[i] >= 0 && (!extra || !icl_gguf_find_kv(extra, idk[i])))
            icl_gguf_set_u32(w, idk[i], (uint32_t)ids[i]);
    int rc = -1;
    if (tok && tok(w, m->src_dir, err, errsz))
        goto out;
    /* tensors */
    void **bufs = xcalloc(2 * (size_t)m->base.n_views + 2, sizeof *bufs);
    int nb = 0, ntype[40] = {0}; /* matrices written per ggml type */
    for (int r = 0; r < nrows; r++) {
        const icl_gguf_tensor_map *row = &tab[r];
        if (!row_needed(c, row))
            continue;
        int per_layer = strstr(row->hf, "%d") != NULL;
        for (int l = 0; l < (per_layer ? c->num_hidden_layers : 1); l++) {
            char hf[128], gn[128];
            snprintf(hf, sizeof hf, row->hf, l);
            snprintf(gn, sizeof gn, row->gguf, l);
            const icl_param_view *v = icl_model_view(m, hf);
            if (!v) {
                icl_seterr(err, errsz, "%s: the model has no tensor %s", path, hf);
                goto free_bufs;
            }
            int64_t shape[2] = {v->shape[0], v->ndim > 1 ? v->shape[1] : 0}, ne[2];
            int nd;
            gguf_ne(row, shape, &nd, ne);
            const float *src = m->base.params + v->offset;
            float *lay = NULL;
            if (row->xform != ICL_GGUF_AS_IS) {
                lay = xmalloc(v->numel * sizeof *lay);
                bufs[nb++] = lay;
                if (row->xform == ICL_GGUF_TRANSPOSE)
                    transpose(src, lay, shape[0], shape[1]); /* HF [in, out] -> GGUF [out, in] */
                else
                    icl_gguf_permute_rows(src, lay, row->xform == ICL_GGUF_PERMUTE_Q ? c->num_attention_heads
                                                                                     : c->num_key_value_heads,
                                          c->head_dim, shape[1] ? (size_t)shape[1] : 1, 1);
                src = lay;
            }
            uint32_t tt = nd == 1 ? ICL_GGML_F32 : type;
            /* Q4_0/Q4_1: the output head (output.weight, or the token
             * embedding when the embeddings are tied) in Q8_0, as llama.cpp's
             * quantizer gives it a higher type (Q6_K, not written here): in
             * 4 bits it costs SmolLM2-135M 6% of its perplexity */
            if ((type == ICL_GGML_Q4_0 || type == ICL_GGML_Q4_1) && nd == 2 &&
                (!strcmp(row->role, "output") || (!strcmp(row->role, "token_embd") && !row_needed_output(c))))
                tt = ICL_GGML_Q8_0;
            const icl_gguf_tensor *like = extra && extra_types ? icl_gguf_find_tensor(extra, gn) : NULL;
            if (like && icl_gguf_file_type_of(like->type) >= 0)
                tt = like->type; /* the type the source file had */
            if (icl_ggml_row_size(tt, ne[0]) == 0)
                tt = ICL_GGML_F32; /* rows not a whole number of blocks: kept as F32 */
            const void *data = src;
            size_t nbytes = v->numel * sizeof(float);
            if (tt != ICL_GGML_F32) {
                nbytes = icl_ggml_row_size(tt, ne[0]) * (size_t)ne[1];
                void *q = xmalloc(nbytes);
                bufs[nb++] = q;
                if (icl_quant_check_range(tt, src, (int64_t)v->numel, gn, err, errsz) ||
                    icl_quantize(tt, src, (int64_t)v->numel, q, nbytes, gn, err, errsz))
                    goto free_bufs;
                data = q;
            }
            if (icl_gguf_add_tensor(w, gn, tt, nd, ne, data, nbytes, err, errsz))
                goto free_bufs;
            if (nd == 2 && tt < 40)
                ntype[tt]++;
        }
    }
    /* "mostly" that type, as llama.cpp's file types say (the head's Q8_0
     * does not make a Q4_1 file Q8_0): with the source's types (--like
     * without --type) its own file type when it has one, else the type of
     * most matrices among those with a file type, else type's */
    uint64_t eft;
    int most = -1;
    for (int t = 0; t < 40; t++)
        if (ntype[t] && icl_gguf_file_type_of((uint32_t)t) >= 0 && (most < 0 || ntype[t] > ntype[most]))
            most = t;
    if (extra && extra_types && icl_gguf_get_uint(extra, "general.file_type", &eft, NULL, 0) == 0 && eft < 1024)
        icl_gguf_set_u32(w, "general.file_type", (uint32_t)eft);
    else if (extra && extra_types && most >= 0)
        icl_gguf_set_u32(w, "general.file_type", (uint32_t)icl_gguf_file_type_of((uint32_t)most));
    if (c->rope_llama3) { /* as llama.cpp's converter: the divisors of each frequency */
        float *rf = xmalloc((size_t)(c->head_dim / 2) * sizeof *rf);
        bufs[nb++] = rf;
        icl_gguf_llama3_rope_factors(c, rf);
        int64_t ne[1] = {c->head_dim / 2};
        if (icl_gguf_add_tensor(w, "rope_freqs.weight", ICL_GGML_F32, 1, ne, rf, (size_t)ne[0] * sizeof *rf, err,
                                errsz))
            goto free_bufs;
    }
    rc = icl_gguf_write(w, path, err, errsz);
free_bufs:
    for (int i = 0; i < nb; i++)
        free(bufs[i]);
    free(bufs);
out:
    icl_gguf_writer_free(w);
    return rc;
}
