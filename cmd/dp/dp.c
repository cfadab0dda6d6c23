/* dp.c - data-parallel icl-train over MPI (see dp.h). */
#include "dp.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#ifdef ICL_MPI
#include <mpi.h>
#endif

#ifndef ICL_MPI

int dp_init(icl_dp *d, const volatile sig_atomic_t *sig, char *err, size_t errsz)
{
    (void)err, (void)errsz;
    memset(d, 0, sizeof *d);
    d->world = d->local_size = 1;
    d->signal = sig;
    return 0;
}

int dp_start(icl_dp *d, icl_train_opts *o, icl_train_hooks *h, char *err, size_t errsz)
{
    (void)d, (void)o, (void)h, (void)err, (void)errsz;
    return 0;
}

/* The step header, then MPI_Allreduce of {n_targets, loss_sum}: both become
 * the global ones; *scale gets n_r / N (this process's grads are
 * d(loss_r / n_r), the step's d(sum_r loss_r / N)). */
int dp_grad_reduce(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, double *loss_sum, char *err,
                   size_t errsz)
{
    (void)ctx, (void)sets, (void)n_sets, (void)n_targets, (void)loss_sum, (void)err, (void)errsz;
    return 0;
}

int dp_reduce_begin(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, double *loss_sum, char *err,
                    size_t errsz)
{
    (void)ctx, (void)sets, (void)n_sets, (void)n_targets, (void)loss_sum, (void)err, (void)errsz;
    return 0;
}

void dp_grads_ready(void *ctx, const icl_model *m, int stage) { (void)ctx, (void)m, (void)stage; }

int dp_finish(icl_dp *d, int rc, char *err, size_t errsz)
{
    (void)d, (void)err, (void)errsz;
    return rc;
}

_Noreturn void dp_die(icl_dp *d, int status, const char *msg)
{
    (void)d, (void)status;
    die("%s", msg); /* the one-process program, as without dp */
}

#else /* ICL_MPI */

static void say(const icl_dp *d, const char *msg)
{
    if (d->world > 1)
        fprintf(stderr, "%s: rank %d: %s\n", icl_progname, d->rank, msg);
    else
        fprintf(stderr, "%s: %s\n", icl_progname, msg);
    fflush(stderr);
}

enum { H_START = 1, H_STEP, H_FINISH };
static const char *kind_name(int64_t k)
{
    return k == H_START ? "the start" : k == H_STEP ? "a training step" : k == H_FINISH ? "the end" : "?";
}

/* The header (dp.h): out[0] = max kind, -out[1] = min kind, and so on;
 * out[6] the largest signal. */
static int header(icl_dp *d, int kind, int64_t value, int64_t ck, int64_t out[7], char *err, size_t errsz)
{
    int64_t sig = d->signal ? (int64_t)*d->signal : 0;
    int64_t a[7] = {kind, -kind, value, -value, ck, -ck, sig};
    int rc = MPI_Allreduce(a, out, 7, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        icl_seterr(err, errsz, "MPI_Allreduce failed (%d)", rc);
        return -1;
    }
    if (out[6] > 0)
        d->stop = (sig_atomic_t)out[6];
    if (out[0] != -out[1]) {
        d->collective = 1;
        icl_seterr(err, errsz,
                   "the processes are out of step: one is at %s, another at %s (are the data and options the same "
                   "for every process?)",
                   kind_name(-out[1]), kind_name(out[0]));
        return -1;
    }
    return 0;
}

