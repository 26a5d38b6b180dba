/* safetensors writer and strict reader (see safetensors.h). The writer reproduces the Python
 * library's layout: tensors sorted by dtype rank (descending) then name, compact JSON with
 * "__metadata__" first, header padded with spaces to a multiple of 8. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/atomic_file.h"
#include "io/json.h"
#include "io/safetensors.h"

/* The Python library refuses larger headers; so do we, before allocating for one. */
#define MAX_HEADER_BYTES 100000000u

static const struct {
    const char *name;
    size_t size;
} dtype_table[CLG_ST_DTYPE_COUNT] = {
    [CLG_ST_DTYPE_BOOL] = {"BOOL", 1},       [CLG_ST_DTYPE_U8] = {"U8", 1},
    [CLG_ST_DTYPE_I8] = {"I8", 1},           [CLG_ST_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [CLG_ST_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [CLG_ST_DTYPE_I16] = {"I16", 2},
    [CLG_ST_DTYPE_U16] = {"U16", 2},         [CLG_ST_DTYPE_F16] = {"F16", 2},
    [CLG_ST_DTYPE_BF16] = {"BF16", 2},       [CLG_ST_DTYPE_I32] = {"I32", 4},
    [CLG_ST_DTYPE_U32] = {"U32", 4},         [CLG_ST_DTYPE_F32] = {"F32", 4},
    [CLG_ST_DTYPE_F64] = {"F64", 8},         [CLG_ST_DTYPE_I64] = {"I64", 8},
    [CLG_ST_DTYPE_U64] = {"U64", 8},
};

const char *clg_st_dtype_name(clg_st_dtype dtype) {
    if ((int)dtype < 0 || dtype >= CLG_ST_DTYPE_COUNT) return "?";
    return dtype_table[dtype].name;
}

size_t clg_st_dtype_size(clg_st_dtype dtype) {
    if ((int)dtype < 0 || dtype >= CLG_ST_DTYPE_COUNT) return 0;
    return dtype_table[dtype].size;
}

bool clg_st_dtype_parse(const char *name, clg_st_dtype *out) {
    for (int i = 0; i < CLG_ST_DTYPE_COUNT; ++i) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (clg_st_dtype)i;
            return true;
        }
    }
    return false;
}

clg_st_dtype clg_st_dtype_of(clg_dtype dtype) {
    return dtype == CLG_I32 ? CLG_ST_DTYPE_I32 : CLG_ST_DTYPE_F32;
}

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void swap_elements(unsigned char *p, size_t nbytes, size_t elem) {
    for (size_t i = 0; i + elem <= nbytes; i += elem) {
        for (size_t a = 0, z = elem - 1; a < z; ++a, --z) {
            unsigned char t = p[i + a];
            p[i + a] = p[i + z];
            p[i + z] = t;
        }
    }
}

/* ---- Writing ---- */

typedef struct entry {
    const clg_st_tensor *t;
    uint64_t nbytes;
} entry;

static int compare_entries(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->t->dtype != y->t->dtype) return x->t->dtype > y->t->dtype ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Reject the first duplicate among names[0, n) (sorted in place). */
static clg_status check_unique(const char **names, size_t n, const char *what) {
    qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 1; i < n; ++i)
        if (strcmp(names[i - 1], names[i]) == 0)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT, "safetensors: %s '%s' appears twice", what,
                            names[i]);
    return CLG_OK;
}

