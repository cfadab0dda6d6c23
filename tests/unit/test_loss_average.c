/* Unit tests of the per-example loss average (icl-train --loss-average
 * examples): icl_batchbuf_weigh_examples (lib/dataset.c), icl_batch.weight
 * in icl_model_forward / backward (lib/model.c), icl_xent_rows_w (lib/ops.c)
 * and icl_step_opts.n_examples in icl_train_step (lib/trainer.c).
 *   - the weights of a packed batch: 1 / (the example's trained positions)
 *     at each of them, 0 elsewhere; the count of examples;
 *   - the weighted loss of a packed batch equals the sum over its examples
 *     of each example's mean loss, each example run ALONE as its own batch
 *     (an independent computation: no packing, no weights);
 *   - its gradient equals the sum of the examples' gradients, each run
 *     alone with loss_scale 1 / (E n_e);
 *   - finite differences of the per-example mean loss agree with that
 *     gradient;
 *   - weights all 1 are bit-identical to no weights (the default path);
 *   - icl_train_step over two micro-batches (gradient accumulation) with
 *     n_examples: loss = mean of the example means over both, count
 *     n_examples, gradient norm that of the reference gradient. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dataset.h"
#include "ops.h"
#include "trainer.h"
#include "util.h"

enum { V = 64, NEX = 9, SEQ = 40 };

static icl_model *tiny(void)
{
    icl_config c;
    assert_int_equal(icl_config_defaults(&c, "llama"), 0);
    c.vocab_size = V;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 16;
    c.max_position_embeddings = 64;
    c.bos_token_id = c.pad_token_id = -1;
    char err[256];
    assert_int_equal(icl_config_validate(&c, "test", err, sizeof err), 0);
    icl_model *m = icl_model_new(&c);
    icl_config_free(&c);
    icl_model_init_random(m, 5, 0.2f);
    return m;
}

/* NEX examples of 4..17 tokens, the response (target) from a random cut:
 * target counts from 1 to 15, so the weights differ a lot. */
static void make_data(icl_dataset *d)
{
    icl_dataset_init(d, SEQ);
    uint64_t s = 12345;
    for (int e = 0; e < NEX; e++) {
        int32_t ids[32];
        uint8_t tg[32];
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int n = 4 + (int)((s >> 33) % 14), cut = 1 + (int)((s >> 13) % (uint64_t)(n - 2));
        for (int i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((s >> 35) % V);
            tg[i] = i >= cut;
        }
        assert_int_equal(icl_dataset_add(d, ids, tg, (size_t)n), 1);
    }
}

/* Example e alone as a batch of one row: its loss sum, target count, and
 * (scale != 0) its gradient accumulated with that loss_scale. */
static double alone(icl_model *m, const icl_dataset *d, size_t e, float scale, long *nt)
{
    size_t n = icl_dataset_len(d, e);
    int32_t ids[SEQ];
    uint8_t tg[SEQ];
    for (size_t k = 0; k < n; k++) {
        ids[k] = (int32_t)(d->tok[d->off[e] + k] & ~ICL_DS_TARGET);
        tg[k] = (d->tok[d->off[e] + k] & ICL_DS_TARGET) != 0;
    }
    icl_batch b = {1, (int)n, ids, tg, NULL, NULL, NULL};
    double l = icl_model_forward(m, &b, NULL, scale, nt);
    if (scale != 0) {
        char err[256];
        assert_int_equal(icl_model_backward(m, &b, err, sizeof err), 0);
    }
    return l;
}

static size_t *identity_perm(size_t n)
{
    size_t *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = i;
    return p;
}

