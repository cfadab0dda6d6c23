/* quant.h - ggml tensor types to float32 and back.
 *
 * Dequantization of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
 * Q4_K, Q5_K and Q6_K exactly as ggml's reference dequantize_row_* in
 * ggml-quants.c (same float32 operations in the same order, no fused
 * multiply-add), so the floats are bit-identical to ggml's and to the `gguf`
 * Python package's gguf.quants.dequantize (tests/unit/test_quant.c against
 * fixtures made by tests/data/gguf/make_quant_fixtures.py).
 *
 * Quantization (for export) to F32, F16, BF16, Q8_0, Q4_0 and Q4_1 as ggml's
 * quantize_row_*_ref (bit-identical to gguf.quants.quantize): Q8_0 d =
 * max|x| / 127, q = roundf(x / d); Q4_0 d = x_absmax_signed / -8,
 * q = min(15, trunc(x / d + 8.5)); Q4_1 d = (max - min) / 15, m = min,
 * q = min(15, trunc((x - min) / d + 0.5)); F16 and BF16 round to nearest even
 * (BF16 NaNs quieted as ggml does).
 *
 * Block layouts: see DESIGN.md "GGUF facts" and ggml-common.h.  n (values)
 * is always a multiple of the type's block size (icl_ggml_blck_size).
 */
#ifndef ICL_QUANT_H
#define ICL_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* src holds n / blck blocks; dst gets n floats. */
typedef void (*icl_to_float_fn)(const void *src, float *dst, int64_t n);
/* src holds n floats; dst gets n / blck blocks. */
typedef void (*icl_from_float_fn)(const float *src, void *dst, int64_t n);

typedef struct {
    uint32_t type;              /* ggml type id */
    const char *name;           /* "Q4_K" */
    int blck;                   /* values per block */
    size_t size;                /* bytes per block */
    icl_to_float_fn to_float;   /* NULL: icl cannot dequantize this type */
    icl_from_float_fn from_float; /* NULL: icl does not quantize to this type */
} icl_quant_traits;

/* Traits of a ggml type id, or NULL for an id ggml does not define. */
const icl_quant_traits *icl_quant_traits_of(uint32_t type);

/* Dequantize nbytes of type at src into n floats (n a multiple of the block
 * size, nbytes exactly the size of n values).  what names the tensor in
 * messages.  0 ok; -1 with err ("blk.0.attn_q.weight: ggml type IQ2_XXS (16)
 * cannot be dequantized by icl" / size mismatch). */
int icl_dequantize(uint32_t type, const void *src, size_t nbytes, float *dst, int64_t n, const char *what, char *err,
                   size_t errsz);
/* Quantize n floats into dst (dstsz bytes, exactly the size of n values of
 * type) for the types with a from_float, as gguf.quants.quantize does (a
 * value beyond F16's range becomes inf there too).  0 ok, -1 with err. */
int icl_quantize(uint32_t type, const float *src, int64_t n, void *dst, size_t dstsz, const char *what, char *err,
                 size_t errsz);

/* Before writing n floats as type: the F16 values they would need (F16's
 * own, or a Q8_0/Q4_0/Q4_1 block's scale, and Q4_1's minimum) must be
 * finite; one of 65520 or more rounds to infinity (IEEE half's largest
 * finite is 65504).  0, or -1 with err naming what and the magnitude.
 * Values that are not finite already are the source's, not checked. */
int icl_quant_check_range(uint32_t type, const float *x, int64_t n, const char *what, char *err, size_t errsz);

/* IEEE half from float, rounding to nearest even (ggml's FP32_TO_FP16). */
uint16_t icl_f32_to_f16(float f);

#endif