static clg_status check_tensor(const clg_st_tensor *t, uint64_t *nbytes) {
    /* "" is a name like any other: the reader and the Python library accept it. */
    if (!t->name) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "safetensors: a tensor's name is NULL");
    if (!clg_json_utf8_valid(t->name, strlen(t->name)))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "safetensors: tensor name is not valid UTF-8");
    if (strcmp(t->name, "__metadata__") == 0)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "safetensors: \"__metadata__\" is reserved, not a tensor name");
    if ((int)t->dtype < 0 || t->dtype >= CLG_ST_DTYPE_COUNT)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "safetensors: tensor '%s': unknown dtype %d",
                        t->name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > CLG_ST_MAX_DIMS || (t->ndim > 0 && !t->shape))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "safetensors: tensor '%s': ndim %d out of range 0..%d or shape NULL",
                        t->name, t->ndim, CLG_ST_MAX_DIMS);
    uint64_t n = clg_st_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; ++d) {
        if (t->shape[d] < 0)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                            "safetensors: tensor '%s': dimension %d is negative (%lld)", t->name, d,
                            (long long)t->shape[d]);
        uint64_t dim = (uint64_t)t->shape[d];
        if (dim && n > SIZE_MAX / dim)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT, "safetensors: tensor '%s' is too large",
                            t->name);
        n *= dim;
    }
    if (n && !t->data)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "safetensors: tensor '%s': data is NULL",
                        t->name);
    *nbytes = n;
    return CLG_OK;
}

/* Validates the arguments and builds the sorted entries and the padded header. */
static clg_status prepare(const clg_st_tensor *tensors, size_t count, const clg_st_meta *meta,
                          size_t meta_count, entry **entries_out, clg_json_buf *header,
                          uint64_t *data_bytes) {
    if ((count && !tensors) || (meta_count && !meta))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "safetensors: tensors or metadata is NULL");
    entry *entries = calloc(count ? count : 1, sizeof *entries);
    size_t nnames = count > meta_count ? count : meta_count;
    const char **names = calloc(nnames ? nnames : 1, sizeof *names);
    clg_status st = CLG_OK;
    if (!entries || !names) {
        st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
        goto done;
    }
    for (size_t i = 0; i < meta_count && st == CLG_OK; ++i) {
        if (!meta[i].key || !meta[i].value)
            st = clg_fail(CLG_ERR_INVALID_ARGUMENT, "safetensors: metadata entry %zu is NULL", i);
        else if (!clg_json_utf8_valid(meta[i].key, strlen(meta[i].key)) ||
                 !clg_json_utf8_valid(meta[i].value, strlen(meta[i].value)))
            st = clg_fail(CLG_ERR_INVALID_ARGUMENT,
                          "safetensors: metadata entry %zu is not valid UTF-8", i);
        else
            names[i] = meta[i].key;
    }
    if (st == CLG_OK) st = check_unique(names, meta_count, "metadata key");
    for (size_t i = 0; i < count && st == CLG_OK; ++i) {
        entries[i].t = &tensors[i];
        st = check_tensor(&tensors[i], &entries[i].nbytes);
        names[i] = tensors[i].name;
    }
    if (st == CLG_OK) st = check_unique(names, count, "tensor name");
    if (st != CLG_OK) goto done;

    qsort(entries, count, sizeof *entries, compare_entries);

    clg_json_buf_puts(header, "{");
    if (meta_count) {
        /* The Python library writes its metadata in hash order (random); the caller's order
         * is the deterministic choice, and is byte-identical for a single entry. */
        clg_json_buf_puts(header, "\"__metadata__\":{");
        for (size_t i = 0; i < meta_count; ++i) {
            if (i) clg_json_buf_puts(header, ",");
            clg_json_buf_string(header, meta[i].key);
            clg_json_buf_puts(header, ":");
            clg_json_buf_string(header, meta[i].value);
        }
        clg_json_buf_puts(header, "}");
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < count; ++i) {
        const clg_st_tensor *t = entries[i].t;
        if (i || meta_count) clg_json_buf_puts(header, ",");
        clg_json_buf_string(header, t->name);
        clg_json_buf_puts(header, ":{\"dtype\":\"");
        clg_json_buf_puts(header, clg_st_dtype_name(t->dtype));
        clg_json_buf_puts(header, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; ++d) {
            if (d) clg_json_buf_puts(header, ",");
            clg_json_buf_int(header, t->shape[d]);
        }
        clg_json_buf_puts(header, "],\"data_offsets\":[");
        clg_json_buf_int(header, (int64_t)offset);
        clg_json_buf_puts(header, ",");
        if (entries[i].nbytes > UINT64_MAX - offset) {
            st = clg_fail(CLG_ERR_INVALID_ARGUMENT, "safetensors: tensors too large in total");
            goto done;
        }
        offset += entries[i].nbytes;
        clg_json_buf_int(header, (int64_t)offset);
        clg_json_buf_puts(header, "]}");
    }
    clg_json_buf_puts(header, "}");
    while (!header->oom && header->len % 8)
        clg_json_buf_puts(header, " ");
    if (header->oom) st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    *data_bytes = offset;

