/* Unit tests of lib/rng.c and lib/sample.c: fixed distributions, draws,
 * and transformers' own processors (tests/data/eval/hf_samplers.json, made
 * by tests/data/eval/make_samplers.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "rng.h"
#include "sample.h"

static json_t *load_json(const char *name)
{
    char path[4096];
    const char *dir = getenv("TESTS_DIR");
    snprintf(path, sizeof path, "%s/data/eval/%s", dir ? dir : "tests", name);
    json_error_t e;
    json_t *v = json_load_file(path, 0, &e);
    if (!v)
        fail_msg("%s: %s", path, e.text);
    return v;
}

/* ---- rng ---- */

static void rng_known_values(void **state)
{
    (void)state;
    /* splitmix64 from 0: the published first output. */
    uint64_t x = 0;
    assert_true(icl_splitmix64(&x) == 0xE220A8397B1DCDAFull);
    /* xoshiro256** from state {1,2,3,4}: first outputs of the reference code. */
    icl_rng r = {{1, 2, 3, 4}};
    assert_true(icl_rng_next_u64(&r) == 11520ull);
    assert_true(icl_rng_next_u64(&r) == 0ull);
    assert_true(icl_rng_next_u64(&r) == 1509978240ull);
    assert_true(icl_rng_next_u64(&r) == 1215971899390074240ull);
}

static void rng_streams_differ_and_repeat(void **state)
{
    (void)state;
    icl_rng a, b, c;
    icl_rng_seed(&a, 42, 0);
    icl_rng_seed(&b, 42, 1);
    icl_rng_seed(&c, 42, 0);
    int same = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = icl_rng_next_u64(&a), y = icl_rng_next_u64(&b), z = icl_rng_next_u64(&c);
        same += x == y;
        assert_true(x == z);
    }
    assert_int_equal(same, 0);
    icl_rng_seed(&a, 0, 0); /* a zero seed still gives a live generator */
    assert_true(icl_rng_next_u64(&a) != icl_rng_next_u64(&a));
}

static void rng_uniform_and_below(void **state)
{
    (void)state;
    icl_rng r;
    icl_rng_seed(&r, 7, 3);
    double sum = 0;
    int hist[10] = {0};
    const int N = 200000;
    for (int i = 0; i < N; i++) {
        double u = icl_rng_uniform(&r);
        assert_true(u >= 0 && u < 1);
        sum += u;
        uint64_t k = icl_rng_below(&r, 10);
        assert_true(k < 10);
        hist[k]++;
    }
    assert_true(fabs(sum / N - 0.5) < 0.005);
    for (int k = 0; k < 10; k++)
        assert_true(abs(hist[k] - N / 10) < N / 100);
    assert_true(icl_rng_below(&r, 1) == 0);
    assert_true(icl_rng_below(&r, 0) == 0);
}

/* ---- samplers on fixed distributions ---- */

static const float P4[4] = {0.0625f, 0.25f, 0.1875f, 0.5f};

static int topp_kept(float p, int *kept)
{
    icl_sampler s;
    icl_sampler_init(&s, 4);
    float l[4];
    for (int i = 0; i < 4; i++)
        l[i] = logf(P4[i]);
    icl_top_p(&s, l, p);
    int n = 0;
    for (int i = 0; i < 4; i++)
        if (l[i] > -INFINITY) {
            assert_true(l[i] == logf(P4[i])); /* kept logits unchanged */
            kept[n++] = i;
        }
    icl_sampler_free(&s);
    return n;
}

static void top_p_issue_cases(void **state)
{
    (void)state;
    int k[4];
    assert_int_equal(topp_kept(0.5f, k), 1);
    assert_int_equal(k[0], 3);
    assert_int_equal(topp_kept(0.74f, k), 2);
    assert_int_equal(k[0], 1);
    assert_int_equal(k[1], 3);
    assert_int_equal(topp_kept(0.75f, k), 2);
    assert_int_equal(k[0], 1);
    assert_int_equal(k[1], 3);
    assert_int_equal(topp_kept(0.76f, k), 3);
    assert_int_equal(k[0], 1);
    assert_int_equal(k[1], 2);
    assert_int_equal(k[2], 3);
    assert_int_equal(topp_kept(1.0f, k), 4);
    assert_int_equal(topp_kept(0.0f, k), 1); /* p = 0: the top token only */
    assert_int_equal(k[0], 3);
    assert_int_equal(topp_kept(0.01f, k), 1);
}

