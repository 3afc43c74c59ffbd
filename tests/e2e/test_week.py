"""bench/week in quick mode: it runs, its own checks pass (outcome counts, every space's
latest occupancy and sampled counts at T against the bench's brute-force fold, before
and after a reopen, engine invariants), its checks fail when told a wrong answer, and the
bytes per row it prints agree with the segment files on disk as `footfall segments ls`
reads them."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from ffharness import BUILD, FOOTFALL, Runner  # noqa: E402

WEEK = os.path.join(BUILD, "week")
QUICK = ["--days", "2", "--dpus", "2000", "--seal-rows", "100000", "--late-sealed", "3"]
r = Runner("e2e week")
state = {}


def week(*args, timeout=300):
    p = subprocess.run([WEEK, *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def results(out):
    """The 'result ...' lines as dicts of their key=value pairs, the words before as 'tag'."""
    rows = []
    for line in out.splitlines():
        if not line.startswith("result "):
            continue
        d = {"tag": " ".join(w for w in line.split()[1:] if "=" not in w)}
        d.update(kv.split("=", 1) for kv in line.split() if "=" in kv)
        rows.append(d)
    return rows


def quick_run_checks_pass():
    tmp = tempfile.mkdtemp(prefix="ff-week-test-")
    state["tmp"] = tmp
    data = os.path.join(tmp, "data")
    rc, out, err = week(*QUICK, "--reopen", "--check-invariants", "--data-dir", data, "--keep")
    state["out"], state["data"] = out, data
    assert rc == 0, "exit %d\n%s\n%s" % (rc, out, err)
    assert re.search(r"^check ok: outcomes match; 4000 latest occupancies and \d+ counts at T", out,
                     re.M), out
    assert "before and after a reopen" in out, out
    days = [d for d in results(out) if "day" in d]
    assert [d["day"] for d in days] == ["1", "2"], days
    total = [d for d in results(out) if "total_events" in d][0]
    made, dups = int(total["made"]), int(total["duplicates"])
    assert abs(made + dups - 2 * 2000 * 500) <= 2, total  # the daily volume asked for
    assert int(total["late_sealed"]) == 3 and int(total["late"]) > 0 and dups > 0, total
    assert int(days[-1]["rewritten"]) >= 3, days[-1]  # each late-sealed event rewrote


def bytes_per_row_matches_the_files():
    final = [d for d in results(state["out"]) if d["tag"] == "final"][0]
    segdir = os.path.join(state["data"], "segments")
    files = [f for f in os.listdir(segdir) if f.startswith("seg-") and not f.endswith(".tmp")]
    size = sum(os.path.getsize(os.path.join(segdir, f)) for f in files)
    assert int(final["seg_bytes"]) == size, (final, size)
    assert int(final["seg_files"]) == len(files) == int(final["segments"]), (final, files)
    ls = subprocess.run([FOOTFALL, "segments", "ls", segdir], capture_output=True, text=True,
                        timeout=60)
    assert ls.returncode == 0, ls.stderr
    lines = ls.stdout.splitlines()[1:]
    assert len(lines) == len(files), ls.stdout
    rows = sum(int(line.split()[-3]) for line in lines)
    assert int(final["sealed_rows"]) == rows, (final, rows)
    bpr = size / rows
    assert abs(float(final["bytes_per_row"]) - bpr) < 1e-3, (final, bpr)
    assert 1.0 < bpr < 8.0, bpr


def the_checks_can_fail():
    rc, out, _ = week("--days", "1", "--dpus", "200", "--wrong-on-purpose")
    assert rc == 1, out
    assert re.search(r"^check FAILED: 1 wrong; first: latest: space 100 ", out, re.M), out


def usage():
    rc, out, _ = week("--help")
    assert rc == 0 and "--events-per-dpu-day" in out, out
    rc, _, err = week("--dpus", "0")
    assert rc == 2 and "--dpus" in err, err
    rc, _, err = week("--no-such-flag")
    assert rc == 2, err


def data_dir_must_be_empty():
    rc, _, err = week("--days", "1", "--dpus", "10", "--data-dir", state["data"])
    assert rc == 2 and "not empty" in err, err


r.check("a quick run's answers equal the bench's brute-force fold", quick_run_checks_pass)
r.check("printed bytes per row agree with the segment files", bytes_per_row_matches_the_files)
r.check("the checks fail on a wrong answer", the_checks_can_fail)
r.check("--help and bad flags", usage)
r.check("an existing data dir with data is refused", data_dir_must_be_empty)
shutil.rmtree(state.get("tmp", "/nonexistent"), ignore_errors=True)
r.finish()
