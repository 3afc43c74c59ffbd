"""/metrics and /healthz over more spaces than one loop turn counts (STATS_SPACES_PER_TURN
in net/api.c): the answer comes a few turns later and still counts every row, while
events and other requests go on between its turns."""
import http.client
import json
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import US, Runner, Server, now_us  # noqa: E402

SPACES = 10000  # two and a half turns' worth
r = Runner("e2e many spaces")
topo = {"spaces": [{"id": i, "name": "S%d" % i} for i in range(1, SPACES + 1)],
        "doorways": [{"id": i, "name": "D%d" % i} for i in range(1, SPACES + 1)],
        "dpus": [{"id": 1000 + i, "doorway_id": i, "entry_space_id": i}
                 for i in range(1, SPACES + 1)]}
fd, path = tempfile.mkstemp(prefix="ff-many-", suffix=".json")
with os.fdopen(fd, "w") as f:
    json.dump(topo, f)
srv = Server("--settle", "5m", topology=path)
T = now_us() - 60 * US  # within the settle window: every row stays pending


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("%s missing" % name)


def counts_every_space():
    # one event in every 7th space, two in every 1000th; the last space is the last step's
    evs = [(1000 + i, 1, 1, T + i) for i in range(1, SPACES + 1, 7)]
    evs += [(1000 + i, -1, 2, T + SPACES + i) for i in range(1000, SPACES + 1, 1000)]
    evs.append((1000 + SPACES, 1, 1, T + 3 * SPACES))
    # and on both sides of each step's boundary (4,096 spaces a step)
    evs += [(1000 + i, 1, 3, T + 4 * SPACES + i) for i in (4095, 4096, 4097, 4098, 8191, 8192,
                                                           8193, 8194)]
    res = srv.post_json(evs)
    assert res["accepted"] == len(evs), res
    h = srv.get("/healthz")
    assert h["status"] == "ok" and h["pending_rows"] == len(evs) and h["spaces"] == SPACES, h
    m = srv.get("/metrics")
    assert metric(m, "footfall_pending_rows") == len(evs), m[:400]
    assert metric(m, "footfall_settled_rows") == 0
    assert metric(m, "footfall_spaces") == SPACES


def others_answer_meanwhile():
    # scrapes on four connections at once, and events taken between their turns
    errors = []

    def scrape():
        try:
            c = http.client.HTTPConnection(*srv.http, timeout=30)
            for _ in range(5):
                c.request("GET", "/metrics")
                resp = c.getresponse()
                body = resp.read().decode()
                assert resp.status == 200 and "footfall_pending_rows" in body, body[:200]
            c.close()
        except Exception as e:  # reported below, in the main thread
            errors.append(e)

    before = metric(srv.get("/metrics"), "footfall_pending_rows")
    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for t in threads:
        t.start()
    evs = [(1000 + i, 1, 10 + k, T + 5 * SPACES + 10 * i + k)
           for k in range(3) for i in range(2, SPACES + 1, 500)]
    res = srv.post_json(evs)
    for t in threads:
        t.join()
    assert not errors, errors
    assert res["accepted"] == len(evs), res
    assert metric(srv.get("/metrics"), "footfall_pending_rows") == before + len(evs)


r.check("/healthz and /metrics count every space's rows", counts_every_space)
r.check("other requests and events go on between a scrape's turns", others_answer_meanwhile)
srv.close()
os.unlink(path)
r.finish()
