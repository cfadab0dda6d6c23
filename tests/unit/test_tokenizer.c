/* Unit tests of lib/tokenizer.c: parity with Hugging Face tokenizers on the
 * fixtures in tests/data/tok (made by tests/hf/fixtures/make_fixtures.py and
 * llama.cpp's tokenizer test vectors), round trips, long inputs, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "record.h"
#include "tokenizer.h"
#include "tokrec.h"
#include "tok_internal.h" /* to switch off the long-word cut in one test */

#define D "data/tok/"

static icl_tokenizer *gpt2, *llama2, *qwen3, *bl512, *bl2048;

/* Read a file, through `gzip -dc` when it ends in .gz. */
static char *slurp(const char *path, size_t *len)
{
    char cmd[512];
    size_t pl = strlen(path);
    FILE *f;
    int gz = pl > 3 && !strcmp(path + pl - 3, ".gz");
    if (gz) {
        snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
        f = popen(cmd, "r");
    } else {
        f = fopen(path, "rb");
    }
    if (!f)
        return NULL;
    icl_buf b = {0};
    char tmp[1 << 16];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0)
        icl_buf_append(&b, tmp, r);
    if (gz)
        pclose(f);
    else
        fclose(f);
    *len = b.len;
    return b.data;
}

static icl_tokenizer *load(const char *path)
{
    size_t len;
    char err[512];
    char *j = slurp(path, &len);
    if (!j) {
        fprintf(stderr, "cannot read %s\n", path);
        return NULL;
    }
    double t0 = icl_now();
    icl_tokenizer *t = icl_tok_load_mem(j, len, NULL, err, sizeof err);
    printf("# load %-28s %6.3f s\n", path, icl_now() - t0);
    if (!t)
        fprintf(stderr, "%s: %s\n", path, err);
    free(j);
    return t;
}

static int setup(void **state)
{
    (void)state;
    gpt2 = load(D "gpt2.json.gz");
    llama2 = load(D "llama2.json.gz");
    qwen3 = load(D "qwen3.json.gz");
    bl512 = load(D "bytelevel-512.json");
    bl2048 = load(D "bytelevel-2048.json");
    return gpt2 && llama2 && qwen3 && bl512 && bl2048 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    icl_tok_free(gpt2);
    icl_tok_free(llama2);
    icl_tok_free(qwen3);
    icl_tok_free(bl512);
    icl_tok_free(bl2048);
    return 0;
}

static int ids_equal(const icl_ids *a, json_t *want)
{
    if (!json_is_array(want) || json_array_size(want) != a->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (json_integer_value(json_array_get(want, i)) != a->v[i])
            return 0;
    return 1;
}

static void show_ids(const char *what, const icl_ids *a)
{
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < a->n; i++)
        fprintf(stderr, " %d", a->v[i]);
    fputc('\n', stderr);
}

/* Every case of a fixture: ids equal each of the reference id lists named in
 * keys, decode(ids) equals "decoded".  Prints a table row. */