static void test_weights(void **state)
{
    (void)state;
    icl_dataset d;
    make_data(&d);
    size_t *perm = identity_perm(d.n), cur = 0;
    icl_batchbuf bb = {0};
    int used = icl_dataset_next(&d, perm, &cur, 2, 1, 0, &bb);
    assert_true(used >= 3); /* packing put several examples in a row */
    assert_null(bb.b.weight);
    int ne = icl_batchbuf_weigh_examples(&bb);
    assert_int_equal(ne, used);
    assert_ptr_equal(bb.b.weight, bb.weight);
    /* per example (run of one doc id): the weights sum to 1, each is
     * 1 / its trained positions, and sit exactly at them */
    int seen = 0;
    for (int r = 0; r < bb.b.B; r++) {
        const int32_t *doc = bb.doc + (size_t)r * bb.b.T;
        const float *w = bb.weight + (size_t)r * bb.b.T;
        for (int s = 0, e; s < bb.b.T; s = e) {
            for (e = s + 1; e < bb.b.T && doc[e] == doc[s]; e++)
                ;
            assert_true(w[s] == 0.0f);
            if (doc[s] < 0) { /* padding */
                for (int t = s; t < e; t++)
                    assert_true(w[t] == 0.0f);
                continue;
            }
            size_t ex = perm[(size_t)seen++];
            long n = icl_dataset_example_targets(&d, ex);
            double sum = 0;
            for (int t = s + 1; t < e; t++) {
                int trained = bb.target[(size_t)r * bb.b.T + t] != 0;
                assert_true(w[t] == (trained ? (float)(1.0 / (double)n) : 0.0f));
                sum += w[t];
            }
            assert_true(fabs(sum - 1.0) < 1e-6);
        }
    }
    assert_int_equal(seen, used);
    /* the next batch starts without weights */
    assert_true(icl_dataset_next(&d, perm, &cur, 2, 1, 0, &bb) > 0);
    assert_null(bb.b.weight);
    icl_batchbuf_free(&bb);
    free(perm);
    icl_dataset_free(&d);
}

/* The packed, weighted loss and gradient against the examples run alone. */
static void test_packed_vs_alone(void **state)
{
    (void)state;
    icl_model *m = tiny();
    icl_dataset d;
    make_data(&d);
    size_t *perm = identity_perm(d.n), cur = 0;
    icl_batchbuf bb = {0};
    int used = icl_dataset_next(&d, perm, &cur, 2, 1, 0, &bb);
    int E = icl_batchbuf_weigh_examples(&bb);
    icl_param_set *sets[4];
    assert_int_equal(icl_model_trainable(m, sets, 4), 1);
    size_t P = sets[0]->num_params;
    char err[256];

    /* reference: each example alone, loss sum / its count, gradient with
     * scale 1 / (E n_e) */
    icl_model_zero_grads(m);
    double ref = 0;
    for (int k = 0; k < used; k++) {
        long nt = 0;
        double s0 = alone(m, &d, perm[k], 0.0f, &nt); /* the count first */
        assert_true(nt > 0);
        double s = alone(m, &d, perm[k], (float)(1.0 / ((double)E * (double)nt)), &nt);
        assert_true(s == s0);
        ref += s / (double)nt;
    }
    float *gref = xmalloc(P * sizeof(float));
    memcpy(gref, sets[0]->grads, P * sizeof(float));

    /* packed and weighted, loss_scale 1 / E */
    icl_model_zero_grads(m);
    long nt = 0;
    double got = icl_model_forward(m, &bb.b, NULL, (float)(1.0 / (double)E), &nt);
    assert_int_equal(nt, bb.n_targets);
    assert_int_equal(icl_model_backward(m, &bb.b, err, sizeof err), 0);
    assert_true(fabs(got - ref) <= 1e-5 * fabs(ref));
    double gmax = 0, dmax = 0;
    for (size_t i = 0; i < P; i++) {
        gmax = fmax(gmax, fabs(gref[i]));
        dmax = fmax(dmax, fabs(gref[i] - sets[0]->grads[i]));
    }
    assert_true(gmax > 1e-3);
    assert_true(dmax <= 1e-4 * gmax);

    /* finite differences of L = (weighted sum) / E at a few parameters */
    float *g = xmalloc(P * sizeof(float));
    memcpy(g, sets[0]->grads, P * sizeof(float));
    int checked = 0;
    for (size_t i = 7; i < P && checked < 12; i += P / 11) {
        float *p = &sets[0]->params[i], p0 = *p, h = 1e-2f;
        *p = p0 + h;
        double lp = icl_model_forward(m, &bb.b, NULL, 0.0f, NULL) / E;
        *p = p0 - h;
        double lm = icl_model_forward(m, &bb.b, NULL, 0.0f, NULL) / E;
        *p = p0;
        double fd = (lp - lm) / (2.0 * h);
        assert_true(fabs(fd - g[i]) <= 2e-3 + 2e-2 * fabs(g[i]));
        checked++;
    }
    assert_true(checked >= 10);

    /* weights all 1: bit-identical to no weights */
    float *ones = xmalloc((size_t)bb.b.B * bb.b.T * sizeof(float));
    for (int i = 0; i < bb.b.B * bb.b.T; i++)
        ones[i] = 1.0f;
    icl_batch plain = bb.b, one = bb.b;
    plain.weight = NULL;
    one.weight = ones;
    icl_model_zero_grads(m);
    double a = icl_model_forward(m, &plain, NULL, 0.01f, NULL);
    assert_int_equal(icl_model_backward(m, &plain, err, sizeof err), 0);
    memcpy(g, sets[0]->grads, P * sizeof(float));
    icl_model_zero_grads(m);
    double b = icl_model_forward(m, &one, NULL, 0.01f, NULL);
    assert_int_equal(icl_model_backward(m, &one, err, sizeof err), 0);
    assert_true(a == b);
    assert_memory_equal(g, sets[0]->grads, P * sizeof(float));
    /* and the logits path (no fused head) weighs the same way */
    float *logits = xmalloc((size_t)bb.b.B * bb.b.T * V * sizeof(float));
    double wl = icl_model_forward(m, &bb.b, logits, 0.0f, NULL);
    assert_true(fabs(wl - ref) <= 1e-5 * fabs(ref));

    free(logits);
    free(ones);
    free(g);
    free(gref);
    icl_batchbuf_free(&bb);
    free(perm);
    icl_dataset_free(&d);
    icl_model_free(m);
}

