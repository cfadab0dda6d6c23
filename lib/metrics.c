/* metrics.c - see metrics.h. */
#define _GNU_SOURCE /* qsort_r */
#include "metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

/* ---- code points ---- */

typedef struct {
    int32_t *cp;
    size_t n, cap;
} cpvec;

static void cp_push(cpvec *v, int32_t c)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        v->cp = icl_xreallocarray(v->cp, v->cap, sizeof *v->cp);
    }
    v->cp[v->n++] = c;
}

/* Decode UTF-8 (invalid bytes, which record.h never lets through, become U+FFFD). */
static void decode(const char *s, cpvec *v)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t len = strlen(s);
    v->n = 0;
    while (len > 0) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(p, (utf8proc_ssize_t)len, &c);
        if (k <= 0) {
            c = 0xFFFD;
            k = 1;
        }
        cp_push(v, c);
        p += k;
        len -= (size_t)k;
    }
}

static void encode(icl_buf *b, int32_t c)
{
    utf8proc_uint8_t tmp[4];
    utf8proc_ssize_t k = utf8proc_encode_char(c, tmp);
    icl_buf_append(b, tmp, (size_t)k);
}

int icl_py_isspace(int c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Python's re \w for str patterns: alphanumeric (categories L*, N*) or '_'. */
static int py_word(int32_t c)
{
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

/* Unicode "Cased" (approximated by category Lu/Ll/Lt or having a case mapping). */
static int cased(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower(c) != c || utf8proc_toupper(c) != c;
}

/* Unicode "Case_Ignorable": Mn, Me, Cf, Lm, Sk, or Word_Break MidLetter,
 * MidNumLet, Single_Quote. */
static int case_ignorable(int32_t c)
{
    switch (c) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4:
    case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52:
    case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
        return 1;
    }
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK:
        return 1;
    default:
        return 0;
    }
}

/* Python's str.lower on code points: out receives the lower-cased ones. */
static void lower_cp(const cpvec *in, cpvec *out)
{
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        int32_t c = in->cp[i];
        if (c < 0x80) {
            cp_push(out, (c >= 'A' && c <= 'Z') ? c + 32 : c);
        } else if (c == 0x130) { /* SpecialCasing: I WITH DOT ABOVE -> i + COMBINING DOT */
            cp_push(out, 'i');
            cp_push(out, 0x307);
        } else if (c == 0x3A3) { /* Final_Sigma, as CPython's handle_capital_sigma */
            size_t j = i;
            while (j > 0 && case_ignorable(in->cp[j - 1]))
                j--;
            int final = j > 0 && cased(in->cp[j - 1]);
            if (final) {
                size_t k = i + 1;
                while (k < in->n && case_ignorable(in->cp[k]))
                    k++;
                final = k == in->n || !cased(in->cp[k]);
            }
            cp_push(out, final ? 0x3C2 : 0x3C3);
        } else {
            cp_push(out, utf8proc_tolower(c));
        }
    }
}

void icl_py_lower(const char *s, icl_buf *out)
{
    cpvec a = {0}, b = {0};
    decode(s, &a);
    lower_cp(&a, &b);
    for (size_t i = 0; i < b.n; i++)
        encode(out, b.cp[i]);
    free(a.cp);
    free(b.cp);
}

/* ---- SQuAD ---- */

static int ascii_punct(int32_t c)
{
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
           (c >= 0x7B && c <= 0x7E);
}

static int is_article(const int32_t *w, size_t n)
{
    return (n == 1 && w[0] == 'a') || (n == 2 && w[0] == 'a' && w[1] == 'n') ||
           (n == 3 && w[0] == 't' && w[1] == 'h' && w[2] == 'e');
}

/* Split code points on Python whitespace, join with single spaces into out. */
static void ws_join(const int32_t *cp, size_t n, icl_buf *out)
{
    int first = 1;
    size_t i = 0;
    while (i < n) {
        while (i < n && icl_py_isspace(cp[i]))
            i++;
        if (i == n)
            break;
        if (!first)
            icl_buf_putc(out, ' ');
        first = 0;
        while (i < n && !icl_py_isspace(cp[i]))
            encode(out, cp[i++]);
    }
}

static void squad_normalize_cp(const cpvec *in, icl_buf *out)
{
    cpvec low = {0}, np = {0}, art = {0};
    lower_cp(in, &low);
    for (size_t i = 0; i < low.n; i++)
        if (!ascii_punct(low.cp[i]))
            cp_push(&np, low.cp[i]);
    for (size_t i = 0; i < np.n;) {
        if (py_word(np.cp[i])) {
            size_t j = i;
            while (j < np.n && py_word(np.cp[j]))
                j++;
            if (is_article(np.cp + i, j - i))
                cp_push(&art, ' ');
            else
                for (size_t k = i; k < j; k++)
                    cp_push(&art, np.cp[k]);
            i = j;
        } else {
            cp_push(&art, np.cp[i++]);
        }
    }
    ws_join(art.cp, art.n, out);
    free(low.cp);
    free(np.cp);
    free(art.cp);
}

void icl_squad_normalize(const char *s, icl_buf *out)
{
    cpvec v = {0};
    decode(s, &v);
    squad_normalize_cp(&v, out);
    free(v.cp);
}

void icl_answer_normalize(const char *s, icl_buf *out)
{
    cpvec v = {0}, low = {0};
    decode(s, &v);
    lower_cp(&v, &low);
    ws_join(low.cp, low.n, out);
    free(v.cp);
    free(low.cp);
}

/* 1 when pred and ref are equal after norm, else 0. */
static double match_after(void (*norm)(const char *, icl_buf *), const char *pred, const char *ref)
{
    icl_buf a = {0}, b = {0};
    norm(pred, &a);
    norm(ref, &b);
    double r = a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
    icl_buf_free(&a);
    icl_buf_free(&b);
    return r;
}

static double answer_match(const char *pred, const char *ref) { return match_after(icl_answer_normalize, pred, ref); }

double icl_exact_match(const char *pred, const char *ref) { return match_after(icl_squad_normalize, pred, ref); }

/* ---- tokens as interned integers ---- */

typedef struct {
    const char *s;
    size_t len;
} tok;

typedef struct {
    tok *t;
    size_t n, cap;
} toks;

/* Split a string of tokens separated by single spaces (no empty tokens). */
static void split_spaces(const char *s, size_t len, toks *v)
{
    v->n = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ' ')
            j++;
        if (j > i) {
            if (v->n == v->cap) {
                v->cap = v->cap ? 2 * v->cap : 32;
                v->t = icl_xreallocarray(v->t, v->cap, sizeof *v->t);
            }
            v->t[v->n++] = (tok){s + i, j - i};
        }
        i = j + 1;
    }
}

static int tokcmp(const tok *a, const tok *b)
{
    size_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, m);
    if (c)
        return c;
    return (a->len > b->len) - (a->len < b->len);
}

typedef struct {
    tok t;
    int32_t *slot;
} tref;

static int trefcmp(const void *a, const void *b)
{
    return tokcmp(&((const tref *)a)->t, &((const tref *)b)->t);
}

/* Map the tokens of k lists to integer ids (equal strings, equal ids).
 * ids[i] must hold lists[i]->n entries. */
