/* jinja.c - a Jinja2 subset interpreter for chat templates (see jinja.h).
 *
 * Structure: an arena allocator (everything a parse or a render allocates
 * lives in one arena, freed at once; errors longjmp out of any depth), a
 * lexer that applies jinja2's whitespace rules (trim_blocks, lstrip_blocks,
 * '-' and '+') while cutting the source into data and tag tokens, a
 * recursive-descent parser following jinja2's grammar and precedence
 * (jinja2/parser.py), and a tree-walking renderer over a small value model
 * with Python's semantics for printing, arithmetic and comparison.
 */
#define _GNU_SOURCE /* memmem */
#include "jinja.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ------------------------------------------------------------------ arena */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char mem[];
} chunk;

typedef struct {
    chunk *head;
    size_t total, limit; /* bytes handed out; 0 limit = none */
} arena;

static void arena_free(arena *a)
{
    chunk *c = a->head;
    while (c) {
        chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->total = 0;
}

/* Returns NULL only when the limit is exceeded (caller reports it). */
static void *arena_alloc(arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (a->limit && (n > a->limit || a->total + n > a->limit))
        return NULL;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        chunk *c = xmalloc(sizeof *c + cap);
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = a->head->mem + a->head->used;
    a->head->used += n;
    a->total += n;
    return p;
}

/* ------------------------------------------------------------------ values */

enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_FUNC, V_LOOP };

typedef struct jstr {
    size_t len;
    char s[]; /* NUL-terminated */
} jstr;

typedef struct jv {
    int t;
    union {
        int b;
        int64_t i;
        double f;
        jstr *s;
        struct jlist *l;
        struct jdict *d;
        struct macro *m;
        struct func *fn;
        struct loopst *lp;
        struct {
            const char *obj, *name; /* Undefined: "'obj' has no attribute 'name'" or "'name' is undefined" */
        } u;
    } u;
} jv;

typedef struct jlist {
    size_t n, cap;
    jv *v;
    int tuple;
} jlist;

typedef struct jdict {
    size_t n, cap;
    jstr **k;
    jv *v;
} jdict; /* insertion-ordered, string keys; V_NS uses one too */

struct node;
struct frame;

typedef struct macro {
    struct node *def;
    struct frame *closure;
} macro;

/* A builtin function or a method bound to its object. */
typedef struct func {
    int id;
    jv self;
    const char *name;
} func;

typedef struct loopst {
    jlist *items;
    size_t i;
} loopst;

static const jv NONE = {.t = V_NONE};

/* ------------------------------------------------------------------ AST */

enum {
    /* expressions */
    E_LIT = 1, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NEG, E_POS, E_NOT,
    E_BIN, E_CMP, E_AND, E_OR, E_COND, E_LIST, E_TUPLE, E_DICT,
    /* statements */
    S_DATA, S_PRINT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_BREAK, S_CONTINUE, S_GEN,
};

/* binary and comparison operators */
enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_CAT,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

typedef struct node {
    int kind, op, line, col;
    const char *name;    /* NAME, ATTR, FILTER, TEST, SET namespace, MACRO name */
    struct node *a, *b, *c, *d; /* operands; IF: a cond; FOR: a iter, b filter */
    struct node **kids;  /* args / items / body */
    const char **kw;     /* CALL/FILTER/TEST: keyword names parallel to kids (NULL = positional) */
    int nkids;
    struct node **alt;   /* IF else-body, FOR else-body, DICT values, CMP operands, MACRO defaults */
    int nalt;
    const char **names;  /* FOR/SET targets, MACRO params */
    int nnames;
    int negate;          /* TEST: is not */
    int *ops;            /* CMP operators */
    jv lit;
    const char *data;    /* S_DATA text */
    size_t datalen;
} node;

struct icl_jinja {
    arena ar;
    char *name;
    node **body;
    int nbody;
};

/* ------------------------------------------------------------------ strings */

/* Decode one UTF-8 code point at s[*i] (invalid bytes decode as themselves). */
static int32_t u8_next(const char *s, size_t n, size_t *i)
{
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + *i, (utf8proc_ssize_t)(n - *i), &cp);
    if (k <= 0) {
        cp = (unsigned char)s[*i];
        k = 1;
    }
    *i += (size_t)k;
    return cp;
}

/* Python's str.isspace() for the code points that occur in practice. */
static int py_space(int32_t c)
{
    return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* --------------------------------------------------------- float repr */

char *icl_py_float_repr(double x, char buf[32])
{
    if (isnan(x)) {
        strcpy(buf, "nan");
        return buf;
    }
    if (isinf(x)) {
        strcpy(buf, x < 0 ? "-inf" : "inf");
        return buf;
    }
    if (x == 0) {
        strcpy(buf, signbit(x) ? "-0.0" : "0.0");
        return buf;
    }
    /* shortest round-tripping digits, then Python's repr layout */
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    char digits[24];
    int nd = 0, neg = 0;
    const char *p = tmp;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (isdigit((unsigned char)*p))
            digits[nd++] = *p;
    int e10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    int decpt = e10 + 1; /* value = 0.d1d2... x 10^decpt */
    char *o = buf;
    if (neg)
        *o++ = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -decpt; i++)
                *o++ = '0';
            for (int i = 0; i < nd; i++)
                *o++ = digits[i];
        } else {
            for (int i = 0; i < decpt; i++)
                *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > decpt)
                for (int i = decpt; i < nd; i++)
                    *o++ = digits[i];
            else
                *o++ = '0';
        }
        *o = 0;
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++)
                *o++ = digits[i];
        }
        snprintf(o, 16, "e%c%02d", e10 < 0 ? '-' : '+', abs(e10) % 1000);
    }
    return buf;
}

/* ------------------------------------------------------------------ errors */

typedef struct {
    arena *ar;
    jmp_buf jb;
    char msg[512];
    const char *name;
    const char *src;
    size_t srclen;
    size_t *lines; /* offsets where lines start (arena) */
    size_t nlines;
} errctx;

/* line and column (in code points) of a source offset: a binary search in
 * the table of line starts (parsing stays linear in the template size) */
static void pos_of(const errctx *e, size_t off, int *line, int *col)
{
    size_t lo = 0, hi = e->nlines; /* lines[lo] <= off < lines[hi] */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (e->lines[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    int c = 1;
    for (size_t i = e->nlines ? e->lines[lo] : 0; i < off && i < e->srclen; i++)
        if (((unsigned char)e->src[i] & 0xc0) != 0x80)
            c++;
    *line = (int)lo + 1;
    *col = c;
}

/* ------------------------------------------------------------------ lexer */

enum { T_EOF, T_DATA, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_INT, T_FLOAT, T_STR, T_OP };

typedef struct {
    int t;
    size_t off;     /* source offset (for line:col) */
    const char *s;  /* DATA/NAME/STR text, OP text */
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct {
    errctx *e;
    const char *src;
    size_t len;
    tok *v;
    size_t n, cap;
} lexer;

static _Noreturn void lex_fail(errctx *e, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static _Noreturn void lex_fail(errctx *e, size_t off, const char *fmt, ...)
{
    int line, col;
    pos_of(e, off, &line, &col);
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    snprintf(e->msg, sizeof e->msg, "%s:%d:%d: %s", e->name, line, col, m);
    longjmp(e->jb, 1);
}

static void *ealloc(errctx *e, size_t n)
{
    void *p = arena_alloc(e->ar, n);
    if (!p) {
        snprintf(e->msg, sizeof e->msg, "%s: template too large", e->name);
        longjmp(e->jb, 1);
    }
    return p;
}

static tok *lex_push(lexer *L, int t, size_t off)
{
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 256;
        tok *v = ealloc(L->e, cap * sizeof *v);
        if (L->n)
            memcpy(v, L->v, L->n * sizeof *v);
        L->v = v;
        L->cap = cap;
    }
    tok *k = &L->v[L->n++];
    memset(k, 0, sizeof *k);
    k->t = t;
    k->off = off;
    return k;
}

static void push_data(lexer *L, size_t off, const char *s, size_t n)
{
    if (!n)
        return;
    tok *k = lex_push(L, T_DATA, off);
    k->s = s;
    k->n = n;
}

/* Decode a string literal body with Python's escapes (unknown ones stay). */
static const char *unescape(lexer *L, size_t off, const char *s, size_t n, size_t *outn)
{
    char *o = ealloc(L->e, n + 1), *w = o;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 == n) {
            *w++ = s[i];
            continue;
        }
        char c = s[++i];
        uint32_t cp = 0;
        int hex = 0;
        switch (c) {
        case 'n': *w++ = '\n'; continue;
        case 't': *w++ = '\t'; continue;
        case 'r': *w++ = '\r'; continue;
        case '\\': *w++ = '\\'; continue;
        case '\'': *w++ = '\''; continue;
        case '"': *w++ = '"'; continue;
        case 'a': *w++ = '\a'; continue;
        case 'b': *w++ = '\b'; continue;
        case 'f': *w++ = '\f'; continue;
        case 'v': *w++ = '\v'; continue;
        case '\n': continue;
        case 'x': hex = 2; break;
        case 'u': hex = 4; break;
        case 'U': hex = 8; break;
        default:
            if (c >= '0' && c <= '7') {
                int k = 0;
                while (k < 3 && i < n && s[i] >= '0' && s[i] <= '7') {
                    cp = cp * 8 + (uint32_t)(s[i] - '0');
                    i++;
                    k++;
                }
                i--;
                goto put;
            }
            *w++ = '\\';
            *w++ = c;
            continue;
        }
        for (int k = 0; k < hex; k++) {
            if (i + 1 >= n || !isxdigit((unsigned char)s[i + 1]))
                lex_fail(L->e, off, "truncated \\%c escape in a string literal", c);
            char h = s[++i];
            cp = cp * 16 + (uint32_t)(isdigit((unsigned char)h) ? h - '0' : (tolower((unsigned char)h) - 'a' + 10));
        }
    put:
        /* '\x00' is a NUL character as in Python (strings carry their
         * length); lone surrogates have no UTF-8 form */
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            lex_fail(L->e, off, "invalid code point in a string literal");
        w += utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)w);
    }
    *w = 0;
    *outn = (size_t)(w - o);
    return o;
}

/* Lex the inside of a tag from *pp; stops after the closer.  Returns 1 if
 * the closer had '-' (strip the whitespace after it).  Inside brackets a
 * closer is an operator (jinja2's balancing stack). */
