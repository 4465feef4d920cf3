/*
 * cmd_backup.c - `scanrelay backup DIR`: a consistent copy of the
 * quarantine (index and messages) and the message log of state_directory
 * into DIR (new or empty), while the daemon runs (quarantine/qbackup.c
 * says how). DIR is then a state folder of its own: restore by copying its
 * contents into an empty state_directory (README: moving a node). The
 * deferred queue and the configuration are not in it. Exit 0 done, 2 error.
 */
#include <stdio.h>

#include "cli.h"
#include "config.h"
#include "qbackup.h"

int cmd_backup(struct cli_opts *o, int argc, char **argv);

int
cmd_backup(struct cli_opts *o, int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: scanrelay backup DIR\n");
        return 2;
    }
    struct qbackup_stats st;
    char err[1024];
    if (qbackup_run(o->cfg->state_directory, argv[1], &st, err, sizeof(err)) < 0) {
        fprintf(stderr, "scanrelay: backup: %s\n", err);
        return 2;
    }
    if (o->json) {
        printf("{\"state_directory\": ");
        cli_put_json(stdout, o->cfg->state_directory);
        printf(", \"backup\": ");
        cli_put_json(stdout, argv[1]);
        printf(", \"quarantine_index\": %s, \"quarantined_messages\": %ld, \"bytes\": %lld, "
               "\"gone_during_copy\": %ld, \"message_log\": %s}\n",
               st.quarantine_db ? "true" : "false", st.files, (long long)st.bytes, st.gone,
               st.messages_db ? "true" : "false");
    } else {
        printf("backup of %s in %s:\n", o->cfg->state_directory, argv[1]);
        printf("  quarantine index: %s\n", st.quarantine_db ? "copied" : "none");
        printf("  quarantined messages: %ld (%lld bytes)", st.files, (long long)st.bytes);
        if (st.gone)
            printf(", %ld purged or deleted during the copy (marked deleted)", st.gone);
        printf("\n  message log: %s\n", st.messages_db ? "copied" : "none");
    }
    return cli_flush_stdout();
}
