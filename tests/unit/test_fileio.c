/* Unit tests of lib/fileio.c: the atomic writer (whole or nothing, modes,
 * clean-up of temporaries) and icl_read_file (caps, errors). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "util.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/icl-fileio.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_in(char *p, size_t n, const char *name) { snprintf(p, n, "%s/%s", dir, name); }

/* Entries of dir whose name starts with prefix. */
static int count_prefix(const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* icl_same_file: by device and inode, through links and other names. */
static void same_file_by_inode(void **state)
{
    (void)state;
    char a[512], b[512], h[512], l[512], other[512], dot[600];
    path_in(a, sizeof a, "same-a");
    path_in(b, sizeof b, "same-b");
    path_in(h, sizeof h, "same-hard");
    path_in(l, sizeof l, "same-link");
    path_in(other, sizeof other, "same-missing");
    snprintf(dot, sizeof dot, "%s/./same-a", dir);
    FILE *f = fopen(a, "w");
    assert_non_null(f);
    fclose(f);
    f = fopen(b, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(link(a, h), 0);
    assert_int_equal(symlink(a, l), 0);
    assert_int_equal(icl_same_file(a, a), 1);
    assert_int_equal(icl_same_file(a, dot), 1);
    assert_int_equal(icl_same_file(a, h), 1);
    assert_int_equal(icl_same_file(l, a), 1);
    assert_int_equal(icl_same_file(a, b), 0);   /* two empty files are still two */
    assert_int_equal(icl_same_file(a, other), 0);
    assert_int_equal(icl_same_file("-", "-"), 0);
    assert_int_equal(icl_same_file(a, NULL), 0);
    assert_int_equal(icl_same_file("/dev/null", "/dev/null"), 0); /* devices may be shared */
    unlink(a), unlink(b), unlink(h), unlink(l);
}

static void write_then_read_back(void **state)
{
    (void)state;
    char p[512], err[256];
    path_in(p, sizeof p, "a.bin");
    const char data[] = "one\0two\nthree"; /* a NUL inside */
    assert_int_equal(icl_write_file_atomic(p, data, sizeof data, err, sizeof err), 0);
    size_t n;
    char *back = icl_read_file(p, 0, &n, err, sizeof err);
    assert_non_null(back);
    assert_int_equal(n, sizeof data);
    assert_memory_equal(back, data, n);
    assert_int_equal(back[n], '\0'); /* always NUL-terminated */
    free(back);
    assert_int_equal(count_prefix("a.bin.tmp."), 0);
}

static void modes_kept_or_from_umask(void **state)
{
    (void)state;
    char p[512], err[256];
    struct stat st;
    path_in(p, sizeof p, "private");
    assert_int_equal(icl_write_file_atomic(p, "x", 1, err, sizeof err), 0);
    assert_int_equal(chmod(p, 0600), 0);
    assert_int_equal(icl_write_file_atomic(p, "yy", 2, err, sizeof err), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 2);
    mode_t old = umask(027);
    path_in(p, sizeof p, "new027");
    assert_int_equal(icl_write_file_atomic(p, "z", 1, err, sizeof err), 0);
    umask(old);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
}

/* An aborted write leaves the old file as it was and no temporary; an
 * uncommitted one is removed by icl_atomic_cleanup (the programs' exit and
 * signal handlers). */
static void abort_and_cleanup(void **state)
{
    (void)state;
    char p[512], tmp[600], err[256];
    path_in(p, sizeof p, "keep");
    assert_int_equal(icl_write_file_atomic(p, "old", 3, err, sizeof err), 0);
    int fd = icl_atomic_open(p, tmp, sizeof tmp, err, sizeof err);
    assert_true(fd >= 0);
    assert_int_equal(icl_write_all(fd, "new!", 4), 0);
    icl_atomic_abort(fd, tmp);
    assert_int_equal(count_prefix("keep.tmp."), 0);
    fd = icl_atomic_open(p, tmp, sizeof tmp, err, sizeof err);
    assert_true(fd >= 0);
    assert_int_equal(count_prefix("keep.tmp."), 1);
    icl_atomic_cleanup();
    assert_int_equal(count_prefix("keep.tmp."), 0);
    close(fd);
    size_t n;
    char *back = icl_read_file(p, 0, &n, err, sizeof err);
    assert_non_null(back);
    assert_int_equal(n, 3);
    assert_memory_equal(back, "old", 3);
    free(back);
    icl_atomic_abort(-1, tmp); /* unregister (the file is already gone) */
}

static void stdio_outputs(void **state)
{
    (void)state;
    char p[512], err[256];
    path_in(p, sizeof p, "out.jsonl");
    FILE *f = icl_out_open(p, err, sizeof err);
    assert_non_null(f);
    fputs("{}\n", f);
    assert_int_equal(access(p, F_OK), -1); /* nothing under the name before commit */
    assert_int_equal(icl_out_commit(f, p, err, sizeof err), 0);
    assert_int_equal(access(p, F_OK), 0);
    /* abort: no file */
    path_in(p, sizeof p, "gone.jsonl");
    f = icl_out_open(p, err, sizeof err);
    assert_non_null(f);
    fputs("x", f);
    icl_out_abort(f);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(count_prefix("gone.jsonl.tmp."), 0);
    /* a folder is an error naming it */
    assert_null(icl_out_open(dir, err, sizeof err));
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, "Is a directory"));
    /* a full device: the write error is reported by commit */
    if (access("/dev/full", W_OK) == 0) {
        f = icl_out_open("/dev/full", err, sizeof err);
        assert_non_null(f);
        for (int i = 0; i < 100000; i++)
            fputs("0123456789", f);
        assert_int_equal(icl_out_commit(f, "/dev/full", err, sizeof err), -1);
        assert_non_null(strstr(err, "/dev/full: write error: No space left on device"));
    }
}

