/* lib/generate.c: the batched decode step against full recompute and
 * icl_model_decode, independence from the batch, greedy parity with
 * transformers (tests/data/model, made by tests/hf/fixtures/make_fixtures.py), generation
 * config, streaming text with characters that span tokens, stop strings. */
#define _GNU_SOURCE
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
#include <sys/stat.h>
#include <unistd.h>

#include "generate.h"
#include "model.h"
#include "util.h"

static char *path_of(const char *fmt, const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, fmt, name);
    size_t n = strlen(TEST_DATA) + strlen(rel) + 2;
    char *p = icl_xmalloc(n);
    snprintf(p, n, "%s/%s", TEST_DATA, rel);
    return p;
}

static icl_model *load(const char *name)
{
    char err[512];
    char *p = path_of("model/%s/model", name);
    icl_model *m = icl_model_load(p, err, sizeof err);
    if (!m)
        fail_msg("%s: %s", p, err);
    free(p);
    return m;
}

static json_t *expected(const char *name)
{
    char *p = path_of("model/%s/expected.json", name);
    json_error_t je;
    json_t *e = json_load_file(p, 0, &je);
    if (!e)
        fail_msg("%s: %s", p, je.text);
    free(p);
    return e;
}

static const char *tiny[] = {"llama-tiny", "gpt2-tiny", "qwen2-tiny"};

/* Three sequences of different lengths decoded together, step by step: the
 * logits equal full recompute (icl_model_forward) and icl_model_decode. */
static void step_matches_full_recompute(void **state)
{
    (void)state;
    for (int k = 0; k < 4; k++) {
        icl_model *m = load(k < 3 ? tiny[k] : "stories260K");
        int V = m->cfg.vocab_size, T = 24, B = 3, pre[3] = {5, 1, 9};
        int32_t ids[3][24];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                ids[b][t] = (int32_t)((t * 31 + b * 17 + 3) % V);
        float *full = icl_xmalloc((size_t)B * T * V * sizeof(float)), *lg = icl_xmalloc((size_t)B * V * sizeof(float)),
              *ref = icl_xmalloc((size_t)V * sizeof(float));
        icl_batch bt = {B, T, &ids[0][0], NULL, NULL, NULL, NULL};
        icl_model_forward(m, &bt, full, 0, NULL);
        icl_kv_cache *kc[3], *kr[3];
        char err[256];
        for (int b = 0; b < B; b++) {
            kc[b] = icl_kv_cache_new(m, T);
            kr[b] = icl_kv_cache_new(m, T);
            assert_int_equal(icl_model_decode(m, kc[b], ids[b], pre[b], lg, 0, err, sizeof err), 0);
            assert_int_equal(icl_model_decode(m, kr[b], ids[b], pre[b], lg, 0, err, sizeof err), 0);
        }
        double maxerr = 0, maxdec = 0, maxabs = 0;
        for (int s = 0; s < T - 9; s++) {
            int32_t next[3];
            for (int b = 0; b < B; b++)
                next[b] = ids[b][pre[b] + s];
            assert_int_equal(icl_model_step(m, kc, next, B, lg, err, sizeof err), 0);
            for (int b = 0; b < B; b++) {
                int t = pre[b] + s;
                assert_int_equal(kc[b]->len, t + 1);
                assert_int_equal(icl_model_decode(m, kr[b], &next[b], 1, ref, 0, err, sizeof err), 0);
                const float *f = full + ((size_t)b * T + t) * V, *g = lg + (size_t)b * V;
                for (int v = 0; v < V; v++) {
                    maxerr = fmax(maxerr, fabs(f[v] - g[v]));
                    maxdec = fmax(maxdec, fabs(ref[v] - g[v]));
                    maxabs = fmax(maxabs, fabs(f[v]));
                }
            }
        }
        print_message("# %s: step vs full max abs err %.3g, vs icl_model_decode %.3g (max |logit| %.3g)\n",
                      k < 3 ? tiny[k] : "stories260K", maxerr, maxdec, maxabs);
        assert_true(maxerr <= 1e-5 * fmax(1.0, maxabs));
        assert_true(maxdec <= 1e-5 * fmax(1.0, maxabs));
        /* a bad id changes nothing and reports */
        int32_t bad[3] = {0, V, 0};
        int len0 = kc[0]->len;
        assert_int_equal(icl_model_step(m, kc, bad, B, lg, err, sizeof err), -1);
        assert_non_null(strstr(err, "vocab_size"));
        assert_int_equal(kc[0]->len, len0);
        for (int b = 0; b < B; b++) {
            icl_kv_cache_free(kc[b]);
            icl_kv_cache_free(kr[b]);
        }
        free(full);
        free(lg);
        free(ref);
        icl_model_free(m);
    }
}

