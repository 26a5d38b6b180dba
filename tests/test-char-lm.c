/* examples/char_lm driven as a user would, on a 100,000-byte slice of Tiny Shakespeare. The
 * threshold comes from the slice itself: H(next | current), the empirical conditional entropy
 * of the validation split's character pairs, is the lowest mean cross-entropy that any model
 * predicting each character from that character alone can reach on those positions (the
 * pairs' own conditional frequencies minimise it). A model has to use the recurrence, and
 * learn through it, to get below it; a tanh RNN whose weight_hh is held at 0 (no recurrence at
 * all) cannot, and the test shows it does not. Generation: temperature -> 0 equals greedy
 * decoding, one seed gives one text, and the state carried from step to step equals re-reading
 * the prefix. The test process never touches OpenCL. Usage: test-char-lm CHAR_LM */
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define SLICE 100000
/* The windowed validation loss samples about 10,000 positions of the split; for a
 * memoryless model its deviation from the mean over all of them is some 0.02 nats (per-position
 * losses spread by ~1.5 nats), so a margin of 0.1 leaves the control no chance of passing by
 * the draw. */
#define MARGIN 0.1

static const char *example;
static char dir[256];
static double h_cond; /* nats */

static const char *tmp(const char *name) {
    static char paths[16][320];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

/* Run the example with the given flags (NULL-terminated), stdout into out and stderr into
 * err (NULL: into out too); returns its exit status. */
static int run(const char *out, const char *err, ...) {
    const char *argv[64];
    int n = 0;
    argv[n++] = example;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) && n < 62;) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = err ? open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644) : fd;
        if (fd < 0 || fe < 0) _exit(126);
        dup2(fd, 1);
        dup2(fe, 2);
        execv(example, (char *const *)argv);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "%s died with signal %d", example, WTERMSIG(status));
    return WEXITSTATUS(status);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Train with the test's small recipe plus the given flags; the last line's validation loss. */
static double train(const char *name, const char *cell, bool freeze_hh, const char *iters) {
    char out[80], ckpt[80];
    snprintf(out, sizeof out, "%s.out", name);
    snprintf(ckpt, sizeof ckpt, "%s.safetensors", name);
    const char *o = tmp(out);
    int rc = run(o, NULL, "--data", tmp("slice.txt"), "--cell", cell, "--iters", iters,
                 "--eval-interval", "250", "--hidden", "128", "--embed", "32", "--block", "32",
                 "--batch", "16", "--lr", "5e-3", "--eval-windows", "300", "--checkpoint",
                 tmp(ckpt), "--log", tmp("log.csv"), freeze_hh ? "--freeze-hh" : NULL, NULL);
    const char *text = slurp(o);
    ck_assert_msg(rc == 0, "exit status %d; output:\n%s", rc, text);
    const char *last = strstr(text, "\nvalidation loss ");
    ck_assert_msg(last, "no 'validation loss' line in:\n%s", text);
    double v = atof(last + strlen("\nvalidation loss "));
    fprintf(stderr, "%s (%s%s): validation loss %.3f, bound H(next | current) %.3f\n", name,
            cell, freeze_hh ? ", weight_hh frozen at 0" : "", v, h_cond);
    return v;
}

START_TEST(lstm_beats_the_pair_bound) {
    double v = train("lstm", "lstm", false, "500");
    ck_assert_msg(v < h_cond - MARGIN, "LSTM validation loss %.3f, threshold %.3f", v,
                  h_cond - MARGIN);
    /* the log has a header and one line per evaluation (250, 500) */
    const char *log = slurp(tmp("log.csv"));
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
static char *generate(const char *n, const char *prompt, const char *temperature,
                      const char *seed, const char *top_k) {
    const char *o = tmp("gen.out"), *e = tmp("gen.err");
    int rc = run(o, e, "--generate", n, "--prompt", prompt, "--temperature", temperature, "--seed",
                 seed, "--top-k", top_k, "--checkpoint", tmp("lstm.safetensors"), NULL);
    char *text = strdup(slurp(o));
    ck_assert_msg(rc == 0, "exit status %d; stderr:\n%s", rc, slurp(e));
    ck_assert_msg(strstr(slurp(e), "tokens/s"), "no tokens/s on stderr:\n%s", slurp(e));
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

/* H(next | current) in nats over the character pairs of text[0 .. n). */
static double conditional_entropy(const unsigned char *text, size_t n) {
    static double pair[256][256], first[256];
    memset(pair, 0, sizeof pair);
    memset(first, 0, sizeof first);
    for (size_t i = 0; i + 1 < n; ++i) {
        pair[text[i]][text[i + 1]] += 1.0;
        first[text[i]] += 1.0;
    }
    double h = 0.0;
    for (int a = 0; a < 256; ++a)
        for (int b = 0; b < 256; ++b)
            if (pair[a][b] > 0.0) h -= pair[a][b] * log(pair[a][b] / first[a]);
    return h / (double)(n - 1);
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/clgrad-char-lm-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    FILE *f = fopen(clg_test_path("../examples/data/tinyshakespeare/input.txt"), "rb");
    ck_assert_ptr_nonnull(f);
    static unsigned char text[SLICE];
    ck_assert_uint_eq(fread(text, 1, SLICE, f), SLICE);
    fclose(f);
    FILE *g = fopen(tmp("slice.txt"), "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(fwrite(text, 1, SLICE, g), SLICE);
    ck_assert_int_eq(fclose(g), 0);
    /* char_lm's split: the first 90% trains, the rest validates */
    size_t n_train = (size_t)SLICE * 9 / 10;
    h_cond = conditional_entropy(text + n_train, SLICE - n_train);
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
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
