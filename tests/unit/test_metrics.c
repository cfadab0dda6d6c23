/* Unit tests of lib/metrics.c: hand-computed values, and the reference
 * implementations' own outputs (tests/data/eval/metrics_ref.json from
 * make_metrics.py: SQuAD v1.1 script, rouge-score, sacreBLEU 2.6.0;
 * tests/data/eval/sacrebleu.json, from the reference fixtures). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "metrics.h"

static json_t *load_json(const char *name)
{
    char path[4096];
    const char *dir = getenv("TESTS_DIR");
    snprintf(path, sizeof path, "%s/data/eval/%s", dir ? dir : "tests", name);
    json_error_t e;
    json_t *v = json_load_file(path, 0, &e);
    if (!v)
        fail_msg("%s: %s", path, e.text);
    return v;
}

#define assert_near(a, b, tol) do { \
    double a_ = (a), b_ = (b); \
    if (!(fabs(a_ - b_) <= (tol))) fail_msg("%s = %.17g, want %.17g", #a, a_, b_); \
} while (0)

static void hand_computed(void **state)
{
    (void)state;
    /* EM: case, punctuation and articles do not count */
    assert_true(icl_exact_match("The Cat!", "cat") == 1);
    assert_true(icl_exact_match("a cat", "the  cat.") == 1);
    assert_true(icl_exact_match("cats", "cat") == 0);
    assert_true(icl_exact_match("", "") == 1);
    assert_true(icl_exact_match("", "x") == 0);
    /* F1 = 0.8: 4 predicted tokens all in the 6 reference tokens: P = 1, R = 2/3 */
    assert_near(icl_token_f1("a quick brown fox jumped", "quick brown fox jumped over dogs"), 0.8, 1e-15);
    assert_near(icl_token_f1("", ""), 1.0, 0);
    assert_near(icl_token_f1("the", "an"), 1.0, 0); /* both normalise to nothing */
    assert_near(icl_token_f1("", "cat"), 0.0, 0);
    assert_near(icl_token_f1("dog", "cat"), 0.0, 0);
    /* repeated tokens: multiset intersection {cat, dog} = 2; P = 2/3, R = 2/3 */
    assert_near(icl_token_f1("cat cat dog", "cat dog dog"), 2.0 / 3, 1e-15);
    /* ROUGE-L: LCS of "the cat sat on the mat" / "the cat is on the mat" is
     * "the cat on the mat" = 5 of 6 and 6 tokens: F = 5/6 */
    double p, r;
    assert_near(icl_rouge_l("the cat sat on the mat", "the cat is on the mat", &p, &r), 5.0 / 6, 1e-15);
    assert_near(p, 5.0 / 6, 1e-15);
    /* 3 of 5 vs 3 of 4 tokens: P = 3/5, R = 3/4, F = 2/3 */
    assert_near(icl_rouge_l("A b, c-d E", "a X c e", &p, &r), 2 * 0.6 * 0.75 / 1.35, 1e-15);
    assert_near(r, 0.75, 1e-15);
    assert_near(icl_rouge_l("", "", NULL, NULL), 0.0, 0); /* rouge-score's rule */
    /* BLEU by hand: hyp = ref of 4 tokens -> 100; one 4-gram hyp of 5 tokens vs 4 */
    icl_bleu_stats st = {0};
    const char *ref1[] = {"a b c d"};
    icl_bleu_add(&st, "a b c d", ref1, 1);
    icl_bleu_result br;
    icl_bleu_compute(&st, 0, &br);
    assert_near(br.score, 100.0, 1e-12);
    icl_bleu_stats s2 = {0};
    const char *ref2[] = {"a b c d e"};
    icl_bleu_add(&s2, "a b c d", ref2, 1); /* all precisions 100, bp = exp(1 - 5/4) */
    icl_bleu_compute(&s2, 0, &br);
    assert_near(br.bp, exp(-0.25), 1e-15);
    assert_near(br.score, 100 * exp(-0.25), 1e-12);
    icl_bleu_stats s3 = {0};
    const char *ref3[] = {"a b x d"}; /* 3/4, 1/3, 0/2 -> 100/(2*2), 0/1 -> 100/(4*1) */
    icl_bleu_add(&s3, "a b c d", ref3, 1);
    icl_bleu_compute(&s3, 0, &br);
    assert_near(br.precisions[2], 25.0, 1e-12);
    assert_near(br.precisions[3], 25.0, 1e-12);
    assert_near(br.score, exp((log(75) + log(100.0 / 3) + log(25) + log(25)) / 4), 1e-9);
}

