/*
 * jsonw.c -- output buffer and JSON writers (see jsonw.h).
 */
#include "net/jsonw.h"
#include "net/timefmt.h"

#include <stdarg.h>
#include <string.h>

void ff_buf_init(ff_buf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
}

void ff_buf_release(ff_buf *b)
{
    free(b->p);
    ff_buf_init(b);
}

char *ff_buf_steal(ff_buf *b, size_t *len)
{
    ff_buf_reserve(b, 1);
    char *p = b->p;
    if (len) *len = b->len;
    ff_buf_init(b);
    return p;
}

void ff_buf_reset(ff_buf *b)
{
    b->len = 0;
    if (b->p) b->p[0] = '\0';
}

void ff_buf_reserve(ff_buf *b, size_t more)
{
    if (b->len + more + 1 <= b->cap) return;
    size_t c = b->cap ? b->cap : 256;
    while (c < b->len + more + 1) c *= 2;
    b->p = ff_xrealloc(b->p, c);
    b->cap = c;
}

void ff_buf_add(ff_buf *b, const void *p, size_t n)
{
    ff_buf_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void ff_buf_adds(ff_buf *b, const char *s)
{
    ff_buf_add(b, s, strlen(s));
}

void ff_buf_addf(ff_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    ff_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void ff_buf_addu(ff_buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ff_buf_add(b, tmp + i, sizeof(tmp) - i);
}

void ff_buf_addi(ff_buf *b, int64_t v)
{
    if (v < 0) {
        ff_buf_add(b, "-", 1);
        ff_buf_addu(b, (uint64_t)0 - (uint64_t)v);
    } else {
        ff_buf_addu(b, (uint64_t)v);
    }
}

void ff_json_strn(ff_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    ff_buf_reserve(b, n + 2);
    ff_buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            ff_buf_add(b, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ff_buf_add(b, esc, 6);
        } else {
            ff_buf_add(b, &s[i], 1);
        }
    }
    ff_buf_add(b, "\"", 1);
}

void ff_json_str(ff_buf *b, const char *s)
{
    ff_json_strn(b, s, strlen(s));
}

void ff_json_time(ff_buf *b, int64_t us)
{
    if (us == FF_TS_MIN) {
        ff_buf_add(b, "null", 4);
        return;
    }
    char t[FF_TIME_STRLEN];
    size_t n = ff_time_format(us, t);
    ff_buf_reserve(b, n + 2);
    ff_buf_add(b, "\"", 1);
    ff_buf_add(b, t, n);
    ff_buf_add(b, "\"", 1);
}

void ff_json_key(ff_buf *b, const char *key)
{
    size_t n = strlen(key);
    ff_buf_reserve(b, n + 3);
    ff_buf_add(b, "\"", 1);
    ff_buf_add(b, key, n);
    ff_buf_add(b, "\":", 2);
}
