/*
 * engine.c - the libclamav engine: load, limits, scan, reference count,
 * background reload, database directory change detection.
 *
 * engine_load() runs cl_load(CL_DB_STDOPT) on virus.database_directory,
 * applies the limits of virus { } (CL_ENGINE_MAX_SCANSIZE, MAX_FILESIZE,
 * MAX_RECURSION, MAX_FILES, MAX_SCANTIME) and compiles. The result is a
 * struct sr_engine with an atomic reference count: every scan takes a
 * reference for its duration, so a reload can swap in a new engine while
 * scans run on the old one, which is freed by whoever drops the last
 * reference (a scan thread or the reload thread).
 *
 * engine_scan_mem() scans one buffer through a memory fmap (no copy) with
 * clamscan's default options (all parsers, heuristic alerts) plus the
 * encrypted-archive heuristic, and forwards libclamav's file-inspection
 * and virus-found callbacks so that the caller can name where a match was
 * (the member of an archive). Thread-safe: the engine is read-only.
 *
 * The holder owns the current engine. engine_reload_async() starts one
 * detached thread that loads and compiles a new engine and swaps it in
 * under the holder's mutex; requests arriving during a reload coalesce
 * into one more run. A failed load keeps the old engine and logs why.
 * engine_check_dir() fingerprints the directory (sorted names, sizes,
 * mtimes) and reloads when the fingerprint differs from the one taken
 * before the current engine was loaded; an inotify descriptor tells the
 * daemon when to look sooner.
 *
 * engine_load() also records the database files it loaded from (name,
 * version and build time from a .cvd/.cld/.cud header, or the mtime and
 * signature lines of a plain set): engine_dbinfo() hands them to status
 * and metrics; the holder remembers when the last reload ended and what
 * it said (engine_holder_last_reload).
 *
 * Failures are returned with a message (err, errlen); nothing here exits.
 * libclamav's own error messages go to our log (warning level) and the
 * last one of a load is appended to the load's error message.
 */
#include <clamav.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"
#include "log.h"
#include "xmalloc.h"

struct sr_engine {
    struct cl_engine *cl;
    atomic_int refs;
    unsigned sigs;
    uint64_t gen;
    /* Clean objects (see engine_clean_cached): SHA-256 digests, one per
     * slot chosen by the digest itself; a newer digest takes the slot. */
    pthread_mutex_t cache_mu;
    unsigned char (*cache)[ENGINE_DIGEST_LEN];
    /* The database files it was loaded from (engine_dbinfo). */
    struct engine_dbinfo *db;
    size_t ndb;
    int64_t loaded_at;
};

#define CLEAN_CACHE_SLOTS 8192

static atomic_uint_fast64_t engine_gen_next = 1;

/* The last libclamav error seen by this thread (load diagnostics). */
static __thread char cl_last_err[256];

/* Per-scan callback table, reached through libclamav's context pointer. */
struct scan_ctx {
    const struct engine_scan_cb *cb;
};

/*
 * libclamav's message hook: errors are logged (and remembered for the
 * load message), warnings only in debug mode (malformed input is common).
 */
