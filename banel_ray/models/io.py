"""Hugging Face causal LMs for every role: build, save and load (safetensors only), copy, LoRA.

No Ray here: actors and task builders call these functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

WEIGHTS_FILE = "model.safetensors"


def set_threads(n: int | None) -> None:
    """Pin torch's intra-op threads; over-subscribed OpenMP on 2 cores is many times slower."""
    if n:
        torch.set_num_threads(int(n))


def build_llama(
    vocab_size: int,
    hidden: int = 128,
    layers: int = 3,
    heads: int = 4,
    intermediate: int = 512,
    max_positions: int = 64,
    seed: int = 0,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
):
    """A small Llama-style causal LM. head_dim = hidden/heads must be >= 32 (vLLM CPU attention)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden % heads or hidden // heads < 32:
        raise ValueError(f"hidden/heads must be an integer >= 32 (vLLM CPU attention), got {hidden}/{heads}")
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model


def save_model(model, path: str | os.PathLike, extra: dict | None = None, files: Sequence[Path] = ()) -> Path:
    """Save as an HF folder (config.json + model.safetensors), atomically (tmp dir then rename);
    ``files`` (e.g. a tokenizer's) are copied in before the rename."""
    import shutil

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(tmp)
    if extra:
        (tmp / "banel_ray.json").write_text(json.dumps(extra, indent=2, sort_keys=True))
    for f in files:
        shutil.copy2(f, tmp / Path(f).name)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "cpu") -> str:
    """``auto``: the GPU Ray gave this actor (CUDA_VISIBLE_DEVICES) if any, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model(path: str | os.PathLike, dtype: str = "float32", device: str = "cpu"):
    """Load an HF causal LM from a local folder (never from a hub; safetensors only, no pickle).

    ``dtype``/``device`` place the weights (trainer.dtype, trainer.device); log-likelihoods are
    still accumulated in float32 (``logprobs.token_logprobs``), the same path for every model.
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=DTYPES[dtype], local_files_only=True, use_safetensors=True
    )
    model.to(resolve_device(device))
    model.eval()
    return model


def state_dict(model) -> dict[str, torch.Tensor]:
    """Detached CPU copy of the weights: what travels through the object store."""
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


def load_state(model, weights: dict[str, torch.Tensor]) -> None:
    model.load_state_dict(weights, strict=True)  # copies into the model's own device and dtype
    model.eval()


def copy_model(model):
    import copy

    return copy.deepcopy(model)


def lora_copy(
    model, r: int, alpha: float, dropout: float = 0.0, targets: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj")
):
    """A copy of ``model`` with a fresh LoRA adapter (peft); only the adapter trains.

    The adapter starts at zero (B = 0), so the copy starts exactly at ``model``, like a full copy.
    """
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=int(r),
        lora_alpha=float(alpha),
        lora_dropout=float(dropout),
        target_modules=list(targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(copy_model(model), cfg)


def merge_lora(model):
    """Fold a trained adapter into the weights: a plain model again, scored by the same path."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def trainable_params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def optimizer_tensors(opt) -> dict[str, torch.Tensor]:
    """An optimiser's per-parameter state (AdamW moments, step counts) as named tensors, for a
    safetensors checkpoint; hyper-parameters come from the config again on load."""
    out = {}
    for pi, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{pi}.{k}"] = v.detach().to("cpu").clone() if torch.is_tensor(v) else torch.tensor(v)
    return out


def load_optimizer_tensors(opt, tensors: dict[str, torch.Tensor]) -> None:
    """The inverse of ``optimizer_tensors`` on an optimiser built over the same parameters."""
    sd = opt.state_dict()
    state: dict = {}
    for name, v in tensors.items():
        pi, k = name.split(".", 1)
        state.setdefault(int(pi), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)
