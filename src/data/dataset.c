/* Labelled in-memory datasets (from arrays or IDX files, MNIST's layout included) and the
 * seeded batch loader that copies shuffled rows into staging buffers allocated once and
 * queues them into a plan's inputs. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clgrad/data.h"
#include "core/error.h"

struct clg_dataset {
    int64_t n;
    int sample_ndim;
    int64_t sample_shape[CLG_MAX_DIMS];
    int64_t sample_numel;
    float *features; /* (n, sample_numel) */
    int32_t *labels; /* (n) */
    /* Where the labels came from, for messages: the label file (NULL: host arrays), and the
     * item number in it of sample 0 (a subset starts further in). */
    char *labels_source;
    int64_t source_first;
};

struct clg_loader {
    const clg_dataset *ds;
    clg_loader_options opts;
    int64_t batches;
    int64_t epoch;   /* current epoch */
    int64_t next;    /* next batch of the current epoch */
    int64_t *order;  /* sample order of the current epoch */
    float *features; /* (batch_size, sample_numel) staging */
    int32_t *labels; /* (batch_size) staging */
};

/* Allocates an empty dataset of n samples with the given sample shape (validated). */
static clg_status dataset_alloc(int64_t n, int sample_ndim, const int64_t *sample_shape,
                                const char *who, clg_dataset **out) {
    if (n < 0)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: n is negative (%lld)", who, (long long)n);
    /* Batches add a leading dimension, so a sample has at most CLG_MAX_DIMS - 1. */
    if (sample_ndim < 0 || sample_ndim > CLG_MAX_DIMS - 1 || (sample_ndim > 0 && !sample_shape))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "%s: sample_ndim %d out of range 0..%d (or sample_shape NULL)", who,
                        sample_ndim, CLG_MAX_DIMS - 1);
    int64_t numel = 1;
    for (int d = 0; d < sample_ndim; ++d) {
        if (sample_shape[d] < 1)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: sample dimension %d is %lld", who, d,
                            (long long)sample_shape[d]);
        if (numel > INT64_MAX / sample_shape[d])
            return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: sample shape too large", who);
        numel *= sample_shape[d];
    }
    if (n && (uint64_t)numel > SIZE_MAX / sizeof(float) / (uint64_t)n)
        return clg_fail(CLG_ERR_OUT_OF_MEMORY,
                        "%s: %lld samples of %lld features do not fit in "
                        "memory",
                        who, (long long)n, (long long)numel);
    clg_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", who);
    ds->n = n;
    ds->sample_ndim = sample_ndim;
    for (int d = 0; d < sample_ndim; ++d)
        ds->sample_shape[d] = sample_shape[d];
    ds->sample_numel = numel;
    size_t nf = (size_t)n * (size_t)numel;
    ds->features = malloc(nf ? nf * sizeof(float) : 1);
    ds->labels = calloc(n ? (size_t)n : 1, sizeof(int32_t));
    if (!ds->features || !ds->labels) {
        clg_dataset_free(ds);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: cannot allocate %lld samples of %lld floats",
                        who, (long long)n, (long long)numel);
    }
    *out = ds;
    return CLG_OK;
}

void clg_dataset_free(clg_dataset *ds) {
    if (!ds) return;
    free(ds->features);
    free(ds->labels);
    free(ds->labels_source);
    free(ds);
}

static clg_status set_source(clg_dataset *ds, const char *source, int64_t first) {
    ds->source_first = first;
    if (!source) return CLG_OK;
    ds->labels_source = malloc(strlen(source) + 1);
    if (!ds->labels_source) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", source);
    strcpy(ds->labels_source, source);
    return CLG_OK;
}

