/*
 * keel/schema.h - JSON Schema validation of tool arguments (and any other JSON a model produces).
 *
 * Dialects: JSON Schema draft 7 and 2020-12, chosen by the root's `$schema`
 * ("http://json-schema.org/draft-07/schema#" or "https://json-schema.org/draft/2020-12/schema",
 * or the URI of a registered metaschema whose `$vocabulary` names 2020-12 vocabularies). Without
 * `$schema` the dialect is 2020-12 (keel_schema_options.dialect changes that). Any other
 * `$schema` (draft 4, 6, 2019-09, an unknown URI) is refused. An embedded resource (a subschema
 * with `$id`) may switch dialect with its own `$schema`.
 *
 * Every assertion and applicator keyword of both dialects is evaluated: type, enum, const,
 * multipleOf, maximum, exclusiveMaximum, minimum, exclusiveMinimum, maxLength, minLength,
 * pattern, items, additionalItems (draft 7), prefixItems (2020-12), contains, minContains,
 * maxContains (2020-12), maxItems, minItems, uniqueItems, maxProperties, minProperties, required,
 * properties, patternProperties, additionalProperties, propertyNames, dependencies (draft 7; in
 * 2020-12 too, as draft 7 defines it, since an author who writes it means it),
 * dependentRequired, dependentSchemas, allOf, anyOf, oneOf, not, if/then/else,
 * unevaluatedProperties and unevaluatedItems (2020-12, seeing the annotations of in-place
 * applicators and references), boolean schemas, $ref, $defs/definitions, $id, $anchor,
 * $dynamicRef/$dynamicAnchor (2020-12's dynamic scope), $vocabulary (2020-12, in a registered
 * metaschema: a vocabulary keel knows is used, an unknown one marked true is refused).
 * format is an annotation, except "format": "regex" in draft 7, which keel asserts (draft 7
 * leaves format assertion to the implementation). contentEncoding, contentMediaType,
 * contentSchema, title, description, default, examples, deprecated, readOnly, writeOnly and
 * $comment never fail. Other keywords are ignored, as the specifications ask, except these,
 * which are refused because their author expects them to assert and keel would not: $recursiveRef
 * and $recursiveAnchor (2019-09), and in draft 7 the 2019+ keywords prefixItems,
 * unevaluatedItems, unevaluatedProperties, dependentRequired, dependentSchemas, minContains,
 * maxContains and $dynamicRef. In draft 7 a `$ref` makes its sibling keywords ignored (`$id`
 * included); in 2020-12 they apply too.
 *
 * Numbers compare by value, exactly, from the text they were written with (keel/json.h keeps
 * it): 1 == 1.0 == 1e0, 9007199254740993 != 9007199254740992, 0.3 is a multipleOf 0.1. enum,
 * const and uniqueItems compare arrays in order and objects as sets of members; uniqueItems
 * hashes, so it is linear.
 *
 * References: `$ref` and `$dynamicRef` resolve within the schema's own document, the resources
 * registered with keel_schema_new_with, and keel's built-in draft 7 and 2020-12 metaschemas, by
 * RFC 3986 resolution against the base URI that `$id`s set, to an `$anchor`, a `$dynamicAnchor`,
 * draft 7's `"$id": "#name"` or a JSON Pointer (percent-decoded, ~0 and ~1 escapes, array
 * indices without leading zeros or overflow). keel fetches nothing from the network. Every
 * reference is resolved when the schema is compiled, reached or not; one that does not resolve
 * is refused then, naming it and where it is. A cycle of subschemas that apply each other to the
 * same value without moving into the instance (e.g. {"anyOf":[{"$ref":"#"}]}) is refused too: it
 * could never finish. (One that only $dynamicRef's dynamic scope creates stops validation.)
 *
 * Regular expressions (pattern, patternProperties) are ECMA-262 with the u flag over Unicode
 * code points, searched unanchored, run by PCRE2: \d \w \b are ASCII, \s is JavaScript's white
 * space, `.` excludes line terminators, `$` matches only at the end, \p{..} takes ECMA-262's
 * property names, lookahead, lookbehind (of bounded length), lazy quantifiers, named groups and
 * backreferences work; syntax JavaScript refuses with the u flag is refused (\a, \Z, a++, (?>..),
 * (?i), lone braces, ...). maxLength and minLength count code points. docs/json-schema.md has
 * the details.
 *
 * Limits on what comes from outside. The schema text and the instance text are read with
 * keel/json.h's limits (KEEL_JSON_MAX_DEPTH nesting, KEEL_JSON_MAX_TEXT bytes). When compiling,
 * KEEL_EINVAL:
 *   KEEL_SCHEMA_MAX_PATTERN           "schema: 'pattern' at #/... has a regular expression '...'
 *                                     that cannot be used: longer than 4096 bytes
 *                                     (KEEL_SCHEMA_MAX_PATTERN)"
 *   KEEL_SCHEMA_MAX_PATTERNS          "schema: more than 1024 regular expressions
 *                                     (KEEL_SCHEMA_MAX_PATTERNS)"
 *   KEEL_SCHEMA_REGEX_COMPILE_MEMORY  "... that cannot be used: compiling it needs more than
 *                                     1048576 bytes (KEEL_SCHEMA_REGEX_COMPILE_MEMORY)"; PCRE2
 *                                     also refuses a compiled pattern over 64 KiB: "... that
 *                                     cannot be used: regular expression is too large"
 * When validating, KEEL_EEXHAUSTED (err->retryable false: the same schema and instance stop the
 * same way), and no result:
 *   KEEL_SCHEMA_MAX_WORK,             "schema: validation stopped after N steps
 *   KEEL_SCHEMA_WORK_PER_VALUE        (KEEL_SCHEMA_MAX_WORK 10000000 plus
 *                                     KEEL_SCHEMA_WORK_PER_VALUE 100 per instance value) at /...:
 *                                     the schema asks too much work of this instance"; a step is
 *                                     one subschema applied to one value, one member or item
 *                                     visited, one regex search (and one per 64 bytes searched),
 *                                     one value hashed or compared
 *   KEEL_SCHEMA_MAX_DEPTH             "schema: validation stopped: subschemas nested deeper than
 *                                     512 levels (KEEL_SCHEMA_MAX_DEPTH) at #/... on /..."
 *   KEEL_SCHEMA_REGEX_MATCH_LIMIT,    "schema: validation stopped: the regular expression '...'
 *   KEEL_SCHEMA_REGEX_DEPTH_LIMIT,    of 'pattern' at #/..., searching the string at /...: the
 *   KEEL_SCHEMA_REGEX_HEAP_LIMIT_KIB  search hit the match limit (1000000 steps,
 *                                     KEEL_SCHEMA_REGEX_MATCH_LIMIT)" (or the depth or heap limit)
 *   (a $dynamicRef loop)              "schema: validation stopped: the subschema at #/... applies
 *                                     itself to /... again without moving into the instance"
 * And KEEL_SCHEMA_MAX_ERRORS errors at most are kept in a result (the rest set `truncated`).
 *
 * So a validation has three outcomes: KEEL_OK with result.valid (the instance conforms), KEEL_OK
 * with !result.valid and the errors (it does not), or an error return and no result: KEEL_EINVAL
 * when the instance text is not JSON keel reads, KEEL_EEXHAUSTED when a limit above stopped the
 * validation before it could decide, KEEL_ENOMEM.
 */
