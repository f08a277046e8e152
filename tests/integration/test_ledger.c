/*
 * activities/ledger.c against the dev stack's real PostgreSQL (DATABASE_URL): migrations, the
 * response ledger, conversations, once-only effects, races between threads, an unreachable
 * database and a connection killed under the pool.
 *
 * Check forks every test and several runs share the database, so every key carries the pid and
 * a counter. Tests that tamper with the schema get a database of their own and drop it after.
 */
#include <cjson/cJSON.h>
#include <check.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "activities/embedded.h"
#include "activities/ledger.h"

#define RACERS 8

static keel_ledger *ledger;

static const char *database_url(void)
{
    const char *url = getenv("DATABASE_URL");
    ck_assert_msg(url && url[0], "DATABASE_URL is not set: eval \"$(tools/devstack env)\"");
    return url;
}

/* A name no other test or run uses: prefix-pid-counter-nanoseconds. */
static void unique(char *buf, size_t cap, const char *prefix)
{
    static int counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, cap, "%s-%ld-%d-%ld", prefix, (long)getpid(), ++counter, (long)ts.tv_nsec);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void setup(void)
{
    keel_error err;
    ck_assert_msg(keel_ledger_open(&ledger, database_url(), 4, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_ledger_migrate(ledger, NULL, &err) == KEEL_OK, "%s", err.message);
}

static void teardown(void)
{
    keel_ledger_close(ledger);
    ledger = NULL;
}

/* ---- helpers over plain libpq ---- */

/* A connection of the test's own, outside any pool. */
static PGconn *connect_to(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* Run sql with one optional parameter; returns the first value (caller frees) or NULL. The
 * message of a failure goes to problem (when not NULL) instead of failing the test, so that
 * cleanup code can run before any assertion. */
static char *sql_value(PGconn *c, const char *sql, const char *param, char *problem, size_t cap)
{
    const char *params[] = {param};
    PGresult *res = PQexecParams(c, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    char *value = NULL;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        if (problem)
            snprintf(problem, cap, "%s: %s", sql, PQresultErrorMessage(res));
    } else if (st == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
        value = strdup(PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return value;
}

/* The same, failing the test on an error. */
static char *must_value(PGconn *c, const char *sql, const char *param)
{
    char problem[1024] = "";
    char *v = sql_value(c, sql, param, problem, sizeof problem);
    ck_assert_msg(problem[0] == '\0', "%s", problem);
    return v;
}

/* DATABASE_URL as a key=value conninfo, with another database (dbname may be NULL) and extra
 * settings appended (may be ""). */
static char *conninfo_with(const char *dbname, const char *extra)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(database_url(), &msg);
    ck_assert_msg(opts != NULL, "DATABASE_URL: %s", msg ? msg : "out of memory");
    size_t cap = 4096, n = 0;
    char *out = calloc(1, cap);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *v = dbname && strcmp(o->keyword, "dbname") == 0 ? dbname : o->val;
        if (v == NULL)
            continue;
        n += (size_t)snprintf(out + n, cap - n, "%s%s='", n ? " " : "", o->keyword);
        for (const char *p = v; *p && n + 4 < cap; p++) {
            if (*p == '\'' || *p == '\\')
                out[n++] = '\\';
            out[n++] = *p;
        }
        n += (size_t)snprintf(out + n, cap - n, "'");
    }
    snprintf(out + n, cap - n, " %s", extra);
    PQconninfoFree(opts);
    return out;
}

/* A fresh empty database (its name to name[64]) and a conninfo for it. */
static char *create_database(char *name)
{
    unique(name, 64, "keel_ledger_test");
    for (char *p = name; *p; p++)
        if (*p == '-')
            *p = '_';
    PGconn *c = connect_to(database_url());
    char *quoted = PQescapeIdentifier(c, name, strlen(name));
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", quoted);
    PQfreemem(quoted);
    free(must_value(c, sql, NULL));
    PQfinish(c);
    return conninfo_with(name, "");
}

static void drop_database(const char *name)
{
    PGconn *c = connect_to(database_url());
    char *quoted = PQescapeIdentifier(c, name, strlen(name));
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", quoted);
    PQfreemem(quoted);
    free(must_value(c, sql, NULL));
    PQfinish(c);
}

static void expect_valid_json(const char *json)
{
    cJSON *v = cJSON_Parse(json);
    ck_assert_msg(v != NULL, "not JSON: %s", json);
    cJSON_Delete(v);
}

/* ---- migrations ---- */

START_TEST(migrations_apply_once_and_create_the_tables)
{
    char db[64];
    char *conninfo = create_database(db);
    keel_ledger *l;
    keel_error err;
    int first = -1, second = -1, rc1, rc2 = KEEL_OK;
    rc1 = keel_ledger_open(&l, conninfo, 2, &err);
    if (rc1 == KEEL_OK) {
        rc1 = keel_ledger_migrate(l, &first, &err);
        if (rc1 == KEEL_OK)
            rc2 = keel_ledger_migrate(l, &second, &err);
        keel_ledger_close(l);
    }
    PGconn *c = connect_to(conninfo);
    char *tables = sql_value(c,
                             "SELECT string_agg(t, ',' ORDER BY t) FROM unnest(ARRAY["
                             "'keel_schema_migrations','keel_llm_responses',"
                             "'keel_conversation_messages','keel_effects']) t"
                             " WHERE to_regclass(t) IS NOT NULL",
                             NULL, NULL, 0);
    char *name =
        sql_value(c, "SELECT name FROM keel_schema_migrations WHERE version = 1", NULL, NULL, 0);
    PQfinish(c);
    drop_database(db);
    free(conninfo);
    ck_assert_msg(rc1 == KEEL_OK && rc2 == KEEL_OK, "%s", err.message);
    ck_assert_int_eq(first, (int)keel_migrations_count);
    ck_assert_int_eq(second, 0);
    ck_assert_str_eq(tables ? tables : "(none)", "keel_conversation_messages,keel_effects,"
                                                 "keel_llm_responses,keel_schema_migrations");
    ck_assert_str_eq(name ? name : "(none)", "001_ledger.sql");
    free(tables);
    free(name);
}
END_TEST

typedef struct migrate_race {
    const char *conninfo;
    pthread_barrier_t *start;
    int applied;
    int rc;
    keel_error err;
} migrate_race;

static void *migrate_racer(void *arg)
{
    migrate_race *r = arg;
    keel_ledger *l = NULL;
    r->rc = keel_ledger_open(&l, r->conninfo, 1, &r->err);
    pthread_barrier_wait(r->start);
    if (r->rc == KEEL_OK)
        r->rc = keel_ledger_migrate(l, &r->applied, &r->err);
    keel_ledger_close(l);
    return NULL;
}

/* Workers starting together on an empty database: each migration runs once in all. */
START_TEST(workers_migrating_at_once_apply_each_migration_once)
{
    char db[64];
    char *conninfo = create_database(db);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 4);
    migrate_race r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (migrate_race){.conninfo = conninfo, .start = &start};
        pthread_create(&t[i], NULL, migrate_racer, &r[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    drop_database(db);
    free(conninfo);
    int total = 0;
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(r[i].rc == KEEL_OK, "%s", r[i].err.message);
        total += r[i].applied;
    }
    ck_assert_int_eq(total, (int)keel_migrations_count);
}
END_TEST

/* On the shared database: whatever ran before, a second run applies nothing. */
START_TEST(migrating_the_shared_database_again_applies_nothing)
{
    keel_error err;
    int applied = -1;
    ck_assert_msg(keel_ledger_migrate(ledger, &applied, &err) == KEEL_OK, "%s", err.message);
    ck_assert_int_eq(applied, 0);
}
END_TEST

START_TEST(a_migration_changed_after_it_was_applied_is_refused_by_name)
{
    char db[64];
    char *conninfo = create_database(db);
    keel_ledger *l = NULL;
    keel_error err = {0};
    int rc = keel_ledger_open(&l, conninfo, 2, &err);
    if (rc == KEEL_OK)
        rc = keel_ledger_migrate(l, NULL, &err);
    int refused = KEEL_OK, again = KEEL_OK;
    keel_error why = {0};
    char problem[1024] = "";
    if (rc == KEEL_OK) {
        /* Tamper, run, put the checksum back, run again: all before any assertion. */
        PGconn *c = connect_to(conninfo);
        free(sql_value(c,
                       "UPDATE keel_schema_migrations SET checksum = 'x' || checksum"
                       " WHERE version = $1::int",
                       "1", problem, sizeof problem));
        refused = keel_ledger_migrate(l, NULL, &why);
        free(sql_value(c,
                       "UPDATE keel_schema_migrations SET checksum = substr(checksum, 2)"
                       " WHERE version = $1::int AND checksum LIKE 'x%'",
                       "1", problem, sizeof problem));
        again = keel_ledger_migrate(l, NULL, &err);
        PQfinish(c);
    }
    keel_ledger_close(l);
    drop_database(db);
    free(conninfo);
    ck_assert_msg(rc == KEEL_OK, "%s", err.message);
    ck_assert_msg(problem[0] == '\0', "%s", problem);
    ck_assert_int_eq(refused, KEEL_EINVAL);
    ck_assert_msg(strstr(why.message, "migration 001_ledger.sql was changed after it was applied"),
                  "%s", why.message);
    ck_assert(!why.retryable);
    ck_assert_msg(again == KEEL_OK, "%s", err.message);
}
END_TEST

START_TEST(the_seed_runs_twice)
{
    keel_error err;
    ck_assert_msg(keel_ledger_seed(ledger, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_ledger_seed(ledger, &err) == KEEL_OK, "%s", err.message);
}
END_TEST

/* ---- model responses ---- */

typedef struct key_strings {
    char workflow_id[96];
    char run_id[96];
    keel_ledger_key key;
} key_strings;

static void new_key(key_strings *k)
{
    unique(k->workflow_id, sizeof k->workflow_id, "wf");
    unique(k->run_id, sizeof k->run_id, "run");
    k->key = (keel_ledger_key){"default", k->workflow_id, k->run_id, "3"};
}

START_TEST(a_response_is_stored_once_and_reused)
{
    key_strings k;
    new_key(&k);
    keel_error err;
    char *got = (char *)"unset";
    ck_assert_int_eq(keel_ledger_response_get(ledger, &k.key, "h1", &got, &err), KEEL_ENOTFOUND);
    ck_assert_ptr_null(got);

    /* Kept byte for byte: key order, spacing and number spelling survive. */
    const char *body = "{\"z\": 1.50,  \"a\":[true, null], \"s\":\"caf\\u00e9\"}";
    char *stored = NULL;
    ck_assert_msg(keel_ledger_response_put(ledger, &k.key, "h1", "m-1", body, &stored, &err) ==
                      KEEL_OK,
                  "%s", err.message);
    ck_assert_str_eq(stored, body);
    free(stored);
    ck_assert_int_eq(keel_ledger_response_get(ledger, &k.key, "h1", &got, &err), KEEL_OK);
    ck_assert_str_eq(got, body);
    free(got);

    /* A later attempt's answer does not replace the first. */
    ck_assert_int_eq(
        keel_ledger_response_put(ledger, &k.key, "h1", "m-1", "{\"other\":2}", &stored, &err),
        KEEL_OK);
    ck_assert_str_eq(stored, body);
    free(stored);
    ck_assert_int_eq(keel_ledger_response_put(ledger, &k.key, "h1", NULL, "{}", NULL, &err),
                     KEEL_OK);
}
END_TEST

START_TEST(a_changed_request_under_the_same_activity_is_an_error)
{
    key_strings k;
    new_key(&k);
    keel_error err;
    ck_assert_int_eq(keel_ledger_response_put(ledger, &k.key, "h1", "m", "{\"a\":1}", NULL, &err),
                     KEEL_OK);
    char *got = NULL;
    ck_assert_int_eq(keel_ledger_response_get(ledger, &k.key, "h2", &got, &err), KEEL_EEXISTS);
    ck_assert_ptr_null(got);
    ck_assert(!err.retryable);
    ck_assert_msg(strstr(err.message, "another request"), "%s", err.message);
    char *stored = (char *)"unset";
    ck_assert_int_eq(
        keel_ledger_response_put(ledger, &k.key, "h2", "m", "{\"a\":2}", &stored, &err),
        KEEL_EEXISTS);
    ck_assert_ptr_null(stored);
}
END_TEST

START_TEST(bad_responses_and_keys_are_refused)
{
    key_strings k;
    new_key(&k);
    keel_error err;
    ck_assert_int_eq(keel_ledger_response_put(ledger, &k.key, "h", "m", "{\"a\":", NULL, &err),
                     KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "not valid JSON"), "%s", err.message);
    /* cJSON lets "01" through; PostgreSQL's json parser does not: still the caller's input. */
    ck_assert_int_eq(keel_ledger_response_put(ledger, &k.key, "h", "m", "[01]", NULL, &err),
                     KEEL_EINVAL);
    char *got = NULL;
    ck_assert_int_eq(keel_ledger_response_get(ledger, &k.key, "h", &got, &err), KEEL_ENOTFOUND);
    keel_ledger_key partial = k.key;
    partial.run_id = "";
    ck_assert_int_eq(keel_ledger_response_put(ledger, &partial, "h", "m", "{}", NULL, &err),
                     KEEL_EINVAL);
    ck_assert_int_eq(keel_ledger_response_get(ledger, &k.key, NULL, &got, &err), KEEL_EINVAL);
}
END_TEST

typedef struct put_race {
    const keel_ledger_key *key;
    pthread_barrier_t *start;
    char body[64];
    char *stored;
    int rc;
    keel_error err;
} put_race;

static void *put_racer(void *arg)
{
    put_race *r = arg;
    pthread_barrier_wait(r->start);
    r->rc = keel_ledger_response_put(ledger, r->key, "h", "m", r->body, &r->stored, &r->err);
    return NULL;
}

START_TEST(racing_puts_all_return_the_one_stored_response)
{
    key_strings k;
    new_key(&k);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACERS);
    put_race r[RACERS];
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) {
        r[i] = (put_race){.key = &k.key, .start = &start};
        snprintf(r[i].body, sizeof r[i].body, "{\"attempt\":%d}", i);
        pthread_create(&t[i], NULL, put_racer, &r[i]);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    char *first = NULL;
    for (int i = 0; i < RACERS; i++) {
        ck_assert_msg(r[i].rc == KEEL_OK, "%s", r[i].err.message);
        ck_assert_str_eq(r[i].stored, r[0].stored);
    }
    ck_assert_int_eq(keel_ledger_response_get(ledger, &k.key, "h", &first, NULL), KEEL_OK);
    ck_assert_str_eq(first, r[0].stored);
    free(first);
    for (int i = 0; i < RACERS; i++)
        free(r[i].stored);
}
END_TEST

/* ---- conversations ---- */

static char *load(const char *conversation, size_t *count)
{
    char *json = NULL;
    keel_error err;
    ck_assert_msg(keel_ledger_conversation_load(ledger, conversation, &json, count, &err) ==
                      KEEL_OK,
                  "%s", err.message);
    expect_valid_json(json);
    return json;
}

START_TEST(appends_are_once_per_key_and_keep_their_order)
{
    char conv[96];
    unique(conv, sizeof conv, "conv");
    keel_error err;
    size_t count = 99;
    char *json = load(conv, &count);
    ck_assert_str_eq(json, "[]");
    ck_assert_uint_eq(count, 0);
    free(json);

    const char *first = "[{\"role\":\"system\",\"content\":\"be brief\"}, {\"role\":\"user\","
                        "\"content\":\"3 laptops\"}]";
    ck_assert_msg(keel_ledger_conversation_append(ledger, conv, "act-1", first, &err) == KEEL_OK,
                  "%s", err.message);
    /* A retry of the same activity, even with another answer, adds nothing. */
    ck_assert_int_eq(keel_ledger_conversation_append(ledger, conv, "act-1", first, &err), KEEL_OK);
    ck_assert_int_eq(keel_ledger_conversation_append(ledger, conv, "act-1",
                                                     "[{\"role\":\"user\"},{},{},{\"x\":1}]", &err),
                     KEEL_OK);
    ck_assert_int_eq(
        keel_ledger_conversation_append(ledger, conv, "act-2",
                                        "[{\"role\":\"assistant\",\"content\":\"ok\"}]", &err),
        KEEL_OK);
    ck_assert_int_eq(keel_ledger_conversation_append(ledger, conv, "act-3", "[]", &err), KEEL_OK);
    ck_assert_int_eq(keel_ledger_conversation_append(ledger, conv, "act-0",
                                                     "[{\"role\":\"tool\",\"n\":1.0}]", &err),
                     KEEL_OK);
    json = load(conv, &count);
    ck_assert_uint_eq(count, 4);
    ck_assert_str_eq(json, "[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\","
                           "\"content\":\"3 laptops\"},{\"role\":\"assistant\",\"content\":"
                           "\"ok\"},{\"role\":\"tool\",\"n\":1.0}]");
    free(json);
}
END_TEST

START_TEST(bad_appends_are_refused_and_store_nothing)
{
    char conv[96];
    unique(conv, sizeof conv, "conv");
    keel_error err;
    ck_assert_int_eq(keel_ledger_conversation_append(ledger, conv, "a", "[{\"role\":", &err),
                     KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "not valid JSON"), "%s", err.message);
    ck_assert_int_eq(
        keel_ledger_conversation_append(ledger, conv, "a", "{\"role\":\"user\"}", &err),
        KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "JSON array"), "%s", err.message);
    ck_assert_int_eq(keel_ledger_conversation_append(ledger, conv, "a", "[{}, \"hi\"]", &err),
                     KEEL_EINVAL);
    ck_assert_msg(strstr(err.message, "message 1"), "%s", err.message);
    ck_assert_int_eq(keel_ledger_conversation_append(ledger, conv, "a", "[{\"n\":01}]", &err),
                     KEEL_EINVAL);
    ck_assert_int_eq(keel_ledger_conversation_append(ledger, conv, "a", NULL, &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_ledger_conversation_append(ledger, conv, "", "[]", &err), KEEL_EINVAL);
    size_t count = 99;
    char *json = load(conv, &count);
    ck_assert_str_eq(json, "[]");
    ck_assert_uint_eq(count, 0);
    free(json);
}
END_TEST

