/* Fuzz target: request bodies of /v1/render and /v1/run through the same
 * validation the HTTP handlers use. Nothing may crash, leak or read out of
 * bounds, whatever the bytes. */
#include <stddef.h>
#include <stdint.h>

#include "nbcanvas/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct config cfg;
    static int ready;
    struct render_request r;
    struct run_request q;

    if (!ready) {
        config_defaults(&cfg);
        ready = 1;
    }
    request_parse_render(&r, (const char *)data, size, &cfg, NULL);
    request_render_release(&r);
    request_parse_run(&q, (const char *)data, size, &cfg, NULL);
    request_run_release(&q);
    return 0;
}
