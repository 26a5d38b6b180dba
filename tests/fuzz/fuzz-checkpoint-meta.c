/* Checkpoint metadata (clg_checkpoint_meta_check) without a device. The input is one
 * "key=value" entry per line; they are written into a safetensors file (with one small tensor)
 * by clg_safetensors_serialize and loaded back, so the check sees a loaded file as the loader
 * does. Input the writer refuses (bad UTF-8, a repeated key) is skipped. */
#include <stdbool.h>

#include "fuzz.h"
#include "io/safetensors.h"
#include "nn/checkpoint_internal.h"

#define MAX_ENTRIES 64

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* One NUL-terminated copy, cut into lines and then at each line's first '='. */
    char *text = malloc(size + 1);
    FUZZ_CHECK(text);
    if (size) memcpy(text, data, size);
    text[size] = '\0';
    clg_st_meta meta[MAX_ENTRIES];
    size_t n = 0;
    for (char *line = text; n < MAX_ENTRIES && line < text + size;) {
        char *end = memchr(line, '\n', (size_t)(text + size - line));
        if (end) *end = '\0';
        char *eq = strchr(line, '=');
        if (eq) {
            *eq = '\0';
            meta[n++] = (clg_st_meta){line, eq + 1};
        }
        if (!end) break;
        line = end + 1;
    }
    const float w[2] = {1.0f, -2.0f};
    const int64_t shape[1] = {2};
    const clg_st_tensor t = {"w", CLG_ST_DTYPE_F32, 1, shape, w};
    void *file = NULL;
    size_t file_size = 0;
    clg_safetensors *st = NULL;
    if (clg_safetensors_serialize(&t, 1, meta, n, &file, &file_size) == CLG_OK) {
        FUZZ_CHECK(clg_safetensors_parse(file, file_size, "fuzz.safetensors", &st) == CLG_OK);
        /* Any status is an answer; the same file must get the same one. */
        clg_status a = clg_checkpoint_meta_check(st, "fuzz.safetensors");
        FUZZ_CHECK(clg_checkpoint_meta_check(st, "fuzz.safetensors") == a);
    }
    clg_safetensors_free(st);
    free(file);
    free(text);
    return 0;
}
