/* Unit tests of lib/csvin.c (CSV/TSV through libcsv) and lib/jsonin.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "csvin.h"
#include "jsonin.h"
#include "reader.h"

/* Read all of s (n bytes) as CSV; render rows as "line:[f1|f2]" joined by
 * ';' and errors as "E<msg>" into out. */
static void csv_dump(const char *s, size_t n, char delim, char *out, size_t outsz)
{
    icl_reader r;
    icl_reader_mem(&r, s, n, "t");
    icl_csv *c = icl_csv_new(&r, delim);
    icl_csv_row row;
    char err[300];
    icl_buf b = {0};
    int rc = icl_csv_header(c, &row, err, sizeof err);
    if (rc > 0) {
        icl_buf_printf(&b, "H%zu", row.nfields);
        while ((rc = icl_csv_next(c, &row, err, sizeof err)) != 0) {
            if (rc < 0) {
                icl_buf_printf(&b, ";E%s", err);
                continue;
            }
            icl_buf_printf(&b, ";%ld:[", row.line);
            for (size_t i = 0; i < row.nfields; i++) {
                assert_int_equal(strlen(row.field[i]), row.len[i]);
                icl_buf_printf(&b, "%s%s", i ? "|" : "", row.field[i]);
            }
            icl_buf_putc(&b, ']');
        }
    } else if (rc < 0)
        icl_buf_printf(&b, "E%s", err);
    else
        icl_buf_puts(&b, "EMPTY");
    snprintf(out, outsz, "%s", b.data);
    icl_buf_free(&b);
    icl_csv_free(c);
    icl_reader_close(&r);
}

#define CSV_IS(input, want)                                                  \
    do {                                                                     \
        char got[1024];                                                      \
        csv_dump(input, sizeof input - 1, ',', got, sizeof got);             \
        assert_string_equal(got, want);                                      \
    } while (0)

static void csv_basics(void **state)
{
    (void)state;
    CSV_IS("a,b\n1,2\n", "H2;2:[1|2]");
    CSV_IS("a,b\r\n1,2\r\n3,4", "H2;2:[1|2];3:[3|4]");          /* CRLF, no final newline */
    CSV_IS("\xEF\xBB\xBF" "a,b\n1,2\n", "H2;2:[1|2]");           /* BOM */
    CSV_IS("a,b\n \t1 , 2\t\n", "H2;2:[ \t1 | 2\t]");            /* spaces kept */
    CSV_IS("a,b\n\"x\ny\",\"q\"\"r\"\n5,6\n", "H2;2:[x\ny|q\"r];4:[5|6]");
    CSV_IS("a,b\n\"x\r\ny\",\n", "H2;2:[x\r\ny|]");              /* CRLF inside quotes kept */
    CSV_IS("a,b\n\n\n1,2\n\n", "H2;4:[1|2]");                     /* blank lines */
    CSV_IS("a,b\n,\n", "H2;2:[|]");
    CSV_IS("", "EMPTY");
    CSV_IS("a,b\n", "H2");
    CSV_IS("a,b", "H2");
}

static void csv_errors(void **state)
{
    (void)state;
    CSV_IS("a,b\n1,2,3\n4,5\n", "H2;Et:2: row has 3 fields, the header has 2;3:[4|5]");
    CSV_IS("a,b\n\"1\n\",2,3\n", "H2;Et:2: row has 3 fields, the header has 2");
    CSV_IS("a,b\n1,\"2\n", "H2;Et:2: unterminated quoted field at end of input");
    CSV_IS("a,b\n1,2\"\n3,4\n",
           "H2;Et:2: quote inside an unquoted field at byte offset 3 (quote the whole field and "
           "double the quote);3:[3|4]");
    CSV_IS("a,b\n1,\"2\"x\n3,4\n", "H2;Et:2: text after a closing quote at byte offset 5;3:[3|4]");
    CSV_IS("a,b\n1,\"a\n\xC3\x28\"\n3,4\n",
           "H2;Et:3: invalid UTF-8 at byte offset 0 (byte 0xC3);4:[3|4]");
    CSV_IS("a,b\n1,x\0y\n", "H2;Et:2: NUL byte at byte offset 3");
    CSV_IS("a\xFF,b\n", "Et:1: invalid UTF-8 at byte offset 1 (byte 0xFF)");
}

static void tsv(void **state)
{
    (void)state;
    char got[256];
    const char in[] = "a\tb\n\"x\ty\"\t z,w \n";
    csv_dump(in, sizeof in - 1, '\t', got, sizeof got);
    assert_string_equal(got, "H2;2:[x\ty| z,w ]");
}

