/* csvin.h - streaming CSV and TSV reading through libcsv.
 *
 * Dialect (RFC 4180 as Python's csv module reads it, checked strictly):
 *  - the first row is the header; every later row must have as many fields;
 *  - rows end in LF or CRLF (a lone CR also ends a row, and counts as a line
 *    end in line numbers, as in Python's csv); blank lines between rows are
 *    ignored; the last row may lack a final newline;
 *  - a field in double quotes may hold delimiters, CR, LF and doubled quotes
 *    ("" stands for one "); a quote inside an unquoted field, or text after a
 *    closing quote, is an error (libcsv's CSV_STRICT); a quoted field still
 *    open at end of input is an error (CSV_STRICT_FINI);
 *  - spaces and tabs around unquoted fields are kept (libcsv trims them by
 *    default; we install a space predicate that says no);
 *  - a UTF-8 byte order mark at the start is dropped; every line must be
 *    valid UTF-8 (RFC 3629) without NUL bytes.
 * TSV is the same with TAB as the delimiter (quoting as in Python's
 * excel-tab dialect).
 *
 * Input is read line by line through an icl_reader, so memory holds one row
 * (plus one read buffer), not the file.  No malloc per field: field bytes are
 * copied into one growing arena per reader.
 */
#ifndef ICL_CSVIN_H
#define ICL_CSVIN_H

#include <csv.h>
#include <stddef.h>

#include "reader.h"
#include "util.h"

/* One row.  field[i] points to len[i] bytes followed by a NUL; pointers stay
 * valid until the next call of icl_csv_next.  line is the physical line
 * (1-based, counting '\n') on which the row starts. */
typedef struct {
    size_t nfields;
    const char **field;
    const size_t *len;
    long line;
} icl_csv_row;

typedef struct icl_csv icl_csv;

/* Start reading CSV (delim ',') or TSV (delim '\t') from r (not owned; it
 * must stay open while the icl_csv lives).  Strips a UTF-8 BOM. */
icl_csv *icl_csv_new(icl_reader *r, char delim);
/* n > 1: after the header, parse (libcsv) in a second thread that passes
 * batches of rows through a small bounded queue, so that parsing overlaps
 * the caller's work on the rows.  Rows, errors and their order are the same
 * as with n <= 1 (the default).  Call before icl_csv_header.  A read error
 * (die) then comes from the parser thread. */
void icl_csv_set_threads(icl_csv *c, int n);
/* Also stops and joins the parser thread if it runs. */
void icl_csv_free(icl_csv *c);

/* Read the header row.  Returns 1 (then *hdr holds the column names, valid
 * until icl_csv_free), 0 if the input is empty (no row at all), or -1 with
 * "FILE:LINE: what" in err when the header itself is malformed (fatal). */
int icl_csv_header(icl_csv *c, icl_csv_row *hdr, char *err, size_t errsz);

/* Next data row.  Returns 1 with *row set, 0 at end of input, or -1 with
 * "FILE:LINE: what" in err for a bad row: wrong field count, invalid UTF-8
 * or NUL ("... at byte offset K" within that line), bad quoting, or an
 * unterminated quoted field at end of input.  After -1 the bad row has been
 * consumed and reading may continue with the next row (to skip bad rows);
 * after bad quoting the parser restarts at the next line. */
int icl_csv_next(icl_csv *c, icl_csv_row *row, char *err, size_t errsz);

#endif
