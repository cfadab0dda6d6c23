/* pretok.c - normalizers and pre-tokenizers of tokenizer.json, as the Rust
 * crate `tokenizers` runs them (normalizers/, pre_tokenizers/,
 * tokenizer/normalizer.rs NormalizedString::split for split behaviours).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <utf8proc.h>

#include "tok_internal.h"

/* GPT-2's bytes_to_unicode (encoder.py): printable Latin-1 bytes map to
 * themselves, the other 68 to U+0100.. in byte order. */
uint32_t icl_byte_to_cp[256];
static int16_t cp_to_byte_tab[324];

void icl_bytelevel_init(void)
{
    if (icl_byte_to_cp['!'])
        return;
    int n = 0;
    memset(cp_to_byte_tab, 0xff, sizeof cp_to_byte_tab);
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        icl_byte_to_cp[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
    }
    for (int b = 0; b < 256; b++)
        cp_to_byte_tab[icl_byte_to_cp[b]] = (int16_t)b;
}

int icl_cp_to_byte(uint32_t cp) { return cp < 324 ? cp_to_byte_tab[cp] : -1; }

/* ---- piece lists ---- */

void icl_pl_push(piece_list *p, size_t off, size_t len, int cont)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->off = icl_xreallocarray(p->off, p->cap, sizeof *p->off);
        p->len = icl_xreallocarray(p->len, p->cap, sizeof *p->len);
        p->cont = icl_xreallocarray(p->cont, p->cap, sizeof *p->cont);
    }
    p->off[p->n] = off;
    p->len[p->n] = len;
    p->cont[p->n] = cont;
    p->n++;
}

void icl_pl_free(piece_list *p)
{
    free(p->off);
    free(p->len);
    free(p->cont);
    memset(p, 0, sizeof *p);
}

/* ---- regexes ---- */

/* Oniguruma (which tokenizers uses) takes \s as the White_Space property;
 * PCRE2 with UCP adds U+180E (via \h) and follows its own Unicode version.
 * So \s and \S are rewritten to the explicit White_Space set: inside a
 * character class \s becomes its members; \S inside a class is left to
 * PCRE2 (no tokenizer uses it).  Everything else is passed through. */
#define WS_SET "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

static void onig_spaces(const char *p, size_t n, icl_buf *o)
{
    int in_class = 0;
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's')
                icl_buf_puts(o, in_class ? WS_SET : "[" WS_SET "]");
            else if (d == 'S' && !in_class)
                icl_buf_puts(o, "[^" WS_SET "]");
            else
                icl_buf_append(o, p + i, 2);
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            icl_buf_putc(o, c);
            i++;
            if (i < n && p[i] == '^')
                icl_buf_putc(o, p[i++]);
            if (i < n && p[i] == ']') /* a leading ] is literal */
                icl_buf_putc(o, p[i++]);
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
            const char *e = NULL;
            for (size_t j = i + 2; j + 1 < n; j++)
                if (p[j] == ':' && p[j + 1] == ']') {
                    e = p + j + 2;
                    break;
                }
            if (e) {
                icl_buf_append(o, p + i, (size_t)(e - (p + i)));
                i = (size_t)(e - p);
                continue;
            }
        }
        if (in_class && c == ']')
            in_class = 0;
        icl_buf_putc(o, c);
        i++;
    }
}

