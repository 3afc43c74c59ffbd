/*
 * test_file.c -- tests of storage/file.c: an ff_wfile writes every byte in order at any
 * chunking, waits for the writeback of all but the last MiB, and reports a failed write.
 */
#include "storage/file.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1u << 20)

static int tmpfile_fd(char path[64])
{
    snprintf(path, 64, "/tmp/ff-test-file-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    return fd;
}

Test(file, writes_every_byte_in_order_and_waits_for_all_but_the_last_mib)
{
    char path[64];
    int fd = tmpfile_fd(path);
    size_t n = 3 * MIB + MIB / 2 + 7;
    uint8_t *buf = malloc(n), *back = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(i * 131 + (i >> 20));
    ff_wfile f;
    ff_wfile_init(&f, fd, 0);
    size_t parts[] = {5, MIB - 5, 2 * MIB + 1, n - 3 * MIB - 1}; /* across chunk edges */
    size_t at = 0;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(ff_wfile_write(&f, buf + at, parts[i]), 0);
        at += parts[i];
        cr_assert_eq(f.off, at);
        cr_assert_leq(f.wb, f.off);
        cr_assert_leq(f.off - f.wb, 2 * MIB, "%llu bytes not waited for",
                      (unsigned long long)(f.off - f.wb));
    }
    cr_assert_eq(at, n);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq((size_t)st.st_size, n);
    cr_assert_eq(pread(fd, back, n, 0), (ssize_t)n);
    cr_assert_eq(memcmp(buf, back, n), 0);
    close(fd);
    unlink(path);
    free(buf);
    free(back);
}

Test(file, a_failed_write_is_reported)
{
    char path[64];
    int fd = tmpfile_fd(path);
    close(fd);
    fd = open(path, O_RDONLY);
    ff_wfile f;
    ff_wfile_init(&f, fd, 0);
    uint8_t b[16] = {0};
    cr_assert_eq(ff_wfile_write(&f, b, sizeof b), -EBADF);
    cr_assert_eq(f.off, 0);
    close(fd);
    unlink(path);
}
