/* Transformer layers on the device: a pre-LN block (causal and padding masks) and a post-LN
 * block with cross-attention against a plain-C reference; gradients of block inputs and of
 * every parameter of a tiny GPT against central differences; a tiny GPT written by PyTorch
 * (tools/make_gpt_fixture.py) loaded and matched logit for logit; checkpoints with the tied
 * head under both keys and without the caches; cached greedy generation equal to uncached,
 * token for token, at a per-token cost that does not grow with the prefix; and a short
 * training on a copy text that needs learned attention, with the control that freezes the
 * attention's projections failing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"
#include "io/safetensors.h"

/* ---- host copies of parameters ---- */

#define MAX_HP 512
typedef struct hostp {
    const clg_param *p;
    float *v;
} hostp;
static hostp hp[MAX_HP];
static int n_hp;

static void hp_clear(void) {
    for (int i = 0; i < n_hp; ++i)
        free(hp[i].v);
    n_hp = 0;
}

static const float *hv(const clg_param *p) {
    if (!p) return NULL;
    for (int i = 0; i < n_hp; ++i)
        if (hp[i].p == p) return hp[i].v;
    ck_abort_msg("no host copy of %s", clg_param_name(p));
    return NULL;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Random values for the parameters ctx gained since n0: layer-norm weights 1 + U(-0.2, 0.2),
 * other vectors U(-0.2, 0.2), matrices U(-scale, scale); kept on the host for the reference. */
static void randomize_params(clg_context *ctx, size_t n0, float scale, uint64_t seed) {
    clg_test_rng r;
    clg_test_rng_seed(&r, seed);
    for (size_t i = n0; i < clg_param_count(ctx); ++i) {
        clg_param *p = clg_param_at(ctx, i);
        if (!clg_param_persistent(p)) continue;
        ck_assert_int_lt(n_hp, MAX_HP);
        int64_t n = clg_param_numel(p);
        float *v = malloc((size_t)n * sizeof *v);
        ck_assert_ptr_nonnull(v);
        const char *name = clg_param_name(p);
        bool ln = strstr(name, "ln_") && ends_with(name, ".weight");
        for (int64_t k = 0; k < n; ++k) {
            float u = clg_test_uniform(&r, -1.0f, 1.0f);
            v[k] = ln ? 1.0f + 0.2f * u : clg_param_ndim(p) == 1 ? 0.2f * u : scale * u;
        }
        clg_assert_ok(clg_param_write(p, v, (size_t)n * sizeof *v));
        hp[n_hp++] = (hostp){p, v};
    }
}

static clg_context *new_context(void) {
    (void)clg_test_context(); /* exits 77 without a device */
    clg_context *ctx = NULL;
    clg_assert_ok(clg_context_create(NULL, &ctx));
    return ctx;
}

/* ---- plain-C reference, in double ---- */

/* y [N, out] = x [N, in] W^T + b */
static void ref_linear(const double *x, int64_t N, const clg_linear *l, double *y) {
    const float *W = hv(l->weight), *b = l->bias ? hv(l->bias) : NULL;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < l->out_features; ++o) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < l->in_features; ++i)
                s += x[n * l->in_features + i] * W[o * l->in_features + i];
            y[n * l->out_features + o] = s;
        }
}

static void ref_ln(const double *x, int64_t N, const clg_layernorm *ln, double *y) {
    int64_t C = ln->dim;
    const float *w = hv(ln->weight), *b = ln->bias ? hv(ln->bias) : NULL;
    for (int64_t n = 0; n < N; ++n) {
        double mean = 0, var = 0;
        for (int64_t c = 0; c < C; ++c)
            mean += x[n * C + c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; ++c)
            var += (x[n * C + c] - mean) * (x[n * C + c] - mean);
        var /= (double)C;
        for (int64_t c = 0; c < C; ++c)
            y[n * C + c] = (x[n * C + c] - mean) / sqrt(var + 1e-5) * w[c] + (b ? b[c] : 0.0);
    }
}

/* Heads of q [B, T, *] and k, v [B, S, *] (row strides qs, ks), head h at column h D.
 * valid [B, S] (NULL: all) hides padded keys; causal: j <= i + S - T. out [B, T, H D]. */
static void ref_attend(int64_t B, int64_t H, int64_t T, int64_t S, int64_t D, const double *q,
                       int64_t qs, const double *k, const double *v, int64_t ks, const float *valid,
                       bool causal, double *out) {
    double *p = malloc((size_t)S * sizeof *p);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < T; ++i) {
                double mx = -INFINITY;
                for (int64_t j = 0; j < S; ++j) {
                    bool keep = (!valid || valid[b * S + j] != 0) && (!causal || j <= i + S - T);
                    double s = -INFINITY;
                    if (keep) {
                        s = 0;
                        for (int64_t d = 0; d < D; ++d)
                            s += q[(b * T + i) * qs + h * D + d] * k[(b * S + j) * ks + h * D + d];
                        s /= sqrt((double)D);
                    }
                    p[j] = s;
                    if (s > mx) mx = s;
                }
                double z = 0;
                for (int64_t j = 0; j < S; ++j) {
                    p[j] = mx == -INFINITY ? 0.0 : exp(p[j] - mx);
                    z += p[j];
                }
                for (int64_t d = 0; d < D; ++d) {
                    double acc = 0;
                    for (int64_t j = 0; j < S; ++j)
                        acc += p[j] * v[(b * S + j) * ks + h * D + d];
                    out[(b * T + i) * H * D + h * D + d] = z > 0 ? acc / z : 0.0;
                }
            }
    free(p);
}

