"""Issue 24, item 2: a run folder on S3. A real S3-compatible server (moto's server mode) listens on
127.0.0.1 for the module; tiny runs (``runtime=local``, the addition attack, 3 rounds) go to
``s3://bucket/...`` through the command line, in this process, and the bucket is read back."""

import importlib.util
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
    pytest.skip("moto[server] is not installed (requirements-cpu.txt pins it)", allow_module_level=True)

from banel_ray import compare  # noqa: E402
from banel_ray.core import remote  # noqa: E402
from banel_ray.runtime import runner as runner_mod  # noqa: E402

from helpers import TINY_RUN, run_main, sets  # noqa: E402

TINY = ["budget=60" if x.startswith("budget=") else x for x in TINY_RUN]  # the tiny run, budget 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 (a free port) with one bucket; pyarrow finds it through
    ``AWS_ENDPOINT_URL``, as it would find any S3-compatible store. The server runs in its own
    process: in this one, moto's Flask app would leave a context-bound proxy in ``sys.modules``
    that breaks vLLM's engine start in every later test of the session."""
    host, port = "127.0.0.1", _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the moto server did not start (exit {server.poll()})")
            time.sleep(0.2)
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    import pyarrow.fs as pafs

    pafs.S3FileSystem(
        endpoint_override=f"{host}:{port}",
        scheme="http",
        access_key="test",
        secret_key="test",
        allow_bucket_creation=True,
    ).create_dir("bucket")
    yield env
    mp.undo()
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def staging(tmp_path, monkeypatch):
    monkeypatch.setenv("BANEL_RAY_STAGING", str(tmp_path / "staging"))
    return tmp_path / "staging"


cli = run_main


def pull(uri, dest):
    """The bucket's copy of a run folder, read back with pyarrow (nothing of the run's own state)."""
    assert remote.download(uri, dest) > 0
    return dest


def rows(run_dir):
    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    try:
        return db.execute("SELECT key, reward, status, charged, round FROM evaluations ORDER BY seq").fetchall()
    finally:
        db.close()


@pytest.fixture(scope="module")
def into_s3(s3, tmp_path_factory):
    """A tiny run into ``s3://bucket/run`` from a fresh staging root; returns the bucket's copy."""
    tmp = tmp_path_factory.mktemp("into_s3")
    mp = pytest.MonkeyPatch()
    mp.setenv("BANEL_RAY_STAGING", str(tmp / "staging"))
    try:
        assert cli(*sets(*TINY, "run_dir=s3://bucket/run")) == 0
        # the same URI again without --resume: refused before anything starts
        assert cli(*sets(*TINY, "run_dir=s3://bucket/run")) == 2
    finally:
        mp.undo()
    return pull("s3://bucket/run", tmp / "got")


def test_a_run_into_s3_leaves_summary_metrics_checkpoints_and_the_whole_ledger(into_s3):
    got = into_s3
    summary = json.loads((got / "summary.json").read_text())
    assert summary["rounds"] == 3 and summary["nres"] > 0
    assert len(rows(got)) == summary["nres"] == summary["ledger_rows"]
    assert all(r[3] == 1 and r[2] == "ok" for r in rows(got))
    assert [json.loads(x)["round"] for x in (got / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert (got / "checkpoints" / "LATEST").read_text() == "round_0003"
    assert json.loads((got / "config.json").read_text())["run_dir"] == "s3://bucket/run"
    assert not list(got.rglob(".*")) and not (got / "ledger.sqlite-wal").exists()  # no lock, probe or side file


def test_compare_writes_its_table_to_a_bucket(into_s3, staging, tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(into_s3, runs / "banel-s0")
    assert compare.main(["--from-runs", str(runs), "--out", "s3://bucket/cmp", "--bootstrap-reps", "200"]) == 0
    assert "copied to s3://bucket/cmp" in capsys.readouterr().out
    table = pull("s3://bucket/cmp", tmp_path / "cmp")
    assert "banel" in (table / "table.md").read_text() and (table / "table.csv").exists()


def test_a_run_cut_short_resumes_from_the_bucket_on_another_machine_paying_nothing_twice(
    s3, staging, tmp_path, monkeypatch, capsys
):
    """Interrupted in round 2 after paying (Ctrl-C or a preemption: the copy is pushed on the way
    out), the local staging folder then lost (another machine), ``--resume auto`` pulls the bucket's
    copy and ends with the ledger an uninterrupted run leaves."""
    full = "s3://bucket/full"
    assert cli(*sets(*TINY, f"run_dir={full}")) == 0
    uri = "s3://bucket/cut"

    def interrupt(name, round_):
        if (name, round_) == ("mid_oracle", 2):
            raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod, "crash_point", interrupt)
    assert cli("--resume", "auto", *sets(*TINY, f"run_dir={uri}")) == 130
    assert f"--resume {uri}" in capsys.readouterr().err
    cut = pull(uri, tmp_path / "cut")
    assert (cut / "checkpoints" / "LATEST").read_text() == "round_0001"
    assert {r[4] for r in rows(cut)} == {1, 2}  # round 2's payments reached the bucket too
    monkeypatch.undo()
    monkeypatch.setenv("BANEL_RAY_STAGING", str(staging))
    shutil.rmtree(staging)  # the machine is gone: only the bucket remembers
    assert cli("--resume", "auto", *sets(*TINY, f"run_dir={uri}")) == 0
    assert "pulled" in capsys.readouterr().out
    done, ref = pull(uri, tmp_path / "done"), pull(full, tmp_path / "full")
    assert rows(done) == rows(ref)
    assert json.loads((done / "summary.json").read_text())["nres"] == len(rows(ref))


@pytest.mark.slow
def test_a_tune_sweep_with_s3_storage_keeps_experiment_and_trial_run_folders_in_the_bucket(s3, staging, tmp_path):
    """Real Tune with ``storage: s3://bucket/sweeps`` (passed to Tune unchanged): Tune's own
    experiment state and each trial's run folder (staged on the node, copied by job.run) end up
    in the bucket, the trial's ledger with one row per NRE."""
    import ray

    from tuning.sweep import build_tuner, load_sweep

    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "set: {rounds: 2, budget: 40, samples_per_round: 20, pool_size: 40, eval.samples: 40, eval.every: 1, "
        "eval.final_samples: 0, negative.epochs: 1, generator.epochs: 1, sampler.backend: torch, runtime: local, "
        "task: addition_attack_d8}\nsearch: {filter.factor: [2.0]}\nseeds: [0]\n"
    )
    sw = dict(load_sweep(str(sweep), []), storage="s3://bucket/sweeps", name="exp")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        tuner, exp = build_tuner(sw)
        grid = tuner.fit()
    finally:
        ray.shutdown()
    assert exp == "s3://bucket/sweeps/exp" and grid.num_errors == 0 and len(grid) == 1
    assert grid[0].path.startswith("bucket/sweeps/exp/")  # Tune wrote its trial to the bucket itself
    got = pull("s3://bucket/sweeps/exp", tmp_path / "exp")
    assert (got / "tuner.pkl").exists()
    (run,) = [p.parent for p in (got / "runs").glob("*/summary.json")]
    assert len(rows(run)) == json.loads((run / "summary.json").read_text())["nres"] == 40
