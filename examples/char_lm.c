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

#include "common/char_text.h"
#include "common/train_cli.h"

#define PROGRAM "char_lm"
#define MAX_VOCAB CHAR_MAX_VOCAB

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
    int64_t embed, hidden;
    int layers;
    char_vocab vocab;
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

static int parse_flags(lm_flags *f, int argc, char **argv) {
    const char_int_flag ints[] = {
        {"--iters", &f->iters, 1, 10000000},     {"--batch", &f->batch, 1, 65536},
        {"--block", &f->block, 1, 65536},        {"--hidden", &f->hidden, 1, 65536},
        {"--layers", &f->layers, 1, CLG_RNN_MAX_LAYERS}, {"--embed", &f->embed, 1, 65536},
        {"--eval-interval", &f->eval_interval, 1, 10000000},
        {"--eval-windows", &f->eval_windows, 1, 100000}, {"--top-k", &f->top_k, 0, MAX_VOCAB},
    };
    const char_float_flag floats[] = {
        {"--lr", &f->lr, 1e-9, 100.0},
        {"--temperature", &f->temperature, 0.0, 1e6},
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
        int known = char_table_flag(a, v, ints, sizeof ints / sizeof *ints, floats,
                                    sizeof floats / sizeof *floats);
        if (known < 0) return usage_error(a, v);
        if (known) continue;
        if (strcmp(a, "--data") == 0) f->data = v;
        else if (strcmp(a, "--device") == 0) f->device = v;
        else if (strcmp(a, "--log") == 0) f->log = v;
        else if (strcmp(a, "--checkpoint") == 0) f->checkpoint = v;
        else if (strcmp(a, "--prompt") == 0) f->prompt = v;
        else if (strcmp(a, "--cell") == 0) {
            if (strcmp(v, "rnn") && strcmp(v, "lstm") && strcmp(v, "gru")) return usage_error(a, v);
            f->cell = v;
        } else if (strcmp(a, "--seed") == 0) {
            if (!char_parse_int(v, 0, 0x7FFFFFFFL, &n)) return usage_error(a, v);
            f->seed = (uint64_t)n;
        } else if (strcmp(a, "--generate") == 0) {
            if (!char_parse_int(v, 0, 100000000L, &f->generate)) return usage_error(a, v);
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

/* ---- the model ---- */

static clg_status model_init(clg_context *ctx, lm_model *m, uint64_t seed, bool freeze_hh) {
    const lm_config *c = &m->cfg;
    m->embed = clg_param_new(ctx, "embed.weight", CLG_F32, 2, (int64_t[]){c->vocab.size, c->embed});
    if (!m->embed) return CLG_ERR_INVALID_ARGUMENT;
    /* torch.nn.Embedding's N(0, 1) */
    clg_status st = clg_init_normal(m->embed, 0.0f, 1.0f, seed);
    clg_rnn_config rc = {.cell = c->cell, .input_size = c->embed, .hidden_size = c->hidden,
                         .num_layers = c->layers};
    if (st == CLG_OK) st = clg_rnn_init(ctx, &m->rnn, "rnn", &rc, seed + 1);
    if (st == CLG_OK) st = clg_linear_init(ctx, &m->head, "head", c->hidden, c->vocab.size, true,
                                            seed + 2);
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

/* ---- training ---- */

typedef struct trainer {
    const lm_flags *f;
    lm_model m;
    clg_context *ctx;
    clg_optimizer *opt;
} trainer;

/* The shared loss plans take ids [T, B] (time-first, as the recurrence runs). */
static clg_tensor *forward_ids(clg_graph *g, const void *model, clg_tensor *x, bool training) {
    (void)training;
    return model_forward(g, model, x, NULL, NULL);
}

/* The checkpoint's own record: the model's shape and vocabulary (for --generate) and the
 * recipe that trained it. */
static int save_checkpoint(void *user, int64_t step, double val_loss) {
    trainer *s = user;
    const lm_flags *f = s->f;
    const lm_config *c = &s->m.cfg;
    char hex[2 * MAX_VOCAB + 1], text[10][32];
    char_vocab_hex(&c->vocab, hex);
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

static int train(const lm_flags *f) {
    trainer s = {.f = f};
    char_corpus corpus;
    int rc = char_corpus_load(&corpus, f->data, f->block);
    if (rc) return rc;
    lm_config *c = &s.m.cfg;
    c->vocab = corpus.vocab;
    c->cell = cell_kind(f->cell);
    c->embed = f->embed;
    c->hidden = f->hidden;
    c->layers = f->layers;
    char_trainer t = {.iters = f->iters, .batch = f->batch, .block = f->block,
                      .eval_interval = f->eval_interval, .eval_windows = f->eval_windows,
                      .time_first = true, .seed = f->seed, .log_path = f->log,
                      .checkpoint = f->checkpoint, .corpus = &corpus, .save = save_checkpoint,
                      .user = &s};
    if (clg_context_create(f->device, &s.ctx) != CLG_OK) rc = fail("opening the device");
    if (rc == 0) {
        const clg_device_info *dev = clg_context_device(s.ctx);
        printf("device: %s (%s)\n", dev->name, dev->platform_name);
        clg_optimizer_config oc = recipe(f);
        s.opt = t.opt = clg_optimizer_new(s.ctx, &oc);
        if (!s.opt || model_init(s.ctx, &s.m, f->seed, f->freeze_hh) != CLG_OK)
            rc = fail("creating the model");
    }
    if (rc == 0 && (char_loss_plan_build(s.ctx, forward_ids, &s.m, (int64_t[]){f->block, f->batch},
                                         s.opt, &t.train) != CLG_OK ||
                    char_loss_plan_build(s.ctx, forward_ids, &s.m,
                                         (int64_t[]){f->block, f->eval_windows}, NULL,
                                         &t.eval) != CLG_OK))
        rc = fail("building the model");
    if (rc == 0) {
        printf("model: embedding %lld -> %s %d x %lld%s -> linear %lld; AdamW lr %g, batch %d, "
               "windows of %d, %d iterations, seed %llu; %zu kernels per training step\n",
               (long long)c->embed, cell_name(c->cell), c->layers, (long long)c->hidden,
               f->freeze_hh ? " (weight_hh frozen at 0)" : "", (long long)c->vocab.size,
               (double)f->lr, f->batch, f->block, f->iters, (unsigned long long)f->seed,
               clg_plan_kernel_count(t.train.p));
        rc = char_train(&t);
    }
    char_loss_plan_free(&t.train);
    char_loss_plan_free(&t.eval);
    clg_context_free(s.ctx);
    char_corpus_free(&corpus);
    return rc;
}

/* ---- generation ---- */

static bool meta_int(const clg_checkpoint_info *info, const char *key, long lo, long hi, long *out) {
    const char *v = clg_checkpoint_info_get(info, key);
    return v && char_parse_int(v, lo, hi, out);
}

/* The model's shape and vocabulary from the checkpoint's record. */
static int read_config(const char *path, lm_config *c) {
    clg_checkpoint_info *info = NULL;
    if (clg_checkpoint_info_read(path, &info) != CLG_OK) return fail("reading the checkpoint");
    long embed, hidden, layers;
    const char *cell = clg_checkpoint_info_get(info, "char_lm.cell");
    bool ok = cell && char_vocab_from_hex(&c->vocab, clg_checkpoint_info_get(info, "char_lm.vocab_hex")) &&
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
    if (id < 0 || id >= gen->m.cfg.vocab.size) {
        fprintf(stderr, "\nerror: sampled %d, outside the vocabulary (NaN logits?)\n", (int)id);
        return 1;
    }
    putchar(gen->m.cfg.vocab.chars[id]);
    fflush(stdout);
    return 0;
}

static int generate(const lm_flags *f) {
    generator gen = {0};
    lm_config *c = &gen.m.cfg;
    if (read_config(f->checkpoint, c)) return 1;
    char def_prompt[2] = {c->vocab.id_of['\n'] >= 0 ? '\n' : (char)c->vocab.chars[0], '\0'};
    const char *prompt = f->prompt && *f->prompt ? f->prompt : def_prompt;
    size_t plen = strlen(prompt);
    int32_t *ids = malloc(plen * sizeof *ids);
    if (!ids) return 1;
    if (!char_vocab_encode(&c->vocab, prompt, ids)) {
        free(ids);
        return 2;
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
                (long long)c->vocab.size, (double)f->temperature, f->top_k,
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
