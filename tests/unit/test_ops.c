/* Finite-difference checks of every backward in lib/ops.c: for random inputs
 * and a random projection R, L = sum(R * forward(x)) accumulated in double;
 * central differences (x +- h) against the analytic backward fed dy = R.
 * Also: icl_expf accuracy, rotary tables against direct formulas, llama3
 * frequency scaling against its definition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "linear.h"
#include "ops.h"
#include "util.h"

static uint64_t rng = 12345;
static float frand(void) /* uniform in [-1, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / (double)(1ull << 24) * 2 - 1);
}
static float *rnd(size_t n, float s)
{
    float *p = icl_xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = s * frand();
    return p;
}
static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

typedef double (*lossfn)(void);

/* relative L2 error of the analytic gradient g against central differences on x */
static double fd_check(const char *name, float *x, size_t n, const float *g, lossfn f)
{
    const float h = 1e-3f;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        float xi = x[i];
        x[i] = xi + h;
        double lp = f();
        x[i] = xi - h;
        double lm = f();
        x[i] = xi;
        double d = (lp - lm) / (2.0 * h), e = d - g[i];
        num += e * e;
        den += d * d;
    }
    double r = sqrt(num / (den > 0 ? den : 1));
    print_message("# %-28s rel L2 err %.2e over %zu inputs\n", name, r, n);
    return r;
}
#define TOL 3e-3

/* ------------------------------------------------------------ linear */
static int LN = 5, LIN = 7, LOUT = 6;
static float *lx, *lw, *lb, *ly, *lR;
static int lconv;
/* The float32 linear of linear.h: W [out, in], or [in, out] when conv1d. */
static icl_linear mklin(float *w, float *b, float *dw, float *db)
{
    icl_linear l = {.w = {ICL_WEIGHT_F32, 0, LOUT, LIN, lconv, w, dw}, .b = b, .db = db};
    return l;
}
static double linear_loss(void)
{
    icl_linear l = mklin(lw, lb, NULL, NULL);
    icl_linear_forward(&l, ly, LOUT, lx, LIN, LN, 0.0f, ICL_LIN_GEMM, 0, NULL);
    return dot(ly, lR, (size_t)LN * LOUT);
}
static void linear_fd(void **state)
{
    (void)state;
    for (lconv = 0; lconv < 2; lconv++) {
        lx = rnd((size_t)LN * LIN, 1);
        lw = rnd((size_t)LIN * LOUT, 1);
        lb = rnd(LOUT, 1);
        ly = icl_xmalloc((size_t)LN * LOUT * sizeof(float));
        lR = rnd((size_t)LN * LOUT, 1);
        float *dx = xcalloc((size_t)LN * LIN, 4), *dw = xcalloc((size_t)LIN * LOUT, 4), *db = xcalloc(LOUT, 4);
        icl_linear l = mklin(lw, lb, dw, db);
        icl_linear_backward(&l, dx, LIN, 0.0f, lR, LOUT, lx, LIN, LN, NULL);
        assert_true(fd_check(lconv ? "conv1d dx" : "linear dx", lx, (size_t)LN * LIN, dx, linear_loss) < TOL);
        assert_true(fd_check(lconv ? "conv1d dW" : "linear dW", lw, (size_t)LIN * LOUT, dw, linear_loss) < TOL);
        assert_true(fd_check(lconv ? "conv1d db" : "linear db", lb, LOUT, db, linear_loss) < TOL);
        /* accumulation: a second backward doubles dW and adds to dx with beta 1 */
        icl_linear_backward(&l, dx, LIN, 1.0f, lR, LOUT, lx, LIN, LN, NULL);
        float *dx1 = xcalloc((size_t)LN * LIN, 4);
        icl_linear l1 = mklin(lw, lb, NULL, NULL);
        icl_linear_backward(&l1, dx1, LIN, 0.0f, lR, LOUT, lx, LIN, LN, NULL);
        for (int i = 0; i < LN * LIN; i++)
            assert_float_equal(dx[i], 2 * dx1[i], 1e-5);
        free(dx1);
        free(lx); free(lw); free(lb); free(ly); free(lR); free(dx); free(dw); free(db);
    }
}

/* ------------------------------------------------------------ norms */
static int NN = 4, NC = 16;
static float *nx, *nw, *nb, *ny, *nR, *nm, *nr;
static double rms_loss(void)
{
    icl_rmsnorm_forward(ny, nr, nx, nw, NN, NC, 1e-5f);
    return dot(ny, nR, (size_t)NN * NC);
}
static double ln_loss(void)
{
    icl_layernorm_forward(ny, nm, nr, nx, nw, nb, NN, NC, 1e-5f);
    return dot(ny, nR, (size_t)NN * NC);
}
static void norms_fd(void **state)
{
    (void)state;
    size_t n = (size_t)NN * NC;
    nx = rnd(n, 2);
    nw = rnd(NC, 1);
    nb = rnd(NC, 1);
    ny = icl_xmalloc(n * 4);
    nR = rnd(n, 1);
    nm = icl_xmalloc(NN * 4);
    nr = icl_xmalloc(NN * 4);
    float *dx = icl_xcalloc(n, 4), *dw = icl_xcalloc(NC, 4), *db = icl_xcalloc(NC, 4);
    rms_loss();
    icl_rmsnorm_backward(dx, 0.0f, dw, nR, nx, nw, nr, NN, NC);
    assert_true(fd_check("rmsnorm dx", nx, n, dx, rms_loss) < TOL);
    assert_true(fd_check("rmsnorm dw", nw, NC, dw, rms_loss) < TOL);
    memset(dw, 0, NC * 4);
    ln_loss();
    icl_layernorm_backward(dx, 0.0f, dw, db, nR, nx, nw, nm, nr, NN, NC);
    assert_true(fd_check("layernorm dx", nx, n, dx, ln_loss) < TOL);
    assert_true(fd_check("layernorm dw", nw, NC, dw, ln_loss) < TOL);
    assert_true(fd_check("layernorm db", nb, NC, db, ln_loss) < TOL);
    free(nx); free(nw); free(nb); free(ny); free(nR); free(nm); free(nr); free(dx); free(dw); free(db);
}

