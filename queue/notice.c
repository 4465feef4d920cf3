/*
 * notice.c - notices about verdicts to the administrator, the recipients
 * and the sender, and text notices to the administrator (health alerts).
 *
 * Public calls: notice_check_config, notice_check_from, notifier_new,
 * notifier_free, notice_inspect, notice_max_size, notice_verdict,
 * notice_admin_text.
 *
 * Never a loop. Every notice has the null envelope sender, From:
 * notify.from (checked at start: not empty, not a placeholder, not an
 * example or local-only address), Auto-Submitted: auto-generated, and the
 * mark "X-Scanrelay-Notice: v1 t=T mac=HMAC" where HMAC is HMAC-SHA256
 * with a per-installation key (state_directory/notice.key, 32 random
 * bytes, made at first start, mode 0600) over T, the Message-ID and the
 * body's non-blank bytes. A message whose mark verifies is one of ours:
 * the pipeline relays it unscanned and no notice is ever made about it. A
 * mark copied onto another message (another body or Message-ID) or made up
 * does not verify: that message is scanned like any other, and a forged
 * header buys nothing. Marks older than 30 days are not honoured.
 *
 * Never a flood. Per address (recipients, senders, administrators),
 * at most notify.rate_limit notices an hour; the rest are counted as held
 * back. Administrator verdict notices: the first one of a quiet period
 * goes out at once and opens a window of notify.window; everything else
 * in the window is counted (per kind, per virus or rule name) and sent as
 * one summary when it closes, with the held-back counts. So at most two
 * mails per window. The window, its counts and the rate counters are kept
 * in state_directory/notify.state (written crash-safely off the loop,
 * within a second of a change, and at stop); the state is written with
 * the window closed before its summary is queued, so a restart never
 * sends a summary twice (a crash in between loses it instead).
 *
 * Threads: everything on the loop thread, but the state writes (pool).
 * Template files are read on the loop when a notice is built (small files).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <glib.h>

#include "config.h"
#include "envelope.h"
#include "log.h"
#include "notice.h"
#include "queue.h"
#include "safefile.h"
#include "spool.h"
#include "wpool.h"

#define KEY_LEN 32
#define MARK_MAX_AGE (30 * 86400)
#define MAX_RATE_ENTRIES 20000
#define MAX_NAMES 64

static const struct {
    const char *word;
    unsigned bit;
} kind_words[] = {
    {"virus", NOTICE_VIRUS},           {"policy", NOTICE_POLICY},       {"spam", NOTICE_SPAM},
    {"limit", NOTICE_LIMIT},           {"encrypted", NOTICE_ENCRYPTED}, {"error", NOTICE_ERROR},
    {"quarantine", NOTICE_QUARANTINE},
};

static const char *
kind_word(unsigned bit)
{
    for (size_t i = 0; i < sizeof(kind_words) / sizeof(kind_words[0]); i++)
        if (kind_words[i].bit == bit)
            return kind_words[i].word;
    return "other";
}

/* A kind list's bits; -1 with the bad word in why. */
static int
kind_mask(char *const *words, size_t n, unsigned *mask, char *why, size_t whylen)
{
    *mask = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        for (k = 0; k < sizeof(kind_words) / sizeof(kind_words[0]); k++)
            if (strcasecmp(words[i], kind_words[k].word) == 0)
                break;
        if (k == sizeof(kind_words) / sizeof(kind_words[0])) {
            snprintf(why, whylen,
                     "unknown notice kind '%s' (use virus, policy, spam, limit, encrypted, "
                     "error, quarantine)",
                     words[i]);
            return -1;
        }
        *mask |= kind_words[k].bit;
    }
    return 0;
}

/*
 * Configuration checks.
 */

/* Local parts and whole values that mean "nobody filled this in". */
static const char *const placeholders[] = {
    "notificationrecipients",
    "notificationrecipient",
    "notificationsender",
    "changeme",
    "change-me",
    "your-address",
    "youraddress",
    "your.address",
    "your_address",
    "yourname",
    "someone",
    "user",
    "username",
    "nobody",
    "noone",
    "xxx",
    "todo",
    "fixme",
    "placeholder",
};

/* Domains that are examples, reserved or local only (RFC 2606, RFC 6761). */
static const char *const bad_domains[] = {
    "example.com",   "example.net",           "example.org",     "example.jp",  "example.co.jp",
    "example.ne.jp", "example.or.jp",         "example.ac.jp",   "example.edu", "localhost",
    "localdomain",   "localhost.localdomain", "local",           "invalid",     "domain.com",
    "domain.tld",    "yourdomain.com",        "your-domain.com", "company.com", "mydomain.com",
};
static const char *const bad_tlds[] = {".example", ".invalid",     ".localhost",
                                       ".local",   ".localdomain", ".test",
                                       ".lan",     ".home",        ".internal"};

