/* tokenizer.c - load tokenizer.json, split on added tokens, encode, decode.
 * See tokenizer.h; the behaviour mirrors the Rust crate `tokenizers`
 * (tokenizer/added_vocabulary.rs, the decoders, models/bpe/model.rs).
 */
#define _GNU_SOURCE
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "record.h"
#include "sniff.h"
#include "tok_internal.h"
#include "tokgguf.h"

void icl_ids_grow(icl_ids *a)
{
    a->cap = a->cap ? a->cap * 2 : 64;
    a->v = icl_xreallocarray(a->v, a->cap, sizeof *a->v);
}

void icl_ids_free(icl_ids *a)
{
    free(a->v);
    memset(a, 0, sizeof *a);
}

/* ---- small helpers ---- */

typedef struct {
    char *msg;
    size_t sz;
} errbuf;

/* Puts a, then sep, before the message in err (errsz bytes, cut to fit;
 * nothing when err is NULL or errsz 0). */
static void err_prefix(char *err, size_t errsz, const char *a, const char *sep)
{
    if (!err || !errsz)
        return;
    char m[512];
    snprintf(m, sizeof m, "%s", err);
    snprintf(err, errsz, "%s%s%s", a, sep, m);
}

static int fail(errbuf *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(errbuf *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, e->sz, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(json_t *o, const char *k, int dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char *piece_get(const void *ctx, int32_t id, size_t *len)
{
    const icl_tokenizer *t = ctx;
    *len = t->plen[id];
    return t->arena + t->poff[id];
}

static int32_t vocab_id(const icl_tokenizer *t, const char *s, size_t n)
{
    return icl_strmap_get(&t->vocab, s, n, piece_get, t);
}

/* A pattern object {"String": s} or {"Regex": r}: literal text in *lit
 * (owned), or a compiled regex in *re. */
static int parse_pattern(json_t *pat, char **lit, pcre2_code **re, int compile_literal, errbuf *e)
{
    const char *s;
    *lit = NULL;
    *re = NULL;
    if ((s = jstr(pat, "String"))) {
        if (compile_literal) {
            *re = icl_re_compile(s, strlen(s), 1, e->msg, e->sz);
            return *re ? 0 : -1;
        }
        *lit = icl_xstrdup(s);
        return 0;
    }
    if ((s = jstr(pat, "Regex"))) {
        *re = icl_re_compile(s, strlen(s), 0, e->msg, e->sz);
        return *re ? 0 : -1;
    }
    return fail(e, "pattern is neither {\"String\": ...} nor {\"Regex\": ...}");
}

/* ---- component parsers ---- */

static int parse_norm(json_t *j, tok_norm *n, errbuf *e)
{
    const char *ty = jstr(j, "type");
    memset(n, 0, sizeof *n);
    if (!ty)
        return fail(e, "normalizer without a type");
    if (!strcmp(ty, "NFC"))
        n->type = N_NFC;
    else if (!strcmp(ty, "NFKC"))
        n->type = N_NFKC;
    else if (!strcmp(ty, "NFD"))
        n->type = N_NFD;
    else if (!strcmp(ty, "NFKD"))
        n->type = N_NFKD;
    else if (!strcmp(ty, "Lowercase"))
        n->type = N_LOWER;
    else if (!strcmp(ty, "Prepend")) {
        n->type = N_PREPEND;
        const char *p = jstr(j, "prepend");
        if (!p)
            return fail(e, "normalizer Prepend without \"prepend\"");
        n->s1 = icl_xstrdup(p);
    } else if (!strcmp(ty, "Replace")) {
        n->type = N_REPLACE;
        const char *c = jstr(j, "content");
        if (!c)
            return fail(e, "normalizer Replace without \"content\"");
        if (parse_pattern(json_object_get(j, "pattern"), &n->s1, &n->re, 0, e))
            return -1;
        n->s2 = icl_xstrdup(c);
    } else if (!strcmp(ty, "Strip")) {
        n->type = N_STRIP;
        n->left = jbool(j, "strip_left", 1);
        n->right = jbool(j, "strip_right", 1);
    } else if (!strcmp(ty, "Sequence")) {
        n->type = N_SEQ;
        json_t *a = json_object_get(j, "normalizers");
        if (!json_is_array(a))
            return fail(e, "normalizer Sequence without \"normalizers\"");
        n->nsub = (int)json_array_size(a);
        n->sub = icl_xcalloc((size_t)n->nsub, sizeof *n->sub);
        for (int i = 0; i < n->nsub; i++)
            if (parse_norm(json_array_get(a, (size_t)i), &n->sub[i], e))
                return -1;
    } else {
        return fail(e, "unsupported normalizer %s", ty);
    }
    return 0;
}

static int parse_behavior(const char *b, enum split_behavior *out)
{
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (b && !strcmp(b, names[i])) {
            *out = (enum split_behavior)i;
            return 0;
        }
    return -1;
}

static int parse_prepend_scheme(json_t *j, int *out)
{
    const char *s = jstr(j, "prepend_scheme");
    if (!s) { /* older files: add_prefix_space */
        *out = jbool(j, "add_prefix_space", 1) ? 1 : 0;
        return 0;
    }
    if (!strcmp(s, "always"))
        *out = 1;
    else if (!strcmp(s, "first"))
        *out = 2;
    else if (!strcmp(s, "never"))
        *out = 0;
    else
        return -1;
    return 0;
}

static int parse_rep(json_t *j, char *rep, int *len, errbuf *e)
{
    const char *r = jstr(j, "replacement");
    if (!r)
        r = "\xE2\x96\x81";
    size_t l = strlen(r), i = 0;
    if (l == 0 || l > 4 || (icl_utf8_next(r, l, &i), i != l))
        return fail(e, "Metaspace replacement must be one character");
    memcpy(rep, r, l);
    *len = (int)l;
    return 0;
}

static int parse_pre(json_t *j, tok_pre *p, errbuf *e)
{
    const char *ty = jstr(j, "type");
    memset(p, 0, sizeof *p);
    if (!ty)
        return fail(e, "pre_tokenizer without a type");
    if (!strcmp(ty, "ByteLevel")) {
        p->type = P_BYTELEVEL;
        p->add_prefix_space = jbool(j, "add_prefix_space", 1);
        p->use_regex = jbool(j, "use_regex", 1);
        if (p->use_regex) {
            p->re = icl_re_compile(icl_gpt2_pattern, strlen(icl_gpt2_pattern), 0, e->msg, e->sz);
            if (!p->re)
                return -1;
        }
    } else if (!strcmp(ty, "Split")) {
        p->type = P_SPLIT;
        char *lit;
        if (parse_pattern(json_object_get(j, "pattern"), &lit, &p->re, 1, e))
            return -1;
        if (parse_behavior(jstr(j, "behavior"), &p->behavior))
            return fail(e, "pre_tokenizer Split: unsupported behavior %s",
                        jstr(j, "behavior") ? jstr(j, "behavior") : "(none)");
        p->invert = jbool(j, "invert", 0);
    } else if (!strcmp(ty, "Digits")) {
        p->type = P_DIGITS;
        p->individual_digits = jbool(j, "individual_digits", 0);
    } else if (!strcmp(ty, "Metaspace")) {
        p->type = P_METASPACE;
        if (parse_rep(j, p->rep, &p->rep_len, e))
            return -1;
        if (parse_prepend_scheme(j, &p->prepend))
            return fail(e, "pre_tokenizer Metaspace: unsupported prepend_scheme %s",
                        jstr(j, "prepend_scheme"));
        p->split = jbool(j, "split", 1);
    } else if (!strcmp(ty, "Sequence")) {
        p->type = P_SEQ;
        json_t *a = json_object_get(j, "pretokenizers");
        if (!json_is_array(a))
            return fail(e, "pre_tokenizer Sequence without \"pretokenizers\"");
        p->nsub = (int)json_array_size(a);
        p->sub = icl_xcalloc((size_t)p->nsub, sizeof *p->sub);
        for (int i = 0; i < p->nsub; i++)
            if (parse_pre(json_array_get(a, (size_t)i), &p->sub[i], e))
                return -1;
    } else {
        return fail(e, "unsupported pre_tokenizer %s", ty);
    }
    return 0;
}

/* Walks the decoders in the order they apply: *bf is set by a
 * ByteFallback; *whole by any decoder but a Fuse or a Strip of the start
 * alone after a ByteLevel or a Fuse (which join the tokens into one piece:
 * a Replace, a Strip of the end, a Metaspace, a ByteLevel or a ByteFallback
 * of that piece may change text that earlier tokens made once later ones
 * come). */
static void dec_kinds(const tok_dec *d, int *joined, int *bf, int *whole)
{
    switch (d->type) {
    case D_SEQ:
        for (int i = 0; i < d->nsub; i++)
            dec_kinds(&d->sub[i], joined, bf, whole);
        return;
    case D_FUSE:
        *joined = 1;
        return;
    case D_STRIP:
        *whole |= *joined && d->stop > 0;
        return;
    case D_BYTELEVEL:
        *whole |= *joined;
        *joined = 1;
        return;
    case D_BYTEFALLBACK:
        *bf = 1;
        *whole |= *joined;
        return;
    case D_REPLACE:
    case D_METASPACE:
        *whole |= *joined;
        return;
    }
}

static int parse_dec(json_t *j, tok_dec *d, errbuf *e)
{
    const char *ty = jstr(j, "type");
    memset(d, 0, sizeof *d);
    if (!ty)
        return fail(e, "decoder without a type");
    if (!strcmp(ty, "ByteLevel"))
        d->type = D_BYTELEVEL;
    else if (!strcmp(ty, "ByteFallback"))
        d->type = D_BYTEFALLBACK;
    else if (!strcmp(ty, "Fuse"))
        d->type = D_FUSE;
    else if (!strcmp(ty, "Metaspace")) {
        d->type = D_METASPACE;
        if (parse_rep(j, d->rep, &d->rep_len, e))
            return -1;
        if (parse_prepend_scheme(j, &d->prepend))
            return fail(e, "decoder Metaspace: unsupported prepend_scheme");
    } else if (!strcmp(ty, "Strip")) {
        d->type = D_STRIP;
        const char *c = jstr(j, "content");
        json_t *st = json_object_get(j, "start"), *sp = json_object_get(j, "stop");
        if (!c || !json_is_integer(st) || !json_is_integer(sp))
            return fail(e, "decoder Strip needs content, start and stop");
        d->s1 = icl_xstrdup(c);
        d->start = (int)json_integer_value(st);
        d->stop = (int)json_integer_value(sp);
    } else if (!strcmp(ty, "Replace")) {
        d->type = D_REPLACE;
        const char *c = jstr(j, "content");
        if (!c)
            return fail(e, "decoder Replace without \"content\"");
        if (parse_pattern(json_object_get(j, "pattern"), &d->s1, &d->re, 0, e))
            return -1;
        d->s2 = icl_xstrdup(c);
    } else if (!strcmp(ty, "Sequence")) {
        d->type = D_SEQ;
        json_t *a = json_object_get(j, "decoders");
        if (!json_is_array(a))
            return fail(e, "decoder Sequence without \"decoders\"");
        d->nsub = (int)json_array_size(a);
        d->sub = icl_xcalloc((size_t)d->nsub, sizeof *d->sub);
        for (int i = 0; i < d->nsub; i++)
            if (parse_dec(json_array_get(a, (size_t)i), &d->sub[i], e))
                return -1;
    } else {
        return fail(e, "unsupported decoder %s", ty);
    }
    return 0;
}

/* Ids are below 2^24 (16.7 million; real vocabularies stay under 1 million),
 * so a hostile file cannot make us allocate gigabytes. */
#define MAX_IDS ICL_TOK_MAX_IDS
/* A vocabulary's largest id is below twice its count of entries plus this
 * (gaps allowed, not a vocabulary of mostly holes). */
#define ID_SLACK 1024

/* A special token id from the post-processor: an integer in 0..MAX_IDS-1
 * (range against the vocabulary is checked after loading).  Returns -1 on
 * anything else, so 2^32+5 never wraps to 5. */
static int post_id(json_t *v, int32_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_IDS)
        return -1;
    *out = (int32_t)json_integer_value(v);
    return 0;
}

/* The ids a TemplateProcessing "single" template puts before / after $A;
 * the cls/sep ids of RobertaProcessing and BertProcessing.  A malformed
 * processor is an error (tokenizers refuses to load it too), never ignored. */
static int parse_post(icl_tokenizer *t, json_t *j, errbuf *e)
{
    const char *ty = jstr(j, "type");
    if (!ty)
        return fail(e, "post_processor without a type");
    if (!strcmp(ty, "ByteLevel"))
        return 0;
    if (!strcmp(ty, "Sequence")) {
        json_t *a = json_object_get(j, "processors");
        size_t i;
        json_t *v;
        if (!json_is_array(a))
            return fail(e, "post_processor Sequence without a \"processors\" array");
        json_array_foreach(a, i, v) if (parse_post(t, v, e)) return -1;
        return 0;
    }
    if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
        json_t *cls = json_object_get(j, "cls"), *sep = json_object_get(j, "sep");
        if (!json_is_string(json_array_get(cls, 0)) || post_id(json_array_get(cls, 1), &t->sp.bos) ||
            !json_is_string(json_array_get(sep, 0)) || post_id(json_array_get(sep, 1), &t->sp.eos))
            return fail(e, "post_processor %s: cls and sep must be [token, id] with an id in 0..%ld", ty,
                        MAX_IDS - 1);
        t->sp.add_bos = 1;
        t->sp.add_eos = 1;
        return 0;
    }
    if (strcmp(ty, "TemplateProcessing"))
        return fail(e, "unsupported post_processor %s", ty);
    json_t *single = json_object_get(j, "single"), *sps = json_object_get(j, "special_tokens");
    size_t i;
    json_t *it;
    int seen_a = 0;
    if (!json_is_array(single))
        return fail(e, "post_processor TemplateProcessing without a \"single\" array");
    json_array_foreach(single, i, it)
    {
        json_t *st = json_object_get(it, "SpecialToken");
        if (json_object_get(it, "Sequence")) {
            if (seen_a)
                return fail(e, "post_processor TemplateProcessing: more than one sequence in \"single\"");
            seen_a = 1;
            continue;
        }
        if (!st)
            return fail(e, "post_processor TemplateProcessing: unknown piece in \"single\"");
        const char *name = jstr(st, "id");
        json_t *ids = json_object_get(json_object_get(sps, name ? name : ""), "ids");
        int32_t id;
        if (json_array_size(ids) != 1 || post_id(json_array_get(ids, 0), &id))
            return fail(e, "post_processor TemplateProcessing: special token %s must have one id in 0..%ld",
                        name ? name : "(none)", MAX_IDS - 1);
        if (!seen_a) {
            if (t->sp.add_bos)
                return fail(e, "post_processor TemplateProcessing: more than one token before $A");
            t->sp.bos = id;
            t->sp.add_bos = 1;
        } else {
            if (t->sp.add_eos)
                return fail(e, "post_processor TemplateProcessing: more than one token after $A");
            t->sp.eos = id;
            t->sp.add_eos = 1;
        }
    }
    return 0;
}

/* ---- added tokens ---- */

static int32_t trie_node(tok_trie *tr)
{
    if (tr->nnodes == tr->cap) {
        tr->cap = tr->cap ? tr->cap * 2 : 64;
        tr->term = icl_xreallocarray(tr->term, (size_t)tr->cap, sizeof *tr->term);
    }
    tr->term[tr->nnodes] = -1;
    return tr->nnodes++;
}

static void trie_add(tok_trie *tr, const char *s, size_t n, int32_t idx)
{
    if (!tr->nnodes) {
        icl_u64map_init(&tr->edges, 64);
        trie_node(tr);
    }
    if (n == 0)
        return;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t k = ((uint64_t)node << 8) | (uint8_t)s[i];
        long sl = icl_u64map_find(&tr->edges, k);
        if (sl >= 0) {
            node = tr->edges.e[sl].a;
        } else {
            int32_t c = trie_node(tr);
            icl_u64map_put(&tr->edges, k, c, 0);
            node = c;
        }
    }
    if (tr->term[node] < 0)
        tr->term[node] = idx; /* the first of equal contents wins */
    tr->first[(uint8_t)s[0]] = 1;
    tr->any = 1;
}

