"""``tuning.study`` and ``tuning.select`` read sweeps with Tune's ResultGrid (``tuning.results``).

The experiments they read are real Tune outputs, written by two tiny Tune runs (a 2-CPU local Ray
instance, shut down before anything is read) whose trainable reports given success curves, or
writes the ``summary.json`` a BaNEL trial leaves in its run folder, instead of running BaNEL.
"""

from __future__ import annotations

import json
import math

import pytest

CURVES = {
    ("constant", 0): [0.010, 0.020, 0.015, 0.005],
    ("constant", 1): [0.012, 0.018, 0.010, 0.004],
    ("exponential", 0): [0.010, 0.015, 0.016, 0.016],
    ("exponential", 1): [0.011, 0.014, 0.015, 0.015],
}
RATES = {1e-4: 0.02, 1e-3: 0.05, 3e-3: 0.01}  # select: pg.lr -> the trial's fresh final


def _trainable(kind: str):
    """A trainable named like the sweeps' (``banel_trial``, which ``Tuner.restore`` checks); a
    nested function, so Ray ships it by value to its workers."""

    def banel_trial(config):
        from pathlib import Path

        from ray import tune

        if kind == "select":
            rate = RATES[config["pg.lr"]]
            run = Path(config["runs_root"]) / tune.get_context().get_trial_id()
            run.mkdir(parents=True)
            f = {"k": int(rate * 1000), "n": 1000, "rate": rate, "lo": rate / 2, "hi": rate * 2}
            summary = {"final_fresh": f, "base_fresh": {"rate": 0.01}, "nres": 7500}
            (run / "summary.json").write_text(json.dumps(summary))
            tune.report({"round": 1, "nres": 7500})
            return
        ys = CURVES[(config["generator.schedule"], config["seed"])]
        rows = [
            {
                "round": t + 1,
                "success": y,
                "success_lo": y / 2,
                "success_hi": 2 * y,
                "base_success": 0.01,
                "novel_frac": 1.0 - 0.2 * t,
                "kl_to_prior": 0.5 * t,
            }
            for t, y in enumerate(ys)
        ]
        rows.insert(1, dict(rows[1], success=0.5))  # round 2 reported twice (a restore): the last counts
        rows[2]["nres"] = 80  # a key only one report has: Tune's dataframe holds NaN for the others
        for r in rows:
            tune.report(r)

    return banel_trial


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    """Two finished Tune experiments (study, select) under a fresh folder; Ray is down again."""
    import ray
    from ray import tune

    root = tmp_path_factory.mktemp("tune")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        for name, kind, space in (
            ("study", "study", {"generator.schedule": ["constant", "exponential"], "seed": [0, 1]}),
            ("tune_x", "select", {"pg.lr": list(RATES)}),
        ):
            fixed = (
                {"base": {}} if name == "study" else {"seed": 100, "base": {}, "runs_root": str(root / name / "runs")}
            )
            tuner = tune.Tuner(
                tune.with_resources(_trainable(kind), {"cpu": 0.5}),
                param_space={**{k: tune.grid_search(v) for k, v in space.items()}, **fixed},
                run_config=tune.RunConfig(name=name, storage_path=str(root), verbose=0),
            )
            grid = tuner.fit()
            assert grid.num_errors == 0 and len(grid) == (4 if name == "study" else 3)
    finally:
        ray.shutdown()
    return root


def test_study_report_from_a_real_tune_experiment(experiments, tmp_path):
    import ray

    from tuning import study

    trials = study.load_experiment(experiments / "study")
    assert not ray.is_initialized()  # reading a finished sweep starts no Ray instance
    assert len(trials) == 4 and [h["round"] for h in trials[0]["history"]] == [1, 2, 3, 4]
    assert all(t["dir"].startswith("banel_trial_") for t in trials)
    assert {(t["arm"], t["seed"]) for t in trials} == {(f"generator.schedule={s}", seed) for s, seed in CURVES}
    h = trials[0]["history"]
    assert h[1]["success"] != 0.5 and h[1]["nres"] == 80 and "nres" not in h[0]  # no NaN for "not reported"
    res = study.analyse(trials)
    arms = res["arms"]
    assert {r["peak_round"] for r in arms["generator.schedule=constant"]} == {2}
    assert arms["generator.schedule=constant"][0]["drop"] == pytest.approx(0.75)
    assert arms["generator.schedule=exponential"][0]["drop"] == 0.0
    rules = {r["rule"]: r for r in res["rules"]}
    assert rules["never (all rounds)"]["stop_round"] == 4 and rules["never (all rounds)"]["fired"] == 0
    assert rules["kl_to_prior > 1 nat"]["stop_round"] == 4 and rules["kl_to_prior > 1 nat"]["fired"] == 4
    # novel_frac < 0.9 stops after round 2 (0.8): the peak for constant, one round early for exponential
    assert [x["stop_round"] for x in res["per_rule"]["novel_frac < 0.9"]] == [2, 2, 2, 2]
    assert res["rules"][0]["rel_regret"] <= res["rules"][-1]["rel_regret"]  # sorted by regret
    assert res["corr"]["kl_to_prior"][1] == 4
    out = study.write_report(trials, res, tmp_path / "rep", experiments / "study", "python -m tuning.study")
    text = out.read_text()
    assert "| generator.schedule=constant | 0 |" in text and "novel_frac < 0.9" in text
    assert (tmp_path / "rep" / "study.png").stat().st_size > 10_000
    assert not math.isnan(json.loads((tmp_path / "rep" / "study.json").read_text())["rules"][0]["rel_regret"])


def test_select_picks_the_trial_with_the_best_fresh_final(experiments, tmp_path):
    from tuning import results, select

    exp = experiments / "tune_x"
    ids = {r.config["pg.lr"]: results.trial_id(r) for r in results.trials(exp)}
    assert select.main(["--experiment", str(exp), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "tune_x.yaml").read_text() == "pg.lr: 0.001\n"
    table = (tmp_path / "out" / "tune_x.md").read_text()
    assert f"| {ids[1e-3]} **chosen** |" in table and "5.000e-02" in table
    assert all(f"| {i}" in table for i in ids.values()) and table.count(" **chosen**") == 1
