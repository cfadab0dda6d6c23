/* Unit tests of lib/dataset.c: truncation and dropping, padded and packed
 * batches (layout, masks, doc and position ids), packing equivalence of the
 * loss and gradients on llama-tiny, shuffling per epoch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "model.h"
#include "rng.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/data"
#endif

/* Add "prompt ids | target ids" given as two arrays. */
static int add2(icl_dataset *d, const int32_t *p, size_t np, const int32_t *r, size_t nr)
{
    int32_t ids[256];
    uint8_t tg[256];
    for (size_t i = 0; i < np; i++)
        ids[i] = p[i], tg[i] = 0;
    for (size_t i = 0; i < nr; i++)
        ids[np + i] = r[i], tg[np + i] = 1;
    return icl_dataset_add(d, ids, tg, np + nr);
}

static void truncation(void **state)
{
    (void)state;
    icl_dataset d;
    icl_dataset_init(&d, 6);
    int32_t p[] = {10, 11, 12, 13, 14}, r[] = {20, 21, 2};
    /* 8 tokens, seq 6: keeps the last 6 (prompt 12 13 14, response) */
    assert_int_equal(add2(&d, p, 5, r, 3), 1);
    assert_int_equal(icl_dataset_len(&d, 0), 6);
    assert_int_equal(d.tok[d.off[0]], 12);
    assert_int_equal(d.tok[d.off[0] + 3], 20 | ICL_DS_TARGET);
    assert_int_equal(d.n_truncated, 1);
    assert_int_equal(icl_dataset_example_targets(&d, 0), 3);
    /* response of 5 + one token before it = 6 fits; of 6 does not */
    int32_t r5[] = {1, 2, 3, 4, 5}, r6[] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(add2(&d, p, 5, r5, 5), 1);
    assert_int_equal(d.tok[d.off[1]], 14);
    assert_int_equal(add2(&d, p, 5, r6, 6), 0);
    assert_int_equal(d.n_dropped_long, 1);
    /* no target, or a target only at the first position: dropped as empty */
    assert_int_equal(add2(&d, p, 3, NULL, 0), 0);
    assert_int_equal(add2(&d, NULL, 0, r, 1), 0);
    assert_int_equal(d.n_dropped_empty, 2);
    /* all-target line: first token is context in effect */
    assert_int_equal(add2(&d, NULL, 0, r, 3), 1);
    assert_int_equal(icl_dataset_example_targets(&d, 2), 2);
    /* a trailing context segment is dropped (nothing trains on it) */
    int32_t ids[] = {7, 8, 9, 10, 11};
    uint8_t tg[] = {0, 1, 1, 0, 0};
    assert_int_equal(icl_dataset_add(&d, ids, tg, 5), 1);
    assert_int_equal(icl_dataset_len(&d, 3), 3);
    /* multi-turn: earlier target kept as target when in the window */
    int32_t mt[] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t mtg[] = {0, 0, 1, 1, 0, 0, 1, 1};
    assert_int_equal(icl_dataset_add(&d, mt, mtg, 8), 1);
    assert_int_equal(icl_dataset_len(&d, 4), 6);
    assert_int_equal(icl_dataset_example_targets(&d, 4), 3); /* 4, 7, 8 (3 is at position 0) */
    assert_int_equal(d.n, 5);
    assert_int_equal(d.n_read, 8);
    icl_dataset_free(&d);
}

