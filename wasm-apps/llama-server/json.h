/* json.h: a small JSON reader and writer for llama-server, made for hostile input.
 *
 * Reader: RFC 8259 strictly (as serde_json reads it): UTF-8 checked, no control characters in strings,
 * \uXXXX escapes decoded (surrogate pairs joined, a lone surrogate is an error), nesting at most
 * JSON_MAX_DEPTH, at most JSON_MAX_NODES values. Strings are decoded in place in the caller's buffer (a
 * decoded string is never longer than its source), so parsing allocates only the node array.
 * Writer: a growable buffer; strings escaped as serde_json writes them, invalid UTF-8 replaced by U+FFFD.
 */
#ifndef LLAMA_SERVER_JSON_H
#define LLAMA_SERVER_JSON_H

#include <stddef.h>

enum { JSON_MAX_DEPTH = 64, JSON_MAX_NODES = 1 << 16 };

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct {
    jtype type;
    int next;       /* next sibling (array element or object member), -1 at the end */
    int child;      /* first element or member, -1 if none */
    const char *key; /* member name (object members only) */
    size_t key_len;
    const char *str; /* J_STR: the decoded bytes (may hold NUL) */
    size_t len;
    double num;     /* J_NUM; J_BOOL: 0 or 1 */
} jnode;

typedef struct {
    jnode *nodes;
    int count;
    char error[160]; /* serde_json-like: "expected value at line 1 column 2" */
} jdoc;

/* Parse text[0..len) (modified in place). 0 on success (root is nodes[0]), -1 with doc->error set. */
int json_parse(jdoc *doc, char *text, size_t len);
void json_free(jdoc *doc);
/* Member of object node `obj` named `key` (the last one if repeated), or NULL. */
const jnode *json_get(const jdoc *doc, const jnode *obj, const char *key);
const jnode *json_at(const jdoc *doc, int index); /* NULL for -1 */

typedef struct {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed: the content is incomplete */
} jbuf;

void jb_put(jbuf *b, const void *data, size_t len);
void jb_puts(jbuf *b, const char *s);
void jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jb_str(jbuf *b, const char *s, size_t len); /* a JSON string literal, quotes included */
void jb_free(jbuf *b);

/* UTF-8 helpers shared with the prompt code. */
/* Length of the valid UTF-8 sequence at s (max n bytes) and its code point, or 0 if invalid/incomplete. */
size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp);
/* Rust's str::trim: the bounds of s without leading/trailing Unicode White_Space. */
void utf8_trim(const char *s, size_t len, size_t *start, size_t *end);

#endif