static void parity(const char *name, icl_tokenizer *t, const char *cases_path, const char **keys)
{
    json_error_t je;
    size_t cl;
    char *ct = slurp(cases_path, &cl);
    assert_non_null(ct);
    json_t *cases = json_loadb(ct, cl, 0, &je);
    free(ct);
    assert_non_null(cases);
    size_t i, n = json_array_size(cases), same = 0, dec_same = 0, rt_same = 0, rt_n = 0;
    json_t *c;
    icl_tok_state *st = icl_tok_state_new(t);
    json_array_foreach(cases, i, c)
    {
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t tl = json_string_length(json_object_get(c, "text"));
        icl_ids ids = {0};
        char err[256];
        assert_int_equal(icl_tok_encode(t, st, text, tl, ICL_TOK_PARSE_SPECIAL, &ids, err, sizeof err), 0);
        int ok = 1;
        for (int k = 0; keys[k]; k++)
            if (!ids_equal(&ids, json_object_get(c, keys[k]))) {
                ok = 0;
                fprintf(stderr, "%s case %zu (%s) differs from %s\n", name, i, text, keys[k]);
                show_ids("got", &ids);
            }
        same += ok;
        icl_buf out = {0};
        json_t *want = json_object_get(c, "decoded");
        /* decode the reference ids, so a decode check does not depend on encode */
        icl_ids ref = {0};
        size_t j;
        json_t *x;
        json_array_foreach(json_object_get(c, keys[0]), j, x) icl_ids_push(&ref, (int32_t)json_integer_value(x));
        assert_int_equal(icl_tok_decode(t, ref.v, ref.n, 0, 0, &out, err, sizeof err), 0);
        if (json_is_string(want) && out.len == json_string_length(want) &&
            !memcmp(out.data ? out.data : "", json_string_value(want), out.len))
            dec_same++;
        else
            fprintf(stderr, "%s case %zu decode: got '%s' want '%s'\n", name, i, out.data,
                    json_string_value(want));
        /* byte level: decode(encode(text)) gives the text back (NFC'd if the
         * tokenizer normalizes, as Qwen's does) */
        if (icl_tok_is_byte_level(t) && !strstr(cases_path, "extra/")) {
            out.len = 0;
            assert_int_equal(icl_tok_decode(t, ids.v, ids.n, 0, 0, &out, err, sizeof err), 0);
            utf8proc_uint8_t *nfc = utf8proc_NFC((const utf8proc_uint8_t *)text);
            const char *w = strstr(name, "qwen") ? (const char *)nfc : text;
            if (out.len == strlen(w) && !memcmp(out.data ? out.data : "", w, out.len))
                rt_same++;
            else
                fprintf(stderr, "%s case %zu round trip: got '%s' want '%s'\n", name, i, out.data, w);
            free(nfc);
            rt_n++;
        }
        icl_buf_free(&out);
        icl_ids_free(&ids);
        icl_ids_free(&ref);
    }
    printf("# %-22s %5zu cases %5zu identical ids %5zu identical decode", name, n, same, dec_same);
    if (rt_n)
        printf(" %5zu round trips", rt_same);
    printf("\n");
    assert_int_equal(rt_same, rt_n);
    icl_tok_state_free(st);
    json_decref(cases);
    assert_int_equal(same, n);
    assert_int_equal(dec_same, n);
}

static void parity_gpt2(void **state)
{
    (void)state;
    const char *k[] = {"ids", "tiktoken_ids", NULL};
    parity("gpt2.json", gpt2, D "gpt2.cases.json", k);
}

static void parity_llama2(void **state)
{
    (void)state;
    const char *k[] = {"ids", "tokenizer_json_ids", NULL};
    parity("llama2.json", llama2, D "llama2.spm-cases.json", k);
}

static void parity_qwen3(void **state)
{
    (void)state;
    const char *k[] = {"ids", NULL};
    parity("qwen3", qwen3, D "qwen3.cases.json", k);
}

static void parity_bytelevel(void **state)
{
    (void)state;
    const char *k[] = {"ids", NULL};
    parity("bytelevel-512.json", bl512, D "bytelevel-512.cases.json", k);
    parity("bytelevel-2048.json", bl2048, D "bytelevel-2048.cases.json", k);
}

/* Small tokenizers made by tests/data/tok/extra/make_extra.py with HF
 * tokenizers, exercising the components the shared fixtures do not. */
static void parity_extra(void **state)
{
    (void)state;
    static const char *names[] = {
        "metaspace", "metaspace-first", "split-removed", "split-removed-invert", "split-isolated",
        "split-isolated-invert", "split-merged_with_previous", "split-merged_with_previous-invert",
        "split-merged_with_next", "split-merged_with_next-invert", "split-contiguous",
        "split-contiguous-invert", "nfkc-lower-digits", "digits-groups", "llama3-style",
        "bytefallback", NULL};
    const char *k[] = {"ids", NULL};
    for (int i = 0; names[i]; i++) {
        char p[128], c[128];
        snprintf(p, sizeof p, D "extra/%s.json.gz", names[i]);
        snprintf(c, sizeof c, D "extra/%s.cases.json.gz", names[i]);
        icl_tokenizer *t = load(p);
        assert_non_null(t);
        parity(names[i], t, c, k);
        icl_tok_free(t);
    }
}

/* llama.cpp's test vectors: .inp holds texts separated by
 * "\n__ggml_vocab_test__\n", .out one line of ids per text. */
