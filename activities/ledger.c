/*
 * activities/ledger.c - keel's PostgreSQL database over libpq: a small connection pool, the
 * migration runner, the idempotency ledger of model responses, the conversation store and the
 * once-only effects (see ledger.h for the contract, migrations/001_ledger.sql for the tables).
 *
 * Every statement is parameterised (PQexecParams); only the SQL files compiled into keel run as
 * plain text. JSON is kept as text so that keel returns exactly the bytes it stored (the reason is
 * in 001_ledger.sql); cJSON checks its shape before it is sent, and the tables' CHECKs make
 * PostgreSQL's strict json parser the last word.
 */
#include "activities/ledger.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "activities/embedded.h"
#include "keel/duration.h"
#include "keel/json.h"

#define DEFAULT_MAX_CONNECTIONS 8
/* Seconds libpq may take to dial; a conninfo that sets connect_timeout itself wins. */
#define DIAL_TIMEOUT_S "5"
/* The session-level advisory lock that serialises migration runs: "keel_mig" in ASCII. */
#define MIGRATION_LOCK_ID "7738703050837944679"
/* Leases longer than this (ten years) never expire in practice; capping them keeps the interval
 * arithmetic in PostgreSQL within range. */
#define MAX_LEASE_MS INT64_C(315360000000)
/* How often effect_claim re-reads a row whose takeover lost a race before answering BUSY. */
#define CLAIM_ROUNDS 4
/* How often keel-worker sweeps effects whose claims outlived their lease, by default. */
#define DEFAULT_SWEEP_MS INT64_C(30000)
/* Room for one line of libpq's or PostgreSQL's text inside a keel_error message. */
#define PQ_TEXT_MAX 640

struct keel_ledger {
    char *conninfo;
    pthread_mutex_t mu;
    pthread_cond_t freed; /* a connection went back idle, or a slot opened */
    PGconn **idle;        /* stack of idle connections, capacity max */
    int n_idle;
    int n_open; /* idle + in use + being dialled */
    int max;
    /* The effect sweeper (keel_ledger_effect_sweeper_start), under mu. */
    pthread_t sweeper;
    pthread_cond_t sweeper_wake; /* on CLOCK_MONOTONIC: keel_ledger_close() wakes it */
    int64_t sweep_ms;
    bool sweeper_running, sweeper_stop;
};

/* ---- messages ---- */

static void set_retryable(keel_error *err)
{
    if (err != NULL)
        err->retryable = true;
}

static bool starts_with_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* Length of the secret after "password=" (or "password = "), quoted or up to a separator. */
static size_t password_value_len(const char *v)
{
    if (*v == '\'' || *v == '"') {
        const char *end = strchr(v + 1, *v);
        return end ? (size_t)(end - v) + 1 : strlen(v);
    }
    return strcspn(v, " \t\r\n&'\"");
}

/* Length of "pass" in "scheme://user:pass@host" when s points at "://", else 0; *skip gets how
 * far the password starts from s. */
static size_t url_password_len(const char *s, size_t *skip)
{
    size_t auth = strcspn(s + 3, "/?# \t\r\n\"'");
    const char *at = memchr(s + 3, '@', auth);
    const char *colon = at ? memchr(s + 3, ':', (size_t)(at - (s + 3))) : NULL;
    if (colon == NULL)
        return 0;
    *skip = (size_t)(colon + 1 - s);
    return (size_t)(at - (colon + 1));
}

/*
 * Copy libpq's or the server's text into dst as one line: newlines and tabs become spaces, runs
 * of spaces one, and anything shaped like a password (password=..., user:pass@ in a URL)
 * becomes "***". keel never puts the conninfo itself in a message; this is the second fence.
 */
