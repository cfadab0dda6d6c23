/* Unit tests of lib/record.c and lib/util.c basics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

static void utf8_validation(void **state)
{
    (void)state;
    assert_int_equal(icl_utf8_valid("abc", 3), 3);
    assert_int_equal(icl_utf8_valid("\xC3\xA9", 2), 2);          /* é */
    assert_int_equal(icl_utf8_valid("\xF0\x9F\xA4\x97", 4), 4);  /* 🤗 */
    assert_int_equal(icl_utf8_valid("a\xC0\xAF", 3), 1);         /* overlong */
    assert_int_equal(icl_utf8_valid("ab\xED\xA0\x80", 5), 2);    /* UTF-16 surrogate */
    assert_int_equal(icl_utf8_valid("\xF4\x90\x80\x80", 4), 0);  /* > U+10FFFF */
    assert_int_equal(icl_utf8_valid("x\xE2\x82", 3), 1);         /* truncated */
    assert_int_equal(icl_utf8_valid("\xFF", 1), 0);
}

static void surrogate_pair_decodes(void **state)
{
    (void)state;
    char err[256];
    const char *s = "{\"t\":\"\\ud83e\\udd17\"}";
    json_t *v = icl_record_parse(s, strlen(s), err, sizeof err);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "t")), "\xF0\x9F\xA4\x97");
    json_decref(v);
}

static void hostile_lines_rejected(void **state)
{
    (void)state;
    char err[256];
    const char *lone = "{\"t\":\"\\ud83e\"}";
    assert_null(icl_record_parse(lone, strlen(lone), err, sizeof err));
    const char *nul = "{\"t\":\"a\\u0000b\"}";
    assert_null(icl_record_parse(nul, strlen(nul), err, sizeof err));
    const char raw[] = "{\"t\":\"a\0b\"}";
    assert_null(icl_record_parse(raw, sizeof raw - 1, err, sizeof err));
    assert_non_null(strstr(err, "NUL byte at byte offset 7"));
    const char *bad = "{\"t\":\"caf\xE9\"}";
    assert_null(icl_record_parse(bad, strlen(bad), err, sizeof err));
    assert_non_null(strstr(err, "invalid UTF-8 at byte offset 9"));
    assert_null(icl_record_parse("[1,2]", 5, err, sizeof err));
    assert_null(icl_record_parse("{\"a\":1} x", 9, err, sizeof err));
    assert_null(icl_record_parse("{\"a\":1,\"a\":2}", 13, err, sizeof err));
    /* a byte order mark (an editor's) is named as such (issue 18, defect 12) */
    const char *bom = "\xEF\xBB\xBF{\"a\":1}";
    assert_null(icl_record_parse(bom, strlen(bom), err, sizeof err));
    assert_non_null(strstr(err, "starts with a UTF-8 byte order mark (BOM); JSON Lines have none"));
}

static void keys_keep_their_order(void **state)
{
    (void)state;
    char err[256];
    const char *s = "{\"z\":1,\"a\":\"x\",\"m\":[true,null],\"b\":{\"y\":2,\"c\":3}}";
    json_t *v = icl_record_parse(s, strlen(s), err, sizeof err);
    assert_non_null(v);
    json_object_set_new(v, "prompt", json_string("p/q \xC3\xA9"));
    icl_buf b = {0};
    icl_record_dump(&b, v);
    assert_string_equal(b.data,
        "{\"z\":1,\"a\":\"x\",\"m\":[true,null],\"b\":{\"y\":2,\"c\":3},\"prompt\":\"p/q \xC3\xA9\"}");
    icl_buf_free(&b);
    json_decref(v);
}

static void long_lines_and_numbering(void **state)
{
    (void)state;
    size_t big = 3u << 20; /* a 3 MB field */
    char *line = malloc(big + 64);
    int n = sprintf(line, "{\"t\":\"");
    memset(line + n, 'a', big);
    strcpy(line + n + big, "\"}\n\n{\"u\":2}");
    FILE *f = fmemopen(line, strlen(line), "r");
    icl_lines r;
    icl_lines_init(&r, f, "mem");
    json_t *v = NULL;
    char err[256];
    assert_int_equal(icl_record_next(&r, &v, err, sizeof err), 1);
    assert_int_equal(r.lineno, 1);
    assert_int_equal(json_string_length(json_object_get(v, "t")), big);
    json_decref(v);
    assert_int_equal(icl_record_next(&r, &v, err, sizeof err), 1);
    assert_int_equal(r.lineno, 3); /* blank line 2 skipped, numbering kept */
    assert_int_equal(json_integer_value(json_object_get(v, "u")), 2);
    json_decref(v);
    assert_int_equal(icl_record_next(&r, &v, err, sizeof err), 0);
    icl_lines_close(&r);
    free(line);
}

static void bad_line_is_named(void **state)
{
    (void)state;
    char text[] = "{\"a\":1}\n{\"a\":\n";
    FILE *f = fmemopen(text, strlen(text), "r");
    icl_lines r;
    icl_lines_init(&r, f, "data.jsonl");
    json_t *v = NULL;
    char err[256];
    assert_int_equal(icl_record_next(&r, &v, err, sizeof err), 1);
    json_decref(v);
    assert_int_equal(icl_record_next(&r, &v, err, sizeof err), -1);
    assert_memory_equal(err, "data.jsonl:2: ", 14);
    icl_lines_close(&r);
}

static void numbers_parse_strictly(void **state)
{
    (void)state;
    long l;
    double d;
    assert_int_equal(icl_parse_long("42", &l), 0);
    assert_int_equal(l, 42);
    assert_int_equal(icl_parse_long("12abc", &l), -1);
    assert_int_equal(icl_parse_long("", &l), -1);
    assert_int_equal(icl_parse_long("99999999999999999999999", &l), -1);
    assert_int_equal(icl_parse_double("0.25", &d), 0);
    assert_true(d == 0.25);
    assert_int_equal(icl_parse_double("nan", &d), -1);
    assert_int_equal(icl_parse_double("1e999", &d), -1);
}

static void blis_kernels_reported(void **state)
{
    (void)state;
    icl_blis_setup();
    const char *arch = icl_blis_arch();
    assert_non_null(arch);
    __builtin_cpu_init();
    if (!getenv("BLIS_ARCH_TYPE") || strcmp(getenv("BLIS_ARCH_TYPE"), "0") == 0) {
        /* On an AVX-512 machine BLIS must not be left on its generic kernels. */
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
            assert_string_not_equal(arch, "generic");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utf8_validation),
        cmocka_unit_test(surrogate_pair_decodes),
        cmocka_unit_test(hostile_lines_rejected),
        cmocka_unit_test(keys_keep_their_order),
        cmocka_unit_test(long_lines_and_numbering),
        cmocka_unit_test(bad_line_is_named),
        cmocka_unit_test(numbers_parse_strictly),
        cmocka_unit_test(blis_kernels_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
