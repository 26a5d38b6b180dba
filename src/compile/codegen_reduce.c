/* The forms of a generated reduction kernel: which one a reduction gets on a device (and into
 * how many parts a long one splits), and the text of each: the serial column form, the CPU
 * row walk and the work-group tree. codegen.c writes the parameter list before them. */
#include "compile/codegen_internal.h"

#define WG_REDUCE_MAX 256
/* Outputs per work-item of the CPU column form: one cache line of floats. */
#define CPU_STRIP 16

/* ---- choosing the form ---- */

/* Few outputs and long reductions would leave most compute units idle (one work-group per
 * output): split each output's reduction over several work-groups. */
static int split_parts(clg_reduce_kind rk, int64_t n_red, int64_t n_out) {
    if (rk == CLG_REDUCE_ARGMAX || n_red < 16384 || n_out >= 64) return 1;
    int64_t want = n_red / 8192;
    return (int)(want > 64 ? 64 : want);
}

/* Work-items per work-group of the tree form: a power of two covering the reduction, up to
 * what the device allows. */
static size_t tree_size(const clg_context *ctx, int64_t n_red) {
    size_t maxwg = ctx->info.max_work_group_size;
    size_t cap = maxwg < WG_REDUCE_MAX ? maxwg : WG_REDUCE_MAX;
    size_t want = 1;
    while (want < (size_t)n_red && want < cap) want *= 2;
    return clg_cg_pow2_at_most(want < cap ? want : cap);
}

clg_cg_plan clg_cg_choose_reduction(const clg_context *ctx, clg_reduce_kind rk,
                                    const clg_cg_space *sp) {
    const int r = sp->r;
    clg_cg_plan p = {.n_out = 1, .n_red = 1, .work_dim = 1};
    int n_reduced = 0;
    for (int d = 0; d < r; ++d) {
        if (sp->reduced[d]) p.n_red *= sp->dims[d];
        else p.n_out *= sp->dims[d];
        n_reduced += sp->reduced[d];
    }
    p.parts = split_parts(rk, p.n_red, p.n_out);
    /* The innermost dim reduced along with others: reductions walk rows of it. */
    bool inner_red = sp->reduced[r - 1];
    int64_t nrow = inner_red ? p.n_red / sp->dims[r - 1] : 0;
    p.rows = rk != CLG_REDUCE_ARGMAX && inner_red && n_reduced >= 2 && nrow >= p.parts;
    bool cpu_rows = p.rows && clg_long_work_items(ctx) && rk == CLG_REDUCE_SUM;
    /* A work-item of the CPU row form loops over all its elements: under a loop limit,
     * enough parts that each takes at most a quarter of it, else the work-group form. */
    uint32_t limit = ctx->info.loop_limit;
    if (cpu_rows && limit) {
        int64_t per = limit / 4, need = (p.n_red + per - 1) / per;
        if (need > nrow || sp->dims[r - 1] > per) cpu_rows = false;
        else if (need > p.parts) p.parts = (int)need;
    }
    /* Enough outputs, reduced along outer dims: the serial column form, which loops over the
     * whole reduction in one work-item. */
    bool column = p.parts == 1 && !inner_red && p.n_out >= 32 &&
                  (!limit || p.n_red <= (int64_t)limit / 2);
    /* On a CPU device each work-item of the column form would walk one column down the rows
     * alone (pocl runs a work-item's loop whole before the next work-item's), a stride of a
     * row per element: instead a work-item sums a strip of neighbouring outputs, reading a
     * cache line of each row. For the common case of one kept dim (a bias gradient). */
    bool strip = column && clg_long_work_items(ctx) && rk == CLG_REDUCE_SUM &&
                 n_reduced == r - 1;
    if (strip) {
        p.form = CLG_CG_FORM_CPU_COLUMNS;
        p.local[0] = 1;
        p.global[0] = ((size_t)p.n_out + CPU_STRIP - 1) / CPU_STRIP;
    } else if (column) {
        p.form = CLG_CG_FORM_COLUMN;
        p.local[0] = CLG_CG_WG_ELEMENTWISE;
        p.global[0] = clg_cg_round_up((size_t)p.n_out, CLG_CG_WG_ELEMENTWISE);
    } else if (cpu_rows) {
        p.form = CLG_CG_FORM_CPU_ROWS;
        p.local[0] = 1;
        p.global[0] = (size_t)(p.n_out * p.parts);
    } else {
        p.form = CLG_CG_FORM_TREE;
        p.local[0] = tree_size(ctx, p.n_red);
        p.global[0] = (size_t)(p.n_out * p.parts) * p.local[0];
    }
    return p;
}

