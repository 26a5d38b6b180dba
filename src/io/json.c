/* Strict recursive-descent JSON parser (see json.h). Strings must be valid UTF-8 and may not
 * contain raw control characters or lone surrogates; nesting is capped so that hostile input
 * cannot exhaust the stack. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"

/* Headers are flat (an object of small objects); 64 leaves room while bounding recursion. */
#define MAX_DEPTH 64

typedef struct parser {
    const char *text;
    size_t size;
    size_t pos;
    const char *what;
    int depth;
} parser;

static clg_status fail_at(const parser *p, size_t offset, const char *fmt, ...) CLG_PRINTF(3, 4);

static clg_status fail_at(const parser *p, size_t offset, const char *fmt, ...) {
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return clg_fail(CLG_ERR_FORMAT, "%s: JSON error at byte %zu: %s", p->what, offset, detail);
}

/* Describes the byte at pos for messages: 'x', byte 0x1f, or end of text. */
static const char *describe(const parser *p, size_t pos, char *buf, size_t size) {
    if (pos >= p->size) return "end of text";
    unsigned char c = (unsigned char)p->text[pos];
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, size, "'%c'", c);
    else
        snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

static clg_status unexpected(const parser *p, const char *expected) {
    char buf[32];
    return fail_at(p, p->pos, "expected %s, found %s", expected,
                   describe(p, p->pos, buf, sizeof buf));
}

static void skip_ws(parser *p) {
    while (p->pos < p->size) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static void free_contents(clg_json *v) {
    if (!v) return;
    free(v->string);
    if (v->kind == CLG_JSON_ARRAY || v->kind == CLG_JSON_OBJECT) {
        for (size_t i = 0; i < v->length; ++i) {
            free_contents(&v->items[i]);
            if (v->keys) free(v->keys[i]);
        }
    }
    free(v->items);
    free(v->keys);
}

void clg_json_free(clg_json *value) {
    free_contents(value);
    free(value);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if invalid. Overlong forms,
 * surrogates and code points past U+10FFFF are invalid (RFC 3629). */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; ++i)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

static size_t utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Four hex digits at pos (after "\u"). */
static clg_status read_hex4(parser *p, uint32_t *out) {
    if (p->size - p->pos < 4) return fail_at(p, p->pos, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
        char c = p->text[p->pos + (size_t)i];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return fail_at(p, p->pos + (size_t)i, "bad hex digit in \\u escape");
        v = v * 16 + d;
    }
    p->pos += 4;
    *out = v;
    return CLG_OK;
}

/* At the opening quote. The decoded string is never longer than its source text, so one
 * allocation of the source span suffices. */
static clg_status parse_string(parser *p, char **out, size_t *out_len) {
    size_t start = p->pos;
    size_t end = start + 1;
    while (end < p->size && p->text[end] != '"')
        end += p->text[end] == '\\' ? 2 : 1;
    if (end >= p->size) return fail_at(p, start, "unterminated string");

    char *s = malloc(end - start);
    if (!s) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory parsing JSON", p->what);
    size_t n = 0;
    p->pos = start + 1;
    clg_status st = CLG_OK;
    while (p->pos < end && st == CLG_OK) {
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c < 0x20) {
            st = fail_at(p, p->pos, "raw control character 0x%02x in string", c);
        } else if (c >= 0x80) {
            size_t len = utf8_sequence((const unsigned char *)p->text + p->pos, end - p->pos);
            if (!len) {
                st = fail_at(p, p->pos, "invalid UTF-8 in string");
            } else {
                memcpy(s + n, p->text + p->pos, len);
                n += len;
                p->pos += len;
            }
        } else if (c != '\\') {
            s[n++] = (char)c;
            p->pos++;
        } else {
            char e = p->text[p->pos + 1];
            p->pos += 2;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                s[n++] = e;
                break;
            case 'b':
                s[n++] = '\b';
                break;
            case 'f':
                s[n++] = '\f';
                break;
            case 'n':
                s[n++] = '\n';
                break;
            case 'r':
                s[n++] = '\r';
                break;
            case 't':
                s[n++] = '\t';
                break;
            case 'u': {
                size_t at = p->pos - 2;
                uint32_t cp;
                st = read_hex4(p, &cp);
                if (st != CLG_OK) break;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    st = fail_at(p, at, "lone low surrogate \\u%04X", (unsigned)cp);
                } else if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo = 0;
                    if (p->pos + 2 > end || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u') {
                        st = fail_at(p, at, "lone high surrogate \\u%04X", (unsigned)cp);
                        break;
                    }
                    p->pos += 2;
                    st = read_hex4(p, &lo);
                    if (st != CLG_OK) break;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        st = fail_at(p, at, "high surrogate \\u%04X not followed by a low one",
                                     (unsigned)cp);
                        break;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp == 0) {
                    /* Names are C strings; an embedded NUL would make two names compare equal. */
                    st = fail_at(p, at, "\\u0000 in a string is not supported");
                }
                if (st == CLG_OK) n += utf8_encode(cp, s + n);
                break;
            }
            default:
                st = fail_at(p, p->pos - 2, "invalid escape '\\%c'", e);
            }
        }
    }
    if (st != CLG_OK) {
        free(s);
        return st;
    }
    s[n] = '\0';
    p->pos = end + 1;
    *out = s;
    *out_len = n;
    return CLG_OK;
}

