/* Unit tests of lib/shots.c: BM25 scores equal rank_bm25's BM25Okapi
 * (tests/data/shots/make_shots.py -> similar*.jsonl, English 13a tokens and
 * Chinese zh tokens), the leakage key's normalisation, and the seeded
 * random choice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shots.h"

#define MAXREC 64

static size_t load(const char *name, json_t *rec[MAXREC])
{
    char path[512], line[8192];
    snprintf(path, sizeof path, TEST_DATA "/shots/%s", name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = 0;
    while (n < MAXREC && fgets(line, sizeof line, f)) {
        rec[n] = json_loads(line, 0, NULL);
        assert_non_null(rec[n]);
        n++;
    }
    fclose(f);
    return n;
}

static icl_str str(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return v ? (icl_str){json_string_value(v), json_string_length(v)} : (icl_str){"", 0};
}

static icl_tfields fields(json_t *o)
{
    return (icl_tfields){{"", 0}, str(o, "instruction"), str(o, "input"), str(o, "output")};
}

/* Scores and rankings of every query against the pool equal the reference. */
static void bm25_check(const char *pool_name, const char *query_name, const char *ref_name, int k)
{
    json_t *pool[MAXREC], *qs[MAXREC], *ref[MAXREC];
    size_t np = load(pool_name, pool), nq = load(query_name, qs), nr = load(ref_name, ref);
    assert_int_equal(nq, nr);
    icl_shots *s = icl_shots_new(k, ICL_SHOTS_SIMILAR, 0, 0);
    for (size_t i = 0; i < np; i++) {
        icl_tfields f = fields(pool[i]);
        assert_int_equal(icl_shots_add(s, &f, json_object_get(pool[i], "id"), (long)i), 1);
    }
    icl_shots_index(s);
    size_t pick[16];
    for (size_t q = 0; q < nq; q++) {
        icl_tfields f = fields(qs[q]);
        json_t *ids = json_object_get(ref[q], "shots"), *sc = json_object_get(ref[q], "scores");
        assert_int_equal(icl_shots_pick(s, &f, q, pick), json_array_size(ids));
        for (size_t j = 0; j < json_array_size(ids); j++) {
            icl_buf b = {0};
            icl_shots_put_id(s, pick[j], &b);
            char *want = json_dumps(json_array_get(ids, j), JSON_ENCODE_ANY | JSON_COMPACT);
            assert_string_equal(b.data, want);
            free(want);
            icl_buf_free(&b);
            double got = icl_shots_bm25(s, &f, pick[j]), exp = json_real_value(json_array_get(sc, j));
            assert_true(fabs(got - exp) <= 1e-9 * fmax(1, fabs(exp)));
        }
    }
    icl_shots_free(s);
    for (size_t i = 0; i < np; i++)
        json_decref(pool[i]);
    for (size_t i = 0; i < nq; i++) {
        json_decref(qs[i]);
        json_decref(ref[i]);
    }
}

static void test_bm25_english(void **st)
{
    (void)st;
    bm25_check("pool.jsonl", "queries.jsonl", "similar.jsonl", 4);
}

static void test_bm25_chinese(void **st)
{
    (void)st;
    bm25_check("pool-zh.jsonl", "queries-zh.jsonl", "similar-zh.jsonl", 3);
}

static void test_key(void **st)
{
    (void)st;
    icl_tfields a = {{"", 0}, {"Say  it", 7}, {"  I LOVE it,\tfive stars. ", 25}, {"x", 1}};
    icl_tfields b = {{"S", 1}, {"say it", 6}, {"i love it, five stars.", 22}, {"y", 1}};
    icl_tfields c = {{"", 0}, {"say it i love it,", 17}, {"five stars.", 11}, {"x", 1}};
    assert_true(icl_shots_key(&a) == icl_shots_key(&b)); /* case, spaces, output, system ignored */
    assert_true(icl_shots_key(&a) != icl_shots_key(&c)); /* instruction and input are kept apart */
    icl_shots *s = icl_shots_new(2, ICL_SHOTS_FIXED, 0, 0);
    assert_int_equal(icl_shots_add(s, &a, NULL, 0), 1);
    assert_int_equal(icl_shots_add(s, &b, NULL, 1), 0); /* a duplicate of a */
    assert_int_equal(icl_shots_add(s, &c, NULL, 2), 1);
    assert_int_equal(icl_shots_size(s), 2);
    size_t pick[2];
    assert_int_equal(icl_shots_pick(s, &b, 0, pick), 1); /* b's duplicate a is never shown */
    assert_int_equal(pick[0], 1);
    icl_shots_free(s);
}

static void test_random_seeded(void **st)
{
    (void)st;
    json_t *pool[MAXREC];
    size_t np = load("pool.jsonl", pool);
    icl_shots *s = icl_shots_new(5, ICL_SHOTS_RANDOM, 42, 0), *t = icl_shots_new(5, ICL_SHOTS_RANDOM, 42, 0);
    for (size_t i = 0; i < np; i++) {
        icl_tfields f = fields(pool[i]);
        icl_shots_add(s, &f, NULL, (long)i);
        icl_shots_add(t, &f, NULL, (long)i);
    }
    icl_shots_index(s);
    icl_shots_index(t);
    icl_tfields q = {{"", 0}, {"Q", 1}, {"", 0}, {"A", 1}};
    size_t a[5], b[5], c[5];
    int differ = 0;
    for (uint64_t pos = 0; pos < 20; pos++) {
        assert_int_equal(icl_shots_pick(s, &q, pos, a), 5);
        assert_int_equal(icl_shots_pick(s, &q, pos + 1, c), 5);
        assert_int_equal(icl_shots_pick(t, &q, pos, b), 5); /* another instance, same seed */
        assert_memory_equal(a, b, sizeof a);
        differ += memcmp(a, c, sizeof a) != 0;
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < i; j++)
                assert_true(a[i] != a[j]);
    }
    assert_true(differ >= 15); /* the position changes the draw */
    icl_shots_free(s);
    icl_shots_free(t);
    for (size_t i = 0; i < np; i++)
        json_decref(pool[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bm25_english),
        cmocka_unit_test(test_bm25_chinese),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_random_seeded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
