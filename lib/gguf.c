/* gguf.c - GGUF reader (mapped, every field checked) and writer.  See gguf.h. */
#include "gguf.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hashtab.h"
#include "safetensors.h"
#include "util.h"

/* ------------------------------------------------------------------ type traits */

typedef struct {
    const char *name;
    int blck;
    size_t size;
} ggml_traits;

/* ggml.c's type_traits (blck_size, type_size); ids with no entry are unknown. */
static const ggml_traits TRAITS[] = {
    [0] = {"F32", 1, 4},       [1] = {"F16", 1, 2},        [2] = {"Q4_0", 32, 18},    [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},    [7] = {"Q5_1", 32, 24},     [8] = {"Q8_0", 32, 34},    [9] = {"Q8_1", 32, 36},
    [10] = {"Q2_K", 256, 84},  [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210}, [15] = {"Q8_K", 256, 292},  [16] = {"IQ2_XXS", 256, 66}, [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50}, [20] = {"IQ4_NL", 32, 18}, [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82}, [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},       [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},      [27] = {"I64", 1, 8},       [28] = {"F64", 1, 8},      [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2},     [34] = {"TQ1_0", 256, 54},  [35] = {"TQ2_0", 256, 66}, [39] = {"MXFP4", 32, 17},
};
#define N_TRAITS (sizeof TRAITS / sizeof TRAITS[0])

const char *icl_ggml_type_name(uint32_t type)
{
    return type < N_TRAITS ? TRAITS[type].name : NULL;
}

int icl_ggml_blck_size(uint32_t type)
{
    return type < N_TRAITS && TRAITS[type].name ? TRAITS[type].blck : 0;
}

size_t icl_ggml_type_size(uint32_t type)
{
    return type < N_TRAITS && TRAITS[type].name ? TRAITS[type].size : 0;
}

size_t icl_ggml_row_size(uint32_t type, int64_t n)
{
    int b = icl_ggml_blck_size(type);
    if (!b || n <= 0 || n % b)
        return 0;
    uint64_t blocks = (uint64_t)n / (uint64_t)b, sz = TRAITS[type].size;
    if (blocks > SIZE_MAX / sz)
        return 0;
    return (size_t)(blocks * sz);
}

int icl_ggml_type_by_name(const char *name)
{
    for (size_t i = 0; i < N_TRAITS; i++)
        if (TRAITS[i].name && !strcasecmp(TRAITS[i].name, name))
            return (int)i;
    return -1;
}

static const char *const VTYPE_NAMES[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
                                          "bool",  "string", "array",  "uint64", "int64",  "float64"};

const char *icl_gguf_type_name(uint32_t t)
{
    return t <= ICL_GGUF_FLOAT64 ? VTYPE_NAMES[t] : "unknown";
}

/* Bytes of a scalar value of type t (0 for STRING/ARRAY/unknown). */
static size_t vsize(uint32_t t)
{
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t <= ICL_GGUF_FLOAT64 ? sz[t] : 0;
}

/* ------------------------------------------------------------------ reader */

struct icl_gguf {
    char *name;
    const uint8_t *base;
    size_t len;
    void *map;          /* mmap'd region (icl_gguf_open) or NULL */
    size_t map_len;
    uint32_t version;
    size_t alignment, data_off;
    int n_kv, n_tensors;
    icl_gguf_kv *kv;
    icl_gguf_tensor *t;
    icl_gguf_str **strs; /* per kv: the string table of an ARRAY of strings, or NULL */
};

typedef struct {
    const uint8_t *p;
    size_t len, off;
    const char *name; /* file name for messages */
    char *err;
    size_t errsz;
    char where[160]; /* "key 3 (\"general.name\")" etc. */
    icl_strmap seen;  /* the keys, then the tensor names, read so far (duplicates: linear, not quadratic) */
} cursor;

/* icl_strmap callbacks: the name of key / tensor id of the icl_gguf ctx */
static const char *kv_name(const void *ctx, int32_t id, size_t *len)
{
    const char *k = ((const struct icl_gguf *)ctx)->kv[id].key;
    *len = strlen(k);
    return k;
}
static const char *tensor_name(const void *ctx, int32_t id, size_t *len)
{
    const char *k = ((const struct icl_gguf *)ctx)->t[id].name;
    *len = strlen(k);
    return k;
}

static int need(cursor *c, size_t n, const char *what)
{
    if (n > c->len - c->off) {
        icl_seterr(c->err, c->errsz, "%s: %s%s%s runs past the end of the file (needs %zu bytes at byte %zu, file has %zu)",
                   c->name, c->where, *c->where ? ": " : "", what, n, c->off, c->len);
        return -1;
    }
    return 0;
}