static int lex_tag(lexer *L, size_t *pp, int block, size_t open)
{
    const char *s = L->src;
    size_t p = *pp, n = L->len;
    int depth = 0;
    for (;;) {
        while (p < n && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r'))
            p++;
        if (p >= n)
            lex_fail(L->e, open, "unclosed '%s'", block ? "{%" : "{{");
        if (depth == 0) {
            const char *cl = block ? "%}" : "}}";
            if ((s[p] == '-' || s[p] == '+') && p + 2 < n && s[p + 1] == cl[0] && s[p + 2] == cl[1]) {
                lex_push(L, block ? T_BEND : T_VEND, p);
                *pp = p + 3;
                return s[p] == '-';
            }
            if (s[p] == cl[0] && p + 1 < n && s[p + 1] == cl[1]) {
                lex_push(L, block ? T_BEND : T_VEND, p);
                *pp = p + 2;
                return 0;
            }
        }
        char c = s[p];
        if (isalpha((unsigned char)c) || c == '_') {
            size_t b = p;
            while (p < n && (isalnum((unsigned char)s[p]) || s[p] == '_'))
                p++;
            tok *k = lex_push(L, T_NAME, b);
            k->s = s + b;
            k->n = p - b;
        } else if (isdigit((unsigned char)c)) {
            size_t b = p;
            int isf = 0;
            while (p < n && (isdigit((unsigned char)s[p]) || s[p] == '_'))
                p++;
            if (p + 1 < n && s[p] == '.' && isdigit((unsigned char)s[p + 1])) {
                isf = 1;
                p++;
                while (p < n && (isdigit((unsigned char)s[p]) || s[p] == '_'))
                    p++;
            }
            if (p < n && (s[p] == 'e' || s[p] == 'E')) {
                size_t q = p + 1;
                if (q < n && (s[q] == '+' || s[q] == '-'))
                    q++;
                if (q < n && isdigit((unsigned char)s[q])) {
                    isf = 1;
                    p = q;
                    while (p < n && isdigit((unsigned char)s[p]))
                        p++;
                }
            }
            char num[64];
            size_t k = 0;
            for (size_t i = b; i < p && k < sizeof num - 1; i++)
                if (s[i] != '_')
                    num[k++] = s[i];
            num[k] = 0;
            tok *t = lex_push(L, isf ? T_FLOAT : T_INT, b);
            errno = 0;
            if (isf) {
                t->f = strtod(num, NULL);
            } else {
                t->i = strtoll(num, NULL, 10);
                if (errno == ERANGE || p - b >= sizeof num - 1)
                    lex_fail(L->e, b, "integer literal too large (icl supports 64-bit integers)");
            }
        } else if (c == '\'' || c == '"') {
            size_t b = p++;
            while (p < n && s[p] != c) {
                if (s[p] == '\\' && p + 1 < n)
                    p++;
                p++;
            }
            if (p >= n)
                lex_fail(L->e, b, "unterminated string literal");
            tok *t = lex_push(L, T_STR, b);
            t->s = unescape(L, b, s + b + 1, p - b - 1, &t->n);
            p++;
        } else {
            static const char *ops2[] = {"//", "**", "==", "!=", "<=", ">=", NULL};
            size_t b = p;
            size_t len = 0;
            for (int k = 0; ops2[k]; k++)
                if (p + 1 < n && s[p] == ops2[k][0] && s[p + 1] == ops2[k][1])
                    len = 2;
            if (!len) {
                if (!c || !strchr("+-*/%~<>=()[]{},.:|", c)) {
                    if ((unsigned char)c < 0x80 && isprint((unsigned char)c))
                        lex_fail(L->e, p, "unexpected character '%c'", c);
                    lex_fail(L->e, p, "unexpected byte 0x%02x", (unsigned char)c);
                }
                len = 1;
                if (c == '(' || c == '[' || c == '{')
                    depth++;
                else if ((c == ')' || c == ']' || c == '}') && depth > 0)
                    depth--;
            }
            tok *t = lex_push(L, T_OP, b);
            t->s = s + b;
            t->n = len;
            p += len;
        }
    }
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Cut the source into tokens, applying jinja2's whitespace rules:
 * '-' strips all whitespace on that side; trim_blocks drops the first
 * newline after a block or comment tag; lstrip_blocks drops the spaces and
 * tabs between the start of a line and a block or comment tag ('+' keeps). */
static void lex(lexer *L)
{
    const char *s = L->src;
    size_t n = L->len, p = 0;
    int line_start = 1, strip_next = 0;
    while (p < n) {
        size_t q = p;
        int kind = 0; /* 1 var, 2 block, 3 comment */
        while (q + 1 < n) {
            if (s[q] == '{' && (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#')) {
                kind = s[q + 1] == '{' ? 1 : s[q + 1] == '%' ? 2 : 3;
                break;
            }
            q++;
        }
        if (!kind)
            q = n;
        size_t ds = p, de = q;
        if (strip_next)
            while (ds < de && is_ws(s[ds]))
                ds++;
        strip_next = 0;
        if (!kind) {
            push_data(L, ds, s + ds, de - ds);
            break;
        }
        char mod = q + 2 < n ? s[q + 2] : 0;
        if (mod == '-') {
            while (de > ds && is_ws(s[de - 1]))
                de--;
        } else if (kind != 1 && mod != '+') {
            size_t l = de;
            while (l > p && (s[l - 1] == ' ' || s[l - 1] == '\t'))
                l--;
            if ((l > p && s[l - 1] == '\n') || (l == p && line_start))
                if (l >= ds)
                    de = l;
        }
        push_data(L, ds, s + ds, de > ds ? de - ds : 0);
        size_t t = q + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
        if (kind == 3) {
            size_t e = t;
            while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}'))
                e++;
            if (e + 1 >= n)
                lex_fail(L->e, q, "unclosed comment");
            int minus = e > t && s[e - 1] == '-';
            p = e + 2;
            if (minus)
                strip_next = 1;
            else if (p < n && s[p] == '\n')
                p++; /* trim_blocks */
            line_start = s[p - 1] == '\n';
            continue;
        }
        if (kind == 2) { /* {% raw %} ... {% endraw %} */
            size_t r = t;
            while (r < n && is_ws(s[r]))
                r++;
            if (r + 3 <= n && !strncmp(s + r, "raw", 3) && (r + 3 == n || !isalnum((unsigned char)s[r + 3]))) {
                size_t r2 = r + 3;
                while (r2 < n && is_ws(s[r2]))
                    r2++;
                int m2 = 0;
                if (r2 < n && s[r2] == '-') {
                    m2 = 1;
                    r2++;
                }
                if (r2 + 1 < n && s[r2] == '%' && s[r2 + 1] == '}') {
                    size_t body = r2 + 2;
                    if (m2)
                        while (body < n && is_ws(s[body]))
                            body++;
                    else if (body < n && s[body] == '\n')
                        body++;
                    size_t e = body;
                    for (;;) {
                        while (e + 1 < n && !(s[e] == '{' && s[e + 1] == '%'))
                            e++;
                        if (e + 1 >= n)
                            lex_fail(L->e, q, "'raw' without 'endraw'");
                        size_t x = e + 2;
                        int m3 = x < n && s[x] == '-';
                        if (m3 || (x < n && s[x] == '+'))
                            x++;
                        while (x < n && is_ws(s[x]))
                            x++;
                        if (x + 6 <= n && !strncmp(s + x, "endraw", 6)) {
                            x += 6;
                            while (x < n && is_ws(s[x]))
                                x++;
                            int m4 = 0;
                            if (x < n && s[x] == '-') {
                                m4 = 1;
                                x++;
                            }
                            if (x + 1 < n && s[x] == '%' && s[x + 1] == '}') {
                                size_t be = e;
                                if (m3)
                                    while (be > body && is_ws(s[be - 1]))
                                        be--;
                                push_data(L, body, s + body, be - body);
                                p = x + 2;
                                if (m4)
                                    strip_next = 1;
                                else if (p < n && s[p] == '\n')
                                    p++;
                                line_start = s[p - 1] == '\n';
                                goto next;
                            }
                        }
                        e += 2;
                    }
                }
            }
        }
        lex_push(L, kind == 1 ? T_VBEGIN : T_BBEGIN, q);
        p = t;
        if (lex_tag(L, &p, kind == 2, q))
            strip_next = 1;
        else if (kind == 2 && p < n && s[p] == '\n')
            p++; /* trim_blocks */
        line_start = s[p - 1] == '\n';
    next:;
    }
    lex_push(L, T_EOF, n);
}

/* ------------------------------------------------------------------ parser */

typedef struct {
    errctx *e;
    tok *v;
    size_t i, n;
    int depth;
} parser;

#define MAX_PARSE_DEPTH 200

static tok *peek(parser *P) { return &P->v[P->i]; }
static tok *peekn(parser *P, size_t k) { return P->i + k < P->n ? &P->v[P->i + k] : &P->v[P->n - 1]; }

static const char *tokdesc(tok *t, char *b, size_t bn)
{
    switch (t->t) {
    case T_EOF: return "end of template";
    case T_DATA: return "template data";
    case T_VBEGIN: return "'{{'";
    case T_VEND: return "end of print statement";
    case T_BBEGIN: return "'{%'";
    case T_BEND: return "end of statement block";
    case T_INT: return "integer";
    case T_FLOAT: return "float";
    case T_STR: return "string";
    default:
        snprintf(b, bn, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
        return b;
    }
}

static _Noreturn void pfail(parser *P, tok *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void pfail(parser *P, tok *t, const char *fmt, ...)
{
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    int line, col;
    pos_of(P->e, t->off, &line, &col);
    snprintf(P->e->msg, sizeof P->e->msg, "%s:%d:%d: %s", P->e->name, line, col, m);
    longjmp(P->e->jb, 1);
}

static int is_op(tok *t, const char *op) { return t->t == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n); }
static int is_name(tok *t, const char *nm) { return t->t == T_NAME && t->n == strlen(nm) && !memcmp(t->s, nm, t->n); }

static void expect_op(parser *P, const char *op)
{
    tok *t = peek(P);
    if (!is_op(t, op)) {
        char b[64];
        pfail(P, t, "expected '%s', got %s", op, tokdesc(t, b, sizeof b));
    }
    P->i++;
}

static const char *tokstr(parser *P, tok *t)
{
    char *s = ealloc(P->e, t->n + 1);
    memcpy(s, t->s, t->n);
    s[t->n] = 0;
    return s;
}

static const char *expect_name(parser *P)
{
    tok *t = peek(P);
    if (t->t != T_NAME) {
        char b[64];
        pfail(P, t, "expected a name, got %s", tokdesc(t, b, sizeof b));
    }
    P->i++;
    return tokstr(P, t);
}

static node *mk(parser *P, int kind, tok *t)
{
    node *x = ealloc(P->e, sizeof *x);
    memset(x, 0, sizeof *x);
    x->kind = kind;
    pos_of(P->e, t->off, &x->line, &x->col);
    return x;
}

/* growable node arrays in the arena */
typedef struct {
    node **v;
    const char **kw;
    int n, cap;
} nvec;

static void nv_push(parser *P, nvec *a, node *x, const char *kw)
{
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 4;
        node **v = ealloc(P->e, (size_t)cap * sizeof *v);
        const char **k = ealloc(P->e, (size_t)cap * sizeof *k);
        if (a->n) {
            memcpy(v, a->v, (size_t)a->n * sizeof *v);
            memcpy(k, a->kw, (size_t)a->n * sizeof *k);
        }
        a->v = v;
        a->kw = k;
        a->cap = cap;
    }
    a->v[a->n] = x;
    a->kw[a->n] = kw;
    a->n++;
}

static node *p_expr(parser *P);
static node *p_or(parser *P);
static node *p_unary(parser *P, int with_filter);
static node *p_primary(parser *P);

static void enter(parser *P)
{
    if (++P->depth > MAX_PARSE_DEPTH)
        pfail(P, peek(P), "expression nested too deeply (limit %d)", MAX_PARSE_DEPTH);
}

static int tuple_end(tok *t)
{
    return t->t == T_BEND || t->t == T_VEND || is_op(t, ")") || is_op(t, "]") || is_op(t, "=") ||
           t->t == T_EOF;
}

/* An expression, or a tuple when commas follow (jinja2's parse_tuple);
 * in parentheses an empty tuple is allowed. */
static node *p_tuple(parser *P, int explicit_parens)
{
    tok *t0 = peek(P);
    nvec items = {0};
    int comma = 0;
    if (explicit_parens && is_op(t0, ")")) {
        node *x = mk(P, E_TUPLE, t0);
        return x;
    }
    nv_push(P, &items, p_expr(P), NULL);
    while (is_op(peek(P), ",")) {
        P->i++;
        comma = 1;
        if (tuple_end(peek(P)))
            break;
        nv_push(P, &items, p_expr(P), NULL);
    }
    if (!comma)
        return items.v[0];
    node *x = mk(P, E_TUPLE, t0);
    x->kids = items.v;
    x->nkids = items.n;
    return x;
}

static node *p_expr(parser *P)
{
    enter(P);
    node *a = p_or(P);
    while (is_name(peek(P), "if")) {
        tok *t = peek(P);
        P->i++;
        node *c = p_or(P);
        node *b = NULL;
        if (is_name(peek(P), "else")) {
            P->i++;
            b = p_expr(P);
        }
        node *x = mk(P, E_COND, t);
        x->a = c;
        x->b = a;
        x->c = b;
        a = x;
    }
    P->depth--;
    return a;
}

static node *p_not(parser *P);
static node *p_and(parser *P)
{
    node *a = p_not(P);
    while (is_name(peek(P), "and")) {
        tok *t = peek(P);
        P->i++;
        node *x = mk(P, E_AND, t);
        x->a = a;
        x->b = p_not(P);
        a = x;
    }
    return a;
}

static node *p_or(parser *P)
{
    node *a = p_and(P);
    while (is_name(peek(P), "or")) {
        tok *t = peek(P);
        P->i++;
        node *x = mk(P, E_OR, t);
        x->a = a;
        x->b = p_and(P);
        a = x;
    }
    return a;
}

static node *p_compare(parser *P);
static node *p_not(parser *P)
{
    if (is_name(peek(P), "not")) {
        tok *t = peek(P);
        P->i++;
        enter(P);
        node *x = mk(P, E_NOT, t);
        x->a = p_not(P);
        P->depth--;
        return x;
    }
    return p_compare(P);
}

static node *p_math1(parser *P);
static node *p_compare(parser *P)
{
    tok *t0 = peek(P);
    node *a = p_math1(P);
    nvec opnds = {0};
    int ops[64], nops = 0;
    for (;;) {
        tok *t = peek(P);
        int op = 0;
        if (is_op(t, "=="))
            op = OP_EQ;
        else if (is_op(t, "!="))
            op = OP_NE;
        else if (is_op(t, "<"))
            op = OP_LT;
        else if (is_op(t, "<="))
            op = OP_LE;
        else if (is_op(t, ">"))
            op = OP_GT;
        else if (is_op(t, ">="))
            op = OP_GE;
        else if (is_name(t, "in"))
            op = OP_IN;
        else if (is_name(t, "not") && is_name(peekn(P, 1), "in")) {
            op = OP_NOTIN;
            P->i++;
        }
        if (!op)
            break;
        P->i++;
        if (nops == 64)
            pfail(P, t, "comparison chain too long");
        ops[nops++] = op;
        nv_push(P, &opnds, p_math1(P), NULL);
    }
    if (!nops)
        return a;
    node *x = mk(P, E_CMP, t0);
    x->a = a;
    x->alt = opnds.v;
    x->nalt = opnds.n;
    x->ops = ealloc(P->e, (size_t)nops * sizeof(int));
    memcpy(x->ops, ops, (size_t)nops * sizeof(int));
    return x;
}

static node *bin(parser *P, tok *t, int op, node *a, node *b)
{
    node *x = mk(P, E_BIN, t);
    x->op = op;
    x->a = a;
    x->b = b;
    return x;
}

static node *p_pow(parser *P)
{
    node *a = p_unary(P, 1);
    while (is_op(peek(P), "**")) {
        tok *t = peek(P);
        P->i++;
        a = bin(P, t, OP_POW, a, p_unary(P, 1));
    }
    return a;
}

static node *p_math2(parser *P)
{
    node *a = p_pow(P);
    for (;;) {
        tok *t = peek(P);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FDIV : is_op(t, "%") ? OP_MOD : 0;
        if (!op)
            return a;
        P->i++;
        a = bin(P, t, op, a, p_pow(P));
    }
}

static node *p_concat(parser *P)
{
    node *a = p_math2(P);
    while (is_op(peek(P), "~")) {
        tok *t = peek(P);
        P->i++;
        a = bin(P, t, OP_CAT, a, p_math2(P));
    }
    return a;
}

static node *p_math1(parser *P)
{
    node *a = p_concat(P);
    for (;;) {
        tok *t = peek(P);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op)
            return a;
        P->i++;
        a = bin(P, t, op, a, p_concat(P));
    }
}

/* call arguments from '(' through ')' into x->kids / x->kw */
static void p_args(parser *P, node *x)
{
    nvec args = {0};
    expect_op(P, "(");
    enter(P);
    while (!is_op(peek(P), ")")) {
        if (args.n)
            expect_op(P, ",");
        if (is_op(peek(P), ")"))
            break;
        tok *t = peek(P);
        if (is_op(t, "*") || is_op(t, "**"))
            pfail(P, t, "unsupported: *args/**kwargs in calls");
        if (t->t == T_NAME && is_op(peekn(P, 1), "=")) {
            const char *k = tokstr(P, t);
            P->i += 2;
            nv_push(P, &args, p_expr(P), k);
        } else {
            nv_push(P, &args, p_expr(P), NULL);
        }
    }
    P->i++;
    P->depth--;
    x->kids = args.v;
    x->kw = args.kw;
    x->nkids = args.n;
}

static node *p_postfix(parser *P, node *a)
{
    for (;;) {
        tok *t = peek(P);
        if (is_op(t, ".")) {
            P->i++;
            tok *nt = peek(P);
            node *x;
            if (nt->t == T_INT) {
                x = mk(P, E_ITEM, t);
                x->a = a;
                x->b = mk(P, E_LIT, nt);
                x->b->lit.t = V_INT;
                x->b->lit.u.i = nt->i;
                P->i++;
            } else {
                x = mk(P, E_ATTR, t);
                x->a = a;
                x->name = expect_name(P);
            }
            a = x;
        } else if (is_op(t, "[")) {
            P->i++;
            enter(P);
            node *parts[3] = {NULL, NULL, NULL};
            int np = 0, slice = 0;
            for (;;) {
                tok *u = peek(P);
                if (is_op(u, ":")) {
                    slice = 1;
                    P->i++;
                    if (++np > 2)
                        pfail(P, u, "too many ':' in a slice");
                    continue;
                }
                if (is_op(u, "]"))
                    break;
                if (parts[np]) {
                    char b[64];
                    pfail(P, u, "expected ']', got %s", tokdesc(u, b, sizeof b));
                }
                parts[np] = slice ? p_expr(P) : p_tuple(P, 0);
            }
            P->i++;
            P->depth--;
            node *x = mk(P, slice ? E_SLICE : E_ITEM, t);
            x->a = a;
            if (slice) {
                x->b = parts[0];
                x->c = parts[1];
                x->d = parts[2];
            } else {
                if (!parts[0])
                    pfail(P, t, "expected an expression inside []");
                x->b = parts[0];
            }
            a = x;
        } else if (is_op(t, "(")) {
            node *x = mk(P, E_CALL, t);
            x->a = a;
            p_args(P, x);
            a = x;
        } else {
            return a;
        }
    }
}

static node *p_filters(parser *P, node *a)
{
    for (;;) {
        tok *t = peek(P);
        if (is_op(t, "|")) {
            P->i++;
            node *x = mk(P, E_FILTER, t);
            x->a = a;
            x->name = expect_name(P);
            if (is_op(peek(P), "("))
                p_args(P, x);
            a = x;
        } else if (is_name(t, "is")) {
            P->i++;
            node *x = mk(P, E_TEST, t);
            if (is_name(peek(P), "not")) {
                x->negate = 1;
                P->i++;
            }
            x->a = a;
            x->name = expect_name(P);
            tok *u = peek(P);
            if (is_op(u, "(")) {
                p_args(P, x);
            } else if ((u->t == T_NAME && !is_name(u, "else") && !is_name(u, "or") && !is_name(u, "and") &&
                        !is_name(u, "if") && !is_name(u, "is") && !is_name(u, "in") && !is_name(u, "not")) ||
                       u->t == T_STR || u->t == T_INT || u->t == T_FLOAT || is_op(u, "[") || is_op(u, "{")) {
                nvec args = {0};
                enter(P);
                nv_push(P, &args, p_postfix(P, p_primary(P)), NULL);
                P->depth--;
                x->kids = args.v;
                x->kw = args.kw;
                x->nkids = 1;
            }
            a = x;
        } else {
            return a;
        }
    }
}

static node *p_unary(parser *P, int with_filter)
{
    tok *t = peek(P);
    node *a;
    enter(P);
    if (is_op(t, "-") || is_op(t, "+")) {
        P->i++;
        a = mk(P, is_op(t, "-") ? E_NEG : E_POS, t);
        a->a = p_unary(P, 0);
    } else {
        a = p_postfix(P, p_primary(P));
    }
    if (with_filter)
        a = p_filters(P, a);
    P->depth--;
    return a;
}

static node *p_primary(parser *P)
{
    tok *t = peek(P);
    char b[64];
    node *x;
    switch (t->t) {
    case T_NAME:
        P->i++;
        x = mk(P, E_LIT, t);
        if (is_name(t, "true") || is_name(t, "True")) {
            x->lit.t = V_BOOL;
            x->lit.u.b = 1;
        } else if (is_name(t, "false") || is_name(t, "False")) {
            x->lit.t = V_BOOL;
            x->lit.u.b = 0;
        } else if (is_name(t, "none") || is_name(t, "None")) {
            x->lit.t = V_NONE;
        } else {
            x->kind = E_NAME;
            x->name = tokstr(P, t);
        }
        return x;
    case T_INT:
        P->i++;
        x = mk(P, E_LIT, t);
        x->lit.t = V_INT;
        x->lit.u.i = t->i;
        return x;
    case T_FLOAT:
        P->i++;
        x = mk(P, E_LIT, t);
        x->lit.t = V_FLOAT;
        x->lit.u.f = t->f;
        return x;
    case T_STR: {
        /* adjacent literals concatenate */
        size_t total = 0, j = P->i;
        while (j < P->n && P->v[j].t == T_STR)
            total += P->v[j++].n;
        jstr *s = ealloc(P->e, sizeof *s + total + 1);
        s->len = 0;
        while (P->i < j) {
            memcpy(s->s + s->len, P->v[P->i].s, P->v[P->i].n);
            s->len += P->v[P->i].n;
            P->i++;
        }
        s->s[s->len] = 0;
        x = mk(P, E_LIT, t);
        x->lit.t = V_STR;
        x->lit.u.s = s;
        return x;
    }
    case T_OP:
        if (is_op(t, "(")) {
            P->i++;
            enter(P);
            x = p_tuple(P, 1);
            P->depth--;
            expect_op(P, ")");
            return x;
        }
        if (is_op(t, "[")) {
            P->i++;
            enter(P);
            nvec items = {0};
            while (!is_op(peek(P), "]")) {
                if (items.n)
                    expect_op(P, ",");
                if (is_op(peek(P), "]"))
                    break;
                nv_push(P, &items, p_expr(P), NULL);
            }
            P->i++;
            P->depth--;
            x = mk(P, E_LIST, t);
            x->kids = items.v;
            x->nkids = items.n;
            return x;
        }
        if (is_op(t, "{")) {
            P->i++;
            enter(P);
            nvec keys = {0}, vals = {0};
            while (!is_op(peek(P), "}")) {
                if (keys.n)
                    expect_op(P, ",");
                if (is_op(peek(P), "}"))
                    break;
                nv_push(P, &keys, p_expr(P), NULL);
                expect_op(P, ":");
                nv_push(P, &vals, p_expr(P), NULL);
            }
            P->i++;
            P->depth--;
            x = mk(P, E_DICT, t);
            x->kids = keys.v;
            x->nkids = keys.n;
            x->alt = vals.v;
            x->nalt = vals.n;
            return x;
        }
        break;
    default:
        break;
    }
    pfail(P, t, "expected an expression, got %s", tokdesc(t, b, sizeof b));
}

/* statements */

static void expect_bend(parser *P)
{
    tok *t = peek(P);
    if (t->t != T_BEND) {
        char b[64];
        pfail(P, t, "expected end of statement block, got %s", tokdesc(t, b, sizeof b));
    }
    P->i++;
}


/* Parse statements until a block tag named in ends (NULL-terminated) and
 * leave P at that name token; at top level (ends NULL) until the end. */
static void p_body(parser *P, nvec *out, const char *const *ends, const char *what, tok *opener, int inloop);

static node *p_if_rest(parser *P, tok *t, int inloop)
{
    node *x = mk(P, S_IF, t);
    x->a = p_tuple(P, 0);
    expect_bend(P);
    static const char *const e1[] = {"elif", "else", "endif", NULL};
    nvec body = {0};
    p_body(P, &body, e1, "if", t, inloop);
    x->kids = body.v;
    x->nkids = body.n;
    tok *e = peek(P);
    P->i++;
    if (is_name(e, "elif")) {
        x->alt = ealloc(P->e, sizeof(node *));
        x->alt[0] = p_if_rest(P, e, inloop);
        x->nalt = 1;
        return x; /* the elif consumed endif */
    }
    if (is_name(e, "else")) {
        expect_bend(P);
        static const char *const e2[] = {"endif", NULL};
        nvec eb = {0};
        p_body(P, &eb, e2, "if", t, inloop);
        x->alt = eb.v;
        x->nalt = eb.n;
        P->i++;
    }
    expect_bend(P);
    return x;
}

static void p_targets(parser *P, node *x)
{
    const char *names[16];
    int n = 0;
    int paren = 0;
    if (is_op(peek(P), "(")) {
        paren = 1;
        P->i++;
    }
    for (;;) {
        if (n == 16)
            pfail(P, peek(P), "too many assignment targets");
        names[n++] = expect_name(P);
        if (!is_op(peek(P), ","))
            break;
        P->i++;
        if (peek(P)->t != T_NAME)
            break;
    }
    if (paren)
        expect_op(P, ")");
    x->names = ealloc(P->e, (size_t)n * sizeof *names);
    memcpy(x->names, names, (size_t)n * sizeof *names);
    x->nnames = n;
}

static node *p_stmt(parser *P, int inloop)
{
    tok *t = peek(P);
    char b[64];
    if (t->t != T_NAME)
        pfail(P, t, "expected a statement name, got %s", tokdesc(t, b, sizeof b));
    P->i++;
    if (is_name(t, "if"))
        return p_if_rest(P, t, inloop);
    if (is_name(t, "for")) {
        node *x = mk(P, S_FOR, t);
        p_targets(P, x);
        tok *in = peek(P);
        if (!is_name(in, "in"))
            pfail(P, in, "expected 'in', got %s", tokdesc(in, b, sizeof b));
        P->i++;
        /* the iterable has no conditional expression: "if" starts the filter */
        {
            tok *t0 = peek(P);
            nvec items = {0};
            int comma = 0;
            nv_push(P, &items, p_or(P), NULL);
            while (is_op(peek(P), ",")) {
                P->i++;
                comma = 1;
                if (peek(P)->t == T_BEND || is_name(peek(P), "if"))
                    break;
                nv_push(P, &items, p_or(P), NULL);
            }
            if (comma) {
                x->a = mk(P, E_TUPLE, t0);
                x->a->kids = items.v;
                x->a->nkids = items.n;
            } else {
                x->a = items.v[0];
            }
        }
        if (is_name(peek(P), "if")) {
            P->i++;
            x->b = p_expr(P);
        }
        if (is_name(peek(P), "recursive"))
            pfail(P, peek(P), "unsupported: recursive loops");
        expect_bend(P);
        static const char *const e1[] = {"else", "endfor", NULL};
        nvec body = {0};
        p_body(P, &body, e1, "for", t, 1);
        x->kids = body.v;
        x->nkids = body.n;
        tok *e = peek(P);
        P->i++;
        if (is_name(e, "else")) {
            expect_bend(P);
            static const char *const e2[] = {"endfor", NULL};
            nvec eb = {0};
            p_body(P, &eb, e2, "for", t, inloop);
            x->alt = eb.v;
            x->nalt = eb.n;
            P->i++;
        }
        expect_bend(P);
        return x;
    }
    if (is_name(t, "set")) {
        node *x = mk(P, S_SET, t);
        tok *nt = peek(P);
        if (nt->t == T_NAME && is_op(peekn(P, 1), ".")) {
            x->name = expect_name(P); /* namespace */
            P->i++;
            x->names = ealloc(P->e, sizeof(char *));
            x->names[0] = expect_name(P);
            x->nnames = 1;
            x->op = 1; /* attribute assignment */
        } else {
            p_targets(P, x);
        }
        if (is_op(peek(P), "=")) {
            P->i++;
            x->a = p_tuple(P, 0);
            expect_bend(P);
            return x;
        }
        if (x->op || x->nnames != 1)
            pfail(P, peek(P), "expected '='");
        if (is_op(peek(P), "|"))
            pfail(P, peek(P), "unsupported: filters on block set");
        expect_bend(P);
        x->kind = S_SETBLOCK;
        static const char *const e1[] = {"endset", NULL};
        nvec body = {0};
        p_body(P, &body, e1, "set", t, inloop);
        x->kids = body.v;
        x->nkids = body.n;
        P->i++;
        expect_bend(P);
        return x;
    }
    if (is_name(t, "macro")) {
        node *x = mk(P, S_MACRO, t);
        x->name = expect_name(P);
        expect_op(P, "(");
        nvec defs = {0};
        const char *names[64];
        int n = 0;
        while (!is_op(peek(P), ")")) {
            if (n)
                expect_op(P, ",");
            if (is_op(peek(P), ")"))
                break;
            if (n == 64)
                pfail(P, peek(P), "too many macro parameters");
            names[n++] = expect_name(P);
            if (is_op(peek(P), "=")) {
                P->i++;
                nv_push(P, &defs, p_expr(P), NULL);
            } else {
                if (defs.n && defs.v[defs.n - 1])
                    pfail(P, peek(P), "non-default argument follows default argument");
                nv_push(P, &defs, NULL, NULL);
            }
        }
        P->i++;
        expect_bend(P);
        x->names = ealloc(P->e, (size_t)(n ? n : 1) * sizeof *names);
        memcpy(x->names, names, (size_t)n * sizeof *names);
        x->nnames = n;
        x->alt = defs.v;
        x->nalt = defs.n;
        static const char *const e1[] = {"endmacro", NULL};
        nvec body = {0};
        p_body(P, &body, e1, "macro", t, 0);
        x->kids = body.v;
        x->nkids = body.n;
        P->i++;
        if (peek(P)->t == T_NAME)
            P->i++; /* {% endmacro name %} */
        expect_bend(P);
        return x;
    }
    if (is_name(t, "break") || is_name(t, "continue")) {
        if (!inloop)
            pfail(P, t, "'%s' outside a loop", is_name(t, "break") ? "break" : "continue");
        node *x = mk(P, is_name(t, "break") ? S_BREAK : S_CONTINUE, t);
        expect_bend(P);
        return x;
    }
    if (is_name(t, "generation")) {
        node *x = mk(P, S_GEN, t);
        expect_bend(P);
        static const char *const e1[] = {"endgeneration", NULL};
        nvec body = {0};
        p_body(P, &body, e1, "generation", t, inloop);
        x->kids = body.v;
        x->nkids = body.n;
        P->i++;
        expect_bend(P);
        return x;
    }
    static const char *const files[] = {"include", "import", "from", "extends", "block", NULL};
    for (int k = 0; files[k]; k++)
        if (is_name(t, files[k]))
            pfail(P, t, "unsupported statement '%s' (templates may not load other templates)", files[k]);
    static const char *const other[] = {"call", "filter", "with", "autoescape", "do", "trans", NULL};
    for (int k = 0; other[k]; k++)
        if (is_name(t, other[k]))
            pfail(P, t, "unsupported statement '%s'", other[k]);
    pfail(P, t, "unknown statement %s", tokdesc(t, b, sizeof b));
}

static void p_body(parser *P, nvec *out, const char *const *ends, const char *what, tok *opener, int inloop)
{
    char b[64];
    for (;;) {
        tok *t = peek(P);
        if (t->t == T_EOF) {
            if (ends) {
                int line, col;
                pos_of(P->e, opener->off, &line, &col);
                pfail(P, t, "unexpected end of template: '%s' opened on line %d needs '%s'", what, line,
                      ends[0] && ends[1] ? ends[1] && ends[2] ? ends[2] : ends[1] : ends[0]);
            }
            return;
        }
        if (t->t == T_DATA) {
            node *x = mk(P, S_DATA, t);
            x->data = t->s;
            x->datalen = t->n;
            nv_push(P, out, x, NULL);
            P->i++;
        } else if (t->t == T_VBEGIN) {
            P->i++;
            node *x = mk(P, S_PRINT, t);
            x->a = p_tuple(P, 0);
            tok *e = peek(P);
            if (e->t != T_VEND)
                pfail(P, e, "expected end of print statement, got %s", tokdesc(e, b, sizeof b));
            P->i++;
            nv_push(P, out, x, NULL);
        } else if (t->t == T_BBEGIN) {
            P->i++;
            tok *nt = peek(P);
            if (ends)
                for (int k = 0; ends[k]; k++)
                    if (is_name(nt, ends[k]))
                        return;
            if (nt->t == T_NAME && (!strncmp(nt->s, "end", 3) || is_name(nt, "elif") || is_name(nt, "else")))
                pfail(P, nt, "unexpected %s%s%s%s", tokdesc(nt, b, sizeof b), ends ? " inside '" : "",
                      ends ? what : "", ends ? "'" : "");
            enter(P);
            nv_push(P, out, p_stmt(P, inloop), NULL);
            P->depth--;
        } else {
            pfail(P, t, "unexpected %s", tokdesc(t, b, sizeof b));
        }
    }
}

static void __attribute__((noinline)) parse_all(icl_jinja *t, errctx *e, const char *src, size_t len)
{
    /* normalise newlines; drop one trailing newline (keep_trailing_newline=False) */
    char *s = ealloc(e, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n')
        n--;
    s[n] = 0;
    e->src = s;
    e->srclen = n;
    size_t nl = 1;
    for (size_t i = 0; i < n; i++)
        nl += s[i] == '\n';
    e->lines = ealloc(e, nl * sizeof *e->lines);
    e->lines[0] = 0;
    e->nlines = 1;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n')
            e->lines[e->nlines++] = i + 1;
    if (memchr(s, 0, n))
        lex_fail(e, (size_t)((char *)memchr(s, 0, n) - s), "NUL byte in template");
    lexer L = {.e = e, .src = s, .len = n};
    lex(&L);
    parser P = {.e = e, .v = L.v, .n = L.n};
    nvec body = {0};
    p_body(&P, &body, NULL, NULL, NULL, 0);
    t->body = body.v;
    t->nbody = body.n;
}

icl_jinja *icl_jinja_parse(const char *src, size_t len, const char *name, char *err, size_t errsz)
{
    icl_jinja *t = xcalloc(1, sizeof *t);
    t->name = xstrdup(name ? name : "template");
    t->ar.limit = (size_t)256 << 20;
    errctx *e = xcalloc(1, sizeof *e);
    e->ar = &t->ar;
    e->name = t->name;
    e->src = "";
    if (setjmp(e->jb)) {
        icl_seterr(err, errsz, "%s", e->msg);
        free(e);
        icl_jinja_free(t);
        return NULL;
    }
    parse_all(t, e, src, len);
    free(e);
    return t;
}

void icl_jinja_free(icl_jinja *t)
{
    if (!t)
        return;
    arena_free(&t->ar);
    free(t->name);
    free(t);
}

/* ================================================================ render */

typedef struct frame {
    struct frame *up;
    jdict *vars; /* NULL until something is set */
} frame;

typedef struct {
    char *p;
    size_t n, cap;
    int main; /* the render's output: limited by max_output */
} sb;

typedef struct {
    errctx e;
    arena ar;
    const icl_jinja *t;
    icl_jinja_limits lim;
    long steps;
    int depth, vdepth, edepth;
    sb *out;
    sb main;
    jdict *vars; /* the caller's variables */
    icl_jinja_span *spans;
    size_t nspans, capspans;
    int brk; /* 1 break, 2 continue */
    const char *macro_name;
    frame *f;        /* the current scope */
    const node *at;  /* the node being evaluated (for messages) */
} rctx;

static _Noreturn void rfail(rctx *R, const node *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void rfail(rctx *R, const node *at, const char *fmt, ...)
{
    char m[420];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    if (at)
        snprintf(R->e.msg, sizeof R->e.msg, "%s:%d: %s", R->t->name, at->line, m);
    else
        snprintf(R->e.msg, sizeof R->e.msg, "%s: %s", R->t->name, m);
    longjmp(R->e.jb, 1);
}


static void *ralloc(rctx *R, size_t n)
{
    void *p = arena_alloc(&R->ar, n);
    if (!p)
        rfail(R, R->at, "template used more than %zu bytes of memory (limit)", R->lim.max_memory);
    return p;
}

/* Count n steps of work against lim.max_steps (steps never exceeds it, so
 * the sum cannot overflow). */
static void tick(rctx *R, long n)
{
    if (n > R->lim.max_steps - R->steps)
        rfail(R, R->at, "template ran more than %ld steps (limit): an endless loop, or too much work on large values?",
              R->lim.max_steps);
    R->steps += n;
}

/* Operations whose cost grows with their input (scanning a string, comparing
 * strings, looking up a key among many) count one step per BYTES_PER_STEP
 * bytes (or per 16 dict keys) they look at, so that the step limit bounds the
 * time a render takes and not only the number of operations.  A scan of 64
 * bytes costs far less than a loop iteration; real chat templates stay
 * thousands of times under the limit. */
#define BYTES_PER_STEP 64
static void tick_bytes(rctx *R, size_t n)
{
    size_t k = n / BYTES_PER_STEP;
    tick(R, k > (size_t)LONG_MAX ? LONG_MAX : (long)k);
}

/* Walks that decode UTF-8 code point by code point (len, s[i], strip, isupper...)
 * cost some nanoseconds a byte, not a fraction: 1 step per 16 bytes. */
#define CHAR_BYTES_PER_STEP 16
static void tick_chars(rctx *R, size_t n)
{
    size_t k = n / CHAR_BYTES_PER_STEP;
    tick(R, k > (size_t)LONG_MAX ? LONG_MAX : (long)k);
}

/* ---- string builder */

static void sb_grow(rctx *R, sb *b, size_t extra)
{
    if (b->main && b->n + extra > R->lim.max_output)
        rfail(R, R->at, "rendered text exceeds %zu bytes (limit)", R->lim.max_output);
    if (b->n + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) {
        if (cap > SIZE_MAX / 4)
            rfail(R, NULL, "string too long");
        cap *= 2;
    }
    char *p = ralloc(R, cap);
    if (b->n)
        memcpy(p, b->p, b->n);
    b->p = p;
    b->cap = cap;
}

static void sb_add(rctx *R, sb *b, const char *s, size_t n)
{
    if (!n)
        return;
    sb_grow(R, b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(rctx *R, sb *b, const char *s) { sb_add(R, b, s, strlen(s)); }

static void sb_cp(rctx *R, sb *b, int32_t cp)
{
    char u[8];
    utf8proc_ssize_t k = utf8proc_encode_char(cp, (utf8proc_uint8_t *)u);
    sb_add(R, b, u, (size_t)k);
}

/* ---- constructors */

static jstr *str_new(rctx *R, const char *s, size_t n)
{
    jstr *r = ralloc(R, sizeof *r + n + 1);
    r->len = n;
    if (n)
        memcpy(r->s, s, n);
    r->s[n] = 0;
    return r;
}

static size_t u8_len_cp(const char *s, size_t n)
{
    size_t i = 0, c = 0;
    while (i < n) {
        u8_next(s, n, &i);
        c++;
    }
    return c;
}

static jv vstr(rctx *R, const char *s, size_t n)
{
    jv v = {.t = V_STR};
    v.u.s = str_new(R, s, n);
    return v;
}
static jv vsb(rctx *R, sb *b) { return vstr(R, b->p ? b->p : "", b->n); }
static jv vint(int64_t i)
{
    jv v = {.t = V_INT};
    v.u.i = i;
    return v;
}
static jv vfloat(double f)
{
    jv v = {.t = V_FLOAT};
    v.u.f = f;
    return v;
}
static jv vbool(int b)
{
    jv v = {.t = V_BOOL};
    v.u.b = !!b;
    return v;
}
static jv vundef(const char *obj, const char *name)
{
    jv v = {.t = V_UNDEF};
    v.u.u.obj = obj;
    v.u.u.name = name;
    return v;
}

static jlist *list_new(rctx *R, size_t cap)
{
    jlist *l = ralloc(R, sizeof *l);
    memset(l, 0, sizeof *l);
    if (cap) {
        if (cap > SIZE_MAX / sizeof(jv))
            rfail(R, R->at, "template used more than %zu bytes of memory (limit)", R->lim.max_memory);
        l->v = ralloc(R, cap * sizeof(jv));
        l->cap = cap;
    }
    return l;
}

static void list_push(rctx *R, jlist *l, jv v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        jv *nv = ralloc(R, cap * sizeof(jv));
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

static jv vlist(jlist *l)
{
    jv v = {.t = V_LIST};
    v.u.l = l;
    return v;
}

static jdict *dict_new(rctx *R)
{
    jdict *d = ralloc(R, sizeof *d);
    memset(d, 0, sizeof *d);
    return d;
}

/* Linear in the number of keys: counts d->n / 16 steps (see tick_bytes). */
static jv *dict_get(rctx *R, const jdict *d, const char *k, size_t n)
{
    if (!d)
        return NULL;
    if (d->n >= 16)
        tick(R, (long)(d->n / 16));
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i]->len == n && !memcmp(d->k[i]->s, k, n))
            return &d->v[i];
    return NULL;
}

static void dict_append(rctx *R, jdict *d, const char *k, size_t n, jv v);
static void dict_set(rctx *R, jdict *d, const char *k, size_t n, jv v)
{
    jv *o = dict_get(R, d, k, n);
    if (o) {
        *o = v;
        return;
    }
    dict_append(R, d, k, n, v);
}

/* Append a key known not to be in d (from a JSON object, whose keys are unique). */
static void dict_append(rctx *R, jdict *d, const char *k, size_t n, jv v)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        jstr **nk = ralloc(R, cap * sizeof *nk);
        jv *nv = ralloc(R, cap * sizeof *nv);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = str_new(R, k, n);
    d->v[d->n] = v;
    d->n++;
}

static jv vdict(jdict *d, int t)
{
    jv v = {.t = t};
    v.u.d = d;
    return v;
}

static jv vfunc(rctx *R, int id, jv self, const char *name)
{
    func *f = ralloc(R, sizeof *f);
    f->id = id;
    f->self = self;
    f->name = name;
    jv v = {.t = V_FUNC};
    v.u.fn = f;
    return v;
}

/* ---- Python's type names, truth, str(), repr() */

static const char *tname(jv v)
{
    switch (v.t) {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST: return v.u.l->tuple ? "tuple" : "list";
    case V_DICT: return "dict";
    case V_NS: return "Namespace";
    case V_MACRO: return "Macro";
    case V_FUNC: return "builtin_function_or_method";
    default: return "LoopContext";
    }
}

static int truthy(jv v)
{
    switch (v.t) {
    case V_UNDEF: case V_NONE: return 0;
    case V_BOOL: return v.u.b;
    case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0;
    case V_STR: return v.u.s->len != 0;
    case V_LIST: return v.u.l->n != 0;
    case V_DICT: return v.u.d->n != 0;
    default: return 1;
    }
}

static _Noreturn void undef_fail(rctx *R, const node *at, jv u)
{
    if (u.u.u.obj)
        rfail(R, at, "'%s' has no attribute '%s'", u.u.u.obj, u.u.u.name ? u.u.u.name : "?");
    if (u.u.u.name)
        rfail(R, at, "'%s' is undefined", u.u.u.name);
    rfail(R, at, "value is undefined");
}

static void enter_value(rctx *R)
{
    if (++R->vdepth > 500)
        rfail(R, R->at, "value nested too deeply (limit 500)");
}

static void repr(rctx *R, sb *b, jv v);

static void str_repr(rctx *R, sb *b, const char *s, size_t n)
{
    int sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    char q = (sq && !dq) ? '"' : '\'';
    sb_add(R, b, &q, 1);
    size_t i = 0;
    while (i < n) {
        size_t st = i;
        int32_t c = u8_next(s, n, &i);
        char e[16];
        if (c == q || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            sb_add(R, b, e, 2);
        } else if (c == '\n') {
            sb_puts(R, b, "\\n");
        } else if (c == '\r') {
            sb_puts(R, b, "\\r");
        } else if (c == '\t') {
            sb_puts(R, b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(e, sizeof e, "\\x%02x", (unsigned)c);
            sb_puts(R, b, e);
        } else if (c >= 0x80) {
            utf8proc_category_t cat = utf8proc_category(c);
            if (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CS ||
                cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_ZL ||
                cat == UTF8PROC_CATEGORY_ZP || cat == UTF8PROC_CATEGORY_ZS) {
                if (c <= 0xff)
                    snprintf(e, sizeof e, "\\x%02x", (unsigned)c);
                else if (c <= 0xffff)
                    snprintf(e, sizeof e, "\\u%04x", (unsigned)c);
                else
                    snprintf(e, sizeof e, "\\U%08x", (unsigned)c);
                sb_puts(R, b, e);
            } else {
                sb_add(R, b, s + st, i - st);
            }
        } else {
            sb_add(R, b, s + st, i - st);
        }
    }
    sb_add(R, b, &q, 1);
}

/* Python's str() */
static void to_str(rctx *R, sb *b, jv v)
{
    char buf[48];
    switch (v.t) {
    case V_UNDEF: return;
    case V_NONE: sb_puts(R, b, "None"); return;
    case V_BOOL: sb_puts(R, b, v.u.b ? "True" : "False"); return;
    case V_INT:
        snprintf(buf, sizeof buf, "%" PRId64, v.u.i);
        sb_puts(R, b, buf);
        return;
    case V_FLOAT: sb_puts(R, b, icl_py_float_repr(v.u.f, buf)); return;
    case V_STR: sb_add(R, b, v.u.s->s, v.u.s->len); return;
    default: repr(R, b, v);
    }
}

static void repr(rctx *R, sb *b, jv v)
{
    enter_value(R);
    switch (v.t) {
    case V_UNDEF: sb_puts(R, b, "Undefined"); break;
    case V_STR: str_repr(R, b, v.u.s->s, v.u.s->len); break;
    case V_LIST:
        sb_puts(R, b, v.u.l->tuple ? "(" : "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                sb_puts(R, b, ", ");
            repr(R, b, v.u.l->v[i]);
        }
        if (v.u.l->tuple && v.u.l->n == 1)
            sb_puts(R, b, ",");
        sb_puts(R, b, v.u.l->tuple ? ")" : "]");
        break;
    case V_DICT:
    case V_NS:
        if (v.t == V_NS)
            sb_puts(R, b, "<Namespace ");
        sb_puts(R, b, "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i)
                sb_puts(R, b, ", ");
            str_repr(R, b, v.u.d->k[i]->s, v.u.d->k[i]->len);
            sb_puts(R, b, ": ");
            repr(R, b, v.u.d->v[i]);
        }
        sb_puts(R, b, "}");
        if (v.t == V_NS)
            sb_puts(R, b, ">");
        break;
    case V_MACRO:
        sb_puts(R, b, "<Macro '");
        sb_puts(R, b, v.u.m->def->name);
        sb_puts(R, b, "'>");
        break;
    case V_FUNC:
        sb_puts(R, b, "<built-in function ");
        sb_puts(R, b, v.u.fn->name);
        sb_puts(R, b, ">");
        break;
    case V_LOOP: {
        char buf[64];
        snprintf(buf, sizeof buf, "<LoopContext %zu/%zu>", v.u.lp->i + 1, v.u.lp->items->n);
        sb_puts(R, b, buf);
        break;
    }
    default: to_str(R, b, v);
    }
    R->vdepth--;
}

static jv vtostr(rctx *R, jv v)
{
    if (v.t == V_STR)
        return v;
    sb b = {0};
    to_str(R, &b, v);
    return vsb(R, &b);
}

/* ---- comparison */

static int isnum(jv v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static double numf(jv v) { return v.t == V_FLOAT ? v.u.f : v.t == V_INT ? (double)v.u.i : (double)v.u.b; }
static int64_t numi(jv v) { return v.t == V_INT ? v.u.i : v.u.b; }

static int eq(rctx *R, jv a, jv b)
{
    if (isnum(a) && isnum(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT)
            return numi(a) == numi(b);
        return numf(a) == numf(b);
    }
    if (a.t != b.t)
        return 0;
    switch (a.t) {
    case V_UNDEF: case V_NONE: return 1;
    case V_STR:
        if (a.u.s->len != b.u.s->len)
            return 0;
        tick_bytes(R, a.u.s->len);
        return !memcmp(a.u.s->s, b.u.s->s, a.u.s->len);
    case V_LIST: {
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n)
            return 0;
        tick(R, (long)a.u.l->n);
        enter_value(R);
        int r = 1;
        for (size_t i = 0; r && i < a.u.l->n; i++)
            r = eq(R, a.u.l->v[i], b.u.l->v[i]);
        R->vdepth--;
        return r;
    }
    case V_DICT: {
        if (a.u.d->n != b.u.d->n)
            return 0;
        tick(R, (long)a.u.d->n);
        enter_value(R);
        int r = 1;
        for (size_t i = 0; r && i < a.u.d->n; i++) {
            jv *o = dict_get(R, b.u.d, a.u.d->k[i]->s, a.u.d->k[i]->len);
            r = o && eq(R, a.u.d->v[i], *o);
        }
        R->vdepth--;
        return r;
    }
    case V_NS: return a.u.d == b.u.d;
    case V_MACRO: return a.u.m == b.u.m;
    case V_FUNC: return a.u.fn == b.u.fn;
    default: return a.u.lp == b.u.lp;
    }
}

/* <0, 0, >0; TypeError for unordered types */
static int cmp(rctx *R, const node *at, jv a, jv b, const char *op)
{
    if (isnum(a) && isnum(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT)
            return numi(a) < numi(b) ? -1 : numi(a) > numi(b);
        double x = numf(a), y = numf(b);
        return x < y ? -1 : x > y;
    }
    if (a.t == V_UNDEF)
        undef_fail(R, at, a);
    if (b.t == V_UNDEF)
        undef_fail(R, at, b);
    if (a.t == V_STR && b.t == V_STR) {
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        tick_bytes(R, n);
        int c = memcmp(a.u.s->s, b.u.s->s, n);
        if (c)
            return c;
        return a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len;
    }
    if (a.t == V_LIST && b.t == V_LIST && a.u.l->tuple == b.u.l->tuple) {
        enter_value(R);
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            tick(R, 1);
            if (!eq(R, a.u.l->v[i], b.u.l->v[i])) {
                int c = cmp(R, at, a.u.l->v[i], b.u.l->v[i], op);
                R->vdepth--;
                return c;
            }
        }
        R->vdepth--;
        return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
    }
    rfail(R, at, "'%s' not supported between instances of '%s' and '%s'", op, tname(a), tname(b));
}

static int contains(rctx *R, const node *at, jv hay, jv needle)
{
    switch (hay.t) {
    case V_STR:
        if (needle.t != V_STR)
            rfail(R, at, "'in <string>' requires string as left operand, not %s", tname(needle));
        if (!needle.u.s->len)
            return 1;
        tick_bytes(R, hay.u.s->len);
        return memmem(hay.u.s->s, hay.u.s->len, needle.u.s->s, needle.u.s->len) != NULL;
    case V_LIST:
        for (size_t i = 0; i < hay.u.l->n; i++) {
            tick(R, 1);
            if (eq(R, hay.u.l->v[i], needle))
                return 1;
        }
        return 0;
    case V_DICT:
        return needle.t == V_STR && dict_get(R, hay.u.d, needle.u.s->s, needle.u.s->len);
    case V_UNDEF:
        return 0;
    default:
        rfail(R, at, "argument of type '%s' is not iterable", tname(hay));
    }
}

/* ---- iteration: the items a for loop, join, list... see */

static jlist *iter_items(rctx *R, const node *at, jv v)
{
    jlist *l;
    switch (v.t) {
    case V_LIST: return v.u.l;
    case V_UNDEF: return list_new(R, 0);
    case V_DICT:
        l = list_new(R, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++)
            list_push(R, l, vstr(R, v.u.d->k[i]->s, v.u.d->k[i]->len));
        return l;
    case V_STR: {
        l = list_new(R, v.u.s->len);
        size_t i = 0;
        while (i < v.u.s->len) {
            size_t st = i;
            u8_next(v.u.s->s, v.u.s->len, &i);
            list_push(R, l, vstr(R, v.u.s->s + st, i - st));
        }
        tick(R, (long)l->n);
        return l;
    }
    default:
        rfail(R, at, "'%s' object is not iterable", tname(v));
    }
}

static size_t vlen(rctx *R, const node *at, jv v)
{
    switch (v.t) {
    case V_STR: {
        size_t i = 0, c = 0;
        tick_chars(R, v.u.s->len);
        while (i < v.u.s->len) {
            u8_next(v.u.s->s, v.u.s->len, &i);
            c++;
        }
        return c;
    }
    case V_LIST: return v.u.l->n;
    case V_DICT: return v.u.d->n;
    case V_UNDEF: return 0;
    default: rfail(R, at, "object of type '%s' has no len()", tname(v));
    }
}

/* ---- JSON (Python's json.dumps as transformers' tojson calls it) */

typedef struct {
    int indent; /* -1: none */
    const char *item_sep, *key_sep;
    int sort_keys, ensure_ascii;
} jsonopt;

static void json_str(rctx *R, sb *b, const char *s, size_t n, int ascii)
{
    sb_puts(R, b, "\"");
    size_t i = 0;
    while (i < n) {
        size_t st = i;
        int32_t c = u8_next(s, n, &i);
        char e[16];
        switch (c) {
        case '"': sb_puts(R, b, "\\\""); break;
        case '\\': sb_puts(R, b, "\\\\"); break;
        case '\n': sb_puts(R, b, "\\n"); break;
        case '\r': sb_puts(R, b, "\\r"); break;
        case '\t': sb_puts(R, b, "\\t"); break;
        case '\b': sb_puts(R, b, "\\b"); break;
        case '\f': sb_puts(R, b, "\\f"); break;
        default:
            if (c < 0x20) {
                snprintf(e, sizeof e, "\\u%04x", (unsigned)c);
                sb_puts(R, b, e);
            } else if (ascii && c >= 0x80) {
                if (c >= 0x10000) {
                    int32_t v = c - 0x10000;
                    snprintf(e, sizeof e, "\\u%04x\\u%04x", (unsigned)(0xd800 + (v >> 10)), (unsigned)(0xdc00 + (v & 0x3ff)));
                } else {
                    snprintf(e, sizeof e, "\\u%04x", (unsigned)c);
                }
                sb_puts(R, b, e);
            } else {
                sb_add(R, b, s + st, i - st);
            }
        }
    }
    sb_puts(R, b, "\"");
}

static void json_nl(rctx *R, sb *b, const jsonopt *o, int level)
{
    if (o->indent < 0)
        return;
    sb_puts(R, b, "\n");
    for (int i = 0; i < o->indent * level; i++)
        sb_puts(R, b, " ");
}

static int keycmp(const void *a, const void *b)
{
    const jstr *x = *(jstr *const *)a, *y = *(jstr *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static void to_json(rctx *R, sb *b, jv v, const jsonopt *o, int level)
{
    char buf[48];
    enter_value(R);
    switch (v.t) {
    case V_NONE: sb_puts(R, b, "null"); break;
    case V_BOOL: sb_puts(R, b, v.u.b ? "true" : "false"); break;
    case V_INT: to_str(R, b, v); break;
    case V_FLOAT:
        if (isnan(v.u.f))
            sb_puts(R, b, "NaN");
        else if (isinf(v.u.f))
            sb_puts(R, b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else
            sb_puts(R, b, icl_py_float_repr(v.u.f, buf));
        break;
    case V_STR: json_str(R, b, v.u.s->s, v.u.s->len, o->ensure_ascii); break;
    case V_LIST:
        if (!v.u.l->n) {
            sb_puts(R, b, "[]");
            break;
        }
        sb_puts(R, b, "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                sb_puts(R, b, o->item_sep);
            json_nl(R, b, o, level + 1);
            to_json(R, b, v.u.l->v[i], o, level + 1);
        }
        json_nl(R, b, o, level);
        sb_puts(R, b, "]");
        break;
    case V_DICT: {
        if (!v.u.d->n) {
            sb_puts(R, b, "{}");
            break;
        }
        size_t n = v.u.d->n;
        jstr **keys = ralloc(R, n * sizeof *keys);
        memcpy(keys, v.u.d->k, n * sizeof *keys);
        if (o->sort_keys)
            qsort(keys, n, sizeof *keys, keycmp);
        sb_puts(R, b, "{");
        for (size_t i = 0; i < n; i++) {
            if (i)
                sb_puts(R, b, o->item_sep);
            json_nl(R, b, o, level + 1);
            json_str(R, b, keys[i]->s, keys[i]->len, o->ensure_ascii);
            sb_puts(R, b, o->key_sep);
            to_json(R, b, *dict_get(R, v.u.d, keys[i]->s, keys[i]->len), o, level + 1);
        }
        json_nl(R, b, o, level);
        sb_puts(R, b, "}");
        break;
    }
    default:
        rfail(R, R->at, "Object of type %s is not JSON serializable", tname(v));
    }
    R->vdepth--;
}

/* ---- case mapping (utf8proc's simple mappings) */

enum { CASE_UPPER, CASE_LOWER, CASE_TITLE_PY, CASE_TITLE_JINJA, CASE_CAPITALIZE };

static int is_cased(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

static jv recase(rctx *R, jv v, int mode)
{
    v = vtostr(R, v);
    tick_chars(R, v.u.s->len);
    sb b = {0};
    sb_grow(R, &b, v.u.s->len);
    const char *s = v.u.s->s;
    size_t n = v.u.s->len, i = 0;
    int prev_cased = 0, first = 1, word_start = 1;
    while (i < n) {
        int32_t c = u8_next(s, n, &i), o = c;
        switch (mode) {
        case CASE_UPPER: o = utf8proc_toupper(c); break;
        case CASE_LOWER: o = utf8proc_tolower(c); break;
        case CASE_TITLE_PY:
            o = prev_cased ? utf8proc_tolower(c) : utf8proc_totitle(c);
            prev_cased = is_cased(c);
            break;
        case CASE_TITLE_JINJA: /* words start after '-', whitespace, '(', '{', '[', '<' */
            if (c == '-' || py_space(c) || c == '(' || c == '{' || c == '[' || c == '<') {
                word_start = 1;
            } else {
                o = word_start ? utf8proc_toupper(c) : utf8proc_tolower(c);
                word_start = 0;
            }
            break;
        case CASE_CAPITALIZE:
            o = first ? utf8proc_totitle(c) : utf8proc_tolower(c);
            break;
        }
        first = 0;
        sb_cp(R, &b, o);
    }
    return vsb(R, &b);
}

/* strip chars (NULL = whitespace) from the left (1), right (2) or both (3) */
static jv strip(rctx *R, jv v, jv *chars, int side)
{
    v = vtostr(R, v);
    const char *s = v.u.s->s;
    size_t n = v.u.s->len, a = 0, e = n;
    const char *cs = NULL;
    size_t cn = 0;
    if (chars && chars->t == V_STR) {
        cs = chars->u.s->s;
        cn = chars->u.s->len;
    }
    size_t work = 0; /* bytes of the set compared */
#define IN_SET(c)                                                                             \
    (work += cn + 1, work >= (1u << 20) ? (tick_chars(R, work), work = 0) : 0,               \
     cs ? ({                                                                                  \
        int _f = 0;                                                                           \
        size_t _j = 0;                                                                        \
        while (_j < cn && !_f)                                                                \
            _f = u8_next(cs, cn, &_j) == (c);                                                 \
        _f;                                                                                   \
    })                                                                                        \
        : py_space(c))
    if (side & 1) {
        while (a < e) {
            size_t j = a;
            int32_t c = u8_next(s, n, &j);
            if (!IN_SET(c))
                break;
            a = j;
        }
    }
    if (side & 2) {
        while (e > a) {
            size_t j = e - 1;
            while (j > a && ((unsigned char)s[j] & 0xc0) == 0x80)
                j--;
            size_t k = j;
            int32_t c = u8_next(s, n, &k);
            if (!IN_SET(c))
                break;
            e = j;
        }
    }
#undef IN_SET
    tick_chars(R, work);
    return vstr(R, s + a, e - a);
}

static jv replace(rctx *R, jv v, jv old, jv new_, int64_t count)
{
    v = vtostr(R, v);
    old = vtostr(R, old);
    new_ = vtostr(R, new_);
    const char *s = v.u.s->s;
    size_t n = v.u.s->len, on = old.u.s->len;
    tick_bytes(R, n);
    sb b = {0};
    if (!on) { /* Python inserts new between every character */
        size_t i = 0;
        int64_t k = 0;
        while (count < 0 || k < count) {
            sb_add(R, &b, new_.u.s->s, new_.u.s->len);
            k++;
            if (i >= n)
                break;
            size_t st = i;
            u8_next(s, n, &i);
            sb_add(R, &b, s + st, i - st);
        }
        sb_add(R, &b, s + i, n - i);
        return vsb(R, &b);
    }
    size_t i = 0;
    int64_t k = 0;
    while (i <= n) {
        const char *f = (count >= 0 && k >= count) ? NULL : memmem(s + i, n - i, old.u.s->s, on);
        if (!f) {
            sb_add(R, &b, s + i, n - i);
            break;
        }
        sb_add(R, &b, s + i, (size_t)(f - (s + i)));
        sb_add(R, &b, new_.u.s->s, new_.u.s->len);
        i = (size_t)(f - s) + on;
        k++;
    }
    return vsb(R, &b);
}

static jv split(rctx *R, jv v, jv *sep, int64_t maxsplit)
{
    v = vtostr(R, v);
    const char *s = v.u.s->s;
    size_t n = v.u.s->len;
    tick_bytes(R, n);
    jlist *l = list_new(R, 4);
    if (!sep || sep->t == V_NONE) {
        tick_chars(R, n);
        size_t i = 0;
        int64_t k = 0;
        for (;;) {
            /* skip whitespace */
            while (i < n) {
                size_t j = i;
                if (!py_space(u8_next(s, n, &j)))
                    break;
                i = j;
            }
            if (i >= n)
                break;
            if (maxsplit >= 0 && k >= maxsplit) {
                size_t e = n;
                while (e > i) { /* Python strips trailing whitespace of the rest */
                    size_t j = e - 1;
                    while (j > i && ((unsigned char)s[j] & 0xc0) == 0x80)
                        j--;
                    size_t q = j;
                    if (!py_space(u8_next(s, n, &q)))
                        break;
                    e = j;
                }
                list_push(R, l, vstr(R, s + i, e - i));
                break;
            }
            size_t st = i;
            while (i < n) {
                size_t j = i;
                if (py_space(u8_next(s, n, &j)))
                    break;
                i = j;
            }
            list_push(R, l, vstr(R, s + st, i - st));
            k++;
            tick(R, 1);
        }
        return vlist(l);
    }
    jv sp = vtostr(R, *sep);
    if (!sp.u.s->len)
        rfail(R, R->at, "empty separator");
    size_t i = 0;
    int64_t k = 0;
    for (;;) {
        const char *f = (maxsplit >= 0 && k >= maxsplit) ? NULL : memmem(s + i, n - i, sp.u.s->s, sp.u.s->len);
        if (!f) {
            list_push(R, l, vstr(R, s + i, n - i));
            break;
        }
        list_push(R, l, vstr(R, s + i, (size_t)(f - (s + i))));
        i = (size_t)(f - s) + sp.u.s->len;
        k++;
        tick(R, 1);
    }
    return vlist(l);
}

/* Whether a float's integer part is an int64_t (the cast is then defined). */
static int float_fits_i64(double x) { return x >= -9223372036854775808.0 && x < 9223372036854775808.0; }

/* One %d/%i/%x/%X/%o conversion as Python's printf-style formatting does it:
 * the sign, then '0x'/'0X'/'0o' with '#', the digits of the magnitude
 * (zero-padded to the precision), padded to the width with spaces (left, or
 * right with '-') or zeros after the sign with '0'.  flags is spec's
 * "-+ #0" part; digits the magnitude in the conversion's base. */
static void format_int(rctx *R, sb *b, const char *flags, long width, long prec, int neg, char conv, const char *digits)
{
    char pre[4] = "";
    size_t pn = 0;
    if (neg)
        pre[pn++] = '-';
    else if (strchr(flags, '+'))
        pre[pn++] = '+';
    else if (strchr(flags, ' '))
        pre[pn++] = ' ';
    if (strchr(flags, '#') && (conv == 'x' || conv == 'X' || conv == 'o')) {
        pre[pn++] = '0';
        pre[pn++] = conv == 'o' ? 'o' : conv;
    }
    pre[pn] = 0;
    size_t dn = strlen(digits);
    size_t zeros = prec > 0 && (size_t)prec > dn ? (size_t)prec - dn : 0;
    size_t len = pn + zeros + dn, pad = width > 0 && (size_t)width > len ? (size_t)width - len : 0;
    int left = strchr(flags, '-') != NULL, zpad = !left && strchr(flags, '0') != NULL;
    if (!left && !zpad)
        for (size_t i = 0; i < pad; i++)
            sb_puts(R, b, " ");
    sb_puts(R, b, pre);
    if (zpad)
        zeros += pad;
    for (size_t i = 0; i < zeros; i++)
        sb_puts(R, b, "0");
    sb_puts(R, b, digits);
    if (left)
        for (size_t i = 0; i < pad; i++)
            sb_puts(R, b, " ");
}

/* Python's printf-style formatting: fmt % args */
static jv pyformat(rctx *R, const node *at, jv fmt, jv args)
{
    fmt = vtostr(R, fmt);
    jlist single = {0};
    jv one[1];
    jlist *a;
    if (args.t == V_LIST && args.u.l->tuple) {
        a = args.u.l;
    } else {
        one[0] = args;
        single.v = one;
        single.n = 1;
        a = &single;
    }
    size_t ai = 0;
    const char *s = fmt.u.s->s;
    size_t n = fmt.u.s->len;
    sb b = {0};
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            sb_add(R, &b, s + i, 1);
            continue;
        }
        if (++i >= n)
            rfail(R, at, "incomplete format");
        if (s[i] == '%') {
            sb_puts(R, &b, "%");
            continue;
        }
        char spec[32];
        size_t k = 0;
        spec[k++] = '%';
        while (i < n && strchr("-+ #0", s[i]) && k < 8)
            spec[k++] = s[i++];
        while (i < n && isdigit((unsigned char)s[i]) && k < 16)
            spec[k++] = s[i++];
        if (i < n && s[i] == '.') {
            spec[k++] = s[i++];
            while (i < n && isdigit((unsigned char)s[i]) && k < 24)
                spec[k++] = s[i++];
        }
        if (i >= n)
            rfail(R, at, "incomplete format");
        spec[k] = 0;
        for (size_t q = 1; q < k; q++)
            if (isdigit((unsigned char)spec[q]) && atoi(spec + q) > 10000)
                rfail(R, at, "format width or precision too large (limit 10000)");
        char conv = s[i];
        if (ai >= a->n)
            rfail(R, at, "not enough arguments for format string");
        jv x = a->v[ai++];
        char out[512];
        if (conv == 's' || conv == 'r') {
            sb t = {0};
            if (conv == 's')
                to_str(R, &t, x);
            else
                repr(R, &t, x);
            spec[k++] = 's';
            spec[k] = 0;
            /* width/precision count code points in Python; ASCII common case */
            char *o = ralloc(R, t.n + 600);
            snprintf(o, t.n + 600, spec, t.p ? t.p : "");
            sb_puts(R, &b, o);
        } else if (strchr("dixXoc", conv)) {
            if (!isnum(x))
                rfail(R, at, "%%%c format: a real number is required, not %s", conv, tname(x));
            if (conv == 'c') {
                if (x.t == V_FLOAT)
                    rfail(R, at, "%%c requires int or char");
                int64_t c = numi(x);
                if (c < 0 || c > 0x10ffff)
                    rfail(R, at, "%%c arg not in range(0x110000)");
                if (c >= 0xd800 && c <= 0xdfff)
                    rfail(R, at, "%%c arg is a surrogate code point");
                sb_cp(R, &b, (int32_t)c);
                continue;
            }
            /* spec: '%', flags, width, '.', precision */
            size_t q = 1;
            char flags[16];
            while (q < k && strchr("-+ #0", spec[q]) && q < sizeof flags) {
                flags[q - 1] = spec[q];
                q++;
            }
            flags[q - 1] = 0;
            long width = strtol(spec + q, NULL, 10), prec = -1;
            const char *dot = strchr(spec + q, '.');
            if (dot)
                prec = strtol(dot + 1, NULL, 10);
            int neg;
            char digits[400];
            if (x.t == V_FLOAT && !float_fits_i64(x.u.f)) {
                /* Python formats the float's exact integer value */
                if (isnan(x.u.f))
                    rfail(R, at, "cannot convert float NaN to integer");
                if (isinf(x.u.f))
                    rfail(R, at, "cannot convert float infinity to integer");
                if (conv != 'd' && conv != 'i')
                    rfail(R, at, "%%%c format: %s is out of the 64-bit integer range", conv, icl_py_float_repr(x.u.f, out));
                neg = x.u.f < 0;
                snprintf(digits, sizeof digits, "%.0f", fabs(x.u.f)); /* an integer: printed exactly */
            } else {
                int64_t iv = x.t == V_FLOAT ? (int64_t)x.u.f : numi(x);
                neg = iv < 0;
                uint64_t mag = neg ? 0 - (uint64_t)iv : (uint64_t)iv;
                snprintf(digits, sizeof digits, conv == 'x' ? "%" PRIx64 : conv == 'X' ? "%" PRIX64 : conv == 'o' ? "%" PRIo64 : "%" PRIu64, mag);
            }
            format_int(R, &b, flags, width, prec, neg, conv, digits);
        } else if (strchr("eEfFgG", conv)) {
            if (!isnum(x))
                rfail(R, at, "must be real number, not %s", tname(x));
            spec[k++] = conv;
            spec[k] = 0;
            snprintf(out, sizeof out, spec, numf(x));
            sb_puts(R, &b, out);
        } else {
            rfail(R, at, "unsupported format character '%c'", conv);
        }
    }
    if (ai < a->n && a != &single)
        rfail(R, at, "not all arguments converted during string formatting");
    return vsb(R, &b);
}

/* str.format with {} {0} {name} (no format specs) */
static jv strformat(rctx *R, const node *at, jv fmt, jv *args, const char **kw, int n)
{
    const char *s = fmt.u.s->s;
    size_t len = fmt.u.s->len;
    sb b = {0};
    int auto_i = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '{' && i + 1 < len && s[i + 1] == '{') {
            sb_puts(R, &b, "{");
            i++;
            continue;
        }
        if (s[i] == '}' && i + 1 < len && s[i + 1] == '}') {
            sb_puts(R, &b, "}");
            i++;
            continue;
        }
        if (s[i] != '{') {
            sb_add(R, &b, s + i, 1);
            continue;
        }
        size_t e = i + 1;
        while (e < len && s[e] != '}')
            e++;
        if (e >= len)
            rfail(R, at, "Single '{' encountered in format string");
        const char *f = s + i + 1;
        size_t fn = e - i - 1;
        if (memchr(f, ':', fn) || memchr(f, '!', fn))
            rfail(R, at, "unsupported: format specs in str.format");
        jv *v = NULL;
        if (!fn) {
            int pos = 0;
            for (int k = 0; k < n; k++)
                if (!kw[k] && pos++ == auto_i)
                    v = &args[k];
            auto_i++;
        } else if (isdigit((unsigned char)f[0])) {
            int want = atoi(f), pos = 0;
            for (int k = 0; k < n; k++)
                if (!kw[k] && pos++ == want)
                    v = &args[k];
        } else {
            for (int k = 0; k < n; k++)
                if (kw[k] && strlen(kw[k]) == fn && !memcmp(kw[k], f, fn))
                    v = &args[k];
        }
        if (!v)
            rfail(R, at, "str.format: no argument for '{%.*s}'", (int)fn, f);
        to_str(R, &b, *v);
        i = e;
    }
    return vsb(R, &b);
}

/* ---- evaluation */

enum {
    F_RANGE = 1, F_NAMESPACE, F_RAISE, F_STRFTIME, F_DICT, F_CYCLE,
    /* str methods */
    M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_RSPLIT, M_STARTSWITH, M_ENDSWITH, M_REPLACE, M_UPPER, M_LOWER,
    M_TITLE, M_CAPITALIZE, M_FIND, M_RFIND, M_COUNT, M_FORMAT, M_JOIN, M_ISSPACE, M_ISALPHA, M_ISDIGIT,
    M_ISALNUM, M_ISUPPER, M_ISLOWER, M_SPLITLINES, M_REMOVEPREFIX, M_REMOVESUFFIX, M_INDEX,
    /* dict methods */
    M_ITEMS, M_GET, M_KEYS, M_VALUES,
    /* list methods */
    M_LCOUNT, M_LINDEX,
};

static const struct {
    const char *name;
    int id;
} STR_METHODS[] = {
    {"strip", M_STRIP}, {"lstrip", M_LSTRIP}, {"rstrip", M_RSTRIP}, {"split", M_SPLIT}, {"rsplit", M_RSPLIT},
    {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH}, {"replace", M_REPLACE}, {"upper", M_UPPER},
    {"lower", M_LOWER}, {"title", M_TITLE}, {"capitalize", M_CAPITALIZE}, {"find", M_FIND}, {"rfind", M_RFIND},
    {"count", M_COUNT}, {"format", M_FORMAT}, {"join", M_JOIN}, {"isspace", M_ISSPACE}, {"isalpha", M_ISALPHA},
    {"isdigit", M_ISDIGIT}, {"isalnum", M_ISALNUM}, {"isupper", M_ISUPPER}, {"islower", M_ISLOWER},
    {"splitlines", M_SPLITLINES}, {"removeprefix", M_REMOVEPREFIX}, {"removesuffix", M_REMOVESUFFIX},
    {"index", M_INDEX}, {NULL, 0}};

static jv eval(rctx *R, const node *x);
static void exec_body(rctx *R, node **body, int n, frame *f);


static jv lookup(rctx *R, frame *f, const char *name)
{
    size_t n = strlen(name);
    for (; f; f = f->up) {
        jv *v = dict_get(R, f->vars, name, n);
        if (v)
            return *v;
    }
    jv *v = dict_get(R, R->vars, name, n);
    if (v)
        return *v;
    static const struct {
        const char *name;
        int id;
    } G[] = {{"range", F_RANGE}, {"namespace", F_NAMESPACE}, {"raise_exception", F_RAISE},
             {"strftime_now", F_STRFTIME}, {"dict", F_DICT}, {NULL, 0}};
    for (int k = 0; G[k].name; k++)
        if (!strcmp(name, G[k].name))
            return vfunc(R, G[k].id, NONE, G[k].name);
    return vundef(NULL, name);
}

static const char *obj_desc(jv v)
{
    switch (v.t) {
    case V_DICT: return "dict object";
    case V_LIST: return v.u.l->tuple ? "tuple object" : "list object";
    case V_STR: return "str object";
    case V_INT: return "int object";
    case V_FLOAT: return "float object";
    case V_BOOL: return "bool object";
    case V_NONE: return "None";
    case V_NS: return "jinja2.utils.Namespace object";
    default: return "object";
    }
}

/* jinja2's getattr: attribute (methods) first, then item */
static jv get_attr(rctx *R, const node *at, jv o, const char *name)
{
    switch (o.t) {
    case V_UNDEF: undef_fail(R, at, o);
    case V_DICT: {
        static const struct {
            const char *n;
            int id;
        } DM[] = {{"items", M_ITEMS}, {"get", M_GET}, {"keys", M_KEYS}, {"values", M_VALUES}, {NULL, 0}};
        for (int k = 0; DM[k].n; k++)
            if (!strcmp(name, DM[k].n))
                return vfunc(R, DM[k].id, o, DM[k].n);
        static const char *const MUT[] = {"update", "pop", "popitem", "setdefault", "clear", NULL};
        for (int k = 0; MUT[k]; k++)
            if (!strcmp(name, MUT[k]))
                rfail(R, at, "access to attribute '%s' of 'dict' object is unsafe.", name);
        jv *v = dict_get(R, o.u.d, name, strlen(name));
        return v ? *v : vundef("dict object", name);
    }
    case V_NS: {
        jv *v = dict_get(R, o.u.d, name, strlen(name));
        return v ? *v : vundef(obj_desc(o), name);
    }
    case V_STR:
        for (int k = 0; STR_METHODS[k].name; k++)
            if (!strcmp(name, STR_METHODS[k].name))
                return vfunc(R, STR_METHODS[k].id, o, STR_METHODS[k].name);
        break;
    case V_LIST:
        if (!strcmp(name, "count"))
            return vfunc(R, M_LCOUNT, o, "count");
        if (!strcmp(name, "index"))
            return vfunc(R, M_LINDEX, o, "index");
        /* transformers renders in jinja2's ImmutableSandboxedEnvironment */
        if (!strcmp(name, "append") || !strcmp(name, "pop") || !strcmp(name, "insert") ||
            !strcmp(name, "extend") || !strcmp(name, "remove") || !strcmp(name, "clear") ||
            !strcmp(name, "sort") || !strcmp(name, "reverse"))
            rfail(R, at, "access to attribute '%s' of '%s' object is unsafe.", name, tname(o));
        break;
    case V_LOOP: {
        loopst *l = o.u.lp;
        size_t n = l->items->n, i = l->i;
        if (!strcmp(name, "index"))
            return vint((int64_t)i + 1);
        if (!strcmp(name, "index0"))
            return vint((int64_t)i);
        if (!strcmp(name, "revindex"))
            return vint((int64_t)(n - i));
        if (!strcmp(name, "revindex0"))
            return vint((int64_t)(n - i - 1));
        if (!strcmp(name, "first"))
            return vbool(i == 0);
        if (!strcmp(name, "last"))
            return vbool(i + 1 == n);
        if (!strcmp(name, "length"))
            return vint((int64_t)n);
        if (!strcmp(name, "depth"))
            return vint(1);
        if (!strcmp(name, "depth0"))
            return vint(0);
        if (!strcmp(name, "previtem"))
            return i > 0 ? l->items->v[i - 1] : vundef(NULL, "previtem");
        if (!strcmp(name, "nextitem"))
            return i + 1 < n ? l->items->v[i + 1] : vundef(NULL, "nextitem");
        if (!strcmp(name, "cycle"))
            return vfunc(R, F_CYCLE, o, "cycle");
        return vundef("LoopContext object", name);
    }
    default: break;
    }
    return vundef(obj_desc(o), name);
}

static int64_t to_index(rctx *R, const node *at, jv i)
{
    if (i.t == V_INT || i.t == V_BOOL)
        return numi(i);
    rfail(R, at, "indices must be integers, not %s", tname(i));
}

/* jinja2's getitem: item first, then attribute */
static jv get_item(rctx *R, const node *at, jv o, jv k)
{
    switch (o.t) {
    case V_UNDEF: undef_fail(R, at, o);
    case V_DICT:
    case V_NS:
        if (k.t == V_STR) {
            jv *v = dict_get(R, o.u.d, k.u.s->s, k.u.s->len);
            if (v)
                return *v;
            if (o.t == V_DICT)
                return get_attr(R, at, o, k.u.s->s);
            return vundef(obj_desc(o), k.u.s->s);
        }
        return vundef(obj_desc(o), "?");
    case V_LIST:
        if (k.t == V_INT || k.t == V_BOOL) {
            int64_t i = numi(k), n = (int64_t)o.u.l->n;
            if (i < 0)
                i += n;
            if (i < 0 || i >= n)
                return vundef(obj_desc(o), "(index out of range)");
            return o.u.l->v[i];
        }
        if (k.t == V_STR)
            return get_attr(R, at, o, k.u.s->s);
        return vundef(obj_desc(o), "?");
    case V_STR:
        if (k.t == V_INT || k.t == V_BOOL) {
            int64_t i = numi(k), n = (int64_t)vlen(R, at, o);
            if (i < 0)
                i += n;
            if (i < 0 || i >= n)
                return vundef(obj_desc(o), "(index out of range)");
            size_t p = 0;
            for (int64_t c = 0; c < i; c++)
                u8_next(o.u.s->s, o.u.s->len, &p);
            size_t st = p;
            u8_next(o.u.s->s, o.u.s->len, &p);
            return vstr(R, o.u.s->s + st, p - st);
        }
        if (k.t == V_STR)
            return get_attr(R, at, o, k.u.s->s);
        return vundef(obj_desc(o), "?");
    case V_LOOP:
        if (k.t == V_STR)
            return get_attr(R, at, o, k.u.s->s);
        return vundef(obj_desc(o), "?");
    default:
        return vundef(obj_desc(o), "?");
    }
}

/* Python's slice.indices */
static void slice_idx(int64_t n, jv *a, jv *b, jv *c, int64_t *start, int64_t *stop, int64_t *step, rctx *R, const node *at)
{
    int64_t st = (c && c->t != V_NONE && c->t != V_UNDEF) ? to_index(R, at, *c) : 1;
    if (st == 0)
        rfail(R, at, "slice step cannot be zero");
    int64_t lo, hi;
    if (st > 0) {
        lo = 0;
        hi = n;
    } else {
        lo = -1;
        hi = n - 1;
    }
    int64_t s0 = st > 0 ? lo : hi, s1 = st > 0 ? hi : lo;
    if (a && a->t != V_NONE && a->t != V_UNDEF) {
        s0 = to_index(R, at, *a);
        if (s0 < 0) {
            s0 += n;
            if (s0 < lo)
                s0 = lo;
        } else if (s0 > hi) {
            s0 = hi;
        }
    }
    if (b && b->t != V_NONE && b->t != V_UNDEF) {
        s1 = to_index(R, at, *b);
        if (s1 < 0) {
            s1 += n;
            if (s1 < lo)
                s1 = lo;
        } else if (s1 > hi) {
            s1 = hi;
        }
    }
    *start = s0;
    *stop = s1;
    *step = st;
}

/* The number of elements of a slice from slice_idx (start and stop lie in
 * [-1, n]): Python's slice length, without overflow for any step. */
static uint64_t slice_len(int64_t s0, int64_t s1, int64_t st)
{
    if (st > 0)
        return s1 > s0 ? ((uint64_t)(s1 - s0) - 1) / (uint64_t)st + 1 : 0;
    return s0 > s1 ? ((uint64_t)(s0 - s1) - 1) / (0 - (uint64_t)st) + 1 : 0;
}

static jv do_slice(rctx *R, const node *at, jv o, jv *a, jv *b, jv *c)
{
    if (o.t == V_UNDEF)
        undef_fail(R, at, o);
    if (o.t == V_LIST) {
        int64_t s0, s1, st;
        slice_idx((int64_t)o.u.l->n, a, b, c, &s0, &s1, &st, R, at);
        uint64_t cnt = slice_len(s0, s1, st);
        tick(R, (long)cnt); /* cnt <= n */
        jlist *l = list_new(R, (size_t)cnt);
        l->tuple = o.u.l->tuple;
        for (uint64_t k = 0; k < cnt; k++)
            list_push(R, l, o.u.l->v[(uint64_t)s0 + k * (uint64_t)st]); /* in [0, n): modulo 2^64 */
        return vlist(l);
    }
    if (o.t == V_STR) {
        /* code point offsets */
        size_t n = o.u.s->len;
        tick_chars(R, n);
        size_t *off = ralloc(R, (n + 1) * sizeof *off);
        size_t cnt = 0, p = 0;
        while (p < n) {
            off[cnt++] = p;
            u8_next(o.u.s->s, n, &p);
        }
        off[cnt] = n;
        int64_t s0, s1, st;
        slice_idx((int64_t)cnt, a, b, c, &s0, &s1, &st, R, at);
        if (st == 1)
            return s1 > s0 ? vstr(R, o.u.s->s + off[s0], off[s1] - off[s0]) : vstr(R, "", 0);
        uint64_t m = slice_len(s0, s1, st);
        sb bb = {0};
        for (uint64_t k = 0; k < m; k++) {
            size_t i = (size_t)((uint64_t)s0 + k * (uint64_t)st); /* in [0, cnt) */
            sb_add(R, &bb, o.u.s->s + off[i], off[i + 1] - off[i]);
        }
        return vsb(R, &bb);
    }
    rfail(R, at, "'%s' object is not subscriptable", tname(o));
}

static jv arith(rctx *R, const node *at, int op, jv a, jv b)
{
    static const char *opname[] = {"", "+", "-", "*", "/", "//", "%", "**"};
    if (a.t == V_UNDEF)
        undef_fail(R, at, a);
    if (b.t == V_UNDEF)
        undef_fail(R, at, b);
    if (isnum(a) && isnum(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT && op != OP_DIV) {
            int64_t x = numi(a), y = numi(b), r;
            switch (op) {
            case OP_ADD:
                if (__builtin_add_overflow(x, y, &r))
                    goto ovf;
                return vint(r);
            case OP_SUB:
                if (__builtin_sub_overflow(x, y, &r))
                    goto ovf;
                return vint(r);
            case OP_MUL:
                if (__builtin_mul_overflow(x, y, &r))
                    goto ovf;
                return vint(r);
            case OP_FDIV:
            case OP_MOD:
                if (y == 0)
                    rfail(R, at, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1)
                    goto ovf;
                {
                    int64_t q = x / y, m = x % y;
                    if (m && ((m < 0) != (y < 0))) {
                        q--;
                        m += y;
                    }
                    return vint(op == OP_FDIV ? q : m);
                }
            case OP_POW:
                if (y < 0)
                    return vfloat(pow((double)x, (double)y));
                r = 1;
                while (y--) {
                    if (__builtin_mul_overflow(r, x, &r))
                        goto ovf;
                    if (x == 0 || x == 1)
                        break;
                }
                return vint(x == 0 && numi(b) > 0 ? 0 : r);
            }
        }
        double x = numf(a), y = numf(b);
        switch (op) {
        case OP_ADD: return vfloat(x + y);
        case OP_SUB: return vfloat(x - y);
        case OP_MUL: return vfloat(x * y);
        case OP_DIV:
            if (y == 0)
                rfail(R, at, "division by zero");
            return vfloat(x / y);
        case OP_FDIV:
        case OP_MOD: {
            if (y == 0)
                rfail(R, at, "float divmod()");
            double m = fmod(x, y);
            if (m && ((m < 0) != (y < 0)))
                m += y;
            double q = (x - m) / y;
            return vfloat(op == OP_FDIV ? floor(q + 0.5 * 0) : m);
        }
        case OP_POW: return vfloat(pow(x, y));
        }
    }
    if (op == OP_ADD && a.t == V_STR && b.t == V_STR) {
        sb s = {0};
        sb_grow(R, &s, a.u.s->len + b.u.s->len);
        sb_add(R, &s, a.u.s->s, a.u.s->len);
        sb_add(R, &s, b.u.s->s, b.u.s->len);
        return vsb(R, &s);
    }
    if (op == OP_ADD && a.t == V_LIST && b.t == V_LIST && a.u.l->tuple == b.u.l->tuple) {
        jlist *l = list_new(R, a.u.l->n + b.u.l->n);
        l->tuple = a.u.l->tuple;
        for (size_t i = 0; i < a.u.l->n; i++)
            list_push(R, l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++)
            list_push(R, l, b.u.l->v[i]);
        tick(R, (long)l->n);
        return vlist(l);
    }
    if (op == OP_MUL && ((a.t == V_STR || a.t == V_LIST) && (b.t == V_INT || b.t == V_BOOL))) {
        int64_t k = numi(b);
        if (k <= 0 || (a.t == V_STR ? a.u.s->len == 0 : a.u.l->n == 0)) { /* nothing to repeat */
            if (a.t == V_STR)
                return vstr(R, "", 0);
            jlist *l = list_new(R, 0);
            l->tuple = a.u.l->tuple;
            return vlist(l);
        }
        if (a.t == V_STR) {
            sb s = {0};
            if (k > 0 && a.u.s->len && (uint64_t)k > (uint64_t)R->lim.max_memory / a.u.s->len)
                rfail(R, at, "string repetition too large (memory limit)");
            for (int64_t i = 0; i < k; i++)
                sb_add(R, &s, a.u.s->s, a.u.s->len);
            return vsb(R, &s);
        }
        jlist *l = list_new(R, 0);
        l->tuple = a.u.l->tuple;
        if (k > 0 && a.u.l->n)
            tick(R, (long)((uint64_t)k > (uint64_t)R->lim.max_steps ? R->lim.max_steps + 1 : k * (int64_t)a.u.l->n));
        for (int64_t i = 0; i < k; i++)
            for (size_t j = 0; j < a.u.l->n; j++)
                list_push(R, l, a.u.l->v[j]);
        return vlist(l);
    }
    if (op == OP_MUL && (b.t == V_STR || b.t == V_LIST) && (a.t == V_INT || a.t == V_BOOL))
        return arith(R, at, op, b, a);
    if (op == OP_MOD && a.t == V_STR)
        return pyformat(R, at, a, b);
    rfail(R, at, "unsupported operand type(s) for %s: '%s' and '%s'", opname[op], tname(a), tname(b));
ovf:
    rfail(R, at, "integer overflow (icl computes with 64-bit integers)");
}

/* ---- calls */

typedef struct {
    jv *v;
    const char **kw;
    int n;
} args_t;

static args_t eval_args(rctx *R, const node *x)
{
    args_t a = {0};
    a.n = x->nkids;
    if (a.n) {
        a.v = ralloc(R, (size_t)a.n * sizeof(jv));
        a.kw = x->kw;
        for (int i = 0; i < a.n; i++)
            a.v[i] = eval(R, x->kids[i]);
    }
    return a;
}

/* positional argument i or keyword name; NULL when absent */
static jv *arg(args_t *a, int i, const char *name)
{
    int pos = 0;
    for (int k = 0; k < a->n; k++) {
        if (!a->kw || !a->kw[k]) {
            if (pos++ == i)
                return &a->v[k];
        } else if (name && !strcmp(a->kw[k], name)) {
            return &a->v[k];
        }
    }
    return NULL;
}

static int npos(args_t *a)
{
    int c = 0;
    for (int k = 0; k < a->n; k++)
        if (!a->kw || !a->kw[k])
            c++;
    return c;
}

static jv call_macro(rctx *R, const node *at, macro *m, args_t *a)
{
    const node *d = m->def;
    if (++R->depth > R->lim.max_depth)
        rfail(R, at, "macro calls nested more than %d deep (limit): endless recursion?", R->lim.max_depth);
    tick(R, 1);
    if (npos(a) > d->nnames)
        rfail(R, at, "macro '%s' takes not more than %d argument(s)", d->name, d->nnames);
    for (int k = 0; k < a->n; k++) {
        if (a->kw && a->kw[k]) {
            int ok = 0;
            for (int j = 0; j < d->nnames; j++)
                ok |= !strcmp(d->names[j], a->kw[k]);
            if (!ok)
                rfail(R, at, "macro '%s' has no argument '%s'", d->name, a->kw[k]);
        }
    }
    frame *f = ralloc(R, sizeof *f);
    f->up = m->closure;
    f->vars = dict_new(R);
    for (int j = 0; j < d->nnames; j++) {
        jv *v = arg(a, j, d->names[j]);
        jv val;
        if (v)
            val = *v;
        else if (d->alt[j]) {
            frame *saved = R->f; /* defaults see the arguments before them */
            R->f = f;
            val = eval(R, d->alt[j]);
            R->f = saved;
        } else
            val = vundef(NULL, d->names[j]);
        dict_set(R, f->vars, d->names[j], strlen(d->names[j]), val);
    }
    sb *saved_out = R->out;
    sb buf = {0};
    R->out = &buf;
    const char *saved_brk_guard = R->macro_name;
    R->macro_name = d->name;
    exec_body(R, d->kids, d->nkids, f);
    R->macro_name = saved_brk_guard;
    R->out = saved_out;
    R->depth--;
    return vsb(R, &buf);
}

static jv call_func(rctx *R, const node *at, func *fn, args_t *a)
{
    jv self = fn->self;
    jv *a0 = arg(a, 0, NULL), *a1 = arg(a, 1, NULL);
    switch (fn->id) {
    case F_RANGE: {
        int np = npos(a);
        if (np < 1 || np > 3)
            rfail(R, at, "range expected 1 to 3 arguments, got %d", np);
        int64_t st = 0, en, step = 1;
        if (np == 1)
            en = to_index(R, at, *a0);
        else {
            st = to_index(R, at, *a0);
            en = to_index(R, at, *a1);
            if (np == 3)
                step = to_index(R, at, *arg(a, 2, NULL));
        }
        if (step == 0)
            rfail(R, at, "range() arg 3 must not be zero");
        /* Python's len(range): ceil((en - st) / step) when positive, in
         * unsigned arithmetic (the distance and |step| fit in 64 bits) */
        uint64_t dist = 0, ustep = step > 0 ? (uint64_t)step : 0 - (uint64_t)step, cnt = 0;
        if (step > 0 && en > st)
            dist = (uint64_t)en - (uint64_t)st;
        else if (step < 0 && st > en)
            dist = (uint64_t)st - (uint64_t)en;
        if (dist)
            cnt = (dist - 1) / ustep + 1;
        if (cnt > (uint64_t)(R->lim.max_steps - R->steps))
            rfail(R, at, "range() of %" PRIu64 " elements: more than the %ld steps (limit) a render may take", cnt,
                  R->lim.max_steps);
        tick(R, (long)cnt);
        jlist *l = list_new(R, (size_t)cnt);
        /* st + i * step lies between st and en: computed modulo 2^64 */
        for (uint64_t i = 0; i < cnt; i++)
            list_push(R, l, vint((int64_t)((uint64_t)st + i * (uint64_t)step)));
        return vlist(l);
    }
    case F_NAMESPACE:
    case F_DICT: {
        jdict *d = dict_new(R);
        for (int k = 0; k < a->n; k++) {
            if (a->kw && a->kw[k]) {
                dict_set(R, d, a->kw[k], strlen(a->kw[k]), a->v[k]);
            } else if (a->v[k].t == V_DICT || a->v[k].t == V_NS) {
                jdict *s = a->v[k].u.d;
                for (size_t i = 0; i < s->n; i++)
                    dict_set(R, d, s->k[i]->s, s->k[i]->len, s->v[i]);
            } else {
                rfail(R, at, "%s() takes keyword arguments or a mapping", fn->name);
            }
        }
        return vdict(d, fn->id == F_NAMESPACE ? V_NS : V_DICT);
    }
    case F_RAISE: {
        sb m = {0};
        if (a0)
            to_str(R, &m, *a0);
        rfail(R, at, "%s", m.p ? m.p : "");
    }
    case F_STRFTIME: {
        if (!a0 || a0->t != V_STR)
            rfail(R, at, "strftime_now() takes a format string");
        time_t now = R->lim.now ? R->lim.now : time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        char out[256];
        size_t k = strftime(out, sizeof out, a0->u.s->s, &tmv);
        return vstr(R, out, k);
    }
    case F_CYCLE: {
        if (!a->n)
            rfail(R, at, "no items for cycling given");
        return a->v[self.u.lp->i % (size_t)a->n];
    }
    case M_ITEMS: {
        jdict *d = self.u.d;
        jlist *l = list_new(R, d->n);
        for (size_t i = 0; i < d->n; i++) {
            jlist *p = list_new(R, 2);
            p->tuple = 1;
            list_push(R, p, vstr(R, d->k[i]->s, d->k[i]->len));
            list_push(R, p, d->v[i]);
            list_push(R, l, vlist(p));
        }
        tick(R, (long)d->n);
        return vlist(l);
    }
    case M_KEYS: return vlist(iter_items(R, at, self));
    case M_VALUES: {
        jlist *l = list_new(R, self.u.d->n);
        for (size_t i = 0; i < self.u.d->n; i++)
            list_push(R, l, self.u.d->v[i]);
        return vlist(l);
    }
    case M_GET: {
        if (!a0)
            rfail(R, at, "get expected at least 1 argument, got 0");
        jv *v = a0->t == V_STR ? dict_get(R, self.u.d, a0->u.s->s, a0->u.s->len) : NULL;
        if (v)
            return *v;
        return a1 ? *a1 : NONE;
    }
    case M_LCOUNT: {
        int64_t c = 0;
        tick(R, (long)self.u.l->n);
        for (size_t i = 0; a0 && i < self.u.l->n; i++)
            c += eq(R, self.u.l->v[i], *a0);
        return vint(c);
    }
    case M_LINDEX:
        tick(R, (long)self.u.l->n);
        for (size_t i = 0; a0 && i < self.u.l->n; i++)
            if (eq(R, self.u.l->v[i], *a0))
                return vint((int64_t)i);
        rfail(R, at, "value is not in list");
    default: break;
    }
    /* string methods */
    const char *s = self.u.s->s;
    size_t n = self.u.s->len;
    switch (fn->id) {
    case M_STRIP: return strip(R, self, a0 && a0->t != V_NONE ? a0 : NULL, 3);
    case M_LSTRIP: return strip(R, self, a0 && a0->t != V_NONE ? a0 : NULL, 1);
    case M_RSTRIP: return strip(R, self, a0 && a0->t != V_NONE ? a0 : NULL, 2);
    case M_SPLIT: {
        jv *ms = arg(a, 1, "maxsplit");
        return split(R, self, arg(a, 0, "sep"), ms ? to_index(R, at, *ms) : -1);
    }
    case M_RSPLIT: {
        jv *ms = arg(a, 1, "maxsplit");
        if (ms && to_index(R, at, *ms) >= 0)
            rfail(R, at, "unsupported: rsplit with maxsplit");
        return split(R, self, arg(a, 0, "sep"), -1);
    }
    case M_STARTSWITH:
    case M_ENDSWITH: {
        if (!a0)
            rfail(R, at, "%s takes at least 1 argument", fn->name);
        jlist one = {0};
        jlist *cands = &one;
        if (a0->t == V_LIST && a0->u.l->tuple)
            cands = a0->u.l;
        else {
            one.v = a0;
            one.n = 1;
        }
        for (size_t i = 0; i < cands->n; i++) {
            jv p = cands->v[i];
            if (p.t != V_STR)
                rfail(R, at, "%s first arg must be str or a tuple of str, not %s", fn->name, tname(p));
            size_t pn = p.u.s->len;
            tick_bytes(R, pn);
            if (pn <= n && !memcmp(fn->id == M_STARTSWITH ? s : s + n - pn, p.u.s->s, pn))
                return vbool(1);
        }
        return vbool(0);
    }
    case M_REPLACE:
        if (!a0 || !a1)
            rfail(R, at, "replace expected at least 2 arguments");
        {
            jv *c = arg(a, 2, "count");
            return replace(R, self, *a0, *a1, c ? to_index(R, at, *c) : -1);
        }
    case M_UPPER: return recase(R, self, CASE_UPPER);
    case M_LOWER: return recase(R, self, CASE_LOWER);
    case M_TITLE: return recase(R, self, CASE_TITLE_PY);
    case M_CAPITALIZE: return recase(R, self, CASE_CAPITALIZE);
    case M_FIND:
    case M_RFIND:
    case M_INDEX:
    case M_COUNT: {
        if (!a0 || a0->t != V_STR)
            rfail(R, at, "%s: must be str", fn->name);
        const char *p = a0->u.s->s;
        size_t pn = a0->u.s->len;
        tick_bytes(R, n);
        if (fn->id == M_COUNT) {
            int64_t c = 0;
            if (!pn)
                return vint((int64_t)vlen(R, at, self) + 1);
            for (const char *f = s; (f = memmem(f, n - (size_t)(f - s), p, pn)); f += pn)
                c++;
            return vint(c);
        }
        const char *f = NULL;
        if (fn->id == M_RFIND) {
            size_t work = 0; /* bytes compared, at most */
            for (size_t i = n + 1; i-- > 0;) {
                if ((work += pn + 1) >= (1u << 20)) {
                    tick_chars(R, work);
                    work = 0;
                }
                if (i + pn <= n && !memcmp(s + i, p, pn)) {
                    f = s + i;
                    break;
                }
            }
            tick_chars(R, work);
        } else {
            f = pn ? memmem(s, n, p, pn) : s;
        }
        if (!f) {
            if (fn->id == M_INDEX)
                rfail(R, at, "substring not found");
            return vint(-1);
        }
        tick_chars(R, (size_t)(f - s));
        return vint((int64_t)u8_len_cp(s, (size_t)(f - s)));
    }
    case M_FORMAT: return strformat(R, at, self, a->v, a->kw, a->n);
    case M_JOIN: {
        if (!a0)
            rfail(R, at, "join takes exactly one argument");
        jlist *l = iter_items(R, at, *a0);
        tick(R, (long)l->n);
        sb b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                sb_add(R, &b, s, n);
            if (l->v[i].t != V_STR)
                rfail(R, at, "sequence item %zu: expected str instance, %s found", i, tname(l->v[i]));
            sb_add(R, &b, l->v[i].u.s->s, l->v[i].u.s->len);
        }
        return vsb(R, &b);
    }
    case M_ISSPACE:
    case M_ISALPHA:
    case M_ISDIGIT:
    case M_ISALNUM:
    case M_ISUPPER:
    case M_ISLOWER: {
        if (!n)
            return vbool(0);
        tick_chars(R, n);
        size_t i = 0;
        int cased = 0;
        while (i < n) {
            int32_t c = u8_next(s, n, &i);
            utf8proc_category_t k = utf8proc_category(c);
            int alpha = k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
                        k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
            int digit = k == UTF8PROC_CATEGORY_ND;
            switch (fn->id) {
            case M_ISSPACE: if (!py_space(c)) return vbool(0); break;
            case M_ISALPHA: if (!alpha) return vbool(0); break;
            case M_ISDIGIT: if (!digit) return vbool(0); break;
            case M_ISALNUM: if (!alpha && !digit) return vbool(0); break;
            case M_ISUPPER:
                if (k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) return vbool(0);
                cased |= k == UTF8PROC_CATEGORY_LU;
                break;
            case M_ISLOWER:
                if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) return vbool(0);
                cased |= k == UTF8PROC_CATEGORY_LL;
                break;
            }
        }
        return vbool(fn->id == M_ISUPPER || fn->id == M_ISLOWER ? cased : 1);
    }
    case M_SPLITLINES: {
        /* Python's line boundaries: \n \r \r\n \v \f \x1c \x1d \x1e
         * U+0085 U+2028 U+2029; keepends keeps them on the lines */
        jv *ke = arg(a, 0, "keepends");
        int keep = ke ? truthy(*ke) : 0;
        tick_chars(R, n);
        jlist *l = list_new(R, 4);
        size_t st = 0, i = 0;
        while (i < n) {
            size_t j = i;
            int32_t c = u8_next(s, n, &j);
            if (c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e || c == 0x85 ||
                c == 0x2028 || c == 0x2029) {
                if (c == '\r' && j < n && s[j] == '\n')
                    j++;
                list_push(R, l, vstr(R, s + st, (keep ? j : i) - st));
                st = j;
            }
            i = j;
        }
        if (st < n)
            list_push(R, l, vstr(R, s + st, n - st));
        return vlist(l);
    }
    case M_REMOVEPREFIX:
    case M_REMOVESUFFIX: {
        if (!a0 || a0->t != V_STR)
            rfail(R, at, "%s: must be str", fn->name);
        size_t pn = a0->u.s->len;
        if (pn <= n && fn->id == M_REMOVEPREFIX && !memcmp(s, a0->u.s->s, pn))
            return vstr(R, s + pn, n - pn);
        if (pn <= n && fn->id == M_REMOVESUFFIX && !memcmp(s + n - pn, a0->u.s->s, pn))
            return vstr(R, s, n - pn);
        return self;
    }
    }
    rfail(R, at, "unsupported call of '%s'", fn->name);
}

static jv call(rctx *R, const node *at, jv fnv, args_t *a)
{
    if (fnv.t == V_MACRO)
        return call_macro(R, at, fnv.u.m, a);
    if (fnv.t == V_FUNC)
        return call_func(R, at, fnv.u.fn, a);
    if (fnv.t == V_UNDEF)
        undef_fail(R, at, fnv);
    rfail(R, at, "'%s' object is not callable", tname(fnv));
}

/* ---- tests */

static int run_test(rctx *R, const node *at, const char *name, jv v, args_t *a)
{
    jv *a0 = arg(a, 0, NULL);
#define NEED0                                                                     \
    do {                                                                          \
        if (!a0)                                                                  \
            rfail(R, at, "test '%s' needs an argument", name);                    \
    } while (0)
    if (!strcmp(name, "defined"))
        return v.t != V_UNDEF;
    if (!strcmp(name, "undefined"))
        return v.t == V_UNDEF;
    if (!strcmp(name, "none"))
        return v.t == V_NONE;
    if (!strcmp(name, "boolean"))
        return v.t == V_BOOL;
    if (!strcmp(name, "true"))
        return v.t == V_BOOL && v.u.b;
    if (!strcmp(name, "false"))
        return v.t == V_BOOL && !v.u.b;
    if (!strcmp(name, "integer"))
        return v.t == V_INT;
    if (!strcmp(name, "float"))
        return v.t == V_FLOAT;
    if (!strcmp(name, "number"))
        return isnum(v);
    if (!strcmp(name, "string"))
        return v.t == V_STR;
    if (!strcmp(name, "mapping"))
        return v.t == V_DICT;
    if (!strcmp(name, "iterable"))
        return v.t == V_STR || v.t == V_LIST || v.t == V_DICT || v.t == V_UNDEF;
    if (!strcmp(name, "sequence"))
        return v.t == V_STR || v.t == V_LIST || v.t == V_DICT || v.t == V_UNDEF;
    if (!strcmp(name, "callable"))
        return v.t == V_MACRO || v.t == V_FUNC;
    if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        if (v.t == V_UNDEF)
            undef_fail(R, at, v);
        if (!isnum(v) || v.t == V_FLOAT)
            rfail(R, at, "test '%s' needs an integer, got %s", name, tname(v));
        int64_t m = numi(v) % 2;
        return name[0] == 'o' ? m != 0 : m == 0;
    }
    if (!strcmp(name, "divisibleby")) {
        NEED0;
        jv r = arith(R, at, OP_MOD, v, *a0);
        return !truthy(r);
    }
    if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) {
        NEED0;
        return eq(R, v, *a0);
    }
    if (!strcmp(name, "ne") || !strcmp(name, "!=")) {
        NEED0;
        return !eq(R, v, *a0);
    }
    if (!strcmp(name, "sameas")) {
        NEED0;
        return (v.t == V_NONE || v.t == V_BOOL) ? eq(R, v, *a0) && v.t == a0->t : eq(R, v, *a0);
    }
    static const struct {
        const char *n1, *n2, *n3;
        int want;
    } CMP[] = {{"lt", "lessthan", "<", -1}, {"gt", "greaterthan", ">", 1}, {"le", "<=", NULL, -2}, {"ge", ">=", NULL, 2}};
    for (int k = 0; k < 4; k++) {
        if (!strcmp(name, CMP[k].n1) || !strcmp(name, CMP[k].n2) || (CMP[k].n3 && !strcmp(name, CMP[k].n3))) {
            NEED0;
            int c = cmp(R, at, v, *a0, name);
            switch (CMP[k].want) {
            case -1: return c < 0;
            case 1: return c > 0;
            case -2: return c <= 0;
            default: return c >= 0;
            }
        }
    }
    if (!strcmp(name, "in")) {
        NEED0;
        return contains(R, at, *a0, v);
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        jv s = vtostr(R, v);
        jv t = recase(R, s, name[0] == 'l' ? CASE_LOWER : CASE_UPPER);
        return eq(R, s, t);
    }
    rfail(R, at, "unsupported test '%s'", name);
