/* bf16.h - matrix products with bfloat16 operands and float32 accumulation
 * (AVX512-BF16's vdpbf16ps), for the `--dtype bf16` compute path.
 *
 * bfloat16 is the top half of an IEEE float32 (1 sign, 8 exponent, 7
 * mantissa bits; Kalamkar et al., "A Study of BFLOAT16 for Deep Learning
 * Training", 2019).  Weights are converted once (icl_bf16_from_f32_row),
 * activations are rounded to bf16 inside each product, and every product
 * of two bf16 values is exact in float32; sums are float32.  So each
 * output differs from the float32 product of the unrounded operands by at
 * most (2^-7 + 2^-16 + K 2^-24) sum_k |x_k w_k| (each operand's relative
 * rounding error is at most 2^-8, bf16 having 8 significant bits; then K
 * float32 additions), the bound the tests assert.
 *
 * Rounding float32 -> bf16 is round-to-nearest-even with denormal inputs
 * flushed to (signed) zero and NaNs kept quiet, exactly as the hardware's
 * vcvtneps2bf16, in every code path.
 *
 * Code paths: AVX512-BF16 (F/BW/BF16) when the CPU has it
 * (__builtin_cpu_supports), else portable C (same roundings of the
 * operands; float32 sums in another order, so the last bits may differ).
 * The packed products (below) also have an AMX-BF16 path, used when the
 * CPU and OS allow it (icl_bf16_amx): same operands, float32 sums in the
 * tile unit's order (see there), so its last bits differ from the others'.
 */
#ifndef ICL_BF16_H
#define ICL_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "linear.h"

/* 1 when this CPU runs the AVX512-BF16 kernels; 0: the portable ones. */
int icl_bf16_native(void);
/* 1 when the packed products (below) run on AMX-BF16 tiles (TDPBF16PS):
 * the CPU has AMX-BF16 and AMX-TILE and AVX512-BF16, the OS enables the
 * tile state (XCR0) and Linux grants it to this process (arch_prctl
 * ARCH_REQ_XCOMP_PERM, asked on the first call); 0 otherwise, or when the
 * environment has ICL_BF16_AMX=0 (read once).  Once granted, the kernel
 * saves the 8 KiB of tile data with each thread's state: every signal
 * frame of the process grows by about that much (sigaltstack users: size
 * their stacks for it; Linux's Documentation/arch/x86/xstate.rst). */
int icl_bf16_amx(void);
/* 1 when the AVX512-BF16 kernels run now: icl_bf16_native and the path
 * not forced portable (icl_bf16_force_path).  Attention's bf16 operands
 * (ops.h, icl_attn_shape.bf16) take vdpbf16ps then, where there is no AMX;
 * forced portable, the float32 kernels (icl_attention_bf16_kernels). */
int icl_bf16_native_active(void);
/* 1 when the packed products run on AMX-BF16 now: icl_bf16_amx and no
 * other path forced (icl_bf16_force_path).  Attention's bf16 operands
 * take AMX tiles only then, so a forced path gives the bits of a machine
 * that has only that path. */
int icl_bf16_amx_active(void);
/* "amx-bf16", "avx512bf16" or "portable (this CPU lacks AVX512-BF16)". */
const char *icl_bf16_path_name(void);
/* Code paths for icl_bf16_force_path: the best this machine has (AMX-BF16,
 * else AVX512-BF16, else portable), portable C, or AVX512-BF16 without AMX
 * (portable where the CPU lacks it). */
enum { ICL_BF16_BEST = 0, ICL_BF16_PORTABLE = 1, ICL_BF16_NO_AMX = 2 };
/* Use path (one of the above) from now on.  For tests and benchmarks; not
 * thread-safe. */
void icl_bf16_force_path(int path);
/* icl_bf16_force_path(force ? ICL_BF16_PORTABLE : ICL_BF16_BEST). */
void icl_bf16_force_portable(int force);
/* The AMX path's K blocks (see the packed products): a panel of more than
 * chunks x 32 rows of K is multiplied chunks x 32 at a time across the rows
 * of a work item, the sums kept in memory between blocks (the same bits as
 * unblocked).  chunks <= 0: the default, 64 (2048 k).  For tests; not
 * thread-safe. */
void icl_bf16_set_amx_kblock(int chunks);

/* out[i] = x[i] rounded to bf16 (as vcvtneps2bf16: nearest even, denormals
 * to zero; safetensors.h's icl_f32_to_bf16, for storage, keeps denormals). */
void icl_bf16_from_f32_row(const float *x, uint16_t *out, size_t n);
/* out[i] = the float32 value of bf16 h[i] (exact). */
void icl_bf16_to_f32_row(const uint16_t *h, float *out, size_t n);

