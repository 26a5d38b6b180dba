/* The encoder-decoder Transformer of the seq2seq example and its plans (seq2seq_model.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seq2seq_model.h"

static clg_transformer_layer_config layer_config(const s2s_config *c, bool cross) {
    return (clg_transformer_layer_config){.n_embd = c->n_embd,
                                          .n_head = c->n_head,
                                          .mlp_hidden = c->mlp_hidden,
                                          .dropout = c->dropout,
                                          .bias = true,
                                          .post_ln = c->post_ln,
                                          .cross = cross,
                                          /* GPT-2's scaling of the residual projections by
                                           * the number of residual additions they feed */
                                          .proj_std = CLG_TRANSFORMER_INIT_STD /
                                                      sqrtf(2.0f * (float)c->n_layer)};
}

clg_status s2s_model_init(clg_context *ctx, s2s_model *m, const s2s_config *cfg, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const int64_t C = cfg->n_embd;
    if (cfg->n_layer < 1 || cfg->n_layer > S2S_MAX_LAYERS) return CLG_ERR_INVALID_ARGUMENT;
    /* With the fixed encoding the paper scales the token embedding by sqrt(C): start it at
     * std 1 / sqrt(C) so the sum starts at the encoding's unit scale. */
    const bool sinusoidal = cfg->pos == S2S_POS_SINUSOIDAL;
    const int digits = (cfg->src_len - 1) / 2;
    float tok_std = sinusoidal ? 1.0f / sqrtf((float)C) : 0.0f;
    clg_status st = clg_embed_init(ctx, &m->src_wte, "encoder.wte", S2S_VOCAB, C, tok_std, seed);
    if (st == CLG_OK)
        st = clg_embed_init(ctx, &m->tgt_wte, "decoder.wte", S2S_VOCAB, C, tok_std, seed + 1);
    if (st == CLG_OK && cfg->pos == S2S_POS_LEARNED)
        st = clg_embed_init(ctx, &m->src_wpe, "encoder.wpe", cfg->src_len, C, 0.0f, seed + 2);
    if (st == CLG_OK && cfg->pos == S2S_POS_PLACE)
        st = clg_embed_init(ctx, &m->src_wpe, "encoder.wpe", digits + 2, C, 0.0f, seed + 2);
    if (st == CLG_OK && cfg->pos == S2S_POS_PLACE)
        st = clg_embed_init(ctx, &m->src_wse, "encoder.wse", 3, C, 0.0f, seed + 6);
    if (st == CLG_OK && !sinusoidal)
        st = clg_embed_init(ctx, &m->tgt_wpe, "decoder.wpe", cfg->tgt_len, C, 0.0f, seed + 3);
    clg_transformer_layer_config ec = layer_config(cfg, false), dc = layer_config(cfg, true);
    char name[64];
    for (int64_t i = 0; i < cfg->n_layer && st == CLG_OK; ++i) {
        snprintf(name, sizeof name, "encoder.h.%lld", (long long)i);
        st = clg_block_init(ctx, &m->enc[i], name, &ec, seed + 100 + (uint64_t)i);
        snprintf(name, sizeof name, "decoder.h.%lld", (long long)i);
        if (st == CLG_OK) st = clg_block_init(ctx, &m->dec[i], name, &dc, seed + 200 + (uint64_t)i);
    }
    if (st == CLG_OK && !cfg->post_ln) st = clg_layernorm_init(ctx, &m->enc_ln, "encoder.ln_f", C, true);
    if (st == CLG_OK && !cfg->post_ln) st = clg_layernorm_init(ctx, &m->dec_ln, "decoder.ln_f", C, true);
    if (st == CLG_OK) st = clg_linear_init(ctx, &m->lm_head, "lm_head", C, S2S_VOCAB, false, seed + 4);
    if (st == CLG_OK)
        st = clg_init_normal(m->lm_head.weight, 0.0f, CLG_TRANSFORMER_INIT_STD, seed + 5);
    return st;
}

/* Token embedding plus absolute position: [B, L] -> [B, L, C]. */
static clg_tensor *embed(clg_graph *g, const s2s_model *m, const clg_embed *wte,
                         const clg_embed *wpe, clg_tensor *tok) {
    const int64_t L = clg_tensor_dim(tok, 1), C = m->cfg.n_embd;
    clg_tensor *x = clg_embed_forward(g, wte, tok);
    if (m->cfg.pos == S2S_POS_SINUSOIDAL)
        return clg_add(g, clg_mul_scalar(g, x, sqrtf((float)C)), clg_sinusoidal_encoding(g, L, C));
    return clg_add(g, x, clg_embed_forward(g, wpe, clg_arange(g, L, CLG_I32)));
}

