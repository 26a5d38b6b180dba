/* Metrics: the count of correct predictions on the device (argmax compared with the labels,
 * summed in the same reduction kernel) and a confusion matrix on the host. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/nn.h"
#include "core/error.h"
#include "graph/graph_internal.h"
#include "ops/node.h"

clg_tensor *clg_accuracy_count(clg_graph *g, clg_tensor *logits, clg_tensor *labels) {
    CLG_GUARD(g, "accuracy_count", 2, logits, labels);
    char a[200], b[200];
    if (labels->dtype != CLG_I32)
        return clg_graph_fail(g, CLG_ERR_DTYPE, "accuracy_count: labels must be i32, got %s",
                              clg_tensor_describe(labels, b, sizeof b));
    if (logits->ndim < 1 || labels->ndim != logits->ndim - 1 ||
        memcmp(labels->shape, logits->shape, (size_t)labels->ndim * sizeof *labels->shape) != 0)
        return clg_graph_fail(g, CLG_ERR_SHAPE,
                              "accuracy_count: logits %s and labels %s: labels must have the "
                              "logits' shape without the last (class) axis",
                              clg_shape_str(logits->ndim, logits->shape, a, sizeof a),
                              clg_shape_str(labels->ndim, labels->shape, b, sizeof b));
    clg_tensor *pred = clg_argmax(g, logits, -1, false);
    return clg_sum(g, clg_eq(g, pred, labels), 0, NULL, false);
}

struct clg_confusion {
    int classes;
    int64_t total;
    int64_t *counts; /* [label * classes + predicted] */
};

#define MAX_CLASSES 65536

clg_status clg_confusion_new(int classes, clg_confusion **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_confusion_new: out is NULL");
    *out = NULL;
    if (classes < 1 || classes > MAX_CLASSES)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_confusion_new: %d classes (need 1 to %d)", classes, MAX_CLASSES);
    clg_confusion *c = calloc(1, sizeof *c);
    int64_t *counts = calloc((size_t)classes * (size_t)classes, sizeof *counts);
    if (!c || !counts) {
        free(c);
        free(counts);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_confusion_new: out of host memory for %d "
                        "classes", classes);
    }
    c->classes = classes;
    c->counts = counts;
    *out = c;
    return CLG_OK;
}

void clg_confusion_free(clg_confusion *c) {
    if (!c) return;
    free(c->counts);
    free(c);
}

clg_status clg_confusion_add(clg_confusion *c, const int32_t *predicted, const int32_t *labels,
                             int64_t n) {
    if (!c || n < 0 || (n > 0 && (!predicted || !labels)))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_confusion_add: bad arguments");
    for (int64_t i = 0; i < n; ++i) {
        if (labels[i] < 0 || labels[i] >= c->classes || predicted[i] < 0 ||
            predicted[i] >= c->classes)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                            "clg_confusion_add: pair %" PRId64 " (label %d, predicted %d) is "
                            "outside the %d classes; nothing of this call was counted",
                            i, (int)labels[i], (int)predicted[i], c->classes);
    }
    for (int64_t i = 0; i < n; ++i)
        c->counts[(size_t)labels[i] * (size_t)c->classes + (size_t)predicted[i]]++;
    c->total += n;
    return CLG_OK;
}

void clg_confusion_reset(clg_confusion *c) {
    if (!c) return;
    memset(c->counts, 0, (size_t)c->classes * (size_t)c->classes * sizeof *c->counts);
    c->total = 0;
}

int clg_confusion_classes(const clg_confusion *c) {
    return c ? c->classes : 0;
}

int64_t clg_confusion_total(const clg_confusion *c) {
    return c ? c->total : 0;
}

int64_t clg_confusion_count(const clg_confusion *c, int label, int predicted) {
    if (!c || label < 0 || label >= c->classes || predicted < 0 || predicted >= c->classes)
        return 0;
    return c->counts[(size_t)label * (size_t)c->classes + (size_t)predicted];
}

double clg_confusion_accuracy(const clg_confusion *c) {
    if (!c || c->total == 0) return 0.0;
    int64_t correct = 0;
    for (int k = 0; k < c->classes; ++k) correct += clg_confusion_count(c, k, k);
    return (double)correct / (double)c->total;
}

double clg_confusion_recall(const clg_confusion *c, int label) {
    if (!c || label < 0 || label >= c->classes) return 0.0;
    int64_t row = 0;
    for (int p = 0; p < c->classes; ++p) row += clg_confusion_count(c, label, p);
    return row ? (double)clg_confusion_count(c, label, label) / (double)row : 0.0;
}

static int digits(int64_t v) {
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

clg_status clg_confusion_print(const clg_confusion *c, FILE *f) {
    if (!c || !f) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_confusion_print: NULL argument");
    /* one width for every count column: the widest count or class number */
    int64_t widest = c->classes - 1;
    size_t cells = (size_t)c->classes * (size_t)c->classes;
    for (size_t i = 0; i < cells; ++i)
        if (c->counts[i] > widest) widest = c->counts[i];
    int w = digits(widest), lw = digits(c->classes - 1);
    if (lw < 5) lw = 5; /* "label" */
    fprintf(f, "%*s  predicted\n", lw, "");
    fprintf(f, "%*s ", lw, "label");
    for (int p = 0; p < c->classes; ++p) fprintf(f, " %*d", w, p);
    fprintf(f, "  recall\n");
    for (int k = 0; k < c->classes; ++k) {
        fprintf(f, "%*d ", lw, k);
        for (int p = 0; p < c->classes; ++p)
            fprintf(f, " %*" PRId64, w, clg_confusion_count(c, k, p));
        fprintf(f, "  %5.1f%%\n", 100.0 * clg_confusion_recall(c, k));
    }
    fprintf(f, "accuracy %.2f%% of %" PRId64 "\n", 100.0 * clg_confusion_accuracy(c), c->total);
    if (ferror(f)) return clg_fail(CLG_ERR_IO, "clg_confusion_print: write error");
    return CLG_OK;
}
