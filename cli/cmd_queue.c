/*
 * cmd_queue.c - "scanrelay queue" and "scanrelay flush": the deferred
 * queue as the administrator sees it.
 *
 *   scanrelay queue                      list, postqueue -p layout
 *   scanrelay -j queue                   list, postqueue -j (one JSON object per line)
 *   scanrelay queue delete|hold|release|requeue ID...|ALL
 *                                        postsuper -d/-h/-H/-r, by the daemon
 *   scanrelay flush [ID...]              postqueue -f / -i, by the daemon
 *
 * Listing reads the queue files directly (queue_dir_scan, queue_file_load
 * without the content), so it works whether or not the daemon runs; files
 * that vanish meanwhile are skipped, unreadable ones are reported on
 * stderr and skipped. Messages are listed in queue ID order (= arrival
 * order). The text layout is Postfix 3's postqueue -p with short queue
 * IDs: "%-11s %7ld %20.20s %s" with "!" appended to held IDs (our IDs are
 * 14 characters, so the row runs three columns past the header, as
 * Postfix's own long IDs do), reasons right-aligned to column 78 or
 * flush left when longer, recipients indented 41 columns and grouped
 * under their reason, a blank line after each message, and the trailer
 * "-- N Kbytes in M Request(s)." or "Mail queue is empty". Bytes that
 * would upset a terminal (control characters, invalid UTF-8) print as
 * "?"; JSON strings escape them (\uXXXX, U+FFFD for invalid UTF-8).
 *
 * Actions go to the daemon over the control socket (ctl_request), one
 * request per CTL_LINE_MAX worth of IDs. Exit status: 0 done, 1 the
 * daemon answered ERR, 2 usage error, daemon not running or unreachable.
 * Allocation failures end the command with status 2.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "config.h"
#include "ctl.h"
#include "queue_file.h"

/* Registered in scanrelay.c's command table. */
int cmd_queue(struct cli_opts *o, int argc, char **argv);
int cmd_flush(struct cli_opts *o, int argc, char **argv);

/*
 * Text helpers.
 */

/* asctime()'s first 20 characters, "Mon Nov  3 05:17:52 ", in local time. */
static void
arrival_text(time_t t, char *buf, size_t len)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11) {
        snprintf(buf, len, "%-20s", "?");
        return;
    }
    snprintf(buf, len, "%s %s%3d %02d:%02d:%02d ", days[tm.tm_wday], months[tm.tm_mon], tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * Listing.
 */

struct qlist_item {
    char id[QID_LEN + 1];
    enum queue_where where;
};

struct qlist {
    struct qlist_item *items;
    size_t n, cap;
    int nomem;
};

static void
qlist_add(void *arg, const char *id, enum queue_where w)
{
    struct qlist *l = arg;
    if (l->nomem)
        return;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 256;
        struct qlist_item *n = realloc(l->items, ncap * sizeof(*n));
        if (n == NULL) {
            l->nomem = 1;
            return;
        }
        l->items = n;
        l->cap = ncap;
    }
    snprintf(l->items[l->n].id, sizeof(l->items[l->n].id), "%s", id);
    l->items[l->n].where = w;
    l->n++;
}

static int
qlist_cmp(const void *a, const void *b)
{
    const struct qlist_item *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (int)x->where - (int)y->where;
}

/* Recipients still to deliver, sorted by reason (none first), then order. */
struct rcpt_ref {
    const struct env_rcpt *r;
    size_t idx;
};

