/* Unit tests of lib/record.c and lib/util.c basics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
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
    const char *src = icl_blis_arch_source();
    __builtin_cpu_init();
    if (!getenv("BLIS_ARCH_TYPE") || strcmp(getenv("BLIS_ARCH_TYPE"), "0") == 0) {
        /* On an AVX-512 machine BLIS must not be left on its generic kernels. */
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
            assert_string_not_equal(arch, "generic");
    }
    /* What icl says it chose is what BLIS runs. */
    if (strncmp(src, "selected by icl: BLIS_ARCH_TYPE=0 (skx)", 39) == 0)
        assert_string_equal(arch, "skx");
}

/* icl_blis_choose on table values: every vendor / feature / ratio case of
 * its comment in lib/util.h. */
static void blis_choice_table(void **state)
{
    (void)state;
    static const struct {
        int vendor;
        unsigned family;
        int avx512, amx;
        double ratio;
        int want;
    } t[] = {
        {ICL_CPU_INTEL, 6, 0, 0, -1, ICL_BLIS_KEEP},    /* Haswell..Alder Lake: no AVX-512 */
        {ICL_CPU_INTEL, 6, 0, 0, 2.0, ICL_BLIS_KEEP},   /* never skx without AVX-512 */
        {ICL_CPU_INTEL, 6, 0, 1, -1, ICL_BLIS_KEEP},    /* AMX but AVX-512 off: still not */
        {ICL_CPU_INTEL, 6, 1, 1, -1, ICL_BLIS_SKX},     /* Sapphire Rapids+: no measuring */
        {ICL_CPU_INTEL, 6, 1, 1, 1.0, ICL_BLIS_SKX},    /* ... whatever a busy host showed */
        {ICL_CPU_INTEL, 6, 1, 0, -1, ICL_BLIS_MEASURE}, /* Skylake-SP..Ice Lake: measure */
        {ICL_CPU_INTEL, 6, 1, 0, 1.99, ICL_BLIS_SKX},   /* two 512-bit FMA units */
        {ICL_CPU_INTEL, 6, 1, 0, 1.6, ICL_BLIS_SKX},
        {ICL_CPU_INTEL, 6, 1, 0, 1.59, ICL_BLIS_KEEP},
        {ICL_CPU_INTEL, 6, 1, 0, 1.0, ICL_BLIS_KEEP},   /* one unit: BLIS's choice */
        {ICL_CPU_AMD, 0x1a, 1, 0, -1, ICL_BLIS_SKX},    /* Zen 5: unknown to BLIS 0.9.0 */
        {ICL_CPU_AMD, 0x1a, 1, 0, 1.0, ICL_BLIS_SKX},   /* no measuring on AMD */
        {ICL_CPU_AMD, 0x1a, 0, 0, -1, ICL_BLIS_KEEP},   /* AVX-512 disabled */
        {ICL_CPU_AMD, 0x19, 1, 0, -1, ICL_BLIS_KEEP},   /* Zen 4: BLIS's zen3 */
        {ICL_CPU_AMD, 0x17, 0, 0, -1, ICL_BLIS_KEEP},   /* Zen 1/2 */
        {ICL_CPU_OTHER, 6, 1, 0, 2.0, ICL_BLIS_KEEP},   /* another vendor: BLIS's choice */
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        icl_cpu_facts c = {.vendor = t[i].vendor, .family = t[i].family, .avx512 = t[i].avx512, .amx = t[i].amx};
        int got = icl_blis_choose(&c, t[i].ratio);
        if (got != t[i].want)
            fail_msg("case %zu: got %d, want %d", i, got, t[i].want);
    }
}

/* icl_cpu_probe against the kernel's /proc/cpuinfo, and icl_fma512_ratio's
 * range and cost. */
static void cpu_probe_and_fma_ratio(void **state)
{
    (void)state;
    icl_cpu_facts c;
    icl_cpu_probe(&c);
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    assert_int_equal(c.avx512, avx512);
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[8192];
        int seen_vendor = 0, seen_family = 0, seen_flags = 0;
        while (fgets(line, sizeof line, f)) {
            unsigned fam;
            if (!seen_vendor && strncmp(line, "vendor_id", 9) == 0) {
                seen_vendor = 1;
                int want = strstr(line, "GenuineIntel") ? ICL_CPU_INTEL
                           : strstr(line, "AuthenticAMD") ? ICL_CPU_AMD
                                                          : ICL_CPU_OTHER;
                assert_int_equal(c.vendor, want);
            } else if (!seen_family && sscanf(line, "cpu family : %u", &fam) == 1) {
                seen_family = 1;
                assert_int_equal(c.family, fam);
            } else if (!seen_flags && strncmp(line, "flags", 5) == 0) {
                seen_flags = 1;
                assert_int_equal(c.amx, strstr(line, " amx_tile") != NULL);
                assert_int_equal(c.amx_bf16, strstr(line, " amx_bf16") != NULL);
            }
        }
        fclose(f);
    }
    if (!avx512) {
        assert_true(icl_fma512_ratio() < 0);
        return;
    }
    double t0 = icl_now(), r = icl_fma512_ratio(), dt = icl_now() - t0;
    /* 16 floats per zmm FMA against 8 per ymm one: 2.0 at most (with rounding
     * of the clock), ~1.0 with one unit or a throttled one; never 0. */
    assert_true(r > 0.3 && r < 2.3);
    /* 0.4 ms budget plus one round; generous for a preempted process */
    assert_true(dt < 0.05);
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
        cmocka_unit_test(blis_choice_table),
        cmocka_unit_test(cpu_probe_and_fma_ratio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
