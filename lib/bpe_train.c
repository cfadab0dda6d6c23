/* bpe_train.c - see bpe_train.h.  The loop mirrors tokenizers'
 * BpeTrainer::do_train and Word::merge step by step, including its lazy
 * heap (an entry whose count went stale is re-pushed with the current
 * count) and its per-entry sets of words to update, so that the merges come
 * out in the same order. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_train.h"
#include "tok_internal.h"

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static void iv_push(ivec *a, int32_t x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 4;
        a->v = icl_xreallocarray(a->v, a->cap, sizeof *a->v);
    }
    a->v[a->n++] = x;
}

typedef struct {
    int64_t count;
    uint64_t pair;
    ivec pos;
} qentry;

struct icl_bpe_trainer {
    int vocab_size;
    long min_frequency;
    char **specials;
    int nspecial;
    size_t final_vocab; /* entries in the vocabulary written by finish */
    pcre2_code *re;
    pcre2_match_data *md;
    /* words: raw bytes in an arena, counted */
    icl_buf warena;
    uint32_t *woff, *wlen;
    uint64_t *wcount;
    size_t nwords, wcap;
    icl_strmap wmap;
};

static const char *word_get(const void *ctx, int32_t id, size_t *len)
{
    const icl_bpe_trainer *tr = ctx;
    *len = tr->wlen[id];
    return tr->warena.data + tr->woff[id];
}

icl_bpe_trainer *icl_bpe_trainer_new(int vocab_size, long min_frequency, const char *const *specials,
                                     int nspecial)
{
    icl_bpe_trainer *tr = icl_xcalloc(1, sizeof *tr);
    char err[256];
    icl_bytelevel_init();
    tr->vocab_size = vocab_size;
    tr->min_frequency = min_frequency;
    /* a repeated special token is added once, as BpeTrainer's
     * add_special_tokens skips tokens already in the vocabulary */
    tr->specials = icl_xcalloc((size_t)nspecial + 1, sizeof *tr->specials);
    for (int i = 0; i < nspecial; i++) {
        int seen = 0;
        for (int j = 0; j < tr->nspecial; j++)
            seen |= !strcmp(tr->specials[j], specials[i]);
        if (!seen)
            tr->specials[tr->nspecial++] = icl_xstrdup(specials[i]);
    }
    tr->re = icl_re_compile(icl_gpt2_pattern, strlen(icl_gpt2_pattern), 0, err, sizeof err);
    if (!tr->re) /* a constant pattern that compiles: only memory can fail */
        icl_out_of_memory(err);
    tr->md = pcre2_match_data_create(16, NULL);
    icl_strmap_init(&tr->wmap, 1024);
    return tr;
}

size_t icl_bpe_trainer_vocab(const icl_bpe_trainer *tr) { return tr->final_vocab; }

void icl_bpe_trainer_free(icl_bpe_trainer *tr)
{
    if (!tr)
        return;
    for (int i = 0; i < tr->nspecial; i++)
        free(tr->specials[i]);
    free(tr->specials);
    pcre2_code_free(tr->re);
    pcre2_match_data_free(tr->md);
    icl_buf_free(&tr->warena);
    free(tr->woff);
    free(tr->wlen);
    free(tr->wcount);
    icl_strmap_free(&tr->wmap);
    free(tr);
}

static int add_word(icl_bpe_trainer *tr, const char *s, size_t n, char *err, size_t errsz)
{
    if (n == 0)
        return 0;
    int32_t id = icl_strmap_get(&tr->wmap, s, n, word_get, tr);
    if (id >= 0) {
        tr->wcount[id]++;
        return 0;
    }
    if (tr->nwords == tr->wcap) {
        tr->wcap = tr->wcap ? tr->wcap * 2 : 1024;
        tr->woff = icl_xreallocarray(tr->woff, tr->wcap, sizeof *tr->woff);
        tr->wlen = icl_xreallocarray(tr->wlen, tr->wcap, sizeof *tr->wlen);
        tr->wcount = icl_xreallocarray(tr->wcount, tr->wcap, sizeof *tr->wcount);
    }
    if (tr->warena.len + n > UINT32_MAX) {
        icl_seterr(err, errsz, "bpe training: more than 4 GB of distinct words");
        return -1;
    }
    id = (int32_t)tr->nwords++;
    tr->woff[id] = (uint32_t)tr->warena.len;
    tr->wlen[id] = (uint32_t)n;
    tr->wcount[id] = 1;
    icl_buf_append(&tr->warena, s, n);
    icl_strmap_put(&tr->wmap, id, word_get, tr);
    return 0;
}

