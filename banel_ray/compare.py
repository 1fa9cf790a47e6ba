"""``python -m banel_ray.compare``: BaNEL against its baselines, methods x seeds, one table.

Each (method, seed) is an ordinary ``python -m banel_ray.run`` in its own folder under
``OUT/runs`` (``--parallel`` of them at once), so every method uses the same sampler and oracle
actors, NRE budget and ledger. The table (``table.md``, ``table.csv``, ``runs.csv``) and the plot
(``success_vs_nres.png``) are computed from the run folders only; ``--from-runs DIR`` rebuilds them
from existing folders. A finished run is not run again; an interrupted one is resumed.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from banel_ray import config as C
from banel_ray import trust
from banel_ray.algorithms import stats as alg
from banel_ray.cli import Parser, fail
from banel_ray.methods.registry import METHODS
from banel_ray.report import metrics as K
from banel_ray.report import read_metrics

RESERVED = ("method", "seed", "run_dir")  # set by compare itself, per run

EPILOG = """examples:
  python -m banel_ray.compare --methods banel,random,reinforce,rnd,count --seeds 0-4 \\
      --config banel_ray/configs/addition_compare.yaml --parallel 2 --out results/compare-addition
  python -m banel_ray.compare --methods banel,rnd --seeds 0,1 --set budget=500 --out /tmp/cmp
  python -m banel_ray.compare --from-runs results/compare-addition/runs --out results/compare-addition
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
    p.add_argument("--out", metavar="DIR", required=True, help="folder for runs/, logs/ and the table")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (default 1; 2 on a 2-core machine)")
    p.add_argument("--from-runs", metavar="DIR", help="only rebuild the table from these run folders")
    p.add_argument(
        "--retries",
        type=int,
        default=1,
        help="restarts of a failed run, from its last checkpoint (default 1; e.g. a worker OOM-killed)",
    )
    p.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")
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
        if not ((d / "summary.json").is_file() and (d / "config.json").is_file()):
            continue
        cfg = json.loads((d / "config.json").read_text())
        s = json.loads((d / "summary.json").read_text())
        curve, busy = [], (s["base"] or {}).get("t_eval", 0.0)
        for m in read_metrics(d):
            busy += m.get("t_round", 0.0) + (m.get("eval") or {}).get("t_eval", 0.0)
            if m.get("eval"):
                curve.append((m["round"], m["nres"], m["eval"]["rate"]))
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
                "nres": s["nres"],
                "rounds": s["rounds"],
                "successes": s[K.SUCCESSES],
                "curve": curve,
                "time_s": busy,
            }
        )  # rounds + evaluations; a resumed run's invocations together
    return recs


def _mean_ci(xs: list[float]) -> tuple[float, float, float, float, float]:
    """mean, median, sample std, and a 95% t-interval of the mean (nan with one value)."""
    import numpy as np
    from scipy.stats import t as student

    a = np.asarray(xs, dtype=np.float64)
    mean, med = float(a.mean()), float(np.median(a))
    if len(a) < 2:
        return mean, med, float("nan"), float("nan"), float("nan")
    sd = float(a.std(ddof=1))
    h = float(student.ppf(0.975, len(a) - 1)) * sd / math.sqrt(len(a))
    return mean, med, sd, max(mean - h, 0.0), mean + h  # a rate is never below 0