static void label_first_line(void **state)
{
    (void)state;
    icl_buf b = {0};
    icl_label_normalize("\n  Positive.\nBecause the film...", &b);
    assert_string_equal(b.data, "positive");
    icl_buf_clear(&b);
    icl_label_normalize("The answer", &b);
    assert_string_equal(b.data, "answer");
    icl_buf_free(&b);
    json_t *m = json_object();
    icl_confusion_add(m, "pos", "pos");
    icl_confusion_add(m, "pos", "neg");
    icl_confusion_add(m, "pos", "pos");
    char *s = json_dumps(m, JSON_COMPACT);
    assert_string_equal(s, "{\"pos\":{\"pos\":2,\"neg\":1}}");
    free(s);
    json_decref(m);
}

static void tok13a_cases(void **state)
{
    (void)state;
    icl_buf b = {0};
    icl_tok13a("Hello, world. 3.14 and 1,000; 5-4", &b);
    assert_string_equal(b.data, "Hello , world . 3.14 and 1,000 ; 5 - 4");
    icl_buf_clear(&b);
    icl_tok13a("   ", &b);
    assert_int_equal(b.len, 0);
    icl_buf_free(&b);
}

static const char **refs_of(json_t *a, size_t *n)
{
    *n = json_array_size(a);
    const char **r = malloc(*n * sizeof *r);
    for (size_t i = 0; i < *n; i++)
        r[i] = json_string_value(json_array_get(a, i));
    return r;
}

