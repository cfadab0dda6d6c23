/* x86tiles.h - what bf16.c's products and ops.c's attention share on x86:
 * a 16 x 16 transpose of 32-bit words held in AVX-512 registers (packing
 * bfloat16 pairs) and the AMX tile configuration.  Internal to lib/; x86-64
 * with GCC or Clang only (callers compile it under their own target
 * attributes). */
#ifndef ICL_X86TILES_H
#define ICL_X86TILES_H
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

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

/* The palette-1 AMX tile configuration (Intel SDM, LDTILECFG): tiles 0-7
 * all 16 rows of 64 bytes. */
typedef struct {
    uint8_t palette, start_row, rsv[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} icl_amx_cfg;

/* Loads that configuration on the calling thread (ldtilecfg); the caller
 * releases the tiles with _tile_release() when its products are done.
 * Only where the CPU and OS allow AMX (bf16.h, icl_bf16_amx). */
__attribute__((target("amx-tile"))) static inline void icl_amx_begin(void)
{
    _Alignas(64) icl_amx_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++)
        c.rows[t] = 16, c.colsb[t] = 64;
    __asm__ volatile("" ::: "memory"); /* the intrinsic names 8 bytes of c as its operand */
    _tile_loadconfig(&c);
}

/* Releases the tiles (tilerelease) on the calling thread: _tile_release()
 * as a function, for OpenMP regions under clang 14 (which compiles them
 * without the enclosing function's target attribute). */
__attribute__((target("amx-tile"))) static inline void icl_amx_end(void) { _tile_release(); }
#endif
#endif
