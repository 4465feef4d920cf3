/*
 * cmd_quarantine.c - "scanrelay quarantine": the quarantine store as the
 * administrator sees it.
 *
 *   scanrelay quarantine list [--from A] [--to A] [--subject GLOB]
 *        [--reason R] [--rule NAME] [--since T] [--until T] [--limit N]
 *        [--state held|released|deleted|all]
 *   scanrelay quarantine show ID [--raw]
 *   scanrelay quarantine release ID [--to ADDR...]
 *   scanrelay quarantine delete ID...
 *   scanrelay quarantine stats               (cmd_qstats.c)
 *
 * list and show open the index read-only (quarantine/qstore.h) and work
 * whether or not the daemon runs. Filters: addresses compare without case,
 * with * ? [ as shell globs; --subject is a shell glob on the decoded
 * subject, folded the same way (NFKC + Unicode case folding), so
 * 'code name*' and '日本語*' do what they look like. T is "2026-11-23",
 * "2026-11-23 10:00[:SS]" (local time, 'T' accepted) or an age such as
 * "2h", "3d", "30min". Newest first; deleted entries only with --state.
 * -j prints one JSON object per entry with at least id, time, sender,
 * recipients, subject, size, reason, rule, virus, score, state.
 *
 * show prints the record, the decoded header fields and the MIME parts
 * (decoded names, types, sizes; scan/mime.h) and the findings; --raw
 * writes the stored message bytes unchanged to standard output.
 *
 * release and delete are the daemon's work (it writes the store and
 * delivers): request lines "qrelease ID [ADDR...]" and "qdelete ID...".
 * A release with the daemon down fails with status 2 and says so; a
 * delete with the daemon down is done here directly (SQLite locking makes
 * that safe; run it as the daemon's user).
 *
 * Exit status: 0 done, 1 not found or the daemon answered ERR, 2 usage or
 * runtime error (daemon not running for a release).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "cli.h"
#include "config.h"
#include "ctl.h"
#include "mime.h"
#include "msglog.h"
#include "qstore.h"

int cmd_quarantine(struct cli_opts *o, int argc, char **argv);

/*
 * Helpers shared with cmd_log.c.
 */

/* "2026-11-23[ T]HH:MM[:SS]" local, or an age ("2h") before now. 0 / -1. */
int
qcli_parse_time(const char *s, int64_t now, int64_t *out)
{
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    int64_t age;

    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && n == 10) {
        const char *p = s + 10;
        if (*p == ' ' || *p == 'T') {
            int m = 0;
            if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &m) != 2 || m != 5)
                return -1;
            p += 1 + m;
            if (*p == ':') {
                if (sscanf(p + 1, "%2d%n", &sec, &m) != 1 || m != 2)
                    return -1;
                p += 1 + m;
            }
        }
        if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
            return -1;
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        tm.tm_isdst = -1;
        time_t t = mktime(&tm);
        if (t == (time_t)-1)
            return -1;
        *out = (int64_t)t;
        return 0;
    }
    if (config_parse_duration(s, &age) == 0 && age >= 0) {
        *out = now - age;
        return 0;
    }
    return -1;
}

/* "2026-11-23 10:00:05" in local time. */
void
qcli_format_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (localtime_r(&tt, &tm) == NULL || strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, len, "%lld", (long long)t);
}

int
qcli_parse_limit(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

static void
jstr(FILE *fp, const char *s)
{
    if (s == NULL)
        fputs("null", fp);
    else
        cli_put_json(fp, s);
}

static int
valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= QSTORE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= 'a' && s[i] <= 'z')))
            return 0;
    return 1;
}

/* Open the index read-only; NULL with *absent = 1 when there is none yet. */
static struct qstore *
open_ro(struct cli_opts *o, int *absent)
{
    char err[1024], path[4096];
    struct qstore *qs;

    *absent = 0;
    snprintf(path, sizeof(path), "%s/quarantine.db", o->cfg->state_directory);
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        *absent = 1;
        return NULL;
    }
    if ((qs = qstore_open(o->cfg->state_directory, QSTORE_RDONLY, err, sizeof(err))) == NULL)
        fprintf(stderr, "scanrelay: cannot open the quarantine index: %s\n", err);
    return qs;
}

