#define _DEFAULT_SOURCE /* madvise and MADV_HUGEPAGE, where the system has them */
/* Graphs and their nodes: creation, leaves (inputs, constants, scalars, parameters), the
 * sticky error, shape helpers and tensor queries. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

#include "core/context.h"
#include "graph/graph_internal.h"

const clg_op_info clg_op_input = {.name = "input", .kind = CLG_KIND_LEAF};
const clg_op_info clg_op_param = {.name = "param", .kind = CLG_KIND_LEAF};
const clg_op_info clg_op_constant = {.name = "constant", .kind = CLG_KIND_LEAF};
const clg_op_info clg_op_scalar = {.name = "scalar", .kind = CLG_KIND_SCALAR};
const clg_op_info clg_op_poison = {.name = "poison", .kind = CLG_KIND_POISON};

size_t clg_dtype_size(clg_dtype dtype) {
    (void)dtype;
    return 4; /* f32 and i32 */
}

const char *clg_dtype_name(clg_dtype dtype) {
    switch (dtype) {
    case CLG_F32:
        return "f32";
    case CLG_I32:
        return "i32";
    default:
        return "?";
    }
}

/* ---- shapes ---- */

int64_t clg_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
}

void clg_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; --i) {
        strides[i] = s;
        s *= shape[i];
    }
}

bool clg_is_contiguous(const clg_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; --i) {
        if (t->shape[i] != 1 && t->strides[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

/* Strides for viewing a layout (old shape and strides) as a new shape without copying, if
 * possible: group dimensions of equal products; within an old group the dims must be laid
 * out contiguously relative to each other. */
bool clg_reshape_strides(int old_nd, const int64_t *old_shape, const int64_t *old_strides, int nd,
                         const int64_t *shape, int64_t *out) {
    int on = 0;
    int64_t os[CLG_MAX_DIMS], ost[CLG_MAX_DIMS];
    for (int i = 0; i < old_nd; ++i)
        if (old_shape[i] != 1) {
            os[on] = old_shape[i];
            ost[on++] = old_strides[i];
        }
    int oi = 0, ni = 0;
    while (ni < nd) {
        if (shape[ni] == 1) {
            out[ni++] = 0;
            continue;
        }
        if (oi >= on) return false;
        int o0 = oi, n0 = ni;
        int64_t op = os[oi++], np = shape[ni++];
        while (op != np) {
            if (op < np) {
                if (oi >= on) return false;
                op *= os[oi++];
            } else {
                while (ni < nd && shape[ni] == 1) out[ni++] = 0;
                if (ni >= nd) return false;
                np *= shape[ni++];
            }
        }
        for (int k = o0; k + 1 < oi; ++k)
            if (ost[k] != ost[k + 1] * os[k + 1]) return false;
        int64_t s = ost[oi - 1];
        for (int k = ni - 1; k >= n0; --k) {
            if (shape[k] == 1) {
                out[k] = 0;
                continue;
            }
            out[k] = s;
            s *= shape[k];
        }
    }
    return oi == on;
}

bool clg_same_shape(const clg_tensor *a, const clg_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; ++i)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *clg_shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t len = 0;
    len += (size_t)snprintf(buf + len, size - len, "[");
    for (int i = 0; i < ndim && len < size; ++i)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? ", " : "",
                                (long long)shape[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
    return buf;
}

bool clg_norm_axis(int axis, int ndim, int *out) {
    if (axis < 0) axis += ndim;
    if (axis < 0 || axis >= ndim) return false;
    *out = axis;
    return true;
}

bool clg_broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                         int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; ++i) {
        int64_t da = i < n - na ? 1 : a[i - (n - na)];
        int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
        if (da != db && da != 1 && db != 1) return false;
        out[i] = da == 1 ? db : da;
    }
    *nout = n;
    return true;
}

/* ---- errors ---- */

clg_tensor *clg_graph_fail(clg_graph *g, clg_status status, const char *fmt, ...) {
    if (g->error == CLG_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->error_msg, sizeof g->error_msg, fmt, ap);
        va_end(ap);
        g->error = status;
    }
    clg_fail(g->error, "%s", g->error_msg);
    return g->poison;
}

bool clg_check_inputs(clg_graph *g, const char *op, int n, clg_tensor *const *xs) {
    if (g->error != CLG_OK) return false;
    for (int i = 0; i < n; ++i) {
        if (!xs[i]) {
            clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "%s: input %d is NULL", op, i);
            return false;
        }
        if (xs[i]->graph != g) {
            clg_graph_fail(g, CLG_ERR_GRAPH, "%s: input %d belongs to another graph", op, i);
            return false;
        }
        if (xs[i]->info->kind == CLG_KIND_POISON) {
            clg_graph_fail(g, CLG_ERR_GRAPH, "%s: input %d is the result of a failed op", op, i);
            return false;
        }
    }
    return true;
}

