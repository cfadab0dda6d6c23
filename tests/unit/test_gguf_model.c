/* lib/gguf_model.c: models from GGUF files and back.
 * Fixtures (tests/data/gguf/make_model_ggufs.py): the tiny models of
 * tests/data/model written as llama.cpp's converter lays them out (checked
 * there against transformers' own GGUF reader), and a Q4_1/Q8_0 llama-tiny
 * with the floats transformers' loader makes of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_model.h"
#include "model.h"
#include "quant.h"
#include "safetensors.h"
#include "util.h"

static const char *const PAIRS[][2] = {
    {"llama-tiny", "llama-tiny"},   {"qwen2-tiny", "qwen2-tiny"},           {"gpt2-tiny", "gpt2-tiny"},
    {"gpt2-inner-tiny", "gpt2-inner-tiny"}, {"llama3-bias-tiny", "llama-bias-tiny"},
};

static icl_model *load(const char *path)
{
    char err[512];
    icl_model *m = icl_model_load(path, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    return m;
}

/* The F32 GGUF loads to the same config sizes and bit-identical parameters
 * as the HF folder (llama q/k un-permuted, gpt2 Conv1D transposed back,
 * ties found). */
static void same_as_folder(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof PAIRS / sizeof PAIRS[0]; k++) {
        char dir[512], gg[512];
        snprintf(dir, sizeof dir, TEST_DATA "/model/%s/model", PAIRS[k][0]);
        snprintf(gg, sizeof gg, TEST_DATA "/gguf/%s.f32.gguf", PAIRS[k][1]);
        icl_model *a = load(dir), *b = load(gg);
        const icl_config *x = &a->cfg, *y = &b->cfg;
        assert_string_equal(x->model_type, y->model_type);
        assert_int_equal(x->vocab_size, y->vocab_size);
        assert_int_equal(x->hidden_size, y->hidden_size);
        assert_int_equal(x->intermediate_size, y->intermediate_size);
        assert_int_equal(x->num_hidden_layers, y->num_hidden_layers);
        assert_int_equal(x->num_attention_heads, y->num_attention_heads);
        assert_int_equal(x->num_key_value_heads, y->num_key_value_heads);
        assert_int_equal(x->head_dim, y->head_dim);
        assert_int_equal(x->max_position_embeddings, y->max_position_embeddings);
        assert_int_equal(x->tie_word_embeddings, y->tie_word_embeddings);
        assert_int_equal(x->qkv_bias, y->qkv_bias);
        assert_int_equal(x->o_bias, y->o_bias);
        assert_int_equal(x->mlp_bias, y->mlp_bias);
        assert_true((float)x->norm_eps == (float)y->norm_eps);
        assert_true((float)x->rope_theta == (float)y->rope_theta);
        assert_int_equal(x->bos_token_id, y->bos_token_id);
        assert_int_equal(x->n_eos ? x->eos_token_id[0] : -1, y->n_eos ? y->eos_token_id[0] : -1);
        assert_int_equal(a->base.num_params, b->base.num_params);
        assert_int_equal(a->base.n_views, b->base.n_views);
        for (int i = 0; i < a->base.n_views; i++) {
            assert_string_equal(a->base.views[i].name, b->base.views[i].name);
            if (memcmp(a->base.params + a->base.views[i].offset, b->base.params + b->base.views[i].offset, a->base.views[i].numel * 4))
                fail_msg("%s: %s differs from the folder's", gg, a->base.views[i].name);
        }
        assert_null(b->src_dir);
        print_message("# %s: %zu parameters bit-identical to the folder\n", PAIRS[k][1], b->base.num_params);
        icl_model_free(a);
        icl_model_free(b);
    }
}