static void top_p_matches_transformers_on_issue_cases(void **state)
{
    (void)state;
    json_t *d = load_json("hf_samplers.json");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(d, "top_p_issue"), i, c) {
        int k[4];
        int n = topp_kept((float)json_real_value(json_object_get(c, "top_p")), k);
        json_t *want = json_object_get(c, "kept");
        assert_int_equal(n, json_array_size(want));
        for (int j = 0; j < n; j++)
            assert_int_equal(k[j], json_integer_value(json_array_get(want, j)));
    }
    json_decref(d);
}

static void top_p_ties_as_transformers(void **state)
{
    (void)state;
    json_t *d = load_json("hf_samplers.json");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(d, "top_p_ties"), i, c) {
        json_t *jl = json_object_get(c, "logits"), *want = json_object_get(c, "kept");
        int V = (int)json_array_size(jl);
        float l[16];
        for (int j = 0; j < V; j++)
            l[j] = (float)json_number_value(json_array_get(jl, j));
        icl_sampler s;
        icl_sampler_init(&s, V);
        icl_top_p(&s, l, (float)json_number_value(json_object_get(c, "top_p")));
        size_t n = 0;
        for (int j = 0; j < V; j++)
            if (l[j] > -INFINITY) {
                assert_true(n < json_array_size(want));
                assert_int_equal(j, json_integer_value(json_array_get(want, n)));
                n++;
            }
        assert_int_equal(n, json_array_size(want));
        icl_sampler_free(&s);
    }
    json_decref(d);
}

/* Brute force as transformers writes it: full stable ascending sort,
 * cumulative softmax, remove c_j <= (1-p)(1+1e-6), keep the top; and top-k
 * by full sort.  Random rows with many ties and -inf entries. */
static const float *cmp_row;
static int asc_stable(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (cmp_row[i] != cmp_row[j])
        return cmp_row[i] < cmp_row[j] ? -1 : 1;
    return i - j;
}

static void top_p_top_k_match_brute_force(void **state)
{
    (void)state;
    enum { V = 700 };
    icl_sampler s;
    icl_sampler_init(&s, V);
    icl_rng r;
    icl_rng_seed(&r, 2024, 0);
    static float row[V], a[V];
    static int ord[V];
    for (int iter = 0; iter < 300; iter++) {
        float scale = (float)(0.1 + 8 * icl_rng_uniform(&r));
        for (int i = 0; i < V; i++) {
            row[i] = (float)(int)(icl_rng_uniform(&r) * 40) * scale / 10; /* ties */
            if (icl_rng_below(&r, 10) == 0)
                row[i] = -INFINITY;
        }
        float p = (float)icl_rng_uniform(&r);
        memcpy(a, row, sizeof row);
        icl_top_p(&s, a, p);
        for (int i = 0; i < V; i++)
            ord[i] = i;
        cmp_row = row;
        qsort(ord, V, sizeof *ord, asc_stable);
        float mx = row[ord[V - 1]];
        double total = 0, c = 0;
        for (int i = 0; i < V; i++)
            total += exp((double)row[i] - mx);
        double limit = (1.0 - p) * (1.0 + 1e-6) * total;
        for (int k = 0; k < V; k++) {
            int i = ord[k];
            c += exp((double)row[i] - mx);
            int removed = k < V - 1 && c <= limit;
            if (removed != (a[i] == -INFINITY) && row[i] != -INFINITY)
                fail_msg("iter %d: token %d (rank %d) %s", iter, i, k, removed ? "kept" : "removed");
            if (!removed && a[i] != row[i])
                fail_msg("iter %d: kept token %d changed", iter, i);
        }
        int k = 1 + (int)icl_rng_below(&r, V + 5);
        memcpy(a, row, sizeof row);
        icl_top_k(&s, a, k);
        float kth = row[ord[V - (k < V ? k : V)]];
        for (int i = 0; i < V; i++)
            assert_true(a[i] == (row[i] < kth ? -INFINITY : row[i]));
    }
    icl_sampler_free(&s);
}

