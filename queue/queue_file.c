/*
 * queue_file.c - the deferred queue on disk: one file per message that the
 * relay has taken custody of, created crash-safely, updated in place,
 * moved between deferred/ and hold/, listed by a directory scan.
 *
 * Public calls: queue_dir_init, queue_dir_cleanup, queue_dir_scan,
 * queue_file_create, queue_file_load, queue_entry_free, queue_file_set_rcpt,
 * queue_file_set_meta, queue_file_read_content, queue_file_remove,
 * queue_file_hold, queue_file_release. All return 0 (or a count, or a
 * pointer) on success and -1 (or NULL) with errno set on failure; none of
 * them aborts the program or logs: the caller knows which queue ID and
 * session to name. Nothing here keeps global state, so the scheduler and
 * the CLI may use it side by side.
 *
 * File format, version 1 (text records, one per line, then the content):
 *
 *   scanrelay-queue 1                      magic and version, first line
 *   arrival 1700000000                     time the message was received
 *   sender =XTEXT                          "=" then the address in xtext;
 *                                          "=" alone is the null sender
 *   envid =XTEXT                           optional: ENVID as given
 *   ret FULL|HDRS                          optional: RET=
 *   body 7BIT|8BITMIME                     optional: BODY=
 *   smtputf8                               optional: SMTPUTF8 was given
 *   xforward NAME =XTEXT                   optional, per XFORWARD attribute
 *   meta AAAAAAAAAA LLLLLLLLLLLLLLLLLLLL NNNNNNNNNNNNNNNNNNNN
 *                                          attempts (10 digits), last and
 *                                          next attempt (20 digits each)
 *   rcpt S LLL <reason slot> =XTEXT N O    one per recipient: state byte S
 *                                          (P pending, T deferred, D done,
 *                                          B bounced), reason length LLL
 *                                          (3 digits), the reason in a slot
 *                                          of QF_REASON_MAX bytes padded
 *                                          with spaces, then the address in
 *                                          xtext, the NOTIFY bits (decimal)
 *                                          and ORCPT ("-" for none, else
 *                                          "=" and xtext)
 *   size 12345                             content bytes that follow
 *   content                                terminator of the envelope
 *   <content bytes to end of file>
 *
 * Everything before the content is printable ASCII (xtext never holds a
 * space, "=" or a line break), except the reason slots, which hold the
 * reply text with control characters replaced by spaces, truncated to
 * QF_REASON_MAX bytes at a UTF-8 character boundary. The "meta" digits and
 * a recipient's "S LLL <slot>" are fixed-width, so updates are one pwrite()
 * each and never move the content. A torn in-place write leaves digits and
 * state letters that still parse (a reason length above the slot is
 * clamped), so a crash mid-update never makes a file unreadable.
 *
 * Sender, recipients, ORCPT, ENVID and XFORWARD values never contain CR
 * or LF: create refuses them and load rejects them (EINVAL), so a damaged
 * file cannot smuggle an SMTP command into a delivery.
 *
 * Loading reads the envelope only (in small chunks up to the "content"
 * line, at most QF_HEADER_MAX bytes) and checks that the file size equals
 * content offset plus "size", so a truncated file is refused (EINVAL), as
 * is any record out of place, unknown or malformed.
 *
 * Durability: create writes tmp/ID (O_EXCL), fsyncs, closes, renames to
 * deferred/ID without replacing anything, and fsyncs deferred/ (the one
 * crash-safe write, lib/safefile.c); on any failure the file is removed
 * and errno is kept. set_rcpt with durable
 * fdatasyncs (a recipient marked done before the file is removed). Hold and
 * release fsync both folders. Remove does not fsync: a file that comes back
 * after a crash has its done recipients marked and is merely cleaned up.
 *
 * Use: queue_dir_cleanup at start-up only (it removes whatever is in tmp/,
 * including a file another thread would be writing). Load with open_rw 0
 * to index or list (no descriptor kept), with 1 only for the messages
 * being delivered. create, set_rcpt with durable, hold and release block
 * on the disk: keep them off the event loop.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fileio.h"
#include "queue_file.h"
#include "safefile.h"
#include "spool.h"

#define QF_MAGIC "scanrelay-queue 1"
#define QF_REASON_MAX 250
#define QF_HEADER_MAX (16 * 1024 * 1024)
#define QF_READ_CHUNK 8192

/* "S LLL <slot>" of a rcpt record, and "AAAAAAAAAA L(20) N(20)" of meta. */
#define QF_RCPT_FIXED (1 + 1 + 3 + 1 + QF_REASON_MAX)
#define QF_META_FIXED (10 + 1 + 20 + 1 + 20)

