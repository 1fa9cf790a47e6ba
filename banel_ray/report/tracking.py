"""Experiment tracking beside ``metrics.jsonl`` (``logging.backends``).

- ``tensorboard`` (the default, as before): every round's numeric metrics as scalars in
  ``<run_dir>/tensorboard``, x axis = cumulative NREs (the budget is what runs are compared on).
- ``mlflow``: the run's config as params, every round's numeric metrics with step = round, and
  the closing summary (numeric keys as ``summary.*`` metrics, ``summary.json`` as an artifact).
  The store is ``logging.mlflow_uri``, by default a local file store in ``<run_dir>/mlruns``
  (MLflow keeps that backend in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``, which is set
  for it here). The MLflow run id is kept in ``<run_dir>/mlflow_run.json``, so a resumed run logs
  into the same MLflow run; config keys changed on resume become ``resumed.<key>`` tags (MLflow
  params cannot change). A round redone after a crash between its metrics and its checkpoint
  appears twice at its step; ``metrics.jsonl`` keeps the later one.
- ``wandb``: Weights & Biases, **offline** unless ``logging.wandb_mode`` (or, when that is empty,
  ``WANDB_MODE``) says otherwise: no account, no server, no network; the run lands in
  ``<run_dir>/wandb/offline-run-*`` and ``wandb sync <that folder>`` uploads it later. The config
  (nested: ``sampler.backend`` is ``sampler: {backend}``) is the W&B run's config, every round's
  numeric metrics are logged with step = round, the closing summary's numeric keys go into the
  run summary as ``summary.*``. The W&B run id is kept in ``<run_dir>/wandb_run.json`` and a
  resumed run calls ``wandb.init(id=..., resume="allow")``: the same W&B run (offline, each
  process writes its own ``offline-run-*`` folder with that id; ``wandb sync`` uploads them in
  order into one run). Online, W&B drops a step at or below one already logged, so a round redone
  after a crash keeps its first values there (``metrics.jsonl`` keeps the later one).

A backend whose package is missing is refused at config time (``missing_package``), in one line
naming the pip install, before anything starts or is paid.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from pathlib import Path

from banel_ray.core.run_folder import write_atomic

# backend -> (module that must be importable, what to install)
PACKAGES = {
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "mlflow": ("mlflow", "pip install mlflow-skinny==3.18.0"),
    "wandb": ("wandb", "pip install wandb==0.31.0"),
}
RUN_FILE = "mlflow_run.json"
WANDB_FILE = "wandb_run.json"
MAX_PARAM = 6000  # MLflow's longest param value


def missing_package(backends) -> str | None:
    """One line for the first backend whose package is not installed (None: all there)."""
    for b in backends:
        module, install = PACKAGES[b]
        if importlib.util.find_spec(module) is None:
            return f"'logging.backends' {b} needs the {module} package, which is not installed: {install}"
    return None


def _scalars(m: dict, prefix: str = "", depth: int = 1) -> dict[str, float]:
    """Finite numeric values of ``m`` (booleans left out); nested dicts to ``depth`` levels as
    ``outer.inner``."""
    out = {}
    for k, v in m.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[prefix + str(k)] = float(v)
        elif isinstance(v, dict) and depth > 0:
            out.update(_scalars(v, f"{prefix}{k}.", depth - 1))
    return out


def _read_run_file(p: Path) -> dict | None:
    """The tracked run's ids kept in the run folder (None: none yet, or unreadable)."""
    try:
        return json.loads(p.read_text()) if p.exists() else None
    except ValueError:
        return None


def _write_run_file(p: Path, ids: dict) -> None:
    """Write the tracked run's ids whole or not at all (a resume reads them)."""
    write_atomic(p, json.dumps(ids))


class TensorBoard:
    """Today's scalars: a missing or broken TensorBoard writer is skipped, as before."""

    def __init__(self, run_dir: Path, cfg: dict | None = None):
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        except Exception:  # noqa: BLE001 - TensorBoard is optional at run time
            self.tb = None

    def write(self, m: dict) -> None:
        if not self.tb:
            return
        step = int(m.get("nres", 0))
        for k, v in _scalars(m, depth=0).items():
            self.tb.add_scalar(k, v, step)
        if m.get("eval"):
            self.tb.add_scalar("success_rate", m["eval"]["rate"], step)
        self.tb.flush()

    def summary(self, s: dict) -> None:
        pass

    def close(self, status: str = "FINISHED") -> None:
        if self.tb:
            self.tb.close()