/* ------------------------------------------------------------ rotary */
static int RN = 5, RH = 3, RD = 8;
static float *rx, *ry, *rR, *rc, *rs;
static double rope_loss(void)
{
    memcpy(ry, rx, (size_t)RN * RH * RD * 4);
    icl_rope_apply(ry, RH * RD, RN, RH, RD, rc, rs, 0);
    return dot(ry, rR, (size_t)RN * RH * RD);
}
static void rope_fd(void **state)
{
    (void)state;
    size_t n = (size_t)RN * RH * RD;
    int32_t pos[5] = {0, 3, 7, 100, 4095};
    icl_rope_params p = {10000.0, 0, 0, 0, 0, 0};
    rc = icl_xmalloc((size_t)RN * RD / 2 * 4);
    rs = icl_xmalloc((size_t)RN * RD / 2 * 4);
    icl_rope_tables(rc, rs, pos, RN, RD, &p);
    for (int i = 0; i < RN; i++)
        for (int j = 0; j < RD / 2; j++) {
            double a = pos[i] * pow(10000.0, -2.0 * j / RD);
            assert_float_equal(rc[i * RD / 2 + j], cos(a), 2e-3 * (1 + pos[i] / 1000.0));
            assert_float_equal(rs[i * RD / 2 + j], sin(a), 2e-3 * (1 + pos[i] / 1000.0));
        }
    rx = rnd(n, 1);
    ry = icl_xmalloc(n * 4);
    rR = rnd(n, 1);
    float *dx = icl_xmalloc(n * 4);
    memcpy(dx, rR, n * 4);
    icl_rope_apply(dx, RH * RD, RN, RH, RD, rc, rs, 1);
    assert_true(fd_check("rope dx", rx, n, dx, rope_loss) < TOL);
    /* llama3 scaling (Llama 3.1 defaults): high frequencies kept, low ones divided by factor */
    icl_rope_params l3 = {500000.0, 1, 8.0, 1.0, 4.0, 8192};
    float f0[64], f1[64];
    icl_rope_inv_freq(f0, 128, &p);
    p.theta = 500000.0;
    icl_rope_inv_freq(f0, 128, &p);
    icl_rope_inv_freq(f1, 128, &l3);
    for (int j = 0; j < 64; j++) {
        double wl = 2 * M_PI / f0[j];
        if (wl < 8192 / 4.0)
            assert_float_equal(f1[j], f0[j], 0);
        else if (wl > 8192 / 1.0)
            assert_float_equal(f1[j], f0[j] / 8, 1e-6 * f0[j]);
        else
            assert_true(f1[j] < f0[j] && f1[j] > f0[j] / 8);
    }
    free(rx); free(ry); free(rR); free(rc); free(rs); free(dx);
}

/* ------------------------------------------------------------ attention */
/* The finite-difference tests' state: attn_loss = sum(out * aR) with out
 * the forward of aqkv under ash and adoc. */
static icl_attn_shape ash;
static float *aqkv, *aout, *alse, *aR;
static const int32_t *adoc;
static double attn_loss(void)
{
    icl_attention_forward(aout, (long)ash.H * ash.hd, alse, aqkv, adoc, &ash);
    return dot(aout, aR, (size_t)ash.B * ash.T * ash.H * ash.hd);
}

/* The shared setup of the finite-difference tests: shape s (its k and v
 * column offsets and row stride set here to q|k|v packed, H + 2 KV heads of
 * hd a row) with document ids doc [B*T] (borrowed: must outlive the test),
 * random q|k|v and upstream gradient aR, one forward (aout, alse) and the
 * backward.  Returns dqkv [B*T, ld], *n its length; attn_fd_free frees it
 * and the state. */
static float *attn_fd_setup(icl_attn_shape s, const int32_t *doc, size_t *n)
{
    s.ko = s.H * s.hd;
    s.vo = s.ko + s.KV * s.hd;
    s.ld = s.vo + s.KV * s.hd;
    ash = s;
    adoc = doc;
    size_t no = (size_t)s.B * s.T * s.H * s.hd;
    *n = (size_t)s.B * s.T * s.ld;
    aqkv = rnd(*n, 1);
    aout = icl_xmalloc(no * 4);
    alse = icl_xmalloc((size_t)s.B * s.H * s.T * 4);
    aR = rnd(no, 1);
    attn_loss();
    float *dqkv = icl_xmalloc(*n * 4);
    icl_attention_backward(dqkv, aR, s.H * s.hd, aout, s.H * s.hd, alse, aqkv, adoc, &s);
    return dqkv;
}

static void attn_fd_free(float *dqkv)
{
    free(aqkv); free(aout); free(alse); free(aR); free(dqkv);
    aqkv = aout = alse = aR = NULL;
    adoc = NULL;
}

static void attention_fd(void **state)
{
    (void)state;
    /* row 0: two packed documents; row 1: one document then padding */
    static const int32_t d[12] = {0, 0, 0, 1, 1, 1, 5, 5, 5, 5, -1, -1};
    size_t n;
    float *dqkv = attn_fd_setup((icl_attn_shape){2, 6, 4, 2, 4, 0, 0, 0, 0, 0.5f, 0}, d, &n);
    assert_true(fd_check("attention dq,dk,dv (GQA)", aqkv, n, dqkv, attn_loss) < TOL);
    /* isolation: changing document 1's values leaves document 0's outputs unchanged */
    float keep[3 * 16];
    memcpy(keep, aout, sizeof keep);
    for (int t = 3; t < 6; t++)
        for (long j = 0; j < ash.ld; j++)
            aqkv[t * ash.ld + j] += 1.0f;
    attn_loss();
    assert_memory_equal(keep, aout, sizeof keep);
    attn_fd_free(dqkv);
}

/* The same finite-difference check at hd 16 (the AVX-512 tiles for every
 * product where the build has them; hd 4 above takes the generic loops for
 * P v, dq, dk and dv), T 19 (two query tiles of 16, the second partial),
 * GQA 2/1, two documents with the boundary inside the first tile. */
static void attention_fd_hd16(void **state)
{
    (void)state;
    int32_t d[19];
    for (int t = 0; t < 19; t++)
        d[t] = t < 7 ? 3 : 4;
    size_t n;
    float *dqkv = attn_fd_setup((icl_attn_shape){1, 19, 2, 1, 16, 0, 0, 0, 0, 0.25f, 0}, d, &n);
    assert_true(fd_check("attention hd 16, T 19", aqkv, n, dqkv, attn_loss) < TOL);
    attn_fd_free(dqkv);
}

/* x rounded to bf16 (vcvtneps2bf16's rounding, bf16.h) when bf, else x */
static double bfr(int bf, double x)
{
    if (!bf)
        return x;
    float f = (float)x, r;
    uint16_t h;
    icl_bf16_from_f32_row(&f, &h, 1);
    icl_bf16_to_f32_row(&h, &r, 1);
    return r;
}

/* Attention in float64, straight from the definition: out [B*T, H*hd],
 * lse [B, H, T], dqkv [B*T, ld] (the q, k and v columns) for upstream dO
 * [B*T, H*hd].  s->bf16: the operands of the products rounded to bf16 as
 * icl_attn_shape.bf16 says (q, k, v and dO as read; P before P v and P^T
 * dO; dS before dS k and dS^T q), all else float64.  cnd (NULL: none;
 * else [B*T, ld], the q and k columns): the scale of dq and dk before the
 * cancellation in dS = P (dP - D), dq and dk's sums with P (|dP| + |D|) in
 * place of dS and |k|, |q|: float32's error in dP - D is relative to it
 * (with one key, dP - D is only the rounding of dO: noise). */
