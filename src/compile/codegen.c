/* Kernel generation for fused groups. An elementwise group is a materialised node plus the
 * producers inlined into it; a reduction is a reduce node plus its inlined prologue. Each
 * becomes one OpenCL kernel over a collapsed iteration space: adjacent dimensions that every
 * operand walks contiguously are merged, so most kernels index with one or two dimensions.
 * Everything that varies with sizes or values is a kernel argument. This file holds the
 * program and its arguments, the analysis of a group, the choice of an elementwise kernel's
 * form and its text; codegen_reduce.c holds the reduction forms. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/codegen.h"
#include "compile/codegen_internal.h"
#include "compile/compile_internal.h"
#include "core/kernel_source.h"
#include "core/program.h"

/* Elements per work-item of an elementwise kernel on a CPU device (see the runs form). */
#define CPU_RUN 1024

/* ---- growable strings ---- */

static void sb_vprintf(clg_strbuf *b, const char *fmt, va_list ap) {
    if (b->oom) return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list aq;
        va_copy(aq, ap);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, aq);
        va_end(aq);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = (b->cap + (size_t)n + 1) * 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
}

void clg_strbuf_printf(clg_strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

/* ---- generated kernels and their arguments ---- */

typedef enum arg_kind { ARG_MEM, ARG_INT, ARG_UINT, ARG_FLOAT, ARG_COUNTER } arg_kind;

typedef struct gen_arg {
    arg_kind kind;
    cl_mem mem;
    int64_t i;
    float f;
} gen_arg;

typedef struct gen_kernel {
    int step;
    char fn[16]; /* the kernel function it launches: equal bodies share one */
    gen_arg *args;
    int n_args, cap_args;
    int counter_arg;
    cl_uint work_dim;
    size_t global[2], local[2];
    char label[64];
    /* A long reduction with few outputs is split: `parts` work-groups per output write
     * partial results to `scratch`, and a second kernel (cl/reduce.cl) combines them. */
    int parts;
    cl_mem scratch;
    int reduce_op;
    float scale;
    int64_t n_out;
} gen_kernel;

/* A distinct kernel body: what two steps with the same fused ops and the same 0/1 strides
 * share (sizes, strides and scalars are arguments), so the program's size and pocl's code
 * generation grow with the number of distinct bodies, not with the graph. */
typedef struct gen_body {
    uint64_t hash;
    char *text; /* with the placeholder name */
} gen_body;

struct clg_program_gen {
    clg_strbuf src;
    clg_strbuf cur; /* the kernel being generated, named PLACEHOLDER */
    gen_kernel *kernels;
    int n_kernels, cap_kernels;
    gen_body *bodies;
    int n_bodies, cap_bodies;
    bool uses_random;
};

#define PLACEHOLDER "clg_kernel_"

clg_program_gen *clg_program_gen_new(void) {
    return calloc(1, sizeof(clg_program_gen));
}

void clg_program_gen_free(clg_program_gen *pg) {
    if (!pg) return;
    for (int i = 0; i < pg->n_kernels; ++i) free(pg->kernels[i].args);
    free(pg->kernels);
    for (int i = 0; i < pg->n_bodies; ++i) free(pg->bodies[i].text);
    free(pg->bodies);
    free(pg->src.s);
    free(pg->cur.s);
    free(pg);
}

static uint64_t text_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* Name the kernel just generated in pg->cur after the body it equals, adding the body to the
 * program when it is new. false: out of memory. */
static bool settle_body(clg_program_gen *pg, gen_kernel *k) {
    const char *text = pg->cur.s ? pg->cur.s : "";
    size_t len = pg->cur.len;
    uint64_t h = text_hash(text, len);
    int found = -1;
    for (int i = 0; i < pg->n_bodies && found < 0; ++i)
        if (pg->bodies[i].hash == h && strcmp(pg->bodies[i].text, text) == 0) found = i;
    if (found < 0) {
        if (pg->n_bodies == pg->cap_bodies) {
            int nc = pg->cap_bodies ? 2 * pg->cap_bodies : 32;
            gen_body *nb = realloc(pg->bodies, (size_t)nc * sizeof *nb);
            if (!nb) return false;
            pg->bodies = nb;
            pg->cap_bodies = nc;
        }
        char *copy = malloc(len + 1);
        if (!copy) return false;
        memcpy(copy, text, len + 1);
        found = pg->n_bodies++;
        pg->bodies[found] = (gen_body){h, copy};
        /* the program gets it under its own name: the placeholder is only in the header */
        const char *at = strstr(text, PLACEHOLDER);
        if (!at) return false;
        clg_strbuf_printf(&pg->src, "%.*sk%d%s", (int)(at - text), text, found,
                          at + strlen(PLACEHOLDER));
    }
    snprintf(k->fn, sizeof k->fn, "k%d", found);
    pg->cur.len = 0;
    if (pg->cur.s) pg->cur.s[0] = '\0';
    return !pg->src.oom;
}

/* ---- per-kernel state seen by emit callbacks ---- */

#define NAME_POOL 2048
#define NAME_LEN 32

struct clg_codegen {
    gen_kernel *k;
    clg_strbuf extra_params; /* parameters added by emit callbacks, after the fixed ones */
    gen_arg *extra;
    int n_extra, cap_extra;
    int counter_extra; /* index into extra of the counter's first arg, or -1 */
    char names[NAME_POOL][NAME_LEN];
    int n_names;
    bool oom;
    const char *lin; /* expression of the linear index */
    bool lin_used;
};

static const char *new_name(clg_codegen *cg, const char *fmt, int v) {
    if (cg->n_names >= NAME_POOL) {
        cg->oom = true;
        return "0";
    }
    char *s = cg->names[cg->n_names++];
    snprintf(s, NAME_LEN, fmt, v);
    return s;
}

static void add_extra(clg_codegen *cg, gen_arg a) {
    if (cg->n_extra == cg->cap_extra) {
        int nc = cg->cap_extra ? cg->cap_extra * 2 : 16;
        gen_arg *na = realloc(cg->extra, (size_t)nc * sizeof *na);
        if (!na) {
            cg->oom = true;
            return;
        }
        cg->extra = na;
        cg->cap_extra = nc;
    }
    cg->extra[cg->n_extra++] = a;
}

const char *clg_cg_float_arg(clg_codegen *cg, float value) {
    const char *n = new_name(cg, "f%d", cg->n_extra);
    clg_strbuf_printf(&cg->extra_params, ", const float %s", n);
    add_extra(cg, (gen_arg){.kind = ARG_FLOAT, .f = value});
    return n;
}

const char *clg_cg_uint_arg(clg_codegen *cg, uint32_t value) {
    const char *n = new_name(cg, "u%d", cg->n_extra);
    clg_strbuf_printf(&cg->extra_params, ", const uint %s", n);
    add_extra(cg, (gen_arg){.kind = ARG_UINT, .i = value});
    return n;
}

const char *clg_cg_linear_index(clg_codegen *cg) {
    cg->lin_used = true;
    return cg->lin;
}

const char *clg_cg_run_counter(clg_codegen *cg) {
    if (cg->counter_extra < 0) {
        cg->counter_extra = cg->n_extra;
        clg_strbuf_printf(&cg->extra_params, ", const uint rcl, const uint rch");
        add_extra(cg, (gen_arg){.kind = ARG_COUNTER});
        add_extra(cg, (gen_arg){.kind = ARG_COUNTER});
    }
    return "rcl, rch";
}

void clg_cg_format(char *out, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

/* ---- group analysis ---- */

#define MAX_OPERANDS 64

typedef struct operand_slot {
    const clg_tensor *node;
    clg_operand op;
    int64_t st[CLG_MAX_DIMS]; /* strides over the iteration space (0 = broadcast) */
} operand_slot;

typedef struct group {
    const clg_tensor *members[512];
    int n_members;
    operand_slot ops[MAX_OPERANDS];
    int n_ops;
    int rank; /* iteration space */
    int64_t dims[CLG_MAX_DIMS];
    bool reduced[CLG_MAX_DIMS];
} group;

static int find_operand(const group *gr, const clg_tensor *x) {
    for (int i = 0; i < gr->n_ops; ++i)
        if (gr->ops[i].node == x) return i;
    return -1;
}

/* Strides of operand x over an iteration space of rank r and shape dims. */
static void operand_strides(const clg_operand *o, int r, const int64_t *dims, int64_t *st) {
    for (int d = 0; d < r; ++d) {
        int j = d - (r - o->ndim);
        st[d] = (j < 0 || (o->shape[j] == 1 && dims[d] != 1)) ? 0 : o->strides[j];
    }
}

static clg_status collect(clg_compiler *c, const clg_tensor *m, group *gr) {
    const clg_node_plan *np = c->np;
    bool is_reduce = m->info->kind == CLG_KIND_REDUCE;
    gr->n_members = 0;
    gr->n_ops = 0;
    for (int id = np[m->id].first_member; id >= 0; id = np[id].next_member) {
        if ((size_t)gr->n_members >= sizeof gr->members / sizeof gr->members[0])
            return clg_fail(CLG_ERR_UNSUPPORTED, "fused kernel of %s: more than %zu fused ops",
                            m->info->name, sizeof gr->members / sizeof gr->members[0]);
        gr->members[gr->n_members++] = c->g->nodes[id];
    }
    const clg_tensor *space = is_reduce ? m->in[0] : m;
    gr->rank = space->ndim;
    memcpy(gr->dims, space->shape, sizeof gr->dims);
    for (int d = 0; d < gr->rank; ++d)
        gr->reduced[d] = is_reduce && (m->attrs.reduce.axes_mask & (1u << d));
    for (int i = 0; i < gr->n_members; ++i) {
        const clg_tensor *t = gr->members[i];
        for (int k = 0; k < t->n_in; ++k) {
            const clg_tensor *x = t->in[k];
            if (np[x->id].inlined && np[x->id].group == m->id) continue;
            if (find_operand(gr, x) >= 0) continue;
            if (gr->n_ops >= MAX_OPERANDS)
                return clg_fail(CLG_ERR_UNSUPPORTED, "fused kernel of %s: more than %d operands",
                                m->info->name, MAX_OPERANDS);
            operand_slot *s = &gr->ops[gr->n_ops++];
            s->node = x;
            s->op = clg_compiler_operand(c, x);
            operand_strides(&s->op, gr->rank, gr->dims, s->st);
        }
    }
    return CLG_OK;
}

/* Merge adjacent dims that every buffer operand (and the contiguous output / linear index)
 * walks as one; drop size-1 dims. Returns the new rank (at least 1). */
static int collapse(group *gr, int64_t *dims, bool *reduced, int64_t (*st)[CLG_MAX_DIMS]) {
    int64_t lin[CLG_MAX_DIMS];
    clg_contiguous_strides(gr->rank, gr->dims, lin);
    int64_t lin2[CLG_MAX_DIMS];
    int r = 0;
    for (int d = 0; d < gr->rank; ++d) {
        if (gr->dims[d] == 1) continue;
        bool merge = r > 0 && reduced[r - 1] == gr->reduced[d] && lin2[r - 1] == lin[d] * gr->dims[d];
        for (int k = 0; merge && k < gr->n_ops; ++k)
            if (!gr->ops[k].op.is_scalar && st[k][r - 1] != gr->ops[k].st[d] * gr->dims[d])
                merge = false;
        if (merge) {
            dims[r - 1] *= gr->dims[d];
            lin2[r - 1] = lin[d];
            for (int k = 0; k < gr->n_ops; ++k) st[k][r - 1] = gr->ops[k].st[d];
        } else {
            dims[r] = gr->dims[d];
            reduced[r] = gr->reduced[d];
            lin2[r] = lin[d];
            for (int k = 0; k < gr->n_ops; ++k) st[k][r] = gr->ops[k].st[d];
            r++;
        }
    }
    if (r == 0) {
        dims[0] = 1;
        reduced[0] = false;
        for (int k = 0; k < gr->n_ops; ++k) st[k][0] = 0;
        r = 1;
    }
    /* the linear index is carried as stride set n_ops */
    for (int d = 0; d < r; ++d) st[gr->n_ops][d] = lin2[d];
    return r;
}

static gen_kernel *new_kernel(clg_program_gen *pg) {
    if (pg->n_kernels == pg->cap_kernels) {
        int nc = pg->cap_kernels ? pg->cap_kernels * 2 : 16;
        gen_kernel *nk = realloc(pg->kernels, (size_t)nc * sizeof *nk);
        if (!nk) return NULL;
        pg->kernels = nk;
        pg->cap_kernels = nc;
    }
    gen_kernel *k = &pg->kernels[pg->n_kernels++];
    memset(k, 0, sizeof *k);
    k->counter_arg = -1;
    return k;
}

static void add_arg(gen_kernel *k, gen_arg a, bool *oom) {
    if (k->n_args == k->cap_args) {
        int nc = k->cap_args ? k->cap_args * 2 : 32;
        gen_arg *na = realloc(k->args, (size_t)nc * sizeof *na);
        if (!na) {
            *oom = true;
            return;
        }
        k->args = na;
        k->cap_args = nc;
    }
    k->args[k->n_args++] = a;
}

/* Name of x inside the kernel: an operand ("v3", a scalar argument) or a member's
 * temporary ("t17"). */
static const char *value_name(const group *gr, const char **op_names, const char **member_names,
                              const clg_tensor *x) {
    int oi = find_operand(gr, x);
    if (oi >= 0) return op_names[oi];
    for (int i = 0; i < gr->n_members; ++i)
        if (gr->members[i] == x) return member_names[i];
    return "0";
}

/* Emit the members' expressions (all but a reduce root) as typed temporaries into body. */
static void emit_members(clg_codegen *cg, const group *gr, const clg_tensor *m, bool is_reduce,
                         const char **op_names, const char **member_names, clg_strbuf *body) {
    for (int i = 0; i < gr->n_members; ++i) {
        const clg_tensor *t = gr->members[i];
        member_names[i] = "0";
        if (is_reduce && t == m) continue;
        const char *ops[CLG_NODE_INLINE_INPUTS + 1] = {"0", "0", "0", "0"};
        for (int k = 0; k < t->n_in && k < CLG_NODE_INLINE_INPUTS; ++k)
            ops[k] = value_name(gr, op_names, member_names, t->in[k]);
        char expr[4096];
        t->info->emit(cg, t, ops, expr, sizeof expr);
        member_names[i] = new_name(cg, "t%d", i); /* by place, not node id: equal bodies */
        clg_strbuf_printf(body, "    %s %s = %s;\n", clg_cg_type_name(t->dtype), member_names[i],
                          expr);
    }
}

/* Offset expression of operand k at the current coordinates (names "c<d>"). */
void clg_cg_offset_expr(clg_strbuf *b, int k, int r, const int64_t (*st)[CLG_MAX_DIMS]) {
    clg_strbuf_printf(b, "o%d", k);
    for (int d = 0; d < r; ++d) {
        if (st[k][d] == 1) clg_strbuf_printf(b, " + c%d", d);
        else if (st[k][d] != 0) clg_strbuf_printf(b, " + c%d * s%d_%d", d, k, d);
    }
}

/* Strides 0 and 1 are source text, the others kernel arguments: a unit stride lets the
 * compiler see contiguous loads it can vectorise, and which strides are 0 or 1 does not
 * change with the batch size, so graphs that differ only in sizes still share one program. */
static bool stride_is_arg(int64_t stride) {
    return stride != 0 && stride != 1;
}

/* const int c<d> = ... for the dims of one class (kept or reduced), from linear index src. */
void clg_cg_unravel(clg_strbuf *b, int r, const bool *reduced, bool want_reduced, const char *src,
                    const char *indent) {
    int list[CLG_MAX_DIMS], n = 0;
    for (int d = 0; d < r; ++d)
        if (reduced[d] == want_reduced) list[n++] = d;
    if (n == 0) return;
    if (n == 1) {
        clg_strbuf_printf(b, "%sconst int c%d = %s;\n", indent, list[0], src);
        return;
    }
    clg_strbuf_printf(b, "%sint q%s = %s;\n", indent, want_reduced ? "r" : "k", src);
    for (int i = n - 1; i > 0; --i)
        clg_strbuf_printf(b, "%sconst int c%d = q%s %% d%d; q%s /= d%d;\n", indent, list[i],
                          want_reduced ? "r" : "k", list[i], want_reduced ? "r" : "k", list[i]);
    clg_strbuf_printf(b, "%sconst int c%d = q%s;\n", indent, list[0], want_reduced ? "r" : "k");
}

void clg_cg_product_expr(clg_strbuf *b, int r, const bool *reduced, bool want_reduced) {
    bool any = false;
    for (int d = 0; d < r; ++d)
        if (reduced[d] == want_reduced) {
            clg_strbuf_printf(b, "%sd%d", any ? " * " : "", d);
            any = true;
        }
    if (!any) clg_strbuf_printf(b, "1");
}

/* ---- choosing the form ---- */

/* An elementwise kernel's form: on a CPU device the runs form, elsewhere one element per
 * work-item, over two dimensions when the space has several. */
static clg_cg_plan choose_elementwise(const clg_context *ctx, const clg_cg_space *sp) {
    const int r = sp->r;
    clg_cg_plan p = {.n_out = 1, .n_red = 1, .parts = 1};
    for (int d = 0; d < r; ++d) p.n_out *= sp->dims[d];
    size_t inner = (size_t)sp->dims[r - 1];
    if (clg_long_work_items(ctx)) {
        /* a run of up to CPU_RUN elements: part of one long row, or several short rows */
        size_t outer = (size_t)p.n_out / (inner ? inner : 1);
        p.form = CLG_CG_FORM_RUNS;
        p.ch = inner < CPU_RUN ? inner : CPU_RUN;
        p.rp = inner < CPU_RUN ? (CPU_RUN + inner - 1) / inner : 1;
        if (p.rp > outer) p.rp = outer;
        if (p.ch < 1) p.ch = 1;
        if (p.rp < 1) p.rp = 1;
        p.work_dim = 2;
        p.local[0] = p.local[1] = 1;
        p.global[0] = (inner + p.ch - 1) / p.ch;
        p.global[1] = (outer + p.rp - 1) / p.rp;
    } else if (r == 1) {
        p.form = CLG_CG_FORM_ELEMENT_1D;
        p.work_dim = 1;
        p.local[0] = CLG_CG_WG_ELEMENTWISE;
        p.global[0] = clg_cg_round_up((size_t)p.n_out, CLG_CG_WG_ELEMENTWISE);
    } else {
        /* work-groups of CLG_CG_WG_ELEMENTWISE work-items: as many along the innermost dim as
         * a power of two covering it allows, the rest across the outer rows */
        size_t outer = (size_t)p.n_out / inner;
        size_t l0 = 1;
        while (l0 < inner && l0 < CLG_CG_WG_ELEMENTWISE) l0 *= 2;
        size_t l1 = CLG_CG_WG_ELEMENTWISE / l0;
        if (l1 > outer) l1 = clg_cg_pow2_at_most(outer);
        p.form = CLG_CG_FORM_ELEMENT_2D;
        p.work_dim = 2;
        p.local[0] = l0;
        p.local[1] = l1;
        p.global[0] = clg_cg_round_up(inner, l0);
        p.global[1] = clg_cg_round_up(outer, l1);
    }
    return p;
}

/* ---- elementwise forms ---- */

/* The element at linear index i: operand loads, fused body, store. */
static void emit_store(const clg_cg_text *t) {
    clg_strbuf_printf(t->src, "%s%s    out[out_off + i] = %s;\n", t->loads, t->body, t->root);
}

/* A CPU device (pocl) pays a few nanoseconds per work-item however the work-group is shaped,
 * so each work-item here loops over a run of the innermost dim (a whole row, or several short
 * rows) and the compiler vectorises that loop, several times faster on pocl than one element
 * per work-item (the MNIST CNN's bias + relu; README, Speed). Work-item (x, y)
 * takes rows [y rp, y rp + rp) and inner positions [x ch, x ch + ch). */
static void emit_runs(const clg_cg_text *t) {
    clg_strbuf *src = t->src;
    const int r = t->sp->r;
    bool none[CLG_MAX_DIMS] = {false};
    clg_strbuf_printf(src, "    const int in0 = get_global_id(0) * ch, in1 = min(d%d, in0 + ch);\n"
                           "    const int qo0 = get_global_id(1) * rp, qo1 = min(", r - 1);
    clg_cg_product_expr(src, r - 1, none, false);
    clg_strbuf_printf(src, ", qo0 + rp);\n    for (int qo = qo0; qo < qo1; ++qo) {\n");
    clg_cg_unravel(src, r - 1, none, false, "qo", "    ");
    clg_strbuf_printf(src, "    for (int c%d = in0; c%d < in1; ++c%d) {\n"
                           "    const int i = qo * d%d + c%d;\n",
                      r - 1, r - 1, r - 1, r - 1, r - 1);
    emit_store(t);
    clg_strbuf_printf(src, "    }\n    }\n}\n\n");
}

static void emit_element_1d(const clg_cg_text *t) {
    clg_strbuf_printf(t->src, "    const int i = get_global_id(0);\n    if (i >= d0) return;\n"
                              "    const int c0 = i;\n");
    emit_store(t);
    clg_strbuf_printf(t->src, "}\n\n");
}

/* Two dimensions: the innermost in dimension 0, the rest flattened in dimension 1. The
 * divisions that unravel the outer index are uniform across a work-group, so they are not
 * paid per element (a CPU device runs the work-group as a loop). */
static void emit_element_2d(const clg_cg_text *t) {
    clg_strbuf *src = t->src;
    const int r = t->sp->r;
    bool none[CLG_MAX_DIMS] = {false};
    clg_strbuf_printf(src, "    const int c%d = get_global_id(0);\n"
                           "    const int qo = get_global_id(1);\n"
                           "    if (c%d >= d%d || qo >= ", r - 1, r - 1, r - 1);
    clg_cg_product_expr(src, r - 1, none, false);
    clg_strbuf_printf(src, ") return;\n");
    clg_cg_unravel(src, r - 1, none, false, "qo", "    ");
    clg_strbuf_printf(src, "    const int i = qo * d%d + c%d;\n", r - 1, r - 1);
    emit_store(t);
    clg_strbuf_printf(src, "}\n\n");
}

/* ---- one kernel ---- */

/* Stride parameters s<k>_<d> of operand k, for the strides that are not 0 or 1. */
static void emit_stride_params(clg_strbuf *src, gen_kernel *k, const clg_cg_space *sp, int op,
                               bool *oom) {
    for (int d = 0; d < sp->r; ++d) {
        if (!stride_is_arg(sp->st[op][d])) continue;
        clg_strbuf_printf(src, ", const int s%d_%d", op, d);
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = sp->st[op][d]}, oom);
    }
}

