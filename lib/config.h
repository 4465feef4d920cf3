/* config.h - the configuration of scanrelayd and scanrelay (see config.c). */
#ifndef SR_CONFIG_H
#define SR_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/*
 * Action keys hold a code given by the hook the scan layer registers
 * (scan/action.h): lib/ reads the words but does not know what they mean.
 * The hook gets the key ("action", "file_size_action", "error_action"...)
 * and the word; it stores the code and returns 0, or returns -1 with the
 * words it accepts in why (for the file:line message).
 */
typedef int (*config_action_fn)(const char *key, const char *word, int *code, char *why,
                                size_t whylen);
void config_set_action_parser(config_action_fn fn);

struct sr_config_virus {
    char *database_directory;
    int action;                  /* action code (see above), discard */
    int64_t check_interval;      /* seconds between database directory checks, 60 */
    int64_t max_scan_size;       /* libclamav CL_ENGINE_MAX_SCANSIZE, 100M */
    int64_t max_file_size;       /* CL_ENGINE_MAX_FILESIZE, 25M */
    int64_t max_recursion;       /* CL_ENGINE_MAX_RECURSION, 17 (ClamAV default) */
    int64_t max_files;           /* CL_ENGINE_MAX_FILES, 10000 */
    int64_t max_scan_time;       /* seconds, CL_ENGINE_MAX_SCANTIME, 120 */
    char *temporary_directory;   /* libclamav's scratch space (CL_ENGINE_TMPDIR); "" in the
                                    file: $TMPDIR, else /dev/shm when writable, else /tmp */
};

/* One size rule ("security setting"): 0 threshold = off. */
struct sr_limit_rule {
    int64_t threshold;
    int action; /* action code (see above) */
};

struct sr_config_scan {
    int enabled;                 /* yes */
    int64_t threads;             /* 0 = number of cores */
    int64_t max_pending;         /* scan jobs waiting; more get 421/451, 1000 */
    int64_t timeout;             /* seconds per message, 120 */
    int64_t max_mime_depth;      /* 20 */
    int64_t max_mime_parts;      /* 1000 */
    struct sr_limit_rule message_size;      /* total message size */
    struct sr_limit_rule file_size;         /* decompressed size of one file */
    struct sr_limit_rule total_size;        /* all decompressed bytes */
    struct sr_limit_rule archive_files;     /* files in one archive */
    struct sr_limit_rule archive_depth;     /* archive nesting */
    struct sr_limit_rule compression_ratio; /* expanded/compressed */
    struct sr_limit_rule recipients;        /* recipients per message */
    int encrypted_action;                   /* action code: tag */
    int error_action;                       /* action code: defer (451) or deliver (Unchecked) */
};

struct sr_config_queue {
    int64_t queue_run_delay;        /* 300 s */
    int64_t minimal_backoff_time;   /* 300 s */
    int64_t maximal_backoff_time;   /* 4000 s */
    int64_t maximal_queue_lifetime; /* 5 d */
    int64_t bounce_queue_lifetime;  /* 5 d */
    int64_t delay_warning_time;     /* 0 = off */
    int64_t max_parallel;           /* parallel deliveries from the queue, 10 */
    int64_t min_free_space;         /* refuse custody below this, 100M */
    int64_t probe_interval;         /* retry the oldest message this often while down, 10 s */
};

struct sr_config_quarantine {
    int64_t retention; /* 14 d */
    int64_t quota;     /* 10G */
};

struct sr_config_log {
    int64_t retention; /* message log rows, 30 d */
    int enabled;       /* message log in SQLite, yes */
    int64_t queue_max; /* rows waiting for the writer before rows are dropped, 20000 */
};

/* Health alerts to the administrator (proxy/health.c); 0 turns one off. */
struct sr_config_alert {
    int64_t interval;        /* seconds between checks, 60 */
    int64_t signature_age;   /* newest signature file older than this, 2 d */
    int64_t min_free_space;  /* state, queue, scratch folders, 500M */
    int64_t queue_size;      /* deferred messages, 1000 */
    int64_t downstream_down; /* seconds the downstream does not answer, 10 min */
    int daily_report;        /* one mail a day with the day's totals, no */
};

/*
 * Notices (queue/notice.c reads these; lib/ does not know what they mean).
 * A kind list holds words of notice kinds: "virus", "policy", "spam",
 * "limit", "encrypted", "error", "quarantine" (any quarantined message).
 */
struct sr_config_notify {
    char *from;              /* From: of every notice; "" = notices off */
    char **admin;            /* administrator addresses */
    size_t nadmin;
    char **admin_kinds;      /* default {"virus", "quarantine"} */
    size_t nadmin_kinds;
    char **recipient_kinds;  /* default {} (off) */
    size_t nrecipient_kinds;
    char **sender_kinds;     /* default {} (off); never "spam" */
    size_t nsender_kinds;
    int sender_outside_local; /* senders outside local_domains may get notices, no */
    int64_t window;          /* admin aggregation window, 10 min */
    int64_t rate_limit;      /* notices per address per hour, 10 */
    char *language;          /* "en" | "ja" */
    char *charset;           /* "utf-8" | "iso-2022-jp" */
    char *attach;            /* "none" | "headers" | "message" */
    int64_t attach_limit;    /* largest original attached whole, 1M */
    char *template_directory; /* /etc/scanrelay/templates */
};

