/* icl-eval - score predictions against references (JSON Lines records), or
 * (with -m) the loss, perplexity and token accuracy of a model on token
 * lines.  See icl-eval(1).  All computing is in lib/metrics.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <math.h>
#include <unistd.h>

#include <utf8proc.h>

#include "bf16.h"
#include "lmeval.h"
#include "gguf_model.h"
#include "lora.h"
#include "metrics.h"
#include "fileio.h"
#include "model.h"
#include "tokenizer.h"
#include "tokgguf.h"
#include "toklines.h"
#include "record.h"
#include "sandbox.h"
#include "sniff.h"
#include "cli.h"
#include "common/adapt.h"
#include "util.h"

/* Reals in the summary and per-example lines: 15 significant digits
 * (0.8 prints as 0.8, not 0.80000000000000004). */
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

static void usage(FILE *f)
{
    fprintf(f,
"Usage: icl-eval [OPTION]... [FILE]...\n"
"       icl-eval -m MODEL_DIR [OPTION]... [FILE]...\n"
"Score predictions against references in JSON Lines records (FILEs, or\n"
"standard input) and print one JSON summary line.\n"
"\n"
"  -p, --pred KEY          key of the prediction (default \"completion\")\n"
"  -r, --ref KEY           key of the reference: a string, or an array of\n"
"                          strings for several references (default \"response\");\n"
"                          in \"chat\": true records (icl-fmt --chat-template)\n"
"                          and records whose prompt is an array (turns), the\n"
"                          array holds one answer per turn and the\n"
"                          reference is the last (the turn icl-gen answers);\n"
"                          in chat records its trailing end-of-turn text\n"
"                          (<|im_end|>, </s>...) dropped when the prediction\n"
"                          lacks it\n"
"  -M, --metrics LIST      comma-separated: em, f1, rougeL, bleu, chrf, chrf++,\n"
"                          accuracy, all (all of those), pass@K (code: runs\n"
"                          each completion with its test; pass@1,pass@10)\n"
"                          (default em,f1,rougeL,bleu); case, '-' and '_' do\n"
"                          not matter, and synonyms are accepted: exact_match\n"
"                          (exact-match) for em, rouge-l or rouge for rougeL,\n"
"                          f1_score, sacrebleu, chrfpp, acc\n"
"      --tokenize T        tokenization of f1, rougeL and bleu: auto (default),\n"
"                          13a, intl, zh, char, none (sacreBLEU's names); 13a\n"
"                          keeps SQuAD's f1 and rouge-score's rougeL; auto is 13a\n"
"                          unless the references are mostly CJK or Thai (then zh\n"
"                          or char); the summary's \"tokenize\" names the choice\n"
"      --extract RE        score the answers: the first capture group of the\n"
"                          PCRE2 regex RE in predictions and references, or RE =\n"
"                          gsm8k: the number after ####, else the last number;\n"
"                          em and accuracy then keep signs and points (\"-3\"\n"
"                          is not \"3\"), ignoring only case and spacing\n"
"  -e, --per-record FILE   also write one JSON line of scores per record to FILE\n"
"                          (\"file\", \"line\", the record's \"id\" if any, scores;\n"
"                          --per-example is the same option)\n"
"      --timeout S         pass@k: wall-clock (and CPU) seconds per sample\n"
"                          (default 10)\n"
"      --skip-bad          skip bad records (unreadable, key missing or not a\n"
"                          string) and count them, instead of stopping\n"
"      --adapter DIR[:SCALE] with -m: apply the PEFT LoRA adapter folder DIR,\n"
"                          its output times SCALE (default 1); repeatable (the\n"
"                          sum); merged into a float32 model, unmerged on a\n"
"                          quantized GGUF\n"
"      --dequantize        model mode, a GGUF model: dequantize every matrix\n"
"                          to float32 (default: keep the quantized blocks,\n"
"                          dequantized tile by tile in the products)\n"
"      --decode            model mode: score as icl-gen decodes: each line up\n"
"                          to its first target token in one prefill, every\n"
"                          later token by a decode step (on a quantized GGUF:\n"
"                          integer dot products, activations in int8)\n"
"  -m, --model DIR         model mode: masked loss, perplexity and token accuracy\n"
"                          of a model on token lines (target segments only;\n"
"                          per token over the whole input)\n"
"      --threads N         threads for the model mode, samples run at once for\n"
"                          pass@k (default: ICL_NUM_THREADS, else all cores;\n"
"                          in the model mode, less those other programs keep\n"
"                          busy, measured between lines, a notice naming\n"
"                          each change; the results do not depend on it)\n"
"      --no-adaptive-threads  model mode without --threads: all cores\n"
"                          whatever the load\n"
"      --dtype TYPE        model mode: f32 or float32 (default), bf16 or\n"
"                          bfloat16 (the matrix products in bfloat16 with\n"
"                          float32 sums, as icl-gen)\n"
"      --progress / --no-progress   model mode: force the progress line on\n"
"                          standard error (count, rate, ETA) on or off\n"
"                          (default: on when it is a terminal)\n"
"  -q, --quiet             no progress line, no notice of the thread count or\n"
"                          of how the model is loaded (errors and warnings\n"
"                          still)\n"
"  -h, --help              show this help and exit\n"
"  -V, --version           show the version and exit\n"
"\n"
"Metrics (all in [0, 1]; exact definitions in icl-eval(1)):\n"
"  exact_match, f1  SQuAD v1.1: lower-case, drop ASCII punctuation and the\n"
"                   articles a/an/the, collapse white space; empty vs empty = 1\n"
"                   (exact_match under --extract: case and spacing only)\n"
"  rougeL           rouge-score's ROUGE-L F-measure, no stemming\n"
"  bleu             sacreBLEU's corpus BLEU (13a, exp smoothing) divided by 100;\n"
"                   bleu_detail has sacreBLEU's score, counts, totals, bp, lengths\n"
"  accuracy         first line of the prediction vs the label, both normalised\n"
"                   as for exact_match; with a confusion matrix {gold: {pred: n}}\n""  chrf, chrf++     sacreBLEU's corpus chrF (char order 6) and chrF++ (word\n"
"                   order 2), beta 2, divided by 100\n"
"  pass@K           HumanEval records (task_id, prompt, test, entry_point): runs\n"
"                   prompt + completion + test + check(entry_point) with python3\n"
"                   in a bubblewrap sandbox (no network, read-only files, a\n"
"                   private /tmp, limits); unbiased estimator of Chen et al. 2021\n"
"\n"
"Example:\n"
"  icl-gen -m run/ test.jsonl | icl-eval --metrics em,f1\n"
"  {\"records\":200,\"tokenize\":\"13a\",\"tokenize_auto\":true,\"exact_match\":0.41,\"f1\":0.5872,\"skipped\":0}\n"
"\n"
"Exit status: 0 ok, 1 bad data, 2 bad usage.\n");
}

