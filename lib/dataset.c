/* dataset.c - compact in-memory examples, truncation, epoch order, batches. */
#include "dataset.h"

#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack: no allocation to fail */
#include <xxhash.h>

#include "rng.h"
#include "util.h"

void icl_dataset_init(icl_dataset *d, int seq_len)
{
    memset(d, 0, sizeof *d);
    d->seq_len = seq_len > 0 ? seq_len : 1;
    d->offcap = 16;
    d->off = xcalloc(d->offcap, sizeof *d->off);
}

void icl_dataset_free(icl_dataset *d)
{
    free(d->tok);
    free(d->off);
    memset(d, 0, sizeof *d);
}

int icl_dataset_add(icl_dataset *d, const int32_t *ids, const uint8_t *target, size_t n)
{
    d->n_read++;
    /* end = one past the last target token; fs = start of the final target run */
    size_t end = n;
    while (end > 0 && !target[end - 1])
        end--;
    if (end == 0) {
        d->n_dropped_empty++;
        return 0;
    }
    size_t fs = end - 1;
    while (fs > 0 && target[fs - 1])
        fs--;
    size_t start = 0, L = (size_t)d->seq_len;
    if (end > L) {
        if (end - fs + 1 > L) {
            d->n_dropped_long++;
            return 0;
        }
        start = end - L; /* < fs: at least one token before the final target */
    }
    /* a target at the first kept position is not trained */
    long tg = 0;
    for (size_t i = start + 1; i < end; i++)
        tg += target[i] != 0;
    if (tg == 0) {
        d->n_dropped_empty++;
        return 0;
    }
    if (start > 0)
        d->n_truncated++;
    size_t len = end - start;
    if (d->ntok + len > d->tokcap) {
        size_t c = d->tokcap ? d->tokcap : 1024;
        while (c < d->ntok + len)
            c *= 2;
        d->tok = xreallocarray(d->tok, c, sizeof *d->tok);
        d->tokcap = c;
    }
    uint32_t *o = d->tok + d->ntok;
    for (size_t i = start; i < end; i++)
        o[i - start] = (uint32_t)ids[i] | (target[i] ? ICL_DS_TARGET : 0);
    d->ntok += len;
    if (d->n + 2 > d->offcap) {
        d->offcap *= 2;
        d->off = xreallocarray(d->off, d->offcap, sizeof *d->off);
    }
    d->off[++d->n] = d->ntok;
    if ((int)len > d->max_len)
        d->max_len = (int)len;
    d->n_targets += tg;
    return 1;
}

long icl_dataset_example_targets(const icl_dataset *d, size_t i)
{
    long tg = 0;
    for (size_t k = d->off[i] + 1; k < d->off[i + 1]; k++)
        tg += (d->tok[k] & ICL_DS_TARGET) != 0;
    return tg;
}

uint64_t icl_dataset_hash(const icl_dataset *d)
{
    XXH3_state_t st, *s = &st;
    XXH3_INITSTATE(s);
    XXH3_64bits_reset(s);
    uint64_t n = d->n;
    XXH3_64bits_update(s, &n, sizeof n);
    if (d->ntok)
        XXH3_64bits_update(s, d->tok, d->ntok * sizeof *d->tok);
    XXH3_64bits_update(s, d->off, (d->n + 1) * sizeof *d->off);
    uint64_t h = XXH3_64bits_digest(s);
    return h;
}

void icl_dataset_order(const icl_dataset *d, uint64_t seed, long epoch, int shuffle, size_t *perm,
                       uint64_t rng_out[4])
{
    for (size_t i = 0; i < d->n; i++)
        perm[i] = i;
    icl_rng r;
    icl_rng_seed(&r, seed, (uint64_t)epoch);
    if (shuffle)
        for (size_t i = d->n; i > 1; i--) {
            size_t j = (size_t)icl_rng_below(&r, i);
            size_t t = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = t;
        }
    if (rng_out)
        memcpy(rng_out, r.s, sizeof r.s);
}

void icl_batchbuf_free(icl_batchbuf *bb)
{
    free(bb->ids);
    free(bb->doc);
    free(bb->pos);
    free(bb->target);
    free(bb->weight);
    memset(bb, 0, sizeof *bb);
}

static void bb_reserve(icl_batchbuf *bb, size_t n)
{
    if (n <= bb->cap)
        return;
    bb->ids = xreallocarray(bb->ids, n, sizeof *bb->ids);
    bb->doc = xreallocarray(bb->doc, n, sizeof *bb->doc);
    bb->pos = xreallocarray(bb->pos, n, sizeof *bb->pos);
    bb->target = xreallocarray(bb->target, n, sizeof *bb->target);
    bb->weight = xreallocarray(bb->weight, n, sizeof *bb->weight);
    bb->cap = n;
}

