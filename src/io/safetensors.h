/* Host-side safetensors files: write a set of named tensors (byte-identical to what the Python
 * safetensors library writes for the same tensors) and read one back, validated strictly.
 * Format: u64 little-endian header length N, N bytes of JSON padded with spaces to a multiple
 * of 8, then the little-endian data of every tensor, back to back. */
#ifndef CLG_IO_SAFETENSORS_H
#define CLG_IO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clgrad/graph.h"
#include "clgrad/status.h"

/* Larger than CLG_MAX_DIMS so that foreign files with deeper tensors still load. */
#define CLG_ST_MAX_DIMS 16

/* The format's element types, in the declaration order of the Python library's Rust core:
 * its writer orders tensors by this order, descending, then by name. */
typedef enum clg_st_dtype {
    CLG_ST_DTYPE_BOOL,
    CLG_ST_DTYPE_U8,
    CLG_ST_DTYPE_I8,
    CLG_ST_DTYPE_F8_E5M2,
    CLG_ST_DTYPE_F8_E4M3,
    CLG_ST_DTYPE_I16,
    CLG_ST_DTYPE_U16,
    CLG_ST_DTYPE_F16,
    CLG_ST_DTYPE_BF16,
    CLG_ST_DTYPE_I32,
    CLG_ST_DTYPE_U32,
    CLG_ST_DTYPE_F32,
    CLG_ST_DTYPE_F64,
    CLG_ST_DTYPE_I64,
    CLG_ST_DTYPE_U64,
    CLG_ST_DTYPE_COUNT
} clg_st_dtype;

/* "F32" etc.; bytes per element; name to dtype (false if unknown). */
const char *clg_st_dtype_name(clg_st_dtype dtype);
size_t clg_st_dtype_size(clg_st_dtype dtype);
bool clg_st_dtype_parse(const char *name, clg_st_dtype *out);
/* The file dtype of an engine dtype (F32, I32). */
clg_st_dtype clg_st_dtype_of(clg_dtype dtype);

/* ---- Writing ---- */

/* One tensor to write. Everything is borrowed for the call; data holds numel elements in host
 * byte order (converted to little-endian on big-endian hosts). */
typedef struct clg_st_tensor {
    const char *name; /* UTF-8, unique, not "__metadata__" */
    clg_st_dtype dtype;
    int ndim; /* 0 .. CLG_ST_MAX_DIMS; 0 is a scalar */
    const int64_t *shape;
    const void *data;
} clg_st_tensor;

/* A "__metadata__" entry (both UTF-8 strings). */
typedef struct clg_st_meta {
    const char *key;
    const char *value;
} clg_st_meta;

/* Write the tensors (in any order; the file orders them) and metadata (may be NULL / 0: no
 * "__metadata__" entry is written) to path atomically (io/atomic_file.h). Bad arguments are
 * CLG_ERR_INVALID_ARGUMENT naming the tensor; file errors CLG_ERR_IO naming the path. */
clg_status clg_safetensors_save(const char *path, const clg_st_tensor *tensors, size_t count,
                                const clg_st_meta *meta, size_t meta_count);
/* The same file content in a malloc'd buffer (*out, *size); free() it. */
clg_status clg_safetensors_serialize(const clg_st_tensor *tensors, size_t count,
                                     const clg_st_meta *meta, size_t meta_count, void **out,
                                     size_t *size);

/* ---- Reading ---- */

/* A loaded file: every tensor's data in memory, in host byte order. */
typedef struct clg_safetensors clg_safetensors;

/* One tensor of a loaded file; owned by it. data is aligned to the element size. */
typedef struct clg_st_view {
    const char *name;
    clg_st_dtype dtype;
    int ndim;
    int64_t shape[CLG_ST_MAX_DIMS];
    int64_t numel;
    const void *data;
    size_t nbytes;
    uint64_t begin, end; /* data_offsets in the file, relative to the data section */
} clg_st_view;

/* Load and validate path: header length within the file and at most 100 MB, valid JSON, known
 * dtypes, offsets that tile the data section exactly (no gap, overlap or excess), shape x
 * dtype size equal to each span, unique names. Malformed content is CLG_ERR_FORMAT and an
 * unreadable file CLG_ERR_IO, both naming the file and what is wrong. */
clg_status clg_safetensors_load(const char *path, clg_safetensors **out);
/* The same from bytes in memory (copied); what names the source in messages. */
clg_status clg_safetensors_parse(const void *bytes, size_t size, const char *what,
                                 clg_safetensors **out);
void clg_safetensors_free(clg_safetensors *st);

/* Tensors in file order (by data offset): index 0 .. count-1. */
size_t clg_safetensors_count(const clg_safetensors *st);
const clg_st_view *clg_safetensors_at(const clg_safetensors *st, size_t index);
/* The tensor called name, or NULL. */
const clg_st_view *clg_safetensors_find(const clg_safetensors *st, const char *name);

/* "__metadata__" entries, in file order; lookup by key (NULL if absent). */
size_t clg_safetensors_meta_count(const clg_safetensors *st);
const clg_st_meta *clg_safetensors_meta_at(const clg_safetensors *st, size_t index);
const char *clg_safetensors_meta_get(const clg_safetensors *st, const char *key);

#endif
