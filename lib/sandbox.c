/* sandbox.c - see sandbox.h. */
#define _GNU_SOURCE
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

void icl_sandbox_defaults(icl_sandbox_limits *lim)
{
    memset(lim, 0, sizeof *lim);
    lim->timeout_s = 10;
    lim->cpu_s = 10;
    lim->mem_bytes = 1L << 30;
    lim->nproc = 64;
    lim->fsize = 16L << 20;
    lim->output_max = 64 << 10;
}

char *icl_find_program(const char *name, const char *path)
{
    if (strchr(name, '/'))
        return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
    if (!path)
        return NULL;
    const char *p = path;
    for (;;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0) {
            size_t l = n + strlen(name) + 2;
            char *f = xmalloc(l);
            snprintf(f, l, "%.*s/%s", (int)n, p, name);
            struct stat st;
            if (stat(f, &st) == 0 && S_ISREG(st.st_mode) && access(f, X_OK) == 0)
                return f;
            free(f);
        }
        if (!e)
            return NULL;
        p = e + 1;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    pid_t pid;
    int out;         /* read end of the output pipe, -1 at EOF */
    size_t index;    /* program */
    int slot;
    double deadline;
    int killed;
    icl_buf buf;
    int truncated;
} job;

/* Start program text in slot: fork, limits, uid, exec bwrap.  Returns 0 or
 * -1 with err. */
static int start(const icl_sandbox_limits *lim, const char *text, int slot, job *j, char *err, size_t errsz)
{
    int mfd = memfd_create("icl-sandbox-program", 0);
    if (mfd < 0) {
        snprintf(err, errsz, "memfd_create: %s", strerror(errno));
        return -1;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(mfd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errsz, "writing the program to a memfd: %s", strerror(errno));
            close(mfd);
            return -1;
        }
        off += (size_t)w;
    }
    lseek(mfd, 0, SEEK_SET);
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        snprintf(err, errsz, "pipe: %s", strerror(errno));
        close(mfd);
        return -1;
    }
    char fdstr[16], size[32];
    snprintf(fdstr, sizeof fdstr, "%d", mfd);
    snprintf(size, sizeof size, "%ld", lim->fsize);
    const char *argv[] = {
        lim->bwrap, "--unshare-all", "--die-with-parent", "--new-session",
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--size", size, "--tmpfs", "/tmp", "--file", fdstr, "/tmp/program.py",
        "--chdir", "/tmp", "--clearenv",
        "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", "/tmp",
        "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        "--", lim->interpreter, "program.py", NULL,
    };
    /* RLIMIT_NPROC counts every process of a uid, and the kernel releases a
     * finished sandbox's count only after its namespaces are torn down
     * (seen here: reusing one uid per slot made later samples fail with
     * "bwrap: Can't fork"), and two icl-eval runs must not share uids: a
     * fresh uid for every sample, spread by the caller's pid. */
    static unsigned seq;
    unsigned u = ((unsigned)getpid() * 1024u + seq++ * 64u + (unsigned)slot) % 65535u;
    uid_t id = getuid() == 0 ? (uid_t)(ICL_SANDBOX_UID + u) : getuid();
    gid_t gid = getuid() == 0 ? (gid_t)id : getgid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errsz, "fork: %s", strerror(errno));
        close(mfd);
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) { /* child: only async-signal-safe calls until exec */
        int nul = open("/dev/null", O_RDONLY);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(pfd[1], 1) < 0 || dup2(pfd[1], 2) < 0)
            _exit(126);
        for (int fd = 3; fd < 1024; fd++)
            if (fd != mfd)
                close(fd);
        signal(SIGPIPE, SIG_DFL);
        struct rlimit r;
        r.rlim_cur = r.rlim_max = (rlim_t)lim->cpu_s;
        setrlimit(RLIMIT_CPU, &r);
        r.rlim_cur = r.rlim_max = (rlim_t)lim->mem_bytes;
        setrlimit(RLIMIT_AS, &r);
        r.rlim_cur = r.rlim_max = (rlim_t)lim->fsize;
        setrlimit(RLIMIT_FSIZE, &r);
        r.rlim_cur = r.rlim_max = 0;
        setrlimit(RLIMIT_CORE, &r);
        if (getuid() == 0) {
            r.rlim_cur = r.rlim_max = (rlim_t)lim->nproc;
            setrlimit(RLIMIT_NPROC, &r);
            if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(id) != 0)
                _exit(126);
        }
        execv(lim->bwrap, (char *const *)argv);
        _exit(127);
    }
    close(mfd);
    close(pfd[1]);
    memset(j, 0, sizeof *j);
    j->pid = pid;
    j->out = pfd[0];
    j->slot = slot;
    j->deadline = now_s() + lim->timeout_s;
    return 0;
}

static void finish(const job *j, int status, icl_sandbox_result *r)
{
    memset(r, 0, sizeof *r);
    r->timed_out = j->killed;
    r->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r->passed = !j->killed && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    r->output = j->buf.data ? j->buf.data : xstrdup("");
    r->output_len = j->buf.len;
    r->truncated = j->truncated;
}

