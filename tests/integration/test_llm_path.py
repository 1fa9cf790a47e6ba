"""The LLM path with a tiny random Llama and a tokenizer made offline: completion-only scoring,
the vLLM sampler taking new weights and then sampling from them, and full vs LoRA negative models."""

import numpy as np
import pytest
import torch

from banel_ray import models as M
from banel_ray.tasks.gsm_hard import GsmHard

OPTS = {"question": 143, "max_new_tokens": 24}


def _task(tiny):
    return GsmHard(model=str(tiny), **OPTS)


def _ids(task, text):
    return tuple(task.tokenizer(text, add_special_tokens=False)["input_ids"]) + (task.eos_id,)


def test_completion_only_scoring_matches_full_logits_and_ignores_batching(tiny_llm, monkeypatch):
    task = _task(tiny_llm)
    model = M.load_model(tiny_llm)
    comps = [_ids(task, t) for t in ("The answer is 7500.", "5 cents", "Publisher B pays 10 cents per")]
    pairs = [(task.prompt, c) for c in comps]
    lp, lengths = M.sequence_logprobs(model, pairs, pad_id=task.pad_id)
    assert list(lengths) == [len(c) for c in comps]
    with torch.no_grad():  # reference: every position's logits, completion tokens summed
        for (p, c), got in zip(pairs, lp):
            ids = torch.tensor([list(p) + list(c)])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            ref = logp[torch.arange(len(p) - 1, ids.shape[1] - 1), ids[0, len(p) :]].sum()
            assert abs(float(ref) - got) < 1e-4
    # mixed prompt lengths in one batch, and one-row micro-batches under a tiny logit budget
    mixed = pairs + [(task.prompt[:40], comps[0])]
    a, _ = M.sequence_logprobs(model, mixed, pad_id=task.pad_id)
    monkeypatch.setattr(M, "LOGIT_BUDGET", 1)
    b, _ = M.sequence_logprobs(model, mixed, pad_id=task.pad_id)
    assert np.allclose(a, b, atol=1e-4) and np.allclose(a[:3], lp, atol=1e-4)
    assert abs(a[3] - a[0]) > 1e-3  # the prompt conditions the completion


@pytest.fixture(scope="module")
def vsampler(tiny_llm):
    from banel_ray.actors.sampler import Sampler

    return Sampler("vllm", str(tiny_llm), "gsm_hard", dict(OPTS, model=str(tiny_llm)), seed=0, kv_cache_mb=16)


def test_vllm_sampler_takes_new_weights_then_samples_from_them(tiny_llm, vsampler):
    task = vsampler.task
    base = M.load_model(tiny_llm)
    before = vsampler.sample(16, seed=1).samples
    assert all(len(s) <= OPTS["max_new_tokens"] for s in before)
    torch_lp, _ = M.sequence_logprobs(base, [(task.prompt, s) for s in before], pad_id=task.pad_id)
    assert np.abs(torch_lp - np.array(vsampler.logprobs(before))).max() < 1e-3

    # teach a copy one right answer (question 143: 7500) and hand it to the running engine
    target = _ids(task, "The answer is 7500.")
    tuned = M.copy_model(base)
    M.train_mle(tuned, [(task.prompt, target)] * 8, epochs=25, lr=3e-3, batch_size=8, seed=0, pad_id=task.pad_id)
    assert vsampler.load_weights(1, M.state_dict(tuned)) == 1
    out = vsampler.sample(16, seed=1)
    assert out.version == 1
    after = out.samples
    # the engine now samples the new model: its draws are likely under it, unlikely under p0
    new_lp, _ = M.sequence_logprobs(tuned, [(task.prompt, s) for s in after], pad_id=task.pad_id)
    old_lp, _ = M.sequence_logprobs(base, [(task.prompt, s) for s in after], pad_id=task.pad_id)
    assert np.abs(new_lp - np.array(vsampler.logprobs(after))).max() < 1e-3
    assert (new_lp - old_lp).mean() > 20
    assert sum(s == target for s in after) >= 8 and target not in before
    assert sum(task.rewards(after)) >= 8 and sum(task.rewards(before)) == 0


@pytest.mark.parametrize(
    "lora", [None, {"r": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}]
)
def test_full_and_lora_negative_models_train_and_score(tiny_llm, lora):
    from banel_ray.actors.trainers import NegativeTrainer
    from banel_ray.config import SECTIONS
    from banel_ray.records import PaidBatch, SampleBatch

    neg_cfg = SECTIONS["negative"](
        epochs=4,
        lr=3e-3 if lora else 1e-3,
        batch_size=8,
        **({"lora_r": lora["r"], "lora_alpha": lora["alpha"]} if lora else {}),
    )
    tr = NegativeTrainer(
        "gsm_hard",
        dict(OPTS, model=str(tiny_llm)),
        str(tiny_llm),
        seed=0,
        trainer=SECTIONS["trainer"](grad_checkpointing=lora is not None),  # LoRA over frozen weights with recomputation
        negative=neg_cfg,
    )
    task = tr.task
    gen_before = {k: v.clone() for k, v in tr.generator.state_dict().items()}
    negs = [_ids(task, f"The answer is {n}.") for n in range(100, 130)]
    fresh = [_ids(task, t) for t in ("Publisher A pays 5 cents", "So 1000 sentences", "The answer is 7500.")]
    fit = tr.fit(1, PaidBatch(samples=negs, rewards=[0] * len(negs), versions=[0] * len(negs)))
    full_params = sum(p.numel() for p in tr.generator.parameters())
    if lora:
        assert 0 < fit["neg_trainable_params"] < 0.1 * full_params
    else:
        assert fit["neg_trainable_params"] == full_params
    assert fit["neg_heldout_nll"] < fit["gen_heldout_nll"] - 0.5  # p_phi learnt the failures
    assert fit["neg_peak_rss_mb"] > 0
    assert not hasattr(tr.negative_model, "peft_config")  # merged: a plain model
    assert all(torch.equal(v, tr.generator.state_dict()[k]) for k, v in gen_before.items())  # g_t untouched
    sc = tr.score(SampleBatch(negs[:5]), SampleBatch(fresh))
    s = np.array(sc.scores)
    assert len(s) == 8 and np.isfinite(s).all()
    assert s[:5].mean() < -1 and s[:5].mean() < s[5:7].mean()  # failures score low


def test_bfloat16_trainer_placement_scores_close_to_float32(tiny_llm):
    from banel_ray.actors.trainers import NegativeTrainer
    from banel_ray.config import SECTIONS
    from banel_ray.records import PaidBatch

    assert M.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    tr = NegativeTrainer(
        "gsm_hard",
        dict(OPTS, model=str(tiny_llm)),
        str(tiny_llm),
        seed=0,
        trainer=SECTIONS["trainer"](dtype="bfloat16", device="auto"),
        negative=SECTIONS["negative"](epochs=1, lr=1e-3, batch_size=4),
    )
    assert next(tr.generator.parameters()).dtype == torch.bfloat16
    task = tr.task
    comps = [_ids(task, "The answer is 7500."), _ids(task, "5 cents")]
    lp16, _ = tr._logp(tr.generator, comps)
    lp32, _ = M.sequence_logprobs(M.load_model(tiny_llm), [(task.prompt, c) for c in comps], pad_id=task.pad_id)
    assert lp16.dtype == np.float64 and np.abs(lp16 - lp32).max() < 0.05 * np.abs(lp32).max()
    fit = tr.fit(1, PaidBatch(samples=comps * 4, rewards=[0] * 8, versions=[0] * 8))
    assert np.isfinite(fit["neg_train_nll"])