/* y[M, N] (row stride ldy) = x[M, K] (row stride ldx) W^T + bias + beta y
 * (beta 0 overwrites, else adds), W bf16 [N, K] with row stride ldw (a
 * torch.nn.Linear weight), bias [N] float or NULL.  x is rounded to bf16
 * first.  W rows are split over nthreads OpenMP threads; y[m, n] is a dot
 * product over k in a fixed order that depends on K only, never on M, N,
 * the tiling or the thread count.  Returns 0, or -1 when memory for the
 * rounded x (M x K bf16) cannot be allocated (y untouched). */
int icl_bf16_gemm(int M, int N, int K, const float *x, long ldx, const uint16_t *W, long ldw, const float *bias,
                  float *y, long ldy, float beta, int nthreads);

/* ---- Packed products: the GEMM path of inference and training.
 *
 * A packed operand holds a logical B [K, N] in bf16 for y = x B: panels of
 * 64 columns, each panel (K + 1) / 2 pairs of rows, a pair being 64 32-bit
 * words (B[2p, n], B[2p + 1, n]) (oneDNN's "VNNI" layout for vdpbf16ps),
 * zero beyond K and N.  A micro-tile of 6 rows of x by one panel keeps 24
 * float32 accumulators of 16 lanes in registers; each broadcast pair of x
 * meets 4 vectors of the panel.  Every y[m, n] is the sum over the pairs p
 * in order, acc = dp(acc, x pair p, B pair p), starting from 0, then
 * + bias, then + beta y: the same operations whatever M, N, the tiling and
 * the thread count (so results are batch-invariant: row m of y depends on
 * row m of x only).  One vdpbf16ps lane adds the odd product, then the even
 * one, each rounded once (products of bf16 are exact), flushing denormal
 * sums to zero; the portable path does exactly that (fmaf), so both paths
 * give the same bits (up to sums that round to the smallest normal float).
 * Error bound per output: the one at the top of this file.
 *
 * The AMX-BF16 path (icl_bf16_amx) computes 32 rows of x by 32 columns
 * of a panel at a time in four 16 x 16 float32 tiles (16 rows by the whole
 * panel for the last rows of a block); every y[m, n] is, starting from a
 * zero tile, one TDPBF16PS per chunk of 32 k (16 pairs) in k order, the
 * last chunk zero-padded (zero columns of x, zero pairs of B; a K over
 * 2048 goes in blocks of 2048 across the rows of a work item, the sums
 * stored to memory and loaded back between blocks, exactly), then
 * + bias, then + beta y as above: the same operands and operations for
 * each output whatever M, N, the tiling and the thread count, so results
 * stay batch-invariant and thread-count independent.  Inside one
 * TDPBF16PS the unit adds 32 exact products to the accumulator in an
 * order and with internal roundings Intel does not specify bit for bit
 * (the SDM's pseudocode: pair by pair, RNE, denormals flushed); measured
 * on this project's Xeon (2026-12): a chunk of one pair is the exact pair
 * sum rounded once, a full chunk matches no pair-by-pair order bit for
 * bit, and its error stays within about 5 float32 roundings of the sum of
 * |products|, inside the bound above (K 2^-24 sum |x^_k b^_k| for the
 * sums), which the tests assert on this path too.  So its bits differ
 * from the AVX512-BF16 path's in the last places, never between runs,
 * shapes or thread counts. */

/* uint16 elements of a packed B [K, N] (0 when K or N < 1). */
size_t icl_bf16_packed_size(int K, int N);

/* P (icl_bf16_packed_size(K, N) elements) = B [K, N] rounded to bf16 and
 * packed, from float32: element (k, n) is B[n ldb + k] when kn is 0 (rows
 * of K: a torch.nn.Linear weight W [out, in] is B = W^T for y = x W^T,
 * K = in, N = out) or B[k ldb + n] when kn is 1 (rows of N: the same W as
 * B for dx = dy W, K = out, N = in).  Panels split over nthreads OpenMP
 * threads.  Returns 0, or -1 when a row buffer (kn 0: 64 x K bf16 per
 * thread) cannot be allocated (P then partly written). */
int icl_bf16_pack(const float *B, long ldb, int kn, int K, int N, uint16_t *P, int nthreads);

/* The rows of room a low-rank term of ke rows takes in the packs of a
 * weight [out, in] (both its products): ke rounded up to 32 when in and
 * out are multiples of 32 (a rounded row of activations then stays whole
 * 64-byte lines, as the AMX tile loads want them), else ke.  model.c's
 * packs and qlinear.c's per-product panels both take it, so that their
 * sums agree. */
