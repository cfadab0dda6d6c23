/* dp.h - data-parallel icl-train over MPI: the program's side of
 * icl_train_opts' rank / world_size / reduce (trainer.h).  Built with MPI
 * (-DICL_MPI, compiled by mpicc) when the Makefile finds mpicc; otherwise
 * every function below is the one-process case and no MPI is linked.
 *
 * Only under a launcher (mpirun / mpiexec / srun: OMPI_COMM_WORLD_SIZE,
 * PMI_SIZE or PMIX_RANK in the environment) is MPI initialised; a plain
 * `icl-train ...` is exactly the one-process program.
 *
 * Every synchronisation point starts with the same fixed header, one
 * MPI_Allreduce (MPI_MAX) of int64 {kind, -kind, value, -value, ck, -ck,
 * signal}: so the processes learn together whether they are at the same
 * point (start, step, finish), agree on the options and the checkpoint they
 * resume from, and agree on a stop (the largest signal number any of them
 * caught).  A disagreement is an error every process sees (no hang); a
 * failure of one process alone ends the job through MPI_Abort after its
 * message is printed.
 */
#ifndef ICL_DP_H
#define ICL_DP_H

#include <signal.h>

#include "trainer.h"

typedef struct {
    int rank, world;         /* this process of world (0 of 1 without MPI) */
    int local_size;          /* processes on this host (MPI_COMM_TYPE_SHARED) */
    int mpi;                 /* MPI was initialised */
    int collective;          /* the last error was seen by every process */
    volatile sig_atomic_t stop;          /* the agreed stop: a signal number, or 0 */
    const volatile sig_atomic_t *signal; /* this process's caught signal */
    long steps;              /* gradient reductions done */
    double reduce_s;         /* seconds spent in them (communication and waiting) */
    double bytes;            /* bytes of gradients all-reduced per step (last step) */
    int overlap;             /* all-reduce during the last backward ($ICL_MPI_OVERLAP; default: 1 when the ranks span several hosts) */
    /* the step's overlapped all-reduce in flight (dp_reduce_begin .. dp_grad_reduce) */
    size_t bucket;           /* floats per overlapped all-reduce at least ($ICL_MPI_BUCKET_MB, default 4) */
    int begun, next_stage, failed, n_sets, n_req, cap_req;
    icl_param_set *sets[16];
    size_t pend_b[16], pend_e[16]; /* per set: final grads not sent yet */
    float scale;             /* n_r / N: the factor of this process's grads */
    void *req;               /* MPI_Request [cap_req] */
} icl_dp;

/* Start: MPI_Init_thread (FUNNELED) when under a launcher, rank and world;
 * reads $ICL_MPI_OVERLAP and $ICL_MPI_BUCKET_MB.  sig: the program's signal
 * flag.  0, or -1 with err: for dp_die, collective when every process refused
 * the same environment (rank 0 alone tells). */
int dp_init(icl_dp *d, const volatile sig_atomic_t *sig, char *err, size_t errsz);

/* Wire a run for data parallelism (no-op for one process): o's rank,
 * world_size, reduce (dp_grad_reduce), with overlap (d->overlap, from
 * $ICL_MPI_OVERLAP: 0 off, 1 or unset on; d->bucket from
 * $ICL_MPI_BUCKET_MB; the processes must agree on both)
 * reduce_begin and grads_ready (dp_reduce_begin, dp_grads_ready) and, when --threads was not given
 * and $ICL_NUM_THREADS is unset, threads = online CPUs / processes on this
 * host; h->stop becomes the agreed stop; on ranks other than 0 the note and
 * step hooks are removed (rank 0 alone reports).  Then the start header:
 * the processes must agree on the options that shape the run and, with
 * --resume, on the newest checkpoint of OUT_DIR.  Rank 0 notes the
 * effective batch through h->note.  0, or -1 with err (collective). */
int dp_start(icl_dp *d, icl_train_opts *o, icl_train_hooks *h, char *err, size_t errsz);

/* icl_grad_reduce_fn for the trainer (ctx: the icl_dp).  After
 * dp_reduce_begin: waits for the all-reduces the hooks started (see
 * below).  Otherwise: the step header
 * (agrees on a stop), MPI_Allreduce (MPI_SUM) of {n_targets, loss_sum}
 * (as doubles: exact below 2^53 targets), each set's grads scaled by
 * n_r / N (they were d(loss_r / n_r)), then MPI_Allreduce (MPI_SUM) of each
 * set's grads (float, in chunks of at most 2^30), so every process holds
 * the gradient of the global mean loss, sum_r(loss_r) / N, and the global
 * N and loss sum.  The sum is the same bits on every process (Open MPI's
 * algorithms combine commutatively), so norm, clipping and AdamW stay
 * identical. */
int dp_grad_reduce(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, double *loss_sum, char *err,
                   size_t errsz);

/* Overlap (icl_step_opts' reduce_begin, ctx the icl_dp): after the forward
 * of the step's last micro-batch, the step header and the MPI_Allreduce of
 * {n_targets, loss_sum} as dp_grad_reduce does (both replaced by the global
 * ones); then dp_grads_ready, for each stage of the backward (model.h:
 * icl_grads_ready_fn, from num_hidden_layers down to -1), scales the
 * stage's range of each set's grads by n_r / N and adds it to the set's
 * bucket (the stages' ranges are adjacent, going down the buffer); a
 * bucket of d->bucket floats or more, and every bucket at the last stage,
 * gets an MPI_Iallreduce (MPI_SUM, in place; chunks of at most 2^30
 * floats); then the ones in flight are driven with MPI_Testall; dp_grad_reduce then waits
 * for all of them.  Every process starts the same all-reduces in the same
 * order (a process without a micro-batch gets every stage at once), and
 * a sum of two is the same bits in any chunking, so 2 processes give the
 * same bits with and without overlap.  An MPI failure in the hook is
 * reported by dp_grad_reduce. */
int dp_reduce_begin(void *ctx, icl_param_set *const *sets, int n_sets, long *n_targets, double *loss_sum, char *err,
                    size_t errsz);
void dp_grads_ready(void *ctx, const icl_model *m, int stage);

/* End of the run (rc from icl_train): the finish header (a process still
 * training elsewhere is an error here, not a hang), MPI_Finalize.  Returns
 * rc, or -1 with err. */
int dp_finish(icl_dp *d, int rc, char *err, size_t errsz);

/* Print "icl-train: MSG" (with "rank R: " when world > 1) and end the job
 * with status: a collective error ends every process quietly except rank 0
 * (which prints); a process's own error aborts the job (MPI_Abort).
 * Without MPI initialised: die(MSG) (exit 1), as the one-process program. */
_Noreturn void dp_die(icl_dp *d, int status, const char *msg);

#endif
