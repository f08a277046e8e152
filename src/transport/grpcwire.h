/*
 * grpcwire - the gRPC-over-HTTP/2 conventions keel's transport reads and writes, as pure functions
 * of bytes: the 5-byte message framing, the grpc-timeout header, grpc-status, the
 * percent-encoded grpc-message, base64 "-bin" header values, the status a bare HTTP/2 answer
 * stands for, and the target address forms (host:port, dns:, ipv4:, ipv6:, unix:).
 *
 * Everything here reads what a peer (or a user's address) sent and is capped: a message is at
 * most the max_bytes the caller gives (the transport uses KEEL_MAX_RECEIVE_BYTES), a unary answer
 * carries one message, decoded header values are truncated only where the header says so below.
 * No function keeps a pointer to its input. tests/fuzz/fuzz_grpcwire.c drives all of them.
 */
#ifndef KEEL_GRPCWIRE_H
#define KEEL_GRPCWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"

/* The framing prefix of one message: a compressed flag (0), then its length, big-endian. */
#define KEEL_GRPC_PREFIX_BYTES 5
void keel_grpc_prefix(uint8_t out[KEEL_GRPC_PREFIX_BYTES], uint32_t length);

/*
 * Collects the one message of a unary answer from the DATA it arrives in, in pieces of any size.
 * The buffer grows with the bytes that actually arrive (never to a length the prefix only claims),
 * up to max_bytes: a compressed message (keel never offers an encoding), a second message and a
 * message over max_bytes are refused. Zero it to initialise; keel_grpc_deframer_free() releases
 * what it holds.
 */
typedef struct keel_grpc_deframer {
    uint8_t prefix[KEEL_GRPC_PREFIX_BYTES];
    size_t prefix_have;
    uint8_t *buf;
    size_t length; /* of the message being read, from its prefix */
    size_t have, cap;
    int messages; /* complete messages read (0 or 1) */
} keel_grpc_deframer;

/*
 * Feed n bytes. KEEL_OK, or, with err naming why: KEEL_EPROTOCOL (compressed, or more than one
 * message), KEEL_EEXHAUSTED (a message longer than max_bytes, known from its prefix before its
 * bytes come, as gRPC's RESOURCE_EXHAUSTED), KEEL_ENOMEM. After an error the deframer must only be
 * freed.
 */
int keel_grpc_deframer_feed(keel_grpc_deframer *d, const uint8_t *data, size_t n, size_t max_bytes,
                            keel_error *err);

/* The answer is over: exactly one whole message must have arrived. On KEEL_OK *msg (malloc'ed,
 * the caller's to free; never NULL, also for an empty message) and *len are the message, and the
 * deframer is empty again. */
int keel_grpc_deframer_take(keel_grpc_deframer *d, uint8_t **msg, size_t *len, keel_error *err);
void keel_grpc_deframer_free(keel_grpc_deframer *d);

/* The grpc-timeout value for ms milliseconds (at least 1): "<n>m", or seconds/minutes/hours when
 * the count would pass the 8 digits the header allows. out holds at least 16 bytes. */
void keel_grpc_timeout(int64_t ms, char out[16]);

/* A grpc-status value: decimal digits, 0 to 99. -1 when it is anything else. */
int keel_grpc_parse_status(const uint8_t *v, size_t n);

/* grpc-message, percent-decoded into out (at most outsz - 1 bytes, NUL-terminated; longer
 * messages are cut, and end in "..."). A '%' not followed by two hex digits stays as it is, as
 * gRPC's spec asks; bytes outside printable ASCII become '?'. Returns the length written. */
size_t keel_grpc_percent_decode(const uint8_t *in, size_t n, char *out, size_t outsz);

/* Base64 with or without padding (a "-bin" header). KEEL_OK with *outlen bytes in out, or
 * KEEL_EPROTOCOL for a character outside the alphabet, misplaced padding, or a result longer than
 * outsz. */
int keel_grpc_base64_decode(const uint8_t *in, size_t n, uint8_t *out, size_t outsz,
                            size_t *outlen);

/* The gRPC status an HTTP/2 answer without grpc-status stands for, by its :status (gRPC's
 * "HTTP to gRPC status code mapping"): 400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
 * 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, anything else UNKNOWN. */
int keel_grpc_status_from_http(int http_status);

/* The gRPC status a stream reset (RST_STREAM error code) stands for: REFUSED_STREAM
 * UNAVAILABLE, CANCEL CANCELLED, ENHANCE_YOUR_CALM RESOURCE_EXHAUSTED, INADEQUATE_SECURITY
 * PERMISSION_DENIED, anything else INTERNAL. */
int keel_grpc_status_from_h2(uint32_t h2_error);

/* Where a target address points. */
typedef enum keel_grpc_target_kind {
    KEEL_GRPC_TARGET_TCP,  /* host (a name, or an IPv4/IPv6 literal without brackets) and port */
    KEEL_GRPC_TARGET_UNIX, /* path: a socket file, or (abstract) a name in the abstract space */
} keel_grpc_target_kind;

#define KEEL_GRPC_MAX_HOST 256
typedef struct keel_grpc_target {
    keel_grpc_target_kind kind;
    bool abstract;
    char host[KEEL_GRPC_MAX_HOST]; /* TCP: the host; UNIX: the path or abstract name */
    char port[6];
    /* What :authority says: host:port as given (brackets kept), or "localhost" for a socket. */
    char authority[KEEL_GRPC_MAX_HOST + 8];
} keel_grpc_target;

/* Parse "host:port", "[v6]:port", "dns:[//authority/]host:port", "ipv4:a.b.c.d:port",
 * "ipv6:[v6]:port", "unix:path", "unix:///path" or "unix-abstract:name". KEEL_EINVAL, naming what
 * is wrong, for anything else: no port, a port outside 1-65535, a host longer than
 * KEEL_GRPC_MAX_HOST - 1 bytes, a list of addresses (keel connects to one). */
int keel_grpc_parse_target(const char *address, keel_grpc_target *out, keel_error *err);

#endif
