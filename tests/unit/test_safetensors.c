/* lib/safetensors.c and lib/config.c: round trips, conversions, and hostile
 * files (each must give a clear error, never a crash or overread). */
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

#include "config.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

/* A file image: 8-byte length, header, then data bytes. Caller frees. */
static unsigned char *image(const char *hdr, uint64_t hlen_claim, size_t datalen, size_t *len)
{
    size_t hl = strlen(hdr);
    *len = 8 + hl + datalen;
    unsigned char *b = icl_xcalloc(*len ? *len : 1, 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(hlen_claim >> (8 * i));
    memcpy(b + 8, hdr, hl);
    for (size_t i = 0; i < datalen; i++)
        b[8 + hl + i] = (unsigned char)i;
    return b;
}

static void expect_error(const char *hdr, int64_t claim, size_t datalen, const char *want)
{
    size_t len;
    unsigned char *b = image(hdr, claim < 0 ? strlen(hdr) : (uint64_t)claim, datalen, &len);
    char err[512] = "";
    icl_st_file *f = icl_st_parse(b, len, "x.safetensors", err, sizeof err);
    if (f)
        fail_msg("accepted hostile header %s", hdr);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not say \"%s\"", err, want);
    print_message("# %s\n", err);
    free(b);
}

static void hostile_safetensors(void **state)
{
    (void)state;
    char err[256];
    assert_null(icl_st_parse("abc", 3, "x.safetensors", err, sizeof err));
    assert_non_null(strstr(err, "shorter than the 8-byte header length"));
    expect_error("{}", 1ull << 62, 0, "is absurd");
    expect_error("{}", 1000, 0, "runs past the end of the file");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 4, "past the end of the data (4 bytes): truncated?");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, 8, "overlap");
    /* an empty tensor between two overlapping ones used to hide the overlap */
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                 "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
                 "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", -1, 16, "overlap");
    expect_error("{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8, "unknown dtype");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8, "bytes of data for shape");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", -1, 8, "shape[0]");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}", -1, 8,
                 "overflows");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", -1, 8, "begin <= end");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", -1, 8, "needs");
    expect_error("{\"a\":1,\"a\":2}", -1, 0, "not valid JSON");
    expect_error("[1,2]", -1, 0, "not a JSON object");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,", -1, 8, "not valid JSON");
    expect_error("{\"__metadata__\":{\"format\":1}}", -1, 0, "not a string");
    /* data past the last tensor's (the safetensors library refuses it too) */
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 8,
                 "4 bytes after the last tensor's data");
    expect_error("{}", -1, 3, "3 bytes after the last tensor's data");
    /* bytes between tensors or before the first (the library refuses them too) */
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", -1, 12,
                 "data bytes 4 to 8 belong to no tensor");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, 8,
                 "data bytes 0 to 4 belong to no tensor");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", -1, 8,
                 "of no data is at byte 4, inside the data before it");
    { /* empty tensors where the next one starts, named in any order, and at the end: contiguous */
        const char *h = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                        "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}";
        size_t len;
        unsigned char *b = image(h, (int64_t)strlen(h), 8, &len);
        char e2[512] = "";
        icl_st_file *f = icl_st_parse(b, len, "x", e2, sizeof e2);
        if (!f)
            fail_msg("refused a contiguous file: %s", e2);
        assert_int_equal(icl_st_count(f), 4);
        assert_non_null(icl_st_find(f, "z"));
        icl_st_close(f);
        free(b);
    }
    /* a valid file whose tensor has a non-float dtype: open works, reading as float says why not */
    size_t len;
    const char *h64 = "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}";
    unsigned char *b = image(h64, strlen(h64), 8, &len);
    icl_st_file *f = icl_st_parse(b, len, "x", err, sizeof err);
    assert_non_null(f);
    float out[1];
    assert_int_equal(icl_st_read_f32(icl_st_find(f, "a"), out, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a float type"));
    assert_int_equal(icl_st_read_f32(icl_st_find(f, "a"), out, 2, err, sizeof err), -1);
    icl_st_close(f);
    free(b);
    assert_null(icl_st_open("/nonexistent/x.safetensors", err, sizeof err));
    assert_non_null(strstr(err, "No such file"));
}

static void conversions(void **state)
{
    (void)state;
    assert_float_equal(icl_bf16_to_f32(0x3f80), 1.0f, 0);
    assert_float_equal(icl_bf16_to_f32(0xc040), -3.0f, 0);
    assert_int_equal(icl_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(icl_f32_to_bf16(1.00390625f), 0x3f80); /* tie rounds to even */
    assert_int_equal(icl_f32_to_bf16(1.01171875f), 0x3f82); /* tie rounds to even (up) */
    assert_float_equal(icl_f16_to_f32(0x3c00), 1.0f, 0);
    assert_float_equal(icl_f16_to_f32(0xc000), -2.0f, 0);
    assert_float_equal(icl_f16_to_f32(0x7bff), 65504.0f, 0);
    assert_float_equal(icl_f16_to_f32(0x0001), ldexpf(1, -24), 0); /* smallest subnormal */
    assert_float_equal(icl_f16_to_f32(0x03ff), ldexpf(1023, -24), 0);
    assert_true(isinf(icl_f16_to_f32(0x7c00)));
    assert_true(isnan(icl_f16_to_f32(0x7e00)));
    /* a BF16 and an F16 tensor read back as float */
    size_t len;
    const char *h = "{\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                    "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}";
    unsigned char *b = image(h, strlen(h), 8, &len);
    unsigned char *d = b + 8 + strlen(h);
    d[0] = 0x80; d[1] = 0x3f; d[2] = 0x40; d[3] = 0xc0; /* bf16 1, -3 */
    d[4] = 0x00; d[5] = 0x3c; d[6] = 0x00; d[7] = 0xc0; /* f16 1, -2 */
    char err[256];
    icl_st_file *f = icl_st_parse(b, len, "x", err, sizeof err);
    assert_non_null(f);
    float o[2];
    assert_int_equal(icl_st_read_f32(icl_st_find(f, "b"), o, 2, err, sizeof err), 0);
    assert_float_equal(o[0], 1.0f, 0);
    assert_float_equal(o[1], -3.0f, 0);
    assert_int_equal(icl_st_read_f32(icl_st_find(f, "h"), o, 2, err, sizeof err), 0);
    assert_float_equal(o[0], 1.0f, 0);
    assert_float_equal(o[1], -2.0f, 0);
    assert_null(icl_st_f32_view(icl_st_find(f, "b")));
    icl_st_close(f);
    free(b);
}

static void write_read_round_trip(void **state)
{
    (void)state;
    char dir[] = "/tmp/icl-st-XXXXXX", path[64], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    float a[6] = {1, 2, 3, 4, 5, 6}, c[3] = {-1, 0.5f, 1e-30f};
    icl_st_entry e[2] = {{"zeta.weight", a, 2, {2, 3}}, {"alpha", c, 1, {3}}};
    assert_int_equal(icl_st_write(path, e, 2, err, sizeof err), 0);
    icl_st_file *f = icl_st_open(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(icl_st_count(f), 2);
    assert_string_equal(icl_st_get(f, 0)->name, "zeta.weight"); /* order kept */
    assert_string_equal(icl_st_get(f, 1)->name, "alpha");
    assert_string_equal(icl_st_metadata(f, "format"), "pt");
    const float *v = icl_st_f32_view(icl_st_find(f, "zeta.weight"));
    assert_non_null(v); /* 8-byte aligned data: zero copy */
    assert_memory_equal(v, a, sizeof a);
    assert_int_equal(icl_st_find(f, "zeta.weight")->shape[1], 3);
    assert_memory_equal(icl_st_f32_view(icl_st_find(f, "alpha")), c, sizeof c);
    icl_st_close(f);
    /* duplicate names are refused, and the old file stays as it was */
    icl_st_entry d[2] = {{"x", a, 1, {6}}, {"x", c, 1, {3}}};
    assert_int_equal(icl_st_write(path, d, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "used twice"));
    f = icl_st_open(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(icl_st_count(f), 2);
    icl_st_close(f);
    /* no temp files left behind */
    char cmd[128];
    snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    unlink(path);
    rmdir(dir);
}

static void expect_cfg_error(const char *json, const char *want)
{
    icl_config c;
    char err[512] = "";
    if (icl_config_parse(&c, json, strlen(json), "config.json", err, sizeof err) == 0) {
        icl_config_free(&c);
        fail_msg("accepted %s", json);
    }
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not say \"%s\"", err, want);
    print_message("# %s\n", err);
}

#define LL "\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1," \
           "\"num_attention_heads\":2,\"intermediate_size\":12"

static void hostile_config(void **state)
{
    (void)state;
    expect_cfg_error("{\"model_type\":\"llama\",\"vocab_size\":10}", "missing key \"hidden_size\"");
    expect_cfg_error("{\"vocab_size\":10}", "missing key \"model_type\"");
    expect_cfg_error("{\"model_type\":\"mamba\"}", "not supported");
    expect_cfg_error("{" LL ",\"num_key_value_heads\":3}", "not a multiple of num_key_value_heads");
    expect_cfg_error("{" LL ",\"rms_norm_eps\":\"small\"}", "must be a number");
    expect_cfg_error("{" LL ",\"tie_word_embeddings\":1}", "true or false");
    expect_cfg_error("{" LL ",\"hidden_act\":\"relu\"}", "hidden_act");
    expect_cfg_error("{" LL ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}", "not supported");
    expect_cfg_error("{" LL ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,"
                     "\"high_freq_factor\":1}}", "high_freq_factor > low_freq_factor");
    expect_cfg_error("{" LL ",\"eos_token_id\":[1,\"x\"]}", "eos_token_id");
    expect_cfg_error("{" LL ",\"bos_token_id\":10}", "not below vocab_size");
    expect_cfg_error("{\"model_type\":\"llama\",\"vocab_size\":100000000,\"hidden_size\":100000,"
                     "\"num_hidden_layers\":1000,\"num_attention_heads\":2,\"intermediate_size\":12}", "absurd");
    expect_cfg_error("{\"model_type\":\"llama\",\"vocab_size\":1.5}", "integer");
    expect_cfg_error("{\"model_type\":\"llama\",\"vocab_size\":-1}", "integer");
    expect_cfg_error("{" LL "", "not valid JSON");
    expect_cfg_error("[]", "not a JSON object");
    expect_cfg_error("{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":3}",
                     "not a multiple of n_head");
    expect_cfg_error("{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,"
                     "\"activation_function\":\"relu\"}", "activation_function");
    /* variants that were computed as the plain model, silently wrong */
    expect_cfg_error("{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,"
                     "\"scale_attn_by_inverse_layer_idx\":true}", "scale_attn_by_inverse_layer_idx true");
    expect_cfg_error("{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,"
                     "\"scale_attn_weights\":false}", "scale_attn_weights false");
    expect_cfg_error("{" LL ",\"use_sliding_window\":true}", "sliding-window");
    expect_cfg_error("{" LL ",\"layer_types\":[\"sliding_attention\"]}", "sliding-window");
    icl_config c;
    char err[256];
    const char *ok = "{" LL ",\"use_sliding_window\":false,\"layer_types\":[\"full_attention\"]}";
    assert_int_equal(icl_config_parse(&c, ok, strlen(ok), "config.json", err, sizeof err), 0);
    icl_config_free(&c);
}

static void config_round_trip(void **state)
{
    (void)state;
    const char *j = "{\"architectures\":[\"LlamaForCausalLM\"],\"foo\":{\"bar\":1}," LL
                    ",\"num_key_value_heads\":1,\"eos_token_id\":[2,7],\"bos_token_id\":null,"
                    "\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":32.0,"
                    "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}";
    icl_config c, d;
    char err[256];
    assert_int_equal(icl_config_parse(&c, j, strlen(j), "c", err, sizeof err), 0);
    assert_int_equal(c.num_key_value_heads, 1);
    assert_int_equal(c.head_dim, 4);
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.eos_token_id[1], 7);
    assert_true(icl_config_is_eos(&c, 7));
    assert_int_equal(c.bos_token_id, -1);
    assert_int_equal(c.rope_llama3, 1);
    assert_float_equal(c.rope_factor, 32.0, 0);
    assert_float_equal(c.rope_theta, 500000.0, 0);
    assert_float_equal(c.norm_eps, 1e-6, 0); /* LlamaConfig default */
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_int_equal(c.tie_word_embeddings, 0);
    char *s = icl_config_dump(&c);
    assert_non_null(strstr(s, "\"foo\"")); /* unknown keys kept */
    assert_int_equal(icl_config_parse(&d, s, strlen(s), "d", err, sizeof err), 0);
    assert_int_equal(d.n_eos, 2);
    assert_int_equal(d.rope_llama3, 1);
    assert_float_equal(d.rope_factor, 32.0, 0);
    assert_int_equal(d.rope_original_max_pos, 8192);
    assert_int_equal(d.intermediate_size, 12);
    free(s);
    icl_config_free(&c);
    icl_config_free(&d);
    /* from scratch: gpt2 defaults, dumped with GPT-2's keys */
    assert_int_equal(icl_config_defaults(&c, "gpt2"), 0);
    assert_int_equal(c.hidden_size, 768);
    assert_int_equal(c.intermediate_size, 3072);
    s = icl_config_dump(&c);
    assert_non_null(strstr(s, "\"n_embd\": 768"));
    assert_non_null(strstr(s, "GPT2LMHeadModel"));
    assert_int_equal(icl_config_parse(&d, s, strlen(s), "d", err, sizeof err), 0);
    assert_int_equal(d.eos_token_id[0], 50256);
    assert_int_equal(d.tie_word_embeddings, 1);
    free(s);
    icl_config_free(&d);
    assert_int_equal(icl_config_defaults(&c, "qwen2"), 0);
    assert_int_equal(c.qkv_bias, 1);
    assert_int_equal(icl_config_defaults(&c, "t5"), -1);
}