static void top_k_cases(void **state)
{
    (void)state;
    icl_sampler s;
    icl_sampler_init(&s, 6);
    float l[6] = {1, 5, 3, 5, -2, 4};
    icl_top_k(&s, l, 100); /* k > vocab keeps all */
    for (int i = 0; i < 6; i++)
        assert_true(l[i] > -INFINITY);
    icl_top_k(&s, l, 6);
    for (int i = 0; i < 6; i++)
        assert_true(l[i] > -INFINITY);
    icl_top_k(&s, l, 3); /* 5, 5, 4 */
    float want3[6] = {-INFINITY, 5, -INFINITY, 5, -INFINITY, 4};
    assert_memory_equal(l, want3, sizeof l);
    float t[6] = {1, 5, 3, 5, -2, 4};
    icl_top_k(&s, t, 1); /* ties with the k-th are kept, as transformers */
    float want1[6] = {-INFINITY, 5, -INFINITY, 5, -INFINITY, -INFINITY};
    assert_memory_equal(t, want1, sizeof t);
    icl_sampler_free(&s);
}

static void min_p_cases(void **state)
{
    (void)state;
    icl_sampler s;
    icl_sampler_init(&s, 4);
    float l[4];
    for (int i = 0; i < 4; i++)
        l[i] = logf(P4[i]);
    icl_min_p(&s, l, 0.3f); /* threshold 0.15: drops 0.0625 */
    assert_true(l[0] == -INFINITY);
    assert_true(l[1] > -INFINITY && l[2] > -INFINITY && l[3] > -INFINITY);
    icl_min_p(&s, l, 0.4f); /* threshold 0.2 of the max: drops 0.1875 */
    assert_true(l[2] == -INFINITY && l[1] > -INFINITY);
    icl_min_p(&s, l, 1.0f); /* only the max */
    assert_true(l[1] == -INFINITY && l[3] > -INFINITY);
    icl_sampler_free(&s);
}

static void repetition_penalty_signs(void **state)
{
    (void)state;
    icl_sampler s;
    icl_sampler_init(&s, 5);
    float l[5] = {2.0f, -2.0f, 1.5f, -0.5f, 3.0f};
    int32_t ids[] = {0, 1, 1, 0, 3, 99, -1}; /* repeats count once; out of range ignored */
    icl_repetition_penalty(&s, l, ids, 7, 2.0f);
    assert_true(l[0] == 1.0f);  /* positive: divided */
    assert_true(l[1] == -4.0f); /* negative: multiplied */
    assert_true(l[2] == 1.5f);
    assert_true(l[3] == -1.0f);
    assert_true(l[4] == 3.0f);
    for (int i = 0; i < 5; i++)
        assert_int_equal(s.seen[i], 0);
    icl_sampler_free(&s);
}

