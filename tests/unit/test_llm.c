/*
 * activities/llm.c without a network: how a provider's answer becomes a Temporal failure, the
 * delay it asks for, the key kept out of messages, and what a call costs.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activities/http.h"
#include "activities/llm.h"

#define KEY "sk-secret-key-4242"

static keel_llm_failure classify(long status, const char *body, const char *retry_after,
                                 const char *retry_after_ms, const char *should_retry)
{
    keel_http_response r = {.status = status,
                            .body = (char *)body,
                            .len = body ? strlen(body) : 0,
                            .retry_after = (char *)retry_after,
                            .retry_after_ms = (char *)retry_after_ms,
                            .should_retry = (char *)should_retry};
    keel_llm_failure f;
    /* now: 2026-11-23T12:00:00Z */
    keel_llm_classify_status(&r, KEY, 120000, 1795435200000LL, &f);
    return f;
}

START_TEST(statuses_map_to_types_and_retryability)
{
    static const struct {
        long status;
        const char *type;
        bool non_retryable;
    } cases[] = {
        {400, "LlmInvalidRequest", true}, {401, "LlmAuth", true},
        {402, "LlmBilling", true},        {403, "LlmForbidden", true},
        {404, "LlmModelNotFound", true},  {408, "LlmTimeout", false},
        {409, "LlmConflict", false},      {413, "LlmRequestTooLarge", true},
        {418, "LlmHttpError", true},      {422, "LlmUnprocessable", true},
        {429, "LlmRateLimited", false},   {500, "LlmServerError", false},
        {502, "LlmServerError", false},   {503, "LlmServerError", false},
        {529, "LlmServerError", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        keel_llm_failure f = classify(cases[i].status, "{}", NULL, NULL, NULL);
        ck_assert_msg(strcmp(f.type, cases[i].type) == 0, "%ld: %s", cases[i].status, f.type);
        ck_assert_msg(f.non_retryable == cases[i].non_retryable, "%ld", cases[i].status);
    }
}
END_TEST

START_TEST(an_exhausted_quota_is_not_a_rate_limit)
{
    keel_llm_failure f = classify(
        429,
        "{\"error\":{\"message\":\"You exceeded your current quota\",\"type\":\"insufficient_"
        "quota\",\"code\":\"insufficient_quota\"}}",
        "20", NULL, NULL);
    ck_assert_str_eq(f.type, "LlmQuotaExhausted");
    ck_assert(f.non_retryable);
    ck_assert_int_eq(f.next_retry_delay_ms, 0);
    ck_assert_ptr_nonnull(strstr(f.message, "You exceeded your current quota"));
}
END_TEST

START_TEST(the_delay_comes_from_the_provider)
{
    ck_assert_int_eq(classify(429, "{}", "7", NULL, NULL).next_retry_delay_ms, 7000);
    ck_assert_int_eq(classify(429, "{}", "0.25", NULL, NULL).next_retry_delay_ms, 250);
    /* retry-after-ms wins over Retry-After */
    ck_assert_int_eq(classify(429, "{}", "7", "1500.2", NULL).next_retry_delay_ms, 1501);
    /* an HTTP date: 30 s after "now" */
    ck_assert_int_eq(
        classify(503, "{}", "Mon, 23 Nov 2026 12:00:30 GMT", NULL, NULL).next_retry_delay_ms,
        30000);
    /* clamped to the configured maximum (120 s here) */
    ck_assert_int_eq(classify(429, "{}", "3600", NULL, NULL).next_retry_delay_ms, 120000);
    /* nonsense is ignored: the retry policy's backoff applies */
    ck_assert_int_eq(classify(429, "{}", "soon", NULL, NULL).next_retry_delay_ms, 0);
    ck_assert_int_eq(classify(429, "{}", "-5", NULL, NULL).next_retry_delay_ms, 0);
    /* no delay on a failure that will not be retried */
    ck_assert_int_eq(classify(400, "{}", "7", NULL, NULL).next_retry_delay_ms, 0);
}
END_TEST

START_TEST(x_should_retry_overrides_the_status)
{
    ck_assert(!classify(400, "{}", NULL, NULL, "true").non_retryable);
    ck_assert(classify(503, "{}", NULL, NULL, "false").non_retryable);
}
END_TEST

START_TEST(the_key_is_removed_from_provider_messages)
{
    keel_llm_failure f = classify(
        401, "{\"error\":{\"message\":\"Incorrect API key provided: " KEY ". Find yours at ...\"}}",
        NULL, NULL, NULL);
    ck_assert_ptr_null(strstr(f.message, KEY));
    ck_assert_ptr_nonnull(strstr(f.message, "[redacted]"));
    ck_assert_ptr_nonnull(strstr(f.message, "HTTP 401"));
}
END_TEST

START_TEST(short_keys_and_keys_at_a_cut_are_removed_whole)
{
    /* A short key (local servers use "EMPTY", "ollama") echoed at the very end of a long
     * message, and in the request id. */
    char body[1400], rid[64];
    snprintf(body, sizeof body, "{\"error\":{\"message\":\"%0*d key EMPTY\"}}", 590, 0);
    snprintf(rid, sizeof rid, "req-EMPTY-1");
    keel_http_response r = {.status = 429, .body = body, .len = strlen(body), .request_id = rid};
    keel_llm_failure f;
    keel_llm_classify_status(&r, "EMPTY", 1000, 0, &f);
    ck_assert_ptr_null(strstr(f.message, "EMPTY"));
    /* A key that straddles where the message is cut leaves no prefix behind. */
    snprintf(body, sizeof body, "{\"error\":{\"message\":\"%0*d %s\"}}", 590, 0, KEY);
    r.body = body;
    r.len = strlen(body);
    r.request_id = NULL;
    keel_llm_classify_status(&r, KEY, 1000, 0, &f);
    ck_assert_ptr_null(strstr(f.message, "sk-secret"));
    /* A key that is part of the mark itself does not loop. */
    keel_llm_classify_status(&r, "dact", 1000, 0, &f);
}
END_TEST

START_TEST(absurd_delays_are_clamped_not_overflowed)
{
    ck_assert_int_eq(classify(429, "{}", NULL, "1e20", NULL).next_retry_delay_ms, 120000);
    ck_assert_int_eq(classify(429, "{}", "99999999999999999999", NULL, NULL).next_retry_delay_ms,
                     120000);
    ck_assert_int_eq(classify(429, "{}", "inf", NULL, NULL).next_retry_delay_ms, 0);
}
END_TEST

START_TEST(a_body_that_is_not_an_error_object_is_quoted)
{
    keel_llm_failure f = classify(502, "<html>Bad gateway</html>", NULL, NULL, NULL);
    ck_assert_ptr_nonnull(strstr(f.message, "<html>Bad gateway"));
    f = classify(500, "", NULL, NULL, NULL);
    ck_assert_ptr_nonnull(strstr(f.message, "(no message)"));
}
END_TEST

START_TEST(transport_errors_are_retryable_except_configuration)
{
    keel_error e = {.message = "POST to api.example:443: Timeout was reached"};
    keel_llm_failure f;
    keel_llm_classify_transport(KEEL_ETIMEOUT, &e, &f);
    ck_assert_str_eq(f.type, "LlmTimeout");
    ck_assert(!f.non_retryable);
    keel_llm_classify_transport(KEEL_EUNAVAILABLE, &e, &f);
    ck_assert_str_eq(f.type, "LlmUnavailable");
    keel_llm_classify_transport(KEEL_EPROTOCOL, &e, &f);
    ck_assert_str_eq(f.type, "LlmMalformedResponse");
    ck_assert(!f.non_retryable);
    keel_llm_classify_transport(KEEL_EEXHAUSTED, &e, &f);
    ck_assert(f.non_retryable);
}
END_TEST

START_TEST(cost_follows_the_price_table)
{
    keel_llm_config cfg = {0};
    keel_error err;
    ck_assert_int_eq(keel_llm_config_set_prices(
                         &cfg, "{\"m\":{\"input\":2,\"cached_input\":1,\"output\":8}}", &err),
                     KEEL_OK);
    double usd;
    ck_assert(keel_llm_cost(&cfg, "m", 1000000, 250000, 500000, &usd));
    ck_assert_double_eq_tol(usd, 0.75 * 2 + 0.25 * 1 + 0.5 * 8, 1e-9);
    ck_assert(!keel_llm_cost(&cfg, "unknown", 1, 0, 1, &usd));
    /* cached_input defaults to input */
    ck_assert_int_eq(keel_llm_config_set_prices(&cfg, "{\"n\":{\"input\":1,\"output\":1}}", &err),
                     KEEL_OK);
    ck_assert(keel_llm_cost(&cfg, "n", 10, 10, 0, &usd));
    ck_assert_double_eq_tol(usd, 10 / 1e6, 1e-12);
    /* bad tables are refused and the old one stays */
    ck_assert_int_eq(keel_llm_config_set_prices(&cfg, "{\"x\":{\"input\":-1,\"output\":1}}", &err),
                     KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "x"));
    ck_assert_int_eq(keel_llm_config_set_prices(&cfg, "[1,2]", &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_llm_config_set_prices(&cfg, "{\"y\":{\"output\":1}}", &err), KEEL_EINVAL);
    ck_assert(keel_llm_cost(&cfg, "n", 10, 0, 0, &usd));
    keel_llm_config_dispose(&cfg);
}
END_TEST

START_TEST(configuration_comes_from_the_environment)
{
    setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1//", 1);
    setenv("OPENAI_API_KEY", KEY, 1);
    setenv("KEEL_MODEL", "m1", 1);
    unsetenv("KEEL_MODEL_STRONG");
    setenv("KEEL_LLM_TIMEOUT", "45s", 1);
    unsetenv("KEEL_PRICES");
    keel_llm_config cfg;
    keel_error err;
    ck_assert_int_eq(keel_llm_config_from_env(&cfg, &err), KEEL_OK);
    ck_assert_str_eq(cfg.base_url, "http://127.0.0.1:9/v1");
    ck_assert_str_eq(cfg.model, "m1");
    ck_assert_str_eq(cfg.strong_model, "gpt-4o");
    ck_assert_int_eq(cfg.timeout_ms, 45000);
    double usd;
    ck_assert(keel_llm_cost(&cfg, "keel-scripted-small", 1000000, 0, 0, &usd));
    keel_llm_config_dispose(&cfg);
    setenv("KEEL_LLM_TIMEOUT", "soon", 1);
    ck_assert_int_eq(keel_llm_config_from_env(&cfg, &err), KEEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.message, "KEEL_LLM_TIMEOUT"));
    unsetenv("KEEL_LLM_TIMEOUT");
    setenv("KEEL_PRICES", "/nonexistent/prices.json", 1);
    ck_assert_int_ne(keel_llm_config_from_env(&cfg, &err), KEEL_OK);
    ck_assert_ptr_nonnull(strstr(err.message, "KEEL_PRICES"));
    unsetenv("KEEL_PRICES");
    unsetenv("OPENAI_API_KEY");
}
END_TEST

