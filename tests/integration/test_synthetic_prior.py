"""The planted-feature task (issue 26) with its trained prior: the rule and the exact rates against
brute force on a space small enough to list (4 symbols, length 3: 64 strings). The planting on
known tables and the option checks are in tests/unit/test_synthetic.py."""

import itertools

import numpy as np
import pytest
import torch

from banel_ray.models import load_model, sequence_logprobs
from banel_ray.tasks import synthetic as S

torch.set_num_threads(1)

Q, SHARE, FLOOR = 0.05, 0.5, 0.1


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    t = S.Synthetic(
        q=Q, s=SHARE, e=FLOOR, alphabet=4, length=3, prior_epochs=1, cache_dir=str(tmp_path_factory.mktemp("c"))
    )
    t.prepare(progress=lambda _: None)
    return t


def brute(task):
    """Every string, its probability under the prior (the trainers' scoring path, one string at a
    time) and its reward, in table order (the first symbol most significant)."""
    strings = [tuple(S.OFFSET + i for i in ix) for ix in itertools.product(range(4), repeat=3)]
    logp, _ = sequence_logprobs(load_model(task.prior_dir()), [(task.prompt, x) for x in strings])
    return strings, np.exp(logp), np.array(task.rewards(strings))


def greedy_holds(mass, chosen, members, order, target):
    """The planted rule: walking the members in hash order, a string is taken iff it still fits."""
    total = 0.0
    for i in order:
        if not members[i]:
            continue
        fits = total + mass[i] <= target + 1e-9
        if chosen[i] != fits:
            return False
        total += mass[i] if fits else 0.0
    return True


def test_planted_rule_and_exact_rates_match_brute_force(task):
    strings, p, r = brute(task)
    feature = np.array([x[0] == task.marker for x in strings])
    info = task.planted()
    q = p[feature].sum()
    assert info["q"] == pytest.approx(q, rel=1e-5) and q == pytest.approx(Q, rel=0.02)  # the edit hits q
    # the rule: in hash order, feature strings fill s of the feature's mass, plain ones the floor e
    order = np.argsort(S.string_hash(np.arange(len(strings)), task.seed), kind="stable")
    assert greedy_holds(p, r.astype(bool), feature, order, SHARE * info["q"])
    assert greedy_holds(p, r.astype(bool), ~feature, order, FLOOR)
    assert 0 < r[feature].sum() < feature.sum()  # the feature alone does not give success away
    assert r[~feature].sum() > 0
    # exact rates: the task's enumeration, the planted record and brute force agree
    base = p[r == 1].sum()
    est = task.success_rate(load_model(task.prior_dir()))
    assert est["exact"] and est["rate"] == pytest.approx(base, rel=1e-5) == info["base"]
    assert est["feature_rate"] == pytest.approx(q, rel=1e-5)
    assert est["floor_rate"] == pytest.approx(p[(r == 1) & ~feature].sum(), rel=1e-5)
    assert info["s"] <= SHARE + 1e-9 and info["e"] <= FLOOR + 1e-9
    assert info["base"] == pytest.approx(info["q"] * info["s"] + info["e"], rel=1e-9)
    assert info["s"] > 0.3 and info["e"] > 0.05  # close to the targets as 16 strings allow


def test_malformed_completions_fail_and_modes_name_the_feature(task):
    z, a = task.marker, S.OFFSET
    assert task.rewards([(z, a), (z, a, a, a), (z, a, S.EOS), (S.BOS, a, a), ()]) == [0] * 5
    assert [task.mode(x) for x in [(z, a, a), (a, z, a), (a, a)]] == ["feature", "plain", "malformed"]
    assert task.render((z, a, a + 1)) == "zab"
