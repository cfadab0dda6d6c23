/* qlinear.c - quantized-block weights: dequantize a tile of rows, run the
 * float32 kernel on it.  See qlinear.h. */
#include "qlinear.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "bf16.h"
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

/* The tile buffer, at least 4 MiB so that icl_xcalloc_huge puts it on
 * transparent huge pages (BLIS packs the tile's rows: with 4 KiB pages it
 * misses the TLB at every row). */
static float *tile_get(const icl_weight *w, int tr)
{
    size_t need = (size_t)tr * (size_t)w->in;
    if (need > tile_cap) {
        size_t n = need > ICL_HUGE_MIN / sizeof(float) ? need : ICL_HUGE_MIN / sizeof(float);
        free(tile_buf);
        tile_buf = icl_xcalloc_huge(n, sizeof(float));
        tile_cap = n;
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

/* ---------------------------------------------------------------- the bf16 path (QBLOCK_BF16)
 *
 * The packed products of bf16.c with B's panels filled on demand
 * (icl_bf16_gemm_fill), each straight from the blocks: the forward's B =
 * W^T (K = in, N = out) takes 64 whole rows of W per panel; the input
 * gradient's B = W (K = out, N = in) 64 columns of every row, so a group
 * of panels spans whole blocks (blck / 64 panels for 256-value K-quant
 * blocks, 1 for 32-value ones) and each row's blocks of the group are
 * dequantized once.  Values: to_float (float32, as the QBLOCK kernels and
 * the dequantized model), then rounded to bf16 (icl_bf16_pack_panel) as
 * icl_bf16_pack rounds the dequantized model's float32 weights: the same
 * packed B, the same bits. */

/* Rows of W per dequantized piece of an input-gradient panel (even). */
#define QBF_KC 32

typedef struct {
    const icl_weight *w;
    const icl_quant_traits *q;
    size_t rb; /* bytes per row of W */
    int group; /* input gradient: panels per group */
} qbf_ctx;

/* Forward panels: rows 64 jp .. of W, dequantized into work (64 x in
 * floats), rounded and interleaved (tmp after them: 64 x kpad(in) bf16). */
static void qbf_fill_fwd(void *vc, int jp, int np, uint16_t *dst, void *work)
{
    const qbf_ctx *c = vc;
    const icl_weight *w = c->w;
    const uint8_t *src = (const uint8_t *)w->data;
    float *f = work;
    uint16_t *tmp = (uint16_t *)(f + (size_t)ICL_BF16_PANEL * w->in);
    size_t psz = icl_bf16_packed_size(w->in, ICL_BF16_PANEL);
    for (int i = 0; i < np; i++) {
        int r0 = (jp + i) * ICL_BF16_PANEL, nc = w->out - r0 < ICL_BF16_PANEL ? w->out - r0 : ICL_BF16_PANEL;
        for (int r = 0; r < nc; r++)
            c->q->to_float(src + (size_t)(r0 + r) * c->rb, f + (size_t)r * w->in, w->in);
        icl_bf16_pack_panel(f, w->in, 0, w->in, nc, dst + (size_t)i * psz, tmp);
    }
}

/* Input-gradient panels: columns 64 jp .. 64 (jp + np) of every row of W
 * (whole blocks), QBF_KC rows at a time into work (QBF_KC x 64 np floats),
 * each piece rounded into its pairs of rows. */
static void qbf_fill_bwd(void *vc, int jp, int np, uint16_t *dst, void *work)
{
    const qbf_ctx *c = vc;
    const icl_weight *w = c->w;
    int c0 = jp * ICL_BF16_PANEL, ncol = w->in - c0 < np * ICL_BF16_PANEL ? w->in - c0 : np * ICL_BF16_PANEL;
    const uint8_t *src = (const uint8_t *)w->data + (size_t)(c0 / c->q->blck) * c->q->size;
    float *f = work;
    size_t psz = icl_bf16_packed_size(w->out, ICL_BF16_PANEL);
    for (int k0 = 0; k0 < w->out; k0 += QBF_KC) {
        int kc = w->out - k0 < QBF_KC ? w->out - k0 : QBF_KC;
        for (int r = 0; r < kc; r++)
            c->q->to_float(src + (size_t)(k0 + r) * c->rb, f + (size_t)r * ncol, ncol);
        for (int i = 0; i < np; i++) {
            int nc = ncol - i * ICL_BF16_PANEL < ICL_BF16_PANEL ? ncol - i * ICL_BF16_PANEL : ICL_BF16_PANEL;
            icl_bf16_pack_panel(f + (size_t)i * ICL_BF16_PANEL, ncol, 1, kc, nc,
                                dst + (size_t)i * psz + (size_t)k0 * ICL_BF16_PANEL, NULL);
        }
    }
}

static qbf_ctx qbf_ctx_of(const icl_weight *w)
{
    qbf_ctx c = {w, icl_quant_traits_of((uint32_t)w->qtype), icl_ggml_row_size((uint32_t)w->qtype, w->in), 1};
    if (c.q->blck > ICL_BF16_PANEL)
        c.group = c.q->blck / ICL_BF16_PANEL;
    return c;
}

static size_t qbf_fwd_work(const icl_weight *w)
{
    return (size_t)ICL_BF16_PANEL * w->in * sizeof(float) + icl_bf16_packed_size(w->in, ICL_BF16_PANEL) * 2;
}

static void nan_rows(float *y, long ldy, int N, int n)
{
    for (int i = 0; i < N; i++)
        for (int j = 0; j < n; j++)
            y[(size_t)i * ldy + j] = NAN;
}

/* y = x W^T + beta y (bias NULL) or + bias on nt threads; NaN when the
 * scratch cannot be had (as the BF16 kernels). */
static void qbf_forward(const icl_weight *w, const float *bias, float *y, long ldy, const float *x, long ldx, int N,
                        float beta, int nt)
{
    qbf_ctx c = qbf_ctx_of(w);
    if (icl_bf16_gemm_fill(N, w->out, w->in, x, ldx, qbf_fill_fwd, &c, 1, qbf_fwd_work(w), bias, y, ldy, beta, nt))
        nan_rows(y, ldy, N, w->out);
}

static void qbf_gemm_forward(const icl_weight *w, float *y, long ldy, const float *x, long ldx, int N, float beta)
{
    qbf_forward(w, NULL, y, ldy, x, ldx, N, beta, omp_get_max_threads());
}

/* Decoding: as the QBLOCK kernel (the blocks' int8 dot products) when qdot
 * is on and has the type; otherwise the bf16 product, with the bias. */
static void qbf_rows_forward(const icl_weight *w, const float *bias, float *y, long ldy, const float *x, long ldx,
                             int N, float beta, int nt)
{
    if (use_qdot && icl_qdot_supported(w->qtype) &&
        icl_qmatvec(w->qtype, w->data, w->out, w->in, x, ldx, N, y, ldy, beta, bias, nt) == 0)
        return;
    qbf_forward(w, bias, y, ldy, x, ldx, N, beta, nt);
}

/* dx[N, in] = dy[N, out] W + beta dx: one product over all of K = out */
static void qbf_input_grad(const icl_weight *w, float *dx, long lddx, float beta, const float *dy, long lddy, int N)
{
    qbf_ctx c = qbf_ctx_of(w);
    size_t work = (size_t)QBF_KC * c.group * ICL_BF16_PANEL * sizeof(float);
    if (icl_bf16_gemm_fill(N, w->in, w->out, dy, lddy, qbf_fill_bwd, &c, c.group, work, NULL, dx, lddx, beta,
                           omp_get_max_threads()))
        nan_rows(dx, lddx, N, w->in);
}

/* Any number of rows after an even K (the panels are made per product);
 * none for decoding (fwd 2), whose rows kernel runs the blocks' own dot
 * products (icl_qmatvec), not the bf16 product. */
static int qbf_room(const icl_weight *w, int fwd)
{
    return fwd == 2 || ((fwd ? w->in : w->out) & 1) ? 0 : 1 << 20;
}

/* A low-rank term folded into the product (linear.h): E packed as the
 * panels' rows after W's, as many as a bf16 weight's packs keep for it
 * (icl_bf16_room), so both give the same sums. */
static void qbf_lowrank(const icl_weight *w, int fwd, float *y, long ldy, const float *x, long ldx, int N, float beta,
                        const float *xe, int ke, const float *E)
{
    int Nn = fwd ? w->out : w->in, kx = icl_bf16_room(w->in, w->out, ke);
    uint16_t *Pe = calloc(icl_bf16_packed_size(kx, Nn) + 1, sizeof(uint16_t));
    qbf_ctx c = qbf_ctx_of(w);
    int rc = -1;
    if (Pe) {
        icl_bf16_pack_rows(E, Nn, 0, ke, kx, Nn, Pe);
        if (fwd)
            rc = icl_bf16_gemm_fill_ext(N, w->out, w->in, x, ldx, xe, ke, ke, kx, Pe, qbf_fill_fwd, &c, 1,
                                        qbf_fwd_work(w), NULL, y, ldy, beta, omp_get_max_threads());
        else
            rc = icl_bf16_gemm_fill_ext(N, w->in, w->out, x, ldx, xe, ke, ke, kx, Pe, qbf_fill_bwd, &c, c.group,
                                        (size_t)QBF_KC * c.group * ICL_BF16_PANEL * sizeof(float), NULL, y, ldy, beta,
                                        omp_get_max_threads());
    }
    free(Pe);
    if (rc)
        nan_rows(y, ldy, N, Nn);
}

const icl_weight_ops icl_qblock_bf16_ops = {
    .name = "qblock-bf16",
    .gemm_forward = qbf_gemm_forward,
    .rows_forward = qbf_rows_forward,
    .input_grad = qbf_input_grad,
    .weight_grad = NULL,
    .dequantize_row = q_dequantize_row,
    .room = qbf_room,
    .lowrank = qbf_lowrank,
};
