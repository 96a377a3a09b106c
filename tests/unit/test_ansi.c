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

static void test_ansi__colours(void)
{
    const char s[] = "\x1b[1;31mred\x1b[0m plain \x1b[38;5;196mx\x1b[m";

    expect(s, sizeof(s) - 1, "red plain x");
}

static void test_ansi__cursor_and_erase(void)
{
    const char s[] = "a\x1b[2Kb\x1b[10;20Hc\x1b[?25ld\x1b[?25h";

    expect(s, sizeof(s) - 1, "abcd");
}

static void test_ansi__osc_title_and_hyperlink(void)
{
    const char s[] = "\x1b]0;title\x07text \x1b]8;;http://x\x1b\\link"
                     "\x1b]8;;\x1b\\!";

    expect(s, sizeof(s) - 1, "text link!");
}

static void test_ansi__c1_csi_and_charset(void)
{
    const char s[] = "\xc2\x9b" "31mred\x1b(Bok\x1b=";

    expect(s, sizeof(s) - 1, "redok");
}

static void test_ansi__invalid_utf8_and_nul(void)
{
    const char s[] = "a\xff" "b\0c\xe2\x82";

    expect(s, sizeof(s) - 1, "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd"
                             "\xef\xbf\xbd");
}

static void test_ansi__keeps_unicode_text(void)
{
    const char s[] = "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\n";

    expect(s, sizeof(s) - 1, s);
}

static void test_ansi__unfinished_sequence_dropped(void)
{
    const char s[] = "ok\x1b[31";

    expect(s, sizeof(s) - 1, "ok");
}

int main(void)
{
    RUN(test_ansi__colours);
    RUN(test_ansi__cursor_and_erase);
    RUN(test_ansi__osc_title_and_hyperlink);
    RUN(test_ansi__c1_csi_and_charset);
    RUN(test_ansi__invalid_utf8_and_nul);
    RUN(test_ansi__keeps_unicode_text);
    RUN(test_ansi__unfinished_sequence_dropped);
    return check_done();
}
