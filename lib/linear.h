/* linear.h - the one place a weight matrix meets activations.
 *
 * Every matrix product of the model with a weight goes through
 * icl_linear_forward / icl_linear_backward.  A weight (icl_weight) knows its
 * storage type, and the kernels of each type sit in one table
 * (icl_weight_kernels): float32 (BLIS sgemm with explicit strides for
 * many rows, a batch-invariant small-batch kernel for decoding) and GGUF
 * quantized blocks (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, ...: a frozen QLoRA
 * base, dequantized tile by tile inside the products, lib/qlinear.c);
 * bfloat16 gets its own row in that table, and so do quantized blocks on
 * the bfloat16 path, so no call site branches on a type.
 *
 * Conventions (torch.nn.Linear): a weight is logically W [out, in] and
 * y = x W^T + b.  Activations are row-major: x [N, in] with row stride ldx,
 * y [N, out] with row stride ldy.  GPT-2's Conv1D stores W^T, i.e. [in, out]
 * (icl_weight.conv1d = 1, float32 only).
 *
 * Low-rank adapters (LoRA: Hu et al., "LoRA: Low-Rank Adaptation of Large
 * Language Models", 2021; names as PEFT's lora_A / lora_B): a linear may
 * carry adapters, each adding scale * (x A^T) B^T to a block of output
 * columns, A [r, in], B [out, r], scale = lora_alpha / r as PEFT's default.
 * Several adapters on one linear cover a fused product (Llama's q|k|v
 * stacked weight: q_proj and v_proj adapters at their column offsets).
 * PEFT's lora_dropout: an adapter with dropout p > 0 sees dropout(x) =
 * x * keep / (1 - p) (inverted dropout, as torch.nn.Dropout in training),
 * the base product x undropped: y = x W^T + b + scale (dropout(x) A^T) B^T,
 * as PEFT's lora.Linear.forward.  keep is a function of (key, element):
 * element (i, j) of x [N, in] is dropped when the top 32 bits of a
 * splitmix64 hash of (key, i in + j) are below p 2^32, so the backward
 * (which applies the same mask to dx) and any recomputation reproduce it
 * without storing it, whatever the thread count.
 *
 * Backward ACCUMULATES (+=) into weight, bias and adapter gradients, and
 * OVERWRITES (beta_dx 0) or accumulates (1) the input gradient.  A NULL
 * gradient pointer means frozen: nothing is computed for it.
 *
 * Threads: GEMM kernels and the adapters' kernels use the global setting
 * (icl_set_threads); the rows kernel the count it is given.  Results are
 * bit-identical for the same inputs and thread count; the rows kernel's
 * row i depends only on row i of x (never on N nor on the thread count),
 * and the adapters' products (x A^T, dy B, dA, dB and the rank-r updates
 * of y and dx: own kernels, linear.c) never depend on the thread count.
 */
#ifndef ICL_LINEAR_H
#define ICL_LINEAR_H

#include <stddef.h>
#include <stdint.h>

/* Storage types of weights (icl_weight_kernels returns NULL for a type
 * without kernels). */
typedef enum {
    ICL_WEIGHT_F32 = 0, /* float32, row-major [out, in] (or [in, out] when conv1d) */
    ICL_WEIGHT_BF16,    /* bfloat16, packed for vdpbf16ps: data is an icl_bf16_weight
                         * (bf16.h); the float32 master and its gradient stay
                         * in the storage layout (conv1d as for F32) */
    ICL_WEIGHT_QBLOCK,  /* quantized blocks along in (GGUF types; qtype says which):
                         * out rows of in / blck blocks, ggml's layout; frozen
                         * (no weight_grad); see qlinear.h */
    ICL_WEIGHT_QBLOCK_BF16, /* the same blocks (data, qtype as QBLOCK) on the bf16
                             * path (`--dtype bf16` QLoRA): panels dequantized
                             * straight to packed bf16 inside the products; see
                             * qlinear.h */
    ICL_WEIGHT_NTYPES
} icl_weight_type;