static void attention_f64_cnd(const icl_attn_shape *s, const float *qkv0, const int32_t *doc, const float *dO0,
                              double *out, double *lse, double *dqkv, double *cnd)
{
    int bf = s->bf16;
    size_t nq = (size_t)s->B * s->T * s->ld, no = (size_t)s->B * s->T * s->H * s->hd;
    float *qkv = icl_xmalloc(sizeof(float) * nq), *dO = icl_xmalloc(sizeof(float) * no);
    for (size_t i = 0; i < nq; i++)
        qkv[i] = (float)bfr(bf, qkv0[i]);
    for (size_t i = 0; i < no; i++)
        dO[i] = (float)bfr(bf, dO0[i]);
    int T = s->T, H = s->H, hd = s->hd, grp = s->H / s->KV;
    long ld = s->ld, lo = (long)H * hd;
    double *P = icl_xmalloc(sizeof(double) * T * T);
    memset(dqkv, 0, sizeof(double) * s->B * T * ld);
    if (cnd)
        memset(cnd, 0, sizeof(double) * s->B * T * ld);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / grp;
            const float *q = qkv + (long)b * T * ld + s->qo + (long)h * hd,
                        *k = qkv + (long)b * T * ld + s->ko + (long)g * hd,
                        *v = qkv + (long)b * T * ld + s->vo + (long)g * hd, *dob = dO + (long)b * T * lo + (long)h * hd;
            double *o = out + (long)b * T * lo + (long)h * hd, *dq = dqkv + (long)b * T * ld + s->qo + (long)h * hd,
                   *dk = dqkv + (long)b * T * ld + s->ko + (long)g * hd,
                   *dv = dqkv + (long)b * T * ld + s->vo + (long)g * hd;
            const int32_t *d = doc ? doc + (long)b * T : NULL;
            for (int t = 0; t < T; t++) {
                double m = -1e300, sum = 0;
                for (int u = 0; u <= t; u++) {
                    double x = 0;
                    for (int j = 0; j < hd; j++)
                        x += (double)q[(long)t * ld + j] * k[(long)u * ld + j];
                    P[(long)t * T + u] = x * s->scale;
                    if (!d || d[u] == d[t])
                        m = fmax(m, x * s->scale);
                }
                for (int u = 0; u < T; u++) {
                    double e = (u <= t && (!d || d[u] == d[t])) ? exp(P[(long)t * T + u] - m) : 0;
                    P[(long)t * T + u] = e;
                    sum += e;
                }
                lse[((long)b * H + h) * T + t] = m + log(sum);
                for (int u = 0; u < T; u++)
                    P[(long)t * T + u] /= sum;
                for (int j = 0; j < hd; j++) {
                    double acc = 0;
                    for (int u = 0; u <= t; u++)
                        acc += bfr(bf, P[(long)t * T + u]) * v[(long)u * ld + j];
                    o[(long)t * lo + j] = acc;
                }
            }
            for (int t = 0; t < T; t++) {
                double D = 0; /* from dO as given */
                for (int j = 0; j < hd; j++)
                    D += (double)dO0[(dob - dO) + (long)t * lo + j] * o[(long)t * lo + j];
                for (int u = 0; u <= t; u++) {
                    double p = P[(long)t * T + u], dp = 0;
                    for (int j = 0; j < hd; j++)
                        dp += (double)dob[(long)t * lo + j] * v[(long)u * ld + j];
                    double ds = bfr(bf, p * (dp - D)), pr = bfr(bf, p), cs = s->scale * p * (fabs(dp) + fabs(D));
                    for (int j = 0; j < hd; j++) {
                        dq[(long)t * ld + j] += s->scale * ds * k[(long)u * ld + j];
                        dk[(long)u * ld + j] += s->scale * ds * q[(long)t * ld + j];
                        dv[(long)u * ld + j] += pr * dob[(long)t * lo + j];
                    }
                    if (cnd) {
                        double *cq = cnd + (dq - dqkv), *ck = cnd + (dk - dqkv);
                        for (int j = 0; j < hd; j++) {
                            cq[(long)t * ld + j] += cs * fabs(k[(long)u * ld + j]);
                            ck[(long)u * ld + j] += cs * fabs(q[(long)t * ld + j]);
                        }
                    }
                }
            }
        }
    free(P);
    free(qkv);
    free(dO);
}

static void attention_f64(const icl_attn_shape *s, const float *qkv0, const int32_t *doc, const float *dO0,
                          double *out, double *lse, double *dqkv)
{
    attention_f64_cnd(s, qkv0, doc, dO0, out, lse, dqkv, NULL);
}

/* relative L2 error of x against the reference r over columns [c0, c1) of n rows of stride ld */
static double rel_l2(const float *x, const double *r, int n, long ld, long c0, long c1)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++)
        for (long j = c0; j < c1; j++) {
            double e = x[i * ld + j] - r[i * ld + j];
            num += e * e;
            den += r[i * ld + j] * r[i * ld + j];
        }
    return sqrt(num / (den > 0 ? den : 1));
}

/* One shape through icl_attention_forward/backward with the given kernels
 * (simd 1: AVX-512 where built, 0: generic C) against attention_f64:
 * out and lse to 1e-5 (max abs error over max(1, |value|)), dq, dk and dv
 * each to a relative L2 error of 1e-5. */
static void attention_vs_tol(const char *name, icl_attn_shape s, const int32_t *doc, int simd, double tol);
static void attention_near_paths(icl_attn_shape s, const int32_t *doc);
static void attention_vs_ref(const char *name, icl_attn_shape s, const int32_t *doc, int simd, double tol, int cond);
static void attention_vs_f64(const char *name, icl_attn_shape s, const int32_t *doc, int simd)
{
    attention_vs_tol(name, s, doc, simd, 1e-5);
}

/* attention_vs_f64 to tolerance tol */
static void attention_vs_tol(const char *name, icl_attn_shape s, const int32_t *doc, int simd, double tol)
{
    attention_vs_ref(name, s, doc, simd, tol, 0);
}

/* L2 norm of x - r over columns [c0, c1) of n rows of stride ld, relative
 * to that of c */
static double rel_l2_to(const float *x, const double *r, const double *c, int n, long ld, long c0, long c1)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++)
        for (long j = c0; j < c1; j++) {
            double e = x[i * ld + j] - r[i * ld + j];
            num += e * e;
            den += c[i * ld + j] * c[i * ld + j];
        }
    return sqrt(num / (den > 0 ? den : 1));
}

/* attention_vs_tol; cond 1, for many shapes, each with a chance of a P or
 * dS that float32 and float64 round to neighbouring bf16s: out as a
 * relative L2 error over all of it (not the largest error of one value);
 * dq and dk relative to their scale before the cancellation in dS
 * (attention_f64_cnd), not to themselves: shapes with rows of one or two
 * keys (T 1, one-token documents), where dP - D is mostly the rounding of
 * dO and float32's error in it moves dS by more than a bf16 step (not a
 * kernel's error; the float32 kernels' too); and no check against the
 * unrounded reference (attention_bf16_amx has it). */
