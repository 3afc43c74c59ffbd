/*
 * httpc.c -- endpoints, blocking TCP connections and a minimal HTTP/1.1 client
 * (httpc.h).
 *
 * A request is written in one go (head and body through writev) with
 * `Connection: close`; the answer is read until the server closes, then parsed:
 * status line, headers (Content-Type, Content-Length, Transfer-Encoding) and the body,
 * chunked bodies decoded in place. Answers are capped at 256 MiB so a broken server
 * cannot make the client eat all memory.
 */
#include "net/httpc.h"

#include <ctype.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HTTP_MAX_ANSWER ((size_t)256 << 20)

static void say(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int ff_endpoint_parse(const char *s, ff_endpoint *ep)
{
    const char *colon, *host = s;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return FF_EFORMAT;
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return FF_EFORMAT;
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen)) return FF_EFORMAT; /* a bare IPv6 address needs [] */
    }
    const char *port = colon + 1;
    size_t plen = strlen(port);
    if (plen == 0 || plen > 5 || hlen >= sizeof ep->host) return FF_EFORMAT;
    unsigned long p = 0;
    for (size_t i = 0; i < plen; i++) {
        if (!isdigit((unsigned char)port[i])) return FF_EFORMAT;
        p = p * 10 + (unsigned long)(port[i] - '0');
    }
    if (p < 1 || p > 65535) return FF_EFORMAT;
    if (hlen == 0) {
        snprintf(ep->host, sizeof ep->host, "127.0.0.1");
    } else {
        memcpy(ep->host, host, hlen);
        ep->host[hlen] = '\0';
    }
    snprintf(ep->port, sizeof ep->port, "%lu", p);
    return 0;
}

static int set_timeouts(int fd, int io_ms)
{
    if (io_ms <= 0) return 0;
    struct timeval tv = {.tv_sec = io_ms / 1000, .tv_usec = (io_ms % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
        return -errno;
    return 0;
}

/* Connects fd to ai within timeout_ms; leaves fd blocking. 0 or -errno. */
static int connect_within(int fd, const struct addrinfo *ai, int timeout_ms)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc < 0 && errno != EINPROGRESS) return -errno;
    if (rc < 0) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        do rc = poll(&p, 1, timeout_ms > 0 ? timeout_ms : -1);
        while (rc < 0 && errno == EINTR);
        if (rc < 0) return -errno;
        if (rc == 0) return -ETIMEDOUT;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) return -errno;
        if (soerr) return -soerr;
    }
    if (fcntl(fd, F_SETFL, fl) < 0) return -errno;
    return 0;
}

int ff_tcp_connect(const ff_endpoint *ep, int timeout_ms, int io_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    int g = getaddrinfo(ep->host, ep->port, &hints, &res);
    if (g != 0) {
        say(err, errlen, "cannot resolve %s: %s", ep->host, gai_strerror(g));
        return FF_EINVAL;
    }
    int rc = -ECONNREFUSED;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        rc = connect_within(fd, ai, timeout_ms);
        if (rc == 0) rc = set_timeouts(fd, io_ms);
        if (rc == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            freeaddrinfo(res);
            return fd;
        }
        close(fd);
    }
    freeaddrinfo(res);
    say(err, errlen, "cannot connect to %s:%s: %s", ep->host, ep->port, ff_strerror(rc));
    return rc;
}

int ff_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int ff_read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = recv(fd, c, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        if (r == 0) return -ECONNRESET;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

void ff_url_escape(ff_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            ff_buf_add(b, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            ff_buf_add(b, e, 3);
        }
    }
}

/* The next CRLF- or LF-terminated line in [*p, end): returns its start, sets *n to its
 * length without the terminator and advances *p; NULL when no terminator is left. */
static const char *next_line(char **p, const char *end, size_t *n)
{
    char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
    if (!nl) return NULL;
    *n = (size_t)(nl - s) - (nl > s && nl[-1] == '\r');
    *p = nl + 1;
    return s;
}

static bool header_is(const char *h, size_t n, const char *name, const char **val, size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || h[k] != ':' || strncasecmp(h, name, k) != 0) return false;
    const char *v = h + k + 1, *e = h + n;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
    *val = v;
    *vlen = (size_t)(e - v);
    return true;
}

