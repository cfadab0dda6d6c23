/* trainer.c - icl-train's loop: see trainer.h. */
#define _GNU_SOURCE
#include "trainer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dataset.h"
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
    o->progress = -1;
    o->verbose = 1;
    o->metrics = stdout;
    o->world_size = 1;
}

/* ------------------------------------------------------------ the step */

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
    for (int k = 0; k < n_mb; k++) {
        if (o->stop && *o->stop)
            return 1;
        long nt = 0;
        r->loss_sum += icl_model_forward(m, &mb[k], NULL, (float)(1.0 / (double)n_targets), &nt);
        r->n_targets += nt;
        if (icl_model_backward(m, &mb[k], err, errsz))
            return -1;
    }
    if (o->stop && *o->stop)
        return 1;
    if (r->n_targets != n_targets) {
        icl_seterr(err, errsz, "internal error: the model counted %ld targets, the batches %ld", r->n_targets,
                   n_targets);
        return -1;
    }
    if (o->reduce && o->reduce(o->reduce_ctx, sets, ns, &r->n_targets, err, errsz))
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
    return 0;
}

/* ------------------------------------------------------------ small helpers */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whole file into memory (NUL-terminated), NULL if it cannot be read. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    icl_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        buf_append(&b, tmp, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        buf_free(&b);
        return NULL;
    }
    if (!b.data)
        buf_append(&b, "", 0);
    *len = b.len;
    return b.data;
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

/* ------------------------------------------------------------ signals */

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }

/* ------------------------------------------------------------ data */

typedef struct {
    int present;
    uint64_t fp;      /* icl_tok_fingerprint */
    int vocab;        /* icl_tok_vocab_size */
    const char *what; /* where the identity comes from */
} tok_identity;

/* Check the header of r (once it has been read) against the model. */
static void check_header(const icl_toklines_reader *r, const char *name, int vocab, const tok_identity *id)
{
    if (id->present && r->hdr.fingerprint != id->fp)
        die("%s:%ld: token lines were made by tokenizer xxh3:%016" PRIx64 " (%s), not the model's (%s, xxh3:%016" PRIx64
            "); re-encode with icl-tok encode -t %s",
            name, r->header_line, r->hdr.fingerprint, r->hdr.source ? r->hdr.source : "?", id->what, id->fp, id->what);
    if (id->present && r->hdr.vocab_size != id->vocab)
        die("%s:%ld: token lines have vocab_size %d but the model's tokenizer (%s) has %d", name, r->header_line,
            r->hdr.vocab_size, id->what, id->vocab);
    if (r->hdr.vocab_size > vocab)
        die("%s:%ld: token lines use a vocabulary of %d ids but the model has %d", name, r->header_line,
            r->hdr.vocab_size, vocab);
    if (!id->present)
        warn("%s: cannot check the tokenizer of the token lines: %s", name, id->what);
}

/* Read the token-line files into d, checking headers against the model's
 * tokenizer before any id is used.  The reader starts without an id bound
 * (so a header naming another tokenizer is reported as such, not as an id
 * out of range); the first example is checked here, then the reader bounds
 * ids by the model's vocabulary itself. */
static void load_data(icl_dataset *d, const char *const *files, int nfiles, int vocab, const tok_identity *id)
{
    static const char *const stdin_only[] = {"-"};
    if (nfiles == 0) {
        files = stdin_only;
        nfiles = 1;
    }
    for (int f = 0; f < nfiles; f++) {
        icl_toklines_reader r;
        icl_toklines_open(&r, files[f], 0);
        r.vocab_size = INT32_MAX;
        const char *name = r.lines.name;
        char err[512];
        int checked = 0;
        for (;;) {
            int rc = icl_toklines_next(&r, err, sizeof err);
            if (rc < 0)
                die("%s", err);
            if (!checked && r.hdr.present) {
                checked = 1;
                check_header(&r, name, vocab, id);
            }
            if (rc == 0)
                break;
            if (r.vocab_size != vocab) {
                for (size_t i = 0; i < r.n; i++)
                    if (r.ids[i] >= vocab)
                        die("%s:%ld: token id %d is not below the vocabulary size %d", name, r.lines.lineno,
                            r.ids[i], vocab);
                r.vocab_size = vocab;
            }
            icl_dataset_add(d, r.ids, r.target, r.n);
        }
        icl_toklines_close(&r);
    }
}