int icl_bpe_trainer_feed(icl_bpe_trainer *tr, const char *s, size_t n, char *err, size_t errsz)
{
    size_t pos = 0;
    while (pos < n) {
        int rc = pcre2_match(tr->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, tr->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            icl_seterr(err, errsz, "bpe training: pre-tokenizer regex failed: %s", (char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tr->md);
        if (ov[1] == ov[0]) { /* cannot happen with GPT-2's pattern */
            pos = ov[1] + 1;
            continue;
        }
        if (add_word(tr, s + ov[0], ov[1] - ov[0], err, errsz) != 0)
            return -1;
        pos = ov[1];
    }
    return 0;
}

int icl_bpe_trainer_feed_lines(icl_bpe_trainer *tr, const char *s, size_t n, char *err, size_t errsz)
{
    size_t a = 0;
    while (a < n) {
        const char *nl = memchr(s + a, '\n', n - a);
        size_t e = nl ? (size_t)(nl - s) + 1 : n;
        if (icl_bpe_trainer_feed(tr, s + a, e - a, err, errsz) != 0)
            return -1;
        a = e;
    }
    return 0;
}

/* ---- training ---- */

/* max-heap: higher count first, then the smaller pair */
static int q_before(const qentry *x, const qentry *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    return x->pair < y->pair;
}

typedef struct {
    qentry **a;
    size_t n, cap;
} heap;

static void hpush(heap *h, qentry *e)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 1024;
        h->a = icl_xreallocarray(h->a, h->cap, sizeof *h->a);
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!q_before(e, h->a[p]))
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = e;
}

static qentry *hpop(heap *h)
{
    qentry *top = h->a[0], *last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && q_before(h->a[c + 1], h->a[c]))
            c++;
        if (!q_before(h->a[c], last))
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n)
        h->a[i] = last;
    return top;
}

/* pair -> count (u64map a: index into counts) */
typedef struct {
    icl_u64map idx;
    int64_t *cnt;
    size_t n, cap;
} pcounts;

static int64_t *pc_ref(pcounts *p, uint64_t pair)
{
    long s = icl_u64map_find(&p->idx, pair);
    if (s >= 0)
        return &p->cnt[p->idx.e[s].a];
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 4096;
        p->cnt = icl_xreallocarray(p->cnt, p->cap, sizeof *p->cnt);
    }
    p->cnt[p->n] = 0;
    icl_u64map_put(&p->idx, pair, (int32_t)p->n, 0);
    return &p->cnt[p->n++];
}

/* where_to_update: pair -> word set (insertion order, deduplicated) */
typedef struct {
    icl_u64map idx; /* a: index into sets */
    uint64_t *pair;
    ivec *set;
    size_t n, cap;
} wtu;

static void wtu_insert(wtu *w, uint64_t pair, int32_t word)
{
    long s = icl_u64map_find(&w->idx, pair);
    ivec *v;
    if (s >= 0) {
        v = &w->set[w->idx.e[s].a];
        /* a word's pairs are inserted together and a word comes once per
         * phase (initial count, or one merge), so a duplicate is the last */
        if (v->n && v->v[v->n - 1] == word)
            return;
    } else {
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 1024;
            w->pair = icl_xreallocarray(w->pair, w->cap, sizeof *w->pair);
            w->set = icl_xreallocarray(w->set, w->cap, sizeof *w->set);
        }
        w->pair[w->n] = pair;
        memset(&w->set[w->n], 0, sizeof(ivec));
        icl_u64map_put(&w->idx, pair, (int32_t)w->n, 0);
        v = &w->set[w->n++];
    }
    iv_push(v, word);
}

