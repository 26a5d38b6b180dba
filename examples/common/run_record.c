/* The run record the training examples keep in their checkpoints' metadata ("run.*"
 * entries): the flags that define a run, how far it got, and where its data loader stands, so
 * --resume continues exactly that run (train_cli.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "train_cli.h"

typedef enum value_kind { VALUE_INT, VALUE_FLOAT, VALUE_TEXT } value_kind;

/* The flags a run is made of: a resumed run takes them from its record. */
typedef struct recorded_flag {
    const char *key;
    train_flag flag;
    value_kind kind;
} recorded_flag;

static const recorded_flag recorded[] = {
    {"run.batch", FLAG_BATCH, VALUE_INT},
    {"run.lr", FLAG_LR, VALUE_FLOAT},
    {"run.optimizer", FLAG_OPTIMIZER, VALUE_TEXT},
    {"run.loss", FLAG_LOSS, VALUE_TEXT},
    {"run.seed", FLAG_SEED, VALUE_INT},
    {"run.schedule_epochs", FLAG_SCHEDULE_EPOCHS, VALUE_INT},
    {"run.train_limit", FLAG_TRAIN_LIMIT, VALUE_INT},
    {"run.arch", FLAG_ARCH, VALUE_TEXT},
};
#define N_RECORDED (sizeof recorded / sizeof *recorded)

/* The flag's value as the record writes it. */
static void flag_text(const train_flags *f, train_flag flag, char *out, size_t size) {
    switch (flag) {
    case FLAG_BATCH:
        snprintf(out, size, "%d", f->batch);
        break;
    case FLAG_LR:
        snprintf(out, size, "%.9g", (double)f->lr);
        break;
    case FLAG_OPTIMIZER:
        snprintf(out, size, "%s", f->optimizer);
        break;
    case FLAG_LOSS:
        snprintf(out, size, "%s", f->loss);
        break;
    case FLAG_SEED:
        snprintf(out, size, "%llu", (unsigned long long)f->seed);
        break;
    case FLAG_SCHEDULE_EPOCHS:
        snprintf(out, size, "%d", f->schedule_epochs);
        break;
    case FLAG_TRAIN_LIMIT:
        snprintf(out, size, "%lld", (long long)f->train_limit);
        break;
    case FLAG_ARCH:
        snprintf(out, size, "%s", f->arch ? f->arch : "");
        break;
    default:
        out[0] = '\0';
    }
}

