"""``python -m tuning.study``: the stop-rule and decay-schedule study, from a Tune experiment.

Reads every trial's config and reported rounds with Tune's ``ResultGrid`` (``tuning.results``),
then, per trial and per stop rule of ``banel_ray.algorithms.stop_rules``, the round the rule stops
at against the round of peak true success and the success lost (regret); per schedule (search
point), whether success declines after its peak. Writes ``report.md`` and ``study.png``. ``--run`` first runs the sweep.

  python -m tuning.study --experiment sweeps/study --out results/tuning_study   # report only
  python -m tuning.study --run --config tuning/configs/study.yaml               # sweep, then report
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from banel_ray.algorithms.stop_rules import DEFAULT_RULES, SIGNALS, fires, regret, stop_round
from banel_ray.core.estimate import Estimate
from banel_ray.core.run_folder import RunFolder
from tuning import results

SKIP = ("base", "runs_root", "trial_cpus")


def load_experiment(exp: Path) -> list[dict]:
    """One dict per trial: its search point (arm), seed, and per-round history (sorted, deduped),
    read with Tune's ResultGrid (``tuning.results``: each trial's config and reported results)."""
    trials = []
    for res in results.trials(exp):
        params = res.config
        by_round = {}
        for r in results.rows(res):  # a round reported twice (restore) keeps its last report
            if "round" in r:
                by_round[int(r["round"])] = r
        hist = [by_round[k] for k in sorted(by_round)]
        base = params.get("base") or {}
        if not hist or (
            base.get("rounds") and len(hist) < base["rounds"] and hist[-1].get("nres", 0) < base.get("budget", 0)
        ):
            continue  # unfinished (an interrupted sweep): its peak and stop rounds are not known yet
        point = {k: v for k, v in params.items() if k not in SKIP and k != "seed"}
        arm = ", ".join(f"{k}={v}" for k, v in sorted(point.items())) or "base"
        short = "/".join(str(v) for _, v in sorted(point.items())) or "base"
        trials.append(
            {
                "dir": Path(res.path).name,
                "arm": arm,
                "short": short,
                "seed": params.get("seed"),
                "history": hist,
                "base": hist[0].get("base_success"),
            }
        )
    return trials


def load_runs(root: Path, arm_keys: list[str], skip: tuple[str, ...] = ()) -> list[dict]:
    """Trials from plain run folders (``banel_ray.run`` / ``compare``) instead of a Tune experiment:
    the arm is the run's values of ``arm_keys`` (plus its method), the history its metrics."""
    from fnmatch import fnmatch

    from banel_ray import config as C
    from banel_ray.algorithms.stop_rules import signals

    runs = []
    for run in sorted((RunFolder(p) for p in Path(root).iterdir()), key=lambda r: r.path):
        if not run.finished() or any(fnmatch(run.path.name, pat) for pat in skip):
            continue
        cfg, summary = run.config(), run.summary()
        # the prior's rate: its shipped or fresh measurement where the run has one (in the paper's
        # regime the in-run base sample of 2,000 draws usually holds no success, and x base = inf)
        base = Estimate.read(summary.get("base_fresh") or summary.get("base"))
        fresh = run.largest_eval(summary.get("final_fresh"))
        runs.append(
            (
                run,
                cfg,
                (base and base.rate, fresh),
                {"method": cfg.get("method", "banel"), **{k: cfg.get(k) for k in arm_keys}},
            )
        )
    varying = [k for k in (runs[0][3] if runs else {}) if len({str(r[3][k]) for r in runs}) > 1]
    defaults = C.defaults()
    trials = []
    for run, cfg, (base, fresh), point in runs:
        # an arm is named by the keys that differ between runs, where it departs from the defaults
        own = ", ".join(f"{k}={point[k]}" for k in varying if str(point[k]) != str(defaults.get(k)))
        trials.append(
            {
                "dir": run.path.name,
                "arm": own or f"{point['method']} defaults",
                "short": own or "defaults",
                "seed": cfg.get("seed"),
                "history": [signals(m) for m in run.metrics()],
                "base": base,
                "fresh_final": fresh,  # the final generator on a fresh sample, where the run made one
            }
        )
    return trials


