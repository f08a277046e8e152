/* src/util/process.c: the memory settings keel's programs start with (keel/process.h). */
#include <check.h>
#include <stdlib.h>

#include "keel/error.h"
#include "keel/process.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

/* glibc's malloc takes the setting; AddressSanitizer's allocator (make SAN=1) takes none. */
#if defined(__GLIBC__) && !defined(SANITIZED)
#define EXPECTED KEEL_OK
#else
#define EXPECTED KEEL_EUNIMPLEMENTED
#endif

START_TEST(memory_setup_works_and_leaves_an_operators_choice)
{
    unsetenv("GLIBC_TUNABLES");
    unsetenv("MALLOC_ARENA_MAX");
    ck_assert_int_eq(keel_process_memory_setup(), EXPECTED);
    setenv("MALLOC_ARENA_MAX", "4", 1); /* the operator's: left alone, which is fine */
    ck_assert_int_eq(keel_process_memory_setup(), KEEL_OK);
    unsetenv("MALLOC_ARENA_MAX");
    void *p = malloc(100); /* malloc still works after it */
    ck_assert_ptr_nonnull(p);
    free(p);
}
END_TEST

Suite *process_suite(void)
{
    Suite *s = suite_create("process");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, memory_setup_works_and_leaves_an_operators_choice);
    suite_add_tcase(s, tc);
    return s;
}
