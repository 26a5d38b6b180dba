/* clg_attention against a plain-C reference (double accumulation): the fused kernels in both
 * forms (rows, tiles) over friendly and awkward shapes, broadcast leading dims, padding and
 * additive masks, causal with S != T, a permuted q, rows with every key masked; gradients of
 * q, k and v against the reference, against central differences (with a learned mask) and
 * against the composite; one kernel and no T x S buffer for the fused forward; errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"

enum { MASK_NONE, MASK_PAD, MASK_FULL };

typedef struct att_case {
    const char *name;
    int nl;                      /* leading dims, 0 to 2 */
    int64_t lq[2], lk[2], lv[2]; /* q's, k's and v's leading dims (1: broadcast) */
    bool kv_2d;                  /* k and v without leading dims */
    int64_t T, S, D, Dv;
    int mask;       /* MASK_PAD: [L0, 1, 1, S] of 0 / -inf; MASK_FULL: [T, S] random */
    bool causal;
    float scale;    /* 0: 1 / sqrt(D) */
    bool q_permuted; /* q is an input [L0, T, L1, D] seen as [L0, L1, T, D] */
} att_case;

static const att_case grid[] = {
    {"friendly 64x64, D 32, [2, 4]", 2, {2, 4}, {2, 4}, {2, 4}, false, 64, 64, 32, 32,
     MASK_NONE, false, 0.0f, false},
    {"T 1, S 7, D 8, [3]", 1, {3}, {3}, {3}, false, 1, 7, 8, 8, MASK_NONE, false, 0.5f, false},
    {"T 7, S 65, D 100, Dv 64, padding mask, causal", 2, {2, 3}, {2, 3}, {2, 3}, false, 7, 65,
     100, 64, MASK_PAD, true, 0.0f, false},
    {"T 65, D 64, Dv 40, causal", 2, {1, 2}, {1, 2}, {1, 2}, false, 65, 65, 64, 40, MASK_NONE,
     true, 0.0f, false},
    {"T 200, D 128, full mask, causal", 1, {1}, {1}, {1}, false, 200, 200, 128, 128, MASK_FULL,
     true, 0.0f, false},
    {"broadcast k over L0, v over L1, full mask", 2, {2, 3}, {1, 3}, {2, 1}, false, 5, 9, 16,
     24, MASK_FULL, false, 0.3f, false},
    {"k, v 2-D, S 1", 1, {4}, {1}, {1}, true, 64, 1, 32, 32, MASK_NONE, false, 0.0f, false},
    {"T 9 > S 4 causal: rows without keys", 1, {2}, {2}, {2}, false, 9, 4, 8, 8, MASK_NONE,
     true, 0.0f, false},
    {"permuted q [2, 33, 3, 32], padding mask", 2, {2, 3}, {2, 3}, {2, 3}, false, 33, 33, 32,
     32, MASK_PAD, false, 0.0f, true},
    {"T 64, S 200, D 128, Dv 8", 1, {2}, {2}, {2}, false, 64, 200, 128, 8, MASK_NONE, false,
     0.0f, false},
    {"D 1, Dv 1, T 33, S 7, full mask", 1, {2}, {2}, {2}, false, 33, 7, 1, 1, MASK_FULL, false,
     0.0f, false},
    {"D 16, T 65, S 33 causal", 2, {2, 2}, {2, 2}, {2, 2}, false, 65, 33, 16, 16, MASK_NONE,
     true, 0.0f, false},
    {"T 1, S 1, D 64, causal", 1, {3}, {3}, {3}, false, 1, 1, 64, 64, MASK_NONE, true, 0.0f,
     false},
    {"D 64, T 7, S 7 causal, padding mask", 1, {3}, {3}, {3}, false, 7, 7, 64, 64, MASK_PAD,
     true, 0.0f, false},
};
#define N_GRID (int)(sizeof grid / sizeof grid[0])

typedef struct att_shapes {
    int nd_q, nd_k, nd_v, nd_m, nd_o;
    int64_t q[4], k[4], v[4], m[4], o[4], lead[2];
    int64_t nq, nk, nv, nm, no, nb;
} att_shapes;

static void shapes_of(const att_case *c, att_shapes *s) {
    memset(s, 0, sizeof *s);
    s->nb = 1;
    for (int i = 0; i < c->nl; ++i) {
        int64_t l = c->lq[i];
        if (c->lk[i] > l) l = c->lk[i];
        if (c->lv[i] > l) l = c->lv[i];
        s->lead[i] = l;
        s->nb *= l;
        s->q[i] = c->lq[i];
        s->k[i] = c->lk[i];
        s->v[i] = c->lv[i];
        s->o[i] = l;
    }
    int n = c->nl;
    s->nd_q = s->nd_o = n + 2;
    s->nd_k = s->nd_v = c->kv_2d ? 2 : n + 2;
    int kb = c->kv_2d ? 0 : n;
    s->q[n] = c->T, s->q[n + 1] = c->D;
    s->o[n] = c->T, s->o[n + 1] = c->Dv;
    s->k[kb] = c->S, s->k[kb + 1] = c->D;
    s->v[kb] = c->S, s->v[kb + 1] = c->Dv;
    if (c->mask == MASK_PAD) {
        s->nd_m = n + 2;
        for (int i = 0; i < n; ++i) s->m[i] = i == 0 ? s->lead[0] : 1;
        s->m[n] = 1, s->m[n + 1] = c->S;
    } else if (c->mask == MASK_FULL) {
        s->nd_m = 2;
        s->m[0] = c->T, s->m[1] = c->S;
    }
    s->nq = 1, s->nk = 1, s->nv = 1, s->nm = s->nd_m ? 1 : 0, s->no = 1;
    for (int i = 0; i < s->nd_q; ++i) s->nq *= s->q[i], s->no *= s->o[i];
    for (int i = 0; i < s->nd_k; ++i) s->nk *= s->k[i], s->nv *= s->v[i];
    for (int i = 0; i < s->nd_m; ++i) s->nm *= s->m[i];
}