static void wtu_reset(wtu *w)
{
    icl_u64map_free(&w->idx);
    icl_u64map_init(&w->idx, 64);
    w->n = 0;
}

/* Move every pair collected in w onto the queue with its current count (the
 * queue entry takes the pair's word set); pairs whose count is no longer
 * positive are dropped.  Leaves w empty. */
static void queue_pairs(heap *h, wtu *w, pcounts *pc)
{
    for (size_t k = 0; k < w->n; k++) {
        int64_t c = *pc_ref(pc, w->pair[k]);
        if (c > 0) {
            qentry *e = icl_xmalloc(sizeof *e);
            e->count = c;
            e->pair = w->pair[k];
            e->pos = w->set[k];
            hpush(h, e);
        } else {
            free(w->set[k].v);
        }
    }
    wtu_reset(w);
}

#define PAIR(a, b) (((uint64_t)(uint32_t)(a) << 32) | (uint32_t)(b))

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* tokenizer.json, as HF's Tokenizer::save writes it for this model */
static void write_json(const icl_bpe_trainer *tr, char **tok, size_t ntok, const uint64_t *merges,
                       size_t nmerges, icl_buf *out)
{
    json_t *root = json_object(), *added = json_array();
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "truncation", json_null());
    json_object_set_new(root, "padding", json_null());
    for (int i = 0; i < tr->nspecial; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "id", json_integer(i));
        json_object_set_new(o, "content", json_string(tr->specials[i]));
        json_object_set_new(o, "single_word", json_false());
        json_object_set_new(o, "lstrip", json_false());
        json_object_set_new(o, "rstrip", json_false());
        json_object_set_new(o, "normalized", json_false());
        json_object_set_new(o, "special", json_true());
        json_array_append_new(added, o);
    }
    json_object_set_new(root, "added_tokens", added);
    json_object_set_new(root, "normalizer", json_null());
    json_t *pre = json_object();
    json_object_set_new(pre, "type", json_string("ByteLevel"));
    json_object_set_new(pre, "add_prefix_space", json_false());
    json_object_set_new(pre, "trim_offsets", json_true());
    json_object_set_new(pre, "use_regex", json_true());
    json_object_set_new(root, "pre_tokenizer", pre);
    json_object_set_new(root, "post_processor", json_null());
    json_t *dec = json_object();
    json_object_set_new(dec, "type", json_string("ByteLevel"));
    json_object_set_new(dec, "add_prefix_space", json_true());
    json_object_set_new(dec, "trim_offsets", json_true());
    json_object_set_new(dec, "use_regex", json_true());
    json_object_set_new(root, "decoder", dec);
    json_t *model = json_object(), *vocab = json_object(), *mj = json_array();
    json_object_set_new(model, "type", json_string("BPE"));
    json_object_set_new(model, "dropout", json_null());
    json_object_set_new(model, "unk_token", json_null());
    json_object_set_new(model, "continuing_subword_prefix", json_null());
    json_object_set_new(model, "end_of_word_suffix", json_null());
    json_object_set_new(model, "fuse_unk", json_false());
    json_object_set_new(model, "byte_fallback", json_false());
    json_object_set_new(model, "ignore_merges", json_false());
    for (size_t j = 0; j < ntok; j++)
        json_object_set_new(vocab, tok[j], json_integer((json_int_t)j));
    for (size_t m = 0; m < nmerges; m++) {
        json_t *pr = json_array();
        json_array_append_new(pr, json_string(tok[merges[m] >> 32]));
        json_array_append_new(pr, json_string(tok[merges[m] & 0xffffffffu]));
        json_array_append_new(mj, pr);
    }
    json_object_set_new(model, "vocab", vocab);
    json_object_set_new(model, "merges", mj);
    json_object_set_new(root, "model", model);
    char *txt = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    icl_buf_puts(out, txt);
    icl_buf_putc(out, '\n');
    free(txt);
    json_decref(root);

}

/* Merge the pair (a, b) into nid in every word listed in pos, as
 * Word::merge does, updating the pair counts and the words-to-update set. */
