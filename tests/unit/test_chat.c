/* Unit tests of lib/chat.c: assistant spans found from unannotated
 * templates equal the spans transformers finds with {% generation %}
 * variants (tests/data/chat/make_masks.py -> masks.jsonl), templates that
 * rewrite earlier turns are refused, and loading reads tokenizer_config.json
 * files as transformers writes them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    icl_buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, got);
    fclose(f);
    *n = b.len;
    return b.data ? b.data : xstrdup("");
}

/* gen: use the {% generation %} variants (templates-gen/): every case,
 * Mistral's included, must then give transformers' spans exactly. */
static void masks_check(int gen)
{
    size_t n;
    char *all = slurp(TEST_DATA "/chat/masks.jsonl", &n);
    assert_non_null(all);
    int cases = 0, bad = 0, refused = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *c = json_loads(line, 0, NULL);
        assert_non_null(c);
        const char *name = json_string_value(json_object_get(c, "template"));
        const char *conv = json_string_value(json_object_get(c, "conv"));
        char path[512], err[600];
        snprintf(path, sizeof path, TEST_DATA "/chat/%s/%s.jinja", gen ? "templates-gen" : "templates", name);
        size_t tn;
        char *src = slurp(path, &tn);
        assert_non_null(src);
        json_t *vars = json_object_get(c, "vars");
        icl_chat *ch = icl_chat_from_string(src, tn, name, json_string_value(json_object_get(vars, "bos_token")),
                                            json_string_value(json_object_get(vars, "eos_token")), err, sizeof err);
        assert_non_null(ch);
        if (json_is_string(json_object_get(vars, "date_string"))) {
            char spec[64];
            snprintf(spec, sizeof spec, "date_string=%s", json_string_value(json_object_get(vars, "date_string")));
            assert_int_equal(icl_chat_set_var(ch, spec, err, sizeof err), 0);
        }
        json_t *P, *R;
        int rc = icl_chat_segments(ch, json_object_get(c, "messages"), &P, &R, err, sizeof err);
        cases++;
        int rewrites = !gen && !strcmp(conv, "sys-multi") && !strncmp(name, "mistral", 7);
        if (json_object_get(c, "error")) {
            /* the template's own raise_exception reaches the caller */
            if (rc != -1 || !strstr(err, json_string_value(json_object_get(c, "error")))) {
                fprintf(stderr, "%s/%s: want error %s, got rc %d %s\n", name, conv,
                        json_string_value(json_object_get(c, "error")), rc, err);
                bad++;
            }
        } else if (rewrites) {
            /* Mistral moves the system prompt into the last user turn: refused */
            if (rc != -1 || !strstr(err, "rewrites earlier turns")) {
                fprintf(stderr, "%s/%s: want a refusal, got rc %d %s\n", name, conv, rc, err);
                bad++;
            }
            refused++;
        } else if (rc) {
            fprintf(stderr, "%s/%s: %s\n", name, conv, err);
            bad++;
        } else {
            const char *text = json_string_value(json_object_get(c, "text"));
            json_t *spans = json_object_get(c, "spans");
            size_t off = 0;
            int ok = json_array_size(P) == json_array_size(spans);
            for (size_t k = 0; ok && k < json_array_size(P); k++) {
                json_t *p = json_array_get(P, k), *r = json_array_get(R, k);
                ok &= !memcmp(text + off, json_string_value(p), json_string_length(p));
                off += json_string_length(p);
                ok &= (size_t)json_integer_value(json_array_get(json_array_get(spans, k), 0)) == off;
                ok &= !memcmp(text + off, json_string_value(r), json_string_length(r));
                off += json_string_length(r);
                ok &= (size_t)json_integer_value(json_array_get(json_array_get(spans, k), 1)) == off;
            }
            if (!ok) {
                fprintf(stderr, "%s/%s: spans differ from transformers'\n", name, conv);
                for (size_t k = 0; k < json_array_size(P); k++)
                    fprintf(stderr, "  target %zu: [%s]\n", k, json_string_value(json_array_get(R, k)));
                bad++;
            }
            json_decref(P);
            json_decref(R);
        }
        icl_chat_free(ch);
        free(src);
        json_decref(c);
    }
    free(all);
    fprintf(stderr, "# %d mask cases (%s), %d refused as expected, %d wrong\n", cases,
            gen ? "generation blocks" : "found without them", refused, bad);
    assert_true(cases >= 60);
    assert_int_equal(refused, gen ? 0 : 2);
    assert_int_equal(bad, 0);
}

static void masks_match_transformers(void **state)
{
    (void)state;
    masks_check(0);
}

static void masks_from_generation_blocks(void **state)
{
    (void)state;
    masks_check(1);
}

/* tokenizer_config.json as transformers writes it: model_max_length of
 * 1e30 (too big for a 64-bit integer), tokens as strings or AddedToken
 * objects, the template as a string or a list of named templates. */
