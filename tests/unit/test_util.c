/* The helpers every module leans on: base64, SHA-256, escaping. */
#include "../check.h"
#include "nbcanvas/util.h"

TEST(util__escape_makes_one_printable_line)
{
    char out[64];

    util_escape(out, sizeof(out), "ok\n\x1b[31mred\\\x00\xff", 14);
    CHECK_STREQ(out, "ok\\n\\x1b[31mred\\\\\\x00\\xff");
    util_escape(out, 8, "abcdefghij", 10); /* cut to fit, terminated */
    CHECK_STREQ(out, "abcdefg");
    util_escape(out, 4, "\x01\x02", 2); /* never half an escape */
    CHECK_STREQ(out, "");
}

TEST(util__base64_strict_and_wrapped)
{
    char *out = NULL;
    size_t n = 0;

    CHECK(util_base64_decode(&out, &n, "aGk=", 4, false) == 0);
    CHECK(n == 2 && memcmp(out, "hi", 2) == 0);
    free(out);
    CHECK(util_base64_decode(&out, &n, "aGk", 3, false) == -1);
    CHECK(out == NULL);
    CHECK(util_base64_decode(&out, &n, "aG\nk=", 5, false) == -1);
    CHECK(util_base64_decode(&out, &n, "aG\nk=\n", 6, true) == 0);
    CHECK(n == 2 && memcmp(out, "hi", 2) == 0);
    free(out);
    CHECK(util_base64_decode(&out, &n, "", 0, false) == 0 && n == 0);
    free(out);
    CHECK(util_base64_decode(&out, &n, "a*==", 4, false) == -1);
}

TEST(util__sha256_known_answer)
{
    char hex[65];

    util_sha256_hex(hex, "abc", 3);
    CHECK_STREQ(hex, "ba7816bf8f01cfea414140de5dae2223"
                     "b00361a396177a9cb410ff61f20015ad");
}
