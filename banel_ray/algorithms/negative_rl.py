"""Negative-sample reinforcement (NSR) and weighted REINFORCE (W-REINFORCE): Zhu et al., "The
Surprising Effectiveness of Negative Reinforcement in LLM Reasoning", NeurIPS 2025, arXiv
2506.01347; the "negative RL" BaNEL is set against.

With the reward mapped to r = +1 (success) and r = -1 (failure) and no baseline, REINFORCE's loss
is -r log pi(y). NSR keeps only the failures' terms: each paid failure's likelihood is pushed down
(mass moves to the rest of what the model already prefers). W-REINFORCE keeps the successes too,
down-weighted by lambda (0.1 in the paper). Both are weights for ``reinforce.policy_gradient``
(loss -sum_i w_i log pi(x_i) / n), so they share its numerical path and its optimiser.

NPO (negative preference optimisation: Zhang, Lin, Bai & Mei 2024, "Negative Preference
Optimization: From Catastrophic Collapse to Effective Unlearning", arXiv 2404.05868) is NSR with a
bounded weight. Against a frozen reference pi_ref (here the prior p0), with d = log pi(y) -
log pi_ref(y) the sequence log-ratio of a failure y,

    L_NPO(y) = (2/beta) log(1 + exp(beta d)) = -(2/beta) log sigmoid(-beta d),
    dL_NPO/d log pi(y) = 2 sigmoid(beta d)  in (0, 2).

So its gradient is NSR's (weight 1 on each failure) scaled by 2 sigmoid(beta d): a failure already
pushed below the reference (d << 0) stops pulling, which is what keeps NPO from collapsing. As
beta -> 0 the weight tends to 1: NSR. The weight depends on the current model, so the trainer
recomputes it at every step (``npo_weights``, through ``policy_gradient(weight_fn=...)``).
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


def npo_losses(logp_theta, logp_ref, beta: float) -> np.ndarray:
    """Per failure: (2/beta) log(1 + (pi/pi_ref)^beta), computed as (2/beta) log(1 + exp(beta d))."""
    d = np.asarray(logp_theta, dtype=np.float64) - np.asarray(logp_ref, dtype=np.float64)
    return (2.0 / beta) * np.logaddexp(0.0, beta * d)


def npo_loss(logp_theta, logp_ref, beta: float) -> float:
    """NPO's loss averaged over the failures (sequence log-probs under the model and the reference)."""
    losses = npo_losses(logp_theta, logp_ref, beta)
    return float(losses.mean()) if losses.size else 0.0


def npo_weights(logp_theta, logp_ref, beta: float) -> np.ndarray:
    """dL_NPO/d log pi per failure: 2 sigmoid(beta (log pi - log pi_ref)), in (0, 2); 1 at beta -> 0
    (NSR). As ``policy_gradient`` weights (loss -w log pi) they enter negated."""
    d = np.asarray(logp_theta, dtype=np.float64) - np.asarray(logp_ref, dtype=np.float64)
    return 2.0 * np.exp(-np.logaddexp(0.0, -beta * d))  # 2 sigmoid(beta d), no overflow
