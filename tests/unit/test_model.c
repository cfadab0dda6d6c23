/* Parity of lib/model.c with Hugging Face transformers (tests/data/model, made by
 * tests/hf/fixtures/make_fixtures.py): logits, loss and every gradient on a padded batch
 * of two examples; greedy decoding; KV cache against full recompute; save and
 * reload bit-identical. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "safetensors.h"
#include "util.h"

static char *data_path(const char *rel)
{
    const char *td = getenv("TESTS_DIR"); /* set by tests/run.sh; else run from the top or tests/ */
    if (!td)
        td = access("tests/data/model", F_OK) == 0 ? "tests" : ".";
    size_t n = strlen(td) + strlen(rel) + 16;
    char *p = icl_xmalloc(n);
    snprintf(p, n, "%s/data/model/%s", td, rel);
    return p;
}

typedef struct {
    icl_model *m;
    json_t *exp;
    int B, T;
    int32_t *ids, *doc;
    uint8_t *target, *valid;
} fixture;

static void fixture_load(fixture *f, const char *name)
{
    char err[512], rel[128];
    snprintf(rel, sizeof rel, "%s/model", name);
    char *p = data_path(rel);
    f->m = icl_model_load(p, err, sizeof err);
    if (!f->m)
        fail_msg("%s", err);
    free(p);
    snprintf(rel, sizeof rel, "%s/expected.json", name);
    p = data_path(rel);
    json_error_t je;
    f->exp = json_load_file(p, 0, &je);
    assert_non_null(f->exp);
    free(p);
    json_t *ids = json_object_get(f->exp, "input_ids"), *lab = json_object_get(f->exp, "labels"),
           *am = json_object_get(f->exp, "attention_mask");
    f->B = (int)json_array_size(ids);
    f->T = (int)json_array_size(json_array_get(ids, 0));
    size_t N = (size_t)f->B * f->T;
    f->ids = icl_xmalloc(N * sizeof(int32_t));
    f->doc = icl_xmalloc(N * sizeof(int32_t));
    f->target = icl_xmalloc(N);
    f->valid = icl_xmalloc(N);
    for (int b = 0; b < f->B; b++)
        for (int t = 0; t < f->T; t++) {
            size_t i = (size_t)b * f->T + t;
            f->ids[i] = (int32_t)json_integer_value(json_array_get(json_array_get(ids, b), t));
            f->target[i] = json_integer_value(json_array_get(json_array_get(lab, b), t)) != -100;
            f->valid[i] = json_integer_value(json_array_get(json_array_get(am, b), t)) != 0;
            f->doc[i] = f->valid[i] ? 0 : -1; /* padding is its own document */
        }
}

static void fixture_free(fixture *f)
{
    icl_model_free(f->m);
    json_decref(f->exp);
    free(f->ids);
    free(f->doc);
    free(f->target);
    free(f->valid);
}

static icl_batch fixture_batch(const fixture *f)
{
    icl_batch b = {f->B, f->T, f->ids, f->target, f->doc, NULL, NULL};
    return b;
}

