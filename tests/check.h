#ifndef NBCANVAS_TESTS_CHECK_H
#define NBCANVAS_TESTS_CHECK_H

/*
 * A minimal test harness: CHECK records a failure with its place and goes
 * on; RUN runs a test function; check_done prints the plain closing line
 * "N passed, N failed" and gives the exit status.
 */

#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_passed, check_failed;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__,        \
                    __LINE__, #cond);                                     \
            check_failures++;                                             \
        }                                                                 \
    } while (0)

#define CHECK_STREQ(a, b)                                                 \
    do {                                                                  \
        const char *check_a_ = (a), *check_b_ = (b);                      \
        if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {  \
            fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__,        \
                    __LINE__, check_a_ ? check_a_ : "(null)",             \
                    check_b_ ? check_b_ : "(null)");                      \
            check_failures++;                                             \
        }                                                                 \
    } while (0)

#define RUN(test)                                                         \
    do {                                                                  \
        int check_before_ = check_failures;                               \
        test();                                                           \
        if (check_failures == check_before_) {                            \
            check_passed++;                                               \
        } else {                                                          \
            check_failed++;                                               \
            fprintf(stderr, "FAIL %s\n", #test);                          \
        }                                                                 \
    } while (0)

static inline int check_done(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
