/* reconf.h - starting scanning and applying a reloaded configuration (see reconf.c). */
#ifndef SR_RECONF_H
#define SR_RECONF_H

#include <stddef.h>

struct daemon;
struct sr_config;

/*
 * Name the keys that differ between old and nc: changed (a reload applies
 * them) and restart (only a restart does: listen, state_directory,
 * queue_directory, control_socket), comma-separated, "" when none.
 * Returns the number of keys that differ.
 */
int reconf_diff(const struct sr_config *old, const struct sr_config *nc, char *changed,
                size_t changed_len, char *restart, size_t restart_len);

/* Loop thread, after services_set_config: make the running parts follow the new configuration. */
void reconf_apply(struct daemon *d);

/* Start-up: load the engine (blocking) and start the scan threads; 0, or -1 with err. */
int reconf_scan_start(struct daemon *d, char *err, size_t errlen);

#endif