int icl_sandbox_run(const icl_sandbox_limits *lim, const char *const *programs, size_t n, int jobs,
                    icl_sandbox_result *res, void (*progress)(size_t done, void *arg), void *arg,
                    char *err, size_t errsz)
{
    if (jobs < 1)
        jobs = 1;
    job *run = xcalloc((size_t)jobs, sizeof *run);
    int *busy = xcalloc((size_t)jobs, sizeof *busy);
    struct pollfd *pf = xcalloc((size_t)jobs, sizeof *pf);
    size_t next = 0, done = 0;
    int nrun = 0, rc = 0;
    char chunk[8192];
    while (done < n) {
        while (rc == 0 && nrun < jobs && next < n) {
            int slot = 0;
            while (busy[slot])
                slot++;
            if (start(lim, programs[next], slot, &run[slot], err, errsz) != 0) {
                rc = -1;
                break;
            }
            run[slot].index = next++;
            busy[slot] = 1;
            nrun++;
        }
        if (nrun == 0)
            break;
        /* wait for output, an end or the nearest deadline */
        double t = now_s(), wait = 1.0;
        int np = 0, closed = 0;
        for (int s = 0; s < jobs; s++) {
            if (!busy[s])
                continue;
            if (!run[s].killed && run[s].deadline - t < wait)
                wait = run[s].deadline - t;
            if (run[s].out >= 0)
                pf[np++] = (struct pollfd){.fd = run[s].out, .events = POLLIN};
            else
                closed = 1;
        }
        if (closed && wait > 0.01)
            wait = 0.01; /* output closed: poll for the exit */
        if (wait < 0)
            wait = 0;
        poll(pf, (nfds_t)np, (int)(wait * 1000) + 1);
        for (int s = 0; s < jobs; s++) {
            if (!busy[s])
                continue;
            job *j = &run[s];
            if (j->out >= 0) {
                ssize_t k;
                for (;;) {
                    struct pollfd one = {.fd = j->out, .events = POLLIN};
                    if (poll(&one, 1, 0) <= 0)
                        break;
                    k = read(j->out, chunk, sizeof chunk);
                    if (k < 0 && errno == EINTR)
                        continue;
                    if (k <= 0) {
                        close(j->out);
                        j->out = -1;
                        break;
                    }
                    size_t keep = j->buf.len < lim->output_max ? lim->output_max - j->buf.len : 0;
                    if ((size_t)k > keep)
                        j->truncated = 1;
                    buf_append(&j->buf, chunk, (size_t)k < keep ? (size_t)k : keep);
                }
            }
            if (!j->killed && now_s() >= j->deadline) {
                kill(j->pid, SIGKILL); /* bwrap; --die-with-parent and the pid namespace take the rest */
                j->killed = 1;
            }
            int status;
            pid_t w = waitpid(j->pid, &status, WNOHANG);
            if (w == j->pid) {
                if (j->out >= 0) { /* drain what is left */
                    ssize_t k;
                    int fl = fcntl(j->out, F_GETFL);
                    fcntl(j->out, F_SETFL, fl | O_NONBLOCK);
                    while ((k = read(j->out, chunk, sizeof chunk)) > 0) {
                        size_t keep = j->buf.len < lim->output_max ? lim->output_max - j->buf.len : 0;
                        if ((size_t)k > keep)
                            j->truncated = 1;
                        buf_append(&j->buf, chunk, (size_t)k < keep ? (size_t)k : keep);
                    }
                    close(j->out);
                    j->out = -1;
                }
                finish(j, status, &res[j->index]);
                busy[s] = 0;
                nrun--;
                done++;
                if (progress)
                    progress(done, arg);
            }
        }
        if (rc != 0 && nrun == 0)
            break;
    }
    free(run);
    free(busy);
    free(pf);
    return rc;
}

void icl_sandbox_result_free(icl_sandbox_result *r)
{
    free(r->output);
    r->output = NULL;
}

int icl_sandbox_check(const icl_sandbox_limits *lim, char *err, size_t errsz)
{
    icl_sandbox_limits l = *lim;
    const char *prog = "pass\n";
    icl_sandbox_result r;
    if (icl_sandbox_run(&l, &prog, 1, 1, &r, NULL, NULL, err, errsz) != 0)
        return -1;
    int ok = r.passed;
    if (!ok) {
        size_t n = r.output_len;
        while (n > 0 && (r.output[n - 1] == '\n' || r.output[n - 1] == ' '))
            n--;
        snprintf(err, errsz, "the sandbox (%s running %s) does not work here: %s%.*s", l.bwrap, l.interpreter,
                 r.timed_out ? "timed out" : n ? "" : "exit status ", n ? (int)(n > 400 ? 400 : n) : 0,
                 r.output);
        if (!r.timed_out && !n) {
            size_t m = strlen(err);
            snprintf(err + m, errsz > m ? errsz - m : 0, "%d", r.exit_status);
        }
    }
    icl_sandbox_result_free(&r);
    return ok ? 0 : -1;
}
