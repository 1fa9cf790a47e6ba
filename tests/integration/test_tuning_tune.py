"""Real Ray Tune: sweeps with real actors (opt-in, -m slow: a 2-trial ASHA sweep; an interrupted
sweep restored with Tuner.restore), the schedulers' NRE time axis, and checkpoint packing."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# ---- real Ray Tune sweeps with real actors -----------------------------------------------------
TINY = """set: {rounds: %d, budget: %d, samples_per_round: 40, pool_size: 120, eval.samples: 200,
      eval.every: 1, negative.epochs: 2, generator.epochs: 1, sampler.backend: torch}
search: {filter.factor: [2.0, 4.0]}
seeds: [0]
scheduler: %s
max_concurrent_trials: 1
ray_num_cpus: 2
"""


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")


def _ledger(run_dir):
    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    return db.execute("SELECT key, round FROM evaluations WHERE charged = 1").fetchall()


def _results(exp):
    out = {}
    for d in exp.iterdir():
        if (d / "result.json").exists():
            rows = [json.loads(x) for x in (d / "result.json").read_text().splitlines() if x.strip()]
            out[rows[0]["trial_id"] if rows else d.name] = rows
    return out


@pytest.mark.slow
def test_interrupted_sweep_restores_and_continues_without_paying_twice(tmp_path):
    """A 2-trial sweep (real Tune, real actors) is interrupted (SIGINT) after trial 0's first
    round, then `--restore` continues: trial 0 from its checkpoint, trial 1 from the start."""
    sweep = tmp_path / "s.yaml"
    sweep.write_text(TINY % (3, 120, "fifo"))
    exp = tmp_path / "sw" / "exp"
    cmd = [
        sys.executable,
        "-m",
        "tuning.sweep",
        "--config",
        str(sweep),
        "--storage",
        str(exp.parent),
        "--name",
        exp.name,
    ]
    log = open(tmp_path / "sweep.log", "w")
    p = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(exp.glob("banel_trial_*/checkpoint_000000")):
        time.sleep(0.5)
    assert list(exp.glob("banel_trial_*/checkpoint_000000")), "no checkpoint before the deadline"
    p.send_signal(signal.SIGINT)
    try:
        p.wait(120)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)
        p.wait(60)
    before = {t: [r["round"] for r in rows] for t, rows in _results(exp).items()}
    assert before and max(len(v) for v in before.values()) < 3  # interrupted before trial 0 ended
    r = subprocess.run(
        cmd[:3] + ["--config", str(sweep), "--restore", str(exp)],
        cwd=ROOT,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        timeout=600,
    )
    log.close()
    assert r.returncode == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    res = _results(exp)
    assert len(res) == 2
    for tid, rows in res.items():
        rounds = sorted({x["round"] for x in rows})
        assert rounds == [1, 2, 3], (tid, rounds)
        assert rows[-1]["nres"] == 120
        paid = _ledger(exp / "runs" / tid)
        assert len(paid) == len({k for k, _ in paid}) == 120  # budget spent exactly, nothing paid twice
    t0 = min(before, key=lambda t: t)
    first = [x for x in res[t0] if x["round"] == 1]
    assert len(first) == 1  # round 1 was not run again after the restore
    assert {x["round"] for x in res[t0]} >= set(before[t0])


@pytest.mark.slow
def test_small_asha_sweep_runs_trials_in_placement_groups(tmp_path):
    """Two real trials (2 rounds each) under ASHA with NREs as the time axis, one at a time on a
    2-CPU instance: each trial's actors fit inside its placement group and every round reports."""
    import ray

    from tuning.sweep import build_tuner, load_sweep

    sweep = tmp_path / "s.yaml"
    sweep.write_text(TINY % (2, 80, "asha") + "asha: {grace_nres: 40}\nstop_rules: ['novel_frac < 0.5']\n")
    sw = load_sweep(str(sweep), [])
    sw.update(storage=str(tmp_path / "sw"), name="asha")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        tuner, exp = build_tuner(sw)
        grid = tuner.fit()
    finally:
        ray.shutdown()
    assert grid.num_errors == 0 and len(grid) == 2
    for res in grid:
        df = res.metrics_dataframe
        assert list(df["round"]) == [1, 2] and list(df["nres"]) == [40, 80]
        assert set(df["filter_value"]) == {res.config["filter.factor"]}
        assert {"novel_frac", "kl_to_prior", "neg_gain", "score_spread", "success"} <= set(df.columns)
        assert res.checkpoint is not None
        with res.checkpoint.as_directory() as d:
            assert json.loads((Path(d) / "tune_meta.json").read_text())["round"] == 2
            assert len(_ledger(Path(d))) == 80