int
notice_check_from(const char *from, char *why, size_t whylen)
{
    if (from == NULL || from[0] == '\0') {
        snprintf(why, whylen, "it is empty");
        return -1;
    }
    const char *at = strrchr(from, '@');
    if (at == NULL || at == from || at[1] == '\0' || strpbrk(from, " \t<>,;\"()[]\\") ||
        strlen(from) > 254) {
        snprintf(why, whylen, "'%s' is not a plain address (local@domain.tld)", from);
        return -1;
    }
    size_t ll = (size_t)(at - from);
    const char *dom = at + 1;
    for (size_t i = 0; i < sizeof(placeholders) / sizeof(placeholders[0]); i++)
        if (strlen(placeholders[i]) == ll && strncasecmp(from, placeholders[i], ll) == 0) {
            snprintf(why, whylen, "'%s' is a placeholder, not a real mailbox", from);
            return -1;
        }
    if (strcasestr(from, "notificationrecipient") || strcasestr(from, "changeme")) {
        snprintf(why, whylen, "'%s' is a placeholder, not a real mailbox", from);
        return -1;
    }
    if (strchr(dom, '.') == NULL) {
        snprintf(why, whylen,
                 "'%s' is local-only (the domain has no dot): it would be rewritten or bounce "
                 "and loop",
                 from);
        return -1;
    }
    size_t dl = strlen(dom);
    for (size_t i = 0; i < sizeof(bad_domains) / sizeof(bad_domains[0]); i++) {
        size_t bl = strlen(bad_domains[i]);
        if (strcasecmp(dom, bad_domains[i]) == 0 ||
            (dl > bl && dom[dl - bl - 1] == '.' &&
             strcasecmp(dom + dl - bl, bad_domains[i]) == 0)) {
            snprintf(why, whylen, "'%s' is an example or local-only address (%s)", from,
                     bad_domains[i]);
            return -1;
        }
    }
    for (size_t i = 0; i < sizeof(bad_tlds) / sizeof(bad_tlds[0]); i++) {
        size_t bl = strlen(bad_tlds[i]);
        if (dl > bl && strcasecmp(dom + dl - bl, bad_tlds[i]) == 0) {
            snprintf(why, whylen, "'%s' is in a reserved or local-only domain (%s)", from,
                     bad_tlds[i] + 1);
            return -1;
        }
    }
    if (dom[0] == '[' || strspn(dom, "0123456789.") == dl) {
        snprintf(why, whylen, "'%s' has an address literal, not a domain", from);
        return -1;
    }
    return 0;
}

/* Does the configuration send any notice at all? */
static int
notify_on(const struct sr_config_notify *nc)
{
    return nc->nadmin > 0 || nc->nrecipient_kinds > 0 || nc->nsender_kinds > 0;
}

int
notice_check_config(const struct sr_config *cfg, char *err, size_t errlen)
{
    const struct sr_config_notify *nc = &cfg->notify;
    const char *path = cfg->path ? cfg->path : "(defaults)";
    char why[300];
    unsigned m;

    if (kind_mask(nc->admin_kinds, nc->nadmin_kinds, &m, why, sizeof(why)) < 0 ||
        kind_mask(nc->recipient_kinds, nc->nrecipient_kinds, &m, why, sizeof(why)) < 0 ||
        kind_mask(nc->sender_kinds, nc->nsender_kinds, &m, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: notify: %s", path, why);
        return -1;
    }
    if (m & NOTICE_SPAM) {
        snprintf(err, errlen,
                 "%s: notify: sender_kinds: no notice is ever sent to the sender of "
                 "spam (backscatter); remove \"spam\"",
                 path);
        return -1;
    }
    if (strcasecmp(nc->language, "en") != 0 && strcasecmp(nc->language, "ja") != 0) {
        snprintf(err, errlen, "%s: notify: language '%s' (use en or ja)", path, nc->language);
        return -1;
    }
    if (strcasecmp(nc->charset, "utf-8") != 0 && strcasecmp(nc->charset, "iso-2022-jp") != 0) {
        snprintf(err, errlen, "%s: notify: charset '%s' (use utf-8 or iso-2022-jp)", path,
                 nc->charset);
        return -1;
    }
    if (strcmp(nc->attach, "none") != 0 && strcmp(nc->attach, "headers") != 0 &&
        strcmp(nc->attach, "message") != 0) {
        snprintf(err, errlen, "%s: notify: attach '%s' (use none, headers or message)", path,
                 nc->attach);
        return -1;
    }
    if (nc->rate_limit < 1) {
        snprintf(err, errlen, "%s: notify: rate_limit must be at least 1", path);
        return -1;
    }
    for (size_t i = 0; i < nc->nadmin; i++)
        if (strchr(nc->admin[i], '@') == NULL ||
            strcasestr(nc->admin[i], "notificationrecipient")) {
            snprintf(err, errlen, "%s: notify: admin '%s' is not a mail address (a placeholder?)",
                     path, nc->admin[i]);
            return -1;
        }
    if (notify_on(nc) || nc->from[0]) {
        if (notice_check_from(nc->from, why, sizeof(why)) < 0) {
            snprintf(err, errlen,
                     "%s: notify: from: %s; notices need a real address of this site that "
                     "accepts replies, e.g. postmaster@your.domain",
                     path, why);
            return -1;
        }
    }
    return 0;
}

/*
 * State.
 */

struct rate {
    time_t hour; /* start of the counting hour */
    long count;
};

struct notifier {
    struct event_base *base;
    struct queue *q;
    struct wpool *pool;
    const struct sr_config *(*config)(void *ctx);
    void *ctx;
    char *state_dir;
    unsigned char key[KEY_LEN];
    int have_key; /* key loaded (at start when notices are on, else at first use) */

    GHashTable *rates; /* address (lowercase) -> struct rate */
    /* The admin window. */
    time_t win_start; /* 0: no window open */
    long win_count;   /* verdict notices folded into the window (after the first) */
    long win_kinds[8];
    GHashTable *names; /* virus or rule name -> count (as a pointer) */
    long held;         /* notices held back by the rate limit since the last summary */

    struct event *win_ev, *save_ev;
    int dirty, saving;
    unsigned seq;
};

static const struct sr_config_notify *
ncfg(const struct notifier *n)
{
    return &n->config(n->ctx)->notify;
}

/* The state file's text. */
static char *
state_text(const struct notifier *n)
{
    GString *s = g_string_new("scanrelay-notify 1\n");
    g_string_append_printf(s, "window %lld %ld %ld\n", (long long)n->win_start, n->win_count,
                           n->held);
    for (int i = 0; i < 8; i++)
        if (n->win_kinds[i])
            g_string_append_printf(s, "kind %d %ld\n", i, n->win_kinds[i]);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, n->names);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_string_append_printf(s, "name %ld %s\n", (long)GPOINTER_TO_SIZE(v), (char *)k);
    time_t now = time(NULL);
    g_hash_table_iter_init(&it, n->rates);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const struct rate *r = v;
        if (now - r->hour < 3600)
            g_string_append_printf(s, "rate %lld %ld %s\n", (long long)r->hour, r->count,
                                   (char *)k);
    }
    return g_string_free(s, FALSE);
}

