/* quant.c - ggml block formats to float32 and back, as ggml-quants.c's
 * reference dequantize_row_* / quantize_row_*_ref.  See quant.h.
 *
 * Contraction of a*b+c into one fused multiply-add would change the last bit
 * against ggml's reference (and the gguf package's numpy), so it is off for
 * this file. */
#ifdef __clang__ /* which ignores GCC's optimize pragma */
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC optimize("fp-contract=off")
#endif

#include "quant.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "gguf.h"
#include "safetensors.h"
#include "util.h"

#define QK 32
#define QK_K 256

static inline float h2f(const uint8_t *p) { return icl_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static void f32_to_float(const void *src, float *y, int64_t n) { memcpy(y, src, (size_t)n * sizeof(float)); }

static void f16_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++)
        y[i] = h2f(p + 2 * i);
}

static void bf16_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
        memcpy(&y[i], &u, 4);
    }
}

/* block_q4_0: d, qs[16] */
static void q4_0_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 18, y += QK) {
        const float d = h2f(b);
        for (int j = 0; j < QK / 2; j++) {
            const int x0 = (b[2 + j] & 0x0F) - 8, x1 = (b[2 + j] >> 4) - 8;
            y[j] = x0 * d;
            y[j + QK / 2] = x1 * d;
        }
    }
}

/* block_q4_1: d, m, qs[16] */
static void q4_1_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 20, y += QK) {
        const float d = h2f(b), m = h2f(b + 2);
        for (int j = 0; j < QK / 2; j++) {
            const int x0 = b[4 + j] & 0x0F, x1 = b[4 + j] >> 4;
            y[j] = x0 * d + m;
            y[j + QK / 2] = x1 * d + m;
        }
    }
}

static inline uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* block_q5_0: d, qh[4], qs[16] */
static void q5_0_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 22, y += QK) {
        const float d = h2f(b);
        const uint32_t qh = le32(b + 2);
        for (int j = 0; j < QK / 2; j++) {
            const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
            const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
            const int32_t x0 = ((b[6 + j] & 0x0F) | xh_0) - 16;
            const int32_t x1 = ((b[6 + j] >> 4) | xh_1) - 16;
            y[j] = x0 * d;
            y[j + QK / 2] = x1 * d;
        }
    }
}

/* block_q5_1: d, m, qh[4], qs[16] */
static void q5_1_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 24, y += QK) {
        const float d = h2f(b), m = h2f(b + 2);
        const uint32_t qh = le32(b + 4);
        for (int j = 0; j < QK / 2; j++) {
            const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
            const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
            const int x0 = (b[8 + j] & 0x0F) | xh_0;
            const int x1 = (b[8 + j] >> 4) | xh_1;
            y[j] = x0 * d + m;
            y[j + QK / 2] = x1 * d + m;
        }
    }
}

/* block_q8_0: d, qs[32] */
static void q8_0_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 34, y += QK) {
        const float d = h2f(b);
        for (int j = 0; j < QK; j++)
            y[j] = (int8_t)b[2 + j] * d;
    }
}

/* block_q2_K: scales[16], qs[64], d, dmin */
static void q2_k_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 84) {
        const float d = h2f(b + 80), min = h2f(b + 82);
        const uint8_t *q = b + 16, *sc = b;
        int is = 0;
        for (int nn = 0; nn < QK_K; nn += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                uint8_t s = sc[is++];
                float dl = d * (s & 0xF), ml = min * (s >> 4);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
                s = sc[is++];
                dl = d * (s & 0xF), ml = min * (s >> 4);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;
                shift += 2;
            }
            q += 32;
        }
    }
}

