/* libFuzzer target for the GGUF reader (lib/gguf.c).
 * Build and run: sh tests/fuzz/run.sh gguf [seconds].
 * make check replays the committed corpus (tests/fuzz/corpus/gguf, seeds made
 * by tests/data/gguf/make_fuzz_seeds.py) through icl_fuzz_gguf with a gcc
 * build (tests/unit/test_fuzz_replay.c).
 *
 * Small tensors are dequantized (lib/quant.c), and a file that parses is
 * opened as a model (lib/gguf_model.c); a small one is loaded as a float32
 * model and as a QLoRA base (quantized blocks kept), which must agree.  Besides not crashing: every key and tensor name is a NUL-free string, every
 * tensor lies inside the input with the byte size its shape and type give,
 * and the typed getters agree with the value types. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_model.h"
#include "model.h"
#include "quant.h"

#ifndef FUZZ_CHECK
#define FUZZ_CHECK(cond)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);       \
            abort();                                                                             \
        }                                                                                        \
    } while (0)
#endif

/* Returns 1 when the input parsed. */
int icl_fuzz_gguf(const uint8_t *data, size_t size)
{
    char err[512];
    icl_gguf *g = icl_gguf_parse(data, size, "fuzz.gguf", err, sizeof err);
    if (!g) {
        FUZZ_CHECK(strncmp(err, "fuzz.gguf: ", 11) == 0);
        return 0;
    }
    volatile unsigned sum = 0;
    for (int i = 0; i < icl_gguf_n_kv(g); i++) {
        const icl_gguf_kv *kv = icl_gguf_kv_at(g, i);
        FUZZ_CHECK(strlen(kv->key) > 0);
        FUZZ_CHECK(icl_gguf_find_kv(g, kv->key) == kv);
        int64_t iv;
        double fv;
        icl_gguf_str s;
        int rc = icl_gguf_get_str(g, kv->key, &s, err, sizeof err);
        FUZZ_CHECK(rc == (kv->type == ICL_GGUF_STRING ? 0 : -1));
        if (rc == 0 && s.len)
            sum += (unsigned char)s.p[s.len - 1];
        (void)icl_gguf_get_int(g, kv->key, &iv, err, sizeof err);
        rc = icl_gguf_get_float(g, kv->key, &fv, err, sizeof err);
        FUZZ_CHECK(rc == (kv->type == ICL_GGUF_FLOAT32 || kv->type == ICL_GGUF_FLOAT64 ? 0 : -1));
        if (kv->type == ICL_GGUF_ARRAY) {
            for (uint64_t j = 0; j < kv->n; j++) {
                if (kv->elem == ICL_GGUF_STRING) {
                    FUZZ_CHECK(kv->strs[j].p >= (const char *)data &&
                               kv->strs[j].p + kv->strs[j].len <= (const char *)data + size);
                    if (kv->strs[j].len)
                        sum += (unsigned char)kv->strs[j].p[0];
                } else {
                    sum += (unsigned)icl_gguf_arr_int(kv, j);
                    sum += (unsigned)(icl_gguf_arr_float(kv, j) != 0);
                }
            }
        }
    }
    for (int i = 0; i < icl_gguf_n_tensors(g); i++) {
        const icl_gguf_tensor *t = icl_gguf_tensor_at(g, i);
        FUZZ_CHECK(strlen(t->name) > 0 && strlen(t->name) < ICL_GGUF_MAX_NAME);
        FUZZ_CHECK(icl_gguf_find_tensor(g, t->name) == t);
        FUZZ_CHECK(t->n_dims >= 1 && t->n_dims <= ICL_GGUF_MAX_DIMS);
        FUZZ_CHECK((const uint8_t *)t->data >= data && t->nbytes <= size);
        FUZZ_CHECK((size_t)((const uint8_t *)t->data - data) <= size - t->nbytes);
        FUZZ_CHECK(t->nbytes == icl_ggml_row_size(t->type, t->ne[0]) * (size_t)(t->nelements / t->ne[0]));
        const uint8_t *p = t->data;
        for (size_t j = 0; j < t->nbytes; j++)
            sum += p[j];
        /* dequantize small tensors (every type icl computes; others must say so) */
        if (t->nelements <= 4096) {
            float *y = malloc((size_t)t->nelements * sizeof *y);
            const icl_quant_traits *q = icl_quant_traits_of(t->type);
            int rc = icl_dequantize(t->type, t->data, t->nbytes, y, t->nelements, t->name, err, sizeof err);
            FUZZ_CHECK(rc == (q && q->to_float ? 0 : -1));
            if (!rc)
                for (int64_t j = 0; j < t->nelements; j++)
                    sum += y[j] == y[j];
            free(y);
        }
    }
    /* and as a model: config from the metadata, the tensor table, small
     * tensors read in HF layout (un-permuted / transposed) */
    icl_gguf_model *gm = icl_gguf_model_from(g, err, sizeof err); /* owns g from here */
    if (gm) {
        for (int i = 0; i < icl_gguf_model_count(gm); i++) {
            const icl_gguf_model_tensor *e = icl_gguf_model_at(gm, i);
            size_t numel = (size_t)e->shape[0] * (size_t)(e->shape[1] ? e->shape[1] : 1);
            FUZZ_CHECK((int64_t)numel == e->t->nelements);
            if (numel > 4096)
                continue;
            float *y = malloc(numel * sizeof *y);
            if (icl_gguf_model_read_f32(gm, e, y, numel, err, sizeof err) == 0)
                for (size_t j = 0; j < numel; j++)
                    sum += y[j] == y[j];
            free(y);
        }
        /* small models are loaded both ways (float32, and QLoRA's blocks):
         * the quantized load's float tensors are the float32 load's */
        const icl_config *c = icl_gguf_model_config(gm);
        if ((int64_t)c->vocab_size * c->hidden_size <= 65536 && c->num_hidden_layers <= 4 &&
            (int64_t)c->hidden_size * (c->intermediate_size + 4 * c->hidden_size) <= 262144 &&
            (int64_t)c->max_position_embeddings * c->hidden_size <= 262144) {
            icl_model *f = icl_gguf_model_load(gm, 0, err, sizeof err);
            icl_model *q = icl_gguf_model_load(gm, 1, err, sizeof err);
            FUZZ_CHECK(!f == !q);
            if (f && q) {
                FUZZ_CHECK(q->base.num_params <= f->base.num_params);
                for (int i = 0; i < q->base.n_views; i++) {
                    const icl_param_view *v = &q->base.views[i], *w = icl_model_view(f, v->name);
                    FUZZ_CHECK(w && w->numel == v->numel);
                    FUZZ_CHECK(!memcmp(q->base.params + v->offset, f->base.params + w->offset,
                                       v->numel * sizeof(float)));
                }
                sum += (unsigned)icl_model_qsummary(q, NULL, 0);
            }
            icl_model_free(f);
            icl_model_free(q);
        }
        icl_gguf_model_close(gm);
    }
    (void)sum;
    return 1;
}

#ifndef ICL_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icl_fuzz_gguf(data, size);
    return 0;
}
#endif
