/* Unit tests of lib/jinja.c: renderings compared byte for byte with
 * transformers' own (tests/data/chat/make_chat.py made render.jsonl and
 * features.jsonl with jinja2), syntax errors with their place, and hostile
 * templates that must end with a clear error within the limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    icl_buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, got);
    fclose(f);
    *n = b.len;
    return b.data ? b.data : xstrdup("");
}

/* Render one case; returns 1 if it matches the reference. */
static int check_case(icl_jinja *t, json_t *vars, json_t *c, const char *label)
{
    icl_buf out = {0};
    char err[600];
    icl_jinja_limits lim = {0};
    int rc = icl_jinja_render(t, vars, &lim, &out, NULL, NULL, err, sizeof err);
    json_t *text = json_object_get(c, "text"), *error = json_object_get(c, "error");
    int ok;
    if (text) {
        ok = rc == 0 && out.len == json_string_length(text) && !memcmp(out.data ? out.data : "", json_string_value(text), out.len);
        if (!ok)
            fprintf(stderr, "MISMATCH %s\n  want: [%s]\n  got:  [%s]%s%s\n", label, json_string_value(text),
                    out.data ? out.data : "", rc ? " error: " : "", rc ? err : "");
    } else {
        ok = rc == -1;
        /* raise_exception's message reaches the user verbatim */
        const char *w = json_string_value(error);
        if (ok && strstr(label, "raise"))
            ok = strlen(err) >= strlen(w) && !strcmp(err + strlen(err) - strlen(w), w);
        if (!ok)
            fprintf(stderr, "MISMATCH %s\n  want error: %s\n  got rc %d: %s [%s]\n", label, w, rc, rc ? err : "", out.data ? out.data : "");
    }
    buf_free(&out);
    return ok;
}

static void real_templates(void **state)
{
    (void)state;
    size_t n;
    char *all = slurp(TEST_DATA "/chat/render.jsonl", &n);
    assert_non_null(all);
    int cases = 0, bad = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *c = json_loads(line, 0, &je);
        assert_non_null(c);
        const char *name = json_string_value(json_object_get(c, "template"));
        char path[512];
        snprintf(path, sizeof path, TEST_DATA "/chat/templates/%s.jinja", name);
        size_t tn;
        char *src = slurp(path, &tn);
        assert_non_null(src);
        char err[600];
        icl_jinja *t = icl_jinja_parse(src, tn, name, err, sizeof err);
        if (!t)
            fprintf(stderr, "%s\n", err);
        assert_non_null(t);
        json_t *vars = json_deep_copy(json_object_get(c, "vars"));
        json_object_set(vars, "messages", json_object_get(c, "messages"));
        json_object_set(vars, "add_generation_prompt", json_object_get(c, "add_generation_prompt"));
        json_object_set_new(vars, "tools", json_null());
        json_object_set_new(vars, "documents", json_null());
        char label[256];
        snprintf(label, sizeof label, "%s/%s/agp=%d%s", name, json_string_value(json_object_get(c, "conv")),
                 json_is_true(json_object_get(c, "add_generation_prompt")),
                 json_object_get(c, "error") ? " raise" : "");
        bad += !check_case(t, vars, c, label);
        cases++;
        json_decref(vars);
        json_decref(c);
        icl_jinja_free(t);
        free(src);
    }
    free(all);
    fprintf(stderr, "# %d real-template cases, %d mismatches\n", cases, bad);
    assert_true(cases >= 150);
    assert_int_equal(bad, 0);
}

static void features(void **state)
{
    (void)state;
    size_t n;
    char *all = slurp(TEST_DATA "/chat/features.jsonl", &n);
    assert_non_null(all);
    int cases = 0, bad = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *c = json_loads(line, 0, &je);
        assert_non_null(c);
        const char *src = json_string_value(json_object_get(c, "template"));
        char err[600];
        char label[64];
        snprintf(label, sizeof label, "feature %d%s", cases + 1,
                 strstr(src, "raise_exception") ? " raise" : "");
        icl_jinja *t = icl_jinja_parse(src, strlen(src), "feature", err, sizeof err);
        if (!t) {
            if (json_object_get(c, "text")) {
                fprintf(stderr, "MISMATCH %s: parse error %s\n  template: %s\n", label, err, src);
                bad++;
            }
        } else {
            if (!check_case(t, json_object_get(c, "vars"), c, label)) {
                fprintf(stderr, "  template: %s\n", src);
                bad++;
            }
            icl_jinja_free(t);
        }
        cases++;
        json_decref(c);
    }
    free(all);
    fprintf(stderr, "# %d feature cases, %d mismatches\n", cases, bad);
    assert_true(cases >= 30);
    assert_int_equal(bad, 0);
}

