"""MNIST 0-to-6 in the paper's regime (tasks/mnist_rare/) with its models: the shipped prior
against its record (digest, likeliest codes, its draws), and a tempered fit, trained, then divided
by its temperature (the record itself and the pure pieces are in tests/unit/test_mnist_rare.py)."""

import json

import numpy as np
import pytest
import torch

from banel_ray import tasks
from banel_ray.models import build_llama, load_model, sample, sequence_logprobs
from banel_ray.tasks import mnist as M
from banel_ray.tasks import mnist_rare as R
from banel_ray.tasks.mnist_rare import assets as RA

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def record():
    return json.loads(R.REGIME.read_text())


def test_a_tempered_fit_divided_by_its_temperature_spreads_as_the_data_do():
    """Fit to the targets at power 0.5, then logits / 0.5: the training codes get their empirical
    probabilities back, and the mass the fit leaves on other codes is about squared."""
    torch.manual_seed(0)
    codes = np.array([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 5], [1, 2, 3, 5], [7, 2, 3, 4], [7, 9, 3, 4]])
    model = build_llama(M.VOCAB_SIZE, hidden=32, layers=1, heads=1, intermediate=64, max_positions=8, seed=0)
    kls = RA.fit_tempered(model, codes, 0.5, epochs=150, lr=1e-2, final_lr=1e-3, batch_size=6, seed=0)
    assert kls[-1] < 0.02 < kls[0]
    emp = {(1, 2, 3, 4): 1 / 6, (1, 2, 3, 5): 3 / 6, (7, 2, 3, 4): 1 / 6, (7, 9, 3, 4): 1 / 6}
    pairs = [((M.BOS,), tuple(t + M.OFFSET for t in c)) for c in emp]
    raw, _ = sequence_logprobs(model, pairs)
    tempered, _ = sequence_logprobs(RA.temper(model, 0.5), pairs)
    assert np.allclose(np.exp(tempered), list(emp.values()), atol=0.03)
    assert not np.allclose(np.exp(raw), list(emp.values()), atol=0.05)  # the fit itself is flatter
    off_raw, off = 1 - np.exp(raw).sum(), 1 - np.exp(tempered).sum()  # mass off the training codes
    assert off < 2 * off_raw**2 < 1e-3  # squared: each unseen next code's odds to the power 1/T


def test_the_shipped_prior_is_the_one_the_record_describes(record):
    """A fast check of the record against the weights: digest and the likeliest codes' log-probs
    (the full recomputation is the slow test below, and ``mnist_rare rate --check``)."""
    task = tasks.build("mnist_0to6_rare", {})
    model = load_model(task.prepare(progress=lambda s: None))
    assert task.prior_dir() == R.PRIOR and RA.weights_digest(model) == record["weights_digest"]
    assert task.classifier.digest == record["oracle_digest"] == M.MnistZeroToSix().classifier.digest
    codes = [tuple(c + M.OFFSET for c in code) for code in record["top_codes"]]
    lp, _ = sequence_logprobs(model, [(task.prompt, c) for c in codes])
    assert np.allclose(lp, record["top_logp"], atol=1e-4)
    assert task.success_codes().sum() == record["success_codes"]
    # its draws are zeros: well formed, read as 0, no six among them
    d = task.diagnostics(sample(model, task.prompt, 500, M.K, M.EOS, seed=0))
    assert d["well_formed"] == 1.0 and d["class_0"] > 0.95 and d.get("success", 0) == 0
