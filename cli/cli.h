/* cli.h - subcommands of the scanrelay command (one file each). */
#ifndef SR_CLI_H
#define SR_CLI_H

struct sr_config;

/* Common options parsed by main before the subcommand. */
struct cli_opts {
    const char *config_path; /* -c, or NULL for the default */
    int json;                /* -j */
    struct sr_config *cfg;   /* loaded config */
};

/*
 * A subcommand gets argv starting at its own name (argv[0] = "queue")
 * after the common options were removed, and returns the exit status.
 */
typedef int (*cli_cmd_fn)(struct cli_opts *o, int argc, char **argv);

/* Print usage of the whole command to stderr. */
void cli_usage(void);

/* cli_util.c: output of untrusted text, requests to the daemon. */
#include <stddef.h>
#include <stdio.h>
/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
size_t cli_utf8_seq(const unsigned char *s);
/* s for a terminal: control characters and invalid UTF-8 as '?'. */
void cli_put_safe(FILE *fp, const char *s);
/* s as a JSON string with its quotes (invalid UTF-8 as U+FFFD). */
void cli_put_json(FILE *fp, const char *s);
/* One request over the control socket; prints data lines and the final
 * text. 0 OK, 1 the daemon said ERR, 2 daemon not running/unreachable. */
int cli_daemon_request(struct cli_opts *o, const char *req);
/* Flush stdout at the end of a listing: 0, or 2 after saying "write error". */
int cli_flush_stdout(void);

/* cmd_quarantine.c, shared with cmd_log.c: --since/--until ("2026-11-23",
 * "2026-11-23 10:00", "2h", "3d"), local time display, --limit. 0 / -1. */
#include <stdint.h>
int qcli_parse_time(const char *s, int64_t now, int64_t *out);
void qcli_format_time(int64_t t, char *buf, size_t len);
int qcli_parse_limit(const char *s, long *out);

/* cmd_qstats.c: "quarantine stats" (argv[1] = "stats"). */
int quarantine_stats(struct cli_opts *o, int argc, char **argv);

#endif
