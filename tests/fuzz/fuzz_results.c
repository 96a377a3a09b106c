/* Fuzz target: what the sandbox sends back and the service parses — the
 * executed notebook (outputs, base64 images), status.json and one output
 * of a progress event — read as the service reads them (JSON_ALLOW_NUL,
 * as driver_call.c loads them); and the same bytes as the driver's
 * channel, scanned for event lines and a done line. */
#include <stddef.h>
#include <stdint.h>

#include "nbcanvas/driver.h"
#include "nbcanvas/results.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char nonce[] = "0d4d2a4c-58c2-4b47-9a4b-4f3a4bb8d1a7";
    json_t *doc = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
    struct tar_files images = TAR_FILES_INIT;
    struct driver_status st;
    size_t from = 0, scan = 0, at, n;
    json_t *out, *event;

    while (driver_next_event((const char *)data, size, nonce, &from, &event) ==
           1)
        json_decref(event);
    (void)driver_find_results((const char *)data, size, nonce, &scan, &at, &n,
                              NULL);
    if (!doc)
        return 0;
    out = results_output_json(doc);
    json_decref(out);
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