static void llamacpp(const char *name, icl_tokenizer *t, const char *base)
{
    char p[256];
    size_t il, ol;
    snprintf(p, sizeof p, D "%s.inp", base);
    char *inp = slurp(p, &il);
    snprintf(p, sizeof p, D "%s.out", base);
    char *out = slurp(p, &ol);
    assert_non_null(inp);
    assert_non_null(out);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t seplen = strlen(sep), n = 0, same = 0;
    char *s = inp, *o = out;
    icl_tok_state *st = icl_tok_state_new(t);
    for (;;) {
        char *e = strstr(s, sep);
        if (!e)
            break;
        char *ol_end = strchr(o, '\n');
        assert_non_null(ol_end);
        *ol_end = 0;
        icl_ids ids = {0}, want = {0};
        char err[256];
        assert_int_equal(icl_tok_encode(t, st, s, (size_t)(e - s), ICL_TOK_PARSE_SPECIAL, &ids, err, sizeof err), 0);
        char *q = o;
        for (;;) {
            while (*q == ' ')
                q++;
            if (!*q)
                break;
            icl_ids_push(&want, (int32_t)strtol(q, &q, 10));
        }
        int ok = ids.n == want.n && (ids.n == 0 || !memcmp(ids.v, want.v, ids.n * sizeof *ids.v));
        if (!ok) {
            fprintf(stderr, "%s case %zu '%.*s' differs\n", name, n, (int)(e - s), s);
            show_ids("got ", &ids);
            show_ids("want", &want);
        }
        same += ok;
        n++;
        icl_ids_free(&ids);
        icl_ids_free(&want);
        s = e + seplen;
        o = ol_end + 1;
    }
    printf("# %-22s %5zu cases %5zu identical ids\n", name, n, same);
    icl_tok_state_free(st);
    free(inp);
    free(out);
    assert_true(n > 30);
    assert_int_equal(same, n);
}

static void llamacpp_vectors(void **state)
{
    (void)state;
    llamacpp("llama.cpp gpt-2", gpt2, "ggml-vocab-gpt-2.gguf");
    llamacpp("llama.cpp llama-spm", llama2, "ggml-vocab-llama-spm.gguf");
    llamacpp("llama.cpp qwen2", qwen3, "ggml-vocab-qwen2.gguf");
}

/* ---- round trips on random valid UTF-8 ---- */

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static uint32_t random_cp(void)
{
    static const uint32_t pool[] = {' ', '\t', '\n', '\r', 0xA0, 0x3000, 0x200B, 0x301, 0xFFFD, '\'', '<', '|'};
    switch (rnd() % 8) {
    case 0:
    case 1:
    case 2:
        return 32 + rnd() % 95; /* ASCII */
    case 3:
        return pool[rnd() % (sizeof pool / sizeof *pool)];
    case 4:
        return 0x80 + rnd() % 0x780; /* 2-byte */
    case 5:
        for (;;) {
            uint32_t c = 0x800 + rnd() % 0xF800;
            if (c < 0xD800 || c > 0xDFFF)
                return c;
        }
    case 6:
        return 0x10000 + rnd() % 0x100000;
    default:
        return 0x4E00 + rnd() % 0x5000; /* CJK */
    }
}

static int utf8_enc(uint32_t c, char *o)
{
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 63)); return 2; }
    if (c < 0x10000) { o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | ((c >> 6) & 63)); o[2] = (char)(0x80 | (c & 63)); return 3; }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | ((c >> 12) & 63)); o[2] = (char)(0x80 | ((c >> 6) & 63)); o[3] = (char)(0x80 | (c & 63));
    return 4;
}

/* decode(encode(s)) == s, or NFC(s) for a tokenizer that normalizes to NFC. */
static void roundtrip_one(const char *name, icl_tokenizer *t, int trials, int nfc)
{
    icl_tok_state *st = icl_tok_state_new(t);
    int good = 0;
    for (int k = 0; k < trials; k++) {
        char s[512];
        size_t n = 0, len = rnd() % 60;
        for (size_t i = 0; i < len; i++)
            n += (size_t)utf8_enc(random_cp(), s + n);
        icl_ids ids = {0};
        icl_buf out = {0};
        char err[256];
        assert_int_equal(icl_tok_encode(t, st, s, n, 0, &ids, err, sizeof err), 0);
        assert_int_equal(icl_tok_decode(t, ids.v, ids.n, 0, 0, &out, err, sizeof err), 0);
        char *want = s;
        size_t wn = n;
        utf8proc_uint8_t *norm = NULL;
        if (nfc) {
            s[n] = 0;
            norm = utf8proc_NFC((const utf8proc_uint8_t *)s);
            want = (char *)norm;
            wn = strlen(want);
        }
        if (out.len == wn && !memcmp(out.data ? out.data : "", want, wn))
            good++;
        else
            fprintf(stderr, "%s: round trip fails on '%.*s' -> '%s'\n", name, (int)n, s, out.data);
        free(norm);
        icl_ids_free(&ids);
        icl_buf_free(&out);
    }
    printf("# round trip %-20s %5d strings %5d identical\n", name, trials, good);
    icl_tok_state_free(st);
    assert_int_equal(good, trials);
}

