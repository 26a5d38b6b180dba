/* The JSON reader on untrusted text. A parsed tree must be well formed (decoded strings valid
 * UTF-8 of the stated length, every object key present), and writing it back with clg_json_buf
 * (serde_json's compact form) must parse to the same tree and write the same text again. */
#include <stdbool.h>

#include "fuzz.h"
#include "io/json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

static void check_tree(const clg_json *v) {
    FUZZ_CHECK((int)v->kind >= 0 && v->kind < CLG_JSON_KIND_COUNT);
    switch (v->kind) {
    case CLG_JSON_BOOL:
        FUZZ_CHECK(v->integer == 0 || v->integer == 1);
        break;
    case CLG_JSON_STRING:
        FUZZ_CHECK(v->string && strlen(v->string) == v->length);
        FUZZ_CHECK(clg_json_utf8_valid(v->string, v->length));
        break;
    case CLG_JSON_OBJECT:
        for (size_t i = 0; i < v->length; ++i) {
            FUZZ_CHECK(v->keys[i] && clg_json_utf8_valid(v->keys[i], strlen(v->keys[i])));
            /* clg_json_get finds the first item of a repeated key. */
            if (i < 8) {
                const clg_json *got = clg_json_get(v, v->keys[i]);
                FUZZ_CHECK(got && got <= &v->items[i]);
                FUZZ_CHECK(strcmp(v->keys[got - v->items], v->keys[i]) == 0);
            }
        }
        /* fall through */
    case CLG_JSON_ARRAY:
        for (size_t i = 0; i < v->length; ++i)
            check_tree(&v->items[i]);
        break;
    default:
        break;
    }
}

static void write_tree(clg_json_buf *b, const clg_json *v) {
    switch (v->kind) {
    case CLG_JSON_NULL:
        clg_json_buf_puts(b, "null");
        break;
    case CLG_JSON_BOOL:
        clg_json_buf_puts(b, v->integer ? "true" : "false");
        break;
    case CLG_JSON_INT:
        clg_json_buf_int(b, v->integer);
        break;
    case CLG_JSON_STRING:
        clg_json_buf_string(b, v->string);
        break;
    default: {
        bool object = v->kind == CLG_JSON_OBJECT;
        clg_json_buf_puts(b, object ? "{" : "[");
        for (size_t i = 0; i < v->length; ++i) {
            if (i) clg_json_buf_puts(b, ",");
            if (object) {
                clg_json_buf_string(b, v->keys[i]);
                clg_json_buf_puts(b, ":");
            }
            write_tree(b, &v->items[i]);
        }
        clg_json_buf_puts(b, object ? "}" : "]");
    }
    }
}

static bool same_tree(const clg_json *a, const clg_json *b) {
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case CLG_JSON_NULL:
        return true;
    case CLG_JSON_BOOL:
    case CLG_JSON_INT:
        return a->integer == b->integer;
    case CLG_JSON_STRING:
        return a->length == b->length && memcmp(a->string, b->string, a->length) == 0;
    default:
        if (a->length != b->length) return false;
        for (size_t i = 0; i < a->length; ++i) {
            if (a->kind == CLG_JSON_OBJECT && strcmp(a->keys[i], b->keys[i]) != 0) return false;
            if (!same_tree(&a->items[i], &b->items[i])) return false;
        }
        return true;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    clg_json *v = NULL;
    if (clg_json_parse((const char *)data, size, "fuzz", &v) != CLG_OK) {
        FUZZ_CHECK(v == NULL);
        return 0;
    }
    check_tree(v);
    clg_json_buf once = {0}, twice = {0};
    write_tree(&once, v);
    FUZZ_CHECK(!once.oom && once.len > 0);
    clg_json *back = NULL;
    if (clg_json_parse(once.data, once.len, "written", &back) != CLG_OK) {
        fprintf(stderr, "written text does not parse: %s\n", clg_last_error());
        abort();
    }
    FUZZ_CHECK(same_tree(v, back));
    write_tree(&twice, back);
    FUZZ_CHECK(!twice.oom && twice.len == once.len && memcmp(once.data, twice.data, once.len) == 0);
    free(once.data);
    free(twice.data);
    clg_json_free(back);
    clg_json_free(v);
    return 0;
}
