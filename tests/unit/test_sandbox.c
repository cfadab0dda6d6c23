/* Unit tests of lib/sandbox.c: exit status, output capture and its limit,
 * the wall-clock timeout, the memory limit, parallel slots, and
 * icl_find_program.  Needs bwrap and /usr/bin/python3 (make deps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sandbox.h"

static icl_sandbox_limits lim;

static int setup(void **state)
{
    (void)state;
    icl_sandbox_defaults(&lim);
    lim.bwrap = icl_find_program("bwrap", "/usr/bin:/bin");
    lim.interpreter = icl_find_program("python3", "/usr/local/bin:/usr/bin:/bin");
    if (!lim.bwrap || !lim.interpreter) {
        fprintf(stderr, "test_sandbox needs bwrap and python3 (make deps)\n");
        return -1;
    }
    lim.timeout_s = 2;
    lim.cpu_s = 2;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free((char *)lim.bwrap);
    free((char *)lim.interpreter);
    return 0;
}

static void find_program(void **state)
{
    (void)state;
    char *p = icl_find_program("sh", "/nonexistent:/bin:/usr/bin");
    assert_non_null(p);
    assert_non_null(strstr(p, "/sh"));
    free(p);
    assert_null(icl_find_program("no-such-program-icl", "/bin:/usr/bin"));
    assert_null(icl_find_program("sh", NULL));
    assert_null(icl_find_program("/nonexistent/sh", "/bin"));
}

static void status_and_output(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(icl_sandbox_check(&lim, err, sizeof err), 0);
    const char *progs[] = {
        "print('hello')\n",
        "import sys\nsys.exit(3)\n",
        "import os\nos.kill(os.getpid(), 9)\n",
        "print('x' * 100000)\n",
        "while True:\n    pass\n",
        "x = bytearray(2 * 1024 ** 3)\n",
    };
    size_t n = sizeof progs / sizeof progs[0];
    icl_sandbox_result res[6];
    lim.output_max = 1000;
    time_t t0 = time(NULL);
    assert_int_equal(icl_sandbox_run(&lim, progs, n, 3, res, NULL, NULL, err, sizeof err), 0);
    time_t t1 = time(NULL);
    assert_true(res[0].passed);
    assert_string_equal(res[0].output, "hello\n");
    assert_false(res[1].passed);
    assert_int_equal(res[1].exit_status, 3);
    assert_false(res[2].passed);
    assert_int_equal(res[2].exit_status, 128 + 9);
    assert_true(res[3].passed); /* passes; output cut at output_max */
    assert_int_equal(res[3].output_len, 1000);
    assert_true(res[3].truncated);
    assert_false(res[4].passed);
    assert_true(res[4].timed_out);
    assert_false(res[5].passed);
    assert_false(res[5].timed_out);
    assert_non_null(strstr(res[5].output, "MemoryError"));
    assert_true(t1 - t0 < 30); /* the loop was stopped */
    for (size_t i = 0; i < n; i++)
        icl_sandbox_result_free(&res[i]);
}

static void no_network_read_only(void **state)
{
    (void)state;
    char err[512];
    const char *progs[] = {
        "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n",
        "open('/etc/icl-sandbox-test', 'w')\n",
        "open('/tmp/ok', 'w').write('fine')\nassert open('/tmp/ok').read() == 'fine'\n",
        "import os\nassert os.getcwd() == '/tmp' and sorted(os.listdir('/tmp')) == ['program.py']\n",
    };
    icl_sandbox_result res[4];
    assert_int_equal(icl_sandbox_run(&lim, progs, 4, 2, res, NULL, NULL, err, sizeof err), 0);
    assert_false(res[0].passed);
    assert_false(res[1].passed);
    assert_non_null(strstr(res[1].output, "Read-only file system"));
    assert_true(res[2].passed);
    if (!res[3].passed)
        fail_msg("%s", res[3].output);
    for (size_t i = 0; i < 4; i++)
        icl_sandbox_result_free(&res[i]);
}

static void bad_interpreter(void **state)
{
    (void)state;
    char err[512];
    icl_sandbox_limits l = lim;
    l.interpreter = "/nonexistent/python3";
    assert_int_equal(icl_sandbox_check(&l, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not work here"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(find_program),
        cmocka_unit_test(status_and_output),
        cmocka_unit_test(no_network_read_only),
        cmocka_unit_test(bad_interpreter),
    };
    return cmocka_run_group_tests_name("sandbox", tests, setup, teardown);
}
