/*
 * Commands: options parsed with getopt_long, then the service. Every
 * command builds its struct service with service_open (service.c), so a
 * one-shot render behaves exactly as POST /v1/render does.
 */
#include "nbcanvas/cli.h"

#include <getopt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/http.h"
#include "nbcanvas/render.h"
#include "nbcanvas/runner.h"
#include "nbcanvas/service.h"
#include "nbcanvas/tenants.h"
#include "nbcanvas/util.h"

void cli_usage(void)
{
    fputs("usage: nbcanvas COMMAND [OPTIONS]\n"
          "\n"
          "commands:\n"
          "  serve   [--listen ADDR:PORT] [--config FILE]\n"
          "          serve the HTTP API (default 127.0.0.1:8080)\n"
          "  render  REQUEST.json [-o OUT] [--config FILE]\n"
          "          run a POST /v1/render body once, write the answer\n"
          "  run     --language NAME FILE [--stdin FILE] [--timeout S]\n"
          "          [--config FILE]\n"
          "          run one snippet, print its stdout and stderr,\n"
          "          exit with its exit code\n"
          "  key     new TENANT\n"
          "          make an API key: prints it once, and the entry to add\n"
          "          to the api_keys_file\n"
          "\n"
          "The config file is --config, else $NBCANVAS_CONFIG, else the\n"
          "built-in defaults (docs/CONFIG.md). `nbcanvas COMMAND --help`\n"
          "describes a command.\n",
          stdout);
}

/* The service a one-shot command runs in: no pool, no cache. */
static int open_one_shot(struct service *svc, const char *config,
                         struct err *err)
{
    struct service_options opts = {config, NULL, true};

    return service_open(svc, &opts, err);
}

