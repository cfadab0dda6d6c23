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
 */
#ifndef ICL_BF16_H
#define ICL_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "linear.h"

/* 1 when this CPU runs the AVX512-BF16 kernels; 0: the portable ones. */
int icl_bf16_native(void);
/* "avx512bf16" or "portable (this CPU lacks AVX512-BF16)". */
const char *icl_bf16_path_name(void);
/* Use the portable path even on a capable CPU (force 1), or the best one
 * (0).  For tests; not thread-safe. */
void icl_bf16_force_portable(int force);

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

/* The ICL_WEIGHT_BF16 row of linear.c's kernel table: weights bf16
 * [out, in] (icl_weight.data), forward products through icl_bf16_gemm (GEMM
 * on the global thread count, rows on the count given); no gradients
 * (input_grad and weight_grad NULL: inference only).  If the rounded
 * activations cannot be allocated the output rows are set to NaN. */
extern const icl_weight_ops icl_bf16_weight_ops;

#endif
