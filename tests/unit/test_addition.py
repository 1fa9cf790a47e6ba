"""The addition-attack task: query grammar, carry chains, and the shipped solver as oracle."""

import json

import pytest

from banel_ray.tasks import addition as A

BOTH = [A.AdditionAttack, A.AdditionAttackD8]  # the regime task (default) and the 8-digit one before it


def q(text, eos=True):
    return A.encode(text) + ((A.EOS,) if eos else ())


def test_grammar():
    assert A.parse_query(q("12+345="), 8) == ("12", "345")
    assert A.parse_query(q("007+1="), 8) == ("007", "1")  # leading zeros are well formed
    for bad in ("12+345", "+1=", "1+2+3=", "123456789+1=", "1=2="):
        assert A.parse_query(q(bad), 8) is None, bad
    assert A.parse_query(q("1+2=", eos=False), 8) is None  # truncated
    assert A.parse_query((15, A.EOS), 8) is None  # the unused vocabulary slot


def test_carry_chain_and_patterns():
    assert A.carry_chain("999", "1") == 3
    assert A.carry_chain("123", "456") == 0
    assert A.pattern_of("0012", "5", 8) == "leading-zero"
    assert A.pattern_of("99999", "1", 8) == "carry-chain-5"


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
    again = A.train_prior(tmp_path / "again", task.max_digits, 30, progress=None)
    import torch

    from banel_ray.models import load_model

    a, b = load_model(first).state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("cls", BOTH)
def test_shipped_checkpoints_are_used_for_default_settings(cls):
    task = cls()
    assert task.prior_dir().parent == A.ASSETS and task.solver_dir().parent == A.ASSETS


def test_one_reward_criterion_for_the_task_and_its_measurements(monkeypatch):
    """A copied leading zero ("097" for 0+97=) is wrong under `exact`, right under `numeric`; the
    task's reward, the regime measurement and the solver-error measurement all use that criterion."""
    import numpy as np

    assert A.answer_is_wrong("097", "0", "97", "numeric") is False
    assert A.answer_is_wrong("097", "0", "97", "exact") is True
    assert A.answer_is_wrong("97", "0", "97", "exact") is False
    assert A.answer_is_wrong("1x", "1", "1", "numeric") is True
    echo_zero = lambda self, queries: [
        ("0" if len(a) > 1 and a[0] == "0" else "") + str(int(a) + int(b)) for a, b in queries
    ]
    monkeypatch.setattr(A.AdditionAttack, "solver_answers", echo_zero)
    draws = [q("05+3="), q("5+3="), q("012+1="), q("7+"), q("0+0=")]
    for reward, expect in (("exact", [1, 0, 1, 0, 0]), ("numeric", [0, 0, 0, 0, 0])):
        task = A.AdditionAttackD8(reward=reward)
        assert task.rewards(draws) == expect
        monkeypatch.setattr("banel_ray.models.sample", lambda *a, **k: draws)
        monkeypatch.setattr("banel_ray.models.load_model", lambda *a, **k: None)
        reg = A.measure_regime(task, n=len(draws), batch=len(draws))
        assert reg["base"]["k"] == sum(expect) and reg["reward"] == reward
        assert reg["modes"]["leading_zero"]["draws"] == 2 and reg["modes"]["leading_zero"]["successes"] == sum(expect)
        assert reg["modes"]["malformed"]["draws"] == 1 and reg["modes"]["malformed"]["successes"] == 0
        # both criteria are measured whichever the task pays on; every exact success here is format only
        assert reg["base_by_reward"]["exact"]["k"] == 2 and reg["base_by_reward"]["numeric"]["k"] == 0
        assert reg["format_only_share_of_exact"] == 1.0
    # the solver-error measurement counts with the same function: a wrong-format answer is an error
    monkeypatch.setattr(
        A.AdditionAttack, "solver_answers", lambda self, qs: ["0" + str(int(a) + int(b)) for a, b in qs]
    )
    assert A.solver_error(A.AdditionAttack(reward="exact"), n=50, batch=50)["errors"] == 50
    assert A.solver_error(A.AdditionAttack(reward="numeric"), n=50, batch=50)["errors"] == 0
    assert A.AdditionAttack.check_options({"reward": "strict"}).startswith("'task_options.reward' must be one of")
    assert np.isclose(A.solver_error(A.AdditionAttack(reward="numeric"), n=50, batch=50)["hi"], 0.0711, atol=1e-3)


def test_modes_cover_every_sample():
    t = A.AdditionAttackD8()
    assert [t.mode(q(x)) for x in ("05+3=", "99999+1=", "12+3=")] == ["leading_zero", "carry_chain", "other"]
    assert t.mode(q("1+")) == "malformed"
    t = A.AdditionAttack()
    assert [t.mode(q(x)) for x in ("05+03=", "05+3=", "5+03=", "99999+1=")] == [
        "both_padded",
        "one_padded",
        "one_padded",
        "plain",
    ]
    assert t.mode(q("1+")) == "malformed"


def test_judge_reads_both_criteria_from_one_solver_call(monkeypatch):
    calls = []

    def answers(self, queries):
        calls.append(len(queries))
        return ["0" + str(int(a) + int(b)) if a.startswith("0") else "9" for a, b in queries]

    monkeypatch.setattr(A.AdditionAttack, "solver_answers", answers)
    t = A.AdditionAttackNumeric()
    draws = [q("05+3="), q("5+3="), q("1+")]
    assert t.rewards(draws) == [0, 1, 0]  # numeric: "08" is right in value, "9" is wrong
    d = t.diagnostics(draws)  # the same draws: no second solver call
    assert calls == [2] and d["rate_exact"] == 2 / 3 and d["rate_numeric"] == 1 / 3 and d["format_only"] == 1 / 3


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
    quick = A.measure_regime(task, n=4000, seed=7, batch=4000)
    lo, hi = clopper_pearson(quick["base"]["k"], 4000, alpha=0.01)
    assert lo <= ref["rate"] <= hi, (quick["base"], ref)
    for mode in modes:
        q_m, s_m = quick["modes"][mode], shipped["modes"][mode]
        lo, hi = clopper_pearson(q_m["draws"], 4000, alpha=0.01)
        assert lo <= s_m["share"] <= hi, (mode, q_m, s_m)
    other = "exact" if task.reward == "numeric" else "numeric"
    assert cls(reward=other).reference_rate() is None  # another criterion: not this measurement
