/* icl-eval - score predictions against references (JSON Lines records), or
 * (with -m) the loss, perplexity and token accuracy of a model on token
 * lines.  See icl-eval(1).  All computing is in lib/metrics.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>
#include <unistd.h>

#include "lmeval.h"
#include "metrics.h"
#include "fileio.h"
#include "model.h"
#include "tokenizer.h"
#include "toklines.h"
#include "record.h"
#include "cli.h"
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
"                          strings for several references (default \"response\")\n"
"  -M, --metrics LIST      comma-separated: em, f1, rougeL, bleu, accuracy, or\n"
"                          all (default em,f1,rougeL,bleu)\n"
"  -e, --per-example FILE  also write one JSON line of scores per record to FILE\n"
"                          (\"file\", \"line\", the record's \"id\" if any, scores)\n"
"      --skip-bad          skip bad records (unreadable, key missing or not a\n"
"                          string) and count them, instead of stopping\n"
"  -m, --model DIR         model mode: masked loss, perplexity and token accuracy\n"
"                          of a model on token lines (target segments only;\n"
"                          per token over the whole input)\n"
"      --threads N         threads for the model mode (default: all cores)\n"
"  -h, --help              show this help and exit\n"
"  -V, --version           show the version and exit\n"
"\n"
"Metrics (all in [0, 1]; exact definitions in icl-eval(1)):\n"
"  exact_match, f1  SQuAD v1.1: lower-case, drop ASCII punctuation and the\n"
"                   articles a/an/the, collapse white space; empty vs empty = 1\n"
"  rougeL           rouge-score's ROUGE-L F-measure, no stemming\n"
"  bleu             sacreBLEU's corpus BLEU (13a, exp smoothing) divided by 100;\n"
"                   bleu_detail has sacreBLEU's score, counts, totals, bp, lengths\n"
"  accuracy         first line of the prediction vs the label, both normalised\n"
"                   as for exact_match; with a confusion matrix {gold: {pred: n}}\n"
"\n"
"Example:\n"
"  icl-gen -m run/ test.jsonl | icl-eval --metrics em,f1\n"
"  {\"records\":200,\"exact_match\":0.41,\"f1\":0.5872,\"skipped\":0}\n"
"\n"
"Exit status: 0 ok, 1 bad data, 2 bad usage.\n");
}

typedef struct {
    const char *pred_key, *ref_key;
    unsigned mask;
    int skip_bad;
    FILE *per;
    const char *per_path;
} opts;

/* Model mode: loss, perplexity and token accuracy of token lines (lmeval.h). */
static int eval_model(const char *model_dir, int nfiles, char **files)
{
    char err[1024];
    icl_model *m = icl_model_load(model_dir, err, sizeof err);
    if (!m)
        icl_die("%s: %s", model_dir, err);
    icl_tokenizer *tok = NULL;
    size_t pl = strlen(model_dir) + 32;
    char *tokpath = icl_xmalloc(pl);
    snprintf(tokpath, pl, "%s/tokenizer.json", model_dir);
    if (access(tokpath, R_OK) == 0 && !(tok = icl_tok_load(model_dir, err, sizeof err)))
        icl_die("%s: %s", tokpath, err);
    icl_lm_eval e;
    icl_lm_eval_init(&e);
    int have_hdr = 0, hdr_vocab = 0;
    uint64_t hdr_fp = 0;
    for (int i = 0; i < (nfiles ? nfiles : 1); i++) {
        const char *path = nfiles ? files[i] : "-", *name = icl_display_name(path);
        icl_toklines_reader r;
        icl_toklines_open(&r, path, m->cfg.vocab_size);
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
            if (icl_lm_eval_line(m, &e, r.ids, r.target, r.n, err, sizeof err) != 0)
                icl_die("%s:%ld: %s", name, r.lines.lineno, err);
        }
        icl_toklines_close(&r);
    }
    json_t *sum = json_object();
    json_object_set_new(sum, "records", json_integer(e.records));
    json_object_set_new(sum, "tokens", json_integer(e.tokens));
#define REAL_OR_NULL(x) (isnan(x) ? json_null() : json_real(x))
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