#ifndef KEEL_SCHEMA_H
#define KEEL_SCHEMA_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Errors kept in one result. */
#define KEEL_SCHEMA_MAX_ERRORS 64
/* Subschemas applied inside one another during one validation. An instance nested as deeply as
 * keel/json.h allows (100), under a schema that recurses through $ref and an applicator or two
 * per level, needs up to about 500. A level takes under 1 KiB of stack (2 KiB under
 * AddressSanitizer): 512 levels need at most 512 KiB, well inside a thread's default 8 MiB. */
#define KEEL_SCHEMA_MAX_DEPTH 512
/* Steps one validation may take: this, plus KEEL_SCHEMA_WORK_PER_VALUE for every value (object,
 * array, string, number, boolean, null) in the instance. About a second of work at most. */
#define KEEL_SCHEMA_MAX_WORK       10000000
#define KEEL_SCHEMA_WORK_PER_VALUE 100
/* Bytes of one regular expression as written in the schema. */
#define KEEL_SCHEMA_MAX_PATTERN 4096
/* Distinct regular expressions in one compiled schema (each holds up to 64 KiB compiled). */
#define KEEL_SCHEMA_MAX_PATTERNS 1024
/* Memory PCRE2 may use while compiling one regular expression. */
#define KEEL_SCHEMA_REGEX_COMPILE_MEMORY (1u << 20)
/* One search of one string: PCRE2's match limit (backtracking steps), depth limit (nested
 * backtracking points) and heap limit (KiB of backtracking frames). */
