#include "../check.h"
#include "nbcanvas/tarball.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>

TEST(tarball__round_trip)
{
    struct tar_entry in[] = {{"a.txt", "hello", 5},
                             {"data/sub/b.csv", "x,y\n", 4}};
    struct buf tar = BUF_INIT(1 << 20);
    struct tar_files out = TAR_FILES_INIT;
    const struct tar_entry *b;

    CHECK(tarball_write(&tar, in, 2, 1000, 1000, NULL) == 0);
    CHECK(tarball_read(&out, tar.data, tar.len, NULL, 10, 1 << 20, NULL) == 0);
    CHECK(out.n == 2);
    b = tarball_find(&out, "data/sub/b.csv");
    CHECK(b && b->len == 4 && memcmp(b->data, "x,y\n", 4) == 0);
    CHECK(tarball_find(&out, "a.txt") != NULL);
    tarball_files_release(&out);
    buf_release(&tar);
}

static la_ssize_t to_buf(struct archive *a, void *ctx, const void *d, size_t n)
{
    (void)a;
    buf_append(ctx, d, n);
    return (la_ssize_t)n;
}

/* A hostile archive: a symlink to a host path, a hard link, a device, a
 * name climbing out, and one honest file. */
static void hostile_tar(struct buf *out)
{
    struct archive *a = archive_write_new();
    struct archive_entry *e;

    archive_write_set_format_pax_restricted(a);
    archive_write_open2(a, out, NULL, to_buf, NULL, NULL);

    e = archive_entry_new();
    archive_entry_set_pathname(e, "out/index.html");
    archive_entry_set_filetype(e, AE_IFLNK);
    archive_entry_set_symlink(e, "/etc/shadow");
    archive_write_header(a, e);
    archive_entry_free(e);

    e = archive_entry_new();
    archive_entry_set_pathname(e, "out/hard");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_hardlink(e, "/etc/passwd");
    archive_write_header(a, e);
    archive_entry_free(e);

    e = archive_entry_new();
    archive_entry_set_pathname(e, "out/dev");
    archive_entry_set_filetype(e, AE_IFCHR);
    archive_write_header(a, e);
    archive_entry_free(e);

    e = archive_entry_new();
    archive_entry_set_pathname(e, "out/../../etc/x");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_size(e, 1);
    archive_write_header(a, e);
    archive_write_data(a, "x", 1);
    archive_entry_free(e);

    e = archive_entry_new();
    archive_entry_set_pathname(e, "out/status.json");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_size(e, 2);
    archive_write_header(a, e);
    archive_write_data(a, "{}", 2);
    archive_entry_free(e);

    archive_write_close(a);
    archive_write_free(a);
}

TEST(tarball__only_plain_files_are_kept)
{
    struct buf tar = BUF_INIT(1 << 20);
    struct tar_files out = TAR_FILES_INIT;

    hostile_tar(&tar);
    CHECK(tarball_read(&out, tar.data, tar.len, "out/", 10, 1 << 20, NULL) ==
          0);
    CHECK(out.n == 1);
    CHECK(tarball_find(&out, "status.json") != NULL);
    CHECK(tarball_find(&out, "index.html") == NULL);
    CHECK(out.skipped == 4);
    tarball_files_release(&out);
    buf_release(&tar);
}

TEST(tarball__size_cap)
{
    struct tar_entry in[] = {{"big", "0123456789", 10}};
    struct buf tar = BUF_INIT(1 << 20);
    struct tar_files out = TAR_FILES_INIT;
    struct err err = ERR_INIT;

    tarball_write(&tar, in, 1, 0, 0, NULL);
    CHECK(tarball_read(&out, tar.data, tar.len, NULL, 10, 5, &err) ==
          ERR_OUTPUT);
    tarball_files_release(&out);
    buf_release(&tar);
}

TEST(tarball__garbage_is_an_error)
{
    struct tar_files out = TAR_FILES_INIT;
    char junk[1024];

    memset(junk, 'z', sizeof(junk));
    CHECK(tarball_read(&out, junk, sizeof(junk), NULL, 10, 1 << 20, NULL) < 0);
    tarball_files_release(&out);
}

TEST(tarball__gzip_round_trip)
{
    struct buf packed = BUF_INIT((size_t)-1);
    char text[8000], back[9000];
    struct archive *a = archive_read_new();
    struct archive_entry *e;
    la_ssize_t got = 0, n;
    size_t i;

    for (i = 0; i < sizeof(text); i++)
        text[i] = "nbcanvas "[i % 9];
    CHECK(tarball_gzip(&packed, text, sizeof(text), NULL) == 0);
    CHECK(packed.len > 18 && packed.len < sizeof(text) / 4);
    CHECK((unsigned char)packed.data[0] == 0x1f &&
          (unsigned char)packed.data[1] == 0x8b);
    archive_read_support_filter_gzip(a);
    archive_read_support_format_raw(a);
    CHECK(archive_read_open_memory(a, packed.data, packed.len) == ARCHIVE_OK);
    CHECK(archive_read_next_header(a, &e) == ARCHIVE_OK);
    while ((n = archive_read_data(a, back + got, sizeof(back) - (size_t)got)) >
           0)
        got += n;
    CHECK(got == (la_ssize_t)sizeof(text) &&
          memcmp(back, text, sizeof(text)) == 0);
    archive_read_free(a);
    buf_release(&packed);
}

TEST(tarball__gunzip_round_trip_and_its_cap)
{
    size_t n = 1 << 20;
    char *zeros = calloc(1, n);
    struct buf packed = BUF_INIT((size_t)-1), plain = BUF_INIT((size_t)-1);
    struct buf small = BUF_INIT(64 << 10); /* a bomb's target */
    struct err err = ERR_INIT;

    CHECK(tarball_gzip(&packed, zeros, n, &err) == 0);
    CHECK(packed.len < n / 100); /* a MiB of zeros packs to a few KiB */
    CHECK(tarball_gunzip(&plain, packed.data, packed.len, &err) == 0);
    CHECK(plain.len == n && memcmp(plain.data, zeros, n) == 0);
    /* unpacking stops at the buffer's cap: no memory for a gzip bomb */
    CHECK(tarball_gunzip(&small, packed.data, packed.len, &err) ==
          ERR_INTERNAL);
    CHECK(small.len <= 64 << 10);
    /* not gzip at all */
    CHECK(tarball_gunzip(&plain, "not gzip", 8, &err) == ERR_INTERNAL);
    buf_release(&packed);
    buf_release(&plain);
    buf_release(&small);
    free(zeros);
}
