/* Unit tests of icl_train_step (lib/trainer.c):
 *   - a frozen base allocates no gradient or moment memory: the peak RSS of
 *     a process that runs steps with the base (5.3 M parameters) frozen is
 *     below that of full fine-tuning by at least 3x the parameter bytes
 *     (grads, m, v; with nothing trainable the backward also stops at
 *     once); with LoRA adapters trained on the frozen base (the full
 *     backward), by 3x less the adapters' own 4 buffers; each measured in
 *     its own child process (getrusage ru_maxrss);
 *   - the reduce hook is called once per step with the trainable sets and
 *     the step's target count, before the norm (a hook that doubles every
 *     gradient doubles the reported norm), and its failure is the step's;
 *   - a stop flag set before the step leaves the parameters unchanged;
 *   - icl_train with world_size 2: rank r takes micro-batch r of each pair,
 *     so per step the two ranks' target counts add up to world_size 1's
 *     (with grad_accum 2), and the step count is the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "trainer.h"
#include "util.h"

enum { B = 2, T = 64 };

/* A random Llama of about 4.3 M parameters (vocab 4096, hidden 256, 4 layers). */
static icl_model *big_model(void)
{
    icl_config c;
    assert_int_equal(icl_config_defaults(&c, "llama"), 0);
    c.vocab_size = 4096;
    c.hidden_size = 256;
    c.intermediate_size = 688;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 4;
    c.head_dim = 64;
    c.max_position_embeddings = 128;
    c.bos_token_id = c.pad_token_id = -1;
    char err[256];
    assert_int_equal(icl_config_validate(&c, "test", err, sizeof err), 0);
    icl_model *m = icl_model_new(&c);
    icl_config_free(&c);
    icl_model_init_random(m, 7, 0.02f);
    return m;
}

static void fill_batch(icl_batch *b, int32_t *ids, int V)
{
    for (int i = 0; i < B * T; i++)
        ids[i] = (int32_t)((i * 2654435761u) % (unsigned)V);
    *b = (icl_batch){B, T, ids, NULL, NULL, NULL, NULL};
}

static const char *const lora_targets[] = {"q_proj", "v_proj"};

/* In a child: build the model, run 2 steps (mode 0: full fine-tuning; 1:
 * base frozen, nothing trainable; 2: base frozen, LoRA r 8 on q_proj and
 * v_proj), write ru_maxrss (KiB), the base's and the trainable sets'
 * parameter bytes to fd. */
static void child(int mode, int fd)
{
    icl_set_threads(1); /* no thread stacks or pools that vary between runs */
    icl_model *m = big_model();
    char err[256];
    long lora_bytes = 0;
    if (mode > 0)
        icl_model_freeze_base(m);
    if (mode == 2) {
        icl_param_set *s = icl_model_add_lora(m, lora_targets, 2, 8, 16.0f, 1, err, sizeof err);
        if (!s)
            _exit(3);
        lora_bytes = (long)(s->num_params * sizeof(float));
    }
    int32_t ids[B * T];
    icl_batch b;
    fill_batch(&b, ids, m->cfg.vocab_size);
    icl_step_opts o = {{1e-3, 0.9, 0.999, 1e-8, 0.0}, 1.0, NULL, NULL, NULL, 0, 0, 1, NULL, NULL, 0};
    for (int t = 1; t <= 2; t++) {
        icl_step_result r;
        if (icl_train_step(m, &b, 1, (long)B * (T - 1), 1e-3, t, &o, &r, err, sizeof err) != 0)
            _exit(4);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long out[3] = {ru.ru_maxrss, (long)(m->base.num_params * sizeof(float)), lora_bytes};
    if (write(fd, out, sizeof out) != (ssize_t)sizeof out)
        _exit(5);
    icl_model_free(m);
    _exit(0);
}

static void measure(int mode, long out[3])
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        child(mode, p[1]);
    }
    close(p[1]);
    assert_int_equal(read(p[0], out, 3 * sizeof(long)), (ssize_t)(3 * sizeof(long)));
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void frozen_base_memory(void **state)
{
    (void)state;
    long full[3], frozen[3], lora[3];
    measure(0, full);
    measure(1, frozen);
    measure(2, lora);
    double pb = (double)full[1], lb = (double)lora[2];
    print_message("# parameters %.2f MB; peak RSS: full fine-tuning %.1f MB, base frozen %.1f MB (%.2f x the "
                  "parameter bytes less), base frozen + LoRA (%.2f MB of adapters) %.1f MB (%.2f x less)\n",
                  pb / 1e6, full[0] * 1.024e-3, frozen[0] * 1.024e-3, (full[0] - frozen[0]) * 1024.0 / pb, lb / 1e6,
                  lora[0] * 1.024e-3, (full[0] - lora[0]) * 1024.0 / pb);
    print_message("# full - frozen - 3 x parameter bytes = %+.0f KiB\n", (full[0] - frozen[0]) - 3.0 * pb / 1024);
    assert_true(full[1] > 16000000); /* big enough that the state buffers dominate */
    /* No grads, m, v for a frozen base: 3x the parameter bytes less.  Pages
     * the allocator and BLIS's buffer pool keep move the peak by about
     * +-100 KiB between runs: allowed 0.5% of the parameter bytes (105 KiB). */
    assert_true((double)(full[0] - frozen[0]) * 1024.0 >= 2.995 * pb);
    /* with adapters trained on the frozen base: the same less the adapters'
     * own params, grads, m and v and their GEMMs' buffers (2% allowed) */
    assert_true((double)(full[0] - lora[0]) * 1024.0 >= 2.98 * pb - 4.0 * lb);
}