done:
    free(names);
    if (st == CLG_OK)
        *entries_out = entries;
    else
        free(entries);
    return st;
}

/* Where serialized bytes go: an atomic file or a memory buffer. */
typedef struct sink {
    clg_atomic_file *file;
    unsigned char *mem;
    size_t pos;
} sink;

static clg_status emit(sink *s, const void *data, size_t n) {
    if (s->file) return clg_atomic_file_write(s->file, data, n);
    if (n) memcpy(s->mem + s->pos, data, n);
    s->pos += n;
    return CLG_OK;
}

static clg_status emit_all(sink *s, const entry *entries, size_t count, const clg_json_buf *h) {
    unsigned char len[8];
    uint64_t n = h->len;
    for (int i = 0; i < 8; ++i)
        len[i] = (unsigned char)(n >> (8 * i));
    clg_status st = emit(s, len, 8);
    if (st == CLG_OK) st = emit(s, h->data, h->len);
    bool swap = !host_is_little_endian();
    for (size_t i = 0; i < count && st == CLG_OK; ++i) {
        const unsigned char *p = entries[i].t->data;
        size_t total = (size_t)entries[i].nbytes;
        size_t elem = clg_st_dtype_size(entries[i].t->dtype);
        if (!swap || elem == 1) {
            st = emit(s, p, total);
            continue;
        }
        /* Big-endian host: convert a bounded chunk at a time rather than the whole tensor. */
        unsigned char chunk[4096];
        for (size_t off = 0; off < total && st == CLG_OK; off += sizeof chunk) {
            size_t k = total - off < sizeof chunk ? total - off : sizeof chunk;
            memcpy(chunk, p + off, k);
            swap_elements(chunk, k, elem);
            st = emit(s, chunk, k);
        }
    }
    return st;
}

clg_status clg_safetensors_serialize(const clg_st_tensor *tensors, size_t count,
                                     const clg_st_meta *meta, size_t meta_count, void **out,
                                     size_t *size) {
    if (!out || !size)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_safetensors_serialize: out is NULL");
    *out = NULL;
    *size = 0;
    entry *entries = NULL;
    clg_json_buf header = {0};
    uint64_t data_bytes = 0;
    clg_status st = prepare(tensors, count, meta, meta_count, &entries, &header, &data_bytes);
    if (st == CLG_OK && data_bytes > SIZE_MAX - 8 - header.len)
        st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "safetensors: tensors too large for memory");
    sink s = {0};
    if (st == CLG_OK) {
        s.mem = malloc(8 + header.len + (size_t)data_bytes);
        if (!s.mem) st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    }
    if (st == CLG_OK) st = emit_all(&s, entries, count, &header);
    if (st == CLG_OK) {
        *out = s.mem;
        *size = s.pos;
    } else {
        free(s.mem);
    }
    free(entries);
    free(header.data);
    return st;
}

clg_status clg_safetensors_save(const char *path, const clg_st_tensor *tensors, size_t count,
                                const clg_st_meta *meta, size_t meta_count) {
    if (!path) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_safetensors_save: path is NULL");
    entry *entries = NULL;
    clg_json_buf header = {0};
    uint64_t data_bytes = 0;
    clg_status st = prepare(tensors, count, meta, meta_count, &entries, &header, &data_bytes);
    if (st != CLG_OK) {
        free(header.data);
        char why[512];
        snprintf(why, sizeof why, "%s", clg_last_error());
        return clg_fail(st, "%s: %s", path, why);
    }
    sink s = {0};
    st = clg_atomic_file_open(path, &s.file);
    if (st == CLG_OK) {
        st = emit_all(&s, entries, count, &header);
        if (st == CLG_OK)
            st = clg_atomic_file_commit(s.file);
        else
            clg_atomic_file_abort(s.file);
    }
    free(entries);
    free(header.data);
    return st;
}

