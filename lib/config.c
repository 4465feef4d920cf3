/*
 * config.c - the one configuration file, in libconfuse syntax.
 *
 * config_load() reads the file named by -c (or the default path), checks
 * every value and returns a struct sr_config owned by the caller (free it
 * with config_free, or share it: config_ref/config_unref, atomic). Every
 * key has a default, so an empty file or no file at all is a valid
 * configuration. An unknown key or a bad value is an
 * error that names the file and line; nothing is half-applied, the caller
 * keeps its old config (SIGHUP).
 *
 * A line include = "PATTERN" is replaced by the files the glob names (in
 * name order, relative to the including file's folder, 8 levels deep);
 * messages name the file and line the text came from. Titled sections
 * rule "NAME" { } are kept as written (struct sr_config_rule, with their
 * file and starting line); the scan layer compiles them (scan/policy.c).
 *
 * Sizes take k M G (powers of 1024), durations s m|min h d w; a bare
 * number is bytes or seconds. Relative paths are taken relative to the
 * config file's folder. With no config file at the default location the
 * program is "not installed": state, queue and control socket default to
 * ./run/ below the current folder so a build can run in place.
 *
 * Action keys (virus.action, scan.*_action) are words this module does
 * not interpret: config_set_action_parser() registers the hook that
 * checks and codes them (the scan layer's, scan/action.h); a bad word is
 * reported with file and line like any bad value. config_load() without a
 * registered hook fails.
 */
#include <confuse.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "xmalloc.h"

/*
 * Action keys. lib/ knows nothing of mail: the words ("discard", "tag"...)
 * are string options, checked as they are read by a hook the scan layer
 * registers (scan/action.h); at copy-out the same hook turns each word,
 * the default included, into its code, which config.c keeps as an int.
 */
static config_action_fn action_fn;

void
config_set_action_parser(config_action_fn fn)
{
    action_fn = fn;
}

/* Parse "<digits><suffix>" with the given suffix table; 0 ok, -1 bad. */
static int
parse_scaled(const char *s, int64_t *out, const char *const *sfx, const int64_t *mul, size_t nsfx)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    int64_t m = 1;
    if (*end) {
        size_t i;
        for (i = 0; i < nsfx; i++)
            if (strcmp(end, sfx[i]) == 0)
                break;
        if (i == nsfx)
            return -1;
        m = mul[i];
    }
    if (v > (unsigned long long)(INT64_MAX / m))
        return -1;
    *out = (int64_t)v * m;
    return 0;
}

int
config_parse_size(const char *s, int64_t *out)
{
    static const char *const sfx[] = {"k", "K", "M", "G", "b", "B"};
    static const int64_t mul[] = {1024, 1024, 1024 * 1024, 1024LL * 1024 * 1024, 1, 1};
    return parse_scaled(s, out, sfx, mul, 6);
}

int
config_parse_duration(const char *s, int64_t *out)
{
    static const char *const sfx[] = {"s", "m", "min", "h", "d", "w"};
    static const int64_t mul[] = {1, 60, 60, 3600, 86400, 7 * 86400};
    return parse_scaled(s, out, sfx, mul, 6);
}

/* libconfuse value callbacks. */
static int
cb_size(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    int64_t v;
    if (config_parse_size(value, &v) < 0) {
        cfg_error(cfg, "bad size '%s' for '%s' (use a number with k, M or G)", value, opt->name);
        return -1;
    }
    *(long *)result = (long)v;
    return 0;
}

static int
cb_duration(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    int64_t v;
    if (config_parse_duration(value, &v) < 0) {
        cfg_error(cfg, "bad duration '%s' for '%s' (use a number with s, min, h, d or w)", value,
                  opt->name);
        return -1;
    }
    *(long *)result = (long)v;
    return 0;
}

static int
cb_count(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < 0) {
        cfg_error(cfg, "bad number '%s' for '%s'", value, opt->name);
        return -1;
    }
    *(long *)result = v;
    return 0;
}

/* Validating callback of an action key: the word, checked by the hook, as it is read. */
static int
cb_action(cfg_t *cfg, cfg_opt_t *opt)
{
    const char *word = cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);
    char why[200] = "";
    int code;

    if (action_fn == NULL) {
        cfg_error(cfg, "'%s': no action parser registered", opt->name);
        return -1;
    }
    if (word == NULL || action_fn(opt->name, word, &code, why, sizeof(why)) < 0) {
        cfg_error(cfg, "bad action '%s' for '%s' (%s)", word ? word : "", opt->name, why);
        return -1;
    }
    return 0;
}

#define SIZE(n, d) CFG_INT_CB(n, d, CFGF_NONE, cb_size)
#define DUR(n, d) CFG_INT_CB(n, d, CFGF_NONE, cb_duration)
#define COUNT(n, d) CFG_INT_CB(n, d, CFGF_NONE, cb_count)
#define ACTION(n, d) CFG_STR(n, d, CFGF_NONE)
#define K 1024L
#define M (1024L * 1024L)