/* ---- text shared by the forms ---- */

/* The accumulator's type: argmax compares as float whatever it reads. */
static const char *acc_type(const clg_cg_text *t) {
    return t->rk == CLG_REDUCE_ARGMAX ? "float" : clg_cg_type_name(t->dtype);
}

/* The identity the accumulator starts from. */
static const char *acc_init(clg_reduce_kind rk) {
    return rk == CLG_REDUCE_SUM ? "0.0f" : rk == CLG_REDUCE_MIN ? "INFINITY" : "-INFINITY";
}

/* One step of a reduction's accumulator: acc (and acci for argmax) take value v read at qq;
 * `first` is the C condition of a thread's first element (argmax takes it whatever it is). */
static void emit_accumulate(clg_strbuf *src, clg_reduce_kind rk, const char *v,
                            const char *first) {
    switch (rk) {
    case CLG_REDUCE_SUM:
        clg_strbuf_printf(src, "        acc += %s;\n", v);
        break;
    case CLG_REDUCE_MAX:
        clg_strbuf_printf(src, "        acc = (isnan(%s) || %s > acc) ? %s : acc;\n", v, v, v);
        break;
    case CLG_REDUCE_MIN:
        clg_strbuf_printf(src, "        acc = (isnan(%s) || %s < acc) ? %s : acc;\n", v, v, v);
        break;
    case CLG_REDUCE_ARGMAX:
        clg_strbuf_printf(src, "        const float av = (float)(%s);\n"
                               "        if (%s || av > acc) { acc = av; acci = qq; }\n",
                          v, first);
        break;
    }
}

/* One element of a reduction at the current coordinates: its linear index if the prologue
 * asks for it, the operand loads and the fused body. */
static void emit_element(const clg_cg_text *t) {
    if (t->lin) {
        clg_strbuf_printf(t->src, "        const int lin = ");
        clg_cg_offset_expr(t->src, t->lin_k, t->sp->r, t->sp->st);
        clg_strbuf_printf(t->src, ";\n");
    }
    clg_strbuf_printf(t->src, "%s%s", t->loads, t->body);
}

/* The element at flat reduced index qq: its reduced coordinates, then the element. */
static void emit_reduce_body(const clg_cg_text *t) {
    clg_cg_unravel(t->src, t->sp->r, t->sp->reduced, true, "qq", "        ");
    emit_element(t);
}

/* The row walk of a reduction over the innermost dim and outer ones: this part's share of the
 * rows (outer reduced coordinates), opened as a loop over qa with its coordinates unravelled. */
static void emit_row_walk(const clg_cg_text *t) {
    const int r = t->sp->r;
    bool outer_red[CLG_MAX_DIMS];
    for (int d = 0; d < r; ++d) outer_red[d] = t->sp->reduced[d] && d < r - 1;
    clg_strbuf_printf(t->src, "    const int nrow = ");
    clg_cg_product_expr(t->src, r, outer_red, true);
    clg_strbuf_printf(t->src, ";\n    const int chunk = (nrow + nparts - 1) / nparts;\n"
                              "    const int a0 = part * chunk, a1 = min(nrow, a0 + chunk);\n"
                              "    for (int qa = a0; qa < a1; ++qa) {\n");
    clg_cg_unravel(t->src, r, outer_red, true, "qa", "        ");
}

/* Output o's coordinates, the accumulator at its identity, and nred (left open, unended). */
static void emit_acc_start(const clg_cg_text *t) {
    clg_cg_unravel(t->src, t->sp->r, t->sp->reduced, false, "o", "    ");
    clg_strbuf_printf(t->src, "    %s acc = %s;\n    int acci = 0;\n    const int nred = ",
                      acc_type(t), acc_init(t->rk));
    clg_cg_product_expr(t->src, t->sp->r, t->sp->reduced, true);
}

/* ---- the forms ---- */

/* Reduced dims outside the innermost kept one (a bias gradient: [B, N] -> [N]): one
 * work-item per output with a serial loop; neighbouring work-items read neighbouring
 * addresses, which a GPU coalesces and a CPU vectorises, and no local memory. */
