/* record.h - JSON Lines records (doc/DESIGN.md, stream 1) and line reading.
 *
 * A record is one JSON object per line, UTF-8.  Objects are jansson json_t
 * values; jansson (>= 2.8) keeps object keys in insertion order, so keys a
 * program does not know pass through unchanged and in order.
 *
 * Values are re-serialised by jansson: strings byte for byte, integers
 * exactly (up to int64), reals with 17 significant digits.
 */
#ifndef ICL_RECORD_H
#define ICL_RECORD_H

#include <jansson.h>
#include <stdio.h>
#include <sys/types.h>

#include "utf8.h"
#include "util.h"

/* The longest line icl_lines reads (256 MiB): past it, an error (EFBIG),
 * not all the memory (an endless line: /dev/zero). */
#define ICL_LINE_MAX ((size_t)256 << 20)

/* Line reader over a FILE: lines up to max bytes (ICL_LINE_MAX when 0, as
 * icl_lines_init leaves it), numbered from 1.  name is used in messages
 * ("-" shows as "<stdin>"); not owned. */
typedef struct {
    FILE *f;
    const char *name;
    long lineno;   /* number of the line last returned */
    icl_buf line;  /* the line, without its '\n' (a '\r' before it is kept) */
    int nul;       /* line contains a NUL byte (offset in nul_at) */
    size_t nul_at;
    int errnum;    /* errno of a read error (icl_lines_next returned -1), else 0 */
    size_t max;    /* the longest line, 0: ICL_LINE_MAX (icl-gen --chat: a message's) */
} icl_lines;

/* Open a line reader on path ("-" = stdin).  0, or -1 with "PATH: reason"
 * in err when the file cannot be opened (r is then closed). */
int icl_lines_open(icl_lines *r, const char *path, char *err, size_t errsz);
/* Wrap an already open FILE; name is for messages. */
void icl_lines_init(icl_lines *r, FILE *f, const char *name);
/* Read the next line into r->line.  Returns 1, 0 at end of input (a last
 * line without '\n' is still returned), or -1 on a read error (errno and
 * r->errnum set; the message is the caller's: "NAME: read error: ...") or
 * a line longer than the maximum (errnum EFBIG, lineno its number). */
int icl_lines_next(icl_lines *r);
/* Close (not stdin) and free the buffer. */
void icl_lines_close(icl_lines *r);
/* Display name of a path: "<stdin>" for "-". */
const char *icl_display_name(const char *path);

/* UTF-8 checks (icl_utf8_valid) are in utf8.h. */
/* Parse one JSONL line into an object.  On error returns NULL and writes a
 * message of the form "what is wrong" (no file:line prefix) into err.
 * Rejected: invalid UTF-8 (with byte offset), NUL bytes raw or as \u0000,
 * lone surrogates (\ud83e alone), values that are not objects, trailing data.
 * Surrogate pairs (\ud83e\udd17) decode to one code point.  Caller owns the
 * result (json_decref). */
json_t *icl_record_parse(const char *line, size_t len, char *err, size_t errsz);

/* Read the next record from r, skipping blank lines.  Returns 1 and sets *out
 * (caller json_decref's it), 0 at end of input, or -1 on a bad line with the
 * message "FILE:LINE: what" in err (or "FILE: read error: ..."). */
int icl_record_next(icl_lines *r, json_t **out, char *err, size_t errsz);

/* Write rec as one compact JSON line (UTF-8 unescaped, keys in order, '\n').
 * 0, or -1 on a write error (errno set) or a value jansson cannot write. */
int icl_record_write(FILE *f, const json_t *rec);

/* Serialise rec compactly into b (appending, no newline).  0, or -1 when
 * jansson cannot serialise it (out of memory). */
int icl_record_dump(icl_buf *b, const json_t *rec);

#endif
