/* Unit tests of lib/template.c, lib/rng.c and lib/jsonout.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "record.h"
#include "rng.h"
#include "template.h"

#define S(x) ((icl_str){x, sizeof x - 1})

static void render(const char *name, icl_tfields f, int turn, const char *wp, const char *wr)
{
    char err[200];
    icl_template *t = icl_template_load(name, err, sizeof err);
    assert_non_null(t);
    icl_buf p = {0}, r = {0};
    icl_template_render(t, &f, turn, &p, &r);
    assert_string_equal(p.data, wp);
    assert_string_equal(r.data, wr);
    icl_buf_free(&p);
    icl_buf_free(&r);
    icl_template_free(t);
}

static void alpaca_exact(void **state)
{
    (void)state;
    /* The texts of tatsu-lab/stanford_alpaca train.py PROMPT_DICT. */
    assert_string_equal(icl_alpaca_prompt_input,
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:");
    assert_string_equal(icl_alpaca_prompt_no_input,
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:");
    icl_tfields f = {{0}, S("Add."), S("1 2"), S("3")};
    render("alpaca", f, 0,
           "Below is an instruction that describes a task, paired with an input that provides "
           "further context. Write a response that appropriately completes the request.\n\n"
           "### Instruction:\nAdd.\n\n### Input:\n1 2\n\n### Response:", "3");
    f.input = S("");
    render("alpaca", f, 0,
           "Below is an instruction that describes a task. Write a response that appropriately "
           "completes the request.\n\n### Instruction:\nAdd.\n\n### Response:", "3");
    /* Placeholder-looking text in the data is not substituted again. */
    icl_tfields g = {{0}, S("{input}"), S("{output}"), S("x")};
    render("alpaca", g, 0,
           "Below is an instruction that describes a task, paired with an input that provides "
           "further context. Write a response that appropriately completes the request.\n\n"
           "### Instruction:\n{input}\n\n### Input:\n{output}\n\n### Response:", "x");
}

static void others(void **state)
{
    (void)state;
    icl_tfields f = {S("Sys"), S("Q"), S(""), S("A")};
    render("chatml", f, 0,
           "<|im_start|>system\nSys<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n",
           "A");
    render("chatml", f, 1, "\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", "A");
    render("llama2", f, 0, "[INST] <<SYS>>\nSys\n<</SYS>>\n\nQ [/INST]", " A");
    render("llama2", f, 1, "[INST] Q [/INST]", " A");
    render("plain", f, 0, "Sys\n\nQ\n", "A");
    f.input = S("I");
    render("plain", f, 1, "\nQ\n\nI\n", "A");
}

static void file_templates(void **state)
{
    (void)state;
    char err[200];
    const char txt[] = "[{system}] {instruction}|{input}\n\n%%\n{output} {nope}\n";
    icl_template *t = icl_template_parse(txt, sizeof txt - 1, "f", err, sizeof err);
    assert_non_null(t);
    icl_tfields f = {S("S"), S("I"), S("N"), S("O")};
    icl_buf p = {0}, r = {0};
    icl_template_render(t, &f, 0, &p, &r);
    assert_string_equal(p.data, "[S] I|N\n");
    assert_string_equal(r.data, "O {nope}");
    icl_buf_clear(&p);
    icl_buf_clear(&r);
    icl_template_render(t, &f, 1, &p, &r); /* system only on turn 0 */
    assert_string_equal(p.data, "[] I|N\n");
    icl_buf_free(&p);
    icl_buf_free(&r);
    icl_template_free(t);

    const char *bad[] = {"no marker {output}\n", "%%\n%%\n{output}", "{output}\n%%\n{output}",
                         "x\n%%\nno output", "x\n%%\n{output}{output}"};
    const char *msg[] = {"f: no marker line '%%' separating prompt and response",
                         "f: more than one marker line '%%' (first on line 1)",
                         "f: {output} must not appear in the prompt part (before '%%')",
                         "f: the response part (after '%%') must contain {output} exactly once",
                         "f: the response part (after '%%') must contain {output} exactly once"};
    for (int i = 0; i < 5; i++) {
        assert_null(icl_template_parse(bad[i], strlen(bad[i]), "f", err, sizeof err));
        assert_string_equal(err, msg[i]);
    }
    assert_null(icl_template_load("nosuch", err, sizeof err));
    assert_non_null(strstr(err, "unknown template 'nosuch'"));
}

static void rng_reference(void **state)
{
    (void)state;
    /* splitmix64 from 0: the published first output. */
    uint64_t x = 0;
    assert_true(icl_splitmix64(&x) == 0xE220A8397B1DCDAFull);
    /* xoshiro256** seeded with splitmix64(0): values from an independent
     * Python transcription of the reference C code. */
    icl_rng r;
    x = 0;
    for (int i = 0; i < 4; i++)
        r.s[i] = icl_splitmix64(&x);
    assert_true(icl_rng_next_u64(&r) == 0x99EC5F36CB75F2B4ull);
    assert_true(icl_rng_next_u64(&r) == 0xBF6E1F784956452Aull);
    assert_true(icl_rng_next_u64(&r) == 0x1A5F849D4933E6E0ull);
    /* below(): in range and roughly uniform; shuffle: a permutation. */
    long count[6] = {0};
    for (int i = 0; i < 60000; i++)
        count[icl_rng_below(&r, 6)]++;
    for (int i = 0; i < 6; i++)
        assert_true(count[i] > 9500 && count[i] < 10500);
    size_t a[100];
    for (size_t i = 0; i < 100; i++)
        a[i] = i;
    icl_rng_seed(&r, 42, 0);
    icl_rng_shuffle(&r, a, 100);
    int seen[100] = {0}, moved = 0;
    for (size_t i = 0; i < 100; i++) {
        seen[a[i]]++;
        moved += a[i] != i;
    }
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > 90);
    double m = 0, v = 0;
    for (int i = 0; i < 100000; i++) {
        double z = icl_rng_normal(&r);
        m += z;
        v += z * z;
    }
    m /= 100000;
    v = v / 100000 - m * m;
    assert_true(m > -0.02 && m < 0.02);
    assert_true(v > 0.97 && v < 1.03);
}

static void json_escaping_matches_jansson(void **state)
{
    (void)state;
    /* Every byte value that may appear in valid UTF-8 text, plus a long run. */
    char s[400];
    size_t n = 0;
    for (int c = 1; c < 128; c++)
        s[n++] = (char)c;
    memcpy(s + n, "\xC3\xA9\xF0\x9F\xA4\x97/\\\"", 9);
    n += 9;
    for (int k = 0; k < 40; k++)
        s[n++] = "abc\n"[k % 4];
    for (int k = 0; k < 100; k++) /* long clean runs with escapes at odd places */
        s[n++] = k == 70 ? '"' : k == 99 ? '\x01' : k == 33 ? '\\' : (char)('a' + k % 26);
    icl_buf a = {0}, b = {0};
    icl_json_put_str(&a, s, n);
    json_t *j = json_stringn(s, n);
    icl_record_dump(&b, j);
    json_decref(j);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    icl_buf_free(&a);
    icl_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alpaca_exact),   cmocka_unit_test(others),
        cmocka_unit_test(file_templates), cmocka_unit_test(rng_reference),
        cmocka_unit_test(json_escaping_matches_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