clg_status clg_dataset_from_arrays(int64_t n, int sample_ndim, const int64_t *sample_shape,
                                   const float *features, const int32_t *labels,
                                   clg_dataset **out) {
    static const char who[] = "clg_dataset_from_arrays";
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: out is NULL", who);
    *out = NULL;
    if (n > 0 && !features) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: features is NULL", who);
    /* Labels index classes on the device (cross-entropy, one-hot); a negative one would index
     * outside a row there, so it is refused here where the message can say which. */
    for (int64_t i = 0; labels && i < n; ++i)
        if (labels[i] < 0)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: label %lld is negative (%d)", who,
                            (long long)i, (int)labels[i]);
    clg_dataset *ds;
    clg_status st = dataset_alloc(n, sample_ndim, sample_shape, who, &ds);
    if (st != CLG_OK) return st;
    size_t nf = (size_t)n * (size_t)ds->sample_numel;
    if (nf) memcpy(ds->features, features, nf * sizeof(float));
    if (labels && n) memcpy(ds->labels, labels, (size_t)n * sizeof(int32_t));
    *out = ds;
    return CLG_OK;
}

/* Label value i of an integer IDX file, widened to 64 bits. */
static int64_t idx_label(const clg_idx *idx, int64_t i) {
    switch (idx->type) {
    case CLG_IDX_U8:
        return ((const uint8_t *)idx->data)[i];
    case CLG_IDX_I8:
        return ((const int8_t *)idx->data)[i];
    case CLG_IDX_I16:
        return ((const int16_t *)idx->data)[i];
    default:
        return ((const int32_t *)idx->data)[i];
    }
}

static const char *idx_type_name(clg_idx_type type) {
    switch (type) {
    case CLG_IDX_U8:
        return "u8";
    case CLG_IDX_I8:
        return "i8";
    case CLG_IDX_I16:
        return "i16";
    case CLG_IDX_I32:
        return "i32";
    case CLG_IDX_F32:
        return "f32";
    case CLG_IDX_F64:
        return "f64";
    }
    return "?";
}

static clg_status pair_idx(const clg_idx *images, const char *images_path, const clg_idx *labels,
                           const char *labels_path, clg_dataset **out) {
    if (images->type != CLG_IDX_U8)
        return clg_fail(CLG_ERR_FORMAT, "%s: images must be u8, the file holds %s", images_path,
                        idx_type_name(images->type));
    if (images->ndim < 2)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: images must be [n, ...] with at least 2 dimensions; the file is 1-D "
                        "(is it a label file?)",
                        images_path);
    if (labels->ndim != 1)
        return clg_fail(CLG_ERR_FORMAT,
                        "%s: labels must be 1-D [n]; the file has %d dimensions (is it an "
                        "image file?)",
                        labels_path, labels->ndim);
    if (labels->type == CLG_IDX_F32 || labels->type == CLG_IDX_F64)
        return clg_fail(CLG_ERR_FORMAT, "%s: labels must be integers, the file holds %s",
                        labels_path, idx_type_name(labels->type));
    if (images->dims[0] != labels->dims[0])
        return clg_fail(CLG_ERR_FORMAT,
                        "%s holds %lld images but %s holds %lld labels; they do not belong "
                        "together",
                        images_path, (long long)images->dims[0], labels_path,
                        (long long)labels->dims[0]);
    int64_t n = images->dims[0];
    for (int64_t i = 0; i < n; ++i) {
        int64_t v = idx_label(labels, i);
        if (v < 0)
            return clg_fail(CLG_ERR_FORMAT, "%s: label %lld is negative (%lld)", labels_path,
                            (long long)i, (long long)v);
    }
    clg_dataset *ds;
    clg_status st =
        dataset_alloc(n, images->ndim - 1, images->dims + 1, "clg_dataset_load_idx", &ds);
    if (st != CLG_OK) return st;
    const uint8_t *px = images->data;
    size_t total = (size_t)images->count;
    for (size_t i = 0; i < total; ++i)
        ds->features[i] = (float)px[i] / 255.0f;
    for (int64_t i = 0; i < n; ++i)
        ds->labels[i] = (int32_t)idx_label(labels, i);
    st = set_source(ds, labels_path, 0);
    if (st != CLG_OK) {
        clg_dataset_free(ds);
        return st;
    }
    *out = ds;
    return CLG_OK;
}