def summarize(recs: list[dict]) -> list[dict]:
    """One row per method (METHODS order) plus the pretrained model's row, from run records."""
    rows = []
    by_seed = {}
    for r in recs:  # each seed's base evaluation is the same draws whatever the method: pool seeds once
        if r["base"]:
            by_seed.setdefault(r["seed"], r["base"])
    if by_seed:
        k, n = sum(b["k"] for b in by_seed.values()), sum(b["n"] for b in by_seed.values())
        lo, hi = alg.clopper_pearson(k, n)
        rows.append(
            {
                "method": "pretrained",
                "seeds": len(by_seed),
                "rate_mean": k / n,
                "rate_median": k / n,
                "rate_std": float("nan"),
                "ci_lo": lo,
                "ci_hi": hi,
                "improvement": 1.0,
                "ratio_mean": 1.0,
                "ratio_median": 1.0,
                "final_mean": k / n,
                "final_ratio_mean": 1.0,
                "successes_paid": 0.0,
                "nres_mean": 0.0,
                "time_s_mean": float("nan"),
            }
        )
    for method in METHODS:
        rs = [r for r in recs if r["method"] == method and r["best"] and r["base"]]
        if not rs:
            continue
        best = [r["best"]["rate"] for r in rs]
        base = [r["base"]["rate"] for r in rs]
        final = [r["final"]["rate"] for r in rs]
        mean, med, sd, lo, hi = _mean_ci(best)
        if len(rs) == 1:  # one seed: the run's own Clopper-Pearson interval
            lo, hi = rs[0]["best"]["lo"], rs[0]["best"]["hi"]
        ratios = [alg.improvement_factor(b, b0) for b, b0 in zip(best, base)]
        fratios = [alg.improvement_factor(f, b0) for f, b0 in zip(final, base)]
        mb = sum(base) / len(base)
        rows.append(
            {
                "method": method,
                "seeds": len(rs),
                "rate_mean": mean,
                "rate_median": med,
                "rate_std": sd,
                "ci_lo": lo,
                "ci_hi": hi,
                "improvement": alg.improvement_factor(mean, mb),
                "ratio_mean": sum(ratios) / len(ratios),
                "ratio_median": _mean_ci(ratios)[1],
                "final_mean": sum(final) / len(final),
                "final_ratio_mean": sum(fratios) / len(fratios),
                "successes_paid": sum(r["successes"] for r in rs) / len(rs),
                "nres_mean": sum(r["nres"] for r in rs) / len(rs),
                "time_s_mean": sum(r["time_s"] for r in rs) / len(rs),
            }
        )
    return rows


CSV_COLUMNS = (
    "method",
    "seeds",
    "rate_mean",
    "rate_median",
    "rate_std",
    "ci_lo",
    "ci_hi",
    "improvement",
    "ratio_mean",
    "ratio_median",
    "final_mean",
    "final_ratio_mean",
    "successes_paid",
    "nres_mean",
    "time_s_mean",
)


def _g(x: float, fmt: str = ".2e") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def markdown(rows: list[dict], recs: list[dict]) -> str:
    budgets = sorted({r["budget"] for r in recs})
    evals = sorted({r["base"]["n"] for r in recs if r["base"]})
    lines = [
        f"Success rate of the generator (cumulative best over its evaluations, as the paper reports), "
        f"NRE budget {', '.join(map(str, budgets))}, {', '.join(map(str, evals))} evaluation draws "
        f"per estimate (not NREs). Built by `python -m banel_ray.compare` from {len(recs)} run folders.",
        "",
        "| method | seeds | best rate: mean [95% CI] | median | std | improvement (mean/base) | "
        "best/base per seed: mean, median | final rate (mean) | final/base (mean) | "
        "successes paid for (mean) | NREs spent (mean) | rounds + evals, s (mean) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['seeds']} | {_g(r['rate_mean'])} [{_g(r['ci_lo'])}, {_g(r['ci_hi'])}] | "
            f"{_g(r['rate_median'])} | {_g(r['rate_std'])} | {_g(r['improvement'], '.2f')}x | "
            f"{_g(r['ratio_mean'], '.2f')}x, {_g(r['ratio_median'], '.2f')}x | {_g(r['final_mean'])} | "
            f"{_g(r['final_ratio_mean'], '.2f')}x | {_g(r['successes_paid'], '.1f')} | {_g(r['nres_mean'], '.0f')} | "
            f"{_g(r['time_s_mean'], '.0f')} |"
        )
    lines += [
        "",
        "pretrained: all seeds' base evaluations pooled, with a Clopper-Pearson 95% interval. Other rows: "
        "95% t-interval of the mean over seeds, cut at 0 (one seed: that run's Clopper-Pearson interval). "
        "improvement = mean best rate / mean base rate (the paper's ratio); a seed's base is the same "
        "draws for every method, so per-seed ratios are paired. Time: seconds spent in rounds and "
        "evaluations (no start-up), summed over a resumed run's invocations.",
        "",
        "Per run (method, seed: base -> best (round) / final, successes paid for, NREs, rounds + evals s):",
        "",
    ]
    for r in sorted(
        recs, key=lambda r: (list(METHODS).index(r["method"]) if r["method"] in METHODS else 99, r["seed"])
    ):
        lines.append(
            f"- {r['method']}, seed {r['seed']}: {_g(r['base']['rate'])} -> {_g(r['best']['rate'])} "
            f"({r['best_round']}) / {_g(r['final']['rate'])}, {r['successes']}, {r['nres']}, "
            f"{r['time_s']:.0f}"
        )
    return "\n".join(lines) + "\n"


