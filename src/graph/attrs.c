/* Op attributes: the schema of each kind and the one printer that reads any kind through its
 * schema, plus the node descriptions built on it (CLGRAD_LOG's schedule trace). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "graph/attrs.h"
#include "graph/graph_internal.h"

_Static_assert(sizeof(clg_conv_layout) == sizeof(int), "enum fields are read as int");

#define ONE(nm, ty, st, member) {.name = nm, .type = ty, .offset = offsetof(st, member)}
#define MANY(nm, ty, st, member, n)                                                            \
    {.name = nm, .type = ty, .offset = offsetof(st, member), .count = n}
#define LIST(nm, ty, st, member, len)                                                          \
    {.name = nm,                                                                               \
     .type = ty,                                                                               \
     .offset = offsetof(st, member),                                                           \
     .count = CLG_ATTR_LIST,                                                                   \
     .len_offset = offsetof(st, len)}
/* a run of n int64 members of the convolution's geometry, from member on */
#define GEO(nm, member, n)                                                                     \
    {.name = nm,                                                                               \
     .type = CLG_ATTR_I64,                                                                     \
     .offset = offsetof(clg_attr_conv, geo) + offsetof(clg_conv_geo, member),                  \
     .count = n}

static const clg_attr_field scalar_fields[] = {
    ONE("value", CLG_ATTR_F32, clg_attr_scalar, value),
};
static const clg_attr_field scalars_fields[] = {
    ONE("a", CLG_ATTR_F32, clg_attr_scalars, a),
    ONE("b", CLG_ATTR_F32, clg_attr_scalars, b),
};
static const clg_attr_field reduce_fields[] = {
    ONE("axes", CLG_ATTR_AXES, clg_attr_reduce, axes_mask),
    ONE("scale", CLG_ATTR_F32, clg_attr_reduce, scale),
};
static const clg_attr_field random_fields[] = {
    ONE("a", CLG_ATTR_F32, clg_attr_random, a),
    ONE("b", CLG_ATTR_F32, clg_attr_random, b),
    ONE("seed", CLG_ATTR_U64, clg_attr_random, seed),
};
static const clg_attr_field matmul_fields[] = {
    ONE("trans_a", CLG_ATTR_BOOL, clg_attr_matmul, trans_a),
    ONE("trans_b", CLG_ATTR_BOOL, clg_attr_matmul, trans_b),
};
static const clg_attr_field axis_fields[] = {
    ONE("axis", CLG_ATTR_INT, clg_attr_axis, axis),
};
static const clg_attr_field permute_fields[] = {
    LIST("perm", CLG_ATTR_I64, clg_attr_permute, perm, ndim),
};
static const clg_attr_field slice_fields[] = {
    ONE("axis", CLG_ATTR_INT, clg_attr_slice, axis),
    ONE("start", CLG_ATTR_I64, clg_attr_slice, start),
    ONE("step", CLG_ATTR_I64, clg_attr_slice, step),
};
static const clg_attr_field embed_fields[] = {
    LIST("start", CLG_ATTR_I64, clg_attr_embed, start, ndim),
    LIST("step", CLG_ATTR_I64, clg_attr_embed, step, ndim),
    ONE("value", CLG_ATTR_F32, clg_attr_embed, value),
};
static const char *const layout_names[CLG_CONV_LAYOUT_COUNT] = {
    [CLG_CONV_LAYOUT_AUTO] = "auto",
    [CLG_CONV_LAYOUT_BATCHED] = "batched",
    [CLG_CONV_LAYOUT_FOLDED] = "folded",
    [CLG_CONV_LAYOUT_CONVGEMM] = "convgemm",
};
static const clg_attr_field conv_fields[] = {
    GEO("kernel", kh, 2),
    GEO("stride", stride_h, 2),
    GEO("pad", pad_top, 2),
    GEO("dilation", dilation_h, 2),
    GEO("groups", groups, 1),
    GEO("image", n, 4),
    GEO("out", oh, 2),
    {.name = "layout",
     .type = CLG_ATTR_ENUM,
     .offset = offsetof(clg_attr_conv, layout),
     .names = layout_names,
     .n_names = CLG_CONV_LAYOUT_COUNT},
    ONE("pad_value", CLG_ATTR_F32, clg_attr_conv, pad_value),
};
static const clg_attr_field pool_fields[] = {
    MANY("kernel", CLG_ATTR_I64, clg_attr_pool, kernel, 2),
    MANY("stride", CLG_ATTR_I64, clg_attr_pool, stride, 2),
    MANY("pad", CLG_ATTR_I64, clg_attr_pool, pad, 2),
};
static const clg_attr_field loss_fields[] = {
    ONE("scale", CLG_ATTR_F32, clg_attr_loss, scale),
};
static const char *const row_mask_names[CLG_ROW_MASK_COUNT] = {
    [CLG_ROW_MASK_NONE] = "none",
    [CLG_ROW_MASK_CAUSAL] = "causal",
    [CLG_ROW_MASK_ADDITIVE] = "additive",
    [CLG_ROW_MASK_CAUSAL_ADDITIVE] = "causal+additive",
};
static const clg_attr_field rows_fields[] = {
    ONE("scale", CLG_ATTR_F32, clg_attr_rows, scale),
    ONE("eps", CLG_ATTR_F32, clg_attr_rows, eps),
    {.name = "mask",
     .type = CLG_ATTR_ENUM,
     .offset = offsetof(clg_attr_rows, mask),
     .names = row_mask_names,
     .n_names = CLG_ROW_MASK_COUNT},
    ONE("rows", CLG_ATTR_I64, clg_attr_rows, rows),
    ONE("diagonal", CLG_ATTR_I64, clg_attr_rows, diagonal),
    ONE("weight", CLG_ATTR_BOOL, clg_attr_rows, weight),
    ONE("bias", CLG_ATTR_BOOL, clg_attr_rows, bias),
};
static const clg_attr_field attention_fields[] = {
    ONE("scale", CLG_ATTR_F32, clg_attr_attention, scale),
    ONE("causal", CLG_ATTR_BOOL, clg_attr_attention, causal),
    ONE("mask", CLG_ATTR_BOOL, clg_attr_attention, has_mask),
};
static const clg_attr_field sample_fields[] = {
    ONE("k", CLG_ATTR_I64, clg_attr_sample, k),
    ONE("temperature", CLG_ATTR_F32, clg_attr_sample, temperature),
    ONE("seed", CLG_ATTR_U64, clg_attr_sample, seed),
};
static const clg_attr_field scan_fields[] = {
    ONE("axis", CLG_ATTR_INT, clg_attr_scan, axis),
    ONE("exclusive", CLG_ATTR_BOOL, clg_attr_scan, exclusive),
    ONE("reverse", CLG_ATTR_BOOL, clg_attr_scan, reverse),
};
/* by clg_cell_kind (clgrad/ops.h, above this layer; ops/recurrent.c asserts the order) */
static const char *const cell_names[] = {"rnn_tanh", "rnn_relu", "lstm", "gru"};
static const clg_attr_field recurrent_fields[] = {
    {.name = "cell",
     .type = CLG_ATTR_ENUM,
     .offset = offsetof(clg_attr_recurrent, cell),
     .names = cell_names,
     .n_names = 4},
    ONE("reverse", CLG_ATTR_BOOL, clg_attr_recurrent, reverse),
    ONE("T", CLG_ATTR_I64, clg_attr_recurrent, T),
    ONE("B", CLG_ATTR_I64, clg_attr_recurrent, B),
    ONE("H", CLG_ATTR_I64, clg_attr_recurrent, H),
    ONE("bias", CLG_ATTR_BOOL, clg_attr_recurrent, bias),
    ONE("h0", CLG_ATTR_BOOL, clg_attr_recurrent, h0),
    ONE("c0", CLG_ATTR_BOOL, clg_attr_recurrent, c0),
    ONE("lengths", CLG_ATTR_BOOL, clg_attr_recurrent, lengths),
    ONE("dout", CLG_ATTR_BOOL, clg_attr_recurrent, dout),
    ONE("dh_n", CLG_ATTR_BOOL, clg_attr_recurrent, dh_n),
    ONE("dc_n", CLG_ATTR_BOOL, clg_attr_recurrent, dc_n),
    ONE("dh0", CLG_ATTR_BOOL, clg_attr_recurrent, dh0),
};

