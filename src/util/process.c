/* process - the process-wide memory settings of keel's programs (keel/process.h). */
#define _GNU_SOURCE
#include "keel/process.h"

#include <stdlib.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "keel/error.h"

int keel_process_memory_setup(void)
{
#ifdef __GLIBC__
    const char *env = getenv("MALLOC_ARENA_MAX"), *tunables = getenv("GLIBC_TUNABLES");
    if ((env != NULL && env[0] != '\0') || (tunables != NULL && tunables[0] != '\0'))
        return KEEL_OK; /* the operator has chosen */
    return mallopt(M_ARENA_MAX, KEEL_PROCESS_MALLOC_ARENAS) == 1 ? KEEL_OK : KEEL_EUNIMPLEMENTED;
#else
    return KEEL_EUNIMPLEMENTED;
#endif
}
