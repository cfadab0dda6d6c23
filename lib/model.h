/* model.h - causal LMs (Llama/Qwen2 and GPT-2): HF model folders, forward,
 * backward, KV-cache decoding, parameter sets, low-rank adapters.
 *
 * Parameters come in SETS (icl_param_set, as llm.c's one-buffer layout, per
 * set): a set's tensors live in ONE float buffer params[num_params]; its
 * gradients (grads) and AdamW moments (m, v), when allocated, are buffers of
 * the same size and layout, so an optimizer or an all-reduce is one loop
 * over num_params floats.  views[] names each tensor with its Hugging Face
 * (or PEFT) name, shape and offset into those buffers.
 *   m->base     the model's own weights (tied embeddings are one tensor).
 *               Trainable by default (full fine-tuning); after
 *               icl_model_freeze_base it has NO grads, m or v buffers and
 *               no weight gradient is computed.
 *   m->sets[i]  further sets, e.g. the LoRA adapters of icl_model_add_lora;
 *               trainable.
 * The optimizer, clipping and checkpoints run over icl_model_trainable().
 *
 * Typical use:
 *   icl_model *m = icl_model_load("base/", err, sizeof err);   (NULL on error)
 *   per optimizer step: icl_model_zero_grads(m); for each micro-batch:
 *       icl_model_forward(m, &batch, NULL, 1.0f / step_targets, &n);
 *       icl_model_backward(m, &batch, err, sizeof err);
 *     then update each trainable set (trainer.h: icl_train_step).
 *   icl_model_save(m, "run/", err, sizeof err);
 *   icl_model_free(m);
 * Evaluation: icl_model_forward(m, &batch, NULL, 0, &n) returns the summed loss.
 * Generation: icl_kv_cache_new, icl_model_decode (prefill), icl_model_step.
 *
 * One layer function (model.c: layer_forward / layer_backward) serves
 * training, evaluation, prefill and batched decoding; every weight product
 * goes through icl_linear (linear.h).
 *
 * Weight decay in HF's convention goes to views with ndim >= 2 (matrices and
 * embeddings), not to norms and biases (ndim 1).
 *
 * Semantics follow transformers to float32 rounding (tests/unit/test_model.c
 * against its logits, loss and gradients), including HF's padding_idx: for
 * Llama/Qwen2, lookups of pad_token_id give that embedding row no gradient.
 *
 * Memory (floats per token of a batch; C hidden_size, I intermediate_size,
 * H heads, hd head_dim, Datt = H hd, Dqkv = (H + 2 KV) hd, Dup = 2I for
 * Llama/Qwen2 and I for GPT-2, L layers).  One layer's activations kept
 * for its backward (ln1, ln2, res2 [C]; qkv [Dqkv]; att [Datt]; up [Dup];
 * act [I]; lse [H]; four norm statistics):
 *     A = 3C + Dqkv + Datt + Dup + I + H + 4
 * and the residual stream x [C] entering each layer (and leaving the last).
 * The forward keeps
 *     L A + (L + 1) C     without gradient checkpointing,
 *       A + (L + 1) C     with it (the layers' inputs and one set of layer
 *                         buffers, reused by every layer),
 * so checkpointing saves (L - 1) A floats per token: SmolLM2-135M (C 576,
 * I 1536, H 9, KV 3, hd 64, L 30) has A = 7885 floats, 31.5 KB per token
 * per layer: 1.87 GB of its 2.08 GB of activations at batch 8 x 256.  Both
 * add the final norm (C + 2), rotary tables (hd), the backward's scratch
 * (3C + Dqkv + Datt + Dup + I: dres, dtmp, dlnf, dqkv, datt, dup, dact),
 * the adapters' scratch (r_max + the largest sum of ranks on one
 * projection; plus max(C, Datt, I) with LoRA dropout), the adapters' down
 * products x A^T kept for the backward (the sum of a layer's ranks, per
 * layer, or for one layer with checkpointing: 112 floats per token and
 * layer for r 16 all-linear) and R x (C + V) floats for the loss head:
 * R = min(T, 256) rows, or for a float32 or bf16 head with V >= ICL_GEMM_LONG
 * (ops.h) without checkpointing as many multiples of them as 256 MiB of
 * logits hold, at most B T (SmolLM2 at 8 x 256: 1280 rows, 252 MB);
 * nothing of size [B, T, V] unless asked for logits.
 *
 * Gradient checkpointing (icl_model_set_gradient_checkpointing; as
 * transformers' gradient_checkpointing_enable, Chen et al. 2016, "Training
 * Deep Nets with Sublinear Memory Cost"): the forward keeps only each
 * layer's input; the backward recomputes a layer's activations from it,
 * layer by layer from the top (the top layer's are still there from the
 * forward), with the same code on the same inputs, so losses, gradients
 * and trained weights are bit-identical with and without it (same thread
 * count).  Cost: one more forward of every layer but the top one, without
 * its down projection: about a third more FLOPs for a full fine-tune
 * (forward 2, backward 4 per weight and token), about a half with a frozen
 * base (its backward has no weight-gradient products).
 *
 * Threads: set once with icl_set_threads (BLIS and OpenMP share the count).
 * Results are bit-identical for the same inputs and thread count.
 * Not thread-safe: one forward/backward at a time per model.
 */