static void intern(toks *const *lists, int32_t **ids, size_t k)
{
    size_t n = 0;
    for (size_t i = 0; i < k; i++)
        n += lists[i]->n;
    tref *r = icl_xmalloc(n * sizeof *r);
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < lists[i]->n; j++)
            r[m++] = (tref){lists[i]->t[j], &ids[i][j]};
    qsort(r, n, sizeof *r, trefcmp);
    int32_t id = -1;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || tokcmp(&r[i].t, &r[i - 1].t) != 0)
            id++;
        *r[i].slot = id;
    }
    free(r);
}

static int intcmp(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static double f1_of_tokens(const icl_buf *a, const icl_buf *b);

double icl_token_f1(const char *pred, const char *ref)
{
    icl_buf a = {0}, b = {0};
    icl_squad_normalize(pred, &a);
    icl_squad_normalize(ref, &b);
    double f1 = f1_of_tokens(&a, &b);
    buf_free(&a);
    buf_free(&b);
    return f1;
}

/* ---- ROUGE-L ---- */

size_t icl_rouge_tokenize(const char *s, icl_buf *out)
{
    cpvec a = {0}, b = {0};
    decode(s, &a);
    lower_cp(&a, &b);
    size_t n = 0;
    for (size_t i = 0; i < b.n;) {
        int32_t c = b.cp[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            if (n++)
                icl_buf_putc(out, ' ');
            while (i < b.n && ((b.cp[i] >= 'a' && b.cp[i] <= 'z') || (b.cp[i] >= '0' && b.cp[i] <= '9')))
                icl_buf_putc(out, (char)b.cp[i++]);
        } else {
            i++;
        }
    }
    free(a.cp);
    free(b.cp);
    return n;
}

typedef struct {
    int32_t sym;
    size_t count;
} symcount;

static int by_count_desc(const void *x, const void *y)
{
    const symcount *a = x, *b = y;
    return (a->count < b->count) - (a->count > b->count);
}

size_t icl_lcs_length(const int32_t *a, size_t n, const int32_t *b, size_t m)
{
    if (m > n) { /* the bit vector spans the shorter sequence */
        const int32_t *t = a;
        a = b;
        b = t;
        size_t k = n;
        n = m;
        m = k;
    }
    if (m == 0)
        return 0;
    int32_t nsym = 0;
    for (size_t i = 0; i < n; i++)
        nsym = a[i] >= nsym ? a[i] + 1 : nsym;
    for (size_t j = 0; j < m; j++)
        nsym = b[j] >= nsym ? b[j] + 1 : nsym;
    size_t W = (m + 63) / 64;
    /* positions of each symbol in b, grouped by symbol (counting sort) */
    size_t *start = icl_xcalloc((size_t)nsym + 1, sizeof *start), *pos = icl_xmalloc(m * sizeof *pos);
    for (size_t j = 0; j < m; j++)
        start[b[j] + 1]++;
    for (int32_t c = 0; c < nsym; c++)
        start[c + 1] += start[c];
    {
        size_t *fill = icl_xmalloc((size_t)nsym * sizeof *fill);
        memcpy(fill, start, (size_t)nsym * sizeof *fill);
        for (size_t j = 0; j < m; j++)
            pos[fill[b[j]]++] = j;
        free(fill);
    }
    /* whole masks for the most frequent symbols (at least 64 occurrences,
     * where setting the bits costs more than reading a mask), within 64 MB */
    int32_t *slot = icl_xmalloc((size_t)nsym * sizeof *slot);
    symcount *cand = icl_xmalloc(((size_t)nsym + 1) * sizeof *cand);
    size_t nc = 0;
    for (int32_t c = 0; c < nsym; c++) {
        slot[c] = -1;
        if (start[c + 1] - start[c] >= 64)
            cand[nc++] = (symcount){c, start[c + 1] - start[c]};
    }
    qsort(cand, nc, sizeof *cand, by_count_desc);
    size_t nmask = nc, cap = ((size_t)64 << 20) / (W * sizeof(uint64_t));
    nmask = nmask < cap ? nmask : cap;
    uint64_t *masks = icl_xcalloc(nmask * W + 1, sizeof *masks);
    for (size_t k = 0; k < nmask; k++) {
        int32_t c = cand[k].sym;
        slot[c] = (int32_t)k;
        for (size_t q = start[c]; q < start[c + 1]; q++)
            masks[k * W + pos[q] / 64] |= (uint64_t)1 << (pos[q] % 64);
    }
    free(cand);
    uint64_t *V = icl_xmalloc(W * sizeof *V), *scratch = icl_xcalloc(W, sizeof *scratch);
    for (size_t w = 0; w < W; w++)
        V[w] = ~(uint64_t)0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = a[i];
        if (start[c + 1] == start[c])
            continue; /* M = 0: V unchanged */
        const uint64_t *M;
        if (slot[c] >= 0) {
            M = masks + (size_t)slot[c] * W;
        } else {
            for (size_t q = start[c]; q < start[c + 1]; q++)
                scratch[pos[q] / 64] |= (uint64_t)1 << (pos[q] % 64);
            M = scratch;
        }
        /* V = (V + (V & M)) | (V & ~M), a W-word addition with carry */
        uint64_t carry = 0;
        for (size_t w = 0; w < W; w++) {
            uint64_t v = V[w], u = v & M[w], t = v + u, t2 = t + carry;
            carry = (t < v) | (t2 < t);
            V[w] = t2 | (v & ~M[w]);
        }
        if (slot[c] < 0)
            for (size_t q = start[c]; q < start[c + 1]; q++)
                scratch[pos[q] / 64] = 0;
    }
    /* L = the zero bits among V's low m (bits above m never reach below) */
    size_t ones = 0;
    for (size_t w = 0; w < W; w++) {
        uint64_t v = V[w];
        if (w == W - 1 && m % 64)
            v &= ((uint64_t)1 << (m % 64)) - 1;
        ones += (size_t)__builtin_popcountll(v);
    }
    free(V);
    free(scratch);
    free(masks);
    free(slot);
    free(start);
    free(pos);
    return m - ones;
}

/* ROUGE-L F of two space-separated token strings (rouge-score's _score_lcs). */
static double rouge_l_tokens(const icl_buf *a, const icl_buf *b, double *pp, double *rp)
{
    toks ta = {0}, tb = {0};
    split_spaces(a->data ? a->data : "", a->len, &ta);
    split_spaces(b->data ? b->data : "", b->len, &tb);
    double p = 0, r = 0, f = 0;
    if (ta.n > 0 && tb.n > 0) {
        int32_t *ia = icl_xmalloc(ta.n * sizeof *ia), *ib = icl_xmalloc(tb.n * sizeof *ib);
        toks *lists[2] = {&ta, &tb};
        int32_t *ids[2] = {ia, ib};
        intern(lists, ids, 2);
        size_t lcs = icl_lcs_length(ia, ta.n, ib, tb.n);
        p = (double)lcs / ta.n;
        r = (double)lcs / tb.n;
        f = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
        free(ia);
        free(ib);
    }
    if (pp)
        *pp = p;
    if (rp)
        *rp = r;
    free(ta.t);
    free(tb.t);
    return f;
}

