/*
 * nbcanvas: turns code into rendered Jupyter notebooks, safely.
 * main only sets process-wide library state and dispatches the command.
 */
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/cli.h"
#include "nbcanvas/util.h"

int main(int argc, char **argv)
{
    json_set_alloc_funcs(xmalloc, free);
    /* One arena per connection thread would keep freed answers mapped. */
    mallopt(M_ARENA_MAX, 2);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        cli_usage();
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "serve") == 0)
        return cli_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "render") == 0)
        return cli_render(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0)
        return cli_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "key") == 0)
        return cli_key(argc - 1, argv + 1);
    fprintf(stderr, "nbcanvas: unknown command '%s'\n\n", argv[1]);
    cli_usage();
    return 2;
}
