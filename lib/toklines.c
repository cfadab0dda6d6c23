/* toklines.c - see toklines.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "toklines.h"
#include "sniff.h"

void icl_toklines_header_from_tok(icl_toklines_header *h, const icl_tokenizer *t,
                                  const char *source)
{
    const icl_tok_specials *sp = icl_tok_get_specials(t);
    memset(h, 0, sizeof *h);
    h->present = 1;
    h->fingerprint = icl_tok_fingerprint(t);
    h->vocab_size = icl_tok_vocab_size(t);
    h->bos = sp->bos;
    h->eos = sp->eos;
    h->pad = sp->pad;
    h->source = source ? icl_xstrdup(source) : NULL;
}

void icl_toklines_header_free(icl_toklines_header *h)
{
    free(h->source);
    h->source = NULL;
}

int icl_toklines_write_header(FILE *f, const icl_toklines_header *h)
{
    fprintf(f, "#icl-tokens 1 fingerprint=xxh3:%016" PRIx64 " vocab_size=%d bos=%d eos=%d pad=%d source=",
            h->fingerprint, h->vocab_size, h->bos, h->eos, h->pad);
    for (const char *s = h->source ? h->source : ""; *s; s++)
        fputc(*s == '\n' || *s == '\r' ? '?' : *s, f);
    fputc('\n', f);
    return ferror(f) ? -1 : 0;
}

static int parse_int(const char *s, size_t n, long lo, long hi, long *out)
{
    char tmp[32];
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if (icl_parse_long(tmp, out) || *out < lo || *out > hi)
        return -1;
    return 0;
}

int icl_toklines_parse_header(const char *line, size_t len, icl_toklines_header *h, char *err,
                              size_t errsz)
{
    const char *magic = "#icl-tokens ";
    size_t ml = strlen(magic), i;
    memset(h, 0, sizeof *h);
    h->bos = h->eos = h->pad = -1;
    if (len < ml || memcmp(line, magic, ml)) {
        snprintf(err, errsz, "not an #icl-tokens header");
        return -1;
    }
    i = ml;
    if (!(len >= i + 1 && line[i] == '1' && (len == i + 1 || line[i + 1] == ' '))) {
        snprintf(err, errsz, "#icl-tokens: unsupported version (want 1)");
        return -1;
    }
    i += 1;
    int have_fp = 0, have_vs = 0;
    while (i < len) {
        if (line[i] == ' ') {
            i++;
            continue;
        }
        size_t ks = i;
        while (i < len && line[i] != '=' && line[i] != ' ')
            i++;
        if (i >= len || line[i] != '=') {
            snprintf(err, errsz, "#icl-tokens: field '%.*s' is not key=value", (int)(i - ks), line + ks);
            return -1;
        }
        size_t kl = i - ks;
        const char *k = line + ks;
        i++;
        if (kl == 6 && !memcmp(k, "source", 6)) {
            free(h->source);
            h->source = icl_xstrndup(line + i, len - i);
            break;
        }
        size_t vs = i;
        while (i < len && line[i] != ' ')
            i++;
        const char *v = line + vs;
        size_t vl = i - vs;
        long x;
        if (kl == 11 && !memcmp(k, "fingerprint", 11)) {
            if (vl != 21 || memcmp(v, "xxh3:", 5)) {
                snprintf(err, errsz, "#icl-tokens: fingerprint must be xxh3: and 16 hex digits");
                return -1;
            }
            uint64_t f = 0;
            for (size_t j = 5; j < 21; j++) {
                char c = v[j];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                if (d < 0) {
                    snprintf(err, errsz, "#icl-tokens: fingerprint must be xxh3: and 16 hex digits");
                    return -1;
                }
                f = f << 4 | (uint64_t)d;
            }
            h->fingerprint = f;
            have_fp = 1;
        } else if (kl == 10 && !memcmp(k, "vocab_size", 10)) {
            if (parse_int(v, vl, 1, INT32_MAX, &x)) {
                snprintf(err, errsz, "#icl-tokens: bad vocab_size '%.*s'", (int)vl, v);
                return -1;
            }
            h->vocab_size = (int)x;
            have_vs = 1;
        } else if ((kl == 3 && (!memcmp(k, "bos", 3) || !memcmp(k, "eos", 3) || !memcmp(k, "pad", 3)))) {
            if (parse_int(v, vl, -1, INT32_MAX, &x)) {
                snprintf(err, errsz, "#icl-tokens: bad %.*s '%.*s'", (int)kl, k, (int)vl, v);
                return -1;
            }
            if (k[0] == 'b')
                h->bos = (int32_t)x;
            else if (k[0] == 'e')
                h->eos = (int32_t)x;
            else
                h->pad = (int32_t)x;
        } /* unknown keys: ignored */
    }
    if (!have_fp || !have_vs) {
        snprintf(err, errsz, "#icl-tokens: needs fingerprint= and vocab_size=");
        free(h->source);
        h->source = NULL;
        return -1;
    }
    h->present = 1;
    return 0;
}

