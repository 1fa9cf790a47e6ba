"""Fixed-size features of token sequences, shared by the RND and SimHash bonuses.

A sequence becomes the flattened one-hot matrix (position x token) of its first ``length`` tokens,
zero-padded: exact, cheap, and it distinguishes every distinct sequence of the task's length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def one_hot_positions(samples: Sequence[Sequence[int]], length: int, vocab: int) -> np.ndarray:
    """float32 array (n, length * vocab); tokens past ``length`` are dropped, ids >= vocab clipped."""
    out = np.zeros((len(samples), length, vocab), dtype=np.float32)
    for i, s in enumerate(samples):
        ids = np.minimum(np.asarray(list(s)[:length], dtype=np.int64), vocab - 1)
        out[i, np.arange(len(ids)), ids] = 1.0
    return out.reshape(len(samples), length * vocab)