static uint64_t rd_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int get_u32(cursor *c, uint32_t *v, const char *what)
{
    if (need(c, 4, what))
        return -1;
    *v = (uint32_t)rd_le(c->p + c->off, 4);
    c->off += 4;
    return 0;
}

static int get_u64(cursor *c, uint64_t *v, const char *what)
{
    if (need(c, 8, what))
        return -1;
    *v = rd_le(c->p + c->off, 8);
    c->off += 8;
    return 0;
}

static int get_str(cursor *c, icl_gguf_str *s, const char *what)
{
    uint64_t n;
    char w[96];
    snprintf(w, sizeof w, "%s length", what);
    if (get_u64(c, &n, w))
        return -1;
    if (n > c->len - c->off) {
        icl_seterr(c->err, c->errsz, "%s: %s%s%s: string length %" PRIu64 " runs past the end of the file (%zu bytes left)",
                   c->name, c->where, *c->where ? ": " : "", what, n, c->len - c->off);
        return -1;
    }
    s->p = (const char *)c->p + c->off;
    s->len = (size_t)n;
    c->off += (size_t)n;
    return 0;
}

static int decode_scalar(icl_gguf_kv *kv, const uint8_t *p)
{
    switch (kv->type) {
    case ICL_GGUF_UINT8: kv->u = p[0]; break;
    case ICL_GGUF_INT8: kv->i = (int8_t)p[0]; break;
    case ICL_GGUF_UINT16: kv->u = rd_le(p, 2); break;
    case ICL_GGUF_INT16: kv->i = (int16_t)rd_le(p, 2); break;
    case ICL_GGUF_UINT32: kv->u = rd_le(p, 4); break;
    case ICL_GGUF_INT32: kv->i = (int32_t)rd_le(p, 4); break;
    case ICL_GGUF_UINT64: kv->u = rd_le(p, 8); break;
    case ICL_GGUF_INT64: kv->i = (int64_t)rd_le(p, 8); break;
    case ICL_GGUF_BOOL: kv->u = p[0]; return p[0] > 1 ? -1 : 0;
    case ICL_GGUF_FLOAT32: {
        uint32_t b = (uint32_t)rd_le(p, 4);
        float f;
        memcpy(&f, &b, 4);
        kv->f = f;
        break;
    }
    case ICL_GGUF_FLOAT64: {
        uint64_t b = rd_le(p, 8);
        memcpy(&kv->f, &b, 8);
        break;
    }
    default: break;
    }
    return 0;
}

static int is_int_type(uint32_t t)
{
    return t <= ICL_GGUF_INT32 || t == ICL_GGUF_UINT64 || t == ICL_GGUF_INT64;
}

static int is_unsigned_type(uint32_t t)
{
    return t == ICL_GGUF_UINT8 || t == ICL_GGUF_UINT16 || t == ICL_GGUF_UINT32 || t == ICL_GGUF_UINT64;
}

