/*
 * cmd_daemon.c - `scanrelay status` and `scanrelay reload`: ask the
 * running daemon over its control socket. status prints the daemon's
 * counters (one "key: value" line each; -j one JSON object); reload makes
 * it re-read the configuration and recompile the signature engine in the
 * background (like SIGHUP). Exit 0 ok, 1 refused, 2 not running.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "ctl.h"

int cmd_status(struct cli_opts *o, int argc, char **argv);
int cmd_reload(struct cli_opts *o, int argc, char **argv);

struct kv_out {
    int n;
};

/* "key: value" data lines as members of one JSON object. */
static void
json_line(void *arg, const char *line)
{
    struct kv_out *k = arg;
    const char *colon = strstr(line, ": ");
    if (colon == NULL)
        return;
    char key[128];
    size_t kl = (size_t)(colon - line) < sizeof(key) - 1 ? (size_t)(colon - line) : sizeof(key) - 1;
    memcpy(key, line, kl);
    key[kl] = '\0';
    for (char *p = key; *p; p++)
        if (*p == ' ')
            *p = '_';
    fputs(k->n++ ? ", " : "{", stdout);
    cli_put_json(stdout, key);
    fputs(": ", stdout);
    cli_put_json(stdout, colon + 2);
}

int
cmd_status(struct cli_opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: scanrelay [-j] status\n");
        return 2;
    }
    if (!o->json)
        return cli_daemon_request(o, "status");
    struct kv_out k = {0};
    char final[CTL_LINE_MAX];
    int rc = ctl_request(o->cfg->control_socket, "status", json_line, &k, final, sizeof(final));
    if (rc < 0)
        return cli_daemon_request(o, "status"); /* prints the plain "not running" */
    fputs(k.n ? ", " : "{", stdout);
    cli_put_json(stdout, "state");
    fputs(": ", stdout);
    cli_put_json(stdout, final);
    fputs("}\n", stdout);
    return rc == 0 ? 0 : 1;
}

int
cmd_reload(struct cli_opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: scanrelay reload\n");
        return 2;
    }
    return cli_daemon_request(o, "reload");
}