/*
 * list
 */

struct list_ctx {
    struct cli_opts *o;
    long n;
    int64_t bytes;
};

static void
print_entry_json(FILE *fp, const struct qmeta *m)
{
    char when[32];
    qcli_format_time(m->time, when, sizeof(when));
    fputs("{\"id\": ", fp);
    jstr(fp, m->id);
    fprintf(fp, ", \"time\": %lld, \"date\": \"%s\", \"client\": ", (long long)m->time, when);
    jstr(fp, m->client);
    fputs(", \"sender\": ", fp);
    jstr(fp, m->sender);
    fputs(", \"recipients\": [", fp);
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (i)
            fputs(", ", fp);
        jstr(fp, m->rcpts[i]);
    }
    fputs("], \"from\": ", fp);
    jstr(fp, m->hdr_from);
    fputs(", \"subject\": ", fp);
    jstr(fp, m->subject);
    fputs(", \"message_id\": ", fp);
    jstr(fp, m->message_id);
    fprintf(fp, ", \"size\": %lld, \"stored_size\": %lld, \"reason\": \"%s\", \"rule\": ",
            (long long)m->size, (long long)m->stored_size, qreason_name(m->reason));
    jstr(fp, m->rule && m->rule[0] ? m->rule : NULL);
    fputs(", \"virus\": ", fp);
    jstr(fp, m->virus && m->virus[0] ? m->virus : NULL);
    fprintf(fp, ", \"score\": %.2f, \"state\": \"%s\", \"state_time\": %lld}\n", m->score,
            qstate_name(m->state), (long long)m->state_time);
}

static int
list_cb(void *arg, const struct qmeta *m)
{
    struct list_ctx *c = arg;
    char when[32];

    c->n++;
    c->bytes += m->size;
    if (c->o->json) {
        print_entry_json(stdout, m);
        return ferror(stdout) ? 1 : 0;
    }
    if (c->n == 1)
        printf("%-15s %-19s %9s %-9s %-8s %s\n", "-Quarantine ID-", "-------Date--------",
               "--Size--", "-Reason-", "-State-", "-Sender/Subject/Recipients-");
    qcli_format_time(m->time, when, sizeof(when));
    printf("%-15s %-19s %9lld %-9s %-8s ", m->id, when, (long long)m->size, qreason_name(m->reason),
           qstate_name(m->state));
    cli_put_safe(stdout, m->sender[0] ? m->sender : "MAILER-DAEMON");
    printf("\n%65s", "Subject: ");
    cli_put_safe(stdout, m->subject);
    putchar('\n');
    if ((m->virus && m->virus[0]) || (m->rule && m->rule[0]) || m->reason == QREASON_SPAM) {
        printf("%65s", "");
        if (m->virus && m->virus[0]) {
            fputs("Virus: ", stdout);
            cli_put_safe(stdout, m->virus);
            putchar(' ');
        }
        if (m->rule && m->rule[0]) {
            fputs("Rule: ", stdout);
            cli_put_safe(stdout, m->rule);
            putchar(' ');
        }
        if (m->reason == QREASON_SPAM)
            printf("Score: %.2f", m->score);
        putchar('\n');
    }
    for (size_t i = 0; i < m->nrcpt; i++) {
        printf("%65s", "");
        cli_put_safe(stdout, m->rcpts[i]);
        putchar('\n');
    }
    putchar('\n');
    return ferror(stdout) ? 1 : 0;
}

static void
list_usage(void)
{
    fprintf(stderr, "usage: scanrelay [-j] quarantine list [--from A] [--to A] [--subject GLOB] "
                    "[--reason R] [--rule NAME] [--since T] [--until T] [--limit N] "
                    "[--state held|released|deleted|all]\n");
}

