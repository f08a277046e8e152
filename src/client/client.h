/* client (internal) - what other client modules need from a keel_client. */
#ifndef KEEL_CLIENT_INTERNAL_H
#define KEEL_CLIENT_INTERNAL_H

#include "keel/client.h"
#include "transport/transport.h"

/* The client's transport. Borrowed: lives as long as the client. */
keel_transport *keel_client_transport(const keel_client *client);

#endif