static void one_line(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    if (cap == 0)
        return;
    for (const char *p = src ? src : ""; *p && n + 4 < cap;) {
        size_t skip = 0, secret = 0;
        if (starts_with_ci(p, "password")) {
            skip = strlen("password") + strspn(p + strlen("password"), " ");
            if (p[skip] == '=') {
                skip += 1 + strspn(p + skip + 1, " ");
                secret = password_value_len(p + skip);
            }
        } else if (strncmp(p, "://", 3) == 0) {
            secret = url_password_len(p, &skip);
        }
        if (secret > 0) {
            for (size_t i = 0; i < skip && n + 4 < cap; i++)
                dst[n++] = p[i];
            memcpy(dst + n, "***", 3);
            n += 3;
            p += skip + secret;
            continue;
        }
        char c = *p++;
        if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
        if (c != ' ' || (n > 0 && dst[n - 1] != ' '))
            dst[n++] = c;
    }
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

/* libpq's parse errors quote the fragment they choke on, which may be part of a password:
 * keep the sentence, drop the quoted fragments. */
static void without_quotes(char *dst, size_t cap, const char *src)
{
    char line[PQ_TEXT_MAX];
    one_line(line, sizeof line, src);
    size_t n = 0;
    bool quoted = false;
    for (const char *p = line; *p && n + 6 < cap; p++) {
        if (*p != '"') {
            if (!quoted)
                dst[n++] = *p;
            continue;
        }
        quoted = !quoted;
        if (quoted) {
            memcpy(dst + n, "\"...\"", 5);
            n += 5;
        }
    }
    dst[n] = '\0';
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

/* ---- errors from libpq ---- */

/* SQLSTATEs after which the session is over: connection exceptions (class 08) and the server
 * ending the backend (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
 * 57P05 idle session timeout). */
static bool sqlstate_means_gone(const char *state)
{
    if (state == NULL)
        return false;
    return strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
           strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 ||
           strcmp(state, "57P05") == 0;
}

static void result_text(PGconn *conn, const PGresult *res, char *dst, size_t cap)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *whole = res ? PQresultErrorMessage(res) : "";
    if (primary != NULL)
        one_line(dst, cap, primary);
    else if (whole[0] != '\0')
        one_line(dst, cap, whole);
    else if (conn != NULL && PQerrorMessage(conn)[0] != '\0')
        one_line(dst, cap, PQerrorMessage(conn));
    else if (res != NULL)
        snprintf(dst, cap, "unexpected result %s", PQresStatus(PQresultStatus(res)));
    else
        snprintf(dst, cap, "no result (out of memory?)");
}

int keel_ledger_pq_error(PGconn *conn, const PGresult *res, const char *what, bool *broken,
                         keel_error *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char text[PQ_TEXT_MAX];
    result_text(conn, res, text, sizeof text);
    what = what ? what : "PostgreSQL";
    /* No result at all means libpq could not send or ran out of memory: the connection's state
     * is unknown, so it goes too. */
    bool gone = conn == NULL || res == NULL || PQstatus(conn) != CONNECTION_OK ||
                sqlstate_means_gone(state);
    if (broken != NULL)
        *broken = gone;
    if (gone) {
        keel_error_set(err, KEEL_EUNAVAILABLE, "%s: lost the connection to PostgreSQL: %s", what,
                       text);
        set_retryable(err);
        return KEEL_EUNAVAILABLE;
    }
    /* A deadlock or serialization failure is the database choosing a victim among concurrent
     * transactions: the same work succeeds when tried again. */
    if (state != NULL && (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0)) {
        keel_error_set(err, KEEL_EUNAVAILABLE, "%s: %s (SQLSTATE %s)", what, text, state);
        set_retryable(err);
        return KEEL_EUNAVAILABLE;
    }
    if (state != NULL)
        return keel_error_set(err, KEEL_EINTERNAL, "%s: %s (SQLSTATE %s)", what, text, state);
    return keel_error_set(err, KEEL_EINTERNAL, "%s: %s", what, text);
}

/* ---- the pool ---- */

static void ignore_notice(void *arg, const char *message)
{
    /* NOTICEs ("relation already exists, skipping") are chatter, and stderr is not keel's log. */
    (void)arg;
    (void)message;
}

/* Where a failed dial was going, from libpq's view of the connection: never the conninfo. */
static int dial_error(PGconn *c, keel_error *err)
{
    char text[PQ_TEXT_MAX];
    one_line(text, sizeof text, PQerrorMessage(c));
    keel_error_set(err, KEEL_EUNAVAILABLE,
                   "cannot connect to PostgreSQL (host %s, port %s, database %s): %s",
                   or_empty(PQhost(c)), or_empty(PQport(c)), or_empty(PQdb(c)), text);
    set_retryable(err);
    return KEEL_EUNAVAILABLE;
}

static int dial(keel_ledger *l, PGconn **out, keel_error *err)
{
    /* Keywords later in the arrays override earlier ones, so connect_timeout goes first: a
     * timeout the conninfo sets itself wins. expand_dbname=1 lets dbname carry a whole conninfo
     * or URL. */
    const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const values[] = {DIAL_TIMEOUT_S, l->conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, values, 1);
    if (c == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory connecting to PostgreSQL");
    if (PQstatus(c) != CONNECTION_OK) {
        int rc = dial_error(c, err);
        PQfinish(c);
        return rc;
    }
    PQsetNoticeProcessor(c, ignore_notice, NULL);
    *out = c;
    return KEEL_OK;
}

/* libpq's own rule: a dbname with '=' or a URI prefix is a conninfo, anything else a name. */
static bool is_conninfo(const char *s)
{
    return strchr(s, '=') != NULL || strncmp(s, "postgresql://", 13) == 0 ||
           strncmp(s, "postgres://", 11) == 0;
}

/* A malformed conninfo will never connect: say so once, not retryably. */
static int check_conninfo(const char *conninfo, keel_error *err)
{
    if (!is_conninfo(conninfo))
        return KEEL_OK;
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
    if (opts != NULL) {
        PQconninfoFree(opts);
        return KEEL_OK;
    }
    if (msg == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory reading the connection string");
    char text[PQ_TEXT_MAX];
    without_quotes(text, sizeof text, msg);
    PQfreemem(msg);
    return keel_error_set(
        err, KEEL_EINVAL,
        "the database connection string is not a valid libpq conninfo or postgresql:// URL: %s",
        text);
}

static void pool_free(keel_ledger *l)
{
    pthread_cond_destroy(&l->sweeper_wake);
    pthread_cond_destroy(&l->freed);
    pthread_mutex_destroy(&l->mu);
    free(l->idle);
    free(l->conninfo);
    free(l);
}

int keel_ledger_open(keel_ledger **out, const char *conninfo, int max_connections, keel_error *err)
{
    if (out == NULL || conninfo == NULL)
        return keel_error_set(err, KEEL_EINVAL, "keel_ledger_open needs out and a conninfo");
    *out = NULL;
    int rc = check_conninfo(conninfo, err);
    if (rc != KEEL_OK)
        return rc;
    keel_ledger *l = calloc(1, sizeof *l);
    if (l == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory opening the ledger");
    l->max = max_connections > 0 ? max_connections : DEFAULT_MAX_CONNECTIONS;
    l->conninfo = strdup(conninfo);
    l->idle = calloc((size_t)l->max, sizeof *l->idle);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->freed, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&l->sweeper_wake, &monotonic);
    pthread_condattr_destroy(&monotonic);
    if (l->conninfo == NULL || l->idle == NULL) {
        pool_free(l);
        return keel_error_set(err, KEEL_ENOMEM, "out of memory opening the ledger");
    }
    PGconn *first;
    rc = dial(l, &first, err);
    if (rc != KEEL_OK) {
        pool_free(l);
        return rc;
    }
    l->idle[l->n_idle++] = first;
    l->n_open = 1;
    *out = l;
    return KEEL_OK;
}

static void sweeper_stop(keel_ledger *l);

void keel_ledger_close(keel_ledger *ledger)
{
    if (ledger == NULL)
        return;
    sweeper_stop(ledger);
    for (int i = 0; i < ledger->n_idle; i++)
        PQfinish(ledger->idle[i]);
    pool_free(ledger);
}

int keel_ledger_acquire(keel_ledger *ledger, PGconn **conn, keel_error *err)
{
    if (ledger == NULL || conn == NULL)
        return keel_error_set(err, KEEL_EINVAL, "keel_ledger_acquire needs a ledger and conn");
    *conn = NULL;
    pthread_mutex_lock(&ledger->mu);
    for (;;) {
        if (ledger->n_idle > 0) {
            PGconn *c = ledger->idle[--ledger->n_idle];
            if (PQstatus(c) == CONNECTION_OK) {
                pthread_mutex_unlock(&ledger->mu);
                *conn = c;
                return KEEL_OK;
            }
            /* Broken while idle: drop it and look again (its slot is free now). */
            ledger->n_open--;
            pthread_mutex_unlock(&ledger->mu);
            PQfinish(c);
            pthread_mutex_lock(&ledger->mu);
            continue;
        }
        if (ledger->n_open < ledger->max)
            break;
        pthread_cond_wait(&ledger->freed, &ledger->mu);
    }
    ledger->n_open++; /* the slot is ours while we dial, outside the lock */
    pthread_mutex_unlock(&ledger->mu);
    int rc = dial(ledger, conn, err);
    if (rc != KEEL_OK) {
        pthread_mutex_lock(&ledger->mu);
        ledger->n_open--;
        pthread_cond_signal(&ledger->freed);
        pthread_mutex_unlock(&ledger->mu);
    }
    return rc;
}

void keel_ledger_release(keel_ledger *ledger, PGconn *conn, bool broken)
{
    if (ledger == NULL || conn == NULL)
        return;
    /* A connection left inside a transaction (a tool that returned early) would hand its locks
     * and half-done work to the next caller: close it rather than reuse it. */
    if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE)
        broken = true;
    pthread_mutex_lock(&ledger->mu);
    bool keep = !broken && ledger->n_idle < ledger->max;
    if (keep)
        ledger->idle[ledger->n_idle++] = conn;
    else
        ledger->n_open--;
    pthread_cond_signal(&ledger->freed);
    pthread_mutex_unlock(&ledger->mu);
    if (!keep)
        PQfinish(conn);
}

/* ---- sessions: one pooled connection for the length of one ledger call ---- */

typedef keel_ledger_session session;

int keel_ledger_session_open(keel_ledger_session *s, keel_ledger *ledger, keel_error *err)
{
    memset(s, 0, sizeof *s);
    s->err = err;
    if (ledger == NULL)
        return keel_error_set(err, KEEL_EINVAL, "no database: set DATABASE_URL");
    s->ledger = ledger;
    return keel_ledger_acquire(ledger, &s->conn, err);
}

void keel_ledger_session_close(keel_ledger_session *s)
{
    if (!s->conn)
        return;
    if (s->in_tx && !s->broken) {
        PGresult *r = PQexec(s->conn, "ROLLBACK");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            s->broken = true;
        PQclear(r);
    }
    keel_ledger_release(s->ledger, s->conn, s->broken);
    s->conn = NULL;
}

/* Give the connection back and pass rc through. */
static int session_close(session *s, int rc)
{
    keel_ledger_session_close(s);
    return rc;
}

static bool result_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

/* A statement refused because of the data keel passed in (class 22: not valid json, bad
 * encoding; 23514: a CHECK) is the caller's bad input, not the database failing. */
static bool refused_input(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state != NULL && (strncmp(state, "22", 2) == 0 || strcmp(state, "23514") == 0);
}

/* Fill s->err from a failed result, mark the session broken when the connection is gone, and
 * free the result. */
static int session_fail(session *s, PGresult *res, const char *what, bool input)
{
    int rc;
    if (input && refused_input(res) && PQstatus(s->conn) == CONNECTION_OK) {
        char text[PQ_TEXT_MAX];
        result_text(s->conn, res, text, sizeof text);
        rc = keel_error_set(s->err, KEEL_EINVAL, "%s: %s", what, text);
    } else {
        rc = keel_ledger_pq_error(s->conn, res, what, &s->broken, s->err);
    }
    PQclear(res);
    return rc;
}

/* Run one parameterised statement. On success *out (may be NULL) gets the result to PQclear. */
static int run_stmt(session *s, bool input, PGresult **out, const char *what, const char *sql,
                    int n, const char *const *params)
{
    PGresult *res = PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL, 0);
    if (res == NULL || !result_ok(res))
        return session_fail(s, res, what, input);
    if (out != NULL)
        *out = res;
    else
        PQclear(res);
    return KEEL_OK;
}

#define RUN(s, out, what, sql, ...)                                                                \
    run_stmt((s), false, (out), (what), (sql),                                                     \
             (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),                  \
             (const char *[]){__VA_ARGS__})
/* The same for statements carrying the caller's data: a refusal of that data is KEEL_EINVAL. */
#define RUN_INPUT(s, out, what, sql, ...)                                                          \
    run_stmt((s), true, (out), (what), (sql),                                                      \
             (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),                  \
             (const char *[]){__VA_ARGS__})

/* A command without parameters (BEGIN, COMMIT, ...). */
static int run_cmd(session *s, const char *what, const char *sql)
{
    return run_stmt(s, false, NULL, what, sql, 0, NULL);
}

/* After a failure inside BEGIN: undo, unless the connection is gone anyway (then closing it
 * undoes). A failed ROLLBACK marks the session broken so that release() closes it. */
static void rollback(session *s)
{
    if (s->broken || PQtransactionStatus(s->conn) == PQTRANS_IDLE)
        return;
    PGresult *res = PQexec(s->conn, "ROLLBACK");
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        s->broken = true;
    PQclear(res);
}

static int dup_value(const PGresult *res, int row, int col, char **out, keel_error *err)
{
    *out = strdup(PQgetvalue(res, row, col));
    if (*out == NULL)
        return keel_error_set(err, KEEL_ENOMEM, "out of memory copying a ledger value");
    return KEEL_OK;
}

/* ---- checks on the caller's input ---- */

static bool present(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static int check_key(const keel_ledger_key *key, const char *request_hash, keel_error *err)
{
    if (key == NULL || !present(key->namespace_) || !present(key->workflow_id) ||
        !present(key->run_id) || !present(key->activity_id))
        return keel_error_set(
            err, KEEL_EINVAL,
            "a ledger key needs a namespace, workflow id, run id and activity id");
    if (!present(request_hash))
        return keel_error_set(err, KEEL_EINVAL, "a ledger response needs a request hash");
    return KEEL_OK;
}

static int check_json(const char *json, const char *what, keel_error *err)
{
    if (json == NULL)
        return keel_error_set(err, KEEL_EINVAL, "%s is missing", what);
    return keel_json_check(json, strlen(json), KEEL_JSON_STRICT, what, err);
}

/* ---- migrations ---- */

/* The number before the first '_' of "NNN_name.sql"; false when there is none. */
static bool migration_version(const char *name, int *version)
{
    int v = 0;
    const char *p = name;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > 100000000)
            return false;
        v = v * 10 + (*p - '0');
    }
    if (p == name || *p != '_')
        return false;
    *version = v;
    return true;
}

