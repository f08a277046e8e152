/* keel/version.h - keel's version, sent to the server as `client-version` and as the SDK version
 * of its workflow task completions and worker heartbeats. */
#ifndef KEEL_VERSION_H
#define KEEL_VERSION_H

#define KEEL_VERSION     "0.1.0"
#define KEEL_CLIENT_NAME "keel"
/* The SDK name keel reports in workflow task completions (sdk_metadata: the Web UI's "Workflow
 * SDK", shown as "Keel") and in worker heartbeats. */
#define KEEL_SDK_NAME KEEL_CLIENT_NAME

#endif
