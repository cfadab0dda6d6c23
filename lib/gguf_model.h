/* gguf_model.h - causal LMs from and to GGUF files (llama, qwen2, gpt2).
 *
 * A table per architecture maps every tensor between its Hugging Face name
 * and its llama.cpp GGUF name ({role, HF name, GGUF name, shape, transform};
 * "%d" is the layer), the way llama.cpp's convert_hf_to_gguf.py writes them
 * and transformers' GGUF loader (modeling_gguf_pytorch_utils.py) reads them:
 *   - llama: attn_q and attn_k rows (weights and biases) are permuted by
 *     llama.cpp's converter for its rope; read: W_hf[h*hd + s*hd/2 + i] =
 *     W_gguf[h*hd + 2i + s] (h < n_head for q, n_head_kv for k; i < hd/2;
 *     s in {0, 1}); written: the inverse.  qwen2 is not permuted.
 *   - gpt2: HF's Conv1D weights ([in, out]) are stored transposed, as
 *     Linear [out, in] (attn_qkv, attn_output, ffn_up, ffn_down).
 *   - No output.weight: tied embeddings (gpt2: an output.weight equal to
 *     token_embd.weight is tied too).
 * GGUF dims are reversed against HF shapes: ne[0] is the row length, so an
 * HF [out, in] matrix is ne = {in, out}.
 *
 * Config from metadata (ARCH = general.architecture): ARCH.context_length
 * -> max_position_embeddings, ARCH.embedding_length -> hidden_size,
 * ARCH.block_count -> num_hidden_layers, ARCH.feed_forward_length ->
 * intermediate_size, ARCH.attention.head_count(_kv) -> num_attention_heads /
 * num_key_value_heads, ARCH.attention.key_length -> head_dim,
 * ARCH.rope.freq_base -> rope_theta, ARCH.attention.layer_norm_rms_epsilon
 * (gpt2: layer_norm_epsilon) -> rms_norm_eps / layer_norm_epsilon,
 * vocab_size = rows of token_embd.weight, tokenizer.ggml.bos_token_id /
 * eos_token_id / padding_token_id -> bos/eos/pad_token_id; biases present
 * -> attention_bias / mlp_bias.  Rope scaling and partial rope are refused by
 * name (icl would compute something else).
 *
 * The tensors stay in the file: icl_gguf_model keeps the mapping open and
 * hands each tensor out as stored (type, blocks) or as float32 in HF layout
 * (dequantized, un-permuted, transposed).  icl_model_load_gguf dequantizes
 * everything into a float32 icl_model; a loader that keeps quantized blocks
 * (QLoRA) can keep the icl_gguf_model instead and read the raw blocks
 * through icl_gguf_model_find.
 *
 * Errors: NULL / -1 with a message in err naming the file and tensor or key.
 */
#ifndef ICL_GGUF_MODEL_H
#define ICL_GGUF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "gguf.h"
#include "model.h"

/* How a tensor's stored layout differs from HF's. */
typedef enum {
    ICL_GGUF_AS_IS = 0,
    ICL_GGUF_PERMUTE_Q, /* llama rope permutation over n_head heads */
    ICL_GGUF_PERMUTE_K, /* ... over n_head_kv heads */
    ICL_GGUF_TRANSPOSE, /* gpt2 Conv1D: HF [in, out], GGUF Linear [out, in] */
} icl_gguf_xform;

/* One row of an architecture's table.  shape: HF's dims, each one letter:
 * V vocab, C hidden, I intermediate, Q n_head*head_dim, K n_head_kv*head_dim,
 * P max positions, T 3*hidden (gpt2 c_attn); "C" is a vector. */
typedef struct {
    const char *role;   /* "attn_q", ... (llama.cpp's tensor role) */
    const char *hf;     /* "model.layers.%d.self_attn.q_proj.weight" */
    const char *gguf;   /* "blk.%d.attn_q.weight" */
    const char *shape;  /* "QC" */
    icl_gguf_xform xform;
} icl_gguf_tensor_map;

/* The table of model_type "llama", "qwen2" or "gpt2" (n rows), or NULL. */
const icl_gguf_tensor_map *icl_gguf_arch_table(const char *model_type, int *n);

