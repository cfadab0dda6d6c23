/* lora.h - LoRA adapters in PEFT's format: configuration, adapter folders,
 * attaching to a model, merging into the base weights.
 *
 * An adapter folder is what PEFT's save_pretrained writes (PEFT 0.13 keys):
 *   adapter_config.json        {"peft_type": "LORA", "task_type": "CAUSAL_LM",
 *                               "base_model_name_or_path", "r", "lora_alpha",
 *                               "lora_dropout", "target_modules" [...],
 *                               "use_rslora", "fan_in_fan_out", "bias": "none", ...}
 *   adapter_model.safetensors  F32 tensors
 *       base_model.model.<module>.lora_A.weight  [r, in]
 *       base_model.model.<module>.lora_B.weight  [out, r]
 *     <module> as HF names it, e.g. model.layers.0.self_attn.q_proj or
 *     transformer.h.0.attn.c_attn (GPT-2's Conv1D: in/out are the logical
 *     sizes, PEFT's fan_in_fan_out).
 * Scale (PEFT's "scaling"): lora_alpha / r, or lora_alpha / sqrt(r) with
 * use_rslora (Kalajdzievski 2023, rsLoRA).
 * Supported: plain LoRA (no DoRA, no rank_pattern/alpha_pattern, bias
 * "none", no modules_to_save, no layers_to_transform, no exclude_modules,
 * no alora_invocation_tokens); any other setting is refused by name, as
 * are use_rslora / use_dora that are not booleans and a lora_dropout that
 * is not a number.
 */
#ifndef ICL_LORA_H
#define ICL_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "safetensors.h"

typedef struct {
    int r;                       /* rank */
    double lora_alpha;
    double lora_dropout;         /* probability, [0, 1) */
    int use_rslora;
    int n_targets;
    char **target_modules;       /* [n_targets] owned: last name components (q_proj, c_attn, ...) */
    char *base_model_name_or_path; /* owned, may be NULL */
} icl_lora_config;

/* PEFT's scaling: alpha / r, or alpha / sqrt(r) with use_rslora. */
double icl_lora_scale(const icl_lora_config *c);

/* Set c->target_modules from a comma-separated list of module names, or
 * "all-linear" (PEFT: every linear of the blocks, not the LM head: q_proj
 * k_proj v_proj o_proj gate_proj up_proj down_proj for Llama/Qwen2; c_attn
 * c_proj c_fc for GPT-2), or NULL for PEFT's default of the architecture
 * (q_proj v_proj; GPT-2 c_attn).  Names are checked against the model's
 * projections when the adapter is attached.  0 ok, -1 with err (an empty
 * name). */
int icl_lora_set_targets(icl_lora_config *c, const icl_config *mc, const char *spec, char *err, size_t errsz);

/* Free the owned members (the struct itself is the caller's). */
void icl_lora_config_free(icl_lora_config *c);

/* Parse the text of an adapter_config.json (len bytes; path names it in
 * messages) as icl_lora_read_config does.  0 ok, -1 with err. */
int icl_lora_parse_config(const char *text, size_t len, const char *path, icl_lora_config *c, char *err,
                          size_t errsz);
/* c as adapter_config.json text (PEFT 0.13.2's LoraConfig keys, sorted as
 * its save_pretrained writes them, newline-terminated; fan_in_fan_out as
 * given: PEFT sets it for GPT-2's Conv1D).  malloc'd. */
char *icl_lora_config_json(const icl_lora_config *c, int fan_in_fan_out);

/* Read DIR/adapter_config.json (PEFT's).  0 ok, -1 with err naming the file
 * (unreadable, not JSON, peft_type not LORA, an unsupported setting), or
 * naming DIR when it has none ("DIR: not a LoRA adapter folder (no
 * adapter_config.json)", "DIR: no such adapter folder ..."). */
int icl_lora_read_config(const char *dir, icl_lora_config *c, char *err, size_t errsz);

/* Freeze the base of m and add the trainable set "lora" of c's adapters
 * (icl_model_add_lora, A Kaiming-uniform as PEFT, B = 0, deterministic in
 * seed) with scale icl_lora_scale(c) and dropout c->lora_dropout
 * (icl_model_set_lora_dropout: training forwards only).  Returns the set
 * (owned by m) or NULL with err. */
