/* Unit tests of gradient checkpointing (icl_model_set_gradient_checkpointing,
 * lib/model.c):
 *   - peak memory: a child process running a training step at a long
 *     sequence (B 2 x T 1024 on an 8-layer Llama) without checkpointing and
 *     one with it; the difference of their ru_maxrss must be the (L - 1) A
 *     floats per token model.h's formula says checkpointing saves
 *     (A = 3C + Dqkv + Datt + Dup + I + H + 4), within 3% + 1 MiB (the
 *     allocator's and BLIS's pages move the peak by about 100 KiB; under
 *     ASan, whose shadow and quarantine add their own, within -15%/+20%),
 *     for a full fine-tune and for LoRA on a frozen base;
 *   - bit-identity: the loss (==) and every gradient (memcmp) of two
 *     micro-batches accumulated (packed documents, targets, a smaller second
 *     batch), then the parameters after two AdamW steps (icl_train_step),
 *     with and without checkpointing, for llama-tiny, qwen2-tiny (q/k/v
 *     biases) and gpt2-tiny (Conv1D, LayerNorm biases), each as a full
 *     fine-tune, LoRA on all linears of a frozen base, and LoRA with
 *     dropout 0.3 (the recomputation redraws the same masks);
 *   - switching it on and off on one model between steps changes nothing;
 *   - with a vocabulary whose head takes several chunks of rows at once
 *     without checkpointing (model.c HEAD_ROWS), the same bits, float32
 *     and bf16 (every path of lib/bf16.h). */
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
#include <sys/wait.h>
#include <unistd.h>

#include "bf16.h"
#include "config.h"
#include "lora.h"
#include "model.h"
#include "ops.h"
#include "trainer.h"
#include "util.h"

#ifndef TEST_DATA
#define TEST_DATA "tests/data"
#endif

/* ------------------------------------------------------------ peak memory */

enum { RB = 2, RT = 1024 };

/* A random Llama with 2 heads of 16, 1 KV head: vocabulary V, hidden 32,
 * FFN I, L layers, positions P, weights from seed. */
static icl_model *tiny_llama(int V, int I, int L, int P, uint64_t seed)
{
    icl_config c;
    assert_int_equal(icl_config_defaults(&c, "llama"), 0);
    c.vocab_size = V;
    c.hidden_size = 32;
    c.intermediate_size = I;
    c.num_hidden_layers = L;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 16;
    c.max_position_embeddings = P;
    c.bos_token_id = c.pad_token_id = -1;
    char err[256];
    assert_int_equal(icl_config_validate(&c, "test", err, sizeof err), 0);
    icl_model *m = icl_model_new(&c);
    icl_config_free(&c);
    icl_model_init_random(m, seed, 0.02f);
    return m;
}

/* One whose activations dwarf its weights: FFN 512, 8 layers. */
static icl_model *long_model(void) { return tiny_llama(64, 512, 8, 2048, 3); }

/* model.h: floats per token of one layer's kept activations */
static double layer_floats(const icl_config *c)
{
    double C = c->hidden_size, I = c->intermediate_size, H = c->num_attention_heads, hd = c->head_dim,
           KV = c->num_key_value_heads;
    double Datt = H * hd, Dqkv = (H + 2 * KV) * hd, Dup = c->arch == ICL_ARCH_LLAMA ? 2 * I : I;
    return 3 * C + Dqkv + Datt + Dup + I + H + 4;
}

/* In a child: one training step (lora: base frozen, LoRA r 4 on all
 * linears) with checkpointing ckpt; writes ru_maxrss (KiB) and the
 * predicted saving (bytes) to fd. */