static void ref_mha(const clg_mha *m, const double *x, int64_t B, int64_t T, const double *mem,
                    int64_t S, const float *valid, bool causal, double *out) {
    int64_t C = m->n_embd, H = m->n_head, D = C / H;
    double *y = malloc((size_t)(B * T * C) * sizeof *y);
    if (m->cross) {
        double *q = malloc((size_t)(B * T * C) * sizeof *q);
        double *kv = malloc((size_t)(B * S * 2 * C) * sizeof *kv);
        ref_linear(x, B * T, &m->c_q, q);
        ref_linear(mem, B * S, &m->c_kv, kv);
        ref_attend(B, H, T, S, D, q, C, kv, kv + C, 2 * C, valid, causal, y);
        free(q);
        free(kv);
    } else {
        double *qkv = malloc((size_t)(B * T * 3 * C) * sizeof *qkv);
        ref_linear(x, B * T, &m->c_attn, qkv);
        ref_attend(B, H, T, T, D, qkv, 3 * C, qkv + C, qkv + 2 * C, 3 * C, valid, causal, y);
        free(qkv);
    }
    ref_linear(y, B * T, &m->c_proj, out);
    free(y);
}

static void ref_mlp(const clg_mlp *m, const double *x, int64_t N, double *out) {
    int64_t Hd = m->c_fc.out_features;
    double *h = malloc((size_t)(N * Hd) * sizeof *h);
    ref_linear(x, N, &m->c_fc, h);
    for (int64_t i = 0; i < N * Hd; ++i)
        h[i] = 0.5 * h[i] * (1.0 + erf(h[i] / sqrt(2.0)));
    ref_linear(h, N, &m->c_proj, out);
    free(h);
}

/* x [B, T, C] -> out, the block: pre-LN or post-LN, cross-attention on mem when it has one. */
static void ref_block(const clg_block *blk, const double *x, int64_t B, int64_t T, int64_t C,
                      const float *valid, bool causal, const double *mem, int64_t S,
                      const float *mem_valid, double *out) {
    size_t n = (size_t)(B * T * C);
    double *h = malloc(n * sizeof *h), *a = malloc(n * sizeof *a), *t = malloc(n * sizeof *t);
    memcpy(h, x, n * sizeof *h);
    for (int sub = 0; sub < 3; ++sub) {
        if (sub == 1 && !blk->cross) continue;
        const clg_layernorm *ln = sub == 0 ? &blk->ln_1 : sub == 1 ? &blk->ln_cross : &blk->ln_2;
        const double *in = h;
        if (!blk->post_ln) {
            ref_ln(h, B * T, ln, t);
            in = t;
        }
        if (sub == 0) ref_mha(&blk->attn, in, B, T, NULL, 0, valid, causal, a);
        if (sub == 1) ref_mha(&blk->cross_attn, in, B, T, mem, S, mem_valid, false, a);
        if (sub == 2) ref_mlp(&blk->mlp, in, B * T, a);
        for (size_t i = 0; i < n; ++i)
            h[i] += a[i];
        if (blk->post_ln) {
            ref_ln(h, B * T, ln, t);
            memcpy(h, t, n * sizeof *h);
        }
    }
    memcpy(out, h, n * sizeof *out);
    free(h);
    free(a);
    free(t);
}

/* ---- blocks against the reference ---- */