void clg_cg_emit_column(const clg_cg_text *t) {
    clg_strbuf *src = t->src;
    clg_strbuf_printf(src, "    const int o = get_global_id(0);\n    if (o >= ");
    clg_cg_product_expr(src, t->sp->r, t->sp->reduced, false);
    clg_strbuf_printf(src, ") return;\n");
    emit_acc_start(t);
    clg_strbuf_printf(src, ";\n    for (int qq = 0; qq < nred; ++qq) {\n");
    emit_reduce_body(t);
    emit_accumulate(src, t->rk, t->root, "qq == 0");
    if (t->rk == CLG_REDUCE_SUM)
        clg_strbuf_printf(src, "    }\n    out[out_off + o] = acc * scale;\n}\n\n");
    else if (t->rk == CLG_REDUCE_ARGMAX)
        clg_strbuf_printf(src, "    }\n    out[out_off + o] = acci;\n}\n\n");
    else
        clg_strbuf_printf(src, "    }\n    out[out_off + o] = acc;\n}\n\n");
}

/* The CPU column form: outputs first .. first + CPU_STRIP - 1 of the one kept (innermost) dim,
 * each row's reduced coordinates unravelled once for the strip. A strip past the end reads its
 * last column again and stores only what is in range. */
void clg_cg_emit_cpu_columns(const clg_cg_text *t) {
    clg_strbuf *src = t->src;
    const int r = t->sp->r;
    clg_strbuf_printf(src,
                      "    const int first = get_global_id(0) * %d, nout = d%d;\n"
                      "    float a[%d];\n    for (int j = 0; j < %d; ++j) a[j] = 0.0f;\n"
                      "    const int nred = ",
                      CPU_STRIP, r - 1, CPU_STRIP, CPU_STRIP);
    clg_cg_product_expr(src, r, t->sp->reduced, true);
    clg_strbuf_printf(src, ";\n    for (int qq = 0; qq < nred; ++qq) {\n");
    clg_cg_unravel(src, r, t->sp->reduced, true, "qq", "        ");
    clg_strbuf_printf(src, "#pragma unroll\n    for (int j = 0; j < %d; ++j) {\n"
                           "        const int c%d = min(first + j, nout - 1);\n", CPU_STRIP, r - 1);
    emit_element(t);
    clg_strbuf_printf(src, "        a[j] += %s;\n    }\n    }\n", t->root);
    clg_strbuf_printf(src, "    for (int j = 0; j < %d && first + j < nout; ++j)\n"
                           "        out[out_off + first + j] = a[j] * scale;\n}\n\n", CPU_STRIP);
}

/* On a CPU device a sum over rows of the innermost dim (a bias gradient over [N, C, H, W])
 * runs as one work-item per output and part, reading each row in order into eight
 * interleaved partial sums that the compiler keeps in one vector register (on pocl faster
 * than the work-group tree for the MNIST CNN's bias gradients). */
void clg_cg_emit_cpu_rows(const clg_cg_text *t) {
    clg_strbuf *src = t->src;
    const int r = t->sp->r;
    const char *ty = acc_type(t);
    clg_strbuf_printf(src, "    const int o = get_global_id(0) / nparts,"
                           " part = get_global_id(0) %% nparts;\n");
    clg_cg_unravel(src, r, t->sp->reduced, false, "o", "    ");
    clg_strbuf_printf(src, "    %s acc = 0;\n    %s a[8] = {0, 0, 0, 0, 0, 0, 0, 0};\n", ty, ty);
    emit_row_walk(t);
    /* the row in steps of eight, then its tail */
    clg_strbuf_printf(src, "    int cc = 0;\n    for (; cc + 8 <= d%d; cc += 8) {\n"
                           "#pragma unroll\n    for (int j = 0; j < 8; ++j) {\n"
                           "    const int c%d = cc + j;\n", r - 1, r - 1);
    emit_element(t);
    clg_strbuf_printf(src, "        a[j] += %s;\n    }\n    }\n", t->root);
    clg_strbuf_printf(src, "    for (; cc < d%d; ++cc) {\n    const int c%d = cc;\n", r - 1, r - 1);
    emit_element(t);
    clg_strbuf_printf(src, "        acc += %s;\n    }\n", t->root);
    clg_strbuf_printf(src, "    }\n    for (int j = 0; j < 8; ++j) acc += a[j];\n"
                           "    out[out_off + o * nparts + part] = acc * scale;\n}\n\n");
}

