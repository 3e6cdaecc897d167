/* llama-server: an OpenAI-compatible subset of LlamaEdge's llama-api-server, in C, on WasmEdge's real ABIs
 * (the sock_* functions in wasi_snapshot_preview1 and the wasi_ephemeral_nn GGML plugin), so the same module
 * runs on real WasmEdge with the real plugin and in labkit's sandbox.
 *
 *   llama-server --prompt-template chatml|llama-3-chat [--model-name NAME] [--model-alias ALIAS]
 *                [--ctx-size N] [--n-predict N] [--temp T] [--top-p P] [--repeat-penalty R]
 *                [--include-usage] [--log-prompts] [--port PORT | --socket-addr IP:PORT]
 *
 * Upstream: LlamaEdge/LlamaEdge v0.28.1 (550146e9): llama-api-server/src/main.rs (flags, /echo, routing),
 * src/backend/{mod,ggml}.rs (routes, headers), src/error.rs (error bodies), crates/llama-core/src/chat/
 * chat_completions.rs (response objects, streaming), crates/endpoints/src/{chat,models,common}.rs (field
 * order). Differences are listed in wasm-apps/README.md.
 *
 * One process, one thread: a poll_oneoff loop over up to MAX_CONNS connections. A generation runs one
 * token (compute_single) per loop turn; between tokens the loop answers every other connection, so
 * /v1/models, /echo and /v1/info never wait for the model. Chat requests arriving meanwhile are parsed
 * and checked at once (a bad one gets its 4xx at once) and queued in arrival order; their connections are
 * left unread until their turn (upstream serialises chat requests on its graph too).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "prompt.h"
#include "wasmedge_sock.h"

#define SERVER_VERSION "0.28.1-labkit" /* the upstream release this follows, marked as ours */

/* -- wasi_ephemeral_nn (WasmEdge's plugin; wasmedge-wasi-nn 0.8 generated.rs) ---------------------- */

#define NN(name) __attribute__((import_module("wasi_ephemeral_nn"), import_name(#name)))
typedef struct {
    const uint32_t *dims;
    uint32_t dims_len;
    uint32_t type; /* 3: U8 */
    const uint8_t *data;
    uint32_t data_len;
} tensor_t;
NN(load_by_name) int32_t nn_load_by_name(const char *name, uint32_t len, uint32_t *graph);
NN(init_execution_context) int32_t nn_init_execution_context(uint32_t graph, uint32_t *ctx);
NN(set_input) int32_t nn_set_input(uint32_t ctx, uint32_t index, const tensor_t *tensor);
NN(compute_single) int32_t nn_compute_single(uint32_t ctx);
NN(get_output) int32_t nn_get_output(uint32_t ctx, uint32_t index, uint8_t *buf, uint32_t size, uint32_t *written);
NN(get_output_single)
int32_t nn_get_output_single(uint32_t ctx, uint32_t index, uint8_t *buf, uint32_t size, uint32_t *written);
NN(fini_single) int32_t nn_fini_single(uint32_t ctx);

enum { NN_TOO_LARGE = 7, NN_END_OF_SEQUENCE = 100, NN_CONTEXT_FULL = 101, NN_PROMPT_TOO_LONG = 102 };

/* -- limits --------------------------------------------------------------------------------------- */

enum {
    MAX_CONNS = 60,             /* ws_poll takes 64 fds: the listener and these */
    MAX_HEADER = 16 * 1024,     /* request line + headers: more is 431 */
    MAX_HEADERS = 100,          /* header lines (hyper's default): more is 431 */
    MAX_BODY = 1024 * 1024,     /* request body: more is 413 */
    MAX_MESSAGES = 4096,
    IDLE_MS = 60 * 1000,        /* a connection silent this long (mid-request or kept alive) is closed */
    SEND_TIMEOUT_S = 30,        /* a client that stops reading is dropped after this */
};

/* -- configuration -------------------------------------------------------------------------------- */

static struct {
    template_t tpl;
    const char *model_name, *model_alias;
    long ctx_size, n_predict, batch_size, ubatch_size;
    double temp, top_p, repeat_penalty;
    int include_usage, log_prompts;
    uint8_t ip[4];
    uint16_t port;
} cfg = {TPL_CHATML, "default", "default", 4096, -1, 512, 512, 1.0, 1.0, 1.1, 0, 0, {0, 0, 0, 0}, 8080};

static uint32_t g_ctx;
static long g_created;
static char g_plugin_version[128] = "unknown";

static void logf_(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -- connections ---------------------------------------------------------------------------------- */

typedef enum { C_FREE, C_READING, C_QUEUED, C_ACTIVE } cstate;

typedef struct job job;

typedef struct {
    cstate state;
    int fd;
    char *buf;
    size_t len, cap;
    int64_t last;
    int continued; /* sent "100 Continue" for the request being read */
    job *job;
} conn;

static conn conns[MAX_CONNS];

typedef struct {
    char method[16];
    char path[1024];
    int http10, close, head;
    long content_length;
    size_t header_len;
    int expect_continue, chunked;
} request;

static int send_all(conn *c, const void *data, size_t len) {
    const char *at = data;
    while (len) {
        size_t sent = 0;
        int err = ws_send(c->fd, at, len, &sent);
        if (err || sent == 0) return -1;
        at += sent;
        len -= sent;
    }
    return 0;
}

static void conn_close(conn *c) {
    if (c->state == C_FREE) return;
    close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
}

#define CORS "Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: *\r\nAccess-Control-Allow-Headers: *\r\n"

/* One whole response: status line, CORS (as upstream sends on every /v1 answer), extra headers, body. */
static int respond(conn *c, const request *rq, int status, const char *reason, const char *type, const char *extra,
                   const char *body, size_t body_len) {
    jbuf h = {0};
    jb_printf(&h, "HTTP/1.1 %d %s\r\n" CORS, status, reason);
    if (type) jb_printf(&h, "Content-Type: %s\r\n", type);
    if (extra) jb_puts(&h, extra);
    jb_printf(&h, "Content-Length: %zu\r\n", body_len);
    if (rq->close) jb_puts(&h, "Connection: close\r\n");
    jb_puts(&h, "\r\n");
    if (!rq->head) jb_put(&h, body, body_len);
    int err = h.failed || send_all(c, h.data, h.len);
    jb_free(&h);
    logf_("[INFO] %s %s -> %d", rq->method, rq->path, status);
    return err ? -1 : 0;
}

static int respond_text(conn *c, const request *rq, int status, const char *reason, const char *fmt, ...) {
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof body) n = sizeof body - 1;
    return respond(c, rq, status, reason, "text/plain", NULL, body, (size_t)n);
}