static int parse_kv(cursor *c, icl_gguf *g, int idx)
{
    icl_gguf_kv *kv = &g->kv[idx];
    icl_gguf_str key;
    snprintf(c->where, sizeof c->where, "key %d", idx);
    if (get_str(c, &key, "key"))
        return -1;
    if (key.len == 0 || memchr(key.p, 0, key.len)) {
        icl_seterr(c->err, c->errsz, "%s: key %d: %s", c->name, idx, key.len ? "name contains a NUL byte" : "empty name");
        return -1;
    }
    kv->key = xstrndup(key.p, key.len);
    snprintf(c->where, sizeof c->where, "key %d (\"%.100s\")", idx, kv->key);
    if (icl_strmap_get(&c->seen, kv->key, strlen(kv->key), kv_name, g) >= 0) {
        icl_seterr(c->err, c->errsz, "%s: %s: duplicate key", c->name, c->where);
        return -1;
    }
    icl_strmap_put(&c->seen, idx, kv_name, g);
    uint32_t t;
    if (get_u32(c, &t, "value type"))
        return -1;
    if (t > ICL_GGUF_FLOAT64) {
        icl_seterr(c->err, c->errsz, "%s: %s: unknown value type %" PRIu32, c->name, c->where, t);
        return -1;
    }
    kv->type = (icl_gguf_type)t;
    if (t == ICL_GGUF_STRING)
        return get_str(c, &kv->s, "string value");
    if (t != ICL_GGUF_ARRAY) {
        if (need(c, vsize(t), "value"))
            return -1;
        if (decode_scalar(kv, c->p + c->off)) {
            icl_seterr(c->err, c->errsz, "%s: %s: bool value %u is not 0 or 1", c->name, c->where, c->p[c->off]);
            return -1;
        }
        c->off += vsize(t);
        return 0;
    }
    uint32_t et;
    uint64_t n;
    if (get_u32(c, &et, "array element type") || get_u64(c, &n, "array length"))
        return -1;
    if (et > ICL_GGUF_FLOAT64 || et == ICL_GGUF_ARRAY) {
        icl_seterr(c->err, c->errsz, "%s: %s: %s array element type %" PRIu32, c->name, c->where,
                   et == ICL_GGUF_ARRAY ? "unsupported (nested)" : "unknown", et);
        return -1;
    }
    kv->elem = (icl_gguf_type)et;
    kv->n = n;
    if (et == ICL_GGUF_STRING) {
        /* each string takes at least its 8-byte length */
        if (n > (c->len - c->off) / 8) {
            icl_seterr(c->err, c->errsz, "%s: %s: array of %" PRIu64 " strings runs past the end of the file (%zu bytes left)",
                       c->name, c->where, n, c->len - c->off);
            return -1;
        }
        icl_gguf_str *s = xmalloc((size_t)(n ? n : 1) * sizeof *s);
        g->strs[idx] = s;
        kv->strs = s;
        char what[64];
        for (uint64_t i = 0; i < n; i++) {
            snprintf(what, sizeof what, "element %" PRIu64, i);
            if (get_str(c, &s[i], what))
                return -1;
        }
        return 0;
    }
    size_t es = vsize(et);
    if (n > (c->len - c->off) / es) {
        icl_seterr(c->err, c->errsz, "%s: %s: array of %" PRIu64 " %s values runs past the end of the file (%zu bytes left)",
                   c->name, c->where, n, VTYPE_NAMES[et], c->len - c->off);
        return -1;
    }
    kv->data = c->p + c->off;
    if (et == ICL_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (c->p[c->off + i] > 1) {
                icl_seterr(c->err, c->errsz, "%s: %s: element %" PRIu64 ": bool value %u is not 0 or 1", c->name, c->where,
                           i, c->p[c->off + i]);
                return -1;
            }
    c->off += (size_t)n * es;
    return 0;
}

static int parse_tensor_info(cursor *c, icl_gguf *g, int idx)
{
    icl_gguf_tensor *t = &g->t[idx];
    icl_gguf_str nm;
    snprintf(c->where, sizeof c->where, "tensor %d", idx);
    if (get_str(c, &nm, "name"))
        return -1;
    if (nm.len == 0 || nm.len >= ICL_GGUF_MAX_NAME || memchr(nm.p, 0, nm.len)) {
        icl_seterr(c->err, c->errsz, "%s: tensor %d: %s", c->name, idx,
                   nm.len == 0 ? "empty name" : nm.len >= ICL_GGUF_MAX_NAME ? "name longer than 63 bytes" : "name contains a NUL byte");
        return -1;
    }
    t->name = xstrndup(nm.p, nm.len);
    snprintf(c->where, sizeof c->where, "tensor %d (\"%s\")", idx, t->name);
    uint32_t nd;
    if (get_u32(c, &nd, "n_dims"))
        return -1;
    if (nd < 1 || nd > ICL_GGUF_MAX_DIMS) {
        icl_seterr(c->err, c->errsz, "%s: %s: n_dims %" PRIu32 " is not in 1..%d", c->name, c->where, nd, ICL_GGUF_MAX_DIMS);
        return -1;
    }
    t->n_dims = (int)nd;
    for (int d = 0; d < ICL_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    uint64_t total = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne;
        if (get_u64(c, &ne, "dimension"))
            return -1;
        if (ne == 0 || ne > INT64_MAX || total > (uint64_t)INT64_MAX / ne) {
            icl_seterr(c->err, c->errsz, "%s: %s: dimension %u is %" PRIu64 "%s", c->name, c->where, d, ne,
                       ne == 0 ? "" : " (the element count overflows)");
            return -1;
        }
        total *= ne;
        t->ne[d] = (int64_t)ne;
    }
    t->nelements = (int64_t)total;
    if (get_u32(c, &t->type, "type") || get_u64(c, &t->offset, "offset"))
        return -1;
    const char *tn = icl_ggml_type_name(t->type);
    if (!tn) {
        icl_seterr(c->err, c->errsz, "%s: %s: unknown ggml type %" PRIu32, c->name, c->where, t->type);
        return -1;
    }
    int b = icl_ggml_blck_size(t->type);
    if (t->ne[0] % b) {
        icl_seterr(c->err, c->errsz, "%s: %s: row length %" PRId64 " is not a multiple of %s's block size %d", c->name,
                   c->where, t->ne[0], tn, b);
        return -1;
    }
    size_t row = icl_ggml_row_size(t->type, t->ne[0]);
    uint64_t rows = total / (uint64_t)t->ne[0];
    if (!row || rows > SIZE_MAX / row) {
        icl_seterr(c->err, c->errsz, "%s: %s: byte size overflows", c->name, c->where);
        return -1;
    }
    t->nbytes = row * (size_t)rows;
    if (icl_strmap_get(&c->seen, t->name, strlen(t->name), tensor_name, g) >= 0) {
        icl_seterr(c->err, c->errsz, "%s: %s: duplicate tensor name", c->name, c->where);
        return -1;
    }
    icl_strmap_put(&c->seen, idx, tensor_name, g);
    return 0;
}

static int cmp_off(const void *a, const void *b)
{
    const icl_gguf_tensor *x = *(icl_gguf_tensor *const *)a, *y = *(icl_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

icl_gguf *icl_gguf_parse(const void *bytes, size_t len, const char *name, char *err, size_t errsz)
{
    icl_gguf *g = xcalloc(1, sizeof *g);
    g->name = xstrdup(name);
    g->base = bytes;
    g->len = len;
    cursor c = {.p = bytes, .len = len, .name = g->name, .err = err, .errsz = errsz};
    uint32_t magic;
    uint64_t nt, nkv;
    if (len < 4 || memcmp(bytes, "GGUF", 4)) {
        icl_seterr(err, errsz, "%s: not a GGUF file (no \"GGUF\" magic)", name);
        goto fail;
    }
    if (get_u32(&c, &magic, "magic") || get_u32(&c, &g->version, "version"))
        goto fail;
    if (g->version != 2 && g->version != 3) {
        icl_seterr(err, errsz, "%s: GGUF version %" PRIu32 " is not supported (2 and 3 are)", name, g->version);
        goto fail;
    }
    if (get_u64(&c, &nt, "tensor count") || get_u64(&c, &nkv, "key/value count"))
        goto fail;
    /* a key/value takes at least 8 (key length) + 1 (key) + 4 (type) + 1 bytes,
     * a tensor info at least 8 + 1 + 4 + 8 + 4 + 8 */
    if (nkv > (len - c.off) / 14 || nkv > INT32_MAX) {
        icl_seterr(err, errsz, "%s: key/value count %" PRIu64 " is more than the file can hold", name, nkv);
        goto fail;
    }
    if (nt > (len - c.off) / 33 || nt > INT32_MAX) {
        icl_seterr(err, errsz, "%s: tensor count %" PRIu64 " is more than the file can hold", name, nt);
        goto fail;
    }
    g->kv = xcalloc(nkv ? nkv : 1, sizeof *g->kv);
    g->strs = xcalloc(nkv ? nkv : 1, sizeof *g->strs);
    icl_strmap_init(&c.seen, (size_t)nkv);
    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv = (int)i + 1;
        if (parse_kv(&c, g, (int)i))
            goto fail;
    }
    icl_strmap_free(&c.seen);
    g->alignment = ICL_GGUF_DEFAULT_ALIGNMENT;
    const icl_gguf_kv *al = icl_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != ICL_GGUF_UINT32 || al->u == 0 || (al->u & (al->u - 1))) {
            icl_seterr(err, errsz, "%s: general.alignment must be a uint32 power of two (is %s %" PRIu64 ")", name,
                       icl_gguf_type_name(al->type), al->u);
            goto fail;
        }
        g->alignment = (size_t)al->u;
    }
    g->t = xcalloc(nt ? nt : 1, sizeof *g->t);
    icl_strmap_init(&c.seen, (size_t)nt);
    for (uint64_t i = 0; i < nt; i++) {
        g->n_tensors = (int)i + 1;
        if (parse_tensor_info(&c, g, (int)i))
            goto fail;
    }
    icl_strmap_free(&c.seen);
    c.where[0] = 0;
    size_t pad = (g->alignment - c.off % g->alignment) % g->alignment;
    if (nt == 0 && c.off + pad > len) {
        g->data_off = len; /* nothing follows; llama.cpp tolerates a missing final padding */
    } else {
        if (need(&c, pad, "padding before the tensor data"))
            goto fail;
        g->data_off = c.off + pad;
    }
    size_t data_len = len - g->data_off;
    icl_gguf_tensor **ord = xmalloc((nt ? nt : 1) * sizeof *ord);
    for (int i = 0; i < g->n_tensors; i++) {
        icl_gguf_tensor *t = &g->t[i];
        ord[i] = t;
        if (t->offset % g->alignment) {
            icl_seterr(err, errsz, "%s: tensor \"%s\": offset %" PRIu64 " is not a multiple of the alignment %zu", name,
                       t->name, t->offset, g->alignment);
            free(ord);
            goto fail;
        }
        if (t->offset > data_len || t->nbytes > data_len - t->offset) {
            icl_seterr(err, errsz,
                       "%s: tensor \"%s\": data at offset %" PRIu64 " (%zu bytes) runs past the end of the file (data section has %zu bytes)",
                       name, t->name, t->offset, t->nbytes, data_len);
            free(ord);
            goto fail;
        }
        t->data = g->base + g->data_off + t->offset;
    }
    qsort(ord, (size_t)g->n_tensors, sizeof *ord, cmp_off);
    for (int i = 1; i < g->n_tensors; i++)
        if (ord[i - 1]->offset + ord[i - 1]->nbytes > ord[i]->offset) {
            icl_seterr(err, errsz, "%s: tensors \"%s\" and \"%s\" overlap", name, ord[i - 1]->name, ord[i]->name);
            free(ord);
            goto fail;
        }
    free(ord);
    return g;
fail:
    icl_strmap_free(&c.seen);
    icl_gguf_close(g);
    return NULL;
}

