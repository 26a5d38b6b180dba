/* Elementwise ops: unary math and activations, broadcasting binary ops, comparisons, where,
 * casts. Each op is one table entry: its OpenCL expression (for the fused-kernel generator)
 * and its backward rule, built from other elementwise ops so fusion sees through it. */
#include <stdio.h>
#include <math.h>
#include <string.h>

#include "compile/codegen.h"
#include "graph/graph_internal.h"
#include "ops/conv.h"
#include "gemm/gemm.h"
#include "ops/node.h"

/* An elementwise op: the clg_op_info the graph sees plus the expression template.
 * In fmt, $0 $1 $2 are the operands and #0 #1 the node's attrs.scalars a and b (kernel
 * args). */
typedef struct ew_op {
    clg_op_info info;
    const char *fmt;
} ew_op;

static void emit_fmt(clg_codegen *cg, const clg_tensor *n, const char *const *operands,
                     char *out, size_t size) {
    const ew_op *op = (const ew_op *)n->info;
    size_t len = 0;
    for (const char *p = op->fmt; *p && len + 1 < size; ++p) {
        const char *piece = NULL;
        if (*p == '$' && p[1] >= '0' && p[1] <= '3') {
            piece = operands[p[1] - '0'];
            ++p;
        } else if (*p == '#' && (p[1] == '0' || p[1] == '1')) {
            piece = clg_cg_float_arg(cg, p[1] == '0' ? n->attrs.scalars.a : n->attrs.scalars.b);
            ++p;
        }
        if (piece) {
            size_t pl = strlen(piece);
            if (len + pl >= size) break;
            memcpy(out + len, piece, pl);
            len += pl;
        } else {
            out[len++] = *p;
        }
    }
    out[len] = '\0';
}

#define EW(var, nm, bw, f)                                                                     \
    static const ew_op var = {                                                                 \
        .info = {.name = nm, .kind = CLG_KIND_ELEMENTWISE, .backward = bw, .emit = emit_fmt},  \
        .fmt = f}
/* One that a kernel op may compute in its epilogue (epi: what it is; act: GEMM activation). */
#define EW_EPILOGUE(var, nm, bw, f, epi, act)                                                  \
    static const ew_op var = {.info = {.name = nm,                                             \
                                       .kind = CLG_KIND_ELEMENTWISE,                           \
                                       .backward = bw,                                         \
                                       .emit = emit_fmt,                                       \
                                       .epilogue = epi,                                        \
                                       .activation = act},                                     \
                              .fmt = f}

/* ---- shared builders ---- */

static clg_tensor *cast_to(clg_graph *g, clg_tensor *x, clg_dtype dtype) {
    return x->dtype == dtype ? x : clg_cast(g, x, dtype);
}

static clg_tensor *unary(clg_graph *g, const ew_op *op, clg_tensor *x) {
    CLG_GUARD(g, op->info.name, 1, x);
    x = cast_to(g, x, CLG_F32);
    return clg_node_new(g, &op->info, CLG_F32, x->ndim, x->shape, 1, &x);
}

static clg_tensor *unary_attr(clg_graph *g, const ew_op *op, clg_tensor *x, float a0,
                              float a1) {
    clg_tensor *t = unary(g, op, x);
    if (t != g->poison)
        t->attrs = (clg_attrs){.kind = CLG_ATTRS_SCALARS, .scalars = {.a = a0, .b = a1}};
    return t;
}

/* Broadcast the operands, promoting to f32 unless every operand is i32 and the op keeps
 * integers (int_ok). */
