/*
 * src/schema/regex.h - ECMA-262 regular expressions (as JSON Schema's pattern and
 * patternProperties use them) on PCRE2.
 *
 * A pattern is read as JavaScript reads `new RegExp(pattern, "u")`: over Unicode code points,
 * with \d \w \b ASCII-only, \s the JavaScript white space and line terminators, `.` any code
 * point but a line terminator, `$` only at the very end, \uXXXX \u{X..} \xXX \cX escapes,
 * \p{..} / \P{..} with ECMA-262's property names, lookahead, lookbehind, lazy quantifiers,
 * named groups and backreferences. What JavaScript refuses in that mode is refused here too
 * (\a \Z \A \z, possessive quantifiers, atomic groups, inline flags, (?#..), lone { } ], a
 * quantifier on nothing or on an assertion, identity escapes of letters, a backreference to a
 * group that does not exist, ...). The pattern is translated to PCRE2 syntax (see regex.c) and
 * compiled in UTF mode without PCRE2_UCP, so PCRE2's own \d \w \b stay ASCII as JavaScript's.
 *
 * Limits (the values and their error texts are in keel/schema.h): the pattern's length, the
 * memory PCRE2 may use to compile it, and per search the match, depth and heap limits. A
 * search that hits a limit is an error, not a "no match".
 *
 * Known differences from JavaScript, each refused when compiling rather than matched wrongly:
 * lookbehind must have a bounded length (PCRE2 10.42), quantifier bounds above 65535, group
 * names outside [A-Za-z0-9_], and the ES2025 modifiers (?i:...). A lone surrogate escape
 * (\uD800 with no pair) is accepted and matches nothing: keel's strings are UTF-8 and hold no
 * surrogates.
 *
 * A compiled regex is immutable and may be shared between threads; each thread searching it
 * brings its own keel_regex_scratch.
 */
#ifndef KEEL_SCHEMA_REGEX_H
#define KEEL_SCHEMA_REGEX_H

#include <stdbool.h>
#include <stddef.h>

#include "keel/error.h"

typedef struct keel_regex keel_regex;

/* Per-thread match state, reused from one search to the next. Starts as NULL; free it with
 * keel_regex_scratch_free. */
typedef struct keel_regex_scratch keel_regex_scratch;

/*
 * Compile pattern (NUL-terminated UTF-8). On success *out owns a new regex (free it with
 * keel_regex_free). On failure returns KEEL_EINVAL (a pattern JavaScript refuses, or one over a
 * limit) or KEEL_ENOMEM, with why[0..whysz) saying what was wrong, e.g.
 * "invalid escape \a at offset 3".
 */
int keel_regex_compile(keel_regex **out, const char *pattern, char *why, size_t whysz);

/* Free a regex. NULL is allowed. */
void keel_regex_free(keel_regex *re);

/*
 * Search subject[0..len) (valid UTF-8) for a match anywhere in it, as JSON Schema asks.
 * Returns 1 when it matches, 0 when it does not; KEEL_EEXHAUSTED when the search hit the match,
 * depth or heap limit, KEEL_ENOMEM when memory ran out, KEEL_EINVAL when the subject is not
 * UTF-8; then why[0..whysz) names the limit. *scratch is created on first use.
 */
int keel_regex_search(const keel_regex *re, const char *subject, size_t len,
                      keel_regex_scratch **scratch, char *why, size_t whysz);

/* Free a scratch from keel_regex_search. NULL is allowed. */
void keel_regex_scratch_free(keel_regex_scratch *scratch);

#endif
