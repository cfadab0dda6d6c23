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
    long chrf[3 * ICL_CHRF_CHAR_ORDER] = {0};
    for (size_t i = 0; i < json_array_size(hyps); i++) {
        const char *r = json_string_value(json_array_get(refs, i));
        const char *h = json_string_value(json_array_get(hyps, i));
        icl_bleu_add(&st, h, &r, 1);
        icl_chrf_add(chrf, 0, h, &r, 1);
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
    assert_near(icl_chrf_score(chrf, 0), json_number_value(json_object_get(d, "corpus_chrf")), 1e-9);
    json_decref(d);
}

/* sacreBLEU 2.6.0's tokenizers, BLEU under each and chrF / chrF++ on
 * English, Chinese, Japanese, Korean and Thai pairs
 * (tests/data/eval/sacrebleu_tok.json from make_sacrebleu_tok.py). */
static void sacrebleu_tokenizers_and_chrf(void **state)
{
    (void)state;
    json_t *d = load_json("sacrebleu_tok.json");
    json_t *pairs = json_object_get(d, "pairs");
    size_t np = json_array_size(pairs);
    for (icl_tokenize t = ICL_TOK_13A; t <= ICL_TOK_NONE; t++) {
        const char *name = icl_tokenize_name(t);
        icl_tokenize back;
        assert_int_equal(icl_tokenize_parse(name, &back), 0);
        assert_int_equal(back, t);
        json_t *want_toks = json_object_get(json_object_get(d, "tokens"), name);
        json_t *bl = json_object_get(json_object_get(d, "bleu"), name);
        icl_bleu_stats corpus = {0};
        for (size_t i = 0; i < np; i++) {
            json_t *pr = json_array_get(pairs, i);
            const char *h = json_string_value(json_object_get(pr, "hyp"));
            size_t nr;
            const char **refs = refs_of(json_object_get(pr, "refs"), &nr);
            icl_buf b = {0};
            icl_bleu_tokenize(t, h, &b);
            /* sacreBLEU's tokenizer output, then split(): compare the joined words */
            const char *w = json_string_value(json_array_get(want_toks, i));
            icl_buf ws = {0};
            int first = 1;
            for (const char *q = w; *q;) {
                while (*q == ' ')
                    q++;
                if (!*q)
                    break;
                if (!first)
                    buf_putc(&ws, ' ');
                first = 0;
                while (*q && *q != ' ')
                    buf_putc(&ws, *q++);
            }
            if (t != ICL_TOK_NONE && t != ICL_TOK_CHAR &&
                strcmp(b.data ? b.data : "", ws.data ? ws.data : ""))
                fail_msg("%s pair %zu: '%s', want '%s'", name, i, b.data, w);
            buf_free(&b);
            buf_free(&ws);
            icl_bleu_add_tok(&corpus, t, h, refs, nr);
            icl_bleu_stats one = {0};
            icl_bleu_add_tok(&one, t, h, refs, nr);
            icl_bleu_result br;
            icl_bleu_compute(&one, 1, &br);
            double want = json_number_value(json_array_get(json_object_get(bl, "sentence"), i));
            if (!(fabs(br.score - want) <= 1e-9))
                fail_msg("%s sentence BLEU of pair %zu: %.17g, want %.17g", name, i, br.score, want);
            free(refs);
        }
        json_t *cb = json_object_get(bl, "corpus");
        for (int n = 0; n < 4; n++) {
            assert_int_equal(corpus.correct[n], json_integer_value(json_array_get(json_object_get(cb, "counts"), n)));
            assert_int_equal(corpus.total[n], json_integer_value(json_array_get(json_object_get(cb, "totals"), n)));
        }
        assert_int_equal(corpus.sys_len, json_integer_value(json_object_get(cb, "sys_len")));
        assert_int_equal(corpus.ref_len, json_integer_value(json_object_get(cb, "ref_len")));
        icl_bleu_result br;
        icl_bleu_compute(&corpus, 0, &br);
        assert_near(br.bp, json_number_value(json_object_get(cb, "bp")), 1e-15);
        assert_near(br.score, json_number_value(json_object_get(cb, "score")), 1e-9);
    }
    for (int wo = 0; wo <= 2; wo += 2) {
        json_t *c = json_object_get(json_object_get(d, "chrf"), wo ? "chrf++" : "chrf");
        long corpus[3 * ICL_CHRF_MAX_ORDER] = {0};
        for (size_t i = 0; i < np; i++) {
            json_t *pr = json_array_get(pairs, i);
            const char *h = json_string_value(json_object_get(pr, "hyp"));
            size_t nr;
            const char **refs = refs_of(json_object_get(pr, "refs"), &nr);
            long one[3 * ICL_CHRF_MAX_ORDER] = {0};
            icl_chrf_add(one, wo, h, refs, nr);
            icl_chrf_add(corpus, wo, h, refs, nr);
            double want = json_number_value(json_array_get(json_object_get(c, "sentence"), i));
            double got = icl_chrf_score(one, wo);
            if (!(fabs(got - want) <= 1e-9))
                fail_msg("chrF word order %d of pair %zu: %.17g, want %.17g", wo, i, got, want);
            free(refs);
        }
        assert_near(icl_chrf_score(corpus, wo), json_number_value(json_object_get(c, "corpus")), 1e-9);
    }
    json_decref(d);
}