static void attention_vs_ref(const char *name, icl_attn_shape s, const int32_t *doc, int simd, double tol, int cond)
{
    s.ko = s.H * s.hd;
    s.vo = s.ko + s.KV * s.hd;
    s.ld = s.vo + s.KV * s.hd;
    int N = s.B * s.T;
    long ld = s.ld, lo = (long)s.H * s.hd;
    size_t nl = (size_t)s.B * s.H * s.T;
    float *qkv = rnd((size_t)N * ld, 2.0f), *dO = rnd((size_t)N * lo, 1), *out = icl_xmalloc(sizeof(float) * N * lo),
          *lse = icl_xmalloc(sizeof(float) * nl), *dqkv = icl_xmalloc(sizeof(float) * N * ld);
    double *ro = icl_xmalloc(sizeof(double) * N * lo), *rl = icl_xmalloc(sizeof(double) * nl),
           *rd = icl_xmalloc(sizeof(double) * N * ld), *rc = cond ? icl_xmalloc(sizeof(double) * N * ld) : NULL;
    for (long i = 0; i < N * lo; i++) /* what the kernels leave unwritten shows */
        out[i] = NAN;
    for (size_t i = 0; i < nl; i++)
        lse[i] = NAN;
    for (long i = 0; i < N * ld; i++)
        dqkv[i] = NAN;
    int was = icl_attention_set_simd(simd);
    icl_attention_forward(out, lo, lse, qkv, doc, &s);
    icl_attention_backward(dqkv, dO, lo, out, lo, lse, qkv, doc, &s);
    icl_attention_set_simd(was);
    attention_f64_cnd(&s, qkv, doc, dO, ro, rl, rd, rc);
    double fo = 0, fl = 0;
    for (long i = 0; i < N * lo; i++)
        fo = fmax(fo, fabs(out[i] - ro[i]) / fmax(1, fabs(ro[i])));
    if (cond) /* one P on a bf16 midpoint, rounded the other way, moves an output by up to 2^-8 P |v|: over all */
        fo = rel_l2(out, ro, N, lo, 0, lo);
    for (size_t i = 0; i < nl; i++)
        fl = fmax(fl, fabs(lse[i] - rl[i]) / fmax(1, fabs(rl[i])));
    double eq = cond ? rel_l2_to(dqkv, rd, rc, N, ld, 0, s.ko) : rel_l2(dqkv, rd, N, ld, 0, s.ko),
           ek = cond ? rel_l2_to(dqkv, rd, rc, N, ld, s.ko, s.vo) : rel_l2(dqkv, rd, N, ld, s.ko, s.vo),
           ev = rel_l2(dqkv, rd, N, ld, s.vo, ld);
    print_message("# %-34s %s: out %.1e lse %.1e dq %.1e dk %.1e dv %.1e\n", name,
                  simd && icl_attention_set_simd(-1) ? "simd   " : "generic", fo, fl, eq, ek, ev);
    assert_true(fo < tol);
    assert_true(fl < tol);
    assert_true(eq < tol && ek < tol && ev < tol);
    if (s.bf16 && !cond) { /* the roundings matter: against the unrounded float64 the gradients are off by far more */
        icl_attn_shape s0 = s;
        s0.bf16 = 0;
        attention_f64(&s0, qkv, doc, dO, ro, rl, rd);
        double e0 = fmax(rel_l2(dqkv, rd, N, ld, 0, s.ko), fmax(rel_l2(dqkv, rd, N, ld, s.ko, s.vo),
                                                                 rel_l2(dqkv, rd, N, ld, s.vo, ld)));
        print_message("#   against float64 unrounded: dqkv rel L2 %.1e\n", e0);
        assert_true(e0 > 5 * tol);
    }
    free(qkv); free(dO); free(out); free(lse); free(dqkv); free(ro); free(rl); free(rd); free(rc);
}

/* Odd shapes against float64, through both kernel sets: T not a multiple
 * of the 16-row tiles, several documents per row (key ranges, and ids that
 * come back: a test per key), padding, GQA, hd 64 (SmolLM2), 24 (the
 * generic P v / dq / dk / dv loops) and 8. */
static void attention_kernels_f64(void **state)
{
    (void)state;
    int32_t *doc = icl_xmalloc(sizeof(int32_t) * 3 * 150);
    for (int simd = 1; simd >= 0; simd--) {
        /* SmolLM2's heads (9 / 3 of 64), T 37: row 0 three packed documents, row 1 one then padding */
        for (int t = 0; t < 37; t++) {
            doc[t] = t < 10 ? 0 : t < 30 ? 1 : 2;
            doc[37 + t] = t < 33 ? 5 : -1;
        }
        attention_vs_f64("B 2 T 37 H 9/3 hd 64, docs", (icl_attn_shape){2, 37, 9, 3, 64, 0, 0, 0, 0, 0.125f, 0}, doc,
                         simd);
        attention_vs_f64("B 1 T 70 H 2/2 hd 16, no doc ids", (icl_attn_shape){1, 70, 2, 2, 16, 0, 0, 0, 0, 0.25f, 0},
                         NULL, simd);
        for (int t = 0; t < 33; t++) {
            doc[t] = t / 11;
            doc[33 + t] = (t >= 5 && t < 20) ? 2 : 1; /* 1 comes back after 2 */
        }
        attention_vs_f64("B 2 T 33 H 6/2 hd 24, docs resumed", (icl_attn_shape){2, 33, 6, 2, 24, 0, 0, 0, 0, 0.2f, 0}, doc,
                         simd);
        for (int t = 0; t < 150; t++) {
            doc[t] = t < 64 ? 0 : t < 65 ? 1 : 2; /* a one-token document on a tile edge */
            doc[150 + t] = 9;
            doc[300 + t] = t < 149 ? 4 : -1;
        }
        attention_vs_f64("B 3 T 150 H 4/2 hd 8, docs", (icl_attn_shape){3, 150, 4, 2, 8, 0, 0, 0, 0, 0.35f, 0}, doc, simd);
    }
    free(doc);
}

/* bf16 operands (icl_attn_shape.bf16): on AMX or AVX512-BF16, against
 * float64 with the same roundings (attention_f64), to 3e-4: what is left
 * is float32's softmax and sums, and a P or dS rounded to the neighbouring
 * bf16 where float32 and float64 straddle a rounding boundary (2^-8 of one
 * term); against the unrounded float64 the errors are many times larger
 * (the test prints both), so a missing rounding fails it.  Where neither
 * is available, bf16 asks for nothing else: the float32 kernels' bits.
 * Where both are, the AVX512-BF16 kernels (AMX turned off) within 1e-5 of
 * the AMX ones, relative to the largest |value|: the same operands, the
 * sums in another order. */
static void attention_bf16_amx(void **state)
{
    (void)state;
    int32_t *doc = icl_xmalloc(sizeof(int32_t) * 3 * 150);
    for (int t = 0; t < 37; t++) {
        doc[t] = t < 10 ? 0 : t < 30 ? 1 : 2;
        doc[37 + t] = t < 33 ? 5 : -1;
    }
    icl_attn_shape a = {2, 37, 9, 3, 64, 0, 0, 0, 0, 0.125f, 1};
    for (int t = 0; t < 150; t++) {
        doc[150 + t] = t < 64 ? 0 : t < 65 ? 1 : 2;
        doc[300 + t] = t < 149 ? 4 : -1;
    }
    icl_attn_shape b = {2, 150, 4, 2, 32, 0, 0, 0, 0, 0.35f, 1}, c = {1, 70, 2, 1, 128, 0, 0, 0, 0, 0.09f, 1};
    /* out and dqkv of shape a on 1 and 2 threads, bf16 and float32 */
    icl_attn_shape r = a;
    r.ko = r.H * r.hd, r.vo = r.ko + r.KV * r.hd, r.ld = r.vo + r.KV * r.hd;
    size_t N = (size_t)r.B * r.T, lo = (size_t)r.H * r.hd, no = N * lo + N * r.ld;
    float *qkv = rnd(N * r.ld, 2.0f), *dO = rnd(N * lo, 1), *lse = icl_xmalloc(sizeof(float) * r.B * r.H * r.T);
    float *res[3];
    for (int v = 0; v < 3; v++) { /* bf16 1 thread, bf16 2 threads, float32 */
        res[v] = icl_xmalloc(sizeof(float) * no);
        r.bf16 = v < 2;
        icl_set_threads(v == 0 ? 1 : 2);
        icl_attention_forward(res[v], (long)lo, lse, qkv, doc, &r);
        icl_attention_backward(res[v] + N * lo, dO, (long)lo, res[v], (long)lo, lse, qkv, doc, &r);
    }
    icl_set_threads(0);
    assert_memory_equal(res[0], res[1], sizeof(float) * no);
    int same32 = !memcmp(res[0], res[2], sizeof(float) * no);
    print_message("# bf16 attention: 1 and 2 threads the same bits; %s the float32 kernels'\n",
                  same32 ? "equal to" : "not");
    assert_int_equal(same32, !icl_attention_bf16_kernels(64));
    for (int v = 0; v < 3; v++)
        free(res[v]);
    free(qkv);
    free(dO);
    free(lse);
    for (int path = 0; path < 2; path++) { /* the best path here; then AVX512-BF16 alone where there is AMX */
        if (path)
            icl_bf16_force_path(ICL_BF16_NO_AMX);
        if (icl_attention_bf16_kernels(64)) {
            print_message("# bf16 attention on %s\n", icl_attention_bf16_kernels(64) == 2 ? "AMX-BF16" : "AVX512-BF16");
            attention_vs_tol("bf16 B 2 T 37 H 9/3 hd 64, docs", a, doc, 1, 3e-4);
            attention_vs_tol("bf16 B 2 T 150 H 4/2 hd 32, docs", b, doc + 150, 1, 3e-4);
            attention_vs_tol("bf16 B 1 T 70 H 2/1 hd 128, no doc", c, NULL, 1, 3e-4);
        } else if (!path) {
            print_message("# no AMX-BF16 or AVX512-BF16 here: bf16 attention is the float32 kernels'\n");
        }
        icl_bf16_force_path(ICL_BF16_BEST);
        if (!icl_bf16_amx_active() || !icl_bf16_native())
            break;
    }
    if (icl_bf16_amx_active()) /* AMX against vdpbf16ps: sums in another order */
        attention_near_paths(b, doc + 150);
    free(doc);
}