/* Q4_1 matrices, Q8_0 embeddings: the floats transformers' loader gives. */
static void quantized_as_transformers(void **state)
{
    (void)state;
    char err[512];
    icl_model *m = load(TEST_DATA "/gguf/llama-tiny.q4_1.gguf");
    icl_st_file *f = icl_st_open(TEST_DATA "/gguf/llama-tiny.q4_1.expected.safetensors", err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    assert_int_equal(icl_st_count(f), m->base.n_views);
    for (int i = 0; i < m->base.n_views; i++) {
        const icl_param_view *v = &m->base.views[i];
        const icl_st_tensor *t = icl_st_find(f, v->name);
        if (!t)
            fail_msg("expected tensor %s missing", v->name);
        assert_int_equal(t->numel, v->numel);
        if (memcmp(t->data, m->base.params + v->offset, v->numel * 4))
            fail_msg("%s differs from transformers' dequantized tensor", v->name);
    }
    icl_st_close(f);
    icl_model_free(m);
}

static void permutation(void **state)
{
    (void)state;
    /* 2 heads of head_dim 4, rows of 3: HF row h*4 + s*2 + i is GGUF row h*4 + 2i + s */
    float hf[24], gg[24], back[24];
    for (int i = 0; i < 24; i++)
        hf[i] = (float)i;
    icl_gguf_permute_rows(hf, gg, 2, 4, 3, 1);
    static const int gg_row_from_hf[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 3; c++)
            assert_true(gg[r * 3 + c] == hf[gg_row_from_hf[r] * 3 + c]);
    icl_gguf_permute_rows(gg, back, 2, 4, 3, 0);
    assert_memory_equal(back, hf, sizeof hf);
}

/* A copy of src's keys and tensors with changes: drop a tensor, change a
 * tensor's type/ne, add one, set or drop keys. */
typedef struct {
    const char *drop, *add, *setarch, *dropkey;
    const char *retype;
    uint32_t type;
    const float *add_data; /* the added tensor's values (add_n floats); NULL: 4 zeros */
    int add_n;
} edit;

static char *edited(const char *src, const edit *e)
{
    char err[512];
    icl_gguf *g = icl_gguf_open(src, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    icl_gguf_writer *w = icl_gguf_writer_new();
    for (int i = 0; i < icl_gguf_n_kv(g); i++)
        if (!e->dropkey || strcmp(icl_gguf_kv_at(g, i)->key, e->dropkey))
            icl_gguf_set_kv(w, icl_gguf_kv_at(g, i));
    if (e->setarch)
        icl_gguf_set_str(w, "general.architecture", e->setarch, strlen(e->setarch));
    void *blob = xcalloc(1, 1 << 16);
    for (int i = 0; i < icl_gguf_n_tensors(g); i++) {
        const icl_gguf_tensor *t = icl_gguf_tensor_at(g, i);
        if (e->drop && !strcmp(t->name, e->drop))
            continue;
        if (e->retype && !strcmp(t->name, e->retype)) {
            size_t nb = icl_ggml_row_size(e->type, t->ne[0]) * (size_t)(t->nelements / t->ne[0]);
            assert_true(nb > 0 && nb <= (1 << 16));
            assert_int_equal(icl_gguf_add_tensor(w, t->name, e->type, t->n_dims, t->ne, blob, nb, err, sizeof err), 0);
            continue;
        }
        assert_int_equal(icl_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes, err, sizeof err), 0);
    }
    if (e->add) {
        int64_t ne[1] = {e->add_data ? e->add_n : 4};
        assert_int_equal(icl_gguf_add_tensor(w, e->add, ICL_GGML_F32, 1, ne, e->add_data ? (const void *)e->add_data : blob,
                                             (size_t)ne[0] * 4, err, sizeof err), 0);
    }
    char *path = xstrdup("/tmp/icl-ggufm-XXXXXX");
    int fd = mkstemp(path);
    close(fd);
    assert_int_equal(icl_gguf_write(w, path, err, sizeof err), 0);
    icl_gguf_writer_free(w);
    icl_gguf_close(g);
    free(blob);
    return path;
}

static void expect_load_error(const edit *e, const char *want)
{
    char *p = edited(TEST_DATA "/gguf/llama-tiny.f32.gguf", e), err[512] = "";
    icl_model *m = icl_model_load(p, err, sizeof err);
    if (m)
        fail_msg("loaded a bad model (wanted \"%s\")", want);
    if (strncmp(err, p, strlen(p)) || !strstr(err, want))
        fail_msg("error \"%s\" does not name the file and say \"%s\"", err, want);
    print_message("# %s\n", err + strlen(p));
    unlink(p);
    free(p);
}

static void bad_models(void **state)
{
    (void)state;
    edit e;
    e = (edit){.drop = "blk.1.ffn_down.weight"}, expect_load_error(&e, ": missing tensor blk.1.ffn_down.weight (ffn_down for model.layers.1.mlp.down_proj.weight)");
    e = (edit){.add = "blk.0.mystery.weight"}, expect_load_error(&e, ": tensor blk.0.mystery.weight is not part of a llama model");
    e = (edit){.setarch = "mamba"}, expect_load_error(&e, ": architecture \"mamba\" is not supported (llama, qwen2, gpt2)");
    e = (edit){.dropkey = "llama.block_count"}, expect_load_error(&e, ": missing key llama.block_count");
    e = (edit){.retype = "blk.0.attn_v.weight", .type = 20}, expect_load_error(&e, "tensor blk.0.attn_v.weight: ggml type IQ4_NL (20) cannot be dequantized by icl");
    e = (edit){.drop = "token_embd.weight"}, expect_load_error(&e, ": missing tensor token_embd.weight");
    e = (edit){.add = "rope_freqs.weight"}, expect_load_error(&e, ": tensor rope_freqs.weight is not 8 F32 values (half the head size 16)");
    static const float zeros[8], bumpy[8] = {1, 2, 1, 2, 1, 2, 1, 2};
    e = (edit){.add = "rope_freqs.weight", .add_data = zeros, .add_n = 8};
    expect_load_error(&e, ": tensor rope_freqs.weight holds rope frequency factors that are not llama3 rope scaling "
                          "(Llama 3.1+) with the usual low/high frequency factors: not supported");
    e = (edit){.add = "rope_freqs.weight", .add_data = bumpy, .add_n = 8};
    expect_load_error(&e, "that are not llama3 rope scaling (Llama 3.1+)");
    /* a folder that is not a GGUF file still goes to the folder loader */
    char err[256];
    assert_null(icl_model_load(TEST_DATA "/gguf", err, sizeof err));
    assert_non_null(strstr(err, "config.json"));
    assert_int_equal(icl_is_gguf_file(TEST_DATA "/gguf/kinds.gguf"), 1);
    assert_int_equal(icl_is_gguf_file(TEST_DATA "/gguf/make_model_ggufs.py"), 0);
}

/* icl's GGUF writer lays an F32 model out exactly as the reference script
 * (llama.cpp's layout): same tensor names, types, dims and bytes. */
static void save_like_llama_cpp(void **state)
{
    (void)state;
    char err[512];
    for (size_t k = 0; k < sizeof PAIRS / sizeof PAIRS[0]; k++) {
        char dir[512], ref[512], out[] = "/tmp/icl-ggufs-XXXXXX";
        snprintf(dir, sizeof dir, TEST_DATA "/model/%s/model", PAIRS[k][0]);
        snprintf(ref, sizeof ref, TEST_DATA "/gguf/%s.f32.gguf", PAIRS[k][1]);
        if (strstr(PAIRS[k][0], "llama3"))
            continue; /* its reference was written without the rope scaling: llama3_gguf below */
        int fd = mkstemp(out);
        close(fd);
        icl_model *m = load(dir);
        if (icl_gguf_save_model(m, out, ICL_GGML_F32, NULL, 0, NULL, err, sizeof err))
            fail_msg("%s", err);
        icl_gguf *a = icl_gguf_open(ref, err, sizeof err), *b = icl_gguf_open(out, err, sizeof err);
        assert_non_null(a);
        assert_non_null(b);
        int gpt2_copy = !strncmp(PAIRS[k][0], "gpt2", 4) && m->cfg.tie_word_embeddings; /* llama.cpp writes a copy */
        assert_int_equal(icl_gguf_n_tensors(a), icl_gguf_n_tensors(b) + gpt2_copy);
        for (int i = 0; i < icl_gguf_n_tensors(a); i++) {
            const icl_gguf_tensor *x = icl_gguf_tensor_at(a, i), *y = icl_gguf_find_tensor(b, x->name);
            if (!y && gpt2_copy && !strcmp(x->name, "output.weight"))
                continue;
            if (!y)
                fail_msg("%s: icl did not write %s", PAIRS[k][1], x->name);
            assert_int_equal(x->type, y->type);
            assert_int_equal(x->n_dims, y->n_dims);
            assert_memory_equal(x->ne, y->ne, sizeof x->ne);
            if (x->nbytes != y->nbytes || memcmp(x->data, y->data, x->nbytes))
                fail_msg("%s: %s differs", PAIRS[k][1], x->name);
        }
        /* and it loads back to the same parameters */
        icl_model *m2 = load(out);
        assert_int_equal(m2->base.num_params, m->base.num_params);
        assert_memory_equal(m2->base.params, m->base.params, m->base.num_params * 4);
        icl_model_free(m2);
        icl_gguf_close(a);
        icl_gguf_close(b);
        icl_model_free(m);
        unlink(out);
    }
}

static int same_tensors(const char *pa, const char *pb)
{
    char err[512];
    icl_gguf *a = icl_gguf_open(pa, err, sizeof err), *b = icl_gguf_open(pb, err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    int ok = icl_gguf_n_tensors(a) == icl_gguf_n_tensors(b);
    for (int i = 0; ok && i < icl_gguf_n_tensors(a); i++) {
        const icl_gguf_tensor *x = icl_gguf_tensor_at(a, i), *y = icl_gguf_find_tensor(b, x->name);
        ok = y && x->type == y->type && !memcmp(x->ne, y->ne, sizeof x->ne) && x->nbytes == y->nbytes &&
             !memcmp(x->data, y->data, x->nbytes);
        if (!ok)
            print_message("# %s differs\n", x->name);
    }
    icl_gguf_close(a);
    icl_gguf_close(b);
    return ok;
}

/* folder -> GGUF (type) -> folder -> GGUF (type): the two GGUF files have the
 * same tensor bytes; for F32 the first folder's floats come back exactly. */
static void round_trips(void **state)
{
    (void)state;
    static const char *const models[] = {"llama-tiny", "qwen2-tiny", "gpt2-tiny", "gpt2-inner-tiny"};
    static const uint32_t types[] = {ICL_GGML_F32, ICL_GGML_F16, ICL_GGML_BF16, ICL_GGML_Q8_0, ICL_GGML_Q4_0};
    char err[512];
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++)
        for (size_t j = 0; j < sizeof types / sizeof types[0]; j++) {
            char dir[512], a[] = "/tmp/icl-rta-XXXXXX", b[] = "/tmp/icl-rtb-XXXXXX", f[] = "/tmp/icl-rtf-XXXXXX";
            snprintf(dir, sizeof dir, TEST_DATA "/model/%s/model", models[k]);
            close(mkstemp(a));
            close(mkstemp(b));
            assert_non_null(mkdtemp(f));
            icl_model *m0 = load(dir);
            if (icl_gguf_save_model(m0, a, types[j], NULL, 0, NULL, err, sizeof err))
                fail_msg("%s", err);
            icl_model *m1 = load(a);
            if (icl_model_save(m1, f, err, sizeof err))
                fail_msg("%s", err);
            icl_model *m2 = load(f);
            assert_int_equal(m2->base.num_params, m1->base.num_params);
            assert_memory_equal(m2->base.params, m1->base.params, m1->base.num_params * 4);
            if (types[j] == ICL_GGML_F32)
                assert_memory_equal(m1->base.params, m0->base.params, m0->base.num_params * 4);
            if (icl_gguf_save_model(m2, b, types[j], NULL, 0, NULL, err, sizeof err))
                fail_msg("%s", err);
            if (!same_tensors(a, b))
                fail_msg("%s as %s: GGUF -> folder -> GGUF changed tensor data", models[k], icl_ggml_type_name(types[j]));
            icl_model_free(m0);
            icl_model_free(m1);
            icl_model_free(m2);
            char cmd[600];
            snprintf(cmd, sizeof cmd, "rm -rf %s %s %s", a, b, f);
            assert_int_equal(system(cmd), 0);
        }
}

/* --type Q4_0/Q4_1 writes the output head in Q8_0 (llama.cpp's quantizer
 * keeps it in a higher type): output.weight when the model has one, else
 * the tied token embedding; the other matrices in the type asked for. */
static void q4_output_head_q8_0(void **state)
{
    (void)state;
    static const struct {
        const char *model;
        int tied;
    } cases[] = {{"llama-tiny", 0}, {"qwen2-tiny", 1}, {"gpt2-tiny", 1}};
    static const uint32_t types[] = {ICL_GGML_Q4_0, ICL_GGML_Q4_1, ICL_GGML_Q8_0, ICL_GGML_F16};
    char err[512];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (size_t j = 0; j < sizeof types / sizeof types[0]; j++) {
            char dir[512], a[] = "/tmp/icl-q4h-XXXXXX";
            snprintf(dir, sizeof dir, TEST_DATA "/model/%s/model", cases[k].model);
            close(mkstemp(a));
            icl_model *m = load(dir);
            if (icl_gguf_save_model(m, a, types[j], NULL, 0, NULL, err, sizeof err))
                fail_msg("%s", err);
            icl_gguf *g = icl_gguf_open(a, err, sizeof err);
            assert_non_null(g);
            int q4 = types[j] == ICL_GGML_Q4_0 || types[j] == ICL_GGML_Q4_1;
            uint32_t head = q4 ? ICL_GGML_Q8_0 : types[j];
            const icl_gguf_tensor *e = icl_gguf_find_tensor(g, "token_embd.weight"),
                                  *o = icl_gguf_find_tensor(g, "output.weight"),
                                  *b = icl_gguf_find_tensor(g, "blk.0.ffn_up.weight");
            assert_non_null(e);
            assert_non_null(b);
            assert_int_equal(b->type, types[j]);
            if (cases[k].tied) {
                assert_null(o);
                assert_int_equal(e->type, head);
            } else {
                assert_non_null(o);
                assert_int_equal(o->type, head);
                assert_int_equal(e->type, types[j]);
            }
            icl_gguf_close(g);
            icl_model_free(m);
            unlink(a);
        }
}

/* The real model (make deps): GGUF -> float32 model -> GGUF like the source:
 * every Q4_1 and Q8_0 block and every F32 vector comes back byte for byte,
 * with the source's metadata keys. */
static void smollm2_round_trip(void **state)
{
    (void)state;
    const char *p = getenv("ICL_SMOLLM2_GGUF");
    if (!p || access(p, R_OK)) {
        print_message("# SKIP ICL_SMOLLM2_GGUF not set or missing (make deps fetches it)\n");
        skip();
    }
    char err[512], out[] = "/tmp/icl-smol-XXXXXX";
    close(mkstemp(out));
    icl_gguf *src = icl_gguf_open(p, err, sizeof err);
    assert_non_null(src);
    icl_model *m = load(p);
    assert_int_equal(m->cfg.num_hidden_layers, 30);
    assert_int_equal(m->cfg.num_key_value_heads, 3);
    assert_int_equal(m->cfg.tie_word_embeddings, 1);
    assert_true(m->cfg.rope_theta == 100000.0);
    if (icl_gguf_save_model(m, out, ICL_GGML_F32, src, 1, NULL, err, sizeof err))
        fail_msg("%s", err);
    assert_true(same_tensors(p, out));
    icl_gguf *b = icl_gguf_open(out, err, sizeof err);
    assert_int_equal(icl_gguf_n_kv(b), icl_gguf_n_kv(src));
    for (int i = 0; i < icl_gguf_n_kv(src); i++)
        assert_non_null(icl_gguf_find_kv(b, icl_gguf_kv_at(src, i)->key));
    icl_gguf_close(b);
    icl_gguf_close(src);
    icl_model_free(m);
    unlink(out);
}

/* llama3-bias-tiny: theta 10000, head_dim 8, factor 4, low 1, high 4, original 16 */
static const float RF_llama3_bias_tiny[4] = {
    1.5707963705062866f, 4.0f, 4.0f, 4.0f,
};
/* llama-3.2: theta 500000, head_dim 64, factor 32, low 1, high 4, original 8192 */
static const float RF_llama_3_2[32] = {
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.0f, 1.0f, 1.6513291597366333f,
    3.2922627925872803f, 9.666728019714355f, 32.0f, 32.0f,
    32.0f, 32.0f, 32.0f, 32.0f,
    32.0f, 32.0f, 32.0f, 32.0f,
    32.0f, 32.0f, 32.0f, 32.0f,
};
/* llama-3.1: theta 500000, head_dim 128, factor 8, low 1, high 4, original 8192 */
static const float RF_llama_3_1[64] = {
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.2074838876724243f, 1.5534145832061768f, 2.026313304901123f,
    2.6945300102233887f, 3.684253215789795f, 5.257326602935791f, 8.0f,
    8.0f, 8.0f, 8.0f, 8.0f,
    8.0f, 8.0f, 8.0f, 8.0f,
    8.0f, 8.0f, 8.0f, 8.0f,
    8.0f, 8.0f, 8.0f, 8.0f,
    8.0f, 8.0f, 8.0f, 8.0f,
    8.0f, 8.0f, 8.0f, 8.0f,
    8.0f, 8.0f, 8.0f, 8.0f,
};
/* llama-tiny-3.2: theta 10000, head_dim 16, factor 32, low 1, high 4, original 8192 */
static const float RF_llama_tiny_3_2[8] = {
    1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, 1.0f, 7.730889320373535f, 32.0f,
};

/* icl_gguf_llama3_rope_factors against convert_hf_to_gguf.py's formula
 * (tests/data/gguf/llama3_rope_factors.py printed the arrays above). */
static void check_factors(const char *what, double theta, int hd, double factor, double lo, double hi, int old,
                          const float *want)
{
    icl_config c;
    memset(&c, 0, sizeof c);
    c.rope_theta = theta;
    c.head_dim = hd;
    c.rope_llama3 = 1;
    c.rope_factor = factor;
    c.rope_low_freq_factor = lo;
    c.rope_high_freq_factor = hi;
    c.rope_original_max_pos = old;
    float got[64];
    icl_gguf_llama3_rope_factors(&c, got);
    for (int i = 0; i < hd / 2; i++)
        if (!(fabsf(got[i] - want[i]) <= 1e-6f * want[i]))
            fail_msg("%s: factor %d is %.9g, the converter's %.9g", what, i, got[i], want[i]);
}

static void llama3_rope_freqs(void **state)
{
    (void)state;
    check_factors("llama3-bias-tiny", 10000, 8, 4, 1, 4, 16, RF_llama3_bias_tiny);
    check_factors("Llama 3.2", 500000, 64, 32, 1, 4, 8192, RF_llama_3_2);
    check_factors("Llama 3.1", 500000, 128, 8, 1, 4, 8192, RF_llama_3_1);
    check_factors("llama-tiny sizes, Llama 3.2 scaling", 10000, 16, 32, 1, 4, 8192, RF_llama_tiny_3_2);
}

/* llama3 rope scaling through GGUF: the folder's model is written with
 * llama.cpp's rope_freqs.weight, which loads back as the same llama3
 * parameters (so the same rotary tables) and weights; a GGUF such as
 * llama.cpp writes for Llama 3.2 (its tensor on llama-tiny's sizes) loads
 * with Llama 3.2's parameters, and back to a folder's config.json. */
static void llama3_gguf(void **state)
{
    (void)state;
    char err[512], out[] = "/tmp/icl-l3-XXXXXX";
    close(mkstemp(out));
    icl_model *m = load(TEST_DATA "/model/llama3-bias-tiny/model");
    assert_int_equal(m->cfg.rope_llama3, 1);
    if (icl_gguf_save_model(m, out, ICL_GGML_F32, NULL, 0, NULL, err, sizeof err))
        fail_msg("%s", err);
    icl_gguf *g = icl_gguf_open(out, err, sizeof err);
    assert_non_null(g);
    const icl_gguf_tensor *t = icl_gguf_find_tensor(g, "rope_freqs.weight");
    assert_non_null(t);
    assert_int_equal(t->type, ICL_GGML_F32);
    assert_int_equal(t->nelements, 4);
    for (int i = 0; i < 4; i++)
        assert_true(fabsf(((const float *)t->data)[i] - RF_llama3_bias_tiny[i]) <= 1e-6f * RF_llama3_bias_tiny[i]);
    icl_gguf_close(g);
    icl_model *m2 = load(out);
    const icl_config *x = &m->cfg, *y = &m2->cfg;
    assert_int_equal(y->rope_llama3, 1);
    assert_true(y->rope_factor == x->rope_factor && y->rope_low_freq_factor == x->rope_low_freq_factor &&
                y->rope_high_freq_factor == x->rope_high_freq_factor &&
                y->rope_original_max_pos == x->rope_original_max_pos);
    assert_int_equal(m2->base.num_params, m->base.num_params);
    assert_memory_equal(m2->base.params, m->base.params, m->base.num_params * 4);
    icl_model_free(m2);
    icl_model_free(m);
    unlink(out);
    edit e = {.add = "rope_freqs.weight", .add_data = RF_llama_tiny_3_2, .add_n = 8};
    char *p = edited(TEST_DATA "/gguf/llama-tiny.f32.gguf", &e);
    m = load(p);
    assert_int_equal(m->cfg.rope_llama3, 1);
    assert_true(m->cfg.rope_factor == 32 && m->cfg.rope_low_freq_factor == 1 && m->cfg.rope_high_freq_factor == 4 &&
                m->cfg.rope_original_max_pos == 8192);
    icl_model_free(m);
    /* the quantized-blocks loader (QLoRA, icl-gen) takes it too */
    icl_model *q = icl_model_load_gguf_quantized(p, err, sizeof err);
    if (!q)
        fail_msg("%s", err);
    assert_int_equal(q->cfg.rope_llama3, 1);
    icl_model_free(q);
    unlink(p);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_as_folder), cmocka_unit_test(quantized_as_transformers), cmocka_unit_test(permutation),
        cmocka_unit_test(bad_models),     cmocka_unit_test(save_like_llama_cpp), cmocka_unit_test(round_trips), cmocka_unit_test(q4_output_head_q8_0),
        cmocka_unit_test(smollm2_round_trip),
        cmocka_unit_test(llama3_rope_freqs), cmocka_unit_test(llama3_gguf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