typedef struct {
    const char *pred_key, *ref_key;
    unsigned mask;
    long pass_k[ICL_MAX_PASS_K];
    size_t n_pass_k;
    int skip_bad;
    FILE *per;
    const char *per_path;
    icl_extractor *extract;
    /* references ending with a chat template's end-of-turn text the
     * prediction lacks: stripped (records with "chat": true), or counted
     * for one warning (others); eot_example is the first such text */
    long eot_stripped, eot_kept, eot_kept_refs, text_records;
    char eot_example[48];
} opts;

/* One scored record, kept until every record is read (the automatic
 * tokenization looks at all references first; pass@k runs them together). */
typedef struct {
    char *pred;
    char **refs;
    size_t nrefs;
    char *task;    /* pass@k: the task id */
    char *program; /* pass@k: prompt + completion + test + check(entry_point) */
    json_t *scores;/* the --per-record line, or NULL */
} item;

typedef struct {
    item *v;
    size_t n, cap;
} items;

/* Model mode: loss, perplexity and token accuracy of token lines (lmeval.h). */
static int eval_model(const char *model_arg, const char *const *adapters, int n_adapters, int nfiles, char **files,
                      int progress, int bf16, int dequantize, int decode, int adaptive, int quiet)
{
    char err[1024], *base = NULL;
    /* bf16 weights are made from float32 ones: a GGUF is dequantized then */
    icl_model *m = icl_lora_load(model_arg, adapters, n_adapters, dequantize || bf16 ? ICL_LOAD_DEQUANTIZE : 0, &base,
                                 err, sizeof err);
    if (!m)
        icl_die("%s", err);
    if (!quiet && (n_adapters || icl_is_gguf_file(base))) {
        char note[768];
        icl_lora_describe(m, base, n_adapters + (strcmp(base, model_arg) != 0),
                          ICL_DESCRIBE_BATCHED | (decode ? ICL_DESCRIBE_DECODE : 0) | (bf16 ? ICL_DESCRIBE_BF16 : 0),
                          note, sizeof note);
        fprintf(stderr, "%s: %s\n", icl_progname, note);
    }
    if (bf16) {
        if (!icl_bf16_native())
            icl_warn("--dtype bf16: this CPU lacks AVX512-BF16; using the portable (slower) bf16 kernels");
        if (icl_model_set_bf16(m, err, sizeof err))
            icl_die("%s", err);
    }
    const char *model_dir = base;
    icl_tokenizer *tok = NULL;
    size_t pl = strlen(model_dir) + 32;
    char *tokpath = icl_xmalloc(pl);
    char *joined = icl_path_join(model_dir, "tokenizer.json");
    snprintf(tokpath, pl, "%s", joined);
    free(joined);
    if (icl_is_gguf_file(model_dir)) {
        /* a GGUF's own tokenizer (tokenizer.ggml.*), when it has one */
        int absent;
        snprintf(tokpath, pl, "%s", model_dir);
        if (!(tok = icl_tok_load_gguf_opt(model_dir, &absent, err, sizeof err)) && !absent && !quiet)
            icl_warn("%s: cannot check the tokenizer of the token lines", err);
    } else if ((access(tokpath, F_OK) == 0 || (errno != ENOENT && errno != ENOTDIR)) && !(tok = icl_tok_load(model_dir, err, sizeof err))) { /* unreadable is not missing */
        icl_die("%s%s%s", strncmp(err, tokpath, strlen(tokpath)) ? tokpath : "", strncmp(err, tokpath, strlen(tokpath)) ? ": " : "", err); /* a read error names it already */
    }
    icl_lm_eval e;
    icl_lm_eval_init(&e);
    icl_progress prog;
    icl_progress_start(&prog, progress, icl_count_lines(files, nfiles), "lines");
    icl_adapt adapt; /* the thread count follows the load unless fixed */
    icl_adapt_start(&adapt, adaptive, 0, adaptive > 1);
    adapt.line_open = &prog.drawn;
    int have_hdr = 0, hdr_vocab = 0;
    uint64_t hdr_fp = 0;
    for (int i = 0; i < (nfiles ? nfiles : 1); i++) {
        const char *path = nfiles ? files[i] : "-", *name = icl_display_name(path);
        icl_toklines_reader r;
        icl_toklines_open(&r, path, m->cfg.vocab_size);
        r.check_tok = tok; /* the header before the ids (their bound is the model's) */
        r.check_name = tokpath;
        int st, checked = 0;
        while ((st = icl_toklines_next(&r, err, sizeof err)) != 0) {
            if (st < 0)
                icl_die("%s", err);
            if (r.hdr.present && !checked) {
                checked = 1;
                if (tok && icl_toklines_check(&r.hdr, tok, err, sizeof err) != 0)
                    icl_die("%s:%ld: %s (tokenizer %s)", name, r.header_line, err, tokpath);
                if (r.hdr.vocab_size > m->cfg.vocab_size)
                    icl_die("%s:%ld: the tokens' vocab_size %d is larger than the model's %d", name, r.header_line,
                        r.hdr.vocab_size, m->cfg.vocab_size);
                /* without a tokenizer to check against, files must at least agree */
                if (have_hdr && (r.hdr.fingerprint != hdr_fp || r.hdr.vocab_size != hdr_vocab))
                    icl_die("%s:%ld: tokens made by another tokenizer than the earlier files' (fingerprint "
                        "xxh3:%016llx, vocab_size %d; before: xxh3:%016llx, %d)",
                        name, r.header_line, (unsigned long long)r.hdr.fingerprint, r.hdr.vocab_size,
                        (unsigned long long)hdr_fp, hdr_vocab);
                have_hdr = 1, hdr_fp = r.hdr.fingerprint, hdr_vocab = r.hdr.vocab_size;
            }
            if ((decode ? icl_lm_eval_line_decode : icl_lm_eval_line)(m, &e, r.ids, r.target, r.n, err, sizeof err) != 0)
                icl_die("%s:%ld: %s", name, r.lines.lineno, err);
            if (e.tokens > 0 && !isfinite(icl_lm_eval_loss(&e))) /* NaN or Inf logits: no score is meaningful */
                icl_die("%s:%ld: the loss is not finite (NaN or Inf): so are the model's logits (weights or an "
                        "adapter's scale too large?)", name, r.lines.lineno);
            icl_progress_add(&prog, 1);
            char where[48];
            snprintf(where, sizeof where, "line %ld", prog.done + 1);
            icl_adapt_poll(&adapt, where);
        }
        if (!checked && r.examples > 0 && tok && !quiet)
            icl_warn("%s: no #icl-tokens header (not from icl-tok encode?): its ids are checked against the "
                     "vocabulary size %d only, not against the model's tokenizer", name, m->cfg.vocab_size);
        if (r.examples == 0 && !quiet) /* a pipeline whose earlier step wrote nothing: the null scores say why */
            icl_warn("%s: empty input, no records", name);
        icl_toklines_close(&r);
    }
    icl_progress_end(&prog);
    json_t *sum = json_object();
    json_object_set_new(sum, "records", json_integer(e.records));
    json_object_set_new(sum, "tokens", json_integer(e.tokens));
#define REAL_OR_NULL(x) (isfinite(x) ? json_real(x) : json_null())
    json_object_set_new(sum, "loss", REAL_OR_NULL(icl_lm_eval_loss(&e)));
    json_object_set_new(sum, "perplexity", REAL_OR_NULL(icl_lm_eval_perplexity(&e)));
    json_object_set_new(sum, "token_accuracy", REAL_OR_NULL(icl_lm_eval_accuracy(&e)));
    if (json_dumpf(sum, stdout, DUMP_FLAGS) != 0)
        icl_die("write error:");
    putchar('\n');
    json_decref(sum);
    icl_lm_eval_free(&e);
    if (tok)
        icl_tok_free(tok);
    free(tokpath);
    free(base);
    icl_model_free(m);
    return ICL_EXIT_OK;
}