static void
state_parse(struct notifier *n, const char *text)
{
    gchar **lines = g_strsplit(text, "\n", -1);
    for (gchar **l = lines; *l; l++) {
        long long a;
        long b, c;
        int off = 0;
        if (sscanf(*l, "window %lld %ld %ld", &a, &b, &c) == 3) {
            n->win_start = (time_t)a;
            n->win_count = b;
            n->held = c;
        } else if (sscanf(*l, "kind %lld %ld", &a, &b) == 2 && a >= 0 && a < 8) {
            n->win_kinds[a] = b;
        } else if (sscanf(*l, "name %ld %n", &b, &off) == 1 && off > 0 && (*l)[off]) {
            g_hash_table_replace(n->names, g_strdup(*l + off), GSIZE_TO_POINTER((gsize)b));
        } else if (sscanf(*l, "rate %lld %ld %n", &a, &b, &off) == 2 && off > 0 && (*l)[off]) {
            struct rate *r = g_new0(struct rate, 1);
            r->hour = (time_t)a;
            r->count = b;
            g_hash_table_replace(n->rates, g_strdup(*l + off), r);
        }
    }
    g_strfreev(lines);
}

struct save_job {
    struct notifier *n;
    char *text, *path, *tmp, *dir;
    int rc;
    /* A summary to queue once the state says the window is closed. */
    struct inject *summary;
};

static int
fill_text(int fd, void *arg)
{
    const char *t = arg;
    size_t len = strlen(t), o = 0;
    while (o < len) {
        ssize_t w = write(fd, t + o, len - o);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        o += (size_t)w;
    }
    return 0;
}

static void
save_work(void *arg)
{
    struct save_job *sj = arg;
    sj->rc = safe_write(sj->tmp, sj->path, sj->dir, 0600, 0, fill_text, sj->text);
    if (sj->rc < 0)
        log_warn("cannot write %s", sj->path);
}

static void inject_start(struct inject *in);
static void inject_drop(struct inject *in);
static void schedule_save(struct notifier *n);

static void
save_done(void *arg, int status)
{
    struct save_job *sj = arg;
    struct notifier *n = sj->n;
    n->saving = 0;
    if (sj->summary) {
        if (status == WPOOL_DONE)
            inject_start(sj->summary);
        else
            inject_drop(sj->summary);
    }
    g_free(sj->text);
    g_free(sj->path);
    g_free(sj->tmp);
    g_free(sj);
    if (n->dirty)
        schedule_save(n);
}

/* Write the state now (off the loop); then queue summary, if any. */
static void
save_now(struct notifier *n, struct inject *summary)
{
    struct save_job *sj = g_new0(struct save_job, 1);
    sj->n = n;
    sj->text = state_text(n);
    sj->path = g_strdup_printf("%s/notify.state", n->state_dir);
    sj->tmp = g_strdup_printf("%s/notify.state.tmp%u", n->state_dir, ++n->seq);
    sj->dir = n->state_dir;
    sj->summary = summary;
    n->dirty = 0;
    n->saving = 1;
    if (n->pool == NULL || wpool_call(n->pool, save_work, save_done, sj) < 0) {
        save_work(sj);
        save_done(sj, WPOOL_DONE);
    }
}

static void
save_cb(evutil_socket_t fd, short what, void *arg)
{
    struct notifier *n = arg;
    (void)fd;
    (void)what;
    if (n->dirty && !n->saving)
        save_now(n, NULL);
}

/* A change: the state file follows within a second. */
static void
schedule_save(struct notifier *n)
{
    n->dirty = 1;
    if (!n->saving && !evtimer_pending(n->save_ev, NULL)) {
        struct timeval tv = {1, 0};
        evtimer_add(n->save_ev, &tv);
    }
}

static int
fill_key(int fd, void *arg)
{
    return write(fd, arg, KEY_LEN) == KEY_LEN ? 0 : -1;
}

/* The per-installation key: read, or made at first start. 0 / -1 + err. */
static int
load_key(struct notifier *n, char *err, size_t errlen)
{
    char *path = g_strdup_printf("%s/notice.key", n->state_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, n->key, KEY_LEN);
        close(fd);
        if (r == KEY_LEN) {
            g_free(path);
            n->have_key = 1;
            return 0;
        }
        snprintf(err, errlen, "%s: short key file (remove it to make a new one)", path);
        g_free(path);
        return -1;
    }
    if (getrandom(n->key, KEY_LEN, 0) != KEY_LEN) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        g_free(path);
        return -1;
    }
    char *tmp = g_strdup_printf("%s.tmp", path);
    int rc = safe_write(tmp, path, n->state_dir, 0600, SAFE_NOREPLACE, fill_key, n->key);
    g_free(tmp);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        g_free(path);
        return -1;
    }
    log_info("made the notice key %s (it marks this installation's notices)", path);
    g_free(path);
    n->have_key = 1;
    return 0;
}