static void trie_free(tok_trie *tr)
{
    if (tr->nnodes)
        icl_u64map_free(&tr->edges);
    free(tr->term);
}

/* Longest token starting at s[i]: its added index and end, or -1. */
static int32_t trie_longest(const tok_trie *tr, const char *s, size_t n, size_t i, size_t *end)
{
    int32_t node = 0, best = -1;
    for (size_t j = i; j < n; j++) {
        long sl = icl_u64map_find(&tr->edges, ((uint64_t)node << 8) | (uint8_t)s[j]);
        if (sl < 0)
            break;
        node = tr->edges.e[sl].a;
        if (tr->term[node] >= 0) {
            best = tr->term[node];
            *end = j + 1;
        }
    }
    return best;
}

static int is_word_char_before(const char *s, size_t i)
{
    if (i == 0)
        return 0;
    size_t j = i - 1;
    while (j > 0 && ((uint8_t)s[j] & 0xC0) == 0x80)
        j--;
    size_t k = j;
    uint32_t c = icl_utf8_next(s, i, &k);
    return icl_uni_is_word(c);
}

static int is_word_char_at(const char *s, size_t n, size_t i)
{
    if (i >= n)
        return 0;
    uint32_t c = icl_utf8_next(s, n, &i);
    return icl_uni_is_word(c);
}

/* AddedVocabulary::split_with_indices: segments of s as (start, end, added
 * index or -1) triples appended to out. */
typedef struct {
    size_t *a;
    size_t n, cap;
} segs;