/* A sequence's logits are bit-identical whatever else is in the batch. */
static void step_independent_of_batch(void **state)
{
    (void)state;
    for (int k = 0; k < 3; k++) {
        icl_model *m = load(tiny[k]);
        int V = m->cfg.vocab_size, B = 7;
        icl_kv_cache *kc[7];
        char err[256];
        float *one = icl_xmalloc((size_t)V * sizeof(float)), *all = icl_xmalloc((size_t)B * V * sizeof(float));
        for (int b = 0; b < B; b++) {
            kc[b] = icl_kv_cache_new(m, 32);
            int32_t p[4] = {3 + b, 7, 11 * b % V, 5};
            assert_int_equal(icl_model_decode(m, kc[b], p, 1 + b % 4, all, 0, err, sizeof err), 0);
        }
        icl_kv_cache *solo = icl_kv_cache_new(m, 32);
        int32_t p5[4] = {3 + 5, 7, 55 % V, 5};
        assert_int_equal(icl_model_decode(m, solo, p5, 1 + 5 % 4, one, 0, err, sizeof err), 0);
        int32_t next[7] = {1, 2, 3, 4, 5, 6, 7};
        for (int s = 0; s < 3; s++) {
            assert_int_equal(icl_model_step(m, kc, next, B, all, err, sizeof err), 0);
            assert_int_equal(icl_model_step(m, &solo, &next[5], 1, one, err, sizeof err), 0);
            assert_memory_equal(one, all + (size_t)5 * V, (size_t)V * sizeof(float));
        }
        for (int b = 0; b < B; b++)
            icl_kv_cache_free(kc[b]);
        icl_kv_cache_free(solo);
        free(one);
        free(all);
        icl_model_free(m);
    }
}

/* The decoding kernel of linear.h (float32 ICL_LIN_ROWS) against a plain
 * double-precision product, both layouts, sizes that exercise the vector
 * tails. */
static void linear_kernel(void **state)
{
    (void)state;
    int shapes[][3] = {{1, 7, 5}, {3, 48, 70}, {6, 100, 33}, {9, 64, 129}};
    for (int s = 0; s < 4; s++) {
        int B = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *x = icl_xmalloc(sizeof(float) * B * in), *W = icl_xmalloc(sizeof(float) * in * out),
              *bias = icl_xmalloc(sizeof(float) * out), *y = icl_xmalloc(sizeof(float) * B * out);
        for (int i = 0; i < B * in; i++)
            x[i] = (float)((i * 37 % 101) - 50) / 50.0f;
        for (int i = 0; i < in * out; i++)
            W[i] = (float)((i * 53 % 97) - 48) / 48.0f;
        for (int j = 0; j < out; j++)
            bias[j] = (float)j / 10.0f;
        for (int conv = 0; conv < 2; conv++)
            for (int beta = 0; beta < 2; beta++) {
                for (int i = 0; i < B * out; i++)
                    y[i] = 1.0f;
                icl_linear l = {.w = {ICL_WEIGHT_F32, 0, out, in, conv, W, NULL}, .b = bias};
                icl_linear_forward(&l, y, out, x, in, B, (float)beta, ICL_LIN_ROWS, 2, NULL);
                for (int b = 0; b < B; b++)
                    for (int j = 0; j < out; j++) {
                        double r = bias[j] + beta;
                        for (int k = 0; k < in; k++)
                            r += (double)x[b * in + k] * (conv ? W[k * out + j] : W[j * in + k]);
                        assert_true(fabs(r - y[b * out + j]) <= 1e-5 * (1 + fabs(r)));
                    }
            }
        free(x);
        free(W);
        free(bias);
        free(y);
    }
}

/* icl_generate greedy equals transformers' greedy output (12 new tokens),
 * alone and in a batch with other prompts. */
