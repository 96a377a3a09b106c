#include "../check.h"
#include "nbcanvas/bundle.h"
#include "nbcanvas/results.h"

#include <stdlib.h>
#include <zip.h>

static const char *nb_text =
    "{\"cells\": ["
    "{\"cell_type\": \"markdown\", \"source\": \"# t\"},"
    "{\"cell_type\": \"code\", \"execution_count\": 1, \"outputs\": ["
    " {\"output_type\": \"stream\", \"name\": \"stdout\", \"text\":"
    "  [\"\\u001b[31mred\\u001b[0m\\n\", \"b\"]},"
    " {\"output_type\": \"display_data\", \"metadata\": {}, \"data\":"
    "  {\"image/png\": \"aGVs\\nbG8=\\n\", \"text/plain\": [\"<Figure>\"]}},"
    " {\"output_type\": \"display_data\", \"metadata\": {}, \"data\":"
    "  {\"image/svg+xml\": [\"<svg>\", \"</svg>\"]}}]}]}";

TEST(results__cells_json)
{
    json_t *nb = json_loads(nb_text, 0, NULL);
    json_t *cells = results_cells_json(nb), *c, *outs;

    CHECK(json_array_size(cells) == 1);
    c = json_array_get(cells, 0);
    CHECK(json_integer_value(json_object_get(c, "index")) == 1);
    outs = json_object_get(c, "outputs");
    CHECK_STREQ(
        json_string_value(json_object_get(json_array_get(outs, 0), "text")),
        "red\nb");
    CHECK_STREQ(
        json_string_value(json_object_get(
            json_object_get(json_array_get(outs, 1), "data"), "text/plain")),
        "<Figure>");
    json_decref(cells);
    json_decref(nb);
}

TEST(results__images_as_files)
{
    json_t *nb = json_loads(nb_text, 0, NULL);
    struct tar_files f = TAR_FILES_INIT;

    results_images(&f, nb);
    CHECK(f.n == 2);
    CHECK_STREQ(f.v[0].name, "cell1_output1.png");
    CHECK(f.v[0].len == 5 && memcmp(f.v[0].data, "hello", 5) == 0);
    CHECK_STREQ(f.v[1].name, "cell1_output2.svg");
    CHECK_STREQ(f.v[1].data, "<svg></svg>");
    tarball_files_release(&f);
    json_decref(nb);
}

TEST(results__cell_error)
{
    json_t *st = json_loads(
        "{\"status\": \"cell_error\", \"cell\": 3, "
        "\"ename\": \"ValueError\", \"evalue\": \"bad\","
        " \"traceback\": [\"\\u001b[0;31mline\\u001b[0m\"]}",
        0, NULL);
    json_t *d = results_cell_error(st);

    CHECK(json_integer_value(json_object_get(d, "cell")) == 3);
    CHECK_STREQ(json_string_value(json_object_get(d, "ename")), "ValueError");
    CHECK_STREQ(
        json_string_value(json_array_get(json_object_get(d, "traceback"), 0)),
        "line");
    json_decref(d);
    json_decref(st);
}

TEST(results__zip_bundle)
{
    struct bundle_part parts[] = {{"index.html", "<html>", 6},
                                  {"resources/a.png", "PNG", 3}};
    char *zip = NULL;
    size_t len = 0;
    zip_error_t ze;
    zip_source_t *src;
    zip_t *za;

    CHECK(bundle_zip(&zip, &len, parts, 2, NULL) == 0);
    CHECK(len > 0 && memcmp(zip, "PK", 2) == 0);
    zip_error_init(&ze);
    src = zip_source_buffer_create(zip, len, 0, &ze);
    za = zip_open_from_source(src, ZIP_RDONLY, &ze);
    CHECK(za != NULL);
    if (za) {
        CHECK(zip_get_num_entries(za, 0) == 2);
        CHECK(zip_name_locate(za, "resources/a.png", 0) == 1);
        zip_close(za);
    }
    zip_error_fini(&ze);
    free(zip);
}