static void
cl_msg_hook(enum cl_msg severity, const char *fullmsg, const char *msg, void *context)
{
    (void)fullmsg;
    (void)context;
    char line[256];
    size_t n;

    snprintf(line, sizeof(line), "%s", msg ? msg : "");
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (severity == CL_MSG_ERROR) {
        snprintf(cl_last_err, sizeof(cl_last_err), "%s", line);
        log_warnx("libclamav: %s", line);
    } else if (severity == CL_MSG_WARN) {
        log_debug("libclamav: %s", line);
    }
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static cl_error_t init_rc = CL_SUCCESS;

static void
global_init_once(void)
{
    cl_set_clcb_msg(cl_msg_hook);
    init_rc = cl_init(CL_INIT_DEFAULT);
}

int
engine_global_init(char *err, size_t errlen)
{
    pthread_once(&init_once, global_init_once);
    if (init_rc != CL_SUCCESS) {
        snprintf(err, errlen, "libclamav initialisation failed: %s", cl_strerror(init_rc));
        return -1;
    }
    return 0;
}

const char *
engine_version(void)
{
    return cl_retver();
}

/* libclamav calls: forward to the scan's callback table. */
static cl_error_t
cb_inspect(int fd, const char *type, const char **ancestors, size_t parent_file_size,
           const char *file_name, size_t file_size, const char *file_buffer,
           uint32_t recursion_level, uint32_t layer_attributes, void *context)
{
    (void)fd;
    (void)parent_file_size;
    (void)file_buffer;
    struct scan_ctx *sc = context;
    const char *names[64];
    unsigned level = recursion_level;

    if (sc == NULL || sc->cb == NULL || sc->cb->on_inspect == NULL)
        return CL_CLEAN;
    if (level > 63)
        level = 63;
    /* ancestors[0] is the object itself as we named it; levels 1.. follow. */
    for (unsigned i = 1; i < level; i++)
        names[i - 1] = ancestors ? ancestors[i] : NULL;
    if (level > 0)
        names[level - 1] = file_name;
    if (sc->cb->on_inspect(sc->cb->arg, level, names, type, file_size,
                           (layer_attributes & LAYER_ATTRIBUTES_NORMALIZED) != 0))
        return CL_VIRUS;
    return CL_CLEAN;
}

static cl_error_t
cb_pre_scan(int fd, const char *type, void *context)
{
    (void)fd;
    (void)type;
    struct scan_ctx *sc = context;

    if (sc && sc->cb && sc->cb->on_fresh)
        sc->cb->on_fresh(sc->cb->arg);
    return CL_CLEAN;
}

static void
cb_virus(int fd, const char *virname, void *context)
{
    (void)fd;
    struct scan_ctx *sc = context;

    if (sc && sc->cb && sc->cb->on_virus && virname)
        sc->cb->on_virus(sc->cb->arg, virname);
}

/* Set one numeric engine field; 0 ok, -1 with err. */
static int
set_num(struct cl_engine *cl, enum cl_engine_field f, const char *what, long long v, char *err,
        size_t errlen)
{
    cl_error_t rc = cl_engine_set_num(cl, f, v);
    if (rc != CL_SUCCESS) {
        snprintf(err, errlen, "libclamav: cannot set %s to %lld: %s", what, v, cl_strerror(rc));
        return -1;
    }
    return 0;
}

/*
 * Database file information (status, metrics).
 */

/* ClamAV's database file types: containers with a header, and plain sets. */
static const char *const db_container_ext[] = {".cvd", ".cld", ".cud"};
static const char *const db_plain_ext[] = {
    ".db",  ".hdb", ".hsb", ".hdu", ".hsu", ".mdb", ".msb", ".mdu", ".msu", ".ndb",
    ".ndu", ".ldb", ".ldu", ".idb", ".cdb", ".cfg", ".crb", ".fp",  ".sfp", ".ign",
    ".ign2", ".ftm", ".pdb", ".gdb", ".wdb", ".zmd", ".rmd", ".imp", ".cat", ".crt",
    ".pwdb", ".info", ".yar", ".yara", ".cbc"};

static int
has_ext(const char *name, const char *const *exts, size_t n)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL || dot == name)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(dot, exts[i]) == 0)
            return 1;
    return 0;
}

int
engine_cvd_header(const char *buf, size_t len, struct engine_dbinfo *out)
{
    char head[ENGINE_CVD_HEADER + 1];
    if (len < ENGINE_CVD_HEADER || strncmp(buf, "ClamAV-VDB:", 11) != 0)
        return -1;
    memcpy(head, buf, ENGINE_CVD_HEADER);
    head[ENGINE_CVD_HEADER] = '\0';
    /* The header is padded with blanks: libclamav's parser takes the last field to the end. */
    for (size_t n = ENGINE_CVD_HEADER; n > 0 && (head[n - 1] == ' ' || head[n - 1] == '\0' ||
                                                head[n - 1] == '\n');
         n--)
        head[n - 1] = '\0';
    struct cl_cvd *cvd = cl_cvdparse(head);
    if (cvd == NULL)
        return -1;
    snprintf(out->version, sizeof(out->version), "%u", cvd->version);
    out->signatures = cvd->sigs;
    out->build_time = (int64_t)cvd->stime;
    cl_cvdfree(cvd);
    return 0;
}