static void greedy_and_never_nan(void **state)
{
    (void)state;
    icl_sampler s;
    icl_sampler_init(&s, 5);
    icl_sampler_params p;
    icl_sampler_defaults(&p);
    p.temperature = 0;
    float l[5] = {0.5f, 3.0f, NAN, 3.0f, -1.0f};
    assert_int_equal(icl_sample(&s, &p, l, NULL, 0, NULL), 1); /* first max */
    for (int i = 0; i < 5; i++)
        assert_false(isnan(l[i]));
    /* repetition penalty still applies in greedy mode, as in transformers */
    float m[5] = {0.5f, 3.0f, 0.0f, 2.0f, -1.0f};
    int32_t seen[] = {1};
    p.repetition_penalty = 2.0f;
    assert_int_equal(icl_sample(&s, &p, m, seen, 1, NULL), 3);
    icl_sampler_defaults(&p);
    p.top_p = 0;
    float n[5] = {0.5f, 1.0f, 0.0f, 2.0f, -1.0f};
    icl_rng r;
    icl_rng_seed(&r, 1, 0);
    assert_int_equal(icl_sample(&s, &p, n, NULL, 0, &r), 3);
    /* a tiny temperature is greedy, not the last index (logits / 1e-40
     * overflowed to +inf and the softmax was NaN) */
    icl_sampler_defaults(&p);
    p.temperature = 1e-40f;
    float tiny[5] = {0.5f, 3.0f, 0.0f, 2.0f, -1.0f};
    assert_int_equal(icl_sample(&s, &p, tiny, NULL, 0, &r), 1);
    float neg[5] = {-5.0f, -3.0f, -4.0f, -9.0f, -7.0f}; /* all would become -inf */
    assert_int_equal(icl_sample(&s, &p, neg, NULL, 0, &r), 1);
    float inf[5] = {-INFINITY, -INFINITY, NAN, -INFINITY, -INFINITY};
    icl_sampler_defaults(&p);
    assert_int_equal(icl_sample(&s, &p, inf, NULL, 0, &r), -1);
    icl_sampler_free(&s);
}

static void params_checked(void **state)
{
    (void)state;
    char err[200];
    icl_sampler_params p;
    icl_sampler_defaults(&p);
    assert_int_equal(icl_sampler_check(&p, err, sizeof err), 0);
    p.top_p = 1.5f;
    assert_int_equal(icl_sampler_check(&p, err, sizeof err), -1);
    assert_non_null(strstr(err, "top-p"));
    icl_sampler_defaults(&p);
    p.temperature = -1;
    assert_int_equal(icl_sampler_check(&p, err, sizeof err), -1);
    icl_sampler_defaults(&p);
    p.repetition_penalty = 0;
    assert_int_equal(icl_sampler_check(&p, err, sizeof err), -1);
    icl_sampler_defaults(&p);
    p.min_p = NAN;
    assert_int_equal(icl_sampler_check(&p, err, sizeof err), -1);
}

/* Frequencies of 100k draws are within 1% (absolute) of the renormalised
 * distribution left by top-k 3 on P4: {0.25, 0.1875, 0.5} / 0.9375. */
static void draw_frequencies(void **state)
{
    (void)state;
    icl_sampler s;
    icl_sampler_init(&s, 4);
    icl_sampler_params p;
    icl_sampler_defaults(&p);
    p.top_k = 3;
    icl_rng r;
    icl_rng_seed(&r, 1234, 0);
    int cnt[4] = {0};
    const int N = 100000;
    for (int i = 0; i < N; i++) {
        float l[4];
        for (int j = 0; j < 4; j++)
            l[j] = logf(P4[j]);
        int t = icl_sample(&s, &p, l, NULL, 0, &r);
        assert_true(t >= 0 && t < 4);
        cnt[t]++;
    }
    assert_int_equal(cnt[0], 0);
    for (int j = 1; j < 4; j++)
        assert_true(fabs((double)cnt[j] / N - P4[j] / 0.9375) < 0.01);
    /* and with temperature 2 on all four: p_i^(1/2) renormalised */
    p.top_k = 0;
    p.temperature = 2;
    memset(cnt, 0, sizeof cnt);
    double z = 0;
    for (int j = 0; j < 4; j++)
        z += sqrt(P4[j]);
    for (int i = 0; i < N; i++) {
        float l[4];
        for (int j = 0; j < 4; j++)
            l[j] = logf(P4[j]);
        cnt[icl_sample(&s, &p, l, NULL, 0, &r)]++;
    }
    for (int j = 0; j < 4; j++)
        assert_true(fabs((double)cnt[j] / N - sqrt(P4[j]) / z) < 0.01);
    icl_sampler_free(&s);
}

