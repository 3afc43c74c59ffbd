/*
 * httpc.h -- the client side of the network: endpoints, blocking TCP connections and a
 * one-request-per-connection HTTP/1.1 client, for the `footfall` command.
 *
 * Blocking sockets with timeouts (SO_RCVTIMEO/SO_SNDTIMEO); no event loop. Every HTTP
 * request opens its own connection with `Connection: close` and reads the answer to
 * the end of the stream, which keeps the client simple and correct against any server;
 * the bulk path (import) goes over the binary TCP protocol instead.
 *
 * The parsing parts (endpoints, URL escaping, responses) are pure and tested on byte
 * arrays.
 */
#ifndef FF_NET_HTTPC_H
#define FF_NET_HTTPC_H

#include "engine/ff.h"
#include "net/jsonw.h"

#include <stdbool.h>

/* A HOST:PORT as the user wrote it, split. */
typedef struct ff_endpoint {
    char host[256]; /* without the brackets of an IPv6 literal */
    char port[8];
} ff_endpoint;

/*
 * Parses "HOST:PORT", "[V6ADDR]:PORT" or ":PORT" (host 127.0.0.1). The port must be
 * 1..65535. Returns 0 or FF_EFORMAT.
 */
int ff_endpoint_parse(const char *s, ff_endpoint *ep);

/*
 * Connects to ep (name resolution through getaddrinfo, every address tried in turn)
 * within timeout_ms, and sets the send and receive timeouts of the socket to io_ms
 * (0: none) and TCP_NODELAY. Returns the blocking socket, or a negative error: -errno,
 * or FF_EINVAL when the name does not resolve. err (errlen bytes) says which.
 */
int ff_tcp_connect(const ff_endpoint *ep, int timeout_ms, int io_ms, char *err, size_t errlen);

/* Writes all n bytes (retrying on EINTR and short writes). 0 or -errno (-EAGAIN on a
 * send timeout). */
int ff_write_all(int fd, const void *p, size_t n);
/* Reads exactly n bytes. 0, -errno (-EAGAIN on a receive timeout) or -ECONNRESET
 * (reported for an orderly close too: the peer went away before n bytes). */
int ff_read_all(int fd, void *p, size_t n);

/* Appends s to b with every byte outside [A-Za-z0-9-._~] percent-encoded. */
void ff_url_escape(ff_buf *b, const char *s);

typedef struct ff_http_response {
    int status;
    char content_type[128]; /* lower-cased media type without parameters; "" if none */
    const char *body;       /* points into the parsed buffer */
    size_t body_len;
} ff_http_response;

/*
 * Parses a whole HTTP/1.x response held in buf[0..len) (the server closed the
 * connection after it). The body is found by Content-Length, by chunked
 * Transfer-Encoding (decoded in place, so buf is modified) or by the end of the data.
 * Returns 0, or FF_EFORMAT for a malformed or truncated response.
 */
int ff_http_response_parse(char *buf, size_t len, ff_http_response *r);

typedef struct ff_http_request {
    const char *method;       /* "GET", "PUT", ... */
    const char *path;         /* origin form, already escaped: "/v1/spaces?name=Space%20A" */
    const char *token;        /* NULL: no Authorization header */
    const char *content_type; /* NULL: no body */
    const char *body;
    size_t body_len;
    int timeout_ms; /* connect and each read/write; 0: 30 s */
} ff_http_request;

/*
 * Sends q to ep and reads the whole answer into raw (which the caller releases; r's
 * body points into it). Returns 0 when an HTTP answer came back (whatever its status),
 * or a negative error with a sentence in err: connection refused, timeout, a malformed
 * answer.
 */
int ff_http_do(const ff_endpoint *ep, const ff_http_request *q, ff_buf *raw, ff_http_response *r,
               char *err, size_t errlen);

#endif /* FF_NET_HTTPC_H */