/* The row of c's table for the HF tensor name hf (layer filled in, e.g.
 * "model.layers.3.self_attn.q_proj.weight"): *layer gets the layer (-1 for
 * a tensor outside the blocks), gguf (gsz bytes) the GGUF name
 * ("blk.3.attn_q.weight"), shape the HF shape (shape[1] = 0 for a vector;
 * gpt2's Conv1D weights [in, out]).  NULL when the table has no such name
 * or c's model has no such tensor (lm_head.weight with tied embeddings, a
 * bias the config does not have, a layer past num_hidden_layers). */
const icl_gguf_tensor_map *icl_gguf_map_hf(const icl_config *c, const char *hf, int *layer, char *gguf, size_t gsz,
                                           int64_t shape[2]);

/* One tensor of an opened model: HF name (layer filled in) and where it is. */
typedef struct {
    char hf[128];
    const icl_gguf_tensor_map *map;
    const icl_gguf_tensor *t;   /* into the mapped file */
    int64_t shape[2];           /* HF shape (shape[1] = 0 for a vector) */
} icl_gguf_model_tensor;

typedef struct icl_gguf_model icl_gguf_model;

/* Open path, derive the config and map every tensor.  Every model tensor
 * must be present with the shape the config gives, of a type icl can read;
 * a tensor the table does not know is an error.  NULL with err. */
icl_gguf_model *icl_gguf_model_open(const char *path, char *err, size_t errsz);
/* Same over an already opened file (taken over: closed with the model, also
 * on failure). */
icl_gguf_model *icl_gguf_model_from(icl_gguf *g, char *err, size_t errsz);
void icl_gguf_model_close(icl_gguf_model *gm);
/* The config (owned by gm) and the file. */
const icl_config *icl_gguf_model_config(const icl_gguf_model *gm);
const icl_gguf *icl_gguf_model_file(const icl_gguf_model *gm);
/* Tensors by index (table order, layer by layer) or HF name (NULL if none). */
int icl_gguf_model_count(const icl_gguf_model *gm);
const icl_gguf_model_tensor *icl_gguf_model_at(const icl_gguf_model *gm, int i);
const icl_gguf_model_tensor *icl_gguf_model_find(const icl_gguf_model *gm, const char *hf);
/* Dequantize tensor e into dst (numel floats) in HF layout.  0 ok, -1 err. */
int icl_gguf_model_read_f32(const icl_gguf_model *gm, const icl_gguf_model_tensor *e, float *dst, size_t numel,
                            char *err, size_t errsz);

/* Load a GGUF file as a float32 model (every tensor dequantized).  The
 * model's src_dir is NULL.  NULL with err. */
icl_model *icl_model_load_gguf(const char *path, char *err, size_t errsz);
/* Load a GGUF file as a QLoRA base (icl_model_new_quantized): every matrix
 * stored in a quantized block type icl computes with (Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0, Q2_K .. Q6_K; qlinear.h) stays in its blocks, copied into the
 * model's own buffer m->qdata (the file is closed on return): the token
 * embedding (dequantized row by row at lookup; also the LM head when tied),
 * an untied output.weight, and each block product, fused as the model
 * computes it: Llama/Qwen2's attn_q|attn_k|attn_v rows concatenated (q and k
 * rows un-permuted by moving whole rows of blocks) and ffn_gate|ffn_up, when
 * the parts share one type; a fused product whose parts have different
 * types (e.g. a Q4_K_M file's Q6_K attn_v beside Q4_K attn_q), and every
 * F32/F16/BF16 tensor (norms, biases, GPT-2's position_embd) are
 * dequantized to float32 into the base set as icl_model_load_gguf does.
 * icl_model_qsummary says what was kept.  The base is frozen: train
 * adapters on it (icl_lora_attach); icl_model_save refuses it.  Results
 * equal the float32 model's to float32 rounding (the forward's products
 * are bit-identical, qlinear.h).  NULL with err as icl_model_load_gguf. */
icl_model *icl_model_load_gguf_quantized(const char *path, char *err, size_t errsz);
/* Either of the above from an opened model (gm stays the caller's: the
 * model copies what it keeps): keep_blocks 0 as icl_model_load_gguf, 1 as
 * icl_model_load_gguf_quantized.  NULL with err. */