pcre2_code *icl_re_compile(const char *pat, size_t len, int literal, char *err, size_t errsz)
{
    int ec;
    PCRE2_SIZE eo;
    uint32_t opt = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    icl_buf b = {0};
    const char *src = pat;
    size_t slen = len;
    if (!literal) {
        onig_spaces(pat, len, &b);
        icl_buf_reserve(&b, 1);
        src = b.data;
        slen = b.len;
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, slen, opt, &ec, &eo, NULL);
    icl_buf_free(&b);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        snprintf(err, errsz, "regex /%.*s/ at offset %zu: %s", (int)len, pat, (size_t)eo,
                 (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if no JIT */
    return re;
}

/* Matches of re in s as a list covering s: (start, end, is_match) triples,
 * as tokenizers' `impl Pattern for &Regex` find_matches. */
typedef struct {
    size_t *a;
    size_t n, cap;
} spans;

static void sp_push(spans *v, size_t s, size_t e, size_t m)
{
    if (v->n + 3 > v->cap) {
        v->cap = v->cap ? v->cap * 2 : 96;
        v->a = icl_xreallocarray(v->a, v->cap, sizeof *v->a);
    }
    v->a[v->n++] = s;
    v->a[v->n++] = e;
    v->a[v->n++] = m;
}

/* The first failure of a normalization or pre-tokenization, kept while the
 * work goes on harmlessly (a failed regex matches nothing more) and
 * returned by icl_normalize / icl_pretokenize. */
typedef struct {
    char *err;
    size_t errsz;
    int failed;
    size_t cap; /* normalization: the most bytes the text may grow to (0: no bound) */
} tok_fail;

__attribute__((format(printf, 2, 3)))
static void failed(tok_fail *f, const char *fmt, ...)
{
    if (f->failed++)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (f->err && f->errsz)
        vsnprintf(f->err, f->errsz, fmt, ap);
    va_end(ap);
}

/* A normalized text may be this many times its input, plus NORM_SLACK
 * bytes: a Replace of one character by 20000 on a 200 KB record would
 * otherwise ask for 4 GB.  Real normalizers stay far below (NFKC's widest
 * expansion, U+FDFA, is 11x in bytes). */
#define NORM_GROWTH 16
#define NORM_SLACK ((size_t)64 << 10)

/* 1 (after failing fl) when a text of len bytes is past fl's cap. */
static int too_long(tok_fail *fl, size_t len)
{
    if (!fl->cap || len <= fl->cap)
        return 0;
    failed(fl, "it makes the text longer than %d times its input plus %zu KiB (%zu bytes)", NORM_GROWTH,
           NORM_SLACK >> 10, fl->cap);
    return 1;
}

/* The matches of re in s[0..n) as spans; a failed match (PCRE2's limits)
 * fails fl with what, the component that runs re, in the message. */
static void re_matches(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n,
                       spans *out, tok_fail *fl, const char *what)
{
    size_t prev = 0, pos = 0;
    out->n = 0;
    if (n == 0) {
        sp_push(out, 0, 0, 0);
        return;
    }
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) { /* e.g. the match limit of a catastrophic pattern */
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            failed(fl, "%s regex failed: %s", what, (char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (prev != ms)
            sp_push(out, prev, ms, 0);
        sp_push(out, ms, me, 1);
        prev = me;
        if (me == ms) {
            if (me >= n)
                break;
            size_t j = me;
            icl_utf8_next(s, n, &j);
            pos = j;
        } else {
            pos = me;
        }
    }
    if (prev != n)
        sp_push(out, prev, n, 0);
}

/* Matches of a character predicate, as tokenizers' `impl Pattern for F`. */
static void char_matches(const char *s, size_t n, int (*pred)(uint32_t, const void *),
                         const void *ctx, spans *out)
{
    size_t last = 0, i = 0;
    out->n = 0;
    if (n == 0) {
        sp_push(out, 0, 0, 0);
        return;
    }
    while (i < n) {
        size_t b = i;
        uint32_t c = icl_utf8_next(s, n, &i);
        if (pred(c, ctx)) {
            if (last < b)
                sp_push(out, last, b, 0);
            sp_push(out, b, i, 1);
            last = i;
        }
    }
    if (n > last)
        sp_push(out, last, n, 0);
}

/* NormalizedString::split: apply invert and behaviour to `m` in place,
 * leaving (start, end, remove) triples. */
static void apply_behavior(spans *m, enum split_behavior beh, int invert)
{
    size_t k = m->n / 3;
    size_t *a = m->a;
    if (invert)
        for (size_t i = 0; i < k; i++)
            a[3 * i + 2] = !a[3 * i + 2];
    size_t o = 0;
    int prevm = 0;
    switch (beh) {
    case B_REMOVED:
        return;
    case B_ISOLATED:
        for (size_t i = 0; i < k; i++)
            a[3 * i + 2] = 0;
        return;
    case B_CONTIGUOUS:
        for (size_t i = 0; i < k; i++) {
            int im = (int)a[3 * i + 2];
            if (im == prevm && o > 0) {
                a[3 * (o - 1) + 1] = a[3 * i + 1];
            } else {
                a[3 * o] = a[3 * i];
                a[3 * o + 1] = a[3 * i + 1];
                a[3 * o + 2] = 0;
                o++;
            }
            prevm = im;
        }
        m->n = 3 * o;
        return;
    case B_PREV:
        for (size_t i = 0; i < k; i++) {
            int im = (int)a[3 * i + 2];
            if (im && !prevm && o > 0) {
                a[3 * (o - 1) + 1] = a[3 * i + 1];
            } else {
                a[3 * o] = a[3 * i];
                a[3 * o + 1] = a[3 * i + 1];
                a[3 * o + 2] = 0;
                o++;
            }
            prevm = im;
        }
        m->n = 3 * o;
        return;
    case B_NEXT: {
        /* fold from the right, then the result is in reverse order */
        size_t *b = icl_xmalloc((k ? k : 1) * 3 * sizeof *b);
        for (size_t j = k; j-- > 0;) {
            int im = (int)a[3 * j + 2];
            if (im && !prevm && o > 0) {
                b[3 * (o - 1)] = a[3 * j];
            } else {
                b[3 * o] = a[3 * j];
                b[3 * o + 1] = a[3 * j + 1];
                b[3 * o + 2] = 0;
                o++;
            }
            prevm = im;
        }
        for (size_t i = 0; i < o; i++) {
            a[3 * i] = b[3 * (o - 1 - i)];
            a[3 * i + 1] = b[3 * (o - 1 - i) + 1];
            a[3 * i + 2] = 0;
        }
        free(b);
        m->n = 3 * o;
        return;
    }
    }
}

/* ---- normalizers ---- */

static void buf_set(icl_buf *b, const char *s, size_t n)
{
    b->len = 0;
    icl_buf_reserve(b, n + 1);
    memcpy(b->data, s, n);
    b->len = n;
    b->data[n] = 0;
}

static int all_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s[i] >= 0x80)
            return 0;
    return 1;
}

static void replace_all(icl_buf *cur, icl_buf *tmp, const char *pat, size_t pl, pcre2_code *re,
                        pcre2_match_data *md, const char *rep, size_t rl, tok_fail *fl)
{
    tmp->len = 0;
    icl_buf_reserve(tmp, cur->len + 1);
    const char *s = cur->data;
    size_t n = cur->len;
    if (re) {
        spans m = {0};
        re_matches(re, md, s, n, &m, fl, "Replace");
        for (size_t i = 0; i < m.n && !too_long(fl, tmp->len + (m.a[i + 2] ? rl : 0)); i += 3) {
            if (m.a[i + 2])
                icl_buf_append(tmp, rep, rl);
            else
                icl_buf_append(tmp, s + m.a[i], m.a[i + 1] - m.a[i]);
        }
        free(m.a);
    } else {
        size_t i = 0;
        while (i < n) {
            const char *f = pl ? memmem(s + i, n - i, pat, pl) : NULL;
            if (!f) {
                icl_buf_append(tmp, s + i, n - i);
                break;
            }
            icl_buf_append(tmp, s + i, (size_t)(f - (s + i)));
            if (too_long(fl, tmp->len + rl))
                break;
            icl_buf_append(tmp, rep, rl);
            i = (size_t)(f - s) + pl;
        }
    }
    icl_buf x = *cur;
    *cur = *tmp;
    *tmp = x;
}

static void norm_step(const tok_norm *nm, pcre2_match_data *md, icl_buf *cur, icl_buf *tmp, int cont,
                      tok_fail *fl)
{
    switch (nm->type) {
    case N_NFC:
    case N_NFKC:
    case N_NFD:
    case N_NFKD: {
        if (all_ascii(cur->data, cur->len))
            return;
        int opt = UTF8PROC_STABLE;
        opt |= (nm->type == N_NFC || nm->type == N_NFKC) ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
        if (nm->type == N_NFKC || nm->type == N_NFKD)
            opt |= UTF8PROC_COMPAT;
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)cur->data,
                                          (utf8proc_ssize_t)cur->len, &dst, (utf8proc_option_t)opt);
        if (r < 0) {
            failed(fl, "unicode normalization failed: %s", utf8proc_errmsg(r));
            return;
        }
        buf_set(cur, (const char *)dst, (size_t)r);
        free(dst);
        return;
    }
    case N_PREPEND:
        if (cont || cur->len == 0)
            return;
        tmp->len = 0;
        icl_buf_puts(tmp, nm->s1);
        icl_buf_append(tmp, cur->data, cur->len);
        {
            icl_buf x = *cur;
            *cur = *tmp;
            *tmp = x;
        }
        return;
    case N_REPLACE:
        replace_all(cur, tmp, nm->s1, nm->s1 ? strlen(nm->s1) : 0, nm->re, md, nm->s2,
                    strlen(nm->s2), fl);
        return;
    case N_LOWER: {
        if (all_ascii(cur->data, cur->len)) {
            for (size_t i = 0; i < cur->len; i++)
                if (cur->data[i] >= 'A' && cur->data[i] <= 'Z')
                    cur->data[i] += 32;
            return;
        }
        tmp->len = 0;
        size_t i = 0;
        while (i < cur->len) {
            uint32_t c = icl_utf8_next(cur->data, cur->len, &i);
            char u[4];
            if (c == 0x130) { /* Rust's char::to_lowercase: the one two-char mapping */
                icl_buf_append(tmp, "i\xCC\x87", 3);
                continue;
            }
            icl_buf_append(tmp, u, (size_t)icl_utf8_put((uint32_t)utf8proc_tolower((utf8proc_int32_t)c), u));
        }
        icl_buf x = *cur;
        *cur = *tmp;
        *tmp = x;
        return;
    }
    case N_STRIP: {
        size_t a = 0, b = cur->len;
        if (nm->left)
            while (a < b) {
                size_t j = a;
                if (!icl_uni_is_whitespace(icl_utf8_next(cur->data, b, &j)))
                    break;
                a = j;
            }
        if (nm->right)
            while (b > a) {
                size_t j = b - 1;
                while (j > a && ((uint8_t)cur->data[j] & 0xC0) == 0x80)
                    j--;
                size_t k = j;
                if (!icl_uni_is_whitespace(icl_utf8_next(cur->data, b, &k)))
                    break;
                b = j;
            }
        memmove(cur->data, cur->data + a, b - a);
        cur->len = b - a;
        cur->data[cur->len] = 0;
        return;
    }
    case N_SEQ:
        for (int i = 0; i < nm->nsub && !too_long(fl, cur->len); i++)
            norm_step(&nm->sub[i], md, cur, tmp, cont, fl);
        return;
    }
}

