/* The shared MNIST training loop (classifier.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"

#define EVAL_BATCH 500

typedef struct session {
    const classifier_model *m;
    const train_flags *f;
    clg_context *ctx;
    clg_dataset *train, *test;
    clg_optimizer *opt;
    clg_graph *tg, *eg;
    clg_plan *tp, *ep;
    clg_tensor *tx, *ty, *loss, *correct, *ex, *pred;
    clg_loader *train_loader, *test_loader;
    int classes;
} session;

static int fail(const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, clg_last_error());
    return 1;
}

static clg_status load_data(session *s) {
    clg_status st = clg_dataset_load_mnist(s->f->data, true, &s->train);
    if (st == CLG_OK) st = clg_dataset_load_mnist(s->f->data, false, &s->test);
    /* A label the model has no output for would train on NaN: refuse it before any work,
     * naming the file and the item. */
    if (st == CLG_OK) st = clg_dataset_check_labels(s->train, s->m->classes);
    if (st == CLG_OK) st = clg_dataset_check_labels(s->test, s->m->classes);
    if (st != CLG_OK) return st;
    if (s->f->train_limit && s->f->train_limit < clg_dataset_size(s->train)) {
        clg_dataset *sub = NULL;
        st = clg_dataset_subset(s->train, 0, s->f->train_limit, &sub);
        if (st != CLG_OK) return st;
        clg_dataset_free(s->train);
        s->train = sub;
    }
    /* normalise both splits with the training set's statistics */
    float mean, std;
    clg_dataset_stats(s->train, &mean, &std);
    st = clg_dataset_normalize(s->train, mean, std);
    if (st == CLG_OK) st = clg_dataset_normalize(s->test, mean, std);
    s->classes = s->m->classes;
    return st;
}

static clg_optimizer_kind optimizer_kind(const char *name) {
    if (strcmp(name, "sgd") == 0) return CLG_OPT_SGD;
    if (strcmp(name, "adamw") == 0) return CLG_OPT_ADAMW;
    if (strcmp(name, "rmsprop") == 0) return CLG_OPT_RMSPROP;
    return CLG_OPT_ADAM;
}

/* Cosine decay after a short linear warm-up over the whole run: the warm-up keeps Adam's
 * first, poorly-estimated steps small; the decay lets the last epochs settle into a minimum
 * instead of bouncing around it at full step size. */
static clg_optimizer_config optimizer_config(const classifier_model *m, const train_flags *f,
                                             int64_t steps_per_epoch) {
    clg_optimizer_config c = clg_optimizer_defaults(optimizer_kind(f->optimizer));
    c.lr = f->lr;
    c.clip_norm = m->clip_norm;
    if (c.kind == CLG_OPT_SGD) c.momentum = 0.9f;
    int64_t total = steps_per_epoch * f->schedule_epochs;
    if (total > 1) {
        c.schedule = CLG_LR_COSINE;
        c.warmup_steps = steps_per_epoch / 4 < total - 1 ? steps_per_epoch / 4 : total - 1;
        c.total_steps = total;
        c.min_lr = 0.0f;
    }
    return c;
}