static void greedy_parity(void **state)
{
    (void)state;
    for (int k = 0; k < 3; k++) {
        icl_model *m = load(tiny[k]);
        json_t *e = expected(tiny[k]), *gr = json_object_get(e, "greedy");
        json_t *pr = json_object_get(gr, "prompt"), *out = json_object_get(gr, "output");
        size_t np = json_array_size(pr), no = json_array_size(out);
        int32_t prompt[16], other[3] = {1, 2, 3};
        for (size_t i = 0; i < np; i++)
            prompt[i] = (int32_t)json_integer_value(json_array_get(pr, i));
        icl_gen_config g;
        char err[256];
        assert_int_equal(icl_gen_config_load(&g, NULL, &m->cfg, err, sizeof err), 0);
        g.n_eos = 0; /* transformers ran exactly 12 new tokens */
        g.max_new_tokens = (long)json_integer_value(json_object_get(gr, "new_tokens"));
        for (int B = 1; B <= 3; B += 2) {
            icl_gen_seq seqs[3];
            memset(seqs, 0, sizeof seqs);
            for (int b = 0; b < B; b++) {
                seqs[b].prompt = b == 1 ? prompt : other;
                seqs[b].n_prompt = b == 1 ? np : 3;
                seqs[b].index = (uint64_t)b;
            }
            if (B == 1) {
                seqs[0].prompt = prompt;
                seqs[0].n_prompt = np;
            }
            int w = B == 1 ? 0 : 1;
            assert_int_equal(icl_generate(m, &g, seqs, B, NULL, NULL, err, sizeof err), 0);
            assert_int_equal(seqs[w].out.n, no - np);
            assert_int_equal(seqs[w].stop, ICL_STOP_LENGTH);
            for (size_t i = 0; i < no - np; i++)
                assert_int_equal(seqs[w].out.v[i], json_integer_value(json_array_get(out, np + i)));
            for (int b = 0; b < B; b++)
                icl_ids_free(&seqs[b].out);
        }
        json_decref(e);
        icl_model_free(m);
    }
}

