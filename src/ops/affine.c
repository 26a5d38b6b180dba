/* Affine resampling (clg_affine_grid_sample): per-image 2x3 matrices map each output pixel
 * into the input, read bilinearly with zero padding. Its own kernels (cl/affine.cl): the
 * forward pass, and the gradients for the image and for the matrices, each a deterministic
 * gather-free loop that owns what it writes. No attributes: every size is in the shapes. */
#include "compile/lowering.h"
#include "core/program.h"
#include "ops/node.h"

static void bw_affine(clg_graph *g, clg_tensor *node, clg_tensor *gout);
static clg_status lower_affine(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out);
static clg_status lower_affine_dx(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                  const clg_operand *out);
static clg_status lower_affine_dtheta(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                      const clg_operand *out);

/* (theta [N, 2, 3], x [N, C, H, W]) -> [N, C, OH, OW] */
static const clg_op_info op_affine = {.name = "affine_grid_sample",
                                      .kind = CLG_KIND_KERNEL,
                                      .backward = bw_affine,
                                      .lower = lower_affine};
/* (theta, gout) -> dx of x's shape. No gradient of its own (no second derivatives). */
static const clg_op_info op_affine_dx = {
    .name = "affine_grid_sample_dx", .kind = CLG_KIND_KERNEL, .lower = lower_affine_dx};
/* (theta, x, gout) -> dtheta [N, 2, 3] */
static const clg_op_info op_affine_dtheta = {
    .name = "affine_grid_sample_dtheta", .kind = CLG_KIND_KERNEL, .lower = lower_affine_dtheta};

static clg_tensor *dense(clg_graph *g, clg_tensor *x) {
    return clg_is_contiguous(x) ? x : clg_contiguous(g, x);
}

clg_tensor *clg_affine_grid_sample(clg_graph *g, clg_tensor *theta, clg_tensor *x, int64_t out_h,
                                   int64_t out_w) {
    CLG_GUARD(g, "affine_grid_sample", 2, theta, x);
    char a[200], b[200];
    clg_shape_str(theta->ndim, theta->shape, a, sizeof a);
    clg_shape_str(x->ndim, x->shape, b, sizeof b);
    if (theta->dtype != CLG_F32 || x->dtype != CLG_F32)
        return clg_graph_fail(g, CLG_ERR_DTYPE, "affine_grid_sample: theta %s and x %s must be f32",
                              a, b);
    if (x->ndim != 4 || theta->ndim != 3 || theta->shape[0] != x->shape[0] ||
        theta->shape[1] != 2 || theta->shape[2] != 3)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "affine_grid_sample: theta %s and x %s must be [N, 2, 3] and "
                              "[N, C, H, W]",
                              a, b);
    const int64_t shape[4] = {x->shape[0], x->shape[1], out_h, out_w};
    if (out_h < 1 || out_w < 1 || clg_tensor_numel(x) > INT32_MAX ||
        clg_shape_numel(4, shape) > INT32_MAX)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "affine_grid_sample: output %lldx%lld for x %s: sizes must be "
                              ">= 1 and under 2^31 elements",
                              (long long)out_h, (long long)out_w, b);
    clg_tensor *ins[2] = {dense(g, theta), dense(g, x)};
    return clg_kernel_node(g, &op_affine, CLG_F32, 4, shape, 2, ins);
}

static void bw_affine(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_tensor *theta = node->in[0], *x = node->in[1];
    gout = dense(g, gout);
    if (clg_needs_grad(x)) {
        clg_tensor *ins[2] = {theta, gout};
        clg_grad_accumulate(g, x, clg_kernel_node(g, &op_affine_dx, CLG_F32, 4, x->shape, 2, ins));
    }
    if (clg_needs_grad(theta)) {
        clg_tensor *ins[3] = {theta, x, gout};
        clg_grad_accumulate(
            g, theta, clg_kernel_node(g, &op_affine_dtheta, CLG_F32, 3, theta->shape, 3, ins));
    }
}

/* The sizes every kernel takes last: C, H, W, OH, OW. */
static void size_args(clg_args *a, const int64_t *img, const int64_t *outimg) {
    clg_arg_int(a, img[1]);
    clg_arg_int(a, img[2]);
    clg_arg_int(a, img[3]);
    clg_arg_int(a, outimg[2]);
    clg_arg_int(a, outimg[3]);
}

static clg_status begin(clg_lowering *lw, const char *name, const clg_operand *out,
                        const clg_operand *theta, cl_kernel *k, clg_args *a) {
    clg_status st = clg_kernel_new(clg_lowering_context(lw), "affine", name, k);
    if (st != CLG_OK) return st;
    *a = clg_args_begin(*k);
    clg_arg_mem(a, out->mem);
    clg_arg_int(a, out->offset);
    clg_arg_mem(a, theta->mem);
    clg_arg_int(a, theta->offset);
    return CLG_OK;
}

static clg_status lower_affine(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                               const clg_operand *out) {
    (void)node;
    cl_kernel k;
    clg_args a;
    clg_status st = begin(lw, "affine_sample", out, &in[0], &k, &a);
    if (st != CLG_OK) return st;
    clg_arg_mem(&a, in[1].mem);
    clg_arg_int(&a, in[1].offset);
    size_args(&a, in[1].shape, out->shape);
    size_t global = (size_t)clg_shape_numel(4, out->shape);
    return clg_lower_args(lw, &a, 1, &global, NULL, "affine_grid_sample");
}

static clg_status lower_affine_dx(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                  const clg_operand *out) {
    (void)node;
    cl_kernel k;
    clg_args a;
    clg_status st = begin(lw, "affine_sample_dx", out, &in[0], &k, &a);
    if (st != CLG_OK) return st;
    clg_arg_mem(&a, in[1].mem);
    clg_arg_int(&a, in[1].offset);
    size_args(&a, out->shape, in[1].shape);
    size_t global = (size_t)(out->shape[0] * out->shape[1]);
    return clg_lower_args(lw, &a, 1, &global, NULL, "affine_grid_sample_dx");
}

static clg_status lower_affine_dtheta(clg_lowering *lw, clg_tensor *node, const clg_operand *in,
                                      const clg_operand *out) {
    (void)node;
    cl_kernel k;
    clg_args a;
    clg_status st = begin(lw, "affine_sample_dtheta", out, &in[0], &k, &a);
    if (st != CLG_OK) return st;
    clg_arg_mem(&a, in[1].mem);
    clg_arg_int(&a, in[1].offset);
    clg_arg_mem(&a, in[2].mem);
    clg_arg_int(&a, in[2].offset);
    size_args(&a, in[1].shape, in[2].shape);
    size_t global = (size_t)out->shape[0];
    return clg_lower_args(lw, &a, 1, &global, NULL, "affine_grid_sample_dtheta");
}
