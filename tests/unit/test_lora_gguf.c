/* test_lora_gguf.c - icl_lora_save_gguf: PEFT adapter folders as llama.cpp
 * LoRA adapter GGUFs, read back with icl's GGUF reader.
 *   - PEFT's own adapter (tests/data/lora-llama-tiny/adapter, PEFT 0.21):
 *     the keys llama-adapter.cpp checks (general.type, general.architecture,
 *     adapter.type, adapter.lora.alpha) and the base's llama.* keys, the
 *     tensor names, order, ne and types; lora_a is PEFT's lora_A bit for bit,
 *     lora_b un-permuted (icl_gguf_permute_rows GGUF -> HF) is PEFT's lora_B
 *     bit for bit, and the q_proj lora_b really is permuted;
 *   - what llama.cpp computes, W_gguf + alpha/r * lora_b lora_a, equals the
 *     merged model (icl_lora_merge, equal to PEFT's merge_and_unload in
 *     test_lora.c) exported to GGUF by icl_gguf_save_model, for every module
 *     of an all-linear adapter on llama-tiny (GQA: 4 q heads, 2 kv heads, so
 *     both permutations) and on gpt2-tiny (Conv1D, stored transposed);
 *   - rsLoRA's alpha, the F16/BF16/Q8_0 encodings;
 *   - refused by name, nothing written: lm_head of a tied base, a module
 *     llama.cpp's table lacks, a layer past the base's, an embedding, a
 *     missing base, lora_alpha 0, a type convert_lora_to_gguf.py does not
 *     write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_model.h"
#include "lora.h"
#include "model.h"
#include "quant.h"
#include "rng.h"
#include "safetensors.h"
#include "util.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/data"
#endif
#define ADAPTER TEST_DATA "/lora-llama-tiny/adapter"
#define LLAMA TEST_DATA "/model/llama-tiny/model"
#define GPT2 TEST_DATA "/model/gpt2-tiny/model"
#define QWEN2 TEST_DATA "/model/qwen2-tiny/model"

static char tmp[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/icl-test-lora-gguf.XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static const char *kv_str(const icl_gguf *g, const char *key, char *buf, size_t n)
{
    icl_gguf_str s;
    assert_int_equal(icl_gguf_get_str(g, key, &s, NULL, 0), 0);
    snprintf(buf, n, "%.*s", (int)s.len, s.p);
    return buf;
}

static void peft_adapter(void **state)
{
    (void)state;
    char out[128], err[512], b[64];
    snprintf(out, sizeof out, "%s/peft.gguf", tmp);
    assert_int_equal(icl_lora_save_gguf(ADAPTER, LLAMA, out, ICL_GGML_F32, err, sizeof err), 0);
    icl_gguf *g = icl_gguf_open(out, err, sizeof err);
    assert_non_null(g);
    assert_string_equal(kv_str(g, "general.type", b, sizeof b), "adapter");
    assert_string_equal(kv_str(g, "general.architecture", b, sizeof b), "llama");
    assert_string_equal(kv_str(g, "adapter.type", b, sizeof b), "lora");
    assert_int_equal(icl_gguf_find_kv(g, "adapter.lora.alpha")->type, ICL_GGUF_FLOAT32);
    double alpha;
    assert_int_equal(icl_gguf_get_float(g, "adapter.lora.alpha", &alpha, NULL, 0), 0);
    assert_true(alpha == 8.0);
    int64_t v;
    assert_int_equal(icl_gguf_get_int(g, "llama.attention.head_count", &v, NULL, 0), 0);
    assert_int_equal(v, 4);
    assert_int_equal(icl_gguf_get_int(g, "llama.attention.head_count_kv", &v, NULL, 0), 0);
    assert_int_equal(v, 2);
    assert_int_equal(icl_gguf_get_int(g, "llama.block_count", &v, NULL, 0), 0);
    assert_int_equal(v, 2);
    /* targets q_proj, v_proj, down_proj (r 4) in 2 layers, in layer order */
    static const struct {
        const char *name;
        int64_t ne0, ne1;
        const char *peft;
    } want[] = {
        {"blk.0.attn_q.weight.lora_a", 64, 4, "model.layers.0.self_attn.q_proj.lora_A"},
        {"blk.0.attn_q.weight.lora_b", 4, 64, "model.layers.0.self_attn.q_proj.lora_B"},
        {"blk.0.attn_v.weight.lora_a", 64, 4, "model.layers.0.self_attn.v_proj.lora_A"},
        {"blk.0.attn_v.weight.lora_b", 4, 32, "model.layers.0.self_attn.v_proj.lora_B"},
        {"blk.0.ffn_down.weight.lora_a", 160, 4, "model.layers.0.mlp.down_proj.lora_A"},
        {"blk.0.ffn_down.weight.lora_b", 4, 64, "model.layers.0.mlp.down_proj.lora_B"},
        {"blk.1.attn_q.weight.lora_a", 64, 4, "model.layers.1.self_attn.q_proj.lora_A"},
        {"blk.1.attn_q.weight.lora_b", 4, 64, "model.layers.1.self_attn.q_proj.lora_B"},
        {"blk.1.attn_v.weight.lora_a", 64, 4, "model.layers.1.self_attn.v_proj.lora_A"},
        {"blk.1.attn_v.weight.lora_b", 4, 32, "model.layers.1.self_attn.v_proj.lora_B"},
        {"blk.1.ffn_down.weight.lora_a", 160, 4, "model.layers.1.mlp.down_proj.lora_A"},
        {"blk.1.ffn_down.weight.lora_b", 4, 64, "model.layers.1.mlp.down_proj.lora_B"},
    };
    assert_int_equal(icl_gguf_n_tensors(g), 12);
    icl_st_file *f = icl_st_open(ADAPTER "/adapter_model.safetensors", err, sizeof err);
    assert_non_null(f);
    for (int i = 0; i < 12; i++) {
        const icl_gguf_tensor *t = icl_gguf_tensor_at(g, i);
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->type, ICL_GGML_F32);
        assert_int_equal(t->n_dims, 2);
        assert_int_equal(t->ne[0], want[i].ne0);
        assert_int_equal(t->ne[1], want[i].ne1);
        char pn[160];
        snprintf(pn, sizeof pn, "base_model.model.%s.weight", want[i].peft);
        const icl_st_tensor *p = icl_st_find(f, pn);
        assert_non_null(p);
        size_t n = (size_t)t->nelements;
        float *peft = malloc(n * sizeof *peft), *got = malloc(n * sizeof *got);
        assert_int_equal(icl_st_read_f32(p, peft, n, err, sizeof err), 0);
        memcpy(got, t->data, n * sizeof *got);
        if (strstr(t->name, "attn_q.weight.lora_b")) {
            assert_memory_not_equal(got, peft, n * sizeof *got); /* permuted... */
            float *hf = malloc(n * sizeof *hf);
            icl_gguf_permute_rows(got, hf, 4, 16, 4, 0); /* ...and un-permuted: PEFT's */
            memcpy(got, hf, n * sizeof *got);
            free(hf);
        }
        assert_memory_equal(got, peft, n * sizeof *got);
        free(peft);
        free(got);
    }
    icl_st_close(f);
    icl_gguf_close(g);
}

