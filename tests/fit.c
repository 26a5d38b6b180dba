/* Subset trainings for the model tests (fit.h). */
#include <stdlib.h>

#include "fit.h"

#include "compile/codegen.h"
#include "ops/node.h"
#include "harness.h"

static void emit_identity(clg_codegen *cg, const clg_tensor *n, const char *const *ops, char *out,
                          size_t size) {
    (void)cg;
    (void)n;
    clg_cg_format(out, size, "(%s)", ops[0]);
}

static void bw_negated(clg_graph *g, clg_tensor *node, clg_tensor *gout) {
    clg_grad_accumulate(g, node->in[0], clg_neg(g, gout));
}

static const clg_op_info op_broken = {.name = "broken_identity",
                                      .kind = CLG_KIND_ELEMENTWISE,
                                      .backward = bw_negated,
                                      .emit = emit_identity};

clg_tensor *clg_fit_broken_identity(clg_graph *g, clg_tensor *x) {
    return clg_node_new(g, &op_broken, x->dtype, x->ndim, x->shape, 1, &x);
}

static clg_dataset *load_subset(bool train, int64_t n) {
    clg_dataset *all = NULL, *part = NULL;
    clg_assert_ok(clg_dataset_load_mnist(clg_test_path("../examples/data/mnist"), train, &all));
    clg_assert_ok(clg_dataset_subset(all, 0, n, &part));
    clg_dataset_free(all);
    return part;
}

double clg_fit_mnist(clg_context *ctx, void *model, clg_fit_forward forward, int variant,
                     const clg_fit_options *o, float *last_loss) {
    clg_dataset *train = load_subset(true, o->train_n), *test = load_subset(false, o->test_n);
    if (o->standardise) {
        float mean, std;
        clg_dataset_stats(train, &mean, &std);
        clg_assert_ok(clg_dataset_normalize(train, mean, std));
        clg_assert_ok(clg_dataset_normalize(test, mean, std));
    }
    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_ADAM);
    oc.lr = o->lr;
    clg_optimizer *opt = clg_optimizer_new(ctx, &oc);
    ck_assert_ptr_nonnull(opt);

    const int64_t xs[3] = {o->batch, 28, 28}, flat[2] = {o->batch, 784}, ys[1] = {o->batch};
    const int xdim = o->images ? 3 : 2;
    const int64_t *xshape = o->images ? xs : flat;
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, xdim, xshape);
    clg_tensor *y = clg_input(g, "y", CLG_I32, 1, ys);
    clg_tensor *loss = clg_cross_entropy(g, forward(g, model, x, variant), y, CLG_REDUCTION_MEAN);
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    clg_plan *tp = NULL;
    clg_assert_ok(clg_optimizer_apply(opt, g, NULL));
    clg_assert_ok(clg_graph_compile(g, NULL, &tp));

    clg_graph *eg = clg_graph_new(ctx);
    clg_tensor *ex = clg_input(eg, "x", CLG_F32, xdim, xshape);
    clg_tensor *pred = clg_argmax(eg, forward(eg, model, ex, 0), 1, false);
    clg_assert_ok(clg_graph_output(eg, pred));
    clg_plan *ep = NULL;
    clg_assert_ok(clg_graph_compile(eg, NULL, &ep));

    clg_loader *tl = NULL, *vl = NULL;
    clg_loader_options to = {.batch_size = o->batch, .shuffle = true, .drop_last = true, .seed = 5};
    clg_loader_options vo = {.batch_size = o->batch};
    clg_assert_ok(clg_loader_new(train, &to, &tl));
    clg_assert_ok(clg_loader_new(test, &vo, &vl));
    clg_batch b;
    float l = 0.0f;
    for (int e = 0; e < o->epochs; ++e) {
        clg_loader_start_epoch(tl, e);
        while (clg_loader_next(tl, &b)) {
            clg_assert_ok(clg_batch_upload(&b, tl, tp, x, y));
            clg_assert_ok(clg_plan_run(tp));
            clg_assert_ok(clg_plan_read(tp, loss, &l, sizeof l)); /* the step's one wait */
        }
    }
    int64_t right = 0, total = 0;
    int32_t *p = malloc((size_t)o->batch * sizeof *p);
    ck_assert_ptr_nonnull(p);
    clg_loader_start_epoch(vl, 0);
    while (clg_loader_next(vl, &b)) {
        clg_assert_ok(clg_batch_upload(&b, vl, ep, ex, NULL));
        clg_assert_ok(clg_plan_run(ep));
        clg_assert_ok(clg_plan_read(ep, pred, p, (size_t)o->batch * sizeof *p));
        for (int64_t i = 0; i < b.rows; ++i)
            right += p[i] == b.labels[i];
        total += b.rows;
    }
    if (last_loss) *last_loss = l;
    free(p);
    clg_loader_free(tl);
    clg_loader_free(vl);
    clg_dataset_free(train);
    clg_dataset_free(test);
    clg_graph_free(g);
    clg_graph_free(eg);
    return (double)right / (double)total;
}
