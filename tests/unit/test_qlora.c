/* QLoRA: a model loaded with icl_model_load_gguf_quantized (base weights kept
 * in their GGUF blocks, lib/qlinear.c) against the same GGUF dequantized to
 * float32 (icl_model_load_gguf), with the same LoRA adapters (B made
 * non-zero so every adapter matters):
 *   - loss, logits and every adapter gradient within 1e-5 relative;
 *   - prefill (icl_model_decode) within 1e-5; decode steps (icl_model_step:
 *     icl_qmatvec with int8 activations, compared with float32 in
 *     test_qgen.c) the same bits alone as batched with another sequence;
 *   - the base set holds no matrix: only norms, biases (and GPT-2's wpe);
 *     the blocks take the GGUF's bytes;
 *   - a fused q|k|v whose parts have different types falls back to float32
 *     for that product only;
 *   - under icl_model_set_bf16 (--dtype bf16) the quantized model's logits,
 *     loss and adapter gradients are the bits of the dequantized model's
 *     (ICL_WEIGHT_QBLOCK_BF16 against ICL_WEIGHT_BF16), on the AVX512-BF16
 *     and the portable path;
 *   - icl_model_save refuses a quantized model.
 * Files: tests/data/gguf/llama-tiny.q4_1.gguf (Q4_1 blocks, Q8_0 embedding
 * and untied head), and the tiny models of tests/data/model written by
 * icl's own GGUF writer as Q8_0 (qwen2: biases, tied), Q4_0 (llama with
 * biases, tied: tests/data/gguf/llama-bias-tiny.f32.gguf) and Q4_1 (gpt2:
 * Conv1D layers, tied). */
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

#include "bf16.h"
#include "gguf.h"
#include "gguf_model.h"
#include "model.h"
#include "qlinear.h"
#include "quant.h"
#include "util.h"

static uint64_t rng = 99;
static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / (double)(1ull << 24) * 2 - 1);
}

static double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* Write model (a folder or GGUF under tests/data) as a GGUF of type to a
 * temporary file (path into out). */