/* block_q3_K: hmask[32], qs[64], scales[12], d */
static void q3_k_to_float(const void *src, float *y, int64_t n)
{
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 110) {
        const float d_all = h2f(b + 108);
        const uint8_t *q = b + 32, *hm = b;
        uint8_t m = 1;
        uint32_t aux[4] = {le32(b + 96), le32(b + 100), le32(b + 104), 0};
        const uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        int8_t scales[16];
        for (int k = 0; k < 16; k++)
            scales[k] = (int8_t)(aux[k / 4] >> (8 * (k % 4)));
        int is = 0;
        for (int nn = 0; nn < QK_K; nn += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                float dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
                dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}

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

/* block_q4_K: d, dmin, scales[12], qs[128] */
static void q4_k_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 144) {
        const float d = h2f(b), min = h2f(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < QK_K; j += 64) {
            scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

/* block_q5_K: d, dmin, scales[12], qh[32], qs[128] */
static void q5_k_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 176) {
        const float d = h2f(b), min = h2f(b + 2);
        const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
        int is = 0;
        uint8_t sc, m, u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K; j += 64) {
            scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

/* block_q6_K: ql[128], qh[64], scales[16] (int8), d */
static void q6_k_to_float(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 210) {
        const float d = h2f(b + 208);
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int nn = 0; nn < QK_K; nn += 128) {
            for (int l = 0; l < 32; ++l) {
                int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/* ------------------------------------------------------------------ quantization */

uint16_t icl_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
    if (ax >= 0x7f800000) /* inf or nan (quiet, keeping the top payload bits) */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000) { /* below 2^-14: subnormal half (or zero) */
        if (ax < 0x33000000) /* < 2^-25: rounds to 0 (2^-25 exactly is a tie to even 0) */
            return (uint16_t)sign;
        uint32_t mant = (ax & 0x7fffff) | 0x800000;
        int e = (int)(ax >> 23); /* 102..112 */
        int shift = 126 - e;     /* value = mant * 2^(e-150); half unit = 2^-24 */
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((ax >> 13) - (112u << 10)), rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

static void float_to_f32(const float *x, void *dst, int64_t n) { memcpy(dst, x, (size_t)n * sizeof(float)); }

static void float_to_f16(const float *x, void *dst, int64_t n)
{
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = icl_f32_to_f16(x[i]);
        p[2 * i] = (uint8_t)h;
        p[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* ggml_compute_fp32_to_bf16 */
static void float_to_bf16(const float *x, void *dst, int64_t n)
{
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        uint16_t h;
        if ((u & 0x7fffffff) > 0x7f800000)
            h = (uint16_t)((u >> 16) | 64);
        else
            h = (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
        p[2 * i] = (uint8_t)h;
        p[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

static inline void put_h(uint8_t *p, float f)
{
    uint16_t h = icl_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* quantize_row_q8_0_ref */
static void float_to_q8_0(const float *x, void *dst, int64_t n)
{
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / QK; i++, b += 34, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        put_h(b, d);
        for (int j = 0; j < QK; ++j)
            b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

/* quantize_row_q4_0_ref */
static void float_to_q4_0(const float *x, void *dst, int64_t n)
{
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / QK; i++, b += 18, x += QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        put_h(b, d);
        for (int j = 0; j < QK / 2; ++j) {
            const float x0 = x[0 + j] * id, x1 = x[QK / 2 + j] * id;
            const int a = (int8_t)(x0 + 8.5f), c = (int8_t)(x1 + 8.5f);
            const uint8_t xi0 = (uint8_t)(a < 15 ? a : 15), xi1 = (uint8_t)(c < 15 ? c : 15);
            b[2 + j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

/* quantize_row_q4_1_ref */
static void float_to_q4_1(const float *x, void *dst, int64_t n)
{
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / QK; i++, b += 20, x += QK) {
        float min = INFINITY, max = -INFINITY;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min)
                min = x[j];
            if (x[j] > max)
                max = x[j];
        }
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        put_h(b, d);
        put_h(b + 2, min);
        for (int j = 0; j < QK / 2; ++j) {
            const float x0 = (x[0 + j] - min) * id, x1 = (x[QK / 2 + j] - min) * id;
            const int a = (int8_t)(x0 + 0.5f), c = (int8_t)(x1 + 0.5f);
            const uint8_t xi0 = (uint8_t)(a < 15 ? a : 15), xi1 = (uint8_t)(c < 15 ? c : 15);
            b[4 + j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

static const icl_quant_traits TRAITS[] = {
    {ICL_GGML_F32, "F32", 1, 4, f32_to_float, float_to_f32},
    {ICL_GGML_F16, "F16", 1, 2, f16_to_float, float_to_f16},
    {ICL_GGML_BF16, "BF16", 1, 2, bf16_to_float, float_to_bf16},
    {ICL_GGML_Q4_0, "Q4_0", 32, 18, q4_0_to_float, float_to_q4_0},
    {ICL_GGML_Q4_1, "Q4_1", 32, 20, q4_1_to_float, float_to_q4_1},
    {ICL_GGML_Q5_0, "Q5_0", 32, 22, q5_0_to_float, NULL},
    {ICL_GGML_Q5_1, "Q5_1", 32, 24, q5_1_to_float, NULL},
    {ICL_GGML_Q8_0, "Q8_0", 32, 34, q8_0_to_float, float_to_q8_0},
    {ICL_GGML_Q2_K, "Q2_K", 256, 84, q2_k_to_float, NULL},
    {ICL_GGML_Q3_K, "Q3_K", 256, 110, q3_k_to_float, NULL},
    {ICL_GGML_Q4_K, "Q4_K", 256, 144, q4_k_to_float, NULL},
    {ICL_GGML_Q5_K, "Q5_K", 256, 176, q5_k_to_float, NULL},
    {ICL_GGML_Q6_K, "Q6_K", 256, 210, q6_k_to_float, NULL},
};

/* Types the container knows (gguf.c's size table) but icl does not compute:
 * traits without functions, so callers can name them in messages. */
#define NOFN(id, nm, bl, sz) {id, nm, bl, sz, NULL, NULL}
static const icl_quant_traits OTHERS[] = {
    NOFN(9, "Q8_1", 32, 36),       NOFN(15, "Q8_K", 256, 292),   NOFN(16, "IQ2_XXS", 256, 66),
    NOFN(17, "IQ2_XS", 256, 74),   NOFN(18, "IQ3_XXS", 256, 98), NOFN(19, "IQ1_S", 256, 50),
    NOFN(20, "IQ4_NL", 32, 18),    NOFN(21, "IQ3_S", 256, 110),  NOFN(22, "IQ2_S", 256, 82),
    NOFN(23, "IQ4_XS", 256, 136),  NOFN(24, "I8", 1, 1),         NOFN(25, "I16", 1, 2),
    NOFN(26, "I32", 1, 4),         NOFN(27, "I64", 1, 8),        NOFN(28, "F64", 1, 8),
    NOFN(29, "IQ1_M", 256, 56),    NOFN(34, "TQ1_0", 256, 54),   NOFN(35, "TQ2_0", 256, 66),
    NOFN(39, "MXFP4", 32, 17),
};
#undef NOFN

const icl_quant_traits *icl_quant_traits_of(uint32_t type)
{
    for (size_t i = 0; i < sizeof TRAITS / sizeof TRAITS[0]; i++)
        if (TRAITS[i].type == type)
            return &TRAITS[i];
    for (size_t i = 0; i < sizeof OTHERS / sizeof OTHERS[0]; i++)
        if (OTHERS[i].type == type)
            return &OTHERS[i];
    return NULL;
}

static int check(uint32_t type, size_t nbytes, int64_t n, int from, const char *what, const icl_quant_traits **tp,
                 char *err, size_t errsz)
{
    const icl_quant_traits *t = icl_quant_traits_of(type);
    if (!t || !(from ? (void *)t->from_float : (void *)t->to_float)) {
        if (t)
            icl_seterr(err, errsz, "%s: ggml type %s (%" PRIu32 ") cannot be %s by icl", what, t->name, type,
                       from ? "written" : "dequantized");
        else
            icl_seterr(err, errsz, "%s: unknown ggml type %" PRIu32, what, type);
        return -1;
    }
    size_t want = n > 0 && n % t->blck == 0 ? icl_ggml_row_size(type, n) : 0;
    if (!want || want != nbytes) {
        icl_seterr(err, errsz, "%s: %" PRId64 " values of type %s need %zu bytes, have %zu", what, n, t->name, want, nbytes);
        return -1;
    }
    *tp = t;
    return 0;
}

int icl_dequantize(uint32_t type, const void *src, size_t nbytes, float *dst, int64_t n, const char *what, char *err,
                   size_t errsz)
{
    const icl_quant_traits *t;
    if (check(type, nbytes, n, 0, what, &t, err, errsz))
        return -1;
    t->to_float(src, dst, n);
    return 0;
}

/* See quant.h. */
int icl_quant_check_range(uint32_t type, const float *x, int64_t n, const char *what, char *err, size_t errsz)
{
    const float lim = 65520.0f;
    int bs = type == ICL_GGML_F16 ? 1 : 32;
    for (int64_t b = 0; b < n; b += bs) {
        float mx = -INFINITY, mn = INFINITY, am = 0;
        for (int64_t i = b; i < b + bs && i < n; i++)
            if (isfinite(x[i])) {
                mx = x[i] > mx ? x[i] : mx;
                mn = x[i] < mn ? x[i] : mn;
                am = fabsf(x[i]) > am ? fabsf(x[i]) : am;
            }
        float need = type == ICL_GGML_F16 ? am : type == ICL_GGML_Q8_0 ? am / 127.0f : type == ICL_GGML_Q4_0 ? am / 8.0f
                   : type == ICL_GGML_Q4_1 ? fmaxf(fabsf(mn), (mx - mn) / 15.0f) : 0;
        if (mx >= mn && need >= lim) {
            icl_seterr(err, errsz, "%s: a value of magnitude %g is beyond what %s holds (its F16 %s would be "
                       "infinite): write F32 or BF16", what, (double)am, icl_ggml_type_name(type),
                       type == ICL_GGML_F16                                 ? "value"
                       : type == ICL_GGML_Q4_1 && fabsf(mn) >= (mx - mn) / 15.0f ? "block minimum"
                                                                                 : "block scale");
            return -1;
        }
    }
    return 0;
}

int icl_quantize(uint32_t type, const float *src, int64_t n, void *dst, size_t dstsz, const char *what, char *err,
                 size_t errsz)
{
    const icl_quant_traits *t;
    if (check(type, dstsz, n, 1, what, &t, err, errsz))
        return -1;
    t->from_float(src, dst, n);
    return 0;
}
