"""A finished (or interrupted) sweep's trials, read with Tune's own ``ResultGrid``.

``Tuner.restore(path, trainable=...).get_results()`` is what Ray's documentation gives for reading
an experiment folder after the fact ("Analyzing Tune Experiment Results"); it reads the
experiment's state and each trial's reported results (``ExperimentAnalysis`` underneath) and starts
no Ray instance. The experiment folder must be trusted: Tune's state files are pickles.
"""

from __future__ import annotations

import math
from pathlib import Path


class NotAnExperiment(ValueError):
    """The folder is not a Tune experiment folder, or Tune cannot read its state."""


def read(exp: Path | str):
    """The ``ResultGrid`` of the BaNEL sweep at ``exp`` (a folder or an ``s3://``/``gs://`` URI)."""
    from ray import tune

    from tuning.trainable import banel_trial, trial_resources

    where = str(exp)
    try:
        # the trainable the sweep ran (tuning.sweep.build_tuner): Tune checks it is the same one
        tuner = tune.Tuner.restore(where, trainable=tune.with_resources(banel_trial, trial_resources))
    except FileNotFoundError:
        raise NotAnExperiment(f"{where} is not a Tune experiment folder (no tuner.pkl)") from None
    except ValueError as e:  # another trainable's experiment
        raise NotAnExperiment(f"{where}: {e}") from None
    try:
        return tuner.get_results()
    except RuntimeError:  # Tune found no experiment_state-*.json it could load
        raise NotAnExperiment(f"{where} holds no Tune experiment state (experiment_state-*.json)") from None


def trials(exp: Path | str) -> list:
    """The experiment's trials as ``Result`` objects, in the order of their folders' names."""
    return sorted(read(exp), key=lambda r: Path(r.path).name)


def rows(result) -> list[dict]:
    """Every result a trial reported, in order, each as the dict it reported: Tune's
    ``metrics_dataframe`` fills keys a report did not have (``success`` in a round without an
    evaluation) with NaN; those are left out again, so a missing signal reads as missing."""
    df = result.metrics_dataframe
    if df is None or df.empty:
        return []
    return [{k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))} for r in df.to_dict("records")]


def trial_id(result) -> str | None:
    """The trial's id (its run folder's name under ``runs_root``), from its last report."""
    return (result.metrics or {}).get("trial_id")
