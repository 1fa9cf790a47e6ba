"""A complete method in one file: pay for the longest of 2m prior draws each round.

A crude exploration heuristic (longer queries carry longer carry chains), learning nothing. It
shows the whole plug-in surface: override ``propose``, return references to the batches to pay.
Register it with one line in ``banel_ray/core/method_registry.py``::

    "longest_first": ("longest_first:LongestFirst", "pay the longest of 2m prior draws"),

(with this folder on PYTHONPATH), then ``python -m banel_ray.run --set method=longest_first``.
"""

from __future__ import annotations

from banel_ray.core import seeds
from banel_ray.methods.base import Method
from banel_ray.records import SampleBatch


class LongestFirst(Method):
    name = "longest_first"

    def propose(self, round_: int) -> list:
        m = self.ctx.rc.samples_per_round
        batches = self.rt.get(self.ctx.samplers.draw(2 * m, seeds.PROPOSE + round_))
        drawn = [s for b in batches for s in b.samples]
        longest = sorted(drawn, key=len, reverse=True)[:m]
        return [self.rt.put(SampleBatch(longest, version=batches[0].version))]
