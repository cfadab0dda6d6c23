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
 *    score and on for sentence_bleu); with tokenize 13a, intl, zh, char or
 *    none as sacreBLEU's tokenizers of those names.
 *  - chrF and chrF++: sacreBLEU 2.x CHRF (char order 6, word order 0 or 2,
 *    beta 2, whitespace excluded, no eps smoothing).
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
#include <stdint.h>

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
/* An extracted answer as exact match compares it under --extract: Python's
 * str.lower, then split on white space and joined with single spaces; no
 * punctuation or article is removed (a sign, a decimal point and "a" of a
 * multiple choice are the answer).  Appends to out. */
void icl_answer_normalize(const char *s, icl_buf *out);

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

/* The length of the longest common subsequence of a[0..n) and b[0..m)
 * (symbol ids >= 0, e.g. interned tokens): exact, by the bit-parallel
 * algorithm of Allison and Dix (1986) in Hyyro's form (Hyyro 2004,
 * "Bit-parallel LCS-length computation revisited": per symbol of the longer
 * sequence, V = (V + (V & M)) | (V & ~M) over a bit vector of the shorter,
 * M that symbol's match mask; L = the zero bits of V).  Time
 * O(max(n, m) * min(n, m) / 64) plus the match masks (of symbols frequent in
 * the shorter sequence, at most 64 MB; rarer ones are built per row);
 * memory O(n + m) besides those (the DP's O(n m) table is never made). */
size_t icl_lcs_length(const int32_t *a, size_t n, const int32_t *b, size_t m);

/* sacreBLEU's Tokenizer13a applied after str.rstrip(), as
 * BLEU._preprocess_segment does: removes "<skipped>", "-\n", turns "\n"
 * into " ", unescapes &quot; &amp; &lt; &gt; (in that order), pads with
 * spaces, then the four regex rules of mteval-v13a (symbols
 * {|}~ [\]^_` space!"#$%& ()*+ :;<=>?@ / are split off; '.' and ',' split
 * unless between digits on the relevant side; '-' after a digit split),
 * and joins the whitespace-separated tokens with single spaces.
 * Appends to out. */
void icl_tok13a(const char *s, icl_buf *out);

/* The tokenizations of sacreBLEU (BLEU's tokenize=): 13a (mteval-v13a,
 * the default), intl (mteval-v14 international), zh (CJK characters one by
 * one, then 13a's regexes), char (every character), none (split on white
 * space).  For F1 and ROUGE-L, ICL_TOK_13A means each metric's own
 * reference tokenization (SQuAD, rouge-score) and any other value that
 * tokenization (see icl_token_f1_tok). */
typedef enum { ICL_TOK_13A = 0, ICL_TOK_INTL, ICL_TOK_ZH, ICL_TOK_CHAR, ICL_TOK_NONE } icl_tokenize;

/* Name ("13a", "intl", "zh", "char", "none") to value: 0, or -1 if unknown. */
int icl_tokenize_parse(const char *name, icl_tokenize *t);
/* Value to name (static string). */
const char *icl_tokenize_name(icl_tokenize t);

/* 1 if sacreBLEU's TokenizerZh._is_chinese_char(chr(c)): its
 * _UCODE_RANGES compared as Python strings, which makes the entries written
 * '\u20000'-'\u2a6d6' and '\u2f800'-'\u2fa1d' cover U+2001..U+2A6D and
 * U+2F81..U+2FA1 (not CJK Extension B). */
int icl_zh_char(int32_t c);

/* The tokens BLEU counts for one segment under t: sacreBLEU's
 * tokenizer(s.rstrip()) (BLEU._preprocess_segment, no lower-casing) split
 * on white space (extract_all_word_ngrams' str.split()), appended to out
 * joined by single spaces.
 *   13a:  icl_tok13a.
 *   intl: regex.sub (\P{N})(\p{P}) -> "\1 \2 ", then (\p{P})(\P{N}) ->
 *         " \1 \2", then (\p{S}) -> " \1 " (general categories from
 *         utf8proc), on the text without padding.
 *   zh:   str.strip(), a space either side of every icl_zh_char, then
 *         13a's four regex rules (TokenizerRegexp) without 13a's
 *         <skipped>/&quot; handling and padding.
 *   char: every character that is not white space is a token.
 *   none: the white-space separated words. */
void icl_bleu_tokenize(icl_tokenize t, const char *s, icl_buf *out);

/* Letter counts for the automatic tokenization (add with icl_script_count
 * over the references): han (CJK ideographs and radicals), kana
 * (hiragana, katakana, half-width katakana), hangul (jamo, syllables,
 * half-width), thai (Thai, Lao, Myanmar, Khmer: scripts written without
 * spaces between words), other (any other letter, categories L*). */
