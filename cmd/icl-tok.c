/* icl-tok - records <-> token lines through a Hugging Face tokenizer.json,
 * and byte-level BPE training.  See icl-tok(1). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_train.h"
#include "record.h"
#include "sniff.h"
#include "tokenizer.h"
#include "cli.h"
#include "fileio.h"
#include "utf8.h"
#include "toklines.h"
#include "tokrec.h"

static const char usage_text[] =
    "Usage: icl-tok encode -t TOKENIZER [options] [FILE...]   records -> token lines\n"
    "       icl-tok decode -t TOKENIZER [FILE...]             token lines -> records\n"
    "       icl-tok train --vocab-size N -o tokenizer.json [options] [FILE...]\n"
    "\n"
    "TOKENIZER is a tokenizer.json or a model directory holding one (its\n"
    "tokenizer_config.json / generation_config.json give BOS/EOS when present),\n"
    "or a GGUF file (its tokenizer.ggml.* metadata, read as llama.cpp reads it).\n"
    "Files are read in order; none or \"-\" means standard input.\n"
    "\n"
    "encode: each JSON Lines record becomes one token line (icl(7)):\n"
    "  {\"prompt\":P,\"response\":R}   ->  ids(P) TAB ids(R) EOS\n"
    "  prompt/response arrays (turns) ->  more segments, EOS after each response\n"
    "  \"chat\": true (icl-fmt --chat-template) -> special tokens parsed, no BOS/EOS added\n"
    "  {\"text\":T}                   ->  TAB ids(T) EOS   (all target)\n"
    "  An empty or whitespace-only response is no target (as in icl-fmt): a record\n"
    "  with no other response, or a blank text, is dropped; among others it joins\n"
    "  the next prompt (a last one is left out); both are counted on stderr.\n"
    "  The first line is a '#icl-tokens' header naming the tokenizer.\n"
    "  -t, --tokenizer PATH    tokenizer.json, model directory or GGUF file\n"
    "      --bos / --no-bos    add BOS before the prompt (default: as the\n"
    "                          tokenizer's post-processor does); never twice\n"
    "      --eos / --no-eos    add EOS after each response (default: on when the\n"
    "                          tokenizer has one)\n"
    "      --parse-special     turn special-token text in the data (\"<|endoftext|>\")\n"
    "                          into special ids; by default it is plain text\n"
    "                          (records from icl-fmt -T chatml need this)\n"
    "      --max-len N         at most N ids per line: ids are dropped from the\n"
    "                          left (after BOS; earlier turns first, never the last\n"
    "                          response); examples whose last response alone is\n"
    "                          longer are skipped and counted on stderr\n"
    "      --threads N         encoding threads (default: all cores / ICL_NUM_THREADS);\n"
    "                          the output order is the input order\n"
    "      --on-error stop|skip  a bad record stops the run (default) or is\n"
    "                          skipped and counted on stderr\n"
    "      --progress / --no-progress  force the progress line on standard error\n"
    "                          (records, rate, ETA for named files) on or off;\n"
    "                          default: at a terminal, once encoding takes more\n"
    "                          than a second\n"
    "  -q, --quiet             no progress line (train: no closing summary)\n"
    "\n"
    "decode: token lines back to records (prompt/response, arrays for turns,\n"
    "  text for lines starting with TAB); the BOS and EOS encode added (the\n"
    "  header's bos and eos, -1: none) are removed, other special tokens kept\n"
    "  as text: encode --parse-special gives the same ids again; spaces are\n"
    "  never \"cleaned up\".  A header naming another tokenizer is an error.\n"
    "\n"
    "train: byte-level BPE exactly as Hugging Face's BpeTrainer (GPT-2 split\n"
    "  regex, 256-byte alphabet, most frequent pair first, ties to the lower ids).\n"
    "  Plain text is read line by line; JSON Lines records (detected from the\n"
    "  first line) contribute their text, prompt and response strings; no text\n"
    "  at all is an error (nothing written).\n"
    "      --vocab-size N      final vocabulary size, specials included (more than\n"
    "                          256 + the number of specials)\n"
    "      --special TOKEN     a special token (repeatable; ids from 0 in order;\n"
    "                          a repeated one is kept once)\n"
    "      --min-frequency N   stop when the best pair is rarer (default 0)\n"
    "  -o, --output FILE       where to write tokenizer.json (required)\n"
    "\n"
    "An option of one command given to another is refused (exit 2).\n"
    "  -h, --help              this help\n"
    "  -V, --version           version and BLIS kernels\n"
    "Exit status: 0 ok, 1 bad data or runtime failure, 2 bad usage.\n";

enum { OPT_BOS = 256, OPT_NO_BOS, OPT_EOS, OPT_NO_EOS, OPT_PARSE_SPECIAL, OPT_MAX_LEN, OPT_THREADS,
       OPT_VOCAB, OPT_SPECIAL, OPT_MINFREQ, OPT_ON_ERROR, OPT_PROGRESS, OPT_NO_PROGRESS };

static const struct option longopts[] = {
    {"tokenizer", required_argument, NULL, 't'},
    {"bos", no_argument, NULL, OPT_BOS},
    {"no-bos", no_argument, NULL, OPT_NO_BOS},
    {"eos", no_argument, NULL, OPT_EOS},
    {"no-eos", no_argument, NULL, OPT_NO_EOS},
    {"parse-special", no_argument, NULL, OPT_PARSE_SPECIAL},
    {"max-len", required_argument, NULL, OPT_MAX_LEN},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"on-error", required_argument, NULL, OPT_ON_ERROR},
    {"vocab-size", required_argument, NULL, OPT_VOCAB},
    {"special", required_argument, NULL, OPT_SPECIAL},
    {"min-frequency", required_argument, NULL, OPT_MINFREQ},
    {"output", required_argument, NULL, 'o'},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* The commands an option applies to (bits: 1 encode, 2 decode, 4 train);
 * one given to another command is refused rather than ignored ("encode -o
 * out.tok" would otherwise write to the terminal). */