/* Lines that hold a signature in a plain database (not blank, not a comment). */
static unsigned
count_sig_lines(const char *path)
{
    FILE *f = fopen(path, "re");
    char line[8192];
    unsigned n = 0;
    int bol = 1;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (bol && line[0] != '#' && line[0] != '\n' && line[0] != '\r')
            n++;
        bol = strchr(line, '\n') != NULL;
    }
    fclose(f);
    return n;
}

static int
db_cmp(const void *a, const void *b)
{
    return strcmp(((const struct engine_dbinfo *)a)->file, ((const struct engine_dbinfo *)b)->file);
}

/* The database files in dir, sorted by name; NULL (and *n 0) when none or no memory. */
static struct engine_dbinfo *
db_scan_dir(const char *dir, size_t *n)
{
    struct engine_dbinfo *v = NULL;
    size_t cap = 0;
    DIR *d = opendir(dir);
    struct dirent *de;

    *n = 0;
    if (d == NULL)
        return NULL;
    while ((de = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;
        int container = has_ext(de->d_name, db_container_ext, 3);
        if (de->d_name[0] == '.' ||
            (!container && !has_ext(de->d_name, db_plain_ext,
                                    sizeof(db_plain_ext) / sizeof(db_plain_ext[0]))))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct engine_dbinfo *nv = realloc(v, ncap * sizeof(*v));
            if (nv == NULL)
                break;
            v = nv;
            cap = ncap;
        }
        struct engine_dbinfo *di = &v[*n];
        memset(di, 0, sizeof(*di));
        snprintf(di->file, sizeof(di->file), "%.127s", de->d_name);
        di->build_time = (int64_t)st.st_mtim.tv_sec;
        if (container) {
            char head[ENGINE_CVD_HEADER];
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            ssize_t r = fd >= 0 ? read(fd, head, sizeof(head)) : -1;
            if (fd >= 0)
                close(fd);
            if (r < 0 || engine_cvd_header(head, (size_t)r, di) < 0)
                di->version[0] = '\0';
        } else {
            di->signatures = count_sig_lines(path);
        }
        (*n)++;
    }
    closedir(d);
    if (*n > 1)
        qsort(v, *n, sizeof(*v), db_cmp);
    return v;
}

size_t
engine_dbinfo(const struct sr_engine *e, const struct engine_dbinfo **out)
{
    *out = e->db;
    return e->ndb;
}

int64_t
engine_loaded_at(const struct sr_engine *e)
{
    return e->loaded_at;
}