static void parity(const char *name)
{
    fixture f;
    fixture_load(&f, name);
    icl_model *m = f.m;
    int V = m->cfg.vocab_size;
    icl_batch b = fixture_batch(&f);
    char err[512], rel[128];

    /* logits over the real (unpadded) positions */
    float *logits = icl_xmalloc((size_t)f.B * f.T * V * sizeof(float));
    long nt = 0;
    double lsum = icl_model_forward(m, &b, logits, 0, &nt);
    snprintf(rel, sizeof rel, "%s/logits.safetensors", name);
    char *p = data_path(rel);
    icl_st_file *sf = icl_st_open(p, err, sizeof err);
    free(p);
    assert_non_null(sf);
    const icl_st_tensor *t = icl_st_find(sf, "logits");
    assert_non_null(t);
    float *ref = icl_xmalloc(t->numel * sizeof(float));
    assert_int_equal(icl_st_read_f32(t, ref, t->numel, err, sizeof err), 0);
    assert_int_equal(t->numel, (size_t)f.B * f.T * V);
    double maxabs = 0, maxerr = 0;
    for (size_t i = 0; i < (size_t)f.B * f.T; i++) {
        if (!f.valid[i])
            continue;
        for (int j = 0; j < V; j++) {
            double r = ref[i * V + j], d = fabs(r - logits[i * V + j]);
            maxabs = fmax(maxabs, fabs(r));
            maxerr = fmax(maxerr, d);
        }
    }
    icl_st_close(sf);
    print_message("# %s: logits max abs err %.3g, max |logit| %.3g, ratio %.3g\n", name, maxerr, maxabs,
                  maxerr / maxabs);
    assert_true(maxerr <= 1e-5 * maxabs);

    double want = json_real_value(json_object_get(f.exp, "loss"));
    assert_int_equal(nt, json_integer_value(json_object_get(f.exp, "n_target_tokens")));
    print_message("# %s: loss %.9g (logits path) want %.9g\n", name, lsum / nt, want);
    assert_true(fabs(lsum / nt - want) <= 1e-5 * fabs(want));

    /* per-position losses: zero off target, summing to the total; the logits path agrees */
    float *tl = xmalloc((size_t)f.B * f.T * sizeof(float));
    icl_model_token_losses(m, tl, NULL, 0);
    double tsum = 0;
    for (int i = 0; i < f.B * f.T; i++) {
        int is_t = (i + 1) % f.T != 0 && f.target[i + 1];
        if (!is_t)
            assert_true(tl[i] == 0.0f);
        else
            assert_true(tl[i] > 0.0f);
        tsum += tl[i];
    }
    assert_true(fabs(tsum - lsum) < 1e-4);
    icl_model_forward(m, &b, NULL, 0, NULL);
    float *tl2 = xmalloc((size_t)f.B * f.T * sizeof(float));
    icl_model_token_losses(m, tl2, NULL, 0);
    for (int i = 0; i < f.B * f.T; i++)
        assert_float_equal(tl[i], tl2[i], 1e-5);
    free(tl);
    free(tl2);

    /* fused loss + backward */
    icl_model_zero_grads(m);
    double l2 = icl_model_forward(m, &b, NULL, 1.0f / (float)nt, &nt) / nt;
    icl_model_backward(m, &b, NULL, 0);
    print_message("# %s: loss %.9g (fused) want %.9g\n", name, l2, want);
    assert_true(fabs(l2 - want) <= 1e-5 * fabs(want));

    snprintf(rel, sizeof rel, "%s/grads.safetensors", name);
    p = data_path(rel);
    sf = icl_st_open(p, err, sizeof err);
    free(p);
    assert_non_null(sf);
    double worst = 0, gn = 0;
    const char *worst_name = "";
    int seen = 0;
    for (int i = 0; i < m->base.n_views; i++) {
        const icl_param_view *v = &m->base.views[i];
        t = icl_st_find(sf, v->name);
        if (!t)
            fail_msg("no reference gradient for %s", v->name);
        seen++;
        float *g = icl_xmalloc(v->numel * sizeof(float));
        assert_int_equal(icl_st_read_f32(t, g, v->numel, err, sizeof err), 0);
        double num = 0, den = 0;
        for (size_t j = 0; j < v->numel; j++) {
            double d = (double)g[j] - m->base.grads[v->offset + j];
            num += d * d;
            den += (double)g[j] * g[j];
            gn += (double)m->base.grads[v->offset + j] * m->base.grads[v->offset + j];
        }
        double rel_err = den > 0 ? sqrt(num / den) : sqrt(num);
        if (rel_err > worst) {
            worst = rel_err;
            worst_name = v->name;
        }
        if (rel_err > 1e-4)
            print_message("# %s: gradient %s rel L2 err %.3g\n", name, v->name, rel_err);
        free(g);
    }
    assert_int_equal(seen, icl_st_count(sf)); /* every reference gradient checked */
    icl_st_close(sf);
    /* the flat-buffer file helpers: the reference gradients read as one buffer,
     * and our gradients written and read back bit for bit */
    float *gbuf = xmalloc(m->base.num_params * sizeof(float));
    p = data_path(rel);
    assert_int_equal(icl_model_read_tensors(m, gbuf, p, err, sizeof err), 0);
    free(p);
    double num = 0, den = 0;
    for (size_t j = 0; j < m->base.num_params; j++) {
        num += ((double)gbuf[j] - m->base.grads[j]) * ((double)gbuf[j] - m->base.grads[j]);
        den += (double)gbuf[j] * gbuf[j];
    }
    assert_true(sqrt(num / den) <= 1e-4);
    char tmpf[] = "/tmp/icl-grads-XXXXXX";
    int fd = mkstemp(tmpf);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(icl_model_write_tensors(m, m->base.grads, tmpf, err, sizeof err), 0);
    memset(gbuf, 0, m->base.num_params * sizeof(float));
    assert_int_equal(icl_model_read_tensors(m, gbuf, tmpf, err, sizeof err), 0);
    assert_memory_equal(gbuf, m->base.grads, m->base.num_params * sizeof(float));
    unlink(tmpf);
    free(gbuf);
    print_message("# %s: worst gradient rel L2 err %.3g (%s), grad norm %.9g want %.9g\n", name, worst, worst_name,
                  sqrt(gn), json_real_value(json_object_get(f.exp, "grad_norm_l2")));
    assert_true(worst <= 1e-4);

    /* determinism: the same batch again gives bit-identical loss and gradients */
    float *g1 = xmalloc(m->base.num_params * sizeof(float));
    memcpy(g1, m->base.grads, m->base.num_params * sizeof(float));
    icl_model_zero_grads(m);
    double l3 = icl_model_forward(m, &b, NULL, 1.0f / (float)nt, &nt) / nt;
    icl_model_backward(m, &b, NULL, 0);
    assert_true(l3 == l2);
    assert_memory_equal(g1, m->base.grads, m->base.num_params * sizeof(float));
    /* gradient accumulation: two passes with half the scale each equal one pass */
    icl_model_zero_grads(m);
    for (int k = 0; k < 2; k++) {
        icl_model_forward(m, &b, NULL, 0.5f / (float)nt, &nt);
        icl_model_backward(m, &b, NULL, 0);
    }
    double an = 0, ad = 0;
    for (size_t j = 0; j < m->base.num_params; j++) {
        an += ((double)g1[j] - m->base.grads[j]) * ((double)g1[j] - m->base.grads[j]);
        ad += (double)g1[j] * g1[j];
    }
    assert_true(sqrt(an / ad) < 1e-6);
    free(g1);

    /* greedy decoding with the KV cache equals HF's */
    json_t *gr = json_object_get(f.exp, "greedy");
    json_t *prompt = json_object_get(gr, "prompt"), *out = json_object_get(gr, "output");
    icl_kv_cache *kc = icl_kv_cache_new(m, 64);
    int np = (int)json_array_size(prompt);
    int32_t ids[64];
    for (int i = 0; i < np; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(prompt, i));
    float *lg = icl_xmalloc((size_t)V * sizeof(float));
    assert_int_equal(icl_model_decode(m, kc, ids, np, lg, 0, err, sizeof err), 0);
    for (size_t i = np; i < json_array_size(out); i++) {
        int best = 0;
        for (int j = 1; j < V; j++)
            if (lg[j] > lg[best])
                best = j;
        assert_int_equal(best, json_integer_value(json_array_get(out, i)));
        int32_t id = best;
        assert_int_equal(icl_model_decode(m, kc, &id, 1, lg, 0, err, sizeof err), 0);
    }
    icl_kv_cache_free(kc);
    free(lg);
    free(ref);
    free(logits);
    fixture_free(&f);
}

