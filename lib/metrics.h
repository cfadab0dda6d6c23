/* metrics.h - text metrics for predictions against references, each exactly
 * as its reference implementation computes it.  Inputs are NUL-terminated
 * UTF-8 strings (as lib/record.h delivers them: valid UTF-8, no NUL).
 * Scores are in [0, 1] (BLEU functions also give sacreBLEU's 0..100 score).
 *
 *  - exact match and token F1: the official SQuAD v1.1 evaluation script
 *    (evaluate-v1.1.py, normalize_answer / exact_match_score / f1_score),
 *    with SQuAD v2.0's rule for empty answers (empty vs empty = 1).
 *  - ROUGE-L F: Google's rouge-score package, RougeScorer(["rougeL"]) with
 *    use_stemmer=False (tokenize.tokenize and _score_lcs).
 *  - BLEU: sacreBLEU 2.x defaults (tokenize "13a", max order 4,
 *    smooth_method "exp", case-sensitive, effective_order off for the corpus
 *    score and on for sentence_bleu).
 *
 * Python semantics reproduced where they matter: str.lower() (full Unicode
 * lower-casing, including U+0130 -> "i\u0307" and the Final_Sigma rule),
 * str.split() / str.isspace() whitespace (Unicode White_Space-like set of
 * Python: \t\n\v\f\r, U+001C..U+001F, space, U+0085, U+00A0, U+1680,
 * U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000), and the re
 * module's Unicode \w and \b.  Case mappings and categories come from
 * utf8proc (its Unicode version may differ from Python's by a release).
 */
#ifndef ICL_METRICS_H
#define ICL_METRICS_H

#include <stddef.h>

#include <jansson.h>

#include "util.h"

/* Python's str.lower() of s, appended to out (UTF-8). */
void icl_py_lower(const char *s, icl_buf *out);

/* Python's str.isspace() for one code point. */
int icl_py_isspace(int cp);

/* SQuAD's normalize_answer(s), appended to out:
 *   lower (str.lower) -> delete every character of string.punctuation
 *   (the 32 ASCII characters !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~; no other
 *   Unicode punctuation) -> replace the whole words a, an, the (regex
 *   \b(a|an|the)\b with Python's Unicode \w) by a space -> split on
 *   whitespace and join with single spaces. */
void icl_squad_normalize(const char *s, icl_buf *out);

/* 1 if the normalised strings are equal, else 0. */
double icl_exact_match(const char *pred, const char *ref);

/* SQuAD token F1 over the normalised strings split on spaces: common =
 * multiset intersection size; P = common/|pred|, R = common/|ref|,
 * F1 = 2PR/(P+R); 0 when common == 0.  When either side has no tokens:
 * 1 if both have none, else 0 (SQuAD v2.0's rule). */
double icl_token_f1(const char *pred, const char *ref);

/* rouge-score's tokenizer: Python lower(), then the maximal runs of
 * [a-z0-9] (everything else, including non-ASCII letters, separates and
 * is dropped).  Tokens are appended to out separated by single spaces;
 * returns the number of tokens. */
size_t icl_rouge_tokenize(const char *s, icl_buf *out);

/* ROUGE-L of pred against ref: L = length of the longest common
 * subsequence of the token lists; P = L/|pred|, R = L/|ref|,
 * F = 2PR/(P+R) (beta 1), 0 if P+R == 0.  Either side without tokens gives
 * P = R = F = 0 (rouge-score's rule, also for empty vs empty).  Returns F;
 * p and r may be NULL. */
double icl_rouge_l(const char *pred, const char *ref, double *p, double *r);

/* sacreBLEU's Tokenizer13a applied after str.rstrip(), as
 * BLEU._preprocess_segment does: removes "<skipped>", "-\n", turns "\n"
 * into " ", unescapes &quot; &amp; &lt; &gt; (in that order), pads with
 * spaces, then the four regex rules of mteval-v13a (symbols
 * {|}~ [\]^_` space!"#$%& ()*+ :;<=>?@ / are split off; '.' and ',' split
 * unless between digits on the relevant side; '-' after a digit split),
 * and joins the whitespace-separated tokens with single spaces.
 * Appends to out. */
void icl_tok13a(const char *s, icl_buf *out);

#define ICL_BLEU_ORDER 4

/* Sufficient statistics of corpus BLEU, summed over segments. */
typedef struct {
    long correct[ICL_BLEU_ORDER]; /* clipped n-gram matches, n = 1..4 */
    long total[ICL_BLEU_ORDER];   /* hypothesis n-grams */
    long sys_len, ref_len;        /* hypothesis tokens; closest reference lengths */
} icl_bleu_stats;

