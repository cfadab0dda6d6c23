/* Unit tests of the backward's gradient-readiness hook
 * (icl_model_backward_notify, icl_model_grad_range; lib/model.c) and of the
 * trainer's overlapped reduce (icl_step_opts' reduce_begin / grads_ready):
 *   - ranges: for every trainable set, the stages' ranges partition
 *     [0, num_params) in stage order (embeddings, block 0 .. L-1, head) and
 *     each holds exactly the views whose HF / PEFT names say they belong to
 *     that stage (model.layers.l. / transformer.h.l.; embeddings; final
 *     norm and untied LM head);
 *   - the hook fires once per stage, from num_hidden_layers down to -1; at
 *     the call for stage s the range of s (and of every stage above) already
 *     holds its final gradient, bit for bit, and the blocks below s are
 *     still untouched (zero): the gradients can be sent while the backward
 *     goes on;
 *   - the gradients are bit-identical with and without the hook;
 *   - for llama-tiny (untied head), gpt2-tiny (tied, position embeddings),
 *     each as a full fine-tune, with gradient checkpointing, and LoRA on a
 *     frozen base;
 *   - icl_train_step: reduce_begin comes once, after the last micro-batch's
 *     forward, with this process's final count and loss sum; the hook fires
 *     only in that micro-batch's backward, every stage once; reduce comes
 *     last; the step's parameters equal a step without overlap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lora.h"
#include "model.h"
#include "trainer.h"
#include "util.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/data"
#endif

static icl_model *load(const char *name)
{
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/model/%s/model", TEST_DATA, name);
    icl_model *m = icl_model_load(p, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    return m;
}

enum { MODE_FULL, MODE_CKPT, MODE_LORA };

static icl_model *setup(const char *name, int mode)
{
    icl_model *m = load(name);
    if (mode == MODE_CKPT)
        icl_model_set_gradient_checkpointing(m, 1);
    if (mode != MODE_LORA)
        return m;
    char err[256];
    icl_lora_config c = {0};
    c.r = 3;
    c.lora_alpha = 6;
    assert_int_equal(icl_lora_set_targets(&c, &m->cfg, "all-linear", err, sizeof err), 0);
    icl_param_set *s = icl_lora_attach(m, &c, 5, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    icl_lora_config_free(&c);
    uint64_t st = 99; /* random B, so that dA is not zero */
    for (int i = 0; i < s->n_views; i++)
        if (strstr(s->views[i].name, "lora_B"))
            for (size_t j = 0; j < s->views[i].numel; j++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                s->params[s->views[i].offset + j] = (float)((st >> 40) / 16777216.0 - 0.5) * 0.2f;
            }
    return m;
}

/* The stage a view's name says it belongs to (see model.h). */
static int stage_of(const icl_model *m, const char *name)
{
    const char *p = strstr(name, "layers.");
    if (p)
        return atoi(p + 7);
    p = strstr(name, "transformer.h.");
    if (p)
        return atoi(p + 14);
    if (strstr(name, "embed_tokens") || strstr(name, "wte") || strstr(name, "wpe"))
        return -1;
    if (strstr(name, "model.norm") || strstr(name, "ln_f") || strstr(name, "lm_head"))
        return m->cfg.num_hidden_layers;
    fail_msg("view %s: no stage", name);
    return -2;
}

static void check_ranges(const icl_model *m, const icl_param_set *s)
{
    int L = m->cfg.num_hidden_layers;
    size_t at = 0;
    for (int st = -1; st <= L; st++) {
        size_t b, e;
        icl_model_grad_range(m, s, st, &b, &e);
        assert_true(b <= e);
        if (e > b) {
            assert_int_equal(b, at); /* contiguous, in order */
            at = e;
        }
        for (int i = 0; i < s->n_views; i++) {
            const icl_param_view *v = &s->views[i];
            int inside = v->offset >= b && v->offset + v->numel <= e && e > b;
            if (inside != (stage_of(m, v->name) == st))
                fail_msg("%s: view %s and stage %d's range [%zu, %zu)", s->name, v->name, st, b, e);
        }
    }
    assert_int_equal(at, s->num_params);
    size_t b, e;
    icl_model_grad_range(m, s, L + 1, &b, &e);
    assert_int_equal(b, e);
    icl_model_grad_range(m, s, -2, &b, &e);
    assert_int_equal(b, e);
}