def test_pbt_and_asha_use_nres_as_time_and_check_mutations(tmp_path):
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    from tuning.sweep import build_tuner, load_sweep

    p = tmp_path / "s.yaml"
    p.write_text(
        "scheduler: pbt\npbt: {interval_nres: 500, mutations: {filter.factor: [2, 4], "
        "generator.lr: [0.0005, 0.0001]}}\nsearch: {filter.factor: {choice: [2, 4]}}\n"
    )
    sw = dict(load_sweep(str(p), []), storage=str(tmp_path), name="pbt")
    tuner, exp = build_tuner(sw)
    sched = tuner._local_tuner._tune_config.scheduler
    assert isinstance(sched, PopulationBasedTraining) and sched._time_attr == "nres"
    assert sched._perturbation_interval == 500 and exp == tmp_path / "pbt"
    p.write_text("scheduler: asha\nasha: {grace_nres: 500}\n")
    sw = dict(load_sweep(str(p), ["budget=2000"]), storage=str(tmp_path), name="asha")
    sched = build_tuner(sw)[0]._local_tuner._tune_config.scheduler
    assert isinstance(sched, ASHAScheduler) and sched._time_attr == "nres" and sched._max_t == 2250


def test_checkpoint_pack_and_restore_choose_the_folder_with_every_paid_result(tmp_path, monkeypatch):
    import torch
    from ray import tune

    from banel_ray.core.checkpoint import CheckpointStore, save_tensors
    from tuning import trainable as T

    def save_checkpoint(path, r, state, weights):
        store = CheckpointStore(path / "checkpoints")
        tmp = store.begin(r)
        (tmp / "generator").mkdir()
        save_tensors(tmp / "generator" / "weights.safetensors", weights)
        store.commit(tmp, r, state["version"], state, {"generator": {}}, "generator/weights.safetensors", False)

    def read_state(path):
        return CheckpointStore(path / "checkpoints").runner_state()

    def run_folder(path, rounds):
        path.mkdir(parents=True)
        (path / "config.json").write_text("{}")
        (path / "metrics.jsonl").write_text("".join(json.dumps({"round": r}) + "\n" for r in range(1, rounds + 1)))
        db = sqlite3.connect(str(path / "ledger.sqlite"))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE evaluations (key TEXT, round INT, charged INT)")
        db.executemany("INSERT INTO evaluations VALUES (?, ?, 1)", [(f"k{r}", r) for r in range(1, rounds + 1)])
        db.commit()  # left open, as the oracle actor holds it
        for r in range(1, rounds + 1):
            save_checkpoint(path, r, {"round": r, "version": r}, {"w": torch.full((2,), float(r))})
        return db

    runs = tmp_path / "runs"
    db = run_folder(runs / "t0", 2)
    packed = tmp_path / "ck"
    T.pack(runs / "t0", packed, "t0")
    assert json.loads((packed / T.CKPT_META).read_text()) == {"trial_id": "t0", "round": 2}
    assert sqlite3.connect(str(packed / "ledger.sqlite")).execute("SELECT COUNT(*) FROM evaluations").fetchone() == (2,)
    db.execute("INSERT INTO evaluations VALUES ('k3', 3, 1)")  # round 3 paid after the last report
    db.commit()
    save_checkpoint(runs / "t0", 3, {"round": 3, "version": 3}, {"w": torch.zeros(2)})
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(str(packed)))
    assert T._restore_folder(runs / "t0", "t0") == (True, 2)  # own folder is ahead: keep it
    assert read_state(runs / "t0")["round"] == 3
    # another trial's checkpoint (PBT exploit): ours is kept aside, the donor's state unpacked
    run_folder(runs / "t1", 1)
    assert T._restore_folder(runs / "t1", "t1") == (True, 2)
    assert read_state(runs / "t1")["round"] == 2 and (runs / "t1.old0").is_dir()
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    assert T._restore_folder(runs / "t1", "t1") == (False, 0) and (runs / "t1.old1").is_dir()