/* An answer holding the template's end-of-turn marker would end its turn
 * there (the rest lost, or trained as prompt): refused, naming the marker;
 * the same answer without it splits as usual. */
static void marker_in_answer(void **state)
{
    (void)state;
    static const char t[] = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    char err[600];
    icl_chat *c = icl_chat_from_string(t, sizeof t - 1, "chatml", NULL, "<|im_end|>", err, sizeof err);
    assert_non_null(c);
    json_t *P, *R;
    json_t *m = json_loads("[{\"role\": \"user\", \"content\": \"How do turns end?\"}, {\"role\": \"assistant\", "
                           "\"content\": \"With <|im_end|>. The rest.\"}]", 0, NULL);
    assert_int_equal(icl_chat_segments(c, m, &P, &R, err, sizeof err), -1);
    assert_non_null(strstr(err, "assistant reply 1 (message 2 of the conversation) has the end-of-turn marker <|im_end|> in its text"));
    json_object_set_new(json_array_get(m, 1), "content", json_string("With a marker. The rest."));
    assert_int_equal(icl_chat_segments(c, m, &P, &R, err, sizeof err), 0);
    assert_string_equal(json_string_value(json_array_get(R, 0)), "With a marker. The rest.<|im_end|>");
    json_decref(P);
    json_decref(R);
    json_decref(m);
    icl_chat_free(c);
}

static void load_config(void **state)
{
    (void)state;
    char dir[] = "/tmp/icl-chat-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], err[600];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"model_max_length\": 1000000000000000019884624838656, \"bos_token\": {\"content\": \"<s>\", "
          "\"lstrip\": false}, \"eos_token\": \"</s>\", \"chat_template\": [{\"name\": \"tool_use\", "
          "\"template\": \"T\"}, {\"name\": \"default\", \"template\": \"{{ bos_token }}{% for m in messages %}"
          "[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}{{ x }}\"}]}", f);
    fclose(f);
    icl_chat *c = icl_chat_load(dir, err, sizeof err);
    if (!c)
        fprintf(stderr, "%s\n", err);
    assert_non_null(c);
    assert_string_equal(icl_chat_bos(c), "<s>");
    assert_string_equal(icl_chat_eos(c), "</s>");
    assert_int_equal(icl_chat_set_var(c, "x=[1, \"a\"]", err, sizeof err), 0);
    json_t *m = json_loads("[{\"from\": \"human\", \"value\": \"hi\"}, {\"from\": \"gpt\", \"value\": \"yo\"}]", 0, NULL);
    json_t *mm = icl_chat_messages(m, err, sizeof err);
    assert_non_null(mm);
    icl_buf out = {0};
    assert_int_equal(icl_chat_render(c, mm, 0, &out, err, sizeof err), 0);
    assert_string_equal(out.data, "<s>[user]hi</s>[assistant]yo</s>[1, 'a']");
    buf_free(&out);
    assert_int_equal(icl_chat_set_var(c, "x=not json", err, sizeof err), 0);
    assert_int_equal(icl_chat_render(c, mm, 0, &out, err, sizeof err), 0);
    assert_string_equal(out.data, "<s>[user]hi</s>[assistant]yo</s>not json");
    buf_free(&out);
    assert_int_equal(icl_chat_set_var(c, "novalue", err, sizeof err), -1);
    icl_chat_free(c);
    /* a .jinja file beside it takes the special tokens from it */
    char jp[256];
    snprintf(jp, sizeof jp, "%s/t.jinja", dir);
    f = fopen(jp, "w");
    fputs("{{ bos_token }}|{{ messages[0].content }}\n", f);
    fclose(f);
    c = icl_chat_load(jp, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(icl_chat_render(c, mm, 1, &out, err, sizeof err), 0);
    assert_string_equal(out.data, "<s>|hi");
    buf_free(&out);
    icl_chat_free(c);
    json_decref(m);
    json_decref(mm);
    /* errors */
    assert_null(icl_chat_load("/nonexistent/x.jinja", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/x.jinja"));
    snprintf(jp, sizeof jp, "%s/m.gguf", dir);
    f = fopen(jp, "w");
    fclose(f);
    assert_null(icl_chat_load(jp, err, sizeof err));
    assert_non_null(strstr(err, "GGUF"));
    json_t *badm = json_loads("[{\"from\": \"alien\", \"value\": \"x\"}]", 0, NULL);
    assert_null(icl_chat_messages(badm, err, sizeof err));
    assert_non_null(strstr(err, "alien"));
    json_decref(badm);
    unlink(jp);
    snprintf(jp, sizeof jp, "%s/t.jinja", dir);
    unlink(jp);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(masks_match_transformers),
        cmocka_unit_test(masks_from_generation_blocks),
        cmocka_unit_test(marker_in_answer),
        cmocka_unit_test(load_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
