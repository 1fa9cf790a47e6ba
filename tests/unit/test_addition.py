"""The addition-attack task: query grammar, carry chains, and the shipped solver as oracle."""

import json

from banel_ray.tasks import addition as A


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


def test_shipped_solver_is_the_oracle():
    task = A.AdditionAttack()
    info = json.loads((task.solver_dir() / "banel_ray.json").read_text())
    assert info["accuracy"] > 0.4
    queries = [("12", "34"), ("5", "5"), ("100", "200"), ("7", "0")]
    answers = task.solver_answers(queries)
    correct = [a == str(int(x) + int(y)) for a, (x, y) in zip(answers, queries)]
    rewards = task.rewards([q(f"{x}+{y}=") for x, y in queries] + [q("1+"), q("12+3=", eos=False)])
    assert rewards == [int(not c) for c in correct] + [0, 0]  # malformed is never a success


def test_prior_samples_are_mostly_well_formed():
    from banel_ray.models import load_model, sample

    task = A.AdditionAttack()
    s = sample(load_model(task.prior_dir()), task.prompt, 500, task.max_new_tokens, A.EOS, seed=0)
    d = task.diagnostics(s)
    assert d["well_formed"] > 0.95 and d["leading_zero"] < 0.02


def test_models_train_deterministically_and_are_cached(tmp_path):
    lines = []
    task = A.AdditionAttack(prior_steps=30, cache_dir=str(tmp_path))
    first = task.prior_dir(progress=lines.append)
    assert first.parent == tmp_path and any("training the prior" in l for l in lines)
    lines.clear()
    assert task.prior_dir(progress=lines.append) == first and not lines  # cached: no training
    again = A.train_prior(tmp_path / "again", 8, 30, progress=None)
    import torch

    from banel_ray.models import load_model

    a, b = load_model(first).state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_shipped_checkpoints_are_used_for_default_settings():
    task = A.AdditionAttack()
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
        task = A.AdditionAttack(reward=reward)
        assert task.rewards(draws) == expect
        monkeypatch.setattr("banel_ray.models.sample", lambda *a, **k: draws)
        monkeypatch.setattr("banel_ray.models.load_model", lambda *a, **k: None)
        reg = A.measure_regime(task, n=len(draws), batch=len(draws))
        assert reg["base"]["k"] == sum(expect) and reg["reward"] == reward
        assert reg["modes"]["leading_zero"]["draws"] == 2 and reg["modes"]["leading_zero"]["successes"] == sum(expect)
        assert reg["modes"]["malformed"]["draws"] == 1 and reg["modes"]["malformed"]["successes"] == 0
    # the solver-error measurement counts with the same function: a wrong-format answer is an error
    monkeypatch.setattr(
        A.AdditionAttack, "solver_answers", lambda self, qs: ["0" + str(int(a) + int(b)) for a, b in qs]
    )
    assert A.solver_error(A.AdditionAttack(reward="exact"), n=50, batch=50)["errors"] == 50
    assert A.solver_error(A.AdditionAttack(reward="numeric"), n=50, batch=50)["errors"] == 0
    assert A.AdditionAttack.check_options({"reward": "strict"}).startswith("'task_options.reward' must be one of")
    assert np.isclose(A.solver_error(A.AdditionAttack(reward="numeric"), n=50, batch=50)["hi"], 0.0711, atol=1e-3)


def test_modes_cover_every_sample():
    t = A.AdditionAttack()
    assert [t.mode(q(x)) for x in ("05+3=", "99999+1=", "12+3=")] == ["leading_zero", "carry_chain", "other"]
    assert t.mode(q("1+")) == "malformed"


def test_the_shipped_regime_measurement_agrees_with_a_quick_re_estimate():
    """regime.json beside the default prior: measured with this solver and this reward, and a fresh
    4,000-draw estimate (other seed) holds its rate within the estimate's 99% interval, mode by mode
    for the two modes that carry the successes."""
    from banel_ray.algorithms.stats import clopper_pearson

    task = A.AdditionAttack()
    ref = task.reference_rate()
    shipped = json.loads((task.prior_dir() / "regime.json").read_text())
    assert ref is not None and ref["n"] == shipped["samples"] >= 1_000_000 and ref["rate"] == shipped["base"]["rate"]
    quick = A.measure_regime(task, n=4000, seed=7, batch=4000)
    lo, hi = clopper_pearson(quick["base"]["k"], 4000, alpha=0.01)
    assert lo <= ref["rate"] <= hi, (quick["base"], ref)
    for mode in ("leading_zero", "other"):
        q_m, s_m = quick["modes"][mode], shipped["modes"][mode]
        lo, hi = clopper_pearson(q_m["draws"], 4000, alpha=0.01)
        assert lo <= s_m["share"] <= hi, (mode, q_m, s_m)
    assert A.AdditionAttack(reward="numeric").reference_rate() is None  # another criterion: not this measurement
