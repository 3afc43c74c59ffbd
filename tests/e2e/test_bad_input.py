"""Bad input gets its documented refusal and changes nothing: malformed frames over UDP
and TCP, bad JSON, bad CSV, unknown ids, absurd times, oversized bodies."""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import (US, Runner, Server, answers, frame, iso, now_us,  # noqa: E402
                       parse_ack, run_footfall)

r = Runner("e2e bad input")
srv = Server("--settle", "5m")
T = now_us() - 3600 * US
good = [(283, 1, 1, T), (283, 1, 2, T + US), (423, -1, 1, T + 2 * US)]
srv.send_tcp([good])
span = (T - 10 * US, T + 10 * US)
BEFORE = answers(srv, [1, 2], *span, with_meta=True)


def unchanged():
    assert answers(srv, [1, 2], *span, with_meta=True) == BEFORE, "state changed"


def problem(status, ctype, body, code):
    assert status == code, (status, body)
    assert ctype.startswith("application/problem+json"), ctype
    for k in ("type", "title", "status", "detail"):
        assert k in body, body
    assert body["status"] == code


def udp_malformed():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    f = frame([(283, 1, 9, T + 5 * US)], 77)
    s.sendto(f[:-1], srv.udp)             # length does not match count
    a = parse_ack(s.recv(64))
    assert a["status"] == 2 and a["batch_id"] == 77, a
    bad = bytearray(frame([(283, 1, 9, T + 5 * US)], 78))
    bad[4:6] = struct.pack("<H", 0)        # count 0
    s.sendto(bytes(bad), srv.udp)
    a = parse_ack(s.recv(64))
    assert a["status"] == 2 and a["batch_id"] == 78, a
    s.sendto(b"GARBAGE" * 5, srv.udp)      # not ours: no ack, no effect
    s.close()
    unchanged()


def udp_bad_records():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    evs = [(283, 3, 20, T + 5 * US),                  # direction 3
           (283, 1, 21, now_us() + 3600 * US),        # an hour in the future
           (283, 1, 22, 253402300799 * US),           # year 9999
           (999999, 1, 23, T + 6 * US),               # unknown DPU
           (283, 1, 24, T - 30 * 86400 * US)]         # older than H - 7d
    s.sendto(frame(evs, 90), srv.udp)
    a = parse_ack(s.recv(64))
    s.close()
    assert a["status"] == 1 and a["refused"] == 5 and a["accepted"] == 0, a
    unchanged()


def tcp_malformed_closes():
    s = socket.create_connection(srv.tcp, timeout=5)
    s.sendall(b"FFE1" + struct.pack("<HHQ", 5000, 1, 55))  # count over 4096
    a = parse_ack(s.recv(24))
    assert a["status"] == 2, a
    assert s.recv(10) == b"", "connection should be closed after a malformed frame"
    s.close()
    unchanged()


def tcp_nothing_after_a_malformed_frame():
    """After a malformed frame the connection takes nothing more: one status-2 ack, then
    the close; a good frame sent behind it is not admitted."""
    s = socket.create_connection(srv.tcp, timeout=5)
    bad = b"FFE1" + struct.pack("<HHQ", 0, 1, 56)  # count 0
    s.sendall(bad + frame([(283, 1, 77, T + 7 * US)], 57))
    data = b""
    while True:
        chunk = s.recv(100)
        if not chunk:
            break
        data += chunk
    s.close()
    assert len(data) == 24 and parse_ack(data)["status"] == 2, data
    unchanged()


def tcp_garbage_after_good_frame():
    s = socket.create_connection(srv.tcp, timeout=5)
    s.sendall(frame([good[0]], 1) + b"XXXX" + b"\0" * 12)
    a1 = parse_ack(s.recv(24))
    a2 = parse_ack(s.recv(24))
    assert a1["status"] == 0 and a1["duplicates"] == 1, a1
    assert a2["status"] == 2, a2
    s.close()
    unchanged()


def bad_json():
    st, ct, body = srv.request("POST", "/v1/events", "{not json", {"Content-Type": "application/json"})
    problem(st, ct, body, 400)
    st, ct, body = srv.request("POST", "/v1/events", "42", {"Content-Type": "application/json"})
    problem(st, ct, body, 400)
    st, _, body = srv.request("POST", "/v1/events", [
        {"dpu_id": 283, "timestamp": "yesterday", "direction": 1},
        {"dpu_id": 283, "timestamp": iso(T), "direction": 0},
        {"dpu_id": "x", "timestamp": iso(T), "direction": 1},
        {"dpu_id": 283, "timestamp": "2018-02-30T00:00:00Z", "direction": 1},
    ])
    assert st == 200 and body["accepted"] == 0, body
    assert [x["index"] for x in body["refused"]] == [0, 1, 2, 3], body
    unchanged()


