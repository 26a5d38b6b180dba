/* A character-level GPT on Tiny Shakespeare (or any text: --data FILE) with nanoGPT's CPU
 * recipe as the default (config/train_shakespeare_char.py with the README's CPU overrides:
 * 4 layers, 4 heads, 128 dimensions, block 64, batch 12, 2,000 iterations, AdamW lr 1e-3 with
 * 100 warm-up steps and cosine decay to 1e-4, betas 0.9 / 0.99, weight decay 0.1 on every
 * parameter of two or more dimensions, clipping 1.0, dropout 0, no biases as train.py sets).
 * --generate samples from its checkpoint with a KV cache: one compiled plan per new token.
 * tools/gpt_char_torch.py is the same model and recipe in PyTorch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/char_text.h"
#include "common/train_cli.h"

#define PROGRAM "gpt_char"

typedef struct gpt_flags {
    const char *data, *device, *log, *checkpoint, *prompt;
    int iters, batch, block, n_layer, n_head, n_embd, eval_interval, eval_windows, warmup;
    float lr, min_lr, dropout, weight_decay;
    bool bias, freeze_attn;
    uint64_t seed;
    long generate; /* -1: train */
    float temperature;
    int top_k;
} gpt_flags;

static int fail(const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, clg_last_error());
    return 1;
}

/* ---- flags ---- */

static void usage(FILE *out) {
    fprintf(
        out,
        "usage: " PROGRAM " [--data FILE] [--n-layer N] [--n-head N] [--n-embd N]\n"
        "       [--block N] [--batch N] [--iters N] [--dropout P] [--bias] [--lr X]\n"
        "       [--min-lr X] [--warmup N] [--weight-decay X] [--seed N]\n"
        "       [--eval-interval N] [--eval-windows N] [--device SPEC] [--log FILE]\n"
        "       [--checkpoint FILE] [--freeze-attn]\n"
        "   or: " PROGRAM " --generate N [--prompt TEXT] [--temperature X] [--top-k K]\n"
        "       [--seed N] [--checkpoint FILE] [--device SPEC]\n"
        "  --checkpoint FILE  training writes it (at every evaluation), --generate reads it\n"
        "                     (default " PROGRAM ".safetensors)\n"
        "  --freeze-attn      an ablation: every c_attn (the q, k, v projections) frozen at\n"
        "                     its initial N(0, 0.02): the attention cannot learn where to look\n"
        "  --temperature 0    greedy decoding (argmax)\n"
        "  nanoGPT's baby GPU model: --n-layer 6 --n-head 6 --n-embd 384 --block 256\n"
        "                            --batch 64 --dropout 0.2\n");
}

static int usage_error(const char *flag, const char *value) {
    fprintf(stderr, PROGRAM ": %s: '%s' is not valid\n", flag, value);
    usage(stderr);
    return 2;
}

static int parse_flags(gpt_flags *f, int argc, char **argv) {
    const char_int_flag ints[] = {
        {"--iters", &f->iters, 1, 10000000},
        {"--batch", &f->batch, 1, 65536},
        {"--block", &f->block, 1, 65536},
        {"--n-layer", &f->n_layer, 1, 1024},
        {"--n-head", &f->n_head, 1, 1024},
        {"--n-embd", &f->n_embd, 1, 65536},
        {"--eval-interval", &f->eval_interval, 1, 10000000},
        {"--eval-windows", &f->eval_windows, 1, 100000},
        {"--warmup", &f->warmup, 0, 10000000},
        {"--top-k", &f->top_k, 0, CHAR_MAX_VOCAB},
    };
    const char_float_flag floats[] = {
        {"--lr", &f->lr, 1e-9, 100.0},
        {"--min-lr", &f->min_lr, 0.0, 100.0},
        {"--dropout", &f->dropout, 0.0, 0.99},
        {"--weight-decay", &f->weight_decay, 0.0, 100.0},
        {"--temperature", &f->temperature, 0.0, 1e6},
    };
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(a, "--bias") == 0) {
            f->bias = true;
            continue;
        }
        if (strcmp(a, "--freeze-attn") == 0) {
            f->freeze_attn = true;
            continue;
        }
        if (i + 1 >= argc) return usage_error(a, "(missing)");
        const char *v = argv[++i];
        long n;
        int known = char_table_flag(a, v, ints, sizeof ints / sizeof *ints, floats,
                                    sizeof floats / sizeof *floats);
        if (known < 0) return usage_error(a, v);
        if (known) continue;
        if (strcmp(a, "--data") == 0)
            f->data = v;
        else if (strcmp(a, "--device") == 0)
            f->device = v;
        else if (strcmp(a, "--log") == 0)
            f->log = v;
        else if (strcmp(a, "--checkpoint") == 0)
            f->checkpoint = v;
        else if (strcmp(a, "--prompt") == 0)
            f->prompt = v;
        else if (strcmp(a, "--seed") == 0) {
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
    if (f->n_embd % f->n_head) {
        fprintf(stderr, PROGRAM ": --n-embd %d is not a multiple of --n-head %d\n", f->n_embd,
                f->n_head);
        return 2;
    }
    return 0;
}