def plot(recs: list[dict], out: Path) -> Path:
    """Success rate (mean over seeds) against NREs, per method: at each evaluation, and its running best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    floor = 0.5 / max([r["base"]["n"] for r in recs if r["base"]] or [1])
    for i, method in enumerate(m for m in METHODS if any(r["method"] == m for r in recs)):
        rs = [r for r in recs if r["method"] == method and r["base"]]
        rounds = sorted({c[0] for r in rs for c in r["curve"]})
        xs, now, best = [0.0], [np.mean([r["base"]["rate"] for r in rs])], []
        for rd in rounds:
            pts = [c for r in rs for c in r["curve"] if c[0] == rd]
            xs.append(float(np.mean([p[1] for p in pts])))
            now.append(float(np.mean([p[2] for p in pts])))
        for r in rs:  # per-seed running best of the trained generator (as in the table), then the mean
            seq = [dict((c[0], c[2]) for c in r["curve"]).get(rd, np.nan) for rd in rounds]
            best.append(np.fmax.accumulate(np.array(seq, dtype=float)))
        label = f"{method} ({len(rs)} seed{'s' if len(rs) > 1 else ''})"
        axes[0].plot(xs, np.maximum(now, floor), "o-", color=f"C{i}", label=label, markersize=3)
        if rounds:
            axes[1].plot(
                xs[1:], np.maximum(np.nanmean(np.stack(best), 0), floor), "o-", color=f"C{i}", label=label, markersize=3
            )
    bases = {r["seed"]: r["base"]["rate"] for r in recs if r["base"]}
    axes[1].axhline(float(np.mean(list(bases.values()))), color="gray", ls="--", label="pretrained (mean)")
    for ax, title in zip(
        axes,
        (
            "success rate at each evaluation (mean over seeds)",
            "cumulative best of the trained generator (mean over seeds)",
        ),
    ):
        ax.set_yscale("log")
        ax.set_xlabel("NREs")
        ax.set_ylabel(f"success rate (0 drawn at {floor:.0e})")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out) / "success_vs_nres.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_table(runs_root: Path, out: Path) -> list[dict]:
    recs = collect(runs_root)
    if not recs:
        raise C.ConfigError(f"no finished run folders (config.json and summary.json) under {runs_root}")
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(recs)
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
                "base_rate",
                "best_rate",
                "best_lo",
                "best_hi",
                "best_round",
                "final_rate",
                "successes_paid",
                "nres",
                "time_s",
            ]
        )
        for r in recs:
            w.writerow(
                [
                    r["method"],
                    r["seed"],
                    r["base"]["rate"],
                    r["best"]["rate"],
                    r["best"]["lo"],
                    r["best"]["hi"],
                    r["best_round"],
                    r["final"]["rate"],
                    r["successes"],
                    r["nres"],
                    round(r["time_s"], 1),
                ]
            )
    plot(recs, out)
    return rows


# ---- running methods x seeds ---------------------------------------------------------------------


def _progress(run_dir: Path) -> str:
    ms = read_metrics(run_dir)
    return f"round {ms[-1]['round']} NREs {ms[-1]['nres']}" if ms else "starting"


def run_all(args, methods: list[str], seeds: list[int], out: Path, log=print) -> int:
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
    total = len(queue)
    naming = trust.naming_sets(C.load(args.config, list(args.set)))  # run folders are data (banel_ray/trust.py)
    log(
        f"[compare] {total} runs ({', '.join(methods)} x seeds {', '.join(map(str, seeds))}), "
        f"{args.parallel} at a time, in {runs_root}"
    )
    try:
        while queue or running:
            while queue and len(running) < args.parallel:
                m, s = queue.pop(0)
                rd = runs_root / f"{m}-s{s}"
                if (rd / "summary.json").exists():
                    done += 1
                    log(f"[compare] {m} seed {s}: finished earlier, kept ({done}/{total})")
                    continue
                cmd = [sys.executable, "-m", "banel_ray.run"]
                if (rd / "checkpoints" / "LATEST").exists():  # resumed naming this command's own code
                    cmd += ["--resume", str(rd)] + sum((["--set", x] for x in naming), [])
                    what = "resuming"
                else:
                    if args.config:
                        cmd += ["--config", args.config]
                    cmd += sum((["--set", x] for x in args.set), [])
                    cmd += ["--set", f"method={m}", "--set", f"seed={s}", "--set", f"run_dir={rd}"]
                    what = "started"
                fh = open(logs / f"{m}-s{s}.log", "a")
                running[(m, s)] = (
                    subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env),
                    fh,
                    time.time(),
                    rd,
                )
                log(f"[compare] {m} seed {s}: {what} (log {logs / f'{m}-s{s}.log'})")
            time.sleep(1.0)
            for key, (proc, fh, ts, _) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                fh.close()
                del running[key]
                done += 1
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
                state = "; ".join(f"{m} s{s} {_progress(v[3])}" for (m, s), v in running.items())
                log(f"[compare] {time.time() - t0:.0f}s, {done}/{total} done | {state}")
    except KeyboardInterrupt:  # each run stops like a Ctrl-C (its Ray instance shut down), resumable
        for proc, _, _, _ in running.values():
            proc.send_signal(signal.SIGINT)
        for proc, fh, _, _ in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.terminate()
            fh.close()
        log("[compare] interrupted: run the same command again to resume")
        return 130
    if collect(runs_root):
        write_table(runs_root, out)
        log(f"[compare] table: {out / 'table.md'}, {out / 'table.csv'}, {out / 'success_vs_nres.png'}")
        log((out / "table.md").read_text().split("\n\npretrained:")[0])
    log(
        f"[compare] {done - len(failed)} of {total} runs finished in {time.time() - t0:.0f}s"
        + (f"; failed: {', '.join(f'{m} s{s}' for m, s in failed)}" if failed else "")
    )
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    try:
        if args.from_runs:
            if not Path(args.from_runs).is_dir():
                raise C.ConfigError(f"--from-runs: folder not found: {args.from_runs}")
            write_table(Path(args.from_runs), out)
            print((out / "table.md").read_text(), end="")
            return 0
        methods, seeds = parse_methods(args.methods), parse_seeds(args.seeds)
        if args.parallel < 1:
            raise C.ConfigError(f"--parallel must be >= 1, got {args.parallel}")
        if args.retries < 0:
            raise C.ConfigError(f"--retries must be >= 0, got {args.retries}")
        for item in args.set:
            if C.parse_set(item)[0] in RESERVED:
                raise C.ConfigError(f"--set {C.parse_set(item)[0]}: compare sets {', '.join(RESERVED)} itself")
        for m in methods:  # every run's config is valid before any run starts
            C.load(args.config, args.set + [f"method={m}", f"seed={seeds[0]}"])
    except C.ConfigError as e:
        return fail(str(e))
    return run_all(args, methods, seeds, out)


if __name__ == "__main__":
    sys.exit(main())
