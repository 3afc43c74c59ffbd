"""The original sample, end to end: the floor plan plus dpu_data.csv gives Space A = -2
and Space B = 8 with the 33 duplicates removed, and 11 / 8 with --dedup=off; the same
through `footfall import` (TCP) and through POST /v1/events as CSV."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import DATA, Runner, Server, run_footfall  # noqa: E402

CSV = os.path.join(DATA, "dpu_data.csv")
r = Runner("e2e sample")


def final(srv):
    a = srv.get("/v1/spaces/1/count")
    b = srv.get("/v1/spaces/2/count")
    return a["occupancy"], b["occupancy"]


def import_cli(dedup, expect, dups):
    srv = Server("--dedup", dedup)
    try:
        p = run_footfall("--tcp", "%s:%d" % srv.tcp, "--http", "%s:%d" % srv.http, "import", CSV)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        out = p.stdout + p.stderr
        assert "563" in out, out
        assert final(srv) == expect, final(srv)
        m = srv.get("/metrics")
        line = [x for x in m.splitlines() if x.startswith("footfall_events_duplicate_total")][0]
        assert int(line.split()[-1]) == dups, line
        # the answer survives a restart (the log is the durable record)
        srv.restart()
        assert final(srv) == expect, final(srv)
        a = srv.get("/v1/spaces/1/count")
        assert a["name"] == "Space A" and a["at"] == "2018-03-02T16:39:37.240Z", a
    finally:
        srv.close()


def import_http(dedup, expect, dups):
    srv = Server("--dedup", dedup)
    try:
        status, _, res = srv.request("POST", "/v1/events", open(CSV, "rb").read(),
                                     {"Content-Type": "text/csv"})
        assert status == 200, (status, res)
        assert res["duplicates"] == dups and res["refused"] == [], res
        assert res["accepted"] == 563 - dups, res
        assert final(srv) == expect, final(srv)
        # a second delivery of the whole file changes nothing when dedup is on
        if dedup == "on":
            status, _, res = srv.request("POST", "/v1/events", open(CSV, "rb").read(),
                                         {"Content-Type": "text/csv"})
            assert res["duplicates"] == 563 and res["accepted"] == 0, res
            assert final(srv) == expect
    finally:
        srv.close()


r.check("footfall import: A=-2 B=8, 33 duplicates", lambda: import_cli("on", (-2, 8), 33))
r.check("footfall import --dedup=off: A=11 B=8", lambda: import_cli("off", (11, 8), 0))
r.check("HTTP CSV: A=-2 B=8, 33 duplicates", lambda: import_http("on", (-2, 8), 33))
r.check("HTTP CSV --dedup=off: A=11 B=8", lambda: import_http("off", (11, 8), 0))
r.finish()
