"""MNIST 0-to-6 in the paper's regime (tasks/mnist_rare/): the shipped record, tempering and
spread on small tables, the configs (tests/integration/test_mnist_rare_models.py runs the shipped
prior against its record and a tempered fit)."""

import json
import math

import numpy as np
import pytest
import torch

from banel_ray import tasks
from banel_ray.models import build_llama, copy_model
from banel_ray.models.exact_rate import all_logprobs, spread
from banel_ray.tasks import mnist as M
from banel_ray.tasks import mnist_rare as R
from banel_ray.tasks.mnist_rare import assets as RA
from banel_ray.tasks.mnist_rare import cli as RC

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def record():
    return json.loads(R.REGIME.read_text())


def test_the_record_states_the_regime(record):
    assert record["rate"] <= R.MAX_RATE and record["log10_rate"] == pytest.approx(math.log10(record["rate"]))
    assert record["codes"] == M.V**M.K and record["task"] == "mnist_0to6_rare"
    # as wide as the zeros' own codes (3,196 distinct, 7.73 nats): 250 draws a round are mostly distinct
    assert record["entropy_nats"] > 7.0 and record["codes_for_50pct"] > 500 and record["codes_for_99pct"] > 3000
    assert record["codes_for_50pct"] < record["codes_for_99pct"] < record["codes"]
    info = json.loads((R.PRIOR / "banel_ray.json").read_text())
    assert info["recipe"] == "tempered_fit" and info["fit"] == RA.FIT
    assert info["temperature"] == info["power"] == RA.TEMPERATURE
    assert info["weights_digest"] == record["weights_digest"]


@pytest.mark.slow
def test_the_record_matches_a_full_recomputation(record):
    """One exact pass over the 64**4 codes (about a minute on one core)."""
    assert RA.differences(RA.regime(), record) == []


def test_temper_divides_every_next_token_logit():
    model = build_llama(7, hidden=32, layers=1, heads=1, intermediate=64, max_positions=8, seed=1)
    base = copy_model(model)
    ids = torch.tensor([[1, 3, 4, 5]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        after = RA.temper(model, 0.25)(input_ids=ids).logits
    assert torch.allclose(after, before / 0.25, atol=1e-5)
    # the exact table of the tempered model: every string's log-probability at temperature 0.25
    toks = (3, 4, 5, 6)
    table = all_logprobs(model, (1,), toks, 2)
    for i, a in enumerate(toks):
        for j, b in enumerate(toks):
            with torch.no_grad():
                lg = torch.log_softmax(base(input_ids=torch.tensor([[1, a]])).logits[0] / 0.25, -1)
            assert table[i, j] == pytest.approx(float(lg[0, a] + lg[1, b]), abs=1e-5)


def test_tempered_targets_are_the_zeros_next_code_distributions_to_a_power():
    codes = np.array([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 5], [1, 2, 3, 5], [7, 2, 3, 4]])
    t = RA.tempered_targets(codes, 0.5)
    assert t.shape == (5, M.K, M.V) and np.allclose(t.sum(-1), 1.0)
    # first code: 1 four times, 7 once; to the power 0.5: 2 : 1
    assert t[0, 0, 1] == pytest.approx(2 / 3) and t[0, 0, 7] == pytest.approx(1 / 3)
    assert np.allclose(t[:, 0], t[0, 0])  # the same prefix (none), the same target
    assert t[0, 1, 2] == 1.0 and t[4, 1, 2] == 1.0  # one continuation seen: certain, whatever the power
    # after 1, 2, 3: 4 once and 5 three times -> 1 : sqrt(3); after 7, 2, 3: 4 only
    assert t[0, 3, 5] / t[0, 3, 4] == pytest.approx(math.sqrt(3)) and t[4, 3, 4] == 1.0
    assert np.allclose(RA.tempered_targets(codes, 1.0)[0, 3, [4, 5]], [0.25, 0.75])  # power 1: the counts


def test_spread_counts_entropy_and_the_codes_that_hold_the_mass():
    p = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625]) * 0.8  # 0.2 of the mass outside the table
    s = spread(np.log(p).reshape(5, 1))
    q = p / p.sum()
    assert s["valid_mass"] == pytest.approx(0.8) and s["entropy_nats"] == pytest.approx(-(q * np.log(q)).sum())
    assert s["effective_codes"] == pytest.approx(math.exp(s["entropy_nats"]))
    assert (s["codes_for_50pct"], s["codes_for_99pct"]) == (1, 5)
    assert spread(np.log(p), masses=(0.75,))["codes_for_75pct"] == 2


def test_differences_name_what_changed(record):
    assert RA.differences(record, record) == []
    moved = dict(record, log10_rate=record["log10_rate"] + 0.01, weights_digest="0" * 16)
    diff = RA.differences(moved, record)
    assert len(diff) == 2 and diff[0].startswith("weights_digest") and diff[1].startswith("log10_rate")


@pytest.mark.parametrize("flag", ["--temperature", "--power"])
def test_bad_temperature_or_power_stops_with_one_line(capsys, flag):
    assert RC.main(["prior", "--out", "/nonexistent/x", flag, "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and flag in err


def test_paper_config_names_the_task_at_the_papers_settings():
    from banel_ray import config as C
    from banel_ray.run import CONFIG_DIR

    cfg = C.load(str(CONFIG_DIR / "mnist_rare_paper.yaml"))
    assert (cfg["task"], cfg["samples_per_round"], cfg["rounds"], cfg["filter.factor"]) == (
        "mnist_0to6_rare",
        250,
        30,
        2.0,
    )
    assert cfg["negative.epochs"] >= 50
    C.validate(cfg)  # no error: the task's options and the rest are valid
    assert tasks.resolve("mnist_0to6_rare") is R.MnistRare
