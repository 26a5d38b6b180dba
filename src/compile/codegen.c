/* Kernel generation for fused groups. An elementwise group is a materialised node plus the
 * producers inlined into it; a reduction is a reduce node plus its inlined prologue. Each
 * becomes one OpenCL kernel over a collapsed iteration space: adjacent dimensions that every
 * operand walks contiguously are merged, so most kernels index with one or two dimensions.
 * Everything that varies with sizes or values is a kernel argument. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/codegen.h"
#include "compile/compile_internal.h"
#include "core/kernel_source.h"
#include "core/program.h"

#define WG_ELEMENTWISE 64
/* Elements per work-item of an elementwise kernel on a CPU device (see the CPU form). */
#define CPU_RUN 1024
#define WG_REDUCE_MAX 256

/* ---- growable strings ---- */

typedef struct strbuf {
    char *s;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_vprintf(strbuf *b, const char *fmt, va_list ap) {
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

static void sb_printf(strbuf *b, const char *fmt, ...) CLG_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...) {
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

struct clg_program_gen {
    strbuf src;
    gen_kernel *kernels;
    int n_kernels, cap_kernels;
    bool uses_random;
};

clg_program_gen *clg_program_gen_new(void) {
    return calloc(1, sizeof(clg_program_gen));
}

void clg_program_gen_free(clg_program_gen *pg) {
    if (!pg) return;
    for (int i = 0; i < pg->n_kernels; ++i) free(pg->kernels[i].args);
    free(pg->kernels);
    free(pg->src.s);
    free(pg);
}

/* ---- per-kernel state seen by emit callbacks ---- */

#define NAME_POOL 2048
#define NAME_LEN 32

struct clg_codegen {
    gen_kernel *k;
    strbuf extra_params; /* parameters added by emit callbacks, after the fixed ones */
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
    sb_printf(&cg->extra_params, ", const float %s", n);
    add_extra(cg, (gen_arg){.kind = ARG_FLOAT, .f = value});
    return n;
}

const char *clg_cg_uint_arg(clg_codegen *cg, uint32_t value) {
    const char *n = new_name(cg, "u%d", cg->n_extra);
    sb_printf(&cg->extra_params, ", const uint %s", n);
    add_extra(cg, (gen_arg){.kind = ARG_UINT, .i = value});
    return n;
}

const char *clg_cg_int_arg(clg_codegen *cg, int64_t value) {
    const char *n = new_name(cg, "n%d", cg->n_extra);
    sb_printf(&cg->extra_params, ", const int %s", n);
    add_extra(cg, (gen_arg){.kind = ARG_INT, .i = value});
    return n;
}

const char *clg_cg_linear_index(clg_codegen *cg) {
    cg->lin_used = true;
    return cg->lin;
}

const char *clg_cg_run_counter(clg_codegen *cg) {
    if (cg->counter_extra < 0) {
        cg->counter_extra = cg->n_extra;
        sb_printf(&cg->extra_params, ", const uint rcl, const uint rch");
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

static const char *type_of(clg_dtype d) {
    return d == CLG_I32 ? "int" : "float";
}

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
    for (int id = 0; id <= m->id; ++id) {
        if (!np[id].reachable || np[id].group != m->id) continue;
        if (!np[id].inlined && id != m->id) continue;
        if ((size_t)gr->n_members >= sizeof gr->members / sizeof gr->members[0])
            return clg_fail(CLG_ERR_UNSUPPORTED, "fused kernel of %s: more than %zu fused ops",
                            m->info->name, sizeof gr->members / sizeof gr->members[0]);
        gr->members[gr->n_members++] = c->g->nodes[id];
    }
    const clg_tensor *space = is_reduce ? m->in[0] : m;
    gr->rank = space->ndim;
    memcpy(gr->dims, space->shape, sizeof gr->dims);
    for (int d = 0; d < gr->rank; ++d) gr->reduced[d] = is_reduce && (m->ia[0] & (1 << d));
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
                         const char **op_names, const char **member_names, strbuf *body) {
    for (int i = 0; i < gr->n_members; ++i) {
        const clg_tensor *t = gr->members[i];
        member_names[i] = "0";
        if (is_reduce && t == m) continue;
        const char *ops[CLG_NODE_INLINE_INPUTS + 1] = {"0", "0", "0", "0"};
        for (int k = 0; k < t->n_in && k < CLG_NODE_INLINE_INPUTS; ++k)
            ops[k] = value_name(gr, op_names, member_names, t->in[k]);
        char expr[4096];
        t->info->emit(cg, t, ops, expr, sizeof expr);
        member_names[i] = new_name(cg, "t%d", t->id);
        sb_printf(body, "    %s %s = %s;\n", type_of(t->dtype), member_names[i], expr);
    }
}

/* Offset expression of operand k at the current coordinates (names "c<d>"). */
static void offset_expr(strbuf *b, int k, int r, const int64_t (*st)[CLG_MAX_DIMS]) {
    sb_printf(b, "o%d", k);
    for (int d = 0; d < r; ++d) {
        if (st[k][d] == 1) sb_printf(b, " + c%d", d);
        else if (st[k][d] != 0) sb_printf(b, " + c%d * s%d_%d", d, k, d);
    }
}

/* Strides 0 and 1 are source text, the others kernel arguments: a unit stride lets the
 * compiler see contiguous loads it can vectorise, and which strides are 0 or 1 does not
 * change with the batch size, so graphs that differ only in sizes still share one program. */
static bool stride_is_arg(int64_t stride) {
    return stride != 0 && stride != 1;
}

/* const int c<d> = ... for the dims of one class (kept or reduced), from linear index src. */
static void unravel(strbuf *b, int r, const bool *reduced, bool want_reduced, const char *src,
                    const char *indent) {
    int list[CLG_MAX_DIMS], n = 0;
    for (int d = 0; d < r; ++d)
        if (reduced[d] == want_reduced) list[n++] = d;
    if (n == 0) return;
    if (n == 1) {
        sb_printf(b, "%sconst int c%d = %s;\n", indent, list[0], src);
        return;
    }
    sb_printf(b, "%sint q%s = %s;\n", indent, want_reduced ? "r" : "k", src);
    for (int i = n - 1; i > 0; --i)
        sb_printf(b, "%sconst int c%d = q%s %% d%d; q%s /= d%d;\n", indent, list[i],
                  want_reduced ? "r" : "k", list[i], want_reduced ? "r" : "k", list[i]);
    sb_printf(b, "%sconst int c%d = q%s;\n", indent, list[0], want_reduced ? "r" : "k");
}

static void product_expr(strbuf *b, int r, const bool *reduced, bool want_reduced) {
    bool any = false;
    for (int d = 0; d < r; ++d)
        if (reduced[d] == want_reduced) {
            sb_printf(b, "%sd%d", any ? " * " : "", d);
            any = true;
        }
    if (!any) sb_printf(b, "1");
}

/* One step of a reduction's accumulator: acc (and acci for argmax) take value v read at qq;
 * `first` is the C condition of a thread's first element (argmax takes it whatever it is). */
static void emit_accumulate(strbuf *src, clg_reduce_kind rk, const char *v, const char *first) {
    switch (rk) {
    case CLG_REDUCE_SUM:
        sb_printf(src, "        acc += %s;\n", v);
        break;
    case CLG_REDUCE_MAX:
        sb_printf(src, "        acc = (isnan(%s) || %s > acc) ? %s : acc;\n", v, v, v);
        break;
    case CLG_REDUCE_MIN:
        sb_printf(src, "        acc = (isnan(%s) || %s < acc) ? %s : acc;\n", v, v, v);
        break;
    case CLG_REDUCE_ARGMAX:
        sb_printf(src, "        const float av = (float)(%s);\n"
                       "        if (%s || av > acc) { acc = av; acci = qq; }\n",
                  v, first);
        break;
    }
}

/* The opening of a reduction kernel's loop body: the reduced coordinates of qq, the linear
 * index when the prologue asks for it, the operand loads and the fused prologue. */
/* One element of a reduction at the current coordinates: its linear index if the prologue
 * asks for it, the operand loads and the fused body. */
static void emit_element(strbuf *src, int r, bool lin, int lin_k,
                         const int64_t (*cst)[CLG_MAX_DIMS], const strbuf *loads,
                         const strbuf *body) {
    if (lin) {
        sb_printf(src, "        const int lin = ");
        offset_expr(src, lin_k, r, cst);
        sb_printf(src, ";\n");
    }
    sb_printf(src, "%s%s", loads->s ? loads->s : "", body->s ? body->s : "");
}

static void emit_reduce_body(strbuf *src, int r, const bool *reduced, bool lin, int lin_k,
                             const int64_t (*cst)[CLG_MAX_DIMS], const strbuf *loads,
                             const strbuf *body) {
    unravel(src, r, reduced, true, "qq", "        ");
    emit_element(src, r, lin, lin_k, cst, loads, body);
}

/* The row walk of a reduction over the innermost dim and outer ones: this part's share of the
 * rows (outer reduced coordinates), opened as a loop over qa with its coordinates unravelled. */
static void emit_row_walk(strbuf *src, int r, const bool *outer_red) {
    sb_printf(src, "    const int nrow = ");
    product_expr(src, r, outer_red, true);
    sb_printf(src, ";\n    const int chunk = (nrow + nparts - 1) / nparts;\n"
                   "    const int a0 = part * chunk, a1 = min(nrow, a0 + chunk);\n"
                   "    for (int qa = a0; qa < a1; ++qa) {\n");
    unravel(src, r, outer_red, true, "qa", "        ");
}

static size_t pow2_at_most(size_t x) {
    size_t p = 1;
    while (p * 2 <= x) p *= 2;
    return p;
}

clg_status clg_codegen_kernel(clg_program_gen *pg, clg_compiler *c, const clg_tensor *m,
                              int step) {
    static _Thread_local group gr; /* large; kernels are generated one at a time */
    clg_status st = collect(c, m, &gr);
    if (st != CLG_OK) return st;
    bool is_reduce = m->info->kind == CLG_KIND_REDUCE;
    bool cpu = clg_long_work_items(c->ctx);
    clg_reduce_kind rk = is_reduce ? m->info->reduce : CLG_REDUCE_SUM;
    int64_t dims[CLG_MAX_DIMS];
    bool reduced[CLG_MAX_DIMS];
    static _Thread_local int64_t strides[MAX_OPERANDS + 1][CLG_MAX_DIMS];
    int r = collapse(&gr, dims, reduced, strides);
    const int64_t(*cst)[CLG_MAX_DIMS] = (const int64_t(*)[CLG_MAX_DIMS])strides;

    gen_kernel *k = new_kernel(pg);
    if (!k) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "kernel generation: out of host memory");
    k->step = step;
    snprintf(k->label, sizeof k->label, "%s%s", m->info->name,
             gr.n_members > 1 ? "+fused" : "");

    clg_codegen *cg = calloc(1, sizeof *cg);
    if (!cg) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "kernel generation: out of host memory");
    cg->k = k;
    cg->counter_extra = -1;
    cg->lin = is_reduce ? "lin" : "i";

    const char *names[MAX_OPERANDS];
    static _Thread_local const char *member_names[512];
    for (int i = 0; i < gr.n_ops; ++i) {
        const clg_operand *o = &gr.ops[i].op;
        names[i] = o->is_scalar ? clg_cg_float_arg(cg, o->scalar) : new_name(cg, "v%d", i);
    }
    strbuf body = {0}, head = {0}, loads = {0};
    emit_members(cg, &gr, m, is_reduce, names, member_names, &body);
    const char *root = value_name(&gr, names, member_names, is_reduce ? m->in[0] : m);

    int64_t n_out = 1, n_red = 1;
    for (int d = 0; d < r; ++d) {
        if (reduced[d])
            n_red *= dims[d];
        else
            n_out *= dims[d];
    }
    /* Few outputs and long reductions would leave most compute units idle (one work-group per
     * output): split each output's reduction over several work-groups. */
    int parts = 1;
    if (is_reduce && rk != CLG_REDUCE_ARGMAX && n_red >= 16384 && n_out < 64) {
        int64_t want = n_red / 8192;
        parts = (int)(want > 64 ? 64 : want);
    }
    /* The innermost dim reduced along with others: reductions walk rows of it. */
    bool outer_red[CLG_MAX_DIMS];
    int n_reduced = 0;
    for (int d = 0; d < r; ++d) {
        outer_red[d] = reduced[d] && d < r - 1;
        n_reduced += reduced[d];
    }
    int64_t nrow = is_reduce && reduced[r - 1] ? n_red / dims[r - 1] : 0;
    bool rows = is_reduce && rk != CLG_REDUCE_ARGMAX && reduced[r - 1] && n_reduced >= 2 &&
                nrow >= parts;
    bool cpu_rows = rows && cpu && rk == CLG_REDUCE_SUM;
    /* A work-item of the CPU row form loops over all its elements: under a loop limit,
     * enough parts that each takes at most a quarter of it, else the work-group form. */
    uint32_t limit = c->ctx->info.loop_limit;
    if (cpu_rows && limit) {
        int64_t per = limit / 4, need = (n_red + per - 1) / per;
        if (need > nrow || dims[r - 1] > per) cpu_rows = false;
        else if (need > parts) parts = (int)need;
    }
    /* Enough outputs, reduced along outer dims: the serial column form (see below), which
     * loops over the whole reduction in one work-item. */
    bool column = is_reduce && parts == 1 && !reduced[r - 1] && n_out >= 32 &&
                  (!limit || n_red <= (int64_t)limit / 2);

    /* fixed parameters: out (or the split's scratch), operands (buffer, offset, non-zero
     * strides), the linear index's strides when a reduction's prologue asks for it, dims,
     * parts, scale */
    bool oom = false;
    clg_operand out = clg_compiler_operand(c, m);
    k->parts = parts;
    k->n_out = n_out;
    k->reduce_op = (int)rk;
    k->scale = is_reduce && rk == CLG_REDUCE_SUM ? m->fa[0] : 1.0f;
    if (parts > 1) {
        clg_status pst = clg_plan_own_buffer(c->plan, (size_t)(n_out * parts) * sizeof(float),
                                             "partial sums of a split reduction", &k->scratch);
        if (pst != CLG_OK) {
            free(cg);
            return pst;
        }
        out.mem = k->scratch;
        out.offset = 0;
    }
    sb_printf(&head, "__kernel void k%d(__global %s *out, const int out_off", step,
              type_of(m->dtype));
    add_arg(k, (gen_arg){.kind = ARG_MEM, .mem = out.mem}, &oom);
    add_arg(k, (gen_arg){.kind = ARG_INT, .i = out.offset}, &oom);
    for (int i = 0; i < gr.n_ops; ++i) {
        const clg_operand *o = &gr.ops[i].op;
        if (o->is_scalar) continue;
        sb_printf(&head, ", __global const %s *b%d, const int o%d", type_of(o->dtype), i, i);
        add_arg(k, (gen_arg){.kind = ARG_MEM, .mem = o->mem}, &oom);
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = o->offset}, &oom);
        for (int d = 0; d < r; ++d) {
            if (!stride_is_arg(cst[i][d])) continue;
            sb_printf(&head, ", const int s%d_%d", i, d);
            add_arg(k, (gen_arg){.kind = ARG_INT, .i = cst[i][d]}, &oom);
        }
    }
    int lin_k = gr.n_ops;
    bool lin = is_reduce && cg->lin_used;
    if (lin) {
        sb_printf(&head, ", const int o%d", lin_k);
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = 0}, &oom);
        for (int d = 0; d < r; ++d) {
            if (!stride_is_arg(cst[lin_k][d])) continue;
            sb_printf(&head, ", const int s%d_%d", lin_k, d);
            add_arg(k, (gen_arg){.kind = ARG_INT, .i = cst[lin_k][d]}, &oom);
        }
    }
    for (int d = 0; d < r; ++d) {
        sb_printf(&head, ", const int d%d", d);
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = dims[d]}, &oom);
    }
    /* the CPU form's run of the innermost dim and rows per work-item */
    size_t inner = (size_t)dims[r - 1], outer = (size_t)n_out / (inner ? inner : 1);
    size_t ch = inner < CPU_RUN ? inner : CPU_RUN;
    size_t rp = inner < CPU_RUN ? (CPU_RUN + inner - 1) / inner : 1;
    if (rp > outer) rp = outer;
    if (ch < 1) ch = 1;
    if (rp < 1) rp = 1;
    if (!is_reduce && cpu) {
        sb_printf(&head, ", const int ch, const int rp");
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = (int64_t)ch}, &oom);
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = (int64_t)rp}, &oom);
    }
    if (is_reduce) {
        sb_printf(&head, ", const int nparts");
        add_arg(k, (gen_arg){.kind = ARG_INT, .i = parts}, &oom);
    }
    if (is_reduce && rk == CLG_REDUCE_SUM) {
        sb_printf(&head, ", const float scale");
        add_arg(k, (gen_arg){.kind = ARG_FLOAT, .f = parts > 1 ? 1.0f : m->fa[0]}, &oom);
    }
    int n_fixed = k->n_args;
    for (int i = 0; i < cg->n_extra; ++i) add_arg(k, cg->extra[i], &oom);
    if (cg->counter_extra >= 0) {
        k->counter_arg = n_fixed + cg->counter_extra;
        pg->uses_random = true;
        c->plan->uses_rng = true;
    }

    const char *ind = is_reduce ? "        " : "    ";
    for (int i = 0; i < gr.n_ops; ++i) {
        if (gr.ops[i].op.is_scalar) continue;
        sb_printf(&loads, "%sconst %s %s = b%d[", ind, type_of(gr.ops[i].op.dtype), names[i], i);
        offset_expr(&loads, i, r, cst);
        sb_printf(&loads, "];\n");
    }

    strbuf *src = &pg->src;
    /* a reduction's accumulator: its type and the identity it starts from */
    const char *ty = rk == CLG_REDUCE_ARGMAX ? "float" : type_of(m->dtype);
    const char *init = rk == CLG_REDUCE_SUM    ? "0.0f"
                       : rk == CLG_REDUCE_MIN ? "INFINITY"
                                              : "-INFINITY";
    sb_printf(src, "%s%s)\n{\n", head.s ? head.s : "", cg->extra_params.s ? cg->extra_params.s : "");
    if (!is_reduce && cpu) {
        /* A CPU device (pocl) pays a few nanoseconds per work-item however the work-group is
         * shaped, so each work-item here loops over a run of the innermost dim (a whole row,
         * or several short rows) and the compiler vectorises that loop: measured on pocl for
         * the MNIST CNN's bias + relu over 64 x 64 x 196 floats, 0.16 ms this way against
         * 1.1-1.9 ms with one element per work-item in a stand-alone test, 1.3 -> 0.43 ms in
         * the training step. Work-item (x, y) takes rows [y rp, y rp + rp) and inner
         * positions [x ch, x ch + ch). */
        sb_printf(src, "    const int in0 = get_global_id(0) * ch, in1 = min(d%d, in0 + ch);\n"
                       "    const int qo0 = get_global_id(1) * rp, qo1 = min(", r - 1);
        bool none[CLG_MAX_DIMS] = {false};
        product_expr(src, r - 1, none, false);
        sb_printf(src, ", qo0 + rp);\n    for (int qo = qo0; qo < qo1; ++qo) {\n");
        unravel(src, r - 1, none, false, "qo", "    ");
        sb_printf(src, "    for (int c%d = in0; c%d < in1; ++c%d) {\n"
                       "    const int i = qo * d%d + c%d;\n", r - 1, r - 1, r - 1, r - 1, r - 1);
        sb_printf(src, "%s%s    out[out_off + i] = %s;\n    }\n    }\n}\n\n",
                  loads.s ? loads.s : "", body.s ? body.s : "", root);
        k->work_dim = 2;
        k->local[0] = k->local[1] = 1;
        k->global[0] = (inner + ch - 1) / ch;
        k->global[1] = (outer + rp - 1) / rp;
    } else if (!is_reduce && r == 1) {
        sb_printf(src, "    const int i = get_global_id(0);\n    if (i >= d0) return;\n"
                       "    const int c0 = i;\n");
        sb_printf(src, "%s%s    out[out_off + i] = %s;\n}\n\n", loads.s ? loads.s : "",
                  body.s ? body.s : "", root);
        k->work_dim = 1;
        k->global[0] = ((size_t)n_out + WG_ELEMENTWISE - 1) / WG_ELEMENTWISE * WG_ELEMENTWISE;
        k->local[0] = WG_ELEMENTWISE;
    } else if (!is_reduce) {
        /* Two dimensions: the innermost in dimension 0, the rest flattened in dimension 1.
         * The divisions that unravel the outer index are uniform across a work-group, so they
         * are not paid per element (a CPU device runs the work-group as a loop). */
        bool none[CLG_MAX_DIMS] = {false};
        sb_printf(src, "    const int c%d = get_global_id(0);\n    const int qo = get_global_id(1);\n"
                       "    if (c%d >= d%d || qo >= ", r - 1, r - 1, r - 1);
        product_expr(src, r - 1, none, false);
        sb_printf(src, ") return;\n");
        unravel(src, r - 1, none, false, "qo", "    ");
        sb_printf(src, "    const int i = qo * d%d + c%d;\n", r - 1, r - 1);
        sb_printf(src, "%s%s    out[out_off + i] = %s;\n}\n\n", loads.s ? loads.s : "",
                  body.s ? body.s : "", root);
        size_t inner = (size_t)dims[r - 1], outer = (size_t)n_out / inner;
        size_t l0 = 1;
        while (l0 < inner && l0 < WG_ELEMENTWISE) l0 *= 2;
        size_t l1 = WG_ELEMENTWISE / l0;
        if (l1 > outer) l1 = pow2_at_most(outer);
        k->work_dim = 2;
        k->local[0] = l0;
        k->local[1] = l1;
        k->global[0] = (inner + l0 - 1) / l0 * l0;
        k->global[1] = (outer + l1 - 1) / l1 * l1;
    } else if (column) {
        /* Reduced dims outside the innermost kept one (a bias gradient: [B, N] -> [N]): one
         * work-item per output with a serial loop; neighbouring work-items read neighbouring
         * addresses, which a GPU coalesces and a CPU vectorises, and no local memory. */
        sb_printf(src, "    const int o = get_global_id(0);\n    if (o >= ");
        product_expr(src, r, reduced, false);
        sb_printf(src, ") return;\n");
        unravel(src, r, reduced, false, "o", "    ");
        sb_printf(src, "    %s acc = %s;\n    int acci = 0;\n    const int nred = ", ty, init);
        product_expr(src, r, reduced, true);
        sb_printf(src, ";\n    for (int qq = 0; qq < nred; ++qq) {\n");
        emit_reduce_body(src, r, reduced, lin, lin_k, cst, &loads, &body);
        emit_accumulate(src, rk, root, "qq == 0");
        if (rk == CLG_REDUCE_SUM)
            sb_printf(src, "    }\n    out[out_off + o] = acc * scale;\n}\n\n");
        else if (rk == CLG_REDUCE_ARGMAX)
            sb_printf(src, "    }\n    out[out_off + o] = acci;\n}\n\n");
        else
            sb_printf(src, "    }\n    out[out_off + o] = acc;\n}\n\n");
        k->work_dim = 1;
        k->local[0] = WG_ELEMENTWISE;
        k->global[0] = ((size_t)n_out + WG_ELEMENTWISE - 1) / WG_ELEMENTWISE * WG_ELEMENTWISE;
    } else if (cpu_rows) {
        /* On a CPU device a sum over rows of the innermost dim (a bias gradient over
         * [N, C, H, W]) runs as one work-item per output and part, reading each row in order
         * into eight interleaved partial sums that the compiler keeps in one vector register:
         * measured on pocl for the MNIST CNN's two bias gradients, 0.47 and 0.83 ms against
         * 0.84 and 1.49 ms for the work-group tree below. */
        sb_printf(src, "    const int o = get_global_id(0) / nparts, part = get_global_id(0) %% nparts;\n");
        unravel(src, r, reduced, false, "o", "    ");
        sb_printf(src, "    %s acc = 0;\n    %s a[8] = {0, 0, 0, 0, 0, 0, 0, 0};\n", ty, ty);
        emit_row_walk(src, r, outer_red);
        for (int tail = 0; tail < 2; ++tail) {
            if (!tail)
                sb_printf(src, "    int cc = 0;\n    for (; cc + 8 <= d%d; cc += 8) {\n"
                               "#pragma unroll\n    for (int j = 0; j < 8; ++j) {\n"
                               "    const int c%d = cc + j;\n", r - 1, r - 1);
            else
                sb_printf(src, "    for (; cc < d%d; ++cc) {\n    const int c%d = cc;\n", r - 1,
                          r - 1);
            emit_element(src, r, lin, lin_k, cst, &loads, &body);
            sb_printf(src, tail ? "        acc += %s;\n    }\n" : "        a[j] += %s;\n    }\n    }\n",
                      root);
        }
        sb_printf(src, "    }\n    for (int j = 0; j < 8; ++j) acc += a[j];\n"
                       "    out[out_off + o * nparts + part] = acc * scale;\n}\n\n");
        k->work_dim = 1;
        k->local[0] = 1;
        k->global[0] = (size_t)(n_out * parts);
    } else {
        sb_printf(src, "    __local %s sh[%d];\n", ty, WG_REDUCE_MAX);
        if (rk == CLG_REDUCE_ARGMAX) sb_printf(src, "    __local int shi[%d];\n", WG_REDUCE_MAX);
        sb_printf(src, "    const int lid = get_local_id(0), L = get_local_size(0);\n"
                       "    const int o = get_group_id(0) / nparts, part = get_group_id(0) %% nparts;\n");
        unravel(src, r, reduced, false, "o", "    ");
        sb_printf(src, "    %s acc = %s;\n    int acci = 0;\n    const int nred = ", ty, init);
        product_expr(src, r, reduced, true);
        /* The innermost dim reduced along with others (a bias gradient over [N, C, H, W]):
         * the lanes share each row of it and the other reduced coordinates step once per
         * row, instead of unravelling every element's index with divisions (measured on
         * pocl: the MNIST CNN's two bias gradients, 2.9 ms that way, 1.9-2.2 ms this way).
         * Parts split the rows. */
        if (rows) {
            sb_printf(src, ";\n");
            emit_row_walk(src, r, outer_red);
            sb_printf(src, "    for (int c%d = lid; c%d < d%d; c%d += L) {\n", r - 1, r - 1, r - 1,
                      r - 1);
            emit_element(src, r, lin, lin_k, cst, &loads, &body);
            emit_accumulate(src, rk, root, "false");
            sb_printf(src, "    }\n    }\n    sh[lid] = acc;\n");
        } else {
            sb_printf(src, ";\n    const int chunk = (nred + nparts - 1) / nparts;\n"
                           "    const int q0 = part * chunk, q1 = min(nred, q0 + chunk);\n"
                           "    for (int qq = q0 + lid; qq < q1; qq += L) {\n");
            emit_reduce_body(src, r, reduced, lin, lin_k, cst, &loads, &body);
            emit_accumulate(src, rk, root, "qq == q0 + lid");
            sb_printf(src, "    }\n    sh[lid] = acc;\n");
        }
        if (rk == CLG_REDUCE_ARGMAX) sb_printf(src, "    shi[lid] = acci;\n");
        sb_printf(src, "    barrier(CLK_LOCAL_MEM_FENCE);\n"
                       "    for (int s = L / 2; s > 0; s >>= 1) {\n"
                       "        if (lid < s) {\n");
        switch (rk) {
        case CLG_REDUCE_SUM:
            sb_printf(src, "            sh[lid] += sh[lid + s];\n");
            break;
        case CLG_REDUCE_MAX:
            sb_printf(src, "            const %s b = sh[lid + s];\n"
                           "            if (isnan(b) || b > sh[lid]) sh[lid] = b;\n", ty);
            break;
        case CLG_REDUCE_MIN:
            sb_printf(src, "            const %s b = sh[lid + s];\n"
                           "            if (isnan(b) || b < sh[lid]) sh[lid] = b;\n", ty);
            break;
        case CLG_REDUCE_ARGMAX:
            sb_printf(src, "            const float b = sh[lid + s];\n"
                           "            const int bi = shi[lid + s];\n"
                           "            if (b > sh[lid] || (b == sh[lid] && bi < shi[lid])) {\n"
                           "                sh[lid] = b;\n                shi[lid] = bi;\n            }\n");
            break;
        }
        sb_printf(src, "        }\n        barrier(CLK_LOCAL_MEM_FENCE);\n    }\n");
        if (rk == CLG_REDUCE_SUM)
            sb_printf(src, "    if (lid == 0) out[out_off + o * nparts + part] = sh[0] * scale;\n}\n\n");
        else if (rk == CLG_REDUCE_ARGMAX)
            sb_printf(src, "    if (lid == 0) out[out_off + o] = shi[0];\n}\n\n");
        else
            sb_printf(src, "    if (lid == 0) out[out_off + o * nparts + part] = sh[0];\n}\n\n");
        size_t maxwg = c->ctx->info.max_work_group_size;
        size_t cap = maxwg < WG_REDUCE_MAX ? maxwg : WG_REDUCE_MAX;
        size_t want = 1;
        while (want < (size_t)n_red && want < cap) want *= 2;
        k->work_dim = 1;
        k->local[0] = pow2_at_most(want < cap ? want : cap);
        k->global[0] = (size_t)(n_out * parts) * k->local[0];
    }
    free(head.s);
    free(body.s);
    free(loads.s);
    free(cg->extra_params.s);
    free(cg->extra);
    bool failed = cg->oom || oom || pg->src.oom;
    free(cg);
    if (failed) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "kernel generation: out of host memory");
    return CLG_OK;
}

