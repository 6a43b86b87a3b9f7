/* generate: embeds the Kiln runtime in a C program.
 *
 *   generate MODEL.kiln PROMPT_IDS [MAX_NEW_TOKENS]
 *   generate model.kiln 1,15,43 16
 *
 * Loads a compiled artifact, prints what the model is, generates greedy
 * tokens for one prompt (comma-separated token ids) and prints them with the
 * timings of the call. Every call's status is checked: on an error the
 * program prints the status's text (kiln_status_format) and exits with 1;
 * bad arguments exit with 2. Everything it creates is released on every
 * path.
 *
 * It uses only the installed runtime (kiln/runtime/api.h, libkiln_runtime):
 * see examples/README.md for how to build it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/runtime/api.h"

/* Prints "error: WHAT: CODE: message [file:line]" and releases `status`.
 * Returns 1 (the exit code of a runtime error). */
static int report(const char* what, kiln_status_t status) {
  size_t length = 0;
  kiln_status_format(status, NULL, 0, &length); /* size query */
  char* text = malloc(length + 1);
  if (text) {
    kiln_status_format(status, text, length + 1, NULL);
    fprintf(stderr, "error: %s: %s\n", what, text);
    free(text);
  } else {
    fprintf(stderr, "error: %s: %s\n", what,
            kiln_status_code_string(kiln_status_code(status)));
  }
  kiln_status_free(status);
  return 1;
}

/* Parses "1,2,3" into a malloc'ed array. Returns 0 on success. */
static int parse_ids(const char* text, int64_t** out_ids, size_t* out_count) {
  size_t capacity = 1;
  for (const char* p = text; *p; ++p)
    if (*p == ',') ++capacity;
  int64_t* ids = malloc(capacity * sizeof(int64_t));
  if (!ids) return 1;
  size_t count = 0;
  const char* p = text;
  for (;;) {
    char* end = NULL;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno || (*end != ',' && *end != '\0')) {
      fprintf(stderr, "error: '%s' is not a comma-separated list of token ids\n", text);
      free(ids);
      return 1;
    }
    ids[count++] = (int64_t)v;
    if (*end == '\0') break;
    p = end + 1;
  }
  *out_ids = ids;
  *out_count = count;
  return 0;
}