static void seg_push(segs *v, size_t s, size_t e, long idx)
{
    if (v->n + 3 > v->cap) {
        v->cap = v->cap ? v->cap * 2 : 48;
        v->a = icl_xreallocarray(v->a, v->cap, sizeof *v->a);
    }
    v->a[v->n++] = s;
    v->a[v->n++] = e;
    v->a[v->n++] = (size_t)idx;
}

/* Split s at added tokens.  A special token matched while !parse_special
 * stays text; those are counted in st (for the "use --parse-special" hint). */
static void added_split(const icl_tokenizer *t, const tok_trie *tr, const char *s, size_t n,
                        int parse_special, icl_tok_state *st, segs *out)
{
    out->n = 0;
    size_t start_off = 0, i = 0;
    if (tr->any) {
        while (i < n) {
            if (!tr->first[(uint8_t)s[i]]) {
                i++;
                continue;
            }
            size_t mend = 0;
            int32_t idx = trie_longest(tr, s, n, i, &mend);
            if (idx < 0) {
                i++;
                continue;
            }
            size_t ms = i;
            i = mend;
            const tok_added *a = &t->added[idx];
            if (a->special && !parse_special) {
                st->special_text++;
                st->special_text_id = a->id;
                continue;
            }
            if (a->single_word && (is_word_char_before(s, ms) || is_word_char_at(s, n, mend)))
                continue;
            if (a->lstrip) {
                size_t ns = ms;
                while (ns > start_off) {
                    size_t j = ns - 1;
                    while (j > 0 && ((uint8_t)s[j] & 0xC0) == 0x80)
                        j--;
                    size_t k = j;
                    if (!icl_uni_is_whitespace(icl_utf8_next(s, ns, &k)))
                        break;
                    ns = j;
                }
                ms = ns;
            }
            if (a->rstrip) {
                while (mend < n) {
                    size_t k = mend;
                    if (!icl_uni_is_whitespace(icl_utf8_next(s, n, &k)))
                        break;
                    mend = k;
                }
                i = mend;
            }
            if (start_off < ms)
                seg_push(out, start_off, ms, -1);
            seg_push(out, ms, mend, idx);
            start_off = mend;
        }
    }
    if (start_off < n)
        seg_push(out, start_off, n, -1);
}

/* ---- loading ---- */

static int32_t token_id_of(icl_tokenizer *t, json_t *v)
{
    const char *s = json_is_string(v) ? json_string_value(v) : jstr(v, "content");
    return s ? icl_tok_id(t, s, strlen(s)) : -1;
}

/* A JSON file beside tokenizer.json: NULL when it does not exist; an error
 * (-1, *out unchanged) when it exists but does not parse as an object, so a
 * truncated tokenizer_config.json never silently drops its BOS settings. */
static int load_neighbour(const char *path, const char *name, json_t **out, errbuf *e)
{
    struct stat st;
    *out = NULL;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return 0;
    json_error_t je;
    size_t n;
    char rerr[512];
    char *text = icl_read_file(path, (size_t)64 << 20, &n, rerr, sizeof rerr); /* capped; a FIFO never blocks */
    if (!text)
        return fail(e, "%s", rerr);
    /* tokenizer_config.json: integers as reals, so transformers' "no limit"
     * sentinel (model_max_length 1000000000000000019884624838656, past
     * jansson's integers) loads; icl reads no integer from it */
    json_t *c = json_loadb(text, n, strcmp(name, "tokenizer_config.json") ? 0 : JSON_DECODE_INT_AS_REAL, &je);
    free(text);
    if (!json_is_object(c)) {
        json_decref(c);
        if (c)
            return fail(e, "%s: not a JSON object", name);
        return fail(e, "%s: line %d: %s", name, je.line, je.text);
    }
    *out = c;
    return 0;
}

/* An id from generation_config.json or config.json: absent, null or negative (early Llama
 * conversions wrote -1) leaves *id as it is; otherwise an integer in
 * 0..MAX_IDS-1 (no wrap-around of 2^32+5 to 5). */
static int gen_id_in(json_t *v, const char *file, const char *key, int32_t *id, errbuf *e)
{
    if (json_is_array(v)) /* eos_token_id may be a list: the first is the one to append */
        v = json_array_get(v, 0);
    if (!v || json_is_null(v) || (json_is_integer(v) && json_integer_value(v) < 0))
        return 0;
    int32_t x;
    if (post_id(v, &x))
        return fail(e, "%s: %s must be an id in 0..%ld", file, key, MAX_IDS - 1);
    if (*id < 0)
        *id = x;
    return 0;
}

/* What tokenizer_config.json (or the equivalent made from GGUF metadata)
 * says: bos/eos/pad tokens by content, add_bos_token/add_eos_token, and the
 * chat template (a string, or a list of {name, template}: the "default"
 * one, else the first). */
static void apply_config(icl_tokenizer *t, json_t *c)
{
    int32_t id;
    json_t *b = json_object_get(c, "bos_token"), *e = json_object_get(c, "eos_token");
    if ((id = token_id_of(t, b)) >= 0)
        t->sp.bos = id;
    if ((id = token_id_of(t, e)) >= 0)
        t->sp.eos = id;
    /* an explicit null means "none": no guessing by name below */
    t->bos_named |= b != NULL;
    t->eos_named |= e != NULL;
    if ((id = token_id_of(t, json_object_get(c, "pad_token"))) >= 0)
        t->sp.pad = id;
    /* the model's unk_token comes first; byte-level BPE has none, but a
     * GGUF file may name one (written here as unk_token) */
    if (t->sp.unk < 0 && (id = token_id_of(t, json_object_get(c, "unk_token"))) >= 0)
        t->sp.unk = id;
    json_t *ab = json_object_get(c, "add_bos_token"), *ae = json_object_get(c, "add_eos_token");
    if (json_is_boolean(ab))
        t->sp.add_bos = json_is_true(ab) && t->sp.bos >= 0;
    if (json_is_boolean(ae))
        t->sp.add_eos = json_is_true(ae) && t->sp.eos >= 0;
    json_t *ct = json_object_get(c, "chat_template");
    if (json_is_array(ct)) {
        size_t i;
        json_t *x, *pick = NULL;
        json_array_foreach(ct, i, x)
        {
            const char *nm = jstr(x, "name");
            if (!pick || (nm && !strcmp(nm, "default")))
                pick = x;
        }
        ct = json_object_get(pick, "template");
    }
    if (json_is_string(ct)) {
        free(t->chat_template);
        t->chat_template = xstrndup(json_string_value(ct), json_string_length(ct));
    }
}

static int read_neighbours(icl_tokenizer *t, const char *dir, errbuf *err)
{
    if (!dir)
        return 0;
    char *p = icl_path_join(dir, "tokenizer_config.json");
    json_t *c;
    if (load_neighbour(p, "tokenizer_config.json", &c, err))
        goto bad;
    if (c) {
        /* keys icl does not use are ignored; these would change the ids */
        static const char *const changing[] = {"do_lower_case", "split_special_tokens"};
        for (size_t i = 0; i < sizeof changing / sizeof changing[0]; i++)
            if (json_is_true(json_object_get(c, changing[i]))) {
                json_decref(c);
                fail(err, "tokenizer_config.json: \"%s\": true is not supported (icl would give other ids)",
                     changing[i]);
                goto bad;
            }
        apply_config(t, c);
        json_decref(c);
    }
    /* chat_template.jinja (transformers >= 4.43 saves the template there)
     * wins over tokenizer_config.json's, as in icl_chat_load */
    free(p);
    p = icl_path_join(dir, "chat_template.jinja");
    struct stat cst;
    if (stat(p, &cst) == 0) {
        char rerr[512];
        size_t n;
        char *text = icl_read_file(p, (size_t)64 << 20, &n, rerr, sizeof rerr);
        if (!text) {
            fail(err, "%s", rerr);
            goto bad;
        }
        free(t->chat_template);
        t->chat_template = text;
    }
    /* the model's own say wins: generation_config.json, then config.json
     * (what icl-gen stops at), over tokenizer_config.json */
    static const char *const model_files[] = {"generation_config.json", "config.json"};
    int32_t ids[3] = {-1, -1, -1}; /* bos, eos, pad */
    for (int f = 0; f < 2; f++) {
        free(p);
        p = icl_path_join(dir, model_files[f]);
        if (load_neighbour(p, model_files[f], &c, err))
            goto bad;
        if (!c)
            continue;
        int bad = gen_id_in(json_object_get(c, "bos_token_id"), model_files[f], "bos_token_id", &ids[0], err) ||
                  gen_id_in(json_object_get(c, "eos_token_id"), model_files[f], "eos_token_id", &ids[1], err) ||
                  gen_id_in(json_object_get(c, "pad_token_id"), model_files[f], "pad_token_id", &ids[2], err);
        json_decref(c);
        if (bad)
            goto bad;
    }
    if (ids[0] >= 0) {
        t->sp.bos = ids[0];
        t->bos_named = 1;
    }
    if (ids[1] >= 0) {
        t->sp.eos = ids[1];
        t->eos_named = 1;
    }
    if (ids[2] >= 0)
        t->sp.pad = ids[2];
    free(p);
    return 0;
bad:
    free(p);
    return -1;
}