static void check_block(bool post_ln, bool cross, bool bias) {
    clg_context *ctx = new_context();
    const int64_t B = 2, T = 5, S = 3, C = 8;
    clg_transformer_layer_config cfg = {
        .n_embd = C, .n_head = 2, .bias = bias, .post_ln = post_ln, .cross = cross};
    clg_block blk;
    clg_assert_ok(clg_block_init(ctx, &blk, "blk", &cfg, 7));
    randomize_params(ctx, 0, 0.5f, 11);

    float x[2 * 5 * 8], mem[2 * 3 * 8];
    clg_test_rng r;
    clg_test_rng_seed(&r, 3);
    clg_test_fill(&r, x, sizeof x / sizeof *x, -1.5f, 1.5f);
    clg_test_fill(&r, mem, sizeof mem / sizeof *mem, -1.5f, 1.5f);
    /* batch 1: its last two positions are padding; the memory's last one too */
    float valid[2 * 5] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    float mem_valid[2 * 3] = {1, 1, 1, 1, 1, 0};

    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *tx = clg_input(g, "x", CLG_F32, 3, (int64_t[]){B, T, C});
    clg_tensor *tv = clg_input(g, "valid", CLG_F32, 2, (int64_t[]){B, T});
    clg_tensor *tm = cross ? clg_input(g, "mem", CLG_F32, 3, (int64_t[]){B, S, C}) : NULL;
    clg_tensor *tmv = cross ? clg_input(g, "mem_valid", CLG_F32, 2, (int64_t[]){B, S}) : NULL;
    clg_tensor *y = clg_block_forward(g, &blk, tx, clg_attention_padding_mask(g, tv), true, tm,
                                      cross ? clg_attention_padding_mask(g, tmv) : NULL, false, 0);
    clg_assert_ok(clg_graph_output(g, y));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_write(p, tx, x, sizeof x));
    clg_assert_ok(clg_plan_write(p, tv, valid, sizeof valid));
    if (cross) {
        clg_assert_ok(clg_plan_write(p, tm, mem, sizeof mem));
        clg_assert_ok(clg_plan_write(p, tmv, mem_valid, sizeof mem_valid));
    }
    clg_assert_ok(clg_plan_run(p));
    float got[2 * 5 * 8];
    clg_assert_ok(clg_plan_read(p, y, got, sizeof got));

    double xd[2 * 5 * 8], md[2 * 3 * 8], want_d[2 * 5 * 8];
    for (int i = 0; i < 80; ++i)
        xd[i] = x[i];
    for (int i = 0; i < 48; ++i)
        md[i] = mem[i];
    ref_block(&blk, xd, B, T, C, valid, true, md, S, mem_valid, want_d);
    float want[80];
    for (int i = 0; i < 80; ++i)
        want[i] = (float)want_d[i];
    clg_assert_close(got, want, 80, 2e-5, 2e-4);
    hp_clear();
    clg_context_free(ctx);
}

START_TEST(test_block_pre_ln) {
    check_block(false, false, true);
}
END_TEST

START_TEST(test_block_post_ln_cross) {
    check_block(true, true, false);
}
END_TEST

START_TEST(test_block_pre_ln_cross) {
    check_block(false, true, true);
}
END_TEST

/* Dropout on the attention weights and on the output, both inverted (unbiased) and the layer
 * linear in them: the mean of many training runs is the evaluation output (the reference),
 * while one training run differs from it. */
START_TEST(test_mha_dropout) {
    clg_context *ctx = new_context();
    const int64_t B = 2, T = 4, C = 8;
    clg_transformer_layer_config cfg = {.n_embd = C, .n_head = 2, .bias = true, .dropout = 0.3f};
    clg_mha m;
    clg_assert_ok(clg_mha_init(ctx, &m, "attn", &cfg, false, 3));
    randomize_params(ctx, 0, 0.5f, 13);
    float x[2 * 4 * 8];
    clg_test_rng r;
    clg_test_rng_seed(&r, 5);
    clg_test_fill(&r, x, 64, -1.5f, 1.5f);
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *tx = clg_input(g, "x", CLG_F32, 3, (int64_t[]){B, T, C});
    clg_tensor *yt = clg_mha_forward(g, &m, tx, NULL, NULL, true, true, 9);
    clg_tensor *ye = clg_mha_forward(g, &m, tx, NULL, NULL, true, false, 9);
    clg_assert_ok(clg_graph_output(g, yt));
    clg_assert_ok(clg_graph_output(g, ye));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_write(p, tx, x, sizeof x));
    enum { RUNS = 2000 };
    double mean[64] = {0}, sq[64] = {0};
    float got[64], eval[64], want[64];
    for (int k = 0; k < RUNS; ++k) {
        clg_assert_ok(clg_plan_run(p));
        clg_assert_ok(clg_plan_read(p, yt, got, sizeof got));
        for (int i = 0; i < 64; ++i) {
            mean[i] += got[i] / (double)RUNS;
            sq[i] += (double)got[i] * got[i] / (double)RUNS;
        }
    }
    clg_assert_ok(clg_plan_read(p, ye, eval, sizeof eval));
    double xd[64], wd[64];
    for (int i = 0; i < 64; ++i)
        xd[i] = x[i];
    ref_mha(&m, xd, B, T, NULL, 0, NULL, true, wd);
    for (int i = 0; i < 64; ++i) {
        want[i] = (float)wd[i];
    }
    clg_assert_close(eval, want, 64, 2e-5, 2e-4);
    /* the mean of the runs within 5 standard errors (each element's spread over the runs) */
    for (int i = 0; i < 64; ++i) {
        double se = sqrt(fmax(sq[i] - mean[i] * mean[i], 0.0) / RUNS);
        ck_assert_msg(fabs(mean[i] - wd[i]) <= 5 * se + 1e-4,
                      "element %d: mean of training runs %g, evaluation %g (standard error %g)", i,
                      mean[i], wd[i], se);
    }
    clg_assert_ok(clg_plan_run(p));
    clg_assert_ok(clg_plan_read(p, yt, got, sizeof got));
    double far = 0;
    for (int i = 0; i < 64; ++i)
        far = fmax(far, fabs(got[i] - eval[i]));
    ck_assert_msg(far > 0.05, "a training run equals evaluation (%g): no dropout", far);
    hp_clear();
    clg_context_free(ctx);
}
END_TEST