static clg_tensor *nary(clg_graph *g, const ew_op *op, int n, clg_tensor **xs, bool int_ok,
                        clg_dtype out_dtype_if_float, int first_value_operand) {
    int nd = 0;
    int64_t shape[CLG_MAX_DIMS];
    for (int i = 0; i < n; ++i) {
        int nn;
        int64_t tmp[CLG_MAX_DIMS];
        if (!clg_broadcast_shape(nd, shape, xs[i]->ndim, xs[i]->shape, &nn, tmp)) {
            char a[200] = "", b[200];
            for (int j = 0; j < n; ++j) {
                size_t l = strlen(a);
                snprintf(a + l, sizeof a - l, "%s%s", j ? " and " : "",
                         clg_shape_str(xs[j]->ndim, xs[j]->shape, b, sizeof b));
            }
            return clg_graph_fail(g, CLG_ERR_SHAPE, "%s: shapes %s cannot be broadcast together",
                                  op->info.name, a);
        }
        nd = nn;
        memcpy(shape, tmp, sizeof tmp);
    }
    bool all_int = true;
    for (int i = first_value_operand; i < n; ++i) all_int = all_int && xs[i]->dtype == CLG_I32;
    clg_dtype vt = all_int && int_ok ? CLG_I32 : CLG_F32;
    for (int i = first_value_operand; i < n; ++i) xs[i] = cast_to(g, xs[i], vt);
    if (g->error) return g->poison;
    clg_dtype out = vt == CLG_I32 ? CLG_I32 : out_dtype_if_float;
    return clg_node_new(g, &op->info, out, nd, shape, n, xs);
}

static clg_tensor *binary(clg_graph *g, const ew_op *op, clg_tensor *a, clg_tensor *b,
                          bool int_ok) {
    CLG_GUARD(g, op->info.name, 2, a, b);
    clg_tensor *xs[2] = {a, b};
    return nary(g, op, 2, xs, int_ok, CLG_F32, 0);
}

static void acc_binary(clg_graph *g, clg_tensor *node, int i, clg_tensor *contrib) {
    clg_tensor *x = node->in[i];
    if (!clg_needs_grad(x)) return;
    clg_grad_accumulate(g, x, clg_sum_to_shape(g, contrib, x->ndim, x->shape));
}

/* ---- backward rules ---- */

#define X (node->in[0])
#define Y (node)
static void bw_neg(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, X, clg_neg(g, gout));
}
static void bw_abs(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static void bw_exp(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, X, clg_mul(g, gout, Y));
}
static void bw_log(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, X, clg_div(g, gout, X));
}
static void bw_sqrt(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, X, clg_div(g, clg_mul_scalar(g, gout, 0.5f), Y));
}
static void bw_rsqrt(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    /* d x^-1/2 = -1/2 x^-3/2 = -1/2 y^3 */
    clg_tensor *y3 = clg_mul(g, clg_square(g, Y), Y);
    clg_grad_accumulate(g, X, clg_mul(g, clg_mul_scalar(g, gout, -0.5f), y3));
}
static void bw_square(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, X, clg_mul(g, clg_mul_scalar(g, gout, 2.0f), X));
}
static void bw_reciprocal(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, X, clg_neg(g, clg_mul(g, gout, clg_square(g, Y))));
}
static void bw_tanh(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *d = clg_add_scalar(g, clg_neg(g, clg_square(g, Y)), 1.0f);
    clg_grad_accumulate(g, X, clg_mul(g, gout, d));
}
static void bw_sigmoid(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *d = clg_mul(g, Y, clg_add_scalar(g, clg_neg(g, Y), 1.0f));
    clg_grad_accumulate(g, X, clg_mul(g, gout, d));
}
/* The gate reads the output (y > 0 exactly when x > 0), so the pre-activation need not be
 * kept: a bias add feeding the relu fuses into one kernel, or into a GEMM's epilogue; and a
 * max pooling's backward can apply the gate itself (compile's epilogue fusion). */
