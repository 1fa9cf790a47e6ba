"""How early a run finds successes, from its rounds alone: for an expensive oracle the count found
at the end matters less than how many NREs it took to find them.

A run is the list of its rounds, each ``(nres, new_successes)``: the NREs charged that round and
the distinct paid successes new that round (``K.PAID`` / the difference of ``K.NRES``, and
``K.SUCCESSES`` in ``metrics.jsonl``). Round granularity: a round's successes count once the round
has ended, at its cumulative NREs (the order of the samples within a round is not in the metrics).
Pure: no Ray, no files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def success_auc(rounds: Iterable[tuple[int, int]], budget: int) -> float:
    """Area under the successes-found-so-far curve over NREs 0..budget, divided by the budget.

    ``c(n)``, the number of distinct paid successes found with ``n`` NREs spent, is a step
    function: 0 until the first round ends; after round ``i`` ends at cumulative NREs ``N_i`` it is
    ``S_i`` (the successes of rounds 1..i) until ``N_{i+1}``; after the last round it holds its last
    value up to the budget (a run that stops early, out of rounds, stopped by its stop rule or with
    nothing new to pay for, finds nothing more). Returns ``(1/B) * integral_0^B c(n) dn``: the
    average number of successes in hand over the budget, equal to
    ``sum_i s_i * (B - N_i) / B`` (each success weighted by the share of the budget left after
    the round that paid for it). NREs past the budget are cut at the budget; budget <= 0 gives nan.

    Example: NREs 250, 250, 250 with new successes 0, 2, 1 and budget 1000: c = 0 on [0, 500),
    2 on [500, 750), 3 on [750, 1000], so (2 * 250 + 3 * 250) / 1000 = 1.25.
    """
    if budget <= 0:
        return math.nan
    spent, area = 0, 0.0
    for nres, new in rounds:
        spent += nres
        area += new * max(budget - min(spent, budget), 0)
    return area / budget


def nres_to_first_success(rounds: Iterable[tuple[int, int]]) -> float:
    """Cumulative NREs at the end of the first round whose paid batch held a new success (round
    granularity: the success may have been any sample of that round); ``math.inf`` if none did."""
    spent = 0
    for nres, new in rounds:
        spent += nres
        if new > 0:
            return float(spent)
    return math.inf


def median_first_success(values: Iterable[float]) -> tuple[float, int]:
    """(median over runs, runs with no success): runs that found none count as infinitely late, so
    the median is ``inf`` once at least half of the runs (the middle one, or either middle one)
    found none; nan for no runs."""
    xs = sorted(float(v) for v in values)
    none = sum(1 for v in xs if math.isinf(v))
    if not xs:
        return math.nan, 0
    mid = len(xs) // 2
    if len(xs) % 2:
        return xs[mid], none
    a, b = xs[mid - 1], xs[mid]
    return (math.inf if math.isinf(a) or math.isinf(b) else (a + b) / 2), none
