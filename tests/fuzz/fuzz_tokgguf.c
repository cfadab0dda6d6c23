/* libFuzzer target for tokenizers from GGUF metadata (lib/tokgguf.c over
 * lib/gguf.c): a GGUF file -> icl_tok_gguf_read -> icl_tok_from_gguf.
 * Build and run: sh tests/fuzz/run.sh tokgguf [seconds].
 * make check replays the committed corpus (tests/fuzz/corpus/tokgguf, seeds
 * made by tests/data/tok/gguf/make_fuzz_seeds.py) through icl_fuzz_tokgguf
 * with a gcc build (tests/unit/test_fuzz_replay.c).
 *
 * Besides not crashing: a refused file has an error message; a loaded
 * tokenizer encodes texts to ids inside its vocabulary, decodes them, and its
 * tokenizer.json (icl_tok_gguf_to_hf_json) loads and gives the same ids (or,
 * where the GGUF tokenizer refuses a character it cannot spell, any). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "record.h"
#include "tokenizer.h"
#include "tokgguf.h"

#ifndef FUZZ_CHECK
#define FUZZ_CHECK(cond)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);       \
            abort();                                                                             \
        }                                                                                        \
    } while (0)
#endif

static void fuzz_tok_text(const icl_tokenizer *t, const icl_tokenizer *th, const char *s, size_t n)
{
    char err[512];
    for (int flags = 0; flags <= ICL_TOK_PARSE_SPECIAL; flags += ICL_TOK_PARSE_SPECIAL) {
        icl_ids a = {0}, b = {0};
        int ra = icl_tok_encode(t, NULL, s, n, flags, &a, err, sizeof err);
        /* a character the vocabulary cannot spell: the GGUF tokenizer refuses
         * it (as llama.cpp), its tokenizer.json drops it (as tokenizers) */
        FUZZ_CHECK(ra == 0 || (a.n == 0 && strstr(err, "the tokenizer has no token for it")));
        FUZZ_CHECK(icl_tok_encode(th, NULL, s, n, flags, &b, err, sizeof err) == 0);
        if (ra) { /* out left as it was: empty, though its buffer may have grown */
            ids_free(&a);
            ids_free(&b);
            continue;
        }
        FUZZ_CHECK(a.n == b.n && (a.n == 0 || !memcmp(a.v, b.v, a.n * sizeof *a.v)));
        for (size_t i = 0; i < a.n; i++)
            FUZZ_CHECK(a.v[i] >= 0 && a.v[i] < icl_tok_vocab_size(t));
        icl_buf d = {0};
        FUZZ_CHECK(icl_tok_decode(t, a.v, a.n, 0, 0, &d, err, sizeof err) == 0);
        FUZZ_CHECK(icl_utf8_valid(d.data ? d.data : "", d.len) == d.len);
        buf_free(&d);
        ids_free(&a);
        ids_free(&b);
    }
}

/* Returns 1 when the input made a tokenizer. */
int icl_fuzz_tokgguf(const uint8_t *data, size_t size)
{
    char err[512];
    icl_gguf *g = icl_gguf_parse(data, size, "fuzz.gguf", err, sizeof err);
    if (!g)
        return 0;
    icl_tok_gguf m;
    int made = 0;
    if (icl_tok_gguf_read(g, &m, err, sizeof err) == 0) {
        icl_tokenizer *t = icl_tok_from_gguf(&m, err, sizeof err);
        if (!t) {
            FUZZ_CHECK(err[0] != 0);
        } else {
            char *tj = NULL;
            FUZZ_CHECK(icl_tok_gguf_to_hf_json(&m, &tj, NULL, err, sizeof err) == 0);
            icl_tokenizer *th = icl_tok_load_mem(tj, strlen(tj), NULL, err, sizeof err);
            FUZZ_CHECK(th != NULL);
            FUZZ_CHECK(icl_tok_fingerprint(th) == icl_tok_fingerprint(t));
            static const char *const texts[] = {"hello world", " \n\n\tHello 'll 2024, 你好! <|endoftext|>",
                                                "<tool>hello<s> world</s>", ""};
            for (int i = 0; i < 4; i++)
                fuzz_tok_text(t, th, texts[i], strlen(texts[i]));
            /* the tail of the input as text, when it is UTF-8 */
            size_t k = size < 64 ? size : 64;
            const char *tail = (const char *)data + size - k;
            if (icl_utf8_valid(tail, k) == k)
                fuzz_tok_text(t, th, tail, k);
            free(tj);
            icl_tok_free(th);
            icl_tok_free(t);
            made = 1;
        }
        icl_tok_gguf_free(&m);
    } else {
        FUZZ_CHECK(err[0] != 0);
    }
    icl_gguf_close(g);
    return made;
}

#ifndef ICL_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icl_fuzz_tokgguf(data, size);
    return 0;
}
#endif
