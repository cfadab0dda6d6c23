/* Generation on a quantized GGUF loaded as icl-gen loads it (icl_lora_load:
 * the matrices in their blocks) against the same file dequantized to
 * float32 (ICL_LOAD_DEQUANTIZE):
 *   - the prefill (icl_model_decode, tile-dequantized GEMM) gives the
 *     float32 logits to 1e-5 (rel L2);
 *   - decode steps (icl_model_step: icl_qmatvec, int8 activations) do NOT
 *     give the float32 bits (the integer path is the one used);
 *   - greedy ids.  Teacher-forced on the float32 model's greedy ids, step k
 *     of the quantized model has logits z_q[k] and the float32 model z_f[k],
 *     delta_k = max_v |z_q[k][v] - z_f[k][v]|, margin_k = the float32 top-1
 *     logit minus its top-2.  While every step so far has margin_k >
 *     2 delta_k the two argmaxes are equal (each logit moves by at most
 *     delta_k, so the order of top-1 and top-2 cannot flip), hence the
 *     quantized model's own greedy run (icl_generate, icl-gen's loop, 4
 *     prompts batched) must give the float32 ids at every step up to the
 *     first step with margin_k <= 2 delta_k (after that they may part);
 *   - adapters applied unmerged (icl_lora_apply) give the float32 merge's
 *     prefill logits to 1e-5.
 * File: tests/data/gguf/llama-tiny.q4_1.gguf (Q4_1, Q8_0 embedding and
 * head); adapter: tests/data/lora-llama-tiny/adapter (PEFT).  The real
 * model's decode-path perplexity against float32: t1105. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "lora.h"
#include "model.h"
#include "sample.h"
#include "util.h"

#define GGUF TEST_DATA "/gguf/llama-tiny.q4_1.gguf"
#define PEFT TEST_DATA "/lora-llama-tiny/adapter"

static double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static icl_model *load_from(const char *path, const char *spec, int flags)
{
    char err[512], *base = NULL;
    const char *specs[1] = {spec};
    icl_model *m = icl_lora_load(path, specs, spec ? 1 : 0, flags, &base, err, sizeof err);
    if (!m)
        fail_msg("%s", err);
    free(base);
    return m;
}

static icl_model *load(const char *spec, int flags) { return load_from(GGUF, spec, flags); }

/* The check of the top of this file for the GGUF at path, prompts np of
 * them (lengths plen), K new ids each.  Returns how many ids were checked. */
static int margins(const char *path, int np, int32_t *const *prompts, const int *plen, int K)
{
    char err[512];
    icl_model *q = load_from(path, NULL, 0), *f = load_from(path, NULL, ICL_LOAD_DEQUANTIZE);
    assert_non_null(q->qdata);
    assert_null(f->qdata);
    int V = f->cfg.vocab_size;
    float *zf = xmalloc((size_t)V * sizeof *zf), *zq = xmalloc((size_t)V * sizeof *zq);
    int32_t *want = xmalloc((size_t)np * K * sizeof *want);
    int *agree = xmalloc((size_t)np * sizeof *agree), differed = 0;
    for (int s = 0; s < np; s++) {
        int32_t *w = want + (size_t)s * K;
        icl_kv_cache *kf = icl_kv_cache_new(f, plen[s] + K), *kq = icl_kv_cache_new(q, plen[s] + K);
        assert_int_equal(icl_model_decode(f, kf, prompts[s], plen[s], zf, 0, err, sizeof err), 0);
        assert_int_equal(icl_model_decode(q, kq, prompts[s], plen[s], zq, 0, err, sizeof err), 0);
        assert_true(rel_l2(zq, zf, (size_t)V) < 1e-5);
        agree[s] = -1;
        for (int k = 0; k < K; k++) {
            if (k > 0) {
                assert_int_equal(icl_model_step(f, &kf, &w[k - 1], 1, zf, err, sizeof err), 0);
                assert_int_equal(icl_model_step(q, &kq, &w[k - 1], 1, zq, err, sizeof err), 0);
                differed |= memcmp(zf, zq, (size_t)V * sizeof *zf) != 0;
            }
            w[k] = icl_argmax(zf, V);
            double delta = 0, top1 = -INFINITY, top2 = -INFINITY;
            for (int v = 0; v < V; v++) {
                double d = fabs((double)zq[v] - zf[v]);
                delta = d > delta ? d : delta;
                if (zf[v] > top1)
                    top2 = top1, top1 = zf[v];
                else if (zf[v] > top2)
                    top2 = zf[v];
            }
            if (agree[s] < 0 && !(top1 - top2 > 2 * delta))
                agree[s] = k; /* from here on the ids may part */
        }
        if (agree[s] < 0)
            agree[s] = K;
        icl_kv_cache_free(kf);
        icl_kv_cache_free(kq);
    }
    assert_true(differed); /* the decode steps went through the integer dot products */
    /* the quantized model's own greedy generation, the prompts batched */
    icl_gen_config g;
    assert_int_equal(icl_gen_config_load(&g, NULL, NULL, err, sizeof err), 0);
    g.n_eos = 0;
    g.max_new_tokens = K;
    icl_gen_seq *seqs = xcalloc((size_t)np, sizeof *seqs);
    for (int s = 0; s < np; s++) {
        seqs[s].prompt = prompts[s];
        seqs[s].n_prompt = (size_t)plen[s];
        seqs[s].index = (uint64_t)s;
    }
    assert_int_equal(icl_generate(q, &g, seqs, np, NULL, NULL, err, sizeof err), 0);
    int checked = 0;
    for (int s = 0; s < np; s++) {
        assert_int_equal(seqs[s].out.n, K);
        for (int k = 0; k < agree[s]; k++, checked++)
            if (seqs[s].out.v[k] != want[(size_t)s * K + k])
                fail_msg("prompt %d step %d: quantized greedy id %d, float32 %d, though every margin so far "
                         "exceeded twice the logits' deviation",
                         s, k, seqs[s].out.v[k], want[(size_t)s * K + k]);
        print_message("# %s prompt %d: %d of %d greedy ids checked (margin > 2 delta up to there)\n",
                      strrchr(path, '/') + 1, s, agree[s], K);
        ids_free(&seqs[s].out);
    }
    free(seqs);
    free(want);
    free(agree);
    free(zf);
    free(zq);
    icl_model_free(q);
    icl_model_free(f);
    return checked;
}

