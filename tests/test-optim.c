/* Optimizers against a plain-C (double) reference of torch.optim's formulas over several
 * steps: SGD (plain, momentum, Nesterov, weight decay), Adam (with L2), AdamW, RMSprop (with
 * and without momentum), global-norm clipping active and inactive, and the learning-rate
 * schedules (constant, step, cosine with warm-up) read back with clg_optimizer_lr. The
 * gradient is known: loss = sum(w^2 / 2 + c w) gives grad = w + c. Also the state API,
 * frozen parameters and the rejection of bad configurations. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define ULP 1.1920928955078125e-7
#define PI 3.14159265358979323846

/* Two parameters (the clipping norm is global over both) and a frozen third. */
/* b spans more than two of the CPU form's 1024-element runs per work-item, and part of a
 * third */
enum { NA = 7, NB = 2500, NF = 2, NP = NA + NB };

typedef struct ref_state {
    clg_optimizer_config cfg;
    double p[NP], c[NP], m[NP], v[NP], buf[NP];
    int64_t t; /* updates done */
} ref_state;

/* The schedule as optim.h documents it, written out independently. */
static double ref_lr(const clg_optimizer_config *c, int64_t step) {
    switch (c->schedule) {
    case CLG_LR_STEP: {
        double lr = c->lr;
        for (int64_t k = 0; k < step / c->step_size; ++k) lr *= c->gamma;
        return lr;
    }
    case CLG_LR_COSINE:
        if (step < c->warmup_steps) return c->lr * (double)(step + 1) / (double)c->warmup_steps;
        if (step >= c->total_steps) return c->min_lr;
        return c->min_lr + (c->lr - c->min_lr) * 0.5 *
                               (1.0 + cos(PI * (double)(step - c->warmup_steps) /
                                          (double)(c->total_steps - c->warmup_steps)));
    default:
        return c->lr;
    }
}

/* One update of every element, as torch.optim computes it (clip_grad_norm_ first). */
static void ref_step(ref_state *s) {
    const clg_optimizer_config *c = &s->cfg;
    double g[NP], norm = 0.0;
    for (int i = 0; i < NP; ++i) {
        g[i] = s->p[i] + s->c[i];
        norm += g[i] * g[i];
    }
    norm = sqrt(norm);
    double scale = c->clip_norm > 0 && norm > c->clip_norm ? c->clip_norm / (norm + 1e-6) : 1.0;
    double lr = ref_lr(c, s->t);
    s->t++;
    for (int i = 0; i < NP; ++i) {
        double gi = g[i] * scale;
        double *p = &s->p[i];
        switch (c->kind) {
        case CLG_OPT_SGD:
            gi += c->weight_decay * *p;
            if (c->momentum != 0) {
                s->buf[i] = c->momentum * s->buf[i] + gi;
                gi = c->nesterov ? gi + c->momentum * s->buf[i] : s->buf[i];
            }
            *p -= lr * gi;
            break;
        case CLG_OPT_ADAM:
        case CLG_OPT_ADAMW: {
            if (c->kind == CLG_OPT_ADAMW)
                *p *= 1.0 - lr * c->weight_decay;
            else
                gi += c->weight_decay * *p;
            s->m[i] = c->beta1 * s->m[i] + (1 - c->beta1) * gi;
            s->v[i] = c->beta2 * s->v[i] + (1 - c->beta2) * gi * gi;
            double bc1 = 1 - pow(c->beta1, (double)s->t), bc2 = 1 - pow(c->beta2, (double)s->t);
            *p -= lr / bc1 * s->m[i] / (sqrt(s->v[i]) / sqrt(bc2) + c->eps);
            break;
        }
        case CLG_OPT_RMSPROP: {
            gi += c->weight_decay * *p;
            s->v[i] = c->alpha * s->v[i] + (1 - c->alpha) * gi * gi;
            double step = gi / (sqrt(s->v[i]) + c->eps);
            if (c->momentum > 0) {
                s->buf[i] = c->momentum * s->buf[i] + step;
                step = s->buf[i];
            }
            *p -= lr * step;
            break;
        }
        default:
            break;
        }
    }
}

