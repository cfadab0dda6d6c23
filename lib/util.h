/* util.h - the one error voice, checked allocation and I/O, threads, BLIS set-up.
 *
 * Every program calls icl_init(argc, argv) first thing in main: it records
 * the program name for messages, makes SIGPIPE quiet, selects the BLIS
 * sub-configuration (see icl_blis_setup) and registers the exit-time check
 * of stdout (a failed write is a failed run, as in sbase).
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

extern const char *icl_progname; /* basename of argv[0]; "icl" before icl_init */

/* Program start-up: progname, SIGPIPE -> quiet exit, BLIS arch, stdout check at exit. */
void icl_init(int argc, char **argv);

/* die: print "prog: message\n" to stderr and exit 1.  A message ending in ':'
 * gets strerror(errno) appended, as in sbase's eprintf. */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* usage_die: as die, then "Try 'prog --help'." and exit 2. */
_Noreturn void usage_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* warn: as die without exiting. */
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vwarn(const char *fmt, va_list ap);

/* Library error reporting: format a message into err[errsz] (no-op when err
 * is NULL or errsz 0; truncated to fit).  Library functions that return an
 * error to their caller, instead of dying, use this. */
void icl_seterr(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Allocation that dies ("out of memory") instead of returning NULL.
 * xmalloc(0) returns a unique non-NULL pointer.  Caller frees with free(). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
/* xreallocarray: realloc to n*size bytes; dies on overflow. */
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* xfopen: fopen that dies with the path on failure; "-" is stdin (mode "r")
 * or stdout (mode "w").  xfclose closes (never stdin/stdout) and dies on a
 * write error, naming the path. */
FILE *xfopen(const char *path, const char *mode);
void xfclose(FILE *f, const char *path);

/* A growable byte buffer.  data is NUL-terminated after every append
 * (len excludes the NUL).  Owned by the struct; release with buf_free. */
typedef struct {
    char *data;
    size_t len, cap;
} icl_buf;
void buf_reserve(icl_buf *b, size_t extra);
void buf_append(icl_buf *b, const void *p, size_t n);
void buf_putc(icl_buf *b, int c);
void buf_puts(icl_buf *b, const char *s);
void buf_printf(icl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_clear(icl_buf *b);
void buf_free(icl_buf *b);

/* Parse whole strings as numbers; return 0 on success, -1 if s is not
 * entirely a number in range (no silent truncation of "12abc"). */
int parse_long(const char *s, long *out);
int parse_double(const char *s, double *out);

/* Thread count: requested if > 0, else $ICL_NUM_THREADS if set and valid,
 * else the number of online CPUs.  Also applies it to OpenMP (which BLIS's
 * OpenMP build shares).  Returns the count in use. */
int icl_set_threads(int requested);

/* BLIS sub-configuration.  Debian's BLIS 0.9.0 does not know AMD family 0x1A
 * (Zen 5) and falls back to slow generic kernels.  When the CPU has AVX-512
 * F/DQ/BW/VL and the user has not set BLIS_ARCH_TYPE, we set it to "0" (skx's
 * index in 0.9.0's arch_t enum; names are not understood by 0.9.0) before any
 * BLIS call.  Called by icl_init; idempotent. */
void icl_blis_setup(void);
/* Name of the BLIS sub-configuration in use ("skx", "haswell", "generic"...),
 * and whether icl chose it or the user's BLIS_ARCH_TYPE did. Initialises BLIS. */
const char *icl_blis_arch(void);

/* Standard --version text: "prog (icl) 0.1.0\nBLIS kernels: skx (...)". */
void icl_print_version(void);

/* Monotonic wall time in seconds. */
double icl_now(void);

#endif
