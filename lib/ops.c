/* ops.c - transformer kernels: BLIS GEMM plus vectorised C with OpenMP. */
#include "ops.h"

#include <blis.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "util.h"

/* Loops over fewer elements than this run on one thread: a parallel region
 * costs more than the work (decoding one token, tiny models). */
#define ICL_PAR_MIN 32768

void icl_gemm(int m, int n, int k, float alpha, const float *a, long rsa, long csa, const float *b, long rsb,
              long csb, float beta, float *c, long rsc, long csc, int nthreads)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) { /* C = beta C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                c[i * rsc + j * csc] = beta == 0 ? 0 : beta * c[i * rsc + j * csc];
        return;
    }
    float al = alpha, be = beta;
    if (nthreads == 1 || (double)m * n * k < 262144.0) { /* tiny: threads cost more than they give */
        rntm_t rntm = BLIS_RNTM_INITIALIZER;
        bli_rntm_set_num_threads(1, &rntm);
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &al, (float *)a, rsa, csa, (float *)b, rsb, csb,
                     &be, c, rsc, csc, NULL, &rntm);
    } else {
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &al, (float *)a, rsa, csa, (float *)b, rsb, csb, &be,
                  c, rsc, csc);
    }
}

/* ---------------------------------------------------------------- norms */

/* y[N,C] = w * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps)  (LlamaRMSNorm) */
void icl_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C;
        float *yi = y + (long)i * C;
        float ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++)
            ss += xi[c] * xi[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        rstd[i] = r;
#pragma omp simd
        for (int c = 0; c < C; c++)
            yi[c] = w[c] * (xi[c] * r);
    }
}

/* xhat = x r; dxhat = dy w; dx = r (dxhat - xhat mean(dxhat xhat)); dw += sum dy xhat */
void icl_rmsnorm_backward(float *dx, float beta, float *dw, const float *dy, const float *x, const float *w,
                          const float *rstd, int N, int C)
{
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C, *dyi = dy + (long)i * C;
        float *dxi = dx + (long)i * C;
        float r = rstd[i], dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++)
            dot += dyi[c] * w[c] * xi[c];
        float k = dot * r * r / (float)C;
        if (beta == 0) {
#pragma omp simd
            for (int c = 0; c < C; c++)
                dxi[c] = r * (dyi[c] * w[c] - xi[c] * k);
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++)
                dxi[c] += r * (dyi[c] * w[c] - xi[c] * k);
        }
    }
    if (!dw)
        return;
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int c0 = 0; c0 < C; c0 += 64) {
        int nb = C - c0 < 64 ? C - c0 : 64;
        float acc[64] = {0};
        for (int i = 0; i < N; i++) {
            const float *xi = x + (long)i * C + c0, *dyi = dy + (long)i * C + c0;
            float r = rstd[i];
#pragma omp simd
            for (int c = 0; c < nb; c++)
                acc[c] += dyi[c] * (xi[c] * r);
        }
        for (int c = 0; c < nb; c++)
            dw[c0 + c] += acc[c];
    }
}

/* y = (x - mean) rstd w + b  (torch.nn.LayerNorm, biased variance) */
void icl_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                           int C, float eps)
{
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C;
        float *yi = y + (long)i * C;
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++)
            s += xi[c];
        float m = s / (float)C, v = 0;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++)
            v += (xi[c] - m) * (xi[c] - m);
        float r = 1.0f / sqrtf(v / (float)C + eps);
        mean[i] = m;
        rstd[i] = r;
#pragma omp simd
        for (int c = 0; c < C; c++)
            yi[c] = (xi[c] - m) * r * w[c] + b[c];
    }
}

/* dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy w */
void icl_layernorm_backward(float *dx, float beta, float *dw, float *db, const float *dy, const float *x,
                            const float *w, const float *mean, const float *rstd, int N, int C)
{
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *xi = x + (long)i * C, *dyi = dy + (long)i * C;
        float *dxi = dx + (long)i * C;
        float m = mean[i], r = rstd[i], s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (int c = 0; c < C; c++) {
            float g = dyi[c] * w[c];
            s1 += g;
            s2 += g * (xi[c] - m) * r;
        }
        s1 /= (float)C;
        s2 /= (float)C;
        if (beta == 0) {
#pragma omp simd
            for (int c = 0; c < C; c++)
                dxi[c] = r * (dyi[c] * w[c] - s1 - (xi[c] - m) * r * s2);
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++)
                dxi[c] += r * (dyi[c] * w[c] - s1 - (xi[c] - m) * r * s2);
        }
    }
    if (!dw) /* frozen */
        return;
