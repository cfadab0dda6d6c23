/* bpe_train.c - see bpe_train.h.  The loop mirrors tokenizers'
 * BpeTrainer::do_train and Word::merge step by step, including its lazy
 * heap (an entry whose count went stale is re-pushed with the current
 * count) and its per-entry sets of words to update, so that the merges come
 * out in the same order.  Unlike Word::merge, a merge does not scan and
 * shift whole words: it visits the positions listed for its pair (see
 * merge_words), so one long word costs about linear time, not quadratic. */
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

/* Positions in the symbol arrays (below 2^32: the word arena is). */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} uvec;

static void uv_push(uvec *a, uint32_t x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 4;
        a->v = icl_xreallocarray(a->v, a->cap, sizeof *a->v);
    }
    a->v[a->n++] = x;
}

/* pair -> count and occurrences (u64map a: index into cnt and occ).
 * occ[k] lists the positions p where pair k was formed (the symbol at p
 * and the one after it); entries go stale as merges change the words and
 * are checked when the pair is merged. */
typedef struct {
    icl_u64map idx;
    int64_t *cnt;
    uvec *occ;
    size_t n, cap;
} pcounts;

static size_t pc_index(pcounts *p, uint64_t pair)
{
    long s = icl_u64map_find(&p->idx, pair);
    if (s >= 0)
        return (size_t)p->idx.e[s].a;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 4096;
        p->cnt = icl_xreallocarray(p->cnt, p->cap, sizeof *p->cnt);
        p->occ = icl_xreallocarray(p->occ, p->cap, sizeof *p->occ);
    }
    p->cnt[p->n] = 0;
    memset(&p->occ[p->n], 0, sizeof(uvec));
    icl_u64map_put(&p->idx, pair, (int32_t)p->n, 0);
    return p->n++;
}

static int64_t *pc_ref(pcounts *p, uint64_t pair) { return &p->cnt[pc_index(p, pair)]; }

