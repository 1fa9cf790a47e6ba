"""Planted-feature tasks (issue 26): a family where every rate is known, to map when BaNEL wins.

A string is ``length`` symbols over ``alphabet`` symbols; the last symbol is the marker ``z``.
The space holds alphabet**length strings (at most 2**20), so every rate is exact by enumeration
(``models/exact_rate.py``), as for ``mnist_0to6``.

* Law: a Markov chain over the ordinary symbols (Dirichlet draws from ``seed``); with probability
  ``Q_TRAIN`` a string starts with the marker instead and goes on by the same chain.
* Prior: a tiny Llama fitted to strings of the law (seconds on one core), then one edit sets its
  first-position probability of the marker to ``q`` exactly (``set_first_rate``): ``q`` itself is
  too rare to learn from a few thousand strings, and an edit is deterministic where training to a
  rate is not. Trained once per law, edited per ``q``, cached under ``cache_dir/synthetic``.
* Feature: the first symbol is ``z`` (a pattern the prior writes at rate ``q``).
* Reward (``plant``): the strings are ranked by a fixed hash of their index; a feature string
  succeeds if it falls in the first ``s`` of the feature's prior mass in hash order, a plain
  string if it falls in the first ``e`` of absolute prior mass (the featureless floor). So the
  prior's base rate is ``q*s + e`` (up to one string's mass), the feature alone does not give
  success away (for ``s`` < 1), and what the successes share is known. The achieved ``q``, ``s``,
  ``e`` and base rate of each prior are in ``planted.json`` beside its success table.
"""

from banel_ray.tasks.synthetic.common import (
    BOS,
    EOS,
    OFFSET,
    PAD,
    Q_TRAIN,
    RECIPE,
    TRAIN_STRINGS,
    draw_law,
    fill,
    law,
    plant,
    string_hash,
)
from banel_ray.tasks.synthetic.task import LETTERS, MAX_SPACE, RANGES, Synthetic

__all__ = [
    "BOS",
    "EOS",
    "LETTERS",
    "MAX_SPACE",
    "OFFSET",
    "PAD",
    "Q_TRAIN",
    "RANGES",
    "RECIPE",
    "TRAIN_STRINGS",
    "Synthetic",
    "draw_law",
    "fill",
    "law",
    "plant",
    "string_hash",
]
