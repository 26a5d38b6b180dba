/* What the training examples share: their command-line flags, a one-line progress bar that
 * redraws on a terminal and prints plain lines otherwise, a per-epoch CSV log, and timing.
 * Used by mlp_mnist.c and cnn_mnist.c; not part of the library. */
#ifndef CLG_EXAMPLES_TRAIN_CLI_H
#define CLG_EXAMPLES_TRAIN_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct train_flags {
    const char *data;      /* --data DIR */
    int epochs;            /* --epochs N */
    int batch;             /* --batch N */
    float lr;              /* --lr X */
    const char *optimizer; /* --optimizer sgd|adam|adamw|rmsprop */
    const char *loss;      /* --loss ce|mse */
    uint64_t seed;         /* --seed N */
    const char *save;      /* --save FILE */
    const char *load;      /* --load FILE */
    const char *device;    /* --device SPEC (NULL: CLGRAD_DEVICE) */
    const char *log;       /* --log FILE (per-epoch CSV) */
    const char *arch;      /* --arch NAME (CNN example) */
    const char *saliency;  /* --saliency FILE.png (CNN example) */
    int64_t train_limit;   /* --train-limit N: use the first N training images (0: all) */
} train_flags;

/* Extra flags an example accepts beyond the common ones, for the usage text. */
typedef struct train_cli {
    const char *program;
    const char *extra_usage; /* e.g. "[--arch classic|bn] [--saliency FILE.png]" */
    bool has_arch, has_saliency;
    const char *const *archs; /* NULL-terminated allowed --arch values */
} train_cli;

/* Parse argv into flags (pre-filled with the example's defaults). Returns 0 to go on, or the
 * exit status to stop with: 0 after --help, 2 after a usage error (message and usage line on
 * stderr). */
int train_flags_parse(const train_cli *cli, train_flags *flags, int argc, char **argv);
void train_flags_usage(const train_cli *cli, FILE *out);

double now_seconds(void);

/* One-line progress: "epoch 3/10 [=====>     ] 234/468  loss 0.1234  acc 96.1%  52k samples/s
 * ETA 4s". Redraws with \r when stdout is a terminal; otherwise prints a plain line at every
 * tenth of the epoch. */
typedef struct progress {
    bool tty;
    int epoch, epochs;
    int64_t total;
    int last_decile;
    double start;
} progress;

void progress_start(progress *p, int epoch, int epochs, int64_t total_batches);
void progress_update(progress *p, int64_t done, double loss, double acc, double samples_per_s);
void progress_end(progress *p);

/* Per-epoch log (CSV with a header line); NULL path: no log. Appends nothing on failure. */
typedef struct epoch_log {
    FILE *f;
} epoch_log;

bool epoch_log_open(epoch_log *log, const char *path);
void epoch_log_write(epoch_log *log, int epoch, int64_t step, double loss, double train_acc,
                     double test_acc, double samples_per_s, double lr, double seconds);
void epoch_log_close(epoch_log *log);

#endif
