/* bpe.c - the BPE word cache and the BPE merge of one word.
 *
 * The merge follows tokenizers' models/bpe/word.rs (Word::merge_all): every
 * adjacent pair that has a merge rule goes into a min-heap keyed by (rank,
 * position); the lowest rank, then the leftmost position, is merged first;
 * stale heap entries (a symbol already merged away, or a pair that changed)
 * are skipped.  Symbols form a doubly linked list, so a word of n symbols
 * costs O(n log n), not O(n^2): "a" x 100000 stays fast.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* ---- word cache ---- */

typedef struct {
    int32_t *id, *prev, *next;
    uint64_t *heap; /* (rank << 32) | pos */
    size_t nheap, cap, hcap;
    size_t ndrop;   /* characters dropped (no token, byte fallback or unk) */
    char drop[4];   /* the first of them */
    size_t drop_len;
} word_ws;


#define CACHE_SLOTS 65536       /* power of two */
#define CACHE_MAX_ENTRIES 40000 /* tokenizers keeps 10000; more pays here */
#define CACHE_MAX_WORD 256      /* as tokenizers' MAX_LENGTH */

struct bpe_cache {
    uint64_t hash[CACHE_SLOTS];
    uint32_t woff[CACHE_SLOTS], wlen[CACHE_SLOTS]; /* word bytes in `words` */
    uint32_t ioff[CACHE_SLOTS], ilen[CACHE_SLOTS]; /* ids in `ids` */
    uint8_t used[CACHE_SLOTS];
    size_t n;
    icl_buf words;
    icl_ids ids;
    word_ws ws; /* merge workspace */
};

bpe_cache *icl_bpe_cache_new(void) { return icl_xcalloc(1, sizeof(bpe_cache)); }

void icl_bpe_cache_free(bpe_cache *c)
{
    if (!c)
        return;
    icl_buf_free(&c->words);
    icl_ids_free(&c->ids);
    free(c->ws.id);
    free(c->ws.prev);
    free(c->ws.next);
    free(c->ws.heap);
    free(c);
}

static void cache_clear(bpe_cache *c)
{
    memset(c->used, 0, sizeof c->used);
    c->n = 0;
    c->words.len = 0;
    c->ids.n = 0;
}

/* ---- the merge ---- */

static const char *tok_piece_get(const void *ctx, int32_t id, size_t *len)
{
    const icl_tokenizer *t = ctx;
    *len = t->plen[id];
    return t->arena + t->poff[id];
}

static int32_t vocab_lookup(const icl_tokenizer *t, const char *s, size_t n)
{
    return icl_strmap_get(&t->vocab, s, n, tok_piece_get, t);
}


/* A 4-ary min-heap of (rank << 32 | position): half the depth of a binary
 * heap, and the four children share a cache line, which matters for words
 * of millions of symbols. */
static void heap_push(word_ws *w, uint64_t k)
{
    if (w->nheap == w->hcap) {
        w->hcap = w->hcap ? w->hcap * 2 : 64;
        w->heap = icl_xreallocarray(w->heap, w->hcap, sizeof *w->heap);
    }
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (w->heap[p] <= k)
            break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = k;
}

static uint64_t heap_pop(word_ws *w)
{
    uint64_t top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    uint64_t *h = w->heap;
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= n)
            break;
        size_t m = c;
        size_t e = c + 4 < n ? c + 4 : n;
        for (size_t j = c + 1; j < e; j++)
            if (h[j] < h[m])
                m = j;
        if (h[m] >= last)
            break;
        h[i] = h[m];
        i = m;
    }
    if (n)
        h[i] = last;
    return top;
}

static void sym_push(word_ws *w, size_t *n, int32_t id)
{
    if (*n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->id = icl_xreallocarray(w->id, w->cap, sizeof *w->id);
        w->prev = icl_xreallocarray(w->prev, w->cap, sizeof *w->prev);
        w->next = icl_xreallocarray(w->next, w->cap, sizeof *w->next);
    }
    w->id[(*n)++] = id;
}

static inline long pair_rank(const icl_tokenizer *t, int32_t a, int32_t b, int32_t *new_id)
{
    long s = icl_u64map_find(&t->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b);
    if (s < 0)
        return -1;
    *new_id = t->merges.e[s].b;
    return t->merges.e[s].a;
}

/* One character (s[0..n)) into symbols, with HF's unk / byte_fallback
 * rules.  Returns 1 when it is dropped (none of them applies), else 0. */