#ifndef ICL_MODEL_H
#define ICL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "linear.h"

typedef struct {
    char name[128];      /* HF name, e.g. "model.layers.0.self_attn.q_proj.weight" */
    int ndim;
    int64_t shape[2];    /* as stored by HF: Linear [out, in], Conv1D [in, out] */
    size_t offset;       /* in floats, into its set's params / grads / m / v */
    size_t numel;
} icl_param_view;

/* A set of parameters with its own flat buffers (see the top of this file). */
typedef struct {
    char name[32];        /* "base", "lora", ... */
    size_t num_params;
    int n_views;
    icl_param_view *views;
    float *params;        /* [num_params], owned */
    float *grads;         /* [num_params] or NULL (never allocated while frozen) */
    float *m, *v;         /* AdamW moments or NULL (likewise) */
    int trainable;        /* 0: frozen */
} icl_param_set;

/* Projections of a block that carry adapters (q|k|v is one fused product). */
enum { ICL_PROJ_QKV, ICL_PROJ_O, ICL_PROJ_UP, ICL_PROJ_DOWN, ICL_NPROJ };
typedef struct {
    icl_lora *lora[ICL_NPROJ]; /* arrays of n[p] adapters (owned), views into a set */
    int n[ICL_NPROJ];
} icl_layer_lora;

/* Offsets (floats into params/grads) of one block's tensors; SIZE_MAX = absent.
 * Llama: qkv_w is q_proj|k_proj|v_proj stacked ([(H+2KV)*hd, C], adjacent
 * views), up_w is gate_proj|up_proj stacked ([2I, C]).  GPT-2: qkv_w is
 * c_attn [C, 3C], up_w c_fc [C, I], down_w mlp.c_proj [I, C] (Conv1D). */
typedef struct {
    size_t ln1_w, ln1_b, qkv_w, qkv_b, o_w, o_b, ln2_w, ln2_b, up_w, up_b, down_w, down_b;
} icl_layer_offsets;

typedef struct icl_acts icl_acts;

/* Which products of a model keep quantized GGUF blocks (QLoRA: a frozen base
 * in Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K... dequantized tile by tile inside
 * the matrix products, see qlinear.h): a ggml type id per product, 0 =
 * float32 in the base set.  A fused product (Llama's q|k|v, gate|up) is one
 * entry: all its parts share the type. */
typedef struct {
    int embed;  /* token embedding [V, C] (also the LM head when tied) */
    int head;   /* untied LM head [V, C] (ignored when tied) */
    int *proj;  /* [num_hidden_layers * ICL_NPROJ]: layer l's product p at l * ICL_NPROJ + p; NULL: none */
} icl_qlayout;

