/*
 * fuzz_util.c - helpers of the fuzz targets (see fuzz.h): the scratch
 * folder. Linked into every target, libFuzzer or replay.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static char tmpdir[512];

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

static void
rm_tree(void)
{
    if (tmpdir[0] && nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
        fprintf(stderr, "fuzz: could not remove %s\n", tmpdir);
}

const char *
fuzz_tmpdir(void)
{
    if (tmpdir[0])
        return tmpdir;
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmpdir, sizeof(tmpdir), "%s/sr-fuzz.XXXXXX", base);
    if (mkdtemp(tmpdir) == NULL) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(rm_tree);
    return tmpdir;
}
