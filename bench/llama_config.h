/* llama_config.h - the Llama configuration of issues 4 and 6 (vocab 8192,
 * hidden 512, 8 layers, 8 heads of 64, intermediate 1376), shared by
 * bench/model.c and bench/gen.c so the two benchmarks measure the same model. */
#ifndef ICL_BENCH_LLAMA_CONFIG_H
#define ICL_BENCH_LLAMA_CONFIG_H

#include "config.h"

static inline void bench_llama_config(icl_config *cfg, int max_position_embeddings)
{
    icl_config_defaults(cfg, "llama");
    cfg->vocab_size = 8192;
    cfg->hidden_size = 512;
    cfg->num_hidden_layers = 8;
    cfg->num_attention_heads = cfg->num_key_value_heads = 8;
    cfg->head_dim = 64;
    cfg->intermediate_size = 1376;
    cfg->max_position_embeddings = max_position_embeddings;
}

#endif