icl_gguf *icl_gguf_open(const char *path, char *err, size_t errsz)
{
    void *map;
    size_t len;
    if (icl_map_file(path, &map, &len, err, errsz))
        return NULL;
    icl_gguf *g = icl_gguf_parse(map ? map : "", len, path, err, errsz);
    if (!g) {
        icl_unmap_file(map, len);
        return NULL;
    }
    g->map = map;
    g->map_len = len;
    return g;
}

void icl_gguf_close(icl_gguf *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_kv; i++) {
        free((char *)g->kv[i].key);
        free(g->strs[i]);
    }
    for (int i = 0; i < g->n_tensors; i++)
        free((char *)g->t[i].name);
    free(g->kv);
    free(g->strs);
    free(g->t);
    if (g->map)
        munmap(g->map, g->map_len);
    free(g->name);
    free(g);
}

uint32_t icl_gguf_version(const icl_gguf *g) { return g->version; }
size_t icl_gguf_alignment(const icl_gguf *g) { return g->alignment; }
const char *icl_gguf_name(const icl_gguf *g) { return g->name; }
size_t icl_gguf_data_offset(const icl_gguf *g) { return g->data_off; }
const void *icl_gguf_bytes(const icl_gguf *g, size_t *len)
{
    if (len)
        *len = g->len;
    return g->base;
}
int icl_gguf_n_kv(const icl_gguf *g) { return g->n_kv; }
const icl_gguf_kv *icl_gguf_kv_at(const icl_gguf *g, int i) { return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL; }
int icl_gguf_n_tensors(const icl_gguf *g) { return g->n_tensors; }
const icl_gguf_tensor *icl_gguf_tensor_at(const icl_gguf *g, int i)
{
    return i >= 0 && i < g->n_tensors ? &g->t[i] : NULL;
}

