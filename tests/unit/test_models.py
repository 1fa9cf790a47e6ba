"""Torch model helpers: likelihoods, training, sampling, greedy decoding (tiny random models)."""

import numpy as np
import pytest
import torch

from banel_ray import models as M
from banel_ray.models import (
    build_llama,
    copy_model,
    pad_pairs,
    sequence_logprobs,
    sequence_logprobs_and_min,
    token_logprobs,
    train_mle,
)


@pytest.fixture(scope="module")
def tiny():
    return M.build_llama(16, hidden=64, layers=1, heads=2, intermediate=64, max_positions=32, seed=0)


def test_head_dim_must_suit_vllm():
    with pytest.raises(ValueError, match=">= 32"):
        M.build_llama(16, hidden=64, heads=4)


def test_sequence_logprobs_sum_tokens_and_ignore_padding(tiny):
    pairs = [((1,), (3, 4, 2)), ((1,), (5, 2)), ((1, 3), (4, 2))]
    lp, lengths = M.sequence_logprobs(tiny, pairs)
    assert lengths.tolist() == [3, 2, 2]
    with torch.no_grad():  # the same numbers, one sequence at a time, by hand
        for (p, c), got in zip(pairs, lp):
            ids = torch.tensor([list(p) + list(c)])
            logp = torch.log_softmax(tiny(input_ids=ids).logits[0, :-1].float(), -1)
            want = sum(float(logp[len(p) - 1 + i, t]) for i, t in enumerate(c))
            assert got == pytest.approx(want, abs=1e-4)
    # the prompt is not scored: (1,3)->(4,2) differs from (1,)->(3,4,2)
    assert lp[2] != pytest.approx(lp[0])


def test_training_lowers_nll_and_is_deterministic():
    pairs = [((1,), (3, 4, 5, 2))] * 32 + [((1,), (6, 7, 2))] * 32
    a = M.build_llama(16, hidden=64, layers=1, heads=2, intermediate=64, seed=0)
    b = M.build_llama(16, hidden=64, layers=1, heads=2, intermediate=64, seed=0)
    before = M.mean_nll(a, pairs)
    la = M.train_mle(a, pairs, epochs=3, lr=3e-3, batch_size=16, seed=1)
    lb = M.train_mle(b, pairs, epochs=3, lr=3e-3, batch_size=16, seed=1)
    assert M.mean_nll(a, pairs) < before * 0.5
    assert la == lb


def test_sampler_matches_model_distribution(tiny):
    # one-token completions: the empirical law of sampled first tokens matches softmax
    out = M.sample(tiny, (1,), 4000, max_new_tokens=1, eos_id=2, seed=0)
    counts = np.bincount([c[0] for c in out], minlength=16) / 4000
    with torch.no_grad():
        p = torch.softmax(tiny(input_ids=torch.tensor([[1]])).logits[0, -1], -1).numpy()
    assert np.abs(counts - p).max() < 0.03
    again = M.sample(tiny, (1,), 50, max_new_tokens=5, eos_id=2, seed=7)
    assert again == M.sample(tiny, (1,), 50, max_new_tokens=5, eos_id=2, seed=7)


def test_greedy_batch_left_padding_matches_one_by_one(tiny):
    prompts = [(1, 3), (1, 4, 5, 6, 7), (1,)]
    batch = M.greedy_batch(tiny, prompts, 6, eos_id=2)
    single = [M.greedy_batch(tiny, [p], 6, eos_id=2)[0] for p in prompts]
    assert batch == single


def test_save_load_roundtrip(tmp_path, tiny):
    M.save_model(tiny, tmp_path / "m", extra={"note": 1})
    back = M.load_model(tmp_path / "m")
    pairs = [((1,), (3, 2))]
    assert M.sequence_logprobs(back, pairs)[0][0] == pytest.approx(M.sequence_logprobs(tiny, pairs)[0][0])
    assert (tmp_path / "m" / "model.safetensors").exists()


def test_kl_anchor_keeps_a_fitted_model_close_to_its_anchor():
    """Distilling a few strings moves the model; the same fit with a KL anchor moves it less."""
    prior = build_llama(8, hidden=32, layers=1, heads=1, intermediate=32, max_positions=8, seed=0)
    data = [((1,), (3, 4, 5, 2))] * 16
    probe = [((1,), (6, 6, 7, 2)), ((1,), (3, 3, 3, 2))]
    free, held = copy_model(prior), copy_model(prior)
    train_mle(free, data, 5, 1e-2, 8, 0)
    train_mle(held, data, 5, 1e-2, 8, 0, anchor=prior, kl_coef=5.0)
    drift = lambda m: float(np.abs(sequence_logprobs(m, probe)[0] - sequence_logprobs(prior, probe)[0]).sum())
    fit = lambda m: float(sequence_logprobs(m, data[:1])[0][0])
    assert drift(held) < 0.5 * drift(free)
    assert fit(held) > float(sequence_logprobs(prior, data[:1])[0][0]) + 0.5  # still learnt the data
    a, b = copy_model(prior), copy_model(prior)  # kl_coef 0 is plain maximum likelihood, bit for bit
    train_mle(a, data, 2, 1e-2, 8, 0)
    train_mle(b, data, 2, 1e-2, 8, 0, anchor=prior, kl_coef=0.0)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_min_token_logprob_finds_the_least_likely_token():
    m = build_llama(8, hidden=32, layers=1, heads=1, intermediate=32, max_positions=8, seed=1)
    pairs = [((1,), (3, 4, 2)), ((1,), (5,))]
    total, least, lengths = sequence_logprobs_and_min(m, pairs)
    ids, attn, target = pad_pairs(pairs, 0)
    lp, mask = token_logprobs(m, ids, attn, target)
    assert np.allclose(total, sequence_logprobs(m, pairs)[0])
    assert np.isclose(least[0], float(lp[0][mask[0]].min())) and np.isclose(least[1], total[1])
    assert lengths.tolist() == [3, 1]


def test_max_token_log_ratio_is_the_largest_per_token_rise_over_the_anchor():
    import torch

    from banel_ray.models import build_llama, copy_model, max_token_log_ratio, token_logprobs
    from banel_ray.models.logprobs import pad_pairs

    anchor = build_llama(16, seed=0, hidden=64, layers=1, heads=2, intermediate=64, max_positions=16)
    model = copy_model(anchor)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pairs = [((1,), (3, 4, 2)), ((1,), (5, 2))]
    got = max_token_log_ratio(model, anchor, pairs)
    ids, attn, target = pad_pairs(pairs[:2], 0)
    lm, mask = token_logprobs(model, ids, attn, target)
    la, _ = token_logprobs(anchor, ids, attn, target)
    want = [float((lm - la)[i][mask[i]].max()) for i in range(2)]
    assert np.allclose(got, want, atol=1e-5) and np.all(np.abs(got) > 1e-4)
    assert np.allclose(max_token_log_ratio(anchor, anchor, pairs), 0.0, atol=1e-6)
