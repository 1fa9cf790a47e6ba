"""A slow, flaky, seeded oracle for tests and benchmarks.

Each call sleeps ``latency_s`` (plus up to ``jitter_s``); with probability ``failure_rate`` it then
raises; with probability ``timeout_rate`` it first hangs ``hang_s`` (then answers late, as a real
service would after the client gave up). The draw for a call depends only on ``seed``, the call's
samples and how many times this instance saw that exact call, so a run is reproducible whatever
the thread interleaving. The reward is ``fn(sample)`` (default: 1 iff the token sum is odd).
"""

from __future__ import annotations

import collections
import random
import threading
import time

from banel_ray.reward_plugins.base import Oracle, _fn


def parity(sample) -> int:
    return int(sum(sample) % 2)


class FlakyOracle(Oracle):
    def __init__(
        self,
        latency_s: float = 0.2,
        jitter_s: float = 0.0,
        failure_rate: float = 0.0,
        timeout_rate: float = 0.0,
        hang_s: float = 5.0,
        seed: int = 0,
        batch_size: int = 1,
        fn=None,
    ):
        self.latency_s, self.jitter_s, self.hang_s = float(latency_s), float(jitter_s), float(hang_s)
        self.failure_rate, self.timeout_rate, self.seed = float(failure_rate), float(timeout_rate), seed
        self.batch_size = int(batch_size)
        self.fn = _fn(fn) if fn else parity
        self.lock = threading.Lock()
        self.seen: collections.Counter = collections.Counter()
        self.calls = self.failures = self.hangs = self.in_flight = self.max_in_flight = 0

    def rewards(self, samples):
        key = tuple(tuple(s) for s in samples)
        with self.lock:
            n = self.seen[key]
            self.seen[key] += 1
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            rng = random.Random(f"{self.seed}|{key}|{n}")
            u, jitter = rng.random(), rng.random() * self.jitter_s
            if u < self.timeout_rate:
                with self.lock:
                    self.hangs += 1
                time.sleep(self.hang_s)
            time.sleep(self.latency_s + jitter)
            if self.timeout_rate <= u < self.timeout_rate + self.failure_rate:
                with self.lock:
                    self.failures += 1
                raise RuntimeError(f"flaky oracle: transient failure (seed {self.seed}, try {n + 1})")
            return [int(self.fn(tuple(s))) for s in samples]
        finally:
            with self.lock:
                self.in_flight -= 1