const icl_gguf_kv *icl_gguf_find_kv(const icl_gguf *g, const char *key)
{
    for (int i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key))
            return &g->kv[i];
    return NULL;
}

const icl_gguf_tensor *icl_gguf_find_tensor(const icl_gguf *g, const char *name)
{
    for (int i = 0; i < g->n_tensors; i++)
        if (g->t[i].name && !strcmp(g->t[i].name, name))
            return &g->t[i];
    return NULL;
}

static int wrong_type(const icl_gguf *g, const icl_gguf_kv *kv, const char *want, char *err, size_t errsz)
{
    if (kv->type == ICL_GGUF_ARRAY)
        icl_seterr(err, errsz, "%s: %s is an array of %s, expected %s", g->name, kv->key, icl_gguf_type_name(kv->elem), want);
    else
        icl_seterr(err, errsz, "%s: %s is a %s, expected %s", g->name, kv->key, icl_gguf_type_name(kv->type), want);
    return -1;
}

int icl_gguf_get_int(const icl_gguf *g, const char *key, int64_t *out, char *err, size_t errsz)
{
    const icl_gguf_kv *kv = icl_gguf_find_kv(g, key);
    if (!kv)
        return 1;
    if (!is_int_type(kv->type))
        return wrong_type(g, kv, "an integer", err, errsz);
    if (is_unsigned_type(kv->type)) {
        if (kv->u > INT64_MAX) {
            icl_seterr(err, errsz, "%s: %s: value %" PRIu64 " is out of range", g->name, key, kv->u);
            return -1;
        }
        *out = (int64_t)kv->u;
    } else
        *out = kv->i;
    return 0;
}