/* Linear index into a dense operand of shape[nd] broadcast to the full index idx[nfull]. */
static int64_t bidx(int nd, const int64_t *shape, int nfull, const int64_t *idx) {
    int64_t r = 0;
    for (int i = 0; i < nd; ++i) {
        int64_t x = idx[nfull - nd + i];
        r = r * shape[i] + (shape[i] == 1 ? 0 : x);
    }
    return r;
}

/* O and the gradients of sum(O * gy) in double; a row without any visible key gives O = 0
 * and no gradient. dm may be NULL. */
static void att_reference(const att_case *c, const att_shapes *sh, const float *q,
                          const float *k, const float *v, const float *m, const float *gy,
                          float *o, float *dq, float *dk, float *dv, float *dm) {
    double scale = c->scale ? c->scale : 1.0 / sqrt((double)c->D);
    double *acc_q = calloc((size_t)sh->nq, sizeof(double));
    double *acc_k = calloc((size_t)sh->nk, sizeof(double));
    double *acc_v = calloc((size_t)sh->nv, sizeof(double));
    double *acc_m = calloc((size_t)(sh->nm ? sh->nm : 1), sizeof(double));
    double *s = malloc((size_t)c->S * sizeof *s), *dp = malloc((size_t)c->S * sizeof *dp);
    ck_assert(acc_q && acc_k && acc_v && acc_m && s && dp);
    int nf = c->nl + 2;
    for (int64_t b = 0; b < sh->nb; ++b) {
        int64_t idx[4], r = b;
        for (int i = c->nl - 1; i >= 0; --i) {
            idx[i] = r % sh->lead[i];
            r /= sh->lead[i];
        }
        for (int64_t i = 0; i < c->T; ++i) {
            idx[c->nl] = i;
            double mx = -INFINITY;
            for (int64_t j = 0; j < c->S; ++j) {
                s[j] = -INFINITY;
                if (c->causal && j > i + c->S - c->T) continue;
                double a = 0.0;
                for (int64_t d = 0; d < c->D; ++d) {
                    int64_t qi[4], ki[4];
                    memcpy(qi, idx, sizeof qi);
                    memcpy(ki, idx, sizeof ki);
                    qi[c->nl + 1] = d;
                    ki[c->nl] = j;
                    ki[c->nl + 1] = d;
                    a += (double)q[bidx(sh->nd_q, sh->q, nf, qi)] *
                         k[bidx(sh->nd_k, sh->k, nf, ki)];
                }
                a *= scale;
                if (m) {
                    int64_t mi[4];
                    memcpy(mi, idx, sizeof mi);
                    mi[c->nl + 1] = j;
                    a += m[bidx(sh->nd_m, sh->m, nf, mi)];
                }
                s[j] = a;
                if (a > mx) mx = a;
            }
            double sum = 0.0;
            for (int64_t j = 0; j < c->S; ++j) {
                s[j] = mx == -INFINITY ? 0.0 : exp(s[j] - mx);
                sum += s[j];
            }
            for (int64_t j = 0; j < c->S; ++j) s[j] = sum > 0 ? s[j] / sum : 0.0;
            double di = 0.0;
            for (int64_t j = 0; j < c->S; ++j) {
                dp[j] = 0.0;
                for (int64_t d = 0; d < c->Dv; ++d) {
                    int64_t vi[4];
                    memcpy(vi, idx, sizeof vi);
                    vi[c->nl] = j;
                    vi[c->nl + 1] = d;
                    dp[j] += (double)gy[(b * c->T + i) * c->Dv + d] *
                             v[bidx(sh->nd_v, sh->v, nf, vi)];
                }
                di += s[j] * dp[j];
            }
            for (int64_t d = 0; d < c->Dv; ++d) {
                double y = 0.0;
                for (int64_t j = 0; j < c->S; ++j) {
                    int64_t vi[4];
                    memcpy(vi, idx, sizeof vi);
                    vi[c->nl] = j;
                    vi[c->nl + 1] = d;
                    int64_t x = bidx(sh->nd_v, sh->v, nf, vi);
                    y += s[j] * v[x];
                    acc_v[x] += s[j] * gy[(b * c->T + i) * c->Dv + d];
                }
                o[(b * c->T + i) * c->Dv + d] = (float)y;
            }
            for (int64_t j = 0; j < c->S; ++j) {
                double ds = s[j] * (dp[j] - di);
                if (ds == 0.0) continue;
                if (m) {
                    int64_t mi[4];
                    memcpy(mi, idx, sizeof mi);
                    mi[c->nl + 1] = j;
                    acc_m[bidx(sh->nd_m, sh->m, nf, mi)] += ds;
                }
                for (int64_t d = 0; d < c->D; ++d) {
                    int64_t qi[4], ki[4];
                    memcpy(qi, idx, sizeof qi);
                    memcpy(ki, idx, sizeof ki);
                    qi[c->nl + 1] = d;
                    ki[c->nl] = j;
                    ki[c->nl + 1] = d;
                    int64_t xq = bidx(sh->nd_q, sh->q, nf, qi), xk = bidx(sh->nd_k, sh->k, nf, ki);
                    acc_q[xq] += scale * ds * k[xk];
                    acc_k[xk] += scale * ds * q[xq];
                }
            }
        }
    }
    for (int64_t i = 0; i < sh->nq; ++i) dq[i] = (float)acc_q[i];
    for (int64_t i = 0; i < sh->nk; ++i) dk[i] = (float)acc_k[i];
    for (int64_t i = 0; i < sh->nv; ++i) dv[i] = (float)acc_v[i];
    if (dm)
        for (int64_t i = 0; i < sh->nm; ++i) dm[i] = (float)acc_m[i];
    free(acc_q);
    free(acc_k);
    free(acc_v);
    free(acc_m);
    free(s);
    free(dp);
}

