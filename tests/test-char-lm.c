/* examples/char_lm driven as a user would, on a 100,000-byte slice of Tiny Shakespeare. The
 * threshold comes from the slice itself: H(next | current), the empirical conditional entropy
 * of the validation split's character pairs, is the lowest mean cross-entropy that any model
 * predicting each character from that character alone can reach on those positions (the
 * pairs' own conditional frequencies minimise it). A model has to use the recurrence, and
 * learn through it, to get below it; a tanh RNN whose weight_hh is held at 0 (no recurrence at
 * all) cannot, and the test shows it does not. Generation: temperature -> 0 equals greedy
 * decoding, one seed gives one text, and the state carried from step to step equals re-reading
 * the prefix. The test process never touches OpenCL. Usage: test-char-lm CHAR_LM */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "text_slice.h"

#define SLICE 100000
/* The windowed validation loss samples about 10,000 positions of the split; for a
 * memoryless model its deviation from the mean over all of them is some 0.02 nats (per-position
 * losses spread by ~1.5 nats), so a margin of 0.1 leaves the control no chance of passing by
 * the draw. */
#define MARGIN 0.1

static const char *example;
static double h_cond; /* nats */

static const char *tmp(const char *name) {
    return text_slice_path(name);
}

/* Train with the test's small recipe plus the given flags; the last line's validation loss. */
static double train(const char *name, const char *cell, bool freeze_hh, const char *iters) {
    char out[80], ckpt[80];
    snprintf(out, sizeof out, "%s.out", name);
    snprintf(ckpt, sizeof ckpt, "%s.safetensors", name);
    const char *o = tmp(out);
    int rc = text_slice_run(example, o, NULL, "--data", tmp("slice.txt"), "--cell", cell, "--iters",
                            iters, "--eval-interval", "250", "--hidden", "128", "--embed", "32",
                            "--block", "32", "--batch", "16", "--lr", "5e-3", "--eval-windows",
                            "300", "--checkpoint", tmp(ckpt), "--log", tmp("log.csv"),
                            freeze_hh ? "--freeze-hh" : NULL, NULL);
    const char *text = text_slice_read(o);
    ck_assert_msg(rc == 0, "exit status %d; output:\n%s", rc, text);
    const char *last = strstr(text, "\nvalidation loss ");
    ck_assert_msg(last, "no 'validation loss' line in:\n%s", text);
    double v = atof(last + strlen("\nvalidation loss "));
    fprintf(stderr, "%s (%s%s): validation loss %.3f, bound H(next | current) %.3f\n", name, cell,
            freeze_hh ? ", weight_hh frozen at 0" : "", v, h_cond);
    return v;
}

START_TEST(lstm_beats_the_pair_bound) {
    double v = train("lstm", "lstm", false, "500");
    ck_assert_msg(v < h_cond - MARGIN, "LSTM validation loss %.3f, threshold %.3f", v,
                  h_cond - MARGIN);
    /* the log has a header and one line per evaluation (250, 500) */
    const char *log = text_slice_read(tmp("log.csv"));
    ck_assert_msg(strncmp(log, "step,", 5) == 0 && strstr(log, "\n250,") && strstr(log, "\n500,"),
                  "log:\n%s", log);
}
END_TEST

START_TEST(rnn_beats_the_pair_bound) {
    double v = train("rnn", "rnn", false, "500");
    ck_assert_msg(v < h_cond - MARGIN, "RNN validation loss %.3f, threshold %.3f", v,
                  h_cond - MARGIN);
}
END_TEST

/* The control: the same RNN with no recurrent learning cannot pass. */
START_TEST(rnn_without_recurrence_fails_the_bound) {
    double v = train("rnn-frozen", "rnn", true, "500");
    ck_assert_msg(v >= h_cond - MARGIN, "memoryless RNN validation loss %.3f passed %.3f", v,
                  h_cond - MARGIN);
}
END_TEST

/* The generated text (stdout) of --generate with the LSTM's checkpoint. */
static char *generate(const char *n, const char *prompt, const char *temperature, const char *seed,
                      const char *top_k) {
    const char *o = tmp("gen.out"), *e = tmp("gen.err");
    int rc = text_slice_run(example, o, e, "--generate", n, "--prompt", prompt, "--temperature",
                            temperature, "--seed", seed, "--top-k", top_k, "--checkpoint",
                            tmp("lstm.safetensors"), NULL);
    char *text = strdup(text_slice_read(o));
    ck_assert_msg(rc == 0, "exit status %d; stderr:\n%s", rc, text_slice_read(e));
    ck_assert_msg(strstr(text_slice_read(e), "tokens/s"), "no tokens/s on stderr:\n%s",
                  text_slice_read(e));
    return text;
}

START_TEST(generation) {
    const char *prompt = "ROMEO:\n";
    char *greedy = generate("80", prompt, "0", "1", "0");
    ck_assert_uint_eq(strlen(greedy), strlen(prompt) + 80 + 1);
    ck_assert(strncmp(greedy, prompt, strlen(prompt)) == 0);
    char *cold = generate("80", prompt, "1e-4", "5", "0");
    ck_assert_msg(strcmp(greedy, cold) == 0, "greedy:\n%s\ntemperature 1e-4:\n%s", greedy, cold);
    char *top1 = generate("80", prompt, "1", "5", "1");
    ck_assert_msg(strcmp(greedy, top1) == 0, "greedy:\n%s\ntop-k 1:\n%s", greedy, top1);
    /* the state carried across steps equals reading the longer prompt at once */
    char longer[128];
    snprintf(longer, sizeof longer, "%.*s", (int)strlen(prompt) + 40, greedy);
    char *rest = generate("40", longer, "0", "1", "0");
    ck_assert_msg(strcmp(greedy, rest) == 0, "in one go:\n%s\nprompt + 40 then 40:\n%s", greedy,
                  rest);
    char *a = generate("200", prompt, "1", "7", "0");
    char *b = generate("200", prompt, "1", "7", "0");
    char *c = generate("200", prompt, "1", "8", "0");
    ck_assert_msg(strcmp(a, b) == 0, "seed 7 twice:\n%s\n%s", a, b);
    ck_assert_msg(strcmp(a, c) != 0, "seeds 7 and 8 gave the same text:\n%s", a);
    ck_assert_msg(strcmp(a, greedy) != 0, "temperature 1 sampled the greedy text");
    free(greedy);
    free(cold);
    free(top1);
    free(rest);
    free(a);
    free(b);
    free(c);
}
END_TEST

static void setup(void) {
    h_cond = text_slice_setup("char-lm", SLICE);
}

static void teardown(void) {
    text_slice_teardown();
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CHAR_LM\n", argv[0]);
        return 2;
    }
    example = argv[1];
    Suite *s = suite_create("char-lm");
    TCase *tc = tcase_create("char-lm");
    tcase_set_timeout(tc, 600);
    /* one folder for the whole case: generation reads the LSTM's checkpoint */
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_add_test(tc, lstm_beats_the_pair_bound);
    tcase_add_test(tc, rnn_beats_the_pair_bound);
    tcase_add_test(tc, rnn_without_recurrence_fails_the_bound);
    tcase_add_test(tc, generation);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
