/* A character-level language model on Tiny Shakespeare (or any text: --data FILE): embedding
 * -> LSTM (or RNN, GRU) -> linear readout to the text's byte vocabulary, trained on random
 * windows with AdamW, then --generate samples text from its checkpoint one character at a time
 * with the recurrent state kept on the device between steps. The recipe matches
 * tools/char_lm_torch.py, its PyTorch reference. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/train_cli.h"

#define PROGRAM "char_lm"
#define MAX_VOCAB 256

typedef struct lm_flags {
    const char *data, *device, *log, *checkpoint, *prompt;
    const char *cell;
    int iters, batch, block, hidden, layers, embed, eval_interval, eval_windows;
    float lr;
    uint64_t seed;
    long generate; /* -1: train */
    float temperature;
    int top_k;
    bool freeze_hh;
} lm_flags;

/* The model's shape, as the checkpoint records it so that --generate can rebuild it. */
typedef struct lm_config {
    clg_cell_kind cell;
    int64_t vocab, embed, hidden;
    int layers;
    unsigned char chars[MAX_VOCAB]; /* id -> byte, ascending */
    int id_of[256];                 /* byte -> id, -1 when absent */
} lm_config;

typedef struct lm_model {
    lm_config cfg;
    clg_param *embed;
    clg_rnn rnn;
    clg_linear head;
} lm_model;

static int fail(const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, clg_last_error());
    return 1;
}

/* ---- flags ---- */

static void usage(FILE *out) {
    fprintf(out,
            "usage: " PROGRAM " [--data FILE] [--cell rnn|lstm|gru] [--iters N] [--batch N]\n"
            "       [--block N] [--embed N] [--hidden N] [--layers N] [--lr X] [--seed N]\n"
            "       [--eval-interval N] [--eval-windows N] [--device SPEC] [--log FILE]\n"
            "       [--checkpoint FILE] [--freeze-hh]\n"
            "   or: " PROGRAM " --generate N [--prompt TEXT] [--temperature X] [--top-k K]\n"
            "       [--seed N] [--checkpoint FILE] [--device SPEC]\n"
            "  --checkpoint FILE  training writes it (at every evaluation), --generate reads it\n"
            "                     (default " PROGRAM ".safetensors)\n"
            "  --freeze-hh        an ablation: every weight_hh zero and frozen (no learned\n"
            "                     recurrence)\n"
            "  --temperature 0    greedy decoding (argmax)\n");
}

static int usage_error(const char *flag, const char *value) {
    fprintf(stderr, PROGRAM ": %s: '%s' is not valid\n", flag, value);
    usage(stderr);
    return 2;
}

static bool parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_float(const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo) || !(v <= hi)) return false;
    *out = (float)v;
    return true;
}

typedef struct int_flag {
    const char *name;
    int *value;
    long lo, hi;
} int_flag;

