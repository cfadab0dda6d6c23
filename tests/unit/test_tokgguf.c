/* Unit tests of lib/tokgguf.c: tokenizers from GGUF metadata.
 *
 * - llama.cpp's tokenizer test vectors (46 texts each) for every vocabulary
 *   of llama.cpp's models/ggml-vocab-*.gguf that has a GGUF file: gpt-2,
 *   deepseek-coder, deepseek-llm, falcon, mpt, starcoder, refact (gpt2
 *   model), llama-spm, phi-3 (llama model).  The committed GGUFs are subsets
 *   made by tests/data/tok/gguf/make_vocab_subsets.py (exact for these texts,
 *   ids renumbered; "icl.test.original_ids" maps them back); the .out files
 *   are llama.cpp's, unchanged.
 * - qwen2 and deepseek-r1-qwen vectors through the Hugging Face -> GGUF
 *   conversion of tests/data/tok/qwen3.json.gz (same base vocabulary).
 * - SmolLM2-135M-Instruct's GGUF (from the model cache; "# SKIP" when
 *   missing): ids of 1,000 lines (make_smollm2_ids.py) equal llama.cpp's
 *   and transformers' except where transformers' GGUF loader drops the
 *   "smollm" digit split (1 line).
 * - GGUF -> tokenizer.json -> icl tokenizer gives the same ids; HF -> GGUF
 *   metadata -> HF keeps tokens, merges, types and specials.
 * - Hostile metadata: clear errors, no crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "record.h"
#include "tokenizer.h"
#include "tokgguf.h"

#define D "data/tok/gguf/"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    icl_buf b = {0};
    char tmp[1 << 16];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0)
        buf_append(&b, tmp, r);
    fclose(f);
    buf_reserve(&b, 1);
    b.data[b.len] = 0;
    *len = b.len;
    return b.data;
}

static void parse_ids(const char *s, icl_ids *out)
{
    char *q = (char *)s;
    for (;;) {
        while (*q == ' ')
            q++;
        if (!*q || *q == '\n')
            break;
        ids_push(out, (int32_t)strtol(q, &q, 10));
    }
}

static int same(const icl_ids *a, const icl_ids *b)
{
    return a->n == b->n && (a->n == 0 || !memcmp(a->v, b->v, a->n * sizeof *a->v));
}

static void show(const char *what, const icl_ids *a)
{
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < a->n; i++)
        fprintf(stderr, " %d", a->v[i]);
    fputc('\n', stderr);
}

/* Check llama.cpp's vectors base.inp/.out against t (and t2, if not NULL,
 * which must give the very same ids); map: id -> original id (NULL: none).
 * Returns the number of identical cases; n gets the number of cases. */
static size_t vectors(const char *name, const icl_tokenizer *t, const icl_tokenizer *t2, const char *base,
                      const icl_gguf_kv *map, size_t *ncases)
{
    char p[512];
    size_t il, ol;
    snprintf(p, sizeof p, "%s.inp", base);
    char *inp = slurp(p, &il);
    snprintf(p, sizeof p, "%s.out", base);
    char *out = slurp(p, &ol);
    assert_non_null(inp);
    assert_non_null(out);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t n = 0, ok = 0;
    char *s = inp, *o = out;
    for (;;) {
        char *e = strstr(s, sep);
        if (!e)
            break;
        char *oe = strchr(o, '\n');
        assert_non_null(oe);
        *oe = 0;
        icl_ids ids = {0}, want = {0}, ids2 = {0};
        char err[256];
        assert_int_equal(icl_tok_encode(t, NULL, s, (size_t)(e - s), 0, &ids, err, sizeof err), 0);
        if (t2) {
            assert_int_equal(icl_tok_encode(t2, NULL, s, (size_t)(e - s), 0, &ids2, err, sizeof err), 0);
            assert_true(same(&ids, &ids2));
        }
        for (size_t i = 0; map && i < ids.n; i++) {
            assert_true(ids.v[i] >= 0 && (uint64_t)ids.v[i] < map->n);
            ids.v[i] = (int32_t)icl_gguf_arr_int(map, (uint64_t)ids.v[i]);
        }
        parse_ids(o, &want);
        if (same(&ids, &want)) {
            ok++;
        } else {
            fprintf(stderr, "%s case %zu '%.*s' differs\n", name, n, (int)(e - s), s);
            show("got ", &ids);
            show("want", &want);
        }
        n++;
        ids_free(&ids);
        ids_free(&ids2);
        ids_free(&want);
        s = e + strlen(sep);
        o = oe + 1;
    }
    free(inp);
    free(out);
    *ncases = n;
    return ok;
}

static const char *const vocabs[] = {"gpt-2", "deepseek-coder", "deepseek-llm", "falcon", "mpt",
                                     "starcoder", "refact", "llama-spm", "phi-3", NULL};