/* merges: rank = index; a later duplicate overrides, as HashMap::collect does */
static int load_merges(icl_tokenizer *t, json_t *merges, errbuf *e)
{
    size_t nm = json_array_size(merges);
    icl_u64map_init(&t->merges, nm);
    icl_buf cat = {0};
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                icl_buf_free(&cat);
                return fail(e, "merges[%zu] \"%s\" is not two tokens", i, a);
            }
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            la = json_string_length(json_array_get(m, 0));
            lb = json_string_length(json_array_get(m, 1));
        } else {
            icl_buf_free(&cat);
            return fail(e, "merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
        }
        int32_t ia = vocab_id(t, a, la), ib = vocab_id(t, b, lb);
        cat.len = 0;
        icl_buf_append(&cat, a, la);
        icl_buf_append(&cat, b, lb);
        int32_t in = vocab_id(t, cat.data, cat.len);
        if (ia < 0 || ib < 0 || in < 0) {
            int r = fail(e, "merges[%zu]: token %.*s not in the vocab", i,
                         ia < 0 ? (int)la : ib < 0 ? (int)lb : (int)cat.len,
                         ia < 0 ? a : ib < 0 ? b : cat.data);
            icl_buf_free(&cat);
            return r;
        }
        icl_u64map_put(&t->merges, ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib, (int32_t)i, in);
    }
    icl_buf_free(&cat);
    return 0;
}

/* unit pairs inside tokens, for cutting long words (bpe.c) */
static void index_unit_pairs(icl_tokenizer *t)
{
    icl_u64map_init(&t->pairs, 1 << 16);
    for (int32_t id = 0; id < t->nids; id++) {
        if (!t->has[id])
            continue;
        const char *p = t->arena + t->poff[id];
        size_t n = t->plen[id], j = 0;
        if (n > t->max_piece_len)
            t->max_piece_len = n;
        long prev = -1;
        while (j < n) {
            uint32_t c = icl_utf8_next(p, n, &j);
            long u = c;
            if (t->byte_level)
                u = icl_cp_to_byte(c); /* -1: not a byte char, never adjacent */
            if (prev >= 0 && u >= 0)
                icl_u64map_put(&t->pairs, ((uint64_t)prev << 32) | (uint64_t)u, 0, 0);
            prev = u;
        }
    }
}

static int load_model(icl_tokenizer *t, json_t *model, json_t *added, errbuf *e)
{
    const char *ty = jstr(model, "type");
    if (!ty && json_object_get(model, "merges"))
        ty = "BPE";
    if (!ty || strcmp(ty, "BPE"))
        return fail(e, "unsupported model %s (only BPE)", ty ? ty : "(no type)");
    json_t *dr = json_object_get(model, "dropout");
    if (dr && !json_is_null(dr) && !(json_is_number(dr) && json_number_value(dr) == 0))
        return fail(e, "unsupported model option: BPE dropout must be null");
    const char *csp = jstr(model, "continuing_subword_prefix"), *ews = jstr(model, "end_of_word_suffix");
    if ((csp && *csp) || (ews && *ews))
        return fail(e, "unsupported model option: continuing_subword_prefix/end_of_word_suffix");
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab))
        return fail(e, "model BPE without a \"vocab\" object");
    if (merges && !json_is_array(merges))
        return fail(e, "model BPE: \"merges\" is not an array");
    t->fuse_unk = jbool(model, "fuse_unk", 0);
    t->byte_fallback = jbool(model, "byte_fallback", 0);
    t->ignore_merges = jbool(model, "ignore_merges", 0);

    /* ids */
    long maxid = -1;
    const char *k;
    json_t *v;
    size_t arena = 0;
    json_object_foreach(vocab, k, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_IDS)
            return fail(e, "vocab entry \"%s\": id must be an integer in 0..%ld", k, MAX_IDS - 1);
        if (json_integer_value(v) > maxid)
            maxid = (long)json_integer_value(v);
        arena += strlen(k) + 1;
    }
    size_t i;
    json_array_foreach(added, i, v)
    {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= MAX_IDS || !jstr(v, "content"))
            return fail(e, "added_tokens[%zu] needs a content and an id in 0..%ld", i, MAX_IDS - 1);
        if (json_integer_value(id) > maxid)
            maxid = (long)json_integer_value(id);
    }
    /* ids are dense in real vocabularies (tokenizers numbers them 0..n-1,
     * added tokens next); the vocabulary size is the largest id + 1 and
     * sizes a new model's embeddings, so one entry with id 16777215 would
     * make 16.7M rows of nothing: ids are bounded by the entries' count */
    size_t nent = json_object_size(vocab) + json_array_size(added);
    if (maxid >= 0 && (size_t)maxid >= 2 * nent + ID_SLACK)
        return fail(e, "vocab: id %ld is far beyond the %zu tokens listed (ids must be below twice their count plus %d)",
                    maxid, nent, ID_SLACK);
    t->nids = (int32_t)(maxid + 1);
    t->poff = icl_xcalloc((size_t)t->nids + 1, sizeof *t->poff);
    t->plen = icl_xcalloc((size_t)t->nids + 1, sizeof *t->plen);
    t->has = icl_xcalloc((size_t)t->nids + 1, 1);
    t->arena = icl_xmalloc(arena + 1);
    icl_strmap_init(&t->vocab, json_object_size(vocab));
    json_object_foreach(vocab, k, v)
    {
        int32_t id = (int32_t)json_integer_value(v);
        size_t l = strlen(k);
        if (t->has[id])
            return fail(e, "vocab: id %d is given to two tokens", id);
        memcpy(t->arena + t->arena_len, k, l + 1);
        t->poff[id] = (uint32_t)t->arena_len;
        t->plen[id] = (uint32_t)l;
        t->has[id] = 1;
        t->arena_len += l + 1;
        icl_strmap_put(&t->vocab, id, piece_get, t);
    }

    if (load_merges(t, merges, e))
        return -1;
    index_unit_pairs(t);

    t->unk_id = -1;
    const char *unk = jstr(model, "unk_token");
    if (unk) {
        t->unk_id = vocab_id(t, unk, strlen(unk));
        if (t->unk_id < 0)
            return fail(e, "model BPE: unk_token %s is not in the vocab", unk);
    }
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        t->byte_fallback_id[b] = vocab_id(t, hex, 6);
        char u[4];
        int l = icl_utf8_put(icl_byte_to_cp[b], u);
        t->byte_sym[b] = vocab_id(t, u, (size_t)l);
        if (b < 128) {
            char c = (char)b;
            t->ascii_sym[b] = vocab_id(t, &c, 1);
        }
    }
    return 0;
}

static int load_added(icl_tokenizer *t, json_t *added, errbuf *e)
{
    int rc = 0;
    size_t n = json_array_size(added), i;
    t->added = icl_xcalloc(n ? n : 1, sizeof *t->added);
    t->added_of_id = icl_xmalloc(((size_t)t->nids + 1) * sizeof *t->added_of_id);
    memset(t->added_of_id, 0xff, ((size_t)t->nids + 1) * sizeof *t->added_of_id);
    t->is_special = icl_xcalloc((size_t)t->nids + 1, 1);
    json_t *v;
    icl_buf nb = {0};
    pcre2_match_data *md = pcre2_match_data_create(16, NULL);
    json_array_foreach(added, i, v)
    {
        tok_added *a = &t->added[t->nadded++];
        a->id = (int32_t)json_integer_value(json_object_get(v, "id"));
        a->content = icl_xstrdup(jstr(v, "content"));
        a->special = jbool(v, "special", 0);
        a->lstrip = jbool(v, "lstrip", 0);
        a->rstrip = jbool(v, "rstrip", 0);
        a->single_word = jbool(v, "single_word", 0);
        a->normalized = jbool(v, "normalized", !a->special);
        /* tokens marked normalized are matched in normalized text, so their
         * content is normalized too (AddedVocabulary::refresh_added_tokens) */
        if (a->normalized && t->norm) {
            char m[256];
            if (icl_normalize(t->norm, md, a->content, strlen(a->content), 0, &nb, m, sizeof m) != 0 && rc == 0)
                rc = fail(e, "added token %d: %s", a->id, m);
            a->match = icl_xstrndup(nb.data, nb.len);
        } else {
            a->match = icl_xstrdup(a->content);
        }
        a->match_len = strlen(a->match);
        t->added_of_id[a->id] = (int32_t)i;
        t->is_special[a->id] = (int8_t)a->special;
        trie_add(a->normalized ? &t->trie_norm : &t->trie_raw, a->match, a->match_len, (int32_t)i);
    }
    icl_buf_free(&nb);
    pcre2_match_data_free(md);
    return rc;
}

static const char *added_content_get(const void *ctx, int32_t i, size_t *len)
{
    const char *c = jstr(json_array_get((json_t *)ctx, (size_t)i), "content");
    *len = strlen(c);
    return c;
}