struct sr_engine *
engine_load(const struct sr_config_virus *vc, char *err, size_t errlen)
{
    const char *dir = vc->database_directory;
    struct cl_engine *cl = NULL;
    struct sr_engine *e;
    struct stat st;
    unsigned sigs = 0;
    cl_error_t rc;

    /*
     * Sanity checks: a clear message for the usual mistakes.
     */
    if (engine_global_init(err, errlen) < 0)
        return NULL;
    if (stat(dir, &st) < 0) {
        snprintf(err, errlen,
                 "virus database directory %s: %s (install clamav-freshclam, or point "
                 "virus.database_directory at a signature set)",
                 dir, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "virus database directory %s: not a directory", dir);
        return NULL;
    }

    /*
     * Load, limit, compile.
     */
    cl_last_err[0] = '\0';
    if ((cl = cl_engine_new()) == NULL) {
        snprintf(err, errlen, "libclamav: cannot create an engine (out of memory)");
        return NULL;
    }
    rc = cl_load(dir, cl, &sigs, CL_DB_STDOPT);
    if (rc == CL_EOPEN && strstr(cl_last_err, "No supported database files")) {
        snprintf(err, errlen,
                 "virus database directory %s holds no signature databases (run freshclam, "
                 "or point virus.database_directory at a signature set)",
                 dir);
        goto bad;
    }
    if (rc != CL_SUCCESS) {
        snprintf(err, errlen, "virus database directory %s: cannot load: %s%s%s", dir,
                 cl_strerror(rc), cl_last_err[0] ? ": " : "", cl_last_err);
        goto bad;
    }
    if (sigs == 0) {
        snprintf(err, errlen,
                 "virus database directory %s holds no signatures (run freshclam, or point "
                 "virus.database_directory at a signature set)",
                 dir);
        goto bad;
    }
    if (set_num(cl, CL_ENGINE_MAX_SCANSIZE, "max_scan_size", vc->max_scan_size, err, errlen) < 0 ||
        set_num(cl, CL_ENGINE_MAX_FILESIZE, "max_file_size", vc->max_file_size, err, errlen) < 0 ||
        set_num(cl, CL_ENGINE_MAX_RECURSION, "max_recursion", vc->max_recursion, err, errlen) < 0 ||
        set_num(cl, CL_ENGINE_MAX_FILES, "max_files", vc->max_files, err, errlen) < 0 ||
        set_num(cl, CL_ENGINE_MAX_SCANTIME, "max_scan_time",
                vc->max_scan_time > 4000000 ? 4000000000LL : vc->max_scan_time * 1000, err,
                errlen) < 0)
        goto bad;
    if (vc->temporary_directory && vc->temporary_directory[0] &&
        (rc = cl_engine_set_str(cl, CL_ENGINE_TMPDIR, vc->temporary_directory)) != CL_SUCCESS) {
        snprintf(err, errlen, "virus temporary_directory %s: %s", vc->temporary_directory,
                 cl_strerror(rc));
        goto bad;
    }
    cl_engine_set_clcb_file_inspection(cl, cb_inspect);
    cl_engine_set_clcb_pre_scan(cl, cb_pre_scan);
    cl_engine_set_clcb_virus_found(cl, cb_virus);
    rc = cl_engine_compile(cl);
    if (rc != CL_SUCCESS) {
        snprintf(err, errlen, "virus database directory %s: cannot compile the engine: %s%s%s", dir,
                 cl_strerror(rc), cl_last_err[0] ? ": " : "", cl_last_err);
        goto bad;
    }

    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        goto bad;
    }
    e->cl = cl;
    e->cache = calloc(CLEAN_CACHE_SLOTS, ENGINE_DIGEST_LEN);
    pthread_mutex_init(&e->cache_mu, NULL);
    atomic_init(&e->refs, 1);
    e->sigs = sigs;
    e->gen = atomic_fetch_add(&engine_gen_next, 1);
    e->loaded_at = (int64_t)time(NULL);
    e->db = db_scan_dir(dir, &e->ndb);
    return e;

bad:
    cl_engine_free(cl);
    return NULL;
}

struct sr_engine *
engine_ref(struct sr_engine *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

void
engine_unref(struct sr_engine *e)
{
    if (e == NULL)
        return;
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
        cl_engine_free(e->cl);
        pthread_mutex_destroy(&e->cache_mu);
        free(e->cache);
        free(e->db);
        free(e);
    }
}

int
engine_digest(const void *data, size_t len, unsigned char out[ENGINE_DIGEST_LEN])
{
    static const char empty[1];
    unsigned int olen = ENGINE_DIGEST_LEN;

    if (cl_hash_data("sha256", len ? data : empty, len, out, &olen) == NULL ||
        olen != ENGINE_DIGEST_LEN)
        return -1;
    return 0;
}

static size_t
cache_slot(const unsigned char d[ENGINE_DIGEST_LEN])
{
    return ((size_t)d[0] | (size_t)d[1] << 8 | (size_t)d[2] << 16) % CLEAN_CACHE_SLOTS;
}

int
engine_clean_cached(struct sr_engine *e, const unsigned char d[ENGINE_DIGEST_LEN])
{
    int hit;

    if (e->cache == NULL)
        return 0;
    pthread_mutex_lock(&e->cache_mu);
    hit = memcmp(e->cache[cache_slot(d)], d, ENGINE_DIGEST_LEN) == 0;
    pthread_mutex_unlock(&e->cache_mu);
    return hit;
}

void
engine_clean_remember(struct sr_engine *e, const unsigned char d[ENGINE_DIGEST_LEN])
{
    if (e->cache == NULL)
        return;
    pthread_mutex_lock(&e->cache_mu);
    memcpy(e->cache[cache_slot(d)], d, ENGINE_DIGEST_LEN);
    pthread_mutex_unlock(&e->cache_mu);
}