def bad_csv():
    st, ct, body = srv.request("POST", "/v1/events", "when,dir\n1,2\n", {"Content-Type": "text/csv"})
    problem(st, ct, body, 400)
    csv = "timestamp,direction,dpu_id,seq\n%s,1,283,1\nnot-a-time,1,283,5\n%s,7,283,6\n%s,1\n" % (
        iso(T), iso(T), iso(T))
    st, _, body = srv.request("POST", "/v1/events", csv, {"Content-Type": "text/csv"})
    assert st == 200 and body["duplicates"] == 1, body
    assert [x["line"] for x in body["refused"]] == [3, 4, 5], body
    unchanged()


def unknown_ids():
    for path in ("/v1/spaces/99/count", "/v1/spaces/99", "/v1/doorways/99", "/v1/dpus/12345",
                 "/v1/spaces/abc/count", "/v1/nothing"):
        st, ct, body = srv.request("GET", path)
        problem(st, ct, body, 404)
    st, ct, body = srv.request("PUT", "/v1/dpus/500", {"doorway_id": 1, "entry_space_id": 42})
    problem(st, ct, body, 400)
    unchanged()


def absurd_query_times():
    st, ct, body = srv.request("GET", "/v1/spaces/1/count?at=yesterday")
    problem(st, ct, body, 400)
    st, ct, body = srv.request("GET", "/v1/spaces/1/counts?start=%s&end=%s&interval=1s" %
                               (iso(T), iso(T + 86400 * US)))
    problem(st, ct, body, 400)  # over 10,000 buckets
    st, ct, body = srv.request("GET", "/v1/spaces/1/counts?start=%s&end=%s&interval=soon" %
                               (iso(T), iso(T + US)))
    problem(st, ct, body, 400)


def seven_fraction_digits():
    """SPEC allows 0-6 fraction digits; a 7th is refused everywhere, saying so, rather than
    truncated into a time the sender did not write."""
    t7 = iso(T)[:-1] + "1Z"  # "...ssssss1Z": 7 fraction digits
    why = "at most 6 fraction digits"
    st, ct, body = srv.request("GET", "/v1/spaces/1/count?at=" + t7)
    problem(st, ct, body, 400)
    assert why in body["detail"], body
    st, ct, body = srv.request("GET", "/v1/spaces/1/counts?start=%s&end=%s&interval=1h" %
                               (t7, iso(T + 3600 * US)))
    problem(st, ct, body, 400)
    assert why in body["detail"], body
    st, _, body = srv.request("POST", "/v1/events", [{"dpu_id": 283, "timestamp": t7,
                                                      "direction": 1, "seq": 30}])
    assert st == 200 and body["accepted"] == 0, body
    assert why in body["refused"][0]["reason"], body
    csv = "timestamp,direction,dpu_id,seq\n%s,1,283,31\n" % t7
    st, _, body = srv.request("POST", "/v1/events", csv, {"Content-Type": "text/csv"})
    assert st == 200 and body["accepted"] == 0, body
    assert body["refused"][0]["line"] == 2 and why in body["refused"][0]["reason"], body
    st, ct, body = srv.request("PUT", "/v1/dpus/283", {"doorway_id": 1, "entry_space_id": 1,
                                                       "effective_from": t7})
    problem(st, ct, body, 400)
    assert why in body["detail"], body
    p = run_footfall("--http", "%s:%d" % srv.http, "count", "Space A", "--at", t7)
    assert p.returncode != 0 and why in p.stderr, (p.returncode, p.stderr)
    unchanged()


def raw_http(head, body_chunks=()):
    """Sends a request by hand; returns the status line and body of the answer, even
    when the server answers before the body is all sent."""
    s = socket.create_connection(srv.http, timeout=10)
    s.sendall(head.encode())
    try:
        for c in body_chunks:
            s.sendall(c)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
                break
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return data


def oversized():
    announced = raw_http("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         "\r\nContent-Length: %d\r\n\r\n" % (17 << 20))
    assert announced.startswith(b"HTTP/1.1 413"), announced[:200]
    assert b"application/problem+json" in announced, announced[:300]
    piece = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
    streamed = raw_http("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        "\r\nTransfer-Encoding: chunked\r\n\r\n", [piece] * 18 + [b"0\r\n\r\n"])
    assert streamed.startswith(b"HTTP/1.1 413"), streamed[:200]
    unchanged()


def still_serving():
    assert srv.proc.poll() is None, "server died"
    assert srv.get("/healthz")["status"] == "ok"


for name, fn in [("UDP malformed frames acked with status 2", udp_malformed),
                 ("UDP bad records refused one by one", udp_bad_records),
                 ("TCP malformed frame: status 2, connection closed", tcp_malformed_closes),
                 ("TCP: nothing is read after a malformed frame", tcp_nothing_after_a_malformed_frame),
                 ("TCP garbage after a good frame", tcp_garbage_after_good_frame),
                 ("bad JSON: 400 or per-item refusals", bad_json),
                 ("bad CSV: 400 for the header, line numbers for rows", bad_csv),
                 ("unknown ids: 404 / 400", unknown_ids),
                 ("absurd query parameters: 400", absurd_query_times),
                 ("7 fraction digits: refused everywhere, saying so", seven_fraction_digits),
                 ("oversized body: 413", oversized),
                 ("server still healthy", still_serving)]:
    r.check(name, fn)
srv.close()
r.finish()