/* ---- Reading ---- */

struct clg_safetensors {
    size_t count;
    clg_st_view *views;    /* by data offset */
    clg_st_view **by_name; /* sorted by name */
    size_t meta_count;
    clg_st_meta *meta;
    unsigned char *data; /* the data section */
    void **realigned;    /* copies of tensors whose offset is not a multiple of their size */
    size_t n_realigned;
};

void clg_safetensors_free(clg_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->count; ++i)
        free((char *)st->views[i].name);
    for (size_t i = 0; i < st->meta_count; ++i) {
        free((char *)st->meta[i].key);
        free((char *)st->meta[i].value);
    }
    for (size_t i = 0; i < st->n_realigned; ++i)
        free(st->realigned[i]);
    free(st->realigned);
    free(st->views);
    free(st->by_name);
    free(st->meta);
    free(st->data);
    free(st);
}

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static clg_status oom(const char *what) {
    return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
}

static clg_status read_metadata(clg_safetensors *st, const clg_json *m, const char *what) {
    if (m->kind != CLG_JSON_OBJECT)
        return clg_fail(CLG_ERR_FORMAT, "%s: \"__metadata__\" is a %s, expected an object", what,
                        clg_json_kind_name(m->kind));
    st->meta = calloc(m->length ? m->length : 1, sizeof *st->meta);
    if (!st->meta) return oom(what);
    for (size_t i = 0; i < m->length; ++i) {
        if (m->items[i].kind != CLG_JSON_STRING)
            return clg_fail(CLG_ERR_FORMAT, "%s: metadata \"%s\" is a %s, expected a string", what,
                            m->keys[i], clg_json_kind_name(m->items[i].kind));
        for (size_t j = 0; j < i; ++j)
            if (strcmp(m->keys[j], m->keys[i]) == 0)
                return clg_fail(CLG_ERR_FORMAT, "%s: metadata key \"%s\" appears twice", what,
                                m->keys[i]);
        st->meta[i].key = dup_string(m->keys[i]);
        st->meta[i].value = dup_string(m->items[i].string);
        st->meta_count = i + 1;
        if (!st->meta[i].key || !st->meta[i].value) return oom(what);
    }
    return CLG_OK;
}

