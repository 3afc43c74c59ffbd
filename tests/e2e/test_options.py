"""footfalld's flags as a user sets them: --fsync modes, --settle with the idle advance
of the horizon, --late=reject, --max-future, --help and bad flags."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import FOOTFALLD, US, Runner, Server, now_us  # noqa: E402

r = Runner("e2e options")
T = now_us() - 3600 * US


def fsync_mode(mode):
    srv = Server("--fsync", mode)
    try:
        acks = srv.send_tcp([[(283, 1, i, T + i * US) for i in range(100)]])
        assert acks[0]["status"] == 0 and acks[0]["accepted"] == 100, acks
        srv.kill9()
        srv.start()
        assert srv.get("/v1/spaces/1/count")["occupancy"] == 100
    finally:
        srv.close()


def idle_advance():
    srv = Server("--settle", "1s")
    try:
        srv.send_tcp([[(283, 1, 1, T), (283, 1, 2, T + 10 * US)]])
        c = srv.get("/v1/spaces/1/count")
        assert c["status"] == "pending" and c["occupancy"] == 2, c
        time.sleep(1.6)
        c = srv.get("/v1/spaces/1/count")
        assert c["status"] == "settled", c
        # now every earlier time is settled: an event there is late and amends
        acks = srv.send_tcp([[(283, -1, 3, T + 5 * US)]])
        assert acks[0]["late"] == 1 and acks[0]["accepted"] == 1, acks
        c = srv.get("/v1/spaces/1/count")
        assert c["occupancy"] == 1 and c["revision"] == 1, c
        srv.restart()
        c2 = srv.get("/v1/spaces/1/count")
        assert c2 == c, (c, c2)  # status (logged horizon) and revision survive a restart
    finally:
        srv.close()


def late_reject():
    srv = Server("--settle", "1m", "--late", "reject")
    try:
        srv.send_tcp([[(283, 1, 1, T + 600 * US)]])
        acks = srv.send_tcp([[(283, 1, 2, T)]])
        assert acks[0]["status"] == 1 and acks[0]["refused"] == 1, acks
        res = srv.post_json([(283, 1, 3, T)])
        assert res["refused"][0]["reason"] == "late", res
        assert srv.get("/v1/spaces/1/count")["occupancy"] == 1
    finally:
        srv.close()


def max_future():
    srv = Server("--max-future", "1h")
    try:
        res = srv.post_json([(283, 1, 1, now_us() + 1800 * US), (283, 1, 2, now_us() + 7200 * US)])
        assert res["accepted"] == 1 and res["refused"][0]["reason"] == "future", res
    finally:
        srv.close()


def help_and_bad_flags():
    p = subprocess.run([FOOTFALLD, "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "--fsync" in p.stdout and "--topology" in p.stdout, p
    assert "--log-file-bytes" in p.stdout and "--udp-rcvbuf" in p.stdout, p.stdout
    for bad in (["--fsync", "sometimes"], ["--settle", "soon"], ["--late", "maybe"],
                ["--udp", "nohost"], ["--bogus"], ["extra"], ["--log-file-bytes", "64MiB"],
                ["--log-file-bytes", "0"], ["--log-file-bytes", "-1"], ["--udp-rcvbuf", "lots"],
                ["--udp-rcvbuf", "99999999999"], ["--seal-rows", "1e6"],
                ["--log-file-bytes", "4095"], ["--seal-rows", str(1 << 41)]):
        p = subprocess.run([FOOTFALLD, "--data-dir", "/tmp/ff-never-created", "--http", "127.0.0.1:0",
                            "--tcp", "127.0.0.1:0"] + bad + (["--udp", "127.0.0.1:0"] if bad[0] != "--udp" else []),
                           capture_output=True, text=True, timeout=10)
        assert p.returncode != 0 and p.stderr.strip(), (bad, p.returncode, p.stderr)
        assert bad[0] in p.stderr, (bad, p.stderr)  # the message names the flag
    p = subprocess.run([FOOTFALLD, "--data-dir", "/tmp/ff-e2e-badtopo", "--udp", "127.0.0.1:0",
                        "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--topology", "/nonexistent.json"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0 and "nonexistent.json" in p.stderr, p.stderr
    subprocess.run(["rm", "-rf", "/tmp/ff-e2e-badtopo", "/tmp/ff-never-created"])


for name, fn in [("--fsync=always survives kill -9", lambda: fsync_mode("always")),
                 ("--fsync=interval:50 survives kill -9", lambda: fsync_mode("interval:50")),
                 ("--fsync=never survives kill -9 (page cache)", lambda: fsync_mode("never")),
                 ("--settle 1s: idle advance settles, then late amend", idle_advance),
                 ("--late=reject refuses late events", late_reject),
                 ("--max-future", max_future),
                 ("--help and bad flags", help_and_bad_flags)]:
    r.check(name, fn)
r.finish()
