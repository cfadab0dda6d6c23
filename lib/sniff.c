/* sniff.c - see sniff.h. */
#include "sniff.h"

#include <fcntl.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "utf8.h"

/* the needle (with its quotes) among the n bytes at p */
static int has_key(const char *p, size_t n, const char *key)
{
    size_t k = strlen(key);
    for (size_t i = 0; i + k <= n; i++)
        if (p[i] == '"' && !memcmp(p + i, key, k))
            return 1;
    return 0;
}

/* the kind of a JSON object from the keys in its text (whole or a head) */
static icl_file_kind json_keys_kind(const char *p, size_t n)
{
    if (has_key(p, n, "\"peft_type\"") || has_key(p, n, "\"lora_alpha\""))
        return ICL_KIND_ADAPTER_CONFIG;
    if (has_key(p, n, "\"model\"") &&
        (has_key(p, n, "\"added_tokens\"") || has_key(p, n, "\"vocab\"") || has_key(p, n, "\"merges\"")))
        return ICL_KIND_TOKENIZER_JSON;
    if (has_key(p, n, "\"model_type\"") || has_key(p, n, "\"architectures\""))
        return ICL_KIND_MODEL_CONFIG;
    if (has_key(p, n, "\"tokenizer_class\"") || has_key(p, n, "\"added_tokens_decoder\"") ||
        has_key(p, n, "\"chat_template\""))
        return ICL_KIND_TOKENIZER_CONFIG;
    return ICL_KIND_UNKNOWN;
}

/* 1 when the n bytes at p hold only digits, spaces, tabs and CR, and a digit */
static int ids_only(const char *p, size_t n)
{
    int digit = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= '0' && c <= '9')
            digit = 1;
        else if (c != ' ' && c != '\t' && c != '\r')
            return 0;
    }
    return digit;
}

/* 1 when the n bytes at p (p[0] == '{') start a JSON object: '{', then
 * white space, then a key or '}' (a template's "{instruction}" does not) */
static int object_start(const char *p, size_t n)
{
    size_t i = 1;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i == n || p[i] == '"' || p[i] == '}';
}

/* skip a UTF-8 byte order mark and white space */
static size_t skip_space(const char *p, size_t n)
{
    size_t i = n >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3) ? 3 : 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i;
}

icl_file_kind icl_sniff_line(const char *line, size_t n)
{
    size_t i = skip_space(line, n);
    if (i == n)
        return ICL_KIND_EMPTY;
    if (n - i >= 11 && !memcmp(line + i, "#icl-tokens", 11))
        return ICL_KIND_TOKEN_LINES;
    if (ids_only(line + i, n - i))
        return ICL_KIND_TOKEN_LINES;
    if (line[i] == '{' && object_start(line + i, n - i))
        return ICL_KIND_RECORDS;
    if (line[i] == '[')
        return ICL_KIND_JSON;
    return ICL_KIND_TEXT;
}

icl_file_kind icl_sniff_mem(const char *p, size_t n)
{
    if (n >= 4 && !memcmp(p, "GGUF", 4))
        return ICL_KIND_GGUF;
    if (n >= 10 && p[8] == '{') { /* safetensors: u64 LE header length, then the JSON header */
        uint64_t hl = 0;
        for (int k = 7; k >= 0; k--)
            hl = hl << 8 | (unsigned char)p[k];
        if (hl >= 2 && hl <= ((uint64_t)100 << 20))
            return ICL_KIND_SAFETENSORS;
    }
    size_t i = skip_space(p, n);
    if (i == n)
        return ICL_KIND_EMPTY;
    const char *s = p + i, *nl = memchr(s, '\n', n - i);
    size_t l1 = nl ? (size_t)(nl - s) : n - i; /* the first line */
    if (s[0] == '{' && object_start(s, n - i)) {
        json_t *o = json_loadb(s, l1, JSON_DISABLE_EOF_CHECK, NULL);
        icl_file_kind k;
        if (json_is_object(o)) { /* a whole object on the first line: a record, or a one-line file */
            k = json_keys_kind(s, l1);
            json_decref(o);
            return k ? k : ICL_KIND_RECORDS;
        }
        json_decref(o);
        k = json_keys_kind(s, n - i); /* a document over several lines */
        return k ? k : ICL_KIND_JSON;
    }
    if (s[0] == '[')
        return ICL_KIND_JSON;
    if (s[0] == '#' && l1 >= 11 && !memcmp(s, "#icl-tokens", 11))
        return ICL_KIND_TOKEN_LINES;
    if (ids_only(s, l1))
        return ICL_KIND_TOKEN_LINES;
    /* text: no NUL, and UTF-8 (a character cut at the end of the head is fine) */
    if (memchr(p, 0, n))
        return ICL_KIND_UNKNOWN;
    size_t ok = icl_utf8_valid(p, n);
    return ok + 4 > n ? ICL_KIND_TEXT : ICL_KIND_UNKNOWN;
}

icl_file_kind icl_sniff_file(const char *path)
{
    int e = errno;
    struct stat st;
    icl_file_kind k = ICL_KIND_UNKNOWN;
    if (stat(path, &st) != 0) {
        errno = e;
        return k;
    }
    if (S_ISDIR(st.st_mode)) {
        errno = e;
        return ICL_KIND_FOLDER;
    }
    int fd = S_ISREG(st.st_mode) ? open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
    if (fd >= 0) {
        enum { HEAD = 65536 };
        char *b = malloc(HEAD);
        size_t n = 0;
        ssize_t r;
        while (b && n < HEAD && (r = read(fd, b + n, HEAD - n)) > 0)
            n += (size_t)r;
        if (b)
            k = icl_sniff_mem(b, n);
        free(b);
        close(fd);
    }
    errno = e;
    return k;
}

const char *icl_file_kind_name(icl_file_kind k)
{
    switch (k) {
    case ICL_KIND_EMPTY: return "an empty file";
    case ICL_KIND_FOLDER: return "a folder";
    case ICL_KIND_GGUF: return "a GGUF model file";
    case ICL_KIND_SAFETENSORS: return "model weights (safetensors)";
    case ICL_KIND_TOKENIZER_JSON: return "a tokenizer.json";
    case ICL_KIND_MODEL_CONFIG: return "a model's config.json";
    case ICL_KIND_TOKENIZER_CONFIG: return "a tokenizer_config.json";
    case ICL_KIND_ADAPTER_CONFIG: return "a LoRA adapter's adapter_config.json";
    case ICL_KIND_JSON: return "a JSON document";
    case ICL_KIND_RECORDS: return "JSON Lines records";
    case ICL_KIND_TOKEN_LINES: return "token lines (icl-tok encode's output)";
    case ICL_KIND_TEXT: return "CSV, TSV or plain text";
    case ICL_KIND_UNKNOWN: break;
    }
    return "a file of unknown kind";
}