#undef NEED0
}

/* ---- filters */

static jv attr_path(rctx *R, const node *at, jv v, jv path)
{
    if (path.t == V_INT)
        return get_item(R, at, v, path);
    path = vtostr(R, path);
    const char *s = path.u.s->s;
    size_t n = path.u.s->len, st = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            const char *part = s + st;
            size_t pn = i - st;
            int digits = pn > 0;
            for (size_t k = 0; k < pn; k++)
                digits &= isdigit((unsigned char)part[k]) != 0;
            if (v.t == V_UNDEF)
                return v;
            if (digits)
                v = get_item(R, at, v, vint(strtoll(part, NULL, 10)));
            else
                v = get_item(R, at, v, vstr(R, part, pn));
            st = i + 1;
        }
    }
    return v;
}

/* sort key: strings lowered unless case-sensitive */
static jv sort_key(rctx *R, jv v, int cs) { return (!cs && v.t == V_STR) ? recase(R, v, CASE_LOWER) : v; }

static void merge_sort(rctx *R, const node *at, jv *keys, size_t *idx, size_t *tmp, size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    merge_sort(R, at, keys, idx, tmp, h);
    merge_sort(R, at, keys, idx + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = cmp(R, at, keys[idx[j]], keys[idx[i]], "<") < 0 ? idx[j++] : idx[i++];
    while (i < h)
        tmp[k++] = idx[i++];
    while (j < n)
        tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
    tick(R, (long)n); /* n log n comparisons in all */
}

static jlist *sorted(rctx *R, const node *at, jlist *l, jv *keys, int reverse)
{
    size_t n = l->n;
    size_t *idx = ralloc(R, (n + 1) * sizeof *idx), *tmp = ralloc(R, (n + 1) * sizeof *tmp);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    tick(R, (long)n);
    merge_sort(R, at, keys, idx, tmp, n);
    jlist *o = list_new(R, n);
    for (size_t i = 0; i < n; i++)
        list_push(R, o, l->v[idx[reverse ? n - 1 - i : i]]);
    return o;
}

static int arg_bool(jv *v, int dflt) { return v ? truthy(*v) : dflt; }

static jv apply_filter(rctx *R, const node *at, const char *name, jv v, args_t *a);

static jv filter_select(rctx *R, const node *at, jv v, args_t *a, int attr, int keep)
{
    jlist *l = iter_items(R, at, v), *o = list_new(R, l->n);
    /* args: [attribute,] test name, test args... */
    int base = attr ? 1 : 0;
    jv *an = attr ? arg(a, 0, NULL) : NULL;
    if (attr && !an)
        rfail(R, at, "selectattr/rejectattr need an attribute name");
    jv *tn = arg(a, base, NULL);
    args_t ta = {0};
    if (a->n > base + 1) {
        ta.v = a->v + base + 1;
        ta.kw = a->kw ? a->kw + base + 1 : NULL;
        ta.n = a->n - base - 1;
    }
    for (size_t i = 0; i < l->n; i++) {
        jv x = attr ? attr_path(R, at, l->v[i], *an) : l->v[i];
        int r;
        if (tn) {
            jv t = vtostr(R, *tn);
            r = run_test(R, at, t.u.s->s, x, &ta);
        } else {
            r = truthy(x);
        }
        if (r == keep)
            list_push(R, o, l->v[i]);
    }
    tick(R, (long)l->n);
    return vlist(o);
}

static jv apply_filter(rctx *R, const node *at, const char *name, jv v, args_t *a)
{
    jv *a0 = arg(a, 0, NULL), *a1 = arg(a, 1, NULL);
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jv *dv = arg(a, 0, "default_value");
        int boolean = arg_bool(arg(a, 1, "boolean"), 0);
        if (v.t == V_UNDEF || (boolean && !truthy(v)))
            return dv ? *dv : vstr(R, "", 0);
        return v;
    }
    if (v.t == V_UNDEF && strcmp(name, "length") && strcmp(name, "count") && strcmp(name, "string") &&
        strcmp(name, "list") && strcmp(name, "trim") && strcmp(name, "upper") && strcmp(name, "lower") &&
        strcmp(name, "join") && strcmp(name, "safe") && strcmp(name, "items") && strcmp(name, "e") &&
        strcmp(name, "escape") && strcmp(name, "first") && strcmp(name, "selectattr") &&
        strcmp(name, "rejectattr") && strcmp(name, "select") && strcmp(name, "reject") && strcmp(name, "map") &&
        strcmp(name, "unique") && strcmp(name, "reverse"))
        undef_fail(R, at, v);
    if (!strcmp(name, "trim"))
        return strip(R, v, a0 && a0->t != V_NONE ? a0 : arg(a, 0, "chars"), 3);
    if (!strcmp(name, "upper"))
        return recase(R, v, CASE_UPPER);
    if (!strcmp(name, "lower"))
        return recase(R, v, CASE_LOWER);
    if (!strcmp(name, "title"))
        return recase(R, v, CASE_TITLE_JINJA);
    if (!strcmp(name, "capitalize"))
        return recase(R, v, CASE_CAPITALIZE);
    if (!strcmp(name, "length") || !strcmp(name, "count"))
        return vint((int64_t)vlen(R, at, v));
    if (!strcmp(name, "string"))
        return vtostr(R, v);
    if (!strcmp(name, "safe"))
        return v.t == V_UNDEF ? vstr(R, "", 0) : v;
    if (!strcmp(name, "e") || !strcmp(name, "escape")) {
        jv s = vtostr(R, v);
        tick_bytes(R, s.u.s->len);
        sb b = {0};
        for (size_t i = 0; i < s.u.s->len; i++) {
            char c = s.u.s->s[i];
            switch (c) {
            case '&': sb_puts(R, &b, "&amp;"); break;
            case '<': sb_puts(R, &b, "&lt;"); break;
            case '>': sb_puts(R, &b, "&gt;"); break;
            case '"': sb_puts(R, &b, "&#34;"); break;
            case '\'': sb_puts(R, &b, "&#39;"); break;
            default: sb_add(R, &b, &c, 1);
            }
        }
        return vsb(R, &b);
    }
    if (!strcmp(name, "replace")) {
        if (!a0 || !a1)
            rfail(R, at, "replace needs old and new");
        jv *c = arg(a, 2, "count");
        return replace(R, v, *a0, *a1, c && c->t != V_NONE ? to_index(R, at, *c) : -1);
    }
    if (!strcmp(name, "join")) {
        jv *d = arg(a, 0, "d");
        jv *at_ = arg(a, 1, "attribute");
        jlist *l = iter_items(R, at, v);
        sb b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (i && d)
                to_str(R, &b, *d);
            to_str(R, &b, at_ ? attr_path(R, at, l->v[i], *at_) : l->v[i]);
        }
        tick(R, (long)l->n);
        return vsb(R, &b);
    }
    if (!strcmp(name, "list")) {
        jlist *l = iter_items(R, at, v), *o = list_new(R, l->n);
        for (size_t i = 0; i < l->n; i++)
            list_push(R, o, l->v[i]);
        tick(R, (long)l->n);
        return vlist(o);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jlist *l = iter_items(R, at, v);
        if (!l->n)
            return vundef(NULL, name[0] == 'f' ? "first item (the sequence was empty)" : "last item (the sequence was empty)");
        return name[0] == 'f' ? l->v[0] : l->v[l->n - 1];
    }
    if (!strcmp(name, "reverse")) {
        if (v.t == V_STR) {
            jv m1 = vint(-1);
            return do_slice(R, at, v, NULL, NULL, &m1);
        }
        jlist *l = iter_items(R, at, v), *o = list_new(R, l->n);
        for (size_t i = l->n; i-- > 0;)
            list_push(R, o, l->v[i]);
        return vlist(o);
    }
    if (!strcmp(name, "items")) {
        if (v.t == V_UNDEF)
            return vlist(list_new(R, 0));
        if (v.t != V_DICT)
            rfail(R, at, "can only get item pairs from a mapping, not %s", tname(v));
        func f = {M_ITEMS, v, "items"};
        args_t none = {0};
        return call_func(R, at, &f, &none);
    }
    if (!strcmp(name, "dictsort")) {
        if (v.t != V_DICT)
            rfail(R, at, "dictsort needs a mapping, not %s", tname(v));
        int cs = arg_bool(arg(a, 0, "case_sensitive"), 0);
        jv *by = arg(a, 1, "by");
        int rev = arg_bool(arg(a, 2, "reverse"), 0);
        int byval = by && by->t == V_STR && !strcmp(by->u.s->s, "value");
        func f = {M_ITEMS, v, "items"};
        args_t none = {0};
        jlist *l = call_func(R, at, &f, &none).u.l;
        jv *keys = ralloc(R, (l->n + 1) * sizeof *keys);
        for (size_t i = 0; i < l->n; i++)
            keys[i] = sort_key(R, l->v[i].u.l->v[byval], cs);
        return vlist(sorted(R, at, l, keys, rev));
    }
    if (!strcmp(name, "sort")) {
        int rev = arg_bool(arg(a, 0, "reverse"), 0);
        int cs = arg_bool(arg(a, 1, "case_sensitive"), 0);
        jv *attr = arg(a, 2, "attribute");
        jlist *l = iter_items(R, at, v);
        jv *keys = ralloc(R, (l->n + 1) * sizeof *keys);
        for (size_t i = 0; i < l->n; i++)
            keys[i] = sort_key(R, attr ? attr_path(R, at, l->v[i], *attr) : l->v[i], cs);
        return vlist(sorted(R, at, l, keys, rev));
    }
    if (!strcmp(name, "unique")) {
        int cs = arg_bool(arg(a, 0, "case_sensitive"), 0);
        jv *attr = arg(a, 1, "attribute");
        jlist *l = iter_items(R, at, v), *o = list_new(R, l->n), *seen = list_new(R, l->n);
        for (size_t i = 0; i < l->n; i++) {
            jv k = sort_key(R, attr ? attr_path(R, at, l->v[i], *attr) : l->v[i], cs);
            int dup = 0;
            for (size_t j = 0; j < seen->n && !dup; j++)
                dup = eq(R, seen->v[j], k);
            tick(R, (long)seen->n + 1);
            if (!dup) {
                list_push(R, seen, k);
                list_push(R, o, l->v[i]);
            }
        }
        return vlist(o);
    }
    if (!strcmp(name, "min") || !strcmp(name, "max")) {
        int cs = arg_bool(arg(a, 0, "case_sensitive"), 0);
        jv *attr = arg(a, 1, "attribute");
        jlist *l = iter_items(R, at, v);
        if (!l->n)
            return vundef(NULL, "min/max of an empty sequence");
        tick(R, (long)l->n);
        size_t best = 0;
        jv bk = sort_key(R, attr ? attr_path(R, at, l->v[0], *attr) : l->v[0], cs);
        for (size_t i = 1; i < l->n; i++) {
            jv k = sort_key(R, attr ? attr_path(R, at, l->v[i], *attr) : l->v[i], cs);
            int c = cmp(R, at, k, bk, "<");
            if (name[1] == 'i' ? c < 0 : c > 0) {
                best = i;
                bk = k;
            }
        }
        return l->v[best];
    }
    if (!strcmp(name, "sum")) {
        jv *attr = arg(a, 0, "attribute");
        jv *start = arg(a, 1, "start");
        jv acc = start ? *start : vint(0);
        jlist *l = iter_items(R, at, v);
        tick(R, (long)l->n);
        for (size_t i = 0; i < l->n; i++)
            acc = arith(R, at, OP_ADD, acc, attr ? attr_path(R, at, l->v[i], *attr) : l->v[i]);
        return acc;
    }
    if (!strcmp(name, "selectattr"))
        return filter_select(R, at, v, a, 1, 1);
    if (!strcmp(name, "rejectattr"))
        return filter_select(R, at, v, a, 1, 0);
    if (!strcmp(name, "select"))
        return filter_select(R, at, v, a, 0, 1);
    if (!strcmp(name, "reject"))
        return filter_select(R, at, v, a, 0, 0);
    if (!strcmp(name, "map")) {
        jlist *l = iter_items(R, at, v), *o = list_new(R, l->n);
        jv *attr = arg(a, -1, "attribute");
        jv *dflt = arg(a, -1, "default");
        if (attr) {
            for (size_t i = 0; i < l->n; i++) {
                jv x = attr_path(R, at, l->v[i], *attr);
                if (x.t == V_UNDEF && dflt)
                    x = *dflt;
                list_push(R, o, x);
            }
        } else {
            if (!a0)
                rfail(R, at, "map needs a filter name or attribute=");
            jv fname = vtostr(R, *a0);
            args_t fa = {0};
            if (a->n > 1) {
                fa.v = a->v + 1;
                fa.kw = a->kw ? a->kw + 1 : NULL;
                fa.n = a->n - 1;
            }
            for (size_t i = 0; i < l->n; i++)
                list_push(R, o, apply_filter(R, at, fname.u.s->s, l->v[i], &fa));
        }
        tick(R, (long)l->n);
        return vlist(o);
    }
    if (!strcmp(name, "tojson")) {
        jsonopt o = {-1, ", ", ": ", 0, 0};
        jv *ind = arg(a, 0, "indent");
        if (ind && ind->t != V_NONE) {
            if (ind->t != V_INT || ind->u.i < 0 || ind->u.i > 64)
                rfail(R, at, "tojson: indent must be an integer 0..64");
            o.indent = (int)ind->u.i;
            o.item_sep = ",";
        }
        jv *seps = arg(a, -1, "separators");
        if (seps && seps->t != V_NONE) {
            if (seps->t != V_LIST || seps->u.l->n != 2 || seps->u.l->v[0].t != V_STR || seps->u.l->v[1].t != V_STR)
                rfail(R, at, "tojson: separators must be two strings");
            o.item_sep = seps->u.l->v[0].u.s->s;
            o.key_sep = seps->u.l->v[1].u.s->s;
        }
        o.sort_keys = arg_bool(arg(a, -1, "sort_keys"), 0);
        o.ensure_ascii = arg_bool(arg(a, -1, "ensure_ascii"), 0);
        sb b = {0};
        const node *saved = R->at;
        R->at = at;
        to_json(R, &b, v, &o, 0);
        R->at = saved;
        return vsb(R, &b);
    }
    if (!strcmp(name, "int")) {
        jv *dv = arg(a, 0, "default");
        jv d = dv ? *dv : vint(0);
        switch (v.t) {
        case V_INT: return v;
        case V_BOOL: return vint(v.u.b);
        /* jinja2's do_int: int(value), else int(float(value)), else the
         * default; Python's ints are unbounded, ours are 64-bit: a value
         * outside that range is an error, not a wrong number */
        case V_FLOAT:
            if (isnan(v.u.f))
                return d; /* ValueError */
            if (!float_fits_i64(v.u.f))
                rfail(R, at, "int filter: %s is out of the 64-bit integer range", icl_py_float_repr(v.u.f, (char[32]){0}));
            return vint((int64_t)v.u.f);
        case V_STR: {
            char *e;
            tick_bytes(R, v.u.s->len);
            errno = 0;
            long long x = strtoll(v.u.s->s, &e, 10);
            if (e != v.u.s->s) {
                char *t = e;
                while (*t && py_space((unsigned char)*t))
                    t++;
                if (!*t) {
                    if (errno == ERANGE)
                        rfail(R, at, "int filter: '%.40s' is out of the 64-bit integer range", v.u.s->s);
                    return vint(x);
                }
            }
            if (strpbrk(v.u.s->s, "xXpP")) /* Python's float() reads no hexadecimal */
                return d;
            double f = strtod(v.u.s->s, &e);
            if (e != v.u.s->s) {
                while (*e && py_space((unsigned char)*e))
                    e++;
                if (!*e && !isnan(f)) {
                    if (!float_fits_i64(f))
                        rfail(R, at, "int filter: '%.40s' is out of the 64-bit integer range", v.u.s->s);
                    return vint((int64_t)f);
                }
            }
            return d;
        }
        default: return d;
        }
    }
    if (!strcmp(name, "float")) {
        jv *dv = arg(a, 0, "default");
        jv d = dv ? *dv : vfloat(0);
        if (isnum(v))
            return vfloat(numf(v));
        if (v.t == V_STR && !strpbrk(v.u.s->s, "xXpP")) { /* Python's float() reads no hexadecimal */
            char *e;
            tick_bytes(R, v.u.s->len);
            double f = strtod(v.u.s->s, &e);
            if (e != v.u.s->s) {
                while (*e && py_space((unsigned char)*e))
                    e++;
                if (!*e)
                    return vfloat(f);
            }
        }
        return d;
    }
    if (!strcmp(name, "abs")) {
        if (v.t == V_FLOAT)
            return vfloat(fabs(v.u.f));
        if (isnum(v)) {
            if (numi(v) == INT64_MIN)
                rfail(R, at, "integer overflow");
            return vint(numi(v) < 0 ? -numi(v) : numi(v));
        }
        rfail(R, at, "bad operand type for abs(): '%s'", tname(v));
    }
    if (!strcmp(name, "round")) {
        jv *pr = arg(a, 0, "precision");
        jv *me = arg(a, 1, "method");
        int64_t p = pr ? to_index(R, at, *pr) : 0;
        if (!isnum(v))
            rfail(R, at, "round needs a number, not %s", tname(v));
        double x = numf(v);
        const char *m = me && me->t == V_STR ? me->u.s->s : "common";
        if (p < 0 || p > 15)
            rfail(R, at, "round: precision must be 0..15");
        double sc = pow(10, (double)p);
        if (!strcmp(m, "common")) {
            char buf[64];
            snprintf(buf, sizeof buf, "%.*f", (int)p, x);
            return vfloat(strtod(buf, NULL));
        }
        if (!strcmp(m, "floor"))
            return vfloat(floor(x * sc) / sc);
        if (!strcmp(m, "ceil"))
            return vfloat(ceil(x * sc) / sc);
        rfail(R, at, "round: method must be common, floor or ceil");
    }
    if (!strcmp(name, "format")) {
        jlist *t = list_new(R, (size_t)a->n);
        t->tuple = 1;
        for (int k = 0; k < a->n; k++)
            list_push(R, t, a->v[k]);
        return pyformat(R, at, v, vlist(t));
    }
    if (!strcmp(name, "indent")) {
        jv *w = arg(a, 0, "width");
        int first = arg_bool(arg(a, 1, "first"), 0), blank = arg_bool(arg(a, 2, "blank"), 0);
        sb pad = {0};
        if (w && w->t == V_STR)
            to_str(R, &pad, *w);
        else {
            int64_t k = w ? to_index(R, at, *w) : 4;
            for (int64_t i = 0; i < k && i < 1000; i++)
                sb_puts(R, &pad, " ");
        }
        jv s = vtostr(R, v);
        sb b = {0};
        size_t n = s.u.s->len;
        const char *p = s.u.s->s;
        int line_begin = 1, lineno = 0;
        for (size_t i = 0; i < n; i++) {
            if (line_begin) {
                size_t e = i;
                while (e < n && p[e] != '\n')
                    e++;
                int empty = e == i;
                if ((lineno > 0 || first) && (blank || !empty))
                    sb_add(R, &b, pad.p ? pad.p : "", pad.n);
                line_begin = 0;
            }
            sb_add(R, &b, p + i, 1);
            if (p[i] == '\n') {
                line_begin = 1;
                lineno++;
            }
        }
        return vsb(R, &b);
    }
    if (!strcmp(name, "center")) {
        jv s = vtostr(R, v);
        int64_t w = a0 ? to_index(R, at, *a0) : 80, len = (int64_t)vlen(R, at, s);
        if (w <= len)
            return s;
        if (w > 100000)
            rfail(R, at, "center: width too large");
        int64_t padn = w - len, left = padn / 2 + (padn & w & 1);
        sb b = {0};
        for (int64_t i = 0; i < left; i++)
            sb_puts(R, &b, " ");
        sb_add(R, &b, s.u.s->s, s.u.s->len);
        for (int64_t i = 0; i < padn - left; i++)
            sb_puts(R, &b, " ");
        return vsb(R, &b);
    }
    if (!strcmp(name, "wordcount")) {
        jv s = vtostr(R, v);
        return vint((int64_t)split(R, s, NULL, -1).u.l->n);
    }
    if (!strcmp(name, "attr")) {
        if (!a0)
            rfail(R, at, "attr needs a name");
        jv k = vtostr(R, *a0);
        return get_attr(R, at, v, k.u.s->s);
    }
    rfail(R, at, "unsupported filter '%s'", name);
}