static cfg_opt_t virus_opts[] = {
    CFG_STR("database_directory", "/var/lib/clamav", CFGF_NONE),
    ACTION("action", "discard"),
    DUR("check_interval", 60),
    SIZE("max_scan_size", 100 * M),
    SIZE("max_file_size", 25 * M),
    COUNT("max_recursion", 17),
    COUNT("max_files", 10000),
    DUR("max_scan_time", 120),
    CFG_STR("temporary_directory", "", CFGF_NONE),
    CFG_END(),
};

static cfg_opt_t scan_opts[] = {
    CFG_BOOL("enabled", cfg_true, CFGF_NONE),
    COUNT("threads", 0),
    COUNT("max_pending", 1000),
    DUR("timeout", 120),
    COUNT("max_mime_depth", 20),
    COUNT("max_mime_parts", 1000),
    SIZE("message_size_limit", 0),
    ACTION("message_size_action", "reject"),
    SIZE("file_size_limit", 100 * M),
    ACTION("file_size_action", "quarantine"),
    SIZE("total_size_limit", 500 * M),
    ACTION("total_size_action", "quarantine"),
    COUNT("archive_files_limit", 1000),
    ACTION("archive_files_action", "quarantine"),
    COUNT("archive_depth_limit", 8),
    ACTION("archive_depth_action", "quarantine"),
    COUNT("compression_ratio_limit", 250),
    ACTION("compression_ratio_action", "quarantine"),
    COUNT("recipients_limit", 0),
    ACTION("recipients_action", "reject"),
    ACTION("encrypted_action", "tag"),
    ACTION("error_action", "defer"),
    CFG_END(),
};

static cfg_opt_t queue_opts[] = {
    DUR("queue_run_delay", 300),
    DUR("minimal_backoff_time", 300),
    DUR("maximal_backoff_time", 4000),
    DUR("maximal_queue_lifetime", 5 * 86400),
    DUR("bounce_queue_lifetime", 5 * 86400),
    DUR("delay_warning_time", 0),
    COUNT("max_parallel", 10),
    SIZE("min_free_space", 100 * M),
    DUR("probe_interval", 10),
    CFG_END(),
};

static cfg_opt_t quarantine_opts[] = {
    DUR("retention", 14 * 86400),
    SIZE("quota", 10L * 1024 * M),
    CFG_END(),
};

static cfg_opt_t log_opts[] = {
    CFG_BOOL("enabled", cfg_true, CFGF_NONE),
    DUR("retention", 30 * 86400),
    COUNT("queue_max", 20000),
    CFG_END(),
};

static cfg_opt_t alert_opts[] = {
    DUR("interval", 60),
    DUR("signature_age", 2 * 86400),
    SIZE("min_free_space", 500 * M),
    COUNT("queue_size", 1000),
    DUR("downstream_down", 600),
    CFG_BOOL("daily_report", cfg_false, CFGF_NONE),
    CFG_END(),
};

static cfg_opt_t notify_opts[] = {
    CFG_STR("from", "", CFGF_NONE),
    CFG_STR_LIST("admin", "{}", CFGF_NONE),
    CFG_STR_LIST("admin_kinds", "{virus, quarantine}", CFGF_NONE),
    CFG_STR_LIST("recipient_kinds", "{}", CFGF_NONE),
    CFG_STR_LIST("sender_kinds", "{}", CFGF_NONE),
    CFG_BOOL("sender_outside_local", cfg_false, CFGF_NONE),
    DUR("window", 600),
    COUNT("rate_limit", 10),
    CFG_STR("language", "en", CFGF_NONE),
    CFG_STR("charset", "utf-8", CFGF_NONE),
    CFG_STR("attach", "none", CFGF_NONE),
    SIZE("attach_limit", 1 * M),
    CFG_STR("template_directory", "/etc/scanrelay/templates", CFGF_NONE),
    CFG_END(),
};

const char *const sr_rule_list_keys[SR_RL_N] = {
    "subject", "from", "body", "exclude", "sender", "recipient",
    "attachment_name", "attachment_type", "attachment_true_type",
};

static cfg_opt_t rule_opts[] = {
    CFG_STR_LIST("subject", "{}", CFGF_NONE),
    CFG_STR_LIST("from", "{}", CFGF_NONE),
    CFG_STR_LIST("body", "{}", CFGF_NONE),
    CFG_STR_LIST("exclude", "{}", CFGF_NONE),
    CFG_STR_LIST("sender", "{}", CFGF_NONE),
    CFG_STR_LIST("recipient", "{}", CFGF_NONE),
    CFG_STR_LIST("attachment_name", "{}", CFGF_NONE),
    CFG_STR_LIST("attachment_type", "{}", CFGF_NONE),
    CFG_STR_LIST("attachment_true_type", "{}", CFGF_NONE),
    CFG_STR("match", "any", CFGF_NONE),
    CFG_BOOL("case", cfg_false, CFGF_NONE),
    SIZE("min_size", 0),
    SIZE("max_size", 0),
    COUNT("min_recipients", 0),
    COUNT("min_attachments", 0),
    ACTION("action", "quarantine"),
    CFG_STR("reject_text", "", CFGF_NONE),
    CFG_STR("tag_header", "", CFGF_NONE),
    CFG_STR("expires", "", CFGF_NONE),
    CFG_END(),
};