typedef struct {
    icl_weight_type type;
    int qtype;        /* QBLOCK, QBLOCK_BF16: the GGUF ggml_type id; else 0 */
    int out, in;      /* logical shape [out, in] */
    int conv1d;       /* F32, BF16: 1 when stored [in, out] (GPT-2 Conv1D); QBLOCK*: 0 */
    const void *data; /* the storage, not owned */
    float *grad;      /* F32, BF16: float32 dW in the storage layout (+=); NULL = frozen */
} icl_weight;

/* Which forward kernel: GEMM (BLIS; training, evaluation, prefill) or ROWS
 * (decoding a few rows: each weight row read once for all rows of x, row
 * results independent of the batch; sums in a fixed order over in). */
typedef enum { ICL_LIN_GEMM = 0, ICL_LIN_ROWS = 1 } icl_lin_kernel;

/* The kernels of one storage type.  Entries a type cannot do are NULL
 * (weight_grad for a type that is never trained). */
typedef struct {
    const char *name;
    /* y[N, out] = x[N, in] W^T + beta * y (beta 0 or 1); no bias. */
    void (*gemm_forward)(const icl_weight *w, float *y, long ldy, const float *x, long ldx, int N, float beta);
    /* y[N, out] = (x W^T + bias) + beta * y on nthreads threads; bias may be NULL. */
    void (*rows_forward)(const icl_weight *w, const float *bias, float *y, long ldy, const float *x, long ldx, int N,
                         float beta, int nthreads);
    /* dx[N, in] = dy[N, out] W + beta * dx (beta 0 or 1). */
    void (*input_grad)(const icl_weight *w, float *dx, long lddx, float beta, const float *dy, long lddy, int N);
    /* dW += dy^T x into w->grad (storage layout). */
    void (*weight_grad)(const icl_weight *w, const float *dy, long lddy, const float *x, long ldx, int N);
    /* out[in] = row r of the logical W as float32. */
    void (*dequantize_row)(const icl_weight *w, int r, float *out);
    /* Optional (NULL: never): a low-rank term folded into the product.
     * room: how many more rows of K the product can take (0: none; fwd 1
     * the forward's GEMM kernel, 2 its ROWS kernel (decoding), 0 the input
     * gradient).  lowrank, for ke <= room: fwd 1 (or 2),
     * y[N, out] = [x | xe] [W^T; E] + beta y, E [ke, out]; fwd 0,
     * y[N, in] = [x | xe] [W; E] + beta y (x then dy, [N, out]), E
     * [ke, in]; xe [N, ke] (row stride ke) and E float32 row-major, each
     * sum over W's k and then E's in the type's order (bf16: rounded as
     * the other operands).  NaN outputs when scratch cannot be had. */
    int (*room)(const icl_weight *w, int fwd);
    void (*lowrank)(const icl_weight *w, int fwd, float *y, long ldy, const float *x, long ldx, int N, float beta,
                    const float *xe, int ke, const float *E);
} icl_weight_ops;

/* The kernel table of a storage type, or NULL when it has none. */
const icl_weight_ops *icl_weight_kernels(icl_weight_type t);

/* Decoding (ICL_LIN_ROWS) with quantized-block weights: on (1, the default)
 * runs the blocks' integer dot products with the activations quantized per
 * 32 values to int8 (qdot.h: icl_qmatvec, as llama.cpp's vec_dot with q8
 * activations); off (0) runs the float32 rows kernel on dequantized tiles
 * (exact weights and activations: bit-identical to decoding the dequantized
 * float32 model).  GEMM products (training, evaluation, prefill) are always
 * exact.  Process-wide; change it only while no product runs.  Returns the
 * previous setting. */
int icl_linear_set_qdot(int on);

/* One low-rank adapter on a linear: y[:, out_off : out_off+out] +=
 * scale * (dropout(x) A^T) B^T.  A [r, in] and B [out, r] row-major (PEFT's
 * lora_A.weight and lora_B.weight); dA, dB their gradients (+=) or NULL
 * (frozen).  dropout in [0, 1) with the mask's key (see the top of this
 * file); 0: dropout(x) = x.  A, B, dA, dB not owned.  At, Bt: NULL, or A
 * and B laid out for the products by icl_lora_pack, owned by the struct
 * it packed (icl_lora_unpack frees them); a copy of that struct shares
 * them and must be neither packed nor unpacked. */
typedef struct {
    int r, in, out, out_off;
    float scale;
    const float *A, *B;
    float *dA, *dB;
    float dropout;
    uint64_t key;
    const float *At, *Bt;
} icl_lora;

