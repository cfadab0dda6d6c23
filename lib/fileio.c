/* fileio.c - see fileio.h. */
#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* ---------------------------------------------- registry of temporaries */

enum { MAX_PENDING = 32 };
/* Names of temporary files not yet committed or aborted.  A slot is
 * published (pointer stored) only once its string is complete, and cleared
 * before the string is freed, so a signal handler sees whole names only. */
static char *volatile pending[MAX_PENDING];

static void pending_add(const char *tmp)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (!pending[i]) {
            pending[i] = icl_xstrdup(tmp);
            return;
        }
    /* full: the file is still written atomically, only not removed by a
     * signal (the same as a file written by another process) */
}

static void pending_remove(const char *tmp)
{
    for (int i = 0; i < MAX_PENDING; i++) {
        char *p = pending[i];
        if (p && strcmp(p, tmp) == 0) {
            pending[i] = NULL;
            free(p);
            return;
        }
    }
}

void icl_atomic_cleanup(void)
{
    for (int i = 0; i < MAX_PENDING; i++) {
        char *p = pending[i];
        if (p)
            unlink(p);
    }
}

/* ------------------------------------------------------ the fd interface */

int icl_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int icl_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!a || !b || !strcmp(a, "-") || !strcmp(b, "-") || stat(a, &sa) || stat(b, &sb))
        return 0;
    return S_ISREG(sa.st_mode) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

#define TMP_SUFFIX ".tmp.XXXXXX"

/* The file a write to path lands on, malloc'd: path, or, when path is a
 * symbolic link, what it points to, followed link by link as open() does
 * (a relative target is relative to the link's folder; a dangling link
 * names the file to create).  More than 40 links: path (open then fails). */
static char *link_target(const char *path)
{
    char *p = icl_xstrdup(path);
    for (int hop = 0; hop < 40; hop++) {
        struct stat st;
        char buf[PATH_MAX];
        ssize_t n;
        if (lstat(p, &st) != 0 || !S_ISLNK(st.st_mode) || (n = readlink(p, buf, sizeof buf - 1)) <= 0)
            return p;
        buf[n] = 0;
        char *q;
        const char *slash = strrchr(p, '/');
        if (buf[0] == '/' || !slash) {
            q = icl_xstrdup(buf);
        } else {
            size_t dl = (size_t)(slash - p) + 1;
            q = icl_xmalloc(dl + (size_t)n + 1);
            memcpy(q, p, dl);
            memcpy(q + dl, buf, (size_t)n + 1);
        }
        free(p);
        p = q;
    }
    free(p);
    return icl_xstrdup(path);
}

