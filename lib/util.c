/* util.c - see util.h. */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <omp.h>

#include <blis.h>

const char *icl_progname = "icl";

static void vmsg(const char *fmt, va_list ap)
{
    fflush(stdout);
    fprintf(stderr, "%s: ", icl_progname);
    vfprintf(stderr, fmt, ap);
    size_t n = strlen(fmt);
    if (n > 0 && fmt[n - 1] == ':')
        fprintf(stderr, " %s", strerror(errno));
    fputc('\n', stderr);
}

void vwarn(const char *fmt, va_list ap) { vmsg(fmt, ap); }

void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
}

/* Set by die and usage_die: the error is reported, so the exit-time check
 * of stdout must not report a failed write a second time. */
static int icl_reported;

void die(const char *fmt, ...)
{
    va_list ap;
    icl_reported = 1;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    exit(ICL_EXIT_FAIL);
}

void usage_die(const char *fmt, ...)
{
    va_list ap;
    icl_reported = 1;
    va_start(ap, fmt);
    vmsg(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", icl_progname);
    exit(ICL_EXIT_USAGE);
}

void icl_seterr(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

void *xreallocarray(void *p, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        die("out of memory (%zu x %zu bytes overflows)", n, size);
    return xrealloc(p, n * size);
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

FILE *xfopen(const char *path, const char *mode)
{
    if (strcmp(path, "-") == 0)
        return mode[0] == 'r' ? stdin : stdout;
    FILE *f = fopen(path, mode);
    if (!f)
        die("%s:", path);
    return f;
}

void xfclose(FILE *f, const char *path)
{
    if (f == stdin)
        return;
    if (f == stdout) {
        if (fflush(f) == EOF || ferror(f))
            die("%s: write error:", path);
        return;
    }
    int bad = ferror(f);
    if (fclose(f) == EOF || bad)
        die("%s: %s error:", path, bad ? "I/O" : "close");
}

void buf_reserve(icl_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2)
            die("out of memory (buffer of %zu bytes)", b->len + extra);
        cap *= 2;
    }
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_append(icl_buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_putc(icl_buf *b, int c)
{
    char ch = (char)c;
    buf_append(b, &ch, 1);
}

void buf_puts(icl_buf *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_printf(icl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("buf_printf: bad format");
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_clear(icl_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_free(icl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int icl_set_threads(int requested)
{
    int n = requested;
    if (n <= 0) {
        const char *e = getenv("ICL_NUM_THREADS");
        long v;
        if (e && *e) {
            if (parse_long(e, &v) || v < 1 || v > 4096)
                die("ICL_NUM_THREADS=%s: not a thread count (want 1..4096)", e);
            n = (int)v;
        }
    }
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    omp_set_num_threads(n);
    bli_thread_set_num_threads(n);
    return n;
}

static int blis_ours = -1; /* 1: icl set BLIS_ARCH_TYPE; 0: the user did or none needed */

void icl_blis_setup(void)
{
    if (blis_ours >= 0)
        return;
    blis_ours = 0;
    if (getenv("BLIS_ARCH_TYPE"))
        return; /* never override the user */
    __builtin_cpu_init();
    /* skx kernels need AVX-512 F/DQ/BW/VL; without them they crash. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
        /* Only where BLIS 0.9.0 would not pick a tuned configuration itself:
         * AMD families 0x17/0x19 (zen..zen3) and Intel skx are known to it.
         * Family is read from CPUID leaf 1. */
        unsigned a, b, c, d;
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
        int amd = (b == 0x68747541); /* "Auth"enticAMD */
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
        unsigned family = ((a >> 8) & 0xf) + (((a >> 8) & 0xf) == 0xf ? ((a >> 20) & 0xff) : 0);
        if (amd && family != 0x17 && family != 0x19) {
            setenv("BLIS_ARCH_TYPE", "0", 0);
            blis_ours = 1;
        }
    }
}

const char *icl_blis_arch(void)
{
    icl_blis_setup();
    bli_init();
    return bli_arch_string(bli_arch_query_id());
}

void icl_print_version(void)
{
    const char *arch = icl_blis_arch();
    printf("%s (icl) %s\n", icl_progname, ICL_VERSION);
    printf("BLIS %s, kernels: %s (%s)\n", bli_info_get_version_str(), arch,
           blis_ours == 1 ? "selected by icl: BLIS_ARCH_TYPE=0 for this CPU"
           : getenv("BLIS_ARCH_TYPE") ? "from BLIS_ARCH_TYPE in the environment"
                                      : "selected by BLIS");
}

double icl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check_stdout(void)
{
    if (fflush(stdout) == EOF || ferror(stdout)) {
        if (errno == EPIPE)
            _exit(ICL_EXIT_OK);
        if (icl_reported) /* die already said what went wrong; keep its status */
            return;
        fprintf(stderr, "%s: <stdout>: write error: %s\n", icl_progname, strerror(errno));
        _exit(ICL_EXIT_FAIL);
    }
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
    icl_blis_setup();
    atexit(check_stdout);
}
