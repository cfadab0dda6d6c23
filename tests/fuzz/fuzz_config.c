/* libFuzzer target for the config.json parser (lib/config.c): parse; on
 * success the dump must parse again to the same sizes.
 * Build and run: sh tests/fuzz/run.sh config [seconds]. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int icl_fuzz_config(const uint8_t *data, size_t size)
{
    char err[256];
    icl_config c, d;
    if (icl_config_parse(&c, (const char *)data, size, "fuzz.json", err, sizeof err))
        return 0;
    char *s = icl_config_dump(&c);
    if (icl_config_parse(&d, s, strlen(s), "dump", err, sizeof err))
        abort(); /* what we write we must read */
    if (d.hidden_size != c.hidden_size || d.vocab_size != c.vocab_size || d.n_eos != c.n_eos ||
        d.num_key_value_heads != c.num_key_value_heads || d.head_dim != c.head_dim ||
        d.intermediate_size != c.intermediate_size || d.rope_llama3 != c.rope_llama3)
        abort();
    icl_config_free(&d);
    icl_config_free(&c);
    free(s);
    return 1;
}

#ifndef ICL_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icl_fuzz_config(data, size);
    return 0;
}
#endif