int dp_init(icl_dp *d, const volatile sig_atomic_t *sig, char *err, size_t errsz)
{
    memset(d, 0, sizeof *d);
    d->world = d->local_size = 1;
    d->signal = sig;
    int bad = 0; /* an environment variable refused: err says which */
    const char *ov = getenv("ICL_MPI_OVERLAP");
    if (ov && strcmp(ov, "0") && strcmp(ov, "1")) {
        icl_seterr(err, errsz, "ICL_MPI_OVERLAP=%s: want 0 or 1", ov);
        bad = 1;
    }
    d->overlap = ov ? !strcmp(ov, "1") : -1; /* -1: decided below, once the hosts are known */
    const char *bk = getenv("ICL_MPI_BUCKET_MB");
    long mb = 4;
    if (!bad && bk && (parse_long(bk, &mb) || mb < 0 || mb > 65536)) {
        icl_seterr(err, errsz, "ICL_MPI_BUCKET_MB=%s: want a whole number of MiB, 0 to 65536", bk);
        bad = 1;
    }
    d->bucket = (size_t)mb << 18; /* floats */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") && !getenv("PMIX_RANK")) {
        d->overlap = 0;
        return -bad; /* not under a launcher: the one-process program, MPI untouched */
    }
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        icl_seterr(err, errsz, "MPI_Init_thread failed");
        return -1;
    }
    d->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    /* A variable exported to the whole job is refused by every process: say
     * so once (rank 0, collective), not N times interleaved on mpirun's
     * stderr.  Set for one process alone, it is that process's error. */
    int all_bad = bad;
    MPI_Allreduce(&bad, &all_bad, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (bad) {
        d->collective = all_bad;
        return -1;
    }
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
        MPI_Comm_size(local, &d->local_size);
        MPI_Comm_free(&local);
    }
    /* The default: overlap only when the ranks span several hosts.  Within
     * one host the all-reduce is a copy through shared memory that the
     * rank's own thread makes while it progresses the transfer: nothing runs
     * beside the compute, so there is nothing to hide and the copies in
     * between layers cost cache (measured on loopback: full fine-tune 9%
     * slower with overlap; bench/RESULTS.md).  Every rank sees local_size <
     * world or none does, so the ranks agree. */
    if (d->overlap < 0)
        d->overlap = d->local_size < d->world;
    return 0;
}

/* FNV-1a over the options that shape the run (data order, schedule, update). */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ULL;
    return h;
}
#define MIX(h, x) ((h) = fnv((h), &(x), sizeof(x)))

static int64_t options_print(const icl_train_opts *o)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    int has_model = o->model_dir != NULL, has_valid = o->valid != NULL;
    MIX(h, has_model), MIX(h, has_valid), MIX(h, o->nfiles);
    MIX(h, o->hidden_size), MIX(h, o->num_hidden_layers), MIX(h, o->num_attention_heads);
    MIX(h, o->num_key_value_heads), MIX(h, o->intermediate_size);
    MIX(h, o->batch_size), MIX(h, o->seq_len), MIX(h, o->grad_accum), MIX(h, o->packing), MIX(h, o->shuffle);
    MIX(h, o->epochs), MIX(h, o->max_steps);
    MIX(h, o->adamw.lr), MIX(h, o->adamw.beta1), MIX(h, o->adamw.beta2), MIX(h, o->adamw.eps);
    MIX(h, o->adamw.weight_decay), MIX(h, o->schedule), MIX(h, o->warmup_steps), MIX(h, o->min_lr);
    MIX(h, o->clip), MIX(h, o->eval_every), MIX(h, o->save_every), MIX(h, o->resume), MIX(h, o->seed);
    if (o->arch)
        h = fnv(h, o->arch, strlen(o->arch));
    return (int64_t)(h >> 2); /* room for its negation */
}