static void write_gguf(const char *model, uint32_t type, char *out)
{
    char err[512], p[512];
    snprintf(p, sizeof p, TEST_DATA "/%s", model);
    icl_model *m = icl_model_load(p, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    strcpy(out, "/tmp/icl-qlora-XXXXXX");
    close(mkstemp(out));
    if (icl_gguf_save_model(m, out, type, NULL, 0, NULL, err, sizeof err))
        fail_msg("%s", err);
    icl_model_free(m);
}

/* Rewrite src with blk.0.attn_v.weight re-quantized to Q8_0 (a mixed q|k|v). */
static void write_mixed(const char *src, char *out)
{
    char err[512];
    icl_gguf *g = icl_gguf_open(src, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    icl_gguf_writer *w = icl_gguf_writer_new();
    for (int i = 0; i < icl_gguf_n_kv(g); i++)
        icl_gguf_set_kv(w, icl_gguf_kv_at(g, i));
    void *q8 = NULL;
    float *f = NULL;
    for (int i = 0; i < icl_gguf_n_tensors(g); i++) {
        const icl_gguf_tensor *t = icl_gguf_tensor_at(g, i);
        const void *data = t->data;
        uint32_t type = t->type;
        size_t nb = t->nbytes;
        if (!strcmp(t->name, "blk.0.attn_v.weight")) {
            assert_int_not_equal(t->type, ICL_GGML_Q8_0);
            f = xmalloc((size_t)t->nelements * sizeof *f);
            assert_int_equal(icl_dequantize(t->type, t->data, t->nbytes, f, t->nelements, t->name, err, sizeof err), 0);
            nb = icl_ggml_row_size(ICL_GGML_Q8_0, t->ne[0]) * (size_t)t->ne[1];
            q8 = xmalloc(nb);
            assert_int_equal(icl_quantize(ICL_GGML_Q8_0, f, t->nelements, q8, nb, t->name, err, sizeof err), 0);
            data = q8;
            type = ICL_GGML_Q8_0;
        }
        if (icl_gguf_add_tensor(w, t->name, type, t->n_dims, t->ne, data, nb, err, sizeof err))
            fail_msg("%s", err);
    }
    strcpy(out, "/tmp/icl-qlora-mix-XXXXXX");
    close(mkstemp(out));
    if (icl_gguf_write(w, out, err, sizeof err))
        fail_msg("%s", err);
    icl_gguf_writer_free(w);
    icl_gguf_close(g);
    free(q8);
    free(f);
}

/* Same adapters on both: icl_model_add_lora (same seed), B filled with the
 * same random values. */
static void add_adapters(icl_model *m, int gpt2)
{
    static const char *const llama[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    static const char *const g2[] = {"c_attn", "c_proj", "c_fc"};
    char err[256];
    icl_model_freeze_base(m);
    icl_param_set *s = gpt2 ? icl_model_add_lora(m, g2, 3, 4, 8.0f, 7, err, sizeof err)
                            : icl_model_add_lora(m, llama, 7, 4, 8.0f, 7, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    rng = 99;
    for (int i = 0; i < s->n_views; i++)
        if (strstr(s->views[i].name, "lora_B"))
            for (size_t j = 0; j < s->views[i].numel; j++)
                s->params[s->views[i].offset + j] = 0.1f * frand();
}

/* Sum of the GGUF's tensor bytes of quantized block types (but GPT-2's
 * position embedding, which icl keeps in float32). */
static size_t block_bytes(const char *path)
{
    char err[256];
    icl_gguf *g = icl_gguf_open(path, err, sizeof err);
    assert_non_null(g);
    size_t n = 0;
    for (int i = 0; i < icl_gguf_n_tensors(g); i++) {
        const icl_gguf_tensor *t = icl_gguf_tensor_at(g, i);
        if (icl_ggml_blck_size(t->type) > 1 && strcmp(t->name, "position_embd.weight")) /* wpe: float32 */
            n += t->nbytes;
    }
    icl_gguf_close(g);
    return n;
}

/* Compare the quantized and the float32 loads of path; n_float_views:
 * matrices expected in the quantized model's base set (fallbacks). */
static void compare(const char *path, int expect_fallback_views)
{
    char err[512], sum[256];
    icl_model *f = icl_model_load_gguf(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    icl_model *q = icl_model_load_gguf_quantized(path, err, sizeof err);
    if (!q)
        fail_msg("%s", err);
    const icl_config *c = &f->cfg;
    int gpt2 = c->arch == ICL_ARCH_GPT2, nq = icl_model_qsummary(q, sum, sizeof sum);
    print_message("# %s: %s; base set %zu floats (float32 model: %zu)\n", path, sum, q->base.num_params,
                  f->base.num_params);
    assert_int_equal(icl_model_qsummary(f, NULL, 0), 0);
    /* matrices: token embedding, 4 products per layer (fused), untied head */
    int want = 1 + 4 * c->num_hidden_layers + !c->tie_word_embeddings - (expect_fallback_views ? 1 : 0);
    assert_int_equal(nq, want);
    assert_non_null(q->qdata);
    /* no matrix in the base set but GPT-2's position embedding and the fallbacks */
    int mats = 0;
    for (int i = 0; i < q->base.n_views; i++)
        if (q->base.views[i].ndim == 2)
            mats++;
    assert_int_equal(mats, (gpt2 ? 1 : 0) + expect_fallback_views);
    assert_false(q->base.trainable);
    if (!expect_fallback_views)
        assert_true(q->qbytes >= block_bytes(path) && q->qbytes < block_bytes(path) + 64 * (size_t)(nq + 1));
    /* the same float tensors */
    for (int i = 0; i < q->base.n_views; i++) {
        const icl_param_view *v = &q->base.views[i], *w = icl_model_view(f, v->name);
        assert_non_null(w);
        assert_memory_equal(q->base.params + v->offset, f->base.params + w->offset, v->numel * sizeof(float));
    }
    add_adapters(f, gpt2);
    add_adapters(q, gpt2);
    assert_int_equal(q->lora_set->num_params, f->lora_set->num_params);
    assert_memory_equal(q->lora_set->params, f->lora_set->params, f->lora_set->num_params * sizeof(float));
    /* a batch: 2 rows of 9, random ids */
    enum { B = 2, T = 9 };
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++)
        ids[i] = (int32_t)((frand() + 1) * 0.5 * (c->vocab_size - 1));
    icl_batch b = {B, T, ids, NULL, NULL, NULL, NULL};
    size_t V = (size_t)c->vocab_size;
    float *lf = xmalloc(B * T * V * sizeof(float)), *lq = xmalloc(B * T * V * sizeof(float));
    double Lf = icl_model_forward(f, &b, lf, 0, NULL), Lq = icl_model_forward(q, &b, lq, 0, NULL);
    double rl = rel_l2(lq, lf, B * T * V);
    print_message("#   loss %.9g vs %.9g (float32), logits rel L2 %.2e\n", Lq, Lf, rl);
    assert_true(fabs(Lq - Lf) <= 1e-5 * fabs(Lf));
    assert_true(rl < 1e-5);
    /* training: loss and adapter gradients */
    icl_model_zero_grads(f);
    icl_model_zero_grads(q);
    assert_null(q->base.grads);
    long nt;
    Lf = icl_model_forward(f, &b, NULL, 1.0f / (B * (T - 1)), &nt);
    Lq = icl_model_forward(q, &b, NULL, 1.0f / (B * (T - 1)), &nt);
    assert_int_equal(icl_model_backward(f, &b, err, sizeof err), 0);
    assert_int_equal(icl_model_backward(q, &b, err, sizeof err), 0);
    double rg = rel_l2(q->lora_set->grads, f->lora_set->grads, f->lora_set->num_params);
    print_message("#   training loss %.9g vs %.9g, adapter gradients rel L2 %.2e\n", Lq, Lf, rg);
    assert_true(fabs(Lq - Lf) <= 1e-5 * fabs(Lf));
    assert_true(rg < 1e-5);
    for (int i = 0; i < f->lora_set->n_views; i++) { /* each tensor, too */
        const icl_param_view *v = &f->lora_set->views[i];
        double r = rel_l2(q->lora_set->grads + v->offset, f->lora_set->grads + v->offset, v->numel);
        if (!(r < 1e-5))
            fail_msg("%s: gradient rel L2 %.2e", v->name, r);
    }
    /* decoding: prefill (GEMM) close; steps (icl_qmatvec, int8 activations:
     * their agreement with float32 is test_qgen's) depend only on their own
     * row: a step alone == the same step batched with another sequence */
    icl_kv_cache *kf = icl_kv_cache_new(f, 16), *kq = icl_kv_cache_new(q, 16), *k2 = icl_kv_cache_new(q, 16),
                 *k3 = icl_kv_cache_new(q, 16);
    assert_int_equal(icl_model_decode(f, kf, ids, 5, lf, 0, err, sizeof err), 0);
    assert_int_equal(icl_model_decode(q, kq, ids, 5, lq, 0, err, sizeof err), 0);
    assert_true(rel_l2(lq, lf, V) < 1e-5);
    assert_int_equal(icl_model_decode(q, k2, ids, 5, lq, 0, err, sizeof err), 0);
    assert_int_equal(icl_model_decode(q, k3, ids + T, 5, lq, 0, err, sizeof err), 0);
    float *l2 = xmalloc(2 * V * sizeof(float));
    for (int s = 5; s < 9; s++) {
        icl_kv_cache *pair[2] = {k2, k3};
        int32_t two[2] = {ids[s], ids[T + s]};
        assert_int_equal(icl_model_step(q, &kq, ids + s, 1, lq, err, sizeof err), 0);
        assert_int_equal(icl_model_step(q, pair, two, 2, l2, err, sizeof err), 0);
        if (memcmp(lq, l2, V * sizeof(float)) != 0)
            fail_msg("decode step %d: alone and batched differ (rel L2 %.2e)", s, rel_l2(lq, l2, V));
    }
    free(l2);
    /* icl_linear_set_qdot off: steps run the float32 rows kernel on
     * dequantized tiles, bit-identical to the float32 model's steps (GPT-2's
     * float32 weights are Conv1D [in, out], summed by another kernel) */
    int was_qdot = icl_linear_set_qdot(0);
    icl_kv_cache_reset(kf);
    icl_kv_cache_reset(kq);
    assert_int_equal(icl_model_decode(f, kf, ids, 5, lf, 0, err, sizeof err), 0);
    assert_int_equal(icl_model_decode(q, kq, ids, 5, lq, 0, err, sizeof err), 0);
    memcpy(kq->k, kf->k, (size_t)c->num_hidden_layers * kf->n_kv * kf->max_pos * kf->hd * sizeof(float));
    memcpy(kq->v, kf->v, (size_t)c->num_hidden_layers * kf->n_kv * kf->max_pos * kf->hd * sizeof(float));
    for (int s = 5; s < 9; s++) {
        assert_int_equal(icl_model_step(f, &kf, ids + s, 1, lf, err, sizeof err), 0);
        assert_int_equal(icl_model_step(q, &kq, ids + s, 1, lq, err, sizeof err), 0);
        if (gpt2 ? !(rel_l2(lq, lf, V) < 1e-5) : memcmp(lf, lq, V * sizeof(float)) != 0)
            fail_msg("exact decode step %d: logits differ (rel L2 %.2e)", s, rel_l2(lq, lf, V));
    }
    icl_linear_set_qdot(was_qdot);
    icl_kv_cache_free(kf);
    icl_kv_cache_free(kq);
    icl_kv_cache_free(k2);
    icl_kv_cache_free(k3);
    /* --dtype bf16: the blocks dequantized straight to packed bf16
     * (ICL_WEIGHT_QBLOCK_BF16) give the bits of the dequantized float32
     * model's bf16 path (icl_model_set_bf16 rounds its float32 weights):
     * logits, loss and every adapter gradient, on both bf16 code paths */
    assert_int_equal(icl_model_set_bf16(f, err, sizeof err), 0);
    assert_int_equal(icl_model_set_bf16(q, err, sizeof err), 0);
    for (int port = 0; port < 2; port++) {
        icl_bf16_force_portable(port);
        Lf = icl_model_forward(f, &b, lf, 0, NULL);
        Lq = icl_model_forward(q, &b, lq, 0, NULL);
        assert_true(Lq == Lf);
        assert_memory_equal(lq, lf, B * T * V * sizeof(float));
        icl_model_zero_grads(f);
        icl_model_zero_grads(q);
        Lf = icl_model_forward(f, &b, NULL, 1.0f / (B * (T - 1)), &nt);
        Lq = icl_model_forward(q, &b, NULL, 1.0f / (B * (T - 1)), &nt);
        assert_int_equal(icl_model_backward(f, &b, err, sizeof err), 0);
        assert_int_equal(icl_model_backward(q, &b, err, sizeof err), 0);
        assert_true(Lq == Lf);
        assert_memory_equal(q->lora_set->grads, f->lora_set->grads, f->lora_set->num_params * sizeof(float));
        print_message("#   bf16 (%s): training loss %.9g, logits and adapter gradients the bits of the "
                      "dequantized model's\n", icl_bf16_path_name(), Lq);
    }
    icl_bf16_force_portable(0);
    /* saving a quantized model as a folder is refused */
    char dir[] = "/tmp/icl-qlora-save-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(icl_model_save(q, dir, err, sizeof err), -1);
    assert_non_null(strstr(err, "quantized"));
    rmdir(dir);
    free(lf);
    free(lq);
    icl_model_free(f);
    icl_model_free(q);
}

static void llama_q4_1_fixture(void **state)
{
    (void)state;
    compare(TEST_DATA "/gguf/llama-tiny.q4_1.gguf", 0);
}

static void written_by_icl(void **state)
{
    (void)state;
    static const struct {
        const char *dir;
        uint32_t type;
    } cases[] = {{"model/qwen2-tiny/model", ICL_GGML_Q8_0},
                 {"gguf/llama-bias-tiny.f32.gguf", ICL_GGML_Q4_0},
                 {"model/gpt2-tiny/model", ICL_GGML_Q4_1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[64];
        write_gguf(cases[i].dir, cases[i].type, p);
        compare(p, 0);
        unlink(p);
    }
}

/* blk.0's q|k|v in Q4_0 with a Q8_0 attn_v: that product is float32 (its 3
 * views in the base set), everything else stays in blocks. */
static void mixed_fused_product(void **state)
{
    (void)state;
    char a[64], b[64], err[256];
    write_gguf("model/llama-tiny/model", ICL_GGML_Q4_0, a);
    write_mixed(a, b);
    compare(b, 3);
    icl_model *q = icl_model_load_gguf_quantized(b, err, sizeof err);
    assert_non_null(q);
    assert_null(q->qproj[ICL_PROJ_QKV].data);
    assert_non_null(icl_model_view(q, "model.layers.0.self_attn.v_proj.weight"));
    assert_null(icl_model_view(q, "model.layers.1.self_attn.v_proj.weight"));
    assert_int_equal(q->qproj[ICL_NPROJ + ICL_PROJ_QKV].qtype, ICL_GGML_Q4_0);
    icl_model_free(q);
    unlink(a);
    unlink(b);
}

static void errors(void **state)
{
    (void)state;
    char err[512];
    /* a layout icl cannot compute with is refused by icl_model_new_quantized */
    icl_model *f = icl_model_load_gguf(TEST_DATA "/gguf/llama-tiny.q4_1.gguf", err, sizeof err);
    assert_non_null(f);
    int proj[2 * ICL_NPROJ] = {0};
    proj[ICL_PROJ_DOWN] = ICL_GGML_Q4_K; /* in 160: not whole 256-blocks */
    icl_qlayout ql = {0, 0, proj};
    assert_null(icl_model_new_quantized(&f->cfg, &ql, err, sizeof err));
    assert_non_null(strstr(err, "layer 0 down product: rows of 160 values are not a whole number of Q4_K blocks"));
    proj[ICL_PROJ_DOWN] = ICL_GGML_F16;
    assert_null(icl_model_new_quantized(&f->cfg, &ql, err, sizeof err));
    assert_non_null(strstr(err, "F16"));
    icl_model_free(f);
    assert_null(icl_model_load_gguf_quantized(TEST_DATA "/model/llama-tiny/model/config.json", err, sizeof err));
}

static int teardown(void **state)
{
    (void)state;
    icl_qblock_scratch_free();
    icl_bf16_release_scratch();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama_q4_1_fixture),
        cmocka_unit_test(written_by_icl),
        cmocka_unit_test(mixed_fused_product),
        cmocka_unit_test(errors),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
