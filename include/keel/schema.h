/*
 * keel/schema.h - JSON Schema validation of tool arguments (and any other JSON a model produces).
 *
 * Supports draft 7 for type, properties, required, additionalProperties, patternProperties, enum,
 * const, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, minLength, maxLength,
 * pattern, items (schema or array form), additionalItems, minItems, maxItems, uniqueItems,
 * contains, minProperties, maxProperties, allOf, anyOf, oneOf, not, if/then/else, definitions and
 * local $ref, and boolean schemas; plus the 2020-12 spellings `$defs` and `prefixItems` (with
 * `items` applying to the rest). Unknown keywords are ignored. In draft 7 a `$ref` makes its
 * sibling keywords ignored; when the root's `$schema` names 2019-09 or 2020-12 they apply as well.
 *
 * Regular expressions (pattern, patternProperties) are POSIX extended expressions searched
 * unanchored, with the ECMA-262 shorthands \d \D \w \W \s \S translated; other ECMA-only syntax
 * (lookaround, lazy quantifiers, \p{...}) is rejected when the schema is compiled.
 *
 * The instance is untrusted: at most KEEL_SCHEMA_MAX_ERRORS errors are collected and evaluation
 * stops KEEL_SCHEMA_MAX_DEPTH subschemas deep with an error instead of exhausting the stack.
 */
#ifndef KEEL_SCHEMA_H
#define KEEL_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_SCHEMA_MAX_ERRORS 64
#define KEEL_SCHEMA_MAX_DEPTH  64

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

/*
 * Parse and compile schema_json (a JSON text whose root is an object or a boolean). A text that
 * is not JSON, or a known keyword with a value of the wrong shape (e.g. "minLength": "3", an
 * unknown type name, a regex that does not compile) fails with KEEL_EINVAL naming the keyword and
 * its location in the schema. On success *out owns a new schema: free it with keel_schema_free.
 */
int keel_schema_new(keel_schema **out, const char *schema_json, keel_error *err);

/* Free a schema from keel_schema_new. NULL is allowed. */
void keel_schema_free(keel_schema *schema);

/*
 * Validate instance_json against the schema. Returns KEEL_OK when validation ran, with *out
 * filled (valid or not; dispose it either way). Fails with KEEL_EINVAL, leaving *out empty, when
 * instance_json is not JSON or the schema cannot be applied (a remote or unresolvable $ref,
 * which the message names); KEEL_ENOMEM when out of memory.
 */
int keel_schema_validate(const keel_schema *schema, const char *instance_json,
                         keel_schema_result *out, keel_error *err);

/* Free what *result points to and reset it to empty. NULL is allowed. */
void keel_schema_result_dispose(keel_schema_result *result);

#ifdef __cplusplus
}
#endif

#endif
