"""`footfall archive` as an operator meets it: it moves old segments out of a running
server's data directory and of a stopped one; the server then answers 410 for archived
ranges (problem+json) and the same as before everywhere else, and with --archive-dir
exactly the same as before archiving (no row lost); bad input gets a clear usage error."""
import os
import random
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import US, Runner, Server, answers, iso, now_us, random_events, run_footfall  # noqa: E402

r = Runner("e2e archive")
rng = random.Random(5)
T0 = now_us() - 10 * 3600 * US
SPAN = 4 * 3600 * US
EVENTS = sorted(random_events(rng, 6000, [283, 423], T0, SPAN), key=lambda e: e[3])
ARGS = ["--settle", "1s", "--seal-rows", "100", "--seal-age", "1s", "--seal-lag", "0",
        "--max-lateness", "1h"]
state = {}


def metric(srv, name):
    m = srv.get("/metrics")
    return float([x for x in m.splitlines() if x.startswith(name + " ")][0].split()[-1])


def segfiles(d):
    return sorted(f for f in os.listdir(os.path.join(d, "segments")) if f.endswith(".ffs"))


def archive(*args):
    return run_footfall("archive", "--data-dir", state["srv"].data_dir, "--to", state["arc"],
                        "--max-lateness", "1h", *args)


def setup():
    srv = Server(*ARGS, quiet=False)  # its informational lines are checked
    state["srv"] = srv
    state["arc"] = tempfile.mkdtemp(prefix="ff-e2e-archive-")
    for half in (EVENTS[:3000], EVENTS[3000:]):
        srv.send_tcp([half[i:i + 200] for i in range(0, len(half), 200)])
        time.sleep(1.5)
    deadline = time.time() + 10
    while len(segfiles(srv.data_dir)) < 3 and time.time() < deadline:
        time.sleep(0.2)
    assert len(segfiles(srv.data_dir)) >= 3, segfiles(srv.data_dir)
    state["want"] = answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True)


def bad_input():
    d = state["srv"].data_dir
    p = run_footfall("archive", "--help")
    assert p.returncode == 0 and "--older-than" in p.stdout and "410" in p.stdout, p
    for args, want in [((), "--data-dir is required"),
                       (("--data-dir", d, "--to", state["arc"]), "--older-than is required"),
                       (("--data-dir", d, "--older-than", "180d"), "--to is required"),
                       (("--data-dir", d, "--older-than", "soon", "--to", state["arc"]),
                        "expected a duration"),
                       (("--data-dir", d, "--older-than", "-3d", "--to", state["arc"]),
                        "expected a duration"),
                       (("--data-dir", d + "-nope", "--older-than", "1d", "--to", state["arc"]),
                        "not a directory"),
                       (("--data-dir", d, "--older-than", "1d", "--to", state["arc"] + "-nope"),
                        "not a directory"),
                       (("--data-dir", d, "--older-than", "1d", "--to", d), "data directory"),
                       (("--data-dir", d, "--older-than", "1d", "--to", os.path.join(d, "segments")),
                        "data directory"),
                       (("--data-dir", d, "--older-than", "1d", "--to", state["arc"], "--bogus"),
                        "unknown argument")]:
        p = run_footfall("archive", *args)
        assert p.returncode == 2 and want in p.stderr, (args, p)
    assert len(os.listdir(state["arc"])) == 0


def dry_run():
    before = segfiles(state["srv"].data_dir)
    p = archive("--older-than", "8h", "--dry-run")
    assert p.returncode == 0 and "would archive seg-" in p.stdout, p
    assert "dry run: would archive" in p.stdout, p
    assert segfiles(state["srv"].data_dir) == before and not os.listdir(state["arc"])
    p = archive("--older-than", "3650d", "--dry-run")
    assert p.returncode == 0 and "would archive 0 segments" in p.stdout, p


