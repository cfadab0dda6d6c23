/* Unit tests of lib/bpe_train.c: training on the fixtures' corpus
 * (tinyshakespeare.txt then wiki_demo.txt) gives Hugging Face BpeTrainer's
 * merges, at vocabulary 512 and 2048 (tests/data/tok, made by tests/hf/fixtures/make_fixtures.py),
 * and on a corpus of very long words with overlapping merges at 1000
 * (longwords*, made by tests/hf/bpe_long_words.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_train.h"
#include "tokenizer.h"

#define D "data/tok/"

static char *corpus, *longwords;
static size_t corpus_len, longwords_len;

static char *gunzip(const char *path, size_t *len)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "gzip -dc %s", path);
    FILE *f = popen(cmd, "r");
    if (!f)
        return NULL;
    icl_buf b = {0};
    char tmp[1 << 16];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0)
        icl_buf_append(&b, tmp, r);
    pclose(f);
    *len = b.len;
    return b.data;
}

static int setup(void **state)
{
    (void)state;
    corpus = gunzip(D "corpus.txt.gz", &corpus_len);
    longwords = gunzip(D "longwords.txt.gz", &longwords_len);
    return corpus_len > 2000000 && longwords_len > 100000 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(corpus);
    free(longwords);
    return 0;
}

static void same_as_hf_on(const char *text, size_t len, int vocab, const char *name)
{
    const char *sp[] = {"<|endoftext|>"};
    double t0 = icl_now();
    icl_bpe_trainer *tr = icl_bpe_trainer_new(vocab, 0, sp, 1);
    assert_int_equal(icl_bpe_trainer_feed_lines(tr, text, len, NULL, 0), 0);
    icl_buf out = {0};
    long nm = icl_bpe_trainer_finish(tr, &out, NULL, 0);
    icl_bpe_trainer_free(tr);
    double dt = icl_now() - t0;

    char path[64];
    snprintf(path, sizeof path, D "%s-%d.json", name, vocab);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je), *ours = json_loadb(out.data, out.len, 0, &je);
    assert_non_null(ref);
    assert_non_null(ours);
    json_t *rm = json_object_get(json_object_get(ref, "model"), "merges");
    json_t *om = json_object_get(json_object_get(ours, "model"), "merges");
    size_t n = json_array_size(rm), same = 0;
    for (size_t i = 0; i < n && i < json_array_size(om); i++)
        same += json_equal(json_array_get(rm, i), json_array_get(om, i));
    int vocab_same = json_equal(json_object_get(json_object_get(ref, "model"), "vocab"),
                                json_object_get(json_object_get(ours, "model"), "vocab"));
    printf("# train %s vocab %5d: %ld merges, %zu of HF's %zu equal and in order, vocab %s (%.2f s)\n",
           name, vocab, nm, same, n, vocab_same ? "identical" : "DIFFERENT", dt);
    assert_int_equal(nm, n);
    assert_int_equal(same, n);
    assert_true(vocab_same);

    /* the file loads and encodes like the reference */
    char err[256];
    icl_tokenizer *a = icl_tok_load_mem(out.data, out.len, NULL, err, sizeof err);
    assert_non_null(a);
    const char *s = "First Citizen:\nBefore we proceed any further, hear me speak.";
    icl_ids x = {0};
    assert_int_equal(icl_tok_encode(a, NULL, s, strlen(s), 0, &x, err, sizeof err), 0);
    assert_true(x.n > 5);
    icl_buf back = {0};
    assert_int_equal(icl_tok_decode(a, x.v, x.n, 0, 0, &back, err, sizeof err), 0);
    assert_string_equal(back.data, s);
    icl_buf_free(&back);
    icl_ids_free(&x);
    icl_tok_free(a);
    json_decref(ref);
    json_decref(ours);
    icl_buf_free(&out);
}

static void same_as_hf(int vocab) { same_as_hf_on(corpus, corpus_len, vocab, "bytelevel"); }

static void train_512(void **state)
{
    (void)state;
    same_as_hf(512);
}

static void train_2048(void **state)
{
    (void)state;
    same_as_hf(2048);
}

/* words of thousands of letters (one of 60,000), where merging was
 * quadratic in a word's length, and runs like "aaaa" and "abab" whose
 * occurrences overlap (merged left to right, as Word::merge does) */
static void train_long_words(void **state)
{
    (void)state;
    same_as_hf_on(longwords, longwords_len, 1000, "longwords");
}

static void min_frequency_stops(void **state)
{
    (void)state;
    const char *text = "ab ab ab cd\n";
    icl_bpe_trainer *tr = icl_bpe_trainer_new(1000, 3, NULL, 0);
    assert_int_equal(icl_bpe_trainer_feed_lines(tr, text, strlen(text), NULL, 0), 0);
    icl_buf out = {0};
    /* pairs: (a,b) x3, (Ġ,a) x2, (Ġ,c) x1, (c,d) x1, (d,\n)... only a+b reaches 3 */
    assert_int_equal(icl_bpe_trainer_finish(tr, &out, NULL, 0), 1);
    assert_non_null(strstr(out.data, "\"ab\": 256"));
    icl_bpe_trainer_free(tr);
    icl_buf_free(&out);
}

/* Nothing to train on: finish refuses (no tokenizer of the bare byte
 * alphabet), whether nothing or only empty strings were fed; one word is
 * enough, even when it gives no pair (0 merges, vocabulary 256 + 1). */
static void no_training_text(void **state)
{
    (void)state;
    const char *sp[] = {"<s>"};
    icl_bpe_trainer *tr = icl_bpe_trainer_new(300, 0, sp, 1);
    icl_buf out = {0};
    char err[64] = "";
    assert_int_equal(icl_bpe_trainer_finish(tr, &out, err, sizeof err), -1);
    assert_string_equal(err, "no training text");
    assert_null(out.data);
    assert_int_equal(icl_bpe_trainer_feed(tr, "", 0, err, sizeof err), 0);
    assert_int_equal(icl_bpe_trainer_feed_lines(tr, "", 0, err, sizeof err), 0);
    assert_int_equal(icl_bpe_trainer_finish(tr, &out, err, sizeof err), -1);
    assert_null(out.data);
    assert_int_equal(icl_bpe_trainer_feed_lines(tr, "a\n", 2, err, sizeof err), 0);
    assert_int_equal(icl_bpe_trainer_finish(tr, &out, err, sizeof err), 0);
    assert_int_equal(icl_bpe_trainer_vocab(tr), 257);
    assert_non_null(strstr(out.data, "\"<s>\": 0"));
    icl_bpe_trainer_free(tr);
    icl_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(train_512),
        cmocka_unit_test(train_2048),
        cmocka_unit_test(train_long_words),
        cmocka_unit_test(min_frequency_stops),
        cmocka_unit_test(no_training_text),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