typedef struct append_race {
    const char *conversation;
    pthread_barrier_t *start;
    char messages[128];
    int rc;
    keel_error err;
} append_race;

static void *append_racer(void *arg)
{
    append_race *r = arg;
    pthread_barrier_wait(r->start);
    r->rc = keel_ledger_conversation_append(ledger, r->conversation, "same-activity", r->messages,
                                            &r->err);
    return NULL;
}

/* Racing retries of one append, with different answers: one of them, whole, and only once. */
START_TEST(racing_appends_with_one_key_store_one_of_them_whole)
{
    char conv[96];
    unique(conv, sizeof conv, "conv");
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACERS);
    append_race r[RACERS];
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) {
        r[i] = (append_race){.conversation = conv, .start = &start};
        /* Attempt i says i+1 things, so a mix of two attempts would show. */
        int n = snprintf(r[i].messages, sizeof r[i].messages, "[");
        for (int j = 0; j <= i; j++)
            n += snprintf(r[i].messages + n, sizeof r[i].messages - (size_t)n, "%s{\"a\":%d}",
                          j ? "," : "", i);
        snprintf(r[i].messages + n, sizeof r[i].messages - (size_t)n, "]");
        pthread_create(&t[i], NULL, append_racer, &r[i]);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < RACERS; i++)
        ck_assert_msg(r[i].rc == KEEL_OK, "%s", r[i].err.message);
    size_t count;
    char *json = load(conv, &count);
    bool matched = false;
    for (int i = 0; i < RACERS; i++)
        matched = matched || strcmp(json, r[i].messages) == 0;
    ck_assert_msg(matched, "not one attempt's messages: %s", json);
    free(json);
}
END_TEST

