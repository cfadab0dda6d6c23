/* reader.c - see reader.h. */
#define _GNU_SOURCE 1 /* memrchr */
#include "reader.h"

#include <errno.h>
#include <string.h>

#include "record.h"
#include "fileio.h"
#include "util.h"

#define READER_CHUNK (1u << 20)

int icl_reader_open(icl_reader *r, const char *path, char *err, size_t errsz)
{
    memset(r, 0, sizeof *r);
    if (!(r->f = icl_fopen_in(path, err, errsz)))
        return -1;
    r->name = icl_display_name(path);
    r->cap = READER_CHUNK;
    r->buf = icl_xmalloc(r->cap);
    return 0;
}

void icl_reader_mem(icl_reader *r, const char *data, size_t n, const char *name)
{
    memset(r, 0, sizeof *r);
    r->buf = (char *)data;
    r->len = r->cap = n;
    r->mem = r->eof = 1;
    r->name = name;
}

void icl_reader_close(icl_reader *r)
{
    if (r->f && r->f != stdin)
        fclose(r->f);
    if (!r->mem)
        free(r->buf);
    memset(r, 0, sizeof *r);
}

/* Read more input after the unconsumed bytes; returns bytes added (0 at EOF). */
static size_t fill(icl_reader *r)
{
    if (r->eof)
        return 0;
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->cap - r->len < READER_CHUNK / 2) {
        if (r->cap >= ICL_READER_MAX) { /* a line without end (/dev/zero): an error, not all the memory */
            r->errnum = EFBIG;
            r->eof = 1;
            return 0;
        }
        r->cap *= 2;
        r->buf = icl_xrealloc(r->buf, r->cap);
    }
    size_t got = fread(r->buf + r->len, 1, r->cap - r->len, r->f);
    if (got == 0) {
        if (ferror(r->f))
            r->errnum = errno ? errno : EIO;
        r->eof = 1;
    }
    r->len += got;
    return got;
}

size_t icl_reader_peek(icl_reader *r, size_t n, const char **p)
{
    while (r->len - r->pos < n && fill(r) > 0)
        ;
    *p = r->buf + r->pos;
    size_t have = r->len - r->pos;
    return have < n ? have : n;
}

void icl_reader_skip(icl_reader *r, size_t n)
{
    r->pos += n;
}

size_t icl_reader_line(icl_reader *r, const char **p)
{
    size_t scanned = 0;
    for (;;) {
        const char *start = r->buf + r->pos;
        size_t avail = r->len - r->pos;
        const char *nl = memchr(start + scanned, '\n', avail - scanned);
        if (nl) {
            size_t n = (size_t)(nl - start) + 1;
            r->pos += n;
            r->lineno++;
            *p = start;
            return n;
        }
        scanned = avail;
        if (fill(r) == 0) {
            avail = r->len - r->pos;
            if (avail == 0)
                return 0;
            *p = r->buf + r->pos;
            r->pos += avail;
            r->lineno++;
            return avail;
        }
    }
}

size_t icl_reader_lines(icl_reader *r, size_t want, const char **p)
{
    const char *q;
    size_t have = icl_reader_peek(r, want, &q);
    if (have == 0)
        return 0;
    const char *nl = memrchr(q, '\n', have);
    if (!nl) {
        if (have < want) { /* the last line, without '\n' */
            *p = q;
            r->pos += have;
            return have;
        }
        size_t n = icl_reader_line(r, p); /* one long line */
        r->lineno--;
        return n;
    }
    size_t n = (size_t)(nl - q) + 1;
    *p = q;
    r->pos += n;
    return n;
}
