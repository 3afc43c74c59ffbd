"""The HTTP API of SPEC §4 as a client uses it: topology CRUD with its conflicts, the
token, versioned assignments, counts buckets, paged occupancy rows, DPU events,
/healthz and /metrics."""
import http.client
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import US, Runner, Server, iso, now_us, parse_iso  # noqa: E402

r = Runner("e2e http api")
srv = Server("--settle", "5m", "--token", "s3cret", "--metrics-per-space", topology=False)
AUTH = {"Authorization": "Bearer s3cret"}
T = now_us() - 2 * 3600 * US


def req(method, path, body=None, auth=True):
    return srv.request(method, path, body, AUTH if auth else None)


def token_needed():
    st, ct, body = req("POST", "/v1/spaces", {"name": "Lobby"}, auth=False)
    assert st == 401 and ct.startswith("application/problem+json"), (st, body)
    st, _, body = srv.request("POST", "/v1/spaces", {"name": "Lobby"},
                              {"Authorization": "Bearer wrong"})
    assert st == 401, body
    st, _, body = req("GET", "/v1/spaces", auth=False)
    assert st == 200 and body["spaces"] == [], body
    srv.conn = None
    import http.client
    c = http.client.HTTPConnection(*srv.http, timeout=10)
    c.request("POST", "/v1/spaces", body="{}", headers={"Content-Type": "application/json"})
    resp = c.getresponse()
    resp.read()
    assert resp.status == 401 and resp.getheader("WWW-Authenticate", "").startswith("Bearer"), resp.status
    c.request("DELETE", "/v1/events", headers=AUTH)
    resp = c.getresponse()
    resp.read()
    assert resp.status == 405 and resp.getheader("Allow") == "POST", resp.getheaders()
    c.close()
    st, _, body = srv.request("GET", "/v1/spaces/1", headers={"Authorization": "bearer s3cret"})
    assert st == 404, body  # lowercase scheme is accepted (a GET needs no token anyway)
    st, _, body = srv.request("DELETE", "/v1/spaces/1", headers={"Authorization": "bearer s3cret"})
    assert st == 404, body  # authorized with a lowercase scheme: then not found


def topology_crud():
    st, _, a = req("POST", "/v1/spaces", {"name": "Lobby", "capacity": 50})
    assert st == 201 and a["id"] == 1 and a["capacity"] == 50 and a["occupancy"] == 0, a
    st, _, b = req("PUT", "/v1/spaces/7", {"name": "Hall", "clamp_at_zero": True})
    assert st == 201 and b["id"] == 7 and b["clamp_at_zero"] is True, b
    st, _, x = req("POST", "/v1/spaces", {"name": "Lobby"})
    assert st == 409, x
    st, _, x = req("PUT", "/v1/spaces/7", {"name": ""})
    assert st == 400, x
    st, _, d = req("POST", "/v1/doorways", {"id": 3, "name": "Front door"})
    assert st == 201 and d["id"] == 3, d
    st, _, dpu = req("PUT", "/v1/dpus/42", {"doorway_id": 3, "entry_space_id": 1,
                                            "exit_space_id": 7})
    assert st == 201 and dpu["entry_space_id"] == 1 and dpu["assignments"][0]["effective_from"] is None, dpu
    st, _, x = req("PUT", "/v1/dpus/43", {"doorway_id": 3, "entry_space_id": 1, "exit_space_id": 1})
    assert st == 400, x
    st, _, x = req("DELETE", "/v1/spaces/7")
    assert st == 409, x  # referenced by DPU 42
    st, _, lst = req("GET", "/v1/spaces?name=Hall")
    assert [s["id"] for s in lst["spaces"]] == [7], lst
    st, _, x = req("POST", "/v1/spaces", {"name": "Temp"})
    st, _, _ = req("DELETE", "/v1/spaces/%d" % x["id"])
    assert st == 204
    st, _, _ = req("GET", "/v1/spaces/%d" % x["id"])
    assert st == 404


