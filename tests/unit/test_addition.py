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
