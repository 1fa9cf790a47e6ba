"""The evaluator: rewards of evaluation draws, for success-rate estimates. Never NREs.

Estimates must not silently spend a user's paid oracle: the evaluator calls the task's
``evaluation_rewards`` (for the built-in tasks the same free, local reward as training; for a
``CallableTask`` the evaluator it names). Its calls and their time are counted and reported apart
from NREs. Pattern counts are taken over every success, not a sample of them.
"""

from __future__ import annotations

import time
from collections import Counter

from banel_ray import tasks
from banel_ray.records import EvalResult

KEEP_SUCCESSES = 200  # successes returned to the runner for the report (counts cover all)


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
        t = time.perf_counter()
        samples = [tuple(s) for b in batches for s in b.samples]
        rewards = self.task.evaluation_rewards(samples) if samples else []
        succ = [s for s, r in zip(samples, rewards) if r]
        modes: dict[str, list[int]] = {}
        for s, r in zip(samples, rewards):
            m = modes.setdefault(self.task.mode(s), [0, 0])
            m[0] += 1
            m[1] += int(r)
        self.calls += 1 if samples else 0
        self.draws += len(samples)
        dt = time.perf_counter() - t
        self.seconds += dt
        return EvalResult(
            k=int(sum(rewards)),
            n=len(samples),
            successes=succ[:KEEP_SUCCESSES],
            patterns=Counter(self.task.pattern(s) for s in succ),
            diagnostics=self.task.diagnostics(samples),
            modes=modes,
            calls=1 if samples else 0,
            seconds=dt,
        )

    def stats(self) -> dict:
        """Evaluation work so far: calls, draws scored, seconds (reported apart from NREs)."""
        return {"eval_calls": self.calls, "eval_draws": self.draws, "eval_seconds": self.seconds}
