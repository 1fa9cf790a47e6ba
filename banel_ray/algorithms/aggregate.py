"""Aggregates across seeds that a comparison reports, from ``rliable`` (Agarwal et al., NeurIPS
2021, "Deep RL at the Edge of the Statistical Precipice"): the interquartile mean with a
stratified bootstrap 95% interval, and the probability that one method's run beats another's.

The bootstrap is seeded, so a table rebuilt from the same run folders is the same, byte for byte.
No torch, no Ray.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np

REPS = 20_000  # bootstrap replicates


def _scalar(x) -> float:
    return float(np.asarray(x, dtype=np.float64).reshape(-1)[0])


@contextlib.contextmanager
def _seeded(seed: int):
    """A seeded RandomState for rliable, and numpy's global stream seeded too, then restored.

    rliable 1.2's ``StratifiedBootstrap.update_indices`` draws its resampling indices from
    ``np.random.choice`` (the global stream) whatever ``random_state`` says, so the
    ``random_state`` alone does not make the interval reproducible.
    """
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch: "random_state is deprecated"; rliable still passes it
            warnings.simplefilter("ignore", FutureWarning)
            yield np.random.RandomState(seed)
    finally:
        np.random.set_state(saved)


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% of the values (rliable's definition)."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(np.asarray(values, dtype=np.float64).reshape(-1, 1)))


def iqm_interval(values, reps: int = REPS, seed: int = 0) -> tuple[float, float, float]:
    """(IQM, lower, upper): the IQM over seeds with a stratified-bootstrap 95% percentile interval."""
    from rliable import library as rly
    from rliable import metrics

    x = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    if len(x) < 2:
        v = float(x.mean()) if len(x) else math.nan
        return v, math.nan, math.nan
    with _seeded(seed) as rs:
        point, ci = rly.get_interval_estimates(
            {"m": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps, random_state=rs
        )
    return _scalar(point["m"]), _scalar(ci["m"][0]), _scalar(ci["m"][1])


def probability_of_improvement(x, y, reps: int = REPS, seed: int = 0) -> tuple[float, float, float]:
    """P(X > Y) for a random run of each (ties count half), with a stratified-bootstrap 95% interval."""
    from rliable import library as rly
    from rliable import metrics

    a = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    b = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    if len(a) < 2 or len(b) < 2:
        return _scalar(metrics.probability_of_improvement(a, b)), math.nan, math.nan
    with _seeded(seed) as rs:
        point, ci = rly.get_interval_estimates(
            {"p": (a, b)}, metrics.probability_of_improvement, reps=reps, random_state=rs
        )
    return _scalar(point["p"]), _scalar(ci["p"][0]), _scalar(ci["p"][1])