int dp_start(icl_dp *d, icl_train_opts *o, icl_train_hooks *h, char *err, size_t errsz)
{
    if (!d->mpi)
        return 0;
    o->rank = d->rank;
    o->world_size = d->world;
    if (d->world > 1) {
        o->reduce = dp_grad_reduce;
        o->reduce_ctx = d;
        o->reduce_begin = d->overlap ? dp_reduce_begin : NULL;
        o->grads_ready = d->overlap ? dp_grads_ready : NULL;
        h->stop = &d->stop;
    }
    if (o->threads == 0 && !getenv("ICL_NUM_THREADS") && d->local_size > 1) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = ncpu / d->local_size > 1 ? (int)(ncpu / d->local_size) : 1;
    }
    if (d->rank != 0) {
        h->note = NULL;
        h->step = NULL;
    }
    int64_t ck = -1;
    if (o->resume) {
        char *p = icl_train_latest_checkpoint(o->out_dir);
        long step;
        const char *b = p ? strrchr(p, '/') : NULL;
        if (b && !parse_long(b + 1 + strlen("checkpoint-"), &step))
            ck = step;
        free(p);
    }
    int64_t out[7];
    /* overlap or not, the bucket size: a different sequence of collectives */
    int64_t print = options_print(o) ^ (int64_t)d->overlap ^ ((int64_t)d->bucket << 1);
    if (header(d, H_START, print & (((int64_t)1 << 61) - 1), ck, out, err, errsz))
        return -1;
    if (out[2] != -out[3]) {
        d->collective = 1;
        icl_seterr(err, errsz, "the processes were given different options (every rank needs the same)");
        return -1;
    }
    if (out[4] != -out[5]) {
        d->collective = 1;
        icl_seterr(err, errsz,
                   "--resume: the processes find different newest checkpoints in %s (steps %lld and %lld; -1: "
                   "none): it must be one folder shared by every host",
                   o->out_dir, (long long)-out[5], (long long)out[4]);
        return -1;
    }
    if (d->rank == 0 && h->note && o->verbose && d->world > 1) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "data parallel: %d processes x --batch-size %d x --grad-accum %d = effective batch %ld sequences "
                 "per optimizer step; gradients all-reduced %s",
                 d->world, o->batch_size, o->grad_accum, (long)d->world * o->batch_size * o->grad_accum,
                 d->overlap ? "during the backward" : "after the backward");
        h->note(h->ctx, 0, msg);
    }
    return 0;
}