/* ---- expressions */

static jv eval_inner(rctx *R, const node *x);

/* Every evaluation and statement counts towards one bound on the C stack
 * (macro recursion times expression and block nesting could otherwise
 * reach it): MAX_NEST nested evaluations, a few frames each. */
#define MAX_NEST 1000
static jv eval(rctx *R, const node *x)
{
    if (++R->edepth > MAX_NEST)
        rfail(R, x, "evaluation nested too deeply (limit %d): recursion through macros?", MAX_NEST);
    jv v = eval_inner(R, x);
    R->edepth--;
    return v;
}

static jv eval_inner(rctx *R, const node *x)
{
    R->at = x;
    switch (x->kind) {
    case E_LIT: return x->lit;
    case E_NAME: return lookup(R, R->f, x->name);
    case E_ATTR: {
        jv o = eval(R, x->a);
        return get_attr(R, x, o, x->name);
    }
    case E_ITEM: {
        jv o = eval(R, x->a);
        jv k = eval(R, x->b);
        return get_item(R, x, o, k);
    }
    case E_SLICE: {
        jv o = eval(R, x->a);
        jv a, b, c;
        if (x->b)
            a = eval(R, x->b);
        if (x->c)
            b = eval(R, x->c);
        if (x->d)
            c = eval(R, x->d);
        return do_slice(R, x, o, x->b ? &a : NULL, x->c ? &b : NULL, x->d ? &c : NULL);
    }
    case E_CALL: {
        jv f = eval(R, x->a);
        args_t a = eval_args(R, x);
        return call(R, x, f, &a);
    }
    case E_FILTER: {
        jv v = eval(R, x->a);
        args_t a = eval_args(R, x);
        return apply_filter(R, x, x->name, v, &a);
    }
    case E_TEST: {
        jv v = eval(R, x->a);
        args_t a = eval_args(R, x);
        int r = run_test(R, x, x->name, v, &a);
        return vbool(x->negate ? !r : r);
    }
    case E_NEG:
    case E_POS: {
        jv v = eval(R, x->a);
        if (v.t == V_UNDEF)
            undef_fail(R, x, v);
        if (v.t == V_FLOAT)
            return vfloat(x->kind == E_NEG ? -v.u.f : v.u.f);
        if (isnum(v)) {
            if (x->kind == E_POS)
                return vint(numi(v));
            if (numi(v) == INT64_MIN)
                rfail(R, x, "integer overflow");
            return vint(-numi(v));
        }
        rfail(R, x, "bad operand type for unary %s: '%s'", x->kind == E_NEG ? "-" : "+", tname(v));
    }
    case E_NOT: return vbool(!truthy(eval(R, x->a)));
    case E_AND: {
        jv a = eval(R, x->a);
        return truthy(a) ? eval(R, x->b) : a;
    }
    case E_OR: {
        jv a = eval(R, x->a);
        return truthy(a) ? a : eval(R, x->b);
    }
    case E_COND:
        if (truthy(eval(R, x->a)))
            return eval(R, x->b);
        return x->c ? eval(R, x->c) : vundef(NULL, "(conditional expression without else)");
    case E_BIN: {
        jv a = eval(R, x->a);
        jv b = eval(R, x->b);
        R->at = x;
        if (x->op == OP_CAT) {
            sb s = {0};
            to_str(R, &s, a);
            to_str(R, &s, b);
            return vsb(R, &s);
        }
        return arith(R, x, x->op, a, b);
    }
    case E_CMP: {
        jv a = eval(R, x->a);
        for (int i = 0; i < x->nalt; i++) {
            jv b = eval(R, x->alt[i]);
            int r;
            switch (x->ops[i]) {
            case OP_EQ: r = eq(R, a, b); break;
            case OP_NE: r = !eq(R, a, b); break;
            case OP_LT: r = cmp(R, x, a, b, "<") < 0; break;
            case OP_LE: r = cmp(R, x, a, b, "<=") <= 0; break;
            case OP_GT: r = cmp(R, x, a, b, ">") > 0; break;
            case OP_GE: r = cmp(R, x, a, b, ">=") >= 0; break;
            case OP_IN: r = contains(R, x, b, a); break;
            default: r = !contains(R, x, b, a); break;
            }
            if (!r)
                return vbool(0);
            a = b;
        }
        return vbool(1);
    }
    case E_LIST:
    case E_TUPLE: {
        jlist *l = list_new(R, (size_t)x->nkids);
        l->tuple = x->kind == E_TUPLE;
        for (int i = 0; i < x->nkids; i++)
            list_push(R, l, eval(R, x->kids[i]));
        return vlist(l);
    }
    case E_DICT: {
        jdict *d = dict_new(R);
        for (int i = 0; i < x->nkids; i++) {
            jv k = eval(R, x->kids[i]);
            if (k.t != V_STR)
                rfail(R, x, "unsupported: dict keys that are not strings");
            dict_set(R, d, k.u.s->s, k.u.s->len, eval(R, x->alt[i]));
        }
        return vdict(d, V_DICT);
    }
    }
    rfail(R, x, "internal error: unknown expression");
}