/* -- chat jobs ------------------------------------------------------------------------------------ */

struct job {
    request rq;
    int stream, include_usage;
    long budget; /* tokens to generate; < 0: until the end or a full context */
    long generated;
    char id[96];
    jbuf prompt, out;
    unsigned char carry[4]; /* an incomplete UTF-8 sequence held back between stream chunks */
    size_t carry_len;
    double temp, top_p;
    int64_t started;
};

static job *queue[MAX_CONNS];
static int queued;
static conn *active;

static void job_free(job *j) {
    if (!j) return;
    jb_free(&j->prompt);
    jb_free(&j->out);
    free(j);
}

static void gen_id(char *out, size_t size) { /* llama-core utils::gen_chat_id: chatcmpl-<uuid v4> */
    uint8_t u[16];
    arc4random_buf(u, sizeof u);
    u[6] = (u[6] & 0x0F) | 0x40;
    u[8] = (u[8] & 0x3F) | 0x80;
    snprintf(out, size, "chatcmpl-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
             u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static int32_t set_bytes(uint32_t index, const char *data, size_t len) {
    static const uint32_t dims[1] = {1};
    tensor_t t = {dims, 1, 3, (const uint8_t *)data, (uint32_t)len};
    return nn_set_input(g_ctx, index, &t);
}

/* usage from output index 1 (the plugin's metadata JSON: input_tokens, output_tokens, ...) */
static void token_usage(long *prompt, long *completion) {
    static char meta[4096];
    uint32_t written = 0;
    *prompt = *completion = 0;
    if (nn_get_output_single(g_ctx, 1, (uint8_t *)meta, sizeof meta - 1, &written) || written >= sizeof meta) return;
    jdoc d;
    if (json_parse(&d, meta, written) == 0) {
        const jnode *in = json_get(&d, &d.nodes[0], "input_tokens"), *out = json_get(&d, &d.nodes[0], "output_tokens");
        if (in && in->type == J_NUM) *prompt = (long)in->num;
        if (out && out->type == J_NUM) *completion = (long)out->num;
    }
    json_free(&d);
}

static void plugin_version(void) { /* llama-core get_plugin_info: b<build> (commit <id>) from output index 1 */
    static char meta[4096];
    uint32_t written = 0;
    if (nn_get_output(g_ctx, 1, (uint8_t *)meta, sizeof meta - 1, &written) || written >= sizeof meta) return;
    jdoc d;
    if (json_parse(&d, meta, written) == 0) {
        const jnode *b = json_get(&d, &d.nodes[0], "llama_build_number");
        const jnode *id = json_get(&d, &d.nodes[0], "llama_commit");
        if (b && b->type == J_NUM && id && id->type == J_STR)
            snprintf(g_plugin_version, sizeof g_plugin_version, "b%ld (commit %.*s)", (long)b->num, (int)id->len,
                     id->str);
    }
    json_free(&d);
}

/* An SSE event as one HTTP chunk, in one send: small writes in a row would meet Nagle and delayed ACKs. */
static int send_event(conn *c, const char *data, size_t len) {
    jbuf b = {0};
    jb_printf(&b, "%zx\r\n", len);
    jb_put(&b, data, len);
    jb_put(&b, "\r\n", 2);
    int err = b.failed || send_all(c, b.data, b.len);
    jb_free(&b);
    return err;
}

static void chunk_json(jbuf *b, job *j, const char *content, size_t len, const char *finish) {
    /* endpoints::chat::ChatCompletionChunk field order: id, choices, created, model, system_fingerprint, object */
    jb_puts(b, "data: {\"id\":");
    jb_str(b, j->id, strlen(j->id));
    jb_puts(b, ",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
    jb_str(b, content, len);
    jb_printf(b, ",\"role\":\"assistant\"},\"logprobs\":null,\"finish_reason\":%s%s%s}],\"created\":%ld,\"model\":",
              finish ? "\"" : "", finish ? finish : "null", finish ? "\"" : "", (long)time(NULL));
    jb_str(b, cfg.model_name, strlen(cfg.model_name));
    jb_puts(b, ",\"system_fingerprint\":\"fp_44709d6fcb\",\"object\":\"chat.completion.chunk\"}\n\n");
}

static int stream_piece(conn *c, job *j, const uint8_t *piece, size_t n, const char *finish) {
    /* emit only whole UTF-8 sequences (llama-core caches partial ones, CACHED_UTF8_ENCODINGS) */
    jbuf text = {0}, ev = {0};
    jb_put(&text, j->carry, j->carry_len);
    jb_put(&text, piece, n);
    size_t keep = 0;
    if (!finish && text.len) {
        size_t b = text.len - 1;
        while (b > 0 && text.len - b < 4 && ((unsigned char)text.data[b] & 0xC0) == 0x80) b--;
        unsigned cp;
        unsigned char lead = (unsigned char)text.data[b];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (need > text.len - b && !utf8_decode((unsigned char *)text.data + b, text.len - b, &cp)) keep = text.len - b;
    }
    j->carry_len = keep;
    memcpy(j->carry, text.data + text.len - keep, keep);
    int err = 0;
    if (text.len - keep || finish) {
        chunk_json(&ev, j, text.data, text.len - keep, finish);
        err = ev.failed || send_event(c, ev.data, ev.len);
    }
    jb_free(&text);
    jb_free(&ev);
    return err;
}

static void request_done(conn *c);

static void finish_job(conn *c, job *j, const char *finish, int nn_error) {
    long prompt_tokens, completion_tokens;
    token_usage(&prompt_tokens, &completion_tokens);
    nn_fini_single(g_ctx);
    double secs = (double)(now_ms() - j->started) / 1000.0;
    logf_("[INFO] generated %ld tokens in %.2f s (%.1f tokens/s), prompt %ld tokens, finish %s", j->generated, secs,
          secs > 0 ? (double)j->generated / secs : 0.0, prompt_tokens, finish);
    int err = 0;
    if (nn_error && !j->stream) {
        err = respond_text(c, &j->rq, 500, "Internal Server Error",
                           "500 Internal Server Error: Failed to get chat completions. Reason: WASI-NN error %d",
                           nn_error);
    } else if (j->stream) {
        jbuf ev = {0};
        if (strcmp(finish, "stop")) err = stream_piece(c, j, NULL, 0, finish); /* length: upstream's last chunk */
        if (!err && j->include_usage) {
            jb_puts(&ev, "data: {\"id\":");
            jb_str(&ev, j->id, strlen(j->id));
            jb_printf(&ev, ",\"choices\":[],\"created\":%ld,\"model\":", (long)time(NULL));
            jb_str(&ev, cfg.model_name, strlen(cfg.model_name));
            jb_printf(&ev,
                      ",\"system_fingerprint\":\"fp_44709d6fcb\",\"object\":\"chat.completion.chunk\",\"usage\":{"
                      "\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}}\n\n",
                      prompt_tokens, completion_tokens, prompt_tokens + completion_tokens);
            err = ev.failed || send_event(c, ev.data, ev.len);
        }
        static const char done[] = "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"; /* the last event and the last chunk */
        if (!err) err = send_all(c, done, sizeof done - 1);
        jb_free(&ev);
    } else {
        size_t start, len;
        jb_put(&j->out, "", 0);
        post_process(cfg.tpl, j->out.data ? j->out.data : (char *)"", j->out.len, &start, &len);
        jbuf b = {0};
        /* ChatCompletionObject: id, object, created, model, choices[{index, message{content, role}, finish_reason,
           logprobs}], usage */
        jb_puts(&b, "{\"id\":");
        jb_str(&b, j->id, strlen(j->id));
        jb_printf(&b, ",\"object\":\"chat.completion\",\"created\":%ld,\"model\":", (long)time(NULL));
        jb_str(&b, cfg.model_name, strlen(cfg.model_name));
        jb_puts(&b, ",\"choices\":[{\"index\":0,\"message\":{\"content\":");
        jb_str(&b, j->out.data ? j->out.data + start : "", len);
        jb_printf(&b,
                  ",\"role\":\"assistant\"},\"finish_reason\":\"%s\",\"logprobs\":null}],\"usage\":{\"prompt_tokens\":"
                  "%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}}",
                  finish, prompt_tokens, completion_tokens, prompt_tokens + completion_tokens);
        char extra[160];
        snprintf(extra, sizeof extra, "user: %s\r\nrequires-tool-call: false\r\n", j->id);
        err = b.failed ? respond_text(c, &j->rq, 500, "Internal Server Error", "500 Internal Server Error: out of memory")
                       : respond(c, &j->rq, 200, "OK", "application/json", extra, b.data, b.len);
        jb_free(&b);
    }
    if (j->stream) logf_("[INFO] %s %s -> 200 (stream)", j->rq.method, j->rq.path);
    int closing = err || j->rq.close;
    job_free(j);
    c->job = NULL;
    active = NULL;
    if (closing) conn_close(c);
    else request_done(c);
}

static void start_job(conn *c) {
    job *j = c->job;
    char meta[256];
    active = c;
    c->state = C_ACTIVE;
    j->started = now_ms();
    /* the metadata as llama-core sends it when a request changes it (temperature, top_p, n_predict) */
    int n = snprintf(meta, sizeof meta,
                     "{\"ctx-size\": %ld, \"batch-size\": %ld, \"ubatch-size\": %ld, \"n-predict\": %ld, "
                     "\"temp\": %g, \"top-p\": %g, \"repeat-penalty\": %g}",
                     cfg.ctx_size, cfg.batch_size, cfg.ubatch_size, j->budget, j->temp, j->top_p, cfg.repeat_penalty);
    int32_t rc = set_bytes(1, meta, (size_t)n);
    if (!rc) rc = set_bytes(0, j->prompt.data, j->prompt.len);
    if (rc) {
        int err = rc == NN_TOO_LARGE
                      ? respond_text(c, &j->rq, 413, "Payload Too Large", "413 Payload Too Large: the prompt is too large")
                      : respond_text(c, &j->rq, 500, "Internal Server Error",
                                     "500 Internal Server Error: Failed to set the prompt. WASI-NN error %d", (int)rc);
        int closing = err || j->rq.close;
        job_free(j);
        c->job = NULL;
        active = NULL;
        if (closing) conn_close(c);
        else request_done(c);
        return;
    }
    if (j->stream) {
        char head[512];
        int h = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\n" CORS
                         "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nuser: %s\r\n"
                         "requires-tool-call: false\r\nTransfer-Encoding: chunked\r\n%s\r\n",
                         j->id, j->rq.close ? "Connection: close\r\n" : "");
        if (send_all(c, head, (size_t)h)) {
            job_free(j);
            c->job = NULL;
            active = NULL;
            conn_close(c);
        }
    }
}

/* One token of the active job. */
static void step_job(void) {
    conn *c = active;
    job *j = c->job;
    static uint8_t piece[4096];
    if (j->budget >= 0 && j->generated >= j->budget) return finish_job(c, j, "length", 0);
    int32_t rc = nn_compute_single(g_ctx);
    if (rc == NN_END_OF_SEQUENCE) return finish_job(c, j, "stop", 0);
    if (rc == NN_CONTEXT_FULL || rc == NN_PROMPT_TOO_LONG) return finish_job(c, j, "length", 0);
    if (rc) return finish_job(c, j, "stop", rc);
    j->generated++;
    uint32_t written = 0;
    rc = nn_get_output_single(g_ctx, 0, piece, sizeof piece, &written);
    if (rc || written > sizeof piece) written = 0;
    if (j->stream) {
        if (written && stream_piece(c, j, piece, written, NULL)) { /* the client went away: stop generating */
            nn_fini_single(g_ctx);
            logf_("[INFO] client gone after %ld tokens", j->generated);
            job_free(j);
            c->job = NULL;
            active = NULL;
            conn_close(c);
        }
    } else {
        jb_put(&j->out, piece, written);
    }
}

/* -- requests ------------------------------------------------------------------------------------- */

static int str_is(const jnode *n, const char *s) {
    return n && n->type == J_STR && n->len == strlen(s) && !memcmp(n->str, s, n->len);
}

/* Deserialize ChatCompletionRequest: NULL or the 400 reason. Fills the job and the message list. */
static const char *read_chat(jdoc *d, job *j, message_t *msgs, int *count, jbuf *joined) {
    const jnode *root = &d->nodes[0];
    if (root->type != J_OBJ) return "invalid type: expected struct ChatCompletionRequest";
    const jnode *messages = json_get(d, root, "messages");
    if (!messages) return "missing field `messages`";
    if (messages->type != J_ARR) return "invalid type for `messages`: expected a sequence";
    int n = 0;
    for (const jnode *m = json_at(d, messages->child); m; m = json_at(d, m->next), n++) {
        if (n >= MAX_MESSAGES) return "too many messages";
        if (m->type != J_OBJ) return "invalid type for a message: expected a map";
        const jnode *role = json_get(d, m, "role"), *content = json_get(d, m, "content");
        message_t *out = &msgs[n];
        memset(out, 0, sizeof *out);
        if (!role) return "missing field `role`";
        if (str_is(role, "system")) out->role = ROLE_SYSTEM;
        else if (str_is(role, "user")) out->role = ROLE_USER;
        else if (str_is(role, "assistant")) out->role = ROLE_ASSISTANT;
        else if (str_is(role, "tool")) out->role = ROLE_TOOL;
        else return "unknown variant for `role`, expected one of `system`, `user`, `assistant`, `tool`";
        if (content && content->type == J_STR) {
            out->content = content->str, out->len = content->len, out->has_content = 1;
        } else if (out->role == ROLE_USER && content && content->type == J_ARR) {
            size_t at = joined->len; /* offsets now, pointers after (the buffer may move) */
            for (const jnode *p = json_at(d, content->child); p; p = json_at(d, p->next)) {
                if (p->type != J_OBJ) return "invalid type for a content part: expected a map";
                const jnode *type = json_get(d, p, "type"), *text = json_get(d, p, "text");
                if (!type || type->type != J_STR) return "missing field `type` in a content part";
                if (!str_is(type, "text")) continue; /* images and audio: ignored by the text templates */
                if (!text || text->type != J_STR) return "missing field `text`";
                jb_put(joined, text->str, text->len);
                jb_put(joined, "\n", 1);
            }
            out->content = (const char *)(uintptr_t)at; /* fixed up below */
            out->len = joined->len - at;
            out->has_content = 2;
        } else if (out->role == ROLE_ASSISTANT && (!content || content->type == J_NULL)) {
            const jnode *calls = json_get(d, m, "tool_calls");
            out->has_tool_calls = calls && calls->type == J_ARR && calls->child >= 0;
        } else {
            return content ? "invalid type for `content`: expected a string" : "missing field `content`";
        }
    }
    if (joined->failed) return "out of memory";
    for (int i = 0; i < n; i++)
        if (msgs[i].has_content == 2) msgs[i].content = joined->data + (uintptr_t)msgs[i].content;
    *count = n;
    const jnode *v;
    if ((v = json_get(d, root, "stream")) && v->type != J_NULL) {
        if (v->type != J_BOOL) return "invalid type for `stream`: expected a boolean";
        j->stream = (int)v->num;
    }
    j->include_usage = cfg.include_usage;
    const jnode *opts = json_get(d, root, "stream_options");
    if (opts && opts->type == J_OBJ && (v = json_get(d, opts, "include_usage")) && v->type == J_BOOL)
        j->include_usage = (int)v->num;
    j->temp = cfg.temp;
    j->top_p = cfg.top_p;
    if ((v = json_get(d, root, "temperature")) && v->type != J_NULL) {
        if (v->type != J_NUM) return "invalid type for `temperature`: expected f64";
        j->temp = v->num < 0 ? 0 : v->num > 100 ? 100 : v->num;
    }
    if ((v = json_get(d, root, "top_p")) && v->type != J_NULL) {
        if (v->type != J_NUM) return "invalid type for `top_p`: expected f64";
        j->top_p = v->num < 0 ? 0 : v->num > 1 ? 1 : v->num;
    }
    j->budget = cfg.n_predict;
    const char *limits[] = {"max_tokens", "max_completion_tokens"}; /* the second wins, as upstream's priority */
    for (int k = 0; k < 2; k++) {
        if ((v = json_get(d, root, limits[k])) && v->type != J_NULL) {
            if (v->type != J_NUM || v->num != (double)(long)v->num || v->num < -2 || v->num > 2147483647)
                return "invalid value for the token limit: expected an i32";
            j->budget = (long)v->num;
        }
    }
    if (j->budget < 0) j->budget = -1;
    if ((v = json_get(d, root, "user")) && v->type == J_STR && v->len > 0 && v->len < sizeof j->id) {
        /* upstream uses the request's `user` as the completion id; a header-safe one only */
        int safe = 1;
        for (size_t i = 0; i < v->len; i++) safe &= v->str[i] > 0x20 && v->str[i] < 0x7f;
        if (safe) memcpy(j->id, v->str, v->len), j->id[v->len] = 0;
    }
    if (!j->id[0]) gen_id(j->id, sizeof j->id);
    return NULL;
}

/* POST /v1/chat/completions: 0 = answered or queued, -1 = close the connection */
static int chat_request(conn *c, const request *rq, char *body, size_t len) {
    jdoc d;
    static message_t msgs[MAX_MESSAGES];
    jbuf joined = {0};
    job *j = calloc(1, sizeof *j);
    if (!j) return respond_text(c, rq, 500, "Internal Server Error", "500 Internal Server Error: out of memory");
    j->rq = *rq;
    int n = 0, status = 0;
    const char *why = NULL;
    if (json_parse(&d, body, len)) {
        status = 400;
        why = d.error;
    } else if ((why = read_chat(&d, j, msgs, &n, &joined)) == NULL) {
        if (build_prompt(cfg.tpl, msgs, n, &j->prompt, &why)) status = 400;
    } else {
        status = 400;
    }
    int err = 0;
    if (status) {
        err = respond_text(c, rq, 400, "Bad Request",
                           "400 Bad Request: Fail to deserialize chat completion request: %s.", why);
        job_free(j);
    } else {
        if (cfg.log_prompts) {
            jbuf line = {0};
            jb_str(&line, j->prompt.data, j->prompt.len);
            logf_("[INFO] prompt: %s", line.data ? line.data : "\"\"");
            jb_free(&line);
        }
        c->job = j;
        c->state = C_QUEUED;
        queue[queued++] = j;
    }
    json_free(&d);
    jb_free(&joined);
    return err ? -1 : 0;
}

static void models_body(jbuf *b) {
    jb_puts(b, "{\"object\":\"list\",\"data\":[{\"id\":");
    jb_str(b, cfg.model_name, strlen(cfg.model_name));
    jb_printf(b, ",\"created\":%ld,\"object\":\"model\",\"owned_by\":\"Not specified\"}]}", g_created);
}

static void info_body(jbuf *b) {
    /* llama-api-server main.rs ApiServer + ModelConfig (serde order; None fields skipped) */
    jb_printf(b, "{\"type\":\"llama\",\"version\":\"%s\",\"ggml_plugin_version\":", SERVER_VERSION);
    jb_str(b, g_plugin_version, strlen(g_plugin_version));
    jb_printf(b, ",\"port\":\"%u\",\"chat_model\":{\"name\":", cfg.port);
    jb_str(b, cfg.model_name, strlen(cfg.model_name));
    jb_printf(b,
              ",\"type\":\"chat\",\"ctx_size\":%ld,\"batch_size\":%ld,\"ubatch_size\":%ld,\"prompt_template\":\"%s\","
              "\"n_predict\":%ld,\"n_gpu_layers\":100,\"temperature\":%g,\"top_p\":%g,\"repeat_penalty\":%g,"
              "\"presence_penalty\":0.0,\"frequency_penalty\":0.0,\"split_mode\":\"layer\"},\"extras\":{}}",
              cfg.ctx_size, cfg.batch_size, cfg.ubatch_size, template_name(cfg.tpl), cfg.n_predict, cfg.temp,
              cfg.top_p, cfg.repeat_penalty);
}

static int method_not_allowed(conn *c, const request *rq, const char *allow) {
    char extra[96];
    snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
    static const char body[] = "405 Method Not Allowed";
    return respond(c, rq, 405, "Method Not Allowed", "text/plain", extra, body, sizeof body - 1);
}

/* Route one complete request (llama-api-server main.rs handle_request + backend/mod.rs). */
static int dispatch(conn *c, request *rq, char *body, size_t len) {
    char *path = rq->path;
    char *q = strchr(path, '?');
    if (q) *q = 0;
    int is_get = !strcmp(rq->method, "GET") || rq->head, is_options = !strcmp(rq->method, "OPTIONS");
    /* root_path: the first path segment */
    size_t seg = strcspn(path + 1, "/");
    if (seg == 4 && !strncmp(path + 1, "echo", 4)) {
        static const char body_text[] = "echo test";
        return respond(c, rq, 200, "OK", NULL, NULL, body_text, sizeof body_text - 1);
    }
    if (seg == 2 && !strncmp(path + 1, "v1", 2)) {
        if (!strcmp(path, "/v1/chat/completions")) {
            if (is_options) return respond(c, rq, 200, "OK", "application/json", NULL, "", 0);
            if (strcmp(rq->method, "POST")) return method_not_allowed(c, rq, "POST, OPTIONS");
            return chat_request(c, rq, body, len);
        }
        if (!strcmp(path, "/v1/models") || !strcmp(path, "/v1/info")) {
            if (is_options) return respond(c, rq, 200, "OK", "application/json", NULL, "", 0);
            if (!is_get) return method_not_allowed(c, rq, "GET, HEAD, OPTIONS");
            jbuf b = {0};
            if (path[4] == 'm') models_body(&b);
            else info_body(&b);
            int err = b.failed ? respond_text(c, rq, 500, "Internal Server Error", "500 Internal Server Error")
                               : respond(c, rq, 200, "OK", "application/json", NULL, b.data, b.len);
            jb_free(&b);
            return err;
        }
        static const char *const upstream_only[] = {"/v1/completions", "/v1/embeddings", "/v1/chunks",
                                                    "/v1/audio/speech", "/v1/responses", "/v1/files"};
        for (size_t i = 0; i < sizeof upstream_only / sizeof *upstream_only; i++)
            if (!strncmp(path, upstream_only[i], strlen(upstream_only[i])))
                return respond_text(c, rq, 501, "Not Implemented", "501 Not Implemented");
        return respond_text(c, rq, 404, "Not Found", "404 The requested service endpoint is not found: %s", path);
    }
    /* upstream serves the web UI's static files here; none: its 404 (text/html, empty without 404.html) */
    return respond(c, rq, 404, "Not Found", "text/html", NULL, "", 0);
}

static int header_is(const char *name, size_t n, const char *want) {
    return strlen(want) == n && !strncasecmp(name, want, n);
}

static int value_has_token(const char *v, size_t n, const char *token) {
    size_t t = strlen(token);
    for (size_t i = 0; i + t <= n; i++)
        if (!strncasecmp(v + i, token, t) && (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
            (i + t == n || v[i + t] == ',' || v[i + t] == ' '))
            return 1;
    return 0;
}

/* Parse the head in c->buf[0..end). 0, or an HTTP status for a bad head. */
static int parse_head(const char *buf, size_t end, request *rq) {
    memset(rq, 0, sizeof *rq);
    rq->content_length = -1;
    size_t i = 0, lines = 0;
    /* request line: METHOD SP TARGET SP HTTP/1.x */
    size_t le = i;
    while (le < end && buf[le] != '\n') le++;
    size_t line_end = le > i && buf[le - 1] == '\r' ? le - 1 : le;
    const char *sp1 = memchr(buf, ' ', line_end), *sp2 = sp1 ? memchr(sp1 + 1, ' ', line_end - (size_t)(sp1 + 1 - buf)) : NULL;
    if (!sp1 || !sp2) return 400;
    size_t mlen = (size_t)(sp1 - buf), plen = (size_t)(sp2 - sp1 - 1), vlen = line_end - (size_t)(sp2 + 1 - buf);
    if (!mlen || mlen >= sizeof rq->method || !plen) return 400;
    for (size_t k = 0; k < mlen; k++)
        if (buf[k] < 'A' || buf[k] > 'Z') return 400;
    memcpy(rq->method, buf, mlen);
    const char *target = sp1 + 1;
    if (plen > 7 && !strncmp(target, "http://", 7)) { /* absolute-form: keep the path */
        const char *slash = memchr(target + 7, '/', plen - 7);
        if (!slash) target = "/", plen = 1;
        else plen -= (size_t)(slash - target), target = slash;
    }
    if (target[0] != '/' || plen >= sizeof rq->path) return plen >= sizeof rq->path ? 414 : 400;
    for (size_t k = 0; k < plen; k++)
        if ((unsigned char)target[k] <= 0x20 || (unsigned char)target[k] >= 0x7f) return 400;
    memcpy(rq->path, target, plen);
    if (vlen == 8 && !memcmp(sp2 + 1, "HTTP/1.1", 8)) rq->http10 = 0;
    else if (vlen == 8 && !memcmp(sp2 + 1, "HTTP/1.0", 8)) rq->http10 = 1, rq->close = 1;
    else return vlen > 5 && !memcmp(sp2 + 1, "HTTP/", 5) ? 505 : 400;
    rq->head = !strcmp(rq->method, "HEAD");
    i = le + 1;
    while (i < end) {
        le = i;
        while (le < end && buf[le] != '\n') le++;
        line_end = le > i && buf[le - 1] == '\r' ? le - 1 : le;
        if (line_end == i) break; /* the empty line */
        if (++lines > MAX_HEADERS) return 431;
        const char *line = buf + i, *colon = memchr(line, ':', line_end - i);
        if (!colon || colon == line || line[0] == ' ' || line[0] == '\t') return 400;
        size_t nlen = (size_t)(colon - line);
        for (size_t k = 0; k < nlen; k++)
            if ((unsigned char)line[k] <= 0x20 || (unsigned char)line[k] >= 0x7f) return 400;
        const char *v = colon + 1, *vend = buf + line_end;
        while (v < vend && (*v == ' ' || *v == '\t')) v++;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
        size_t vn = (size_t)(vend - v);
        for (size_t k = 0; k < vn; k++)
            if ((unsigned char)v[k] < 0x20 && v[k] != '\t') return 400;
        if (header_is(line, nlen, "content-length")) {
            long n = 0;
            if (!vn || vn > 12) return vn > 12 ? 413 : 400;
            for (size_t k = 0; k < vn; k++) {
                if (v[k] < '0' || v[k] > '9') return 400;
                n = n * 10 + (v[k] - '0');
            }
            if (rq->content_length >= 0 && rq->content_length != n) return 400;
            rq->content_length = n;
        } else if (header_is(line, nlen, "transfer-encoding")) {
            rq->chunked = 1;
        } else if (header_is(line, nlen, "connection")) {
            if (value_has_token(v, vn, "close")) rq->close = 1;
            if (value_has_token(v, vn, "keep-alive")) rq->close = 0;
        } else if (header_is(line, nlen, "expect")) {
            if (vn == 12 && !strncasecmp(v, "100-continue", 12)) rq->expect_continue = 1;
        }
        i = le + 1;
    }
    rq->header_len = end;
    if (rq->chunked) return 411;
    if (rq->content_length < 0) rq->content_length = 0;
    if (rq->content_length > MAX_BODY) return 413;
    return 0;
}

/* The end of the head (just past the empty line) in buf[0..len), or 0 if not there yet. */
static size_t head_end(const char *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n') continue;
        if (i + 1 < len && buf[i + 1] == '\n') return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
    }
    return 0;
}

static const char *reason_of(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 505: return "HTTP Version Not Supported";
    }
    return "Error";
}

/* Serve every complete request in c->buf; stops at a queued chat request. */
static void process(conn *c) {
    while (c->state == C_READING) {
        size_t end = head_end(c->buf, c->len);
        if (!end) {
            if (c->len > MAX_HEADER) {
                request rq = {.close = 1};
                strcpy(rq.method, "-");
                strcpy(rq.path, "-");
                respond_text(c, &rq, 431, "Request Header Fields Too Large", "431 Request Header Fields Too Large");
                conn_close(c);
            }
            return;
        }
        request rq;
        memset(&rq, 0, sizeof rq);
        int status = end > MAX_HEADER + 4 ? 431 : parse_head(c->buf, end, &rq);
        if (status) {
            if (status == 431 || !rq.method[0]) strcpy(rq.method, "-"), strcpy(rq.path, "-");
            rq.close = 1;
            rq.head = 0;
            respond_text(c, &rq, status, reason_of(status), "%d %s", status, reason_of(status));
            conn_close(c);
            return;
        }
        size_t total = end + (size_t)rq.content_length;
        if (c->len < total) {
            if (rq.expect_continue && !c->continued) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                c->continued = 1;
                if (send_all(c, cont, sizeof cont - 1)) conn_close(c);
            }
            return;
        }
        c->continued = 0;
        /* the body is handed over in place; the request's bytes are consumed after the answer */
        int err = dispatch(c, &rq, c->buf + end, (size_t)rq.content_length);
        if (c->state == C_FREE) return;
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
        if (err || (c->state == C_READING && rq.close)) {
            conn_close(c);
            return;
        }
    }
}