def events_and_queries():
    evs = [{"dpu_id": 42, "timestamp": iso(T + i * 60 * US), "direction": 1 if i % 3 else -1}
           for i in range(30)]
    st, _, res = req("POST", "/v1/events", evs)
    assert st == 200 and res["accepted"] == 30 and res["refused"] == [], res
    occ = sum(1 if i % 3 else -1 for i in range(30))
    c = srv.get("/v1/spaces/1/count")
    assert c["occupancy"] == occ and c["status"] == "pending" and c["revision"] == 0, c
    c = srv.get("/v1/spaces/1/count?at=%s" % iso(T + 90 * US))
    assert c["occupancy"] == 0 and parse_iso(c["at"]) == T + 90 * US, c
    hall = srv.get("/v1/spaces/7/count")
    assert hall["occupancy"] == 0, hall  # clamped: exits from an empty hall stay at 0
    k = srv.get("/v1/spaces/1/counts?start=%s&end=%s&interval=10m" % (iso(T), iso(T + 30 * 60 * US)))
    assert len(k["buckets"]) == 3, k
    assert sum(b["entrances"] for b in k["buckets"]) == 20
    assert sum(b["exits"] for b in k["buckets"]) == 10
    assert k["buckets"][-1]["occupancy_end"] == occ
    for b in k["buckets"]:
        assert b["min"] <= min(b["occupancy_start"], b["occupancy_end"]), b
        assert b["max"] >= max(b["occupancy_start"], b["occupancy_end"]), b
    rows, cursor = [], None
    while True:
        page = srv.get("/v1/spaces/1/occupancy?limit=7" + ("&cursor=" + cursor if cursor else ""))
        rows += page["rows"]
        cursor = page["next"]
        if not cursor:
            break
    assert len(rows) == 30 and rows[-1]["occupancy"] == occ, rows[-1]
    ev = srv.get("/v1/dpus/42/events")
    assert len(ev["events"]) == 30, ev


def assignment_versions():
    st, _, x = req("PUT", "/v1/dpus/42", {"doorway_id": 3, "entry_space_id": 7,
                                          "effective_from": iso(T - 3600 * US)})
    assert st == 409, x  # at or before the horizon H: settled history is never rewritten
    st, _, x = req("PUT", "/v1/dpus/42", {"doorway_id": 3, "entry_space_id": 7,
                                          "exit_space_id": 1})
    assert st == 200 and len(x["assignments"]) == 2, x
    a = srv.get("/v1/dpus/42/assignments")
    assert len(a["assignments"]) == 2 and a["assignments"][1]["effective_from"] is not None, a


def operations():
    st, _, sp = req("POST", "/v1/spaces", {"name": 'Odd "name"\\with\nnewline'})
    assert st == 201, sp
    m = srv.get("/metrics")
    assert 'footfall_space_occupancy{space="Odd \\"name\\"\\\\with\\nnewline"} 0' in m, \
        [x for x in m.splitlines() if "Odd" in x]
    st, _, _ = srv.request("PUT", "/healthz", "", AUTH)
    assert st == 405
    h = srv.get("/healthz")
    assert h["status"] == "ok", h
    m = srv.get("/metrics")
    for name in ("footfall_events_received_total{transport=\"http\"} 30",
                 "footfall_events_accepted_total 30", "footfall_pending_rows",
                 "footfall_horizon_lag_seconds", "footfall_log_bytes",
                 "footfall_segments_sealed_total", "footfall_segments_merged_total", "footfall_segments ",
                 "footfall_space_occupancy{space=\"Lobby\"}",
                 "footfall_events_refused_total{reason=\"future\"} 0"):
        assert name in m, name
    # The loop's turns and the log's syncs (30 events waited for some): Prometheus
    # histograms, cumulative, whose +Inf bucket is their count.
    for h in ("footfall_loop_busy", "footfall_log_sync"):
        def value(suffix):
            return next(ln for ln in m.splitlines() if ln.startswith(h + suffix)).split()[-1]
        buckets = [(ln.split('le="')[1].split('"')[0], int(ln.split()[-1]))
                   for ln in m.splitlines() if ln.startswith(h + "_seconds_bucket")]
        assert [b for b, _ in buckets] == ["0.0001", "0.001", "0.005", "0.025", "0.1", "0.5",
                                           "2.5", "+Inf"], buckets
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), buckets
        assert buckets[-1][1] == int(value("_seconds_count")) > 0, (h, buckets)
        worst, total = float(value("_max_seconds ")), float(value("_seconds_sum"))
        assert 0 < worst <= total, (h, worst, total)


