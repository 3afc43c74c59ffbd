"""Sealed segments as a user meets them: footfalld seals settled history into segment
files, answers identically from them, across a restart; `footfall segments ls|dump|
verify` read them offline; a damaged segment is named by verify and by footfalld, which
refuses to start rather than answer from it."""
import csv
import io
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import US, Runner, Server, answers, now_us, parse_iso, random_events, run_footfall  # noqa: E402

r = Runner("e2e segments")
rng = random.Random(11)
T0 = now_us() - 5 * 3600 * US
SPAN = 4 * 3600 * US
EVENTS = random_events(rng, 6000, [283, 423], T0, SPAN)
BATCHES = [EVENTS[i:i + 200] for i in range(0, len(EVENTS), 200)]
state = {}


def segdir(srv):
    return os.path.join(srv.data_dir, "segments")


def seal_and_answer():
    srv = Server("--settle", "1s", "--seal-rows", "500")
    state["srv"] = srv
    srv.send_tcp(BATCHES)
    time.sleep(1.8)  # idle advance: everything settles, the tick seals
    m = srv.get("/metrics")
    sealed = int([x for x in m.splitlines() if x.startswith("footfall_segments_sealed_total")][0].split()[-1])
    assert sealed >= 1, m
    assert os.listdir(segdir(srv)), "no segment files"
    state["answers"] = answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True)
    ref = Server("--settle", "1s", data_dir=None)  # never seals: same answers from memory
    try:
        ref.send_tcp(BATCHES)
        time.sleep(1.3)
        want = answers(ref, [1, 2], T0 - US, T0 + SPAN + US)
    finally:
        ref.close()
    got = answers(srv, [1, 2], T0 - US, T0 + SPAN + US)
    assert got == want, "answers from segments differ from answers from memory"


def restart_identical():
    srv = state["srv"]
    srv.restart()
    assert answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True) == state["answers"]


def offline_tools():
    srv = state["srv"]
    p = run_footfall("segments", "ls", segdir(srv))
    assert p.returncode == 0 and "seg-" in p.stdout, p
    p = run_footfall("segments", "verify", segdir(srv))
    assert p.returncode == 0, p
    p = run_footfall("segments", "dump", segdir(srv), "--space", "1", "--format", "csv")
    assert p.returncode == 0, p
    dumped = [(parse_iso(x["timestamp"]), int(x["dpu_id"]), int(x["occupancy"]))
              for x in csv.DictReader(io.StringIO(p.stdout))]
    rows = [(parse_iso(x["timestamp"]), x["dpu_id"], x["occupancy"])
            for x in state["answers"][1]["rows"] if x["status"] == "settled"]
    assert dumped and dumped == rows[:len(dumped)], (dumped[:3], rows[:3])
    p = run_footfall("segments", "verify", "--help")
    assert p.returncode == 0 and "verify" in p.stdout


def damaged_segment():
    srv = state["srv"]
    srv.stop()
    name = sorted(f for f in os.listdir(segdir(srv)) if f.endswith(".ffs"))[0]
    path = os.path.join(segdir(srv), name)
    with open(path, "r+b") as f:
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 0xFF]))
    p = run_footfall("segments", "verify", segdir(srv))
    assert p.returncode == 1 and name in p.stdout + p.stderr, p
    # one line per file, naming it once: "CORRUPT FILE: reason", "ok FILE (N rows)"
    corrupt = [l for l in p.stdout.splitlines() if l.startswith("CORRUPT ")]
    assert len(corrupt) == 1 and corrupt[0].startswith("CORRUPT %s: " % path), p.stdout
    assert "offset" in corrupt[0], corrupt
    for line in p.stdout.splitlines()[:-1]:
        assert line.count("seg-") == 1, p.stdout
    with tempfile.TemporaryDirectory() as d:  # an error of the open, not of a block
        junk = os.path.join(d, "junk.ffs")
        with open(junk, "wb") as f:
            f.write(b"not a segment" * 100)
        p = run_footfall("segments", "verify", d)
        assert p.returncode == 1 and p.stdout.count(junk) == 1, p.stdout
        assert p.stdout.startswith("CORRUPT %s: not a segment" % junk), p.stdout
    # footfalld opens segments checking header and footer; every block is checked when
    # it is read: a query that needs the damaged block fails, none answers wrongly
    try:
        srv.start()
    except RuntimeError as e:
        assert name in str(e), e
    else:
        failed = 0
        want = state["answers"][1]
        for c in want["counts"]:
            st, _, body = srv.request("GET", "/v1/spaces/1/count?at=" + c["at"])
            if st == 200:
                assert body == c, (body, c)
            else:
                assert st >= 500 and body["title"], (st, body)
                assert name in body["detail"] and "offset" in body["detail"], body
                failed += 1
        st, _, body = srv.request("GET", "/v1/spaces/1/occupancy?limit=10000")
        assert st >= 500 or body["rows"] == want["rows"], st
        failed += st >= 500
        assert failed, "nothing read the damaged block"
        # the operator learns it too: counted, and logged once (even with --quiet)
        assert metric(srv, "footfall_segment_read_errors_total") == failed
        told = [l for l in srv.stderr().splitlines() if "corrupt at offset" in l]
        assert len(told) == 1 and path in told[0], told
        srv.stop()
    with open(path, "r+b") as f:  # repaired, it starts again
        f.seek(200)
        f.write(b)
    srv.start()
    assert answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True) == state["answers"]


def metric(srv, name):
    m = srv.get("/metrics")
    return int([x for x in m.splitlines() if x.startswith(name + " ")][0].split()[-1])


def log_released():
    """Log files whose events are all sealed are removed; a kill -9 and a restart from
    what is left -- checkpoint, segments, the last log file -- answer identically."""
    srv = Server("--settle", "1s", "--seal-rows", "500", "--seal-age", "1s", "--seal-lag", "0",
                 "--log-file-bytes", "8192")
    try:
        # --topology was snapshotted at start: the checkpoint names it, no seal needed
        assert [f for f in os.listdir(srv.data_dir) if f.startswith("topology-")], \
            os.listdir(srv.data_dir)
        assert os.path.exists(os.path.join(srv.data_dir, "checkpoint.ffc"))
        srv.send_tcp(BATCHES)
        logs = lambda: sorted(f for f in os.listdir(srv.data_dir) if f.startswith("log-"))
        time.sleep(1.8)
        deadline = time.time() + 10
        while metric(srv, "footfall_log_files_released_total") < 10 and time.time() < deadline:
            time.sleep(0.2)
        released = metric(srv, "footfall_log_files_released_total")
        assert released >= 10, "only %d log files released" % released
        assert len(logs()) <= 3, logs()
        assert metric(srv, "footfall_log_files") == len(logs())
        want = answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True)
        assert want == state["answers"], "answers differ from the first server's"
        srv.kill9()
        srv.start()
        assert answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True) == want
        srv.send_tcp(BATCHES[:5])  # all duplicates now: the sealed rows still dedup them
        assert answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True) == want
    finally:
        srv.close()


for name, fn in [("footfalld seals; answers equal those from memory", seal_and_answer),
                 ("log files are released once sealed; kill -9 restart is identical", log_released),
                 ("restart answers identically from segments + log", restart_identical),
                 ("footfall segments ls, dump, verify", offline_tools),
                 ("a damaged segment is named by verify and never read", damaged_segment)]:
    r.check(name, fn)
if "srv" in state:
    state["srv"].close()
r.finish()
