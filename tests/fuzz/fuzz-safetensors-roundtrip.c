/* safetensors write -> read: whatever the reader accepts, the writer must save (names, dtypes,
 * shapes, data and metadata as loaded), and loading that file must give the same tensors and
 * metadata back; clg_safetensors_serialize must produce the saved file's exact bytes. */
#include <stdbool.h>

#include "fuzz.h"
#include "io/safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

/* a and b hold the same tensors (by name: the writer orders them its own way) and the same
 * metadata (in the same order). */
static void check_same(const clg_safetensors *a, const clg_safetensors *b) {
    FUZZ_CHECK(clg_safetensors_count(a) == clg_safetensors_count(b));
    for (size_t i = 0; i < clg_safetensors_count(a); ++i) {
        const clg_st_view *x = clg_safetensors_at(a, i);
        const clg_st_view *y = clg_safetensors_find(b, x->name);
        FUZZ_CHECK(y != NULL);
        FUZZ_CHECK(x->dtype == y->dtype && x->ndim == y->ndim && x->numel == y->numel &&
                   x->nbytes == y->nbytes);
        FUZZ_CHECK(memcmp(x->shape, y->shape, sizeof x->shape[0] * (size_t)x->ndim) == 0);
        FUZZ_CHECK(x->nbytes == 0 || memcmp(x->data, y->data, x->nbytes) == 0);
    }
    FUZZ_CHECK(clg_safetensors_meta_count(a) == clg_safetensors_meta_count(b));
    for (size_t i = 0; i < clg_safetensors_meta_count(a); ++i) {
        const clg_st_meta *x = clg_safetensors_meta_at(a, i);
        const clg_st_meta *y = clg_safetensors_meta_at(b, i);
        FUZZ_CHECK(strcmp(x->key, y->key) == 0 && strcmp(x->value, y->value) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    clg_safetensors *st = NULL;
    if (clg_safetensors_parse(data, size, "fuzz", &st) != CLG_OK) return 0;

    size_t n = clg_safetensors_count(st), n_meta = clg_safetensors_meta_count(st);
    clg_st_tensor *ts = calloc(n ? n : 1, sizeof *ts);
    clg_st_meta *meta = calloc(n_meta ? n_meta : 1, sizeof *meta);
    FUZZ_CHECK(ts && meta);
    for (size_t i = 0; i < n; ++i) {
        const clg_st_view *v = clg_safetensors_at(st, i);
        ts[i] = (clg_st_tensor){v->name, v->dtype, v->ndim, v->shape, v->data};
    }
    for (size_t i = 0; i < n_meta; ++i)
        meta[i] = *clg_safetensors_meta_at(st, i);

    const char *path = fuzz_path("roundtrip.safetensors");
    remove(path); /* a rename over an old file costs a disk flush on ext4 (see fuzz.h) */
    clg_status saved = clg_safetensors_save(path, ts, n, meta, n_meta);
    if (saved != CLG_OK) {
        fprintf(stderr, "loaded, but cannot be saved: %s\n", clg_last_error());
        abort();
    }
    clg_safetensors *back = NULL;
    if (clg_safetensors_load(path, &back) != CLG_OK) {
        fprintf(stderr, "saved, but cannot be loaded: %s\n", clg_last_error());
        abort();
    }
    check_same(st, back);

    void *mem = NULL;
    size_t mem_size = 0, file_size = 0;
    FUZZ_CHECK(clg_safetensors_serialize(ts, n, meta, n_meta, &mem, &mem_size) == CLG_OK);
    unsigned char *file = fuzz_read_file(path, &file_size);
    FUZZ_CHECK(mem_size == file_size && memcmp(mem, file, mem_size) == 0);

    free(file);
    free(mem);
    clg_safetensors_free(back);
    free(meta);
    free(ts);
    clg_safetensors_free(st);
    return 0;
}