def topology_document():
    doc = {"spaces": [{"id": 20, "name": "Annex"}], "doorways": [{"id": 21, "name": "Side"}],
           "dpus": [{"id": 99, "doorway_id": 21, "entry_space_id": 20}]}
    st, _, x = req("PUT", "/v1/topology", doc)
    assert st == 200, x
    st, _, x = req("PUT", "/v1/topology", doc)  # idempotent
    assert st == 200, x
    assert len(srv.get("/v1/dpus/99")["assignments"]) == 1
    st, ct, x = req("PUT", "/v1/topology", {"spaces": [{"id": 30}]})
    assert st == 400 and "spaces[0]" in x["detail"], x
    # a refused document applies nothing of itself
    st, _, x = req("PUT", "/v1/topology", {"spaces": [{"id": 50, "name": "Ghost"}],
                                           "dpus": [{"id": 98, "doorway_id": 21, "entry_space_id": 77}]})
    assert st == 400 and "dpus[0]" in x["detail"] and "77" in x["detail"], x
    assert req("GET", "/v1/spaces/50")[0] == 404, "half of a refused document was applied"
    st, _, x = req("PUT", "/v1/dpus/97", {"entry_space_id": 20})
    assert st == 400 and "doorway_id" in x["detail"], x
    # the document GET /v1/topology gives back changes nothing when PUT again, even after a
    # move (the entry without effective_from is the DPU's first version)
    st, _, x = req("PUT", "/v1/dpus/99", {"doorway_id": 21, "entry_space_id": 1})
    assert st == 200 and len(x["assignments"]) == 2, x
    before = srv.get("/v1/topology")
    st, _, x = req("PUT", "/v1/topology", before)
    assert st == 200, x
    assert srv.get("/v1/topology") == before, "re-applying the topology changed it"
    assert srv.get("/v1/dpus/99")["entry_space_id"] == 1
    st, _, x = req("POST", "/v1/spaces", {"name": "Annex"})
    assert st == 409 and "Annex" in x["detail"], x


def header_limit():
    st, _, body = srv.request("GET", "/v1/spaces", headers={"X-Pad": "a" * 6000})
    assert st == 200, (st, body)
    st, _, _ = srv.request("GET", "/v1/spaces", headers={"X-Pad": "a" * 9000})
    assert st == 431, st  # request headers are limited to 8 KiB (net/http.c)
    assert srv.get("/healthz")["status"] == "ok"


BIG_DOC = {"spaces": [{"id": 600, "name": "Turnstile hall"}], "doorways": [{"id": 601, "name": "Gate"}],
           "dpus": [{"id": 2000000 + i, "doorway_id": 601, "entry_space_id": 600}
                    for i in range(200000)]}


def large_bodies():
    # JSON bodies of 64 KiB or more are parsed on the thread pool (net/http.c): the
    # answers must be those of the loop's own parse.
    st, _, x = req("PUT", "/v1/topology", BIG_DOC)
    assert st == 200 and x["dpus"] >= 200000, x
    assert srv.get("/v1/dpus/2199999")["assignments"][0]["entry_space_id"] == 600
    text = json.dumps(BIG_DOC)[:100000]  # cut short: not JSON
    st, _, x = srv.request("PUT", "/v1/topology", text,
                           dict(AUTH, **{"Content-Type": "application/json"}))
    assert st == 400 and x["detail"].startswith("invalid JSON at line 1 column 100000"), x
    evs = [{"dpu_id": 2000000 + i, "direction": 1, "seq": 1, "timestamp": iso(T + i * US)}
           for i in range(1500)]
    assert len(json.dumps(evs)) > 64 * 1024
    st, _, x = req("POST", "/v1/events", evs)
    assert st == 200 and x["accepted"] == 1500 and x["refused"] == [], x
    st, _, x = req("POST", "/v1/events", evs[:5] + [{"dpu_id": 1}] + evs[5:])
    assert st == 200 and x["accepted"] == 0 and x["duplicates"] == 1500, x
    assert x["refused"][0]["index"] == 5, x["refused"][:2]
    assert srv.get("/v1/spaces/600/count")["occupancy"] == 1500
    # Several at once: one parse runs at a time, the others wait their turn, and each
    # gets its own answer.
    results = {}

    def post(k):
        c = http.client.HTTPConnection(*srv.http, timeout=60)
        body = json.dumps([dict(e, seq=2 + k) for e in evs])
        c.request("POST", "/v1/events", body, dict(AUTH, **{"Content-Type": "application/json"}))
        resp = c.getresponse()
        results[k] = (resp.status, json.loads(resp.read()))
        c.close()

    threads = [threading.Thread(target=post, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k][0] == 200 and results[k][1]["accepted"] == 1500 and
               results[k][1]["duplicates"] == 0 and results[k][1]["refused"] == []
               for k in range(4)), results
    assert srv.get("/v1/spaces/600/count")["occupancy"] == 5 * 1500


def slow_turn_told():
    # Applying a topology document is one turn of the loop (its JSON is parsed off it):
    # 200,000 new DPUs take well over 100 ms (0.24 s on the 2-core test VM), so footfalld
    # says so on stderr although it runs --quiet, and the histogram has it.
    doc = {"dpus": [dict(d, id=d["id"] + 1000000) for d in BIG_DOC["dpus"]]}
    st, _, x = req("PUT", "/v1/topology", doc)
    assert st == 200, x
    m = srv.get("/metrics")
    worst = float(next(ln for ln in m.splitlines()
                       if ln.startswith("footfall_loop_busy_max_seconds ")).split()[-1])
    assert worst >= 0.1, worst
    told = [ln for ln in srv.stderr().splitlines() if "one loop turn was busy" in ln]
    assert told and all("answers waited as long" in t for t in told), told


