/* Unit tests of icl_xcalloc_huge: zeroed like calloc, 2 MiB aligned from
 * ICL_HUGE_MIN bytes on, and (where the kernel offers transparent huge
 * pages and no sanitizer replaces the allocator) backed by huge pages, as
 * /proc/self/smaps reports them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void small_is_zeroed(void **state)
{
    (void)state;
    float *p = icl_xcalloc_huge(1000, sizeof(float));
    assert_non_null(p);
    assert_true(all_zero((unsigned char *)p, 1000 * sizeof(float)));
    p[999] = 1.0f; /* writable to its end (ASan checks the bound) */
    free(p);
}

static void large_is_zeroed_and_aligned(void **state)
{
    (void)state;
    /* dirty the heap first, so that a reused block would show */
    size_t n = ICL_HUGE_MIN / sizeof(float) + 12345;
    float *d = malloc(n * sizeof(float));
    memset(d, 0xab, n * sizeof(float));
    free(d);
    float *p = icl_xcalloc_huge(n, sizeof(float));
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % ((uintptr_t)2 << 20), 0);
    assert_true(all_zero((unsigned char *)p, n * sizeof(float)));
    p[n - 1] = 2.0f;
    assert_true(p[n - 1] == 2.0f);
    free(p);
}

/* AnonHugePages (kB) of the mapping that holds p, from /proc/self/smaps; -1 if unknown */
__attribute__((unused)) /* not under ASan */ static long anon_huge_kb(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in = 0;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb;
}

static void large_is_on_huge_pages(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan's allocator places the block itself */
#else
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char mode[128] = "";
    if (!f || !fgets(mode, sizeof mode, f) || strstr(mode, "[never]")) {
        if (f)
            fclose(f);
        skip(); /* no transparent huge pages here: the advice is a no-op */
    }
    fclose(f);
    size_t n = 4 * ICL_HUGE_MIN / sizeof(float);
    float *p = icl_xcalloc_huge(n, sizeof(float));
    long kb = anon_huge_kb(p);
    free(p);
    if (kb < 0)
        skip(); /* no /proc */
    /* all of it, unless the kernel had no free huge page at that moment */
    assert_true(kb >= 2048);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_is_zeroed),
        cmocka_unit_test(large_is_zeroed_and_aligned),
        cmocka_unit_test(large_is_on_huge_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