#define N_OF(a) (int)(sizeof(a) / sizeof(a)[0])
#define SCHEMA(nm, list) {.name = nm, .n_fields = N_OF(list), .fields = list}

static const clg_attr_schema schemas[CLG_ATTRS_COUNT] = {
    [CLG_ATTRS_NONE] = {.name = ""},
    [CLG_ATTRS_SCALAR] = SCHEMA("scalar", scalar_fields),
    [CLG_ATTRS_SCALARS] = SCHEMA("scalars", scalars_fields),
    [CLG_ATTRS_REDUCE] = SCHEMA("reduce", reduce_fields),
    [CLG_ATTRS_RANDOM] = SCHEMA("random", random_fields),
    [CLG_ATTRS_MATMUL] = SCHEMA("matmul", matmul_fields),
    [CLG_ATTRS_AXIS] = SCHEMA("axis", axis_fields),
    [CLG_ATTRS_PERMUTE] = SCHEMA("permute", permute_fields),
    [CLG_ATTRS_SLICE] = SCHEMA("slice", slice_fields),
    [CLG_ATTRS_EMBED] = SCHEMA("embed", embed_fields),
    [CLG_ATTRS_CONV] = SCHEMA("conv", conv_fields),
    [CLG_ATTRS_POOL] = SCHEMA("pool2d", pool_fields),
    [CLG_ATTRS_LOSS] = SCHEMA("loss", loss_fields),
    [CLG_ATTRS_ROWS] = SCHEMA("rows", rows_fields),
    [CLG_ATTRS_ATTENTION] = SCHEMA("attention", attention_fields),
    [CLG_ATTRS_SAMPLE] = SCHEMA("sample", sample_fields),
    [CLG_ATTRS_SCAN] = SCHEMA("scan", scan_fields),
    [CLG_ATTRS_RECURRENT] = SCHEMA("recurrent", recurrent_fields),
    /* what the pointer holds is its op's business */
    [CLG_ATTRS_OPAQUE] = {.name = "opaque"},
};

