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

void *icl_calloc_huge(size_t n, size_t size)
{
    const size_t huge = (size_t)2 << 20;
    if (size && n > SIZE_MAX / size - huge)
        return NULL;
    size_t b = n * size;
    if (b < ICL_HUGE_MIN)
        return calloc(n ? n : 1, size ? size : 1);
    size_t sz = (b + huge - 1) & ~(huge - 1); /* aligned_alloc: a multiple of the alignment */
    void *p = aligned_alloc(huge, sz);
    if (!p)
        return NULL;
    (void)madvise(p, sz, MADV_HUGEPAGE); /* advice: EINVAL without THP, then plain pages */
    memset(p, 0, sz);                    /* first touch after the advice */
    return p;
}

void *icl_xcalloc_huge(size_t n, size_t size)
{
    void *p = icl_calloc_huge(n, size);
    if (!p)
        oom("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

/* icl_scratch_take / _give: see util.h. */
static void *scratch_blk;
static size_t scratch_n;

void *icl_scratch_take(size_t n, size_t *got)
{
    void *p = __atomic_exchange_n(&scratch_blk, NULL, __ATOMIC_ACQ_REL);
    size_t have = p ? __atomic_load_n(&scratch_n, __ATOMIC_ACQUIRE) : 0;
    if (p && have >= n) {
        *got = have;
        return p;
    }
    free(p);
    *got = n;
    if (n < ICL_HUGE_MIN)
        return malloc(n ? n : 1);
    /* on transparent huge pages where the kernel allows them (as
     * icl_xcalloc_huge, but NULL when out of memory): bf16.c's transposed
     * rounding and panels walk tens of MB, with 4 KiB pages missing the
     * TLB at every row */
    size_t huge = (size_t)2 << 20, sz = (n + huge - 1) & ~(huge - 1);
    p = aligned_alloc(huge, sz);
    if (p)
        (void)madvise(p, sz, MADV_HUGEPAGE); /* advice only: EINVAL without THP */
    *got = p ? sz : n;
    return p;
}

void icl_scratch_give(void *p, size_t n)
{
    void *old = __atomic_exchange_n(&scratch_blk, NULL, __ATOMIC_ACQ_REL);
    if (old && __atomic_load_n(&scratch_n, __ATOMIC_ACQUIRE) > n) {
        free(p); /* keep the larger */
        p = old;
        n = __atomic_load_n(&scratch_n, __ATOMIC_ACQUIRE);
    } else {
        free(old);
    }
    __atomic_store_n(&scratch_n, n, __ATOMIC_RELEASE);
    __atomic_store_n(&scratch_blk, p, __ATOMIC_RELEASE);
}

void icl_scratch_release(void)
{
    free(__atomic_exchange_n(&scratch_blk, NULL, __ATOMIC_ACQ_REL));
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

void icl_cpu_probe(icl_cpu_facts *cpu)
{
    memset(cpu, 0, sizeof *cpu);
#if defined(__x86_64__)
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    /* the vendor string is EBX, EDX, ECX: "Genu" "ineI" "ntel", "Auth" "enti" "cAMD" */
    if (b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e)
        cpu->vendor = ICL_CPU_INTEL;
    else if (b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163)
        cpu->vendor = ICL_CPU_AMD;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    unsigned base = (a >> 8) & 0xf, osxsave = (c >> 27) & 1;
    cpu->family = base + (base == 0xf ? ((a >> 20) & 0xff) : 0);
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    if (a >= 7) {
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
        cpu->amx = (d >> 24) & 1; /* AMX-TILE: CPUID.(7,0):EDX[24] */
        cpu->amx_bf16 = (d >> 22) & 1;
    }
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        cpu->amx_os = (lo >> 17 & 3) == 3;
    }
    __builtin_cpu_init();
    cpu->avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
}

int icl_blis_choose(const icl_cpu_facts *cpu, double fma512_ratio)
{
    if (!cpu->avx512)
        return ICL_BLIS_KEEP; /* skx kernels need AVX-512 F/DQ/BW/VL; without them they crash */
    if (cpu->vendor == ICL_CPU_AMD)
        return cpu->family == 0x17 || cpu->family == 0x19 ? ICL_BLIS_KEEP : ICL_BLIS_SKX;
    if (cpu->vendor == ICL_CPU_INTEL) {
        if (cpu->amx)
            return ICL_BLIS_SKX; /* Sapphire Rapids or later: 2 FMA units */
        if (fma512_ratio < 0)
            return ICL_BLIS_MEASURE;
        return fma512_ratio >= ICL_BLIS_SKX_RATIO ? ICL_BLIS_SKX : ICL_BLIS_KEEP;
    }
    return ICL_BLIS_KEEP;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* FMA_CHAINS independent chains acc = acc * m + p of FMA_ITERS steps each:
 * the fixed point is acc = 1 (p = 1 - m), so no value overflows or becomes
 * subnormal.  The sum is returned so that nothing can be left out.  Seconds. */
#define FMA_CHAINS 12
#define FMA_ITERS 2048
#define FMA_ROUNDS_MAX 1024
#define FMA_BUDGET_SECS 5e-3 /* past the 0.7-3 ms of half-rate zmm after idle */
__attribute__((target("avx512f"), noinline)) static double fma_zmm_secs(float *sink)
{
    __m512 acc[FMA_CHAINS];
    const __m512 m = _mm512_set1_ps(0.9990234375f), p = _mm512_set1_ps(0.0009765625f);
    for (int j = 0; j < FMA_CHAINS; j++)
        acc[j] = _mm512_set1_ps(1.0f + 0.001f * (float)j);
    double t0 = icl_now();
    for (int i = 0; i < FMA_ITERS; i++)
        for (int j = 0; j < FMA_CHAINS; j++)
            acc[j] = _mm512_fmadd_ps(acc[j], m, p);
    double t = icl_now() - t0;
    __m512 s = acc[0];
    for (int j = 1; j < FMA_CHAINS; j++)
        s = _mm512_add_ps(s, acc[j]);
    *sink += _mm512_reduce_add_ps(s);
    return t;
}

__attribute__((target("avx2,fma"), noinline)) static double fma_ymm_secs(float *sink)
{
    __m256 acc[FMA_CHAINS];
    const __m256 m = _mm256_set1_ps(0.9990234375f), p = _mm256_set1_ps(0.0009765625f);
    for (int j = 0; j < FMA_CHAINS; j++)
        acc[j] = _mm256_set1_ps(1.0f + 0.001f * (float)j);
    double t0 = icl_now();
    for (int i = 0; i < FMA_ITERS; i++)
        for (int j = 0; j < FMA_CHAINS; j++)
            acc[j] = _mm256_fmadd_ps(acc[j], m, p);
    double t = icl_now() - t0;
    __m256 s = acc[0];
    for (int j = 1; j < FMA_CHAINS; j++)
        s = _mm256_add_ps(s, acc[j]);
    float f[8];
    _mm256_storeu_ps(f, s);
    for (int k = 0; k < 8; k++)
        *sink += f[k];
    return t;
}
#endif

double icl_fma512_ratio(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return -1;
    volatile float keep;
    float sink = 0;
    double best = -1, prev = -1, t0 = icl_now();
    for (int r = 0; r < FMA_ROUNDS_MAX && icl_now() - t0 < FMA_BUDGET_SECS; r++) {
        double y1 = fma_ymm_secs(&sink), z = fma_zmm_secs(&sink), y2 = fma_ymm_secs(&sink);
        if (!(z > 0) || !(y1 > 0) || !(y2 > 0))
            continue; /* a clock too coarse to time it */
        double ratio = 2.0 * fmin(y1, y2) / z; /* a zmm FMA does 16 floats, a ymm one 8 */
        if (prev >= 0)
            best = fmax(best, fmin(prev, ratio));
        prev = ratio;
        if (best >= ICL_BLIS_SKX_RATIO)
            break;
    }
    keep = sink;
    (void)keep;
    return best;
#else
    return -1;
#endif
}

static int blis_ours = -1;    /* 1: icl set BLIS_ARCH_TYPE; 0: the user did or none needed */
static char blis_source[128]; /* icl_blis_arch_source's answer once decided */

void icl_blis_setup(void)
{
    if (blis_ours >= 0)
        return;
    blis_ours = 0;
    if (getenv("BLIS_ARCH_TYPE"))
        return; /* never override the user, nor spend time measuring */
    icl_cpu_facts cpu;
    icl_cpu_probe(&cpu);
    double ratio = -1;
    int choice = icl_blis_choose(&cpu, ratio);
    if (choice == ICL_BLIS_MEASURE) {
        ratio = icl_fma512_ratio();
        choice = ratio < 0 ? ICL_BLIS_KEEP : icl_blis_choose(&cpu, ratio);
    }
    if (choice == ICL_BLIS_SKX) {
        setenv("BLIS_ARCH_TYPE", "0", 0);
        blis_ours = 1;
        if (ratio >= 0)
            snprintf(blis_source, sizeof blis_source,
                     "selected by icl: BLIS_ARCH_TYPE=0 (skx), 512-bit FMA measured %.1fx 256-bit", ratio);
        else if (cpu.vendor == ICL_CPU_INTEL)
            snprintf(blis_source, sizeof blis_source,
                     "selected by icl: BLIS_ARCH_TYPE=0 (skx), Intel with AMX: 2 512-bit FMA units");
        else
            snprintf(blis_source, sizeof blis_source,
                     "selected by icl: BLIS_ARCH_TYPE=0 (skx), AMD family 0x%x unknown to BLIS %s", cpu.family,
                     bli_info_get_version_str());
    } else if (ratio >= 0) {
        snprintf(blis_source, sizeof blis_source, "selected by BLIS; 512-bit FMA measured %.1fx 256-bit", ratio);
    }
}

const char *icl_blis_arch_source(void)
{
    if (blis_ours == 1 || blis_source[0])
        return blis_source;
    return getenv("BLIS_ARCH_TYPE") ? "from BLIS_ARCH_TYPE in the environment" : "selected by BLIS";
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
