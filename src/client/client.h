/* client (internal) - what other client modules need from a keel_client. */
#ifndef KEEL_CLIENT_INTERNAL_H
#define KEEL_CLIENT_INTERNAL_H

#include "keel/client.h"
#include "transport/transport.h"

/* The client's transport. Borrowed: lives as long as the client. */
keel_transport *keel_client_transport(const keel_client *client);

/* A random (version 4) UUID from the system's randomness, for request ids and queue names. */
int keel_client_uuid4(char out[37], keel_error *err);

#endif