static void roundtrip_random(void **state)
{
    (void)state;
    roundtrip_one("gpt2.json", gpt2, 1000, 0);
    roundtrip_one("qwen3 (NFC)", qwen3, 1000, 1);
    roundtrip_one("bytelevel-512.json", bl512, 1000, 0);
    roundtrip_one("bytelevel-2048.json", bl2048, 1000, 0);
}

/* ---- behaviour ---- */

static void encode_str(icl_tokenizer *t, const char *s, int flags, icl_ids *ids)
{
    char err[256];
    ids->n = 0;
    assert_int_equal(icl_tok_encode(t, NULL, s, strlen(s), flags, ids, err, sizeof err), 0);
}

static void special_text_not_parsed_by_default(void **state)
{
    (void)state;
    icl_ids a = {0};
    encode_str(gpt2, "<|endoftext|>", 0, &a);
    assert_true(a.n > 1); /* spelled out, not id 50256 */
    for (size_t i = 0; i < a.n; i++)
        assert_int_not_equal(a.v[i], 50256);
    encode_str(gpt2, "<|endoftext|>", ICL_TOK_PARSE_SPECIAL, &a);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.v[0], 50256);
    icl_ids_free(&a);
}

static void continuation_has_no_prefix_space(void **state)
{
    (void)state;
    icl_ids p = {0}, r = {0};
    encode_str(llama2, "Hello", 0, &p);
    encode_str(llama2, "world", ICL_TOK_CONTINUATION, &r);
    /* "▁Hello" then "world" without ▁ */
    assert_int_equal(p.n, 1);
    assert_int_equal(p.v[0], 15043);
    icl_buf out = {0};
    char err[128];
    assert_int_equal(icl_tok_decode(llama2, r.v, r.n, 0, ICL_TOK_CONTINUATION, &out, err, sizeof err), 0);
    assert_string_equal(out.data, "world");
    out.len = 0;
    for (size_t i = 0; i < r.n; i++)
        icl_ids_push(&p, r.v[i]);
    assert_int_equal(icl_tok_decode(llama2, p.v, p.n, 0, 0, &out, err, sizeof err), 0);
    assert_string_equal(out.data, "Helloworld");
    encode_str(llama2, " world", ICL_TOK_CONTINUATION, &r);
    out.len = 0;
    assert_int_equal(icl_tok_decode(llama2, r.v, r.n, 0, ICL_TOK_CONTINUATION, &out, err, sizeof err), 0);
    assert_string_equal(out.data, " world");
    icl_buf_free(&out);
    icl_ids_free(&p);
    icl_ids_free(&r);
}

/* \s is Oniguruma's (White_Space), not PCRE2's (which adds U+180E):
 * found by tests/data/tok/extra/fuzz_vs_hf.py. */
static void regex_whitespace_as_oniguruma(void **state)
{
    (void)state;
    icl_ids a = {0};
    encode_str(gpt2, "  \xE1\xA0\x8E", 0, &a); /* two spaces, U+180E */
    assert_int_equal(a.n, 4);
    assert_int_equal(a.v[0], 220);
    assert_int_equal(a.v[1], 28053);
    assert_int_equal(a.v[2], 254);
    assert_int_equal(a.v[3], 236);
    icl_ids_free(&a);
}

/* icl-gen's prompt ids equal the first segment icl-tok encode writes. */
static void prompt_ids_as_encode(void **state)
{
    (void)state;
    icl_tokrec_opts o = {.bos = 1, .eos = 1};
    char err[128];
    icl_ids a = {0};
    assert_int_equal(icl_tokrec_encode_prompt(llama2, NULL, &o, "<s>Hi there", 11, &a, err, sizeof err), 0);
    json_t *rec = json_pack("{s:s, s:s}", "prompt", "<s>Hi there", "response", " ok");
    icl_buf line = {0};
    assert_int_equal(icl_tokrec_encode(llama2, NULL, &o, rec, &line, err, sizeof err), 0);
    icl_buf want = {0};
    for (size_t i = 0; i < a.n; i++)
        icl_buf_printf(&want, i ? " %d" : "%d", a.v[i]);
    icl_buf_putc(&want, '\t');
    assert_memory_equal(line.data, want.data, want.len);
    assert_int_equal(a.v[0], 1);
    assert_int_not_equal(a.v[1], 1); /* BOS once */
    json_decref(rec);
    icl_buf_free(&line);
    icl_buf_free(&want);
    icl_ids_free(&a);
}

static void no_space_cleanup(void **state)
{
    (void)state;
    icl_ids a = {0};
    icl_buf out = {0};
    char err[128];
    encode_str(gpt2, "wait ! it 's", 0, &a);
    assert_int_equal(icl_tok_decode(gpt2, a.v, a.n, 0, 0, &out, err, sizeof err), 0);
    assert_string_equal(out.data, "wait ! it 's");
    icl_buf_free(&out);
    icl_ids_free(&a);
}