static float *alloc_f(int64_t n) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

static float *random_f(int64_t n, uint64_t seed, float lo, float hi) {
    float *p = alloc_f(n);
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    clg_test_fill(&r, p, (size_t)n, lo, hi);
    return p;
}

/* The mask's values: padding hides the last (b % 3) keys of batch b, never all of them. */
static float *mask_values(const att_case *c, const att_shapes *sh, uint64_t seed) {
    if (c->mask == MASK_FULL) return random_f(sh->nm, seed, -2.0f, 2.0f);
    float *m = alloc_f(sh->nm);
    int64_t rows = sh->nm / c->S;
    for (int64_t b = 0; b < rows; ++b)
        for (int64_t j = 0; j < c->S; ++j)
            m[b * c->S + j] = j >= c->S - (b % 3) && j > 0 ? -INFINITY : 0.0f;
    return m;
}

static void check_close(clg_plan *p, clg_tensor *t, const float *want, int64_t n, double atol,
                        double rtol, const char *what) {
    ck_assert_msg(t != NULL, "%s: no tensor", what);
    ck_assert_int_eq(clg_tensor_numel(t), n);
    float *got = alloc_f(n);
    clg_assert_ok(clg_plan_read(p, t, got, (size_t)n * sizeof *got));
    for (int64_t i = 0; i < n; ++i) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= atol + rtol * fabs(want[i]))) {
            double gv = got[i], wv = want[i];
            free(got);
            ck_abort_msg("%s: element %lld of %lld is %.7g, want %.7g", what, (long long)i,
                         (long long)n, gv, wv);
        }
    }
    free(got);
}

/* One case built in g: inputs (q possibly through a permute), the attention, its weighted
 * loss term. */
typedef struct att_run {
    const att_case *c;
    att_shapes sh;
    float *q, *qin, *k, *v, *m, *gy;
    clg_tensor *tq, *tk, *tv, *tm, *o, *loss;
} att_run;

static void run_build(clg_graph *g, att_run *r, const att_case *c, uint64_t seed) {
    r->c = c;
    shapes_of(c, &r->sh);
    const att_shapes *sh = &r->sh;
    r->q = random_f(sh->nq, seed, -1.0f, 1.0f);
    r->k = random_f(sh->nk, seed + 1, -1.0f, 1.0f);
    r->v = random_f(sh->nv, seed + 2, -1.0f, 1.0f);
    r->gy = random_f(sh->no, seed + 3, -1.0f, 1.0f);
    r->m = c->mask ? mask_values(c, sh, seed + 4) : NULL;
    r->qin = r->q;
    if (c->q_permuted) {
        /* [L0, L1, T, D] -> the input layout [L0, T, L1, D] */
        int64_t L0 = sh->q[0], L1 = sh->q[1], T = c->T, D = c->D;
        r->qin = alloc_f(sh->nq);
        for (int64_t a = 0; a < L0; ++a)
            for (int64_t h = 0; h < L1; ++h)
                for (int64_t t = 0; t < T; ++t)
                    for (int64_t d = 0; d < D; ++d)
                        r->qin[((a * T + t) * L1 + h) * D + d] =
                            r->q[((a * L1 + h) * T + t) * D + d];
        r->tq = clg_input(g, "q", CLG_F32, 4, (int64_t[]){L0, T, L1, D});
    } else {
        r->tq = clg_input(g, "q", CLG_F32, sh->nd_q, sh->q);
    }
    r->tk = clg_input(g, "k", CLG_F32, sh->nd_k, sh->k);
    r->tv = clg_input(g, "v", CLG_F32, sh->nd_v, sh->v);
    r->tm = c->mask ? clg_input(g, "mask", CLG_F32, sh->nd_m, sh->m) : NULL;
    clg_assert_ok(clg_requires_grad(r->tq));
    clg_assert_ok(clg_requires_grad(r->tk));
    clg_assert_ok(clg_requires_grad(r->tv));
    clg_tensor *q = c->q_permuted ? clg_permute(g, r->tq, (int[]){0, 2, 1, 3}) : r->tq;
    r->o = clg_attention(g, q, r->tk, r->tv, r->tm, c->scale, c->causal);
    ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s: %s", c->name, clg_graph_error(g));
    ck_assert_int_eq(clg_tensor_ndim(r->o), sh->nd_o);
    for (int d = 0; d < sh->nd_o; ++d) ck_assert_int_eq(clg_tensor_shape(r->o)[d], sh->o[d]);
    r->loss = clg_sum(g, clg_mul(g, r->o, clg_constant(g, CLG_F32, sh->nd_o, sh->o, r->gy)), 0,
                      NULL, false);
}