def decline(hist: list[dict]) -> dict:
    """Peak, final, last-3 mean and relative drop from peak of one trial's true success curve, over
    its evaluated rounds only (a run evaluated every k rounds has a sparse curve)."""
    ev = [h for h in hist if "success" in h]
    s = [h["success"] for h in ev]
    if not s:
        return {}
    pk = int(np.argmax(s))
    last3 = float(np.mean(s[-3:]))
    return {
        "peak": s[pk],
        "peak_round": ev[pk]["round"],
        "final": s[-1],
        "last3": last3,
        "drop": (s[pk] - s[-1]) / s[pk] if s[pk] > 0 else 0.0,
        "drop_last3": (s[pk] - last3) / s[pk] if s[pk] > 0 else 0.0,
        "peak_ci": (ev[pk].get("success_lo"), ev[pk].get("success_hi")),
        # the last evaluation's 95% interval lies wholly below the peak's: a decline noise
        # (finite-sample estimates, a maximum over rounds) does not explain
        "significant": (ev[-1].get("success_hi") or 1.0) < (ev[pk].get("success_lo") or 0.0),
        "p_decline": decline_p(ev[pk], ev[-1], len(ev)),
    }


def decline_p(peak: dict, last: dict, looks: int) -> float:
    """One run's test of a decline: one-sided Fisher exact test that the last evaluation's rate is
    below the peak's (their success counts out of their draws), times the number of evaluated
    rounds (Bonferroni: the peak is the largest of that many estimates). 1 when the peak is the
    last round; nan without counts."""
    from scipy.stats import fisher_exact

    if peak is last:
        return 1.0
    if not all(k in h for h in (peak, last) for k in ("success_k", "success_n")):
        return math.nan
    (k1, n1), (k2, n2) = ((int(h["success_k"]), int(h["success_n"])) for h in (peak, last))  # Tune reads floats
    table = [[k1, n1 - k1], [k2, n2 - k2]]
    return min(1.0, float(fisher_exact(table, alternative="greater").pvalue) * looks)


def combined_p(ps: list[float]) -> float:
    """An arm's decline over its seeds: Fisher's combination of the per-run p-values (each run an
    independent test of the same hypothesis); nan when a run has none."""
    from scipy.stats import combine_pvalues

    if not ps or any(math.isnan(p) for p in ps):
        return math.nan
    return float(combine_pvalues(ps, method="fisher").pvalue)


