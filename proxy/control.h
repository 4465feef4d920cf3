/* control.h - the daemon's end of the control socket (see control.c, lib/ctl.h). */
#ifndef SR_CONTROL_H
#define SR_CONTROL_H

#include <stddef.h>

struct daemon;

/* Listen on cfg->control_socket (mode 0660). 0 ok, -1 with err. */
int control_open(struct daemon *d, char *err, size_t errlen);
/* Stop listening and remove the socket file. Safe to call twice. */
void control_close(void);

#endif