int icl_gguf_get_uint(const icl_gguf *g, const char *key, uint64_t *out, char *err, size_t errsz)
{
    const icl_gguf_kv *kv = icl_gguf_find_kv(g, key);
    if (!kv)
        return 1;
    if (!is_int_type(kv->type))
        return wrong_type(g, kv, "an integer", err, errsz);
    if (!is_unsigned_type(kv->type) && kv->i < 0) {
        icl_seterr(err, errsz, "%s: %s: value %" PRId64 " is negative", g->name, key, kv->i);
        return -1;
    }
    *out = is_unsigned_type(kv->type) ? kv->u : (uint64_t)kv->i;
    return 0;
}

int icl_gguf_get_float(const icl_gguf *g, const char *key, double *out, char *err, size_t errsz)
{
    const icl_gguf_kv *kv = icl_gguf_find_kv(g, key);
    if (!kv)
        return 1;
    if (kv->type != ICL_GGUF_FLOAT32 && kv->type != ICL_GGUF_FLOAT64)
        return wrong_type(g, kv, "a float", err, errsz);
    *out = kv->f;
    return 0;
}

int icl_gguf_get_bool(const icl_gguf *g, const char *key, int *out, char *err, size_t errsz)
{
    const icl_gguf_kv *kv = icl_gguf_find_kv(g, key);
    if (!kv)
        return 1;
    if (kv->type != ICL_GGUF_BOOL)
        return wrong_type(g, kv, "a bool", err, errsz);
    *out = (int)kv->u;
    return 0;
}

int icl_gguf_get_str(const icl_gguf *g, const char *key, icl_gguf_str *out, char *err, size_t errsz)
{
    const icl_gguf_kv *kv = icl_gguf_find_kv(g, key);
    if (!kv)
        return 1;
    if (kv->type != ICL_GGUF_STRING)
        return wrong_type(g, kv, "a string", err, errsz);
    *out = kv->s;
    return 0;
}

char *icl_gguf_get_strdup(const icl_gguf *g, const char *key, char *err, size_t errsz)
{
    icl_gguf_str s;
    if (icl_gguf_get_str(g, key, &s, err, errsz))
        return NULL;
    return xstrndup(s.p, s.len);
}

int icl_gguf_get_arr(const icl_gguf *g, const char *key, int want_elem, const icl_gguf_kv **out, char *err,
                     size_t errsz)
{
    const icl_gguf_kv *kv = icl_gguf_find_kv(g, key);
    if (!kv)
        return 1;
    int ok = kv->type == ICL_GGUF_ARRAY;
    if (ok && want_elem >= 0)
        ok = want_elem == ICL_GGUF_INT32 ? is_int_type(kv->elem) : (int)kv->elem == want_elem;
    if (!ok) {
        char want[64];
        snprintf(want, sizeof want, "an array of %s",
                 want_elem < 0 ? "values" : want_elem == ICL_GGUF_INT32 ? "integers" : icl_gguf_type_name((uint32_t)want_elem));
        return wrong_type(g, kv, want, err, errsz);
    }
    *out = kv;
    return 0;
}

static double arr_value(const icl_gguf_kv *kv, uint64_t i, int64_t *iv)
{
    size_t es = vsize(kv->elem);
    icl_gguf_kv tmp = {.type = kv->elem};
    decode_scalar(&tmp, (const uint8_t *)kv->data + i * es);
    if (kv->elem == ICL_GGUF_FLOAT32 || kv->elem == ICL_GGUF_FLOAT64) {
        /* truncated toward zero, saturated; NaN is 0 */
        *iv = tmp.f != tmp.f ? 0 : tmp.f >= 0x1p63 ? INT64_MAX : tmp.f <= -0x1p63 ? INT64_MIN : (int64_t)tmp.f;
        return tmp.f;
    }
    if (is_unsigned_type(kv->elem) || kv->elem == ICL_GGUF_BOOL) {
        *iv = (int64_t)tmp.u;
        return (double)tmp.u;
    }
    *iv = tmp.i;
    return (double)tmp.i;
}

int64_t icl_gguf_arr_int(const icl_gguf_kv *kv, uint64_t i)
{
    int64_t v = 0;
    if (kv->type == ICL_GGUF_ARRAY && i < kv->n && vsize(kv->elem))
        arr_value(kv, i, &v);
    return v;
}

double icl_gguf_arr_float(const icl_gguf_kv *kv, uint64_t i)
{
    int64_t v;
    if (kv->type == ICL_GGUF_ARRAY && i < kv->n && vsize(kv->elem))
        return arr_value(kv, i, &v);
    return 0;
}

/* ------------------------------------------------------------------ writer */

typedef struct {
    char *key;
    icl_gguf_type type, elem;
    icl_buf val; /* the value's bytes as written after the type (arrays: elem type, count, elements) */
} wkv;

