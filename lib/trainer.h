/* trainer.h - training: one optimizer step (icl_train_step) and the run of
 * icl-train (icl_train): data, schedule, clipping, evaluation, checkpoints
 * and exact resume.  The library reports; the program (cmd/icl-train.c)
 * prints metrics, progress and messages and handles signals, through
 * icl_train_hooks.
 *
 * One optimizer step = grad_accum micro-batches (icl_dataset_next) taken
 * from the current epoch (a step never spans two epochs, so the last step of
 * an epoch may have fewer).  The loss of the step is the mean over ALL its
 * trained positions: each micro-batch's forward gets loss_scale =
 * 1 / (trained positions of the whole step), so --grad-accum 2
 * --batch-size 4 computes the same update as --batch-size 8.  Then:
 * global L2 norm of the gradients of the trainable parameter sets (logged
 * as grad_norm, before clipping), clipping as
 * torch.nn.utils.clip_grad_norm_, AdamW (optim.h) with weight decay on
 * tensors of 2+ dims only, learning rate icl_lr_at(schedule, step) as
 * transformers' schedulers (step 0-based).
 *
 * Number of steps: max_steps when > 0, else the sum over the whole epochs
 * of ceil(micro-batches of the epoch / (grad_accum world_size)), plus for a
 * fractional epochs ceil(fraction x the next epoch's steps) (transformers:
 * ceil(num_train_epochs x steps per epoch)).
 *
 * Data parallelism (world_size > 1; icl-train over MPI): process rank
 * takes, of each world_size consecutive micro-batches of the common order,
 * the one at index rank (up to grad_accum per step), and the reduce hook
 * must combine the gradients: each process's are those of its own mean loss
 * (loss_scale 1 / its targets), so the global mean is
 * sum_r(n_r g_r) / sum_r n_r.  An epoch's last step may leave a process
 * without a micro-batch (0 targets): the reduce must then supply the
 * global count and loss sum, or the step reports a NaN loss.  Only rank 0
 * writes (OUT_DIR, checkpoints, the final model); every rank reads the
 * checkpoint of --resume, so OUT_DIR must be the same folder for all.
 *
 * Checkpoints (every save_every steps, at the end, and when stopped):
 *   OUT_DIR/checkpoint-STEP/   config.json, model.safetensors (F32),
 *     generation_config.json, tokenizer files  (an HF model folder)
 *     optimizer.safetensors    per parameter NAME of the trainable sets:
 *                              "NAME.exp_avg" and "NAME.exp_avg_sq" (AdamW
 *                              moments, F32)
 *     trainer_state.json       {"global_step", "epoch" (float, as HF),
 *                              "log_history" (as HF: the logged metrics
 *                              objects of the run so far, keys as the
 *                              metrics lines), "best_metric" and
 *                              "best_model_checkpoint" (val_loss, with
 *                              load_best_model_at_end),
 *                              "icl": {step, epoch, cursor, seed, rng
 *                              [4 hex words], schedule, adamw, batch_size,
 *                              grad_accum, seq_len, packing, num_examples,
 *                              data_hash, save_only_model,
 *                              gradient_checkpointing, settings}}
 *   "settings" holds every setting that changes the computation (model,
 *   sizes, tokenizer, data hash, batch and optimizer options, the planned
 *   step count): --resume compares them with this run's and names each
 *   that differs.  gradient_checkpointing is recorded but a resume may
 *   change it: it changes memory and time, not the numbers.  With LoRA the
 *   checkpoint's adapter_config.json must have this run's r, lora_alpha,
 *   lora_dropout, use_rslora and target_modules.  With save_only_model there is no optimizer.safetensors
 *   and such a checkpoint cannot be resumed.
 *   written in a temporary folder OUT_DIR/.tmp-checkpoint-STEP.XXXXXX (every
 *   file fsynced), then renamed into place and OUT_DIR fsynced: a folder
 *   named checkpoint-STEP is always complete.  OUT_DIR itself receives the
 *   final model.
 * Run folder: OUT_DIR/.lock is held (flock) for the run, so a second run on
 * the same folder is refused; creating it is also the check that OUT_DIR is
 * writable, before any work.  A run that returns 0 or 1 removes the .lock
 * (one a killed run left too) before it lets go of it.  Then stale ".tmp-checkpoint-*" folders and
 * "*.tmp.*" files (left by a killed run) are removed.  A fresh run into a
 * folder holding checkpoint-* folders is refused unless
 * overwrite_output_dir (which deletes them, once the model, tokenizer and
 * data have loaded).  A run that returns -1 leaves OUT_DIR as it found it:
 * the .lock it created is removed, and OUT_DIR when it created it and
 * holds nothing else (checkpoints saved before the failure are kept).  After each checkpoint, with
 * save_total_limit N the oldest are deleted as transformers'
 * _rotate_checkpoints does: the best one (load_best_model_at_end) is kept
 * and counted, and with N = 1 the newest is kept too.
 * Resume: the newest checkpoint-STEP (largest STEP) holding trainer_state.json;
 * the model and moments are read back bit for bit and the data position is
 * (epoch, cursor) of the per-epoch permutation, so the continued run gives
 * bit-identical parameters to an uninterrupted one (with any thread count:
 * every sum is ordered the same way whatever the team size).
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
 * target tokens in the step and *loss_sum its summed -log p over them: the
 * hook may replace both by the global ones (the step's loss is then
 * loss_sum / n_targets).  Return 0, or -1 with err. */