#pragma omp parallel for schedule(static) if ((long)N * C >= ICL_PAR_MIN)
    for (int c0 = 0; c0 < C; c0 += 64) {
        int nb = C - c0 < 64 ? C - c0 : 64;
        float aw[64] = {0}, ab[64] = {0};
        for (int i = 0; i < N; i++) {
            const float *xi = x + (long)i * C + c0, *dyi = dy + (long)i * C + c0;
            float m = mean[i], r = rstd[i];
#pragma omp simd
            for (int c = 0; c < nb; c++) {
                aw[c] += dyi[c] * (xi[c] - m) * r;
                ab[c] += dyi[c];
            }
        }
        for (int c = 0; c < nb; c++) {
            dw[c0 + c] += aw[c];
            db[c0 + c] += ab[c];
        }
    }
}

/* ---------------------------------------------------------------- rotary */

/* HF _compute_default_rope_parameters / _compute_llama3_parameters */
void icl_rope_inv_freq(float *inv_freq, int hd, const icl_rope_params *p)
{
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)hd;
        inv_freq[i] = 1.0f / powf((float)p->theta, e);
    }
    if (!p->llama3)
        return;
    double old = p->original_max_pos, lw = old / p->low_freq_factor, hw = old / p->high_freq_factor;
    for (int i = 0; i < half; i++) {
        double f = inv_freq[i], wl = 2 * M_PI / f, nf;
        if (wl < hw) {
            nf = f;
        } else if (wl > lw) {
            nf = f / p->factor;
        } else {
            double sm = (old / wl - p->low_freq_factor) / (p->high_freq_factor - p->low_freq_factor);
            nf = (1 - sm) * f / p->factor + sm * f;
        }
        inv_freq[i] = (float)nf;
    }
}

void icl_rope_tables(float *cs, float *sn, const int32_t *pos, int N, int hd, const icl_rope_params *p)
{
    int half = hd / 2;
    float inv[half > 0 ? half : 1];
    icl_rope_inv_freq(inv, hd, p);
#pragma omp parallel for schedule(static) if ((long)N * half >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++)
        for (int j = 0; j < half; j++) {
            float a = (float)pos[i] * inv[j]; /* float32 product, as HF */
            cs[(long)i * half + j] = (float)cos((double)a);
            sn[(long)i * half + j] = (float)sin((double)a);
        }
}

void icl_rope_apply(float *x, long ld, int N, int nh, int hd, const float *cs, const float *sn, int backward)
{
    int half = hd / 2;
    float sg = backward ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static) if ((long)N * nh * hd >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *c = cs + (long)i * half, *s = sn + (long)i * half;
        for (int h = 0; h < nh; h++) {
            float *x1 = x + (long)i * ld + (long)h * hd, *x2 = x1 + half;
#pragma omp simd
            for (int j = 0; j < half; j++) {
                float a = x1[j], b = x2[j], sj = sg * s[j];
                x1[j] = a * c[j] - b * sj;
                x2[j] = b * c[j] + a * sj;
            }
        }
    }
}

/* ---------------------------------------------------------------- attention */

static inline int allowed(const int32_t *doc, int t, int s) { return s <= t && (!doc || doc[s] == doc[t]); }

/* Queries are processed in blocks of ATT_RB rows; block [r0, r1) only needs
 * keys [k0, r1): r1 by the causal mask, k0 = the first key that belongs to a
 * document of the block.  The GEMMs skip the masked upper triangle and, with
 * packed examples, everything before the block's documents, so attention
 * costs about sum(doc_len^2) instead of T^2. */
#define ATT_RB 64