static void eval_file(const opts *o, const char *path, icl_eval_acc *acc, long *skipped)
{
    icl_lines r;
    char oerr[512];
    if (icl_lines_open(&r, path, oerr, sizeof oerr) != 0)
        icl_die("%s", oerr);
    const char *name = icl_display_name(path);
    char err[512];
    json_t *rec;
    int st;
    const char **refs = NULL;
    size_t cap = 0;
    while ((st = icl_record_next(&r, &rec, err, sizeof err)) != 0) {
        if (st < 0) {
            bad(o, skipped, "%s", err);
            continue;
        }
        json_t *p = json_object_get(rec, o->pred_key), *f = json_object_get(rec, o->ref_key);
        size_t nrefs = 0;
        if (!p) {
            bad(o, skipped, "%s:%ld: no \"%s\" key (the prediction; see --pred)", name, r.lineno, o->pred_key);
        } else if (!json_is_string(p)) {
            bad(o, skipped, "%s:%ld: \"%s\" is not a string", name, r.lineno, o->pred_key);
        } else if (!f) {
            bad(o, skipped, "%s:%ld: no \"%s\" key (the reference; see --ref)", name, r.lineno, o->ref_key);
        } else if (json_is_string(f)) {
            nrefs = 1;
        } else if (json_is_array(f) && json_array_size(f) > 0) {
            size_t i;
            json_t *x;
            json_array_foreach(f, i, x) if (!json_is_string(x)) break;
            if (i < json_array_size(f))
                bad(o, skipped, "%s:%ld: \"%s\"[%zu] is not a string", name, r.lineno, o->ref_key, i);
            else
                nrefs = json_array_size(f);
        } else {
            bad(o, skipped, "%s:%ld: \"%s\" is not a string or a non-empty array of strings",
                name, r.lineno, o->ref_key);
        }
        if (nrefs > 0) {
            if (nrefs > cap) {
                cap = nrefs;
                refs = icl_xreallocarray(refs, cap, sizeof *refs);
            }
            if (json_is_string(f))
                refs[0] = json_string_value(f);
            else
                for (size_t i = 0; i < nrefs; i++)
                    refs[i] = json_string_value(json_array_get(f, i));
            json_t *scores = NULL;
            if (o->per) {
                scores = json_object();
                json_object_set_new(scores, "file", json_string(name));
                json_object_set_new(scores, "line", json_integer(r.lineno));
                json_t *id = json_object_get(rec, "id");
                if (id)
                    json_object_set(scores, "id", id);
            }
            icl_eval_add(acc, json_string_value(p), refs, nrefs, scores);
            if (scores) {
                if (json_dumpf(scores, o->per, DUMP_FLAGS) != 0 || fputc('\n', o->per) == EOF)
                    icl_die("%s: write error:", o->per_path);
                json_decref(scores);
            }
        }
        json_decref(rec);
    }
    free(refs);
    icl_lines_close(&r);
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    opts o = {.pred_key = "completion", .ref_key = "response", .mask = ICL_METRIC_DEFAULT};
    const char *model = NULL;
    int text_opts = 0;
    enum { OPT_SKIP_BAD = 256, OPT_THREADS };
    static const struct option lo[] = {
        {"pred", required_argument, 0, 'p'},     {"ref", required_argument, 0, 'r'},
        {"metrics", required_argument, 0, 'M'},  {"per-example", required_argument, 0, 'e'},
        {"skip-bad", no_argument, 0, OPT_SKIP_BAD}, {"model", required_argument, 0, 'm'},
        {"threads", required_argument, 0, OPT_THREADS}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},        {0, 0, 0, 0},
    };
    int c;
    int threads = 0;
    char err[256];
    while ((c = getopt_long(argc, argv, "p:r:M:e:m:hV", lo, NULL)) != -1) {
        switch (c) {
        case 'p': o.pred_key = optarg; text_opts = 1; break;
        case 'r': o.ref_key = optarg; text_opts = 1; break;
        case 'M':
            if (icl_metrics_parse(optarg, &o.mask, err, sizeof err) != 0)
                icl_usage_die("--metrics: %s", err);
            text_opts = 1;
            break;
        case 'e': o.per_path = optarg; text_opts = 1; break;
        case OPT_SKIP_BAD: o.skip_bad = 1; break;
        case 'm': model = optarg; break;
        case OPT_THREADS: threads = icl_opt_threads("--threads", optarg); break;
        case 'h': usage(stdout); return ICL_EXIT_OK;
        case 'V': icl_version_exit();
        default:
            fprintf(stderr, "Try '%s --help' for more information.\n", icl_progname);
            return ICL_EXIT_USAGE;
        }
    }
    if (model) {
        if (text_opts)
            icl_usage_die("--pred, --ref, --metrics and --per-example do not apply to the model mode (-m)");
        if (threads)
            icl_set_threads(threads);
        return eval_model(model, argc - optind, argv + optind);
    }
    if (o.per_path) /* a temporary file renamed at the end: -e may name an input */
        o.per = icl_xout_open(o.per_path);
    icl_eval_acc acc;
    icl_eval_init(&acc, o.mask);
    long skipped = 0;
    if (optind == argc)
        eval_file(&o, "-", &acc, &skipped);
    for (int i = optind; i < argc; i++)
        eval_file(&o, argv[i], &acc, &skipped);
    if (o.per)
        icl_xout_commit(o.per, o.per_path);
    json_t *sum = icl_eval_summary(&acc);
    json_object_set_new(sum, "skipped", json_integer(skipped));
    if (json_dumpf(sum, stdout, DUMP_FLAGS) != 0)
        icl_die("write error:");
    putchar('\n');
    if (skipped)
        icl_warn("skipped %ld bad record%s", skipped, skipped == 1 ? "" : "s");
    json_decref(sum);
    icl_eval_free(&acc);
    return ICL_EXIT_OK;
}