typedef struct {
    long han, kana, hangul, thai, other;
} icl_script_counts;
void icl_script_count(icl_script_counts *sc, const char *s);

/* The automatic choice: 13a unless more than half of the letters are
 * han + kana + hangul + thai; then char if kana + thai are at least a
 * tenth of those (Japanese, Thai: words not separated by spaces and not
 * split by zh), else zh (Chinese, Korean). */
icl_tokenize icl_script_choose(const icl_script_counts *sc);

/* Token F1 under t: ICL_TOK_13A is icl_token_f1 (SQuAD).  Otherwise both
 * strings are normalised as SQuAD does (icl_squad_normalize), tokenized by
 * icl_bleu_tokenize(t), tokens made only of punctuation (categories P*,
 * e.g. "\u3002") dropped, then SQuAD's multiset F1 with its empty rule.
 * With zh or char, Chinese is scored by character as CMRC 2018's
 * evaluation does. */
double icl_token_f1_tok(const char *pred, const char *ref, icl_tokenize t);

/* ROUGE-L under t: ICL_TOK_13A is icl_rouge_l (rouge-score).  Otherwise the
 * tokens are icl_bleu_tokenize(t) of Python's lower() of each string, less
 * the tokens made only of punctuation; LCS-based P, R, F as icl_rouge_l. */
double icl_rouge_l_tok(const char *pred, const char *ref, icl_tokenize t, double *p, double *r);

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
/* The same with the tokens of icl_bleu_tokenize(t). */
void icl_bleu_add_tok(icl_bleu_stats *st, icl_tokenize t, const char *hyp, const char *const *refs,
                      size_t nrefs);

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

/* chrF (Popovic 2015) and chrF++ (Popovic 2017) as sacreBLEU's CHRF. */
#define ICL_CHRF_CHAR_ORDER 6
#define ICL_CHRF_BETA 2
#define ICL_CHRF_MAX_ORDER 8 /* char order 6 + word order 2 */

/* Add one segment's statistics to stats[3 * (6 + word_order)]: for each
 * order (character n-grams 1..6 over the text with white space removed,
 * then word n-grams 1..word_order) the triple [hypothesis n-grams (0 when
 * the reference has none of that order), reference n-grams, matches (sum
 * of min counts)], of the reference with the best sentence chrF (the first
 * on ties).  Words are str.split() words where a word of 2+ characters
 * loses a last, else a first, ASCII punctuation character as a word of its
 * own (CHRF._remove_punctuation).  word_order is 0 (chrF) or 2 (chrF++). */
void icl_chrf_add(long *stats, int word_order, const char *hyp, const char *const *refs, size_t nrefs);

/* CHRF._compute_f_score, eps_smoothing off: the mean precision and recall
 * over the orders where both hypothesis and reference have n-grams, then
 * F_beta = (1 + beta^2) P R / (beta^2 P + R) * 100 (0 if P + R = 0).
 * The corpus score is this of the summed statistics. */
double icl_chrf_score(const long *stats, int word_order);

/* Answer extraction before scoring (--extract).  spec is "gsm8k" or a
 * PCRE2 regular expression (UTF mode, Unicode properties).  A regex gives
 * its first match's first capture group that took part in the match (so
 * "a: (\\d)|b: (\\d)" works), or the whole match if none did.  gsm8k: the first number after the last "####", else the last
 * number of the text; a number is -?[0-9][0-9,]*(\.[0-9]+)? (a "$" before
 * it is ignored); commas are removed, and zeros ending a fraction and then
 * a bare "." are dropped ("1,234.50" -> "1234.5", "18.0" -> "18"). */
typedef struct icl_extractor icl_extractor;

/* NULL with the PCRE2 error and its offset in err on a bad regex. */
icl_extractor *icl_extractor_new(const char *spec, char *err, size_t errsz);
/* 1 and the answer appended to out, or 0 (out unchanged) when s has none. */
int icl_extract(const icl_extractor *x, const char *s, icl_buf *out);
void icl_extractor_free(icl_extractor *x);

/* The unbiased pass@k estimator of Chen et al. 2021 (Codex, eq. 1) for n
 * samples of which c pass: 1 - C(n-c, k)/C(n, k), computed as
 * 1 - prod_{i=n-c+1}^{n} (1 - k/i) (HumanEval's estimate_pass_at_k);
 * 1 when n - c < k.  Needs 1 <= k <= n and 0 <= c <= n. */
