/* What codegen.c and codegen_reduce.c share: the growable source string, the collapsed
 * iteration space a kernel walks, the form chosen for it (with its launch geometry) and the
 * text helpers every form's emitter writes with. */
#ifndef CLG_COMPILE_CODEGEN_INTERNAL_H
#define CLG_COMPILE_CODEGEN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/context.h"
#include "graph/graph_internal.h"

/* Work-group size of the one-element-per-work-item forms (elementwise and column). */
#define CLG_CG_WG_ELEMENTWISE 64

/* ---- growable strings ---- */

typedef struct clg_strbuf {
    char *s;
    size_t len, cap;
    bool oom; /* a failed append: the string is incomplete, generation fails */
} clg_strbuf;

void clg_strbuf_printf(clg_strbuf *b, const char *fmt, ...) CLG_PRINTF(2, 3);

/* ---- the iteration space and the kernel's form ---- */

/* The collapsed iteration space: rank, sizes, which dims are reduced, and each operand's
 * strides over it (st[k] for operand k; the row after the last operand is the linear index). */
typedef struct clg_cg_space {
    int r;
    int64_t dims[CLG_MAX_DIMS];
    bool reduced[CLG_MAX_DIMS];
    const int64_t (*st)[CLG_MAX_DIMS];
} clg_cg_space;

typedef enum clg_cg_form {
    CLG_CG_FORM_RUNS,       /* elementwise on a CPU device: runs of the innermost dim per item */
    CLG_CG_FORM_ELEMENT_1D, /* elementwise over one dim, one element per work-item */
    CLG_CG_FORM_ELEMENT_2D, /* elementwise, one element per work-item: innermost dim x rest */
    CLG_CG_FORM_COLUMN,     /* reduction along outer dims: one work-item per output, a loop */
    CLG_CG_FORM_CPU_COLUMNS, /* sum along outer dims on a CPU device: a strip of outputs per item */
    CLG_CG_FORM_CPU_ROWS,   /* sum over rows on a CPU device: one work-item per output and part */
    CLG_CG_FORM_TREE,       /* reduction: one work-group per output and part, a local tree */
} clg_cg_form;

/* How one kernel runs: its form, the form's parameters and its launch geometry. */
typedef struct clg_cg_plan {
    clg_cg_form form;
    int64_t n_out, n_red; /* outputs, and elements reduced into each (1 if elementwise) */
    int parts;            /* a split reduction's partial results per output (else 1) */
    bool rows;            /* tree form: the lanes walk rows of the innermost dim */
    size_t ch, rp;        /* runs form: innermost positions and rows per work-item */
    cl_uint work_dim;
    size_t global[2], local[2];
} clg_cg_plan;

/* What a form's emitter writes a kernel's body from, after its parameter list. */
typedef struct clg_cg_text {
    clg_strbuf *src;
    const clg_cg_space *sp;
    const char *loads; /* the operands' loads at the current coordinates */
    const char *body;  /* the fused members' temporaries */
    const char *root;  /* the value stored (elementwise) or reduced */
    bool lin;          /* a reduction's prologue reads the linear index (stride row lin_k) */
    int lin_k;
    clg_reduce_kind rk;
    clg_dtype dtype; /* of the output */
} clg_cg_text;

static inline const char *clg_cg_type_name(clg_dtype d) {
    return d == CLG_I32 ? "int" : "float";
}

static inline size_t clg_cg_round_up(size_t n, size_t multiple) {
    return (n + multiple - 1) / multiple * multiple;
}

static inline size_t clg_cg_pow2_at_most(size_t x) {
    size_t p = 1;
    while (p * 2 <= x) p *= 2;
    return p;
}

/* ---- text helpers (codegen.c) ---- */

/* Offset expression of operand k at the current coordinates (names "c<d>"). */
void clg_cg_offset_expr(clg_strbuf *b, int k, int r, const int64_t (*st)[CLG_MAX_DIMS]);
/* const int c<d> = ... for the dims of one class (kept or reduced), from linear index src. */
void clg_cg_unravel(clg_strbuf *b, int r, const bool *reduced, bool want_reduced,
                    const char *src, const char *indent);
/* Product of the size arguments d<d> of one class of dims ("1" if none). */
void clg_cg_product_expr(clg_strbuf *b, int r, const bool *reduced, bool want_reduced);

/* ---- reductions (codegen_reduce.c) ---- */

/* The form of a reduction over space sp on the context's device, with its parts and
 * launch geometry. */
clg_cg_plan clg_cg_choose_reduction(const clg_context *ctx, clg_reduce_kind rk,
                                    const clg_cg_space *sp);
void clg_cg_emit_column(const clg_cg_text *t);
void clg_cg_emit_cpu_columns(const clg_cg_text *t);
void clg_cg_emit_cpu_rows(const clg_cg_text *t);
void clg_cg_emit_tree(const clg_cg_text *t, const clg_cg_plan *plan);

#endif