/* pass@k against the closed form 1 - C(n-c,k)/C(n,k) by exact products. */
static void pass_at_k(void **state)
{
    (void)state;
    assert_near(icl_pass_at_k(10, 0, 1), 0.0, 0);
    assert_near(icl_pass_at_k(10, 10, 10), 1.0, 0);
    assert_near(icl_pass_at_k(10, 3, 1), 0.3, 1e-15);
    /* n = 5, c = 2, k = 2: 1 - C(3,2)/C(5,2) = 1 - 3/10 */
    assert_near(icl_pass_at_k(5, 2, 2), 0.7, 1e-15);
    /* n - c < k: certain */
    assert_near(icl_pass_at_k(5, 4, 2), 1.0, 0);
    /* n = 200, c = 1, k = 100: 1 - C(199,100)/C(200,100) = 1 - 100/200 */
    assert_near(icl_pass_at_k(200, 1, 100), 0.5, 1e-12);
    /* large n stays finite where binomials overflow: n = 2000, c = 7, k = 1000 */
    double p = icl_pass_at_k(2000, 7, 1000), q = 1;
    for (int i = 0; i < 7; i++) /* C(1993,1000)/C(2000,1000) = prod (1000-i)/(2000-i) */
        q *= (1000.0 - i) / (2000.0 - i);
    assert_near(p, 1 - q, 1e-12);
}