clg_status clg_dataset_load_idx(const char *images_path, const char *labels_path,
                                clg_dataset **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dataset_load_idx: out is NULL");
    *out = NULL;
    if (!images_path || !labels_path)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dataset_load_idx: a path is NULL");
    clg_idx *images = NULL, *labels = NULL;
    clg_status st = clg_idx_load(images_path, &images);
    if (st == CLG_OK) st = clg_idx_load(labels_path, &labels);
    if (st == CLG_OK) st = pair_idx(images, images_path, labels, labels_path, out);
    clg_idx_free(images);
    clg_idx_free(labels);
    return st;
}

/* dir/base, or dir/base.gz; a message naming both if neither exists. */
static clg_status find_file(const char *dir, const char *base, char *path, size_t size) {
    struct stat sb;
    snprintf(path, size, "%s/%s", dir, base);
    if (stat(path, &sb) == 0) return CLG_OK;
    snprintf(path, size, "%s/%s.gz", dir, base);
    if (stat(path, &sb) == 0) return CLG_OK;
    return clg_fail(CLG_ERR_IO, "cannot find %s/%s or %s/%s.gz", dir, base, dir, base);
}

clg_status clg_dataset_load_mnist(const char *dir, bool train, clg_dataset **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dataset_load_mnist: out is NULL");
    *out = NULL;
    if (!dir) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dataset_load_mnist: dir is NULL");
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return clg_fail(CLG_ERR_IO, "MNIST directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return clg_fail(CLG_ERR_IO, "MNIST directory %s: not a directory", dir);
    const char *split = train ? "train" : "t10k";
    char images_base[64], labels_base[64];
    snprintf(images_base, sizeof images_base, "%s-images-idx3-ubyte", split);
    snprintf(labels_base, sizeof labels_base, "%s-labels-idx1-ubyte", split);
    size_t len = strlen(dir) + 80;
    char *images = malloc(len), *labels = malloc(len);
    clg_status st = CLG_OK;
    if (!images || !labels)
        st = clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_dataset_load_mnist: out of memory");
    if (st == CLG_OK) st = find_file(dir, images_base, images, len);
    if (st == CLG_OK) st = find_file(dir, labels_base, labels, len);
    if (st == CLG_OK) st = clg_dataset_load_idx(images, labels, out);
    free(images);
    free(labels);
    return st;
}

int64_t clg_dataset_size(const clg_dataset *ds) {
    return ds ? ds->n : 0;
}

int clg_dataset_sample_ndim(const clg_dataset *ds) {
    return ds ? ds->sample_ndim : 0;
}

const int64_t *clg_dataset_sample_shape(const clg_dataset *ds) {
    return ds ? ds->sample_shape : NULL;
}

int64_t clg_dataset_sample_numel(const clg_dataset *ds) {
    return ds ? ds->sample_numel : 0;
}

const float *clg_dataset_features(const clg_dataset *ds) {
    return ds ? ds->features : NULL;
}

const int32_t *clg_dataset_labels(const clg_dataset *ds) {
    return ds ? ds->labels : NULL;
}

int32_t clg_dataset_num_classes(const clg_dataset *ds) {
    if (!ds) return 0;
    int32_t max = -1;
    for (int64_t i = 0; i < ds->n; ++i)
        if (ds->labels[i] > max) max = ds->labels[i];
    return max + 1;
}

clg_status clg_dataset_check_labels(const clg_dataset *ds, int32_t classes) {
    if (!ds || classes < 1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_dataset_check_labels: need a dataset and classes >= 1");
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < ds->n; ++i)
        if (ds->labels[i] < 0 || ds->labels[i] >= classes) {
            if (first < 0) first = i;
            bad++;
        }
    if (first < 0) return CLG_OK;
    const char *src = ds->labels_source ? ds->labels_source : "labels given as an array";
    return clg_fail(ds->labels_source ? CLG_ERR_FORMAT : CLG_ERR_INVALID_ARGUMENT,
                    "%s: item %lld has label %d, outside the model's %d classes (0 to %d); "
                    "%lld of %lld labels are out of range",
                    src, (long long)(ds->source_first + first), (int)ds->labels[first],
                    (int)classes, (int)classes - 1, (long long)bad, (long long)ds->n);
}

clg_status clg_dataset_subset(const clg_dataset *ds, int64_t start, int64_t count,
                              clg_dataset **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dataset_subset: out is NULL");
    *out = NULL;
    if (!ds) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dataset_subset: dataset is NULL");
    if (start < 0 || count < 0 || start > ds->n || count > ds->n - start)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_dataset_subset: samples [%lld, %lld + %lld) are outside the "
                        "dataset's %lld",
                        (long long)start, (long long)start, (long long)count, (long long)ds->n);
    clg_dataset *sub;
    clg_status st =
        dataset_alloc(count, ds->sample_ndim, ds->sample_shape, "clg_dataset_subset", &sub);
    if (st != CLG_OK) return st;
    size_t row = (size_t)ds->sample_numel;
    if (count) {
        memcpy(sub->features, ds->features + (size_t)start * row,
               (size_t)count * row * sizeof(float));
        memcpy(sub->labels, ds->labels + start, (size_t)count * sizeof(int32_t));
    }
    st = set_source(sub, ds->labels_source, ds->source_first + start);
    if (st != CLG_OK) {
        clg_dataset_free(sub);
        return st;
    }
    *out = sub;
    return CLG_OK;
}