int icl_atomic_open(const char *path, char *tmp, size_t tmpsz, char *err, size_t errsz)
{
    if (!*path) { /* "" would make tmp ".tmp.XXXXXX" here, "renamed" onto itself */
        icl_seterr(err, errsz, "'': an empty file name");
        return -1;
    }
    char *target = link_target(path);
    int fit = (size_t)snprintf(tmp, tmpsz, "%s" TMP_SUFFIX, target) < tmpsz;
    free(target);
    if (!fit) {
        icl_seterr(err, errsz, "%s: path too long", path);
        return -1;
    }
    struct stat st;
    int have = stat(path, &st) == 0;
    if (have && S_ISDIR(st.st_mode)) {
        icl_seterr(err, errsz, "%s: %s", path, strerror(EISDIR));
        return -1;
    }
    if (have && !S_ISREG(st.st_mode)) { /* a device, FIFO or socket: rename would replace it (as root, /dev/null) */
        icl_seterr(err, errsz, "%s: not a regular file: this file is written whole beside it and renamed over it, "
                   "which would replace it", path);
        return -1;
    }
    /* create and register with the clean-up signals held, so that a
     * signal never finds a temporary file it does not know */
    sigset_t hold, old;
    sigemptyset(&hold);
    sigaddset(&hold, SIGINT);
    sigaddset(&hold, SIGTERM);
    sigaddset(&hold, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hold, &old);
    int fd = mkstemp(tmp), e = errno;
    if (fd >= 0)
        pending_add(tmp);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (fd < 0) {
        /* the temporary file goes beside the file: name that folder */
        const char *sl = strrchr(tmp, '/');
        int dl = sl ? (sl == tmp ? 1 : (int)(sl - tmp)) : 1;
        const char *dir = sl ? tmp : ".";
        if (e == ENOENT)
            icl_seterr(err, errsz, "%s: no folder %.*s to create it in", path, dl, dir);
        else if (e == ENOTDIR)
            icl_seterr(err, errsz, "%s: %.*s is not a folder", path, dl, dir);
        else
            icl_seterr(err, errsz, "%s: cannot create a file in the folder %.*s: %s", path, dl, dir, strerror(e));
        return -1;
    }
    mode_t mode;
    if (have && S_ISREG(st.st_mode)) {
        mode = st.st_mode & 07777; /* keep the mode of the file replaced */
    } else {
        mode_t um = umask(0);
        umask(um);
        mode = 0666 & ~um;
    }
    if (fchmod(fd, mode) != 0) {
        icl_seterr(err, errsz, "%s: %s", tmp, strerror(errno));
        icl_atomic_abort(fd, tmp);
        return -1;
    }
    return fd;
}

void icl_atomic_abort(int fd, const char *tmp)
{
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    pending_remove(tmp);
}

int icl_atomic_commit(int fd, const char *tmp, const char *path, char *err, size_t errsz)
{
    if (fsync(fd) < 0) {
        icl_seterr(err, errsz, "%s: fsync: %s", path, strerror(errno));
        icl_atomic_abort(fd, tmp);
        return -1;
    }
    if (close(fd) < 0) {
        icl_seterr(err, errsz, "%s: close: %s", path, strerror(errno));
        icl_atomic_abort(-1, tmp);
        return -1;
    }
    /* the file tmp was made for: its name less the suffix (path itself, or
     * the file path links to) */
    size_t tl = strlen(tmp), sl = strlen(TMP_SUFFIX);
    char *dest = icl_xstrdup(tmp);
    if (tl > sl)
        dest[tl - sl] = 0;
    if (rename(tmp, dest) < 0) {
        icl_seterr(err, errsz, "%s: rename: %s", path, strerror(errno));
        icl_atomic_abort(-1, tmp);
        free(dest);
        return -1;
    }
    pending_remove(tmp);
    char *d = dest;
    int dfd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(d);
    if (dfd >= 0) {
        fsync(dfd); /* best effort: some file systems refuse fsync on folders */
        close(dfd);
    }
    return 0;
}

int icl_write_file_atomic(const char *path, const void *data, size_t n, char *err, size_t errsz)
{
    size_t tsz = strlen(path) + ICL_ATOMIC_TMP_MAX;
    char *tmp = icl_xmalloc(tsz);
    int fd = icl_atomic_open(path, tmp, tsz, err, errsz), rc = -1;
    if (fd >= 0) {
        if (icl_write_all(fd, data, n) < 0) {
            icl_seterr(err, errsz, "%s: write: %s", path, strerror(errno));
            icl_atomic_abort(fd, tmp);
        } else {
            rc = icl_atomic_commit(fd, tmp, path, err, errsz);
        }
    }
    free(tmp);
    return rc;
}

/* -------------------------------------------------- the stdio interface */

enum { MAX_OUT = 32 };
static struct {
    FILE *f;
    char *tmp; /* NULL: written directly, nothing to rename or remove */
} outs[MAX_OUT];

