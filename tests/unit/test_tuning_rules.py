"""tuning/: positive-free stop rules and the generator schedule (pure, milliseconds), sweep-file
checks and the study's analysis on a synthetic experiment. Real Tune sweeps: integration tier."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from banel_ray import config as C
from banel_ray.algorithms import stop_rules as S

ROOT = Path(__file__).resolve().parents[2]


def hist(**series):
    n = len(next(iter(series.values())))
    return [dict({k: v[i] for k, v in series.items()}, round=i + 1) for i in range(n)]


# ---- stop rules (pure) -------------------------------------------------------------------------
def test_rule_kinds_fire_at_the_right_round():
    h = hist(
        novel_frac=[1.0, 0.95, 0.6, 0.4],
        kl_to_prior=[0.1, 0.5, 2.0, 4.0],
        neg_gain=[0.1, 0.3, 0.25, 0.1],
        neg_heldout_nll=[2.0, 2.2, 3.5, 3.6],
    )
    assert S.stop_round(S.Rule("a", "novel_frac", "below", 0.5), h) == 4
    assert S.stop_round(S.Rule("b", "kl_to_prior", "above", 1.0), h) == 3
    assert S.stop_round(S.Rule("c", "neg_gain", "drop", 0.7), h) == 4  # 0.1 < 0.7 * 0.3
    assert S.stop_round(S.Rule("d", "neg_gain", "plateau", patience=2), h) == 4  # best at round 2
    assert S.stop_round(S.Rule("e", "neg_heldout_nll", "rise", 1.0), h) == 3
    assert S.stop_round(S.Rule("f", "round", "round", 2), h) == 2
    assert S.stop_round(S.Rule("g", "novel_frac", "below", 0.1), h) == 4  # never fires: last round
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
    sparse = [{"round": 1}, {"round": 2, "success": 0.3}]
    assert math.isnan(S.regret(sparse, 1)["at_stop"])  # stopped before any evaluation, p0's rate unknown
    assert S.regret(sparse, 1, base=0.01)["at_stop"] == 0.01  # known: a run stopped then reports p0


def test_signals_flattens_a_metrics_line_and_derives_gain_and_spread():
    m = {
        "round": 3,
        "nres": 750,
        "paid": 200,
        "reused": 50,
        "positives": 1,
        "acceptance": 0.5,
        "score_q10": -1.0,
        "score_q50": 0.0,
        "score_q90": 2.0,
        "gen_heldout_nll": 2.5,
        "neg_heldout_nll": 2.0,
        "novel_frac": 0.8,
        "found": [{"sample": "x"}],
        "generator.reset": True,
        "eval": {"rate": 0.02, "lo": 0.01, "hi": 0.03, "k": 2, "n": 100},
    }
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
def _lr(cfg, t):
    from banel_ray.methods.banel import BanelDistill

    return BanelDistill.generator_lr(SimpleNamespace(ctx=SimpleNamespace(cfg=cfg, rc=C.sections(cfg))), t)


def test_generator_lr_follows_its_schedule():
    cfg = C.load(None, ["rounds=5", "generator.schedule=exponential", "generator.lr=0.001", "generator.lr_end=0.00001"])
    lrs = [_lr(cfg, t) for t in range(5)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert lrs[2] == pytest.approx(1e-4)  # geometric midpoint
    const = C.load(None, ["rounds=5"])
    assert {_lr(const, t) for t in range(5)} == {5e-4}
    step = C.load(
        None,
        [
            "rounds=6",
            "generator.schedule=step",
            "generator.step_every=2",
            "generator.gamma=0.1",
            "generator.lr_end=0.000001",
        ],
    )
    assert [_lr(step, t) for t in (0, 1, 2, 5)] == pytest.approx([5e-4, 5e-4, 5e-5, 5e-6])
    with pytest.raises(C.ConfigError, match="generator.lr_end"):
        C.load(None, ["generator.schedule=exponential", "generator.lr_end=0"])
    with pytest.raises(C.ConfigError, match="'generator.schedule' must be one of"):
        C.load(None, ["generator.schedule=warm"])


# ---- sweep files and resources -----------------------------------------------------------------
def test_sweep_file_errors_name_the_key(tmp_path):
    from tuning.sweep import load_sweep

    bad = {
        "searh: {}": "unknown sweep key 'searh'",
        "search: {filter.facter: [2]}": "unknown key 'filter.facter'",
        "search: {filter.factor: [0.5]}": "'filter.factor' must be >= 1.0",
        "scheduler: hyper": "'scheduler' must be one of fifo, asha, pbt",
        "stop_rules: [soon]": "unknown stop rule 'soon'",
        "pbt: {mutations: {generator.lr: [-1]}}": "'generator.lr' must be in [0.0, 1.0]",
    }
    for text, needle in bad.items():
        p = tmp_path / "s.yaml"
        p.write_text(text + "\n")
        with pytest.raises(C.ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            load_sweep(str(p), [])
    r = subprocess.run(
        [sys.executable, "-m", "tuning.sweep", "--config", str(tmp_path / "none.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert r.returncode == 2 and r.stderr.strip() == f"error: sweep file not found: {tmp_path / 'none.yaml'}"


def test_trial_reserves_its_driver_and_its_actors():
    from tuning.sweep import load_sweep
    from tuning.trainable import trial_resources

    sw = load_sweep(str(ROOT / "tuning/configs/quick_sweep.yaml"), ["sampler.num_actors=2"])
    pgf = trial_resources({"base": sw["base"], "trial_cpus": 0.25, "filter.factor": 4.0})
    # 2 samplers, 2 BaNEL trainers, the reward service and the evaluator
    assert pgf.bundles == [{"CPU": 0.25}, {"CPU": 2 * 0.5 + 2 * 0.5 + 0.25 + 0.25}]
    assert pgf.required_resources["CPU"] == pytest.approx(2.75)


# ---- the study's analysis on a synthetic Tune experiment ---------------------------------------
def test_study_report_from_tune_result_files(tmp_path):
    from tuning import study

    curves = {
        ("constant", 0): [0.010, 0.020, 0.015, 0.005],
        ("constant", 1): [0.012, 0.018, 0.010, 0.004],
        ("exponential", 0): [0.010, 0.015, 0.016, 0.016],
        ("exponential", 1): [0.011, 0.014, 0.015, 0.015],
    }
    for i, ((sched, seed), ys) in enumerate(curves.items()):
        d = tmp_path / "exp" / f"banel_trial_{i}"
        d.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps({"generator.schedule": sched, "seed": seed, "base": {}}))
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


def test_study_spearman_gives_tied_values_their_mean_rank():
    """Signals such as novel_frac repeat across rounds: ties share a mid-rank (a double argsort
    ranked [1, 2, 2, 3] as 0, 1, 2, 3 and reported a perfect 1.0 here)."""
    import math

    from tuning import study

    # mid-ranks 1, 2.5, 2.5, 4 against 1, 2, 3, 4: covariance 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert study.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9), abs=1e-12)
    assert study.spearman([3, 2, 2, 1], [1, 2, 3, 4]) == pytest.approx(-math.sqrt(0.9), abs=1e-12)
    assert study.spearman([0.5, 0.5, 0.5, 1.0, 1.0], [1, 2, 3, 4, 5]) == pytest.approx(math.sqrt(0.75), abs=1e-12)
    assert math.isnan(study.spearman([1, 1, 1], [1, 2, 3])) and math.isnan(study.spearman([1, 2], [2, 1]))


def test_select_picks_the_trial_with_the_best_fresh_final(tmp_path):
    from tuning import select

    exp, runs = tmp_path / "tune_x", tmp_path / "tune_x" / "runs"
    for tid, lr, rate in (("a1_00000", 1e-4, 0.02), ("a1_00001", 1e-3, 0.05), ("a1_00002", 3e-3, 0.01)):
        d = exp / f"banel_trial_{tid}_lr={lr}"
        d.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps({"pg.lr": lr, "seed": 100, "base": {}, "runs_root": str(runs)}))
        (runs / tid).mkdir(parents=True)
        f = {"k": int(rate * 1000), "n": 1000, "rate": rate, "lo": rate / 2, "hi": rate * 2}
        (runs / tid / "summary.json").write_text(
            json.dumps({"final_fresh": f, "base_fresh": {"rate": 0.01}, "nres": 7500})
        )
    assert select.main(["--experiment", str(exp), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "tune_x.yaml").read_text() == "pg.lr: 0.001\n"
    table = (tmp_path / "out" / "tune_x.md").read_text()
    assert "a1_00001 **chosen**" in table and "5.000e-02" in table and table.count("| a1_") == 3


def test_the_study_reads_plain_run_folders_and_sparse_evaluations(tmp_path):
    from tuning import study

    for name, support, seed, rates in (
        ("a", "token", 0, [None, 0.1, None, 0.4]),
        ("b", "none", 0, [None, 0.2, None, 0.05]),
        ("c", "none", 1, [None, 0.3, None, 0.1]),
    ):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"method": "banel", "support.kind": support, "seed": seed}))
        # c's in-run base sample held no success; its shipped base is the one to divide by
        base = {"base": {"rate": 0.01}} if name != "c" else {"base": {"rate": 0.0}, "base_fresh": {"rate": 3e-4}}
        (d / "summary.json").write_text(json.dumps(base))
        lines = [
            {"round": i + 1, "novel_frac": 1.0 - 0.3 * i, **({"eval": {"rate": r, "lo": r, "hi": r}} if r else {})}
            for i, r in enumerate(rates)
        ]
        (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    trials = study.load_runs(tmp_path, ["support.kind", "generator.schedule"])
    assert [t["dir"] for t in study.load_runs(tmp_path, ["support.kind"], skip=("b*",))] == ["a", "c"]
    # arms are named by where they depart from the defaults (support.kind: none is the default)
    assert sorted(t["arm"] for t in trials) == ["banel defaults", "banel defaults", "support.kind=token"]
    res = study.analyse(trials)
    nov = {
        (x["arm"].replace("banel defaults", "support.kind=none"), x["seed"]): x
        for x in res["per_rule"]["novel_frac < 0.5"]
    }
    # novel_frac 1.0, 0.7, 0.4: fires after round 3, whose rate is unknown: the last evaluated one (round 2) counts
    assert nov[("support.kind=none", 0)]["stop_round"] == 3 and nov[("support.kind=none", 0)]["at_stop"] == 0.2
    assert nov[("support.kind=token", 0)]["regret"] == pytest.approx(0.3)
    # the decline reads the evaluated rounds only: b peaks at round 2 (0.2), ends at 0.05
    b = res["arms"]["banel defaults"][0]
    assert (b["peak"], b["peak_round"], b["final"], b["drop"]) == (0.2, 2, 0.05, pytest.approx(0.75))
    assert b["peak_ci"] == (0.2, 0.2) and b["significant"]  # final [0.05, 0.05] lies below the peak's [0.2, 0.2]
    assert res["arms"]["support.kind=token"][0]["peak_round"] == 4
    assert {t["dir"]: t["base"] for t in trials} == {"a": 0.01, "b": 0.01, "c": 3e-4}


def test_a_decline_is_tested_per_run_and_combined_over_seeds():
    from scipy.stats import fisher_exact

    from tuning import study

    peak = {"success_k": 40, "success_n": 1000}
    last = {"success_k": 10, "success_n": 1000}
    raw = fisher_exact([[40, 960], [10, 990]], alternative="greater").pvalue
    assert study.decline_p(peak, last, looks=6) == pytest.approx(6 * raw) and 6 * raw < 1e-4
    assert study.decline_p(peak, peak, looks=6) == 1.0  # the peak is the last round: no decline
    assert study.decline_p(peak, {"success_k": 39, "success_n": 1000}, looks=6) == 1.0  # capped
    assert math.isnan(study.decline_p({"success": 0.04}, last, looks=6))  # no counts, no test
    # three runs at p = 0.1 each: together stronger evidence than any one of them
    assert study.combined_p([0.1, 0.1, 0.1]) < 0.05 < study.combined_p([0.1, 1.0, 1.0])
    assert math.isnan(study.combined_p([0.1, math.nan]))