void run_record_make(run_record *rec, const train_cli *cli, const train_flags *f, int epochs_done,
                     int64_t step, int64_t data_epoch, int64_t data_batch) {
    rec->n = 0;
#define ENTRY(k, ...)                                                                          \
    do {                                                                                       \
        snprintf(rec->text[rec->n], sizeof rec->text[rec->n], __VA_ARGS__);                    \
        rec->entries[rec->n] = (clg_checkpoint_entry){k, rec->text[rec->n]};                   \
        rec->n++;                                                                              \
    } while (0)
    ENTRY("run.program", "%s", cli->program);
    ENTRY("run.epochs_done", "%d", epochs_done);
    ENTRY("run.step", "%lld", (long long)step);
    ENTRY("run.data_epoch", "%lld", (long long)data_epoch);
    ENTRY("run.data_batch", "%lld", (long long)data_batch);
#undef ENTRY
    for (size_t i = 0; i < N_RECORDED; ++i) {
        if (recorded[i].flag == FLAG_ARCH && !cli->has_arch) continue;
        flag_text(f, recorded[i].flag, rec->text[rec->n], sizeof rec->text[rec->n]);
        rec->entries[rec->n] = (clg_checkpoint_entry){recorded[i].key, rec->text[rec->n]};
        rec->n++;
    }
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Text flags point at these copies: the record's strings go with the checkpoint info. */
static char kept_text[N_RECORDED][64];

static bool set_flag(train_flags *f, const recorded_flag *r, const char *v, char *keep,
                     size_t keep_size) {
    int64_t n;
    switch (r->flag) {
    case FLAG_BATCH:
        if (!parse_i64(v, 1, 65536, &n)) return false;
        f->batch = (int)n;
        return true;
    case FLAG_LR: {
        char *end;
        errno = 0;
        float x = strtof(v, &end);
        if (errno || end == v || *end || !(x > 0.0f)) return false;
        f->lr = x;
        return true;
    }
    case FLAG_SEED:
        if (!parse_i64(v, 0, 0x7FFFFFFF, &n)) return false;
        f->seed = (uint64_t)n;
        return true;
    case FLAG_SCHEDULE_EPOCHS:
        if (!parse_i64(v, 1, 100000, &n)) return false;
        f->schedule_epochs = (int)n;
        return true;
    case FLAG_TRAIN_LIMIT:
        if (!parse_i64(v, 0, 0x7FFFFFFF, &n)) return false;
        f->train_limit = n;
        return true;
    case FLAG_OPTIMIZER:
    case FLAG_LOSS:
    case FLAG_ARCH:
        if (strlen(v) + 1 > keep_size) return false;
        strcpy(keep, v);
        if (r->flag == FLAG_OPTIMIZER) f->optimizer = keep;
        else if (r->flag == FLAG_LOSS) f->loss = keep;
        else f->arch = keep;
        return true;
    default:
        return false;
    }
}

static const char *flag_option(train_flag flag) {
    for (size_t i = 0; i < N_RECORDED; ++i)
        if (recorded[i].flag == flag) return recorded[i].key + 4; /* "run.lr" -> "lr" */
    return "?";
}

int run_record_apply(const train_cli *cli, train_flags *f) {
    clg_checkpoint_info *info = NULL;
    if (clg_checkpoint_info_read(f->resume, &info) != CLG_OK) {
        fprintf(stderr, "error: --resume: %s\n", clg_last_error());
        return 1;
    }
    int rc = 0;
    const char *program = clg_checkpoint_info_get(info, "run.program");
    if (!program || strcmp(program, cli->program) != 0) {
        fprintf(stderr,
                "error: --resume %s: %s; it cannot continue here (use --load to start a new run "
                "from its weights)\n",
                f->resume, program ? "the checkpoint was written by another program" : "the "
                "checkpoint holds no run record (it was not written by a training run)");
        if (program) fprintf(stderr, "  written by: %s\n", program);
        clg_checkpoint_info_free(info);
        return 1;
    }
    for (size_t i = 0; i < N_RECORDED && rc == 0; ++i) {
        const recorded_flag *r = &recorded[i];
        if (r->flag == FLAG_ARCH && !cli->has_arch) continue;
        const char *v = clg_checkpoint_info_get(info, r->key);
        if (!v) {
            fprintf(stderr, "error: --resume %s: the run record lacks %s\n", f->resume, r->key);
            rc = 1;
            break;
        }
        char mine[64];
        flag_text(f, r->flag, mine, sizeof mine);
        if (f->given[r->flag] && strcmp(mine, v) != 0) {
            fprintf(stderr,
                    "%s: --%s %s: the run in %s used %s; --resume continues that run unchanged "
                    "(use --load %s to start a new run from its weights)\n",
                    cli->program, flag_option(r->flag), mine, f->resume, v, f->resume);
            rc = 2;
        } else if (!set_flag(f, r, v, kept_text[i], sizeof kept_text[i])) {
            fprintf(stderr, "error: --resume %s: run record %s = \"%s\" is not valid\n",
                    f->resume, r->key, v);
            rc = 1;
        }
    }
    int64_t done = 0, step = 0, data_epoch = 0, data_batch = 0;
    if (rc == 0 &&
        (!parse_i64(clg_checkpoint_info_get(info, "run.epochs_done"), 0, 100000, &done) ||
         !parse_i64(clg_checkpoint_info_get(info, "run.step"), 0, INT64_MAX, &step) ||
         !parse_i64(clg_checkpoint_info_get(info, "run.data_epoch"), 0, 100000, &data_epoch) ||
         !parse_i64(clg_checkpoint_info_get(info, "run.data_batch"), 0, INT64_MAX, &data_batch))) {
        fprintf(stderr, "error: --resume %s: the run record's progress entries are missing or "
                        "malformed\n",
                f->resume);
        rc = 1;
    }
    if (rc == 0 && f->epochs < done) {
        fprintf(stderr, "%s: --epochs %d: the run in %s has already trained %lld epochs\n",
                cli->program, f->epochs, f->resume, (long long)done);
        rc = 2;
    }
    f->resume_epochs_done = (int)done;
    f->resume_step = step;
    f->resume_data_epoch = data_epoch;
    f->resume_data_batch = data_batch;
    clg_checkpoint_info_free(info);
    return rc;
}