/* Same (seed, stream) -> same tokens, whatever else is drawn beside it. */
static void draws_reproducible_per_stream(void **state)
{
    (void)state;
    icl_sampler s;
    icl_sampler_init(&s, 4);
    icl_sampler_params p;
    icl_sampler_defaults(&p);
    int seq_alone[50], seq_batched[50];
    icl_rng r0;
    icl_rng_seed(&r0, 99, 5);
    for (int t = 0; t < 50; t++) {
        float l[4] = {0.1f, 0.2f, 0.3f, 0.4f};
        seq_alone[t] = icl_sample(&s, &p, l, NULL, 0, &r0);
    }
    icl_rng rb[8];
    for (int b = 0; b < 8; b++)
        icl_rng_seed(&rb[b], 99, (uint64_t)b);
    for (int t = 0; t < 50; t++)
        for (int b = 0; b < 8; b++) {
            float l[4] = {0.1f, 0.2f, 0.3f, 0.4f};
            int tok = icl_sample(&s, &p, l, NULL, 0, &rb[b]);
            if (b == 5)
                seq_batched[t] = tok;
        }
    assert_memory_equal(seq_alone, seq_batched, sizeof seq_alone);
    icl_sampler_free(&s);
}

/* transformers' processors on random rows: the same tokens are removed and
 * the kept logits are bit-identical (float32 division in both). */
static void matches_transformers(void **state)
{
    (void)state;
    json_t *d = load_json("hf_samplers.json");
    size_t ci;
    json_t *c;
    json_array_foreach(json_object_get(d, "cases"), ci, c) {
        json_t *jp = json_object_get(c, "params");
        icl_sampler_params p = {
            .temperature = (float)json_number_value(json_object_get(jp, "temperature")),
            .top_k = (int)json_integer_value(json_object_get(jp, "top_k")),
            .top_p = (float)json_number_value(json_object_get(jp, "top_p")),
            .min_p = (float)json_number_value(json_object_get(jp, "min_p")),
            .repetition_penalty = (float)json_number_value(json_object_get(jp, "repetition_penalty")),
        };
        json_t *jl = json_object_get(c, "logits"), *jo = json_object_get(c, "out"),
               *ji = json_object_get(c, "ids");
        int V = (int)json_array_size(jl);
        float *l = malloc(sizeof(float) * V);
        for (int i = 0; i < V; i++)
            l[i] = (float)json_real_value(json_array_get(jl, i));
        int32_t ids[64];
        size_t n = json_array_size(ji);
        for (size_t i = 0; i < n; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(ji, i));
        icl_sampler s;
        icl_sampler_init(&s, V);
        icl_rng r;
        icl_rng_seed(&r, 1, ci);
        int tok = icl_sample(&s, &p, l, ids, n, &r);
        for (int i = 0; i < V; i++) {
            json_t *o = json_array_get(jo, i);
            if (json_is_null(o)) {
                if (l[i] != -INFINITY)
                    fail_msg("case %zu: token %d kept, transformers removed it", ci, i);
            } else if (l[i] != (float)json_real_value(o)) {
                fail_msg("case %zu: token %d: %.9g, transformers %.9g", ci, i, l[i],
                         json_real_value(o));
            }
        }
        assert_true(tok >= 0 && !json_is_null(json_array_get(jo, tok)));
        icl_sampler_free(&s);
        free(l);
    }
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rng_known_values),
        cmocka_unit_test(rng_streams_differ_and_repeat),
        cmocka_unit_test(rng_uniform_and_below),
        cmocka_unit_test(top_p_issue_cases),
        cmocka_unit_test(top_p_matches_transformers_on_issue_cases),
        cmocka_unit_test(top_p_ties_as_transformers),
        cmocka_unit_test(top_p_top_k_match_brute_force),
        cmocka_unit_test(top_k_cases),
        cmocka_unit_test(min_p_cases),
        cmocka_unit_test(repetition_penalty_signs),
        cmocka_unit_test(greedy_and_never_nan),
        cmocka_unit_test(params_checked),
        cmocka_unit_test(draw_frequencies),
        cmocka_unit_test(draws_reproducible_per_stream),
        cmocka_unit_test(matches_transformers),
    };
    return cmocka_run_group_tests_name("sample", tests, NULL, NULL);
}