/*
 * A policy rule: rule "NAME" { ... }, raw as written (lib/ does not know
 * what the words mean; scan/policy.c compiles them). Lists are in the
 * order of SR_RULE_LISTS.
 */
enum sr_rule_list {
    SR_RL_SUBJECT,   /* keyword entries on the decoded Subject */
    SR_RL_FROM,      /* keyword entries on the decoded From (display name and address) */
    SR_RL_BODY,      /* keyword entries on the decoded text of the text parts */
    SR_RL_EXCLUDE,   /* keyword entries: a match anywhere cancels the rule */
    SR_RL_SENDER,    /* envelope sender: address, @domain, .domain, glob, /regex/ */
    SR_RL_RECIPIENT, /* any envelope recipient, same forms */
    SR_RL_ATT_NAME,  /* attachment (or archive member) name globs */
    SR_RL_ATT_TYPE,  /* declared MIME type globs */
    SR_RL_ATT_TRUE,  /* true type (libmagic MIME type) globs */
    SR_RL_N
};
struct sr_strlist {
    char **v;
    size_t n;
};
struct sr_config_rule {
    char *name;
    char *file;                      /* the config file (or included file) it is in */
    int line;                        /* where the section starts in that file */
    struct sr_strlist list[SR_RL_N]; /* empty: no such condition */
    char *match;                     /* "any" | "all" | "phrase" */
    int case_sensitive;              /* case = yes */
    int action;                      /* action code (see above) */
    char *reject_text;               /* "" default */
    char *tag_header;                /* "" none; "Name: value" */
    char *expires;                   /* "" never; "YYYY-MM-DD" */
    int64_t min_size, max_size;      /* message size bounds, 0 off */
    int64_t min_recipients;          /* 0 off */
    int64_t min_attachments;         /* 0 off */
};
/* The config key of each list, SR_RL_* order. */
extern const char *const sr_rule_list_keys[SR_RL_N];

struct sr_config {
    char *path;                 /* the file read, or NULL for built-in defaults */
    char **listen;              /* "addr:port" list */
    size_t nlisten;
    char *relay;                /* "addr:port" */
    char *state_directory;
    char *queue_directory;
    char *control_socket;
    char *user;                 /* started as root: drop to it ("scanrelay"); "" = stay */
    int user_explicit;          /* user was set in the file (a missing user is an error) */
    char *metrics_listen;       /* "addr:port" of the Prometheus /metrics listener, "" off */
    char *hostname;             /* greeting name; default gethostname() */
    int64_t max_message_size;   /* 30M */
    int64_t max_connections;    /* 500 */
    int64_t max_recipients;     /* 1000 */
    int64_t max_command_length; /* 2048 */
    int64_t max_commands;       /* per session, 10000 */
    int64_t max_errors;         /* bad commands per session before 421, 20 */
    int64_t smtpd_timeout;      /* 300 s idle */
    int64_t smtpd_command_deadline; /* 300 s for a whole command line, 0 off */
    int64_t smtpd_min_data_rate;    /* DATA: bytes/s beyond the deadline, 500; 0 off */
    char **xforward_networks;   /* CIDR list */
    size_t nxforward_networks;
    int64_t body_memory_limit;  /* bytes of a body kept in memory, 256k */
    int64_t relay_connections;  /* 20 */
    int64_t relay_connect_timeout; /* 30 s */
    int64_t relay_timeout;      /* per command, 300 s */
    int64_t relay_data_timeout; /* end of data, 600 s */
    int64_t relay_idle_time;    /* idle connection cache, 10 s */
    int64_t shutdown_timeout;   /* 30 s */
    int debug;

    struct sr_config_virus virus;
    struct sr_config_scan scan;
    struct sr_config_queue queue;
    struct sr_config_quarantine quarantine;
    struct sr_config_log log;
    struct sr_config_alert alert;
    struct sr_config_notify notify;
    char **local_domains;       /* domains of our own users (sender notices) */
    size_t nlocal_domains;
    struct sr_config_rule *rules; /* rule "NAME" { } sections, in file order */
    size_t nrules;

    /* Opaque attachment for the layer above (the compiled policy of these
     * rules): freed with the config by attach_free. */
    void *attach;
    void (*attach_free)(void *);

    int refs_; /* config_ref/config_unref; 1 after config_load */
};

#define SR_DEFAULT_CONFIG "/etc/scanrelay/scanrelay.conf"

/*
 * Load a config file. path NULL: the default path, and built-in defaults
 * when that file does not exist. explicit_path: the file must exist.
 * Returns NULL and writes a message naming file and line to err.
 */
struct sr_config *config_load(const char *path, int explicit_path, char *err, size_t errlen);
void config_free(struct sr_config *cfg);

/*
 * Shared configurations (the daemon across reloads): config_load returns
 * one reference; config_ref adds one (returns cfg), config_unref drops
 * one and frees at zero. Atomic: any thread may drop its reference.
 */
struct sr_config *config_ref(struct sr_config *cfg);
void config_unref(struct sr_config *cfg);

/* Parsers shared with the CLI and tests; 0 ok, -1 bad. */
int config_parse_size(const char *s, int64_t *out);
int config_parse_duration(const char *s, int64_t *out);

#endif