static int option_scope(int c)
{
    switch (c) {
    case 't': return 1 | 2;
    case 'o': case OPT_VOCAB: case OPT_SPECIAL: case OPT_MINFREQ: return 4;
    case 'q': case 'h': case 'V': return 1 | 2 | 4;
    default: return 1; /* --bos ... --threads, --on-error, --progress */
    }
}

static icl_tokenizer *load_tok(const char *path)
{
    char err[1024];
    icl_tokenizer *t = icl_tok_load(path, err, sizeof err);
    size_t pl = strlen(path);
    if (!t && !strncmp(err, path, pl) && (err[pl] == '/' || (pl && path[pl - 1] == '/')))
        icl_die("%s", err); /* a folder: the message names its tokenizer.json */
    if (!t)
        icl_die("%s: %s", path, err);
    return t;
}

/* ---- encode ---- */

#define BATCH 16384
#define BATCH_BYTES ((size_t)32 << 20)

typedef struct {
    long lineno;
    const char *file;
    char *text;
    size_t len;
    icl_buf out;
    int status; /* icl_tokrec_encode's: 0 line, 1 skipped (--max-len), 2 dropped (blank responses),
                 * 3 line with blank responses as context; 4 blank input line; -1 error */
    int special_text; /* special-token text left as text (no --parse-special) */
    int dropped;      /* characters the tokenizer dropped (no token, byte fallback or unk) */
    char err[512];
} item;