/* k0 of every block of every sequence: [B, ceil(T / ATT_RB)], caller frees. */
static int *block_k0_table(const int32_t *doc, int B, int T)
{
    int nb = (T + ATT_RB - 1) / ATT_RB;
    int *k0 = xcalloc((size_t)B * nb, sizeof(int));
    if (!doc)
        return k0;
    for (int b = 0; b < B; b++) {
        const int32_t *d = doc + (long)b * T;
        for (int j = 0; j < nb; j++) {
            int r0 = j * ATT_RB, r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, nd = 0, ids[8];
            for (int t = r0; t < r1 && nd <= 8; t++) { /* the block's distinct documents */
                int seen = 0;
                for (int i = 0; i < nd && i < 8; i++)
                    seen |= ids[i] == d[t];
                if (!seen) {
                    if (nd < 8)
                        ids[nd] = d[t];
                    nd++;
                }
            }
            int s = 0;
            if (nd <= 8) /* first key of any of them (else keep 0) */
                for (s = 0; s < r0; s++) {
                    int hit = 0;
                    for (int i = 0; i < nd; i++)
                        hit |= ids[i] == d[s];
                    if (hit)
                        break;
                }
            k0[(long)b * nb + j] = s;
        }
    }
    return k0;
}

/* The first key each query may attend: lo[b * T + t] = the start of the run
 * of equal doc ids that holds t, when every row's documents are contiguous
 * runs (each id in one run, as packing lays them out): then allowed(doc, t,
 * s) holds exactly for lo <= s <= t and the softmax loops run over that
 * range without a test per key (vectorised).  NULL (caller frees otherwise)
 * when doc is NULL (lo = 0: every s <= t) or some id comes back after
 * another run: the loops then test allowed() per key. */
static int *doc_run_starts(const int32_t *doc, int B, int T)
{
    if (!doc)
        return NULL;
    int *lo = xmalloc((size_t)B * T * sizeof(int));
    for (int b = 0; b < B; b++) {
        const int32_t *d = doc + (long)b * T;
        int *l = lo + (long)b * T;
        int32_t top = T > 0 ? d[0] : 0; /* the largest id of the runs so far */
        for (int t = 0, s = 0; t < T; t++) {
            if (t > 0 && d[t] != d[t - 1]) { /* a new run: its id must not occur before it */
                if (d[t] > top) /* packing's increasing ids: nothing to search */
                    top = d[t];
                else
                    for (int u = 0; u < t; u++) /* once per row for the padding's -1 */
                        if (d[u] == d[t]) {
                            free(lo);
                            return NULL;
                        }
                s = t;
            }
            l[t] = s;
        }
    }
    return lo;
}

