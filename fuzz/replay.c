/*
 * replay.c - feed saved inputs to a fuzz target without libFuzzer, so that
 * every corpus and crash reproducer runs as an ordinary test in the normal
 * (gcc, optionally ASan/UBSan) build.
 *
 * Usage: fuzz_TARGET_replay PATH...  Each PATH is a file or a folder
 * (its regular files, in name order, not recursive). A missing folder is
 * skipped (an empty crashes/ folder is not kept in git). Every input is
 * copied into a buffer of exactly its size, as libFuzzer does, so that an
 * overread shows under ASan. Exits 0 after the last input when at least
 * one was fed, 1 when none was, 2 on an unreadable file; a target that
 * finds a broken invariant aborts, which fails the test.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int
feed_file(const char *path)
{
    struct stat st;
    int fd = open(path, O_RDONLY);

    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    size_t got = 0;
    while (buf && got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (buf == NULL || got != len) {
        fprintf(stderr, "replay: %s: short read\n", path);
        free(buf);
        return -1;
    }
    if (getenv("FUZZ_REPLAY_VERBOSE"))
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

static int
by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int
main(int argc, char **argv)
{
    long fed = 0;
    int bad = 0;

    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            if (errno == ENOENT)
                continue;
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 2;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad |= feed_file(argv[i]) < 0;
            fed++;
            continue;
        }
        struct dirent **ents;
        int n = scandir(argv[i], &ents, NULL, by_name);
        if (n < 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 2;
        }
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], ents[k]->d_name);
            if (ents[k]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                bad |= feed_file(path) < 0;
                fed++;
            }
            free(ents[k]);
        }
        free(ents);
    }
    printf("replay: %ld inputs\n", fed);
    if (bad)
        return 2;
    return fed > 0 ? 0 : 1;
}