/* The counts of encode_files, on stderr. */
static void encode_summary(const icl_tokenizer *t, const icl_tokrec_opts *o, icl_tok_state **st, int nthreads,
                           long skipped, long bad, long special_text, long blank, long blank_turns, long dropped)
{
    if (dropped) {
        /* tokenizers drops what the vocabulary cannot spell; say so (a GGUF tokenizer refuses it) */
        uint32_t cp = 0;
        long nch = 0;
        for (int i = 0; i < nthreads; i++)
            if (icl_tok_state_dropped(st[i], nch ? NULL : &cp))
                nch += icl_tok_state_dropped(st[i], NULL);
        icl_warn("%ld record%s characters the tokenizer has no token, byte-fallback token or unk_token for "
                 "(%ld in all, e.g. U+%04X): dropped from the ids, as Hugging Face tokenizers drops them",
                 dropped, dropped == 1 ? " has" : "s have", nch, (unsigned)cp);
    }
    if (blank)
        icl_warn("%ld record%s with an empty or whitespace-only response (or text) dropped", blank,
                 blank == 1 ? "" : "s");
    if (blank_turns)
        icl_warn("%ld multi-turn record%s with an empty or whitespace-only response among others kept: those "
                 "responses are not trained on", blank_turns, blank_turns == 1 ? "" : "s");
    if (skipped)
        icl_warn("%ld example%s skipped: response longer than --max-len %ld", skipped,
             skipped == 1 ? "" : "s", o->max_len);
    if (bad)
        icl_warn("%ld bad record%s skipped", bad, bad == 1 ? "" : "s");
    if (special_text) {
        /* Templates (chatml's <|im_start|>) write special tokens as text;
         * without --parse-special they are not the special ids. */
        int32_t id = -1;
        for (int i = 0; i < nthreads; i++)
            icl_tok_state_special_text(st[i], &id);
        size_t pl = 0;
        const char *piece = id >= 0 ? icl_tok_piece(t, id, &pl) : NULL;
        icl_warn("%ld record%s special-token text such as \"%.*s\", encoded as plain text; "
             "if a template wrote it, use --parse-special",
             special_text, special_text == 1 ? " contains" : "s contain", piece ? (int)pl : 0,
             piece ? piece : "");
    }
}

/* When the first line of an input to encode is not a JSON record: what it
 * seems to be (sniff.h), as a hint appended to the error ("" if nothing
 * fits: broken JSON, where the error says where). */
static const char *not_records_hint(const char *p, size_t n)
{
    switch (icl_sniff_line(p, n)) {
    case ICL_KIND_TOKEN_LINES:
        return " (these are token lines, from icl-tok encode: encoded already; icl-tok decode -t TOKENIZER "
               "turns them back into records)";
    case ICL_KIND_TEXT: case ICL_KIND_JSON:
        return " (icl-tok encode reads JSON Lines records, {\"prompt\": ..., \"response\": ...} or "
               "{\"text\": ...}, one a line: icl-fmt makes them from CSV, TSV or JSON data)";
    default:
        return "";
    }
}