static void report_data(const char *what, const icl_dataset *d, int verbose)
{
    if (d->n_dropped_long)
        warn("%s: dropped %ld of %ld examples whose final response does not fit in --seq-len %d with a token "
             "before it", what, d->n_dropped_long, d->n_read, d->seq_len);
    if (d->n_dropped_empty)
        warn("%s: dropped %ld of %ld examples without a trained target token", what, d->n_dropped_empty,
             d->n_read);
    if (verbose)
        fprintf(stderr, "icl-train: %s: %zu examples, %zu tokens, %ld targets, longest %d; %ld truncated from the left\n",
                what, d->n, d->ntok, d->n_targets, d->max_len, d->n_truncated);
}

/* ------------------------------------------------------------ state */

typedef struct {
    long step;        /* optimizer steps done */
    long epoch;       /* current epoch (0-based) */
    size_t cursor;    /* next example of the epoch's permutation */
    uint64_t rng[4];  /* shuffle generator after the epoch's shuffle */
} train_pos;

static char *state_json(const icl_train_opts *o, const icl_schedule *s, const train_pos *p, const icl_dataset *d)
{
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
    json_t *root = json_object();
    json_object_set_new(root, "global_step", json_integer(p->step));
    json_object_set_new(root, "epoch", json_real(p->epoch + (d->n ? (double)p->cursor / (double)d->n : 0)));
    json_object_set_new(root, "max_steps", json_integer(s->total_steps));
    json_object_set_new(root, "train_batch_size", json_integer(o->batch_size));
    json_object_set_new(root, "icl", ic);
    char *txt = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(root);
    return txt;
}

static uint64_t hex64(json_t *v, const char *path, const char *key)
{
    const char *s = json_string_value(v);
    char *end;
    if (!s || !*s)
        die("%s: \"%s\" is not a hex string", path, key);
    errno = 0;
    unsigned long long x = strtoull(s, &end, 16);
    if (*end || errno)
        die("%s: \"%s\" is not a hex string", path, key);
    return (uint64_t)x;
}

/* Read trainer_state.json of a checkpoint and check it fits this run. */
static void read_state(const char *ckpt, const icl_train_opts *o, const icl_dataset *d, train_pos *p)
{
    char *path = join(ckpt, "trainer_state.json");
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        die("%s:%d: %s", path, je.line, je.text);
    json_t *ic = json_object_get(root, "icl");
    if (!json_is_object(ic))
        die("%s: no \"icl\" object: not written by icl-train", path);
#define GETI(k) (json_is_integer(json_object_get(ic, k)) ? (long)json_integer_value(json_object_get(ic, k)) \
                                                         : (die("%s: \"icl.%s\" missing or not an integer", path, k), 0))
    p->step = GETI("step");
    p->epoch = GETI("epoch");
    long cursor = GETI("cursor");
    long bs = GETI("batch_size"), ga = GETI("grad_accum"), sl = GETI("seq_len"), ne = GETI("num_examples");
#undef GETI
    json_t *rng = json_object_get(ic, "rng");
    if (!json_is_array(rng) || json_array_size(rng) != 4)
        die("%s: \"icl.rng\" is not 4 hex words", path);
    for (int i = 0; i < 4; i++)
        p->rng[i] = hex64(json_array_get(rng, (size_t)i), path, "icl.rng");
    uint64_t seed = hex64(json_object_get(ic, "seed"), path, "icl.seed");
    int packing = json_is_true(json_object_get(ic, "packing"));
    int shuffle = json_is_true(json_object_get(ic, "shuffle"));
    char hex[32];
    snprintf(hex, sizeof hex, "xxh3:%016" PRIx64, icl_dataset_hash(d));
    const char *dh = json_string_value(json_object_get(ic, "data_hash"));
