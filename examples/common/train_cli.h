/* What the training examples share: their command-line flags, a one-line progress bar that
 * redraws on a terminal and prints plain lines otherwise, a per-epoch CSV log, and timing.
 * Used by mlp_mnist.c and cnn_mnist.c; not part of the library. */
#ifndef CLG_EXAMPLES_TRAIN_CLI_H
#define CLG_EXAMPLES_TRAIN_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <clgrad/clgrad.h>

/* Which flags the command line gave (a resumed run refuses ones that contradict its record). */
typedef enum train_flag {
    FLAG_DATA,
    FLAG_EPOCHS,
    FLAG_BATCH,
    FLAG_LR,
    FLAG_OPTIMIZER,
    FLAG_LOSS,
    FLAG_SEED,
    FLAG_SAVE,
    FLAG_LOAD,
    FLAG_RESUME,
    FLAG_DEVICE,
    FLAG_LOG,
    FLAG_ARCH,
    FLAG_SALIENCY,
    FLAG_TRAIN_LIMIT,
    FLAG_SCHEDULE_EPOCHS,
    FLAG_COUNT
} train_flag;

typedef struct train_flags {
    const char *data;      /* --data DIR */
    int epochs;            /* --epochs N */
    int batch;             /* --batch N */
    float lr;              /* --lr X */
    const char *optimizer; /* --optimizer sgd|adam|adamw|rmsprop */
    const char *loss;      /* --loss ce|mse */
    uint64_t seed;         /* --seed N */
    const char *save;      /* --save FILE: written after every epoch */
    const char *load;      /* --load FILE: weights only; fresh optimizer and schedule */
    const char *resume;    /* --resume FILE: continue the run that wrote FILE */
    int schedule_epochs;   /* --schedule-epochs N: the learning-rate schedule's length; 0 until
                              parsed, then resolved (see train_flags_parse) */
    const char *device;    /* --device SPEC (NULL: CLGRAD_DEVICE) */
    const char *log;       /* --log FILE (per-epoch CSV) */
    const char *arch;      /* --arch NAME (CNN example) */
    const char *saliency;  /* --saliency FILE.png (CNN example) */
    int64_t train_limit;   /* --train-limit N: use the first N training images (0: all) */
    bool given[FLAG_COUNT];
    /* With --resume, from the checkpoint's record: epochs finished, optimizer steps taken, and
     * the data loader's position (the next batch: epoch and batch within it). */
    int resume_epochs_done;
    int64_t resume_step, resume_data_epoch, resume_data_batch;
} train_flags;

/* Extra flags an example accepts beyond the common ones, for the usage text. */
typedef struct train_cli {
    const char *program;
    const char *extra_usage; /* e.g. "[--arch classic|bn] [--saliency FILE.png]" */
    bool has_arch, has_saliency;
    const char *const *archs; /* NULL-terminated allowed --arch values */
    int default_epochs;       /* the recipe's epochs: the default --schedule-epochs */
} train_cli;

/* Parse argv into flags (pre-filled with the example's defaults). --schedule-epochs defaults
 * to the larger of --epochs and the example's default epoch count, so a run split in parts by
 * --resume follows one schedule. With --resume the checkpoint's record fills the flags not
 * given (and refuses given ones that differ from it, exit 2). Returns 0 to go on, or the exit
 * status to stop with: -1 after --help, 1 when the checkpoint cannot be read, 2 after a usage
 * error (message and usage line on stderr). */
int train_flags_parse(const train_cli *cli, train_flags *flags, int argc, char **argv);
void train_flags_usage(const train_cli *cli, FILE *out);

/* The run record a checkpoint carries: the flags that define the run, what it has done
 * (epochs, steps) and where its data loader stands. Strings live in rec. */
typedef struct run_record {
    clg_checkpoint_entry entries[16];
    size_t n;
    char text[16][64];
} run_record;

void run_record_make(run_record *rec, const train_cli *cli, const train_flags *flags,
                     int epochs_done, int64_t step, int64_t data_epoch, int64_t data_batch);
/* --resume: read flags->resume's record into flags (run_record.c). Returns what
 * train_flags_parse returns. */
int run_record_apply(const train_cli *cli, train_flags *flags);

double now_seconds(void);

/* One-line progress: "epoch 3/10 [=====>     ] 234/468  loss 0.1234  acc 96.1%  52k samples/s
 * ETA 4s" (a negative acc leaves the accuracy out). Redraws with \r when stdout is a terminal;
 * otherwise prints a plain line at every tenth of the epoch. epochs 0: a run counted in steps,
 * without the "epoch" prefix. */
typedef struct progress {
    bool tty;
    int epoch, epochs;
    int64_t total;
    int last_decile;
    double start;
} progress;

void progress_start(progress *p, int epoch, int epochs, int64_t total_batches);
void progress_update(progress *p, int64_t done, double loss, double acc, double samples_per_s);
/* The same bar with the caller's own figures (stats) between the count and the ETA. */
void progress_update_text(progress *p, int64_t done, const char *stats);
void progress_end(progress *p);

/* Per-epoch log (CSV with a header line); NULL path: no log. Appends nothing on failure.
 * append (a resumed run): keep the lines already there. */
typedef struct epoch_log {
    FILE *f;
} epoch_log;

bool epoch_log_open(epoch_log *log, const char *path, bool append);
void epoch_log_write(epoch_log *log, int epoch, int64_t step, double loss, double train_acc,
                     double test_acc, double samples_per_s, double lr, double seconds);
void epoch_log_close(epoch_log *log);

#endif
