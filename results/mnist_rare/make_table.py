"""The MNIST rare-regime runs side by side (issue 22, item 4), every rate exact:

    .venv/bin/python results/mnist_rare/make_table.py [RUN_DIR ...] > results/mnist_rare/table.md

RUN_DIRs default to every folder here with a summary.json or a metrics.jsonl (a run without a
summary is listed as unfinished, at its last evaluated round). Each row: the method, seed, rounds
done, NREs, sixes paid for, the final exact rate and its factor over the prior (the paper's is
13,500x: 8e-26 -> 1.08e-21), the best evaluated round's factor (optimistic: the maximum over
rounds), and for Algorithm 2 with ``negative.exact_alg1`` the last round's Algorithm 1 posterior
and KL(posterior || generator), and where measured the median over rounds of KL(exact filter
target || g_{t+1}), each distillation step's own loss. Writes ``trajectories.png`` beside this file (log10 exact rate by
round, one line a run)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).parent
PAPER = 1.08e-21 / 8e-26


def load(run: Path) -> dict:
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    recs = [r for r in recs if "round" in r]
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else {}
    s = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    evals = [(r["round"], r["eval"]["rate"]) for r in recs if isinstance(r.get("eval"), dict) and "rate" in r["eval"]]
    base = s.get("base", {}).get("rate")
    if base is None:  # unfinished: the shipped prior's record
        base = json.loads((HERE.parents[1] / "banel_ray/assets/mnist/rare_regime.json").read_text())["rate"]
    final = s.get("final", {}).get("rate")
    sequential = cfg.get("mode") == "sequential" or cfg.get("method") == "banel_sequential"
    method = cfg.get("method", "banel")
    name = "BaNEL Alg. 1" if sequential else ("BaNEL Alg. 2" if method == "banel" else method)
    if (cfg.get("generator") or {}).get("distil_from") == "exact":
        name += ", exact target"
    if (cfg.get("negative") or {}).get("region_calibration") == "posterior":
        name += ", posterior-calibrated"
    if (cfg.get("negative") or {}).get("exclude_failures"):
        name += ", paid failures excluded"
    if (cfg.get("generator") or {}).get("kl_coef"):
        name += f", anchor {cfg['generator']['kl_coef']:g}"
    step = [r["kl_target_to_generator"] for r in recs if r.get("kl_target_to_generator") is not None]
    return {
        "run": run.name,
        "name": name,
        "seed": cfg.get("seed"),
        "rounds": recs[-1]["round"] if recs else 0,
        "of": cfg.get("rounds"),
        "nres": recs[-1].get("nres", 0) if recs else 0,
        "sixes": recs[-1].get("successes_so_far", 0) if recs else 0,
        "base": base,
        "final": final,
        "last_eval": evals[-1] if evals else None,
        "best": max(evals, key=lambda e: e[1]) if evals else None,
        "alg1": recs[-1].get("alg1_exact_rate") if recs else None,
        "kl": recs[-1].get("kl_posterior_to_generator") if recs else None,
        "step_kl": sorted(step)[len(step) // 2] if step else None,
        "evals": evals,
        "done": bool(s),
    }


def fmt(x) -> str:
    return "" if x is None else f"{x:.2g}"


def times(x: float) -> str:
    return f"{x:,.0f}x" if 100 <= x < 1e6 else f"{x:.3g}x"


def main(argv: list[str]) -> int:
    runs = [Path(a) for a in argv] or sorted(
        d for d in HERE.iterdir() if d.is_dir() and (d / "metrics.jsonl").exists() and (d / "config.yaml").exists()
    )
    missing = [str(r) for r in runs if not (r / "metrics.jsonl").is_file()]
    if missing:
        print(f"not a run folder (no metrics.jsonl): {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = [load(r) for r in runs]
    print(
        f"Every rate exact over the 64^4 codes; the prior's {rows[0]['base']:.2g}; the paper's factor {PAPER:,.0f}x.\n"
    )
    print(
        "| run | method | seed | rounds | NREs | sixes paid | final exact rate | x prior | best round (optimistic) "
        "| Alg. 1 posterior, last round | KL(post \\|\\| g), nats | KL(target \\|\\| g), median over rounds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        final = r["final"] if r["done"] else (r["last_eval"][1] if r["last_eval"] else None)
        tag = "" if r["done"] else f" (unfinished: round {r['last_eval'][0] if r['last_eval'] else 0})"
        best = r["best"]
        factor = "" if final is None else times(final / r["base"])
        best_s = "" if best is None else f"{times(best[1] / r['base'])} (round {best[0]})"
        print(
            f"| {r['run']} | {r['name']} | {r['seed']} | {r['rounds']} of {r['of']} | {r['nres']:,} | {r['sixes']} "
            f"| {fmt(final)}{tag} | {factor} | {best_s} "
            f"| {fmt(r['alg1'])} | {fmt(r['kl'])} | {fmt(r['step_kl'])} |"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # one colour per method, one line style per seed, so 19 runs stay readable
    fig, ax = plt.subplots(figsize=(12, 5.5))
    names = list(dict.fromkeys(r["name"] for r in rows))
    colours = plt.get_cmap("tab20").colors
    styles = ["-", "--", ":", "-."]
    floor = -70  # a rate of exactly 0 (an emptied posterior) is drawn here, marked x
    for r in rows:
        pts = [(0, r["base"]), *r["evals"]]
        ys = [math.log10(p[1]) if p[1] > 0 else floor for p in pts]
        colour = colours[names.index(r["name"]) % len(colours)]
        ax.plot(
            [p[0] for p in pts],
            ys,
            marker="o",
            ms=3,
            ls=styles[(r["seed"] or 0) % len(styles)],
            color=colour,
            label=f"{r['name']}, seed {r['seed']}",
        )
        zeros = [p[0] for p, y in zip(pts, ys) if y == floor]
        ax.plot(zeros, [floor] * len(zeros), "x", color=colour, ms=7)
    ax.axhline(math.log10(rows[0]["base"]), color="grey", ls="--", label="prior")
    ax.axhline(math.log10(rows[0]["base"] * PAPER), color="k", ls=":", label="prior x 13,500 (the paper's gain)")
    ax.set(
        xlabel="round",
        ylabel="log10 exact P(six)",
        title="mnist_0to6_rare, exact rates by round (line style = seed; x at -70: a rate of 0)",
    )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(HERE / "trajectories.png", dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