static clg_status build_plans(session *s) {
    const classifier_model *m = s->m;
    const train_flags *f = s->f;
    int64_t shape[4] = {f->batch};
    memcpy(shape + 1, m->sample_shape, (size_t)m->sample_ndim * sizeof *shape);
    const int64_t b = f->batch;

    s->tg = clg_graph_new(s->ctx);
    s->tx = clg_input(s->tg, "x", CLG_F32, m->sample_ndim + 1, shape);
    s->ty = clg_input(s->tg, "y", CLG_I32, 1, &b);
    clg_tensor *logits = m->forward(s->tg, m->model, s->tx, true, f);
    if (strcmp(f->loss, "mse") == 0)
        s->loss = clg_mse_loss(s->tg, logits, clg_one_hot(s->tg, s->ty, s->classes),
                               CLG_REDUCTION_MEAN);
    else
        s->loss = clg_cross_entropy(s->tg, logits, s->ty, CLG_REDUCTION_MEAN);
    s->correct = clg_accuracy_count(s->tg, logits, s->ty);
    clg_status st = clg_graph_output(s->tg, s->loss);
    if (st == CLG_OK) st = clg_graph_output(s->tg, s->correct);
    if (st == CLG_OK) st = clg_backward(s->tg, s->loss);
    if (st == CLG_OK)
        st = clg_optimizer_apply(s->opt, s->tg, NULL);
    if (st == CLG_OK) st = clg_graph_compile(s->tg, NULL, &s->tp);
    if (st != CLG_OK) return st;

    shape[0] = EVAL_BATCH;
    s->eg = clg_graph_new(s->ctx);
    s->ex = clg_input(s->eg, "x", CLG_F32, m->sample_ndim + 1, shape);
    s->pred = clg_argmax(s->eg, m->forward(s->eg, m->model, s->ex, false, f), 1, false);
    st = clg_graph_output(s->eg, s->pred);
    if (st == CLG_OK) st = clg_graph_compile(s->eg, NULL, &s->ep);
    return st;
}

/* Accuracy on the test set; fills confusion when given. */
static clg_status evaluate(session *s, clg_confusion *confusion, double *accuracy) {
    int32_t pred[EVAL_BATCH];
    int64_t right = 0, total = 0;
    clg_loader_start_epoch(s->test_loader, 0);
    clg_batch batch;
    while (clg_loader_next(s->test_loader, &batch)) {
        clg_status st = clg_batch_upload(&batch, s->test_loader, s->ep, s->ex, NULL);
        if (st == CLG_OK) st = clg_plan_run(s->ep);
        if (st == CLG_OK) st = clg_plan_read(s->ep, s->pred, pred, sizeof pred);
        if (st != CLG_OK) return st;
        for (int64_t i = 0; i < batch.rows; ++i) right += pred[i] == batch.labels[i];
        total += batch.rows;
        if (confusion) {
            st = clg_confusion_add(confusion, pred, batch.labels, batch.rows);
            if (st != CLG_OK) return st;
        }
    }
    *accuracy = total ? (double)right / (double)total : 0.0;
    return CLG_OK;
}

static void free_session(session *s) {
    clg_loader_free(s->train_loader);
    clg_loader_free(s->test_loader);
    clg_dataset_free(s->train);
    clg_dataset_free(s->test);
}

/* --resume restores weights, optimizer state, step count and random counter, and refuses a
 * file that does not fit (another optimizer kind or schedule); --load takes weights only. */
static int restore(session *s) {
    const train_flags *f = s->f;
    if (f->resume) {
        if (clg_checkpoint_load(s->ctx, f->resume, s->opt) != CLG_OK) {
            fprintf(stderr, "error: --resume: %s\n", clg_last_error());
            return 1;
        }
        printf("resumed %s after epoch %d (step %lld)\n", f->resume, f->resume_epochs_done,
               (long long)clg_optimizer_steps(s->opt));
        clg_loader_seek(s->train_loader, f->resume_data_epoch, f->resume_data_batch);
    } else if (f->load) {
        if (clg_checkpoint_load(s->ctx, f->load, NULL) != CLG_OK) {
            fprintf(stderr, "error: --load: %s\n", clg_last_error());
            return 1;
        }
        printf("loaded the weights of %s (a new run: fresh optimizer and schedule)\n", f->load);
    }
    return 0;
}

/* After every epoch: the checkpoint with the run record, so --resume continues from here. */
static int save_checkpoint(session *s, const char *path, int epochs_done, int64_t step) {
    int64_t data_epoch, data_batch;
    clg_loader_position(s->train_loader, &data_epoch, &data_batch);
    if (data_batch >= clg_loader_batches(s->train_loader)) {
        data_epoch++; /* the epoch is over: the next batch is the next epoch's first */
        data_batch = 0;
    }
    run_record rec;
    run_record_make(&rec, s->m->cli, s->f, epochs_done, step, data_epoch, data_batch);
    if (clg_checkpoint_save_meta(s->ctx, path, s->opt, rec.entries, rec.n) != CLG_OK) {
        fprintf(stderr, "error: saving the checkpoint: %s\n", clg_last_error());
        return 1;
    }
    return 0;
}