/* The kernel's name and fixed parameters, each bound to its argument: out (or the split's
 * scratch), operands (buffer, offset, the strides that are not 0 or 1), the linear index's
 * strides when a reduction's prologue reads it, dims, then what the form needs: ch and rp,
 * nparts, scale. The parameter list is left open for the emit callbacks' ones. */
static void emit_params(clg_strbuf *src, gen_kernel *k, const group *gr, const clg_tensor *m,
                        const clg_operand *out, const clg_cg_space *sp, bool lin,
                        const clg_cg_plan *plan, bool *oom) {
    const int r = sp->r;
    bool is_reduce = m->info->kind == CLG_KIND_REDUCE;
    clg_strbuf_printf(src, "__kernel void " PLACEHOLDER "(__global %s *out, const int out_off",
                      clg_cg_type_name(m->dtype));
    add_arg(k, (gen_arg){.kind = ARG_MEM, .mem = out->mem}, oom);
    add_arg(k, (gen_arg){.kind = ARG_INT, .i = out->offset}, oom);
    for (int i = 0; i < gr->n_ops; ++i) {
        const clg_operand *o = &gr->ops[i].op;
        if (o->is_scalar) continue;
        clg_strbuf_printf(src, ", __global const %s *b%d, const int o%d",
                          clg_cg_type_name(o->dtype), i, i);
        add_arg(k, (gen_arg){.kind = ARG_MEM, .mem = o->mem}, oom);
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = o->offset}, oom);
        emit_stride_params(src, k, sp, i, oom);
    }
    if (lin) {
        /* the linear index walks like an operand at offset 0: stride row n_ops */
        clg_strbuf_printf(src, ", const int o%d", gr->n_ops);
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = 0}, oom);
        emit_stride_params(src, k, sp, gr->n_ops, oom);
    }
    for (int d = 0; d < r; ++d) {
        clg_strbuf_printf(src, ", const int d%d", d);
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = sp->dims[d]}, oom);
    }
    if (plan->form == CLG_CG_FORM_RUNS) {
        clg_strbuf_printf(src, ", const int ch, const int rp");
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = (int64_t)plan->ch}, oom);
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = (int64_t)plan->rp}, oom);
    }
    if (is_reduce) {
        clg_strbuf_printf(src, ", const int nparts");
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = plan->parts}, oom);
    }
    if (is_reduce && m->info->reduce == CLG_REDUCE_SUM) {
        /* a split sum scales once, when its parts are combined */
        clg_strbuf_printf(src, ", const float scale");
        float scale = plan->parts > 1 ? 1.0f : m->attrs.reduce.scale;
        add_arg(k, (gen_arg){.kind = ARG_FLOAT, .f = scale}, oom);
    }
}

