/* libFuzzer target for the chat-template interpreter (lib/jinja.c): the
 * input is a template; it is parsed and, when it parses, rendered twice
 * with a small conversation under tight limits.  Errors must name the
 * template ("fuzz:"), and two renders must agree byte for byte.
 * Build and run: sh tests/fuzz/run.sh jinja [seconds]. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "jinja.h"

#define JFUZZ_CHECK(c)                                                              \
    do {                                                                            \
        if (!(c)) {                                                                 \
            fprintf(stderr, "fuzz_jinja check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
            abort();                                                                \
        }                                                                           \
    } while (0)

static const char JFUZZ_VARS[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    "{\"role\": \"user\", \"content\": \"Caf\\u00e9 \\u65e5\\u672c\\ud83d\\ude42 ok?\"},"
    "{\"role\": \"assistant\", \"content\": \"<think>\\nx\\n</think>\\n\\nYes.\", \"n\": 1.5},"
    "{\"role\": \"user\", \"content\": \"  more  \", \"tool_calls\": null}],"
    "\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": true,"
    "\"tools\": null, \"date_string\": \"26 Jul 2024\", \"n\": 3, \"d\": {\"a\": [1, 2.5, \"x\"]}}";

int icl_fuzz_jinja(const uint8_t *data, size_t size)
{
    char err[600];
    icl_jinja *t = icl_jinja_parse((const char *)data, size, "fuzz", err, sizeof err);
    if (!t) {
        JFUZZ_CHECK(strncmp(err, "fuzz:", 5) == 0);
        return 0;
    }
    json_t *vars = json_loads(JFUZZ_VARS, 0, NULL);
    JFUZZ_CHECK(vars != NULL);
    icl_jinja_limits lim = {.max_output = 1 << 20, .max_memory = 32 << 20, .max_steps = 200000, .max_depth = 30,
                            .now = 1721952000};
    icl_buf a = {0}, b = {0};
    icl_jinja_span *sp = NULL;
    size_t ns = 0;
    int ra = icl_jinja_render(t, vars, &lim, &a, &sp, &ns, err, sizeof err);
    if (ra)
        JFUZZ_CHECK(strncmp(err, "fuzz", 4) == 0 && a.len == 0);
    for (size_t i = 0; i < ns; i++)
        JFUZZ_CHECK(sp[i].start <= sp[i].end && sp[i].end <= a.len);
    free(sp);
    int rb = icl_jinja_render(t, vars, &lim, &b, NULL, NULL, err, sizeof err);
    JFUZZ_CHECK(ra == rb && a.len == b.len && (!a.len || !memcmp(a.data, b.data, a.len)));
    /* the same template as a chat template: segments are a prefix of the
     * rendering, with as many contexts as targets */
    icl_chat *c = icl_chat_from_string((const char *)data, size, "fuzz", "<s>", "</s>", err, sizeof err);
    JFUZZ_CHECK(c != NULL);
    icl_chat_set_limits(c, &lim);
    json_t *P, *R;
    json_t *msgs = json_object_get(vars, "messages");
    if (icl_chat_segments(c, msgs, &P, &R, err, sizeof err) == 0) {
        JFUZZ_CHECK(json_array_size(P) == json_array_size(R) && json_array_size(P) > 0);
        icl_buf full = {0}, cat = {0};
        JFUZZ_CHECK(icl_chat_render(c, msgs, 0, &full, err, sizeof err) == 0);
        for (size_t i = 0; i < json_array_size(P); i++) {
            buf_append(&cat, json_string_value(json_array_get(P, i)), json_string_length(json_array_get(P, i)));
            buf_append(&cat, json_string_value(json_array_get(R, i)), json_string_length(json_array_get(R, i)));
        }
        JFUZZ_CHECK(cat.len <= full.len && (!cat.len || !memcmp(cat.data, full.data, cat.len)));
        buf_free(&full);
        buf_free(&cat);
        json_decref(P);
        json_decref(R);
    }
    icl_chat_free(c);
    buf_free(&a);
    buf_free(&b);
    json_decref(vars);
    icl_jinja_free(t);
    return ra == 0;
}

#ifndef ICL_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icl_fuzz_jinja(data, size);
    return 0;
}
#endif
