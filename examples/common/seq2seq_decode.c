/* Greedy decoding and beam search for the seq2seq example (seq2seq_decode.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "seq2seq_decode.h"

bool s2s_scorer_alloc(s2s_scorer *s) {
    size_t rs = (size_t)s->rows * (size_t)s->src_len, rt = (size_t)s->rows * (size_t)s->tgt_len;
    s->host_logp = malloc(rt * (size_t)s->vocab * sizeof *s->host_logp);
    s->host_mask = malloc(rs * sizeof *s->host_mask);
    s->host_src = malloc(rs * sizeof *s->host_src);
    s->host_tgt = malloc(rt * sizeof *s->host_tgt);
    s->host_place = malloc(rs * sizeof *s->host_place);
    s->host_seg = malloc(rs * sizeof *s->host_seg);
    if (s->host_logp && s->host_mask && s->host_src && s->host_tgt && s->host_place &&
        s->host_seg)
        return true;
    s2s_scorer_free(s);
    return false;
}

void s2s_scorer_free(s2s_scorer *s) {
    free(s->host_logp);
    free(s->host_mask);
    free(s->host_src);
    free(s->host_tgt);
    free(s->host_place);
    free(s->host_seg);
    s->host_logp = s->host_mask = NULL;
    s->host_src = s->host_tgt = s->host_place = s->host_seg = NULL;
}

clg_status s2s_scorer_run(s2s_scorer *s, int n, const int32_t *src, const float *src_mask,
                          const int32_t *tgt_in) {
    size_t S = (size_t)s->src_len, T = (size_t)s->tgt_len, R = (size_t)s->rows;
    if (src != s->host_src) memcpy(s->host_src, src, (size_t)n * S * sizeof *src);
    if (src_mask != s->host_mask) memcpy(s->host_mask, src_mask, (size_t)n * S * sizeof *src_mask);
    if (tgt_in != s->host_tgt) memcpy(s->host_tgt, tgt_in, (size_t)n * T * sizeof *tgt_in);
    /* unused rows: a lone PAD token, unmasked, so no row has every key dropped */
    for (size_t i = (size_t)n * S; i < R * S; ++i) {
        s->host_src[i] = S2S_TOK_PAD;
        s->host_mask[i] = 0.0f;
    }
    for (size_t i = (size_t)n * T; i < R * T; ++i) s->host_tgt[i] = S2S_TOK_PAD;
    clg_status st = clg_plan_write(s->plan, s->src, s->host_src, R * S * sizeof *s->host_src);
    if (st == CLG_OK)
        st = clg_plan_write(s->plan, s->src_mask, s->host_mask, R * S * sizeof *s->host_mask);
    if (st == CLG_OK)
        st = clg_plan_write(s->plan, s->tgt_in, s->host_tgt, R * T * sizeof *s->host_tgt);
    if (st == CLG_OK && s->src_place) {
        s2s_source_positions(s->src_len, s->host_src, s->rows, s->host_place, s->host_seg);
        st = clg_plan_write(s->plan, s->src_place, s->host_place, R * S * sizeof *s->host_place);
        if (st == CLG_OK)
            st = clg_plan_write(s->plan, s->src_seg, s->host_seg, R * S * sizeof *s->host_seg);
    }
    if (st == CLG_OK) st = clg_plan_run(s->plan);
    if (st == CLG_OK)
        st = clg_plan_read(s->plan, s->logp, s->host_logp,
                           R * T * (size_t)s->vocab * sizeof *s->host_logp);
    return st;
}

static const float *logp_at(const s2s_scorer *s, int row, int t) {
    return s->host_logp + ((size_t)row * (size_t)s->tgt_len + (size_t)t) * (size_t)s->vocab;
}

clg_status s2s_greedy(s2s_scorer *s, int n, const int32_t *src, const float *src_mask,
                      int32_t *out) {
    int T = s->tgt_len, V = s->vocab;
    int32_t *tgt = s->host_tgt;
    bool *done = calloc((size_t)n, 1);
    if (!done) return CLG_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < n * T; ++i) tgt[i] = out[i] = S2S_TOK_PAD;
    for (int i = 0; i < n; ++i) tgt[i * T] = S2S_TOK_BOS;
    clg_status st = CLG_OK;
    for (int t = 0, live = n; t < T && live > 0 && st == CLG_OK; ++t) {
        st = s2s_scorer_run(s, n, src, src_mask, tgt);
        for (int i = 0; i < n && st == CLG_OK; ++i) {
            if (done[i]) continue;
            const float *lp = logp_at(s, i, t);
            int best = 0;
            for (int v = 1; v < V; ++v)
                if (lp[v] > lp[best]) best = v;
            out[i * T + t] = best;
            if (t + 1 < T) tgt[i * T + t + 1] = best;
            if (best == S2S_TOK_EOS) {
                done[i] = true;
                live--;
            }
        }
    }
    free(done);
    return st;
}

/* One hypothesis: the tokens emitted so far, their summed log-probability, ended by EOS. */
typedef struct hyp {
    int32_t tok[S2S_MAX_DIGITS + 2];
    float score;
    bool done;
} hyp;

typedef struct cand {
    float score;
    int parent, token; /* token -1: the parent, already ended, carried over */
} cand;

/* Best first; ties by parent then token, so width 1 picks the first maximum as greedy does. */
static int cand_cmp(const void *x, const void *y) {
    const cand *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->parent != b->parent) return a->parent < b->parent ? -1 : 1;
    return (a->token > b->token) - (a->token < b->token);
}