static void extraction(void **state)
{
    (void)state;
    char err[256];
    icl_extractor *g = icl_extractor_new("gsm8k", err, sizeof err);
    assert_non_null(g);
    struct { const char *in, *out; } cases[] = {
        {"Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"},
        {"so 1,234.50 total\n#### 1,234.50", "1234.5"},
        {"The answer is 18.0.", "18"},
        {"3 apples and then -4 more", "-4"},
        {"#### $1,000", "1000"},
        {"got 5 then 6, #### and 7", "7"},
        {"-0.0", "0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        icl_buf b = {0};
        assert_int_equal(icl_extract(g, cases[i].in, &b), 1);
        if (strcmp(b.data, cases[i].out))
            fail_msg("gsm8k('%s') = '%s', want '%s'", cases[i].in, b.data, cases[i].out);
        buf_free(&b);
    }
    icl_buf b = {0};
    assert_int_equal(icl_extract(g, "no number", &b), 0);
    assert_int_equal(b.len, 0);
    icl_extractor_free(g);
    icl_extractor *x = icl_extractor_new("answer is \\(?([A-D])", err, sizeof err);
    assert_non_null(x);
    assert_int_equal(icl_extract(x, "I think the answer is (C) because", &b), 1);
    assert_string_equal(b.data, "C");
    buf_clear(&b);
    icl_extractor_free(x);
    x = icl_extractor_new("\\p{Han}+", err, sizeof err); /* no group: the whole match */
    assert_non_null(x);
    assert_int_equal(icl_extract(x, "答案：正面。", &b), 1);
    assert_string_equal(b.data, "答案");
    buf_free(&b);
    icl_extractor_free(x);
    assert_null(icl_extractor_new("(unclosed", err, sizeof err));
    assert_non_null(strstr(err, "offset"));
}

/* Identical CJK, Thai and Korean pairs score 1 with the tokenization the
 * automatic mode picks for them. */
static void identical_non_latin(void **state)
{
    (void)state;
    const char *texts[] = {"正面", "今天天气很好，我们去公园散步吧！", "私は学生です。", "안녕하세요 세계",
                           "สวัสดีครับ", "ฉันชอบกินข้าวผัด"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        icl_script_counts sc = {0};
        icl_script_count(&sc, texts[i]);
        icl_tokenize t = icl_script_choose(&sc);
        assert_int_not_equal(t, ICL_TOK_13A);
        icl_eval_acc a;
        icl_eval_init(&a, ICL_METRIC_ALL);
        a.tok = t;
        json_t *sc1 = json_object();
        icl_eval_add(&a, texts[i], &texts[i], 1, sc1);
        const char *keys[] = {"exact_match", "f1", "rougeL", "bleu", "chrf", "chrf++"};
        for (size_t k = 0; k < 6; k++) {
            double v = json_real_value(json_object_get(sc1, keys[k]));
            if (!(fabs(v - 1.0) <= 1e-12)) /* sentence BLEU: exp of mean logs of 100 */
                fail_msg("'%s' (%s): %s = %.17g", texts[i], icl_tokenize_name(t), keys[k], v);
        }
        json_decref(sc1);
        icl_eval_free(&a);
    }
    icl_script_counts en = {0};
    icl_script_count(&en, "The cat sat on the mat, 正面.");
    assert_int_equal(icl_script_choose(&en), ICL_TOK_13A);
}

/* -M names: the usual synonyms, any case, '-' and '_' ignored; unknown
 * names list the valid ones. */
static void metric_names(void **state)
{
    (void)state;
    static const struct { const char *list; unsigned mask; } ok[] = {
        {"em,f1,rougeL,bleu", ICL_METRIC_DEFAULT},
        {"exact_match", ICL_METRIC_EM}, {"exact-match", ICL_METRIC_EM}, {"EM", ICL_METRIC_EM},
        {"Exact_Match", ICL_METRIC_EM}, {"exactmatch", ICL_METRIC_EM},
        {"F1", ICL_METRIC_F1}, {"f1_score", ICL_METRIC_F1},
        {"rougel", ICL_METRIC_ROUGE_L}, {"rouge-l", ICL_METRIC_ROUGE_L}, {"ROUGE-L", ICL_METRIC_ROUGE_L},
        {"rouge_l", ICL_METRIC_ROUGE_L}, {"rouge", ICL_METRIC_ROUGE_L},
        {"BLEU", ICL_METRIC_BLEU}, {"sacrebleu", ICL_METRIC_BLEU},
        {"Accuracy", ICL_METRIC_ACCURACY}, {"acc", ICL_METRIC_ACCURACY},
        {"chrF", ICL_METRIC_CHRF}, {"chrF++", ICL_METRIC_CHRFPP}, {"chrf_pp", ICL_METRIC_CHRFPP},
        {"ALL", ICL_METRIC_ALL}, {"em, f1", ICL_METRIC_EM | ICL_METRIC_F1},
    };
    long k[ICL_MAX_PASS_K];
    size_t nk;
    unsigned m;
    char err[512];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (icl_metrics_parse(ok[i].list, &m, k, &nk, err, sizeof err) != 0)
            fail_msg("%s: %s", ok[i].list, err);
        assert_int_equal(m, ok[i].mask);
        assert_int_equal(nk, 0);
    }
    assert_int_equal(icl_metrics_parse("Pass@1,pass@10,em", &m, k, &nk, err, sizeof err), 0);
    assert_int_equal(m, ICL_METRIC_PASS | ICL_METRIC_EM);
    assert_int_equal(nk, 2);
    assert_int_equal(k[0], 1);
    assert_int_equal(k[1], 10);
    static const char *bad[] = {"meteor", "rougeLsum", "rouge-2", "", "em,", "bleu4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(icl_metrics_parse(bad[i], &m, k, &nk, err, sizeof err), -1);
        assert_non_null(strstr(err, "unknown metric '"));
        assert_non_null(strstr(err, "(known: em, f1, rougeL, bleu, chrf, chrf++, accuracy, all, pass@K;"));
    }
    assert_int_equal(icl_metrics_parse("pass@0", &m, k, &nk, err, sizeof err), -1);
    assert_string_equal(err, "'pass@0': k must be a number from 1 to 1000000");
}

