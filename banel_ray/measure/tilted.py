"""Tilted proposals of a causal LM, for importance-sampling rare success rates.

A proposal q_s is the model itself with, at every position t, an additive bias s * b[t] on the
logits of the allowed tokens (the rest are masked): ancestral sampling from

    q_s(x_t | x_<t) = softmax_a( log p(a | x_<t) + s * b[t, a] ),   a in the allowed tokens.

s = 0 is p restricted to well-formed strings (q_0 >= p on them: the defensive component). Every
q_s(x) is exact and cheap: one forward pass of p over a draw gives log p(. | x_<t) at every
position, hence log p(x) and log q_s(x) for every s at once. ``estimate_rate`` draws from a
ladder of scales, scores, and hands the weights to ``banel_ray.measure.importance``.

``TableLM`` is a causal "model" given by explicit conditional tables (numpy), so the same sampler
and scorer run on a space small enough to enumerate (the estimator's fast coverage test).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from banel_ray.measure import importance
from banel_ray.models.logprobs import batch_slices


class TableLM:
    """An autoregressive distribution over tokens 0..V-1 of fixed length L, from tables.

    ``logits[t]`` has shape (V,)*t + (V,): the next-token logits after every prefix of length t."""

    def __init__(self, logits: Sequence[np.ndarray]):
        self.logits = [np.asarray(x, dtype=np.float64) for x in logits]
        self.length = len(self.logits)
        self.vocab = self.logits[0].shape[-1]
        self.logsm = [x - np.logaddexp.reduce(x, axis=-1, keepdims=True) for x in self.logits]

    def step(self, prefixes: np.ndarray) -> np.ndarray:
        """(n, t) prefixes -> (n, V) next-token log-probabilities."""
        t = prefixes.shape[1]
        return self.logsm[t][tuple(prefixes.T)] if t else np.repeat(self.logsm[0][None], len(prefixes), 0)

    def all_logprobs(self) -> np.ndarray:
        """log p(x) for every x in V**L, shape (V,)*L (for exact rates)."""
        out = np.zeros(())
        for t in range(self.length):
            out = out[..., None] + self.logsm[t]
        return out


def _is_table(model) -> bool:
    return isinstance(model, TableLM)


class _Stepper:
    """Next-token log-probabilities (over the allowed tokens) of one model along a batch of draws."""

    def __init__(self, model, prompt: Sequence[int], b: int, tok: np.ndarray):
        self.model, self.tok, self.b = model, tok, b
        self.cols: list[np.ndarray] = []
        if not _is_table(model):
            self.past = None
            self.cur = torch.tensor([list(prompt)] * b, dtype=torch.long)
            self.tt = torch.from_numpy(tok)

    def next(self) -> np.ndarray:
        if _is_table(self.model):
            pre = np.stack(self.cols, 1) if self.cols else np.zeros((self.b, 0), dtype=np.int64)
            return self.model.step(pre)[:, self.tok]
        o = self.model(input_ids=self.cur, past_key_values=self.past, use_cache=True)
        self.past = o.past_key_values
        return torch.log_softmax(o.logits[:, -1].double(), dim=-1)[:, self.tt].numpy()

    def push(self, nxt: np.ndarray) -> None:
        self.cols.append(nxt)
        if not _is_table(self.model):
            self.cur = torch.from_numpy(nxt).unsqueeze(-1)


@torch.no_grad()
def tilted_sample(
    model,
    prompt: Sequence[int],
    n: int,
    tokens: Sequence[int],
    bias: np.ndarray,
    scale: float,
    seed: int,
    batch_size: int = 1000,
    guide=None,
    gamma: float = 0.0,
) -> np.ndarray:
    """n draws of one proposal: an (n, L) array of token ids, L = len(bias), all in ``tokens``.

    The proposal's logits are (1 - gamma) log p + gamma log guide + scale * bias over the allowed
    tokens: gamma bridges the model to ``guide`` (e.g. a model of sixes) token by token."""
    bias = np.asarray(bias, dtype=np.float64)
    length = len(bias)
    tok = np.asarray(list(tokens), dtype=np.int64)
    if gamma and guide is None:
        raise ValueError("gamma > 0 needs a guide model")
    gen = np.random.default_rng(seed)
    out = np.empty((n, length), dtype=np.int64)
    for sl in batch_slices(n, batch_size):
        b = sl.stop - sl.start
        u = gen.random((b, length))
        steppers = [_Stepper(model, prompt, b, tok)] + ([_Stepper(guide, prompt, b, tok)] if gamma else [])
        for t in range(length):
            logits = steppers[0].next() * (1.0 - gamma) + scale * bias[t]
            if gamma:
                logits = logits + gamma * steppers[1].next()
            nxt = tok[_draw(logits, u[:, t])]
            for st in steppers:
                st.push(nxt)
        out[sl] = np.stack(steppers[0].cols, 1)
    return out


def _draw(logits: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one index per row of (b, A) logits, from uniforms u (b,)."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    cdf = np.cumsum(p, 1)
    cdf /= cdf[:, -1:]
    return np.minimum((cdf < u[:, None]).sum(1), logits.shape[1] - 1)


@torch.no_grad()
def position_logprobs(model, prompt: Sequence[int], samples: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """log p(v | x_<t) for every position t and every token v: (n, L, V) float64."""
    samples = np.asarray(samples, dtype=np.int64)
    n, length = samples.shape
    if _is_table(model):
        return np.stack([model.step(samples[:, :t]) for t in range(length)], 1)
    p = torch.tensor(list(prompt), dtype=torch.long)
    out = None
    for sl in batch_slices(n, batch_size):
        ids = torch.cat([p.expand(sl.stop - sl.start, -1), torch.from_numpy(samples[sl])], 1)
        logits = model(input_ids=ids).logits[:, len(p) - 1 : -1].double()
        lp = torch.log_softmax(logits, dim=-1).numpy()
        if out is None:
            out = np.empty((n, length, lp.shape[-1]), dtype=np.float64)
        out[sl] = lp
    return out


def component_logprobs(
    logsm: np.ndarray,
    samples: np.ndarray,
    tokens: Sequence[int],
    bias: np.ndarray,
    components: Sequence,
    guide_logsm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """log p(x) (n,) and log q_k(x) (n, K) for every proposal, from ``position_logprobs``.

    A component is a scale s (a tilt) or a pair (gamma, s): logits (1 - gamma) log p +
    gamma log guide + s * bias over the allowed tokens, normalised at every position."""
    tok = np.asarray(list(tokens), dtype=np.int64)
    index = np.full(logsm.shape[-1], -1, dtype=np.int64)
    index[tok] = np.arange(len(tok))
    a = index[samples]  # (n, L) position of each drawn token among the allowed ones
    if (a < 0).any():
        raise ValueError("a sample holds a token outside the allowed ones")
    lp_all = logsm[..., tok]  # (n, L, A)
    log_p = np.take_along_axis(lp_all, a[..., None], -1)[..., 0].sum(1)
    lg_all = guide_logsm[..., tok] if guide_logsm is not None else None
    bias = np.broadcast_to(np.asarray(bias, dtype=np.float64)[None], lp_all.shape)
    log_q = np.empty((len(samples), len(components)), dtype=np.float64)
    for k, comp in enumerate(components):
        gamma, s = _component(comp)
        logits = (1.0 - gamma) * lp_all + s * bias
        if gamma:
            if lg_all is None:
                raise ValueError("a component with gamma > 0 needs the guide's log-probabilities")
            logits = logits + gamma * lg_all
        z = np.logaddexp.reduce(logits, axis=-1)  # (n, L)
        log_q[:, k] = (np.take_along_axis(logits, a[..., None], -1)[..., 0] - z).sum(1)
    return log_p, log_q


def _component(comp) -> tuple[float, float]:
    """(gamma, scale) from a scale or a (gamma, scale) pair."""
    if isinstance(comp, (tuple, list)):
        return float(comp[0]), float(comp[1])
    return 0.0, float(comp)


def weights_seed(model, seed: int) -> int:
    """A seed tied to the model's weights: a fresh stream per model, the same for the same model."""
    h = hashlib.sha256(str(seed).encode())
    if _is_table(model):
        for x in model.logits:
            h.update(np.ascontiguousarray(x).tobytes())
    else:
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().float().numpy().tobytes())
    return int.from_bytes(h.digest()[:8], "little")


