/* wasinn-chat: one chat turn through WASI-NN as WasmEdge's GGML plugin serves it (wasi_ephemeral_nn).

   wasinn-chat [--single] [--n-predict N] [--ctx-size N] [--temp T] ALIAS PROMPT

   Loads the model preloaded as ALIAS (WASMEDGE_WASINN_PRELOAD=ALIAS:GGML:CPU:/path/model.gguf) with
   load_by_name, wraps PROMPT in ChatML (SmolLM2's template), sets the metadata (index 1) and the prompt
   (index 0), then either compute + get_output (the whole answer) or, with --single, compute_single +
   get_output_single per token until END_OF_SEQUENCE (100) or N tokens, then fini_single. Prints the answer on one line
   ("answer: ...") and the output metadata (index 1, token counts) as "metadata: {...}".
   Exit codes: 0 ok; 2 usage; 10 + the WASI-NN error code of the call that failed (e.g. 18: NOT_FOUND). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NN(name) __attribute__((import_module("wasi_ephemeral_nn"), import_name(#name)))

typedef struct {
    const uint32_t *dims;
    uint32_t dims_len;
    uint32_t type; /* 3: U8 */
    const uint8_t *data;
    uint32_t data_len;
} tensor_t; /* | dim buf | dim buf len | rtype | data buf | data buf len | (WasmEdge wasinnfunc.cpp) */

NN(load_by_name) int32_t nn_load_by_name(const char *name, uint32_t len, uint32_t *graph);
NN(init_execution_context) int32_t nn_init_execution_context(uint32_t graph, uint32_t *ctx);
NN(set_input) int32_t nn_set_input(uint32_t ctx, uint32_t index, const tensor_t *tensor);
NN(compute) int32_t nn_compute(uint32_t ctx);
NN(compute_single) int32_t nn_compute_single(uint32_t ctx);
NN(get_output) int32_t nn_get_output(uint32_t ctx, uint32_t index, uint8_t *buf, uint32_t size, uint32_t *written);
NN(get_output_single) int32_t nn_get_output_single(uint32_t ctx, uint32_t index, uint8_t *buf, uint32_t size,
                                                   uint32_t *written);
NN(fini_single) int32_t nn_fini_single(uint32_t ctx);
NN(unload) int32_t nn_unload(uint32_t graph);

#define END_OF_SEQUENCE 100
static uint8_t out[1 << 16];

static int fail(const char *call, int32_t code) {
    fprintf(stderr, "wasinn-chat: %s failed: WASI-NN error %d\n", call, (int)code);
    return 10 + (code > 200 ? 200 : code);
}

static int32_t set_bytes(uint32_t ctx, uint32_t index, const char *text) {
    static const uint32_t dims[1] = {1};
    tensor_t t = {dims, 1, 3, (const uint8_t *)text, (uint32_t)strlen(text)};
    return nn_set_input(ctx, index, &t);
}

static void print_line(const char *label, const uint8_t *data, uint32_t n) {
    printf("%s: ", label);
    for (uint32_t i = 0; i < n; i++) putchar(data[i] == '\n' ? ' ' : data[i]);
    putchar('\n');
}

int main(int argc, char **argv) {
    int single = 0, n_predict = 64, ctx_size = 512, i = 1;
    const char *temp = "0";
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (!strcmp(argv[i], "--single")) single = 1;
        else if (!strcmp(argv[i], "--n-predict") && i + 1 < argc) n_predict = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ctx-size") && i + 1 < argc) ctx_size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--temp") && i + 1 < argc) temp = argv[++i];
        else return fprintf(stderr, "wasinn-chat: unknown option %s\n", argv[i]), 2;
    }
    if (argc - i != 2) return fprintf(stderr, "usage: wasinn-chat [--single] [--n-predict N] ALIAS PROMPT\n"), 2;
    const char *alias = argv[i], *question = argv[i + 1];

    uint32_t graph, ctx, written = 0;
    int32_t rc = nn_load_by_name(alias, (uint32_t)strlen(alias), &graph);
    if (rc) return fail("load_by_name", rc);
    if ((rc = nn_init_execution_context(graph, &ctx))) return fail("init_execution_context", rc);
    char meta[160];
    snprintf(meta, sizeof meta, "{\"n-predict\": %d, \"ctx-size\": %d, \"temp\": %s, \"threads\": 2}", n_predict,
             ctx_size, temp);
    if ((rc = set_bytes(ctx, 1, meta))) return fail("set_input(metadata)", rc);
    size_t plen = strlen(question) + 256;
    char *prompt = malloc(plen);
    snprintf(prompt, plen,
             "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
             "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
             question);
    if ((rc = set_bytes(ctx, 0, prompt))) return fail("set_input(prompt)", rc);

    if (single) {
        static uint8_t answer[sizeof out];
        uint32_t used = 0;
        for (int n = 0; n_predict < 0 || n < n_predict; n++) { /* compute_single ignores n-predict: the caller counts */
            rc = nn_compute_single(ctx);
            if (rc == END_OF_SEQUENCE) break;
            if (rc) return fail("compute_single", rc);
            if ((rc = nn_get_output_single(ctx, 0, out, sizeof out, &written))) return fail("get_output_single", rc);
            if (used + written < sizeof answer) memcpy(answer + used, out, written), used += written;
        }
        print_line("answer", answer, used);
        if ((rc = nn_get_output_single(ctx, 1, out, sizeof out, &written))) return fail("get_output_single(1)", rc);
        print_line("metadata", out, written);
        if ((rc = nn_fini_single(ctx))) return fail("fini_single", rc);
    } else {
        if ((rc = nn_compute(ctx))) return fail("compute", rc);
        if ((rc = nn_get_output(ctx, 0, out, sizeof out, &written))) return fail("get_output", rc);
        print_line("answer", out, written);
        if ((rc = nn_get_output(ctx, 1, out, sizeof out, &written))) return fail("get_output(1)", rc);
        print_line("metadata", out, written);
    }
    if ((rc = nn_unload(graph))) return fail("unload", rc);
    return 0;
}
