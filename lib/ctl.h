/* ctl.h - the control-socket protocol between scanrelay and scanrelayd (see ctl.c). */
#ifndef SR_CTL_H
#define SR_CTL_H

#include <stddef.h>

/*
 * Protocol. The client connects to the unix socket (control_socket), sends
 * one request line and reads the answer; one request per connection.
 *   request:  VERB [ARG...] "\n"      words separated by single spaces
 *   answer:   zero or more data lines "* TEXT\n",
 *             then one final line "OK [TEXT]\n" or "ERR TEXT\n"
 * Verbs: status, reload, flush [ID...], delete ID...|ALL, hold ID...|ALL,
 *        release ID...|ALL, requeue ID...|ALL.
 * Lines are at most CTL_LINE_MAX bytes.
 */
#define CTL_LINE_MAX 4096

/*
 * Send one request and read the answer: data lines go to line_cb without
 * the "* " prefix, the final line's text into final.
 * Returns 0 on OK, 1 on ERR, -1 when the daemon cannot be reached or the
 * answer is broken (errno set: ENOENT/ECONNREFUSED mean "not running").
 */
int ctl_request(const char *sock_path, const char *request,
                void (*line_cb)(void *arg, const char *line), void *arg,
                char *final, size_t finallen);

#endif
