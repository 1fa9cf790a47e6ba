"""Log-likelihoods and the losses built on them: one numerical path for every model and method.

The generator, the negative model, the prior and the policy-gradient baselines all score and train
through ``token_logprobs`` under one logit-memory budget (``LOGIT_BUDGET``), so the ratio
s(x) = log g(x) - log p_phi(x) and the policy-gradient loss are computed the same way.

A *sequence* is a tuple of token ids. Conditional models (an LLM answering a prompt) score and
train on the completion only: callers pass ``(prompt_ids, completion_ids)`` pairs; unconditional
tasks use a one-token prompt (BOS).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

Pair = tuple[tuple[int, ...], tuple[int, ...]]  # (prompt ids, completion ids)


def batch_slices(n: int, batch_size: int) -> Iterable[slice]:
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))


def pad_pairs(pairs: Sequence[Pair], pad_id: int):
    """Right-pad prompt+completion; a mask marks completion tokens (the ones scored/trained)."""
    seqs = [list(p) + list(c) for p, c in pairs]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    target = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, ((p, _), s) in enumerate(zip(pairs, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        target[i, len(p) : len(s)] = True
    return ids, attn, target


def _completion_log_softmax(model, ids, attn, target):
    """log p(. | tokens_<t) over the vocabulary at the positions that predict completion tokens
    (from the last prompt token on: ``logits_to_keep``), and the first such column."""
    dev = next(model.parameters()).device
    ids, attn, target = ids.to(dev), attn.to(dev), target.to(dev)
    first = int(target.float().argmax(-1).min()) if bool(target.any()) else ids.shape[1] - 1
    keep = ids.shape[1] - first + 1  # logits at positions first-1 .. width-1
    out = model(input_ids=ids, attention_mask=attn, logits_to_keep=keep)
    return torch.log_softmax(out.logits[:, :-1].float(), dim=-1), first


def token_logprobs(model, ids, attn, target, _logsm=None):
    """log p(token_t | tokens_<t) at every target position (0 elsewhere), float32.

    Only the logits that can score a completion token are computed (``logits_to_keep``): from the
    last prompt token on. For an LLM with a long chat prompt and a 49k vocabulary these logits are
    most of the memory; for one-token prompts (the small tasks) this is every position, as before.
    Columns before the first completion are returned as zeros.
    """
    logsm, first = _logsm if _logsm is not None else _completion_log_softmax(model, ids, attn, target)
    dev = logsm.device
    ids, target = ids.to(dev), target.to(dev)
    nxt = ids[:, first:]
    lp = logsm.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
    mask = target[:, 1:]
    full = torch.zeros(mask.shape, dtype=lp.dtype, device=dev)
    full[:, first - 1 :] = lp
    return full * mask, mask


def token_kl(model_logsm, anchor, ids, attn, target, first: int):
    """Sum over completion positions of KL(model(. | x_<t) || anchor(. | x_<t)): the per-token
    anchor of a distillation that must not drift from the prior (``generator.kl_coef``)."""
    with torch.no_grad():
        a_logsm, a_first = _completion_log_softmax(anchor, ids, attn, target)
    assert a_first == first
    kl = (model_logsm.exp() * (model_logsm - a_logsm.to(model_logsm.device))).sum(-1)  # (b, width - first)
    mask = target.to(kl.device)[:, 1:][:, first - 1 :]
    return (kl * mask).sum()


LOGIT_BUDGET = 1 << 27  # float32 logits held at once when scoring or training (512 MiB)


def micro_batches(pairs: Sequence[Pair], batch_size: int, vocab: int) -> Iterable[slice]:
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


def vocab_size(model) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


@torch.no_grad()
def sequence_logprobs(model, pairs: Sequence[Pair], batch_size: int = 256, pad_id: int = 0):
    """Sum of completion-token log-probs per sequence, and the completion lengths (numpy)."""
    total = np.zeros(len(pairs), dtype=np.float64)
    lengths = np.array([len(c) for _, c in pairs], dtype=np.int64)
    for sl in micro_batches(pairs, batch_size, vocab_size(model)):
        ids, attn, target = pad_pairs(pairs[sl], pad_id)
        lp, _ = token_logprobs(model, ids, attn, target)
        total[sl] = lp.sum(-1).double().cpu().numpy()
    return total, lengths


def train_mle(
    model,
    pairs: Sequence[Pair],
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    pad_id: int = 0,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    progress=None,
    anchor=None,
    kl_coef: float = 0.0,
) -> list[float]:
    """Maximum likelihood on completions (AdamW, shuffled mini-batches). Returns mean loss per epoch.

    With ``anchor`` (a frozen model) and ``kl_coef`` > 0 the loss adds ``kl_coef`` x the per-token
    KL(model || anchor) on the same positions: maximum likelihood kept close to the anchor.
    """
    if not pairs:
        return []
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]  # a LoRA model: the adapter only
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    vocab = vocab_size(model)
    model.train()
    losses = []
    for ep in range(epochs):
        order = torch.randperm(len(pairs), generator=gen).tolist()
        tot, cnt = 0.0, 0
        for sl in batch_slices(len(order), batch_size):
            batch = [pairs[i] for i in order[sl]]
            ntok = max(sum(len(c) for _, c in batch), 1)
            opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            # gradient accumulation over micro-batches that fit the logit budget (one for small tasks)
            for mb in micro_batches(batch, len(batch), vocab):
                ids, attn, target = pad_pairs(batch[mb], pad_id)
                if anchor is not None and kl_coef > 0:
                    logsm = _completion_log_softmax(model, ids, attn, target)
                    lp, _ = token_logprobs(model, ids, attn, target, _logsm=logsm)
                    loss = (-lp.sum() + kl_coef * token_kl(logsm[0], anchor, ids, attn, target, logsm[1])) / ntok
                else:
                    lp, _ = token_logprobs(model, ids, attn, target)
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
def sequence_logprobs_and_min(model, pairs: Sequence[Pair], batch_size: int = 256, pad_id: int = 0):
    """Per sequence: the sum and the minimum of its completion-token log-probs, and its length.

    The minimum is what a per-token support test reads (``algorithms.banel.support_mask``): one
    token the model finds nearly impossible marks the whole sequence (-inf for an empty one).
    """
    total = np.zeros(len(pairs), dtype=np.float64)
    least = np.full(len(pairs), -np.inf, dtype=np.float64)
    lengths = np.array([len(c) for _, c in pairs], dtype=np.int64)
    for sl in micro_batches(pairs, batch_size, vocab_size(model)):
        ids, attn, target = pad_pairs(pairs[sl], pad_id)
        lp, mask = token_logprobs(model, ids, attn, target)
        total[sl] = lp.sum(-1).double().cpu().numpy()
        masked = torch.where(mask, lp, torch.full_like(lp, float("inf")))
        m = masked.min(-1).values.double().cpu().numpy()
        least[sl] = np.where(np.isfinite(m), m, -np.inf)
    return total, least, lengths


@torch.no_grad()
def max_token_log_ratio(model, anchor, pairs: Sequence[Pair], batch_size: int = 256, pad_id: int = 0):
    """Per sequence: max over its completion tokens of log model(x_t | x_<t) - log anchor(x_t | x_<t),
    how far ``model`` has moved any one token away from ``anchor`` (-inf for an empty completion)."""
    out = np.full(len(pairs), -np.inf, dtype=np.float64)
    for sl in micro_batches(pairs, batch_size, vocab_size(model)):
        ids, attn, target = pad_pairs(pairs[sl], pad_id)
        lp, mask = token_logprobs(model, ids, attn, target)
        la, _ = token_logprobs(anchor, ids, attn, target)
        diff = torch.where(mask, lp - la, torch.full_like(lp, -float("inf")))
        out[sl] = diff.max(-1).values.double().cpu().numpy()
    return out


def weighted_nll_step(
    model, optimizer, pairs: Sequence[Pair], weights, normalizer: float, pad_id: int = 0, max_grad_norm: float = 1.0
) -> float:
    """One optimiser step on ``-sum_i w_i log p(x_i) / normalizer`` over ``pairs``, accumulated
    over micro-batches that fit ``LOGIT_BUDGET``. Policy-gradient losses are this with w = the
    advantages (REINFORCE), w = -1 on failures (NSR), or both reweighted (W-REINFORCE).

    ``weights`` may also be a callable ``(rows: slice, logp: np.ndarray) -> weights`` of the rows'
    current sequence log-probs (held constant in the gradient): a loss whose gradient is a weight
    of the model's own likelihood (NPO, ``algorithms.negative_rl.npo_weights``), exact at every step."""
    w_fn = weights if callable(weights) else None
    w_all = None if w_fn else torch.as_tensor(np.asarray(weights, dtype=np.float32))
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for mb in micro_batches(pairs, len(pairs), vocab_size(model)):
        ids, attn, target = pad_pairs(pairs[mb], pad_id)
        lp, _ = token_logprobs(model, ids, attn, target)
        seq = lp.sum(-1)
        if w_fn:
            w = torch.as_tensor(np.asarray(w_fn(mb, seq.detach().double().cpu().numpy()), dtype=np.float32))
        else:
            w = w_all[mb]
        loss = -(w.to(lp.device) * seq).sum() / normalizer
        loss.backward()
        total += float(loss.detach())
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    optimizer.step()
    return total


@torch.no_grad()
def mean_nll(model, pairs: Sequence[Pair], batch_size: int = 256, pad_id: int = 0) -> float:
    """Per-token negative log-likelihood (nats) of completions; nan for an empty set."""
    if not pairs:
        return float("nan")
    lp, lengths = sequence_logprobs(model, pairs, batch_size, pad_id)
    return float(-lp.sum() / max(lengths.sum(), 1))


def cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    prog = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))
