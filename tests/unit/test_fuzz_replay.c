/* Replays the committed fuzz corpora through the fuzz targets, built with the
 * normal compiler (and with ASan+UBSan under make check SANITIZE=1):
 * - tests/fuzz/corpus/{csv,json} and the inputs of past findings
 *   tests/fuzz/regress/{csv,json,tokjson} (what fuzzing found stays found);
 * - tests/fuzz/corpus/{safetensors,config,jinja,gguf,tokgguf,tokjson,lora_config,sniff} (every input handled without a crash).
 * The folders are under $TESTS_DIR/fuzz (tests/run.sh sets TESTS_DIR), else
 * tests/fuzz from the current folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>

#include "../fuzz/targets.h"
#include "fileio.h"

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
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        char *data = icl_read_file(path, 0, &len, NULL, 0);
        assert_non_null(data);
        target((const uint8_t *)data, len);
        free(data);
        n++;
    }
    closedir(d);
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

#define ICL_FUZZ_NO_ENTRY
#include "../fuzz/fuzz_config.c"
#include "../fuzz/fuzz_safetensors.c"
#include "../fuzz/fuzz_jinja.c"
#include "../fuzz/fuzz_gguf.c"
#include "../fuzz/fuzz_tokgguf.c"
#include "../fuzz/fuzz_tokjson.c"
#include "../fuzz/fuzz_lora_config.c"
#include "../fuzz/fuzz_sniff.c"
#include "util.h"

static int replay_corpus(const char *sub, int (*fn)(const uint8_t *, size_t), int *accepted)
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
        size_t len;
        char *data = icl_read_file(p, 0, &len, NULL, 0);
        assert_non_null(data);
        /* an exact-size copy, so the sanitizer build catches any overread */
        uint8_t *exact = icl_xmalloc(len ? len : 1);
        memcpy(exact, data, len);
        *accepted += fn(exact, len);
        free(exact);
        free(data);
        n++;
    }
    closedir(d);
    return n;
}

static void replay_safetensors(void **state)
{
    (void)state;
    int ok = 0, n = replay_corpus("safetensors", icl_fuzz_safetensors, &ok);
    print_message("# safetensors corpus: %d inputs, %d accepted\n", n, ok);
    assert_true(n >= 4);
    assert_true(ok >= 3); /* the valid seeds still parse */
}

static void replay_config(void **state)
{
    (void)state;
    int ok = 0, n = replay_corpus("config", icl_fuzz_config, &ok);
    print_message("# config corpus: %d inputs, %d accepted\n", n, ok);
    assert_true(n >= 6);
    assert_true(ok >= 6);
}

static void replay_jinja(void **state)
{
    (void)state;
    int ok = 0, n = replay_corpus("jinja", icl_fuzz_jinja, &ok);
    print_message("# jinja corpus: %d inputs, %d rendered\n", n, ok);
    assert_true(n >= 50);
    assert_true(ok >= 40); /* the real templates and feature seeds still render */
}

static void replay_gguf(void **state)
{
    (void)state;
    int ok = 0, n = replay_corpus("gguf", icl_fuzz_gguf, &ok);
    print_message("# gguf corpus: %d inputs, %d accepted\n", n, ok);
    assert_true(n >= 6);
    assert_true(ok >= 6); /* the seeds (tests/data/gguf/make_fuzz_seeds.py) parse */
}

static void replay_tokgguf(void **state)
{
    (void)state;
    int ok = 0, n = replay_corpus("tokgguf", icl_fuzz_tokgguf, &ok);
    print_message("# tokgguf corpus: %d inputs, %d made a tokenizer\n", n, ok);
    assert_true(n >= 10);
    assert_true(ok >= 9); /* the valid seeds (tests/data/tok/gguf/make_fuzz_seeds.py) load */
}

static void replay_tokjson(void **state)
{
    (void)state;
    int ok = 0, n = replay_corpus("tokjson", icl_fuzz_tokjson, &ok);
    print_message("# tokjson corpus: %d inputs, %d made a tokenizer\n", n, ok);
    assert_true(n >= 6);
    assert_true(ok >= 5); /* the valid seeds (tests/data/tok/make_tokjson_seeds.py) load */
    /* past findings (streamed text against icl_tok_decode's, a decoder's regex that gave up) */
    assert_true(replay_dir("regress", "tokjson", icl_fuzz_tokjson) >= 5);
}

static void replay_lora_config(void **state)
{
    (void)state;
    int ok = 0, n = replay_corpus("lora_config", icl_fuzz_lora_config, &ok);
    print_message("# lora_config corpus: %d inputs, %d accepted\n", n, ok);
    assert_true(n >= 8);
    assert_true(ok >= 5); /* PEFT 0.21's and 0.13's, rslora, gpt2, all-linear */
}

static void replay_sniff(void **state)
{
    (void)state;
    int ok = 0, n = replay_corpus("sniff", icl_fuzz_sniff, &ok);
    print_message("# sniff corpus: %d inputs, %d recognised\n", n, ok);
    assert_true(n >= 14);
    assert_true(ok >= 13); /* the seeds: every kind but the unknown */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(csv_corpus),         cmocka_unit_test(json_corpus),
                                       cmocka_unit_test(replay_safetensors), cmocka_unit_test(replay_config),
                                       cmocka_unit_test(replay_jinja),       cmocka_unit_test(replay_gguf),
                                       cmocka_unit_test(replay_tokgguf),     cmocka_unit_test(replay_tokjson),
                                       cmocka_unit_test(replay_lora_config), cmocka_unit_test(replay_sniff)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