typedef struct {
    icl_config cfg;
    icl_param_set base;   /* the model's weights, HF names */
    int n_sets;
    icl_param_set **sets; /* [n_sets] further sets (adapters), owned */
    icl_layer_offsets *layer;          /* [num_hidden_layers], offsets into base */
    icl_layer_lora *lora;              /* [num_hidden_layers] or NULL: no adapters */
    icl_param_set *lora_set;           /* the set holding them (one of sets), or NULL */
    size_t embed, pos_embed, normf_w, normf_b, lm_head; /* lm_head == embed when tied */
    char *src_dir;        /* folder loaded from (tokenizer files are copied from it), or NULL */
    /* Quantized base (icl_model_new_quantized): the products kept in GGUF
     * blocks are ICL_WEIGHT_QBLOCK weights whose data point into qdata (owned,
     * qbytes bytes); their tensors are NOT views of base (their offsets in
     * layer[] / embed / lm_head are SIZE_MAX).  NULL / data NULL: float32. */
    icl_weight *qproj;    /* [num_hidden_layers * ICL_NPROJ] or NULL */
    icl_weight qembed, qhead; /* token embedding, LM head (a copy of qembed when tied) */
    void *qdata;
    size_t qbytes;
    icl_acts *acts;       /* activations of the last forward (internal) */
    int gradient_checkpointing; /* icl_model_set_gradient_checkpointing */
    float lora_dropout;   /* icl_model_set_lora_dropout (0: none) */
    uint64_t dropout_key; /* icl_model_set_dropout_key */
    char err[256];        /* why the last icl_model_forward returned NAN */
    struct icl_model_bf16 *bf16; /* NULL, or the products' packed bfloat16 weights (icl_model_set_bf16) */
} icl_model;

/* A batch of B sequences of T positions (row-major [B, T] arrays).
 *   ids     token ids, each in [0, vocab_size).
 *   target  1 where the token belongs to a target (response) segment, else 0;
 *           NULL: every token is a target.  Position t is trained to predict
 *           token t+1 when target[t+1] and (doc NULL or doc[t+1] == doc[t]).
 *           The loss is the sum of -log p over those positions.
 *   doc     document id per position, or NULL (one document per row).
 *           Query t attends key s iff s <= t and doc[s] == doc[t], so packed
 *           examples never see each other.  Mark padding with its own id
 *           (e.g. -1) and target 0: it never affects real positions.
 *   pos     position ids (RoPE angle / GPT-2 wpe row), or NULL for 0..T-1.
 *           With packing, restart at 0 at each document.  GPT-2 needs
 *           pos < n_positions.
 *   weight  NULL: every target weighs 1.  Else [B, T], indexed like target:
 *           the loss of position t is weight[t+1] * -log p(ids[t+1]), and
 *           the loss (and its gradient) is the weighted sum.  A trainer
 *           averaging per example puts 1 / (the example's target count) at
 *           each of its target positions (icl_batchbuf_weigh_examples). */
typedef struct {
    int B, T;
    const int32_t *ids;
    const uint8_t *target;
    const int32_t *doc;
    const int32_t *pos;
    const float *weight;
} icl_batch;

/* The bf16 compute path (`--dtype bf16`, inference and training): rounds
 * the weights of the matrix products (each layer's fused q|k|v, o, gate|up
 * and down projections and the LM head, the tied embedding included;
 * GPT-2's Conv1D ones too) to bfloat16, packed for vdpbf16ps
 * (icl_bf16_pack in lib/bf16.h: W^T for the forward, and W for the input
 * gradient once a backward needs it), into m->bf16.  From then on every
 * product of those weights takes activations (and, in the backward,
 * output gradients) rounded to bf16 with float32 sums (AVX512-BF16 when
 * the CPU has it, else a slower portable path with the same roundings):
 * forward y = x W^T, input gradient dx = dy W, weight gradient dW += dy^T x
 * (into the float32 gradient of the float32 master weight).  Embeddings,
 * norms, biases, attention, the softmax and the loss stay float32;
 * adapters (LoRA's A and B and their gradients) stay float32, but when
 * they are attached before this call each adapted product's packs keep
 * room for them and their up products join the base's (linear.h:
 * icl_linear_forward; xa, s B, t and A rounded to bf16 there); products
 * kept in quantized blocks (QLoRA) stay in
 * them and run as ICL_WEIGHT_QBLOCK_BF16 (qlinear.h: panels dequantized
 * straight to packed bf16 inside each product, no copy; the bits of the
 * dequantized model under this call).  The bf16 weights are a snapshot of the float32 ones: after
 * changing those (an optimizer step) call icl_model_bf16_sync.
 * Idempotent; 0 ok, -1 with err when memory for the packed weights cannot
 * be had. */
