"""The importance-sampling estimator's coverage against exact rates: repeated estimates at small
scale (a table model, in CI), and at the 4-token MNIST scale (opt-in, -m slow). The estimator's
pure checks are in tests/unit/test_importance.py."""

import pytest

from tuning import mnist_coverage as COV


def test_coverage_small_scale_matches_nominal_from_1e_5_to_1e_15():
    """The CI-scale coverage study: a table model, repeated estimates at three exact rates."""
    rows = COV.small_study(deltas=(3.0, 6.0, 9.0), repeats=80, n=1200)
    exact = [r["exact"] for r in rows]
    assert exact[0] > 1e-6 and exact[-1] < 1e-15
    for r in rows:
        assert r["gamma"]["coverage"] >= 0.87, r  # nominal 0.95; 80 repeats: sd 0.024
        assert 0.8 < r["mean_rate_over_exact"] < 1.25 and r["zero_hit_runs"] == 0
        assert r["median_rel_se"] < 0.5  # informative, not just wide


def test_coverage_small_scale_under_the_likelihood_ratio_rule_from_1e_5_to_1e_15():
    """The pixel task's rule (log g - log p >= min_llr) and bridge ladder (gamma up to 1.5) on a
    table model: nominal coverage at exact rates 5e-5, 8e-11 and 4e-15."""
    rows = COV.small_study(repeats=80, n=1200, proposal="typical")
    exact = [r["exact"] for r in rows]
    assert exact[0] > 1e-5 and exact[-1] < 1e-14 and len(rows) == 3
    for r in rows:
        assert r["gamma"]["coverage"] >= 0.87, r  # nominal 0.95; 80 repeats: sd 0.024
        assert 0.8 < r["mean_rate_over_exact"] < 1.25 and r["zero_hit_runs"] == 0
        assert r["median_rel_se"] < 0.5


@pytest.mark.slow
def test_coverage_full_scale_under_the_pixel_tasks_rule_on_the_4_token_mnist_task():
    """Opt-in (about 15 min on 2 cores): the pixel task's rule and ladder on the real 4-token prior
    (and the prior sharpened by 1.5, a model other than the rule's reference), exact rates 3e-6 ..
    3e-16 by enumeration, 100 estimates each (docs/mnist.md shows the table)."""
    rows = COV.full_study(repeats=100, proposal="typical")
    exact = [r["exact"] for r in rows]
    assert max(exact) > 1e-6 and min(exact) < 1e-15
    for r in rows:
        assert r["gamma"]["coverage"] >= 0.89, r  # nominal 0.95; 100 repeats: sd 0.022
        assert 0.8 < r["mean_rate_over_exact"] < 1.25 and r["zero_hit_runs"] == 0


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="measured (docs/mnist.md): under the classifier-only rule, on the real 4-token prior sharpened to "
    "2e-8 .. 2e-11, the tilted and bridged ladders miss part of the success region and cover 0.25-0.73",
)
def test_coverage_full_scale_on_the_4_token_mnist_task():
    """Opt-in (about 20 min on 2 busy cores): the real 4-token prior sharpened to rates 1.5e-5 ..
    below 1e-14, exact rates by enumeration, 60 estimates each, the tilt ladder."""
    rows = COV.full_study(repeats=60, proposal="tilt")
    assert rows[0]["exact"] > 1e-5 and rows[-1]["exact"] < 1e-14
    for r in rows:
        assert r["gamma"]["coverage"] >= 0.85, r
        assert 0.7 < r["mean_rate_over_exact"] < 1.4
