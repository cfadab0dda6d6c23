/* qdot_simd.h - the x86 SIMD kernels of qdot.c, included once per code path
 * with QD(name) (the path's suffix), QD_VNNI (1: vpdpbusd, 0: AVX2's
 * vpmaddubsw + vpmaddwd) and a #pragma GCC target in force.  Internal to
 * qdot.c; the order of operations is the one qdot.h documents, the same as
 * qdot.c's scalar path.
 *
 * Products use ggml's sign trick for signed weights: |w| (unsigned) times
 * a * sign(w) (signed), since both instructions multiply unsigned bytes by
 * signed ones.  Every product fits: |w| <= 128, |a| <= 127, and vpmaddubsw's
 * 16-bit pair sums stay below 32767 (2 * 128 * 127). */

/* fp16 to float with F16C (exact, as icl_f16_to_f32). */
static inline float QD(h2f)(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* lane l of the result: sum of u[4l+k] * s[4l+k], k < 4 (u unsigned bytes). */
static inline __m256i QD(dot4)(__m256i u, __m256i s)
{
#if QD_VNNI
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

/* 32 nibbles of 16 bytes: low nibbles first, then high ones. */
static inline __m256i QD(nibbles16)(const uint8_t *p)
{
    __m128i x = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), m), _mm_and_si128(x, m));
}

/* Low (hi 0) or high (hi 1) nibbles of 32 bytes. */
static inline __m256i QD(nibbles32)(const uint8_t *p, int hi)
{
    __m256i x = _mm256_loadu_si256((const __m256i *)p);
    return _mm256_and_si256(hi ? _mm256_srli_epi16(x, 4) : x, _mm256_set1_epi8(15));
}

/* The weight side of activation block b of a row: integer weights wq (the
 * value multiplied with the activations' q), whether they are signed, the
 * per-lane integer factor (Q6_K's scales; 1 otherwise), the float scale and
 * the offset coefficient c (0 when the type has none). */
typedef struct {
    __m256i wq, lanemul;
    float scale, c;
} QD(wblk);

static inline __attribute__((always_inline)) void QD(decode)(int type, const uint8_t *w, int b, QD(wblk) *o)
{
    switch (type) {
    case ICL_GGML_Q8_0: {
        const uint8_t *p = w + (size_t)34 * b;
        o->scale = QD(h2f)(p);
        o->wq = _mm256_loadu_si256((const __m256i *)(p + 2));
        break;
    }
    case ICL_GGML_Q4_0: {
        const uint8_t *p = w + (size_t)18 * b;
        o->scale = QD(h2f)(p);
        o->wq = _mm256_sub_epi8(QD(nibbles16)(p + 2), _mm256_set1_epi8(8));
        break;
    }
    case ICL_GGML_Q4_1: {
        const uint8_t *p = w + (size_t)20 * b;
        o->scale = QD(h2f)(p);
        o->c = QD(h2f)(p + 2);
        o->wq = QD(nibbles16)(p + 4);
        break;
    }
    case ICL_GGML_Q4_K: {
        const uint8_t *p = w + (size_t)144 * (b / 8);
        int j = b % 8;
        uint8_t sc, mn;
        scale_min_k4(j, p + 4, &sc, &mn);
        o->scale = QD(h2f)(p) * (float)sc;
        o->c = -(QD(h2f)(p + 2) * (float)mn);
        o->wq = QD(nibbles32)(p + 16 + 32 * (j / 2), j & 1);
        break;
    }
    case ICL_GGML_Q5_K: {
        const uint8_t *p = w + (size_t)176 * (b / 8);
        int j = b % 8;
        uint8_t sc, mn;
        scale_min_k4(j, p + 4, &sc, &mn);
        o->scale = QD(h2f)(p) * (float)sc;
        o->c = -(QD(h2f)(p + 2) * (float)mn);
        __m256i qh = _mm256_loadu_si256((const __m256i *)(p + 16)), bit = _mm256_set1_epi8((char)(1 << j));
        __m256i h = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), _mm256_set1_epi8(16));
        o->wq = _mm256_or_si256(QD(nibbles32)(p + 48 + 32 * (j / 2), j & 1), h);
        break;
    }
    default: { /* ICL_GGML_Q6_K */
        const uint8_t *p = w + (size_t)210 * (b / 8);
        int j = b % 8, h = j / 4, i = j % 4;
        const int8_t *sc = (const int8_t *)(p + 192) + 8 * h + 2 * i;
        o->scale = QD(h2f)(p + 208);
        __m256i lo = QD(nibbles32)(p + 64 * h + 32 * (i & 1), i >> 1);
        __m256i qh = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * h));
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * i), _mm256_set1_epi8(3));
        o->wq = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
        o->lanemul = _mm256_setr_epi32(sc[0], sc[0], sc[0], sc[0], sc[1], sc[1], sc[1], sc[1]);
        break;
    }
    }
}

