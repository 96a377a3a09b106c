#include "../check.h"
#include "nbcanvas/notebook.h"

TEST(notebook__from_cells)
{
    json_t *cells = json_loads(
        "[\"print(1)\", {\"cell_type\": \"markdown\", \"source\": [\"# a\\n\","
        " \"b\"]}, {\"cell_type\": \"raw\", \"source\": \"r\"}]",
        0, NULL);
    json_t *nb = NULL, *c0, *c1;
    const char *id;

    CHECK(notebook_from_cells(&nb, cells, notebook_kernel_find("python3"),
                              NULL) == 0);
    CHECK(json_integer_value(json_object_get(nb, "nbformat")) == 4);
    CHECK(json_integer_value(json_object_get(nb, "nbformat_minor")) == 5);
    CHECK_STREQ(
        json_string_value(json_object_get(
            json_object_get(json_object_get(nb, "metadata"), "kernelspec"),
            "name")),
        "python3");
    CHECK(json_array_size(json_object_get(nb, "cells")) == 3);
    c0 = json_array_get(json_object_get(nb, "cells"), 0);
    c1 = json_array_get(json_object_get(nb, "cells"), 1);
    CHECK_STREQ(json_string_value(json_object_get(c0, "cell_type")), "code");
    CHECK(json_is_null(json_object_get(c0, "execution_count")));
    CHECK(json_is_array(json_object_get(c0, "outputs")));
    CHECK(json_object_get(c1, "outputs") == NULL);
    CHECK(json_is_array(json_object_get(c1, "source")));
    id = json_string_value(json_object_get(c0, "id"));
    CHECK(id && strlen(id) >= 1 && strlen(id) <= 64);
    CHECK(strcmp(id, json_string_value(json_object_get(c1, "id"))) != 0);
    json_decref(nb);
    json_decref(cells);
}

TEST(notebook__upload_forces_kernel)
{
    json_t *up = json_loads(
        "{\"nbformat\": 4, \"nbformat_minor\": 4, \"metadata\": "
        "{\"kernelspec\": {\"name\": \"evil\", \"display_name\": \"E\"}},"
        " \"cells\": [{\"cell_type\": \"code\", \"source\": \"1\", "
        "\"metadata\": {}, \"outputs\": [], \"execution_count\": null}]}",
        0, NULL);
    json_t *nb = NULL;

    CHECK(notebook_from_upload(&nb, up, notebook_kernel_find("python3"),
                               NULL) == 0);
    CHECK_STREQ(
        json_string_value(json_object_get(
            json_object_get(json_object_get(nb, "metadata"), "kernelspec"),
            "name")),
        "python3");
    /* the caller's copy is untouched */
    CHECK_STREQ(
        json_string_value(json_object_get(
            json_object_get(json_object_get(up, "metadata"), "kernelspec"),
            "name")),
        "evil");
    json_decref(nb);
    json_decref(up);
}

TEST(notebook__kernels)
{
    json_t *k = notebook_kernels_json();

    CHECK(json_array_size(k) >= 1);
    CHECK_STREQ(
        json_string_value(json_object_get(json_array_get(k, 0), "language")),
        "python");
    CHECK(notebook_kernel_find("nope") == NULL);
    json_decref(k);
}