int icl_model_set_bf16(icl_model *m, char *err, size_t errsz);
/* After the float32 weights of a trainable base changed (each optimizer
 * step, trainer.h does it): rounds and packs them again into m->bf16.
 * Nothing when m has no bf16 weights or its base is frozen (a frozen
 * LoRA base is rounded once).  0 ok, -1 with err (memory). */
int icl_model_bf16_sync(icl_model *m, char *err, size_t errsz);

/* Load an HF model folder: config.json and model.safetensors (F32, BF16 or
 * F16), or the shards named by model.safetensors.index.json.  dir may also
 * be a GGUF file (icl_model_load_gguf in gguf_model.h: dequantized to float32).  Weights named as HF does; a tied model may omit lm_head.weight.
 * NULL with a message in err on any problem (missing/misshapen tensor,
 * hostile file, bad config; a regular file that is not GGUF); the message
 * starts with the file it is about. */
icl_model *icl_model_load(const char *dir, char *err, size_t errsz);
/* A model with zeroed parameters for cfg (copied; cfg->raw is deep-copied). */
icl_model *icl_model_new(const icl_config *cfg);
/* A model with zeroed float32 parameters for cfg whose products named by q
 * keep quantized blocks instead (see icl_qlayout): their tensors are left
 * out of the base set, and m->qdata (uninitialised, qbytes bytes) holds, for
 * each such product in the order embedding, layers 0.. (products q|k|v, o,
 * gate|up or c_fc, down), head, its out rows of in / blck blocks in ggml's
 * layout (Llama's fused q|k|v: the q_proj rows, then k_proj, then v_proj in
 * HF's order; gate|up likewise), each product at a multiple of 64 bytes;
 * m->qproj[l * ICL_NPROJ + p].data / m->qembed.data / m->qhead.data point
 * at them.  The caller fills the blocks (icl_model_load_gguf_quantized).
 * Such a model's base is frozen (icl_model_freeze_base is applied), and
 * icl_model_save refuses it.  NULL with err when a type is not a quantized
 * block type icl computes with or rows are not whole blocks
 * (icl_qblock_check in qlinear.h). */
icl_model *icl_model_new_quantized(const icl_config *cfg, const icl_qlayout *q, char *err, size_t errsz);
/* Count and bytes of the quantized products of m (embedding and head
 * counted once when tied), and a summary such as "211 matrices in
 * quantized blocks (Q4_1 x 210, Q8_0 x 1), 97.9 MB" into buf (may be NULL).
 * Returns the count (0: a float32 model). */
int icl_model_qsummary(const icl_model *m, char *buf, size_t bufsz);
/* Random initialisation as HF's _init_weights (pass std = initializer_range):
 * matrices ~ N(0, std) (std 0.02 if <= 0), GPT-2's c_proj weights
 * N(0, std / sqrt(2 n_layer)), norm weights 1, biases 0, the Llama pad_token_id
 * embedding row 0; deterministic in seed. */
void icl_model_init_random(icl_model *m, uint64_t seed, float std);
/* Free the model, its buffers and activations (NULL ok). */
void icl_model_free(icl_model *m);

/* Save to dir (created with its parents if absent) as HF does: config.json, model.safetensors
 * (F32, tied embeddings stored once), generation_config.json (from the
 * source folder if it had one, else made from the config), and copies of the
 * tokenizer files of the source folder (tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, vocab.json, merges.txt, tokenizer.model,
 * added_tokens.json, chat_template.jinja: transformers >= 4.43 keeps the chat
 * template there, over tokenizer_config.json's).  Every
 * file is written atomically.  0 ok, -1 with err (also for a model with
 * quantized products, icl_model_new_quantized: not written from here). */
int icl_model_save(const icl_model *m, const char *dir, char *err, size_t errsz);

/* Write a buffer laid out as the base set's params (params, grads, m or v:
 * base.num_params floats) to a safetensors file with the views' HF names and
 * shapes, atomically.  0 ok, -1 with err. */