/* tokenizers does not take an added token's id from the file: on loading it
 * adds the tokens in order (AddedVocabulary::add_tokens), skipping empty and
 * repeated contents; a token already in the model vocabulary gets that id,
 * any other the next id after the model vocabulary (model_n entries) and the
 * added ids so far, and a differing id in the file only draws a warning.  A
 * file whose ids disagree would be tokenized differently here (with the
 * file's ids) than there, so it is refused. */
static int check_added_ids(const icl_tokenizer *t, json_t *added, size_t model_n, errbuf *e)
{
    icl_strmap seen;
    icl_strmap_init(&seen, json_array_size(added));
    long max = -1;
    int rc = 0;
    size_t i;
    json_t *v;
    json_array_foreach(added, i, v)
    {
        const char *c = jstr(v, "content");
        size_t cl = strlen(c);
        if (cl == 0 || icl_strmap_get(&seen, c, cl, added_content_get, added) >= 0)
            continue;
        icl_strmap_put(&seen, (int32_t)i, added_content_get, added);
        long id = (long)json_integer_value(json_object_get(v, "id"));
        long want = vocab_id(t, c, cl);
        if (want < 0)
            want = max < 0 ? (long)model_n : (max >= (long)model_n || model_n == 0) ? max + 1 : (long)model_n;
        if (id != want) {
            rc = fail(e, "added_tokens[%zu] \"%s\" has id %ld, but Hugging Face tokenizers would "
                      "give it id %ld (added tokens not in the vocab take the next free ids, in order)",
                      i, c, id, want);
            break;
        }
        if (want > max)
            max = want;
    }
    icl_strmap_free(&seen);
    return rc;
}

/* ByteLevel must be the last pre-tokenizer: words stay raw bytes until BPE. */
static int check_bytelevel(const tok_pre *p, int last, errbuf *e, int *found)
{
    if (!p)
        return 0;
    if (p->type == P_BYTELEVEL) {
        if (!last)
            return fail(e, "unsupported pre_tokenizer: ByteLevel followed by other pre-tokenizers");
        *found = 1;
    }
    if (p->type == P_SEQ)
        for (int i = 0; i < p->nsub; i++)
            if (check_bytelevel(&p->sub[i], last && i == p->nsub - 1, e, found))
                return -1;
    return 0;
}

/* The first of names that is an added token marked special, or -1. */
static int32_t find_special(const icl_tokenizer *t, const char *const *names)
{
    for (int k = 0; names[k]; k++)
        for (int i = 0; i < t->nadded; i++)
            if (t->added[i].special && !strcmp(t->added[i].content, names[k]))
                return t->added[i].id;
    return -1;
}

/* The identity of a tokenizer: XXH3-64 over what decides its ids and text,
 * independent of the file's formatting and key order: the pieces by id, the
 * merges by rank, the added tokens, the model options and the components
 * (dumped compactly with sorted keys). */
static void fp_str(XXH3_state_t *h, const char *s, size_t n)
{
    XXH3_64bits_update(h, s, n);
    XXH3_64bits_update(h, "", 1);
}

static void fp_json(XXH3_state_t *h, json_t *v)
{
    char *d = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    fp_str(h, d ? d : "null", d ? strlen(d) : 4);
    free(d);
}

static uint64_t fingerprint(const icl_tokenizer *t, json_t *root)
{
    XXH3_state_t *h = XXH3_createState();
    if (!h)
        icl_out_of_memory("xxhash state");
    XXH3_64bits_reset(h);
    fp_str(h, "icl-tokenizer-1", 15);
    for (int32_t id = 0; id < t->nids; id++) {
        if (t->has[id])
            fp_str(h, t->arena + t->poff[id], t->plen[id]);
        else
            XXH3_64bits_update(h, "\x01", 1);
    }
    json_t *model = json_object_get(root, "model"), *m;
    size_t i;
    json_array_foreach(json_object_get(model, "merges"), i, m)
    {
        if (json_is_string(m)) {
            fp_str(h, json_string_value(m), json_string_length(m));
        } else {
            const char *a = json_string_value(json_array_get(m, 0)), *b = json_string_value(json_array_get(m, 1));
            XXH3_64bits_update(h, a, strlen(a));
            XXH3_64bits_update(h, " ", 1);
            fp_str(h, b, strlen(b));
        }
    }
    for (int k = 0; k < t->nadded; k++) {
        const tok_added *a = &t->added[k];
        char f[64];
        int l = snprintf(f, sizeof f, "%d %d%d%d%d%d", a->id, a->special, a->lstrip, a->rstrip,
                         a->single_word, a->normalized);
        fp_str(h, f, (size_t)l);
        fp_str(h, a->content, strlen(a->content));
    }
    static const char *opts[] = {"unk_token", "byte_fallback", "fuse_unk", "ignore_merges", NULL};
    for (int k = 0; opts[k]; k++)
        fp_json(h, json_object_get(model, opts[k]));
    static const char *comps[] = {"normalizer", "pre_tokenizer", "post_processor", "decoder", NULL};
    for (int k = 0; comps[k]; k++)
        fp_json(h, json_object_get(root, comps[k]));
    uint64_t r = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return r;
}

/* The message for a file that is not a tokenizer.json: what it looks like
 * (sniff.h; one_json: it parsed as one JSON document) and what -t takes; a file of a model folder that holds a
 * tokenizer.json (its config.json, its weights) is told to give the folder. */
static void not_a_tokenizer(const char *data, size_t len, const char *dir, int one_json, char *err, size_t errsz)
{
    icl_file_kind k = icl_sniff_mem(data, len);
    if (one_json && k == ICL_KIND_RECORDS) /* one JSON object, on one line */
        k = ICL_KIND_JSON;
    char what[160];
    if (k == ICL_KIND_EMPTY)
        snprintf(what, sizeof what, "an empty file");
    else if (k == ICL_KIND_JSON || (k == ICL_KIND_UNKNOWN && one_json))
        snprintf(what, sizeof what, "a JSON file without tokenizer.json's \"model\" object");
    else if (k == ICL_KIND_UNKNOWN)
        snprintf(what, sizeof what, "not JSON");
    else
        snprintf(what, sizeof what, "it looks like %s", icl_file_kind_name(k));
    char *tj = dir ? icl_path_join(dir, "tokenizer.json") : NULL;
    struct stat st;
    int sibling = tj && (k == ICL_KIND_MODEL_CONFIG || k == ICL_KIND_SAFETENSORS || k == ICL_KIND_TOKENIZER_CONFIG ||
                         k == ICL_KIND_GGUF) && stat(tj, &st) == 0 && S_ISREG(st.st_mode);
    if (sibling)
        snprintf(err, errsz, "not a tokenizer: %s; give its folder %s, which holds a tokenizer.json", what, dir);
    else
        snprintf(err, errsz, "not a tokenizer: %s; give a tokenizer.json, a model folder holding one, or a "
                 "GGUF file", what);
    free(tj);
}

icl_tokenizer *icl_tok_load_mem(const char *json, size_t len, const char *dir, char *err,
                                size_t errsz)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root) {
        size_t i = 0;
        while (i < len && strchr(" \t\r\n", json[i]) && json[i])
            i++;
        /* not JSON at all (CSV, text, token lines, weights) or JSON Lines:
         * another kind of file, said as sniff.h sees it */
        if (i == len || json[i] != '{' || strstr(je.text, "end of file expected"))
            not_a_tokenizer(json, len, dir, 0, err, errsz);
        else
            snprintf(err, errsz, "line %d: %s", je.line, je.text);
        return NULL;
    }
    if (!json_is_object(root) || !json_is_object(json_object_get(root, "model"))) {
        json_decref(root);
        not_a_tokenizer(json, len, dir, 1, err, errsz);
        return NULL;
    }
    icl_tokenizer *t = icl_tok_load_json(root, NULL, dir, err, errsz);
    json_decref(root);
    return t;
}