/* Bind the emit callbacks' arguments after the fixed ones and close the parameter list. */
static void close_params(clg_program_gen *pg, clg_compiler *c, clg_codegen *cg, bool *oom) {
    gen_kernel *k = cg->k;
    int n_fixed = k->n_args;
    for (int i = 0; i < cg->n_extra; ++i) add_arg(k, cg->extra[i], oom);
    if (cg->counter_extra >= 0) {
        k->counter_arg = n_fixed + cg->counter_extra;
        pg->uses_random = true;
        c->plan->uses_rng = true;
    }
    clg_strbuf_printf(&pg->cur, "%s)\n{\n", cg->extra_params.s ? cg->extra_params.s : "");
}

/* Each buffer operand's load at the current coordinates, at the form's indent. */
static void emit_loads(clg_strbuf *loads, const group *gr, const char **names,
                       const clg_cg_space *sp, const char *indent) {
    for (int i = 0; i < gr->n_ops; ++i) {
        if (gr->ops[i].op.is_scalar) continue;
        clg_strbuf_printf(loads, "%sconst %s %s = b%d[", indent,
                          clg_cg_type_name(gr->ops[i].op.dtype), names[i], i);
        clg_cg_offset_expr(loads, i, sp->r, sp->st);
        clg_strbuf_printf(loads, "];\n");
    }
}

