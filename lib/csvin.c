/* csvin.c - see csvin.h.
 *
 * libcsv is fed runs of whole lines (about 256 KiB at a time).  Line numbers
 * come from the callbacks: with CSV_REPALL_NL libcsv reports every unquoted
 * CR and LF through the row callback (blank lines and the LF of a CRLF as
 * rows without fields, which we ignore), and the LFs inside quoted fields
 * arrive in the field text.  So the line where the parser stands is
 * 1 + LF row ends + LFs in fields delivered so far, and a row starts on the
 * line where the previous row ended (+1 if that end was an LF).
 *
 * Before a run is parsed it is checked for NUL bytes and invalid UTF-8
 * (ASCII skipped 16 bytes at a time); a bad line is fed on its own after
 * marking the row it belongs to as bad.  After a quoting error the parser
 * restarts at the next line.  Completed rows are queued (one run of lines
 * holds many) and handed out one per icl_csv_next.
 */
#include "csvin.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "record.h"

enum { FIELD_MIGHT_HAVE_ENDED = 3 }; /* libcsv.c's pstate after a closing quote */
#define FEED_CHUNK (256u * 1024)

typedef struct {
    size_t first, n; /* fields [first, first+n) in c->fo/c->fl */
    long line;
    int bad;         /* index+1 into c->msgs, or 0 */
} row_rec;

/* Threaded mode (icl_csv_set_threads): the parser thread hands over the rows
 * of one feed() as a batch, by swapping its buffers with an empty slot's, so
 * nothing is copied but the row still in progress.  NSLOT batches (at most
 * ~1 MiB of input) are in flight; the consumer reads the oldest full one. */
typedef struct {
    icl_buf arena;
    size_t *fo, *fl, capf;
    row_rec *q;
    size_t qn, qcap;
    char (*msgs)[256];
    size_t capmsg;
    int eof;                /* last batch: end of input after its rows */
} batch;
enum { NSLOT = 4 };

struct icl_csv {
    struct csv_parser p;
    icl_reader *r;
    char delim;
    icl_buf arena;          /* field bytes, each followed by NUL */
    size_t *fo, *fl;        /* field offsets into arena and lengths */
    size_t nf, capf;
    size_t row_first;       /* first field of the row in progress */
    long line;              /* line the parser stands on (see above) */
    long row_line;          /* line where the row in progress started */
    int cr_pending;         /* the last row ended with CR: an LF next pairs with it */
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
    /* threaded mode; everything above belongs to the parser thread once it
     * runs, except r->name and what the consumer fields below point to */
    int threads, started, stop;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* a slot filled (consumer waits) or freed (parser waits) */
    batch slot[NSLOT];
    size_t head, count;     /* full slots: head..head+count-1 (mod NSLOT); under mu */
    batch *cur;             /* consumer: the batch it reads (slot[head]) or NULL */
    size_t cqhead;          /* consumer: next row of cur */
};

static int no_space(unsigned char c)
{
    (void)c;
    return 0;
}

static void init_parser(icl_csv *c)
{
    if (csv_init(&c->p, CSV_STRICT | CSV_STRICT_FINI | CSV_REPALL_NL) != 0)
        icl_out_of_memory("csv parser");
    csv_set_delim(&c->p, (unsigned char)c->delim);
    csv_set_space_func(&c->p, no_space);
    csv_set_blk_size(&c->p, 64 * 1024);
}

icl_csv *icl_csv_new(icl_reader *r, char delim)
{
    icl_csv *c = icl_xcalloc(1, sizeof *c);
    c->r = r;
    c->delim = delim;
    c->line = c->row_line = 1;
    init_parser(c);
    const char *p;
    if (icl_reader_peek(r, 3, &p) == 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        icl_reader_skip(r, 3);
    return c;
}

void icl_csv_set_threads(icl_csv *c, int n)
{
    c->threads = n;
}

void icl_csv_free(icl_csv *c)
{
    if (!c)
        return;
    if (c->started) {
        /* normally the parser has ended (end of input); if not, stop it */
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->th, NULL);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        for (int i = 0; i < NSLOT; i++) {
            icl_buf_free(&c->slot[i].arena);
            free(c->slot[i].fo);
            free(c->slot[i].fl);
            free(c->slot[i].q);
            free(c->slot[i].msgs);
        }
    }
    csv_free(&c->p);
    icl_buf_free(&c->arena);
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

/* Line ends are LF, CRLF and a lone CR (as Python's csv module, reading a
 * file opened with newline='', counts them in line_num).  count_nl counts
 * the ends in s[0..n); s[n] is looked at (to pair a CR with its LF) when
 * n < avail. */
static size_t count_nl(const char *s, size_t n, size_t avail)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == '\n' || (s[i] == '\r' && !(i + 1 < avail && s[i + 1] == '\n'));
    return k;
}