clg_status clg_graph_status(const clg_graph *g) {
    return g ? g->error : CLG_ERR_INVALID_ARGUMENT;
}

const char *clg_graph_error(const clg_graph *g) {
    return g ? g->error_msg : "graph is NULL";
}

clg_context *clg_graph_context(const clg_graph *g) {
    return g ? g->ctx : NULL;
}

size_t clg_graph_node_count(const clg_graph *g) {
    return g ? g->n_nodes - 1 : 0; /* not the poison node */
}

/* ---- nodes ---- */

/* Nodes come from slabs that double in size, from 64 nodes up to SLAB_MAX_BYTES, freed with
 * the graph: a graph of n nodes costs O(log n) allocations instead of n calloc/free pairs,
 * which dominated building and differentiating long unrolled graphs. Full-size slabs are
 * aligned to and asked to be backed by 2 MiB pages where the system offers it (Linux's
 * transparent huge pages on madvise): the first touch of fresh node memory otherwise costs a
 * page fault every ten nodes, a third of clg_backward's time on a graph of 40,000 nodes. */
#define SLAB_MAX_BYTES ((size_t)2 << 20)

struct clg_node_slab {
    struct clg_node_slab *next;
    size_t used, cap;
    clg_tensor nodes[];
};

static void node_slabs_free(clg_graph *g) {
    for (struct clg_node_slab *s = g->slabs, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    g->slabs = NULL;
}

static struct clg_node_slab *slab_new(size_t cap) {
    const size_t max_cap = (SLAB_MAX_BYTES - sizeof(struct clg_node_slab)) / sizeof(clg_tensor);
    struct clg_node_slab *s = NULL;
    if (cap >= max_cap) {
        cap = max_cap;
#ifdef MADV_HUGEPAGE
        if (posix_memalign((void **)&s, SLAB_MAX_BYTES, SLAB_MAX_BYTES) != 0) return NULL;
        madvise(s, SLAB_MAX_BYTES, MADV_HUGEPAGE); /* advice only: failure changes nothing */
        memset(s, 0, SLAB_MAX_BYTES);
#endif
    }
    if (!s) s = calloc(1, sizeof *s + cap * sizeof s->nodes[0]);
    if (s) s->cap = cap;
    return s;
}

static clg_tensor *node_alloc(clg_graph *g) {
    if (g->n_nodes == g->cap_nodes) {
        size_t nc = g->cap_nodes ? g->cap_nodes * 2 : 64;
        clg_tensor **nn = realloc(g->nodes, nc * sizeof *nn);
        if (!nn) return NULL;
        g->nodes = nn;
        g->cap_nodes = nc;
    }
    struct clg_node_slab *s = g->slabs;
    if (!s || s->used == s->cap) {
        struct clg_node_slab *ns = slab_new(s ? s->cap * 2 : 64);
        if (!ns) return NULL;
        ns->next = s;
        g->slabs = s = ns;
    }
    clg_tensor *t = &s->nodes[s->used++];
    t->id = (int)g->n_nodes;
    t->graph = g;
    g->nodes[g->n_nodes++] = t;
    return t;
}

clg_tensor *clg_node_new(clg_graph *g, const clg_op_info *info, clg_dtype dtype, int ndim,
                         const int64_t *shape, int n_in, clg_tensor *const *in) {
    if (ndim < 0 || ndim > CLG_MAX_DIMS)
        return clg_graph_fail(g, CLG_ERR_SHAPE, "%s: %d dimensions (at most %d)", info->name,
                              ndim, CLG_MAX_DIMS);
    for (int i = 0; i < ndim; ++i)
        if (shape[i] < 1) {
            char b[160];
            return clg_graph_fail(g, CLG_ERR_SHAPE, "%s: shape %s has a dimension below 1",
                                  info->name, clg_shape_str(ndim, shape, b, sizeof b));
        }
    int64_t numel = clg_shape_numel(ndim, shape);
    if (numel > INT32_MAX) {
        char b[160];
        return clg_graph_fail(g, CLG_ERR_SHAPE, "%s: shape %s has more than 2^31-1 elements",
                              info->name, clg_shape_str(ndim, shape, b, sizeof b));
    }
    clg_tensor *t = g->error ? NULL : node_alloc(g);
    if (!t) {
        return g->error ? g->poison
                        : clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory",
                                         info->name);
    }
    t->info = info;
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->n_in = n_in;
    t->in = t->in_small;
    if (n_in > CLG_NODE_INLINE_INPUTS) {
        t->in = malloc((size_t)n_in * sizeof *t->in);
        if (!t->in) {
            t->in = t->in_small;
            t->n_in = 0;
            return clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "%s: out of host memory",
                                  info->name);
        }
    }
    for (int i = 0; i < n_in; ++i) t->in[i] = in[i];
    t->base = t;
    clg_contiguous_strides(ndim, t->shape, t->strides);
    return t;
}