static void run_write(clg_plan *p, const att_run *r) {
    const att_shapes *sh = &r->sh;
    clg_assert_ok(clg_plan_write(p, r->tq, r->qin, (size_t)sh->nq * sizeof(float)));
    clg_assert_ok(clg_plan_write(p, r->tk, r->k, (size_t)sh->nk * sizeof(float)));
    clg_assert_ok(clg_plan_write(p, r->tv, r->v, (size_t)sh->nv * sizeof(float)));
    if (r->tm) clg_assert_ok(clg_plan_write(p, r->tm, r->m, (size_t)sh->nm * sizeof(float)));
}

static void run_free(att_run *r) {
    if (r->qin != r->q) free(r->qin);
    free(r->q);
    free(r->k);
    free(r->v);
    free(r->m);
    free(r->gy);
}

/* The q gradient in the input's layout (a permuted q's input is [L0, T, L1, D]). */
static void q_in_layout(const att_run *r, const float *dq, float *out) {
    if (!r->c->q_permuted) {
        memcpy(out, dq, (size_t)r->sh.nq * sizeof *out);
        return;
    }
    int64_t L0 = r->sh.q[0], L1 = r->sh.q[1], T = r->c->T, D = r->c->D;
    for (int64_t a = 0; a < L0; ++a)
        for (int64_t h = 0; h < L1; ++h)
            for (int64_t t = 0; t < T; ++t)
                for (int64_t d = 0; d < D; ++d)
                    out[((a * T + t) * L1 + h) * D + d] = dq[((a * L1 + h) * T + t) * D + d];
}

static void with_form(const char *form) {
    if (form)
        setenv("CLGRAD_ATTENTION", form, 1);
    else
        unsetenv("CLGRAD_ATTENTION");
}

/* Every grid case in one graph, compiled once per kernel form; forward and gradients against
 * the reference, guard bytes checked. */
START_TEST(fused_grid) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    att_run runs[N_GRID];
    clg_tensor *loss = NULL;
    with_form("fused"); /* not the CPU's choice of the composite for small scores */
    for (int i = 0; i < N_GRID; ++i) {
        run_build(g, &runs[i], &grid[i], 100 + 10 * (uint64_t)i);
        loss = loss ? clg_add(g, loss, runs[i].loss) : runs[i].loss;
        clg_assert_ok(clg_graph_output(g, runs[i].o));
    }
    with_form(NULL);
    clg_assert_ok(clg_backward(g, loss));
    for (int i = 0; i < N_GRID; ++i) {
        clg_assert_ok(clg_graph_output(g, clg_grad(g, runs[i].tq)));
        clg_assert_ok(clg_graph_output(g, clg_grad(g, runs[i].tk)));
        clg_assert_ok(clg_graph_output(g, clg_grad(g, runs[i].tv)));
    }
    static const char *forms[] = {"rows", "tiles"};
    for (int f = 0; f < 2; ++f) {
        with_form(forms[f]);
        clg_compile_options opts = {.guard_bytes = 64};
        clg_plan *p = NULL;
        clg_status st = clg_graph_compile(g, &opts, &p);
        with_form(NULL);
        /* Mesa's llvmpipe stops a work-item at 65535 loop iterations: there the tiles form,
         * forced, refuses the grid's longest cases, which the automatic choice never gives it
         * (rows on CPU devices); said, not passed over. */
        const clg_device_info *dev = clg_context_device(clg_test_context());
        if (st == CLG_ERR_UNSUPPORTED && dev->loop_limit && strcmp(forms[f], "tiles") == 0) {
            fprintf(stderr, "fused_grid: tiles form not run on %s (loop limit %u): %s\n",
                    dev->name, (unsigned)dev->loop_limit, clg_last_error());
            continue;
        }
        clg_assert_ok(st);
        for (int i = 0; i < N_GRID; ++i) run_write(p, &runs[i]);
        clg_assert_ok(clg_plan_run(p));
        clg_assert_ok(clg_plan_finish(p));
        clg_assert_ok(clg_plan_check_guards(p));
        for (int i = 0; i < N_GRID; ++i) {
            const att_run *r = &runs[i];
            const att_shapes *sh = &r->sh;
            float *o = alloc_f(sh->no), *dq = alloc_f(sh->nq), *dk = alloc_f(sh->nk);
            float *dv = alloc_f(sh->nv), *dqi = alloc_f(sh->nq);
            att_reference(r->c, sh, r->q, r->k, r->v, r->m, r->gy, o, dq, dk, dv, NULL);
            q_in_layout(r, dq, dqi);
            char what[300];
            snprintf(what, sizeof what, "%s (%s): O", r->c->name, forms[f]);
            check_close(p, r->o, o, sh->no, 2e-5, 1e-4, what);
            snprintf(what, sizeof what, "%s (%s): dq", r->c->name, forms[f]);
            check_close(p, clg_grad(g, r->tq), dqi, sh->nq, 5e-5, 1e-3, what);
            snprintf(what, sizeof what, "%s (%s): dk", r->c->name, forms[f]);
            check_close(p, clg_grad(g, r->tk), dk, sh->nk, 5e-5, 1e-3, what);
            snprintf(what, sizeof what, "%s (%s): dv", r->c->name, forms[f]);
            check_close(p, clg_grad(g, r->tv), dv, sh->nv, 5e-5, 1e-3, what);
            free(o);
            free(dq);
            free(dk);
            free(dv);
            free(dqi);
        }
        clg_plan_free(p);
    }
    for (int i = 0; i < N_GRID; ++i) run_free(&runs[i]);
    clg_graph_free(g);
}
END_TEST

