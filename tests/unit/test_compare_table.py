"""``python -m banel_ray.compare``: the table's arithmetic and the run scheduler (faked runs)."""

import math
import time
from pathlib import Path
from types import SimpleNamespace

from banel_ray import compare


def _est(k, n=1000, **extra):
    return {"k": k, "n": n, "rate": k / n, "lo": 0.0, "hi": 1.0, **extra}


def _rec(method, seed, final_fresh, best=50, found=0, base_fresh=10):
    return {
        "dir": f"{method}-{seed}",
        "method": method,
        "seed": seed,
        "budget": 100,
        "base": _est(10),
        "best": _est(best),
        "final": _est(final_fresh),
        "best_round": 3,
        "nres": 100,
        "rounds": 3,
        "successes": found,
        "time_s": 10.0,
        "curve": [(3, 100, best / 1000)],
        "final_fresh": _est(final_fresh, 10_000, round=3),
        "base_fresh": _est(base_fresh, 10_000, reference=True),
        "stop_fresh": None,
        "stop_round": None,
    }


def test_aggregates_against_a_hand_checked_case():
    """Five BaNEL seeds and five random-search seeds with known fresh finals (per 10,000 draws)."""
    banel = [300, 100, 200, 5000, 400]  # one outlier seed: the IQM ignores it, the mean does not
    rand = [10, 12, 9, 11, 10]
    recs = [_rec("banel", s, k, found=s) for s, k in enumerate(banel)] + [
        _rec("random", s, k) for s, k in enumerate(rand)
    ]
    rows = {r["method"]: r for r in compare.summarize(recs, reps=500)}
    assert list(rows) == ["pretrained", "banel", "random"]  # registry order, pretrained first
    b, r, pre = rows["banel"], rows["random"], rows["pretrained"]
    assert math.isclose(b["final_iqm"], (200 + 300 + 400) / 3 / 10_000)  # the middle three of five
    assert math.isclose(b["final_mean"], sum(banel) / 5 / 10_000)
    assert math.isclose(b["ratio_iqm"], (20 + 30 + 40) / 3)  # per-seed final / base (base 10 per 10,000)
    assert b["ratios"] == "30 10 20 500 40"
    assert b["final_iqm_lo"] <= b["final_iqm"] <= b["final_iqm_hi"]
    assert math.isclose(r["p_banel_better"], 1.0) and math.isnan(
        b["p_banel_better"]
    )  # every BaNEL run beats every random one
    assert math.isclose(b["successes_per_1k"], 1000 * 2 / 100)  # mean over seeds 0..4 of found / NREs
    # the optimistic column: best 50 per 1000 over the base with the most draws (10 per 10,000 fresh;
    # the in-run base, 10 per 1000, has fewer)
    assert math.isclose(b["best_ratio_mean"], 50.0)
    assert pre["base_source"] == "shipped measurement" and math.isclose(pre["final_iqm"], 10 / 10_000)
    again = {x["method"]: x for x in compare.summarize(recs, reps=500)}
    assert again["banel"]["final_iqm_lo"] == b["final_iqm_lo"]  # a seeded bootstrap: the same table again


def test_optimistic_ratio_divides_by_the_larger_base_estimate_not_an_empty_one():
    """A small in-run base estimate with no success gave an infinite optimistic ratio."""
    recs = [dict(_rec("banel", s, 100), base={"k": 0, "n": 2000, "rate": 0.0}) for s in range(3)]
    b = {r["method"]: r for r in compare.summarize(recs, reps=200)}["banel"]
    assert math.isclose(b["best_ratio_mean"], 50.0)  # 0.05 over the fresh 0.001, not 0.05 / 0


def test_probability_of_improvement_counts_ties_half():
    from banel_ray.algorithms import aggregate as agg

    p, lo, hi = agg.probability_of_improvement([5, 6, 7], [1, 2, 8], reps=500)
    assert math.isclose(p, 6 / 9) and 0 <= lo <= p <= hi <= 1
    assert math.isclose(agg.probability_of_improvement([1, 2], [1, 2], reps=500)[0], 0.5)
    assert math.isclose(agg.iqm([1, 2, 3, 4, 100]), 3.0)


