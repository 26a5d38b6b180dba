/* The addition task of the seq2seq example (seq2seq_task.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "seq2seq_task.h"

int s2s_src_len(const s2s_task *t) { return 2 * t->digits + 1; }
int s2s_tgt_len(const s2s_task *t) { return t->digits + 2; }

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

s2s_rng s2s_rng_make(uint64_t seed, uint64_t stream) {
    return (s2s_rng){mix64(seed * 0x9E3779B97F4A7C15ull + mix64(stream + 1))};
}

uint64_t s2s_rng_next(s2s_rng *r) {
    r->state += 0x9E3779B97F4A7C15ull;
    return mix64(r->state);
}

static int64_t below(s2s_rng *r, int64_t n) { return (int64_t)(s2s_rng_next(r) % (uint64_t)n); }

static int64_t pow10i(int n) {
    int64_t p = 1;
    while (n-- > 0) p *= 10;
    return p;
}

bool s2s_is_test_pair(const s2s_task *t, int64_t a, int64_t b) {
    int64_t lo = a < b ? a : b, hi = a < b ? b : a;
    uint64_t h = mix64(mix64((uint64_t)lo + 0x51ED27ull) ^ (uint64_t)hi);
    return (int)(h % 100) < t->test_percent;
}

static int64_t draw_operand(const s2s_task *t, s2s_rng *r) {
    int n = 1 + (int)below(r, t->digits);
    int64_t lo = n == 1 ? 0 : pow10i(n - 1);
    return lo + below(r, pow10i(n) - lo);
}

void s2s_draw_pair(const s2s_task *t, s2s_rng *r, bool test, int64_t *a, int64_t *b) {
    do {
        *a = draw_operand(t, r);
        *b = draw_operand(t, r);
    } while (s2s_is_test_pair(t, *a, *b) != test);
}

bool s2s_test_pairs(const s2s_task *t, uint64_t seed, int64_t n, int64_t *a, int64_t *b) {
    s2s_rng r = s2s_rng_make(seed, UINT64_MAX);
    int64_t got = 0, tries = 0;
    while (got < n) {
        if (++tries > 1000 * n + 100000) return false;
        int64_t x, y;
        s2s_draw_pair(t, &r, true, &x, &y);
        bool seen = false;
        for (int64_t i = 0; i < got && !seen; ++i) seen = a[i] == x && b[i] == y;
        if (seen) continue;
        a[got] = x;
        b[got] = y;
        got++;
    }
    return true;
}

/* Decimal digits of v, most significant first; returns how many. */
static int digits_of(int64_t v, int32_t *out) {
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)(v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; ++i) out[i] = buf[n - 1 - i];
    return n;
}

int s2s_encode(const s2s_task *t, int64_t a, int64_t b, int32_t *src, int *src_used,
               int32_t *tgt_in, int32_t *tgt_out) {
    int S = s2s_src_len(t), T = s2s_tgt_len(t);
    for (int i = 0; i < S; ++i) src[i] = S2S_TOK_PAD;
    int n = digits_of(a, src);
    src[n++] = S2S_TOK_PLUS;
    n += digits_of(b, src + n);
    *src_used = n;
    int32_t sum[S2S_MAX_DIGITS + 2];
    int m = digits_of(a + b, sum);
    for (int i = 0; i < T; ++i) tgt_in[i] = tgt_out[i] = S2S_TOK_PAD;
    tgt_in[0] = S2S_TOK_BOS;
    for (int i = 0; i < m; ++i) {
        tgt_in[i + 1] = sum[i];
        tgt_out[i] = sum[i];
    }
    tgt_out[m] = S2S_TOK_EOS;
    return m + 1;
}

void s2s_source_positions(int src_len, const int32_t *src, int rows, int32_t *place,
                          int32_t *segment) {
    const int S = src_len, digits = (src_len - 1) / 2;
    for (int r = 0; r < rows; ++r) {
        const int32_t *tok = src + (size_t)r * S;
        int32_t *pl = place + (size_t)r * S, *sg = segment + (size_t)r * S;
        int plus = 0, used = 0;
        while (used < S && tok[used] != S2S_TOK_PAD) used++;
        while (plus < used && tok[plus] != S2S_TOK_PLUS) plus++;
        for (int j = 0; j < S; ++j) {
            if (j < plus) {
                pl[j] = plus - 1 - j;
                sg[j] = 0;
            } else if (j == plus && j < used) {
                pl[j] = digits;
                sg[j] = 1;
            } else if (j < used) {
                pl[j] = used - 1 - j;
                sg[j] = 2;
            } else {
                pl[j] = digits + 1;
                sg[j] = 1;
            }
        }
    }
}