/* ---- the model ---- */

/* idx [B, T] -> logits [B, T, V] */
static clg_tensor *forward_ids(clg_graph *g, const void *model, clg_tensor *x, bool training) {
    return clg_gpt_forward(g, model, x, training, 0x6770);
}

/* nanoGPT's configure_optimizers: "any parameters that is 2D will be weight decayed, otherwise
 * no", so group 0 (weight decay) takes the matrices and the embeddings (the tied head among
 * them, once), group 1 (none) the layer norms and biases. */
static clg_optimizer *make_optimizer(clg_context *ctx, const gpt_flags *f) {
    clg_optimizer_config c = clg_optimizer_defaults(CLG_OPT_ADAMW);
    c.lr = f->lr;
    c.beta1 = 0.9f;
    c.beta2 = 0.99f;
    c.weight_decay = f->weight_decay;
    c.clip_norm = 1.0f;
    c.schedule = CLG_LR_COSINE;
    c.warmup_steps = f->warmup < f->iters ? f->warmup : 0;
    c.total_steps = f->iters;
    c.min_lr = f->min_lr;
    clg_optimizer *opt = clg_optimizer_new(ctx, &c);
    if (!opt) return NULL;
    size_t n = clg_param_count(ctx), k = 0;
    clg_param **nodecay = malloc((n ? n : 1) * sizeof *nodecay);
    if (!nodecay) return NULL;
    for (size_t i = 0; i < n; ++i) {
        clg_param *p = clg_param_at(ctx, i);
        if (clg_param_requires_grad(p) && clg_param_ndim(p) < 2) nodecay[k++] = p;
    }
    clg_optimizer_config nd = c;
    nd.weight_decay = 0.0f;
    clg_status st = clg_optimizer_add_group(opt, nodecay, k, &nd, NULL);
    free(nodecay);
    return st == CLG_OK ? opt : NULL;
}

/* ---- training ---- */

typedef struct trainer {
    const gpt_flags *f;
    clg_context *ctx;
    clg_optimizer *opt;
    clg_gpt m;
    const char_vocab *vocab;
} trainer;

/* The record --generate needs (model shape, vocabulary) and the recipe that trained it. */
static int save_checkpoint(void *user, int64_t step, double val_loss) {
    trainer *s = user;
    const gpt_flags *f = s->f;
    const clg_gpt_config *c = &s->m.config;
    char hex[2 * CHAR_MAX_VOCAB + 1], text[12][32];
    char_vocab_hex(s->vocab, hex);
    snprintf(text[0], sizeof text[0], "%lld", (long long)c->n_layer);
    snprintf(text[1], sizeof text[1], "%lld", (long long)c->n_head);
    snprintf(text[2], sizeof text[2], "%lld", (long long)c->n_embd);
    snprintf(text[3], sizeof text[3], "%lld", (long long)c->block_size);
    snprintf(text[4], sizeof text[4], "%d", f->iters);
    snprintf(text[5], sizeof text[5], "%d", f->batch);
    snprintf(text[6], sizeof text[6], "%.9g", (double)f->lr);
    snprintf(text[7], sizeof text[7], "%.9g", (double)f->dropout);
    snprintf(text[8], sizeof text[8], "%llu", (unsigned long long)f->seed);
    snprintf(text[9], sizeof text[9], "%lld", (long long)step);
    snprintf(text[10], sizeof text[10], "%.6f", val_loss);
    const clg_checkpoint_entry meta[] = {
        {"gpt_char.vocab_hex", hex},
        {"gpt_char.n_layer", text[0]},
        {"gpt_char.n_head", text[1]},
        {"gpt_char.n_embd", text[2]},
        {"gpt_char.block", text[3]},
        {"gpt_char.bias", c->bias ? "1" : "0"},
        {"gpt_char.iters", text[4]},
        {"gpt_char.batch", text[5]},
        {"gpt_char.lr", text[6]},
        {"gpt_char.dropout", text[7]},
        {"gpt_char.seed", text[8]},
        {"gpt_char.step", text[9]},
        {"gpt_char.val_loss", text[10]},
        {"gpt_char.data", f->data},
        {"gpt_char.freeze_attn", f->freeze_attn ? "1" : "0"},
    };
    if (clg_checkpoint_save_meta(s->ctx, f->checkpoint, s->opt, meta, sizeof meta / sizeof *meta) !=
        CLG_OK)
        return fail("saving the checkpoint");
    return 0;
}