static char *contents(const char *p)
{
    size_t n;
    char err[256];
    return icl_read_file(p, 0, &n, err, sizeof err);
}

/* -o onto a symbolic link writes the file it points to and keeps the link
 * (was: the link replaced by a file; issue 18, defect 7) */
static void writes_through_links(void **state)
{
    (void)state;
    char t[512], l[512], l2[512], d[512], dt[512], err[256];
    struct stat st;
    path_in(t, sizeof t, "lt-target");
    path_in(l, sizeof l, "lt-link");
    path_in(l2, sizeof l2, "lt-link2");
    assert_int_equal(icl_write_file_atomic(t, "old", 3, err, sizeof err), 0);
    assert_int_equal(chmod(t, 0600), 0);
    assert_int_equal(symlink("lt-target", l), 0);  /* relative to the link's folder */
    assert_int_equal(symlink("lt-link", l2), 0);   /* a chain */
    assert_int_equal(icl_write_file_atomic(l2, "new", 3, err, sizeof err), 0);
    assert_int_equal(lstat(l, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(lstat(l2, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    char *s = contents(t);
    assert_string_equal(s, "new");
    free(s);
    assert_int_equal(stat(t, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600); /* the target's mode kept */
    /* the stdio interface */
    FILE *f = icl_out_open(l, err, sizeof err);
    assert_non_null(f);
    fputs("via stdio\n", f);
    assert_int_equal(icl_out_commit(f, l, err, sizeof err), 0);
    assert_int_equal(lstat(l, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    s = contents(t);
    assert_string_equal(s, "via stdio\n");
    free(s);
    /* a dangling link: the file it names is created, the link stays */
    path_in(d, sizeof d, "lt-dangling");
    path_in(dt, sizeof dt, "lt-created");
    assert_int_equal(symlink("lt-created", d), 0);
    assert_int_equal(icl_write_file_atomic(d, "x", 1, err, sizeof err), 0);
    assert_int_equal(lstat(d, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    s = contents(dt);
    assert_string_equal(s, "x");
    free(s);
    unlink(l2);
    unlink(l);
    unlink(t);
    unlink(d);
    unlink(dt);
}

static void path_join(void **state)
{
    (void)state;
    const char *cases[][3] = {{"run", "f", "run/f"},    {"run/", "f", "run/f"}, {"run//", "f", "run/f"},
                              {"/", "f", "/f"},         {"", "f", "f"},         {"a/b", "c.json", "a/b/c.json"},
                              {"//", "x", "/x"},        {".", "x", "./x"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = icl_path_join(cases[i][0], cases[i][1]);
        assert_string_equal(p, cases[i][2]);
        free(p);
    }
}

/* os.path.abspath's results (Python 3.11) for the same paths */
static void path_abs(void **state)
{
    (void)state;
    char err[256], *cwd = getcwd(NULL, 0), want[4096];
    assert_non_null(cwd);
    const char *abs[][2] = {{"/a/b/../c", "/a/c"}, {"/a/./b/", "/a/b"}, {"/..", "/"},        {"/", "/"},
                            {"/a//b", "/a/b"},     {"/a/b/..", "/a"},   {"/a/../../b", "/b"}, {"/x/.../y", "/x/.../y"}};
    for (size_t i = 0; i < sizeof abs / sizeof abs[0]; i++) {
        char *p = icl_path_abs(abs[i][0], err, sizeof err);
        assert_non_null(p);
        assert_string_equal(p, abs[i][1]);
        free(p);
    }
    const char *rel[][2] = {{"x/./y/", "/x/y"}, {"run", "/run"}, {"", ""}, {".", ""}, {"a/../b", "/b"}};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(want, sizeof want, "%s%s", cwd, rel[i][1]);
        char *p = icl_path_abs(rel[i][0], err, sizeof err);
        assert_non_null(p);
        assert_string_equal(p, want);
        free(p);
    }
    char *up = icl_path_abs("../z", err, sizeof err), *slash = strrchr(cwd, '/');
    snprintf(want, sizeof want, "%.*s/z", (int)(slash - cwd), cwd);
    assert_string_equal(up, slash == cwd ? "/z" : want);
    free(up);
    free(cwd);
}

static void read_file_errors(void **state)
{
    (void)state;
    char p[512], err[256];
    size_t n;
    path_in(p, sizeof p, "nosuch");
    errno = 0;
    assert_null(icl_read_file(p, 0, &n, err, sizeof err));
    assert_int_equal(errno, ENOENT);
    assert_non_null(strstr(err, "nosuch: No such file or directory"));
    /* the cap: a file one byte over is refused, one at the cap is read */
    path_in(p, sizeof p, "ten");
    assert_int_equal(icl_write_file_atomic(p, "0123456789", 10, err, sizeof err), 0);
    errno = 0;
    assert_null(icl_read_file(p, 9, &n, err, sizeof err));
    assert_int_equal(errno, EFBIG);
    assert_non_null(strstr(err, "ten: larger than 9 bytes"));
    char *s = icl_read_file(p, 10, &n, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(n, 10);
    free(s);
    /* an endless file stops at the cap */
    if (access("/dev/zero", R_OK) == 0) {
        assert_null(icl_read_file("/dev/zero", 1 << 20, &n, err, sizeof err));
        assert_int_equal(errno, EFBIG);
    }
    /* a folder: refused, naming it */
    errno = 0;
    assert_null(icl_read_file(dir, 0, &n, err, sizeof err));
    assert_int_equal(errno, EISDIR);
    assert_non_null(strstr(err, ": Is a directory"));
    /* a FIFO nobody writes to: an error at once, not a blocked open()
     * (issue 18, defect 10) */
    path_in(p, sizeof p, "fifo");
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_null(icl_read_file(p, 0, &n, err, sizeof err));
    assert_non_null(strstr(err, "fifo: not a regular file (a FIFO with nothing written to it)"));
    unlink(p);
    /* a pipe with a writer (a shell's <(...)): read whole */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(write(pfd[1], "abc", 3), 3);
    close(pfd[1]);
    char dev[64];
    snprintf(dev, sizeof dev, "/dev/fd/%d", pfd[0]);
    s = icl_read_file(dev, 0, &n, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(n, 3);
    assert_string_equal(s, "abc");
    free(s);
    close(pfd[0]);
    /* an empty file: length 0, a valid empty string */
    path_in(p, sizeof p, "empty");
    assert_int_equal(icl_write_file_atomic(p, "", 0, err, sizeof err), 0);
    s = icl_read_file(p, 0, &n, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(n, 0);
    assert_int_equal(s[0], '\0');
    free(s);
}

/* Output folders: the last component is created, a missing parent is an
 * error naming it (mkdir without -p); icl_stage_dir keeps the same rule. */
static void out_dirs(void **state)
{
    (void)state;
    char d[512], deep[600], want[1400], file[512], under[600], err[1024];
    struct stat st;
    path_in(d, sizeof d, "outdir");
    assert_int_equal(icl_out_dir_check(d, err, sizeof err), 0);
    assert_int_equal(stat(d, &st), -1); /* the check creates nothing */
    assert_int_equal(icl_out_dir_make(d, err, sizeof err), 1);
    assert_int_equal(stat(d, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(icl_out_dir_make(d, err, sizeof err), 0); /* there: fine */
    snprintf(deep, sizeof deep, "%s/missing/run/", dir);
    assert_int_equal(icl_out_dir_make(deep, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: no folder %s/missing to create it in", deep, dir);
    assert_string_equal(err, want);
    assert_int_equal(icl_out_dir_check(deep, err, sizeof err), -1);
    assert_string_equal(err, want);
    assert_null(icl_stage_dir(deep, err, sizeof err));
    assert_string_equal(err, want);
    snprintf(want, sizeof want, "%s/missing", dir);
    assert_int_equal(stat(want, &st), -1); /* nothing made */
    path_in(file, sizeof file, "outfile");
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(icl_out_dir_make(file, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: exists and is not a folder", file);
    assert_string_equal(err, want);
    snprintf(under, sizeof under, "%s/run", file);
    assert_int_equal(icl_out_dir_make(under, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: %s is not a folder", under, file);
    assert_string_equal(err, want);
    assert_int_equal(icl_out_dir_make("", err, sizeof err), -1);
    assert_string_equal(err, "'': an empty folder name");
    /* a relative name: its parent is the current folder */
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(icl_out_dir_make("rel", err, sizeof err), 1);
    assert_int_equal(icl_out_dir_make("nope/rel", err, sizeof err), -1);
    assert_string_equal(err, "nope/rel: no folder nope to create it in");
    char *tmp = icl_stage_dir("staged", err, sizeof err);
    assert_non_null(tmp);
    icl_stage_abort(tmp);
    free(tmp);
    /* a link to nothing: refused (mkdir(1) says "File exists"; the files
     * would go nowhere), with or without a trailing slash; a link to a
     * folder is that folder */
    assert_int_equal(symlink("nowhere/run", "dangling"), 0);
    assert_int_equal(icl_out_dir_make("dangling", err, sizeof err), -1);
    assert_string_equal(err, "dangling: a link to nowhere/run, which does not exist");
    assert_int_equal(icl_out_dir_check("dangling/", err, sizeof err), -1);
    assert_string_equal(err, "dangling/: a link to nowhere/run, which does not exist");
    assert_null(icl_stage_dir("dangling", err, sizeof err));
    assert_string_equal(err, "dangling: a link to nowhere/run, which does not exist");
    assert_int_equal(symlink("rel", "torel"), 0);
    assert_int_equal(icl_out_dir_make("torel/", err, sizeof err), 0);
    /* "." and "..": existing folders; a staged folder committed into "."
     * file by file (rename(2) over "." is EBUSY) */
    assert_int_equal(icl_out_dir_make(".", err, sizeof err), 0);
    assert_int_equal(icl_out_dir_make("..", err, sizeof err), 0);
    assert_int_equal(chdir("rel"), 0);
    tmp = icl_stage_dir(".", err, sizeof err);
    assert_non_null(tmp);
    char *cfg = icl_path_join(tmp, "config.json");
    assert_int_equal(icl_write_file_atomic(cfg, "{}", 2, err, sizeof err), 0);
    free(cfg);
    assert_int_equal(icl_stage_commit(tmp, ".", NULL, err, sizeof err), 0);
    assert_int_equal(stat("config.json", &st), 0);
    assert_int_equal(stat(tmp, &st), -1); /* the staging folder gone */
    free(tmp);
    assert_int_equal(chdir(cwd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(write_then_read_back),
        cmocka_unit_test(modes_kept_or_from_umask),
        cmocka_unit_test(abort_and_cleanup),
        cmocka_unit_test(stdio_outputs),
        cmocka_unit_test(read_file_errors),
        cmocka_unit_test(path_join),
        cmocka_unit_test(path_abs),
        cmocka_unit_test(writes_through_links),
        cmocka_unit_test(same_file_by_inode),
        cmocka_unit_test(out_dirs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