/* Central differences on small shapes, the mask a learned bias (its gradient is the
 * composite's), causal with S > T and broadcast leading dims. */
START_TEST(gradcheck_small) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    struct {
        const char *label;
        int nd;
        int64_t shape[4];
    } spec[] = {
        {"q", 3, {2, 3, 4}},  {"k", 3, {2, 5, 4}},  {"v", 3, {1, 5, 3}}, {"mask", 2, {3, 5}},
        {"q2", 4, {1, 2, 4, 3}}, {"k2", 4, {1, 2, 4, 3}}, {"v2", 4, {1, 2, 4, 2}},
        {"q3", 3, {1, 2, 1}}, {"k3", 3, {1, 7, 1}}, {"v3", 3, {1, 7, 2}},
    };
    enum { N_IN = 10 };
    clg_gc_input in[N_IN];
    for (int i = 0; i < N_IN; ++i) {
        int64_t n = 1;
        for (int d = 0; d < spec[i].nd; ++d) n *= spec[i].shape[d];
        in[i].tensor = clg_input(g, spec[i].label, CLG_F32, spec[i].nd, spec[i].shape);
        in[i].values = random_f(n, 500 + (uint64_t)i, -1.0f, 1.0f);
        in[i].label = spec[i].label;
    }
    clg_gc_require(in, N_IN);
    with_form("fused");
    clg_tensor *a = clg_attention(g, in[0].tensor, in[1].tensor, in[2].tensor, in[3].tensor,
                                  0.7f, true);
    clg_tensor *b =
        clg_attention(g, in[4].tensor, in[5].tensor, in[6].tensor, NULL, 0.0f, false);
    /* D 1, causal with S > T */
    clg_tensor *c = clg_attention(g, in[7].tensor, in[8].tensor, in[9].tensor, NULL, 1.5f, true);
    with_form(NULL);
    clg_tensor *loss = clg_add(g, clg_gc_weighted_sum(g, a, 21), clg_gc_weighted_sum(g, b, 22));
    loss = clg_add(g, loss, clg_gc_weighted_sum(g, c, 23));
    ck_assert_msg(clg_graph_status(g) == CLG_OK, "%s", clg_graph_error(g));
    clg_gradcheck(g, loss, in, N_IN, 1e-2f, 1e-3f, 1e-2f);
    for (int i = 0; i < N_IN; ++i) free(in[i].values);
    clg_graph_free(g);
}
END_TEST

/* The fused path and the composite (CLGRAD_ATTENTION=composite) on larger shapes: the same
 * outputs and gradients, the mask's included. */
START_TEST(fused_vs_composite) {
    static const att_case c = {"B 2, H 3, T 50, S 70, D 32, Dv 16, padding mask, causal",
                               2, {2, 3}, {2, 3}, {2, 3}, false, 50, 70, 32, 16, MASK_PAD, true,
                               0.0f, false};
    float *got[2][5];
    size_t plan_kernels[2];
    att_shapes sh;
    for (int pass = 0; pass < 2; ++pass) {
        with_form(pass ? "composite" : "fused");
        clg_graph *g = clg_graph_new(clg_test_context());
        ck_assert_ptr_nonnull(g);
        att_run r;
        run_build(g, &r, &c, 900);
        with_form(NULL);
        sh = r.sh;
        clg_assert_ok(clg_requires_grad(r.tm));
        clg_assert_ok(clg_backward(g, r.loss));
        clg_tensor *outs[5] = {r.o, clg_grad(g, r.tq), clg_grad(g, r.tk), clg_grad(g, r.tv),
                               clg_grad(g, r.tm)};
        for (int i = 0; i < 5; ++i) clg_assert_ok(clg_graph_output(g, outs[i]));
        clg_plan *p = NULL;
        clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.guard_bytes = 64}, &p));
        run_write(p, &r);
        clg_assert_ok(clg_plan_run(p));
        clg_assert_ok(clg_plan_check_guards(p));
        plan_kernels[pass] = clg_plan_kernel_count(p);
        for (int i = 0; i < 5; ++i) {
            int64_t n = clg_tensor_numel(outs[i]);
            got[pass][i] = alloc_f(n);
            clg_assert_ok(clg_plan_read(p, outs[i], got[pass][i], (size_t)n * sizeof(float)));
        }
        clg_plan_free(p);
        clg_graph_free(g);
        run_free(&r);
    }
    ck_assert_msg(plan_kernels[0] != plan_kernels[1], "both plans have %zu steps: the same path?",
                  plan_kernels[0]);
    static const char *names[5] = {"O", "dq", "dk", "dv", "dmask"};
    const int64_t n[5] = {sh.no, sh.nq, sh.nk, sh.nv, sh.nm};
    for (int i = 0; i < 5; ++i) {
        char what[100];
        snprintf(what, sizeof what, "fused vs composite: %s", names[i]);
        for (int64_t e = 0; e < n[i]; ++e) {
            float a = got[0][i][e], b = got[1][i][e];
            ck_assert_msg(fabsf(a - b) <= 2e-5f + 1e-3f * fabsf(b),
                          "%s: element %lld: %.7g vs %.7g", what, (long long)e, (double)a,
                          (double)b);
        }
        free(got[0][i]);
        free(got[1][i]);
    }
}
END_TEST

/* T = S = 512, D = 32: one T x S f32 matrix is 1 MiB, q, k and v are 64 KiB each. The fused
 * forward is one kernel and its plan (and the training plan) never holds the scores; the
 * composite's does, which shows the measure can fail. */
