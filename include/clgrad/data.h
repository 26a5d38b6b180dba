/* Datasets on the host and batches on their way to the device.
 * IDX files (MNIST's format, gzip-compressed or not), a labelled in-memory dataset, and a
 * seeded shuffling batch loader that fills a plan's inputs without allocating per step.
 * Ownership: objects returned through an out pointer belong to the caller and are released
 * with their _free function; _free(NULL) is a no-op. */
#ifndef CLGRAD_DATA_H
#define CLGRAD_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* IDX element type codes, as in the file format. */
typedef enum clg_idx_type {
    CLG_IDX_U8 = 0x08,
    CLG_IDX_I8 = 0x09,
    CLG_IDX_I16 = 0x0B,
    CLG_IDX_I32 = 0x0C,
    CLG_IDX_F32 = 0x0D,
    CLG_IDX_F64 = 0x0E
} clg_idx_type;

/* A decoded IDX file. data holds count elements of type, converted to host byte order. */
typedef struct clg_idx {
    clg_idx_type type;
    int ndim;
    int64_t dims[CLG_MAX_DIMS];
    int64_t count; /* product of dims */
    void *data;
} clg_idx;

/* Read an IDX file; gzip is detected from the content, not the name. A missing, truncated,
 * oversized or wrong-magic file is CLG_ERR_IO / CLG_ERR_FORMAT with a message naming the file
 * and what is wrong. */
clg_status clg_idx_load(const char *path, clg_idx **out);
void clg_idx_free(clg_idx *idx);

/* A labelled dataset: n samples of float features (each of shape sample_shape) and i32
 * labels. */
typedef struct clg_dataset clg_dataset;

/* Build a dataset from host arrays (copied): features n * prod(sample_shape) floats, labels n
 * ints (labels may be NULL: all 0). */
clg_status clg_dataset_from_arrays(int64_t n, int sample_ndim, const int64_t *sample_shape,
                                   const float *features, const int32_t *labels,
                                   clg_dataset **out);
/* Pair an IDX image file (u8, [n, ...]) and label file (u8, [n]); pixels scaled to [0, 1].
 * Counts that disagree are CLG_ERR_FORMAT naming both files. */
clg_status clg_dataset_load_idx(const char *images_path, const char *labels_path,
                                clg_dataset **out);
/* MNIST layout in dir: {train,t10k}-{images-idx3,labels-idx1}-ubyte, with or without .gz
 * (also Fashion-MNIST and KMNIST, which use the same names). */
clg_status clg_dataset_load_mnist(const char *dir, bool train, clg_dataset **out);
void clg_dataset_free(clg_dataset *ds);

int64_t clg_dataset_size(const clg_dataset *ds);
int clg_dataset_sample_ndim(const clg_dataset *ds);
const int64_t *clg_dataset_sample_shape(const clg_dataset *ds);
int64_t clg_dataset_sample_numel(const clg_dataset *ds);
const float *clg_dataset_features(const clg_dataset *ds);
const int32_t *clg_dataset_labels(const clg_dataset *ds);
/* Number of classes: 1 + the largest label. */
int32_t clg_dataset_num_classes(const clg_dataset *ds);
/* Check every label against a model's class count before training: a label outside
 * [0, classes) is CLG_ERR_FORMAT naming the label file and the item number in it (for a
 * dataset made from arrays, CLG_ERR_INVALID_ARGUMENT naming the index). */
clg_status clg_dataset_check_labels(const clg_dataset *ds, int32_t classes);

/* Keep samples [start, start + count) (copied into a new dataset). */
clg_status clg_dataset_subset(const clg_dataset *ds, int64_t start, int64_t count,
                              clg_dataset **out);
/* (x - mean) / std on every feature, in place; std must be > 0. */
clg_status clg_dataset_normalize(clg_dataset *ds, float mean, float std);
/* Per-feature mean and std over the whole dataset (for normalising by training statistics). */
void clg_dataset_stats(const clg_dataset *ds, float *mean, float *std);

/* Batches. With drop_last false the last batch of an epoch may hold fewer rows: its unused
 * rows are zero-filled and clg_batch.rows says how many are real. */
typedef struct clg_loader_options {
    int64_t batch_size;
    bool shuffle;
    bool drop_last;
    uint64_t seed; /* epoch e shuffles with a permutation derived from (seed, e) */
} clg_loader_options;

typedef struct clg_batch {
    const float *features; /* batch_size * sample_numel floats, owned by the loader */
    const int32_t *labels; /* batch_size labels, owned by the loader */
    int64_t rows;          /* real rows in this batch (<= batch_size) */
    int64_t index;         /* batch number within the epoch */
} clg_batch;

typedef struct clg_loader clg_loader;

/* The loader borrows ds, which must outlive it. */
clg_status clg_loader_new(const clg_dataset *ds, const clg_loader_options *opts,
                          clg_loader **out);
void clg_loader_free(clg_loader *loader);
/* Start epoch `epoch` (reshuffles if shuffle is on). */
void clg_loader_start_epoch(clg_loader *loader, int64_t epoch);
/* Start epoch `epoch` at batch `batch` (0 .. batches): where a resumed run left off. The
 * order depends on (seed, epoch) only, so the batches that follow are the ones an
 * uninterrupted run would have seen. */
clg_status clg_loader_seek(clg_loader *loader, int64_t epoch, int64_t batch);
/* The current epoch and the next batch's number in it (what a checkpoint records). */
void clg_loader_position(const clg_loader *loader, int64_t *epoch, int64_t *batch);
/* Next batch of the current epoch into *batch; false at the end of the epoch. */
bool clg_loader_next(clg_loader *loader, clg_batch *batch);
/* Batches per epoch. */
int64_t clg_loader_batches(const clg_loader *loader);
/* Queue the batch's features and labels into a plan's inputs (x: f32 [batch, sample...],
 * y: i32 [batch]; either may be NULL). No per-step allocation. */
clg_status clg_batch_upload(const clg_batch *batch, const clg_loader *loader, clg_plan *plan,
                            const clg_tensor *x, const clg_tensor *y);

#ifdef __cplusplus
}
#endif

#endif