/* After an answer to a queued chat request: back to reading (pipelined requests may be waiting). */
static void request_done(conn *c) {
    c->state = C_READING;
    c->last = now_ms();
    process(c);
}

static int read_some(conn *c) {
    const size_t most = MAX_HEADER + MAX_BODY + 8192; /* one whole request always fits */
    if (c->cap - c->len < 4096 && c->cap < most) {
        size_t cap = c->cap ? c->cap * 2 : 8192;
        if (cap > most) cap = most;
        char *b = realloc(c->buf, cap);
        if (!b) return -1;
        c->buf = b;
        c->cap = cap;
    }
    if (c->len == c->cap) return -1; /* pipelined bytes past a whole maximal request: drop the client */
    size_t n = 0;
    if (ws_recv(c->fd, c->buf + c->len, c->cap - c->len, &n) || n == 0) return -1;
    c->len += n;
    c->last = now_ms();
    return 0;
}

/* -- command line (clap's messages and exit code 2) ------------------------------------------------ */

static const char USAGE[] = "Usage: llama-server [OPTIONS]";

static void usage_error(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "error: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n\n%s\n\nFor more information, try '--help'.\n", USAGE);
    exit(2);
}

static void help(void) {
    printf("LlamaEdge API Server (labkit's C subset)\n\n%s\n\nOptions:\n"
           "  -p, --prompt-template <PROMPT_TEMPLATE>  chatml | llama-3-chat (required)\n"
           "  -m, --model-name <MODEL_NAME>            [default: default]\n"
           "  -a, --model-alias <MODEL_ALIAS>          the WASMEDGE_WASINN_PRELOAD alias [default: default]\n"
           "  -c, --ctx-size <CTX_SIZE>                [default: 4096]\n"
           "  -b, --batch-size <BATCH_SIZE>            [default: 512]\n"
           "  -u, --ubatch-size <UBATCH_SIZE>          [default: 512]\n"
           "  -n, --n-predict <N_PREDICT>              -1 = until the end or a full context [default: -1]\n"
           "      --temp <TEMP>                        [default: 1.0]\n"
           "      --top-p <TOP_P>                      [default: 1.0]\n"
           "      --repeat-penalty <REPEAT_PENALTY>    [default: 1.1]\n"
           "      --include-usage                      a usage chunk at the end of streams\n"
           "      --log-prompts                        print each prompt (JSON-quoted) to stdout\n"
           "      --socket-addr <SOCKET_ADDR>          e.g. 0.0.0.0:8080\n"
           "      --port <PORT>                        [default: 8080]\n"
           "  -h, --help                               Print help\n"
           "  -V, --version                            Print version\n",
           USAGE);
}

