/* prompt.c: see prompt.h. Each function names the upstream function it follows. */
#include "prompt.h"

#include <string.h>

static const char *const NAMES[] = {"chatml", "llama-3-chat"};

int template_from_name(const char *name) {
    for (int i = 0; i < 2; i++)
        if (!strcmp(name, NAMES[i])) return i;
    return -1;
}

const char *template_name(template_t t) { return NAMES[t]; }

/* Append s[0..len) trimmed as Rust's str::trim. */
static void put_trimmed(jbuf *b, const char *s, size_t len) {
    size_t a, z;
    utf8_trim(s, len, &a, &z);
    jb_put(b, s + a, z - a);
}

/* chat_history.as_ref().trim(): the buffer itself, trimmed in place. */
static void trim_buf(jbuf *b) {
    size_t a, z;
    if (!b->data) return;
    utf8_trim(b->data, b->len, &a, &z);
    memmove(b->data, b->data + a, z - a);
    b->len = z - a;
    b->data[b->len] = 0;
}

#define CHATML_DEFAULT_SYSTEM "<|im_start|>system\nAnswer as concisely as possible.<|im_end|>"
#define LLAMA3_DEFAULT_SYSTEM                                                                                     \
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful, respectful and honest "  \
    "assistant. Always answer as short as possible, while being safe.<|eot_id|>"

int build_prompt(template_t t, const message_t *msgs, int n, jbuf *out, const char **error) {
    jbuf system = {0};
    if (n == 0) return *error = "There must be at least one user message to create a prompt from.", -1;
    /* create_system_prompt: the first message if it is a system message, else the default */
    if (msgs[0].role == ROLE_SYSTEM && msgs[0].len) {
        jb_puts(&system, t == TPL_CHATML ? "<|im_start|>system\n"
                                         : "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n");
        jb_put(&system, msgs[0].content, msgs[0].len);
        jb_puts(&system, t == TPL_CHATML ? "<|im_end|>" : "<|eot_id|>");
    } else {
        jb_puts(&system, t == TPL_CHATML ? CHATML_DEFAULT_SYSTEM : LLAMA3_DEFAULT_SYSTEM);
    }
    for (int i = 0; i < n; i++) {
        const message_t *m = &msgs[i];
        switch (m->role) {
        case ROLE_USER: /* append_user_message */
            if (out->len == 0) {
                put_trimmed(out, system.data, system.len); /* never empty here: the crate's other arm is dead */
            } else {
                trim_buf(out);
            }
            jb_puts(out, t == TPL_CHATML ? "\n<|im_start|>user\n" : "<|start_header_id|>user<|end_header_id|>\n\n");
            put_trimmed(out, m->content, m->len);
            jb_puts(out, t == TPL_CHATML ? "<|im_end|>" : "<|eot_id|>");
            break;
        case ROLE_ASSISTANT: /* append_assistant_message */
            if (!m->has_content && !m->has_tool_calls) {
                jb_free(&system);
                return *error = "The message must have content or tool_calls.", -1; /* PromptError::NoAssistantMessage */
            }
            trim_buf(out);
            jb_puts(out, t == TPL_CHATML ? "\n<|im_start|>assistant\n"
                                         : " <|start_header_id|>assistant<|end_header_id|>\n\n");
            put_trimmed(out, m->content, m->has_content ? m->len : 0);
            jb_puts(out, t == TPL_CHATML ? "<|im_end|>" : "<|eot_id|>");
            break;
        case ROLE_TOOL: /* ChatML: append_tool_message; Llama3ChatPrompt skips tool messages */
            if (t != TPL_CHATML) break;
            trim_buf(out);
            jb_puts(out, "\n<|im_start|>tool\n");
            put_trimmed(out, m->content, m->len);
            jb_puts(out, "<|im_end|>");
            break;
        case ROLE_SYSTEM: break; /* `_ => continue` */
        }
    }
    jb_puts(out, t == TPL_CHATML ? "\n<|im_start|>assistant" : "<|start_header_id|>assistant<|end_header_id|>");
    jb_free(&system);
    if (out->failed) return *error = "out of memory", -1;
    return 0;
}

/* -- post_process --------------------------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t a, z; /* the current view s[a..z) */
} view;

static void v_trim(view *v) {
    size_t a, z;
    utf8_trim(v->s + v->a, v->z - v->a, &a, &z);
    v->z = v->a + z;
    v->a += a;
}

static int v_ends(const view *v, const char *suffix) {
    size_t n = strlen(suffix);
    return v->z - v->a >= n && !memcmp(v->s + v->z - n, suffix, n);
}

static int v_starts(const view *v, const char *prefix) {
    size_t n = strlen(prefix);
    return v->z - v->a >= n && !memcmp(v->s + v->a, prefix, n);
}

static void v_trim_end_matches(view *v, const char *suffix) {
    while (*suffix && v_ends(v, suffix)) v->z -= strlen(suffix);
}

static void v_trim_start_matches(view *v, const char *prefix) {
    while (*prefix && v_starts(v, prefix)) v->a += strlen(prefix);
}

static long v_find(const view *v, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = v->a; i + n <= v->z; i++)
        if (!memcmp(v->s + i, needle, n)) return (long)(i - v->a);
    return -1;
}

/* s.replace(pat, "") on the view, compacting in place */
static void v_remove_all(view *v, const char *pat) {
    size_t n = strlen(pat), w = v->a;
    for (size_t r = v->a; r < v->z;) {
        if (r + n <= v->z && !memcmp(v->s + r, pat, n)) r += n;
        else v->s[w++] = v->s[r++];
    }
    v->z = w;
}

void post_process(template_t t, char *s, size_t len, size_t *start, size_t *out_len) {
    view v = {s, 0, len};
    v_trim(&v);
    if (t == TPL_LLAMA3) {
        if (v_ends(&v, "<|eot_id|>")) {
            v_trim_end_matches(&v, "<|eot_id|>");
            v_trim(&v);
        }
    } else {
        if (v_ends(&v, "<|endoftext|>")) {
            v_trim_end_matches(&v, "<|endoftext|>");
            v_trim(&v);
        }
        if (v_starts(&v, ":")) {
            v_trim_start_matches(&v, ":");
            v_trim(&v);
        }
        static const char think[] = "<think>\n\n</think>\n"; /* Qwen3's empty think tags */
        if (v_find(&v, think) >= 0) {
            v_remove_all(&v, think);
            if (v_starts(&v, "()")) v_trim_start_matches(&v, "()");
        }
        v_trim(&v);
        long s_at = v_find(&v, "<|im_start|>"), e_at = v_find(&v, "<|im_end|>");
        if (s_at >= 0 && e_at >= 0) {
            v.z = v.a + (size_t)(s_at <= e_at ? s_at : e_at); /* split(..)[0] of the first marker */
            v_trim(&v);
        } else if (s_at >= 0) {
            v.z = v.a + (size_t)s_at;
            v_trim(&v);
        } else if (e_at >= 0) {
            v_trim_end_matches(&v, "<|im_end|>");
            v_trim(&v);
            if (v_starts(&v, ": ")) v_trim_start_matches(&v, ": ");
        }
    }
    *start = v.a;
    *out_len = v.z - v.a;
}
