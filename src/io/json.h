/* A small strict JSON parser for file headers (safetensors): objects, arrays, strings with
 * escapes, integers, true/false/null. Fractions and exponents are refused, since no header
 * clgrad reads uses them. Errors give the byte offset of the problem. Also a growable text
 * buffer that writes strings escaped the way serde_json does (for byte-identical headers). */
#ifndef CLG_IO_JSON_H
#define CLG_IO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clgrad/status.h"

typedef enum clg_json_kind {
    CLG_JSON_NULL,
    CLG_JSON_BOOL,
    CLG_JSON_INT,
    CLG_JSON_STRING,
    CLG_JSON_ARRAY,
    CLG_JSON_OBJECT,
    CLG_JSON_KIND_COUNT
} clg_json_kind;

typedef struct clg_json clg_json;
struct clg_json {
    clg_json_kind kind;
    size_t offset;   /* where the value starts in the text, for error messages */
    int64_t integer; /* CLG_JSON_INT; CLG_JSON_BOOL: 0 or 1 */
    char *string;    /* CLG_JSON_STRING: decoded UTF-8, NUL-terminated, no embedded NUL */
    size_t length;   /* CLG_JSON_STRING: bytes; ARRAY and OBJECT: number of items */
    clg_json *items; /* ARRAY and OBJECT: the values, in document order */
    char **keys;     /* OBJECT: keys[i] names items[i] (duplicates are kept; callers decide) */
};

/* Parse text[0, size) as exactly one JSON value, optionally surrounded by whitespace. On
 * failure returns CLG_ERR_FORMAT with "<what>: JSON error at byte N: ..." (what names the
 * source, e.g. the file) or CLG_ERR_OUT_OF_MEMORY. The tree is freed with clg_json_free. */
clg_status clg_json_parse(const char *text, size_t size, const char *what, clg_json **out);
void clg_json_free(clg_json *value);

/* The value of key in an object (the first one if repeated), or NULL. */
const clg_json *clg_json_get(const clg_json *object, const char *key);
/* "object", "string", ... for messages. */
const char *clg_json_kind_name(clg_json_kind kind);

/* Output text. Functions do nothing once an allocation failed; check oom at the end. */
typedef struct clg_json_buf {
    char *data; /* NUL-terminated when len > 0; free() it */
    size_t len;
    size_t cap;
    bool oom;
} clg_json_buf;

void clg_json_buf_append(clg_json_buf *b, const char *s, size_t n);
void clg_json_buf_puts(clg_json_buf *b, const char *s);
void clg_json_buf_int(clg_json_buf *b, int64_t v);
/* s (valid UTF-8) as a quoted JSON string: '"' and '\\' escaped, \b \f \n \r \t, other control
 * characters as \u00xx, everything else verbatim (serde_json's compact output). */
void clg_json_buf_string(clg_json_buf *b, const char *s);

/* True when s[0, n) is valid UTF-8 (no overlong forms or surrogates). */
bool clg_json_utf8_valid(const char *s, size_t n);

#endif
