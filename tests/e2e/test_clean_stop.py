"""A clean stop writes a checkpoint: after SIGTERM, footfalld commits what it sealed and
the checkpoint does not name yet (ff_engine_commit at the end of ff_server_run), so the
restart replays nothing from the log and answers the same.

To have something uncommitted at the stop every time, the commit jobs that follow the
seals are made to fail while footfalld runs (the checkpoint's temp file name is taken by
a directory; they are retried every tick), and the directory goes right before the
SIGTERM: only the commit at the stop can then write the checkpoint."""
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import US, Runner, Server, answers, now_us, random_events  # noqa: E402

r = Runner("e2e clean stop")
rng = random.Random(13)
T0 = now_us() - 5 * 3600 * US
SPAN = 4 * 3600 * US
EVENTS = random_events(rng, 3000, [283, 423], T0, SPAN)
BATCHES = [EVENTS[i:i + 200] for i in range(0, len(EVENTS), 200)]
RECOVERED = re.compile(r"footfalld: recovered (\d+) segments, then (\d+) events and (\d+) "
                       r"topology changes from \d+ log files \((\d+) events already sealed\)")


def metric(srv, name):
    lines = [x for x in srv.get("/metrics").splitlines() if x.startswith(name + " ")]
    return int(float(lines[0].split()[-1]))


def wait_for(what, cond, timeout=60):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.1)


def clean_stop_commits_and_restart_replays_nothing():
    srv = Server("--settle", "1s", "--seal-rows", "500", "--seal-age", "1s", "--seal-lag", "0s",
                 quiet=False)
    try:
        blocker = os.path.join(srv.data_dir, "checkpoint.ffc.tmp")
        os.mkdir(blocker)  # every commit job fails from now on
        acks = srv.send_tcp(BATCHES)
        assert all(a["status"] == 0 for a in acks), acks
        # idle advance: everything settles and is sealed; the seals' commits fail
        wait_for("everything sealed", lambda: metric(srv, "footfall_segments_sealed_total") >= 1
                 and metric(srv, "footfall_pending_rows") == 0
                 and metric(srv, "footfall_settled_rows") == 0)
        wait_for("a failed commit", lambda: "checkpoint failed (retried later)" in srv.stderr())
        # retried every tick (100 ms), counted every time, told once in 10 s
        failed = metric(srv, "footfall_seal_errors_total")
        wait_for("more failed commits", lambda: metric(srv, "footfall_seal_errors_total") >= failed + 5)
        told = srv.stderr().count("checkpoint failed (retried later)")
        assert told == 1, srv.stderr()[-2000:]
        assert "checkpoint.ffc.tmp: Is a directory" in srv.stderr(), srv.stderr()[-2000:]  # the file
        want = answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True)
        os.rmdir(blocker)
        assert srv.stop() == 0, srv.stderr()[-2000:]
        assert "final checkpoint failed" not in srv.stderr(), srv.stderr()[-2000:]

        srv.start()
        found = RECOVERED.findall(srv.stderr())
        assert len(found) == 2, srv.stderr()[-2000:]
        segments, replayed, _, sealed = map(int, found[-1])
        assert replayed == 0, "the restart replayed %d events from the log: no checkpoint " \
            "was written at the stop" % replayed
        assert segments >= 1 and sealed > 0, found[-1]
        assert answers(srv, [1, 2], T0 - US, T0 + SPAN + US, with_meta=True) == want
    finally:
        srv.close()


def thread_nice(pid):
    """{thread name: [nice, ...]} of a process and the main thread's nice (Linux /proc)."""
    out, main = {}, None
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            st = f.read()
        name = st[st.index("(") + 1:st.rindex(")")]
        nice = int(st[st.rindex(")") + 2:].split()[16])  # field 19 (fields from 3, state)
        out.setdefault(name, []).append(nice)
        if int(tid) == pid:
            main = nice
    return out, main


def seals_run_on_a_lower_priority_thread():
    srv = Server("--settle", "1s", "--seal-rows", "500", "--seal-age", "1s", "--seal-lag", "0s")
    try:
        acks = srv.send_tcp(BATCHES)
        assert all(a["status"] == 0 for a in acks), acks
        wait_for("a seal", lambda: metric(srv, "footfall_segments_sealed_total") >= 1)
        nice, main = thread_nice(srv.proc.pid)
        assert nice.get("ff-seal") == [10], nice  # one seal thread, at nice +10
        assert main == 0, (main, nice)            # the loop (the main thread) is not lowered
    finally:
        srv.close()


r.check("a clean stop writes a checkpoint: the restart replays nothing, answers the same",
        clean_stop_commits_and_restart_replays_nothing)
r.check("seal jobs run on the thread ff-seal at nice +10, the loop at 0",
        seals_run_on_a_lower_priority_thread)
r.finish()
