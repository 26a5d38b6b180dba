/* The seq2seq example's encoder-decoder on 2-digit addition: the held-out split never meets
 * the training stream; a short training reaches an exact match that the control (the
 * decoder's cross-attention reading a zeroed memory, so it cannot see the operands) cannot,
 * the control's ceiling computed here from the test pairs alone; beam search of width 1 gives
 * greedy decoding's tokens, and width 4 never a sequence the model scores lower than
 * greedy's, scored here from the plan's log-probabilities by teacher forcing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/seq2seq_model.h"
#include "harness.h"

#define N_TEST 300
#define ROWS 512

static const s2s_task task = {.digits = 2, .test_percent = 10};

START_TEST(split_is_held_out) {
    int64_t a[N_TEST], b[N_TEST];
    ck_assert(s2s_test_pairs(&task, 7, N_TEST, a, b));
    for (int i = 0; i < N_TEST; ++i) {
        ck_assert(s2s_is_test_pair(&task, a[i], b[i]));
        ck_assert(s2s_is_test_pair(&task, b[i], a[i])); /* the swapped pair is held out too */
        for (int j = 0; j < i; ++j) ck_assert(a[i] != a[j] || b[i] != b[j]);
    }
    s2s_batch bt;
    ck_assert(s2s_batch_alloc(&bt, &task, 256));
    for (int64_t step = 0; step < 200; ++step) {
        s2s_batch_draw(&bt, &task, 3, step);
        for (int i = 0; i < bt.rows; ++i) {
            ck_assert(!s2s_is_test_pair(&task, bt.a[i], bt.b[i]));
            /* the tokens spell the pair and its sum; padding is masked and weighs nothing */
            char text[32];
            int n = 0;
            for (int j = 0; j < bt.src_len; ++j) {
                int32_t t = bt.src[i * bt.src_len + j];
                float m = bt.src_mask[i * bt.src_len + j];
                ck_assert(t == S2S_TOK_PAD ? m == -INFINITY : m == 0.0f);
                if (t != S2S_TOK_PAD) text[n++] = t == S2S_TOK_PLUS ? '+' : (char)('0' + t);
            }
            text[n] = '\0';
            char want[32];
            snprintf(want, sizeof want, "%lld+%lld", (long long)bt.a[i], (long long)bt.b[i]);
            ck_assert_str_eq(text, want);
            const int32_t *out = bt.tgt_out + i * bt.tgt_len, *in = bt.tgt_in + i * bt.tgt_len;
            ck_assert(s2s_answer_correct(&task, bt.a[i], bt.b[i], out, bt.tgt_len));
            ck_assert_int_eq(in[0], S2S_TOK_BOS);
            for (int j = 1; j < bt.tgt_len; ++j)
                ck_assert_int_eq(in[j], out[j - 1] == S2S_TOK_EOS ? S2S_TOK_PAD : out[j - 1]);
            for (int j = 0; j < bt.tgt_len; ++j)
                ck_assert((out[j] == S2S_TOK_PAD) == (bt.tgt_weight[i * bt.tgt_len + j] == 0.0f));
        }
    }
    s2s_batch_free(&bt);
}
END_TEST

typedef struct trained {
    clg_context *ctx;
    s2s_model model;
    s2s_scorer sc;
    s2s_batch test; /* the held-out pairs, encoded */
} trained;

static void train(trained *t, bool cut_cross, int steps) {
    (void)clg_test_context(); /* without any device: exit 77, SKIP */
    /* a fresh context per model: parameter names repeat */
    clg_assert_ok(clg_context_create(NULL, &t->ctx));
    s2s_config cfg = {.src_len = s2s_src_len(&task), .tgt_len = s2s_tgt_len(&task),
                      .n_embd = 32, .n_head = 4, .n_layer = 2, .cut_cross = cut_cross};
    clg_assert_ok(s2s_model_init(t->ctx, &t->model, &cfg, 11));
    clg_optimizer_config oc = clg_optimizer_defaults(CLG_OPT_ADAMW);
    oc.lr = 3e-3f;
    oc.beta2 = 0.99f;
    oc.clip_norm = 1.0f;
    oc.schedule = CLG_LR_COSINE;
    oc.warmup_steps = 50;
    oc.total_steps = steps;
    oc.min_lr = 1e-4f;
    clg_optimizer *opt = clg_optimizer_new(t->ctx, &oc);
    ck_assert_ptr_nonnull(opt);
    s2s_trainer tr;
    clg_assert_ok(s2s_trainer_build(t->ctx, &t->model, opt, 128, 5, &tr));
    s2s_batch bt;
    ck_assert(s2s_batch_alloc(&bt, &task, 128));
    float loss = 0.0f;
    for (int step = 0; step < steps; ++step) {
        s2s_batch_draw(&bt, &task, 9, step);
        clg_assert_ok(s2s_trainer_step(&tr, &bt, &loss, NULL));
    }
    ck_assert(isfinite(loss));
    s2s_batch_free(&bt);
    s2s_trainer_free(&tr);
    clg_assert_ok(s2s_scorer_build(t->ctx, &t->model, ROWS, &t->sc));
    int64_t a[N_TEST], b[N_TEST];
    ck_assert(s2s_test_pairs(&task, 7, N_TEST, a, b));
    ck_assert(s2s_batch_alloc(&t->test, &task, N_TEST));
    for (int i = 0; i < N_TEST; ++i) s2s_batch_set(&t->test, &task, i, a[i], b[i]);
}

