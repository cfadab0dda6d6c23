/* Unit tests of lib/sniff.c: what the files a new user gives in the wrong
 * place look like, on the real files of tests/data and on small texts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sniff.h"

#define D TEST_DATA "/"

static void real_files(void **state)
{
    (void)state;
    static const struct { const char *path; icl_file_kind kind; } cases[] = {
        {D "model/llama-tiny/model/config.json", ICL_KIND_MODEL_CONFIG},
        {D "model/llama-tiny/model/model.safetensors", ICL_KIND_SAFETENSORS},
        {D "model/llama-tiny/model", ICL_KIND_FOLDER},
        {D "tok/bytelevel-512.json", ICL_KIND_TOKENIZER_JSON},      /* pretty-printed, "model" far down */
        {D "tok/qwen3_tokenizer_config.json", ICL_KIND_TOKENIZER_CONFIG},
        {D "smollm2/lora/init/adapter_config.json", ICL_KIND_ADAPTER_CONFIG},
        {D "tok/gguf/ggml-vocab-deepseek-coder.gguf", ICL_KIND_GGUF},
        {D "gen/llama-tiny.tok", ICL_KIND_TOKEN_LINES},             /* ids without a header */
        {D "fmt/gsm8k_test_200.jsonl", ICL_KIND_RECORDS},
        {D "fmt/raw.tpl", ICL_KIND_TEXT},
        {D "tok/gpt2.json.gz", ICL_KIND_UNKNOWN},                   /* binary */
        {D "no/such/file", ICL_KIND_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        icl_file_kind k = icl_sniff_file(cases[i].path);
        if (k != cases[i].kind)
            fail_msg("%s: kind %d (%s), want %d (%s)", cases[i].path, k, icl_file_kind_name(k), cases[i].kind,
                     icl_file_kind_name(cases[i].kind));
    }
}

static void texts(void **state)
{
    (void)state;
    static const struct { const char *text; icl_file_kind kind; } cases[] = {
        {"", ICL_KIND_EMPTY},
        {" \n\t\n", ICL_KIND_EMPTY},
        {"#icl-tokens 1 fingerprint=xxh3:0 vocab_size=9\n1 2\t3\n", ICL_KIND_TOKEN_LINES},
        {"\t17077 5145 340 50256\n", ICL_KIND_TOKEN_LINES},
        {"instruction,output\nhi,there\n", ICL_KIND_TEXT},
        {"1,2,3\n", ICL_KIND_TEXT},
        {"\xEF\xBB\xBFinstruction\toutput\n", ICL_KIND_TEXT},
        {"{\"prompt\":\"a\",\"response\":\"b\"}\n{\"prompt\":\"c\",\"response\":\"d\"}\n", ICL_KIND_RECORDS},
        {"[{\"instruction\":\"a\",\"output\":\"b\"}]", ICL_KIND_JSON},
        {"{\n  \"vocab\": {}\n}\n", ICL_KIND_JSON},
        /* one-line files are told by their keys; a record is not a config */
        {"{\"model_type\":\"llama\",\"hidden_size\":8}", ICL_KIND_MODEL_CONFIG},
        {"{\"version\":\"1.0\",\"added_tokens\":[],\"model\":{\"type\":\"BPE\"}}", ICL_KIND_TOKENIZER_JSON},
        {"{\"peft_type\":\"LORA\",\"r\":8}", ICL_KIND_ADAPTER_CONFIG},
        /* "model_max_length" and "added_tokens_decoder" are not "model" and "added_tokens" */
        {"{\n\"added_tokens_decoder\": {},\n\"model_max_length\": 2048\n}", ICL_KIND_TOKENIZER_CONFIG},
        {"GGUF\x03\0\0\0", ICL_KIND_GGUF},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].text);
        if (cases[i].kind == ICL_KIND_GGUF)
            n = 8;
        icl_file_kind k = icl_sniff_mem(cases[i].text, n);
        if (k != cases[i].kind)
            fail_msg("'%s': kind %d (%s), want %d (%s)", cases[i].text, k, icl_file_kind_name(k), cases[i].kind,
                     icl_file_kind_name(cases[i].kind));
    }
    /* safetensors: an 8-byte little-endian header length, then the header */
    char st[32] = {10, 0, 0, 0, 0, 0, 0, 0, '{', '"', '_', '"', ':', '{', '}', '}', ' ', ' '};
    assert_int_equal(icl_sniff_mem(st, 18), ICL_KIND_SAFETENSORS);
    const char bin[] = {'x', 0, 1, 2};
    assert_int_equal(icl_sniff_mem(bin, 4), ICL_KIND_UNKNOWN);
}

static void lines(void **state)
{
    (void)state;
    assert_int_equal(icl_sniff_line("#icl-tokens 1", 13), ICL_KIND_TOKEN_LINES);
    assert_int_equal(icl_sniff_line("1 2\t3 4\r", 8), ICL_KIND_TOKEN_LINES);
    assert_int_equal(icl_sniff_line("{\"prompt\":", 10), ICL_KIND_RECORDS);
    assert_int_equal(icl_sniff_line("[", 1), ICL_KIND_JSON);
    assert_int_equal(icl_sniff_line("{instruction}", 13), ICL_KIND_TEXT);
    assert_int_equal(icl_sniff_line("{", 1), ICL_KIND_RECORDS);
    assert_int_equal(icl_sniff_line("a,b", 3), ICL_KIND_TEXT);
    assert_int_equal(icl_sniff_line("  ", 2), ICL_KIND_EMPTY);
    assert_int_equal(icl_sniff_line(NULL, 0), ICL_KIND_EMPTY);
    assert_string_equal(icl_file_kind_name(ICL_KIND_TOKEN_LINES), "token lines (icl-tok encode's output)");
    assert_string_equal(icl_file_kind_name(ICL_KIND_TEXT), "CSV, TSV or plain text");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(real_files),
        cmocka_unit_test(texts),
        cmocka_unit_test(lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