/* out = softmax(scale q k^T + mask) v, per (b, h) */
void icl_attention_forward(float *out, long ldo, float *lse, const float *qkv, const int32_t *doc,
                           const icl_attn_shape *sh)
{
    int B = sh->B, T = sh->T, H = sh->H, hd = sh->hd, grp = sh->H / sh->KV;
    long ld = sh->ld;
    int nt = omp_get_max_threads();
    float *scr = xmalloc((size_t)nt * ATT_RB * T * sizeof(float));
    int *k0t = block_k0_table(doc, B, T), nblk = (T + ATT_RB - 1) / ATT_RB;
    int *lot = doc_run_starts(doc, B, T);
    int ranged = !doc || lot; /* allowed(t, s) <=> lo(t) <= s <= t */
#pragma omp parallel for schedule(dynamic, 1) if ((long)B * H * T * hd >= ICL_PAR_MIN)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H, g = h / grp;
        float *S = scr + (size_t)omp_get_thread_num() * ATT_RB * T; /* [nr, r1 - k0], row stride T */
        const float *q = qkv + (long)b * T * ld + sh->qo + (long)h * hd;
        const float *k = qkv + (long)b * T * ld + sh->ko + (long)g * hd;
        const float *v = qkv + (long)b * T * ld + sh->vo + (long)g * hd;
        const int32_t *d = doc ? doc + (long)b * T : NULL;
        for (int r0 = 0; r0 < T; r0 += ATT_RB) {
            int r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, nr = r1 - r0, k0 = k0t[(long)b * nblk + r0 / ATT_RB],
                nc = r1 - k0;
            /* S = scale q[r0:r1] k[k0:r1]^T; column j is key k0 + j */
            icl_gemm(nr, nc, hd, sh->scale, q + (long)r0 * ld, ld, 1, k + (long)k0 * ld, 1, ld, 0.0f, S, T, 1, 1);
            for (int t = r0; t < r1; t++) {
                float *r = S + (long)(t - r0) * T - k0, m = -INFINITY; /* r[s] for key s */
                float sum = 0;
                if (ranged) { /* the same values and sums as below, vectorised */
                    int lo = lot && lot[(long)b * T + t] > k0 ? lot[(long)b * T + t] : k0;
#pragma omp simd reduction(max : m)
                    for (int s = lo; s <= t; s++)
                        m = r[s] > m ? r[s] : m;
                    for (int s = k0; s < lo; s++)
                        r[s] = 0;
#pragma omp simd
                    for (int s = lo; s <= t; s++)
                        r[s] = icl_expf(r[s] - m);
                    for (int s = lo; s <= t; s++) /* in order: the sum rounds as below */
                        sum += r[s];
                } else {
                    for (int s = k0; s <= t; s++)
                        if (allowed(d, t, s) && r[s] > m)
                            m = r[s];
                    for (int s = k0; s <= t; s++) {
                        float e = allowed(d, t, s) ? icl_expf(r[s] - m) : 0.0f;
                        r[s] = e;
                        sum += e;
                    }
                }
                float inv = 1.0f / sum;
                for (int s = k0; s <= t; s++)
                    r[s] *= inv;
                for (int s = t + 1; s < r1; s++)
                    r[s] = 0;
                lse[(long)bh * T + t] = m + logf(sum);
            }
            /* out[r0:r1] = P v[k0:r1] */
            icl_gemm(nr, hd, nc, 1.0f, S, T, 1, v + (long)k0 * ld, ld, 1, 0.0f,
                     out + ((long)b * T + r0) * ldo + (long)h * hd, ldo, 1, 1);
        }
    }
    free(scr);
    free(k0t);
    free(lot);
}