/* The kernel's body, in the form the plan chose. */
static void emit_form(const clg_cg_text *t, const clg_cg_plan *plan) {
    switch (plan->form) {
    case CLG_CG_FORM_RUNS:
        emit_runs(t);
        break;
    case CLG_CG_FORM_ELEMENT_1D:
        emit_element_1d(t);
        break;
    case CLG_CG_FORM_ELEMENT_2D:
        emit_element_2d(t);
        break;
    case CLG_CG_FORM_COLUMN:
        clg_cg_emit_column(t);
        break;
    case CLG_CG_FORM_CPU_COLUMNS:
        clg_cg_emit_cpu_columns(t);
        break;
    case CLG_CG_FORM_CPU_ROWS:
        clg_cg_emit_cpu_rows(t);
        break;
    case CLG_CG_FORM_TREE:
        clg_cg_emit_tree(t, plan);
        break;
    }
}

/* A new kernel record for step, run as plan says. */
static gen_kernel *plan_kernel(clg_program_gen *pg, const clg_tensor *m, int step,
                               const group *gr, const clg_cg_plan *plan) {
    gen_kernel *k = new_kernel(pg);
    if (!k) return NULL;
    bool is_reduce = m->info->kind == CLG_KIND_REDUCE;
    k->step = step;
    snprintf(k->label, sizeof k->label, "%s%s", m->info->name, gr->n_members > 1 ? "+fused" : "");
    k->work_dim = plan->work_dim;
    memcpy(k->global, plan->global, sizeof k->global);
    memcpy(k->local, plan->local, sizeof k->local);
    k->parts = plan->parts;
    k->n_out = plan->n_out;
    k->reduce_op = (int)(is_reduce ? m->info->reduce : CLG_REDUCE_SUM);
    k->scale = is_reduce && m->info->reduce == CLG_REDUCE_SUM ? m->attrs.reduce.scale : 1.0f;
    return k;
}