/* An adapter folder for base over targets with random A and B (B is zero
 * after attaching), written by icl_lora_save. */
static void make_adapter(const char *base, const char *targets, int rslora, const char *dir)
{
    char err[512];
    icl_model *m = icl_model_load(base, err, sizeof err);
    assert_non_null(m);
    icl_lora_config c = {.r = 4, .lora_alpha = 6, .use_rslora = rslora};
    assert_int_equal(icl_lora_set_targets(&c, &m->cfg, targets, err, sizeof err), 0);
    c.base_model_name_or_path = strdup(base);
    icl_param_set *s = icl_lora_attach(m, &c, 7, err, sizeof err);
    assert_non_null(s);
    icl_rng r;
    icl_rng_seed(&r, 11, 0);
    for (size_t i = 0; i < s->num_params; i++)
        s->params[i] = (float)(icl_rng_normal(&r) * 0.3);
    assert_int_equal(icl_lora_save(m, &c, dir, err, sizeof err), 0);
    icl_lora_config_free(&c);
    icl_model_free(m);
}

/* llama.cpp's forward with the adapter uses W x + s * lora_b (lora_a x) per
 * GGUF tensor, s = adapter.lora.alpha / r: that must be the merged model's
 * GGUF weight, for every adapted module. */
static void check_like_merged(const char *base, const char *adapter, int n_expected)
{
    char err[512], lp[128], bp[128], mp[128];
    snprintf(lp, sizeof lp, "%s/lora.gguf", tmp);
    snprintf(bp, sizeof bp, "%s/base.gguf", tmp);
    snprintf(mp, sizeof mp, "%s/merged.gguf", tmp);
    assert_int_equal(icl_lora_save_gguf(adapter, NULL, lp, ICL_GGML_F32, err, sizeof err), 0);
    icl_model *m = icl_model_load(base, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(icl_gguf_save_model(m, bp, ICL_GGML_F32, NULL, 0, NULL, err, sizeof err), 0);
    assert_int_equal(icl_lora_merge(m, adapter, 1.0, err, sizeof err), 0);
    assert_int_equal(icl_gguf_save_model(m, mp, ICL_GGML_F32, NULL, 0, NULL, err, sizeof err), 0);
    icl_model_free(m);
    icl_gguf *gl = icl_gguf_open(lp, err, sizeof err), *gb = icl_gguf_open(bp, err, sizeof err),
             *gm = icl_gguf_open(mp, err, sizeof err);
    assert_true(gl && gb && gm);
    double alpha;
    assert_int_equal(icl_gguf_get_float(gl, "adapter.lora.alpha", &alpha, NULL, 0), 0);
    assert_int_equal(icl_gguf_n_tensors(gl), 2 * n_expected);
    int checked = 0;
    for (int i = 0; i < icl_gguf_n_tensors(gl); i += 2) {
        const icl_gguf_tensor *ta = icl_gguf_tensor_at(gl, i), *tb = icl_gguf_tensor_at(gl, i + 1);
        size_t la = strlen(ta->name);
        assert_true(la > 7 && !strcmp(ta->name + la - 7, ".lora_a"));
        assert_true(!strncmp(ta->name, tb->name, la - 7) && !strcmp(tb->name + la - 7, ".lora_b"));
        char wn[96];
        snprintf(wn, sizeof wn, "%.*s", (int)(la - 7), ta->name);
        const icl_gguf_tensor *W = icl_gguf_find_tensor(gb, wn), *M = icl_gguf_find_tensor(gm, wn);
        assert_true(W && M);
        /* the shapes llama-adapter.cpp checks */
        int64_t in = W->ne[0], out = W->ne[1], r = ta->ne[1];
        assert_int_equal(ta->ne[0], in);
        assert_int_equal(tb->ne[1], out);
        assert_int_equal(tb->ne[0], r);
        float s = (float)(alpha / (double)r);
        const float *A = ta->data, *B = tb->data, *w = W->data, *mw = M->data;
        double maxd = 0, maxl = 0;
        for (int64_t o = 0; o < out; o++)
            for (int64_t k = 0; k < in; k++) {
                double d = 0;
                for (int64_t j = 0; j < r; j++)
                    d += (double)B[o * r + j] * A[j * in + k];
                double got = w[o * in + k] + s * d, e = fabs(got - mw[o * in + k]);
                maxd = e > maxd ? e : maxd;
                maxl = fabs(s * d) > maxl ? fabs(s * d) : maxl;
            }
        if (!(maxd <= 1e-5 * (1 + maxl)) || !(maxl > 1e-2))
            fail_msg("%s: W + s B A differs from the merged GGUF by %g (largest delta %g)", wn, maxd, maxl);
        checked++;
    }
    assert_int_equal(checked, n_expected);
    icl_gguf_close(gl);
    icl_gguf_close(gb);
    icl_gguf_close(gm);
}

static void llama_all_linear_like_merged(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/llama-all", tmp);
    make_adapter(LLAMA, "all-linear", 0, dir);
    check_like_merged(LLAMA, dir, 2 * 7);
}

static void gpt2_like_merged(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/gpt2-all", tmp);
    make_adapter(GPT2, "all-linear", 0, dir); /* c_attn, c_proj, c_fc, mlp.c_proj */
    icl_model *m = icl_model_load(GPT2, NULL, 0);
    int L = m->cfg.num_hidden_layers;
    icl_model_free(m);
    check_like_merged(GPT2, dir, 4 * L);
}

static void qwen2_rslora_like_merged(void **state)
{
    (void)state;
    char dir[128], p[160], err[512];
    snprintf(dir, sizeof dir, "%s/qwen2-rs", tmp);
    make_adapter(QWEN2, "q_proj,k_proj,o_proj", 1, dir);
    icl_model *m = icl_model_load(QWEN2, NULL, 0);
    int L = m->cfg.num_hidden_layers;
    icl_model_free(m);
    check_like_merged(QWEN2, dir, 3 * L);
    snprintf(p, sizeof p, "%s/lora.gguf", tmp);
    icl_gguf *g = icl_gguf_open(p, err, sizeof err);
    double alpha;
    assert_int_equal(icl_gguf_get_float(g, "adapter.lora.alpha", &alpha, NULL, 0), 0);
    assert_float_equal(alpha, (float)(6 * 2.0), 0); /* alpha sqrt(r): llama.cpp's alpha / r is alpha / sqrt(r) */
    icl_gguf_close(g);
}

static void types(void **state)
{
    (void)state;
    char out[128], err[512];
    snprintf(out, sizeof out, "%s/t.gguf", tmp);
    icl_gguf *f32g;
    char f32p[128];
    snprintf(f32p, sizeof f32p, "%s/t32.gguf", tmp);
    assert_int_equal(icl_lora_save_gguf(ADAPTER, LLAMA, f32p, ICL_GGML_F32, err, sizeof err), 0);
    assert_non_null(f32g = icl_gguf_open(f32p, err, sizeof err));
    static const struct {
        uint32_t type, a_type, b_type;
        int ftype;
        double tol;
    } cases[] = {
        {ICL_GGML_F16, ICL_GGML_F16, ICL_GGML_F16, 1, 1e-3},
        {ICL_GGML_BF16, ICL_GGML_BF16, ICL_GGML_BF16, 32, 8e-3},
        {ICL_GGML_Q8_0, ICL_GGML_Q8_0, ICL_GGML_F32, 7, 1e-2}, /* lora_b rows of r = 4: not a Q8_0 block */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        assert_int_equal(icl_lora_save_gguf(ADAPTER, LLAMA, out, cases[c].type, err, sizeof err), 0);
        icl_gguf *g = icl_gguf_open(out, err, sizeof err);
        assert_non_null(g);
        int64_t ft;
        assert_int_equal(icl_gguf_get_int(g, "general.file_type", &ft, NULL, 0), 0);
        assert_int_equal(ft, cases[c].ftype);
        for (int i = 0; i < icl_gguf_n_tensors(g); i++) {
            const icl_gguf_tensor *t = icl_gguf_tensor_at(g, i), *r = icl_gguf_tensor_at(f32g, i);
            assert_string_equal(t->name, r->name);
            assert_int_equal(t->type, strstr(t->name, "lora_a") ? cases[c].a_type : cases[c].b_type);
            float *d = malloc((size_t)t->nelements * sizeof *d);
            assert_int_equal(icl_dequantize(t->type, t->data, t->nbytes, d, t->nelements, t->name, err, sizeof err), 0);
            const float *x = r->data;
            double mx = 0, e = 0;
            for (int64_t j = 0; j < t->nelements; j++) {
                mx = fabs(x[j]) > mx ? fabs(x[j]) : mx;
                e = fabs(d[j] - x[j]) > e ? fabs(d[j] - x[j]) : e;
            }
            if (!(e <= cases[c].tol * mx))
                fail_msg("%s as %s: error %g of %g", t->name, icl_ggml_type_name(t->type), e, mx);
            free(d);
        }
        icl_gguf_close(g);
    }
    icl_gguf_close(f32g);
    assert_int_equal(icl_lora_save_gguf(ADAPTER, LLAMA, out, ICL_GGML_Q4_0, err, sizeof err), -1);
    assert_non_null(strstr(err, "F32, F16, BF16 or Q8_0, not Q4_0"));
}

static void hostile(void **state)
{
    (void)state;
    char dir[128], p[200], out[128], err[512];
    snprintf(dir, sizeof dir, "%s/bad", tmp);
    snprintf(out, sizeof out, "%s/bad.gguf", tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    write_text(p, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"], "
                  "\"base_model_name_or_path\": \"no/such/base\"}");
    float A[4 * 160] = {1}, B[96 * 4] = {1};
    icl_st_entry e[4] = {
        {.name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", .data = A, .ndim = 2, .shape = {4, 64}},
        {.name = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", .data = B, .ndim = 2, .shape = {64, 4}},
        {.name = "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", .data = A, .ndim = 2, .shape = {4, 64}},
        {.name = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", .data = B, .ndim = 2, .shape = {64, 4}},
    };
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    assert_int_equal(icl_st_write(p, e, 4, err, sizeof err), 0);
    /* the base: named by the adapter and missing, or given and not a model */
    assert_int_equal(icl_lora_save_gguf(dir, NULL, out, ICL_GGML_F32, err, sizeof err), -1);
    assert_non_null(strstr(err, "/adapter_config.json: the base model \"no/such/base\" (base_model_name_or_path) is neither no/such/base (from the current folder) nor "));
    assert_int_equal(icl_lora_save_gguf(dir, ADAPTER, out, ICL_GGML_F32, err, sizeof err), -1);
    assert_non_null(strstr(err, "config.json"));
    /* the same adapter with a good base is written */
    assert_int_equal(icl_lora_save_gguf(dir, LLAMA, out, ICL_GGML_F32, err, sizeof err), 0);
    assert_int_equal(unlink(out), 0);
    /* its layer 1 missing: target_modules select it, PEFT would leave it untrained */
    assert_int_equal(icl_st_write(p, e, 2, err, sizeof err), 0);
    assert_int_equal(icl_lora_save_gguf(dir, LLAMA, out, ICL_GGML_F32, err, sizeof err), -1);
    assert_non_null(strstr(err, "no tensor base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight: "
                                "adapter_config.json's target_modules [q_proj] select model.layers.1.self_attn.q_proj"));
    assert_non_null(strstr(err, "whose adapter the file lacks: its adapters cover 1 layer, this model has 2 (a truncated "
                                "file, or an adapter of another base model? its adapter_config.json names no/such/base)"));
    assert_int_equal(access(out, F_OK), -1);
    /* a module the config does not select (v_proj for q_proj's layer 1): PEFT would not load it */
    e[2].name = "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight";
    e[3].name = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
    e[3].shape[0] = 32;
    assert_int_equal(icl_st_write(p, e, 4, err, sizeof err), 0);
    assert_int_equal(icl_lora_save_gguf(dir, LLAMA, out, ICL_GGML_F32, err, sizeof err), -1);
    assert_non_null(strstr(err, "tensor base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight adapts "
                                "model.layers.1.self_attn.v_proj, which adapter_config.json's target_modules [q_proj] "
                                "do not select"));
    assert_int_equal(access(out, F_OK), -1);
    static const struct {
        const char *a, *b, *base;
        int64_t ra, ca, rb, cb;
        const char *want;
    } cases[] = {
        /* lm_head of a tied base: llama.cpp's GGUF has no output.weight */
        {"lm_head.lora_A.weight", "lm_head.lora_B.weight", QWEN2, 4, 64, 96, 4, "tied"},
        /* a module llama's table does not have */
        {"model.layers.0.mlp.c_fc.lora_A.weight", "model.layers.0.mlp.c_fc.lora_B.weight", LLAMA, 4, 64, 64, 4,
         "model.layers.0.mlp.c_fc.weight, which is not a matrix of llama.cpp's llama model"},
        {"model.layers.2.self_attn.q_proj.lora_A.weight", "model.layers.2.self_attn.q_proj.lora_B.weight", LLAMA, 4,
         64, 64, 4, "model.layers.2.self_attn.q_proj.weight, which is not a matrix"},
        {"model.layers.0.input_layernorm.lora_A.weight", "model.layers.0.input_layernorm.lora_B.weight", LLAMA, 4,
         64, 64, 4, "not a matrix"},
        {"model.embed_tokens.lora_A.weight", "model.embed_tokens.lora_B.weight", LLAMA, 4, 64, 96, 4, "embedding"},
        /* shapes that do not fit, a rank that is not r */
        {"model.layers.0.self_attn.k_proj.lora_A.weight", "model.layers.0.self_attn.k_proj.lora_B.weight", LLAMA, 4,
         64, 64, 4, "do not fit model.layers.0.self_attn.k_proj.weight [out 32, in 64]"},
        {"model.layers.0.self_attn.q_proj.lora_A.weight", "model.layers.0.self_attn.q_proj.lora_B.weight", LLAMA, 3,
         64, 64, 3, "at r 4"},
        {"model.layers.0.self_attn.q_proj.lora_A.bias", "model.layers.0.self_attn.q_proj.lora_B.weight", LLAMA, 4,
         64, 64, 4, "not a lora_A/lora_B weight"},
        {"model.layers.0.self_attn.q_proj.lora_A.weight", "model.layers.0.self_attn.v_proj.lora_B.weight", LLAMA, 4,
         64, 64, 4, "has no base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char na[128], nb[128];
        snprintf(na, sizeof na, "base_model.model.%s", cases[i].a);
        snprintf(nb, sizeof nb, "base_model.model.%s", cases[i].b);
        icl_st_entry h[2] = {
            {.name = na, .data = A, .ndim = 2, .shape = {cases[i].ra, cases[i].ca}},
            {.name = nb, .data = B, .ndim = 2, .shape = {cases[i].rb, cases[i].cb}},
        };
        assert_int_equal(icl_st_write(p, h, 2, err, sizeof err), 0);
        assert_int_equal(icl_lora_save_gguf(dir, cases[i].base, out, ICL_GGML_F32, err, sizeof err), -1);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: %s", i, err);
        assert_int_equal(access(out, F_OK), -1); /* nothing written */
    }
    /* an empty adapter, alpha 0 */
    assert_int_equal(icl_st_write(p, e, 0, err, sizeof err), 0);
    assert_int_equal(icl_lora_save_gguf(dir, LLAMA, out, ICL_GGML_F32, err, sizeof err), -1);
    assert_non_null(strstr(err, "no lora_A/lora_B pairs"));
    assert_int_equal(icl_st_write(p, e, 2, err, sizeof err), 0);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    write_text(p, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 0, \"target_modules\": [\"q_proj\"]}");
    assert_int_equal(icl_lora_save_gguf(dir, LLAMA, out, ICL_GGML_F32, err, sizeof err), -1);
    assert_non_null(strstr(err, "lora_alpha 0 cannot be written for llama.cpp"));
    assert_int_equal(access(out, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(peft_adapter),
        cmocka_unit_test(llama_all_linear_like_merged),
        cmocka_unit_test(gpt2_like_merged),
        cmocka_unit_test(qwen2_rslora_like_merged),
        cmocka_unit_test(types),
        cmocka_unit_test(hostile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
