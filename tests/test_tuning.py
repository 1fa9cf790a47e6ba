"""tuning/: positive-free stop rules and the generator schedule (pure, milliseconds), the study's
analysis on a synthetic experiment, and real Ray Tune sweeps with real actors (opt-in, -m slow:
a 2-trial ASHA sweep; an interrupted sweep restored with Tuner.restore)."""
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from banel_ray import config as C
from tuning import signals as S

ROOT = Path(__file__).resolve().parents[1]


def hist(**series):
    n = len(next(iter(series.values())))
    return [dict({k: v[i] for k, v in series.items()}, round=i + 1) for i in range(n)]


# ---- stop rules (pure) -------------------------------------------------------------------------
def test_rule_kinds_fire_at_the_right_round():
    h = hist(novel_frac=[1.0, 0.95, 0.6, 0.4], kl_to_prior=[0.1, 0.5, 2.0, 4.0],
             neg_gain=[0.1, 0.3, 0.25, 0.1], neg_heldout_nll=[2.0, 2.2, 3.5, 3.6])
    assert S.stop_round(S.Rule("a", "novel_frac", "below", 0.5), h) == 4
    assert S.stop_round(S.Rule("b", "kl_to_prior", "above", 1.0), h) == 3
    assert S.stop_round(S.Rule("c", "neg_gain", "drop", 0.7), h) == 4        # 0.1 < 0.7 * 0.3
    assert S.stop_round(S.Rule("d", "neg_gain", "plateau", patience=2), h) == 4  # best at round 2
    assert S.stop_round(S.Rule("e", "neg_heldout_nll", "rise", 1.0), h) == 3
    assert S.stop_round(S.Rule("f", "round", "round", 2), h) == 2
    assert S.stop_round(S.Rule("g", "novel_frac", "below", 0.1), h) == 4     # never fires: last round
    assert not S.fires(S.Rule("g", "novel_frac", "below", 0.1), h)
    assert S.stop_round(S.Rule("h", "kl_to_prior", "above", 0.0, min_round=3), h) == 3


def test_rule_rejects_unknown_signal_and_kind_and_missing_values_never_fire():
    with pytest.raises(ValueError, match="unknown signal"):
        S.Rule("x", "success", "above", 0.1)  # the truth is not a signal a rule may read
    with pytest.raises(ValueError, match="unknown rule kind"):
        S.Rule("x", "novel_frac", "sideways")
    assert not S.fires(S.Rule("x", "kl_to_prior", "above", 0.0), hist(novel_frac=[0.1, 0.1]))
    with pytest.raises(KeyError, match="allowed"):
        S.rule_by_name("nope")


def test_regret_against_the_peak_round():
    h = hist(success=[0.01, 0.03, 0.02, 0.005])
    r = S.regret(h, 3)
    assert r["peak_round"] == 2 and r["peak"] == 0.03 and r["at_stop"] == 0.02
    assert r["regret"] == pytest.approx(0.01) and r["rel_regret"] == pytest.approx(1 / 3)
    assert S.regret(h, 2)["regret"] == 0.0
    assert S.regret(hist(novel_frac=[1.0]), 1) == {}


def test_signals_flattens_a_metrics_line_and_derives_gain_and_spread():
    m = {"round": 3, "nres": 750, "paid": 200, "reused": 50, "positives": 1, "acceptance": 0.5,
         "score_q10": -1.0, "score_q50": 0.0, "score_q90": 2.0, "gen_heldout_nll": 2.5,
         "neg_heldout_nll": 2.0, "novel_frac": 0.8, "found": [{"sample": "x"}], "generator.reset": True,
         "eval": {"rate": 0.02, "lo": 0.01, "hi": 0.03, "k": 2, "n": 100}}
    s = S.signals(m)
    assert s["score_spread"] == 3.0 and s["neg_gain"] == 0.5 and s["paid_frac"] == 0.8
    assert s["success"] == 0.02 and s["round"] == 3 and "found" not in s
    assert all(isinstance(v, (int, float)) for v in s.values())


def test_rule_stopper_keeps_one_history_per_trial_and_replaces_a_rereported_round():
    from tuning.stoppers import RuleStopper

    st = RuleStopper([S.Rule("collapse", "novel_frac", "below", 0.5)])
    assert not st("a", {"round": 1, "novel_frac": 0.9, "success": 0.0})
    assert not st("b", {"round": 1, "novel_frac": 0.6})
    assert not st("a", {"round": 2, "novel_frac": 0.7})
    assert not st("a", {"round": 2, "novel_frac": 0.8})  # round 2 again after a restore
    assert [h["novel_frac"] for h in st.history["a"]] == [0.9, 0.8]
    assert "success" not in st.history["a"][0]  # the truth never reaches a rule
    assert st("a", {"round": 3, "novel_frac": 0.3}) and st.fired == {"a": "collapse"}
    assert not st.stop_all()