static long skipped_warned;

/* Report a bad record: die, or warn (the first 10) and count with --skip-bad. */
static void bad(const opts *o, long *skipped, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void bad(const opts *o, long *skipped, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!o->skip_bad)
        icl_die("%s", msg);
    (*skipped)++;
    if (skipped_warned++ < 10)
        icl_warn("%s (skipped)", msg);
}

/* s with every byte of an invalid UTF-8 sequence replaced by '?'. */
static json_t *json_text(const char *s, size_t len)
{
    icl_buf b = {0};
    buf_puts(&b, "");
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0 || c == 0) {
            buf_putc(&b, '?');
            i++;
        } else {
            buf_append(&b, s + i, (size_t)k);
            i += (size_t)k;
        }
    }
    json_t *j = json_stringn(b.data, b.len);
    buf_free(&b);
    return j;
}

/* The answer of s under --extract: the extracted text, or (none found) ""
 * for a prediction and s itself for a reference. */
static char *extract(const opts *o, const char *s, int is_ref)
{
    if (!o->extract)
        return xstrdup(s);
    icl_buf b = {0};
    if (!icl_extract(o->extract, s, &b)) {
        buf_free(&b);
        return xstrdup(is_ref ? s : "");
    }
    return b.data;
}

/* A string field of a pass@k record, or NULL after reporting it. */
static const char *need_string(const opts *o, long *skipped, json_t *rec, const char *key, const char *name,
                               long line)
{
    json_t *v = json_object_get(rec, key);
    if (!v)
        bad(o, skipped, "%s:%ld: no \"%s\" key (pass@k needs \"task_id\", \"prompt\", the completion, "
            "\"test\" and \"entry_point\", as HumanEval's records)", name, line, key);
    else if (!json_is_string(v))
        bad(o, skipped, "%s:%ld: \"%s\" is not a string", name, line, key);
    else
        return json_string_value(v);
    return NULL;
}