/* Render src with vars (JSON text or NULL) under lim; returns rc, text or error in out/err. */
static int run(const char *src, const char *vars, const icl_jinja_limits *lim, icl_buf *out, char *err, size_t errsz)
{
    icl_jinja *t = icl_jinja_parse(src, strlen(src), "t.jinja", err, errsz);
    if (!t)
        return -2;
    json_t *v = vars ? json_loads(vars, 0, NULL) : NULL;
    int rc = icl_jinja_render(t, v, lim, out, NULL, NULL, err, errsz);
    json_decref(v);
    icl_jinja_free(t);
    return rc;
}

static void expect_error(const char *src, const icl_jinja_limits *lim, int want_rc, const char *want)
{
    icl_buf out = {0};
    char err[600] = "";
    int rc = run(src, NULL, lim, &out, err, sizeof err);
    if (rc != want_rc || !strstr(err, want))
        fprintf(stderr, "template %.80s\n  rc %d err [%s], want rc %d and [%s]\n", src, rc, err, want_rc, want);
    assert_int_equal(rc, want_rc);
    assert_non_null(strstr(err, want));
    assert_int_equal(out.len, 0); /* nothing half-written */
    buf_free(&out);
}

static void syntax_errors(void **state)
{
    (void)state;
    expect_error("line one\n{{ 1 + }}", NULL, -2, "t.jinja:2:8: expected an expression, got end of print statement");
    expect_error("{% for x in y %}\nno end", NULL, -2, "t.jinja:2:7: unexpected end of template: 'for' opened on line 1 needs 'endfor'");
    expect_error("{% if x %}a{% endfor %}", NULL, -2, "t.jinja:1:15: unexpected 'endfor' inside 'if'");
    expect_error("{% include 'x.jinja' %}", NULL, -2, "t.jinja:1:4: unsupported statement 'include'");
    expect_error("{% extends 'base' %}", NULL, -2, "unsupported statement 'extends'");
    expect_error("{% break %}", NULL, -2, "'break' outside a loop");
    expect_error("{{ 'unterminated }}", NULL, -2, "t.jinja:1:4: unterminated string literal");
    expect_error("{{ x", NULL, -2, "t.jinja:1:1: unclosed '{{'");
    expect_error("{# open comment", NULL, -2, "unclosed comment");
    expect_error("{{ a ; b }}", NULL, -2, "t.jinja:1:6: unexpected character ';'");
    expect_error("{% for x in y recursive %}{% endfor %}", NULL, -2, "unsupported: recursive loops");
    expect_error("{{ 99999999999999999999 }}", NULL, -2, "integer literal too large");
    /* runtime errors name the line */
    expect_error("a\nb\n{{ x.y }}", NULL, -1, "t.jinja:3: 'x' is undefined");
    expect_error("{{ raise_exception('Bad role: ' ~ 'tool') }}", NULL, -1, "t.jinja:1: Bad role: tool");
    expect_error("{{ [1] | nosuchfilter }}", NULL, -1, "unsupported filter 'nosuchfilter'");
    expect_error("{{ 1 is nosuchtest }}", NULL, -1, "unsupported test 'nosuchtest'");
    expect_error("{{ 2 ** 64 }}", NULL, -1, "integer overflow");
    expect_error("{{ 1 + 'a' }}", NULL, -1, "unsupported operand type(s) for +: 'int' and 'str'");
    expect_error("{% set x = 1 %}{% set x.a = 2 %}", NULL, -1, "cannot assign attribute on non-namespace object");
}

