/* The character language models' shared pieces (char_text.h). */
#include "common/char_text.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/train_cli.h"

/* ---- vocabulary ---- */

static void vocab_index(char_vocab *v) {
    for (int b = 0; b < 256; ++b)
        v->id_of[b] = -1;
    for (int64_t i = 0; i < v->size; ++i)
        v->id_of[v->chars[i]] = (int)i;
}

void char_vocab_build(char_vocab *v, const unsigned char *text, size_t n) {
    bool seen[256] = {false};
    for (size_t i = 0; i < n; ++i)
        seen[text[i]] = true;
    v->size = 0;
    for (int b = 0; b < 256; ++b)
        if (seen[b]) v->chars[v->size++] = (unsigned char)b;
    vocab_index(v);
}

void char_vocab_hex(const char_vocab *v, char *out) {
    for (int64_t i = 0; i < v->size; ++i)
        sprintf(out + 2 * i, "%02x", v->chars[i]);
    out[2 * v->size] = '\0';
}

bool char_vocab_from_hex(char_vocab *v, const char *hex) {
    size_t len = hex ? strlen(hex) : 0;
    if (len == 0 || len % 2 || len / 2 > CHAR_MAX_VOCAB) return false;
    v->size = (int64_t)(len / 2);
    for (int64_t i = 0; i < v->size; ++i) {
        unsigned b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1) return false;
        v->chars[i] = (unsigned char)b;
        if (i > 0 && v->chars[i] <= v->chars[i - 1]) return false;
    }
    vocab_index(v);
    return true;
}

bool char_vocab_encode(const char_vocab *v, const char *prompt, int32_t *ids) {
    for (size_t i = 0; prompt[i]; ++i) {
        ids[i] = v->id_of[(unsigned char)prompt[i]];
        if (ids[i] < 0) {
            fprintf(stderr,
                    "error: --prompt: byte 0x%02x ('%c') is not in the model's vocabulary\n",
                    (unsigned char)prompt[i], prompt[i]);
            return false;
        }
    }
    return true;
}

/* ---- the text ---- */

unsigned char *char_read_file(const char *path, size_t *size) {
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

int char_corpus_load(char_corpus *c, const char *path, int block) {
    memset(c, 0, sizeof *c);
    size_t n = 0;
    unsigned char *text = char_read_file(path, &n);
    if (!text) return 1;
    int64_t n_train = (int64_t)(n * 9 / 10);
    if (n_train < block + 2 || (int64_t)n - n_train < block + 2) {
        fprintf(stderr,
                "error: %s has %zu bytes: too short for windows of %d characters in both "
                "splits (90%% / 10%%)\n",
                path, n, block + 1);
        free(text);
        return 1;
    }
    char_vocab_build(&c->vocab, text, n);
    c->ids = malloc(n * sizeof *c->ids);
    if (!c->ids) {
        free(text);
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; ++i)
        c->ids[i] = c->vocab.id_of[text[i]];
    free(text);
    c->n_train = n_train;
    c->n_val = (int64_t)n - n_train;
    printf("data: %s, %zu bytes, vocabulary of %lld bytes; %lld training, %lld validation "
           "characters\n",
           path, n, (long long)c->vocab.size, (long long)c->n_train, (long long)c->n_val);
    return 0;
}

void char_corpus_free(char_corpus *c) {
    free(c->ids);
    c->ids = NULL;
}

uint64_t char_next_random(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void char_fill_windows(const int32_t *split, int64_t n, int T, int B, uint64_t *rng,
                       bool time_first, int32_t *x, int32_t *y) {
    for (int b = 0; b < B; ++b) {
        int64_t start = (int64_t)(char_next_random(rng) % (uint64_t)(n - T));
        for (int t = 0; t < T; ++t) {
            int64_t at = time_first ? (int64_t)t * B + b : (int64_t)b * T + t;
            x[at] = split[start + t];
            y[at] = split[start + t + 1];
        }
    }
}

/* ---- flags ---- */

bool char_parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool char_parse_float(const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo) || !(v <= hi)) return false;
    *out = (float)v;
    return true;
}