/* Every embedded file has a version, and versions rise strictly in file order. */
static int check_migration_names(keel_error *err)
{
    int last = -1;
    for (size_t i = 0; i < keel_migrations_count; i++) {
        const char *name = keel_migrations[i].name;
        int v;
        if (!migration_version(name, &v))
            return keel_error_set(err, KEEL_EINVAL,
                                  "migration %s has no version number: name it NNN_what.sql", name);
        if (v <= last)
            return keel_error_set(
                err, KEEL_EINVAL,
                "migration %s repeats or goes below the version of %s: give it the next number",
                name, keel_migrations[i - 1].name);
        last = v;
    }
    return KEEL_OK;
}

static int sha256_hex(const char *data, size_t len, char hex[65], keel_error *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return keel_error_set(err, KEEL_EINTERNAL, "cannot compute a SHA-256 checksum");
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return KEEL_OK;
}

/* The line of text that PostgreSQL's error position (1-based, in characters) falls on. */
static int error_line(const char *text, const PGresult *res)
{
    const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
    long chars = pos ? strtol(pos, NULL, 10) : 0;
    int line = 1;
    for (const char *p = text; *p && chars > 0; p++) {
        if (((unsigned char)*p & 0xC0) != 0x80)
            chars--; /* a UTF-8 lead byte starts the next character */
        if (*p == '\n' && chars > 0)
            line++;
    }
    return pos ? line : 0;
}