static void padded_and_packed_layout(void **state)
{
    (void)state;
    icl_dataset d;
    icl_dataset_init(&d, 8);
    int32_t p[] = {5, 6, 7}, r[] = {8, 9, 2};
    add2(&d, p, 2, r, 3);  /* 5 tokens */
    add2(&d, p, 1, r, 2);  /* 3 tokens */
    add2(&d, p, 3, r, 1);  /* 4 tokens */
    size_t perm[3];
    icl_dataset_order(&d, 1, 0, 0, perm, NULL);
    icl_batchbuf bb = {0};
    size_t cur = 0;
    /* padded, batch 2: rows of 5, T = 5; pad id 2 == eos stays a target by position */
    assert_int_equal(icl_dataset_next(&d, perm, &cur, 2, 0, 2, &bb), 2);
    assert_int_equal(bb.b.B, 2);
    assert_int_equal(bb.b.T, 5);
    assert_int_equal(cur, 2);
    int32_t ids1[] = {5, 8, 9, 2, 2};
    uint8_t tg1[] = {0, 1, 1, 0, 0};
    int32_t doc1[] = {0, 0, 0, -1, -1};
    for (int t = 0; t < 5; t++) {
        assert_int_equal(bb.ids[5 + t], ids1[t]);
        assert_int_equal(bb.target[5 + t], tg1[t]);
        assert_int_equal(bb.doc[5 + t], doc1[t]);
    }
    assert_int_equal(bb.target[4], 1); /* the EOS (id 2) of row 0 is a target */
    assert_int_equal(bb.n_targets, 3 + 2);
    assert_int_equal(bb.n_tokens, 8);
    assert_int_equal(icl_dataset_next(&d, perm, &cur, 2, 0, 2, &bb), 1);
    assert_int_equal(bb.b.B, 1);
    assert_int_equal(bb.b.T, 4);
    assert_int_equal(icl_dataset_next(&d, perm, &cur, 2, 0, 2, &bb), 0);
    assert_int_equal(icl_dataset_count_batches(&d, perm, 2, 0), 2);
    /* packed into rows of 8: [ex0 ex1] [ex2] */
    cur = 0;
    assert_int_equal(icl_dataset_next(&d, perm, &cur, 2, 1, 0, &bb), 3);
    assert_int_equal(bb.b.B, 2);
    assert_int_equal(bb.b.T, 8);
    int32_t doc0[] = {0, 0, 0, 0, 0, 1, 1, 1}, pos0[] = {0, 1, 2, 3, 4, 0, 1, 2};
    for (int t = 0; t < 8; t++) {
        assert_int_equal(bb.doc[t], doc0[t]);
        assert_int_equal(bb.pos[t], pos0[t]);
    }
    assert_int_equal(bb.doc[8 + 4], -1);
    assert_int_equal(bb.n_targets, 6);
    assert_int_equal(icl_dataset_count_batches(&d, perm, 2, 1), 1);
    assert_int_equal(icl_dataset_count_batches(&d, perm, 1, 1), 2);
    /* the batches begun before a cursor: batch 1 packed takes [ex0 ex1], then [ex2] */
    assert_int_equal(icl_dataset_count_batches_to(&d, perm, 0, 1, 1), 0);
    assert_int_equal(icl_dataset_count_batches_to(&d, perm, 2, 1, 1), 1);
    assert_int_equal(icl_dataset_count_batches_to(&d, perm, 3, 1, 1), 2);
    assert_int_equal(icl_dataset_count_batches_to(&d, perm, 99, 1, 1), 2);
    assert_int_equal(icl_dataset_count_batches_to(&d, perm, 1, 2, 0), 1);
    assert_int_equal(icl_dataset_count_batches_to(&d, perm, 3, 2, 0), 2);
    icl_batchbuf_free(&bb);
    icl_dataset_free(&d);
}

static void shuffle_per_epoch(void **state)
{
    (void)state;
    icl_dataset d;
    icl_dataset_init(&d, 8);
    int32_t p[] = {1}, r[] = {2, 3};
    for (int i = 0; i < 50; i++)
        add2(&d, p, 1, r, 2);
    size_t a[50], b[50], c[50];
    uint64_t ra[4], rb[4];
    icl_dataset_order(&d, 7, 0, 1, a, ra);
    icl_dataset_order(&d, 7, 0, 1, b, rb);
    icl_dataset_order(&d, 7, 1, 1, c, NULL);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(ra, rb, sizeof ra);
    assert_memory_not_equal(a, c, sizeof a);
    int seen[50] = {0}, moved = 0;
    for (int i = 0; i < 50; i++) {
        seen[a[i]]++;
        moved += a[i] != (size_t)i;
    }
    for (int i = 0; i < 50; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > 40);
    icl_dataset_free(&d);
}

/* Packed and padded batches of the same examples give the same loss sum,
 * target count and gradients (llama-tiny and gpt2-tiny). */