icl_tokenizer *icl_tok_load_json(json_t *root, json_t *cfg, const char *dir, char *err, size_t errsz)
{
    errbuf e = {err, errsz};
    icl_bytelevel_init();
    icl_tokenizer *t = icl_xcalloc(1, sizeof *t);
    t->sp.bos = t->sp.eos = t->sp.pad = t->sp.unk = t->sp.eot = -1;
    json_t *v;
    int found_bl = 0;
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added)) {
        fail(&e, "\"added_tokens\" is not an array");
        goto bad;
    }
    if (!json_is_object(root) || !json_is_object(json_object_get(root, "model"))) {
        fail(&e, "not a tokenizer (a JSON file without tokenizer.json's \"model\" object): give a tokenizer.json, a "
              "model folder holding one, or a GGUF file");
        goto bad;
    }
    if ((v = json_object_get(root, "normalizer")) && !json_is_null(v)) {
        t->norm = icl_xcalloc(1, sizeof *t->norm);
        if (parse_norm(v, t->norm, &e))
            goto bad;
    }
    if ((v = json_object_get(root, "pre_tokenizer")) && !json_is_null(v)) {
        t->pre = icl_xcalloc(1, sizeof *t->pre);
        if (parse_pre(v, t->pre, &e))
            goto bad;
        if (check_bytelevel(t->pre, 1, &e, &found_bl))
            goto bad;
    }
    t->byte_level = found_bl;
    if ((v = json_object_get(root, "decoder")) && !json_is_null(v)) {
        t->dec = icl_xcalloc(1, sizeof *t->dec);
        if (parse_dec(v, t->dec, &e))
            goto bad;
        int joined = 0;
        dec_kinds(t->dec, &joined, &t->dec_bytefallback, &t->dec_whole);
    }
    if (load_model(t, json_object_get(root, "model"), added, &e))
        goto bad;
    if (check_added_ids(t, added, json_object_size(json_object_get(json_object_get(root, "model"), "vocab")), &e))
        goto bad;
    if (load_added(t, added, &e))
        goto bad;
    if ((v = json_object_get(root, "post_processor")) && !json_is_null(v))
        if (parse_post(t, v, &e))
            goto bad;
    /* "truncation" and "padding" are encode-time options of the Python API;
     * icl has its own --max-len, so they are ignored rather than refused. */
    t->sp.unk = t->unk_id;
    t->fingerprint = fingerprint(t, root);
    if (read_neighbours(t, dir, &e))
        goto bad;
    if (cfg)
        apply_config(t, cfg);
    if (t->sp.eos < 0 && !t->eos_named) {
        static const char *const eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", NULL};
        t->sp.eos = find_special(t, eos_names);
    }
    if (t->sp.bos < 0 && !t->bos_named) {
        static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", NULL};
        t->sp.bos = find_special(t, bos_names);
    }
    if ((t->sp.bos >= t->nids) || (t->sp.eos >= t->nids)) {
        fail(&e, "special token id out of the vocabulary: bos %d, eos %d, %d ids (the ids may come from "
                 "generation_config.json or tokenizer_config.json beside it)", (int)t->sp.bos, (int)t->sp.eos,
             (int)t->nids);
        goto bad;
    }
    return t;
bad:
    icl_tok_free(t);
    return NULL;
}

/* A regular file starting with GGUF's magic. */
static int is_gguf_file(const char *path)
{
    char magic[4];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int yes = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    fclose(f);
    return yes;
}

icl_tokenizer *icl_tok_load(const char *path, char *err, size_t errsz)
{
    struct stat st;
    char *file, *dir;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && is_gguf_file(path)) {
        /* the path is named by icl_tok_load_gguf's messages: drop it here,
         * as the caller prefixes it */
        char e2[1024];
        icl_tokenizer *t = icl_tok_load_gguf(path, e2, sizeof e2);
        if (!t) {
            size_t pl = strlen(path);
            const char *m = !strncmp(e2, path, pl) && !strncmp(e2 + pl, ": ", 2) ? e2 + pl + 2 : e2;
            snprintf(err, errsz, "%s", m);
        }
        return t;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        file = icl_path_join(path, "tokenizer.json");
        dir = icl_xstrdup(path);
    } else {
        file = icl_xstrdup(path);
        const char *sl = strrchr(path, '/');
        dir = sl ? icl_xstrndup(path, (size_t)(sl - path)) : icl_xstrdup(".");
    }
    char *data;
    size_t len;
    icl_tokenizer *t = NULL;
    char rerr[512];
    if (!(data = icl_read_file(file, ICL_TOK_MAX_BYTES, &len, rerr, sizeof rerr))) {
        size_t fl = strlen(file);
        if (strcmp(file, path)) /* a directory: name the file looked for */
            snprintf(err, errsz, "%s", rerr);
        else /* the reader's reason ("larger than N bytes", "not a regular file"), without the path the caller prefixes */
            snprintf(err, errsz, "%s", !strncmp(rerr, file, fl) && !strncmp(rerr + fl, ": ", 2) ? rerr + fl + 2 : rerr);
    } else {
        t = icl_tok_load_mem(data, len, dir, err, errsz);
        free(data);
        if (t) {
            t->src = file;
            file = NULL;
        }
    }
    free(file);
    free(dir);
    return t;
}

void icl_tok_free(icl_tokenizer *t)
{
    if (!t)
        return;
    free(t->src);
    free(t->arena);
    free(t->poff);
    free(t->plen);
    free(t->has);
    icl_strmap_free(&t->vocab);
    if (t->merges.cap)
        icl_u64map_free(&t->merges);
    if (t->pairs.cap)
        icl_u64map_free(&t->pairs);
    icl_norm_free(t->norm);
    icl_pre_free(t->pre);
    icl_dec_free(t->dec);
    for (int i = 0; i < t->nadded; i++) {
        free(t->added[i].content);
        free(t->added[i].match);
    }
    free(t->added);
    trie_free(&t->trie_raw);
    trie_free(&t->trie_norm);
    free(t->is_special);
    free(t->added_of_id);
    free(t->chat_template);
    free(t);
}

int icl_tok_vocab_size(const icl_tokenizer *t) { return t->nids; }
uint64_t icl_tok_fingerprint(const icl_tokenizer *t) { return t->fingerprint; }
const icl_tok_specials *icl_tok_get_specials(const icl_tokenizer *t) { return &t->sp; }
int icl_tok_is_byte_level(const icl_tokenizer *t) { return t->byte_level; }
const char *icl_tok_chat_template(const icl_tokenizer *t) { return t->chat_template; }

const char *icl_tok_piece(const icl_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->nids)
        return NULL;
    if (t->added_of_id && t->added_of_id[id] >= 0) {
        /* tokenizers gives a token marked normalized back in its normalized
         * form ("WORLD" under Lowercase decodes as "world") */
        const tok_added *a = &t->added[t->added_of_id[id]];
        *len = a->match_len;
        return a->match;
    }
    if (!t->has[id])
        return NULL;
    *len = t->plen[id];
    return t->arena + t->poff[id];
}

int32_t icl_tok_id(const icl_tokenizer *t, const char *s, size_t len)
{
    for (int i = 0; i < t->nadded; i++)
        if (strlen(t->added[i].content) == len && !memcmp(t->added[i].content, s, len))
            return t->added[i].id;
    return vocab_id(t, s, len);
}

int icl_tok_is_special(const icl_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->nids && t->is_special && t->is_special[id];
}

/* ---- encoding ---- */

icl_tok_state *icl_tok_state_new(const icl_tokenizer *t)
{
    (void)t;
    icl_tok_state *s = icl_xcalloc(1, sizeof *s);
    s->cache = icl_bpe_cache_new();
    s->md = pcre2_match_data_create(64, NULL);
    if (!s->md)
        icl_out_of_memory("pcre2 match data");
    return s;
}

void icl_tok_state_free(icl_tok_state *s)
{
    if (!s)
        return;
    icl_bpe_cache_free(s->cache);
    pcre2_match_data_free(s->md);
    icl_buf_free(&s->norm);
    icl_buf_free(&s->store);
    icl_buf_free(&s->tmp);
    icl_pl_free(&s->pieces);
    free(s);
}

static int encode_text(const icl_tokenizer *t, icl_tok_state *st, const char *s, size_t n,
                       int first, int cont_mode, icl_ids *out, char *err, size_t errsz)
{
    if (icl_pretokenize(t->pre, st->md, s, n, first, cont_mode, &st->store, &st->pieces, err, errsz) != 0) {
        if (t->src) /* the fault is the tokenizer's: name it */
            err_prefix(err, errsz, t->src, ": ");
        return -1;
    }
    for (size_t k = 0; k < st->pieces.n; k++)
        icl_bpe_word(t, st->cache, st->store.data + st->pieces.off[k], st->pieces.len[k], out);
    return 0;
}

long icl_tok_state_dropped(const icl_tok_state *st, uint32_t *cp)
{
    if (st->dropped && cp)
        *cp = st->dropped_cp;
    return st->dropped;
}

long icl_tok_state_special_text(const icl_tok_state *st, int32_t *id)
{
    if (st->special_text && id)
        *id = st->special_text_id;
    return st->special_text;
}

/* The error of a character c[0..cl) that the vocabulary cannot spell (no
 * token, no byte-fallback token, no unknown token): where it first is in
 * s[0..n) (a raw byte of byte-level text: the character holding it; the
 * metaspace a space became: that space), as a character and a byte index. */