static int add_char(const icl_tokenizer *t, word_ws *w, size_t *ns, const char *s, size_t n,
                     int32_t id, int32_t *unk_pending)
{
    if (id >= 0) {
        if (*unk_pending >= 0) {
            sym_push(w, ns, *unk_pending);
            *unk_pending = -1;
        }
        sym_push(w, ns, id);
        return 0;
    }
    if (t->byte_fallback) {
        size_t k;
        for (k = 0; k < n; k++)
            if (t->byte_fallback_id[(uint8_t)s[k]] < 0)
                break;
        if (k == n) { /* as HF: a pending unk is not flushed here */
            for (k = 0; k < n; k++)
                sym_push(w, ns, t->byte_fallback_id[(uint8_t)s[k]]);
            return 0;
        }
    }
    if (t->unk_id >= 0) {
        if (*unk_pending >= 0 && !t->fuse_unk)
            sym_push(w, ns, *unk_pending);
        *unk_pending = t->unk_id;
        return 0;
    }
    /* no unk token: the character is dropped, as tokenizers does (counted:
     * t->unknown_is_error makes it the caller's error) */
    return 1;
}

/* Count a dropped character s[0..n). */
static void note_drop(word_ws *w, const char *s, size_t n)
{
    if (!w->ndrop++) {
        w->drop_len = n < sizeof w->drop ? n : sizeof w->drop;
        memcpy(w->drop, s, w->drop_len);
    }
}

size_t icl_bpe_dropped(bpe_cache *c, char ch[4], size_t *len)
{
    size_t n = c->ws.ndrop;
    if (n) {
        memcpy(ch, c->ws.drop, c->ws.drop_len);
        *len = c->ws.drop_len;
    }
    c->ws.ndrop = 0;
    return n;
}

static void merge_word(const icl_tokenizer *t, word_ws *w, const char *s, size_t n, icl_ids *out)
{
    size_t ns = 0;
    int32_t unk = -1;
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++) {
            uint8_t b = (uint8_t)s[i];
            int32_t id = t->byte_sym[b];
            char tmp[4];
            int l = icl_utf8_put(icl_byte_to_cp[b], tmp);
            if (add_char(t, w, &ns, tmp, (size_t)l, id, &unk))
                note_drop(w, s + i, 1);
        }
    } else {
        size_t i = 0;
        while (i < n) {
            size_t st = i;
            uint8_t b = (uint8_t)s[i];
            int32_t id;
            if (b < 128) {
                i++;
                id = t->ascii_sym[b];
            } else {
                icl_utf8_next(s, n, &i);
                id = vocab_lookup(t, s + st, i - st);
            }
            if (add_char(t, w, &ns, s + st, i - st, id, &unk))
                note_drop(w, s + st, i - st);
        }
    }
    if (unk >= 0)
        sym_push(w, &ns, unk);
    if (ns == 0)
        return;
    for (size_t i = 0; i < ns; i++) {
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    w->nheap = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        int32_t nid;
        long r = pair_rank(t, w->id[i], w->id[i + 1], &nid);
        if (r >= 0)
            heap_push(w, ((uint64_t)r << 32) | i);
    }
    while (w->nheap) {
        uint64_t k = heap_pop(w);
        int32_t pos = (int32_t)(k & 0xffffffffu);
        long rank = (long)(k >> 32);
        if (w->id[pos] < 0)
            continue; /* merged away */
        int32_t r = w->next[pos];
        if (r < 0)
            continue;
        int32_t nid;
        if (pair_rank(t, w->id[pos], w->id[r], &nid) != rank)
            continue; /* stale */
        w->id[pos] = nid;
        w->id[r] = -1;
        w->next[pos] = w->next[r];
        if (w->next[r] >= 0)
            w->prev[w->next[r]] = pos;
        int32_t p = w->prev[pos];
        if (p >= 0) {
            int32_t x;
            long pr = pair_rank(t, w->id[p], nid, &x);
            if (pr >= 0)
                heap_push(w, ((uint64_t)pr << 32) | (uint32_t)p);
        }
        int32_t q = w->next[pos];
        if (q >= 0) {
            int32_t x;
            long qr = pair_rank(t, w->id[pos], w->id[q], &x);
            if (qr >= 0)
                heap_push(w, ((uint64_t)qr << 32) | (uint32_t)pos);
        }
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        icl_ids_push(out, w->id[i]);
}

/* BPE of one word without the ignore_merges shortcut: cache, then merge. */
static void bpe_cached(const icl_tokenizer *t, bpe_cache *c, const char *s, size_t n, icl_ids *out);

