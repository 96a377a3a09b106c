#include "../check.h"
#include "nbcanvas/ansi.h"

#include <stdlib.h>

static void expect(const char *in, size_t len, const char *want)
{
    size_t n;
    char *out = ansi_clean(in, len, &n);

    CHECK_STREQ(out, want);
    CHECK(n == strlen(want));
    free(out);
}

TEST(ansi__colours)
{
    const char s[] = "\x1b[1;31mred\x1b[0m plain \x1b[38;5;196mx\x1b[m";

    expect(s, sizeof(s) - 1, "red plain x");
}

TEST(ansi__cursor_and_erase)
{
    const char s[] = "a\x1b[2Kb\x1b[10;20Hc\x1b[?25ld\x1b[?25h";

    expect(s, sizeof(s) - 1, "abcd");
}

TEST(ansi__osc_title_and_hyperlink)
{
    const char s[] = "\x1b]0;title\x07text \x1b]8;;http://x\x1b\\link"
                     "\x1b]8;;\x1b\\!";

    expect(s, sizeof(s) - 1, "text link!");
}

TEST(ansi__c1_csi_and_charset)
{
    const char s[] = "\xc2\x9b"
                     "31mred\x1b(Bok\x1b=";

    expect(s, sizeof(s) - 1, "redok");
}

TEST(ansi__invalid_utf8_and_nul)
{
    const char s[] = "a\xff"
                     "b\0c\xe2\x82";

    expect(s, sizeof(s) - 1,
           "a\xef\xbf\xbd"
           "b\xef\xbf\xbd"
           "c\xef\xbf\xbd"
           "\xef\xbf\xbd");
}

TEST(ansi__keeps_unicode_text)
{
    const char s[] = "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\n";

    expect(s, sizeof(s) - 1, s);
}

TEST(ansi__unfinished_sequence_dropped)
{
    const char s[] = "ok\x1b[31";

    expect(s, sizeof(s) - 1, "ok");
}
