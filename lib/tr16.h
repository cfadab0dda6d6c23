/* tr16.h - a 16 x 16 transpose of 32-bit words held in AVX-512 registers,
 * for lib/'s packing of bfloat16 pairs (bf16.c's rounded activations,
 * ops.c's attention operands).  Internal to lib/; x86-64 with GCC or Clang
 * only (callers compile it under their own AVX-512 target attributes). */
#ifndef ICL_TR16_H
#define ICL_TR16_H
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* r[i], row i of a 16 x 16 matrix of 32-bit words, becomes its column i:
 * the classic four stages (interleave 32-bit words, then 64-bit pairs,
 * then 128-bit lanes twice), 64 shuffles. */
__attribute__((target("avx512f"), always_inline)) static inline void icl_tr16x16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}
#endif
#endif
