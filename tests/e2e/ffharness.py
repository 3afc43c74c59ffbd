"""Shared pieces of footfall's end-to-end tests: start the real footfalld on loopback
ports it picks itself, talk to it over UDP, TCP and HTTP, stop it politely or with
kill -9. Standard library only.

Each test file is a plain script run by ctest; it prints one line per check and a
closing 'N passed, M failed' line, and exits non-zero on any failure.
"""
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import http.client
from datetime import datetime, timezone

BUILD = os.environ.get("FF_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
DATA = os.environ.get("FF_TEST_DATA", os.path.join(os.path.dirname(__file__), "..", "data"))
FOOTFALLD = os.path.join(BUILD, "footfalld")
FOOTFALL = os.path.join(BUILD, "footfall")

US = 1_000_000


def now_us():
    return int(time.time() * US)


def iso(us):
    dt = datetime.fromtimestamp(us // US, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%06dZ" % (us % US)


def parse_iso(s):
    base, frac = s.rstrip("Z").split(".") if "." in s else (s.rstrip("Z"), "0")
    dt = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * US + int((frac + "000000")[:6])


# ---- wire protocol (SPEC §3) ---------------------------------------------------------

def frame(events, batch_id, ack=True):
    """events: iterable of (dpu_id, direction, seq, ts_us)."""
    events = list(events)
    out = struct.pack("<4sHHQ", b"FFE1", len(events), 1 if ack else 0, batch_id)
    for dpu, d, seq, ts in events:
        out += struct.pack("<IbBHq", dpu, d, 0, seq, ts)
    return out


def parse_ack(b):
    magic, status, _r, batch, acc, dup, late, ref = struct.unpack("<4sHHQHHHH", b)
    assert magic == b"FFA1", magic
    return dict(status=status, batch_id=batch, accepted=acc, duplicates=dup, late=late,
                refused=ref)


class Server:
    """A footfalld on ephemeral loopback ports with its own data directory."""

    def __init__(self, *args, data_dir=None, topology=True, quiet=True):
        self.own_dir = data_dir is None
        self.quiet = quiet
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="ff-e2e-")
        self.args = list(args)
        if topology is True:
            self.args += ["--topology", os.path.join(DATA, "floorplan.json")]
        elif topology:
            self.args += ["--topology", topology]
        self.proc = None
        self.start()

    def start(self):
        cmd = [FOOTFALLD, "--data-dir", self.data_dir, "--udp", "127.0.0.1:0",
               "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"] + \
            (["--quiet"] if self.quiet else []) + self.args
        self.errlog = open(os.path.join(self.data_dir, "..", os.path.basename(self.data_dir) +
                                        ".stderr"), "a+")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errlog, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("footfalld: ready"):
            self.proc.wait()
            raise RuntimeError("footfalld did not start: %r %s" % (line, self.stderr()))
        parts = dict(p.split("=", 1) for p in line.split()[2:])
        self.udp = self._addr(parts["udp"])
        self.tcp = self._addr(parts["tcp"])
        self.http = self._addr(parts["http"])
        self.conn = None

    @staticmethod
    def _addr(s):
        host, port = s.rsplit(":", 1)
        return host, int(port)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        rc = self.proc.returncode if self.proc else None
        if self.conn:
            self.conn.close()
            self.conn = None
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        self.start()

    def stderr(self):
        self.errlog.flush()
        self.errlog.seek(0)
        return self.errlog.read()

    def close(self):
        """Stops the server; raises if it ever crashed or a sanitizer spoke."""
        rc = self.stop()
        err = self.stderr()
        if self.proc:
            self.proc.stdout.close()
        self.errlog.close()
        os.unlink(self.errlog.name)
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        bad = [m for m in ("ERROR: AddressSanitizer", "runtime error:", "panic", "LeakSanitizer")
               if m in err]
        if bad or rc not in (0, None):
            raise AssertionError("footfalld exited %s: %s" % (rc, err[-4000:]))

    # ---- HTTP ----
    def request(self, method, path, body=None, headers=None, raw=False):
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*self.http, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        ctype = resp.getheader("Content-Type", "")
        if raw or not data:
            return resp.status, ctype, data
        if "json" in ctype:
            return resp.status, ctype, json.loads(data)
        return resp.status, ctype, data.decode()

    def get(self, path):
        status, _, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    # ---- ingest ----
    def send_tcp(self, batches, ack=True):
        """Sends frames on one connection; returns the acks in order."""
        s = socket.create_connection(self.tcp, timeout=120)  # generous: sanitizer builds on a busy machine
        try:
            for i, b in enumerate(batches):
                s.sendall(frame(b, i + 1, ack))
            acks = []
            if ack:
                buf = b""
                while len(acks) < len(batches):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    while len(buf) >= 24:
                        acks.append(parse_ack(buf[:24]))
                        buf = buf[24:]
            return acks
        finally:
            s.close()

    def send_udp(self, batches, retries=20):
        """Sends every batch over UDP until acked (retransmitting); returns the acks."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        acks = {}
        try:
            for attempt in range(retries):
                todo = [i for i in range(len(batches)) if i + 1 not in acks]
                if not todo:
                    break
                for i in todo:
                    s.sendto(frame(batches[i], i + 1), self.udp)
                deadline = time.time() + 0.5 + 0.001 * len(todo)
                while time.time() < deadline and len(acks) < len(batches):
                    try:
                        a = parse_ack(s.recv(64))
                    except socket.timeout:
                        continue
                    acks.setdefault(a["batch_id"], a)
            return [acks.get(i + 1) for i in range(len(batches))]
        finally:
            s.close()

    def post_json(self, events):
        body = [{"dpu_id": d, "direction": di, "seq": sq, "timestamp": iso(ts)}
                for d, di, sq, ts in events]
        status, _, res = self.request("POST", "/v1/events", body)
        assert status == 200, (status, res)
        return res

    def post_csv(self, events):
        lines = ["dpu_id,timestamp,direction,seq"]
        lines += ["%d,%s,%d,%d" % (d, iso(ts), di, sq) for d, di, sq, ts in events]
        status, _, res = self.request("POST", "/v1/events", "\n".join(lines) + "\n",
                                      {"Content-Type": "text/csv"})
        assert status == 200, (status, res)
        return res


def run_footfall(*args, check=False):
    p = subprocess.run([FOOTFALL] + list(args), capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("footfall %s: %d\n%s%s" % (args, p.returncode, p.stdout, p.stderr))
    return p


def answers(srv, spaces, t0, t1, with_meta=False):
    """Everything a client can ask about spaces over [t0, t1), as one comparable value."""
    out = {}
    step = max(1, (t1 - t0) // 40)
    for sid in spaces:
        counts = [srv.get("/v1/spaces/%d/count?at=%s" % (sid, iso(t))) for t in range(t0, t1, step)]
        buckets = srv.get("/v1/spaces/%d/counts?start=%s&end=%s&interval=%ds" %
                          (sid, iso(t0), iso(t1), max(1, (t1 - t0) // US // 24)))
        rows, cursor = [], None
        while True:
            q = "/v1/spaces/%d/occupancy?limit=500" % sid + ("&cursor=" + cursor if cursor else "")
            page = srv.get(q)
            rows += page["rows"]
            cursor = page["next"]
            if not cursor:
                break
        latest = srv.get("/v1/spaces/%d/count" % sid)
        if not with_meta:
            for c in counts + [latest]:
                c.pop("revision", None)
            buckets.pop("revision", None)
        out[sid] = dict(counts=counts, buckets=buckets, rows=rows, latest=latest)
    return out


class Runner:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, label, fn):
        t = time.time()
        try:
            fn()
            self.passed += 1
            print("ok   %s (%.2fs)" % (label, time.time() - t), flush=True)
        except Exception:
            self.failed += 1
            print("FAIL %s" % label, flush=True)
            traceback.print_exc()

    def finish(self):
        print("%s: %d passed, %d failed" % (self.name, self.passed, self.failed))
        sys.exit(1 if self.failed or not self.passed else 0)


def random_events(rng, n, dpus, t0, span_us, dup_frac=0.05):
    """A random event set with ties and exact duplicates (which dedup drops)."""
    evs = []
    seqs = {d: 0 for d in dpus}
    for _ in range(n):
        d = rng.choice(dpus)
        seqs[d] = (seqs[d] + 1) % 65536
        ts = t0 + rng.randrange(span_us)
        if evs and rng.random() < 0.05:
            ts = rng.choice(evs)[3]  # a tie with another event's time
        evs.append((d, rng.choice((1, -1)), seqs[d], ts))
    dups = [rng.choice(evs) for _ in range(int(n * dup_frac))]
    return evs + dups