def test_a_failed_run_is_resumed_from_its_checkpoint(tmp_path, monkeypatch):
    """The scheduler alone (child processes faked): a run that dies (e.g. OOM-killed) is started
    again with --resume, once per --retries; a run that keeps failing is reported, exit 1."""
    import argparse

    cmds = []

    class FakeProc:
        def __init__(self, cmd, **_):
            cmds.append(cmd)
            rd = (
                Path(cmd[cmd.index("--resume") + 1])
                if "--resume" in cmd
                else Path(next(c for c in cmd if c.startswith("run_dir=")).split("=", 1)[1])
            )
            (rd / "checkpoints").mkdir(parents=True, exist_ok=True)
            (rd / "checkpoints" / "LATEST").write_text("round_0001")
            # random succeeds at once, rnd when resumed, count never
            ok = rd.name == "random-s0" or (rd.name == "rnd-s0" and "--resume" in cmd)
            if ok:
                (rd / "summary.json").write_text("{}")
            self.rc = 0 if ok else 1

        def poll(self):
            return self.rc

    monkeypatch.setattr(compare.subprocess, "Popen", FakeProc)
    # the scheduler polls once a second; the fake runs have ended by the first poll
    monkeypatch.setattr(compare, "time", SimpleNamespace(time=time.time, sleep=lambda s: None))
    args = argparse.Namespace(config=None, set=[], parallel=2, retries=1, progress_every=1000)
    lines = []
    rc = compare.run_all(args, ["random", "rnd", "count"], [0], tmp_path, log=lines.append)
    text = "\n".join(lines)
    assert rc == 1
    assert "rnd seed 0: failed (exit 1), retry 1 of 1" in text and "rnd seed 0: resuming" in text
    assert "rnd seed 0: done" in text and "random seed 0: done" in text
    assert "count seed 0: FAILED (exit 1)" in text and "failed: count s0" in text
    assert sum("--resume" in c for c in cmds) == 2  # rnd once, count once; random never


def test_tuned_settings_are_applied_per_method(tmp_path):
    import argparse

    (tmp_path / "tune_nsr.yaml").write_text("pg.lr: 0.001\nrnd.coef: 0.3\n")
    args = argparse.Namespace(tuned=str(tmp_path))
    assert compare.method_sets(args, "nsr") == ["pg.lr=0.001", "rnd.coef=0.3"]
    assert compare.method_sets(args, "banel") == []  # no file: the config's own settings
    assert compare.method_sets(argparse.Namespace(tuned=None), "nsr") == []


