/* cli.c - see cli.h. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "fileio.h"
#include "lora.h"
#include "utf8.h"

/* Write s to stderr with what could drive the terminal made visible: C0
 * control characters other than tab (ESC, CR, LF...), DEL and bytes that
 * are not UTF-8 as \xNN, the C1 controls U+0080-U+009F as \u00NN.  A
 * message quotes names and values from hostile files (a GGUF's
 * general.architecture, a tokenizer's strings): raw, they could clear the
 * screen, recolour it or forge a line.  Other UTF-8 text is kept. */
static void put_visible(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c < 0xF5 ? 4 : 0;
        if (c < 0x80 && (c >= 0x20 || c == '\t') && c != 0x7f) {
            fputc(c, stderr);
            i++;
        } else if (len < 2 || len > n - i || icl_utf8_valid(s + i, len) != len) {
            fprintf(stderr, "\\x%02x", c);
            i++;
        } else if (c == 0xC2 && (unsigned char)s[i + 1] < 0xA0) {
            fprintf(stderr, "\\u%04x", (unsigned)(unsigned char)s[i + 1]);
            i += 2;
        } else {
            fwrite(s + i, 1, len, stderr);
            i += len;
        }
    }
}

static void vmsg(const char *fmt, va_list ap)
{
    int e = errno;
    fflush(stdout);
    fprintf(stderr, "%s: ", icl_progname);
    va_list aq;
    va_copy(aq, ap);
    char small[1024], *buf = small;
    int n = vsnprintf(small, sizeof small, fmt, aq);
    va_end(aq);
    if (n < 0)
        n = 0;
    else if ((size_t)n >= sizeof small && (buf = malloc((size_t)n + 1)))
        vsnprintf(buf, (size_t)n + 1, fmt, ap);
    else if (!buf) { /* no memory for a long message: its first part */
        buf = small;
        n = sizeof small - 1;
    }
    size_t len = (size_t)n;
    int nl = len > 0 && buf[len - 1] == '\n'; /* a final newline is kept */
    put_visible(buf, len - (size_t)nl);
    if (nl)
        fputc('\n', stderr);
    if (buf != small)
        free(buf);
    size_t fl = strlen(fmt);
    if (fl > 0 && fmt[fl - 1] == ':')
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

/* The long option word argv[optind-1] names, when it is one ("--name" or
 * "--name=value"): its length without "=value" in *len, else NULL. */
static const char *long_word(int argc, char **argv, size_t *len)
{
    if (optind < 1 || optind > argc || !argv[optind - 1] || strncmp(argv[optind - 1], "--", 2) != 0)
        return NULL;
    const char *w = argv[optind - 1];
    *len = strcspn(w, "=");
    return w;
}

/* Levenshtein distance of a[0..n) and b[0..m) (insertions, deletions,
 * substitutions), for option names: words longer than 64 bytes count as far. */
static size_t edit_distance(const char *a, size_t n, const char *b, size_t m)
{
    if (n > 64 || m > 64)
        return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= m; j++)
        row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            best = up + 1 < best ? up + 1 : best;
            best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
            diag = up;
            row[j] = best;
        }
    }
    return row[m];
}