#define KEEL_SCHEMA_REGEX_MATCH_LIMIT    1000000u
#define KEEL_SCHEMA_REGEX_DEPTH_LIMIT    100000u
#define KEEL_SCHEMA_REGEX_HEAP_LIMIT_KIB 8192u

/* A compiled schema: immutable after keel_schema_new, so it may be shared between threads. */
typedef struct keel_schema keel_schema;

/* One validation failure. */
typedef struct keel_schema_error {
    char *pointer; /* RFC 6901 JSON Pointer to the failing instance location ("" is the root) */
    char *keyword; /* the schema keyword that failed: "type", "required", "$ref", ... */
    char *reason;  /* a human-readable sentence, e.g. "expected integer, got string" */
} keel_schema_error;

/* The outcome of one validation. Owned by the caller; release with keel_schema_result_dispose. */
typedef struct keel_schema_result {
    bool valid;
    keel_schema_error *errors; /* count entries, in the order found; NULL when valid */
    size_t count;
    bool truncated; /* more than KEEL_SCHEMA_MAX_ERRORS errors: the rest were not kept */
} keel_schema_result;

/* The dialect of a schema that has no `$schema`. */
typedef enum keel_schema_dialect {
    KEEL_SCHEMA_DIALECT_DEFAULT = 0, /* 2020-12 */
    KEEL_SCHEMA_DRAFT7 = 7,
    KEEL_SCHEMA_DRAFT2020_12 = 2020,
} keel_schema_dialect;

/* A schema document that references may point to, known by an absolute URI (as if it had been
 * retrieved from there; its own root `$id`, if any, is a second name for it). */
typedef struct keel_schema_resource {
    const char *uri;
    const char *json;
} keel_schema_resource;

#define KEEL_SCHEMA_OPTIONS_VERSION 1

/* Options of keel_schema_new_with. Fill with keel_schema_options_init, then set fields. The
 * strings and resources are borrowed for the duration of the call only. */
typedef struct keel_schema_options {
    unsigned version;            /* KEEL_SCHEMA_OPTIONS_VERSION */
    keel_schema_dialect dialect; /* for a root without `$schema` */
    const char *base_uri;        /* absolute URI of the root document, or NULL (no base) */
    const keel_schema_resource *resources; /* more documents `$ref` may point into */
    size_t nresources;
} keel_schema_options;

/* Set *opts to the defaults. Fails with KEEL_EINVAL for a version this keel does not know. */
int keel_schema_options_init(keel_schema_options *opts, unsigned version);

/*
 * Parse and compile schema_json (a JSON text whose root is an object or a boolean; a repeated
 * member name keeps its last value, as JSON.parse does). A text that is not JSON, a known keyword
 * with a value of the wrong shape (e.g. "minLength": "3", an unknown type name, a regex that
 * does not compile), a refused keyword or dialect, a reference that does not resolve, or a cycle
 * of references that never moves into the instance fails with KEEL_EINVAL naming the keyword and
 * its location in the schema ("at #/properties/a").
 * On success *out owns a new schema: free it with keel_schema_free.
 */
int keel_schema_new(keel_schema **out, const char *schema_json, keel_error *err);

/* keel_schema_new with options (NULL: the defaults). */
int keel_schema_new_with(keel_schema **out, const char *schema_json,
                         const keel_schema_options *opts, keel_error *err);

/* Free a schema from keel_schema_new. NULL is allowed. */
void keel_schema_free(keel_schema *schema);

/*
 * Validate instance_json against the schema (a repeated member name keeps its last value).
 * Returns KEEL_OK when validation decided, with *out filled (valid or not; dispose it either
 * way). Otherwise *out is left empty and the return is KEEL_EINVAL (instance_json is not JSON),
 * KEEL_EEXHAUSTED (a limit listed above stopped it; err->retryable is false) or KEEL_ENOMEM.
 */
int keel_schema_validate(const keel_schema *schema, const char *instance_json,
                         keel_schema_result *out, keel_error *err);

/* keel_schema_validate of a parsed instance (borrowed; nested at most KEEL_JSON_MAX_DEPTH). */
int keel_schema_validate_tree(const keel_schema *schema, const cJSON *instance,
                              keel_schema_result *out, keel_error *err);

/* Free what *result points to and reset it to empty. NULL is allowed. */
void keel_schema_result_dispose(keel_schema_result *result);

#ifdef __cplusplus
}
#endif

#endif