static const char *const qf_where_dir[] = {"deferred", "hold"};

/* A growing byte buffer for building the envelope; errors are sticky. */
struct qf_buf {
    char *p;
    size_t len, cap;
    int failed;
};

static void
qb_add(struct qf_buf *b, const void *data, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (np == NULL) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
qb_str(struct qf_buf *b, const char *s)
{
    qb_add(b, s, strlen(s));
}

static void qb_printf(struct qf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
qb_printf(struct qf_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->failed = 1;
        return;
    }
    qb_add(b, tmp, (size_t)n);
}

/* "=" and the xtext form of s; sticky failure on no memory. */
static void
qb_xtext(struct qf_buf *b, const char *s)
{
    char *x = xtext_encode(s);
    if (x == NULL) {
        b->failed = 1;
        return;
    }
    qb_add(b, "=", 1);
    qb_str(b, x);
    free(x);
}

/* Build "dir/sub/id" (sub or id may be NULL); -1 ENAMETOOLONG. */
static int
qf_path(char *buf, size_t len, const char *qdir, const char *sub, const char *id)
{
    int n;
    if (id)
        n = snprintf(buf, len, "%s/%s/%s", qdir, sub, id);
    else if (sub)
        n = snprintf(buf, len, "%s/%s", qdir, sub);
    else
        n = snprintf(buf, len, "%s", qdir);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}


static int
pwrite_full(int fd, const void *buf, size_t n, off_t off)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        off += w;
        n -= (size_t)w;
    }
    return 0;
}

static char
state_letter(enum rcpt_state st)
{
    switch (st) {
    case RCPT_PENDING:
        return 'P';
    case RCPT_DONE:
        return 'D';
    case RCPT_BOUNCED:
        return 'B';
    case RCPT_DEFERRED:
        return 'T';
    }
    return '?';
}

static int
letter_state(char c, enum rcpt_state *st)
{
    switch (c) {
    case 'P':
        *st = RCPT_PENDING;
        return 0;
    case 'D':
        *st = RCPT_DONE;
        return 0;
    case 'B':
        *st = RCPT_BOUNCED;
        return 0;
    case 'T':
        *st = RCPT_DEFERRED;
        return 0;
    }
    return -1;
}

/*
 * Fill the fixed part of a rcpt record ("S LLL <slot>", QF_RCPT_FIXED
 * bytes, no terminator): control characters become spaces, the reason is
 * cut at QF_REASON_MAX bytes without splitting a UTF-8 sequence. The
 * stored text goes to *stored (same bytes as the slot), NULL when empty.
 */
static void
rcpt_fixed(char *out, enum rcpt_state st, const char *reason, char *stored)
{
    size_t n = 0;
    if (reason) {
        n = strlen(reason);
        if (n > QF_REASON_MAX) {
            n = QF_REASON_MAX;
            /* Back off over continuation bytes to the lead byte, drop it. */
            size_t k = n;
            while (k > 0 && ((unsigned char)reason[k] & 0xC0) == 0x80)
                k--;
            n = k;
        }
    }
    out[0] = state_letter(st);
    out[1] = ' ';
    out[2] = (char)('0' + n / 100);
    out[3] = (char)('0' + n / 10 % 10);
    out[4] = (char)('0' + n % 10);
    out[5] = ' ';
    char *slot = out + 6;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)reason[i];
        slot[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    memset(slot + n, ' ', QF_REASON_MAX - n);
    if (stored) {
        memcpy(stored, slot, n);
        stored[n] = '\0';
    }
}