/* ---- effects ---- */

/* Claim key as owner `who`, attempt `attempt`, carrying payload (may be NULL). */
static keel_effect_state claim_as(const char *key, int64_t lease_ms, const char *who, int attempt,
                                  const char *payload, keel_effect_claim *out)
{
    keel_effect_request req = {.key = key,
                               .kind = "webhook",
                               .lease_ms = lease_ms,
                               .owner = who,
                               .attempt = attempt,
                               .payload_json = payload};
    keel_error err;
    ck_assert_msg(keel_ledger_effect_claim(ledger, &req, out, &err) == KEEL_OK, "%s", err.message);
    return out->state;
}

static keel_effect_state claim(const char *key, int64_t lease_ms, char **result)
{
    keel_effect_claim c;
    keel_effect_state state = claim_as(key, lease_ms, "test", 1, NULL, &c);
    if (result != NULL) {
        *result = c.result_json;
        c.result_json = NULL;
    }
    keel_effect_claim_dispose(&c);
    return state;
}

/* One column of the effect's row (a new string; NULL for SQL NULL or no row). */
static char *effect_column(const char *key, const char *column)
{
    char query[256];
    snprintf(query, sizeof query, "SELECT %s::text FROM keel_effects WHERE key = $1", column);
    PGconn *c = connect_to(database_url());
    char *v = must_value(c, query, key);
    PQfinish(c);
    return v;
}