int icl_bf16_room(int in, int out, int ke);

/* icl_bf16_pack into panels of K + kx rows (kx >= 0; K even when kx > 0,
 * else -1), the kx rows after the K rows of B zero: room for
 * icl_bf16_pack_rows.  P: icl_bf16_packed_size(K + kx, N) elements. */
int icl_bf16_pack_ext(const float *B, long ldb, int kn, int K, int kx, int N, uint16_t *P, int nthreads);

/* Overwrites rows k0 .. k0+ke-1 (k0 even) of the packed B [Kt, N] at P
 * (panels of Kt rows, as icl_bf16_pack_ext made it) with E [ke, N] (row
 * stride lde) rounded to bf16; an odd ke also zeroes row k0 + ke (its
 * pair's partner), which must lie below Kt rounded up to even.  One
 * thread; O(ke N). */
void icl_bf16_pack_rows(const float *E, long lde, int k0, int ke, int Kt, int N, uint16_t *P);

/* y = [x | xe | 0] P + bias + beta y: icl_bf16_gemm_packed over K + kx
 * rows of K, P packed with K + kx rows (icl_bf16_pack_ext), x [M, K]
 * (row stride ldx, K even) and xe [M, ke] (row stride ldxe, ke <= kx;
 * NULL when ke is 0) rounded to bf16 side by side into one row, the last
 * kx - ke columns zero.  So y[m, n] is one sum over the K + kx pairs
 * in order, as icl_bf16_gemm_packed's over K + kx: a low-rank term folded
 * into the product (icl_linear's adapters: y = x W^T + xa (s B)^T with
 * y read and written once).  kx 0 is icl_bf16_gemm_packed.  Returns 0, or
 * -1 when the rounded operand cannot be allocated, K is odd with kx > 0,
 * ke > kx or xe is NULL with ke > 0 (y untouched). */
int icl_bf16_gemm_packed_ext(int M, int N, int K, const float *x, long ldx, const float *xe, long ldxe, int ke,
                             int kx, const uint16_t *P, const float *bias, float *y, long ldy, float beta,
                             int nthreads);

/* y[M, N] (row stride ldy) = x[M, K] (row stride ldx) B + bias + beta y
 * (beta 0 overwrites, else adds), B packed by icl_bf16_pack with this K and
 * N, bias [N] or NULL; x rounded to bf16 first (into a scratch block kept
 * between calls, see icl_bf16_release_scratch).  Work split over nthreads
 * threads; results as described above.  Returns 0, or -1 when the rounded
 * x (M x K bf16) cannot be allocated (y untouched). */
int icl_bf16_gemm_packed(int M, int N, int K, const float *x, long ldx, const uint16_t *P, const float *bias,
                         float *y, long ldy, float beta, int nthreads);

/* Weight gradients: c[M, N] += a^T b over T rows, a [T, M] (row stride lda)
 * and b [T, N] (row stride ldb) float32, both rounded to bf16 (a^T
 * transposed while rounding, b packed as B [T, N]), float32 sums over t in
 * order as above, then added to c.  ctrans 1 stores c transposed: element
 * (i, j) at c[j ldc + i] (so dW [out, in] += dy^T x can round the narrower
 * of dy and x transposed).  Returns 0, or -1 when the rounded operands
 * ((M + 64) x T bf16) cannot be allocated (c untouched). */
int icl_bf16_gemm_tn(int M, int N, int T, const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                     int ctrans, int nthreads);

/* ---- Products with B packed on demand: the QLoRA path (lib/qlinear.c
 * dequantizes GGUF blocks straight into panels, so B is never whole).
 *
 * ICL_BF16_PANEL is the panel width above (64 columns); a packed B [K, N]
 * is ceil(N / 64) panels of icl_bf16_packed_size(K, 64) elements each,
 * panel j holding columns 64 j .. 64 j + 63. */
#define ICL_BF16_PANEL 64

/* One panel of a packed B from float32, as icl_bf16_pack would write it:
 * dst (icl_bf16_packed_size(K, 64) elements) = columns 0 .. nc-1 (nc <= 64)
 * of B [K, nc] rounded to bf16, zero beyond K and nc; element (k, n) is
 * B[n ldb + k] when kn is 0 (tmp: 64 x (K rounded up to even) bf16 of
 * scratch) or B[k ldb + n] when kn is 1 (tmp unused, may be NULL).  A
 * panel of K rows can also be written in pieces: rows k0 .. k0+k-1, k0
 * even, land at dst + k0 * 64 (pairs of rows are 64 consecutive 32-bit
 * words). */
