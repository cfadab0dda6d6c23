/* safetensors.c - safetensors reader (mmap, validated) and writer (through fileio.h). */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "util.h"

struct icl_st_file {
    const unsigned char *base; /* whole file image */
    size_t len;
    void *map;                 /* mmap'd region (NULL when borrowed) */
    size_t maplen;
    int n;
    icl_st_tensor *t;
    icl_st_tensor **byname;    /* [n] sorted by name: icl_st_find's binary search */
    json_t *meta;              /* "__metadata__" or NULL */
};


float icl_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t icl_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float icl_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0) {
        if (m == 0) {
            u = s;
        } else { /* subnormal: normalise */
            e = 127 - 15 + 1;
            while (!(m & 0x400)) {
                m <<= 1;
                e--;
            }
            m &= 0x3ff;
            u = s | (e << 23) | (m << 13);
        }
    } else if (e == 31) {
        u = s | 0x7f800000u | (m << 13);
    } else {
        u = s | ((e + 127 - 15) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int dtype_of(const char *s, icl_st_dtype *dt, size_t *esz)
{
    static const struct { const char *name; icl_st_dtype dt; size_t esz; } tab[] = {
        {"F32", ICL_ST_F32, 4}, {"BF16", ICL_ST_BF16, 2}, {"F16", ICL_ST_F16, 2},
        {"F64", ICL_ST_OTHER, 8}, {"I64", ICL_ST_OTHER, 8}, {"I32", ICL_ST_OTHER, 4},
        {"I16", ICL_ST_OTHER, 2}, {"I8", ICL_ST_OTHER, 1}, {"U8", ICL_ST_OTHER, 1},
        {"BOOL", ICL_ST_OTHER, 1}, {"U16", ICL_ST_OTHER, 2}, {"U32", ICL_ST_OTHER, 4},
        {"U64", ICL_ST_OTHER, 8}, {"F8_E4M3", ICL_ST_OTHER, 1}, {"F8_E5M2", ICL_ST_OTHER, 1},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(s, tab[i].name)) {
            *dt = tab[i].dt;
            *esz = tab[i].esz;
            return 0;
        }
    return -1;
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp((*(icl_st_tensor *const *)a)->name, (*(icl_st_tensor *const *)b)->name);
}

static int cmp_by_offset(const void *a, const void *b)
{
    const icl_st_tensor *x = *(icl_st_tensor *const *)a, *y = *(icl_st_tensor *const *)b;
    const unsigned char *p = x->data, *q = y->data;
    if (p != q)
        return p < q ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes; /* an empty one first, as the library sorts */
}

void icl_st_close(icl_st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free(f->t[i].name);
    free(f->t);
    free(f->byname);
    json_decref(f->meta);
    if (f->map)
        munmap(f->map, f->maplen);
    free(f);
}

/* One tensor entry of the header into t: dtype, shape and data_offsets
 * checked against each other and against the data buffer (dlen bytes). */
static int parse_tensor(icl_st_tensor *t, const char *key, json_t *v, const unsigned char *data, size_t dlen,
                        const char *name, char *err, size_t errsz)
{
    if (!json_is_object(v)) {
        icl_seterr(err, errsz, "%s: tensor \"%s\": entry is not an object", name, key);
        return -1;
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2) {
        icl_seterr(err, errsz, "%s: tensor \"%s\": needs \"dtype\" (string), \"shape\" (array) and "
               "\"data_offsets\" ([begin, end])", name, key);
        return -1;
    }
    size_t esz;
    if (dtype_of(json_string_value(jd), &t->dtype, &esz)) {
        icl_seterr(err, errsz, "%s: tensor \"%s\": unknown dtype \"%.16s\"", name, key, json_string_value(jd));
        return -1;
    }
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", json_string_value(jd));
    if (json_array_size(js) > ICL_ST_MAX_DIMS) {
        icl_seterr(err, errsz, "%s: tensor \"%s\": %zu dimensions (at most %d)", name, key, json_array_size(js),
               ICL_ST_MAX_DIMS);
        return -1;
    }
    t->ndim = (int)json_array_size(js);
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        json_t *x = json_array_get(js, (size_t)d);
        if (!json_is_integer(x) || json_integer_value(x) < 0) {
            icl_seterr(err, errsz, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", name, key, d);
            return -1;
        }
        t->shape[d] = json_integer_value(x);
        if (__builtin_mul_overflow(numel, (size_t)t->shape[d], &numel)) {
            icl_seterr(err, errsz, "%s: tensor \"%s\": shape overflows", name, key);
            return -1;
        }
    }
    json_t *o0 = json_array_get(jo, 0), *o1 = json_array_get(jo, 1);
    if (!json_is_integer(o0) || !json_is_integer(o1) || json_integer_value(o0) < 0 ||
        json_integer_value(o1) < json_integer_value(o0)) {
        icl_seterr(err, errsz, "%s: tensor \"%s\": data_offsets must be integers 0 <= begin <= end", name, key);
        return -1;
    }
    uint64_t beg = (uint64_t)json_integer_value(o0), end = (uint64_t)json_integer_value(o1);
    if (end > dlen) {
        icl_seterr(err, errsz, "%s: tensor \"%s\": data_offsets [%llu, %llu] past the end of the data (%zu bytes): truncated?",
               name, key, (unsigned long long)beg, (unsigned long long)end, dlen);
        return -1;
    }
    size_t nb;
    if (__builtin_mul_overflow(numel, esz, &nb) || nb != end - beg) {
        icl_seterr(err, errsz, "%s: tensor \"%s\": %llu bytes of data for shape of %zu elements of %s", name, key,
               (unsigned long long)(end - beg), numel, t->dtype_name);
        return -1;
    }
    t->name = icl_xstrdup(key);
    t->numel = numel;
    t->nbytes = nb;
    t->data = data + beg;
    return 0;
}

/* No two tensors of f may overlap, and (as the safetensors library
 * requires) the data is theirs alone: the tensors, sorted by offset, start
 * at 0 and each where the one before ends (bytes between them, or before
 * the first, belong to none: a damaged file).  data: where it begins. */
static int check_overlap(icl_st_file *f, const unsigned char *data, const char *name, char *err, size_t errsz)
{
    if (f->n > 0) {
        icl_st_tensor **s = icl_xmalloc((size_t)f->n * sizeof *s);
        for (int i = 0; i < f->n; i++)
            s[i] = &f->t[i];
        qsort(s, (size_t)f->n, sizeof *s, cmp_by_offset);
        /* compare with the furthest end so far, not just the previous
         * tensor's: an empty tensor between two others hides nothing */
        const icl_st_tensor *far = NULL;
        for (int i = 0; i < f->n; i++) {
            if (!s[i]->nbytes)
                continue;
            if (far && (const unsigned char *)s[i]->data < (const unsigned char *)far->data + far->nbytes) {
                icl_seterr(err, errsz, "%s: tensors \"%s\" and \"%s\" overlap", name, far->name, s[i]->name);
                free(s);
                return -1;
            }
            far = s[i]; /* sorted by start and disjoint so far: s[i] ends furthest */
        }
        size_t at = 0; /* where the next tensor's data must start */
        for (int i = 0; i < f->n; i++) {
            size_t b = (size_t)((const unsigned char *)s[i]->data - data);
            if (b < at) { /* an empty tensor inside another's data: the library refuses it too */
                icl_seterr(err, errsz, "%s: tensor \"%s\" of no data is at byte %zu, inside the data before it "
                           "(which ends at %zu)", name, s[i]->name, b, at);
                free(s);
                return -1;
            }
            if (b > at) {
                icl_seterr(err, errsz, "%s: data bytes %zu to %zu belong to no tensor (\"%s\" starts at %zu; a "
                           "safetensors file's tensors follow each other from byte 0): a damaged file?", name, at, b,
                           s[i]->name, b);
                free(s);
                return -1;
            }
            at = b + s[i]->nbytes;
        }
        free(s);
    }
    return 0;
}

icl_st_file *icl_st_parse(const void *bytes, size_t len, const char *name, char *err, size_t errsz)
{
    const unsigned char *b = bytes;
    if (len < 8) {
        icl_seterr(err, errsz, "%s: not a safetensors file (%zu bytes, shorter than the 8-byte header length)", name, len);
        return NULL;
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | b[i];
    if (hl > ICL_ST_MAX_HEADER) {
        icl_seterr(err, errsz, "%s: header length %llu is absurd (limit %u bytes)", name, (unsigned long long)hl,
               ICL_ST_MAX_HEADER);
        return NULL;
    }
    if (hl > len - 8) {
        icl_seterr(err, errsz, "%s: header length %llu runs past the end of the file (%zu bytes): truncated?", name,
               (unsigned long long)hl, len);
        return NULL;
    }
    if (hl < 2) {
        icl_seterr(err, errsz, "%s: header of %llu bytes cannot be a JSON object", name, (unsigned long long)hl);
        return NULL;
    }
    const unsigned char *data = b + 8 + hl;
    size_t dlen = len - 8 - (size_t)hl;
    json_error_t je;
    json_t *h = json_loadb((const char *)b + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    if (!h) {
        icl_seterr(err, errsz, "%s: header is not valid JSON: %s (header byte %d)", name, je.text, je.position);
        return NULL;
    }
    if (!json_is_object(h)) {
        icl_seterr(err, errsz, "%s: header is not a JSON object", name);
        json_decref(h);
        return NULL;
    }
    icl_st_file *f = icl_xcalloc(1, sizeof *f);
    f->base = b;
    f->len = len;
    size_t cap = json_object_size(h);
    f->t = icl_xcalloc(cap ? cap : 1, sizeof *f->t);
    const char *key;
    json_t *v;
    json_object_foreach(h, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v) && !json_is_null(v)) {
                icl_seterr(err, errsz, "%s: __metadata__ is not an object", name);
                goto fail;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) if (!json_is_string(mv)) {
                icl_seterr(err, errsz, "%s: __metadata__ value \"%s\" is not a string", name, mk);
                goto fail;
            }
            if (json_is_object(v))
                f->meta = json_incref(v);
            continue;
        }
        if (parse_tensor(&f->t[f->n], key, v, data, dlen, name, err, errsz))
            goto fail;
        f->n++;
    }
    if (check_overlap(f, data, name, err, errsz))
        goto fail;
    size_t end = 0; /* the data ends with the last tensor's, as the safetensors library requires */
    for (int i = 0; i < f->n; i++) {
        size_t e = (size_t)((const unsigned char *)f->t[i].data - data) + f->t[i].nbytes;
        end = e > end ? e : end;
    }
    if (end != dlen) {
        icl_seterr(err, errsz, "%s: %zu bytes after the last tensor's data (a safetensors file ends with its last "
                   "tensor): a damaged or appended-to file?", name, dlen - end);
        goto fail;
    }
    /* names are unique (JSON_REJECT_DUPLICATES): a lookup per tensor of a
     * file of 10^5 tensors (an adapter's pairs) is no quadratic search */
    f->byname = icl_xmalloc(((size_t)f->n + 1) * sizeof *f->byname);
    for (int i = 0; i < f->n; i++)
        f->byname[i] = &f->t[i];
    qsort(f->byname, (size_t)f->n, sizeof *f->byname, cmp_by_name);
    json_decref(h);
    return f;
fail:
    json_decref(h);
    icl_st_close(f);
    return NULL;
}

icl_st_file *icl_st_open(const char *path, char *err, size_t errsz)
{
    void *map;
    size_t len;
    if (icl_map_file(path, &map, &len, err, errsz))
        return NULL;
    icl_st_file *f = icl_st_parse(map ? map : "", len, path, err, errsz);
    if (!f) {
        icl_unmap_file(map, len);
        return NULL;
    }
    f->map = map;
    f->maplen = len;
    return f;
}

int icl_st_count(const icl_st_file *f) { return f->n; }
const icl_st_tensor *icl_st_get(const icl_st_file *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }

const icl_st_tensor *icl_st_find(const icl_st_file *f, const char *name)
{
    for (int lo = 0, hi = f->n; lo < hi;) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->byname[mid]->name, name);
        if (!c)
            return f->byname[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *icl_st_metadata(const icl_st_file *f, const char *key)
{
    return f->meta ? json_string_value(json_object_get(f->meta, key)) : NULL;
}

const float *icl_st_f32_view(const icl_st_tensor *t)
{
    if (t->dtype != ICL_ST_F32 || ((uintptr_t)t->data & 3))
        return NULL;
    return t->data;
}

int icl_st_read_f32(const icl_st_tensor *t, float *dst, size_t n, char *err, size_t errsz)
{
    if (n != t->numel) {
        icl_seterr(err, errsz, "tensor \"%s\": has %zu elements, expected %zu", t->name, t->numel, n);
        return -1;
    }
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case ICL_ST_F32:
        memcpy(dst, p, n * 4); /* little-endian host assumed (x86-64, aarch64) */
        return 0;
    case ICL_ST_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = icl_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case ICL_ST_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = icl_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    default:
        icl_seterr(err, errsz, "tensor \"%s\": dtype %s is not a float type (want F32, BF16 or F16)", t->name,
               t->dtype_name);
        return -1;
    }
}

/* ---------------------------------------------------------------- writing */

int icl_st_write(const char *path, const icl_st_entry *e, int n, char *err, size_t errsz)
{
    json_t *h = json_object();
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(h, "__metadata__", meta);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (json_object_get(h, e[i].name) || !strcmp(e[i].name, "__metadata__")) {
            icl_seterr(err, errsz, "%s: tensor name \"%s\" used twice", path, e[i].name);
            json_decref(h);
            return -1;
        }
        size_t numel = 1;
        json_t *shape = json_array();
        for (int d = 0; d < e[i].ndim; d++) {
            numel *= (size_t)e[i].shape[d];
            json_array_append_new(shape, json_integer(e[i].shape[d]));
        }
        json_t *t = json_object();
        json_object_set_new(t, "dtype", json_string("F32"));
        json_object_set_new(t, "shape", shape);
        json_t *o = json_array();
        json_array_append_new(o, json_integer((json_int_t)off));
        json_array_append_new(o, json_integer((json_int_t)(off + numel * 4)));
        json_object_set_new(t, "data_offsets", o);
        json_object_set_new(h, e[i].name, t);
        off += numel * 4;
    }
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    size_t jl = strlen(js), pad = (8 - (8 + jl) % 8) % 8;
    icl_buf hb = {0};
    unsigned char len8[8];
    uint64_t hl = jl + pad;
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)(hl >> (8 * i));
    icl_buf_append(&hb, len8, 8);
    icl_buf_append(&hb, js, jl);
    for (size_t i = 0; i < pad; i++)
        icl_buf_putc(&hb, ' ');
    free(js);
    size_t tsz = strlen(path) + ICL_ATOMIC_TMP_MAX;
    char *tmp = icl_xmalloc(tsz);
    int fd = icl_atomic_open(path, tmp, tsz, err, errsz), rc = -1;
    if (fd >= 0) {
        int bad = icl_write_all(fd, hb.data, hb.len) < 0;
        for (int i = 0; i < n && !bad; i++) {
            size_t numel = 1;
            for (int d = 0; d < e[i].ndim; d++)
                numel *= (size_t)e[i].shape[d];
            bad = icl_write_all(fd, e[i].data, numel * 4) < 0;
        }
        if (bad) {
            icl_seterr(err, errsz, "%s: write: %s", path, strerror(errno));
            icl_atomic_abort(fd, tmp);
        } else {
            rc = icl_atomic_commit(fd, tmp, path, err, errsz);
        }
    }
    free(tmp);
    icl_buf_free(&hb);
    return rc;
}
