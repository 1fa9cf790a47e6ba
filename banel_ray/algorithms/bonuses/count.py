"""Count-based exploration with SimHash pseudo-counts (Tang et al. 2017, "#Exploration",
arXiv 1611.04717; the paper's count-based baseline follows Ostrovski et al. 2017's pseudo-counts).

Algorithm: a sequence's features g(x) (``features.one_hot_positions``) are hashed to k bits,
phi(x) = sign(A g(x)) with A a fixed Gaussian k x D matrix; a table counts how often each code was
paid for. Each round the counts are first increased by the paid samples, then each gets the bonus
coef / sqrt(n(phi(x))), added to its task reward for REINFORCE (``reinforce``). Similar sequences
share a code, so the bonus rewards visiting new regions, not just new strings.

Defaults (config keys): count.coef 1.0, count.bits 8 (256 codes: about 30 visits a code at 7,500 NREs, so counts differ; with 16 bits nearly every sample has its own code and the bonus is constant).
"""

from __future__ import annotations

from collections import Counter

import numpy as np


class SimHashCounter:
    def __init__(self, dim_in: int, bits: int = 16, seed: int = 0):
        self.proj = np.random.default_rng(seed).standard_normal((bits, dim_in))
        self.counts: Counter = Counter()

    def codes(self, feats: np.ndarray) -> list[int]:
        """k-bit code of each feature row, as an integer."""
        signs = (np.asarray(feats, dtype=np.float64) @ self.proj.T) > 0
        weights = 1 << np.arange(signs.shape[1], dtype=np.int64) if signs.size else np.zeros(0, np.int64)
        return [int(c) for c in (signs.astype(np.int64) * weights).sum(-1)] if len(signs) else []

    def update(self, codes) -> None:
        self.counts.update(codes)

    def state(self) -> dict:
        """The counts (the projection is rebuilt from the seed)."""
        return {str(k): int(v) for k, v in self.counts.items()}

    def load(self, state: dict) -> None:
        self.counts = Counter({int(k): int(v) for k, v in state.items()})

    def bonus(self, codes, coef: float = 1.0) -> np.ndarray:
        """coef / sqrt(count) per code (a code never counted gets the full coef)."""
        return np.array([coef / np.sqrt(max(self.counts[c], 1)) for c in codes], dtype=np.float64)