START_TEST(test_sinusoidal) {
    clg_context *ctx = new_context();
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *pe = clg_sinusoidal_encoding(g, 9, 6);
    clg_assert_ok(clg_graph_output(g, pe));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_run(p));
    float got[54], want[54];
    clg_assert_ok(clg_plan_read(p, pe, got, sizeof got));
    for (int t = 0; t < 9; ++t)
        for (int c = 0; c < 6; ++c) {
            double f = t / pow(10000.0, (double)(c - c % 2) / 6.0);
            want[t * 6 + c] = (float)(c % 2 ? cos(f) : sin(f));
        }
    clg_assert_close(got, want, 54, 1e-6, 1e-6);
    clg_graph_free(g);
    /* C odd is an error that names the op */
    g = clg_graph_new(ctx);
    clg_sinusoidal_encoding(g, 4, 5);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(clg_graph_error(g), "sinusoidal"));
    clg_context_free(ctx);
}
END_TEST

/* ---- gradients ---- */

/* d(weighted sum of the block's output) / d(x, memory), cross post-LN and self pre-LN. */
START_TEST(test_block_gradcheck) {
    for (int variant = 0; variant < 2; ++variant) {
        clg_context *ctx = new_context();
        bool cross = variant == 0;
        clg_transformer_layer_config cfg = {
            .n_embd = 8, .n_head = 2, .bias = true, .post_ln = cross, .cross = cross};
        clg_block blk;
        clg_assert_ok(clg_block_init(ctx, &blk, "blk", &cfg, 5));
        randomize_params(ctx, 0, 0.5f, 21 + (uint64_t)variant);
        float x[2 * 4 * 8], mem[2 * 3 * 8], valid[2 * 4] = {1, 1, 1, 1, 1, 1, 1, 0};
        clg_test_rng r;
        clg_test_rng_seed(&r, 9);
        clg_test_fill(&r, x, 64, -1, 1);
        clg_test_fill(&r, mem, 48, -1, 1);
        clg_graph *g = clg_graph_new(ctx);
        clg_tensor *tx = clg_input(g, "x", CLG_F32, 3, (int64_t[]){2, 4, 8});
        clg_tensor *tm = clg_input(g, "mem", CLG_F32, 3, (int64_t[]){2, 3, 8});
        clg_tensor *mask =
            clg_attention_padding_mask(g, clg_constant(g, CLG_F32, 2, (int64_t[]){2, 4}, valid));
        clg_gc_input in[2] = {{tx, x, "block x"}, {tm, mem, "block memory"}};
        clg_gc_require(in, cross ? 2 : 1);
        clg_tensor *y =
            clg_block_forward(g, &blk, tx, mask, true, cross ? tm : NULL, NULL, false, 0);
        clg_gradcheck(g, clg_gc_weighted_sum(g, y, 4), in, cross ? 2 : 1, 1e-2f, 1e-3f, 1e-2f);
        hp_clear();
        clg_context_free(ctx);
    }
}
END_TEST

/* Every parameter of a tiny GPT (tied head) against central differences of the mean
 * cross-entropy: a few elements of each. */