const clg_attr_schema *clg_attrs_schema(clg_attrs_kind kind) {
    return (int)kind >= 0 && kind < CLG_ATTRS_COUNT ? &schemas[kind] : NULL;
}

/* ---- the printer ---- */

typedef struct out_buf {
    char *buf;
    size_t size, len;
} out_buf;

static void put(out_buf *o, const char *fmt, ...) CLG_PRINTF(2, 3);
static void put(out_buf *o, const char *fmt, ...) {
    if (o->len + 1 >= o->size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    o->len = o->len + (size_t)n < o->size ? o->len + (size_t)n : o->size - 1;
}

static void put_value(out_buf *o, const clg_attr_field *f, const char *p) {
    switch (f->type) {
    case CLG_ATTR_BOOL: {
        bool v;
        memcpy(&v, p, sizeof v);
        put(o, "%s", v ? "true" : "false");
        break;
    }
    case CLG_ATTR_INT: {
        int v;
        memcpy(&v, p, sizeof v);
        put(o, "%d", v);
        break;
    }
    case CLG_ATTR_I64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        put(o, "%lld", (long long)v);
        break;
    }
    case CLG_ATTR_F32: {
        float v;
        memcpy(&v, p, sizeof v);
        put(o, "%g", (double)v);
        break;
    }
    case CLG_ATTR_U64: {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        put(o, "%llu", (unsigned long long)v);
        break;
    }
    case CLG_ATTR_AXES: {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        put(o, "[");
        for (int i = 0, n = 0; i < 32; ++i)
            if (v & (1u << i)) put(o, "%s%d", n++ ? ", " : "", i);
        put(o, "]");
        break;
    }
    case CLG_ATTR_ENUM: {
        int v;
        memcpy(&v, p, sizeof v);
        if (v >= 0 && v < f->n_names && f->names[v])
            put(o, "%s", f->names[v]);
        else
            put(o, "%d", v);
        break;
    }
    default:
        put(o, "?");
        break;
    }
}

static size_t type_size(clg_attr_type type) {
    return type == CLG_ATTR_INT ? sizeof(int) : type == CLG_ATTR_I64 ? sizeof(int64_t) : 0;
}

const char *clg_attrs_describe(const clg_attrs *a, char *buf, size_t size) {
    if (!buf || !size) return buf;
    buf[0] = '\0';
    out_buf o = {buf, size, 0};
    const clg_attr_schema *s = a ? clg_attrs_schema(a->kind) : NULL;
    if (!s) {
        if (a) put(&o, "attrs?%d", (int)a->kind);
        return buf;
    }
    if (a->kind == CLG_ATTRS_NONE) return buf;
    const char *base = (const char *)&a->scalar; /* every member of the union starts here */
    put(&o, "%s{", s->name);
    for (int i = 0; i < s->n_fields; ++i) {
        const clg_attr_field *f = &s->fields[i];
        const char *p = base + f->offset;
        put(&o, "%s%s=", i ? " " : "", f->name);
        if (f->count == CLG_ATTR_LIST) {
            int n;
            memcpy(&n, base + f->len_offset, sizeof n);
            put(&o, "[");
            for (int k = 0; k < n && k < CLG_MAX_DIMS; ++k) {
                put(&o, "%s", k ? ", " : "");
                put_value(&o, f, p + (size_t)k * type_size(f->type));
            }
            put(&o, "]");
        } else {
            for (int k = 0; k < (f->count > 1 ? f->count : 1); ++k) {
                put(&o, "%s", k ? "x" : "");
                put_value(&o, f, p + (size_t)k * type_size(f->type));
            }
        }
    }
    put(&o, "}");
    return buf;
}

/* ---- nodes ---- */

const char *clg_node_describe(const clg_tensor *t, char *buf, size_t size) {
    char shape[200], attrs[512];
    clg_attrs_describe(&t->attrs, attrs, sizeof attrs);
    snprintf(buf, size, "%s %s %s%s%s", t->info->name,
             clg_shape_str(t->ndim, t->shape, shape, sizeof shape), clg_dtype_name(t->dtype),
             attrs[0] ? " " : "", attrs);
    return buf;
}

void clg_trace_nodes(const clg_graph *g, const int *ids, int n) {
    if (!clg_trace_enabled()) return;
    for (int k = 0; k < n; ++k) {
        char d[768];
        clg_trace("step %d: node %d %s", k, ids[k],
                  clg_node_describe(g->nodes[ids[k]], d, sizeof d));
    }
}