FILE *icl_out_open(const char *path, char *err, size_t errsz)
{
    if (strcmp(path, "-") == 0)
        return stdout;
    int slot = 0;
    while (slot < MAX_OUT && outs[slot].f)
        slot++;
    if (slot == MAX_OUT) {
        icl_seterr(err, errsz, "%s: too many output files", path);
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        FILE *f = fopen(path, "w");
        if (!f) {
            icl_seterr(err, errsz, "%s: %s", path, strerror(errno));
            return NULL;
        }
        outs[slot].f = f;
        return f;
    }
    size_t tsz = strlen(path) + ICL_ATOMIC_TMP_MAX;
    char *tmp = icl_xmalloc(tsz);
    int fd = icl_atomic_open(path, tmp, tsz, err, errsz);
    if (fd < 0) {
        free(tmp);
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        icl_seterr(err, errsz, "%s: %s", path, strerror(errno));
        icl_atomic_abort(fd, tmp);
        free(tmp);
        return NULL;
    }
    outs[slot].f = f;
    outs[slot].tmp = tmp;
    return f;
}

static int out_slot(FILE *f)
{
    for (int i = 0; i < MAX_OUT; i++)
        if (outs[i].f == f)
            return i;
    return -1;
}

static void out_release(int slot)
{
    free(outs[slot].tmp);
    outs[slot].tmp = NULL;
    outs[slot].f = NULL;
}

void icl_out_abort(FILE *f)
{
    int slot = out_slot(f);
    if (f == stdout || slot < 0)
        return;
    fclose(f);
    if (outs[slot].tmp)
        icl_atomic_abort(-1, outs[slot].tmp);
    out_release(slot);
}

int icl_out_commit(FILE *f, const char *path, char *err, size_t errsz)
{
    if (f == stdout) {
        if (fflush(f) == EOF || ferror(f)) {
            icl_seterr(err, errsz, "%s: write error: %s", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    int slot = out_slot(f);
    if (slot < 0) {
        icl_seterr(err, errsz, "%s: icl_out_commit of a stream icl_out_open did not open", path);
        return -1;
    }
    char *tmp = outs[slot].tmp;
    int bad = fflush(f) == EOF || ferror(f);
    int e = errno;
    if (bad || !tmp) { /* written directly, or failed: close and report */
        if (fclose(f) == EOF && !bad) {
            bad = 1;
            e = errno;
        }
        if (tmp)
            icl_atomic_abort(-1, tmp);
        out_release(slot);
        if (bad)
            icl_seterr(err, errsz, "%s: write error: %s", path, strerror(e));
        return bad ? -1 : 0;
    }
    /* icl_atomic_commit closes the descriptor: detach it from the stream
     * (already flushed) by duplicating it first */
    int fd = dup(fileno(f));
    fclose(f);
    int rc;
    if (fd < 0) {
        icl_seterr(err, errsz, "%s: %s", path, strerror(errno));
        icl_atomic_abort(-1, tmp);
        rc = -1;
    } else {
        rc = icl_atomic_commit(fd, tmp, path, err, errsz);
    }
    out_release(slot);
    return rc;
}

/* ------------------------------------------------------------- reading */

void (*icl_on_stdin)(void);

FILE *icl_fopen_in(const char *path, char *err, size_t errsz)
{
    if (strcmp(path, "-") == 0) {
        if (icl_on_stdin)
            icl_on_stdin();
        return stdin;
    }
    if (!*path) {
        icl_seterr(err, errsz, "'': an empty file name");
        errno = ENOENT;
        return NULL;
    }
    FILE *f = fopen(path, "r");
    struct stat st;
    if (f && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        icl_seterr(err, errsz, "%s: is a folder, not a file", path);
        errno = EISDIR;
        return NULL;
    }
    if (!f)
        icl_seterr(err, errsz, "%s: %s", path, strerror(errno));
    return f;
}

char *icl_read_file(const char *path, size_t max, size_t *len, char *err, size_t errsz)
{
    int in = strcmp(path, "-") == 0;
    const char *name = in ? "<stdin>" : path;
    FILE *f = stdin;
    int fifo = 0;
    if (!*path) {
        icl_seterr(err, errsz, "'': an empty file name");
        errno = ENOENT;
        return NULL;
    }
    if (in && icl_on_stdin)
        icl_on_stdin();
    if (!in) {
        /* O_NONBLOCK: a FIFO with no writer does not block open() (it then
         * reads as empty, refused below); blocking again for the reads */
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), e = 0;
        struct stat st = {0};
        if (fd < 0)
            e = errno;
        else if (fstat(fd, &st) != 0)
            e = errno;
        else if (S_ISDIR(st.st_mode))
            e = EISDIR;
        else if (max && S_ISREG(st.st_mode) && (unsigned long long)st.st_size > max) {
            /* known too big (a sparse 10 GB file): refused without reading the cap's worth */
            close(fd);
            icl_seterr(err, errsz, "%s: larger than %zu bytes", name, max);
            errno = EFBIG;
            return NULL;
        } else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 || !(f = fdopen(fd, "rb")))
            e = errno;
        if (e) {
            if (fd >= 0)
                close(fd);
            icl_seterr(err, errsz, "%s: %s", name, strerror(e));
            errno = e;
            return NULL;
        }
        fifo = S_ISFIFO(st.st_mode);
    }
    icl_buf b = {0};
    char tmp[65536];
    size_t n;
    int big = 0;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (max && b.len + n > max) {
            big = 1;
            break;
        }
        icl_buf_append(&b, tmp, n);
    }
    int bad = ferror(f), e = errno;
    if (!in)
        fclose(f);
    if (bad || big) {
        icl_buf_free(&b);
        if (big) {
            icl_seterr(err, errsz, "%s: larger than %zu bytes", name, max);
            e = EFBIG;
        } else {
            icl_seterr(err, errsz, "%s: read error: %s", name, strerror(e));
        }
        errno = e;
        return NULL;
    }
    if (!b.data && fifo) { /* no writer (or one that wrote nothing): not a file */
        icl_seterr(err, errsz, "%s: not a regular file (a FIFO with nothing written to it)", name);
        errno = EINVAL;
        return NULL;
    }
    if (!b.data)
        icl_buf_append(&b, "", 0); /* an empty file: "" */
    *len = b.len;
    return b.data;
}

