"""The ``mnist_0to6_rare`` plug-in: ``mnist_0to6``'s space and oracle with the shipped rare-regime
prior (built by ``assets.py``; its record, ``rare_regime.json``, beside it)."""

from __future__ import annotations

from pathlib import Path

from banel_ray.tasks.mnist.common import ASSETS
from banel_ray.tasks.mnist.task import MnistZeroToSix

PRIOR = ASSETS / "rare_prior"
REGIME = ASSETS / "rare_regime.json"
MAX_RATE = 1e-20  # the regime: the prior's exact six rate is at most this


class MnistRare(MnistZeroToSix):
    """``mnist_0to6`` with the rare-regime prior (``prior``: another HF folder instead)."""

    name = "mnist_0to6_rare"

    def __init__(self, prior: str = "", cache_dir: str = "", threads: int = 1):
        super().__init__(prior=prior, cache_dir=cache_dir, threads=threads)

    def prior_dir(self, progress=print) -> Path:
        return Path(self.prior_path) if self.prior_path else PRIOR
