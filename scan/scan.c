/*
 * scan.c - scan one message: the verdict and the action.
 *
 * scan_message() parses the message once (mime.h) and, for every decoded
 * leaf part, in this order:
 *   1. counts it against the size rules (file_size, total_size);
 *   2. when it looks like an archive or compressed stream, walks it with
 *      sr_archive.c under the message's one budget (archive depth, files,
 *      bytes per file and in total, compression ratio; encrypted members);
 *   3. hands the decoded bytes, as they are in memory, to libclamav
 *      (engine.c), which runs all its parsers and unpackers on them with
 *      its own limits: detection is exactly clamscan's on that file.
 * Message-wide rules come first (message_size, recipients); MIME limits
 * (depth, parts) are limit findings, and then the raw message itself is
 * also given to libclamav so that content beyond them is still checked.
 * The same happens, as an error finding, when the message cannot be
 * parsed at all.
 *
 * Two checkers live here and add findings through scan_add_finding():
 * "virus" (libclamav's matches, its encrypted heuristics, its errors) and
 * "limits" (the size rules, the archive budget, MIME limits, encrypted
 * archive members); "scan" adds the errors of the scan itself (parse,
 * timeout, out of memory). Every finding carries its checker, its rule
 * and the action that rule is configured with, taken where the rule is
 * checked: virus.action, scan.<rule>_action, scan.encrypted_action,
 * scan.error_action. Checkers handed in by the caller (scan_opts) run
 * after them. verdict_compose() (verdict.c) then turns all findings into
 * the message's action and names the deciding finding, so an unscanned
 * part never lets a message through that a rule would stop. Message-wide
 * findings cannot be stripped: strip becomes tag for them. With action
 * strip the result lists the parts to cut out (raw ranges for rewrite.h).
 * Header fields are a list: the virus checker's X-Virus-Scanned and
 * X-Virus-Status first, then what other checkers added.
 *
 * Blocking, thread-safe: all state is on the caller's stack or in res;
 * the engine is shared read-only. Allocation failures end the scan with
 * a SCAN_ERROR verdict (scan.error_action), never a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "action.h"
#include "clock.h"
#include "engine.h"
#include "log.h"
#include "mime.h"
#include "scan.h"
#include "sr_archive.h"

#define LOC_MAX 1024
#define FD_READ_MAX ((size_t)1 << 30)
#define CHAIN_MAX 32
#define MEMBERS_MAX 4096

/* An archive member seen by the walk: full path, and its archive's member. */
struct member {
    int parent;       /* index, -1 for a member of the part itself */
    char *name;       /* NULL: content of a lone compressed stream */
    int64_t declared; /* >= 0: counted by this declared size, libclamav must confirm it */
    int confirmed;    /* libclamav expanded it, no larger than declared */
};

struct state {
    struct sr_engine *e;
    const struct sr_config *cfg;
    struct scan_result *res;
    struct arch_budget budget;
    double deadline; /* clock_mono() */
    int has_deadline;
    int timed_out;      /* a "scan timeout" finding was added */
    int oom;
    /* The part being scanned. */
    int part;
    const char *base;
    char chain_buf[LOC_MAX]; /* names of libclamav's innermost object, NUL-separated */
    const char *chain[CHAIN_MAX];
    int nchain;
    struct member *members; /* archive members of this part, from the walk */
    size_t nmembers;
    int last_at_depth[CHAIN_MAX];
    int part_virus;     /* libclamav's virus callback reported one */
    int part_encrypted; /* the archive walk reported an encrypted member */
    int clam_fresh;     /* libclamav scanned the part (not a hit in its clean cache) */
    int part_lied;      /* a member came out larger than declared */
    int rewalk;         /* the walk runs again without trust: encrypted is known */
    int part_partial;   /* libclamav stopped short of the whole part (a limit of its own) */
};

static char *
dupstr(struct state *st, const char *s)
{
    char *d;
    if (s == NULL)
        return NULL;
    if ((d = strdup(s)) == NULL)
        st->oom = 1;
    return d;
}

/* The part's strongest finding so far asks for less than a? */
static int
part_weaker(const struct scan_part *p, enum sr_action a)
{
    return p->kind == SCAN_CLEAN || sr_action_rank(a) > sr_action_rank(p->action);
}