static void window_cb(evutil_socket_t fd, short what, void *arg);

/* (Re)arm the window timer for the window now open. */
static void
arm_window(struct notifier *n)
{
    if (n->win_start == 0)
        return;
    time_t now = time(NULL), end = n->win_start + (time_t)ncfg(n)->window;
    struct timeval tv = {end > now ? end - now : 0, 0};
    evtimer_add(n->win_ev, &tv);
}

struct notifier *
notifier_new(struct event_base *base, struct queue *q, struct wpool *pool,
             const struct sr_config *(*config)(void *ctx), void *ctx, const char *state_dir,
             char *err, size_t errlen)
{
    struct notifier *n = g_new0(struct notifier, 1);
    n->base = base;
    n->q = q;
    n->pool = pool;
    n->config = config;
    n->ctx = ctx;
    n->state_dir = g_strdup(state_dir);
    n->rates = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    n->names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    n->win_ev = evtimer_new(base, window_cb, n);
    n->save_ev = evtimer_new(base, save_cb, n);
    if (config(ctx)->notify.from[0] && load_key(n, err, errlen) < 0) {
        notifier_free(n);
        return NULL;
    }
    char *path = g_strdup_printf("%s/notify.state", state_dir), *text = NULL;
    if (g_file_get_contents(path, &text, NULL, NULL))
        state_parse(n, text);
    g_free(text);
    g_free(path);
    /* A window left open by the last run: its summary when it ends (now, if it has). */
    arm_window(n);
    return n;
}

void
notifier_free(struct notifier *n)
{
    if (n == NULL)
        return;
    if (n->dirty && n->rates) {
        char *text = state_text(n);
        char *path = g_strdup_printf("%s/notify.state", n->state_dir);
        char *tmp = g_strdup_printf("%s/notify.state.tmp0", n->state_dir);
        if (safe_write(tmp, path, n->state_dir, 0600, 0, fill_text, text) < 0)
            log_warn("cannot write %s", path);
        g_free(text);
        g_free(path);
        g_free(tmp);
    }
    if (n->win_ev)
        event_free(n->win_ev);
    if (n->save_ev)
        event_free(n->save_ev);
    if (n->rates)
        g_hash_table_destroy(n->rates);
    if (n->names)
        g_hash_table_destroy(n->names);
    g_free(n->state_dir);
    g_free(n);
}

/*
 * Reading a received message's header.
 */

/* Next header field of msg: name and unfolded value (malloc'd); 0 at the end of the header. */
static int
next_field(const char **pp, const char *end, char **name, char **value)
{
    const char *p = *pp;
    if (p >= end || *p == '\r' || *p == '\n')
        return 0;
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (colon == NULL || (eol && colon > eol))
        return 0;
    GString *v = g_string_new("");
    const char *q = colon + 1;
    for (;;) {
        const char *le = memchr(q, '\n', (size_t)(end - q));
        const char *stop = le ? le : end;
        size_t l = (size_t)(stop - q);
        if (l && q[l - 1] == '\r')
            l--;
        g_string_append_len(v, q, (gssize)l);
        q = le ? le + 1 : end;
        if (q < end && (*q == ' ' || *q == '\t'))
            continue;
        break;
    }
    *name = g_strndup(p, (gsize)(colon - p));
    *value = g_strstrip(g_string_free(v, FALSE));
    *pp = q;
    return 1;
}

size_t
notice_max_size(const struct notifier *n)
{
    return (size_t)ncfg(n)->attach_limit + 256 * 1024;
}

void
notice_inspect(const struct notifier *n, const char *msg, size_t len, int whole,
               struct notice_origin *o)
{
    const char *p = msg, *end = msg + len;
    char *name, *value, *mark = NULL, *msgid = NULL;
    memset(o, 0, sizeof(*o));
    while (next_field(&p, end, &name, &value)) {
        if (strcasecmp(name, "Precedence") == 0 &&
            (strncasecmp(value, "bulk", 4) == 0 || strncasecmp(value, "list", 4) == 0 ||
             strncasecmp(value, "junk", 4) == 0))
            o->bulk = 1;
        else if (strcasecmp(name, "List-Id") == 0)
            o->bulk = 1;
        else if (strcasecmp(name, "Auto-Submitted") == 0 && strncasecmp(value, "no", 2) != 0)
            o->bulk = 1;
        else if (strcasecmp(name, "X-Scanrelay-Notice") == 0 && mark == NULL) {
            o->marked = 1;
            mark = value;
            value = NULL;
        } else if (strcasecmp(name, "Message-ID") == 0 && msgid == NULL) {
            msgid = value;
            value = NULL;
        }
        g_free(name);
        g_free(value);
    }
    /* The body starts after the blank line. */
    if (p < end && *p == '\r')
        p++;
    if (p < end && *p == '\n')
        p++;
    if (mark && msgid && whole && n && n->have_key) {
        long long t = 0;
        char mac[80] = "";
        if (sscanf(mark, "v1 t=%lld mac=%70s", &t, mac) == 2) {
            long long now = (long long)time(NULL);
            char *want = notice_mac(n->key, KEY_LEN, t, msgid, p, (size_t)(end - p));
            if (t <= now + 300 && now - t < MARK_MAX_AGE && strlen(mac) == strlen(want) &&
                strcmp(mac, want) == 0)
                o->ours = 1;
            g_free(want);
        }
    }
    g_free(mark);
    g_free(msgid);
}

