/* qdot.c - quantized weight rows times 8-bit activations.  See qdot.h.
 *
 * Three code paths with one order of operations: portable C (below), AVX2
 * and AVX-512 VNNI (qdot_simd.h, compiled twice under target pragmas so a
 * PORTABLE=1 build has them too), picked at run time from the CPU. */
#include "qdot.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "safetensors.h"
#include "util.h"

#define QD_RB 4 /* rows of x per pass over a weight row */

/* Eight activation rows' block b side by side, for the AVX-512 VNNI group
 * kernel (qdot_simd.h, QD(g8)): q of rows 2p and 2p+1 are one aligned 64-byte
 * load, d and s of the 8 rows one 32-byte load each.  Missing rows are 0. */
typedef struct {
    _Alignas(64) int8_t q[8][ICL_QK8];
    float d[8], s[8];
} qd_grp8;

static inline float h2f(const uint8_t *p) { return icl_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

/* ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j. */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

/* Types whose integer weights are signed (multiplied with the sign trick in
 * SIMD) and types with an offset term (a min). */
static inline int qd_signed(int type)
{
    return type == ICL_GGML_Q8_0 || type == ICL_GGML_Q4_0 || type == ICL_GGML_Q6_K;
}

static inline int qd_hasoff(int type)
{
    return type == ICL_GGML_Q4_1 || type == ICL_GGML_Q4_K || type == ICL_GGML_Q5_K;
}

/* ---------------------------------------------------------------- activations */

void icl_q8_quantize_row(const float *x, int n, icl_q8blk *out)
{
    for (int b = 0; b < n / ICL_QK8; b++, x += ICL_QK8) {
        icl_q8blk *o = &out[b];
        float amax = 0.0f;
        int bad = 0;
        for (int k = 0; k < ICL_QK8; k++) {
            bad |= !isfinite(x[k]);
            amax = fmaxf(amax, fabsf(x[k]));
        }
        if (bad) { /* NaN out, no undefined float-to-int conversion */
            memset(o, 0, sizeof *o);
            o->d = o->s = NAN;
            continue;
        }
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int s[2] = {0, 0};
        for (int k = 0; k < ICL_QK8; k++) {
            int q = (int)roundf(x[k] * id);
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            o->q[k] = (int8_t)q;
            s[k / 16] += q;
        }
        o->d = d;
        o->sum16[0] = (int16_t)s[0];
        o->sum16[1] = (int16_t)s[1];
        o->s = d * (float)(s[0] + s[1]);
    }
}

/* ---------------------------------------------------------------- portable path */

/* The weight side of activation block b (as qdot_simd.h's decode). */
typedef struct {
    int wq[ICL_QK8], lanemul[8];
    float scale, c;
} sc_wblk;

static void sc_decode(int type, const uint8_t *w, int b, sc_wblk *o)
{
    for (int l = 0; l < 8; l++)
        o->lanemul[l] = 1;
    o->c = 0;
    switch (type) {
    case ICL_GGML_Q8_0: {
        const uint8_t *p = w + (size_t)34 * b;
        o->scale = h2f(p);
        for (int k = 0; k < 32; k++)
            o->wq[k] = (int8_t)p[2 + k];
        break;
    }
    case ICL_GGML_Q4_0:
    case ICL_GGML_Q4_1: {
        int q41 = type == ICL_GGML_Q4_1;
        const uint8_t *p = w + (size_t)(q41 ? 20 : 18) * b, *qs = p + (q41 ? 4 : 2);
        o->scale = h2f(p);
        if (q41)
            o->c = h2f(p + 2);
        for (int k = 0; k < 16; k++) {
            o->wq[k] = (qs[k] & 15) - (q41 ? 0 : 8);
            o->wq[k + 16] = (qs[k] >> 4) - (q41 ? 0 : 8);
        }
        break;
    }
    case ICL_GGML_Q4_K:
    case ICL_GGML_Q5_K: {
        int q5 = type == ICL_GGML_Q5_K, j = b % 8;
        const uint8_t *p = w + (size_t)(q5 ? 176 : 144) * (b / 8);
        const uint8_t *qs = p + (q5 ? 48 : 16) + 32 * (j / 2), *qh = p + 16;
        uint8_t sc, mn;
        scale_min_k4(j, p + 4, &sc, &mn);
        o->scale = h2f(p) * (float)sc;
        o->c = -(h2f(p + 2) * (float)mn);
        for (int k = 0; k < 32; k++)
            o->wq[k] = ((j & 1) ? qs[k] >> 4 : qs[k] & 15) + (q5 && (qh[k] >> j & 1) ? 16 : 0);
        break;
    }
    default: { /* ICL_GGML_Q6_K */
        const uint8_t *p = w + (size_t)210 * (b / 8);
        int j = b % 8, h = j / 4, i = j % 4;
        const uint8_t *ql = p + 64 * h + 32 * (i & 1), *qh = p + 128 + 32 * h;
        const int8_t *sc = (const int8_t *)(p + 192) + 8 * h + 2 * i;
        o->scale = h2f(p + 208);
        for (int k = 0; k < 32; k++)
            o->wq[k] = (((i >> 1) ? ql[k] >> 4 : ql[k] & 15) | ((qh[k] >> (2 * i)) & 3) << 4) - 32;
        for (int l = 0; l < 8; l++)
            o->lanemul[l] = sc[l / 4];
        break;
    }
    }
}

static void sc_rows(int type, const uint8_t *w, const icl_q8blk *const *xs, int nr, int nb, float *out)
{
    for (int r = 0; r < nr; r++) {
        float acc[16] = {0}, off = 0.0f;
        for (int b = 0; b < nb; b++) {
            sc_wblk o;
            sc_decode(type, w, b, &o);
            const icl_q8blk *a = xs[r] + b;
            const float scale = o.scale * a->d;
            for (int l = 0; l < 8; l++) {
                int p = 0;
                for (int k = 4 * l; k < 4 * l + 4; k++)
                    p += o.wq[k] * a->q[k];
                p *= o.lanemul[l];
                acc[8 * (b % 2) + l] = fmaf((float)p, scale, acc[8 * (b % 2) + l]);
            }
            if (qd_hasoff(type))
                off = fmaf(o.c, a->s, off);
        }
        float t[8], u[4];
        for (int l = 0; l < 8; l++)
            t[l] = acc[l] + acc[8 + l];
        for (int l = 0; l < 4; l++)
            u[l] = t[l] + t[l + 4];
        out[r] = ((u[0] + u[2]) + (u[1] + u[3])) + off;
    }
}

#define SC_TYPE_FN(T, id)                                                                                            \
    static void sc_##T(const uint8_t *w, const icl_q8blk *const *xs, int nr, int nb, float *out)                    \
    {                                                                                                                \
        sc_rows(id, w, xs, nr, nb, out);                                                                             \
    }
SC_TYPE_FN(q8_0, ICL_GGML_Q8_0)
SC_TYPE_FN(q4_0, ICL_GGML_Q4_0)
SC_TYPE_FN(q4_1, ICL_GGML_Q4_1)
SC_TYPE_FN(q4_k, ICL_GGML_Q4_K)
SC_TYPE_FN(q5_k, ICL_GGML_Q5_K)
SC_TYPE_FN(q6_k, ICL_GGML_Q6_K)
#undef SC_TYPE_FN

/* ---------------------------------------------------------------- x86 paths */

#if defined(__x86_64__) && defined(__GNUC__)
#define QD_X86 1
#include <immintrin.h>

#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#define QD(name) avx2_##name
#define QD_VNNI 0
#include "qdot_simd.h"
#undef QD
#undef QD_VNNI
#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")
#endif
#define QD(name) vnni_##name
#define QD_VNNI 1
#include "qdot_simd.h"
#undef QD
#undef QD_VNNI
#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
#define QD_X86 0
#endif

/* ---------------------------------------------------------------- dispatch */

typedef void (*rows_fn)(const uint8_t *w, const icl_q8blk *const *xs, int nr, int nb, float *out);

static const int TYPES[6] = {ICL_GGML_Q8_0, ICL_GGML_Q4_0, ICL_GGML_Q4_1, ICL_GGML_Q4_K, ICL_GGML_Q5_K, ICL_GGML_Q6_K};

static const rows_fn SCALAR[6] = {sc_q8_0, sc_q4_0, sc_q4_1, sc_q4_k, sc_q5_k, sc_q6_k};
#if QD_X86
static const rows_fn AVX2[6] = {avx2_q8_0, avx2_q4_0, avx2_q4_1, avx2_q4_k, avx2_q5_k, avx2_q6_k};
static const rows_fn VNNI[6] = {vnni_q8_0, vnni_q4_0, vnni_q4_1, vnni_q4_k, vnni_q5_k, vnni_q6_k};
#endif

typedef void (*g8_fn)(const uint8_t *w, const qd_grp8 *g, int np, int nb, float *out);
#if QD_X86
static const g8_fn VNNI_G8[6] = {vnni_g8_q8_0, vnni_g8_q4_0, vnni_g8_q4_1, vnni_g8_q4_k, vnni_g8_q5_k, vnni_g8_q6_k};
#endif

static int path = -1; /* icl_qdot_path; -1 until chosen (atomic accesses) */

#if QD_X86 && defined(__clang__)
/* clang 14's __builtin_cpu_supports does not know "f16c": CPUID leaf 1, ECX
 * bit 29 (Intel SDM vol. 2A, CPUID).  The OS's saving of the ymm state is
 * checked by the avx2 test beside it. */
#include <cpuid.h>
static int cpu_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
}
#define CPU_F16C() cpu_f16c()
#else
#define CPU_F16C() __builtin_cpu_supports("f16c")
#endif

