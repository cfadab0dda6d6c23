/* csvin.c - see csvin.h.
 *
 * libcsv is fed one physical line at a time.  Before each line we look at
 * libcsv's parser state: when no row is in progress (pstate 0,
 * ROW_NOT_BEGUN in libcsv.c) the next row starts on this line, which gives
 * every row its starting line number without knowing where inside
 * csv_parse the callbacks fire.  Completed rows are queued (a lone CR can
 * end two rows in one line) and handed out one per icl_csv_next.
 */
#include "csvin.h"

#include <stdarg.h>
#include <string.h>

#include "record.h"

enum { ROW_NOT_BEGUN = 0, FIELD_MIGHT_HAVE_ENDED = 3 }; /* libcsv.c's pstate values */

typedef struct {
    size_t first, n; /* fields [first, first+n) in c->fo/c->fl */
    long line;
    int bad;         /* index+1 into c->msgs, or 0 */
} row_rec;

struct icl_csv {
    struct csv_parser p;
    icl_reader *r;
    char delim;
    icl_buf arena;          /* field bytes, each followed by NUL */
    size_t *fo, *fl;        /* field offsets into arena and lengths */
    size_t nf, capf;
    size_t row_first;       /* first field of the row in progress */
    long row_line;          /* line where the row in progress started */
    char row_msg[256];      /* error attached to the row in progress */
    int row_bad;
    long row_bad_line;      /* line of that error */
    row_rec *q;             /* completed rows */
    size_t qn, qhead, qcap;
    char (*msgs)[256];      /* messages of bad queued rows */
    size_t nmsg, capmsg;
    size_t ncols;           /* header width; 0 before the header */
    const char **fptr;      /* returned pointer arrays */
    size_t capptr;
    char **hdr;             /* owned copy of the header */
    size_t *hdrlen;
    size_t nhdr;
    int eof;
};

static int no_space(unsigned char c)
{
    (void)c;
    return 0;
}

static void init_parser(icl_csv *c)
{
    if (csv_init(&c->p, CSV_STRICT | CSV_STRICT_FINI) != 0)
        die("out of memory");
    csv_set_delim(&c->p, (unsigned char)c->delim);
    csv_set_space_func(&c->p, no_space);
    csv_set_blk_size(&c->p, 64 * 1024);
}

icl_csv *icl_csv_new(icl_reader *r, char delim)
{
    icl_csv *c = xcalloc(1, sizeof *c);
    c->r = r;
    c->delim = delim;
    init_parser(c);
    const char *p;
    if (icl_reader_peek(r, 3, &p) == 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        icl_reader_skip(r, 3);
    return c;
}

void icl_csv_free(icl_csv *c)
{
    if (!c)
        return;
    csv_free(&c->p);
    buf_free(&c->arena);
    free(c->fo);
    free(c->fl);
    free(c->q);
    free(c->msgs);
    free(c->fptr);
    for (size_t i = 0; i < c->nhdr; i++)
        free(c->hdr[i]);
    free(c->hdr);
    free(c->hdrlen);
    free(c);
}

static void cb_field(void *s, size_t len, void *data)
{
    icl_csv *c = data;
    if (c->nf == c->capf) {
        c->capf = c->capf ? 2 * c->capf : 64;
        c->fo = xreallocarray(c->fo, c->capf, sizeof *c->fo);
        c->fl = xreallocarray(c->fl, c->capf, sizeof *c->fl);
    }
    c->fo[c->nf] = c->arena.len;
    c->fl[c->nf] = len;
    c->nf++;
    buf_reserve(&c->arena, len + 1);
    if (len)
        memcpy(c->arena.data + c->arena.len, s, len);
    c->arena.len += len;
    c->arena.data[c->arena.len++] = '\0';
}

static void queue_row(icl_csv *c, const char *msg)
{
    if (c->qn == c->qcap) {
        c->qcap = c->qcap ? 2 * c->qcap : 8;
        c->q = xreallocarray(c->q, c->qcap, sizeof *c->q);
    }
    row_rec *rr = &c->q[c->qn++];
    rr->first = c->row_first;
    rr->n = c->nf - c->row_first;
    rr->line = c->row_line;
    rr->bad = 0;
    if (!msg && c->row_bad) {
        msg = c->row_msg;
        rr->line = c->row_bad_line;
    }
    if (!msg && c->ncols && rr->n != c->ncols) {
        static char m[128];
        snprintf(m, sizeof m, "row has %zu field%s, the header has %zu", rr->n,
                 rr->n == 1 ? "" : "s", c->ncols);
        msg = m;
    }
    if (msg) {
        if (c->nmsg == c->capmsg) {
            c->capmsg = c->capmsg ? 2 * c->capmsg : 4;
            c->msgs = xreallocarray(c->msgs, c->capmsg, sizeof *c->msgs);
        }
        snprintf(c->msgs[c->nmsg], sizeof c->msgs[0], "%s", msg);
        rr->bad = (int)++c->nmsg;
    }
    c->row_first = c->nf;
    c->row_bad = 0;
}

static void cb_row(int term, void *data)
{
    (void)term;
    queue_row((icl_csv *)data, NULL);
}

/* Drop the fields of rows already handed out, keeping the row in progress. */
static void compact(icl_csv *c)
{
    c->qn = c->qhead = 0;
    c->nmsg = 0;
    size_t keep = c->nf - c->row_first;
    if (c->row_first == 0)
        return;
    size_t base = keep ? c->fo[c->row_first] : c->arena.len;
    memmove(c->arena.data, c->arena.data + base, c->arena.len - base);
    c->arena.len -= base;
    for (size_t i = 0; i < keep; i++) {
        c->fo[i] = c->fo[c->row_first + i] - base;
        c->fl[i] = c->fl[c->row_first + i];
    }
    c->nf = keep;
    c->row_first = 0;
}

__attribute__((format(printf, 2, 3)))
static void set_row_bad(icl_csv *c, const char *fmt, ...)
{
    if (c->row_bad)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->row_msg, sizeof c->row_msg, fmt, ap);
    va_end(ap);
    c->row_bad = 1;
    c->row_bad_line = c->r->lineno;
}