/* Rows of the batch starting at cursor: row r holds perm[first[r] .. first[r+1]).
 * Returns the number of rows (<= batch_size) and the longest row length. */
static int plan_rows(const icl_dataset *d, const size_t *perm, size_t cursor, int batch_size, int packing,
                     size_t *first, int *T_out)
{
    int rows = 0, T = 0;
    size_t c = cursor;
    while (rows < batch_size && c < d->n) {
        first[rows] = c;
        size_t len = icl_dataset_len(d, perm[c++]);
        if (packing)
            while (c < d->n && len + icl_dataset_len(d, perm[c]) <= (size_t)d->seq_len)
                len += icl_dataset_len(d, perm[c++]);
        if ((int)len > T)
            T = (int)len;
        rows++;
    }
    first[rows] = c;
    *T_out = T;
    return rows;
}

int icl_dataset_next(const icl_dataset *d, const size_t *perm, size_t *cursor, int batch_size, int packing,
                     int32_t pad_id, icl_batchbuf *bb)
{
    if (*cursor >= d->n)
        return 0;
    size_t *first = xmalloc(((size_t)batch_size + 1) * sizeof *first);
    int T;
    int rows = plan_rows(d, perm, *cursor, batch_size, packing, first, &T);
    size_t need = (size_t)rows * (size_t)T;
    bb_reserve(bb, need);
    bb->n_targets = bb->n_tokens = 0;
    bb->n_examples = 0;
    for (int r = 0; r < rows; r++) {
        int32_t *ids = bb->ids + (size_t)r * T, *doc = bb->doc + (size_t)r * T, *pos = bb->pos + (size_t)r * T;
        uint8_t *tg = bb->target + (size_t)r * T;
        int t = 0;
        for (size_t c = first[r]; c < first[r + 1]; c++) {
            size_t e = perm[c];
            int docid = (int)(c - first[r]);
            for (size_t k = d->off[e]; k < d->off[e + 1]; k++, t++) {
                uint32_t v = d->tok[k];
                ids[t] = (int32_t)(v & ~ICL_DS_TARGET);
                tg[t] = (v & ICL_DS_TARGET) != 0;
                doc[t] = docid;
                pos[t] = (int32_t)(k - d->off[e]);
                if (tg[t] && k > d->off[e])
                    bb->n_targets++;
            }
            bb->n_examples++;
        }
        bb->n_tokens += t;
        for (; t < T; t++) {
            ids[t] = pad_id;
            tg[t] = 0;
            doc[t] = -1;
            pos[t] = 0;
        }
    }
    *cursor = first[rows];
    free(first);
    bb->b.B = rows;
    bb->b.T = T;
    bb->b.ids = bb->ids;
    bb->b.target = bb->target;
    bb->b.doc = bb->doc;
    bb->b.pos = bb->pos;
    bb->b.weight = NULL;
    return bb->n_examples;
}

int icl_batchbuf_weigh_examples(icl_batchbuf *bb)
{
    int B = bb->b.B, T = bb->b.T, ne = 0;
    for (int r = 0; r < B; r++) {
        const int32_t *doc = bb->doc + (size_t)r * T;
        const uint8_t *tg = bb->target + (size_t)r * T;
        float *w = bb->weight + (size_t)r * T;
        for (int s = 0, e; s < T; s = e) { /* the run [s, e) of one document */
            long n = 0;
            for (e = s + 1; e < T && doc[e] == doc[s]; e++)
                n += tg[e] != 0;
            float wt = n > 0 ? (float)(1.0 / (double)n) : 0.0f;
            w[s] = 0;
            for (int t = s + 1; t < e; t++)
                w[t] = tg[t] ? wt : 0.0f;
            ne += n > 0;
        }
    }
    bb->b.weight = bb->weight;
    return ne;
}

long icl_dataset_count_batches(const icl_dataset *d, const size_t *perm, int batch_size, int packing)
{
    return icl_dataset_count_batches_to(d, perm, d->n, batch_size, packing);
}

long icl_dataset_count_batches_to(const icl_dataset *d, const size_t *perm, size_t end, int batch_size, int packing)
{
    if (end > d->n)
        end = d->n;
    if (!packing)
        return (long)((end + (size_t)batch_size - 1) / (size_t)batch_size);
    size_t *first = xmalloc(((size_t)batch_size + 1) * sizeof *first);
    long nb = 0;
    size_t c = 0;
    int T;
    while (c < end) {
        int rows = plan_rows(d, perm, c, batch_size, packing, first, &T);
        c = first[rows];
        nb++;
    }
    free(first);
    return nb;
}
