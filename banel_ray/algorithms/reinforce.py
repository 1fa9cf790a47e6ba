"""REINFORCE (Williams 1992) on the task reward, with a batch-mean baseline.

Algorithm, once per round on the m paid samples x_i ~ g_t with total reward R_i (task reward, plus
a novelty bonus for ``rnd`` and ``count``): advantages A_i = R_i - mean(R), divided by their
standard deviation when it is not 0 (``pg.normalize``); then ``pg.epochs`` passes of mini-batch
steps on the loss -mean_i A_i log g(x_i) (sum of completion-token log-probabilities, the same
numerical path as BaNEL's scores, ``models.weighted_nll_step``), with one AdamW optimiser kept across rounds.

With a success rate near 0 nearly every batch has all rewards 0, so every advantage is 0 and the
policy does not move: it degenerates into random search (paper, §1). This baseline sees the
successes it pays for, which BaNEL by design never trains on, so it is a generous comparison.

Defaults (config keys, not tuned): pg.lr 3e-4, pg.epochs 1, pg.batch_size 64, pg.normalize true.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def advantages(rewards, normalize: bool = True) -> np.ndarray:
    """R - mean(R), scaled to unit standard deviation when ``normalize`` and the spread is not 0."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.size == 0:
        return r
    a = r - r.mean()
    sd = a.std()
    if normalize and sd > 1e-8:
        a = a / sd
    return a


def make_optimizer(model, lr: float):
    import torch

    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


def policy_gradient(
    model,
    optimizer,
    pairs: Sequence,
    adv,
    epochs: int,
    batch_size: int,
    seed: int,
    pad_id: int = 0,
    max_grad_norm: float = 1.0,
    weight_fn=None,
) -> list[float]:
    """Mini-batch REINFORCE steps on -A * log g(x); returns the summed loss per epoch.

    Samples with advantage 0 are skipped (they carry no gradient); with none left nothing moves.
    The loss of a mini-batch is normalised by the whole round's sample count, so every sample
    weighs the same whatever the batching. ``weight_fn(idx, logp)``, if given, replaces A at every
    step by weights of the samples' current log-probs (``idx``: their indices in ``pairs``; NPO).
    """
    import torch

    from banel_ray.models import weighted_nll_step

    adv = np.asarray(adv, dtype=np.float64)
    idx = [i for i in range(len(pairs)) if adv[i] != 0.0]
    if not idx:
        return []
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(epochs):
        order = [idx[j] for j in torch.randperm(len(idx), generator=gen).tolist()]
        tot = 0.0
        for s in range(0, len(order), batch_size):
            b = order[s : s + batch_size]
            w = adv[b] if weight_fn is None else (lambda rows, lp, b=np.asarray(b): weight_fn(b[rows], lp))
            tot += weighted_nll_step(
                model, optimizer, [pairs[i] for i in b], w, len(pairs), pad_id=pad_id, max_grad_norm=max_grad_norm
            )
        losses.append(tot)
    model.eval()
    return losses
