/* libFuzzer target for Hugging Face tokenizer.json files (lib/tokenizer.c,
 * lib/pretok.c, lib/bpe.c): any bytes -> icl_tok_load_mem.
 * Build and run: sh tests/fuzz/run.sh tokjson [seconds].
 * make check replays the committed corpus (tests/fuzz/corpus/tokjson, seeds
 * made by tests/data/tok/make_tokjson_seeds.py) through icl_fuzz_tokjson
 * with a gcc build (tests/unit/test_fuzz_replay.c).
 *
 * Besides not crashing, hanging or leaking:
 *  - a refused file has an error message;
 *  - a loaded tokenizer has a vocabulary, and the same JSON written again
 *    with sorted keys and other spacing loads to the same fingerprint
 *    (tokenizer.h: the fingerprint is semantic);
 *  - texts encode (or fail with a message: a normalizer past its growth
 *    cap, a regex past its match limit) to ids inside the vocabulary, with
 *    and without ICL_TOK_PARSE_SPECIAL and as a continuation;
 *  - those ids, and ids taken from the input's bytes, decode to valid
 *    UTF-8 (an id no token has, a decoder's regex past its match limit: an
 *    error with a message), and icl_tok_stream_put / _flush release
 *    exactly what icl_tok_decode gives for the same ids, each release
 *    UTF-8 (tokenizer.h's promise); icl_tok_stream_peek gives what the
 *    flush then releases. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "targets.h" /* FUZZ_CHECK */
#include "tokenizer.h"
#include "utf8.h"

/* ids decode to valid UTF-8 (or fail with a message: a decoder's regex
 * past its match limit), and streaming them gives the same bytes: each
 * release UTF-8, a peek before the flush what the flush releases. */
static void fuzz_tokjson_decode(const icl_tokenizer *t, const int32_t *ids, size_t n)
{
    char err[512];
    for (int skip = 0; skip <= 1; skip++)
        for (int flags = 0; flags <= ICL_TOK_CONTINUATION; flags += ICL_TOK_CONTINUATION) {
            icl_buf d = {0}, s = {0}, pk = {0};
            err[0] = 0;
            if (icl_tok_decode(t, ids, n, skip, flags, &d, err, sizeof err)) {
                FUZZ_CHECK(err[0] != 0);
                icl_buf_free(&d);
                continue;
            }
            FUZZ_CHECK(icl_utf8_valid(d.data ? d.data : "", d.len) == d.len);
            icl_tok_stream st;
            icl_tok_stream_init(&st, flags, skip);
            int failed = 0;
            for (size_t i = 0; i < n && !failed; i++) {
                size_t at = s.len;
                err[0] = 0;
                if (icl_tok_stream_put(t, &st, ids[i], &s, err, sizeof err)) {
                    FUZZ_CHECK(err[0] != 0);
                    failed = 1;
                } else {
                    FUZZ_CHECK(icl_utf8_valid(s.data ? s.data + at : "", s.len - at) == s.len - at);
                }
            }
            if (!failed) {
                size_t at = s.len;
                FUZZ_CHECK(icl_tok_stream_peek(t, &st, &pk, err, sizeof err) == 0);
                FUZZ_CHECK(icl_tok_stream_flush(t, &st, &s, err, sizeof err) == 0);
                FUZZ_CHECK(s.len - at == pk.len && (!pk.len || !memcmp(s.data + at, pk.data, pk.len)));
            }
            icl_tok_stream_free(&st);
            if (!failed && (d.len != s.len || (d.len && memcmp(d.data, s.data, d.len)))) {
                fprintf(stderr, "decode %zu bytes '%.*s', stream %zu bytes '%.*s' (skip %d, flags %d), ids", d.len,
                        (int)d.len, d.data ? d.data : "", s.len, (int)s.len, s.data ? s.data : "", skip, flags);
                for (size_t i = 0; i < n; i++)
                    fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, "\n");
                FUZZ_CHECK(!"stream == decode");
            }
            icl_buf_free(&d);
            icl_buf_free(&s);
            icl_buf_free(&pk);
        }
}

static void fuzz_tokjson_text(const icl_tokenizer *t, const char *s, size_t n)
{
    char err[512];
    static const int fl[] = {0, ICL_TOK_PARSE_SPECIAL, ICL_TOK_CONTINUATION,
                             ICL_TOK_PARSE_SPECIAL | ICL_TOK_CONTINUATION};
    for (int f = 0; f < 4; f++) {
        icl_ids a = {0};
        err[0] = 0;
        if (icl_tok_encode(t, NULL, s, n, fl[f], &a, err, sizeof err)) {
            FUZZ_CHECK(err[0] != 0);
            icl_ids_free(&a);
            continue;
        }
        for (size_t i = 0; i < a.n; i++)
            FUZZ_CHECK(a.v[i] >= 0 && a.v[i] < icl_tok_vocab_size(t));
        fuzz_tokjson_decode(t, a.v, a.n);
        icl_ids_free(&a);
    }
}

/* Returns 1 when the input made a tokenizer. */
int icl_fuzz_tokjson(const uint8_t *data, size_t size)
{
    char err[512];
    err[0] = 0;
    icl_tokenizer *t = icl_tok_load_mem((const char *)data, size, NULL, err, sizeof err);
    if (!t) {
        FUZZ_CHECK(err[0] != 0);
        return 0;
    }
    int V = icl_tok_vocab_size(t);
    FUZZ_CHECK(V > 0);

    /* the same JSON, keys sorted and indented: the same tokenizer */
    json_t *j = json_loadb((const char *)data, size, 0, NULL);
    FUZZ_CHECK(j != NULL);
    char *again = json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(1) | JSON_ENSURE_ASCII);
    json_decref(j);
    FUZZ_CHECK(again != NULL);
    icl_tokenizer *t2 = icl_tok_load_mem(again, strlen(again), NULL, err, sizeof err);
    FUZZ_CHECK(t2 != NULL);
    FUZZ_CHECK(icl_tok_fingerprint(t2) == icl_tok_fingerprint(t));
    FUZZ_CHECK(icl_tok_vocab_size(t2) == V);
    icl_tok_free(t2);
    free(again);

    static const char *const texts[] = {"hello world", " \n\n\tHello 'll 2024, 你好! <|endoftext|>",
                                        "<tool>hello<s> world</s>  ", "ÀÉ ﬁ ① \xe2\x80\x8b x\r\n", ""};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        fuzz_tokjson_text(t, texts[i], strlen(texts[i]));

    /* the ids spelled by the input's last bytes (two per id); an id
     * between the vocabulary's ids that no token has is refused */
    size_t k = size < 64 ? size : 64, n = 0;
    int32_t ids[32];
    for (size_t i = size - k; i + 1 < size; i += 2) {
        int32_t id = (int32_t)((data[i] | (uint32_t)data[i + 1] << 8) % (uint32_t)V);
        size_t len;
        if (icl_tok_piece(t, id, &len)) {
            ids[n++] = id;
        } else {
            icl_buf d = {0};
            err[0] = 0;
            FUZZ_CHECK(icl_tok_decode(t, &id, 1, 0, 0, &d, err, sizeof err) == -1 && err[0]);
            icl_buf_free(&d);
        }
    }
    fuzz_tokjson_decode(t, ids, n);

    icl_tok_free(t);
    return 1;
}

#ifndef ICL_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icl_fuzz_tokjson(data, size);
    return 0;
}
#endif