double icl_rouge_l(const char *pred, const char *ref, double *pp, double *rp)
{
    icl_buf a = {0}, b = {0};
    icl_rouge_tokenize(pred, &a);
    icl_rouge_tokenize(ref, &b);
    double f = rouge_l_tokens(&a, &b, pp, rp);
    buf_free(&a);
    buf_free(&b);
    return f;
}

/* ---- sacreBLEU ---- */

/* Replace every occurrence of from by to (str.replace). */
static void replace_all(icl_buf *b, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to);
    if (b->len < fl || !memmem(b->data, b->len, from, fl))
        return;
    icl_buf o = {0};
    size_t i = 0;
    while (i < b->len) {
        if (i + fl <= b->len && memcmp(b->data + i, from, fl) == 0) {
            icl_buf_append(&o, to, tl);
            i += fl;
        } else {
            icl_buf_putc(&o, b->data[i++]);
        }
    }
    icl_buf_free(b);
    *b = o;
}

static int rule1(unsigned char c)
{
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
           (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

static int digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int dotcomma(unsigned char c) { return c == '.' || c == ','; }

/* sacreBLEU's TokenizerRegexp (the language-dependent part of 13a, also
 * zh's post-tokenizer) on the text in a (clobbered): the four re.sub rules,
 * then ' '.join(line.split()) appended to out. */
static void regexp_post(icl_buf *a, icl_buf *out)
{
    icl_buf b = {0};
    /* Rule 1: ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 " */
    for (size_t i = 0; i < a->len; i++) {
        unsigned char c = (unsigned char)a->data[i];
        if (rule1(c)) {
            buf_putc(&b, ' ');
            buf_putc(&b, (char)c);
            buf_putc(&b, ' ');
        } else {
            buf_putc(&b, (char)c);
        }
    }
    /* Rules 2-4 are two-character patterns: re.sub scans left to right and
     * resumes after each match.  Scanning bytes gives the same result as
     * scanning code points, since [.,0-9-] are ASCII and never inside a
     * multi-byte sequence. */
    buf_clear(a);
    for (size_t i = 0; i < b.len;) { /* ([^0-9])([\.,]) -> "\1 \2 " */
        unsigned char c = (unsigned char)b.data[i];
        if (i + 1 < b.len && !digit(c) && dotcomma((unsigned char)b.data[i + 1])) {
            buf_putc(a, (char)c);
            buf_putc(a, ' ');
            buf_putc(a, b.data[i + 1]);
            buf_putc(a, ' ');
            i += 2;
        } else {
            buf_putc(a, (char)c);
            i++;
        }
    }
    buf_clear(&b);
    for (size_t i = 0; i < a->len;) { /* ([\.,])([^0-9]) -> " \1 \2" */
        unsigned char c = (unsigned char)a->data[i];
        if (i + 1 < a->len && dotcomma(c) && !digit((unsigned char)a->data[i + 1])) {
            buf_putc(&b, ' ');
            buf_putc(&b, (char)c);
            buf_putc(&b, ' ');
            buf_putc(&b, a->data[i + 1]);
            i += 2;
        } else {
            buf_putc(&b, (char)c);
            i++;
        }
    }
    buf_clear(a);
    for (size_t i = 0; i < b.len;) { /* ([0-9])(-) -> "\1 \2 " */
        unsigned char c = (unsigned char)b.data[i];
        if (i + 1 < b.len && digit(c) && b.data[i + 1] == '-') {
            buf_putc(a, (char)c);
            buf_putc(a, ' ');
            buf_putc(a, '-');
            buf_putc(a, ' ');
            i += 2;
        } else {
            buf_putc(a, (char)c);
            i++;
        }
    }
    /* ' '.join(line.split()) */
    cpvec w = {0};
    decode(a->data, &w);
    ws_join(w.cp, w.n, out);
    free(w.cp);
    buf_free(&b);
}


void icl_tok13a(const char *s, icl_buf *out)
{
    /* str.rstrip(): drop trailing Python whitespace. */
    cpvec v = {0};
    decode(s, &v);
    size_t n = v.n;
    while (n > 0 && icl_py_isspace(v.cp[n - 1]))
        n--;
    icl_buf line = {0};
    for (size_t i = 0; i < n; i++)
        encode(&line, v.cp[i]);
    free(v.cp);
    icl_buf_puts(&line, ""); /* data non-NULL even when empty */
    replace_all(&line, "<skipped>", "");
    replace_all(&line, "-\n", "");
    replace_all(&line, "\n", " ");
    if (memchr(line.data, '&', line.len)) {
        replace_all(&line, "&quot;", "\"");
        replace_all(&line, "&amp;", "&");
        replace_all(&line, "&lt;", "<");
        replace_all(&line, "&gt;", ">");
    }
    icl_buf a = {0};
    buf_putc(&a, ' ');
    buf_append(&a, line.data, line.len);
    buf_putc(&a, ' ');
    buf_free(&line);
    regexp_post(&a, out);
    buf_free(&a);
}

typedef struct {
    const int32_t *ids;
    int n;
} ngctx;

static int ngcmp(const void *a, const void *b, void *ctx)
{
    const ngctx *c = ctx;
    const int32_t *x = c->ids + *(const int32_t *)a, *y = c->ids + *(const int32_t *)b;
    for (int k = 0; k < c->n; k++)
        if (x[k] != y[k])
            return (x[k] > y[k]) - (x[k] < y[k]);
    return 0;
}

/* Sorted start positions of the n-grams of ids[0..len). Returns their count. */
static size_t ngrams_sorted(const int32_t *ids, size_t len, int n, int32_t *pos)
{
    if (len < (size_t)n)
        return 0;
    size_t m = len - (size_t)n + 1;
    for (size_t i = 0; i < m; i++)
        pos[i] = (int32_t)i;
    ngctx c = {ids, n};
    qsort_r(pos, m, sizeof *pos, ngcmp, &c);
    return m;
}

/* Occurrences of the n-gram at q[0..n) among sorted positions pos of ids. */
static size_t ngram_count(const int32_t *ids, const int32_t *pos, size_t m, const int32_t *q, int n)
{
    size_t lo = 0, hi = m; /* lower bound */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = 0;
        for (int k = 0; k < n && !c; k++)
            c = (ids[pos[mid] + k] > q[k]) - (ids[pos[mid] + k] < q[k]);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t cnt = 0;
    while (lo + cnt < m && memcmp(ids + pos[lo + cnt], q, (size_t)n * sizeof *q) == 0)
        cnt++;
    return cnt;
}

void icl_bleu_add(icl_bleu_stats *st, const char *hyp, const char *const *refs, size_t nrefs)
{
    icl_bleu_add_tok(st, ICL_TOK_13A, hyp, refs, nrefs);
}

void icl_bleu_add_tok(icl_bleu_stats *st, icl_tokenize t, const char *hyp, const char *const *refs, size_t nrefs)
{
    size_t k = nrefs + 1;
    icl_buf *bufs = icl_xcalloc(k, sizeof *bufs);
    toks *tl = icl_xcalloc(k, sizeof *tl);
    toks **lists = icl_xmalloc(k * sizeof *lists);
    int32_t **ids = icl_xmalloc(k * sizeof *ids), **pos = icl_xmalloc(k * sizeof *pos);
    for (size_t i = 0; i < k; i++) {
        icl_bleu_tokenize(t, i == 0 ? hyp : refs[i - 1], &bufs[i]);
        split_spaces(bufs[i].data ? bufs[i].data : "", bufs[i].len, &tl[i]);
        lists[i] = &tl[i];
        ids[i] = icl_xmalloc((tl[i].n + 1) * sizeof **ids);
        pos[i] = icl_xmalloc((tl[i].n + 1) * sizeof **pos);
    }
    intern(lists, ids, k);
    long hyp_len = (long)tl[0].n;
    long closest = -1, diff = -1;
    for (size_t r = 1; r < k; r++) {
        long rl = (long)tl[r].n, d = labs(hyp_len - rl);
        if (diff == -1 || d < diff) {
            diff = d;
            closest = rl;
        } else if (d == diff && rl < closest) {
            closest = rl;
        }
    }
    st->sys_len += hyp_len;
    st->ref_len += closest;
    size_t *rm = icl_xcalloc(k, sizeof *rm);
    for (int n = 1; n <= ICL_BLEU_ORDER; n++) {
        for (size_t i = 0; i < k; i++)
            rm[i] = ngrams_sorted(ids[i], tl[i].n, n, pos[i]);
        st->total[n - 1] += (long)rm[0];
        for (size_t g = 0; g < rm[0];) {
            const int32_t *q = ids[0] + pos[0][g];
            size_t c = 1;
            while (g + c < rm[0] && memcmp(ids[0] + pos[0][g + c], q, (size_t)n * sizeof *q) == 0)
                c++;
            /* the ids of different lists share one numbering, so compare across them */
            size_t best = 0;
            for (size_t r = 1; r < k; r++) {
                size_t rc = ngram_count(ids[r], pos[r], rm[r], q, n);
                if (rc > best)
                    best = rc;
            }
            st->correct[n - 1] += (long)(c < best ? c : best);
            g += c;
        }
    }
    for (size_t i = 0; i < k; i++) {
        icl_buf_free(&bufs[i]);
        free(tl[i].t);
        free(ids[i]);
        free(pos[i]);
    }
    free(rm);
    free(bufs);
    free(tl);
    free(lists);
    free(ids);
    free(pos);
}

static double my_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

void icl_bleu_compute(const icl_bleu_stats *st, int effective_order, icl_bleu_result *out)
{
    memset(out, 0, sizeof *out);
    double bp = 1.0;
    if (st->sys_len < st->ref_len)
        bp = st->sys_len > 0 ? exp(1.0 - (double)st->ref_len / (double)st->sys_len) : 0.0;
    out->bp = bp;
    int any = 0;
    for (int n = 0; n < ICL_BLEU_ORDER; n++)
        any |= st->correct[n] != 0;
    if (!any)
        return;
    double smooth = 1.0;
    int eff = ICL_BLEU_ORDER;
    for (int n = 1; n <= ICL_BLEU_ORDER; n++) {
        if (st->total[n - 1] == 0)
            break;
        if (effective_order)
            eff = n;
        if (st->correct[n - 1] == 0) {
            smooth *= 2;
            out->precisions[n - 1] = 100.0 / (smooth * (double)st->total[n - 1]);
        } else {
            out->precisions[n - 1] = 100.0 * (double)st->correct[n - 1] / (double)st->total[n - 1];
        }
    }
    double s = 0;
    for (int n = 0; n < eff; n++)
        s += my_log(out->precisions[n]);
    out->score = bp * exp(s / eff);
}

/* ---- sacreBLEU's other tokenizers ---- */

int icl_tokenize_parse(const char *name, icl_tokenize *t)
{
    static const char *const names[] = {"13a", "intl", "zh", "char", "none"};
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0) {
            *t = (icl_tokenize)i;
            return 0;
        }
    return -1;
}

const char *icl_tokenize_name(icl_tokenize t)
{
    static const char *const names[] = {"13a", "intl", "zh", "char", "none"};
    return (unsigned)t < 5 ? names[t] : "?";
}

/* General categories as the regex module's \p{N}, \p{P}, \p{S}. */
static int cat_n(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

static int cat_p(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

static int cat_s(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_SM && k <= UTF8PROC_CATEGORY_SO;
}

/* TokenizerV14International: three regex.sub passes on code points, each
 * scanning left to right and resuming after a match, then split/join. */
static void tok_intl(const int32_t *cp, size_t n, icl_buf *out)
{
    cpvec a = {0}, b = {0};
    for (size_t i = 0; i < n;) { /* (\P{N})(\p{P}) -> "\1 \2 " */
        if (i + 1 < n && !cat_n(cp[i]) && cat_p(cp[i + 1])) {
            cp_push(&a, cp[i]);
            cp_push(&a, ' ');
            cp_push(&a, cp[i + 1]);
            cp_push(&a, ' ');
            i += 2;
        } else {
            cp_push(&a, cp[i++]);
        }
    }
    for (size_t i = 0; i < a.n;) { /* (\p{P})(\P{N}) -> " \1 \2" */
        if (i + 1 < a.n && cat_p(a.cp[i]) && !cat_n(a.cp[i + 1])) {
            cp_push(&b, ' ');
            cp_push(&b, a.cp[i]);
            cp_push(&b, ' ');
            cp_push(&b, a.cp[i + 1]);
            i += 2;
        } else {
            cp_push(&b, a.cp[i++]);
        }
    }
    a.n = 0;
    for (size_t i = 0; i < b.n; i++) { /* (\p{S}) -> " \1 " */
        if (cat_s(b.cp[i])) {
            cp_push(&a, ' ');
            cp_push(&a, b.cp[i]);
            cp_push(&a, ' ');
        } else {
            cp_push(&a, b.cp[i]);
        }
    }
    ws_join(a.cp, a.n, out);
    free(a.cp);
    free(b.cp);
}

int icl_zh_char(int32_t c)
{
    /* sacreBLEU's _UCODE_RANGES compared as Python strings: the two
     * "(UTF16)" entries are written '\u20000' and '\u2f800' (two characters
     * each), so they cover U+2001..U+2A6D and U+2F81..U+2FA1 and not
     * Extension B or the Compatibility Supplement. */
    static const int32_t r[][2] = {
        {0x3400, 0x4DB5}, {0x4E00, 0x9FA5}, {0x9FA6, 0x9FBB}, {0xF900, 0xFA2D}, {0xFA30, 0xFA6A},
        {0xFA70, 0xFAD9}, {0x2001, 0x2A6D}, {0x2F81, 0x2FA1}, {0xFF00, 0xFFEF}, {0x2E80, 0x2EFF},
        {0x3000, 0x303F}, {0x31C0, 0x31EF}, {0x2F00, 0x2FDF}, {0x2FF0, 0x2FFF}, {0x3100, 0x312F},
        {0x31A0, 0x31BF}, {0xFE10, 0xFE1F}, {0xFE30, 0xFE4F}, {0x2600, 0x26FF}, {0x2700, 0x27BF},
        {0x3200, 0x32FF}, {0x3300, 0x33FF},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (c >= r[i][0] && c <= r[i][1])
            return 1;
    return 0;
}

void icl_bleu_tokenize(icl_tokenize t, const char *s, icl_buf *out)
{
    if (t == ICL_TOK_13A) {
        icl_tok13a(s, out);
        return;
    }
    cpvec v = {0};
    decode(s, &v);
    size_t n = v.n, b = 0;
    while (n > 0 && icl_py_isspace(v.cp[n - 1])) /* BLEU's sent.rstrip() */
        n--;
    switch (t) {
    case ICL_TOK_INTL:
        tok_intl(v.cp, n, out);
        break;
    case ICL_TOK_ZH: {
        while (b < n && icl_py_isspace(v.cp[b])) /* line.strip() */
            b++;
        icl_buf line = {0};
        buf_puts(&line, "");
        for (size_t i = b; i < n; i++) {
            if (icl_zh_char(v.cp[i])) {
                buf_putc(&line, ' ');
                encode(&line, v.cp[i]);
                buf_putc(&line, ' ');
            } else {
                encode(&line, v.cp[i]);
            }
        }
        regexp_post(&line, out);
        buf_free(&line);
        break;
    }
    case ICL_TOK_CHAR: { /* " ".join(line), then split(): every non-space character */
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            if (icl_py_isspace(v.cp[i]))
                continue;
            if (!first)
                buf_putc(out, ' ');
            first = 0;
            encode(out, v.cp[i]);
        }
        break;
    }
    default: /* none: the n-gram extraction's split() */
        ws_join(v.cp, n, out);
        break;
    }
    free(v.cp);
}

/* Scripts of the automatic tokenization. */
void icl_script_count(icl_script_counts *sc, const char *s)
{
    cpvec v = {0};
    decode(s, &v);
    for (size_t i = 0; i < v.n; i++) {
        int32_t c = v.cp[i];
        if ((c >= 0x3040 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) || (c >= 0xFF66 && c <= 0xFF9D))
            sc->kana++;
        else if ((c >= 0x1100 && c <= 0x11FF) || (c >= 0x3130 && c <= 0x318F) || (c >= 0xA960 && c <= 0xA97F) ||
                 (c >= 0xAC00 && c <= 0xD7FF) || (c >= 0xFFA0 && c <= 0xFFDC))
            sc->hangul++;
        else if ((c >= 0x0E00 && c <= 0x0EFF) || (c >= 0x1000 && c <= 0x109F) || (c >= 0x1780 && c <= 0x17FF))
            sc->thai++;
        else if ((c >= 0x2E80 && c <= 0x2FDF) || (c >= 0x3005 && c <= 0x3007) || (c >= 0x3021 && c <= 0x3029) ||
                 (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF) ||
                 (c >= 0x20000 && c <= 0x3134F))
            sc->han++;
        else if (utf8proc_category(c) >= UTF8PROC_CATEGORY_LU && utf8proc_category(c) <= UTF8PROC_CATEGORY_LO)
            sc->other++;
    }
    free(v.cp);
}

icl_tokenize icl_script_choose(const icl_script_counts *sc)
{
    long asian = sc->han + sc->kana + sc->hangul + sc->thai;
    if (2 * asian <= asian + sc->other) /* not mostly CJK or Thai letters */
        return ICL_TOK_13A;
    return 10 * (sc->kana + sc->thai) >= asian ? ICL_TOK_CHAR : ICL_TOK_ZH;
}

/* ---- tokenized F1 and ROUGE-L ---- */

/* Tokens of s under t (s pre-normalised by the caller), without the tokens
 * made only of punctuation (categories P*), appended to out separated by
 * single spaces. */
static void tokens_nopunct(icl_tokenize t, const char *s, icl_buf *out)
{
    icl_buf all = {0};
    icl_bleu_tokenize(t, s, &all);
    toks v = {0};
    split_spaces(all.data ? all.data : "", all.len, &v);
    int first = 1;
    cpvec c = {0};
    for (size_t i = 0; i < v.n; i++) {
        icl_buf one = {0};
        buf_append(&one, v.t[i].s, v.t[i].len);
        decode(one.data, &c);
        buf_free(&one);
        size_t k = 0;
        while (k < c.n && cat_p(c.cp[k]))
            k++;
        if (k == c.n)
            continue;
        if (!first)
            buf_putc(out, ' ');
        first = 0;
        buf_append(out, v.t[i].s, v.t[i].len);
    }
    free(c.cp);
    free(v.t);
    buf_free(&all);
}

/* Token F1 of two space-separated token strings (SQuAD's f1_score). */
static double f1_of_tokens(const icl_buf *a, const icl_buf *b)
{
    toks ta = {0}, tb = {0};
    split_spaces(a->data ? a->data : "", a->len, &ta);
    split_spaces(b->data ? b->data : "", b->len, &tb);
    double f1;
    if (ta.n == 0 || tb.n == 0) {
        f1 = ta.n == tb.n;
    } else {
        int32_t *ia = xmalloc(ta.n * sizeof *ia), *ib = xmalloc(tb.n * sizeof *ib);
        toks *lists[2] = {&ta, &tb};
        int32_t *ids[2] = {ia, ib};
        intern(lists, ids, 2);
        qsort(ia, ta.n, sizeof *ia, intcmp);
        qsort(ib, tb.n, sizeof *ib, intcmp);
        size_t i = 0, j = 0, common = 0;
        while (i < ta.n && j < tb.n) { /* multiset intersection of sorted lists */
            if (ia[i] == ib[j]) {
                common++;
                i++;
                j++;
            } else if (ia[i] < ib[j]) {
                i++;
            } else {
                j++;
            }
        }
        if (common == 0) {
            f1 = 0;
        } else {
            double p = (double)common / ta.n, r = (double)common / tb.n;
            f1 = 2 * p * r / (p + r);
        }
        free(ia);
        free(ib);
    }
    free(ta.t);
    free(tb.t);
    return f1;
}

double icl_token_f1_tok(const char *pred, const char *ref, icl_tokenize t)
{
    if (t == ICL_TOK_13A)
        return icl_token_f1(pred, ref);
    icl_buf a = {0}, b = {0}, ta = {0}, tb = {0};
    icl_squad_normalize(pred, &a);
    icl_squad_normalize(ref, &b);
    tokens_nopunct(t, a.data ? a.data : "", &ta);
    tokens_nopunct(t, b.data ? b.data : "", &tb);
    double f1 = f1_of_tokens(&ta, &tb);
    buf_free(&a);
    buf_free(&b);
    buf_free(&ta);
    buf_free(&tb);
    return f1;
}

double icl_rouge_l_tok(const char *pred, const char *ref, icl_tokenize t, double *pp, double *rp)
{
    if (t == ICL_TOK_13A)
        return icl_rouge_l(pred, ref, pp, rp);
    icl_buf a = {0}, b = {0}, ta = {0}, tb = {0};
    icl_py_lower(pred, &a);
    icl_py_lower(ref, &b);
    tokens_nopunct(t, a.data ? a.data : "", &ta);
    tokens_nopunct(t, b.data ? b.data : "", &tb);
    double f = rouge_l_tokens(&ta, &tb, pp, rp);
    buf_free(&a);
    buf_free(&b);
    buf_free(&ta);
    buf_free(&tb);
    return f;
}

/* ---- chrF ---- */

/* Counter-style statistics of order-n n-grams of h against r (values
 * compare directly: code points, or ids from one intern call):
 * hyp = number of hypothesis n-grams if r has any, else 0; ref = number of
 * reference n-grams; match = sum over distinct n-grams of min(counts). */
static void ngram_stats(const int32_t *h, size_t hn, const int32_t *r, size_t rn, int n, long out[3])
{
    int32_t *hp = xmalloc((hn + 1) * sizeof *hp), *rp = xmalloc((rn + 1) * sizeof *rp);
    size_t hm = ngrams_sorted(h, hn, n, hp), rm = ngrams_sorted(r, rn, n, rp);
    long match = 0;
    for (size_t g = 0; g < hm;) {
        const int32_t *q = h + hp[g];
        size_t c = 1;
        while (g + c < hm && memcmp(h + hp[g + c], q, (size_t)n * sizeof *q) == 0)
            c++;
        size_t rc = ngram_count(r, rp, rm, q, n);
        match += (long)(c < rc ? c : rc);
        g += c;
    }
    out[0] = rm ? (long)hm : 0;
    out[1] = (long)rm;
    out[2] = match;
    free(hp);
    free(rp);
}

/* chrF's _remove_punctuation: split() words, a word longer than one
 * character loses a last (else first) string.punctuation character as a
 * word of its own.  Words are appended to w (code points of all words
 * concatenated) with their ends in ends. */
typedef struct {
    toks t;
    icl_buf text;
} wordlist;

static void chrf_words(const int32_t *cp, size_t n, wordlist *wl)
{
    buf_clear(&wl->text);
    buf_puts(&wl->text, "");
    size_t i = 0;
    while (i < n) {
        while (i < n && icl_py_isspace(cp[i]))
            i++;
        if (i == n)
            break;
        size_t j = i;
        while (j < n && !icl_py_isspace(cp[j]))
            j++;
        size_t len = j - i;
        if (wl->text.len)
            buf_putc(&wl->text, ' ');
        if (len > 1 && cp[j - 1] < 0x80 && ascii_punct(cp[j - 1])) {
            for (size_t k = i; k < j - 1; k++)
                encode(&wl->text, cp[k]);
            buf_putc(&wl->text, ' ');
            encode(&wl->text, cp[j - 1]);
        } else if (len > 1 && cp[i] < 0x80 && ascii_punct(cp[i])) {
            encode(&wl->text, cp[i]);
            buf_putc(&wl->text, ' ');
            for (size_t k = i + 1; k < j; k++)
                encode(&wl->text, cp[k]);
        } else {
            for (size_t k = i; k < j; k++)
                encode(&wl->text, cp[k]);
        }
        i = j;
    }
    split_spaces(wl->text.data, wl->text.len, &wl->t);
}

double icl_chrf_score(const long *stats, int word_order)
{
    /* CHRF._compute_f_score without eps_smoothing (sacreBLEU 2.x default) */
    const double factor = ICL_CHRF_BETA * ICL_CHRF_BETA;
    double avg_prec = 0.0, avg_rec = 0.0;
    int eff = 0;
    for (int i = 0; i < ICL_CHRF_CHAR_ORDER + word_order; i++) {
        long n_hyp = stats[3 * i], n_ref = stats[3 * i + 1], n_match = stats[3 * i + 2];
        double prec = n_hyp > 0 ? (double)n_match / (double)n_hyp : 1e-16;
        double rec = n_ref > 0 ? (double)n_match / (double)n_ref : 1e-16;
        if (n_hyp > 0 && n_ref > 0) {
            avg_prec += prec;
            avg_rec += rec;
            eff++;
        }
    }
    if (eff == 0) {
        avg_prec = avg_rec = 0.0;
    } else {
        avg_prec /= eff;
        avg_rec /= eff;
    }
    if (avg_prec + avg_rec != 0.0) {
        double score = (1 + factor) * avg_prec * avg_rec;
        score /= (factor * avg_prec) + avg_rec;
        return 100 * score;
    }
    return 0.0;
}

void icl_chrf_add(long *stats, int word_order, const char *hyp, const char *const *refs, size_t nrefs)
{
    int order = ICL_CHRF_CHAR_ORDER + word_order;
    cpvec h = {0}, hc = {0}, r = {0}, rc = {0};
    decode(hyp, &h);
    for (size_t i = 0; i < h.n; i++) /* ''.join(line.split()) */
        if (!icl_py_isspace(h.cp[i]))
            cp_push(&hc, h.cp[i]);
    wordlist hw = {0}, rw = {0};
    if (word_order > 0)
        chrf_words(h.cp, h.n, &hw);
    long best[3 * ICL_CHRF_MAX_ORDER], cur[3 * ICL_CHRF_MAX_ORDER];
    double best_f = -1.0;
    memset(best, 0, sizeof best);
    for (size_t k = 0; k < nrefs; k++) {
        decode(refs[k], &r);
        rc.n = 0;
        for (size_t i = 0; i < r.n; i++)
            if (!icl_py_isspace(r.cp[i]))
                cp_push(&rc, r.cp[i]);
        for (int n = 1; n <= ICL_CHRF_CHAR_ORDER; n++)
            ngram_stats(hc.cp, hc.n, rc.cp, rc.n, n, cur + 3 * (n - 1));
        if (word_order > 0) {
            chrf_words(r.cp, r.n, &rw);
            int32_t *hid = xmalloc((hw.t.n + 1) * sizeof *hid), *rid = xmalloc((rw.t.n + 1) * sizeof *rid);
            toks *lists[2] = {&hw.t, &rw.t};
            int32_t *ids[2] = {hid, rid};
            intern(lists, ids, 2);
            for (int n = 1; n <= word_order; n++)
                ngram_stats(hid, hw.t.n, rid, rw.t.n, n, cur + 3 * (ICL_CHRF_CHAR_ORDER + n - 1));
            free(hid);
            free(rid);
        }
        double f = icl_chrf_score(cur, word_order);
        if (f > best_f) { /* the first reference with the best F */
            best_f = f;
            memcpy(best, cur, sizeof best);
        }
    }
    for (int i = 0; i < 3 * order; i++)
        stats[i] += best[i];
    free(h.cp);
    free(hc.cp);
    free(r.cp);
    free(rc.cp);
    free(hw.t.t);
    free(rw.t.t);
    buf_free(&hw.text);
    buf_free(&rw.text);
}

/* ---- answer extraction ---- */

struct icl_extractor {
    int gsm8k;
    pcre2_code *re;
    pcre2_match_data *md;
};

#define GSM8K_NUMBER "-?\\$?([0-9][0-9,]*(?:\\.[0-9]+)?)"

icl_extractor *icl_extractor_new(const char *spec, char *err, size_t errsz)
{
    icl_extractor *x = xcalloc(1, sizeof *x);
    x->gsm8k = strcmp(spec, "gsm8k") == 0;
    const char *pat = x->gsm8k ? GSM8K_NUMBER : spec;
    int code;
    PCRE2_SIZE off;
    x->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    if (!x->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(err, errsz, "bad regular expression at offset %zu: %s", (size_t)off, (const char *)msg);
        free(x);
        return NULL;
    }
    x->md = pcre2_match_data_create_from_pattern(x->re, NULL);
    return x;
}

void icl_extractor_free(icl_extractor *x)
{
    if (!x)
        return;
    pcre2_match_data_free(x->md);
    pcre2_code_free(x->re);
    free(x);
}

/* The normalised gsm8k number of group 1 of the match in md (text s). */
static void gsm8k_number(const icl_extractor *x, const char *s, icl_buf *out)
{
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->md);
    const char *p = s + ov[2], *e = s + ov[3];
    int neg = ov[0] < ov[2] && s[ov[0]] == '-';
    icl_buf b = {0};
    for (; p < e; p++)
        if (*p != ',')
            buf_putc(&b, *p);
    buf_puts(&b, "");
    if (memchr(b.data, '.', b.len)) {
        while (b.len > 0 && b.data[b.len - 1] == '0')
            b.data[--b.len] = 0;
        if (b.len > 0 && b.data[b.len - 1] == '.')
            b.data[--b.len] = 0;
    }
    size_t z = 0; /* "-0" is "0" */
    while (z < b.len && (b.data[z] == '0' || b.data[z] == '.'))
        z++;
    if (neg && z < b.len)
        buf_putc(out, '-');
    buf_append(out, b.data, b.len);
    buf_free(&b);
}

int icl_extract(const icl_extractor *x, const char *s, icl_buf *out)
{
    size_t len = strlen(s);
    if (!x->gsm8k) {
        if (pcre2_match(x->re, (PCRE2_SPTR)s, len, 0, 0, x->md, NULL) < 0)
            return 0;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->md);
        uint32_t ng = pcre2_get_ovector_count(x->md), g = 0;
        for (uint32_t k = 1; k < ng && !g; k++) /* the first group that took part */
            if (ov[2 * k] != PCRE2_UNSET)
                g = k;
        buf_append(out, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
        buf_puts(out, "");
        return 1;
    }
    const char *h = NULL;
    for (const char *p = s; (p = strstr(p, "####")) != NULL; p += 4)
        h = p;
    if (h && pcre2_match(x->re, (PCRE2_SPTR)s, len, (PCRE2_SIZE)(h + 4 - s), 0, x->md, NULL) >= 0) {
        gsm8k_number(x, s, out);
        buf_puts(out, "");
        return 1;
    }
    PCRE2_SIZE start = 0, last0 = PCRE2_UNSET;
    while (start <= len && pcre2_match(x->re, (PCRE2_SPTR)s, len, start, 0, x->md, NULL) >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->md);
        last0 = ov[0];
        start = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
    }
    if (last0 == PCRE2_UNSET)
        return 0;
    pcre2_match(x->re, (PCRE2_SPTR)s, len, last0, 0, x->md, NULL); /* the last match again */
    gsm8k_number(x, s, out);
    buf_puts(out, "");
    return 1;
}

/* ---- pass@k ---- */

double icl_pass_at_k(long n, long c, long k)
{
    if (n - c < k)
        return 1.0;
    double prod = 1.0;
    for (long i = n - c + 1; i <= n; i++)
        prod *= 1.0 - (double)k / (double)i;
    return 1.0 - prod;
}

/* ---- labels ---- */

void icl_label_normalize(const char *pred, icl_buf *out)
{
    cpvec v = {0};
    decode(pred, &v);
    size_t i = 0;
    while (i < v.n && icl_py_isspace(v.cp[i]))
        i++;
    size_t j = i;
    while (j < v.n && v.cp[j] != '\n')
        j++;
    cpvec line = {v.cp + i, j - i, 0};
    squad_normalize_cp(&line, out);
    free(v.cp);
}

void icl_confusion_add(json_t *matrix, const char *gold, const char *pred)
{
    json_t *row = json_object_get(matrix, gold);
    if (!row) {
        row = json_object();
        json_object_set_new(matrix, gold, row);
    }
    json_t *c = json_object_get(row, pred);
    json_object_set_new(row, pred, json_integer(c ? json_integer_value(c) + 1 : 1));
}

/* ---- aggregation ---- */

/* A metric name as icl_metrics_parse compares it: lower case, without '-',
 * '_' and spaces ("Rouge-L" -> "rougel"), in out[outsz]; 0, or -1 when it
 * does not fit (no metric name is that long). */
static int metric_key(const char *p, size_t n, char *out, size_t outsz)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '-' || c == '_' || c == ' ' || c == '\t')
            continue;
        if (k + 1 >= outsz)
            return -1;
        out[k++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    out[k] = 0;
    return 0;
}

