/* Program-cache entries (clg_program_entry_decode) on untrusted bytes: a cache folder is
 * writable by whoever shares it. The first input byte is the key's length n, the next n bytes
 * the key (cut at a NUL), the rest the entry. A decoded entry must lie inside the input, after
 * the magic, key and length fields, and end 8 checksum bytes before the input does. */
#include <stdbool.h>

#include "core/program.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t key_len = data[0] < size - 1 ? data[0] : size - 1;
    char *key = malloc(key_len + 1);
    FUZZ_CHECK(key);
    memcpy(key, data + 1, key_len);
    key[key_len] = '\0';
    /* The entry in a buffer of its own size, so ASan sees any read past it. */
    size_t n = size - 1 - key_len;
    unsigned char *entry = malloc(n ? n : 1);
    FUZZ_CHECK(entry);
    if (n) memcpy(entry, data + 1 + key_len, n);

    size_t offset = SIZE_MAX, bin = SIZE_MAX;
    bool ok = clg_program_entry_decode(entry, n, key, &offset, &bin);
    FUZZ_CHECK(clg_program_entry_decode(entry, n, key, NULL, NULL) == ok);
    if (ok) {
        size_t fixed = 8 + 4 + strlen(key) + 8;
        FUZZ_CHECK(offset == fixed && bin > 0 && bin <= n && offset + bin + 8 == n);
        /* Any other key is a miss (the key is stored whole, not only hashed). */
        FUZZ_CHECK(!clg_program_entry_decode(entry, n, key[0] ? "" : "k", NULL, NULL));
        /* So is the same entry one byte shorter. */
        FUZZ_CHECK(!clg_program_entry_decode(entry, n - 1, key, NULL, NULL));
    }
    free(entry);
    free(key);
    return 0;
}