int icl_normalize(const tok_norm *nm, pcre2_match_data *md, const char *s, size_t n, int cont,
                  icl_buf *out, char *err, size_t errsz)
{
    buf_set(out, s, n);
    if (!nm)
        return 0;
    tok_fail fl = {err, errsz, 0, n < (SIZE_MAX - NORM_SLACK) / NORM_GROWTH ? n * NORM_GROWTH + NORM_SLACK : 0};
    icl_buf tmp = {0};
    norm_step(nm, md, out, &tmp, cont, &fl);
    too_long(&fl, out->len);
    icl_buf_free(&tmp);
    return fl.failed ? -1 : 0;
}

/* ---- pre-tokenizers ---- */

/* GPT-2's pattern, as tokenizers' ByteLevel uses it. */
const char icl_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int pred_numeric(uint32_t c, const void *ctx)
{
    (void)ctx;
    return icl_uni_is_numeric(c);
}

static int pred_eq(uint32_t c, const void *ctx) { return c == *(const uint32_t *)ctx; }

/* Re-split each piece of `in` by the matches, appending to out. */
static void split_pieces(const spans *m, size_t base, int first, piece_list *out)
{
    for (size_t i = 0; i < m->n; i += 3) {
        if (m->a[i + 2] || m->a[i + 1] == m->a[i])
            continue;
        icl_pl_push(out, base + m->a[i], m->a[i + 1] - m->a[i], first && m->a[i] == 0);
    }
}