int
scan_add_finding(struct scan_result *r, const struct scan_finding_in *in)
{
    struct scan_finding *f;
    enum sr_action action = in->action;
    int oom = 0;

    if (in->part == 0 && action == SR_ACTION_STRIP)
        action = SR_ACTION_TAG; /* nothing to cut out of the message as a whole */
    if (in->part > 0 && (size_t)in->part <= r->nparts && part_weaker(&r->parts[in->part - 1], action)) {
        r->parts[in->part - 1].kind = in->kind;
        r->parts[in->part - 1].action = action;
    }
    if (r->nfindings >= SCAN_MAX_FINDINGS) {
        r->findings_dropped++;
        /* Keep the verdict right even when the list is full. */
        f = &r->findings[r->nfindings - 1];
        if (sr_action_rank(action) <= sr_action_rank(f->action))
            return 0;
        free(f->rule);
        free(f->name);
        free(f->location);
    } else {
        f = realloc(r->findings, (r->nfindings + 1) * sizeof(*f));
        if (f == NULL)
            return -1;
        r->findings = f;
        f = &r->findings[r->nfindings++];
    }
    memset(f, 0, sizeof(*f));
    f->checker = in->checker;
    f->kind = in->kind;
    f->action = action;
    f->has_score = in->has_score;
    f->score = in->score;
    f->part = in->part;
    f->value = in->value;
    f->limit = in->limit;
    if ((in->rule && (f->rule = strdup(in->rule)) == NULL) ||
        (in->name && (f->name = strdup(in->name)) == NULL) ||
        (in->location && (f->location = strdup(in->location)) == NULL))
        oom = 1;
    return oom ? -1 : 0;
}

/* Record a finding of this scan's checkers, at the part being scanned. */
static void
add_finding(struct state *st, const char *checker, enum scan_kind kind, const char *rule,
            int action, const char *name, const char *location, int64_t value, int64_t limit)
{
    struct scan_finding_in f = {
        .checker = checker,
        .rule = rule,
        .kind = kind,
        .action = (enum sr_action)action,
        .name = name,
        .location = location,
        .part = st->part,
        .value = value,
        .limit = limit,
    };
    if (scan_add_finding(st->res, &f) < 0)
        st->oom = 1;
}

/* The virus checker: libclamav's matches and its encrypted heuristics. */
static void
virus_finding(struct state *st, enum scan_kind kind, const char *name, const char *location)
{
    if (kind == SCAN_ENCRYPTED)
        add_finding(st, "virus", kind, "encrypted", st->cfg->scan.encrypted_action, name,
                    location, 0, 0);
    else
        add_finding(st, "virus", kind, "virus", st->cfg->virus.action, name, location, 0, 0);
}

/* A part or message that could not be scanned (checker: the scan itself, or libclamav). */
static void
error_finding(struct state *st, const char *checker, const char *what, const char *location)
{
    add_finding(st, checker, SCAN_ERROR, "error", st->cfg->scan.error_action, what, location, 0,
                0);
}

/* The limits checker: a size rule or the archive budget. */
static void
limit_finding(struct state *st, const char *rule, const struct sr_limit_rule *lr,
              const char *location, int64_t value, int64_t limit)
{
    add_finding(st, "limits", SCAN_LIMIT, rule, lr->action, rule, location, value, limit);
}

/* The size rule an archive budget event is checked against. */
static const struct sr_limit_rule *
event_rule(const struct sr_config_scan *sc, enum arch_event ev)
{
    switch (ev) {
    case ARCH_EV_DEPTH:
        return &sc->archive_depth;
    case ARCH_EV_FILES:
        return &sc->archive_files;
    case ARCH_EV_FILE_SIZE:
        return &sc->file_size;
    case ARCH_EV_TOTAL:
        return &sc->total_size;
    case ARCH_EV_RATIO:
    default:
        return &sc->compression_ratio;
    }
}

/* Archive walk reports. */
static void
arch_report(void *arg, enum arch_event ev, const char *location, int64_t value, int64_t limit)
{
    struct state *st = arg;

    switch (ev) {
    case ARCH_EV_ENCRYPTED:
        if (st->rewalk)
            break;
        st->part_encrypted = 1;
        add_finding(st, "limits", SCAN_ENCRYPTED, "encrypted", st->cfg->scan.encrypted_action,
                    "encrypted", location, 0, 0);
        break;
    case ARCH_EV_BROKEN:
        log_debug("scan: %s: archive not fully readable by libarchive", location);
        break;
    default:
        limit_finding(st, arch_event_name(ev), event_rule(&st->cfg->scan, ev), location, value,
                      limit);
        break;
    }
}

/* Archive walk: record member paths, to name libclamav's matches fully. */
static void
arch_member(void *arg, int depth, const char *name, int64_t declared)
{
    struct state *st = arg;
    struct member *m;
    int idx;

    if (st->nmembers >= MEMBERS_MAX || depth < 1 || depth > CHAIN_MAX)
        return;
    if (st->nmembers % 64 == 0) {
        m = realloc(st->members, (st->nmembers + 64) * sizeof(*m));
        if (m == NULL)
            return;
        st->members = m;
    }
    idx = (int)st->nmembers;
    m = &st->members[st->nmembers++];
    m->parent = depth > 1 ? st->last_at_depth[depth - 2] : -1;
    m->name = name ? strdup(name) : NULL;
    m->declared = declared;
    m->confirmed = 0;
    st->last_at_depth[depth - 1] = idx;
}

