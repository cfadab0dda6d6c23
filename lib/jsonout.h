/* jsonout.h - writing JSON text directly, without building jansson values.
 *
 * icl-fmt writes records at hundreds of MB/s; building a json_t per field
 * and dumping it would cost more than parsing.  These helpers append JSON
 * text to an icl_buf with exactly jansson's escaping (JSON_COMPACT, UTF-8
 * left unescaped), so records written either way are byte-identical:
 * '"' and '\\' escaped, \b \f \n \r \t as such, other bytes below 0x20 as
 * \u00XX (upper-case hex), '/' and bytes >= 0x7F as they are.
 */
#ifndef ICL_JSONOUT_H
#define ICL_JSONOUT_H

#include <jansson.h>
#include <stddef.h>

#include "util.h"

/* Append s[0..n) as a JSON string literal, quotes included.  s must be
 * valid UTF-8 (not checked here). */
void icl_json_put_str(icl_buf *b, const char *s, size_t n);
/* Append any jansson value compactly (as icl_record_dump). */
void icl_json_put_value(icl_buf *b, const json_t *v);

#endif
