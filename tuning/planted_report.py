"""The map's report, from its run folders only: a table and one heatmap per comparison.

A run's score is its final generator's exact success rate over the prior's (final/base; both
enumerated by the task). A comparison of BaNEL with a baseline in one cell is the ratio of their
geometric means over seeds, with the spread of the per-seed ratios (BaNEL's seed i over the
baseline's seed i: the same seed gives both the same first draws). ``best`` is, per cell, the
baseline with the highest geometric mean. Rebuilt by ``python -m tuning.planted_map --report-only``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

BANEL = "banel"


def records(out: Path) -> list[dict]:
    """One record per finished run under ``OUT/runs/<cell>/<arm>_s<seed>``, with its cell's knobs
    (from the run's own config) and its exact final/base."""
    from banel_ray.compare import collect
    from banel_ray.core.run_folder import RunFolder

    recs = []
    for cell_dir in sorted((Path(out) / "runs").glob("*/")):
        for r in collect(cell_dir):
            cfg = RunFolder(r["dir"]).config()
            fin, base = r["final_fresh"] or {}, r["base_fresh"] or {}
            opts = cfg["task_options"]
            recs.append(
                dict(
                    cell=cell_dir.name,
                    arm=Path(r["dir"]).name.rsplit("_s", 1)[0],
                    seed=r["seed"],
                    q=float(opts["q"]),
                    s=float(opts["s"]),
                    e=float(opts["e"]),
                    m=cfg["samples_per_round"],
                    base=float(base.get("rate", math.nan)),
                    q_exact=float(base.get("feature_rate", math.nan)),
                    final=float(fin.get("rate", math.nan)),
                    feature_final=float(fin.get("feature_rate", math.nan)),
                    exact=bool(fin.get("exact")) and bool(base.get("exact")),
                    nres=r["nres"],
                    successes=r["successes"],
                    dir=r["dir"],
                )
            )
            recs[-1]["ratio"] = recs[-1]["final"] / recs[-1]["base"] if recs[-1]["base"] > 0 else math.nan
    return recs


def gmean(xs) -> float:
    xs = [x for x in xs if x > 0 and math.isfinite(x)]
    return float(np.exp(np.mean(np.log(xs)))) if xs else math.nan


def cells(recs: list[dict]) -> dict[str, dict]:
    """cell -> {knobs, base, arms: {arm: {seed: record}}}."""
    out: dict[str, dict] = {}
    for r in recs:
        knobs = {k: r[k] for k in ("q", "s", "e", "m", "base", "q_exact")}
        c = out.setdefault(r["cell"], dict(knobs, arms={}))
        c["arms"].setdefault(r["arm"], {})[r["seed"]] = r
    return out


def compare(cell: dict, other: str) -> dict | None:
    """BaNEL over ``other`` in one cell: ratio of geometric means, per-seed spread (min, max)."""
    a, b = cell["arms"].get(BANEL, {}), cell["arms"].get(other, {})
    if not a or not b:
        return None
    paired = [a[s]["ratio"] / b[s]["ratio"] for s in sorted(set(a) & set(b))]
    value = gmean(r["ratio"] for r in a.values()) / gmean(r["ratio"] for r in b.values())
    return dict(
        vs=other,
        value=value,
        lo=min(paired, default=math.nan),
        hi=max(paired, default=math.nan),
        ahead=sum(p > 1 for p in paired),
        paired=len(paired),
    )


def best_baseline(cell: dict) -> str | None:
    rest = {k: gmean(r["ratio"] for r in v.values()) for k, v in cell["arms"].items() if not k.startswith(BANEL)}
    rest = {k: v for k, v in rest.items() if math.isfinite(v)}
    return max(rest, key=rest.get) if rest else None


def _x(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.3g}x"


def table(cs: dict[str, dict], arm_names: list[str]) -> str:
    """Markdown: a row per cell, final/base per arm (geometric mean [min, max] over seeds)."""
    head = ["q", "s", "e", "prior's q (exact)", "base (exact)", "successes/round", *arm_names, "BaNEL / best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, c in sorted(cs.items(), key=lambda kv: (-kv[1]["q"], kv[1]["s"], kv[1]["e"])):
        row = [f"{c['q']:g}", f"{c['s']:g}", f"{c['e']:.3g}", f"{c['q_exact']:.4g}", f"{c['base']:.3e}"]
        row.append(f"{c['base'] * c['m']:.3g}")
        for arm in arm_names:
            rs = [r["ratio"] for r in c["arms"].get(arm, {}).values()]
            row.append(f"{_x(gmean(rs))} [{_x(min(rs))}, {_x(max(rs))}] n={len(rs)}" if rs else "-")
        best = best_baseline(c)
        cmp = compare(c, best) if best else None
        row.append(
            f"{_x(cmp['value'])} [{_x(cmp['lo'])}, {_x(cmp['hi'])}] vs {best}, {cmp['ahead']}/{cmp['paired']} seeds ahead"
            if cmp
            else "-"
        )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def tally(cs: dict[str, dict]) -> str:
    """One line per floor: in how many cells BaNEL's geometric mean is ahead of the best baseline's,
    and in how many it is ahead on every seed (paired), with those cells' successes a round."""
    lines = []
    for floor_name, with_floor in (("e = 0", False), ("e = q s", True)):
        sel = [c for c in cs.values() if (c["e"] > 0) == with_floor]
        cmps = [(c, compare(c, best_baseline(c))) for c in sel if best_baseline(c)]
        ahead = [(c, m) for c, m in cmps if m and m["value"] > 1]
        every = [(c, m) for c, m in ahead if m["ahead"] == m["paired"]]
        where = ", ".join(f"q={c['q']:g} s={c['s']:g} ({c['base'] * c['m']:.2g}/round)" for c, _ in every) or "none"
        lines.append(
            f"{floor_name}: BaNEL ahead of the best baseline in {len(ahead)} of {len(cmps)} cells "
            f"(geometric mean over seeds); on every seed in {len(every)}: {where}"
        )
    return "\n".join(lines)


def heatmap(cs: dict[str, dict], other: str, path: Path) -> Path | None:
    """log10(BaNEL / other) per cell: q down the rows, s across, one panel per floor (e / (q s))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vals = {}
    for c in cs.values():
        vs = best_baseline(c) if other == "best" else other
        cmp = compare(c, vs) if vs else None
        if cmp:
            floor = round(c["e"] / (c["q"] * c["s"]), 3)
            vals[(floor, c["q"], c["s"])] = (cmp, vs, c["base"] * c["m"])
    if not vals:
        return None
    floors = sorted({k[0] for k in vals})
    qs, ss = sorted({k[1] for k in vals}, reverse=True), sorted({k[2] for k in vals})
    width = max(5.0, 1.2 + 1.9 * len(ss) * len(floors))
    fig, axes = plt.subplots(1, len(floors), figsize=(width, 1.6 + 1.1 * len(qs)), squeeze=False)
    for ax, f in zip(axes[0], floors):
        grid = np.full((len(qs), len(ss)), np.nan)
        for i, q in enumerate(qs):
            for j, s in enumerate(ss):
                if (f, q, s) in vals:
                    cmp, vs, per_round = vals[(f, q, s)]
                    grid[i, j] = math.log10(cmp["value"]) if cmp["value"] > 0 else np.nan
                    label = f"{_x(cmp['value'])}\n[{_x(cmp['lo'])}, {_x(cmp['hi'])}]\n{per_round:.2g}/round"
                    ax.text(
                        j, i, label + (f"\nvs {vs}" if other == "best" else ""), ha="center", va="center", fontsize=7
                    )
        ax.imshow(grid, cmap="RdBu", vmin=-1, vmax=1)
        ax.set_xticks(range(len(ss)), [f"s={s:g}" for s in ss])
        ax.set_yticks(range(len(qs)), [f"q={q:g}" for q in qs])
        ax.set_title("e = 0" if f == 0 else "e = q s" if f == 1 else f"e = {f:g} q s", fontsize=9)
    fig.suptitle(f"BaNEL's final/base over {other}'s\n(blue: BaNEL ahead; colour log10, +-10x)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def build(out: Path) -> str:
    """Write ``table.md``, ``runs.csv`` and ``heatmap_vs_<arm>.png`` into OUT; returns the table."""
    out = Path(out)
    recs = records(out)
    if not recs:
        return f"no finished runs under {out / 'runs'}"
    cs = cells(recs)
    order = ["banel", "banel_floor", "reinforce", "count", "npo", "random"]
    arm_names = sorted({r["arm"] for r in recs}, key=lambda a: order.index(a) if a in order else len(order))
    inexact = [r["dir"] for r in recs if not r["exact"]]
    text = table(cs, arm_names)
    note = "final/base per arm: geometric mean over seeds [min, max]; every final rate exact (enumerated)."
    if inexact:
        note = f"NOT EXACT ({len(inexact)} runs): {', '.join(inexact[:3])}"
    note = f"{note}\n\n{tally(cs)}"
    (out / "table.md").write_text(f"{text}\n\n{note}\n")
    with open(out / "runs.csv", "w", newline="") as f:
        cols = ["cell", "arm", "seed", "q", "s", "e", "m", "q_exact", "base", "final", "ratio", "feature_final"]
        w = csv.DictWriter(f, fieldnames=[*cols, "nres", "successes", "exact"], extrasaction="ignore")
        w.writeheader()
        w.writerows(recs)
    for other in ["best", *(a for a in arm_names if not a.startswith(BANEL))]:
        heatmap(cs, other, out / f"heatmap_vs_{other}.png")
    return f"{text}\n\n{note}"