/* Start of the line that holds s[i] (i < n). */
static size_t line_start(const char *s, size_t i)
{
    while (i > 0 && s[i - 1] != '\n' && !(s[i - 1] == '\r' && s[i] != '\n'))
        i--;
    return i;
}

/* Offset just after the first line end at or after s[i], or n. */
static size_t next_line(const char *s, size_t i, size_t n)
{
    for (; i < n; i++) {
        if (s[i] == '\n')
            return i + 1;
        if (s[i] == '\r')
            return i + 1 < n && s[i + 1] == '\n' ? i + 2 : i + 1;
    }
    return n;
}

static void cb_field(void *s, size_t len, void *data)
{
    icl_csv *c = data;
    if (c->nf == c->capf) {
        c->capf = c->capf ? 2 * c->capf : 64;
        c->fo = icl_xreallocarray(c->fo, c->capf, sizeof *c->fo);
        c->fl = icl_xreallocarray(c->fl, c->capf, sizeof *c->fl);
    }
    c->fo[c->nf] = c->arena.len;
    c->fl[c->nf] = len;
    c->nf++;
    icl_buf_reserve(&c->arena, len + 1);
    if (len) {
        memcpy(c->arena.data + c->arena.len, s, len);
        if (memchr(s, '\n', len) || memchr(s, '\r', len))
            c->line += (long)count_nl(s, len, len);
        c->cr_pending = 0;
    }
    c->arena.len += len;
    c->arena.data[c->arena.len++] = '\0';
}

static void add_msg(icl_csv *c, row_rec *rr, const char *msg)
{
    if (c->nmsg == c->capmsg) {
        c->capmsg = c->capmsg ? 2 * c->capmsg : 4;
        c->msgs = icl_xreallocarray(c->msgs, c->capmsg, sizeof *c->msgs);
    }
    snprintf(c->msgs[c->nmsg], sizeof c->msgs[0], "%s", msg);
    rr->bad = (int)++c->nmsg;
}

/* Queue the row in progress (fields row_first..nf), bad with msg if given. */
static void queue_row(icl_csv *c, const char *msg)
{
    if (c->qn == c->qcap) {
        c->qcap = c->qcap ? 2 * c->qcap : 64;
        c->q = icl_xreallocarray(c->q, c->qcap, sizeof *c->q);
    }
    row_rec *rr = &c->q[c->qn++];
    rr->first = c->row_first;
    rr->n = c->nf - c->row_first;
    rr->line = c->row_line;
    rr->bad = 0;
    if (msg)
        add_msg(c, rr, msg);
    else if (c->row_bad) {
        rr->line = c->row_bad_line;
        add_msg(c, rr, c->row_msg);
    } else if (c->ncols && rr->n != c->ncols) {
        char m[128];
        snprintf(m, sizeof m, "row has %zu field%s, the header has %zu", rr->n,
                 rr->n == 1 ? "" : "s", c->ncols);
        add_msg(c, rr, m);
    }
    c->row_first = c->nf;
    c->row_bad = 0;
}

static void cb_row(int term, void *data)
{
    icl_csv *c = data;
    if (c->nf > c->row_first)
        queue_row(c, NULL);
    /* else: a blank line or the LF of a CRLF (CSV_REPALL_NL) */
    /* CRLF arrives as a row ended by CR, then an empty row ended by LF */
    if (term == '\r' || (term == '\n' && !c->cr_pending))
        c->line++;
    c->cr_pending = term == '\r';
    c->row_line = c->line;
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

/* Length of the prefix of s[0..n) without bytes >= 0x80. */
static size_t ascii_prefix(const char *s, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    for (; i + 16 <= n; i += 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(s + i)));
        if (m)
            return i + (size_t)__builtin_ctz(m);
    }
#endif
    while (i < n && !((unsigned char)s[i] & 0x80))
        i++;
    return i;
}

/* Offset of the first byte that is not valid UTF-8, or n. */
static size_t utf8_check(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        i += ascii_prefix(s + i, n - i);
        if (i == n)
            break;
        /* A multi-byte sequence is all bytes >= 0x80: check the whole run. */
        size_t j = i;
        while (j < n && ((unsigned char)s[j] & 0x80))
            j++;
        size_t v = icl_utf8_valid(s + i, j - i);
        if (v < j - i)
            return i + v;
        i = j;
    }
    return n;
}

/* Parse buf[a..b) of the run buf[0..n); base is the line number of buf[0].  Returns where
 * parsing stopped: b, or after b when a quoting error in the last line
 * skipped the rest of that line. */