START_TEST(test_gpt_param_gradients) {
    clg_context *ctx = new_context();
    clg_gpt_config cfg = {
        .vocab_size = 7, .block_size = 6, .n_layer = 2, .n_head = 2, .n_embd = 8, .bias = true};
    clg_gpt m;
    clg_assert_ok(clg_gpt_init(ctx, &m, &cfg, 1));
    randomize_params(ctx, 0, 0.4f, 31);
    const int64_t B = 2, T = 5;
    int32_t idx[10] = {1, 4, 2, 6, 0, 3, 3, 5, 1, 2}, tgt[10] = {4, 2, 6, 0, 5, 3, 5, 1, 2, 0};
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *ti = clg_input(g, "idx", CLG_I32, 2, (int64_t[]){B, T});
    clg_tensor *tt = clg_input(g, "tgt", CLG_I32, 1, (int64_t[]){B * T});
    clg_tensor *logits = clg_gpt_forward(g, &m, ti, false, 0);
    clg_tensor *loss = clg_cross_entropy(g, clg_reshape(g, logits, 2, (int64_t[]){B * T, 7}), tt,
                                         CLG_REDUCTION_MEAN);
    clg_assert_ok(clg_backward(g, loss));
    clg_assert_ok(clg_graph_output(g, loss));
    size_t np = clg_param_count(ctx);
    for (size_t i = 0; i < np; ++i)
        clg_assert_ok(clg_graph_output(g, clg_param_grad(g, clg_param_at(ctx, i))));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_write(p, ti, idx, sizeof idx));
    clg_assert_ok(clg_plan_write(p, tt, tgt, sizeof tgt));
    clg_assert_ok(clg_plan_run(p));
    const float eps = 1e-2f;
    for (size_t i = 0; i < np; ++i) {
        clg_param *prm = clg_param_at(ctx, i);
        int64_t n = clg_param_numel(prm);
        size_t bytes = (size_t)n * sizeof(float);
        float *grad = malloc(bytes), *v = malloc(bytes);
        clg_assert_ok(clg_plan_run(p));
        clg_assert_ok(clg_plan_read_grad(p, prm, grad, bytes));
        memcpy(v, hv(prm), bytes);
        for (int e = 0; e < 3; ++e) {
            int64_t k = (int64_t)e * (n - 1) / 2;
            float l[2], keep = v[k];
            for (int s = 0; s < 2; ++s) {
                v[k] = keep + (s ? -eps : eps);
                clg_assert_ok(clg_param_write(prm, v, bytes));
                clg_assert_ok(clg_plan_run(p));
                clg_assert_ok(clg_plan_read(p, loss, &l[s], sizeof l[s]));
            }
            v[k] = keep;
            clg_assert_ok(clg_param_write(prm, v, bytes));
            double num = (l[0] - l[1]) / (2.0 * eps);
            ck_assert_msg(fabs(grad[k] - num) <= 2e-3 + 3e-2 * fabs(num),
                          "%s[%lld]: analytic %g, numeric %g", clg_param_name(prm), (long long)k,
                          (double)grad[k], num);
        }
        free(grad);
        free(v);
    }
    clg_gpt_free(&m);
    hp_clear();
    clg_context_free(ctx);
}
END_TEST

/* ---- the PyTorch fixture ---- */

static const clg_gpt_config fixture_cfg = {
    .vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 2, .n_embd = 16, .bias = true};

START_TEST(test_gpt_matches_pytorch) {
    clg_context *ctx = new_context();
    clg_gpt m;
    clg_assert_ok(clg_gpt_init(ctx, &m, &fixture_cfg, 1));
    clg_assert_ok(clg_checkpoint_load(ctx, clg_test_path("fixtures/gpt_tiny.safetensors"), NULL));
    clg_safetensors *io = NULL;
    clg_assert_ok(clg_safetensors_load(clg_test_path("fixtures/gpt_tiny_io.safetensors"), &io));
    const clg_st_view *vi = clg_safetensors_find(io, "idx");
    const clg_st_view *vl = clg_safetensors_find(io, "logits");
    ck_assert_ptr_nonnull(vi);
    ck_assert_ptr_nonnull(vl);
    ck_assert_int_eq(vi->numel, 14);
    ck_assert_int_eq(vl->numel, 14 * 11);
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *ti = clg_input(g, "idx", CLG_I32, 2, (int64_t[]){2, 7});
    clg_tensor *logits = clg_gpt_forward(g, &m, ti, false, 0);
    clg_assert_ok(clg_graph_output(g, logits));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_assert_ok(clg_plan_write(p, ti, vi->data, vi->nbytes));
    clg_assert_ok(clg_plan_run(p));
    float got[154];
    clg_assert_ok(clg_plan_read(p, logits, got, sizeof got));
    clg_assert_close(got, (const float *)vl->data, 154, 1e-4, 1e-4);
    clg_safetensors_free(io);
    clg_gpt_free(&m);
    clg_context_free(ctx);
}
END_TEST

/* Saved: both keys of the tied head with equal data, no caches; loaded back into a new model
 * (which has no caches yet) and into one without the alias key in the file. */
START_TEST(test_gpt_checkpoint_keys) {
    clg_context *ctx = new_context();
    clg_gpt m;
    clg_assert_ok(clg_gpt_init(ctx, &m, &fixture_cfg, 3));
    clg_gpt_cache cache;
    clg_assert_ok(clg_gpt_cache_init(ctx, &m, 1, &cache));
    char path[] = "/tmp/clgrad-gpt-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    clg_assert_ok(clg_checkpoint_save(ctx, path, NULL));
    clg_safetensors *st = NULL;
    clg_assert_ok(clg_safetensors_load(path, &st));
    const clg_st_view *a = clg_safetensors_find(st, "transformer.wte.weight");
    const clg_st_view *b = clg_safetensors_find(st, "lm_head.weight");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(a->nbytes, b->nbytes);
    ck_assert_int_eq(memcmp(a->data, b->data, a->nbytes), 0);
    ck_assert_ptr_null(clg_safetensors_find(st, "kv_cache.h.0.k"));
    /* nanoGPT's state_dict with biases: wte, wpe, 12 per layer, ln_f's 2, lm_head */
    ck_assert_int_eq(clg_safetensors_count(st), 2 + 12 * 2 + 2 + 1);
    float *wte = malloc(a->nbytes);
    memcpy(wte, a->data, a->nbytes);
    clg_safetensors_free(st);

    clg_context *ctx2 = new_context();
    clg_gpt m2;
    clg_assert_ok(clg_gpt_init(ctx2, &m2, &fixture_cfg, 4));
    clg_assert_ok(clg_checkpoint_load(ctx2, path, NULL));
    float *back = malloc((size_t)(11 * 16) * sizeof *back);
    clg_assert_ok(clg_param_read(m2.lm_head, back, (size_t)(11 * 16) * sizeof *back));
    ck_assert_int_eq(memcmp(back, wte, (size_t)(11 * 16) * sizeof *back), 0);
    free(back);
    free(wte);
    clg_gpt_free(&m2);
    clg_context_free(ctx2);
    remove(path);
    clg_gpt_cache_free(&cache);
    clg_gpt_free(&m);
    clg_context_free(ctx);
}
END_TEST