static int
quarantine_list(struct cli_opts *o, int argc, char **argv)
{
    struct qfilter f;
    int64_t now = (int64_t)time(NULL);
    int absent;

    qfilter_init(&f);
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (val == NULL) {
            list_usage();
            return 2;
        }
        i++;
        if (strcmp(opt, "--from") == 0) {
            f.sender = val;
        } else if (strcmp(opt, "--to") == 0) {
            f.recipient = val;
        } else if (strcmp(opt, "--subject") == 0) {
            f.subject = val;
        } else if (strcmp(opt, "--reason") == 0) {
            if ((f.reason = qreason_parse(val)) < 0) {
                fprintf(stderr,
                        "scanrelay: unknown reason '%s' (virus, encrypted, limit, "
                        "policy, spam)\n",
                        val);
                return 2;
            }
        } else if (strcmp(opt, "--rule") == 0) {
            f.rule = val;
        } else if (strcmp(opt, "--since") == 0 || strcmp(opt, "--until") == 0) {
            int64_t *t = opt[2] == 's' ? &f.since : &f.until;
            if (qcli_parse_time(val, now, t) < 0) {
                fprintf(stderr,
                        "scanrelay: bad time '%s' (2026-11-23, \"2026-11-23 10:00\", "
                        "2h, 3d)\n",
                        val);
                return 2;
            }
        } else if (strcmp(opt, "--limit") == 0) {
            if (qcli_parse_limit(val, &f.limit) < 0) {
                list_usage();
                return 2;
            }
        } else if (strcmp(opt, "--state") == 0) {
            if (strcmp(val, "all") == 0)
                f.state = -2;
            else if ((f.state = qstate_parse(val)) < 0) {
                list_usage();
                return 2;
            }
        } else {
            list_usage();
            return 2;
        }
    }

    struct qstore *qs = open_ro(o, &absent);
    if (qs == NULL && !absent)
        return 2;
    struct list_ctx c = {o, 0, 0};
    long k = qs ? qstore_query(qs, &f, list_cb, &c) : 0;
    qstore_close(qs);
    if (k < 0) {
        fprintf(stderr, "scanrelay: quarantine query failed\n");
        return 2;
    }
    if (!o->json) {
        if (c.n == 0)
            printf("Quarantine is empty%s\n", f.sender || f.recipient || f.subject ||
                                                      f.reason >= 0 || f.rule || f.since ||
                                                      f.until || f.state != -1
                                                  ? " (for this selection)"
                                                  : "");
        else
            printf("-- %lld Kbytes in %ld message%s.\n", (long long)(c.bytes / 1024), c.n,
                   c.n == 1 ? "" : "s");
    }
    return cli_flush_stdout();
}

/*
 * show
 */

struct show_ctx {
    struct cli_opts *o;
    int found;
};

static void
field(const char *name, const char *val)
{
    if (val == NULL || val[0] == '\0')
        return;
    printf("%-12s ", name);
    cli_put_safe(stdout, val);
    putchar('\n');
}

static int
show_meta(void *arg, const struct qmeta *m)
{
    struct show_ctx *c = arg;
    char when[32], buf[64];

    c->found = 1;
    if (c->o->json) {
        print_entry_json(stdout, m);
        return 0;
    }
    field("ID:", m->id);
    qcli_format_time(m->time, when, sizeof(when));
    field("Quarantined:", when);
    qcli_format_time(m->state_time, when, sizeof(when));
    snprintf(buf, sizeof(buf), "%s (since %s)", qstate_name(m->state), when);
    field("State:", buf);
    field("Reason:", qreason_name(m->reason));
    field("Virus:", m->virus);
    field("Rule:", m->rule);
    if (m->reason == QREASON_SPAM || m->score != 0) {
        snprintf(buf, sizeof(buf), "%.2f", m->score);
        field("Score:", buf);
    }
    field("Client:", m->client);
    printf("%-12s <", "Sender:");
    cli_put_safe(stdout, m->sender);
    printf(">\n");
    for (size_t i = 0; i < m->nrcpt; i++)
        field(i == 0 ? "Recipients:" : "", m->rcpts[i]);
    snprintf(buf, sizeof(buf), "%lld bytes (%lld stored)", (long long)m->size,
             (long long)m->stored_size);
    field("Size:", buf);
    return 0;
}

