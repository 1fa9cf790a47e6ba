"""A run SIGKILLed at several points and resumed pays for no sample twice, loses no paid result, and
ends with the same ledger as an uninterrupted run (fixed seed). Real Ray, torch sampler, tiny scale."""

import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from helpers import small_run_sets

SETS = small_run_sets()


def cli(run_dir, *extra, crash=None):
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("BANEL_CRASH_AT", None)
    if crash:
        env["BANEL_CRASH_AT"] = crash
    args = [sys.executable, "-m", "banel_ray.run", *extra]
    if "--resume" not in extra:
        args += [a for s in SETS + [f"run_dir={run_dir}"] for a in ("--set", s)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def ledger(run_dir):
    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    rows = db.execute("SELECT key, reward, status, charged, round, version FROM evaluations ORDER BY seq").fetchall()
    db.close()
    return rows


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("full") / "run"
    r = cli(d)
    assert r.returncode == 0, r.stderr[-2000:]
    return ledger(d)


# mid_oracle and mid_checkpoint on Ray are opt-in (-m slow): the same crash points run in process in
# tests/integration/test_runner_local.py, and test_fault_injection.py kills the driver and the reward worker on Ray
@pytest.mark.parametrize(
    "point",
    [
        "mid_sampling:2",
        pytest.param("mid_oracle:2", marks=pytest.mark.slow),
        "mid_training:3",
        pytest.param("mid_checkpoint:2", marks=pytest.mark.slow),
    ],
)
def test_killed_and_resumed_run_matches_uninterrupted(tmp_path, uninterrupted, point):
    d = tmp_path / "run"
    r = cli(d, crash=point)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    before = ledger(d)
    r = cli(d, "--resume", str(d))
    assert r.returncode == 0, r.stderr[-2000:]
    after = ledger(d)
    assert after[: len(before)] == before  # nothing paid was lost or rewritten
    assert len({row[0] for row in after}) == len(after)  # no sample paid twice
    assert sorted(after) == sorted(uninterrupted)  # same samples, rewards, rounds, versions
    assert sum(row[3] for row in after) == 100
    lines = (d / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # the cut-short round was redone, not logged twice
