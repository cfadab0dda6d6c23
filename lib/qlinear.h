/* qlinear.h - kernels of quantized-block weights (ICL_WEIGHT_QBLOCK), the
 * QLoRA base (Dettmers et al., "QLoRA: Efficient Finetuning of Quantized
 * LLMs", 2023).  Internal to lib/: linear.c puts icl_qblock_ops and
 * icl_qblock_bf16_ops in its table; everyone else reaches them through
 * icl_weight_kernels(ICL_WEIGHT_QBLOCK) and (ICL_WEIGHT_QBLOCK_BF16).
 *
 * A QBLOCK icl_weight holds W [out, in] as out rows of in / blck GGUF blocks
 * each (ggml's layout: row r at byte r * icl_ggml_row_size(qtype, in)); qtype
 * is any ggml type quant.c dequantizes whose block holds more than one value
 * (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K); in is a multiple of the
 * block size (icl_qblock_check).  conv1d is 0 and grad NULL: a quantized
 * base is frozen (weight_grad is NULL).
 *
 * Every kernel but the int8 decoding path dequantizes tiles of rows of W (quant.c, bit-identical to
 * ggml's dequantize_row_*) into a float32 buffer and runs the float32
 * kernel on the tile, so W is never whole in float32:
 *   gemm_forward  y[:, tile] = x W_tile^T + beta y[:, tile]   (BLIS)
 *   input_grad    dx = sum over tiles dy[:, tile] W_tile (+ beta dx), tiles
 *                 in order (the first with beta, the rest accumulating)
 *   rows_forward  decoding: icl_qmatvec (qdot.h: int8 activations) where
 *                 it has the type and icl_linear_set_qdot is on; else the
 *                 float32 rows kernel on each tile: row i of y then is
 *                 bit-identical to the float32 rows kernel's on the
 *                 dequantized W.  Either way row i is independent of N and
 *                 the thread count
 *   dequantize_row  one row of W.
 * A tile is about 1 Mi floats (4 MiB) of rows, a multiple of 16 rows.  The
 * tile buffer belongs to the calling thread, is allocated the first time a
 * thread needs one that large (at least 4 MiB, on transparent huge pages
 * where the kernel allows: icl_xcalloc_huge) and then reused (no
 * allocation per call once it has grown); icl_qblock_scratch_free releases
 * it.  Results are bit-identical for the same inputs and thread count.
 *
 * ICL_WEIGHT_QBLOCK_BF16 (icl_qblock_bf16_ops, `--dtype bf16` with a
 * quantized base): the same blocks on the bf16 path of bf16.h.  The
 * products are bf16.h's packed ones (icl_bf16_gemm_fill) whose panels of
 * 64 columns are dequantized from the blocks straight into the packed bf16
 * layout by the thread that uses them (to_float, then rounded as
 * icl_bf16_pack rounds), so neither a float32 nor a bf16 copy of W exists,
 * only a few panels per thread (64 x K bf16 each) and the rounded
 * activations:
 *   gemm_forward  y = x W^T + beta y, B = W^T (64 rows of W per panel)
 *   input_grad    dx = dy W + beta dx, B = W (64 columns of every row per
 *                 panel; whole blocks: 256-value blocks fill 4 panels at once)
 *   rows_forward  decoding: icl_qmatvec as QBLOCK's when qdot is on and has
 *                 the type, else the bf16 product with the bias
 *   dequantize_row  as QBLOCK's (float32: the token embedding's rows)
 *   room, lowrank  adapters folded into the product (linear.h): any number
 *                 of rows after an even K (none when decoding: the rows
 *                 kernel above), E's rows packed per call and
 *                 placed after each panel's (icl_bf16_gemm_fill_ext), as
 *                 many as model.c's bf16 packs keep for the same adapters.
 * Each output is bit-identical to the ICL_WEIGHT_BF16 kernel's on the
 * dequantized W rounded by icl_bf16_pack (the dequantized model under
 * icl_model_set_bf16), on either bf16 code path, whatever the thread count;
 * with adapters, when that model's packs have room for them (attached
 * before icl_model_set_bf16, in and out even), as both then fold them.
 * If scratch memory cannot be had the outputs are NaN (as BF16's). */
#ifndef ICL_QLINEAR_H
#define ICL_QLINEAR_H

#include <stddef.h>

#include "linear.h"

extern const icl_weight_ops icl_qblock_ops;
extern const icl_weight_ops icl_qblock_bf16_ops;

/* Can a QBLOCK weight of ggml type qtype have rows of in values?  0 yes; -1
 * with err (a type icl cannot dequantize, a float type, or in not a
 * multiple of its block). */
int icl_qblock_check(int qtype, int in, char *err, size_t errsz);

/* Bytes of one row of in values of qtype (0 when icl_qblock_check fails). */
size_t icl_qblock_row_bytes(int qtype, int in);

/* Free the calling thread's tile buffer (the next kernel call allocates
 * it again). */
void icl_qblock_scratch_free(void);

#endif