/* A field far larger than libcsv's block and the reader's 1 MiB chunk. */
static void long_field(void **state)
{
    (void)state;
    size_t n = 3u << 20;
    char *s = malloc(n + 32);
    size_t k = 0;
    k += (size_t)sprintf(s, "a,b\nx,\"");
    memset(s + k, 'z', n);
    k += n;
    memcpy(s + k, "\"\n", 2);
    k += 2;
    icl_reader r;
    icl_reader_mem(&r, s, k, "t");
    icl_csv *c = icl_csv_new(&r, ',');
    icl_csv_row row;
    char err[200];
    assert_int_equal(icl_csv_header(c, &row, err, sizeof err), 1);
    assert_int_equal(icl_csv_next(c, &row, err, sizeof err), 1);
    assert_int_equal(row.len[1], n);
    assert_int_equal(row.field[1][0], 'z');
    assert_int_equal(row.field[1][n - 1], 'z');
    assert_int_equal(icl_csv_next(c, &row, err, sizeof err), 0);
    icl_csv_free(c);
    icl_reader_close(&r);
    free(s);
}

static void json_array_reader(void **state)
{
    (void)state;
    const char in[] = "\xEF\xBB\xBF [\n {\"a\":\"]}\\\"\"},\n{\"b\":[1,{\"c\":2}]}\n]\n";
    icl_reader r;
    icl_reader_mem(&r, in, sizeof in - 1, "t");
    icl_jarr a;
    icl_jarr_init(&a, &r);
    json_t *o;
    long line;
    char err[200];
    assert_int_equal(icl_jarr_next(&a, &o, &line, err, sizeof err), 1);
    assert_int_equal(line, 2);
    assert_string_equal(json_string_value(json_object_get(o, "a")), "]}\"");
    json_decref(o);
    assert_int_equal(icl_jarr_next(&a, &o, &line, err, sizeof err), 1);
    assert_int_equal(line, 3);
    json_decref(o);
    assert_int_equal(icl_jarr_next(&a, &o, &line, err, sizeof err), 0);
    icl_jarr_free(&a);
    icl_reader_close(&r);

    const char bad[] = "[{\"a\":1},{\"b\":\n\"\xFF\"}]";
    icl_reader_mem(&r, bad, sizeof bad - 1, "t");
    icl_jarr_init(&a, &r);
    assert_int_equal(icl_jarr_next(&a, &o, &line, err, sizeof err), 1);
    json_decref(o);
    assert_int_equal(icl_jarr_next(&a, &o, &line, err, sizeof err), -1);
    assert_string_equal(err, "t:2: array element 2: invalid UTF-8 at byte offset 1 (byte 0xFF)");
    assert_int_equal(icl_jarr_next(&a, &o, &line, err, sizeof err), 0);
    icl_jarr_free(&a);
    icl_reader_close(&r);
}

static void jsonl_lines(void **state)
{
    (void)state;
    const char in[] = "\n{\"a\":1}\r\n  \n{\"a\":2}";
    icl_reader r;
    icl_reader_mem(&r, in, sizeof in - 1, "t");
    json_t *o;
    long line;
    char err[200];
    assert_int_equal(icl_jsonl_next(&r, &o, &line, err, sizeof err), 1);
    assert_int_equal(line, 2);
    json_decref(o);
    assert_int_equal(icl_jsonl_next(&r, &o, &line, err, sizeof err), 1);
    assert_int_equal(line, 4);
    assert_int_equal(json_integer_value(json_object_get(o, "a")), 2);
    json_decref(o);
    assert_int_equal(icl_jsonl_next(&r, &o, &line, err, sizeof err), 0);
    icl_reader_close(&r);
}

/* Lone CR ends a line too (old Mac files; Python's csv reads them): line
 * numbers count it, and after bad quoting reading resumes at the next CR
 * (it used to look for the next LF and silently lose the rest of the file). */
static void csv_cr_only(void **state)
{
    (void)state;
    CSV_IS("a,b\r1,2\r3,4\r", "H2;2:[1|2];3:[3|4]");
    CSV_IS("a,b\r1,2\r3,4,5\r6,7", "H2;2:[1|2];Et:3: row has 3 fields, the header has 2;4:[6|7]");
    CSV_IS("a,b\r1,2\r3,x\"y\r5,6\r7,8\r",
           "H2;2:[1|2];Et:3: quote inside an unquoted field at byte offset 3 (quote the whole field and "
           "double the quote);4:[5|6];5:[7|8]");
    CSV_IS("a,b\r\r\r1,\"x\ry\"\r3,4\r", "H2;4:[1|x\ry];6:[3|4]");      /* blank CR lines */
    CSV_IS("a,b\r\n1,\"x\r\ny\"\r\n3,4\r\n", "H2;2:[1|x\r\ny];4:[3|4]"); /* CRLF counts once */
    CSV_IS("a,b\r1,\xff\r3,4\r", "H2;Et:2: invalid UTF-8 at byte offset 2 (byte 0xFF);3:[3|4]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(csv_basics), cmocka_unit_test(csv_cr_only), cmocka_unit_test(csv_errors), cmocka_unit_test(tsv),
        cmocka_unit_test(long_field), cmocka_unit_test(json_array_reader), cmocka_unit_test(jsonl_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