static void print_tensor_info(const char* kind, size_t index, const kiln_tensor_info_t* t) {
  printf("  %s %zu: %s %s [", kind, index, t->name, kiln_dtype_name(t->dtype));
  for (size_t d = 0; d < t->rank; ++d) {
    if (d) printf(", ");
    if (t->dim_names[d][0])
      printf("%s", t->dim_names[d]);
    else if (t->shape[d] < 0)
      printf("?");
    else
      printf("%" PRId64, t->shape[d]);
  }
  printf("] role=%s", t->role);
  if (t->layer >= 0) printf(" layer=%d", (int)t->layer);
  printf("\n");
}

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s MODEL.kiln PROMPT_IDS [MAX_NEW_TOKENS]\n"
                    "  e.g. %s model.kiln 1,15,43 16\n", argv[0], argv[0]);
    return 2;
  }
  int32_t max_new_tokens = 16;
  if (argc == 4) {
    char* end = NULL;
    long v = strtol(argv[3], &end, 10);
    if (end == argv[3] || *end || v <= 0 || v > 1000000) {
      fprintf(stderr, "error: MAX_NEW_TOKENS must be a positive integer, got '%s'\n", argv[3]);
      return 2;
    }
    max_new_tokens = (int32_t)v;
  }
  int64_t* prompt = NULL;
  size_t prompt_length = 0;
  if (parse_ids(argv[2], &prompt, &prompt_length)) return 2;

  /* The header this program was built with must match the loaded library. */
  if (kiln_runtime_abi_version() != KILN_RUNTIME_ABI_VERSION) {
    fprintf(stderr, "error: runtime ABI %u, but this program was built for %u\n",
            (unsigned)kiln_runtime_abi_version(), (unsigned)KILN_RUNTIME_ABI_VERSION);
    free(prompt);
    return 1;
  }

  int rc = 0;
  kiln_status_t status = NULL;
  kiln_model_t model = NULL;
  kiln_session_t session = NULL;
  kiln_generation_t generation = NULL;

  printf("kiln runtime %s (ABI %u)\n", kiln_runtime_version_string(),
         (unsigned)kiln_runtime_abi_version());

  status = kiln_model_load(argv[1], NULL, &model);
  if (status) { rc = report("loading the model", status); goto done; }

  kiln_model_info_t info;
  status = kiln_model_info(model, &info);
  if (status) { rc = report("reading the model info", status); goto done; }
  printf("model: %s\n", argv[1]);
  printf("  target %s, producer '%s'\n", info.target, info.producer);
  printf("  %zu kernel launches per forward, %" PRIu64 " bytes of weights\n",
         info.launch_count, info.weight_bytes);
  printf("  vocab %" PRId64 ", %d KV layers, max sequence %" PRId64 ", bos %" PRId64
         ", pad %" PRId64 ", eos [", info.vocab_size, (int)info.num_layers,
         info.max_sequence_length, info.bos_token_id, info.pad_token_id);
  for (size_t i = 0; i < info.eos_count; ++i)
    printf("%s%" PRId64, i ? ", " : "", info.eos_token_ids[i]);
  printf("]\n");
  for (size_t i = 0; i < kiln_model_input_count(model); ++i) {
    kiln_tensor_info_t t;
    status = kiln_model_input_info(model, i, &t);
    if (status) { rc = report("reading an input", status); goto done; }
    print_tensor_info("input", i, &t);
  }
  for (size_t i = 0; i < kiln_model_output_count(model); ++i) {
    kiln_tensor_info_t t;
    status = kiln_model_output_info(model, i, &t);
    if (status) { rc = report("reading an output", status); goto done; }
    print_tensor_info("output", i, &t);
  }
  if (!info.generation) {
    fprintf(stderr, "error: this model cannot generate: %s\n", info.generation_unsupported);
    rc = 1;
    goto done;
  }

  kiln_session_options_t session_options;
  kiln_session_options_init(&session_options);
  status = kiln_session_create(model, &session_options, &session);
  if (status) { rc = report("creating a session", status); goto done; }

  kiln_generate_options_t options;
  kiln_generate_options_init(&options); /* greedy: temperature 0 */
  options.max_new_tokens = max_new_tokens;
  const int64_t* prompts[1] = {prompt};
  size_t lengths[1] = {prompt_length};
  status = kiln_session_generate(session, prompts, lengths, 1, &options, &generation);
  if (status) { rc = report("generating", status); goto done; }

  const int64_t* tokens = NULL;
  size_t count = 0;
  kiln_stop_reason_t reason;
  status = kiln_generation_sequence(generation, 0, &tokens, &count, &reason);
  if (status) { rc = report("reading the generated tokens", status); goto done; }
  printf("prompt (%zu tokens):", prompt_length);
  for (size_t i = 0; i < prompt_length; ++i) printf(" %" PRId64, prompt[i]);
  printf("\ngenerated (%zu tokens, stopped by %s):", count,
         reason == KILN_STOP_EOS          ? "eos"
         : reason == KILN_STOP_MAX_TOKENS ? "max_new_tokens"
                                          : "callback");
  for (size_t i = 0; i < count; ++i) printf(" %" PRId64, tokens[i]);
  printf("\n");

  kiln_generation_stats_t stats;
  status = kiln_generation_stats(generation, &stats);
  if (status) { rc = report("reading the timings", status); goto done; }
  printf("timing: prefill %.3f ms, first token %.3f ms, decode %.3f ms over %zu steps\n",
         stats.prefill_ms, stats.time_to_first_token_ms, stats.decode_ms, stats.decode_steps);
  printf("        %zu tokens, %.1f tok/s (decode %.1f tok/s), "
         "step p50 %.3f ms, p90 %.3f ms, max %.3f ms\n",
         stats.generated_tokens, stats.tokens_per_second, stats.decode_tokens_per_second,
         stats.step_ms_p50, stats.step_ms_p90, stats.step_ms_max);

done:
  kiln_generation_release(generation);
  kiln_session_release(session);
  kiln_model_release(model);
  free(prompt);
  return rc;
}