bool s2s_batch_alloc(s2s_batch *bt, const s2s_task *t, int rows) {
    memset(bt, 0, sizeof *bt);
    bt->rows = rows;
    bt->src_len = s2s_src_len(t);
    bt->tgt_len = s2s_tgt_len(t);
    size_t rs = (size_t)rows * (size_t)bt->src_len, rt = (size_t)rows * (size_t)bt->tgt_len;
    bt->src = malloc(rs * sizeof *bt->src);
    bt->src_mask = malloc(rs * sizeof *bt->src_mask);
    bt->tgt_in = malloc(rt * sizeof *bt->tgt_in);
    bt->tgt_out = malloc(rt * sizeof *bt->tgt_out);
    bt->tgt_weight = malloc(rt * sizeof *bt->tgt_weight);
    bt->a = malloc((size_t)rows * sizeof *bt->a);
    bt->b = malloc((size_t)rows * sizeof *bt->b);
    if (!bt->src || !bt->src_mask || !bt->tgt_in || !bt->tgt_out || !bt->tgt_weight || !bt->a ||
        !bt->b) {
        s2s_batch_free(bt);
        return false;
    }
    return true;
}

void s2s_batch_free(s2s_batch *bt) {
    free(bt->src);
    free(bt->src_mask);
    free(bt->tgt_in);
    free(bt->tgt_out);
    free(bt->tgt_weight);
    free(bt->a);
    free(bt->b);
    memset(bt, 0, sizeof *bt);
}

void s2s_batch_set(s2s_batch *bt, const s2s_task *t, int i, int64_t a, int64_t b) {
    int S = bt->src_len, T = bt->tgt_len, used;
    s2s_encode(t, a, b, bt->src + (size_t)i * S, &used, bt->tgt_in + (size_t)i * T,
               bt->tgt_out + (size_t)i * T);
    for (int j = 0; j < S; ++j) bt->src_mask[(size_t)i * S + j] = j < used ? 0.0f : -INFINITY;
    bt->a[i] = a;
    bt->b[i] = b;
}

void s2s_batch_draw(s2s_batch *bt, const s2s_task *t, uint64_t seed, int64_t step) {
    s2s_rng r = s2s_rng_make(seed, (uint64_t)step);
    for (int i = 0; i < bt->rows; ++i) {
        int64_t a, b;
        s2s_draw_pair(t, &r, false, &a, &b);
        s2s_batch_set(bt, t, i, a, b);
    }
    s2s_batch_finish(bt);
}

void s2s_batch_finish(s2s_batch *bt) {
    size_t n = (size_t)bt->rows * (size_t)bt->tgt_len, real = 0;
    for (size_t i = 0; i < n; ++i) real += bt->tgt_out[i] != S2S_TOK_PAD;
    float w = real ? 1.0f / (float)real : 0.0f;
    for (size_t i = 0; i < n; ++i) bt->tgt_weight[i] = bt->tgt_out[i] != S2S_TOK_PAD ? w : 0.0f;
}

bool s2s_answer_text(const int32_t *tokens, int len, char *out) {
    int n = 0;
    bool ok = false;
    for (int i = 0; i < len; ++i) {
        if (tokens[i] == S2S_TOK_EOS) {
            ok = n > 0;
            break;
        }
        if (tokens[i] < 0 || tokens[i] > 9) break;
        out[n++] = (char)('0' + tokens[i]);
    }
    out[n] = '\0';
    return ok;
}

bool s2s_answer_correct(const s2s_task *t, int64_t a, int64_t b, const int32_t *tokens, int len) {
    (void)t;
    int32_t sum[S2S_MAX_DIGITS + 2];
    int m = digits_of(a + b, sum);
    if (len < m + 1) return false;
    for (int i = 0; i < m; ++i)
        if (tokens[i] != sum[i]) return false;
    return tokens[m] == S2S_TOK_EOS;
}
