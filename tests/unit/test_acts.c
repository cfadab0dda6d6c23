/* The model's activation buffers across batches of alternating shapes
 * (lib/model.c acts_get): they must not be freed and faulted in again at
 * every step (issue 14: a perf profile of SmolLM2 training spent 14% of its
 * time in page faults), and reusing them must not change any result.
 *
 * Two shapes, 16 x 64 and 4 x 128 positions (each too big for the other's
 * buffers when they are sized exactly), alternate.  After two rounds (the
 * buffers reach their size and are all touched), two more rounds must take
 * fewer than a tenth of one slab's pages in minor page faults (getrusage;
 * before the fix every step faulted a whole slab in), and the losses and
 * gradient norms must be the bits a fresh model gives for each shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "model.h"
#include "optim.h"
#include "util.h"

static void config(icl_config *c)
{
    icl_config_defaults(c, "llama");
    c->vocab_size = 512;
    c->hidden_size = 128; /* narrow and deep: a big slab (~50 MB, above glibc's */
    c->num_hidden_layers = 8; /* 32 MB mmap limit) for little arithmetic */
    c->num_attention_heads = c->num_key_value_heads = 2;
    c->head_dim = 64;
    c->intermediate_size = 256;
    c->max_position_embeddings = 256;
}

static long minflt(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

typedef struct {
    int B, T;
    int32_t *ids;
} shape;

/* Loss (forward + backward) of one batch, and the gradient norm. */
static void step(icl_model *m, const shape *s, double *loss, double *gnorm)
{
    icl_batch b = {s->B, s->T, s->ids, NULL, NULL, NULL, NULL};
    long nt = 0;
    icl_model_zero_grads(m);
    *loss = icl_model_forward(m, &b, NULL, 1.0f / (float)(s->B * (s->T - 1)), &nt);
    char err[256];
    if (icl_model_backward(m, &b, err, sizeof err))
        fail_msg("%s", err);
    *gnorm = icl_sumsq(m->base.grads, m->base.num_params);
}

static void alternating_shapes(void **state)
{
    (void)state;
    icl_set_threads(2);
    icl_config c;
    config(&c);
    shape sh[2] = {{16, 64, NULL}, {4, 128, NULL}};
    for (int k = 0; k < 2; k++) {
        sh[k].ids = xmalloc(sizeof(int32_t) * sh[k].B * sh[k].T);
        for (int i = 0; i < sh[k].B * sh[k].T; i++)
            sh[k].ids[i] = (i * 7919 + 13 * k) % c.vocab_size;
    }
    /* references: a fresh model per shape */
    double want_l[2], want_g[2];
    for (int k = 0; k < 2; k++) {
        icl_model *f = icl_model_new(&c);
        icl_model_init_random(f, 42, 0.02f);
        icl_model_alloc_grads(f);
        step(f, &sh[k], &want_l[k], &want_g[k]);
        icl_model_free(f);
    }
    icl_model *m = icl_model_new(&c);
    icl_model_init_random(m, 42, 0.02f);
    icl_model_alloc_grads(m);
    double l, g;
    for (int r = 0; r < 2; r++) /* the buffers reach their size and are all touched */
        for (int k = 0; k < 2; k++)
            step(m, &sh[k], &l, &g);
    long f0 = minflt();
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < 2; k++) {
            step(m, &sh[k], &l, &g);
            if (memcmp(&l, &want_l[k], sizeof l) || memcmp(&g, &want_g[k], sizeof g))
                fail_msg("shape %d x %d, round %d: loss %.17g grad sumsq %.17g, a fresh model %.17g %.17g", sh[k].B,
                         sh[k].T, r, l, g, want_l[k], want_g[k]);
        }
    long faults = minflt() - f0;
    /* one slab for 1024 rows: about 12 floats per row per hidden unit and layer */
    long slab_pages = 1024L * c.hidden_size * 12 * c.num_hidden_layers * 4 / 4096;
    print_message("# 2 rounds of 2 alternating shapes: %ld minor page faults (one slab ~%ld pages)\n", faults,
                  slab_pages);
#ifdef __SANITIZE_ADDRESS__
    /* ASan quarantines freed memory, so every small scratch allocation
     * faults fresh pages in: the count means nothing there */
    print_message("# (ASan build: the page-fault count is not checked)\n");
#else
    assert_true(faults < slab_pages / 10);
#endif
    icl_model_free(m);
    free(sh[0].ids);
    free(sh[1].ids);
    icl_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alternating_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
