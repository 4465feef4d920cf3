/*
 * services.c - the services the daemon hands its modules (proxy/'s
 * sessions, pipeline, control socket; the queue manager, wherever it
 * lives), so that no file calls up into the main file (scanrelayd.c).
 * In lib/ because it knows nothing of mail: queue/ may be handed it too.
 *
 *   services_config / services_config_acquire / services_config_release
 *     the current configuration, borrowed on the loop thread or as a
 *     counted reference for whatever outlives a callback (transactions,
 *     worker jobs). A reload makes a new configuration current and drops
 *     the daemon's reference to the old one; the old one is freed when the
 *     last transaction or job that started with it releases it.
 *   services_idle     "something finished": main's hook checks whether a
 *                     shutdown in progress can complete.
 *   services_reload   main's hook re-reads the configuration file.
 *
 * Owns one reference to the current configuration. Calls only
 * config_ref/config_unref and the hooks main installed; never fails.
 * Loop thread only, except services_config_release (atomic).
 */
#include <stddef.h>

#include "config.h"
#include "services.h"

void
services_init(struct services *s, void (*idle_fn)(void *arg),
              int (*reload_fn)(void *arg, char *msg, size_t msglen), void *arg)
{
    s->idle_fn = idle_fn;
    s->reload_fn = reload_fn;
    s->arg = arg;
}

void
services_set_config(struct services *s, struct sr_config *cfg)
{
    struct sr_config *old = s->cfg;
    s->cfg = cfg;
    config_unref(old);
}

struct sr_config *
services_config(const struct services *s)
{
    return s->cfg;
}

struct sr_config *
services_config_acquire(struct services *s)
{
    return config_ref(s->cfg);
}

void
services_config_release(struct sr_config *cfg)
{
    config_unref(cfg);
}

void
services_idle(struct services *s)
{
    if (s->idle_fn)
        s->idle_fn(s->arg);
}

int
services_reload(struct services *s, char *msg, size_t msglen)
{
    if (s->reload_fn == NULL) {
        if (msglen)
            msg[0] = '\0';
        return -1;
    }
    return s->reload_fn(s->arg, msg, msglen);
}
