/* Random ops: uniform, normal and truncated-normal tensors and dropout, from the
 * counter-based generator in cl/random.cl. They are elementwise generators, so a dropout mask
 * fuses into the kernel that applies it; each plan run draws from a fresh counter. */
#include "compile/codegen.h"
#include "graph/graph_internal.h"
#include "ops/node.h"

static void emit_random(clg_codegen *cg, const clg_tensor *node, const char *const *operands,
                        char *out, size_t size);

typedef struct random_op {
    clg_op_info info;
    const char *fn;
} random_op;

/* attrs.random: a, b = (lo, hi) or (mean, std) and the seed (the key); the node's id: the
 * stream */
static const random_op op_uniform = {
    {.name = "rand_uniform", .kind = CLG_KIND_ELEMENTWISE, .emit = emit_random},
    "clg_rand_uniform"};
static const random_op op_normal = {
    {.name = "rand_normal", .kind = CLG_KIND_ELEMENTWISE, .emit = emit_random},
    "clg_rand_normal"};
static const random_op op_truncated = {
    {.name = "rand_truncated_normal", .kind = CLG_KIND_ELEMENTWISE, .emit = emit_random},
    "clg_rand_truncated_normal"};

static void emit_random(clg_codegen *cg, const clg_tensor *node, const char *const *operands,
                        char *out, size_t size) {
    (void)operands;
    const random_op *op = (const random_op *)node->info;
    const clg_attr_random *r = &node->attrs.random;
    char call[512];
    clg_cg_format(call, sizeof call, "%s((uint)(%s), %s, %s, %s, %s)", op->fn,
                  clg_cg_linear_index(cg), clg_cg_uint_arg(cg, (uint32_t)node->id),
                  clg_cg_run_counter(cg), clg_cg_uint_arg(cg, (uint32_t)r->seed),
                  clg_cg_uint_arg(cg, (uint32_t)(r->seed >> 32)));
    if (op == &op_uniform)
        clg_cg_format(out, size, "(%s + (%s - %s) * %s)", clg_cg_float_arg(cg, r->a),
                      clg_cg_float_arg(cg, r->b), clg_cg_float_arg(cg, r->a), call);
    else
        clg_cg_format(out, size, "(%s + %s * %s)", clg_cg_float_arg(cg, r->a),
                      clg_cg_float_arg(cg, r->b), call);
}

static clg_tensor *random_tensor(clg_graph *g, const random_op *op, int ndim,
                                 const int64_t *shape, float a, float b, uint64_t seed) {
    CLG_GUARD(g, op->info.name, 0, NULL);
    if (ndim < 0 || ndim > CLG_MAX_DIMS || (ndim && !shape))
        return clg_graph_fail(g, CLG_ERR_SHAPE, "%s: bad rank %d", op->info.name, ndim);
    clg_tensor *t = clg_node_new(g, &op->info, CLG_F32, ndim, shape, 0, NULL);
    if (t != g->poison)
        t->attrs = (clg_attrs){.kind = CLG_ATTRS_RANDOM, .random = {.a = a, .b = b, .seed = seed}};
    return t;
}

clg_tensor *clg_rand_uniform(clg_graph *g, int ndim, const int64_t *shape, float lo, float hi,
                             uint64_t seed) {
    if (g && !g->error && !(lo <= hi))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "rand_uniform: lo %g above hi %g",
                              (double)lo, (double)hi);
    return random_tensor(g, &op_uniform, ndim, shape, lo, hi, seed);
}

clg_tensor *clg_rand_normal(clg_graph *g, int ndim, const int64_t *shape, float mean,
                            float std, uint64_t seed) {
    if (g && !g->error && !(std >= 0.0f))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "rand_normal: std %g below 0",
                              (double)std);
    return random_tensor(g, &op_normal, ndim, shape, mean, std, seed);
}

clg_tensor *clg_rand_truncated_normal(clg_graph *g, int ndim, const int64_t *shape,
                                      float mean, float std, uint64_t seed) {
    if (g && !g->error && !(std >= 0.0f))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT,
                              "rand_truncated_normal: std %g below 0", (double)std);
    return random_tensor(g, &op_truncated, ndim, shape, mean, std, seed);
}

clg_tensor *clg_dropout(clg_graph *g, clg_tensor *x, float p, bool training, uint64_t seed) {
    CLG_GUARD(g, "dropout", 1, x);
    if (!(p >= 0.0f && p < 1.0f))
        return clg_graph_fail(g, CLG_ERR_INVALID_ARGUMENT, "dropout: p = %g is not in [0, 1)",
                              (double)p);
    if (!training || p == 0.0f) return x;
    clg_tensor *u = clg_rand_uniform(g, x->ndim, x->shape, 0.0f, 1.0f, seed);
    clg_tensor *keep = clg_mul_scalar(g, clg_ge(g, u, clg_scalar(g, p)), 1.0f / (1.0f - p));
    return clg_mul(g, x, keep);
}