static void merge_words(const icl_bpe_trainer *tr, const ivec *pos, int32_t a, int32_t b, int32_t nid,
                        int32_t *sym, const size_t *soff, uint32_t *slen, pcounts *pc, wtu *w)
{
    for (size_t q = 0; q < pos->n; q++) {
        int32_t wi = pos->v[q];
        int32_t *s = sym + soff[wi];
        uint32_t n = slen[wi];
        int64_t wc = (int64_t)tr->wcount[wi];
        for (uint32_t i = 0; i < n; i++) {
            if (s[i] == a && i + 1 < n && s[i + 1] == b) {
                if (i > 0) {
                    *pc_ref(pc, PAIR(s[i - 1], a)) -= wc;
                    *pc_ref(pc, PAIR(s[i - 1], nid)) += wc;
                    wtu_insert(w, PAIR(s[i - 1], nid), wi);
                }
                s[i] = nid;
                memmove(s + i + 1, s + i + 2, (n - i - 2) * sizeof *s);
                n--;
                if (i + 1 < n) {
                    *pc_ref(pc, PAIR(b, s[i + 1])) -= wc;
                    *pc_ref(pc, PAIR(nid, s[i + 1])) += wc;
                    wtu_insert(w, PAIR(nid, s[i + 1]), wi);
                }
            }
        }
        slen[wi] = n;
    }
}

/* The first entries of the vocabulary in tok: the specials, then the 256
 * byte-level characters sorted by code point (a special equal to one is
 * not repeated); sym_of_byte gets each byte's id.  Returns the count. */
static size_t init_vocab(const icl_bpe_trainer *tr, char **tok, int32_t sym_of_byte[256])
{
    size_t ntok = 0;
    for (int i = 0; i < tr->nspecial; i++) {
        tok[ntok++] = icl_xstrdup(tr->specials[i]);
    }
    uint32_t cps[256];
    for (int b = 0; b < 256; b++)
        cps[b] = icl_byte_to_cp[b];
    qsort(cps, 256, sizeof *cps, cmp_u32);
    for (int k = 0; k < 256; k++) {
        char u[5] = {0};
        icl_utf8_put(cps[k], u);
        int dup = -1;
        for (size_t j = 0; j < ntok; j++)
            if (!strcmp(tok[j], u))
                dup = (int)j;
        int32_t id;
        if (dup >= 0) {
            id = dup;
        } else {
            id = (int32_t)ntok;
            tok[ntok++] = icl_xstrdup(u);
        }
        sym_of_byte[icl_cp_to_byte(cps[k])] = id;
    }
    return ntok;
}

/* Each distinct word as an array of byte-level symbol ids: word i is
 * sym[soff[i] .. soff[i] + slen[i]).  Caller frees the three arrays. */
static int32_t *word_symbols(const icl_bpe_trainer *tr, const int32_t sym_of_byte[256], size_t **soffp,
                             uint32_t **slenp)
{
    size_t nw = tr->nwords, total = 0;
    size_t *soff = *soffp = icl_xmalloc((nw + 1) * sizeof *soff);
    uint32_t *slen = *slenp = icl_xmalloc((nw + 1) * sizeof *slen);
    for (size_t i = 0; i < nw; i++) {
        soff[i] = total;
        slen[i] = tr->wlen[i];
        total += tr->wlen[i];
    }
    int32_t *sym = icl_xmalloc((total + 1) * sizeof *sym);
    for (size_t i = 0; i < nw; i++)
        for (uint32_t k = 0; k < tr->wlen[i]; k++)
            sym[soff[i] + k] = sym_of_byte[(uint8_t)tr->warena.data[tr->woff[i] + k]];
    return sym;
}

/* Count every adjacent pair of every word (times the word's count) into pc
 * and note in w which words hold it. */
static void count_pairs(const icl_bpe_trainer *tr, const int32_t *sym, const size_t *soff, const uint32_t *slen,
                        pcounts *pc, wtu *w)
{
    for (size_t i = 0; i < tr->nwords; i++) {
        const int32_t *s = sym + soff[i];
        for (uint32_t k = 0; k + 1 < slen[i]; k++) {
            uint64_t p = PAIR(s[k], s[k + 1]);
            *pc_ref(pc, p) += (int64_t)tr->wcount[i];
            wtu_insert(w, p, (int32_t)i);
        }
    }
}