/* Reads one tensor entry of the header into v (name set by the caller). */
static clg_status read_entry(clg_st_view *v, const clg_json *e, const char *what) {
    const char *name = v->name;
    if (e->kind != CLG_JSON_OBJECT)
        return clg_fail(CLG_ERR_FORMAT, "%s: tensor '%s': entry is a %s, expected an object", what,
                        name, clg_json_kind_name(e->kind));
    for (size_t i = 0; i < e->length; ++i) {
        const char *k = e->keys[i];
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return clg_fail(CLG_ERR_FORMAT, "%s: tensor '%s': unknown field \"%s\"", what, name, k);
        for (size_t j = 0; j < i; ++j)
            if (strcmp(e->keys[j], k) == 0)
                return clg_fail(CLG_ERR_FORMAT, "%s: tensor '%s': field \"%s\" appears twice", what,
                                name, k);
    }
    const clg_json *dtype = clg_json_get(e, "dtype");
    const clg_json *shape = clg_json_get(e, "shape");
    const clg_json *offsets = clg_json_get(e, "data_offsets");
    if (!dtype || !shape || !offsets)
        return clg_fail(CLG_ERR_FORMAT, "%s: tensor '%s': missing field \"%s\"", what, name,
                        !dtype   ? "dtype"
                        : !shape ? "shape"
                                 : "data_offsets");
    if (dtype->kind != CLG_JSON_STRING)
        return clg_fail(CLG_ERR_FORMAT, "%s: tensor '%s': dtype is a %s, expected a string", what,
                        name, clg_json_kind_name(dtype->kind));
    if (!clg_st_dtype_parse(dtype->string, &v->dtype))
        return clg_fail(CLG_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", what, name,
                        dtype->string);
    if (shape->kind != CLG_JSON_ARRAY)
        return clg_fail(CLG_ERR_FORMAT, "%s: tensor '%s': shape is a %s, expected an array", what,
                        name, clg_json_kind_name(shape->kind));
    if (shape->length > CLG_ST_MAX_DIMS)
        return clg_fail(CLG_ERR_UNSUPPORTED, "%s: tensor '%s' has %zu dimensions; at most %d", what,
                        name, shape->length, CLG_ST_MAX_DIMS);
    v->ndim = (int)shape->length;
    uint64_t numel = 1;
    for (size_t d = 0; d < shape->length; ++d) {
        const clg_json *x = &shape->items[d];
        if (x->kind != CLG_JSON_INT || x->integer < 0)
            return clg_fail(CLG_ERR_FORMAT,
                            "%s: tensor '%s': shape entry %zu is not a non-negative integer", what,
                            name, d);
        uint64_t dim = (uint64_t)x->integer;
        if (dim && numel > (uint64_t)INT64_MAX / dim)
            return clg_fail(CLG_ERR_FORMAT, "%s: tensor '%s': shape product overflows", what, name);
        numel *= dim;
        v->shape[d] = x->integer;
    }
    v->numel = (int64_t)numel;
    if (offsets->kind != CLG_JSON_ARRAY || offsets->length != 2 ||
        offsets->items[0].kind != CLG_JSON_INT || offsets->items[1].kind != CLG_JSON_INT ||
        offsets->items[0].integer < 0 || offsets->items[1].integer < 0)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets must be two non-negative integers", what,
                        name);
    v->begin = (uint64_t)offsets->items[0].integer;
    v->end = (uint64_t)offsets->items[1].integer;
    if (v->begin > v->end)
        return clg_fail(CLG_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end first",
                        what, name, (unsigned long long)v->begin, (unsigned long long)v->end);
    size_t elem = clg_st_dtype_size(v->dtype);
    if (numel > UINT64_MAX / elem || numel * elem != v->end - v->begin)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: tensor '%s': %s with %llu elements needs %llu bytes but "
                        "data_offsets [%llu, %llu] span %llu",
                        what, name, clg_st_dtype_name(v->dtype), (unsigned long long)numel,
                        (unsigned long long)(numel * elem), (unsigned long long)v->begin,
                        (unsigned long long)v->end, (unsigned long long)(v->end - v->begin));
    return CLG_OK;
}

static int compare_views(const void *a, const void *b) {
    const clg_st_view *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* The views, sorted by offset, must tile [0, data_size) exactly. */
static clg_status check_tiling(const clg_safetensors *st, uint64_t data_size, const char *what) {
    uint64_t at = 0;
    for (size_t i = 0; i < st->count; ++i) {
        const clg_st_view *v = &st->views[i];
        if (v->begin < at)
            return clg_fail(CLG_ERR_FORMAT,
                            "%s: tensor '%s' data_offsets [%llu, %llu] overlap tensor '%s' "
                            "[%llu, %llu]",
                            what, v->name, (unsigned long long)v->begin, (unsigned long long)v->end,
                            st->views[i - 1].name, (unsigned long long)st->views[i - 1].begin,
                            (unsigned long long)st->views[i - 1].end);
        if (v->begin > at)
            return clg_fail(CLG_ERR_FORMAT,
                            "%s: gap in the data section: bytes [%llu, %llu) belong to no "
                            "tensor (next is '%s')",
                            what, (unsigned long long)at, (unsigned long long)v->begin, v->name);
        at = v->end;
    }
    if (at != data_size)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: tensors cover %llu bytes but the data section has %llu (%s)", what,
                        (unsigned long long)at, (unsigned long long)data_size,
                        at < data_size ? "trailing bytes" : "file truncated");
    return CLG_OK;
}