/* icl_train_step over two micro-batches (gradient accumulation). */
static void test_step(void **state)
{
    (void)state;
    icl_model *m = tiny();
    icl_dataset d;
    make_data(&d);
    size_t *perm = identity_perm(d.n), cur = 0;
    icl_batchbuf bb[2];
    memset(bb, 0, sizeof bb);
    int used0 = icl_dataset_next(&d, perm, &cur, 1, 1, 0, &bb[0]);
    int used1 = icl_dataset_next(&d, perm, &cur, 1, 1, 0, &bb[1]);
    assert_true(used0 > 0 && used1 > 0);
    long E = icl_batchbuf_weigh_examples(&bb[0]) + icl_batchbuf_weigh_examples(&bb[1]);
    assert_int_equal(E, used0 + used1);
    icl_param_set *sets[4];
    icl_model_trainable(m, sets, 4);
    size_t P = sets[0]->num_params;

    icl_model_zero_grads(m);
    double ref = 0;
    for (int k = 0; k < used0 + used1; k++) {
        long nt = 0;
        alone(m, &d, perm[k], 0.0f, &nt);
        ref += alone(m, &d, perm[k], (float)(1.0 / ((double)E * (double)nt)), &nt) / (double)nt;
    }
    double ss = 0;
    for (size_t i = 0; i < P; i++)
        ss += (double)sets[0]->grads[i] * sets[0]->grads[i];
    ref /= (double)E;

    icl_batch mb[2] = {bb[0].b, bb[1].b};
    icl_step_opts o = {{1e-3, 0.9, 0.999, 1e-8, 0.0}, 0.0, NULL, NULL, NULL, 0, 0, 1, NULL, NULL, E};
    icl_step_result r;
    char err[256];
    assert_int_equal(icl_train_step(m, mb, 2, bb[0].n_targets + bb[1].n_targets, 1e-3, 1, &o, &r, err, sizeof err),
                     0);
    assert_int_equal(r.n_targets, E);
    assert_true(fabs(r.loss - ref) <= 1e-5 * ref);
    assert_true(fabs(r.grad_norm - sqrt(ss)) <= 1e-4 * sqrt(ss));
    /* the token count is still checked */
    assert_int_equal(icl_train_step(m, mb, 2, bb[0].n_targets, 1e-3, 2, &o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "targets"));

    icl_batchbuf_free(&bb[0]);
    icl_batchbuf_free(&bb[1]);
    free(perm);
    icl_dataset_free(&d);
    icl_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_packed_vs_alone),
        cmocka_unit_test(test_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