static const ew_op op_relu_grad; /* defined with the op table below */
static void bw_relu(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *xs[2] = {gout, Y};
    if (!clg_check_inputs(g, "relu backward", 2, xs)) return;
    clg_grad_accumulate(g, X,
                        clg_node_new(g, &op_relu_grad.info, CLG_F32, Y->ndim, Y->shape, 2, xs));
}
static void bw_leaky_relu(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *slope = clg_where(g, clg_lt(g, X, clg_scalar(g, 0.0f)),
                                  clg_scalar(g, node->attrs.scalars.a), clg_scalar(g, 1.0f));
    clg_grad_accumulate(g, X, clg_mul(g, gout, slope));
}
static void bw_gelu(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    /* y = x/2 (1 + t), t = tanh(k (x + c x^3));
     * dy/dx = (1 + t)/2 + x/2 (1 - t^2) k (1 + 3 c x^2) */
    const float k = 0.7978845608028654f, c = 0.044715f;
    clg_tensor *x2 = clg_square(g, X);
    clg_tensor *u = clg_mul_scalar(g, clg_add(g, X, clg_mul_scalar(g, clg_mul(g, x2, X), c)), k);
    clg_tensor *t = clg_tanh(g, u);
    clg_tensor *left = clg_mul_scalar(g, clg_add_scalar(g, t, 1.0f), 0.5f);
    clg_tensor *sech2 = clg_add_scalar(g, clg_neg(g, clg_square(g, t)), 1.0f);
    clg_tensor *du = clg_mul_scalar(g, clg_add_scalar(g, clg_mul_scalar(g, x2, 3.0f * c), 1.0f),
                                    k);
    clg_tensor *right = clg_mul(g, clg_mul(g, clg_mul_scalar(g, X, 0.5f), sech2), du);
    clg_grad_accumulate(g, X, clg_mul(g, gout, clg_add(g, left, right)));
}
/* d/dx x Phi(x) = Phi(x) + x phi(x), one kernel over (x, gout): built from erf, exp and
 * products it would be five nodes that fusion merges anyway, so the whole derivative is one
 * expression (no second derivative). */
static const ew_op op_gelu_exact_grad; /* defined with the op table below */
static void bw_gelu_exact(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, X, binary(g, &op_gelu_exact_grad, X, gout, false));
}
static void bw_sin(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, X, clg_mul(g, gout, clg_cos(g, X)));
}
static void bw_cos(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, X, clg_neg(g, clg_mul(g, gout, clg_sin(g, X))));
}
static void bw_clamp(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    const clg_attr_scalars *lim = &node->attrs.scalars;
    clg_tensor *in = clg_mul(g, clg_ge(g, X, clg_scalar(g, lim->a)),
                             clg_le(g, X, clg_scalar(g, lim->b)));
    clg_grad_accumulate(g, X, clg_mul(g, gout, in));
}
static void bw_copy(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, X, gout);
}
#undef X

#define A (node->in[0])
#define B (node->in[1])
static void bw_add(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    acc_binary(g, node, 0, gout);
    acc_binary(g, node, 1, gout);
}
static void bw_sub(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    acc_binary(g, node, 0, gout);
    if (clg_needs_grad(B)) acc_binary(g, node, 1, clg_neg(g, gout));
}
static void bw_mul(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    if (clg_needs_grad(A)) acc_binary(g, node, 0, clg_mul(g, gout, B));
    if (clg_needs_grad(B)) acc_binary(g, node, 1, clg_mul(g, gout, A));
}
static void bw_div(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    if (clg_needs_grad(A)) acc_binary(g, node, 0, clg_div(g, gout, B));
    if (clg_needs_grad(B)) acc_binary(g, node, 1, clg_neg(g, clg_div(g, clg_mul(g, gout, Y), B)));
}
static void bw_pow(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    if (clg_needs_grad(A)) {
        /* b a^(b-1) */
        clg_tensor *d = clg_mul(g, B, clg_pow(g, A, clg_add_scalar(g, B, -1.0f)));
        acc_binary(g, node, 0, clg_mul(g, gout, d));
    }
    if (clg_needs_grad(B)) acc_binary(g, node, 1, clg_mul(g, gout, clg_mul(g, Y, clg_log(g, A))));
}
static void bw_maximum(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *pick_a = clg_ge(g, A, B); /* ties go to a */
    if (clg_needs_grad(A)) acc_binary(g, node, 0, clg_mul(g, gout, pick_a));
    if (clg_needs_grad(B))
        acc_binary(g, node, 1, clg_mul(g, gout, clg_add_scalar(g, clg_neg(g, pick_a), 1.0f)));
}
static void bw_minimum(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *pick_a = clg_le(g, A, B);
    if (clg_needs_grad(A)) acc_binary(g, node, 0, clg_mul(g, gout, pick_a));
    if (clg_needs_grad(B))
        acc_binary(g, node, 1, clg_mul(g, gout, clg_add_scalar(g, clg_neg(g, pick_a), 1.0f)));
}
static void bw_where(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *cond = node->in[0], *zero = clg_scalar(g, 0.0f);
    if (clg_needs_grad(node->in[1])) acc_binary(g, node, 1, clg_where(g, cond, gout, zero));
    if (clg_needs_grad(node->in[2])) acc_binary(g, node, 2, clg_where(g, cond, zero, gout));
}
#undef A
#undef B
#undef Y

