/*
 * keel/json.h - JSON from outside, read strictly and printed back unchanged.
 *
 * Every JSON text keel takes from outside (a payload, a history file, a model's answer, a tool's
 * result, a schema) goes through keel_json_parse, keel_json_check or the pull reader
 * (keel_json_reader, below), and every tree keel prints goes through keel_json_print. Together
 * they guarantee:
 *
 *   - the text is RFC 8259 JSON and nothing more: one value, no comments, no trailing commas, no
 *     raw control characters inside strings, no leading zeros, no NaN;
 *   - strings are valid UTF-8 (no overlong forms, no encoded surrogates, nothing past U+10FFFF),
 *     \u escapes name whole characters (a surrogate pair or none), and no string holds U+0000,
 *     raw or escaped, since a C string would end there and the rest would be lost;
 *   - nesting is at most KEEL_JSON_MAX_DEPTH arrays and objects, so no input exhausts the stack;
 *   - an object names each member once (unless KEEL_JSON_LAST_WINS says otherwise), since readers
 *     that take the first of two names and readers that take the last would disagree;
 *   - a number keeps the text it was written with: 9007199254740993, 12345678901234567891 and
 *     0.30000000000000004 print back exactly as they came, though cJSON's valuedouble holds only
 *     the nearest double. The text lives in the item's valuestring (cJSON frees and duplicates it
 *     with the item); keel_json_print uses it as long as it still denotes valuedouble, so a
 *     number changed with cJSON_SetNumberValue prints its new value.
 *
 * A refusal is KEEL_EINVAL with a message that names `what` (e.g. "input", "the model's answer"),
 * the byte offset, the JSON Pointer of the value being read, and what was wrong, e.g.
 *   input is not valid JSON: at byte 24 (/approver): a NUL character (0x00) inside a string
 * Texts nested too deeply say "nested deeper than 100 levels" rather than "not valid JSON".
 */
#ifndef KEEL_JSON_H
#define KEEL_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Arrays and objects nested deeper than this are refused ([[1]] is 2 deep). */
#define KEEL_JSON_MAX_DEPTH 100

/* Texts longer than this are refused before they are read (256 MiB: Temporal's own limits on a
 * payload, 2 MiB, and a history, 50 MiB, are far below it). */
#define KEEL_JSON_MAX_TEXT ((size_t)256 << 20)

/* keel_json_parse flags. */
enum keel_json_flags {
    KEEL_JSON_STRICT = 0,
    /* A repeated member name is allowed and the last one counts, as JavaScript's JSON.parse
     * reads it (the earlier members of that name are dropped from the tree). Without this flag
     * a repeated name is refused. */
    KEEL_JSON_LAST_WINS = 1 << 0,
    /* "\u0000" is read as the two bytes C0 80 (the "modified UTF-8" Java uses), so that the C
     * string goes on past it and "a\u0000b" differs from "a"; keel_json_print writes C0 80 back
     * as \u0000. Only for readers that compare strings and know of it (the schema validator,
     * whose test suite has such strings); a raw NUL byte is refused all the same. */
    KEEL_JSON_KEEP_NUL = 1 << 1,
};

/* How KEEL_JSON_KEEP_NUL spells U+0000 inside a string. */
#define KEEL_JSON_NUL "\xc0\x80"

/*
 * Parse text[0..len) (one JSON value, whitespace around it allowed; text need not be
 * NUL-terminated). On success *out owns a new tree: free it with cJSON_Delete. On failure *out
 * is NULL and err says why, naming `what` (NULL reads as "the JSON text").
 */
int keel_json_parse(const char *text, size_t len, unsigned flags, const char *what, cJSON **out,
                    keel_error *err);

/* keel_json_parse of a NUL-terminated text (NULL is refused as "no JSON text"). */
int keel_json_parse_str(const char *text, unsigned flags, const char *what, cJSON **out,
                        keel_error *err);

/* The tree of a NUL-terminated text by keel_json_parse's strict rules, or NULL when text is
 * NULL, refused or memory ran out: for texts keel wrote itself or checked already, where a
 * refusal needs no explanation. Free with cJSON_Delete. */
cJSON *keel_json_from(const char *text);

/* Check text[0..len) by keel_json_parse's rules without building a tree. */
int keel_json_check(const char *text, size_t len, unsigned flags, const char *what,
                    keel_error *err);

