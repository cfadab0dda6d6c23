/* Replays the committed fuzz corpus (tests/fuzz/corpus/{csv,json}) and the
 * inputs of past findings (tests/fuzz/regress/{csv,json}) through the fuzz
 * targets, built with the normal compiler: what `make fuzz` found stays
 * found.  The folders are under $TESTS_DIR/fuzz (tests/run.sh sets
 * TESTS_DIR), else tests/fuzz from the current folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>

#include "../fuzz/targets.h"

/* Run every file of $TESTS_DIR/fuzz/WHERE/KIND through target; returns the
 * count (-1 if the folder does not exist). */
static long replay_dir(const char *where, const char *kind, int (*target)(const uint8_t *, size_t))
{
    char dir[4096];
    const char *t = getenv("TESTS_DIR");
    snprintf(dir, sizeof dir, "%s/fuzz/%s/%s", t ? t : "tests", where, kind);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    icl_buf b = {0};
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        buf_clear(&b);
        char chunk[65536];
        size_t got;
        while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
            buf_append(&b, chunk, got);
        fclose(f);
        target((const uint8_t *)(b.data ? b.data : ""), b.len);
        n++;
    }
    closedir(d);
    buf_free(&b);
    return n;
}

/* The minimised corpus (rewritten by make fuzz) and the named regression
 * inputs of past findings (kept by hand). */
static long replay(const char *kind, int (*target)(const uint8_t *, size_t))
{
    long n = replay_dir("corpus", kind, target);
    assert_true(n >= 0);
    long r = replay_dir("regress", kind, target);
    return n + (r > 0 ? r : 0);
}

static void csv_corpus(void **state)
{
    (void)state;
    assert_true(replay("csv", fuzz_csv) >= 20);
}

static void json_corpus(void **state)
{
    (void)state;
    assert_true(replay("json", fuzz_json) >= 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(csv_corpus), cmocka_unit_test(json_corpus)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