static void
meta_fixed(char *out, int attempts, time_t last, time_t next)
{
    long long a = attempts < 0 ? 0 : attempts;
    long long l = last < 0 ? 0 : (long long)last;
    long long x = next < 0 ? 0 : (long long)next;
    char tmp[QF_META_FIXED + 1];
    snprintf(tmp, sizeof(tmp), "%010lld %020lld %020lld", a, l, x);
    memcpy(out, tmp, QF_META_FIXED);
}

int
queue_dir_init(const char *qdir)
{
    char path[PATH_MAX];
    const char *subs[] = {NULL, "tmp", "deferred", "hold"};

    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        if (qf_path(path, sizeof(path), qdir, subs[i], NULL) < 0)
            return -1;
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

int
queue_dir_cleanup(const char *qdir)
{
    char dpath[PATH_MAX], path[PATH_MAX];
    int count = 0;

    if (qf_path(dpath, sizeof(dpath), qdir, "tmp", NULL) < 0)
        return -1;
    DIR *d = opendir(dpath);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_type == DT_DIR)
            continue;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (qf_path(path, sizeof(path), dpath, de->d_name, NULL) < 0)
            continue;
        if (unlink(path) == 0)
            count++;
    }
    closedir(d);
    return count;
}

/* 1 when s holds CR or LF: never in an envelope, it could forge SMTP lines. */
static int
has_break(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") != NULL;
}

/* The envelope part of a new queue file, up to and including "content\n". */
static int
build_header(struct qf_buf *b, const struct envelope *env, off_t content_size)
{
    static const char *const ret_names[] = {NULL, "FULL", "HDRS"};
    static const char *const body_names[] = {NULL, "7BIT", "8BITMIME"};
    char fixed[QF_RCPT_FIXED + 1];
    char meta[QF_META_FIXED + 1];
    size_t nwritten = 0;
    int bad_text = has_break(env->sender) || has_break(env->envid);

    for (int i = 0; i < XF_COUNT; i++)
        bad_text |= has_break(env->xforward[i]);
    qb_str(b, QF_MAGIC "\n");
    qb_printf(b, "arrival %lld\n", (long long)(env->arrival < 0 ? 0 : env->arrival));
    qb_str(b, "sender ");
    qb_xtext(b, env->sender ? env->sender : "");
    qb_str(b, "\n");
    if (env->envid) {
        qb_str(b, "envid ");
        qb_xtext(b, env->envid);
        qb_str(b, "\n");
    }
    if (env->ret == DSN_RET_FULL || env->ret == DSN_RET_HDRS)
        qb_printf(b, "ret %s\n", ret_names[env->ret]);
    if (env->body == BODY_7BIT || env->body == BODY_8BITMIME)
        qb_printf(b, "body %s\n", body_names[env->body]);
    if (env->smtputf8)
        qb_str(b, "smtputf8\n");
    for (int i = 0; i < XF_COUNT; i++) {
        if (env->xforward[i] == NULL)
            continue;
        qb_printf(b, "xforward %s ", xf_attr_names[i]);
        qb_xtext(b, env->xforward[i]);
        qb_str(b, "\n");
    }
    meta_fixed(meta, 0, 0, 0);
    meta[QF_META_FIXED] = '\0';
    qb_printf(b, "meta %s\n", meta);
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *r = &env->rcpt[i];
        if (r->state != RCPT_PENDING && r->state != RCPT_DEFERRED)
            continue;
        bad_text |= has_break(r->addr) || has_break(r->orcpt);
        rcpt_fixed(fixed, RCPT_PENDING, r->reason, NULL);
        fixed[QF_RCPT_FIXED] = '\0';
        qb_str(b, "rcpt ");
        qb_add(b, fixed, QF_RCPT_FIXED);
        qb_str(b, " ");
        qb_xtext(b, r->addr ? r->addr : "");
        qb_printf(b, " %u ", r->notify & 0x0fu);
        if (r->orcpt)
            qb_xtext(b, r->orcpt);
        else
            qb_str(b, "-");
        qb_str(b, "\n");
        nwritten++;
    }
    qb_printf(b, "size %lld\n", (long long)content_size);
    qb_str(b, "content\n");
    if (b->failed) {
        errno = ENOMEM;
        return -1;
    }
    if (nwritten == 0 || bad_text) {
        errno = EINVAL; /* nothing left to deliver, or a forged line */
        return -1;
    }
    return 0;
}