/* The start of a chat template's end-of-turn text at the end of s[0..len)
 * (a "<|...|>" token such as <|im_end|>, <|eot_id|>, <|end|>; DeepSeek's
 * "<\uff5c...\uff5c>"; </s>, <end_of_turn>, <eos>), whitespace after it
 * allowed; len when s ends with none. */
static size_t eot_start(const char *s, size_t len)
{
    size_t e = len;
    while (e > 0 && (s[e - 1] == ' ' || s[e - 1] == '\n' || s[e - 1] == '\r' || s[e - 1] == '\t'))
        e--;
    static const char *const plain[] = {"</s>", "<end_of_turn>", "<eos>"};
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
        size_t n = strlen(plain[i]);
        if (e >= n && !memcmp(s + e - n, plain[i], n))
            return e - n;
    }
    /* "<|" NAME "|>" or "<\uff5c" NAME "\uff5c>": NAME 1..40 bytes without space, '<' or '>' */
    static const char *const open[] = {"<|", "<\xef\xbd\x9c"}, *const close[] = {"|>", "\xef\xbd\x9c>"};
    for (size_t k = 0; k < 2; k++) {
        size_t nc = strlen(close[k]), no = strlen(open[k]);
        if (e < no + 1 + nc || memcmp(s + e - nc, close[k], nc))
            continue;
        size_t name_end = e - nc;
        for (size_t nl = 1; nl <= 40 && nl + no <= name_end; nl++) { /* the name: s[b + no, name_end) */
            size_t b = name_end - nl - no;
            char ch = s[b + no];
            if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r' || ch == '<' || ch == '>')
                break;
            if (!memcmp(s + b, open[k], no))
                return b;
        }
    }
    return len;
}

/* A reference as scored: with "chat": true records (icl-fmt
 * --chat-template), a trailing end-of-turn text the prediction does not
 * end with is dropped, since generation stops before it (icl-gen stops at
 * the template's end-of-turn tokens and does not write them). */
static const char *ref_text(opts *o, const char *ref, const char *pred, int chat, size_t *len)
{
    size_t n = strlen(ref), k = eot_start(ref, n);
    *len = n;
    if (k == n || eot_start(pred, strlen(pred)) != strlen(pred))
        return ref;
    if (!o->eot_example[0]) {
        size_t e = n;
        while (e > k && (ref[e - 1] == ' ' || ref[e - 1] == '\n' || ref[e - 1] == '\r' || ref[e - 1] == '\t'))
            e--;
        snprintf(o->eot_example, sizeof o->eot_example, "%.*s", (int)(e - k), ref + k);
    }
    if (!chat) {
        o->eot_kept_refs++;
        return ref;
    }
    o->eot_stripped++;
    *len = k;
    return ref;
}