static clg_tensor *embed_source(clg_graph *g, const s2s_model *m, const s2s_source *src) {
    if (m->cfg.pos != S2S_POS_PLACE) return embed(g, m, &m->src_wte, &m->src_wpe, src->tok);
    clg_tensor *x = clg_embed_forward(g, &m->src_wte, src->tok);
    x = clg_add(g, x, clg_embed_forward(g, &m->src_wpe, src->place));
    return clg_add(g, x, clg_embed_forward(g, &m->src_wse, src->seg));
}

clg_tensor *s2s_model_forward(clg_graph *g, const s2s_model *m, const s2s_source *src,
                              clg_tensor *tgt_in, bool training, uint64_t seed) {
    const s2s_config *c = &m->cfg;
    float p = training ? c->dropout : 0.0f;
    clg_tensor *src_mask = src->mask;
    clg_tensor *x = clg_dropout(g, embed_source(g, m, src), p, training, seed);
    for (int64_t i = 0; i < c->n_layer; ++i)
        x = clg_block_forward(g, &m->enc[i], x, src_mask, false, NULL, NULL, training,
                              seed + 10 + (uint64_t)i);
    clg_tensor *memory = c->post_ln ? x : clg_layernorm_forward(g, &m->enc_ln, x);
    if (c->cut_cross) memory = clg_mul_scalar(g, clg_detach(g, memory), 0.0f);
    /* Target padding needs no mask of its own: it follows the answer, so the causal mask
     * already hides it from every real position, and its positions weigh 0 in the loss. */
    clg_tensor *y = clg_dropout(g, embed(g, m, &m->tgt_wte, &m->tgt_wpe, tgt_in), p, training,
                                seed + 1);
    for (int64_t i = 0; i < c->n_layer; ++i)
        y = clg_block_forward(g, &m->dec[i], y, NULL, true, memory, src_mask, training,
                              seed + 20 + (uint64_t)i);
    if (!c->post_ln) y = clg_layernorm_forward(g, &m->dec_ln, y);
    return clg_linear_forward(g, &m->lm_head, y);
}

void s2s_model_inputs(clg_graph *g, const s2s_model *m, int rows, s2s_source *src,
                      clg_tensor **tgt_in) {
    const s2s_config *c = &m->cfg;
    const int64_t ss[2] = {rows, c->src_len}, ms[4] = {rows, 1, 1, c->src_len},
                  ts[2] = {rows, c->tgt_len};
    src->tok = clg_input(g, "src", CLG_I32, 2, ss);
    src->mask = clg_input(g, "src_mask", CLG_F32, 4, ms);
    src->place = src->seg = NULL;
    if (c->pos == S2S_POS_PLACE) {
        src->place = clg_input(g, "src_place", CLG_I32, 2, ss);
        src->seg = clg_input(g, "src_seg", CLG_I32, 2, ss);
    }
    *tgt_in = clg_input(g, "tgt_in", CLG_I32, 2, ts);
}

clg_status s2s_trainer_build(clg_context *ctx, const s2s_model *m, clg_optimizer *opt,
                             int rows, uint64_t seed, s2s_trainer *t) {
    memset(t, 0, sizeof *t);
    const s2s_config *c = &m->cfg;
    const int64_t ts[2] = {rows, c->tgt_len};
    t->rows = rows;
    t->g = clg_graph_new(ctx);
    t->host_pred = malloc((size_t)rows * (size_t)c->tgt_len * sizeof *t->host_pred);
    t->host_place = malloc((size_t)rows * (size_t)c->src_len * sizeof *t->host_place);
    t->host_seg = malloc((size_t)rows * (size_t)c->src_len * sizeof *t->host_seg);
    if (!t->g || !t->host_pred || !t->host_place || !t->host_seg) return CLG_ERR_OUT_OF_MEMORY;
    s2s_model_inputs(t->g, m, rows, &t->src, &t->tgt_in);
    t->tgt_out = clg_input(t->g, "tgt_out", CLG_I32, 2, ts);
    t->weight = clg_input(t->g, "weight", CLG_F32, 2, ts);
    clg_tensor *logits = s2s_model_forward(t->g, m, &t->src, t->tgt_in, true, seed);
    /* padding rows carry a valid label (PAD) and weigh 0: the mean is over real tokens */
    clg_tensor *ce = clg_cross_entropy(t->g, logits, t->tgt_out, CLG_REDUCTION_NONE);
    t->loss = clg_sum(t->g, clg_mul(t->g, ce, t->weight), 0, NULL, false);
    t->pred = clg_argmax(t->g, logits, -1, false);
    clg_status st = clg_graph_output(t->g, t->loss);
    if (st == CLG_OK) st = clg_graph_output(t->g, t->pred);
    if (st == CLG_OK) st = clg_backward(t->g, t->loss);
    if (st == CLG_OK) st = clg_optimizer_apply(opt, t->g, NULL);
    if (st == CLG_OK) st = clg_graph_compile(t->g, NULL, &t->plan);
    return st;
}

