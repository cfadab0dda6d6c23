/* jsonin.h - JSON Lines and JSON-array readers over an icl_reader.
 *
 * Both hand out one JSON object (jansson json_t, keys in input order) per
 * call, with the 1-based line on which it starts, so that errors can name
 * the place.  Memory holds one record, not the file: a JSON array such as
 * Stanford Alpaca's alpaca_data.json ("[ {...}, {...} ]") is split into its
 * elements by a small scanner (strings, escapes, nesting) and each element
 * is parsed on its own.
 *
 * Checks (the same for both): strict UTF-8 (RFC 3629), no NUL bytes (raw
 * or \u0000), no lone surrogates, elements must be objects, duplicate keys
 * rejected.  A UTF-8 BOM at the start is dropped.
 *
 * Return values of the *_next functions:
 *   1  *out set (caller json_decref's it), *line = starting line
 *   0  end of input
 *  -1  a bad record, consumed; reading may continue (to skip bad records)
 *  -2  the input cannot be read any further (broken array syntax)
 * On -1/-2, err holds "FILE:LINE: what is wrong".
 */
#ifndef ICL_JSONIN_H
#define ICL_JSONIN_H

#include <jansson.h>

#include "reader.h"
#include "util.h"

/* JSON Lines: one object per line, blank lines skipped. */
int icl_jsonl_next(icl_reader *r, json_t **out, long *line, char *err, size_t errsz);

/* JSON array of objects.  State is kept in the struct; zero it with
 * icl_jarr_init, release with icl_jarr_free. */
typedef struct {
    icl_reader *r;
    icl_buf elem;      /* bytes of the element being scanned */
    int state;         /* see jsonin.c */
    long elem_line;
    size_t col, elem_col; /* bytes since the last '\n'; that at the element's '{' */
    long count;        /* elements returned so far */
} icl_jarr;

void icl_jarr_init(icl_jarr *a, icl_reader *r);
int icl_jarr_next(icl_jarr *a, json_t **out, long *line, char *err, size_t errsz);
void icl_jarr_free(icl_jarr *a);

/* Drop a UTF-8 BOM at the current position of r, if there is one. */
void icl_reader_skip_bom(icl_reader *r);

#endif
