/* lib/gguf.c: the GGUF container.  Values from a file written by the
 * reference writer (tests/data/gguf/kinds.gguf, made by
 * tests/data/gguf/make_fuzz_seeds.py with llama.cpp's gguf-py), the writer
 * round trip, hostile images built byte by byte here (each must give a clear
 * error naming the file, never a crash or an over-read: the sanitizer build
 * checks that), and the real SmolLM2 file when make deps has fetched it
 * ($ICL_SMOLLM2_GGUF). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "util.h"

/* ---------------------------------------------------------------- image builder */

static void u32(icl_buf *b, uint32_t v) { for (int i = 0; i < 4; i++) buf_putc(b, (int)((v >> (8 * i)) & 255)); }
static void u64(icl_buf *b, uint64_t v) { for (int i = 0; i < 8; i++) buf_putc(b, (int)((v >> (8 * i)) & 255)); }
static void str(icl_buf *b, const char *s) { u64(b, strlen(s)); buf_puts(b, s); }

/* The knobs a hostile image turns; the defaults make a valid file with keys
 * general.architecture (string), general.alignment (u32), a.list (array of
 * 2 strings) and tensors "x" (F32 [3, 2]) and "y" (Q8_0 [32]). */
typedef struct {
    uint32_t version;
    uint64_t n_tensors, n_kv;
    uint64_t name_len;      /* of general.architecture's value; 0 = real */
    uint32_t align_type;    /* value type of general.alignment */
    uint32_t align;
    uint32_t arr_elem;
    uint64_t arr_n;
    uint32_t x_dims, x_type;
    uint64_t x_ne0, x_ne1, x_off, y_off;
    const char *y_name;
    uint32_t y_type;
    int truncate_data;      /* bytes cut from the end */
} spec;

static spec good(void)
{
    spec s = {.version = 3, .n_tensors = 2, .n_kv = 3, .align_type = 4, .align = 32, .arr_elem = 8, .arr_n = 2,
              .x_dims = 2, .x_type = 0, .x_ne0 = 3, .x_ne1 = 2, .x_off = 0, .y_off = 32, .y_name = "y", .y_type = 8};
    return s;
}

static icl_buf build(const spec *s)
{
    icl_buf b = {0};
    buf_append(&b, "GGUF", 4);
    u32(&b, s->version);
    u64(&b, s->n_tensors);
    u64(&b, s->n_kv);
    str(&b, "general.architecture");
    u32(&b, 8);
    if (s->name_len) {
        u64(&b, s->name_len);
        buf_puts(&b, "llama");
    } else
        str(&b, "llama");
    str(&b, "general.alignment");
    u32(&b, s->align_type);
    u32(&b, s->align);
    str(&b, "a.list");
    u32(&b, 9);
    u32(&b, s->arr_elem);
    u64(&b, s->arr_n);
    str(&b, "ab");
    str(&b, "c");
    /* tensor infos */
    str(&b, "x");
    u32(&b, s->x_dims);
    u64(&b, s->x_ne0);
    if (s->x_dims > 1)
        u64(&b, s->x_ne1);
    u32(&b, s->x_type);
    u64(&b, s->x_off);
    str(&b, s->y_name);
    u32(&b, 1);
    u64(&b, 32);
    u32(&b, s->y_type);
    u64(&b, s->y_off);
    while (b.len % 32)
        buf_putc(&b, 0);
    size_t data = b.len;
    for (int i = 0; i < 6; i++) { /* x: 6 floats 0..5 */
        float f = (float)i;
        buf_append(&b, &f, 4);
    }
    while ((b.len - data) % 32)
        buf_putc(&b, 0);
    /* y: one Q8_0 block */
    buf_putc(&b, 0x00);
    buf_putc(&b, 0x3c); /* d = 1.0 in fp16 */
    for (int i = 0; i < 32; i++)
        buf_putc(&b, i - 16);
    b.len -= (size_t)s->truncate_data;
    return b;
}