static void hostile(void **state)
{
    (void)state;
    icl_jinja_limits small = {.max_output = 1 << 20, .max_memory = 64 << 20, .max_steps = 1000000, .max_depth = 50};
    /* endless recursion */
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", &small, -1, "nested more than 50 deep");
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, -1, "nested more than 100 deep");
    /* exponential fan-out and nested huge loops hit the step limit */
    expect_error("{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}", &small, -1, "(limit)");
    expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", &small, -1, "steps (limit)");
    expect_error("{% for i in range(1000000000000) %}x{% endfor %}", NULL, -1, "steps (limit)");
    expect_error("{{ range(1000000000000) | length }}", NULL, -1, "steps (limit)");
    /* huge output */
    expect_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", &small, -1, "rendered text exceeds 1048576 bytes");
    /* memory: a string doubled 100 times, a huge repetition */
    expect_error("{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}", &small, -1, "memory");
    expect_error("{{ ('x' * 1000000000000) | length }}", NULL, -1, "memory");
    /* deep nesting in the source */
    char *deep = xmalloc(30000);
    strcpy(deep, "{{ ");
    for (int i = 0; i < 10000; i++)
        strcat(deep + 3 + i, "(");
    strcat(deep, "1");
    for (int i = 0; i < 10000; i++)
        strcat(deep, ")");
    strcat(deep, " }}");
    expect_error(deep, NULL, -2, "nested too deeply");
    strcpy(deep, "{{ ");
    for (int i = 0; i < 10000; i++)
        deep[3 + i] = '[';
    deep[10003] = 0;
    expect_error(deep, NULL, -2, "t.jinja:1:1:");
    strcpy(deep, "");
    for (int i = 0; i < 2000; i++)
        strcat(deep, "{% if 1 %}");
    expect_error(deep, NULL, -2, "nested too deeply");
    free(deep);
    /* huge widths in %-formatting */
    expect_error("{{ '%100000000d' % 1 }}", NULL, -1, "format width or precision too large");
    expect_error("{{ '%.100000000s' % 'x' }}", NULL, -1, "format width or precision too large");
    /* macro recursion through deeply nested expressions stays off the C stack limit */
    {
        icl_buf src = {0};
        buf_puts(&src, "{% macro f(n) %}{{ ");
        for (int i = 0; i < 60; i++)
            buf_puts(&src, "0 + (");
        buf_puts(&src, "f(n + 1)");
        for (int i = 0; i < 60; i++)
            buf_puts(&src, ")");
        buf_puts(&src, " }}{% endmacro %}{{ f(0) }}");
        expect_error(src.data, NULL, -1, "evaluation nested too deeply (limit 1000)");
        buf_clear(&src);
        buf_puts(&src, "{% macro f(n) %}");
        for (int i = 0; i < 150; i++)
            buf_puts(&src, "{% if true %}");
        buf_puts(&src, "{{ f(n + 1) }}");
        for (int i = 0; i < 150; i++)
            buf_puts(&src, "{% endif %}");
        buf_puts(&src, "{% endmacro %}{{ f(0) }}");
        expect_error(src.data, NULL, -1, "evaluation nested too deeply (limit 1000)");
        buf_free(&src);
    }
    /* a large template parses in linear time (line:col by binary search) */
    {
        icl_buf src = {0};
        for (int i = 0; i < 100000; i++)
            buf_puts(&src, "{{ x }}\n");
        char err[300];
        icl_jinja *t = icl_jinja_parse(src.data, src.len, "big", err, sizeof err);
        assert_non_null(t);
        icl_buf out = {0};
        assert_int_equal(icl_jinja_render(t, NULL, NULL, &out, NULL, NULL, err, sizeof err), 0);
        assert_int_equal(out.len, 99999); /* the newlines; the last one is dropped */
        buf_free(&out);
        icl_jinja_free(t);
        buf_puts(&src, "{{ oops");
        assert_null(icl_jinja_parse(src.data, src.len, "big", err, sizeof err));
        assert_string_equal(err, "big:100001:1: unclosed '{{'");
        buf_free(&src);
    }
    /* self-containing namespace printed */
    expect_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", NULL, -1, "nested too deeply");
}

static void expect_text(const char *src, const char *vars, const icl_jinja_limits *lim, const char *want)
{
    icl_buf out = {0};
    char err[600] = "";
    int rc = run(src, vars, lim, &out, err, sizeof err);
    const char *got = out.data ? out.data : "";
    if (rc != 0 || strcmp(got, want))
        fprintf(stderr, "template %.100s\n  rc %d err [%s]\n  got  [%s]\n  want [%s]\n", src, rc, err, got, want);
    assert_int_equal(rc, 0);
    assert_string_equal(got, want);
    buf_free(&out);
}