unsigned
engine_signatures(const struct sr_engine *e)
{
    return e->sigs;
}

uint64_t
engine_generation(const struct sr_engine *e)
{
    return e->gen;
}

enum engine_status
engine_scan_mem(struct sr_engine *e, const void *data, size_t len, const char *name,
                const struct engine_scan_cb *cb, const char **virname, char *err, size_t errlen)
{
    struct cl_scan_options opts;
    struct scan_ctx sc = {cb};
    unsigned long scanned = 0;
    cl_fmap_t *map;
    cl_error_t rc;
    static const char empty[1];

    *virname = NULL;
    /* libclamav refuses a zero-length map; an empty object is clean. */
    if (len == 0)
        return ENGINE_CLEAN;
    map = cl_fmap_open_memory(data ? data : empty, len);
    if (map == NULL) {
        snprintf(err, errlen, "libclamav: cannot map %zu bytes (out of memory)", len);
        return ENGINE_ERROR;
    }

    /* clamscan's defaults, plus alerts on encrypted archives. */
    memset(&opts, 0, sizeof(opts));
    opts.general = CL_SCAN_GENERAL_HEURISTICS;
    opts.parse = ~0U;
    /* EXCEEDS_MAX: a scan cut short by max_scan_time says so (as
     * Heuristics.Limits.Exceeded.MaxScanTime) instead of passing as clean;
     * heuristics never take precedence over a signature match. */
    opts.heuristic = CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE | CL_SCAN_HEURISTIC_EXCEEDS_MAX;

    rc = cl_scanmap_callback(map, name, virname, &scanned, e->cl, &opts, &sc);
    cl_fmap_close(map);
    switch (rc) {
    case CL_CLEAN:
        *virname = NULL;
        return ENGINE_CLEAN;
    case CL_VIRUS:
        if (*virname == NULL)
            *virname = "Unknown";
        return ENGINE_VIRUS;
    case CL_ETIMEOUT:
        snprintf(err, errlen, "scan time limit exceeded");
        return ENGINE_TIMEOUT;
    default:
        snprintf(err, errlen, "libclamav: %s", cl_strerror(rc));
        return ENGINE_ERROR;
    }
}

/*
 * The holder.
 */
struct engine_holder {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sr_engine *cur;
    struct sr_config_virus vc; /* vc.database_directory owned */
    uint64_t fp;               /* fingerprint taken before the last load attempt */
    int fp_valid;
    int running; /* a reload thread is alive */
    int again;   /* one more reload requested during this one */
    int last_ok;
    engine_reload_cb cb;
    void *cb_arg;
    int inotify_fd;
    int dir_err_logged;
    int64_t reload_at;     /* when the last reload ended (0: none yet) */
    char reload_msg[256];  /* and what it said */
};

/* FNV-1a over a byte string. */
static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int
name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Fingerprint of the regular files in dir (hidden files and folders such
 * as freshclam's temporary ones left out); 0 ok, -1 unreadable.
 */
static int
dir_fingerprint(const char *dir, uint64_t *out)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    uint64_t h = 14695981039346656037ULL;
    int rc = 0;

    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = realloc(names, ncap * sizeof(*names));
            if (nn == NULL) {
                rc = -1;
                break;
            }
            names = nn;
            cap = ncap;
        }
        if ((names[n] = strdup(de->d_name)) == NULL) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == 0 && n > 1)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        int64_t v[4] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec,
                        (int64_t)st.st_mtim.tv_nsec, (int64_t)st.st_ino};
        h = fnv(h, names[i], strlen(names[i]) + 1);
        h = fnv(h, v, sizeof(v));
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    *out = h;
    return rc;
}

static void
copy_vc(struct sr_config_virus *dst, const struct sr_config_virus *src)
{
    char *old = dst->database_directory, *oldtmp = dst->temporary_directory;
    *dst = *src;
    dst->database_directory = xstrdup(src->database_directory);
    dst->temporary_directory = src->temporary_directory ? xstrdup(src->temporary_directory) : NULL;
    free(old);
    free(oldtmp);
}

