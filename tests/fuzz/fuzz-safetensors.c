/* The safetensors reader on untrusted bytes, both ways in: clg_safetensors_parse on the bytes
 * in memory and clg_safetensors_load on the same bytes as a file. Both must agree, and what
 * loads must keep the header's promises (names findable, spans tiling the data, data aligned
 * and equal to the input's bytes). */
#include <stdbool.h>

#include "fuzz.h"
#include "io/safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

static void check_loaded(const clg_safetensors *st, const uint8_t *data, size_t size) {
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i)
        header = header << 8 | data[i];
    const uint8_t *section = data + 8 + header;
    uint64_t at = 0;
    size_t n = clg_safetensors_count(st);
    for (size_t i = 0; i < n; ++i) {
        const clg_st_view *v = clg_safetensors_at(st, i);
        FUZZ_CHECK(v && v->name && v->begin == at && v->end >= v->begin);
        at = v->end;
        FUZZ_CHECK(clg_safetensors_find(st, v->name) == v);
        size_t elem = clg_st_dtype_size(v->dtype);
        FUZZ_CHECK(elem && v->ndim >= 0 && v->ndim <= CLG_ST_MAX_DIMS);
        int64_t numel = 1;
        for (int d = 0; d < v->ndim; ++d)
            numel *= v->shape[d];
        FUZZ_CHECK(numel == v->numel && (uint64_t)v->numel * elem == v->nbytes);
        FUZZ_CHECK(v->nbytes == v->end - v->begin);
        FUZZ_CHECK((uintptr_t)v->data % elem == 0);
        /* Host order is little-endian on every machine this fuzzes on. */
        FUZZ_CHECK(v->nbytes == 0 || memcmp(v->data, section + v->begin, v->nbytes) == 0);
    }
    FUZZ_CHECK(8 + header + at == size);
    FUZZ_CHECK(clg_safetensors_at(st, n) == NULL);
    for (size_t i = 0; i < clg_safetensors_meta_count(st); ++i) {
        const clg_st_meta *m = clg_safetensors_meta_at(st, i);
        FUZZ_CHECK(m && m->key && m->value);
        FUZZ_CHECK(clg_safetensors_meta_get(st, m->key) == m->value);
    }
}

static bool same_views(const clg_st_view *a, const clg_st_view *b) {
    return strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->ndim == b->ndim &&
           memcmp(a->shape, b->shape, sizeof a->shape[0] * (size_t)a->ndim) == 0 &&
           a->numel == b->numel && a->nbytes == b->nbytes && a->begin == b->begin &&
           a->end == b->end && (a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    clg_safetensors *mem = NULL, *file = NULL;
    clg_status a = clg_safetensors_parse(data, size, "fuzz", &mem);
    clg_status b = clg_safetensors_load(fuzz_write_file("input.safetensors", data, size), &file);
    FUZZ_CHECK(a == b);
    FUZZ_CHECK((a == CLG_OK) == (mem != NULL) && (b == CLG_OK) == (file != NULL));
    if (a == CLG_OK) {
        check_loaded(mem, data, size);
        FUZZ_CHECK(clg_safetensors_count(mem) == clg_safetensors_count(file));
        for (size_t i = 0; i < clg_safetensors_count(mem); ++i)
            FUZZ_CHECK(same_views(clg_safetensors_at(mem, i), clg_safetensors_at(file, i)));
        FUZZ_CHECK(clg_safetensors_meta_count(mem) == clg_safetensors_meta_count(file));
        for (size_t i = 0; i < clg_safetensors_meta_count(mem); ++i) {
            const clg_st_meta *x = clg_safetensors_meta_at(mem, i);
            const clg_st_meta *y = clg_safetensors_meta_at(file, i);
            FUZZ_CHECK(strcmp(x->key, y->key) == 0 && strcmp(x->value, y->value) == 0);
        }
    }
    clg_safetensors_free(mem);
    clg_safetensors_free(file);
    return 0;
}
