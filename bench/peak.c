/* bench/peak.c - this machine's own limits, so that every benchmark figure
 * can be quoted as a ratio to them (issue 14):
 *   fp32 FMA          vfmadd231ps zmm  (16 lanes x 2 FLOP = 32 FLOP / instruction)
 *   bf16 dot product  vdpbf16ps zmm    (16 lanes x 2 products x 2 = 64 FLOP / instruction)
 *   int8 dot product  vpdpbusd zmm     (16 lanes x 4 u8*s8 products x 2 = 128 OP / instruction)
 *   memory bandwidth  streaming read of a buffer much larger than the caches
 *                     (vmovaps + vaddps, 4 accumulators; bytes read / time)
 * each on 1 and 2 threads (or the thread counts given).  Compute loops keep
 * 12 independent accumulators in registers, so they measure issue rate only.
 *
 * usage: peak [SECONDS [MIB [THREADS...]]]
 *   SECONDS  time per measurement (default 0.5; each is the best of 3)
 *   MIB      memory-bandwidth buffer in MiB (default 1024)
 *   THREADS  thread counts (default 1 2)
 * The instruction sets are detected at run time (__builtin_cpu_supports);
 * a missing one is reported on its line instead of a figure.  Prints a table,
 * one line per measurement:  "name threads value unit". */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#include "peak_kernels.h"

/* Sum of n floats (n a multiple of 64, p 64-byte aligned).  noipa: gcc
 * would otherwise see a pure function and call it once for all passes. */
__attribute__((target("avx512f"), noipa)) static float k_read512(const float *p, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(p + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(p + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(p + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* The same without AVX-512 (what the compiler makes of it for the target). */
__attribute__((noipa)) static float k_read_any(const float *p, size_t n)
{
    float s[16] = {0};
    for (size_t i = 0; i < n; i += 16)
        for (int j = 0; j < 16; j++)
            s[j] += p[i + j];
    float t = 0;
    for (int j = 0; j < 16; j++)
        t += s[j];
    return t;
}

static volatile float sink;

enum { K_FMA, K_BF16, K_VNNI };

/* Seconds for every thread of nt to run iters iterations of kernel k. */
static double run_compute(int k, long iters, int nt)
{
    double t0 = icl_now();
#pragma omp parallel num_threads(nt)
    {
        float r = k == K_FMA ? k_fma(iters) : k == K_BF16 ? k_bf16(iters) : k_vnni(iters);
#pragma omp critical
        sink += r;
    }
    return icl_now() - t0;
}

/* Best of 3 rates (operations / s), each run lasting about secs. */
static double rate_compute(int k, int nt, double secs, double ops_per_iter)
{
    long iters = 1000; /* doubled until one thread's run lasts secs / 2 (one
                          * thread: a second one waiting for a busy CPU must not
                          * end the calibration with thread start-up dominating) */
    while (run_compute(k, iters, 1) < secs / 2)
        iters *= 2;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double s = run_compute(k, iters, nt);
        double v = ops_per_iter * iters * nt / s;
        best = v > best ? v : best;
    }
    return best;
}

/* Best of 3 bandwidths (bytes / s): every thread reads its share of buf
 * (n floats), passes repeated to last about secs (calibrated on the threads'
 * own times, as rate_compute). */
static double rate_read(float *buf, size_t n, int nt, double secs, int avx512)
{
    int passes = 1;
    double best = 0;
    size_t chunk = n / (size_t)nt / 64 * 64;
    for (int r = 0; r < 4; r++) {
        double own = 0, t0 = icl_now();
#pragma omp parallel num_threads(nt)
        {
            double a = icl_now();
            size_t lo = (size_t)omp_get_thread_num() * chunk;
            float acc = 0;
            for (int p = 0; p < passes; p++)
                acc += avx512 ? k_read512(buf + lo, chunk) : k_read_any(buf + lo, chunk);
            a = icl_now() - a;
#pragma omp critical
            {
                sink += acc;
                own = a > own ? a : own;
            }
        }
        double t = icl_now() - t0;
        if (r == 0) { /* calibration */
            passes = (int)(secs / own) + 1;
            continue;
        }
        double v = (double)(chunk * (size_t)nt * sizeof(float)) * passes / t;
        best = v > best ? v : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.5;
    long mib = argc > 2 ? atol(argv[2]) : 1024;
    if (secs <= 0 || secs > 60 || mib < 1 || mib > 65536) {
        fprintf(stderr, "usage: peak [SECONDS (0-60] [MIB [THREADS...]]]\n");
        return 2;
    }
    int nth[16], nn = 0;
    for (int i = 3; i < argc && nn < 16; i++) {
        nth[nn] = atoi(argv[i]);
        if (nth[nn] < 1 || nth[nn] > 1024) {
            fprintf(stderr, "peak: bad thread count '%s'\n", argv[i]);
            return 2;
        }
        nn++;
    }
    if (!nn) {
        nth[0] = 1;
        nth[1] = 2;
        nn = 2;
    }
    __builtin_cpu_init();
    int f512 = __builtin_cpu_supports("avx512f");
    int bf16 = f512 && __builtin_cpu_supports("avx512bf16");
    int vnni = f512 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");

    size_t n = (size_t)mib * 1024 * 1024 / sizeof(float) / 64 * 64;
    float *buf = aligned_alloc(64, n * sizeof(float));
    if (!buf) {
        fprintf(stderr, "peak: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    /* first touch by the threads that read (one pass per thread count later) */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 1023) * 1e-3f;

    char load[64] = "?";
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (!fgets(load, sizeof load, lf))
            strcpy(load, "?");
        load[strcspn(load, "\n")] = 0;
        fclose(lf);
    }
    printf("# peak: %d CPUs online, %.2f s per measurement (best of 3), read buffer %ld MiB; loadavg %s\n",
           omp_get_num_procs(), secs, mib, load);
    printf("# %-24s %7s %12s %s\n", "measurement", "threads", "value", "unit");
    for (int i = 0; i < nn; i++) {
        int t = nth[i];
        if (f512)
            printf("  %-24s %7d %12.1f GFLOP/s\n", "fp32_fma_avx512", t, rate_compute(K_FMA, t, secs, 32.0 * ACC) / 1e9);
        else
            printf("  %-24s %7d %12s (this CPU lacks AVX-512F)\n", "fp32_fma_avx512", t, "n/a");
        if (bf16)
            printf("  %-24s %7d %12.1f GFLOP/s\n", "bf16_dot_vdpbf16ps", t, rate_compute(K_BF16, t, secs, 64.0 * ACC) / 1e9);
        else
            printf("  %-24s %7d %12s (this CPU lacks AVX512-BF16)\n", "bf16_dot_vdpbf16ps", t, "n/a");
        if (vnni)
            printf("  %-24s %7d %12.1f GOP/s\n", "int8_dot_vpdpbusd", t, rate_compute(K_VNNI, t, secs, 128.0 * ACC) / 1e9);
        else
            printf("  %-24s %7d %12s (this CPU lacks AVX512-VNNI)\n", "int8_dot_vpdpbusd", t, "n/a");
        printf("  %-24s %7d %12.1f GB/s\n", f512 ? "mem_read_avx512" : "mem_read", t, rate_read(buf, n, t, secs, f512) / 1e9);
        fflush(stdout);
    }
    free(buf);
    return 0;
}