/* Feed one more line to libcsv (or finish at end of input). */
static void feed(icl_csv *c)
{
    const char *line;
    size_t n = icl_reader_line(c->r, &line);
    if (n == 0) {
        c->eof = 1;
        if (csv_fini(&c->p, cb_field, cb_row, c) != 0) {
            /* Only CSV_STRICT_FINI fails here: a quoted field left open. */
            c->nf = c->row_first;
            queue_row(c, "unterminated quoted field at end of input");
        }
        return;
    }
    if (c->p.pstate == ROW_NOT_BEGUN) {
        c->row_line = c->r->lineno;
        c->row_bad = 0;
    }
    const char *z = memchr(line, '\0', n);
    size_t bad = icl_utf8_valid(line, z ? (size_t)(z - line) : n);
    if (z && bad == (size_t)(z - line))
        set_row_bad(c, "NUL byte at byte offset %zu", bad);
    else if (bad < n)
        set_row_bad(c, "invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad, (unsigned char)line[bad]);
    size_t done = csv_parse(&c->p, line, n, cb_field, cb_row, c);
    if (done < n) {
        char msg[256];
        if (c->p.pstate == FIELD_MIGHT_HAVE_ENDED)
            snprintf(msg, sizeof msg, "text after a closing quote at byte offset %zu", done);
        else
            snprintf(msg, sizeof msg, "quote inside an unquoted field at byte offset %zu "
                     "(quote the whole field and double the quote)", done);
        /* Drop the partial row and restart the parser at the next line. */
        c->nf = c->row_first;
        c->row_bad = 0;
        c->row_line = c->r->lineno;
        queue_row(c, msg);
        csv_free(&c->p);
        init_parser(c);
    }
}

/* Pop the next queued row, feeding lines as needed.  Returns 1, 0 at end,
 * -1 for a bad row (message in err). */
static int next_row(icl_csv *c, icl_csv_row *row, char *err, size_t errsz)
{
    if (c->qhead == c->qn) {
        compact(c);
        while (c->qn == 0 && !c->eof)
            feed(c);
        if (c->qn == 0)
            return 0;
    }
    row_rec *rr = &c->q[c->qhead++];
    if (rr->bad) {
        snprintf(err, errsz, "%s:%ld: %s", c->r->name, rr->line, c->msgs[rr->bad - 1]);
        return -1;
    }
    if (c->capptr < rr->n) {
        c->capptr = rr->n;
        c->fptr = xreallocarray(c->fptr, c->capptr, sizeof *c->fptr);
    }
    for (size_t i = 0; i < rr->n; i++)
        c->fptr[i] = c->arena.data + c->fo[rr->first + i];
    row->nfields = rr->n;
    row->field = c->fptr;
    row->len = c->fl + rr->first;
    row->line = rr->line;
    return 1;
}

int icl_csv_header(icl_csv *c, icl_csv_row *hdr, char *err, size_t errsz)
{
    icl_csv_row row;
    int rc = next_row(c, &row, err, errsz);
    if (rc <= 0)
        return rc;
    c->nhdr = row.nfields;
    c->hdr = xcalloc(row.nfields, sizeof *c->hdr);
    c->hdrlen = xcalloc(row.nfields, sizeof *c->hdrlen);
    for (size_t i = 0; i < row.nfields; i++) {
        c->hdr[i] = xstrndup(row.field[i], row.len[i]);
        c->hdrlen[i] = row.len[i];
    }
    c->ncols = row.nfields;
    hdr->nfields = c->nhdr;
    hdr->field = (const char **)c->hdr;
    hdr->len = c->hdrlen;
    hdr->line = row.line;
    return 1;
}

int icl_csv_next(icl_csv *c, icl_csv_row *row, char *err, size_t errsz)
{
    return next_row(c, row, err, errsz);
}
