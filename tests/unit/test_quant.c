/* lib/quant.c against the `gguf` Python package (llama.cpp's gguf-py):
 * tests/data/gguf/quant.gguf, made by tests/data/gguf/make_quant_fixtures.py,
 * holds random blocks of every type icl dequantizes with the floats
 * gguf.quants.dequantize makes of them, and float inputs with what
 * gguf.quants.quantize makes of them.  Everything must match bit for bit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant.h"
#include "safetensors.h"
#include "util.h"

static icl_gguf *fixtures(void)
{
    char err[512];
    icl_gguf *g = icl_gguf_open(TEST_DATA "/gguf/quant.gguf", err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    return g;
}

static void dequantize_every_type(void **state)
{
    (void)state;
    icl_gguf *g = fixtures();
    static const uint32_t types[] = {ICL_GGML_F32,  ICL_GGML_F16,  ICL_GGML_BF16, ICL_GGML_Q4_0, ICL_GGML_Q4_1,
                                     ICL_GGML_Q5_0, ICL_GGML_Q5_1, ICL_GGML_Q8_0, ICL_GGML_Q2_K, ICL_GGML_Q3_K,
                                     ICL_GGML_Q4_K, ICL_GGML_Q5_K, ICL_GGML_Q6_K};
    char err[512];
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char name[64], oname[80];
        snprintf(name, sizeof name, "deq.%s", icl_ggml_type_name(types[k]));
        snprintf(oname, sizeof oname, "%s.out", name);
        const icl_gguf_tensor *t = icl_gguf_find_tensor(g, name), *o = icl_gguf_find_tensor(g, oname);
        if (!t || !o)
            fail_msg("fixture %s missing", name);
        assert_int_equal(t->type, types[k]);
        assert_int_equal(o->type, ICL_GGML_F32);
        assert_int_equal(o->nelements, t->nelements);
        float *y = xmalloc((size_t)t->nelements * sizeof *y);
        if (icl_dequantize(t->type, t->data, t->nbytes, y, t->nelements, t->name, err, sizeof err))
            fail_msg("%s", err);
        const uint32_t *a = (const uint32_t *)(const void *)y, *b = o->data;
        int64_t bad = 0, first = -1;
        for (int64_t i = 0; i < t->nelements; i++)
            if (a[i] != b[i] && !bad++)
                first = i;
        if (bad)
            fail_msg("%s: %lld of %lld floats differ from gguf.quants.dequantize, first at %lld: %.9g vs %.9g", name,
                     (long long)bad, (long long)t->nelements, (long long)first, y[first], ((const float *)o->data)[first]);
        print_message("# %s: %lld floats bit-identical\n", name, (long long)t->nelements);
        free(y);
    }
    icl_gguf_close(g);
}

static void quantize_types(void **state)
{
    (void)state;
    icl_gguf *g = fixtures();
    const icl_gguf_tensor *src = icl_gguf_find_tensor(g, "q.src");
    assert_non_null(src);
    static const uint32_t types[] = {ICL_GGML_F16, ICL_GGML_BF16, ICL_GGML_Q8_0, ICL_GGML_Q4_0, ICL_GGML_Q4_1};
    char err[512];
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char name[64];
        snprintf(name, sizeof name, "q.%s", icl_ggml_type_name(types[k]));
        const icl_gguf_tensor *want = icl_gguf_find_tensor(g, name);
        if (!want)
            fail_msg("fixture %s missing", name);
        assert_int_equal(want->type, types[k]);
        uint8_t *q = xmalloc(want->nbytes);
        if (icl_quantize(types[k], src->data, src->nelements, q, want->nbytes, name, err, sizeof err))
            fail_msg("%s", err);
        for (size_t i = 0; i < want->nbytes; i++)
            if (q[i] != ((const uint8_t *)want->data)[i])
                fail_msg("%s: byte %zu is %u, gguf.quants.quantize wrote %u", name, i, q[i],
                         ((const uint8_t *)want->data)[i]);
        print_message("# %s: %zu bytes bit-identical\n", name, want->nbytes);
        free(q);
    }
    /* F32 is a copy */
    float *c = xmalloc(src->nbytes);
    assert_int_equal(icl_quantize(ICL_GGML_F32, src->data, src->nelements, c, src->nbytes, "x", err, sizeof err), 0);
    assert_memory_equal(c, src->data, src->nbytes);
    free(c);
    icl_gguf_close(g);
}

/* icl_f32_to_f16 against exact halves: every half round-trips, and a value
 * halfway between two halves goes to the even one. */
static void f16_rounding(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue; /* NaN */
        float f = icl_f16_to_f32((uint16_t)h);
        assert_int_equal(icl_f32_to_f16(f), h);
        uint32_t next = h + 1;
        if ((h & 0x7fff) >= 0x7bff)
            continue;
        double mid = ((double)f + (double)icl_f16_to_f32((uint16_t)next)) / 2; /* exact in float for halves */
        uint16_t want = (h & 1) ? (uint16_t)next : (uint16_t)h;
        if (h & 0x8000)
            continue; /* next is toward -inf's magnitude; the positive side covers the rule */
        assert_int_equal(icl_f32_to_f16((float)mid), want);
    }
}