static void unknown_char_error(const char *s, size_t n, const char *c, size_t cl, char *err, size_t errsz)
{
    static const char meta[] = "\xe2\x96\x81";
    const char *p = memmem(s, n, c, cl);
    if (!p && cl == 3 && !memcmp(c, meta, 3))
        p = memchr(s, ' ', n);
    static const char why[] = "the tokenizer has no token for it, no byte-fallback token and no unknown token: "
                              "refused rather than dropped";
    if (!p) { /* made by the normalizer */
        size_t e = 0;
        uint32_t cp = icl_utf8_next(c, cl, &e);
        snprintf(err, errsz, "U+%04X%s: %s", (unsigned)cp,
                 cl == 3 && !memcmp(c, meta, 3) ? " '\xe2\x96\x81' (the mark SentencePiece puts at the start of the "
                                                  "text and for each space)" : " (made by the tokenizer's normalizer)",
                 why);
        return;
    }
    size_t at = (size_t)(p - s), k = at, chars = 0;
    while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80)
        k--; /* the start of the character holding a byte-level byte */
    for (size_t i = 0; i < k; i++)
        chars += ((uint8_t)s[i] & 0xC0) != 0x80;
    size_t e = k;
    uint32_t cp = icl_utf8_next(s, n, &e);
    char shown[16] = "";
    if (cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp < 0xa0))
        snprintf(shown, sizeof shown, " '%.*s'", (int)(e - k), s + k);
    snprintf(err, errsz, "character %zu (byte %zu), U+%04X%s: %s", chars + 1, k, (unsigned)cp, shown, why);
}

int icl_tok_encode(const icl_tokenizer *t, icl_tok_state *st, const char *s, size_t n, int flags,
                   icl_ids *out, char *err, size_t errsz)
{
    size_t bad = icl_utf8_valid(s, n);
    if (bad != n) {
        snprintf(err, errsz, "invalid UTF-8 at byte %zu", bad);
        return -1;
    }
    icl_tok_state *own = NULL;
    if (!st)
        st = own = icl_tok_state_new(t);
    int ps = flags & ICL_TOK_PARSE_SPECIAL, cont = (flags & ICL_TOK_CONTINUATION) != 0;
    segs raw = {0}, nseg = {0};
    int rc = 0;
    size_t n0 = out->n, dl;
    char dc[4];
    icl_bpe_dropped(st->cache, dc, &dl); /* count this text's drops only */
    added_split(t, &t->trie_raw, s, n, ps, st, &raw);
    for (size_t i = 0; i < raw.n && rc == 0; i += 3) {
        size_t a = raw.a[i], b = raw.a[i + 1];
        long idx = (long)raw.a[i + 2];
        if (idx >= 0) {
            icl_ids_push(out, t->added[idx].id);
            continue;
        }
        int first = a == 0;
        if (icl_normalize(t->norm, st->md, s + a, b - a, first && cont, &st->norm, err, errsz) != 0) {
            if (t->src) /* the fault is the tokenizer's: name it */
                err_prefix(err, errsz, t->src, ": normalizer: ");
            rc = -1;
            break;
        }
        /* st->norm is reused by nothing below: copy not needed */
        added_split(t, &t->trie_norm, st->norm.data, st->norm.len, ps, st, &nseg);
        for (size_t j = 0; j < nseg.n && rc == 0; j += 3) {
            size_t a2 = nseg.a[j], b2 = nseg.a[j + 1];
            long idx2 = (long)nseg.a[j + 2];
            if (idx2 >= 0)
                icl_ids_push(out, t->added[idx2].id);
            else
                rc = encode_text(t, st, st->norm.data + a2, b2 - a2, first && a2 == 0, cont, out, err, errsz);
        }
    }
    size_t nd = rc == 0 ? icl_bpe_dropped(st->cache, dc, &dl) : 0;
    if (nd && t->unknown_is_error) {
        unknown_char_error(s, n, dc, dl, err, errsz);
        out->n = n0;
        rc = -1;
    } else if (nd) {
        if (!st->dropped) { /* the character in s holding it (a byte-level byte), else as made */
            const char *p = memmem(s, n, dc, dl);
            size_t k = p ? (size_t)(p - s) : 0, e;
            while (p && k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80)
                k--;
            e = k;
            st->dropped_cp = p ? icl_utf8_next(s, n, &e) : icl_utf8_next(dc, dl, &(size_t){0});
        }
        st->dropped += (long)nd;
    }
    free(raw.a);
    free(nseg.a);
    icl_tok_state_free(own);
    return rc;
}

/* ---- decoding ---- */

/* Rust's String::from_utf8_lossy: each maximal invalid subpart -> U+FFFD. */
static void lossy_append(icl_buf *out, const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            size_t j = i;
            while (j < n && s[j] < 0x80)
                j++;
            icl_buf_append(out, s + i, j - i);
            i = j;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        } else {
            icl_buf_append(out, "\xEF\xBF\xBD", 3);
            i++;
            continue;
        }
        size_t j = i + 1, got = 0;
        while (got < need && j < n) {
            uint8_t d = s[j];
            if (got == 0 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF))
                break;
            j++;
            got++;
        }
        if (got == need)
            icl_buf_append(out, s + i, j - i);
        else
            icl_buf_append(out, "\xEF\xBF\xBD", 3);
        i = j;
    }
}

/* A list of token strings: offsets into a buffer. */
typedef struct {
    icl_buf b;
    piece_list p;
} toklist;

static void tl_add(toklist *l, const char *s, size_t n)
{
    size_t o = l->b.len;
    icl_buf_append(&l->b, s, n);
    icl_pl_push(&l->p, o, n, 0);
}

static void tl_reset(toklist *l)
{
    l->b.len = 0;
    l->p.n = 0;
}

