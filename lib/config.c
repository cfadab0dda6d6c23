/* config.c - config.json reading and writing (HF keys and defaults). */
#include "config.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "safetensors.h"
#include "util.h"


int icl_config_defaults(icl_config *c, const char *mt)
{
    memset(c, 0, sizeof *c);
    if (!strcmp(mt, "llama") || !strcmp(mt, "qwen2")) {
        int q = mt[0] == 'q';
        c->arch = ICL_ARCH_LLAMA;
        c->vocab_size = q ? 151936 : 32000;
        c->hidden_size = 4096;
        c->intermediate_size = q ? 22016 : 11008;
        c->num_hidden_layers = 32;
        c->num_attention_heads = 32;
        c->max_position_embeddings = q ? 32768 : 2048;
        c->norm_eps = 1e-6;
        c->rope_theta = 10000.0;
        c->qkv_bias = q;
        c->bos_token_id = q ? -1 : 1;
        c->pad_token_id = -1;
        if (!q) {
            c->n_eos = 1;
            c->eos_token_id[0] = 2;
        }
    } else if (!strcmp(mt, "gpt2")) {
        c->arch = ICL_ARCH_GPT2;
        c->vocab_size = 50257;
        c->hidden_size = 768;
        c->num_hidden_layers = 12;
        c->num_attention_heads = 12;
        c->max_position_embeddings = 1024;
        c->norm_eps = 1e-5;
        c->tie_word_embeddings = 1;
        c->qkv_bias = c->o_bias = c->mlp_bias = 1;
        c->bos_token_id = 50256;
        c->pad_token_id = -1;
        c->n_eos = 1;
        c->eos_token_id[0] = 50256;
    } else {
        return -1;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    c->intermediate_size = c->arch == ICL_ARCH_GPT2 ? 4 * c->hidden_size : c->intermediate_size;
    c->num_key_value_heads = c->num_attention_heads;
    c->head_dim = c->hidden_size / c->num_attention_heads;
    return 0;
}

/* Reading helpers: each returns 0 when absent (value untouched), 1 when read, -1 on a type error. */
static int get_int(json_t *o, const char *k, int *v, int nullable, const char *name, char *err, size_t errsz)
{
    json_t *x = json_object_get(o, k);
    if (!x)
        return 0;
    if (json_is_null(x) && nullable) {
        *v = -1;
        return 1;
    }
    double d = json_is_integer(x) ? (double)json_integer_value(x) : json_is_real(x) ? json_real_value(x) : 0.5;
    if (!json_is_number(x) || d < (nullable ? -1 : 0) || d > 1e9 || d != floor(d)) {
        icl_seterr(err, errsz, "%s: \"%s\" must be %s integer", name, k, nullable ? "null or an" : "a non-negative");
        return -1;
    }
    *v = (int)d;
    return 1;
}

static int get_num(json_t *o, const char *k, double *v, const char *name, char *err, size_t errsz)
{
    json_t *x = json_object_get(o, k);
    if (!x)
        return 0;
    if (!json_is_number(x)) {
        icl_seterr(err, errsz, "%s: \"%s\" must be a number", name, k);
        return -1;
    }
    *v = json_number_value(x);
    return 1;
}

static int get_bool(json_t *o, const char *k, int *v, const char *name, char *err, size_t errsz)
{
    json_t *x = json_object_get(o, k);
    if (!x)
        return 0;
    if (!json_is_boolean(x)) {
        icl_seterr(err, errsz, "%s: \"%s\" must be true or false", name, k);
        return -1;
    }
    *v = json_is_true(x);
    return 1;
}

static int get_str(json_t *o, const char *k, const char **v, const char *name, char *err, size_t errsz)
{
    json_t *x = json_object_get(o, k);
    if (!x)
        return 0;
    if (!json_is_string(x)) {
        icl_seterr(err, errsz, "%s: \"%s\" must be a string", name, k);
        return -1;
    }
    *v = json_string_value(x);
    return 1;
}

/* A required integer under one of two names. */
static int need_int(json_t *o, const char *k1, const char *k2, int *v, const char *name, char *err, size_t errsz)
{
    int r = get_int(o, k1, v, 0, name, err, errsz);
    if (r == 0 && k2)
        r = get_int(o, k2, v, 0, name, err, errsz);
    if (r == 0)
        icl_seterr(err, errsz, "%s: missing key \"%s\"", name, k1);
    return r == 1 ? 0 : -1;
}

static int read_rope(icl_config *c, json_t *rs, const char *key, const char *name, char *err, size_t errsz)
{
    if (!rs || json_is_null(rs))
        return 0;
    if (!json_is_object(rs)) {
        icl_seterr(err, errsz, "%s: \"%s\" must be null or an object", name, key);
        return -1;
    }
    if (get_num(rs, "rope_theta", &c->rope_theta, name, err, errsz) < 0)
        return -1;
    const char *type = NULL;
    if (get_str(rs, "rope_type", &type, name, err, errsz) < 0 || (!type && get_str(rs, "type", &type, name, err, errsz) < 0))
        return -1;
    if (!type || !strcmp(type, "default"))
        return 0;
    if (strcmp(type, "llama3")) {
        icl_seterr(err, errsz, "%s: %s type \"%s\" is not supported (only default and llama3)", name, key, type);
        return -1;
    }
    c->rope_llama3 = 1;
    c->rope_factor = 8;
    c->rope_low_freq_factor = 1;
    c->rope_high_freq_factor = 4;
    c->rope_original_max_pos = 8192;
    if (get_num(rs, "factor", &c->rope_factor, name, err, errsz) < 0 ||
        get_num(rs, "low_freq_factor", &c->rope_low_freq_factor, name, err, errsz) < 0 ||
        get_num(rs, "high_freq_factor", &c->rope_high_freq_factor, name, err, errsz) < 0 ||
        get_int(rs, "original_max_position_embeddings", &c->rope_original_max_pos, 0, name, err, errsz) < 0)
        return -1;
    if (!(c->rope_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
        !(c->rope_low_freq_factor > 0) || c->rope_original_max_pos <= 0) {
        icl_seterr(err, errsz, "%s: %s: llama3 needs factor > 0, high_freq_factor > low_freq_factor > 0 and "
               "original_max_position_embeddings > 0", name, key);
        return -1;
    }
    return 0;
}

int icl_config_validate(const icl_config *c, const char *name, char *err, size_t errsz)
{
    if (c->vocab_size < 1 || c->hidden_size < 1 || c->intermediate_size < 1 || c->num_hidden_layers < 1 ||
        c->num_attention_heads < 1 || c->num_key_value_heads < 1 || c->head_dim < 1 ||
        c->max_position_embeddings < 1) {
        icl_seterr(err, errsz, "%s: sizes must be positive (vocab_size, hidden_size, intermediate_size, "
               "num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, max_position_embeddings)", name);
        return -1;
    }
    if (c->num_attention_heads % c->num_key_value_heads) {
        icl_seterr(err, errsz, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", name,
               c->num_attention_heads, c->num_key_value_heads);
        return -1;
    }
    if (c->head_dim % 2 && c->arch == ICL_ARCH_LLAMA) {
        icl_seterr(err, errsz, "%s: head_dim %d must be even for rotary embeddings", name, c->head_dim);
        return -1;
    }
    if (c->arch == ICL_ARCH_GPT2 && c->num_attention_heads * c->head_dim != c->hidden_size) {
        icl_seterr(err, errsz, "%s: n_embd %d is not a multiple of n_head %d", name, c->hidden_size,
               c->num_attention_heads);
        return -1;
    }
    /* Keep every weight matrix and the total well inside what the code indexes. */
    double C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, L = c->num_hidden_layers,
           Q = (double)c->num_attention_heads * c->head_dim, K = (double)c->num_key_value_heads * c->head_dim;
    double total = V * C * 2 + L * (C * (Q + 2 * K) + Q * C + 3 * C * I + 4 * C) + C * c->max_position_embeddings;
    if (total > 4e11 || C > 1e6 || I > 1e7 || V > 1e8 || L > 1e4 || c->max_position_embeddings > 1e8) {
        icl_seterr(err, errsz, "%s: sizes are absurd (%.3g parameters)", name, total);
        return -1;
    }
    if (!(c->norm_eps > 0 && c->norm_eps < 1)) {
        icl_seterr(err, errsz, "%s: norm epsilon %g is not in (0, 1)", name, c->norm_eps);
        return -1;
    }
    if (c->arch == ICL_ARCH_LLAMA && !(c->rope_theta > 1)) {
        icl_seterr(err, errsz, "%s: rope_theta %g must be > 1", name, c->rope_theta);
        return -1;
    }
    return 0;
}

/* GPT-2's keys (n_embd... as GPT2Config names them). */
static int read_gpt2(icl_config *c, json_t *o, const char *name, char *err, size_t errsz)
{
    int inner = -1;
    if (get_int(o, "n_inner", &inner, 1, name, err, errsz) < 0)
        return -1;
    c->intermediate_size = inner > 0 ? inner : 4 * c->hidden_size;
    if (get_int(o, "n_positions", &c->max_position_embeddings, 0, name, err, errsz) < 0 ||
        get_num(o, "layer_norm_epsilon", &c->norm_eps, name, err, errsz) < 0)
        return -1;
    const char *act = "gelu_new";
    if (get_str(o, "activation_function", &act, name, err, errsz) < 0)
        return -1;
    if (strcmp(act, "gelu_new") && strcmp(act, "gelu_pytorch_tanh")) {
        icl_seterr(err, errsz, "%s: activation_function \"%.40s\" is not supported (gelu_new, gelu_pytorch_tanh)", name, act);
        return -1;
    }
    return 0;
}

/* The Llama family's keys (llama, qwen2). */
static int read_llama(icl_config *c, json_t *o, const char *name, char *err, size_t errsz)
{
    if (need_int(o, "intermediate_size", NULL, &c->intermediate_size, name, err, errsz))
        return -1;
    int hd = -1;
    if (get_int(o, "num_key_value_heads", &c->num_key_value_heads, 1, name, err, errsz) < 0 ||
        get_int(o, "head_dim", &hd, 1, name, err, errsz) < 0 ||
        get_int(o, "max_position_embeddings", &c->max_position_embeddings, 0, name, err, errsz) < 0 ||
        get_num(o, "rms_norm_eps", &c->norm_eps, name, err, errsz) < 0 ||
        get_num(o, "rope_theta", &c->rope_theta, name, err, errsz) < 0)
        return -1;
    if (c->num_key_value_heads < 0)
        c->num_key_value_heads = c->num_attention_heads;
    if (hd > 0)
        c->head_dim = hd;
    if (read_rope(c, json_object_get(o, "rope_parameters"), "rope_parameters", name, err, errsz) ||
        read_rope(c, json_object_get(o, "rope_scaling"), "rope_scaling", name, err, errsz))
        return -1;
    const char *act = "silu";
    if (get_str(o, "hidden_act", &act, name, err, errsz) < 0)
        return -1;
    if (strcmp(act, "silu")) {
        icl_seterr(err, errsz, "%s: hidden_act \"%.40s\" is not supported (silu)", name, act);
        return -1;
    }
    if (c->model_type[0] == 'l') {
        int ab = 0;
        if (get_bool(o, "attention_bias", &ab, name, err, errsz) < 0 ||
            get_bool(o, "mlp_bias", &c->mlp_bias, name, err, errsz) < 0)
            return -1;
        c->qkv_bias = c->o_bias = ab;
    }
    return 0;
}

/* "eos_token_id": one id, a list of them, or null. */
static int read_eos(icl_config *c, json_t *o, json_t *e, const char *name, char *err, size_t errsz)
{
    c->n_eos = 0;
    if (json_is_array(e)) {
        if (json_array_size(e) > ICL_MAX_EOS) {
            icl_seterr(err, errsz, "%s: \"eos_token_id\" lists more than %d ids", name, ICL_MAX_EOS);
            return -1;
        }
        for (size_t i = 0; i < json_array_size(e); i++) {
            json_t *x = json_array_get(e, i);
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 1000000000) {
                icl_seterr(err, errsz, "%s: \"eos_token_id\"[%zu] must be a non-negative integer", name, i);
                return -1;
            }
            c->eos_token_id[c->n_eos++] = (int)json_integer_value(x);
        }
    } else if (!json_is_null(e)) {
        int v;
        if (get_int(o, "eos_token_id", &v, 0, name, err, errsz) < 0)
            return -1;
        c->eos_token_id[c->n_eos++] = v;
    }
    return 0;
}

int icl_config_parse(icl_config *c, const char *text, size_t len, const char *name, char *err, size_t errsz)
{
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        icl_seterr(err, errsz, "%s:%d: not valid JSON: %s", name, je.line, je.text);
        return -1;
    }
    if (!json_is_object(o)) {
        icl_seterr(err, errsz, "%s: not a JSON object", name);
        json_decref(o);
        return -1;
    }
    const char *mt = NULL;
    if (get_str(o, "model_type", &mt, name, err, errsz) < 0)
        goto fail;
    if (!mt) {
        icl_seterr(err, errsz, "%s: missing key \"model_type\"", name);
        goto fail;
    }
    if (icl_config_defaults(c, mt) < 0) {
        icl_seterr(err, errsz, "%s: model_type \"%.40s\" is not supported (llama, qwen2, gpt2)", name, mt);
        goto fail;
    }
    int g = c->arch == ICL_ARCH_GPT2;
    if (need_int(o, "vocab_size", NULL, &c->vocab_size, name, err, errsz) ||
        need_int(o, g ? "n_embd" : "hidden_size", g ? "hidden_size" : NULL, &c->hidden_size, name, err, errsz) ||
        need_int(o, g ? "n_layer" : "num_hidden_layers", g ? "num_hidden_layers" : NULL, &c->num_hidden_layers, name, err, errsz) ||
        need_int(o, g ? "n_head" : "num_attention_heads", g ? "num_attention_heads" : NULL, &c->num_attention_heads, name, err, errsz))
        goto fail;
    c->num_key_value_heads = c->num_attention_heads;
    c->head_dim = c->num_attention_heads ? c->hidden_size / c->num_attention_heads : 0;
    if (g ? read_gpt2(c, o, name, err, errsz) : read_llama(c, o, name, err, errsz))
        goto fail;
    /* Variants icl does not compute must be refused, not silently computed
     * as the plain model: GPT-2's attention scalings, Qwen2's sliding window. */
    int sw = g, inv = 0, slide = 0;
    if (g && (get_bool(o, "scale_attn_weights", &sw, name, err, errsz) < 0 ||
              get_bool(o, "scale_attn_by_inverse_layer_idx", &inv, name, err, errsz) < 0))
        goto fail;
    if (g && (!sw || inv)) {
        icl_seterr(err, errsz, "%s: %s is not supported (icl scales attention by 1/sqrt(head_dim) only)", name,
                   !sw ? "scale_attn_weights false" : "scale_attn_by_inverse_layer_idx true");
        goto fail;
    }
    if (!g && get_bool(o, "use_sliding_window", &slide, name, err, errsz) < 0)
        goto fail;
    json_t *lt = json_object_get(o, "layer_types");
    for (size_t i = 0; !slide && json_is_array(lt) && i < json_array_size(lt); i++) {
        const char *ty = json_string_value(json_array_get(lt, i));
        slide = !ty || strcmp(ty, "full_attention");
    }
    if (slide) {
        icl_seterr(err, errsz, "%s: sliding-window attention (use_sliding_window, layer_types) is not supported", name);
        goto fail;
    }
    if (get_bool(o, "tie_word_embeddings", &c->tie_word_embeddings, name, err, errsz) < 0 ||
        get_int(o, "bos_token_id", &c->bos_token_id, 1, name, err, errsz) < 0 ||
        get_int(o, "pad_token_id", &c->pad_token_id, 1, name, err, errsz) < 0)
        goto fail;
    json_t *e = json_object_get(o, "eos_token_id");
    if (e && read_eos(c, o, e, name, err, errsz))
        goto fail;
    if (icl_config_validate(c, name, err, errsz))
        goto fail;
    /* defaults (GPT-2's 50256) that do not fit a small vocabulary are dropped */
    if (!json_object_get(o, "bos_token_id") && c->bos_token_id >= c->vocab_size)
        c->bos_token_id = -1;
    if (!e && c->n_eos == 1 && c->eos_token_id[0] >= c->vocab_size)
        c->n_eos = 0;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_id[i] >= c->vocab_size) {
            icl_seterr(err, errsz, "%s: eos_token_id %d is not below vocab_size %d", name, c->eos_token_id[i],
                   c->vocab_size);
            goto fail;
        }
    int ids[2] = {c->bos_token_id, c->pad_token_id};
    for (int i = 0; i < 2; i++)
        if (ids[i] >= c->vocab_size) {
            icl_seterr(err, errsz, "%s: %s %d is not below vocab_size %d", name, i ? "pad_token_id" : "bos_token_id",
                   ids[i], c->vocab_size);
            goto fail;
        }
    c->raw = o;
    return 0;