static clg_status parse_int(parser *p, clg_json *v) {
    size_t start = p->pos;
    bool negative = false;
    if (p->text[p->pos] == '-') {
        negative = true;
        p->pos++;
    }
    if (p->pos >= p->size || p->text[p->pos] < '0' || p->text[p->pos] > '9')
        return unexpected(p, "a digit");
    /* Magnitude as unsigned so that INT64_MIN parses without overflow. */
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    uint64_t mag = 0;
    if (p->text[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->size && p->text[p->pos] >= '0' && p->text[p->pos] <= '9')
            return fail_at(p, start, "number with a leading zero");
    } else {
        while (p->pos < p->size && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') {
            uint64_t d = (uint64_t)(p->text[p->pos] - '0');
            if (mag > (limit - d) / 10) return fail_at(p, start, "integer out of 64-bit range");
            mag = mag * 10 + d;
            p->pos++;
        }
    }
    if (p->pos < p->size &&
        (p->text[p->pos] == '.' || p->text[p->pos] == 'e' || p->text[p->pos] == 'E'))
        return fail_at(p, start, "only integers are supported here");
    v->kind = CLG_JSON_INT;
    if (negative)
        v->integer = mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag;
    else
        v->integer = (int64_t)mag;
    return CLG_OK;
}

static clg_status parse_value(parser *p, clg_json *v);

/* Grow a container by one zeroed item (and key slot for objects). */
static clg_status push_item(parser *p, clg_json *v, size_t *cap) {
    if (v->length == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        clg_json *items = realloc(v->items, ncap * sizeof *items);
        if (!items) goto oom;
        v->items = items;
        if (v->kind == CLG_JSON_OBJECT) {
            char **keys = realloc(v->keys, ncap * sizeof *keys);
            if (!keys) goto oom;
            v->keys = keys;
        }
        *cap = ncap;
    }
    memset(&v->items[v->length], 0, sizeof v->items[0]);
    if (v->kind == CLG_JSON_OBJECT) v->keys[v->length] = NULL;
    v->length++;
    return CLG_OK;
oom:
    return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory parsing JSON", p->what);
}

