/* Fuzz target: an executed notebook (outputs, base64 images) and a job's
 * status, read as the service reads them (JSON_ALLOW_NUL): the executor
 * builds the notebook from a sandbox's messages, so every part of it is
 * the sandbox's to choose. */
#include <stddef.h>
#include <stdint.h>

#include "nbcanvas/job_status.h"
#include "nbcanvas/results.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
    struct tar_files images = TAR_FILES_INIT;
    struct job_status st;
    json_t *out;

    if (!doc)
        return 0;
    out = results_output_json(doc);
    json_decref(out);
    out = results_cells_json(doc);
    json_decref(out);
    results_images(&images, doc);
    tarball_files_release(&images);
    if (job_status_parse(&st, doc, NULL) == 0) {
        out = results_cell_error(doc);
        json_decref(out);
    }
    json_decref(doc);
    return 0;
}