static void errors(void **state)
{
    (void)state;
    char err[256];
    float y[256];
    uint8_t blk[300] = {0};
    assert_int_equal(icl_dequantize(16, blk, 66, y, 256, "blk.0.ffn_up.weight", err, sizeof err), -1);
    assert_string_equal(err, "blk.0.ffn_up.weight: ggml type IQ2_XXS (16) cannot be dequantized by icl");
    assert_int_equal(icl_dequantize(4, blk, 18, y, 32, "t", err, sizeof err), -1);
    assert_string_equal(err, "t: unknown ggml type 4");
    assert_int_equal(icl_dequantize(ICL_GGML_Q8_0, blk, 33, y, 32, "t", err, sizeof err), -1);
    assert_non_null(strstr(err, "t: 32 values of type Q8_0 need 34 bytes, have 33"));
    assert_int_equal(icl_dequantize(ICL_GGML_Q4_K, blk, 144, y, 32, "t", err, sizeof err), -1);
    assert_int_equal(icl_quantize(ICL_GGML_Q4_K, y, 256, blk, 144, "t", err, sizeof err), -1);
    assert_string_equal(err, "t: ggml type Q4_K (12) cannot be written by icl");
    /* before writing: a value whose F16 (itself, or a block's scale or minimum) would be infinite */
    float z[32] = {0};
    z[5] = 65504.0f; /* F16's largest */
    assert_int_equal(icl_quant_check_range(ICL_GGML_F16, z, 32, "w", err, sizeof err), 0);
    z[7] = -65520.0f; /* rounds to -inf */
    assert_int_equal(icl_quant_check_range(ICL_GGML_F16, z, 32, "w", err, sizeof err), -1);
    assert_string_equal(err, "w: a value of magnitude 65520 is beyond what F16 holds (its F16 value would be infinite): "
                             "write F32 or BF16");
    assert_int_equal(icl_quant_check_range(ICL_GGML_BF16, z, 32, "w", err, sizeof err), 0);
    z[7] = INFINITY; /* the source's own */
    assert_int_equal(icl_quant_check_range(ICL_GGML_F16, z, 32, "w", err, sizeof err), 0);
    z[7] = 0;
    z[9] = 8.3e6f; /* Q8_0's scale 8.3e6 / 127 = 65354: fits; 8.33e6 does not */
    assert_int_equal(icl_quant_check_range(ICL_GGML_Q8_0, z, 32, "w", err, sizeof err), 0);
    z[9] = 8.33e6f;
    assert_int_equal(icl_quant_check_range(ICL_GGML_Q8_0, z, 32, "w", err, sizeof err), -1);
    assert_non_null(strstr(err, "beyond what Q8_0 holds (its F16 block scale would be infinite)"));
    z[9] = 0;
    z[3] = -70000.0f; /* Q4_1's minimum is an F16 */
    assert_int_equal(icl_quant_check_range(ICL_GGML_Q4_1, z, 32, "w", err, sizeof err), -1);
    assert_non_null(strstr(err, "beyond what Q4_1 holds (its F16 block minimum would be infinite)"));
    z[3] = 0;
    z[4] = 1e6f; /* Q4_1's scale (1e6 - 0) / 15 = 66667; its minimum 0 */
    assert_int_equal(icl_quant_check_range(ICL_GGML_Q4_1, z, 32, "w", err, sizeof err), -1);
    assert_non_null(strstr(err, "beyond what Q4_1 holds (its F16 block scale would be infinite)"));
    z[4] = 0;
    z[3] = -5e5f; /* Q4_0's scale 5e5 / 8 = 62500: fits */
    assert_int_equal(icl_quant_check_range(ICL_GGML_Q4_0, z, 32, "w", err, sizeof err), 0);
    const icl_quant_traits *t = icl_quant_traits_of(ICL_GGML_Q6_K);
    assert_int_equal(t->blck, 256);
    assert_int_equal(t->size, 210);
    assert_null(icl_quant_traits_of(4));
    assert_null(icl_quant_traits_of(16)->to_float);
    /* the two size tables (container, quant) agree on every ggml id */
    for (uint32_t id = 0; id < 64; id++) {
        const icl_quant_traits *q = icl_quant_traits_of(id);
        assert_int_equal(q != NULL, icl_ggml_type_name(id) != NULL);
        if (q) {
            assert_string_equal(q->name, icl_ggml_type_name(id));
            assert_int_equal(q->blck, icl_ggml_blck_size(id));
            assert_int_equal(q->size, icl_ggml_type_size(id));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(dequantize_every_type), cmocka_unit_test(quantize_types),
                                       cmocka_unit_test(f16_rounding), cmocka_unit_test(errors)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