/* The device side of one case: its parameters, graph, plan and optimizer. */
typedef struct dev_case {
    clg_param *a, *b, *frozen;
    clg_graph *g;
    clg_plan *plan;
    clg_optimizer *opt;
} dev_case;

static int case_serial;

static void dev_case_new(dev_case *d, ref_state *r, const clg_optimizer_config *cfg) {
    clg_context *ctx = clg_test_context();
    char name[64];
    const int64_t sa = NA, sb = NB, sf = NF;
    int id = case_serial++;
    snprintf(name, sizeof name, "opt%d.a", id);
    d->a = clg_param_new(ctx, name, CLG_F32, 1, &sa);
    snprintf(name, sizeof name, "opt%d.b", id);
    d->b = clg_param_new(ctx, name, CLG_F32, 1, &sb);
    snprintf(name, sizeof name, "opt%d.frozen", id);
    d->frozen = clg_param_new(ctx, name, CLG_F32, 1, &sf);
    ck_assert(d->a && d->b && d->frozen);
    clg_param_set_requires_grad(d->frozen, false);

    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    clg_test_rng rng;
    clg_test_rng_seed(&rng, 100 + (uint64_t)id);
    float pa[NP], ca[NP], fz[NF] = {0.5f, -0.25f};
    clg_test_fill(&rng, pa, NP, -2.0f, 2.0f);
    clg_test_fill(&rng, ca, NP, -1.0f, 1.0f);
    for (int i = 0; i < NP; ++i) {
        r->p[i] = pa[i];
        r->c[i] = ca[i];
    }
    clg_assert_ok(clg_param_write(d->a, pa, NA * sizeof(float)));
    clg_assert_ok(clg_param_write(d->b, pa + NA, NB * sizeof(float)));
    clg_assert_ok(clg_param_write(d->frozen, fz, sizeof fz));

    d->opt = clg_optimizer_new(ctx, cfg);
    ck_assert_msg(d->opt != NULL, "clg_optimizer_new: %s", clg_last_error());
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *wa = clg_param_tensor(g, d->a), *wb = clg_param_tensor(g, d->b);
    clg_tensor *ta = clg_constant(g, CLG_F32, 1, &sa, ca);
    clg_tensor *tb = clg_constant(g, CLG_F32, 1, &sb, ca + NA);
    /* sum(w^2 / 2 + c w) over both, plus a frozen parameter's sum(f^2) */
    clg_tensor *la = clg_add(g, clg_mul_scalar(g, clg_square(g, wa), 0.5f), clg_mul(g, ta, wa));
    clg_tensor *lb = clg_add(g, clg_mul_scalar(g, clg_square(g, wb), 0.5f), clg_mul(g, tb, wb));
    clg_tensor *loss = clg_add(g, clg_sum(g, la, 0, NULL, false), clg_sum(g, lb, 0, NULL, false));
    loss = clg_add(g, loss, clg_sum(g, clg_square(g, clg_param_tensor(g, d->frozen)), 0, NULL,
                                    false));
    clg_assert_ok(clg_graph_status(g));
    clg_assert_ok(clg_backward(g, loss));
    ck_assert_ptr_null(clg_param_grad(g, d->frozen));
    clg_assert_ok(clg_optimizer_apply(d->opt, g, NULL));
    clg_assert_ok(clg_graph_compile(g, NULL, &d->plan));
    d->g = g;
}

static void dev_case_free(dev_case *d) {
    clg_graph_free(d->g);
    clg_optimizer_free(d->opt);
}

static void read_params(dev_case *d, float *out) {
    clg_assert_ok(clg_param_read(d->a, out, NA * sizeof(float)));
    clg_assert_ok(clg_param_read(d->b, out + NA, NB * sizeof(float)));
}

/* After each step the device's parameters within rounding of the reference: an update
 * rounds p - lr * step once (half an ulp of |p|) and step's own few-ulp error is scaled by lr
 * far below |p| + |c| here, so 2 ulp of that size per step; the quadratic loss does not
 * amplify earlier differences (each step contracts towards -c). */
