/* Graphs of any length: an unrolled tanh RNN with a loss at every step, for T = 65, 200 and
 * 1000, compiles (the gradient of a bias used T times is a sum of T terms, more than one
 * kernel's operands) and gives the same loss and gradients fused and unfused; a plan's program
 * holds each distinct kernel body once, so unfused (one kernel per op, the same few ops at
 * every step) its size does not grow with T. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "runtime/plan.h"

#define B 2
#define H 3
#define V 4

typedef struct rnn {
    clg_param *emb, *whh, *bh, *why, *by;
} rnn;

static const char *const NAMES[5] = {"emb", "w_hh", "b_h", "w_hy", "b_y"};

static void rnn_init(clg_context *ctx, rnn *m) {
    const int64_t shapes[5][2] = {{V, H}, {H, H}, {H, 0}, {H, V}, {V, 0}};
    clg_param **ps[5] = {&m->emb, &m->whh, &m->bh, &m->why, &m->by};
    clg_test_rng r;
    clg_test_rng_seed(&r, 3);
    for (int i = 0; i < 5; ++i) {
        int nd = shapes[i][1] ? 2 : 1;
        *ps[i] = clg_param_new(ctx, NAMES[i], CLG_F32, nd, shapes[i]);
        ck_assert_ptr_nonnull(*ps[i]);
        float v[V * H > H * H ? V * H : H * H];
        size_t n = (size_t)clg_param_numel(*ps[i]);
        clg_test_fill(&r, v, n, -0.5f, 0.5f);
        clg_assert_ok(clg_param_write(*ps[i], v, n * sizeof(float)));
    }
}

typedef struct run {
    float loss;
    float grads[5][V * H > H * H ? V * H : H * H];
    size_t kernels, bodies;
} run;

static void run_rnn(clg_context *ctx, const rnn *m, int T, bool fused, const int32_t *xs,
                    const int32_t *ys, run *out) {
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_I32, 2, (int64_t[]){T, B});
    clg_tensor *y = clg_input(g, "y", CLG_I32, 2, (int64_t[]){T, B});
    clg_tensor *h = clg_full(g, 0.0f, 2, (int64_t[]){B, H}), *loss = NULL;
    for (int t = 0; t < T; ++t) {
        clg_tensor *xt = clg_reshape(g, clg_slice(g, x, 0, t, t + 1, 1), 1, (int64_t[]){B});
        clg_tensor *yt = clg_reshape(g, clg_slice(g, y, 0, t, t + 1, 1), 1, (int64_t[]){B});
        clg_tensor *in = clg_embedding(g, clg_param_tensor(g, m->emb), xt);
        clg_tensor *rec = clg_matmul(g, h, clg_param_tensor(g, m->whh), false, false);
        h = clg_tanh(g, clg_add(g, clg_add(g, in, rec), clg_param_tensor(g, m->bh)));
        clg_tensor *logits = clg_add(
            g, clg_matmul(g, h, clg_param_tensor(g, m->why), false, false), clg_param_tensor(g, m->by));
        clg_tensor *l = clg_cross_entropy(g, logits, yt, CLG_REDUCTION_MEAN);
        loss = loss ? clg_add(g, loss, l) : l;
    }
    loss = clg_mul_scalar(g, loss, 1.0f / (float)T);
    clg_assert_ok(clg_graph_output(g, loss));
    clg_assert_ok(clg_backward(g, loss));
    const clg_param *ps[5] = {m->emb, m->whh, m->bh, m->why, m->by};
    for (int i = 0; i < 5; ++i) clg_assert_ok(clg_graph_output(g, clg_param_grad(g, ps[i])));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.no_fusion = !fused}, &p));
    clg_assert_ok(clg_plan_write(p, x, xs, (size_t)T * B * sizeof *xs));
    clg_assert_ok(clg_plan_write(p, y, ys, (size_t)T * B * sizeof *ys));
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_read(p, loss, &out->loss, sizeof out->loss));
    for (int i = 0; i < 5; ++i)
        clg_assert_ok(clg_plan_read_grad(p, ps[i], out->grads[i],
                                         (size_t)clg_param_numel(ps[i]) * sizeof(float)));
    out->kernels = clg_plan_kernel_count(p);
    out->bodies = p->n_bodies;
    clg_graph_free(g);
}

START_TEST(any_length_compiles_and_matches_unfused) {
    clg_context *ctx = NULL;
    clg_assert_ok(clg_context_create(NULL, &ctx));
    rnn m;
    rnn_init(ctx, &m);
    const int lengths[3] = {65, 200, 1000};
    size_t kernels[3], bodies[3];
    for (int li = 0; li < 3; ++li) {
        int T = lengths[li];
        int32_t *xs = malloc((size_t)T * B * sizeof *xs), *ys = malloc((size_t)T * B * sizeof *ys);
        for (int i = 0; i < T * B; ++i) {
            xs[i] = (i * 7 + 1) % V;
            ys[i] = (i * 5 + 2) % V;
        }
        static run fused, plain;
        run_rnn(ctx, &m, T, true, xs, ys, &fused);
        run_rnn(ctx, &m, T, false, xs, ys, &plain);
        ck_assert_msg(isfinite(fused.loss) && fabsf(fused.loss - plain.loss) <= 1e-5f * fabsf(plain.loss) + 1e-6f,
                      "T %d: loss %.8g fused, %.8g unfused", T, (double)fused.loss,
                      (double)plain.loss);
        const clg_param *ps[5] = {m.emb, m.whh, m.bh, m.why, m.by};
        for (int i = 0; i < 5; ++i)
            clg_assert_close(fused.grads[i], plain.grads[i], (size_t)clg_param_numel(ps[i]), 1e-6,
                             1e-4);
        ck_assert_uint_lt(fused.kernels, plain.kernels);
        free(xs);
        free(ys);
        kernels[li] = plain.kernels;
        bodies[li] = plain.bodies;
    }
    /* unfused, the kernels grow with T but the distinct bodies do not */
    ck_assert_uint_gt(kernels[2], 10 * kernels[0]);
    ck_assert_msg(bodies[2] == bodies[0] && bodies[1] == bodies[0],
                  "distinct kernel bodies %zu, %zu, %zu for T = 65, 200, 1000", bodies[0],
                  bodies[1], bodies[2]);
    clg_context_free(ctx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("long-graph");
    TCase *tc = tcase_create("long-graph");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, any_length_compiles_and_matches_unfused);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
