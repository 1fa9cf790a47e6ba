"""Small helpers shared by the tests."""

import threading


def batch(samples, version=0):
    """A sampler output as the reward service receives it."""
    from banel_ray.records import SampleBatch

    return SampleBatch(samples=list(samples), version=version)


def run_threads(fn, n, timeout=60):
    """fn(0..n-1) on n threads at once; returns the results, raises if any call raised."""
    out, errs = [None] * n, []

    def go(i):
        try:
            out[i] = fn(i)
        except Exception as e:  # pragma: no cover - surfaced below
            errs.append(e)

    ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    [t.start() for t in ts]
    [t.join(timeout) for t in ts]
    assert not errs, errs
    return out


def assert_one_line_error(r, needle):
    """A CLI refused bad input as the project promises: exit 2, one stderr line naming the problem."""
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def golden(name):
    """Ledger rows (sample, reward, round, version) that the code before the Runner refactor wrote
    for the same tiny run (tests/integration/golden.json; regenerate only on purpose)."""
    import json
    from pathlib import Path

    return json.loads((Path(__file__).parent / "integration" / "golden.json").read_text())[name]["rows"]


def ledger_rows(run_dir):
    """(sample, reward, round, version) of every ledger row, in payment order, as golden() has them."""
    import json
    import sqlite3

    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    try:
        return [
            [json.loads(s), r, rd, v]
            for s, r, rd, v in db.execute("SELECT sample, reward, round, version FROM evaluations ORDER BY seq")
        ]
    finally:
        db.close()
