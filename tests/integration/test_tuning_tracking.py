"""A sweep's experiment tracking: mlflow and wandb go through Ray Tune's own logger callbacks, the
MLflow one driven as Tune drives it (no Ray) and its store read back (imports Ray Tune, MLflow and
W&B: seconds; the pure tuning checks are in tests/unit/test_tuning_rules.py)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class _Trial:
    """What Tune's logger callbacks read of a trial (hashable by identity, as Tune's Trial is)."""

    def __init__(self, trial_id, config):
        self.trial_id, self.config = trial_id, config

    def __str__(self):
        return f"banel_trial_{self.trial_id}"


def test_a_sweeps_mlflow_and_wandb_go_through_tunes_callbacks_and_trials_keep_tensorboard(tmp_path, monkeypatch):
    """``logging.backends`` of a sweep: mlflow and wandb are Ray Tune's own MLflowLoggerCallback and
    WandbLoggerCallback in the Tuner's RunConfig (one tracked run per trial, the sweep in one store);
    the trials' own runs keep TensorBoard only, so each round is tracked once. The MLflow callback
    is driven as Tune drives it (no Ray) and its store read back."""
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.air.integrations.wandb import WandbLoggerCallback

    from tuning import sweep

    for var in ("WANDB_MODE", "MLFLOW_ALLOW_FILE_STORE"):  # set by the code under test: put back after
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    quick = str(ROOT / "tuning/configs/quick_sweep.yaml")
    sw = sweep.load_sweep(quick, [])
    assert sweep.tracking_callbacks(sw, tmp_path / "s0", "s0") == [] and "WANDB_MODE" not in os.environ
    assert sweep.trial_base(sw)["logging.backends"] == ["tensorboard"]

    sw = dict(sweep.load_sweep(quick, ["logging.backends=tensorboard,mlflow,wandb"]), storage=str(tmp_path), name="s1")
    seen = {}
    monkeypatch.setattr(tune, "Tuner", lambda *a, **kw: seen.update(kw))  # what build_tuner hands to Tune
    sweep.build_tuner(sw)
    ml, wb = seen["run_config"].callbacks
    assert isinstance(ml, MLflowLoggerCallback) and isinstance(wb, WandbLoggerCallback)
    assert ml.tracking_uri == (tmp_path / "s1" / "mlruns").as_uri() and ml.experiment_name == "banel_ray"
    assert ml.tags == {"sweep": "s1"}
    assert (wb.project, wb.group, wb.kwargs) == ("banel_ray", "s1", {"mode": "offline"})
    assert os.environ["WANDB_MODE"] == "offline"  # else Ray's W&B callback asks for an API key
    assert seen["param_space"]["base"]["logging.backends"] == ["tensorboard"]  # the trials' own runs
    assert sw["base"]["logging.backends"] == ["tensorboard", "mlflow", "wandb"]

    from mlflow.tracking import MlflowClient

    trial = _Trial("00000", {"filter.factor": 2.0, "seed": 0})
    ml.setup()
    ml.log_trial_start(trial)
    for it, nres in ((1, 40), (2, 80)):
        ml.log_trial_result(it, trial, {"nres": nres, "novel_frac": 1.0 / it, "training_iteration": it})
    ml.log_trial_end(trial)
    client = MlflowClient(tracking_uri=ml.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("banel_ray").experiment_id])
    assert (
        run.info.status == "FINISHED" and run.data.tags["sweep"] == "s1" and run.data.params["filter.factor"] == "2.0"
    )
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "nres")] == [(1, 40.0), (2, 80.0)]

    sw = sweep.load_sweep(quick, ["logging.backends=wandb", "logging.wandb_mode=online", "logging.wandb_project=p"])
    (wb,) = sweep.tracking_callbacks(sw, tmp_path / "s2", "s2")
    assert (wb.project, wb.kwargs) == ("p", {"mode": "online"})
