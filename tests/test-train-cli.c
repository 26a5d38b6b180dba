/* The training examples as a user drives them, each run a fresh process: --resume continues a
 * run bit for bit (split runs, and a run killed after an epoch, equal one uninterrupted run;
 * --load, a fresh optimizer, does not: the control), flags that contradict the record are
 * refused, a label outside the model's classes or a loss that turns NaN stops the run before
 * anything is written over an earlier checkpoint. The test process itself never touches
 * OpenCL (check runs tests unforked here, and the children open their own devices).
 * Usage: test-train-cli EXAMPLE [cnn|seq] — cnn: the batch-norm + dropout CNN's resume only;
 * seq: the LSTM's (seq_mnist) resume only. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "harness.h"
#include "io/safetensors.h"

static const char *example; /* path of mlp_mnist, cnn_mnist or seq_mnist */
static bool cnn, seq;
/* What VARIANT stands for in a run's flags: the example's own subset and settings. */
#define VARIANT "@variant"
static const char *const *variant;
static char dir[256];

/* dir/name; the result lives until 15 more calls (enough for the flags of one run). */
static const char *tmp(const char *name) {
    static char paths[16][320];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

/* Run the example with the given flags (NULL-terminated), stdout and stderr into out (the
 * output file's path); returns its exit status. */
static int run(const char *out, ...) {
    const char *argv[64];
    int n = 0;
    argv[n++] = example;
    va_list ap;
    va_start(ap, out);
    for (const char *a; (a = va_arg(ap, const char *)) && n < 62;) {
        if (strcmp(a, VARIANT) != 0) argv[n++] = a;
        else
            for (int i = 0; variant[i] && n < 62; ++i) argv[n++] = variant[i];
    }
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
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

/* Run and expect exit status want; on failure the message shows the run's output. */
#define EXPECT_RUN(want, out, ...)                                                             \
    do {                                                                                       \
        int rc_ = run(out, __VA_ARGS__);                                                       \
        ck_assert_msg(rc_ == (want), "exit status %d, expected %d; output:\n%s", rc_, (want),   \
                      slurp(out));                                                             \
    } while (0)

#define ASSERT_OUTPUT(path, text)                                                              \
    do {                                                                                       \
        const char *o_ = slurp(path);                                                          \
        ck_assert_msg(strstr(o_, text), "expected \"%s\" in the output:\n%s", text, o_);     \
    } while (0)

/* Whether two checkpoints hold the same tensors, bit for bit, and the same metadata. */
static bool same_checkpoint(const char *a, const char *b, bool with_meta) {
    clg_safetensors *x = NULL, *y = NULL;
    clg_assert_ok(clg_safetensors_load(a, &x));
    clg_assert_ok(clg_safetensors_load(b, &y));
    bool same = clg_safetensors_count(x) == clg_safetensors_count(y);
    for (size_t i = 0; same && i < clg_safetensors_count(x); ++i) {
        const clg_st_view *u = clg_safetensors_at(x, i);
        const clg_st_view *v = clg_safetensors_find(y, u->name);
        same = v && u->dtype == v->dtype && u->nbytes == v->nbytes &&
               memcmp(u->data, v->data, u->nbytes) == 0;
    }
    if (with_meta) {
        same = same && clg_safetensors_meta_count(x) == clg_safetensors_meta_count(y);
        for (size_t i = 0; same && i < clg_safetensors_meta_count(x); ++i) {
            const clg_st_meta *m = clg_safetensors_meta_at(x, i);
            const char *w = clg_safetensors_meta_get(y, m->key);
            same = w && strcmp(w, m->value) == 0;
        }
    }
    clg_safetensors_free(x);
    clg_safetensors_free(y);
    return same;
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert(a && b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) ck_assert_uint_eq(fwrite(buf, 1, n, b), n);
    fclose(a);
    ck_assert_int_eq(fclose(b), 0);
}

static bool same_file(const char *a, const char *b) {
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    ck_assert(x && y);
    int c, d;
    do {
        c = fgetc(x);
        d = fgetc(y);
    } while (c == d && c != EOF);
    fclose(x);
    fclose(y);
    return c == d;
}

/* The flags every run shares: a subset, so each run takes seconds. */
#define MLP_COMMON "--train-limit", "3000", "--log", "/dev/null"
#define CNN_COMMON "--arch", "bn", "--train-limit", "640", "--log", "/dev/null"
#define SEQ_COMMON "--train-limit", "640", "--log", "/dev/null"

START_TEST(split_run_equals_uninterrupted_run) {
    char out[320];
    snprintf(out, sizeof out, "%s", tmp("out.txt"));
    EXPECT_RUN(0, out, "--epochs", "1", "--save", tmp("b"), VARIANT, NULL);
    copy_file(tmp("b"), tmp("b1"));
    EXPECT_RUN(0, out, "--resume", tmp("b"), "--epochs", "2", "--save", tmp("b"), "--log",
               "/dev/null", NULL);
    ASSERT_OUTPUT(out, "resumed");
    EXPECT_RUN(0, out, "--epochs", "2", "--save", tmp("c"), VARIANT, NULL);
    EXPECT_RUN(0, out, "--load", tmp("b1"), "--epochs", "1", "--save", tmp("d"), VARIANT, NULL);
    ck_assert_msg(same_checkpoint(tmp("b"), tmp("c"), true),
                  "1 epoch + --resume to 2 differs from 2 epochs in one run");
    /* the control: --load (weights only, a fresh optimizer and schedule) is not a resume, and
     * the comparison sees it */
    ck_assert_msg(!same_checkpoint(tmp("d"), tmp("c"), false),
                  "--load then 1 epoch equals the uninterrupted run: the comparison is blind");
}
END_TEST

/* SIGKILL after the first epoch's line (printed once its checkpoint is on disk), then
 * --resume: the same tensors as the uninterrupted run. */
START_TEST(killed_run_resumes_exactly) {
    char out[320];
    snprintf(out, sizeof out, "%s", tmp("out.txt"));
    EXPECT_RUN(0, out, "--epochs", "2", "--save", tmp("c"), MLP_COMMON, NULL);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl(example, example, "--epochs", "2", "--save", tmp("k"), MLP_COMMON, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[1024];
    bool seen = false;
    while (!seen && fgets(line, sizeof line, f)) seen = strncmp(line, "epoch 1/2:", 10) == 0;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fclose(f);
    ck_assert_msg(seen, "the run never finished its first epoch");
    EXPECT_RUN(0, out, "--resume", tmp("k"), "--epochs", "2", "--save", tmp("k"), "--log",
                         "/dev/null", NULL);
    ck_assert(same_checkpoint(tmp("k"), tmp("c"), true));
}
END_TEST

START_TEST(resume_refuses_a_different_run) {
    char out[320];
    snprintf(out, sizeof out, "%s", tmp("out.txt"));
    EXPECT_RUN(0, out, "--epochs", "1", "--save", tmp("r"), MLP_COMMON, NULL);
    EXPECT_RUN(2, out, "--resume", tmp("r"), "--epochs", "2", "--optimizer", "sgd", NULL);
    ASSERT_OUTPUT(out, "--optimizer sgd: the run in");
    EXPECT_RUN(2, out, "--resume", tmp("r"), "--epochs", "2", "--lr", "0.5", NULL);
    ASSERT_OUTPUT(out, "--lr 0.5: the run in");
    EXPECT_RUN(2, out, "--resume", tmp("r"), "--load", tmp("r"), NULL);
    EXPECT_RUN(1, out, "--resume", tmp("missing"), NULL);
    ASSERT_OUTPUT(out, "missing: cannot open");
}
END_TEST

/* MNIST in dir with one label set to value at item (train or test file). */
static void write_mnist(const char *d, bool train, long item, int value) {
    const char *src = clg_test_path("../examples/data/mnist");
    const char *names[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                           "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int i = 0; i < 4; ++i) {
        char from[600], to[600];
        snprintf(from, sizeof from, "%s/%s", src, names[i]);
        snprintf(to, sizeof to, "%s/%s", d, names[i]);
        bool edit = i == (train ? 1 : 3);
        if (!edit) {
            copy_file(from, to);
            continue;
        }
        gzFile in = gzopen(from, "rb");
        ck_assert_ptr_nonnull(in);
        static unsigned char buf[70000];
        int n = gzread(in, buf, sizeof buf);
        gzclose(in);
        ck_assert_int_gt(n, 8 + item);
        buf[8 + item] = (unsigned char)value;
        gzFile o = gzopen(to, "wb");
        ck_assert_int_eq(gzwrite(o, buf, (unsigned)n), n);
        ck_assert_int_eq(gzclose(o), Z_OK);
    }
}

START_TEST(bad_labels_stop_before_training) {
    char out[320];
    snprintf(out, sizeof out, "%s", tmp("out.txt"));
    EXPECT_RUN(0, out, "--epochs", "1", "--save", tmp("good"), MLP_COMMON, NULL);
    copy_file(tmp("good"), tmp("keep"));
    char data[300];
    snprintf(data, sizeof data, "%s/bad-train", dir);
    ck_assert_int_eq(mkdir(data, 0755), 0);
    write_mnist(data, true, 1234, 200);
    EXPECT_RUN(1, out, "--data", data, "--epochs", "1", "--save", tmp("good"), MLP_COMMON,
                         NULL);
    ASSERT_OUTPUT(out, "train-labels-idx1-ubyte.gz: item 1234 has label 200");
    ck_assert(same_file(tmp("good"), tmp("keep")));
    snprintf(data, sizeof data, "%s/bad-test", dir);
    ck_assert_int_eq(mkdir(data, 0755), 0);
    write_mnist(data, false, 9999, 10);
    EXPECT_RUN(1, out, "--data", data, "--epochs", "1", "--save", tmp("good"), MLP_COMMON,
                         NULL);
    ASSERT_OUTPUT(out, "t10k-labels-idx1-ubyte.gz: item 9999 has label 10");
    ck_assert(same_file(tmp("good"), tmp("keep")));
}
END_TEST

/* SGD at lr 100 diverges within a few steps. */
START_TEST(nan_loss_stops_without_saving) {
    char out[320];
    snprintf(out, sizeof out, "%s", tmp("out.txt"));
    EXPECT_RUN(0, out, "--epochs", "1", "--save", tmp("good"), MLP_COMMON, NULL);
    copy_file(tmp("good"), tmp("keep"));
    EXPECT_RUN(1, out, "--optimizer", "sgd", "--lr", "100", "--epochs", "1", "--save",
                         tmp("good"), MLP_COMMON, NULL);
    ASSERT_OUTPUT(out, "the loss is NaN; stopping without saving");
    ck_assert(same_file(tmp("good"), tmp("keep")));
    setenv("CLGRAD_CHECK_FINITE", "1", 1);
    int rc = run(out, "--optimizer", "sgd", "--lr", "100", "--epochs", "1", "--save", tmp("good"),
                 MLP_COMMON, NULL);
    unsetenv("CLGRAD_CHECK_FINITE");
    ck_assert_int_eq(rc, 1);
    ASSERT_OUTPUT(out, "CLGRAD_CHECK_FINITE: run ");
    ASSERT_OUTPUT(out, "from finite operands");
    ck_assert(same_file(tmp("good"), tmp("keep")));
}
END_TEST

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/clgrad-train-cli-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s EXAMPLE [cnn|seq]\n", argv[0]);
        return 2;
    }
    example = argv[1];
    cnn = argc > 2 && strcmp(argv[2], "cnn") == 0;
    seq = argc > 2 && strcmp(argv[2], "seq") == 0;
    static const char *const mlp_flags[] = {MLP_COMMON, NULL};
    static const char *const cnn_flags[] = {CNN_COMMON, NULL};
    static const char *const seq_flags[] = {SEQ_COMMON, NULL};
    variant = cnn ? cnn_flags : seq ? seq_flags : mlp_flags;
    Suite *s = suite_create("train-cli");
    TCase *tc = tcase_create("train-cli");
    tcase_set_timeout(tc, 900);
    tcase_add_checked_fixture(tc, make_dir, remove_dir);
    tcase_add_test(tc, split_run_equals_uninterrupted_run);
    if (!cnn && !seq) {
        tcase_add_test(tc, killed_run_resumes_exactly);
        tcase_add_test(tc, resume_refuses_a_different_run);
        tcase_add_test(tc, bad_labels_stop_before_training);
        tcase_add_test(tc, nan_loss_stops_without_saving);
    }
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