typedef int (*icl_grad_reduce_fn)(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets,
                                  double *loss_sum, char *err, size_t errsz);

typedef struct {
    icl_adamw adamw;
    double clip;                 /* max global L2 norm; <= 0: off */
    icl_grad_reduce_fn reduce;   /* NULL: one process */
    void *reduce_ctx;
    const volatile sig_atomic_t *stop; /* polled between micro-batches (may be NULL) */
    /* LoRA dropout masks (icl_model_set_lora_dropout): micro-batch k of step
     * t gets the key icl_dropout_key(seed, t, k world_size + rank), its
     * index in the step's order over all processes (world_size 0 means 1),
     * so a resumed run draws the same masks. */
    uint64_t seed;
    int rank, world_size;
    /* Overlapping the reduce with the backward (optional, with reduce; both
     * or neither): reduce_begin (an icl_grad_reduce_fn, ctx reduce_ctx) is
     * called once per step after the forward of this process's last
     * micro-batch, before its backward, when *n_targets and *loss_sum are
     * this process's final ones and the grads are NOT final yet; it may
     * replace the two by the global ones as reduce does.  The last
     * backward then calls grads_ready(reduce_ctx, m, stage) as each
     * stage's gradients become final (icl_model_backward_notify, model.h),
     * where the hook may start sending them.  With no micro-batch here,
     * reduce_begin comes after the loop, then grads_ready for every stage
     * from num_hidden_layers down to -1 (all zero).  Then reduce is called
     * as without overlap and must complete what the two started (the
     * counts it gets are the ones reduce_begin left).  A stop seen once
     * reduce_begin was called waits for the next step, as one seen inside
     * reduce. */
    icl_grad_reduce_fn reduce_begin;
    icl_grads_ready_fn grads_ready;
    /* 0: the step's loss is the mean over its target tokens (loss_scale
     * 1 / n_targets).  > 0: the mean over this many examples: the
     * micro-batches carry per-example weights (icl_batch.weight,
     * icl_batchbuf_weigh_examples: 1 / the example's target tokens), the
     * loss_scale is 1 / n_examples, and the count the reduce hooks and
     * the result get is n_examples instead of n_targets (a data-parallel
     * hook then averages over all processes' examples). */
    long n_examples;
} icl_step_opts;

/* The dropout key of micro-batch k (0-based, over all processes) of
 * optimizer step t (1-based) of a run with this seed: splitmix64 of the
 * three (see icl_step_opts). */
uint64_t icl_dropout_key(uint64_t seed, long t, long k);

