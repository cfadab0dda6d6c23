/* trainer.c - icl-train's loop: see trainer.h. */
#define _GNU_SOURCE
#include "trainer.h"
#include "bf16.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "config.h"
#include "dataset.h"
#include "lora.h"
#include "fileio.h"
#include "generate.h"
#include "gguf_model.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "toklines.h"
#include "util.h"

void icl_train_opts_default(icl_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch_size = 8;
    o->grad_accum = 1;
    o->shuffle = 1;
    o->epochs = 1;
    o->adamw = (icl_adamw){.lr = 5e-5, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0};
    o->schedule = ICL_SCHED_LINEAR;
    o->clip = 1.0;
    o->log_every = 1;
    o->seed = 42;
    o->verbose = 1;
    o->world_size = 1;
    o->lora_alpha = 8;
    o->lora_dropout = -1; /* not given */
}

/* ------------------------------------------------------------ the step */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t icl_dropout_key(uint64_t seed, long t, long k)
{
    return mix64(mix64(mix64(seed) ^ (uint64_t)t) ^ (uint64_t)k);
}

int icl_train_step(icl_model *m, const icl_batch *mb, int n_mb, long n_targets, double lr, long t,
                   const icl_step_opts *o, icl_step_result *r, char *err, size_t errsz)
{
    icl_param_set *sets[16];
    int ns = icl_model_trainable(m, sets, 16);
    if (ns > 16) {
        icl_seterr(err, errsz, "%d trainable parameter sets: at most 16", ns);
        return -1;
    }
    icl_model_zero_grads(m);
    icl_model_alloc_moments(m);
    memset(r, 0, sizeof *r);
    for (int k = 0; k < n_mb; k++) {
        char e2[256];
        if (icl_batch_validate(m, &mb[k], e2, sizeof e2)) {
            icl_seterr(err, errsz, "micro-batch %d: %s", k + 1, e2);
            return -1;
        }
    }
    int overlap = o->reduce && o->reduce_begin && o->grads_ready, begun = 0;
    /* the mean's denominator: target tokens, or examples (per-example weights) */
    long norm = o->n_examples > 0 ? o->n_examples : n_targets, counted = 0;
    for (int k = 0; k < n_mb; k++) {
        if (o->stop && *o->stop)
            return 1;
        long nt = 0;
        int ws = o->world_size > 0 ? o->world_size : 1;
        icl_model_set_dropout_key(m, icl_dropout_key(o->seed, t, (long)k * ws + o->rank));
        r->loss_sum += icl_model_forward(m, &mb[k], NULL, (float)(1.0 / (double)norm), &nt);
        counted += nt;
        if (overlap && k == n_mb - 1) {
            if (counted != n_targets)
                break; /* the check below */
            r->n_targets = norm;
            if (o->reduce_begin(o->reduce_ctx, sets, ns, &r->n_targets, &r->loss_sum, err, errsz))
                return -1;
            begun = 1;
        }
        if (icl_model_backward_notify(m, &mb[k], begun ? o->grads_ready : NULL, o->reduce_ctx, err, errsz))
            return -1;
    }
    if (!begun && o->stop && *o->stop)
        return 1;
    if (!begun && counted != n_targets) {
        icl_seterr(err, errsz, "internal error: the model counted %ld targets, the batches %ld", counted,
                   n_targets);
        return -1;
    }
    if (!begun)
        r->n_targets = norm;
    if (overlap && !begun) { /* no micro-batch here: every stage is final (zero) */
        if (o->reduce_begin(o->reduce_ctx, sets, ns, &r->n_targets, &r->loss_sum, err, errsz))
            return -1;
        for (int s = m->cfg.num_hidden_layers; s >= -1; s--)
            o->grads_ready(o->reduce_ctx, m, s);
    }
    if (o->reduce && o->reduce(o->reduce_ctx, sets, ns, &r->n_targets, &r->loss_sum, err, errsz))
        return -1;
    double ss = 0;
    for (int i = 0; i < ns; i++)
        ss += icl_sumsq(sets[i]->grads, sets[i]->num_params);
    r->loss = r->loss_sum / (double)r->n_targets;
    r->grad_norm = sqrt(ss);
    if (!isfinite(r->loss) || !isfinite(r->grad_norm)) {
        icl_seterr(err, errsz, "the %s is %s", isfinite(r->loss) ? "gradient norm" : "loss",
                   isnan(isfinite(r->loss) ? r->grad_norm : r->loss) ? "NaN" : "infinite");
        return -1;
    }
    double coef = icl_clip_coef(r->grad_norm, o->clip);
    for (int i = 0; i < ns; i++) {
        icl_param_set *s = sets[i];
        if (coef < 1.0)
            icl_scale(s->grads, s->num_params, (float)coef);
#pragma omp parallel for schedule(dynamic, 1)
        for (int j = 0; j < s->n_views; j++) {
            const icl_param_view *v = &s->views[j];
            icl_adamw_update(s->params + v->offset, s->grads + v->offset, s->m + v->offset, s->v + v->offset,
                             v->numel, &o->adamw, lr, t, v->ndim >= 2);
        }
    }
    /* --dtype bf16: the products' bf16 weights follow the float32 masters */
    return icl_model_bf16_sync(m, err, errsz);
}

/* ------------------------------------------------------------ small helpers */

