/*
 * cmd_daemon.c - `scanrelay status`, `scanrelay reload` and `scanrelay
 * report`: ask the running daemon over its control socket. status prints
 * what the daemon reports (one "key: value" line each, listed in
 * doc/scanrelay.1; -j one JSON object the daemon sends in pieces)
 * and its active health alerts ("alert: NAME SINCE TEXT" lines; -j an
 * "alerts" list of {name, since, text}); reload makes it re-read the
 * configuration and recompile the signature engine in the background
 * (like SIGHUP); report mails the daily report for today so far to the
 * administrator. Exit 0 ok, 1 refused, 2 not running.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "ctl.h"

int cmd_status(struct cli_opts *o, int argc, char **argv);
int cmd_reload(struct cli_opts *o, int argc, char **argv);
int cmd_report(struct cli_opts *o, int argc, char **argv);

/* The pieces of the daemon's JSON object, printed as they come. */
static void
json_piece(void *arg, const char *line)
{
    int *n = arg;
    (*n)++;
    fputs(line, stdout);
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
    int n = 0;
    char final[CTL_LINE_MAX];
    int rc = ctl_request(o->cfg->control_socket, "status json", json_piece, &n, final,
                         sizeof(final));
    if (rc < 0 && n == 0)
        return cli_daemon_request(o, "status"); /* prints the plain "not running" */
    fputs(n ? ", " : "{", stdout);
    cli_put_json(stdout, "state");
    fputs(": ", stdout);
    cli_put_json(stdout, final);
    fputs("}\n", stdout);
    return rc == 0 ? 0 : 1;
}

int
cmd_report(struct cli_opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: scanrelay report\n");
        return 2;
    }
    return cli_daemon_request(o, "report");
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
