/*
 * activities/ledger.h - keel's own PostgreSQL database: the idempotency ledger, the conversation
 * store and the versioned schema that holds them (and the business data of activities/procurement).
 *
 * A keel_ledger is a small pool of libpq connections shared by the activity threads: each call
 * takes a connection, uses it and gives it back; a broken connection is dropped and the next call
 * dials a new one. Every function is safe to call from several threads at once.
 *
 * Errors: a database that cannot be reached, a connection lost mid-call, or a transaction chosen
 * as a deadlock or serialization victim is KEEL_EUNAVAILABLE with err->retryable set (the
 * activity's attempt fails retryably and the server tries again); anything else the database
 * refuses is KEEL_EINTERNAL with PostgreSQL's message, not retryable.
 * Passwords in the connection string never appear in an error message.
 *
 * JSON (responses, messages, effect results) is stored as text and comes back byte for byte as
 * it was given, never re-serialised; input that is not valid JSON is KEEL_EINVAL.
 */
#ifndef KEEL_ACTIVITIES_LEDGER_H
#define KEEL_ACTIVITIES_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"

/* libpq's types, so that this header does not need libpq-fe.h */
typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;

typedef struct keel_ledger keel_ledger;

/* A pool over conninfo (a libpq connection string or postgresql:// URL, copied). Dials once to
 * check that the database answers. max_connections <= 0 means 8. */
int keel_ledger_open(keel_ledger **out, const char *conninfo, int max_connections, keel_error *err);

/* Close every connection and free the pool. NULL is allowed. */
void keel_ledger_close(keel_ledger *ledger);

/*
 * Apply the schema migrations compiled into keel (activities/migrations/NNN_name.sql, in number
 * order) that the database has not seen, each in its own transaction, recorded in
 * keel_schema_migrations with a checksum. Workers starting together serialise on an advisory
 * lock. A migration already applied whose file has since changed is an error naming it (history
 * is never rewritten: add a new file instead). *applied (may be NULL) gets how many ran now.
 * A file runs inside keel's transaction, so it must not contain BEGIN/COMMIT/ROLLBACK, COPY or
 * CREATE INDEX CONCURRENTLY; an error names the file and the line PostgreSQL points at.
 */
int keel_ledger_migrate(keel_ledger *ledger, int *applied, keel_error *err);

/* The demo data set (activities/seed.sql): cost centres, budgets, vendors, catalog, approvers.
 * Idempotent: rows that exist are left alone. */
int keel_ledger_seed(keel_ledger *ledger, keel_error *err);

/* Where a model response belongs: one activity of one run. All four strings are required. */
typedef struct keel_ledger_key {
    const char *namespace_;
    const char *workflow_id;
    const char *run_id;
    const char *activity_id;
} keel_ledger_key;

/* "<namespace>/<workflow id>/<run id>/<activity id>": the key as one string, for effect claims,
 * conversation appends and tools' idempotency keys. New string (caller frees); NULL when out of
 * memory. Never cut short, whatever the ids' lengths. */
char *keel_ledger_key_text(const keel_ledger_key *key);

/*
 * The stored response of an earlier attempt of this activity.
 * KEEL_OK: *response_json is a new string (caller frees) stored under the same request_hash.
 * KEEL_ENOTFOUND: nothing stored yet (*response_json NULL).
 * KEEL_EEXISTS: a response is stored under this key for a different request (the workflow sent
 * a changed request under the same activity): an error, never a silent reuse.
 */
int keel_ledger_response_get(keel_ledger *ledger, const keel_ledger_key *key,
                             const char *request_hash, char **response_json, keel_error *err);

/*
 * Record a response. If another attempt stored one first, that one wins: *stored_json (caller
 * frees; may be NULL to not ask) gets whichever response is in the ledger afterwards, so racing
 * attempts return the same answer. KEEL_EEXISTS when the stored one has another request_hash.
 */
int keel_ledger_response_put(keel_ledger *ledger, const keel_ledger_key *key,
                             const char *request_hash, const char *model, const char *response_json,
                             char **stored_json, keel_error *err);

