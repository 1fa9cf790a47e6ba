"""The reward oracle: the one place that spends NREs.

``RewardOracle`` owns the hard budget, dedupe (a sample already in the ledger costs nothing),
a token-bucket rate limit, retries with backoff, and the SQLite ledger; results are durable before
they are returned. ``RewardOracleActor`` is the same class as a Ray actor: one per run, so the
budget and the rate limit hold cluster-wide whatever the number of callers.

Evaluation calls (success-rate estimates) go through ``evaluate_free``: never charged, never in
the ledger, counted apart.
"""
from __future__ import annotations

import time
from typing import Sequence

import ray

from banel_ray import tasks
from banel_ray.ledger import Ledger, sample_key


class TokenBucket:
    """At most ``rate`` calls per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float = 1.0, clock=time.monotonic, sleep=time.sleep):
        self.rate, self.burst, self.clock, self.sleep = rate, max(burst, 1.0), clock, sleep
        self.tokens, self.last = self.burst, clock()

    def take(self, n: int = 1) -> None:
        if self.rate <= 0:
            return
        for _ in range(n):
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1:
                self.sleep((1 - self.tokens) / self.rate)
                self.last = self.clock()
                self.tokens = 0.0
            else:
                self.tokens -= 1


class RewardOracle:
    def __init__(self, task_name: str, task_options: dict, ledger_path: str, budget: int,
                 rate_limit: float = 0.0, retries: int = 3, backoff_s: float = 0.2,
                 charge_errors: bool = False, threads: int = 1):
        from banel_ray.models import set_threads

        set_threads(threads)
        self.task = tasks.build(task_name, task_options)
        self.ledger = Ledger(ledger_path)
        self.budget = int(budget)
        self.bucket = TokenBucket(rate_limit)
        self.retries, self.backoff_s, self.charge_errors = retries, backoff_s, charge_errors
        self.free_calls = 0

    def spent(self) -> int:
        return self.ledger.spent()

    def remaining(self) -> int:
        return max(0, self.budget - self.ledger.spent())

    def _call(self, samples: list[tuple[int, ...]]) -> tuple[list[int] | None, int, str | None]:
        err = None
        for attempt in range(1, self.retries + 1):
            try:
                self.bucket.take(len(samples))
                return [int(r) for r in self.task.rewards(samples)], attempt, None
            except Exception as e:  # an oracle error is not a negative
                err = f"{type(e).__name__}: {e}"
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        return None, self.retries, err

    def evaluate(self, round_: int, *batches: dict) -> dict:
        """Pay for the distinct, not-yet-paid samples of ``batches`` (sampler outputs), within budget.

        Returns the samples (in order), their rewards (None where unpaid: budget exhausted or
        oracle error), the weight versions, and how many NREs this call spent.
        """
        samples: list[tuple[int, ...]] = []
        versions: list[int] = []
        for b in batches:
            samples += [tuple(s) for s in b["samples"]]
            versions += [b["version"]] * len(b["samples"])
        keys = [sample_key(s) for s in samples]
        known = self.ledger.lookup(keys)
        todo: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in known and k not in todo:
                todo[k] = i
        room = self.remaining()
        pay = list(todo.items())[:room]
        rows = []
        if pay:
            chunk = [samples[i] for _, i in pay]
            rewards, attempt, err = self._call(chunk)
            for j, (k, i) in enumerate(pay):
                rows.append({"key": k, "sample": samples[i], "round": round_, "version": versions[i],
                             "attempt": attempt,
                             "reward": None if rewards is None else rewards[j],
                             "status": "error" if rewards is None else "ok", "error": err,
                             "charged": 1 if rewards is not None or self.charge_errors else 0})
            self.ledger.record(rows)
            for r in rows:
                known[r["key"]] = (r["reward"], r["status"])
        out = [known[k][0] if k in known and known[k][1] == "ok" else None for k in keys]
        return {"samples": samples, "rewards": out, "versions": versions,
                "paid": sum(r["charged"] for r in rows), "reused": sum(1 for k in keys if k in known) - len(rows),
                "errors": sum(1 for r in rows if r["status"] == "error"), "spent": self.ledger.spent()}

    def evaluate_free(self, *batches: dict) -> dict:
        """Rewards for evaluation samples: not NREs, not in the ledger."""
        samples = [tuple(s) for b in batches for s in b["samples"]]
        self.free_calls += len(samples)
        rewards = self.task.rewards(samples) if samples else []
        succ = [s for s, r in zip(samples, rewards) if r]
        return {"k": int(sum(rewards)), "n": len(samples), "successes": succ[:200],
                "diagnostics": self.task.diagnostics(samples)}

    def ledger_rows(self) -> list[dict]:
        return self.ledger.rows()


RewardOracleActor = ray.remote(max_restarts=3)(RewardOracle)