static void parity_llama(void **state) { (void)state; parity("llama-tiny"); }
static void parity_gpt2(void **state) { (void)state; parity("gpt2-tiny"); }
static void parity_qwen2(void **state) { (void)state; parity("qwen2-tiny"); }
/* made by tests/hf/make_variants.py: llama3 rope scaling, q/k/v/o and MLP
 * biases, GQA 4:1, head_dim != hidden/heads, tied; GPT-2 n_inner, untied */
static void parity_llama3_bias(void **state) { (void)state; parity("llama3-bias-tiny"); }
static void parity_gpt2_inner(void **state) { (void)state; parity("gpt2-inner-tiny"); }

/* stories260K: 200 greedy ids from BOS equal llama2.c's run.c */
static void stories_greedy(void **state)
{
    (void)state;
    char err[512];
    char *p = data_path("stories260K/model");
    icl_model *m = icl_model_load(p, err, sizeof err);
    free(p);
    if (!m)
        fail_msg("%s", err);
    p = data_path("stories260K/greedy_ids_from_bos_n200.txt");
    FILE *f = fopen(p, "r");
    free(p);
    assert_non_null(f);
    int want[256], n = 0;
    while (n < 256 && fscanf(f, "%d", &want[n]) == 1)
        n++;
    fclose(f);
    assert_int_equal(n, 200);
    int V = m->cfg.vocab_size;
    icl_kv_cache *kc = icl_kv_cache_new(m, 256);
    float *lg = icl_xmalloc((size_t)V * sizeof(float));
    int32_t id = 1;
    for (int i = 0; i < n; i++) {
        assert_int_equal(icl_model_decode(m, kc, &id, 1, lg, 0, err, sizeof err), 0);
        int best = 0;
        for (int j = 1; j < V; j++)
            if (lg[j] > lg[best])
                best = j;
        if (best != want[i])
            fail_msg("greedy id %d: got %d want %d", i, best, want[i]);
        id = best;
    }
    icl_kv_cache_free(kc);
    /* the training forward over BOS + the 200 ids (several attention blocks)
     * predicts each next id, and its logits match HF's on the first 41 */
    int32_t seq[201];
    seq[0] = 1;
    for (int i = 0; i < n; i++)
        seq[i + 1] = want[i];
    icl_batch b = {1, 201, seq, NULL, NULL, NULL, NULL};
    float *all = icl_xmalloc((size_t)201 * V * sizeof(float));
    long nt;
    double loss = icl_model_forward(m, &b, all, 0, &nt);
    assert_int_equal(nt, 200);
    for (int t = 0; t < n; t++) {
        int best = 0;
        for (int j = 1; j < V; j++)
            if (all[(size_t)t * V + j] > all[(size_t)t * V + best])
                best = j;
        assert_int_equal(best, want[t]);
    }
    p = data_path("stories260K/greedy_logits.safetensors");
    icl_st_file *sf = icl_st_open(p, err, sizeof err);
    free(p);
    assert_non_null(sf);
    const icl_st_tensor *t = icl_st_find(sf, "logits");
    assert_non_null(t);
    float *ref = icl_xmalloc(t->numel * sizeof(float));
    assert_int_equal(icl_st_read_f32(t, ref, t->numel, err, sizeof err), 0);
    size_t rows = t->numel / V;
    assert_int_equal(rows, 41);
    double maxerr = 0, maxabs = 0;
    for (size_t i = 0; i < rows * V; i++) {
        maxerr = fmax(maxerr, fabs(ref[i] - all[i]));
        maxabs = fmax(maxabs, fabs(ref[i]));
    }
    print_message("# stories260K: 200 greedy ids ok; logits max abs err %.3g (max |logit| %.3g); mean loss %.4f\n",
                  maxerr, maxabs, loss / nt);
    assert_true(maxerr <= 1e-5 * maxabs);
    icl_st_close(sf);
    free(ref);
    free(all);
    free(lg);
    icl_model_free(m);
}