#define SAME(cond, what, a, b)                                                                                 \
    if (!(cond))                                                                                               \
        die("%s: cannot resume: %s is %ld here but %ld in the checkpoint (give the same options and data)", \
            ckpt, what, (long)(a), (long)(b));
    SAME(bs == o->batch_size, "--batch-size", o->batch_size, bs);
    SAME(ga == o->grad_accum, "--grad-accum", o->grad_accum, ga);
    SAME(sl == d->seq_len, "--seq-len", d->seq_len, sl);
    SAME(packing == o->packing, "--packing", o->packing, packing);
    SAME(shuffle == o->shuffle, "shuffling", o->shuffle, shuffle);
    SAME(ne == (long)d->n, "the number of examples", (long)d->n, ne);
#undef SAME
    if (seed != o->seed)
        die("%s: cannot resume: --seed %" PRIu64 " differs from the checkpoint's %" PRIu64, ckpt, o->seed, seed);
    if (!dh || strcmp(dh, hex))
        die("%s: cannot resume: the training data differ from the checkpoint's (%s, here %s)", ckpt,
            dh ? dh : "none", hex);
    if (cursor < 0 || (size_t)cursor > d->n || p->epoch < 0 || p->step < 0)
        die("%s: data position out of range", path);
    p->cursor = (size_t)cursor;
    json_decref(root);
    free(path);
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
                if (icl_st_read_f32(t, (k ? s->v : s->m) + v->offset, v->numel, e2, sizeof e2)) {
                    icl_seterr(err, errsz, "%s: %s", path, e2);
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
static void save_model_dir(const icl_model *m, const char *dir, const char *tok_json, size_t tok_len)
{
    char err[512];
    if (icl_model_save(m, dir, err, sizeof err))
        die("%s", err);
    if (tok_json) {
        char *p = join(dir, "tokenizer.json");
        if (icl_write_file_atomic(p, tok_json, tok_len, err, sizeof err))
            die("%s", err);
        free(p);
    }
}

/* OUT/checkpoint-STEP, atomically. Returns its path (malloc'd). */
static char *save_checkpoint(icl_model *m, const char *out, const icl_train_opts *o, const icl_schedule *s,
                             const train_pos *p, const icl_dataset *d, const char *tok_json, size_t tok_len)
{
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%ld", p->step);
    char *final = join(out, name);
    char tmpl[96];
    snprintf(tmpl, sizeof tmpl, ".tmp-%s.XXXXXX", name);
    char *tmp = join(out, tmpl);
    if (!mkdtemp(tmp))
        die("%s: cannot create a temporary folder:", out);
    save_model_dir(m, tmp, tok_json, tok_len);
    char *op = join(tmp, "optimizer.safetensors");
    char err[512];
    if (save_optimizer(m, op, err, sizeof err))
        die("%s", err);
    free(op);
    char *st = state_json(o, s, p, d);
    char *sp = join(tmp, "trainer_state.json");
    if (icl_write_file_atomic(sp, st, strlen(st), err, sizeof err))
        die("%s", err);
    free(sp);
    free(st);
    fsync_path(tmp);
    char *old = NULL;
    if (is_dir(final)) { /* replace a checkpoint of the same step */
        old = join(out, ".old-checkpoint");
        rm_rf(old);
        if (rename(final, old) < 0)
            die("%s: cannot move aside:", final);
    }
    if (rename(tmp, final) < 0)
        die("%s: cannot rename to %s:", tmp, final);
    fsync_path(out);
    if (old) {
        rm_rf(old);
        free(old);
    }
    free(tmp);
    return final;
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
        if (strncmp(n, "checkpoint-", 11))
            continue;
        long step;
        if (parse_long(n + 11, &step) || step < 0)
            continue;
        char *dir = join(out_dir, n);
        char *st = join(dir, "trainer_state.json");
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
    return join(out_dir, name);
}

/* ------------------------------------------------------------ evaluation */

static double evaluate(icl_model *m, const icl_dataset *d, int batch_size, int32_t pad, icl_batchbuf *bb)
{
    size_t *perm = xmalloc((d->n ? d->n : 1) * sizeof *perm);
    icl_dataset_order(d, 0, 0, 0, perm, NULL);
    size_t cur = 0;
    double sum = 0;
    long n = 0;
    while (icl_dataset_next(d, perm, &cur, batch_size, 0, pad, bb)) {
        long nt = 0;
        sum += icl_model_forward(m, &bb->b, NULL, 0, &nt);
        n += nt;
    }
    free(perm);
    return n ? sum / (double)n : NAN;
}

/* ------------------------------------------------------------ main loop */

static void print_config(const icl_train_opts *o, const icl_model *m, const icl_schedule *s, const char *from,
                         long start_step, int threads, int seq_len)
{
    const icl_config *c = &m->cfg;
    fprintf(stderr,
            "icl-train: model %s (%s, %zu parameters): vocab_size %d hidden_size %d intermediate_size %d "
            "num_hidden_layers %d num_attention_heads %d num_key_value_heads %d tie_word_embeddings %d\n",
            from, c->model_type, m->base.num_params, c->vocab_size, c->hidden_size, c->intermediate_size,
            c->num_hidden_layers, c->num_attention_heads, c->num_key_value_heads, c->tie_word_embeddings);
    fprintf(stderr,
            "icl-train: batch_size %d grad_accum %d seq_len %d packing %d | steps %ld (from %ld) epochs %ld | "
            "lr %g schedule %s warmup_steps %ld min_lr %g | adamw beta1 %g beta2 %g eps %g weight_decay %g | "
            "clip %g | seed %" PRIu64 " threads %d | out %s\n",
            o->batch_size, o->grad_accum, seq_len, o->packing, s->total_steps, start_step, o->max_steps > 0 ? -1 : o->epochs,
            s->lr, icl_sched_name(s->kind), s->warmup_steps, s->min_lr, o->adamw.beta1, o->adamw.beta2, o->adamw.eps,
            o->adamw.weight_decay, o->clip, o->seed, threads, o->out_dir);
}

static void fmt_time(char *b, size_t n, double s)
{
    if (!(s >= 0) || s > 1e7)
        snprintf(b, n, "--:--");
    else if (s >= 3600)
        snprintf(b, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(b, n, "%d:%02d", (int)s / 60, (int)s % 60);
}

int icl_train(const icl_train_opts *o)
{
    if (!o->out_dir)
        die("no output folder (-o)");
    if (!!o->model_dir + !!o->arch != 1 && !o->resume)
        die("give exactly one of -m MODEL_DIR and --arch");
    if (o->batch_size < 1 || o->grad_accum < 1)
        die("--batch-size and --grad-accum must be at least 1");
    int threads = icl_set_threads(o->threads);
    if (mkdir(o->out_dir, 0755) < 0 && errno != EEXIST)
        die("%s: cannot create:", o->out_dir);
    if (!is_dir(o->out_dir))
        die("%s: exists and is not a folder", o->out_dir);

    /* ---- model */
    char err[1024];
    icl_model *m = NULL;
    char *tok_json = NULL; /* from scratch: the tokenizer.json bytes to ship */
    size_t tok_len = 0;
    tok_identity tid = {0};
    char *ckpt = NULL;
    const char *from = o->model_dir;
    char *tokpath = NULL;
    if (o->resume) {
        ckpt = icl_train_latest_checkpoint(o->out_dir);
        if (!ckpt)
            die("%s: no complete checkpoint to resume from", o->out_dir);
        m = icl_model_load(ckpt, err, sizeof err);
        if (!m)
            die("%s: %s", ckpt, err);
        from = ckpt;
        tokpath = join(ckpt, "tokenizer.json");
    } else if (o->model_dir) {
        m = icl_model_load(o->model_dir, err, sizeof err);
        if (!m)
            die("%s: %s", o->model_dir, err);
        tokpath = join(o->model_dir, "tokenizer.json");
    } else {
        if (!o->tokenizer)
            die("--arch needs a tokenizer (-t TOKENIZER) for the vocabulary and special ids");
        tokpath = is_dir(o->tokenizer) ? join(o->tokenizer, "tokenizer.json") : xstrdup(o->tokenizer);
        icl_tokenizer *t = icl_tok_load(o->tokenizer, err, sizeof err);
        if (!t)
            die("%s: %s", o->tokenizer, err);
        icl_config c;
        if (icl_config_defaults(&c, o->arch))
            die("--arch %s: not one of llama, qwen2, gpt2", o->arch);
        c.vocab_size = icl_tok_vocab_size(t);
        const icl_tok_specials *sp = icl_tok_get_specials(t);
        c.bos_token_id = sp->bos;
        c.pad_token_id = sp->pad;
        c.n_eos = sp->eos >= 0;
        c.eos_token_id[0] = sp->eos;
        icl_tok_free(t);
        if (o->hidden_size)
            c.hidden_size = o->hidden_size;
        if (o->num_hidden_layers)
            c.num_hidden_layers = o->num_hidden_layers;
        if (o->num_attention_heads)
            c.num_attention_heads = o->num_attention_heads;
        c.num_key_value_heads = o->num_key_value_heads ? o->num_key_value_heads : c.num_attention_heads;
        if (c.arch == ICL_ARCH_GPT2)
            c.num_key_value_heads = c.num_attention_heads;
        if (o->intermediate_size)
            c.intermediate_size = o->intermediate_size;
        else if (c.arch == ICL_ARCH_GPT2 || o->hidden_size)
            c.intermediate_size = 4 * c.hidden_size;
        if (c.num_attention_heads > 0)
            c.head_dim = c.hidden_size / c.num_attention_heads;
        int sl = o->seq_len > 0 ? o->seq_len : 512;
        c.max_position_embeddings = c.arch == ICL_ARCH_GPT2 ? sl : (sl > 2048 ? sl : 2048);
        if (icl_config_validate(&c, "--arch", err, sizeof err))
            die("%s", err);
        m = icl_model_new(&c);
        icl_config_free(&c);
        icl_model_init_random(m, o->seed, 0.02f);
        from = o->arch;
    }
    {
        size_t n;
        char *bytes = slurp(tokpath, &n);
        if (bytes) {
            icl_tokenizer *t = icl_tok_load_mem(bytes, n, NULL, err, sizeof err);
            if (t) {
                tid.present = 1;
                tid.fp = icl_tok_fingerprint(t);
                tid.vocab = icl_tok_vocab_size(t);
                tid.what = tokpath;
                icl_tok_free(t);
            } else if (o->arch && !o->resume) {
                die("%s: %s", tokpath, err);
            } else {
                warn("%s: %s", tokpath, err);
                tid.what = "its tokenizer.json cannot be read by icl";
            }
            if (!o->model_dir && !o->resume) {
                tok_json = bytes;
                tok_len = n;
                bytes = NULL;
            }
            free(bytes);
        } else if (o->arch && !o->resume) {
            die("%s: cannot read:", tokpath);
        } else {
            tid.what = "the model folder has no tokenizer.json";
        }
    }
    const icl_config *cfg = &m->cfg;
    int seq_len = o->seq_len;
    if (seq_len <= 0)
        seq_len = cfg->max_position_embeddings < 2048 ? cfg->max_position_embeddings : 2048;
    if (cfg->arch == ICL_ARCH_GPT2 && seq_len > cfg->max_position_embeddings)
        die("--seq-len %d is more than the model's n_positions %d", seq_len, cfg->max_position_embeddings);
    int32_t pad = cfg->pad_token_id >= 0 ? cfg->pad_token_id : (cfg->n_eos ? cfg->eos_token_id[0] : 0);
    if (pad < 0 || pad >= cfg->vocab_size)
        pad = 0;

    /* ---- data */
    icl_dataset data, valid;
    icl_dataset_init(&data, seq_len);
    load_data(&data, o->files, o->nfiles, cfg->vocab_size, &tid);
    report_data("training data", &data, o->verbose);
    if (data.n == 0)
        die("no training example left (see above)");
    int have_valid = o->valid != NULL;
    icl_dataset_init(&valid, seq_len);
    if (have_valid) {
        const char *vf[1] = {o->valid};
        load_data(&valid, vf, 1, cfg->vocab_size, &tid);
        report_data(o->valid, &valid, o->verbose);
        if (valid.n == 0)
            die("%s: no validation example left", o->valid);
    }

    /* ---- length and schedule */
    size_t *perm = xmalloc(data.n * sizeof *perm);
    long total = o->max_steps;
    if (total <= 0) {
        if (o->epochs < 1)
            die("--epochs must be at least 1 (or give --max-steps)");
        total = 0;
        for (long e = 0; e < o->epochs; e++) {
            if (e == 0 || o->packing)
                icl_dataset_order(&data, o->seed, e, o->shuffle, perm, NULL);
            long nb = icl_dataset_count_batches(&data, perm, o->batch_size, o->packing);
            total += (nb + o->grad_accum - 1) / o->grad_accum;
        }
    }
    icl_schedule sched = {.kind = o->schedule, .lr = o->adamw.lr, .min_lr = o->min_lr,
                          .warmup_steps = o->warmup_steps, .total_steps = total};

    /* ---- state */
    train_pos pos = {0};
    if (ckpt) {
        read_state(ckpt, o, &data, &pos);
        char *op = join(ckpt, "optimizer.safetensors");
        if (load_optimizer(m, op, err, sizeof err))
            die("%s", err);
        free(op);
        if (o->verbose)
            fprintf(stderr, "icl-train: resuming from %s (step %ld, epoch %ld, example %zu)\n", ckpt, pos.step,
                    pos.epoch, pos.cursor);
    }
    icl_dataset_order(&data, o->seed, pos.epoch, o->shuffle, perm, pos.rng);
    if (o->verbose)
        print_config(o, m, &sched, from, pos.step, threads, seq_len);

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    got_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    int progress = o->progress < 0 ? isatty(2) : o->progress;
    int A = o->grad_accum;
    icl_batchbuf *bbs = xcalloc((size_t)A, sizeof *bbs);
    icl_batch *mbs = xcalloc((size_t)A, sizeof *mbs);
    icl_step_opts sopt = {o->adamw, o->clip, NULL, NULL, &got_signal};
    icl_batchbuf evb = {0};
    long last_saved = ckpt ? pos.step : -1;
    char *last_good = ckpt ? xstrdup(ckpt) : NULL;
    double log_loss = 0, log_t0 = icl_now(), run_t0 = log_t0, log_time = 0;
    long log_targets = 0, log_tokens = 0, log_steps = 0, start_step = pos.step;
    int rc = 0;
    double val_loss = NAN;

    while (pos.step < total) {
        if (pos.cursor >= data.n) {
            pos.epoch++;
            pos.cursor = 0;
            icl_dataset_order(&data, o->seed, pos.epoch, o->shuffle, perm, pos.rng);
        }
        train_pos at_start = pos;
        int nmb = 0;
        long tg = 0, ntok = 0;
        /* A micro-batches per process: of each world_size consecutive ones, this rank's */
        for (int k = 0; nmb < A; k++) {
            if (!icl_dataset_next(&data, perm, &pos.cursor, o->batch_size, o->packing, pad, &bbs[nmb]))
                break;
            if (k % o->world_size != o->rank)
                continue;
            tg += bbs[nmb].n_targets;
            ntok += bbs[nmb].n_tokens;
            nmb++;
        }
        double lr = icl_lr_at(&sched, pos.step);
        long t = pos.step + 1;
        for (int k = 0; k < nmb; k++)
            mbs[k] = bbs[k].b;
        icl_step_result sr;
        int st = icl_train_step(m, mbs, nmb, tg, lr, t, &sopt, &sr, err, sizeof err);
        if (st == 1) {
            pos = at_start;
            break;
        }
        if (st < 0)
            die("step %ld: %s; stopping (last good checkpoint: %s)", t, err, last_good ? last_good : "none");
        double loss_sum = sr.loss_sum, loss = sr.loss, norm = sr.grad_norm;
        pos.step = t;
        log_loss += loss_sum;
        log_targets += tg;
        log_tokens += ntok;
        log_steps++;

        double t_end = icl_now(); /* tokens/s counts training only, not evaluation or saving */
        log_time += t_end - log_t0;
        int do_eval = have_valid && ((o->eval_every > 0 && t % o->eval_every == 0) || t == total);
        if (do_eval)
            val_loss = evaluate(m, &valid, o->batch_size, pad, &evb);
        int do_log = (o->log_every > 0 && t % o->log_every == 0) || t == total || do_eval;
        if (do_log) {
            double ep = pos.epoch + (double)pos.cursor / (double)data.n;
            fprintf(o->metrics,
                    "{\"step\": %ld, \"epoch\": %.6g, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
                    "\"tokens_per_s\": %.1f",
                    t, ep, log_loss / (double)log_targets, lr, norm, (double)log_tokens / (log_time + 1e-12));
            if (do_eval)
                fprintf(o->metrics, ", \"val_loss\": %.9g", val_loss);
            fputs("}\n", o->metrics);
            fflush(o->metrics);
            log_loss = 0;
            log_targets = log_tokens = log_steps = 0;
            log_time = 0;
        }
        if (progress) {
            double el = icl_now() - run_t0, per = el / (double)(t - start_step);
            char eta[32];
            fmt_time(eta, sizeof eta, per * (double)(total - t));
            fprintf(stderr, "\rstep %ld/%ld  loss %.4f  %.0f tok/s  ETA %s   ", t, total, loss,
                    (double)ntok / (per > 0 ? per : 1e-9), eta);
            if (t == total)
                fputc('\n', stderr);
        }
        if (o->save_every > 0 && t % o->save_every == 0 && t != total) {
            free(last_good);
            last_good = save_checkpoint(m, o->out_dir, o, &sched, &pos, &data, tok_json, tok_len);
            last_saved = t;
        }
        log_t0 = icl_now();
    }
    if (progress && got_signal)
        fputc('\n', stderr);
    if (pos.step != last_saved) {
        free(last_good);
        last_good = save_checkpoint(m, o->out_dir, o, &sched, &pos, &data, tok_json, tok_len);
    }
    if (got_signal) {
        rc = got_signal == SIGINT ? 130 : 143;
        warn("interrupted at step %ld; saved %s; continue with --resume", pos.step, last_good);
    } else {
        save_model_dir(m, o->out_dir, tok_json, tok_len);
        if (o->verbose)
            fprintf(stderr, "icl-train: done: %ld steps; model in %s, last checkpoint %s\n", pos.step, o->out_dir,
                    last_good);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);

    for (int k = 0; k < A; k++)
        icl_batchbuf_free(&bbs[k]);
    free(bbs);
    free(mbs);
    icl_batchbuf_free(&evb);
    free(perm);
    free(last_good);
    free(ckpt);
    free(tokpath);
    free(tok_json);
    icl_dataset_free(&data);
    icl_dataset_free(&valid);
    icl_model_free(m);
    return rc;
}
