"""tuning/: positive-free stop rules and the generator schedule (pure, milliseconds), sweep-file
checks and the study's analysis on a synthetic experiment. Real Tune sweeps: integration tier."""

import json
import math
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


def test_an_unwritable_storage_folder_is_refused_before_ray_starts(monkeypatch, capsys):
    import ray

    from tuning import sweep

    monkeypatch.setattr(sweep, "init_ray", lambda *a: pytest.fail("Ray was started"))
    assert sweep.main(["--storage", "/proc/banel_sweep", "--name", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: storage /proc/banel_sweep cannot be written (cannot make /proc/banel_sweep")
    assert "\n" not in err and not ray.is_initialized()


def test_trial_reserves_its_driver_and_its_actors():
    from tuning.sweep import load_sweep
    from tuning.trainable import trial_resources

    sw = load_sweep(str(ROOT / "tuning/configs/quick_sweep.yaml"), ["sampler.num_actors=2"])
    pgf = trial_resources({"base": sw["base"], "trial_cpus": 0.25, "filter.factor": 4.0})
    # 2 samplers, 2 BaNEL trainers, the reward service and the evaluator
    assert pgf.bundles == [{"CPU": 0.25}, {"CPU": 2 * 0.5 + 2 * 0.5 + 0.25 + 0.25}]
    assert pgf.required_resources["CPU"] == pytest.approx(2.75)


# ---- reading sweeps: tests/integration/test_tuning_results.py reads real Tune experiments ------
def test_study_and_select_refuse_a_folder_that_is_not_a_tune_experiment(tmp_path, capsys):
    """Hand-made trial folders (params.json, result.json) are not read: sweeps are read with Tune's
    ResultGrid, which needs the experiment's state; the error is one line, exit 2, and no Ray."""
    import ray

    from tuning import select, study

    d = tmp_path / "exp" / "banel_trial_0"
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps({"seed": 0, "base": {}, "runs_root": str(tmp_path)}))
    (d / "result.json").write_text(json.dumps({"round": 1, "success": 0.1}) + "\n")
    assert select.main(["--experiment", str(tmp_path / "exp"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --experiment: {tmp_path / 'exp'} is not a Tune experiment folder (no tuner.pkl)"
    )
    assert study.main(["--experiment", str(tmp_path / "exp"), "--out", str(tmp_path / "rep")]) == 2
    assert "is not a Tune experiment folder (no tuner.pkl)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not ray.is_initialized()


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