/* keel-worker logs the model endpoint: never the credentials a URL may carry. */
START_TEST(endpoints_are_logged_without_credentials)
{
    static const struct {
        const char *url, *logged;
    } cases[] = {
        {"https://api.openai.com/v1", "https://api.openai.com/v1"},
        {"http://127.0.0.1:8398/v1/", "http://127.0.0.1:8398/v1/"},
        {"https://bob:s3cret@llm.corp.example/v1", "https://(credentials)@llm.corp.example/v1"},
        {"https://llm.corp.example/openai?api-key=s3cret&x=1",
         "https://llm.corp.example/openai?(query redacted)"},
        {"https://llm.corp.example", "https://llm.corp.example"},
        {"not a url", "(unparsable URL)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        keel_http_url_for_log(cases[i].url, out, sizeof out);
        ck_assert_str_eq(out, cases[i].logged);
        ck_assert_ptr_null(strstr(out, "s3cret"));
    }
}
END_TEST

Suite *llm_suite(void);

Suite *llm_suite(void)
{
    Suite *s = suite_create("llm");
    TCase *tc = tcase_create("classify");
    tcase_add_test(tc, statuses_map_to_types_and_retryability);
    tcase_add_test(tc, endpoints_are_logged_without_credentials);
    tcase_add_test(tc, an_exhausted_quota_is_not_a_rate_limit);
    tcase_add_test(tc, the_delay_comes_from_the_provider);
    tcase_add_test(tc, x_should_retry_overrides_the_status);
    tcase_add_test(tc, the_key_is_removed_from_provider_messages);
    tcase_add_test(tc, a_body_that_is_not_an_error_object_is_quoted);
    tcase_add_test(tc, short_keys_and_keys_at_a_cut_are_removed_whole);
    tcase_add_test(tc, absurd_delays_are_clamped_not_overflowed);
    tcase_add_test(tc, transport_errors_are_retryable_except_configuration);
    suite_add_tcase(s, tc);
    TCase *cfg = tcase_create("config");
    tcase_add_test(cfg, cost_follows_the_price_table);
    tcase_add_test(cfg, configuration_comes_from_the_environment);
    suite_add_tcase(s, cfg);
    return s;
}