/* ---- op table ---- */

EW(op_neg, "neg", bw_neg, "(-$0)");
EW(op_abs, "abs", bw_abs, "fabs($0)");
EW(op_sign, "sign", NULL, "(($0) > 0.0f ? 1.0f : (($0) < 0.0f ? -1.0f : 0.0f))");
EW(op_exp, "exp", bw_exp, "exp($0)");
EW(op_log, "log", bw_log, "log($0)");
EW(op_sqrt, "sqrt", bw_sqrt, "sqrt($0)");
EW(op_rsqrt, "rsqrt", bw_rsqrt, "rsqrt($0)");
EW(op_square, "square", bw_square, "(($0) * ($0))");
EW(op_reciprocal, "reciprocal", bw_reciprocal, "(1.0f / ($0))");
EW_EPILOGUE(op_tanh, "tanh", bw_tanh, "tanh($0)", CLG_EPILOGUE_ACTIVATION, CLG_GEMM_ACT_TANH);
EW_EPILOGUE(op_sigmoid, "sigmoid", bw_sigmoid, "(1.0f / (1.0f + exp(-($0))))",
            CLG_EPILOGUE_ACTIVATION, CLG_GEMM_ACT_SIGMOID);
/* Written so that NaN propagates (relu(NaN) = NaN, as in PyTorch). */
EW_EPILOGUE(op_relu, "relu", bw_relu, "(($0) < 0.0f ? 0.0f : ($0))", CLG_EPILOGUE_ACTIVATION,
            CLG_GEMM_ACT_RELU);
/* relu's backward, gout where y > 0: a product with the 0/1 gate, so a NaN gout stays NaN. */
EW_EPILOGUE(op_relu_grad, "relu_grad", NULL, "(($0) * (($1) > 0.0f ? 1.0f : 0.0f))",
            CLG_EPILOGUE_RELU_GATE, 0);
EW(op_leaky_relu, "leaky_relu", bw_leaky_relu, "(($0) < 0.0f ? ($0) * #0 : ($0))");
EW_EPILOGUE(op_gelu, "gelu", bw_gelu,
            "(0.5f * ($0) * (1.0f + tanh(0.7978845608028654f * (($0) + 0.044715f * ($0) * ($0) * "
            "($0)))))",
            CLG_EPILOGUE_ACTIVATION, CLG_GEMM_ACT_GELU);
/* erf by Abramowitz and Stegun 7.1.26 (|error| <= 1.5e-7, below float rounding of 1 + erf):
 * erf|x| = 1 - t (a1 + t (a2 + ... a5 t)) exp(-x^2), t = 1 / (1 + p |x|), then the sign.
 * OpenCL's erf is a scalar library call on pocl that does not vectorise; exp and a divide do.
 * GELU_Z is x / sqrt(2) of operand $0. */