int icl_model_write_tensors(const icl_model *m, const float *buf, const char *path, char *err, size_t errsz);
/* Read such a file back into buf (base.num_params floats): every view must
 * be present with its shape (F32/BF16/F16).  0 ok, -1 with err. */
int icl_model_read_tensors(const icl_model *m, float *buf, const char *path, char *err, size_t errsz);

/* Allocate (zeroed) the gradient / moment buffers of every trainable set;
 * idempotent; a frozen set gets none. */
void icl_model_alloc_grads(icl_model *m);
void icl_model_alloc_moments(icl_model *m);
/* Set every gradient of the trainable sets to 0 (allocates them if needed). */
void icl_model_zero_grads(icl_model *m);
/* View of the base set by HF name, or NULL. */
const icl_param_view *icl_model_view(const icl_model *m, const char *name);
/* View by name in a set, or NULL. */
const icl_param_view *icl_param_set_view(const icl_param_set *s, const char *name);

/* Freeze the base set: its grads, m and v are freed and never allocated
 * again; backward computes no weight gradient of the base (input gradients
 * still flow to the adapters).  Idempotent. */
void icl_model_freeze_base(icl_model *m);
/* The trainable sets, base first when it is trainable: writes up to max
 * pointers to out and returns how many there are. */
int icl_model_trainable(icl_model *m, icl_param_set **out, int max);

/* Add a trainable set "lora" of low-rank adapters (linear.h) on the
 * projections named by targets (PEFT's target_modules, matched as PEFT
 * does: a module's name, or its end after a dot: q_proj k_proj v_proj
 * o_proj gate_proj up_proj down_proj for Llama/Qwen2; c_attn c_proj c_fc
 * for GPT-2, c_proj meaning both attn.c_proj and mlp.c_proj; or one
 * module, model.layers.0.self_attn.q_proj), rank r, scale
 * alpha / r.  Views are PEFT's names:
 *   base_model.model.<module>.lora_A.weight [r, in]
 *   base_model.model.<module>.lora_B.weight [out, r]
 * initialised as PEFT does (A ~ U(-1/sqrt(in), 1/sqrt(in)), i.e.
 * kaiming_uniform with a = sqrt(5); B = 0), deterministic in seed.
 * Returns the set (owned by m), or NULL with err (a target that names no
 * projection, r < 1, adapters already present). */
icl_param_set *icl_model_add_lora(icl_model *m, const char *const *targets, int n_targets, int r, float alpha,
                                  uint64_t seed, char *err, size_t errsz);
/* As icl_model_add_lora, with a rank per target: a module's rank is
 * ranks[t] of the first target t that selects it, its scale 1, A as with
 * seed 0.  For adapters applied unmerged (icl_lora_apply): targets are
 * whole module names, each with the ranks of the adapters on it, so that
 * no module carries another's rank.  NULL with err as icl_model_add_lora
 * (a rank below 1). */
icl_param_set *icl_model_add_lora_ranked(icl_model *m, const char *const *targets, const int *ranks, int n_targets,
                                         char *err, size_t errsz);

/* The modules of a model of configuration c that a LoRA target can select,
 * as PEFT names them without its "base_model.model." prefix: each layer's
 * block projections in HF's order (those icl_model_add_lora adapts, e.g.
 * model.layers.3.self_attn.q_proj, transformer.h.0.mlp.c_fc), then the
 * embeddings (model.embed_tokens; GPT-2: transformer.wte, transformer.wpe)
 * and lm_head (listed even when tied to the embeddings).  Returns a
 * malloc'd array of *n malloc'd strings (the caller frees each, then the
 * array). */
char **icl_config_modules(const icl_config *c, int *n);

/* Gradient checkpointing on (nonzero) or off (0) from the next forward on
 * (see the top of this file: the forward keeps only each layer's input,
 * the backward recomputes the rest).  Results do not change, bit for bit. */
void icl_model_set_gradient_checkpointing(icl_model *m, int on);