icl_param_set *icl_lora_attach(icl_model *m, const icl_lora_config *c, uint64_t seed, char *err, size_t errsz);
/* As icl_lora_attach, for an adapter_config.json read from a PEFT adapter
 * (icl-train --adapter): as PEFT's inject_adapter, a target_modules name
 * that selects none of the modules icl_config_modules lists is left out
 * (PEFT would refuse one that selects another module, "mlp", say), and
 * only targets that together select none are an error ("target_modules
 * [...] select no module of this llama model").  c is unchanged (a saved
 * adapter_config.json keeps every name). */
icl_param_set *icl_lora_attach_peft(icl_model *m, const icl_lora_config *c, uint64_t seed, char *err, size_t errsz);

/* Largest update an adapter may make, refused above it wherever an
 * adapter is read: |scale| r max|A| max|B|, a bound of every |scale (B
 * A)[o, i]|.  A layer's output sums up to ~1e4 inputs of activations up to
 * ~1e3 (a trained model's are far smaller); with weights of 1e12 that is
 * beyond 1e19, whose square overflows float32 in the next RMSNorm (icl's as
 * Hugging Face's: its rstd becomes 0), and the outputs turn to NaN or
 * uniform logits.  Trained adapters' bounds are below 1e2. */
#define ICL_LORA_MAX_UPDATE 1e12

/* max |v[j]| over v[0..n), or INFINITY when one is NaN or infinite. */
double icl_lora_max_abs(const float *v, size_t n);

/* Read the adapter weights of m's "lora" set from path (an
 * adapter_model.safetensors, or a folder holding one): every view of the
 * set must be there with its shape (F32/BF16/F16), and nothing else.
 * Their values must be finite, and each adapter's updates within
 * ICL_LORA_MAX_UPDATE at its scale (as icl_lora_merge checks).  Adapters
 * laid out for the products (icl_lora_pack) are laid out again, also after
 * a failure that wrote part of the set.  0 ok, -1 with err naming the file
 * and tensor (the set then holds what was read). */
int icl_lora_load_weights(icl_model *m, const char *path, char *err, size_t errsz);

/* Write m's "lora" set as a PEFT adapter folder: dir (created with its
 * parents) receives adapter_config.json (c's values, PEFT 0.13's keys,
 * fan_in_fan_out true for GPT-2 as PEFT sets it for Conv1D) and
 * adapter_model.safetensors (F32), each atomically.  0 ok, -1 with err. */
int icl_lora_save(const icl_model *m, const icl_lora_config *c, const char *dir, char *err, size_t errsz);

/* Check that the tensors of an adapter file f (path names it in messages)
 * are the ones its configuration c selects in a model of configuration mc,
 * as PEFT loads them: PEFT attaches adapters only to the modules
 * target_modules selects (a module whose path equals a target or ends in
 * "." target; "all-linear" as icl_lora_set_targets) and would not load a
 * tensor of any other module into anything; and a selected module whose
 * tensors are missing would keep its fresh initialisation.  Call after the
 * tensors have been paired (every name PREFIX<module>.lora_A.weight or
 * .lora_B.weight).  0 ok; -1 with err naming the first tensor that no
 * target selects, or the first lora_A/lora_B tensor missing for a selected
 * module of mc (icl_config_modules), and target_modules either way.  A
 * target that selects no module of the model is not an error (PEFT's
 * generic lists name the projections of several architectures). */
int icl_lora_check_targets(const icl_lora_config *c, const icl_config *mc, const icl_st_file *f, const char *path,
                           char *err, size_t errsz);
/* icl_lora_check_targets on the adapter folder dir (its
 * adapter_config.json and adapter_model.safetensors), and every lora_A
 * [r, in] and lora_B [out, r] of the config's r: 0, or -1 with err (those
 * checks, or a file that does not read). */
int icl_lora_check_dir(const char *dir, const icl_config *mc, char *err, size_t errsz);

/* Open DIR/adapter_model.safetensors (icl_st_open; the caller closes).
 * NULL with err naming the file; a folder holding adapter_model.bin
 * instead says that PyTorch pickles are not read. */
icl_st_file *icl_lora_open_weights(const char *dir, char *err, size_t errsz);