/* The LCS by dynamic programming, one row at a time: the reference. */
static size_t lcs_dp(const int32_t *a, size_t n, const int32_t *b, size_t m)
{
    size_t *prev = calloc(m + 1, sizeof *prev), *cur = calloc(m + 1, sizeof *cur);
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++)
            cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
        size_t *t = prev;
        prev = cur;
        cur = t;
    }
    size_t l = prev[m];
    free(prev);
    free(cur);
    return l;
}

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* icl_lcs_length (bit-parallel) equals the DP on random sequences: lengths
 * across 64-bit word boundaries, both orders, alphabets from 1 symbol (every
 * symbol frequent: whole masks) to many (masks built per row), and long
 * ones with a mix (break-it review: ROUGE-L of 40k-word texts). */
static void lcs_bit_parallel(void **state)
{
    (void)state;
    uint64_t seed = 7;
    static const size_t lens[] = {0, 1, 2, 63, 64, 65, 127, 128, 129, 200, 300, 1000};
    static const int alpha[] = {1, 2, 3, 5, 26, 500};
    int32_t *a = malloc(5000 * sizeof *a), *b = malloc(5000 * sizeof *b);
    for (size_t x = 0; x < sizeof lens / sizeof *lens; x++)
        for (size_t y = 0; y < sizeof lens / sizeof *lens; y++)
            for (size_t k = 0; k < sizeof alpha / sizeof *alpha; k++) {
                size_t n = lens[x], m = lens[y];
                for (size_t i = 0; i < n; i++)
                    a[i] = (int32_t)(lcg(&seed) % (uint64_t)alpha[k]);
                for (size_t j = 0; j < m; j++)
                    b[j] = (int32_t)(lcg(&seed) % (uint64_t)alpha[k]) + (k == 5 && j % 3 == 0 ? 7 : 0);
                size_t want = lcs_dp(a, n, b, m), got = icl_lcs_length(a, n, b, m);
                if (got != want)
                    fail_msg("n %zu m %zu alphabet %d: %zu, DP %zu", n, m, alpha[k], got, want);
                assert_int_equal(icl_lcs_length(b, m, a, n), want);
            }
    /* 5000 x 4000: frequent symbols (0..3) among rare ones */
    for (size_t i = 0; i < 5000; i++)
        a[i] = (int32_t)(i % 7 ? lcg(&seed) % 4 : 4 + lcg(&seed) % 3000);
    for (size_t j = 0; j < 4000; j++)
        b[j] = (int32_t)(j % 5 ? lcg(&seed) % 4 : 4 + lcg(&seed) % 3000);
    assert_int_equal(icl_lcs_length(a, 5000, b, 4000), lcs_dp(a, 5000, b, 4000));
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hand_computed),
        cmocka_unit_test(lcs_bit_parallel),
        cmocka_unit_test(label_first_line),
        cmocka_unit_test(tok13a_cases),
        cmocka_unit_test(reference_implementations),
        cmocka_unit_test(sacrebleu_fixture),
        cmocka_unit_test(sacrebleu_tokenizers_and_chrf),
        cmocka_unit_test(pass_at_k),
        cmocka_unit_test(metric_names),
        cmocka_unit_test(extraction),
        cmocka_unit_test(identical_non_latin),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