int classifier_run(const classifier_model *m, const train_flags *f, classifier_result *out) {
    double t_start = now_seconds();
    session s = {.m = m, .f = f};
    memset(out, 0, sizeof *out);
    if (load_data(&s) != CLG_OK) {
        free_session(&s);
        return fail("loading data");
    }
    clg_loader_options lo = {.batch_size = f->batch, .shuffle = true, .drop_last = true,
                             .seed = f->seed};
    clg_loader_options eo = {.batch_size = EVAL_BATCH};
    if (clg_loader_new(s.train, &lo, &s.train_loader) != CLG_OK ||
        clg_loader_new(s.test, &eo, &s.test_loader) != CLG_OK) {
        free_session(&s);
        return fail("batching data");
    }
    if (clg_context_create(f->device, &s.ctx) != CLG_OK) {
        free_session(&s);
        return fail("opening the device");
    }
    const clg_device_info *dev = clg_context_device(s.ctx);
    printf("device: %s (%s)\n", dev->name, dev->platform_name);
    printf("data: %lld training, %lld test images from %s\n",
           (long long)clg_dataset_size(s.train), (long long)clg_dataset_size(s.test), f->data);

    int64_t steps_per_epoch = clg_loader_batches(s.train_loader);
    clg_optimizer_config oc = optimizer_config(m, f, steps_per_epoch);
    s.opt = clg_optimizer_new(s.ctx, &oc);
    int rc = 0;
    if (!s.opt || m->init(s.ctx, m->model, f) != CLG_OK) {
        rc = fail("creating the model");
        goto done;
    }
    rc = restore(&s);
    if (rc) goto done;
    if (build_plans(&s) != CLG_OK) {
        rc = fail("building the model");
        goto done;
    }
    printf("model: %s, %zu kernels per training step, %.1f MiB of intermediates\n", m->name,
           clg_plan_kernel_count(s.tp), (double)clg_plan_peak_bytes(s.tp) / 1048576.0);

    char log_default[256], save_default[256];
    snprintf(log_default, sizeof log_default, "%s_log.csv", m->name);
    snprintf(save_default, sizeof save_default, "%s.safetensors", m->name);
    const char *log_path = f->log ? f->log : log_default;
    const char *save = f->save ? f->save : save_default;
    epoch_log log;
    if (!epoch_log_open(&log, log_path, f->resume != NULL)) {
        fprintf(stderr, "error: cannot write the log %s\n", log_path);
        rc = 1;
        goto done;
    }

    double train_time = 0.0; /* training steps only, without the first (compiling) step */
    int64_t train_samples = 0, step = f->resume ? f->resume_step : 0, run_steps = 0;
    for (int epoch = f->resume_epochs_done + 1; epoch <= f->epochs; ++epoch) {
        progress pr;
        int64_t first_batch = 0;
        if (epoch > f->resume_epochs_done + 1 || !f->resume)
            clg_loader_start_epoch(s.train_loader, epoch - 1);
        else
            clg_loader_position(s.train_loader, NULL, &first_batch);
        progress_start(&pr, epoch, f->epochs, steps_per_epoch);
        double loss_sum = 0.0, correct_sum = 0.0, t_epoch = now_seconds();
        int64_t seen = 0, done_batches = first_batch;
        clg_batch batch;
        while (clg_loader_next(s.train_loader, &batch)) {
            double t0 = now_seconds();
            float l = 0.0f, c = 0.0f;
            clg_status st = clg_batch_upload(&batch, s.train_loader, s.tp, s.tx, s.ty);
            if (st == CLG_OK) st = clg_plan_run(s.tp);
            if (st == CLG_OK) st = clg_plan_read(s.tp, s.loss, &l, sizeof l);
            if (st == CLG_OK) st = clg_plan_read(s.tp, s.correct, &c, sizeof c);
            if (st != CLG_OK) {
                progress_end(&pr);
                fprintf(stderr, "error: training step %lld (epoch %d, batch %lld): %s\n",
                        (long long)step + 1, epoch, (long long)batch.index + 1, clg_last_error());
                rc = 1;
                goto close_log;
            }
            /* A NaN loss would poison every parameter it reaches: stop now, before it is saved
             * over the last good checkpoint. */
            if (!isfinite(l)) {
                progress_end(&pr);
                fprintf(stderr,
                        "error: training step %lld (epoch %d, batch %lld): the loss is %s; "
                        "stopping without saving (%s keeps the last epoch's checkpoint, if "
                        "any). Run with CLGRAD_CHECK_FINITE=1 to find the op that first "
                        "produces a NaN or Inf.\n",
                        (long long)step + 1, epoch, (long long)batch.index + 1,
                        isnan(l) ? "NaN" : "infinite", save);
                rc = 1;
                goto close_log;
            }
            if (run_steps > 0) {
                train_time += now_seconds() - t0;
                train_samples += batch.rows;
            } else if (!pr.tty) {
                printf("first training step done %.2f s after start\n", now_seconds() - t_start);
            }
            step++;
            run_steps++;
            loss_sum += l * (double)batch.rows;
            correct_sum += c;
            seen += batch.rows;
            done_batches++;
            if (done_batches % 8 == 0 || done_batches == steps_per_epoch) {
                double sps = train_time > 0 ? (double)train_samples / train_time : 0.0;
                progress_update(&pr, done_batches, loss_sum / (double)seen, correct_sum / (double)seen,
                                sps);
            }
        }
        progress_end(&pr);
        double test_acc;
        if (evaluate(&s, NULL, &test_acc) != CLG_OK) {
            rc = fail("evaluating");
            goto close_log;
        }
        double sps = train_time > 0 ? (double)train_samples / train_time : 0.0;
        double mean_loss = seen ? loss_sum / (double)seen : 0.0;
        double train_acc = seen ? correct_sum / (double)seen : 0.0;
        rc = save_checkpoint(&s, save, epoch, step);
        if (rc) goto close_log;
        printf("epoch %d/%d: loss %.4f  train accuracy %.2f%%  test accuracy %.2f%%  (%.1f s), "
               "saved\n",
               epoch, f->epochs, mean_loss, 100.0 * train_acc, 100.0 * test_acc,
               now_seconds() - t_epoch);
        fflush(stdout);
        epoch_log_write(&log, epoch, step, mean_loss, train_acc, test_acc, sps,
                        clg_optimizer_lr(s.opt), now_seconds() - t_start);
    }

    clg_confusion *conf = NULL;
    double acc = 0.0;
    if (clg_confusion_new(s.classes, &conf) != CLG_OK || evaluate(&s, conf, &acc) != CLG_OK) {
        clg_confusion_free(conf);
        rc = fail("evaluating");
        goto close_log;
    }
    printf("\ntest accuracy %.2f%%\n\nconfusion matrix (rows: true label, columns: predicted)\n",
           100.0 * acc);
    clg_confusion_print(conf, stdout);
    clg_confusion_free(conf);
    out->test_accuracy = acc;
    out->samples_per_s = train_time > 0 ? (double)train_samples / train_time : 0.0;
    printf("\nwall time %.1f s\n", now_seconds() - t_start);
    if (run_steps == 0) {
        printf("nothing to train: the run in %s already has %d epochs\n", f->resume, f->epochs);
    } else {
        printf("training speed %.0f samples/s (first step, which compiles, excluded)\n",
               out->samples_per_s);
        printf("checkpoint saved to %s after every epoch, per-epoch log in %s\n", save, log_path);
    }

close_log:
    epoch_log_close(&log);
done:
    if (rc == 0 && out) {
        out->ctx = s.ctx;
        out->test = s.test;
        s.test = NULL;
    } else {
        clg_context_free(s.ctx);
    }
    free_session(&s);
    return rc;
}
