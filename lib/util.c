/* util.c - see util.h. */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>
#include <omp.h>

#include <blis.h>

const char *icl_progname = "icl";

/* The allocation wrappers' one exit: a library that runs out of memory has
 * no better answer (doc/DESIGN.md, "Conventions"). */
_Noreturn static void oom(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void oom(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "%s: ", icl_progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(ICL_EXIT_FAIL);
}

void icl_out_of_memory(const char *what) { oom("out of memory (%s)", what); }

void icl_seterr(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

void *icl_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom("out of memory (%zu bytes)", n);
    return p;
}

void *icl_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

void *icl_xcalloc_huge(size_t n, size_t size)
{
    const size_t huge = (size_t)2 << 20;
    if (size && n > SIZE_MAX / size)
        oom("out of memory (%zu x %zu bytes)", n, size);
    size_t b = n * size;
    if (b < ICL_HUGE_MIN)
        return icl_xcalloc(n, size);
    size_t sz = (b + huge - 1) & ~(huge - 1); /* aligned_alloc: a multiple of the alignment */
    void *p = aligned_alloc(huge, sz);
    if (!p)
        oom("out of memory (%zu x %zu bytes)", n, size);
    (void)madvise(p, sz, MADV_HUGEPAGE); /* advice: EINVAL without THP, then plain pages */
    memset(p, 0, sz);                    /* first touch after the advice */
    return p;
}

void *icl_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        oom("out of memory (%zu bytes)", n);
    return p;
}

void *icl_xreallocarray(void *p, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        oom("out of memory (%zu x %zu bytes overflows)", n, size);
    return icl_xrealloc(p, n * size);
}

char *icl_xstrdup(const char *s) { return icl_xstrndup(s, strlen(s)); }

char *icl_xstrndup(const char *s, size_t n)
{
    char *p = icl_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void icl_buf_reserve(icl_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2)
            oom("out of memory (buffer of %zu bytes)", b->len + extra);
        cap *= 2;
    }
    b->data = icl_xrealloc(b->data, cap);
    b->cap = cap;
}

void icl_buf_append(icl_buf *b, const void *p, size_t n)
{
    icl_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void icl_buf_putc(icl_buf *b, int c)
{
    char ch = (char)c;
    icl_buf_append(b, &ch, 1);
}

void icl_buf_puts(icl_buf *b, const char *s) { icl_buf_append(b, s, strlen(s)); }

void icl_buf_printf(icl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom("icl_buf_printf: bad format");
    icl_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void icl_buf_clear(icl_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void icl_buf_free(icl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int icl_parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int icl_parse_double(const char *s, double *out)
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
            if (icl_parse_long(e, &v) == 0 && v >= 1 && v <= 4096)
                n = (int)v; /* else ignored here; icl_init reports it */
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

const char *icl_blis_arch_source(void)
{
    return blis_ours == 1 ? "selected by icl: BLIS_ARCH_TYPE=0 for this CPU"
           : getenv("BLIS_ARCH_TYPE") ? "from BLIS_ARCH_TYPE in the environment"
                                      : "selected by BLIS";
}

const char *icl_blis_version(void) { return bli_info_get_version_str(); }

const char *icl_blis_arch(void)
{
    icl_blis_setup();
    bli_init();
    return bli_arch_string(bli_arch_query_id());
}

double icl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