icl_model *icl_gguf_model_load(const icl_gguf_model *gm, int keep_blocks, char *err, size_t errsz);
/* llama.cpp's rope_freqs.weight for c's llama3 rope scaling, as its
 * converter (convert_hf_to_gguf.py, LlamaModel) computes it from
 * transformers' parameters: for each of the head_dim/2 frequencies
 * f_i = 1/theta^(2i/head_dim), wavelength w = 2 pi / f_i, the divisor 1 when
 * w < original_max_position_embeddings / high_freq_factor, factor when
 * w > original_max_position_embeddings / low_freq_factor, else
 * 1 / ((1 - s) / factor + s) with s = (original_max_position_embeddings / w
 * - low_freq_factor) / (high_freq_factor - low_freq_factor).  llama.cpp
 * divides each frequency by it, which is transformers'
 * _compute_llama3_parameters.  out: head_dim/2 floats.  A GGUF file with
 * such a tensor loads as llama3 rope scaling (the parameters found back
 * from it); a model with llama3 rope scaling is written with it. */
void icl_gguf_llama3_rope_factors(const icl_config *c, float *out);

/* 1 if path names a regular file that starts with the GGUF magic. */
int icl_is_gguf_file(const char *path);

/* Rows of a llama q/k projection between HF and GGUF order (n_rows =
 * n_heads * hd, each row_len floats; src and dst distinct).  to_gguf 0:
 * GGUF -> HF (un-permute), 1: HF -> GGUF. */
void icl_gguf_permute_rows(const float *src, float *dst, int n_heads, int hd, size_t row_len, int to_gguf);

/* llama.cpp's llama_ftype (general.file_type) of a file whose matrices
 * are of ggml type t: F32 0, F16 1, Q4_0 2, Q4_1 3, Q8_0 7, BF16 32; -1 for
 * a type icl does not write. */
int icl_gguf_file_type_of(uint32_t t);

/* Set the ARCH.* hyper-parameter keys llama.cpp reads for c (ARCH =
 * c->model_type): context_length, embedding_length, block_count,
 * feed_forward_length, attention.head_count; llama/qwen2 also
 * attention.head_count_kv, rope.freq_base, attention.layer_norm_rms_epsilon,
 * rope.dimension_count, vocab_size (and key_length/value_length when
 * head_dim * heads != hidden); gpt2 attention.layer_norm_epsilon. */
void icl_gguf_set_hparams(icl_gguf_writer *w, const icl_config *c);

/* Hook for tokenizer metadata (lib/gguf_tok, the tokenizer side of issue
 * 11): called by icl_gguf_save_model to add tokenizer.ggml.* keys to w from
 * the model's source folder (src_dir may be NULL).  NULL: no tokenizer is
 * written.  0 ok, -1 with err. */
typedef int (*icl_gguf_tok_writer)(icl_gguf_writer *w, const char *src_dir, char *err, size_t errsz);

/* Write m as a GGUF file (llama.cpp's names and layout, general.architecture
 * and ARCH.* keys as llama.cpp reads them) with the weights in type
 * (ICL_GGML_F32, F16, BF16, Q8_0, Q4_0 or Q4_1; 1-D tensors (norms, biases)
 * stay F32 as llama.cpp's converter keeps them; a matrix whose rows are not
 * a whole number of blocks stays F32; with Q4_0/Q4_1 the output head,
 * output.weight or a tied token_embd.weight, is Q8_0).  extra (NULL: none), e.g. the GGUF
 * the model came from: its key/values are copied first (tokenizer.ggml.*,
 * general.name...; general.architecture, general.alignment,
 * general.file_type and ARCH.* are icl's); with extra_types, a tensor it
 * has under the same name keeps that tensor's type when icl can write it
 * (so GGUF -> model -> GGUF gives the same blocks).  tok: see above.
 * Atomic.  0 ok, -1 with err (an extra whose general.type is not "model",
 * e.g. a LoRA adapter GGUF, or whose general.architecture is not m's). */
int icl_gguf_save_model(const icl_model *m, const char *path, uint32_t type, const icl_gguf *extra, int extra_types,
                        icl_gguf_tok_writer tok, char *err, size_t errsz);

#endif
