/* Fuzz target: what the sandbox sends back and the service parses — the
 * executed notebook (outputs, base64 images) and status.json — read as
 * the service reads them (JSON_ALLOW_NUL, as render.c loads them). */
#include <stddef.h>
#include <stdint.h>

#include "nbcanvas/driver.h"
#include "nbcanvas/results.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
    struct tar_files images = TAR_FILES_INIT;
    struct driver_status st;
    json_t *out;

    if (!doc)
        return 0;
    out = results_cells_json(doc);
    json_decref(out);
    results_images(&images, doc);
    tarball_files_release(&images);
    if (driver_parse_status(&st, doc, NULL) == 0) {
        out = results_cell_error(doc);
        json_decref(out);
    }
    json_decref(doc);
    return 0;
}