static void rss_child(int ckpt, int lora, int fd)
{
    icl_set_threads(1); /* no thread stacks or pools that vary between runs */
    icl_model *m = long_model();
    char err[256];
    if (lora) {
        static const char *const all[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
        icl_model_freeze_base(m);
        if (!icl_model_add_lora(m, all, 7, 4, 8.0f, 1, err, sizeof err))
            _exit(3);
    }
    icl_model_set_gradient_checkpointing(m, ckpt);
    int32_t *ids = xmalloc(sizeof(int32_t) * RB * RT);
    for (int i = 0; i < RB * RT; i++)
        ids[i] = (int32_t)((i * 2654435761u) % 64u);
    icl_batch b = {RB, RT, ids, NULL, NULL, NULL, NULL};
    icl_step_opts o = {{1e-3, 0.9, 0.999, 1e-8, 0.0}, 1.0, NULL, NULL, NULL, 0, 0, 1, NULL, NULL, 0};
    icl_step_result r;
    if (icl_train_step(m, &b, 1, (long)RB * (RT - 1), 1e-3, 1, &o, &r, err, sizeof err) != 0)
        _exit(4);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double saved = (m->cfg.num_hidden_layers - 1) * layer_floats(&m->cfg) * RB * RT * sizeof(float);
    long out[2] = {ru.ru_maxrss, (long)saved};
    if (write(fd, out, sizeof out) != (ssize_t)sizeof out)
        _exit(5);
    free(ids);
    icl_model_free(m);
    _exit(0);
}

static void rss_measure(int ckpt, int lora, long out[2])
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        rss_child(ckpt, lora, p[1]);
    }
    close(p[1]);
    assert_int_equal(read(p[0], out, 2 * sizeof(long)), (ssize_t)(2 * sizeof(long)));
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void peak_memory(void **state)
{
    (void)state;
    for (int lora = 0; lora < 2; lora++) {
        long off[2], on[2];
        rss_measure(0, lora, off);
        rss_measure(1, lora, on);
        double got = (double)(off[0] - on[0]) * 1024.0, want = (double)off[1], lo = 0.97, hi = 1.03;
#ifdef __SANITIZE_ADDRESS__
        /* ASan adds shadow (1 byte per 8) and keeps freed blocks in its
         * quarantine, more of them with the recomputation's extra calls:
         * the saving is only roughly the formula's there */
        lo = 0.85, hi = 1.2;
#endif
        print_message("# %s, B %d x T %d: peak RSS %.1f MB without checkpointing, %.1f MB with; saved %.2f MB, "
                      "model.h's (L - 1) A floats per token: %.2f MB (ratio %.4f)\n",
                      lora ? "LoRA on a frozen base" : "full fine-tune", RB, RT, off[0] * 1.024e-3,
                      on[0] * 1.024e-3, got / 1e6, want / 1e6, got / want);
        assert_true(want > 50e6); /* large enough to dominate the noise */
        assert_true(got >= lo * want - 1048576.0);
        assert_true(got <= hi * want + 1048576.0);
    }
}

/* ------------------------------------------------------------ bit-identity */