static int
rcpt_ref_cmp(const void *a, const void *b)
{
    const struct rcpt_ref *x = a, *y = b;
    int c = strcmp(x->r->reason ? x->r->reason : "", y->r->reason ? y->r->reason : "");
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int
rcpt_listed(const struct env_rcpt *r)
{
    return r->state == RCPT_PENDING || r->state == RCPT_DEFERRED;
}

static const char *
sender_text(const struct envelope *env)
{
    return env->sender && env->sender[0] ? env->sender : "MAILER-DAEMON";
}

/* One message in postqueue -p layout; 0 ok, -1 no memory. */
static int
print_text(FILE *fp, const struct queue_entry *qe)
{
    const struct envelope *env = qe->env;
    char idst[QID_LEN + 2], when[32];
    struct rcpt_ref *refs;
    size_t n = 0;

    snprintf(idst, sizeof(idst), "%s%s", qe->id, qe->where == QUEUE_HOLD ? "!" : "");
    arrival_text(env->arrival, when, sizeof(when));
    fprintf(fp, "%-11s %7lld %20.20s ", idst, (long long)qe->content_size, when);
    cli_put_safe(fp, sender_text(env));
    putc('\n', fp);

    if ((refs = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*refs))) == NULL)
        return -1;
    for (size_t i = 0; i < env->nrcpt; i++) {
        if (rcpt_listed(&env->rcpt[i])) {
            refs[n].r = &env->rcpt[i];
            refs[n].idx = i;
            n++;
        }
    }
    qsort(refs, n, sizeof(*refs), rcpt_ref_cmp);
    const char *prev = "";
    for (size_t i = 0; i < n; i++) {
        const char *reason = refs[i].r->reason ? refs[i].r->reason : "";
        if (strcmp(reason, prev) != 0) {
            int pad = 76 - (int)strlen(reason);
            fprintf(fp, "%*s(", pad > 0 ? pad : 0, "");
            cli_put_safe(fp, reason);
            fputs(")\n", fp);
            prev = reason;
        }
        fprintf(fp, "%41s", "");
        cli_put_safe(fp, refs[i].r->addr ? refs[i].r->addr : "");
        putc('\n', fp);
    }
    putc('\n', fp);
    free(refs);
    return 0;
}

/* One message as a postqueue -j object on one line. */
static void
print_json(FILE *fp, const struct queue_entry *qe)
{
    const struct envelope *env = qe->env;
    int first = 1;

    fprintf(fp,
            "{\"queue_name\": \"%s\", \"queue_id\": \"%s\", \"arrival_time\": %lld, "
            "\"message_size\": %lld, \"forced_expire\": false, \"sender\": ",
            qe->where == QUEUE_HOLD ? "hold" : "deferred", qe->id, (long long)env->arrival,
            (long long)qe->content_size);
    cli_put_json(fp, sender_text(env));
    fputs(", \"recipients\": [", fp);
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *r = &env->rcpt[i];
        if (!rcpt_listed(r))
            continue;
        fputs(first ? "{\"address\": " : ", {\"address\": ", fp);
        cli_put_json(fp, r->addr ? r->addr : "");
        if (r->reason && r->reason[0]) {
            fputs(", \"delay_reason\": ", fp);
            cli_put_json(fp, r->reason);
        }
        putc('}', fp);
        first = 0;
    }
    fputs("]}\n", fp);
}

