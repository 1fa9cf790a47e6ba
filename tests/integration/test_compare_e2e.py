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
        (["--task-cpus", "0"], "--task-cpus must be > 0"),
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


def test_an_unwritable_out_is_refused_before_joining_a_cluster(tmp_path):
    """--out is checked (made and written for real) before this process joins the --ray cluster:
    nothing listens at 127.0.0.1:9, so a join would fail, or wait, with another message."""
    r = _compare("--methods", "random", "--ray", "127.0.0.1:9", "--out", "/proc/banel_cmp")
    assert_one_line_error(r, "--out /proc/banel_cmp cannot be written (cannot make /proc/banel_cmp")
    assert r.stdout == ""


@pytest.fixture
def local_cluster(monkeypatch):
    """A 2-CPU Ray head on this machine with a private temp folder (``RAY_TMPDIR``), stopped by its
    own processes (``ray.cluster_utils.Cluster``), as tests/integration/test_cluster.py does."""
    import shutil
    import tempfile

    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="rc24", dir="/tmp")  # short: Ray's socket paths live under it
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the workers (and the runs they start) import this checkout
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args=dict(num_cpus=2, include_dashboard=False, object_store_memory=200 << 20),
        )
        yield cluster.address
    finally:
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_grid_runs_as_ray_tasks_on_a_cluster(local_cluster, tmp_path):
    """--ray ADDRESS: each (method, seed) is a Ray task on the cluster (here a 2-CPU head, both
    runs at once, each in process: runtime=local), writing its folder under --out; then the table."""
    out = tmp_path / "cmp"
    sets = [
        "task=addition_attack_d8",
        "runtime=local",
        "rounds=2",
        "budget=50",
        "samples_per_round=25",
        "eval.samples=100",
        "sampler.backend=torch",
        "eval.final_samples=100",
    ]
    r = _compare(
        "--methods",
        "random,banel",
        "--seeds",
        "0",
        "--ray",
        local_cluster,
        "--out",
        str(out),
        "--bootstrap-reps",
        "200",
        *[a for x in sets for a in ("--set", x)],
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"2 at a time (at most), as Ray tasks of 1 CPU on {local_cluster}" in r.stdout
    assert "2 of 2 runs finished" in r.stdout
    for m in ("random", "banel"):
        s = json.loads((out / "runs" / f"{m}-s0" / "summary.json").read_text())
        assert s["nres"] == 50 and s["final_fresh"]["n"] == 100
        assert "in process (no Ray)" in (out / "logs" / f"{m}-s0.log").read_text()
    for f in ("table.md", "table.csv", "runs.csv"):
        assert (out / f).exists(), f
    rows = {row["method"]: row for row in csv.DictReader(open(out / "table.csv"))}
    assert set(rows) == {"pretrained", "random", "banel"}