static icl_model *load(const char *name)
{
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/model/%s/model", TEST_DATA, name);
    icl_model *m = icl_model_load(p, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    return m;
}

enum { MODE_FULL, MODE_LORA, MODE_DROPOUT };

/* name with mode: full fine-tune, or all-linear LoRA r 3 with random B (so
 * that dA is not zero) and dropout 0.3 in MODE_DROPOUT */
static icl_model *setup(const char *name, int mode)
{
    icl_model *m = load(name);
    if (mode == MODE_FULL)
        return m;
    char err[256];
    icl_lora_config c = {0};
    c.r = 3;
    c.lora_alpha = 6;
    c.lora_dropout = mode == MODE_DROPOUT ? 0.3 : 0;
    assert_int_equal(icl_lora_set_targets(&c, &m->cfg, "all-linear", err, sizeof err), 0);
    icl_param_set *s = icl_lora_attach(m, &c, 5, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    icl_lora_config_free(&c);
    uint64_t st = 99;
    for (int i = 0; i < s->n_views; i++)
        if (strstr(s->views[i].name, "lora_B"))
            for (size_t j = 0; j < s->views[i].numel; j++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                s->params[s->views[i].offset + j] = (float)((st >> 40) / 16777216.0 - 0.5) * 0.2f;
            }
    return m;
}

/* Two micro-batches: 3 x 24 with two packed documents per row and prompt
 * tokens, then 2 x 16 (a smaller batch in the same buffers). */
typedef struct {
    int32_t ids0[72], doc0[72], pos0[72], ids1[32];
    uint8_t tg0[72];
    icl_batch b[2];
    long nt;
} batches;

static void make_batches(batches *x, int V)
{
    for (int i = 0; i < 72; i++) {
        int t = i % 24;
        x->ids0[i] = (int32_t)((i * 37 + 11) % V);
        x->doc0[i] = t < 10 ? 0 : 1;
        x->pos0[i] = t < 10 ? t : t - 10;
        x->tg0[i] = (t >= 4 && t < 10) || t >= 15;
    }
    for (int i = 0; i < 32; i++)
        x->ids1[i] = (int32_t)((i * 53 + 5) % V);
    x->b[0] = (icl_batch){3, 24, x->ids0, x->tg0, x->doc0, x->pos0, NULL};
    x->b[1] = (icl_batch){2, 16, x->ids1, NULL, NULL, NULL, NULL};
    long nt = 0;
    for (int i = 0; i < 72; i++)
        nt += (i % 24) + 1 < 24 && x->tg0[i + 1] && x->doc0[i + 1] == x->doc0[i];
    x->nt = nt + 2 * 15;
}

/* Losses of both micro-batches and the gradients they accumulate. */
static void grads(icl_model *m, const batches *x, double loss[2])
{
    char err[256];
    icl_model_zero_grads(m);
    for (int k = 0; k < 2; k++) {
        long nt;
        icl_model_set_dropout_key(m, 1000 + (uint64_t)k);
        loss[k] = icl_model_forward(m, &x->b[k], NULL, 1.0f / (float)x->nt, &nt);
        assert_true(isfinite(loss[k]));
        assert_int_equal(icl_model_backward(m, &x->b[k], err, sizeof err), 0);
    }
}

static void same_sets(const icl_param_set *a, const icl_param_set *b, int what)
{
    assert_int_equal(a->num_params, b->num_params);
    const float *pa = what ? a->params : a->grads, *pb = what ? b->params : b->grads;
    assert_non_null(pa);
    assert_memory_equal(pa, pb, a->num_params * sizeof(float));
}

static void compare(icl_model *off, icl_model *on, int what)
{
    icl_param_set *s0[4], *s1[4];
    int n = icl_model_trainable(off, s0, 4);
    assert_int_equal(icl_model_trainable(on, s1, 4), n);
    for (int i = 0; i < n; i++)
        same_sets(s0[i], s1[i], what);
    if (what) /* a frozen base stays the same too */
        same_sets(&off->base, &on->base, 1);
}

static void bit_identical(void **state)
{
    (void)state;
    static const char *const names[] = {"llama-tiny", "qwen2-tiny", "gpt2-tiny"};
    static const char *const modes[] = {"full fine-tune", "LoRA", "LoRA + dropout 0.3"};
    for (int k = 0; k < 3; k++)
        for (int mode = 0; mode < 3; mode++) {
            icl_model *off = setup(names[k], mode), *on = setup(names[k], mode);
            icl_model_set_gradient_checkpointing(on, 1);
            batches x;
            make_batches(&x, off->cfg.vocab_size);
            double l0[2], l1[2];
            grads(off, &x, l0);
            grads(on, &x, l1);
            print_message("# %-10s %-18s losses %.9g %.9g\n", names[k], modes[mode], l0[0], l0[1]);
            assert_true(l0[0] == l1[0] && l0[1] == l1[1]);
            compare(off, on, 0);
            if (mode != MODE_FULL) { /* the frozen base got no gradient memory */
                assert_null(off->base.grads);
                assert_null(on->base.grads);
            }
            /* two optimizer steps; the second with checkpointing switched off and on again */
            icl_step_opts o = {{1e-2, 0.9, 0.999, 1e-8, 0.01}, 1.0, NULL, NULL, NULL, 7, 0, 1, NULL, NULL, 0};
            char err[256];
            for (int t = 1; t <= 2; t++) {
                icl_step_result r0, r1;
                if (t == 2) {
                    icl_model_set_gradient_checkpointing(on, 0);
                    icl_model_set_gradient_checkpointing(on, 1);
                }
                assert_int_equal(icl_train_step(off, x.b, 2, x.nt, 1e-2, t, &o, &r0, err, sizeof err), 0);
                assert_int_equal(icl_train_step(on, x.b, 2, x.nt, 1e-2, t, &o, &r1, err, sizeof err), 0);
                assert_true(r0.loss == r1.loss && r0.grad_norm == r1.grad_norm);
                compare(off, on, 0);
                compare(off, on, 1);
            }
            /* and the other way: the checkpointed model's next step without it */
            icl_model_set_gradient_checkpointing(on, 0);
            icl_model_set_gradient_checkpointing(off, 1);
            icl_step_result r0, r1;
            assert_int_equal(icl_train_step(off, x.b, 2, x.nt, 1e-2, 3, &o, &r0, err, sizeof err), 0);
            assert_int_equal(icl_train_step(on, x.b, 2, x.nt, 1e-2, 3, &o, &r1, err, sizeof err), 0);
            assert_true(r0.loss == r1.loss);
            compare(off, on, 1);
            icl_model_free(off);
            icl_model_free(on);
        }
}

/* ------------------------------------------------------------ a wide head */

/* A vocabulary of ICL_GEMM_LONG: without checkpointing the loss head takes
 * several chunks of min(T, 256) target rows at once (model.c, HEAD_ROWS), with it
 * one at a time; the loss, every gradient (the tied head's dW accumulated
 * over the same 256-row chunks either way) and the next step are the same
 * bits.  B 3 x T 200: 597 target rows, chunks of 200 + 200 + 197 with
 * checkpointing, one of 597 without (whose dW, in one product, BLIS would
 * block as 256 + 256 + 85 rows: a different rounding); then 1 x 40. */
static icl_model *wide_model(int lora)
{
    icl_model *m = tiny_llama(ICL_GEMM_LONG, 64, 2, 512, 5);
    char err[256];
    if (lora) {
        static const char *const all[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
        icl_model_freeze_base(m);
        if (!icl_model_add_lora(m, all, 7, 4, 8.0f, 1, err, sizeof err))
            fail_msg("%s", err);
    }
    return m;
}

static void wide_head(void **state)
{
    (void)state;
    enum { WB = 3, WT = 200 };
    int32_t *ids = xmalloc(sizeof(int32_t) * WB * WT);
    for (int i = 0; i < WB * WT; i++)
        ids[i] = (int32_t)((i * 2654435761u) % (unsigned)ICL_GEMM_LONG);
    icl_batch b[2] = {{WB, WT, ids, NULL, NULL, NULL, NULL}, {1, 40, ids + 7, NULL, NULL, NULL, NULL}};
    long nt = (long)WB * (WT - 1) + 39;
    /* float32, then bf16 products on each path (lib/bf16.h) */
    static const int path[] = {-1, ICL_BF16_PORTABLE, ICL_BF16_NO_AMX, ICL_BF16_BEST};
    static const char *const pname[] = {"float32", "bf16 portable", "bf16 AVX512-BF16", "bf16 best"};
    for (int v = 0; v < 8; v++) {
        int lora = v % 2, pv = v / 2;
        icl_model *off = wide_model(lora), *on = wide_model(lora);
        icl_model_set_gradient_checkpointing(on, 1);
        char err[256];
        if (path[pv] >= 0) {
            icl_bf16_force_path(path[pv]);
            assert_int_equal(icl_model_set_bf16(off, err, sizeof err), 0);
            assert_int_equal(icl_model_set_bf16(on, err, sizeof err), 0);
        }
        double l0[2], l1[2];
        for (int k = 0; k < 2; k++) {
            icl_model *m = k ? on : off;
            double *l = k ? l1 : l0;
            icl_model_zero_grads(m);
            for (int j = 0; j < 2; j++) {
                long n;
                l[j] = icl_model_forward(m, &b[j], NULL, 1.0f / (float)nt, &n);
                assert_true(isfinite(l[j]));
                assert_int_equal(icl_model_backward(m, &b[j], err, sizeof err), 0);
            }
        }
        print_message("# vocab %d, %s, %s: losses %.9g %.9g\n", ICL_GEMM_LONG, pname[pv],
                      lora ? "LoRA" : "full fine-tune", l0[0], l0[1]);
        assert_true(l0[0] == l1[0] && l0[1] == l1[1]);
        compare(off, on, 0);
        icl_step_opts o = {{1e-2, 0.9, 0.999, 1e-8, 0.01}, 1.0, NULL, NULL, NULL, 7, 0, 1, NULL, NULL, 0};
        icl_step_result r0, r1;
        assert_int_equal(icl_train_step(off, b, 2, nt, 1e-2, 1, &o, &r0, err, sizeof err), 0);
        assert_int_equal(icl_train_step(on, b, 2, nt, 1e-2, 1, &o, &r1, err, sizeof err), 0);
        assert_true(r0.loss == r1.loss && r0.grad_norm == r1.grad_norm);
        compare(off, on, 1);
        icl_bf16_force_path(ICL_BF16_BEST);
        icl_model_free(off);
        icl_model_free(on);
    }
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(peak_memory), /* first: the children fork from a small process */
        cmocka_unit_test(bit_identical),
        cmocka_unit_test(wide_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