double icl_pass_at_k(long n, long c, long k);

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
    ICL_METRIC_CHRF = 32,    /* "chrf" */
    ICL_METRIC_CHRFPP = 64,  /* "chrf++" (alias "chrfpp") */
    ICL_METRIC_PASS = 128,   /* "pass@K" (see icl_metrics_parse) */
    ICL_METRIC_DEFAULT = 1 | 2 | 4 | 8,
    ICL_METRIC_ALL = 127,    /* "all": every text metric (not pass@k) */
};

#define ICL_MAX_PASS_K 16

/* Parse a comma-separated metric list ("em,f1,bleu", "all", "pass@1,pass@10")
 * into a mask; each pass@K (1 <= K <= 1000000, at most ICL_MAX_PASS_K of
 * them, repeated ones once) sets ICL_METRIC_PASS and is appended to
 * pass_k[*n_pass_k] in the order given.  Names are compared without case,
 * '-', '_' and spaces, and the usual synonyms are accepted: em, exact_match
 * (exact-match, EM, exact); f1 (f1_score); rougeL (rouge-l, rouge_l, rouge);
 * bleu (sacrebleu); accuracy (acc); chrf; chrf++ (chrfpp); all; pass@K
 * (Pass@K).  Returns 0, or -1 with "unknown metric 'x' (known: ...)" in
 * err. */
int icl_metrics_parse(const char *list, unsigned *mask, long *pass_k, size_t *n_pass_k, char *err,
                      size_t errsz);

/* Running sums over records.  Per-record scores are the maximum over the
 * record's references for EM, F1 and ROUGE-L (as SQuAD's
 * metric_max_over_ground_truths and rouge-score's score_multi, which picks
 * the reference with the best F); BLEU uses all references of a record
 * (sacreBLEU's multi-reference counts); accuracy counts a record correct
 * when the prediction's label equals any reference's label, and the
 * confusion matrix uses the first reference as the gold label. */
typedef struct {
    unsigned mask;
    icl_tokenize tok;      /* F1, ROUGE-L and BLEU tokenization (0: 13a) */
    int tok_auto;          /* tok was chosen by icl_script_choose (for the summary) */
    int answers;           /* pred and refs are extracted answers (icl-eval --extract): exact
                            * match and accuracy compare them lower-cased with white space
                            * collapsed, punctuation and articles kept (icl_answer_normalize:
                            * "-3" is not "3", nor "1.5" "15") */
    long n;                /* records added */
    double em, f1, rouge_l;/* sums of per-record scores */
    long correct;          /* accuracy: records whose label matched */
    icl_bleu_stats bleu;
    long chrf[3 * ICL_CHRF_CHAR_ORDER];   /* summed chrF statistics */
    long chrfpp[3 * ICL_CHRF_MAX_ORDER];  /* summed chrF++ statistics */
    json_t *confusion;     /* {gold: {predicted: count}}, owned */
} icl_eval_acc;

/* Empty totals for the metrics in mask (ICL_METRIC_* bits), tokenization
 * 13a (set a->tok, a->tok_auto after this for another); free what a owns. */
void icl_eval_init(icl_eval_acc *a, unsigned mask);
void icl_eval_free(icl_eval_acc *a);

/* Score one record: pred against refs[0..nrefs) (nrefs >= 1).  When scores
 * is a JSON object, the record's scores are set in it: "exact_match",
 * "f1", "rougeL", "bleu" (sentence BLEU as sacreBLEU's sentence_bleu, over
 * 100), "chrf", "chrf++" (sentence_chrf / 100), "correct" (true/false) and
 * "label" (the normalised predicted label), for the metrics in the mask.
 * F1, ROUGE-L and BLEU use a->tok. */
void icl_eval_add(icl_eval_acc *a, const char *pred, const char *const *refs, size_t nrefs,
                  json_t *scores);

/* The summary as a new JSON object: "records", "tokenize" (the name of
 * a->tok, with "tokenize_auto": true when it was chosen automatically;
 * only when F1, ROUGE-L or BLEU is in the mask), then per metric in the
 * mask "exact_match", "f1", "rougeL" (means over records), "bleu" (corpus
 * BLEU / 100) with "bleu_detail" {score (0..100), counts, totals,
 * precisions, bp, sys_len, ref_len}, "chrf", "chrf++" (corpus scores / 100)
 * with "chrf_detail", "chrf++_detail" {score (0..100)}, "accuracy",
 * "correct", "confusion".
 * Means are null when no record was added.  Caller json_decref's it. */
json_t *icl_eval_summary(const icl_eval_acc *a);

#endif