/* Read the whole stored message; NULL on error. */
static char *
slurp(struct qstore *qs, const char *id, size_t *len)
{
    struct qmsg *m = qstore_open_message(qs, id);
    size_t cap = 65536, n = 0;
    char *buf;
    ssize_t k;

    if (m == NULL)
        return NULL;
    if ((buf = malloc(cap)) == NULL) {
        qmsg_close(m);
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                k = -1;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        if ((k = qmsg_read(m, buf + n, cap - n)) <= 0)
            break;
        n += (size_t)k;
    }
    qmsg_close(m);
    if (k < 0) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* The raw header value of name (unfolded, first occurrence), RFC 2047-decoded. */
static char *
header_value(const char *raw, size_t len, const char *name)
{
    size_t nl = strlen(name), i = 0;
    while (i < len) {
        size_t eol = i;
        while (eol < len && raw[eol] != '\n')
            eol++;
        if (eol == i || (eol == i + 1 && raw[i] == '\r'))
            return NULL; /* end of the header */
        if (eol - i > nl && strncasecmp(raw + i, name, nl) == 0 && raw[i + nl] == ':') {
            /* Unfold the continuation lines. */
            size_t end = eol;
            while (end + 1 < len && (raw[end + 1] == ' ' || raw[end + 1] == '\t')) {
                end++;
                while (end < len && raw[end] != '\n')
                    end++;
            }
            char *v = malloc(end - i + 1);
            size_t o = 0;
            if (v == NULL)
                return NULL;
            for (size_t p = i + nl + 1; p < end; p++)
                if (raw[p] != '\r' && raw[p] != '\n')
                    v[o++] = raw[p] == '\t' ? ' ' : raw[p];
            v[o] = '\0';
            char *s = v;
            while (*s == ' ')
                s++;
            char *dec = g_mime_utils_header_decode_text(NULL, s);
            free(v);
            if (dec == NULL)
                return NULL;
            char *out = strdup(dec);
            g_free(dec);
            return out;
        }
        i = eol + 1;
    }
    return NULL;
}

static int
print_part(void *arg, const struct mime_part_info *pi)
{
    (void)arg;
    printf("  %-6s %-32s %9zu bytes", pi->section ? pi->section : "", pi->content_type, pi->len);
    if (pi->encoded_len != (int64_t)pi->len)
        printf(" (%lld encoded)", (long long)pi->encoded_len);
    if (pi->filename) {
        fputs("  ", stdout);
        cli_put_safe(stdout, pi->filename);
    }
    if (pi->embedded)
        fputs("  [embedded]", stdout);
    if (pi->decode_error)
        fputs("  [decode error]", stdout);
    putchar('\n');
    return ferror(stdout) ? 1 : 0;
}

static int
quarantine_show(struct cli_opts *o, int argc, char **argv)
{
    const char *id = NULL;
    int raw = 0, absent, rc = 0;

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--raw") == 0)
            raw = 1;
        else if (id == NULL)
            id = argv[i];
        else
            id = "";
    }
    if (id == NULL || id[0] == '\0') {
        fprintf(stderr, "usage: scanrelay [-j] quarantine show ID [--raw]\n");
        return 2;
    }
    if (!valid_id(id)) {
        fprintf(stderr, "scanrelay: invalid quarantine ID: ");
        cli_put_safe(stderr, id);
        putc('\n', stderr);
        return 2;
    }
    struct qstore *qs = open_ro(o, &absent);
    if (qs == NULL) {
        if (!absent)
            return 2;
        fprintf(stderr, "scanrelay: %s: no such message in the quarantine\n", id);
        return 1;
    }

    if (raw) {
        fflush(stdout);
        if (qstore_copy_message(qs, id, STDOUT_FILENO) < 0) {
            if (errno == ENOENT)
                fprintf(stderr, "scanrelay: %s: no such message in the quarantine\n", id);
            else
                fprintf(stderr, "scanrelay: %s: cannot read the stored message: %s\n", id,
                        strerror(errno));
            rc = errno == ENOENT ? 1 : 2;
        }
        qstore_close(qs);
        return rc;
    }

    struct show_ctx c = {o, 0};
    if (qstore_get(qs, id, show_meta, &c) < 0 || !c.found) {
        fprintf(stderr, "scanrelay: %s: %s\n", id,
                c.found ? "quarantine query failed" : "no such message in the quarantine");
        qstore_close(qs);
        return c.found ? 2 : 1;
    }
    if (o->json) {
        qstore_close(qs);
        return 0;
    }

    size_t len = 0;
    char *msg = slurp(qs, id, &len);
    qstore_close(qs);
    if (msg == NULL) {
        printf("\n(the message itself is %s)\n",
               errno == ENOENT ? "no longer stored" : "unreadable");
        return errno == ENOENT ? 0 : 2;
    }
    mime_global_init();
    char err[256];
    struct mime_msg *mm = mime_parse_mem(msg, len, 0, 0, err, sizeof(err));
    if (mm == NULL) {
        printf("\n(cannot parse the message: %s)\n", err);
        free(msg);
        mime_global_shutdown();
        return 2;
    }
    printf("\nHeader (decoded):\n");
    static const char *const names[] = {"Date", "From", "Sender",  "Reply-To",
                                        "To",   "Cc",   "Subject", "Message-ID"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *v;
        if (strcmp(names[i], "Subject") == 0)
            v = strdup(mime_subject(mm));
        else if (strcmp(names[i], "From") == 0)
            v = strdup(mime_from(mm));
        else
            v = header_value(msg, len, names[i]);
        if (v && v[0]) {
            printf("  %s: ", names[i]);
            cli_put_safe(stdout, v);
            putchar('\n');
        }
        free(v);
    }
    printf("\nParts:\n");
    if (mime_walk(mm, print_part, NULL) < 0)
        printf("  (out of memory)\n");
    if (mime_limits_hit(mm))
        printf("  (MIME limits hit: not every part listed)\n");
    mime_free(mm);
    free(msg);
    mime_global_shutdown();
    if (fflush(stdout) != 0 || ferror(stdout))
        return 2;
    return rc;
}

