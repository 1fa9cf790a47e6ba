"""Hugging Face causal LMs for every role: build, save/load (safetensors), score, train, sample.

One numerical path serves the generator and the negative model (same dtype, same code), so the
log-likelihood ratio s(x) = log g(x) - log p_phi(x) is not biased by implementation differences.
No Ray here: actors call these functions.

A *sequence* is a tuple of token ids. Conditional models (an LLM answering a prompt) score and
train on the completion only: callers pass ``(prompt_ids, completion_ids)`` pairs; unconditional
tasks use a one-token prompt (BOS).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

Pair = tuple[tuple[int, ...], tuple[int, ...]]  # (prompt ids, completion ids)

WEIGHTS_FILE = "model.safetensors"


def set_threads(n: int | None) -> None:
    """Pin torch's intra-op threads; over-subscribed OpenMP on 2 cores is many times slower."""
    if n:
        torch.set_num_threads(int(n))


def build_llama(vocab_size: int, hidden: int = 128, layers: int = 3, heads: int = 4,
                intermediate: int = 512, max_positions: int = 64, seed: int = 0,
                bos_id: int = 1, eos_id: int = 2, pad_id: int = 0):
    """A small Llama-style causal LM. head_dim = hidden/heads must be >= 32 (vLLM CPU attention)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden % heads or hidden // heads < 32:
        raise ValueError(f"hidden/heads must be an integer >= 32 (vLLM CPU attention), got {hidden}/{heads}")
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads,
                      intermediate_size=intermediate, max_position_embeddings=max_positions,
                      bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id,
                      tie_word_embeddings=False, torch_dtype="float32")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model


def save_model(model, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Save as an HF folder (config.json + model.safetensors), atomically (tmp dir then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        import shutil
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(tmp)
    if extra:
        (tmp / "banel_ray.json").write_text(json.dumps(extra, indent=2, sort_keys=True))
    if path.exists():
        import shutil
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
    still accumulated in float32 (``_token_logprobs``), the same path for every model.
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype],
                                                 local_files_only=True, use_safetensors=True)
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


def lora_copy(model, r: int, alpha: float, dropout: float = 0.0,
              targets: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj")):
    """A copy of ``model`` with a fresh LoRA adapter (peft); only the adapter trains.

    The adapter starts at zero (B = 0), so the copy starts exactly at ``model``, like a full copy.
    """
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=int(r), lora_alpha=float(alpha), lora_dropout=float(dropout),
                     target_modules=list(targets), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(copy_model(model), cfg)


def merge_lora(model):
    """Fold a trained adapter into the weights: a plain model again, scored by the same path."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def trainable_params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _batches(n: int, batch_size: int) -> Iterable[slice]:
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))