/* range() and slices with bounds and steps near the 64-bit limits: Python's
 * lengths, no overflow (these crashed or read outside the list) */
static void range_and_slice_bounds(void **state)
{
    (void)state;
    expect_error("{{ range(0, 9223372036854775807, 2) | length }}", NULL, -1,
                 "range() of 4611686018427387904 elements: more than the 50000000 steps (limit)");
    expect_error("{{ range(-9223372036854775807 - 1, 9223372036854775807) | length }}", NULL, -1,
                 "range() of 18446744073709551615 elements");
    expect_error("{% for i in range(9223372036854775807, -9223372036854775807 - 1, -1) %}{% endfor %}", NULL, -1,
                 "range() of 18446744073709551615 elements");
    expect_text("{{ range(0, 9223372036854775807, 9223372036854775807) | list }}", NULL, NULL, "[0]");
    expect_text("{{ range(-1, -9223372036854775807 - 1, -9223372036854775807 - 1) | list }}", NULL, NULL, "[-1]");
    expect_text("{{ range(9223372036854775807, -9223372036854775807 - 1, -9223372036854775807) | list }}", NULL, NULL,
                "[9223372036854775807, 0, -9223372036854775807]");
    expect_text("{{ range(9223372036854775806, 9223372036854775807) | list }}", NULL, NULL, "[9223372036854775806]");
    expect_text("{{ range(5, 0, -2) | list }} {{ range(0, 10, 3) | list }} {{ range(3) | list }} {{ range(2, 2) | list }} "
                "{{ range(0, 5, -1) | list }}", NULL, NULL, "[5, 3, 1] [0, 3, 6, 9] [0, 1, 2] [] []");
    expect_error("{{ range(0, 5, 0) }}", NULL, -1, "range() arg 3 must not be zero");
    /* slices: Python 3.11's results */
    expect_text("{{ [10, 20, 30][1:9223372036854775807:9223372036854775807] }}", NULL, NULL, "[20]");
    expect_text("{{ 'abc'[1:9223372036854775807:9223372036854775807] }}", NULL, NULL, "b");
    expect_text("{{ [10, 20, 30][::-1] }} {{ [10, 20, 30][-9223372036854775807 - 1:9223372036854775807] }} "
                "{{ [10, 20, 30][9223372036854775807:-9223372036854775807 - 1:-1] }}",
                NULL, NULL, "[30, 20, 10] [10, 20, 30] [30, 20, 10]");
    expect_text("{{ [10, 20, 30][::-9223372036854775807 - 1] }} {{ 'abc'[::-9223372036854775807 - 1] }} "
                "{{ [10, 20, 30][-1:-9223372036854775807 - 1:-2] }} {{ (10, 20, 30)[-9223372036854775807:1:9223372036854775807] }}",
                NULL, NULL, "[30] c [30, 10] (10,)");
    expect_text("{{ 'h\u00e9llo'[4:0:-2] }} {{ 'h\u00e9llo'[-9223372036854775807:2] }} {{ 'abc'[5:9] }}|"
                "{{ 'abc'[2:0] }}|{{ [1, 2][9223372036854775807:] }}",
                NULL, NULL, "ol h\xc3\xa9 ||[]");
    expect_error("{{ [1, 2][::0] }}", NULL, -1, "slice step cannot be zero");
    expect_error("{{ 'ab'[::0] }}", NULL, -1, "slice step cannot be zero");
}

/* Operations whose cost grows with their input count steps for the work
 * they do (bytes scanned, elements compared, keys searched), so the step
 * limit ends a template that repeats them: each of these ran to completion
 * (or for hours at full size) when they counted as one step */
