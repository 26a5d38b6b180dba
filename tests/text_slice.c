/* The character-LM example tests' shared pieces (text_slice.h). */
#include "text_slice.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static char dir[256];

const char *text_slice_path(const char *name) {
    static char paths[16][320];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

int text_slice_run(const char *example, const char *out, const char *err, ...) {
    const char *argv[64];
    int n = 0;
    argv[n++] = example;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) && n < 62;)
        argv[n++] = a;
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

char *text_slice_read(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

double text_slice_validation_loss(const char *output) {
    const char *last = NULL;
    for (const char *p = output; (p = strstr(p, "\nvalidation loss ")); ++p)
        last = p;
    ck_assert_msg(last, "no 'validation loss' line in:\n%s", output);
    return atof(last + strlen("\nvalidation loss "));
}

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

double text_slice_setup(const char *tag, size_t size) {
    snprintf(dir, sizeof dir, "/tmp/clgrad-%s-XXXXXX", tag);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    FILE *f = fopen(clg_test_path("../examples/data/tinyshakespeare/input.txt"), "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char *text = malloc(size);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(fread(text, 1, size, f), size);
    fclose(f);
    FILE *g = fopen(text_slice_path("slice.txt"), "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(fwrite(text, 1, size, g), size);
    ck_assert_int_eq(fclose(g), 0);
    /* the examples' split: the first 90% trains, the rest validates */
    size_t n_train = size * 9 / 10;
    double h = conditional_entropy(text + n_train, size - n_train);
    free(text);
    return h;
}

void text_slice_teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}
