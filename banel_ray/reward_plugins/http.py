"""An HTTP endpoint as an oracle (standard library only).

Protocol: ``POST <url>`` with ``Content-Type: application/json`` and body
``{"samples": [[token ids], ...]}``; the answer is ``{"rewards": [1, 0, null, ...]}``, one entry per
sample in order (``null``: that sample could not be evaluated). Any HTTP error status, a timeout, a
body that is not that JSON, or a wrong number of rewards fails the whole call (``RewardOracle``
retries it). ``examples/oracles/http_oracle.py`` has a matching server.
"""

from __future__ import annotations

import json
import urllib.request

from banel_ray.reward_plugins.base import Oracle


class HttpOracle(Oracle):
    def __init__(self, url: str, timeout_s: float = 30.0, headers: dict | None = None, batch_size: int = 0):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"HttpOracle needs an http(s) URL, got {url!r}")
        self.url, self.timeout_s, self.headers = url, float(timeout_s), dict(headers or {})
        self.batch_size = int(batch_size)

    def rewards(self, samples):
        body = json.dumps({"samples": [list(map(int, s)) for s in samples]}).encode()
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json", **self.headers},
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            data = json.loads(resp.read().decode())
        rewards = data.get("rewards") if isinstance(data, dict) else None
        if not isinstance(rewards, list) or len(rewards) != len(samples):
            raise ValueError(f"{self.url}: expected {{'rewards': [{len(samples)} values]}}, got {str(data)[:200]}")
        return rewards
