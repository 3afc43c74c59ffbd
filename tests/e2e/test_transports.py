"""The central property over the real server: the same random event set delivered over
UDP, TCP, HTTP JSON and HTTP CSV, each in its own order and mix, gives identical
answers (counts at many T, buckets, every occupancy row) once all are in."""
import os
import random
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import (US, Runner, Server, answers, frame, now_us, parse_ack,  # noqa: E402
                       random_events)

r = Runner("e2e transports")
rng = random.Random(int(os.environ.get("FF_SEED", "20261128")))
T0 = now_us() - 6 * 3600 * US
SPAN = 4 * 3600 * US
EVENTS = random_events(rng, 3000, [283, 423], T0, SPAN)


def chunks(evs, size):
    return [evs[i:i + size] for i in range(0, len(evs), size)]


def deliver(srv, how, evs):
    """Returns the number of acks received."""
    if how == "udp":
        acks = srv.send_udp(chunks(evs, 64))
        assert all(a is not None and a["status"] in (0, 1) for a in acks), acks
        return len(acks)
    elif how == "tcp":
        acks = srv.send_tcp(chunks(evs, 100))
        assert len(acks) == len(chunks(evs, 100)) and all(a["status"] == 0 for a in acks), acks
        return len(acks)
    elif how == "json":
        for c in chunks(evs, 500):
            res = srv.post_json(c)
            assert res["refused"] == [], res
    elif how == "csv":
        for c in chunks(evs, 700):
            res = srv.post_csv(c)
            assert res["refused"] == [], res
    return 0


def ack_wait(srv, acked):
    """Every UDP and TCP ack sent is in footfall_ack_wait_seconds (retransmits get acks
    too, so at least as many as the sender saw), a histogram whose +Inf bucket is its
    count and whose longest wait is at most their sum."""
    m = srv.get("/metrics").splitlines()

    def value(name):
        return float(next(ln for ln in m if ln.startswith(name + " ")).split()[-1])

    buckets = [int(ln.split()[-1]) for ln in m if ln.startswith("footfall_ack_wait_seconds_bucket")]
    count = value("footfall_ack_wait_seconds_count")
    assert len(buckets) == 8 and buckets[-1] == count >= acked, (buckets, count, acked)
    assert all(a <= b for a, b in zip(buckets, buckets[1:])), buckets
    worst, total = value("footfall_ack_wait_max_seconds"), value("footfall_ack_wait_seconds_sum")
    assert (0 < worst <= total) if acked else (worst == total == 0), (worst, total)
    assert worst < 60, worst  # a wait, not a time since the start


def run_mix(plan):
    srv = Server("--settle", "10m")
    try:
        evs = list(EVENTS)
        rng.shuffle(evs)
        parts = chunks(evs, len(evs) // len(plan) + 1)
        acked = sum(deliver(srv, how, part) for how, part in zip(plan, parts))
        ack_wait(srv, acked)
        return answers(srv, [1, 2], T0 - US, T0 + SPAN + US)
    finally:
        srv.close()


results = {}
plans = [("udp",), ("tcp",), ("json",), ("csv",), ("udp", "tcp", "json", "csv"),
         ("csv", "json", "tcp", "udp")]
for plan in plans:
    r.check("deliver via %s" % "+".join(plan), lambda p=plan: results.__setitem__(p, run_mix(p)))


def same():
    base = results[plans[0]]
    assert base[1]["rows"], "no rows at all"
    for p in plans[1:]:
        assert results[p] == base, "answers differ for %s" % (p,)


r.check("identical answers over every transport and order", same)


def burst_acks():
    """Frames sent back to back reach the server in one recvmmsg and are taken in one
    ingest: each ack still counts only its own frame's records."""
    srv = Server("--settle", "1m")
    try:
        t = now_us() - 3 * 3600 * US
        f1 = [(283, 1, 1, t), (283, -1, 2, t + US), (423, 1, 1, t + 3600 * US)]
        f2 = [(423, 1, 2, t + 3601 * US), f1[0], (999999, 1, 1, t + 3601 * US),
              (423, 1, 2, t + 3601 * US)]
        f4 = [(283, 3, 3, t + 3601 * US), (283, 1, 4, now_us() + 3600 * US)]
        f5 = [(283, 1, 5, t + 10 * US), (423, -1, 3, t + 3602 * US)]  # the first is late
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        for i, f in [(1, f1), (2, f2), (4, f4), (5, f5)]:
            s.sendto(frame(f, i), srv.udp)
            if i == 2:
                s.sendto(frame([(283, 1, 9, t)], 3)[:-1], srv.udp)  # malformed
        acks = {}
        while len(acks) < 5:
            a = parse_ack(s.recv(64))
            acks[a["batch_id"]] = a
        s.close()
        got = {i: (a["status"], a["accepted"], a["duplicates"], a["late"], a["refused"])
               for i, a in acks.items()}
        want = {1: (0, 3, 0, 0, 0), 2: (1, 1, 2, 0, 1), 3: (2, 0, 0, 0, 0), 4: (1, 0, 0, 0, 2),
                5: (0, 2, 0, 1, 0)}
        assert got == want, got
    finally:
        srv.close()


r.check("a burst of frames: each ack counts its own records", burst_acks)


def burst_past_one_take():
    """40 frames of 1,000 records, queued while the server is stopped, come out of one
    recvmmsg: more records than one ingest call takes (16,384), so the frames are taken
    in three calls. Each later frame repeats 10 records of the first; every ack is exact,
    and so is the count of accepted events."""
    srv = Server("--settle", "1m")
    try:
        t = now_us() - 3 * 3600 * US
        per, nfr = 1000, 40
        frames = [[(283 if j % 2 else 423, 1, (k * per + j) & 0xffff, t + (k * per + j) * 1000)
                   for j in range(per)] for k in range(nfr)]
        for k in range(1, nfr):
            frames[k][:10] = frames[0][:10]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        grams = {k + 1: frame(f, k + 1) for k, f in enumerate(frames)}
        grams[999] = frame([(283, 1, 1, t)], 999)[:-3]  # malformed
        os.kill(srv.proc.pid, signal.SIGSTOP)
        try:
            for g in grams.values():
                s.sendto(g, srv.udp)
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        acks = {}
        for attempt in range(5):  # without CAP_NET_ADMIN the socket buffer may drop the tail
            try:
                while len(acks) < len(grams):
                    a = parse_ack(s.recv(64))
                    acks[a["batch_id"]] = a
            except socket.timeout:
                for i, g in grams.items():
                    if i not in acks:
                        s.sendto(g, srv.udp)
        s.close()
        assert len(acks) == nfr + 1, sorted(acks)
        for i, a in acks.items():
            got = (a["status"], a["accepted"], a["duplicates"], a["late"], a["refused"])
            want = ((2, 0, 0, 0, 0) if i == 999 else (0, per, 0, 0, 0) if i == 1
                    else (0, per - 10, 10, 0, 0))
            assert got == want, (i, got, want)
        m = srv.get("/metrics").splitlines()
        taken = next(ln for ln in m if ln.startswith("footfall_events_accepted_total "))
        assert float(taken.split()[-1]) == nfr * per - (nfr - 1) * 10, taken
    finally:
        srv.close()


r.check("a burst past one ingest call's records: every ack exact", burst_past_one_take)
r.finish()
