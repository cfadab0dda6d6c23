/* A Linux that does not grant this process the AMX tile data (arch_prctl
 * ARCH_REQ_XCOMP_PERM fails: an older kernel, a sandbox's seccomp policy,
 * a sigaltstack too small for the tile state): the bf16 products and
 * attention must not touch the tiles (a tile instruction would raise
 * SIGILL) and must say so: icl_bf16_amx 0, the path named "avx512bf16"
 * (or portable), and bf16 attention (icl_attn_shape.bf16) on vdpbf16ps
 * where the CPU has AVX512-BF16, else the float32 kernels' bits (ops.h).  The refusal is made here with a seccomp filter
 * that fails that one arch_prctl with EPERM, installed before the first
 * question (bf16.c asks once per process).  Where seccomp filters cannot
 * be installed, ICL_BF16_AMX=0 turns AMX off instead (the same answer,
 * without the system call). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "ops.h"
#include "util.h"

#if defined(__linux__) && defined(__x86_64__)
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

/* arch_prctl(ARCH_REQ_XCOMP_PERM, ...) fails with EPERM; every other system
 * call as before.  1 when installed. */
static int deny_amx(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_arch_prctl, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}
#else
static int deny_amx(void) { return 0; }
#endif

static int denied; /* 1: the seccomp filter; 0: ICL_BF16_AMX=0 */

static uint64_t rng = 99;
static float frand(void) /* uniform in [-1, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / (double)(1ull << 24) * 2 - 1);
}

/* out, lse and dqkv of SmolLM2's heads (9 / 3 of 64), T 70 with three
 * packed documents, on 2 threads, bf16 or float32 */
static void attention_run(int bf16, const float *qkv, const float *dO, const int32_t *doc, float *res)
{
    icl_attn_shape s = {2, 70, 9, 3, 64, 0, 0, 0, 0, 0.125f, bf16};
    s.ko = s.H * s.hd, s.vo = s.ko + s.KV * s.hd, s.ld = s.vo + s.KV * s.hd;
    size_t N = (size_t)s.B * s.T, lo = (size_t)s.H * s.hd;
    icl_set_threads(2);
    icl_attention_forward(res, (long)lo, res + N * lo, qkv, doc, &s);
    icl_attention_backward(res + N * lo + N * s.H, dO, (long)lo, res, (long)lo, res + N * lo, qkv, doc, &s);
    icl_set_threads(0);
}

static void amx_refused(void **state)
{
    (void)state;
    icl_cpu_facts cpu;
    icl_cpu_probe(&cpu);
    print_message("# CPU AMX-BF16 %d, OS tile state %d; %s: path %s\n", cpu.amx_bf16, cpu.amx_os,
                  denied ? "arch_prctl refused by seccomp" : "ICL_BF16_AMX=0", icl_bf16_path_name());
    assert_int_equal(icl_bf16_amx(), 0);
    assert_int_equal(icl_bf16_amx_active(), 0);
    const char *name = icl_bf16_path_name();
    if (icl_bf16_native())
        assert_string_equal(name, "avx512bf16");
    else
        assert_true(!strncmp(name, "portable", 8));

    /* bf16 attention: no tiles; the AVX512-BF16 kernels where the CPU has
     * them (their bits differ from float32's), else the float32 kernels' bits */
    int vdp = icl_attention_bf16_kernels(64); /* never 2 (AMX) here */
#if defined(__linux__) && defined(__x86_64__)
    assert_int_equal(vdp, icl_bf16_native() ? 1 : 0);
#else
    assert_int_equal(vdp, 0);
#endif
    size_t N = 2 * 70, ld = (9 + 3 + 3) * 64, lo = 9 * 64, nres = N * lo + N * 9 + N * ld;
    float *qkv = icl_xmalloc(sizeof(float) * N * ld), *dO = icl_xmalloc(sizeof(float) * N * lo);
    float *r[2] = {icl_xmalloc(sizeof(float) * nres), icl_xmalloc(sizeof(float) * nres)};
    int32_t doc[2 * 70];
    for (size_t i = 0; i < N * ld; i++)
        qkv[i] = 2 * frand();
    for (size_t i = 0; i < N * lo; i++)
        dO[i] = frand();
    for (int t = 0; t < 70; t++)
        doc[t] = t < 17 ? 0 : t < 50 ? 1 : 2, doc[70 + t] = t < 66 ? 4 : -1;
    attention_run(1, qkv, dO, doc, r[0]);
    attention_run(0, qkv, dO, doc, r[1]);
    if (vdp)
        assert_true(memcmp(r[0], r[1], sizeof(float) * nres) != 0);
    else
        assert_memory_equal(r[0], r[1], sizeof(float) * nres);

    /* a bf16 product big enough for the threads and the AMX blocks where they ran: no tiles either */
    int M = 96, Nn = 128, K = 256;
    float *x = icl_xmalloc(sizeof(float) * M * K), *w = icl_xmalloc(sizeof(float) * Nn * K);
    float *y = icl_xmalloc(sizeof(float) * M * Nn);
    uint16_t *wb = icl_xmalloc(sizeof(uint16_t) * Nn * K);
    for (int i = 0; i < M * K; i++)
        x[i] = frand();
    for (int i = 0; i < Nn * K; i++)
        w[i] = frand();
    icl_bf16_from_f32_row(w, wb, (size_t)Nn * K);
    assert_int_equal(icl_bf16_gemm(M, Nn, K, x, K, wb, K, NULL, y, Nn, 0.0f, 2), 0);
    double e = 0; /* row 0 against the rounded operands, over bf16.h's bound for the float32 sums: K 2^-24 sum |x w| */
    for (int n = 0; n < Nn; n++) {
        double s = 0, a = 0;
        float xr, wr;
        for (int k = 0; k < K; k++) {
            uint16_t h;
            icl_bf16_from_f32_row(&x[k], &h, 1);
            icl_bf16_to_f32_row(&h, &xr, 1);
            icl_bf16_to_f32_row(&wb[(size_t)n * K + k], &wr, 1);
            s += (double)xr * wr;
            a += fabs((double)xr * wr);
        }
        e = fmax(e, fabs(y[n] - s) / (K * 0x1p-24 * a));
    }
    print_message("# bf16 product without AMX: row 0 error %.1e of the float32 sums' bound\n", e);
    assert_true(e <= 1);
    free(x), free(w), free(y), free(wb);
    free(qkv), free(dO), free(r[0]), free(r[1]);
}

int main(void)
{
    denied = deny_amx();
    if (!denied) {
        fprintf(stderr, "# seccomp filters cannot be installed here (%s): ICL_BF16_AMX=0 instead\n", strerror(errno));
        setenv("ICL_BF16_AMX", "0", 1);
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(amx_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