struct engine_holder *
engine_holder_new(const struct sr_config_virus *vc, char *err, size_t errlen)
{
    struct engine_holder *h;
    uint64_t fp = 0;
    int fp_ok = dir_fingerprint(vc->database_directory, &fp) == 0;
    struct sr_engine *e = engine_load(vc, err, errlen);

    if (e == NULL)
        return NULL;
    h = xcalloc(1, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    copy_vc(&h->vc, vc);
    h->cur = e;
    h->fp = fp;
    h->fp_valid = fp_ok;
    h->last_ok = 1;
    h->inotify_fd = -1;
    return h;
}

void
engine_holder_free(struct engine_holder *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    h->again = 0;
    while (h->running)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    if (h->inotify_fd >= 0)
        close(h->inotify_fd);
    engine_unref(h->cur);
    free(h->vc.database_directory);
    free(h->vc.temporary_directory);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void
engine_holder_last_reload(struct engine_holder *h, int64_t *when, int *ok, char *msg,
                          size_t msglen)
{
    pthread_mutex_lock(&h->mu);
    *when = h->reload_at;
    *ok = h->last_ok;
    snprintf(msg, msglen, "%s", h->reload_msg);
    pthread_mutex_unlock(&h->mu);
}

struct sr_engine *
engine_holder_get(struct engine_holder *h)
{
    struct sr_engine *e;

    pthread_mutex_lock(&h->mu);
    e = engine_ref(h->cur);
    pthread_mutex_unlock(&h->mu);
    return e;
}

void
engine_holder_set_config(struct engine_holder *h, const struct sr_config_virus *vc)
{
    pthread_mutex_lock(&h->mu);
    copy_vc(&h->vc, vc);
    pthread_mutex_unlock(&h->mu);
}

void
engine_holder_on_reload(struct engine_holder *h, engine_reload_cb cb, void *arg)
{
    pthread_mutex_lock(&h->mu);
    h->cb = cb;
    h->cb_arg = arg;
    pthread_mutex_unlock(&h->mu);
}

/* The reload thread: load, swap, repeat while more reloads were asked for. */
static void *
reload_main(void *arg)
{
    struct engine_holder *h = arg;

    pthread_setname_np(pthread_self(), "sr-reload"); /* top -H, ps -L */

    for (;;) {
        struct sr_config_virus vc = {0};
        struct sr_engine *e, *old = NULL;
        engine_reload_cb cb;
        void *cb_arg;
        char err[1024], msg[1200];
        uint64_t fp = 0;
        int fp_ok, again;

        /* Snapshot the parameters, fingerprint before loading. */
        pthread_mutex_lock(&h->mu);
        copy_vc(&vc, &h->vc);
        h->again = 0;
        pthread_mutex_unlock(&h->mu);
        fp_ok = dir_fingerprint(vc.database_directory, &fp) == 0;

        e = engine_load(&vc, err, sizeof(err));

        pthread_mutex_lock(&h->mu);
        h->fp = fp;
        h->fp_valid = fp_ok;
        if (e) {
            old = h->cur;
            h->cur = e;
            h->last_ok = 1;
            h->reload_at = (int64_t)time(NULL);
            snprintf(msg, sizeof(msg), "signatures reloaded: %u signatures from %s",
                     e->sigs, vc.database_directory);
        } else {
            h->last_ok = 0;
            h->reload_at = (int64_t)time(NULL);
            snprintf(msg, sizeof(msg), "virus database reload failed, keeping the old one: %s",
                     err);
        }
        snprintf(h->reload_msg, sizeof(h->reload_msg), "%.255s", msg);
        cb = h->cb;
        cb_arg = h->cb_arg;
        pthread_mutex_unlock(&h->mu);

        /* The old engine goes with its last scan (maybe right here). */
        engine_unref(old);
        if (e)
            log_info("%s", msg);
        else
            log_warnx("%s", msg);
        if (cb)
            cb(cb_arg, e != NULL, msg);
        free(vc.database_directory);
        free(vc.temporary_directory);

        pthread_mutex_lock(&h->mu);
        again = h->again;
        if (!again) {
            h->running = 0;
            pthread_cond_broadcast(&h->cv);
        }
        pthread_mutex_unlock(&h->mu);
        if (!again)
            return NULL;
    }
}

int
engine_reload_async(struct engine_holder *h)
{
    pthread_attr_t attr;
    pthread_t tid;
    int rc;

    pthread_mutex_lock(&h->mu);
    if (h->running) {
        h->again = 1;
        pthread_mutex_unlock(&h->mu);
        return 0;
    }
    h->running = 1;
    pthread_mutex_unlock(&h->mu);

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, reload_main, h);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        log_warn("virus database reload: cannot start a thread");
        pthread_mutex_lock(&h->mu);
        h->running = 0;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        return -1;
    }
    return 0;
}