static int step_counts(icl_dp *d, long *n_targets, double *loss_sum, float *scale, char *err, size_t errsz)
{
    int64_t out[7];
    if (header(d, H_STEP, 0, 0, out, err, errsz))
        return -1;
    double c[2] = {(double)*n_targets, *loss_sum};
    if (MPI_Allreduce(MPI_IN_PLACE, c, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) {
        icl_seterr(err, errsz, "MPI_Allreduce of the target count failed");
        return -1;
    }
    *scale = c[0] > 0 ? (float)((double)*n_targets / c[0]) : 1.0f;
    *n_targets = (long)c[0];
    *loss_sum = c[1];
    return 0;
}

#define CHUNK ((size_t)1 << 30) /* floats per all-reduce at most (MPI counts are int) */

int dp_grad_reduce(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, double *loss_sum, char *err,
                   size_t errsz)
{
    icl_dp *d = ctx;
    double t0 = MPI_Wtime();
    if (d->begun) { /* dp_reduce_begin and dp_grads_ready started them: wait */
        d->begun = 0;
        MPI_Request *req = d->req;
        int rc = MPI_Waitall(d->n_req, req, MPI_STATUSES_IGNORE);
        d->n_req = 0;
        if (d->failed || rc != MPI_SUCCESS) {
            icl_seterr(err, errsz, "%s", d->failed == 2 ? "internal error: the backward's stages came out of order"
                                                        : "MPI_Iallreduce of the gradients failed");
            return -1;
        }
        if (d->next_stage != -2) {
            icl_seterr(err, errsz, "internal error: the backward reported stages down to %d, not -1",
                       d->next_stage + 1);
            return -1;
        }
        d->steps++;
        d->reduce_s += MPI_Wtime() - t0;
        return 0;
    }
    float f;
    if (step_counts(d, n_targets, loss_sum, &f, err, errsz))
        return -1;
    double bytes = 0;
    for (int i = 0; i < n_sets; i++) {
        float *g = sets[i]->grads;
        size_t n = sets[i]->num_params;
        if (f != 1.0f)
            for (size_t j = 0; j < n; j++)
                g[j] *= f;
        for (size_t off = 0; off < n;) {
            size_t k = n - off < CHUNK ? n - off : CHUNK;
            if (MPI_Allreduce(MPI_IN_PLACE, g + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) {
                icl_seterr(err, errsz, "MPI_Allreduce of the gradients of %s failed", sets[i]->name);
                return -1;
            }
            off += k;
        }
        bytes += (double)n * sizeof(float);
    }
    d->steps++;
    d->bytes = bytes;
    d->reduce_s += MPI_Wtime() - t0;
    return 0;
}

int dp_reduce_begin(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, double *loss_sum, char *err,
                    size_t errsz)
{
    icl_dp *d = ctx;
    double t0 = MPI_Wtime();
    if (n_sets > (int)(sizeof d->sets / sizeof *d->sets)) {
        icl_seterr(err, errsz, "%d trainable parameter sets: at most 16", n_sets);
        return -1;
    }
    if (step_counts(d, n_targets, loss_sum, &d->scale, err, errsz))
        return -1;
    d->n_sets = n_sets;
    d->bytes = 0;
    for (int i = 0; i < n_sets; i++) {
        d->sets[i] = sets[i];
        d->bytes += (double)sets[i]->num_params * sizeof(float);
    }
    d->begun = 1;
    d->failed = 0;
    d->n_req = 0;
    memset(d->pend_b, 0, sizeof d->pend_b);
    memset(d->pend_e, 0, sizeof d->pend_e);
    d->next_stage = INT_MIN; /* the first stage is the model's top one */
    d->reduce_s += MPI_Wtime() - t0;
    return 0;
}

/* Start the all-reduce of set i's pending range (chunks of at most CHUNK). */
static void send_pending(icl_dp *d, int i)
{
    float *g = d->sets[i]->grads;
    for (size_t off = d->pend_b[i], e = d->pend_e[i]; off < e;) {
        size_t k = e - off < CHUNK ? e - off : CHUNK;
        if (d->n_req == d->cap_req) {
            d->cap_req = d->cap_req ? 2 * d->cap_req : 64;
            d->req = xreallocarray(d->req, (size_t)d->cap_req, sizeof(MPI_Request));
        }
        MPI_Request *req = d->req;
        if (MPI_Iallreduce(MPI_IN_PLACE, g + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req[d->n_req]) !=
            MPI_SUCCESS) {
            d->failed = 1;
            return;
        }
        d->n_req++;
        off += k;
    }
    d->pend_b[i] = d->pend_e[i] = 0;
}

void dp_grads_ready(void *ctx, const icl_model *m, int stage)
{
    icl_dp *d = ctx;
    double t0 = MPI_Wtime();
    if (!d->begun || d->failed)
        return;
    if (d->next_stage != INT_MIN && stage != d->next_stage) {
        d->failed = 2; /* reported by dp_grad_reduce */
        return;
    }
    d->next_stage = stage - 1;
    for (int i = 0; i < d->n_sets && !d->failed; i++) {
        size_t b, e;
        icl_model_grad_range(m, d->sets[i], stage, &b, &e);
        float *g = d->sets[i]->grads;
        if (d->scale != 1.0f)
            for (size_t j = b; j < e; j++)
                g[j] *= d->scale;
        if (e > b) { /* the stages go down the buffer: grow the bucket downwards */
            if (d->pend_e[i] > d->pend_b[i] && e != d->pend_b[i])
                send_pending(d, i); /* not adjacent (no such layout today) */
            if (d->pend_e[i] == d->pend_b[i])
                d->pend_e[i] = e;
            d->pend_b[i] = b;
        }
        if (d->pend_e[i] > d->pend_b[i] && ((d->pend_e[i] - d->pend_b[i]) >= d->bucket || stage == -1))
            send_pending(d, i);
    }
    int done;
    if (d->n_req && !d->failed &&
        MPI_Testall(d->n_req, (MPI_Request *)d->req, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
        d->failed = 1;
    d->reduce_s += MPI_Wtime() - t0;
}

int dp_finish(icl_dp *d, int rc, char *err, size_t errsz)
{
    if (!d->mpi)
        return rc;
    int64_t out[7];
    if (header(d, H_FINISH, rc, 0, out, err, errsz))
        return -1;
    if (out[2] != -out[3]) {
        d->collective = 1;
        icl_seterr(err, errsz, "the processes ended differently");
        return -1;
    }
    MPI_Finalize();
    d->mpi = 0;
    free(d->req);
    d->req = NULL;
    return rc;
}

_Noreturn void dp_die(icl_dp *d, int status, const char *msg)
{
    if (!d->mpi)
        die("%s", msg);
    if (d->collective) { /* every process knows: rank 0 tells, all end */
        if (d->rank == 0)
            say(d, msg);
        MPI_Finalize();
        exit(status);
    }
    say(d, msg);
    MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}

#endif /* ICL_MPI */