static clg_status parse_container(parser *p, clg_json *v, bool object) {
    char close = object ? '}' : ']';
    v->kind = object ? CLG_JSON_OBJECT : CLG_JSON_ARRAY;
    if (++p->depth > MAX_DEPTH)
        return fail_at(p, p->pos, "nested deeper than %d levels", MAX_DEPTH);
    p->pos++;
    skip_ws(p);
    size_t cap = 0;
    if (p->pos < p->size && p->text[p->pos] == close) {
        p->pos++;
        p->depth--;
        return CLG_OK;
    }
    for (;;) {
        skip_ws(p);
        clg_status st = push_item(p, v, &cap);
        if (st != CLG_OK) return st;
        if (object) {
            if (p->pos >= p->size || p->text[p->pos] != '"') return unexpected(p, "a string key");
            size_t len;
            st = parse_string(p, &v->keys[v->length - 1], &len);
            if (st != CLG_OK) return st;
            skip_ws(p);
            if (p->pos >= p->size || p->text[p->pos] != ':') return unexpected(p, "':'");
            p->pos++;
        }
        st = parse_value(p, &v->items[v->length - 1]);
        if (st != CLG_OK) return st;
        skip_ws(p);
        if (p->pos < p->size && p->text[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->size && p->text[p->pos] == close) {
            p->pos++;
            p->depth--;
            return CLG_OK;
        }
        return unexpected(p, object ? "',' or '}'" : "',' or ']'");
    }
}

static clg_status parse_literal(parser *p, clg_json *v, const char *word, clg_json_kind kind,
                                int64_t value) {
    size_t len = strlen(word);
    if (p->size - p->pos < len || memcmp(p->text + p->pos, word, len) != 0)
        return unexpected(p, "a value");
    p->pos += len;
    v->kind = kind;
    v->integer = value;
    return CLG_OK;
}

static clg_status parse_value(parser *p, clg_json *v) {
    skip_ws(p);
    v->offset = p->pos;
    if (p->pos >= p->size) return unexpected(p, "a value");
    char c = p->text[p->pos];
    switch (c) {
    case '{':
        return parse_container(p, v, true);
    case '[':
        return parse_container(p, v, false);
    case '"':
        v->kind = CLG_JSON_STRING;
        return parse_string(p, &v->string, &v->length);
    case 't':
        return parse_literal(p, v, "true", CLG_JSON_BOOL, 1);
    case 'f':
        return parse_literal(p, v, "false", CLG_JSON_BOOL, 0);
    case 'n':
        return parse_literal(p, v, "null", CLG_JSON_NULL, 0);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_int(p, v);
        return unexpected(p, "a value");
    }
}

clg_status clg_json_parse(const char *text, size_t size, const char *what, clg_json **out) {
    if (!out || (!text && size)) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_json_parse: NULL");
    *out = NULL;
    parser p = {.text = text, .size = size, .what = what ? what : "JSON"};
    clg_json *root = calloc(1, sizeof *root);
    if (!root) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory parsing JSON", p.what);
    clg_status st = parse_value(&p, root);
    if (st == CLG_OK) {
        skip_ws(&p);
        if (p.pos != p.size) st = unexpected(&p, "end of text after the value");
    }
    if (st != CLG_OK) {
        clg_json_free(root);
        return st;
    }
    *out = root;
    return CLG_OK;
}

const clg_json *clg_json_get(const clg_json *object, const char *key) {
    if (!object || object->kind != CLG_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < object->length; ++i)
        if (strcmp(object->keys[i], key) == 0) return &object->items[i];
    return NULL;
}

const char *clg_json_kind_name(clg_json_kind kind) {
    static const char *const names[CLG_JSON_KIND_COUNT] = {
        [CLG_JSON_NULL] = "null",     [CLG_JSON_BOOL] = "boolean", [CLG_JSON_INT] = "integer",
        [CLG_JSON_STRING] = "string", [CLG_JSON_ARRAY] = "array",  [CLG_JSON_OBJECT] = "object",
    };
    if ((int)kind < 0 || kind >= CLG_JSON_KIND_COUNT) return "unknown";
    return names[kind];
}

bool clg_json_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = utf8_sequence(u + i, n - i);
        if (!len) return false;
        i += len;
    }
    return true;
}

void clg_json_buf_append(clg_json_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data) {
            b->oom = true;
            return;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void clg_json_buf_puts(clg_json_buf *b, const char *s) {
    clg_json_buf_append(b, s, strlen(s));
}

void clg_json_buf_int(clg_json_buf *b, int64_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    clg_json_buf_append(b, tmp, (size_t)n);
}

void clg_json_buf_string(clg_json_buf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    clg_json_buf_append(b, "\"", 1);
    size_t run = 0; /* bytes that need no escape are copied in runs */
    for (size_t i = 0;; ++i) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[6];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\b')
            esc = "\\b";
        else if (c == '\f')
            esc = "\\f";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        if (!esc && c >= 0x20) {
            run++;
            continue;
        }
        clg_json_buf_append(b, s + i - run, run);
        run = 0;
        if (c == '\0') break;
        if (esc) {
            clg_json_buf_puts(b, esc);
        } else {
            u[0] = '\\';
            u[1] = 'u';
            u[2] = '0';
            u[3] = '0';
            u[4] = hex[c >> 4];
            u[5] = hex[c & 15];
            clg_json_buf_append(b, u, 6);
        }
    }
    clg_json_buf_append(b, "\"", 1);
}
