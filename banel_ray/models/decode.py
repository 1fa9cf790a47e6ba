"""Decoding with a KV cache: ancestral sampling (the torch sampler backend) and greedy answers
(the addition task's solver)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from banel_ray.models.logprobs import batch_slices


@torch.no_grad()
def sample(
    model,
    prompt: Sequence[int],
    n: int,
    max_new_tokens: int,
    eos_id: int,
    seed: int,
    batch_size: int = 512,
    temperature: float = 1.0,
) -> list[tuple[int, ...]]:
    """Ancestral sampling at temperature 1, no truncation, with a KV cache (the torch backend).

    Returns the completions (token ids after the prompt, EOS included when it was drawn).
    """
    gen = torch.Generator().manual_seed(seed)
    out: list[tuple[int, ...]] = []
    for sl in batch_slices(n, batch_size):
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
def greedy_batch(
    model, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_id: int, pad_id: int = 0, batch_size: int = 1024
) -> list[tuple[int, ...]]:
    """Greedy decoding of many variable-length prompts (left-padded, explicit position ids)."""
    res: list[tuple[int, ...]] = []
    for sl in batch_slices(len(prompts), batch_size):
        batch = prompts[sl]
        width = max(len(p) for p in batch)
        b = len(batch)
        ids = torch.full((b, width), pad_id, dtype=torch.long)
        attn = torch.zeros((b, width), dtype=torch.long)
        for i, p in enumerate(batch):
            ids[i, width - len(p) :] = torch.tensor(list(p))
            attn[i, width - len(p) :] = 1
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        done = torch.zeros(b, dtype=torch.bool)
        toks = []
        past = None
        cur, cur_pos = ids, pos
        for _ in range(max_new_tokens):
            o = model(input_ids=cur, attention_mask=attn, position_ids=cur_pos, past_key_values=past, use_cache=True)
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
