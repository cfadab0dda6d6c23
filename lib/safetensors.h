/* safetensors.h - read and write Hugging Face safetensors files.
 *
 * Format (https://github.com/huggingface/safetensors, "Format"): 8 bytes,
 * little-endian u64 N = header length; N bytes of UTF-8 JSON, an object
 * mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
 * plus an optional "__metadata__" object of string values; then the data
 * buffer.  Offsets are relative to the start of the data buffer (byte 8+N),
 * tensors are row-major (C order), little-endian.
 *
 * The reader maps the file (mmap, read-only) and validates everything before
 * handing out a pointer: header length against the file size (and a 100 MB
 * cap), JSON shape, dtype, shape x element size == end - begin (overflow
 * checked), end within the data buffer, no two tensors overlapping, and
 * the data theirs alone (from byte 0, one after another, to the end of the
 * file, as the safetensors library requires: no bytes between or after).  A
 * malformed or hostile file is an error message, never a crash or overread.
 * F32 data that is 4-byte aligned is used in place (zero copy); BF16 and F16
 * (and unaligned F32) are converted to float on request.
 *
 * All functions report errors as a message in err (errsz bytes, may be 0)
 * and a NULL / -1 return; they never exit.
 */
#ifndef ICL_SAFETENSORS_H
#define ICL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/* The atomic writer (icl_atomic_*, icl_write_file_atomic) moved to
 * fileio.h; included here for the code that found it here. */
#include "fileio.h"

#define ICL_ST_MAX_DIMS 8
/* Largest header the reader accepts (bytes).  The safetensors library uses 100 MB. */
#define ICL_ST_MAX_HEADER (100u << 20)

typedef enum { ICL_ST_F32, ICL_ST_BF16, ICL_ST_F16, ICL_ST_OTHER } icl_st_dtype;

typedef struct {
    char *name;                      /* owned by the file */
    icl_st_dtype dtype;
    char dtype_name[8];              /* as in the header ("F32", "I64", ...) */
    int ndim;
    int64_t shape[ICL_ST_MAX_DIMS];
    size_t numel;                    /* product of shape (1 for a scalar) */
    size_t nbytes;                   /* end - begin */
    const void *data;                /* into the mapping; valid until icl_st_close */
} icl_st_tensor;

typedef struct icl_st_file icl_st_file;

/* Open and validate path.  NULL on error (message in err, naming the path). */
icl_st_file *icl_st_open(const char *path, char *err, size_t errsz);
/* Validate an in-memory image (used by open and by the fuzzer).  The bytes
 * are borrowed, not copied: they must outlive the returned handle. */
icl_st_file *icl_st_parse(const void *bytes, size_t len, const char *name, char *err, size_t errsz);
/* Unmap and free (NULL ok); tensor pointers into the file die with it. */
void icl_st_close(icl_st_file *f);

/* Number of tensors (not counting __metadata__). */
int icl_st_count(const icl_st_file *f);
const icl_st_tensor *icl_st_get(const icl_st_file *f, int i);       /* in file order */
const icl_st_tensor *icl_st_find(const icl_st_file *f, const char *name); /* NULL if absent; O(log n) */
/* The "__metadata__" value for key, or NULL. */
const char *icl_st_metadata(const icl_st_file *f, const char *key);

/* Copy tensor t into dst (n floats, which must equal t->numel), converting
 * BF16/F16 to float.  0 ok, -1 on a dtype that is not F32/BF16/F16 or a size
 * mismatch (message in err). */
int icl_st_read_f32(const icl_st_tensor *t, float *dst, size_t n, char *err, size_t errsz);
/* Zero-copy view of an aligned F32 tensor, or NULL (then use icl_st_read_f32). */
const float *icl_st_f32_view(const icl_st_tensor *t);

/* One tensor to write: float32 data, row-major, shape[0..ndim). */
typedef struct {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[ICL_ST_MAX_DIMS];
} icl_st_entry;

/* Write n tensors, in the order given, as F32 to path, atomically
 * (icl_atomic_open/commit, fileio.h).  The header holds
 * {"__metadata__":{"format":"pt"}} and is padded with spaces so the data
 * starts 8-byte aligned.  Names must be unique.  0 ok, -1 on error. */
int icl_st_write(const char *path, const icl_st_entry *e, int n, char *err, size_t errsz);

/* Conversions (exact for bf16->f32 and f16->f32; f32->bf16 rounds to nearest even). */
float icl_bf16_to_f32(uint16_t h);
float icl_f16_to_f32(uint16_t h);
uint16_t icl_f32_to_bf16(float f);

#endif