typedef struct {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[ICL_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
} wtensor;

struct icl_gguf_writer {
    int n_kv, cap_kv, n_t, cap_t;
    wkv *kv;
    wtensor *t;
};

icl_gguf_writer *icl_gguf_writer_new(void) { return xcalloc(1, sizeof(icl_gguf_writer)); }

void icl_gguf_writer_free(icl_gguf_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        buf_free(&w->kv[i].val);
    }
    for (int i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* The slot for key (existing, emptied, or new). */
static wkv *wslot(icl_gguf_writer *w, const char *key, icl_gguf_type type)
{
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            buf_clear(&w->kv[i].val);
            w->kv[i].type = type;
            return &w->kv[i];
        }
    if (w->n_kv == w->cap_kv) {
        w->cap_kv = w->cap_kv ? 2 * w->cap_kv : 16;
        w->kv = xreallocarray(w->kv, (size_t)w->cap_kv, sizeof *w->kv);
    }
    wkv *k = &w->kv[w->n_kv++];
    memset(k, 0, sizeof *k);
    k->key = xstrdup(key);
    k->type = type;
    return k;
}

static void put_le(icl_buf *b, uint64_t v, size_t n)
{
    uint8_t x[8];
    for (size_t i = 0; i < n; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    buf_append(b, x, n);
}

static void put_str(icl_buf *b, const char *s, size_t n)
{
    put_le(b, n, 8);
    buf_append(b, s, n);
}

void icl_gguf_set_u32(icl_gguf_writer *w, const char *key, uint32_t v) { put_le(&wslot(w, key, ICL_GGUF_UINT32)->val, v, 4); }
void icl_gguf_set_i32(icl_gguf_writer *w, const char *key, int32_t v)
{
    put_le(&wslot(w, key, ICL_GGUF_INT32)->val, (uint32_t)v, 4);
}
void icl_gguf_set_u64(icl_gguf_writer *w, const char *key, uint64_t v) { put_le(&wslot(w, key, ICL_GGUF_UINT64)->val, v, 8); }
void icl_gguf_set_f32(icl_gguf_writer *w, const char *key, float v)
{
    uint32_t b;
    memcpy(&b, &v, 4);
    put_le(&wslot(w, key, ICL_GGUF_FLOAT32)->val, b, 4);
}
void icl_gguf_set_bool(icl_gguf_writer *w, const char *key, int v) { put_le(&wslot(w, key, ICL_GGUF_BOOL)->val, v != 0, 1); }
void icl_gguf_set_str(icl_gguf_writer *w, const char *key, const char *s, size_t len)
{
    put_str(&wslot(w, key, ICL_GGUF_STRING)->val, s, len);
}

void icl_gguf_set_arr(icl_gguf_writer *w, const char *key, icl_gguf_type elem, const void *data, uint64_t n)
{
    wkv *k = wslot(w, key, ICL_GGUF_ARRAY);
    k->elem = elem;
    put_le(&k->val, elem, 4);
    put_le(&k->val, n, 8);
    buf_append(&k->val, data, (size_t)n * vsize(elem));
}

void icl_gguf_set_arr_str(icl_gguf_writer *w, const char *key, const char *const *s, const size_t *lens, uint64_t n)
{
    wkv *k = wslot(w, key, ICL_GGUF_ARRAY);
    k->elem = ICL_GGUF_STRING;
    put_le(&k->val, ICL_GGUF_STRING, 4);
    put_le(&k->val, n, 8);
    for (uint64_t i = 0; i < n; i++)
        put_str(&k->val, s[i], lens ? lens[i] : strlen(s[i]));
}

void icl_gguf_set_kv(icl_gguf_writer *w, const icl_gguf_kv *kv)
{
    wkv *k = wslot(w, kv->key, kv->type);
    switch (kv->type) {
    case ICL_GGUF_STRING: put_str(&k->val, kv->s.p, kv->s.len); break;
    case ICL_GGUF_ARRAY:
        k->elem = kv->elem;
        put_le(&k->val, kv->elem, 4);
        put_le(&k->val, kv->n, 8);
        if (kv->elem == ICL_GGUF_STRING)
            for (uint64_t i = 0; i < kv->n; i++)
                put_str(&k->val, kv->strs[i].p, kv->strs[i].len);
        else
            buf_append(&k->val, kv->data, (size_t)kv->n * vsize(kv->elem));
        break;
    case ICL_GGUF_FLOAT32: {
        float f = (float)kv->f;
        uint32_t b;
        memcpy(&b, &f, 4);
        put_le(&k->val, b, 4);
        break;
    }
    case ICL_GGUF_FLOAT64: {
        uint64_t b;
        memcpy(&b, &kv->f, 8);
        put_le(&k->val, b, 8);
        break;
    }
    default:
        put_le(&k->val, is_unsigned_type(kv->type) || kv->type == ICL_GGUF_BOOL ? kv->u : (uint64_t)kv->i,
               vsize(kv->type));
    }
}

void icl_gguf_unset(icl_gguf_writer *w, const char *key)
{
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].key);
            buf_free(&w->kv[i].val);
            memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - i - 1) * sizeof *w->kv);
            w->n_kv--;
            return;
        }
}

