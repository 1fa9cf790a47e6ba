"""The addition-attack task: query grammar, carry chains, modes and the reward criteria (pure checks;
tests/integration/test_addition_assets.py runs the shipped solver and priors)."""

import pytest

from banel_ray.tasks import addition as A
from banel_ray.tasks.addition import assets as AS

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
        reg = AS.measure_regime(task, n=len(draws), batch=len(draws))
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
    assert AS.solver_error(A.AdditionAttack(reward="exact"), n=50, batch=50)["errors"] == 50
    assert AS.solver_error(A.AdditionAttack(reward="numeric"), n=50, batch=50)["errors"] == 0
    assert A.AdditionAttack.check_options({"reward": "strict"}).startswith("'task_options.reward' must be one of")
    assert np.isclose(AS.solver_error(A.AdditionAttack(reward="numeric"), n=50, batch=50)["hi"], 0.0711, atol=1e-3)


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