/*
 * Conversations (claim check): an agent's transcript lives here, and workflows pass its id.
 * Append messages_json (a JSON array of Chat Completions messages) to conversation_id, once:
 * a second append with the same append_key (the activity's identity) adds nothing, so a retried
 * activity does not duplicate its messages. An empty array is allowed and adds nothing.
 */
int keel_ledger_conversation_append(keel_ledger *ledger, const char *conversation_id,
                                    const char *append_key, const char *messages_json,
                                    keel_error *err);

/* The whole transcript as a new JSON array string (caller frees), oldest first; "[]" for an
 * unknown id. *count (may be NULL) gets the number of messages. */
int keel_ledger_conversation_load(keel_ledger *ledger, const char *conversation_id,
                                  char **messages_json, size_t *count, keel_error *err);

/*
 * Once-only side effects outside the database (a webhook post), guarded by a claim in
 * keel_effects (migrations/001_ledger.sql and 004_effect_leases.sql). The key is the effect's
 * identity (the activity's, the same for every attempt); a row is in one of four states:
 *
 *   claimed    one attempt (its owner) holds the effect for lease_ms from claimed_at;
 *   done       it happened, and result is what the holder recorded;
 *   released   the holder knows it did not happen (the webhook refused it); a retry may claim it;
 *   abandoned  the holder did not finish within its lease (it died or hung between its claim and
 *              its record): whether it happened is unknown. keel_ledger_effect_sweep() sets it.
 *
 * Nothing stays claimed past its lease: a later attempt takes the claim over, or the sweep marks
 * it abandoned (keel-worker sweeps on a thread: keel_ledger_effect_sweeper_start()), and an
 * operator lists what may not have happened (keel_ledger_effect_list(), `keelctl effects list`).
 *
 * The holder's side of the contract: make the effect only within the lease (stop trying when it
 * runs out), then done() — or release() when it surely did not happen. A takeover happens only
 * after the lease, so an effect happens once, unless its holder dies (or stalls past its lease)
 * after making it and before done(): then the next holder makes it again (at least once).
 */
typedef enum keel_effect_state {
    KEEL_EFFECT_CLAIMED, /* the caller holds the effect now: make it, then done() */
    KEEL_EFFECT_DONE,    /* it happened already: the recorded result is in the answer */
    KEEL_EFFECT_BUSY,    /* another attempt holds it and its lease runs: fail retryably */
} keel_effect_state;

/* The size of a claim's token (its identity, for release()), with the NUL. */
#define KEEL_EFFECT_TOKEN_MAX 32

typedef struct keel_effect_request {
    const char *key;  /* required */
    const char *kind; /* required ("notify"); a key claimed as another kind is KEEL_EEXISTS */
    int64_t lease_ms; /* how long the claim is the caller's; >= 0 */
    /* Who claims, shown to operators ("attempt 2 on host:1234"); NULL: nobody said. */
    const char *owner;
    int32_t attempt; /* the activity attempt; 0: not an activity */
    /* What the effect carries (JSON; NULL: nothing), kept so that an operator can see what an
     * abandoned or released effect would have sent. A takeover keeps the earlier one if NULL. */
    const char *payload_json;
} keel_effect_request;

typedef struct keel_effect_claim {
    keel_effect_state state;
    char token[KEEL_EFFECT_TOKEN_MAX]; /* CLAIMED: this claim's identity */
    char *result_json;                 /* DONE: what done() recorded (keel_effect_claim_dispose) */
    int64_t busy_ms;                   /* BUSY: how long the holder's lease still runs */
    /* CLAIMED: taken over from a holder that may have made the effect (its lease ran out, or it
     * was abandoned); not for a released one, which surely did not. */
    bool taken_over;
    char holder[256]; /* BUSY, or CLAIMED after a takeover: the (earlier) holder, for messages */
} keel_effect_claim;

/* Claim req->key (see above). *out is filled on KEEL_OK; free it with keel_effect_claim_dispose. */
int keel_ledger_effect_claim(keel_ledger *ledger, const keel_effect_request *req,
                             keel_effect_claim *out, keel_error *err);

