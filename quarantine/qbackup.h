/* qbackup.h - a consistent copy of a state folder's stores (see qbackup.c). */
#ifndef SR_QBACKUP_H
#define SR_QBACKUP_H

#include <stddef.h>
#include <stdint.h>

struct qbackup_stats {
    int quarantine_db;   /* quarantine.db copied (0: the state folder had none) */
    int messages_db;     /* messages.db copied */
    long files;          /* quarantined messages copied */
    int64_t bytes;       /* their compressed bytes */
    long gone;           /* rows whose file was purged or deleted during the copy */
};

int qbackup_run(const char *state_dir, const char *dest, struct qbackup_stats *st, char *err,
                size_t errlen);

#endif