static int train(const gpt_flags *f) {
    char_corpus corpus;
    int rc = char_corpus_load(&corpus, f->data, f->block);
    if (rc) return rc;
    trainer s = {.f = f, .vocab = &corpus.vocab};
    char_trainer t = {.iters = f->iters,
                      .batch = f->batch,
                      .block = f->block,
                      .eval_interval = f->eval_interval,
                      .eval_windows = f->eval_windows,
                      .time_first = false,
                      .seed = f->seed,
                      .log_path = f->log,
                      .checkpoint = f->checkpoint,
                      .corpus = &corpus,
                      .save = save_checkpoint,
                      .user = &s};
    clg_gpt_config cfg = {.vocab_size = corpus.vocab.size,
                          .block_size = f->block,
                          .n_layer = f->n_layer,
                          .n_head = f->n_head,
                          .n_embd = f->n_embd,
                          .dropout = f->dropout,
                          .bias = f->bias};
    if (clg_context_create(f->device, &s.ctx) != CLG_OK) rc = fail("opening the device");
    if (rc == 0) {
        const clg_device_info *dev = clg_context_device(s.ctx);
        printf("device: %s (%s)\n", dev->name, dev->platform_name);
        if (clg_gpt_init(s.ctx, &s.m, &cfg, f->seed) != CLG_OK) rc = fail("creating the model");
        for (int64_t i = 0; rc == 0 && f->freeze_attn && i < cfg.n_layer; ++i) {
            clg_param_set_requires_grad(s.m.h[i].attn.c_attn.weight, false);
            clg_param_set_requires_grad(s.m.h[i].attn.c_attn.bias, false); /* NULL: no-op */
        }
    }
    if (rc == 0 && !(s.opt = t.opt = make_optimizer(s.ctx, f))) rc = fail("the optimizer");
    if (rc == 0 &&
        (char_loss_plan_build(s.ctx, forward_ids, &s.m, (int64_t[]){f->batch, f->block}, s.opt,
                              &t.train) != CLG_OK ||
         char_loss_plan_build(s.ctx, forward_ids, &s.m, (int64_t[]){f->eval_windows, f->block},
                              NULL, &t.eval) != CLG_OK))
        rc = fail("building the model");
    if (rc == 0) {
        int64_t params = 0;
        for (size_t i = 0; i < clg_param_count(s.ctx); ++i)
            params += clg_param_numel(clg_param_at(s.ctx, i));
        /* nanoGPT's count leaves out the position embedding */
        params -= clg_param_numel(s.m.wpe.weight);
        printf("model: GPT %d layers, %d heads, %d dims, block %d, vocabulary %lld, %s, dropout "
               "%g%s; %.2fM parameters; AdamW lr %g -> %g (warm-up %d), batch %d, %d iterations, "
               "seed %llu; %zu kernels per training step\n",
               f->n_layer, f->n_head, f->n_embd, f->block, (long long)corpus.vocab.size,
               f->bias ? "biases" : "no biases", (double)f->dropout,
               f->freeze_attn ? ", c_attn frozen" : "", (double)params / 1e6, (double)f->lr,
               (double)f->min_lr, f->warmup < f->iters ? f->warmup : 0, f->batch, f->iters,
               (unsigned long long)f->seed, clg_plan_kernel_count(t.train.p));
        rc = char_train(&t);
    }
    char_loss_plan_free(&t.train);
    char_loss_plan_free(&t.eval);
    clg_gpt_free(&s.m);
    clg_context_free(s.ctx);
    char_corpus_free(&corpus);
    return rc;
}