/*
 * Reading piece by piece: a pull reader over text[0..len) that enforces exactly the rules of
 * keel_json_parse (KEEL_JSON_STRICT) and fails with the same messages, without building a tree,
 * for decoders that fill their own structures as they read (protojson's keel_protojson_decode).
 *
 * The caller walks the value: keel_json_peek says what comes next; a string or number is read
 * whole; an object or array is entered and then walked member by member (element by element)
 * until next_* reports *more == false, which leaves it; keel_json_skip reads (and checks) one
 * whole value of any kind, including true, false and null. Names repeated within one object are
 * refused as keel_json_parse refuses them. After the top value, keel_json_reader_finish refuses
 * anything but whitespace. Every call returns false (KEEL_JSON_BAD for peek) once the read has
 * failed; err (given to open, borrowed until close) then holds the message and
 * keel_json_reader_code the code. The text is borrowed until close.
 */
typedef struct keel_json_reader keel_json_reader;

typedef enum keel_json_kind {
    KEEL_JSON_BAD = 0, /* not a value: the read has failed */
    KEEL_JSON_OBJECT,
    KEEL_JSON_ARRAY,
    KEEL_JSON_STRING,
    KEEL_JSON_NUMBER,
    KEEL_JSON_TRUE,
    KEEL_JSON_FALSE,
    KEEL_JSON_NULL,
} keel_json_kind;

/* A new reader (close it with keel_json_reader_close); refuses NULL and over-long texts. */
int keel_json_reader_open(const char *text, size_t len, const char *what, keel_json_reader **out,
                          keel_error *err);
void keel_json_reader_close(keel_json_reader *jr);
/* KEEL_OK while the read has not failed, else its code. */
int keel_json_reader_code(const keel_json_reader *jr);
/* The byte offset of the next character to read. */
size_t keel_json_reader_offset(const keel_json_reader *jr);

keel_json_kind keel_json_peek(keel_json_reader *jr);
bool keel_json_skip(keel_json_reader *jr);
/* The string's decoded text in *s (NUL-terminated, *len bytes), owned by the reader and valid
 * until the next keel_json_read_string. */
bool keel_json_read_string(keel_json_reader *jr, const char **s, size_t *len);
/* The number's value, and its text as written (borrowed from the text, not NUL-terminated). */
bool keel_json_read_number(keel_json_reader *jr, double *value, const char **text, size_t *len);
bool keel_json_enter_object(keel_json_reader *jr);
bool keel_json_enter_array(keel_json_reader *jr);
/* The next element of the array entered last: *more is false when the array ended (and is left);
 * else the element is to be read next. */
bool keel_json_next_element(keel_json_reader *jr, bool *more);
/* The next member of the object entered last: *more is false when the object ended (and is
 * left); else *name is the decoded name (NUL-terminated, *len bytes, owned by the reader and
 * valid until the next member name is read), *raw its text as written between the quotes
 * (borrowed from the text), and its value is to be read next. */
bool keel_json_next_member(keel_json_reader *jr, bool *more, const char **name, size_t *len,
                           const char **raw, size_t *raw_len);
/* Like keel_json_enter_object, for a caller that refuses repeated member names itself, as a
 * decoder that marks the fields it has filled can for nothing: the reader keeps no set of this
 * object's names. Right after keel_json_next_member gives a name, the caller either hands it to
 * keel_json_member_unclaimed (a name it keeps no mark for: the reader records it and refuses it
 * if it came before) or, when its own marks show the name repeated, fails the read with
 * keel_json_member_repeated. Both return false when the read has failed, or when the caller is
 * no longer at that member (something besides whitespace was read since). */
bool keel_json_enter_object_unchecked(keel_json_reader *jr);
bool keel_json_member_unclaimed(keel_json_reader *jr);
/* Fails the read with keel_json_enter_object's words for a repeated name; returns false. */
bool keel_json_member_repeated(keel_json_reader *jr);
bool keel_json_reader_finish(keel_json_reader *jr);

/*
 * Print a tree compactly (keel_json_print) or indented by two spaces (keel_json_print_pretty).
 * Numbers print with the text they were parsed from, or, for numbers made in code, the
 * shortest text that reads back as the same double (integers without an exponent up to 2^63).
 * A number that is not finite prints as null, as JSON has no other spelling for it.
 * Returns a new NUL-terminated text the caller frees with cJSON_free, or NULL when out of memory.
 */
char *keel_json_print(const cJSON *item);
char *keel_json_print_pretty(const cJSON *item);

/*
 * A number item whose text is kept exactly (e.g. a PostgreSQL numeric a tool returns), or NULL
 * when text is not a JSON number or memory ran out. Free with cJSON_Delete (or let its parent).
 */
cJSON *keel_json_number_from_text(const char *text);

/* The text a number item prints with (borrowed from the item, or written into buf[32]). */
const char *keel_json_number_text(const cJSON *item, char buf[32]);

#ifdef __cplusplus
}
#endif

#endif
