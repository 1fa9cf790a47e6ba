"""Random search from the prior, best of budget: the floor every learning method must beat.

Algorithm: each round draw m fresh samples from the pre-trained model p0 and pay for them; nothing
is learned, so the generator stays p0 and its success rate is the base rate. What the budget buys
is the set of successes found among the paid samples (``successes paid for`` in the tables). It is
what policy gradient degenerates into when every reward is 0 (paper, §1), and the noise floor of
the "cumulative best" protocol: the best of several evaluations of p0 is above p0's rate by chance.

Defaults: none; it uses ``samples_per_round``, ``budget`` and ``seed`` like every method.
"""
from __future__ import annotations

from typing import Sequence


def best_of_budget(samples: Sequence[Sequence[int]], rewards: Sequence[int | None]) -> list[tuple[int, ...]]:
    """The distinct successes among paid samples, in the order they were found."""
    return list(dict.fromkeys(tuple(s) for s, r in zip(samples, rewards) if r == 1))