/* ------------------------------------------------------------ the reduce hook and the stop flag */

typedef struct {
    int calls, n_sets;
    long n_targets;
    float factor;
    int fail;
} hook_log;

static int hook(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, double *loss_sum, char *err,
                size_t errsz)
{
    hook_log *h = ctx;
    h->calls++;
    h->n_sets = n_sets;
    h->n_targets = *n_targets;
    if (h->fail) {
        icl_seterr(err, errsz, "the all-reduce failed");
        return -1;
    }
    for (int i = 0; i < n_sets; i++)
        for (size_t j = 0; j < sets[i]->num_params; j++)
            sets[i]->grads[j] *= h->factor;
    *loss_sum *= h->factor; /* as a sum over processes would */
    return 0;
}

static icl_model *tiny(void)
{
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/model/llama-tiny/model", TEST_DATA);
    icl_model *m = icl_model_load(p, err, sizeof err);
    assert_non_null(m);
    return m;
}

static void reduce_hook_and_stop(void **state)
{
    (void)state;
    icl_model *m1 = tiny(), *m2 = tiny();
    int32_t ids[B * T];
    icl_batch b;
    fill_batch(&b, ids, m1->cfg.vocab_size);
    b.T = 9;
    long nt = (long)B * (b.T - 1);
    char err[256];
    icl_step_opts o = {{1e-2, 0.9, 0.999, 1e-8, 0.0}, 0.0, NULL, NULL, NULL, 0, 0, 1, NULL, NULL, 0};
    icl_step_result r1, r2;
    assert_int_equal(icl_train_step(m1, &b, 1, nt, 1e-2, 1, &o, &r1, err, sizeof err), 0);
    hook_log h = {0, 0, 0, 2.0f, 0};
    o.reduce = hook;
    o.reduce_ctx = &h;
    assert_int_equal(icl_train_step(m2, &b, 1, nt, 1e-2, 1, &o, &r2, err, sizeof err), 0);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.n_sets, 1);
    assert_int_equal(h.n_targets, nt);
    assert_true(r2.loss_sum == 2 * r1.loss_sum); /* the step's loss is the hook's sum over its count */
    assert_true(r2.loss == 2 * r1.loss);
    assert_true(fabs(r2.grad_norm - 2 * r1.grad_norm) <= 1e-6 * r1.grad_norm);
    /* a wrong target count and a failing hook are errors; nothing is updated */
    float *before = xmalloc(m2->base.num_params * sizeof(float));
    memcpy(before, m2->base.params, m2->base.num_params * sizeof(float));
    assert_int_equal(icl_train_step(m2, &b, 1, nt + 1, 1e-2, 2, &o, &r2, err, sizeof err), -1);
    assert_non_null(strstr(err, "targets"));
    h.fail = 1;
    assert_int_equal(icl_train_step(m2, &b, 1, nt, 1e-2, 2, &o, &r2, err, sizeof err), -1);
    assert_string_equal(err, "the all-reduce failed");
    /* a stop flag set: 1, parameters unchanged */
    volatile sig_atomic_t stop = 1;
    o.stop = &stop;
    assert_int_equal(icl_train_step(m2, &b, 1, nt, 1e-2, 2, &o, &r2, err, sizeof err), 1);
    assert_memory_equal(before, m2->base.params, m2->base.num_params * sizeof(float));
    /* a batch the model rejects is an error naming the micro-batch */
    ids[3] = m2->cfg.vocab_size;
    stop = 0;
    assert_int_equal(icl_train_step(m2, &b, 1, nt, 1e-2, 2, &o, &r2, err, sizeof err), -1);
    assert_non_null(strstr(err, "micro-batch 1: token id"));
    free(before);
    icl_model_free(m1);
    icl_model_free(m2);
}

