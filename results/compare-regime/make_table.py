"""The comparison in the paper's regime, rebuilt from its run folders:

    .venv/bin/python results/compare-regime/make_table.py [RUNS_DIR]

RUNS_DIR (default: results/compare-regime/runs, the slim copies shipped here) holds the
<method>-s<seed> folders written by

    .venv/bin/python -m banel_ray.compare --methods banel,npo,nsr,w_reinforce,reinforce,rnd,count,random \\
        --seeds 10-14 --config banel_ray/configs/attack_compare.yaml --tuned results/tuning-regime \\
        --set eval.samples=2000 --parallel 2 --out RUNS_PARENT

Writes beside this file: compare's own table (table.md, table.csv, runs.csv, success_vs_nres.png:
IQM with bootstrap intervals, P(BaNEL > each), AUC, NREs to the first success) and
beside_paper.md: the paper's columns (mean, median, std over seeds, mean / base) under both
criteria, the task's ``exact`` reward and ``numeric`` (the answer's value is wrong), with the share
of successes that are format echoes."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from banel_ray.algorithms import aggregate as agg
from banel_ray.compare import _order, collect, write_table

HERE = Path(__file__).resolve().parent
REGIME = json.loads(
    (HERE.parent.parent / "banel_ray" / "assets" / "addition_prior_d5_s200" / "regime.json").read_text()
)
BASE = REGIME["base"]["rate"]
BASE_NUMERIC = REGIME["base_by_reward"]["numeric"]["rate"]
# the paper's attack table (../shared/notes/paper.md, section 3.2): mean, median, std, mean / base
PAPER = {
    "pretrained": (0.0004, None, None, 1.0),
    "banel": (0.1112, 0.0488, 0.1101, 278.1),
    "count": (0.00058, 0.0006, 0.000084, 1.45),
    "rnd": (0.00084, 0.0005, 0.00076, 2.1),
}


def _g(x: float | None) -> str:
    return "-" if x is None else ("0" if x == 0 else f"{x:.3g}")


def _stats(xs: list[float]) -> tuple[float, float, float]:
    return statistics.mean(xs), statistics.median(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def beside_paper(recs: list[dict]) -> str:
    by: dict[str, list[dict]] = {}
    for r in sorted(recs, key=lambda r: (_order(r["method"]), r["seed"])):
        if r["final_fresh"]:
            by.setdefault(r["method"], []).append(r["final_fresh"])
    lines = [
        "The regime comparison beside the paper's attack table. Final generator of each run on a fresh",
        "sample (100,000 draws, not NREs); mean, median and std over seeds, as the paper reports. Base: the",
        f"shipped prior's 10^6-draw measurement, {BASE:.3g} under `exact` and {BASE_NUMERIC:.2g} under",
        "`numeric`. format echoes: the share of the exact successes whose value is right (a leading zero",
        "copied into a correct sum), pooled over seeds. Rebuilt by `results/compare-regime/make_table.py`.",
        "",
        "| method | seeds | exact: mean | median | std | mean / base | IQM | numeric: mean | mean / base | format echoes | paper: mean | median | std | mean / base |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    p = PAPER["pretrained"]
    lines.append(
        f"| pretrained | - | {_g(BASE)} | | | 1x | | {_g(BASE_NUMERIC)} | 1x | "
        f"{REGIME['format_only_share_of_exact']:.1%} | {_g(p[0])} | | | 1x |"
    )
    for method, finals in by.items():
        ex = [f["rate"] for f in finals]
        nu = [f.get("eval_rate_numeric", float("nan")) for f in finals]
        echoes = sum(f.get("eval_format_only", 0.0) * f["n"] for f in finals)
        succ = sum(f["k"] for f in finals)
        m, med, sd = _stats(ex)
        nm = statistics.mean(nu)
        paper = PAPER.get(method)
        pcells = f"{_g(paper[0])} | {_g(paper[1])} | {_g(paper[2])} | {paper[3]:g}x" if paper else "| | |"
        share = f"{echoes / succ:.1%}" if succ else "-"
        lines.append(
            f"| {method} | {len(ex)} | {_g(m)} | {_g(med)} | {_g(sd)} | {m / BASE:.3g}x | {_g(agg.iqm(ex))} | "
            f"{_g(nm)} | {nm / BASE_NUMERIC:.3g}x | {share} | {pcells} |"
        )
    lines.append("")
    lines.append("Per run, exact / numeric final (seed):")
    lines.append("")
    for method in by:
        runs = [r for r in recs if r["method"] == method and r["final_fresh"]]
        cells = ", ".join(
            f"{r['seed']}: {_g(r['final_fresh']['rate'])} / {_g(r['final_fresh'].get('eval_rate_numeric'))}"
            for r in sorted(runs, key=lambda r: r["seed"])
        )
        lines.append(f"- {method}: {cells}")
    return "\n".join(lines) + "\n"


def main(runs: Path) -> None:
    write_table(runs, HERE)
    (HERE / "beside_paper.md").write_text(beside_paper(collect(runs)))
    print((HERE / "beside_paper.md").read_text())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "runs")