/* out, lse and dqkv of shape s (ko, vo, ld set) on the given thread count,
 * into fresh buffers filled with NaN first (a value the kernels leave
 * unwritten shows). */
static void attn_run(const icl_attn_shape *s, const float *qkv, const float *dO, const int32_t *doc, int threads,
                     float **out, float **lse, float **dqkv)
{
    size_t N = (size_t)s->B * s->T, lo = (size_t)s->H * s->hd, nl = (size_t)s->B * s->H * s->T;
    *out = icl_xmalloc(sizeof(float) * N * lo), *lse = icl_xmalloc(sizeof(float) * nl);
    *dqkv = icl_xmalloc(sizeof(float) * N * s->ld);
    for (size_t i = 0; i < N * lo; i++)
        (*out)[i] = NAN;
    for (size_t i = 0; i < nl; i++)
        (*lse)[i] = NAN;
    for (size_t i = 0; i < N * s->ld; i++)
        (*dqkv)[i] = NAN;
    icl_set_threads(threads);
    icl_attention_forward(*out, (long)lo, *lse, qkv, doc, s);
    icl_attention_backward(*dqkv, dO, (long)lo, *out, (long)lo, *lse, qkv, doc, s);
    icl_set_threads(0);
}

/* Whether shapes s and r (r: s with other settings) give the same bits, each
 * on the given thread count */
static int attn_same(icl_attn_shape s, icl_attn_shape r, const int32_t *doc, int ts, int tr)
{
    s.ko = s.H * s.hd, s.vo = s.ko + s.KV * s.hd, s.ld = s.vo + s.KV * s.hd;
    r.ko = s.ko, r.vo = s.vo, r.ld = s.ld;
    size_t N = (size_t)s.B * s.T, lo = (size_t)s.H * s.hd, nl = (size_t)s.B * s.H * s.T;
    float *qkv = rnd(N * s.ld, 2.0f), *dO = rnd(N * lo, 1), *o[2], *l[2], *d[2];
    attn_run(&s, qkv, dO, doc, ts, &o[0], &l[0], &d[0]);
    attn_run(&r, qkv, dO, doc, tr, &o[1], &l[1], &d[1]);
    int same = !memcmp(o[0], o[1], sizeof(float) * N * lo) && !memcmp(l[0], l[1], sizeof(float) * nl) &&
               !memcmp(d[0], d[1], sizeof(float) * N * s.ld);
    for (int i = 0; i < 2; i++)
        free(o[i]), free(l[i]), free(d[i]);
    free(qkv);
    free(dO);
    return same;
}

/* Where AMX and AVX512-BF16 both run: bf16 attention of shape s on AMX
 * tiles and on vdpbf16ps (AMX turned off), out, lse and dqkv within 1e-5 of
 * each array's largest |value| (the same bf16 operands, float32 sums in
 * another order; a wrong operand or layout gives O(1)). */
static void attention_near_paths(icl_attn_shape s, const int32_t *doc)
{
    s.ko = s.H * s.hd, s.vo = s.ko + s.KV * s.hd, s.ld = s.vo + s.KV * s.hd;
    size_t N = (size_t)s.B * s.T, lo = (size_t)s.H * s.hd, nl = (size_t)s.B * s.H * s.T;
    float *qkv = rnd(N * s.ld, 2.0f), *dO = rnd(N * lo, 1), *o[2], *l[2], *d[2];
    attn_run(&s, qkv, dO, doc, 2, &o[0], &l[0], &d[0]);
    icl_bf16_force_path(ICL_BF16_NO_AMX);
    assert_int_equal(icl_attention_bf16_kernels(s.hd), 1);
    attn_run(&s, qkv, dO, doc, 2, &o[1], &l[1], &d[1]);
    icl_bf16_force_path(ICL_BF16_BEST);
    const float *a[3][2] = {{o[0], o[1]}, {l[0], l[1]}, {d[0], d[1]}};
    size_t n[3] = {N * lo, nl, N * s.ld};
    for (int k = 0; k < 3; k++) {
        double mx = 0, err = 0;
        for (size_t i = 0; i < n[k]; i++) {
            mx = fabs(a[k][0][i]) > mx ? fabs(a[k][0][i]) : mx;
            err = fabs((double)a[k][0][i] - a[k][1][i]) > err ? fabs((double)a[k][0][i] - a[k][1][i]) : err;
        }
        print_message("# AMX against AVX512-BF16 (%s): largest difference %.3g of %.3g\n",
                      k == 0 ? "out" : k == 1 ? "lse" : "dqkv", err, mx);
        assert_true(err <= 1e-5 * mx);
    }
    for (int i = 0; i < 2; i++)
        free(o[i]), free(l[i]), free(d[i]);
    free(qkv);
    free(dO);
}

/* Row b of doc [B, T] in pattern p: 0 one document (as doc NULL, through
 * the ranges), 1 packed documents with edges on the 16-query tiles and
 * 64-query blocks (16, 17: a one-token document; 32, 64) then padding, 2
 * every token its own document (more than 8 per tile: k0 = 0, rows of one
 * key), 3 ids that come back (a test per key), 4 edges just off the blocks
 * (31, 63, 65) and a trailing one-token document, 5 two documents in turns
 * of 16 (0 1 0 0 1 0 ...): a 64-query block whose later tiles reach keys
 * before its first tile's. */
static void doc_pattern(int32_t *d, int T, int p)
{
    for (int t = 0; t < T; t++)
        switch (p) {
        case 0: d[t] = 3; break;
        case 1: d[t] = t < 16 ? 0 : t < 17 ? 1 : t < 32 ? 2 : t < 64 ? 3 : t < T - 3 ? 4 : -1; break;
        case 2: d[t] = t; break;
        case 3: d[t] = (t / 5) % 2 + 1; break;
        case 4: d[t] = t < 31 ? 0 : t < 63 ? 1 : t < 65 ? 2 : t < T - 1 ? 3 : 4; break;
        default: d[t] = (t / 16) % 3 == 1; break;
        }
}