static void encode_files(const icl_tokenizer *t, const char *tokpath, const icl_tokrec_opts *o,
                         int nthreads, int skip_bad, int progress, char **files, int nfiles)
{
    icl_progress prog; /* records done; a total for named regular files */
    icl_progress_start(&prog, progress, icl_count_lines(files, nfiles), "records");
    if (progress < 0)
        prog.delay = 1.0; /* at a terminal: only for inputs that take a while */
    icl_toklines_header h;
    icl_toklines_header_from_tok(&h, t, tokpath);
    if (!o->eos)
        h.eos = -1; /* the header records the EOS used: none appended */
    if (!o->bos)
        h.bos = -1; /* ... and the BOS: none added (decode keeps a leading BOS id then) */
    if (icl_toklines_write_header(stdout, &h) != 0)
        icl_die("<stdout>: write error:");
    icl_toklines_header_free(&h);
    icl_tok_state **st = icl_xcalloc((size_t)nthreads, sizeof *st);
    for (int i = 0; i < nthreads; i++)
        st[i] = icl_tok_state_new(t);
    item *items = icl_xcalloc(BATCH, sizeof *items);
    long skipped = 0, written = 0, bad = 0, special_text = 0, blank = 0, blank_turns = 0, dropped = 0;
    char *stdin_only[] = {"-"};
    if (nfiles == 0) {
        files = stdin_only;
        nfiles = 1;
    }
    for (int f = 0; f < nfiles; f++) {
        icl_lines r;
        char oerr[512];
        long in_file = 0; /* lines of this file read before (not empty): no hint after one */
        if (icl_lines_open(&r, files[f], oerr, sizeof oerr) != 0)
            icl_die("%s", oerr);
        for (;;) {
            int n = 0, got = 0;
            size_t bytes = 0; /* a batch also stops at BATCH_BYTES: lines may be huge */
            while (n < BATCH && bytes < BATCH_BYTES && (got = icl_lines_next(&r)) > 0) {
                bytes += r.line.len;
                item *it = &items[n++];
                it->lineno = r.lineno;
                it->file = r.name;
                free(it->text);
                it->text = icl_xmalloc(r.line.len + 1); /* not strndup: the line may hold a NUL */
                if (r.line.len)
                    memcpy(it->text, r.line.data, r.line.len);
                it->text[r.line.len] = 0;
                it->len = r.line.len;
                it->out.len = 0;
            }
            if (got < 0 && r.errnum == EFBIG)
                icl_die("%s:%ld: a line longer than %zu MiB", r.name, r.lineno, ICL_LINE_MAX >> 20);
            if (got < 0)
                icl_die("%s: read error: %s", r.name, strerror(r.errnum));
            if (n == 0)
                break;
#pragma omp parallel for schedule(dynamic, 16) num_threads(nthreads)
            for (int i = 0; i < n; i++) {
                item *it = &items[i];
                size_t k = 0;
                while (k < it->len && (it->text[k] == ' ' || it->text[k] == '\t' || it->text[k] == '\r'))
                    k++;
                if (k == it->len) {
                    it->status = 4;
                    continue;
                }
                json_t *rec = icl_record_parse(it->text, it->len, it->err, sizeof it->err);
                if (!rec) {
                    it->status = -1;
                    continue;
                }
                icl_tok_state *ts = st[omp_get_thread_num()];
                long before = icl_tok_state_special_text(ts, NULL), dbefore = icl_tok_state_dropped(ts, NULL);
                it->status = icl_tokrec_encode(t, ts, o, rec, &it->out, it->err, sizeof it->err);
                it->special_text = icl_tok_state_special_text(ts, NULL) > before;
                it->dropped = icl_tok_state_dropped(ts, NULL) > dbefore;
                json_decref(rec);
            }
            long done = 0;
            for (int i = 0; i < n; i++) {
                item *it = &items[i];
                done += it->status != 4;
                if (it->status == -1) {
                    if (!skip_bad)
                        icl_die("%s:%ld: %s%s", it->file, it->lineno, it->err,
                                in_file ? "" : not_records_hint(it->text, it->len));
                    if (bad < 10)
                        icl_warn("%s:%ld: %s (skipped)", it->file, it->lineno, it->err);
                    bad++;
                }
                if (it->status == 1)
                    skipped++;
                in_file += it->status != 4;
                /* as icl-fmt: the first five of each kind with FILE:LINE, all counted */
                if (it->status == 2 && blank++ < 5)
                    icl_warn("%s:%ld: %s; record dropped", it->file, it->lineno, it->err);
                if (it->status == 3 && blank_turns++ < 5)
                    icl_warn("%s:%ld: %s: not trained on (context of the next turn, or left out when last); the "
                             "record's other responses are", it->file, it->lineno, it->err);
                if (it->status == 0 || it->status == 3) {
                    special_text += it->special_text;
                    dropped += it->dropped;
                    icl_buf_putc(&it->out, '\n');
                    fwrite(it->out.data, 1, it->out.len, stdout);
                    written++;
                }
            }
            icl_progress_add(&prog, done);
        }
        if (!in_file && !icl_quiet) /* as icl-fmt says it */
            icl_warn("%s: empty input, no records", icl_display_name(files[f]));
        icl_lines_close(&r);
    }
    icl_progress_end(&prog);
    encode_summary(t, o, st, nthreads, skipped, bad, special_text, blank, blank_turns, dropped);
    for (int i = 0; i < BATCH; i++) {
        free(items[i].text);
        icl_buf_free(&items[i].out);
    }
    free(items);
    for (int i = 0; i < nthreads; i++)
        icl_tok_state_free(st[i]);
    free(st);
}