void icl_bf16_pack_panel(const float *B, long ldb, int kn, int K, int nc, uint16_t *dst, uint16_t *tmp);

/* Writes np consecutive panels (panels jp .. jp+np-1 of a packed B
 * [K, N], the last one possibly partial) at dst, laid out as in a whole
 * packed B (panel jp + i at dst + i icl_bf16_packed_size(K, 64)); work:
 * the caller's work_bytes of scratch, private to the calling thread.  Runs
 * inside an OpenMP team: must not start one of its own. */
typedef void (*icl_bf16_fill_fn)(void *ctx, int jp, int np, uint16_t *dst, void *work);

/* y[M, N] = x[M, K] B + bias + beta y, as icl_bf16_gemm_packed, with the
 * panels of B made by fill, group panels at a time (the last group may be
 * shorter), each by the thread that multiplies with it, into that thread's
 * scratch: work is split in items of (group, 96 rows of x) in group-major
 * order, statically over nthreads threads, so a group is filled by one
 * thread or by two neighbours (then twice).  Every y[m, n] is the same sum
 * as icl_bf16_gemm_packed's with the packed B that fill describes: the
 * same bits.  Scratch: the rounded x (M x K bf16) plus, per thread, group
 * panels and work_bytes, in the block icl_bf16_release_scratch frees.
 * Returns 0, or -1 when that memory cannot be had (y untouched). */
int icl_bf16_gemm_fill(int M, int N, int K, const float *x, long ldx, icl_bf16_fill_fn fill, void *ctx, int group,
                       size_t work_bytes, const float *bias, float *y, long ldy, float beta, int nthreads);

/* icl_bf16_gemm_fill with kx rows of room after B's K (K even when kx >
 * 0): x's rows rounded beside xe's ([x | xe | 0], xe [M, ke], ke <= kx,
 * row stride ldxe) and each panel's rows after K taken from Pe, a packed
 * [kx, N] (icl_bf16_pack, kn 1: the low-rank term's rows, zero where
 * unused): y = [x | xe] [B; E] + bias + beta y in one product, each sum
 * over B's k and then E's, as icl_bf16_gemm_packed_ext's.  kx 0 is
 * icl_bf16_gemm_fill.  Returns 0, or -1 on bad arguments or when memory
 * cannot be had (y untouched). */
int icl_bf16_gemm_fill_ext(int M, int N, int K, const float *x, long ldx, const float *xe, long ldxe, int ke, int kx,
                           const uint16_t *Pe, icl_bf16_fill_fn fill, void *ctx, int group, size_t work_bytes,
                           const float *bias, float *y, long ldy, float beta, int nthreads);

/* Frees the scratch block the packed products keep between calls (it is
 * reused, never freed otherwise; a later product allocates it again). */
void icl_bf16_release_scratch(void);

/* A weight for ICL_WEIGHT_BF16 (icl_weight.data points to one): the weight
 * W [out, in] packed twice, as B = W^T for the forward (K = in, N = out)
 * and as B = W for the input gradient (K = out, N = in; NULL when no input
 * gradient is wanted).  Not owned. */
typedef struct {
    const uint16_t *fwd, *bwd;
    /* kx > 0: both packs hold kx more rows of K after the weight's (fwd:
     * K = in + kx, bwd: K = out + kx; icl_bf16_pack_ext), which
     * icl_linear's adapters fill before each product (their up matrices,
     * scaled, in fwd; their down matrices in bwd) so that one product
     * adds the adapters' updates (linear.c); the plain products below
     * multiply them by zero columns of x.  0: the weight alone. */
    int kx;
} icl_bf16_weight;

/* The ICL_WEIGHT_BF16 row of linear.c's kernel table: icl_weight.data is an
 * icl_bf16_weight.  Forward (GEMM on the global thread count, rows on the
 * count given) y = x W^T through icl_bf16_gemm_packed_ext with fwd (its
 * room, kx, multiplied by zero columns); input gradient dx = dy W with bwd;
 * weight gradient dW += dy^T x through icl_bf16_gemm_tn into
 * icl_weight.grad, float32 in the storage layout of the master weight
 * ([out, in], or [in, out] when icl_weight.conv1d); room: kx (0 for the
 * input gradient without bwd; the same for decoding, whose rows kernel is
 * this product too); lowrank: E rounded into the room rows of fwd
 * or bwd (icl_bf16_pack_rows: it writes the packs, which are not const
 * then: one product at a time per weight), then one
 * icl_bf16_gemm_packed_ext.  If scratch memory cannot be had the outputs
 * are set to NaN (the loss then stops a run). */
extern const icl_weight_ops icl_bf16_weight_ops;

#endif
