#include "../check.h"
#include "nbcanvas/buf.h"

#include <stdlib.h>

TEST(buf__append_and_cap)
{
    struct buf b = BUF_INIT(8);

    CHECK(buf_puts(&b, "abc") == 0);
    CHECK(buf_printf(&b, "%d", 42) == 0);
    CHECK_STREQ(b.data, "abc42");
    CHECK(buf_puts(&b, "xyzw") == -1);
    CHECK(b.overflow);
    CHECK(b.len == 8);
    CHECK_STREQ(b.data, "abc42xyz");
    buf_release(&b);
}

TEST(buf__detach_hands_over)
{
    struct buf b = BUF_INIT(1 << 20);
    size_t n;
    char *s;

    buf_printf(&b, "%0300d", 7); /* longer than the small printf buffer */
    s = buf_detach(&b, &n);
    CHECK(n == 300);
    CHECK(s[299] == '7');
    CHECK(b.len == 0);
    CHECK_STREQ(b.data, "");
    free(s);
}