int icl_mkdirs(const char *dir)
{
    char *p = icl_xstrdup(dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                free(p);
                return -1;
            }
            *s = '/';
        }
    free(p);
    return mkdir(dir, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/* dir's parent folder, for messages and checks: "a/b/" -> "a", "b" -> ".",
 * "/b" -> "/".  A new string. */
static char *parent_of(const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    while (n > 0 && dir[n - 1] != '/')
        n--;
    if (n == 0)
        return icl_xstrdup(".");
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return icl_xstrndup(dir, n);
}

/* why dir cannot be made (errno e of mkdir or stat), in err; -1 */
static int out_dir_error(const char *dir, int e, char *err, size_t errsz)
{
    char *par = parent_of(dir);
    struct stat st;
    if (e == ENOENT && stat(par, &st) != 0)
        icl_seterr(err, errsz, "%s: no folder %s to create it in", dir, par);
    else if (e == ENOTDIR || (e == ENOENT && !S_ISDIR(st.st_mode)))
        icl_seterr(err, errsz, "%s: %s is not a folder", dir, par);
    else
        icl_seterr(err, errsz, "%s: cannot create: %s", dir, strerror(e));
    free(par);
    errno = e;
    return -1;
}

int icl_out_dir_check(const char *dir, char *err, size_t errsz)
{
    struct stat st;
    if (!*dir) {
        icl_seterr(err, errsz, "'': an empty folder name");
        errno = ENOENT;
        return -1;
    }
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        icl_seterr(err, errsz, "%s: exists and is not a folder", dir);
        errno = ENOTDIR;
        return -1;
    }
    if (errno == ENOTDIR) { /* "file/": the file itself is what is not a folder, not its parent */
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            n--;
        char *name = icl_xstrndup(dir, n);
        int file = n < strlen(dir) && stat(name, &st) == 0 && !S_ISDIR(st.st_mode);
        free(name);
        if (file) {
            icl_seterr(err, errsz, "%s: exists and is not a folder", dir);
            errno = ENOTDIR;
            return -1;
        }
        errno = ENOTDIR;
    }
    if (errno != ENOENT)
        return out_dir_error(dir, errno, err, errsz);
    /* a link to nothing (mkdir(1): "File exists"; the files would go
     * nowhere): lstat on the name without its trailing slashes, which
     * would follow the link */
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    char *name = icl_xstrndup(dir, n), to[512];
    ssize_t tl = lstat(name, &st) == 0 && S_ISLNK(st.st_mode) ? readlink(name, to, sizeof to - 1) : -1;
    free(name);
    if (tl >= 0) {
        to[tl] = '\0';
        icl_seterr(err, errsz, "%s: a link to %s, which does not exist", dir, to);
        errno = ENOENT;
        return -1;
    }
    char *par = parent_of(dir);
    int e = stat(par, &st) != 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
    free(par);
    return e ? out_dir_error(dir, e, err, errsz) : 0;
}

