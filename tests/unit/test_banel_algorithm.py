"""The pure algorithm: scores, filters, schedules, estimators (milliseconds, no Ray, no torch)."""

import math

import numpy as np
import pytest

from banel_ray.algorithms import banel as alg
from banel_ray.algorithms import stats


def test_scores_length_normalised_and_not():
    s = alg.sequence_scores([-10.0, -4.0], [-12.0, -2.0], [4, 2], length_norm=True)
    assert np.allclose(s, [0.5, -1.0])
    s = alg.sequence_scores([-10.0, -4.0], [-12.0, -2.0], length_norm=False)
    assert np.allclose(s, [2.0, -2.0])
    with pytest.raises(ValueError):
        alg.sequence_scores([0.0], [0.0], None, length_norm=True)


@pytest.mark.parametrize(
    "n,f,k", [(1000, 2, 500), (1000, 1, 1000), (1000, 16, 63), (1000, 1.032, 969), (3, 100, 1), (0, 2, 0)]
)
def test_keep_count(n, f, k):
    assert alg.keep_count(n, f) == k


def test_quantile_filter_keeps_top_scores():
    s = np.array([0.1, 5.0, -3.0, 2.0, 2.0, -1.0])
    mask = alg.quantile_filter(s, 2.0)
    assert mask.sum() == 3
    assert set(np.flatnonzero(mask)) == {1, 3, 4}
    with pytest.raises(ValueError):
        alg.quantile_filter(s, 0.5)


def test_threshold_filter():
    mask = alg.threshold_filter([0.0, 0.69, 0.7, 3.0], math.log(2.0))
    assert mask.tolist() == [False, False, True, True]


def test_sequential_accept_in_turn_gives_the_same_mask_and_scores_only_survivors():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 200))
    seen = []

    def row(j):
        def score(idx):
            seen.append(len(idx))
            return m[j, idx]

        return score

    got = alg.sequential_accept_in_turn(200, [row(j) for j in range(6)], 0.3)
    assert (got == alg.sequential_accept(m, 0.3)).all() and got.any()
    assert seen[0] == 200 and all(b < a for a, b in zip(seen, seen[1:]))  # each region sees fewer
    assert alg.sequential_accept_in_turn(3, []).all()


def test_sequential_accept_needs_every_region():
    m = np.array([[1.0, -1.0, 2.0], [1.0, 3.0, -0.5]])
    assert alg.sequential_accept(m, 0.0).tolist() == [True, False, False]
    assert alg.sequential_accept(np.zeros((0, 4)), 0.0).tolist() == [True] * 4


@pytest.mark.parametrize("kind", alg.SCHEDULES)
def test_schedules_start_and_end(kind):
    first = alg.schedule_value(kind, 8.0, 1.0, 0, 5, step_every=1, gamma=0.5)
    last = alg.schedule_value(kind, 8.0, 1.0, 4, 5, step_every=1, gamma=0.5)
    assert first == 8.0
    assert last == (8.0 if kind == "constant" else 1.0)


def test_schedule_shapes():
    assert alg.schedule_value("linear", 4, 2, 1, 3) == 3.0
    assert alg.schedule_value("exponential", 4, 1, 1, 3) == pytest.approx(2.0)
    assert alg.schedule_value("cosine", 4, 2, 1, 3) == pytest.approx(3.0)
    assert alg.schedule_value("step", 16, 1, 3, 10, step_every=2, gamma=0.5) == 8.0
    with pytest.raises(ValueError):
        alg.schedule_value("sawtooth", 1, 1, 0, 2)


def test_clopper_pearson_known_values():
    lo, hi = stats.clopper_pearson(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.036217, abs=1e-5)
    lo, hi = stats.clopper_pearson(5, 10)
    assert lo == pytest.approx(0.187086, abs=1e-5) and hi == pytest.approx(0.812914, abs=1e-5)
    lo, hi = stats.clopper_pearson(8, 20000)
    assert lo < 8 / 20000 < hi


