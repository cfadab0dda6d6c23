/* hashtab.c - see hashtab.h. */
#include "hashtab.h"

#include <stdlib.h>

#include "util.h"

uint64_t icl_hash_bytes(const void *p, size_t n) { return XXH3_64bits(p, n); }

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

/* ---- u64 map ---- */

void icl_u64map_init(icl_u64map *m, size_t expect)
{
    m->cap = pow2_at_least(expect * 2 + 1);
    m->n = 0;
    m->e = icl_xmalloc(m->cap * sizeof *m->e);
    for (size_t i = 0; i < m->cap; i++)
        m->e[i].key = UINT64_MAX;
}

void icl_u64map_free(icl_u64map *m)
{
    free(m->e);
    memset(m, 0, sizeof *m);
}


static void u64map_grow(icl_u64map *m)
{
    icl_u64map n;
    icl_u64map_init(&n, m->cap);
    for (size_t i = 0; i < m->cap; i++)
        if (m->e[i].key != UINT64_MAX)
            icl_u64map_put(&n, m->e[i].key, m->e[i].a, m->e[i].b);
    icl_u64map_free(m);
    *m = n;
}

void icl_u64map_put(icl_u64map *m, uint64_t key, int32_t a, int32_t b)
{
    if ((m->n + 1) * 2 > m->cap)
        u64map_grow(m);
    size_t mask = m->cap - 1, i = icl_u64slot(key, mask);
    while (m->e[i].key != UINT64_MAX && m->e[i].key != key)
        i = (i + 1) & mask;
    if (m->e[i].key == UINT64_MAX)
        m->n++;
    m->e[i].key = key;
    m->e[i].a = a;
    m->e[i].b = b;
}

/* ---- string map ---- */

void icl_strmap_init(icl_strmap *m, size_t expect)
{
    m->cap = pow2_at_least(expect * 2 + 1);
    m->n = 0;
    m->slot = icl_xmalloc(m->cap * sizeof *m->slot);
    memset(m->slot, 0xff, m->cap * sizeof *m->slot);
    m->hash = icl_xcalloc(m->cap, sizeof *m->hash);
}

void icl_strmap_free(icl_strmap *m)
{
    free(m->slot);
    free(m->hash);
    memset(m, 0, sizeof *m);
}

static void strmap_grow(icl_strmap *m, icl_strmap_get_fn get, const void *ctx)
{
    icl_strmap n;
    icl_strmap_init(&n, m->cap);
    for (size_t i = 0; i < m->cap; i++)
        if (m->slot[i] >= 0)
            icl_strmap_put(&n, m->slot[i], get, ctx);
    icl_strmap_free(m);
    *m = n;
}

void icl_strmap_put(icl_strmap *m, int32_t id, icl_strmap_get_fn get, const void *ctx)
{
    if ((m->n + 1) * 2 > m->cap)
        strmap_grow(m, get, ctx);
    size_t len;
    const char *s = get(ctx, id, &len);
    uint64_t h = XXH3_64bits(s, len);
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    while (m->slot[i] >= 0) {
        if (m->hash[i] == h) {
            size_t l2;
            const char *s2 = get(ctx, m->slot[i], &l2);
            if (l2 == len && memcmp(s, s2, len) == 0) {
                m->slot[i] = id;
                return;
            }
        }
        i = (i + 1) & mask;
    }
    m->slot[i] = id;
    m->hash[i] = h;
    m->n++;
}