clg_tensor *clg_view_new(clg_graph *g, const clg_op_info *info, clg_tensor *x, int ndim,
                         const int64_t *shape, int64_t offset, const int64_t *strides) {
    clg_tensor *t = clg_node_new(g, info, x->dtype, ndim, shape, 1, &x);
    if (t == g->poison) return t;
    t->base = x->base;
    t->offset = offset;
    if (ndim) memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    return t;
}

/* ---- graphs ---- */

static void graph_free_owned(void *g) {
    clg_graph_free(g);
}

clg_graph *clg_graph_new(clg_context *ctx) {
    if (!ctx) {
        clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_graph_new: ctx is NULL");
        return NULL;
    }
    clg_graph *g = calloc(1, sizeof *g);
    if (!g) {
        clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_graph_new: out of host memory");
        return NULL;
    }
    g->ctx = ctx;
    g->poison = node_alloc(g);
    if (!g->poison || clg_context_own(ctx, g, graph_free_owned, false) != CLG_OK) {
        node_slabs_free(g);
        free(g->nodes);
        free(g);
        clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_graph_new: out of host memory");
        return NULL;
    }
    g->poison->info = &clg_op_poison;
    g->poison->base = g->poison;
    return g;
}

void clg_graph_free(clg_graph *g) {
    if (!g) return;
    clg_owners_free_all(&g->dependents); /* its plans */
    for (size_t i = 0; i < g->n_nodes; ++i) {
        clg_tensor *t = g->nodes[i];
        if (t->info && t->info->free_attrs) t->info->free_attrs(t);
        if (t->in != t->in_small) free(t->in);
        free(t->data);
        free(t->name);
    }
    node_slabs_free(g);
    free(g->nodes);
    free(g->param_nodes);
    clg_context_disown(g->ctx, g);
    free(g);
}

clg_status clg_graph_add_dependent(clg_graph *g, void *object, clg_free_fn free_fn) {
    return clg_owners_add(&g->dependents, object, free_fn, false);
}

void clg_graph_remove_dependent(clg_graph *g, void *object) {
    clg_owners_remove(&g->dependents, object);
}

/* ---- leaves ---- */

static bool check_shape_args(clg_graph *g, const char *op, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > CLG_MAX_DIMS) {
        clg_graph_fail(g, CLG_ERR_SHAPE, "%s: %d dimensions (0 to %d allowed)", op, ndim,
                       CLG_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !shape) {
        clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "%s: shape is NULL", op);
        return false;
    }
    return true;
}

static bool check_dtype(clg_graph *g, const char *op, clg_dtype dtype) {
    if ((int)dtype < 0 || dtype >= CLG_DTYPE_COUNT) {
        clg_graph_fail(g, CLG_ERR_DTYPE, "%s: unknown dtype %d", op, (int)dtype);
        return false;
    }
    return true;
}

clg_tensor *clg_input(clg_graph *g, const char *name, clg_dtype dtype, int ndim,
                      const int64_t *shape) {
    CLG_GUARD(g, "clg_input", 0, NULL);
    if (!check_shape_args(g, "clg_input", ndim, shape) || !check_dtype(g, "clg_input", dtype))
        return g->poison;
    clg_tensor *t = clg_node_new(g, &clg_op_input, dtype, ndim, shape, 0, NULL);
    if (t == g->poison) return t;
    const char *nm = name ? name : "input";
    t->name = malloc(strlen(nm) + 1);
    if (!t->name) return clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "clg_input: out of memory");
    strcpy(t->name, nm);
    return t;
}

clg_tensor *clg_constant(clg_graph *g, clg_dtype dtype, int ndim, const int64_t *shape,
                         const void *data) {
    CLG_GUARD(g, "clg_constant", 0, NULL);
    if (!check_shape_args(g, "clg_constant", ndim, shape) ||
        !check_dtype(g, "clg_constant", dtype))
        return g->poison;
    if (!data) return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "clg_constant: data is NULL");
    clg_tensor *t = clg_node_new(g, &clg_op_constant, dtype, ndim, shape, 0, NULL);
    if (t == g->poison) return t;
    size_t bytes = (size_t)clg_shape_numel(ndim, shape) * clg_dtype_size(dtype);
    t->data = malloc(bytes);
    if (!t->data) return clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "clg_constant: out of memory");
    memcpy(t->data, data, bytes);
    return t;
}

