/* The unit test binary: suites that need no server. */
#include "suites.h"

Suite *error_suite(void);
Suite *options_suite(void);
Suite *duration_suite(void);
Suite *transport_suite(void);
Suite *proto_suite(void);
Suite *client_suite(void);
Suite *payload_suite(void);
Suite *engine_suite(void);
Suite *local_activity_suite(void);
Suite *protojson_suite(void);
Suite *fieldnames_suite(void);
Suite *cache_suite(void);
Suite *poll_scaler_suite(void);
Suite *replay_suite(void);
Suite *schema_suite(void);
Suite *llm_suite(void);
Suite *tools_suite(void);
Suite *json_suite(void);
Suite *metrics_suite(void);
Suite *trace_suite(void);
Suite *toml_suite(void);
Suite *profile_suite(void);
Suite *process_suite(void);
Suite *arena_suite(void);
Suite *grpcwire_suite(void);

const keel_test_suite *keel_test_suites(void)
{
    static const keel_test_suite suites[] = {
        {"error", error_suite},
        {"options", options_suite},
        {"duration", duration_suite},
        {"transport", transport_suite},
        {"proto", proto_suite},
        {"client", client_suite},
        {"payload", payload_suite},
        {"engine", engine_suite},
        {"local-activity", local_activity_suite},
        {"protojson", protojson_suite},
        {"fieldnames", fieldnames_suite},
        {"cache", cache_suite},
        {"poll_scaler", poll_scaler_suite},
        {"replay", replay_suite},
        {"schema", schema_suite},
        {"llm", llm_suite},
        {"tools", tools_suite},
        {"json", json_suite},
        {"metrics", metrics_suite},
        {"trace", trace_suite},
        {"toml", toml_suite},
        {"profile", profile_suite},
        {"process", process_suite},
        {"arena", arena_suite},
        {"grpcwire", grpcwire_suite},
        {NULL, NULL},
    };
    return suites;
}
