/* hashtab.h - the tokenizer's hash tables: XXH3-keyed open addressing with
 * linear probing, grown at half full.
 *
 * icl_u64map maps a uint64 key to two int32 values (BPE merges: (a<<32|b) ->
 * rank and new id; trie edges).  icl_strmap maps strings stored elsewhere to
 * int32 ids (the vocabulary): it keeps only ids and hashes, and a callback
 * gives the string of an id.  The lookups are inline: they are the inner
 * loop of BPE encoding.
 */
#ifndef ICL_HASHTAB_H
#define ICL_HASHTAB_H

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* u64 -> (a, b) map; key UINT64_MAX is reserved (empty). */
typedef struct {
    uint64_t key;
    int32_t a, b;
} icl_u64ent; /* one 16-byte slot: a probe touches one cache line */
typedef struct {
    icl_u64ent *e;
    size_t cap, n; /* cap: power of two */
} icl_u64map;
/* Open-addressing map uint64 -> (int32, int32), hashed by XXH3, grown at
 * half full.  UINT64_MAX marks an empty slot, so it is not a valid key (the
 * callers' keys are id pairs and trie edges, all below 2^56).
 * expect: entries expected (sizes the table); free with icl_u64map_free. */
void icl_u64map_init(icl_u64map *m, size_t expect);
void icl_u64map_free(icl_u64map *m);
/* Set key -> (a, b), overwriting. */
void icl_u64map_put(icl_u64map *m, uint64_t key, int32_t a, int32_t b);

/* string -> id map over strings stored elsewhere (get(id) returns them). */
typedef struct {
    int32_t *slot; /* id, or -1 empty */
    uint64_t *hash;
    size_t cap, n;
} icl_strmap;
typedef const char *(*icl_strmap_get_fn)(const void *ctx, int32_t id, size_t *len);
void icl_strmap_init(icl_strmap *m, size_t expect);
void icl_strmap_free(icl_strmap *m);
/* Insert id under its string; an existing equal string is overwritten. */
void icl_strmap_put(icl_strmap *m, int32_t id, icl_strmap_get_fn get, const void *ctx);
/* XXH3-64 of p[0..n). */
uint64_t icl_hash_bytes(const void *p, size_t n);

static inline size_t icl_u64slot(uint64_t k, size_t mask) { return (size_t)XXH3_64bits(&k, 8) & mask; }

/* Slot index of key (read m->e[slot].a / .b), or -1. */
static inline long icl_u64map_find(const icl_u64map *m, uint64_t key)
{
    if (!m->cap)
        return -1;
    size_t mask = m->cap - 1, i = icl_u64slot(key, mask);
    while (m->e[i].key != UINT64_MAX) {
        if (m->e[i].key == key)
            return (long)i;
        i = (i + 1) & mask;
    }
    return -1;
}

/* The id stored under s[0..len), or -1. */
static inline int32_t icl_strmap_get(const icl_strmap *m, const char *s, size_t len,
                                     icl_strmap_get_fn get, const void *ctx)
{
    if (!m->cap)
        return -1;
    uint64_t h = XXH3_64bits(s, len);
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    while (m->slot[i] >= 0) {
        if (m->hash[i] == h) {
            size_t l2;
            const char *s2 = get(ctx, m->slot[i], &l2);
            if (l2 == len && memcmp(s, s2, len) == 0)
                return m->slot[i];
        }
        i = (i + 1) & mask;
    }
    return -1;
}

#endif