/*
 * Templates.
 */

static const char *const builtin[][2] = {
    {"admin",
     "Subject: [scanrelay] %kind% %name%: message %queue_id% %action%\n\n"
     "scanrelay on %hostname% stopped a message.\n\n"
     "  Date:        %date%\n  Queue ID:    %queue_id%\n  From:        %sender%\n"
     "  To:          %recipients%\n  Subject:     %subject%\n  Found:       %kind% %name%\n"
     "  Part:        %part%\n  Score:       %score%\n  Action:      %action%\n"
     "  Quarantine:  %quarantine_id%\n"},
    {"recipient", "Subject: [scanrelay] a message to you was stopped: %subject%\n\n"
                  "A message addressed to you was not delivered as sent.\n\n"
                  "  Date:     %date%\n  From:     %sender%\n  Subject:  %subject%\n"
                  "  Reason:   %kind% %name% (%part%)\n  Action:   %action%\n"
                  "  Queue ID: %queue_id%   Quarantine ID: %quarantine_id%\n\n"
                  "Ask your administrator when you think this was wrong.\n"},
    {"sender", "Subject: [scanrelay] your message was not delivered: %subject%\n\n"
               "A message you sent was stopped by the mail gateway %hostname%.\n\n"
               "  Date:       %date%\n  Recipients: %recipients%\n  Subject:    %subject%\n"
               "  Reason:     %kind% %name% (%part%)\n  Action:     %action%\n"
               "  Queue ID:   %queue_id%\n"},
    {"summary", "Subject: [scanrelay] %count% more messages stopped in the last %window%\n\n"
                "scanrelay on %hostname%: %count% more messages were stopped between %start% and "
                "%date%\n(the first one was reported at once).\n\n"
                "By kind:\n%kinds%\nTop names:\n%top%\n"
                "Notices held back by the rate limit: %held%\n"},
};

/* The template name for lang: file DIR/LANG/NAME.txt, else the built-in English one. */
static char *
load_template(const struct sr_config_notify *nc, const char *name)
{
    char *path = g_strdup_printf("%s/%s/%s.txt", nc->template_directory, nc->language, name);
    char *text = NULL;
    gsize len = 0;
    if (!g_file_get_contents(path, &text, &len, NULL) ||
        !g_utf8_validate(text, (gssize)len, NULL) || strlen(text) != len) {
        g_free(text);
        text = NULL;
        static int warned;
        if (!warned++)
            log_warnx("notice template %s missing or not UTF-8: using the built-in English one",
                      path);
        for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
            if (strcmp(builtin[i][0], name) == 0)
                text = g_strdup(builtin[i][1]);
    }
    g_free(path);
    return text;
}

/* Split "Subject: S\n\nBODY" (the template's first line) into subject and body. */
static void
split_template(const char *t, char **subject, const char **body)
{
    *subject = NULL;
    *body = t;
    if (strncasecmp(t, "Subject:", 8) == 0) {
        size_t n = strcspn(t, "\n");
        *subject = g_strstrip(g_strndup(t + 8, n - 8));
        const char *b = t + n;
        if (*b == '\n')
            b++;
        if (*b == '\r')
            b++;
        if (*b == '\n')
            b++;
        *body = b;
    }
    if (*subject == NULL)
        *subject = g_strdup("[scanrelay] notice");
}

/*
 * Building and queueing one notice.
 */

struct inject {
    struct envelope *env;
    struct spool *sp;
    struct queue *q;
    char what[64];
};

static void
inject_drop(struct inject *in)
{
    envelope_free(in->env);
    spool_free(in->sp);
    g_free(in);
}

static void
inject_done(void *arg, int rc, int err, const char *id)
{
    struct inject *in = arg;
    if (rc < 0)
        log_warnx("cannot queue the %s notice: %s", in->what, strerror(err));
    else
        log_info("%s: notice (%s) queued for %zu recipient(s)", id, in->what, in->env->nrcpt);
    inject_drop(in);
}

static void
inject_start(struct inject *in)
{
    queue_inject(in->q, in->env, NULL, 0, in->sp, inject_done, in);
}

