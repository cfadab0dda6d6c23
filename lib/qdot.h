/* qdot.h - dot products of quantized GGUF weight rows with activations
 * quantized to 8 bits, for decoding straight from quantized weights.
 *
 * The scheme is llama.cpp's (ggml-quants.c / ggml-cpu vec_dot_*_q8_*): an
 * activation row is quantized per block of 32 values to int8 with one
 * scale, the products of each 32-value block are summed in integers, and
 * only the per-block sums are scaled and added in float32.  icl's
 * activation block (icl_q8blk) keeps its scale in float32 (ggml's block_q8_0
 * / block_q8_1 store fp16) and, for every weight type, blocks of 32 (ggml
 * pairs the K-quants with 256-value block_q8_K), so its error is at most
 * ggml's.
 *
 * Weight blocks (ggml-common.h; d, dmin and m are IEEE fp16, little-endian):
 *   Q8_0 (type 8)   32 values, 34 bytes:  d, int8 qs[32]            w = d*q
 *   Q4_0 (type 2)   32 values, 18 bytes:  d, qs[16]   w[j] = d*((qs[j]&15)-8),
 *                                                      w[j+16] = d*((qs[j]>>4)-8)
 *   Q4_1 (type 3)   32 values, 20 bytes:  d, m, qs[16]   w = d*q + m (q as Q4_0, no -8)
 *   Q4_K (type 12) 256 values, 144 bytes: d, dmin, scales[12] (8 6-bit scales sc
 *                  and mins mn, packed as ggml's get_scale_min_k4), qs[128];
 *                  values 64c..64c+31 are the low nibbles of qs[32c..32c+31]
 *                  (sub-block 2c), 64c+32..64c+63 the high ones (2c+1);
 *                  w = (d*sc)*q - (dmin*mn)
 *   Q5_K (type 13) 256 values, 176 bytes: d, dmin, scales[12], qh[32], qs[128]:
 *                  as Q4_K, q += 16 where bit 2c (low) / 2c+1 (high) of qh[l] is set
 *   Q6_K (type 14) 256 values, 210 bytes: ql[128], qh[64], int8 scales[16], d:
 *                  per half h (128 values) and l < 32, q-32 with q =
 *                  ql[64h+l]&15 | (qh[32h+l]&3)<<4 at 128h+l, ql[64h+l+32]&15 |
 *                  (qh>>2&3)<<4 at +32, ql[64h+l]>>4 | (qh>>4&3)<<4 at +64,
 *                  ql[64h+l+32]>>4 | (qh>>6&3)<<4 at +96; a scale per 16 values
 *                  (scales[8h + l/16 + 2i] for the i-th 32 of the half); w = d*sc*(q-32)
 * (the same formulas as quant.c's dequantization, DESIGN.md "GGUF facts").
 *
 * The float order of a dot product is fixed, the same in every code path
 * (scalar, AVX2, AVX-512 VNNI), so all paths give bit-identical results:
 * the 32 products of activation block b are summed in 8 integer lanes of
 * 4 consecutive products (lane l: values 4l..4l+3; Q6_K multiplies each
 * lane by its 16-value scale, still in integers); each lane is converted
 * to float and added with one fused multiply-add, acc[8*(b%2) + l] +=
 * lane * scale_b, into 16 float accumulators; the result is the fixed tree
 * sum of the 16 (a[l] + a[8+l], then lanes l and l+4, l and l+2, 0 and 1)
 * plus the offset term sum_b fma(c_b, s_b) in block order (Q4_1: c = m;
 * Q4_K, Q5_K: c = -(dmin*mn); s_b = d_b * sum of the block's q).
 * scale_b = d_w * d_a for Q8_0/Q4_0/Q4_1, (d*sc)*d_a for Q4_K/Q5_K,
 * d*d_a for Q6_K.
 */
#ifndef ICL_QDOT_H
#define ICL_QDOT_H

#include <stddef.h>
#include <stdint.h>

#define ICL_QK8 32 /* values per activation block */

/* One block of 32 quantized activations: x[k] ~ d * q[k], d = max|x| / 127,
 * q = roundf(x / d) in [-127, 127] (ggml's quantize_row_q8_0 with a float32
 * d); sum16[i] = q[16i] + ... + q[16i+15]; s = d * (sum16[0] + sum16[1])
 * (ggml's block_q8_1 s). */
typedef struct {
    float d, s;
    int16_t sum16[2];
    int8_t q[ICL_QK8];
} icl_q8blk;

/* Quantize x[0..n) (n a multiple of 32) into n / 32 blocks.  Non-finite
 * inputs give non-finite d (garbage in, NaN out, never a crash). */
void icl_q8_quantize_row(const float *x, int n, icl_q8blk *out);

/* 1 when icl_qdot / icl_qmatvec handle ggml type qtype (Q8_0, Q4_0, Q4_1,
 * Q4_K, Q5_K, Q6_K). */
int icl_qdot_supported(int qtype);

/* 0 when rows of in values of type qtype can be multiplied (qtype
 * supported, in > 0 and a multiple of the type's block: 32, or 256 for the
 * K-quants); -1 with err ("Q4_K rows of 576 values: not a multiple of its
 * 256-value block") otherwise. */
int icl_qdot_check(int qtype, int in, char *err, size_t errsz);

/* dot(row, x) for one weight row of in values of type qtype (icl_ggml_row_size
 * bytes) and its in / 32 activation blocks, in the fixed order above.
 * Preconditions: icl_qdot_check(qtype, in) == 0 (not checked here). */
float icl_qdot(int qtype, const void *row, const icl_q8blk *x, int in);

/* y[N, out] (row stride ldy) = x[N, in] (row stride ldx) W^T + bias, plus
 * beta * y (beta 0 overwrites y, else adds: the residual), for a weight
 * W [out, in] stored as out rows of icl_ggml_row_size(qtype, in) bytes
 * (a GGUF tensor with ne = {in, out}).  bias [out] or NULL.  The rows of x
 * are quantized to icl_q8blk first; output rows are split over nthreads
 * OpenMP threads (weight rows in blocks of 16, each read once for up to 8
 * rows of x).  y's row i depends only on row i of x: never on N nor on the
 * thread count; every code path gives the same bits.  Returns 0, or -1
 * (nothing written) when icl_qdot_check fails or memory for the N x in / 32
 * activation blocks cannot be allocated. */
int icl_qmatvec(int qtype, const void *W, int out, int in, const float *x, long ldx, int N, float *y, long ldy,
                float beta, const float *bias, int nthreads);

/* Code paths, chosen at run time from the CPU (__builtin_cpu_supports). */
typedef enum {
    ICL_QDOT_SCALAR = 0, /* portable C */
    ICL_QDOT_AVX2 = 1,   /* AVX2 + FMA (vpmaddubsw + vpmaddwd) */
    ICL_QDOT_VNNI = 2,   /* AVX-512 VL + VNNI (vpdpbusd; 256-bit registers for one row of x, 512-bit
                            registers holding two rows for icl_qmatvec's batches of 2 to 8) */
} icl_qdot_path;

/* The path in use ("scalar", "avx2", "avx512vnni"). */
const char *icl_qdot_path_name(void);
/* Use path p from now on (tests compare paths); -1 when this CPU cannot run
 * it.  Not thread-safe: call it while no product runs. */
int icl_qdot_select(icl_qdot_path p);

#endif