static void long_words_fast(void **state)
{
    (void)state;
    size_t n = 100000;
    char *s = icl_xmalloc(n + 1);
    memset(s, 'a', n);
    s[n] = 0;
    icl_tokenizer *ts[] = {gpt2, llama2, qwen3};
    for (int k = 0; k < 3; k++) {
        icl_ids a = {0};
        icl_buf out = {0};
        char err[128];
        double t0 = icl_now();
        encode_str(ts[k], s, 0, &a);
        double dt = icl_now() - t0;
        printf("# \"a\" x 100000: %zu ids in %.3f s\n", a.n, dt);
        assert_true(a.n > 1000 / 8);
        assert_int_equal(icl_tok_decode(ts[k], a.v, a.n, 0, 0, &out, err, sizeof err), 0);
        assert_int_equal(out.len, n);
        assert_memory_equal(out.data, s, n);
        icl_buf_free(&out);
        icl_ids_free(&a);
    }
    free(s);
}

/* Long words are cut where no token can span (bpe.c, bpe_long); the result
 * must equal the plain heap merge of the whole word. */
static void long_word_cut_is_exact(void **state)
{
    (void)state;
    size_t len;
    FILE *f = popen("gzip -dc " D "corpus.txt.gz | head -c 300000", "r");
    icl_buf b = {0};
    char tmp[65536];
    while ((len = fread(tmp, 1, sizeof tmp, f)) > 0)
        icl_buf_append(&b, tmp, len);
    pclose(f);
    /* and 20000 random CJK and Latin letters without spaces: one word for the regexes */
    icl_buf w = {0};
    for (int i = 0; i < 20000; i++) {
        char u[4];
        uint32_t c = rnd() % 3 ? 0x4E00 + rnd() % 300 : 'a' + rnd() % 26;
        icl_buf_append(&w, u, (size_t)utf8_enc(c, u));
    }
    struct { icl_tokenizer *t; icl_buf *text; const char *name; } cases[] = {
        {llama2, &b, "llama2, 300 KB line"}, {gpt2, &w, "gpt2, 20000-letter word"},
        {qwen3, &w, "qwen3, 20000-letter word"}, {llama2, &w, "llama2, 20000-letter word"}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        icl_ids a = {0}, c = {0};
        char err[128];
        double t0 = icl_now();
        assert_int_equal(icl_tok_encode(cases[k].t, NULL, cases[k].text->data, cases[k].text->len, 0, &a, err, sizeof err), 0);
        double t1 = icl_now();
        size_t cap = cases[k].t->pairs.cap;
        cases[k].t->pairs.cap = 0; /* no cut */
        assert_int_equal(icl_tok_encode(cases[k].t, NULL, cases[k].text->data, cases[k].text->len, 0, &c, err, sizeof err), 0);
        double t2 = icl_now();
        cases[k].t->pairs.cap = cap;
        printf("# %-26s %7zu ids, cut %.3f s, whole %.3f s, %s\n", cases[k].name, a.n, t1 - t0, t2 - t1,
               a.n == c.n && !memcmp(a.v, c.v, a.n * sizeof *a.v) ? "identical" : "DIFFERENT");
        assert_int_equal(a.n, c.n);
        assert_memory_equal(a.v, c.v, a.n * sizeof *a.v);
        icl_ids_free(&a);
        icl_ids_free(&c);
    }
    icl_buf_free(&b);
    icl_buf_free(&w);
}

static void unsupported_component_named(void **state)
{
    (void)state;
    char err[256];
    const char *j = "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}";
    assert_null(icl_tok_load_mem(j, strlen(j), NULL, err, sizeof err));
    assert_non_null(strstr(err, "WordPiece"));
    j = "{\"normalizer\":{\"type\":\"BertNormalizer\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}";
    assert_null(icl_tok_load_mem(j, strlen(j), NULL, err, sizeof err));
    assert_non_null(strstr(err, "BertNormalizer"));
    j = "{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}}";
    assert_null(icl_tok_load_mem(j, strlen(j), NULL, err, sizeof err));
    assert_non_null(strstr(err, "dropout"));
    j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}";
    assert_null(icl_tok_load_mem(j, strlen(j), NULL, err, sizeof err));
    assert_non_null(strstr(err, "merges[0]"));
}

/* Merges as "a b" strings and as ["a", "b"] pairs; a TemplateProcessing
 * post-processor gives BOS/EOS; a Sequence post-processor is read through. */