class MLflow:
    """One MLflow run per run folder (its id in ``mlflow_run.json``), through ``MlflowClient``."""

    def __init__(self, run_dir: Path, cfg: dict):
        self.run_dir = Path(run_dir)
        uri = cfg.get("logging.mlflow_uri") or (self.run_dir / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: the file store is opt-in
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        saved = self._saved()
        if saved and saved.get("tracking_uri") == uri:  # a resumed run: the same MLflow run
            self.run_id = saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            params = self.client.get_run(self.run_id).data.params
            changed = {k: v for k, v in self._params(cfg).items() if k in params and params[k] != v}
            for k, v in changed.items():
                self.client.set_tag(self.run_id, f"resumed.{k}", v)
            self._log(params={k: v for k, v in self._params(cfg).items() if k not in params})
        else:
            name = cfg.get("logging.mlflow_experiment") or "banel_ray"
            exp = self.client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(name)
            run = self.client.create_run(exp_id, run_name=self.run_dir.name, tags={"run_dir": str(self.run_dir)})
            self.run_id = run.info.run_id
            _write_run_file(
                self.run_dir / RUN_FILE, {"tracking_uri": uri, "experiment_id": exp_id, "run_id": self.run_id}
            )
            self._log(params=self._params(cfg))

    def _saved(self) -> dict | None:
        return _read_run_file(self.run_dir / RUN_FILE)

    @staticmethod
    def _params(cfg: dict) -> dict[str, str]:
        out = {}
        for k, v in sorted(cfg.items()):
            text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
            out[k] = text[:MAX_PARAM]
        return out

    def _log(self, params: dict | None = None, metrics: dict | None = None, step: int = 0) -> None:
        """In batches within MLflow's limits (100 params, 1000 metrics per call)."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        ps = [Param(k, v) for k, v in (params or {}).items()]
        ms = [Metric(k, v, now, step) for k, v in (metrics or {}).items()]
        for i in range(0, len(ps), 100):
            self.client.log_batch(self.run_id, params=ps[i : i + 100])
        for i in range(0, len(ms), 1000):
            self.client.log_batch(self.run_id, metrics=ms[i : i + 1000])

    def write(self, m: dict) -> None:
        metrics = _scalars(m, depth=0)
        if m.get("eval"):
            metrics["success_rate"] = float(m["eval"]["rate"])
        self._log(metrics=metrics, step=int(m.get("round", 0)))

    def summary(self, s: dict) -> None:
        self._log(metrics={f"summary.{k}": v for k, v in _scalars(s).items()}, step=int(s.get("rounds") or 0))
        path = self.run_dir / "summary.json"
        if path.exists():
            self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def wandb_mode(cfg: dict) -> str:
    """``logging.wandb_mode``; empty: ``WANDB_MODE``; neither: offline (nothing leaves the machine)."""
    return cfg.get("logging.wandb_mode") or os.environ.get("WANDB_MODE") or "offline"


def _nested(flat: dict) -> dict:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (W&B config keys hold no dots; its UI shows them dotted)."""
    out: dict = {}
    for k, v in sorted(flat.items()):
        *outer, last = str(k).split(".")
        cur = out
        for p in outer:
            nxt = cur.setdefault(p, {})
            if not isinstance(nxt, dict):  # a value already there: this key stays whole
                cur, last = out, str(k)
                break
            cur = nxt
        cur[last] = v
    return out


class Wandb:
    """One W&B run per run folder (its id in ``wandb_run.json``), offline unless asked otherwise."""

    def __init__(self, run_dir: Path, cfg: dict):
        import wandb

        self.run_dir = Path(run_dir)
        saved = self._saved()
        self.run = wandb.init(
            project=cfg.get("logging.wandb_project") or "banel_ray",
            dir=str(self.run_dir),
            id=saved.get("id") if saved else None,
            name=self.run_dir.name,
            config=_nested(cfg),
            mode=wandb_mode(cfg),
            resume="allow",  # an id W&B has not seen yet starts that run; a known one continues it
            reinit="create_new",  # never hand back (or finish) another run open in this process
            settings=wandb.Settings(console="off"),  # the run's output stays the run's (no stdout capture)
        )
        if not saved or saved.get("id") != self.run.id:
            _write_run_file(self.run_dir / WANDB_FILE, {"id": self.run.id, "project": self.run.project})

    def _saved(self) -> dict | None:
        return _read_run_file(self.run_dir / WANDB_FILE)

    def write(self, m: dict) -> None:
        metrics = _scalars(m, depth=0)
        if m.get("eval"):
            metrics["success_rate"] = float(m["eval"]["rate"])
        self.run.log(metrics, step=int(m.get("round", 0)))

    def summary(self, s: dict) -> None:
        self.run.summary.update({f"summary.{k}": v for k, v in _scalars(s).items()})

    def close(self, status: str = "FINISHED") -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


BACKENDS = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": Wandb}


def open_backends(run_dir: Path, cfg: dict | None) -> list:
    """The run's tracking backends (``cfg`` None: TensorBoard only, as before the key existed)."""
    names = (cfg or {}).get("logging.backends", ["tensorboard"])
    return [BACKENDS[b](run_dir, cfg or {}) for b in names]


def log_summary(run_dir: Path, cfg: dict, summary: dict) -> None:
    """Log a summary completed after the run's writer closed (the fresh final evaluation) into
    the run's MLflow and W&B runs, where it has them (the same runs, reopened)."""
    for name, cls, file in (("mlflow", MLflow, RUN_FILE), ("wandb", Wandb, WANDB_FILE)):
        if name in cfg.get("logging.backends", []) and (Path(run_dir) / file).exists():
            b = cls(run_dir, cfg)
            b.summary(summary)
            b.close()