clg_status clg_codegen_kernel(clg_program_gen *pg, clg_compiler *c, const clg_tensor *m,
                              int step) {
    /* large; kernels are generated one at a time */
    static _Thread_local group gr;
    static _Thread_local int64_t strides[MAX_OPERANDS + 1][CLG_MAX_DIMS];
    static _Thread_local const char *member_names[512];
    clg_status st = collect(c, m, &gr);
    if (st != CLG_OK) return st;
    bool is_reduce = m->info->kind == CLG_KIND_REDUCE;
    clg_cg_space sp = {.st = (const int64_t(*)[CLG_MAX_DIMS])strides};
    sp.r = collapse(&gr, sp.dims, sp.reduced, strides);
    clg_cg_plan plan = is_reduce ? clg_cg_choose_reduction(c->ctx, m->info->reduce, &sp)
                                 : choose_elementwise(c->ctx, &sp);

    gen_kernel *k = plan_kernel(pg, m, step, &gr, &plan);
    clg_codegen *cg = k ? calloc(1, sizeof *cg) : NULL;
    if (!cg) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "kernel generation: out of host memory");
    cg->k = k;
    cg->counter_extra = -1;
    cg->lin = is_reduce ? "lin" : "i";

    const char *names[MAX_OPERANDS];
    for (int i = 0; i < gr.n_ops; ++i) {
        const clg_operand *o = &gr.ops[i].op;
        names[i] = o->is_scalar ? clg_cg_float_arg(cg, o->scalar) : new_name(cg, "v%d", i);
    }
    clg_strbuf body = {0}, loads = {0};
    emit_members(cg, &gr, m, is_reduce, names, member_names, &body);

    clg_operand out = clg_compiler_operand(c, m);
    if (plan.parts > 1) {
        st = clg_plan_own_buffer(c->plan, (size_t)(plan.n_out * plan.parts) * sizeof(float),
                                 "partial sums of a split reduction", &k->scratch);
        out.mem = k->scratch;
        out.offset = 0;
    }
    bool oom = false;
    if (st == CLG_OK) {
        bool lin = is_reduce && cg->lin_used;
        emit_params(&pg->cur, k, &gr, m, &out, &sp, lin, &plan, &oom);
        close_params(pg, c, cg, &oom);
        emit_loads(&loads, &gr, names, &sp, is_reduce ? "        " : "    ");
        clg_cg_text t = {
            .src = &pg->cur,
            .sp = &sp,
            .loads = loads.s ? loads.s : "",
            .body = body.s ? body.s : "",
            .root = value_name(&gr, names, member_names, is_reduce ? m->in[0] : m),
            .lin = lin,
            .lin_k = gr.n_ops,
            .rk = is_reduce ? m->info->reduce : CLG_REDUCE_SUM,
            .dtype = m->dtype,
        };
        emit_form(&t, &plan);
    }
    free(body.s);
    free(loads.s);
    free(cg->extra_params.s);
    free(cg->extra);
    bool failed = cg->oom || oom || pg->cur.oom;
    free(cg);
    if (st != CLG_OK) return st;
    if (!failed) failed = !settle_body(pg, k);
    if (failed) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "kernel generation: out of host memory");
    return CLG_OK;
}

