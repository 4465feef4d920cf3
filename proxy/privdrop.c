/*
 * privdrop.c - scanrelayd never reads mail as root.
 *
 * Under systemd the unit starts the daemon as "scanrelay" and nothing here
 * applies. Started as root (by hand, an init script, a container), main
 * calls, in this order:
 *
 *   privdrop_prepare(cfg)   before anything is opened: looks up the user
 *                           (config key "user", default "scanrelay"),
 *                           creates the state, queue and control-socket
 *                           folders that do not exist yet, owned by it.
 *   privdrop_pending()      1 when prepare decided to drop: main then binds
 *                           its listening sockets first (the only thing that
 *                           may need root: a port below 1024), and
 *   privdrop_drop()         initgroups, setgid, setuid to that user, and
 *                           checks that root cannot be regained.
 *                           Without a drop main binds once everything is
 *                           loaded, as before.
 *
 * Then the queue, the stores, the signatures and the control socket are
 * opened as that user. Who stays root: with user = "" (the administrator's
 * explicit choice, logged as a warning), or when the user was left at its
 * default and does not exist (a development machine or CI without the
 * package: a loud warning, and the daemon runs as root as it always did).
 * A user named in the file that does not exist is an error.
 *
 * privdrop_check(cfg, out) is for "scanrelayd -t": a warning per folder
 * (state, queue, control socket) not owned by the user the daemon will run
 * as; returns the number of warnings, or -1 when the daemon would refuse
 * to start (run as root, a user named in the file that does not exist).
 *
 * Returns 0 / -1 with a message in err. State: the looked-up user, kept
 * between prepare and drop (one daemon per process).
 */
#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "privdrop.h"

static struct {
    int active; /* prepare decided to drop */
    uid_t uid;
    gid_t gid;
    char name[256];
} drop;

/* The folder of a socket path ("." for a bare name). */
static void
parent_dir(const char *path, char *out, size_t outlen)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    snprintf(out, outlen, "%s", dirname(buf));
}

/* mkdir -p; the last component (created only if missing) gets mode and owner. */
static int
make_owned_dir(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    char buf[PATH_MAX];
    struct stat st;
    if (stat(path, &st) == 0)
        return 0;
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) == 0)
                (void)chmod(buf, 0755); /* not narrowed by the umask: the user must pass */
            else if (errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -1;
    return chown(buf, uid, gid);
}

int
privdrop_prepare(const struct sr_config *cfg, char *err, size_t errlen)
{
    drop.active = 0;
    if (geteuid() != 0)
        return 0;
    if (cfg->user[0] == '\0') {
        log_warnx("running as root: user = \"\" in the configuration");
        return 0;
    }
    struct passwd *pw = getpwnam(cfg->user);
    if (pw == NULL) {
        if (cfg->user_explicit) {
            snprintf(err, errlen,
                     "user: '%s' does not exist; create it (adduser --system --group %s, or "
                     "systemd-sysusers) or set user = \"\" to run as root",
                     cfg->user, cfg->user);
            return -1;
        }
        log_warnx("*** running as root: the user '%s' does not exist. Create it (adduser "
                  "--system --group %s, or install the package) so that scanrelayd drops to "
                  "it, or set user = \"\" to run as root knowingly. ***",
                  cfg->user, cfg->user);
        return 0;
    }
    if (pw->pw_uid == 0) {
        log_warnx("running as root: user = \"%s\" is root", cfg->user);
        return 0;
    }
    drop.active = 1;
    drop.uid = pw->pw_uid;
    drop.gid = pw->pw_gid;
    snprintf(drop.name, sizeof(drop.name), "%s", pw->pw_name);

    /* Folders the daemon writes: new ones belong to the user. */
    char sockdir[PATH_MAX];
    parent_dir(cfg->control_socket, sockdir, sizeof(sockdir));
    const char *dirs[] = {cfg->state_directory, cfg->queue_directory, sockdir};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (make_owned_dir(dirs[i], 0750, drop.uid, drop.gid) < 0) {
            snprintf(err, errlen, "cannot create %s for user %s: %s", dirs[i], drop.name,
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

int
privdrop_pending(void)
{
    return drop.active;
}

int
privdrop_drop(char *err, size_t errlen)
{
    if (!drop.active)
        return 0;
    if (initgroups(drop.name, drop.gid) < 0 || setgid(drop.gid) < 0 || setuid(drop.uid) < 0) {
        snprintf(err, errlen, "cannot drop privileges to %s: %s", drop.name, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || geteuid() == 0) {
        snprintf(err, errlen, "privileges to %s dropped, yet root could be regained", drop.name);
        return -1;
    }
    log_info("running as user %s (uid %ld, gid %ld)", drop.name, (long)drop.uid,
             (long)drop.gid);
    return 0;
}

int
privdrop_check(const struct sr_config *cfg, FILE *out)
{
    uid_t uid;
    char who[256];
    if (geteuid() != 0) {
        struct passwd *me = getpwuid(geteuid());
        uid = geteuid();
        snprintf(who, sizeof(who), "%s", me ? me->pw_name : "this user");
    } else {
        struct passwd *pw = cfg->user[0] ? getpwnam(cfg->user) : NULL;
        if (pw == NULL && cfg->user[0] && cfg->user_explicit) {
            fprintf(out, "scanrelayd: %s: user: '%s' does not exist (started as root, "
                         "scanrelayd would refuse to run)\n",
                    cfg->path ? cfg->path : "(defaults)", cfg->user);
            return -1;
        }
        if (pw == NULL) {
            if (cfg->user[0])
                fprintf(out, "scanrelayd: warning: user '%s' does not exist: started as root, "
                             "scanrelayd would run as root\n", cfg->user);
            return cfg->user[0] ? 1 : 0;
        }
        uid = pw->pw_uid;
        snprintf(who, sizeof(who), "%s", cfg->user);
    }
    char sockdir[PATH_MAX];
    parent_dir(cfg->control_socket, sockdir, sizeof(sockdir));
    const char *names[] = {"state_directory", "queue_directory", "control_socket folder"};
    const char *dirs[] = {cfg->state_directory, cfg->queue_directory, sockdir};
    int n = 0;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        struct stat st;
        if (stat(dirs[i], &st) < 0)
            continue; /* created at start-up, owned by the user */
        if (st.st_uid != uid) {
            struct passwd *owner = getpwuid(st.st_uid);
            fprintf(out, "scanrelayd: warning: %s %s is owned by %s, not by %s (the daemon runs "
                         "as %s): chown -R %s: %s\n",
                    names[i], dirs[i], owner ? owner->pw_name : "an unknown user", who, who,
                    who, dirs[i]);
            n++;
        }
    }
    return n;
}