/* What an adapter file's tensor name is, as PEFT names them:
 * "base_model.model.<module>.lora_A.weight" gives 1 with *mod, *modlen the
 * module (inside name), a name ending ".lora_B.weight" gives 2 (its pairing
 * is the caller's), else -1 with err naming path: a name over 200 bytes of
 * module, a tensor that is not lora_A/lora_B, a lora_A without the prefix
 * or a module. */
int icl_lora_tensor_kind(const char *path, const char *name, const char **mod, size_t *modlen, char *err,
                         size_t errsz);

/* Merge the adapter folder dir into m's base weights as PEFT's
 * merge_and_unload: W += (mult * scaling) * (B A) per adapted module
 * (Conv1D: W^T += ...), B A summed in float32 over r in order.  mult is
 * the user's weight of this adapter (1: PEFT's merge; as llama.cpp's
 * export-lora --lora-scaled).  Several adapters: call once per adapter.
 * 0 ok; -1 with err (a tensor that is not a lora_A/lora_B pair of a base
 * weight, wrong shapes, a config problem, tensors that target_modules does
 * not select or selected modules without tensors: icl_lora_check_targets),
 * m unchanged then. */
int icl_lora_merge(icl_model *m, const char *dir, double mult, char *err, size_t errsz);

/* Write the adapter folder dir as a llama.cpp LoRA adapter GGUF at path
 * (what llama.cpp's convert_lora_to_gguf.py writes and llama-adapter.cpp
 * loads with --lora), atomically:
 *   keys: general.architecture (the base's model_type), general.type
 *     "adapter", general.name "icl", adapter.type "lora", adapter.lora.alpha
 *     (f32: lora_alpha, times sqrt(r) with use_rslora, since llama.cpp
 *     scales by alpha / r), general.file_type, the base's ARCH.* keys
 *     (icl_gguf_set_hparams);
 *   tensors, per adapted module, the GGUF name of its weight W
 *     (icl_gguf_map_hf, e.g. blk.0.attn_q.weight) plus
 *     ".lora_a": PEFT's lora_A [r, in], ne {in, r};
 *     ".lora_b": PEFT's lora_B [out, r], ne {r, out}, its rows permuted as
 *       llama.cpp permutes attn_q/attn_k rows (llama only:
 *       icl_gguf_permute_rows with n_head / n_head_kv), so that
 *       B_gguf A = (B A) in GGUF's row order;
 *     (gpt2's Conv1D modules: in/out the logical sizes, no transpose), in
 *     layer order.
 * base: the base model (folder or GGUF file) giving the architecture, the
 * head counts and the shapes the tensors must fit; NULL: the adapter's
 * base_model_name_or_path (icl_lora_base_path).  type: ICL_GGML_F32,
 * F16, BF16 or Q8_0 (convert_lora_to_gguf.py's --outtype choices; a tensor
 * whose rows are not whole Q8_0 blocks stays F32).
 * -1 with err: no base, a bad adapter (icl_lora_merge's checks), a module
 * llama.cpp's GGUF lacks (lm_head of a base with tied embeddings, a name
 * not in the architecture's table), an embedding adapter, lora_alpha 0
 * (llama.cpp reads it as scale 1), a tensor holding values that are not
 * finite.  Nothing is written then. */
int icl_lora_save_gguf(const char *dir, const char *base, const char *path, uint32_t type, char *err,
                       size_t errsz);

/* Split "DIR[:SCALE]" (SCALE a number, the last ':' when what follows
 * parses as one) into a malloc'd folder and *scale (1 when absent).
 * NULL with err when SCALE is not finite, or when what follows the last
 * ':' is not a number while what precedes it exists and the whole spec
 * does not (a mistyped scale, not a folder named "DIR:abc"). */
char *icl_lora_parse_spec(const char *spec, double *scale, char *err, size_t errsz);

/* The base model of an adapter folder: its base_model_name_or_path as
 * given when that exists (absolute, or relative to the current folder),
 * else a relative one relative to dir (an adapter shipped beside its
 * base); malloc'd, or NULL with err (no adapter_config.json, no base named,
 * base not found: the message names DIR/adapter_config.json and the paths
 * tried).  icl-train writes the base's absolute path (icl_path_abs). */
char *icl_lora_base_path(const char *dir, char *err, size_t errsz);