static void work_counts_steps(void **state)
{
    (void)state;
    icl_jinja_limits lim = {.max_steps = 1000000, .max_memory = 256 << 20};
    const char *s1m = "{% set s = 'a' * 1000000 %}{% set t = 'a' * 1000000 %}{% set l = range(10000) | list %}"
                      "{% set w = s[:10000] | list %}{% for i in range(1000) %}";
    const char *body[] = {
        "{% if 'b' in s %}{% endif %}",
        "{% if -1 in l %}{% endif %}",
        "{{ s[999999] }}",
        "{{ s | length }}",
        "{% if s == t %}{% endif %}",
        "{% if s < t %}{% endif %}",
        "{% if l == l %}{% endif %}",
        "{% if l < l %}{% endif %}",
        "{{ s.find('b') }}",
        "{{ s.rfind('ab') }}",
        "{{ s.count('b') }}",
        "{{ s.startswith(t) }}",
        "{{ s.strip('a') }}",
        "{{ s.isupper() }}",
        "{{ l.count(-1) }}",
        "{{ l.index(9999) }}",
        "{{ l | max }}",
        "{{ l | sum }}",
        "{{ ''.join(w) | length }}",
        NULL,
    };
    for (int i = 0; body[i]; i++) {
        char src[600];
        snprintf(src, sizeof src, "%s%s{%% endfor %%}", s1m, body[i]);
        expect_error(src, &lim, -1, "t.jinja:1: template ran more than 1000000 steps (limit)");
    }
    /* sorting counts n log n */
    expect_error("{% set l = range(10000) | list %}{% for i in range(80) %}{{ l | sort | length }}{% endfor %}", &lim, -1,
                 "steps (limit)");
    /* a lookup among many keys is a linear search */
    {
        icl_buf vars = {0};
        buf_puts(&vars, "{\"d\": {");
        for (int i = 0; i < 20000; i++) {
            char k[32];
            snprintf(k, sizeof k, "%s\"k%d\": %d", i ? ", " : "", i, i);
            buf_puts(&vars, k);
        }
        buf_puts(&vars, "}}");
        icl_buf out = {0};
        char err[600] = "";
        /* the keys load in linear time; one lookup is fine */
        assert_int_equal(run("{{ d.k19999 }} {{ d | length }}", vars.data, &lim, &out, err, sizeof err), 0);
        assert_string_equal(out.data, "19999 20000");
        buf_clear(&out);
        assert_int_equal(run("{% for i in range(1000) %}{{ d.zzz is defined }}{% endfor %}", vars.data, &lim, &out, err, sizeof err), -1);
        assert_non_null(strstr(err, "steps (limit)"));
        buf_free(&out);
        buf_free(&vars);
    }
    /* the same operations on small values do not come near the limit */
    expect_text("{% set s = 'abc' * 10 %}{% set l = range(20) | list %}{% for i in range(1000) %}"
                "{% if 'b' in s and -1 not in l and s[5] == 'c' and s.find('x') < 0 and l.index(19) == 19 %}{% endif %}"
                "{% endfor %}ok",
                NULL, &(icl_jinja_limits){.max_steps = 100000}, "ok");
}

/* Differences from Python found by testing (expected values from CPython 3.11
 * and jinja2 3.1) */