const char *clg_program_gen_source(const clg_program_gen *pg, size_t *length) {
    if (pg->n_kernels == 0) return NULL;
    *length = pg->src.len;
    return pg->src.s;
}

clg_status clg_program_gen_finish(clg_program_gen *pg) {
    if (pg->n_kernels == 0 || !pg->uses_random) return CLG_OK;
    /* prepend the random functions */
    char *prelude = NULL;
    size_t plen = 0;
    clg_status st = clg_kernel_source("random", &prelude, &plen);
    if (st != CLG_OK) return st;
    strbuf nb = {0};
    sb_printf(&nb, "%s\n%s", prelude, pg->src.s);
    free(prelude);
    if (nb.oom) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "kernel generation: out of host memory");
    free(pg->src.s);
    pg->src = nb;
    return CLG_OK;
}

clg_status clg_codegen_bind(clg_program_gen *pg, clg_compiler *c, cl_program program,
                            const clg_tensor *m, int step) {
    gen_kernel *gk = NULL;
    for (int i = 0; i < pg->n_kernels; ++i)
        if (pg->kernels[i].step == step) gk = &pg->kernels[i];
    if (!gk) return clg_fail(CLG_ERR_INTERNAL, "no generated kernel for step %d (%s)", step,
                             m->info->name);
    char name[32];
    snprintf(name, sizeof name, "k%d", step);
    cl_int err;
    cl_kernel kern = clCreateKernel(program, name, &err);
    if (!kern) return clg_fail_cl(err, "creating generated kernel %s (%s)", name, gk->label);
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