typedef struct {
    double loss_sum;   /* summed -log p over the step's targets (after the reduce hook) */
    long n_targets;    /* their count (after the reduce hook); with n_examples (icl_step_opts)
                        * the number of examples, loss_sum then the sum of their mean losses */
    double loss;       /* loss_sum / n_targets */
    double grad_norm;  /* global L2 norm over the trainable sets, before clipping */
} icl_step_result;

/* One optimizer step over the trainable sets of m (icl_model_trainable):
 * zero their gradients; forward + backward of mb[0..n_mb) (each with its
 * dropout key, see icl_step_opts) with loss_scale
 * 1 / n_targets (n_targets: target tokens of all n_mb micro-batches, so
 * the gradient is that of the step's mean loss); the reduce hook; global
 * L2 norm (sets in order, tensors in order, accumulated in double);
 * clipping as torch.nn.utils.clip_grad_norm_; AdamW (optim.h) per tensor
 * with weight decay on tensors of 2+ dims, at learning rate lr and bias
 * correction step t (1-based); then, for a model with bf16 weights
 * (icl_model_set_bf16), icl_model_bf16_sync.  Moments are allocated on
 * first use.  Returns 0 (r filled), 1 when *o->stop became nonzero before the update
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
    /* LoRA (lora.h; PEFT's LoraConfig names): lora_r > 0 freezes the base
     * and trains adapters; checkpoints and OUT_DIR then hold a PEFT adapter
     * folder (adapter_config.json, adapter_model.safetensors) instead of a
     * model, and --resume reloads the base from model_dir (or the
     * checkpoint's base_model_name_or_path). */
    int lora_r;                 /* 0: full fine-tuning */
    double lora_alpha;          /* default 8 (PEFT's) */
    int lora_alpha_given;       /* 1: --lora-alpha was given (it needs --lora-r, and --adapter brings its own) */
    double lora_dropout;        /* -1 (the default): not given, i.e. 0, or --adapter's lora_dropout */
    const char *lora_targets;   /* comma list, "all-linear", or NULL: PEFT's default per architecture */
    int use_rslora;             /* scale alpha / sqrt(r) */
    const char *adapter;        /* a PEFT adapter folder to start from (its r, alpha, targets) */
    int dequantize;             /* LoRA on a GGUF base: 0 keeps its quantized matrices in their
                                 * blocks (QLoRA, icl_model_load_gguf_quantized), 1 dequantizes
                                 * everything to float32 (icl_model_load_gguf) */
    int gradient_checkpointing; /* keep only each layer's input, recompute in the backward
                                   (model.h); same results, bit for bit */
    int bf16;                   /* --dtype bf16: the matrix products in bfloat16 with float32
                                 * sums (icl_model_set_bf16), float32 master weights, gradients,
                                 * AdamW moments, norms and loss; the bf16 weights are re-rounded
                                 * after every optimizer step (icl_train_step does it); without
                                 * AVX512-BF16 a warning and the portable path.  Recorded in the
                                 * checkpoint's settings as "dtype": a resume must keep it */
    int loss_average_examples;  /* --loss-average examples: each step's loss is the mean over its
                                 * examples of each example's mean loss over its target tokens
                                 * (icl_step_opts.n_examples); 0 (tokens, the default): the mean
                                 * over the step's target tokens.  Recorded in the checkpoint's
                                 * settings as "loss_average" */
    /* data */
    const char *const *files;   /* token-line files; none = stdin */
    int nfiles;
    const char *valid;          /* --valid FILE or NULL */
    int batch_size, seq_len, grad_accum, packing, shuffle;
    /* length */
    double epochs;              /* may be fractional: see icl_train */
    long max_steps;
    /* optimizer */
    icl_adamw adamw;
    icl_sched_kind schedule;
    long warmup_steps;
    double min_lr;
    double clip;                /* max grad norm; <= 0 = off */
    /* run */
    long eval_every, save_every, log_every;
    int resume;                 /* continue from OUT_DIR's newest checkpoint (error if none) */
    int resume_if_possible;     /* with resume: start fresh when OUT_DIR has no checkpoint */
    int overwrite_output_dir;   /* a fresh run may delete the checkpoints of another run in OUT_DIR */
    long save_total_limit;      /* keep the newest N checkpoints (plus the best); 0: all */
    int save_only_model;        /* checkpoints without optimizer state (cannot be resumed) */
    int load_best_model_at_end; /* OUT_DIR gets the checkpoint of the lowest val_loss */
    int allow_eos_mismatch;     /* data whose header EOS the model does not stop at: a warning, not an error */
    uint64_t seed;
    int threads;                /* 0: $ICL_NUM_THREADS or all cores (icl_set_threads) */
    int verbose;                /* pass the configuration and data summaries to the note hook */
    /* data parallelism: this process takes, of each world_size consecutive
     * micro-batches, the one at index rank; reduce (see icl_step_opts) sums
     * the gradients.  Ranks other than 0 write nothing. */
    int rank, world_size;
    icl_grad_reduce_fn reduce;
    void *reduce_ctx;
    icl_grad_reduce_fn reduce_begin; /* overlap with the backward (icl_step_opts); NULL: none */
    icl_grads_ready_fn grads_ready;
} icl_train_opts;

