/* cli.h - what the programs in cmd/ share: start-up, messages and exits,
 * command-line numbers, --version.
 *
 * This is the program side of icl.  Library functions never call anything
 * here: they return -1 / NULL with a message (icl_seterr, util.h) and the
 * program prints it with icl_die.  The Makefile builds each file in cmd/ as its
 * own program, so code the programs share lives in lib/ like this.
 *
 * Conventions every program keeps (doc/DESIGN.md, "Conventions"): exit 0
 * ok, 1 bad data or failure, 2 bad usage; short options mean the same in
 * every program: -t --tokenizer, -m --model, -o --output, -q --quiet,
 * -h --help, -V --version.
 */
#ifndef ICL_CLI_H
#define ICL_CLI_H

#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

/* Program start-up, first thing in main: sets how idle threads wait
 * (icl_wait_setup), records the program name for
 * messages (icl_progname), makes SIGPIPE quiet (`| head`), selects the
 * BLIS sub-configuration (icl_blis_setup), refuses an invalid
 * $ICL_NUM_THREADS, and arranges that at exit and on SIGINT, SIGTERM or
 * SIGHUP (where not ignored) the temporary files of uncommitted atomic
 * writes are removed (icl_atomic_cleanup, fileio.h) and that a failed
 * write to stdout fails the run (as in sbase). */
void icl_init(int argc, char **argv);

/* Standard input at a terminal: when a program is about to read it (no
 * FILE given, or "-"; fileio.h's icl_on_stdin, set by icl_init), it says
 * once on stderr "prog: reading standard input (end with Ctrl-D; --help
 * for usage)", so that a program waiting for typed input is not taken for
 * one that hangs.  Nothing when standard input is a pipe or a file, or when
 * icl_quiet is set (the programs set it for -q / --quiet before reading). */
extern int icl_quiet;

/* How long a thread waiting for others spins (pause instructions) before it
 * sleeps, in OpenMP's loops (libgomp) and in BLIS's barriers alike
 * (cmd/common/blis_wait.c).  Spinning forever, as libgomp does for 300,000
 * spins (3 ms by its estimate; about 15 ms measured here) and BLIS 0.9 does
 * without end, made 2 threads 3-5x slower than 1 while another program
 * kept a core busy (issue 18): the waiting thread burns the core its
 * descheduled partner needs.  icl_wait_setup, called first by icl_init:
 *   - the user set GOMP_SPINCOUNT (a count with an optional k/M/G/T
 *     suffix, or "infinite") or OMP_WAIT_POLICY (active: spin without end;
 *     passive: sleep at once): their value, as libgomp reads them, is kept;
 *   - neither set: GOMP_SPINCOUNT=ICL_WAIT_SPINS is put in the environment
 *     and the program re-executes itself (/proc/self/exe, same arguments):
 *     libgomp reads its settings in a constructor, before main, so a
 *     setenv() in main changes nothing for the running process.  If exec
 *     fails the program goes on with libgomp's own spinning.
 * Waiting never changes what is computed: results are bit-identical. */
/* 2000: twice libgomp's count for oversubscribed teams.  On a 2-core Xeon
 * under KVM (bench/RESULTS.md, "The spin count"), against 1000: two-thread
 * decoding of SmolLM2-135M 1.5x faster at batch 1 (wake-ups there cost more
 * than 1000 pauses), training 6% faster idle, and 6% slower with --threads 2
 * fixed while another program keeps a core busy (10000: 37% slower); the
 * default thread count, which follows the load (cmd/common/adapt.c), is not
 * affected. */
#define ICL_WAIT_SPINS 2000ULL
extern unsigned long long icl_wait_spins; /* ULLONG_MAX: without end */
void icl_wait_setup(char **argv);

/* icl_die: print "prog: message\n" to stderr and exit 1.  A message ending
 * in ':' gets strerror(errno) appended, as in sbase's eprintf.  The message
 * is written with control characters made visible (messages quote hostile
 * files): C0 controls but tab (ESC, CR, LF inside the message), DEL and
 * bytes that are not UTF-8 as \xNN, C1 controls as \u00NN; a final newline
 * and other UTF-8 text are kept.  The same for icl_usage_die, icl_warn and
 * icl_vwarn. */
_Noreturn void icl_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* icl_usage_die: as icl_die, then "Try 'prog --help'..." and exit 2. */
_Noreturn void icl_usage_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* icl_warn: as icl_die without exiting. */
void icl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void icl_vwarn(const char *fmt, va_list ap);