static void eval_file(opts *o, const char *path, items *it, long *skipped)
{
    icl_lines r;
    char oerr[512];
    if (icl_lines_open(&r, path, oerr, sizeof oerr) != 0)
        icl_die("%s", oerr);
    const char *name = icl_display_name(path);
    char err[512];
    json_t *rec;
    int st;
    int text = (o->mask & ~(unsigned)ICL_METRIC_PASS) != 0, pass = (o->mask & ICL_METRIC_PASS) != 0;
    while ((st = icl_record_next(&r, &rec, err, sizeof err)) != 0) {
        if (st < 0) {
            /* token lines given without -m: their loss needs the model */
            if (r.lineno == 1 && r.line.len >= 11 && !memcmp(r.line.data, "#icl-tokens", 11))
                icl_usage_die("%s: token lines (icl-tok encode): their loss and perplexity need -m MODEL; "
                              "without it icl-eval scores predictions in JSON Lines records", name);
            int other = r.lineno == 1 && icl_sniff_line(r.line.data, r.line.len) == ICL_KIND_TEXT;
            bad(o, skipped, "%s%s", err,
                other ? " (icl-eval reads JSON Lines records, {\"completion\": ..., \"response\": ...} one a "
                        "line, as icl-gen writes them: icl-fmt makes records from CSV, TSV or JSON data)" : "");
            continue;
        }
        json_t *p = json_object_get(rec, o->pred_key), *f = json_object_get(rec, o->ref_key);
        /* a conversation's response array is its turns' answers, not
         * several references: a chat record's (icl-fmt --chat-template), or
         * one whose prompt is an array too (icl-fmt's multi-turn records
         * with any template); icl-gen answers the last turn, so the last
         * answer is the reference */
        json_t *pa = json_object_get(rec, "prompt");
        int turns = json_is_true(json_object_get(rec, "chat")) ||
                    (json_is_array(pa) && !strcmp(o->ref_key, "response"));
        size_t nrefs = 0;
        int ok = 0;
        if (!p) {
            bad(o, skipped, "%s:%ld: no \"%s\" key (the prediction; see --pred)%s", name, r.lineno, o->pred_key,
                strcmp(o->pred_key, "completion") ? ""
                : ": icl-gen -m MODEL adds it to records; to score a model on them without generating, "
                  "icl-tok encode them and give the token lines with -m MODEL");
        } else if (!json_is_string(p)) {
            bad(o, skipped, "%s:%ld: \"%s\" is not a string", name, r.lineno, o->pred_key);
        } else if (!text) {
            ok = 1;
        } else if (!f) {
            bad(o, skipped, "%s:%ld: no \"%s\" key (the reference; see --ref)", name, r.lineno, o->ref_key);
        } else if (json_is_string(f)) {
            nrefs = 1;
            ok = 1;
        } else if (json_is_array(f) && json_array_size(f) > 0) {
            size_t i;
            json_t *x;
            json_array_foreach(f, i, x) if (!json_is_string(x)) break;
            if (i < json_array_size(f)) {
                bad(o, skipped, "%s:%ld: \"%s\"[%zu] is not a string", name, r.lineno, o->ref_key, i);
            } else if (!turns) {
                nrefs = json_array_size(f);
                ok = 1;
            } else if (json_is_array(pa) && json_array_size(pa) != json_array_size(f)) {
                bad(o, skipped, "%s:%ld: a conversation of %zu prompts and %zu responses: the last turn, which "
                    "icl-gen answers, has no reference", name, r.lineno, json_array_size(pa), json_array_size(f));
            } else {
                nrefs = 1; /* the answer to the last turn */
                ok = 1;
            }
        } else {
            bad(o, skipped, "%s:%ld: \"%s\" is not a string or a non-empty array of strings",
                name, r.lineno, o->ref_key);
        }
        const char *task = NULL, *prompt = NULL, *test = NULL, *entry = NULL;
        if (ok && pass) {
            json_t *t = json_object_get(rec, "task_id");
            task = t && json_is_string(t) ? json_string_value(t) : NULL;
            if (!task && t && json_is_integer(t))
                task = ""; /* set below from the number */
            ok = (task || need_string(o, skipped, rec, "task_id", name, r.lineno)) &&
                 (prompt = need_string(o, skipped, rec, "prompt", name, r.lineno)) &&
                 (test = need_string(o, skipped, rec, "test", name, r.lineno)) &&
                 (entry = need_string(o, skipped, rec, "entry_point", name, r.lineno));
        }
        if (ok) {
            if (it->n == it->cap) {
                it->cap = it->cap ? 2 * it->cap : 256;
                it->v = xreallocarray(it->v, it->cap, sizeof *it->v);
            }
            item *x = &it->v[it->n++];
            memset(x, 0, sizeof *x);
            x->pred = extract(o, json_string_value(p), 0);
            x->nrefs = nrefs;
            x->refs = xcalloc(nrefs + 1, sizeof *x->refs);
            int chat = json_is_true(json_object_get(rec, "chat"));
            long kept_before = o->eot_kept_refs;
            if (nrefs)
                o->text_records++;
            for (size_t i = 0; i < nrefs; i++) {
                const char *ref = json_is_string(f) ? json_string_value(f)
                                  : json_string_value(json_array_get(f, turns ? json_array_size(f) - 1 : i));
                size_t rl;
                ref = ref_text(o, ref, json_string_value(p), chat, &rl);
                char *cut = xstrndup(ref, rl);
                x->refs[i] = extract(o, cut, 1);
                free(cut);
            }
            if (o->eot_kept_refs > kept_before)
                o->eot_kept++; /* records, for the warning */
            if (o->per) {
                x->scores = json_object();
                json_object_set_new(x->scores, "file", json_string(name));
                json_object_set_new(x->scores, "line", json_integer(r.lineno));
                json_t *id = json_object_get(rec, "id");
                if (id)
                    json_object_set(x->scores, "id", id);
                if (o->extract && text) {
                    json_object_set_new(x->scores, "answer", json_string(x->pred));
                    json_t *ra = json_array();
                    for (size_t i = 0; i < nrefs; i++)
                        json_array_append_new(ra, json_string(x->refs[i]));
                    json_object_set_new(x->scores, "ref_answers", ra);
                }
            }
            if (pass) {
                json_t *t = json_object_get(rec, "task_id");
                if (json_is_integer(t)) {
                    char num[32];
                    snprintf(num, sizeof num, "%lld", (long long)json_integer_value(t));
                    x->task = xstrdup(num);
                } else {
                    x->task = xstrdup(task);
                }
                icl_buf prog = {0};
                buf_printf(&prog, "%s%s\n%s\ncheck(%s)\n", prompt, json_string_value(p), test, entry);
                x->program = prog.data;
                if (x->scores) {
                    json_object_set_new(x->scores, "task_id", json_string(x->task));
                    json_t *smp = json_object_get(rec, "sample");
                    if (smp)
                        json_object_set(x->scores, "sample", smp);
                }
            }
        }
        json_decref(rec);
    }
    icl_lines_close(&r);
}

