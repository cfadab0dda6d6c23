/* icl-fmt - instruction data (CSV, TSV, JSON Lines, JSON arrays) to
 * prompt/response records.  Options and wiring only; the work is lib/fmt.c. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fmt.h"
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
    "  messages [{role, content}...]  (OpenAI chat) prompt and response become arrays,\n"
    "                        one entry per user/assistant exchange; system text goes\n"
    "                        into the first prompt\n"
    "  instruction/input/output  rendered by the template\n"
    "  prompt and response   passed through as they are\n"
    "\n"
    "  -T, --template=T      alpaca (Stanford Alpaca's two prompts; default), chatml,\n"
    "                        llama2, plain, or a template file: text with {instruction}\n"
    "                        {input} {output} {system} and a line \"%%\" between the\n"
    "                        prompt part and the response part (see icl-fmt(1)).\n"
    "                        No EOS is added: the tokenizer adds it.\n"
    "\n"
    "Output\n"
    "  -o, --output=FILE     write FILE instead of standard output (replaced only\n"
    "                        when the run succeeds; so is --split-out)\n"
    "      --dedup           drop records whose prompt+response repeat an earlier one\n"
    "      --shuffle         write the records in a random order (see --seed)\n"
    "      --split=FRAC      write a random FRAC (0 < FRAC <= 1) of the records to the\n"
    "                        output and the rest to --split-out, both in input order\n"
    "                        unless --shuffle\n"
    "      --split-out=FILE  where the rest of --split goes\n"
    "      --seed=N          seed of --shuffle and --split (default 0); the same\n"
    "                        input and seed give the same output\n"
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
    "Records with an empty output are dropped, records with an empty instruction\n"
    "kept; both are reported on stderr with FILE:LINE and counted.\n"
    "Exit status: 0 ok, 1 bad data or failure, 2 bad usage.\n"
    "\n"
    "Examples\n"
    "  icl-fmt alpaca_data.json > train.jsonl\n"
    "  icl-fmt --map instruction=act,output=prompt -t chatml prompts.csv\n"
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
    enum { O_MAP = 256, O_DEDUP, O_SHUFFLE, O_SEED, O_SPLIT, O_SPLIT_OUT, O_ON_ERROR, O_THREADS };
    static const struct option longopts[] = {
        {"format", required_argument, 0, 'f'},   {"template", required_argument, 0, 'T'},
        {"map", required_argument, 0, O_MAP},    {"dedup", no_argument, 0, O_DEDUP},
        {"shuffle", no_argument, 0, O_SHUFFLE},  {"seed", required_argument, 0, O_SEED},
        {"split", required_argument, 0, O_SPLIT}, {"split-out", required_argument, 0, O_SPLIT_OUT},
        {"on-error", required_argument, 0, O_ON_ERROR}, {"output", required_argument, 0, 'o'},
        {"threads", required_argument, 0, O_THREADS},
        {"quiet", no_argument, 0, 'q'},          {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},        {0, 0, 0, 0},
    };
    static icl_fmt_opts o; /* static: the map strings stay reachable */
    const char *tname = "alpaca", *out_path = NULL, *split_path = NULL;
    char err[512];
    int threads = 0, c;
    static const char *const on_error[] = {"stop", "skip", NULL};
    while ((c = getopt_long(argc, argv, "f:T:o:qhV", longopts, NULL)) != -1) {
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
        case 'o': out_path = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': icl_version_exit();
        default: icl_usage_die("bad usage");
        }
    }
    if ((o.split > 0) != (split_path != NULL))
        icl_usage_die("--split and --split-out go together");
    if (split_path && same_file(split_path, out_path))
        icl_usage_die("--split-out and the output are the same file: %s", split_path);
    for (int i = optind; i < argc; i++) /* --split-out is renamed over its path at the end */
        if (icl_same_file(argv[i], split_path)) /* -o onto the input is an in-place rewrite (t0106) */
            icl_usage_die("%s is both an input and --split-out: it would be destroyed", argv[i]);
    icl_template *tpl = icl_template_load(tname, err, sizeof err);
    if (!tpl)
        icl_usage_die("%s", err);
    o.tpl = tpl;
    o.threads = icl_set_threads(threads);
    o.on_warning = warn_msg;
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
    if (out_path)
        icl_xout_commit(o.out, out_path);
    if (split_path)
        icl_xout_commit(o.split_out, split_path);
    for (int k = 0; k < ICL_F_N; k++)
        free((char *)o.map[k]);
    return 0;
}
