/*
 * cmd_daemon.c - `scanrelay status`, `scanrelay reload` and `scanrelay
 * report`: ask the running daemon over its control socket. status prints
 * the daemon's counters (one "key: value" line each; -j one JSON object)
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

struct kv_out {
    int n;
    FILE *alerts; /* the "alerts" list being built (open_memstream) */
    int nalerts;
};

/* "alert: NAME SINCE TEXT" as {"name", "since", "text"} in the alerts list. */
static void
json_alert(struct kv_out *k, const char *rest)
{
    char name[64];
    long long since = 0;
    int off = 0;
    if (k->alerts == NULL || sscanf(rest, "%63s %lld %n", name, &since, &off) < 2 || off == 0)
        return;
    fputs(k->nalerts++ ? ", {\"name\": " : "{\"name\": ", k->alerts);
    cli_put_json(k->alerts, name);
    fprintf(k->alerts, ", \"since\": %lld, \"text\": ", since);
    cli_put_json(k->alerts, rest + off);
    fputc('}', k->alerts);
}

/* "key: value" data lines as members of one JSON object. */
static void
json_line(void *arg, const char *line)
{
    struct kv_out *k = arg;
    const char *colon = strstr(line, ": ");
    if (colon == NULL)
        return;
    if (strncmp(line, "alert: ", 7) == 0) {
        json_alert(k, line + 7);
        return;
    }
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
    char *alerts = NULL;
    size_t alen = 0;
    k.alerts = open_memstream(&alerts, &alen);
    char final[CTL_LINE_MAX];
    int rc = ctl_request(o->cfg->control_socket, "status", json_line, &k, final, sizeof(final));
    if (k.alerts)
        fclose(k.alerts);
    if (rc < 0) {
        free(alerts);
        return cli_daemon_request(o, "status"); /* prints the plain "not running" */
    }
    fputs(k.n ? ", " : "{", stdout);
    printf("\"alerts\": [%s], ", alerts ? alerts : "");
    free(alerts);
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