def spearman(a, b) -> float:
    """Spearman's rank correlation (scipy: tied values share their mean rank, which double argsort
    did not do); nan below 3 points or for a constant series, where it is undefined."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def analyse(trials: list[dict], rules=DEFAULT_RULES) -> dict:
    per_rule = defaultdict(list)
    for t in trials:
        for r in rules:
            sr = stop_round(r, t["history"])
            res = regret(t["history"], sr, t.get("base"))
            if res:
                res["fired"] = fires(r, t["history"][:sr])
                res["at_stop_x_base"] = res["at_stop"] / t["base"] if t.get("base") else math.nan
                per_rule[r.name].append(dict(res, arm=t["arm"], seed=t["seed"]))
    rule_rows = []
    for r in rules:
        rs = per_rule[r.name]
        if not rs:
            continue
        rule_rows.append(
            {
                "rule": r.name,
                "n": len(rs),
                "fired": sum(x["fired"] for x in rs),
                "stop_round": np.mean([x["stop_round"] for x in rs]),
                "peak_round": np.mean([x["peak_round"] for x in rs]),
                "regret": np.mean([x["regret"] for x in rs]),
                "rel_regret": np.mean([x["rel_regret"] for x in rs]),
                "at_stop": np.mean([x["at_stop"] for x in rs]),
                "at_stop_x_base": np.mean([x["at_stop_x_base"] for x in rs]),
                "worst_rel": max(x["rel_regret"] for x in rs),
            }
        )
    rule_rows.sort(key=lambda x: x["rel_regret"])
    # significance: each rule's per-trial relative regret against never stopping (paired, two-sided
    # Wilcoxon signed-rank); nan where every pair is equal
    never = {(x["arm"], x["seed"]): x["rel_regret"] for x in per_rule.get(DEFAULT_RULES[0].name, [])}
    for row in rule_rows:
        pairs = [
            (x["rel_regret"], never[(x["arm"], x["seed"])])
            for x in per_rule[row["rule"]]
            if (x["arm"], x["seed"]) in never and not math.isnan(x["rel_regret"])
        ]
        row["p_vs_never"] = _wilcoxon([a for a, _ in pairs], [b for _, b in pairs])
    arms = defaultdict(list)
    for t in trials:
        arms[t["arm"]].append(
            dict(
                decline(t["history"]),
                seed=t["seed"],
                base=t["base"],
                fresh=t.get("fresh_final"),
                dir=t["dir"],
                kl=t["history"][-1].get("kl_to_prior"),
                novel=t["history"][-1].get("novel_frac"),
                wf=t["history"][-1].get("round_well_formed"),
            )
        )
    corr = {}
    for sig in list(SIGNALS) + ["nres"]:
        vals = []
        for t in trials:  # over the evaluated rounds that logged the signal
            pts = [(h[sig], h["success"]) for h in t["history"] if sig in h and "success" in h]
            if len(pts) >= 3:
                vals.append(spearman([a for a, _ in pts], [b for _, b in pts]))
        vals = [v for v in vals if not math.isnan(v)]
        if vals:
            corr[sig] = (float(np.mean(vals)), len(vals))
    return {"rules": rule_rows, "per_rule": dict(per_rule), "arms": dict(arms), "corr": corr}


def _wilcoxon(a, b) -> float:
    from scipy.stats import wilcoxon

    d = [x - y for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
    if len(d) < 2 or all(v == 0 for v in d):
        return math.nan
    return float(wilcoxon(d).pvalue)


def arm_tests(res: dict) -> list[dict]:
    """Q2's significance: for each pair of arms, a two-sided Mann-Whitney U test on the per-seed
    drop (final vs peak) and on the final success."""
    from scipy.stats import mannwhitneyu

    out = []
    arms = sorted(res["arms"])
    for i, a in enumerate(arms):
        for b in arms[i + 1 :]:
            ra, rb = res["arms"][a], res["arms"][b]
            if len(ra) < 2 or len(rb) < 2:
                continue
            row = {"a": a, "b": b, "n": (len(ra), len(rb))}
            for key in ("drop", "final"):
                x, y = [r[key] for r in ra], [r[key] for r in rb]
                row[f"p_{key}"] = float(mannwhitneyu(x, y).pvalue) if (x != y) else math.nan
            x, y = ([e.rate for e in (Estimate.read(r.get("fresh")) for r in rs) if e] for rs in (ra, rb))
            full = len(x) == len(ra) and len(y) == len(rb) and x != y
            row["p_fresh"] = float(mannwhitneyu(x, y).pvalue) if full else math.nan
            out.append(row)
    return out


def _f(x, spec=".2e"):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _fresh(est: dict | None) -> str:
    e = Estimate.read(est)
    if e is None:
        return "n/a"
    return f"{_f(e.rate, '.4f')} [{_f(e.lo, '.4f')}, {_f(e.hi, '.4f')}] ({e.n:,})"


def write_report(trials: list[dict], res: dict, out: Path, exp: Path, command: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    L = [
        "# Tuning study: decay schedules and positive-free stop rules",
        "",
        f"Generated by `{command}` from {exp} ({len(trials)} runs). "
        "True success = evaluation samples drawn from the generator after each round (not NREs, "
        "never seen by the rules). Regret = peak success over the run's rounds minus success after "
        "the round a rule stops at; relative regret divides by the peak.",
        "",
        "## Does a decay schedule remove the decline?",
        "",
        "| arm | seed | base | peak [95% CI] (round) | final | mean of last 3 | drop final vs peak | "
        "significant decline | fresh final [95% CI] (draws) | KL to prior (final) | novel frac (final) | "
        "well-formed (final) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, rows in sorted(res["arms"].items()):
        for r in sorted(rows, key=lambda x: x["seed"]):
            lo, hi = r["peak_ci"]
            L.append(
                f"| {arm} | {r['seed']} | {_f(r['base'])} | {_f(r['peak'])} [{_f(lo)}, {_f(hi)}] "
                f"({r['peak_round']}) | {_f(r['final'])} | {_f(r['last3'])} | {r['drop']:.0%} | "
                f"{'yes' if r['significant'] else 'no'} | {_fresh(r.get('fresh'))} | "
                f"{_f(r['kl'], '.2f')} | {_f(r['novel'], '.2f')} | {_f(r['wf'], '.2f')} |"
            )
    L += [
        "",
        "Mean over seeds:",
        "",
        "| arm | seeds | peak | final | final/base | fresh final | drop final vs peak | drop last-3 vs peak | "
        "peak round | runs with a decline (p < 0.05) | decline, p over seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, rows in sorted(res["arms"].items()):
        m = lambda k, rows=rows: float(np.mean([r[k] for r in rows]))
        fb = (
            np.mean([r["final"] / r["base"] for r in rows if r.get("base")])
            if all(r.get("base") for r in rows)
            else math.nan
        )
        fresh = [e.rate for e in (Estimate.read(r.get("fresh")) for r in rows) if e]
        ps = [r.get("p_decline", math.nan) for r in rows]
        L.append(
            f"| {arm} | {len(rows)} | {_f(m('peak'))} | {_f(m('final'))} | {_f(fb, '.2f')}x | "
            f"{_f(float(np.mean(fresh)) if len(fresh) == len(rows) else math.nan)} | {m('drop'):.0%} | "
            f"{m('drop_last3'):.0%} | {m('peak_round'):.1f} | {sum(p < 0.05 for p in ps)} of {len(rows)} | "
            f"{_f(combined_p(ps), '.2g')} |"
        )
    L += [
        "",
        "A run's decline: one-sided Fisher exact test of its last evaluation against its peak, "
        "Bonferroni over its evaluated rounds; an arm's: Fisher's combination over its seeds.",
    ]
    tests = arm_tests(res)
    if tests:
        L += [
            "",
            "Arms against each other (two-sided Mann-Whitney U over seeds):",
            "",
            "| arm | arm | seeds | p (drop) | p (final) | p (fresh final) |",
            "|---|---|---|---|---|---|",
        ]
        for t in tests:
            L.append(
                f"| {t['a']} | {t['b']} | {t['n'][0]}, {t['n'][1]} | {_f(t['p_drop'], '.3f')} | "
                f"{_f(t['p_final'], '.3f')} | {_f(t['p_fresh'], '.3f')} |"
            )
    L += [
        "",
        "## Which stop rule loses least?",
        "",
        "Over all trials (sorted by mean relative regret). `fired`: trials where the rule stopped "
        "the run before its last round.",
        "",
        "| rule | fired | mean stop round | mean peak round | success at stop | x base | mean regret | "
        "mean relative regret | worst relative regret | p vs never (Wilcoxon) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rules"]:
        L.append(
            f"| {r['rule']} | {r['fired']}/{r['n']} | {r['stop_round']:.1f} | {r['peak_round']:.1f} | "
            f"{_f(r['at_stop'])} | {_f(r['at_stop_x_base'], '.2f')}x | {_f(r['regret'])} | {r['rel_regret']:.1%} | "
            f"{r['worst_rel']:.1%} | {_f(r.get('p_vs_never'), '.3f')} |"
        )
    arm_names = sorted(res["arms"])
    short = {t["arm"]: t["short"] for t in trials}
    L += [
        "",
        "Mean relative regret per arm (over seeds):",
        "",
        "| rule | " + " | ".join(short[a] for a in arm_names) + " |",
        "|---|" + "---|" * len(arm_names),
    ]
    for r in res["rules"]:
        rows = res["per_rule"][r["rule"]]
        L.append(
            f"| {r['rule']} | "
            + " | ".join(f"{np.mean([x['rel_regret'] for x in rows if x['arm'] == a]):.0%}" for a in arm_names)
            + " |"
        )
    L += [
        "",
        "Per trial: round stopped / round of peak success.",
        "",
        "| rule | " + " | ".join(f"{t['short']} s{t['seed']}" for t in trials) + " |",
        "|---|" + "---|" * len(trials),
    ]
    for r in res["rules"]:
        rows = res["per_rule"][r["rule"]]
        L.append(f"| {r['rule']} | " + " | ".join(f"{x['stop_round']}/{x['peak_round']}" for x in rows) + " |")
    L += [
        "",
        "## How well each signal tracks true success",
        "",
        "Mean within-trial Spearman rank correlation between the signal and true success over rounds.",
        "",
        "| signal | mean correlation | trials |",
        "|---|---|---|",
    ]
    for sig, (c, n) in sorted(res["corr"].items(), key=lambda x: -abs(x[1][0])):
        L.append(f"| {sig} | {c:+.2f} | {n} |")
    L += ["", "![study](study.png)", ""]
    (out / "report.md").write_text("\n".join(L))
    plot(trials, res, out / "study.png")
    (out / "study.json").write_text(json.dumps({"rules": res["rules"], "arms": res["arms"]}, indent=1, default=float))
    return out / "report.md"


# line style per seed: solid, dashed, dotted, dash-dot, long dash-dot-dot
SEED_STYLES = ["-", "--", ":", "-.", (0, (8, 2, 1, 2, 1, 2))]


def plot(trials: list[dict], res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = sorted({t["arm"] for t in trials})
    color = {a: f"C{i}" for i, a in enumerate(arms)}
    panels = ["success", "kl_to_prior", "novel_frac", "neg_gain", "score_spread", "round_well_formed"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, sig in zip(axes.flat, panels):
        for t in trials:
            pts = [(h["round"], h[sig]) for h in t["history"] if sig in h]
            if pts:
                ls = SEED_STYLES[int(t["seed"] or 0) % len(SEED_STYLES)]
                ax.plot(
                    *zip(*pts),
                    linestyle=ls,
                    color=color[t["arm"]],
                    marker="o",
                    markersize=3,
                    label=f"{t['short']} seed {t['seed']}",
                )
            if sig == "success" and t.get("base"):
                ax.axhline(t["base"], color="grey", lw=0.5)
        ax.set_title(sig + (" (true, evaluation samples)" if sig == "success" else " (positive-free)"))
        ax.set_xlabel("round")
    # one legend entry per arm (colour) beside the panels; line style is the seed
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color[a], marker="o", markersize=3, label=a) for a in arms]
    seeds_seen = sorted({int(t["seed"] or 0) for t in trials})
    handles += [Line2D([], [], color="k", ls=SEED_STYLES[i % len(SEED_STYLES)], label=f"seed {i}") for i in seeds_seen]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tuning.study", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--experiment",
        action="append",
        help="Tune experiment folder, repeatable (default: sweeps/study and sweeps/study_fast)",
    )
    p.add_argument("--out", default="results/tuning_study", help="report folder (default results/tuning_study)")
    p.add_argument("--runs", action="append", help="a folder of run folders instead of a Tune experiment, repeatable")
    p.add_argument(
        "--arm-keys",
        default="support.kind,generator.schedule,generator.kl_coef,generator.reset,"
        "score.numerator,filter.schedule,mode",
        help="config keys that name a run's arm (with --runs)",
    )
    p.add_argument("--skip", action="append", metavar="GLOB", help="with --runs: leave out run folders named so")
    p.add_argument("--run", action="store_true", help="run the sweep (--config) first")
    p.add_argument(
        "--config",
        action="append",
        help="sweep file for --run, one per --experiment (default: tuning/configs/study.yaml and study_fast.yaml)",
    )
    a = p.parse_args(argv)
    if a.runs:
        keys = [k for k in a.arm_keys.split(",") if k]
        trials = [t for r in a.runs for t in load_runs(Path(r), keys, tuple(a.skip or ()))]
        if not trials:
            print(f"error: no finished run folders under {', '.join(a.runs)}", file=sys.stderr)
            return 2
        cmd = "python -m tuning.study " + " ".join(argv if argv is not None else sys.argv[1:])
        out = write_report(trials, analyse(trials), Path(a.out), ", ".join(f"`{r}`" for r in a.runs), cmd.strip())
        print(f"[tuning] report {out}")
        return 0
    exps = [Path(e) for e in a.experiment or ["sweeps/study", "sweeps/study_fast"]]
    configs = a.config or ["tuning/configs/study.yaml", "tuning/configs/study_fast.yaml"]
    if a.run:
        if len(configs) != len(exps):
            print("error: --run needs one --config per --experiment", file=sys.stderr)
            return 2
        from tuning import sweep

        for exp, conf in zip(exps, configs):
            if sweep.main(["--config", conf, "--name", exp.name, "--storage", str(exp.parent)]) == 2:
                return 2
    trials = []
    for exp in exps:
        if not exp.is_dir():
            print(f"error: --experiment {exp} is not a folder (run the sweep first, or --run)", file=sys.stderr)
            return 2
        try:
            found = load_experiment(exp)
        except results.NotAnExperiment as e:
            print(f"error: --experiment {e}", file=sys.stderr)
            return 2
        if not found:
            print(f"error: no trial results under {exp}", file=sys.stderr)
            return 2
        trials += found
    exp = ", ".join(f"`{e}`" for e in exps)
    cmd = "python -m tuning.study " + " ".join(argv if argv is not None else sys.argv[1:])
    out = write_report(trials, analyse(trials), Path(a.out), exp, cmd.strip())
    print(f"[tuning] report {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