/* ---- statements */

static void fset(rctx *R, frame *f, const char *name, jv v)
{
    if (!f->vars)
        f->vars = dict_new(R);
    dict_set(R, f->vars, name, strlen(name), v);
}

static void assign(rctx *R, const node *x, frame *f, const char **names, int n, jv v)
{
    if (n == 1) {
        fset(R, f, names[0], v);
        return;
    }
    jlist *l;
    if (v.t == V_LIST)
        l = v.u.l;
    else if (v.t == V_STR || v.t == V_DICT)
        l = iter_items(R, x, v);
    else
        rfail(R, x, "cannot unpack non-iterable %s object", tname(v));
    if ((int)l->n < n)
        rfail(R, x, "not enough values to unpack (expected %d, got %zu)", n, l->n);
    if ((int)l->n > n)
        rfail(R, x, "too many values to unpack (expected %d)", n);
    for (int i = 0; i < n; i++)
        fset(R, f, names[i], l->v[i]);
}

static void out_add(rctx *R, const char *s, size_t n) { sb_add(R, R->out, s, n); }

static void exec_stmt_inner(rctx *R, const node *x);

static void exec_stmt(rctx *R, const node *x)
{
    if (++R->edepth > MAX_NEST)
        rfail(R, x, "evaluation nested too deeply (limit %d): recursion through macros?", MAX_NEST);
    exec_stmt_inner(R, x);
    R->edepth--;
}