/*
 * release, delete
 */

/* Does the quarantine hold ID (not deleted)? 1 yes, 0 no, -1 error. */
static int
held(struct cli_opts *o, const char *id)
{
    int absent;
    struct qstore *qs = open_ro(o, &absent);
    if (qs == NULL)
        return absent ? 0 : -1;
    struct qmsg *m = qstore_open_message(qs, id);
    int rc = m ? 1 : errno == ENOENT ? 0 : -1;
    qmsg_close(m);
    qstore_close(qs);
    return rc;
}

static int
quarantine_release(struct cli_opts *o, int argc, char **argv)
{
    char req[CTL_LINE_MAX];
    size_t len;
    int i = 2;

    if (argc < 3 || !valid_id(argv[2])) {
        fprintf(stderr, "usage: scanrelay quarantine release ID [--to ADDR...]\n");
        return 2;
    }
    int k = held(o, argv[2]);
    if (k <= 0) {
        fprintf(stderr, "scanrelay: %s: %s\n", argv[2],
                k == 0 ? "no such message in the quarantine" : "cannot read the quarantine");
        return k == 0 ? 1 : 2;
    }
    len = (size_t)snprintf(req, sizeof(req), "qrelease %s", argv[2]);
    for (i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0)
            continue;
        if (strpbrk(argv[i], " \t\r\n") != NULL || argv[i][0] == '\0') {
            fprintf(stderr, "scanrelay: bad address: ");
            cli_put_safe(stderr, argv[i]);
            putc('\n', stderr);
            return 2;
        }
        if (len + 1 + strlen(argv[i]) >= sizeof(req) - 1) {
            fprintf(stderr, "scanrelay: too many recipients for one request\n");
            return 2;
        }
        len += (size_t)snprintf(req + len, sizeof(req) - len, " %s", argv[i]);
    }
    k = cli_daemon_request(o, req);
    if (k == 2)
        fprintf(stderr,
                "scanrelay: %s was not released: a release is delivered by the daemon; "
                "start scanrelayd and try again\n",
                argv[2]);
    return k;
}