int clg_program_gen_bodies(const clg_program_gen *pg) {
    return pg->n_bodies;
}

const char *clg_program_gen_source(const clg_program_gen *pg, size_t *length) {
    if (pg->n_kernels == 0) return NULL;
    *length = pg->src.len;
    return pg->src.s;
}

clg_status clg_program_gen_finish(clg_program_gen *pg) {
    if (pg->n_kernels == 0) return CLG_OK;
    /* No contraction of a * b + c into one rounding: a fused kernel must give the bits of the
     * one-kernel-per-op plan, whose products are rounded when stored, and OpenCL lets a
     * compiler contract by default (NVIDIA's does: fused and unfused differed in the last bit). */
    static const char no_contract[] = "#pragma OPENCL FP_CONTRACT OFF\n";
    char *prelude = NULL;
    size_t plen = 0;
    if (pg->uses_random) { /* prepend the random functions */
        clg_status st = clg_kernel_source("random", &prelude, &plen);
        if (st != CLG_OK) return st;
    }
    clg_strbuf nb = {0};
    clg_strbuf_printf(&nb, "%s%s\n%s", no_contract, prelude ? prelude : "", pg->src.s);
    free(prelude);
    if (nb.oom) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "kernel generation: out of host memory");
    free(pg->src.s);
    pg->src = nb;
    return CLG_OK;
}

