/*
 * jsonw.h -- a growable output buffer with JSON and text writers, for the hot HTTP
 * answers (written by hand, never through a DOM) and the Prometheus text.
 *
 * A ff_buf owns its bytes until ff_buf_release() or ff_buf_steal(). Writers never fail:
 * growth goes through ff_xrealloc, which aborts on exhaustion. The buffer is always
 * NUL-terminated after its len bytes.
 */
#ifndef FF_NET_JSONW_H
#define FF_NET_JSONW_H

#include "engine/ff.h"

#include <stdbool.h>

typedef struct ff_buf {
    char *p;
    size_t len, cap;
} ff_buf;

void ff_buf_init(ff_buf *b);
void ff_buf_release(ff_buf *b);
/* Hands the bytes over to the caller (free() them); the buffer is empty afterwards. */
char *ff_buf_steal(ff_buf *b, size_t *len);
void ff_buf_reset(ff_buf *b);
void ff_buf_reserve(ff_buf *b, size_t more);
void ff_buf_add(ff_buf *b, const void *p, size_t n);
void ff_buf_adds(ff_buf *b, const char *s);
void ff_buf_addf(ff_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ff_buf_addi(ff_buf *b, int64_t v);
void ff_buf_addu(ff_buf *b, uint64_t v);

/* JSON pieces. ff_json_str escapes s (UTF-8 passed through, control characters and
 * quotes escaped). ff_json_time writes a quoted RFC 3339 time, or null for FF_TS_MIN. */
void ff_json_str(ff_buf *b, const char *s);
void ff_json_strn(ff_buf *b, const char *s, size_t n);
void ff_json_time(ff_buf *b, int64_t us);
/* Writes `"key":` (key is trusted, unescaped). */
void ff_json_key(ff_buf *b, const char *key);

#endif /* FF_NET_JSONW_H */
