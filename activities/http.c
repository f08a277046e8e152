/*
 * activities/http.c - a JSON POST over libcurl with heartbeats, caps and header capture.
 */
#include "activities/http.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#define DEFAULT_TIMEOUT_MS         120000L
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_MAX_BODY           ((size_t)8 << 20)

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int keel_http_global_init(keel_error *err)
{
    pthread_once(&global_once, global_init_once);
    if (global_rc != CURLE_OK)
        return keel_error_set(err, KEEL_EINTERNAL, "libcurl failed to start: %s",
                              curl_easy_strerror(global_rc));
    return KEEL_OK;
}

typedef struct transfer {
    const keel_http_request *req;
    keel_http_response *resp;
    size_t max_body;
    bool too_large;
    bool cancelled;
} transfer;

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    transfer *t = user;
    size_t n = size * nmemb;
    keel_http_response *r = t->resp;
    if (r->len + n > t->max_body) {
        if (!t->req->truncate_body) {
            t->too_large = true;
            return 0; /* stops the transfer with CURLE_WRITE_ERROR */
        }
        r->truncated = true;
        n = t->max_body - r->len; /* keep what fits, drop the rest */
        if (n == 0)
            return size * nmemb;
    }
    char *grown = realloc(r->body, r->len + n + 1);
    if (!grown)
        return 0;
    memcpy(grown + r->len, data, n);
    r->len += n;
    grown[r->len] = '\0';
    r->body = grown;
    return size * nmemb;
}

/* Keep the value of the headers keel reads: "Name: value\r\n", names case-insensitive. */
static void keep_header(keel_http_response *r, const char *line, size_t n)
{
    static const struct {
        const char *name;
        size_t offset;
    } wanted[] = {
        {"content-type", offsetof(keel_http_response, content_type)},
        {"retry-after", offsetof(keel_http_response, retry_after)},
        {"retry-after-ms", offsetof(keel_http_response, retry_after_ms)},
        {"x-should-retry", offsetof(keel_http_response, should_retry)},
        {"x-request-id", offsetof(keel_http_response, request_id)},
    };
    const char *colon = memchr(line, ':', n);
    if (!colon)
        return;
    size_t name_len = (size_t)(colon - line);
    const char *v = colon + 1, *end = line + n;
    while (v < end && isspace((unsigned char)*v))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        if (strlen(wanted[i].name) != name_len || strncasecmp(line, wanted[i].name, name_len))
            continue;
        char **slot = (char **)((char *)r + wanted[i].offset);
        free(*slot);
        *slot = strndup(v, (size_t)(end - v));
    }
}

static void forget_headers(keel_http_response *r)
{
    char **slots[] = {&r->content_type, &r->retry_after, &r->retry_after_ms, &r->should_retry,
                      &r->request_id};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        free(*slots[i]);
        *slots[i] = NULL;
    }
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
    transfer *t = user;
    size_t n = size * nmemb;
    /* A new status line starts a new header block (after a 100 Continue): forget the old one. */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        forget_headers(t->resp);
        return n;
    }
    keep_header(t->resp, data, n);
    return n;
}

/* Called by libcurl about once a second while it waits: heartbeat, and stop on cancellation. */
static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    transfer *t = user;
    if (!t->req->activity)
        return 0;
    if (keel_activity_heartbeat(t->req->activity, NULL) == KEEL_ECANCELLED) {
        t->cancelled = true;
        return 1;
    }
    return 0;
}