static void reference_implementations(void **state)
{
    (void)state;
    json_t *d = load_json("metrics_ref.json");
    size_t ci;
    json_t *c;
    icl_bleu_stats corpus = {0};
    json_array_foreach(json_object_get(d, "cases"), ci, c) {
        const char *pred = json_string_value(json_object_get(c, "pred"));
        size_t nr;
        const char **refs = refs_of(json_object_get(c, "refs"), &nr);
        icl_buf b = {0};
        icl_py_lower(pred, &b);
        if (strcmp(b.data ? b.data : "", json_string_value(json_object_get(c, "lower"))))
            fail_msg("case %zu: lower %s", ci, b.data);
        icl_buf_clear(&b);
        icl_squad_normalize(pred, &b);
        if (strcmp(b.data ? b.data : "", json_string_value(json_object_get(c, "squad_norm"))))
            fail_msg("case %zu: normalised to '%s', want '%s'", ci, b.data,
                     json_string_value(json_object_get(c, "squad_norm")));
        icl_buf_clear(&b);
        icl_tok13a(pred, &b);
        if (strcmp(b.data ? b.data : "", json_string_value(json_object_get(c, "tok13a"))))
            fail_msg("case %zu: 13a gave '%s'", ci, b.data);
        icl_buf_clear(&b);
        icl_rouge_tokenize(pred, &b);
        icl_buf w = {0};
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(c, "rouge_tokens"), k, t) {
            if (k)
                icl_buf_putc(&w, ' ');
            icl_buf_puts(&w, json_string_value(t));
        }
        if (strcmp(b.data ? b.data : "", w.data ? w.data : ""))
            fail_msg("case %zu: rouge tokens '%s', want '%s'", ci, b.data, w.data);
        icl_buf_free(&w);
        icl_buf_free(&b);
        double em = 0, f1 = 0, rl = 0, bestp = 0, bestr = 0;
        for (size_t i = 0; i < nr; i++) {
            double p, r, x = icl_rouge_l(pred, refs[i], &p, &r);
            em = fmax(em, icl_exact_match(pred, refs[i]));
            f1 = fmax(f1, icl_token_f1(pred, refs[i]));
            if (i == 0 || x > rl) {
                rl = x;
                bestp = p;
                bestr = r;
            }
        }
        assert_near(em, json_number_value(json_object_get(c, "em")), 0);
        assert_near(f1, json_number_value(json_object_get(c, "f1")), 1e-15);
        assert_near(rl, json_number_value(json_object_get(c, "rougeL")), 1e-15);
        assert_near(bestp, json_number_value(json_object_get(c, "rougeL_p")), 1e-15);
        assert_near(bestr, json_number_value(json_object_get(c, "rougeL_r")), 1e-15);
        icl_bleu_stats st = {0};
        icl_bleu_add(&st, pred, refs, nr);
        icl_bleu_add(&corpus, pred, refs, nr);
        icl_bleu_result br;
        icl_bleu_compute(&st, 1, &br);
        assert_near(br.score, json_number_value(json_object_get(c, "sentence_bleu")), 1e-9);
        free(refs);
    }
    json_t *cb = json_object_get(d, "corpus_bleu");
    for (int n = 0; n < 4; n++) {
        assert_int_equal(corpus.correct[n], json_integer_value(json_array_get(json_object_get(cb, "counts"), n)));
        assert_int_equal(corpus.total[n], json_integer_value(json_array_get(json_object_get(cb, "totals"), n)));
    }
    assert_int_equal(corpus.sys_len, json_integer_value(json_object_get(cb, "sys_len")));
    assert_int_equal(corpus.ref_len, json_integer_value(json_object_get(cb, "ref_len")));
    icl_bleu_result br;
    icl_bleu_compute(&corpus, 0, &br);
    assert_near(br.score, json_number_value(json_object_get(cb, "score")), 1e-9);
    json_decref(d);
}

/* sacreBLEU's documented example values (tests/data/eval/sacrebleu.json). */
static void sacrebleu_fixture(void **state)
{
    (void)state;
    json_t *d = load_json("sacrebleu.json");
    json_t *hyps = json_object_get(d, "hyps"), *refs = json_object_get(d, "refs");
    icl_bleu_stats st = {0};
    for (size_t i = 0; i < json_array_size(hyps); i++) {
        const char *r = json_string_value(json_array_get(refs, i));
        const char *h = json_string_value(json_array_get(hyps, i));
        icl_bleu_add(&st, h, &r, 1);
        icl_bleu_stats one = {0};
        icl_bleu_add(&one, h, &r, 1);
        icl_bleu_result br;
        icl_bleu_compute(&one, 1, &br);
        assert_near(br.score, json_number_value(json_array_get(json_object_get(d, "sentence_bleu"), i)), 1e-9);
    }
    for (int n = 0; n < 4; n++) {
        assert_int_equal(st.correct[n], json_integer_value(json_array_get(json_object_get(d, "counts"), n)));
        assert_int_equal(st.total[n], json_integer_value(json_array_get(json_object_get(d, "totals"), n)));
    }
    assert_int_equal(st.sys_len, json_integer_value(json_object_get(d, "sys_len")));
    assert_int_equal(st.ref_len, json_integer_value(json_object_get(d, "ref_len")));
    icl_bleu_result br;
    icl_bleu_compute(&st, 0, &br);
    assert_near(br.bp, json_number_value(json_object_get(d, "bp")), 1e-15);
    assert_near(br.score, json_number_value(json_object_get(d, "corpus_bleu")), 1e-9);
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hand_computed),
        cmocka_unit_test(label_first_line),
        cmocka_unit_test(tok13a_cases),
        cmocka_unit_test(reference_implementations),
        cmocka_unit_test(sacrebleu_fixture),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