static int cpu_can(icl_qdot_path p)
{
#if QD_X86
    __builtin_cpu_init();
    if (p == ICL_QDOT_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && CPU_F16C();
    if (p == ICL_QDOT_VNNI)
        return cpu_can(ICL_QDOT_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
#endif
    return p == ICL_QDOT_SCALAR;
}

static int cur_path(void)
{
    int p = __atomic_load_n(&path, __ATOMIC_RELAXED);
    if (p < 0) {
        p = cpu_can(ICL_QDOT_VNNI) ? ICL_QDOT_VNNI : cpu_can(ICL_QDOT_AVX2) ? ICL_QDOT_AVX2 : ICL_QDOT_SCALAR;
        __atomic_store_n(&path, p, __ATOMIC_RELAXED);
    }
    return p;
}

const char *icl_qdot_path_name(void)
{
    static const char *const names[] = {"scalar", "avx2", "avx512vnni"};
    return names[cur_path()];
}

int icl_qdot_select(icl_qdot_path p)
{
    if ((unsigned)p > ICL_QDOT_VNNI || !cpu_can(p))
        return -1;
    __atomic_store_n(&path, (int)p, __ATOMIC_RELAXED);
    return 0;
}

static rows_fn kernel(int qtype)
{
    for (int i = 0; i < 6; i++)
        if (TYPES[i] == qtype) {
            switch (cur_path()) {
#if QD_X86
            case ICL_QDOT_VNNI: return VNNI[i];
            case ICL_QDOT_AVX2: return AVX2[i];
#endif
            default: return SCALAR[i];
            }
        }
    return NULL;
}

/* The 8-row group kernel of qtype, or NULL where the path has none. */
static g8_fn kernel_g8(int qtype)
{
#if QD_X86
    if (cur_path() == ICL_QDOT_VNNI)
        for (int i = 0; i < 6; i++)
            if (TYPES[i] == qtype)
                return VNNI_G8[i];
#endif
    (void)qtype;
    return NULL;
}

int icl_qdot_supported(int qtype)
{
    for (int i = 0; i < 6; i++)
        if (TYPES[i] == qtype)
            return 1;
    return 0;
}

int icl_qdot_check(int qtype, int in, char *err, size_t errsz)
{
    const char *name = icl_ggml_type_name((uint32_t)qtype);
    if (!icl_qdot_supported(qtype)) {
        icl_seterr(err, errsz, "ggml type %s (%d): no quantized dot product (icl has Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K)",
                   name ? name : "?", qtype);
        return -1;
    }
    int blck = qtype == ICL_GGML_Q4_K || qtype == ICL_GGML_Q5_K || qtype == ICL_GGML_Q6_K ? 256 : 32;
    if (in <= 0 || in % blck) {
        icl_seterr(err, errsz, "%s rows of %d values: not a positive multiple of its %d-value block", name, in, blck);
        return -1;
    }
    return 0;
}

float icl_qdot(int qtype, const void *row, const icl_q8blk *x, int in)
{
    float y;
    const icl_q8blk *xs[1] = {x};
    kernel(qtype)(row, xs, 1, in / ICL_QK8, &y);
    return y;
}

int icl_qmatvec(int qtype, const void *W, int out, int in, const float *x, long ldx, int N, float *y, long ldy,
                float beta, const float *bias, int nthreads)
{
    if (icl_qdot_check(qtype, in, NULL, 0) || out < 0 || N < 0)
        return -1;
    if (!out || !N)
        return 0;
    const int nb = in / ICL_QK8;
    const size_t rowsz = icl_ggml_row_size((uint32_t)qtype, in);
    icl_q8blk *xq = malloc((size_t)N * nb * sizeof *xq);
    if (!xq)
        return -1;
    for (int i = 0; i < N; i++)
        icl_q8_quantize_row(x + (size_t)i * ldx, in, xq + (size_t)i * nb);
    rows_fn k = kernel(qtype);
    g8_fn k8 = N >= 2 ? kernel_g8(qtype) : NULL;
    qd_grp8 *grp = NULL; /* group i, block b: grp[i * nb + b] */
    if (k8) {
        const int ngrp = (N + 7) / 8;
        grp = aligned_alloc(64, (size_t)ngrp * nb * sizeof *grp);
        if (!grp) {
            free(xq);
            return -1;
        }
        memset(grp, 0, (size_t)ngrp * nb * sizeof *grp);
        for (int i = 0; i < N; i++)
            for (int b = 0; b < nb; b++) {
                qd_grp8 *g = &grp[(size_t)(i / 8) * nb + b];
                const icl_q8blk *a = &xq[(size_t)i * nb + b];
                memcpy(g->q[i % 8], a->q, ICL_QK8);
                g->d[i % 8] = a->d;
                g->s[i % 8] = a->s;
            }
    }
    int nt = nthreads < 1 ? 1 : nthreads;
    if ((double)N * in * out < 65536.0)
        nt = 1;
    const int nblk = (out + 15) / 16;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int jb = 0; jb < nblk; jb++) {
        int j0 = jb * 16, nj = out - j0 < 16 ? out - j0 : 16;
        for (int g0 = 0; g0 < N; g0 += 2 * QD_RB) {
            int ng = N - g0 < 2 * QD_RB ? N - g0 : 2 * QD_RB;
            float yl[2 * QD_RB][16];
            if (k8 && ng >= 2) { /* up to 8 rows per pass: the AVX-512 VNNI group kernel */
                const qd_grp8 *g = grp + (size_t)(g0 / 8) * nb;
                for (int jj = 0; jj < nj; jj++) {
                    float o[8];
                    k8((const uint8_t *)W + (size_t)(j0 + jj) * rowsz, g, (ng + 1) / 2, nb, o);
                    for (int r = 0; r < ng; r++)
                        yl[r][jj] = o[r];
                }
            } else {
                for (int jj = 0; jj < nj; jj++) {
                    const uint8_t *w = (const uint8_t *)W + (size_t)(j0 + jj) * rowsz;
                    for (int b0 = 0; b0 < ng; b0 += QD_RB) {
                        int nr = ng - b0 < QD_RB ? ng - b0 : QD_RB;
                        const icl_q8blk *xs[QD_RB];
                        float o[QD_RB];
                        for (int r = 0; r < nr; r++)
                            xs[r] = xq + (size_t)(g0 + b0 + r) * nb;
                        k(w, xs, nr, nb, o);
                        for (int r = 0; r < nr; r++)
                            yl[b0 + r][jj] = o[r];
                    }
                }
            }
            for (int r = 0; r < ng; r++) {
                float *yo = y + (size_t)(g0 + r) * ldy + j0;
                for (int jj = 0; jj < nj; jj++) {
                    float t = yl[r][jj] + (bias ? bias[j0 + jj] : 0.0f);
                    yo[jj] = beta != 0.0f ? yo[jj] + t : t;
                }
            }
        }
    }
    free(grp);
    free(xq);
    return 0;
}
