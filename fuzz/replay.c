/* fuzz/replay.c - the driver that stands in for libFuzzer outside the fuzz build: feeds every
 * file named on the command line, or found directly in a directory named there, to
 * LLVMFuzzerTestOneInput, in name order, each in a buffer of exactly its size (so that ASan in
 * `make check` sees a read one byte past the end, as under libFuzzer).
 *
 *     build/fuzz/fuzz_npy fuzz/corpus/npy            (make test: tests/test_fuzz_replay.sh)
 *     build/fuzz/fuzz_npy crash-0123abcd             (one input, e.g. a finding from make fuzz)
 *
 * Exits 1 when an argument cannot be read or a directory holds no input, so that a lost corpus
 * fails the test instead of passing with nothing run; a crashing input aborts the process. */
#include "fuzz/fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "replay: %s: %s\n", path, strerror(errno)); return -1; }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0) { fclose(f); fprintf(stderr, "replay: %s: cannot stat\n", path); return -1; }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != n) {
        fclose(f);
        free(buf);
        fprintf(stderr, "replay: %s: cannot read %zu bytes\n", path, n);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);  /* non-NULL even when empty, as under libFuzzer */
    free(buf);
    return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno)); return -1; }
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;  /* ., .. and hidden files are no inputs */
        if (n == cap && !(names = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names))) abort();
        if (!(names[n++] = strdup(e->d_name))) abort();
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    int ran = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            if (run_file(path) == 0) ran++;
            else bad++;
        }
        free(names[i]);
    }
    free(names);
    if (!ran) fprintf(stderr, "replay: %s: no inputs\n", dir);
    fprintf(stderr, "replay: %d inputs from %s\n", ran, dir);
    return ran && !bad ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...   (run each input through the harness once)\n", argv[0]);
        return 2;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) { fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno)); rc = 1; continue; }
        if ((S_ISDIR(sb.st_mode) ? run_dir(argv[i]) : run_file(argv[i])) != 0) rc = 1;
    }
    return rc;
}