static void
members_clear(struct state *st)
{
    for (size_t i = 0; i < st->nmembers; i++)
        free(st->members[i].name);
    free(st->members);
    st->members = NULL;
    st->nmembers = 0;
}

/* name is full, or its last path element equals n. */
static int
member_match(const char *full, const char *n)
{
    const char *slash = strrchr(full, '/');
    return strcmp(full, n) == 0 || (slash && strcmp(slash + 1, n) == 0);
}

/* The member under parent named n (through unnamed stream contents), or -1. */
static int
member_find(struct state *st, int parent, const char *n, int depth)
{
    if (depth > CHAIN_MAX)
        return -1;
    for (size_t i = 0; i < st->nmembers; i++) {
        const struct member *m = &st->members[i];
        if (m->parent != parent)
            continue;
        if (m->name == NULL) {
            int r = member_find(st, (int)i, n, depth + 1);
            if (r >= 0)
                return r;
        } else if (member_match(m->name, n)) {
            return (int)i;
        }
    }
    return -1;
}

/* libclamav's own temporary file names ("clamav-<md5>.tmp") say nothing to a reader. */
static int
clam_tmp_name(const char *s)
{
    if (strncmp(s, "clamav-", 7) != 0 || strlen(s) < 7 + 32)
        return 0;
    for (int i = 7; i < 7 + 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[39] == '\0' || strcmp(s + 39, ".tmp") == 0;
}

/*
 * The location of libclamav's innermost object: the part, then the names
 * of the chain, made full paths where the walk saw them. Returns the
 * walk's member the object is, or -1.
 */
static int
chain_location(struct state *st, int with_chain, char *loc, size_t size)
{
    size_t n;
    int cur = -1;

    snprintf(loc, size, "%s", st->base);
    n = strlen(loc);
    for (int i = 0; with_chain && i < st->nchain && n < size - 1; i++) {
        const char *nm = st->chain[i];
        int r = cur >= -1 ? member_find(st, cur, nm, 0) : -1;
        if (r >= 0)
            nm = st->members[r].name;
        cur = r >= 0 ? r : -2;
        int w = snprintf(loc + n, size - n, "/%s", nm);
        if (w < 0)
            break;
        n += (size_t)w;
        if (n >= size)
            n = size - 1;
    }
    for (char *p = loc; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            *p = '?';
    return with_chain && st->nchain > 0 && cur >= 0 ? cur : -1;
}

/*
 * libclamav callbacks: remember the innermost object, name matches by
 * it; and hold a member the walk counted by its declared size to that
 * size as libclamav expands it. One that comes out larger lied: a limit
 * hit ("declared_size", the file_size rule's action), and the object is
 * blocked so that libclamav neither goes on with it nor caches the part
 * as clean.
 */
static int
on_inspect(void *arg, unsigned level, const char *const *names, const char *type, size_t size,
           int normalized)
{
    struct state *st = arg;
    size_t used = 0;
    char loc[LOC_MAX];
    int r;
    (void)type;

    st->nchain = 0;
    for (unsigned i = 0; i < level && st->nchain < CHAIN_MAX; i++) {
        const char *s = names[i];
        size_t n;
        while (s && *s == '/')
            s++;
        if (s == NULL || s[0] == '\0' || clam_tmp_name(s))
            continue;
        n = strlen(s) + 1;
        if (used + n > sizeof(st->chain_buf))
            break;
        memcpy(st->chain_buf + used, s, n);
        st->chain[st->nchain++] = st->chain_buf + used;
        used += n;
    }
    if (level == 0 || normalized || st->budget.trusted == 0 || st->base == NULL)
        return 0;
    if ((r = chain_location(st, 1, loc, sizeof(loc))) < 0 || st->members[r].declared < 0)
        return 0;
    if ((int64_t)size <= st->members[r].declared) {
        st->members[r].confirmed = 1;
        return 0;
    }
    st->part_lied = 1;
    /* A member larger than declared: the file_size rule's action. */
    limit_finding(st, "declared_size", &st->cfg->scan.file_size, loc, (int64_t)size,
                  st->members[r].declared);
    return 1;
}

static void
found(struct state *st, const char *virname, int with_chain)
{
    char loc[LOC_MAX];

    chain_location(st, with_chain, loc, sizeof(loc));
    if (st->part_lied && strncmp(virname, ENGINE_BLOCKED, strlen(ENGINE_BLOCKED)) == 0)
        return; /* our own block of a member that lied: found already */
    if (strncmp(virname, "Heuristics.Limits.Exceeded.", 27) == 0) {
        st->part_partial = 1;
        /* libclamav stopped short: a timeout is a scan error; its other
         * limits (file size, recursion...) are ours to judge by the size
         * rules, so they are not findings of their own. */
        if (strstr(virname, "MaxScanTime") && !st->timed_out) {
            st->timed_out = 1;
            error_finding(st, "virus", "scan timeout", loc);
        }
        return;
    }
    if (strncmp(virname, "Heuristics.Encrypted.", 21) == 0) {
        if (!st->part_encrypted)
            virus_finding(st, SCAN_ENCRYPTED, virname, loc);
        st->part_encrypted = 1;
        return;
    }
    virus_finding(st, SCAN_VIRUS, virname, loc);
}

static void
on_virus(void *arg, const char *virname)
{
    struct state *st = arg;

    if (st->part_lied && strncmp(virname, ENGINE_BLOCKED, strlen(ENGINE_BLOCKED)) == 0)
        return;
    st->part_virus = 1;
    found(st, virname, 1);
}

static void
on_fresh(void *arg)
{
    struct state *st = arg;
    st->clam_fresh = 1;
}

/* One object through libclamav; findings recorded. */
static void
clam_scan(struct state *st, const void *data, size_t len, const char *name)
{
    struct engine_scan_cb cb = {on_inspect, on_virus, on_fresh, st};
    const char *virname = NULL;
    char err[256];

    st->nchain = 0;
    st->part_virus = 0;
    st->clam_fresh = 0;
    switch (engine_scan_mem(st->e, data, len, name, &cb, &virname, err, sizeof(err))) {
    case ENGINE_CLEAN:
        break;
    case ENGINE_VIRUS:
        /* Heuristic matches do not go through the callback. */
        if (!st->part_virus)
            found(st, virname, 0);
        break;
    case ENGINE_TIMEOUT:
    case ENGINE_ERROR:
        error_finding(st, "virus", err, st->base);
        break;
    }
}

static int
past_deadline(struct state *st)
{
    return st->has_deadline && clock_mono() >= st->deadline;
}

/* mime_walk callback: one decoded leaf part. */
static void trust_for_libclamav(struct state *st, int64_t part_len);
static int unconfirmed(struct state *st, size_t before);
static void rewalk(struct state *st, const struct arch_budget *saved,
                   const struct mime_part_info *pi, const char *base);

static int
part_cb(void *arg, const struct mime_part_info *pi)
{
    struct state *st = arg;
    struct scan_result *r = st->res;
    struct scan_part *p;
    char base[LOC_MAX];

    if (past_deadline(st)) {
        st->part = 0;
        if (!st->timed_out) {
            st->timed_out = 1;
            error_finding(st, "scan", "scan timeout", "message");
        }
        return 1;
    }

    /* Record the part. */
    p = realloc(r->parts, (r->nparts + 1) * sizeof(*p));
    if (p == NULL) {
        st->oom = 1;
        return 1;
    }
    r->parts = p;
    p = &r->parts[r->nparts++];
    memset(p, 0, sizeof(*p));
    p->index = pi->index;
    p->depth = pi->depth;
    p->path = dupstr(st, pi->path);
    p->filename = dupstr(st, pi->filename);
    p->content_type = dupstr(st, pi->content_type ? pi->content_type : "text/plain");
    p->size = (int64_t)pi->len;
    p->encoded_size = pi->encoded_len;
    p->decode_error = pi->decode_error;
    p->embedded = pi->embedded;
    p->raw_begin = pi->raw_begin;
    p->raw_end = pi->raw_end;
    st->part = (int)r->nparts;
    if (pi->path && pi->path[0])
        snprintf(base, sizeof(base), "%s", pi->path);
    else if (pi->filename && pi->filename[0])
        snprintf(base, sizeof(base), "%s", pi->filename);
    else
        snprintf(base, sizeof(base), "part %d", pi->index);
    st->base = base;
    st->part_encrypted = 0;

    /* Size rules and the archive budget, then libclamav. */
    size_t before = r->nfindings, dropped = r->findings_dropped;
    arch_account_file(&st->budget, (int64_t)pi->len, base);
    st->budget.trusted = 0; /* this part's members only */
    st->budget.trust_file = 0;
    struct arch_budget saved = st->budget;
    int archive = !st->budget.spent && arch_sniff(pi->data, pi->len);
    if (archive) {
        trust_for_libclamav(st, (int64_t)pi->len);
        arch_walk(&st->budget, pi->data, pi->len, base);
    }
    /*
     * A part our budget already found to be a decompression bomb is not
     * handed to libclamav: it would inflate it again up to its own limits
     * (virus.max_file_size) for nothing, the verdict is the limit's.
     */
    int bomb = 0;
    for (size_t i = before; i < r->nfindings; i++)
        if (r->findings[i].kind == SCAN_LIMIT && r->findings[i].name &&
            (strcmp(r->findings[i].name, "compression_ratio") == 0 ||
             strcmp(r->findings[i].name, "file_size") == 0 ||
             strcmp(r->findings[i].name, "total_size") == 0))
            bomb = 1;
    st->part_lied = 0;
    st->part_partial = 0;
    if (!bomb && !past_deadline(st)) {
        /*
         * The same bytes found clean by this engine before (the engine's
         * cache) are not scanned again: as with libclamav's own cache of
         * clean objects, a hit vouches for members counted by declared
         * size. Only a part with no finding at all, scanned whole, goes
         * into the cache.
         */
        unsigned char digest[ENGINE_DIGEST_LEN];
        int digested = engine_digest(pi->data, pi->len, digest) == 0;
        if (digested && engine_clean_cached(st->e, digest)) {
            st->clam_fresh = 0;
            st->res->cache_hits++;
        } else {
            clam_scan(st, pi->data, pi->len, pi->filename);
        }
        if (archive && unconfirmed(st, before))
            rewalk(st, &saved, pi, base);
        if (digested && r->nfindings == before && r->findings_dropped == dropped &&
            !st->part_partial && !st->oom && !past_deadline(st))
            engine_clean_remember(st->e, digest);
    }
    members_clear(st);
    if (past_deadline(st) && !st->timed_out) {
        st->timed_out = 1;
        error_finding(st, "scan", "scan timeout", base);
    }

    st->base = NULL;
    st->part = 0;
    return st->oom ? 1 : 0;
}

/*
 * Members counted by declared size are expanded once, by libclamav, which
 * must get to every one: trust no member larger than libclamav expands
 * (virus.max_file_size), and stay well inside what one libclamav scan
 * expands in all (max_scan_size, max_files). A lying member costs what
 * libclamav expands of it, max_file_size, in memory: trust stays off (as
 * part_cb set it) when that is more than TRUST_MAX_FILE, or unlimited.
 */
#define TRUST_MAX_FILE (32LL << 20)

static void
trust_for_libclamav(struct state *st, int64_t part_len)
{
    const struct sr_config_virus *vc = &st->cfg->virus;

    if (vc->max_file_size <= 0 || vc->max_file_size > TRUST_MAX_FILE || vc->max_scan_size <= 0 ||
        vc->max_files <= 0)
        return;
    st->budget.trust_file = vc->max_file_size;
    st->budget.trust_bytes = vc->max_scan_size / 2 - part_len;
    st->budget.trust_files = vc->max_files / 2;
}

/*
 * The engine generation whose cache of clean objects holds a part that
 * only our second walk (rewalk) found over a limit: libclamav had cached
 * it as clean by then. Until the next engine (a new, empty cache), a
 * cache hit no longer vouches for members counted by declared size.
 */
static _Atomic uint64_t cache_distrusted;

/*
 * After libclamav: did a member counted by declared size go unconfirmed
 * although libclamav had no reason to stop early (a virus, a limit, an
 * error found since "before")? A hit in libclamav's cache (nothing
 * scanned) vouches for the part: it held no lie when it was scanned.
 */
static int
unconfirmed(struct state *st, size_t before)
{
    const struct scan_result *r = st->res;

    if (st->budget.trusted == 0 || st->part_lied)
        return 0;
    if (!st->clam_fresh && atomic_load(&cache_distrusted) != engine_generation(st->e))
        return 0;
    for (size_t i = before; i < r->nfindings; i++)
        if (r->findings[i].kind == SCAN_VIRUS || r->findings[i].kind == SCAN_ERROR ||
            r->findings[i].kind == SCAN_LIMIT)
            return 0;
    for (size_t i = 0; i < st->nmembers; i++)
        if (st->members[i].declared >= 0 && !st->members[i].confirmed)
            return 1;
    return 0;
}

/* The part's archive walked again, every member expanded (trust off). */
static void
rewalk(struct state *st, const struct arch_budget *saved, const struct mime_part_info *pi,
       const char *base)
{
    log_debug("scan: %s: libclamav did not expand every member, walked again", base);
    st->budget = *saved; /* as before the walk: trust off */
    st->budget.member = NULL;
    st->rewalk = 1;
    if (arch_walk(&st->budget, pi->data, pi->len, base) == ARCH_STOPPED)
        atomic_store(&cache_distrusted, engine_generation(st->e));
    st->rewalk = 0;
    st->budget.member = arch_member;
}

/* Printable ASCII copy for a header field. */
static void
header_safe(char *dst, size_t dlen, const char *src)
{
    size_t n = 0;
    for (; *src && n + 1 < dlen; src++)
        dst[n++] = (*src >= 0x20 && *src < 0x7F) ? *src : '?';
    dst[n] = '\0';
}

void
scan_scanned_header(struct sr_engine *e, char *buf, size_t len)
{
    snprintf(buf, len, "scanrelay %s (ClamAV %s/%u)", SCANRELAY_VERSION, engine_version(),
             engine_signatures(e));
}

int
scan_add_header(struct scan_result *r, const char *name, const char *value)
{
    char v[900], *line, **h;
    size_t n;

    header_safe(v, sizeof(v), value ? value : "");
    n = strlen(name) + 2 + strlen(v) + 1;
    if ((line = malloc(n)) == NULL)
        return -1;
    snprintf(line, n, "%s: %s", name, v);
    if ((h = realloc(r->headers, (r->nheaders + 1) * sizeof(*h))) == NULL) {
        free(line);
        return -1;
    }
    r->headers = h;
    r->headers[r->nheaders++] = line;
    return 0;
}

/*
 * The virus checker's header fields, put first: X-Virus-Status is Clean
 * only when nothing kept a part from being checked (no virus, limit,
 * encrypted or error finding).
 */
static void
virus_headers(struct state *st)
{
    struct scan_result *r = st->res;
    size_t had = r->nheaders;
    int unchecked = 0;
    char v[256], status[300];

    for (size_t i = 0; i < r->nfindings; i++) {
        enum scan_kind k = r->findings[i].kind;
        unchecked |= k == SCAN_ERROR || k == SCAN_LIMIT || k == SCAN_ENCRYPTED;
    }
    if (r->virus) {
        header_safe(v, 200, r->virus);
        snprintf(status, sizeof(status), "Infected (%s)", v);
    } else {
        snprintf(status, sizeof(status), "%s", unchecked ? "Unchecked" : "Clean");
    }
    scan_scanned_header(st->e, v, sizeof(v));
    if (scan_add_header(r, "X-Virus-Scanned", v) < 0 ||
        scan_add_header(r, "X-Virus-Status", status) < 0) {
        st->oom = 1;
        return;
    }
    /* Rotate the two to the front. */
    char *a = r->headers[r->nheaders - 2], *b = r->headers[r->nheaders - 1];
    memmove(r->headers + 2, r->headers, had * sizeof(*r->headers));
    r->headers[0] = a;
    r->headers[1] = b;
}

/* Compose the findings into the verdict: action, deciding rule, reason, strips, headers. */
static void
conclude(struct state *st, const struct scan_opts *opts)
{
    static const enum scan_kind prefer[] = {SCAN_VIRUS, SCAN_SPAM,  SCAN_POLICY,
                                            SCAN_ENCRYPTED, SCAN_LIMIT, SCAN_ERROR};
    struct verdict_params vp = {NULL, 0, prefer, sizeof(prefer) / sizeof(prefer[0])};
    struct scan_result *r = st->res;
    const struct scan_finding *deciding = NULL;
    struct verdict v;
    char line[1536];

    if (opts != NULL) {
        vp.thresholds = opts->thresholds;
        vp.nthresholds = opts->nthresholds;
    }
    verdict_compose(r->findings, r->nfindings, &vp, &v);
    r->action = v.action;
    r->deciding = v.deciding;
    r->has_score = v.has_score;
    r->score = v.score;
    r->kind = SCAN_CLEAN;
    for (size_t i = 0; i < r->nfindings; i++) {
        const struct scan_finding *f = &r->findings[i];
        if (f->kind == SCAN_VIRUS && r->virus == NULL)
            r->virus = dupstr(st, f->name);
    }
    if (v.deciding >= 0) {
        deciding = &r->findings[v.deciding];
        r->kind = deciding->kind;
        r->checker = deciding->checker;
        r->rule = dupstr(st, deciding->rule);
        const char *loc = deciding->location ? deciding->location : "message";
        const char *nm = deciding->name ? deciding->name : "?";
        switch (deciding->kind) {
        case SCAN_VIRUS:
            snprintf(line, sizeof(line), "virus %s in %s", nm, loc);
            break;
        case SCAN_ENCRYPTED:
            snprintf(line, sizeof(line), "encrypted archive %s", loc);
            break;
        case SCAN_LIMIT:
            snprintf(line, sizeof(line), "%s limit exceeded in %s (%lld > %lld)", nm, loc,
                     (long long)deciding->value, (long long)deciding->limit);
            break;
        case SCAN_ERROR:
            snprintf(line, sizeof(line), "not scanned: %s: %s", loc, nm);
            break;
        default:
            snprintf(line, sizeof(line), "%s %s: %s in %s", deciding->checker ? deciding->checker : "?",
                     deciding->rule ? deciding->rule : "?", nm, loc);
            break;
        }
        r->reason = dupstr(st, line);
        r->location = dupstr(st, loc);
    }
    r->result = scan_result_word(r->kind);

    /* Parts to strip: those with a finding whose action is strip. */
    if (r->action == SR_ACTION_STRIP) {
        for (size_t i = 0; i < r->nfindings; i++) {
            const struct scan_finding *f = &r->findings[i];
            struct scan_strip *s;
            int dup = 0;
            if (f->action != SR_ACTION_STRIP || f->part < 1 || (size_t)f->part > r->nparts)
                continue;
            for (size_t j = 0; j < r->nstrips; j++)
                dup |= r->strips[j].part == f->part;
            if (dup)
                continue;
            s = realloc(r->strips, (r->nstrips + 1) * sizeof(*s));
            if (s == NULL) {
                st->oom = 1;
                break;
            }
            r->strips = s;
            s = &r->strips[r->nstrips++];
            const struct scan_part *p = &r->parts[f->part - 1];
            s->part = f->part;
            s->raw_begin = p->raw_begin;
            s->raw_end = p->raw_end;
            s->filename = dupstr(st, p->filename);
            if (f->kind == SCAN_VIRUS)
                snprintf(line, sizeof(line), "infected: %s", f->name);
            else if (f->kind == SCAN_ENCRYPTED)
                snprintf(line, sizeof(line), "encrypted archive");
            else
                snprintf(line, sizeof(line), "%s limit exceeded", f->name);
            s->reason = dupstr(st, line);
        }
    }

    virus_headers(st);
}

/* The caller's checkers, after the built-in ones. */
static void
run_checkers(struct state *st, const struct scan_opts *opts, const char *msg, size_t len,
             int nrcpts, struct mime_msg *m)
{
    struct scan_result *r = st->res;
    struct scan_input in = {msg,           len,         nrcpts,         st->cfg,
                            r->subject,    r->hdr_from, r->message_id, m};

    st->part = 0;
    for (size_t i = 0; opts != NULL && i < opts->ncheckers; i++) {
        const struct scan_checker *c = &opts->checkers[i];
        if (c->check(c->arg, &in, r) < 0) {
            char what[128];
            snprintf(what, sizeof(what), "checker %s failed", c->name ? c->name : "?");
            error_finding(st, "scan", what, "message");
        }
    }
}

/* Fresh result and state. */
static void
state_init(struct state *st, struct sr_engine *e, const struct sr_config *cfg,
           struct scan_result *res)
{
    const struct sr_config_scan *sc = &cfg->scan;
    struct arch_limits lim;

    memset(res, 0, sizeof(*res));
    memset(st, 0, sizeof(*st));
    res->action = SR_ACTION_DELIVER;
    res->deciding = -1;
    res->engine_generation = engine_generation(e);
    st->e = e;
    st->cfg = cfg;
    st->res = res;
    lim.depth = sc->archive_depth.threshold;
    lim.files = sc->archive_files.threshold;
    lim.file_size = sc->file_size.threshold;
    lim.total = sc->total_size.threshold;
    lim.ratio = sc->compression_ratio.threshold;
    arch_budget_init(&st->budget, &lim, arch_report, st);
    st->budget.member = arch_member;
}

/* The message could not be read: an error verdict. */
static int
read_error(struct sr_engine *e, const struct sr_config *cfg, struct scan_result *res, int errnum)
{
    struct state st;
    char why[256];

    state_init(&st, e, cfg, res);
    snprintf(why, sizeof(why), "cannot read the message: %s", strerror(errnum));
    error_finding(&st, "scan", why, "message");
    conclude(&st, NULL);
    return st.oom ? -1 : 0;
}

int
scan_message(struct sr_engine *e, const struct sr_config *cfg, const char *msg, size_t len,
             int nrcpts, struct scan_result *res)
{
    return scan_message_opts(e, cfg, msg, len, nrcpts, NULL, res);
}

int
scan_message_opts(struct sr_engine *e, const struct sr_config *cfg, const char *msg, size_t len,
                  int nrcpts, const struct scan_opts *opts, struct scan_result *res)
{
    const struct sr_config_scan *sc = &cfg->scan;
    struct state st;
    struct mime_msg *m;
    double t0;
    char err[256];

    /*
     * Initialize.
     */
    t0 = clock_mono();
    state_init(&st, e, cfg, res);
    if (sc->timeout > 0) {
        st.has_deadline = 1;
        st.deadline = t0 + (double)sc->timeout;
        st.budget.deadline = st.deadline; /* the archive walk stops there too */
    }

    /*
     * Message-wide rules.
     */
    if (sc->message_size.threshold && (int64_t)len > sc->message_size.threshold)
        limit_finding(&st, "message_size", &sc->message_size, "message", (int64_t)len,
                      sc->message_size.threshold);
    if (sc->recipients.threshold && nrcpts > sc->recipients.threshold)
        limit_finding(&st, "recipients", &sc->recipients, "message", nrcpts,
                      sc->recipients.threshold);

    /*
     * The parts.
     */
    m = mime_parse_mem(msg, len, (int)sc->max_mime_depth, (int)sc->max_mime_parts, err,
                       sizeof(err));
    if (m == NULL) {
        error_finding(&st, "scan", err, "message");
        st.base = "message";
        clam_scan(&st, msg, len, NULL);
    } else {
        res->subject = strdup(mime_subject(m));
        res->hdr_from = strdup(mime_from(m));
        res->message_id = strdup(mime_message_id(m));
        if (res->subject == NULL || res->hdr_from == NULL || res->message_id == NULL)
            st.oom = 1;
        int wrc = mime_walk(m, part_cb, &st);
        res->mime_limits = mime_limits_hit(m);
        if (wrc < 0)
            st.oom = 1;
        if (res->mime_limits & MIME_LIMIT_DEPTH)
            limit_finding(&st, "mime_depth", &sc->archive_depth, "message",
                          sc->max_mime_depth + 1, sc->max_mime_depth);
        if (res->mime_limits & MIME_LIMIT_PARTS)
            limit_finding(&st, "mime_parts", &sc->archive_files, "message",
                          sc->max_mime_parts + 1, sc->max_mime_parts);
        /* Beyond the MIME limits, libclamav's own mail parser still looks. */
        if (res->mime_limits && !past_deadline(&st)) {
            st.base = "message";
            clam_scan(&st, msg, len, NULL);
        }
    }

    res->expanded = st.budget.total;
    res->archive_files = st.budget.files;
    res->archive_depth = st.budget.max_depth;
    res->archive_peak_buffer = st.budget.peak_buffer;
    run_checkers(&st, opts, msg, len, nrcpts, m);
    mime_free(m);
    if (st.oom) {
        st.part = 0;
        error_finding(&st, "scan", "out of memory", "message");
    }
    conclude(&st, opts);
    res->elapsed = clock_mono() - t0;
    if (st.oom) {
        /* Whatever was built, the verdict must not let the message pass unchecked. */
        if (res->kind == SCAN_CLEAN)
            res->kind = SCAN_ERROR;
        if (sr_action_rank(cfg->scan.error_action) > sr_action_rank(res->action))
            res->action = cfg->scan.error_action;
        res->result = scan_result_word(res->kind);
        return res->nheaders >= 2 && res->headers[0] && res->headers[1] ? 0 : -1;
    }
    return 0;
}

int
scan_message_fd_opts(struct sr_engine *e, const struct sr_config *cfg, int fd, int nrcpts,
                     const struct scan_opts *opts, struct scan_result *res)
{
    struct stat sb;
    int rc;

    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            rc = scan_message_opts(e, cfg, p, (size_t)sb.st_size, nrcpts, opts, res);
            munmap(p, (size_t)sb.st_size);
            return rc;
        }
    }

    /* A pipe, or mmap refused: read it all. */
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    int saved;
    if (buf == NULL)
        goto fail;
    for (;;) {
        if (len == cap) {
            char *nb;
            if (cap >= FD_READ_MAX) {
                errno = EFBIG;
                goto fail;
            }
            if ((nb = realloc(buf, cap * 2)) == NULL)
                goto fail;
            buf = nb;
            cap *= 2;
        }
        n = pread(fd, buf + len, cap - len, (off_t)len);
        if (n < 0 && errno == ESPIPE)
            n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    rc = scan_message_opts(e, cfg, buf, len, nrcpts, opts, res);
    free(buf);
    return rc;

fail:
    saved = errno;
    free(buf);
    return read_error(e, cfg, res, saved);
}

int
scan_message_fd(struct sr_engine *e, const struct sr_config *cfg, int fd, int nrcpts,
                struct scan_result *res)
{
    return scan_message_fd_opts(e, cfg, fd, nrcpts, NULL, res);
}

void
scan_result_free(struct scan_result *res)
{
    if (res == NULL)
        return;
    for (size_t i = 0; i < res->nfindings; i++) {
        free(res->findings[i].rule);
        free(res->findings[i].name);
        free(res->findings[i].location);
    }
    free(res->findings);
    for (size_t i = 0; i < res->nparts; i++) {
        free(res->parts[i].path);
        free(res->parts[i].filename);
        free(res->parts[i].content_type);
    }
    free(res->parts);
    for (size_t i = 0; i < res->nstrips; i++) {
        free(res->strips[i].filename);
        free(res->strips[i].reason);
    }
    free(res->strips);
    for (size_t i = 0; i < res->nheaders; i++)
        free(res->headers[i]);
    free(res->headers);
    free(res->rule);
    free(res->virus);
    free(res->location);
    free(res->reason);
    free(res->subject);
    free(res->hdr_from);
    free(res->message_id);
    memset(res, 0, sizeof(*res));
}
