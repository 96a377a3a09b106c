/* Zip entry names that every unzip tool keeps inside its folder. */
#include "../check.h"
#include "nbcanvas/bundle.h"

static void check_safe(const char *name, const char *want, bool want_changed)
{
    bool changed = !want_changed;
    char *got = bundle_safe_name(name, &changed);

    CHECK_STREQ(got, want);
    CHECK(changed == want_changed);
    free(got);
}

TEST(bundle__safe_names)
{
    check_safe("artifacts/plain.csv", "artifacts/plain.csv", false);
    check_safe("artifacts/caf\xc3\xa9 \xe2\x82\xac.txt",
               "artifacts/caf\xc3\xa9 \xe2\x82\xac.txt", false);
    check_safe("artifacts/..\\evil.bat", "artifacts/.._evil.bat", true);
    check_safe("artifacts/a\x01"
               "b\x7f.txt",
               "artifacts/a_b_.txt", true);
    check_safe("artifacts/\x1b[31mred", "artifacts/_[31mred", true);
    /* not UTF-8: a lone continuation byte, an overlong slash, a C1 code */
    check_safe("artifacts/\x80x", "artifacts/_x", true);
    check_safe("artifacts/\xc0\xaf", "artifacts/__", true);
    check_safe("artifacts/\xc2\x85", "artifacts/__", true);
    check_safe("artifacts/\xe2\x82", "artifacts/__", true); /* cut short */
}

TEST(bundle__zip_holds_what_it_was_given)
{
    struct bundle_part parts[] = {{"a.txt", "hello", 5},
                                  {"dir/b.bin", "\0\1\2", 3}};
    struct err err = ERR_INIT;
    char *zip = NULL;
    size_t len = 0;

    CHECK(bundle_zip(&zip, &len, parts, 2, &err) == 0);
    CHECK(len > 22 && memcmp(zip, "PK\x03\x04", 4) == 0);
    CHECK(memmem(zip, len, "dir/b.bin", 9) != NULL);
    free(zip);
}

TEST(bundle__a_zip_reads_back_as_it_was_written)
{
    struct bundle_part parts[] = {{"index.html", "<p>page</p>", 11},
                                  {"artifacts/out.csv", "a,b\n1,2\n", 8},
                                  {"empty", "", 0}};
    struct tar_files files = TAR_FILES_INIT;
    const struct tar_entry *e;
    char *zip = NULL;
    size_t len = 0;

    CHECK(bundle_zip(&zip, &len, parts, 3, NULL) == 0);
    CHECK(bundle_unzip(&files, zip, len, 1 << 20, NULL) == 0);
    CHECK(files.n == 3);
    e = tarball_find(&files, "artifacts/out.csv");
    CHECK(e && e->len == 8 && memcmp(e->data, "a,b\n1,2\n", 8) == 0);
    tarball_files_release(&files);
    /* past the cap, or not a zip: refused */
    CHECK(bundle_unzip(&files, zip, len, 10, NULL) < 0);
    tarball_files_release(&files);
    CHECK(bundle_unzip(&files, "not a zip", 9, 1 << 20, NULL) < 0);
    tarball_files_release(&files);
    free(zip);
}
