/* metrics.c - see metrics.h. */
#define _GNU_SOURCE /* qsort_r */
#include "metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

double icl_exact_match(const char *pred, const char *ref)
{
    icl_buf a = {0}, b = {0};
    icl_squad_normalize(pred, &a);
    icl_squad_normalize(ref, &b);
    double r = a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
    icl_buf_free(&a);
    icl_buf_free(&b);
    return r;
}

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

double icl_token_f1(const char *pred, const char *ref)
{
    icl_buf a = {0}, b = {0};
    icl_squad_normalize(pred, &a);
    icl_squad_normalize(ref, &b);
    toks ta = {0}, tb = {0};
    split_spaces(a.data ? a.data : "", a.len, &ta);
    split_spaces(b.data ? b.data : "", b.len, &tb);
    double f1;
    if (ta.n == 0 || tb.n == 0) {
        f1 = ta.n == tb.n;
    } else {
        int32_t *ia = icl_xmalloc(ta.n * sizeof *ia), *ib = icl_xmalloc(tb.n * sizeof *ib);
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
    icl_buf_free(&a);
    icl_buf_free(&b);
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

double icl_rouge_l(const char *pred, const char *ref, double *pp, double *rp)
{
    icl_buf a = {0}, b = {0};
    icl_rouge_tokenize(pred, &a);
    icl_rouge_tokenize(ref, &b);
    toks ta = {0}, tb = {0};
    split_spaces(a.data ? a.data : "", a.len, &ta);
    split_spaces(b.data ? b.data : "", b.len, &tb);
    double p = 0, r = 0, f = 0;
    if (ta.n > 0 && tb.n > 0) {
        int32_t *ia = icl_xmalloc(ta.n * sizeof *ia), *ib = icl_xmalloc(tb.n * sizeof *ib);
        toks *lists[2] = {&ta, &tb};
        int32_t *ids[2] = {ia, ib};
        intern(lists, ids, 2);
        /* LCS by dynamic programming, one row of |ref|+1 at a time. */
        size_t *prev = icl_xcalloc(tb.n + 1, sizeof *prev), *cur = icl_xcalloc(tb.n + 1, sizeof *cur);
        for (size_t i = 1; i <= ta.n; i++) {
            for (size_t j = 1; j <= tb.n; j++)
                cur[j] = ia[i - 1] == ib[j - 1] ? prev[j - 1] + 1
                         : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
            size_t *t = prev;
            prev = cur;
            cur = t;
        }
        size_t lcs = prev[tb.n];
        p = (double)lcs / ta.n;
        r = (double)lcs / tb.n;
        f = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
        free(prev);
        free(cur);
        free(ia);
        free(ib);
    }
    if (pp)
        *pp = p;
    if (rp)
        *rp = r;
    free(ta.t);
    free(tb.t);
    icl_buf_free(&a);
    icl_buf_free(&b);
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
    icl_buf a = {0}, b = {0};
    icl_buf_putc(&a, ' ');
    icl_buf_append(&a, line.data, line.len);
    icl_buf_putc(&a, ' ');
    icl_buf_free(&line);
    /* Rule 1: ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 " */
    for (size_t i = 0; i < a.len; i++) {
        unsigned char c = (unsigned char)a.data[i];
        if (rule1(c)) {
            icl_buf_putc(&b, ' ');
            icl_buf_putc(&b, (char)c);
            icl_buf_putc(&b, ' ');
        } else {
            icl_buf_putc(&b, (char)c);
        }
    }
    /* Rules 2-4 are two-character patterns: re.sub scans left to right and
     * resumes after each match.  Scanning bytes gives the same result as
     * scanning code points, since [.,0-9-] are ASCII and never inside a
     * multi-byte sequence. */
    icl_buf_clear(&a);
    for (size_t i = 0; i < b.len;) { /* ([^0-9])([\.,]) -> "\1 \2 " */
        unsigned char c = (unsigned char)b.data[i];
        if (i + 1 < b.len && !digit(c) && dotcomma((unsigned char)b.data[i + 1])) {
            icl_buf_putc(&a, (char)c);
            icl_buf_putc(&a, ' ');
            icl_buf_putc(&a, b.data[i + 1]);
            icl_buf_putc(&a, ' ');
            i += 2;
        } else {
            icl_buf_putc(&a, (char)c);
            i++;
        }
    }
    icl_buf_clear(&b);
    for (size_t i = 0; i < a.len;) { /* ([\.,])([^0-9]) -> " \1 \2" */
        unsigned char c = (unsigned char)a.data[i];
        if (i + 1 < a.len && dotcomma(c) && !digit((unsigned char)a.data[i + 1])) {
            icl_buf_putc(&b, ' ');
            icl_buf_putc(&b, (char)c);
            icl_buf_putc(&b, ' ');
            icl_buf_putc(&b, a.data[i + 1]);
            i += 2;
        } else {
            icl_buf_putc(&b, (char)c);
            i++;
        }
    }
    icl_buf_clear(&a);
    for (size_t i = 0; i < b.len;) { /* ([0-9])(-) -> "\1 \2 " */
        unsigned char c = (unsigned char)b.data[i];
        if (i + 1 < b.len && digit(c) && b.data[i + 1] == '-') {
            icl_buf_putc(&a, (char)c);
            icl_buf_putc(&a, ' ');
            icl_buf_putc(&a, '-');
            icl_buf_putc(&a, ' ');
            i += 2;
        } else {
            icl_buf_putc(&a, (char)c);
            i++;
        }
    }
    /* ' '.join(line.split()) */
    cpvec w = {0};
    decode(a.data, &w);
    ws_join(w.cp, w.n, out);
    free(w.cp);
    icl_buf_free(&a);
    icl_buf_free(&b);
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
    size_t k = nrefs + 1;
    icl_buf *bufs = icl_xcalloc(k, sizeof *bufs);
    toks *tl = icl_xcalloc(k, sizeof *tl);
    toks **lists = icl_xmalloc(k * sizeof *lists);
    int32_t **ids = icl_xmalloc(k * sizeof *ids), **pos = icl_xmalloc(k * sizeof *pos);
    for (size_t i = 0; i < k; i++) {
        icl_tok13a(i == 0 ? hyp : refs[i - 1], &bufs[i]);
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

int icl_metrics_parse(const char *list, unsigned *mask, char *err, size_t errsz)
{
    static const struct { const char *name; unsigned bit; } names[] = {
        {"exact_match", ICL_METRIC_EM}, {"em", ICL_METRIC_EM}, {"f1", ICL_METRIC_F1},
        {"rougeL", ICL_METRIC_ROUGE_L}, {"rouge_l", ICL_METRIC_ROUGE_L},
        {"rouge-l", ICL_METRIC_ROUGE_L}, {"rouge", ICL_METRIC_ROUGE_L},
        {"bleu", ICL_METRIC_BLEU}, {"accuracy", ICL_METRIC_ACCURACY},
        {"acc", ICL_METRIC_ACCURACY}, {"all", ICL_METRIC_ALL},
    };
    unsigned m = 0;
    const char *p = list;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        size_t i;
        for (i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i].name) == n && strncmp(names[i].name, p, n) == 0)
                break;
        if (i == sizeof names / sizeof names[0]) {
            snprintf(err, errsz, "unknown metric '%.*s' (known: em, f1, rougeL, bleu, accuracy, all)",
                     (int)n, p);
            return -1;
        }
        m |= names[i].bit;
        if (!e)
            break;
        p = e + 1;
    }
    *mask = m;
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
                em = fmax(em, icl_exact_match(pred, refs[i]));
            if (a->mask & ICL_METRIC_F1)
                f1 = fmax(f1, icl_token_f1(pred, refs[i]));
            if (a->mask & ICL_METRIC_ROUGE_L)
                rl = fmax(rl, icl_rouge_l(pred, refs[i], NULL, NULL));
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
        icl_bleu_add(&one, pred, refs, nrefs);
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
    if (a->mask & ICL_METRIC_ACCURACY) {
        icl_buf p = {0}, g = {0};
        icl_label_normalize(pred, &p);
        icl_buf_puts(&p, "");
        int ok = 0;
        for (size_t i = 0; i < nrefs; i++) {
            icl_buf_clear(&g);
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
    if (a->mask & ICL_METRIC_ACCURACY) {
        json_object_set_new(o, "accuracy", mean((double)a->correct, a->n));
        json_object_set_new(o, "correct", json_integer(a->correct));
        json_object_set_new(o, "confusion", json_deep_copy(a->confusion));
    }
    return o;
}
