/* record.c - see record.h. */
#include "record.h"

#include <errno.h>
#include <string.h>

#include "fileio.h"

const char *icl_display_name(const char *path)
{
    return strcmp(path, "-") == 0 ? "<stdin>" : path;
}

void icl_lines_init(icl_lines *r, FILE *f, const char *name)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->name = name;
}

int icl_lines_open(icl_lines *r, const char *path, char *err, size_t errsz)
{
    FILE *f = icl_fopen_in(path, err, errsz);
    icl_lines_init(r, f, icl_display_name(path));
    if (!f)
        return -1;
    return 0;
}

/* getline bounded by max bytes (NUL bytes counted): the length, -1 at the
 * end of input or on a read error, -2 past max.  getline itself grew
 * without bound on an endless line (/dev/zero) until an allocation failed,
 * which it returned as the end of input. */
static ssize_t getline_max(icl_buf *b, FILE *f, size_t max)
{
    size_t n = 0;
    int c;
    flockfile(f);
    while ((c = getc_unlocked(f)) != EOF) {
        if (n + 2 > b->cap) {
            b->cap = b->cap ? b->cap * 2 : 256;
            b->data = icl_xrealloc(b->data, b->cap);
        }
        b->data[n++] = (char)c;
        if (c == '\n')
            break;
        if (n > max) {
            funlockfile(f);
            return -2;
        }
    }
    funlockfile(f);
    if (n == 0)
        return -1;
    b->data[n] = '\0';
    return (ssize_t)n;
}

int icl_lines_next(icl_lines *r)
{
    errno = 0;
    ssize_t n = getline_max(&r->line, r->f, r->max ? r->max : ICL_LINE_MAX);
    if (n == -2) {
        r->line.len = 0;
        r->lineno++;
        r->errnum = errno = EFBIG;
        return -1;
    }
    if (n < 0) {
        r->line.len = 0;
        if (ferror(r->f)) {
            r->errnum = errno ? errno : EIO;
            errno = r->errnum;
            return -1;
        }
        return 0;
    }
    if (n > 0 && r->line.data[n - 1] == '\n')
        n--;
    r->line.data[n] = '\0';
    r->line.len = (size_t)n;
    void *z = memchr(r->line.data, '\0', (size_t)n);
    r->nul = z != NULL;
    r->nul_at = z ? (size_t)((char *)z - r->line.data) : 0;
    r->lineno++;
    return 1;
}

void icl_lines_close(icl_lines *r)
{
    if (r->f && r->f != stdin)
        fclose(r->f);
    r->f = NULL;
    icl_buf_free(&r->line);
}

json_t *icl_record_parse(const char *line, size_t len, char *err, size_t errsz)
{
    void *z = memchr(line, '\0', len);
    if (z) {
        snprintf(err, errsz, "NUL byte at byte offset %zu", (size_t)((const char *)z - line));
        return NULL;
    }
    size_t bad = icl_utf8_valid(line, len);
    if (bad < len) {
        snprintf(err, errsz, "invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad,
                 (unsigned char)line[bad]);
        return NULL;
    }
    if (len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) {
        snprintf(err, errsz, "starts with a UTF-8 byte order mark (BOM); JSON Lines have none "
                 "(icl-fmt reads such a file and writes it without)");
        return NULL;
    }
    json_error_t je;
    /* jansson rejects \u0000 (without JSON_ALLOW_NUL) and lone surrogates,
     * and decodes surrogate pairs. */
    json_t *v = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        /* jansson parsed this one line as a whole text: its "end of file"
         * is the end of the line */
        char *eof = strstr(je.text, "end of file");
        if (strstr(je.text, "JSON_ALLOW_NUL"))
            snprintf(err, errsz, "bad JSON at byte offset %d: a string holds \\u0000 (NUL), which records may not",
                     je.position);
        else if (eof)
            snprintf(err, errsz, "bad JSON at byte offset %d: %.*send of line%s", je.position, (int)(eof - je.text),
                     je.text, eof + strlen("end of file"));
        else
            snprintf(err, errsz, "bad JSON at byte offset %d: %s", je.position, je.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        snprintf(err, errsz, "a record must be a JSON object");
        return NULL;
    }
    return v;
}

int icl_record_next(icl_lines *r, json_t **out, char *err, size_t errsz)
{
    int got;
    while ((got = icl_lines_next(r)) > 0) {
        const char *p = r->line.data;
        size_t n = r->line.len;
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
            k++;
        if (k == n && !r->nul)
            continue; /* blank line */
        char msg[512];
        json_t *v = icl_record_parse(p, n, msg, sizeof msg);
        if (!v) {
            snprintf(err, errsz, "%s:%ld: %s", r->name, r->lineno, msg);
            return -1;
        }
        *out = v;
        return 1;
    }
    if (got < 0 && r->errnum == EFBIG) {
        icl_seterr(err, errsz, "%s:%ld: a line longer than %zu MiB", r->name, r->lineno, ICL_LINE_MAX >> 20);
        return -1;
    }
    if (got < 0) {
        icl_seterr(err, errsz, "%s: read error: %s", r->name, strerror(r->errnum));
        return -1;
    }
    return 0;
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    icl_buf_append((icl_buf *)data, buffer, size);
    return 0;
}

int icl_record_dump(icl_buf *b, const json_t *rec)
{
    return json_dump_callback(rec, dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY) != 0 ? -1 : 0;
}

int icl_record_write(FILE *f, const json_t *rec)
{
    static icl_buf b;
    icl_buf_clear(&b);
    if (icl_record_dump(&b, rec) != 0) {
        errno = ENOMEM;
        return -1;
    }
    icl_buf_putc(&b, '\n');
    return fwrite(b.data, 1, b.len, f) != b.len ? -1 : 0;
}
