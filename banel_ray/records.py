"""Typed records for what passes between roles (as Ray objects or in-process values).

Samplers make ``SampleBatch``es; the reward service turns them into a ``PaidBatch``; the negative
trainer scores a pool into a ``ScoredPool``; a method's learn step ends in an ``Update`` (new
generator weights for the samplers); the evaluator answers with an ``EvalResult``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

Sample = tuple[int, ...]


@dataclass
class SampleBatch:
    """Completions drawn from one generator version."""

    samples: list[Sample]
    version: int = 0
    seconds: float = 0.0


@dataclass
class PaidBatch:
    """A round's proposals with their rewards (None: unpaid, budget exhausted or oracle error).

    ``paid``: NREs charged to this call; ``reused``: samples answered from the ledger or by another
    caller; ``errors``: samples this call evaluated that failed; ``spent``: NREs charged in all;
    ``new_successes``: distinct samples charged to this call whose reward is 1.
    """

    samples: list[Sample]
    rewards: list[int | None]
    versions: list[int]
    paid: int = 0
    reused: int = 0
    errors: int = 0
    spent: int = 0
    unpaid: int = 0
    recovered: int = 0
    waited: int = 0
    new_successes: int = 0
    call_id: str = ""

    def failures(self) -> list[Sample]:
        """Distinct samples with reward 0, in order: what BaNEL learns from."""
        return list(dict.fromkeys(tuple(s) for s, r in zip(self.samples, self.rewards) if r == 0))

    def successes(self) -> list[Sample]:
        return list(dict.fromkeys(tuple(s) for s, r in zip(self.samples, self.rewards) if r == 1))

    def rewarded(self) -> list[tuple[Sample, int]]:
        """(sample, reward) for every proposal that has a reward, duplicates kept."""
        return [(tuple(s), int(r)) for s, r in zip(self.samples, self.rewards) if r is not None]


@dataclass
class ScoredPool:
    """Pool candidates with their scores s(x) (-inf where a drift control rejected one)."""

    samples: list[Sample]
    scores: Any  # numpy array of float64
    info: dict = field(default_factory=dict)
    prior_min: Any = None  # per candidate: its least likely token's log p0 (diagnostics)


@dataclass
class Update:
    """New generator weights (an object ref or the state dict itself) and their version."""

    version: int
    weights: Any
    metrics: dict = field(default_factory=dict)


@dataclass
class EvalResult:
    """Rewards of evaluation draws (never NREs): k of n, the first successes, pattern counts over
    every success, draws and successes per mode, the task's diagnostics, and how many evaluator
    calls it took."""

    k: int
    n: int
    successes: list[Sample] = field(default_factory=list)
    patterns: Counter = field(default_factory=Counter)
    diagnostics: dict = field(default_factory=dict)
    modes: dict = field(default_factory=dict)  # mode -> [draws, successes]
    calls: int = 0
    seconds: float = 0.0
    errors: int = 0  # draws whose evaluation failed (left out of n)
    paid_oracle: int = 0  # draws sent to the task's paid oracle (RewardService.estimate)