/* Block b of the row into accumulator set par (b % 2) of nr rows. */
static inline __attribute__((always_inline)) void QD(block)(int type, const uint8_t *w, int b, int par,
                                                            const icl_q8blk *const *xs, int nr, __m256 acc[][2],
                                                            float *off)
{
    QD(wblk) o;
    o.c = 0;
    QD(decode)(type, w, b, &o);
    __m256i wabs = qd_signed(type) ? _mm256_abs_epi8(o.wq) : o.wq;
    for (int r = 0; r < nr; r++) {
        const icl_q8blk *a = xs[r] + b;
        __m256i aq = _mm256_loadu_si256((const __m256i *)a->q);
        __m256i p = QD(dot4)(wabs, qd_signed(type) ? _mm256_sign_epi8(aq, o.wq) : aq);
        if (type == ICL_GGML_Q6_K)
            p = _mm256_mullo_epi32(p, o.lanemul);
        acc[r][par] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(o.scale * a->d), acc[r][par]);
        if (qd_hasoff(type))
            off[r] = fmaf(o.c, a->s, off[r]);
    }
}

/* The 8 lanes of t summed in qdot.h's order: (l + l+4), then + (l+2), then 0 + 1. */
static inline float QD(hsum)(__m256 t)
{
    __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)); /* l + l+4 */
    __m128 v = _mm_add_ps(u, _mm_movehl_ps(u, u));                                 /* l + l+2 */
    __m128 w = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));                              /* 0 + 1 */
    return _mm_cvtss_f32(w);
}

/* Software prefetch of the weight bytes QD_PF ahead of block b's (rows of a
 * matrix lie back to back, so past a row's end it fetches the next row's;
 * past the matrix's end it is a hint that cannot fault, its address formed
 * as an integer).  Each block is under 64 bytes and each gets one, so no
 * cache line is skipped.  On a 2-core Xeon under KVM (family 6 model 167,
 * 2026-12-05) decoding SmolLM2's Q4_1 GGUF stalled on these loads: with
 * it, batch 1 48 -> 86 tokens/s on 1 thread and 75 -> 130 on 2, batch 8
 * 192 -> 233 and 256 -> 320 (the distance flat from 2 to 4 KB, row kernel
 * alone); the products are unchanged.  Bytes per activation block of 32:
 * Q8_0 34, Q4_0 18, Q4_1 20, Q4_K 144/8, Q5_K 176/8, Q6_K 210/8 (rounded
 * down). */
#define QD_PF 2048
static inline __attribute__((always_inline)) void QD(prefetch)(int type, const uint8_t *w, int b)
{
    size_t bs = type == ICL_GGML_Q8_0   ? 34
                : type == ICL_GGML_Q4_0 ? 18
                : type == ICL_GGML_Q4_1 ? 20
                : type == ICL_GGML_Q4_K ? 18
                : type == ICL_GGML_Q5_K ? 22
                                        : 26;
    _mm_prefetch((const char *)((uintptr_t)w + bs * (size_t)b + QD_PF), _MM_HINT_T0);
}

/* out[r] = dot(weight row w, xs[r]) for r < nr (nr <= QD_RB), nb blocks. */
static inline __attribute__((always_inline)) void QD(rows)(int type, const uint8_t *w, const icl_q8blk *const *xs,
                                                           int nr, int nb, float *out)
{
    __m256 acc[QD_RB][2];
    float off[QD_RB];
    for (int r = 0; r < nr; r++) {
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        off[r] = 0.0f;
    }
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        QD(prefetch)(type, w, b);
        QD(prefetch)(type, w, b + 1);
        QD(block)(type, w, b, 0, xs, nr, acc, off);
        QD(block)(type, w, b + 1, 1, xs, nr, acc, off);
    }
    if (b < nb)
        QD(block)(type, w, b, 0, xs, nr, acc, off);
    for (int r = 0; r < nr; r++)
        out[r] = QD(hsum)(_mm256_add_ps(acc[r][0], acc[r][1])) + off[r];
}


#if QD_VNNI
/* Block b of the weight row into accumulator set par of the first 2 * np
 * rows of group g (the offset terms of all 8 rows into off). */
