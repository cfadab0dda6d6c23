/* trainer.h - the training loop of icl-train: data, optimizer steps,
 * schedule, clipping, evaluation, metrics, checkpoints and exact resume.
 *
 * One optimizer step = grad_accum micro-batches (icl_dataset_next) taken
 * from the current epoch (a step never spans two epochs, so the last step of
 * an epoch may have fewer).  The loss of the step is the mean over ALL its
 * trained positions: each micro-batch's forward gets loss_scale =
 * 1 / (trained positions of the whole step), so --grad-accum 2
 * --batch-size 4 computes the same update as --batch-size 8.  Then:
 * global L2 norm of the gradients (logged as grad_norm, before clipping),
 * clipping as torch.nn.utils.clip_grad_norm_, AdamW (optim.h) with weight
 * decay on tensors of 2+ dims only, learning rate icl_lr_at(schedule, step)
 * as transformers' schedulers (step 0-based).
 *
 * Number of steps: max_steps when > 0, else the sum over the epochs of
 * ceil(micro-batches of the epoch / grad_accum).
 *
 * Checkpoints (every save_every steps, at the end, and on SIGINT/SIGTERM):
 *   OUT_DIR/checkpoint-STEP/   config.json, model.safetensors (F32),
 *     generation_config.json, tokenizer files  (an HF model folder)
 *     optimizer.safetensors    per parameter NAME: "NAME.exp_avg" and
 *                              "NAME.exp_avg_sq" (AdamW moments, F32)
 *     trainer_state.json       {"global_step", "epoch" (float, as HF),
 *                              "icl": {step, epoch, cursor, seed, rng
 *                              [4 hex words], schedule, adamw, batch_size,
 *                              grad_accum, seq_len, packing, num_examples,
 *                              data_hash}}
 *   written in a temporary folder OUT_DIR/.tmp-checkpoint-STEP.XXXXXX (every
 *   file fsynced), then renamed into place and OUT_DIR fsynced: a folder
 *   named checkpoint-STEP is always complete.  OUT_DIR itself receives the
 *   final model.
 * Resume: the newest checkpoint-STEP (largest STEP) holding trainer_state.json;
 * the model and moments are read back bit for bit and the data position is
 * (epoch, cursor) of the per-epoch permutation, so the continued run gives
 * bit-identical parameters to an uninterrupted one (same thread count).
 */
#ifndef ICL_TRAINER_H
#define ICL_TRAINER_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "optim.h"

/* ------------------------------------------------------------ one optimizer step */

/* Where a gradient all-reduce goes (data-parallel training): called once per
 * step after the backward of this process's micro-batches, before the norm.
 * sets[0..n_sets) are the trainable sets (their grads hold this process's
 * sum of d(loss_sum / n_targets)); *n_targets is this process's count of
 * target tokens in the step and may be replaced by the global one.  Return
 * 0, or -1 with err. */
typedef int (*icl_grad_reduce_fn)(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, char *err,
                                  size_t errsz);

typedef struct {
    icl_adamw adamw;
    double clip;                 /* max global L2 norm; <= 0: off */
    icl_grad_reduce_fn reduce;   /* NULL: one process */
    void *reduce_ctx;
    const volatile sig_atomic_t *stop; /* polled between micro-batches (may be NULL) */
} icl_step_opts;

typedef struct {
    double loss_sum;   /* summed -log p over the step's targets */
    long n_targets;    /* their count (after the reduce hook) */
    double loss;       /* loss_sum / n_targets */
    double grad_norm;  /* global L2 norm over the trainable sets, before clipping */
} icl_step_result;

/* One optimizer step over the trainable sets of m (icl_model_trainable):
 * zero their gradients; forward + backward of mb[0..n_mb) with loss_scale
 * 1 / n_targets (n_targets: target tokens of all n_mb micro-batches, so
 * the gradient is that of the step's mean loss); the reduce hook; global
 * L2 norm (sets in order, tensors in order, accumulated in double);
 * clipping as torch.nn.utils.clip_grad_norm_; AdamW (optim.h) per tensor
 * with weight decay on tensors of 2+ dims, at learning rate lr and bias
 * correction step t (1-based).  Moments are allocated on first use.
 * Returns 0 (r filled), 1 when *o->stop became nonzero before the update
 * (parameters unchanged), -1 with err: a rejected batch, a target count
 * that differs from n_targets, the hook's failure, a non-finite loss or
 * norm ("the loss is NaN", parameters unchanged). */
int icl_train_step(icl_model *m, const icl_batch *mb, int n_mb, long n_targets, double lr, long t,
                   const icl_step_opts *o, icl_step_result *r, char *err, size_t errsz);

typedef struct {
    /* model: exactly one of model_dir or arch */
    const char *model_dir;      /* -m: HF folder to fine-tune */
    const char *arch;           /* --arch llama|qwen2|gpt2: from scratch */
    int hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, intermediate_size;
    const char *tokenizer;      /* -t: tokenizer.json (or its folder), with --arch */
    const char *out_dir;        /* -o */
    /* data */
    const char *const *files;   /* token-line files; none = stdin */
    int nfiles;
    const char *valid;          /* --valid FILE or NULL */
    int batch_size, seq_len, grad_accum, packing, shuffle;
    /* length */
    long epochs, max_steps;
    /* optimizer */
    icl_adamw adamw;
    icl_sched_kind schedule;
    long warmup_steps;
    double min_lr;
    double clip;                /* max grad norm; <= 0 = off */
    /* run */
    long eval_every, save_every, log_every;
    int resume;
    uint64_t seed;
    int threads;                /* 0: $ICL_NUM_THREADS or all cores (icl_set_threads) */
    int rank, world_size;       /* data-parallel position: this process takes micro-batches
                                   k with k % world_size == rank (only 0, 1 used now) */
    FILE *metrics;              /* JSONL sink (stdout) */
    int progress;               /* 1 bar on stderr, 0 none, -1 when stderr is a tty */
    int verbose;                /* print the configuration and data summary on stderr */
} icl_train_opts;

/* Defaults (as transformers' TrainingArguments where one exists): batch 8,
 * seq_len 0 (= the model's max_position_embeddings, at most 2048; 512 from
 * scratch), grad_accum 1, epochs 1, lr 5e-5, linear schedule, no warmup,
 * betas 0.9/0.999, eps 1e-8, weight decay 0, clip 1.0, log every step,
 * shuffle on, seed 42, progress auto, verbose on. */
void icl_train_opts_default(icl_train_opts *o);

/* Run training.  Returns 0 when done, 130 / 143 after SIGINT / SIGTERM (a
 * checkpoint of the last completed step is saved first).  Bad data, bad
 * options, I/O errors and a non-finite loss die (exit 1) with a message
 * naming the file:line or the step. */
int icl_train(const icl_train_opts *o);

/* Newest complete checkpoint folder in out_dir (malloc'd path) or NULL. */
char *icl_train_latest_checkpoint(const char *out_dir);

#endif
