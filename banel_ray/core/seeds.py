"""Every random stream of a run, named, derived from ``seed`` and the round.

A run's randomness is a pure function of ``seed`` and the round counter, so a resumed run redoes
an interrupted round with the same draws (its candidates come back from the ledger, free). The
constants keep the streams of earlier versions, so old run folders and results reproduce.
"""

from __future__ import annotations

# sampler streams: offsets of the draw tag within one run
PROPOSE = 0  # round t's proposals (tag t)
POOL = 5_000_000  # round t's filter pool (tag POOL + t)
EVAL = 10_000_000  # evaluation after round t (tag EVAL + t; the base evaluation is EVAL - 1)
GRID = 20_000_000  # end-of-run sample grid
FINAL = 30_000_000  # fresh-sample final evaluation of a checkpoint (tag FINAL + round)


def draw(seed: int, tag: int) -> int | None:
    """Seed of the draw ``tag`` (None for a negative tag: unseeded)."""
    return None if tag < 0 else seed * 7_777_777 + tag


def per_sampler(draw_seed: int | None, i: int) -> int | None:
    """Sampler i's share of a draw."""
    return None if draw_seed is None else draw_seed + 131 * i


def sampler_actor(seed: int, i: int) -> int:
    """Seed of sampler actor i's engine (its unseeded draws)."""
    return seed + 1000 * i


def accept_batch(tag: int, k: int) -> int:
    """Tag of the k-th candidate batch of a sequential-mode acceptance loop for draw ``tag``."""
    return tag * 97 + k


def holdout(seed: int, round_: int) -> int:
    """Split of a round's negatives into train and held-out."""
    return seed + round_


def negative_fit(seed: int, round_: int) -> int:
    """Mini-batch order of the negative model's fit in round ``round_``."""
    return seed + 7919 * round_


def generator_update(seed: int, round_: int) -> int:
    """Mini-batch order of the generator's update (distillation or policy gradient)."""
    return seed + 104729 * (round_ + 1)


def support_calibration(seed: int) -> int:
    """Prior draws the support control reads its per-token floor from."""
    return seed * 7_777_777 + 40_000_000


def region_calibration(seed: int, round_: int) -> int:
    """p0 draws that set round ``round_``'s Algorithm 1 threshold in a distill run (negative.exact_alg1)."""
    return seed * 7_777_777 + 50_000_000 + round_
