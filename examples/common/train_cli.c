/* Flags, progress bar, epoch log and timing for the training examples (train_cli.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "train_cli.h"

double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void train_flags_usage(const train_cli *cli, FILE *out) {
    fprintf(out,
            "usage: %s [--data DIR] [--epochs N] [--batch N] [--lr X]\n"
            "       [--optimizer sgd|adam|adamw|rmsprop] [--loss ce|mse] [--seed N]\n"
            "       [--save FILE] [--resume FILE | --load FILE] [--schedule-epochs N]\n"
            "       [--device SPEC] [--log FILE] [--train-limit N] %s[--help]\n"
            "  --epochs N           train to N epochs in all (a resumed run counts its own)\n"
            "  --save FILE          write the checkpoint after every epoch (atomically)\n"
            "  --resume FILE        continue the run that wrote FILE: weights, optimizer state,\n"
            "                       schedule, data order and random streams, bit for bit\n"
            "  --load FILE          start a new run from FILE's weights (fresh optimizer)\n"
            "  --schedule-epochs N  length of the learning-rate schedule (default: the larger\n"
            "                       of --epochs and %d); --epochs says where this run stops\n",
            cli->program, cli->extra_usage ? cli->extra_usage : "", cli->default_epochs);
}

static int usage_error(const train_cli *cli, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "%s: ", cli->program);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    train_flags_usage(cli, stderr);
    return 2;
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool one_of(const char *s, const char *const *allowed) {
    for (; *allowed; ++allowed)
        if (strcmp(s, *allowed) == 0) return true;
    return false;
}

static const char *const flag_names[FLAG_COUNT] = {
    [FLAG_DATA] = "--data",
    [FLAG_EPOCHS] = "--epochs",
    [FLAG_BATCH] = "--batch",
    [FLAG_LR] = "--lr",
    [FLAG_OPTIMIZER] = "--optimizer",
    [FLAG_LOSS] = "--loss",
    [FLAG_SEED] = "--seed",
    [FLAG_SAVE] = "--save",
    [FLAG_LOAD] = "--load",
    [FLAG_RESUME] = "--resume",
    [FLAG_DEVICE] = "--device",
    [FLAG_LOG] = "--log",
    [FLAG_ARCH] = "--arch",
    [FLAG_SALIENCY] = "--saliency",
    [FLAG_TRAIN_LIMIT] = "--train-limit",
    [FLAG_SCHEDULE_EPOCHS] = "--schedule-epochs",
};

static int parse_args(const train_cli *cli, train_flags *f, int argc, char **argv) {
    static const char *const optimizers[] = {"sgd", "adam", "adamw", "rmsprop", NULL};
    static const char *const losses[] = {"ce", "mse", NULL};
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            train_flags_usage(cli, stdout);
            return -1;
        }
        int flag = -1;
        for (int k = 0; k < FLAG_COUNT; ++k)
            if (strcmp(a, flag_names[k]) == 0) flag = k;
        if ((flag == FLAG_ARCH && !cli->has_arch) || (flag == FLAG_SALIENCY && !cli->has_saliency))
            flag = -1;
        if (flag < 0) return usage_error(cli, "unknown flag '%s'%s", a, "");
        if (i + 1 >= argc) return usage_error(cli, "%s needs a value%s", a, "");
        f->given[flag] = true;
        const char *v = argv[++i];
        long n;
        if (strcmp(a, "--data") == 0) {
            f->data = v;
        } else if (strcmp(a, "--epochs") == 0) {
            if (!parse_long(v, 1, 100000, &n))
                return usage_error(cli, "--epochs: '%s' is not a whole number from 1%s", v, "");
            f->epochs = (int)n;
        } else if (strcmp(a, "--batch") == 0) {
            if (!parse_long(v, 1, 65536, &n))
                return usage_error(cli, "--batch: '%s' is not a whole number from 1 to 65536%s",
                                   v, "");
            f->batch = (int)n;
        } else if (strcmp(a, "--lr") == 0) {
            char *end;
            errno = 0;
            double x = strtod(v, &end);
            if (errno || end == v || *end || !(x > 0.0) || x > 100.0)
                return usage_error(cli, "--lr: '%s' is not a number in (0, 100]%s", v, "");
            f->lr = (float)x;
        } else if (strcmp(a, "--optimizer") == 0) {
            if (!one_of(v, optimizers))
                return usage_error(cli, "--optimizer: '%s' is not one of %s", v,
                                   "sgd, adam, adamw, rmsprop");
            f->optimizer = v;
        } else if (strcmp(a, "--loss") == 0) {
            if (!one_of(v, losses)) return usage_error(cli, "--loss: '%s' is not one of %s", v, "ce, mse");
            f->loss = v;
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_long(v, 0, 0x7FFFFFFFL, &n))
                return usage_error(cli, "--seed: '%s' is not a whole number from 0%s", v, "");
            f->seed = (uint64_t)n;
        } else if (strcmp(a, "--save") == 0) {
            f->save = v;
        } else if (strcmp(a, "--load") == 0) {
            f->load = v;
        } else if (strcmp(a, "--resume") == 0) {
            f->resume = v;
        } else if (strcmp(a, "--schedule-epochs") == 0) {
            if (!parse_long(v, 1, 100000, &n))
                return usage_error(cli, "--schedule-epochs: '%s' is not a whole number from 1%s",
                                   v, "");
            f->schedule_epochs = (int)n;
        } else if (strcmp(a, "--device") == 0) {
            f->device = v;
        } else if (strcmp(a, "--log") == 0) {
            f->log = v;
        } else if (strcmp(a, "--train-limit") == 0) {
            if (!parse_long(v, 1, 0x7FFFFFFFL, &n))
                return usage_error(cli, "--train-limit: '%s' is not a whole number from 1%s", v, "");
            f->train_limit = n;
        } else if (strcmp(a, "--arch") == 0) {
            if (!one_of(v, cli->archs))
                return usage_error(cli, "--arch: '%s' is not a known architecture%s", v, "");
            f->arch = v;
        } else if (strcmp(a, "--saliency") == 0) {
            f->saliency = v;
        }
    }
    if (f->load && f->resume)
        return usage_error(cli, "%s%s", "--load and --resume exclude each other: --resume "
                           "continues a run, --load starts a new one from its weights", "");
    return 0;
}

int train_flags_parse(const train_cli *cli, train_flags *f, int argc, char **argv) {
    int rc = parse_args(cli, f, argc, argv);
    if (rc) return rc;
    if (f->resume) return run_record_apply(cli, f);
    if (!f->schedule_epochs)
        f->schedule_epochs = f->epochs > cli->default_epochs ? f->epochs : cli->default_epochs;
    return 0;
}

/* ---- progress ---- */