def estimate_rate(
    model,
    prompt: Sequence[int],
    tokens: Sequence[int],
    bias: np.ndarray,
    components: Sequence,
    n_total: int,
    success_fn: Callable[[list, np.ndarray | None], np.ndarray],
    seed: int = 0,
    label: str = "importance sampling",
    interval: str = importance.DEFAULT_INTERVAL,
    tie_seed_to_weights: bool = True,
    guide=None,
) -> dict:
    """The success rate of ``model`` by importance sampling from a ladder of its proposals.

    ``components``: scales s (tilts) or (gamma, s) pairs (bridges to ``guide``); the first must be
    (0, 0), the model itself on the allowed tokens (the defensive component). ``success_fn``
    (completions, guide log-likelihoods or None) is the free evaluation reward; ``n_total`` draws are split evenly. With
    ``tie_seed_to_weights`` the draws depend on (seed, model weights): re-evaluating a model
    repeats its estimate, and every new generator gets fresh draws."""
    t0 = time.perf_counter()
    comps = [_component(c) for c in components]
    if comps[0] != (0.0, 0.0):
        raise ValueError("the first component must be the model itself (gamma 0, scale 0)")
    k = len(comps)
    counts = [n_total // k + (1 if i < n_total % k else 0) for i in range(k)]
    base = weights_seed(model, seed) if tie_seed_to_weights else seed
    draws = [
        tilted_sample(model, prompt, c, tokens, bias, s, seed=(base + 7919 * i) % 2**63, guide=guide, gamma=g)
        for i, (c, (g, s)) in enumerate(zip(counts, comps))
    ]
    samples = np.concatenate(draws, 0)
    strata = np.repeat(np.arange(k), counts)
    logsm = position_logprobs(model, prompt, samples)
    guide_logsm = position_logprobs(guide, prompt, samples) if any(g for g, _ in comps) else None
    log_p, log_q = component_logprobs(logsm, samples, tokens, bias, comps, guide_logsm)
    guide_log_p = None
    if guide_logsm is not None:  # the guide's own log-likelihood of each draw (full vocabulary)
        guide_log_p = np.take_along_axis(guide_logsm, samples[..., None], -1)[..., 0].sum(1)
    success = np.asarray(success_fn([tuple(r) for r in samples.tolist()], guide_log_p), dtype=bool)
    est = importance.estimate(log_p, log_q, counts, strata, success, interval=interval)
    est.update(method=label, components=[list(c) for c in comps], exact=False, t_estimate=time.perf_counter() - t0)
    est.update(found_mass(samples, log_p, success))
    return est


def found_mass(samples: np.ndarray, log_p: np.ndarray, success: np.ndarray) -> dict:
    """A certain lower bound on the rate, no estimate in it: the model's own probability of the
    distinct successes the draws found (``certain_lo``), and how many there were."""
    hits = np.flatnonzero(np.asarray(success, dtype=bool))
    if not len(hits):
        return {"certain_lo": 0.0, "distinct_hits": 0}
    _, first = np.unique(np.asarray(samples)[hits], axis=0, return_index=True)
    lp = np.asarray(log_p, dtype=np.float64)[hits[first]]
    return {"certain_lo": float(np.exp(np.logaddexp.reduce(lp))), "distinct_hits": int(len(first))}
