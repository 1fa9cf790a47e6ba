"""Plots of one run: success rate (with its interval) and positive-free signals against NREs.

matplotlib is optional: where it is not installed the run skips its plots (``success_vs_nres.png``,
a task's ``samples.png``) with one warning line, ``SKIPPED``, and completes (it has paid by then)."""

from __future__ import annotations

from pathlib import Path

from banel_ray.core.estimate import Estimate
from banel_ray.core.packages import installed

SKIPPED = "warning: matplotlib is not installed: no plots drawn (the results are complete); pip install matplotlib"


def available() -> bool:
    """Whether matplotlib can be imported (looked up, not imported)."""
    return installed("matplotlib")


def plot(run_dir: Path, base: dict | None, history: list[dict]) -> Path | None:
    """PNG of success rate (with 95% interval) and acceptance rate against NREs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    pts = [
        (x, Estimate.from_dict(e))
        for x, e in ([(0, base)] if base else []) + [(m["nres"], m["eval"]) for m in history if m.get("eval")]
    ]
    if pts:
        ns = [p[1].n for p in pts if p[1].n]
        pos = [p[1].rate for p in pts if p[1].rate > 0]
        # where a zero estimate is drawn on the log axis
        floor = 0.5 / max(ns) if ns else 0.5 * min(pos, default=1e-300)
        x = [p[0] for p in pts]
        y = [max(p[1].rate, floor) for p in pts]
        lo = [max(p[1].lo, floor) for p in pts]
        hi = [p[1].hi for p in pts]
        a1.plot(x, y, "o-", label="success rate")
        exact = all(p[1].computed for p in pts)
        a1.fill_between(x, lo, hi, alpha=0.25, label="exact (no interval)" if exact else "95% Clopper-Pearson")
        best = [max(y[: i + 1]) for i in range(len(y))]
        a1.plot(x, best, ":", color="C2", label="cumulative best")
        a1.set_yscale("log")
        a1.legend()
    a1.set_xlabel("NREs")
    a1.set_ylabel("success rate")
    a1.set_title("true success rate (computed or sampled, not NREs)")
    series = {
        "filter acceptance": lambda m: m.get("acceptance", m.get("pre_oracle_acceptance")),
        "well-formed fraction": lambda m: m.get("round_well_formed"),
        "distinct fraction": lambda m: m.get("distinct_frac"),
    }
    for (label, get), mark in zip(series.items(), "s^v"):
        pts = [(m["nres"], get(m)) for m in history if get(m) is not None]
        if pts:
            a2.plot([p[0] for p in pts], [p[1] for p in pts], mark + "-", label=label, markersize=4)
    a2.set_xlabel("NREs")
    a2.set_ylabel("fraction of the round's samples")
    a2.set_ylim(0, 1.05)
    a2.legend(loc="lower left")
    a2.set_title("acceptance and positive-free signals")
    fig.tight_layout()
    out = Path(run_dir) / "success_vs_nres.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