/* want NULL: SQL NULL. */
static void expect_column(const char *key, const char *column, const char *want)
{
    char *v = effect_column(key, column);
    ck_assert_msg(want ? v && strcmp(v, want) == 0 : v == NULL, "%s of %s is %s, not %s", column,
                  key, v ? v : "NULL", want ? want : "NULL");
    free(v);
}

static void expect_column_has(const char *key, const char *column, const char *text)
{
    char *v = effect_column(key, column);
    ck_assert_msg(v && strstr(v, text), "%s of %s is %s, without '%s'", column, key, v ? v : "NULL",
                  text);
    free(v);
}

/* Whether keel_ledger_effect_list(which) names key. */
static bool listed(const char *which, const char *key)
{
    char *json = NULL;
    keel_error err;
    ck_assert_msg(keel_ledger_effect_list(ledger, which, "webhook", 100000, &json, &err) == KEEL_OK,
                  "%s", err.message);
    cJSON *list = cJSON_Parse(json);
    ck_assert_msg(cJSON_IsArray(list), "not a list: %s", json);
    bool found = false;
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "key"));
        found = found || (k && strcmp(k, key) == 0);
    }
    cJSON_Delete(list);
    free(json);
    return found;
}

static int sweep(void)
{
    int n = -1;
    keel_error err;
    ck_assert_msg(keel_ledger_effect_sweep(ledger, &n, &err) == KEEL_OK, "%s", err.message);
    return n;
}