/* LoRA dropout (PEFT's lora_dropout): in training forwards (loss_scale != 0)
 * and their backward, each adapter's input is x * keep / (1 - p), the base
 * product still sees x: y = x W^T + b + scale B A (dropout(x)).  Evaluation
 * (loss_scale 0), icl_model_decode and icl_model_step never drop.  The
 * masks are a function of the key (icl_model_set_dropout_key), the adapter
 * (layer, projection, index) and the element (row of the batch, column), so
 * the backward, a recomputation under gradient checkpointing and a resumed
 * run see the same ones; p 0 gives results bit-identical to no dropout.
 * 0 ok; -1 with err when p is not in [0, 1). */
int icl_model_set_lora_dropout(icl_model *m, float p, char *err, size_t errsz);
/* The key of the dropout masks of the next training forwards (their
 * backward uses its forward's); a trainer gives each micro-batch its own
 * (trainer.h). */
void icl_model_set_dropout_key(icl_model *m, uint64_t key);

/* Check a batch against the model (ids in range, positions in range, sizes).
 * 0 ok, -1 with err.  icl_model_forward returns NAN on a batch this rejects. */
int icl_batch_validate(const icl_model *m, const icl_batch *b, char *err, size_t errsz);

/* Forward pass over the batch.
 * logits: if not NULL, receives all logits [B, T, V] (row-major).
 * loss_scale: if != 0, the backward of the loss head is fused in: d(loss sum
 *   * loss_scale) is accumulated into the head's gradient and kept for
 *   icl_model_backward, which must follow with the same batch.  For a mean
 *   over an optimizer step, pass 1 / (target tokens in the whole step).
 * Returns the SUM over target positions of -log p(next token), each times
 * its weight when b->weight is set (0 when there are none; never NaN from
 * empty rows); *n_targets (if not NULL) gets their count (unweighted).  A batch icl_batch_validate rejects: NAN, the message in m->err.  Only target rows of the [T, V] logits are computed when logits is
 * NULL, in chunks of R rows ("Memory" above; never a [B, T, V] tensor). */
double icl_model_forward(icl_model *m, const icl_batch *b, float *logits, float loss_scale, long *n_targets);
/* Per-position losses of the last forward: loss[B*T] gets -log p(ids[t+1])
 * (unweighted) at each target position t (see icl_batch) and 0 elsewhere, so an evaluator
 * can sum per example.  Call after a successful icl_model_forward, before
 * the next one.  0 ok, -1 with err when there was none. */
int icl_model_token_losses(const icl_model *m, float *loss, char *err, size_t errsz);
/* Backward through the whole model after icl_model_forward(..., loss_scale != 0)
 * on the same batch: ACCUMULATES into the gradients of the trainable sets
 * (allocates them if needed).  0 ok, -1 with err when no such forward
 * preceded it. */
int icl_model_backward(icl_model *m, const icl_batch *b, char *err, size_t errsz);

/* Gradient readiness during a backward (for overlapping a data-parallel
 * all-reduce with the rest of it).  The backward goes from the top down:
 * STAGES, in the order they become final, are
 *   L = num_hidden_layers   the final norm and the LM head (untied),
 *   L-1, ..., 0             block l (its norms, projections, biases and
 *                           its adapters),
 *   -1                      the embeddings (token; GPT-2's positions too;
 *                           with tied embeddings also the LM head).
 * Each stage owns one contiguous range of each set's flat buffers
 * (icl_model_grad_range); the ranges of stages L..-1 partition [0,
 * num_params) of every set.  Called as ready(ctx, m, stage) for every stage
 * from L down to -1 exactly once, in that order: when it is called with
 * stage s, the gradients of stage s and of every stage above it are final
 * for this backward (nothing of this backward writes them again), in every
 * set that has gradients.  Stages with nothing to compute (blocks below the
 * lowest adapter of a frozen base, the embeddings of a frozen base) are
 * called right after the lowest one that had; with gradient checkpointing
 * block l's call comes after its recomputation and its backward.  Called
 * from the calling thread, between the parallel regions. */
typedef void (*icl_grads_ready_fn)(void *ctx, const icl_model *m, int stage);

/* icl_model_backward, calling ready (if not NULL) as above; with ready NULL
 * it is icl_model_backward.  Gradients are bit-identical either way. */
int icl_model_backward_notify(icl_model *m, const icl_batch *b, icl_grads_ready_fn ready, void *ctx, char *err,
                              size_t errsz);

