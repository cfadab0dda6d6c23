/* outfile.c - see outfile.h. */
#include "outfile.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

enum { MAX_PENDING = 16 };
static struct {
    FILE *f;
    char *tmp; /* NULL: written directly, nothing to rename or remove */
} pending[MAX_PENDING];
static int registered;

/* At exit: remove the temporary files of outputs never committed. */
static void remove_pending(void)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending[i].f) {
            if (pending[i].tmp)
                unlink(pending[i].tmp);
            free(pending[i].tmp);
            pending[i].f = NULL;
            pending[i].tmp = NULL;
        }
}

/* On SIGINT, SIGTERM or SIGHUP: remove the temporary files (unlink is
 * async-signal-safe), then die of the signal as before. */
static void on_signal(int sig)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending[i].f && pending[i].tmp)
            unlink(pending[i].tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_signals(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
            signal(sigs[i], on_signal);
    }
}

FILE *icl_out_open(const char *path)
{
    if (strcmp(path, "-") == 0)
        return stdout;
    int slot = 0;
    while (slot < MAX_PENDING && pending[slot].f)
        slot++;
    if (slot == MAX_PENDING)
        die("%s: too many output files", path);
    if (!registered) {
        atexit(remove_pending);
        catch_signals();
        registered = 1;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode)) {
            errno = EISDIR;
            die("%s:", path);
        }
        FILE *f = fopen(path, "w");
        if (!f)
            die("%s:", path);
        pending[slot].f = f;
        return f;
    }
    size_t n = strlen(path);
    char *tmp = xmalloc(n + 16);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        errno = e;
        die("%s:", path);
    }
    mode_t um = umask(0);
    umask(um);
    FILE *f = fdopen(fd, "w");
    if (fchmod(fd, 0666 & ~um) != 0 || !f) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        errno = e;
        die("%s:", path);
    }
    pending[slot].f = f;
    pending[slot].tmp = tmp;
    return f;
}

void icl_out_commit(FILE *f, const char *path)
{
    if (f == stdout) {
        if (fflush(f) == EOF || ferror(f))
            die("%s: write error:", path);
        return;
    }
    int slot = 0;
    while (slot < MAX_PENDING && pending[slot].f != f)
        slot++;
    if (slot == MAX_PENDING)
        die("%s: icl_out_commit of a file icl_out_open did not open", path);
    int bad = fflush(f) == EOF || ferror(f);
    if (!bad && pending[slot].tmp && fsync(fileno(f)) != 0)
        bad = 1;
    int e = errno;
    /* the stream is gone after fclose whatever it returns; the slot keeps
     * the (no longer used) pointer so that remove_pending cleans up */
    if (fclose(f) == EOF && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        errno = e;
        die("%s: write error:", path);
    }
    if (pending[slot].tmp && rename(pending[slot].tmp, path) != 0)
        die("%s: cannot replace:", path);
    free(pending[slot].tmp);
    pending[slot].tmp = NULL;
    pending[slot].f = NULL;
}