START_TEST(a_released_claim_can_be_claimed_again_but_not_a_taken_over_one)
{
    char key[96];
    keel_effect_claim first, second;
    unique(key, sizeof key, "release");
    keel_error err;
    ck_assert_int_eq(claim_as(key, 100, "first", 1, NULL, &first), KEEL_EFFECT_CLAIMED);
    ck_assert_int_gt(strlen(first.token), 0);
    sleep_ms(200);
    /* The lease ran out: another attempt takes over, and the first one's release is refused. */
    ck_assert_int_eq(claim_as(key, 60000, "second", 2, NULL, &second), KEEL_EFFECT_CLAIMED);
    ck_assert(second.taken_over);
    ck_assert_str_ne(first.token, second.token);
    ck_assert_int_eq(keel_ledger_effect_release(ledger, key, first.token, "late", &err), KEEL_OK);
    ck_assert_int_eq(claim(key, 60000, NULL), KEEL_EFFECT_BUSY);
    /* The holder's release frees the key for a new claim, which is no takeover: the effect
     * surely did not happen. */
    ck_assert_int_eq(
        keel_ledger_effect_release(ledger, key, second.token, "HTTP 500: try later", &err),
        KEEL_OK);
    expect_column(key, "state", "released");
    expect_column(key, "reason", "HTTP 500: try later");
    ck_assert(listed("unsent", key));
    ck_assert(listed("released", key));
    keel_effect_claim third;
    ck_assert_int_eq(claim_as(key, 60000, "third", 3, NULL, &third), KEEL_EFFECT_CLAIMED);
    ck_assert(!third.taken_over);
    expect_column(key, "takeovers", "1");
    expect_column_has(key, "reason", "claimed again after second released it: HTTP 500");
    ck_assert(!listed("unsent", key));
}
END_TEST

