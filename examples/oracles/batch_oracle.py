"""A batch oracle: one call takes a list of samples and returns a list of rewards.

For oracles that are cheaper per sample in bulk (a GPU judge, a simulator that vectorises, an API
with a batch endpoint). Return one entry per sample, in order: 1, 0, or ``None`` where that sample
could not be evaluated (it is retried alone, and recorded as an error if it keeps failing).
``batch_size`` caps the samples per call (0: the whole batch in one call).

In a run config (with this folder on ``PYTHONPATH``)::

    task: banel_ray.reward_plugins:CallableTask
    task_options:
      base: addition_attack
      oracle: {kind: batch, fn: "batch_oracle:rewards", batch_size: 64}

Run the demo: ``.venv/bin/python examples/oracles/batch_oracle.py``
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

CALLS = []


def rewards(samples: list[tuple[int, ...]]) -> list[int | None]:
    """1 iff a sample is a palindrome of length >= 3; None (failed) for an empty sample."""
    CALLS.append(len(samples))
    return [None if not s else int(len(s) >= 3 and s == s[::-1]) for s in samples]


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import batch_oracle  # the module as the config path names it (so CALLS is the one used)

    from banel_ray.actors.reward_service import RewardService
    from banel_ray.records import SampleBatch

    with tempfile.TemporaryDirectory() as d:
        o = RewardService(
            "banel_ray.reward_plugins:CallableTask",
            {"oracle": {"kind": "batch", "fn": "batch_oracle:rewards", "batch_size": 3}},
            f"{d}/ledger.sqlite",
            budget=100,
            retries=2,
            backoff_s=0.0,
        )
        r = o.pay(1, SampleBatch([(1, 2, 1), (1, 2), (), (4, 4, 4), (5, 6, 5), (1, 2)]))
        print(f"rewards {r.rewards} paid {r.paid} errors {r.errors} calls of sizes {batch_oracle.CALLS}")
        o.close()


if __name__ == "__main__":
    main()
