"""Positive-free stop signals and stop rules, as pure functions over a run's per-round metrics.

A BaNEL run never sees a success, so "when to stop" must be read from signals that need none: the
filter's acceptance, the pool's score quantiles, the negative model's held-out NLL, how many samples
are new, the drift from the prior. Rules here look only at those; the study (``tuning.study``)
scores them post hoc against the true success rate, which the rules never read. No Ray, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from banel_ray.report import metrics as K

# Signals a rule may read (all positive-free). Derived ones are computed by ``signals``.
SIGNALS = {
    "acceptance": "fraction of the pool the filter keeps",
    "score_q10": "10% quantile of pool scores log g - log p_phi",
    "score_q50": "median pool score",
    "score_q90": "90% quantile of pool scores",
    "score_spread": "q90 - q10 of pool scores: how much the negative model separates the pool",
    "neg_heldout_nll": "negative-model NLL on held-out failures",
    "neg_gain": "held-out failures: NLL under g_t minus under p_phi_t (what p_phi learned beyond g_t)",
    "distinct_frac": "distinct fraction of the round's proposals",
    "novel_frac": "fraction of distinct proposals never proposed before",
    "paid_frac": "fraction of proposals paid for (new to the ledger)",
    "kl_to_prior": "estimated KL(g || p0) on kept samples, nats",
    "round_well_formed": "task diagnostic: well-formed fraction of proposals",
    "generator_lr": "generator learning rate used this round",
    "filter_value": "filter factor (or tau) used this round",
}


def signals(m: dict) -> dict:
    """One round's flat signals (plus the true success rate, for the study only) from metrics.jsonl."""
    out = {k: float(m[k]) for k in SIGNALS if isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool)}
    if "score_q90" in m and "score_q10" in m:
        out["score_spread"] = float(m["score_q90"] - m["score_q10"])
    if "gen_heldout_nll" in m and "neg_heldout_nll" in m:
        out["neg_gain"] = float(m["gen_heldout_nll"] - m["neg_heldout_nll"])
    n = m.get("paid", 0) + m.get("reused", 0)
    if n:
        out["paid_frac"] = m["paid"] / n
    for k in (K.ROUND, K.NRES, K.PAID, K.SUCCESSES):
        if k in m:
            out[k] = int(m[k])
    ev = m.get(K.EVAL) or {}
    if "rate" in ev:  # the truth, for the study; never read by a rule
        out.update(success=float(ev["rate"]), success_lo=float(ev["lo"]), success_hi=float(ev["hi"]))
        if "k" in ev and "n" in ev:  # the counts behind it, for the study's decline test
            out.update(success_k=int(ev["k"]), success_n=int(ev["n"]))
    return out


@dataclass(frozen=True)
class Rule:
    """Stop after the first round where ``signal`` ...

    below / above: is below / above ``threshold``;
    drop: has fallen below ``threshold`` x its best value so far (best = max);
    rise: has risen above its first value + ``threshold``;
    plateau: has not reached a new maximum for ``patience`` rounds;
    round: (signal ignored) the round number reaches ``threshold`` (a fixed-length baseline).
    ``min_round``: the rule cannot fire before this round.
    """

    name: str
    signal: str
    kind: str
    threshold: float = 0.0
    patience: int = 2
    min_round: int = 1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.kind != "round" and self.signal not in SIGNALS:
            raise ValueError(f"unknown signal {self.signal!r}; allowed: {', '.join(SIGNALS)}")


KINDS = ("below", "above", "drop", "rise", "plateau", "round")


def fires(rule: Rule, history: list[dict]) -> bool:
    """Does ``rule`` say stop after the last round of ``history`` (a list of ``signals`` dicts)?"""
    if not history or len(history) < rule.min_round:
        return False
    if rule.kind == "round":
        return len(history) >= rule.threshold
    vals = [h.get(rule.signal) for h in history]
    if vals[-1] is None or any(v is None for v in vals):
        return False
    v = vals[-1]
    if rule.kind == "below":
        return v < rule.threshold
    if rule.kind == "above":
        return v > rule.threshold
    if rule.kind == "drop":
        best = max(vals)
        return best > 0 and v < rule.threshold * best
    if rule.kind == "rise":
        return v > vals[0] + rule.threshold
    # plateau: the last new maximum is at least `patience` rounds old
    best_at = max(range(len(vals)), key=lambda i: (vals[i], -i))
    return len(vals) - 1 - best_at >= rule.patience


def stop_round(rule: Rule, history: list[dict]) -> int:
    """The round (1-based) a run following ``rule`` stops after; the last round if it never fires."""
    for t in range(1, len(history) + 1):
        if fires(rule, history[:t]):
            return t
    return len(history)


def regret(history: list[dict], stopped: int, base: float | None = None) -> dict:
    """Success lost by stopping after round ``stopped`` instead of at the round of peak success.

    Where rounds are evaluated only every k rounds, the rate at the stop is the last evaluated
    round at or before it (what a run that stopped there could have reported); before any, the
    prior's rate ``base`` (a run stopped that early reports p0), or nan without one.
    """
    rates = [h.get("success") for h in history]
    known = [(i + 1, r) for i, r in enumerate(rates) if r is not None]
    if not known:
        return {}
    peak_round, peak = max(known, key=lambda x: (x[1], -x[0]))
    before = [r for i, r in known if i <= stopped]
    at = before[-1] if before else (math.nan if base is None else base)
    return {
        "stop_round": stopped,
        "peak_round": peak_round,
        "peak": peak,
        "at_stop": at,
        "regret": peak - at,
        "rel_regret": (peak - at) / peak if peak > 0 else 0.0,
    }


DEFAULT_RULES = (
    Rule("never (all rounds)", "round", "round", threshold=math.inf),
    Rule("fixed: 4 rounds", "round", "round", threshold=4),
    Rule("novel_frac < 0.9", "novel_frac", "below", 0.9),
    Rule("novel_frac < 0.5", "novel_frac", "below", 0.5),
    Rule("kl_to_prior > 1 nat", "kl_to_prior", "above", 1.0),
    Rule("kl_to_prior > 3 nats", "kl_to_prior", "above", 3.0),
    Rule("well_formed < 0.95", "round_well_formed", "below", 0.95),
    Rule("neg_gain < 0.7 x best", "neg_gain", "drop", 0.7, min_round=2),
    Rule("neg_gain plateau (2)", "neg_gain", "plateau", patience=2, min_round=3),
    Rule("score_spread < 0.5 x best", "score_spread", "drop", 0.5, min_round=2),
    Rule("neg_heldout_nll rise > 1", "neg_heldout_nll", "rise", 1.0),
)


def rule_by_name(name: str) -> Rule:
    for r in DEFAULT_RULES:
        if r.name == name:
            return r
    raise KeyError(f"unknown stop rule {name!r}; allowed: {'; '.join(r.name for r in DEFAULT_RULES)}")