/* Cached decoding (prefill + steps) equals full recompute, for each architecture. */
static void kv_cache_matches_full(void **state)
{
    (void)state;
    const char *names[] = {"llama-tiny", "gpt2-tiny", "qwen2-tiny", "llama3-bias-tiny", "gpt2-inner-tiny"};
    for (int k = 0; k < 5; k++) {
        fixture f;
        fixture_load(&f, names[k]);
        icl_model *m = f.m;
        int V = m->cfg.vocab_size, T = f.T;
        icl_batch b = {1, T, f.ids, NULL, NULL, NULL, NULL};
        float *full = icl_xmalloc((size_t)T * V * sizeof(float)), *inc = icl_xmalloc((size_t)T * V * sizeof(float));
        icl_model_forward(m, &b, full, 0, NULL);
        icl_kv_cache *kc = icl_kv_cache_new(m, T);
        char err[256];
        assert_int_equal(icl_model_decode(m, kc, f.ids, 5, inc, 1, err, sizeof err), 0);
        for (int t = 5; t < T; t++)
            assert_int_equal(icl_model_decode(m, kc, f.ids + t, 1, inc + (size_t)t * V, 0, err, sizeof err), 0);
        /* the cache is full now */
        assert_int_equal(icl_model_decode(m, kc, f.ids, 1, inc, 0, err, sizeof err), -1);
        double maxerr = 0, maxabs = 0;
        for (size_t i = 0; i < (size_t)T * V; i++) {
            maxerr = fmax(maxerr, fabs(full[i] - inc[i]));
            maxabs = fmax(maxabs, fabs(full[i]));
        }
        print_message("# %s: cached vs full max abs err %.3g (max |logit| %.3g)\n", names[k], maxerr, maxabs);
        assert_true(maxerr <= 1e-5 * fmax(1.0, maxabs));
        icl_kv_cache_free(kc);
        free(full);
        free(inc);
        fixture_free(&f);
    }
}

/* Save, reload: bit-identical logits; tied embeddings stored once; packing
 * two documents in one row equals running them separately. */
