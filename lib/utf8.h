/* utf8.h - UTF-8 decoding, encoding and validation; Unicode character
 * classes as the Rust crates that tokenizers uses define them.
 *
 * Code points are uint32_t.  Decoding here is lenient (the tokenizer works
 * on text already validated with icl_utf8_valid); validation is strict.
 * The classes use utf8proc's general categories (libutf8proc).
 */
#ifndef ICL_UTF8_H
#define ICL_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Strict UTF-8 check (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
 * Returns the byte offset of the first invalid byte, or n if all valid. */
size_t icl_utf8_valid(const char *s, size_t n);

/* Decode the code point at s[*i] (of n bytes) and advance *i past it.  A
 * lenient decoder for text already validated: it never reads past s[n-1],
 * and a sequence cut short there decodes to some value without stopping. */
static inline uint32_t icl_utf8_next(const char *s, size_t n, size_t *i)
{
    const uint8_t *p = (const uint8_t *)s + *i;
    size_t left = n - *i;
    uint32_t c = p[0];
    if (c < 0x80 || left < 2) {
        *i += 1;
        return c;
    }
    if (c < 0xE0) {
        *i += 2;
        return ((c & 0x1F) << 6) | (p[1] & 0x3F);
    }
    if (c < 0xF0 || left < 4) {
        if (left < 3) {
            *i += 1;
            return c;
        }
        *i += 3;
        return ((c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    }
    *i += 4;
    return ((c & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) | ((uint32_t)(p[2] & 0x3F) << 6) |
           (p[3] & 0x3F);
}

/* Encode c into out (room for 4 bytes); returns the number of bytes. */
static inline int icl_utf8_put(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Rust's char::is_whitespace: the White_Space property. */
int icl_uni_is_whitespace(uint32_t c);
/* Rust's char::is_numeric: general category Nd, Nl or No. */
int icl_uni_is_numeric(uint32_t c);
/* Rust's char::is_alphanumeric: letters (L*) or numeric. */
int icl_uni_is_alnum(uint32_t c);
/* regex_syntax's is_word_character (Unicode \w, UTS #18). */
int icl_uni_is_word(uint32_t c);

#endif