int
engine_reload_wait(struct engine_holder *h)
{
    int ok;

    pthread_mutex_lock(&h->mu);
    while (h->running)
        pthread_cond_wait(&h->cv, &h->mu);
    ok = h->last_ok;
    pthread_mutex_unlock(&h->mu);
    return ok;
}

int
engine_check_dir(struct engine_holder *h)
{
    char *dir;
    uint64_t fp;
    int changed;

    pthread_mutex_lock(&h->mu);
    dir = xstrdup(h->vc.database_directory);
    pthread_mutex_unlock(&h->mu);

    if (dir_fingerprint(dir, &fp) < 0) {
        if (!h->dir_err_logged)
            log_warn("virus database directory %s", dir);
        h->dir_err_logged = 1;
        free(dir);
        return -1;
    }
    h->dir_err_logged = 0;
    free(dir);

    pthread_mutex_lock(&h->mu);
    changed = !h->fp_valid || h->fp != fp;
    if (h->running)
        changed = 0; /* the running reload fingerprints again when done */
    pthread_mutex_unlock(&h->mu);
    if (!changed)
        return 0;
    log_info("virus database directory changed: reloading");
    return engine_reload_async(h) == 0 ? 1 : -1;
}

int
engine_watch_fd(struct engine_holder *h)
{
    if (h->inotify_fd >= 0)
        return h->inotify_fd;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
        return -1;
    pthread_mutex_lock(&h->mu);
    int wd = inotify_add_watch(fd, h->vc.database_directory,
                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                   IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF);
    pthread_mutex_unlock(&h->mu);
    if (wd < 0) {
        close(fd);
        return -1;
    }
    h->inotify_fd = fd;
    return fd;
}

int
engine_watch_read(struct engine_holder *h)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int seen = 0;
    ssize_t n;

    if (h->inotify_fd < 0)
        return 0;
    while ((n = read(h->inotify_fd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
            /* Hidden names are temporary files; folders are freshclam's tmp. */
            if (ev->len == 0 || (ev->name[0] != '.' && !(ev->mask & IN_ISDIR)))
                seen = 1;
            p += sizeof(*ev) + ev->len;
        }
    }
    return seen;
}

/* 1 when the folder holds something libclamav loads. */
static int
has_databases(const char *dir)
{
    static const char *const ext[] = {".cvd", ".cld", ".cud", ".ndb", ".hdb", ".hsb",
                                      ".ldb", ".yar", ".yara", ".cdb", ".mdb", ".msb"};
    DIR *dp = opendir(dir);
    int found = 0;
    if (dp == NULL)
        return 0;
    struct dirent *de;
    while (!found && (de = readdir(dp)) != NULL) {
        const char *dot = strrchr(de->d_name, '.');
        for (size_t i = 0; dot && i < sizeof(ext) / sizeof(ext[0]); i++)
            if (strcmp(dot, ext[i]) == 0)
                found = 1;
    }
    closedir(dp);
    return found;
}

void
engine_fallback_database(struct sr_config_virus *vc, int installed, const char *starter)
{
    if (installed || has_databases(vc->database_directory) || !has_databases(starter))
        return;
    log_warnx("*** no ClamAV database in %s: using the starter signature set %s, which "
              "detects only test files (EICAR, clam.exe). THIS IS NO PROTECTION. Install "
              "clamav-freshclam (apt-get install clamav-freshclam) for real signatures. ***",
              vc->database_directory, starter);
    free(vc->database_directory);
    vc->database_directory = xstrdup(starter);
}
