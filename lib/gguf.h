/* gguf.h - read and write GGUF files (llama.cpp / ggml's model container).
 *
 * Format (ggml's docs/gguf.md, versions 2 and 3; version 1 had 32-bit
 * counts and is refused), all little-endian:
 *   "GGUF", u32 version, u64 tensor_count, u64 kv_count,
 *   kv_count key/value pairs: string key, u32 value type (icl_gguf_type),
 *     value (an ARRAY is u32 element type, u64 count, count values),
 *   tensor_count tensor infos: string name, u32 n_dims (1..4), u64 ne[n_dims]
 *     (ne[0] varies fastest: the row length), u32 ggml type, u64 offset
 *     (relative to the data section, a multiple of the alignment),
 *   padding to general.alignment (u32, a power of two; default 32),
 *   the data section.
 *   A string is a u64 length and that many bytes (no NUL).
 *
 * The reader maps the file read-only and checks everything before use: every
 * count and length against the bytes that remain (so a lying count never
 * makes a huge allocation), value and element types, nested arrays (refused,
 * as llama.cpp does), keys unique and without NUL, tensor names unique, at
 * most 63 bytes and without NUL, n_dims, every dimension >= 1 with the
 * element count and byte size computed without overflow, the row length a
 * multiple of the type's block size, known ggml type ids, offsets aligned,
 * every tensor inside the data section, and no two tensors overlapping.  A
 * malformed or hostile file is an error message naming the file and what is
 * wrong ("m.gguf: key 3 (\"general.name\"): string length 4294967296 runs
 * past the end of the file"), never a crash or an over-read.
 *
 * Tensor data is handed out as a pointer into the mapping (zero copy): it
 * stays valid, with the keys and strings, until icl_gguf_close.  Decoding
 * the ggml block formats to float is lib/quant.h's job.
 *
 * All functions report errors as a message in err (errsz bytes, may be 0)
 * and a NULL / -1 return; they never print or exit.
 */
#ifndef ICL_GGUF_H
#define ICL_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* Metadata value types (gguf_type in ggml's gguf.h). */
typedef enum {
    ICL_GGUF_UINT8 = 0,
    ICL_GGUF_INT8 = 1,
    ICL_GGUF_UINT16 = 2,
    ICL_GGUF_INT16 = 3,
    ICL_GGUF_UINT32 = 4,
    ICL_GGUF_INT32 = 5,
    ICL_GGUF_FLOAT32 = 6,
    ICL_GGUF_BOOL = 7,
    ICL_GGUF_STRING = 8,
    ICL_GGUF_ARRAY = 9,
    ICL_GGUF_UINT64 = 10,
    ICL_GGUF_INT64 = 11,
    ICL_GGUF_FLOAT64 = 12,
} icl_gguf_type;

/* ggml tensor types (ggml_type in ggml.h) that icl names; others known to the
 * size table (IQ*, TQ*, I8..I64, F64, MXFP4) keep their ggml ids. */
enum {
    ICL_GGML_F32 = 0,
    ICL_GGML_F16 = 1,
    ICL_GGML_Q4_0 = 2,
    ICL_GGML_Q4_1 = 3,
    ICL_GGML_Q5_0 = 6,
    ICL_GGML_Q5_1 = 7,
    ICL_GGML_Q8_0 = 8,
    ICL_GGML_Q8_1 = 9,
    ICL_GGML_Q2_K = 10,
    ICL_GGML_Q3_K = 11,
    ICL_GGML_Q4_K = 12,
    ICL_GGML_Q5_K = 13,
    ICL_GGML_Q6_K = 14,
    ICL_GGML_Q8_K = 15,
    ICL_GGML_BF16 = 30,
};

#define ICL_GGUF_MAX_DIMS 4        /* GGML_MAX_DIMS */
#define ICL_GGUF_MAX_NAME 64       /* GGML_MAX_NAME: names are at most 63 bytes */
#define ICL_GGUF_DEFAULT_ALIGNMENT 32

/* ggml type traits: name ("Q4_K"; NULL for an id ggml does not define),
 * values per block (1 for F32/F16/BF16) and bytes per block.  0 / NULL for an
 * unknown id. */