clg_status clg_dataset_normalize(clg_dataset *ds, float mean, float std) {
    if (!ds) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_dataset_normalize: dataset is NULL");
    if (!(std > 0.0f) || !isfinite(std) || !isfinite(mean))
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_dataset_normalize: need a finite mean and std > 0, got mean %g std %g",
                        (double)mean, (double)std);
    size_t total = (size_t)ds->n * (size_t)ds->sample_numel;
    for (size_t i = 0; i < total; ++i)
        ds->features[i] = (ds->features[i] - mean) / std;
    return CLG_OK;
}

/* One mean and one std over every feature value (the scalar pair MNIST recipes use, e.g.
 * 0.1307 / 0.3081), population std, accumulated in double over two passes for accuracy. */
void clg_dataset_stats(const clg_dataset *ds, float *mean, float *std) {
    double m = 0.0, var = 0.0;
    size_t total = ds ? (size_t)ds->n * (size_t)ds->sample_numel : 0;
    if (total) {
        double sum = 0.0;
        for (size_t i = 0; i < total; ++i)
            sum += ds->features[i];
        m = sum / (double)total;
        double sq = 0.0;
        for (size_t i = 0; i < total; ++i) {
            double d = ds->features[i] - m;
            sq += d * d;
        }
        var = sq / (double)total;
    }
    if (mean) *mean = (float)m;
    if (std) *std = (float)sqrt(var);
}

/* ---- Loader ---- */

/* splitmix64 (Steele, Lea, Flood 2014): a counter through a strong mixer; small, fast and
 * fully determined by its seed, so the same (seed, epoch) gives the same order anywhere. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound) without modulo bias: reject the few values below 2^64 mod bound. */
static uint64_t bounded(uint64_t *state, uint64_t bound) {
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = splitmix64(state);
        if (r >= threshold) return r % bound;
    }
}

