/* qlinear.c - quantized-block weights: dequantize a tile of rows, run the
 * float32 kernel on it.  See qlinear.h. */
#include "qlinear.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "gguf.h"
#include "qdot.h"
#include "quant.h"
#include "util.h"

/* Floats per tile (rows * in), about 4 MiB. */
#define TILE_FLOATS (1024 * 1024)

int icl_qblock_check(int qtype, int in, char *err, size_t errsz)
{
    const icl_quant_traits *q = qtype >= 0 ? icl_quant_traits_of((uint32_t)qtype) : NULL;
    if (!q || !q->to_float || q->blck < 2) {
        icl_seterr(err, errsz, "ggml type %s (%d) is not a quantized block type icl can compute with",
                   q ? q->name : "?", qtype);
        return -1;
    }
    if (in < 1 || in % q->blck) {
        icl_seterr(err, errsz, "rows of %d values are not a whole number of %s blocks of %d", in, q->name, q->blck);
        return -1;
    }
    return 0;
}

size_t icl_qblock_row_bytes(int qtype, int in)
{
    if (icl_qblock_check(qtype, in, NULL, 0))
        return 0;
    return icl_ggml_row_size((uint32_t)qtype, in);
}

/* The calling thread's tile buffer. */
static _Thread_local float *tile_buf;
static _Thread_local size_t tile_cap;

void icl_qblock_scratch_free(void)
{
    free(tile_buf);
    tile_buf = NULL;
    tile_cap = 0;
}

/* Rows per tile: a multiple of 16 (the rows kernel's block) near
 * TILE_FLOATS / in, at least 16, at most out. */
static int tile_rows(const icl_weight *w)
{
    long tr = TILE_FLOATS / (w->in > 0 ? w->in : 1);
    tr = tr / 16 * 16;
    if (tr < 16)
        tr = 16;
    return tr > w->out ? w->out : (int)tr;
}

static float *tile_get(const icl_weight *w, int tr)
{
    size_t need = (size_t)tr * (size_t)w->in;
    if (need > tile_cap) {
        free(tile_buf);
        tile_buf = xmalloc(need * sizeof(float));
        tile_cap = need;
    }
    return tile_buf;
}

/* dst[n, in] = rows r0 .. r0+n-1 of W, on nt threads (0: the team's
 * default) when the tile is large enough to pay for them. */
static void dequant_rows(const icl_weight *w, int r0, int n, float *dst, int nt)
{
    const icl_quant_traits *q = icl_quant_traits_of((uint32_t)w->qtype);
    size_t rb = icl_ggml_row_size((uint32_t)w->qtype, w->in);
    const uint8_t *src = (const uint8_t *)w->data + (size_t)r0 * rb;
    if (nt <= 0)
        nt = omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if ((long)n * w->in >= 65536)
    for (int i = 0; i < n; i++)
        q->to_float(src + (size_t)i * rb, dst + (size_t)i * w->in, w->in);
}

/* The float32 weight of a dequantized tile of n rows. */
static icl_weight tile_weight(const icl_weight *w, const float *t, int n)
{
    icl_weight f = {ICL_WEIGHT_F32, 0, n, w->in, 0, t, NULL};
    return f;
}

static const icl_weight_ops *f32(void) { return icl_weight_kernels(ICL_WEIGHT_F32); }

/* y[N, out] = x[N, in] W^T + beta y, one tile of output columns at a time */
static void q_gemm_forward(const icl_weight *w, float *y, long ldy, const float *x, long ldx, int N, float beta)
{
    int tr = tile_rows(w);
    float *t = tile_get(w, tr);
    for (int j0 = 0; j0 < w->out; j0 += tr) {
        int n = w->out - j0 < tr ? w->out - j0 : tr;
        dequant_rows(w, j0, n, t, 0);
        icl_weight tw = tile_weight(w, t, n);
        f32()->gemm_forward(&tw, y + j0, ldy, x, ldx, N, beta);
    }
}

/* dx[N, in] = dy[N, out] W + beta dx: the tiles' products summed in order */
static void q_input_grad(const icl_weight *w, float *dx, long lddx, float beta, const float *dy, long lddy, int N)
{
    int tr = tile_rows(w);
    float *t = tile_get(w, tr);
    for (int j0 = 0; j0 < w->out; j0 += tr) {
        int n = w->out - j0 < tr ? w->out - j0 : tr;
        dequant_rows(w, j0, n, t, 0);
        icl_weight tw = tile_weight(w, t, n);
        f32()->input_grad(&tw, dx, lddx, j0 ? 1.0f : beta, dy + j0, lddy, N);
    }
}

/* y = (x W^T + bias) + beta y.  Decoding: the blocks' own integer dot
 * products with x quantized per 32 to int8 (qdot.h, as llama.cpp's vec_dot
 * with q8 activations) for the types qdot has; otherwise, or when qdot cannot
 * allocate its activation blocks, the float32 rows kernel per dequantized
 * tile (exact weights, float activations). */
static int use_qdot = 1;

int icl_linear_set_qdot(int on)
{
    int was = use_qdot;
    use_qdot = on != 0;
    return was;
}

static void q_rows_forward(const icl_weight *w, const float *bias, float *y, long ldy, const float *x, long ldx, int N,
                           float beta, int nt)
{
    if (use_qdot && icl_qdot_supported(w->qtype) &&
        icl_qmatvec(w->qtype, w->data, w->out, w->in, x, ldx, N, y, ldy, beta, bias, nt) == 0)
        return;
    int tr = tile_rows(w);
    float *t = tile_get(w, tr);
    for (int j0 = 0; j0 < w->out; j0 += tr) {
        int n = w->out - j0 < tr ? w->out - j0 : tr;
        dequant_rows(w, j0, n, t, nt);
        icl_weight tw = tile_weight(w, t, n);
        f32()->rows_forward(&tw, bias ? bias + j0 : NULL, y + j0, ldy, x, ldx, N, beta, nt);
    }
}

static void q_dequantize_row(const icl_weight *w, int r, float *out)
{
    const icl_quant_traits *q = icl_quant_traits_of((uint32_t)w->qtype);
    size_t rb = icl_ggml_row_size((uint32_t)w->qtype, w->in);
    q->to_float((const uint8_t *)w->data + (size_t)r * rb, out, w->in);
}

const icl_weight_ops icl_qblock_ops = {
    .name = "qblock",
    .gemm_forward = q_gemm_forward,
    .rows_forward = q_rows_forward,
    .input_grad = q_input_grad,
    .weight_grad = NULL,
    .dequantize_row = q_dequantize_row,
};
