/*
 * test_httpc.c -- the client's pure parsing (net/httpc.c): endpoints, URL escaping,
 * HTTP responses (Content-Length, chunked, to the end), plus one request against a
 * one-shot local server.
 */
#include "net/httpc.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

Test(httpc, endpoints)
{
    ff_endpoint ep;
    cr_assert_eq(ff_endpoint_parse("127.0.0.1:8080", &ep), 0);
    cr_assert_str_eq(ep.host, "127.0.0.1");
    cr_assert_str_eq(ep.port, "8080");
    cr_assert_eq(ff_endpoint_parse("localhost:1", &ep), 0);
    cr_assert_str_eq(ep.host, "localhost");
    cr_assert_eq(ff_endpoint_parse("[::1]:65535", &ep), 0);
    cr_assert_str_eq(ep.host, "::1");
    cr_assert_str_eq(ep.port, "65535");
    cr_assert_eq(ff_endpoint_parse(":7071", &ep), 0);
    cr_assert_str_eq(ep.host, "127.0.0.1");
    cr_assert_eq(ff_endpoint_parse("host:007", &ep), 0);
    cr_assert_str_eq(ep.port, "7");
    static const char *bad[] = {"",       "8080",      "host:", "host:0",  "host:65536", "host:8x",
                                "::1:80", "[::1]8080", "[::1]", "host:-1", "host:123456"};
    for (size_t i = 0; i < FF_ARRAY_LEN(bad); i++)
        cr_assert_eq(ff_endpoint_parse(bad[i], &ep), FF_EFORMAT, "accepted \"%s\"", bad[i]);
}

Test(httpc, url_escape)
{
    ff_buf b;
    ff_buf_init(&b);
    ff_url_escape(&b, "Space A/B?&=%+é~._-");
    cr_assert_str_eq(b.p, "Space%20A%2FB%3F%26%3D%25%2B%C3%A9~._-");
    ff_buf_release(&b);
}

static int parse(const char *s, ff_http_response *r, char **copy)
{
    *copy = ff_xstrdup(s);
    return ff_http_response_parse(*copy, strlen(s), r);
}

Test(httpc, response_with_content_length)
{
    ff_http_response r;
    char *c;
    cr_assert_eq(parse("HTTP/1.1 200 OK\r\nContent-Type: Application/JSON; charset=utf-8\r\n"
                       "content-length: 7\r\n\r\n{\"a\":1}trailing",
                       &r, &c),
                 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.content_type, "application/json");
    cr_assert_eq(r.body_len, 7);
    cr_assert_eq(memcmp(r.body, "{\"a\":1}", 7), 0);
    free(c);
}

Test(httpc, response_to_the_end_and_bare_lf)
{
    ff_http_response r;
    char *c;
    cr_assert_eq(
        parse("HTTP/1.0 404\nContent-Type: application/problem+json\n\n{\"x\":2}\n", &r, &c), 0);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(r.content_type, "application/problem+json");
    cr_assert_eq(r.body_len, 8);
    free(c);
}

Test(httpc, response_chunked)
{
    ff_http_response r;
    char *c;
    cr_assert_eq(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n",
                       &r, &c),
                 0);
    cr_assert_eq(r.body_len, 24);
    cr_assert_eq(memcmp(r.body, "Wikipedia in \r\n\r\nchunks.", 24), 0);
    free(c);
}

Test(httpc, response_malformed)
{
    static const char *bad[] = {
        "",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",        /* no blank line */
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", /* truncated body */
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "SMTP 220 hello\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",     /* short chunk */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",  /* bad size */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", /* no last chunk */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
    };
    for (size_t i = 0; i < FF_ARRAY_LEN(bad); i++) {
        ff_http_response r;
        char *c;
        cr_assert_eq(parse(bad[i], &r, &c), FF_EFORMAT, "accepted case %zu", i);
        free(c);
    }
}

/* A one-shot HTTP server: reads one request, answers canned bytes, closes. */
typedef struct oneshot {
    int lfd;
    char request[4096];
    const char *answer;
} oneshot;

static void *serve(void *arg)
{
    oneshot *o = arg;
    int fd = accept(o->lfd, NULL, NULL);
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, o->request + n, sizeof o->request - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        o->request[n] = '\0';
        char *h = strstr(o->request, "\r\n\r\n");
        if (h && (!strstr(o->request, "Content-Length: 4") || strlen(h + 4) >= 4)) break;
    }
    send(fd, o->answer, strlen(o->answer), MSG_NOSIGNAL);
    close(fd);
    return NULL;
}

static int listen_any(ff_endpoint *ep)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 8), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    snprintf(ep->host, sizeof ep->host, "127.0.0.1");
    snprintf(ep->port, sizeof ep->port, "%u", ntohs(a.sin_port));
    return fd;
}

Test(httpc, request_round_trip)
{
    ff_endpoint ep;
    oneshot o = {.answer = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n0\r\n\r\n"};
    o.lfd = listen_any(&ep);
    pthread_t t;
    pthread_create(&t, NULL, serve, &o);
    ff_buf raw;
    ff_buf_init(&raw);
    ff_http_response r;
    char err[256];
    ff_http_request q = {.method = "PUT",
                         .path = "/v1/x?name=a%20b",
                         .token = "s3cret",
                         .content_type = "application/json",
                         .body = "[1]\n",
                         .body_len = 4};
    cr_assert_eq(ff_http_do(&ep, &q, &raw, &r, err, sizeof err), 0, "%s", err);
    pthread_join(t, NULL);
    close(o.lfd);
    cr_assert_eq(r.status, 201);
    cr_assert_eq(r.body_len, 3);
    cr_assert_str_eq(r.content_type, "application/json");
    cr_assert(strncmp(o.request, "PUT /v1/x?name=a%20b HTTP/1.1\r\n", 31) == 0, "%s", o.request);
    cr_assert_not_null(strstr(o.request, "\r\nAuthorization: Bearer s3cret\r\n"));
    cr_assert_not_null(strstr(o.request, "\r\nContent-Length: 4\r\n"));
    cr_assert_not_null(strstr(o.request, "\r\nConnection: close\r\n"));
    cr_assert_not_null(strstr(o.request, "\r\n\r\n[1]\n"));
    ff_buf_release(&raw);
}

Test(httpc, connection_refused_says_where)
{
    ff_endpoint ep;
    int fd = listen_any(&ep);
    close(fd); /* nothing listens there now */
    ff_buf raw;
    ff_buf_init(&raw);
    ff_http_response r;
    char err[256] = "";
    ff_http_request q = {.method = "GET", .path = "/healthz", .timeout_ms = 2000};
    cr_assert_lt(ff_http_do(&ep, &q, &raw, &r, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, ep.port), "%s", err);
    cr_assert_not_null(strstr(err, "refused"), "%s", err);
    ff_buf_release(&raw);
}
