"""``python -m banel_ray.compare``: BaNEL against its baselines, methods x seeds, one table.

Each (method, seed) is an ordinary ``python -m banel_ray.run`` in its own folder under
``OUT/runs`` (``--parallel`` of them at once), so every method uses the same sampler and oracle
actors, NRE budget and ledger. The table (``table.md``, ``table.csv``, ``runs.csv``) and the plot
(``success_vs_nres.png``) are computed from the run folders only; ``--from-runs DIR`` rebuilds them
from existing folders. A finished run is not run again; an interrupted one is resumed.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from banel_ray import config as C
from banel_ray import trust
from banel_ray.algorithms import aggregate as agg
from banel_ray.algorithms import discovery
from banel_ray.algorithms import stats as alg
from banel_ray.cli import Parser, fail
from banel_ray.core import remote
from banel_ray.core.estimate import SAMPLED, Estimate
from banel_ray.core.method_registry import METHODS
from banel_ray.core.run_folder import RunFolder
from banel_ray.report import metrics as K

RESERVED = ("method", "seed", "run_dir")  # set by compare itself, per run

EPILOG = """examples:
  python -m banel_ray.compare --methods banel,random,reinforce,rnd,count --seeds 0-4 \\
      --config banel_ray/configs/addition_compare.yaml --parallel 2 --out results/compare-addition
  python -m banel_ray.compare --methods banel,rnd --seeds 0,1 --set budget=500 --out /tmp/cmp
  python -m banel_ray.compare --from-runs results/compare-addition/runs --out results/compare-addition
  python -m banel_ray.compare --methods banel,rnd --seeds 0-2 --out s3://bucket/compare-addition