int icl_metrics_parse(const char *list, unsigned *mask, long *pass_k, size_t *n_pass_k, char *err,
                      size_t errsz)
{
    /* keys as metric_key makes them: case, '-', '_' and spaces do not count */
    static const struct { const char *key; unsigned bit; } names[] = {
        {"em", ICL_METRIC_EM}, {"exactmatch", ICL_METRIC_EM}, {"exact", ICL_METRIC_EM},
        {"f1", ICL_METRIC_F1}, {"f1score", ICL_METRIC_F1},
        {"rougel", ICL_METRIC_ROUGE_L}, {"rouge", ICL_METRIC_ROUGE_L},
        {"bleu", ICL_METRIC_BLEU}, {"sacrebleu", ICL_METRIC_BLEU},
        {"accuracy", ICL_METRIC_ACCURACY}, {"acc", ICL_METRIC_ACCURACY},
        {"chrf", ICL_METRIC_CHRF},
        {"chrf++", ICL_METRIC_CHRFPP}, {"chrfpp", ICL_METRIC_CHRFPP}, {"chrfplusplus", ICL_METRIC_CHRFPP},
        {"all", ICL_METRIC_ALL},
    };
    unsigned m = 0;
    size_t nk = 0;
    const char *p = list;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char key[32];
        size_t i = sizeof names / sizeof names[0];
        int ok = metric_key(p, n, key, sizeof key) == 0;
        if (ok)
            for (i = 0; i < sizeof names / sizeof names[0]; i++)
                if (strcmp(names[i].key, key) == 0)
                    break;
        if (i < sizeof names / sizeof names[0]) {
            m |= names[i].bit;
        } else if (ok && strlen(key) > 5 && strncmp(key, "pass@", 5) == 0) {
            long k = 0;
            size_t j, kl = strlen(key);
            for (j = 5; j < kl && key[j] >= '0' && key[j] <= '9' && k <= 1000000; j++)
                k = 10 * k + (key[j] - '0');
            if (j < kl || k < 1 || k > 1000000) {
                snprintf(err, errsz, "'%.*s': k must be a number from 1 to 1000000", (int)n, p);
                return -1;
            }
            size_t q;
            for (q = 0; q < nk && pass_k[q] != k; q++)
                ;
            if (q == nk) {
                if (nk == ICL_MAX_PASS_K) {
                    snprintf(err, errsz, "at most %d pass@k metrics", ICL_MAX_PASS_K);
                    return -1;
                }
                pass_k[nk++] = k;
            }
            m |= ICL_METRIC_PASS;
        } else {
            snprintf(err, errsz,
                     "unknown metric '%.*s' (known: em, f1, rougeL, bleu, chrf, chrf++, accuracy, all, pass@K; "
                     "also exact_match, rouge-l, acc, chrfpp...: case, '-' and '_' do not matter)",
                     (int)n, p);
            return -1;
        }
        if (!e)
            break;
        p = e + 1;
    }
    *mask = m;
    *n_pass_k = nk;
    return 0;
}