clg_status s2s_trainer_step(s2s_trainer *t, const s2s_batch *bt, float *loss, int *correct) {
    size_t rs = (size_t)bt->rows * (size_t)bt->src_len, rt = (size_t)bt->rows * (size_t)bt->tgt_len;
    int32_t *pred = t->host_pred;
    clg_status st = clg_plan_write(t->plan, t->src.tok, bt->src, rs * sizeof *bt->src);
    if (st == CLG_OK) st = clg_plan_write(t->plan, t->src.mask, bt->src_mask, rs * sizeof(float));
    if (st == CLG_OK && t->src.place) {
        s2s_source_positions(bt->src_len, bt->src, bt->rows, t->host_place, t->host_seg);
        st = clg_plan_write(t->plan, t->src.place, t->host_place, rs * sizeof(int32_t));
        if (st == CLG_OK) st = clg_plan_write(t->plan, t->src.seg, t->host_seg, rs * sizeof(int32_t));
    }
    if (st == CLG_OK) st = clg_plan_write(t->plan, t->tgt_in, bt->tgt_in, rt * sizeof(int32_t));
    if (st == CLG_OK) st = clg_plan_write(t->plan, t->tgt_out, bt->tgt_out, rt * sizeof(int32_t));
    if (st == CLG_OK) st = clg_plan_write(t->plan, t->weight, bt->tgt_weight, rt * sizeof(float));
    if (st == CLG_OK) st = clg_plan_run(t->plan);
    if (st == CLG_OK) st = clg_plan_read(t->plan, t->loss, loss, sizeof *loss);
    if (st != CLG_OK || !correct) return st;
    st = clg_plan_read(t->plan, t->pred, pred, rt * sizeof *pred);
    *correct = 0;
    for (int i = 0; i < bt->rows && st == CLG_OK; ++i) {
        bool ok = true;
        for (int j = 0; j < bt->tgt_len; ++j) {
            size_t k = (size_t)i * (size_t)bt->tgt_len + (size_t)j;
            if (bt->tgt_out[k] != S2S_TOK_PAD && pred[k] != bt->tgt_out[k]) ok = false;
        }
        *correct += ok;
    }
    return st;
}

void s2s_trainer_free(s2s_trainer *t) {
    clg_graph_free(t->g); /* and its plan */
    free(t->host_pred);
    free(t->host_place);
    free(t->host_seg);
    memset(t, 0, sizeof *t);
}

clg_status s2s_scorer_build(clg_context *ctx, const s2s_model *m, int rows, s2s_scorer *s) {
    memset(s, 0, sizeof *s);
    const s2s_config *c = &m->cfg;
    clg_graph *g = clg_graph_new(ctx);
    if (!g) return CLG_ERR_OUT_OF_MEMORY;
    s2s_source src;
    s2s_model_inputs(g, m, rows, &src, &s->tgt_in);
    s->src = src.tok;
    s->src_mask = src.mask;
    s->src_place = src.place;
    s->src_seg = src.seg;
    s->logp = clg_log_softmax(g, s2s_model_forward(g, m, &src, s->tgt_in, false, 0), -1);
    s->rows = rows;
    s->src_len = c->src_len;
    s->tgt_len = c->tgt_len;
    s->vocab = S2S_VOCAB;
    clg_status st = clg_graph_output(g, s->logp);
    if (st == CLG_OK) st = clg_graph_compile(g, NULL, &s->plan);
    s->graph = g;
    if (st == CLG_OK && !s2s_scorer_alloc(s)) st = CLG_ERR_OUT_OF_MEMORY;
    return st;
}

void s2s_scorer_destroy(s2s_scorer *s) {
    s2s_scorer_free(s);
    clg_graph_free(s->graph);
    s->graph = NULL;
    s->plan = NULL;
}