static void
rfc2822_date(time_t t, char *buf, size_t len)
{
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* Header lines of the original (for attach = headers), CRLF; malloc'd or NULL. */
static GString *
read_original(const struct notice_event *ev, int headers_only, size_t limit)
{
    if (ev == NULL || ev->pread == NULL || ev->size <= 0)
        return NULL;
    size_t want = (size_t)ev->size;
    if (headers_only && want > 256 * 1024)
        want = 256 * 1024;
    if (!headers_only && want > limit)
        return NULL;
    GString *s = g_string_sized_new(want + 1);
    g_string_set_size(s, want);
    ssize_t r = ev->pread(ev->ctx, s->str, want, 0);
    if (r < 0) {
        g_string_free(s, TRUE);
        return NULL;
    }
    g_string_set_size(s, (gsize)r);
    if (headers_only) {
        const char *e = strstr(s->str, "\r\n\r\n");
        const char *e2 = strstr(s->str, "\n\n");
        size_t n = e ? (size_t)(e - s->str) + 2 : e2 ? (size_t)(e2 - s->str) + 1 : s->len;
        g_string_truncate(s, n);
    }
    return s;
}

/*
 * Build a notice to rcpts[0..nr) with subject and body (UTF-8) and queue
 * it (after the state write when after_save). 0 queued, -1 failed.
 */
static int
send_notice(struct notifier *n, const char *const *rcpts, size_t nr, const char *subject,
            const char *body_utf8, const char *quarantine_id, const struct notice_event *ev,
            const char *what, int after_save)
{
    const struct sr_config *cfg = n->config(n->ctx);
    const struct sr_config_notify *nc = &cfg->notify;
    char kerr[300];
    if (!n->have_key && load_key(n, kerr, sizeof(kerr)) < 0) {
        log_warnx("no %s notice: %s", what, kerr);
        return -1;
    }
    GString *body = g_string_new("");
    const char *cs, *cte;
    char *text = notice_encode_body(body_utf8, nc->charset, &cs, &cte);
    char boundary[80] = "";
    GString *orig = NULL;
    int hdrs = strcmp(nc->attach, "headers") == 0;

    if (strcmp(nc->attach, "none") != 0 && ev)
        orig = read_original(ev, hdrs, (size_t)nc->attach_limit);
    if (orig == NULL && ev && strcmp(nc->attach, "message") == 0) {
        orig = read_original(ev, 1, 0); /* too big whole: its headers */
        hdrs = 1;
    }
    if (orig) {
        snprintf(boundary, sizeof(boundary), "=_scanrelay_%08x%08x", g_random_int(),
                 g_random_int());
        g_string_append_printf(body,
                               "This is a MIME message.\r\n\r\n--%s\r\n"
                               "Content-Type: text/plain; charset=%s\r\n"
                               "Content-Transfer-Encoding: %s\r\n\r\n%s\r\n--%s\r\n"
                               "Content-Type: %s\r\n"
                               "Content-Disposition: attachment\r\n\r\n",
                               boundary, cs, cte, text, boundary,
                               hdrs ? "text/rfc822-headers" : "message/rfc822");
        g_string_append_len(body, orig->str, (gssize)orig->len);
        if (orig->len && orig->str[orig->len - 1] != '\n')
            g_string_append(body, "\r\n");
        g_string_append_printf(body, "\r\n--%s--\r\n", boundary);
        g_string_free(orig, TRUE);
    } else {
        g_string_append(body, text);
    }
    g_free(text);

    /* Headers, the mark last (it covers the Message-ID and the body). */
    time_t now = time(NULL);
    char date[64], msgid[200];
    rfc2822_date(now, date, sizeof(date));
    snprintf(msgid, sizeof(msgid), "<%lld.%08x%08x.notice@%s>", (long long)now, g_random_int(),
             g_random_int(), cfg->hostname);
    char *mac = notice_mac(n->key, KEY_LEN, (long long)now, msgid, body->str, body->len);
    char *subj = notice_encode_header(subject, nc->charset);
    GString *m = g_string_new("");
    g_string_append_printf(m, "From: %s\r\nTo: ", nc->from);
    for (size_t i = 0; i < nr; i++)
        g_string_append_printf(m, "%s<%s>", i ? ",\r\n " : "", rcpts[i]);
    g_string_append_printf(m,
                           "\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n"
                           "MIME-Version: 1.0\r\nAuto-Submitted: auto-generated\r\n"
                           "Precedence: bulk\r\n",
                           subj, date, msgid);
    if (quarantine_id && quarantine_id[0])
        g_string_append_printf(m, "X-Quarantine-ID: %s\r\n", quarantine_id);
    if (boundary[0])
        g_string_append_printf(m, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n", boundary);
    else
        g_string_append_printf(m,
                               "Content-Type: text/plain; charset=%s\r\n"
                               "Content-Transfer-Encoding: %s\r\n",
                               cs, cte);
    g_string_append_printf(m, "X-Scanrelay-Notice: v1 t=%lld mac=%s\r\n\r\n", (long long)now, mac);
    g_string_append_len(m, body->str, (gssize)body->len);
    g_free(mac);
    g_free(subj);
    g_string_free(body, TRUE);

    if (n->q == NULL) {
        g_string_free(m, TRUE);
        return -1;
    }
    /* Envelope: <> to the recipients. */
    struct inject *in = g_new0(struct inject, 1);
    in->q = n->q;
    snprintf(in->what, sizeof(in->what), "%s", what);
    in->env = envelope_new();
    in->sp = spool_new((size_t)cfg->body_memory_limit, n->state_dir);
    int bad = in->env == NULL || in->sp == NULL || envelope_set_sender(in->env, "") < 0 ||
              spool_write(in->sp, m->str, m->len) < 0;
    for (size_t i = 0; !bad && i < nr; i++)
        bad = envelope_add_rcpt(in->env, rcpts[i], NULL, DSN_NOTIFY_NEVER) < 0;
    g_string_free(m, TRUE);
    if (bad) {
        log_warnx("cannot build the %s notice: out of memory", what);
        inject_drop(in);
        return -1;
    }
    in->env->arrival = now;
    if (after_save)
        save_now(n, in);
    else
        inject_start(in);
    return 0;
}

/* Count one notice to addr against its hourly limit: 1 allowed, 0 held back. */
static int
rate_ok(struct notifier *n, const char *addr)
{
    time_t now = time(NULL);
    char *key = g_ascii_strdown(addr, -1);
    struct rate *r = g_hash_table_lookup(n->rates, key);
    if (r == NULL) {
        if (g_hash_table_size(n->rates) >= MAX_RATE_ENTRIES) {
            /* Forget the expired ones; when none expired, hold the notice. */
            GHashTableIter it;
            gpointer k, v;
            g_hash_table_iter_init(&it, n->rates);
            while (g_hash_table_iter_next(&it, &k, &v))
                if (now - ((struct rate *)v)->hour >= 3600)
                    g_hash_table_iter_remove(&it);
            if (g_hash_table_size(n->rates) >= MAX_RATE_ENTRIES) {
                g_free(key);
                n->held++;
                return 0;
            }
        }
        r = g_new0(struct rate, 1);
        r->hour = now;
        g_hash_table_insert(n->rates, key, r);
    } else {
        g_free(key);
    }
    if (now - r->hour >= 3600) {
        r->hour = now;
        r->count = 0;
    }
    schedule_save(n);
    if (r->count >= ncfg(n)->rate_limit) {
        n->held++;
        return 0;
    }
    r->count++;
    return 1;
}

/* Is addr's domain one of local_domains (or a subdomain)? */
static int
is_local(const struct sr_config *cfg, const char *addr)
{
    const char *at = strrchr(addr, '@');
    if (at == NULL)
        return 0;
    const char *d = at + 1;
    size_t dl = strlen(d);
    for (size_t i = 0; i < cfg->nlocal_domains; i++) {
        const char *ld = cfg->local_domains[i];
        size_t l = strlen(ld);
        if (strcasecmp(d, ld) == 0 ||
            (dl > l && d[dl - l - 1] == '.' && strcasecmp(d + dl - l, ld) == 0))
            return 1;
    }
    return 0;
}

static int
kind_index(unsigned bit)
{
    for (int i = 0; i < 8; i++)
        if (bit == (1u << i))
            return i;
    return 7;
}

/* "10 min", "30 s" */
static void
window_words(int64_t w, char *buf, size_t len)
{
    if (w % 60 == 0)
        snprintf(buf, len, "%lld min", (long long)w / 60);
    else
        snprintf(buf, len, "%lld s", (long long)w);
}

/* Render template name for ev and send it to rcpts. */
static void
send_event(struct notifier *n, const char *tname, const char *const *rcpts, size_t nr,
           const struct notice_event *ev, const char *what)
{
    const struct sr_config *cfg = n->config(n->ctx);
    char date[64], score[32] = "", *rl;
    rfc2822_date(time(NULL), date, sizeof(date));
    if (ev->has_score)
        snprintf(score, sizeof(score), "%.2f", ev->score);
    GString *r = g_string_new("");
    for (size_t i = 0; i < ev->nrcpts; i++)
        g_string_append_printf(r, "%s%s", i ? ", " : "", ev->rcpts[i]);
    rl = g_string_free(r, FALSE);
    const char *name = ev->virus ? ev->virus : ev->rule ? ev->rule : ev->name ? ev->name : "";
    char win[32];
    window_words(cfg->notify.window, win, sizeof(win));
    const char *vars[] = {
        "date",          date,
        "queue_id",      ev->qid,
        "sender",        ev->sender && ev->sender[0] ? ev->sender : "<>",
        "recipients",    rl,
        "subject",       ev->subject ? ev->subject : "",
        "part",          ev->location ? ev->location : "message",
        "file",          ev->location ? ev->location : "message",
        "name",          name,
        "virus",         ev->virus ? ev->virus : "",
        "rule",          ev->rule ? ev->rule : "",
        "kind",          kind_word(ev->kind),
        "action",        ev->action ? ev->action : "",
        "score",         score,
        "quarantine_id", ev->quarantined && ev->quarantine_id ? ev->quarantine_id : "-",
        "hostname",      cfg->hostname,
        "window",        win,
    };
    char *t = load_template(&cfg->notify, tname);
    if (t == NULL) {
        g_free(rl);
        return;
    }
    char *text = notice_expand(t, vars, sizeof(vars) / sizeof(vars[0]) / 2), *subject;
    const char *body;
    split_template(text, &subject, &body);
    send_notice(n, rcpts, nr, subject, body, ev->quarantined ? ev->quarantine_id : NULL, ev, what,
                0);
    g_free(subject);
    g_free(text);
    g_free(t);
    g_free(rl);
}

/* An administrator verdict notice: at once when no window is open, else folded into it. */
static void
admin_event(struct notifier *n, const struct notice_event *ev)
{
    const struct sr_config *cfg = n->config(n->ctx);
    const struct sr_config_notify *nc = &cfg->notify;
    if (n->win_start == 0) {
        const char *to[nc->nadmin + 1];
        size_t nto = 0;
        for (size_t i = 0; i < nc->nadmin; i++)
            if (rate_ok(n, nc->admin[i]))
                to[nto++] = nc->admin[i];
        n->win_start = time(NULL);
        arm_window(n);
        schedule_save(n);
        if (nto)
            send_event(n, "admin", to, nto, ev, "admin");
        return;
    }
    n->win_count++;
    n->win_kinds[kind_index(ev->kind)]++;
    const char *name = ev->virus ? ev->virus : ev->rule ? ev->rule : ev->name;
    if (name) {
        gpointer v = g_hash_table_lookup(n->names, name);
        if (v || g_hash_table_size(n->names) < MAX_NAMES)
            g_hash_table_replace(n->names, g_strdup(name),
                                 GSIZE_TO_POINTER(GPOINTER_TO_SIZE(v) + 1));
    }
    schedule_save(n);
}

static gint
by_count(gconstpointer a, gconstpointer b, gpointer names)
{
    gsize ca = GPOINTER_TO_SIZE(g_hash_table_lookup(names, *(char *const *)a));
    gsize cb = GPOINTER_TO_SIZE(g_hash_table_lookup(names, *(char *const *)b));
    return ca < cb ? 1 : ca > cb ? -1 : strcmp(*(char *const *)a, *(char *const *)b);
}

/* The window ends: one summary of what it folded in, then the window is closed. */
static void
window_cb(evutil_socket_t fd, short what, void *arg)
{
    struct notifier *n = arg;
    const struct sr_config *cfg = n->config(n->ctx);
    const struct sr_config_notify *nc = &cfg->notify;
    (void)fd;
    (void)what;

    time_t start = n->win_start;
    long count = n->win_count, held = n->held;
    if (count == 0 && held == 0) {
        n->win_start = 0;
        schedule_save(n);
        return;
    }
    GString *kinds = g_string_new(""), *top = g_string_new("");
    for (int i = 0; i < 8; i++)
        if (n->win_kinds[i])
            g_string_append_printf(kinds, "  %-10s %ld\n", kind_word(1u << i), n->win_kinds[i]);
    GPtrArray *keys = g_ptr_array_new();
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, n->names);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_ptr_array_add(keys, k);
    g_ptr_array_sort_with_data(keys, by_count, n->names);
    for (guint i = 0; i < keys->len && i < 10; i++)
        g_string_append_printf(
            top, "  %6zu  %s\n",
            (size_t)GPOINTER_TO_SIZE(g_hash_table_lookup(n->names, keys->pdata[i])),
            (char *)keys->pdata[i]);
    g_ptr_array_free(keys, TRUE);
    char date[64], sdate[64], cnt[32], hl[32], win[32];
    rfc2822_date(time(NULL), date, sizeof(date));
    rfc2822_date(start, sdate, sizeof(sdate));
    snprintf(cnt, sizeof(cnt), "%ld", count);
    snprintf(hl, sizeof(hl), "%ld", held);
    /* The window as it was: from its start until now (a restart may have stretched it). */
    time_t span = time(NULL) - start;
    window_words(span >= 60 ? (span + 30) / 60 * 60 : span > 0 ? span : 1, win, sizeof(win));
    const char *vars[] = {"date", date,     "start",    sdate,        "count", cnt,
                          "held", hl,       "window",   win,          "kinds", kinds->str,
                          "top",  top->str, "hostname", cfg->hostname};

    /* Close the window first: the state says so on disk before the summary is queued. */
    n->win_start = 0;
    n->win_count = 0;
    n->held = 0;
    memset(n->win_kinds, 0, sizeof(n->win_kinds));
    g_hash_table_remove_all(n->names);

    char *t = load_template(nc, "summary");
    if (t && nc->nadmin) {
        char *text = notice_expand(t, vars, sizeof(vars) / sizeof(vars[0]) / 2), *subject;
        const char *body;
        split_template(text, &subject, &body);
        log_info("notice summary: %ld more admin notices and %ld held back in the window", count,
                 held);
        if (send_notice(n, (const char *const *)nc->admin, nc->nadmin, subject, body, NULL, NULL,
                        "summary", 1) < 0)
            schedule_save(n);
        g_free(subject);
        g_free(text);
    } else {
        schedule_save(n);
    }
    g_free(t);
    g_string_free(kinds, TRUE);
    g_string_free(top, TRUE);
}

void
notice_verdict(struct notifier *n, const struct notice_event *ev)
{
    const struct sr_config *cfg = n->config(n->ctx);
    const struct sr_config_notify *nc = &cfg->notify;
    unsigned am = 0, rm = 0, sm = 0, k = ev->kind | (ev->quarantined ? NOTICE_QUARANTINE : 0);
    char why[200];

    /* A notice about a notice is never made; notices off without a from. */
    if (nc->from[0] == '\0' || (ev->origin && ev->origin->ours))
        return;
    kind_mask(nc->admin_kinds, nc->nadmin_kinds, &am, why, sizeof(why));
    kind_mask(nc->recipient_kinds, nc->nrecipient_kinds, &rm, why, sizeof(why));
    kind_mask(nc->sender_kinds, nc->nsender_kinds, &sm, why, sizeof(why));

    if (nc->nadmin && ((am & k) || (ev->rule_notify & NOTICE_TO_ADMIN)))
        admin_event(n, ev);

    if ((rm & k) || (ev->rule_notify & NOTICE_TO_RCPTS)) {
        for (size_t i = 0; i < ev->nrcpts; i++) {
            const char *to[1] = {ev->rcpts[i]};
            if (rate_ok(n, ev->rcpts[i]))
                send_event(n, "recipient", to, 1, ev, "recipient");
        }
    }

    /* Senders: never for spam, null, bulk or list senders, or outside our domains. */
    if (((sm & k) || (ev->rule_notify & NOTICE_TO_SENDER)) && ev->kind != NOTICE_SPAM &&
        ev->sender && ev->sender[0] && !(ev->origin && (ev->origin->bulk || ev->origin->marked)) &&
        (nc->sender_outside_local || is_local(cfg, ev->sender))) {
        const char *to[1] = {ev->sender};
        if (rate_ok(n, ev->sender))
            send_event(n, "sender", to, 1, ev, "sender");
    }
}

int
notice_admin_text(struct notifier *n, const char *subject, const char *body_utf8)
{
    const struct sr_config_notify *nc = ncfg(n);
    if (n == NULL || nc->from[0] == '\0' || nc->nadmin == 0)
        return 1;
    const char *to[nc->nadmin + 1];
    size_t nto = 0;
    for (size_t i = 0; i < nc->nadmin; i++)
        if (rate_ok(n, nc->admin[i]))
            to[nto++] = nc->admin[i];
    if (nto == 0)
        return 1;
    return send_notice(n, to, nto, subject, body_utf8, NULL, NULL, "admin text", 0) < 0 ? -1 : 0;
}