void keel_effect_claim_dispose(keel_effect_claim *claim);

/* Record that a claimed effect did not happen (the webhook refused it), with why (NULL: no
 * reason), so that a retry may claim it again and an operator sees it unsent. Only the claim
 * named by token: one another attempt took over since stays as it is. */
int keel_ledger_effect_release(keel_ledger *ledger, const char *key, const char *token,
                               const char *reason, keel_error *err);

/* Record an effect as done with result_json (NULL records JSON null): a claimed one, or one that
 * was released or abandoned meanwhile (its late holder made it after all). On an effect that is
 * done already it keeps the first result and returns KEEL_OK; on a key never claimed it is
 * KEEL_ENOTFOUND. */
int keel_ledger_effect_done(keel_ledger *ledger, const char *key, const char *result_json,
                            keel_error *err);

/* Mark every claim whose lease has run out as abandoned, with a reason naming its owner and
 * lease. *abandoned (may be NULL) gets how many. Any number of processes may sweep at once. */
int keel_ledger_effect_sweep(keel_ledger *ledger, int *abandoned, keel_error *err);

/* Sweep now and then every interval_ms on a thread of the ledger's own, until
 * keel_ledger_close(). interval_ms <= 0: $KEEL_EFFECT_SWEEP_INTERVAL (a duration such as "30s")
 * or 30 s. A sweep that fails (the database is away) is tried again at the next interval. A
 * second call changes nothing. */
int keel_ledger_effect_sweeper_start(keel_ledger *ledger, int64_t interval_ms, keel_error *err);

/*
 * The effects in `which` state as a new JSON array (caller frees), newest claim first, at most
 * limit (<= 0: 100) of them, of one kind (NULL: every kind). which: "unsent" (NULL too: released,
 * abandoned, or claimed with the lease run out: what may not have happened), "claimed", "done",
 * "released", "abandoned" or "all". Each: {"key", "kind", "state", "lease_expired", "owner",
 * "attempt", "claimed_at", "lease_ends_at", "takeovers", "reason", "payload", "result",
 * "done_at", "released_at", "abandoned_at"}.
 */
int keel_ledger_effect_list(keel_ledger *ledger, const char *which, const char *kind, int limit,
                            char **json, keel_error *err);

/* For tools that run their own SQL: take a connection (KEEL_EUNAVAILABLE when none can be
 * dialled) and give it back. broken: the connection failed and must be closed, not reused; a
 * connection given back inside a transaction is closed too. */
int keel_ledger_acquire(keel_ledger *ledger, PGconn **conn, keel_error *err);
void keel_ledger_release(keel_ledger *ledger, PGconn *conn, bool broken);

/* One caller's use of a pooled connection (the ledger's own calls and the tools' SQL). */
typedef struct keel_ledger_session {
    keel_ledger *ledger;
    PGconn *conn;
    bool broken;     /* the connection failed: close it instead of pooling it */
    bool in_tx;      /* BEGIN ran and neither COMMIT nor ROLLBACK yet */
    keel_error *err; /* borrowed: where the session's later errors go */
} keel_ledger_session;

/* Take a connection into s; ledger NULL (no DATABASE_URL) is KEEL_EINVAL. Close it with
 * keel_ledger_session_close whatever happened in between. */
int keel_ledger_session_open(keel_ledger_session *s, keel_ledger *ledger, keel_error *err);

/* Give the connection back. A transaction an error path left open (in_tx) is rolled back first,
 * so that the connection can go back to the pool instead of being closed. */
void keel_ledger_session_close(keel_ledger_session *s);

/* Fill err from a failed libpq call on conn (res: its result, may be NULL): KEEL_EUNAVAILABLE
 * (retryable) when the connection is gone, else KEEL_EINTERNAL with the server's message
 * prefixed by what (e.g. "insert purchase order"). Returns the code. Sets *broken (may be NULL)
 * to whether the connection must not be reused (true or false: it is always assigned). */
int keel_ledger_pq_error(PGconn *conn, const PGresult *res, const char *what, bool *broken,
                         keel_error *err);

#endif
