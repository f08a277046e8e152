/*
 * keelctl effects - the once-only side effects (notifications) in keel's database, for operators:
 * which may not have happened, and a sweep that marks claims past their lease abandoned.
 *
 *   keelctl effects list [unsent|claimed|released|abandoned|done|all] [--type KIND] [--limit N]
 *   keelctl effects sweep
 *
 * "unsent" (the default) lists what may not have happened: effects released (the webhook refused
 * them), abandoned (their holder died or hung past its lease: delivery unknown) or still claimed
 * past their lease (the sweep has not come by yet), each with the payload it would have sent.
 * keel-worker sweeps by itself (KEEL_EFFECT_SWEEP_INTERVAL); `sweep` does it now.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activities/ledger.h"
#include "keel/json.h"
#include "keelctl.h"

static int open_ledger(keel_ledger **ledger)
{
    const char *url = getenv("DATABASE_URL");
    if (!url || !*url) {
        fprintf(stderr, "keelctl: DATABASE_URL is not set (eval \"$(tools/devstack env)\")\n");
        return EXIT_USAGE;
    }
    keel_error err;
    if (keel_ledger_open(ledger, url, 1, &err) != KEEL_OK)
        return fail(&err);
    return 0;
}

static const char *field(const cJSON *o, const char *name)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
    return s ? s : "";
}

/* One effect as text: what, whose, when, why, and the message it carries. */
static void print_effect(const cJSON *e)
{
    const cJSON *attempt = cJSON_GetObjectItemCaseSensitive(e, "attempt");
    const cJSON *takeovers = cJSON_GetObjectItemCaseSensitive(e, "takeovers");
    bool expired = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "lease_expired"));
    printf("%s%s %s %s\n", field(e, "state"), expired ? " (lease run out)" : "", field(e, "kind"),
           field(e, "key"));
    printf("  claimed %s by %s", field(e, "claimed_at"),
           field(e, "owner")[0] ? field(e, "owner") : "(unknown)");
    if (cJSON_IsNumber(attempt))
        printf(", attempt %d", attempt->valueint);
    printf("; lease until %s", field(e, "lease_ends_at"));
    if (cJSON_IsNumber(takeovers) && takeovers->valueint > 0)
        printf("; taken over %d time(s)", takeovers->valueint);
    printf("\n");
    if (field(e, "reason")[0])
        printf("  reason: %s\n", field(e, "reason"));
    const cJSON *payload = cJSON_GetObjectItemCaseSensitive(e, "payload");
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(payload, "text"));
    if (text) {
        printf("  text: %s\n", text);
    } else if (payload && !cJSON_IsNull(payload)) {
        char *json = keel_json_print(payload);
        printf("  payload: %s\n", json ? json : "?");
        cJSON_free(json);
    }
}

static int list(const cli *c, keel_ledger *ledger)
{
    const char *which = c->nargs > 2 ? c->args[2] : "unsent";
    long limit = 100;
    if (c->limit) {
        char *end;
        limit = strtol(c->limit, &end, 10);
        if (*end || limit < 1 || limit > 100000)
            return usage_error("--limit '%s': expected a number from 1 to 100000", c->limit);
    }
    char *json = NULL;
    keel_error err;
    if (keel_ledger_effect_list(ledger, which, c->type, (int)limit, &json, &err) != KEEL_OK)
        return err.code == KEEL_EINVAL ? usage_error("%s", err.message) : fail(&err);
    cJSON *effects = NULL;
    int rc = keel_json_parse_str(json, KEEL_JSON_STRICT, "the effects", &effects, &err);
    free(json);
    if (rc != KEEL_OK)
        return fail(&err);
    if (!cJSON_IsArray(effects)) {
        cJSON_Delete(effects);
        fprintf(stderr, "keelctl: the database answered something that is not a JSON list\n");
        return EXIT_CALL;
    }
    if (c->json)
        return print_json(effects);
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, effects)
    {
        print_effect(e);
        n++;
    }
    printf("%d %s effect%s\n", n, which, n == 1 ? "" : "s");
    cJSON_Delete(effects);
    return 0;
}

static int sweep(keel_ledger *ledger)
{
    int n = 0;
    keel_error err;
    if (keel_ledger_effect_sweep(ledger, &n, &err) != KEEL_OK)
        return fail(&err);
    printf("%d claim%s past %s lease marked abandoned\n", n, n == 1 ? "" : "s",
           n == 1 ? "its" : "their");
    return 0;
}

int keelctl_effects(const cli *c)
{
    bool is_list = c->nargs >= 2 && c->nargs <= 3 && strcmp(c->args[1], "list") == 0;
    bool is_sweep = c->nargs == 2 && strcmp(c->args[1], "sweep") == 0;
    if (!is_list && !is_sweep)
        return usage_error("%s", "effects takes one command: list [STATE] or sweep");
    keel_ledger *ledger;
    int rc = open_ledger(&ledger);
    if (rc != 0)
        return rc;
    rc = is_list ? list(c, ledger) : sweep(ledger);
    keel_ledger_close(ledger);
    return rc;
}
