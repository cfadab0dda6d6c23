/* Unit tests of cmd/common/adapt.c (linked into the programs and the unit
 * tests): the thread count that follows the machine's load (issue 18, "no
 * collapse under load").  The decision is a pure function of the measured
 * jiffies; the numbers below are what a window of one second (100 jiffies
 * at CLK_TCK 100) measures in the situations named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <omp.h>

#include "../../cmd/common/adapt.h"

/* decide(busy, own, interval, ncpu, cur, max) */
#define D icl_adapt_decide

static void two_cores(void **state)
{
    (void)state;
    /* idle machine: icl's 2 threads are all the busy time */
    assert_int_equal(D(200, 200, 100, 2, 2, 2), 2);
    /* one busy loop beside icl: the others use a whole core */
    assert_int_equal(D(200, 100, 100, 2, 2, 2), 1);
    /* half a core counts as taken; just under half does not */
    assert_int_equal(D(150, 100, 100, 2, 2, 2), 1);
    assert_int_equal(D(149, 100, 100, 2, 2, 2), 2);
    /* both cores taken by others: still one thread */
    assert_int_equal(D(200, 0, 100, 2, 2, 2), 1);
    /* back up only when the others leave three quarters of the core */
    assert_int_equal(D(140, 100, 100, 2, 1, 2), 1);
    assert_int_equal(D(126, 100, 100, 2, 1, 2), 1);
    assert_int_equal(D(124, 100, 100, 2, 1, 2), 2);
    assert_int_equal(D(100, 100, 100, 2, 1, 2), 2);
    /* a two-second window: the same shares */
    assert_int_equal(D(400, 200, 200, 2, 2, 2), 1);
    assert_int_equal(D(260, 200, 200, 2, 2, 2), 2);
}

static void many_cores(void **state)
{
    (void)state;
    /* 16 cores, others at 3.4 cores: 13 free; at 3.6: 12 */
    assert_int_equal(D(1600, 1260, 100, 16, 16, 16), 13);
    assert_int_equal(D(1600, 1240, 100, 16, 16, 16), 12);
    /* from 12, the others falling to 3.3 cores is not enough to go up
     * (3.3 + 3/4 rounds down to 4 taken), 3.2 is (13 threads) */
    assert_int_equal(D(1600, 1270, 100, 16, 12, 16), 12);
    assert_int_equal(D(1600, 1280, 100, 16, 12, 16), 13);
    /* all quiet again: the full count */
    assert_int_equal(D(1600, 1600, 100, 16, 13, 16), 16);
}

static void limits(void **state)
{
    (void)state;
    /* the count without load may exceed the affinity mask (all online cores) */
    assert_int_equal(D(200, 200, 100, 2, 4, 4), 4);
    assert_int_equal(D(200, 100, 100, 2, 4, 4), 1);
    /* never above max */
    assert_int_equal(D(100, 100, 100, 4, 1, 1), 1);
    assert_int_equal(D(300, 100, 100, 8, 2, 2), 2);
    /* tick noise: own time above the busy time, busy above the cores */
    assert_int_equal(D(195, 200, 100, 2, 1, 2), 2);
    assert_int_equal(D(900, 0, 100, 2, 2, 2), 1);
    /* no window: unchanged */
    assert_int_equal(D(200, 0, 0, 2, 2, 2), 2);
    assert_int_equal(D(200, 0, -1, 2, 1, 2), 1);
}

static void fixed_counts_never_change(void **state)
{
    (void)state;
    icl_adapt a;
    omp_set_num_threads(3);
    icl_adapt_start(&a, 0, 3, 0);
    assert_int_equal(a.on, 0);
    assert_int_equal(icl_adapt_poll(&a, "step 2"), 3);
    assert_int_equal(omp_get_max_threads(), 3);
    /* on: /proc/stat is there (Linux), the first window is not over yet */
    icl_adapt_start(&a, 1, 0, 0);
    assert_int_equal(a.on, 1);
    assert_true(a.ncpu >= 1);
    assert_int_equal(icl_adapt_poll(&a, "step 2"), 3); /* max read from OpenMP */
    assert_int_equal(a.max, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_cores),
        cmocka_unit_test(many_cores),
        cmocka_unit_test(limits),
        cmocka_unit_test(fixed_counts_never_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