static void check_params(const char *what, dev_case *d, const ref_state *r) {
    float got[NP], want[NP];
    read_params(d, got);
    double size = 0.0;
    for (int i = 0; i < NP; ++i) {
        want[i] = (float)r->p[i];
        size = fmax(size, fabs(r->p[i]) + fabs(r->c[i]));
    }
    double tol = 2.0 * ULP * size * (double)r->t;
    for (int i = 0; i < NP; ++i)
        ck_assert_msg(fabs((double)got[i] - want[i]) <= tol,
                      "%s, after step %lld: element %d is %.8g, want %.8g (tol %.3g)", what,
                      (long long)r->t, i, (double)got[i], (double)want[i], tol);
}

/* Run steps updates, comparing parameters and learning rates after each. */
static void run_and_check(const char *what, dev_case *d, ref_state *r, int steps) {
    for (int k = 0; k < steps; ++k) {
        double lr = ref_lr(&r->cfg, r->t);
        ck_assert_msg(fabs(clg_optimizer_lr(d->opt) - lr) <= 4 * ULP * lr,
                      "%s: lr before step %lld is %.8g, want %.8g", what, (long long)r->t,
                      (double)clg_optimizer_lr(d->opt), lr);
        clg_assert_ok(clg_plan_run(d->plan));
        ref_step(r);
        ck_assert_int_eq(clg_optimizer_steps(d->opt), r->t);
        check_params(what, d, r);
    }
    float fz[NF];
    clg_assert_ok(clg_param_read(d->frozen, fz, sizeof fz));
    ck_assert_msg(fz[0] == 0.5f && fz[1] == -0.25f, "%s: a frozen parameter changed", what);
}

static void check_case(const char *what, const clg_optimizer_config *cfg, int steps) {
    dev_case d;
    ref_state r;
    dev_case_new(&d, &r, cfg);
    run_and_check(what, &d, &r, steps);
    dev_case_free(&d);
}

START_TEST(test_sgd) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.lr = 0.1f;
    check_case("sgd", &c, 5);
    c.momentum = 0.9f;
    check_case("sgd momentum", &c, 6);
    c.nesterov = true;
    c.weight_decay = 0.01f;
    check_case("sgd nesterov weight decay", &c, 6);
    c.momentum = 0.0f;
    c.nesterov = false;
    c.weight_decay = 0.1f;
    check_case("sgd weight decay", &c, 5);
}
END_TEST

START_TEST(test_adam) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAM);
    c.lr = 0.05f;
    check_case("adam", &c, 6);
    c.weight_decay = 0.05f;
    c.beta1 = 0.8f;
    c.beta2 = 0.95f;
    c.eps = 1e-3f;
    check_case("adam L2 weight decay", &c, 6);
    c = clg_optimizer_defaults(CLG_OPT_ADAMW);
    c.lr = 0.05f;
    c.weight_decay = 0.1f;
    check_case("adamw", &c, 6);
}
END_TEST

START_TEST(test_rmsprop) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_RMSPROP);
    check_case("rmsprop", &c, 6);
    c.momentum = 0.9f;
    c.weight_decay = 0.01f;
    c.alpha = 0.9f;
    check_case("rmsprop momentum weight decay", &c, 6);
}
END_TEST

/* The gradient's global norm here is about 3-4 (10 elements of |w + c| up to 3). */
START_TEST(test_clipping) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.lr = 0.1f;
    c.momentum = 0.5f;
    c.clip_norm = 0.5f;
    check_case("sgd clipped", &c, 5);
    c.clip_norm = 100.0f;
    check_case("sgd clip inactive", &c, 5);
    c = clg_optimizer_defaults(CLG_OPT_ADAM);
    c.lr = 0.05f;
    c.clip_norm = 0.3f;
    check_case("adam clipped", &c, 5);
    c = clg_optimizer_defaults(CLG_OPT_RMSPROP);
    c.clip_norm = 1.0f;
    check_case("rmsprop clipped", &c, 5);
}
END_TEST