/* Run a whole SQL file (several statements) inside the transaction keel opened; label names it
 * in errors ("migration 002_procurement.sql"). */
static int run_file(session *s, const keel_embedded_file *f, const char *label)
{
    PGresult *res = PQexec(s->conn, f->text);
    if (res != NULL && result_ok(res)) {
        PQclear(res);
        /* A file that commits or rolls back by itself would leave keel's bookkeeping (and the
         * rest of the file) outside one transaction. */
        if (PQtransactionStatus(s->conn) == PQTRANS_INTRANS)
            return KEEL_OK;
        return keel_error_set(s->err, KEEL_EINVAL,
                              "%s ended keel's transaction: it must not contain BEGIN, COMMIT "
                              "or ROLLBACK",
                              label);
    }
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        /* The connection waits for COPY data keel will never send: it cannot be reused. */
        PQclear(res);
        s->broken = true;
        return keel_error_set(s->err, KEEL_EINVAL,
                              "%s uses COPY, which keel cannot feed: use INSERT", label);
    }
    char what[320];
    int line = res ? error_line(f->text, res) : 0;
    if (line > 0)
        snprintf(what, sizeof what, "%s failed at line %d", label, line);
    else
        snprintf(what, sizeof what, "%s failed", label);
    return session_fail(s, res, what, false);
}

/* BEGIN; the file; the statement after it (may be NULL); COMMIT. Rolled back on any error. */
static int run_file_in_transaction(session *s, const keel_embedded_file *f, const char *label,
                                   const char *then_sql, int n, const char *const *params)
{
    int rc = run_cmd(s, "begin", "BEGIN");
    if (rc == KEEL_OK)
        rc = run_file(s, f, label);
    if (rc == KEEL_OK && then_sql != NULL)
        rc = run_stmt(s, false, NULL, "record the migration", then_sql, n, params);
    if (rc == KEEL_OK)
        rc = run_cmd(s, "commit", "COMMIT");
    if (rc != KEEL_OK)
        rollback(s);
    return rc;
}

/* Apply one migration unless it ran before; *ran says whether it ran now. */
static int migrate_one(session *s, const keel_embedded_file *f, int version, bool *ran)
{
    *ran = false;
    char sum[65], v[16];
    int rc = sha256_hex(f->text, f->len, sum, s->err);
    if (rc != KEEL_OK)
        return rc;
    snprintf(v, sizeof v, "%d", version);
    PGresult *res;
    rc = RUN(s, &res, "read the applied migrations",
             "SELECT checksum, name FROM keel_schema_migrations WHERE version = $1", v);
    if (rc != KEEL_OK)
        return rc;
    if (PQntuples(res) > 0) {
        bool same = strcmp(PQgetvalue(res, 0, 0), sum) == 0;
        if (!same)
            keel_error_set(s->err, KEEL_EINVAL,
                           "migration %s was changed after it was applied (applied as %s with "
                           "checksum %.12s, now %.12s): history is never rewritten, put the change "
                           "in a new migration file",
                           f->name, PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0), sum);
        PQclear(res);
        return same ? KEEL_OK : KEEL_EINVAL;
    }
    PQclear(res);
    const char *params[] = {v, f->name, sum};
    char label[300];
    snprintf(label, sizeof label, "migration %s", f->name);
    rc = run_file_in_transaction(
        s, f, label,
        "INSERT INTO keel_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", 3,
        params);
    if (rc == KEEL_OK)
        *ran = true;
    return rc;
}

static int migrate_locked(session *s, int *applied)
{
    int rc = run_cmd(s, "create keel_schema_migrations",
                     "CREATE TABLE IF NOT EXISTS keel_schema_migrations ("
                     " version int PRIMARY KEY,"
                     " name text NOT NULL,"
                     " checksum text NOT NULL,"
                     " applied_at timestamptz NOT NULL DEFAULT now())");
    for (size_t i = 0; i < keel_migrations_count && rc == KEEL_OK; i++) {
        int version = 0;
        bool ran = false;
        migration_version(keel_migrations[i].name, &version);
        rc = migrate_one(s, &keel_migrations[i], version, &ran);
        if (ran && applied != NULL)
            (*applied)++;
    }
    return rc;
}

int keel_ledger_migrate(keel_ledger *ledger, int *applied, keel_error *err)
{
    if (applied != NULL)
        *applied = 0;
    if (ledger == NULL)
        return keel_error_set(err, KEEL_EINVAL, "keel_ledger_migrate needs a ledger");
    int rc = check_migration_names(err);
    if (rc != KEEL_OK)
        return rc;
    session s;
    rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    /* Workers starting together wait here for the first one to finish. */
    rc = RUN(&s, NULL, "take the migration lock", "SELECT pg_advisory_lock($1::bigint)",
             MIGRATION_LOCK_ID);
    if (rc != KEEL_OK)
        return session_close(&s, rc);
    rc = migrate_locked(&s, applied);
    /* The lock belongs to the session: if it cannot be released, closing the connection does. */
    keel_error ignored;
    s.err = &ignored;
    if (!s.broken && RUN(&s, NULL, "release the migration lock",
                         "SELECT pg_advisory_unlock($1::bigint)", MIGRATION_LOCK_ID) != KEEL_OK)
        s.broken = true;
    return session_close(&s, rc);
}