void icl_eval_init(icl_eval_acc *a, unsigned mask)
{
    memset(a, 0, sizeof *a);
    a->mask = mask;
    a->confusion = json_object();
}

void icl_eval_free(icl_eval_acc *a)
{
    json_decref(a->confusion);
    a->confusion = NULL;
}

void icl_eval_add(icl_eval_acc *a, const char *pred, const char *const *refs, size_t nrefs,
                  json_t *scores)
{
    a->n++;
    if (a->mask & (ICL_METRIC_EM | ICL_METRIC_F1 | ICL_METRIC_ROUGE_L)) {
        double em = 0, f1 = 0, rl = 0;
        for (size_t i = 0; i < nrefs; i++) {
            if (a->mask & ICL_METRIC_EM)
                em = fmax(em, a->answers ? answer_match(pred, refs[i]) : icl_exact_match(pred, refs[i]));
            if (a->mask & ICL_METRIC_F1)
                f1 = fmax(f1, icl_token_f1_tok(pred, refs[i], a->tok));
            if (a->mask & ICL_METRIC_ROUGE_L)
                rl = fmax(rl, icl_rouge_l_tok(pred, refs[i], a->tok, NULL, NULL));
        }
        a->em += em;
        a->f1 += f1;
        a->rouge_l += rl;
        if (scores && (a->mask & ICL_METRIC_EM))
            json_object_set_new(scores, "exact_match", json_real(em));
        if (scores && (a->mask & ICL_METRIC_F1))
            json_object_set_new(scores, "f1", json_real(f1));
        if (scores && (a->mask & ICL_METRIC_ROUGE_L))
            json_object_set_new(scores, "rougeL", json_real(rl));
    }
    if (a->mask & ICL_METRIC_BLEU) {
        icl_bleu_stats one = {0};
        icl_bleu_add_tok(&one, a->tok, pred, refs, nrefs);
        for (int n = 0; n < ICL_BLEU_ORDER; n++) {
            a->bleu.correct[n] += one.correct[n];
            a->bleu.total[n] += one.total[n];
        }
        a->bleu.sys_len += one.sys_len;
        a->bleu.ref_len += one.ref_len;
        if (scores) {
            icl_bleu_result r;
            icl_bleu_compute(&one, 1, &r);
            json_object_set_new(scores, "bleu", json_real(r.score / 100));
        }
    }
    for (int pp = 0; pp < 2; pp++) {
        unsigned bit = pp ? ICL_METRIC_CHRFPP : ICL_METRIC_CHRF;
        if (!(a->mask & bit))
            continue;
        long one[3 * ICL_CHRF_MAX_ORDER] = {0};
        int wo = pp ? 2 : 0;
        icl_chrf_add(one, wo, pred, refs, nrefs);
        long *sum = pp ? a->chrfpp : a->chrf;
        for (int i = 0; i < 3 * (ICL_CHRF_CHAR_ORDER + wo); i++)
            sum[i] += one[i];
        if (scores)
            json_object_set_new(scores, pp ? "chrf++" : "chrf", json_real(icl_chrf_score(one, wo) / 100));
    }
    if (a->mask & ICL_METRIC_ACCURACY) {
        icl_buf p = {0}, g = {0};
        if (a->answers)
            icl_answer_normalize(pred, &p);
        else
            icl_label_normalize(pred, &p);
        icl_buf_puts(&p, "");
        int ok = 0;
        for (size_t i = 0; i < nrefs; i++) {
            icl_buf_clear(&g);
            if (a->answers)
                icl_answer_normalize(refs[i], &g);
            else
                icl_squad_normalize(refs[i], &g);
            icl_buf_puts(&g, "");
            if (i == 0)
                icl_confusion_add(a->confusion, g.data, p.data);
            ok |= strcmp(g.data, p.data) == 0;
        }
        a->correct += ok;
        if (scores) {
            json_object_set_new(scores, "correct", json_boolean(ok));
            json_object_set_new(scores, "label", json_string(p.data));
        }
        icl_buf_free(&p);
        icl_buf_free(&g);
    }
}