def test_computed_rates_are_the_headline_where_a_task_computes_them(tmp_path):
    """An importance-sampled rate of 1e-22 is the run's fresh final, not a sampled 0 of 20,000; the
    pretrained row takes the base estimate and its interval."""
    import json

    def is_est(rate):
        return {
            "rate": rate,
            "lo": rate / 2,
            "hi": rate * 2,
            "n": 4000,
            "exact": False,
            "method": "importance sampling",
        }

    d = tmp_path / "banel-s0"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"method": "banel", "seed": 0, "budget": 100}))
    summary = {
        "base": is_est(1e-22),
        "final": is_est(3e-21),
        "best": is_est(3e-21),
        "rounds": 3,
        "nres": 100,
        "successes": 0,
        "final_fresh": _est(0, 20_000, round=3, fresh=True),  # what sampling sees at this rate
        "base_fresh": _est(0, 20_000, fresh=True),
    }
    (d / "summary.json").write_text(json.dumps(summary))
    (rec,) = compare.collect(tmp_path)
    assert rec["final_fresh"]["rate"] == 3e-21 and rec["final_fresh"]["fresh"] and rec["final_fresh"]["round"] == 3
    assert rec["base_fresh"]["rate"] == 1e-22
    rows = {r["method"]: r for r in compare.summarize([rec], reps=100)}
    pre = rows["pretrained"]
    assert (pre["final_iqm"], pre["final_iqm_lo"], pre["final_iqm_hi"]) == (1e-22, 5e-23, 2e-22)
    assert pre["base_source"] == "importance sampling" and math.isclose(rows["banel"]["ratio_iqm"], 30.0)
    summary["final"]["certain_lo"], summary["final"]["distinct_hits"] = 1e-20, 4  # the mass of the found successes
    (d / "summary.json").write_text(json.dumps(summary))
    (rec,) = compare.collect(tmp_path)
    assert math.isclose(compare.certain_lower_bound(rec), 1e-20 / 2e-22)  # over the prior's upper limit
    text = compare.markdown(compare.summarize([rec], reps=100), [rec])
    assert "| banel | s0: 1.00e-20 (50x) | 50x |" in text
    summary["final"].pop("exact")  # a sampled record: the fresh evaluation stays the headline
    (d / "summary.json").write_text(json.dumps(summary))
    assert compare.collect(tmp_path)[0]["final_fresh"]["n"] == 20_000


# ---- how early successes come: successes-so-far AUC and NREs to the first success ---------------

# The hand-checked table: three rounds of 250 NREs with 0, 2, 1 new distinct paid successes, budget
# 1000. A round's successes count from the end of that round, so the cumulative count is 0 on
# [0, 250) (round 1 not ended) and [250, 500) (round 1 found none), 2 on [500, 750) and 3 on
# [750, 1000], held there after the run's last round:
#   AUC = (0 * 250 + 0 * 250 + 2 * 250 + 3 * 250) / 1000 = 1.25; first success at 500 NREs.
HAND = [(250, 0), (250, 2), (250, 1)]


def _brute_auc(rounds, budget):
    """The same area by counting, NRE by NRE: c(n) for n = 0 .. budget - 1 (integer NREs)."""
    ends, spent = [], 0
    for nres, new in rounds:
        spent += nres
        ends += [spent] * new
    return sum(sum(1 for e in ends if e <= n) for n in range(budget)) / budget


def test_success_auc_and_first_success_on_a_hand_checked_table():
    from banel_ray.algorithms import discovery as D

    assert D.success_auc(HAND, 1000) == 1.25 == _brute_auc(HAND, 1000)
    assert D.nres_to_first_success(HAND) == 500
    # spending the rest of the budget and finding nothing is the same as stopping early
    assert D.success_auc(HAND + [(250, 0)], 1000) == 1.25
    # successes paid for in a round that ends at the budget add no area (found with nothing left)
    assert D.success_auc(HAND + [(250, 4)], 1000) == 1.25
    # a run that stops early holds its last count up to the budget: 1 success from 100 to 1000 NREs
    assert D.success_auc([(100, 1), (100, 0)], 1000) == 0.9 == _brute_auc([(100, 1), (100, 0)], 1000)
    assert D.nres_to_first_success([(100, 1), (100, 0)]) == 100
    # no success: area 0, first success never
    assert D.success_auc([(250, 0)] * 4, 1000) == 0.0
    assert D.nres_to_first_success([(250, 0)] * 4) == math.inf and D.nres_to_first_success([]) == math.inf
    # NREs past the budget are cut at the budget; no budget, no area
    assert D.success_auc([(600, 1), (600, 1)], 1000) == 0.4
    assert math.isnan(D.success_auc(HAND, 0))
    irregular = [(37, 0), (120, 3), (5, 0), (250, 1), (88, 7)]
    assert math.isclose(D.success_auc(irregular, 700), _brute_auc(irregular, 700))