static int compare_view_names(const void *a, const void *b) {
    const clg_st_view *x = *(const clg_st_view *const *)a, *y = *(const clg_st_view *const *)b;
    return strcmp(x->name, y->name);
}

/* Parses the header text and attaches the data section (taking ownership of data). */
static clg_status build(const char *what, const char *header, uint64_t header_len,
                        unsigned char *data, uint64_t data_size, clg_safetensors **out) {
    clg_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        free(data);
        return oom(what);
    }
    st->data = data;
    clg_json *root = NULL;
    clg_status status = CLG_OK;
    if (header_len == 0 || header[0] != '{') {
        status = clg_fail(CLG_ERR_FORMAT, "%s: header does not start with '{'", what);
        goto fail;
    }
    status = clg_json_parse(header, (size_t)header_len, what, &root);
    if (status != CLG_OK) goto fail;
    if (root->kind != CLG_JSON_OBJECT) { /* unreachable after the '{' check, kept for safety */
        status = clg_fail(CLG_ERR_FORMAT, "%s: header is not a JSON object", what);
        goto fail;
    }
    st->views = calloc(root->length ? root->length : 1, sizeof *st->views);
    st->by_name = calloc(root->length ? root->length : 1, sizeof *st->by_name);
    if (!st->views || !st->by_name) {
        status = oom(what);
        goto fail;
    }
    bool seen_meta = false;
    for (size_t i = 0; i < root->length; ++i) {
        if (strcmp(root->keys[i], "__metadata__") == 0) {
            if (seen_meta) {
                status = clg_fail(CLG_ERR_FORMAT, "%s: \"__metadata__\" appears twice", what);
                goto fail;
            }
            seen_meta = true;
            status = read_metadata(st, &root->items[i], what);
            if (status != CLG_OK) goto fail;
            continue;
        }
        clg_st_view *v = &st->views[st->count];
        v->name = dup_string(root->keys[i]);
        if (!v->name) {
            status = oom(what);
            goto fail;
        }
        st->count++;
        status = read_entry(v, &root->items[i], what);
        if (status != CLG_OK) goto fail;
    }
    clg_json_free(root);
    root = NULL;

    qsort(st->views, st->count, sizeof *st->views, compare_views);
    for (size_t i = 0; i < st->count; ++i)
        st->by_name[i] = &st->views[i];
    qsort(st->by_name, st->count, sizeof *st->by_name, compare_view_names);
    for (size_t i = 1; i < st->count; ++i) {
        const char *a = st->by_name[i - 1]->name, *b = st->by_name[i]->name;
        if (strcmp(a, b) == 0) {
            status = clg_fail(CLG_ERR_FORMAT, "%s: tensor name '%s' appears twice", what, b);
            goto fail;
        }
    }
    status = check_tiling(st, data_size, what);
    if (status != CLG_OK) goto fail;

    bool swap = !host_is_little_endian();
    for (size_t i = 0; i < st->count; ++i) {
        clg_st_view *v = &st->views[i];
        size_t elem = clg_st_dtype_size(v->dtype);
        v->nbytes = (size_t)(v->end - v->begin);
        unsigned char *p = st->data + v->begin;
        if (v->begin % elem) {
            /* The Python writer aligns every tensor; a foreign file may not, and callers cast
             * data to the element type. */
            void **list = realloc(st->realigned, (st->n_realigned + 1) * sizeof *list);
            if (!list) {
                status = oom(what);
                goto fail;
            }
            st->realigned = list;
            unsigned char *copy = malloc(v->nbytes);
            if (!copy) {
                status = oom(what);
                goto fail;
            }
            memcpy(copy, p, v->nbytes);
            st->realigned[st->n_realigned++] = copy;
            p = copy;
        }
        if (swap && elem > 1) swap_elements(p, v->nbytes, elem);
        v->data = p;
    }
    *out = st;
    return CLG_OK;