static void save_reload_and_packing(void **state)
{
    (void)state;
    const char *names[] = {"llama-tiny", "gpt2-tiny", "qwen2-tiny", "llama3-bias-tiny", "gpt2-inner-tiny"};
    for (int k = 0; k < 5; k++) {
        fixture f;
        fixture_load(&f, names[k]);
        icl_model *m = f.m;
        int V = m->cfg.vocab_size, T = f.T;
        char dir[] = "/tmp/icl-model-XXXXXX", err[512];
        assert_non_null(mkdtemp(dir));
        assert_int_equal(icl_model_save(m, dir, err, sizeof err), 0);
        icl_model *m2 = icl_model_load(dir, err, sizeof err);
        if (!m2)
            fail_msg("%s", err);
        icl_batch b = {f.B, T, f.ids, f.target, f.doc, NULL, NULL};
        float *a = icl_xmalloc((size_t)f.B * T * V * sizeof(float)), *c = icl_xmalloc((size_t)f.B * T * V * sizeof(float));
        icl_model_forward(m, &b, a, 0, NULL);
        icl_model_forward(m2, &b, c, 0, NULL);
        assert_memory_equal(a, c, (size_t)f.B * T * V * sizeof(float));
        char path[600];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        icl_st_file *sf = icl_st_open(path, err, sizeof err);
        assert_non_null(sf);
        assert_string_equal(icl_st_metadata(sf, "format"), "pt");
        assert_int_equal(icl_st_find(sf, "lm_head.weight") != NULL, !m->cfg.tie_word_embeddings);
        for (int i = 0; i < icl_st_count(sf); i++)
            assert_int_equal((uintptr_t)icl_st_get(sf, i)->data % 8, 0);
        icl_st_close(sf);
        icl_model_free(m2);

        /* packing: row = doc A (first 5 tokens of row 0, pos 0..4) + doc B (7 tokens of row 1, pos 0..6) */
        int32_t ids[12], doc[12], pos[12];
        for (int t = 0; t < 12; t++) {
            int inA = t < 5;
            ids[t] = inA ? f.ids[t] : f.ids[T + t - 5];
            doc[t] = inA ? 0 : 1;
            pos[t] = inA ? t : t - 5;
        }
        icl_batch pk = {1, 12, ids, NULL, doc, pos, NULL};
        float *pl = icl_xmalloc((size_t)12 * V * sizeof(float)), *sa = icl_xmalloc((size_t)7 * V * sizeof(float));
        long npk;
        double lpk = icl_model_forward(m, &pk, pl, 0, &npk);
        assert_int_equal(npk, 4 + 6); /* no target across the document boundary */
        icl_batch ba = {1, 5, ids, NULL, NULL, NULL, NULL}, bb = {1, 7, ids + 5, NULL, NULL, NULL, NULL};
        long na, nb;
        double la = icl_model_forward(m, &ba, sa, 0, &na);
        double maxerr = 0;
        for (size_t i = 0; i < (size_t)5 * V; i++)
            maxerr = fmax(maxerr, fabs(sa[i] - pl[i]));
        double lb = icl_model_forward(m, &bb, sa, 0, &nb);
        for (size_t i = 0; i < (size_t)7 * V; i++)
            maxerr = fmax(maxerr, fabs(sa[i] - pl[5 * (size_t)V + i]));
        print_message("# %s: packed vs separate max abs err %.3g\n", names[k], maxerr);
        assert_true(maxerr < 1e-5);
        assert_true(fabs(lpk - (la + lb)) < 1e-4);
        /* a batch with no targets: loss 0, no NaN */
        uint8_t none[12] = {0};
        icl_batch nb0 = {1, 12, ids, none, doc, pos, NULL};
        long n0;
        icl_model_zero_grads(m);
        assert_true(icl_model_forward(m, &nb0, NULL, 1.0f, &n0) == 0.0);
        assert_int_equal(n0, 0);
        icl_model_backward(m, &nb0, NULL, 0);
        for (size_t i = 0; i < m->base.num_params; i++)
            assert_true(m->base.grads[i] == 0.0f);
        free(pl);
        free(sa);
        free(a);
        free(c);
        const char *files[] = {"config.json", "model.safetensors", "generation_config.json"};
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            assert_int_equal(unlink(path), 0);
        }
        assert_int_equal(rmdir(dir), 0);
        fixture_free(&f);
    }
}

int main(void)
{
    icl_blis_setup();
    icl_set_threads(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parity_llama),
        cmocka_unit_test(parity_gpt2),
        cmocka_unit_test(parity_qwen2),
        cmocka_unit_test(parity_llama3_bias),
        cmocka_unit_test(parity_gpt2_inner),
        cmocka_unit_test(stories_greedy),
        cmocka_unit_test(kv_cache_matches_full),
        cmocka_unit_test(save_reload_and_packing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