START_TEST(an_effect_is_claimed_done_and_then_reported_done)
{
    char key[96];
    unique(key, sizeof key, "effect");
    keel_error err;
    char *result = NULL;
    ck_assert_int_eq(claim(key, 60000, &result), KEEL_EFFECT_CLAIMED);
    ck_assert_ptr_null(result);
    ck_assert_int_eq(claim(key, 60000, &result), KEEL_EFFECT_BUSY);
    ck_assert_ptr_null(result);
    ck_assert_msg(keel_ledger_effect_done(ledger, key, "{\"status\": 202}", &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_int_eq(claim(key, 60000, &result), KEEL_EFFECT_DONE);
    ck_assert_str_eq(result, "{\"status\": 202}");
    free(result);
    /* A second done() keeps the first result. */
    ck_assert_int_eq(keel_ledger_effect_done(ledger, key, "{\"status\":500}", &err), KEEL_OK);
    ck_assert_int_eq(claim(key, 0, &result), KEEL_EFFECT_DONE);
    ck_assert_str_eq(result, "{\"status\": 202}");
    free(result);
    ck_assert_int_eq(claim(key, 60000, NULL), KEEL_EFFECT_DONE);
    ck_assert(listed("done", key));
    ck_assert(!listed("unsent", key));
}
END_TEST

START_TEST(effect_misuse_is_refused)
{
    char key[96];
    unique(key, sizeof key, "effect");
    keel_error err;
    keel_effect_claim c;
    ck_assert_int_eq(keel_ledger_effect_done(ledger, key, "{}", &err), KEEL_ENOTFOUND);
    ck_assert_int_eq(claim(key, 60000, NULL), KEEL_EFFECT_CLAIMED);
    keel_effect_request req = {.key = key, .kind = "email", .lease_ms = 60000};
    ck_assert_int_eq(keel_ledger_effect_claim(ledger, &req, &c, &err), KEEL_EEXISTS);
    req.kind = "webhook";
    req.lease_ms = -1;
    ck_assert_int_eq(keel_ledger_effect_claim(ledger, &req, &c, &err), KEEL_EINVAL);
    req.lease_ms = 1000;
    req.payload_json = "{oops";
    ck_assert_int_eq(keel_ledger_effect_claim(ledger, &req, &c, &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_ledger_effect_claim(ledger, NULL, &c, &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_ledger_effect_release(ledger, key, NULL, NULL, &err), KEEL_EINVAL);
    ck_assert_int_eq(keel_ledger_effect_done(ledger, key, "{oops", &err), KEEL_EINVAL);
    char *json = NULL;
    ck_assert_int_eq(keel_ledger_effect_list(ledger, "lost", NULL, 10, &json, &err), KEEL_EINVAL);
    ck_assert_ptr_null(json);
    ck_assert_int_eq(keel_ledger_effect_done(ledger, key, NULL, &err), KEEL_OK);
    char *result = NULL;
    ck_assert_int_eq(claim(key, 60000, &result), KEEL_EFFECT_DONE);
    ck_assert_str_eq(result, "null");
    free(result);
}
END_TEST

START_TEST(a_stale_claim_is_taken_over_after_its_lease)
{
    char key[96];
    keel_effect_claim a, b, c;
    unique(key, sizeof key, "effect");
    ck_assert_int_eq(claim_as(key, 300, "worker-a:1", 1, "{\"text\":\"hi\"}", &a),
                     KEEL_EFFECT_CLAIMED);
    ck_assert(!a.taken_over);
    expect_column(key, "owner", "worker-a:1");
    expect_column(key, "attempt", "1");
    expect_column(key, "lease_ms", "300");
    /* A later attempt within the holder's lease is told who holds it, and for how long. */
    ck_assert_int_eq(claim_as(key, 300, "worker-b:2", 2, NULL, &b), KEEL_EFFECT_BUSY);
    ck_assert_str_eq(b.holder, "worker-a:1 (attempt 1)");
    ck_assert_msg(b.busy_ms > 0 && b.busy_ms <= 300, "busy for %lld ms", (long long)b.busy_ms);
    /* The holder's own lease counts, not the caller's. */
    ck_assert_int_eq(claim_as(key, 1, "worker-b:2", 2, NULL, &b), KEEL_EFFECT_BUSY);
    sleep_ms(400);
    ck_assert_int_eq(claim_as(key, 60000, "worker-b:2", 3, NULL, &c), KEEL_EFFECT_CLAIMED);
    ck_assert(c.taken_over);
    ck_assert_str_eq(c.holder, "worker-a:1 (attempt 1)");
    expect_column(key, "owner", "worker-b:2");
    expect_column(key, "attempt", "3");
    expect_column(key, "takeovers", "1");
    expect_column(key, "payload", "{\"text\":\"hi\"}"); /* kept from the first claim */
    /* (or "taken over after it was abandoned: worker-a:1 ...", if a worker's sweep came first) */
    expect_column_has(key, "reason", "worker-a:1 (attempt 1)");
    /* The takeover starts a new lease, the taker's. */
    expect_column(key, "lease_ms", "60000");
    ck_assert_int_eq(claim(key, 300, NULL), KEEL_EFFECT_BUSY);
}
END_TEST

START_TEST(the_sweep_marks_a_claim_past_its_lease_abandoned_and_a_retry_still_delivers)
{
    char key[96], other[96];
    keel_effect_claim c;
    keel_error err;
    unique(key, sizeof key, "sweep");
    unique(other, sizeof other, "sweep");
    ck_assert_int_eq(claim_as(key, 1500, "worker-a:7", 1, "{\"text\":\"approval needed\"}", &c),
                     KEEL_EFFECT_CLAIMED);
    ck_assert_int_eq(claim(other, 60000, NULL), KEEL_EFFECT_CLAIMED);
    sweep();
    expect_column(key, "state", "claimed"); /* its lease runs */
    ck_assert(!listed("unsent", key));
    sleep_ms(1600);
    ck_assert(listed("unsent", key)); /* past its lease, before any sweep */
    sweep();                          /* (keel-workers on the same database may sweep it first) */
    expect_column(key, "state", "abandoned");
    expect_column(other, "state", "claimed");
    expect_column_has(key, "reason", "worker-a:7 (attempt 1) claimed it at");
    expect_column_has(key, "reason", "did not finish within its lease of 1500 ms");
    ck_assert(listed("abandoned", key));
    ck_assert(listed("unsent", key));
    /* What the operator reads: the message that may not have been sent. */
    char *json = NULL;
    ck_assert_int_eq(keel_ledger_effect_list(ledger, "abandoned", NULL, 100000, &json, &err),
                     KEEL_OK);
    ck_assert_msg(strstr(json, "\"payload\" : {\"text\":\"approval needed\"}") ||
                      strstr(json, "\"payload\":{\"text\":\"approval needed\"}"),
                  "%s", json);
    free(json);
    /* A later attempt of the same activity takes it over and makes it. */
    keel_effect_claim retry;
    ck_assert_int_eq(claim_as(key, 200, "worker-b:8", 2, NULL, &retry), KEEL_EFFECT_CLAIMED);
    ck_assert(retry.taken_over);
    expect_column_has(key, "reason", "taken over after it was abandoned: worker-a:7");
    ck_assert_int_eq(keel_ledger_effect_done(ledger, key, "{\"delivered\":true}", &err), KEEL_OK);
    expect_column(key, "state", "done");
    expect_column(key, "abandoned_at", NULL);
    ck_assert(!listed("unsent", key));
}
END_TEST

START_TEST(a_late_holder_records_an_abandoned_effect_as_done)
{
    char key[96];
    keel_effect_claim c;
    keel_error err;
    unique(key, sizeof key, "late");
    ck_assert_int_eq(claim_as(key, 100, "slow", 1, NULL, &c), KEEL_EFFECT_CLAIMED);
    sleep_ms(200);
    sweep(); /* (keel-workers on the same database may sweep it first) */
    expect_column(key, "state", "abandoned");
    ck_assert_int_eq(keel_ledger_effect_done(ledger, key, "{\"status\":200}", &err), KEEL_OK);
    expect_column(key, "state", "done");
    char *result = NULL;
    ck_assert_int_eq(claim(key, 100, &result), KEEL_EFFECT_DONE);
    ck_assert_str_eq(result, "{\"status\":200}");
    free(result);
}
END_TEST

/* A claim from before migration 004 (no owner, no lease of its own: the incident's stuck row)
 * gets the 30 s lease and is swept like any other. */
START_TEST(a_claim_stuck_from_before_the_leases_is_abandoned)
{
    char key[96];
    unique(key, sizeof key, "stuck");
    PGconn *conn = connect_to(database_url());
    free(must_value(conn,
                    "INSERT INTO keel_effects (key, kind, state, claimed_at)"
                    " VALUES ($1, 'webhook', 'claimed', now() - interval '1 hour')",
                    key));
    PQfinish(conn);
    expect_column(key, "lease_ms", "30000");
    sweep(); /* (keel-workers on the same database may sweep it first) */
    expect_column(key, "state", "abandoned");
    expect_column_has(key, "reason", "an attempt that did not say who it was claimed it");
    ck_assert_int_eq(claim(key, 1000, NULL), KEEL_EFFECT_CLAIMED);
}
END_TEST

/* keel-worker's sweeper: a claim left by a dead holder is abandoned within an interval of its
 * lease's end, and closing the ledger stops the thread. */
START_TEST(the_sweeper_thread_abandons_claims_without_being_asked)
{
    char key[96];
    keel_effect_claim c;
    keel_error err;
    keel_ledger *own;
    ck_assert_msg(keel_ledger_open(&own, database_url(), 1, &err) == KEEL_OK, "%s", err.message);
    ck_assert_msg(keel_ledger_effect_sweeper_start(own, 100, &err) == KEEL_OK, "%s", err.message);
    ck_assert_int_eq(keel_ledger_effect_sweeper_start(own, 100, &err), KEEL_OK); /* once */
    unique(key, sizeof key, "sweeper");
    ck_assert_int_eq(claim_as(key, 200, "dead", 1, NULL, &c), KEEL_EFFECT_CLAIMED);
    char *state = NULL;
    for (int i = 0; i < 50; i++, sleep_ms(100)) {
        free(state);
        state = effect_column(key, "state");
        if (state && strcmp(state, "abandoned") == 0)
            break;
    }
    ck_assert_str_eq(state ? state : "NULL", "abandoned");
    free(state);
    keel_ledger_close(own);
    /* A bad interval in the environment is refused by name. */
    ck_assert_msg(keel_ledger_open(&own, database_url(), 1, &err) == KEEL_OK, "%s", err.message);
    setenv("KEEL_EFFECT_SWEEP_INTERVAL", "often", 1);
    ck_assert_int_eq(keel_ledger_effect_sweeper_start(own, 0, &err), KEEL_EINVAL);
    unsetenv("KEEL_EFFECT_SWEEP_INTERVAL");
    ck_assert_msg(strstr(err.message, "KEEL_EFFECT_SWEEP_INTERVAL"), "%s", err.message);
    keel_ledger_close(own);
}
END_TEST

typedef struct claim_race {
    const char *key;
    int64_t lease_ms;
    pthread_barrier_t *start;
    keel_effect_state state;
    int rc;
    keel_error err;
} claim_race;

static void *claim_racer(void *arg)
{
    claim_race *r = arg;
    pthread_barrier_wait(r->start);
    keel_effect_request req = {.key = r->key, .kind = "webhook", .lease_ms = r->lease_ms};
    keel_effect_claim c;
    r->rc = keel_ledger_effect_claim(ledger, &req, &c, &r->err);
    r->state = c.state;
    keel_effect_claim_dispose(&c);
    return NULL;
}

/* RACERS threads claim key at once; returns how many got CLAIMED. */
static int race_claims(const char *key, int64_t lease_ms)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACERS);
    claim_race r[RACERS];
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) {
        r[i] = (claim_race){.key = key, .lease_ms = lease_ms, .start = &start};
        pthread_create(&t[i], NULL, claim_racer, &r[i]);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    int claimed = 0;
    for (int i = 0; i < RACERS; i++) {
        ck_assert_msg(r[i].rc == KEEL_OK, "%s", r[i].err.message);
        ck_assert_msg(r[i].state != KEEL_EFFECT_DONE, "racer %d saw DONE", i);
        claimed += r[i].state == KEEL_EFFECT_CLAIMED;
    }
    return claimed;
}

START_TEST(racing_claims_have_exactly_one_winner)
{
    char key[96];
    unique(key, sizeof key, "effect");
    ck_assert_int_eq(race_claims(key, 60000), 1);
    /* And racing takeovers of a stale claim too. */
    unique(key, sizeof key, "effect");
    ck_assert_int_eq(claim(key, 300, NULL), KEEL_EFFECT_CLAIMED);
    sleep_ms(400);
    ck_assert_int_eq(race_claims(key, 300), 1);
}
END_TEST

/* ---- connections ---- */

START_TEST(an_unreachable_database_is_unavailable_and_keeps_the_password)
{
    const char *urls[] = {
        "postgresql://keel:secret-pw@127.0.0.1:1/keel",
        "host=127.0.0.1 port=1 user=keel password=secret-pw dbname=keel",
        "postgresql://keel@127.0.0.1:1/keel?password=secret-pw&connect_timeout=2",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        static int sentinel;
        keel_ledger *l = (keel_ledger *)&sentinel;
        keel_error err;
        ck_assert_int_eq(keel_ledger_open(&l, urls[i], 2, &err), KEEL_EUNAVAILABLE);
        ck_assert_ptr_null(l);
        ck_assert(err.retryable);
        ck_assert_msg(strstr(err.message, "127.0.0.1") && strstr(err.message, "port 1"), "%s",
                      err.message);
        ck_assert_msg(!strstr(err.message, "secret-pw"), "password in: %s", err.message);
    }
}
END_TEST

START_TEST(a_malformed_conninfo_is_invalid_and_keeps_the_password)
{
    const char *bad[] = {
        "host=127.0.0.1 password=secret-pw secret-pw",
        "postgresql://keel:secret-pw@127.0.0.1:5432/keel?bogus=1",
        "host=127.0.0.1 pasword=secret-pw",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keel_ledger *l = NULL;
        keel_error err;
        ck_assert_int_eq(keel_ledger_open(&l, bad[i], 2, &err), KEEL_EINVAL);
        ck_assert(!err.retryable);
        ck_assert_msg(!strstr(err.message, "secret-pw"), "password in: %s", err.message);
    }
}
END_TEST

/* The pid of the backend behind the pool's (only) connection. */
static int pooled_backend(keel_ledger *l)
{
    PGconn *c;
    keel_error err;
    ck_assert_msg(keel_ledger_acquire(l, &c, &err) == KEEL_OK, "%s", err.message);
    int pid = PQbackendPID(c);
    keel_ledger_release(l, c, false);
    return pid;
}

static void terminate_backend(int pid)
{
    char text[16];
    snprintf(text, sizeof text, "%d", pid);
    PGconn *c = connect_to(database_url());
    char *ok = must_value(c, "SELECT pg_terminate_backend($1::int)", text);
    ck_assert_str_eq(ok ? ok : "(null)", "t");
    free(ok);
    /* pg_terminate_backend only signals: wait until the backend is gone. */
    for (int i = 0; i < 100; i++) {
        char *alive =
            must_value(c, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", text);
        bool gone = alive && strcmp(alive, "0") == 0;
        free(alive);
        if (gone)
            break;
        sleep_ms(50);
    }
    PQfinish(c);
}

START_TEST(a_killed_connection_fails_once_and_the_pool_redials)
{
    keel_ledger *l;
    keel_error err;
    ck_assert_msg(keel_ledger_open(&l, database_url(), 1, &err) == KEEL_OK, "%s", err.message);
    char conv[96];
    unique(conv, sizeof conv, "conv");
    char *json = NULL;
    int pid = pooled_backend(l);
    terminate_backend(pid);
    int rc = keel_ledger_conversation_load(l, conv, &json, NULL, &err);
    ck_assert_int_eq(rc, KEEL_EUNAVAILABLE);
    ck_assert(err.retryable);
    ck_assert_ptr_null(json);
    ck_assert_msg(keel_ledger_conversation_load(l, conv, &json, NULL, &err) == KEEL_OK, "%s",
                  err.message);
    ck_assert_str_eq(json, "[]");
    free(json);
    ck_assert_int_ne(pooled_backend(l), pid);
    keel_ledger_close(l);
}
END_TEST

START_TEST(refused_sql_is_internal_and_the_connection_survives)
{
    keel_ledger *l;
    keel_error err;
    ck_assert_msg(keel_ledger_open(&l, database_url(), 1, &err) == KEEL_OK, "%s", err.message);
    PGconn *c;
    ck_assert_int_eq(keel_ledger_acquire(l, &c, &err), KEEL_OK);
    int pid = PQbackendPID(c);
    PGresult *res = PQexec(c, "SELEC 1");
    bool broken = true;
    ck_assert_int_eq(keel_ledger_pq_error(c, res, "select one", &broken, &err), KEEL_EINTERNAL);
    PQclear(res);
    ck_assert(!broken);
    ck_assert(!err.retryable);
    ck_assert_msg(strstr(err.message, "select one: ") == err.message &&
                      strstr(err.message, "(SQLSTATE 42601)"),
                  "%s", err.message);
    keel_ledger_release(l, c, broken);
    ck_assert_int_eq(pooled_backend(l), pid);

    /* Given back inside a transaction, a connection is closed rather than passed on. */
    ck_assert_int_eq(keel_ledger_acquire(l, &c, &err), KEEL_OK);
    PQclear(PQexec(c, "BEGIN"));
    keel_ledger_release(l, c, false);
    ck_assert_int_ne(pooled_backend(l), pid);
    keel_ledger_close(l);
}
END_TEST

typedef struct busy_thread {
    keel_ledger *ledger;
    const char *conversation;
    int failures;
    keel_error err;
} busy_thread;

static void *busy_loader(void *arg)
{
    busy_thread *b = arg;
    for (int i = 0; i < 25; i++) {
        char *json = NULL;
        if (keel_ledger_conversation_load(b->ledger, b->conversation, &json, NULL, &b->err) !=
            KEEL_OK)
            b->failures++;
        free(json);
    }
    return NULL;
}

/* More threads than connections: they wait their turn instead of failing or dialling more. */
START_TEST(threads_share_a_small_pool)
{
    char app[96], setting[128];
    unique(app, sizeof app, "keel-ledger-pool");
    snprintf(setting, sizeof setting, "application_name='%s'", app);
    char *conninfo = conninfo_with(NULL, setting);
    keel_ledger *l;
    keel_error err;
    ck_assert_msg(keel_ledger_open(&l, conninfo, 2, &err) == KEEL_OK, "%s", err.message);
    free(conninfo);
    char conv[96];
    unique(conv, sizeof conv, "conv");
    busy_thread b[RACERS];
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) {
        b[i] = (busy_thread){.ledger = l, .conversation = conv};
        pthread_create(&t[i], NULL, busy_loader, &b[i]);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < RACERS; i++)
        ck_assert_msg(b[i].failures == 0, "%s", b[i].err.message);
    /* The pool keeps what it opened: never more than its two. */
    PGconn *c = connect_to(database_url());
    char *n =
        must_value(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app);
    PQfinish(c);
    ck_assert_msg(n && (strcmp(n, "1") == 0 || strcmp(n, "2") == 0), "%s connections",
                  n ? n : "(null)");
    free(n);
    keel_ledger_close(l);
}
END_TEST

Suite *ledger_suite(void)
{
    Suite *s = suite_create("ledger");
    TCase *tc = tcase_create("ledger");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, migrations_apply_once_and_create_the_tables);
    tcase_add_test(tc, workers_migrating_at_once_apply_each_migration_once);
    tcase_add_test(tc, migrating_the_shared_database_again_applies_nothing);
    tcase_add_test(tc, a_migration_changed_after_it_was_applied_is_refused_by_name);
    tcase_add_test(tc, the_seed_runs_twice);
    tcase_add_test(tc, a_response_is_stored_once_and_reused);
    tcase_add_test(tc, a_changed_request_under_the_same_activity_is_an_error);
    tcase_add_test(tc, bad_responses_and_keys_are_refused);
    tcase_add_test(tc, racing_puts_all_return_the_one_stored_response);
    tcase_add_test(tc, appends_are_once_per_key_and_keep_their_order);
    tcase_add_test(tc, bad_appends_are_refused_and_store_nothing);
    tcase_add_test(tc, racing_appends_with_one_key_store_one_of_them_whole);
    tcase_add_test(tc, an_effect_is_claimed_done_and_then_reported_done);
    tcase_add_test(tc, a_released_claim_can_be_claimed_again_but_not_a_taken_over_one);
    tcase_add_test(tc, effect_misuse_is_refused);
    tcase_add_test(tc, a_stale_claim_is_taken_over_after_its_lease);
    tcase_add_test(tc, racing_claims_have_exactly_one_winner);
    tcase_add_test(tc, the_sweep_marks_a_claim_past_its_lease_abandoned_and_a_retry_still_delivers);
    tcase_add_test(tc, a_late_holder_records_an_abandoned_effect_as_done);
    tcase_add_test(tc, a_claim_stuck_from_before_the_leases_is_abandoned);
    tcase_add_test(tc, the_sweeper_thread_abandons_claims_without_being_asked);
    tcase_add_test(tc, an_unreachable_database_is_unavailable_and_keeps_the_password);
    tcase_add_test(tc, a_malformed_conninfo_is_invalid_and_keeps_the_password);
    tcase_add_test(tc, a_killed_connection_fails_once_and_the_pool_redials);
    tcase_add_test(tc, refused_sql_is_internal_and_the_connection_survives);
    tcase_add_test(tc, threads_share_a_small_pool);
    suite_add_tcase(s, tc);
    return s;
}
