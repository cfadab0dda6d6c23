/* Unit tests of icl_rng_shuffle and icl_rng_normal (the generator itself is
 * checked against its reference outputs in test_sample.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static void shuffle_is_a_deterministic_permutation(void **state)
{
    (void)state;
    enum { N = 1000 };
    size_t a[N], b[N];
    int seen[N] = {0};
    for (size_t i = 0; i < N; i++) a[i] = b[i] = i;
    icl_rng r1, r2;
    icl_rng_seed(&r1, 42, 0);
    icl_rng_seed(&r2, 42, 0);
    icl_rng_shuffle(&r1, a, N);
    icl_rng_shuffle(&r2, b, N);
    assert_memory_equal(a, b, sizeof a);
    size_t fixed = 0;
    for (size_t i = 0; i < N; i++) {
        assert_true(a[i] < N);
        seen[a[i]]++;
        fixed += a[i] == i;
    }
    for (size_t i = 0; i < N; i++) assert_int_equal(seen[i], 1);
    assert_true(fixed < 10); /* a random permutation has ~1 fixed point */
    icl_rng_seed(&r2, 43, 0);
    for (size_t i = 0; i < N; i++) b[i] = i;
    icl_rng_shuffle(&r2, b, N);
    assert_memory_not_equal(a, b, sizeof a);
    /* each position uniform: element 0 lands in each tenth ~10% of the time */
    int where[10] = {0};
    for (int t = 0; t < 20000; t++) {
        size_t c[10];
        for (size_t i = 0; i < 10; i++) c[i] = i;
        icl_rng_shuffle(&r1, c, 10);
        for (size_t i = 0; i < 10; i++) if (c[i] == 0) where[i]++;
    }
    for (int i = 0; i < 10; i++) assert_true(abs(where[i] - 2000) < 200);
}

static void normal_has_unit_moments(void **state)
{
    (void)state;
    icl_rng r;
    icl_rng_seed(&r, 7, 3);
    double s = 0, s2 = 0;
    enum { N = 200000 };
    for (int i = 0; i < N; i++) {
        double x = icl_rng_normal(&r);
        assert_true(isfinite(x));
        s += x;
        s2 += x * x;
    }
    double mean = s / N, var = s2 / N - mean * mean;
    assert_true(fabs(mean) < 0.01);
    assert_true(fabs(var - 1.0) < 0.01);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shuffle_is_a_deterministic_permutation),
        cmocka_unit_test(normal_has_unit_moments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