/* ---- generation with the KV cache ---- */

static int argmax(const float *v, int64_t n) {
    int best = 0;
    for (int64_t i = 1; i < n; ++i)
        if (v[i] > v[best]) best = (int)i;
    return best;
}

START_TEST(test_cached_generation_equals_uncached) {
    clg_context *ctx = new_context();
    enum { V = 13, L = 16, PROMPT = 3 };
    clg_gpt_config cfg = {
        .vocab_size = V, .block_size = L, .n_layer = 2, .n_head = 2, .n_embd = 16, .bias = true};
    clg_gpt m;
    clg_assert_ok(clg_gpt_init(ctx, &m, &cfg, 8));
    randomize_params(ctx, 0, 0.4f, 41);
    clg_gpt_cache cache;
    clg_assert_ok(clg_gpt_cache_init(ctx, &m, 1, &cache));

    /* uncached: the whole window every token, padded past the prefix (causal: unseen) */
    clg_graph *gu = clg_graph_new(ctx);
    clg_tensor *ui = clg_input(gu, "idx", CLG_I32, 2, (int64_t[]){1, L});
    clg_tensor *ul = clg_gpt_forward(gu, &m, ui, false, 0);
    clg_assert_ok(clg_graph_output(gu, ul));
    clg_plan *pu = NULL;
    clg_assert_ok(clg_graph_compile(gu, NULL, &pu));
    /* cached: one position per run */
    clg_graph *gc = clg_graph_new(ctx);
    clg_tensor *ci = clg_input(gc, "idx", CLG_I32, 1, (int64_t[]){1});
    clg_tensor *cp = clg_input(gc, "pos", CLG_I32, 1, (int64_t[]){1});
    clg_tensor *cl = clg_gpt_forward_cached(gc, &m, &cache, ci, cp);
    clg_assert_ok(clg_graph_output(gc, cl));
    clg_plan *pc = NULL;
    clg_assert_ok(clg_graph_compile(gc, NULL, &pc));

    int32_t a[L] = {5, 2, 9}, b[L] = {5, 2, 9};
    float lu[L * V], lc[V];
    for (int t = PROMPT; t < L; ++t) { /* uncached: predict token t from 0..t-1 */
        clg_assert_ok(clg_plan_write(pu, ui, a, sizeof a));
        clg_assert_ok(clg_plan_run(pu));
        clg_assert_ok(clg_plan_read(pu, ul, lu, sizeof lu));
        a[t] = argmax(lu + (t - 1) * V, V);
    }
    size_t runs = 0;
    for (int t = 0; t + 1 < L; ++t) { /* cached: feed token t, predict t + 1 */
        int32_t pos = t;
        clg_assert_ok(clg_plan_write(pc, ci, &b[t], sizeof b[t]));
        clg_assert_ok(clg_plan_write(pc, cp, &pos, sizeof pos));
        clg_assert_ok(clg_plan_run(pc));
        ++runs;
        clg_assert_ok(clg_plan_read(pc, cl, lc, sizeof lc));
        if (t + 1 >= PROMPT) {
            b[t + 1] = argmax(lc, V);
            /* the same logits as the full forward at position t */
            clg_assert_close(lc, lu + t * V, V, 1e-4, 1e-4);
        }
    }
    for (int t = 0; t < L; ++t)
        ck_assert_msg(a[t] == b[t], "token %d: %d vs %d", t, a[t], b[t]);
    /* not a constant sequence: greedy decoding of this model goes somewhere */
    int distinct = 0;
    for (int t = PROMPT; t < L; ++t)
        distinct += a[t] != a[PROMPT];
    ck_assert_int_gt(distinct, 0);
    ck_assert_int_eq(runs, L - 1);

    /* Per-token cost: one run of one plan at every position (its kernels and buffers are fixed
     * when it is compiled), so the whole generation is (tokens) x (one step); see
     * cached_step_cost for how a step grows with the cache. */
    clg_plan_free(pu);
    clg_plan_free(pc);
    clg_gpt_cache_free(&cache);
    clg_gpt_free(&m);
    hp_clear();
    clg_context_free(ctx);
}
END_TEST