fail:
    clg_json_free(root);
    clg_safetensors_free(st);
    return status;
}

/* Splits bytes into header and data section after checking the header length. */
static clg_status check_length(const unsigned char *first8, uint64_t file_size, const char *what,
                               uint64_t *header_len) {
    if (file_size < 8)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: file is %llu bytes, too short for the 8-byte header length", what,
                        (unsigned long long)file_size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
        n = (n << 8) | first8[i];
    if (n > MAX_HEADER_BYTES)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: header length %llu is over the %u-byte limit (not a safetensors "
                        "file?)",
                        what, (unsigned long long)n, MAX_HEADER_BYTES);
    if (n > file_size - 8)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: header length %llu runs past the end of the file (%llu bytes)", what,
                        (unsigned long long)n, (unsigned long long)file_size);
    *header_len = n;
    return CLG_OK;
}

clg_status clg_safetensors_parse(const void *bytes, size_t size, const char *what,
                                 clg_safetensors **out) {
    if (!out || (!bytes && size))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_safetensors_parse: NULL argument");
    *out = NULL;
    if (!what) what = "safetensors";
    const unsigned char *b = bytes;
    uint64_t n = 0;
    clg_status st = check_length(b, size, what, &n);
    if (st != CLG_OK) return st;
    size_t data_size = size - 8 - (size_t)n;
    unsigned char *data = malloc(data_size ? data_size : 1);
    if (!data) return oom(what);
    memcpy(data, b + 8 + n, data_size);
    return build(what, (const char *)b + 8, n, data, data_size, out);
}

clg_status clg_safetensors_load(const char *path, clg_safetensors **out) {
    if (!out || !path)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_safetensors_load: NULL argument");
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return clg_fail(CLG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return clg_fail(CLG_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char first8[8] = {0};
    if (size >= 8 && fread(first8, 1, 8, fp) != 8) {
        fclose(fp);
        return clg_fail(CLG_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    }
    uint64_t n = 0;
    clg_status st = check_length(first8, size, path, &n);
    if (st != CLG_OK) {
        fclose(fp);
        return st;
    }
    uint64_t data_size = size - 8 - n;
    if (data_size > SIZE_MAX - 1) {
        fclose(fp);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: too large for memory", path);
    }
    char *header = malloc((size_t)n + 1);
    unsigned char *data = malloc(data_size ? (size_t)data_size : 1);
    if (!header || !data) {
        free(header);
        free(data);
        fclose(fp);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory for %llu bytes", path,
                        (unsigned long long)size);
    }
    if (fread(header, 1, (size_t)n, fp) != (size_t)n ||
        fread(data, 1, (size_t)data_size, fp) != (size_t)data_size) {
        st = clg_fail(CLG_ERR_IO, "%s: read failed: %s", path,
                      ferror(fp) ? strerror(errno) : "file shrank while reading");
        free(header);
        free(data);
        fclose(fp);
        return st;
    }
    fclose(fp);
    st = build(path, header, n, data, data_size, out);
    free(header);
    return st;
}

size_t clg_safetensors_count(const clg_safetensors *st) {
    return st ? st->count : 0;
}

const clg_st_view *clg_safetensors_at(const clg_safetensors *st, size_t index) {
    if (!st || index >= st->count) return NULL;
    return &st->views[index];
}

const clg_st_view *clg_safetensors_find(const clg_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    size_t lo = 0, hi = st->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const clg_st_view *v = st->by_name[mid];
        int c = strcmp(name, v->name);
        if (c == 0) return v;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

size_t clg_safetensors_meta_count(const clg_safetensors *st) {
    return st ? st->meta_count : 0;
}

const clg_st_meta *clg_safetensors_meta_at(const clg_safetensors *st, size_t index) {
    if (!st || index >= st->meta_count) return NULL;
    return &st->meta[index];
}

const char *clg_safetensors_meta_get(const clg_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (size_t i = 0; i < st->meta_count; ++i)
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}