static void pre_step(const tok_pre *p, pcre2_match_data *md, icl_buf *store, piece_list *in,
                     piece_list *out, int cont_mode, tok_fail *fl)
{
    spans m = {0};
    out->n = 0;
    for (size_t k = 0; k < in->n; k++) {
        size_t off = in->off[k], len = in->len[k];
        int first = in->cont[k]; /* 1: piece starts at offset 0 of the input */
        switch (p->type) {
        case P_BYTELEVEL:
            if (p->add_prefix_space && !(first && cont_mode) &&
                (len == 0 || store->data[off] != ' ')) {
                size_t no = store->len;
                icl_buf_reserve(store, len + 1); /* store->data must not move below */
                icl_buf_putc(store, ' ');
                icl_buf_append(store, store->data + off, len);
                off = no;
                len++;
            }
            if (p->use_regex) {
                re_matches(p->re, md, store->data + off, len, &m, fl, "pre-tokenizer ByteLevel");
                apply_behavior(&m, B_ISOLATED, 0);
                split_pieces(&m, off, first, out);
            } else if (len) {
                icl_pl_push(out, off, len, first);
            }
            break;
        case P_SPLIT:
            re_matches(p->re, md, store->data + off, len, &m, fl, "pre-tokenizer Split");
            apply_behavior(&m, p->behavior, p->invert);
            split_pieces(&m, off, first, out);
            break;
        case P_DIGITS:
            char_matches(store->data + off, len, pred_numeric, NULL, &m);
            apply_behavior(&m, p->individual_digits ? B_ISOLATED : B_CONTIGUOUS, 0);
            split_pieces(&m, off, first, out);
            break;
        case P_METASPACE: {
            size_t no = store->len;
            const char *s0 = store->data + off;
            int starts = (len && s0[0] == ' ') ||
                         (len >= (size_t)p->rep_len && memcmp(s0, p->rep, (size_t)p->rep_len) == 0);
            int prepend = !starts && ((p->prepend == 1 && !(first && cont_mode)) ||
                                      (p->prepend == 2 && first && !cont_mode));
            if (prepend)
                icl_buf_append(store, p->rep, (size_t)p->rep_len);
            for (size_t i = 0; i < len; i++) {
                char c = store->data[off + i];
                if (c == ' ')
                    icl_buf_append(store, p->rep, (size_t)p->rep_len);
                else
                    icl_buf_putc(store, c);
            }
            size_t nl = store->len - no;
            if (p->split) {
                size_t j = 0;
                uint32_t rc = icl_utf8_next(p->rep, (size_t)p->rep_len, &j);
                char_matches(store->data + no, nl, pred_eq, &rc, &m);
                apply_behavior(&m, B_NEXT, 0);
                split_pieces(&m, no, first, out);
            } else if (nl) {
                icl_pl_push(out, no, nl, first);
            }
            break;
        }
        case P_SEQ: {
            piece_list a = {0}, b = {0};
            icl_pl_push(&a, off, len, first);
            for (int i = 0; i < p->nsub; i++) {
                pre_step(&p->sub[i], md, store, &a, &b, cont_mode, fl);
                piece_list x = a;
                a = b;
                b = x;
            }
            for (size_t i = 0; i < a.n; i++)
                icl_pl_push(out, a.off[i], a.len[i], a.cont[i]);
            icl_pl_free(&a);
            icl_pl_free(&b);
            break;
        }
        }
    }
    free(m.a);
}

