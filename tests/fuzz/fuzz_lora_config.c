/* libFuzzer target for PEFT's adapter_config.json parser (lib/lora_config.c):
 * parse; on success the values are in range, and the text icl writes for
 * them parses again to the same r, lora_alpha, lora_dropout, use_rslora and
 * target_modules.
 * Build and run: sh tests/fuzz/run.sh lora_config [seconds]. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"

int icl_fuzz_lora_config(const uint8_t *data, size_t size)
{
    char err[256];
    icl_lora_config c, d;
    if (icl_lora_parse_config((const char *)data, size, "fuzz.json", &c, err, sizeof err))
        return 0;
    if (c.r < 1 || !isfinite(c.lora_alpha) || !(c.lora_dropout >= 0 && c.lora_dropout < 1) || c.n_targets < 1)
        abort();
    char *s = icl_lora_config_json(&c, 0);
    if (icl_lora_parse_config(s, strlen(s), "dump", &d, err, sizeof err))
        abort(); /* what we write we must read */
    if (d.r != c.r || d.lora_alpha != c.lora_alpha || d.lora_dropout != c.lora_dropout ||
        d.use_rslora != c.use_rslora || d.n_targets != c.n_targets)
        abort();
    for (int i = 0; i < c.n_targets; i++)
        if (strcmp(c.target_modules[i], d.target_modules[i]))
            abort();
    icl_lora_config_free(&d);
    icl_lora_config_free(&c);
    free(s);
    return 1;
}

#ifndef ICL_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icl_fuzz_lora_config(data, size);
    return 0;
}
#endif