const char *icl_ggml_type_name(uint32_t type);
int icl_ggml_blck_size(uint32_t type);
size_t icl_ggml_type_size(uint32_t type);
/* Bytes of a row of n values of type (n must be a multiple of the block
 * size); 0 for an unknown type, a bad n or overflow. */
size_t icl_ggml_row_size(uint32_t type, int64_t n);
/* Type id by name ("q8_0" or "Q8_0"), -1 if unknown. */
int icl_ggml_type_by_name(const char *name);

/* Name of a metadata value type ("uint32", "string", ...). */
const char *icl_gguf_type_name(uint32_t t);

/* A string in the file: p points into the mapping, len bytes, NOT
 * NUL-terminated (GGUF strings carry no NUL). */
typedef struct {
    const char *p;
    size_t len;
} icl_gguf_str;

/* One key/value pair.  For a scalar, the value is in u (UINT8/16/32/64 and
 * BOOL as 0/1), i (INT8/16/32/64), f (FLOAT32/64) or s (STRING).  For an
 * ARRAY, elem is the element type and n the count; numeric elements are
 * n * size bytes at data (little-endian, possibly unaligned: read them with
 * icl_gguf_arr_int / icl_gguf_arr_float), string elements are strs[0..n). */
typedef struct {
    const char *key;            /* NUL-terminated, owned by the file object */
    icl_gguf_type type;
    uint64_t u;
    int64_t i;
    double f;
    icl_gguf_str s;
    icl_gguf_type elem;         /* ARRAY only */
    uint64_t n;                 /* ARRAY only */
    const void *data;           /* ARRAY of numbers/bools */
    const icl_gguf_str *strs;   /* ARRAY of strings */
} icl_gguf_kv;

/* One tensor info, with its data located and checked. */
typedef struct {
    const char *name;           /* NUL-terminated, owned by the file object */
    uint32_t type;              /* ggml type id */
    int n_dims;                 /* 1..4 */
    int64_t ne[ICL_GGUF_MAX_DIMS]; /* ne[0] = row length; unused dims are 1 */
    int64_t nelements;          /* product of ne */
    uint64_t offset;            /* relative to the data section */
    size_t nbytes;              /* nelements / blck_size * type_size */
    const void *data;           /* into the mapping */
} icl_gguf_tensor;

typedef struct icl_gguf icl_gguf;

/* Map and validate path.  NULL on error (message naming the path). */
icl_gguf *icl_gguf_open(const char *path, char *err, size_t errsz);
/* Validate an in-memory image (used by icl_gguf_open and the fuzzer).  The
 * bytes are borrowed: they must outlive the returned object.  name is used
 * in messages. */
icl_gguf *icl_gguf_parse(const void *bytes, size_t len, const char *name, char *err, size_t errsz);
/* Unmap and free (NULL ok).  Pointers handed out die with it. */
void icl_gguf_close(icl_gguf *g);

uint32_t icl_gguf_version(const icl_gguf *g);
size_t icl_gguf_alignment(const icl_gguf *g);
const char *icl_gguf_name(const icl_gguf *g);     /* the path or name given */
/* The whole mapped image and the data section's offset in it. */
const void *icl_gguf_bytes(const icl_gguf *g, size_t *len);
size_t icl_gguf_data_offset(const icl_gguf *g);

/* Key/value pairs in file order. */
int icl_gguf_n_kv(const icl_gguf *g);
const icl_gguf_kv *icl_gguf_kv_at(const icl_gguf *g, int i);
const icl_gguf_kv *icl_gguf_find_kv(const icl_gguf *g, const char *key); /* NULL if absent */

/* Typed getters.  Return 0 and set *out when key is present with a fitting
 * type, 1 when absent (err untouched, *out unchanged), -1 (err names the
 * file, key, the type found and the type wanted) otherwise.
 *   get_int: any integer type (not bool), value must fit int64;
 *   get_uint: any integer type with a value >= 0;
 *   get_float: FLOAT32 or FLOAT64;
 *   get_bool: BOOL;
 *   get_str: STRING, *out gets pointer and length (not NUL-terminated);
 *   get_arr: ARRAY, any element type; want_elem (or -1 for any) is checked,
 *            where ICL_GGUF_INT32 means "any integer element type". */