/* getopt_long for the programs, with icl's own messages: the same parse
 * (argv permuted as GNU getopt does; "--lora-r" abbreviable when the prefix
 * is unique), but getopt prints nothing and a bad option dies here with one
 * line and the --help hint (icl_usage_die, exit 2), naming the word as
 * typed:
 *   unknown option '--bogus'              (also '-Z')
 *   option '--model' needs a value        (also '-m')
 *   option '--quiet' takes no value ('--quiet=3')
 *   ambiguous option '--lora' (--lora-r, --lora-alpha, ...)
 *   option '--chat-template' has an empty value ('')
 * so it never returns '?' or ':', and optarg is never "" (no option of
 * icl's takes an empty value: a file, a key, a number, a pattern).  shortopts must not begin with ':'. */
int icl_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts);


/* The atomic output files of fileio.h (icl_out_open/commit), dying with
 * the library's message on failure. */
FILE *icl_xout_open(const char *path);
void icl_xout_commit(FILE *f, const char *path);

/* Numeric option values, parsed whole and range-checked in one place: the
 * value of option opt ("--batch-size") given as arg must be a number from lo
 * to hi inclusive, else icl_usage_die("--batch-size 'x': want an integer from
 * 1 to 4096") (exit 2).  Nothing is truncated: 4294967297 is out of range of
 * an int option, not 1. */
long icl_opt_long(const char *opt, const char *arg, long lo, long hi);
int icl_opt_int(const char *opt, const char *arg, int lo, int hi);
/* Any 64-bit unsigned value (seeds): 0 .. 18446744073709551615. */
uint64_t icl_opt_u64(const char *opt, const char *arg);
/* --adapter DIR[:SCALE] (icl-gen, icl-eval): a SCALE that is not a number
 * is a usage error (exit 2, icl_lora_parse_spec's reason); the folder
 * itself is read later. */
void icl_opt_adapter_spec(const char *spec);
/* A finite number in [lo, hi]; icl_opt_double_gt excludes lo: (lo, hi]. */
double icl_opt_double(const char *opt, const char *arg, double lo, double hi);
double icl_opt_double_gt(const char *opt, const char *arg, double lo, double hi);
/* --threads N: 1 .. ICL_MAX_THREADS. */
#define ICL_MAX_THREADS 4096
int icl_opt_threads(const char *opt, const char *arg);
/* One of the strings in choices (NULL-terminated): returns its index; else
 * icl_usage_die("--on-error 'x': want stop or skip"). */
int icl_opt_choice(const char *opt, const char *arg, const char *const *choices);
/* --dtype of icl-train, icl-gen and icl-eval: 1 for bf16 or bfloat16, 0 for
 * f32 or float32; anything else dies as icl_opt_choice. */
int icl_opt_bf16(const char *opt, const char *arg);

/* -V / --version: print "prog (icl) 0.1.0", the bf16 products' code path
 * (bf16.h's icl_bf16_path_name) and the BLIS kernels in use to stdout and
 * exit 0. */
_Noreturn void icl_version_exit(void);
/* The same text without exiting. */
void icl_print_version(void);

/* A progress line on stderr, "PROG: DONE[/TOTAL] WHAT  RATE/s  elapsed
 * M:SS[  ETA M:SS]" (ETA when total > 0), redrawn in place at most 4 times a
 * second and finished with a newline by icl_progress_end. */
typedef struct {
    int on, drawn;
    long done, total;   /* total <= 0: unknown */
    double t0, last;    /* icl_now() seconds */
    const char *what;   /* "records", "lines" */
    double delay;       /* no line before this many seconds (0 after start; set it after
                           icl_progress_start): work that ends sooner prints nothing */
} icl_progress;
/* mode 1: on; 0: off; -1: when stderr is a terminal (a program that streams
 * text to the terminal passes 0). */
void icl_progress_start(icl_progress *p, int mode, long total, const char *what);
void icl_progress_add(icl_progress *p, long n);
void icl_progress_end(icl_progress *p);
/* Lines of the named files that are neither empty nor '#' comments, for
 * an ETA: -1 when one is standard input ("-", or n == 0) or not a regular
 * file (a pipe can be read once only). */
long icl_count_lines(char *const *files, int n);

#endif