START_TEST(test_schedules) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.lr = 0.2f;
    c.schedule = CLG_LR_STEP;
    c.step_size = 2;
    c.gamma = 0.5f;
    check_case("sgd step schedule", &c, 7);
    c.schedule = CLG_LR_COSINE;
    c.warmup_steps = 2;
    c.total_steps = 6;
    c.min_lr = 0.01f;
    check_case("sgd cosine schedule", &c, 8); /* past total_steps: held at min_lr */
    c = clg_optimizer_defaults(CLG_OPT_ADAM);
    c.lr = 0.05f;
    c.schedule = CLG_LR_COSINE;
    c.warmup_steps = 3;
    c.total_steps = 5;
    check_case("adam cosine schedule", &c, 6);
    c = clg_optimizer_defaults(CLG_OPT_RMSPROP);
    c.schedule = CLG_LR_STEP;
    c.step_size = 1;
    c.gamma = 0.7f;
    check_case("rmsprop step schedule", &c, 4);

    /* the documented shape of the cosine schedule, point by point */
    clg_optimizer_config k = clg_optimizer_defaults(CLG_OPT_SGD);
    k.lr = 1.0f;
    k.schedule = CLG_LR_COSINE;
    k.warmup_steps = 4;
    k.total_steps = 8;
    k.min_lr = 0.0f;
    clg_optimizer *o = clg_optimizer_new(clg_test_context(), &k);
    ck_assert_ptr_nonnull(o);
    const float want[10] = {0.25f, 0.5f, 0.75f, 1.0f, 1.0f, 0.853553f, 0.5f, 0.146447f, 0, 0};
    for (int s = 0; s < 10; ++s) {
        clg_assert_ok(clg_optimizer_set_steps(o, s));
        ck_assert_msg(fabsf(clg_optimizer_lr(o) - want[s]) <= 1e-6f, "cosine lr at %d: %g", s,
                      (double)clg_optimizer_lr(o));
    }
    clg_optimizer_free(o);
}
END_TEST

static size_t find_state(clg_optimizer *o, const char *name) {
    for (size_t i = 0; i < clg_optimizer_state_count(o); ++i)
        if (strcmp(clg_optimizer_state_name(o, i), name) == 0) return i;
    ck_abort_msg("no optimizer state named %s", name);
    return 0;
}

/* Adam's moments read back against the reference, written, and used: a resumed run (state
 * and step counter restored) continues exactly like the reference. */
START_TEST(test_state_api) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAM);
    c.lr = 0.05f;
    dev_case d;
    ref_state r;
    dev_case_new(&d, &r, &c);
    ck_assert_uint_eq(clg_optimizer_state_count(d.opt), 4); /* a and b, exp_avg and exp_avg_sq */
    run_and_check("adam", &d, &r, 3);
    char name[128];
    snprintf(name, sizeof name, "%s.exp_avg", clg_param_name(d.a));
    size_t im = find_state(d.opt, name);
    snprintf(name, sizeof name, "%s.exp_avg_sq", clg_param_name(d.b));
    size_t iv = find_state(d.opt, name);
    ck_assert_ptr_eq(clg_optimizer_state_param(d.opt, im), d.a);
    ck_assert_ptr_eq(clg_optimizer_state_param(d.opt, iv), d.b);
    float m[NA], v[NB], want_m[NA], want_v[NB];
    clg_assert_ok(clg_optimizer_state_read(d.opt, im, m, sizeof m));
    clg_assert_ok(clg_optimizer_state_read(d.opt, iv, v, sizeof v));
    for (int i = 0; i < NA; ++i) want_m[i] = (float)r.m[i];
    for (int i = 0; i < NB; ++i) want_v[i] = (float)r.v[NA + i];
    clg_assert_close(m, want_m, NA, 0, 16 * ULP);
    clg_assert_close(v, want_v, NB, 0, 16 * ULP);

    /* restore a checkpoint-like state: new moments and step 10, then one more update */
    for (int i = 0; i < NA; ++i) {
        m[i] = 0.1f * (float)(i - 3);
        r.m[i] = m[i];
    }
    for (int i = 0; i < NB; ++i) {
        v[i] = 0.02f * (float)(i + 1);
        r.v[NA + i] = v[i];
    }
    clg_assert_ok(clg_optimizer_state_write(d.opt, im, m, sizeof m));
    clg_assert_ok(clg_optimizer_state_write(d.opt, iv, v, sizeof v));
    clg_assert_ok(clg_optimizer_set_steps(d.opt, 10));
    r.t = 10;
    clg_assert_ok(clg_plan_run(d.plan));
    ref_step(&r);
    ck_assert_int_eq(clg_optimizer_steps(d.opt), 11);
    /* one update from the restored state; tolerance as for one step */
    int64_t t = r.t;
    r.t = 1;
    check_params("adam after restoring state", &d, &r);
    r.t = t;

    /* errors */
    size_t n = clg_optimizer_state_count(d.opt);
    ck_assert_ptr_null(clg_optimizer_state_name(d.opt, n));
    ck_assert_ptr_null(clg_optimizer_state_param(d.opt, n));
    ck_assert_int_eq(clg_optimizer_state_read(d.opt, n, m, sizeof m), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_optimizer_state_read(d.opt, im, m, sizeof m - 4), CLG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(clg_last_error(), "exp_avg"));
    ck_assert_int_eq(clg_optimizer_set_steps(d.opt, -1), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(clg_optimizer_steps(d.opt), 11);
    dev_case_free(&d);
}
END_TEST