static int
queue_list(struct cli_opts *o)
{
    const char *qdir = o->cfg->queue_directory;
    struct qlist l = {0};
    long long total = 0;
    size_t shown = 0;
    int rc = 0;

    if (queue_dir_scan(qdir, qlist_add, &l) < 0 && errno != ENOENT) {
        fprintf(stderr, "scanrelay: cannot read the queue directory %s: %s\n", qdir,
                strerror(errno));
        free(l.items);
        return 2;
    }
    if (l.nomem) {
        fprintf(stderr, "scanrelay: out of memory\n");
        free(l.items);
        return 2;
    }
    if (l.n > 1)
        qsort(l.items, l.n, sizeof(*l.items), qlist_cmp);

    for (size_t i = 0; i < l.n; i++) {
        if (i > 0 && strcmp(l.items[i].id, l.items[i - 1].id) == 0)
            continue; /* seen twice while moving between folders */
        struct queue_entry *qe = queue_file_load(qdir, l.items[i].id, 0);
        if (qe == NULL) {
            if (errno != ENOENT) /* gone: delivered or deleted meanwhile */
                fprintf(stderr, "scanrelay: %s: cannot read queue file: %s\n", l.items[i].id,
                        errno == EINVAL ? "malformed" : strerror(errno));
            continue;
        }
        if (o->json) {
            print_json(stdout, qe);
        } else {
            if (shown == 0)
                printf("%-11s %7s %-20s %s\n", "-Queue ID-", "--Size--", "----Arrival Time----",
                       "-Sender/Recipient-------");
            if (print_text(stdout, qe) < 0) {
                queue_entry_free(qe);
                fprintf(stderr, "scanrelay: out of memory\n");
                rc = 2;
                break;
            }
        }
        total += (long long)qe->content_size;
        shown++;
        queue_entry_free(qe);
    }
    if (!o->json && rc == 0) {
        if (shown == 0)
            printf("Mail queue is empty\n");
        else
            printf("-- %lld Kbytes in %zu Request%s.\n", total / 1024, shown,
                   shown == 1 ? "" : "s");
    }
    free(l.items);
    return cli_flush_stdout() ? 2 : rc;
}

/*
 * Actions through the daemon.
 */

/*
 * Send "VERB ID ID ..." in as few requests as fit CTL_LINE_MAX; "ALL"
 * stands alone. IDs were checked by the caller. Worst status wins.
 */
static int
send_batched(struct cli_opts *o, const char *verb, int nid, char **ids)
{
    char req[CTL_LINE_MAX];
    size_t len;
    int rc = 0;

    for (int i = 0; i < nid; i++) {
        if (strcmp(ids[i], "ALL") == 0) {
            snprintf(req, sizeof(req), "%s ALL", verb);
            return cli_daemon_request(o, req);
        }
    }
    len = (size_t)snprintf(req, sizeof(req), "%s", verb);
    if (nid == 0)
        return cli_daemon_request(o, req);
    for (int i = 0; i < nid; i++) {
        if (len + 1 + QID_LEN + 1 > sizeof(req)) {
            int k = cli_daemon_request(o, req);
            if (k == 2)
                return 2;
            if (k > rc)
                rc = k;
            len = (size_t)snprintf(req, sizeof(req), "%s", verb);
        }
        len += (size_t)snprintf(req + len, sizeof(req) - len, " %s", ids[i]);
    }
    int k = cli_daemon_request(o, req);
    return k > rc ? k : rc;
}

/* 1 when every argument is a queue ID (or ALL, where allowed). */
static int
check_ids(int nid, char **ids, int allow_all)
{
    for (int i = 0; i < nid; i++) {
        if (allow_all && strcmp(ids[i], "ALL") == 0)
            continue;
        if (!qid_valid(ids[i])) {
            fprintf(stderr, "scanrelay: invalid queue ID: ");
            cli_put_safe(stderr, ids[i]);
            putc('\n', stderr);
            return 0;
        }
    }
    return 1;
}

int
cmd_queue(struct cli_opts *o, int argc, char **argv)
{
    static const char *const verbs[] = {"delete", "hold", "release", "requeue"};

    if (argc == 1)
        return queue_list(o);
    for (size_t v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++) {
        if (strcmp(argv[1], verbs[v]) != 0)
            continue;
        if (argc < 3) {
            fprintf(stderr, "usage: scanrelay queue %s ID...|ALL\n", verbs[v]);
            return 2;
        }
        if (!check_ids(argc - 2, argv + 2, 1))
            return 2;
        return send_batched(o, verbs[v], argc - 2, argv + 2);
    }
    fprintf(stderr, "usage: scanrelay queue [delete|hold|release|requeue ID...|ALL]\n");
    return 2;
}

int
cmd_flush(struct cli_opts *o, int argc, char **argv)
{
    if (!check_ids(argc - 1, argv + 1, 0))
        return 2;
    return send_batched(o, "flush", argc - 1, argv + 1);
}