int keel_ledger_seed(keel_ledger *ledger, keel_error *err)
{
    if (ledger == NULL)
        return keel_error_set(err, KEEL_EINVAL, "keel_ledger_seed needs a ledger");
    session s;
    int rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    return session_close(&s,
                         run_file_in_transaction(&s, &keel_seed, keel_seed.name, NULL, 0, NULL));
}

/* ---- model responses ---- */

static const char SELECT_RESPONSE[] =
    "SELECT request_hash, response FROM keel_llm_responses"
    " WHERE namespace = $1 AND workflow_id = $2 AND run_id = $3 AND activity_id = $4";

/* The stored response for key, compared with request_hash. */
static int read_response(session *s, const keel_ledger_key *key, const char *request_hash,
                         char **response_json)
{
    PGresult *res;
    int rc = RUN(s, &res, "read the stored response", SELECT_RESPONSE, key->namespace_,
                 key->workflow_id, key->run_id, key->activity_id);
    if (rc != KEEL_OK)
        return rc;
    if (PQntuples(res) == 0)
        rc = keel_error_set(s->err, KEEL_ENOTFOUND,
                            "no response stored for activity %s of workflow %s (run %s)",
                            key->activity_id, key->workflow_id, key->run_id);
    else if (strcmp(PQgetvalue(res, 0, 0), request_hash) != 0)
        rc = keel_error_set(s->err, KEEL_EEXISTS,
                            "activity %s of workflow %s (run %s) has a response stored for another "
                            "request (hash %.16s, not %.16s): the workflow changed the request",
                            key->activity_id, key->workflow_id, key->run_id, PQgetvalue(res, 0, 0),
                            request_hash);
    else
        rc = dup_value(res, 0, 1, response_json, s->err);
    PQclear(res);
    return rc;
}

int keel_ledger_response_get(keel_ledger *ledger, const keel_ledger_key *key,
                             const char *request_hash, char **response_json, keel_error *err)
{
    if (ledger == NULL || response_json == NULL)
        return keel_error_set(err, KEEL_EINVAL, "keel_ledger_response_get needs a ledger and out");
    *response_json = NULL;
    int rc = check_key(key, request_hash, err);
    if (rc != KEEL_OK)
        return rc;
    session s;
    rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    return session_close(&s, read_response(&s, key, request_hash, response_json));
}

int keel_ledger_response_put(keel_ledger *ledger, const keel_ledger_key *key,
                             const char *request_hash, const char *model, const char *response_json,
                             char **stored_json, keel_error *err)
{
    if (stored_json != NULL)
        *stored_json = NULL;
    if (ledger == NULL)
        return keel_error_set(err, KEEL_EINVAL, "keel_ledger_response_put needs a ledger");
    int rc = check_key(key, request_hash, err);
    if (rc == KEEL_OK)
        rc = check_json(response_json, "the response to store", err);
    if (rc != KEEL_OK)
        return rc;
    session s;
    rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    /* The first attempt to insert wins; everyone then reads what won, in a statement of its own
     * so that it sees a winner that committed while this insert waited. */
    rc = RUN_INPUT(&s, NULL, "store the response",
                   "INSERT INTO keel_llm_responses"
                   " (namespace, workflow_id, run_id, activity_id, request_hash, model, response)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                   key->namespace_, key->workflow_id, key->run_id, key->activity_id, request_hash,
                   model, response_json);
    char *stored = NULL;
    if (rc == KEEL_OK)
        rc = read_response(&s, key, request_hash, &stored);
    if (rc == KEEL_ENOTFOUND)
        rc = keel_error_set(err, KEEL_EINTERNAL, "the stored response vanished after the insert");
    if (rc == KEEL_OK && stored_json != NULL)
        *stored_json = stored;
    else
        free(stored);
    return session_close(&s, rc);
}

/* ---- conversations ---- */

/* messages_json must be an array of objects; *count gets its length. */
static int check_messages(const char *messages_json, size_t *count, keel_error *err)
{
    *count = 0;
    if (messages_json == NULL)
        return keel_error_set(err, KEEL_EINVAL, "the messages to append are missing");
    cJSON *v = NULL;
    int rc =
        keel_json_parse_str(messages_json, KEEL_JSON_STRICT, "the messages to append", &v, err);
    if (rc != KEEL_OK)
        return rc;
    size_t n = 0;
    if (!cJSON_IsArray(v))
        rc = keel_error_set(err, KEEL_EINVAL, "the messages to append must be a JSON array");
    for (cJSON *m = cJSON_IsArray(v) ? v->child : NULL; m != NULL && rc == KEEL_OK; m = m->next) {
        if (!cJSON_IsObject(m))
            rc = keel_error_set(err, KEEL_EINVAL, "message %zu of the append is not a JSON object",
                                n);
        n++;
    }
    cJSON_Delete(v);
    *count = n;
    return rc;
}

/*
 * One statement, no lock: the first message (idx 0) is the append's claim. Only the attempt whose
 * idx 0 went in adds the rest; a racing attempt with the same key waits on that row, finds it
 * taken and adds nothing, so a retry never mixes its messages with the first attempt's even if
 * they differ. json_array_elements keeps each element's text exactly as sent.
 */
static const char APPEND_MESSAGES[] =
    "WITH first AS ("
    " INSERT INTO keel_conversation_messages (conversation_id, append_key, idx, message)"
    " VALUES ($1, $2, 0, ($3::json -> 0)::text)"
    " ON CONFLICT DO NOTHING RETURNING 1)"
    " INSERT INTO keel_conversation_messages (conversation_id, append_key, idx, message)"
    " SELECT $1, $2, (e.ord - 1)::int, e.value::text"
    " FROM json_array_elements($3::json) WITH ORDINALITY AS e(value, ord)"
    " WHERE e.ord > 1 AND EXISTS (SELECT 1 FROM first)"
    " ORDER BY e.ord"
    " ON CONFLICT DO NOTHING";