START_TEST(no_scores_in_memory) {
    const int64_t T = 512, D = 32;
    const size_t scores = (size_t)(T * T) * sizeof(float);
    for (int pass = 0; pass < 2; ++pass) {
        with_form(pass ? "composite" : "fused");
        for (int train = 0; train < 2; ++train) {
            clg_graph *g = clg_graph_new(clg_test_context());
            ck_assert_ptr_nonnull(g);
            clg_tensor *q = clg_input(g, "q", CLG_F32, 3, (int64_t[]){1, T, D});
            clg_tensor *k = clg_input(g, "k", CLG_F32, 3, (int64_t[]){1, T, D});
            clg_tensor *v = clg_input(g, "v", CLG_F32, 3, (int64_t[]){1, T, D});
            if (train) {
                clg_assert_ok(clg_requires_grad(q));
                clg_assert_ok(clg_requires_grad(k));
                clg_assert_ok(clg_requires_grad(v));
            }
            clg_tensor *o = clg_attention(g, q, k, v, NULL, 0.0f, true);
            if (train) {
                clg_tensor *loss = clg_sum(g, clg_square(g, o), 0, NULL, false);
                clg_assert_ok(clg_backward(g, loss));
                clg_assert_ok(clg_graph_output(g, clg_grad(g, q)));
                clg_assert_ok(clg_graph_output(g, clg_grad(g, k)));
                clg_assert_ok(clg_graph_output(g, clg_grad(g, v)));
            } else {
                clg_assert_ok(clg_graph_output(g, o));
            }
            clg_plan *p = NULL;
            clg_assert_ok(clg_graph_compile(g, NULL, &p));
            size_t peak = clg_plan_peak_bytes(p), kernels = clg_plan_kernel_count(p);
            if (pass == 0) {
                ck_assert_msg(peak < scores, "fused %s plan peaks at %zu bytes, scores take %zu",
                              train ? "training" : "forward", peak, scores);
                if (!train) ck_assert_msg(kernels == 1, "fused forward: %zu kernels", kernels);
            } else {
                ck_assert_msg(peak >= scores, "composite %s plan peaks at %zu bytes only",
                              train ? "training" : "forward", peak);
            }
            clg_plan_free(p);
            clg_graph_free(g);
        }
    }
    with_form(NULL);
}
END_TEST

/* Kernels per plan, fused: the forward alone is one; with the loss sum(O * c) and the three
 * gradients, the backward adds the two attention kernels (dQ with Di, then dK and dV) and one
 * for dO = c, which they read from a buffer. The composite takes more for either. */
static size_t count_kernels(bool train, int64_t T, int64_t S) {
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    const int64_t D = 16;
    clg_tensor *q = clg_input(g, "q", CLG_F32, 4, (int64_t[]){2, 3, T, D});
    clg_tensor *k = clg_input(g, "k", CLG_F32, 4, (int64_t[]){2, 3, S, D});
    clg_tensor *v = clg_input(g, "v", CLG_F32, 4, (int64_t[]){2, 3, S, D});
    clg_tensor *m = clg_input(g, "m", CLG_F32, 2, (int64_t[]){T, S});
    if (train) {
        clg_assert_ok(clg_requires_grad(q));
        clg_assert_ok(clg_requires_grad(k));
        clg_assert_ok(clg_requires_grad(v));
    }
    clg_tensor *o = clg_attention(g, q, k, v, m, 0.0f, true);
    float *c = random_f(2 * 3 * T * D, 77, -1.0f, 1.0f);
    clg_tensor *loss = clg_sum(
        g, clg_mul(g, o, clg_constant(g, CLG_F32, 4, (int64_t[]){2, 3, T, D}, c)), 0, NULL, false);
    free(c);
    if (train) {
        clg_assert_ok(clg_backward(g, loss));
        clg_assert_ok(clg_graph_output(g, clg_grad(g, q)));
        clg_assert_ok(clg_graph_output(g, clg_grad(g, k)));
        clg_assert_ok(clg_graph_output(g, clg_grad(g, v)));
    } else {
        clg_assert_ok(clg_graph_output(g, o));
    }
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    size_t n = clg_plan_kernel_count(p);
    clg_plan_free(p);
    clg_graph_free(g);
    return n;
}

START_TEST(kernel_counts) {
    static const char *forms[] = {"rows", "tiles"};
    for (int f = 0; f < 2; ++f) {
        with_form(forms[f]);
        size_t fwd = count_kernels(false, 33, 65), train = count_kernels(true, 33, 65);
        ck_assert_msg(fwd == 1, "%s: fused forward takes %zu kernels", forms[f], fwd);
        ck_assert_msg(train == 4, "%s: fused forward and backward take %zu kernels", forms[f],
                      train);
    }
    with_form("composite");
    size_t fwd = count_kernels(false, 33, 65), train = count_kernels(true, 33, 65);
    with_form(NULL);
    ck_assert_msg(fwd > 1 && train > 4, "composite: %zu and %zu kernels", fwd, train);
}
END_TEST

/* The automatic path: on a CPU device the composite while the scores stay small (6 heads of
 * 33 x 65), the fused kernels past 8 MiB of them (6 x 1024 x 1024 floats); elsewhere always
 * the fused kernels. */