/* bf16 attention at the edge shapes of its kernels (AMX tiles, or
 * AVX512-BF16; where there are both, each): T around the 16-row tiles,
 * 32-key pairs and 64-query blocks of dk and dv (1 .. 200), hd 32, 64 and
 * 96 (not a multiple of the 64-column output tiles), GQA 1, 3 and 4, the
 * document patterns above (doc_pattern); each against float64 with the
 * same roundings (attention_vs_ref, outputs filled with NaN first) and on
 * 1, 2 and 3 threads to the same bits.  Where no bf16 kernel applies (hd
 * not a multiple of 32, or over 256; the path forced portable; the generic
 * C kernels) bf16 must be the float32 kernels' bits. */
static void attention_bf16_edges(void **state)
{
    (void)state;
    static const int Ts[] = {1, 2, 15, 17, 31, 33, 63, 65, 200}, hds[] = {32, 96, 64}, grps[] = {1, 3, 4};
    int32_t *doc = icl_xmalloc(sizeof(int32_t) * 2 * 200);
    int bfk = icl_attention_bf16_kernels(32), paths = bfk == 2 && icl_bf16_native() ? 2 : 1;
    for (int path = 0; path < paths; path++) {
        if (path)
            icl_bf16_force_path(ICL_BF16_NO_AMX);
        for (int i = 0; i < 9; i++)
            for (int p = 0; p < 6; p++) {
                int T = Ts[i], hd = hds[(i + p) % 3], grp = grps[(i + 2 * p) % 3], KV = 1 + (p & 1);
                doc_pattern(doc, T, p);
                doc_pattern(doc + T, T, (p + 2) % 6);
                icl_attn_shape s = {2, T, grp * KV, KV, hd, 0, 0, 0, 0, 1.0f / sqrtf((float)hd), 1};
                char name[64];
                if (p)
                    snprintf(name, sizeof name, "bf16 T %d hd %d H %d/%d docs %d,%d", T, hd, s.H, KV, p, (p + 2) % 6);
                else
                    snprintf(name, sizeof name, "bf16 T %d hd %d H %d/%d no doc ids", T, hd, s.H, KV);
                if (bfk)
                    attention_vs_ref(name, s, p == 0 ? NULL : doc, 1, 1e-3, 1);
                for (int th = 2; th <= 3; th++)
                    assert_true(attn_same(s, s, p == 0 ? NULL : doc, 1, th));
            }
        icl_bf16_force_path(ICL_BF16_BEST);
    }
    /* the thread counts on shapes large enough for the parallel loops
     * (B KV T hd >= ICL_PAR_MIN, backward too) */
    for (int p = 1; p < 6; p += 2) {
        icl_attn_shape s = {2, 200, 12, 3, 96, 0, 0, 0, 0, 0.1f, 1};
        doc_pattern(doc, 200, p);
        doc_pattern(doc + 200, 200, (p + 1) % 6);
        assert_true(attn_same(s, s, doc, 1, 2));
        assert_true(attn_same(s, s, doc, 1, 3));
        if (bfk)
            attention_vs_ref("bf16 B 2 T 200 H 12/3 hd 96", s, doc, 1, 1e-3, 1);
    }
    /* where no bf16 kernel applies: the float32 kernels' bits */
    for (int i = 0; i < 4; i++) {
        static const int fh[] = {48, 16, 80, 288};
        icl_attn_shape s = {2, 65, 4, 2, fh[i], 0, 0, 0, 0, 0.2f, 1}, f = s;
        f.bf16 = 0;
        doc_pattern(doc, 65, 1);
        doc_pattern(doc + 65, 65, 3);
        assert_true(attn_same(s, f, doc, 2, 2));
    }
    icl_attn_shape s = {2, 65, 6, 2, 64, 0, 0, 0, 0, 0.125f, 1}, f = s;
    f.bf16 = 0;
    icl_bf16_force_path(ICL_BF16_PORTABLE);
    assert_int_equal(icl_attention_bf16_kernels(64), 0);
    assert_true(attn_same(s, f, doc, 2, 2));
    icl_bf16_force_path(ICL_BF16_NO_AMX);
    assert_false(icl_bf16_amx_active());
    assert_int_equal(icl_attention_bf16_kernels(64), bfk ? 1 : 0);
    assert_int_equal(attn_same(s, f, doc, 2, 2), !bfk);
    icl_bf16_force_path(ICL_BF16_BEST);
    int was = icl_attention_set_simd(0);
    assert_int_equal(icl_attention_bf16_kernels(64), 0);
    assert_true(attn_same(s, f, doc, 2, 2));
    icl_attention_set_simd(was);
    assert_int_equal(icl_attention_bf16_kernels(64), bfk);
    if (bfk)
        assert_false(attn_same(s, f, doc, 2, 2));
    free(doc);
}

/* The same bits for 1, 2 and 3 threads (each (b, h) forward and (b, kv
 * head) backward is one thread's, summed in a fixed order), and the AVX-512
 * kernels against the generic loops (the same multiply-adds in the same
 * order: equal to float rounding, reported bit for bit). */
static void attention_threads_kernels(void **state)
{
    (void)state;
    icl_attn_shape s = {4, 100, 9, 3, 64, 0, 0, 0, 0, 0.125f, 0};
    s.ko = s.H * s.hd;
    s.vo = s.ko + s.KV * s.hd;
    s.ld = s.vo + s.KV * s.hd;
    int T = s.T, N = s.B * T;
    long ld = s.ld, lo = (long)s.H * s.hd;
    size_t nq = (size_t)N * ld, no = (size_t)N * lo, nl = (size_t)s.B * s.H * T;
    int32_t *doc = icl_xmalloc(sizeof(int32_t) * N);
    for (int t = 0; t < N; t++)
        doc[t] = (t % T) / 23 + t / T * 10;
    float *qkv = rnd(nq, 2.0f), *dO = rnd(no, 1), *o[4], *l[4], *d[4];
    for (int r = 0; r < 4; r++) {
        o[r] = icl_xmalloc(no * 4), l[r] = icl_xmalloc(nl * 4), d[r] = icl_xcalloc(nq, 4);
        int was = icl_attention_set_simd(r < 3);
        icl_set_threads(r < 3 ? r + 1 : 2);
        icl_attention_forward(o[r], lo, l[r], qkv, doc, &s);
        icl_attention_backward(d[r], dO, lo, o[r], lo, l[r], qkv, doc, &s);
        icl_attention_set_simd(was);
    }
    icl_set_threads(0);
    for (int r = 1; r < 3; r++) {
        assert_memory_equal(o[0], o[r], no * 4);
        assert_memory_equal(l[0], l[r], nl * 4);
        assert_memory_equal(d[0], d[r], nq * 4);
    }
    size_t same = 0;
    double num = 0, den = 0;
    for (size_t i = 0; i < nq; i++) {
        same += d[0][i] == d[3][i];
        num += ((double)d[0][i] - d[3][i]) * ((double)d[0][i] - d[3][i]);
        den += (double)d[3][i] * d[3][i];
    }
    for (size_t i = 0; i < no; i++)
        same += o[0][i] == o[3][i];
    print_message("# attention simd vs generic: %zu of %zu values identical, dqkv rel L2 %.1e\n", same, nq + no,
                  sqrt(num / den));
    assert_true(sqrt(num / den) < 1e-6);
    for (size_t i = 0; i < no; i++)
        assert_true(fabs(o[0][i] - o[3][i]) <= 1e-6 * fmax(1, fabs(o[3][i])));
    free(doc); free(qkv); free(dO);
    for (int r = 0; r < 4; r++)
        free(o[r]), free(l[r]), free(d[r]);
}

