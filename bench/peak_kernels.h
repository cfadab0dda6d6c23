/* peak_kernels.h - the compute loops of bench/peak.c (fp32 FMA, bf16
 * dot product, int8 VNNI), shared with bench/bf16_shapes.c so that a
 * product's "% of peak" there is measured against the same loop as
 * `make bench-peak`.  Header-only: static functions, unused ones allowed. */
#ifndef ICL_BENCH_PEAK_KERNELS_H
#define ICL_BENCH_PEAK_KERNELS_H

#include <immintrin.h>

#define ACC 12

/* Each kernel runs iters iterations of ACC independent instructions
 * (inline assembly: exactly those instructions, the accumulators in
 * registers; 12 covers latency x throughput of these instructions on Zen 4/5
 * and recent Intel cores) and returns something that depends on every result. */

__attribute__((target("avx512f"), noinline, unused)) static float k_fma(long iters)
{
    __m512 a0 = _mm512_set1_ps(0 * 0.001f), a1 = _mm512_set1_ps(1 * 0.001f), a2 = _mm512_set1_ps(2 * 0.001f), a3 = _mm512_set1_ps(3 * 0.001f), a4 = _mm512_set1_ps(4 * 0.001f), a5 = _mm512_set1_ps(5 * 0.001f), a6 = _mm512_set1_ps(6 * 0.001f), a7 = _mm512_set1_ps(7 * 0.001f), a8 = _mm512_set1_ps(8 * 0.001f), a9 = _mm512_set1_ps(9 * 0.001f), a10 = _mm512_set1_ps(10 * 0.001f), a11 = _mm512_set1_ps(11 * 0.001f);
    const __m512 m = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
    for (long it = 0; it < iters; it++)
        __asm__ volatile(
            "vfmadd231ps %[c], %[m], %[a0]\n\t"
            "vfmadd231ps %[c], %[m], %[a1]\n\t"
            "vfmadd231ps %[c], %[m], %[a2]\n\t"
            "vfmadd231ps %[c], %[m], %[a3]\n\t"
            "vfmadd231ps %[c], %[m], %[a4]\n\t"
            "vfmadd231ps %[c], %[m], %[a5]\n\t"
            "vfmadd231ps %[c], %[m], %[a6]\n\t"
            "vfmadd231ps %[c], %[m], %[a7]\n\t"
            "vfmadd231ps %[c], %[m], %[a8]\n\t"
            "vfmadd231ps %[c], %[m], %[a9]\n\t"
            "vfmadd231ps %[c], %[m], %[a10]\n\t"
            "vfmadd231ps %[c], %[m], %[a11]\n\t"
            : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5), [a6] "+v"(a6), [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9), [a10] "+v"(a10), [a11] "+v"(a11)
            : [m] "v"(m), [c] "v"(c));
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))), _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bf16"), noinline, unused)) static float k_bf16(long iters)
{
    __m512 a0 = _mm512_set1_ps(0 * 0.001f), a1 = _mm512_set1_ps(1 * 0.001f), a2 = _mm512_set1_ps(2 * 0.001f), a3 = _mm512_set1_ps(3 * 0.001f), a4 = _mm512_set1_ps(4 * 0.001f), a5 = _mm512_set1_ps(5 * 0.001f), a6 = _mm512_set1_ps(6 * 0.001f), a7 = _mm512_set1_ps(7 * 0.001f), a8 = _mm512_set1_ps(8 * 0.001f), a9 = _mm512_set1_ps(9 * 0.001f), a10 = _mm512_set1_ps(10 * 0.001f), a11 = _mm512_set1_ps(11 * 0.001f);
    const __m512i x = _mm512_set1_epi16(0x3a83), y = _mm512_set1_epi16(0x3f80); /* bf16 ~1e-3 and 1 */
    for (long it = 0; it < iters; it++)
        __asm__ volatile(
            "vdpbf16ps %[y], %[x], %[a0]\n\t"
            "vdpbf16ps %[y], %[x], %[a1]\n\t"
            "vdpbf16ps %[y], %[x], %[a2]\n\t"
            "vdpbf16ps %[y], %[x], %[a3]\n\t"
            "vdpbf16ps %[y], %[x], %[a4]\n\t"
            "vdpbf16ps %[y], %[x], %[a5]\n\t"
            "vdpbf16ps %[y], %[x], %[a6]\n\t"
            "vdpbf16ps %[y], %[x], %[a7]\n\t"
            "vdpbf16ps %[y], %[x], %[a8]\n\t"
            "vdpbf16ps %[y], %[x], %[a9]\n\t"
            "vdpbf16ps %[y], %[x], %[a10]\n\t"
            "vdpbf16ps %[y], %[x], %[a11]\n\t"
            : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5), [a6] "+v"(a6), [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9), [a10] "+v"(a10), [a11] "+v"(a11)
            : [x] "v"(x), [y] "v"(y));
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))), _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline, unused)) static float k_vnni(long iters)
{
    __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2), a3 = _mm512_set1_epi32(3), a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5), a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7), a8 = _mm512_set1_epi32(8), a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11);
    const __m512i u = _mm512_set1_epi8(3), sg = _mm512_set1_epi8(-5);
    for (long it = 0; it < iters; it++)
        __asm__ volatile(
            "vpdpbusd %[sg], %[u], %[a0]\n\t"
            "vpdpbusd %[sg], %[u], %[a1]\n\t"
            "vpdpbusd %[sg], %[u], %[a2]\n\t"
            "vpdpbusd %[sg], %[u], %[a3]\n\t"
            "vpdpbusd %[sg], %[u], %[a4]\n\t"
            "vpdpbusd %[sg], %[u], %[a5]\n\t"
            "vpdpbusd %[sg], %[u], %[a6]\n\t"
            "vpdpbusd %[sg], %[u], %[a7]\n\t"
            "vpdpbusd %[sg], %[u], %[a8]\n\t"
            "vpdpbusd %[sg], %[u], %[a9]\n\t"
            "vpdpbusd %[sg], %[u], %[a10]\n\t"
            "vpdpbusd %[sg], %[u], %[a11]\n\t"
            : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5), [a6] "+v"(a6), [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9), [a10] "+v"(a10), [a11] "+v"(a11)
            : [u] "v"(u), [sg] "v"(sg));
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)), _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7))), _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
    return (float)_mm512_reduce_add_epi32(s);
}

#endif
