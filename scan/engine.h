/* engine.h - the shared libclamav engine and its background reload (see engine.c). */
#ifndef SR_ENGINE_H
#define SR_ENGINE_H

#include <stddef.h>
#include <stdint.h>

struct sr_config_virus;

/*
 * One compiled libclamav engine with its signature count. Read-only while
 * scanning, shared by every scan thread, freed with its last reference.
 */
struct sr_engine;

/* cl_init() once per process (thread-safe, idempotent); 0 ok, -1 with err. */
int engine_global_init(char *err, size_t errlen);

/*
 * Load every signature database in vc->database_directory, apply the
 * limits of virus { } and compile: blocking, seconds with the real ClamAV
 * database. Returns an engine holding one reference, or NULL with a
 * message naming the directory (missing, empty, malformed database).
 */
struct sr_engine *engine_load(const struct sr_config_virus *vc, char *err, size_t errlen);
struct sr_engine *engine_ref(struct sr_engine *e);

/*
 * Objects this engine found clean, by SHA-256 of their bytes: a scan of
 * the same bytes again (the same attachment in many messages) need not
 * go through libclamav. The cache belongs to the engine, so a signature
 * reload (a new engine) starts it empty. Bounded: 8192 digests, 256 KiB.
 * engine_digest: 0, or -1 if hashing failed.
 */
#define ENGINE_DIGEST_LEN 32
int engine_digest(const void *data, size_t len, unsigned char out[ENGINE_DIGEST_LEN]);
int engine_clean_cached(struct sr_engine *e, const unsigned char d[ENGINE_DIGEST_LEN]);
void engine_clean_remember(struct sr_engine *e, const unsigned char d[ENGINE_DIGEST_LEN]);
void engine_unref(struct sr_engine *e);

/* libclamav version ("1.4.6"), signatures loaded, load generation (1, 2, ...). */
const char *engine_version(void);
unsigned engine_signatures(const struct sr_engine *e);
uint64_t engine_generation(const struct sr_engine *e);

/*
 * The database files an engine was loaded from (sorted by name, valid
 * while the engine lives). Containers (.cvd, .cld, .cud) give the version,
 * signature count and build time of their 512-byte header
 * ("ClamAV-VDB:time:version:sigs:flevel:md5:dsig:builder:stime"); plain
 * sets (.ndb, .hdb, ...) an empty version, their mtime and the count of
 * signature lines.
 */
struct engine_dbinfo {
    char file[128];
    char version[32];
    int64_t build_time; /* seconds since the epoch */
    unsigned signatures;
};
#define ENGINE_CVD_HEADER 512
size_t engine_dbinfo(const struct sr_engine *e, const struct engine_dbinfo **out);
/* When the engine was compiled (seconds since the epoch). */
int64_t engine_loaded_at(const struct sr_engine *e);
/* Parse a container header (len >= 512 bytes): fills version, signatures, build_time; 0 or -1. */
int engine_cvd_header(const char *buf, size_t len, struct engine_dbinfo *out);

/*
 * Scan one in-memory object (a decoded MIME part, or a whole message) with
 * all of libclamav's parsers and unpackers. name: the object's file name
 * or NULL. The callbacks run in the calling thread during the scan:
 * on_inspect for every object libclamav looks at (the object itself at
 * level 0, archive members and other embedded files deeper; names[] holds
 * the names of levels 1..level, NULL where unknown); on_virus for every
 * signature match, with the innermost object inspected last.
 */
struct engine_scan_cb {
    /* Every object libclamav looks at (level 0: the scanned one); names:
     * the path to it. normalized: a normalized copy (text, HTML) of an
     * object already inspected. Nonzero return: stop, the object is
     * blocked (the scan ends as ENGINE_VIRUS named ENGINE_BLOCKED). */
    int (*on_inspect)(void *arg, unsigned level, const char *const *names, const char *type,
                      size_t size, int normalized);
    void (*on_virus)(void *arg, const char *virname);
    /* libclamav is about to scan an object it did not find in its cache of
     * clean objects (not called for a cache hit). Optional. */
    void (*on_fresh)(void *arg);
    void *arg;
};

/* libclamav's name for an object blocked by on_inspect. */
#define ENGINE_BLOCKED "Detected.By.Callback"

enum engine_status {
    ENGINE_CLEAN = 0,
    ENGINE_VIRUS,   /* *virname set (valid while the engine lives) */
    ENGINE_TIMEOUT, /* virus.max_scan_time exceeded */
    ENGINE_ERROR,   /* err filled */
};

enum engine_status engine_scan_mem(struct sr_engine *e, const void *data, size_t len,
                                   const char *name, const struct engine_scan_cb *cb,
                                   const char **virname, char *err, size_t errlen);

/*
 * The current engine of a daemon, and its reload. A reload compiles a new
 * engine in a background thread and swaps it in; scans keep the reference
 * they took, no scan waits for a compile, and a failed compile keeps the
 * old engine (logged with the reason).
 */
struct engine_holder;

/* Load the first engine synchronously; NULL with err when it cannot. */
struct engine_holder *engine_holder_new(const struct sr_config_virus *vc, char *err, size_t errlen);
/* Waits for a running reload, drops the holder's reference. */
void engine_holder_free(struct engine_holder *h);

/* A new reference to the current engine (never NULL); engine_unref it. */
struct sr_engine *engine_holder_get(struct engine_holder *h);

/* Database directory and limits for the next reload (SIGHUP). */
void engine_holder_set_config(struct engine_holder *h, const struct sr_config_virus *vc);

/*
 * Called from the reload thread when a reload ends: ok 1 swapped in, 0
 * failed (msg says why; the old engine stays). Hand it to the event loop
 * yourself (event_active with evthread, or a pipe).
 */
typedef void (*engine_reload_cb)(void *arg, int ok, const char *msg);
void engine_holder_on_reload(struct engine_holder *h, engine_reload_cb cb, void *arg);

/*
 * Start a reload in the background and return at once: 0 started, or
 * queued behind the reload already running (they coalesce); -1 the thread
 * could not be created (logged).
 */
int engine_reload_async(struct engine_holder *h);

/*
 * The last reload that ended (background reloads only): when (0: none
 * since start), whether it succeeded, and its message.
 */
void engine_holder_last_reload(struct engine_holder *h, int64_t *when, int *ok, char *msg,
                               size_t msglen);

/* Block until no reload runs; returns 1 if the last one succeeded. For tests and -t. */
int engine_reload_wait(struct engine_holder *h);

/*
 * Directory change detection. engine_check_dir compares file names, sizes
 * and mtimes in the database directory with the set the current engine was
 * loaded from and starts a reload when they differ: returns 1 reload
 * started, 0 unchanged, -1 directory unreadable (logged once). Cheap
 * (one readdir and a stat per file): call it every virus.check_interval
 * from a timer.
 *
 * engine_watch_fd: an inotify descriptor (non-blocking) on the directory
 * that turns readable when files there change, or -1 when inotify is not
 * available. When it is readable call engine_watch_read (drains it, 1 if
 * a database may have changed) and then, after a short delay so that the
 * writer finishes (freshclam writes several files), engine_check_dir.
 */
int engine_check_dir(struct engine_holder *h);
int engine_watch_fd(struct engine_holder *h);
int engine_watch_read(struct engine_holder *h);

/*
 * Not installed (no configuration file) and no database in
 * vc->database_directory: switch to the starter set shipped with the
 * sources (loudly: it is no protection). installed: leave it alone.
 */
void engine_fallback_database(struct sr_config_virus *vc, int installed, const char *starter);

#endif