/* A batch: 2 x 12, all positions targets but the first 3 of each row. */
typedef struct {
    int32_t ids[24];
    uint8_t tg[24];
    icl_batch b;
} batch;

static void make_batch(batch *x, int V, int seed)
{
    for (int i = 0; i < 24; i++) {
        x->ids[i] = (int32_t)((i * 37 + 11 + seed * 7) % V);
        x->tg[i] = i % 12 >= 3;
    }
    x->b = (icl_batch){2, 12, x->ids, x->tg, NULL, NULL, NULL};
}

typedef struct {
    icl_model *m;
    icl_param_set *sets[4];
    float *final[4]; /* the gradients after the whole backward */
    int n_sets, calls, next, fail;
    char why[256];
    int *order; /* trainer test: event log */
    int n_order;
} watch;

static int all_zero(const float *g, size_t b, size_t e)
{
    for (size_t j = b; j < e; j++)
        if (g[j] != 0.0f)
            return 0;
    return 1;
}

static void on_ready(void *ctx, const icl_model *m, int stage)
{
    watch *w = ctx;
    if (w->order)
        w->order[w->n_order++] = 100 + stage;
    w->calls++;
    if (m != w->m || stage != w->next) {
        if (!w->fail)
            snprintf(w->why, sizeof w->why, "stage %d, wanted %d", stage, w->next);
        w->fail = 1;
    }
    w->next = stage - 1;
    if (!w->final[0])
        return;
    int L = m->cfg.num_hidden_layers;
    for (int i = 0; i < w->n_sets; i++) {
        const icl_param_set *s = w->sets[i];
        for (int st = L; st >= -1; st--) {
            size_t b, e;
            icl_model_grad_range(m, s, st, &b, &e);
            if (st >= stage) { /* final already */
                if (memcmp(s->grads + b, w->final[i] + b, (e - b) * sizeof(float)) && !w->fail) {
                    snprintf(w->why, sizeof w->why, "%s: stage %d not final at the call for stage %d", s->name, st,
                             stage);
                    w->fail = 1;
                }
            } else if (st >= 0 && !all_zero(s->grads, b, e) && !w->fail) { /* not reached yet */
                snprintf(w->why, sizeof w->why, "%s: block %d written before the call for stage %d", s->name, st,
                         stage);
                w->fail = 1;
            }
        }
    }
}

static void backward_hook(void **state)
{
    (void)state;
    static const char *const names[] = {"llama-tiny", "gpt2-tiny"};
    char err[256];
    for (int n = 0; n < 2; n++)
        for (int mode = MODE_FULL; mode <= MODE_LORA; mode++) {
            icl_model *m = setup(names[n], mode);
            batch x;
            make_batch(&x, m->cfg.vocab_size, n);
            watch w = {.m = m};
            w.n_sets = icl_model_trainable(m, w.sets, 4);
            assert_int_equal(w.n_sets, 1);
            assert_true(mode == MODE_LORA ? w.sets[0] == m->lora_set : w.sets[0] == &m->base);
            for (int i = 0; i < w.n_sets; i++)
                check_ranges(m, w.sets[i]);
            if (mode == MODE_LORA)
                check_ranges(m, &m->base); /* frozen: the ranges are still the layout's */
            /* without the hook: the final gradients */
            long nt;
            icl_model_zero_grads(m);
            assert_true(isfinite(icl_model_forward(m, &x.b, NULL, 0.01f, &nt)));
            assert_int_equal(icl_model_backward(m, &x.b, err, sizeof err), 0);
            for (int i = 0; i < w.n_sets; i++) {
                w.final[i] = xmalloc(w.sets[i]->num_params * sizeof(float));
                memcpy(w.final[i], w.sets[i]->grads, w.sets[i]->num_params * sizeof(float));
                assert_false(all_zero(w.final[i], 0, w.sets[i]->num_params));
            }
            /* with it */
            icl_model_zero_grads(m);
            assert_true(isfinite(icl_model_forward(m, &x.b, NULL, 0.01f, &nt)));
            w.next = m->cfg.num_hidden_layers;
            assert_int_equal(icl_model_backward_notify(m, &x.b, on_ready, &w, err, sizeof err), 0);
            if (w.fail)
                fail_msg("%s mode %d: %s", names[n], mode, w.why);
            assert_int_equal(w.calls, m->cfg.num_hidden_layers + 2);
            assert_int_equal(w.next, -2);
            for (int i = 0; i < w.n_sets; i++) {
                assert_memory_equal(w.sets[i]->grads, w.final[i], w.sets[i]->num_params * sizeof(float));
                free(w.final[i]);
            }
            icl_model_free(m);
        }
}