static void greedy_margins(void **state)
{
    (void)state;
    enum { NP = 4, P = 5 };
    int32_t buf[NP][P], *prompts[NP];
    int plen[NP];
    uint64_t st = 5;
    for (int s = 0; s < NP; s++) {
        for (int i = 0; i < P; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            buf[s][i] = (int32_t)((st >> 33) % 96);
        }
        prompts[s] = buf[s];
        plen[s] = P;
    }
    /* at least each prompt's first id (the prefill's: float32 to 1e-5) */
    assert_true(margins(GGUF, NP, prompts, plen, 24) >= NP);
}

/* Every adapter of m laid out (icl_lora_pack) as its A and B are now:
 * At = A^T zero-padded to 16 columns, Bt = B^T. */
static void check_packed(const icl_model *m)
{
    int n = 0;
    for (int l = 0; l < m->cfg.num_hidden_layers; l++)
        for (int p = 0; p < ICL_NPROJ; p++)
            for (int i = 0; i < m->lora[l].n[p]; i++, n++) {
                const icl_lora *a = &m->lora[l].lora[p][i];
                int rp = (a->r + 15) / 16 * 16;
                assert_non_null(a->At);
                assert_non_null(a->Bt);
                for (int c = 0; c < a->in; c++)
                    for (int k = 0; k < rp; k++)
                        assert_true(a->At[(size_t)c * rp + k] == (k < a->r ? a->A[(size_t)k * a->in + c] : 0.0f));
                for (int k = 0; k < a->r; k++)
                    for (int j = 0; j < a->out; j++)
                        assert_true(a->Bt[(size_t)k * a->out + j] == a->B[(size_t)j * a->r + k]);
            }
    assert_true(n > 0);
}

static void adapters_unmerged(void **state)
{
    (void)state;
    char err[512];
    icl_model *q = load(PEFT ":0.7", 0), *f = load(PEFT ":0.7", ICL_LOAD_DEQUANTIZE);
    assert_non_null(q->lora); /* unmerged */
    assert_null(f->lora);     /* merged */
    assert_false(q->lora_set->trainable);
    int V = f->cfg.vocab_size;
    int32_t ids[9] = {1, 7, 30, 2, 55, 90, 11, 4, 63};
    float *zf = xmalloc(9 * (size_t)V * sizeof *zf), *zq = xmalloc(9 * (size_t)V * sizeof *zq);
    icl_kv_cache *kf = icl_kv_cache_new(f, 9), *kq = icl_kv_cache_new(q, 9);
    assert_int_equal(icl_model_decode(f, kf, ids, 9, zf, 1, err, sizeof err), 0);
    assert_int_equal(icl_model_decode(q, kq, ids, 9, zq, 1, err, sizeof err), 0);
    double r = rel_l2(zq, zf, 9 * (size_t)V);
    print_message("# adapter unmerged vs merged: prefill logits rel L2 %.2e\n", r);
    assert_true(r < 1e-5);
    /* and the adapter matters: the base alone is far from it */
    icl_model *b = load(NULL, 0);
    icl_kv_cache_reset(kq);
    assert_int_equal(icl_model_decode(b, kq, ids, 9, zq, 1, err, sizeof err), 0);
    assert_true(rel_l2(zq, zf, 9 * (size_t)V) > 1e-3);
    /* laid out once, and again when icl_lora_load_weights writes A and B
     * (the file's B without the 0.7 x scaling icl_lora_apply put in) */
    check_packed(q);
    float b0 = q->lora[0].lora[ICL_PROJ_QKV][0].B[0];
    assert_int_equal(icl_lora_load_weights(q, PEFT, err, sizeof err), 0);
    assert_true(q->lora[0].lora[ICL_PROJ_QKV][0].B[0] != b0);
    check_packed(q);
    icl_kv_cache_free(kf);
    icl_kv_cache_free(kq);
    free(zf);
    free(zq);
    icl_model_free(q);
    icl_model_free(f);
    icl_model_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(greedy_margins),
        cmocka_unit_test(adapters_unmerged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