static void merges_forms_and_templates(void **state)
{
    (void)state;
    char err[256];
    const char *forms[] = {"[\"a b\", \"ab c\"]", "[[\"a\", \"b\"], [\"ab\", \"c\"]]"};
    for (int k = 0; k < 2; k++) {
        char j[1024];
        snprintf(j, sizeof j,
                 "{\"added_tokens\":[{\"id\":5,\"content\":\"<s>\",\"special\":true},"
                 "{\"id\":6,\"content\":\"</s>\",\"special\":true}],"
                 "\"post_processor\":{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\"},"
                 "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                 "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],"
                 "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[5],\"tokens\":[\"<s>\"]},"
                 "\"</s>\":{\"id\":\"</s>\",\"ids\":[6],\"tokens\":[\"</s>\"]}}}]},"
                 "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"abc\":4},\"merges\":%s}}",
                 forms[k]);
        icl_tokenizer *t = icl_tok_load_mem(j, strlen(j), NULL, err, sizeof err);
        if (!t)
            fail_msg("%s", err);
        icl_ids a = {0};
        encode_str(t, "abcab<s>", ICL_TOK_PARSE_SPECIAL, &a);
        assert_int_equal(a.n, 3);
        assert_int_equal(a.v[0], 4);
        assert_int_equal(a.v[1], 3);
        assert_int_equal(a.v[2], 5);
        const icl_tok_specials *sp = icl_tok_get_specials(t);
        assert_int_equal(sp->bos, 5);
        assert_int_equal(sp->eos, 6);
        assert_true(sp->add_bos);
        assert_true(sp->add_eos);
        assert_int_equal(icl_tok_vocab_size(t), 7);
        icl_ids_free(&a);
        icl_tok_free(t);
    }
}

/* Streaming decode: one id at a time, the pieces released add up to the
 * whole decode and never hold U+FFFD when the whole decode has none. */
static void stream_decode(void **state)
{
    (void)state;
    icl_tokenizer *ts[] = {gpt2, llama2, qwen3};
    const char *cases[] = {D "gpt2.cases.json", D "llama2.spm-cases.json", D "qwen3.cases.json"};
    for (int k = 0; k < 3; k++) {
        json_t *cs = json_load_file(cases[k], 0, NULL), *c;
        size_t i, n = 0, good = 0, pieces = 0;
        assert_non_null(cs);
        json_array_foreach(cs, i, c)
        {
            json_t *ids = json_object_get(c, k == 1 ? "tokenizer_json_ids" : "ids"), *x;
            size_t j;
            icl_ids all = {0};
            json_array_foreach(ids, j, x) icl_ids_push(&all, (int32_t)json_integer_value(x));
            for (int fl = 0; fl <= ICL_TOK_CONTINUATION; fl += ICL_TOK_CONTINUATION) {
                icl_buf whole = {0}, got = {0}, piece = {0};
                char err[128];
                int fffd = 0;
                assert_int_equal(icl_tok_decode(ts[k], all.v, all.n, 0, fl, &whole, err, sizeof err), 0);
                icl_tok_stream st;
                icl_tok_stream_init(&st, fl, 0);
                for (size_t q = 0; q < all.n; q++) {
                    piece.len = 0;
                    assert_int_equal(icl_tok_stream_put(ts[k], &st, all.v[q], &piece, err, sizeof err), 0);
                    if (piece.len) {
                        pieces++;
                        fffd |= strstr(piece.data, "\xEF\xBF\xBD") != NULL;
                        icl_buf_append(&got, piece.data, piece.len);
                    }
                }
                assert_int_equal(icl_tok_stream_flush(ts[k], &st, &got, err, sizeof err), 0);
                icl_tok_stream_free(&st);
                int same = got.len == whole.len && !memcmp(got.data ? got.data : "", whole.data ? whole.data : "", got.len);
                if (fffd && !strstr(whole.data ? whole.data : "", "\xEF\xBF\xBD"))
                    same = 0;
                if (!same)
                    fprintf(stderr, "stream %d case %zu flags %d: got '%s' want '%s'\n", k, i, fl, got.data, whole.data);
                good += same;
                n++;
                icl_buf_free(&whole);
                icl_buf_free(&got);
                icl_buf_free(&piece);
            }
            icl_ids_free(&all);
        }
        printf("# stream decode %-14s %4zu cases %4zu identical (%zu pieces)\n", cases[k] + strlen(D), n, good, pieces);
        assert_int_equal(good, n);
        json_decref(cs);
    }
}