/* The tree's combining step: lanes [0, s) take in lanes [s, 2s). */
static void emit_tree_combine(clg_strbuf *src, clg_reduce_kind rk, const char *ty) {
    switch (rk) {
    case CLG_REDUCE_SUM:
        clg_strbuf_printf(src, "            sh[lid] += sh[lid + s];\n");
        break;
    case CLG_REDUCE_MAX:
        clg_strbuf_printf(src, "            const %s b = sh[lid + s];\n"
                               "            if (isnan(b) || b > sh[lid]) sh[lid] = b;\n", ty);
        break;
    case CLG_REDUCE_MIN:
        clg_strbuf_printf(src, "            const %s b = sh[lid + s];\n"
                               "            if (isnan(b) || b < sh[lid]) sh[lid] = b;\n", ty);
        break;
    case CLG_REDUCE_ARGMAX:
        clg_strbuf_printf(src, "            const float b = sh[lid + s];\n"
                               "            const int bi = shi[lid + s];\n"
                               "            if (b > sh[lid] || (b == sh[lid] && bi < shi[lid])) {\n"
                               "                sh[lid] = b;\n                shi[lid] = bi;\n"
                               "            }\n");
        break;
    }
}

/* One work-group per output and part: its lanes accumulate strided shares of the part into
 * local memory, which a tree then combines. */
void clg_cg_emit_tree(const clg_cg_text *t, const clg_cg_plan *plan) {
    clg_strbuf *src = t->src;
    const int r = t->sp->r;
    const char *ty = acc_type(t);
    clg_strbuf_printf(src, "    __local %s sh[%d];\n", ty, WG_REDUCE_MAX);
    if (t->rk == CLG_REDUCE_ARGMAX)
        clg_strbuf_printf(src, "    __local int shi[%d];\n", WG_REDUCE_MAX);
    clg_strbuf_printf(src, "    const int lid = get_local_id(0), L = get_local_size(0);\n"
                           "    const int o = get_group_id(0) / nparts,"
                           " part = get_group_id(0) %% nparts;\n");
    emit_acc_start(t);
    /* The innermost dim reduced along with others (a bias gradient over [N, C, H, W]):
     * the lanes share each row of it and the other reduced coordinates step once per
     * row, instead of unravelling every element's index with divisions (the
     * divisions dominate such a kernel on pocl). Parts split the rows. */
    if (plan->rows) {
        clg_strbuf_printf(src, ";\n");
        emit_row_walk(t);
        clg_strbuf_printf(src, "    for (int c%d = lid; c%d < d%d; c%d += L) {\n", r - 1, r - 1,
                          r - 1, r - 1);
        emit_element(t);
        emit_accumulate(src, t->rk, t->root, "false");
        clg_strbuf_printf(src, "    }\n    }\n    sh[lid] = acc;\n");
    } else {
        clg_strbuf_printf(src, ";\n    const int chunk = (nred + nparts - 1) / nparts;\n"
                               "    const int q0 = part * chunk, q1 = min(nred, q0 + chunk);\n"
                               "    for (int qq = q0 + lid; qq < q1; qq += L) {\n");
        emit_reduce_body(t);
        emit_accumulate(src, t->rk, t->root, "qq == q0 + lid");
        clg_strbuf_printf(src, "    }\n    sh[lid] = acc;\n");
    }
    if (t->rk == CLG_REDUCE_ARGMAX) clg_strbuf_printf(src, "    shi[lid] = acci;\n");
    clg_strbuf_printf(src, "    barrier(CLK_LOCAL_MEM_FENCE);\n"
                           "    for (int s = L / 2; s > 0; s >>= 1) {\n"
                           "        if (lid < s) {\n");
    emit_tree_combine(src, t->rk, ty);
    clg_strbuf_printf(src, "        }\n        barrier(CLK_LOCAL_MEM_FENCE);\n    }\n");
    if (t->rk == CLG_REDUCE_SUM)
        clg_strbuf_printf(src, "    if (lid == 0)"
                               " out[out_off + o * nparts + part] = sh[0] * scale;\n}\n\n");
    else if (t->rk == CLG_REDUCE_ARGMAX)
        clg_strbuf_printf(src, "    if (lid == 0) out[out_off + o] = shi[0];\n}\n\n");
    else
        clg_strbuf_printf(src, "    if (lid == 0)"
                               " out[out_off + o * nparts + part] = sh[0];\n}\n\n");
}