"""


def parse_args(argv=None):
    p = Parser(prog="python -m banel_ray.compare", description=__doc__.split("\n\n")[0].strip(), epilog=EPILOG)
    p.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)} (default: all)"
    )
    p.add_argument("--seeds", default="0", help="comma-separated seeds or a range a-b (default: 0)")
    p.add_argument("--config", metavar="FILE", help="YAML config shared by every run (default: quick.yaml)")
    p.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], help="override one key for every run, repeatable"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        required=True,
        help="folder or URI (s3://, gs://: staged locally, copied up after every run) for runs/, logs/ and the table",
    )
    p.add_argument(
        "--parallel",
        type=int,
        help="runs at once (default 1; 2 on a 2-core machine; with --ray: as many as the cluster has CPUs for)",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run each (method, seed) as a Ray task on this cluster (an address ray.init takes: auto, "
        "HOST:PORT, ray://HOST:10001) instead of a child process here; --out must be a folder every node sees",
    )
    p.add_argument(
        "--task-cpus",
        type=float,
        default=1.0,
        help="with --ray: CPUs each run's task reserves (default 1: a runtime=local run whole; a runtime=ray "
        "run's actors reserve their own)",
    )
    p.add_argument("--from-runs", metavar="DIR", help="only rebuild the table from these run folders")
    p.add_argument(
        "--retries",
        type=int,
        default=1,
        help="restarts of a failed run, from its last checkpoint (default 1; e.g. a worker OOM-killed)",
    )
    p.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")
    p.add_argument("--bootstrap-reps", type=int, default=agg.REPS, help=f"bootstrap replicates (default {agg.REPS})")
    p.add_argument(
        "--tuned",
        metavar="DIR",
        help="per-method settings: DIR/tune_<method>.yaml (written by "
        "python -m tuning.select), applied after --config and --set",
    )
    return p.parse_args(argv)


def parse_methods(text: str) -> list[str]:
    ms = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in ms if m not in METHODS]
    if not ms or bad:
        raise C.ConfigError(f"--methods: unknown method {bad[0] if bad else text!r}; allowed: {', '.join(METHODS)}")
    return list(dict.fromkeys(ms))


def parse_seeds(text: str) -> list[int]:
    try:
        out: list[int] = []
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                out += range(int(a), int(b) + 1)
            elif part:
                out.append(int(part))
    except ValueError:
        out = []
    if not out or min(out) < 0:
        raise C.ConfigError(f"--seeds must be non-negative integers, comma-separated or a range a-b, got {text!r}")
    return list(dict.fromkeys(out))


# ---- the table, from run folders only ------------------------------------------------------------


def collect(runs_root: Path) -> list[dict]:
    """One record per finished run folder (config.json and summary.json present)."""
    recs = []
    for d in sorted(Path(runs_root).iterdir()) if Path(runs_root).is_dir() else []:
        run = RunFolder(d)
        if not (run.finished() and run.has_config()):
            continue
        cfg, s = run.config(), run.summary()
        curve, busy = [], (s["base"] or {}).get("t_eval", 0.0) + s.get("t_fresh_eval", 0.0)
        rounds, spent = [], 0  # (NREs this round, new distinct paid successes this round)
        for m in run.metrics():
            busy += m.get("t_round", 0.0) + (m.get(K.EVAL) or {}).get("t_eval", 0.0)
            if m.get(K.EVAL):
                curve.append((m[K.ROUND], m[K.NRES], m[K.EVAL]["rate"]))
            rounds.append((m[K.NRES] - spent, m[K.SUCCESSES]))  # K.NRES is cumulative
            spent = m[K.NRES]
        recs.append(
            {
                "dir": str(d),
                "method": cfg.get("method", "banel"),
                "seed": cfg["seed"],
                "budget": cfg["budget"],
                "base": s["base"],
                "best": s["best"],
                "final": s["final"],
                "best_round": s.get("best_round"),
                "final_fresh": run.largest_eval(_computed(s, "final") or s.get(K.FINAL_FRESH)),
                "base_fresh": run.largest_eval(_computed(s, "base")) or s.get(K.BASE_FRESH),
                "stop_fresh": run.largest_eval(s.get(K.STOP_FRESH)),
                "stop_round": s.get("stop_round"),
                "nres": s[K.NRES],
                "rounds": s["rounds"],
                "successes": s[K.SUCCESSES],
                "curve": curve,
                "success_auc": discovery.success_auc(rounds, cfg["budget"]),
                "first_success_nres": discovery.nres_to_first_success(rounds),
                "time_s": busy,  # rounds + evaluations; a resumed run's invocations together
                "settings": {k: v for k, v in sorted(cfg.items()) if k.startswith(SETTING_PREFIXES)},
            }
        )
    return recs


def _computed(summary: dict, key: str) -> dict | None:
    """A rate the task computed (exact, or importance sampled on fresh draws) is the headline: a
    sampled fresh estimate of a 1e-20 rate sees nothing."""
    est = Estimate.read(summary.get(key))
    if est is None or not est.computed or not summary.get("rounds"):
        return None
    return dict(summary[key], fresh=True, round=summary["rounds"] if key == "final" else 0)


# the knobs each method is tuned on (shown with the table: what each row ran with)
SETTING_PREFIXES = (
    "pg.",
    "rnd.",
    "count.",
    "wr.",
    "npo.",
    "filter.factor",
    "negative.epochs",
    "support.kind",
    "support.threshold",
    "generator.lr",
    "generator.kl_coef",
)
RELEVANT = {
    "banel": ("filter.", "negative.", "support.", "generator."),
    "random": (),
    "reinforce": ("pg.",),
    "nsr": ("pg.",),
    "w_reinforce": ("pg.", "wr."),
    "npo": ("pg.", "npo."),
    "rnd": ("pg.", "rnd."),
    "count": ("pg.", "count."),
}


def _order(method: str) -> int:
    return list(METHODS).index(method) if method in METHODS else len(METHODS)


def _rate(est) -> float:
    return float(est["rate"]) if est else math.nan


def _base(rec: dict) -> dict | None:
    """The base rate the optimistic ratio divides by: the larger of the run's in-run base estimate and
    its fresh (or shipped) one; a 2,000-draw in-run estimate of a 3e-4 rate is often 0."""
    ests = [e for e in (rec.get("base"), rec.get("base_fresh")) if Estimate.read(e)]
    return max(ests, key=lambda e: Estimate.from_dict(e).draws, default=None)


def summarize(recs: list[dict], reps: int = agg.REPS) -> list[dict]:
    """One row per method (registry order) plus the pretrained model's row, from run records.

    Honest columns: each run's final generator on a fresh sample (``final_fresh``) against the
    prior's rate (``base_fresh``); across seeds their interquartile mean with a stratified
    bootstrap 95% interval, per-seed ratios, and the probability that BaNEL's run beats this
    method's. The paper's cumulative best over in-run estimates is kept, labelled optimistic.
    How early successes come (``algorithms/discovery.py``): the successes-so-far AUC's IQM with the
    same interval, and the median NREs to the first success with the count of runs that found none.
    """
    rows = []
    bases = {}
    for r in recs:  # the prior is the same for every method of a seed: one base per seed
        if r["base_fresh"]:
            bases.setdefault(r["seed"], r["base_fresh"])
    if bases:
        b = [Estimate.from_dict(x) for x in bases.values()]
        ref = b[0] if all(x.reference for x in b) else None  # one shipped measurement for all
        if all(x.kind == SAMPLED for x in b):
            k, n = (ref.k, ref.n) if ref else (sum(x.k for x in b), sum(x.n for x in b))
            rate, (lo, hi) = k / n, alg.clopper_pearson(k, n)
            source = "shipped measurement" if ref else "fresh, pooled"
        else:  # computed rates: the estimate with the most draws (the same prior and draws: one value)
            ref = max(b, key=lambda x: x.draws)
            rate, lo, hi, source = ref.rate, ref.lo, ref.hi, ref.method
        rows.append(
            {
                "method": "pretrained",
                "seeds": len(bases),
                "final_iqm": rate,
                "final_iqm_lo": lo,
                "final_iqm_hi": hi,
                "final_mean": rate,
                "ratio_iqm": 1.0,
                "ratio_iqm_lo": math.nan,
                "ratio_iqm_hi": math.nan,
                "ratios": "",
                "p_banel_better": math.nan,
                "p_lo": math.nan,
                "p_hi": math.nan,
                "best_mean": math.nan,
                "best_ratio_mean": math.nan,
                "inrun_final_mean": math.nan,
                "successes_per_1k": 0.0,
                "nres_mean": 0.0,
                "time_s_mean": math.nan,
                "base_source": source,
                "success_auc_iqm": math.nan,
                "success_auc_iqm_lo": math.nan,
                "success_auc_iqm_hi": math.nan,
                "success_auc_mean": math.nan,
                "first_success_nres_median": math.nan,
                "runs_without_success": "",
            }
        )
    banel = sorted((r for r in recs if r["method"] == "banel" and r["final_fresh"]), key=lambda r: r["seed"])
    for method in sorted({r["method"] for r in recs}, key=_order):
        rs = sorted(
            (r for r in recs if r["method"] == method and r["final_fresh"] and r["base_fresh"]), key=lambda r: r["seed"]
        )
        if not rs:
            continue
        final = [_rate(r["final_fresh"]) for r in rs]
        ratios = [alg.improvement_factor(_rate(r["final_fresh"]), _rate(r["base_fresh"])) for r in rs]
        f_iqm, f_lo, f_hi = agg.iqm_interval(final, reps=reps)
        r_iqm, r_lo, r_hi = agg.iqm_interval(ratios, reps=reps)
        p, p_lo, p_hi = (
            (math.nan,) * 3
            if method == "banel" or len(banel) < 1
            else agg.probability_of_improvement([_rate(r["final_fresh"]) for r in banel], final, reps=reps)
        )
        best = [_rate(r["best"]) for r in rs if r["best"]]
        auc = [r["success_auc"] for r in rs if not math.isnan(r.get("success_auc", math.nan))]
        a_iqm, a_lo, a_hi = agg.iqm_interval(auc, reps=reps) if auc else (math.nan,) * 3
        firsts = [r["first_success_nres"] for r in rs if "first_success_nres" in r]
        first_median, first_none = discovery.median_first_success(firsts)
        best_ratio = [alg.improvement_factor(_rate(r["best"]), _rate(_base(r))) for r in rs if r["best"] and _base(r)]
        rows.append(
            {
                "method": method,
                "seeds": len(rs),
                "final_iqm": f_iqm,
                "final_iqm_lo": f_lo,
                "final_iqm_hi": f_hi,
                "final_mean": float(np.mean(final)),
                "ratio_iqm": r_iqm,
                "ratio_iqm_lo": r_lo,
                "ratio_iqm_hi": r_hi,
                "ratios": " ".join(f"{x:.3g}" for x in ratios),
                "p_banel_better": p,
                "p_lo": p_lo,
                "p_hi": p_hi,
                "best_mean": float(np.mean(best)) if best else math.nan,
                "best_ratio_mean": float(np.mean(best_ratio)) if best_ratio else math.nan,
                "inrun_final_mean": float(np.mean([_rate(r["final"]) for r in rs if r["final"]]))
                if rs[0]["final"]
                else math.nan,
                "successes_per_1k": float(np.mean([1000 * r["successes"] / max(r["nres"], 1) for r in rs])),
                "nres_mean": float(np.mean([r["nres"] for r in rs])),
                "time_s_mean": float(np.mean([r["time_s"] for r in rs])),
                "base_source": "",
                "success_auc_iqm": a_iqm,
                "success_auc_iqm_lo": a_lo,
                "success_auc_iqm_hi": a_hi,
                "success_auc_mean": float(np.mean(auc)) if auc else math.nan,
                "first_success_nres_median": first_median,
                "runs_without_success": first_none,
                "first_success_runs": len(firsts),
            }
        )
    return rows


CSV_COLUMNS = (
    "method",
    "seeds",
    "final_iqm",
    "final_iqm_lo",
    "final_iqm_hi",
    "final_mean",
    "ratio_iqm",
    "ratio_iqm_lo",
    "ratio_iqm_hi",
    "ratios",
    "p_banel_better",
    "p_lo",
    "p_hi",
    "best_mean",
    "best_ratio_mean",
    "inrun_final_mean",
    "successes_per_1k",
    "nres_mean",
    "time_s_mean",
    "base_source",
    "success_auc_iqm",
    "success_auc_iqm_lo",
    "success_auc_iqm_hi",
    "success_auc_mean",
    "first_success_nres_median",
    "runs_without_success",
)


def _g(x: float, fmt: str = ".2e") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _nres(x: float) -> str:
    """NREs to a run's first success: "none" where it found none."""
    return "none" if math.isinf(x) else _g(x, ".0f")