/* ------------------------------------------------------------ data order by (rank, world_size) */

typedef struct {
    long targets[16];
    int n;
} step_targets;

static int record_targets(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, double *loss_sum,
                          char *err, size_t errsz)
{
    (void)sets, (void)n_sets, (void)loss_sum, (void)err, (void)errsz;
    step_targets *st = ctx;
    if (st->n < 16)
        st->targets[st->n++] = *n_targets;
    return 0;
}

static void train_ranks(const char *data, const char *out, int rank, int world, int accum, step_targets *st)
{
    char model[512], err[512];
    snprintf(model, sizeof model, "%s/model/llama-tiny/model", TEST_DATA);
    const char *files[1] = {data};
    icl_train_opts o;
    icl_train_opts_default(&o);
    o.model_dir = model;
    o.out_dir = out;
    o.files = files;
    o.nfiles = 1;
    o.batch_size = 1;
    o.grad_accum = accum;
    o.shuffle = 0;
    o.verbose = 0;
    o.rank = rank;
    o.world_size = world;
    o.reduce = record_targets;
    o.reduce_ctx = st;
    st->n = 0;
    int rc = icl_train(&o, NULL, err, sizeof err);
    if (rc)
        fail_msg("icl_train: %s", err);
}

static void rank_data_order(void **state)
{
    (void)state;
    char dir[256], data[300], out[300];
    snprintf(dir, sizeof dir, "%s/icl-test-ranks.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(data, sizeof data, "%s/d.tok", dir);
    /* example i: prompt "1 2", a response of i + 1 tokens, so i + 1 targets */
    FILE *f = fopen(data, "w");
    assert_non_null(f);
    for (int i = 0; i < 8; i++) {
        fprintf(f, "1 2\t");
        for (int j = 0; j <= i; j++)
            fprintf(f, "%s%d", j ? " " : "", 3 + (i + j) % 90);
        fputc('\n', f);
    }
    fclose(f);
    step_targets one, r0, r1;
    snprintf(out, sizeof out, "%s/w1", dir);
    train_ranks(data, out, 0, 1, 2, &one);
    snprintf(out, sizeof out, "%s/r0", dir);
    train_ranks(data, out, 0, 2, 1, &r0);
    snprintf(out, sizeof out, "%s/r1", dir);
    train_ranks(data, out, 1, 2, 1, &r1);
    /* only rank 0 writes: rank 1's OUT_DIR is not even created */
    struct stat sb;
    assert_int_equal(stat(out, &sb), -1);
    snprintf(out, sizeof out, "%s/r0/model.safetensors", dir);
    assert_int_equal(stat(out, &sb), 0);
    for (int k = 0; k < one.n || k < r0.n; k++)
        print_message("# step %d: targets %ld (world 1), %ld + %ld (ranks 0, 1 of 2)\n", k + 1, one.targets[k],
                      r0.targets[k], r1.targets[k]);
    assert_int_equal(one.n, 4);
    assert_int_equal(r0.n, 4);
    assert_int_equal(r1.n, 4);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(r0.targets[k], 2 * k + 1);
        assert_int_equal(r1.targets[k], 2 * k + 2);
        assert_int_equal(one.targets[k], r0.targets[k] + r1.targets[k]);
    }
    /* the same examples per step whatever the world size divides: per step,
     * world 1 x accum 4 == world 2 x accum 2 == world 4 x accum 1 (summed
     * over the ranks); 8 examples of batch 1: 2 steps */
    step_targets w[7];
    const int worlds[3] = {1, 2, 4};
    for (int wi = 0, k = 0; wi < 3; wi++)
        for (int r = 0; r < worlds[wi]; r++, k++) {
            snprintf(out, sizeof out, "%s/x%d", dir, k);
            train_ranks(data, out, r, worlds[wi], 4 / worlds[wi], &w[k]);
        }
    for (int step = 0; step < 2; step++) {
        long t1 = w[0].targets[step], t2 = w[1].targets[step] + w[2].targets[step];
        long t4 = w[3].targets[step] + w[4].targets[step] + w[5].targets[step] + w[6].targets[step];
        assert_int_equal(t1, step == 0 ? 1 + 2 + 3 + 4 : 5 + 6 + 7 + 8);
        assert_int_equal(t2, t1);
        assert_int_equal(t4, t1);
        assert_int_equal(w[3].targets[step], 1 + 4 * step); /* rank 0 of 4: example 4 step */
    }
    for (int k = 0; k < 7; k++)
        assert_int_equal(w[k].n, 2);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frozen_base_memory),
        cmocka_unit_test(reduce_hook_and_stop),
        cmocka_unit_test(rank_data_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