static size_t parse_span(icl_csv *c, const char *buf, size_t a, size_t b, size_t n, long base)
{
    while (a < b) {
        size_t done = csv_parse(&c->p, buf + a, b - a, cb_field, cb_row, c);
        if (done == b - a)
            return b;
        size_t at = a + done;
        long line = base + (long)count_nl(buf, at, n);
        const char *ls = buf + line_start(buf, at);
        char msg[256];
        if (c->p.pstate == FIELD_MIGHT_HAVE_ENDED)
            snprintf(msg, sizeof msg, "text after a closing quote at byte offset %zu",
                     (size_t)(buf + at - ls));
        else
            snprintf(msg, sizeof msg, "quote inside an unquoted field at byte offset %zu "
                     "(quote the whole field and double the quote)", (size_t)(buf + at - ls));
        /* Drop the partial row and restart the parser at the next line. */
        c->nf = c->row_first;
        c->row_bad = 0;
        c->row_line = line;
        queue_row(c, msg);
        csv_free(&c->p);
        init_parser(c);
        a = next_line(buf, at, n);
        c->line = c->row_line = line + 1;
    }
    return a;
}

/* Feed the next run of lines to libcsv (or finish at end of input). */
static void feed(icl_csv *c)
{
    const char *buf;
    size_t n = icl_reader_lines(c->r, FEED_CHUNK, &buf);
    if (n == 0) {
        c->eof = 1;
        if (csv_fini(&c->p, cb_field, cb_row, c) != 0) {
            /* Only CSV_STRICT_FINI fails here: a quoted field left open. */
            c->nf = c->row_first;
            queue_row(c, "unterminated quoted field at end of input");
        }
        return;
    }
    /* Line of buf[0]: the parser's line, plus the LFs of a quoted field it
     * is still inside of (libcsv holds those in entry_buf). */
    long base = c->line;
    if (c->p.pstate != 0 && c->p.entry_pos)
        base += (long)count_nl((const char *)c->p.entry_buf, c->p.entry_pos, c->p.entry_pos);
    size_t off = 0;
    while (off < n) {
        const char *z = memchr(buf + off, '\0', n - off);
        size_t lim = z ? (size_t)(z - buf) : n;
        size_t bad = off + utf8_check(buf + off, lim - off);
        if (bad == n) {
            parse_span(c, buf, off, n, n, base);
            return;
        }
        /* Parse up to the bad byte: the row in progress then, or the row the
         * bad byte starts, is the bad one. */
        off = parse_span(c, buf, off, bad, n, base);
        if (off > bad)
            continue; /* the bad byte was in a line dropped for bad quoting */
        if (!c->row_bad) {
            size_t ls = line_start(buf, bad);
            if (z && bad == lim)
                snprintf(c->row_msg, sizeof c->row_msg, "NUL byte at byte offset %zu", bad - ls);
            else
                snprintf(c->row_msg, sizeof c->row_msg,
                         "invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad - ls,
                         (unsigned char)buf[bad]);
            c->row_bad = 1;
            c->row_bad_line = base + (long)count_nl(buf, bad, n);
        }
        off = parse_span(c, buf, bad, bad + 1, n, base);
    }
}

/* Hand out the queued row rr whose fields are in arena/fo/fl. */
static int out_row(icl_csv *c, const row_rec *rr, const char *arena, const size_t *fo,
                   const size_t *fl, char (*msgs)[256], icl_csv_row *row, char *err, size_t errsz)
{
    if (rr->bad) {
        snprintf(err, errsz, "%s:%ld: %s", c->r->name, rr->line, msgs[rr->bad - 1]);
        return -1;
    }
    if (c->capptr < rr->n) {
        c->capptr = rr->n;
        c->fptr = icl_xreallocarray(c->fptr, c->capptr, sizeof *c->fptr);
    }
    for (size_t i = 0; i < rr->n; i++)
        c->fptr[i] = arena + fo[rr->first + i];
    row->nfields = rr->n;
    row->field = c->fptr;
    row->len = fl + rr->first;
    row->line = rr->line;
    return 1;
}

#define SWAP(a, b) do { __typeof__(a) t_ = (a); (a) = (b); (b) = t_; } while (0)

/* Parser thread: feed() as the single-threaded path does, and after each
 * feed that completed rows (or reached the end) pass them on as a batch. */
