/* Fuzz target: the tar reader that takes archives made inside sandboxes,
 * and the output cleaner that every byte of program output goes through. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "nbcanvas/ansi.h"
#include "nbcanvas/tarball.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tar_files files = TAR_FILES_INIT;
    char *clean;

    tarball_read(&files, (const char *)data, size, "sandbox/", 64, 1 << 20,
                 NULL);
    tarball_files_release(&files);
    tarball_read(&files, (const char *)data, size, NULL, 64, 1 << 20, NULL);
    tarball_files_release(&files);
    clean = ansi_clean((const char *)data, size, NULL);
    free(clean);
    return 0;
}
