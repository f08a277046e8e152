/*
 * activities/llm_internal.h - llm.chat's answer path on its own, without HTTP or the ledger: for
 * the fuzz target tests/fuzz/fuzz_llm_response.c and tests. Not part of keel's API.
 */
#ifndef KEEL_ACTIVITIES_LLM_INTERNAL_H
#define KEEL_ACTIVITIES_LLM_INTERNAL_H

#include "activities/llm.h"

/*
 * What llm.chat does with an HTTP 200 from the provider: read input_json (the activity's input;
 * llm->ledger must be NULL, so a conversation is refused), check that body (the response body,
 * NUL-terminated) is usable, keep it as the ledger would (with x_request_id), and build the
 * activity's result from it, checking tool calls against llm->tools and structured output
 * against response_format.schema. KEEL_OK with *result_json (caller frees); otherwise the failure
 * llm.chat would report went to ctx (keel_activity_fail_with) and *result_json is NULL.
 */
int keel_llm_answer_from_body(const keel_llm *llm, keel_activity_ctx *ctx, const char *input_json,
                              const char *body, char **result_json);

#endif