/* Every vector of every committed vocabulary, through icl_tok_load (which
 * recognises the GGUF magic) and through GGUF -> tokenizer.json text ->
 * icl_tok_load_mem: both give llama.cpp's ids. */
static void llamacpp_vectors(void **state)
{
    (void)state;
    size_t total = 0;
    for (int v = 0; vocabs[v]; v++) {
        char path[256], err[512];
        snprintf(path, sizeof path, D "ggml-vocab-%s.gguf", vocabs[v]);
        icl_tokenizer *t = icl_tok_load(path, err, sizeof err);
        if (!t)
            fail_msg("%s: %s", path, err);
        icl_gguf *g = icl_gguf_open(path, err, sizeof err);
        assert_non_null(g);
        const icl_gguf_kv *map;
        assert_int_equal(icl_gguf_get_arr(g, "icl.test.original_ids", ICL_GGUF_INT32, &map, err, sizeof err), 0);
        icl_tok_gguf m;
        assert_int_equal(icl_tok_gguf_read(g, &m, err, sizeof err), 0);
        char *tj, *tc;
        assert_int_equal(icl_tok_gguf_to_hf_json(&m, &tj, &tc, err, sizeof err), 0);
        icl_tokenizer *th = icl_tok_load_mem(tj, strlen(tj), NULL, err, sizeof err);
        if (!th)
            fail_msg("%s as tokenizer.json: %s", path, err);
        assert_int_equal(icl_tok_fingerprint(th), icl_tok_fingerprint(t));
        size_t n, ok = vectors(vocabs[v], t, th, path, map, &n);
        printf("# llama.cpp %-15s %zu of %zu vectors identical (GGUF and its tokenizer.json)\n", vocabs[v], ok, n);
        assert_int_equal(n, 46);
        assert_int_equal(ok, n);
        total += ok;
        free(tj);
        free(tc);
        icl_tok_free(th);
        icl_tok_gguf_free(&m);
        icl_gguf_close(g);
        icl_tok_free(t);
    }
    assert_int_equal(total, 9 * 46);
}

/* Every tokenizer.ggml.pre icl knows, on the cut-down gpt-2 vocabulary,
 * against llama.cpp's own ids for it (make_pre_ids_llamacpp.py). */
static void llamacpp_every_pre(void **state)
{
    (void)state;
    char err[512];
    icl_gguf *g = icl_gguf_open(D "ggml-vocab-gpt-2.gguf", err, sizeof err);
    assert_non_null(g);
    icl_tok_gguf m;
    assert_int_equal(icl_tok_gguf_read(g, &m, err, sizeof err), 0);
    int npre = 0;
    for (int k = 0; icl_tok_gguf_pre_names[k]; k++, npre++) {
        const char *pre = icl_tok_gguf_pre_names[k];
        free(m.pre);
        m.pre = strdup(pre);
        icl_tokenizer *t = icl_tok_from_gguf(&m, err, sizeof err);
        if (!t)
            fail_msg("pre %s: %s", pre, err);
        char ref[256];
        snprintf(ref, sizeof ref, D "pre-%s.ids", pre);
        size_t il, ol;
        char *inp = slurp(D "ggml-vocab-gpt-2.gguf.inp", &il), *out = slurp(ref, &ol);
        assert_non_null(inp);
        if (!out)
            fail_msg("%s missing", ref);
        const char *sep = "\n__ggml_vocab_test__\n";
        char *s = inp, *o = out, *e;
        size_t n = 0, ok = 0;
        while ((e = strstr(s, sep))) {
            char *oe = strchr(o, '\n');
            assert_non_null(oe);
            *oe = 0;
            icl_ids got = {0}, want = {0};
            parse_ids(o, &want);
            assert_int_equal(icl_tok_encode(t, NULL, s, (size_t)(e - s), 0, &got, err, sizeof err), 0);
            if (same(&got, &want))
                ok++;
            else if (n - ok < 3) {
                fprintf(stderr, "pre %s case %zu '%.*s' differs from llama.cpp\n", pre, n, (int)(e - s), s);
                show("got ", &got);
                show("want", &want);
            }
            n++;
            ids_free(&got);
            ids_free(&want);
            s = e + strlen(sep);
            o = oe + 1;
        }
        printf("# pre %-16s %zu of %zu identical to llama.cpp\n", pre, ok, n);
        assert_int_equal(n, 46);
        assert_int_equal(ok, n);
        free(inp);
        free(out);
        icl_tok_free(t);
    }
    assert_int_equal(npre, 23);
    icl_tok_gguf_free(&m);
    icl_gguf_close(g);
}

