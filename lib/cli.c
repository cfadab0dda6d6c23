/* cli.c - see cli.h. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"

static void vmsg(const char *fmt, va_list ap)
{
    int e = errno;
    fflush(stdout);
    fprintf(stderr, "%s: ", icl_progname);
    vfprintf(stderr, fmt, ap);
    size_t n = strlen(fmt);
    if (n > 0 && fmt[n - 1] == ':')
        fprintf(stderr, " %s", strerror(e));
    fputc('\n', stderr);
}

void icl_vwarn(const char *fmt, va_list ap) { vmsg(fmt, ap); }

void icl_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
}

/* Set by icl_die and icl_usage_die: the error is reported, so the exit-time
 * check of stdout must not report a failed write a second time. */
static int reported;

void icl_die(const char *fmt, ...)
{
    va_list ap;
    reported = 1;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    exit(ICL_EXIT_FAIL);
}

void icl_usage_die(const char *fmt, ...)
{
    va_list ap;
    reported = 1;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", icl_progname);
    exit(ICL_EXIT_USAGE);
}

FILE *icl_xfopen(const char *path, const char *mode)
{
    if (strcmp(path, "-") == 0)
        return mode[0] == 'r' ? stdin : stdout;
    FILE *f = fopen(path, mode);
    if (!f)
        icl_die("%s:", path);
    return f;
}

void icl_xfclose(FILE *f, const char *path)
{
    if (f == stdin)
        return;
    if (f == stdout) {
        if (fflush(f) == EOF || ferror(f))
            icl_die("%s: write error:", path);
        return;
    }
    int bad = ferror(f);
    if (fclose(f) == EOF || bad)
        icl_die("%s: %s error:", path, bad ? "I/O" : "close");
}

FILE *icl_xout_open(const char *path)
{
    char err[1024];
    FILE *f = icl_out_open(path, err, sizeof err);
    if (!f)
        icl_die("%s", err);
    return f;
}

void icl_xout_commit(FILE *f, const char *path)
{
    char err[1024];
    if (icl_out_commit(f, path, err, sizeof err) != 0)
        icl_die("%s", err);
}

/* ------------------------------------------------------------- options */

long icl_opt_long(const char *opt, const char *arg, long lo, long hi)
{
    long v;
    if (icl_parse_long(arg, &v) || v < lo || v > hi)
        icl_usage_die("%s '%s': want an integer from %ld to %ld", opt, arg, lo, hi);
    return v;
}

int icl_opt_int(const char *opt, const char *arg, int lo, int hi)
{
    return (int)icl_opt_long(opt, arg, lo, hi);
}

uint64_t icl_opt_u64(const char *opt, const char *arg)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    /* strtoull accepts "-1" as ULLONG_MAX: only digits here */
    if (errno || end == arg || *end != '\0' || arg[strspn(arg, " \t")] == '-' || arg[0] == '+')
        icl_usage_die("%s '%s': want an integer from 0 to %llu", opt, arg, (unsigned long long)UINT64_MAX);
    return (uint64_t)v;
}

static double opt_double(const char *opt, const char *arg, double lo, double hi, int lo_open)
{
    double v;
    if (icl_parse_double(arg, &v) || (lo_open ? !(v > lo) : !(v >= lo)) || !(v <= hi)) {
        if (lo == -HUGE_VAL && hi == HUGE_VAL)
            icl_usage_die("%s '%s': want a number", opt, arg);
        icl_usage_die("%s '%s': want a number in %c%g, %g]", opt, arg, lo_open ? '(' : '[', lo, hi);
    }
    return v;
}

double icl_opt_double(const char *opt, const char *arg, double lo, double hi)
{
    return opt_double(opt, arg, lo, hi, 0);
}

double icl_opt_double_gt(const char *opt, const char *arg, double lo, double hi)
{
    return opt_double(opt, arg, lo, hi, 1);
}

int icl_opt_threads(const char *opt, const char *arg)
{
    return icl_opt_int(opt, arg, 1, ICL_MAX_THREADS);
}

int icl_opt_choice(const char *opt, const char *arg, const char *const *choices)
{
    for (int i = 0; choices[i]; i++)
        if (strcmp(arg, choices[i]) == 0)
            return i;
    char want[256] = "";
    size_t n = 0;
    for (int i = 0; choices[i] && n < sizeof want; i++)
        n += (size_t)snprintf(want + n, sizeof want - n, "%s%s", i == 0 ? "" : !choices[i + 1] ? " or " : ", ",
                              choices[i]);
    icl_usage_die("%s '%s': want %s", opt, arg, want);
}

/* ------------------------------------------------------------- version */

void icl_print_version(void)
{
    const char *arch = icl_blis_arch();
    printf("%s (icl) %s\n", icl_progname, ICL_VERSION);
    printf("BLIS %s, kernels: %s (%s)\n", icl_blis_version(), arch, icl_blis_arch_source());
}

void icl_version_exit(void)
{
    icl_print_version();
    exit(ICL_EXIT_OK);
}

/* ------------------------------------------------------------- start-up */

static void check_stdout(void)
{
    if (fflush(stdout) == EOF || ferror(stdout)) {
        if (errno == EPIPE)
            _exit(ICL_EXIT_OK);
        if (reported) /* icl_die already said what went wrong; keep its status */
            return;
        fprintf(stderr, "%s: <stdout>: write error: %s\n", icl_progname, strerror(errno));
        _exit(ICL_EXIT_FAIL);
    }
}

/* On SIGINT, SIGTERM or SIGHUP: remove the temporary files of uncommitted
 * writes (unlink is async-signal-safe), then die of the signal as before. */
static void on_signal(int sig)
{
    icl_atomic_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

void icl_init(int argc, char **argv)
{
    (void)argc;
    if (argv && argv[0]) {
        const char *s = strrchr(argv[0], '/');
        icl_progname = s ? s + 1 : argv[0];
    }
    /* Die quietly on a closed pipe (`| head`): the default action of SIGPIPE. */
    signal(SIGPIPE, SIG_DFL);
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
            signal(sigs[i], on_signal);
    }
    const char *e = getenv("ICL_NUM_THREADS");
    long v;
    if (e && *e && (icl_parse_long(e, &v) || v < 1 || v > ICL_MAX_THREADS))
        icl_die("ICL_NUM_THREADS=%s: not a thread count (want 1..%d)", e, ICL_MAX_THREADS);
    icl_blis_setup();
    atexit(icl_atomic_cleanup);
    atexit(check_stdout);
}