#define GELU_Z "(fabs($0) * 0.7071067811865476f)"
#define GELU_T "(1.0f / (1.0f + 0.3275911f * " GELU_Z "))"
#define GELU_ERF                                                                               \
    "copysign(1.0f - (((((1.061405429f * " GELU_T " - 1.453152027f) * " GELU_T                 \
    " + 1.421413741f) * " GELU_T " - 0.284496736f) * " GELU_T " + 0.254829592f) * " GELU_T    \
    ") * exp(-" GELU_Z " * " GELU_Z "), $0)"
EW(op_gelu_exact, "gelu_exact", bw_gelu_exact, "(0.5f * ($0) * (1.0f + " GELU_ERF "))");
/* $0 x, $1 gout; 0.3989... = 1 / sqrt(2 pi) */
EW(op_gelu_exact_grad, "gelu_exact_grad", NULL,
   "(($1) * (0.5f * (1.0f + " GELU_ERF ") + ($0) * 0.3989422804014327f * "
   "exp(-0.5f * ($0) * ($0))))");
#undef GELU_ERF
#undef GELU_T
#undef GELU_Z
EW(op_sin, "sin", bw_sin, "sin($0)");
EW(op_cos, "cos", bw_cos, "cos($0)");
EW(op_clamp, "clamp", bw_clamp, "fmin(fmax($0, #0), #1)");
EW(op_to_f32, "cast_f32", NULL, "((float)($0))");
EW(op_to_i32, "cast_i32", NULL, "((int)($0))");
EW(op_copy_impl, "copy", bw_copy, "($0)");

EW_EPILOGUE(op_add, "add", bw_add, "(($0) + ($1))", CLG_EPILOGUE_BIAS, 0);
EW(op_sub, "sub", bw_sub, "(($0) - ($1))");
EW(op_mul, "mul", bw_mul, "(($0) * ($1))");
EW(op_div, "div", bw_div, "(($0) / ($1))");
EW(op_pow, "pow", bw_pow, "pow($0, $1)");
EW(op_maximum, "maximum", bw_maximum, "max($0, $1)");
EW(op_minimum, "minimum", bw_minimum, "min($0, $1)");
EW(op_eq, "eq", NULL, "(($0) == ($1) ? 1.0f : 0.0f)");
EW(op_ne, "ne", NULL, "(($0) != ($1) ? 1.0f : 0.0f)");
EW(op_lt, "lt", NULL, "(($0) < ($1) ? 1.0f : 0.0f)");
EW(op_le, "le", NULL, "(($0) <= ($1) ? 1.0f : 0.0f)");
EW(op_gt, "gt", NULL, "(($0) > ($1) ? 1.0f : 0.0f)");
EW(op_ge, "ge", NULL, "(($0) >= ($1) ? 1.0f : 0.0f)");
EW(op_where, "where", bw_where, "(($0) != 0 ? ($1) : ($2))");

static void bw_abs(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *s = unary(g, &op_sign, node->in[0]);
    clg_grad_accumulate(g, node->in[0], clg_mul(g, gout, s));
}


/* ---- public builders ---- */

clg_tensor *clg_neg(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_neg, x);
}
clg_tensor *clg_abs(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_abs, x);
}
clg_tensor *clg_exp(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_exp, x);
}
clg_tensor *clg_log(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_log, x);
}
clg_tensor *clg_sqrt(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_sqrt, x);
}
clg_tensor *clg_rsqrt(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_rsqrt, x);
}
clg_tensor *clg_square(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_square, x);
}
clg_tensor *clg_reciprocal(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_reciprocal, x);
}
clg_tensor *clg_tanh(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_tanh, x);
}
clg_tensor *clg_sigmoid(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_sigmoid, x);
}
clg_tensor *clg_relu(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_relu, x);
}
clg_tensor *clg_leaky_relu(clg_graph *g, clg_tensor *x, float slope) {
    return unary_attr(g, &op_leaky_relu, x, slope, 0.0f);
}
clg_tensor *clg_gelu(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_gelu, x);
}
clg_tensor *clg_gelu_exact(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_gelu_exact, x);
}
clg_tensor *clg_sin(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_sin, x);
}
clg_tensor *clg_cos(clg_graph *g, clg_tensor *x) {
    return unary(g, &op_cos, x);
}
clg_tensor *clg_clamp(clg_graph *g, clg_tensor *x, float lo, float hi) {
    CLG_GUARD(g, "clamp", 1, x);
    if (!(lo <= hi))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "clamp: lo %g is above hi %g",
                              (double)lo, (double)hi);
    return unary_attr(g, &op_clamp, x, lo, hi);
}