/* ---- loss plans ---- */

clg_status char_loss_plan_build(clg_context *ctx, char_forward_fn forward, const void *model,
                                const int64_t shape[2], clg_optimizer *opt, char_loss_plan *lp) {
    lp->g = clg_graph_new(ctx);
    lp->x = clg_input(lp->g, "x", CLG_I32, 2, shape);
    lp->y = clg_input(lp->g, "y", CLG_I32, 2, shape);
    clg_tensor *logits = forward(lp->g, model, lp->x, opt != NULL);
    lp->loss = clg_cross_entropy(lp->g, logits, lp->y, CLG_REDUCTION_MEAN);
    clg_status st = clg_graph_output(lp->g, lp->loss);
    if (st == CLG_OK && opt) st = clg_backward(lp->g, lp->loss);
    if (st == CLG_OK && opt) st = clg_optimizer_apply(opt, lp->g, NULL);
    if (st == CLG_OK) st = clg_graph_compile(lp->g, NULL, &lp->p);
    return st;
}

void char_loss_plan_free(char_loss_plan *lp) {
    clg_plan_free(lp->p);
    clg_graph_free(lp->g);
    lp->p = NULL;
    lp->g = NULL;
}

clg_status char_loss_plan_run(char_loss_plan *lp, const int32_t *x, const int32_t *y, float *loss) {
    size_t bytes = (size_t)clg_tensor_numel(lp->x) * sizeof *x;
    clg_status st = clg_plan_write(lp->p, lp->x, x, bytes);
    if (st == CLG_OK) st = clg_plan_write(lp->p, lp->y, y, bytes);
    if (st == CLG_OK) st = clg_plan_run(lp->p);
    if (st == CLG_OK) st = clg_plan_read(lp->p, lp->loss, loss, sizeof *loss);
    return st;
}

/* ---- the training loop ---- */

typedef struct windows {
    int32_t *tx, *ty, *ex_train, *ey_train, *ex_val, *ey_val;
} windows;

static void windows_free(windows *w) {
    free(w->tx);
    free(w->ty);
    free(w->ex_train);
    free(w->ey_train);
    free(w->ex_val);
    free(w->ey_val);
}

static int windows_alloc(const char_trainer *t, windows *w) {
    size_t tb = (size_t)t->block * (size_t)t->batch,
           te = (size_t)t->block * (size_t)t->eval_windows;
    w->tx = malloc(tb * sizeof(int32_t));
    w->ty = malloc(tb * sizeof(int32_t));
    w->ex_train = malloc(te * sizeof(int32_t));
    w->ey_train = malloc(te * sizeof(int32_t));
    w->ex_val = malloc(te * sizeof(int32_t));
    w->ey_val = malloc(te * sizeof(int32_t));
    if (!w->tx || !w->ty || !w->ex_train || !w->ey_train || !w->ex_val || !w->ey_val) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    const char_corpus *c = t->corpus;
    uint64_t rng = t->seed ^ 0x5EED5EED5EEDull;
    char_fill_windows(c->ids, c->n_train, t->block, t->eval_windows, &rng, t->time_first,
                      w->ex_train, w->ey_train);
    char_fill_windows(c->ids + c->n_train, c->n_val, t->block, t->eval_windows, &rng, t->time_first,
                      w->ex_val, w->ey_val);
    return 0;
}

static int fail(const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, clg_last_error());
    return 1;
}