def _pad(pairs: Sequence[Pair], pad_id: int):
    """Right-pad prompt+completion; a mask marks completion tokens (the ones scored/trained)."""
    seqs = [list(p) + list(c) for p, c in pairs]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    target = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, ((p, c), s) in enumerate(zip(pairs, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        target[i, len(p): len(s)] = True
    return ids, attn, target


def _token_logprobs(model, ids, attn, target):
    """log p(token_t | tokens_<t) at every target position (0 elsewhere), float32.

    Only the logits that can score a completion token are computed (``logits_to_keep``): from the
    last prompt token on. For an LLM with a long chat prompt and a 49k vocabulary these logits are
    most of the memory; for one-token prompts (the small tasks) this is every position, as before.
    Columns before the first completion are returned as zeros.
    """
    dev = next(model.parameters()).device
    ids, attn, target = ids.to(dev), attn.to(dev), target.to(dev)
    first = int(target.float().argmax(-1).min()) if bool(target.any()) else ids.shape[1] - 1
    keep = ids.shape[1] - first + 1                   # logits at positions first-1 .. width-1
    out = model(input_ids=ids, attention_mask=attn, logits_to_keep=keep)
    logits = out.logits[:, :-1].float()
    nxt = ids[:, first:]
    lp = torch.log_softmax(logits, dim=-1).gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
    mask = target[:, 1:]
    full = torch.zeros(mask.shape, dtype=lp.dtype, device=dev)
    full[:, first - 1:] = lp
    return full * mask, mask


LOGIT_BUDGET = 1 << 27  # float32 logits held at once when scoring or training (512 MiB)


def _micro(pairs: Sequence[Pair], batch_size: int, vocab: int) -> Iterable[slice]:
    """Batches of at most ``batch_size`` rows whose kept logits fit ``LOGIT_BUDGET`` (>= 1 row)."""
    i = 0
    while i < len(pairs):
        j = i + 1
        longest, shortest_prompt = len(pairs[i][0]) + len(pairs[i][1]), len(pairs[i][0])
        while j < min(len(pairs), i + batch_size):  # grow the batch while its kept logits fit
            p, c = pairs[j]
            lo, sp = max(longest, len(p) + len(c)), min(shortest_prompt, len(p))
            if (j + 1 - i) * (lo - sp + 1) * vocab > LOGIT_BUDGET:
                break
            longest, shortest_prompt = lo, sp
            j += 1
        yield slice(i, j)
        i = j


def _vocab(model) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


@torch.no_grad()
def sequence_logprobs(model, pairs: Sequence[Pair], batch_size: int = 256, pad_id: int = 0):
    """Sum of completion-token log-probs per sequence, and the completion lengths (numpy)."""
    total = np.zeros(len(pairs), dtype=np.float64)
    lengths = np.array([len(c) for _, c in pairs], dtype=np.int64)
    for sl in _micro(pairs, batch_size, _vocab(model)):
        ids, attn, target = _pad(pairs[sl], pad_id)
        lp, _ = _token_logprobs(model, ids, attn, target)
        total[sl] = lp.sum(-1).double().cpu().numpy()
    return total, lengths


def train_mle(model, pairs: Sequence[Pair], epochs: int, lr: float, batch_size: int, seed: int,
              pad_id: int = 0, weight_decay: float = 0.0, max_grad_norm: float = 1.0,
              progress=None) -> list[float]:
    """Maximum likelihood on completions (AdamW, shuffled mini-batches). Returns mean loss per epoch."""
    if not pairs:
        return []
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]  # a LoRA model: the adapter only
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    vocab = _vocab(model)
    model.train()
    losses = []
    for ep in range(epochs):
        order = torch.randperm(len(pairs), generator=gen).tolist()
        tot, cnt = 0.0, 0
        for sl in _batches(len(order), batch_size):
            batch = [pairs[i] for i in order[sl]]
            ntok = max(sum(len(c) for _, c in batch), 1)
            opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            # gradient accumulation over micro-batches that fit the logit budget (one for small tasks)
            for mb in _micro(batch, len(batch), vocab):
                ids, attn, target = _pad(batch[mb], pad_id)
                lp, _ = _token_logprobs(model, ids, attn, target)
                loss = -lp.sum() / ntok
                loss.backward()
                loss_sum += float(loss.detach())
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            tot += loss_sum * ntok
            cnt += ntok
        losses.append(tot / max(cnt, 1))
        if progress:
            progress(ep + 1, epochs, losses[-1])
    model.eval()
    return losses


@torch.no_grad()
def mean_nll(model, pairs: Sequence[Pair], batch_size: int = 256, pad_id: int = 0) -> float:
    """Per-token negative log-likelihood (nats) of completions; nan for an empty set."""
    if not pairs:
        return float("nan")
    lp, lengths = sequence_logprobs(model, pairs, batch_size, pad_id)
    return float(-lp.sum() / max(lengths.sum(), 1))


@torch.no_grad()
def sample(model, prompt: Sequence[int], n: int, max_new_tokens: int, eos_id: int, seed: int,
           batch_size: int = 512, temperature: float = 1.0) -> list[tuple[int, ...]]:
    """Ancestral sampling at temperature 1, no truncation, with a KV cache (the torch backend).

    Returns the completions (token ids after the prompt, EOS included when it was drawn).
    """
    gen = torch.Generator().manual_seed(seed)
    out: list[tuple[int, ...]] = []
    for sl in _batches(n, batch_size):
        b = sl.stop - sl.start
        ids = torch.tensor([list(prompt)] * b, dtype=torch.long)
        done = torch.zeros(b, dtype=torch.bool)
        toks = []
        past = None
        cur = ids
        for _ in range(max_new_tokens):
            o = model(input_ids=cur, past_key_values=past, use_cache=True)
            past = o.past_key_values
            logits = o.logits[:, -1].float() / temperature
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            toks.append(nxt)
            done |= nxt == eos_id
            cur = nxt.unsqueeze(-1)
            if bool(done.all()):
                break
        mat = torch.stack(toks, dim=1).tolist()
        for row in mat:
            if eos_id in row:
                row = row[: row.index(eos_id) + 1]
            out.append(tuple(row))
    return out


@torch.no_grad()
def greedy_batch(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_id: int,
                 pad_id: int = 0, batch_size: int = 1024) -> list[tuple[int, ...]]:
    """Greedy decoding of many variable-length prompts (left-padded, explicit position ids)."""
    res: list[tuple[int, ...]] = []
    for sl in _batches(len(prompts), batch_size):
        batch = prompts[sl]
        width = max(len(p) for p in batch)
        b = len(batch)
        ids = torch.full((b, width), pad_id, dtype=torch.long)
        attn = torch.zeros((b, width), dtype=torch.long)
        for i, p in enumerate(batch):
            ids[i, width - len(p):] = torch.tensor(list(p))
            attn[i, width - len(p):] = 1
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        done = torch.zeros(b, dtype=torch.bool)
        toks = []
        past = None
        cur, cur_pos = ids, pos
        for _ in range(max_new_tokens):
            o = model(input_ids=cur, attention_mask=attn, position_ids=cur_pos,
                      past_key_values=past, use_cache=True)
            past = o.past_key_values
            nxt = o.logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            toks.append(nxt)
            done |= nxt == eos_id
            if bool(done.all()):
                break
            cur = nxt.unsqueeze(-1)
            cur_pos = cur_pos[:, -1:] + 1
            attn = torch.cat([attn, torch.ones((b, 1), dtype=attn.dtype)], dim=1)
        mat = torch.stack(toks, dim=1).tolist()
        for row in mat:
            if eos_id in row:
                row = row[: row.index(eos_id)]
            res.append(tuple(row))
    return res


def cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    prog = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))