def test_median_first_success_counts_runs_that_found_none():
    from banel_ray.algorithms import discovery as D

    inf = math.inf
    assert D.median_first_success([500, inf, 250]) == (500, 1)
    assert D.median_first_success([250, inf, inf]) == (inf, 2)  # most runs found none: the median is none
    assert D.median_first_success([250, 500, 750, inf]) == (625, 1)
    assert D.median_first_success([250, 500, inf, inf]) == (inf, 2)
    median, none = D.median_first_success([])
    assert math.isnan(median) and none == 0


def test_the_table_shows_how_early_each_run_found_successes(tmp_path):
    """From run folders: the hand table (seed 0), a run that found nothing (seed 1) and one that
    found a success in its first round and then stopped early (seed 2), budget 1000."""
    import csv
    import json

    runs = tmp_path / "runs"
    tables = {0: HAND, 1: [(250, 0)] * 4, 2: [(250, 1), (250, 0)]}
    for seed, rounds in tables.items():
        d = runs / f"banel-s{seed}"
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"method": "banel", "seed": seed, "budget": 1000}))
        lines, spent, found = [], 0, 0
        for i, (nres, new) in enumerate(rounds, 1):
            spent, found = spent + nres, found + new
            lines.append(json.dumps({"round": i, "nres": spent, "paid": nres, "successes": new}))
        (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        summary = {
            "base": _est(10),
            "final": _est(20),
            "best": _est(20),
            "rounds": len(rounds),
            "nres": spent,
            "successes": found,
            "final_fresh": _est(20, round=len(rounds), fresh=True),
            "base_fresh": _est(10, fresh=True),
        }
        (d / "summary.json").write_text(json.dumps(summary))
    recs = {r["seed"]: r for r in compare.collect(runs)}
    assert recs[0]["success_auc"] == 1.25 and recs[0]["first_success_nres"] == 500
    assert recs[1]["success_auc"] == 0.0 and recs[1]["first_success_nres"] == math.inf
    assert recs[2]["success_auc"] == 0.75 and recs[2]["first_success_nres"] == 250  # 1 from 250 to 1000
    rows = {r["method"]: r for r in compare.write_table(runs, tmp_path / "out", reps=200)}
    b = rows["banel"]
    assert math.isclose(b["success_auc_mean"], (1.25 + 0.0 + 0.75) / 3)
    assert b["success_auc_iqm_lo"] <= b["success_auc_iqm"] <= b["success_auc_iqm_hi"]
    assert (b["first_success_nres_median"], b["runs_without_success"]) == (500, 1)  # of 250, 500, none
    text = (tmp_path / "out" / "table.md").read_text()
    assert "| 500 (1 of 3 none) |" in text
    assert "banel, seed 1: " in text and ", AUC 0.0, first none" in text and ", AUC 1.2, first 500" in text
    per_run = {int(r["seed"]): r for r in csv.DictReader(open(tmp_path / "out" / "runs.csv"))}
    assert [per_run[s]["first_success_nres"] for s in (0, 1, 2)] == ["500", "inf", "250"]
    assert float(per_run[0]["success_auc"]) == 1.25 and float(per_run[1]["first_success_nres"]) == math.inf
    table = {r["method"]: r for r in csv.DictReader(open(tmp_path / "out" / "table.csv"))}
    assert table["banel"]["runs_without_success"] == "1" and float(table["banel"]["first_success_nres_median"]) == 500


def test_without_matplotlib_the_table_is_written_and_the_plot_skipped_with_one_warning(tmp_path, monkeypatch, capsys):
    import sys

    from banel_ray.report import plots

    recs = [_rec(m, s, 100 + s) for m in ("banel", "random") for s in range(2)]
    monkeypatch.setattr(compare, "collect", lambda root: recs)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    compare.write_table(tmp_path, tmp_path / "out", reps=50)  # before: a traceback after every run was paid
    assert (tmp_path / "out" / "table.md").exists() and (tmp_path / "out" / "runs.csv").exists()
    assert capsys.readouterr().err.splitlines() == [plots.SKIPPED]
    assert not list((tmp_path / "out").glob("*.png"))