/* Decodes a chunked body at [p, end) in place; sets r's body. 0 or FF_EFORMAT. */
static int dechunk(char *p, const char *end, ff_http_response *r)
{
    char *out = p;
    r->body = p;
    for (;;) {
        size_t n;
        const char *l = next_line(&p, end, &n);
        if (!l) return FF_EFORMAT;
        size_t size = 0, i = 0;
        for (; i < n && isxdigit((unsigned char)l[i]); i++) {
            if (size > (HTTP_MAX_ANSWER >> 4)) return FF_EFORMAT;
            int c = tolower((unsigned char)l[i]);
            size = size * 16 + (size_t)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        if (i == 0 || (i < n && l[i] != ';' && l[i] != ' ')) return FF_EFORMAT;
        if (size == 0) break; /* trailers, if any, are ignored */
        if ((size_t)(end - p) < size + 1) return FF_EFORMAT;
        memmove(out, p, size);
        out += size;
        p += size;
        if (*p == '\r') p++;
        if (p >= end || *p != '\n') return FF_EFORMAT;
        p++;
    }
    r->body_len = (size_t)(out - r->body);
    return 0;
}

int ff_http_response_parse(char *buf, size_t len, ff_http_response *r)
{
    char *p = buf;
    const char *end = buf + len, *l, *v;
    size_t n, vlen;
    memset(r, 0, sizeof *r);
    l = next_line(&p, end, &n);
    if (!l || n < 12 || strncmp(l, "HTTP/1.", 7) != 0 || l[8] != ' ') return FF_EFORMAT;
    if (!isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
        !isdigit((unsigned char)l[11]) || (n > 12 && l[12] != ' '))
        return FF_EFORMAT;
    r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (r->status < 100) return FF_EFORMAT;

    bool chunked = false, have_cl = false;
    size_t cl = 0;
    for (;;) {
        l = next_line(&p, end, &n);
        if (!l) return FF_EFORMAT; /* no blank line: the head is truncated */
        if (n == 0) break;
        if (header_is(l, n, "Content-Type", &v, &vlen)) {
            size_t k = 0;
            while (k < vlen && k + 1 < sizeof r->content_type && v[k] != ';' && v[k] != ' ') {
                r->content_type[k] = (char)tolower((unsigned char)v[k]);
                k++;
            }
            r->content_type[k] = '\0';
        } else if (header_is(l, n, "Content-Length", &v, &vlen)) {
            if (vlen == 0 || vlen > 12) return FF_EFORMAT;
            cl = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (!isdigit((unsigned char)v[i])) return FF_EFORMAT;
                cl = cl * 10 + (size_t)(v[i] - '0');
            }
            have_cl = true;
        } else if (header_is(l, n, "Transfer-Encoding", &v, &vlen)) {
            chunked = vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0;
        }
    }
    if (chunked) return dechunk(p, end, r);
    r->body = p;
    r->body_len = (size_t)(end - p);
    if (have_cl) {
        if (r->body_len < cl) return FF_EFORMAT;
        r->body_len = cl;
    }
    return 0;
}

static void write_head(ff_buf *h, const ff_endpoint *ep, const ff_http_request *q)
{
    bool v6 = strchr(ep->host, ':') != NULL;
    ff_buf_addf(h, "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nConnection: close\r\n", q->method, q->path,
                v6 ? "[" : "", ep->host, v6 ? "]" : "", ep->port);
    ff_buf_adds(h, "User-Agent: footfall\r\nAccept: application/json\r\n");
    if (q->token) ff_buf_addf(h, "Authorization: Bearer %s\r\n", q->token);
    if (q->content_type)
        ff_buf_addf(h, "Content-Type: %s\r\nContent-Length: %zu\r\n", q->content_type, q->body_len);
    else if (strcmp(q->method, "POST") == 0 || strcmp(q->method, "PUT") == 0)
        ff_buf_adds(h, "Content-Length: 0\r\n");
    ff_buf_adds(h, "\r\n");
}

static int send_request(int fd, const ff_buf *head, const ff_http_request *q)
{
    struct iovec iov[2] = {{head->p, head->len},
                           {(void *)q->body, q->content_type ? q->body_len : 0}};
    size_t total = iov[0].iov_len + iov[1].iov_len, done = 0;
    while (done < total) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        done += (size_t)w;
        for (int i = 0; i < 2; i++) {
            size_t k = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
            iov[i].iov_base = (char *)iov[i].iov_base + k;
            iov[i].iov_len -= k;
            w -= (ssize_t)k;
        }
    }
    return 0;
}

static int read_to_end(int fd, ff_buf *raw)
{
    for (;;) {
        ff_buf_reserve(raw, 65536);
        ssize_t r = recv(fd, raw->p + raw->len, raw->cap - raw->len - 1, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        if (r == 0) break;
        raw->len += (size_t)r;
        if (raw->len > HTTP_MAX_ANSWER) return FF_ETOOBIG;
    }
    raw->p[raw->len] = '\0';
    return 0;
}

int ff_http_do(const ff_endpoint *ep, const ff_http_request *q, ff_buf *raw, ff_http_response *r,
               char *err, size_t errlen)
{
    int ms = q->timeout_ms > 0 ? q->timeout_ms : 30000;
    int fd = ff_tcp_connect(ep, ms, ms, err, errlen);
    if (fd < 0) return fd;
    ff_buf head;
    ff_buf_init(&head);
    write_head(&head, ep, q);
    int rc = send_request(fd, &head, q);
    /* the server may answer (413, 401) and close before reading a big body: read anyway */
    int rrc = read_to_end(fd, raw);
    ff_buf_release(&head);
    close(fd);
    if (rrc == 0 && raw->len > 0)
        rc = 0;
    else if (rc == 0)
        rc = rrc;
    if (rc == 0 && raw->len == 0) rc = -ECONNRESET;
    if (rc < 0) {
        say(err, errlen, "HTTP %s %s on %s:%s: %s", q->method, q->path, ep->host, ep->port,
            rc == -EAGAIN ? "timed out" : ff_strerror(rc));
        return rc;
    }
    if (ff_http_response_parse(raw->p, raw->len, r) < 0) {
        say(err, errlen, "HTTP %s %s on %s:%s: malformed answer", q->method, q->path, ep->host,
            ep->port);
        return FF_EFORMAT;
    }
    return 0;
}