static json_t *mean(double sum, long n) { return n ? json_real(sum / (double)n) : json_null(); }

json_t *icl_eval_summary(const icl_eval_acc *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "records", json_integer(a->n));
    if (a->mask & (ICL_METRIC_F1 | ICL_METRIC_ROUGE_L | ICL_METRIC_BLEU)) {
        json_object_set_new(o, "tokenize", json_string(icl_tokenize_name(a->tok)));
        if (a->tok_auto)
            json_object_set_new(o, "tokenize_auto", json_true());
    }
    if (a->mask & ICL_METRIC_EM)
        json_object_set_new(o, "exact_match", mean(a->em, a->n));
    if (a->mask & ICL_METRIC_F1)
        json_object_set_new(o, "f1", mean(a->f1, a->n));
    if (a->mask & ICL_METRIC_ROUGE_L)
        json_object_set_new(o, "rougeL", mean(a->rouge_l, a->n));
    if (a->mask & ICL_METRIC_BLEU) {
        icl_bleu_result r;
        icl_bleu_compute(&a->bleu, 0, &r);
        json_object_set_new(o, "bleu", a->n ? json_real(r.score / 100) : json_null());
        json_t *d = json_object(), *c = json_array(), *t = json_array(), *p = json_array();
        for (int n = 0; n < ICL_BLEU_ORDER; n++) {
            json_array_append_new(c, json_integer(a->bleu.correct[n]));
            json_array_append_new(t, json_integer(a->bleu.total[n]));
            json_array_append_new(p, json_real(r.precisions[n]));
        }
        json_object_set_new(d, "score", json_real(r.score));
        json_object_set_new(d, "counts", c);
        json_object_set_new(d, "totals", t);
        json_object_set_new(d, "precisions", p);
        json_object_set_new(d, "bp", json_real(r.bp));
        json_object_set_new(d, "sys_len", json_integer(a->bleu.sys_len));
        json_object_set_new(d, "ref_len", json_integer(a->bleu.ref_len));
        json_object_set_new(o, "bleu_detail", d);
    }
    for (int pp = 0; pp < 2; pp++) {
        if (!(a->mask & (pp ? ICL_METRIC_CHRFPP : ICL_METRIC_CHRF)))
            continue;
        double sc = icl_chrf_score(pp ? a->chrfpp : a->chrf, pp ? 2 : 0);
        json_object_set_new(o, pp ? "chrf++" : "chrf", a->n ? json_real(sc / 100) : json_null());
        json_t *d = json_object();
        json_object_set_new(d, "score", json_real(sc));
        json_object_set_new(o, pp ? "chrf++_detail" : "chrf_detail", d);
    }
    if (a->mask & ICL_METRIC_ACCURACY) {
        json_object_set_new(o, "accuracy", mean((double)a->correct, a->n));
        json_object_set_new(o, "correct", json_integer(a->correct));
        json_object_set_new(o, "confusion", json_deep_copy(a->confusion));
    }
    return o;
}