/* Parse an exact-size copy (so ASan sees any over-read). */
static icl_gguf *parse(const icl_buf *b, char *err, size_t errsz)
{
    void *exact = xmalloc(b->len);
    memcpy(exact, b->data, b->len);
    icl_gguf *g = icl_gguf_parse(exact, b->len, "h.gguf", err, errsz);
    if (g)
        icl_gguf_close(g);
    free(exact);
    return g;
}

static void expect_error(const spec *s, const char *want)
{
    icl_buf b = build(s);
    char err[512] = "";
    if (parse(&b, err, sizeof err))
        fail_msg("accepted a hostile image (wanted \"%s\")", want);
    if (strncmp(err, "h.gguf: ", 8) || !strstr(err, want))
        fail_msg("error \"%s\" does not name the file and say \"%s\"", err, want);
    print_message("# %s\n", err);
    buf_free(&b);
}

static void valid_image(void **state)
{
    (void)state;
    spec s = good();
    icl_buf b = build(&s);
    char err[512];
    icl_gguf *g = icl_gguf_parse(b.data, b.len, "h.gguf", err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    assert_int_equal(icl_gguf_n_kv(g), 3);
    assert_int_equal(icl_gguf_n_tensors(g), 2);
    const icl_gguf_tensor *x = icl_gguf_find_tensor(g, "x"), *y = icl_gguf_find_tensor(g, "y");
    assert_non_null(x);
    assert_int_equal(x->n_dims, 2);
    assert_int_equal(x->ne[0], 3);
    assert_int_equal(x->ne[1], 2);
    assert_int_equal(x->nbytes, 24);
    float f5;
    memcpy(&f5, (const char *)x->data + 20, 4);
    assert_true(f5 == 5.0f);
    assert_int_equal(y->nbytes, 34);
    assert_int_equal(((const uint8_t *)y->data)[1], 0x3c);
    const icl_gguf_kv *l;
    assert_int_equal(icl_gguf_get_arr(g, "a.list", ICL_GGUF_STRING, &l, err, sizeof err), 0);
    assert_int_equal(l->n, 2);
    assert_int_equal(l->strs[0].len, 2);
    assert_memory_equal(l->strs[0].p, "ab", 2);
    icl_gguf_close(g);
    /* every truncation is an error, never an over-read */
    for (size_t cut = 1; cut <= b.len; cut++) {
        icl_buf t = {0};
        buf_append(&t, b.data, b.len - cut);
        if (!t.data)
            buf_append(&t, "", 0);
        err[0] = 0;
        assert_null(parse(&t, err, sizeof err));
        assert_true(!strncmp(err, "h.gguf: ", 8));
        buf_free(&t);
    }
    buf_free(&b);
}

static void hostile(void **state)
{
    (void)state;
    spec s;
    icl_buf b = {0};
    char err[256];
    buf_puts(&b, "GGUX\3\0\0\0");
    assert_null(parse(&b, err, sizeof err));
    assert_non_null(strstr(err, "not a GGUF file"));
    buf_free(&b);
    s = good(), s.version = 1, expect_error(&s, "GGUF version 1 is not supported");
    s = good(), s.n_kv = 1ull << 60, expect_error(&s, "key/value count 1152921504606846976 is more than the file can hold");
    s = good(), s.n_tensors = 1ull << 40, expect_error(&s, "tensor count");
    s = good(), s.n_kv = 4, expect_error(&s, "runs past the end"); /* reads tensor infos as a key */
    s = good(), s.name_len = 1ull << 40, expect_error(&s, "string length 1099511627776 runs past the end");
    s = good(), s.name_len = UINT64_MAX, expect_error(&s, "runs past the end of the file");
    s = good(), s.align = 48, expect_error(&s, "general.alignment must be a uint32 power of two");
    s = good(), s.align = 0, expect_error(&s, "general.alignment must be a uint32 power of two");
    s = good(), s.align_type = 5, expect_error(&s, "general.alignment must be a uint32 power of two (is int32");
    s = good(), s.align_type = 13, expect_error(&s, "unknown value type 13");
    s = good(), s.arr_elem = 9, expect_error(&s, "unsupported (nested) array element type 9");
    s = good(), s.arr_elem = 77, expect_error(&s, "unknown array element type 77");
    s = good(), s.arr_n = 1ull << 61, expect_error(&s, "array of 2305843009213693952 strings runs past the end");
    s = good(), s.arr_n = 3, expect_error(&s, "tensor 0: name: string length"); /* a lying count shifts the rest */
    s = good(), s.arr_elem = 12, s.arr_n = 1ull << 60, expect_error(&s, "float64 values runs past the end");
    s = good(), s.x_dims = 5, expect_error(&s, "tensor 0 (\"x\"): n_dims 5 is not in 1..4");
    s = good(), s.x_dims = 0, expect_error(&s, "n_dims 0");
    s = good(), s.x_ne0 = 0, expect_error(&s, "dimension 0 is 0");
    s = good(), s.x_ne0 = 1ull << 62, s.x_ne1 = 1ull << 62, expect_error(&s, "(the element count overflows)");
    s = good(), s.x_ne0 = 1ull << 63, expect_error(&s, "dimension 0 is 9223372036854775808");
    s = good(), s.x_ne0 = 1ull << 40, expect_error(&s, "runs past the end of the file (data section has");
    s = good(), s.x_type = 4, expect_error(&s, "tensor 0 (\"x\"): unknown ggml type 4");
    s = good(), s.x_type = 1000, expect_error(&s, "unknown ggml type 1000");
    s = good(), s.x_type = 8, expect_error(&s, "row length 3 is not a multiple of Q8_0's block size 32");
    s = good(), s.x_off = 16, expect_error(&s, "tensor \"x\": offset 16 is not a multiple of the alignment 32");
    s = good(), s.x_off = 32, expect_error(&s, "tensors \"x\" and \"y\" overlap");
    s = good(), s.y_off = 0, expect_error(&s, "overlap");
    s = good(), s.y_off = UINT64_MAX & ~31ull, expect_error(&s, "tensor \"y\": data at offset");
    s = good(), s.truncate_data = 1, expect_error(&s, "tensor \"y\": data at offset 32 (34 bytes) runs past the end");
    s = good(), s.y_name = "x", expect_error(&s, "tensor 1 (\"x\"): duplicate tensor name");
    s = good(), s.y_name = "", expect_error(&s, "tensor 1: empty name");
    s = good(), s.y_name = "a-name-of-exactly-sixty-four-bytes-which-ggml-cannot-hold-xxxxxx",
    expect_error(&s, "name longer than 63 bytes");
}

static void hostile_keys(void **state)
{
    (void)state;
    char err[256];
    icl_buf b = {0};
    buf_append(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 0);
    u64(&b, 2);
    str(&b, "k");
    u32(&b, 7);
    buf_putc(&b, 2); /* a bool that is 2 */
    str(&b, "k2");
    u32(&b, 0);
    buf_putc(&b, 0);
    assert_null(parse(&b, err, sizeof err));
    assert_non_null(strstr(err, "h.gguf: key 0 (\"k\"): bool value 2 is not 0 or 1"));
    buf_clear(&b); /* a key with a NUL inside */
    buf_append(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 0);
    u64(&b, 1);
    u64(&b, 2);
    buf_append(&b, "k\0", 2);
    u32(&b, 4);
    u32(&b, 7);
    assert_null(parse(&b, err, sizeof err));
    assert_non_null(strstr(err, "h.gguf: key 0: name contains a NUL byte"));
    /* two keys named "k" */
    buf_clear(&b);
    buf_append(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 0);
    u64(&b, 2);
    for (int i = 0; i < 2; i++) {
        str(&b, "k");
        u32(&b, 4);
        u32(&b, 7);
    }
    assert_null(parse(&b, err, sizeof err));
    assert_non_null(strstr(err, "key 1 (\"k\"): duplicate key"));
    buf_free(&b);
}

/* tests/data/gguf/kinds.gguf: every value type as gguf-py wrote it. */
static void reference_file(void **state)
{
    (void)state;
    char err[512];
    icl_gguf *g = icl_gguf_open(TEST_DATA "/gguf/kinds.gguf", err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    assert_int_equal(icl_gguf_version(g), 3);
    int64_t i;
    uint64_t u;
    double f;
    int bv;
    icl_gguf_str s;
    assert_int_equal(icl_gguf_get_uint(g, "t.u8", &u, err, sizeof err), 0), assert_int_equal(u, 200);
    assert_int_equal(icl_gguf_get_int(g, "t.i8", &i, err, sizeof err), 0), assert_int_equal(i, -100);
    assert_int_equal(icl_gguf_get_uint(g, "t.u16", &u, err, sizeof err), 0), assert_int_equal(u, 60000);
    assert_int_equal(icl_gguf_get_int(g, "t.i16", &i, err, sizeof err), 0), assert_int_equal(i, -30000);
    assert_int_equal(icl_gguf_get_uint(g, "t.u32", &u, err, sizeof err), 0), assert_int_equal(u, 4000000000u);
    assert_int_equal(icl_gguf_get_int(g, "t.i32", &i, err, sizeof err), 0), assert_int_equal(i, -2000000000);
    assert_int_equal(icl_gguf_get_uint(g, "t.u64", &u, err, sizeof err), 0), assert_true(u == (1ull << 63) + 5);
    assert_int_equal(icl_gguf_get_int(g, "t.u64", &i, err, sizeof err), -1);
    assert_non_null(strstr(err, "kinds.gguf: t.u64: value 9223372036854775813 is out of range"));
    assert_int_equal(icl_gguf_get_int(g, "t.i64", &i, err, sizeof err), 0), assert_true(i == -(1ll << 62));
    assert_int_equal(icl_gguf_get_uint(g, "t.i8", &u, err, sizeof err), -1);
    assert_non_null(strstr(err, "value -100 is negative"));
    assert_int_equal(icl_gguf_get_float(g, "t.f32", &f, err, sizeof err), 0), assert_true(f == 1.5);
    assert_int_equal(icl_gguf_get_float(g, "t.f64", &f, err, sizeof err), 0), assert_true(f == -2.25);
    assert_int_equal(icl_gguf_get_bool(g, "t.bool", &bv, err, sizeof err), 0), assert_int_equal(bv, 1);
    assert_int_equal(icl_gguf_get_str(g, "t.str", &s, err, sizeof err), 0);
    assert_int_equal(s.len, 6);
    assert_memory_equal(s.p, "h\xc3\xa9llo", 6);
    /* wrong types are errors naming the file, key, and both types */
    assert_int_equal(icl_gguf_get_int(g, "t.str", &i, err, sizeof err), -1);
    assert_non_null(strstr(err, "kinds.gguf: t.str is a string, expected an integer"));
    assert_int_equal(icl_gguf_get_str(g, "t.arr_i32", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "t.arr_i32 is an array of int32, expected a string"));
    assert_int_equal(icl_gguf_get_float(g, "absent", &f, err, sizeof err), 1);
    const icl_gguf_kv *a;
    assert_int_equal(icl_gguf_get_arr(g, "t.arr_i32", ICL_GGUF_INT32, &a, err, sizeof err), 0);
    assert_int_equal(a->n, 3);
    assert_int_equal(icl_gguf_arr_int(a, 1), -2);
    assert_int_equal(icl_gguf_get_arr(g, "t.arr_i32", ICL_GGUF_STRING, &a, err, sizeof err), -1);
    assert_int_equal(icl_gguf_get_arr(g, "t.arr_str", ICL_GGUF_STRING, &a, err, sizeof err), 0);
    assert_int_equal(a->n, 3);
    assert_int_equal(a->strs[1].len, 0);
    assert_memory_equal(a->strs[2].p, "ccc", 3);
    assert_int_equal(icl_gguf_get_arr(g, "t.arr_f32", ICL_GGUF_FLOAT32, &a, err, sizeof err), 0);
    assert_true(icl_gguf_arr_float(a, 1) == -1.0);
    assert_int_equal(icl_gguf_get_arr(g, "t.arr_bool", ICL_GGUF_BOOL, &a, err, sizeof err), 0);
    assert_int_equal(icl_gguf_arr_int(a, 0), 1);
    assert_int_equal(icl_gguf_get_arr(g, "t.arr_u8", ICL_GGUF_INT32, &a, err, sizeof err), 0);
    assert_int_equal(icl_gguf_arr_int(a, 2), 255);
    char *arch = icl_gguf_get_strdup(g, "general.architecture", err, sizeof err);
    assert_string_equal(arch, "llama");
    free(arch);
    icl_gguf_close(g);
    assert_null(icl_gguf_open(TEST_DATA "/gguf/absent.gguf", err, sizeof err));
    assert_non_null(strstr(err, "absent.gguf: No such file"));
}

/* Write every value type and a few tensors, read back, and copy through
 * icl_gguf_set_kv: the second file is byte-identical. */
static void writer_round_trip(void **state)
{
    (void)state;
    char err[512], p1[] = "/tmp/icl-gguf-XXXXXX";
    int fd = mkstemp(p1);
    assert_true(fd >= 0);
    close(fd);
    icl_gguf_writer *w = icl_gguf_writer_new();
    icl_gguf_set_str(w, "general.architecture", "llama", 5);
    icl_gguf_set_u32(w, "general.alignment", 64);
    icl_gguf_set_u32(w, "llama.block_count", 7);
    icl_gguf_set_i32(w, "x.i32", -5);
    icl_gguf_set_u64(w, "x.u64", 1ull << 40);
    icl_gguf_set_f32(w, "x.f32", 0.25f);
    icl_gguf_set_bool(w, "x.bool", 1);
    icl_gguf_set_u32(w, "llama.block_count", 30); /* replaces, keeps its place */
    const char *toks[] = {"a", "b\xc3\xa9", ""};
    icl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3);
    int32_t ids[] = {1, -2, 3};
    icl_gguf_set_arr(w, "x.ids", ICL_GGUF_INT32, ids, 3);
    icl_gguf_set_str(w, "gone", "x", 1);
    icl_gguf_unset(w, "gone");
    float data[64];
    for (int i = 0; i < 64; i++)
        data[i] = (float)i / 8;
    int64_t ne[2] = {8, 8};
    assert_int_equal(icl_gguf_add_tensor(w, "a.weight", ICL_GGML_F32, 2, ne, data, sizeof data, err, sizeof err), 0);
    int64_t ne1[1] = {5};
    assert_int_equal(icl_gguf_add_tensor(w, "b", ICL_GGML_F32, 1, ne1, data, 20, err, sizeof err), 0);
    assert_int_equal(icl_gguf_add_tensor(w, "b", ICL_GGML_F32, 1, ne1, data, 20, err, sizeof err), -1);
    assert_non_null(strstr(err, "added twice"));
    assert_int_equal(icl_gguf_add_tensor(w, "c", ICL_GGML_Q8_0, 1, ne1, data, 20, err, sizeof err), -1);
    assert_non_null(strstr(err, "need 0"));
    assert_int_equal(icl_gguf_write(w, p1, err, sizeof err), 0);
    icl_gguf_writer_free(w);

    icl_gguf *g = icl_gguf_open(p1, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    assert_int_equal(icl_gguf_alignment(g), 64);
    assert_int_equal(icl_gguf_n_kv(g), 9);
    assert_string_equal(icl_gguf_kv_at(g, 2)->key, "llama.block_count");
    assert_int_equal(icl_gguf_kv_at(g, 2)->u, 30);
    assert_int_equal(icl_gguf_find_kv(g, "x.i32")->i, -5);
    assert_true(icl_gguf_find_kv(g, "x.u64")->u == 1ull << 40);
    assert_true(icl_gguf_find_kv(g, "x.f32")->f == 0.25);
    const icl_gguf_kv *t = icl_gguf_find_kv(g, "tokenizer.ggml.tokens");
    assert_int_equal(t->n, 3);
    assert_memory_equal(t->strs[1].p, "b\xc3\xa9", 3);
    assert_int_equal(icl_gguf_arr_int(icl_gguf_find_kv(g, "x.ids"), 1), -2);
    const icl_gguf_tensor *a = icl_gguf_find_tensor(g, "a.weight"), *b = icl_gguf_find_tensor(g, "b");
    assert_memory_equal(a->data, data, sizeof data);
    assert_int_equal(b->offset, 256);
    assert_memory_equal(b->data, data, 20);
    assert_int_equal((size_t)a->data % 64, 0);

    /* copy every kv and tensor: same bytes */
    char p2[] = "/tmp/icl-gguf-XXXXXX";
    fd = mkstemp(p2);
    close(fd);
    w = icl_gguf_writer_new();
    for (int i = 0; i < icl_gguf_n_kv(g); i++)
        icl_gguf_set_kv(w, icl_gguf_kv_at(g, i));
    for (int i = 0; i < icl_gguf_n_tensors(g); i++) {
        const icl_gguf_tensor *x = icl_gguf_tensor_at(g, i);
        assert_int_equal(icl_gguf_add_tensor(w, x->name, x->type, x->n_dims, x->ne, x->data, x->nbytes, err, sizeof err), 0);
    }
    assert_int_equal(icl_gguf_write(w, p2, err, sizeof err), 0);
    icl_gguf_writer_free(w);
    size_t n1;
    const void *b1 = icl_gguf_bytes(g, &n1);
    icl_gguf *g2 = icl_gguf_open(p2, err, sizeof err);
    size_t n2;
    const void *b2 = icl_gguf_bytes(g2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    icl_gguf_close(g2);
    icl_gguf_close(g);
    unlink(p1);
    unlink(p2);
}

/* The real model, when make deps fetched it. */
static void smollm2(void **state)
{
    (void)state;
    const char *p = getenv("ICL_SMOLLM2_GGUF");
    if (!p || access(p, R_OK)) {
        print_message("# SKIP ICL_SMOLLM2_GGUF not set or missing (make deps fetches it)\n");
        skip();
    }
    char err[512];
    icl_gguf *g = icl_gguf_open(p, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    assert_int_equal(icl_gguf_version(g), 3);
    assert_int_equal(icl_gguf_n_tensors(g), 272);
    int64_t v;
    assert_int_equal(icl_gguf_get_int(g, "llama.block_count", &v, err, sizeof err), 0), assert_int_equal(v, 30);
    assert_int_equal(icl_gguf_get_int(g, "llama.embedding_length", &v, err, sizeof err), 0), assert_int_equal(v, 576);
    const icl_gguf_kv *tok;
    assert_int_equal(icl_gguf_get_arr(g, "tokenizer.ggml.tokens", ICL_GGUF_STRING, &tok, err, sizeof err), 0);
    assert_int_equal(tok->n, 49152);
    const icl_gguf_tensor *e = icl_gguf_find_tensor(g, "token_embd.weight");
    assert_int_equal(e->type, ICL_GGML_Q8_0);
    assert_int_equal(e->ne[0], 576);
    assert_int_equal(e->ne[1], 49152);
    assert_null(icl_gguf_find_tensor(g, "output.weight"));
    assert_int_equal(icl_gguf_find_tensor(g, "blk.0.attn_q.weight")->type, ICL_GGML_Q4_1);
    icl_gguf_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_image),      cmocka_unit_test(hostile),           cmocka_unit_test(hostile_keys),
        cmocka_unit_test(reference_file),   cmocka_unit_test(writer_round_trip), cmocka_unit_test(smollm2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
