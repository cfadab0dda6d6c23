/* jsonin.c - see jsonin.h. */
#include "jsonin.h"

#include <stdarg.h>
#include <string.h>

#include "record.h"

void icl_reader_skip_bom(icl_reader *r)
{
    const char *p;
    if (icl_reader_peek(r, 3, &p) == 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        icl_reader_skip(r, 3);
}

int icl_jsonl_next(icl_reader *r, json_t **out, long *line, char *err, size_t errsz)
{
    const char *p;
    size_t n;
    while ((n = icl_reader_line(r, &p)) > 0) {
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n'))
            k++;
        if (k == n)
            continue; /* blank line */
        if (p[n - 1] == '\n')
            n--;
        char msg[256];
        json_t *v = icl_record_parse(p, n, msg, sizeof msg);
        if (!v) {
            snprintf(err, errsz, "%s:%ld: %s", r->name, r->lineno, msg);
            return -1;
        }
        *out = v;
        *line = r->lineno;
        return 1;
    }
    return 0;
}

/* Scanner states. */
enum { J_START, J_EXPECT_ELEM, J_AFTER_ELEM, J_DONE };

void icl_jarr_init(icl_jarr *a, icl_reader *r)
{
    memset(a, 0, sizeof *a);
    a->r = r;
    a->state = J_START;
}

void icl_jarr_free(icl_jarr *a)
{
    icl_buf_free(&a->elem);
}

__attribute__((format(printf, 5, 6)))
static int jerr(icl_jarr *a, int rc, char *err, size_t errsz, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errsz, "%s:%ld: %s", a->r->name, a->r->lineno, msg);
    if (rc == -2)
        a->state = J_DONE;
    return rc;
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parse the element in a->elem (starting on line a->elem_line). */
static int parse_elem(icl_jarr *a, json_t **out, long *line, char *err, size_t errsz)
{
    const char *s = a->elem.data;
    size_t n = a->elem.len;
    char msg[256];
    json_t *v = icl_record_parse(s, n, msg, sizeof msg);
    a->count++;
    if (!v) {
        /* Name the physical line of a byte offset, and the offset in it. */
        long ln = a->elem_line;
        size_t off, ls = 0;
        int first_line = 1;
        const char *at = strstr(msg, "byte offset ");
        if (at && sscanf(at + 12, "%zu", &off) == 1 && off <= n) {
            for (size_t i = 0; i < off; i++)
                if (s[i] == '\n') {
                    ln++;
                    ls = i + 1;
                    first_line = 0;
                }
            if (first_line)
                off += a->elem_col;
            const char *rest = at + 12;
            while (*rest >= '0' && *rest <= '9')
                rest++;
            snprintf(err, errsz, "%s:%ld: array element %ld: %.*sbyte offset %zu%s", a->r->name,
                     ln, a->count, (int)(at - msg), msg, off - ls, rest);
        } else
            snprintf(err, errsz, "%s:%ld: array element %ld: %s", a->r->name, ln, a->count, msg);
        return -1;
    }
    *out = v;
    *line = a->elem_line;
    return 1;
}

/* One byte inside an element: strings (with escapes) and nesting depth. */
static inline void scan_elem(unsigned char c, int *depth, int *in_str, int *esc)
{
    if (*in_str) {
        if (*esc)
            *esc = 0;
        else if (c == '\\')
            *esc = 1;
        else if (c == '"')
            *in_str = 0;
    } else if (c == '"')
        *in_str = 1;
    else if (c == '{' || c == '[')
        ++*depth;
    else if (c == '}' || c == ']')
        --*depth;
}

int icl_jarr_next(icl_jarr *a, json_t **out, long *line, char *err, size_t errsz)
{
    icl_reader *r = a->r;
    const char *p;
    size_t n;
    if (a->state == J_START && r->lineno == 0) {
        icl_reader_skip_bom(r);
        r->lineno = 1; /* the scanner counts lines itself: the current line */
    }
    icl_buf_clear(&a->elem);
    int depth = 0, in_str = 0, esc = 0;
    /* Consume the input a byte at a time through peek/skip of whole chunks. */
    for (;;) {
        n = icl_reader_peek(r, 1, &p);
        if (n == 0)
            break;
        n = r->len - r->pos; /* everything buffered */
        size_t i = 0;
        for (; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c == '\n') {
                r->lineno++;
                a->col = 0;
            } else
                a->col++;
            if (depth > 0) {
                scan_elem(c, &depth, &in_str, &esc);
                if (depth == 0) {
                    icl_buf_append(&a->elem, p, i + 1);
                    icl_reader_skip(r, i + 1);
                    a->state = J_AFTER_ELEM;
                    return parse_elem(a, out, line, err, errsz);
                }
                continue;
            }
            if (is_ws(c))
                continue;
            switch (a->state) {
            case J_START:
                if (c != '[') {
                    icl_reader_skip(r, i);
                    return jerr(a, -2, err, errsz, "expected '[' to start a JSON array");
                }
                a->state = J_EXPECT_ELEM;
                continue;
            case J_AFTER_ELEM:
                if (c == ',') {
                    a->state = J_EXPECT_ELEM;
                    continue;
                }
                if (c == ']') {
                    a->state = J_DONE;
                    continue;
                }
                icl_reader_skip(r, i);
                return jerr(a, -2, err, errsz, "expected ',' or ']' after array element %ld", a->count);
            case J_EXPECT_ELEM:
                if (c == ']' && a->count == 0) {
                    a->state = J_DONE;
                    continue;
                }
                if (c == '{') {
                    depth = 1;
                    a->elem_line = r->lineno;
                    a->elem_col = a->col - 1;
                    icl_reader_skip(r, i);
                    p += i;
                    n -= i;
                    i = 0;
                    continue;
                }
                icl_reader_skip(r, i);
                return jerr(a, -2, err, errsz, "array element %ld is not a JSON object", a->count + 1);
            case J_DONE:
                icl_reader_skip(r, i);
                return jerr(a, -2, err, errsz, "data after the end of the JSON array");
            }
        }
        if (depth > 0)
            icl_buf_append(&a->elem, p, n);
        icl_reader_skip(r, n);
    }
    if (depth > 0)
        return jerr(a, -2, err, errsz, "end of input inside array element %ld", a->count + 1);
    if (a->state == J_START)
        return 0; /* empty input */
    if (a->state != J_DONE)
        return jerr(a, -2, err, errsz, "end of input before the JSON array was closed");
    return 0;
}