/* Model folders with a missing tensor, a misshapen one, a non-float one. */
static void hostile_model_dirs(void **state)
{
    (void)state;
    const char *cfg = "{" LL ",\"tie_word_embeddings\":true}";
    icl_config c;
    char err[512], dir[] = "/tmp/icl-md-XXXXXX", path[128];
    assert_int_equal(icl_config_parse(&c, cfg, strlen(cfg), "c", err, sizeof err), 0);
    icl_model *m = icl_model_new(&c);
    icl_config_free(&c);
    icl_model_init_random(m, 1, 0.1f);
    assert_non_null(mkdtemp(dir));
    assert_int_equal(icl_model_save(m, dir, err, sizeof err), 0);
    icl_model *m2 = icl_model_load(dir, err, sizeof err);
    assert_non_null(m2);
    assert_memory_equal(m->base.params, m2->base.params, m->base.num_params * sizeof(float));
    icl_model_free(m2);
    /* drop one tensor */
    icl_st_entry *e = xcalloc((size_t)m->base.n_views, sizeof *e);
    for (int i = 0; i < m->base.n_views; i++) {
        e[i].name = m->base.views[i].name;
        e[i].data = m->base.params + m->base.views[i].offset;
        e[i].ndim = m->base.views[i].ndim;
        e[i].shape[0] = m->base.views[i].shape[0];
        e[i].shape[1] = m->base.views[i].shape[1];
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(icl_st_write(path, e + 1, m->base.n_views - 1, err, sizeof err), 0);
    assert_null(icl_model_load(dir, err, sizeof err));
    assert_non_null(strstr(err, "missing tensor \"model.embed_tokens.weight\""));
    /* wrong shape */
    e[0].shape[0] = 5;
    e[0].shape[1] = 16;
    assert_int_equal(icl_st_write(path, e, m->base.n_views, err, sizeof err), 0);
    assert_null(icl_model_load(dir, err, sizeof err));
    assert_non_null(strstr(err, "has shape [5, 16]"));
    print_message("# %s\n", err);
    /* truncated weights file */
    e[0].shape[0] = 10;
    e[0].shape[1] = 8;
    assert_int_equal(icl_st_write(path, e, m->base.n_views, err, sizeof err), 0);
    assert_int_equal(truncate(path, 500), 0);
    assert_null(icl_model_load(dir, err, sizeof err));
    assert_non_null(strstr(err, "past the end"));
    print_message("# %s\n", err);
    /* bad config */
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"model_type\":\"llama\"}", f);
    fclose(f);
    assert_null(icl_model_load(dir, err, sizeof err));
    assert_non_null(strstr(err, "missing key"));
    free(e);
    const char *files[] = {"config.json", "model.safetensors", "generation_config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    icl_model_free(m);
}

/* A folder with its weights in two shards named by model.safetensors.index.json. */
static void sharded_folder(void **state)
{
    (void)state;
    const char *cfg = "{" LL ",\"tie_word_embeddings\":false}";
    icl_config c;
    char err[512], dir[] = "/tmp/icl-sh-XXXXXX", path[128];
    assert_int_equal(icl_config_parse(&c, cfg, strlen(cfg), "c", err, sizeof err), 0);
    icl_model *m = icl_model_new(&c);
    icl_config_free(&c);
    icl_model_init_random(m, 7, 0.1f);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(icl_config_save(&m->cfg, path, err, sizeof err), 0);
    icl_st_entry *e = xcalloc((size_t)m->base.n_views, sizeof *e);
    icl_buf ix = {0};
    buf_puts(&ix, "{\"metadata\":{},\"weight_map\":{");
    int half = m->base.n_views / 2;
    for (int i = 0; i < m->base.n_views; i++) {
        e[i].name = m->base.views[i].name;
        e[i].data = m->base.params + m->base.views[i].offset;
        e[i].ndim = m->base.views[i].ndim;
        e[i].shape[0] = m->base.views[i].shape[0];
        e[i].shape[1] = m->base.views[i].shape[1];
        buf_printf(&ix, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"", i ? "," : "", e[i].name, i < half ? 1 : 2);
    }
    icl_buf_puts(&ix, "}}");
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    assert_int_equal(icl_st_write(path, e, half, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    assert_int_equal(icl_st_write(path, e + half, m->base.n_views - half, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    assert_int_equal(icl_write_file_atomic(path, ix.data, ix.len, err, sizeof err), 0);
    icl_model *m2 = icl_model_load(dir, err, sizeof err);
    if (!m2)
        fail_msg("%s", err);
    assert_memory_equal(m->base.params, m2->base.params, m->base.num_params * sizeof(float));
    icl_model_free(m2);
    /* a weight_map that points outside the folder is refused */
    const char *bad = "{\"weight_map\":{\"lm_head.weight\":\"../../etc/passwd\"}}";
    assert_int_equal(icl_write_file_atomic(path, bad, strlen(bad), err, sizeof err), 0);
    assert_null(icl_model_load(dir, err, sizeof err));
    assert_non_null(strstr(err, "not a file name in the folder"));
    print_message("# %s\n", err);
    const char *files[] = {"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                           "model.safetensors.index.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        assert_int_equal(unlink(path), 0);
    }
    assert_int_equal(rmdir(dir), 0);
    icl_buf_free(&ix);
    free(e);
    icl_model_free(m);
}

/* GPT-2 as the original checkpoint stores it: no "transformer." prefix, plus
 * the attn.bias mask buffers, which are ignored. */
static void gpt2_without_prefix(void **state)
{
    (void)state;
    const char *cfg = "{\"model_type\":\"gpt2\",\"vocab_size\":20,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,"
                      "\"n_positions\":16}";
    icl_config c;
    char err[512], dir[] = "/tmp/icl-g2-XXXXXX", path[128];
    assert_int_equal(icl_config_parse(&c, cfg, strlen(cfg), "c", err, sizeof err), 0);
    assert_int_equal(c.bos_token_id, -1); /* GPT-2's default 50256 does not fit vocab 20 */
    icl_model *m = icl_model_new(&c);
    icl_config_free(&c);
    icl_model_init_random(m, 3, 0.1f);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(icl_config_save(&m->cfg, path, err, sizeof err), 0);
    icl_st_entry *e = xcalloc((size_t)m->base.n_views + 1, sizeof *e);
    float mask[16 * 16] = {0};
    for (int i = 0; i < m->base.n_views; i++) {
        e[i].name = m->base.views[i].name + strlen("transformer.");
        e[i].data = m->base.params + m->base.views[i].offset;
        e[i].ndim = m->base.views[i].ndim;
        e[i].shape[0] = m->base.views[i].shape[0];
        e[i].shape[1] = m->base.views[i].shape[1];
    }
    e[m->base.n_views] = (icl_st_entry){"h.0.attn.bias", mask, 2, {16, 16}};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(icl_st_write(path, e, m->base.n_views + 1, err, sizeof err), 0);
    icl_model *m2 = icl_model_load(dir, err, sizeof err);
    if (!m2)
        fail_msg("%s", err);
    assert_memory_equal(m->base.params, m2->base.params, m->base.num_params * sizeof(float));
    icl_model_free(m2);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
    free(e);
    icl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_safetensors), cmocka_unit_test(conversions),
        cmocka_unit_test(write_read_round_trip), cmocka_unit_test(hostile_config),
        cmocka_unit_test(config_round_trip), cmocka_unit_test(hostile_model_dirs),
        cmocka_unit_test(sharded_folder), cmocka_unit_test(gpt2_without_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