static inline __attribute__((always_inline)) void QD(g8block)(int type, int np, const uint8_t *w, int b, int par,
                                                              const qd_grp8 *g, const __m512i *idx,
                                                              __m512 acc[][2], __m256 *off)
{
    QD(wblk) o;
    o.c = 0;
    QD(decode)(type, w, b, &o);
    const __m512i wq = _mm512_broadcast_i64x4(o.wq);
    const __m512i wabs = qd_signed(type) ? _mm512_abs_epi8(wq) : wq;
    const __mmask64 neg = qd_signed(type) ? _mm512_movepi8_mask(wq) : 0;
    const __m512i lanemul = type == ICL_GGML_Q6_K ? _mm512_broadcast_i64x4(o.lanemul) : _mm512_setzero_si512();
    const __m512 sc = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_set1_ps(o.scale), _mm256_load_ps(g[b].d)));
    for (int p = 0; p < np; p++) {
        __m512i aq = _mm512_load_si512((const void *)g[b].q[2 * p]);
        if (qd_signed(type)) /* _mm256_sign_epi8(aq, wq): -aq where w < 0 (where w == 0, |w| is 0) */
            aq = _mm512_mask_sub_epi8(aq, neg, _mm512_setzero_si512(), aq);
        __m512i prod = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wabs, aq);
        if (type == ICL_GGML_Q6_K)
            prod = _mm512_mullo_epi32(prod, lanemul);
        acc[p][par] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(prod), _mm512_permutexvar_ps(idx[p], sc), acc[p][par]);
    }
    if (qd_hasoff(type))
        *off = _mm256_fmadd_ps(_mm256_set1_ps(o.c), _mm256_load_ps(g[b].s), *off);
}

/* out[r] = dot(weight row w, activation row r of group g) for the first
 * 2 * np (np <= 4) rows of a qd_grp8 group (rows past the caller's count are
 * zero), in the order of QD(rows): rows r and r+1 share a 512-bit register,
 * row r in the low half, each half an accumulator set of QD(rows) (8 lanes,
 * blocks b and b+1 of a pair in sets 0 and 1, an odd tail in set 0), so
 * every lane does the same integer dot, the same float product scale * d
 * and the same fused multiply-add as there.  The weight block is decoded
 * once for the 8 rows (QD(rows) decodes it once per 4); the offset terms of
 * the 8 rows are one 8-lane fused multiply-add (lane r: fmaf(c, s_r, off_r)). */
static inline __attribute__((always_inline)) void QD(g8)(int type, int np, const uint8_t *w, const qd_grp8 *g,
                                                         int nb, float *out)
{
    __m512 acc[4][2];
    __m512i idx[4];
    for (int p = 0; p < np; p++) {
        acc[p][0] = acc[p][1] = _mm512_setzero_ps();
        idx[p] = _mm512_setr_epi32(2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p + 1, 2 * p + 1,
                                   2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1);
    }
    __m256 off = _mm256_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        QD(prefetch)(type, w, b);
        QD(prefetch)(type, w, b + 1);
        QD(g8block)(type, np, w, b, 0, g, idx, acc, &off);
        QD(g8block)(type, np, w, b + 1, 1, g, idx, acc, &off);
    }
    if (b < nb)
        QD(g8block)(type, np, w, b, 0, g, idx, acc, &off);
    float offs[8];
    _mm256_storeu_ps(offs, off);
    for (int p = 0; p < np; p++) {
        __m512 t2 = _mm512_add_ps(acc[p][0], acc[p][1]);
        out[2 * p] = QD(hsum)(_mm512_castps512_ps256(t2)) + offs[2 * p];
        out[2 * p + 1] = QD(hsum)(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t2), 1))) + offs[2 * p + 1];
    }
}

#endif

/* One function per type, nr (np) made a constant for the compiler; the
 * group kernel on the VNNI path only. */
#if QD_VNNI
#define QD_G8_FN(T, id)                                                                                              \
    static void QD(g8_##T)(const uint8_t *w, const qd_grp8 *g, int np, int nb, float *out)                          \
    {                                                                                                                \
        switch (np) {                                                                                                \
        case 1: QD(g8)(id, 1, w, g, nb, out); break;                                                                 \
        case 2: QD(g8)(id, 2, w, g, nb, out); break;                                                                 \
        case 3: QD(g8)(id, 3, w, g, nb, out); break;                                                                 \
        default: QD(g8)(id, 4, w, g, nb, out); break;                                                                \
        }                                                                                                            \
    }
#else
#define QD_G8_FN(T, id)
#endif
#define QD_TYPE_FN(T, id)                                                                                            \
    static void QD(T)(const uint8_t *w, const icl_q8blk *const *xs, int nr, int nb, float *out)                     \
    {                                                                                                                \
        switch (nr) {                                                                                                \
        case 1: QD(rows)(id, w, xs, 1, nb, out); break;                                                              \
        case 2: QD(rows)(id, w, xs, 2, nb, out); break;                                                              \
        case 3: QD(rows)(id, w, xs, 3, nb, out); break;                                                              \
        default: QD(rows)(id, w, xs, 4, nb, out); break;                                                             \
        }                                                                                                            \
    }                                                                                                                \
    QD_G8_FN(T, id)
QD_TYPE_FN(q8_0, ICL_GGML_Q8_0)
QD_TYPE_FN(q4_0, ICL_GGML_Q4_0)
QD_TYPE_FN(q4_1, ICL_GGML_Q4_1)
QD_TYPE_FN(q4_k, ICL_GGML_Q4_K)
QD_TYPE_FN(q5_k, ICL_GGML_Q5_K)
QD_TYPE_FN(q6_k, ICL_GGML_Q6_K)
#undef QD_TYPE_FN
#undef QD_G8_FN
