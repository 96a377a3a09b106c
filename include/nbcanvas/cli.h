#ifndef NBCANVAS_CLI_H
#define NBCANVAS_CLI_H

/*
 * The command line: `serve`, and the one-shot `render` and `run`, which
 * build the same struct service and call the same pipeline as the HTTP
 * handlers do; `key new` makes an API key.
 */

/* Each returns the process exit status. */
int cli_serve(int argc, char **argv);
int cli_render(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_key(int argc, char **argv);
void cli_usage(void);

#endif