/* Streaming ids whose byte tokens form runs a ByteFallback decoder reads
 * as a whole (<0x41> alone is "A", <0x41><0xA0> two U+FFFD), also with a
 * special token between them that skip_special drops: the text released
 * is icl_tok_decode's, and each release UTF-8.  The released " " of <0x20> once became
 * U+FFFD in the whole text and the stream put out bytes cut from the
 * middle of a character. */
static void stream_byte_runs(void **state)
{
    (void)state;
    const char *names[] = {"<0x41>", "<0xA0>", "<0x20>", "<0xE4>", "<0xBD>", "<0x0A>", "<0xF0>", "<0x9F>",
                           "<s>",    "</s>",   "<unk>",  "\xE2\x96\x81Hello", "\xE2\x96\x81", "x", "\xE2\x96\x81world"};
    enum { NP = sizeof names / sizeof *names };
    int32_t pool[NP];
    for (int i = 0; i < NP; i++) {
        pool[i] = icl_tok_id(llama2, names[i], strlen(names[i]));
        assert_true(pool[i] >= 0);
    }
    size_t n = 0, good = 0;
    for (int trial = 0; trial < 4000; trial++) {
        int32_t ids[12];
        size_t len = 1 + rnd() % 12;
        for (size_t q = 0; q < len; q++)
            ids[q] = pool[rnd() % NP];
        int skip = trial & 1, fl = trial & 2 ? ICL_TOK_CONTINUATION : 0;
        icl_buf whole = {0}, got = {0};
        char err[128];
        assert_int_equal(icl_tok_decode(llama2, ids, len, skip, fl, &whole, err, sizeof err), 0);
        icl_tok_stream st;
        icl_tok_stream_init(&st, fl, skip);
        for (size_t q = 0; q < len; q++) {
            size_t at = got.len;
            assert_int_equal(icl_tok_stream_put(llama2, &st, ids[q], &got, err, sizeof err), 0);
            assert_int_equal(icl_utf8_valid(got.data ? got.data + at : "", got.len - at), got.len - at);
        }
        assert_int_equal(icl_tok_stream_flush(llama2, &st, &got, err, sizeof err), 0);
        icl_tok_stream_free(&st);
        int same = got.len == whole.len && !memcmp(got.data ? got.data : "", whole.data ? whole.data : "", got.len) &&
                   icl_utf8_valid(got.data ? got.data : "", got.len) == got.len;
        if (!same && n - good < 3) {
            fprintf(stderr, "stream of");
            for (size_t q = 0; q < len; q++)
                fprintf(stderr, " %d", ids[q]);
            fprintf(stderr, " (skip %d, flags %d): got '%.*s' want '%.*s'\n", skip, fl, (int)got.len,
                    got.data ? got.data : "", (int)whole.len, whole.data ? whole.data : "");
        }
        good += same;
        n++;
        icl_buf_free(&whole);
        icl_buf_free(&got);
    }
    printf("# stream decode of byte-token runs: %zu sequences, %zu identical\n", n, good);
    assert_int_equal(good, n);
}

/* The fingerprint ignores formatting and key order, not content. */
static void fingerprint_is_semantic(void **state)
{
    (void)state;
    size_t len;
    char err[256];
    char *j = slurp(D "bytelevel-512.json", &len);
    json_error_t je;
    json_t *root = json_loadb(j, len, 0, &je);
    char *re = json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(1));
    icl_tokenizer *a = icl_tok_load_mem(j, len, NULL, err, sizeof err);
    icl_tokenizer *b = icl_tok_load_mem(re, strlen(re), NULL, err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(strlen(re) != len);
    assert_true(icl_tok_fingerprint(a) == icl_tok_fingerprint(b));
    /* swap two merges: another tokenizer */
    json_t *m = json_object_get(json_object_get(root, "model"), "merges");
    json_t *m0 = json_incref(json_array_get(m, 0));
    json_array_set(m, 0, json_array_get(m, 1));
    json_array_set_new(m, 1, m0);
    char *sw = json_dumps(root, JSON_COMPACT);
    icl_tokenizer *c = icl_tok_load_mem(sw, strlen(sw), NULL, err, sizeof err);
    assert_non_null(c);
    assert_true(icl_tok_fingerprint(a) != icl_tok_fingerprint(c));
    icl_tok_free(a);
    icl_tok_free(b);
    icl_tok_free(c);
    free(re);
    free(sw);
    free(j);
    json_decref(root);
}