/* a/b, without doubling a slash that ends a ("out/" + "x" = "out/x"). */
static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void fsync_path(const char *p)
{
    int fd = open(p, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* ------------------------------------------------------------ a run */

typedef struct {
    int present;
    uint64_t fp;      /* icl_tok_fingerprint */
    int vocab;        /* icl_tok_vocab_size */
    const char *what; /* where the identity comes from */
} tok_identity;

typedef struct {
    long step;        /* optimizer steps done */
    long epoch;       /* current epoch (0-based) */
    size_t cursor;    /* next example of the epoch's permutation */
    uint64_t rng[4];  /* shuffle generator after the epoch's shuffle */
} train_pos;

/* Everything one icl_train call holds. */
typedef struct {
    const icl_train_opts *o;
    const icl_train_hooks *h;
    char *err;
    size_t errsz;
    icl_model *m;
    const char *from;    /* where the model came from (for the summary) */
    char *ckpt;          /* resumed checkpoint or NULL */
    char *tokpath;       /* the model's tokenizer.json */
    char *tok_json;      /* from scratch: the tokenizer.json bytes to ship */
    size_t tok_len;
    tok_identity tid;
    int seq_len, threads;
    int32_t pad;
    icl_dataset data, valid;
    int have_valid;
    size_t *perm;
    icl_schedule sched;
    train_pos pos;
    icl_batchbuf *bbs, evb; /* bbs [grad_accum + 1]: the step's micro-batches and one scratch */
    icl_batch *mbs;
    char *last_good;     /* newest checkpoint written or resumed from */
    long last_saved;
    icl_lora_config lcfg; /* with --lora-r or --adapter: the adapters' configuration */
    int lock_fd;         /* OUT_DIR/.lock, flock'd for the run */
    int made_dir;        /* this run created OUT_DIR */
    int made_lock;       /* this run created OUT_DIR/.lock */
    char *lock_path;     /* OUT_DIR/.lock while this run holds it, else NULL */
    size_t n_old;        /* --overwrite-output-dir: checkpoints of an earlier run to delete */
    long *old_steps;
    const char *const *old_other; /* --overwrite-output-dir: the other kind's final files to delete
                                   * (a model's beside this LoRA run's adapter, or an adapter's) */
    json_t *history;     /* log_history: the logged metrics objects */
    double epochs_run;   /* the epochs the planned steps cover */
    long ep_of;          /* the epoch ep_steps and ep_done count (-1: none yet) */
    long ep_steps, ep_done; /* its optimizer steps, and those taken */
    long val_step;       /* the step val_loss was last measured after (-1: none) */
    double val_loss;
    char *best;          /* best_model_checkpoint (load_best_model_at_end) */
    json_t *ckpt_settings; /* the resumed checkpoint's "settings" */
    double best_val;
    /* metrics since the last logged step */
    double log_loss, log_time;
    long log_targets, log_tokens;
} train_run;

static void note(const train_run *r, int warning, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(const train_run *r, int warning, const char *fmt, ...)
{
    if (!r->h || !r->h->note || (!warning && !r->o->verbose))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->h->note(r->h->ctx, warning, msg);
}

/* Set the run's error message; returns -1. */
static int fail(train_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(train_run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (r->err && r->errsz)
        vsnprintf(r->err, r->errsz, fmt, ap);
    va_end(ap);
    return -1;
}

int icl_train_opts_check(const icl_train_opts *o, char *err, size_t errsz)
{
#define BAD(...) return (icl_seterr(err, errsz, __VA_ARGS__), -1)
    if (!o->out_dir)
        BAD("missing -o OUT_DIR");
    if (o->model_dir && o->arch)
        BAD("give -m MODEL_DIR or --arch, not both");
    if (!o->model_dir && !o->arch && !o->resume)
        BAD("missing -m MODEL_DIR or --arch");
    if (o->arch && strcmp(o->arch, "llama") && strcmp(o->arch, "qwen2") && strcmp(o->arch, "gpt2"))
        BAD("--arch %s: want llama, qwen2 or gpt2", o->arch);
    if (o->arch && !o->tokenizer && !o->resume)
        BAD("--arch needs -t TOKENIZER");
    if (o->model_dir && o->tokenizer)
        BAD("-t is for --arch; a model folder brings its own tokenizer");
    if (o->batch_size < 1 || o->grad_accum < 1)
        BAD("--batch-size and --grad-accum must be at least 1");
    if (o->max_steps <= 0 && !(o->epochs > 0 && o->epochs <= 1e9))
        BAD("--epochs must be above 0 (or give --max-steps)");
    if (!(o->adamw.lr >= 0) || !(o->min_lr >= 0) || !(o->adamw.eps >= 0) || !(o->adamw.weight_decay >= 0) ||
        !(o->clip >= 0) || o->warmup_steps < 0)
        BAD("--lr, --min-lr, --eps, --weight-decay, --clip and --warmup-steps must not be negative");
    if (!(o->adamw.beta1 >= 0) || !(o->adamw.beta2 >= 0) || o->adamw.beta1 >= 1 || o->adamw.beta2 >= 1)
        BAD("--beta1 and --beta2 must be in [0, 1)");
    if (o->min_lr > o->adamw.lr)
        BAD("--min-lr %g is above --lr %g", o->min_lr, o->adamw.lr);
    if (o->resume_if_possible && !o->resume)
        BAD("--resume-if-possible goes with --resume");
    if (o->resume_if_possible && !o->model_dir && !o->arch)
        BAD("--resume-if-possible needs -m MODEL_DIR or --arch to start from when there is no checkpoint");
    if (o->save_total_limit < 0)
        BAD("--save-total-limit must not be negative");
    if (o->load_best_model_at_end && !o->valid)
        BAD("--load-best-model-at-end needs --valid FILE");
    if (o->eval_every > 0 && !o->valid)
        BAD("--eval-every needs --valid FILE (the token lines to validate on)");
    /* as transformers: the best of the saved, validated checkpoints */
    if (o->load_best_model_at_end && o->eval_every <= 0)
        BAD("--load-best-model-at-end needs --eval-every N (without it the run validates only at its end)");
    if (o->load_best_model_at_end && o->save_every <= 0)
        BAD("--load-best-model-at-end needs --save-every N, a multiple of --eval-every (only saved checkpoints can "
            "be loaded)");
    if (o->load_best_model_at_end && o->save_every % o->eval_every)
        BAD("--load-best-model-at-end needs --save-every to be a multiple of --eval-every (as transformers)");
    if (o->world_size < 1 || o->rank < 0 || o->rank >= o->world_size)
        BAD("rank %d of %d processes", o->rank, o->world_size);
    if (o->lora_r < 0)
        BAD("--lora-r must not be negative");
    if (o->lora_r > 65536) /* what adapter_config.json may hold (lora_config.c): the adapter must load again */
        BAD("--lora-r %d: at most 65536", o->lora_r);
    if (o->adapter && (o->lora_r || o->lora_alpha_given || o->lora_targets || o->use_rslora))
        BAD("--adapter DIR brings its own r, lora_alpha, target_modules and use_rslora: no --lora-r, "
            "--lora-alpha, --lora-targets or --use-rslora with it");
    if (o->adapter && o->arch)
        BAD("--adapter adapts a pretrained model: give -m MODEL_DIR, not --arch");
    if (o->lora_r > 0 && o->arch)
        BAD("LoRA (--lora-r) adapts a pretrained model: give -m MODEL_DIR, not --arch");
    if (o->lora_dropout != -1 && !(o->lora_dropout >= 0 && o->lora_dropout < 1))
        BAD("--lora-dropout %g: want a probability in [0, 1)", o->lora_dropout);
    if (!isfinite(o->lora_alpha))
        BAD("--lora-alpha must be a finite number");
    if (!o->lora_r && !o->adapter && (o->lora_alpha_given || o->lora_targets || o->use_rslora || o->lora_dropout > 0))
        BAD("--lora-alpha, --lora-targets, --lora-dropout and --use-rslora need --lora-r R (without it every "
            "weight is trained)");
    if (o->dequantize && !o->lora_r && !o->adapter)
        BAD("--dequantize chooses the base of LoRA (--lora-r R or --adapter DIR); full fine-tuning always "
            "dequantizes a GGUF");
    return 0;
#undef BAD
}

/* ------------------------------------------------------------ model */

/* The config of a model from scratch: --arch defaults, the sizes given, the
 * tokenizer's vocabulary and special ids. */
static int scratch_config(train_run *r, icl_config *c)
{
    const icl_train_opts *o = r->o;
    char e2[512];
    icl_tokenizer *t = icl_tok_load(o->tokenizer, e2, sizeof e2);
    size_t pl = strlen(o->tokenizer);
    if (!t && !strncmp(e2, o->tokenizer, pl) && (e2[pl] == '/' || (pl && o->tokenizer[pl - 1] == '/')))
        return fail(r, "%s", e2); /* a folder: the message names its tokenizer.json */
    if (!t) /* r->tokpath: the folder's tokenizer.json, or the file given */
        return fail(r, "%s: %s", r->tokpath, e2);
    if (icl_config_defaults(c, o->arch)) {
        icl_tok_free(t);
        return fail(r, "--arch %s: not one of llama, qwen2, gpt2", o->arch);
    }
    c->vocab_size = icl_tok_vocab_size(t);
    const icl_tok_specials *sp = icl_tok_get_specials(t);
    c->bos_token_id = sp->bos;
    c->pad_token_id = sp->pad;
    c->n_eos = sp->eos >= 0;
    c->eos_token_id[0] = sp->eos;
    icl_tok_free(t);
    if (o->hidden_size)
        c->hidden_size = o->hidden_size;
    if (o->num_hidden_layers)
        c->num_hidden_layers = o->num_hidden_layers;
    if (o->num_attention_heads)
        c->num_attention_heads = o->num_attention_heads;
    c->num_key_value_heads = o->num_key_value_heads ? o->num_key_value_heads : c->num_attention_heads;
    if (c->arch == ICL_ARCH_GPT2)
        c->num_key_value_heads = c->num_attention_heads;
    if (o->intermediate_size)
        c->intermediate_size = o->intermediate_size;
    else if (c->arch == ICL_ARCH_GPT2 || o->hidden_size)
        c->intermediate_size = 4 * c->hidden_size;
    if (c->num_attention_heads > 0 && c->hidden_size % c->num_attention_heads) {
        icl_config_free(c);
        return fail(r, "--hidden-size %d is not a multiple of --num-attention-heads %d (head_dim = hidden_size / "
                       "num_attention_heads)", c->hidden_size, c->num_attention_heads);
    }
    if (c->num_attention_heads > 0)
        c->head_dim = c->hidden_size / c->num_attention_heads;
    if (c->arch != ICL_ARCH_GPT2 && c->head_dim % 2) {
        int hd = c->head_dim;
        icl_config_free(c);
        return fail(r, "head_dim %d (--hidden-size / --num-attention-heads) must be even for rotary embeddings", hd);
    }
    int sl = o->seq_len > 0 ? o->seq_len : 512;
    c->max_position_embeddings = c->arch == ICL_ARCH_GPT2 ? sl : (sl > 2048 ? sl : 2048);
    if (icl_config_validate(c, "--arch", r->err, r->errsz)) {
        icl_config_free(c);
        return -1;
    }
    return 0;
}

/* The model: the newest checkpoint (--resume), the -m folder, or a random
 * one from --arch; and r->tokpath, its tokenizer.json. */
/* Where the tokenizer of a model is: a GGUF file holds its own, a folder
 * its tokenizer.json (malloc'd). */
static char *tokenizer_of(const char *model)
{
    return icl_is_gguf_file(model) ? xstrdup(model) : icl_path_join(model, "tokenizer.json");
}

static int open_lora(train_run *r);

/* 1 when the run trains adapters (--lora-r or --adapter), not the model */
static int lora_run(const icl_train_opts *o) { return o->lora_r > 0 || o->adapter; }

/* 1 when dir is a LoRA adapter folder (adapter_config.json, no config.json) */
static int is_adapter_dir(const char *dir)
{
    if (!dir || !is_dir(dir))
        return 0;
    char *c = icl_path_join(dir, "config.json"), *a = icl_path_join(dir, "adapter_config.json");
    int yes = access(c, F_OK) != 0 && access(a, F_OK) == 0;
    free(c);
    free(a);
    return yes;
}

static int open_model(train_run *r)
{
    const icl_train_opts *o = r->o;
    char e2[1024];
    if (is_adapter_dir(o->model_dir)) {
        char *b = icl_lora_base_path(o->model_dir, e2, sizeof e2);
        fail(r, "-m %s: a LoRA adapter folder, not a model: train it further with -m %s --adapter %s", o->model_dir,
             b ? b : "BASE", o->model_dir);
        free(b);
        return -1;
    }
    if (lora_run(o))
        return open_lora(r);
    if (r->ckpt) { /* claim_dir found it */
        if (is_adapter_dir(r->ckpt))
            return fail(r, "%s holds a LoRA adapter: resume the run with the LoRA options it was started with "
                           "(--lora-r R ... or --adapter DIR)",
                        r->ckpt);
        if (!(r->m = icl_model_load(r->ckpt, e2, sizeof e2))) /* e2 names the file */
            return fail(r, "%s", e2);
        r->from = r->ckpt;
        r->tokpath = icl_path_join(r->ckpt, "tokenizer.json");
    } else if (o->model_dir) {
        if (!(r->m = icl_model_load(o->model_dir, e2, sizeof e2))) /* e2 names the file */
            return fail(r, "%s", e2);
        r->from = o->model_dir;
        r->tokpath = tokenizer_of(o->model_dir);
    } else {
        r->tokpath = is_dir(o->tokenizer) ? icl_path_join(o->tokenizer, "tokenizer.json") : xstrdup(o->tokenizer);
        icl_config c;
        if (scratch_config(r, &c))
            return -1;
        r->m = icl_model_new(&c);
        icl_config_free(&c);
        icl_model_init_random(r->m, o->seed, 0.02f);
        r->from = o->arch;
    }
    return 0;
}

/* LoRA: the base (-m, or on --resume the checkpoint's base_model_name_or_path
 * when -m is not given), frozen, with adapters: fresh (seed) or the
 * checkpoint's, whose configuration must be this run's. */
/* target_modules as "a,b,c" into b (size n). */
static void targets_text(const icl_lora_config *c, char *b, size_t n)
{
    size_t k = 0;
    b[0] = 0;
    for (int i = 0; i < c->n_targets && k + 1 < n; i++)
        k += (size_t)snprintf(b + k, n - k, "%s%s", i ? "," : "", c->target_modules[i]);
}

/* The settings of adapter config a (these options) that differ from b's
 * (a checkpoint's), named with both values ("r is 8 here but 4 in the
 * checkpoint; ..."), into out (size n); returns how many differ. */
static int lora_config_diff(const icl_lora_config *a, const icl_lora_config *b, char *out, size_t n)
{
    int nd = 0;
    size_t k = 0;
    out[0] = 0;
#define DIFF(cond, ...)                                                                                               \
    if (cond && k + 1 < n) {                                                                                          \
        k += (size_t)snprintf(out + k, n - k, "%s", nd++ ? "; " : "");                                               \
        if (k + 1 < n)                                                                                                \
            k += (size_t)snprintf(out + k, n - k, __VA_ARGS__);                                                       \
    }
    DIFF(a->r != b->r, "r is %d here but %d in the checkpoint", a->r, b->r)
    DIFF(a->lora_alpha != b->lora_alpha, "lora_alpha is %g here but %g in the checkpoint", a->lora_alpha,
         b->lora_alpha)
    DIFF(a->lora_dropout != b->lora_dropout, "lora_dropout is %g here but %g in the checkpoint", a->lora_dropout,
         b->lora_dropout)
    DIFF(a->use_rslora != b->use_rslora, "use_rslora is %s here but %s in the checkpoint",
         a->use_rslora ? "true" : "false", b->use_rslora ? "true" : "false")
    int same = a->n_targets == b->n_targets;
    for (int i = 0; same && i < a->n_targets; i++)
        same = !strcmp(a->target_modules[i], b->target_modules[i]);
    char ta[256], tb[256];
    targets_text(a, ta, sizeof ta);
    targets_text(b, tb, sizeof tb);
    DIFF(!same, "target_modules is %s here but %s in the checkpoint", ta, tb)
#undef DIFF
    return nd;
}

static int open_lora(train_run *r)
{
    const icl_train_opts *o = r->o;
    char e2[1024];
    icl_lora_config *lc = &r->lcfg;
    char *base = NULL;
    if (r->ckpt) { /* claim_dir found it */
        base = o->model_dir ? xstrdup(o->model_dir) : icl_lora_base_path(r->ckpt, e2, sizeof e2);
        if (!base) { /* its hint, "-m BASE --adapter CKPT" at the end, would start a new run: resuming takes -m BASE */
            char *h = NULL;
            for (char *q = strstr(e2, "-m BASE --adapter "); q; q = strstr(q + 1, "-m BASE --adapter "))
                h = q; /* the last: the paths before it may hold anything */
            if (h)
                snprintf(h, sizeof e2 - (size_t)(h - e2), "-m BASE with --resume");
            return fail(r, "%s", e2);
        }
    } else {
        base = xstrdup(o->model_dir);
    }
    int qlora = !o->dequantize && icl_is_gguf_file(base);
    r->m = qlora ? icl_model_load_gguf_quantized(base, e2, sizeof e2) : icl_model_load(base, e2, sizeof e2);
    if (!r->m) {
        fail(r, "%s", e2); /* it names the file */
        free(base);
        return -1;
    }
    if (qlora) {
        char qs[256];
        if (icl_model_qsummary(r->m, qs, sizeof qs))
            note(r, 0, "%s: QLoRA: %s kept as stored, dequantized tile by tile in the products (--dequantize: "
                       "float32)", base, qs);
        else
            note(r, 0, "%s: no matrix in a quantized block type: the base is float32", base);
    } else if (icl_is_gguf_file(base)) {
        note(r, 0, "%s: dequantized to float32 (--dequantize; without it, LoRA keeps the quantized blocks)", base);
    }
    r->from = o->model_dir ? o->model_dir : "the checkpoint's base";
    r->tokpath = tokenizer_of(base);
    if (o->adapter) {
        if (icl_lora_read_config(o->adapter, lc, e2, sizeof e2)) {
            free(base);
            return fail(r, "%s", e2);
        }
        free(lc->base_model_name_or_path);
        lc->base_model_name_or_path = NULL;
        if (lc->n_targets == 1 && !strcmp(lc->target_modules[0], "all-linear") &&
            icl_lora_set_targets(lc, &r->m->cfg, "all-linear", e2, sizeof e2)) {
            free(base);
            return fail(r, "%s", e2);
        }
    } else {
        lc->r = o->lora_r;
        lc->lora_alpha = o->lora_alpha;
        lc->use_rslora = o->use_rslora;
        if (icl_lora_set_targets(lc, &r->m->cfg, o->lora_targets, e2, sizeof e2)) {
            free(base);
            return fail(r, "%s", e2);
        }
    }
    if (o->lora_dropout >= 0) /* else 0, or --adapter's own as PEFT would train it */
        lc->lora_dropout = o->lora_dropout;
    else if (!o->adapter)
        lc->lora_dropout = 0;
    /* adapter_config.json names the base absolute: the adapter then finds
     * it from any folder (as given, "../base" would mean the cwd of this run) */
    lc->base_model_name_or_path = icl_path_abs(base, e2, sizeof e2);
    free(base);
    if (!lc->base_model_name_or_path)
        return fail(r, "%s", e2);
    /* the adapter's tensors checked before the set is sized by its config */
    if (!r->ckpt && o->adapter && icl_lora_check_dir(o->adapter, &r->m->cfg, e2, sizeof e2))
        return fail(r, "%s", e2);
    if (!(o->adapter ? icl_lora_attach_peft : icl_lora_attach)(r->m, lc, o->seed, e2, sizeof e2)) {
        if (!r->ckpt && o->adapter) /* the options came from its adapter_config.json */
            return fail(r, "%s/adapter_config.json: %s", o->adapter, e2);
        return fail(r, "%s", e2);
    }
    if (r->ckpt) {
        icl_lora_config cc;
        if (icl_lora_read_config(r->ckpt, &cc, e2, sizeof e2))
            return fail(r, "%s", e2);
        char diff[600];
        int nd = lora_config_diff(lc, &cc, diff, sizeof diff);
        icl_lora_config_free(&cc);
        if (nd)
            return fail(r, "%s: cannot resume: %s (give the same LoRA options, or start a new run)", r->ckpt, diff);
        if (icl_lora_load_weights(r->m, r->ckpt, e2, sizeof e2))
            return fail(r, "%s", e2);
    } else if (o->adapter && icl_lora_load_weights(r->m, o->adapter, e2, sizeof e2)) {
        return fail(r, "%s", e2);
    }
    return 0;
}

/* The identity of the model's tokenizer (to check token-line headers
 * against) and, from scratch, its bytes to ship with the model. */
static int open_tokenizer(train_run *r)
{
    const icl_train_opts *o = r->o;
    int scratch = o->arch && !r->ckpt;
    size_t n = 0;
    char e2[1024];
    int gguf = icl_is_gguf_file(r->tokpath);
    char *bytes = gguf ? NULL : icl_read_file(r->tokpath, (size_t)512 << 20, &n, e2, sizeof e2); /* tokenizer.json's cap */
    if (!bytes && !gguf) {
        if (scratch || (errno != ENOENT && errno != ENOTDIR)) /* there but unreadable is not missing */
            return fail(r, "%s", e2);
        r->tid.what = "the model folder has no tokenizer.json";
        return 0;
    }
    icl_tokenizer *t = gguf ? icl_tok_load(r->tokpath, e2, sizeof e2) : icl_tok_load_mem(bytes, n, NULL, e2, sizeof e2);
    if (t) {
        r->tid.present = 1;
        r->tid.fp = icl_tok_fingerprint(t);
        r->tid.vocab = icl_tok_vocab_size(t);
        r->tid.what = r->tokpath;
        icl_tok_free(t);
    } else if (scratch) {
        free(bytes);
        return fail(r, "%s: %s", r->tokpath, e2);
    } else {
        note(r, 1, "%s: %s", r->tokpath, e2);
        r->tid.what = gguf ? "its GGUF tokenizer cannot be read by icl" : "its tokenizer.json cannot be read by icl";
    }
    if (!o->model_dir && !r->ckpt) {
        r->tok_json = bytes;
        r->tok_len = n;
    } else {
        free(bytes);
    }
    return 0;
}

/* ------------------------------------------------------------ data */

/* The data's EOS (the header's eos, which icl-tok encode appended) must be
 * one the model stops generating at (icl_gen_config_load: the model
 * folder's generation_config.json eos_token_id, else config.json's):
 * otherwise the model learns to end answers with a token generation never
 * stops at.  An error, or a warning with allow_eos_mismatch. */
static int check_eos(train_run *r, const icl_toklines_reader *tr, const char *name)
{
    const char *dir = r->ckpt ? r->ckpt : r->o->model_dir;
    if (dir && icl_is_gguf_file(dir))
        dir = NULL; /* a GGUF's stop ids are in its metadata, read into the config */
    icl_gen_config g;
    char e2[512];
    if (tr->hdr.eos < 0)
        return 0;
    if (icl_gen_config_load(&g, dir, &r->m->cfg, e2, sizeof e2)) {
        note(r, 1, "%s: %s: cannot check the EOS of the token lines", dir ? dir : "model", e2);
        return 0;
    }
    if (g.n_eos == 0)
        return 0;
    for (int i = 0; i < g.n_eos; i++)
        if (g.eos[i] == tr->hdr.eos)
            return 0;
    char stops[160] = "";
    for (int i = 0, k = 0; i < g.n_eos && k < (int)sizeof stops - 16; i++)
        k += snprintf(stops + k, sizeof stops - (size_t)k, "%s%d", i ? ", " : "", g.eos[i]);
    char msg[900];
    snprintf(msg, sizeof msg,
             "%s:%ld: the token lines end responses with EOS id %d but the model stops generating at %s "
             "(%s's generation_config.json / config.json): it would learn to end answers with a token generation "
             "never stops at; re-encode with icl-tok encode -t %s",
             name, tr->header_line, tr->hdr.eos, stops, dir ? dir : r->from, dir ? dir : "MODEL_DIR");
    if (r->o->allow_eos_mismatch) {
        note(r, 1, "%s", msg);
        return 0;
    }
    return fail(r, "%s (or give --allow-eos-mismatch)", msg);
}

/* Check the header of tr (once it has been read) against the model. */
static int check_header(train_run *r, const icl_toklines_reader *tr, const char *name)
{
    const tok_identity *id = &r->tid;
    int vocab = r->m->cfg.vocab_size;
    if (id->present && tr->hdr.fingerprint != id->fp)
        return fail(r, "%s:%ld: token lines were made by tokenizer xxh3:%016" PRIx64 " (%s), not the model's (%s, "
                    "xxh3:%016" PRIx64 "); re-encode with icl-tok encode -t %s",
                    name, tr->header_line, tr->hdr.fingerprint, tr->hdr.source ? tr->hdr.source : "?", id->what,
                    id->fp, id->what);
    if (id->present && tr->hdr.vocab_size != id->vocab)
        return fail(r, "%s:%ld: token lines have vocab_size %d but the model's tokenizer (%s) has %d", name,
                    tr->header_line, tr->hdr.vocab_size, id->what, id->vocab);
    if (tr->hdr.vocab_size > vocab)
        return fail(r, "%s:%ld: token lines use a vocabulary of %d ids but the model has %d", name, tr->header_line,
                    tr->hdr.vocab_size, vocab);
    if (!id->present)
        note(r, 1, "%s: cannot check the tokenizer of the token lines: %s", name, id->what);
    return check_eos(r, tr, name);
}

/* Read one token-line file into d, checking its header against the model's
 * tokenizer before any id is used.  The reader starts without an id bound
 * (so a header naming another tokenizer is reported as such, not as an id
 * out of range); the first example is checked here, then the reader bounds
 * ids by the model's vocabulary itself. */
static int load_file(train_run *r, icl_dataset *d, const char *file)
{
    int vocab = r->m->cfg.vocab_size, rc = -1, checked = 0;
    icl_toklines_reader tr;
    /* icl_reader_open dies on a missing file: report it here instead (an
     * MPI rank must end the job through its error path, dp.h) */
    if (!*file)
        return fail(r, "'': an empty file name");
    if (strcmp(file, "-") && access(file, R_OK) < 0)
        return fail(r, "%s: %s", file, strerror(errno));
    icl_toklines_open(&tr, file, 0);
    tr.vocab_size = INT32_MAX;
    const char *name = tr.lines.name;
    for (;;) {
        int st = icl_toklines_next(&tr, r->err, r->errsz);
        if (st < 0)
            goto out;
        if (!checked && tr.hdr.present) {
            checked = 1;
            if (check_header(r, &tr, name))
                goto out;
        }
        if (st == 0)
            break;
        if (tr.vocab_size != vocab) {
            for (size_t i = 0; i < tr.n; i++)
                if (tr.ids[i] >= vocab) {
                    fail(r, "%s:%ld: token id %d is not below the vocabulary size %d", name, tr.lines.lineno,
                         tr.ids[i], vocab);
                    goto out;
                }
            tr.vocab_size = vocab;
        }
        icl_dataset_add(d, tr.ids, tr.target, tr.n);
    }
    if (!checked && tr.examples > 0 && r->tid.present)
        note(r, 1, "%s: no #icl-tokens header (not from icl-tok encode?): its ids are checked against the "
                   "vocabulary size %d only, not against the model's tokenizer", name, vocab);
    rc = 0;
out:
    icl_toklines_close(&tr);
    return rc;
}

static void report_data(const train_run *r, const char *what, const icl_dataset *d)
{
    if (d->n_dropped_long)
        note(r, 1, "%s: dropped %ld of %ld examples whose final response does not fit in --seq-len %d with a "
                   "token before it", what, d->n_dropped_long, d->n_read, d->seq_len);
    if (d->n_dropped_empty)
        note(r, 1, "%s: dropped %ld of %ld examples without a trained target token", what, d->n_dropped_empty,
             d->n_read);
    note(r, 0, "%s: %zu examples, %zu tokens, %ld targets, longest %d; %ld truncated from the left", what, d->n,
         d->ntok, d->n_targets, d->max_len, d->n_truncated);
}

/* The training data's files for messages: "a.tok, b.tok", or "<stdin>"
 * (malloc'd). */
static char *data_names(const icl_train_opts *o)
{
    icl_buf b = {0};
    buf_puts(&b, icl_display_name(o->nfiles ? o->files[0] : "-"));
    for (int f = 1; f < o->nfiles; f++)
        buf_printf(&b, ", %s", icl_display_name(o->files[f]));
    return b.data;
}

/* seq_len, the pad id, the training and validation data. */
static int open_data(train_run *r)
{
    const icl_train_opts *o = r->o;
    const icl_config *cfg = &r->m->cfg;
    r->seq_len = o->seq_len;
    if (r->seq_len <= 0)
        r->seq_len = cfg->max_position_embeddings < 2048 ? cfg->max_position_embeddings : 2048;
    if (cfg->arch == ICL_ARCH_GPT2 && r->seq_len > cfg->max_position_embeddings)
        return fail(r, "--seq-len %d is more than the model's n_positions %d", r->seq_len, cfg->max_position_embeddings);
    r->pad = cfg->pad_token_id >= 0 ? cfg->pad_token_id : (cfg->n_eos ? cfg->eos_token_id[0] : 0);
    if (r->pad < 0 || r->pad >= cfg->vocab_size)
        r->pad = 0;
    icl_dataset_init(&r->data, r->seq_len);
    icl_dataset_init(&r->valid, r->seq_len);
    if (o->nfiles == 0 && load_file(r, &r->data, "-"))
        return -1;
    for (int f = 0; f < o->nfiles; f++)
        if (load_file(r, &r->data, o->files[f]))
            return -1;
    report_data(r, "training data", &r->data);
    if (r->data.n == 0) {
        char *names = data_names(o);
        if (r->data.n_read == 0)
            fail(r, "%s: no training example: no token line (an empty file, or a header alone)", names);
        else
            fail(r, "%s: no training example left of the %ld read (see above)", names, r->data.n_read);
        free(names);
        return -1;
    }
    r->have_valid = o->valid != NULL;
    if (r->have_valid) {
        if (load_file(r, &r->valid, o->valid))
            return -1;
        report_data(r, o->valid, &r->valid);
        if (r->valid.n == 0)
            return fail(r, "%s: no validation example left", o->valid);
    }
    return 0;
}

/* Optimizer steps of epoch e: ceil(micro-batches / (grad_accum world_size))
 * (an epoch's permutation changes the batches only with packing; r->perm is
 * scratch). */
static long epoch_steps(train_run *r, long e)
{
    const icl_train_opts *o = r->o;
    icl_dataset_order(&r->data, o->seed, o->packing ? e : 0, o->shuffle, r->perm, NULL);
    long nb = icl_dataset_count_batches(&r->data, r->perm, o->batch_size, o->packing);
    long per = (long)o->grad_accum * o->world_size; /* micro-batches per step, all processes */
    return (nb + per - 1) / per;
}

/* Epochs done, counted by steps as transformers' Trainer logs them: the
 * whole epochs plus the current epoch's steps taken over its steps (with
 * packing an epoch's steps depend on its order), as the summary counts
 * the planned steps; never by examples, which a packed step takes in
 * varying numbers.  r->perm must be the current epoch's order.  The
 * counts are made once per epoch (and on resume), then kept up by
 * epoch_step. */
static double epoch_progress(train_run *r)
{
    const icl_train_opts *o = r->o;
    const train_pos *p = &r->pos;
    if (p->cursor >= r->data.n)
        return (double)p->epoch + 1.0;
    if (r->ep_of != p->epoch) {
        long per = (long)o->grad_accum * o->world_size; /* micro-batches per step */
        long all = icl_dataset_count_batches(&r->data, r->perm, o->batch_size, o->packing);
        long done = icl_dataset_count_batches_to(&r->data, r->perm, p->cursor, o->batch_size, o->packing);
        r->ep_of = p->epoch;
        r->ep_steps = (all + per - 1) / per;
        r->ep_done = (done + per - 1) / per;
    }
    return (double)p->epoch + (r->ep_steps > 0 ? (double)r->ep_done / (double)r->ep_steps : 0.0);
}

/* One more step taken in the current epoch (epoch_progress's count). */
static void epoch_step(train_run *r)
{
    if (r->ep_of == r->pos.epoch)
        r->ep_done++;
}

/* Optimizer steps of the run: max_steps, else the steps of the whole epochs
 * of --epochs plus, for a fraction f, ceil(f x the steps of the next epoch)
 * (transformers: ceil(num_train_epochs x steps per epoch)).  r->epochs_run:
 * the epochs those steps cover (what the summary prints). */
static void plan_schedule(train_run *r)
{
    const icl_train_opts *o = r->o;
    r->perm = xmalloc(r->data.n * sizeof *r->perm);
    long total = o->max_steps;
    if (total <= 0) {
        double whole = floor(o->epochs), f = o->epochs - whole;
        total = 0;
        for (long e = 0; e < (long)whole; e++)
            total += o->packing || e == 0 ? epoch_steps(r, e) : total / e;
        if (f > 0)
            total += (long)ceil(f * (double)epoch_steps(r, (long)whole));
        r->epochs_run = o->epochs;
    } else { /* the epochs max_steps covers */
        long left = total, e = 0, per = 1;
        r->epochs_run = 0;
        while (left > 0 && e < 1000) {
            per = epoch_steps(r, e++);
            if (per <= 0)
                break;
            if (left < per) {
                r->epochs_run += (double)left / (double)per;
                left = 0;
            } else {
                r->epochs_run += 1;
                left -= per;
            }
            if (!o->packing && left > 0) { /* every epoch alike */
                r->epochs_run += (double)left / (double)per;
                left = 0;
            }
        }
        if (left > 0 && per > 0)
            r->epochs_run += (double)left / (double)per;
    }
    r->sched = (icl_schedule){.kind = o->schedule, .lr = o->adamw.lr, .min_lr = o->min_lr,
                              .warmup_steps = o->warmup_steps, .total_steps = total};
}

/* ------------------------------------------------------------ state */

/* The settings that change the computation ("settings" of trainer_state.json),
 * with the words that name them in a message, in this order. */
/* legacy: the value a checkpoint written before the setting existed ran
 * with (NULL: none; a checkpoint without it differs). */
static const struct {
    const char *key, *what, *legacy;
} setting_names[] = {
    {"model", "the model (xxh3 of -m's config.json)", NULL},
    {"arch", "--arch", NULL},
    {"hidden_size", "--hidden-size", NULL},
    {"num_hidden_layers", "--num-hidden-layers", NULL},
    {"num_attention_heads", "--num-attention-heads", NULL},
    {"num_key_value_heads", "--num-key-value-heads", NULL},
    {"intermediate_size", "--intermediate-size", NULL},
    {"tokenizer", "the tokenizer (xxh3 fingerprint)", NULL},
    {"num_examples", "the number of examples", NULL},
    {"data_hash", "the training data (xxh3 of the kept examples)", NULL},
    {"dtype", "--dtype", "float32"},
    {"loss_average", "--loss-average", "tokens"},
    {"batch_size", "--batch-size", NULL},
    {"grad_accum", "--grad-accum", NULL},
    {"seq_len", "--seq-len", NULL},
    {"packing", "--packing", NULL},
    {"shuffle", "shuffling (--no-shuffle)", NULL},
    {"seed", "--seed", NULL},
    {"lr", "--lr", NULL},
    {"schedule", "--schedule", NULL},
    {"warmup_steps", "--warmup-steps", NULL},
    {"min_lr", "--min-lr", NULL},
    {"weight_decay", "--weight-decay", NULL},
    {"beta1", "--beta1", NULL},
    {"beta2", "--beta2", NULL},
    {"eps", "--eps", NULL},
    {"clip", "--clip", NULL},
    {"total_steps", "the number of steps (--epochs, --max-steps)", NULL},
    {"world_size", "the number of processes", NULL},
};

static char *hex_hash(const char *pre, uint64_t h)
{
    char b[64];
    snprintf(b, sizeof b, "%s%016" PRIx64, pre, h);
    return xstrdup(b);
}

/* This run's settings.  The model's are present only where this command
 * names one (-m, --arch and sizes): a --resume without them takes the
 * checkpoint's. */
static json_t *run_settings(const train_run *r)
{
    const icl_train_opts *o = r->o;
    json_t *s = json_object();
    char *h;
    if (o->model_dir) {
        char *cp = icl_path_join(o->model_dir, "config.json"), e2[256];
        size_t n = 0;
        char *txt = icl_read_file(cp, (size_t)64 << 20, &n, e2, sizeof e2);
        if (txt) {
            json_object_set_new(s, "model", json_string(h = hex_hash("xxh3:", XXH3_64bits(txt, n))));
            free(h);
        }
        free(txt);
        free(cp);
    } else if (o->arch) {
        json_object_set_new(s, "arch", json_string(o->arch));
        json_object_set_new(s, "hidden_size", json_integer(o->hidden_size));
        json_object_set_new(s, "num_hidden_layers", json_integer(o->num_hidden_layers));
        json_object_set_new(s, "num_attention_heads", json_integer(o->num_attention_heads));
        json_object_set_new(s, "num_key_value_heads", json_integer(o->num_key_value_heads));
        json_object_set_new(s, "intermediate_size", json_integer(o->intermediate_size));
        if (r->tid.present) {
            json_object_set_new(s, "tokenizer", json_string(h = hex_hash("xxh3:", r->tid.fp)));
            free(h);
        }
    }
    json_object_set_new(s, "num_examples", json_integer((json_int_t)r->data.n));
    json_object_set_new(s, "data_hash", json_string(h = hex_hash("xxh3:", icl_dataset_hash(&r->data))));
    free(h);
    json_object_set_new(s, "dtype", json_string(o->bf16 ? "bfloat16" : "float32"));
    json_object_set_new(s, "loss_average", json_string(o->loss_average_examples ? "examples" : "tokens"));
    json_object_set_new(s, "batch_size", json_integer(o->batch_size));
    json_object_set_new(s, "grad_accum", json_integer(o->grad_accum));
    json_object_set_new(s, "seq_len", json_integer(r->data.seq_len));
    json_object_set_new(s, "packing", json_boolean(o->packing));
    json_object_set_new(s, "shuffle", json_boolean(o->shuffle));
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
    json_object_set_new(s, "seed", json_string(seed));
    json_object_set_new(s, "lr", json_real(o->adamw.lr));
    json_object_set_new(s, "schedule", json_string(icl_sched_name(o->schedule)));
    json_object_set_new(s, "warmup_steps", json_integer(o->warmup_steps));
    json_object_set_new(s, "min_lr", json_real(o->min_lr));
    json_object_set_new(s, "weight_decay", json_real(o->adamw.weight_decay));
    json_object_set_new(s, "beta1", json_real(o->adamw.beta1));
    json_object_set_new(s, "beta2", json_real(o->adamw.beta2));
    json_object_set_new(s, "eps", json_real(o->adamw.eps));
    json_object_set_new(s, "clip", json_real(o->clip));
    json_object_set_new(s, "total_steps", json_integer(r->sched.total_steps));
    json_object_set_new(s, "world_size", json_integer(o->world_size));
    return s;
}

/* A setting's value for a message (malloc'd). */
static char *setting_text(const json_t *v)
{
    if (!v)
        return xstrdup("absent");
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_real(v)) {
        char b[64];
        snprintf(b, sizeof b, "%.9g", json_real_value(v));
        return xstrdup(b);
    }
    char *t = json_dumps(v, JSON_ENCODE_ANY);
    return t ? t : xstrdup("?");
}

/* Every setting of this run that differs from the checkpoint's, named, into
 * r->err; 0 when none does. */
static int compare_settings(train_run *r, json_t *theirs)
{
    json_t *mine = run_settings(r);
    icl_buf b = {0};
    int n = 0, only_steps = 1;
    for (size_t i = 0; i < sizeof setting_names / sizeof *setting_names; i++) {
        json_t *a = json_object_get(mine, setting_names[i].key), *t = json_object_get(theirs, setting_names[i].key);
        json_t *legacy = !t && setting_names[i].legacy ? json_string(setting_names[i].legacy) : NULL;
        if (legacy)
            t = legacy; /* a checkpoint from before the setting existed */
        int same = !a || (t && json_equal(a, t));
        char *x = same ? NULL : setting_text(a), *y = same ? NULL : setting_text(t), line[600];
        json_decref(legacy);
        if (same)
            continue;
        if (strcmp(setting_names[i].key, "total_steps"))
            only_steps = 0;
        snprintf(line, sizeof line, "%s%s is %s here but %s in the checkpoint", n++ ? "; " : "",
                 setting_names[i].what, x, y);
        buf_append(&b, line, strlen(line));
        free(x);
        free(y);
    }
    json_decref(mine);
    if (n && only_steps) {
        /* a run cannot be lengthened (the schedule depends on its length):
         * training further is a new run that starts from what it wrote */
        char *ac = icl_path_join(r->ckpt, "adapter_config.json");
        int lora = access(ac, F_OK) == 0;
        free(ac);
        /* the run's final adapter or model, or, where it stopped before
         * writing them (interrupted), the checkpoint itself */
        const char *out = r->o->out_dir ? r->o->out_dir : "OUT_DIR";
        if (r->o->out_dir) {
            char *fin = icl_path_join(out, lora ? "adapter_config.json" : "config.json");
            if (access(fin, F_OK) != 0)
                out = r->ckpt;
            free(fin);
        }
        buf_append(&b, "", 1);
        if (lora)
            fail(r, "%s: cannot resume: %s (a run's length is fixed by its learning-rate schedule: give the same "
                 "--epochs/--max-steps, or to train further start a new run from the adapter it wrote: "
                 "icl-train -m BASE --adapter %s -o NEW_DIR ...)", r->ckpt, b.data, out);
        else
            fail(r, "%s: cannot resume: %s (a run's length is fixed by its learning-rate schedule: give the same "
                 "--epochs/--max-steps, or to train further start a new run from the model it wrote: "
                 "icl-train -m %s -o NEW_DIR ...)", r->ckpt, b.data, out);
    } else if (n) {
        buf_append(&b, "", 1);
        fail(r, "%s: cannot resume: %s (give the same options, model and data, or start a new run)", r->ckpt,
             b.data);
    }
    buf_free(&b);
    return n ? -1 : 0;
}

static char *state_json(train_run *r)
{
    const icl_train_opts *o = r->o;
    const icl_schedule *s = &r->sched;
    const train_pos *p = &r->pos;
    const icl_dataset *d = &r->data;
    json_t *ic = json_object();
    json_object_set_new(ic, "format", json_string("icl-trainer-state 1"));
    json_object_set_new(ic, "step", json_integer(p->step));
    json_object_set_new(ic, "epoch", json_integer(p->epoch));
    json_object_set_new(ic, "cursor", json_integer((json_int_t)p->cursor));
    char hex[32];
    snprintf(hex, sizeof hex, "%016" PRIx64, o->seed);
    json_object_set_new(ic, "seed", json_string(hex));
    json_t *rng = json_array();
    for (int i = 0; i < 4; i++) {
        snprintf(hex, sizeof hex, "%016" PRIx64, p->rng[i]);
        json_array_append_new(rng, json_string(hex));
    }
    json_object_set_new(ic, "rng", rng);
    json_object_set_new(ic, "schedule",
                        json_pack("{s:s, s:f, s:f, s:I, s:I}", "kind", icl_sched_name(s->kind), "lr", s->lr,
                                  "min_lr", s->min_lr, "warmup_steps", (json_int_t)s->warmup_steps,
                                  "total_steps", (json_int_t)s->total_steps));
    json_object_set_new(ic, "adamw",
                        json_pack("{s:f, s:f, s:f, s:f, s:f}", "lr", o->adamw.lr, "beta1", o->adamw.beta1, "beta2",
                                  o->adamw.beta2, "eps", o->adamw.eps, "weight_decay", o->adamw.weight_decay));
    json_object_set_new(ic, "clip", json_real(o->clip));
    json_object_set_new(ic, "batch_size", json_integer(o->batch_size));
    json_object_set_new(ic, "grad_accum", json_integer(o->grad_accum));
    json_object_set_new(ic, "seq_len", json_integer(d->seq_len));
    json_object_set_new(ic, "packing", json_boolean(o->packing));
    json_object_set_new(ic, "shuffle", json_boolean(o->shuffle));
    json_object_set_new(ic, "num_examples", json_integer((json_int_t)d->n));
    snprintf(hex, sizeof hex, "xxh3:%016" PRIx64, icl_dataset_hash(d));
    json_object_set_new(ic, "data_hash", json_string(hex));
    json_object_set_new(ic, "save_only_model", json_boolean(o->save_only_model));
    json_object_set_new(ic, "gradient_checkpointing", json_boolean(o->gradient_checkpointing));
    /* the metrics of the steps since the last logged one, so that a resumed
     * run logs the same mean loss and tokens/s */
    json_object_set_new(ic, "log_window",
                        json_pack("{s:f, s:I, s:I, s:f}", "loss_sum", r->log_loss, "targets",
                                  (json_int_t)r->log_targets, "tokens", (json_int_t)r->log_tokens, "seconds",
                                  r->log_time));
    json_t *st = run_settings(r);
    if (r->ckpt) { /* a resume without -m / --arch keeps the checkpoint's model settings */
        json_t *old = r->ckpt_settings;
        for (size_t i = 0; old && i < 8; i++) {
            json_t *v = json_object_get(old, setting_names[i].key);
            if (v && !json_object_get(st, setting_names[i].key))
                json_object_set(st, setting_names[i].key, v);
        }
    }
    json_object_set_new(ic, "settings", st);
    json_t *root = json_object();
    json_object_set_new(root, "global_step", json_integer(p->step));
    json_object_set_new(root, "epoch", json_real(epoch_progress(r)));
    json_object_set_new(root, "max_steps", json_integer(s->total_steps));
    json_object_set_new(root, "train_batch_size", json_integer(o->batch_size));
    json_object_set(root, "log_history", r->history);
    if (r->best) {
        json_object_set_new(root, "best_metric", json_real(r->best_val));
        json_object_set_new(root, "best_model_checkpoint", json_string(r->best));
    } else {
        json_object_set_new(root, "best_metric", json_null());
        json_object_set_new(root, "best_model_checkpoint", json_null());
    }
    json_object_set_new(root, "icl", ic);
    char *txt = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(root);
    return txt;
}

static int hex64(train_run *r, json_t *v, const char *path, const char *key, uint64_t *out)
{
    const char *s = json_string_value(v);
    char *end;
    if (!s || !*s)
        return fail(r, "%s: \"%s\" is not a hex string", path, key);
    errno = 0;
    unsigned long long x = strtoull(s, &end, 16);
    if (*end || errno)
        return fail(r, "%s: \"%s\" is not a hex string", path, key);
    *out = (uint64_t)x;
    return 0;
}

static int get_long(train_run *r, json_t *ic, const char *path, const char *k, long *out)
{
    json_t *v = json_object_get(ic, k);
    if (!json_is_integer(v))
        return fail(r, "%s: \"icl.%s\" missing or not an integer", path, k);
    *out = (long)json_integer_value(v);
    return 0;
}

/* The step of a folder name "checkpoint-STEP" as icl-train and HF's Trainer
 * write it (STEP in decimal, no sign, no leading zero), or -1 for any other
 * name (checkpoint-01 is no checkpoint: the folder built from its step
 * would be another). */
static long ckpt_step(const char *name)
{
    long step;
    char canon[48];
    if (strncmp(name, "checkpoint-", 11) || parse_long(name + 11, &step) || step < 0)
        return -1;
    snprintf(canon, sizeof canon, "checkpoint-%ld", step);
    return strcmp(canon, name) ? -1 : step;
}

/* Read trainer_state.json of the checkpoint into r->pos, r->history and the
 * best checkpoint, and check it fits this run. */
static int read_state(train_run *r)
{
    const icl_dataset *d = &r->data;
    train_pos *p = &r->pos;
    char *path = icl_path_join(r->ckpt, "trainer_state.json");
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je), *ic = json_object_get(root, "icl");
    long cursor = 0;
    int rc = -1;
    if (!root) {
        fail(r, "%s:%d: %s", path, je.line, je.text);
        goto out;
    }
    if (!json_is_object(ic)) {
        fail(r, "%s: no \"icl\" object: not written by icl-train", path);
        goto out;
    }
    if (json_is_true(json_object_get(ic, "save_only_model"))) {
        fail(r, "%s: saved with --save-only-model (no optimizer state): it cannot be resumed; start a new run "
                "from %s %s",
             r->ckpt, lora_run(r->o) ? "its adapter with -m BASE --adapter" : "it with -m", r->ckpt);
        goto out;
    }
    json_t *st = json_object_get(ic, "settings");
    if (!json_is_object(st)) {
        fail(r, "%s: no \"icl.settings\": written by an older icl-train, cannot be checked", path);
        goto out;
    }
    r->ckpt_settings = json_incref(st);
    if (compare_settings(r, st))
        goto out;
    if (get_long(r, ic, path, "step", &p->step) || get_long(r, ic, path, "epoch", &p->epoch) ||
        get_long(r, ic, path, "cursor", &cursor))
        goto out;
    json_t *rng = json_object_get(ic, "rng");
    if (!json_is_array(rng) || json_array_size(rng) != 4) {
        fail(r, "%s: \"icl.rng\" is not 4 hex words", path);
        goto out;
    }
    for (int i = 0; i < 4; i++)
        if (hex64(r, json_array_get(rng, (size_t)i), path, "icl.rng", &p->rng[i]))
            goto out;
    if (cursor < 0 || (size_t)cursor > d->n || p->epoch < 0 || p->step < 0) {
        fail(r, "%s: data position out of range", path);
        goto out;
    }
    /* the state is the one its folder's name says: checkpoint-N after step N */
    const char *fmt = json_string_value(json_object_get(ic, "format")), *slash = strrchr(r->ckpt, '/');
    const char *bn = slash ? slash + 1 : r->ckpt;
    char *end = NULL;
    long n = strncmp(bn, "checkpoint-", 11) ? -1 : strtol(bn + 11, &end, 10);
    json_t *gs = json_object_get(root, "global_step");
    if (!fmt || strcmp(fmt, "icl-trainer-state 1")) {
        fail(r, "%s: \"icl.format\" is %s%s%s, not \"icl-trainer-state 1\" (another icl-train's?)", path,
             fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
        goto out;
    }
    if ((end && !*end && n != p->step) || (gs && (!json_is_integer(gs) || json_integer_value(gs) != p->step))) {
        fail(r, "%s: \"icl.step\" is %ld, but the folder is %s%s", path, p->step, bn,
             gs && json_is_integer(gs) && json_integer_value(gs) != p->step ? " and global_step differs" : "");
        goto out;
    }
    p->cursor = (size_t)cursor;
    json_t *lw = json_object_get(ic, "log_window");
    if (json_is_object(lw)) {
        r->log_loss = json_number_value(json_object_get(lw, "loss_sum"));
        r->log_targets = (long)json_integer_value(json_object_get(lw, "targets"));
        r->log_tokens = (long)json_integer_value(json_object_get(lw, "tokens"));
        r->log_time = json_number_value(json_object_get(lw, "seconds"));
    }
    json_t *lh = json_object_get(root, "log_history"), *e;
    size_t i;
    json_array_foreach(lh, i, e)
    {
        json_t *sv = json_object_get(e, "step");
        if (json_is_object(e) && json_is_integer(sv) && json_integer_value(sv) <= p->step)
            json_array_append(r->history, e);
    }
    /* best_model_checkpoint: the path the run wrote (OUT_DIR/checkpoint-N as
     * given, relative to that run's working folder), read by its last part only, in
     * this run's OUT_DIR: a run folder moved or copied, or resumed from
     * another folder, keeps its own best, and no name leads outside it.  Its
     * best_metric stays even when the folder is gone (deleted by hand), so
     * that no worse checkpoint is taken for the best (as transformers). */
    json_t *bj = json_object_get(root, "best_model_checkpoint"), *bm = json_object_get(root, "best_metric");
    if (bj && !json_is_null(bj)) {
        const char *best = json_string_value(bj), *sl = best ? strrchr(best, '/') : NULL, *bn = sl ? sl + 1 : best;
        if (!best) {
            fail(r, "%s: \"best_model_checkpoint\" is neither a string nor null (edited by hand?)", path);
            goto out;
        }
        if (ckpt_step(bn) < 0) {
            fail(r, "%s: \"best_model_checkpoint\" \"%s\" is no checkpoint-N folder (edited by hand?)", path, best);
            goto out;
        }
        if (!json_is_number(bm)) {
            fail(r, "%s: \"best_metric\" is not a number, with \"best_model_checkpoint\" \"%s\" (edited by hand?)",
                 path, best);
            goto out;
        }
        r->best = icl_path_join(r->o->out_dir, bn);
        r->best_val = json_number_value(bm);
        if (r->o->load_best_model_at_end && !is_dir(r->best))
            note(r, 1, "%s: the best checkpoint so far, %s (val_loss %.9g), is gone: only a lower val_loss makes a "
                       "new best, and without one the run ends with the last step's %s",
                 path, r->best, r->best_val, lora_run(r->o) ? "adapter" : "model");
    }
    rc = 0;
out:
    json_decref(root);
    free(path);
    return rc;
}

/* optimizer.safetensors: "NAME.exp_avg" and "NAME.exp_avg_sq" of every view
 * of every trainable set (views' names are unique across sets). */
static int save_optimizer(icl_model *m, const char *path, char *err, size_t errsz)
{
    icl_param_set *sets[16];
    int ns = icl_model_trainable(m, sets, 16), n = 0;
    for (int i = 0; i < ns && i < 16; i++)
        n += sets[i]->n_views;
    icl_st_entry *e = xcalloc((size_t)n * 2 + 1, sizeof *e);
    char **names = xcalloc((size_t)n * 2 + 1, sizeof *names);
    int j = 0;
    for (int si = 0; si < ns && si < 16; si++)
        for (int i = 0; i < sets[si]->n_views; i++) {
            const icl_param_set *s = sets[si];
            const icl_param_view *v = &s->views[i];
            for (int k = 0; k < 2; k++, j++) {
                icl_st_entry *x = &e[j];
                size_t len = strlen(v->name) + 16;
                names[j] = xmalloc(len);
                snprintf(names[j], len, "%s.%s", v->name, k ? "exp_avg_sq" : "exp_avg");
                x->name = names[j];
                x->data = (k ? s->v : s->m) + v->offset;
                x->ndim = v->ndim;
                x->shape[0] = v->shape[0];
                x->shape[1] = v->shape[1];
            }
        }
    int rc = icl_st_write(path, e, j, err, errsz);
    for (int i = 0; i < j; i++)
        free(names[i]);
    free(names);
    free(e);
    return rc;
}

/* "[d0, d1, ...]" of a shape, for messages. */
typedef struct {
    char s[96];
} shape_buf;

static shape_buf shape_str(const int64_t *shape, int ndim)
{
    shape_buf b;
    size_t n = 0;
    b.s[n++] = '[';
    for (int d = 0; d < ndim && n < sizeof b.s - 24; d++)
        n += (size_t)snprintf(b.s + n, sizeof b.s - n, "%s%lld", d ? ", " : "", (long long)shape[d]);
    snprintf(b.s + n, sizeof b.s - n, "]");
    return b;
}

static int load_optimizer(icl_model *m, const char *path, char *err, size_t errsz)
{
    icl_st_file *f = icl_st_open(path, err, errsz);
    if (!f)
        return -1;
    icl_model_alloc_moments(m);
    icl_param_set *sets[16];
    int ns = icl_model_trainable(m, sets, 16), rc = -1;
    char e2[256];
    for (int si = 0; si < ns && si < 16; si++)
        for (int i = 0; i < sets[si]->n_views; i++) {
            const icl_param_set *s = sets[si];
            const icl_param_view *v = &s->views[i];
            for (int k = 0; k < 2; k++) {
                char name[160];
                snprintf(name, sizeof name, "%s.%s", v->name, k ? "exp_avg_sq" : "exp_avg");
                const icl_st_tensor *t = icl_st_find(f, name);
                if (!t) {
                    icl_seterr(err, errsz, "%s: no tensor %s", path, name);
                    goto out;
                }
                if (t->dtype != ICL_ST_F32) {
                    icl_seterr(err, errsz, "%s: %s is %s, not F32", path, name, t->dtype_name);
                    goto out;
                }
                int same = t->ndim == v->ndim;
                for (int d = 0; same && d < v->ndim; d++)
                    same = t->shape[d] == v->shape[d];
                if (!same) {
                    icl_seterr(err, errsz, "%s: %s has shape %s, its parameter's is %s", path, name,
                               shape_str(t->shape, t->ndim).s, shape_str(v->shape, v->ndim).s);
                    goto out;
                }
                float *dst = (k ? s->v : s->m) + v->offset;
                if (icl_st_read_f32(t, dst, v->numel, e2, sizeof e2)) {
                    icl_seterr(err, errsz, "%s: %s", path, e2);
                    goto out;
                }
                /* AdamW's moments: finite, the second (a mean of squares) not negative;
                 * else the first step's update is NaN */
                for (size_t j = 0; j < v->numel; j++)
                    if (!isfinite(dst[j]) || (k && dst[j] < 0)) {
                        icl_seterr(err, errsz, "%s: %s[%zu] is %g: not an AdamW %s moment", path, name, j,
                                   (double)dst[j], k ? "second" : "first");
                        goto out;
                    }
            }
        }
    rc = 0;
out:
    icl_st_close(f);
    return rc;
}

/* The model folder files plus, from scratch, tokenizer.json. */
static int save_model_dir(train_run *r, const char *dir)
{
    if (lora_run(r->o))
        return icl_lora_save(r->m, &r->lcfg, dir, r->err, r->errsz);
    if (icl_model_save(r->m, dir, r->err, r->errsz))
        return -1;
    if (r->tok_json) {
        char *p = icl_path_join(dir, "tokenizer.json");
        int rc = icl_write_file_atomic(p, r->tok_json, r->tok_len, r->err, r->errsz);
        free(p);
        return rc;
    }
    return 0;
}


/* The steps of OUT_DIR's checkpoint-STEP folders (complete or not), sorted
 * ascending; returns their count, *steps malloc'd. */
static size_t list_checkpoints(const char *out_dir, long **steps)
{
    DIR *dp = opendir(out_dir);
    size_t n = 0, cap = 0;
    *steps = NULL;
    if (!dp)
        return 0;
    struct dirent *de;
    while ((de = readdir(dp))) {
        long step = ckpt_step(de->d_name);
        if (step < 0)
            continue;
        char *p = icl_path_join(out_dir, de->d_name);
        int d = is_dir(p);
        free(p);
        if (!d)
            continue;
        if (n == cap)
            *steps = xrealloc(*steps, (cap = cap ? 2 * cap : 16) * sizeof **steps);
        (*steps)[n++] = step;
    }
    closedir(dp);
    for (size_t i = 1; i < n; i++) /* insertion sort: a few hundred at most */
        for (size_t j = i; j > 0 && (*steps)[j - 1] > (*steps)[j]; j--) {
            long t = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1];
            (*steps)[j - 1] = t;
        }
    return n;
}

/* --save-total-limit: transformers' Trainer._rotate_checkpoints.  Sorted by
 * step, the best checkpoint is moved to the second-newest place (so it is
 * kept), the limit becomes 2 when it is 1 and the best is not the newest,
 * and the oldest beyond the limit are deleted. */
static int rotate_checkpoints(train_run *r)
{
    long lim = r->o->save_total_limit, *steps;
    if (lim <= 0)
        return 0;
    const char *out = r->o->out_dir;
    size_t n = list_checkpoints(out, &steps);
    long best = -1;
    if (r->best) {
        const char *b = strrchr(r->best, '/');
        best = ckpt_step(b ? b + 1 : r->best); /* -1: no checkpoint of ours (a hand-edited state) */
    }
    size_t bi = n;
    for (size_t i = 0; i < n; i++)
        if (steps[i] == best)
            bi = i;
    if (bi < n)
        for (size_t i = bi; i + 2 < n; i++) {
            long t = steps[i];
            steps[i] = steps[i + 1];
            steps[i + 1] = t;
        }
    if (bi < n && lim == 1 && steps[n - 1] != best)
        lim = 2;
    for (size_t i = 0; (long)i < (long)n - lim; i++) {
        char name[64];
        snprintf(name, sizeof name, "checkpoint-%ld", steps[i]);
        char *p = icl_path_join(out, name);
        note(r, 0, "deleting %s (--save-total-limit %ld)", p, r->o->save_total_limit);
        rm_rf(p);
        free(p);
    }
    free(steps);
    return 0;
}

/* Take OUT_DIR for this run: create it, lock OUT_DIR/.lock (which also
 * proves it writable), remove what killed runs left, and decide what
 * --resume starts from (r->ckpt); a fresh run into a folder with another
 * run's checkpoints is refused, or with --overwrite-output-dir clears them. */
static int claim_dir(train_run *r)
{
    const icl_train_opts *o = r->o;
    const char *out = o->out_dir;
    if (o->rank != 0) { /* rank 0 owns the folder (and its lock); the others only read the checkpoint */
        if (o->resume)
            r->ckpt = icl_train_latest_checkpoint(out);
        return 0;
    }
    char e2[1024];
    int made = icl_out_dir_make(out, e2, sizeof e2); /* its parent must exist (fileio.h) */
    if (made < 0)
        return fail(r, "%s", e2);
    r->made_dir = made;
    char *lp = icl_path_join(out, ".lock");
    /* A run removes its .lock when it ends, while it still holds it: a lock
     * taken on a file opened just before that is no longer OUT_DIR/.lock and
     * locks nothing, so it is taken again. */
    for (int tries = 0;; tries++) {
        r->lock_fd = open(lp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        r->made_lock = r->lock_fd >= 0; /* removed again if the run fails */
        if (r->lock_fd < 0 && errno == EEXIST)
            r->lock_fd = open(lp, O_RDWR | O_CLOEXEC);
        if (r->lock_fd < 0 && errno == ENOENT && tries < 8)
            continue; /* removed between the two opens */
        if (r->lock_fd < 0) {
            int e = errno;
            free(lp);
            return fail(r, "%s: not writable (cannot create .lock: %s)", out, strerror(e));
        }
        if (flock(r->lock_fd, LOCK_EX | LOCK_NB) < 0) {
            r->made_lock = 0; /* another run's lock now: not ours to remove */
            int rc = fail(r, "%s: in use by another icl-train (%s is locked); give another -o", out, lp);
            free(lp);
            return rc;
        }
        struct stat held, now;
        if (fstat(r->lock_fd, &held) == 0 && stat(lp, &now) == 0 && held.st_dev == now.st_dev &&
            held.st_ino == now.st_ino)
            break;
        close(r->lock_fd);
        r->lock_fd = -1;
        r->made_lock = 0;
        if (tries == 8) {
            int rc = fail(r, "%s: in use by another icl-train (%s keeps changing); give another -o", out, lp);
            free(lp);
            return rc;
        }
    }
    r->lock_path = lp;
    if (access(out, W_OK | X_OK) < 0)
        return fail(r, "%s: not writable: %s", out, strerror(errno));
    /* stale temporaries: only a killed run leaves them, and the lock says none runs */
    DIR *dp = opendir(out);
    struct dirent *de;
    while (dp && (de = readdir(dp))) {
        const char *n = de->d_name;
        int tmpdir = !strncmp(n, ".tmp-checkpoint-", 16) || !strcmp(n, ".old-checkpoint");
        if (!tmpdir && !strstr(n, ".tmp."))
            continue;
        char *p = icl_path_join(out, n);
        struct stat sb;
        if (lstat(p, &sb) == 0 && (tmpdir ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode))) {
            note(r, 0, "removing %s, left by an interrupted run", p);
            if (tmpdir)
                rm_rf(p);
            else
                unlink(p);
        }
        free(p);
    }
    if (dp)
        closedir(dp);
    if (o->resume) {
        r->ckpt = icl_train_latest_checkpoint(out);
        if (!r->ckpt && !o->resume_if_possible)
            return fail(r, "%s: no complete checkpoint to resume from (--resume-if-possible starts afresh then)",
                        out);
        if (!r->ckpt)
            note(r, 1, "%s: no checkpoint to resume from: starting a new run", out);
    }
    if (r->ckpt)
        return 0;
    long *steps;
    size_t n = list_checkpoints(out, &steps);
    if (n && !o->overwrite_output_dir) {
        fail(r, "%s: holds checkpoints of another run (checkpoint-%ld ...): continue it with --resume, give another "
                "-o, or --overwrite-output-dir to delete them",
             out, steps[n - 1]);
        free(steps);
        return -1;
    }
    r->n_old = n; /* deleted by clear_old once the model and data have loaded */
    r->old_steps = steps;
    /* The final files of the other kind, left by an earlier run or another
     * program: a model folder's beside this LoRA run's adapter (-m OUT_DIR
     * would load that model and ignore the adapter), or an adapter's beside
     * this full run's model (PEFT and transformers would load the adapter). */
    static const char *const model_files[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                                              "generation_config.json", NULL};
    static const char *const adapter_files[] = {"adapter_config.json", "adapter_model.safetensors", NULL};
    int lora = lora_run(o);
    const char *const *other = lora ? model_files : adapter_files;
    char found[256] = "";
    for (int i = 0; other[i]; i++) {
        char *p = icl_path_join(out, other[i]);
        struct stat sb;
        if (stat(p, &sb) == 0)
            snprintf(found + strlen(found), sizeof found - strlen(found), "%s%s", found[0] ? ", " : "", other[i]);
        free(p);
    }
    if (found[0]) { /* (not -m's own folder: inputs_exist) */
        if (!o->overwrite_output_dir)
            return fail(r, "%s: holds %s (%s): this run's %s would be written beside it, and -m %s would load %s; "
                           "give another -o, or --overwrite-output-dir to delete them",
                        out, lora ? "a model" : "a LoRA adapter", found, lora ? "adapter" : "model", out,
                        lora ? "that model and ignore the adapter" : "the adapter in transformers and PEFT");
        r->old_other = other;
    }
    return 0;
}

/* --overwrite-output-dir: delete the earlier run's checkpoints that
 * claim_dir found, once nothing that can fail before training is left
 * (a run refused for its model or data leaves them). */
static void clear_old(train_run *r)
{
    for (size_t i = 0; i < r->n_old; i++) {
        char name[64];
        snprintf(name, sizeof name, "checkpoint-%ld", r->old_steps[i]);
        char *p = icl_path_join(r->o->out_dir, name);
        rm_rf(p);
        free(p);
    }
    if (r->n_old)
        note(r, 1, "%s: deleted %zu checkpoint%s of an earlier run (--overwrite-output-dir)", r->o->out_dir, r->n_old,
             r->n_old == 1 ? "" : "s");
    r->n_old = 0;
    if (r->old_other) {
        char gone[256] = "";
        for (int i = 0; r->old_other[i]; i++) {
            char *p = icl_path_join(r->o->out_dir, r->old_other[i]);
            if (unlink(p) == 0)
                snprintf(gone + strlen(gone), sizeof gone - strlen(gone), "%s%s", gone[0] ? ", " : "",
                         r->old_other[i]);
            free(p);
        }
        if (gone[0])
            note(r, 1, "%s: deleted %s of an earlier %s (--overwrite-output-dir)", r->o->out_dir, gone,
                 r->old_other[0][0] == 'a' ? "adapter" : "model");
        r->old_other = NULL;
    }
}

/* A failed run leaves OUT_DIR as it found it: the .lock it created is
 * removed, and OUT_DIR too when it created it and nothing else is there.
 * Checkpoints it saved before failing stay (with OUT_DIR), for --resume. */
static void unclaim_dir(train_run *r)
{
    if (r->made_lock && r->lock_path)
        unlink(r->lock_path); /* still flock'd: no other run holds it */
    if (r->made_dir)
        rmdir(r->o->out_dir); /* fails, and keeps it, when not empty */
}

/* OUT/checkpoint-STEP, atomically: every file written (atomically) in a
 * temporary folder, which is renamed into place.  r->last_good becomes it. */
static int save_checkpoint(train_run *r)
{
    if (r->o->rank != 0) { /* only rank 0 writes */
        r->last_saved = r->pos.step;
        return 0;
    }
    const char *out = r->o->out_dir;
    char name[64], tmpl[96];
    snprintf(name, sizeof name, "checkpoint-%ld", r->pos.step);
    snprintf(tmpl, sizeof tmpl, ".tmp-%s.XXXXXX", name);
    char *final = icl_path_join(out, name), *tmp = icl_path_join(out, tmpl), *op = NULL, *sp = NULL, *st = NULL, *old = NULL;
    int rc = -1;
    if (!mkdtemp(tmp)) {
        fail(r, "%s: cannot create a temporary folder: %s", out, strerror(errno));
        goto out;
    }
    struct stat osb; /* a checkpoint folder gets OUT_DIR's permissions (mkdtemp makes it 0700) */
    if (stat(out, &osb) == 0)
        chmod(tmp, osb.st_mode & 07777);
    op = icl_path_join(tmp, "optimizer.safetensors");
    sp = icl_path_join(tmp, "trainer_state.json");
    /* best_model_checkpoint: this one when its val_loss is the lowest yet */
    int was_best = 0;
    char *prev_best = r->best;
    double prev_val = r->best_val;
    if (r->o->load_best_model_at_end && r->val_step == r->pos.step && (!r->best || r->val_loss < r->best_val)) {
        r->best = xstrdup(final);
        r->best_val = r->val_loss;
        was_best = 1;
    }
    st = state_json(r);
    if (save_model_dir(r, tmp) || (!r->o->save_only_model && save_optimizer(r->m, op, r->err, r->errsz)) ||
        icl_write_file_atomic(sp, st, strlen(st), r->err, r->errsz)) {
        if (was_best) {
            free(r->best);
            r->best = prev_best;
            r->best_val = prev_val;
        }
        goto out;
    }
    if (was_best)
        free(prev_best);
    fsync_path(tmp);
    if (is_dir(final)) { /* replace a checkpoint of the same step */
        old = icl_path_join(out, ".old-checkpoint");
        rm_rf(old);
        if (rename(final, old) < 0) {
            fail(r, "%s: cannot move aside: %s", final, strerror(errno));
            goto out;
        }
    }
    if (rename(tmp, final) < 0) {
        fail(r, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
        goto out;
    }
    fsync_path(out);
    if (old)
        rm_rf(old);
    free(r->last_good);
    r->last_good = final;
    final = NULL;
    r->last_saved = r->pos.step;
    rc = rotate_checkpoints(r);
out:
    if (rc && is_dir(tmp))
        rm_rf(tmp);
    free(final);
    free(tmp);
    free(op);
    free(sp);
    free(st);
    free(old);
    return rc;
}

/* A log_history object of a logged step (the metrics line's keys). */
static json_t *history_entry(const icl_train_progress *p)
{
    json_t *e = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "step", (json_int_t)p->step, "epoch", p->epoch, "loss",
                          p->log_loss, "lr", p->lr, "grad_norm", p->grad_norm, "tokens_per_s", p->tokens_per_s);
    if (p->has_val)
        json_object_set_new(e, "val_loss", json_real(p->val_loss));
    return e;
}

/* The checkpoint's log history through the replay hook. */
static void replay_history(train_run *r)
{
    if (!r->h || !r->h->replay)
        return;
    size_t i;
    json_t *e;
    json_array_foreach(r->history, i, e)
    {
        json_t *v = json_object_get(e, "val_loss");
        icl_train_progress p = {.step = (long)json_integer_value(json_object_get(e, "step")),
                                .total_steps = r->sched.total_steps,
                                .epoch = json_number_value(json_object_get(e, "epoch")),
                                .log_loss = json_number_value(json_object_get(e, "loss")),
                                .lr = json_number_value(json_object_get(e, "lr")),
                                .grad_norm = json_number_value(json_object_get(e, "grad_norm")),
                                .tokens_per_s = json_number_value(json_object_get(e, "tokens_per_s")),
                                .logged = 1,
                                .has_val = json_is_number(v),
                                .val_loss = json_number_value(v)};
        p.loss = p.log_loss;
        r->h->replay(r->h->ctx, &p);
    }
}

/* Resume: the position, the moments and the first step's data order. */
static int restore(train_run *r)
{
    const icl_train_opts *o = r->o;
    if (r->ckpt) {
        if (read_state(r))
            return -1;
        char *op = icl_path_join(r->ckpt, "optimizer.safetensors");
        int rc = load_optimizer(r->m, op, r->err, r->errsz);
        free(op);
        if (rc)
            return -1;
        note(r, 0, "resuming from %s (step %ld, epoch %ld, example %zu)", r->ckpt, r->pos.step, r->pos.epoch,
             r->pos.cursor);
        if (r->o->rank == 0) /* rank 0 alone reports */
            replay_history(r);
        r->last_good = xstrdup(r->ckpt);
        r->last_saved = r->pos.step;
    }
    icl_dataset_order(&r->data, o->seed, r->pos.epoch, o->shuffle, r->perm, r->pos.rng);
    return 0;
}

char *icl_train_latest_checkpoint(const char *out_dir)
{
    DIR *dp = opendir(out_dir);
    if (!dp)
        return NULL;
    struct dirent *de;
    long best = -1;
    while ((de = readdir(dp))) {
        const char *n = de->d_name;
        long step = ckpt_step(n);
        if (step < 0)
            continue;
        char *dir = icl_path_join(out_dir, n);
        char *st = icl_path_join(dir, "trainer_state.json");
        struct stat sb;
        if (stat(st, &sb) == 0 && step > best)
            best = step;
        free(st);
        free(dir);
    }
    closedir(dp);
    if (best < 0)
        return NULL;
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%ld", best);
    return icl_path_join(out_dir, name);
}

/* ------------------------------------------------------------ the loop */

static double evaluate(train_run *r)
{
    const icl_dataset *d = &r->valid;
    size_t *perm = xmalloc((d->n ? d->n : 1) * sizeof *perm);
    icl_dataset_order(d, 0, 0, 0, perm, NULL);
    size_t cur = 0;
    double sum = 0;
    long n = 0;
    while (icl_dataset_next(d, perm, &cur, r->o->batch_size, 0, r->pad, &r->evb)) {
        long nt = 0;
        sum += icl_model_forward(r->m, &r->evb.b, NULL, 0, &nt);
        n += nt;
    }
    free(perm);
    return n ? sum / (double)n : NAN;
}

static void summary(const train_run *r)
{
    const icl_train_opts *o = r->o;
    const icl_config *c = &r->m->cfg;
    const icl_schedule *s = &r->sched;
    size_t trainable = 0;
    icl_param_set *sets[16];
    int ns = icl_model_trainable(r->m, sets, 16);
    for (int i = 0; i < ns && i < 16; i++)
        trainable += sets[i]->num_params;
    size_t nparams = r->m->base.num_params; /* and the quantized matrices (QLoRA) */
    const icl_weight *qe[2] = {&r->m->qembed, c->tie_word_embeddings ? NULL : &r->m->qhead};
    for (int i = 0; i < 2; i++)
        if (qe[i] && qe[i]->data)
            nparams += (size_t)qe[i]->out * qe[i]->in;
    for (int i = 0; r->m->qproj && i < c->num_hidden_layers * ICL_NPROJ; i++)
        if (r->m->qproj[i].data)
            nparams += (size_t)r->m->qproj[i].out * r->m->qproj[i].in;
    note(r, 0,
         "model %s (%s, %zu parameters, %zu trainable): vocab_size %d hidden_size %d intermediate_size %d "
         "num_hidden_layers %d num_attention_heads %d num_key_value_heads %d tie_word_embeddings %d",
         r->from, c->model_type, nparams, trainable, c->vocab_size, c->hidden_size,
         c->intermediate_size, c->num_hidden_layers, c->num_attention_heads, c->num_key_value_heads,
         c->tie_word_embeddings);
    note(r, 0,
         "batch_size %d grad_accum %d seq_len %d packing %d | steps %ld (from %ld) epochs %.4g | lr %g schedule %s "
         "warmup_steps %ld min_lr %g | adamw beta1 %g beta2 %g eps %g weight_decay %g | clip %g | seed %" PRIu64
         " threads %d gradient_checkpointing %d dtype %s%s%s%s loss_average %s | out %s",
         o->batch_size, o->grad_accum, r->seq_len, o->packing, s->total_steps, r->pos.step,
         r->epochs_run, s->lr, icl_sched_name(s->kind), s->warmup_steps, s->min_lr,
         o->adamw.beta1, o->adamw.beta2, o->adamw.eps, o->adamw.weight_decay, o->clip, o->seed, r->threads,
         o->gradient_checkpointing, o->bf16 ? "bfloat16" : "float32", o->bf16 ? " (" : "",
         o->bf16 ? icl_bf16_path_name() : "", o->bf16 ? ")" : "",
         o->loss_average_examples ? "examples" : "tokens", o->out_dir);
    if (r->m->lora_set)
        note(r, 0, "LoRA r %d lora_alpha %g (scale %g) lora_dropout %g use_rslora %d, %d adapted modules",
             r->lcfg.r, r->lcfg.lora_alpha, icl_lora_scale(&r->lcfg), r->lcfg.lora_dropout, r->lcfg.use_rslora,
             r->m->lora_set->n_views / 2);
}

/* At the end of an epoch, the next one's order. */
static void epoch_rollover(train_run *r)
{
    train_pos *p = &r->pos;
    if (p->cursor >= r->data.n) {
        p->epoch++;
        p->cursor = 0;
        icl_dataset_order(&r->data, r->o->seed, p->epoch, r->o->shuffle, r->perm, p->rng);
    }
}

/* The next step's micro-batches: up to grad_accum world_size from the
 * current epoch (a step never spans two epochs); of each
 * world_size consecutive ones, this rank's.  Returns their count; *tg and
 * *ntok get the step's targets and real tokens. */
static int next_microbatches(train_run *r, long *tg, long *ntok, long *nex)
{
    const icl_train_opts *o = r->o;
    train_pos *p = &r->pos;
    int nmb = 0;
    *tg = *ntok = *nex = 0;
    for (int k = 0; k < o->grad_accum * o->world_size; k++) {
        /* bbs[grad_accum] takes the other ranks' micro-batches once this rank has its own */
        if (!icl_dataset_next(&r->data, r->perm, &p->cursor, o->batch_size, o->packing, r->pad, &r->bbs[nmb]))
            break;
        if (k % o->world_size != o->rank)
            continue;
        if (o->loss_average_examples)
            *nex += icl_batchbuf_weigh_examples(&r->bbs[nmb]);
        *tg += r->bbs[nmb].n_targets;
        *ntok += r->bbs[nmb].n_tokens;
        r->mbs[nmb] = r->bbs[nmb].b;
        nmb++;
    }
    return nmb;
}

/* After step t: validation, the progress report, a periodic checkpoint. */
static int after_step(train_run *r, icl_train_progress *pr)
{
    const icl_train_opts *o = r->o;
    long t = pr->step, total = r->sched.total_steps;
    pr->has_val = r->have_valid && ((o->eval_every > 0 && t % o->eval_every == 0) || t == total);
    if (pr->has_val) {
        pr->val_loss = r->val_loss = evaluate(r);
        r->val_step = t;
    }
    pr->logged = (o->log_every > 0 && t % o->log_every == 0) || t == total || pr->has_val;
    pr->log_loss = r->log_loss / (double)r->log_targets;
    pr->tokens_per_s = (double)r->log_tokens / (r->log_time + 1e-12);
    if (pr->logged)
        json_array_append_new(r->history, history_entry(pr));
    if (r->h && r->h->step)
        r->h->step(r->h->ctx, pr);
    if (pr->logged) {
        r->log_loss = r->log_time = 0;
        r->log_targets = r->log_tokens = 0;
    }
    if (o->save_every > 0 && t % o->save_every == 0 && t != total)
        return save_checkpoint(r);
    return 0;
}

/* Steps until the end or a stop request: 0 done, 1 stopped, -1 error. */
static int run_steps(train_run *r)
{
    const icl_train_opts *o = r->o;
    icl_step_opts sopt = {o->adamw, o->clip, o->reduce, o->reduce_ctx, r->h ? r->h->stop : NULL,
                          o->seed, o->rank, o->world_size, o->reduce_begin, o->grads_ready, 0};
    double t0 = icl_now(), run_t0 = t0;
    long start_step = r->pos.step;
    while (r->pos.step < r->sched.total_steps) {
        epoch_rollover(r);
        train_pos at_start = r->pos;
        long tg, ntok;
        int nmb = next_microbatches(r, &tg, &ntok, &sopt.n_examples);
        double lr = icl_lr_at(&r->sched, r->pos.step);
        long t = r->pos.step + 1;
        icl_step_result sr;
        char e2[512];
        int st = icl_train_step(r->m, r->mbs, nmb, tg, lr, t, &sopt, &sr, e2, sizeof e2);
        if (st == 1) {
            r->pos = at_start;
            return 1;
        }
        if (st < 0)
            return fail(r, "step %ld: %s; stopping (last good checkpoint: %s)", t, e2,
                        r->last_good ? r->last_good : "none");
        r->pos.step = t;
        epoch_step(r);
        r->log_loss += sr.loss_sum;
        r->log_targets += sr.n_targets;
        r->log_tokens += ntok;
        double t_end = icl_now(); /* tokens/s counts training only, not evaluation or saving */
        r->log_time += t_end - t0;
        icl_train_progress pr = {.step = t, .total_steps = r->sched.total_steps, .start_step = start_step,
                                 .epoch = epoch_progress(r),
                                 .loss = sr.loss, .lr = lr, .grad_norm = sr.grad_norm, .tokens = ntok,
                                 .elapsed = t_end - run_t0};
        if (after_step(r, &pr))
            return -1;
        t0 = icl_now();
    }
    return 0;
}

static void run_free(train_run *r)
{
    for (int k = 0; r->bbs && k <= r->o->grad_accum; k++)
        icl_batchbuf_free(&r->bbs[k]);
    free(r->bbs);
    free(r->mbs);
    icl_batchbuf_free(&r->evb);
    free(r->perm);
    free(r->last_good);
    free(r->ckpt);
    free(r->best);
    json_decref(r->history);
    json_decref(r->ckpt_settings);
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* releases the flock */
    free(r->lock_path);
    free(r->old_steps);
    free(r->tokpath);
    free(r->tok_json);
    icl_dataset_free(&r->data);
    icl_dataset_free(&r->valid);
    icl_model_free(r->m);
    icl_lora_config_free(&r->lcfg);
}

/* --load-best-model-at-end: the model of best_model_checkpoint replaces the
 * last step's, to be saved in OUT_DIR. */
static int load_best(train_run *r)
{
    if (!r->o->load_best_model_at_end || !r->best || (r->last_good && !strcmp(r->best, r->last_good)))
        return 0;
    char e2[1024];
    int lora = lora_run(r->o);
    if (!is_dir(r->best)) { /* deleted by hand during the run or before --resume (read_state said so) */
        note(r, 1, "the best checkpoint, %s (val_loss %.9g), is gone: %s gets the last step's %s", r->best,
             r->best_val, r->o->out_dir, lora ? "adapter" : "model");
        free(r->best);
        r->best = NULL;
        return 0;
    }
    if (lora) { /* the frozen base stays; the adapters take the checkpoint's weights, of the same config */
        icl_lora_config cc;
        if (icl_lora_read_config(r->best, &cc, e2, sizeof e2))
            return fail(r, "%s", e2);
        char diff[600];
        int nd = lora_config_diff(&r->lcfg, &cc, diff, sizeof diff);
        icl_lora_config_free(&cc);
        if (nd)
            return fail(r, "%s: the best checkpoint is not this run's adapter: %s", r->best, diff);
        if (icl_lora_load_weights(r->m, r->best, e2, sizeof e2))
            return fail(r, "%s", e2);
        note(r, 0, "loading the best adapter (val_loss %.9g) from %s", r->best_val, r->best);
        return 0;
    }
    icl_model *b = icl_model_load(r->best, e2, sizeof e2);
    if (!b)
        return fail(r, "%s", e2); /* it names the file */
    note(r, 0, "loading the best model (val_loss %.9g) from %s", r->best_val, r->best);
    icl_model_free(r->m);
    r->m = b;
    return 0;
}

/* The token-line files and --valid exist and are files, and the folders the
 * run starts from are out of OUT_DIR's way, before the model loads (seconds
 * for a dequantized GGUF) and the output folder is claimed: stat only, so
 * that a FIFO's writer is not disturbed. */
static int inputs_exist(train_run *r)
{
    const icl_train_opts *o = r->o;
    for (int f = 0; f <= o->nfiles; f++) {
        const char *p = f < o->nfiles ? o->files[f] : o->valid;
        struct stat st;
        if (!p || !strcmp(p, "-"))
            continue;
        if (!*p)
            return fail(r, "'': an empty file name");
        if (stat(p, &st) != 0)
            return fail(r, "%s: %s", p, strerror(errno));
        if (S_ISDIR(st.st_mode))
            return fail(r, "%s: is a folder, not a file", p);
    }
    /* The folder a run starts from (-m, --adapter) is neither OUT_DIR, where
     * its results would go over or beside it (-m OUT_DIR would then load
     * the base alone), nor one of OUT_DIR's checkpoint-N, which a new run
     * there deletes (--overwrite-output-dir); a resumed run's were checked
     * when it started. */
    char *ro = o->out_dir && !o->resume ? realpath(o->out_dir, NULL) : NULL;
    const char *in[2][2] = {{o->adapter, "--adapter"}, {o->model_dir, "-m"}};
    for (int i = 0; ro && i < 2; i++) {
        struct stat st;
        char *ri = in[i][0] && stat(in[i][0], &st) == 0 && S_ISDIR(st.st_mode) ? realpath(in[i][0], NULL) : NULL;
        size_t n = strlen(ro);
        int same = ri && !strncmp(ri, ro, n) && ri[n] == '\0',
            ckpt = ri && !strncmp(ri, ro, n) && ri[n] == '/' && !strncmp(ri + n + 1, "checkpoint-", 11);
        free(ri);
        if (same || ckpt) {
            fail(r, same ? "-o %s is the folder of %s %s, which this run starts from: its results would be written "
                           "over or beside it; give another -o"
                         : "-o %s holds %s %s, which this run starts from, as a checkpoint of an earlier run there "
                           "(a new run deletes them); give another -o",
                 o->out_dir, in[i][1], in[i][0]);
            free(ro);
            return -1;
        }
    }
    free(ro);
    return 0;
}

int icl_train(const icl_train_opts *o, const icl_train_hooks *h, char *err, size_t errsz)
{
    train_run run = {.o = o, .h = h, .err = err, .errsz = errsz, .last_saved = -1, .lock_fd = -1, .val_step = -1, .ep_of = -1},
              *r = &run;
    int rc = -1;
    if (icl_train_opts_check(o, err, errsz))
        return -1;
    r->history = json_array();
    r->threads = icl_set_threads(o->threads);
    if (inputs_exist(r) || claim_dir(r) || open_model(r) || open_tokenizer(r) || open_data(r))
        goto out;
    clear_old(r);
    icl_model_set_gradient_checkpointing(r->m, o->gradient_checkpointing);
    plan_schedule(r);
    if (restore(r))
        goto out;
    if (o->bf16) { /* after restore: the weights the run continues from */
        char e2[256];
        if (!icl_bf16_native())
            note(r, 1, "--dtype bf16: this CPU lacks AVX512-BF16 (avx512bf16, with avx512f and avx512bw): the "
                       "products run the portable C path (the same results, several times slower than float32)");
        if (icl_model_set_bf16(r->m, e2, sizeof e2)) {
            fail(r, "%s", e2);
            goto out;
        }
        int nq = icl_model_qsummary(r->m, NULL, 0);
        if (nq)
            note(r, 0, "--dtype bf16: the %d quantized %s dequantized 64 rows or columns at a time straight to "
                       "bfloat16 inside the products (the values of --dequantize --dtype bf16, without a copy)",
                 nq, nq == 1 ? "matrix is" : "matrices are");
    }
    summary(r);
    r->bbs = xcalloc((size_t)o->grad_accum + 1, sizeof *r->bbs);
    r->mbs = xcalloc((size_t)o->grad_accum, sizeof *r->mbs);
    int st = run_steps(r);
    if (st < 0)
        goto out;
    if (r->pos.step != r->last_saved && save_checkpoint(r))
        goto out;
    if (st == 1) {
        note(r, 1, "interrupted at step %ld; saved %s; continue with --resume", r->pos.step, r->last_good);
        rc = 1;
        goto out;
    }
    if (load_best(r) || (o->rank == 0 && save_model_dir(r, o->out_dir)))
        goto out;
    if (o->load_best_model_at_end && r->best)
        note(r, 0, "done: %ld step%s; %s of the best checkpoint, %s (val_loss %.9g), in %s; last checkpoint %s",
             r->pos.step, r->pos.step == 1 ? "" : "s", lora_run(o) ? "adapter" : "model", r->best,
             r->best_val, o->out_dir, r->last_good);
    else
        note(r, 0, "done: %ld step%s; %s in %s, last checkpoint %s", r->pos.step, r->pos.step == 1 ? "" : "s",
             lora_run(o) ? "adapter" : "model", o->out_dir, r->last_good);
    rc = 0;
out:
    if (rc < 0)
        unclaim_dir(r);
    else if (r->lock_path)
        unlink(r->lock_path); /* the run is over: its .lock goes (still flock'd: no other run holds it) */
    run_free(r);
    return rc;
}

int icl_train_metrics_json(const icl_train_progress *p, char *buf, size_t n)
{
    int k = snprintf(buf, n,
                     "{\"step\": %ld, \"epoch\": %.6g, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
                     "\"tokens_per_s\": %.1f",
                     p->step, p->epoch, p->log_loss, p->lr, p->grad_norm, p->tokens_per_s);
    if (k >= 0 && (size_t)k < n && p->has_val)
        k += snprintf(buf + k, n - (size_t)k, ", \"val_loss\": %.9g", p->val_loss);
    if (k >= 0 && (size_t)k < n)
        k += snprintf(buf + k, n - (size_t)k, "}");
    return k;
}
