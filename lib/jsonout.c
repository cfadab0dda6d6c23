/* jsonout.c - see jsonout.h. */
#include "jsonout.h"

#include <string.h>
#if defined __AVX2__
#include <immintrin.h>
#elif defined __SSE2__
#include <emmintrin.h>
#endif

#include "record.h"

/* 1 for bytes that need an escape. */
static const unsigned char needs_esc[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* '\\' */
};

void icl_json_put_str(icl_buf *b, const char *s, size_t n)
{
    /* Worst case every byte becomes \u00XX: reserve once, write directly. */
    icl_buf_reserve(b, 6 * n + 2 + 32);
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        size_t j = i;
#ifdef __AVX2__
        /* 32 bytes at a time: store them, stop at the first byte < 0x20, '"' or '\\'. */
        const __m256i lim32 = _mm256_set1_epi8(0x1F), q32 = _mm256_set1_epi8('"'),
                      bs32 = _mm256_set1_epi8('\\');
        while (j + 32 <= n) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(s + j));
            __m256i m = _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_min_epu8(v, lim32), v),
                                        _mm256_or_si256(_mm256_cmpeq_epi8(v, q32),
                                                        _mm256_cmpeq_epi8(v, bs32)));
            _mm256_storeu_si256((__m256i *)(o + (j - i)), v);
            unsigned mask = (unsigned)_mm256_movemask_epi8(m);
            if (mask) {
                j += (size_t)__builtin_ctz(mask);
                goto found;
            }
            j += 32;
        }
#endif
#ifdef __SSE2__
        /* 16 bytes at a time: store them, stop at the first byte < 0x20, '"' or '\\'. */
        const __m128i lim = _mm_set1_epi8(0x1F), q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
        while (j + 16 <= n) {
            __m128i v = _mm_loadu_si128((const __m128i *)(s + j));
            __m128i m = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, lim), v),
                                     _mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)));
            _mm_storeu_si128((__m128i *)(o + (j - i)), v);
            unsigned mask = (unsigned)_mm_movemask_epi8(m);
            if (mask) {
                j += (size_t)__builtin_ctz(mask);
                goto found;
            }
            j += 16;
        }
#endif
        while (j < n && !needs_esc[(unsigned char)s[j]])
            j++;
#ifdef __SSE2__
    found:
#endif
        memcpy(o, s + i, j - i);
        o += j - i;
        if (j == n)
            break;
        unsigned char c = (unsigned char)s[j];
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default: {
            static const char hex[] = "0123456789ABCDEF";
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
        }
        i = j + 1;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
}

void icl_json_put_value(icl_buf *b, const json_t *v)
{
    if (json_is_string(v))
        icl_json_put_str(b, json_string_value(v), json_string_length(v));
    else
        icl_record_dump(b, v);
}
