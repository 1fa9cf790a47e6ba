"""The task plug-in interface: a prior, an oracle, and what to report.

A task is rebuilt from ``(name, options)`` inside every actor that needs it, so it must be cheap
to construct; heavy state (models) loads lazily. Samples are completions: tuples of token ids
drawn after ``prompt`` (EOS included when the model emitted it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Task:
    name = "task"
    prompt: tuple[int, ...] = ()
    eos_id: int = 2
    pad_id: int = 0
    max_new_tokens: int = 32
    grid_samples: int = 0  # > 0: save_sample_grid gets this many posterior samples at the end
    final_samples: int = 20_000  # fresh draws of a run's final evaluation (eval.final_samples=-1)

    def prepare(self, progress=print) -> str:
        """Make (train or load) the prior and return its HF folder. Runs once, in the driver."""
        raise NotImplementedError

    def rewards(self, completions: Sequence[Sequence[int]]) -> list[int]:
        """The expensive oracle: 1 for a success, 0 for a failure."""
        raise NotImplementedError

    def reward_plugin(self):
        """A plug-in oracle (``reward_plugins``) the reward service pays instead of ``rewards``,
        or None (the default: ``rewards`` is the oracle)."""
        return None

    # whether evaluation_rewards is free (no paid oracle behind it). Off unless a task says so: a
    # task's rewards are its oracle, which may be a paid service; the built-in tasks' rewards are
    # local and set it. Without it, success-rate estimates need eval.paid_budget (counted and
    # rate-limited by the reward service) or eval.samples: 0 (checked in config.validate).
    free_evaluation: bool = False

    @classmethod
    def evaluation_is_free(cls, options: dict) -> bool:
        """``free_evaluation`` of a task built with ``options``, known before anything is built."""
        return bool(cls.free_evaluation)

    def evaluation_rewards(self, completions: Sequence[Sequence[int]]) -> list[int]:
        """Rewards for success-rate estimates (the evaluator role; never NREs); called only when
        ``free_evaluation`` is true. By default the same as ``rewards``."""
        return self.rewards(completions)

    @staticmethod
    def check_options(options: dict) -> str | None:
        """A one-line error for bad ``task_options`` (checked before anything starts), or None."""
        return None

    def render(self, completion: Sequence[int]) -> str:
        return " ".join(map(str, completion))

    def pattern(self, completion: Sequence[int]) -> str:
        return "success"

    def mode(self, completion: Sequence[int]) -> str:
        """A coarse category of a sample (e.g. the addition task's leading_zero / carry_chain /
        other / malformed): runs report each mode's share and P(success | mode)."""
        return "all"

    def diagnostics(self, completions: Sequence[Sequence[int]]) -> dict:
        return {"mean_length": sum(map(len, completions)) / max(len(completions), 1)}

    def success_rate(self, model, samples: int | None = None) -> dict | None:
        """Optional: the success rate of ``model`` (a generator held by a trainer) computed rather
        than sampled, for rates sampling cannot see: {"rate", "lo", "hi", "method", "exact", ...},
        ``exact`` true for an exact computation, false for an estimator's (importance sampled, with
        its draws "n", "ess" and "reliable"; ``core.estimate``); an estimator's draws are
        ``samples`` (None: the task's setting). None: the driver estimates the rate from
        evaluation samples (Clopper-Pearson)."""
        return None

    def code_logprobs(self, model):
        """Optional, for a space small enough to enumerate: log p(x) under ``model`` of every
        well-formed completion (all ``max_new_tokens`` long), as an array whose entries match
        ``success_codes()``. Algorithm 1's posterior, p0 restricted to what no region rejects, is
        then measured exactly (``algorithms.exact_posterior``). None: not enumerable."""
        return None

    def success_codes(self):
        """The boolean table of successes matching ``code_logprobs`` (None: not enumerable)."""
        return None

    def code_completions(self, indices) -> list[tuple[int, ...]]:
        """The completions at these flat indices of ``code_logprobs``'s table (C order), for drawing
        exactly from a distribution over the enumerated space. Needed where ``code_logprobs`` is."""
        raise NotImplementedError(f"{type(self).__name__} does not enumerate its space")

    def code_indices(self, completions) -> np.ndarray:
        """The flat indices in ``code_logprobs``'s table of those ``completions`` that are in it (the
        inverse of ``code_completions``; others, such as an early EOS, are left out)."""
        raise NotImplementedError(f"{type(self).__name__} does not enumerate its space")

    def reference_rate(self) -> dict | None:
        """Optional: the prior's success rate measured once at length and shipped with it
        ({"rate", "lo", "hi", "k", "n", ...}), when it applies to this task's settings; a run's
        fresh-sample headline compares against it instead of re-measuring a tiny rate."""
        return None

    def save_sample_grid(self, path, posterior: Sequence[Sequence[int]]):
        """Optional: write a PNG of prior samples beside these end-of-run posterior samples."""
        return None


def flat_code_indices(completions, offset: int, symbols: int, length: int) -> np.ndarray:
    """Flat C-order indices of the completions of ``length`` tokens in [offset, offset + symbols)
    over a table of shape (symbols,) * length; the others are left out."""
    rows = [c for c in completions if len(c) == length and all(offset <= t < offset + symbols for t in c)]
    if not rows:
        return np.zeros(0, dtype=np.int64)
    return np.ravel_multi_index(tuple((np.asarray(rows, dtype=np.int64) - offset).T), (symbols,) * length)
