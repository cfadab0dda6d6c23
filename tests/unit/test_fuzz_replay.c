/* Replays the committed libFuzzer corpora (tests/fuzz/corpus/{safetensors,config})
 * through the fuzz targets, built here with gcc (and with ASan+UBSan under
 * make check SANITIZE=1): every input must be handled without a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ICL_FUZZ_NO_ENTRY
#include "../fuzz/fuzz_config.c"
#include "../fuzz/fuzz_safetensors.c"
#include "util.h"

static int replay(const char *sub, int (*fn)(const uint8_t *, size_t), int *accepted)
{
    const char *td = getenv("TESTS_DIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fuzz/corpus/%s", td ? td : "tests", sub);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        icl_buf b = {0};
        char tmp[4096];
        size_t k;
        while ((k = fread(tmp, 1, sizeof tmp, f)) > 0)
            buf_append(&b, tmp, k);
        fclose(f);
        /* an exact-size copy, so the sanitizer build catches any overread */
        uint8_t *exact = xmalloc(b.len ? b.len : 1);
        memcpy(exact, b.data ? b.data : "", b.len);
        *accepted += fn(exact, b.len);
        free(exact);
        buf_free(&b);
        n++;
    }
    closedir(d);
    return n;
}

static void replay_safetensors(void **state)
{
    (void)state;
    int ok = 0, n = replay("safetensors", icl_fuzz_safetensors, &ok);
    print_message("# safetensors corpus: %d inputs, %d accepted\n", n, ok);
    assert_true(n >= 4);
    assert_true(ok >= 3); /* the valid seeds still parse */
}

static void replay_config(void **state)
{
    (void)state;
    int ok = 0, n = replay("config", icl_fuzz_config, &ok);
    print_message("# config corpus: %d inputs, %d accepted\n", n, ok);
    assert_true(n >= 6);
    assert_true(ok >= 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(replay_safetensors), cmocka_unit_test(replay_config)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
