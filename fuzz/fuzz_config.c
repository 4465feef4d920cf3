/*
 * fuzz_config.c - the configuration loader (lib/config, libconfuse
 * syntax): the input is written to a scratch file and loaded as
 * `scanrelayd -c FILE` would.
 *
 * Checks: a refusal names the file (and so the line) in its message and
 * returns no config; a config that loads has sane values (sizes and
 * durations not negative, actions known, the lists as long as they say).
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "action.h"
#include "config.h"
#include "fuzz.h"

static void
rule(const struct sr_limit_rule *r)
{
    FUZZ_CHECK(r->threshold >= 0);
    FUZZ_CHECK(r->action >= SR_ACTION_DELIVER && r->action <= SR_ACTION_DEFER);
    FUZZ_CHECK(strcmp(sr_action_name(r->action), "?") != 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[600], err[1024];

    snprintf(path, sizeof(path), "%s/scanrelay.conf", fuzz_tmpdir());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd >= 0);
    for (size_t off = 0; off < size;) {
        ssize_t n = write(fd, data + off, size - off);
        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
    close(fd);

    static int registered;
    if (!registered) {
        sr_action_register(); /* the action words, as scanrelayd and scanrelay do */
        registered = 1;
    }
    err[0] = '\0';
    struct sr_config *c = config_load(path, 1, err, sizeof(err));
    if (c == NULL) {
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        return 0;
    }
    FUZZ_CHECK(c->nlisten == 0 || c->listen != NULL);
    for (size_t i = 0; i < c->nlisten; i++)
        FUZZ_CHECK(c->listen[i] != NULL);
    for (size_t i = 0; i < c->nxforward_networks; i++)
        FUZZ_CHECK(c->xforward_networks[i] != NULL);
    FUZZ_CHECK(c->relay && c->state_directory && c->queue_directory && c->control_socket);
    FUZZ_CHECK(c->max_message_size >= 0 && c->max_connections >= 0 && c->max_recipients >= 0);
    FUZZ_CHECK(c->max_command_length >= 0 && c->smtpd_timeout >= 0);
    FUZZ_CHECK(c->virus.database_directory != NULL);
    FUZZ_CHECK(c->virus.max_scan_size >= 0 && c->virus.max_file_size >= 0);
    rule(&c->scan.message_size);
    rule(&c->scan.file_size);
    rule(&c->scan.total_size);
    rule(&c->scan.archive_files);
    rule(&c->scan.archive_depth);
    rule(&c->scan.compression_ratio);
    rule(&c->scan.recipients);
    FUZZ_CHECK(strcmp(sr_action_name(c->virus.action), "?") != 0);
    FUZZ_CHECK(strcmp(sr_action_name(c->scan.encrypted_action), "?") != 0);
    FUZZ_CHECK(strcmp(sr_action_name(c->scan.error_action), "?") != 0);
    config_free(c);
    return 0;
}
