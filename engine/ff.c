/*
 * ff.c -- the leaf module: error names and messages, the allocation family, panic.
 */
#include "engine/ff.h"

#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *ff_strerror(int err)
{
    switch (err) {
#define FF__ERR_MSG(name, val, msg)                                                                \
    case FF_E##name:                                                                               \
        return msg;
        FF_ERRNO_MAP(FF__ERR_MSG)
#undef FF__ERR_MSG
    default:
        break;
    }
    if (err < 0 && err > -4096) return strerror(-err);
    return err == 0 ? "success" : "unknown error";
}

const char *ff_errname(int err)
{
    switch (err) {
#define FF__ERR_NAME(name, val, msg)                                                               \
    case FF_E##name:                                                                               \
        return "FF_E" #name;
        FF_ERRNO_MAP(FF__ERR_NAME)
#undef FF__ERR_NAME
    case -ENOENT:
        return "ENOENT";
    case -EINVAL:
        return "EINVAL";
    case -EEXIST:
        return "EEXIST";
    case -ENOMEM:
        return "ENOMEM";
    case -ENOSPC:
        return "ENOSPC";
    case -EIO:
        return "EIO";
    default:
        return err == 0 ? "OK" : "E?";
    }
}

static _Noreturn void oom(size_t n)
{
    fprintf(stderr, "footfall: out of memory allocating %zu bytes\n", n);
    abort();
}

void *ff_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) oom(n);
    return p;
}

void *ff_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL) oom(count * size);
    return p;
}

void *ff_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) oom(n);
    return q;
}

char *ff_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = ff_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

bool ff_populate(void *p, size_t n)
{
#ifdef MADV_POPULATE_WRITE
    /* Linux 5.14; the page size is read from the aux vector, no system call */
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
    return a < b && madvise((void *)a, b - a, MADV_POPULATE_WRITE) == 0;
#else
    (void)p, (void)n;
    return false;
#endif
}

void *ff_xgrow(void *p, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    *cap = c;
    return ff_xrealloc(p, c * sz);
}

void ff_panic(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "footfall: panic at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