/* What safe_write puts in a new queue file: envelope header, prefix, body. */
struct qf_fill {
    const struct qf_buf *hb;
    const char *prefix;
    size_t prefixlen;
    struct spool *body;
};

static int
qf_fill(int fd, void *arg)
{
    const struct qf_fill *f = arg;
    if (write_full(fd, f->hb->p, f->hb->len) < 0)
        return -1;
    if (f->prefixlen > 0 && write_full(fd, f->prefix, f->prefixlen) < 0)
        return -1;
    if (f->body && spool_copy_to_fd(f->body, fd) < 0)
        return -1;
    return 0;
}

int
queue_file_create(const char *qdir, const char *id, const struct envelope *env, const char *prefix,
                  size_t prefixlen, struct spool *body, int64_t min_free)
{
    char tmppath[PATH_MAX], path[PATH_MAX], ddir[PATH_MAX];
    struct qf_buf hb = {0};
    struct statvfs vfs;
    int e;

    /*
     * Sanity checks.
     */
    if (!qid_valid(id) || env == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (qf_path(tmppath, sizeof(tmppath), qdir, "tmp", id) < 0 ||
        qf_path(path, sizeof(path), qdir, "deferred", id) < 0 ||
        qf_path(ddir, sizeof(ddir), qdir, "deferred", NULL) < 0)
        return -1;
    off_t content_size = (off_t)prefixlen + (body ? spool_size(body) : 0);
    if (build_header(&hb, env, content_size) < 0) {
        free(hb.p);
        return -1;
    }

    /*
     * Keep min_free bytes free for everybody else.
     */
    if (statvfs(qdir, &vfs) < 0) {
        e = errno;
        free(hb.p);
        errno = e;
        return -1;
    }
    uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    uint64_t need = (uint64_t)hb.len + (uint64_t)content_size;
    if (avail < need || avail - need < (uint64_t)(min_free < 0 ? 0 : min_free)) {
        free(hb.p);
        errno = ENOSPC;
        return -1;
    }

    /*
     * Write, sync, close, rename into place, sync the folder.
     */
    struct qf_fill f = {&hb, prefix, prefixlen, body};
    int rc = safe_write(tmppath, path, ddir, 0600, SAFE_EXCL | SAFE_NOREPLACE, qf_fill, &f);
    e = errno;
    free(hb.p);
    errno = e;
    return rc;
}

/*
 * Loading.
 */

/* The envelope bytes read so far; lines are handed out one at a time. */
struct qf_reader {
    int fd;
    char *buf;
    size_t len, cap;
    size_t pos; /* start of the next line */
    int eof;
};

/* Next line (NUL replaces the newline); its file offset in *off. 0/-1. */
static int
qf_next_line(struct qf_reader *r, char **line, size_t *linelen, off_t *off)
{
    for (;;) {
        char *nl = r->buf ? memchr(r->buf + r->pos, '\n', r->len - r->pos) : NULL;
        if (nl) {
            *line = r->buf + r->pos;
            *linelen = (size_t)(nl - *line);
            *off = (off_t)r->pos;
            *nl = '\0';
            r->pos += *linelen + 1;
            return 0;
        }
        if (r->eof || r->len >= QF_HEADER_MAX) {
            errno = EINVAL;
            return -1;
        }
        if (r->len + QF_READ_CHUNK + 1 > r->cap) {
            size_t ncap = r->cap ? r->cap * 2 : QF_READ_CHUNK * 2;
            char *nb = realloc(r->buf, ncap);
            if (nb == NULL)
                return -1; /* ENOMEM */
            r->buf = nb;
            r->cap = ncap;
        }
        ssize_t n = read(r->fd, r->buf + r->len, QF_READ_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            r->eof = 1;
        r->len += (size_t)n;
    }
}

/* Strict unsigned decimal of exactly len digits (len 0: any count). */
static int
parse_num(const char *s, size_t len, long long max, long long *out)
{
    long long v = 0;
    size_t n = 0;
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        if (v > (max - (s[n] - '0')) / 10)
            return -1;
        v = v * 10 + (s[n] - '0');
    }
    if (n == 0 || s[n] != '\0' || (len && n != len))
        return -1;
    *out = v;
    return 0;
}

/* "=XTEXT" into a new string; errno EINVAL or ENOMEM. */
static char *
parse_xtext(const char *s)
{
    if (s[0] != '=') {
        errno = EINVAL;
        return NULL;
    }
    errno = 0;
    char *v = xtext_decode(s + 1);
    if (v == NULL && errno != ENOMEM)
        errno = EINVAL;
    return v;
}

/* Take v (NULL: fail, errno set); a line break inside is EINVAL. */
static int
set_owned(char **dst, char *v)
{
    if (v == NULL)
        return -1;
    if (strpbrk(v, "\r\n") != NULL) {
        free(v);
        errno = EINVAL;
        return -1;
    }
    free(*dst);
    *dst = v;
    return 0;
}

/* One "rcpt" record (text after "rcpt "); its file offset is off. */
static int
parse_rcpt(struct queue_entry *qe, char *s, size_t len, off_t off, size_t *offcap)
{
    struct envelope *env = qe->env;
    enum rcpt_state st;
    long long rlen, notify;
    char reason[QF_REASON_MAX + 1];

    /*
     * Fixed part: "S LLL <slot> ".
     */
    if (len < QF_RCPT_FIXED + 1 || s[1] != ' ' || s[5] != ' ' || s[QF_RCPT_FIXED] != ' ')
        goto bad;
    if (letter_state(s[0], &st) < 0)
        goto bad;
    char digits[4] = {s[2], s[3], s[4], '\0'};
    if (parse_num(digits, 3, 999, &rlen) < 0)
        goto bad;
    if (rlen > QF_REASON_MAX)
        rlen = QF_REASON_MAX; /* torn update of the length digits */
    memcpy(reason, s + 6, (size_t)rlen);
    reason[rlen] = '\0';

    /*
     * Variable part: "=ADDR NOTIFY ORCPT".
     */
    char *addr_s = s + QF_RCPT_FIXED + 1;
    char *sp1 = strchr(addr_s, ' ');
    if (sp1 == NULL)
        goto bad;
    *sp1 = '\0';
    char *notify_s = sp1 + 1;
    char *sp2 = strchr(notify_s, ' ');
    if (sp2 == NULL)
        goto bad;
    *sp2 = '\0';
    char *orcpt_s = sp2 + 1;
    if (strchr(orcpt_s, ' ') != NULL)
        goto bad;
    if (parse_num(notify_s, 0, 0x0f, &notify) < 0)
        goto bad;

    char *addr = NULL, *orcpt = NULL;
    if (set_owned(&addr, parse_xtext(addr_s)) < 0)
        return -1;
    if (strcmp(orcpt_s, "-") != 0 && set_owned(&orcpt, parse_xtext(orcpt_s)) < 0) {
        free(addr);
        return -1;
    }
    if (env->nrcpt >= *offcap) {
        size_t ncap = *offcap ? *offcap * 2 : 8;
        off_t *no = realloc(qe->rcpt_offsets, ncap * sizeof(*no));
        if (no == NULL) {
            free(addr);
            free(orcpt);
            return -1;
        }
        qe->rcpt_offsets = no;
        *offcap = ncap;
    }
    int k = envelope_add_rcpt(env, addr, orcpt, (unsigned)notify);
    free(addr);
    free(orcpt);
    if (k < 0)
        return -1;
    env->rcpt[k].state = st;
    if (rlen > 0 && envelope_set_reason(&env->rcpt[k], reason) < 0)
        return -1;
    qe->rcpt_offsets[k] = off;
    return 0;
bad:
    errno = EINVAL;
    return -1;
}

/* Parse the envelope from the start of the file; 0/-1 with errno. */
static int
parse_header(struct queue_entry *qe, int fd)
{
    struct qf_reader r = {.fd = fd};
    struct envelope *env = qe->env;
    char *line, *v;
    size_t len, offcap = 0;
    off_t off;
    long long num;
    int have_arrival = 0, have_sender = 0, have_meta = 0, have_size = 0;
    int have_envid = 0, have_ret = 0, have_body = 0;

    if (qf_next_line(&r, &line, &len, &off) < 0)
        goto fail;
    if (strcmp(line, QF_MAGIC) != 0)
        goto bad;

    for (;;) {
        if (qf_next_line(&r, &line, &len, &off) < 0)
            goto fail;
        if (strlen(line) != len)
            goto bad; /* NUL byte inside a record */
        if (strcmp(line, "content") == 0)
            break;
        char *sp = strchr(line, ' ');
        v = sp ? sp + 1 : line + len;
        if (sp)
            *sp = '\0';

        if (strcmp(line, "arrival") == 0 && !have_arrival) {
            if (parse_num(v, 0, INT64_MAX, &num) < 0)
                goto bad;
            env->arrival = (time_t)num;
            have_arrival = 1;
        } else if (strcmp(line, "sender") == 0 && !have_sender) {
            if (set_owned(&env->sender, parse_xtext(v)) < 0)
                goto fail;
            have_sender = 1;
        } else if (strcmp(line, "envid") == 0 && !have_envid) {
            if (set_owned(&env->envid, parse_xtext(v)) < 0)
                goto fail;
            have_envid = 1;
        } else if (strcmp(line, "ret") == 0 && !have_ret) {
            if (strcmp(v, "FULL") == 0)
                env->ret = DSN_RET_FULL;
            else if (strcmp(v, "HDRS") == 0)
                env->ret = DSN_RET_HDRS;
            else
                goto bad;
            have_ret = 1;
        } else if (strcmp(line, "body") == 0 && !have_body) {
            if (strcmp(v, "7BIT") == 0)
                env->body = BODY_7BIT;
            else if (strcmp(v, "8BITMIME") == 0)
                env->body = BODY_8BITMIME;
            else
                goto bad;
            have_body = 1;
        } else if (strcmp(line, "smtputf8") == 0 && !sp && !env->smtputf8) {
            env->smtputf8 = 1;
        } else if (strcmp(line, "xforward") == 0) {
            char *sp2 = strchr(v, ' ');
            if (sp2 == NULL)
                goto bad;
            *sp2 = '\0';
            int a;
            for (a = 0; a < XF_COUNT; a++)
                if (strcmp(v, xf_attr_names[a]) == 0)
                    break;
            if (a == XF_COUNT || env->xforward[a] != NULL)
                goto bad;
            if (set_owned(&env->xforward[a], parse_xtext(sp2 + 1)) < 0)
                goto fail;
        } else if (strcmp(line, "meta") == 0 && !have_meta && env->nrcpt == 0) {
            long long a, l, n;
            if (strlen(v) != QF_META_FIXED || v[10] != ' ' || v[31] != ' ')
                goto bad;
            v[10] = v[31] = '\0';
            if (parse_num(v, 10, INT_MAX, &a) < 0 || parse_num(v + 11, 20, INT64_MAX, &l) < 0 ||
                parse_num(v + 32, 20, INT64_MAX, &n) < 0)
                goto bad;
            qe->attempts = (int)a;
            qe->last_attempt = (time_t)l;
            qe->next_attempt = (time_t)n;
            qe->meta_offset = off + 5;
            have_meta = 1;
        } else if (strcmp(line, "rcpt") == 0 && have_meta && !have_size && sp) {
            if (parse_rcpt(qe, v, len - 5, off + 5, &offcap) < 0)
                goto fail;
        } else if (strcmp(line, "size") == 0 && !have_size && env->nrcpt > 0) {
            if (parse_num(v, 0, INT64_MAX, &num) < 0)
                goto bad;
            qe->content_size = (off_t)num;
            have_size = 1;
        } else {
            goto bad;
        }
    }
    if (!have_arrival || !have_sender || !have_meta || !have_size || env->nrcpt == 0)
        goto bad;
    qe->content_offset = (off_t)r.pos;
    free(r.buf);
    return 0;

bad:
    errno = EINVAL;
fail:;
    int e = errno;
    free(r.buf);
    errno = e;
    return -1;
}

/* Open ID in deferred/ or hold/ (a second look in deferred/ covers a
 * release racing with us). */
static int
open_entry(const char *qdir, const char *id, int flags, enum queue_where *where)
{
    static const enum queue_where order[] = {QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_DEFERRED};
    char path[PATH_MAX];

    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (qf_path(path, sizeof(path), qdir, qf_where_dir[order[i]], id) < 0)
            return -1;
        int fd = open(path, flags | O_CLOEXEC);
        if (fd >= 0) {
            *where = order[i];
            return fd;
        }
        if (errno != ENOENT)
            return -1;
    }
    errno = ENOENT;
    return -1;
}

