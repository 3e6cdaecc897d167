/* prompt.h: chat prompts as LlamaEdge's chat-prompts crate builds them, and llama-core's post-processing.
 *
 * Read at LlamaEdge/LlamaEdge v0.28.1 (550146e9): crates/chat-prompts/src/chat/chatml.rs (ChatMLPrompt),
 * crates/chat-prompts/src/chat/llama.rs (Llama3ChatPrompt), crates/llama-core/src/chat/chat_completions.rs
 * (post_process). Rust's trim() is Unicode White_Space trimming (utf8_trim).
 */
#ifndef LLAMA_SERVER_PROMPT_H
#define LLAMA_SERVER_PROMPT_H

#include <stddef.h>

#include "json.h"

typedef enum { TPL_CHATML, TPL_LLAMA3 } template_t;

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL } role_t;

typedef struct {
    role_t role;
    const char *content; /* user: text parts joined, each followed by '\n' (as the crate does) */
    size_t len;
    int has_content; /* assistant: content present (not null) */
    int has_tool_calls;
} message_t;

/* The template's name as the --prompt-template value, or -1. */
int template_from_name(const char *name);
const char *template_name(template_t t);

/* Build the prompt; 0 or -1 with *error (the crate's PromptError text). */
int build_prompt(template_t t, const message_t *msgs, int n, jbuf *out, const char **error);

/* post_process for the template, in place: returns the new [start, start+len) within s. */
void post_process(template_t t, char *s, size_t len, size_t *start, size_t *out_len);

#endif
