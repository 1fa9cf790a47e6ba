"""MNIST 0-to-6 (4 tokens) with its models: the classifier's held-out accuracy and the reward rule
it decides, the exact rate by enumeration against brute force and sampling, the shipped prior and
its training (tests/unit/test_mnist.py holds the pure checks)."""

import json
import math

import numpy as np
import pytest
import torch

from banel_ray.models import build_llama, load_model, sample, sequence_logprobs
from banel_ray.models.exact_rate import all_logprobs, exact_estimate, log_rate
from banel_ray.tasks import mnist as M
from banel_ray.tasks.mnist import assets as MA

torch.set_num_threads(1)

ACCURACY_BAR = 0.92  # held-out accuracy of the classifier on decoded 14x14 test images


@pytest.fixture(scope="module")
def task():
    return M.MnistZeroToSix()


def tokens(codes):
    return [tuple(int(c) + M.OFFSET for c in row) for row in np.atleast_2d(codes)]


def test_classifier_held_out_accuracy_above_bar(task):
    d = M.load_data()
    o = task.classifier
    acc = float((o.classify_codes(M.encode(d["x_test"], o.codebook)) == d["y_test"]).mean())
    assert acc >= ACCURACY_BAR, acc
    info = json.loads((M.ASSETS / "oracle.json").read_text())
    assert abs(info["decoded_test_accuracy"] - acc) < 1e-9 and info["digest"] == o.digest


def test_enumeration_matches_brute_force_scoring_on_a_tiny_space():
    torch.manual_seed(0)
    model = build_llama(7, hidden=32, layers=1, heads=1, intermediate=64, max_positions=8, seed=5)
    with torch.no_grad():  # random weights are too flat; spread the logits
        model.lm_head.weight.mul_(40)
    toks, length = [3, 4, 5, 6], 3
    table = all_logprobs(model, (1,), toks, length, batch_size=5)
    seqs = [(a, b, c) for a in toks for b in toks for c in toks]
    brute, _ = sequence_logprobs(model, [((1,), s) for s in seqs])
    assert np.allclose(table.ravel(), brute, atol=1e-5)
    # the valid strings carry all mass but what goes to the special tokens 0..2
    specials = sum(
        math.exp(sequence_logprobs(model, [((1,), s[:i] + (t,))])[0][0])
        for s in [()] + [(a,) for a in toks] + [(a, b) for a in toks for b in toks]
        for i in [len(s)]
        for t in (0, 1, 2)
    )
    assert abs(math.exp(log_rate(table, np.ones_like(table, bool))) + specials - 1) < 1e-6
    # an arbitrary success rule: exact log-sum-exp vs the plain sum vs ancestral sampling
    rule = np.zeros(table.shape, bool)
    rule[0, :, 1] = True
    rule[3, 3, :] = True
    est = exact_estimate(table, rule, "test")
    assert est["rate"] == pytest.approx(np.exp(brute)[rule.ravel()].sum(), rel=1e-5)  # float32 passes, other batching
    draws = sample(model, (1,), 20000, length, eos_id=2, seed=1, batch_size=5000)
    hits = sum(1 for s in draws if len(s) == 3 and all(t in toks for t in s) and rule[tuple(t - 3 for t in s)])
    se = math.sqrt(est["rate"] * (1 - est["rate"]) / 20000)
    assert abs(hits / 20000 - est["rate"]) < 4 * se


def test_exact_rate_of_the_prior_matches_scoring_and_is_far_below_sampling(task):
    model = load_model(task.prior_dir())
    logp = all_logprobs(model, task.prompt, range(M.OFFSET, M.VOCAB_SIZE), M.K)
    est = exact_estimate(logp, task.success_table(), "test")  # what task.success_rate returns
    assert est["lo"] == est["rate"] == est["hi"]
    assert 0 < est["rate"] < 1e-4 and 0.99 < est["valid_mass"] <= 1.0
    assert est["rate"] == pytest.approx(np.exp(logp[task.success_table()]).sum(), rel=1e-9)
    # spot check: table entries equal the trainers' scoring path on random and on likely codes
    rng = np.random.default_rng(1)
    codes = np.concatenate(
        [
            rng.integers(0, M.V, size=(300, M.K)),
            np.array(M.codes_of(sample(model, task.prompt, 300, M.K, M.EOS, seed=2))[1]),
        ]
    )
    lp, _ = sequence_logprobs(model, [(task.prompt, t) for t in tokens(codes)])
    assert np.allclose(logp[tuple(codes.T)], lp, atol=1e-4)


def test_prior_is_zeros_only_deterministic_and_cached(tmp_path, task):
    info = json.loads((task.prior_dir() / "banel_ray.json").read_text())
    assert task.prior_dir() == M.ASSETS / "prior" and info["oracle_digest"] == task.classifier.digest
    s = sample(load_model(task.prior_dir()), task.prompt, 500, M.K, M.EOS, seed=0)
    d = task.diagnostics(s)
    assert d["well_formed"] > 0.99 and d["class_0"] > 0.9 and d.get("success", 0) == 0
    lines = []
    small = M.MnistZeroToSix(prior_epochs=1, cache_dir=str(tmp_path))
    first = small.prior_dir(progress=lines.append)
    assert first.parent == tmp_path and lines
    lines.clear()
    assert small.prior_dir(progress=lines.append) == first and not lines
    again = MA.train_prior(tmp_path / "again", 1, progress=None)
    a = load_model(first).state_dict()
    assert all(torch.equal(a[k], v) for k, v in again.state_dict().items())


def test_rewards_follow_the_stated_rule_and_the_success_table(task):
    o, table = task.classifier, task.success_table()
    rng = np.random.default_rng(0)
    codes = rng.integers(0, M.V, size=(5000, M.K))
    r = np.array(task.rewards(tokens(codes)))
    logits = o.logits(M.decode(codes, o.codebook))
    p6 = np.exp(logits[:, 6] - logits.max(1)) / np.exp(logits - logits.max(1, keepdims=True)).sum(1)
    assert (r == (p6 >= M.MIN_PROB)).all()  # reward 1 iff the classifier gives 6 probability >= 0.99
    assert (r == table[tuple(codes.T)]).all()  # the enumerated success set agrees
    assert 0 < r.sum() < len(r)
    assert task.rewards([(M.BOS, 4, 5, 6), (4, 5, 6), (M.EOS,)]) == [0, 0, 0]  # malformed: failure
    d = M.load_data()
    sixes = M.encode(d["x_test"][d["y_test"] == 6], o.codebook)
    zeros = M.encode(d["x_test"][d["y_test"] == 0], o.codebook)
    assert np.mean(task.rewards(tokens(sixes))) > 0.6 and np.mean(task.rewards(tokens(zeros))) < 0.005