/* The message-log row of a delete done here (msglog_admin_row, as the daemon writes it). */
static int
delete_row_cb(void *arg, const struct qmeta *m)
{
    struct msglog_row row;
    msglog_admin_row(&row, m, "deleted",
                     "deleted from the quarantine (scanrelay, daemon not running)");
    msglog_append(arg, &row);
    return 0;
}

static int
quarantine_delete(struct cli_opts *o, int argc, char **argv)
{
    char req[CTL_LINE_MAX];
    size_t len;
    int rc = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: scanrelay quarantine delete ID...\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (!valid_id(argv[i])) {
            fprintf(stderr, "scanrelay: invalid quarantine ID: ");
            cli_put_safe(stderr, argv[i]);
            putc('\n', stderr);
            return 2;
        }
    }

    /* Through the daemon, as many IDs per request as fit. */
    len = (size_t)snprintf(req, sizeof(req), "qdelete");
    for (int i = 2; i <= argc; i++) {
        if (i == argc || len + 1 + strlen(argv[i]) >= sizeof(req) - 1) {
            int k = cli_daemon_request(o, req);
            if (k == 2)
                goto offline;
            if (k > rc)
                rc = k;
            if (i == argc)
                break;
            len = (size_t)snprintf(req, sizeof(req), "qdelete");
        }
        len += (size_t)snprintf(req + len, sizeof(req) - len, " %s", argv[i]);
    }
    return rc;

offline:
    /* No daemon: nobody else writes; do it here. */
    fprintf(stderr, "scanrelay: deleting directly in %s\n", o->cfg->state_directory);
    char err[1024];
    struct qstore *qs = qstore_open(o->cfg->state_directory, 0, err, sizeof(err));
    if (qs == NULL) {
        fprintf(stderr, "scanrelay: cannot open the quarantine: %s\n", err);
        return 2;
    }
    /* The message log gets its row as from the daemon (when the log is kept). */
    struct msglog *log = NULL;
    if (o->cfg->log.enabled) {
        char path[4096];
        struct msglog_opts mo = {0};
        snprintf(path, sizeof(path), "%s/messages.db", o->cfg->state_directory);
        log = msglog_open(path, &mo, err, sizeof(err));
        if (log == NULL)
            fprintf(stderr, "scanrelay: message log: %s (no row for the delete)\n", err);
    }
    for (int i = 2; i < argc; i++) {
        int k = qstore_delete(qs, argv[i], 0);
        if (k == 1 && log)
            qstore_get(qs, argv[i], delete_row_cb, log);
        if (k == 1) {
            printf("%s: deleted\n", argv[i]);
        } else {
            fprintf(stderr, "scanrelay: %s: %s\n", argv[i],
                    k == 0 ? "no such message in the quarantine" : "cannot delete");
            if (rc < (k == 0 ? 1 : 2))
                rc = k == 0 ? 1 : 2;
        }
    }
    msglog_close(log);
    qstore_close(qs);
    return rc;
}

int
cmd_quarantine(struct cli_opts *o, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "list") == 0)
        return quarantine_list(o, argc, argv);
    if (strcmp(argv[1], "show") == 0)
        return quarantine_show(o, argc, argv);
    if (strcmp(argv[1], "release") == 0)
        return quarantine_release(o, argc, argv);
    if (strcmp(argv[1], "delete") == 0)
        return quarantine_delete(o, argc, argv);
    if (strcmp(argv[1], "stats") == 0)
        return quarantine_stats(o, argc, argv);
    fprintf(stderr, "usage: scanrelay [-j] quarantine list|show|release|delete|stats ...\n");
    return 2;
}