def archive_while_running():
    srv = state["srv"]
    before = segfiles(srv.data_dir)
    t = time.time()
    p = archive("--older-than", "8h")
    state["archive_s"] = time.time() - t
    assert p.returncode == 0 and "archived seg-" in p.stdout, p
    moved = [l.split()[1] for l in p.stdout.splitlines() if l.startswith("archived seg-")]
    assert moved and moved == before[:len(moved)], (moved, before)
    for name in moved:
        assert os.path.exists(os.path.join(state["arc"], name))
        assert os.path.exists(os.path.join(srv.data_dir, "segments", name + ".archived"))
        assert name not in segfiles(srv.data_dir)
    state["moved"] = moved
    deadline = time.time() + 5  # the server notices the stubs within about a second
    while metric(srv, "footfall_segments_archived") < len(moved) and time.time() < deadline:
        time.sleep(0.1)
    assert metric(srv, "footfall_segments_archived") == len(moved)
    # each adoption is told on stderr: which segments, until when
    told = [l for l in srv.stderr().splitlines() if "adopted" in l]
    assert told and moved[0] in told[0] and moved[-1] in told[-1], (moved, told)
    n = sum(1 if "archived segment " in l else int(l.split()[1]) for l in told)
    assert n == len(moved) and all("archived until 20" in l for l in told), told
    check_410(srv)
    p = run_footfall("segments", "verify", state["arc"])
    assert p.returncode == 0, p
    p = run_footfall("segments", "ls", os.path.join(srv.data_dir, "segments"))
    stubs = [l.split()[0] for l in p.stdout.splitlines() if l.endswith(" archived")]
    assert p.returncode == 0 and stubs == [n + ".archived" for n in moved], p
    # the columns line up although a stub's name is longer than a live segment's
    lines = p.stdout.splitlines()
    assert len(lines) > len(stubs) + 1, p.stdout  # the header, stubs and live segments
    starts = {tuple(m.start() for m in re.finditer(r"(?<= )\S", l)) for l in lines}
    ends = {tuple(m.end() for m in re.finditer(r"\S(?= |$)", l))[3:] for l in lines}
    assert len(ends) == 1 and len({s[0] for s in starts}) == 1, p.stdout


def check_410(srv):
    upto = int(metric(srv, "footfall_archived_until_seconds") * US)
    assert T0 < upto < T0 + SPAN, (T0, upto)
    want = state["want"]
    st, ctype, body = srv.request("GET", "/v1/spaces/1/count?at=" + iso(T0 + 60 * US))
    assert st == 410 and ctype == "application/problem+json", (st, ctype, body)
    assert body["type"] == "urn:footfall:problem:archived" and body["status"] == 410, body
    assert "archived" in body["detail"] and "--archive-dir" in body["detail"], body
    for path in ["/v1/spaces/2/counts?start=%s&end=%s&interval=1h" % (iso(T0), iso(T0 + SPAN)),
                 "/v1/spaces/1/occupancy?limit=10", "/v1/dpus/283/events"]:
        st, _, body = srv.request("GET", path)
        assert st == 410 and body["status"] == 410, (path, st, body)
    # everything after the archived history answers as before
    for sid in (1, 2):
        assert srv.get("/v1/spaces/%d/count" % sid) == want[sid]["latest"]
        for c in want[sid]["counts"]:
            if c["at"] > iso(upto):
                assert srv.get("/v1/spaces/%d/count?at=%s" % (sid, c["at"])) == c, c
        after = [x for x in want[sid]["rows"] if x["timestamp"] > iso(upto)]
        got = srv.get("/v1/spaces/%d/occupancy?start=%s&limit=10000" % (sid, iso(upto + 1)))
        assert got["rows"] == after, "rows after the archive differ"
    # events older than the archived history are refused too_old
    res = srv.post_json([(283, 1, 7, T0 + 30 * US)])
    assert res["refused"] and res["refused"][0]["reason"] == "too_old", res
    n, t = 200, time.time()
    for _ in range(n):
        st, _, _ = srv.request("GET", "/v1/spaces/1/count?at=" + iso(T0 + 60 * US))
        assert st == 410
    state["latency_410_us"] = (time.time() - t) / n * 1e6
    t = time.time()
    for _ in range(n):
        st, _, _ = srv.request("GET", "/v1/spaces/1/count?at=" + iso(upto + 60 * US))
        assert st == 200
    state["latency_200_us"] = (time.time() - t) / n * 1e6


def archive_dir_answers_all():
    srv = state["srv"]
    srv.stop()
    srv.args += ["--archive-dir", state["arc"]]
    srv.start()
    assert metric(srv, "footfall_segments_archived") == len(state["moved"])
    got = answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True)
    assert got == state["want"], "with --archive-dir the answers differ from before archiving"


def damaged_archive_copy():
    """A damaged block in an --archive-dir copy: the answers that need it fail (500,
    naming the file), the metric counts them, and one line on stderr names the file."""
    srv = state["srv"]
    path = os.path.join(state["arc"], state["moved"][0])
    with open(path, "r+b") as f:
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 0xFF]))
    try:
        srv.restart()
        failed = 0
        for sid in (1, 2):
            for c in state["want"][sid]["counts"]:
                st, _, body = srv.request("GET", "/v1/spaces/%d/count?at=%s" % (sid, c["at"]))
                if st != 200:
                    assert st == 500 and path in body["detail"], (st, body)
                    failed += 1
        assert failed, "nothing read the damaged block"
        assert metric(srv, "footfall_segment_read_errors_total") == failed
        told = [l for l in srv.stderr().splitlines() if "corrupt at offset" in l]
        assert len(told) == 1 and path in told[0], told
    finally:
        with open(path, "r+b") as f:
            f.seek(200)
            f.write(b)
        srv.restart()
    assert answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True) == state["want"]


