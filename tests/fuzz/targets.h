/* targets.h - the fuzz targets for the CSV reader and the JSON readers.
 *
 * Included by the libFuzzer harnesses (tests/fuzz/fuzz_*.c, built by
 * `make fuzz` with clang -fsanitize=fuzzer,address,undefined) and by the
 * unit test that replays the committed corpus through the same code under
 * gcc (tests/unit/test_fuzz_replay.c), so a regression is caught by
 * `make check`.
 *
 * Besides not crashing, the readers must keep their promises: every field
 * or string handed out is valid UTF-8 without NUL bytes, a row has as many
 * fields as the header, lines are increasing, and reading ends.
 */
#ifndef ICL_FUZZ_TARGETS_H
#define ICL_FUZZ_TARGETS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csvin.h"
#include "jsonin.h"
#include "reader.h"
#include "record.h"

#define FUZZ_CHECK(cond)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, \
                    __LINE__);                                                  \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* CSV (first byte even) or TSV (odd) over the rest of the input. */
static inline int fuzz_csv(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char delim = (data[0] & 1) ? '\t' : ',';
    icl_reader r;
    icl_reader_mem(&r, (const char *)data + 1, size - 1, "fuzz");
    icl_csv *c = icl_csv_new(&r, delim);
    icl_csv_row row;
    char err[512];
    int rc = icl_csv_header(c, &row, err, sizeof err);
    if (rc > 0) {
        size_t ncols = row.nfields;
        long last = 0;
        while ((rc = icl_csv_next(c, &row, err, sizeof err)) != 0) {
            if (rc < 0) {
                FUZZ_CHECK(strncmp(err, "fuzz:", 5) == 0);
                continue;
            }
            FUZZ_CHECK(row.nfields == ncols);
            FUZZ_CHECK(row.line >= last); /* a lone CR ends a row, not a line */
            last = row.line;
            for (size_t i = 0; i < row.nfields; i++) {
                FUZZ_CHECK(strlen(row.field[i]) == row.len[i]);
                FUZZ_CHECK(icl_utf8_valid(row.field[i], row.len[i]) == row.len[i]);
            }
        }
    }
    icl_csv_free(c);
    icl_reader_close(&r);
    return 0;
}

static inline void fuzz_check_json(const json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        FUZZ_CHECK(strlen(s) == n);
        FUZZ_CHECK(icl_utf8_valid(s, n) == n);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e) {
            FUZZ_CHECK(icl_utf8_valid(k, strlen(k)) == strlen(k));
            fuzz_check_json(e);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            fuzz_check_json(json_array_get(v, i));
    }
}

/* The same bytes as JSON Lines and as a JSON array. */
static inline int fuzz_json(const uint8_t *data, size_t size)
{
    char err[512];
    json_t *o;
    long line;
    int rc;
    icl_reader r;
    icl_reader_mem(&r, (const char *)data, size, "fuzz");
    while ((rc = icl_jsonl_next(&r, &o, &line, err, sizeof err)) != 0) {
        if (rc < 0)
            continue;
        FUZZ_CHECK(json_is_object(o));
        fuzz_check_json(o);
        json_decref(o);
    }
    icl_reader_close(&r);

    icl_reader_mem(&r, (const char *)data, size, "fuzz");
    icl_jarr a;
    icl_jarr_init(&a, &r);
    long last = 0;
    while ((rc = icl_jarr_next(&a, &o, &line, err, sizeof err)) != 0) {
        if (rc == -2)
            break;
        if (rc < 0)
            continue;
        FUZZ_CHECK(json_is_object(o));
        FUZZ_CHECK(line >= last);
        last = line;
        fuzz_check_json(o);
        json_decref(o);
    }
    icl_jarr_free(&a);
    icl_reader_close(&r);
    return 0;
}

#endif