static void untrain(trained *t) {
    s2s_scorer_destroy(&t->sc);
    s2s_batch_free(&t->test);
    clg_context_free(t->ctx);
}

static double exact_match(trained *t, const int32_t *tokens) {
    int right = 0;
    for (int i = 0; i < N_TEST; ++i)
        right += s2s_answer_correct(&task, t->test.a[i], t->test.b[i],
                                    tokens + i * t->sc.tgt_len, t->sc.tgt_len);
    return (double)right / N_TEST;
}

/* The best any decoder blind to the source can do: one answer for every pair, at best the
 * most frequent sum among the test pairs. */
static double blind_ceiling(const trained *t) {
    int count[2 * 100] = {0}, best = 0;
    for (int i = 0; i < N_TEST; ++i) {
        int s = (int)(t->test.a[i] + t->test.b[i]);
        if (++count[s] > best) best = count[s];
    }
    return (double)best / N_TEST;
}

/* The model's log-probability of each row's tokens (through the first EOS), from one
 * teacher-forced run of the scorer's plan. */
static void score(trained *t, int n, const int32_t *tokens, float *out) {
    int T = t->sc.tgt_len, V = t->sc.vocab;
    int32_t *in = malloc((size_t)n * T * sizeof *in);
    for (int i = 0; i < n; ++i) {
        in[i * T] = S2S_TOK_BOS;
        for (int j = 1; j < T; ++j) in[i * T + j] = tokens[i * T + j - 1];
    }
    clg_assert_ok(s2s_scorer_run(&t->sc, n, t->test.src, t->test.src_mask, in));
    for (int i = 0; i < n; ++i) {
        double sum = 0.0;
        for (int j = 0; j < T; ++j) {
            int v = tokens[i * T + j];
            ck_assert(v >= 0 && v < V);
            sum += t->sc.host_logp[((size_t)i * T + j) * V + v];
            if (v == S2S_TOK_EOS) break;
        }
        out[i] = (float)sum;
    }
    free(in);
}

START_TEST(learns_and_beam_search_holds) {
    trained t;
    train(&t, false, 500);
    const int T = t.sc.tgt_len, K = 4;
    int32_t greedy[N_TEST * 8], beam1[N_TEST * 8], beam4[N_TEST * 8];
    float beam_score[N_TEST], s_greedy[N_TEST], s_beam[N_TEST];
    ck_assert_int_le(T, 8);
    clg_assert_ok(s2s_greedy(&t.sc, N_TEST, t.test.src, t.test.src_mask, greedy));
    double match = exact_match(&t, greedy), ceiling = blind_ceiling(&t);
    fprintf(stderr, "exact match %.2f%% (greedy), blind ceiling %.2f%%\n", 100 * match,
            100 * ceiling);
    ck_assert_msg(match >= 0.5, "greedy exact match %.2f%% after training", 100 * match);

    clg_assert_ok(s2s_beam(&t.sc, N_TEST, 1, t.test.src, t.test.src_mask, beam1, NULL));
    ck_assert_mem_eq(beam1, greedy, sizeof(int32_t) * N_TEST * T);

    for (int i0 = 0; i0 < N_TEST; i0 += ROWS / K) {
        int n = N_TEST - i0 < ROWS / K ? N_TEST - i0 : ROWS / K;
        clg_assert_ok(s2s_beam(&t.sc, n, K, t.test.src + i0 * t.sc.src_len,
                               t.test.src_mask + i0 * t.sc.src_len, beam4 + i0 * T,
                               beam_score + i0));
    }
    score(&t, N_TEST, greedy, s_greedy);
    score(&t, N_TEST, beam4, s_beam);
    int better = 0;
    for (int i = 0; i < N_TEST; ++i) {
        ck_assert_msg(fabsf(s_beam[i] - beam_score[i]) <= 1e-4f * (1.0f + fabsf(s_beam[i])),
                      "pair %d: beam search reports %g, teacher forcing scores %g", i,
                      (double)beam_score[i], (double)s_beam[i]);
        ck_assert_msg(s_beam[i] >= s_greedy[i] - 1e-5f * (1.0f + fabsf(s_greedy[i])),
                      "pair %d: beam %g below greedy %g", i, (double)s_beam[i],
                      (double)s_greedy[i]);
        better += s_beam[i] > s_greedy[i] + 1e-5f;
    }
    fprintf(stderr, "beam search scores above greedy on %d of %d pairs\n", better, N_TEST);
    untrain(&t);
}
END_TEST

START_TEST(cut_cross_attention_stays_blind) {
    trained t;
    train(&t, true, 500);
    int32_t greedy[N_TEST * 8];
    clg_assert_ok(s2s_greedy(&t.sc, N_TEST, t.test.src, t.test.src_mask, greedy));
    double match = exact_match(&t, greedy), ceiling = blind_ceiling(&t);
    fprintf(stderr, "control: exact match %.2f%% (greedy), blind ceiling %.2f%%\n", 100 * match,
            100 * ceiling);
    ck_assert_msg(match <= ceiling, "the control decodes %.2f%% right, above the %.2f%% a "
                  "source-blind decoder can reach", 100 * match, 100 * ceiling);
    ck_assert(ceiling < 0.1);
    untrain(&t);
}
END_TEST

int main(void) {
    Suite *s = suite_create("seq2seq");
    TCase *host = tcase_create("task");
    tcase_add_test(host, split_is_held_out);
    suite_add_tcase(s, host);
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, learns_and_beam_search_holds);
    tcase_add_test(tc, cut_cross_attention_stays_blind);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
