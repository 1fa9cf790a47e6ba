"""The addition-attack task with its shipped models: the solver as oracle, the priors' samples, the
regime measurement re-estimated, and training the models (tests/unit/test_addition.py holds the
pure checks)."""

import json

import pytest

from banel_ray.tasks import addition as A
from banel_ray.tasks.addition import assets as AS

BOTH = [A.AdditionAttack, A.AdditionAttackD8]  # the regime task (default) and the 8-digit one before it


def q(text, eos=True):
    return A.encode(text) + ((A.EOS,) if eos else ())


@pytest.mark.parametrize("cls", BOTH)
def test_shipped_solver_is_the_oracle(cls):
    task = cls()
    info = json.loads((task.solver_dir() / "banel_ray.json").read_text())
    assert info["accuracy"] > 0.4
    queries = [("12", "34"), ("5", "5"), ("100", "200"), ("7", "0"), ("1234", "9")]
    answers = task.solver_answers(queries)
    correct = [a == str(int(x) + int(y)) for a, (x, y) in zip(answers, queries)]
    if cls is A.AdditionAttack:  # it writes its sums reversed; the task reads them back in normal order
        assert info["answer_order"] == "reversed" and all(correct), answers
    rewards = task.rewards([q(f"{x}+{y}=") for x, y in queries] + [q("1+"), q("12+3=", eos=False)])
    assert rewards == [int(not c) for c in correct] + [0, 0]  # malformed is never a success


@pytest.mark.parametrize(
    "cls,well_formed", [(A.AdditionAttack, 0.95), (A.AdditionAttackNumeric, 0.9), (A.AdditionAttackD8, 0.95)]
)
def test_prior_samples_are_mostly_well_formed(cls, well_formed):
    from banel_ray.models import load_model, sample

    task = cls()
    s = sample(load_model(task.prior_dir()), task.prompt, 500, task.max_new_tokens, A.EOS, seed=0)
    d = task.diagnostics(s)
    assert d["well_formed"] > well_formed and d["leading_zero"] < 0.02
    assert d["format_only"] == d["rate_exact"] - d["rate_numeric"] >= 0  # numeric failures are exact failures


def test_models_train_deterministically_and_are_cached(tmp_path):
    lines = []
    task = A.AdditionAttack(prior_steps=30, cache_dir=str(tmp_path))
    first = task.prior_dir(progress=lines.append)
    assert first.parent == tmp_path and any("training the prior" in l for l in lines)
    lines.clear()
    assert task.prior_dir(progress=lines.append) == first and not lines  # cached: no training
    again = AS.train_prior(tmp_path / "again", task.max_digits, 30, progress=None)
    import torch

    from banel_ray.models import load_model

    a, b = load_model(first).state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "cls,modes", [(A.AdditionAttack, ("plain", "malformed")), (A.AdditionAttackD8, ("leading_zero", "other"))]
)
def test_the_shipped_regime_measurement_agrees_with_a_quick_re_estimate(cls, modes):
    """regime.json beside the default prior: measured with this solver and this reward, and a fresh
    4,000-draw estimate (other seed) holds its rate within the estimate's 99% interval, mode by mode
    for the two modes that carry the successes."""
    from banel_ray.algorithms.stats import clopper_pearson

    task = cls()
    ref = task.reference_rate()
    shipped = json.loads((task.prior_dir() / "regime.json").read_text())
    assert ref is not None and ref["n"] == shipped["samples"] >= 1_000_000 and ref["rate"] == shipped["base"]["rate"]
    quick = AS.measure_regime(task, n=4000, seed=7, batch=4000)
    lo, hi = clopper_pearson(quick["base"]["k"], 4000, alpha=0.01)
    assert lo <= ref["rate"] <= hi, (quick["base"], ref)
    for mode in modes:
        q_m, s_m = quick["modes"][mode], shipped["modes"][mode]
        lo, hi = clopper_pearson(q_m["draws"], 4000, alpha=0.01)
        assert lo <= s_m["share"] <= hi, (mode, q_m, s_m)
    other = "exact" if task.reward == "numeric" else "numeric"
    assert cls(reward=other).reference_rate() is None  # another criterion: not this measurement
