/* libFuzzer target for the wrong-file guesser (lib/sniff.c): any bytes,
 * as a file's head and as one line, give a kind of the enum with a name;
 * a line is never given a file-only kind, nor a head the folder kind;
 * GGUF and safetensors are said only of their magic and header.
 * Build and run: sh tests/fuzz/run.sh sniff [seconds]. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sniff.h"

int icl_fuzz_sniff(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    icl_file_kind k = icl_sniff_mem(p, size);
    if (k < ICL_KIND_UNKNOWN || k > ICL_KIND_TEXT || k == ICL_KIND_FOLDER || !icl_file_kind_name(k))
        abort();
    if (k == ICL_KIND_GGUF && (size < 4 || memcmp(p, "GGUF", 4)))
        abort();
    if (k == ICL_KIND_SAFETENSORS && (size < 10 || p[8] != '{'))
        abort();
    icl_file_kind l = icl_sniff_line(p, size);
    if (l != ICL_KIND_EMPTY && l != ICL_KIND_TOKEN_LINES && l != ICL_KIND_RECORDS && l != ICL_KIND_JSON &&
        l != ICL_KIND_TEXT)
        abort();
    if ((k == ICL_KIND_EMPTY) != (l == ICL_KIND_EMPTY))
        abort(); /* white space only is empty either way */
    return k != ICL_KIND_UNKNOWN;
}

#ifndef ICL_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    icl_fuzz_sniff(data, size);
    return 0;
}
#endif