/* ---- generation ---- */

static bool meta_int(const clg_checkpoint_info *info, const char *key, long lo, long hi,
                     long *out) {
    const char *v = clg_checkpoint_info_get(info, key);
    return v && char_parse_int(v, lo, hi, out);
}

static int read_config(const char *path, clg_gpt_config *c, char_vocab *vocab) {
    clg_checkpoint_info *info = NULL;
    if (clg_checkpoint_info_read(path, &info) != CLG_OK) return fail("reading the checkpoint");
    long layers, heads, embd, block;
    const char *bias = clg_checkpoint_info_get(info, "gpt_char.bias");
    bool ok = bias &&
              char_vocab_from_hex(vocab, clg_checkpoint_info_get(info, "gpt_char.vocab_hex")) &&
              meta_int(info, "gpt_char.n_layer", 1, 1024, &layers) &&
              meta_int(info, "gpt_char.n_head", 1, 1024, &heads) &&
              meta_int(info, "gpt_char.n_embd", 1, 65536, &embd) &&
              meta_int(info, "gpt_char.block", 1, 65536, &block);
    if (ok)
        *c = (clg_gpt_config){.vocab_size = vocab->size,
                              .block_size = block,
                              .n_layer = layers,
                              .n_head = heads,
                              .n_embd = embd,
                              .bias = strcmp(bias, "1") == 0};
    clg_checkpoint_info_free(info);
    if (!ok) {
        fprintf(stderr,
                "error: %s: no gpt_char record (vocabulary and model shape) in its "
                "metadata; it was not written by " PROGRAM "\n",
                path);
        return 1;
    }
    return 0;
}

/* One plan for one position: the token and its position in, the caches updated, the next
 * token (sampled on the device) out. */
typedef struct generator {
    clg_gpt m;
    clg_gpt_cache cache;
    clg_graph *g;
    clg_plan *p;
    clg_tensor *token, *pos, *next;
} generator;

static clg_status gen_build(clg_context *ctx, generator *gen, const gpt_flags *f) {
    clg_status st = clg_gpt_cache_init(ctx, &gen->m, 1, &gen->cache);
    if (st != CLG_OK) return st;
    clg_graph *g = gen->g = clg_graph_new(ctx);
    gen->token = clg_input(g, "token", CLG_I32, 1, (int64_t[]){1});
    gen->pos = clg_input(g, "pos", CLG_I32, 1, (int64_t[]){1});
    clg_tensor *logits = clg_gpt_forward_cached(g, &gen->m, &gen->cache, gen->token, gen->pos);
    gen->next = f->temperature == 0.0f
                    ? clg_argmax(g, logits, 1, true)
                    : clg_multinomial(g, logits, f->temperature, f->top_k, f->seed);
    st = clg_graph_output(g, gen->next);
    if (st == CLG_OK) st = clg_graph_compile(g, NULL, &gen->p);
    return st;
}

/* Feed token at position pos; the sampled next token in *next. */
static clg_status gen_step(generator *gen, int32_t token, int32_t pos, int32_t *next) {
    clg_status st = clg_plan_write(gen->p, gen->token, &token, sizeof token);
    if (st == CLG_OK) st = clg_plan_write(gen->p, gen->pos, &pos, sizeof pos);
    if (st == CLG_OK) st = clg_plan_run(gen->p);
    if (st == CLG_OK) st = clg_plan_read(gen->p, gen->next, next, sizeof *next);
    return st;
}

/* Feed ids[0 .. n) at positions 0 .. n-1 (the caches then hold them); the token sampled
 * after the last. */
static clg_status gen_prefill(generator *gen, const int32_t *ids, int64_t n, int32_t *next) {
    clg_status st = CLG_OK;
    for (int64_t i = 0; st == CLG_OK && i < n; ++i)
        st = gen_step(gen, ids[i], (int32_t)i, next);
    return st;
}