static cfg_opt_t top_opts[] = {
    CFG_STR_LIST("listen", "{127.0.0.1:10025}", CFGF_NONE),
    CFG_STR("relay", "127.0.0.1:10026", CFGF_NONE),
    CFG_STR("state_directory", NULL, CFGF_NONE),
    CFG_STR("queue_directory", NULL, CFGF_NONE),
    CFG_STR("control_socket", NULL, CFGF_NONE),
    CFG_STR("user", NULL, CFGF_NONE),
    CFG_STR("metrics_listen", "", CFGF_NONE),
    CFG_STR("hostname", "", CFGF_NONE),
    SIZE("max_message_size", 30 * M),
    COUNT("max_connections", 500),
    COUNT("max_recipients", 1000),
    COUNT("max_command_length", 2048),
    COUNT("max_commands", 10000),
    COUNT("max_errors", 20),
    DUR("smtpd_timeout", 300),
    DUR("smtpd_command_deadline", 300),
    COUNT("smtpd_min_data_rate", 500),
    CFG_STR_LIST("xforward_networks", "{127.0.0.0/8, ::1/128}", CFGF_NONE),
    SIZE("body_memory_limit", 256 * K),
    COUNT("relay_connections", 20),
    DUR("relay_connect_timeout", 30),
    DUR("relay_timeout", 300),
    DUR("relay_data_timeout", 600),
    DUR("relay_idle_time", 10),
    DUR("shutdown_timeout", 30),
    CFG_BOOL("debug", cfg_false, CFGF_NONE),
    CFG_SEC("virus", virus_opts, CFGF_NONE),
    CFG_SEC("scan", scan_opts, CFGF_NONE),
    CFG_SEC("queue", queue_opts, CFGF_NONE),
    CFG_SEC("quarantine", quarantine_opts, CFGF_NONE),
    CFG_SEC("log", log_opts, CFGF_NONE),
    CFG_SEC("alert", alert_opts, CFGF_NONE),
    CFG_SEC("notify", notify_opts, CFGF_NONE),
    CFG_STR_LIST("local_domains", "{}", CFGF_NONE),
    CFG_SEC("rule", rule_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
    CFG_END(),
};

/* Error text collected by the libconfuse error hook (one load at a time). */
static __thread char *cf_err;
static __thread size_t cf_errlen;
static __thread const char *cf_path;

/*
 * The text handed to libconfuse: the main file with its include lines
 * replaced by the files they name, each line mapped back to its file and
 * line for messages.
 */
struct src_line {
    const char *file; /* one of files[] */
    int line;
};
struct cf_text {
    char *text;
    size_t len, cap;
    struct src_line *map; /* map[i]: line i + 1 of text */
    size_t nmap, mapcap;
    char **files;
    size_t nfiles;
};
static __thread const struct cf_text *cf_map;

/* The file and line of line n (1-based) of the parsed text. */
static void
map_line(const struct cf_text *t, int n, const char **file, int *line)
{
    if (t != NULL && n >= 1 && (size_t)n <= t->nmap) {
        *file = t->map[n - 1].file;
        *line = t->map[n - 1].line;
    } else if (t != NULL && t->nmap > 0 && n >= 1) {
        *file = t->map[t->nmap - 1].file;
        *line = t->map[t->nmap - 1].line;
    } else {
        *file = cf_path;
        *line = n;
    }
}

static void
cf_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (cf_err && cf_err[0] == '\0') {
        if (cfg && cf_path) {
            const char *file;
            int line;
            map_line(cf_map, cfg->line, &file, &line);
            snprintf(cf_err, cf_errlen, "%s:%d: %s", file, line, msg);
        } else {
            snprintf(cf_err, cf_errlen, "%s", msg);
        }
    }
}

/*
 * Read the file with its comments blanked out. libconfuse 3.3 miscounts
 * line numbers after '#' comments (and refuses comments inside lists), so
 * the parser gets the text without them, every line break kept: error
 * line numbers stay true. A '#' inside a quoted string is kept.
 */