int icl_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts)
{
    char so[256];
    snprintf(so, sizeof so, ":%s", shortopts); /* ':' first: a missing value is ':', not '?' */
    opterr = 0;
    int c = getopt_long(argc, argv, so, longopts, NULL);
    if (c != '?' && c != ':' && optarg && !*optarg) { /* no option takes "": a file, a key, a number ... */
        for (const struct option *o = longopts; o && o->name; o++)
            if (o->val == c && o->has_arg != no_argument && !o->flag)
                icl_usage_die("option '--%s' has an empty value ('')", o->name);
        icl_usage_die("option '-%c' has an empty value ('')", c);
    }
    if (c != '?' && c != ':')
        return c;
    size_t n = 0;
    const char *w = long_word(argc, argv, &n);
    /* A long option's error always consumed its "--" word, and optopt is
     * then its value (0: unknown or ambiguous); a short option's has optopt
     * its character, and argv[optind-1] may be any earlier word. */
    int is_long = w && optopt == 0 && c == '?';
    for (const struct option *o = longopts; w && !is_long && o && o->name; o++)
        if (o->val == optopt && !o->flag && n > 2 && !strncmp(o->name, w + 2, n - 2))
            is_long = 1;
    if (c == ':')
        is_long ? icl_usage_die("option '%.*s' needs a value", (int)n, w)
                : icl_usage_die("option '-%c' needs a value", optopt);
    if (!is_long)
        icl_usage_die("unknown option '-%c'", optopt > 0 && optopt < 256 && isprint(optopt) ? optopt : '?');
    if (optopt != 0)
        icl_usage_die("option '%.*s' takes no value ('%s')", (int)n, w, w);
    /* unknown or ambiguous: the long options the word abbreviates */
    char list[512];
    size_t k = 0;
    int matches = 0;
    list[0] = 0;
    for (const struct option *o = longopts; o && o->name && n > 2; o++)
        if (!strncmp(o->name, w + 2, n - 2)) {
            matches++;
            if (k < sizeof list - 64)
                k += (size_t)snprintf(list + k, sizeof list - k, "%s--%s", k ? ", " : "", o->name);
            else if (k < sizeof list) /* once */
                k = sizeof list + (size_t)snprintf(list + k, sizeof list - k, ", ...");
        }
    if (matches > 1)
        icl_usage_die("ambiguous option '%.*s' (%s)", (int)n, w, list);
    /* a typo: the long option nearest by edit distance, when it is near */
    const char *best = NULL;
    size_t bd = SIZE_MAX;
    for (const struct option *o = longopts; o && o->name && n > 2; o++) {
        size_t d = edit_distance(w + 2, n - 2, o->name, strlen(o->name));
        if (d < bd)
            bd = d, best = o->name;
    }
    if (best && bd <= (n - 2 >= 8 ? 2 : 1))
        icl_usage_die("unknown option '%.*s' (did you mean --%s?)", (int)n, w, best);
    icl_usage_die("unknown option '%.*s'", (int)n, w);
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

int icl_opt_bf16(const char *opt, const char *arg)
{
    static const char *const dtypes[] = {"f32", "float32", "bf16", "bfloat16", NULL};
    return icl_opt_choice(opt, arg, dtypes) >= 2;
}

/* ------------------------------------------------------------- version */

void icl_print_version(void)
{
    const char *arch = icl_blis_arch();
    printf("%s (icl) %s\n", icl_progname, ICL_VERSION);
    printf("bf16 products (--dtype bf16): %s\n", icl_bf16_path_name());
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

/* ------------------------------------------------------------- waiting */

unsigned long long icl_wait_spins = ICL_WAIT_SPINS;

/* GOMP_SPINCOUNT as libgomp's parse_spincount reads it: spaces, "infinite"
 * or "infinity", or a count with an optional k, M, G or T suffix.  0 ok. */
static int parse_spincount(const char *s, unsigned long long *v)
{
    while (*s == ' ' || *s == '\t')
        s++;
    if (!strncasecmp(s, "infinite", 8) || !strncasecmp(s, "infinity", 8)) {
        s += 8;
        *v = ULLONG_MAX;
    } else {
        char *end;
        errno = 0;
        if (*s < '0' || *s > '9')
            return -1;
        unsigned long long n = strtoull(s, &end, 10), mult = 1;
        if (errno)
            return -1;
        s = end;
        switch (*s) {
        case 'k': case 'K': mult = 1000ULL; s++; break;
        case 'M': mult = 1000000ULL; s++; break;
        case 'G': mult = 1000000000ULL; s++; break;
        case 'T': mult = 1000000000000ULL; s++; break;
        }
        *v = n > ULLONG_MAX / mult ? ULLONG_MAX : n * mult;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    return *s ? -1 : 0;
}

void icl_wait_setup(char **argv)
{
    const char *sc = getenv("GOMP_SPINCOUNT"), *pol = getenv("OMP_WAIT_POLICY");
    unsigned long long v;
    if (sc || pol) { /* the user's choice, read as libgomp reads it */
        while (pol && (*pol == ' ' || *pol == '\t'))
            pol++;
        if (sc && parse_spincount(sc, &v) == 0)
            icl_wait_spins = v;
        else if (pol && !strncasecmp(pol, "active", 6))
            icl_wait_spins = ULLONG_MAX;
        else if (pol && !strncasecmp(pol, "passive", 7))
            icl_wait_spins = 0;
        else
            icl_wait_spins = 300000; /* libgomp's default */
        return;
    }
    char n[32];
    snprintf(n, sizeof n, "%llu", ICL_WAIT_SPINS);
    if (!argv || !argv[0] || setenv("GOMP_SPINCOUNT", n, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* no /proc (a sandbox): libgomp spins as it always did; BLIS's barriers
     * still sleep after ICL_WAIT_SPINS spins */
    unsetenv("GOMP_SPINCOUNT");
}

int icl_quiet;

static void stdin_notice(void)
{
    static int said;
    if (said || icl_quiet || !isatty(STDIN_FILENO))
        return;
    said = 1;
    fflush(stdout);
    fprintf(stderr, "%s: reading standard input (end with Ctrl-D; --help for usage)\n", icl_progname);
}

void icl_init(int argc, char **argv)
{
    (void)argc;
    icl_wait_setup(argv);
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
    icl_on_stdin = stdin_notice;
    atexit(icl_atomic_cleanup);
    atexit(check_stdout);
}

/* ------------------------------------------------------------- progress */

static void fmt_secs(char *b, size_t n, double s)
{
    if (!(s >= 0) || s > 1e7)
        snprintf(b, n, "--:--");
    else if (s >= 3600)
        snprintf(b, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(b, n, "%d:%02d", (int)s / 60, (int)s % 60);
}

static void progress_draw(icl_progress *p, double now)
{
    double el = now - p->t0, rate = el > 0 ? (double)p->done / el : 0;
    char a[32], e[32] = "";
    fmt_secs(a, sizeof a, el);
    if (p->total > 0 && rate > 0) {
        char t[24];
        fmt_secs(t, sizeof t, (double)(p->total - p->done) / rate);
        snprintf(e, sizeof e, "  ETA %s", t);
    }
    if (p->total > 0)
        fprintf(stderr, "\r%s: %ld/%ld %s  %.2f/s  elapsed %s%s   ", icl_progname, p->done, p->total, p->what, rate,
                a, e);
    else
        fprintf(stderr, "\r%s: %ld %s  %.2f/s  elapsed %s   ", icl_progname, p->done, p->what, rate, a);
    p->drawn = 1;
    p->last = now;
}

void icl_progress_start(icl_progress *p, int mode, long total, const char *what)
{
    memset(p, 0, sizeof *p);
    p->on = mode < 0 ? isatty(2) : mode;
    p->total = total;
    p->what = what;
    p->t0 = p->last = icl_now();
}

void icl_progress_add(icl_progress *p, long n)
{
    p->done += n;
    if (!p->on)
        return;
    double now = icl_now();
    if (!p->drawn && now - p->t0 < p->delay)
        return;
    if (now - p->last >= 0.25 || !p->drawn)
        progress_draw(p, now);
}

void icl_progress_end(icl_progress *p)
{
    if (!p->on)
        return;
    if (!p->drawn && icl_now() - p->t0 < p->delay) { /* quick: nothing to show */
        p->on = 0;
        return;
    }
    progress_draw(p, icl_now());
    fputc('\n', stderr);
    p->on = 0;
}

long icl_count_lines(char *const *files, int n)
{
    long total = 0;
    if (n == 0)
        return -1;
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (!strcmp(files[i], "-") || stat(files[i], &st) || !S_ISREG(st.st_mode))
            return -1;
        FILE *f = fopen(files[i], "r");
        if (!f)
            return -1;
        int c, first = 1, counted = 0;
        while ((c = getc(f)) != EOF) {
            if (first)
                counted = c != '\n' && c != '#';
            first = c == '\n';
            if (first && counted)
                total++, counted = 0;
        }
        total += !first && counted;
        fclose(f);
    }
    return total;
}

void icl_opt_adapter_spec(const char *spec)
{
    char err[1024];
    double scale;
    char *d = icl_lora_parse_spec(spec, &scale, err, sizeof err);
    if (!d)
        icl_usage_die("--adapter %s", err + strlen("adapter "));
    free(d);
}