START_TEST(auto_path) {
    with_form("composite");
    size_t composite = count_kernels(false, 33, 65);
    with_form(NULL);
    size_t small = count_kernels(false, 33, 65), large = count_kernels(false, 1024, 1024);
    bool cpu = clg_context_device(clg_test_context())->type == CLG_DEVICE_CPU;
    ck_assert_msg(small == (cpu ? composite : 1), "small scores: %zu kernels (composite %zu)",
                  small, composite);
    ck_assert_msg(large == 1, "large scores: %zu kernels, not the fused one", large);
}
END_TEST

/* Only k and v want gradients: the backward takes Di from a reduction instead of the dQ
 * kernel. Both forms, against the reference. */
START_TEST(grad_kv_only) {
    const att_case *c = &grid[2]; /* T 7, S 65, padding mask, causal */
    att_shapes sh;
    shapes_of(c, &sh);
    float *q = random_f(sh.nq, 1400, -1.0f, 1.0f), *k = random_f(sh.nk, 1401, -1.0f, 1.0f);
    float *v = random_f(sh.nv, 1402, -1.0f, 1.0f), *gy = random_f(sh.no, 1403, -1.0f, 1.0f);
    float *m = mask_values(c, &sh, 1404);
    float *o = alloc_f(sh.no), *dq = alloc_f(sh.nq), *dk = alloc_f(sh.nk), *dv = alloc_f(sh.nv);
    att_reference(c, &sh, q, k, v, m, gy, o, dq, dk, dv, NULL);
    static const char *forms[] = {"rows", "tiles"};
    for (int f = 0; f < 2; ++f) {
        clg_graph *g = clg_graph_new(clg_test_context());
        ck_assert_ptr_nonnull(g);
        clg_tensor *tq = clg_input(g, "q", CLG_F32, sh.nd_q, sh.q);
        clg_tensor *tk = clg_input(g, "k", CLG_F32, sh.nd_k, sh.k);
        clg_tensor *tv = clg_input(g, "v", CLG_F32, sh.nd_v, sh.v);
        clg_tensor *tm = clg_input(g, "mask", CLG_F32, sh.nd_m, sh.m);
        clg_assert_ok(clg_requires_grad(tk));
        clg_assert_ok(clg_requires_grad(tv));
        with_form(forms[f]);
        clg_tensor *out = clg_attention(g, tq, tk, tv, tm, c->scale, c->causal);
        with_form(NULL);
        clg_tensor *loss = clg_sum(
            g, clg_mul(g, out, clg_constant(g, CLG_F32, sh.nd_o, sh.o, gy)), 0, NULL, false);
        clg_assert_ok(clg_backward(g, loss));
        ck_assert_ptr_null(clg_grad(g, tq));
        clg_assert_ok(clg_graph_output(g, clg_grad(g, tk)));
        clg_assert_ok(clg_graph_output(g, clg_grad(g, tv)));
        with_form(forms[f]);
        clg_plan *p = NULL;
        clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.guard_bytes = 64}, &p));
        with_form(NULL);
        clg_assert_ok(clg_plan_write(p, tq, q, (size_t)sh.nq * sizeof(float)));
        clg_assert_ok(clg_plan_write(p, tk, k, (size_t)sh.nk * sizeof(float)));
        clg_assert_ok(clg_plan_write(p, tv, v, (size_t)sh.nv * sizeof(float)));
        clg_assert_ok(clg_plan_write(p, tm, m, (size_t)sh.nm * sizeof(float)));
        clg_assert_ok(clg_plan_run(p));
        clg_assert_ok(clg_plan_check_guards(p));
        char what[100];
        snprintf(what, sizeof what, "k, v only (%s): dk", forms[f]);
        check_close(p, clg_grad(g, tk), dk, sh.nk, 5e-5, 1e-3, what);
        snprintf(what, sizeof what, "k, v only (%s): dv", forms[f]);
        check_close(p, clg_grad(g, tv), dv, sh.nv, 5e-5, 1e-3, what);
        clg_plan_free(p);
        clg_graph_free(g);
    }
    free(q);
    free(k);
    free(v);
    free(gy);
    free(m);
    free(o);
    free(dq);
    free(dk);
    free(dv);
}
END_TEST

/* CLGRAD_ATTENTION: fused refuses what the kernels cannot take (D > 128), where the default
 * falls back to the composite, which is checked against the reference; a bad value fails. */