/* Apply n adapter folders dirs[i] with weights mults[i] to m UNMERGED, as
 * low-rank adapters in its linear maps (linear.h) rather than added into
 * its weights: what a base whose matrices stay in quantized blocks
 * (icl_model_load_gguf_quantized) needs.  The result is the merge's
 * W + sum_i mults[i] scaling_i B_i A_i (icl_lora_merge's semantics,
 * scaling_i icl_lora_scale of adapter i) computed as
 * x W^T + (x A^T) B^T with one combined adapter per module of rank
 * R = sum r_i over the adapters i on that module: A = [A_1; A_2; ...]
 * [R, in] and B = [mults[1] scaling_1 B_1 | ...] [out, R], scale 1.  The
 * adapters go into m's set "lora" (icl_model_add_lora_ranked; frozen:
 * trainable 0) on the modules the files name, each laid out once for the
 * products (icl_lora_pack: about twice the adapters' memory); whoever
 * writes their A or B afterwards must lay them out again
 * (icl_lora_load_weights does).
 * n 0: nothing.  0 ok; -1 with err naming the file (icl_lora_merge's checks
 * on the tensors, icl_lora_check_targets included, and its refusal of
 * values that are not finite or of updates |s B A| beyond 1e30; a module
 * that is not a projection of the blocks, e.g.
 * lm_head or embed_tokens, which only merging into float32 weights applies;
 * m has adapters already): m is then half-built, free it. */
int icl_lora_apply(icl_model *m, const char *const *dirs, const double *mults, int n, char *err, size_t errsz);

/* icl_lora_load flags. */
enum {
    ICL_LOAD_DEQUANTIZE = 1 /* a GGUF is loaded as float32 (icl_model_load) and adapters are merged */
};

/* The model of -m MODEL --adapter SPEC... (icl-gen, icl-eval): MODEL is a
 * model folder or GGUF file, or an adapter folder (adapter_config.json and
 * no config.json), which then stands for its base (icl_lora_base_path) plus
 * itself as the first adapter at scale 1.  Each SPEC is "DIR[:SCALE]"
 * (icl_lora_parse_spec).  A GGUF base without ICL_LOAD_DEQUANTIZE in flags
 * keeps its quantized matrices in their blocks
 * (icl_model_load_gguf_quantized: batched products dequantize tile by tile,
 * decode steps use integer dot products, qlinear.h) and the adapters are
 * applied unmerged (icl_lora_apply); a folder, a GGUF with
 * ICL_LOAD_DEQUANTIZE, or a GGUF with no matrix in a quantized block type
 * gives a float32 model into which the adapters are merged in order
 * (icl_lora_merge).  Which it was: m->qdata non-NULL when blocks were kept
 * (icl_model_qsummary), m->lora non-NULL when adapters are unmerged.
 * *base gets the model folder or file actually loaded (malloc'd; its
 * tokenizer and generation config are the model's).  NULL with err naming
 * the file. */
icl_model *icl_lora_load(const char *model, const char *const *specs, int n_specs, int flags, char **base, char *err,
                         size_t errsz);

/* How the products of kept blocks run, for icl_lora_describe's line: the
 * program's batched products (prefill, scoring), its decode steps, or both;
 * ICL_DESCRIBE_BF16: the float32 weights will be rounded to bf16
 * (icl_model_set_bf16, --dtype bf16), which the line then says. */
enum { ICL_DESCRIBE_BATCHED = 1, ICL_DESCRIBE_DECODE = 2, ICL_DESCRIBE_BF16 = 4 };

/* One line for the user on how icl_lora_load built m from base with
 * n_adapters adapters (blocks kept or float32; adapters unmerged, merged,
 * without tensors on blocks, or none), e.g. "m.gguf: 211 matrices in quantized blocks (Q4_1 x 210, Q8_0 x
 * 1), 97.9 MB, kept as stored: ...; 1 adapter applied unmerged (rank 16)",
 * into buf (NUL-terminated, truncated to bufsz).  uses: ICL_DESCRIBE_*
 * bits, the paths the caller will run (only those are described). */
void icl_lora_describe(const icl_model *m, const char *base, int n_adapters, int uses, char *buf, size_t bufsz);

/* icl_lora_load with ICL_LOAD_DEQUANTIZE: always float32, adapters merged. */
icl_model *icl_lora_load_merged(const char *model, const char *const *specs, int n_specs, char **base, char *err,
                                size_t errsz);

#endif