static void exec_stmt_inner(rctx *R, const node *x)
{
    R->at = x;
    switch (x->kind) {
    case S_DATA: out_add(R, x->data, x->datalen); return;
    case S_PRINT: {
        jv v = eval(R, x->a);
        to_str(R, R->out, v);
        return;
    }
    case S_IF:
        if (truthy(eval(R, x->a)))
            exec_body(R, x->kids, x->nkids, R->f);
        else
            exec_body(R, x->alt, x->nalt, R->f);
        return;
    case S_FOR: {
        jv it = eval(R, x->a);
        jlist *items = iter_items(R, x->a, it);
        frame *outer = R->f;
        if (x->b) { /* the loop filter sees the targets, not loop */
            jlist *kept = list_new(R, items->n);
            frame *tf = ralloc(R, sizeof *tf);
            for (size_t i = 0; i < items->n; i++) {
                tf->up = outer;
                tf->vars = NULL;
                assign(R, x, tf, x->names, x->nnames, items->v[i]);
                R->f = tf;
                int keep = truthy(eval(R, x->b));
                R->f = outer;
                if (keep)
                    list_push(R, kept, items->v[i]);
                tick(R, 1);
            }
            items = kept;
        }
        if (!items->n) {
            frame *ef = ralloc(R, sizeof *ef);
            ef->up = outer;
            ef->vars = NULL;
            exec_body(R, x->alt, x->nalt, ef);
            R->f = outer;
            return;
        }
        loopst *ls = ralloc(R, sizeof *ls);
        ls->items = items;
        jv lv = {.t = V_LOOP};
        lv.u.lp = ls;
        /* one frame for the loop, reset to the targets at each iteration
         * (what a body sets does not outlive its iteration, as in jinja2) */
        frame *f = ralloc(R, sizeof *f);
        f->up = outer;
        f->vars = dict_new(R);
        for (size_t i = 0; i < items->n; i++) {
            tick(R, 1);
            ls->i = i;
            if (f->vars->n > (size_t)x->nnames + 1)
                f->vars->n = (size_t)x->nnames + 1;
            assign(R, x, f, x->names, x->nnames, items->v[i]);
            fset(R, f, "loop", lv);
            exec_body(R, x->kids, x->nkids, f);
            R->f = outer;
            if (R->brk == 1) {
                R->brk = 0;
                break;
            }
            R->brk = 0;
        }
        return;
    }
    case S_SET: {
        jv v = eval(R, x->a);
        if (x->op) {
            jv ns = lookup(R, R->f, x->name);
            if (ns.t != V_NS)
                rfail(R, x, "cannot assign attribute on non-namespace object ('%s' is %s)", x->name, tname(ns));
            dict_set(R, ns.u.d, x->names[0], strlen(x->names[0]), v);
        } else {
            assign(R, x, R->f, x->names, x->nnames, v);
        }
        return;
    }
    case S_SETBLOCK: {
        sb *saved = R->out;
        sb buf = {0};
        R->out = &buf;
        frame *f = R->f;
        exec_body(R, x->kids, x->nkids, f);
        R->f = f;
        R->out = saved;
        fset(R, f, x->names[0], vsb(R, &buf));
        return;
    }
    case S_MACRO: {
        macro *m = ralloc(R, sizeof *m);
        m->def = (node *)x;
        m->closure = R->f;
        jv v = {.t = V_MACRO};
        v.u.m = m;
        fset(R, R->f, x->name, v);
        return;
    }
    case S_BREAK: R->brk = 1; return;
    case S_CONTINUE: R->brk = 2; return;
    case S_GEN: {
        int top = R->out == &R->main;
        size_t st = R->main.n;
        exec_body(R, x->kids, x->nkids, R->f);
        if (top) {
            if (R->nspans == R->capspans) {
                size_t cap = R->capspans ? 2 * R->capspans : 8;
                icl_jinja_span *ns = ralloc(R, cap * sizeof *ns);
                if (R->nspans)
                    memcpy(ns, R->spans, R->nspans * sizeof *ns);
                R->spans = ns;
                R->capspans = cap;
            }
            R->spans[R->nspans].start = st;
            R->spans[R->nspans].end = R->main.n;
            R->nspans++;
        }
        return;
    }
    }
    rfail(R, x, "internal error: unknown statement");
}

