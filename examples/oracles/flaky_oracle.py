"""The slow, flaky test oracle (``banel_ray.reward_plugins.FlakyOracle``) and what ``RewardService`` does
with it: timeouts and failures are retried with backoff; what keeps failing is an error (reward
``None``), not charged unless ``charge_errors=True``.

    oracle: {kind: flaky, latency_s: 0.2, failure_rate: 0.2, timeout_rate: 0.1, hang_s: 2, seed: 0}

Run: ``.venv/bin/python examples/oracles/flaky_oracle.py``
"""

from __future__ import annotations

import tempfile
import time


def main() -> None:
    from banel_ray.actors.reward_service import RewardService
    from banel_ray.records import SampleBatch

    spec = {"kind": "flaky", "latency_s": 0.05, "failure_rate": 0.3, "timeout_rate": 0.1, "hang_s": 1.0, "seed": 0}
    for charge in (False, True):
        with tempfile.TemporaryDirectory() as d:
            o = RewardService(
                "banel_ray.reward_plugins:CallableTask",
                {"oracle": spec},
                f"{d}/l.sqlite",
                budget=20,
                rate_limit=40,
                retries=2,
                backoff_s=0.02,
                timeout_s=0.3,
                charge_errors=charge,
                max_in_flight=4,
            )
            t = time.perf_counter()
            r = o.pay(1, SampleBatch([(i, i + 1) for i in range(16)]))
            print(
                f"charge_errors={charge}: ok {sum(x is not None for x in r.rewards)} errors {r.errors} "
                f"paid {r.paid} spent {r.spent} in {time.perf_counter() - t:.2f}s; "
                f"timeouts {o.stats()['timeouts']}"
            )
            o.close()


if __name__ == "__main__":
    main()
