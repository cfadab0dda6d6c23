/* config.h - Hugging Face config.json for the model types icl computes.
 *
 * model_type "llama", "qwen2" (Llama with q/k/v bias) and "gpt2", read with
 * transformers' key names and defaults (LlamaConfig, Qwen2Config, GPT2Config):
 *   vocab_size, hidden_size (gpt2: n_embd), intermediate_size (gpt2: n_inner,
 *   null = 4*n_embd), num_hidden_layers (n_layer), num_attention_heads
 *   (n_head), num_key_value_heads (default = heads), head_dim (default
 *   hidden/heads), rms_norm_eps (gpt2: layer_norm_epsilon), rope_theta,
 *   rope_scaling (null or {"rope_type"|"type": "llama3", factor,
 *   low_freq_factor, high_freq_factor, original_max_position_embeddings}; the
 *   same may come as transformers 5's "rope_parameters"),
 *   max_position_embeddings (n_positions), tie_word_embeddings,
 *   attention_bias, mlp_bias, hidden_act / activation_function,
 *   bos_token_id, eos_token_id (an integer or a list), pad_token_id.
 * Keys icl does not use are kept and written back unchanged.
 */
#ifndef ICL_CONFIG_H
#define ICL_CONFIG_H

#include <stddef.h>

typedef enum { ICL_ARCH_LLAMA, ICL_ARCH_GPT2 } icl_arch;

#define ICL_MAX_EOS 8

typedef struct {
    char model_type[16];        /* "llama", "qwen2", "gpt2" */
    icl_arch arch;              /* LLAMA for llama and qwen2 */
    int vocab_size;             /* V */
    int hidden_size;            /* C */
    int intermediate_size;      /* I (MLP width) */
    int num_hidden_layers;      /* L */
    int num_attention_heads;    /* H */
    int num_key_value_heads;    /* KV (GQA groups; H % KV == 0) */
    int head_dim;               /* hd */
    int max_position_embeddings;
    double norm_eps;            /* rms_norm_eps or layer_norm_epsilon */
    double rope_theta;
    int rope_llama3;            /* 1: llama3 frequency scaling */
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int tie_word_embeddings;
    int qkv_bias;               /* q/k/v projections have a bias (qwen2, llama attention_bias) */
    int o_bias;                 /* o_proj bias (llama attention_bias) */
    int mlp_bias;               /* llama mlp_bias */
    int bos_token_id;           /* -1 when absent/null */
    int pad_token_id;           /* -1 when absent/null */
    int n_eos;                  /* 0..ICL_MAX_EOS */
    int eos_token_id[ICL_MAX_EOS];
    void *raw;                  /* json_t * of the file as read (owned), or NULL */
} icl_config;

/* Parse config.json text (len bytes).  0 ok, -1 with a message in err naming
 * `name` and the key (missing required key, wrong type, unknown model_type,
 * inconsistent sizes).  On success release with icl_config_free. */
int icl_config_parse(icl_config *c, const char *text, size_t len, const char *name, char *err, size_t errsz);
/* Read path.  Same errors, plus I/O. */
int icl_config_load(icl_config *c, const char *path, char *err, size_t errsz);
/* Serialise as config.json text (malloc'd, caller frees): the keys read are
 * kept in order, icl's values replace theirs, and a config made from scratch
 * gets the HF keys of its model_type and "architectures". */
char *icl_config_dump(const icl_config *c);
/* Write atomically to path.  0 ok, -1 with err. */
int icl_config_save(const icl_config *c, const char *path, char *err, size_t errsz);
/* Fill c with transformers' defaults for model_type (no raw json). 0 ok, -1 unknown type. */
int icl_config_defaults(icl_config *c, const char *model_type);
/* Check sizes are positive and consistent (heads divide, products fit). 0 ok. */
int icl_config_validate(const icl_config *c, const char *name, char *err, size_t errsz);
void icl_config_free(icl_config *c);
/* 1 if id is one of the eos ids. */
int icl_config_is_eos(const icl_config *c, int id);

#endif