/* pass@k: run every program in the sandbox, set each record's result, and
 * put the estimates in the summary. */
static void eval_pass(const opts *o, items *it, double timeout, long jobs, json_t *sum)
{
    char err[1024];
    icl_sandbox_limits lim;
    icl_sandbox_defaults(&lim);
    lim.timeout_s = timeout;
    lim.cpu_s = (long)ceil(timeout);
    const char *py = getenv("ICL_PYTHON");
    char *interp = icl_find_program(py && *py ? py : "python3", "/usr/local/bin:/usr/bin:/bin");
    if (!interp)
        icl_die("pass@k runs the completions with python3, which is not in /usr/local/bin, /usr/bin or /bin "
            "(install python3, or set ICL_PYTHON to an interpreter's path)");
    char *bwrap = icl_find_program("bwrap", getenv("PATH"));
    if (!bwrap)
        bwrap = icl_find_program("bwrap", "/usr/bin:/bin");
    if (!bwrap)
        icl_die("pass@k runs the completions in a bubblewrap sandbox, and bwrap is not installed "
            "(Debian package bubblewrap); icl-eval never runs them unconfined");
    lim.interpreter = interp;
    lim.bwrap = bwrap;
    if (icl_sandbox_check(&lim, err, sizeof err) != 0)
        icl_die("pass@k: %s; icl-eval never runs generated code unconfined", err);
    const char **progs = xcalloc(it->n + 1, sizeof *progs);
    for (size_t i = 0; i < it->n; i++)
        progs[i] = it->v[i].program;
    icl_sandbox_result *res = xcalloc(it->n + 1, sizeof *res);
    if (icl_sandbox_run(&lim, progs, it->n, (int)jobs, res, NULL, NULL, err, sizeof err) != 0)
        icl_die("pass@k: %s", err);
    /* samples per task, in the order tasks first appear */
    json_t *idx = json_object();
    long *nn = xcalloc(it->n + 1, sizeof *nn), *cc = xcalloc(it->n + 1, sizeof *cc);
    const char **names = xcalloc(it->n + 1, sizeof *names);
    size_t ntask = 0;
    long passed = 0;
    for (size_t i = 0; i < it->n; i++) {
        json_t *t = json_object_get(idx, it->v[i].task);
        size_t k;
        if (!t) {
            k = ntask++;
            names[k] = it->v[i].task;
            json_object_set_new(idx, it->v[i].task, json_integer((json_int_t)k));
        } else {
            k = (size_t)json_integer_value(t);
        }
        nn[k]++;
        cc[k] += res[i].passed;
        passed += res[i].passed;
        if (it->v[i].scores) {
            json_t *sc = it->v[i].scores;
            json_object_set_new(sc, "passed", json_boolean(res[i].passed));
            json_object_set_new(sc, "result", json_string(res[i].passed ? "passed"
                                                          : res[i].timed_out ? "timed out" : "failed"));
            json_object_set_new(sc, "exit_status", json_integer(res[i].exit_status));
            if (!res[i].passed)
                json_object_set_new(sc, "output", json_text(res[i].output, res[i].output_len));
        }
        icl_sandbox_result_free(&res[i]);
    }
    json_object_set_new(sum, "tasks", json_integer((json_int_t)ntask));
    json_object_set_new(sum, "samples", json_integer((json_int_t)it->n));
    json_object_set_new(sum, "passed", json_integer(passed));
    for (size_t q = 0; q < o->n_pass_k; q++) {
        long k = o->pass_k[q];
        double total = 0;
        for (size_t t = 0; t < ntask; t++) {
            if (nn[t] < k)
                icl_die("pass@%ld needs at least %ld samples of every task; task \"%s\" has %ld "
                    "(see icl-gen --num-return-sequences)", k, k, names[t], nn[t]);
            total += icl_pass_at_k(nn[t], cc[t], k);
        }
        char key[32];
        snprintf(key, sizeof key, "pass@%ld", k);
        json_object_set_new(sum, key, ntask ? json_real(total / (double)ntask) : json_null());
    }
    json_decref(idx);
    free(nn);
    free(cc);
    free(names);
    free(res);
    free(progs);
    free(interp);
    free(bwrap);
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    opts o = {.pred_key = "completion", .ref_key = "response", .mask = ICL_METRIC_DEFAULT};
    const char *model = NULL;
    int text_opts = 0, tok_auto = 1;
    icl_tokenize tok = ICL_TOK_13A;
    double timeout = 10;
    enum { OPT_SKIP_BAD = 256, OPT_TOKENIZE, OPT_EXTRACT, OPT_TIMEOUT, OPT_THREADS, OPT_ADAPTER, OPT_PROGRESS,
           OPT_NO_PROGRESS, OPT_DTYPE, OPT_DEQUANTIZE, OPT_DECODE, OPT_NO_ADAPT };
    static const struct option lo[] = {
        {"pred", required_argument, 0, 'p'},     {"ref", required_argument, 0, 'r'},
        {"metrics", required_argument, 0, 'M'},  {"per-example", required_argument, 0, 'e'},
        {"per-record", required_argument, 0, 'e'}, {"tokenize", required_argument, 0, OPT_TOKENIZE},
        {"extract", required_argument, 0, OPT_EXTRACT}, {"timeout", required_argument, 0, OPT_TIMEOUT},
        {"skip-bad", no_argument, 0, OPT_SKIP_BAD}, {"model", required_argument, 0, 'm'},
        {"threads", required_argument, 0, OPT_THREADS}, {"no-adaptive-threads", no_argument, 0, OPT_NO_ADAPT}, {"help", no_argument, 0, 'h'},
        {"adapter", required_argument, 0, OPT_ADAPTER},
        {"version", no_argument, 0, 'V'},        {"progress", no_argument, 0, OPT_PROGRESS},
        {"no-progress", no_argument, 0, OPT_NO_PROGRESS}, {"quiet", no_argument, 0, 'q'},
        {"dtype", required_argument, 0, OPT_DTYPE},
        {"dequantize", no_argument, 0, OPT_DEQUANTIZE}, {"decode", no_argument, 0, OPT_DECODE},
        {0, 0, 0, 0},
    };
    int c, n_adapters = 0;
    static const char *adapters[64];
    int threads = 0, progress = -1, bf16 = 0, dequantize = 0, decode = 0, quiet = 0, adaptive = 1;
    char err[256];
    while ((c = icl_getopt(argc, argv, "p:r:M:e:m:qhV", lo)) != -1) {
        switch (c) {
        case 'p': o.pred_key = optarg; text_opts = 1; break;
        case 'r': o.ref_key = optarg; text_opts = 1; break;
        case 'M':
            if (icl_metrics_parse(optarg, &o.mask, o.pass_k, &o.n_pass_k, err, sizeof err) != 0)
                icl_usage_die("--metrics: %s", err);
            text_opts = 1;
            break;
        case 'e': o.per_path = optarg; text_opts = 1; break;
        case OPT_TOKENIZE:
            if (strcmp(optarg, "auto") == 0)
                tok_auto = 1;
            else if (icl_tokenize_parse(optarg, &tok) == 0)
                tok_auto = 0;
            else
                icl_usage_die("--tokenize: '%s' is not one of auto, 13a, intl, zh, char, none", optarg);
            text_opts = 1;
            break;
        case OPT_EXTRACT:
            icl_extractor_free(o.extract);
            if (!(o.extract = icl_extractor_new(optarg, err, sizeof err)))
                icl_usage_die("--extract '%s': %s", optarg, err);
            text_opts = 1;
            break;
        case OPT_TIMEOUT: {
            char *end;
            errno = 0;
            timeout = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(timeout > 0 && timeout <= 86400))
                icl_usage_die("--timeout: '%s' is not a number of seconds from 0 to 86400", optarg);
            text_opts = 1;
            break;
        }
        case OPT_SKIP_BAD: o.skip_bad = 1; break;
        case 'm': model = optarg; break;
        case OPT_ADAPTER:
            if (n_adapters == 64)
                icl_usage_die("--adapter: at most 64");
            adapters[n_adapters++] = optarg;
            icl_opt_adapter_spec(optarg);
            break;
        case OPT_THREADS: threads = icl_opt_threads("--threads", optarg); break;
        case OPT_DEQUANTIZE: dequantize = 1; break;
        case OPT_DECODE: decode = 1; break;
        case OPT_DTYPE: bf16 = icl_opt_bf16("--dtype", optarg); break;
        case OPT_PROGRESS: progress = 1; break;
        case OPT_NO_PROGRESS: progress = 0; break;
        case 'q': progress = 0, quiet = icl_quiet = 1; break;
        case OPT_NO_ADAPT: adaptive = 0; break;
        case 'h': usage(stdout); return ICL_EXIT_OK;
        case 'V': icl_version_exit();
        default: icl_die("option %d not handled (a bug)", c); /* icl_getopt reported bad ones */
        }
    }
    if (n_adapters && !model)
        icl_usage_die("--adapter needs -m MODEL (the model mode)");
    if (bf16 && !model)
        icl_usage_die("--dtype needs -m MODEL (the model mode)");
    if ((dequantize || decode) && !model)
        icl_usage_die("--dequantize and --decode need -m MODEL (the model mode)");
    if (model) {
        if (text_opts)
            icl_usage_die("--pred, --ref, --metrics, --per-record, --tokenize, --extract and --timeout do not "
                      "apply to the model mode (-m)");
        icl_set_threads(threads); /* 0: $ICL_NUM_THREADS or all cores, BLIS's too */
        const char *env_threads = getenv("ICL_NUM_THREADS");
        if (threads || (env_threads && *env_threads))
            adaptive = 0;
        else if (adaptive && !quiet)
            adaptive = 2; /* with the notice */
        return eval_model(model, adapters, n_adapters, argc - optind, argv + optind, progress, bf16,
                          dequantize, decode, adaptive, quiet);
    }
    for (int i = optind; i < argc; i++) /* -e is renamed over its path at the end */
        if (icl_same_file(argv[i], o.per_path))
            icl_usage_die("%s is both an input and the --per-example output: it would be destroyed", argv[i]);
    if (o.per_path) /* a temporary file renamed at the end */
        o.per = icl_xout_open(o.per_path);
    items it = {0};
    long skipped = 0;
    if (optind == argc)
        eval_file(&o, "-", &it, &skipped);
    for (int i = optind; i < argc; i++)
        eval_file(&o, argv[i], &it, &skipped);
    if (it.n == 0 && !quiet) /* a pipeline whose earlier step wrote nothing: the null scores say why */
        icl_warn("%s", skipped ? "no record to score (every record was skipped)" : "empty input, no records");
    if (o.eot_stripped && !quiet)
        fprintf(stderr, "%s: %ld reference%s of \"chat\": true records scored without the end-of-turn text the "
                "completions stop before (%s)\n", icl_progname, o.eot_stripped, o.eot_stripped == 1 ? "" : "s",
                o.eot_example);
    if (o.eot_kept * 2 > o.text_records)
        icl_warn("%ld of %ld records have references ending with a chat template's end-of-turn text (%s) that "
                 "the predictions lack: they cannot match; score against a key without it (-r KEY), or mark the "
                 "records \"chat\": true (as icl-fmt --chat-template does) to have it dropped",
                 o.eot_kept, o.text_records, o.eot_example);
    icl_eval_acc acc;
    icl_eval_init(&acc, o.mask & ~(unsigned)ICL_METRIC_PASS);
    if (tok_auto) {
        icl_script_counts sc = {0};
        for (size_t i = 0; i < it.n; i++)
            for (size_t j = 0; j < it.v[i].nrefs; j++)
                icl_script_count(&sc, it.v[i].refs[j]);
        tok = icl_script_choose(&sc);
    }
    acc.tok = tok;
    acc.tok_auto = tok_auto;
    acc.answers = o.extract != NULL; /* exact match and accuracy keep the answers' signs and points */
    if (acc.mask)
        for (size_t i = 0; i < it.n; i++)
            icl_eval_add(&acc, it.v[i].pred, (const char *const *)it.v[i].refs, it.v[i].nrefs, it.v[i].scores);
    json_t *sum = icl_eval_summary(&acc);
    if (!acc.mask)
        json_object_set_new(sum, "records", json_integer((json_int_t)it.n));
    if (o.mask & ICL_METRIC_PASS) {
        long jobs = threads;
        if (!jobs) {
            const char *e = getenv("ICL_NUM_THREADS");
            if (!e || parse_long(e, &jobs) != 0 || jobs < 1)
                jobs = sysconf(_SC_NPROCESSORS_ONLN);
            if (jobs < 1)
                jobs = 1;
        }
        eval_pass(&o, &it, timeout, jobs, sum);
    }
    for (size_t i = 0; i < it.n; i++) {
        item *x = &it.v[i];
        if (x->scores) {
            if (json_dumpf(x->scores, o.per, DUMP_FLAGS) != 0 || fputc('\n', o.per) == EOF)
                icl_die("%s: write error:", o.per_path);
            json_decref(x->scores);
        }
        free(x->pred);
        for (size_t j = 0; j < x->nrefs; j++)
            free(x->refs[j]);
        free(x->refs);
        free(x->task);
        free(x->program);
    }
    free(it.v);
    if (o.per)
        icl_xout_commit(o.per, o.per_path);
    json_object_set_new(sum, "skipped", json_integer(skipped));
    if (json_dumpf(sum, stdout, DUMP_FLAGS) != 0)
        icl_die("write error:");
    putchar('\n');
    if (skipped)
        icl_warn("skipped %ld bad record%s", skipped, skipped == 1 ? "" : "s");
    json_decref(sum);
    icl_eval_free(&acc);
    icl_extractor_free(o.extract);
    return ICL_EXIT_OK;
}
