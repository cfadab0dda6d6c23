/* util.h - the library's error voice (icl_seterr), checked allocation,
 * growable buffers, number parsing, threads, BLIS set-up.
 *
 * What only the programs do (messages on stderr, exits, signals, options)
 * is in lib/cli.h.
 */
#ifndef ICL_UTIL_H
#define ICL_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ICL_VERSION "0.1.0"

/* Exit codes shared by every program (doc/DESIGN.md, "Conventions"). */
enum { ICL_EXIT_OK = 0, ICL_EXIT_FAIL = 1, ICL_EXIT_USAGE = 2 };

/* Basename of argv[0], set by icl_init (lib/cli.h); "icl" before. */
extern const char *icl_progname;

/* Library error reporting, the one voice of lib/: format a message into
 * err[errsz] (no-op when err is NULL or errsz 0; truncated to fit).  Library
 * functions return -1 / NULL and leave the message here; only the programs
 * (cmd/, through lib/cli.h) print it and exit. */
void icl_seterr(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Allocation that never returns NULL: on failure it prints
 * "prog: out of memory (N bytes)" and exits 1 (the only exits in lib/).
 * icl_xmalloc(0) returns a unique non-NULL pointer.  Caller frees with free(). */
void *icl_xmalloc(size_t n);
/* The same exit for memory a library allocated for us (libcsv, xxhash,
 * pcre2 match data): "prog: out of memory (what)". */
_Noreturn void icl_out_of_memory(const char *what);
void *icl_xcalloc(size_t n, size_t size);
/* icl_xcalloc_huge: as icl_xcalloc (zeroed, exits when out of memory, freed
 * with free()), for large arrays that BLIS multiplies (weights, their
 * gradients, activations): from ICL_HUGE_MIN bytes on the memory is aligned
 * to 2 MiB and advised (madvise MADV_HUGEPAGE) onto transparent huge pages
 * before it is first touched, where the kernel allows them (THP "always" or
 * "madvise"); else, or on failure of the advice, plain pages.  With 4 KiB
 * pages, packing the 49152 x 576 LM head (113 MB) for a 256-row chunk
 * misses the TLB at every row: 1.1-1.2x faster head products
 * (bench/gemm_shapes.c, variant H).  What is computed does not change. */
#define ICL_HUGE_MIN ((size_t)4 << 20)
void *icl_xcalloc_huge(size_t n, size_t size);
/* icl_calloc_huge: the same, but NULL when out of memory (for a caller
 * that can name what it was allocating, as icl_model_load). */
void *icl_calloc_huge(size_t n, size_t size);
/* One reusable scratch block for large temporaries of one product at a
 * time (bf16.c's rounded operands and panels, linear.c's adapter sums):
 * icl_scratch_take returns a block of at least n bytes (*got: its size) or
 * NULL when out of memory; the caller has it alone until icl_scratch_give
 * (p, *got) hands it back (the larger of it and a block given meanwhile is
 * kept, the other freed).  A caller taking it while another has it
 * allocates its own, so steady-state training neither allocates nor
 * page-faults tens of MB per product.  From ICL_HUGE_MIN bytes on the
 * memory is on transparent huge pages where allowed (as
 * icl_xcalloc_huge).  Not zeroed.  icl_scratch_release frees the kept
 * block.  Thread-safe (atomic exchanges). */
void *icl_scratch_take(size_t n, size_t *got);
void icl_scratch_give(void *p, size_t n);
void icl_scratch_release(void);
void *icl_xrealloc(void *p, size_t n);
/* icl_xreallocarray: realloc to n*size bytes; exits on overflow. */
void *icl_xreallocarray(void *p, size_t n, size_t size);
char *icl_xstrdup(const char *s);
char *icl_xstrndup(const char *s, size_t n);

/* A growable byte buffer.  data is NUL-terminated after every append
 * (len excludes the NUL).  Owned by the struct; release with icl_buf_free. */
typedef struct {
    char *data;
    size_t len, cap;
} icl_buf;
void icl_buf_reserve(icl_buf *b, size_t extra);
void icl_buf_append(icl_buf *b, const void *p, size_t n);
void icl_buf_putc(icl_buf *b, int c);
void icl_buf_puts(icl_buf *b, const char *s);
void icl_buf_printf(icl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void icl_buf_clear(icl_buf *b);
void icl_buf_free(icl_buf *b);

/* Parse whole strings as numbers; return 0 on success, -1 if s is not
 * entirely a number in range (no silent truncation of "12abc").  Command-line
 * options use lib/cli.h's range-checked icl_opt_* instead. */
int icl_parse_long(const char *s, long *out);
int icl_parse_double(const char *s, double *out);

/* The programs' voice (defined in lib/cli.c, declared in lib/cli.h): a
 * library function never calls these.  Declared here too while lib/model.c,
 * lib/trainer.c and lib/dataset.c still do (issue 10, branch core). */
_Noreturn void icl_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void icl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* And for cmd/icl-train.c, which includes only this header (branch core). */
_Noreturn void icl_usage_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void icl_init(int argc, char **argv);
void icl_print_version(void);

/* The short names of the functions above, still spelled so in lib/model.c,
 * generate.c, trainer.c, optim.c, dataset.c, ops.c and cmd/icl-train.c
 * (issue 10, branch core); the symbols are the icl_ ones.  Function-like,
 * so that only calls are renamed; to be removed once those files are. */
#define xmalloc(...) icl_xmalloc(__VA_ARGS__)
#define xcalloc(...) icl_xcalloc(__VA_ARGS__)
#define xrealloc(...) icl_xrealloc(__VA_ARGS__)
#define xreallocarray(...) icl_xreallocarray(__VA_ARGS__)
#define xstrdup(...) icl_xstrdup(__VA_ARGS__)
#define xstrndup(...) icl_xstrndup(__VA_ARGS__)
#define buf_reserve(...) icl_buf_reserve(__VA_ARGS__)
#define buf_append(...) icl_buf_append(__VA_ARGS__)
#define buf_putc(...) icl_buf_putc(__VA_ARGS__)
#define buf_puts(...) icl_buf_puts(__VA_ARGS__)
#define buf_printf(...) icl_buf_printf(__VA_ARGS__)
#define buf_clear(...) icl_buf_clear(__VA_ARGS__)
#define buf_free(...) icl_buf_free(__VA_ARGS__)
#define parse_long(...) icl_parse_long(__VA_ARGS__)
#define parse_double(...) icl_parse_double(__VA_ARGS__)
#define die(...) icl_die(__VA_ARGS__)
#define warn(...) icl_warn(__VA_ARGS__)
#define usage_die(...) icl_usage_die(__VA_ARGS__)

/* Thread count: requested if > 0, else $ICL_NUM_THREADS if set and valid
 * (icl_init refuses an invalid one at program start), else the number of
 * online CPUs.  Also applies it to OpenMP (which BLIS's
 * OpenMP build shares).  Returns the count in use. */
int icl_set_threads(int requested);

/* BLIS sub-configuration.  Debian's BLIS 0.9.0 picks its kernels from CPUID,
 * and two kinds of AVX-512 machine fall through to slower ones:
 *  - AMD family 0x1A (Zen 5): unknown to 0.9.0 (it knows 0x17 and 0x19), so
 *    it runs its generic reference kernels (~41 GFLOP/s against skx's ~243);
 *  - Intel CPUs whose count of 512-bit FMA units 0.9.0 cannot read: it counts
 *    them from the brand string ("Xeon(R) Platinum", "Gold 6xxx"...) and
 *    takes skx only for 2, so a hypervisor's plain "Intel(R) Xeon(R)
 *    Processor" gets haswell (AVX2) kernels at about 2/3 of skx's speed on
 *    one thread (bench/RESULTS.md).
 * Unless the user set BLIS_ARCH_TYPE (never overridden; nothing measured),
 * icl_blis_choose decides on the CPUID facts (icl_cpu_probe) and, on Intel
 * without AMX, the measured 512-bit FMA rate (icl_fma512_ratio); when it says
 * skx we set BLIS_ARCH_TYPE to "0" (skx's index in 0.9.0's arch_t enum; names
 * are not understood by 0.9.0) before any BLIS call.  Called by icl_init
 * (lib/cli.h); idempotent.  Costs microseconds, at most ~5 ms (the
 * measurement, Intel with AVX-512 and without AMX only). */
void icl_blis_setup(void);

/* The CPUID facts icl_blis_choose and the bf16 products' AMX path
 * (lib/bf16.c icl_bf16_amx) need. */
enum { ICL_CPU_OTHER = 0, ICL_CPU_INTEL, ICL_CPU_AMD };
typedef struct {
    int vendor;      /* ICL_CPU_INTEL ("GenuineIntel"), ICL_CPU_AMD ("AuthenticAMD") or ICL_CPU_OTHER */
    unsigned family; /* display family: CPUID leaf 1 base family, plus the extended one when base is 0xF */
    int avx512;      /* 1: AVX-512 F, DQ, BW and VL all usable (CPU and OS, as gcc's
                      * __builtin_cpu_supports says); what skx's kernels need */
    int amx;         /* 1: AMX-TILE (CPUID.(EAX=7,ECX=0):EDX bit 24) */
    int amx_bf16;    /* 1: AMX-BF16 (the same leaf, EDX bit 22) */
    int amx_os;      /* 1: the OS enables the tile state: XCR0 bits 17 (XTILECFG) and 18
                      * (XTILEDATA), read with xgetbv where CPUID.1:ECX.OSXSAVE allows it
                      * (Linux still grants the tile data per process: arch_prctl) */
} icl_cpu_facts;
/* Fills *cpu from CPUID on x86-64; elsewhere all zeros (vendor other, no AVX-512). */
void icl_cpu_probe(icl_cpu_facts *cpu);

/* icl_blis_choose's answers. */
enum { ICL_BLIS_KEEP = 0, ICL_BLIS_SKX, ICL_BLIS_MEASURE };
/* Measured 512-bit / 256-bit FMA throughput from which icl selects skx on
 * Intel: 2 FMA units give 2.0, one (Skylake-SP Silver/Bronze, Ice Lake and
 * Tiger Lake client, Rocket Lake) 1.0. */
#define ICL_BLIS_SKX_RATIO 1.6
/* The decision, a pure function of its arguments (tests/unit/test_record.c):
 *  - no AVX-512 F/DQ/BW/VL: KEEP (skx's kernels would crash);
 *  - AMD: SKX unless family 0x17 or 0x19, which 0.9.0 serves itself (zen..
 *    zen3 kernels; on Zen 4 skx is no faster, doc/DESIGN.md);
 *  - Intel with AMX (Sapphire Rapids and later Xeons, which all have two
 *    512-bit FMA units): SKX without measuring.  A hypervisor may hide the
 *    brand string and even the model (here: "Intel(R) Xeon(R) Processor",
 *    model 167, Rocket Lake's number, on a CPU with AMX), not the features;
 *  - other Intel: with fma512_ratio < 0 (not measured yet) MEASURE; then SKX
 *    when fma512_ratio >= ICL_BLIS_SKX_RATIO, else KEEP (BLIS's own choice,
 *    which is skx anyway where its brand-string count says 2 units);
 *  - any other vendor: KEEP.
 * fma512_ratio: icl_fma512_ratio()'s value, or -1 when not measured. */
int icl_blis_choose(const icl_cpu_facts *cpu, double fma512_ratio);
/* Throughput of 512-bit FMAs (vfmadd231ps zmm) over 256-bit ones (ymm), in
 * floats per second, ~2.0 with two 512-bit FMA units and ~1.0 with one.
 * Each run: 12 independent accumulator chains (enough for a 4-cycle latency
 * on 2 units) of 2048 FMAs, 3-8 us.  A round times ymm, zmm, ymm and takes
 * 2 x (the faster ymm) / zmm; the answer is the best over rounds of the
 * lesser of two consecutive rounds' ratios, stopping as soon as it reaches
 * ICL_BLIS_SKX_RATIO, else after 5 ms (1024 rounds at most).  Measured here
 * (KVM guest, shared host): after idle, or while the host is busy, 512-bit
 * FMAs may run at half rate for 1-3 ms (ratio ~1.0-1.5); the 5 ms budget
 * outlasts that, so that two processes on one machine choose alike (runs
 * compared bit for bit, e.g. a resumed training against a whole one, need
 * the same kernels).  A low answer still means "not shown", never "one
 * unit"; disturbances only lower it (the zmm run sits between the two ymm
 * ones), so a high one is trustworthy.
 * Returns -1 without AVX-512F (and AVX2/FMA) or off x86-64. */
double icl_fma512_ratio(void);
/* Name of the BLIS sub-configuration in use ("skx", "haswell", "generic"...),
 * and whether icl chose it or the user's BLIS_ARCH_TYPE did. Initialises BLIS. */
const char *icl_blis_arch(void);
/* Who chose it (for --version and benchmarks): "selected by icl:
 * BLIS_ARCH_TYPE=0 (skx), ..." with the reason (the AMD family, or the
 * measured FMA ratio), "from BLIS_ARCH_TYPE in the environment" or
 * "selected by BLIS" (with the ratio where icl measured one and kept
 * BLIS's choice).  A static string, valid after icl_blis_setup. */
const char *icl_blis_arch_source(void);
/* BLIS's version string ("0.9.0"). */
const char *icl_blis_version(void);

/* Monotonic wall time in seconds. */
double icl_now(void);

#endif
