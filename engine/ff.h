/*
 * ff.h -- the leaf header of footfall: fixed-width types, the event record, the
 * error band, the allocation family and the assert macros.
 *
 * Every layer (storage, engine, net, bench, tests) may include this file; it includes
 * nothing of footfall's own. Its implementation (engine/ff.c) is the ff_base library,
 * which every other library links.
 *
 * Errors. Every fallible footfall call returns 0 (or a non-negative count) on success
 * and a negative int on failure: -errno for failures of the operating system, or one
 * of the FF_E* codes below for footfall's own. ff_strerror() names either kind.
 *
 * Memory. Allocation failure is not handled anywhere: ff_xmalloc() and friends abort
 * the process with a message. Every other failure is returned to the caller.
 */
#ifndef FF_H
#define FF_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Time: microseconds since 1970-01-01T00:00:00Z, UTC. */
typedef int64_t ff_ts;
#define FF_TS_MIN INT64_MIN /* "the beginning of time" */
#define FF_TS_MAX INT64_MAX
#define FF_SECOND ((int64_t)1000000)
#define FF_MINUTE (60 * FF_SECOND)
#define FF_HOUR   (60 * FF_MINUTE)
#define FF_DAY    (24 * FF_HOUR)

/*
 * One DPU event, laid out exactly as the 16-byte wire record of SPEC §3 (on a
 * little-endian host the wire bytes can be copied in place). `reserved` must be 0 on
 * the wire; inside footfall (the log) it carries FF_EVF_* flags.
 */
typedef struct ff_event {
    uint32_t dpu_id;
    int8_t direction; /* +1 or -1 */
    uint8_t reserved; /* 0 on the wire; FF_EVF_* in the log */
    uint16_t seq;     /* per-DPU sequence number, 0 when the sender has none */
    int64_t ts;       /* ff_ts */
} ff_event;
_Static_assert(sizeof(ff_event) == 16, "ff_event is the 16-byte wire record");

#define FF_EVF_LATE 0x01 /* accepted as a late event: amended settled history */

/*
 * The error band. X(NAME, value, message). Values sit far below any -errno.
 */
#define FF_ERRNO_MAP(X)                                                                            \
    X(CORRUPT, -20001, "data is corrupt")                                                          \
    X(FORMAT, -20002, "not a footfall file or malformed input")                                    \
    X(VERSION, -20003, "unsupported format version")                                               \
    X(LATE, -20004, "event is late (at or before the horizon)")                                    \
    X(TOOOLD, -20005, "event is older than the horizon minus max lateness")                        \
    X(FUTURE, -20006, "event is too far in the future")                                            \
    X(CONFLICT, -20007, "conflicts with existing state")                                           \
    X(EXIST, -20008, "already exists")                                                             \
    X(NOTFOUND, -20009, "no such id")                                                              \
    X(INVAL, -20010, "invalid value")                                                              \
    X(REF, -20011, "refers to an unknown id")                                                      \
    X(OVERLOAD, -20012, "overloaded, retry later")                                                 \
    X(ARCHIVED, -20013, "range is archived")                                                       \
    X(TOOBIG, -20014, "too big")                                                                   \
    X(UNKNOWNDPU, -20015, "unknown DPU")

enum {
#define FF__ERR_ENUM(name, val, msg) FF_E##name = (val),
    FF_ERRNO_MAP(FF__ERR_ENUM)
#undef FF__ERR_ENUM
};
/* Older spellings, kept so no caller breaks. */
#define FF_EEXISTS  FF_EEXIST
#define FF_EINVALID FF_EINVAL

/* The message for err (an FF_E* code or a -errno); never NULL, static storage. */
const char *ff_strerror(int err);
/* The symbolic name ("FF_ECORRUPT", "ENOENT") for err; never NULL. */
const char *ff_errname(int err);

/* Allocation that never fails: on exhaustion it prints and aborts. */
void *ff_xmalloc(size_t n);
void *ff_xcalloc(size_t count, size_t size);
void *ff_xrealloc(void *p, size_t n);
char *ff_xstrdup(const char *s);
/* Grow-array helper: returns p resized for at least need elements of size sz, updating
 * *cap (doubling, minimum 16). */
void *ff_xgrow(void *p, size_t *cap, size_t need, size_t sz);
/* Maps the whole pages of [p, p+n) for writing in one call (MADV_POPULATE_WRITE) instead
 * of a page fault on each first write: in a VM each fault is dear. A hint; nothing
 * happens where unsupported or for less than a page. Returns whether it was done. */
bool ff_populate(void *p, size_t n);

/* Panic: unrecoverable corruption or a broken invariant. Prints and aborts. */
_Noreturn void ff_panic(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define FF_PANIC(...) ff_panic(__FILE__, __LINE__, __VA_ARGS__)

/* FF_ASSERT checks an invariant in every build (cheap checks only); FF_DEBUG_ASSERT only
 * in debug builds (NDEBUG unset). */
#define FF_ASSERT(c)                                                                               \
    do {                                                                                           \
        if (__builtin_expect(!(c), 0)) FF_PANIC("assertion failed: %s", #c);                       \
    } while (0)
#ifdef NDEBUG
#define FF_DEBUG_ASSERT(c) ((void)0)
#else
#define FF_DEBUG_ASSERT(c) FF_ASSERT(c)
#endif

#define FF_LIKELY(x)    __builtin_expect(!!(x), 1)
#define FF_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#define FF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif /* FF_H */
