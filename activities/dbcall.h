/*
 * activities/dbcall.h - one tool call's database session: a pooled connection from the ledger,
 * given back in a clean state whatever path the call took.
 */
#ifndef KEEL_ACTIVITIES_DBCALL_H
#define KEEL_ACTIVITIES_DBCALL_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "activities/ledger.h"
#include "activities/tools.h"
#include "keel/error.h"

typedef struct keel_dbcall {
    keel_ledger *ledger;
    PGconn *conn;
    bool broken; /* the connection failed: close it instead of pooling it */
    bool in_tx;  /* BEGIN ran and neither COMMIT nor ROLLBACK yet */
    keel_error *err;
} keel_dbcall;

/* Take a connection for the call (err is kept for the session's later errors, borrowed).
 * `who` names the tools in the error when the call has no database ("the sandbox tools"). */
int keel_dbcall_open(keel_dbcall *d, const keel_tool_call *call, const char *who, keel_error *err);

/* Give the connection back. A transaction left open by an error path is rolled back first, so
 * that the pool never hands out a connection in the middle of an aborted transaction. */
void keel_dbcall_close(keel_dbcall *d);

#endif