static void specials(void **state)
{
    (void)state;
    const icl_tok_specials *sp = icl_tok_get_specials(gpt2);
    assert_int_equal(sp->eos, 50256);
    assert_int_equal(icl_tok_vocab_size(gpt2), 50257);
    assert_int_equal(icl_tok_vocab_size(qwen3), 151669);
    assert_true(icl_tok_is_byte_level(qwen3));
    assert_false(icl_tok_is_byte_level(llama2));
    sp = icl_tok_get_specials(llama2);
    assert_int_equal(sp->bos, 1);
    assert_int_equal(sp->eos, 2);
    assert_int_equal(sp->add_bos, 0); /* llama2.json has no post_processor */
}

/* A catastrophic pattern (issue 18, defect 13): PCRE2 gives up at its match
 * limit, and icl_tok_encode returns that as an error instead of exiting;
 * the tokenizer and its state stay usable.  Both places a regex runs on the
 * text: a Split pre-tokenizer and a Replace normalizer, each named in the
 * message; and a Replace decoder, which makes icl_tok_decode fail. */
static void catastrophic_regex_is_an_error(void **state)
{
    (void)state;
    static const char *comp[] = {
        "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a+)+$\"},"
        "\"behavior\":\"Isolated\",\"invert\":false}",
        "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"(a+)+$\"},\"content\":\"x\"}",
    };
    for (int k = 0; k < 2; k++) {
        char j[1024], err[256];
        snprintf(j, sizeof j,
                 "{%s,\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"x\":2,\"aa\":3},"
                 "\"merges\":[\"a a\"]}}",
                 comp[k]);
        icl_tokenizer *t = icl_tok_load_mem(j, strlen(j), NULL, err, sizeof err);
        if (!t)
            fail_msg("%s", err);
        icl_tok_state *st = icl_tok_state_new(t);
        char text[64];
        memset(text, 'a', 48);
        strcpy(text + 48, "b");
        icl_ids a = {0};
        err[0] = 0;
        assert_int_equal(icl_tok_encode(t, st, text, strlen(text), 0, &a, err, sizeof err), -1);
        if (!strstr(err, k ? "Replace regex failed" : "pre-tokenizer Split regex failed") ||
            (k && strstr(err, "pre-tokenizer")))
            fail_msg("%s", err);
        /* still usable: a short text has a cheap match */
        a.n = 0;
        assert_int_equal(icl_tok_encode(t, st, "aab", 3, 0, &a, err, sizeof err), 0);
        assert_true(a.n >= 1);
        icl_ids_free(&a);
        icl_tok_state_free(st);
        icl_tok_free(t);
    }
    /* a Replace decoder on the text Fuse joined: decoding fails, then works */
    const char *j = "{\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},"
                    "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"(a+)+$\"},\"content\":\"x\"}]},"
                    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"x\":2,\"aa\":3},"
                    "\"merges\":[\"a a\"]}}";
    char err[256];
    icl_tokenizer *t = icl_tok_load_mem(j, strlen(j), NULL, err, sizeof err);
    if (!t)
        fail_msg("%s", err);
    int32_t ids[25];
    for (int i = 0; i < 24; i++)
        ids[i] = 3; /* "aa" */
    ids[24] = 1;    /* "b" */
    icl_buf out = {0};
    err[0] = 0;
    assert_int_equal(icl_tok_decode(t, ids, 25, 0, 0, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "decoder Replace regex failed"));
    out.len = 0;
    assert_int_equal(icl_tok_decode(t, ids + 22, 3, 0, 0, &out, err, sizeof err), 0);
    assert_int_equal(out.len, 5);
    assert_memory_equal(out.data, "aaaab", 5);
    icl_buf_free(&out);
    icl_tok_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parity_gpt2),
        cmocka_unit_test(parity_llama2),
        cmocka_unit_test(parity_qwen3),
        cmocka_unit_test(parity_bytelevel),
        cmocka_unit_test(llamacpp_vectors),
        cmocka_unit_test(parity_extra),
        cmocka_unit_test(roundtrip_random),
        cmocka_unit_test(special_text_not_parsed_by_default),
        cmocka_unit_test(continuation_has_no_prefix_space),
        cmocka_unit_test(no_space_cleanup),
        cmocka_unit_test(prompt_ids_as_encode),
        cmocka_unit_test(regex_whitespace_as_oniguruma),
        cmocka_unit_test(long_words_fast),
        cmocka_unit_test(long_word_cut_is_exact),
        cmocka_unit_test(unsupported_component_named),
        cmocka_unit_test(specials),
        cmocka_unit_test(fingerprint_is_semantic),
        cmocka_unit_test(stream_decode),
        cmocka_unit_test(stream_byte_runs),
        cmocka_unit_test(merges_forms_and_templates),
        cmocka_unit_test(catastrophic_regex_is_an_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
