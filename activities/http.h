/*
 * activities/http.h - one JSON POST over libcurl, for the model provider and webhooks.
 *
 * The call blocks the activity thread, but not silently: while it waits, it heartbeats through
 * the activity context (throttled by the worker), and a cancellation learned that way aborts the
 * transfer. Redirects are not followed (a provider that redirects a POST is misconfigured) and
 * the response body is capped, so a hostile or broken peer cannot exhaust memory.
 */
#ifndef KEEL_ACTIVITIES_HTTP_H
#define KEEL_ACTIVITIES_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "keel/activity.h"
#include "keel/error.h"

/* Call once before threads start (libcurl's global state). Safe to call more than once. */
int keel_http_global_init(keel_error *err);

/* url as it may be logged: scheme, host, port and path, with any userinfo shown as
 * "(credentials)@" and any query as "?(query redacted)", since both carry secrets
 * (user:pass@host, ?api-key=...). Into out[cap]; "(unparsable URL)" when libcurl cannot parse
 * it. */
void keel_http_url_for_log(const char *url, char *out, size_t cap);

typedef struct keel_http_request {
    const char *url;             /* required */
    const char *body;            /* JSON text, required */
    const char *bearer_token;    /* "Authorization: Bearer ..." when non-NULL and non-empty */
    const char *idempotency_key; /* "Idempotency-Key: ..." when non-NULL and non-empty: the key
                                    itself when short and printable, else sha256-<its hex> */
    long timeout_ms;             /* the whole exchange; default 120 s */
    long connect_timeout_ms;     /* default 10 s */
    size_t max_body;             /* response bytes kept; default 8 MiB; more is an error... */
    bool truncate_body;          /* ...unless this is set: then the rest is read and dropped */
    keel_activity_ctx *activity; /* heartbeats while waiting; may be NULL */
} keel_http_request;

typedef struct keel_http_response {
    long status; /* HTTP status */
    char *body;  /* NUL-terminated, len bytes (may contain NULs) */
    size_t len;
    bool truncated;       /* truncate_body dropped bytes past max_body */
    char *content_type;   /* header values, NULL when absent */
    char *retry_after;    /* Retry-After */
    char *retry_after_ms; /* retry-after-ms (OpenAI, Azure) */
    char *should_retry;   /* x-should-retry */
    char *request_id;     /* x-request-id */
} keel_http_response;

/*
 * POST req->body to req->url. KEEL_OK when an HTTP response arrived (any status), with *resp
 * filled; dispose it with keel_http_response_dispose either way. Errors, each naming the host:
 * KEEL_ECANCELLED (a heartbeat learned of cancellation), KEEL_ETIMEOUT (retryable),
 * KEEL_EUNAVAILABLE (DNS, connect, TLS, reset; retryable), KEEL_EPROTOCOL (the body ended
 * before its Content-Length, or the HTTP framing was bad; retryable), KEEL_EEXHAUSTED (the body
 * exceeded max_body), KEEL_EINVAL (bad URL). The bearer token never appears in a message.
 */
int keel_http_post_json(const keel_http_request *req, keel_http_response *resp, keel_error *err);

void keel_http_response_dispose(keel_http_response *resp);

#endif