clg_status clg_codegen_bind(clg_program_gen *pg, clg_compiler *c, cl_program program,
                            const clg_tensor *m, int step) {
    /* kernels are generated in step order: find the step's by bisection */
    gen_kernel *gk = NULL;
    int lo = 0, hi = pg->n_kernels - 1;
    while (lo <= hi && !gk) {
        int mid = (lo + hi) / 2;
        if (pg->kernels[mid].step == step) gk = &pg->kernels[mid];
        else if (pg->kernels[mid].step < step) lo = mid + 1;
        else hi = mid - 1;
    }
    if (!gk) return clg_fail(CLG_ERR_INTERNAL, "no generated kernel for step %d (%s)", step,
                             m->info->name);
    cl_int err;
    cl_kernel kern = clCreateKernel(program, gk->fn, &err);
    if (!kern) return clg_fail_cl(err, "creating generated kernel %s (%s)", gk->fn, gk->label);
    clg_args a = clg_args_begin(kern);
    for (int i = 0; i < gk->n_args; ++i) {
        const gen_arg *g = &gk->args[i];
        switch (g->kind) {
        case ARG_MEM:
            clg_arg_mem(&a, g->mem);
            break;
        case ARG_INT:
            clg_arg_int(&a, g->i);
            break;
        case ARG_UINT:
        case ARG_COUNTER:
            clg_arg_uint(&a, (uint32_t)g->i);
            break;
        case ARG_FLOAT:
            clg_arg_float(&a, g->f);
            break;
        }
    }
    clg_status st = clg_args_done(&a, gk->label);
    if (st != CLG_OK) {
        clReleaseKernel(kern);
        return st;
    }
    st = clg_plan_add_kernel(c->plan, kern, gk->work_dim, gk->global, gk->local, gk->label,
                             gk->counter_arg);
    if (st != CLG_OK || gk->parts <= 1) return st;
    /* combine the partial results */
    cl_kernel comb;
    st = clg_kernel_new(c->ctx, "reduce", "reduce_parts", &comb);
    if (st != CLG_OK) return st;
    clg_operand out = clg_compiler_operand(c, m);
    clg_args b = clg_args_begin(comb);
    clg_arg_mem(&b, out.mem);
    clg_arg_int(&b, out.offset);
    clg_arg_mem(&b, gk->scratch);
    clg_arg_int(&b, gk->parts);
    clg_arg_int(&b, gk->n_out);
    clg_arg_int(&b, gk->reduce_op);
    clg_arg_float(&b, gk->scale);
    st = clg_args_done(&b, "reduce_parts");
    if (st != CLG_OK) {
        clReleaseKernel(comb);
        return st;
    }
    size_t global = ((size_t)gk->n_out + 63) / 64 * 64, local = 64;
    return clg_plan_add_kernel(c->plan, comb, 1, &global, &local, "reduce_parts", -1);
}