def accepted_total():
    m = srv.get("/metrics")
    return int(next(ln for ln in m.splitlines()
                    if ln.startswith("footfall_events_accepted_total ")).split()[-1])


def large_event_bodies():
    # Events are taken 16,384 a loop turn (net/api_events.c), other requests' turns
    # between: a CSV body of 300,000 of them gives the answer of one taken at once.
    lines = ["dpu_id,timestamp,direction,seq"]
    lines += ["%d,%s,%d,2" % (2000000 + i % 200000, iso(T + 1500 * US + i * 1000), 1 - 2 * (i & 1))
              for i in range(300000)]
    lines.insert(70000, "2000000,yesterday,1,2")  # line 70001, in the 5th step: refused
    before, taken = srv.get("/v1/spaces/600/count")["occupancy"], accepted_total()
    st, _, x = srv.request("POST", "/v1/events", "\n".join(lines) + "\n",
                           dict(AUTH, **{"Content-Type": "text/csv"}))
    assert st == 200 and x["accepted"] == 300000 and x["duplicates"] == 0, x
    assert [(f["index"], f["line"]) for f in x["refused"]] == [(69999, 70001)], x["refused"]
    assert accepted_total() == taken + 300000
    assert srv.get("/v1/spaces/600/count")["occupancy"] == before  # +1 -1 pairs
    st, _, x = srv.request("POST", "/v1/events", "\n".join(lines) + "\n",
                           dict(AUTH, **{"Content-Type": "text/csv"}))
    assert st == 200 and x["accepted"] == 0 and x["duplicates"] == 300000, x


for name, fn in [("token required for changes, not for reads", token_needed),
                 ("spaces, doorways, DPUs: create, conflict, delete", topology_crud),
                 ("events in, count / counts / occupancy / DPU events out", events_and_queries),
                 ("assignment versions", assignment_versions),
                 ("topology document applied idempotently", topology_document),
                 ("healthz and metrics", operations),
                 ("request headers up to 8 KiB, 431 past that", header_limit),
                 ("large JSON bodies, parsed off the loop", large_bodies),
                 ("a large body of events, taken a step a turn", large_event_bodies),
                 ("a loop turn over 100 ms is told on stderr", slow_turn_told)]:
    r.check(name, fn)
srv.close()


def stop_while_parsing():
    # SIGTERM while a large document is still being parsed on the thread pool: footfalld
    # stops cleanly without answering it (the client retries), and the document is
    # either wholly applied or not at all.
    s2 = Server(topology=False)
    try:
        body = json.dumps(BIG_DOC).encode()
        socks = [socket.create_connection(s2.http) for _ in range(3)]  # one parses, two wait
        for sock in socks:
            sock.sendall(b"PUT /v1/topology HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                         b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.3)
        assert s2.stop() == 0
        for sock in socks:
            sock.close()
        s2.start()
        assert s2.get("/healthz")["dpus"] in (0, 200000)
    finally:
        s2.close()


def stop_while_stepping():
    # SIGTERM while a large body of events is taken a step a turn: footfalld stops
    # cleanly without answering; what it took is durable, and the client's retry is
    # answered with the rest accepted and what was taken as duplicates.
    s2 = Server(topology=False)
    try:
        st, _, x = s2.request("PUT", "/v1/topology", BIG_DOC)
        assert st == 200, x
        body = "dpu_id,timestamp,direction,seq\n" + "".join(
            "%d,%s,1,3\n" % (2000000 + i % 200000, iso(T + i * 1000)) for i in range(300000))
        sock = socket.create_connection(s2.http)
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: text/csv"
                     b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body.encode())
        time.sleep(0.2)
        assert s2.stop() == 0
        sock.close()
        s2.start()
        taken = s2.get("/v1/spaces/600/count")["occupancy"]
        st, _, x = s2.request("POST", "/v1/events", body, {"Content-Type": "text/csv"})
        assert st == 200 and x["refused"] == [], x
        assert x["duplicates"] == taken and x["accepted"] == 300000 - taken, (taken, x)
        assert s2.get("/v1/spaces/600/count")["occupancy"] == 300000
    finally:
        s2.close()


r.check("SIGTERM while a large body is parsed", stop_while_parsing)
r.check("SIGTERM while a large body of events is taken", stop_while_stepping)
r.finish()