size_t icl_bpe_trainer_finish(icl_bpe_trainer *tr, icl_buf *out)
{
    /* vocabulary: specials, then the byte alphabet sorted by code point */
    size_t vcap = (size_t)tr->vocab_size + 300;
    char **tok = icl_xcalloc(vcap, sizeof *tok);
    int32_t sym_of_byte[256];
    size_t ntok = init_vocab(tr, tok, sym_of_byte);

    /* words as symbol arrays, and the count of every adjacent pair */
    size_t *soff;
    uint32_t *slen;
    int32_t *sym = word_symbols(tr, sym_of_byte, &soff, &slen);
    pcounts pc = {0};
    icl_u64map_init(&pc.idx, 1 << 16);
    wtu w = {0};
    icl_u64map_init(&w.idx, 1 << 16);
    count_pairs(tr, sym, soff, slen, &pc, &w);
    heap h = {0};
    queue_pairs(&h, &w, &pc);

    icl_buf nt = {0};
    uint64_t *merges = icl_xmalloc(vcap * sizeof *merges);
    size_t nmerges = 0;
    icl_u64map th; /* XXH3(token string) -> id (a collision falls back to a scan) */
    icl_u64map_init(&th, vcap);
    for (size_t j = 0; j < ntok; j++)
        icl_u64map_put(&th, icl_hash_bytes(tok[j], strlen(tok[j])), (int32_t)j, 0);

    while (ntok < (size_t)tr->vocab_size && h.n) {
        qentry *top = hpop(&h);
        int64_t cur = *pc_ref(&pc, top->pair);
        if (top->count != cur) {
            top->count = cur;
            hpush(&h, top);
            continue;
        }
        if (top->count < 1 || tr->min_frequency > top->count) {
            free(top->pos.v);
            free(top);
            break;
        }
        int32_t a = (int32_t)(top->pair >> 32), b = (int32_t)(top->pair & 0xffffffffu);
        nt.len = 0;
        icl_buf_puts(&nt, tok[a]);
        icl_buf_puts(&nt, tok[b]);
        uint64_t hh = icl_hash_bytes(nt.data, nt.len);
        long sl = icl_u64map_find(&th, hh);
        int32_t nid = -1;
        if (sl >= 0 && !strcmp(tok[th.e[sl].a], nt.data))
            nid = th.e[sl].a;
        else if (sl >= 0) /* an XXH3 collision between two tokens: look the slow way */
            for (size_t j = 0; j < ntok && nid < 0; j++)
                if (!strcmp(tok[j], nt.data))
                    nid = (int32_t)j;
        if (nid < 0) {
            nid = (int32_t)ntok;
            if (ntok == vcap) {
                vcap *= 2;
                tok = icl_xreallocarray(tok, vcap, sizeof *tok);
                merges = icl_xreallocarray(merges, vcap, sizeof *merges);
            }
            tok[ntok++] = icl_xstrndup(nt.data, nt.len);
            if (sl < 0) /* a colliding token stays out of th: found by the scan above */
                icl_u64map_put(&th, hh, nid, 0);
        }
        merges[nmerges++] = top->pair;
        merge_words(tr, &top->pos, a, b, nid, sym, soff, slen, &pc, &w);
        queue_pairs(&h, &w, &pc);
        free(top->pos.v);
        free(top);
    }
    while (h.n) {
        qentry *e = hpop(&h);
        free(e->pos.v);
        free(e);
    }

    write_json(tr, tok, ntok, merges, nmerges, out);

    tr->final_vocab = ntok;
    for (size_t j = 0; j < ntok; j++)
        free(tok[j]);
    free(tok);
    free(merges);
    icl_u64map_free(&th);
    icl_buf_free(&nt);
    free(soff);
    free(slen);
    free(sym);
    icl_u64map_free(&pc.idx);
    free(pc.cnt);
    icl_u64map_free(&w.idx);
    free(w.pair);
    free(w.set);
    free(h.a);
    return nmerges;
}