typedef struct {
    double score;                        /* 0..100, as sacreBLEU prints it */
    double precisions[ICL_BLEU_ORDER];   /* 0..100 (smoothed where 0) */
    double bp;                           /* brevity penalty */
} icl_bleu_result;

/* Add one segment: hypothesis hyp against refs[0..nrefs) (nrefs >= 1).
 * Both are tokenised with icl_tok13a.  n-gram matches are clipped by the
 * maximum count over the references; ref_len adds the reference length
 * closest to the hypothesis length (the shorter one on ties). */
void icl_bleu_add(icl_bleu_stats *st, const char *hyp, const char *const *refs, size_t nrefs);

/* sacreBLEU's BLEU.compute_bleu with smooth_method "exp":
 *   bp = 1 if sys_len >= ref_len, exp(1 - ref_len/sys_len) if 0 < sys_len,
 *        else 0;
 *   score = 0 if no n-gram matched at all;
 *   for n = 1..4, stopping at the first n with total = 0:
 *     p_n = 100 correct/total, or, when correct = 0, 100/(2^k total)
 *     where k counts the zero-match orders so far;
 *   score = bp * exp(sum_{n<=N} log p_n / N), log 0 taken as -9999999999,
 *   with N = 4 (corpus) or, if effective_order, the last n with total > 0
 *   (sentence BLEU). */
void icl_bleu_compute(const icl_bleu_stats *st, int effective_order, icl_bleu_result *out);

/* First line of a label prediction: skip leading whitespace (str.isspace),
 * take the text up to the next '\n' (or the end), then icl_squad_normalize.
 * Appends to out. */
void icl_label_normalize(const char *pred, icl_buf *out);

/* Confusion matrix as a JSON object {gold: {predicted: count}} of
 * normalised labels (icl_squad_normalize of the label, icl_label_normalize
 * of the prediction): add one observation.  matrix is a json object owned
 * by the caller. */
void icl_confusion_add(json_t *matrix, const char *gold_norm, const char *pred_norm);

/* ---- Aggregation over records (what icl-eval prints) ---- */

enum {
    ICL_METRIC_EM = 1,       /* "exact_match" (alias "em") */
    ICL_METRIC_F1 = 2,       /* "f1" */
    ICL_METRIC_ROUGE_L = 4,  /* "rougeL" (aliases "rouge_l", "rouge-l", "rouge") */
    ICL_METRIC_BLEU = 8,     /* "bleu" */
    ICL_METRIC_ACCURACY = 16,/* "accuracy" (alias "acc") */
    ICL_METRIC_DEFAULT = 1 | 2 | 4 | 8,
    ICL_METRIC_ALL = 31,     /* "all" */
};

/* Parse a comma-separated metric list ("em,f1,bleu", "all") into a mask.
 * Returns 0, or -1 with "unknown metric 'x'" in err. */
int icl_metrics_parse(const char *list, unsigned *mask, char *err, size_t errsz);

/* Running sums over records.  Per-record scores are the maximum over the
 * record's references for EM, F1 and ROUGE-L (as SQuAD's
 * metric_max_over_ground_truths and rouge-score's score_multi, which picks
 * the reference with the best F); BLEU uses all references of a record
 * (sacreBLEU's multi-reference counts); accuracy counts a record correct
 * when the prediction's label equals any reference's label, and the
 * confusion matrix uses the first reference as the gold label. */
typedef struct {
    unsigned mask;
    long n;                /* records added */
    double em, f1, rouge_l;/* sums of per-record scores */
    long correct;          /* accuracy: records whose label matched */
    icl_bleu_stats bleu;
    json_t *confusion;     /* {gold: {predicted: count}}, owned */
} icl_eval_acc;

/* Empty totals for the metrics in mask (ICL_METRIC_* bits); free what a owns. */
void icl_eval_init(icl_eval_acc *a, unsigned mask);
void icl_eval_free(icl_eval_acc *a);

/* Score one record: pred against refs[0..nrefs) (nrefs >= 1).  When scores
 * is a JSON object, the record's scores are set in it: "exact_match",
 * "f1", "rougeL", "bleu" (sentence BLEU as sacreBLEU's sentence_bleu, over
 * 100), "correct" (true/false) and "label" (the normalised predicted label),
 * for the metrics in the mask. */
void icl_eval_add(icl_eval_acc *a, const char *pred, const char *const *refs, size_t nrefs,
                  json_t *scores);

/* The summary as a new JSON object: "records", then per metric in the
 * mask "exact_match", "f1", "rougeL" (means over records), "bleu" (corpus
 * BLEU / 100) with "bleu_detail" {score (0..100), counts, totals,
 * precisions, bp, sys_len, ref_len}, "accuracy", "correct", "confusion".
 * Means are null when no record was added.  Caller json_decref's it. */
json_t *icl_eval_summary(const icl_eval_acc *a);

#endif