static void packing_equivalence_model(const char *name)
{
    char dir[512], err[256];
    snprintf(dir, sizeof dir, "%s/model/%s/model", TEST_DATA, name);
    icl_model *m = icl_model_load(dir, err, sizeof err);
    assert_non_null(m);
    icl_dataset d;
    icl_dataset_init(&d, 32);
    icl_rng r;
    icl_rng_seed(&r, 3, 0);
    for (int e = 0; e < 7; e++) {
        int32_t ids[32];
        uint8_t tg[32];
        int n = 3 + (int)icl_rng_below(&r, 10), np = 1 + (int)icl_rng_below(&r, (uint64_t)n - 1);
        for (int i = 0; i < n; i++) {
            ids[i] = (int32_t)icl_rng_below(&r, (uint64_t)m->cfg.vocab_size);
            tg[i] = i >= np;
        }
        ids[n - 1] = 0; /* an EOS-like id equal to the model's pad id */
        assert_int_equal(icl_dataset_add(&d, ids, tg, (size_t)n), 1);
    }
    size_t perm[7];
    icl_dataset_order(&d, 5, 0, 1, perm, NULL);
    icl_batchbuf pad = {0}, pk = {0};
    size_t c1 = 0, c2 = 0;
    assert_int_equal(icl_dataset_next(&d, perm, &c1, 7, 0, 0, &pad), 7);
    assert_int_equal(icl_dataset_next(&d, perm, &c2, 2, 1, 0, &pk), 7);
    assert_int_equal(pk.b.B, 2);
    assert_true(pk.b.T <= 32);
    assert_int_equal(pad.n_targets, pk.n_targets);
    float scale = 1.0f / (float)pad.n_targets;
    long n1 = 0, n2 = 0;
    icl_model_alloc_grads(m);
    icl_model_zero_grads(m);
    double l1 = icl_model_forward(m, &pad.b, NULL, scale, &n1);
    icl_model_backward(m, &pad.b, NULL, 0);
    float *g1 = malloc(m->base.num_params * sizeof *g1);
    memcpy(g1, m->base.grads, m->base.num_params * sizeof *g1);
    icl_model_zero_grads(m);
    double l2 = icl_model_forward(m, &pk.b, NULL, scale, &n2);
    icl_model_backward(m, &pk.b, NULL, 0);
    assert_int_equal(n1, pad.n_targets);
    assert_int_equal(n2, n1);
    assert_true(fabs(l1 / n1 - l2 / n2) < 1e-5);
    double maxd = 0;
    for (size_t i = 0; i < m->base.num_params; i++)
        maxd = fmax(maxd, fabs(g1[i] - m->base.grads[i]));
    assert_true(maxd < 1e-5);
    free(g1);
    icl_batchbuf_free(&pad);
    icl_batchbuf_free(&pk);
    icl_dataset_free(&d);
    icl_model_free(m);
}

static void packing_equivalence(void **state)
{
    (void)state;
    packing_equivalence_model("llama-tiny");
    packing_equivalence_model("gpt2-tiny");
    packing_equivalence_model("qwen2-tiny");
}

/* Gradients of a batch do not depend on the batches computed before it
 * (buffer capacities grown by a larger batch must not change the rounding):
 * needed for bit-exact --resume. */
static void history_independence(void **state)
{
    (void)state;
    char err[256];
    icl_model *m = icl_model_load(TEST_DATA "/model/llama-tiny/model", err, sizeof err);
    assert_non_null(m);
    icl_dataset d;
    icl_dataset_init(&d, 64);
    icl_rng r;
    icl_rng_seed(&r, 3, 0);
    for (int e = 0; e < 12; e++) {
        int32_t ids[32];
        uint8_t tg[32];
        int n = 4 + (int)icl_rng_below(&r, 20);
        for (int i = 0; i < n; i++) {
            ids[i] = (int32_t)icl_rng_below(&r, 96);
            tg[i] = i >= 2;
        }
        icl_dataset_add(&d, ids, tg, (size_t)n);
    }
    size_t perm[12];
    icl_dataset_order(&d, 1, 0, 1, perm, NULL);
    icl_batchbuf a = {0}, b = {0};
    size_t c = 0;
    icl_dataset_next(&d, perm, &c, 3, 0, 0, &a);
    icl_dataset_next(&d, perm, &c, 9, 0, 0, &b);
    assert_true(b.b.T > a.b.T);
    icl_model_alloc_grads(m);
    float *g1 = malloc(m->base.num_params * sizeof *g1);
    long nt;
    icl_model_zero_grads(m);
    double l1 = icl_model_forward(m, &a.b, NULL, 0.1f, &nt);
    icl_model_backward(m, &a.b, NULL, 0);
    memcpy(g1, m->base.grads, m->base.num_params * sizeof *g1);
    icl_model_zero_grads(m);
    icl_model_forward(m, &b.b, NULL, 0.1f, &nt);
    icl_model_backward(m, &b.b, NULL, 0);
    icl_model_zero_grads(m);
    double l2 = icl_model_forward(m, &a.b, NULL, 0.1f, &nt);
    icl_model_backward(m, &a.b, NULL, 0);
    assert_true(l1 == l2);
    assert_memory_equal(g1, m->base.grads, m->base.num_params * sizeof *g1);
    free(g1);
    icl_batchbuf_free(&a);
    icl_batchbuf_free(&b);
    icl_dataset_free(&d);
    icl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(truncation),
        cmocka_unit_test(padded_and_packed_layout),
        cmocka_unit_test(shuffle_per_epoch),
        cmocka_unit_test(packing_equivalence),
        cmocka_unit_test(history_independence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