static long parse_long(const char *flag, const char *v, long lo, long hi) {
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < lo || n > hi) usage_error("invalid value '%s' for '%s'", v, flag);
    return n;
}

static double parse_double(const char *flag, const char *v) {
    char *end;
    double d = strtod(v, &end);
    if (!*v || *end || d != d) usage_error("invalid value '%s' for '%s'", v, flag);
    return d;
}

static const char *first_of_list(const char *v) { /* value_delimiter ',': the chat model's is the first */
    char *out = strdup(v);
    if (!out) exit(1);
    out[strcspn(out, ",")] = 0;
    return out;
}

static void parse_args(int argc, char **argv) {
    static const struct {
        const char *l, *s;
        int takes;
    } flags[] = {{"--prompt-template", "-p", 1}, {"--model-name", "-m", 1}, {"--model-alias", "-a", 1},
                 {"--ctx-size", "-c", 1},        {"--batch-size", "-b", 1}, {"--ubatch-size", "-u", 1},
                 {"--n-predict", "-n", 1},       {"--temp", NULL, 1},       {"--top-p", NULL, 1},
                 {"--repeat-penalty", NULL, 1},  {"--include-usage", NULL, 0}, {"--log-prompts", NULL, 0},
                 {"--socket-addr", NULL, 1},     {"--port", NULL, 1},       {"--help", "-h", 0},
                 {"--version", "-V", 0}};
    int have_template = 0, have_port = 0, have_addr = 0;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *value = NULL, name[64];
        snprintf(name, sizeof name, "%s", arg);
        char *eq = strncmp(arg, "--", 2) == 0 ? strchr(name, '=') : NULL;
        if (eq) *eq = 0, value = arg + (eq - name) + 1;
        int f = -1;
        for (size_t k = 0; k < sizeof flags / sizeof *flags; k++)
            if (!strcmp(name, flags[k].l) || (flags[k].s && !strcmp(name, flags[k].s))) f = (int)k;
        if (f < 0) usage_error("unexpected argument '%s' found", arg, NULL);
        if (flags[f].takes && !value) {
            if (i + 1 >= argc) usage_error("a value is required for '%s <VALUE>' but none was supplied", flags[f].l, NULL);
            value = argv[++i];
        }
        const char *l = flags[f].l;
        if (!strcmp(l, "--help")) help(), exit(0);
        if (!strcmp(l, "--version")) printf("llama-server %s\n", SERVER_VERSION), exit(0);
        if (!strcmp(l, "--prompt-template")) {
            int t = template_from_name(first_of_list(value));
            if (t < 0)
                usage_error("invalid value '%s' for '--prompt-template <PROMPT_TEMPLATE>'\n  [possible values: chatml, "
                            "llama-3-chat]%s", value, " (labkit's subset)");
            cfg.tpl = (template_t)t;
            have_template = 1;
        } else if (!strcmp(l, "--model-name")) cfg.model_name = first_of_list(value);
        else if (!strcmp(l, "--model-alias")) cfg.model_alias = first_of_list(value);
        else if (!strcmp(l, "--ctx-size")) cfg.ctx_size = parse_long(l, first_of_list(value), 1, 1 << 24);
        else if (!strcmp(l, "--batch-size")) cfg.batch_size = parse_long(l, first_of_list(value), 1, 1 << 24);
        else if (!strcmp(l, "--ubatch-size")) cfg.ubatch_size = parse_long(l, first_of_list(value), 1, 1 << 24);
        else if (!strcmp(l, "--n-predict")) cfg.n_predict = parse_long(l, value, -2, 2147483647);
        else if (!strcmp(l, "--temp")) cfg.temp = parse_double(l, value);
        else if (!strcmp(l, "--top-p")) cfg.top_p = parse_double(l, value);
        else if (!strcmp(l, "--repeat-penalty")) cfg.repeat_penalty = parse_double(l, value);
        else if (!strcmp(l, "--include-usage")) cfg.include_usage = 1;
        else if (!strcmp(l, "--log-prompts")) cfg.log_prompts = 1;
        else if (!strcmp(l, "--port")) {
            if (have_addr) usage_error("the argument '--port <PORT>' cannot be used with '--socket-addr <SOCKET_ADDR>'", NULL, NULL);
            cfg.port = (uint16_t)parse_long(l, value, 0, 65535);
            have_port = 1;
        } else if (!strcmp(l, "--socket-addr")) {
            if (have_port) usage_error("the argument '--socket-addr <SOCKET_ADDR>' cannot be used with '--port <PORT>'", NULL, NULL);
            if (ws_parse_ipv4(value, cfg.ip, &cfg.port))
                usage_error("invalid value '%s' for '--socket-addr <SOCKET_ADDR>': invalid socket address syntax "
                            "(IPv4 ip:port only here)%s", value, "");
            have_addr = 1;
        }
    }
    if (!have_template) {
        fprintf(stderr, "error: the following required arguments were not provided:\n  --prompt-template "
                        "<PROMPT_TEMPLATE>\n\n%s\n\nFor more information, try '--help'.\n", USAGE);
        exit(2);
    }
    if (cfg.n_predict < -1) cfg.n_predict = -1; /* -2 (until the context is full) is -1 here: both stop there */
}

