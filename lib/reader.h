/* reader.h - buffered byte input with look-ahead and line splitting.
 *
 * The input side of icl-fmt: a large buffer (1 MiB, grown for longer lines)
 * over a FILE or over memory, so a format can be detected from the first
 * bytes of stdin without losing them, and lines come out as pointers into
 * the buffer without a copy or a malloc per line.
 */
#ifndef ICL_READER_H
#define ICL_READER_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *f;           /* NULL when reading memory */
    const char *name;  /* for messages; not owned */
    char *buf;         /* owned unless mem */
    size_t cap, pos, len;
    int eof, mem;
    long lineno;       /* number of the line last returned by icl_reader_line (1-based) */
    int errnum;        /* errno of a read error, else 0 (see icl_reader_peek) */
} icl_reader;

/* Open path ("-" = stdin) for reading: 0, or -1 with "PATH: reason" in err.
 * Messages name the file icl_display_name(path). */
int icl_reader_open(icl_reader *r, const char *path, char *err, size_t errsz);
/* Read n bytes of memory (not copied: data must outlive the reader). */
void icl_reader_mem(icl_reader *r, const char *data, size_t n, const char *name);
/* Close the file (never stdin) and free the buffer; a zeroed or closed
 * reader may be closed again. */
void icl_reader_close(icl_reader *r);

/* Make at least n bytes available at *p (fewer only at end of input).
 * Returns the number available; does not consume.  A read error ends the
 * input as end of file would and sets r->errnum: a caller that reaches the
 * end checks it before taking the input as complete. */
size_t icl_reader_peek(icl_reader *r, size_t n, const char **p);
/* Consume n bytes that icl_reader_peek made available. */
void icl_reader_skip(icl_reader *r, size_t n);

/* The most the reader holds at once: a line (or a peek) longer than about
 * this ends the input with r->errnum EFBIG, so an endless line (/dev/zero)
 * is an error instead of all the memory. */
#define ICL_READER_MAX ((size_t)256 << 20)

/* Next physical line, including its '\n' when it has one (the last line of
 * a file may not).  *p points into the reader's buffer and stays valid until
 * the next call.  Returns the length (> 0), or 0 at end of input.  Lines
 * may be of any length up to about ICL_READER_MAX and contain any bytes,
 * NUL included.  Increments r->lineno. */
size_t icl_reader_line(icl_reader *r, const char **p);

/* A run of whole lines: at most about `want` bytes when the lines are shorter
 * than that, else one line (of any length); the last line of the input may
 * lack its '\n'.  *p points into the buffer, valid until the next call.
 * Returns the length, or 0 at end of input.  Does not count lines. */
size_t icl_reader_lines(icl_reader *r, size_t want, const char **p);

#endif