clg_status s2s_beam(s2s_scorer *s, int n, int beam, const int32_t *src, const float *src_mask,
                    int32_t *out, float *score) {
    int T = s->tgt_len, V = s->vocab, S = s->src_len, K = beam, rows = n * K;
    if (T > S2S_MAX_DIGITS + 2 || K < 1 || rows > s->rows) return CLG_ERR_INVALID_ARGUMENT;
    hyp *h = calloc((size_t)rows, sizeof *h), *next = calloc((size_t)rows, sizeof *next);
    hyp *best = calloc((size_t)n, sizeof *best);
    int *width = calloc((size_t)n, sizeof *width);
    cand *c = malloc((size_t)K * (size_t)(V + 1) * sizeof *c);
    int32_t *bsrc = malloc((size_t)rows * (size_t)S * sizeof *bsrc);
    float *bmask = malloc((size_t)rows * (size_t)S * sizeof *bmask);
    clg_status st = CLG_OK;
    if (!h || !next || !best || !width || !c || !bsrc || !bmask) {
        st = CLG_ERR_OUT_OF_MEMORY;
        goto out;
    }
    for (int r = 0; r < rows; ++r) {
        memcpy(bsrc + (size_t)r * S, src + (size_t)(r / K) * S, (size_t)S * sizeof *bsrc);
        memcpy(bmask + (size_t)r * S, src_mask + (size_t)(r / K) * S, (size_t)S * sizeof *bmask);
    }
    for (int p = 0; p < n; ++p) {
        width[p] = 1; /* one empty hypothesis to start with, not K copies of it */
        best[p].score = -INFINITY;
    }
    int32_t *tgt = s->host_tgt;
    for (int t = 0, live = n; t < T && live > 0; ++t) {
        for (int r = 0; r < rows; ++r) {
            const hyp *src_h = &h[(r / K) * K + (r % K < width[r / K] ? r % K : 0)];
            tgt[r * T] = S2S_TOK_BOS;
            for (int j = 1; j < T; ++j) tgt[r * T + j] = j <= t ? src_h->tok[j - 1] : S2S_TOK_PAD;
        }
        st = s2s_scorer_run(s, rows, bsrc, bmask, tgt);
        if (st != CLG_OK) goto out;
        for (int p = 0; p < n; ++p) {
            hyp *cur = h + p * K;
            int nc = 0, alive = 0;
            for (int k = 0; k < width[p]; ++k) alive += !cur[k].done;
            if (!alive) continue;
            for (int k = 0; k < width[p]; ++k) {
                if (cur[k].done) {
                    c[nc++] = (cand){cur[k].score, k, -1};
                    continue;
                }
                const float *lp = logp_at(s, p * K + k, t);
                for (int v = 0; v < V; ++v) c[nc++] = (cand){cur[k].score + lp[v], k, v};
            }
            qsort(c, (size_t)nc, sizeof *c, cand_cmp);
            int w = nc < K ? nc : K;
            bool any_alive = false;
            for (int k = 0; k < w; ++k) {
                hyp *nh = &next[p * K + k];
                *nh = cur[c[k].parent];
                nh->score = c[k].score;
                if (c[k].token >= 0) {
                    nh->tok[t] = c[k].token;
                    nh->done = c[k].token == S2S_TOK_EOS;
                    /* every ended hypothesis that makes the beam is a candidate answer, even
                     * if better-scoring live ones push it out later and then fall below it */
                    if (nh->done && nh->score > best[p].score) best[p] = *nh;
                }
                any_alive |= !nh->done;
            }
            memcpy(cur, next + p * K, (size_t)w * sizeof *cur);
            width[p] = w;
            if (!any_alive) live--;
        }
    }
    for (int p = 0; p < n; ++p) {
        /* no hypothesis ended within tgt_len tokens: the best unfinished one */
        const hyp *b = &best[p];
        if (b->score == -INFINITY) b = &h[p * K];
        int len = 0;
        while (len < T && (len == 0 || b->tok[len - 1] != S2S_TOK_EOS)) len++;
        for (int j = 0; j < T; ++j) out[p * T + j] = j < len ? b->tok[j] : S2S_TOK_PAD;
        if (score) score[p] = b->score;
    }
out:
    free(h);
    free(next);
    free(best);
    free(width);
    free(c);
    free(bsrc);
    free(bmask);
    return st;
}

clg_status s2s_sequence_logp(s2s_scorer *s, int n, const int32_t *src, const float *src_mask,
                             const int32_t *tokens, float *logp) {
    int T = s->tgt_len;
    int32_t *tgt = s->host_tgt;
    for (int i = 0; i < n; ++i) {
        tgt[i * T] = S2S_TOK_BOS;
        for (int j = 1; j < T; ++j) tgt[i * T + j] = tokens[i * T + j - 1];
    }
    clg_status st = s2s_scorer_run(s, n, src, src_mask, tgt);
    for (int i = 0; i < n && st == CLG_OK; ++i) {
        float sum = 0.0f;
        for (int t = 0; t < T; ++t) {
            int v = tokens[i * T + t];
            sum += v >= 0 && v < s->vocab ? logp_at(s, i, t)[v] : -INFINITY;
            if (v == S2S_TOK_EOS) break;
        }
        logp[i] = sum;
    }
    return st;
}