static char *
read_without_comments(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 8192, len = 0;
    char *buf = xmalloc(cap);
    int c, inq = 0, incomment = 0, esc = 0;
    while ((c = getc(f)) != EOF) {
        if (c == '\n') {
            inq = incomment = esc = 0;
        } else if (incomment) {
            continue;
        } else if (inq) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == inq)
                inq = 0;
        } else if (c == '"' || c == '\'') {
            inq = c;
        } else if (c == '#') {
            incomment = 1;
            continue;
        }
        if (len + 2 > cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        buf[len++] = (char)c;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

static void
text_add_line(struct cf_text *t, const char *s, size_t n, const char *file, int line)
{
    if (t->len + n + 2 > t->cap) {
        t->cap = (t->len + n + 2) * 2;
        t->text = xrealloc(t->text, t->cap);
    }
    memcpy(t->text + t->len, s, n);
    t->len += n;
    t->text[t->len++] = '\n';
    t->text[t->len] = '\0';
    if (t->nmap == t->mapcap) {
        t->mapcap = t->mapcap ? t->mapcap * 2 : 256;
        t->map = xrealloc(t->map, t->mapcap * sizeof(*t->map));
    }
    t->map[t->nmap++] = (struct src_line){file, line};
}

static void
text_free(struct cf_text *t)
{
    free(t->text);
    free(t->map);
    for (size_t i = 0; i < t->nfiles; i++)
        free(t->files[i]);
    free(t->files);
}

/* An include line: include = "PATTERN" alone on its line; the pattern (malloc'd) or NULL. */
static char *
include_pattern(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (n - i < 7 || strncmp(s + i, "include", 7) != 0)
        return NULL;
    i += 7;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i >= n || s[i++] != '=')
        return NULL;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i >= n || s[i] != '"')
        return NULL;
    size_t b = ++i;
    while (i < n && s[i] != '"')
        i++;
    if (i >= n)
        return NULL;
    size_t e = i++;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
        i++;
    if (i != n)
        return NULL;
    return xstrndup(s + b, e - b);
}

#define INCLUDE_MAX_DEPTH 8

/*
 * Append path (comments blanked) to t, include lines expanded (a glob,
 * relative to the including file's folder; files in name order; a
 * pattern without wildcards must exist). 0 ok, -1 with err.
 */
static int
text_read(struct cf_text *t, const char *path, int depth, char *err, size_t errlen)
{
    char *text = read_without_comments(path);
    if (text == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    t->files = xrealloc(t->files, (t->nfiles + 1) * sizeof(char *));
    const char *file = t->files[t->nfiles++] = xstrdup(path);
    int line = 1, rc = 0;
    for (char *p = text; rc == 0 && *p; line++) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *pat = include_pattern(p, n);
        if (pat == NULL) {
            text_add_line(t, p, n, file, line);
        } else {
            char full[PATH_MAX];
            const char *slash = strrchr(path, '/');
            if (pat[0] == '/' || slash == NULL)
                snprintf(full, sizeof(full), "%s", pat);
            else
                snprintf(full, sizeof(full), "%.*s/%s", (int)(slash - path), path, pat);
            glob_t g;
            int grc = glob(full, GLOB_ERR, NULL, &g);
            if (depth >= INCLUDE_MAX_DEPTH) {
                snprintf(err, errlen, "%s:%d: include: nested too deep", path, line);
                rc = -1;
            } else if (grc == GLOB_NOMATCH && strpbrk(pat, "*?[") == NULL) {
                snprintf(err, errlen, "%s:%d: include: %s: no such file", path, line, full);
                rc = -1;
            } else if (grc != 0 && grc != GLOB_NOMATCH) {
                snprintf(err, errlen, "%s:%d: include: cannot read %s", path, line, full);
                rc = -1;
            }
            text_add_line(t, "", 0, file, line);
            for (size_t i = 0; rc == 0 && grc == 0 && i < g.gl_pathc; i++)
                rc = text_read(t, g.gl_pathv[i], depth + 1, err, errlen);
            if (grc == 0)
                globfree(&g);
            free(pat);
        }
        p = nl ? nl + 1 : p + n;
    }
    free(text);
    return rc;
}

/* Resolve a configured path against the config file's folder. */
static char *
resolve_path(const char *dir, const char *p)
{
    if (p[0] == '/' || dir == NULL)
        return xstrdup(p);
    size_t n = strlen(dir) + strlen(p) + 2;
    char *r = xmalloc(n);
    snprintf(r, n, "%s/%s", dir, p);
    return r;
}

static int rule_text_line(const char *text, const char *name, int fallback);

/*
 * The line where rule "name" starts in text (libconfuse gives a section
 * the line where it ends); fallback when not found.
 */
static int
rule_line(const char *text, const char *name, int fallback, const char **file)
{
    int n = rule_text_line(text, name, fallback);
    int line;
    map_line(cf_map, n, file, &line);
    return line;
}

