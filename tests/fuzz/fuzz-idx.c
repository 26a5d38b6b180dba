/* clg_idx_load on untrusted bytes. Built twice: "idx" hands the input to the loader as it is
 * (plain IDX, or a gzip stream, detected from the content), "idx-gzip" gzips it first so the
 * mutations reach the IDX parser behind zlib instead of breaking the stream's CRC. Both go
 * through the real path: a file on disk, opened by zlib. */
#include <stdbool.h>

#include <zlib.h>

#include "clgrad/data.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

static const char *write_input(const uint8_t *data, size_t size) {
#ifdef FUZZ_IDX_GZIP
    const char *path = fuzz_path("input.idx.gz");
    gzFile gz = gzopen(path, "wb1");
    if (!gz || (size && gzwrite(gz, data, (unsigned)size) != (int)size) || gzclose(gz) != Z_OK)
        abort();
    return path;
#else
    return fuzz_write_file("input.idx", data, size);
#endif
}

static size_t elem_size(clg_idx_type t) {
    switch (t) {
    case CLG_IDX_U8:
    case CLG_IDX_I8:
        return 1;
    case CLG_IDX_I16:
        return 2;
    case CLG_IDX_I32:
    case CLG_IDX_F32:
        return 4;
    case CLG_IDX_F64:
        return 8;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    clg_idx *idx = NULL;
    clg_status st = clg_idx_load(write_input(data, size), &idx);
    if (st != CLG_OK) {
        FUZZ_CHECK(idx == NULL);
        return 0;
    }
    /* What loads is what the header promised, and the payload is all of the rest. */
    FUZZ_CHECK(idx && idx->ndim >= 1 && idx->ndim <= CLG_MAX_DIMS);
    size_t elem = elem_size(idx->type);
    FUZZ_CHECK(elem != 0);
    int64_t count = 1;
    for (int d = 0; d < idx->ndim; ++d) {
        FUZZ_CHECK(idx->dims[d] > 0);
        count *= idx->dims[d];
    }
    FUZZ_CHECK(count == idx->count);
    /* The file (or for idx-gzip the input) is header then exactly the payload, big-endian;
     * for a gzip input to "idx" the decompressed bytes are unknown here. */
    bool plain = true;
#ifndef FUZZ_IDX_GZIP
    plain = !(size >= 2 && data[0] == 0x1f && data[1] == 0x8b);
#endif
    size_t header = 4 + 4 * (size_t)idx->ndim, bytes = (size_t)count * elem;
    const unsigned char *out = idx->data;
    if (plain) {
        FUZZ_CHECK(size == header + bytes);
        const uint16_t one = 1;
        bool little = *(const unsigned char *)&one == 1;
        for (size_t i = 0; i < bytes; ++i) {
            size_t b = i % elem, at = little ? i - b + (elem - 1 - b) : i;
            FUZZ_CHECK(out[i] == data[header + at]);
        }
    } else {
        /* Touch every byte, so a payload shorter than its count is an ASan report. */
        volatile unsigned char sum = 0;
        for (size_t i = 0; i < bytes; ++i)
            sum = (unsigned char)(sum + out[i]);
        (void)sum;
    }
    clg_idx_free(idx);
    return 0;
}
