"""kill -9 of the real server: in the middle of ingest, then restart. Every event whose
frame was acknowledged is there after the restart, and the answers are identical to
those of the server before the crash (and to a server that never crashed)."""
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import (US, Runner, Server, answers, frame, now_us, parse_ack,  # noqa: E402
                       parse_iso, random_events)

r = Runner("e2e crash")
rng = random.Random(int(os.environ.get("FF_SEED", "7")))
T0 = now_us() - 3 * 3600 * US
SPAN = 2 * 3600 * US
EVENTS = random_events(rng, 40000, [283, 423], T0, SPAN, dup_frac=0)
BATCHES = [EVENTS[i:i + 50] for i in range(0, len(EVENTS), 50)]


def stream_until_killed(srv, acked):
    """Streams every batch over TCP, recording acked batch ids, while another thread
    kills the server with SIGKILL after a random delay."""
    s = socket.create_connection(srv.tcp, timeout=10)
    done = threading.Event()

    def reader():
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 24:
                a = parse_ack(buf[:24])
                buf = buf[24:]
                if a["status"] in (0, 1):
                    acked.add(a["batch_id"])
        done.set()

    t = threading.Thread(target=reader)
    t.start()
    killer = threading.Timer(0.05 + rng.random() * 0.3, srv.kill9)
    killer.start()
    try:
        for i, b in enumerate(BATCHES):
            s.sendall(frame(b, i + 1))
    except OSError:
        pass
    killer.join()
    done.wait(10)
    s.close()
    t.join()


def has_events(srv, batch_ids):
    """Every event of the acked batches is in its DPU's event list."""
    have = set()
    for d in (283, 423):
        for e in srv.get("/v1/dpus/%d/events" % d)["events"]:
            have.add((d, e["direction"], e["seq"], parse_iso(e["timestamp"])))
    missing = [ev for bid in batch_ids for ev in BATCHES[bid - 1] if ev not in have]
    assert not missing, "%d acknowledged events lost, e.g. %s" % (len(missing), missing[:3])


def crash_mid_ingest():
    srv = Server("--settle", "5m")
    try:
        acked = set()
        stream_until_killed(srv, acked)
        srv.start()
        has_events(srv, acked)
        # finish the delivery (retransmitting everything is safe), then compare with a
        # server that never crashed
        acks = srv.send_tcp(BATCHES)
        assert all(a["status"] == 0 for a in acks)
        got = answers(srv, [1, 2], T0, T0 + SPAN)
        return got
    finally:
        srv.close()


reference = {}


def clean_reference():
    srv = Server("--settle", "5m")
    try:
        srv.send_tcp(BATCHES)
        reference["a"] = answers(srv, [1, 2], T0, T0 + SPAN)
    finally:
        srv.close()


r.check("reference server without a crash", clean_reference)


def crash_and_compare():
    got = crash_mid_ingest()
    assert got == reference["a"], "answers differ from the server that never crashed"


for i in range(3):
    r.check("kill -9 mid-ingest #%d: nothing acknowledged lost, answers identical" % (i + 1),
            crash_and_compare)


def restart_identical():
    srv = Server("--settle", "5m")
    try:
        srv.send_tcp(BATCHES[:300])
        before = answers(srv, [1, 2], T0, T0 + SPAN, with_meta=True)
        srv.kill9()
        srv.start()
        after = answers(srv, [1, 2], T0, T0 + SPAN, with_meta=True)
        assert before == after, "answers changed across kill -9"
    finally:
        srv.close()


r.check("kill -9 when idle: identical answers incl. status and revision", restart_identical)


def damage_in_the_middle_refuses():
    """Damage followed by acknowledged records is not a torn tail: footfalld refuses to
    start, names the file, and changes nothing; repaired, it starts with everything."""
    srv = Server("--settle", "5m")
    try:
        srv.send_tcp(BATCHES[:200])
        srv.stop()
        log = [f for f in os.listdir(srv.data_dir) if f.endswith(".ffl")][0]
        path = os.path.join(srv.data_dir, log)
        with open(path, "r+b") as f:
            f.seek(100000)
            orig = f.read(10)
            f.seek(100000)
            f.write(bytes(b ^ 0x5A for b in orig))
        with open(path, "rb") as f:
            damaged = f.read()
        try:
            srv.start()
            raise AssertionError("footfalld started on a log damaged in the middle")
        except RuntimeError as e:
            assert log in str(e) and "not a torn tail" in str(e), e
        with open(path, "rb") as f:
            assert f.read() == damaged, "the refused log was changed"
        with open(path, "r+b") as f:
            f.seek(100000)
            f.write(orig)
        srv.start()
        n = sum(len(srv.get("/v1/dpus/%d/events" % d)["events"]) for d in (283, 423))
        assert n == sum(len(b) for b in BATCHES[:200]), n
    finally:
        srv.close()


r.check("damage in the middle of the log: refused, named, nothing cut", damage_in_the_middle_refuses)
r.finish()
