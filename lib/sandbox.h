/* sandbox.h - run untrusted programs (generated code and its tests, for
 * pass@k) confined by bubblewrap (bwrap(1), Debian package bubblewrap).
 *
 * Each program runs as its own process tree:
 *   - under a uid of its own (ICL_SANDBOX_UID + a number below 65535, new for each sample) when the caller is
 *     root (so RLIMIT_NPROC counts, which it never does for root), else
 *     under the caller's uid;
 *   - in new user, pid, network (loopback only, down), ipc, uts and cgroup
 *     namespaces (bwrap --unshare-all), in a new session, killed with its
 *     parent (--die-with-parent);
 *   - with the whole file system read-only (--ro-bind / /), a fresh /dev
 *     and /proc, and a private tmpfs of limited size on /tmp as its only
 *     writable place and working directory (discarded when it ends, so
 *     nothing is left behind);
 *   - with setrlimit limits on CPU time, address space, processes, file
 *     size and core dumps, a wall-clock timeout (the whole tree is killed),
 *     and at most output_max bytes of its output kept.
 * The program text reaches the sandbox through a memfd (bwrap --file), so
 * no file is written on the host.  There is no unconfined fallback: where
 * bwrap cannot create its namespaces, icl_sandbox_check fails with bwrap's
 * own message.
 */
#ifndef ICL_SANDBOX_H
#define ICL_SANDBOX_H

#include <stddef.h>

#define ICL_SANDBOX_UID 2147418112u /* 0x7fff0000: first uid of the sandbox slots (as root) */

typedef struct {
    const char *bwrap;       /* path of bwrap */
    const char *interpreter; /* path of the interpreter (python3), run as INTERPRETER program.py */
    double timeout_s;        /* wall clock per program, seconds */
    long cpu_s;              /* RLIMIT_CPU, seconds */
    long mem_bytes;          /* RLIMIT_AS, bytes */
    long nproc;              /* RLIMIT_NPROC: processes of the slot's uid */
    long fsize;              /* RLIMIT_FSIZE and the size of the /tmp tmpfs, bytes */
    size_t output_max;       /* bytes of stdout + stderr kept */
} icl_sandbox_limits;

/* Defaults: timeout 10 s, CPU 10 s, 1 GiB address space, 64 processes,
 * 16 MiB of files, 64 KiB of output; bwrap and interpreter NULL. */
void icl_sandbox_defaults(icl_sandbox_limits *lim);

/* Find an executable named name in the directories of path (a PATH-style
 * list).  Returns a new string, or NULL. */
char *icl_find_program(const char *name, const char *path);

typedef struct {
    int passed;        /* exited with status 0 within the limits */
    int timed_out;     /* killed at the wall-clock timeout */
    int exit_status;   /* exit status, or 128 + signal number */
    char *output;      /* the first output_max bytes of stdout + stderr (NUL-terminated, owned) */
    size_t output_len;
    int truncated;     /* more output was discarded */
} icl_sandbox_result;

/* Run `true` in the sandbox once: 0, or -1 with why bwrap refused (its
 * message) in err. */
int icl_sandbox_check(const icl_sandbox_limits *lim, char *err, size_t errsz);

/* Run programs[0..n) (source text, NUL-terminated), at most jobs at a time
 * (each in its own slot), filling res[0..n) (free each with
 * icl_sandbox_result_free).  progress, if not NULL, is called after each
 * program ends with the number done so far.  Returns 0, or -1 with err
 * when a sandbox could not be started at all (fork, pipe, memfd). */
int icl_sandbox_run(const icl_sandbox_limits *lim, const char *const *programs, size_t n, int jobs,
                    icl_sandbox_result *res, void (*progress)(size_t done, void *arg), void *arg,
                    char *err, size_t errsz);

void icl_sandbox_result_free(icl_sandbox_result *r);

#endif