int icl_gguf_add_tensor(icl_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                        const void *data, size_t nbytes, char *err, size_t errsz)
{
    if (!*name || strlen(name) >= ICL_GGUF_MAX_NAME) {
        icl_seterr(err, errsz, "tensor name \"%s\": must be 1 to 63 bytes", name);
        return -1;
    }
    for (int i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) {
            icl_seterr(err, errsz, "tensor \"%s\" added twice", name);
            return -1;
        }
    if (n_dims < 1 || n_dims > ICL_GGUF_MAX_DIMS || !icl_ggml_type_name(type)) {
        icl_seterr(err, errsz, "tensor \"%s\": bad n_dims %d or type %" PRIu32, name, n_dims, type);
        return -1;
    }
    size_t want = icl_ggml_row_size(type, ne[0]);
    for (int d = 1; d < n_dims && want; d++)
        want = ne[d] > 0 && (uint64_t)ne[d] <= SIZE_MAX / want ? want * (size_t)ne[d] : 0;
    if (!want || want != nbytes) {
        icl_seterr(err, errsz, "tensor \"%s\": %zu bytes given, its shape and type %s need %zu", name, nbytes,
                   icl_ggml_type_name(type), want);
        return -1;
    }
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? 2 * w->cap_t : 64;
        w->t = xreallocarray(w->t, (size_t)w->cap_t, sizeof *w->t);
    }
    wtensor *t = &w->t[w->n_t++];
    t->name = xstrdup(name);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < ICL_GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    return 0;
}

static int write_pad(int fd, size_t n)
{
    static const char zero[256];
    while (n) {
        size_t k = n < sizeof zero ? n : sizeof zero;
        if (icl_write_all(fd, zero, k))
            return -1;
        n -= k;
    }
    return 0;
}

int icl_gguf_write(icl_gguf_writer *w, const char *path, char *err, size_t errsz)
{
    size_t align = ICL_GGUF_DEFAULT_ALIGNMENT;
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, "general.alignment")) {
            uint32_t a = w->kv[i].type == ICL_GGUF_UINT32 ? (uint32_t)rd_le((const uint8_t *)w->kv[i].val.data, 4) : 0;
            if (!a || (a & (a - 1))) {
                icl_seterr(err, errsz, "%s: general.alignment must be a uint32 power of two", path);
                return -1;
            }
            align = a;
        }
    icl_buf h = {0};
    buf_append(&h, "GGUF", 4);
    put_le(&h, 3, 4);
    put_le(&h, (uint64_t)w->n_t, 8);
    put_le(&h, (uint64_t)w->n_kv, 8);
    for (int i = 0; i < w->n_kv; i++) {
        put_str(&h, w->kv[i].key, strlen(w->kv[i].key));
        put_le(&h, w->kv[i].type, 4);
        buf_append(&h, w->kv[i].val.data, w->kv[i].val.len);
    }
    size_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&h, t->name, strlen(t->name));
        put_le(&h, (uint64_t)t->n_dims, 4);
        for (int d = 0; d < t->n_dims; d++)
            put_le(&h, (uint64_t)t->ne[d], 8);
        put_le(&h, t->type, 4);
        put_le(&h, off, 8);
        off += (t->nbytes + align - 1) / align * align;
    }
    size_t hpad = (align - h.len % align) % align;
    size_t tmpsz = strlen(path) + ICL_ATOMIC_TMP_MAX;
    char *tmp = xmalloc(tmpsz);
    int fd = icl_atomic_open(path, tmp, tmpsz, err, errsz);
    if (fd < 0) {
        buf_free(&h);
        free(tmp);
        return -1;
    }
    int bad = icl_write_all(fd, h.data, h.len) || write_pad(fd, hpad);
    for (int i = 0; i < w->n_t && !bad; i++) {
        const wtensor *t = &w->t[i];
        bad = icl_write_all(fd, t->data, t->nbytes) || write_pad(fd, (align - t->nbytes % align) % align);
    }
    buf_free(&h);
    if (bad) {
        icl_seterr(err, errsz, "%s: write: %s", path, strerror(errno));
        icl_atomic_abort(fd, tmp);
        free(tmp);
        return -1;
    }
    int rc = icl_atomic_commit(fd, tmp, path, err, errsz);
    free(tmp);
    return rc;
}