/* The symbol unit at s[i]: one byte for byte-level words, else one UTF-8
 * character; its key for the pair set, and whether it is a one-unit vocab
 * token (units that are not need unk/byte_fallback and never split). */
static inline uint32_t unit_at(const icl_tokenizer *t, const char *s, size_t n, size_t *i, int *known)
{
    if (t->byte_level) {
        uint8_t b = (uint8_t)s[(*i)++];
        *known = t->byte_sym[b] >= 0;
        return b;
    }
    size_t st = *i;
    uint32_t c = icl_utf8_next(s, n, i);
    *known = c < 128 ? t->ascii_sym[c] >= 0 : vocab_lookup(t, s + st, *i - st) >= 0;
    return c;
}

/* A long word is cut where no vocabulary token contains the two adjacent
 * units (t->pairs): no merge can ever span such a place, so BPE of the parts
 * equals BPE of the whole (merges in disjoint parts do not interact), and
 * the parts are short enough for the cache.  This keeps a 10 MB line
 * without pre-tokenizer (sentencepiece style) as fast as pre-tokenized text. */
static void bpe_long(const icl_tokenizer *t, bpe_cache *c, const char *s, size_t n, icl_ids *out)
{
    size_t i = 0, start = 0;
    int kprev;
    uint32_t prev = unit_at(t, s, n, &i, &kprev);
    while (i < n) {
        size_t at = i;
        int k;
        uint32_t u = unit_at(t, s, n, &i, &k);
        if (kprev && k && icl_u64map_find(&t->pairs, ((uint64_t)prev << 32) | u) < 0) {
            bpe_cached(t, c, s + start, at - start, out);
            start = at;
        }
        prev = u;
        kprev = k;
    }
    bpe_cached(t, c, s + start, n - start, out);
}

void icl_bpe_word(const icl_tokenizer *t, bpe_cache *c, const char *s, size_t n, icl_ids *out)
{
    if (n == 0)
        return;
    if (t->ignore_merges && n <= t->max_piece_len) {
        int32_t id;
        if (t->byte_level) {
            icl_buf b = {0};
            for (size_t i = 0; i < n; i++) {
                char u[4];
                icl_buf_append(&b, u, (size_t)icl_utf8_put(icl_byte_to_cp[(uint8_t)s[i]], u));
            }
            id = vocab_lookup(t, b.data, b.len);
            icl_buf_free(&b);
        } else {
            id = vocab_lookup(t, s, n);
        }
        if (id >= 0) {
            icl_ids_push(out, id);
            return;
        }
    }
    if (n > CACHE_MAX_WORD && t->pairs.cap)
        bpe_long(t, c, s, n, out);
    else
        bpe_cached(t, c, s, n, out);
}

static void bpe_cached(const icl_tokenizer *t, bpe_cache *c, const char *s, size_t n, icl_ids *out)
{
    uint64_t h = 0;
    size_t slot = 0;
    int cacheable = n <= CACHE_MAX_WORD;
    if (cacheable) {
        h = XXH3_64bits(s, n);
        slot = (size_t)h & (CACHE_SLOTS - 1);
        while (c->used[slot]) {
            if (c->hash[slot] == h && c->wlen[slot] == n &&
                memcmp(c->words.data + c->woff[slot], s, n) == 0) {
                for (uint32_t k = 0; k < c->ilen[slot]; k++)
                    icl_ids_push(out, c->ids.v[c->ioff[slot] + k]);
                return;
            }
            slot = (slot + 1) & (CACHE_SLOTS - 1);
        }
    }
    size_t before = out->n, dropped = c->ws.ndrop;
    merge_word(t, &c->ws, s, n, out);
    if (cacheable && c->ws.ndrop == dropped) { /* a word that dropped a character is not cached: counted each time */
        if (c->n >= CACHE_MAX_ENTRIES) {
            cache_clear(c);
            slot = (size_t)h & (CACHE_SLOTS - 1);
        }
        c->used[slot] = 1;
        c->hash[slot] = h;
        c->woff[slot] = (uint32_t)c->words.len;
        c->wlen[slot] = (uint32_t)n;
        icl_buf_append(&c->words, s, n);
        c->ioff[slot] = (uint32_t)c->ids.n;
        c->ilen[slot] = (uint32_t)(out->n - before);
        for (size_t k = before; k < out->n; k++)
            icl_ids_push(&c->ids, out->v[k]);
        c->n++;
    }
}