void progress_start(progress *p, int epoch, int epochs, int64_t total) {
    p->tty = isatty(fileno(stdout)) != 0;
    p->epoch = epoch;
    p->epochs = epochs;
    p->total = total;
    p->last_decile = -1;
    p->start = now_seconds();
}

void progress_update(progress *p, int64_t done, double loss, double acc, double samples_per_s) {
    char stats[128], acc_text[32] = "";
    if (acc >= 0.0) snprintf(acc_text, sizeof acc_text, "  acc %5.2f%%", 100.0 * acc);
    snprintf(stats, sizeof stats, "loss %.4f%s  %.0f samples/s", loss, acc_text, samples_per_s);
    progress_update_text(p, done, stats);
}

void progress_update_text(progress *p, int64_t done, const char *stats) {
    int decile = p->total ? (int)(done * 10 / p->total) : 10;
    if (!p->tty && decile == p->last_decile && done != p->total) return;
    p->last_decile = decile;
    double elapsed = now_seconds() - p->start;
    double eta = done ? elapsed * (double)(p->total - done) / (double)done : 0.0;
    char bar[21], epoch[48] = "";
    int filled = p->total ? (int)(done * 20 / p->total) : 20;
    for (int i = 0; i < 20; ++i) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[20] = '\0';
    if (p->epochs > 0) snprintf(epoch, sizeof epoch, "epoch %d/%d ", p->epoch, p->epochs);
    printf("%s%s[%s] %lld/%lld  %s  ETA %.0fs%s", p->tty ? "\r" : "", epoch, bar,
           (long long)done, (long long)p->total, stats, eta, p->tty ? "\033[K" : "\n");
    fflush(stdout);
}

void progress_end(progress *p) {
    if (p->tty) putchar('\n');
    fflush(stdout);
}

/* ---- log ---- */

bool epoch_log_open(epoch_log *log, const char *path, bool append) {
    log->f = NULL;
    if (!path) return true;
    log->f = fopen(path, append ? "a" : "w");
    if (!log->f) return false;
    if (ftell(log->f) == 0)
        fprintf(log->f, "epoch,step,loss,train_accuracy,test_accuracy,samples_per_s,lr,seconds\n");
    fflush(log->f);
    return true;
}

void epoch_log_write(epoch_log *log, int epoch, int64_t step, double loss, double train_acc,
                     double test_acc, double samples_per_s, double lr, double seconds) {
    if (!log->f) return;
    fprintf(log->f, "%d,%lld,%.6f,%.6f,%.6f,%.1f,%.8g,%.3f\n", epoch, (long long)step, loss,
            train_acc, test_acc, samples_per_s, lr, seconds);
    fflush(log->f);
}

void epoch_log_close(epoch_log *log) {
    if (log->f) fclose(log->f);
    log->f = NULL;
}
