#ifndef NBCANVAS_TESTS_CHECK_H
#define NBCANVAS_TESTS_CHECK_H

/*
 * A minimal test harness. A test is written once, as
 *
 *     TEST(buf__append_and_cap) { CHECK(...); }
 *
 * and registers itself before main runs (a constructor), so no list of
 * tests is kept anywhere else; this header supplies main, which runs every
 * registered test in the order of the file, or only those whose names
 * contain argv[1]. CHECK records a failure with its place and goes on; the
 * run ends with the plain closing line "N passed, N failed" and exits 1 if
 * any test failed, or if none ran.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_MAX_TESTS 256

static int check_failures;
static int check_passed, check_failed;
static struct {
    const char *name;
    void (*fn)(void);
} check_tests[CHECK_MAX_TESTS];
static int check_ntests;

static inline void check_register(const char *name, void (*fn)(void))
{
    if (check_ntests == CHECK_MAX_TESTS) {
        fprintf(stderr, "check.h: more than %d tests\n", CHECK_MAX_TESTS);
        abort();
    }
    check_tests[check_ntests].name = name;
    check_tests[check_ntests].fn = fn;
    check_ntests++;
}

#define TEST(name)                                                            \
    static void test_##name(void);                                            \
    __attribute__((constructor)) static void check_register_##name(void)      \
    {                                                                         \
        check_register(#name, test_##name);                                   \
    }                                                                         \
    static void test_##name(void)

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,  \
                    #cond);                                                   \
            check_failures++;                                                 \
        }                                                                     \
    } while (0)

#define CHECK_STREQ(a, b)                                                     \
    do {                                                                      \
        const char *check_a_ = (a), *check_b_ = (b);                          \
        if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {      \
            fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,  \
                    check_a_ ? check_a_ : "(null)",                           \
                    check_b_ ? check_b_ : "(null)");                          \
            check_failures++;                                                 \
        }                                                                     \
    } while (0)

int main(int argc, char **argv)
{
    int i;

    for (i = 0; i < check_ntests; i++) {
        int before = check_failures;

        if (argc > 1 && !strstr(check_tests[i].name, argv[1]))
            continue;
        check_tests[i].fn();
        if (check_failures == before) {
            check_passed++;
        } else {
            check_failed++;
            fprintf(stderr, "FAIL %s\n", check_tests[i].name);
        }
    }
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed || check_passed == 0 ? 1 : 0;
}

#endif
