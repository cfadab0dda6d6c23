/* test_lora.c - lora.h against PEFT's files (tests/data/lora-llama-tiny,
 * made by PEFT 0.21's save_pretrained / merge_and_unload):
 *   - PEFT's adapter_config.json is read (r 4, alpha 8, targets), its
 *     adapter_model.safetensors loads into the adapters attached with that
 *     configuration, and icl_lora_save writes the same tensors back bit for
 *     bit with the same names and shapes, and a config that reads back equal;
 *   - icl_lora_merge on llama-tiny equals merge_and_unload (merged.safetensors)
 *     within 1e-5 relative for every tensor, adapted or not (the others equal);
 *     merging with mult 0.5 twice equals mult 1 within float rounding;
 *   - the scale: alpha / r, rsLoRA alpha / sqrt(r); the "DIR:SCALE" spec;
 *   - hostile configs and adapter files are refused by name, m unchanged. */
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

#include "lora.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/data"
#endif
#define ADAPTER TEST_DATA "/lora-llama-tiny/adapter"
#define BASE TEST_DATA "/model/llama-tiny/model"

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void peft_adapter_round_trip(void **state)
{
    (void)state;
    char err[512];
    icl_lora_config c;
    assert_int_equal(icl_lora_read_config(ADAPTER, &c, err, sizeof err), 0);
    assert_int_equal(c.r, 4);
    assert_true(c.lora_alpha == 8);
    assert_int_equal(c.use_rslora, 0);
    assert_int_equal(c.n_targets, 3);
    assert_string_equal(c.target_modules[0], "v_proj");
    assert_true(icl_lora_scale(&c) == 2.0);
    icl_model *m = icl_model_load(BASE, err, sizeof err);
    assert_non_null(m);
    icl_param_set *s = icl_lora_attach(m, &c, 1, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(m->base.trainable, 0);
    assert_null(m->base.grads);
    assert_int_equal(s->n_views, 12); /* 2 layers x 3 modules x A, B */
    assert_int_equal(icl_lora_load_weights(m, ADAPTER, err, sizeof err), 0);
    assert_true(m->lora[0].lora[ICL_PROJ_QKV][0].scale == 2.0f);

    char dir[] = "/tmp/icl-test-lora.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[600], p[700];
    snprintf(out, sizeof out, "%s/a/b", dir);
    assert_int_equal(icl_lora_save(m, &c, out, err, sizeof err), 0);
    icl_st_file *a = icl_st_open(ADAPTER "/adapter_model.safetensors", err, sizeof err);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", out);
    icl_st_file *b = icl_st_open(p, err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(icl_st_count(a), icl_st_count(b));
    for (int i = 0; i < icl_st_count(a); i++) {
        const icl_st_tensor *ta = icl_st_get(a, i), *tb = icl_st_find(b, ta->name);
        assert_non_null(tb);
        assert_int_equal(tb->dtype, ICL_ST_F32);
        assert_int_equal(ta->ndim, tb->ndim);
        assert_memory_equal(ta->shape, tb->shape, sizeof ta->shape[0] * (size_t)ta->ndim);
        assert_memory_equal(ta->data, tb->data, ta->nbytes);
    }
    icl_st_close(a);
    icl_st_close(b);
    icl_lora_config c2;
    assert_int_equal(icl_lora_read_config(out, &c2, err, sizeof err), 0);
    assert_int_equal(c2.r, 4);
    assert_true(c2.lora_alpha == 8);
    assert_int_equal(c2.n_targets, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(c2.target_modules[i], c.target_modules[i]);
    assert_string_equal(c2.base_model_name_or_path, "./llama-tiny/model"); /* PEFT's, kept */
    icl_lora_config_free(&c2);
    /* a saved adapter with another rank does not load into these adapters */
    icl_model *m2 = icl_model_load(BASE, err, sizeof err);
    c.r = 2;
    assert_non_null(icl_lora_attach(m2, &c, 1, err, sizeof err));
    assert_int_equal(icl_lora_load_weights(m2, out, err, sizeof err), -1);
    assert_non_null(strstr(err, "shape [4, 64], want [2, 64]"));
    icl_model_free(m2);
    /* other targets: the first tensor one side lacks is named */
    c.r = 4;
    char *t0 = c.target_modules[0];
    int n0 = c.n_targets;
    c.n_targets = 2; /* the file's v_proj and q_proj only: it holds more */
    m2 = icl_model_load(BASE, err, sizeof err);
    assert_non_null(icl_lora_attach(m2, &c, 1, err, sizeof err));
    assert_int_equal(icl_lora_load_weights(m2, out, err, sizeof err), -1);
    assert_non_null(strstr(err, "12 tensors, these options want 8: "));
    assert_non_null(strstr(err, "is not one of this model's adapters"));
    icl_model_free(m2);
    char up[] = "up_proj";
    c.target_modules[0] = up; /* up_proj, q_proj, k_proj: no up_proj in the file */
    c.n_targets = n0;
    m2 = icl_model_load(BASE, err, sizeof err);
    assert_non_null(icl_lora_attach(m2, &c, 1, err, sizeof err));
    assert_int_equal(icl_lora_load_weights(m2, out, err, sizeof err), -1);
    assert_non_null(strstr(err, "no tensor base_model.model.model.layers."));
    assert_non_null(strstr(err, "up_proj.lora_"));
    icl_model_free(m2);
    c.target_modules[0] = t0;
    /* an adapter of a model with fewer layers (its layer 0 only): another base */
    icl_st_file *full = icl_st_open(p, err, sizeof err);
    assert_non_null(full);
    icl_st_entry e[12];
    int ne = 0;
    for (int i = 0; i < icl_st_count(full); i++) {
        const icl_st_tensor *t = icl_st_get(full, i);
        if (!strstr(t->name, "layers.0."))
            continue;
        e[ne] = (icl_st_entry){.name = t->name, .data = (const float *)t->data, .ndim = 2,
                               .shape = {t->shape[0], t->shape[1]}};
        ne++;
    }
    assert_int_equal(ne, 6);
    char one[700];
    snprintf(one, sizeof one, "%s/one.safetensors", dir);
    assert_int_equal(icl_st_write(one, e, ne, err, sizeof err), 0);
    icl_st_close(full);
    m2 = icl_model_load(BASE, err, sizeof err);
    assert_non_null(icl_lora_attach(m2, &c, 1, err, sizeof err));
    assert_int_equal(icl_lora_load_weights(m2, one, err, sizeof err), -1);
    assert_non_null(strstr(err, "adapters for 1 layers, this model has 2: trained on another base model?"));
    icl_model_free(m2);
    snprintf(p, sizeof p, "rm -rf '%s'", dir);
    assert_int_equal(system(p), 0);
    icl_lora_config_free(&c);
    icl_model_free(m);
}

static void merge_equals_peft(void **state)
{
    (void)state;
    char err[512];
    icl_model *m = icl_model_load(BASE, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(icl_lora_merge(m, ADAPTER, 1.0, err, sizeof err), 0);
    icl_st_file *f = icl_st_open(TEST_DATA "/lora-llama-tiny/merged.safetensors", err, sizeof err);
    assert_non_null(f);
    int n_adapted = 0;
    for (int i = 0; i < m->base.n_views; i++) {
        const icl_param_view *v = &m->base.views[i];
        const icl_st_tensor *t = icl_st_find(f, v->name);
        assert_non_null(t);
        assert_int_equal(t->numel, v->numel);
        float *ref = malloc(v->numel * sizeof *ref);
        assert_int_equal(icl_st_read_f32(t, ref, v->numel, err, sizeof err), 0);
        const float *w = m->base.params + v->offset;
        double num = 0, den = 0, maxd = 0;
        for (size_t k = 0; k < v->numel; k++) {
            num += (double)(w[k] - ref[k]) * (w[k] - ref[k]);
            den += (double)ref[k] * ref[k];
            maxd = fmax(maxd, fabs(w[k] - ref[k]) / (fabs(ref[k]) + 1e-6));
        }
        int adapted = strstr(v->name, "q_proj") || strstr(v->name, "v_proj") || strstr(v->name, "down_proj");
        n_adapted += adapted;
        if (!adapted)
            assert_true(num == 0);
        else if (!(sqrt(num / den) < 1e-5))
            fail_msg("%s: relative error %g", v->name, sqrt(num / den));
        free(ref);
    }
    assert_int_equal(n_adapted, 6);
    icl_st_close(f);

    /* half twice == whole once (within rounding) */
    icl_model *h = icl_model_load(BASE, err, sizeof err);
    assert_int_equal(icl_lora_merge(h, ADAPTER, 0.5, err, sizeof err), 0);
    assert_int_equal(icl_lora_merge(h, ADAPTER, 0.5, err, sizeof err), 0);
    for (size_t k = 0; k < m->base.num_params; k++)
        assert_true(fabsf(h->base.params[k] - m->base.params[k]) <= 1e-6f * (1 + fabsf(m->base.params[k])));
    /* a scale whose updates pass ICL_LORA_MAX_UPDATE (1e36, and 1e15: finite
     * sums that overflow in the next RMSNorm), or a NaN in lora_B: refused,
     * the model unchanged */
    float *keep = malloc(h->base.num_params * sizeof *keep);
    memcpy(keep, h->base.params, h->base.num_params * sizeof *keep);
    assert_int_equal(icl_lora_merge(h, ADAPTER, 1e36, err, sizeof err), -1);
    assert_non_null(strstr(err, "beyond 1e+12, where float32 activations overflow"));
    assert_int_equal(icl_lora_merge(h, ADAPTER, 1e15, err, sizeof err), -1);
    assert_non_null(strstr(err, "(times 1e+15) makes updates of up to"));
    char dir[] = "/tmp/icl-test-nan.XXXXXX", cmd[800];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "cp %s/adapter_config.json %s/", ADAPTER, dir);
    assert_int_equal(system(cmd), 0);
    icl_st_file *a = icl_st_open(ADAPTER "/adapter_model.safetensors", err, sizeof err);
    assert_non_null(a);
    int na = icl_st_count(a);
    icl_st_entry *e = calloc((size_t)na, sizeof *e);
    float **bufs = calloc((size_t)na, sizeof *bufs);
    int nan_set = 0;
    for (int i = 0; i < na; i++) {
        const icl_st_tensor *t = icl_st_get(a, i);
        bufs[i] = malloc(t->numel * sizeof(float));
        assert_int_equal(icl_st_read_f32(t, bufs[i], t->numel, err, sizeof err), 0);
        if (!nan_set && strstr(t->name, "lora_B"))
            bufs[i][0] = NAN, nan_set = 1;
        e[i] = (icl_st_entry){.name = t->name, .data = bufs[i], .ndim = 2, .shape = {t->shape[0], t->shape[1]}};
    }
    assert_true(nan_set);
    snprintf(cmd, sizeof cmd, "%s/adapter_model.safetensors", dir);
    assert_int_equal(icl_st_write(cmd, e, na, err, sizeof err), 0);
    assert_int_equal(icl_lora_merge(h, dir, 1.0, err, sizeof err), -1);
    assert_non_null(strstr(err, "holds values that are not finite"));
    assert_memory_equal(keep, h->base.params, h->base.num_params * sizeof *keep);
    for (int i = 0; i < na; i++)
        free(bufs[i]);
    free(bufs);
    free(e);
    icl_st_close(a);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(keep);
    icl_model_free(h);
    icl_model_free(m);
}

static void scales_and_specs(void **state)
{
    (void)state;
    icl_lora_config c = {.r = 16, .lora_alpha = 32};
    assert_true(icl_lora_scale(&c) == 2.0);
    c.use_rslora = 1;
    assert_true(icl_lora_scale(&c) == 8.0);
    double s;
    char err[256], *d = icl_lora_parse_spec("run/a:0.5", &s, err, sizeof err);
    assert_string_equal(d, "run/a");
    assert_true(s == 0.5);
    free(d);
    d = icl_lora_parse_spec("run/a", &s, err, sizeof err);
    assert_string_equal(d, "run/a");
    assert_true(s == 1);
    free(d);
    d = icl_lora_parse_spec("c:/x", &s, err, sizeof err); /* not a number after ':' */
    assert_string_equal(d, "c:/x");
    free(d);
    d = icl_lora_parse_spec("a:inf", &s, err, sizeof err); /* not a finite number: part of the name */
    assert_string_equal(d, "a:inf");
    assert_true(s == 1);
    free(d);
    /* targets */
    icl_config gc = {.arch = ICL_ARCH_GPT2};
    assert_int_equal(icl_lora_set_targets(&c, &gc, "all-linear", err, sizeof err), 0);
    assert_int_equal(c.n_targets, 3);
    assert_int_equal(icl_lora_set_targets(&c, &gc, NULL, err, sizeof err), 0);
    assert_int_equal(c.n_targets, 1);
    assert_string_equal(c.target_modules[0], "c_attn");
    assert_int_equal(icl_lora_set_targets(&c, &gc, "q_proj,,v_proj", err, sizeof err), -1);
    assert_int_equal(icl_lora_set_targets(&c, &gc, "q_proj,v_proj,q_proj", err, sizeof err), 0);
    assert_int_equal(c.n_targets, 2);
    icl_lora_config_free(&c);
}

static void hostile(void **state)
{
    (void)state;
    char dir[] = "/tmp/icl-test-lora.XXXXXX", p[600], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8", "adapter_config.json:1:"},
        {"[1]", "not a JSON object"},
        {"{\"peft_type\": \"IA3\", \"r\": 4}", "peft_type is not \"LORA\""},
        {"{\"peft_type\": \"LORA\", \"r\": 0, \"lora_alpha\": 8}", "\"r\" is not an integer"},
        {"{\"peft_type\": \"LORA\", \"r\": 4}", "no \"lora_alpha\" (PEFT writes it"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": \"8\"}", "\"lora_alpha\" is not a number"},
        {"{\"peft_type\": \"LORA\", \"lora_alpha\": 8}", "no \"r\" (PEFT writes the rank"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_dora\": true, \"target_modules\": [\"q_proj\"]}",
         "DoRA"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": \".*proj\"}", "regular expressions"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": []}", "target_modules is empty"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"r\": 5, \"lora_alpha\": 8}", "duplicate"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"], \"rank_pattern\": "
         "{\"q_proj\": 8}}",
         "rank_pattern"},
        {"{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"], \"modules_to_save\": "
         "[\"lm_head\"]}",
         "modules_to_save"},
    };
    icl_lora_config c;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text(p, cases[i].json);
        assert_int_equal(icl_lora_read_config(dir, &c, err, sizeof err), -1);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: %s", i, err);
    }
    /* a valid config with adapter tensors that do not fit the model: refused, m unchanged */
    write_text(p, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]}");
    icl_model *m = icl_model_load(BASE, err, sizeof err);
    float *before = malloc(m->base.num_params * sizeof *before);
    memcpy(before, m->base.params, m->base.num_params * sizeof *before);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    float A[4 * 64] = {1}, B[64 * 4] = {1}, junk[3] = {0};
    icl_st_entry e[3] = {
        {.name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", .data = A, .ndim = 2, .shape = {4, 64}},
        {.name = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", .data = B, .ndim = 2, .shape = {64, 4}},
        {.name = "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", .data = junk, .ndim = 2, .shape = {1, 3}},
    };
    assert_int_equal(icl_st_write(p, e, 3, err, sizeof err), 0);
    assert_int_equal(icl_lora_merge(m, dir, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "has no base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"));
    e[2] = (icl_st_entry){.name = "base_model.model.model.layers.0.mlp.gate_proj.lora_magnitude_vector", .data = junk,
                          .ndim = 1, .shape = {3}};
    assert_int_equal(icl_st_write(p, e, 3, err, sizeof err), 0);
    assert_int_equal(icl_lora_merge(m, dir, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "is not a lora_A/lora_B weight"));
    e[1].shape[0] = 32;
    assert_int_equal(icl_st_write(p, e, 2, err, sizeof err), 0);
    assert_int_equal(icl_lora_merge(m, dir, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "shapes that do not fit"));
    e[0].name = "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight";
    assert_int_equal(icl_st_write(p, e, 1, err, sizeof err), 0);
    assert_int_equal(icl_lora_merge(m, dir, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "has no base_model.model.model.layers.7"));
    assert_memory_equal(before, m->base.params, m->base.num_params * sizeof *before);
    /* base_model_name_or_path: as given, or relative to the adapter folder */
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    write_text(p, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"], "
                  "\"base_model_name_or_path\": \"no/such/base\"}");
    assert_null(icl_lora_base_path(dir, err, sizeof err));
    assert_non_null(strstr(err, "/adapter_config.json: the base model \"no/such/base\" (base_model_name_or_path) is neither no/such/base (from the current folder) nor "));
    free(before);
    icl_model_free(m);
    snprintf(p, sizeof p, "rm -rf '%s'", dir);
    assert_int_equal(system(p), 0);
}

/* Weights and target_modules that do not belong together (break-it review):
 * PEFT attaches adapters to the modules target_modules selects only, so a
 * tensor of another module would be loaded into nothing, and a selected
 * module without tensors would stay at its initialisation.  Merging,
 * applying unmerged and training from the adapter each refuse, naming the
 * tensor and target_modules; a target naming no module of this
 * architecture (a generic list) is PEFT's no-op. */
static void targets_and_tensors(void **state)
{
    (void)state;
    char dir[] = "/tmp/icl-test-lora-tg.XXXXXX", p[600], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof p, "cp " ADAPTER "/adapter_model.safetensors '%s'/", dir);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    const char *dirs[1] = {dir};
    double mult[1] = {1};
    static const struct {
        const char *targets, *want1, *want2;
    } cases[] = {
        /* down_proj's tensors: not selected */
        {"[\"v_proj\", \"q_proj\"]", ".mlp.down_proj.lora_", "which adapter_config.json's target_modules [v_proj, q_proj] "
                                                         "do not select: PEFT would not load it"},
        {"[\"v_proj\", \"proj\", \"q_proj\"]", ".mlp.down_proj.lora_", "[v_proj, proj, q_proj] do not select"},
        /* k_proj selected, no tensors */
        {"[\"v_proj\", \"down_proj\", \"q_proj\", \"k_proj\"]",
         "no tensor base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight: adapter_config.json's "
         "target_modules [v_proj, down_proj, q_proj, k_proj] select model.layers.0.self_attn.k_proj",
         "whose adapter the file lacks"},
        {"\"all-linear\"", "no tensor base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", "[all-linear]"},
        /* the config names its base: the likely cause is said (another base model's adapter lacks layers) */
        {"[\"v_proj\", \"down_proj\", \"q_proj\", \"k_proj\"], \"base_model_name_or_path\": \"/elsewhere/base\"",
         "whose adapter the file lacks", "an adapter of another base model? its adapter_config.json names /elsewhere/base"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char cfg[300];
        snprintf(cfg, sizeof cfg, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": %s}",
                 cases[i].targets);
        write_text(p, cfg);
        icl_model *m = icl_model_load(BASE, err, sizeof err);
        assert_non_null(m);
        float *before = malloc(m->base.num_params * sizeof *before);
        memcpy(before, m->base.params, m->base.num_params * sizeof *before);
        assert_int_equal(icl_lora_merge(m, dir, 1, err, sizeof err), -1);
        if (!strstr(err, cases[i].want1) || !strstr(err, cases[i].want2))
            fail_msg("case %zu, merge: %s", i, err);
        assert_memory_equal(before, m->base.params, m->base.num_params * sizeof *before);
        free(before);
        assert_int_equal(icl_lora_apply(m, dirs, mult, 1, err, sizeof err), -1);
        if (!strstr(err, cases[i].want1) || !strstr(err, cases[i].want2))
            fail_msg("case %zu, apply: %s", i, err);
        icl_model_free(m);
        /* icl-train --adapter: its config's adapters, the file's tensors */
        icl_lora_config c;
        assert_int_equal(icl_lora_read_config(dir, &c, err, sizeof err), 0);
        m = icl_model_load(BASE, err, sizeof err);
        assert_int_equal(icl_lora_check_dir(dir, &m->cfg, err, sizeof err), -1); /* icl-train --adapter's check */
        if (!strstr(err, cases[i].want1) || !strstr(err, cases[i].want2))
            fail_msg("case %zu, check_dir: %s", i, err);
        if (i == 3) /* as icl-train expands it */
            assert_int_equal(icl_lora_set_targets(&c, &m->cfg, "all-linear", err, sizeof err), 0);
        if (i != 1) { /* "proj" names no projection: attaching refuses it by name */
            assert_non_null(icl_lora_attach(m, &c, 1, err, sizeof err));
            assert_int_equal(icl_lora_load_weights(m, dir, err, sizeof err), -1);
            assert_non_null(strstr(err, i < 2 ? "down_proj.lora_" : "k_proj.lora_"));
        }
        icl_lora_config_free(&c);
        icl_model_free(m);
    }
    /* a generic list (GPT-2's c_attn too) and the same weights: merged as with the adapter's own config */
    write_text(p, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", \"c_attn\", "
                  "\"v_proj\", \"down_proj\"]}");
    icl_model *m = icl_model_load(BASE, err, sizeof err), *ref = icl_model_load(BASE, err, sizeof err);
    assert_int_equal(icl_lora_check_dir(dir, &m->cfg, err, sizeof err), 0);
    assert_int_equal(icl_lora_merge(m, dir, 1, err, sizeof err), 0);
    assert_int_equal(icl_lora_merge(ref, ADAPTER, 1, err, sizeof err), 0);
    assert_memory_equal(m->base.params, ref->base.params, m->base.num_params * sizeof(float));
    icl_model_free(m);
    icl_model_free(ref);
    snprintf(p, sizeof p, "rm -rf '%s'", dir);
    assert_int_equal(system(p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(peft_adapter_round_trip),
        cmocka_unit_test(merge_equals_peft),
        cmocka_unit_test(scales_and_specs),
        cmocka_unit_test(hostile),
        cmocka_unit_test(targets_and_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