void clg_loader_start_epoch(clg_loader *loader, int64_t epoch) {
    if (!loader) return;
    int64_t n = loader->ds->n;
    for (int64_t i = 0; i < n; ++i)
        loader->order[i] = i;
    if (loader->opts.shuffle && n > 1) {
        /* The permutation depends on (seed, epoch) only, never on earlier epochs, so a run
         * resumed at epoch e sees the same order as one that never stopped. */
        uint64_t seed = loader->opts.seed;
        uint64_t key = splitmix64(&seed) ^ (uint64_t)epoch; /* hashed seed, then the epoch */
        uint64_t state = splitmix64(&key); /* hashed again: epochs e and e+1 start far apart */
        for (int64_t i = n - 1; i > 0; --i) {
            int64_t j = (int64_t)bounded(&state, (uint64_t)i + 1);
            int64_t t = loader->order[i];
            loader->order[i] = loader->order[j];
            loader->order[j] = t;
        }
    }
    loader->epoch = epoch;
    loader->next = 0;
}

clg_status clg_loader_seek(clg_loader *loader, int64_t epoch, int64_t batch) {
    if (!loader) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_loader_seek: loader is NULL");
    if (epoch < 0 || batch < 0 || batch > loader->batches)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_loader_seek: epoch %lld, batch %lld: an epoch has batches 0 to %lld",
                        (long long)epoch, (long long)batch, (long long)loader->batches);
    clg_loader_start_epoch(loader, epoch);
    loader->next = batch;
    return CLG_OK;
}

void clg_loader_position(const clg_loader *loader, int64_t *epoch, int64_t *batch) {
    if (epoch) *epoch = loader ? loader->epoch : 0;
    if (batch) *batch = loader ? loader->next : 0;
}

clg_status clg_loader_new(const clg_dataset *ds, const clg_loader_options *opts, clg_loader **out) {
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_loader_new: out is NULL");
    *out = NULL;
    if (!ds || !opts)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_loader_new: dataset or options is NULL");
    if (opts->batch_size < 1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_loader_new: batch_size is %lld",
                        (long long)opts->batch_size);
    if (ds->n == 0)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_loader_new: the dataset is empty");
    if (opts->drop_last && ds->n < opts->batch_size)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_loader_new: batch_size %lld is larger than the dataset (%lld "
                        "samples) and drop_last is set: an epoch would have no batch",
                        (long long)opts->batch_size, (long long)ds->n);
    if ((uint64_t)opts->batch_size > SIZE_MAX / sizeof(float) / (uint64_t)ds->sample_numel)
        return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_loader_new: batch_size %lld is too large",
                        (long long)opts->batch_size);
    clg_loader *l = calloc(1, sizeof *l);
    if (!l) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "clg_loader_new: out of memory");
    l->ds = ds;
    l->opts = *opts;
    l->batches = opts->drop_last ? ds->n / opts->batch_size
                                 : (ds->n + opts->batch_size - 1) / opts->batch_size;
    size_t bs = (size_t)opts->batch_size;
    l->order = malloc((size_t)ds->n * sizeof *l->order);
    l->features = malloc(bs * (size_t)ds->sample_numel * sizeof(float));
    l->labels = malloc(bs * sizeof(int32_t));
    if (!l->order || !l->features || !l->labels) {
        clg_loader_free(l);
        return clg_fail(CLG_ERR_OUT_OF_MEMORY,
                        "clg_loader_new: out of memory for a batch of "
                        "%lld samples",
                        (long long)opts->batch_size);
    }
    /* Ready for epoch 0 without a separate call. */
    clg_loader_start_epoch(l, 0);
    *out = l;
    return CLG_OK;
}

void clg_loader_free(clg_loader *loader) {
    if (!loader) return;
    free(loader->order);
    free(loader->features);
    free(loader->labels);
    free(loader);
}

int64_t clg_loader_batches(const clg_loader *loader) {
    return loader ? loader->batches : 0;
}

