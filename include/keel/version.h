/* keel/version.h - keel's version, sent to the server as `client-version`. */
#ifndef KEEL_VERSION_H
#define KEEL_VERSION_H

#define KEEL_VERSION     "0.1.0"
#define KEEL_CLIENT_NAME "keel"

#endif
