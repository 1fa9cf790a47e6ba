"""Negative-sample reinforcement (NSR) and weighted REINFORCE (W-REINFORCE): Zhu et al., "The
Surprising Effectiveness of Negative Reinforcement in LLM Reasoning", NeurIPS 2025, arXiv
2506.01347; the "negative RL" BaNEL is set against.

With the reward mapped to r = +1 (success) and r = -1 (failure) and no baseline, REINFORCE's loss
is -r log pi(y). NSR keeps only the failures' terms: each paid failure's likelihood is pushed down
(mass moves to the rest of what the model already prefers). W-REINFORCE keeps the successes too,
down-weighted by lambda (0.1 in the paper). Both are weights for ``reinforce.policy_gradient``
(loss -sum_i w_i log pi(x_i) / n), so they share its numerical path and its optimiser.
"""

from __future__ import annotations

import numpy as np


def nsr_weights(rewards) -> np.ndarray:
    """-1 on each failure (push its likelihood down), 0 on successes."""
    r = np.asarray(rewards, dtype=np.float64)
    return np.where(r == 0, -1.0, 0.0)


def w_reinforce_weights(rewards, pos_weight: float = 0.1) -> np.ndarray:
    """-1 on each failure, +pos_weight (lambda) on each success."""
    r = np.asarray(rewards, dtype=np.float64)
    return np.where(r == 0, -1.0, float(pos_weight))