/* Decompress qwen3.json.gz into a temporary folder; returns the folder. */
static char *qwen3_dir(void)
{
    char *dir = strdup("/tmp/icl-tokgguf-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "gzip -dc data/tok/qwen3.json.gz > %s/tokenizer.json", dir);
    assert_int_equal(system(cmd), 0);
    return dir;
}

static void rm_dir(char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

/* Qwen's tokenizer.json -> GGUF metadata: its pre-tokenizer is recognised
 * as qwen2, and the GGUF tokenizer passes llama.cpp's qwen2 and
 * deepseek-r1-qwen vectors; GGUF keys written by icl_gguf_writer and read
 * back give the same metadata. */
static void qwen2_from_hf(void **state)
{
    (void)state;
    char *dir = qwen3_dir(), err[512];
    icl_tok_gguf m;
    if (icl_tok_gguf_from_hf(dir, &m, err, sizeof err))
        fail_msg("%s", err);
    assert_string_equal(m.model, "gpt2");
    assert_string_equal(m.pre, "qwen2");
    assert_int_equal(m.n_tokens, 151669);
    icl_tokenizer *t = icl_tok_from_gguf(&m, err, sizeof err);
    if (!t)
        fail_msg("%s", err);
    size_t n, ok = vectors("qwen2", t, NULL, "data/tok/ggml-vocab-qwen2.gguf", NULL, &n);
    printf("# llama.cpp qwen2 (from qwen3 tokenizer.json via GGUF metadata) %zu of %zu identical\n", ok, n);
    assert_int_equal(n, 46);
    assert_int_equal(ok, n);
    ok = vectors("deepseek-r1-qwen", t, NULL, D "ggml-vocab-deepseek-r1-qwen.gguf", NULL, &n);
    printf("# llama.cpp deepseek-r1-qwen (same) %zu of %zu identical\n", ok, n);
    assert_int_equal(ok, n);
    assert_int_equal(n, 46);

    /* through a GGUF file */
    char path[600];
    snprintf(path, sizeof path, "%s/tok.gguf", dir);
    icl_gguf_writer *w = icl_gguf_writer_new();
    icl_gguf_set_str(w, "general.architecture", "qwen2", 5);
    assert_int_equal(icl_tok_gguf_set_kvs(&m, w, err, sizeof err), 0);
    assert_int_equal(icl_gguf_write(w, path, err, sizeof err), 0);
    icl_gguf_writer_free(w);
    icl_tokenizer *t2 = icl_tok_load(path, err, sizeof err);
    if (!t2)
        fail_msg("%s", err);
    assert_int_equal(icl_tok_fingerprint(t2), icl_tok_fingerprint(t));
    icl_tok_free(t2);
    icl_tok_free(t);

    /* pre "llama-bpe" (llama.cpp's adaptation of Llama 3's regex, and
     * ignore_merges) on the same vocabulary against tokenizers running Llama
     * 3's own pre-tokenizer (make_llama3_pre_ids.py): llama.cpp's vectors'
     * texts and the 1,000 lines */
    free(m.pre);
    m.pre = strdup("llama-bpe");
    t = icl_tok_from_gguf(&m, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(icl_tok_get_specials(t)->add_bos, 0); /* no bos id in this vocabulary's config */
    size_t tl, il, ll;
    char *inp = slurp(D "ggml-vocab-gpt-2.gguf.inp", &tl), *lines = slurp(D "smollm2-lines.txt", &ll);
    char *ids = slurp(D "llama3pre-qwen3vocab.ids", &il), *o = ids;
    assert_non_null(inp);
    assert_non_null(lines);
    assert_non_null(ids);
    n = ok = 0;
    for (int part = 0; part < 2; part++) {
        const char *sep = part ? "\n" : "\n__ggml_vocab_test__\n";
        char *s = part ? lines : inp, *e;
        while ((e = strstr(s, sep))) {
            char *oe = strchr(o, '\n');
            assert_non_null(oe);
            *oe = 0;
            icl_ids got = {0}, want = {0};
            parse_ids(o, &want);
            assert_int_equal(icl_tok_encode(t, NULL, s, (size_t)(e - s), 0, &got, err, sizeof err), 0);
            if (same(&got, &want))
                ok++;
            else if (n - ok < 3) {
                fprintf(stderr, "llama-bpe text %zu '%.*s' differs\n", n, (int)(e - s), s);
                show("got ", &got);
                show("want", &want);
            }
            n++;
            ids_free(&got);
            ids_free(&want);
            s = e + strlen(sep);
            o = oe + 1;
        }
    }
    printf("# pre llama-bpe on Qwen3's vocabulary: %zu of %zu texts identical to tokenizers with Llama 3's "
           "pre-tokenizer\n", ok, n);
    assert_int_equal(n, 1046);
    assert_int_equal(ok, n);
    free(inp);
    free(lines);
    free(ids);
    icl_tok_free(t);
    icl_tok_gguf_free(&m);
    rm_dir(dir);
}

/* GGUF metadata -> tokenizer.json + tokenizer_config.json -> GGUF metadata:
 * the same tokens, types, merges, pre-tokenizer behaviour and specials (the
 * pre-tokenizer may come back under another name with the same regexes). */
static void hf_round_trip(void **state)
{
    (void)state;
    for (int v = 0; vocabs[v]; v++) {
        char path[256], err[512];
        snprintf(path, sizeof path, D "ggml-vocab-%s.gguf", vocabs[v]);
        icl_gguf *g = icl_gguf_open(path, err, sizeof err);
        assert_non_null(g);
        icl_tok_gguf m, m2;
        assert_int_equal(icl_tok_gguf_read(g, &m, err, sizeof err), 0);
        char *dir = strdup("/tmp/icl-tokgguf-XXXXXX");
        assert_non_null(mkdtemp(dir));
        if (icl_tok_gguf_write_hf(&m, dir, err, sizeof err))
            fail_msg("%s", err);
        if (icl_tok_gguf_from_hf(dir, &m2, err, sizeof err))
            fail_msg("%s: %s", vocabs[v], err);
        assert_string_equal(m2.model, m.model);
        assert_int_equal(m2.n_tokens, m.n_tokens);
        for (size_t i = 0; i < m.n_tokens; i++) {
            assert_int_equal(m2.tokens[i].n, m.tokens[i].n);
            assert_memory_equal(m2.tokens[i].s, m.tokens[i].s, m.tokens[i].n);
            int ty = m.types ? m.types[i] : 1;
            if (ty == 5) /* unused: a normal token in tokenizer.json */
                ty = 1;
            /* unknown and control are both special added tokens in tokenizer.json
             * (phi-3 has [PAD...] tokens of type unknown, <unk> of type control) */
            if (ty == 2 || ty == 3)
                assert_true(m2.types[i] == 2 || m2.types[i] == 3);
            else
                assert_int_equal(m2.types[i], ty);
        }
        assert_int_equal(m2.n_merges, m.n_merges);
        for (size_t i = 0; i < m.n_merges; i++)
            assert_string_equal(m2.merges[i].s, m.merges[i].s);
        assert_int_equal(m2.bos, m.bos);
        assert_int_equal(m2.eos, m.eos);
        assert_int_equal(m2.unk, m.unk);
        assert_int_equal(m2.pad, m.pad);
        /* the same ids on the vectors */
        icl_tokenizer *t = icl_tok_from_gguf(&m, err, sizeof err), *t2 = icl_tok_from_gguf(&m2, err, sizeof err);
        assert_non_null(t);
        assert_non_null(t2);
        const icl_gguf_kv *map;
        assert_int_equal(icl_gguf_get_arr(g, "icl.test.original_ids", ICL_GGUF_INT32, &map, err, sizeof err), 0);
        size_t n, ok = vectors(vocabs[v], t, t2, path, map, &n);
        assert_int_equal(ok, n);
        printf("# round trip %-15s pre %s -> %s\n", vocabs[v], m.pre ? m.pre : "(none)", m2.pre);
        icl_tok_free(t);
        icl_tok_free(t2);
        icl_tok_gguf_free(&m);
        icl_tok_gguf_free(&m2);
        icl_gguf_close(g);
        rm_dir(dir);
    }
}

static const char *smollm2_path(char *buf, size_t n)
{
    const char *p = getenv("ICL_SMOLLM2_GGUF");
    if (p && *p)
        return p;
    const char *h = getenv("HOME");
    snprintf(buf, n, "%s/.cache/icl/SmolLM2-135M-Instruct.Q4_1.gguf", h ? h : "");
    return buf;
}

/* SmolLM2-135M-Instruct's tokenizer: transformers' ids on 1,000 lines, the
 * same through its tokenizer.json; specials and chat template. */
static void smollm2(void **state)
{
    (void)state;
    char pb[1024], err[512];
    const char *p = smollm2_path(pb, sizeof pb);
    if (access(p, R_OK)) {
        print_message("# SKIP %s missing (make deps fetches it; ICL_SMOLLM2_GGUF names another)\n", p);
        skip();
    }
    icl_tokenizer *t = icl_tok_load(p, err, sizeof err);
    if (!t)
        fail_msg("%s: %s", p, err);
    const icl_tok_specials *sp = icl_tok_get_specials(t);
    assert_int_equal(sp->bos, 1);
    assert_int_equal(sp->eos, 2);
    assert_int_equal(sp->pad, 2);
    assert_int_equal(sp->add_bos, 0);
    assert_int_equal(icl_tok_vocab_size(t), 49152);
    assert_true(icl_tok_is_special(t, 1));
    const char *ct = icl_tok_chat_template(t);
    assert_non_null(ct);
    assert_non_null(strstr(ct, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
    assert_non_null(strstr(ct, "<|im_start|>"));

    icl_gguf *g = icl_gguf_open(p, err, sizeof err);
    assert_non_null(g);
    icl_tok_gguf m;
    assert_int_equal(icl_tok_gguf_read(g, &m, err, sizeof err), 0);
    assert_string_equal(m.pre, "smollm");
    char *tj, *tc;
    assert_int_equal(icl_tok_gguf_to_hf_json(&m, &tj, &tc, err, sizeof err), 0);
    icl_tokenizer *th = icl_tok_load_mem(tj, strlen(tj), NULL, err, sizeof err);
    assert_non_null(th);
    assert_int_equal(icl_tok_fingerprint(th), icl_tok_fingerprint(t));
    /* as a Hugging Face folder: tokenizer_config.json carries the specials,
     * add_bos_token and the chat template */
    char *dir = strdup("/tmp/icl-tokgguf-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(icl_tok_gguf_write_hf(&m, dir, err, sizeof err), 0);
    icl_tokenizer *tf = icl_tok_load(dir, err, sizeof err);
    if (!tf)
        fail_msg("%s: %s", dir, err);
    assert_int_equal(icl_tok_fingerprint(tf), icl_tok_fingerprint(t));
    assert_memory_equal(icl_tok_get_specials(tf), sp, sizeof *sp - sizeof sp->eot);
    assert_string_equal(icl_tok_chat_template(tf), ct);
    icl_tok_free(tf);
    rm_dir(dir);

    /* references: transformers (its GGUF loader drops the digit split of
     * pre "smollm"), llama.cpp, and SmolLM2's own pre-tokenizer (Digits +
     * ByteLevel) in tokenizers */
    size_t tl, il[3];
    static const char *const refs[3] = {D "smollm2-lines.ids", D "smollm2-lines.llamacpp.ids",
                                        D "smollm2-lines.orig.ids"};
    char *text = slurp(D "smollm2-lines.txt", &tl), *ids[3], *o[3];
    assert_non_null(text);
    for (int r = 0; r < 3; r++) {
        ids[r] = o[r] = slurp(refs[r], &il[r]);
        assert_non_null(ids[r]);
    }
    size_t n = 0, ok[3] = {0}, tf_differs = 0, nids = 0;
    char *s = text;
    icl_tok_state *st = icl_tok_state_new(t);
    while (*s) {
        char *e = strchr(s, '\n');
        assert_non_null(e);
        icl_ids got = {0}, got2 = {0}, want[3] = {{0}};
        for (int r = 0; r < 3; r++) {
            char *oe = strchr(o[r], '\n');
            assert_non_null(oe);
            *oe = 0;
            parse_ids(o[r], &want[r]);
            o[r] = oe + 1;
        }
        assert_int_equal(icl_tok_encode(t, st, s, (size_t)(e - s), 0, &got, err, sizeof err), 0);
        assert_int_equal(icl_tok_encode(th, NULL, s, (size_t)(e - s), 0, &got2, err, sizeof err), 0);
        assert_true(same(&got, &got2));
        for (int r = 0; r < 3; r++) {
            if (same(&got, &want[r])) {
                ok[r]++;
            } else if (r > 0 || same(&want[0], &want[1])) {
                fprintf(stderr, "line %zu '%.*s' differs from %s\n", n + 1, (int)(e - s), s, refs[r]);
                show("got ", &got);
                show("want", &want[r]);
            }
        }
        tf_differs += !same(&want[0], &want[1]);
        /* and back to the text */
        icl_buf dec = {0};
        assert_int_equal(icl_tok_decode(t, got.v, got.n, 0, 0, &dec, err, sizeof err), 0);
        assert_int_equal(dec.len, (size_t)(e - s));
        assert_memory_equal(dec.data, s, dec.len);
        buf_free(&dec);
        nids += got.n;
        n++;
        ids_free(&got);
        ids_free(&got2);
        for (int r = 0; r < 3; r++)
            ids_free(&want[r]);
        s = e + 1;
    }
    printf("# SmolLM2 GGUF, %zu lines (%zu ids): identical to llama.cpp on %zu, to tokenizers with SmolLM2's "
           "pre-tokenizer on %zu, to transformers 4.46.3 on %zu (it differs from llama.cpp on %zu)\n",
           n, nids, ok[1], ok[2], ok[0], tf_differs);
    assert_int_equal(n, 1000);
    assert_int_equal(ok[1], n);
    assert_int_equal(ok[2], n);
    assert_int_equal(ok[0], n - tf_differs);
    assert_true(tf_differs <= 1);
    for (int r = 0; r < 3; r++)
        free(ids[r]);
    icl_tok_state_free(st);
    free(text);
    free(tj);
    free(tc);
    icl_tok_free(th);
    icl_tok_free(t);
    icl_tok_gguf_free(&m);
    icl_gguf_close(g);
}

/* A Hugging Face folder as transformers writes it: tokenizer_config.json
 * with "model_max_length": 1000000000000000019884624838656 (its "no limit"
 * sentinel, beyond int64) loads; its chat_template (a string or a list of
 * {name, template}) is kept; a broken tokenizer_config.json is still an
 * error. */
static void hf_folder_sentinel(void **state)
{
    (void)state;
    char err[512], cfg[600];
    icl_gguf *g = icl_gguf_open(D "ggml-vocab-gpt-2.gguf", err, sizeof err);
    assert_non_null(g);
    icl_tok_gguf m;
    assert_int_equal(icl_tok_gguf_read(g, &m, err, sizeof err), 0);
    char *dir = strdup("/tmp/icl-tokgguf-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(icl_tok_gguf_write_hf(&m, dir, err, sizeof err), 0);
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    static const char *const texts[] = {
        "{\"model_max_length\": 1000000000000000019884624838656, \"eos_token\": \"<|endoftext|>\",\n"
        " \"chat_template\": \"{{ messages[0].content }}\"}\n",
        "{\"model_max_length\": 1000000000000000019884624838656, \"chat_template\": [\n"
        " {\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", \"template\": \"D\"}]}\n",
        "{\"model_max_length\": 1000000000000000019884624838656, \"eos_token\": \n",
    };
    static const char *const want[] = {"{{ messages[0].content }}", "D", NULL};
    for (int k = 0; k < 3; k++) {
        FILE *f = fopen(cfg, "w");
        assert_non_null(f);
        fputs(texts[k], f);
        fclose(f);
        icl_tokenizer *t = icl_tok_load(dir, err, sizeof err);
        if (!want[k]) {
            assert_null(t);
            assert_non_null(strstr(err, "tokenizer_config.json: line 2"));
            continue;
        }
        if (!t)
            fail_msg("%s", err);
        assert_string_equal(icl_tok_chat_template(t), want[k]);
        if (k == 0)
            assert_int_equal(icl_tok_get_specials(t)->eos, m.eos);
        icl_tok_free(t);
    }
    icl_tok_gguf_free(&m);
    icl_gguf_close(g);
    rm_dir(dir);
}

/* ---- hostile metadata ---- */

static icl_tok_str S(const char *s)
{
    icl_tok_str r = {strdup(s), strlen(s)};
    return r;
}

/* A small valid byte-level vocabulary: the 256 byte chars? No: a, b, ab, c,
 * <|end|> (control), with the merge "a b". */
static void small(icl_tok_gguf *m)
{
    icl_tok_gguf_init(m);
    m->model = strdup("gpt2");
    m->pre = strdup("gpt-2");
    const char *tok[] = {"a", "b", "ab", "c", "<|end|>"};
    m->n_tokens = 5;
    m->tokens = calloc(5, sizeof *m->tokens);
    m->types = calloc(5, sizeof *m->types);
    m->n_types = 5;
    for (int i = 0; i < 5; i++) {
        m->tokens[i] = S(tok[i]);
        m->types[i] = i == 4 ? 3 : 1;
    }
    m->merges = calloc(1, sizeof *m->merges);
    m->merges[0] = S("a b");
    m->n_merges = 1;
    m->eos = 4;
}

static void expect_error(icl_tok_gguf *m, const char *want)
{
    char err[512] = "";
    icl_tokenizer *t = icl_tok_from_gguf(m, err, sizeof err);
    if (t)
        fail_msg("loaded, expected an error with \"%s\"", want);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
    icl_tok_gguf_free(m);
}

static void hostile_metadata(void **state)
{
    (void)state;
    icl_tok_gguf m;
    char err[512];
    small(&m);
    icl_tokenizer *t = icl_tok_from_gguf(&m, err, sizeof err);
    if (!t)
        fail_msg("%s", err);
    icl_ids ids = {0};
    assert_int_equal(icl_tok_encode(t, NULL, "abc<|end|>", 10, ICL_TOK_PARSE_SPECIAL, &ids, err, sizeof err), 0);
    assert_int_equal(ids.n, 3);
    assert_int_equal(ids.v[0], 2);
    assert_int_equal(ids.v[1], 3);
    assert_int_equal(ids.v[2], 4);
    ids_free(&ids);
    assert_int_equal(icl_tok_get_specials(t)->eos, 4);
    icl_tok_free(t);
    icl_tok_gguf_free(&m);

    small(&m);
    m.n_types = 4; /* the count lies */
    expect_error(&m, "tokenizer.ggml.token_type has 4 values for 5 tokens");
    small(&m);
    m.scores = calloc(3, sizeof *m.scores);
    m.n_scores = 3;
    expect_error(&m, "tokenizer.ggml.scores has 3 values for 5 tokens");
    small(&m);
    free(m.merges[0].s);
    m.merges[0] = S("a zz");
    expect_error(&m, "tokenizer.ggml.merges[0]: \"zz\" is not a token");
    small(&m);
    free(m.merges[0].s);
    m.merges[0] = S("ab");
    expect_error(&m, "tokenizer.ggml.merges[0] \"ab\" is not two tokens");
    small(&m);
    m.eos = 5;
    expect_error(&m, "tokenizer.ggml.eos_token_id 5 is not a token id");
    small(&m);
    m.bos = -2;
    expect_error(&m, "tokenizer.ggml.bos_token_id");
    small(&m);
    m.tokens[3].n = 0;
    expect_error(&m, "tokenizer.ggml.tokens[3] is empty");
    small(&m);
    m.tokens[3].s[0] = (char)0xC3; /* a lead byte alone */
    expect_error(&m, "tokenizer.ggml.tokens[3] is not valid UTF-8");
    small(&m);
    m.tokens[3].s[0] = 0;
    expect_error(&m, "tokenizer.ggml.tokens[3] contains a NUL byte");
    small(&m);
    free(m.tokens[3].s);
    m.tokens[3] = S("a");
    expect_error(&m, "tokenizer.ggml.tokens[3] \"a\" is repeated (first at 0)");
    small(&m);
    m.types[2] = 9;
    expect_error(&m, "tokenizer.ggml.token_type[2] is 9");
    small(&m);
    free(m.pre);
    m.pre = strdup("no-such-pre");
    expect_error(&m, "tokenizer.ggml.pre \"no-such-pre\" is not supported (known: default");
    small(&m);
    free(m.model);
    m.model = strdup("bert");
    expect_error(&m, "tokenizer.ggml.model \"bert\" is not supported");
    small(&m);
    free(m.model);
    m.model = strdup("llama");
    expect_error(&m, "llama needs tokenizer.ggml.scores");
}

/* Lying GGUF files written with the writer: wrong value types are errors
 * naming the key; a file without a tokenizer says so. */
static void hostile_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/icl-tokgguf-XXXXXX", path[128], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    struct {
        const char *what, *want;
    } cases[] = {
        {"no tokenizer", "no tokenizer (no tokenizer.ggml.model key)"},
        {"tokens not strings", "tokenizer.ggml.tokens"},
        {"scores as strings", "tokenizer.ggml.scores"},
        {"model as number", "tokenizer.ggml.model"},
        {"bos as string", "tokenizer.ggml.bos_token_id"},
        {"types lie", "tokenizer.ggml.token_type has 1 values for 2 tokens"},
        {"template not UTF-8", "tokenizer.chat_template is not valid UTF-8"},
        {"bos out of range", "tokenizer.ggml.bos_token_id 2 is not a token id (0..1)"},
        {"pad 0xFFFFFFFF is none", NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        icl_gguf_writer *w = icl_gguf_writer_new();
        icl_gguf_set_str(w, "general.architecture", "llama", 5);
        const char *toks[] = {"a", "b"};
        int32_t one = 1;
        if (c != 0)
            icl_gguf_set_str(w, "tokenizer.ggml.model", "llama", 5);
        if (c == 3)
            icl_gguf_set_u32(w, "tokenizer.ggml.model", 7);
        if (c == 1)
            icl_gguf_set_arr(w, "tokenizer.ggml.tokens", ICL_GGUF_INT32, &one, 1);
        else
            icl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 2);
        if (c == 2)
            icl_gguf_set_arr_str(w, "tokenizer.ggml.scores", toks, NULL, 2);
        else {
            float sc[2] = {0, 0};
            icl_gguf_set_arr(w, "tokenizer.ggml.scores", ICL_GGUF_FLOAT32, sc, 2);
        }
        if (c == 4)
            icl_gguf_set_str(w, "tokenizer.ggml.bos_token_id", "1", 1);
        if (c == 5)
            icl_gguf_set_arr(w, "tokenizer.ggml.token_type", ICL_GGUF_INT32, &one, 1);
        if (c == 6)
            icl_gguf_set_str(w, "tokenizer.chat_template", "{{ \xff }}", 6);
        if (c == 7)
            icl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 2);
        if (c == 8)
            icl_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
        assert_int_equal(icl_gguf_write(w, path, err, sizeof err), 0);
        icl_gguf_writer_free(w);
        err[0] = 0;
        icl_tokenizer *t = icl_tok_load(path, err, sizeof err);
        if (!cases[c].want) {
            if (!t)
                fail_msg("%s: %s", cases[c].what, err);
            assert_int_equal(icl_tok_get_specials(t)->pad, -1);
            icl_tok_free(t);
            continue;
        }
        if (t)
            fail_msg("%s: loaded", cases[c].what);
        if (!strstr(err, cases[c].want))
            fail_msg("%s: error \"%s\" lacks \"%s\"", cases[c].what, err, cases[c].want);
        /* icl_tok_load_gguf names the file */
        assert_null(icl_tok_load_gguf(path, err, sizeof err));
        assert_non_null(strstr(err, path));
    }
    unlink(path);
    rmdir(dir);
}

/* A SentencePiece ("llama") GGUF without tokenizer.ggml.unknown_token_id
 * (break-it review): a character with no piece and no byte token was
 * dropped silently (as tokenizers drops it); llama.cpp never drops one.
 * Encoding it is an error naming the character and where it is; with an
 * unknown token it becomes that token, with its byte tokens those bytes. */
static void spm_without_unk(void **state)
{
    (void)state;
    char dir[] = "/tmp/icl-tokgguf-unk-XXXXXX", path[128], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/spm.gguf", dir);
    /* 0 <s>, 1 </s>, 2 ▁, 3 a, 4 b, 5 ▁a, 6 <0xC3>, 7 <0xA9> (é's bytes), 8 <unk> (in the last file only) */
    const char *toks[] = {"<s>", "</s>", "\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "<0xC3>", "<0xA9>", "<unk>"};
    float sc[] = {0, 0, -1, -2, -3, -1.5f, 0, 0, 0};
    int32_t ty[] = {3, 3, 1, 1, 1, 1, 6, 6, 2};
    static const struct {
        int ntok, unk;
        const char *text;
        int32_t want[8];
        int nwant;
        const char *err;
    } cases[] = {
        {8, 0, "a ab", {5, 5, 4}, 3, NULL},
        {8, 0, "a b\xc3\xa9", {5, 2, 4, 6, 7}, 5, NULL}, /* é: its byte tokens */
        /* ü (U+00FC): no piece, no <0xBC>: refused, not dropped */
        {8, 0, "ab a\xc3\xbc!", {0}, 0, "character 5 (byte 4), U+00FC '\xc3\xbc': the tokenizer has no token for it"},
        {8, 0, "\xe6\x97\xa5", {0}, 0, "character 1 (byte 0), U+65E5"},
        {8, 0, "a\x01", {0}, 0, "character 2 (byte 1), U+0001: the"},
        /* with tokenizer.ggml.unknown_token_id: <unk>, as llama.cpp */
        {9, 1, "ab a\xc3\xbc", {5, 4, 5, 8}, 4, NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        icl_gguf_writer *w = icl_gguf_writer_new();
        icl_gguf_set_str(w, "general.architecture", "llama", 5);
        icl_gguf_set_str(w, "tokenizer.ggml.model", "llama", 5);
        icl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, (size_t)cases[c].ntok);
        icl_gguf_set_arr(w, "tokenizer.ggml.scores", ICL_GGUF_FLOAT32, sc, (size_t)cases[c].ntok);
        icl_gguf_set_arr(w, "tokenizer.ggml.token_type", ICL_GGUF_INT32, ty, (size_t)cases[c].ntok);
        icl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 0);
        icl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 1);
        if (cases[c].unk)
            icl_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 8);
        assert_int_equal(icl_gguf_write(w, path, err, sizeof err), 0);
        icl_gguf_writer_free(w);
        icl_tokenizer *t = icl_tok_load(path, err, sizeof err);
        if (!t)
            fail_msg("case %zu: %s", c, err);
        icl_ids ids = {0};
        icl_ids_push(&ids, 99); /* kept as it was on an error */
        err[0] = 0;
        int rc = icl_tok_encode(t, NULL, cases[c].text, strlen(cases[c].text), 0, &ids, err, sizeof err);
        if (cases[c].err) {
            if (rc != -1 || !strstr(err, cases[c].err))
                fail_msg("case %zu: rc %d, error \"%s\" lacks \"%s\"", c, rc, err, cases[c].err);
            assert_int_equal(ids.n, 1);
            /* a state reused afterwards starts clean */
            icl_tok_state *st = icl_tok_state_new(t);
            assert_int_equal(icl_tok_encode(t, st, cases[c].text, strlen(cases[c].text), 0, &ids, err, sizeof err), -1);
            ids.n = 1;
            assert_int_equal(icl_tok_encode(t, st, "ab", 2, 0, &ids, err, sizeof err), 0);
            assert_int_equal(ids.n, 3);
            icl_tok_state_free(st);
        } else {
            if (rc)
                fail_msg("case %zu: %s", c, err);
            if (ids.n != (size_t)cases[c].nwant + 1 || memcmp(ids.v + 1, cases[c].want, (size_t)cases[c].nwant * sizeof *ids.v))
            {
                show("got", &ids);
                fail_msg("case %zu: ids differ", c);
            }
        }
        ids_free(&ids);
        icl_tok_free(t);
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llamacpp_vectors), cmocka_unit_test(llamacpp_every_pre),
        cmocka_unit_test(qwen2_from_hf),
        cmocka_unit_test(hf_round_trip),    cmocka_unit_test(smollm2),
        cmocka_unit_test(hostile_metadata), cmocka_unit_test(hostile_files),
        cmocka_unit_test(hf_folder_sentinel),
        cmocka_unit_test(spm_without_unk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
