/* libFuzzer target for the safetensors parser (lib/safetensors.c).
 * Build and run: sh tests/fuzz/run.sh safetensors [seconds].
 * make check replays the committed corpus through icl_fuzz_safetensors with
 * a gcc build (tests/unit/test_fuzz_replay.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "safetensors.h"

/* Parse; on success read every float tensor back (bounded), touching all its bytes. */
int icl_fuzz_safetensors(const uint8_t *data, size_t size)
{
    char err[256];
    icl_st_file *f = icl_st_parse(data, size, "fuzz.safetensors", err, sizeof err);
    if (!f)
        return 0;
    for (int i = 0; i < icl_st_count(f); i++) {
        const icl_st_tensor *t = icl_st_get(f, i);
        if (t->numel > (1u << 20))
            continue;
        float *buf = malloc(t->numel * sizeof(float) + 1);
        if (icl_st_read_f32(t, buf, t->numel, err, sizeof err) == 0) {
            volatile float s = 0;
            for (size_t j = 0; j < t->numel; j++)
                s += buf[j];
            (void)s;
        }
        free(buf);
    }
    (void)icl_st_metadata(f, "format");
    icl_st_close(f);
    return 1;
}

#ifndef ICL_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icl_fuzz_safetensors(data, size);
    return 0;
}
#endif