static int parse_flags(lm_flags *f, int argc, char **argv) {
    const int_flag ints[] = {
        {"--iters", &f->iters, 1, 10000000},     {"--batch", &f->batch, 1, 65536},
        {"--block", &f->block, 1, 65536},        {"--hidden", &f->hidden, 1, 65536},
        {"--layers", &f->layers, 1, CLG_RNN_MAX_LAYERS}, {"--embed", &f->embed, 1, 65536},
        {"--eval-interval", &f->eval_interval, 1, 10000000},
        {"--eval-windows", &f->eval_windows, 1, 100000}, {"--top-k", &f->top_k, 0, MAX_VOCAB},
    };
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(a, "--freeze-hh") == 0) {
            f->freeze_hh = true;
            continue;
        }
        if (i + 1 >= argc) return usage_error(a, "(missing)");
        const char *v = argv[++i];
        long n;
        bool known = false;
        for (size_t k = 0; k < sizeof ints / sizeof *ints; ++k) {
            if (strcmp(a, ints[k].name) != 0) continue;
            if (!parse_int(v, ints[k].lo, ints[k].hi, &n)) return usage_error(a, v);
            *ints[k].value = (int)n;
            known = true;
        }
        if (known) continue;
        if (strcmp(a, "--data") == 0) f->data = v;
        else if (strcmp(a, "--device") == 0) f->device = v;
        else if (strcmp(a, "--log") == 0) f->log = v;
        else if (strcmp(a, "--checkpoint") == 0) f->checkpoint = v;
        else if (strcmp(a, "--prompt") == 0) f->prompt = v;
        else if (strcmp(a, "--cell") == 0) {
            if (strcmp(v, "rnn") && strcmp(v, "lstm") && strcmp(v, "gru")) return usage_error(a, v);
            f->cell = v;
        } else if (strcmp(a, "--lr") == 0) {
            if (!parse_float(v, 1e-9, 100.0, &f->lr)) return usage_error(a, v);
        } else if (strcmp(a, "--temperature") == 0) {
            if (!parse_float(v, 0.0, 1e6, &f->temperature)) return usage_error(a, v);
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_int(v, 0, 0x7FFFFFFFL, &n)) return usage_error(a, v);
            f->seed = (uint64_t)n;
        } else if (strcmp(a, "--generate") == 0) {
            if (!parse_int(v, 0, 100000000L, &f->generate)) return usage_error(a, v);
        } else {
            fprintf(stderr, PROGRAM ": unknown flag '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    return 0;
}

static clg_cell_kind cell_kind(const char *name) {
    if (strcmp(name, "rnn") == 0) return CLG_CELL_RNN_TANH;
    if (strcmp(name, "gru") == 0) return CLG_CELL_GRU;
    return CLG_CELL_LSTM;
}

static const char *cell_name(clg_cell_kind cell) {
    return cell == CLG_CELL_RNN_TANH ? "rnn" : cell == CLG_CELL_GRU ? "gru" : "lstm";
}

/* ---- text and vocabulary ---- */

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "error: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    bool ok = true;
    while (ok) {
        if (n == cap) {
            unsigned char *b = realloc(buf, cap = cap ? cap * 2 : (size_t)1 << 20);
            if (!b) {
                ok = false;
                break;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    ok = ok && !ferror(fp);
    fclose(fp);
    if (!ok) {
        fprintf(stderr, "error: reading %s failed\n", path);
        free(buf);
        return NULL;
    }
    *size = n;
    return buf;
}

static void vocab_index(lm_config *c) {
    for (int b = 0; b < 256; ++b) c->id_of[b] = -1;
    for (int64_t i = 0; i < c->vocab; ++i) c->id_of[c->chars[i]] = (int)i;
}

/* The distinct bytes of text, ascending. */
static void vocab_build(lm_config *c, const unsigned char *text, size_t n) {
    bool seen[256] = {false};
    for (size_t i = 0; i < n; ++i) seen[text[i]] = true;
    c->vocab = 0;
    for (int b = 0; b < 256; ++b)
        if (seen[b]) c->chars[c->vocab++] = (unsigned char)b;
    vocab_index(c);
}

/* The vocabulary as hex (metadata must be UTF-8; any byte text must survive the trip). */
static void vocab_hex(const lm_config *c, char *out) {
    for (int64_t i = 0; i < c->vocab; ++i) sprintf(out + 2 * i, "%02x", c->chars[i]);
    out[2 * c->vocab] = '\0';
}

static bool vocab_from_hex(lm_config *c, const char *hex) {
    size_t len = hex ? strlen(hex) : 0;
    if (len == 0 || len % 2 || len / 2 > MAX_VOCAB) return false;
    c->vocab = (int64_t)(len / 2);
    for (int64_t i = 0; i < c->vocab; ++i) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return false;
        c->chars[i] = (unsigned char)v;
        if (i > 0 && c->chars[i] <= c->chars[i - 1]) return false;
    }
    vocab_index(c);
    return true;
}

/* splitmix64: the host's window positions, reproducible from --seed. */
static uint64_t next_random(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Random windows of ids (length T + 1) from split into time-first inputs x [T, B] and targets
 * y [T, B] (the next character of each position). */
static void fill_windows(const int32_t *split, int64_t n, int T, int B, uint64_t *rng, int32_t *x,
                         int32_t *y) {
    for (int b = 0; b < B; ++b) {
        int64_t start = (int64_t)(next_random(rng) % (uint64_t)(n - T));
        for (int t = 0; t < T; ++t) {
            x[(int64_t)t * B + b] = split[start + t];
            y[(int64_t)t * B + b] = split[start + t + 1];
        }
    }
}

/* ---- the model ---- */

static clg_status model_init(clg_context *ctx, lm_model *m, uint64_t seed, bool freeze_hh) {
    const lm_config *c = &m->cfg;
    m->embed = clg_param_new(ctx, "embed.weight", CLG_F32, 2, (int64_t[]){c->vocab, c->embed});
    if (!m->embed) return CLG_ERR_INVALID_ARGUMENT;
    /* torch.nn.Embedding's N(0, 1) */
    clg_status st = clg_init_normal(m->embed, 0.0f, 1.0f, seed);
    clg_rnn_config rc = {.cell = c->cell, .input_size = c->embed, .hidden_size = c->hidden,
                         .num_layers = c->layers};
    if (st == CLG_OK) st = clg_rnn_init(ctx, &m->rnn, "rnn", &rc, seed + 1);
    if (st == CLG_OK) st = clg_linear_init(ctx, &m->head, "head", c->hidden, c->vocab, true, seed + 2);
    for (int l = 0; st == CLG_OK && freeze_hh && l < c->layers; ++l) {
        st = clg_init_zeros(m->rnn.weight_hh[l][0]);
        clg_param_set_requires_grad(m->rnn.weight_hh[l][0], false);
    }
    return st;
}

/* ids [T, B] i32 -> logits [T, B, V]; initial and final as clg_rnn_forward's. */
static clg_tensor *model_forward(clg_graph *g, const lm_model *m, clg_tensor *ids,
                                 const clg_rnn_state *initial, clg_rnn_state *final) {
    clg_tensor *e = clg_embedding(g, clg_param_tensor(g, m->embed), ids); /* [T, B, E] */
    clg_tensor *h = clg_rnn_forward(g, &m->rnn, e, initial, NULL, false, 0, final);
    return clg_linear_forward(g, &m->head, h);
}

/* A plan computing the mean cross-entropy of windows [T, B] (ids x, targets y). With opt, the
 * graph also trains (backward and the optimizer's update); without, it only evaluates. */
typedef struct loss_plan {
    clg_graph *g;
    clg_plan *p;
    clg_tensor *x, *y, *loss;
} loss_plan;

static clg_status loss_plan_build(clg_context *ctx, const lm_model *m, int T, int B,
                                  clg_optimizer *opt, loss_plan *lp) {
    const int64_t shape[2] = {T, B};
    lp->g = clg_graph_new(ctx);
    lp->x = clg_input(lp->g, "x", CLG_I32, 2, shape);
    lp->y = clg_input(lp->g, "y", CLG_I32, 2, shape);
    clg_tensor *logits = model_forward(lp->g, m, lp->x, NULL, NULL);
    lp->loss = clg_cross_entropy(lp->g, logits, lp->y, CLG_REDUCTION_MEAN);
    clg_status st = clg_graph_output(lp->g, lp->loss);
    if (st == CLG_OK && opt) st = clg_backward(lp->g, lp->loss);
    if (st == CLG_OK && opt) st = clg_optimizer_apply(opt, lp->g, NULL);
    if (st == CLG_OK) st = clg_graph_compile(lp->g, NULL, &lp->p);
    return st;
}

static void loss_plan_free(loss_plan *lp) {
    clg_plan_free(lp->p);
    clg_graph_free(lp->g);
}

static clg_status loss_plan_run(loss_plan *lp, const int32_t *x, const int32_t *y, size_t bytes,
                                float *loss) {
    clg_status st = clg_plan_write(lp->p, lp->x, x, bytes);
    if (st == CLG_OK) st = clg_plan_write(lp->p, lp->y, y, bytes);
    if (st == CLG_OK) st = clg_plan_run(lp->p);
    if (st == CLG_OK) st = clg_plan_read(lp->p, lp->loss, loss, sizeof *loss);
    return st;
}

/* ---- training ---- */

typedef struct trainer {
    const lm_flags *f;
    lm_model m;
    clg_context *ctx;
    clg_optimizer *opt;
    int32_t *ids;
    int64_t n_train, n_val;
    loss_plan train, eval;
    int32_t *tx, *ty, *ex_train, *ey_train, *ex_val, *ey_val;
    FILE *log;
} trainer;

/* The checkpoint's own record: the model's shape and vocabulary (for --generate) and the
 * recipe that trained it. */
static int save_checkpoint(trainer *s, int64_t step, double val_loss) {
    const lm_flags *f = s->f;
    const lm_config *c = &s->m.cfg;
    char hex[2 * MAX_VOCAB + 1], text[12][32];
    vocab_hex(c, hex);
    snprintf(text[0], sizeof text[0], "%lld", (long long)c->embed);
    snprintf(text[1], sizeof text[1], "%lld", (long long)c->hidden);
    snprintf(text[2], sizeof text[2], "%d", c->layers);
    snprintf(text[3], sizeof text[3], "%d", f->iters);
    snprintf(text[4], sizeof text[4], "%d", f->batch);
    snprintf(text[5], sizeof text[5], "%d", f->block);
    snprintf(text[6], sizeof text[6], "%.9g", (double)f->lr);
    snprintf(text[7], sizeof text[7], "%llu", (unsigned long long)f->seed);
    snprintf(text[8], sizeof text[8], "%lld", (long long)step);
    snprintf(text[9], sizeof text[9], "%.6f", val_loss);
    const clg_checkpoint_entry meta[] = {
        {"char_lm.vocab_hex", hex},    {"char_lm.cell", cell_name(c->cell)},
        {"char_lm.embed", text[0]},    {"char_lm.hidden", text[1]},
        {"char_lm.layers", text[2]},   {"char_lm.iters", text[3]},
        {"char_lm.batch", text[4]},    {"char_lm.block", text[5]},
        {"char_lm.lr", text[6]},       {"char_lm.seed", text[7]},
        {"char_lm.step", text[8]},     {"char_lm.val_loss", text[9]},
        {"char_lm.data", f->data},     {"char_lm.freeze_hh", f->freeze_hh ? "1" : "0"},
    };
    if (clg_checkpoint_save_meta(s->ctx, f->checkpoint, s->opt, meta, sizeof meta / sizeof *meta) !=
        CLG_OK)
        return fail("saving the checkpoint");
    return 0;
}

/* Mean cross-entropy of the fixed evaluation windows of both splits (one forward-only run
 * each). */
static clg_status evaluate(trainer *s, double *train_loss, double *val_loss) {
    size_t bytes = (size_t)s->f->block * (size_t)s->f->eval_windows * sizeof(int32_t);
    float a = 0.0f, b = 0.0f;
    clg_status st = loss_plan_run(&s->eval, s->ex_train, s->ey_train, bytes, &a);
    if (st == CLG_OK) st = loss_plan_run(&s->eval, s->ex_val, s->ey_val, bytes, &b);
    *train_loss = a;
    *val_loss = b;
    return st;
}

static int load_text(trainer *s) {
    const lm_flags *f = s->f;
    size_t n = 0;
    unsigned char *text = read_file(f->data, &n);
    if (!text) return 1;
    int64_t n_train = (int64_t)(n * 9 / 10);
    if (n_train < f->block + 2 || (int64_t)n - n_train < f->block + 2) {
        fprintf(stderr, "error: %s has %zu bytes: too short for windows of %d characters in both "
                        "splits (90%% / 10%%)\n", f->data, n, f->block + 1);
        free(text);
        return 1;
    }
    vocab_build(&s->m.cfg, text, n);
    s->ids = malloc(n * sizeof *s->ids);
    if (!s->ids) {
        free(text);
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; ++i) s->ids[i] = s->m.cfg.id_of[text[i]];
    free(text);
    s->n_train = n_train;
    s->n_val = (int64_t)n - n_train;
    printf("data: %s, %zu bytes, vocabulary of %lld bytes; %lld training, %lld validation "
           "characters\n",
           f->data, n, (long long)s->m.cfg.vocab, (long long)s->n_train, (long long)s->n_val);
    return 0;
}

static int alloc_windows(trainer *s) {
    const lm_flags *f = s->f;
    size_t tb = (size_t)f->block * (size_t)f->batch, te = (size_t)f->block * (size_t)f->eval_windows;
    s->tx = malloc(tb * sizeof(int32_t));
    s->ty = malloc(tb * sizeof(int32_t));
    s->ex_train = malloc(te * sizeof(int32_t));
    s->ey_train = malloc(te * sizeof(int32_t));
    s->ex_val = malloc(te * sizeof(int32_t));
    s->ey_val = malloc(te * sizeof(int32_t));
    if (!s->tx || !s->ty || !s->ex_train || !s->ey_train || !s->ex_val || !s->ey_val) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    /* The evaluation windows are drawn once, from their own stream, so that every evaluation
     * measures the same characters and the curve shows the model, not the draw. */
    uint64_t rng = f->seed ^ 0x5EED5EED5EEDull;
    fill_windows(s->ids, s->n_train, f->block, f->eval_windows, &rng, s->ex_train, s->ey_train);
    fill_windows(s->ids + s->n_train, s->n_val, f->block, f->eval_windows, &rng, s->ex_val,
                 s->ey_val);
    return 0;
}

static clg_optimizer_config recipe(const lm_flags *f) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAMW);
    c.lr = f->lr;
    c.beta1 = 0.9f;
    c.beta2 = 0.99f;
    c.weight_decay = 0.1f;
    c.clip_norm = 1.0f;
    if (f->iters > 1) {
        c.schedule = CLG_LR_COSINE;
        c.warmup_steps = f->iters > 1000 ? 100 : f->iters / 10;
        c.total_steps = f->iters;
        c.min_lr = f->lr / 10.0f;
    }
    return c;
}

static int train_loop(trainer *s) {
    const lm_flags *f = s->f;
    size_t bytes = (size_t)f->block * (size_t)f->batch * sizeof(int32_t);
    uint64_t rng = f->seed;
    double t_start = now_seconds(), train_time = 0.0, loss_sum = 0.0, last_val = NAN;
    int64_t timed_steps = 0, since_eval = 0;
    progress pr;
    progress_start(&pr, 0, 0, f->iters);
    for (int it = 1; it <= f->iters; ++it) {
        fill_windows(s->ids, s->n_train, f->block, f->batch, &rng, s->tx, s->ty);
        double t0 = now_seconds();
        float loss = 0.0f;
        if (loss_plan_run(&s->train, s->tx, s->ty, bytes, &loss) != CLG_OK) {
            progress_end(&pr);
            fprintf(stderr, "error: training step %d: %s\n", it, clg_last_error());
            return 1;
        }
        if (!isfinite(loss)) {
            progress_end(&pr);
            fprintf(stderr, "error: training step %d: the loss is %s; stopping without saving "
                            "(CLGRAD_CHECK_FINITE=1 finds the op that first produces it)\n",
                    it, isnan(loss) ? "NaN" : "infinite");
            return 1;
        }
        if (it > 1) { /* the first step compiles kernels */
            train_time += now_seconds() - t0;
            timed_steps++;
        }
        loss_sum += loss;
        since_eval++;
        double tps = train_time > 0 ? (double)timed_steps * (double)bytes / 4.0 / train_time : 0.0;
        if (it % 10 == 0 || it == f->iters) {
            char stats[96];
            snprintf(stats, sizeof stats, "loss %.4f  %.0f tokens/s", loss_sum / (double)since_eval,
                     tps);
            progress_update_text(&pr, it, stats);
        }
        if (it % f->eval_interval == 0 || it == f->iters) {
            double tl, vl;
            if (evaluate(s, &tl, &vl) != CLG_OK) {
                progress_end(&pr);
                return fail("evaluating");
            }
            last_val = vl;
            progress_end(&pr);
            printf("step %d: train loss %.4f, val loss %.4f (running train loss %.4f), lr %.3g, "
                   "%.0f tokens/s\n",
                   it, tl, vl, loss_sum / (double)since_eval, (double)clg_optimizer_lr(s->opt), tps);
            fflush(stdout);
            if (s->log)
                fprintf(s->log, "%d,%.6f,%.6f,%.6f,%.8g,%.1f,%.3f\n", it, loss_sum / (double)since_eval,
                        tl, vl, (double)clg_optimizer_lr(s->opt), tps, now_seconds() - t_start);
            if (s->log) fflush(s->log);
            loss_sum = 0.0;
            since_eval = 0;
            if (save_checkpoint(s, it, vl)) return 1;
        }
    }
    progress_end(&pr);
    if (timed_steps > 0)
        printf("training: %lld timed steps, %.2f ms per step, %.0f tokens/s (the first step, "
               "which compiles, and the evaluations excluded); wall time %.1f s\n",
               (long long)timed_steps, 1e3 * train_time / (double)timed_steps,
               (double)timed_steps * (double)bytes / 4.0 / train_time, now_seconds() - t_start);
    printf("checkpoint %s, log %s\n", f->checkpoint, f->log);
    printf("validation loss %.3f\n", last_val);
    return 0;
}

static int train(const lm_flags *f) {
    trainer s = {.f = f};
    int rc = load_text(&s);
    if (rc) return rc;
    rc = alloc_windows(&s);
    lm_config *c = &s.m.cfg;
    c->cell = cell_kind(f->cell);
    c->embed = f->embed;
    c->hidden = f->hidden;
    c->layers = f->layers;
    if (rc == 0 && clg_context_create(f->device, &s.ctx) != CLG_OK) rc = fail("opening the device");
    if (rc == 0) {
        const clg_device_info *dev = clg_context_device(s.ctx);
        printf("device: %s (%s)\n", dev->name, dev->platform_name);
        clg_optimizer_config oc = recipe(f);
        s.opt = clg_optimizer_new(s.ctx, &oc);
        if (!s.opt || model_init(s.ctx, &s.m, f->seed, f->freeze_hh) != CLG_OK)
            rc = fail("creating the model");
    }
    if (rc == 0 && (loss_plan_build(s.ctx, &s.m, f->block, f->batch, s.opt, &s.train) != CLG_OK ||
                    loss_plan_build(s.ctx, &s.m, f->block, f->eval_windows, NULL, &s.eval) != CLG_OK))
        rc = fail("building the model");
    if (rc == 0) {
        printf("model: embedding %lld -> %s %d x %lld%s -> linear %lld; AdamW lr %g, batch %d, "
               "windows of %d, %d iterations, seed %llu; %zu kernels per training step\n",
               (long long)c->embed, cell_name(c->cell), c->layers, (long long)c->hidden,
               f->freeze_hh ? " (weight_hh frozen at 0)" : "", (long long)c->vocab, (double)f->lr,
               f->batch, f->block, f->iters, (unsigned long long)f->seed,
               clg_plan_kernel_count(s.train.p));
        s.log = fopen(f->log, "w");
        if (!s.log) {
            fprintf(stderr, "error: cannot write the log %s\n", f->log);
            rc = 1;
        } else {
            fprintf(s.log, "step,running_train_loss,train_loss,val_loss,lr,tokens_per_s,seconds\n");
            rc = train_loop(&s);
            fclose(s.log);
        }
    }
    loss_plan_free(&s.train);
    loss_plan_free(&s.eval);
    clg_context_free(s.ctx);
    free(s.ids);
    free(s.tx);
    free(s.ty);
    free(s.ex_train);
    free(s.ey_train);
    free(s.ex_val);
    free(s.ey_val);
    return rc;
}

/* ---- generation ---- */

static bool meta_int(const clg_checkpoint_info *info, const char *key, long lo, long hi, long *out) {
    const char *v = clg_checkpoint_info_get(info, key);
    return v && parse_int(v, lo, hi, out);
}

/* The model's shape and vocabulary from the checkpoint's record. */
static int read_config(const char *path, lm_config *c) {
    clg_checkpoint_info *info = NULL;
    if (clg_checkpoint_info_read(path, &info) != CLG_OK) return fail("reading the checkpoint");
    long embed, hidden, layers;
    const char *cell = clg_checkpoint_info_get(info, "char_lm.cell");
    bool ok = cell && vocab_from_hex(c, clg_checkpoint_info_get(info, "char_lm.vocab_hex")) &&
              meta_int(info, "char_lm.embed", 1, 65536, &embed) &&
              meta_int(info, "char_lm.hidden", 1, 65536, &hidden) &&
              meta_int(info, "char_lm.layers", 1, CLG_RNN_MAX_LAYERS, &layers);
    if (ok) {
        c->cell = cell_kind(cell);
        c->embed = embed;
        c->hidden = hidden;
        c->layers = (int)layers;
    }
    clg_checkpoint_info_free(info);
    if (!ok) {
        fprintf(stderr, "error: %s: no char_lm record (vocabulary and model shape) in its "
                        "metadata; it was not written by " PROGRAM "\n", path);
        return 1;
    }
    return 0;
}

/* The recurrent state between runs lives in parameters (made after the checkpoint is loaded,
 * so it does not expect them), updated in place by clg_assign: no state crosses to the host. */
typedef struct generator {
    lm_model m;
    clg_param *h, *c, *token;
    clg_graph *pg, *sg;
    clg_plan *pp, *sp;
    clg_tensor *prompt_x, *prompt_next, *step_next;
} generator;

/* One character from logits [1, 1, V] -> [1, 1] i32. */
static clg_tensor *pick(clg_graph *g, clg_tensor *logits, const lm_flags *f, uint64_t seed) {
    clg_tensor *k = f->temperature == 0.0f ? clg_argmax(g, logits, 2, true)
                                           : clg_multinomial(g, logits, f->temperature, f->top_k, seed);
    return clg_reshape(g, k, 2, (int64_t[]){1, 1});
}

/* ids [T, 1] -> the next character, with the state read from and written back to the state
 * parameters. */
static clg_tensor *gen_step(clg_graph *g, generator *gen, clg_tensor *ids, const lm_flags *f,
                            uint64_t seed) {
    clg_rnn_state init = {clg_param_tensor(g, gen->h), gen->c ? clg_param_tensor(g, gen->c) : NULL};
    clg_rnn_state fin = {0};
    clg_tensor *logits = model_forward(g, &gen->m, ids, &init, &fin); /* [T, 1, V] */
    int64_t T = clg_tensor_dim(logits, 0);
    clg_tensor *next = pick(g, clg_slice(g, logits, 0, T - 1, T, 1), f, seed);
    clg_assign(g, gen->h, fin.h);
    if (gen->c) clg_assign(g, gen->c, fin.c);
    clg_assign(g, gen->token, next);
    clg_graph_output(g, next);
    return next;
}

static clg_status gen_build(clg_context *ctx, generator *gen, int64_t prompt_len, const lm_flags *f) {
    const lm_config *c = &gen->m.cfg;
    const int64_t state[3] = {c->layers, 1, c->hidden}, one[2] = {1, 1};
    gen->h = clg_param_new(ctx, "gen.h", CLG_F32, 3, state);
    if (c->cell == CLG_CELL_LSTM) gen->c = clg_param_new(ctx, "gen.c", CLG_F32, 3, state);
    gen->token = clg_param_new(ctx, "gen.token", CLG_I32, 2, one);
    if (!gen->h || (c->cell == CLG_CELL_LSTM && !gen->c) || !gen->token)
        return CLG_ERR_INVALID_ARGUMENT;
    clg_param_set_requires_grad(gen->h, false);
    if (gen->c) clg_param_set_requires_grad(gen->c, false);
    clg_param_set_requires_grad(gen->token, false);
    clg_status st = clg_init_zeros(gen->h);
    if (st == CLG_OK && gen->c) st = clg_init_zeros(gen->c);
    if (st == CLG_OK) st = clg_init_zeros(gen->token);
    if (st != CLG_OK) return st;
    /* the prompt, once: a plan over its whole length */
    gen->pg = clg_graph_new(ctx);
    gen->prompt_x = clg_input(gen->pg, "prompt", CLG_I32, 2, (int64_t[]){prompt_len, 1});
    gen->prompt_next = gen_step(gen->pg, gen, gen->prompt_x, f, f->seed);
    st = clg_graph_compile(gen->pg, NULL, &gen->pp);
    if (st != CLG_OK) return st;
    /* then one character per run, fed from the token parameter the last run wrote */
    gen->sg = clg_graph_new(ctx);
    gen->step_next = gen_step(gen->sg, gen, clg_param_tensor(gen->sg, gen->token), f, f->seed + 1);
    return clg_graph_compile(gen->sg, NULL, &gen->sp);
}

static int emit(generator *gen, clg_plan *p, clg_tensor *next) {
    int32_t id = -1;
    if (clg_plan_read(p, next, &id, sizeof id) != CLG_OK) return fail("sampling");
    if (id < 0 || id >= gen->m.cfg.vocab) {
        fprintf(stderr, "\nerror: sampled %d, outside the vocabulary (NaN logits?)\n", (int)id);
        return 1;
    }
    putchar(gen->m.cfg.chars[id]);
    fflush(stdout);
    return 0;
}

static int generate(const lm_flags *f) {
    generator gen = {0};
    lm_config *c = &gen.m.cfg;
    if (read_config(f->checkpoint, c)) return 1;
    char def_prompt[2] = {c->id_of['\n'] >= 0 ? '\n' : (char)c->chars[0], '\0'};
    const char *prompt = f->prompt && *f->prompt ? f->prompt : def_prompt;
    size_t plen = strlen(prompt);
    int32_t *ids = malloc(plen * sizeof *ids);
    if (!ids) return 1;
    for (size_t i = 0; i < plen; ++i) {
        ids[i] = c->id_of[(unsigned char)prompt[i]];
        if (ids[i] < 0) {
            fprintf(stderr, "error: --prompt: byte 0x%02x ('%c') is not in the model's vocabulary\n",
                    (unsigned char)prompt[i], prompt[i]);
            free(ids);
            return 2;
        }
    }
    clg_context *ctx = NULL;
    int rc = 0;
    if (clg_context_create(f->device, &ctx) != CLG_OK) rc = fail("opening the device");
    if (rc == 0 && model_init(ctx, &gen.m, 0, false) != CLG_OK) rc = fail("creating the model");
    if (rc == 0 && clg_checkpoint_load(ctx, f->checkpoint, NULL) != CLG_OK)
        rc = fail("loading the checkpoint");
    if (rc == 0 && gen_build(ctx, &gen, (int64_t)plen, f) != CLG_OK) rc = fail("building the model");
    if (rc == 0) {
        fprintf(stderr, "%s: %s %d x %lld, vocabulary %lld; temperature %g, top-k %d, seed %llu\n",
                f->checkpoint, cell_name(c->cell), c->layers, (long long)c->hidden,
                (long long)c->vocab, (double)f->temperature, f->top_k,
                (unsigned long long)f->seed);
        fwrite(prompt, 1, plen, stdout);
        double t0 = now_seconds(), t1 = t0;
        if (f->generate > 0) {
            if (clg_plan_write(gen.pp, gen.prompt_x, ids, plen * sizeof *ids) != CLG_OK ||
                clg_plan_run(gen.pp) != CLG_OK)
                rc = fail("reading the prompt");
            if (rc == 0) rc = emit(&gen, gen.pp, gen.prompt_next);
            t1 = now_seconds();
        }
        for (long i = 1; rc == 0 && i < f->generate; ++i) {
            if (clg_plan_run(gen.sp) != CLG_OK) rc = fail("sampling");
            if (rc == 0) rc = emit(&gen, gen.sp, gen.step_next);
        }
        putchar('\n');
        fflush(stdout);
        double t2 = now_seconds();
        if (rc == 0 && f->generate > 1)
            fprintf(stderr, "generated %ld characters: the prompt's run %.3f s, then %.0f "
                            "tokens/s (the first step compiles)\n",
                    f->generate, t1 - t0, (double)(f->generate - 1) / (t2 - t1));
    }
    clg_plan_free(gen.pp);
    clg_plan_free(gen.sp);
    clg_graph_free(gen.pg);
    clg_graph_free(gen.sg);
    clg_context_free(ctx);
    free(ids);
    return rc;
}

int main(int argc, char **argv) {
    /* The recipe of the PyTorch reference (tools/char_lm_torch.py). */
    lm_flags f = {.data = CLG_EXAMPLES_DATA_DIR "/tinyshakespeare/input.txt",
                  .cell = "lstm",
                  .iters = 2000,
                  .batch = 12,
                  .block = 64,
                  .hidden = 256,
                  .layers = 2,
                  .embed = 128,
                  .eval_interval = 500,
                  .eval_windows = 200,
                  .lr = 1e-3f,
                  .seed = 1,
                  .generate = -1,
                  .temperature = 1.0f,
                  .log = PROGRAM "_log.csv",
                  .checkpoint = PROGRAM ".safetensors"};
    int rc = parse_flags(&f, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    return f.generate >= 0 ? generate(&f) : train(&f);
}