def test_improvement_and_estimate():
    assert stats.improvement_factor(0.11, 0.0004) == pytest.approx(275.0)
    assert stats.improvement_factor(0.1, 0.0) == math.inf
    e = stats.sampled(3, 1000).to_dict()
    assert e["rate"] == 0.003 and e["lo"] < 0.003 < e["hi"] and list(e) == ["k", "n", "rate", "lo", "hi"]


def test_kl_and_holdout():
    assert alg.kl_estimate([-1.0, -2.0], [-2.0, -2.0]) == 0.5
    tr, ho = alg.split_holdout(100, 0.1, seed=3)
    assert len(ho) == 10 and len(tr) == 90 and not set(tr) & set(ho)
    tr2, ho2 = alg.split_holdout(100, 0.1, seed=3)
    assert (ho == ho2).all()


def test_rejected_candidates_are_never_kept_and_the_top_share_is_of_the_rest():
    s = np.array([5.0, -np.inf, 1.0, 2.0, -np.inf, 0.0])
    mask = alg.quantile_filter(s, 2.0)
    assert mask.tolist() == [True, False, False, True, False, False]  # top 2 of the 4 finite
    assert not alg.quantile_filter(np.full(4, -np.inf), 1.0).any()
    assert alg.threshold_filter(s, -1e9).tolist() == [True, False, True, True, False, True]


def test_per_token_support_from_a_constant_and_from_the_priors_own_samples():
    mins = np.array([-1.0, -4.4, -6.5, -9.3, -np.inf])  # a typical, a rare-but-valid, two junk, an empty
    assert alg.support_mask(mins, -6.0).tolist() == [True, True, False, False, False]
    prior = np.linspace(-10.0, -0.1, 1000)
    thr = alg.support_threshold(prior, 0.01)
    assert abs(thr - np.quantile(prior, 0.01)) < 1e-12 and (prior >= thr).mean() == pytest.approx(0.99, abs=1e-3)
    s = alg.apply_support([1.0, 2.0, 3.0], [True, False, True])
    assert s[1] == -np.inf and s[0] == 1.0 and s[2] == 3.0
    with pytest.raises(ValueError):
        alg.support_threshold(prior, 0.0)


def test_the_support_benchmark_counts_what_each_floor_keeps_per_mode():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "prior_support.py"
    spec = importlib.util.spec_from_file_location("prior_support", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    least = np.array([-4.4, -4.5, -8.0, -9.5, -2.0])
    rows = {r["mode"]: r for r in mod.by_mode(least, ["lz", "lz", "malformed", "malformed", "other"], floors=(-5, -9))}
    assert list(rows) == ["lz", "other", "malformed"]  # malformed listed last
    assert rows["lz"]["kept"] == [1.0, 1.0] and rows["malformed"]["kept"] == [0.0, 0.5]
    assert rows["lz"]["share"] == 0.4 and rows["malformed"]["q"][0] == -9.5


def test_a_tempered_negative_model_weighs_the_failures_model_by_kappa():
    # s = log g - kappa log p_phi: at kappa 0.5, -10 - 0.5 * -12 = -4 and -4 - 0.5 * -2 = -3
    s = alg.sequence_scores([-10.0, -4.0], [-12.0, -2.0], length_norm=False, negative_power=0.5)
    assert np.allclose(s, [-4.0, -3.0])
    # at kappa 1 the ranking is the paper's (first above second); at 0.5 it flips
    full = alg.sequence_scores([-10.0, -4.0], [-12.0, -2.0], length_norm=False)
    assert full[0] > full[1] and s[0] < s[1]


def test_the_drift_floor_bounds_the_change_from_the_prior_not_the_prior_itself():
    # max over tokens of log g - log p0: a rare prior token raised by 3 nats passes a 4-nat limit,
    # one raised by 5 does not, however likely or unlikely the prior found it
    ratio = np.array([3.0, 5.0, 4.0, -np.inf, np.nan])
    assert alg.drift_mask(ratio, 4.0).tolist() == [True, False, True, False, False]
    scores = alg.apply_support(np.array([1.0, 2.0, 0.5, 0.0, 0.0]), alg.drift_mask(ratio, 4.0))
    assert alg.quantile_filter(scores, 2.0).tolist() == [True, False, False, False, False]
