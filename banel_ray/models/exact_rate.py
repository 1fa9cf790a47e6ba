"""Exact sequence probabilities of a causal LM over every fixed-length string, by enumeration.

For rates far below what sampling can see (MNIST 0-to-6: 1e-10 and lower), the success rate of a
model over a small enough space is a sum, computed in log space:

    log P(success) = logsumexp_{x : r(x) = 1} log p(x).

One forward pass over every prefix of length L-1 (after the prompt) yields the conditional
distributions at all L positions, so the whole table of V**L log-probabilities costs V**(L-1)
short forward passes. No Ray here; the trainer actor calls it with the generator it holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


@torch.no_grad()
def all_logprobs(
    model, prompt: Sequence[int], tokens: Sequence[int], length: int, batch_size: int = 8192
) -> np.ndarray:
    """log p(x) (float64) for every x in tokens**length, as an array of shape (V,)*length.

    Entry [i1, .., iL] is the log-probability that the model, after ``prompt``, emits exactly
    tokens[i1] .. tokens[iL] as its next L tokens. Mass on tokens outside ``tokens`` (EOS, padding)
    is not in the table, so the table sums to at most 1.
    """
    tok = torch.tensor(list(tokens), dtype=torch.long)
    v = len(tok)
    if length < 1:
        raise ValueError("length must be >= 1")
    n_pre = v ** (length - 1)
    # row r of the prefix grid: base-v digits of r (most significant first)
    digits = (
        torch.stack([(torch.arange(n_pre) // v ** (length - 2 - j)) % v for j in range(length - 1)], dim=1)
        if length > 1
        else torch.zeros((1, 0), dtype=torch.long)
    )
    out = np.empty((n_pre, v), dtype=np.float64)
    p = torch.tensor(list(prompt), dtype=torch.long)
    for s in range(0, n_pre, batch_size):
        d = digits[s : s + batch_size]
        ids = torch.cat([p.expand(len(d), -1), tok[d]], dim=1)
        logits = model(input_ids=ids).logits[:, len(p) - 1 :].float()
        lp = torch.log_softmax(logits, dim=-1)[..., tok].double()  # (b, length, v)
        # log p of the prefix tokens actually present, then every possible last token
        prefix = (
            lp[:, :-1].gather(-1, d.unsqueeze(-1)).squeeze(-1).sum(-1)
            if length > 1
            else torch.zeros(len(d), dtype=torch.float64)
        )
        out[s : s + len(d)] = (prefix.unsqueeze(-1) + lp[:, -1]).numpy()
    return out.reshape((v,) * length)


def log_rate(logp: np.ndarray, success: np.ndarray) -> float:
    """logsumexp of log p over the successes (-inf when there is none)."""
    sel = np.asarray(logp, dtype=np.float64)[np.asarray(success, dtype=bool)]
    if sel.size == 0:
        return -math.inf
    m = float(sel.max())
    return m + math.log(float(np.exp(sel - m).sum()))


def exact_estimate(logp: np.ndarray, success: np.ndarray, method: str) -> dict:
    """The success-rate record the driver reports, for an exact computation (interval = point)."""
    lr = log_rate(logp, success)
    rate = math.exp(lr) if lr > -math.inf else 0.0
    valid = log_rate(logp, np.ones(np.shape(logp), dtype=bool))
    return {
        "rate": rate,
        "lo": rate,
        "hi": rate,
        "log10_rate": lr / math.log(10),
        "method": method,
        "valid_mass": math.exp(valid),
        "exact": True,
    }


def spread(logp: np.ndarray, masses: Sequence[float] = (0.5, 0.99)) -> dict:
    """How widely a table of log-probabilities spreads its mass (is a prior too narrow to sample?).

    ``entropy_nats`` of the table renormalised to its total (``valid_mass``), ``effective_codes`` =
    exp(entropy), and ``codes_for_<q>``: the fewest entries that hold a share q of the total.
    """
    flat = np.asarray(logp, dtype=np.float64).ravel()
    total = log_rate(flat, np.ones(flat.shape, dtype=bool))
    q = np.exp(flat - total)
    nz = q > 0
    entropy = float(-(q[nz] * (flat[nz] - total)).sum())
    cum = np.cumsum(np.sort(q)[::-1])
    out = {"valid_mass": math.exp(total), "entropy_nats": entropy, "effective_codes": math.exp(entropy)}
    for m in masses:
        out[f"codes_for_{round(100 * m)}pct"] = int(min(np.searchsorted(cum, m * cum[-1]) + 1, flat.size))
    return out
