"""Ray Tune stoppers over the positive-free rules of ``banel_ray.algorithms.stop_rules`` (the rules stay pure)."""

from __future__ import annotations

from collections import defaultdict

from ray.tune import Stopper

from banel_ray.algorithms.stop_rules import SIGNALS, Rule, fires


class RuleStopper(Stopper):
    """Stop a trial after the first reported round where any of ``rules`` fires.

    Each trial's reported results are its history; only positive-free signals reach the rules.
    """

    def __init__(self, rules: list[Rule]):
        self.rules = list(rules)
        self.history: dict[str, list[dict]] = defaultdict(list)
        self.fired: dict[str, str] = {}

    def __call__(self, trial_id: str, result: dict) -> bool:
        h = self.history[trial_id]
        rnd = result.get("round")
        if rnd is not None and h and h[-1].get("round") == rnd:
            h.pop()  # a round reported again after a restore replaces its first report
        h.append({k: result[k] for k in list(SIGNALS) + ["round"] if k in result})
        for r in self.rules:
            if fires(r, h):
                self.fired[trial_id] = r.name
                return True
        return False

    def stop_all(self) -> bool:
        return False