/* ---- decode ---- */

static void decode_files(const icl_tokenizer *t, char **files, int nfiles)
{
    char *stdin_only[] = {"-"};
    char err[1024];
    if (nfiles == 0) {
        files = stdin_only;
        nfiles = 1;
    }
    for (int f = 0; f < nfiles; f++) {
        icl_toklines_reader r;
        icl_toklines_open(&r, files[f], icl_tok_vocab_size(t));
        r.check_tok = t; /* the header before the ids (their bound is this tokenizer's) */
        int rc;
        int checked = 0;
        while ((rc = icl_toklines_next(&r, err, sizeof err)) == 1) {
            if (!checked && r.hdr.present) {
                char e2[512];
                if (icl_toklines_check(&r.hdr, t, e2, sizeof e2))
                    icl_die("%s:%ld: %s", r.lines.name, r.header_line, e2);
                checked = 1;
            }
            /* remove what encode added: the header says; without one, the
             * tokenizer's BOS and EOS */
            const icl_tok_specials *sp = icl_tok_get_specials(t);
            json_t *rec = icl_tokrec_decode(t, r.ids, r.seg_end, r.nseg, r.hdr.present ? r.hdr.bos : sp->bos,
                                            r.hdr.present ? r.hdr.eos : sp->eos, err, sizeof err);
            if (!rec)
                icl_die("%s:%ld: %s", r.lines.name, r.lines.lineno, err);
            if (icl_record_write(stdout, rec) != 0)
                icl_die("<stdout>: write error:");
            json_decref(rec);
        }
        if (rc < 0 && r.examples == 0 && icl_sniff_line(r.lines.line.data, r.lines.line.len) == ICL_KIND_RECORDS)
            icl_die("%s:%ld: a JSON record, not token ids: records are text already (decode reads token lines, "
                    "icl-tok encode's output)", r.lines.name, r.lines.lineno);
        if (rc < 0)
            icl_die("%s", err);
        icl_toklines_close(&r);
    }
}

/* ---- train ---- */