static int
rule_text_line(const char *text, const char *name, int fallback)
{
    size_t nl = strlen(name);
    for (const char *p = text ? strstr(text, "rule") : NULL; p; p = strstr(p + 4, "rule")) {
        const char *q = p + 4;
        if (p != text && !(p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n'))
            continue;
        while (*q == ' ' || *q == '\t')
            q++;
        if ((*q == '"' || *q == '\'') && strncmp(q + 1, name, nl) == 0 && q[1 + nl] == *q) {
            int line = 1;
            for (const char *s = text; s < p; s++)
                line += *s == '\n';
            return line;
        }
    }
    return fallback;
}

/* An action key's code: its word (from the file or the default) through the hook. */
static int
get_action(cfg_t *sec, const char *key, int *out, const char *path, char *err, size_t errlen)
{
    const char *word = cfg_getstr(sec, key);
    char why[200] = "";

    if (action_fn == NULL || word == NULL || action_fn(key, word, out, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: '%s': action '%s' not accepted%s%s", path, key,
                 word ? word : "", action_fn ? ": " : " (no action parser registered)", why);
        return -1;
    }
    return 0;
}

static int
get_rule(cfg_t *sec, const char *base, struct sr_limit_rule *r, const char *path, char *err,
         size_t errlen)
{
    char key[64];
    snprintf(key, sizeof(key), "%s_limit", base);
    r->threshold = cfg_getint(sec, key);
    snprintf(key, sizeof(key), "%s_action", base);
    return get_action(sec, key, &r->action, path, err, errlen);
}

/* A string list copied out (NULL-terminated), its size in n. */
static char **
get_list(cfg_t *sec, const char *key, size_t *n)
{
    *n = cfg_size(sec, key);
    char **v = xcalloc(*n + 1, sizeof(char *));
    for (size_t i = 0; i < *n; i++)
        v[i] = xstrdup(cfg_getnstr(sec, key, (unsigned)i));
    return v;
}

static void
free_list(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* The validating callback on every action key of a section's options. */
static void
validate_actions(cfg_t *cfg, const char *sec, const cfg_opt_t *opts)
{
    char name[128];
    for (const cfg_opt_t *o = opts; o->name; o++) {
        size_t n = strlen(o->name);
        if (strcmp(o->name, "action") != 0 && (n < 7 || strcmp(o->name + n - 7, "_action") != 0))
            continue;
        snprintf(name, sizeof(name), "%s|%s", sec, o->name);
        cfg_set_validate_func(cfg, name, cb_action);
    }
}

struct sr_config *
config_load(const char *path, int explicit_path, char *err, size_t errlen)
{
    struct sr_config *c;
    cfg_t *cfg;
    char *dir = NULL;
    const char *rules_text = NULL; /* the parsed text: where each rule starts */
    struct cf_text cft;

    memset(&cft, 0, sizeof(cft));
    int have_file = 0;

    err[0] = '\0';
    cf_err = err;
    cf_errlen = errlen;

    /*
     * Which file, if any.
     */
    if (path == NULL)
        path = SR_DEFAULT_CONFIG;
    if (access(path, F_OK) == 0) {
        have_file = 1;
    } else if (explicit_path) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }

    cfg = cfg_init(top_opts, CFGF_NONE);
    cfg_set_error_function(cfg, cf_errfunc);
    validate_actions(cfg, "virus", virus_opts);
    validate_actions(cfg, "scan", scan_opts);
    validate_actions(cfg, "rule", rule_opts);
    cf_path = path;
    if (have_file) {
        if (text_read(&cft, path, 0, err, errlen) < 0) {
            cfg_free(cfg);
            text_free(&cft);
            cf_path = NULL;
            return NULL;
        }
        cf_map = &cft;
        int rc = cfg_parse_buf(cfg, cft.text ? cft.text : "");
        rules_text = cft.text;
        if (rc != CFG_SUCCESS) {
            if (err[0] == '\0')
                snprintf(err, errlen, "%s: parse error", path);
            cfg_free(cfg);
            text_free(&cft);
            cf_path = NULL;
            cf_map = NULL;
            return NULL;
        }
        char *slash = strrchr(path, '/');
        if (slash) {
            char real[PATH_MAX];
            char *d = xstrndup(path, (size_t)(slash - path));
            if (realpath(d[0] ? d : "/", real) != NULL)
                dir = xstrdup(real);
            else
                dir = xstrdup(d);
            free(d);
        } else {
            char cwd[PATH_MAX];
            dir = xstrdup(getcwd(cwd, sizeof(cwd)) ? cwd : ".");
        }
    }

    /*
     * Copy out and check.
     */
    c = xcalloc(1, sizeof(*c));
    c->refs_ = 1;
    c->path = have_file ? xstrdup(path) : NULL;
    c->nlisten = cfg_size(cfg, "listen");
    if (c->nlisten == 0) {
        snprintf(err, errlen, "%s: 'listen' needs at least one address", path);
        goto bad;
    }
    c->listen = xcalloc(c->nlisten, sizeof(char *));
    for (size_t i = 0; i < c->nlisten; i++)
        c->listen[i] = xstrdup(cfg_getnstr(cfg, "listen", (unsigned)i));
    c->relay = xstrdup(cfg_getstr(cfg, "relay"));

    const char *st = cfg_getstr(cfg, "state_directory");
    const char *qd = cfg_getstr(cfg, "queue_directory");
    const char *cs = cfg_getstr(cfg, "control_socket");
    if (have_file) {
        c->state_directory = resolve_path(dir, st ? st : "/var/lib/scanrelay");
        c->queue_directory = resolve_path(dir, qd ? qd : "/var/spool/scanrelay");
        c->control_socket = resolve_path(dir, cs ? cs : "/run/scanrelay/control.sock");
    } else {
        c->state_directory = xstrdup("run/state");
        c->queue_directory = xstrdup("run/queue");
        c->control_socket = xstrdup("run/control.sock");
    }
    const char *us = cfg_getstr(cfg, "user");
    c->user = xstrdup(us ? us : "scanrelay");
    c->user_explicit = us != NULL;
    c->metrics_listen = xstrdup(cfg_getstr(cfg, "metrics_listen"));
    c->hostname = xstrdup(cfg_getstr(cfg, "hostname"));
    if (c->hostname[0] == '\0') {
        char h[256];
        free(c->hostname);
        if (gethostname(h, sizeof(h)) < 0)
            strcpy(h, "localhost");
        h[sizeof(h) - 1] = '\0';
        c->hostname = xstrdup(h);
    }
    c->max_message_size = cfg_getint(cfg, "max_message_size");
    c->max_connections = cfg_getint(cfg, "max_connections");
    c->max_recipients = cfg_getint(cfg, "max_recipients");
    c->max_command_length = cfg_getint(cfg, "max_command_length");
    c->max_commands = cfg_getint(cfg, "max_commands");
    c->max_errors = cfg_getint(cfg, "max_errors");
    c->smtpd_timeout = cfg_getint(cfg, "smtpd_timeout");
    c->smtpd_command_deadline = cfg_getint(cfg, "smtpd_command_deadline");
    c->smtpd_min_data_rate = cfg_getint(cfg, "smtpd_min_data_rate");
    c->nxforward_networks = cfg_size(cfg, "xforward_networks");
    c->xforward_networks = xcalloc(c->nxforward_networks + 1, sizeof(char *));
    for (size_t i = 0; i < c->nxforward_networks; i++)
        c->xforward_networks[i] = xstrdup(cfg_getnstr(cfg, "xforward_networks", (unsigned)i));
    c->body_memory_limit = cfg_getint(cfg, "body_memory_limit");
    c->relay_connections = cfg_getint(cfg, "relay_connections");
    c->relay_connect_timeout = cfg_getint(cfg, "relay_connect_timeout");
    c->relay_timeout = cfg_getint(cfg, "relay_timeout");
    c->relay_data_timeout = cfg_getint(cfg, "relay_data_timeout");
    c->relay_idle_time = cfg_getint(cfg, "relay_idle_time");
    c->shutdown_timeout = cfg_getint(cfg, "shutdown_timeout");
    c->debug = cfg_getbool(cfg, "debug");

    if (c->max_command_length < 512) {
        snprintf(err, errlen, "%s: max_command_length must be at least 512", path);
        goto bad;
    }
    if (c->max_connections < 1 || c->relay_connections < 1 || c->max_recipients < 1) {
        snprintf(err, errlen,
                 "%s: max_connections, relay_connections and max_recipients must be at least 1",
                 path);
        goto bad;
    }

    cfg_t *v = cfg_getsec(cfg, "virus");
    c->virus.database_directory = resolve_path(dir, cfg_getstr(v, "database_directory"));
    if (get_action(v, "action", &c->virus.action, path, err, errlen) < 0)
        goto bad;
    c->virus.check_interval = cfg_getint(v, "check_interval");
    c->virus.max_scan_size = cfg_getint(v, "max_scan_size");
    c->virus.max_file_size = cfg_getint(v, "max_file_size");
    c->virus.max_recursion = cfg_getint(v, "max_recursion");
    c->virus.max_files = cfg_getint(v, "max_files");
    c->virus.max_scan_time = cfg_getint(v, "max_scan_time");
    const char *td = cfg_getstr(v, "temporary_directory");
    if (td[0]) {
        c->virus.temporary_directory = resolve_path(dir, td);
    } else {
        /* libclamav makes a folder per scan: on a RAM-backed file system
         * that costs next to nothing, on a disk it is a good part of a
         * small message's scan. */
        const char *env = getenv("TMPDIR");
        if (env && env[0] == '/')
            c->virus.temporary_directory = xstrdup(env);
        else if (access("/dev/shm", W_OK | X_OK) == 0)
            c->virus.temporary_directory = xstrdup("/dev/shm");
        else
            c->virus.temporary_directory = xstrdup("/tmp");
    }

    cfg_t *s = cfg_getsec(cfg, "scan");
    c->scan.enabled = cfg_getbool(s, "enabled");
    c->scan.threads = cfg_getint(s, "threads");
    c->scan.max_pending = cfg_getint(s, "max_pending");
    c->scan.timeout = cfg_getint(s, "timeout");
    c->scan.max_mime_depth = cfg_getint(s, "max_mime_depth");
    c->scan.max_mime_parts = cfg_getint(s, "max_mime_parts");
    if (get_rule(s, "message_size", &c->scan.message_size, path, err, errlen) < 0 ||
        get_rule(s, "file_size", &c->scan.file_size, path, err, errlen) < 0 ||
        get_rule(s, "total_size", &c->scan.total_size, path, err, errlen) < 0 ||
        get_rule(s, "archive_files", &c->scan.archive_files, path, err, errlen) < 0 ||
        get_rule(s, "archive_depth", &c->scan.archive_depth, path, err, errlen) < 0 ||
        get_rule(s, "compression_ratio", &c->scan.compression_ratio, path, err, errlen) < 0 ||
        get_rule(s, "recipients", &c->scan.recipients, path, err, errlen) < 0 ||
        get_action(s, "encrypted_action", &c->scan.encrypted_action, path, err, errlen) < 0 ||
        get_action(s, "error_action", &c->scan.error_action, path, err, errlen) < 0)
        goto bad;

    cfg_t *q = cfg_getsec(cfg, "queue");
    c->queue.queue_run_delay = cfg_getint(q, "queue_run_delay");
    c->queue.minimal_backoff_time = cfg_getint(q, "minimal_backoff_time");
    c->queue.maximal_backoff_time = cfg_getint(q, "maximal_backoff_time");
    c->queue.maximal_queue_lifetime = cfg_getint(q, "maximal_queue_lifetime");
    c->queue.bounce_queue_lifetime = cfg_getint(q, "bounce_queue_lifetime");
    c->queue.delay_warning_time = cfg_getint(q, "delay_warning_time");
    c->queue.max_parallel = cfg_getint(q, "max_parallel");
    c->queue.min_free_space = cfg_getint(q, "min_free_space");
    c->queue.probe_interval = cfg_getint(q, "probe_interval");
    if (c->queue.queue_run_delay < 1 || c->queue.minimal_backoff_time < 1 ||
        c->queue.maximal_backoff_time < c->queue.minimal_backoff_time ||
        c->queue.max_parallel < 1 || c->queue.probe_interval < 1) {
        snprintf(err, errlen,
                 "%s: queue: queue_run_delay and minimal_backoff_time must be at least 1s, "
                 "maximal_backoff_time at least minimal_backoff_time, max_parallel and probe_interval at least 1",
                 path);
        goto bad;
    }

    cfg_t *qr = cfg_getsec(cfg, "quarantine");
    c->quarantine.retention = cfg_getint(qr, "retention");
    c->quarantine.quota = cfg_getint(qr, "quota");

    cfg_t *lg = cfg_getsec(cfg, "log");
    c->log.enabled = cfg_getbool(lg, "enabled");
    c->log.retention = cfg_getint(lg, "retention");
    c->log.queue_max = cfg_getint(lg, "queue_max");

    cfg_t *al = cfg_getsec(cfg, "alert");
    c->alert.interval = cfg_getint(al, "interval");
    c->alert.signature_age = cfg_getint(al, "signature_age");
    c->alert.min_free_space = cfg_getint(al, "min_free_space");
    c->alert.queue_size = cfg_getint(al, "queue_size");
    c->alert.downstream_down = cfg_getint(al, "downstream_down");
    c->alert.daily_report = cfg_getbool(al, "daily_report");
    if (c->alert.interval < 1 || c->log.queue_max < 1) {
        snprintf(err, errlen, "%s: alert.interval must be at least 1s, log.queue_max at least 1",
                 path);
        goto bad;
    }

    cfg_t *nf = cfg_getsec(cfg, "notify");
    c->notify.from = xstrdup(cfg_getstr(nf, "from"));
    c->notify.admin = get_list(nf, "admin", &c->notify.nadmin);
    c->notify.admin_kinds = get_list(nf, "admin_kinds", &c->notify.nadmin_kinds);
    c->notify.recipient_kinds = get_list(nf, "recipient_kinds", &c->notify.nrecipient_kinds);
    c->notify.sender_kinds = get_list(nf, "sender_kinds", &c->notify.nsender_kinds);
    c->notify.sender_outside_local = cfg_getbool(nf, "sender_outside_local");
    c->notify.window = cfg_getint(nf, "window");
    c->notify.rate_limit = cfg_getint(nf, "rate_limit");
    c->notify.language = xstrdup(cfg_getstr(nf, "language"));
    c->notify.charset = xstrdup(cfg_getstr(nf, "charset"));
    c->notify.attach = xstrdup(cfg_getstr(nf, "attach"));
    c->notify.attach_limit = cfg_getint(nf, "attach_limit");
    c->notify.template_directory = resolve_path(dir, cfg_getstr(nf, "template_directory"));
    c->local_domains = get_list(cfg, "local_domains", &c->nlocal_domains);

    c->nrules = cfg_size(cfg, "rule");
    c->rules = xcalloc(c->nrules ? c->nrules : 1, sizeof(*c->rules));
    for (size_t i = 0; i < c->nrules; i++) {
        cfg_t *rs = cfg_getnsec(cfg, "rule", (unsigned)i);
        struct sr_config_rule *r = &c->rules[i];
        r->name = xstrdup(cfg_title(rs));
        const char *rfile = NULL;
        r->line = rule_line(rules_text, r->name, rs->line, &rfile);
        r->file = xstrdup(rfile ? rfile : path);
        for (int k = 0; k < SR_RL_N; k++) {
            struct sr_strlist *l = &r->list[k];
            l->n = cfg_size(rs, sr_rule_list_keys[k]);
            l->v = xcalloc(l->n + 1, sizeof(char *));
            for (size_t j = 0; j < l->n; j++)
                l->v[j] = xstrdup(cfg_getnstr(rs, sr_rule_list_keys[k], (unsigned)j));
        }
        r->match = xstrdup(cfg_getstr(rs, "match"));
        r->case_sensitive = cfg_getbool(rs, "case");
        r->min_size = cfg_getint(rs, "min_size");
        r->max_size = cfg_getint(rs, "max_size");
        r->min_recipients = cfg_getint(rs, "min_recipients");
        r->min_attachments = cfg_getint(rs, "min_attachments");
        r->reject_text = xstrdup(cfg_getstr(rs, "reject_text"));
        r->tag_header = xstrdup(cfg_getstr(rs, "tag_header"));
        r->expires = xstrdup(cfg_getstr(rs, "expires"));
        if (get_action(rs, "action", &r->action, r->file, err, errlen) < 0)
            goto bad;
        if (strcmp(r->match, "any") != 0 && strcmp(r->match, "all") != 0 &&
            strcmp(r->match, "phrase") != 0) {
            snprintf(err, errlen, "%s:%d: rule \"%s\": match must be any, all or phrase, not '%s'",
                     r->file, r->line, r->name, r->match);
            goto bad;
        }
    }

    cfg_free(cfg);
    free(dir);
    text_free(&cft);
    cf_err = NULL;
    cf_path = NULL;
    cf_map = NULL;
    return c;

bad:
    cfg_free(cfg);
    free(dir);
    text_free(&cft);
    cf_map = NULL;
    config_free(c);
    cf_err = NULL;
    cf_path = NULL;
    return NULL;
}

struct sr_config *
config_ref(struct sr_config *c)
{
    __atomic_add_fetch(&c->refs_, 1, __ATOMIC_RELAXED);
    return c;
}

void
config_unref(struct sr_config *c)
{
    if (c != NULL && __atomic_sub_fetch(&c->refs_, 1, __ATOMIC_ACQ_REL) == 0)
        config_free(c);
}

void
config_free(struct sr_config *c)
{
    if (c == NULL)
        return;
    free(c->path);
    for (size_t i = 0; c->listen && i < c->nlisten; i++)
        free(c->listen[i]);
    free(c->listen);
    free(c->relay);
    free(c->state_directory);
    free(c->queue_directory);
    free(c->control_socket);
    free(c->user);
    free(c->metrics_listen);
    free(c->hostname);
    for (size_t i = 0; c->xforward_networks && i < c->nxforward_networks; i++)
        free(c->xforward_networks[i]);
    free(c->xforward_networks);
    free(c->virus.database_directory);
    free(c->virus.temporary_directory);
    free(c->notify.from);
    free_list(c->notify.admin);
    free_list(c->notify.admin_kinds);
    free_list(c->notify.recipient_kinds);
    free_list(c->notify.sender_kinds);
    free(c->notify.language);
    free(c->notify.charset);
    free(c->notify.attach);
    free(c->notify.template_directory);
    free_list(c->local_domains);
    for (size_t i = 0; c->rules && i < c->nrules; i++) {
        struct sr_config_rule *r = &c->rules[i];
        free(r->name);
        free(r->file);
        for (int k = 0; k < SR_RL_N; k++) {
            for (size_t j = 0; r->list[k].v && j < r->list[k].n; j++)
                free(r->list[k].v[j]);
            free(r->list[k].v);
        }
        free(r->match);
        free(r->reject_text);
        free(r->tag_header);
        free(r->expires);
    }
    free(c->rules);
    if (c->attach && c->attach_free)
        c->attach_free(c->attach);
    free(c);
}