# ---- the generator update schedule -------------------------------------------------------------
def test_generator_lr_follows_its_schedule():
    from banel_ray.driver import Driver

    cfg = C.load(None, ["rounds=5", "generator.schedule=exponential", "generator.lr=0.001",
                        "generator.lr_end=0.00001"])
    lrs = [Driver._generator_lr(SimpleNamespace(cfg=cfg), t) for t in range(5)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert lrs[2] == pytest.approx(1e-4)  # geometric midpoint
    const = C.load(None, ["rounds=5"])
    assert {Driver._generator_lr(SimpleNamespace(cfg=const), t) for t in range(5)} == {5e-4}
    step = C.load(None, ["rounds=6", "generator.schedule=step", "generator.step_every=2",
                         "generator.gamma=0.1", "generator.lr_end=0.000001"])
    assert [Driver._generator_lr(SimpleNamespace(cfg=step), t) for t in (0, 1, 2, 5)] == \
        pytest.approx([5e-4, 5e-4, 5e-5, 5e-6])
    with pytest.raises(C.ConfigError, match="generator.lr_end"):
        C.load(None, ["generator.schedule=exponential", "generator.lr_end=0"])
    with pytest.raises(C.ConfigError, match="'generator.schedule' must be one of"):
        C.load(None, ["generator.schedule=warm"])


# ---- sweep files and resources -----------------------------------------------------------------
def test_sweep_file_errors_name_the_key(tmp_path):
    from tuning.sweep import load_sweep

    bad = {"searh: {}": "unknown sweep key 'searh'",
           "search: {filter.facter: [2]}": "unknown key 'filter.facter'",
           "search: {filter.factor: [0.5]}": "'filter.factor' must be >= 1.0",
           "scheduler: hyper": "'scheduler' must be one of fifo, asha, pbt",
           "stop_rules: [soon]": "unknown stop rule 'soon'",
           "pbt: {mutations: {generator.lr: [-1]}}": "'generator.lr' must be in [0.0, 1.0]"}
    for text, needle in bad.items():
        p = tmp_path / "s.yaml"
        p.write_text(text + "\n")
        with pytest.raises(C.ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            load_sweep(str(p), [])
    r = subprocess.run([sys.executable, "-m", "tuning.sweep", "--config", str(tmp_path / "none.yaml")],
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 2 and r.stderr.strip() == f"error: sweep file not found: {tmp_path / 'none.yaml'}"


def test_trial_reserves_its_driver_and_its_actors():
    from tuning.sweep import load_sweep
    from tuning.trainable import trial_resources

    sw = load_sweep(str(ROOT / "tuning/configs/quick_sweep.yaml"), ["sampler.num_actors=2"])
    pgf = trial_resources({"base": sw["base"], "trial_cpus": 0.25, "filter.factor": 4.0})
    assert pgf.bundles == [{"CPU": 0.25}, {"CPU": 2 * 0.5 + 2 * 0.5 + 0.25}]
    assert pgf.required_resources["CPU"] == pytest.approx(2.5)


# ---- the study's analysis on a synthetic Tune experiment ---------------------------------------
def test_study_report_from_tune_result_files(tmp_path):
    from tuning import study

    curves = {("constant", 0): [0.010, 0.020, 0.015, 0.005], ("constant", 1): [0.012, 0.018, 0.010, 0.004],
              ("exponential", 0): [0.010, 0.015, 0.016, 0.016], ("exponential", 1): [0.011, 0.014, 0.015, 0.015]}
    for i, ((sched, seed), ys) in enumerate(curves.items()):
        d = tmp_path / "exp" / f"banel_trial_{i}"
        d.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps({"generator.schedule": sched, "seed": seed, "base": {}}))
        rows = [{"round": t + 1, "success": y, "success_lo": y / 2, "success_hi": 2 * y, "base_success": 0.01,
                 "novel_frac": 1.0 - 0.2 * t, "kl_to_prior": 0.5 * t} for t, y in enumerate(ys)]
        rows.insert(1, dict(rows[1], success=0.5))  # round 2 reported twice (restore): the last one counts
        (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trials = study.load_experiment(tmp_path / "exp")
    assert len(trials) == 4 and [h["round"] for h in trials[0]["history"]] == [1, 2, 3, 4]
    res = study.analyse(trials)
    arms = res["arms"]
    assert {r["peak_round"] for r in arms["generator.schedule=constant"]} == {2}
    assert arms["generator.schedule=constant"][0]["drop"] == pytest.approx(0.75)
    assert arms["generator.schedule=exponential"][0]["drop"] == 0.0
    rules = {r["rule"]: r for r in res["rules"]}
    assert rules["never (all rounds)"]["stop_round"] == 4 and rules["never (all rounds)"]["fired"] == 0
    assert rules["kl_to_prior > 1 nat"]["stop_round"] == 4 and rules["kl_to_prior > 1 nat"]["fired"] == 4
    # novel_frac < 0.9 stops after round 2 (0.8): the peak for constant, one round early for exponential
    nv = [x for x in res["per_rule"]["novel_frac < 0.9"]]
    assert [x["stop_round"] for x in nv] == [2, 2, 2, 2]
    assert res["rules"][0]["rel_regret"] <= res["rules"][-1]["rel_regret"]  # sorted by regret
    assert res["corr"]["kl_to_prior"][1] == 4
    out = study.write_report(trials, res, tmp_path / "rep", tmp_path / "exp", "python -m tuning.study")
    text = out.read_text()
    assert "| generator.schedule=constant | 0 |" in text and "novel_frac < 0.9" in text
    assert (tmp_path / "rep" / "study.png").stat().st_size > 10_000


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
    cmd = [sys.executable, "-m", "tuning.sweep", "--config", str(sweep), "--storage", str(exp.parent),
           "--name", exp.name]
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
    r = subprocess.run(cmd[:3] + ["--config", str(sweep), "--restore", str(exp)], cwd=ROOT, env=_env(),
                       stdout=log, stderr=subprocess.STDOUT, timeout=600)
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
    p.write_text("scheduler: pbt\npbt: {interval_nres: 500, mutations: {filter.factor: [2, 4], "
                 "generator.lr: [0.0005, 0.0001]}}\nsearch: {filter.factor: {choice: [2, 4]}}\n")
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

    from banel_ray.checkpoint import read_state, save_checkpoint
    from tuning import trainable as T

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