/* State created before any plan (to load a checkpoint first): one set per trainable
 * parameter of the context, named after PyTorch's state keys. */
START_TEST(test_init_state) {
    clg_context *ctx = clg_test_context();
    const int64_t s = 4;
    clg_param *p = clg_param_new(ctx, "init_state.w", CLG_F32, 1, &s);
    clg_param *q = clg_param_new(ctx, "init_state.frozen", CLG_F32, 1, &s);
    ck_assert(p && q);
    clg_param_set_requires_grad(q, false);
    size_t trainable = 0;
    for (size_t i = 0; i < clg_param_count(ctx); ++i)
        trainable += clg_param_requires_grad(clg_param_at(ctx, i));
    static const struct {
        clg_optimizer_kind kind;
        float momentum;
        size_t per_param;
        const char *first;
    } cases[] = {
        {CLG_OPT_SGD, 0.0f, 0, NULL},
        {CLG_OPT_SGD, 0.9f, 1, "momentum_buffer"},
        {CLG_OPT_ADAM, 0.0f, 2, "exp_avg"},
        {CLG_OPT_ADAMW, 0.0f, 2, "exp_avg"},
        {CLG_OPT_RMSPROP, 0.0f, 1, "square_avg"},
        {CLG_OPT_RMSPROP, 0.5f, 2, "square_avg"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
        clg_optimizer_config c = clg_optimizer_defaults(cases[k].kind);
        c.momentum = cases[k].momentum;
        clg_optimizer *o = clg_optimizer_new(ctx, &c);
        ck_assert_ptr_nonnull(o);
        ck_assert_uint_eq(clg_optimizer_state_count(o), 0);
        clg_assert_ok(clg_optimizer_init_state(o));
        ck_assert_uint_eq(clg_optimizer_state_count(o), trainable * cases[k].per_param);
        if (cases[k].first) {
            char name[128];
            snprintf(name, sizeof name, "init_state.w.%s", cases[k].first);
            size_t i = find_state(o, name);
            ck_assert_ptr_eq(clg_optimizer_state_param(o, i), p);
            float z[4] = {1, 1, 1, 1};
            clg_assert_ok(clg_optimizer_state_read(o, i, z, sizeof z));
            for (int e = 0; e < 4; ++e) ck_assert_float_eq(z[e], 0.0f);
        }
        for (size_t i = 0; i < clg_optimizer_state_count(o); ++i)
            ck_assert_ptr_null(strstr(clg_optimizer_state_name(o, i), "init_state.frozen"));
        clg_optimizer_free(o);
    }
}
END_TEST

START_TEST(test_defaults) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAM);
    ck_assert_float_eq(c.lr, 0.001f);
    ck_assert_float_eq(c.beta1, 0.9f);
    ck_assert_float_eq(c.beta2, 0.999f);
    ck_assert_float_eq(c.eps, 1e-8f);
    ck_assert_float_eq(c.weight_decay, 0.0f);
    ck_assert_float_eq(clg_optimizer_defaults(CLG_OPT_ADAMW).weight_decay, 0.01f);
    c = clg_optimizer_defaults(CLG_OPT_RMSPROP);
    ck_assert_float_eq(c.lr, 0.01f);
    ck_assert_float_eq(c.alpha, 0.99f);
    ck_assert_float_eq(clg_optimizer_defaults(CLG_OPT_SGD).lr, 0.01f);
    ck_assert_int_eq(c.schedule, CLG_LR_CONSTANT);
    ck_assert_float_eq(c.clip_norm, 0.0f);
    clg_optimizer *o = clg_optimizer_new(clg_test_context(), &c);
    ck_assert_ptr_nonnull(o);
    ck_assert_float_eq(clg_optimizer_get_config(o)->alpha, 0.99f);
    ck_assert_float_eq(clg_optimizer_lr(o), 0.01f);
    ck_assert_int_eq(clg_optimizer_steps(o), 0);
    clg_optimizer_free(o);
    clg_optimizer_free(NULL);
}
END_TEST

