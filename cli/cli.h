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

#endif