/* "host:port" of the URL for messages: never the userinfo, path or query. */
static void describe_host(const char *url, char *out, size_t cap)
{
    snprintf(out, cap, "%s", "(unparsable URL)");
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
            snprintf(out, cap, "%s:%s", host, port);
        else
            snprintf(out, cap, "%s", host);
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

void keel_http_url_for_log(const char *url, char *out, size_t cap)
{
    snprintf(out, cap, "%s", "(unparsable URL)");
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *user = NULL;
    if (u && url && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        curl_url_get(u, CURLUPART_PATH, &path, 0);
        curl_url_get(u, CURLUPART_QUERY, &query, 0);
        curl_url_get(u, CURLUPART_USER, &user, 0);
        /* Userinfo and query strings carry credentials (user:pass@, ?api-key=): name that they
         * were there, never what they said. */
        snprintf(out, cap, "%s://%s%s%s%s%s%s", scheme, user ? "(credentials)@" : "", host,
                 port ? ":" : "", port ? port : "", path && strcmp(path, "/") ? path : "",
                 query ? "?(query redacted)" : "");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(user);
    curl_url_cleanup(u);
}

static int transfer_error(CURLcode rc, const transfer *t, const char *where, keel_error *err)
{
    int code;
    bool retryable = true;
    if (t->cancelled) {
        code = KEEL_ECANCELLED;
        retryable = false;
    } else if (t->too_large) {
        code = KEEL_EEXHAUSTED;
        retryable = false;
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        code = KEEL_ETIMEOUT;
    } else if (rc == CURLE_PARTIAL_FILE || rc == CURLE_WEIRD_SERVER_REPLY ||
               rc == CURLE_BAD_CONTENT_ENCODING) {
        code = KEEL_EPROTOCOL;
    } else if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
        code = KEEL_EINVAL;
        retryable = false;
    } else if (rc == CURLE_OUT_OF_MEMORY) {
        code = KEEL_ENOMEM;
    } else {
        code = KEEL_EUNAVAILABLE;
    }
    if (t->too_large)
        keel_error_set(err, code, "%s: the response is larger than %zu bytes", where, t->max_body);
    else if (t->cancelled)
        keel_error_set(err, code, "%s: cancelled while waiting for the response", where);
    else
        keel_error_set(err, code, "%s: %s", where, curl_easy_strerror(rc));
    if (err)
        err->retryable = retryable;
    return code;
}

/* "Idempotency-Key: <key>" for a short printable key, else "Idempotency-Key: sha256-<hex>":
 * keys hold workflow ids of up to 1,000 bytes of any text, and a header must stay one short
 * line. */
static void idempotency_header(const char *key, char *line, size_t n)
{
    size_t len = strlen(key);
    bool plain = len <= 200;
    for (size_t i = 0; plain && i < len; i++)
        plain = key[i] > 0x20 && key[i] < 0x7f;
    if (plain) {
        snprintf(line, n, "Idempotency-Key: %s", key);
        return;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
    if (EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL) == 1)
        for (unsigned i = 0; i < mdlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    snprintf(line, n, "Idempotency-Key: sha256-%s", hex);
}

static struct curl_slist *request_headers(const keel_http_request *req, bool *ok)
{
    struct curl_slist *h = NULL, *next;
    *ok = true;
    const char *fixed[] = {"Content-Type: application/json", "Accept: application/json", "Expect:"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (!(next = curl_slist_append(h, fixed[i])))
            goto fail;
        h = next;
    }
    if (req->bearer_token && *req->bearer_token) {
        size_t n = strlen(req->bearer_token) + sizeof "Authorization: Bearer ";
        char *line = malloc(n);
        if (!line)
            goto fail;
        snprintf(line, n, "Authorization: Bearer %s", req->bearer_token);
        next = curl_slist_append(h, line);
        /* The key lived in this buffer: clear it before it goes back to the allocator (libcurl
         * keeps its own copy for the transfer). */
        explicit_bzero(line, n);
        free(line);
        if (!next)
            goto fail;
        h = next;
    }
    if (req->idempotency_key && *req->idempotency_key) {
        char line[256];
        idempotency_header(req->idempotency_key, line, sizeof line);
        if (!(next = curl_slist_append(h, line)))
            goto fail;
        h = next;
    }
    return h;
fail:
    *ok = false;
    curl_slist_free_all(h);
    return NULL;
}

static void configure(CURL *c, const keel_http_request *req, struct curl_slist *headers,
                      transfer *t)
{
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(req->body));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "keel/0 (+https://github.com/keel)");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     req->timeout_ms > 0 ? req->timeout_ms : DEFAULT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     req->connect_timeout_ms > 0 ? req->connect_timeout_ms
                                                 : DEFAULT_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
}

int keel_http_post_json(const keel_http_request *req, keel_http_response *resp, keel_error *err)
{
    memset(resp, 0, sizeof *resp);
    if (!req || !req->url || !req->body)
        return keel_error_set(err, KEEL_EINVAL, "an HTTP request needs a URL and a body");
    int rc = keel_http_global_init(err);
    if (rc != KEEL_OK)
        return rc;
    char where[300], host[256];
    describe_host(req->url, host, sizeof host);
    snprintf(where, sizeof where, "POST to %s", host);

    bool ok;
    struct curl_slist *headers = request_headers(req, &ok);
    CURL *c = ok ? curl_easy_init() : NULL;
    if (!c) {
        curl_slist_free_all(headers);
        return keel_error_set(err, KEEL_ENOMEM, "%s: out of memory", where);
    }
    transfer t = {
        .req = req, .resp = resp, .max_body = req->max_body ? req->max_body : DEFAULT_MAX_BODY};
    configure(c, req, headers, &t);
    CURLcode cr = curl_easy_perform(c);
    if (cr == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
        if (!resp->body && !(resp->body = calloc(1, 1)))
            rc = keel_error_set(err, KEEL_ENOMEM, "%s: out of memory", where);
    } else {
        rc = transfer_error(cr, &t, where, err);
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    return rc;
}

void keel_http_response_dispose(keel_http_response *resp)
{
    if (!resp)
        return;
    free(resp->body);
    forget_headers(resp);
    memset(resp, 0, sizeof *resp);
}