struct queue_entry *
queue_file_load(const char *qdir, const char *id, int open_rw)
{
    struct queue_entry *qe = NULL;
    struct stat st;
    enum queue_where where;
    int e;

    if (!qid_valid(id)) {
        errno = EINVAL;
        return NULL;
    }
    int fd = open_entry(qdir, id, open_rw ? O_RDWR : O_RDONLY, &where);
    if (fd < 0)
        return NULL;
    if ((qe = calloc(1, sizeof(*qe))) == NULL)
        goto fail;
    qe->fd = fd;
    if ((qe->env = envelope_new()) == NULL)
        goto fail;
    memcpy(qe->id, id, QID_LEN + 1);
    qe->where = where;
    if (fstat(fd, &st) < 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        goto fail;
    }
    if (parse_header(qe, fd) < 0)
        goto fail;
    if (qe->content_offset > st.st_size || st.st_size - qe->content_offset != qe->content_size) {
        errno = EINVAL; /* truncated, or something appended */
        goto fail;
    }
    if (!open_rw) {
        close(fd);
        qe->fd = -1;
    }
    return qe;

fail:
    e = errno;
    if (qe) {
        queue_entry_free(qe); /* closes fd */
    } else {
        close(fd);
    }
    errno = e;
    return NULL;
}

