"""The evaluator: rewards of evaluation draws, for success-rate estimates. Never NREs.

Estimates must not silently spend a user's paid oracle: the evaluator calls the task's
``evaluation_rewards`` only when the task says they are free (``Task.free_evaluation``: the
built-in tasks' local rewards; a ``CallableTask``'s own ``evaluator``). A task without a free
evaluator is refused here; its estimates go through the reward service, counted and capped by
``eval.paid_budget`` (``RewardService.estimate``), or are off (``eval.samples: 0``). Calls and
their time are reported apart from NREs. Pattern counts are taken over every success.
"""

from __future__ import annotations

import time
from collections import Counter

from banel_ray import tasks
from banel_ray.records import EvalResult

KEEP_SUCCESSES = 200  # successes returned to the runner for the report (counts cover all)


def eval_result(task, samples: list, rewards: list, seconds: float) -> EvalResult:
    """k of n over rewarded ``samples``, with successes, patterns, modes and the task's diagnostics
    (shared by the evaluator and the reward service's paid estimates)."""
    succ = [s for s, r in zip(samples, rewards) if r]
    modes: dict[str, list[int]] = {}
    for s, r in zip(samples, rewards):
        m = modes.setdefault(task.mode(s), [0, 0])
        m[0] += 1
        m[1] += int(r)
    return EvalResult(
        k=int(sum(rewards)),
        n=len(samples),
        successes=succ[:KEEP_SUCCESSES],
        patterns=Counter(task.pattern(s) for s in succ),
        diagnostics=task.diagnostics(samples),
        modes=modes,
        calls=1 if samples else 0,
        seconds=seconds,
    )


class Evaluator:
    def __init__(self, task_name: str, task_options: dict, threads: int = 1):
        if threads:
            from banel_ray.models import set_threads

            set_threads(threads)
        self.task = tasks.build(task_name, task_options)
        self.calls = 0
        self.draws = 0
        self.seconds = 0.0

    def estimate(self, *batches) -> EvalResult:
        """Rewards for the samples of ``batches`` (``SampleBatch``es): k of n, and what they were."""
        if not self.task.free_evaluation:  # checked in config.validate too; never a paid oracle here
            raise RuntimeError(
                f"task {self.task.name}: its evaluation rewards are not free; success-rate estimates go "
                f"through the reward service (eval.paid_budget) or need a free evaluator"
            )
        t = time.perf_counter()
        samples = [tuple(s) for b in batches for s in b.samples]
        rewards = self.task.evaluation_rewards(samples) if samples else []
        self.calls += 1 if samples else 0
        self.draws += len(samples)
        res = eval_result(self.task, samples, rewards, time.perf_counter() - t)
        self.seconds += res.seconds
        return res

    def stats(self) -> dict:
        """Evaluation work so far: calls, draws scored, seconds (reported apart from NREs)."""
        return {"eval_calls": self.calls, "eval_draws": self.draws, "eval_seconds": self.seconds}