fail:
    json_decref(o);
    c->raw = NULL;
    return -1;
}

int icl_config_load(icl_config *c, const char *path, char *err, size_t errsz)
{
    size_t n;
    char *text = icl_read_file(path, 64u << 20, &n, err, errsz); /* 64 MB: not a config beyond */
    if (!text) {
        memset(c, 0, sizeof *c);
        return -1;
    }
    int r = icl_config_parse(c, text, n, path, err, errsz);
    free(text);
    return r;
}

void icl_config_free(icl_config *c)
{
    if (c->raw)
        json_decref(c->raw);
    c->raw = NULL;
}

int icl_config_is_eos(const icl_config *c, int id)
{
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_id[i] == id)
            return 1;
    return 0;
}

static json_t *id_or_null(int v) { return v >= 0 ? json_integer(v) : json_null(); }

char *icl_config_dump(const icl_config *c)
{
    json_t *o = c->raw ? json_deep_copy(c->raw) : json_object();
    int g = c->arch == ICL_ARCH_GPT2;
    if (!c->raw) {
        json_t *a = json_array();
        json_array_append_new(a, json_string(g ? "GPT2LMHeadModel" : c->model_type[0] == 'q' ? "Qwen2ForCausalLM"
                                                                                          : "LlamaForCausalLM"));
        json_object_set_new(o, "architectures", a);
        json_object_set_new(o, "model_type", json_string(c->model_type));
    }
    /* the weights icl writes are float32 */
    if (json_object_get(o, "dtype"))
        json_object_set_new(o, "dtype", json_string("float32"));
    if (!c->raw || json_object_get(o, "torch_dtype") || !json_object_get(o, "dtype"))
        json_object_set_new(o, "torch_dtype", json_string("float32"));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    if (g) {
        json_object_set_new(o, "n_embd", json_integer(c->hidden_size));
        json_object_set_new(o, "n_layer", json_integer(c->num_hidden_layers));
        json_object_set_new(o, "n_head", json_integer(c->num_attention_heads));
        json_object_set_new(o, "n_positions", json_integer(c->max_position_embeddings));
        json_object_set_new(o, "n_inner", c->intermediate_size == 4 * c->hidden_size ? json_null()
                                                                                      : json_integer(c->intermediate_size));
        json_object_set_new(o, "layer_norm_epsilon", json_real(c->norm_eps));
        if (!json_object_get(o, "activation_function"))
            json_object_set_new(o, "activation_function", json_string("gelu_new"));
    } else {
        json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
        json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
        json_object_set_new(o, "num_hidden_layers", json_integer(c->num_hidden_layers));
        json_object_set_new(o, "num_attention_heads", json_integer(c->num_attention_heads));
        json_object_set_new(o, "num_key_value_heads", json_integer(c->num_key_value_heads));
        json_object_set_new(o, "head_dim", json_integer(c->head_dim));
        json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
        json_object_set_new(o, "rms_norm_eps", json_real(c->norm_eps));
        json_object_set_new(o, "hidden_act", json_string("silu"));
        json_t *rs = json_null();
        if (c->rope_llama3) {
            rs = json_object();
            json_object_set_new(rs, "rope_type", json_string("llama3"));
            json_object_set_new(rs, "factor", json_real(c->rope_factor));
            json_object_set_new(rs, "low_freq_factor", json_real(c->rope_low_freq_factor));
            json_object_set_new(rs, "high_freq_factor", json_real(c->rope_high_freq_factor));
            json_object_set_new(rs, "original_max_position_embeddings", json_integer(c->rope_original_max_pos));
        }
        /* rope_theta and rope_scaling (transformers 4 keys) always; transformers 5's
         * rope_parameters too when the config read had it, with the same values */
        json_t *rp = json_object_get(o, "rope_parameters");
        if (json_is_object(rp)) {
            json_t *n = c->rope_llama3 ? json_deep_copy(rs) : json_object();
            json_object_set_new(n, "rope_theta", json_real(c->rope_theta));
            if (!c->rope_llama3)
                json_object_set_new(n, "rope_type", json_string("default"));
            json_object_set_new(o, "rope_parameters", n);
        }
        json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
        json_object_set_new(o, "rope_scaling", rs);
        if (c->model_type[0] == 'l') {
            json_object_set_new(o, "attention_bias", json_boolean(c->qkv_bias));
            json_object_set_new(o, "mlp_bias", json_boolean(c->mlp_bias));
        }
    }
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(o, "bos_token_id", id_or_null(c->bos_token_id));
    json_object_set_new(o, "pad_token_id", id_or_null(c->pad_token_id));
    if (c->n_eos == 1) {
        json_object_set_new(o, "eos_token_id", json_integer(c->eos_token_id[0]));
    } else if (c->n_eos == 0) {
        json_object_set_new(o, "eos_token_id", json_null());
    } else {
        json_t *a = json_array();
        for (int i = 0; i < c->n_eos; i++)
            json_array_append_new(a, json_integer(c->eos_token_id[i]));
        json_object_set_new(o, "eos_token_id", a);
    }
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    size_t n = strlen(s);
    s = icl_xrealloc(s, n + 2);
    s[n] = '\n';
    s[n + 1] = 0;
    return s;
}

int icl_config_save(const icl_config *c, const char *path, char *err, size_t errsz)
{
    char *s = icl_config_dump(c);
    int r = icl_write_file_atomic(path, s, strlen(s), err, errsz);
    free(s);
    return r;
}