int icl_pretokenize(const tok_pre *p, pcre2_match_data *md, const char *s, size_t n, int first,
                    int cont_mode, icl_buf *store, piece_list *out, char *err, size_t errsz)
{
    store->len = 0;
    icl_buf_append(store, s, n);
    out->n = 0;
    if (!p) {
        if (n)
            icl_pl_push(out, 0, n, first);
        return 0;
    }
    tok_fail fl = {err, errsz, 0, 0};
    piece_list in = {0};
    icl_pl_push(&in, 0, n, first);
    pre_step(p, md, store, &in, out, cont_mode, &fl);
    icl_pl_free(&in);
    return fl.failed ? -1 : 0;
}

/* ---- freeing ---- */

static void norm_clear(tok_norm *n)
{
    free(n->s1);
    free(n->s2);
    if (n->re)
        pcre2_code_free(n->re);
    for (int i = 0; i < n->nsub; i++)
        norm_clear(&n->sub[i]);
    free(n->sub);
}

void icl_norm_free(tok_norm *n)
{
    if (n) {
        norm_clear(n);
        free(n);
    }
}

static void pre_clear(tok_pre *p)
{
    if (p->re)
        pcre2_code_free(p->re);
    for (int i = 0; i < p->nsub; i++)
        pre_clear(&p->sub[i]);
    free(p->sub);
}

void icl_pre_free(tok_pre *p)
{
    if (p) {
        pre_clear(p);
        free(p);
    }
}

static void dec_clear(tok_dec *d)
{
    free(d->s1);
    free(d->s2);
    if (d->re)
        pcre2_code_free(d->re);
    for (int i = 0; i < d->nsub; i++)
        dec_clear(&d->sub[i]);
    free(d->sub);
}

void icl_dec_free(tok_dec *d)
{
    if (d) {
        dec_clear(d);
        free(d);
    }
}