static void train_files(int vocab, long minfreq, char **specials, int nspecial, const char *out,
                        char **files, int nfiles)
{
    char *stdin_only[] = {"-"};
    if (nfiles == 0) {
        files = stdin_only;
        nfiles = 1;
    }
    icl_bpe_trainer *tr = icl_bpe_trainer_new(vocab, minfreq, (const char *const *)specials, nspecial);
    char err[512];
    for (int f = 0; f < nfiles; f++) {
        /* whole file: plain text is fed line by line with each line's ending,
         * as HF's train_from_files reads it */
        const char *name = icl_display_name(files[f]);
        size_t n;
        char *s = icl_read_file(files[f], 0, &n, err, sizeof err);
        if (!s)
            icl_die("%s", err);
        size_t bad = icl_utf8_valid(s, n);
        if (bad != n) {
            long line = 1;
            for (size_t i = 0; i < bad; i++)
                line += s[i] == '\n';
            icl_die("%s:%ld: invalid UTF-8", name, line);
        }
        const char *nl = memchr(s, '\n', n);
        size_t l1 = nl ? (size_t)(nl - s) : n;
        json_t *rec = (n && s[0] == '{') ? icl_record_parse(s, l1, err, sizeof err) : NULL;
        if (!rec) {
            if (icl_bpe_trainer_feed_lines(tr, s, n, err, sizeof err) != 0)
                icl_die("%s: %s", name, err);
        } else {
            json_decref(rec);
            size_t a = 0;
            long line = 0;
            while (a < n) {
                const char *e = memchr(s + a, '\n', n - a);
                size_t len = e ? (size_t)(e - s) - a : n - a;
                line++;
                if (len) {
                    rec = icl_record_parse(s + a, len, err, sizeof err);
                    if (!rec)
                        icl_die("%s:%ld: %s", name, line, err);
                    static const char *keys[] = {"text", "prompt", "response"};
                    char e2[512];
                    int fed = 0;
                    for (int k = 0; k < 3; k++) {
                        json_t *v = json_object_get(rec, keys[k]), *x;
                        size_t i;
                        if (json_is_string(v))
                            fed |= icl_bpe_trainer_feed(tr, json_string_value(v), json_string_length(v), e2, sizeof e2);
                        if (json_is_array(v))
                            json_array_foreach(v, i, x) if (json_is_string(x))
                                fed |= icl_bpe_trainer_feed(tr, json_string_value(x), json_string_length(x), e2,
                                                            sizeof e2);
                    }
                    if (fed)
                        icl_die("%s:%ld: %s", name, line, e2);
                    json_decref(rec);
                }
                a += len + 1;
            }
        }
        free(s);
    }
    icl_buf json = {0};
    long merges = icl_bpe_trainer_finish(tr, &json, err, sizeof err);
    if (merges < 0) { /* nothing fed: the files' names, nothing written */
        icl_buf names = {0};
        for (int f = 0; f < nfiles; f++)
            icl_buf_printf(&names, "%s%s", f ? ", " : "", icl_display_name(files[f]));
        icl_die("%s: %s", names.data, err);
    }
    FILE *fo = icl_xout_open(out); /* whole or not at all (fileio.h) */
    if (fwrite(json.data, 1, json.len, fo) != json.len)
        icl_die("%s: write error:", out);
    icl_xout_commit(fo, out);
    icl_buf_free(&json);
    if (!icl_quiet)
        fprintf(stderr, "%s: %ld merges, vocabulary %zu\n", out, merges, icl_bpe_trainer_vocab(tr));
    icl_bpe_trainer_free(tr);
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")))
        icl_version_exit();
    if (argc < 2)
        icl_usage_die("missing command: encode, decode or train");
    const char *cmd = argv[1];
    int is_enc = !strcmp(cmd, "encode"), is_dec = !strcmp(cmd, "decode"), is_train = !strcmp(cmd, "train");
    if (!is_enc && !is_dec && !is_train && cmd[0] == '-' && cmd[1])
        icl_usage_die("unknown option '%s' (the command comes first: icl-tok encode|decode|train [OPTION]...)", cmd);
    if (!is_enc && !is_dec && !is_train)
        icl_usage_die("unknown command '%s' (want encode, decode or train)", cmd);
    argv++;
    argc--;
    const char *tokpath = NULL, *out = NULL;
    int bos = -1, eos = -1, parse_special = 0, threads = 0, skip_bad = 0, progress = -1;
    long max_len = 0, vocab = 0, minfreq = 0;
    static const char *const on_error[] = {"stop", "skip", NULL};
    char **specials = icl_xcalloc((size_t)argc + 1, sizeof *specials);
    int nspecial = 0, c;
    while ((c = icl_getopt(argc, argv, "t:o:qhV", longopts)) != -1) {
        int scope = option_scope(c), bit = is_enc ? 1 : is_dec ? 2 : 4;
        if (!(scope & bit)) {
            const char *name = "?";
            for (const struct option *lo = longopts; lo->name; lo++)
                if (lo->val == c)
                    name = lo->name;
            free(specials); /* exit() leaves it unreachable to LeakSanitizer */
            icl_usage_die("--%s applies to %s, not %s%s", name,
                          scope == 4 ? "train" : scope == 1 ? "encode" : "encode and decode", cmd,
                          c == 'o' ? " (encode and decode write to standard output: > FILE)" : "");
        }
        switch (c) {
        case 't': tokpath = optarg; break;
        case 'o': out = optarg; break;
        case OPT_BOS: bos = 1; break;
        case OPT_NO_BOS: bos = 0; break;
        case OPT_EOS: eos = 1; break;
        case OPT_NO_EOS: eos = 0; break;
        case OPT_PARSE_SPECIAL: parse_special = 1; break;
        case OPT_MAX_LEN: max_len = icl_opt_long("--max-len", optarg, 1, LONG_MAX); break;
        case OPT_THREADS: threads = icl_opt_threads("--threads", optarg); break;
        case OPT_VOCAB: vocab = icl_opt_long("--vocab-size", optarg, 1, 10000000); break;
        case OPT_SPECIAL: specials[nspecial++] = optarg; break;
        case OPT_ON_ERROR: skip_bad = icl_opt_choice("--on-error", optarg, on_error); break;
        case OPT_PROGRESS: progress = 1; break;
        case OPT_NO_PROGRESS: progress = 0; break;
        case 'q': progress = 0, icl_quiet = 1; break;
        case OPT_MINFREQ: minfreq = icl_opt_long("--min-frequency", optarg, 0, LONG_MAX); break;
        case 'h': fputs(usage_text, stdout); free(specials); return 0;
        case 'V': free(specials); icl_version_exit();
        default: icl_die("option %d not handled (a bug)", c); /* icl_getopt reported bad ones */
        }
    }
    char **files = argv + optind;
    int nfiles = argc - optind;
    if (is_train) {
        if (!out)
            icl_usage_die("train needs -o tokenizer.json");
        for (int i = 0; i < nspecial; i++) /* else the tokenizer written could not be loaded */
            if (!specials[i][0] || icl_utf8_valid(specials[i], strlen(specials[i])) != strlen(specials[i]))
                icl_usage_die("--special: %s", specials[i][0] ? "not valid UTF-8" : "an empty token");
        int n = 0; /* a repeated --special counts once, as the trainer keeps it */
        for (int i = 0; i < nspecial; i++) {
            int seen = 0;
            for (int j = 0; j < n; j++)
                seen |= !strcmp(specials[j], specials[i]);
            if (!seen)
                specials[n++] = specials[i];
        }
        nspecial = n;
        if (vocab <= 256 + nspecial)
            icl_usage_die("train needs --vocab-size above 256 + the number of special tokens");
        for (int i = 0; i < nfiles; i++)
            if (icl_same_file(files[i], out))
                icl_usage_die("%s is both an input and the output (-o): it would be destroyed", files[i]);
        train_files((int)vocab, minfreq, specials, nspecial, out, files, nfiles);
        free(specials);
        return 0;
    }
    free(specials);
    if (!tokpath)
        icl_usage_die("%s needs -t TOKENIZER", cmd);
    icl_tokenizer *t = load_tok(tokpath);
    if (is_dec) {
        decode_files(t, files, nfiles);
    } else {
        const icl_tok_specials *sp = icl_tok_get_specials(t);
        icl_tokrec_opts o = {0};
        o.bos = bos >= 0 ? bos : sp->add_bos;
        if (eos < 0) {
            o.eos = sp->eos >= 0;
            if (!o.eos)
                icl_warn("%s: the tokenizer names no EOS token; responses end without one", tokpath);
        } else {
            o.eos = eos;
        }
        if (o.bos && sp->bos < 0) {
            if (bos < 0) /* the tokenizer asks for a BOS it does not name: bad data */
                icl_die("%s: the tokenizer adds a BOS token but names none", tokpath);
            icl_usage_die("--bos: %s has no BOS token", tokpath);
        }
        if (o.eos && sp->eos < 0)
            icl_usage_die("--eos: %s has no EOS token", tokpath);
        o.parse_special = parse_special;
        o.max_len = max_len;
        o.drop_blank = 1; /* as icl-fmt: an empty response is no target */
        encode_files(t, tokpath, &o, icl_set_threads(threads), skip_bad, progress, files, nfiles);
    }
    icl_tok_free(t);
    return 0;
}