static bool wants_help(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

static void print_error(int code, const char *message, json_t *details)
{
    json_t *j = http_error_json(code, message, details);

    json_dumpf(j, stderr, JSON_COMPACT);
    fputc('\n', stderr);
    json_decref(j);
}

int cli_serve(int argc, char **argv)
{
    static const struct option opts[] = {{"listen", required_argument, 0, 'l'},
                                         {"config", required_argument, 0, 'c'},
                                         {0, 0, 0, 0}};
    const char *listen = NULL, *config = NULL;
    struct service_options options = {NULL, NULL, false};
    struct service svc;
    struct err err = ERR_INIT;
    int c, rc;

    if (wants_help(argc, argv)) {
        puts("usage: nbcanvas serve [--listen ADDR:PORT] [--config FILE]\n"
             "Serves the HTTP API of ../shared/API.md (docs/API.md).\n"
             "  --listen  address and port (default 127.0.0.1:8080)\n"
             "  --config  JSON config file (default $NBCANVAS_CONFIG)");
        return 0;
    }
    while ((c = getopt_long(argc, argv, "l:c:", opts, NULL)) != -1) {
        if (c == 'l')
            listen = optarg;
        else if (c == 'c')
            config = optarg;
        else
            return 2;
    }
    options.config_path = config;
    options.listen = listen;
    if (service_open(&svc, &options, &err) < 0) {
        fprintf(stderr, "nbcanvas: %s\n", err.msg);
        return 1;
    }
    rc = service_serve(&svc);
    service_close(&svc);
    return rc;
}

static int write_output(const char *path, const char *data, size_t len)
{
    FILE *f = path ? fopen(path, "wb") : stdout;

    if (!f) {
        fprintf(stderr, "nbcanvas: cannot write %s\n", path);
        return 1;
    }
    if (fwrite(data, 1, len, f) != len || fflush(f) != 0) {
        fprintf(stderr, "nbcanvas: cannot write %s\n", path ? path : "stdout");
        if (f != stdout)
            fclose(f);
        return 1;
    }
    if (f != stdout && fclose(f) != 0) {
        fprintf(stderr, "nbcanvas: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

int cli_render(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"config", required_argument, 0, 'c'},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *config = NULL;
    struct service svc;
    struct render_request req;
    struct render_result res;
    struct err err = ERR_INIT;
    char id[37], *body;
    size_t len = 0;
    int c, rc;

    if (wants_help(argc, argv)) {
        puts("usage: nbcanvas render REQUEST.json [-o OUT] [--config FILE]\n"
             "Runs a POST /v1/render body (a file, or - for stdin) through\n"
             "the same pipeline and writes the answer to OUT (default\n"
             "stdout). Exit 0 on success; otherwise 1 with the error JSON\n"
             "on stderr.");
        return 0;
    }
    while ((c = getopt_long(argc, argv, "o:c:", opts, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else if (c == 'c')
            config = optarg;
        else
            return 2;
    }
    if (optind >= argc) {
        fputs("nbcanvas render: give a request file (see --help)\n", stderr);
        return 2;
    }
    if (open_one_shot(&svc, config, &err) < 0) {
        print_error(err.code, err.msg, NULL);
        return 1;
    }
    body = util_read_file(argv[optind], &len, (size_t)svc.cfg.max_body_bytes);
    if (!body) {
        print_error(ERR_INVALID, "cannot read the request file (or too big)",
                    NULL);
        service_close(&svc);
        return 1;
    }
    util_uuid(id);
    rc = request_parse_render(&req, body, len, &svc.cfg, &err);
    if (rc == 0)
        rc = docker_negotiate(svc.pipe.docker, &err);
    if (rc < 0) {
        print_error(rc, err.msg, NULL);
    } else {
        rc = render_run(&res, &svc.pipe, &req, id, NULL);
        if (rc < 0)
            print_error(rc, res.message, res.details);
        else
            rc = write_output(out, res.answer.body, res.answer.len);
        render_result_release(&res);
    }
    request_render_release(&req);
    free(body);
    service_close(&svc);
    return rc == 0 ? 0 : 1;
}

static int run_snippet(struct service *svc, struct run_request *req)
{
    struct err err = ERR_INIT;
    json_t *result = NULL;
    char id[37];
    int rc;

    util_uuid(id);
    rc = docker_negotiate(svc->pipe.docker, &err);
    if (rc == 0)
        rc = runner_run(&result, &svc->pipe, req, id, NULL, &err);
    if (rc < 0) {
        print_error(rc, err.msg, NULL);
        return 125;
    }
    fputs(json_string_value(json_object_get(result, "stdout")), stdout);
    fputs(json_string_value(json_object_get(result, "stderr")), stderr);
    rc = (int)json_integer_value(json_object_get(result, "exit_code"));
    if (strcmp(json_string_value(json_object_get(result, "status")), "ok") &&
        strcmp(json_string_value(json_object_get(result, "status")),
               "runtime_error"))
        fprintf(stderr, "nbcanvas: %s\n",
                json_string_value(json_object_get(result, "status")));
    json_decref(result);
    return rc < 0 ? 124 : rc;
}

int cli_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"language", required_argument, 0, 'l'},
        {"stdin", required_argument, 0, 's'},
        {"timeout", required_argument, 0, 't'},
        {"config", required_argument, 0, 'c'},
        {0, 0, 0, 0}};
    const char *lang = NULL, *config = NULL, *in = NULL;
    struct run_request req = {0};
    struct service svc;
    struct err err = ERR_INIT;
    long timeout = 0;
    int c, rc;

    if (wants_help(argc, argv)) {
        puts("usage: nbcanvas run --language NAME FILE [--stdin FILE]\n"
             "                    [--timeout S] [--config FILE]\n"
             "Runs FILE as POST /v1/run would, prints the program's stdout\n"
             "and stderr, and exits with its exit code (124 when it did not\n"
             "finish, 125 when nbcanvas itself failed).");
        return 0;
    }
    while ((c = getopt_long(argc, argv, "l:s:t:c:", opts, NULL)) != -1) {
        if (c == 'l')
            lang = optarg;
        else if (c == 's')
            in = optarg;
        else if (c == 't')
            timeout = strtol(optarg, NULL, 10);
        else if (c == 'c')
            config = optarg;
        else
            return 2;
    }
    if (!lang || optind >= argc) {
        fputs("nbcanvas run: give --language NAME and a FILE (see --help)\n",
              stderr);
        return 2;
    }
    if (open_one_shot(&svc, config, &err) < 0) {
        print_error(err.code, err.msg, NULL);
        return 125;
    }
    snprintf(req.language, sizeof(req.language), "%s", lang);
    req.timeout_s = timeout > 0 && timeout <= svc.cfg.run_max_timeout_s
                        ? timeout
                        : svc.cfg.run_timeout_s;
    req.code = util_read_file(argv[optind], &req.code_len,
                              (size_t)svc.cfg.max_run_body_bytes);
    req.stdin_data = in ? util_read_file(in, &req.stdin_len, 1 << 20)
                        : xstrdup("");
    if (!req.code || !req.stdin_data) {
        print_error(ERR_INVALID, "cannot read the code or stdin file", NULL);
        rc = 125;
    } else {
        rc = run_snippet(&svc, &req);
    }
    request_run_release(&req);
    service_close(&svc);
    return rc;
}

int cli_key(int argc, char **argv)
{
    char key[TENANT_KEY_LEN + 1], digest[65];
    json_t *entry;

    if (wants_help(argc, argv) || argc != 3 || strcmp(argv[1], "new") != 0) {
        puts("usage: nbcanvas key new TENANT\n"
             "Prints a fresh random API key for TENANT (once: only its\n"
             "SHA-256 is kept) and the JSON entry to add to the list in\n"
             "the api_keys_file; then send the service SIGHUP.");
        return argc == 2 && wants_help(argc, argv) ? 0 : 2;
    }
    tenants_new_key(key, digest);
    entry = json_pack("{s:s, s:s}", "tenant", argv[2], "key_sha256", digest);
    printf("key: %s\nentry: ", key);
    json_dumpf(entry, stdout, JSON_COMPACT);
    putchar('\n');
    json_decref(entry);
    OPENSSL_cleanse(key, sizeof(key));
    return 0;
}