def _first(row: dict) -> str:
    """A method's median NREs to the first success, with how many of its runs found none."""
    none = row["runs_without_success"]
    cell = _nres(row["first_success_nres_median"])
    return f"{cell} ({none} of {row['first_success_runs']} none)" if none else cell


def markdown(rows: list[dict], recs: list[dict]) -> str:
    budgets = sorted({r["budget"] for r in recs})
    finals = [Estimate.from_dict(r["final_fresh"]) for r in recs if r["final_fresh"]]
    fresh = sorted({e.n for e in finals if e.n is not None})
    how = sorted({e.method for e in finals if e.method is not None})
    lines = [
        f"Final generator of each run on a fresh sample ({', '.join(f'{n:,}' for n in fresh)} draws"
        f"{''.join(f', {h}' for h in how)}, not NREs), "
        f"NRE budget {', '.join(map(str, budgets))}. Built by `python -m banel_ray.compare` from {len(recs)} run "
        f"folders.",
        "",
        "| method | seeds | final rate, IQM [95% CI] | final/base, IQM [95% CI] | final/base per seed | "
        "P(BaNEL run > this) [95% CI] | distinct successes per 1k NREs | successes-so-far AUC, IQM [95% CI] | "
        "NREs to first success, median | optimistic: cumulative best (mean), x base | NREs (mean) | s (mean) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["method"] == "pretrained":
            lines.append(
                f"| pretrained ({r['base_source']}) | {r['seeds']} | {_g(r['final_iqm'])} "
                f"[{_g(r['final_iqm_lo'])}, {_g(r['final_iqm_hi'])}] | 1x | | | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['method']} | {r['seeds']} | {_g(r['final_iqm'])} [{_g(r['final_iqm_lo'])}, {_g(r['final_iqm_hi'])}] | "
            f"{_g(r['ratio_iqm'], '.3g')}x [{_g(r['ratio_iqm_lo'], '.3g')}, {_g(r['ratio_iqm_hi'], '.3g')}] | "
            f"{r['ratios']} | {_g(r['p_banel_better'], '.2f')} [{_g(r['p_lo'], '.2f')}, {_g(r['p_hi'], '.2f')}] | "
            f"{_g(r['successes_per_1k'], '.1f')} | {_g(r['success_auc_iqm'], '.1f')} "
            f"[{_g(r['success_auc_iqm_lo'], '.1f')}, {_g(r['success_auc_iqm_hi'], '.1f')}] | {_first(r)} | "
            f"{_g(r['best_mean'])}, {_g(r['best_ratio_mean'], '.3g')}x | "
            f"{_g(r['nres_mean'], '.0f')} | {_g(r['time_s_mean'], '.0f')} |"
        )
    lines += [
        "",
        "IQM: interquartile mean over seeds; 95% CI: stratified bootstrap (rliable, seeded). pretrained: the prior's "
        "rate (its shipped measurement when every run used it, else the runs' fresh base draws pooled), 95% "
        "Clopper-Pearson; where the task computes rates (exact, or importance sampled), that estimate and its "
        "interval. P(BaNEL run > this): probability that a random BaNEL run's fresh final rate beats a random "
        "run of this method (ties half). The cumulative best is the maximum of a run's in-run estimates, as the paper "
        "reports it: optimistic (selection over noisy estimates; random search, which learns nothing, gains on it). "
        "Successes-so-far AUC: the number of distinct paid successes found so far, averaged over NREs 0 to the "
        "budget (a round's successes count from the end of that round; a run that stops early keeps its last count "
        "up to the budget). NREs to first success: cumulative NREs at the end of the first round that paid for a "
        "success (round granularity); median over seeds, a run that found none counting as never (none: at least "
        "half found none), with the number of such runs.",
        "",
        "Settings (method knobs as the runs had them):",
        "",
    ]
    for method in sorted({r["method"] for r in recs}, key=_order):
        st = next(r.get("settings", {}) for r in recs if r["method"] == method)
        keep = (
            {k: v for k, v in st.items() if k.startswith(RELEVANT.get(method, ("",)))} if RELEVANT.get(method) else {}
        )
        lines.append(f"- {method}: " + (", ".join(f"{k}={v}" for k, v in keep.items()) or "no knobs"))
    lines += [
        "",
        "Per run (method, seed: fresh final [95% CI] (round) / prior, stop-rule round fresh, distinct successes, NREs, "
        "successes-so-far AUC, NREs to first success):",
        "",
    ]
    for r in sorted(recs, key=lambda r: (_order(r["method"]), r["seed"])):
        ff, bf, sf = r["final_fresh"], r["base_fresh"], r["stop_fresh"]
        lines.append(
            f"- {r['method']}, seed {r['seed']}: "
            + (
                f"{_g(ff['rate'])} [{_g(ff['lo'])}, {_g(ff['hi'])}] ({ff.get('round')}) / {_g(_rate(bf))}"
                if ff
                else "no fresh final"
            )
            + (f", stop round {r['stop_round']}: {_g(sf['rate'])}" if sf else "")
            + f", {r['successes']}, {r['nres']}"
            + (
                f", AUC {_g(r['success_auc'], '.1f')}, first {_nres(r['first_success_nres'])}"
                if "success_auc" in r
                else ""
            )
            + _diagnostics(Estimate.read(ff))
        )
    return "\n".join(lines + certain_bounds(recs)) + "\n"


def certain_lower_bound(rec: dict) -> float:
    """A lower bound on final/base that needs no trust in the final's estimate: the final
    generator's own probability of the distinct successes its estimator found, over the upper end
    of the prior's 95% interval (nan when the records carry no such mass)."""
    ff, bf = Estimate.read(rec.get("final_fresh")), Estimate.read(rec.get("base_fresh"))
    if ff is None or ff.get("certain_lo") is None or bf is None or not bf.hi:
        return math.nan
    return ff.get("certain_lo") / bf.hi


def certain_bounds(recs: list[dict]) -> list[str]:
    """The lower bounds per method and seed (importance-sampled tasks only)."""
    by: dict = {}
    for r in sorted(recs, key=lambda r: (_order(r["method"]), r["seed"])):
        b = certain_lower_bound(r)
        if not math.isnan(b):
            by.setdefault(r["method"], []).append((r["seed"], b, r["final_fresh"]["certain_lo"]))
    if not by:
        return []
    out = [
        "",
        "Certain lower bounds on final/base (no trust in an estimate of the final needed): the final generator's own "
        "probability of the distinct successes its estimator found, over the upper end of the prior's 95% interval.",
        "",
        "| method | per seed: final's found mass (lower bound on final/base) | smallest lower bound |",
        "|---|---|---|",
    ]
    for m, xs in by.items():
        cells = ", ".join(f"s{s}: {_g(lo)} ({_g(b, '.3g')}x)" for s, b, lo in xs)
        out.append(f"| {m} | {cells} | {_g(min(b for _, b, _ in xs), '.3g')}x |")
    return out


def _diagnostics(est: Estimate | None) -> str:
    """An importance-sampled final's trust: ESS, the flag, and the certain lower bound ("" for
    an estimate without an ESS)."""
    if est is None or est.ess is None:
        return ""
    return (
        f"; {est.draws:,} draws, ESS {est.ess:.1f}, largest weight share {est.get('max_weight_share'):.2f}, "
        f"{'reliable' if est.reliable else 'UNRELIABLE'}"
        + (
            f", certain >= {_g(est.get('certain_lo'))} ({est.get('distinct_hits')} distinct successes found)"
            if est.get("certain_lo") is not None
            else ""
        )
    )


def plot(recs: list[dict], out: Path) -> Path:
    """Per method: the in-run estimate (independent draws each time) against NREs, each seed faint
    and the mean bold, with the fresh final of each run as a marker at its NREs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    ns = [e.n for e in (Estimate.read(r["base"]) for r in recs) if e and e.n]
    floor = 0.5 / max(ns or [1])
    for i, method in enumerate(sorted({r["method"] for r in recs}, key=_order)):
        rs = [r for r in recs if r["method"] == method]
        color = f"C{i}"
        rounds = sorted({c[0] for r in rs for c in r["curve"]})
        for r in rs:
            xs = [0.0] + [c[1] for c in r["curve"]]
            ys = [_rate(r["base"]) if r["base"] else math.nan] + [c[2] for c in r["curve"]]
            ax.plot(xs, np.maximum(ys, floor), "-", color=color, alpha=0.25, linewidth=1)
            if r["final_fresh"]:
                ax.plot([r["nres"]], [max(_rate(r["final_fresh"]), floor)], "D", color=color, markersize=4)
        mx = [float(np.mean([c[1] for r in rs for c in r["curve"] if c[0] == rd])) for rd in rounds]
        my = [float(np.mean([c[2] for r in rs for c in r["curve"] if c[0] == rd])) for rd in rounds]
        ax.plot(
            mx,
            np.maximum(my, floor),
            "o-",
            color=color,
            linewidth=2,
            markersize=3,
            label=f"{method} ({len(rs)} seed{'s' if len(rs) > 1 else ''})",
        )
    base = [_rate(r["base_fresh"]) for r in recs if r["base_fresh"]]
    if base:
        ax.axhline(float(np.mean(base)), color="gray", ls="--", label="prior")
    ax.set_yscale("log")
    ax.set_xlabel("NREs")
    ax.set_ylabel(f"success rate (0 drawn at {floor:.0e})")
    ax.set_title("in-run estimates (lines; mean bold) and fresh-sample finals (diamonds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out) / "success_vs_nres.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_table(runs_root: Path, out: Path, reps: int = agg.REPS) -> list[dict]:
    recs = collect(runs_root)
    if not recs:
        raise C.ConfigError(f"no finished run folders (config.json and summary.json) under {runs_root}")
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(recs, reps)
    (out / "table.md").write_text(markdown(rows, recs))
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in CSV_COLUMNS})
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "method",
                "seed",
                "final_fresh_rate",
                "final_fresh_lo",
                "final_fresh_hi",
                "final_fresh_n",
                "base_rate",
                "final_over_base",
                "stop_round",
                "stop_fresh_rate",
                "best_inrun_rate",
                "best_round",
                "inrun_final_rate",
                "successes",
                "nres",
                "time_s",
                "success_auc",
                "first_success_nres",
            ]
        )
        for r in sorted(recs, key=lambda r: (_order(r["method"]), r["seed"])):
            ff, bf, sf = r["final_fresh"] or {}, r["base_fresh"] or {}, r["stop_fresh"] or {}
            w.writerow(
                [
                    r["method"],
                    r["seed"],
                    ff.get("rate"),
                    ff.get("lo"),
                    ff.get("hi"),
                    ff.get("n"),
                    bf.get("rate"),
                    alg.improvement_factor(ff["rate"], bf["rate"]) if ff and bf else None,
                    r["stop_round"],
                    sf.get("rate"),
                    _rate(r["best"]),
                    r["best_round"],
                    _rate(r["final"]),
                    r["successes"],
                    r["nres"],
                    round(r["time_s"], 1),
                    r.get("success_auc"),
                    _nres(r["first_success_nres"]).replace("none", "inf") if "first_success_nres" in r else None,
                ]
            )
    from banel_ray.report import plots

    if plots.available():  # optional: the runs are paid for by now, the table is written anyway
        plot(recs, out)
    else:
        print(plots.SKIPPED, file=sys.stderr)
    return rows


# ---- running methods x seeds ---------------------------------------------------------------------


def method_sets(args, method: str) -> list[str]:
    """``key=value`` overrides of one method from its tuned settings file, if any."""
    import yaml

    f = Path(args.tuned) / f"tune_{method}.yaml" if getattr(args, "tuned", None) else None
    if f is None or not f.is_file():
        return []
    try:
        data = yaml.safe_load(f.read_text()) or {}
    except yaml.YAMLError as e:
        raise C.ConfigError(f"--tuned: {f} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise C.ConfigError(f"--tuned: {f} must hold a mapping of keys")
    return [f"{k}={v}" for k, v in sorted(data.items())]


def _progress(run_dir: Path) -> str:
    ms = RunFolder(run_dir).metrics()
    return f"round {ms[-1]['round']} NREs {ms[-1]['nres']}" if ms else "starting"


class LocalRuns:
    """Each run a child process of this one (``--parallel`` at a time)."""

    where = ""

    def __init__(self, env: dict):
        self.env = env

    def start(self, argv: list[str], log_path: Path):
        fh = open(log_path, "a")
        cmd = [sys.executable, "-m", "banel_ray.run", *argv]
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env), fh

    def poll(self, handle) -> int | None:
        proc, fh = handle
        rc = proc.poll()
        if rc is not None:
            fh.close()
        return rc

    def stop(self, handles: list) -> None:  # each run stops like a Ctrl-C (its Ray instance shut down)
        for proc, _ in handles:
            proc.send_signal(signal.SIGINT)
        for proc, fh in handles:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.terminate()
            fh.close()


def run_in_task(argv: list[str], log_path: str, env: dict) -> int:
    """One run, in a Ray task: the same ``python -m banel_ray.run`` command the local path starts,
    as a child of the task's worker, with the worker's own banel_ray first on its path. Its log
    and run folder are under ``--out``, which every node must see. A cancelled task (Ctrl-C of the
    comparison) stops its run like a Ctrl-C."""
    import banel_ray

    here = str(Path(banel_ray.__file__).resolve().parents[1])
    env = dict(os.environ, **env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    with open(log_path, "a") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "banel_ray.run", *argv], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.terminate()
            raise


class RayRuns:
    """Each run a Ray task (``run_in_task``) on the cluster this process joined (``--ray``); the
    cluster's free CPUs decide how many run at once (``--parallel``, when given, caps it). A run
    whose ``runtime`` is ray joins the same cluster for its actors (they reserve their own CPUs)."""

    def __init__(self, env: dict, task_cpus: float):
        import ray

        self.ray = ray
        self.task = ray.remote(run_in_task).options(num_cpus=task_cpus, max_retries=0)
        self.env = dict(env, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
        self.where = f" (at most), as Ray tasks of {task_cpus:g} CPU on {ray.get_runtime_context().gcs_address}"

    def start(self, argv: list[str], log_path: Path):
        return self.task.remote(argv, str(log_path), self.env)

    def poll(self, ref) -> int | None:
        ready, _ = self.ray.wait([ref], timeout=0)
        if not ready:
            return None
        try:
            return int(self.ray.get(ref))
        except self.ray.exceptions.RayError as e:  # the task's worker or node died: a failed run
            print(f"[compare] the run's Ray task failed: {str(e).strip().splitlines()[0]}", flush=True)
            return -1

    def stop(self, refs: list) -> None:
        for ref in refs:
            self.ray.cancel(ref)  # a KeyboardInterrupt in the task: its run stops like a Ctrl-C
        self.ray.wait(refs, num_returns=len(refs), timeout=90)


def run_all(args, methods: list[str], seeds: list[int], out: Path, log=print, after_run=lambda: None, runs=None) -> int:
    """Run the (method, seed) grid into ``out``; ``after_run()`` is called whenever a run ends.
    ``runs`` starts and watches the runs: child processes here (``LocalRuns``, the default) or
    Ray tasks on a cluster (``RayRuns``)."""
    runs_root, logs = out / "runs", out / "logs"
    runs_root.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    queue = [(m, s) for s in seeds for m in methods]  # seed by seed: partial results cover every method
    running: dict[tuple, tuple] = {}
    failed, done, t0 = [], 0, time.time()
    tries: dict[tuple, int] = {}
    last_report = 0.0
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    runs = runs or LocalRuns(env)
    at_once = args.parallel or (len(queue) if isinstance(runs, RayRuns) else 1)
    total = len(queue)
    shared = C.load(args.config, list(args.set))
    naming = trust.naming_sets(shared)  # run folders are data (banel_ray/trust.py)
    # the table's headline is each run's fresh-sample final: a config that turns it off gets the task's size
    finals = ["eval.final_samples=-1"] if args.config and shared["eval.final_samples"] == 0 else []
    log(
        f"[compare] {total} runs ({', '.join(methods)} x seeds {', '.join(map(str, seeds))}), "
        f"{at_once} at a time{runs.where}, in {runs_root}"
    )
    try:
        while queue or running:
            while queue and len(running) < at_once:
                m, s = queue.pop(0)
                rd = runs_root / f"{m}-s{s}"
                if RunFolder(rd).finished():
                    done += 1
                    log(f"[compare] {m} seed {s}: finished earlier, kept ({done}/{total})")
                    continue
                argv = []
                if RunFolder(rd).has_checkpoint():  # resumed naming this command's own code
                    argv += ["--resume", str(rd)] + sum((["--set", x] for x in naming), [])
                    what = "resuming"
                else:
                    if args.config:
                        argv += ["--config", args.config]
                    argv += sum((["--set", x] for x in finals + args.set + method_sets(args, m)), [])
                    argv += ["--set", f"method={m}", "--set", f"seed={s}", "--set", f"run_dir={rd}"]
                    what = "started"
                running[(m, s)] = (runs.start(argv, logs / f"{m}-s{s}.log"), time.time(), rd)
                log(f"[compare] {m} seed {s}: {what} (log {logs / f'{m}-s{s}.log'})")
            time.sleep(1.0)
            for key, (handle, ts, _) in list(running.items()):
                rc = runs.poll(handle)
                if rc is None:
                    continue
                del running[key]
                done += 1
                after_run()
                if rc == 0:
                    log(f"[compare] {key[0]} seed {key[1]}: done in {time.time() - ts:.0f}s ({done}/{total})")
                elif tries.get(key, 0) < args.retries:  # resumed from its checkpoint: nothing paid twice
                    tries[key] = tries.get(key, 0) + 1
                    done -= 1
                    queue.insert(0, key)
                    log(f"[compare] {key[0]} seed {key[1]}: failed (exit {rc}), retry {tries[key]} of {args.retries}")
                else:
                    failed.append(key)
                    log(f"[compare] {key[0]} seed {key[1]}: FAILED (exit {rc}); see {logs / f'{key[0]}-s{key[1]}.log'}")
            if running and time.time() - last_report >= args.progress_every:
                last_report = time.time()
                state = "; ".join(f"{m} s{s} {_progress(v[2])}" for (m, s), v in running.items())
                log(f"[compare] {time.time() - t0:.0f}s, {done}/{total} done | {state}")
    except KeyboardInterrupt:  # each run stops like a Ctrl-C (its Ray instance shut down), resumable
        runs.stop([h for h, _, _ in running.values()])
        log("[compare] interrupted: run the same command again to resume")
        return 130
    if collect(runs_root):
        write_table(runs_root, out, args.bootstrap_reps)
        log(f"[compare] table: {out / 'table.md'}, {out / 'table.csv'}, {out / 'success_vs_nres.png'}")
        log((out / "table.md").read_text().split("\n\nIQM:")[0])
    log(
        f"[compare] {done - len(failed)} of {total} runs finished in {time.time() - t0:.0f}s"
        + (f"; failed: {', '.join(f'{m} s{s}' for m, s in failed)}" if failed else "")
    )
    return 1 if failed else 0


def staged_out(uri: str) -> Path:
    """The local folder of a remote ``--out`` (``s3://``, ``gs://``), checked before any run
    starts; pulled from the URI when this machine has none (a comparison continued elsewhere
    resumes its runs from their copies). The local one, when there is one, is the one of record."""
    msg = remote.problem(uri)
    if msg:
        raise C.ConfigError(f"--out {msg}")
    local = remote.staging_dir(uri)
    if not local.exists():
        try:
            remote.download(uri, local)
        except remote.RemoteError as e:
            raise C.ConfigError(f"--out {e}") from None
    return local


def main(argv=None) -> int:
    args = parse_args(argv)
    out = remote.local_path(args.out)
    try:
        if remote.is_remote(args.out):
            out = staged_out(args.out)
        if args.from_runs:
            if not Path(args.from_runs).is_dir():
                raise C.ConfigError(f"--from-runs: folder not found: {args.from_runs}")
            write_table(Path(args.from_runs), out, args.bootstrap_reps)
            print((out / "table.md").read_text(), end="")
            return _pushed(out, args.out, 0)
        methods, seeds = parse_methods(args.methods), parse_seeds(args.seeds)
        if args.parallel is not None and args.parallel < 1:
            raise C.ConfigError(f"--parallel must be >= 1, got {args.parallel}")
        if args.ray is not None and remote.is_remote(args.out):
            raise C.ConfigError("--ray needs --out on a file system every node sees, not a URI")
        if args.task_cpus <= 0:
            raise C.ConfigError(f"--task-cpus must be > 0, got {args.task_cpus:g}")
        if args.retries < 0:
            raise C.ConfigError(f"--retries must be >= 0, got {args.retries}")
        for item in args.set:
            if C.parse_set(item)[0] in RESERVED:
                raise C.ConfigError(f"--set {C.parse_set(item)[0]}: compare sets {', '.join(RESERVED)} itself")
        if args.tuned and not Path(args.tuned).is_dir():
            raise C.ConfigError(f"--tuned: folder not found: {args.tuned}")
        for m in methods:  # every run's config is valid before any run starts
            C.load(args.config, args.set + method_sets(args, m) + [f"method={m}", f"seed={seeds[0]}"])
        from banel_ray import preflight

        why = preflight.write_problem(out)  # before any run, and before this process joins a cluster
        if why:
            raise C.ConfigError(f"--out {out} cannot be written ({why}); allowed: a writable folder")
    except C.ConfigError as e:
        return fail(str(e))
    if args.ray is not None:
        return run_on_ray(args, methods, seeds, out)
    if not remote.is_remote(args.out):
        return run_all(args, methods, seeds, out)
    mirror = remote.Mirror(out, args.out)

    def push() -> None:  # after every run: a failure is reported, the comparison goes on
        try:
            mirror.push()
        except remote.RemoteError as e:
            print(f"[compare] warning: {e}; everything is in {out}", flush=True)

    rc = run_all(args, methods, seeds, out, after_run=push)
    return _pushed(out, args.out, rc, mirror)


def run_on_ray(args, methods: list[str], seeds: list[int], out: Path) -> int:
    """``run_all`` with each run a Ray task on the cluster at ``--ray``; leaves the cluster after."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=args.ray, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        return fail(f"--ray {args.ray}: cannot join the cluster ({str(e).strip().splitlines()[0]})")
    try:
        env = {"RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": str(max(1, int(args.task_cpus)))}
        return run_all(args, methods, seeds, out, runs=RayRuns(env, args.task_cpus))
    finally:
        ray.shutdown()


def _pushed(out: Path, uri: str, rc: int, mirror=None) -> int:
    """``rc`` once ``out`` is copied to ``uri`` (when it is a URI); 1 with one line if the copy failed."""
    if not remote.is_remote(uri):
        return rc
    try:
        (mirror or remote.Mirror(out, uri)).push()
    except remote.RemoteError as e:
        print(f"error: {e}; everything is in {out}; the same command copies it again", file=sys.stderr)
        return 1
    print(f"[compare] copied to {uri}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
