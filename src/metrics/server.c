/* metrics server - GET /metrics over HTTP with libmicrohttpd, on the library's own thread. */
#include <errno.h>
#include <stdbool.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <microhttpd.h>

#include "keel/metrics.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Memory libmicrohttpd may use per connection for the request (headers): requests to /metrics
 * are small; a bigger one is refused by the library. */
#define CONNECTION_MEMORY 16384

struct keel_metrics_server {
    struct MHD_Daemon *daemon;
    keel_metrics *metrics;
    int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status, const char *text,
                             const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    keel_metrics_server *s = cls;
    if (strcmp(url, "/metrics") != 0)
        return reply(c, MHD_HTTP_NOT_FOUND, "not found: keel serves /metrics only\n", NULL);
    bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use GET\n", "GET, HEAD");
    char *text = NULL;
    size_t len = 0;
    keel_error err;
    if (keel_metrics_render(s->metrics, &text, &len, &err) != KEEL_OK)
        return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render the metrics\n", NULL);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* "host:port", "[v6]:port" or ":port" into host (NULL: every interface) and port. */
static int split_address(const char *address, char *host, size_t hostsz, int *port, keel_error *err)
{
    if (address == NULL || address[0] == '\0')
        return keel_error_set(err, KEEL_EINVAL, "the metrics address is empty (want host:port)");
    const char *colon = strrchr(address, ':');
    if (colon == NULL)
        return keel_error_set(err, KEEL_EINVAL,
                              "metrics address '%.100s' has no port (want host:port, e.g. "
                              "127.0.0.1:9464)",
                              address);
    const char *h = address;
    size_t hlen = (size_t)(colon - address);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    } else if (memchr(h, ':', hlen) != NULL) {
        return keel_error_set(err, KEEL_EINVAL,
                              "metrics address '%.100s': write an IPv6 host in brackets "
                              "([::1]:9464)",
                              address);
    }
    if (hlen >= hostsz)
        return keel_error_set(err, KEEL_EINVAL, "metrics address '%.100s': host too long", address);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || p < 0 || p > 65535)
        return keel_error_set(err, KEEL_EINVAL,
                              "metrics address '%.100s': the port must be a number from 0 (any "
                              "free port) to 65535",
                              address);
    *port = (int)p;
    return KEEL_OK;
}

/* A listening socket of our own, so that a bad host or a busy port is reported with its reason. */
static int listen_on(const char *address, int *fd_out, int *port_out, keel_error *err)
{
    char host[256];
    int port = 0;
    int rc = split_address(address, host, sizeof host, &port, err);
    if (rc != KEEL_OK)
        return rc;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, service, &hints, &res);
    if (gai != 0)
        return keel_error_set(err, KEEL_EINVAL, "metrics address '%.100s': %s", address,
                              gai_strerror(gai));
    int last = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) {
            freeaddrinfo(res);
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            if (port == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
                port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                      : ((struct sockaddr_in *)&ss)->sin_port);
            *fd_out = fd;
            *port_out = port;
            return KEEL_OK;
        }
        last = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return keel_error_set(err, KEEL_EIO, "cannot listen on metrics address '%.100s': %s", address,
                          strerror(last ? last : EADDRNOTAVAIL));
}

int keel_metrics_server_start(keel_metrics_server **out, keel_metrics *m, const char *address,
                              keel_error *err)
{
    *out = NULL;
    if (m == NULL)
        return keel_error_set(err, KEEL_EINVAL, "the metrics server needs a registry");
    int fd = -1, port = 0;
    int rc = listen_on(address, &fd, &port, err);
    if (rc != KEEL_OK)
        return rc;
    keel_metrics_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        close(fd);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory starting the metrics server");
    }
    s->metrics = m;
    s->port = port;
    /* One internal thread polls every connection; requests are answered on it. */
    s->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, handle, s,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)KEEL_METRICS_HTTP_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)KEEL_METRICS_HTTP_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONNECTION_MEMORY, MHD_OPTION_END);
    if (s->daemon == NULL) {
        close(fd);
        free(s);
        return keel_error_set(err, KEEL_EIO, "cannot start the metrics HTTP server on '%.100s'",
                              address);
    }
    *out = s;
    return KEEL_OK;
}

int keel_metrics_server_port(const keel_metrics_server *s)
{
    return s ? s->port : 0;
}

void keel_metrics_server_free(keel_metrics_server *s)
{
    if (s == NULL)
        return;
    /* MHD_stop_daemon closes the listening socket it was given. */
    MHD_stop_daemon(s->daemon);
    free(s);
}