int icl_out_dir_make(const char *dir, char *err, size_t errsz)
{
    if (!*dir)
        return icl_out_dir_check(dir, err, errsz);
    if (mkdir(dir, 0777) == 0)
        return 1;
    if (errno != EEXIST)
        return out_dir_error(dir, errno, err, errsz);
    return icl_out_dir_check(dir, err, errsz);
}

/* ------------------------------------------------ folders all or nothing */

char *icl_stage_dir(const char *dir, char *err, size_t errsz)
{
    struct stat st;
    char *real = NULL;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            icl_seterr(err, errsz, "%s: exists and is not a folder", dir);
            return NULL;
        }
        real = realpath(dir, NULL); /* a link: the temporary goes beside its target (one file system) */
    } else if (icl_out_dir_check(dir, err, errsz) != 0) { /* its parent must exist */
        return NULL;
    }
    const char *base = real ? real : dir;
    size_t n = strlen(base);
    while (n > 1 && base[n - 1] == '/')
        n--;
    char *tmp = icl_xmalloc(n + 16);
    memcpy(tmp, base, n);
    strcpy(tmp + n, ".tmp.XXXXXX");
    free(real);
    if (!mkdtemp(tmp)) {
        icl_seterr(err, errsz, "%s: cannot create a folder beside it: %s", dir, strerror(errno));
        free(tmp);
        return NULL;
    }
    mode_t um = umask(0);
    umask(um);
    (void)chmod(tmp, 0755 & ~um); /* as icl_mkdirs would have made dir */
    return tmp;
}

void icl_stage_abort(const char *tmp)
{
    DIR *d = opendir(tmp);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                char *p = icl_path_join(tmp, e->d_name);
                unlink(p);
                free(p);
            }
        closedir(d);
    }
    rmdir(tmp);
}

/* rename tmp/name to dir/name; 0 or -1 with err */
static int stage_move(const char *tmp, const char *dir, const char *name, char *err, size_t errsz)
{
    char *a = icl_path_join(tmp, name), *b = icl_path_join(dir, name);
    int rc = rename(a, b);
    if (rc)
        icl_seterr(err, errsz, "%s: cannot move %s into place: %s", b, a, strerror(errno));
    free(a);
    free(b);
    return rc;
}

static int stage_unlink(const char *dir, const char *name, char *err, size_t errsz)
{
    char *p = icl_path_join(dir, name);
    int rc = unlink(p) && errno != ENOENT ? -1 : 0;
    if (rc)
        icl_seterr(err, errsz, "%s: cannot remove the old file: %s", p, strerror(errno));
    free(p);
    return rc;
}

