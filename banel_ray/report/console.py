"""What the user reads: the progress line per round, the closing table, ``metrics.jsonl`` and
TensorBoard scalars (x axis: NREs)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from banel_ray.core.estimate import Estimate
from banel_ray.core.run_folder import RunFolder


def fmt_rate(est: dict | None) -> str:
    e = Estimate.read(est)
    if e is None:
        return "n/a"
    if e.computed or e.k is None:  # computed by the task (exact enumeration, importance sampling), not counted
        s = e.sampled
        return f"{e.rate:.3e} [{e.lo:.3e}, {e.hi:.3e}] ({e.method or 'computed'})" + (
            f"; sampled {s.k}/{s.n}" if s else ""
        )
    return f"{e.rate:.2e} [{e.lo:.2e}, {e.hi:.2e}] ({e.k}/{e.n})"


def fmt_factor(x, spec: str = ".3g") -> str:
    """An improvement factor, or n/a when there is none (a run without estimates has no rates, and a
    base estimate with no success gives no finite ratio: in the paper's regime a 1,000-draw base
    sample usually holds none)."""
    if not isinstance(x, int | float) or math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "n/a (no success in the base sample)"
    return f"{x:{spec}}x"


def progress_line(m: dict, budget: int) -> str:
    parts = [
        f"round {m['round']:>3}",
        f"NREs {m['nres']:>6}/{budget}",
        f"paid {m['paid']:>4}",
        f"succ {m.get('successes', 0):>3}",
        f"err {m.get('oracle_errors', 0):>3}",
    ]
    if "cost_usd" in m:  # a paid endpoint (oracle.cost_per_call)
        parts.append(f"USD {m['cost_usd']:.4g}")
    if "acceptance" in m:
        parts.append(f"accept {m['acceptance']:.3f}")
    if "pre_oracle_acceptance" in m:
        parts.append(f"pre-oracle accept {m['pre_oracle_acceptance']:.3f}")
    if "neg_train_nll" in m:
        parts.append(f"neg NLL {m['neg_train_nll']:.3f}/{m['neg_heldout_nll']:.3f}")
    if "bonus_mean" in m:  # a policy-gradient baseline
        parts.append(f"reward {m['reward_mean']:.3f} bonus {m['bonus_mean']:.3f}")
    if "kl_to_prior" in m:
        parts.append(f"KL {m['kl_to_prior']:.3f}")
    if "round_well_formed" in m:
        parts.append(f"ok {m['round_well_formed']:.2f}")
    if m.get("eval"):
        parts.append(f"success {m['eval']['rate']:.2e}")
    times = " ".join(f"{k[2:]} {m[k]:.1f}s" for k in ("t_propose_pay", "t_fit", "t_distil") if k in m)
    line = " | ".join(parts) + f" | {times}"
    if m.get("novel_frac", 1.0) < 0.5:  # a positive-free sign of collapse
        line += (
            f"\n  warning: only {m['novel_frac']:.0%} of this round's samples are new: the generator "
            f"is collapsing onto what it already proposed (the best round so far is kept in the summary)"
        )
    return line


class MetricsWriter:
    """metrics.jsonl plus the tracking backends of ``logging.backends`` (``report.tracking``;
    without a config: TensorBoard scalars, x axis = cumulative NREs)."""

    def __init__(self, run_dir: Path, cfg: dict | None = None):
        from banel_ray.report import tracking

        self.folder = RunFolder(run_dir)
        self.backends = tracking.open_backends(Path(run_dir), cfg)

    def write(self, m: dict) -> None:
        self.folder.append_metrics(m)
        for b in self.backends:
            b.write(m)

    def summary(self, s: dict) -> None:
        """The closing summary (``summary.json`` written) to the backends that keep one."""
        for b in self.backends:
            b.summary(s)

    def close(self, status: str = "FINISHED") -> None:
        """``status``: how the run ended for backends that record it (FINISHED, FAILED)."""
        for b in self.backends:
            b.close(status)


def read_metrics(run_dir: Path) -> list[dict]:
    """The rounds of ``run_dir``'s ``metrics.jsonl`` (``RunFolder.metrics``)."""
    return RunFolder(run_dir).metrics()


def closing_table(summary: dict) -> str:
    b, f, best = summary.get("base"), summary.get("final"), summary.get("best")
    lines = [
        "",
        "=" * 78,
        f"{summary.get('method', 'banel')} on {summary['task']} ({summary['mode']}), run folder {summary['run_dir']}",
        "-" * 78,
    ]
    ff, bf = summary.get("final_fresh"), summary.get("base_fresh")
    if ff and bf:  # the headline: final generator on fresh draws against the prior's measured rate
        src = "shipped" if bf.get("reference") else "fresh"
        lines += [
            f"{'final, fresh sample':<26}{fmt_rate(ff)}  (round {ff.get('round')})",
            f"{'prior, ' + src:<26}{fmt_rate(bf)}",
            f"{'improvement (fresh)':<26}{fmt_factor(summary.get('improvement_final_fresh'))}",
        ]
        if summary.get("stop_fresh"):
            lines.append(
                f"{'stop-rule round, fresh':<26}{fmt_rate(summary['stop_fresh'])}  (round "
                f"{summary.get('stop_round')}, {fmt_factor(summary.get('improvement_stop_fresh'), '.2f')})"
            )
        lines.append("in-run estimates (best-of-rounds is optimistic: the maximum of noisy estimates):")
    lines += [
        f"{'base success rate':<26}{fmt_rate(b)}",
        f"{'final success rate':<26}{fmt_rate(f)}",
        f"{'best success rate':<26}{fmt_rate(best)}" + (f"  (round {summary.get('best_round')})" if best else ""),
        f"{'improvement (final/base)':<26}{fmt_factor(summary.get('improvement_final'))}",
        f"{'improvement (best/base)':<26}{fmt_factor(summary.get('improvement_best'), '.2f')}",
        f"{'NREs spent':<26}{summary['nres']} of {summary['budget']}",
        f"{'successes paid for':<26}{summary['successes']} distinct",
        f"{'oracle evaluations':<26}{summary.get('oracle_evaluations', 0)} sent, all attempts "
        f"({summary.get('oracle_errors', 0)} samples failed: errors, not negatives)",
        f"{'evaluation draws':<26}{summary.get('eval_draws', 0)} free, "
        f"{summary.get('eval_paid', 0)} sent to the paid oracle (not NREs)",
        f"{'wall time':<26}{summary['wall_s']:.0f} s"
        + (
            f" (evaluations, not NREs: {summary['t_eval_total'] + summary.get('t_fresh_eval', 0.0):.0f} s)"
            if "t_eval_total" in summary
            else ""
        ),
    ]
    if summary.get("sample_grid"):
        lines.append(f"{'sample grid':<26}{summary['sample_grid']}")
    found = summary.get("found", [])
    if found:
        pats = Counter(x["pattern"] for x in found)
        lines.append(f"{'success patterns':<26}" + ", ".join(f"{p}: {n}" for p, n in pats.most_common()))
        lines.append("successes found (first 8): " + "  ".join(x["sample"] for x in found[:8]))
    ev = (f or {}).get("successes") or []
    if ev:
        pats = Counter(summary.get("final_patterns", {}))
        if pats:
            lines.append(f"{'final-model patterns':<26}" + ", ".join(f"{p}: {n}" for p, n in pats.most_common(6)))
        lines.append("final-model successes (first 8): " + "  ".join(ev[:8]))
    lines.append("=" * 78)
    return "\n".join(lines)