static void exec_body(rctx *R, node **body, int n, frame *f)
{
    frame *saved = R->f;
    for (int i = 0; i < n; i++) {
        R->f = f;
        exec_stmt(R, body[i]);
        if (R->brk)
            break;
    }
    R->f = saved;
}

/* ---- JSON in */

static jv from_json(rctx *R, const json_t *j, int depth)
{
    if (depth > 500)
        rfail(R, NULL, "variables nested too deeply");
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jdict *d = dict_new(R);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) dict_append(R, d, k, strlen(k), from_json(R, v, depth + 1));
        return vdict(d, V_DICT);
    }
    case JSON_ARRAY: {
        jlist *l = list_new(R, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++)
            list_push(R, l, from_json(R, json_array_get(j, i), depth + 1));
        return vlist(l);
    }
    case JSON_STRING: return vstr(R, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return vint((int64_t)json_integer_value(j));
    case JSON_REAL: return vfloat(json_real_value(j));
    case JSON_TRUE: return vbool(1);
    case JSON_FALSE: return vbool(0);
    default: return NONE;
    }
}

static void __attribute__((noinline)) render_all(rctx *R, const json_t *vars, icl_buf *out, icl_jinja_span **spans,
                                                 size_t *nspans)
{
    R->vars = dict_new(R);
    if (vars && json_is_object(vars)) {
        jv d = from_json(R, vars, 0);
        R->vars = d.u.d;
    }
    frame *root = ralloc(R, sizeof *root);
    root->up = NULL;
    root->vars = NULL;
    R->f = root;
    exec_body(R, R->t->body, R->t->nbody, root);
    buf_append(out, R->main.p ? R->main.p : "", R->main.n);
    if (spans && R->nspans) {
        *spans = xmalloc(R->nspans * sizeof **spans);
        memcpy(*spans, R->spans, R->nspans * sizeof **spans);
    }
    if (nspans)
        *nspans = R->nspans;
}

int icl_jinja_render(const icl_jinja *t, const json_t *vars, const icl_jinja_limits *lim, icl_buf *out,
                     icl_jinja_span **spans, size_t *nspans, char *err, size_t errsz)
{
    rctx *R = xcalloc(1, sizeof *R);
    R->t = t;
    if (lim)
        R->lim = *lim;
    if (!R->lim.max_output)
        R->lim.max_output = (size_t)64 << 20;
    if (!R->lim.max_memory)
        R->lim.max_memory = (size_t)512 << 20;
    if (!R->lim.max_steps)
        R->lim.max_steps = 50000000;
    if (!R->lim.max_depth)
        R->lim.max_depth = 100;
    R->ar.limit = R->lim.max_memory;
    R->e.name = t->name;
    R->main.main = 1;
    R->out = &R->main;
    if (spans)
        *spans = NULL;
    if (nspans)
        *nspans = 0;
    if (setjmp(R->e.jb)) {
        icl_seterr(err, errsz, "%s", R->e.msg);
        arena_free(&R->ar);
        free(R);
        return -1;
    }
    render_all(R, vars, out, spans, nspans);
    arena_free(&R->ar);
    free(R);
    return 0;
}
