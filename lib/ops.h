/* ops.h - tensor kernels of the transformer, forward and backward side by side.
 *
 * Layout: activations are row-major; N = B*T rows (tokens), C channels, so an
 * activation [B, T, C] is N rows of C floats.  Every matrix product goes to
 * BLIS bli_sgemm with explicit strides (no transposed copies), except
 * attention's (own fused kernels, see icl_attention_forward); everything else
 * is plain C that gcc vectorises, with OpenMP over rows (or over columns where
 * rows would race).  Backward functions ACCUMULATE (+=) into parameter
 * gradients and, unless said otherwise, OVERWRITE input gradients.
 * Formulas follow Hugging Face transformers (modeling_llama.py,
 * modeling_gpt2.py) so results agree to float32 rounding.
 */
#ifndef ICL_OPS_H
#define ICL_OPS_H

#include <stddef.h>
#include <stdint.h>

/* Products with n or k at least this long (a vocabulary: the loss head's
 * logits h W^T and dh = dlogits W) skip BLIS's "sup" path for small
 * dimensions and take its large-matrix path, on which every element of C
 * is the same sum (k blocked the same way, in order) whatever m and the
 * thread count: the head's results do not depend on how many rows it is
 * given at once (model.c, head_loss).  On the sup path they can (m 24 and
 * 72 rows differ in the last bits).  It is also the faster path for these
 * products on a 2-core Xeon (bench/gemm_shapes.c, WAYS=S: 5-9%). */
#define ICL_GEMM_LONG 16384

/* C[m,n] = alpha * A[m,k] B[k,n] + beta * C, each matrix given by pointer and
 * (row stride, column stride) in elements.  nthreads 0: the global setting
 * (icl_set_threads); 1: single-threaded (for calls inside an OpenMP region).
 * Products of fewer than 2^18 multiply-adds always run on one thread. */
void icl_gemm(int m, int n, int k, float alpha, const float *a, long rsa, long csa, const float *b, long rsb,
              long csb, float beta, float *c, long rsc, long csc, int nthreads);

/* Linear maps (weights times activations) are in linear.h. */

/* RMSNorm (LlamaRMSNorm): y = w * x / sqrt(mean(x^2) + eps).  x, y [N, C];
 * rstd [N] saved for backward. */
void icl_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps);
/* dx[N,C] (+)= (beta 0/1), dw[C] += (dw NULL: frozen, not computed). */
void icl_rmsnorm_backward(float *dx, float beta, float *dw, const float *dy, const float *x, const float *w,
                          const float *rstd, int N, int C);

/* LayerNorm with bias (GPT-2): y = (x - mean) * rstd * w + b; mean, rstd [N]. */
void icl_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                           int C, float eps);
/* dw, db NULL (together): frozen, not computed. */
void icl_layernorm_backward(float *dx, float beta, float *dw, float *db, const float *dy, const float *x,
                            const float *w, const float *mean, const float *rstd, int N, int C);

/* Rotary tables for positions pos[N]: cos, sin [N, hd/2] with HF's float32
 * arithmetic (inv_freq = 1/theta^(2i/hd), angle = pos * inv_freq), llama3
 * frequency scaling applied to inv_freq when llama3 != 0. */
typedef struct {
    double theta;
    int llama3;
    double factor, low_freq_factor, high_freq_factor;
    int original_max_pos;
} icl_rope_params;
void icl_rope_inv_freq(float *inv_freq, int hd, const icl_rope_params *p);
void icl_rope_tables(float *cos, float *sin, const int32_t *pos, int N, int hd, const icl_rope_params *p);
/* Rotate, in place, nh heads of head_dim hd in each row of x (row stride ld):
 * HF's rotate-half convention, x1 = x[:hd/2], x2 = x[hd/2:],
 * out = (x1 c - x2 s, x2 c + x1 s).  backward = 1 applies the inverse
 * rotation (the gradient of the forward map). */
void icl_rope_apply(float *x, long ld, int N, int nh, int hd, const float *cos, const float *sin, int backward);

/* Causal attention with per-position document ids (training and prefill).
 * Fused kernels after FlashAttention-2 (Dao, "FlashAttention-2: Faster
 * Attention with Better Parallelism and Work Partitioning", 2023): no BLIS
 * call; queries in tiles of 16 rows of one head, the tile's scaled scores
 * S = scale q k^T over its key range in a per-thread buffer (16 x T floats),
 * the exact softmax of each row (maximum, exponentials, a sum in 16 lanes
 * summed pairwise; the tile's whole key range fits the buffer, so FA-2's
 * online rescaling is not needed), then P v by a register tile (4 rows x
 * 64 columns); the backward recomputes P = exp(S - lse) per tile and forms
 * dP = dO v^T,
 * dS = P (dP - rowsum(dO o)), dq = scale dS k, dk += scale dS^T q,
 * dv += P^T dO (dk, dv summed over the group's heads and the tiles in a
 * fixed order).  Key tiles wholly masked (causally, or before the tile's
 * documents) are skipped.  AVX-512 tiles where the CPU has AVX-512F
 * (compiled into every x86-64 build, PORTABLE=1 included, and chosen at
 * run time), generic C loops that gcc vectorises otherwise (and for hd not
 * a multiple of 16); both form every element with the same multiply-adds
 * in the same order (the same bits where gcc fuses a * b + c, as with
 * -march=native at -O2 and above).  Parallel over
 * (b, h) forward and (b, kv head) backward: results do not depend on the
 * thread count.  Scratch per call: threads x (16 + hd) x T floats forward,
 * threads x (2 (16 + hd) + 1) x T backward (T rounded up to 16).
 *
 * qkv rows (row stride ld) hold q [H*hd] at column qo, k [KV*hd] at ko, v [KV*hd]
 * at vo; head h uses kv head h / (H/KV).  For sequence b, query t attends key s
 * when s <= t and doc[b,s] == doc[b,t] (doc NULL: one document), so packed
 * or padded examples never see each other (and cost only their own
 * sum(doc_len^2): key blocks before a query block's documents are skipped).
 * out [B*T, H*hd] (row stride ldo),
 * lse [B, H, T] = log-sum-exp of each scaled score row (kept for backward).
 * scale = 1/sqrt(hd) as HF. */