void icl_attention_backward(float *dqkv, const float *dout, long lddo, const float *out, long ldo,
                            const float *lse, const float *qkv, const int32_t *doc, const icl_attn_shape *sh)
{
    int B = sh->B, T = sh->T, H = sh->H, KV = sh->KV, hd = sh->hd, grp = sh->H / sh->KV;
    long ld = sh->ld;
    int nt = omp_get_max_threads();
    size_t per = 2 * (size_t)ATT_RB * T + T;
    float *scr = xmalloc((size_t)nt * per * sizeof(float));
    int *k0t = block_k0_table(doc, B, T), nblk = (T + ATT_RB - 1) / ATT_RB;
    int *lot = doc_run_starts(doc, B, T);
    int ranged = !doc || lot; /* as in the forward */
#pragma omp parallel for schedule(dynamic, 1) if ((long)B * KV * T * hd >= ICL_PAR_MIN)
    for (int bg = 0; bg < B * KV; bg++) {
        int b = bg / KV, g = bg % KV;
        float *P = scr + (size_t)omp_get_thread_num() * per, *dP = P + (size_t)ATT_RB * T, *D = dP + (size_t)ATT_RB * T;
        const float *k = qkv + (long)b * T * ld + sh->ko + (long)g * hd;
        const float *v = qkv + (long)b * T * ld + sh->vo + (long)g * hd;
        float *dk = dqkv + (long)b * T * ld + sh->ko + (long)g * hd;
        float *dv = dqkv + (long)b * T * ld + sh->vo + (long)g * hd;
        const int32_t *d = doc ? doc + (long)b * T : NULL;
        for (int t = 0; t < T; t++) {
            memset(dk + (long)t * ld, 0, (size_t)hd * sizeof(float));
            memset(dv + (long)t * ld, 0, (size_t)hd * sizeof(float));
        }
        for (int h = g * grp; h < (g + 1) * grp; h++) {
            const float *q = qkv + (long)b * T * ld + sh->qo + (long)h * hd;
            float *dq = dqkv + (long)b * T * ld + sh->qo + (long)h * hd;
            const float *o = out + (long)b * T * ldo + (long)h * hd;
            const float *dO = dout + (long)b * T * lddo + (long)h * hd;
            const float *L = lse + ((long)b * H + h) * T;
            for (int t = 0; t < T; t++) {
                float acc = 0;
                for (int j = 0; j < hd; j++)
                    acc += dO[(long)t * lddo + j] * o[(long)t * ldo + j];
                D[t] = acc;
            }
            for (int r0 = 0; r0 < T; r0 += ATT_RB) {
                int r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, nr = r1 - r0, k0 = k0t[(long)b * nblk + r0 / ATT_RB],
                    nc = r1 - k0;
                const float *kb = k + (long)k0 * ld, *vb = v + (long)k0 * ld;
                /* P block [nr, nc] (row stride nc; column j is key k0 + j) recomputed from q, k and lse */
                icl_gemm(nr, nc, hd, sh->scale, q + (long)r0 * ld, ld, 1, kb, 1, ld, 0.0f, P, nc, 1, 1);
                for (int i = 0; i < nr; i++) {
                    float *r = P + (long)i * nc - k0;
                    int t = r0 + i;
                    if (ranged) {
                        int lo = lot && lot[(long)b * T + t] > k0 ? lot[(long)b * T + t] : k0;
                        float Lt = L[t];
                        for (int s = k0; s < lo; s++)
                            r[s] = 0;
#pragma omp simd
                        for (int s = lo; s <= t; s++)
                            r[s] = icl_expf(r[s] - Lt);
                        for (int s = t + 1; s < r1; s++)
                            r[s] = 0;
                    } else
                        for (int s = k0; s < r1; s++)
                            r[s] = allowed(d, t, s) ? icl_expf(r[s] - L[t]) : 0.0f;
                }
                /* dP = dO v^T; dS = P (dP - D) */
                icl_gemm(nr, nc, hd, 1.0f, dO + (long)r0 * lddo, lddo, 1, vb, 1, ld, 0.0f, dP, nc, 1, 1);
                for (int i = 0; i < nr; i++) {
                    float *r = dP + (long)i * nc, Dt = D[r0 + i];
                    const float *p = P + (long)i * nc;
#pragma omp simd
                    for (int j = 0; j < nc; j++)
                        r[j] = p[j] * (r[j] - Dt);
                }
                /* dq[r0:r1] = scale dS k[k0:r1]; dk[k0:r1] += scale dS^T q[r0:r1]; dv[k0:r1] += P^T dO[r0:r1] */
                icl_gemm(nr, hd, nc, sh->scale, dP, nc, 1, kb, ld, 1, 0.0f, dq + (long)r0 * ld, ld, 1, 1);
                icl_gemm(nc, hd, nr, sh->scale, dP, 1, nc, q + (long)r0 * ld, ld, 1, 1.0f, dk + (long)k0 * ld, ld, 1, 1);
                icl_gemm(nc, hd, nr, 1.0f, P, 1, nc, dO + (long)r0 * lddo, lddo, 1, 1.0f, dv + (long)k0 * ld, ld, 1, 1);
            }
        }
    }
    free(scr);
    free(k0t);
    free(lot);
}

void icl_attention_cached(float *out, long ldo, const float *q, long ldq, const float *kc, const float *vc, int n,
                          int p0, int maxpos, int H, int KV, int hd, float scale)
{
    int L = p0 + n, grp = H / KV;
    int nt = omp_get_max_threads();
    float *scr = xmalloc((size_t)nt * n * L * sizeof(float));
#pragma omp parallel for schedule(dynamic, 1) if ((long)n * L * H * hd >= ICL_PAR_MIN)
    for (int h = 0; h < H; h++) {
        int g = h / grp;
        float *S = scr + (size_t)omp_get_thread_num() * n * L;
        const float *k = kc + (long)g * maxpos * hd, *v = vc + (long)g * maxpos * hd;
        icl_gemm(n, L, hd, scale, q + (long)h * hd, ldq, 1, k, 1, hd, 0.0f, S, L, 1, 1);
        for (int i = 0; i < n; i++) {
            float *r = S + (long)i * L, m = -INFINITY;
            int last = p0 + i;
            for (int s = 0; s <= last; s++)
                m = r[s] > m ? r[s] : m;
            float sum = 0;
            for (int s = 0; s <= last; s++) {
                r[s] = icl_expf(r[s] - m);
                sum += r[s];
            }
            float inv = 1.0f / sum;
            for (int s = 0; s <= last; s++)
                r[s] *= inv;
            for (int s = last + 1; s < L; s++)
                r[s] = 0;
        }
        icl_gemm(n, hd, L, 1.0f, S, L, 1, v, hd, 1, 0.0f, out + (long)h * hd, ldo, 1, 1);
    }
    free(scr);
}

