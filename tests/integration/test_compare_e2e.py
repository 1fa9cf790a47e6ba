"""``python -m banel_ray.compare`` as a user runs it: bad input, and a real tiny comparison whose
table is rebuilt identically from its run folders."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]


def _compare(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "banel_ray.compare", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["--methods", "banel,ppo"],
            "--methods: unknown method 'ppo'; allowed: banel, banel_sequential, random, reinforce, rnd, count, nsr",
        ),
        (["--seeds", "x"], "--seeds must be non-negative integers"),
        (["--parallel", "0"], "--parallel must be >= 1"),
        (["--set", "seed=3"], "--set seed: compare sets method, seed, run_dir itself"),
        (["--set", "rnd.coef=-1"], "'rnd.coef' must be >= 0.0"),
        (["--config", "nope.yaml"], "config file not found: nope.yaml"),
        (["--from-runs", "no/such/dir"], "--from-runs: folder not found"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, args, needle):
    r = _compare(*args, "--out", str(tmp_path / "out"))
    assert_one_line_error(r, needle)
    assert not (tmp_path / "out").exists()


def test_tiny_comparison_writes_a_table_that_its_run_folders_reproduce(tmp_path):
    out = tmp_path / "cmp"
    r = _compare(
        "--methods",
        "random,reinforce",
        "--seeds",
        "0",
        "--parallel",
        "2",
        "--out",
        str(out),
        "--progress-every",
        "5",
        "--set",
        "rounds=2",
        "--set",
        "budget=50",
        "--set",
        "samples_per_round=25",
        "--set",
        "eval.samples=100",
        "--set",
        "sampler.backend=torch",
        "--set",
        "eval.final_samples=300",
        "--bootstrap-reps",
        "300",
        timeout=400,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert "random seed 0: started" in r.stdout and "2 of 2 runs finished" in r.stdout
    for f in ("table.md", "table.csv", "runs.csv", "success_vs_nres.png"):
        assert (out / f).exists(), f
    rows = {row["method"]: row for row in csv.DictReader(open(out / "table.csv"))}
    assert set(rows) == {"pretrained", "random", "reinforce"}
    for m in ("random", "reinforce"):  # the numbers are the run folders' numbers
        s = json.loads((out / "runs" / f"{m}-s0" / "summary.json").read_text())
        assert s["nres"] == 50 and float(rows[m]["nres_mean"]) == 50
        assert math.isclose(float(rows[m]["final_iqm"]), s["final_fresh"]["rate"])  # one seed: its fresh final
        assert s["final_fresh"]["n"] == 300 and int(rows[m]["seeds"]) == 1
    # rebuilt from the folders alone: the same files, byte for byte
    again = tmp_path / "again"
    r2 = _compare("--from-runs", str(out / "runs"), "--out", str(again), "--bootstrap-reps", "300")
    assert r2.returncode == 0, r2.stderr
    assert (again / "table.md").read_text() == (out / "table.md").read_text()
    assert (again / "table.csv").read_text() == (out / "table.csv").read_text()
    # run again: finished runs are kept, not paid for twice
    r3 = _compare(
        "--methods",
        "random",
        "--seeds",
        "0",
        "--out",
        str(out),
        "--set",
        "rounds=2",
        "--set",
        "budget=50",
        "--set",
        "samples_per_round=25",
        "--set",
        "eval.samples=100",
        "--set",
        "sampler.backend=torch",
        "--set",
        "eval.final_samples=300",
        "--bootstrap-reps",
        "300",
    )
    assert r3.returncode == 0 and "finished earlier, kept" in r3.stdout