bool clg_loader_next(clg_loader *loader, clg_batch *batch) {
    if (!loader || !batch || loader->next >= loader->batches) return false;
    const clg_dataset *ds = loader->ds;
    int64_t bs = loader->opts.batch_size;
    int64_t first = loader->next * bs;
    int64_t rows = ds->n - first < bs ? ds->n - first : bs;
    size_t row = (size_t)ds->sample_numel;
    for (int64_t r = 0; r < rows; ++r) {
        int64_t s = loader->order[first + r];
        memcpy(loader->features + (size_t)r * row, ds->features + (size_t)s * row,
               row * sizeof(float));
        loader->labels[r] = ds->labels[s];
    }
    /* The plan's input always has batch_size rows; zeros keep the unused ones harmless. */
    if (rows < bs) {
        memset(loader->features + (size_t)rows * row, 0, (size_t)(bs - rows) * row * sizeof(float));
        memset(loader->labels + rows, 0, (size_t)(bs - rows) * sizeof(int32_t));
    }
    batch->features = loader->features;
    batch->labels = loader->labels;
    batch->rows = rows;
    batch->index = loader->next;
    loader->next++;
    return true;
}

/* x must be f32 [batch, sample...] or, the same memory, [batch, sample_numel] (an MLP's
 * flattened input); y must be i32 [batch]. */
static clg_status check_input(const clg_loader *l, const clg_tensor *t, bool is_x) {
    char got[128];
    clg_tensor_describe(t, got, sizeof got);
    const clg_dataset *ds = l->ds;
    char want[160];
    int len = snprintf(want, sizeof want, "[%lld", (long long)l->opts.batch_size);
    if (is_x)
        for (int d = 0; d < ds->sample_ndim && len > 0 && (size_t)len < sizeof want; ++d)
            len += snprintf(want + len, sizeof want - (size_t)len, ", %lld",
                            (long long)ds->sample_shape[d]);
    if (len > 0 && (size_t)len < sizeof want)
        snprintf(want + len, sizeof want - (size_t)len, "] %s", is_x ? "f32" : "i32");

    clg_dtype dtype = is_x ? CLG_F32 : CLG_I32;
    if (clg_tensor_dtype(t) != dtype)
        return clg_fail(CLG_ERR_DTYPE, "clg_batch_upload: %s is %s but batches are %s",
                        is_x ? "x" : "y", got, want);
    int ndim = clg_tensor_ndim(t);
    const int64_t *shape = clg_tensor_shape(t);
    bool ok = ndim >= 1 && shape[0] == l->opts.batch_size;
    if (ok && is_x) {
        bool exact = ndim == 1 + ds->sample_ndim;
        for (int d = 0; exact && d < ds->sample_ndim; ++d)
            exact = shape[1 + d] == ds->sample_shape[d];
        bool flat = ndim == 2 && shape[1] == ds->sample_numel;
        ok = exact || flat;
    } else if (ok) {
        ok = ndim == 1;
    }
    if (!ok && is_x && ds->sample_ndim > 1)
        return clg_fail(CLG_ERR_SHAPE,
                        "clg_batch_upload: x is %s but batches are %s (or [%lld, %lld] f32 "
                        "flattened)",
                        got, want, (long long)l->opts.batch_size, (long long)ds->sample_numel);
    if (!ok)
        return clg_fail(CLG_ERR_SHAPE, "clg_batch_upload: %s is %s but batches are %s",
                        is_x ? "x" : "y", got, want);
    return CLG_OK;
}

clg_status clg_batch_upload(const clg_batch *batch, const clg_loader *loader, clg_plan *plan,
                            const clg_tensor *x, const clg_tensor *y) {
    if (!batch || !loader || !plan)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                        "clg_batch_upload: batch, loader or plan is NULL");
    /* Both checked before either is queued, so a mistake never leaves half a batch behind. */
    clg_status st = x ? check_input(loader, x, true) : CLG_OK;
    if (st == CLG_OK && y) st = check_input(loader, y, false);
    size_t bs = (size_t)loader->opts.batch_size;
    if (st == CLG_OK && x)
        st = clg_plan_write(plan, x, batch->features,
                            bs * (size_t)loader->ds->sample_numel * sizeof(float));
    if (st == CLG_OK && y) st = clg_plan_write(plan, y, batch->labels, bs * sizeof(int32_t));
    return st;
}