static void *parser_main(void *arg)
{
    icl_csv *c = arg;
    for (;;) {
        while (c->qn == 0 && !c->eof)
            feed(c);
        pthread_mutex_lock(&c->mu);
        while (c->count == NSLOT && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        int stop = c->stop;
        /* The first empty slot; only this thread touches empty slots. */
        batch *b = &c->slot[(c->head + c->count) % NSLOT];
        pthread_mutex_unlock(&c->mu);
        if (stop)
            break;
        SWAP(c->arena, b->arena);
        SWAP(c->fo, b->fo);
        SWAP(c->fl, b->fl);
        SWAP(c->capf, b->capf);
        SWAP(c->q, b->q);
        SWAP(c->qcap, b->qcap);
        SWAP(c->msgs, b->msgs);
        SWAP(c->capmsg, b->capmsg);
        b->qn = c->qn;
        b->eof = c->eof;
        /* Move the row in progress (fields row_first..nf) to our new buffers. */
        size_t keep = c->nf - c->row_first;
        icl_buf_clear(&c->arena);
        c->nf = c->qn = c->qhead = c->nmsg = 0;
        if (keep > c->capf) {
            c->capf = keep;
            c->fo = icl_xreallocarray(c->fo, c->capf, sizeof *c->fo);
            c->fl = icl_xreallocarray(c->fl, c->capf, sizeof *c->fl);
        }
        if (keep) {
            size_t base = b->fo[c->row_first];
            icl_buf_append(&c->arena, b->arena.data + base, b->arena.len - base);
            for (size_t i = 0; i < keep; i++) {
                c->fo[i] = b->fo[c->row_first + i] - base;
                c->fl[i] = b->fl[c->row_first + i];
            }
        }
        c->nf = keep;
        c->row_first = 0;
        pthread_mutex_lock(&c->mu);
        c->count++;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        if (b->eof)
            break;
    }
    return NULL;
}

/* Threaded next_row: rows from the parser thread's batches, in order. */
static int next_row_mt(icl_csv *c, icl_csv_row *row, char *err, size_t errsz)
{
    while (!c->cur || c->cqhead == c->cur->qn) {
        if (c->cur && c->cur->eof)
            return 0; /* stays at the end: cur is kept */
        pthread_mutex_lock(&c->mu);
        if (c->cur) { /* give the read batch back */
            c->head = (c->head + 1) % NSLOT;
            c->count--;
            pthread_cond_broadcast(&c->cv);
        }
        while (c->count == 0)
            pthread_cond_wait(&c->cv, &c->mu);
        c->cur = &c->slot[c->head];
        pthread_mutex_unlock(&c->mu);
        c->cqhead = 0;
    }
    batch *b = c->cur;
    return out_row(c, &b->q[c->cqhead++], b->arena.data, b->fo, b->fl, b->msgs, row, err, errsz);
}

/* Pop the next queued row, feeding lines as needed.  Returns 1, 0 at end,
 * -1 for a bad row (message in err). */
static int next_row(icl_csv *c, icl_csv_row *row, char *err, size_t errsz)
{
    if (c->started)
        return next_row_mt(c, row, err, errsz);
    if (c->qhead == c->qn) {
        compact(c);
        /* After the header (its width is needed to check rows), with the
         * queue empty, the parser thread takes over c's parsing state. */
        if (c->threads > 1 && c->ncols && !c->eof) {
            pthread_mutex_init(&c->mu, NULL);
            pthread_cond_init(&c->cv, NULL);
            if (pthread_create(&c->th, NULL, parser_main, c) == 0) {
                c->started = 1;
                return next_row_mt(c, row, err, errsz);
            }
            pthread_mutex_destroy(&c->mu); /* no thread: carry on in this one */
            pthread_cond_destroy(&c->cv);
            c->threads = 1;
        }
        while (c->qn == 0 && !c->eof)
            feed(c);
        if (c->qn == 0)
            return 0;
    }
    row_rec *rr = &c->q[c->qhead++];
    return out_row(c, rr, c->arena.data, c->fo, c->fl, c->msgs, row, err, errsz);
}

int icl_csv_header(icl_csv *c, icl_csv_row *hdr, char *err, size_t errsz)
{
    icl_csv_row row;
    int rc = next_row(c, &row, err, errsz);
    if (rc <= 0)
        return rc;
    c->nhdr = row.nfields;
    c->hdr = icl_xcalloc(row.nfields, sizeof *c->hdr);
    c->hdrlen = icl_xcalloc(row.nfields, sizeof *c->hdrlen);
    for (size_t i = 0; i < row.nfields; i++) {
        c->hdr[i] = icl_xstrndup(row.field[i], row.len[i]);
        c->hdrlen[i] = row.len[i];
    }
    c->ncols = row.nfields;
    /* Rows already queued behind the header were checked without a width. */
    for (size_t i = c->qhead; i < c->qn; i++)
        if (!c->q[i].bad && c->q[i].n != c->ncols) {
            char m[128];
            snprintf(m, sizeof m, "row has %zu field%s, the header has %zu", c->q[i].n,
                     c->q[i].n == 1 ? "" : "s", c->ncols);
            add_msg(c, &c->q[i], m);
        }
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