int icl_stage_commit(const char *tmp, const char *dir, const char *const *owned, char *err, size_t errsz)
{
    if (rename(tmp, dir) == 0) /* dir absent or an empty folder */
        return 0;
    /* EBUSY: dir is "." or ".." (or a mount point): moved file by file */
    if (errno != ENOTEMPTY && errno != EEXIST && errno != ENOTDIR && errno != EBUSY) {
        icl_seterr(err, errsz, "%s: cannot move %s into place: %s", dir, tmp, strerror(errno));
        return -1;
    }
    /* a folder with files: its config.json out first, the new one in last */
    struct stat st;
    char *cj = icl_path_join(tmp, "config.json");
    int have_cj = stat(cj, &st) == 0;
    free(cj);
    if (stage_unlink(dir, "config.json", err, errsz))
        return -1;
    for (int i = 0; owned && owned[i]; i++) { /* what the new folder lacks is stale */
        char *p = icl_path_join(tmp, owned[i]);
        int stale = stat(p, &st) != 0;
        free(p);
        if (stale && stage_unlink(dir, owned[i], err, errsz))
            return -1;
    }
    DIR *d = opendir(tmp);
    if (!d) {
        icl_seterr(err, errsz, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "config.json"))
            rc = stage_move(tmp, dir, e->d_name, err, errsz);
    closedir(d);
    if (!rc && have_cj)
        rc = stage_move(tmp, dir, "config.json", err, errsz);
    if (!rc)
        rmdir(tmp);
    return rc;
}

int icl_map_file(const char *path, void **map, size_t *len, char *err, size_t errsz)
{
    *map = NULL;
    *len = 0;
    /* O_NONBLOCK: a FIFO named like a model file must not block the open */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        icl_seterr(err, errsz, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        icl_seterr(err, errsz, "%s: %s", path, S_ISDIR(st.st_mode) ? "is a folder" : "not a regular file");
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    if (n > 0) {
        void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            icl_seterr(err, errsz, "%s: mmap: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        *map = m;
    }
    close(fd);
    *len = n;
    return 0;
}

void icl_unmap_file(void *map, size_t len)
{
    if (map)
        munmap(map, len);
}

char *icl_path_abs(const char *path, char *err, size_t errsz)
{
    char *cwd = NULL;
    if (path[0] != '/' && !(cwd = getcwd(NULL, 0))) {
        icl_seterr(err, errsz, "%s: cannot make the path absolute: the current folder: %s", path, strerror(errno));
        return NULL;
    }
    char *full = cwd ? icl_path_join(cwd, path) : icl_xstrdup(path), *out = icl_xmalloc(strlen(full) + 2);
    free(cwd);
    size_t k = 0; /* out[0..k): "" or "/a/b" */
    for (char *seg = full; *seg;) {
        size_t n = strcspn(seg, "/");
        if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            while (k > 0 && out[k - 1] != '/')
                k--;
            if (k > 0)
                k--; /* the '/' before it; "/.." is "/" */
        } else if (n > 0 && !(n == 1 && seg[0] == '.')) {
            out[k++] = '/';
            memcpy(out + k, seg, n);
            k += n;
        }
        seg += n;
        while (*seg == '/')
            seg++;
    }
    if (k == 0)
        out[k++] = '/';
    out[k] = 0;
    free(full);
    return out;
}

char *icl_path_join(const char *dir, const char *file)
{
    size_t la = strlen(dir), n = la + strlen(file) + 2;
    while (la > 1 && dir[la - 1] == '/')
        la--;
    const char *sep = la == 0 || (la == 1 && dir[0] == '/') ? "" : "/";
    char *p = icl_xmalloc(n);
    snprintf(p, n, "%.*s%s%s", (int)la, dir, sep, file);
    return p;
}