void icl_toklines_put_segment(icl_buf *b, const int32_t *ids, size_t n, int first)
{
    icl_buf_reserve(b, n * 12 + 2);
    char *o = b->data + b->len;
    if (!first)
        *o++ = '\t';
    for (size_t i = 0; i < n; i++) {
        char tmp[12];
        int l = 0;
        int64_t v = ids[i];
        if (i)
            *o++ = ' ';
        if (v < 0) {
            *o++ = '-';
            v = -v;
        }
        do {
            tmp[l++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (l)
            *o++ = tmp[--l];
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = 0;
}

void icl_toklines_open(icl_toklines_reader *r, const char *path, int vocab_size)
{
    memset(r, 0, sizeof *r);
    if (icl_lines_open(&r->lines, path, r->open_err, sizeof r->open_err) == 0)
        r->open_err[0] = '\0';
    r->vocab_size = vocab_size;
    r->hdr.bos = r->hdr.eos = r->hdr.pad = -1;
}

void icl_toklines_close(icl_toklines_reader *r)
{
    icl_lines_close(&r->lines);
    icl_toklines_header_free(&r->hdr);
    free(r->ids);
    free(r->target);
    free(r->seg_end);
    memset(r, 0, sizeof *r);
}

static void push_id(icl_toklines_reader *r, int32_t id, uint8_t tgt)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 256;
        r->ids = icl_xreallocarray(r->ids, r->cap, sizeof *r->ids);
        r->target = icl_xreallocarray(r->target, r->cap, sizeof *r->target);
    }
    r->ids[r->n] = id;
    r->target[r->n] = tgt;
    r->n++;
}

static void end_seg(icl_toklines_reader *r)
{
    if (r->nseg == r->segcap) {
        r->segcap = r->segcap ? r->segcap * 2 : 16;
        r->seg_end = icl_xreallocarray(r->seg_end, r->segcap, sizeof *r->seg_end);
    }
    r->seg_end[r->nseg++] = r->n;
}

int icl_toklines_next(icl_toklines_reader *r, char *err, size_t errsz)
{
    const char *name = r->lines.name;
    if (r->open_err[0]) {
        icl_seterr(err, errsz, "%s", r->open_err);
        return -1;
    }
    int got;
    while ((got = icl_lines_next(&r->lines)) > 0) {
        const char *s = r->lines.line.data;
        size_t len = r->lines.line.len;
        long ln = r->lines.lineno;
        if (len && s[0] == '#') {
            if (len >= 12 && !memcmp(s, "#icl-tokens ", 12)) {
                icl_toklines_header h;
                char e[256];
                if (icl_toklines_parse_header(s, len, &h, e, sizeof e)) {
                    snprintf(err, errsz, "%s:%ld: %s", name, ln, e);
                    return -1;
                }
                if (r->hdr.present) {
                    int same = h.fingerprint == r->hdr.fingerprint && h.vocab_size == r->hdr.vocab_size;
                    icl_toklines_header_free(&h);
                    if (!same) {
                        snprintf(err, errsz, "%s:%ld: tokenizer differs from the header at line %ld",
                                 name, ln, r->header_line);
                        return -1;
                    }
                } else {
                    r->hdr = h;
                    r->header_line = ln;
                    if (r->check_tok && icl_toklines_check(&r->hdr, r->check_tok, e, sizeof e)) {
                        snprintf(err, errsz, "%s:%ld: %s%s%s%s", name, ln, e, r->check_name ? " (tokenizer " : "",
                                 r->check_name ? r->check_name : "", r->check_name ? ")" : "");
                        return -1;
                    }
                    if (r->vocab_size <= 0)
                        r->vocab_size = h.vocab_size;
                }
            }
            continue;
        }
        /* what a line that is not token ids usually is: say so */
        const char *what = NULL;
        icl_file_kind kind = icl_sniff_line(s, len); /* as every program guesses (sniff.h) */
        if (len >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3))
            what = "starts with a UTF-8 byte order mark (BOM); token lines have none (icl-tok encode writes them)";
        else if (kind == ICL_KIND_RECORDS || (kind == ICL_KIND_JSON && !(len > 1 && s[1] == ']')))
            what = "a JSON record, not token ids: make token lines with icl-tok encode -t MODEL";
        /* text before CRLF: a CSV written with CRLF (Python's csv module's
         * line end) is data for icl-fmt, which dos2unix would not help */
        else if (r->examples == 0 && kind == ICL_KIND_TEXT && !(s[0] >= '0' && s[0] <= '9') && s[0] != '\t')
            what = "text, not token ids (CSV, TSV or plain text?): make records with icl-fmt, then token lines with "
                   "icl-tok encode -t MODEL";
        else if (len && s[len - 1] == '\r')
            what = "ends with a carriage return (CRLF line end); token lines end with LF alone (dos2unix converts)";
        if (what) {
            snprintf(err, errsz, "%s:%ld: %s", name, ln, what);
            return -1;
        }
        r->n = 0;
        r->nseg = 0;
        size_t i = 0;
        uint8_t tgt = 0;
        for (;;) {
            /* one segment: "" or id( id)* */
            if (i < len && s[i] != '\t') {
                for (;;) {
                    size_t st = i;
                    long v = 0;
                    while (i < len && s[i] >= '0' && s[i] <= '9') {
                        if (v <= INT32_MAX)
                            v = v * 10 + (s[i] - '0');
                        i++;
                    }
                    if (i == st) {
                        snprintf(err, errsz, "%s:%ld: byte %zu: expected a token id, found %s", name,
                                 ln, i + 1, i < len ? (s[i] == ' ' ? "a second space" : s[i] == '\r' ? "CR" : "a non-digit") : "end of line");
                        return -1;
                    }
                    if (v > INT32_MAX) { /* not a vocabulary question: no id is that large */
                        snprintf(err, errsz, "%s:%ld: token id %.*s is out of range (ids are below 2^31)", name,
                                 ln, (int)(i - st) > 40 ? 40 : (int)(i - st), s + st);
                        return -1;
                    }
                    if (r->vocab_size > 0 && v >= r->vocab_size) {
                        snprintf(err, errsz, "%s:%ld: token id %.*s is not below the vocabulary size %d",
                                 name, ln, (int)(i - st), s + st, r->vocab_size);
                        return -1;
                    }
                    push_id(r, (int32_t)v, tgt);
                    if (i < len && s[i] == ' ') {
                        i++;
                        continue;
                    }
                    break;
                }
            }
            end_seg(r);
            if (i >= len)
                break;
            if (s[i] != '\t') {
                snprintf(err, errsz, "%s:%ld: byte %zu: expected a space, TAB or end of line", name,
                         ln, i + 1);
                return -1;
            }
            i++;
            tgt = !tgt;
        }
        r->examples++;
        return 1;
    }
    if (got < 0 && r->lines.errnum == EFBIG) {
        icl_seterr(err, errsz, "%s:%ld: a line longer than %zu MiB", name, r->lines.lineno, ICL_LINE_MAX >> 20);
        return -1;
    }
    if (got < 0) {
        icl_seterr(err, errsz, "%s: read error: %s", name, strerror(r->lines.errnum));
        return -1;
    }
    return 0;
}

int icl_toklines_check(const icl_toklines_header *h, const icl_tokenizer *t, char *err,
                       size_t errsz)
{
    if (!h->present)
        return 0;
    if (h->fingerprint != icl_tok_fingerprint(t) || h->vocab_size != icl_tok_vocab_size(t)) {
        snprintf(err, errsz,
                 "tokens were made by another tokenizer (fingerprint xxh3:%016" PRIx64
                 ", vocab_size %d; this one is xxh3:%016" PRIx64 ", %d)%s%.300s",
                 h->fingerprint, h->vocab_size, icl_tok_fingerprint(t), icl_tok_vocab_size(t),
                 h->source ? ": the lines' header names " : "", h->source ? h->source : "");
        return -1;
    }
    return 0;
}
