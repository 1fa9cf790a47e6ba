"""A success-rate estimate, typed: how every estimate a run folder records is read.

A run writes estimates in several places (``metrics.jsonl``'s ``eval``, ``summary.json``'s
``base``, ``final``, ``best`` and ``*_fresh``, ``evals/round_NNNN.json``, a task's shipped
reference measurement), as JSON objects. There are three kinds, told apart here and nowhere else:

- ``exact``: computed over every string (``models.exact_rate``, ``algorithms.exact_posterior``);
  the record says ``"exact": true`` and ``method`` says how; its interval is the point (or, for
  Algorithm 1's posterior, the bounds of what lies outside the table).
- ``importance``: importance sampled (``measure.importance``): ``"exact": false``, ``n`` the
  estimator's draws, ``ess`` the successes' effective sample size, ``reliable`` whether the
  estimate clears the trust bars, ``method`` how.
- ``sampled``: ``k`` successes of ``n`` draws from the generator, with a 95% Clopper-Pearson
  interval (``algorithms.stats.sampled``); a record without ``exact`` is read as one.

An exact or importance-sampled estimate (a rate the task computed) may carry the sampled estimate
of the same generator beside it (``sampled``). Every other key (``round``, ``fresh``, ``patterns``,
``modes``, a task's diagnostics) is kept in ``extra``; ``Estimate.from_dict(d).to_dict() == d``,
key order included, so a record read and written again is the same JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EXACT, SAMPLED, IMPORTANCE = "exact", "sampled", "importance"
KINDS = (EXACT, SAMPLED, IMPORTANCE)
TYPED = ("rate", "lo", "hi", "k", "n", "ess", "reliable", "method", "exact", "sampled")


def kind_of(d: Mapping) -> str:
    """Which kind of estimate the JSON object ``d`` records (the one place that reads its keys so):
    a rate the task computed says ``exact`` (true: exact, false: an estimator's, importance
    sampled; ``Task.success_rate``); a record that does not is a sampled one."""
    if "exact" in d:
        return EXACT if d["exact"] else IMPORTANCE
    return SAMPLED


@dataclass(frozen=True)
class Estimate:
    """A success rate with its 95% interval, of one of ``KINDS``."""

    rate: float
    lo: float | None = None  # None only in a record that has no interval (hand-made, in tests)
    hi: float | None = None
    kind: str = SAMPLED
    k: int | None = None  # sampled: successes
    n: int | None = None  # sampled: draws; importance: the estimator's draws
    ess: float | None = None  # importance: effective sample size of the successes
    reliable: bool | None = None  # importance: ESS and largest weight share within the trust bars
    method: str | None = None  # computed (exact, importance): how, in the task's words
    sampled: Estimate | None = None  # computed: the sampled estimate of the same generator beside it
    extra: Mapping[str, Any] = field(default_factory=dict)  # every other key of the record, in order
    keys: tuple[str, ...] = ()  # the record's keys in order (empty: the usual order)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"an estimate's kind is one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.keys:
            object.__setattr__(self, "keys", self._usual_keys())

    def _usual_keys(self) -> tuple[str, ...]:
        head = ("k", "n", "rate", "lo", "hi") if self.kind == SAMPLED else ("rate", "lo", "hi", "n")
        typed = {
            "k": self.k,
            "n": self.n,
            "lo": self.lo,
            "hi": self.hi,
            "ess": self.ess,
            "reliable": self.reliable,
            "method": self.method,
        }
        out = [x for x in head if x not in typed or typed[x] is not None]
        out += [x for x in ("ess", "reliable", "method") if typed[x] is not None]
        out += [] if self.kind == SAMPLED else ["exact"]
        out += ["sampled"] if self.sampled is not None else []
        return (*out, *(x for x in self.extra if x not in out))

    # ---- the JSON record -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping) -> Estimate:
        """The estimate a JSON object records (``rate`` required)."""
        s = d.get("sampled")
        s = s if isinstance(s, Mapping) and "rate" in s else None
        typed = [x for x in TYPED if x != "sampled" or s is not None]
        return cls(
            rate=d["rate"],
            lo=d.get("lo"),
            hi=d.get("hi"),
            kind=kind_of(d),
            k=d.get("k"),
            n=d.get("n"),
            ess=d.get("ess"),
            reliable=d.get("reliable"),
            method=d.get("method"),
            sampled=cls.from_dict(s) if s is not None else None,
            extra={x: v for x, v in d.items() if x not in typed},
            keys=tuple(d),
        )

    @classmethod
    def read(cls, d: Mapping | None) -> Estimate | None:
        """``from_dict``, or None for no estimate (None, an empty record, one without a rate)."""
        return cls.from_dict(d) if d and "rate" in d else None

    def to_dict(self) -> dict:
        """The JSON object: the one it was read from, key for key and in the same order."""
        typed = {
            "rate": self.rate,
            "lo": self.lo,
            "hi": self.hi,
            "k": self.k,
            "n": self.n,
            "ess": self.ess,
            "reliable": self.reliable,
            "method": self.method,
            "exact": self.kind == EXACT,
            "sampled": self.sampled.to_dict() if self.sampled is not None else None,
        }
        return {x: self.extra[x] if x in self.extra else typed[x] for x in self.keys}

    # ---- what readers ask --------------------------------------------------------------------------
    @property
    def computed(self) -> bool:
        """A rate the task computed (exact, or importance sampled on draws no training step saw):
        where there is one it is the headline, not a sampled estimate of a rate sampling cannot see."""
        return self.kind != SAMPLED

    @property
    def draws(self) -> int:
        """The draws behind it (sampled or importance sampled; 0 for an exact one)."""
        return int(self.n or 0)

    @property
    def fresh(self) -> bool:
        """Made on fresh draws after the run (``banel_ray.evaluate``), not an in-run estimate."""
        return bool(self.extra.get("fresh"))

    @property
    def round(self) -> int | None:
        """The round whose generator it measures (fresh evaluations), if it says."""
        return self.extra.get("round")

    @property
    def reference(self) -> bool:
        """The prior's shipped measurement (``Task.reference_rate``)."""
        return bool(self.extra.get("reference"))

    def get(self, key: str, default=None):
        """A key of the record beside the typed ones (``certain_lo``, ``drawn_from_prior``, ...)."""
        return self.extra.get(key, default)