static int train_loop(char_trainer *t, windows *w, FILE *log) {
    size_t tokens = (size_t)t->block * (size_t)t->batch;
    uint64_t rng = t->seed;
    double t_start = now_seconds(), train_time = 0.0, loss_sum = 0.0, last_val = NAN;
    int64_t timed_steps = 0, since_eval = 0;
    const char_corpus *c = t->corpus;
    progress pr;
    progress_start(&pr, 0, 0, t->iters);
    for (int it = 1; it <= t->iters; ++it) {
        char_fill_windows(c->ids, c->n_train, t->block, t->batch, &rng, t->time_first, w->tx,
                          w->ty);
        double t0 = now_seconds();
        float loss = 0.0f;
        if (char_loss_plan_run(&t->train, w->tx, w->ty, &loss) != CLG_OK) {
            progress_end(&pr);
            fprintf(stderr, "error: training step %d: %s\n", it, clg_last_error());
            return 1;
        }
        if (!isfinite(loss)) {
            progress_end(&pr);
            fprintf(stderr,
                    "error: training step %d: the loss is %s; stopping without saving "
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
        double tps = train_time > 0 ? (double)timed_steps * (double)tokens / train_time : 0.0;
        if (it % 10 == 0 || it == t->iters) {
            char stats[96];
            snprintf(stats, sizeof stats, "loss %.4f  %.0f tokens/s", loss_sum / (double)since_eval,
                     tps);
            progress_update_text(&pr, it, stats);
        }
        if (it % t->eval_interval == 0 || it == t->iters) {
            float tl = 0.0f, vl = 0.0f;
            if (char_loss_plan_run(&t->eval, w->ex_train, w->ey_train, &tl) != CLG_OK ||
                char_loss_plan_run(&t->eval, w->ex_val, w->ey_val, &vl) != CLG_OK) {
                progress_end(&pr);
                return fail("evaluating");
            }
            last_val = vl;
            progress_end(&pr);
            printf("step %d: train loss %.4f, val loss %.4f (running train loss %.4f), lr %.3g, "
                   "%.0f tokens/s\n",
                   it, (double)tl, (double)vl, loss_sum / (double)since_eval,
                   (double)clg_optimizer_lr(t->opt), tps);
            fflush(stdout);
            fprintf(log, "%d,%.6f,%.6f,%.6f,%.8g,%.1f,%.3f\n", it, loss_sum / (double)since_eval,
                    (double)tl, (double)vl, (double)clg_optimizer_lr(t->opt), tps,
                    now_seconds() - t_start);
            fflush(log);
            loss_sum = 0.0;
            since_eval = 0;
            if (t->save(t->user, it, vl)) return 1;
        }
    }
    progress_end(&pr);
    if (timed_steps > 0)
        printf("training: %lld timed steps, %.2f ms per step, %.0f tokens/s (the first step, "
               "which compiles, and the evaluations excluded); wall time %.1f s\n",
               (long long)timed_steps, 1e3 * train_time / (double)timed_steps,
               (double)timed_steps * (double)tokens / train_time, now_seconds() - t_start);
    printf("checkpoint %s, log %s\n", t->checkpoint, t->log_path);
    printf("validation loss %.3f\n", last_val);
    return 0;
}

int char_train(char_trainer *t) {
    windows w = {0};
    int rc = windows_alloc(t, &w);
    FILE *log = rc ? NULL : fopen(t->log_path, "w");
    if (!rc && !log) {
        fprintf(stderr, "error: cannot write the log %s\n", t->log_path);
        rc = 1;
    }
    if (!rc) {
        fprintf(log, "step,running_train_loss,train_loss,val_loss,lr,tokens_per_s,seconds\n");
        rc = train_loop(t, &w, log);
        fclose(log);
    }
    windows_free(&w);
    return rc;
}

int char_table_flag(const char *flag, const char *value, const char_int_flag *ints, size_t n_ints,
                    const char_float_flag *floats, size_t n_floats) {
    for (size_t k = 0; k < n_ints; ++k) {
        if (strcmp(flag, ints[k].name) != 0) continue;
        long n;
        if (!char_parse_int(value, ints[k].lo, ints[k].hi, &n)) return -1;
        *ints[k].value = (int)n;
        return 1;
    }
    for (size_t k = 0; k < n_floats; ++k) {
        if (strcmp(flag, floats[k].name) != 0) continue;
        return char_parse_float(value, floats[k].lo, floats[k].hi, floats[k].value) ? 1 : -1;
    }
    return 0;
}