/* stories260K from BOS: the 200 ids of llama2.c's run.c. */
static void greedy_stories(void **state)
{
    (void)state;
    icl_model *m = load("stories260K");
    char *p = path_of("model/%s/greedy_ids_from_bos_n200.txt", "stories260K");
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    int32_t want[256];
    int n = 0;
    while (n < 256 && fscanf(f, "%d", &want[n]) == 1)
        n++;
    fclose(f);
    free(p);
    assert_int_equal(n, 200);
    icl_gen_config g;
    char err[256];
    assert_int_equal(icl_gen_config_load(&g, NULL, &m->cfg, err, sizeof err), 0);
    g.max_new_tokens = 200;
    int32_t bos = 1;
    icl_gen_seq s;
    memset(&s, 0, sizeof s);
    s.prompt = &bos;
    s.n_prompt = 1;
    assert_int_equal(icl_generate(m, &g, &s, 1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(s.out.n, 200);
    for (int i = 0; i < 200; i++)
        assert_int_equal(s.out.v[i], want[i]);
    icl_ids_free(&s.out);
    icl_model_free(m);
}

/* Sampling: the same seed gives the same tokens whatever the batch; a
 * caller's stop and the eos ids end a sequence. */
static int stop_after_3(void *ctx, int seq, int32_t id)
{
    (void)id;
    icl_gen_seq *s = ctx;
    return s[seq].out.n >= 3;
}

static void sampling_reproducible(void **state)
{
    (void)state;
    icl_model *m = load("stories260K");
    icl_gen_config g;
    char err[256];
    assert_int_equal(icl_gen_config_load(&g, NULL, &m->cfg, err, sizeof err), 0);
    g.do_sample = 1;
    g.sp.temperature = 1.5f;
    g.seed = 42;
    g.max_new_tokens = 30;
    int32_t bos = 1;
    icl_gen_seq a[5], solo;
    memset(a, 0, sizeof a);
    memset(&solo, 0, sizeof solo);
    for (int b = 0; b < 5; b++) {
        a[b].prompt = &bos;
        a[b].n_prompt = 1;
        a[b].index = (uint64_t)b;
    }
    solo = a[3];
    assert_int_equal(icl_generate(m, &g, a, 5, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(icl_generate(m, &g, &solo, 1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(solo.out.n, a[3].out.n);
    assert_memory_equal(solo.out.v, a[3].out.v, solo.out.n * sizeof(int32_t));
    /* different streams differ */
    assert_true(a[0].out.n != a[1].out.n || memcmp(a[0].out.v, a[1].out.v, a[0].out.n * sizeof(int32_t)) != 0);
    for (int b = 0; b < 5; b++)
        icl_ids_free(&a[b].out);
    icl_ids_free(&solo.out);
    /* caller stop */
    assert_int_equal(icl_generate(m, &g, a, 2, stop_after_3, a, err, sizeof err), 0);
    assert_int_equal(a[0].out.n, 3);
    assert_int_equal(a[0].stop, ICL_STOP_CALLER);
    icl_ids_free(&a[0].out);
    icl_ids_free(&a[1].out);
    /* eos: greedy from BOS makes 461 first; make it an eos id */
    g.do_sample = 0;
    g.eos[0] = 461;
    g.n_eos = 1;
    assert_int_equal(icl_generate(m, &g, a, 1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(a[0].out.n, 1);
    assert_int_equal(a[0].out.v[0], 461);
    assert_int_equal(a[0].stop, ICL_STOP_EOS);
    icl_ids_free(&a[0].out);
    /* context: a prompt of max_position_embeddings - 1 tokens leaves 2 */
    int mp = m->cfg.max_position_embeddings;
    int32_t *longp = icl_xcalloc((size_t)mp + 1, sizeof(int32_t));
    a[0].prompt = longp;
    a[0].n_prompt = (size_t)mp - 1;
    assert_int_equal(icl_generate(m, &g, a, 1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(a[0].out.n, 2);
    assert_int_equal(a[0].stop, ICL_STOP_CONTEXT);
    icl_ids_free(&a[0].out);
    a[0].n_prompt = (size_t)mp + 1;
    assert_int_equal(icl_generate(m, &g, a, 1, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "max_position_embeddings"));
    icl_ids_free(&a[0].out);
    free(longp);
    icl_model_free(m);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void gen_config(void **state)
{
    (void)state;
    char dir[] = "/tmp/icl-gencfg.XXXXXX", path[128], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    icl_config cfg;
    icl_config_defaults(&cfg, "llama");
    cfg.n_eos = 1;
    cfg.eos_token_id[0] = 2;
    cfg.vocab_size = 128256; /* Llama 3's, whose eos ids are below */
    icl_gen_config g;
    assert_int_equal(icl_gen_config_load(&g, dir, &cfg, err, sizeof err), 0); /* no file: defaults */
    assert_int_equal(g.do_sample, 0);
    assert_int_equal(g.sp.top_k, 50);
    assert_int_equal(g.n_eos, 1);
    assert_int_equal(g.eos[0], 2);
    icl_sampler_params sp = icl_gen_sampler_params(&g);
    assert_true(icl_sampler_is_greedy(&sp));
    write_file(path, "{\"do_sample\": true, \"temperature\": 0.6, \"top_p\": 0.9, \"top_k\": null, "
                     "\"max_new_tokens\": 7, \"eos_token_id\": [128001, 128009]}");
    assert_int_equal(icl_gen_config_load(&g, dir, &cfg, err, sizeof err), 0);
    assert_int_equal(g.do_sample, 1);
    assert_true(fabsf(g.sp.temperature - 0.6f) < 1e-7f);
    assert_true(fabsf(g.sp.top_p - 0.9f) < 1e-7f);
    assert_int_equal(g.sp.top_k, 50);
    assert_int_equal(g.max_new_tokens, 7);
    assert_int_equal(g.n_eos, 2);
    assert_int_equal(g.eos[1], 128009);
    /* an eos id past the vocabulary, as config.json's (the model could never emit it) */
    write_file(path, "{\"eos_token_id\": [2, 128256]}");
    assert_int_equal(icl_gen_config_load(&g, dir, &cfg, err, sizeof err), -1);
    assert_string_equal(err, "generation_config.json: eos_token_id 128256 is not below vocab_size 128256 (config.json)");
    write_file(path, "{\"top_p\": 1.5}");
    assert_int_equal(icl_gen_config_load(&g, dir, &cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "top-p must be in [0, 1]"));
    assert_non_null(strstr(err, "generation_config.json"));
    write_file(path, "{\"max_new_tokens\": \"ten\"}");
    assert_int_equal(icl_gen_config_load(&g, dir, &cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "max_new_tokens"));
    write_file(path, "{\"eos_token_id\": ");
    assert_int_equal(icl_gen_config_load(&g, dir, &cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "generation_config.json"));
    unlink(path);
    rmdir(dir);
}

/* Streaming: characters whose bytes span tokens never show as U+FFFD, the
 * streamed pieces add up to the text, stop strings are cut and never
 * streamed, even when they span tokens.  Byte-level BPE (a character split
 * between merged tokens) and Llama 2's sentencepiece BPE with byte fallback
 * (one <0xNN> token per byte: several U+FFFD in a row until complete). */
static icl_tokenizer *load_tok(const char *rel)
{
    char err[512], *p = path_of("%s", rel), cmd[1024];
    icl_tokenizer *tok;
    size_t pl = strlen(p);
    if (pl > 3 && !strcmp(p + pl - 3, ".gz")) {
        snprintf(cmd, sizeof cmd, "gzip -dc '%s'", p);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        icl_buf b = {0};
        char tmp[1 << 16];
        size_t r;
        while ((r = fread(tmp, 1, sizeof tmp, f)) > 0)
            icl_buf_append(&b, tmp, r);
        pclose(f);
        tok = icl_tok_load_mem(b.data, b.len, NULL, err, sizeof err);
        icl_buf_free(&b);
    } else {
        tok = icl_tok_load(p, err, sizeof err);
    }
    if (!tok)
        fail_msg("%s: %s", p, err);
    free(p);
    return tok;
}

static void stream_case(const char *tokname, int want_multi)
{
    char err[512];
    icl_tokenizer *tok = load_tok(tokname);
    const char *text = "Oh caf\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\xa4\x97 \xea\xb3\xbe END and more";
    icl_ids ids = {0};
    assert_int_equal(icl_tok_encode(tok, NULL, text, strlen(text), 0, &ids, err, sizeof err), 0);
    assert_true(ids.n > 10);
    icl_buf full = {0};
    assert_int_equal(icl_tok_decode(tok, ids.v, ids.n, 1, ICL_TOK_CONTINUATION, &full, err, sizeof err), 0);
    assert_non_null(strstr(full.data, "caf\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\xa4\x97 \xea\xb3\xbe END"));
    int split = 0, multi = 0; /* a token ending inside a character; two U+FFFD at the end */
    for (int with_stop = 0; with_stop < 2; with_stop++) {
        char *stops[] = {"END", "zzz"};
        icl_gen_text t;
        icl_gen_text_init(&t, tok, stops, with_stop ? 2 : 0);
        icl_buf got = {0};
        int stopped_at = -1;
        for (size_t n = 1; n <= ids.n; n++) {
            int r = icl_gen_text_update(&t, ids.v, n, err, sizeof err);
            assert_true(r >= 0);
            /* a token that ends inside a character: a full decode of the
             * ids so far would end in U+FFFD (two, for byte tokens) */
            icl_buf part = {0};
            assert_int_equal(icl_tok_decode(tok, ids.v, n, 1, ICL_TOK_CONTINUATION, &part, err, sizeof err), 0);
            if (part.len >= 3 && memcmp(part.data + part.len - 3, "\xef\xbf\xbd", 3) == 0)
                split = 1;
            if (part.len >= 6 && memcmp(part.data + part.len - 6, "\xef\xbf\xbd\xef\xbf\xbd", 6) == 0)
                multi = 1;
            icl_buf_free(&part);
            size_t len;
            const char *s = icl_gen_text_stream(&t, &len);
            assert_null(memmem(s, len, "\xef\xbf\xbd", 3));
            icl_buf_append(&got, s, len);
            if (with_stop) /* nothing of the stop string is ever streamed */
                assert_null(memmem(got.data ? got.data : "", got.len, "EN", 2));
            if (r == 1) {
                stopped_at = (int)n;
                break;
            }
        }
        assert_true(icl_gen_text_finish(&t, err, sizeof err) >= 0);
        size_t len;
        const char *s = icl_gen_text_stream(&t, &len);
        icl_buf_append(&got, s, len);
        if (with_stop) {
            assert_true(stopped_at > 0);
            size_t cut = (size_t)(strstr(full.data, "END") - full.data);
            assert_int_equal(got.len, cut);
            assert_memory_equal(got.data, full.data, cut);
            assert_string_equal(t.text.data, got.data);
        } else {
            assert_string_equal(got.data, full.data);
        }
        icl_buf_free(&got);
        icl_gen_text_free(&t);
    }
    assert_true(split); /* the test did exercise a split character */
    if (want_multi)
        assert_true(multi);
    icl_buf_free(&full);
    icl_ids_free(&ids);
    icl_tok_free(tok);
}

static void text_stream(void **state)
{
    (void)state;
    stream_case("tok/bytelevel-512.json", 0);
    stream_case("tok/llama2.json.gz", 1);
}

/* A stop string made by a byte token: Llama 2 spells "\n" as <0x0A>,
 * whose text the stream holds while the run of byte tokens may go on; the
 * sequence still stops at that token, not at the next one (or never, in a
 * run of newlines). */
static void stop_in_byte_run(void **state)
{
    (void)state;
    char err[512];
    icl_tokenizer *tok = load_tok("tok/llama2.json.gz");
    const char *text = "Hello there\n\n\nworld";
    int32_t nl = icl_tok_id(tok, "<0x0A>", 6);
    assert_true(nl >= 0);
    icl_ids ids = {0};
    assert_int_equal(icl_tok_encode(tok, NULL, text, strlen(text), 0, &ids, err, sizeof err), 0);
    size_t first = 0;
    while (first < ids.n && ids.v[first] != nl)
        first++;
    assert_true(first + 3 < ids.n && ids.v[first + 1] == nl && ids.v[first + 2] == nl);
    char *stops[] = {"\n"};
    icl_gen_text t;
    icl_gen_text_init(&t, tok, stops, 1);
    size_t n;
    for (n = 1; n <= ids.n; n++)
        if (icl_gen_text_update(&t, ids.v, n, err, sizeof err) != 0)
            break;
    assert_int_equal(n, first + 1);
    assert_true(icl_gen_text_finish(&t, err, sizeof err) == 1);
    size_t len;
    const char *s = icl_gen_text_stream(&t, &len);
    assert_int_equal(len, strlen(" Hello there"));
    assert_memory_equal(s, " Hello there", len);
    icl_gen_text_free(&t);
    icl_ids_free(&ids);
    icl_tok_free(tok);
}

/* The thread count never changes a result: the prefill (BLIS, threaded over
 * m and n, never k) and the decode step are bit-identical on 1 and 2
 * threads, so icl_generate may pick either by timing. */
static void threads_do_not_change_results(void **state)
{
    (void)state;
    icl_config cfg;
    icl_config_defaults(&cfg, "llama");
    cfg.vocab_size = 2048;
    cfg.hidden_size = 256;
    cfg.num_hidden_layers = 2;
    cfg.num_attention_heads = 4;
    cfg.num_key_value_heads = 2;
    cfg.head_dim = 64;
    cfg.intermediate_size = 688;
    cfg.max_position_embeddings = 512;
    icl_model *m = icl_model_new(&cfg);
    icl_model_init_random(m, 7, 0.05f);
    int n = 150, V = cfg.vocab_size;
    int32_t *ids = icl_xmalloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)((i * 7919 + 13) % V);
    float *lg[2];
    icl_kv_cache *kc[2][2];
    char err[256];
    for (int t = 0; t < 2; t++) {
        icl_set_threads(t + 1);
        lg[t] = icl_xmalloc((size_t)2 * V * sizeof(float));
        for (int b = 0; b < 2; b++) {
            kc[t][b] = icl_kv_cache_new(m, n + 4);
            assert_int_equal(icl_model_decode(m, kc[t][b], ids + b, n - b, lg[t] + (size_t)b * V, 0, err, sizeof err), 0);
        }
    }
    assert_memory_equal(lg[0], lg[1], (size_t)2 * V * sizeof(float));
    size_t cache = (size_t)2 * 2 * (n + 4) * 64 * sizeof(float);
    for (int b = 0; b < 2; b++) {
        assert_memory_equal(kc[0][b]->k, kc[1][b]->k, cache);
        assert_memory_equal(kc[0][b]->v, kc[1][b]->v, cache);
    }
    int32_t next[2] = {5, 6};
    for (int t = 0; t < 2; t++) {
        icl_set_threads(t + 1);
        assert_int_equal(icl_model_step(m, kc[t], next, 2, lg[t], err, sizeof err), 0);
    }
    assert_memory_equal(lg[0], lg[1], (size_t)2 * V * sizeof(float));
    for (int t = 0; t < 2; t++) {
        free(lg[t]);
        for (int b = 0; b < 2; b++)
            icl_kv_cache_free(kc[t][b]);
    }
    free(ids);
    icl_model_free(m);
    icl_set_threads(2);
}

/* icl_kv_cache_reserve keeps the filled positions, icl_kv_cache_truncate
 * forgets the later ones: decoding after either gives the logits of a
 * fresh cache fed the same ids in the same pieces; a bad length is refused
 * and changes nothing. */
static void cache_truncate_reserve(void **state)
{
    (void)state;
    for (int k = 0; k < 4; k++) {
        icl_model *m = load(k < 3 ? tiny[k] : "stories260K");
        int V = m->cfg.vocab_size, T = 20;
        int32_t ids[20], alt[20];
        for (int t = 0; t < T; t++) {
            ids[t] = (int32_t)((t * 31 + 3) % V);
            alt[t] = (int32_t)((t * 7 + 11) % V);
        }
        float *la = icl_xmalloc((size_t)T * V * sizeof(float)), *lb = icl_xmalloc((size_t)T * V * sizeof(float));
        char err[256];
        /* grown from 6 positions to 20 after 6 were filled */
        icl_kv_cache *kc = icl_kv_cache_new(m, 6), *kr = icl_kv_cache_new(m, T);
        assert_int_equal(icl_model_decode(m, kc, ids, 6, la, 0, err, sizeof err), 0);
        assert_int_equal(icl_model_decode(m, kc, ids + 6, 1, la, 0, err, sizeof err), -1); /* full */
        icl_kv_cache_reserve(kc, m, T);
        assert_int_equal(kc->max_pos, T);
        assert_int_equal(kc->len, 6);
        icl_kv_cache_reserve(kc, m, 3); /* smaller: nothing changes */
        assert_int_equal(kc->max_pos, T);
        assert_int_equal(icl_model_decode(m, kc, ids + 6, T - 6, la, 1, err, sizeof err), 0);
        assert_int_equal(icl_model_decode(m, kr, ids, 6, lb, 0, err, sizeof err), 0);
        assert_int_equal(icl_model_decode(m, kr, ids + 6, T - 6, lb, 1, err, sizeof err), 0);
        assert_memory_equal(la, lb, (size_t)(T - 6) * V * sizeof(float));
        /* cut back to 10 positions, then another suffix: as a fresh cache fed
         * ids[0..6), ids[6..10), alt[10..20) (positions 6..9 came from a
         * longer piece: the same values, each row of a prefill being
         * computed alone) */
        assert_int_equal(icl_kv_cache_truncate(kc, T + 1, err, sizeof err), -1);
        assert_non_null(strstr(err, "cannot truncate"));
        assert_int_equal(icl_kv_cache_truncate(kc, -1, err, sizeof err), -1);
        assert_int_equal(kc->len, T);
        assert_int_equal(icl_kv_cache_truncate(kc, 10, err, sizeof err), 0);
        assert_int_equal(kc->len, 10);
        assert_int_equal(icl_model_decode(m, kc, alt + 10, T - 10, la, 1, err, sizeof err), 0);
        icl_kv_cache_reset(kr);
        assert_int_equal(icl_model_decode(m, kr, ids, 6, lb, 0, err, sizeof err), 0);
        assert_int_equal(icl_model_decode(m, kr, ids + 6, 4, lb, 0, err, sizeof err), 0);
        assert_int_equal(icl_model_decode(m, kr, alt + 10, T - 10, lb, 1, err, sizeof err), 0);
        double maxerr = 0, maxabs = 0;
        for (size_t i = 0; i < (size_t)(T - 10) * V; i++) {
            maxerr = fmax(maxerr, fabs((double)la[i] - lb[i]));
            maxabs = fmax(maxabs, fabs((double)lb[i]));
        }
        print_message("cache_truncate_reserve %s: max |diff| %g of |logit| %g\n", k < 3 ? tiny[k] : "stories260K",
                      maxerr, maxabs);
        assert_true(maxerr == 0);
        icl_kv_cache_free(kc);
        icl_kv_cache_free(kr);
        free(la);
        free(lb);
        icl_model_free(m);
    }
}

/* icl_generate with the caller's cache (icl_gen_seq.cache): the same ids as
 * with its own cache, and the cache then holds the prompt and the new ids
 * but the last, so that a longer prompt starting with them (a chat's next
 * turn), or one sharing a shorter prefix once the cache is truncated to it,
 * generates what a fresh start on that prompt generates. */
static void generate_with_cache(void **state)
{
    (void)state;
    icl_model *m = load("stories260K");
    icl_gen_config g;
    char err[256];
    assert_int_equal(icl_gen_config_load(&g, NULL, &m->cfg, err, sizeof err), 0);
    g.max_new_tokens = 12;
    g.n_eos = 0;
    int32_t p1[4] = {1, 400, 260, 300};
    icl_kv_cache *kc = icl_kv_cache_new(m, 1);
    icl_gen_seq a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.prompt = b.prompt = p1;
    a.n_prompt = b.n_prompt = 4;
    a.cache = kc;
    assert_int_equal(icl_generate(m, &g, &a, 1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(icl_generate(m, &g, &b, 1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(a.out.n, 12);
    assert_int_equal(b.out.n, 12);
    assert_memory_equal(a.out.v, b.out.v, 12 * sizeof(int32_t));
    assert_int_equal(kc->len, 4 + 12 - 1);
    /* the next turn: prompt, reply, 3 more ids */
    int32_t p2[4 + 12 + 3];
    memcpy(p2, p1, sizeof p1);
    memcpy(p2 + 4, a.out.v, 12 * sizeof(int32_t));
    p2[16] = 13, p2[17] = 300, p2[18] = 280;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 1: a prompt that shares only its first 2 ids with the cache */
        if (pass == 1) {
            p2[2] = 290;
            assert_int_equal(icl_kv_cache_truncate(kc, 2, err, sizeof err), 0);
        }
        icl_ids_free(&a.out);
        icl_ids_free(&b.out);
        a.prompt = b.prompt = p2;
        a.n_prompt = b.n_prompt = 19;
        assert_int_equal(icl_generate(m, &g, &a, 1, NULL, NULL, err, sizeof err), 0);
        assert_int_equal(icl_generate(m, &g, &b, 1, NULL, NULL, err, sizeof err), 0);
        assert_int_equal(a.out.n, b.out.n);
        assert_memory_equal(a.out.v, b.out.v, a.out.n * sizeof(int32_t));
        assert_int_equal(kc->len, 19 + (int)a.out.n - 1);
    }
    /* the whole prompt cached (and more): its last id is fed again */
    icl_ids_free(&a.out);
    icl_ids_free(&b.out);
    a.n_prompt = b.n_prompt = 10;
    assert_int_equal(icl_generate(m, &g, &a, 1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(icl_generate(m, &g, &b, 1, NULL, NULL, err, sizeof err), 0);
    assert_memory_equal(a.out.v, b.out.v, 12 * sizeof(int32_t));
    icl_ids_free(&a.out);
    icl_ids_free(&b.out);
    icl_kv_cache_free(kc);
    icl_model_free(m);
}

int main(void)
{
    icl_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_kernel),
        cmocka_unit_test(step_matches_full_recompute),
        cmocka_unit_test(step_independent_of_batch),
        cmocka_unit_test(greedy_parity),
        cmocka_unit_test(greedy_stories),
        cmocka_unit_test(sampling_reproducible),
        cmocka_unit_test(gen_config),
        cmocka_unit_test(text_stream),
        cmocka_unit_test(stop_in_byte_run),
        cmocka_unit_test(threads_do_not_change_results),
        cmocka_unit_test(cache_truncate_reserve),
        cmocka_unit_test(generate_with_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