static void tl_swap(toklist *a, toklist *b)
{
    toklist x = *a;
    *a = *b;
    *b = x;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* ByteLevel decoder: byte-level chars back to bytes (a piece that is not
 * all byte-level chars is kept as it is), then lossy UTF-8. */
static void dec_bytelevel(const toklist *in, toklist *out)
{
    icl_buf bytes = {0};
    const char *B = in->b.data;
    for (size_t k = 0; k < in->p.n; k++) {
        const char *s = B + in->p.off[k];
        size_t n = in->p.len[k], i = 0, mark = bytes.len;
        int ok = 1;
        while (i < n) {
            int b = icl_cp_to_byte(icl_utf8_next(s, n, &i));
            if (b < 0) {
                ok = 0;
                break;
            }
            icl_buf_putc(&bytes, b);
        }
        if (!ok) {
            bytes.len = mark;
            icl_buf_append(&bytes, s, n);
        }
    }
    icl_buf o = {0};
    lossy_append(&o, (const uint8_t *)bytes.data, bytes.len);
    tl_add(out, o.data ? o.data : "", o.len);
    icl_buf_free(&o);
    icl_buf_free(&bytes);
}

/* The byte of a piece "<0xNN>" (two hex digits), or -1. */
static int byte_token(const char *s, size_t n)
{
    if (!s || n != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
        return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    return h >= 0 && l >= 0 ? h * 16 + l : -1;
}

/* ByteFallback decoder: runs of <0xNN> pieces become their bytes when valid
 * UTF-8, else one U+FFFD per byte.  *tail (if tail) is set when the last
 * piece is one (its run may go on: icl_tok_stream_put). */
static void dec_bytefallback(const toklist *in, toklist *out, int *tail)
{
    icl_buf pend = {0};
    const char *B = in->b.data;
    for (size_t k = 0; k <= in->p.n; k++) {
        const char *s = k < in->p.n ? B + in->p.off[k] : NULL;
        size_t n = k < in->p.n ? in->p.len[k] : 0;
        int byte = byte_token(s, n);
        if (byte >= 0) {
            icl_buf_putc(&pend, byte);
            if (tail && k + 1 == in->p.n)
                *tail = 1;
            continue;
        }
        if (pend.len) {
            if (icl_utf8_valid(pend.data, pend.len) == pend.len)
                tl_add(out, pend.data, pend.len);
            else
                for (size_t q = 0; q < pend.len; q++)
                    tl_add(out, "\xEF\xBF\xBD", 3);
            pend.len = 0;
        }
        if (s)
            tl_add(out, s, n);
    }
    icl_buf_free(&pend);
}

/* A failure (a Replace regex that gave up) is counted in *nfail, its
 * message written to err for the first one; the step goes on. */
static void dec_step(const tok_dec *d, toklist *in, toklist *out, pcre2_match_data *md, int cont,
                     int *nfail, char *err, size_t errsz, int *tail)
{
    tl_reset(out);
    switch (d->type) {
    case D_BYTELEVEL:
        dec_bytelevel(in, out);
        return;
    case D_BYTEFALLBACK:
        dec_bytefallback(in, out, tail);
        return;
    case D_FUSE: {
        icl_buf all = {0};
        for (size_t k = 0; k < in->p.n; k++)
            icl_buf_append(&all, in->b.data + in->p.off[k], in->p.len[k]);
        tl_add(out, all.data ? all.data : "", all.len);
        icl_buf_free(&all);
        return;
    }
    case D_STRIP: {
        size_t ci = 0, cl = strlen(d->s1);
        uint32_t cc = cl ? icl_utf8_next(d->s1, cl, &ci) : 0;
        for (size_t k = 0; k < in->p.n; k++) {
            const char *s = in->b.data + in->p.off[k];
            size_t n = in->p.len[k], a = 0, b = n;
            int start = (cont && k == 0) ? 0 : d->start;
            for (int r = 0; r < start && a < b; r++) {
                size_t j = a;
                if (icl_utf8_next(s, n, &j) != cc)
                    break;
                a = j;
            }
            for (int r = 0; r < d->stop && b > a; r++) {
                size_t j = b - 1;
                while (j > a && ((uint8_t)s[j] & 0xC0) == 0x80)
                    j--;
                size_t q = j;
                if (icl_utf8_next(s, n, &q) != cc)
                    break;
                b = j;
            }
            tl_add(out, s + a, b - a);
        }
        return;
    }
    case D_REPLACE: {
        icl_buf cur = {0}, tmp = {0};
        tok_norm fake = {.type = N_REPLACE, .s1 = d->s1, .s2 = d->s2, .re = d->re};
        for (size_t k = 0; k < in->p.n; k++) {
            if (icl_normalize(&fake, md, in->b.data + in->p.off[k], in->p.len[k], 0, &cur, *nfail ? NULL : err,
                              *nfail ? 0 : errsz) != 0) {
                if (!*nfail) /* the first failure's message: name the component */
                    err_prefix(err, errsz, "decoder", " ");
                ++*nfail;
            }
            tl_add(out, cur.data, cur.len);
        }
        icl_buf_free(&cur);
        icl_buf_free(&tmp);
        return;
    }
    case D_METASPACE: {
        icl_buf cur = {0};
        for (size_t k = 0; k < in->p.n; k++) {
            const char *s = in->b.data + in->p.off[k];
            size_t n = in->p.len[k], i = 0;
            cur.len = 0;
            while (i < n) {
                if (n - i >= (size_t)d->rep_len && !memcmp(s + i, d->rep, (size_t)d->rep_len)) {
                    if (!(k == 0 && !cont && d->prepend != 0))
                        icl_buf_putc(&cur, ' ');
                    i += (size_t)d->rep_len;
                } else {
                    icl_buf_putc(&cur, s[i]);
                    i++;
                }
            }
            tl_add(out, cur.data ? cur.data : "", cur.len);
        }
        icl_buf_free(&cur);
        return;
    }
    case D_SEQ: {
        toklist a = {0};
        for (size_t k = 0; k < in->p.n; k++)
            tl_add(&a, in->b.data + in->p.off[k], in->p.len[k]);
        toklist b = {0};
        for (int i = 0; i < d->nsub; i++) {
            dec_step(&d->sub[i], &a, &b, md, cont, nfail, err, errsz, tail);
            tl_swap(&a, &b);
        }
        for (size_t k = 0; k < a.p.n; k++)
            tl_add(out, a.b.data + a.p.off[k], a.p.len[k]);
        icl_buf_free(&a.b);
        icl_pl_free(&a.p);
        icl_buf_free(&b.b);
        icl_pl_free(&b.p);
        return;
    }
    }
}

/* icl_tok_decode; *tail (if tail) is set when a ByteFallback decoder's
 * text ends in a run of byte tokens. */
static int decode_ids(const icl_tokenizer *t, const int32_t *ids, size_t n, int skip_special, int flags,
                      icl_buf *out, char *err, size_t errsz, int *tail)
{
    toklist in = {0}, res = {0};
    int nfail = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *s = icl_tok_piece(t, ids[i], &l);
        if (!s) {
            snprintf(err, errsz, "token id %d is not in the vocabulary (size %d)", ids[i], t->nids);
            icl_buf_free(&in.b);
            icl_pl_free(&in.p);
            return -1;
        }
        if (skip_special && icl_tok_is_special(t, ids[i]))
            continue;
        tl_add(&in, s, l);
    }
    icl_buf_reserve(out, 1);
    if (!t->dec) {
        for (size_t k = 0; k < in.p.n; k++) {
            if (k)
                icl_buf_putc(out, ' ');
            icl_buf_append(out, in.b.data + in.p.off[k], in.p.len[k]);
        }
    } else if (in.p.n) {
        pcre2_match_data *md = pcre2_match_data_create(16, NULL);
        dec_step(t->dec, &in, &res, md, (flags & ICL_TOK_CONTINUATION) != 0, &nfail, err, errsz, tail);
        pcre2_match_data_free(md);
        for (size_t k = 0; k < res.p.n; k++)
            icl_buf_append(out, res.b.data + res.p.off[k], res.p.len[k]);
    }
    icl_buf_free(&in.b);
    icl_pl_free(&in.p);
    icl_buf_free(&res.b);
    icl_pl_free(&res.p);
    if (nfail && t->src) /* the fault is the tokenizer's: name it */
        err_prefix(err, errsz, t->src, ": ");
    return nfail ? -1 : 0;
}

int icl_tok_decode(const icl_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                   int flags, icl_buf *out, char *err, size_t errsz)
{
    return decode_ids(t, ids, n, skip_special, flags, out, err, errsz, NULL);
}

/* ---- streaming decode ---- */

void icl_tok_stream_init(icl_tok_stream *s, int flags, int skip_special)
{
    memset(s, 0, sizeof *s);
    s->flags = flags;
    s->skip_special = skip_special;
}

void icl_tok_stream_free(icl_tok_stream *s)
{
    icl_ids_free(&s->ids);
    icl_buf_free(&s->a);
    icl_buf_free(&s->b);
}

static int ends_incomplete(const icl_buf *b)
{
    return b->len >= 3 && !memcmp(b->data + b->len - 3, "\xEF\xBF\xBD", 3);
}

/* Decodes the window without (s->a) and with (s->b) the ids not yet
 * released; *tail as decode_ids gives it for s->b. */
static int stream_decode(const icl_tokenizer *t, icl_tok_stream *s, int *tail, char *err, size_t errsz)
{
    int fl = s->flags | (s->started ? ICL_TOK_CONTINUATION : 0);
    s->a.len = 0;
    s->b.len = 0;
    *tail = 0;
    if (decode_ids(t, s->ids.v, s->read, s->skip_special, fl, &s->a, err, errsz, NULL) ||
        decode_ids(t, s->ids.v, s->ids.n, s->skip_special, fl, &s->b, err, errsz, tail))
        return -1;
    return 0;
}

/* Appends to out what the window's text s->b adds to the released ids'
 * text s->a.  Should a decoder have changed text already released (a is
 * not a prefix of b: put holds what may change, so this is a guard), the
 * rest starts at b's first character boundary at or after a's length: out
 * stays UTF-8. */
static void stream_release(const icl_tok_stream *s, icl_buf *out)
{
    size_t from = s->a.len < s->b.len ? s->a.len : s->b.len;
    while (from < s->b.len && ((uint8_t)s->b.data[from] & 0xC0) == 0x80)
        from++;
    icl_buf_append(out, s->b.data + from, s->b.len - from);
}

/* As tokenizers' DecodeStream::step: decode the window without and with
 * the ids not yet released; release the difference when it grew, does not
 * end in U+FFFD and does not end in a run of byte tokens (a ByteFallback
 * decoder makes a run that is not UTF-8 as a whole one U+FFFD per token:
 * "<0x41>" alone is "A", followed by "<0xA0>" two U+FFFD); then the window
 * starts at the ids just released.  Held without decoding: a skipped
 * special token (no text), a piece "<0xNN>" under a ByteFallback decoder,
 * and every id under a decoder that works on the joined text (t->dec_whole,
 * dec_kinds: released at the flush). */
int icl_tok_stream_put(const icl_tokenizer *t, icl_tok_stream *s, int32_t id, icl_buf *out,
                       char *err, size_t errsz)
{
    size_t n;
    const char *p = icl_tok_piece(t, id, &n);
    if (!p) {
        snprintf(err, errsz, "token id %d is not in the vocabulary (size %d)", id, t->nids);
        return -1;
    }
    icl_ids_push(&s->ids, id);
    if (t->dec_whole || (s->skip_special && icl_tok_is_special(t, id)) ||
        (t->dec_bytefallback && byte_token(p, n) >= 0))
        return 0;
    int tail;
    if (stream_decode(t, s, &tail, err, errsz))
        return -1;
    if (s->b.len > s->a.len && !ends_incomplete(&s->b) && !tail) {
        stream_release(s, out);
        /* keep the ids just released as the new prefix */
        size_t keep = s->ids.n - s->read;
        memmove(s->ids.v, s->ids.v + s->read, keep * sizeof *s->ids.v);
        s->ids.n = keep;
        s->read = keep;
        s->started = 1;
    }
    return 0;
}

int icl_tok_stream_peek(const icl_tokenizer *t, icl_tok_stream *s, icl_buf *out, char *err, size_t errsz)
{
    int tail;
    if (s->ids.n == s->read)
        return 0;
    if (stream_decode(t, s, &tail, err, errsz))
        return -1;
    stream_release(s, out);
    return 0;
}

int icl_tok_stream_flush(const icl_tokenizer *t, icl_tok_stream *s, icl_buf *out, char *err,
                         size_t errsz)
{
    if (s->ids.n == s->read)
        return 0;
    if (icl_tok_stream_peek(t, s, out, err, errsz))
        return -1;
    s->ids.n = 0;
    s->read = 0;
    s->started = 1;
    return 0;
}