static int generate(const gpt_flags *f) {
    generator gen = {0};
    clg_gpt_config cfg;
    char_vocab vocab;
    if (read_config(f->checkpoint, &cfg, &vocab)) return 1;
    char def_prompt[2] = {vocab.id_of['\n'] >= 0 ? '\n' : (char)vocab.chars[0], '\0'};
    const char *prompt = f->prompt && *f->prompt ? f->prompt : def_prompt;
    int64_t plen = (int64_t)strlen(prompt), block = cfg.block_size;
    /* the context: the prompt and what follows, of which the model sees the last block */
    int64_t cap = plen + f->generate + 1;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return 1;
    if (!char_vocab_encode(&vocab, prompt, ids)) {
        free(ids);
        return 2;
    }
    clg_context *ctx = NULL;
    int rc = 0;
    if (clg_context_create(f->device, &ctx) != CLG_OK) rc = fail("opening the device");
    if (rc == 0 && clg_gpt_init(ctx, &gen.m, &cfg, 0) != CLG_OK) rc = fail("creating the model");
    if (rc == 0 && clg_checkpoint_load(ctx, f->checkpoint, NULL) != CLG_OK)
        rc = fail("loading the checkpoint");
    /* the caches after the load: they are not in the checkpoint */
    if (rc == 0 && gen_build(ctx, &gen, f) != CLG_OK) rc = fail("building the model");
    if (rc == 0) {
        fprintf(stderr,
                "%s: GPT %lld x %lld heads x %lld, block %lld, vocabulary %lld; "
                "temperature %g, top-k %d, seed %llu; %zu kernels per token\n",
                f->checkpoint, (long long)cfg.n_layer, (long long)cfg.n_head, (long long)cfg.n_embd,
                (long long)block, (long long)cfg.vocab_size, (double)f->temperature, f->top_k,
                (unsigned long long)f->seed, clg_plan_kernel_count(gen.p));
        fwrite(prompt, 1, (size_t)plen, stdout);
        double t0 = now_seconds();
        int64_t n = plen, pos = 0, steps = 0;
        int32_t next = 0;
        /* a prompt longer than the block: its last block only */
        int64_t start = plen > block ? plen - block : 0;
        if (f->generate > 0 && gen_prefill(&gen, ids + start, n - start, &next) != CLG_OK)
            rc = fail("reading the prompt");
        pos = n - start;
        steps += pos;
        for (long i = 0; rc == 0 && i < f->generate; ++i) {
            if (next < 0 || next >= cfg.vocab_size) {
                fprintf(stderr, "\nerror: sampled %d, outside the vocabulary (NaN logits?)\n",
                        (int)next);
                rc = 1;
                break;
            }
            putchar(vocab.chars[next]);
            ids[n++] = next;
            if (i + 1 == f->generate) break;
            if (pos == block) {
                /* The cache is full. Positions are learned, so keys cannot shift: start again
                 * from the last half block (nanoGPT re-reads the last block every token). */
                int64_t keep = block / 2 > 0 ? block / 2 : 1;
                if (gen_prefill(&gen, ids + n - keep, keep, &next) != CLG_OK) {
                    rc = fail("refilling the cache");
                    break;
                }
                pos = keep;
                steps += keep;
                continue;
            }
            if (gen_step(&gen, next, (int32_t)pos, &next) != CLG_OK) rc = fail("sampling");
            pos++;
            steps++;
        }
        putchar('\n');
        fflush(stdout);
        double t1 = now_seconds();
        if (rc == 0 && f->generate > 0)
            fprintf(stderr,
                    "generated %ld characters in %lld one-position steps: %.0f tokens/s "
                    "(the first step compiles)\n",
                    f->generate, (long long)steps, (double)f->generate / (t1 - t0));
    }
    clg_plan_free(gen.p);
    clg_graph_free(gen.g);
    clg_gpt_cache_free(&gen.cache);
    clg_gpt_free(&gen.m);
    clg_context_free(ctx);
    free(ids);
    return rc;
}

int main(int argc, char **argv) {
    gpt_flags f = {.data = CLG_EXAMPLES_DATA_DIR "/tinyshakespeare/input.txt",
                   .iters = 2000,
                   .batch = 12,
                   .block = 64,
                   .n_layer = 4,
                   .n_head = 4,
                   .n_embd = 128,
                   .eval_interval = 250,
                   .eval_windows = 200,
                   .warmup = 100,
                   .lr = 1e-3f,
                   .min_lr = 1e-4f,
                   .dropout = 0.0f,
                   .weight_decay = 0.1f,
                   .seed = 1,
                   .generate = -1,
                   .temperature = 1.0f,
                   .log = PROGRAM "_log.csv",
                   .checkpoint = PROGRAM ".safetensors"};
    int rc = parse_flags(&f, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    return f.generate >= 0 ? generate(&f) : train(&f);
}