/* Defaults (as transformers' TrainingArguments where one exists): batch 8,
 * seq_len 0 (= the model's max_position_embeddings, at most 2048; 512 from
 * scratch), grad_accum 1, epochs 1, lr 5e-5, linear schedule, no warmup,
 * betas 0.9/0.999, eps 1e-8, weight decay 0, clip 1.0, log every step,
 * shuffle on, seed 42, verbose on, rank 0 of 1. */
void icl_train_opts_default(icl_train_opts *o);

/* Check the options' combination and ranges (the one place they are
 * checked; icl_train does it first).  0 ok, -1 with "what is wrong" in err
 * (a usage error for a program). */
int icl_train_opts_check(const icl_train_opts *o, char *err, size_t errsz);

/* What the run reports after each optimizer step. */
typedef struct {
    long step, total_steps;   /* the step just done (1-based) and the run's count */
    long start_step;          /* the step the run started from (resume) */
    double epoch;             /* epochs done (fractional) */
    double loss;              /* this step's mean loss */
    double lr, grad_norm;     /* its learning rate; global norm before clipping */
    long tokens;              /* real tokens of the step */
    double elapsed;           /* seconds since the run's first step started */
    int logged;               /* the metrics are due: --log-every, an evaluation or the last step */
    double log_loss;          /* mean loss over the steps since the last logged one */
    double tokens_per_s;      /* over those steps (training time only) */
    int has_val;              /* val_loss was measured after this step */
    double val_loss;
} icl_train_progress;

/* The metrics line of a logged step (JSON, no newline):
 *   {"step", "epoch", "loss" (log_loss), "lr", "grad_norm", "tokens_per_s",
 *    "val_loss" (when has_val)}
 * Returns snprintf's count. */
int icl_train_metrics_json(const icl_train_progress *p, char *buf, size_t n);

/* The program's side of a run (every member may be NULL). */
typedef struct {
    /* a message: warning 0 for summaries (only when verbose), 1 for
     * warnings (dropped examples, an unreadable tokenizer, interrupted) */
    void (*note)(void *ctx, int warning, const char *msg);
    void (*step)(void *ctx, const icl_train_progress *p); /* after each step */
    void *ctx;
    /* nonzero (set by a signal handler): stop before the next update, save
     * a checkpoint of the last finished step and return 1 */
    const volatile sig_atomic_t *stop;
    /* on resume, before the first step: each logged step of the
     * checkpoint's log history, in order (logged = 1, has_val as logged) */
    void (*replay)(void *ctx, const icl_train_progress *p);
} icl_train_hooks;

/* Run training.  Returns 0 when done, 1 when *h->stop stopped it (a
 * checkpoint of the last completed step saved), -1 with err: bad options
 * (icl_train_opts_check), bad data (naming file:line), I/O errors, a
 * non-finite loss (naming the step and the last good checkpoint). */
int icl_train(const icl_train_opts *o, const icl_train_hooks *h, char *err, size_t errsz);

/* Newest complete checkpoint folder in out_dir (malloc'd path) or NULL. */
char *icl_train_latest_checkpoint(const char *out_dir);

#endif