void
queue_entry_free(struct queue_entry *qe)
{
    if (qe == NULL)
        return;
    if (qe->fd >= 0)
        close(qe->fd);
    envelope_free(qe->env);
    free(qe->rcpt_offsets);
    free(qe);
}

int
queue_file_set_rcpt(struct queue_entry *qe, size_t idx, enum rcpt_state st, const char *reason,
                    int durable)
{
    char fixed[QF_RCPT_FIXED];
    char stored[QF_REASON_MAX + 1];

    if (qe->fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (idx >= qe->env->nrcpt || state_letter(st) == '?') {
        errno = EINVAL;
        return -1;
    }
    rcpt_fixed(fixed, st, reason, stored);
    char *copy = NULL;
    if (stored[0] != '\0' && (copy = strdup(stored)) == NULL)
        return -1;
    if (pwrite_full(qe->fd, fixed, sizeof(fixed), qe->rcpt_offsets[idx]) < 0 ||
        (durable && fdatasync(qe->fd) < 0)) {
        int e = errno;
        free(copy);
        errno = e;
        return -1;
    }
    struct env_rcpt *r = &qe->env->rcpt[idx];
    r->state = st;
    free(r->reason);
    r->reason = copy;
    return 0;
}

int
queue_file_set_meta(struct queue_entry *qe, int attempts, time_t last, time_t next)
{
    char meta[QF_META_FIXED];

    if (qe->fd < 0) {
        errno = EBADF;
        return -1;
    }
    meta_fixed(meta, attempts, last, next);
    if (pwrite_full(qe->fd, meta, sizeof(meta), qe->meta_offset) < 0)
        return -1;
    qe->attempts = attempts < 0 ? 0 : attempts;
    qe->last_attempt = last < 0 ? 0 : last;
    qe->next_attempt = next < 0 ? 0 : next;
    return 0;
}

ssize_t
queue_file_read_content(struct queue_entry *qe, void *buf, size_t len, off_t off)
{
    if (qe->fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (off < 0) {
        errno = EINVAL;
        return -1;
    }
    if (off >= qe->content_size)
        return 0;
    if ((off_t)len > qe->content_size - off)
        len = (size_t)(qe->content_size - off);
    ssize_t n;
    do
        n = pread(qe->fd, buf, len, qe->content_offset + off);
    while (n < 0 && errno == EINTR);
    return n;
}

int
queue_file_remove(const char *qdir, const char *id)
{
    char path[PATH_MAX];

    if (!qid_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    for (int w = QUEUE_DEFERRED; w <= QUEUE_HOLD; w++) {
        if (qf_path(path, sizeof(path), qdir, qf_where_dir[w], id) < 0)
            return -1;
        if (unlink(path) == 0)
            return 0;
        if (errno != ENOENT)
            return -1;
    }
    errno = ENOENT;
    return -1;
}

/* Move ID from one folder to the other and sync both folders. */
static int
queue_file_move(const char *qdir, const char *id, enum queue_where from, enum queue_where to)
{
    char src[PATH_MAX], dst[PATH_MAX], sdir[PATH_MAX], ddir[PATH_MAX];

    if (!qid_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    if (qf_path(src, sizeof(src), qdir, qf_where_dir[from], id) < 0 ||
        qf_path(dst, sizeof(dst), qdir, qf_where_dir[to], id) < 0 ||
        qf_path(sdir, sizeof(sdir), qdir, qf_where_dir[from], NULL) < 0 ||
        qf_path(ddir, sizeof(ddir), qdir, qf_where_dir[to], NULL) < 0)
        return -1;
    if (rename_noreplace(src, dst) < 0)
        return -1;
    if (fsync_dir(ddir) < 0 || fsync_dir(sdir) < 0)
        return -1;
    return 0;
}

int
queue_file_hold(const char *qdir, const char *id)
{
    return queue_file_move(qdir, id, QUEUE_DEFERRED, QUEUE_HOLD);
}

int
queue_file_release(const char *qdir, const char *id)
{
    return queue_file_move(qdir, id, QUEUE_HOLD, QUEUE_DEFERRED);
}

int
queue_file_move_batch(const char *qdir, const char *const *ids, size_t n, enum queue_where from,
                      enum queue_where to, int *errs)
{
    char src[PATH_MAX], dst[PATH_MAX], sdir[PATH_MAX], ddir[PATH_MAX];
    int moved = 0;

    if (qf_path(sdir, sizeof(sdir), qdir, qf_where_dir[from], NULL) < 0 ||
        qf_path(ddir, sizeof(ddir), qdir, qf_where_dir[to], NULL) < 0) {
        for (size_t i = 0; i < n; i++)
            errs[i] = errno;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        errs[i] = 0;
        if (!qid_valid(ids[i]))
            errs[i] = EINVAL;
        else if (qf_path(src, sizeof(src), qdir, qf_where_dir[from], ids[i]) < 0 ||
                 qf_path(dst, sizeof(dst), qdir, qf_where_dir[to], ids[i]) < 0 ||
                 rename_noreplace(src, dst) < 0)
            errs[i] = errno ? errno : EIO;
        else
            moved++;
    }
    if (moved == 0)
        return 0;
    /* One sync of each folder covers every rename above. */
    if (fsync_dir(ddir) < 0 || fsync_dir(sdir) < 0) {
        int e = errno;
        for (size_t i = 0; i < n; i++)
            if (errs[i] == 0)
                errs[i] = e;
        return -1;
    }
    return moved;
}

int
queue_dir_scan(const char *qdir, void (*cb)(void *arg, const char *id, enum queue_where w),
               void *arg)
{
    char path[PATH_MAX];
    int count = 0;

    for (int w = QUEUE_DEFERRED; w <= QUEUE_HOLD; w++) {
        if (qf_path(path, sizeof(path), qdir, qf_where_dir[w], NULL) < 0)
            return -1;
        DIR *d = opendir(path);
        if (d == NULL) {
            if (errno == ENOENT)
                continue;
            return -1;
        }
        struct dirent *de;
        errno = 0;
        while ((de = readdir(d)) != NULL) {
            if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
                continue;
            if (!qid_valid(de->d_name))
                continue;
            if (cb)
                cb(arg, de->d_name, (enum queue_where)w);
            count++;
            errno = 0;
        }
        int e = errno;
        closedir(d);
        if (e != 0) {
            errno = e;
            return -1;
        }
    }
    return count;
}