/* ------------------------------------------------------------ activations, cross-entropy */
/* Attention over several query blocks (T > the kernel's 64-row blocks), with
 * packed documents and GQA, against a float64 reference of the forward and of
 * the backward (dS = P (dP - rowsum(dO o)), dq = scale dS k, dk = scale dS^T q,
 * dv = P^T dO). */
static void attention_reference(void **state)
{
    (void)state;
    icl_attn_shape s = {2, 150, 4, 2, 8, 0, 0, 0, 0, 0.35f, 0};
    s.ko = s.H * s.hd;
    s.vo = s.ko + s.KV * s.hd;
    s.ld = s.vo + s.KV * s.hd;
    int T = s.T, B = s.B, H = s.H, hd = s.hd, grp = H / s.KV;
    long ld = s.ld, lo = (long)H * hd;
    int32_t *doc = icl_xmalloc(sizeof(int32_t) * B * T);
    for (int t = 0; t < T; t++) {
        doc[t] = t < 70 ? 0 : t < 100 ? 1 : 2; /* three packed documents, one across a block edge */
        doc[T + t] = t >= 140 ? -1 : (t >= 90 && t < 120) ? 8 : 7; /* 7 resumes after 8, then padding */
    }
    float *qkv = rnd((size_t)B * T * ld, 1.5f), *out = icl_xmalloc(sizeof(float) * B * T * lo),
          *lse = icl_xmalloc(sizeof(float) * B * H * T), *dO = rnd((size_t)B * T * lo, 1),
          *dqkv = icl_xmalloc(sizeof(float) * B * T * ld);
    icl_attention_forward(out, lo, lse, qkv, doc, &s);
    icl_attention_backward(dqkv, dO, lo, out, lo, lse, qkv, doc, &s);
    double *ref = icl_xcalloc((size_t)B * T * ld, sizeof(double)), *P = icl_xmalloc(sizeof(double) * T * T),
           *o = icl_xmalloc(sizeof(double) * T * hd);
    double ferr = 0, fmaxv = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / grp;
            const float *q = qkv + (long)b * T * ld + (long)h * hd, *k = qkv + (long)b * T * ld + s.ko + (long)g * hd,
                        *v = qkv + (long)b * T * ld + s.vo + (long)g * hd, *dob = dO + (long)b * T * lo + (long)h * hd;
            double *dq = ref + (long)b * T * ld + (long)h * hd, *dk = ref + (long)b * T * ld + s.ko + (long)g * hd,
                   *dv = ref + (long)b * T * ld + s.vo + (long)g * hd;
            const int32_t *d = doc + (long)b * T;
            for (int t = 0; t < T; t++) {
                double m = -1e300, sum = 0;
                for (int u = 0; u <= t; u++)
                    if (d[u] == d[t]) {
                        double x = 0;
                        for (int j = 0; j < hd; j++)
                            x += (double)q[(long)t * ld + j] * k[(long)u * ld + j];
                        P[(long)t * T + u] = x * s.scale;
                        m = fmax(m, x * s.scale);
                    }
                for (int u = 0; u < T; u++) {
                    double e = (u <= t && d[u] == d[t]) ? exp(P[(long)t * T + u] - m) : 0;
                    P[(long)t * T + u] = e;
                    sum += e;
                }
                for (int u = 0; u < T; u++)
                    P[(long)t * T + u] /= sum;
                for (int j = 0; j < hd; j++) {
                    double acc = 0;
                    for (int u = 0; u <= t; u++)
                        acc += P[(long)t * T + u] * v[(long)u * ld + j];
                    o[(long)t * hd + j] = acc;
                    ferr = fmax(ferr, fabs(acc - out[((long)b * T + t) * lo + (long)h * hd + j]));
                    fmaxv = fmax(fmaxv, fabs(acc));
                }
            }
            for (int t = 0; t < T; t++) {
                double D = 0;
                for (int j = 0; j < hd; j++)
                    D += (double)dob[(long)t * lo + j] * o[(long)t * hd + j];
                for (int u = 0; u <= t; u++) {
                    double p = P[(long)t * T + u];
                    if (p == 0)
                        continue;
                    double dp = 0;
                    for (int j = 0; j < hd; j++)
                        dp += (double)dob[(long)t * lo + j] * v[(long)u * ld + j];
                    double ds = p * (dp - D);
                    for (int j = 0; j < hd; j++) {
                        dq[(long)t * ld + j] += s.scale * ds * k[(long)u * ld + j];
                        dk[(long)u * ld + j] += s.scale * ds * q[(long)t * ld + j];
                        dv[(long)u * ld + j] += p * dob[(long)t * lo + j];
                    }
                }
            }
        }
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)B * T * ld; i++) {
        num += (ref[i] - dqkv[i]) * (ref[i] - dqkv[i]);
        den += ref[i] * ref[i];
    }
    print_message("# attention T=150 vs float64: forward max err %.2e (max %.2f), backward rel L2 err %.2e\n", ferr,
                  fmaxv, sqrt(num / den));
    assert_true(ferr < 1e-5 * fmax(1, fmaxv));
    assert_true(sqrt(num / den) < 1e-5);
    free(doc); free(qkv); free(out); free(lse); free(dO); free(dqkv); free(ref); free(P); free(o);
}

/* The softmax loops over a key range (rows whose documents are contiguous
 * runs, or no doc at all) against the loops that test every key (taken
 * when any row of the batch has a document that comes back after another):
 * the same rows through both give the same bits, forward and backward. */
static void attention_ranged_exact(void **state)
{
    (void)state;
    icl_attn_shape s = {4, 200, 4, 2, 16, 0, 0, 0, 0, 0.25f, 0};
    s.ko = s.H * s.hd;
    s.vo = s.ko + s.KV * s.hd;
    s.ld = s.vo + s.KV * s.hd;
    int T = s.T, B = s.B, H = s.H;
    long ld = s.ld, lo = (long)H * s.hd;
    int32_t *doc = icl_xmalloc(sizeof(int32_t) * B * T);
    for (int t = 0; t < T; t++) {
        doc[t] = t < 70 ? 0 : t < 120 ? 1 : t < 180 ? 2 : -1; /* packed, runs across blocks, padding */
        doc[T + t] = 0;                                      /* one document */
        doc[2 * T + t] = t < 150 ? 3 : -1;                   /* one document, then padding */
        doc[3 * T + t] = (t >= 40 && t < 90) ? 8 : 7;        /* 7 resumes after 8: every key tested */
    }
    size_t nq = (size_t)B * T * ld, no = (size_t)B * T * lo, nl = (size_t)B * H * T;
    float *qkv = rnd(nq, 2.0f), *dO = rnd(no, 1);
    float *o1 = icl_xmalloc(no * 4), *l1 = icl_xmalloc(nl * 4), *d1 = icl_xmalloc(nq * 4);
    float *o2 = icl_xmalloc(no * 4), *l2 = icl_xmalloc(nl * 4), *d2 = icl_xmalloc(nq * 4);
    float *o3 = icl_xmalloc(no * 4), *l3 = icl_xmalloc(nl * 4), *d3 = icl_xmalloc(nq * 4);
    icl_attention_forward(o1, lo, l1, qkv, doc, &s); /* row 3: every key tested, for all rows */
    icl_attention_backward(d1, dO, lo, o1, lo, l1, qkv, doc, &s);
    icl_attn_shape s3 = s;
    s3.B = 3; /* rows 0-2 alone: key ranges */
    icl_attention_forward(o2, lo, l2, qkv, doc, &s3);
    icl_attention_backward(d2, dO, lo, o2, lo, l2, qkv, doc, &s3);
    assert_memory_equal(o1, o2, (size_t)3 * T * lo * 4);
    assert_memory_equal(l1, l2, (size_t)3 * H * T * 4);
    assert_memory_equal(d1, d2, (size_t)3 * T * ld * 4);
    icl_attn_shape s1 = s;
    s1.B = 1; /* row 1 without doc ids */
    icl_attention_forward(o3, lo, l3, qkv + (size_t)T * ld, NULL, &s1);
    icl_attention_backward(d3, dO + (size_t)T * lo, lo, o3, lo, l3, qkv + (size_t)T * ld, NULL, &s1);
    assert_memory_equal(o1 + (size_t)T * lo, o3, (size_t)T * lo * 4);
    assert_memory_equal(l1 + (size_t)H * T, l3, (size_t)H * T * 4);
    assert_memory_equal(d1 + (size_t)T * ld, d3, (size_t)T * ld * 4);
    free(doc); free(qkv); free(dO);
    free(o1); free(l1); free(d1); free(o2); free(l2); free(d2); free(o3); free(l3); free(d3);
}

