/* icl_roundtrip IN_DIR OUT_DIR EXPECTED_JSON: load an HF model folder with
 * libicl, save it to OUT_DIR, and write the logits of the fixture batch
 * (input_ids of EXPECTED_JSON, padding as its own document) to
 * OUT_DIR/icl_logits.safetensors.  Used by tests/hf/check_transformers.py. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "model.h"
#include "safetensors.h"
#include "util.h"

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    if (argc != 4)
        icl_usage_die("usage: icl_roundtrip IN_DIR OUT_DIR EXPECTED_JSON");
    char err[512];
    icl_model *m = icl_model_load(argv[1], err, sizeof err);
    if (!m)
        icl_die("%s", err);
    if (icl_model_save(m, argv[2], err, sizeof err))
        icl_die("%s", err);
    json_error_t je;
    json_t *e = json_load_file(argv[3], 0, &je);
    if (!e)
        icl_die("%s: %s", argv[3], je.text);
    json_t *ids = json_object_get(e, "input_ids"), *am = json_object_get(e, "attention_mask");
    int B = (int)json_array_size(ids), T = (int)json_array_size(json_array_get(ids, 0)), V = m->cfg.vocab_size;
    int32_t *id = icl_xmalloc(sizeof(int32_t) * B * T), *doc = icl_xmalloc(sizeof(int32_t) * B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            id[b * T + t] = (int32_t)json_integer_value(json_array_get(json_array_get(ids, b), t));
            doc[b * T + t] = json_integer_value(json_array_get(json_array_get(am, b), t)) ? 0 : -1;
        }
    icl_batch bt = {B, T, id, NULL, doc, NULL, NULL};
    float *lg = icl_xmalloc(sizeof(float) * B * T * V);
    icl_model_forward(m, &bt, lg, 0, NULL);
    char p[1024];
    snprintf(p, sizeof p, "%s/icl_logits.safetensors", argv[2]);
    icl_st_entry en = {"logits", lg, 3, {B, T, V}};
    if (icl_st_write(p, &en, 1, err, sizeof err))
        icl_die("%s", err);
    free(lg);
    free(id);
    free(doc);
    json_decref(e);
    icl_model_free(m);
    return 0;
}