def archive_while_stopped():
    srv = state["srv"]
    srv.stop()
    srv.args = srv.args[:-2]  # without --archive-dir: the stubs, 410
    p = archive("--older-than", "7h")
    assert p.returncode == 0, p
    assert "already archived" in p.stdout, p
    srv.start()
    assert metric(srv, "footfall_segments_archived") >= len(state["moved"])
    check_410(srv)
    srv.stop()
    srv.args += ["--archive-dir", state["arc"]]
    srv.start()
    got = answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True)
    assert got == state["want"], "no row may be lost"
    p = archive("--older-than", "7h")  # nothing more is old enough: a no-op
    assert p.returncode == 0 and "archived 0 segments" in p.stdout, p


def missing_archive_dir():
    srv = state["srv"]
    srv.stop()
    empty = tempfile.mkdtemp(prefix="ff-e2e-empty-")
    srv.args[-1] = empty
    try:
        srv.start()
    except RuntimeError as e:
        assert empty in str(e), e
    else:
        raise AssertionError("footfalld started without the archived segments")
    finally:
        os.rmdir(empty)
    srv.args = srv.args[:-2]
    srv.start()


def archive_under_load():
    """The tool runs again and again while events stream in and the server seals and
    merges: afterwards, with --archive-dir, the answers equal those of a server that
    took the same events and never archived."""
    import threading
    rng2 = random.Random(8)
    t0 = now_us() - 10 * 3600 * US
    evs = sorted(random_events(rng2, 8000, [283, 423], t0, 4 * 3600 * US), key=lambda e: e[3])
    batches = [evs[i:i + 100] for i in range(0, len(evs), 100)]
    srv = Server(*ARGS)
    arc = tempfile.mkdtemp(prefix="ff-e2e-archive-load-")
    runs, stop = [], threading.Event()

    def archiver():
        while not stop.is_set():
            p = run_footfall("archive", "--data-dir", srv.data_dir, "--to", arc,
                             "--max-lateness", "1h", "--older-than", "6h")
            runs.append(p)
            time.sleep(0.05)
    th = threading.Thread(target=archiver)
    th.start()
    try:
        for i in range(0, len(batches), 4):
            acks = srv.send_tcp(batches[i:i + 4])
            assert all(a["status"] == 0 for a in acks), acks
            time.sleep(0.05)
        time.sleep(1.5)
    finally:
        stop.set()
        th.join()
    bad = [p for p in runs if p.returncode != 0]
    assert not bad, bad[0]
    moved = sum(int(l.split()[1]) for p in runs for l in p.stdout.splitlines()
                if l.startswith("archived ") and l.split()[1].isdigit())
    assert moved >= 2, [p.stdout for p in runs][-3:]
    skipped = sum(p.stdout.count("skipped (merged") for p in runs)
    print("     under load: %d runs, %d segments archived, %d skipped (merged meanwhile)" %
          (len(runs), moved, skipped), flush=True)
    try:
        srv.stop()
        srv.args += ["--archive-dir", arc]
        srv.start()
        got = answers(srv, [1, 2], t0 - US, t0 + 4 * 3600 * US + US)
        ref = Server(*ARGS)
        try:
            ref.send_tcp(batches)
            time.sleep(1.5)
            want = answers(ref, [1, 2], t0 - US, t0 + 4 * 3600 * US + US)
        finally:
            ref.close()
        assert got == want, "archiving under load lost or changed rows"
    finally:
        srv.close()
        shutil.rmtree(arc, ignore_errors=True)


for name, fn in [("a server seals several segments", setup),
                 ("bad input: usage errors, exit 2, nothing moved", bad_input),
                 ("--dry-run lists and moves nothing", dry_run),
                 ("archive while footfalld runs: 410 inside, same answers outside", archive_while_running),
                 ("--archive-dir answers exactly as before archiving", archive_dir_answers_all),
                 ("a damaged block in an --archive-dir copy: 500, counted, logged once",
                  damaged_archive_copy),
                 ("archive while stopped; --archive-dir still loses no row", archive_while_stopped),
                 ("--archive-dir without the segments refuses to start, naming it", missing_archive_dir),
                 ("archive again and again under load: no row lost", archive_under_load)]:
    r.check(name, fn)
    if r.failed:
        break
if "srv" in state:
    state["srv"].close()
    shutil.rmtree(state["arc"], ignore_errors=True)
print("figures: archive run %.3f s; latency through Python's client: 410 %.0f us, 200 %.0f us" %
      (state.get("archive_s", 0), state.get("latency_410_us", 0), state.get("latency_200_us", 0)))
r.finish()
