/* fuzz.h - what the fuzz targets share: the libFuzzer entry points, an invariant check and a scratch folder. */
#ifndef SR_FUZZ_H
#define SR_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken invariant: say which and abort (a crash for libFuzzer, a failure for replay). */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/*
 * A private scratch folder for this process (under $TMPDIR, else /dev/shm
 * when writable, else /tmp), made on first use and removed with what it
 * holds at exit. Never NULL (aborts when it cannot be made).
 */
const char *fuzz_tmpdir(void);

#endif
