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
