/* options (internal) - what the library needs beyond keel/options.h. */
#ifndef KEEL_CLIENT_OPTIONS_H
#define KEEL_CLIENT_OPTIONS_H

#include "keel/options.h"

/*
 * Copy a caller's options of any version keel takes into *out, a struct of the current version:
 * a version 1 struct is read only as far as it goes, the later fields left NULL/0. Returns false
 * (and leaves *out zeroed) for NULL or an unknown version.
 */
bool keel_connect_options_upgrade(const keel_connect_options *in, keel_connect_options *out);

#endif