START_TEST(choice) {
    static const att_case c = {"D 130, T 9, S 12, causal", 1, {2}, {2}, {2}, false, 9, 12, 130,
                               5, MASK_NONE, true, 0.0f, false};
    with_form("fused");
    clg_graph *g = clg_graph_new(clg_test_context());
    ck_assert_ptr_nonnull(g);
    att_shapes sh;
    shapes_of(&c, &sh);
    clg_tensor *q = clg_input(g, "q", CLG_F32, sh.nd_q, sh.q);
    clg_tensor *k = clg_input(g, "k", CLG_F32, sh.nd_k, sh.k);
    clg_tensor *v = clg_input(g, "v", CLG_F32, sh.nd_v, sh.v);
    clg_attention(g, q, k, v, NULL, 0.0f, true);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(clg_graph_error(g), "CLGRAD_ATTENTION=fused"));
    clg_graph_free(g);
    with_form("flash");
    g = clg_graph_new(clg_test_context());
    q = clg_input(g, "q", CLG_F32, sh.nd_q, sh.q);
    clg_attention(g, q, q, q, NULL, 0.0f, false);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clg_graph_error(g), "'flash'"));
    clg_graph_free(g);
    with_form(NULL);

    g = clg_graph_new(clg_test_context());
    att_run r;
    run_build(g, &r, &c, 1300);
    clg_assert_ok(clg_backward(g, r.loss));
    clg_tensor *outs[4] = {r.o, clg_grad(g, r.tq), clg_grad(g, r.tk), clg_grad(g, r.tv)};
    for (int i = 0; i < 4; ++i) clg_assert_ok(clg_graph_output(g, outs[i]));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, &(clg_compile_options){.guard_bytes = 64}, &p));
    run_write(p, &r);
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_check_guards(p));
    float *o = alloc_f(sh.no), *dq = alloc_f(sh.nq), *dk = alloc_f(sh.nk), *dv = alloc_f(sh.nv);
    att_reference(&c, &sh, r.q, r.k, r.v, NULL, r.gy, o, dq, dk, dv, NULL);
    check_close(p, outs[0], o, sh.no, 2e-5, 1e-4, "composite fallback: O");
    check_close(p, outs[1], dq, sh.nq, 5e-5, 1e-3, "composite fallback: dq");
    check_close(p, outs[2], dk, sh.nk, 5e-5, 1e-3, "composite fallback: dk");
    check_close(p, outs[3], dv, sh.nv, 5e-5, 1e-3, "composite fallback: dv");
    free(o);
    free(dq);
    free(dk);
    free(dv);
    clg_plan_free(p);
    run_free(&r);
    clg_graph_free(g);
}
END_TEST

static void expect_error(const char *label, clg_tensor *q, clg_tensor *k, clg_tensor *v,
                         clg_tensor *mask, float scale, clg_status want, const char *needle) {
    clg_graph *g = clg_tensor_graph(q);
    clg_attention(g, q, k, v, mask, scale, false);
    ck_assert_msg(clg_graph_status(g) == want, "%s: status %s, message '%s'", label,
                  clg_status_name(clg_graph_status(g)), clg_graph_error(g));
    ck_assert_msg(strstr(clg_graph_error(g), "attention") && strstr(clg_graph_error(g), needle),
                  "%s: message '%s' lacks '%s'", label, clg_graph_error(g), needle);
}

START_TEST(bad_shapes) {
    struct {
        const char *label;
        int64_t q[3], k[3], v[3], m[3];
        int nm;
        bool q_i32;
        float scale;
        clg_status want;
        const char *needle;
    } cases[] = {
        {"D differs", {2, 4, 8}, {2, 5, 7}, {2, 5, 8}, {0}, 0, false, 0, CLG_ERR_SHAPE,
         "[2, 5, 7]"},
        {"S differs", {2, 4, 8}, {2, 5, 8}, {2, 6, 8}, {0}, 0, false, 0, CLG_ERR_SHAPE,
         "[2, 6, 8]"},
        {"lead dims", {2, 4, 8}, {3, 5, 8}, {3, 5, 8}, {0}, 0, false, 0, CLG_ERR_SHAPE,
         "do not broadcast"},
        {"mask", {2, 4, 8}, {2, 5, 8}, {2, 5, 8}, {4, 4}, 2, false, 0, CLG_ERR_SHAPE, "[4, 4]"},
        {"mask widens", {2, 4, 8}, {2, 5, 8}, {2, 5, 8}, {3, 4, 5}, 3, false, 0, CLG_ERR_SHAPE,
         "[3, 4, 5]"},
        {"dtype", {2, 4, 8}, {2, 5, 8}, {2, 5, 8}, {0}, 0, true, 0, CLG_ERR_DTYPE, "i32"},
        {"scale", {2, 4, 8}, {2, 5, 8}, {2, 5, 8}, {0}, 0, false, INFINITY,
         CLG_ERR_INVALID_ARGUMENT, "scale"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        clg_graph *g = clg_graph_new(clg_test_context());
        ck_assert_ptr_nonnull(g);
        clg_tensor *q = clg_input(g, "q", cases[i].q_i32 ? CLG_I32 : CLG_F32, 3, cases[i].q);
        clg_tensor *k = clg_input(g, "k", CLG_F32, 3, cases[i].k);
        clg_tensor *v = clg_input(g, "v", CLG_F32, 3, cases[i].v);
        clg_tensor *m = cases[i].nm ? clg_input(g, "m", CLG_F32, cases[i].nm, cases[i].m) : NULL;
        expect_error(cases[i].label, q, k, v, m, cases[i].scale, cases[i].want, cases[i].needle);
        clg_graph_free(g);
    }
    /* a 1-D q */
    clg_graph *g = clg_graph_new(clg_test_context());
    clg_tensor *q = clg_input(g, "q", CLG_F32, 1, (int64_t[]){8});
    clg_tensor *k = clg_input(g, "k", CLG_F32, 2, (int64_t[]){5, 8});
    expect_error("1-D q", q, k, k, NULL, 0.0f, CLG_ERR_SHAPE, "q [8]");
    clg_graph_free(g);
    ck_assert_ptr_null(clg_attention(NULL, NULL, NULL, NULL, NULL, 0.0f, false));
}
END_TEST

int main(void) {
    Suite *s = suite_create("attention");
    TCase *tc = tcase_create("attention");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, fused_grid);
    tcase_add_test(tc, gradcheck_small);
    tcase_add_test(tc, fused_vs_composite);
    tcase_add_test(tc, no_scores_in_memory);
    tcase_add_test(tc, kernel_counts);
    tcase_add_test(tc, auto_path);
    tcase_add_test(tc, grad_kv_only);
    tcase_add_test(tc, choice);
    tcase_add_test(tc, bad_shapes);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
