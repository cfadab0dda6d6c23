/* dataset.h - training examples in memory, truncation, shuffling, batches.
 *
 * Examples are token lines (doc/DESIGN.md stream 2, toklines.h) read once and
 * kept compactly: one uint32 per token, the id in the low 31 bits and the
 * "target" flag (the token belongs to a target segment) in the top bit, with
 * an offset table [n+1].  No per-example allocation.
 *
 * Truncation to seq_len (icl_dataset_add):
 *   - tokens after the last target token (a trailing context segment) are
 *     dropped: no target can depend on them (causal attention);
 *   - if still longer than seq_len, tokens are removed from the LEFT (the
 *     start of the prompt / earlier turns), never from the final target
 *     segment; an example whose final target segment does not fit in
 *     seq_len with at least one token before it is dropped and counted
 *     (n_dropped_long), as is one with no trainable target at all
 *     (n_dropped_empty: no target token at a position >= 1).
 *
 * Loss positions (model.h): position t predicts token t+1 when target[t+1]
 * and both belong to the same example, so a target at an example's first
 * position is never trained; icl_dataset counts "targets" that way.
 *
 * Order: per epoch a permutation of the examples (Fisher-Yates driven by
 * icl_rng seeded with (seed, epoch)), so the data position of a run is just
 * (epoch, cursor into that permutation): serialisable for --resume.
 *
 * Batches (icl_dataset_next): the next examples from the permutation.
 *   padded:  batch_size rows, one example per row, T = longest in the batch;
 *   packed:  batch_size rows of at most seq_len positions, each row holding
 *            as many consecutive examples as fit (greedy, in order); T = the
 *            longest row.  Each example gets its own doc id and position ids
 *            restarting at 0, so attention and loss stay inside it.
 *   Padding positions: id pad_id (any id; never used to mask), target 0, doc
 *   -1 (a document of their own), position 0.  Masking is by position only,
 *   so an EOS stays a target even when pad id == eos id.
 */
#ifndef ICL_DATASET_H
#define ICL_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define ICL_DS_TARGET 0x80000000u

typedef struct {
    uint32_t *tok;       /* [ntok]: id | ICL_DS_TARGET for target tokens */
    size_t ntok, tokcap;
    size_t *off;         /* [n+1]: example i is tok[off[i] .. off[i+1]) */
    size_t n, offcap;
    int seq_len;         /* longest example kept (> 0) */
    int max_len;         /* longest example actually kept */
    long n_read;         /* examples offered to icl_dataset_add */
    long n_truncated;    /* kept, but shortened from the left */
    long n_dropped_long; /* final target segment + 1 > seq_len */
    long n_dropped_empty;/* no trainable target token */
    long n_targets;      /* trained positions over all kept examples */
} icl_dataset;

/* An empty dataset whose examples will be cut to seq_len (> 0) tokens. */
void icl_dataset_init(icl_dataset *d, int seq_len);
void icl_dataset_free(icl_dataset *d);

/* Offer one example: ids[0..n), target[i] nonzero for target-segment tokens
 * (ids must be in [0, 2^31)).  Applies the truncation above; returns 1 if
 * kept, 0 if dropped (and counted). */
int icl_dataset_add(icl_dataset *d, const int32_t *ids, const uint8_t *target, size_t n);

/* Length and trained positions of example i. */
static inline size_t icl_dataset_len(const icl_dataset *d, size_t i) { return d->off[i + 1] - d->off[i]; }
long icl_dataset_example_targets(const icl_dataset *d, size_t i);

/* XXH3-64 of the kept examples (ids, flags and boundaries): identifies the
 * data a checkpoint was trained on. */
uint64_t icl_dataset_hash(const icl_dataset *d);

/* Fill perm[0..d->n) with epoch's order: identity when !shuffle, else a
 * Fisher-Yates shuffle from icl_rng seeded (seed, epoch).  If rng_out is not
 * NULL it receives the generator state after shuffling (4 words). */
void icl_dataset_order(const icl_dataset *d, uint64_t seed, long epoch, int shuffle, size_t *perm,
                       uint64_t rng_out[4]);

/* A batch being built; buffers grow as needed and are owned by the struct. */
typedef struct {
    icl_batch b;         /* points into the arrays below */
    int32_t *ids, *doc, *pos;
    uint8_t *target;
    float *weight;       /* icl_batchbuf_weigh_examples's weights (b.weight then points here) */
    size_t cap;          /* capacity of each array in positions */
    long n_targets;      /* trained positions in the batch */
    long n_tokens;       /* real (non-padding) positions */
    int n_examples;
} icl_batchbuf;

void icl_batchbuf_free(icl_batchbuf *bb);

/* Build the next batch from perm[*cursor ..] (perm has d->n entries) and
 * advance *cursor past the examples used.  Returns the number of examples
 * used; 0 when *cursor == d->n (end of the epoch; bb is then untouched).
 * packing: see above; pad_id: id written at padding positions (>= 0). */
int icl_dataset_next(const icl_dataset *d, const size_t *perm, size_t *cursor, int batch_size, int packing,
                     int32_t pad_id, icl_batchbuf *bb);

/* Per-example loss weights for the batch icl_dataset_next just built (the
 * loss averaged per example, as --loss-average examples): each example's
 * trained positions (icl_batch: target[t] and doc[t] == doc[t-1]) get
 * weight 1 / (their count), every other position 0, and bb->b.weight
 * points at them, so the batch's weighted loss sum is the sum over its
 * examples of each example's mean loss.  Returns the number of examples
 * with a trained position (those the weighted sum averages).  The next
 * icl_dataset_next clears b.weight again. */
int icl_batchbuf_weigh_examples(icl_batchbuf *bb);

/* Number of batches icl_dataset_next yields over one epoch in order perm. */
long icl_dataset_count_batches(const icl_dataset *d, const size_t *perm, int batch_size, int packing);
/* Number of batches icl_dataset_next yields from the start of an epoch in
 * order perm until its cursor reaches end (end > d->n counts as d->n): the
 * batches that begin before end.  At a cursor icl_dataset_next left, the
 * batches taken so far this epoch.  O(end) with packing (each batch is
 * planned again), O(1) without. */
long icl_dataset_count_batches_to(const icl_dataset *d, const size_t *perm, size_t end, int batch_size, int packing);

#endif
