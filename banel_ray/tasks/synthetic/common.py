"""The planted-feature family's definition, which its plug-in (``task.py``) and its prior's builder
(``assets.py``) share: the tokens, the law (a Markov chain with the marker), the fixed hash order
of the strings and the planting of the success table."""

from __future__ import annotations

import numpy as np

PAD, BOS, EOS = 0, 1, 2
OFFSET = 3  # symbol i is token i + OFFSET; the marker is the last symbol
Q_TRAIN = 0.1  # the marker's rate in the training law: often enough to learn what follows it
TRAIN_STRINGS = 16_384
RECIPE = 1  # part of the cache key: bump when the law, training or planting changes


# ---- the law and the hash ---------------------------------------------------------------------


def law(alphabet: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(initial distribution, transition matrix) over the alphabet-1 ordinary symbols."""
    rng = np.random.default_rng([seed, 26])
    k = alphabet - 1
    return rng.dirichlet(np.ones(k)), rng.dirichlet(np.full(k, 0.5), size=k)


def draw_law(rng: np.random.Generator, n: int, alphabet: int, length: int, seed: int, q_marker: float) -> np.ndarray:
    """(n, length) symbol indices from the law: the marker first with probability q_marker, the
    chain after it (or from the first position when there is no marker)."""
    init, trans = law(alphabet, seed)
    k = len(init)
    chain = np.empty((n, length), dtype=np.int64)
    chain[:, 0] = rng.choice(k, size=n, p=init)
    for j in range(1, length):
        u = rng.random(n)[:, None]
        chain[:, j] = (u > np.cumsum(trans[chain[:, j - 1]], axis=1)).sum(1).clip(max=k - 1)
    marked = rng.random(n) < q_marker
    chain[marked, 1:] = chain[marked, :-1]
    chain[marked, 0] = alphabet - 1
    return chain


def string_hash(index: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of each string's index: a fixed, seed-dependent order that no model can read."""
    with np.errstate(over="ignore"):
        z = np.asarray(index, dtype=np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15 + 1) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def fill(mass: np.ndarray, order: np.ndarray, target: float) -> np.ndarray:
    """The strings taken in ``order`` whose mass still fits under ``target`` (greedy): the total is
    as close to the target as the strings allow, never above it (but for rounding: 1e-9)."""
    target = target * (1 + 1e-9)
    cum = np.cumsum(mass[order])
    k = int(np.searchsorted(cum, target, side="right"))
    taken, total = list(order[:k]), float(cum[k - 1]) if k else 0.0
    for i in order[k:]:
        if total + mass[i] <= target:
            taken.append(i)
            total += mass[i]
    return np.asarray(taken, dtype=np.int64)


def plant(logp: np.ndarray, s: float, e: float, seed: int) -> tuple[np.ndarray, dict]:
    """The success table (shape of ``logp``) for a prior with these exact log-probabilities, and
    the achieved rates. Feature strings: the first axis at the marker (the last index)."""
    a = logp.shape[0]
    mass = np.exp(logp.ravel())
    n = mass.size
    feature = np.arange(n) >= (a - 1) * (n // a)
    order = np.argsort(string_hash(np.arange(n), seed), kind="stable")
    q = float(mass[feature].sum())
    success = np.zeros(n, dtype=bool)
    success[feature] = s >= 1.0
    if s < 1.0:
        success[fill(mass, order[feature[order]], s * q)] = True
    if e > 0:
        success[fill(mass, order[~feature[order]], e)] = True
    hit_f, hit_p = float(mass[success & feature].sum()), float(mass[success & ~feature].sum())
    info = {
        "q": q,
        "s": hit_f / q if q > 0 else 0.0,
        "e": hit_p,
        "base": hit_f + hit_p,
        "feature_strings": int(feature.sum()),
        "feature_successes": int((success & feature).sum()),
        "floor_successes": int((success & ~feature).sum()),
        "valid_mass": float(mass.sum()),
    }
    return success.reshape(logp.shape), info