/* -- main loop ------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    parse_args(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    uint32_t graph;
    int32_t rc = nn_load_by_name(cfg.model_alias, (uint32_t)strlen(cfg.model_alias), &graph);
    if (rc) {
        fprintf(stderr, "llama-server: loading the model '%s' (WASMEDGE_WASINN_PRELOAD alias) failed: WASI-NN error %d\n",
                cfg.model_alias, (int)rc);
        return 1;
    }
    if ((rc = nn_init_execution_context(graph, &g_ctx))) {
        fprintf(stderr, "llama-server: init_execution_context failed: WASI-NN error %d\n", (int)rc);
        return 1;
    }
    char meta[200];
    int n = snprintf(meta, sizeof meta,
                     "{\"ctx-size\": %ld, \"batch-size\": %ld, \"ubatch-size\": %ld, \"n-predict\": %ld, \"temp\": %g, "
                     "\"top-p\": %g, \"repeat-penalty\": %g}",
                     cfg.ctx_size, cfg.batch_size, cfg.ubatch_size, cfg.n_predict, cfg.temp, cfg.top_p,
                     cfg.repeat_penalty);
    if ((rc = set_bytes(1, meta, (size_t)n))) {
        fprintf(stderr, "llama-server: setting the model's metadata failed: WASI-NN error %d\n", (int)rc);
        return 1;
    }
    g_created = (long)time(NULL);
    plugin_version();
    logf_("[INFO] model_name: %s, model_alias: %s, prompt_template: %s, ctx_size: %ld, n_predict: %ld",
          cfg.model_name, cfg.model_alias, template_name(cfg.tpl), cfg.ctx_size, cfg.n_predict);
    logf_("[INFO] plugin_ggml_version: %s", g_plugin_version);
    int listener, err;
    if ((err = ws_listen(cfg.ip, cfg.port, 128, &listener))) {
        fprintf(stderr, "llama-server: bind %u.%u.%u.%u:%u: %s (os error %d)\n", cfg.ip[0], cfg.ip[1], cfg.ip[2],
                cfg.ip[3], cfg.port, ws_strerror(err), err);
        return 1;
    }
    logf_("[INFO] Listening on %u.%u.%u.%u:%u", cfg.ip[0], cfg.ip[1], cfg.ip[2], cfg.ip[3], cfg.port);
    for (;;) {
        ws_pollfd fds[MAX_CONNS + 1];
        int map[MAX_CONNS + 1], nfds = 0, used = 0;
        for (int i = 0; i < MAX_CONNS; i++) used += conns[i].state != C_FREE;
        if (used < MAX_CONNS) fds[nfds] = (ws_pollfd){listener, WS_POLLIN, 0}, map[nfds++] = -1;
        for (int i = 0; i < MAX_CONNS; i++)
            if (conns[i].state == C_READING) fds[nfds] = (ws_pollfd){conns[i].fd, WS_POLLIN, 0}, map[nfds++] = i;
        int ready = 0, busy = active != NULL || queued > 0;
        if ((err = ws_poll(fds, nfds, busy ? 0 : 1000, &ready))) {
            fprintf(stderr, "llama-server: poll: %s\n", ws_strerror(err));
            return 1;
        }
        for (int k = 0; k < nfds; k++) {
            if (!fds[k].revents) continue;
            if (map[k] < 0) {
                int fd;
                if (ws_accept(listener, &fd)) continue;
                for (int i = 0; i < MAX_CONNS; i++) {
                    if (conns[i].state != C_FREE) continue;
                    conns[i] = (conn){C_READING, fd, NULL, 0, 0, now_ms(), 0, NULL};
                    ws_set_timeouts(fd, SEND_TIMEOUT_S);
                    fd = -1;
                    break;
                }
                if (fd >= 0) close(fd);
                continue;
            }
            conn *c = &conns[map[k]];
            if (c->state != C_READING) continue;
            if (read_some(c)) conn_close(c);
            else process(c);
        }
        if (active) step_job();
        else if (queued) {
            job *j = queue[0];
            memmove(queue, queue + 1, (size_t)--queued * sizeof *queue);
            for (int i = 0; i < MAX_CONNS; i++)
                if (conns[i].job == j) start_job(&conns[i]);
        }
        int64_t now = now_ms();
        for (int i = 0; i < MAX_CONNS; i++)
            if (conns[i].state == C_READING && now - conns[i].last > IDLE_MS) conn_close(&conns[i]);
    }
}