/* The range [*begin, *end) (floats into s's params / grads) that stage
 * (see icl_grads_ready_fn: -1 .. num_hidden_layers) owns in set s, which
 * is m->base or one of m->sets; empty (*begin == *end) where the stage has
 * no tensor of s.  Base: -1 everything before block 0 (embeddings), l block
 * l's tensors, L everything after block L-1 (final norm, untied LM head).
 * The LoRA set (m->lora_set): l the adapters of block l, -1 and L empty.
 * Another set: all of it at -1.  A stage out of range: empty at 0. */
void icl_model_grad_range(const icl_model *m, const icl_param_set *s, int stage, size_t *begin, size_t *end);

/* KV cache of one sequence, layout [layer, kv_head, pos, head_dim] for k and v. */
typedef struct {
    int n_layer, n_kv, hd, max_pos;
    int len;       /* positions filled */
    float *k, *v;  /* [n_layer, n_kv, max_pos, hd] each */
} icl_kv_cache;
/* A zeroed cache for up to max_pos positions (at least 1; for GPT-2 at most
 * n_positions): 2 * n_layer * n_kv * max_pos * head_dim floats, owned by the
 * caller; dies if memory runs out.  Free with icl_kv_cache_free (NULL ok);
 * icl_kv_cache_reset empties it for a new sequence. */
icl_kv_cache *icl_kv_cache_new(const icl_model *m, int max_pos);
void icl_kv_cache_free(icl_kv_cache *c);
static inline void icl_kv_cache_reset(icl_kv_cache *c) { c->len = 0; }
/* Keep the first len positions of c (0 <= len <= c->len) and forget the
 * others: the next icl_model_decode or icl_model_step writes position len,
 * which is how a caller reuses the cache of a prompt for a longer one that
 * starts with the same ids (the keys and values of a position depend only
 * on the ids up to it).  Nothing is freed or moved (c->max_pos unchanged).
 * 0 ok; -1 with err (c unchanged) if len is negative or above c->len. */
int icl_kv_cache_truncate(icl_kv_cache *c, int len, char *err, size_t errsz);
/* Make room for at least max_pos positions (for GPT-2 at most n_positions,
 * as icl_kv_cache_new): when c->max_pos is smaller, k and v are reallocated
 * to [n_layer, n_kv, max_pos, hd] with the c->len filled positions of each
 * (layer, head) copied, and c->max_pos set; else nothing changes.  The
 * cache stays the caller's; dies if memory runs out. */
void icl_kv_cache_reserve(icl_kv_cache *c, const icl_model *m, int max_pos);
/* Feed n tokens at positions c->len .. c->len+n-1 (prefill when n > 1),
 * append their keys/values, advance c->len.  logits gets [n, V] when
 * all_logits, else the last token's [V].  Linear maps run on BLIS
 * (ICL_LIN_GEMM).  0 ok; -1 (err) if the cache is full, an id is out of
 * range, or a GPT-2 position passes n_positions. */
int icl_model_decode(icl_model *m, icl_kv_cache *c, const int32_t *ids, int n, float *logits, int all_logits,
                     char *err, size_t errsz);

/* One decode step for B sequences.  Sequence b feeds ids[b] at position
 * caches[b]->len (its own length), appends its keys/values and advances
 * caches[b]->len; logits [B, V] (row-major) receive the next-token logits.
 * The same layer as icl_model_decode, with the linear maps on the
 * small-batch kernel (ICL_LIN_ROWS: each weight matrix read once per step
 * for the whole batch, a row's arithmetic independent of B) and one query
 * per (sequence, head) against its cache (softmax(q k^T / sqrt(hd)) v, max
 * subtracted, as HF eager attention).  Agrees with icl_model_decode to
 * float32 rounding (about 1e-6 relative).  Only the matrix products (and a
 * long attention) use the thread team.  Returns 0, or -1 with err if a
 * cache is full, an id is out of range, or a GPT-2 position reaches
 * n_positions; then no cache is changed. */
int icl_model_step(icl_model *m, icl_kv_cache *const *caches, const int32_t *ids, int B, float *logits, char *err,
                   size_t errsz);

#endif
