/* icl-fmt - instruction data (CSV, TSV, JSON Lines, JSON arrays) to
 * prompt/response records.  Options and wiring only; the work is lib/fmt.c. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat.h"
#include "fmt.h"
#include "shots.h"
#include "tokenizer.h"
#include "fileio.h"
#include "template.h"
#include "cli.h"
#include "util.h"

static const char usage_text[] =
    "Usage: icl-fmt [OPTION]... [FILE]...\n"
    "Turn instruction data into prompt/response records (JSON Lines, one per line):\n"
    "  {\"prompt\": ..., \"response\": ..., <other columns/keys, in input order>}\n"
    "Reads the FILEs in turn, or standard input; writes standard output.\n"
    "\n"
    "Input\n"
    "  -f, --format=FMT      csv, tsv, jsonl or json (a JSON array of objects, as\n"
    "                        alpaca_data.json); default: detected from the content\n"
    "      --map=KEY=COL,... take field KEY from column/key COL; KEY is instruction,\n"
    "                        input, output, system, messages, prompt or response;\n"
    "                        COL may be a path into JSON: instances[0].output\n"
    "                        (default: each field from the column of its own name)\n"
    "\n"
    "Records, by the first rule that applies\n"
    "  messages [{role, content}...]  (OpenAI chat; also ShareGPT conversations\n"
    "                        [{from, value}...], from human, gpt or system, read when\n"
    "                        there is no messages key) prompt and response become\n"
    "                        arrays, one entry per user/assistant exchange; system\n"
    "                        text goes into the first prompt (JSON input; in CSV, a\n"
    "                        column of JSON arrays, with --chat-template only)\n"
    "  instruction/input/output  rendered by the template\n"
    "  prompt and response   passed through as they are (with --chat-template\n"
    "                        a bad record: --map instruction=prompt,output=response\n"
    "                        renders them as one exchange)\n"
    "\n"
    "  -T, --template=T      alpaca (Stanford Alpaca's two prompts; default), chatml,\n"
    "                        llama2, plain, or a template file: text with {instruction}\n"
    "                        {input} {output} {system} and a line \"%%\" between the\n"
    "                        prompt part and the response part (see icl-fmt(1)).\n"
    "                        No EOS is added: the tokenizer adds it.\n"
    "      --chat-template=MODEL  render with the model's own chat template instead:\n"
    "                        MODEL is a model folder (chat_template.jinja or\n"
    "                        tokenizer_config.json), a GGUF model file (its\n"
    "                        tokenizer.chat_template), a tokenizer_config.json or\n"
    "                        a .jinja file (another file without Jinja markup, or\n"
    "                        a template that writes no message text, is refused\n"
    "                        as not a chat template).  messages (OpenAI role/content or ShareGPT\n"
    "                        from/value; in CSV a column of JSON arrays) and\n"
    "                        instruction/input/output (one user turn) become\n"
    "                        {\"prompt\": [...], \"response\": [...], \"chat\": true}:\n"
    "                        each assistant turn and its end-of-turn marker is a\n"
    "                        response (trained on), all other text prompt\n"
    "      --template-var=NAME=VALUE  a variable of the chat template (repeatable):\n"
    "                        VALUE is JSON if it parses (false, 3), else a string:\n"
    "                        --template-var 'date_string=26 Jul 2024'\n"
    "\n"
    "k-shot prompts (in-context learning)\n"
    "      --shots=K         put K demonstrations from --shots-from before each\n"
    "                        instruction/output record's prompt; the record keeps its\n"
    "                        response and gains \"shots\": [pool ids] (the pool\n"
    "                        record's \"id\", else its 0-based index)\n"
    "      --shots-from=POOL  the demonstrations: any input icl-fmt reads, with the\n"
    "                        same --format and --map; never the record itself or a\n"
    "                        duplicate (same lower-cased, space-normalised\n"
    "                        instruction+input)\n"
    "      --shot-selection=HOW  random (default; from --seed and the record's\n"
    "                        position), similar (BM25, best first) or fixed (first K)\n"
    "      --balance-labels  cover the pool's outputs (labels) as evenly as K\n"
    "                        allows, in a seeded order\n"
    "      --max-prompt-tokens=N  drop shots from the end until the prompt has at\n"
    "                        most N tokens of --tokenizer (the query is never cut)\n"
    "  -t, --tokenizer=FILE  tokenizer.json (or its folder, or a GGUF file) for\n"
    "                        --max-prompt-tokens\n"
    "\n"
    "Output\n"
    "  -o, --output=FILE     write FILE instead of standard output (replaced only\n"
    "                        when the run succeeds; so is --split-out); an input\n"
    "                        as -o or --split-out is refused (exit 2)\n"
    "      --dedup           drop records whose prompt+response repeat an earlier one\n"
    "      --shuffle         write the records in a random order (see --seed)\n"
    "      --split=FRAC      write a random FRAC (0 < FRAC <= 1) of the records to the\n"
    "                        output and the rest to --split-out, both in input order\n"
    "                        unless --shuffle\n"
    "      --split-out=FILE  where the rest of --split goes\n"
    "      --seed=N          seed of --shuffle, --split and the shots (default 0);\n"
    "                        the same input and seed give the same output\n"
    "\n"
    "Errors\n"
    "      --on-error=WHAT   stop (default): a bad record ends the run with exit 1;\n"
    "                        skip: bad records are skipped and counted on stderr\n"
    "  -q, --quiet           no warnings or counts on stderr (errors still)\n"
    "\n"
    "      --threads=N       N > 1: CSV/TSV is parsed in a second thread while\n"
    "                        records are written (same output); 1: one thread\n"
    "                        (default: ICL_NUM_THREADS, else all cores)\n"
    "  -h, --help            this help;  -V, --version  version\n"
    "\n"
    "Records with an empty or whitespace-only output are dropped, records with an\n"
    "empty instruction kept; both are reported on stderr with FILE:LINE and counted.\n"
    "In a multi-turn record an empty answer among non-empty ones is not trained on\n"
    "(its exchange becomes context of the next; reported and counted too).\n"
    "Exit status: 0 ok, 1 bad data or failure, 2 bad usage.\n"
    "\n"
    "Examples\n"
    "  icl-fmt alpaca_data.json > train.jsonl\n"
    "  icl-fmt --map instruction=act,output=prompt -T chatml prompts.csv\n"
    "  icl-fmt --chat-template SmolLM2-135M-Instruct/ chats.jsonl | icl-tok encode ...\n"
    "  icl-fmt --map instruction=question,output=answer gsm8k.jsonl \\\n"
    "          --dedup --shuffle --seed 1 --split 0.9 --split-out val.jsonl > train.jsonl\n";

/* 1 if the outputs a and b (NULL or "-": standard output) are the same
 * file, which would mix (or, renamed in turn, lose) the two parts.  Devices
 * such as /dev/null may be shared. */