clg_tensor *clg_scalar(clg_graph *g, float value) {
    CLG_GUARD(g, "clg_scalar", 0, NULL);
    clg_tensor *t = clg_node_new(g, &clg_op_scalar, CLG_F32, 0, NULL, 0, NULL);
    if (t != g->poison) t->attrs = (clg_attrs){.kind = CLG_ATTRS_SCALAR, .scalar = {value}};
    return t;
}

/* ---- the parameter map ---- */

static size_t param_slot(const clg_tensor *const *slots, size_t n_slots, const clg_param *p) {
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    size_t mask = n_slots - 1, i = (size_t)(h >> 17) & mask;
    while (slots[i] && slots[i]->param != p) i = (i + 1) & mask;
    return i;
}

clg_tensor *clg_graph_param_node(const clg_graph *g, const clg_param *p) {
    if (!g->n_param_slots) return NULL;
    return g->param_nodes[param_slot((const clg_tensor *const *)g->param_nodes, g->n_param_slots, p)];
}

static bool param_map_add(clg_graph *g, clg_tensor *t) {
    if (2 * (g->n_param_nodes + 1) > g->n_param_slots) {
        size_t n = g->n_param_slots ? 2 * g->n_param_slots : 32;
        clg_tensor **slots = calloc(n, sizeof *slots);
        if (!slots) return false;
        for (size_t i = 0; i < g->n_param_slots; ++i)
            if (g->param_nodes[i])
                slots[param_slot((const clg_tensor *const *)slots, n, g->param_nodes[i]->param)] =
                    g->param_nodes[i];
        free(g->param_nodes);
        g->param_nodes = slots;
        g->n_param_slots = n;
    }
    g->param_nodes[param_slot((const clg_tensor *const *)g->param_nodes, g->n_param_slots,
                              t->param)] = t;
    g->n_param_nodes++;
    return true;
}

clg_tensor *clg_param_tensor(clg_graph *g, clg_param *p) {
    CLG_GUARD(g, "clg_param_tensor", 0, NULL);
    if (!p) return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "clg_param_tensor: p is NULL");
    if (p->ctx != g->ctx)
        return clg_graph_fail(g, CLG_ERR_GRAPH,
                              "clg_param_tensor: parameter '%s' belongs to another context",
                              p->name);
    clg_tensor *known = clg_graph_param_node(g, p);
    if (known) return known;
    clg_tensor *t = clg_node_new(g, &clg_op_param, p->dtype, p->ndim, p->shape, 0, NULL);
    if (t == g->poison) return t;
    t->param = p;
    if (!param_map_add(g, t))
        return clg_graph_fail(g, CLG_ERR_OUT_OF_MEMORY, "clg_param_tensor: out of host memory");
    return t;
}

/* ---- queries ---- */

int clg_tensor_ndim(const clg_tensor *t) {
    return t ? t->ndim : 0;
}

const int64_t *clg_tensor_shape(const clg_tensor *t) {
    return t ? t->shape : NULL;
}

int64_t clg_tensor_dim(const clg_tensor *t, int axis) {
    int a;
    if (!t || !clg_norm_axis(axis, t->ndim, &a)) return 0;
    return t->shape[a];
}

int64_t clg_tensor_numel(const clg_tensor *t) {
    return t ? clg_shape_numel(t->ndim, t->shape) : 0;
}

clg_dtype clg_tensor_dtype(const clg_tensor *t) {
    return t ? t->dtype : CLG_F32;
}

clg_graph *clg_tensor_graph(const clg_tensor *t) {
    return t ? t->graph : NULL;
}

const char *clg_tensor_describe(const clg_tensor *t, char *buf, size_t size) {
    if (!t) {
        snprintf(buf, size, "(null)");
        return buf;
    }
    char s[200];
    snprintf(buf, size, "%s %s", clg_shape_str(t->ndim, t->shape, s, sizeof s),
             clg_dtype_name(t->dtype));
    return buf;
}

clg_status clg_graph_output(clg_graph *g, clg_tensor *t) {
    if (!g) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_graph_output: graph is NULL");
    if (g->error != CLG_OK) return clg_fail(g->error, "%s", g->error_msg);
    if (!t || t->graph != g || t->info->kind == CLG_KIND_POISON)
        return clg_fail(CLG_ERR_GRAPH, "clg_graph_output: tensor is not a valid node of this graph");
    t->is_output = true;
    return CLG_OK;
}