clg_tensor *clg_cast(clg_graph *g, clg_tensor *x, clg_dtype dtype) {
    CLG_GUARD(g, "cast", 1, x);
    if ((int)dtype < 0 || dtype >= CLG_DTYPE_COUNT)
        return clg_graph_fail(g, CLG_ERR_DTYPE, "cast: unknown dtype %d", (int)dtype);
    if (x->dtype == dtype) return x;
    const ew_op *op = dtype == CLG_F32 ? &op_to_f32 : &op_to_i32;
    return clg_node_new(g, &op->info, dtype, x->ndim, x->shape, 1, &x);
}

clg_tensor *clg_contiguous(clg_graph *g, clg_tensor *x) {
    CLG_GUARD(g, "contiguous", 1, x);
    return clg_node_new(g, &op_copy_impl.info, x->dtype, x->ndim, x->shape, 1, &x);
}

clg_tensor *clg_add(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return binary(g, &op_add, a, b, true);
}
clg_tensor *clg_sub(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return binary(g, &op_sub, a, b, true);
}
clg_tensor *clg_mul(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return binary(g, &op_mul, a, b, true);
}
clg_tensor *clg_div(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return binary(g, &op_div, a, b, false);
}
clg_tensor *clg_pow(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return binary(g, &op_pow, a, b, false);
}
clg_tensor *clg_maximum(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return binary(g, &op_maximum, a, b, true);
}
clg_tensor *clg_minimum(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return binary(g, &op_minimum, a, b, true);
}

static clg_tensor *compare(clg_graph *g, const ew_op *op, clg_tensor *a, clg_tensor *b) {
    CLG_GUARD(g, op->info.name, 2, a, b);
    clg_tensor *xs[2] = {a, b};
    clg_tensor *t = nary(g, op, 2, xs, true, CLG_F32, 0);
    if (t != g->poison) t->dtype = CLG_F32; /* a mask, whatever the operand type */
    return t;
}
clg_tensor *clg_eq(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return compare(g, &op_eq, a, b);
}
clg_tensor *clg_ne(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return compare(g, &op_ne, a, b);
}
clg_tensor *clg_lt(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return compare(g, &op_lt, a, b);
}
clg_tensor *clg_le(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return compare(g, &op_le, a, b);
}
clg_tensor *clg_gt(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return compare(g, &op_gt, a, b);
}
clg_tensor *clg_ge(clg_graph *g, clg_tensor *a, clg_tensor *b) {
    return compare(g, &op_ge, a, b);
}

clg_tensor *clg_where(clg_graph *g, clg_tensor *cond, clg_tensor *a, clg_tensor *b) {
    CLG_GUARD(g, "where", 3, cond, a, b);
    clg_tensor *xs[3] = {cond, a, b};
    return nary(g, &op_where, 3, xs, true, CLG_F32, 1);
}

clg_tensor *clg_add_scalar(clg_graph *g, clg_tensor *x, float s) {
    return clg_add(g, x, clg_scalar(g, s));
}
clg_tensor *clg_mul_scalar(clg_graph *g, clg_tensor *x, float s) {
    return clg_mul(g, x, clg_scalar(g, s));
}
clg_tensor *clg_pow_scalar(clg_graph *g, clg_tensor *x, float s) {
    return clg_pow(g, x, clg_scalar(g, s));
}

clg_tensor *clg_full(clg_graph *g, float value, int ndim, const int64_t *shape) {
    return clg_broadcast_to(g, clg_scalar(g, value), ndim, shape);
}