static void python_compat(void **state)
{
    (void)state;
    /* %d of a float beyond 64 bits: the exact integer (was an undefined cast) */
    expect_text("{{ '%d' % 1e19 }} {{ '%i' % -1e300 }}", NULL, NULL,
                "10000000000000000000 -1000000000000000052504760255204420248704468581108159154915854115511802457988908195786371375080447864043704443832883878176942523235360430575644792184786706982848387200926575803737830233794788090059368953234970799945081119038967640880074652742780142494579258788820056842838115669472196386865459400540160");
    expect_text("{{ '%5d|%-5d|%05d|%+d|% d|%x|%#x|%#o|%X|%.3d|%08.3d|%d|%d' % (42, 42, -42, 42, 42, -255, 255, 8, 255, 7, -7, 3.9, -9223372036854775807 - 1) }}",
                NULL, NULL, "   42|42   |-0042|+42| 42|-ff|0xff|0o10|FF|007|-0000007|3|-9223372036854775808");
    expect_error("{{ '%d' % (1e308 * 10) }}", NULL, -1, "cannot convert float infinity to integer");
    expect_error("{{ '%x' % 1e19 }}", NULL, -1, "out of the 64-bit integer range");
    expect_error("{{ '%c' % 1114112 }}", NULL, -1, "%c arg not in range(0x110000)");
    /* int filter: jinja2 returns Python's unbounded int; beyond 64 bits an error, not 0 */
    expect_error("{{ '99999999999999999999' | int }}", NULL, -1, "int filter: '99999999999999999999' is out of the 64-bit integer range");
    expect_error("{{ 1e19 | int }}", NULL, -1, "int filter: 1e+19 is out of the 64-bit integer range");
    expect_text("{{ '-9223372036854775808' | int }} {{ ' 42 ' | int }} {{ '4.7' | int }} {{ 'x' | int(5) }} {{ '0x10' | int }} "
                "{{ 9.2e18 | int }} {{ '1e3' | int }} {{ '0x1p3' | float }}",
                NULL, NULL, "-9223372036854775808 42 4 5 0 9200000000000000000 1000 0.0");
    /* splitlines: Python's line boundaries, keepends */
    expect_text("{{ 'a\\r\\nb\\x0bc\\x1cd\\u2028e\\n\\nf\\r'.splitlines(true) }} {{ 'a\\r\\nb\\x0bc\\x1cd\\u2028e\\n\\nf\\r'.splitlines() }} "
                "{{ 'x\\ny'.splitlines(keepends=true) }} {{ ''.splitlines() }}",
                NULL, NULL, "['a\\r\\n', 'b\\x0b', 'c\\x1c', 'd\\u2028', 'e\\n', '\\n', 'f\\r'] ['a', 'b', 'c', 'd', 'e', '', 'f'] ['x\\n', 'y'] []");
    /* \x escapes, NUL included */
    expect_text("{{ '\\x41\\x00b' | length }} {{ ['\\x41\\x00b'] }} {{ ['\\x00'] | tojson }} {{ '\\101' }}", NULL, NULL,
                "3 ['A\\x00b'] [\"\\u0000\"] A");
}

static void spans_and_floats(void **state)
{
    (void)state;
    const char *src = "a{% generation %}bc{% endgeneration %}d{% for i in [1, 2] %}{% generation %}<{{ i }}>{% endgeneration %}{% endfor %}";
    char err[300];
    icl_jinja *t = icl_jinja_parse(src, strlen(src), "g", err, sizeof err);
    assert_non_null(t);
    icl_buf out = {0};
    icl_jinja_span *sp;
    size_t ns;
    assert_int_equal(icl_jinja_render(t, NULL, NULL, &out, &sp, &ns, err, sizeof err), 0);
    assert_string_equal(out.data, "abcd<1><2>");
    assert_int_equal(ns, 3);
    assert_int_equal(sp[0].start, 1);
    assert_int_equal(sp[0].end, 3);
    assert_int_equal(sp[1].start, 4);
    assert_int_equal(sp[1].end, 7);
    assert_int_equal(sp[2].start, 7);
    assert_int_equal(sp[2].end, 10);
    free(sp);
    buf_free(&out);
    icl_jinja_free(t);
    /* Python repr(float) (values from CPython 3.11) */
    const struct {
        double x;
        const char *s;
    } F[] = {{0.1, "0.1"}, {1e16, "1e+16"}, {1e15, "1000000000000000.0"}, {123456789012345678.0, "1.2345678901234568e+17"},
             {5e-324, "5e-324"}, {0.0001, "0.0001"}, {0.00001, "1e-05"}, {-2.5, "-2.5"}, {1.0 / 3, "0.3333333333333333"},
             {1e300 * 1e10, "inf"}, {100.0, "100.0"}, {1.7976931348623157e308, "1.7976931348623157e+308"}};
    for (size_t i = 0; i < sizeof F / sizeof F[0]; i++) {
        char b[32];
        assert_string_equal(icl_py_float_repr(F[i].x, b), F[i].s);
    }
    /* strftime_now formats the given time */
    icl_jinja_limits lim = {.now = 1721952000}; /* 2024-07-26 00:00:00 UTC */
    icl_buf o2 = {0};
    setenv("TZ", "UTC", 1);
    assert_int_equal(run("{{ strftime_now('%d %b %Y') }}", NULL, &lim, &o2, err, sizeof err), 0);
    assert_string_equal(o2.data, "26 Jul 2024");
    buf_free(&o2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(syntax_errors),
        cmocka_unit_test(hostile),
        cmocka_unit_test(range_and_slice_bounds),
        cmocka_unit_test(work_counts_steps),
        cmocka_unit_test(python_compat),
        cmocka_unit_test(spans_and_floats),
        cmocka_unit_test(features),
        cmocka_unit_test(real_templates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
