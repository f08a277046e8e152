/* keel/duration.h - durations as people and Temporal write them ("72h", "1h30m", "1.5s"). */
#ifndef KEEL_DURATION_H
#define KEEL_DURATION_H

#include <stddef.h>
#include <stdint.h>

#include "keel/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Parse a duration: one or more <number><unit> parts, units ms, s, m, h, d; the number may have
 * a fraction ("1.5h"). A bare "0" is zero. Result in milliseconds; overflow, a negative value,
 * a missing unit or trailing junk fail with KEEL_EINVAL naming the text.
 */
int keel_duration_parse(const char *text, int64_t *out_ms, keel_error *err);

/* Format milliseconds as the shortest exact "72h" / "1h30m" / "1.5s" form; "0s" for zero.
 * Writes at most bufsz bytes (NUL included) and returns buf. */
char *keel_duration_format(int64_t ms, char *buf, size_t bufsz);

#ifdef __cplusplus
}
#endif

#endif