static int same_file(const char *a, const char *b)
{
    int out_a = !a || !strcmp(a, "-"), out_b = !b || !strcmp(b, "-");
    if (out_a && out_b)
        return 1;
    struct stat sa, sb;
    int ra = out_a ? fstat(1, &sa) : stat(a, &sa), rb = out_b ? fstat(1, &sb) : stat(b, &sb);
    if (ra == 0 && rb == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino && S_ISREG(sa.st_mode);
    return !out_a && !out_b && !strcmp(a, b); /* not created yet: the same name */
}

/* The converter's warnings and summary go to stderr as "icl-fmt: ...". */
static void warn_msg(void *ctx, const char *msg)
{
    (void)ctx;
    icl_warn("%s", msg);
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    enum { O_MAP = 256, O_DEDUP, O_SHUFFLE, O_SEED, O_SPLIT, O_SPLIT_OUT, O_ON_ERROR, O_THREADS, O_CHAT,
           O_TVAR, O_SHOTS, O_SHOTS_FROM, O_SHOT_SEL, O_BALANCE, O_MAXPT };
    static const struct option longopts[] = {
        {"format", required_argument, 0, 'f'},   {"template", required_argument, 0, 'T'},
        {"map", required_argument, 0, O_MAP},    {"dedup", no_argument, 0, O_DEDUP},
        {"shuffle", no_argument, 0, O_SHUFFLE},  {"seed", required_argument, 0, O_SEED},
        {"split", required_argument, 0, O_SPLIT}, {"split-out", required_argument, 0, O_SPLIT_OUT},
        {"on-error", required_argument, 0, O_ON_ERROR}, {"output", required_argument, 0, 'o'},
        {"threads", required_argument, 0, O_THREADS},
        {"chat-template", required_argument, 0, O_CHAT}, {"template-var", required_argument, 0, O_TVAR},
        {"shots", required_argument, 0, O_SHOTS}, {"shots-from", required_argument, 0, O_SHOTS_FROM},
        {"shot-selection", required_argument, 0, O_SHOT_SEL}, {"balance-labels", no_argument, 0, O_BALANCE},
        {"max-prompt-tokens", required_argument, 0, O_MAXPT}, {"tokenizer", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},          {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},        {0, 0, 0, 0},
    };
    static icl_fmt_opts o; /* static: the map strings stay reachable */
    const char *tname = NULL, *out_path = NULL, *split_path = NULL, *chat_path = NULL;
    const char **tvars = icl_xcalloc((size_t)argc + 1, sizeof *tvars);
    int ntvars = 0;
    char err[512];
    int threads = 0, c, nshots = -1, shot_sel = ICL_SHOTS_RANDOM, balance = 0;
    const char *pool_path = NULL, *tok_path = NULL;
    long max_pt = 0;
    static const char *const on_error[] = {"stop", "skip", NULL};
    while ((c = icl_getopt(argc, argv, "f:T:o:t:qhV", longopts)) != -1) {
        switch (c) {
        case 'f':
            if ((o.format = icl_fmt_parse_format(optarg)) < 0)
                icl_usage_die("unknown format '%s' (csv, tsv, jsonl, json)", optarg);
            break;
        case 'T': tname = optarg; break;
        case O_MAP:
            if (icl_fmt_parse_map(optarg, o.map, err, sizeof err) < 0)
                icl_usage_die("%s", err);
            break;
        case O_DEDUP: o.dedup = 1; break;
        case O_SHUFFLE: o.shuffle = 1; break;
        case O_SEED: o.seed = icl_opt_u64("--seed", optarg); break;
        case O_SPLIT: o.split = icl_opt_double_gt("--split", optarg, 0, 1); break;
        case O_SPLIT_OUT: split_path = optarg; break;
        case O_ON_ERROR: o.skip_bad = icl_opt_choice("--on-error", optarg, on_error); break;
        case O_THREADS: threads = icl_opt_threads("--threads", optarg); break;
        case O_CHAT: chat_path = optarg; break;
        case O_TVAR: tvars[ntvars++] = optarg; break;
        case 'o': out_path = optarg; break;
        case O_SHOTS: nshots = icl_opt_int("--shots", optarg, 0, 1000); break;
        case O_SHOTS_FROM: pool_path = optarg; break;
        case O_SHOT_SEL: shot_sel = icl_opt_choice("--shot-selection", optarg, icl_shots_selection_names); break;
        case O_BALANCE: balance = 1; break;
        case O_MAXPT: max_pt = icl_opt_long("--max-prompt-tokens", optarg, 1, 1L << 40); break;
        case 't': tok_path = optarg; break;
        case 'q': o.quiet = icl_quiet = 1; break;
        case 'h': fputs(usage_text, stdout); free(tvars); return 0;
        case 'V': free(tvars); icl_version_exit();
        default: icl_die("option %d not handled (a bug)", c); /* icl_getopt reported bad ones */
        }
    }
    if ((o.split > 0) != (split_path != NULL))
        icl_usage_die("--split and --split-out go together");
    if (split_path && same_file(split_path, out_path))
        icl_usage_die("--split-out and the output are the same file: %s", split_path);
    /* the outputs are renamed over their paths at the end: an input (or the
     * --shots-from pool) among them would be replaced by records */
    for (int i = optind; i <= argc; i++) {
        const char *in = i < argc ? argv[i] : pool_path;
        if (i == argc && optind == argc && !in)
            in = "-"; /* no FILE: standard input */
        const char *probe = in && !strcmp(in, "-") ? "/dev/stdin" : in; /* followed to the file read */
        const char *name = probe != in ? "standard input" : in;
        if (icl_same_file(probe, out_path))
            icl_usage_die("%s is both an input and the output (-o): it would be destroyed", name);
        if (icl_same_file(probe, split_path))
            icl_usage_die("%s is both an input and --split-out: it would be destroyed", name);
    }
    if (chat_path && tname)
        icl_usage_die("--template and --chat-template exclude each other");
    if (ntvars && !chat_path)
        icl_usage_die("--template-var needs --chat-template");
    if ((nshots >= 0) != (pool_path != NULL))
        icl_usage_die("--shots and --shots-from go together");
    if (nshots < 0 && (balance || max_pt || tok_path))
        icl_usage_die("--balance-labels, --max-prompt-tokens and --tokenizer need --shots");
    if ((max_pt > 0) != (tok_path != NULL))
        icl_usage_die("--max-prompt-tokens and --tokenizer go together");
    icl_template *tpl = icl_template_load(tname ? tname : "alpaca", err, sizeof err);
    if (!tpl)
        icl_usage_die("%s", err);
    o.tpl = tpl;
    icl_chat *chat = NULL;
    if (chat_path) {
        if (!(chat = icl_chat_load(chat_path, err, sizeof err)))
            icl_die("%s", err);
        for (int i = 0; i < ntvars; i++)
            if (icl_chat_set_var(chat, tvars[i], err, sizeof err))
                icl_usage_die("%s", err);
        o.chat = chat;
    }
    o.threads = icl_set_threads(threads);
    o.on_warning = warn_msg;
    icl_shots *shots = NULL;
    icl_tokenizer *btok = NULL;
    if (pool_path) {
        /* the pool is read by the same converter, collecting fields only */
        shots = icl_shots_new(nshots, shot_sel, o.seed, balance);
        icl_fmt_opts po = o;
        po.collect = shots;
        po.out = NULL;
        po.shuffle = po.dedup = 0;
        po.split = 0;
        po.split_out = NULL;
        icl_fmt *pf = icl_fmt_new(&po);
        char perr[1024];
        if (icl_fmt_file(pf, pool_path, perr, sizeof perr) != 0 ||
            icl_fmt_finish(pf, NULL, perr, sizeof perr) != 0)
            icl_die("%s", perr);
        icl_fmt_free(pf);
        icl_shots_index(shots);
        if (icl_shots_size(shots) <= (size_t)nshots)
            icl_warn("%s: %zu distinct pool records for --shots %d: some records get fewer shots", pool_path,
                     icl_shots_size(shots), nshots);
        o.shots = shots;
        if (tok_path) {
            if (!(btok = icl_tok_load(tok_path, err, sizeof err)))
                icl_die("%s%s%s", strncmp(err, tok_path, strlen(tok_path)) ? tok_path : "",
                        strncmp(err, tok_path, strlen(tok_path)) ? ": " : "", err); /* a folder's names it */
            o.budget_tok = btok;
            o.max_prompt_tokens = max_pt;
        }
    }
    /* named outputs appear whole or not at all (fileio.h) */
    o.out = out_path ? icl_xout_open(out_path) : stdout;
    o.out_name = out_path;
    o.split_out = split_path ? icl_xout_open(split_path) : NULL;
    o.split_name = split_path;
    icl_fmt *f = icl_fmt_new(&o);
    char ferr[1024];
    if (optind == argc && icl_fmt_file(f, "-", ferr, sizeof ferr) != 0)
        icl_die("%s", ferr);
    for (int i = optind; i < argc; i++)
        if (icl_fmt_file(f, argv[i], ferr, sizeof ferr) != 0)
            icl_die("%s", ferr);
    if (icl_fmt_finish(f, NULL, ferr, sizeof ferr) != 0)
        icl_die("%s", ferr);
    icl_fmt_free(f);
    icl_template_free(tpl);
    icl_chat_free(chat);
    icl_shots_free(shots);
    icl_tok_free(btok);
    free(tvars);
    if (out_path)
        icl_xout_commit(o.out, out_path);
    if (split_path)
        icl_xout_commit(o.split_out, split_path);
    for (int k = 0; k < ICL_F_N; k++)
        free((char *)o.map[k]);
    return 0;
}