static void expect_rejected(const clg_optimizer_config *c, const char *field) {
    clg_clear_error();
    clg_optimizer *o = clg_optimizer_new(clg_test_context(), c);
    ck_assert_msg(o == NULL, "a config with a bad %s was accepted", field);
    ck_assert_msg(strstr(clg_last_error(), field) != NULL, "message '%s' does not name %s",
                  clg_last_error(), field);
}

START_TEST(test_bad_configs) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.lr = -0.1f;
    expect_rejected(&c, "lr");
    c.lr = NAN;
    expect_rejected(&c, "lr");
    c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.momentum = 1.0f;
    expect_rejected(&c, "momentum");
    c.momentum = 0.0f;
    c.nesterov = true;
    expect_rejected(&c, "nesterov");
    c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.weight_decay = -1.0f;
    expect_rejected(&c, "weight_decay");
    c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.clip_norm = -1.0f;
    expect_rejected(&c, "clip_norm");
    c = clg_optimizer_defaults(CLG_OPT_ADAM);
    c.beta1 = 1.0f;
    expect_rejected(&c, "beta1");
    c = clg_optimizer_defaults(CLG_OPT_ADAMW);
    c.beta2 = -0.1f;
    expect_rejected(&c, "beta2");
    c = clg_optimizer_defaults(CLG_OPT_ADAM);
    c.eps = 0.0f;
    expect_rejected(&c, "eps");
    c = clg_optimizer_defaults(CLG_OPT_RMSPROP);
    c.alpha = 1.0f;
    expect_rejected(&c, "alpha");
    c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.schedule = CLG_LR_STEP;
    c.step_size = 0;
    expect_rejected(&c, "step_size");
    c.step_size = 3;
    c.gamma = 0.0f;
    expect_rejected(&c, "gamma");
    c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.schedule = CLG_LR_COSINE;
    c.warmup_steps = 5;
    c.total_steps = 5;
    expect_rejected(&c, "total_steps");
    c.total_steps = 10;
    c.min_lr = -1.0f;
    expect_rejected(&c, "min_lr");
    c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.kind = (clg_optimizer_kind)9;
    expect_rejected(&c, "kind");
    c = clg_optimizer_defaults(CLG_OPT_SGD);
    c.schedule = (clg_lr_schedule)9;
    expect_rejected(&c, "schedule");
    ck_assert_ptr_null(clg_optimizer_new(NULL, &c));
    ck_assert_ptr_null(clg_optimizer_new(clg_test_context(), NULL));
}
END_TEST

static Suite *optim_suite(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("device");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_sgd);
    tcase_add_test(tc, test_adam);
    tcase_add_test(tc, test_rmsprop);
    tcase_add_test(tc, test_clipping);
    tcase_add_test(tc, test_schedules);
    tcase_add_test(tc, test_state_api);
    tcase_add_test(tc, test_init_state);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_bad_configs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return clg_test_run(optim_suite());
}