/* pair formed at position pos, its count changed by wc */
static void pc_formed(pcounts *p, uint64_t pair, uint32_t pos, int64_t wc)
{
    size_t k = pc_index(p, pair);
    p->cnt[k] += wc;
    uv_push(&p->occ[k], pos);
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

#define NONE UINT32_MAX

/* The distinct words as doubly linked lists of symbols over one array
 * indexed like the word arena (word i starts at position woff[i]): sym[p]
 * is the symbol at p (-1 once merged into the symbol before it), nxt[p]
 * and prv[p] the positions of its neighbours in the same word (NONE at the
 * ends), wid[p] its word.  mark[i] == gen lists word i in the merge being
 * made; cand collects that merge's positions. */
typedef struct {
    int32_t *sym;
    uint32_t *nxt, *prv, *wid, *mark;
    uint32_t gen;
    uvec cand;
} symbols;

/* 1 when the pair (a, b) starts at position p */
static int pair_at(const symbols *S, uint32_t p, int32_t a, int32_t b)
{
    return S->sym[p] == a && S->nxt[p] != NONE && S->sym[S->nxt[p]] == b;
}

/* Merge the pair (a, b) into nid in every word listed in pos, as
 * Word::merge does (left to right, an occurrence overlapping a merged one
 * is skipped), updating the pair counts and the words-to-update set in the
 * same order.  Only the pair's occurrences are visited (the positions in
 * its occ list, in increasing order: by word, as pos lists them, then left
 * to right), never whole words, so a merge costs its occurrences, not the
 * length of the words holding them; occurrences in words not in pos stay
 * listed for a later merge of the same pair. */
static void merge_words(const icl_bpe_trainer *tr, symbols *S, const ivec *pos, uint64_t pair, int32_t nid,
                        pcounts *pc, wtu *w)
{
    int32_t a = (int32_t)(pair >> 32), b = (int32_t)(pair & 0xffffffffu);
    if (++S->gen == 0) {
        memset(S->mark, 0, tr->nwords * sizeof *S->mark);
        S->gen = 1;
    }
    for (size_t q = 0; q < pos->n; q++)
        S->mark[pos->v[q]] = S->gen;
    uvec *occ = &pc->occ[pc_index(pc, pair)];
    size_t keep = 0;
    int sorted = 1;
    S->cand.n = 0;
    for (size_t k = 0; k < occ->n; k++) {
        uint32_t p = occ->v[k];
        if (!pair_at(S, p, a, b))
            continue; /* stale */
        if (S->mark[S->wid[p]] != S->gen) {
            occ->v[keep++] = p;
            continue;
        }
        if (S->cand.n && S->cand.v[S->cand.n - 1] >= p)
            sorted = 0;
        uv_push(&S->cand, p);
    }
    occ->n = keep; /* occ is not used below: pc_formed may move it */
    if (!sorted)
        qsort(S->cand.v, S->cand.n, sizeof *S->cand.v, cmp_u32);
    for (size_t k = 0; k < S->cand.n; k++) {
        uint32_t p = S->cand.v[k];
        if ((k && p == S->cand.v[k - 1]) || !pair_at(S, p, a, b))
            continue; /* listed twice, or overlapping the occurrence merged before it */
        int32_t wi = (int32_t)S->wid[p];
        int64_t wc = (int64_t)tr->wcount[wi];
        uint32_t pv = S->prv[p], q = S->nxt[p], r = S->nxt[q];
        if (pv != NONE) {
            *pc_ref(pc, PAIR(S->sym[pv], a)) -= wc;
            pc_formed(pc, PAIR(S->sym[pv], nid), pv, wc);
            wtu_insert(w, PAIR(S->sym[pv], nid), wi);
        }
        S->sym[p] = nid;
        S->sym[q] = -1;
        S->nxt[p] = r;
        if (r != NONE) {
            S->prv[r] = p;
            *pc_ref(pc, PAIR(b, S->sym[r])) -= wc;
            pc_formed(pc, PAIR(nid, S->sym[r]), p, wc);
            wtu_insert(w, PAIR(nid, S->sym[r]), wi);
        }
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

/* Each distinct word as a list of byte-level symbol ids (see symbols). */
static void word_symbols(const icl_bpe_trainer *tr, const int32_t sym_of_byte[256], symbols *S)
{
    size_t total = tr->warena.len + 1;
    S->sym = icl_xmalloc(total * sizeof *S->sym);
    S->nxt = icl_xmalloc(total * sizeof *S->nxt);
    S->prv = icl_xmalloc(total * sizeof *S->prv);
    S->wid = icl_xmalloc(total * sizeof *S->wid);
    S->mark = icl_xcalloc(tr->nwords + 1, sizeof *S->mark);
    for (size_t i = 0; i < tr->nwords; i++) {
        uint32_t o = tr->woff[i], n = tr->wlen[i];
        for (uint32_t k = 0; k < n; k++) {
            S->sym[o + k] = sym_of_byte[(uint8_t)tr->warena.data[o + k]];
            S->prv[o + k] = k ? o + k - 1 : NONE;
            S->nxt[o + k] = k + 1 < n ? o + k + 1 : NONE;
            S->wid[o + k] = (uint32_t)i;
        }
    }
}

static void symbols_free(symbols *S)
{
    free(S->sym);
    free(S->nxt);
    free(S->prv);
    free(S->wid);
    free(S->mark);
    free(S->cand.v);
}

/* Count every adjacent pair of every word (times the word's count) into pc
 * with its position, and note in w which words hold it. */
static void count_pairs(const icl_bpe_trainer *tr, const symbols *S, pcounts *pc, wtu *w)
{
    for (size_t i = 0; i < tr->nwords; i++) {
        uint32_t o = tr->woff[i];
        for (uint32_t k = 0; k + 1 < tr->wlen[i]; k++) {
            uint64_t p = PAIR(S->sym[o + k], S->sym[o + k + 1]);
            pc_formed(pc, p, o + k, (int64_t)tr->wcount[i]);
            wtu_insert(w, p, (int32_t)i);
        }
    }
}

long icl_bpe_trainer_finish(icl_bpe_trainer *tr, icl_buf *out, char *err, size_t errsz)
{
    if (tr->nwords == 0) {
        icl_seterr(err, errsz, "no training text");
        return -1;
    }
    /* vocabulary: specials, then the byte alphabet sorted by code point */
    size_t vcap = (size_t)tr->vocab_size + 300;
    char **tok = icl_xcalloc(vcap, sizeof *tok);
    int32_t sym_of_byte[256];
    size_t ntok = init_vocab(tr, tok, sym_of_byte);

    /* words as symbol arrays, and the count of every adjacent pair */
    symbols S = {0};
    word_symbols(tr, sym_of_byte, &S);
    pcounts pc = {0};
    icl_u64map_init(&pc.idx, 1 << 16);
    wtu w = {0};
    icl_u64map_init(&w.idx, 1 << 16);
    count_pairs(tr, &S, &pc, &w);
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
        merge_words(tr, &S, &top->pos, top->pair, nid, &pc, &w);
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
    symbols_free(&S);
    for (size_t k = 0; k < pc.n; k++)
        free(pc.occ[k].v);
    free(pc.occ);
    icl_u64map_free(&pc.idx);
    free(pc.cnt);
    icl_u64map_free(&w.idx);
    free(w.pair);
    free(w.set);
    free(h.a);
    return (long)nmerges;
}