/* The step plan's size for caches of L and 4L positions: kernels the same, intermediate
 * memory at most 4x (linear in the cache, as the attention over it reads each row once);
 * an uncached forward over 4x the positions needs more kernels' work per token. */
START_TEST(test_cached_step_cost_linear) {
    size_t kernels[2], peak[2];
    for (int i = 0; i < 2; ++i) {
        clg_context *ctx = new_context();
        clg_gpt_config cfg = {.vocab_size = 13,
                              .block_size = i ? 256 : 64,
                              .n_layer = 2,
                              .n_head = 2,
                              .n_embd = 16,
                              .bias = true};
        clg_gpt m;
        clg_assert_ok(clg_gpt_init(ctx, &m, &cfg, 8));
        clg_gpt_cache cache;
        clg_assert_ok(clg_gpt_cache_init(ctx, &m, 1, &cache));
        clg_graph *g = clg_graph_new(ctx);
        clg_tensor *ti = clg_input(g, "idx", CLG_I32, 1, (int64_t[]){1});
        clg_tensor *tp = clg_input(g, "pos", CLG_I32, 1, (int64_t[]){1});
        clg_tensor *l = clg_gpt_forward_cached(g, &m, &cache, ti, tp);
        clg_assert_ok(clg_graph_output(g, l));
        clg_plan *p = NULL;
        clg_assert_ok(clg_graph_compile(g, NULL, &p));
        kernels[i] = clg_plan_kernel_count(p);
        peak[i] = clg_plan_peak_bytes(p);
        clg_gpt_cache_free(&cache);
        clg_gpt_free(&m);
        clg_context_free(ctx);
    }
    ck_assert_int_eq(kernels[0], kernels[1]);
    ck_assert_msg(peak[1] <= 4 * peak[0] + 4096, "peak %zu for 256 positions, %zu for 64", peak[1],
                  peak[0]);
}
END_TEST

/* ---- training that needs attention ---- */

/* Lines "abcdefg abcdefg\n": a random 7-letter word, a space, the word again. Letters of the
 * second copy are predictable only by looking 8 positions back, i.e. by attention whose
 * queries and keys have learned to match positions. */
enum { LINE = 16, WORD = 7, VOCAB = 28 }; /* a-z, space, newline */

static void make_line(clg_test_rng *r, int32_t *line) {
    for (int i = 0; i < WORD; ++i) {
        int c = (int)clg_test_uniform(r, 0.0f, 26.0f);
        line[i] = line[WORD + 1 + i] = c > 25 ? 25 : c;
    }
    line[WORD] = 26;
    line[LINE - 1] = 27;
}

/* Mean cross-entropy on the copied letters after steps of AdamW. freeze: c_attn frozen. */
static double train_copy(bool freeze) {
    clg_context *ctx = new_context();
    clg_gpt_config cfg = {.vocab_size = VOCAB,
                          .block_size = LINE - 1,
                          .n_layer = 2,
                          .n_head = 2,
                          .n_embd = 32,
                          .bias = true};
    clg_gpt m;
    clg_assert_ok(clg_gpt_init(ctx, &m, &cfg, 5));
    if (freeze)
        for (int64_t i = 0; i < cfg.n_layer; ++i) {
            clg_param_set_requires_grad(m.h[i].attn.c_attn.weight, false);
            clg_param_set_requires_grad(m.h[i].attn.c_attn.bias, false);
        }
    enum { BATCH = 16, T = LINE - 1, STEPS = 250 };
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *ti = clg_input(g, "idx", CLG_I32, 2, (int64_t[]){BATCH, T});
    clg_tensor *tt = clg_input(g, "tgt", CLG_I32, 1, (int64_t[]){BATCH * T});
    clg_tensor *logits =
        clg_reshape(g, clg_gpt_forward(g, &m, ti, true, 0), 2, (int64_t[]){BATCH * T, VOCAB});
    clg_tensor *rows = clg_cross_entropy(g, logits, tt, CLG_REDUCTION_NONE);
    clg_tensor *loss = clg_mean(g, rows, 0, NULL, false);
    clg_assert_ok(clg_backward(g, loss));
    clg_assert_ok(clg_graph_output(g, rows));
    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_ADAMW);
    oc.lr = 3e-3f;
    oc.beta2 = 0.99f;
    oc.weight_decay = 0.0f;
    oc.clip_norm = 1.0f;
    clg_optimizer *opt = clg_optimizer_new(ctx, &oc);
    ck_assert_ptr_nonnull(opt);
    clg_assert_ok(clg_optimizer_apply(opt, g, NULL));
    clg_plan *p = NULL;
    clg_assert_ok(clg_graph_compile(g, NULL, &p));
    clg_test_rng r;
    clg_test_rng_seed(&r, 77);
    int32_t idx[BATCH * T], tgt[BATCH * T], line[LINE];
    float ce[BATCH * T];
    double copied = 0;
    int counted = 0;
    for (int s = 0; s < STEPS; ++s) {
        for (int b = 0; b < BATCH; ++b) {
            make_line(&r, line);
            memcpy(idx + b * T, line, T * sizeof *idx);
            memcpy(tgt + b * T, line + 1, T * sizeof *tgt);
        }
        clg_assert_ok(clg_plan_write(p, ti, idx, sizeof idx));
        clg_assert_ok(clg_plan_write(p, tt, tgt, sizeof tgt));
        clg_assert_ok(clg_plan_run(p));
        if (s < STEPS - 10) continue;
        /* the last 10 batches, before their update: fresh lines, so a held-out measure.
         * Positions 7..13 predict the second copy's letters. */
        clg_assert_ok(clg_plan_read(p, rows, ce, sizeof ce));
        for (int b = 0; b < BATCH; ++b)
            for (int t = WORD; t < 2 * WORD; ++t, ++counted)
                copied += ce[b * T + t];
    }
    clg_optimizer_free(opt);
    clg_gpt_free(&m);
    clg_context_free(ctx);
    return copied / counted;
}