/* ---------------------------------------------------------------- MLP activations */

void icl_swiglu_forward(float *h, const float *gu, long ldgu, int N, int I)
{
#pragma omp parallel for schedule(static) if ((long)N * I >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *g = gu + (long)i * ldgu, *u = g + I;
        float *hi = h + (long)i * I;
#pragma omp simd
        for (int j = 0; j < I; j++)
            hi[j] = g[j] / (1.0f + icl_expf(-g[j])) * u[j];
    }
}

void icl_swiglu_backward(float *dgu, long lddgu, const float *dh, const float *gu, long ldgu, int N, int I)
{
#pragma omp parallel for schedule(static) if ((long)N * I >= ICL_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *g = gu + (long)i * ldgu, *u = g + I, *d = dh + (long)i * I;
        float *dg = dgu + (long)i * lddgu, *du = dg + I;
#pragma omp simd
        for (int j = 0; j < I; j++) {
            float s = 1.0f / (1.0f + icl_expf(-g[j])), si = g[j] * s;
            du[j] = d[j] * si;
            dg[j] = d[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
        }
    }
}

#define GELU_A 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_B 0.044715f

void icl_gelu_forward(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) if ((long)n >= ICL_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(GELU_A * (v + GELU_B * v * v * v)));
    }
}

void icl_gelu_backward(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) if ((long)n >= ICL_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i], t = tanhf(GELU_A * (v + GELU_B * v * v * v));
        float dt = (1.0f - t * t) * GELU_A * (1.0f + 3.0f * GELU_B * v * v);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * dt);
    }
}

/* ---------------------------------------------------------------- cross-entropy */

double icl_xent_rows(float *logits, long ld, int n, int V, const int32_t *target, float *loss, float scale)
{
    return icl_xent_rows_w(logits, ld, n, V, target, loss, scale, NULL);
}

double icl_xent_rows_w(float *logits, long ld, int n, int V, const int32_t *target, float *loss, float scale,
                       const float *w)
{
    float *li = loss ? loss : xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
#pragma omp parallel for schedule(static) if ((long)n * V >= ICL_PAR_MIN)
    for (int i = 0; i < n; i++) {
        float *r = logits + (long)i * ld, m = -INFINITY;
#pragma omp simd reduction(max : m) /* a maximum is the same in any order */
        for (int j = 0; j < V; j++)
            m = r[j] > m ? r[j] : m;
        /* summed in double: a float sum of V exps near 1 drops every term
         * below half its ulp, and how many it drops depends on how the
         * compiler splits the loop into lanes (the sanitizer build's scalar
         * loop lost ~1e-4 of SmolLM2's loss, the 16-lane -O3 loop a
         * sixteenth of that); in double the result is the same to float
         * precision for any order */
        double sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++)
            sum += (double)icl_expf(r[j] - m);
        double lsed = (double)m + log(sum);
        float lse = (float)lsed;
        li[i] = (float)(lsed - (double)r[target[i]]);
        if (scale != 0) {
            float sc = w ? (float)((double)scale * (double)w[i]) : scale;
#pragma omp simd
            for (int j = 0; j < V; j++)
                r[j] = icl_expf(r[j] - lse) * sc;
            r[target[i]] -= sc;
        }
    }
    double total = 0; /* summed in row order: the same result for any thread count */
    for (int i = 0; i < n; i++)
        total += w ? (double)w[i] * (double)li[i] : li[i];
    if (!loss)
        free(li);
    return total;
}