typedef struct {
    int B, T, H, KV, hd;
    long ld, qo, ko, vo; /* qkv row stride and column offsets */
    float scale;
    /* 1: bf16 operands (the `--dtype bf16` path, as PyTorch's autocast runs
     * attention): q, k, v, dO, and P and dS after the float32 softmax,
     * rounded to bfloat16, float32 sums, on AMX-BF16 tiles (bf16.h's AMX
     * sums) or AVX512-BF16's vdpbf16ps (its sums), where
     * icl_attention_bf16_kernels(hd) says; elsewhere the float32 products
     * above.  dk and dv are then summed
     * per kv head over its heads and blocks of 64 queries in a fixed order:
     * still independent of the thread count.  Scratch per thread about
     * (3.5 hd + 105) T floats backward, (hd + 24) T forward.  0: float32. */
    int bf16;
} icl_attn_shape;
void icl_attention_forward(float *out, long ldo, float *lse, const float *qkv, const int32_t *doc,
                           const icl_attn_shape *s);
/* Gradients into dqkv (same layout as qkv, overwritten in the q, k and v
 * columns) from dout, recomputing the probabilities from q, k and lse
 * (flash-attention style: no [T, T] tensor is kept between passes). */
void icl_attention_backward(float *dqkv, const float *dout, long lddo, const float *out, long ldo,
                            const float *lse, const float *qkv, const int32_t *doc, const icl_attn_shape *s);

/* Which kernels take the bf16 operands of attention with heads of hd
 * (icl_attn_shape.bf16): 2 AMX-BF16 tiles (icl_bf16_amx_active), 1
 * AVX512-BF16 (icl_bf16_native_active, no AMX), 0 none: bf16 then gives the
 * float32 kernels' bits (hd not a multiple of 32 or over 256, a CPU without
 * AVX512-BF16 or the bf16 path forced portable, or the AVX-512 tiles turned
 * off by icl_attention_set_simd). */
int icl_attention_bf16_kernels(int hd);

/* Which kernels the two functions above use: on = 1 the AVX-512 tiles
 * (where the CPU has AVX-512F; elsewhere the generic loops all the same),
 * 0 the generic C loops, -1 only asks.  Returns whether the AVX-512 tiles
 * were in use before the call.  For tests and benchmarks; not to be changed
 * while attention runs. */
int icl_attention_set_simd(int on);

/* Attention of n new queries (positions p0..p0+n-1) against a KV cache.
 * q [n, H*hd] (row stride ldq); kc, vc [KV, maxpos, hd] for one layer holding
 * positions 0..p0+n-1; out [n, H*hd] (row stride ldo). */
void icl_attention_cached(float *out, long ldo, const float *q, long ldq, const float *kc, const float *vc, int n,
                          int p0, int maxpos, int H, int KV, int hd, float scale);

/* SwiGLU: h = silu(g) * u, with gu rows [g (I) | u (I)] (row stride ldgu);
 * h [N, I].  Backward writes dg, du into dgu. */
void icl_swiglu_forward(float *h, const float *gu, long ldgu, int N, int I);
void icl_swiglu_backward(float *dgu, long lddgu, const float *dh, const float *gu, long ldgu, int N, int I);

/* GELU, tanh approximation (HF "gelu_new"):
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).  y, x [n]. */
void icl_gelu_forward(float *y, const float *x, size_t n);
void icl_gelu_backward(float *dx, const float *dy, const float *x, size_t n);

/* Fused numerically stable log-softmax cross-entropy over rows of logits
 * [n, V] (row stride ld): loss[i] = logsumexp(row) - row[target[i]].  When
 * scale != 0 the row is overwritten with d loss_i / d logits * scale
 * = (softmax - onehot) * scale.  Returns the sum of losses (double), added in
 * row order so it does not depend on the thread count. */
double icl_xent_rows(float *logits, long ld, int n, int V, const int32_t *target, float *loss, float scale);
/* icl_xent_rows with a weight per row: row i's gradient is scaled by
 * scale * w[i] (the product rounded to float) and the return value is the
 * sum of w[i] * loss[i] (in double, in row order); loss[i] stays the
 * unweighted loss.  w NULL: icl_xent_rows, bit for bit. */
double icl_xent_rows_w(float *logits, long ld, int n, int V, const int32_t *target, float *loss, float scale,
                       const float *w);

/* exp accurate to about 2 ulp on [-87, 88]; clamped outside (Cephes polynomial), vectorisable. */
static inline float icl_expf(float x)
{
    x = x < -87.33f ? -87.33f : x;
    x = x > 88.3f ? 88.3f : x;
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } u;
    u.i = (int32_t)((uint32_t)((int32_t)n + 127) << 23); /* unsigned shift: no UB when x is NaN (p is NaN then) */
    return p * u.f;
}

#endif