/* ------------------------------------------------------------ the trainer */

enum { EV_BEGIN = 1, EV_REDUCE = 2 };

typedef struct {
    watch w;
    long begin_nt;
    double begin_loss;
} step_watch;

static int on_begin(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, double *loss_sum, char *err,
                    size_t errsz)
{
    (void)sets, (void)n_sets, (void)err, (void)errsz;
    step_watch *s = ctx;
    s->w.order[s->w.n_order++] = EV_BEGIN;
    s->begin_nt = *n_targets;
    s->begin_loss = *loss_sum;
    s->w.next = s->w.m->cfg.num_hidden_layers;
    return 0;
}

static int on_reduce(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, double *loss_sum, char *err,
                     size_t errsz)
{
    (void)sets, (void)n_sets, (void)n_targets, (void)loss_sum, (void)err, (void)errsz;
    step_watch *s = ctx;
    if (s->w.order)
        s->w.order[s->w.n_order++] = EV_REDUCE;
    return 0;
}

static void trainer_overlap(void **state)
{
    (void)state;
    char err[256];
    icl_model *a = setup("llama-tiny", MODE_FULL), *b = setup("llama-tiny", MODE_FULL);
    int L = a->cfg.num_hidden_layers;
    batch x[2];
    make_batch(&x[0], a->cfg.vocab_size, 0);
    make_batch(&x[1], a->cfg.vocab_size, 1);
    icl_batch mb[2] = {x[0].b, x[1].b};
    long nt = 2 * 2 * 9;
    int order[64];
    step_watch sw = {.w = {.m = b, .order = order}};
    icl_step_opts plain = {{1e-2, 0.9, 0.999, 1e-8, 0.0}, 1.0, NULL, NULL, NULL, 3, 0, 1, NULL, NULL, 0};
    icl_step_opts ov = plain;
    ov.reduce = on_reduce;
    ov.reduce_ctx = &sw;
    ov.reduce_begin = on_begin;
    ov.grads_ready = on_ready;
    icl_step_result ra, rb;
    for (long t = 1; t <= 2; t++) {
        sw.w.n_order = 0;
        sw.w.calls = 0;
        sw.w.next = -99; /* before reduce_begin: any call is out of place */
        assert_int_equal(icl_train_step(a, mb, 2, nt, 1e-2, t, &plain, &ra, err, sizeof err), 0);
        assert_int_equal(icl_train_step(b, mb, 2, nt, 1e-2, t, &ov, &rb, err, sizeof err), 0);
        if (sw.w.fail)
            fail_msg("step %ld: %s", t, sw.w.why);
        /* begin, the L + 2 stages from the top, reduce */
        assert_int_equal(sw.w.n_order, L + 4);
        assert_int_equal(order[0], EV_BEGIN);
        for (int i = 0; i < L + 2; i++)
            assert_int_equal(order[1 + i], 100 + L - i);
        assert_int_equal(order[L + 3], EV_REDUCE);
        assert_int_equal(sw.begin_nt, nt);
        assert_true(sw.begin_loss == ra.loss_sum);
        assert_true(rb.loss == ra.loss && rb.grad_norm == ra.grad_norm);
        assert_memory_equal(a->base.params, b->base.params, a->base.num_params * sizeof(float));
    }
    icl_model_free(a);
    icl_model_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backward_hook),
        cmocka_unit_test(trainer_overlap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