static int AN = 3, AI = 10;
static float *gx, *gy, *gR;
static double swiglu_loss(void)
{
    icl_swiglu_forward(gy, gx, 2 * AI, AN, AI);
    return dot(gy, gR, (size_t)AN * AI);
}
static double gelu_loss(void)
{
    icl_gelu_forward(gy, gx, (size_t)AN * AI);
    return dot(gy, gR, (size_t)AN * AI);
}
static int32_t xt[3] = {1, 7, 3};
static double xent_loss(void)
{
    float *c = icl_xmalloc((size_t)AN * AI * 4);
    memcpy(c, gx, (size_t)AN * AI * 4);
    double l = icl_xent_rows(c, AI, AN, AI, xt, NULL, 0);
    free(c);
    return l;
}
static void activations_fd(void **state)
{
    (void)state;
    gx = rnd((size_t)AN * 2 * AI, 3);
    gy = icl_xmalloc((size_t)AN * AI * 4);
    gR = rnd((size_t)AN * AI, 1);
    float *d = icl_xmalloc((size_t)AN * 2 * AI * 4);
    swiglu_loss();
    icl_swiglu_backward(d, 2 * AI, gR, gx, 2 * AI, AN, AI);
    assert_true(fd_check("swiglu dg,du", gx, (size_t)AN * 2 * AI, d, swiglu_loss) < TOL);
    icl_gelu_backward(d, gR, gx, (size_t)AN * AI);
    assert_true(fd_check("gelu_new dx", gx, (size_t)AN * AI, d, gelu_loss) < TOL);
    /* cross-entropy: the gradient rows, the loss against a double reference, and huge logits */
    memcpy(d, gx, (size_t)AN * AI * 4);
    float loss[3];
    double tot = icl_xent_rows(d, AI, AN, AI, xt, loss, 1.0f);
    assert_true(fd_check("cross-entropy dlogits", gx, (size_t)AN * AI, d, xent_loss) < TOL);
    double ref = 0;
    for (int i = 0; i < AN; i++) {
        double mx = -1e30, s = 0;
        for (int j = 0; j < AI; j++)
            mx = fmax(mx, gx[i * AI + j]);
        for (int j = 0; j < AI; j++)
            s += exp(gx[i * AI + j] - mx);
        double li = mx + log(s) - gx[i * AI + xt[i]];
        assert_float_equal(loss[i], li, 1e-5);
        ref += li;
    }
    assert_float_equal(tot, ref, 1e-5);
    float big[4] = {1e4f, -1e4f, 3e4f, 0};
    int32_t t1 = 0;
    double lb = icl_xent_rows(big, 4, 1, 4, &t1, NULL, 1.0f);
    assert_float_equal(lb, 2e4, 1e-2);
    assert_true(isfinite(big[0]) && isfinite(big[2]));
    free(gx); free(gy); free(gR); free(d);
}

static void expf_accuracy(void **state)
{
    (void)state;
    double worst = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
        double r = exp((double)x), e = fabs(icl_expf(x) - r) / r;
        worst = fmax(worst, e);
    }
    print_message("# icl_expf max rel err %.2e\n", worst);
    assert_true(worst < 3e-7);
    assert_true(icl_expf(-INFINITY) >= 0 && icl_expf(-INFINITY) < 1e-37);
}

/* A vocabulary-sized row whose softmax has one dominant entry and a long
 * tail: the loss of the dominant token is log(1 + tail), about 1.6e-4.  A
 * float sum of the exps drops every tail term below half an ulp of the
 * running sum (about 6e-8 once it is near 1): summed one by one (what the
 * sanitizer build's unvectorised loop did) it lost all of the tail, with
 * 16 lanes (the -O3 build) a sixteenth of it; the sum must be exact to
 * float precision whatever the compiler does with the loop. */
static void xent_long_tail(void **state)
{
    (void)state;
    enum { V = 49152 };
    float *r = icl_xmalloc(V * sizeof *r), *c = icl_xmalloc(V * sizeof *c);
    uint64_t st = 5;
    for (int j = 0; j < V; j++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        r[j] = (float)((double)(st >> 40) / (double)(1ULL << 24)) * 2.0f - 1.0f; /* U(-1, 1) */
    }
    int32_t t = 1234;
    r[t] = 20.0f;
    double mx = 20, s = 0;
    for (int j = 0; j < V; j++)
        s += exp((double)r[j] - mx);
    double ref = mx + log(s) - r[t];
    assert_true(ref > 1e-4 && ref < 3e-4);
    float loss;
    memcpy(c, r, V * sizeof *c);
    double got = icl_xent_rows(c, V, 1, V, &t, &loss, 1.0f);
    if (!(fabs(got - ref) <= 1e-7 + 1e-6 * ref) || !(fabs(loss - ref) <= 1e-7))
        fail_msg("loss %.9g (row %.9g), double reference %.9g", got, (double)loss, ref);
    /* the gradient: softmax - onehot; its entries sum to 0 */
    double gs = 0;
    for (int j = 0; j < V; j++)
        gs += c[j];
    assert_true(fabs(gs) < 1e-6);
    assert_float_equal(c[t], exp(r[t] - (mx + log(s))) - 1, 4e-6); /* r[t] - lse in float: 2 ulp of 20 */
    free(r);
    free(c);
}

int main(void)
{
    icl_blis_setup();
    icl_set_threads(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_fd), cmocka_unit_test(norms_fd), cmocka_unit_test(rope_fd),
        cmocka_unit_test(attention_fd), cmocka_unit_test(attention_reference),
        cmocka_unit_test(attention_ranged_exact), cmocka_unit_test(attention_fd_hd16),
        cmocka_unit_test(attention_kernels_f64), cmocka_unit_test(attention_bf16_amx), cmocka_unit_test(attention_bf16_edges), cmocka_unit_test(attention_threads_kernels), cmocka_unit_test(activations_fd), cmocka_unit_test(xent_long_tail),
        cmocka_unit_test(expf_accuracy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
