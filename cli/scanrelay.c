/*
 * scanrelay.c - the administrator's command: option parsing common to all
 * subcommands (-c FILE, -j) and dispatch by name. Each subcommand lives in
 * its own cli/cmd_*.c. Exit status: 0 success, 1 "flagged"/not found as
 * the subcommand defines, 2 usage or runtime error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "action.h"
#include "config.h"
#include "log.h"

struct cli_cmd {
    const char *name;
    cli_cmd_fn fn;
    const char *usage;
};

/* Subcommands register here (declarations in their own headers would be
 * one per function; a table with extern prototypes is simpler). */
int cmd_queue(struct cli_opts *o, int argc, char **argv);
int cmd_flush(struct cli_opts *o, int argc, char **argv);
int cmd_scan(struct cli_opts *o, int argc, char **argv);
int cmd_status(struct cli_opts *o, int argc, char **argv);
int cmd_reload(struct cli_opts *o, int argc, char **argv);
int cmd_report(struct cli_opts *o, int argc, char **argv);
int cmd_quarantine(struct cli_opts *o, int argc, char **argv);
int cmd_log(struct cli_opts *o, int argc, char **argv);
int cmd_stats(struct cli_opts *o, int argc, char **argv);
int cmd_backup(struct cli_opts *o, int argc, char **argv);
int cmd_rules(struct cli_opts *o, int argc, char **argv);
static const struct cli_cmd cli_cmds[] = {
    {"queue", cmd_queue, "queue [-j] [delete|hold|release|requeue ID...|ALL]"},
    {"flush", cmd_flush, "flush [ID...]"},
    {"scan", cmd_scan, "scan [-j] [-d DBDIR] [-r NRCPTS] [-s SENDER] [-R RCPT]... FILE|-"},
    {"rules", cmd_rules, "rules [test [-s SENDER] [-R RCPT]... FILE|-]"},
    {"status", cmd_status, "status"},
    {"reload", cmd_reload, "reload"},
    {"report", cmd_report, "report"},
    {"quarantine", cmd_quarantine,
     "quarantine [-j] list [--from A] [--to A] [--subject GLOB] [--reason R] [--rule NAME]\n"
     "      [--since T] [--until T] [--limit N] [--state S|all]\n"
     "  quarantine [-j] show ID [--raw]\n"
     "  quarantine release ID [--to ADDR...]\n"
     "  quarantine delete ID...\n"
     "  quarantine [-j] stats"},
    {"log", cmd_log,
     "log [-j] [--from A] [--to A] [--subject GLOB] [--id QID] [--message-id MID]\n"
     "      [--verdict V] [--action A] [--rule NAME] [--since T] [--until T] [--limit N]"},
    {"stats", cmd_stats, "stats [-j] [--days N] [--by hour|day] [--top N]"},
    {"backup", cmd_backup, "backup [-j] DIR"},
    {NULL, NULL, NULL},
};

void
cli_usage(void)
{
    fprintf(stderr, "usage: scanrelay [-c FILE] [-j] COMMAND [ARGS...]\ncommands:\n");
    for (const struct cli_cmd *c = cli_cmds; c->name; c++)
        fprintf(stderr, "  %s\n", c->usage);
}

int
main(int argc, char **argv)
{
    struct cli_opts o = {0};
    char err[1024];
    int i;

    log_init("scanrelay", 1);

    /* Common options may stand before or after the subcommand name. */
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    int nrest = 0;
    if (rest == NULL)
        return 2;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0) {
            if (++i >= argc) {
                cli_usage();
                return 2;
            }
            o.config_path = argv[i];
        } else if (strcmp(argv[i], "-j") == 0) {
            o.json = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            cli_usage();
            return 0;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    if (nrest == 0) {
        cli_usage();
        return 2;
    }
    sr_action_register();
    o.cfg = config_load(o.config_path, o.config_path != NULL, err, sizeof(err));
    if (o.cfg == NULL) {
        fprintf(stderr, "scanrelay: %s\n", err);
        return 2;
    }
    for (const struct cli_cmd *c = cli_cmds; c->name; c++) {
        if (strcmp(c->name, rest[0]) == 0) {
            int rc = c->fn(&o, nrest, rest);
            config_free(o.cfg);
            free(rest);
            return rc;
        }
    }
    fprintf(stderr, "scanrelay: unknown command '%s'\n", rest[0]);
    cli_usage();
    config_free(o.cfg);
    free(rest);
    return 2;
}