/* Lay out a's A and B once for the products (At: A^T [in, r rounded up to
 * 16], zero-padded; Bt: B^T [r, out]: in * up16(r) + r * out floats,
 * malloc'd into a, about the adapter's own size again) instead of at every
 * call, which costs as much as the product itself when N is a few rows
 * (decoding).  For adapters whose A and B no longer change (icl_lora_apply's,
 * frozen); whoever changes A, B, r, in or out afterwards must call it
 * again, or icl_lora_unpack.  a's At and Bt must be NULL or an earlier
 * icl_lora_pack's (they are freed first).  Products give the same bits
 * either way.  Dies only when memory runs out (util.h xmalloc). */
void icl_lora_pack(icl_lora *a);
/* Free a's At and Bt (icl_lora_pack) and set them NULL; NULL ones are fine. */
void icl_lora_unpack(icl_lora *a);

/* A linear map: weight, optional bias [out] and its gradient, and n_lora
 * adapters (may be 0).  xa: NULL, or storage of the adapters' down products
 * for one pass (icl_linear_xa_size floats): adapter i's dropout(x) A^T
 * [N, r_i], row-major, at xa + N (r_0 + ... + r_{i-1}).  The forward writes
 * it; the backward reads it instead of recomputing the product, so both
 * must be given the same x, N, adapters (and dropout keys) and the same
 * storage, with nothing writing it in between. */
typedef struct {
    icl_weight w;
    const float *b;
    float *db;
    const icl_lora *lora;
    int n_lora;
    float *xa;
} icl_linear;

/* Scratch floats icl_linear_forward / _backward need for N rows:
 * N (r_max + 2 r_sum) with adapters (r_sum: the sum of their ranks; the
 * second r_sum: their down products or t side by side, [N, r_sum], for
 * a bf16 weight with room for them), plus N in when one of them has
 * dropout; 0 without. */
size_t icl_linear_work(const icl_linear *l, int N);

/* Floats of icl_linear.xa for N rows: N r_sum (0 without adapters). */
size_t icl_linear_xa_size(const icl_linear *l, int N);

/* y[N, out] (row stride ldy) = x[N, in] (row stride ldx) W^T + b, plus the
 * adapters; beta 0 overwrites y, 1 adds (residual).  kernel and nthreads
 * choose the float32 path (nthreads is used by ICL_LIN_ROWS only).  work:
 * icl_linear_work(l, N) floats (NULL when that is 0).  A weight type whose
 * kernels take low-rank terms (icl_weight_ops.lowrank, with room for r_sum
 * rows: a bf16 weight packed with room, icl_bf16_weight.kx, with either
 * kernel; quantized blocks under bf16 with the GEMM kernel) takes the
 * adapters into its product: y = [x | xa] [W^T; s B^T], xa and s B rounded to bf16 like
 * x and W (a bf16 pack's room rows are rewritten from B on each call, so
 * products of one weight must not run at the same time); otherwise they
 * are added after it in float32. */
void icl_linear_forward(const icl_linear *l, float *y, long ldy, const float *x, long ldx, int N, float beta,
                        icl_lin_kernel kernel, int nthreads, float *work);

/* Gradients of y = x W^T + b + adapters, given dy [N, out] and the forward's
 * input x:  dx[N, in] = dy W (+ beta_dx * dx; dx NULL skips it, adapters
 * included) plus each adapter's scale (dy B) A;  dW += dy^T x when
 * w.grad;  db += column sums of dy when db;  dB += scale dy^T (x A^T) and
 * dA += scale (dy B)^T x when given.  With an adapter's dropout, x is
 * dropout(x) in its dA and dB and its part of dx is masked and scaled by
 * the same mask (keep / (1 - p)).  work as for the forward.  With a weight
 * type that takes them (as the forward; a bf16 weight needs its input-
 * gradient pack) and no dropout, dx = [dy | t] [W; A] in one product (t =
 * scale dy B, rounded to bf16); dA and dB are float32 in every case. */
void icl_linear_backward(const icl_linear *l, float *dx, long lddx, float beta_dx, const float *dy, long lddy,
                         const float *x, long ldx, int N, float *work);

#endif
