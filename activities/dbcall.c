/*
 * activities/dbcall.c - one tool call's database session (see dbcall.h).
 */
#include "activities/dbcall.h"

#include <string.h>

int keel_dbcall_open(keel_dbcall *d, const keel_tool_call *call, const char *who, keel_error *err)
{
    memset(d, 0, sizeof *d);
    d->err = err;
    if (!call || !call->ledger)
        return keel_error_set(err, KEEL_EINVAL, "%s need the database", who);
    d->ledger = call->ledger;
    return keel_ledger_acquire(d->ledger, &d->conn, err);
}

void keel_dbcall_close(keel_dbcall *d)
{
    if (!d->conn)
        return;
    if (d->in_tx && !d->broken) {
        PGresult *r = PQexec(d->conn, "ROLLBACK");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            d->broken = true;
        PQclear(r);
    }
    keel_ledger_release(d->ledger, d->conn, d->broken);
    d->conn = NULL;
}