/* Learned attention copies (log 26 = 3.26 nats per letter untrained). The control freezes
 * c_attn at nanoGPT's N(0, 0.02) init: scores q.k / sqrt(D) then have a spread of about 0.01,
 * the attention stays uniform over the prefix, and a uniform average of the first word cannot
 * say which of its letters comes next. Training cannot rescue it in 250 steps: AdamW moves a
 * parameter by about lr per step, so the layer norms that scale q and k grow at most 1.75x
 * (scores at most 3x) — still uniform. */
START_TEST(test_training_needs_attention) {
    double learned = train_copy(false), frozen = train_copy(true);
    fprintf(stderr, "copy loss: learned attention %.3f, frozen c_attn %.3f\n", learned, frozen);
    ck_assert_msg(learned < 0.5, "learned attention: copy loss %.3f", learned);
    ck_assert_msg(frozen > 1.2, "control (frozen c_attn): copy loss %.3f", frozen);
}
END_TEST

/* ---- errors ---- */

START_TEST(test_errors) {
    clg_context *ctx = new_context();
    clg_transformer_layer_config cfg = {.n_embd = 10, .n_head = 3};
    clg_mha m;
    ck_assert_int_eq(clg_mha_init(ctx, &m, "a", &cfg, false, 1), CLG_ERR_SHAPE);
    ck_assert_int_eq(clg_param_count(ctx), 0);
    cfg.n_head = 2;
    clg_assert_ok(clg_mha_init(ctx, &m, "a", &cfg, false, 1));
    /* a block whose last parameter's name is taken fails and leaves nothing behind */
    ck_assert_ptr_nonnull(clg_param_new(ctx, "blk.mlp.c_proj.bias", CLG_F32, 1, (int64_t[]){3}));
    size_t n = clg_param_count(ctx);
    clg_block b;
    cfg.bias = true;
    ck_assert_int_ne(clg_block_init(ctx, &b, "blk", &cfg, 1), CLG_OK);
    ck_assert_int_eq(clg_param_count(ctx), n);
    clg_graph *g = clg_graph_new(ctx);
    clg_tensor *x = clg_input(g, "x", CLG_F32, 3, (int64_t[]){2, 3, 9});
    clg_mha_forward(g, &m, x, NULL, NULL, true, false, 0);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(clg_graph_error(g), "mha('a.c_proj.weight')"));
    clg_graph_free(g);
    g = clg_graph_new(ctx);
    x = clg_input(g, "x", CLG_F32, 3, (int64_t[]){2, 3, 10});
    clg_mha_forward(g, &m, x, x, NULL, false, false, 0);
    ck_assert_int_eq(clg_graph_status(g), CLG_ERR_INVALID_ARGUMENT);
    clg_graph_free(g);
    /* an alias may not take a parameter's name */
    ck_assert_int_ne(clg_param_set_alias(m.c_proj.weight, "a.c_attn.weight"), CLG_OK);
    clg_context_free(ctx);
}
END_TEST

static void add(Suite *s, const char *name, const TTest *test) {
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

int main(void) {
    Suite *s = suite_create("transformer");
    add(s, "block_pre_ln", test_block_pre_ln);
    add(s, "block_post_ln_cross", test_block_post_ln_cross);
    add(s, "block_pre_ln_cross", test_block_pre_ln_cross);
    add(s, "mha_dropout", test_mha_dropout);
    add(s, "sinusoidal", test_sinusoidal);
    add(s, "block_gradcheck", test_block_gradcheck);
    add(s, "gpt_param_gradients", test_gpt_param_gradients);
    add(s, "gpt_matches_pytorch", test_gpt_matches_pytorch);
    add(s, "gpt_checkpoint_keys", test_gpt_checkpoint_keys);
    add(s, "cached_generation", test_cached_generation_equals_uncached);
    add(s, "cached_step_cost", test_cached_step_cost_linear);
    add(s, "training_needs_attention", test_training_needs_attention);
    add(s, "errors", test_errors);
    return clg_test_run(s);
}