int icl_gguf_get_int(const icl_gguf *g, const char *key, int64_t *out, char *err, size_t errsz);
int icl_gguf_get_uint(const icl_gguf *g, const char *key, uint64_t *out, char *err, size_t errsz);
int icl_gguf_get_float(const icl_gguf *g, const char *key, double *out, char *err, size_t errsz);
int icl_gguf_get_bool(const icl_gguf *g, const char *key, int *out, char *err, size_t errsz);
int icl_gguf_get_str(const icl_gguf *g, const char *key, icl_gguf_str *out, char *err, size_t errsz);
int icl_gguf_get_arr(const icl_gguf *g, const char *key, int want_elem, const icl_gguf_kv **out, char *err,
                     size_t errsz);
/* A NUL-terminated malloc'd copy of a STRING value (caller frees); NULL when
 * absent or not a string (then -1-style message in err if wrong type). */
char *icl_gguf_get_strdup(const icl_gguf *g, const char *key, char *err, size_t errsz);
/* Element i of a numeric/bool ARRAY kv as int64 (float elements truncated
 * toward zero and saturated, NaN 0)
 * or double.  i must be < kv->n. */
int64_t icl_gguf_arr_int(const icl_gguf_kv *kv, uint64_t i);
double icl_gguf_arr_float(const icl_gguf_kv *kv, uint64_t i);

/* Tensors in file order. */
int icl_gguf_n_tensors(const icl_gguf *g);
const icl_gguf_tensor *icl_gguf_tensor_at(const icl_gguf *g, int i);
const icl_gguf_tensor *icl_gguf_find_tensor(const icl_gguf *g, const char *name); /* NULL if absent */

/* ------------------------------------------------------------------ writer
 * Collect key/values and tensors, then write the file atomically (temp file,
 * fsync, rename: icl_atomic_open/commit of lib/safetensors.h).  Keys are
 * written in the order first set (setting a key again replaces its value);
 * general.alignment is written only if set (default 32 is used otherwise).
 * Tensor data is borrowed: it must stay valid until icl_gguf_write returns.
 * The writer copies keys, names and metadata values.  Version 3. */
typedef struct icl_gguf_writer icl_gguf_writer;

icl_gguf_writer *icl_gguf_writer_new(void);
void icl_gguf_writer_free(icl_gguf_writer *w);
void icl_gguf_set_u32(icl_gguf_writer *w, const char *key, uint32_t v);
void icl_gguf_set_i32(icl_gguf_writer *w, const char *key, int32_t v);
void icl_gguf_set_u64(icl_gguf_writer *w, const char *key, uint64_t v);
void icl_gguf_set_f32(icl_gguf_writer *w, const char *key, float v);
void icl_gguf_set_bool(icl_gguf_writer *w, const char *key, int v);
void icl_gguf_set_str(icl_gguf_writer *w, const char *key, const char *s, size_t len);
/* Arrays: n elements of type elem (numeric: n * size bytes, little-endian,
 * copied), or n strings (lens[i] bytes each; lens NULL: NUL-terminated). */
void icl_gguf_set_arr(icl_gguf_writer *w, const char *key, icl_gguf_type elem, const void *data, uint64_t n);
void icl_gguf_set_arr_str(icl_gguf_writer *w, const char *key, const char *const *s, const size_t *lens, uint64_t n);
/* Copy a key/value pair as read (any type), e.g. to carry metadata over. */
void icl_gguf_set_kv(icl_gguf_writer *w, const icl_gguf_kv *kv);
/* Remove a key if set. */
void icl_gguf_unset(icl_gguf_writer *w, const char *key);
/* Add a tensor: ggml type, n_dims 1..4, ne[0] the row length, nbytes must be
 * icl_ggml_row_size(type, ne[0]) * ne[1] * ...  Names unique, < 64 bytes.
 * 0 ok, -1 with err. */
int icl_gguf_add_tensor(icl_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                        const void *data, size_t nbytes, char *err, size_t errsz);
/* Write everything to path atomically.  0 ok, -1 with err. */
int icl_gguf_write(icl_gguf_writer *w, const char *path, char *err, size_t errsz);

#endif
