"""A per-sample oracle: a plain (or ``async``) function from one sample to a reward.

The function gets a sample (a tuple of token ids) and returns 1 (success), 0 (failure), or raises
(the evaluation failed: recorded as an error, never as a 0). ``RewardService`` calls it one sample per
call, up to ``max_in_flight`` at once, under the rate limit. An ``async def`` works the same way.

In a run config (with this folder on ``PYTHONPATH``)::

    task: banel_ray.reward_plugins:CallableTask
    task_options:
      base: addition_attack
      oracle: {kind: sample, fn: "sample_oracle:reward"}      # or "sample_oracle:reward_async"

Run the demo: ``.venv/bin/python examples/oracles/sample_oracle.py``
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path


def reward(sample: tuple[int, ...]) -> int:
    """1 iff the token ids sum to a multiple of 7 (stands in for a simulator, a judge, a lab...)."""
    return int(sum(sample) % 7 == 0)


async def reward_async(sample: tuple[int, ...]) -> int:
    """The same, as a coroutine (an async client of a remote service, say)."""
    await asyncio.sleep(0.01)
    return reward(sample)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from banel_ray.actors.reward_service import RewardService
    from banel_ray.records import SampleBatch

    for fn in ("sample_oracle:reward", "sample_oracle:reward_async"):
        with tempfile.TemporaryDirectory() as d:
            o = RewardService(
                "banel_ray.reward_plugins:CallableTask",
                {"oracle": {"kind": "sample", "fn": fn}},
                f"{d}/ledger.sqlite",
                budget=5,
                max_in_flight=4,
            )
            r = o.pay(1, SampleBatch([(3, 4), (1, 2), (3, 4), (7,), (5, 5), (6, 8), (9,)]))
            print(f"{fn:28s} rewards {r.rewards} paid {r.paid} reused {r.reused} unpaid {r.unpaid} spent {r.spent}/5")
            o.close()


if __name__ == "__main__":
    main()