int keel_ledger_conversation_append(keel_ledger *ledger, const char *conversation_id,
                                    const char *append_key, const char *messages_json,
                                    keel_error *err)
{
    if (ledger == NULL || !present(conversation_id) || !present(append_key))
        return keel_error_set(err, KEEL_EINVAL,
                              "an append needs a ledger, a conversation id and an append key");
    size_t count;
    int rc = check_messages(messages_json, &count, err);
    if (rc != KEEL_OK || count == 0)
        return rc;
    session s;
    rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    rc = RUN_INPUT(&s, NULL, "append to the conversation", APPEND_MESSAGES, conversation_id,
                   append_key, messages_json);
    return session_close(&s, rc);
}

/* Appends in the order they first arrived (the smallest seq of each), each append's messages in
 * its own order: concurrent appends to one conversation never interleave. */
static const char LOAD_MESSAGES[] =
    "SELECT count(*), coalesce('[' || string_agg(message, ',' ORDER BY first_seq, idx) || ']',"
    " '[]')"
    " FROM (SELECT message, idx, min(seq) OVER (PARTITION BY append_key) AS first_seq"
    "       FROM keel_conversation_messages WHERE conversation_id = $1) m";

int keel_ledger_conversation_load(keel_ledger *ledger, const char *conversation_id,
                                  char **messages_json, size_t *count, keel_error *err)
{
    if (count != NULL)
        *count = 0;
    if (ledger == NULL || messages_json == NULL || !present(conversation_id))
        return keel_error_set(err, KEEL_EINVAL, "a load needs a ledger, a conversation id and out");
    *messages_json = NULL;
    session s;
    int rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    PGresult *res;
    rc = RUN(&s, &res, "load the conversation", LOAD_MESSAGES, conversation_id);
    if (rc != KEEL_OK)
        return session_close(&s, rc);
    if (count != NULL)
        *count = (size_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    rc = dup_value(res, 0, 1, messages_json, err);
    PQclear(res);
    return session_close(&s, rc);
}

/* ---- once-only effects ---- */

/* claimed_at in microseconds: a claim's token, and the compare-and-swap value of a takeover. */
#define CLAIMED_US "(extract(epoch FROM claimed_at) * 1000000)::bigint"
/* When the claim's lease runs out. */
#define LEASE_END "(claimed_at + lease_ms * interval '1 millisecond')"
/* A time t as text for a reason: "2026-11-23 09:00:00.123 UTC". */
#define UTC_TEXT(t) "to_char(" t " AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS \"UTC\"')"

/* What claim() found in the row. */
typedef struct effect_row {
    bool found;
    char state[16];
    bool expired; /* claimed, and the holder's lease has run out */
    int64_t left_ms;
    char claimed_us[32];
    char holder[256];
    char *result; /* owned */
} effect_row;

static int read_effect(session *s, const char *key, const char *kind, effect_row *row)
{
    PGresult *res;
    int rc = RUN(s, &res, "read the effect",
                 "SELECT kind, state, result, " CLAIMED_US ", " LEASE_END " <= clock_timestamp(),"
                 " greatest(0, ceil(extract(epoch FROM " LEASE_END " - clock_timestamp()) * 1000)"
                 ")::bigint,"
                 " coalesce(owner, 'an attempt that did not say who it was')"
                 " || coalesce(' (attempt ' || attempt || ')', '')"
                 " FROM keel_effects WHERE key = $1",
                 key);
    if (rc != KEEL_OK)
        return rc;
    row->found = PQntuples(res) > 0;
    if (row->found && strcmp(PQgetvalue(res, 0, 0), kind) != 0) {
        rc = keel_error_set(s->err, KEEL_EEXISTS, "effect %s was claimed as %s, not %s", key,
                            PQgetvalue(res, 0, 0), kind);
    } else if (row->found) {
        snprintf(row->state, sizeof row->state, "%s", PQgetvalue(res, 0, 1));
        snprintf(row->claimed_us, sizeof row->claimed_us, "%s", PQgetvalue(res, 0, 3));
        row->expired =
            strcmp(row->state, "claimed") == 0 && strcmp(PQgetvalue(res, 0, 4), "t") == 0;
        row->left_ms = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
        snprintf(row->holder, sizeof row->holder, "%s", PQgetvalue(res, 0, 6));
        if (strcmp(row->state, "done") == 0)
            rc = dup_value(res, 0, 2, &row->result, s->err);
    }
    PQclear(res);
    return rc;
}

/* The request's fields as statement parameters. */
typedef struct effect_params {
    char lease[24], attempt[16];
    const char *owner, *attempt_or_null, *payload;
} effect_params;

/* Take over a claim that was released, abandoned or whose lease ran out, if nobody changed the
 * row since we read it (compare-and-swap on state and claimed_at). The reason says from whom, so
 * that an operator can tell a possible second delivery. */
static int take_over(session *s, const char *key, const effect_row *row, const effect_params *p,
                     bool *taken, char *token)
{
    PGresult *res;
    int rc = RUN_INPUT(
        s, &res, "take over the effect",
        "UPDATE keel_effects SET state = 'claimed', claimed_at = clock_timestamp(),"
        " lease_ms = $3::bigint, owner = $4, attempt = $5::integer,"
        " payload = coalesce($6, payload), released_at = NULL, abandoned_at = NULL,"
        " takeovers = takeovers + (state <> 'released')::integer,"
        " reason = CASE state"
        "  WHEN 'released' THEN 'claimed again after ' || coalesce(owner, 'its holder')"
        "   || ' released it: ' || coalesce(reason, 'no reason given')"
        "  WHEN 'abandoned' THEN 'taken over after it was abandoned: ' || coalesce(reason, '?')"
        "  ELSE 'taken over from ' || coalesce(owner, 'its holder')"
        "   || coalesce(' (attempt ' || attempt || ')', '') || ', whose lease of ' || lease_ms"
        "   || ' ms ran out at ' || " UTC_TEXT(
            LEASE_END) " END"
                       " WHERE key = $1 AND state = $7 AND " CLAIMED_US " = $2::bigint"
                       " RETURNING " CLAIMED_US,
        key, row->claimed_us, p->lease, p->owner, p->attempt_or_null, p->payload, row->state);
    if (rc != KEEL_OK)
        return rc;
    *taken = PQntuples(res) == 1;
    if (*taken)
        snprintf(token, KEEL_EFFECT_TOKEN_MAX, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return KEEL_OK;
}

static int claim(session *s, const keel_effect_request *req, const effect_params *p,
                 keel_effect_claim *out)
{
    for (int round = 0; round < CLAIM_ROUNDS; round++) {
        PGresult *res;
        int rc = RUN_INPUT(s, &res, "claim the effect",
                           "INSERT INTO keel_effects"
                           " (key, kind, state, claimed_at, lease_ms, owner, attempt, payload)"
                           " VALUES ($1, $2, 'claimed', clock_timestamp(), $3::bigint, $4,"
                           " $5::integer, $6)"
                           " ON CONFLICT DO NOTHING RETURNING " CLAIMED_US,
                           req->key, req->kind, p->lease, p->owner, p->attempt_or_null, p->payload);
        if (rc != KEEL_OK)
            return rc;
        bool inserted = PQntuples(res) == 1;
        if (inserted)
            snprintf(out->token, sizeof out->token, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        if (inserted) {
            out->state = KEEL_EFFECT_CLAIMED;
            return KEEL_OK;
        }
        effect_row row = {0};
        rc = read_effect(s, req->key, req->kind, &row);
        if (rc != KEEL_OK || !row.found) {
            free(row.result);
            if (rc != KEEL_OK)
                return rc;
            continue; /* gone again (deleted by hand): claim afresh */
        }
        if (strcmp(row.state, "done") == 0) {
            out->state = KEEL_EFFECT_DONE;
            out->result_json = row.result;
            return KEEL_OK;
        }
        snprintf(out->holder, sizeof out->holder, "%s", row.holder);
        if (strcmp(row.state, "claimed") == 0 && !row.expired) {
            out->state = KEEL_EFFECT_BUSY;
            out->busy_ms = row.left_ms > 0 ? row.left_ms : 1;
            return KEEL_OK;
        }
        bool taken = false;
        rc = take_over(s, req->key, &row, p, &taken, out->token);
        if (rc != KEEL_OK)
            return rc;
        if (taken) {
            out->state = KEEL_EFFECT_CLAIMED;
            out->taken_over = strcmp(row.state, "released") != 0;
            return KEEL_OK;
        }
        /* Someone else changed the row between our read and our update: look again. */
    }
    out->state = KEEL_EFFECT_BUSY;
    out->busy_ms = 1000;
    return KEEL_OK;
}

int keel_ledger_effect_claim(keel_ledger *ledger, const keel_effect_request *req,
                             keel_effect_claim *out, keel_error *err)
{
    if (out == NULL)
        return keel_error_set(err, KEEL_EINVAL, "an effect claim needs somewhere to answer");
    memset(out, 0, sizeof *out);
    out->state = KEEL_EFFECT_BUSY;
    if (ledger == NULL || req == NULL || !present(req->key) || !present(req->kind))
        return keel_error_set(err, KEEL_EINVAL, "an effect claim needs a ledger, a key and a kind");
    if (req->lease_ms < 0)
        return keel_error_set(err, KEEL_EINVAL, "an effect's lease must not be negative");
    if (req->attempt < 0)
        return keel_error_set(err, KEEL_EINVAL, "an effect's attempt must not be negative");
    if (req->payload_json != NULL) {
        int rc = check_json(req->payload_json, "the effect's payload", err);
        if (rc != KEEL_OK)
            return rc;
    }
    effect_params p = {.owner = req->owner, .payload = req->payload_json};
    snprintf(p.lease, sizeof p.lease, "%" PRId64,
             req->lease_ms < MAX_LEASE_MS ? req->lease_ms : MAX_LEASE_MS);
    snprintf(p.attempt, sizeof p.attempt, "%" PRId32, req->attempt);
    p.attempt_or_null = req->attempt > 0 ? p.attempt : NULL;
    session s;
    int rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    rc = claim(&s, req, &p, out);
    if (rc != KEEL_OK) {
        keel_effect_claim_dispose(out);
        out->state = KEEL_EFFECT_BUSY;
    }
    return session_close(&s, rc);
}

void keel_effect_claim_dispose(keel_effect_claim *claim)
{
    if (claim == NULL)
        return;
    free(claim->result_json);
    claim->result_json = NULL;
}

int keel_ledger_effect_done(keel_ledger *ledger, const char *key, const char *result_json,
                            keel_error *err)
{
    if (ledger == NULL || !present(key))
        return keel_error_set(err, KEEL_EINVAL, "effect_done needs a ledger and a key");
    if (result_json == NULL)
        result_json = "null";
    int rc = check_json(result_json, "the effect's result", err);
    if (rc != KEEL_OK)
        return rc;
    session s;
    rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    /* Anything but done turns into done (a late holder of an abandoned or released claim made
     * the effect after all); a second done() keeps the first result. The answer says whether
     * the key exists at all. */
    PGresult *res;
    rc = RUN_INPUT(&s, &res, "record the effect as done",
                   "WITH done AS (UPDATE keel_effects SET state = 'done', done_at = now(),"
                   " result = $2, released_at = NULL, abandoned_at = NULL"
                   " WHERE key = $1 AND state <> 'done' RETURNING 1)"
                   " SELECT EXISTS (SELECT 1 FROM done)"
                   " OR EXISTS (SELECT 1 FROM keel_effects WHERE key = $1)",
                   key, result_json);
    if (rc != KEEL_OK)
        return session_close(&s, rc);
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        rc = keel_error_set(err, KEEL_ENOTFOUND, "effect %s was never claimed", key);
    PQclear(res);
    return session_close(&s, rc);
}

int keel_ledger_effect_release(keel_ledger *ledger, const char *key, const char *token,
                               const char *reason, keel_error *err)
{
    if (ledger == NULL || !present(key) || !present(token))
        return keel_error_set(err, KEEL_EINVAL, "effect_release needs a ledger, a key and a token");
    session s;
    int rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    /* Only this claim: one taken over since (a new claimed_at) stays with its new holder. One
     * the sweep marked abandoned meanwhile is still this holder's to settle. */
    PGresult *res;
    rc = RUN_INPUT(&s, &res, "release the effect",
                   "UPDATE keel_effects SET state = 'released', released_at = now(),"
                   " abandoned_at = NULL, reason = coalesce($3, 'released by its holder')"
                   " WHERE key = $1 AND state IN ('claimed', 'abandoned')"
                   " AND " CLAIMED_US " = $2::bigint",
                   key, token, reason);
    if (rc == KEEL_OK)
        PQclear(res);
    return session_close(&s, rc);
}

int keel_ledger_effect_sweep(keel_ledger *ledger, int *abandoned, keel_error *err)
{
    if (abandoned != NULL)
        *abandoned = 0;
    session s;
    int rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    PGresult *res;
    rc = run_stmt(&s, false, &res, "sweep the effects",
                  "UPDATE keel_effects SET state = 'abandoned', abandoned_at = now(),"
                  " reason = coalesce(owner, 'an attempt that did not say who it was')"
                  " || coalesce(' (attempt ' || attempt || ')', '')"
                  " || ' claimed it at ' || " UTC_TEXT(
                      "claimed_at") ""
                                    " || ' and did not finish within its lease of '"
                                    " || lease_ms || ' ms: it died or hung between its claim and "
                                    "its record, so the '"
                                    " || kind || ' may or may not have happened'"
                                    " WHERE state = 'claimed' AND " LEASE_END
                                    " <= clock_timestamp() RETURNING key",
                  0, NULL);
    if (rc != KEEL_OK)
        return session_close(&s, rc);
    if (abandoned != NULL)
        *abandoned = PQntuples(res);
    PQclear(res);
    return session_close(&s, rc);
}

int keel_ledger_effect_list(keel_ledger *ledger, const char *which, const char *kind, int limit,
                            char **json, keel_error *err)
{
    static const char *const known[] = {"unsent",    "claimed", "done", "released",
                                        "abandoned", "all",     NULL};
    if (json == NULL)
        return keel_error_set(err, KEEL_EINVAL, "effect_list needs somewhere to answer");
    *json = NULL;
    which = which ? which : "unsent";
    bool ok = false;
    for (const char *const *k = known; *k; k++)
        ok = ok || strcmp(*k, which) == 0;
    if (!ok)
        return keel_error_set(err, KEEL_EINVAL,
                              "unknown effect state '%s': unsent, claimed, done, released, "
                              "abandoned or all",
                              which);
    char n[16];
    snprintf(n, sizeof n, "%d", limit > 0 ? limit : 100);
    session s;
    int rc = keel_ledger_session_open(&s, ledger, err);
    if (rc != KEEL_OK)
        return rc;
    PGresult *res;
    rc = RUN(&s, &res, "list the effects",
             "SELECT coalesce(json_agg(json_build_object("
             " 'key', key, 'kind', kind, 'state', state,"
             " 'lease_expired', state = 'claimed' AND " LEASE_END " <= clock_timestamp(),"
             " 'owner', owner, 'attempt', attempt, 'claimed_at', claimed_at,"
             " 'lease_ends_at', " LEASE_END ", 'takeovers', takeovers, 'reason', reason,"
             " 'payload', payload::json, 'result', result::json, 'done_at', done_at,"
             " 'released_at', released_at, 'abandoned_at', abandoned_at)"
             " ORDER BY claimed_at DESC),"
             " '[]') FROM (SELECT * FROM keel_effects"
             " WHERE ($2::text IS NULL OR kind = $2) AND CASE $1"
             "  WHEN 'all' THEN true"
             "  WHEN 'unsent' THEN state IN ('released', 'abandoned')"
             "   OR (state = 'claimed' AND " LEASE_END " <= clock_timestamp())"
             "  ELSE state = $1 END"
             " ORDER BY claimed_at DESC LIMIT $3::integer) e",
             which, kind, n);
    if (rc != KEEL_OK)
        return session_close(&s, rc);
    rc = dup_value(res, 0, 0, json, err);
    PQclear(res);
    return session_close(&s, rc);
}

/* ---- the sweeper ---- */

static void *sweeper_main(void *arg)
{
    keel_ledger *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->sweeper_stop) {
        pthread_mutex_unlock(&l->mu);
        keel_error err;
        keel_ledger_effect_sweep(l, NULL, &err); /* a failure waits for the next round */
        pthread_mutex_lock(&l->mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)(l->sweep_ms / 1000);
        until.tv_nsec += (long)(l->sweep_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!l->sweeper_stop &&
               pthread_cond_timedwait(&l->sweeper_wake, &l->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int keel_ledger_effect_sweeper_start(keel_ledger *ledger, int64_t interval_ms, keel_error *err)
{
    if (ledger == NULL)
        return keel_error_set(err, KEEL_EINVAL, "the effect sweeper needs a ledger");
    if (interval_ms <= 0) {
        const char *env = getenv("KEEL_EFFECT_SWEEP_INTERVAL");
        interval_ms = DEFAULT_SWEEP_MS;
        if (env != NULL && env[0] != '\0') {
            keel_error why;
            if (keel_duration_parse(env, &interval_ms, &why) != KEEL_OK || interval_ms <= 0)
                return keel_error_set(err, KEEL_EINVAL,
                                      "KEEL_EFFECT_SWEEP_INTERVAL must be a positive duration "
                                      "such as 30s: %s",
                                      interval_ms <= 0 ? "it is not positive" : why.message);
        }
    }
    pthread_mutex_lock(&ledger->mu);
    if (ledger->sweeper_running) {
        pthread_mutex_unlock(&ledger->mu);
        return KEEL_OK;
    }
    ledger->sweep_ms = interval_ms;
    ledger->sweeper_stop = false;
    int prc = pthread_create(&ledger->sweeper, NULL, sweeper_main, ledger);
    ledger->sweeper_running = prc == 0;
    pthread_mutex_unlock(&ledger->mu);
    if (prc != 0)
        return keel_error_set(err, KEEL_EINTERNAL, "cannot start the effect sweeper thread");
    return KEEL_OK;
}

static void sweeper_stop(keel_ledger *l)
{
    pthread_mutex_lock(&l->mu);
    bool running = l->sweeper_running;
    l->sweeper_stop = true;
    l->sweeper_running = false;
    pthread_cond_broadcast(&l->sweeper_wake);
    pthread_mutex_unlock(&l->mu);
    if (running)
        pthread_join(l->sweeper, NULL);
}

char *keel_ledger_key_text(const keel_ledger_key *key)
{
    const char *parts[] = {key->namespace_, key->workflow_id, key->run_id, key->activity_id};
    size_t n = 0;
    for (size_t i = 0; i < 4; i++)
        n += strlen(parts[i] ? parts[i] : "") + 1;
    char *out = malloc(n);
    if (!out)
        return NULL;
    snprintf(out, n, "%s/%s/%s/%s", parts[0] ? parts[0] : "", parts[1] ? parts[1] : "",
             parts[2] ? parts[2] : "", parts[3] ? parts[3] : "");
    return out;
}
