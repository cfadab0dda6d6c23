/* Unit tests of lib/toklines.c: the token-line reader and writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "toklines.h"

static char path[64];

static void write_file(const char *s)
{
    strcpy(path, "/tmp/icl-toklines-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
    close(fd);
}

/* Read all of s; returns the reader's last status and the message. */
static int read_all(const char *s, int vocab, char *err, long *n)
{
    icl_toklines_reader r;
    write_file(s);
    icl_toklines_open(&r, path, vocab);
    int rc;
    *n = 0;
    while ((rc = icl_toklines_next(&r, err, 256)) == 1)
        (*n)++;
    icl_toklines_close(&r);
    unlink(path);
    return rc;
}

static void segments_and_targets(void **state)
{
    (void)state;
    char err[256];
    write_file("#icl-tokens 1 fingerprint=xxh3:00000000000000ff vocab_size=10 bos=1 eos=2 pad=-1 source=a b.json\n"
               "1 2 3\t4 5 2\n"
               "\t7 8\n"
               "# a comment\n"
               "1\t2\t3\t4\n"
               "5 6\t\n");
    icl_toklines_reader r;
    icl_toklines_open(&r, path, 0);
    assert_int_equal(icl_toklines_next(&r, err, sizeof err), 1);
    assert_true(r.hdr.present);
    assert_int_equal(r.hdr.fingerprint, 0xff);
    assert_int_equal(r.hdr.vocab_size, 10);
    assert_int_equal(r.hdr.bos, 1);
    assert_int_equal(r.hdr.eos, 2);
    assert_int_equal(r.hdr.pad, -1);
    assert_string_equal(r.hdr.source, "a b.json");
    assert_int_equal(r.n, 6);
    assert_int_equal(r.nseg, 2);
    assert_int_equal(r.seg_end[0], 3);
    assert_int_equal(r.seg_end[1], 6);
    static const uint8_t t1[] = {0, 0, 0, 1, 1, 1};
    assert_memory_equal(r.target, t1, 6);
    assert_int_equal(r.ids[4], 5);
    assert_int_equal(icl_toklines_next(&r, err, sizeof err), 1);
    assert_int_equal(r.nseg, 2);
    assert_int_equal(r.seg_end[0], 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.target[0], 1);
    assert_int_equal(icl_toklines_next(&r, err, sizeof err), 1);
    assert_int_equal(r.nseg, 4);
    static const uint8_t t3[] = {0, 1, 0, 1};
    assert_memory_equal(r.target, t3, 4);
    assert_int_equal(icl_toklines_next(&r, err, sizeof err), 1);
    assert_int_equal(r.nseg, 2);
    assert_int_equal(r.seg_end[1], 2);
    assert_int_equal(icl_toklines_next(&r, err, sizeof err), 0);
    assert_int_equal(r.examples, 4);
    icl_toklines_close(&r);
    unlink(path);
}

static void bad_lines_name_file_and_line(void **state)
{
    (void)state;
    char err[256], want[128];
    long n;
    static const struct {
        const char *text;
        const char *msg;
    } bad[] = {
        {"1 2\n1  2\n", ":2: byte 3: expected a token id, found a second space"},
        {"1 2 \n", ":1: byte 5: expected a token id, found end of line"},
        {"1 2\r\n", ":1: ends with a carriage return (CRLF line end); token lines end with LF alone"},
        {"1 2\n3\t4\r\n", ":2: ends with a carriage return (CRLF line end)"},
        {"\xEF\xBB\xBF" "1 2\n", ":1: starts with a UTF-8 byte order mark (BOM); token lines have none"},
        {"{\"prompt\":\"a\",\"response\":\"b\"}\n", ":1: a JSON record, not token ids: make token lines with icl-tok encode"},
        {"1 2\n[\"a\"]\n", ":2: a JSON record, not token ids"},
        {"1 2\t\r\n", ":1: ends with a carriage return"},
        {"instruction,output\na,b\n", ":1: text, not token ids (CSV, TSV or plain text?): make records with icl-fmt"},
        {"question,answer\r\na,b\r\n", ":1: text, not token ids (CSV, TSV or plain text?)"}, /* Python's csv: CRLF */
        {"1 2\nx y\n", ":2: byte 1: expected a token id, found a non-digit"}, /* after ids: the exact fault */
        {"1 -2\n", ":1: byte 3: expected a token id, found a non-digit"},
        {"1 x\n", ":1: byte 3: expected a token id"},
        {"3 10\n", ":1: token id 10 is not below the vocabulary size 10"},
        {"99999999999999\n", ":1: token id 99999999999999 is out of range (ids are below 2^31)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(read_all(bad[i].text, 10, err, &n), -1);
        snprintf(want, sizeof want, "%s%s", path, bad[i].msg);
        if (strncmp(err, want, strlen(want)))
            fail_msg("case %zu: got '%s', want '%s'", i, err, want);
    }
    /* the header's vocab_size bounds ids when the caller gives none */
    assert_int_equal(read_all("#icl-tokens 1 fingerprint=xxh3:0000000000000001 vocab_size=5 source=x\n4\n5\n", 0, err, &n), -1);
    assert_non_null(strstr(err, ":3: token id 5 is not below the vocabulary size 5"));
    /* a second header must agree */
    assert_int_equal(read_all("#icl-tokens 1 fingerprint=xxh3:0000000000000001 vocab_size=5\n1\n"
                              "#icl-tokens 1 fingerprint=xxh3:0000000000000002 vocab_size=5\n",
                              0, err, &n), -1);
    assert_non_null(strstr(err, ":3: tokenizer differs from the header at line 1"));
    assert_int_equal(read_all("#icl-tokens 2 fingerprint=xxh3:0000000000000001 vocab_size=5\n", 0, err, &n), -1);
    assert_non_null(strstr(err, "unsupported version"));
    assert_int_equal(read_all("#icl-tokens 1 vocab_size=5\n", 0, err, &n), -1);
    assert_non_null(strstr(err, "needs fingerprint"));
}

static void header_round_trip(void **state)
{
    (void)state;
    icl_toklines_header h = {1, 0x0123456789abcdefull, 151669, -1, 151645, 151643, (char *)"dir/with space/tok.json"};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    icl_toklines_write_header(f, &h);
    fclose(f);
    assert_string_equal(buf, "#icl-tokens 1 fingerprint=xxh3:0123456789abcdef vocab_size=151669 bos=-1 "
                             "eos=151645 pad=151643 source=dir/with space/tok.json\n");
    icl_toklines_header g;
    char err[256];
    assert_int_equal(icl_toklines_parse_header(buf, len - 1, &g, err, sizeof err), 0);
    assert_int_equal(g.fingerprint, h.fingerprint);
    assert_int_equal(g.vocab_size, 151669);
    assert_int_equal(g.eos, 151645);
    assert_int_equal(g.pad, 151643);
    assert_string_equal(g.source, h.source);
    icl_toklines_header_free(&g);
    free(buf);
    icl_buf b = {0};
    int32_t a[] = {1, 22, 333};
    icl_toklines_put_segment(&b, a, 3, 1);
    icl_toklines_put_segment(&b, a, 0, 0);
    icl_toklines_put_segment(&b, a + 1, 2, 0);
    assert_string_equal(b.data, "1 22 333\t\t22 333");
    icl_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(segments_and_targets),
        cmocka_unit_test(bad_lines_name_file_and_line),
        cmocka_unit_test(header_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
