"""One BaNEL run as a Ray Tune trial: the real driver (``banel_ray.run.run``) on the trial's Ray
cluster, reporting every round with NREs as the progress axis and a checkpoint Tune can restore.

The actors the driver starts land in the trial's placement group (Tune captures child actors, and
the driver pins the oracle into the group), so ``trial_resources`` reserves exactly what a trial
uses and trials never oversubscribe the cluster.

A trial's run folder is ``<experiment>/runs/<trial_id>`` (ledger, metrics, round checkpoints);
with remote storage (``s3://``) it is staged on the trial's node and copied there by ``job.run``. On
restore, that folder is used when it is at least as far along as Tune's checkpoint (it then holds
every paid result, also of a round paid after the last report); otherwise (another node, or PBT
handing over another trial's state) the Tune checkpoint is unpacked into a fresh folder.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

from banel_ray import config as C
from banel_ray.core import remote
from banel_ray.core.checkpoint import LATEST
from banel_ray.core.run_folder import CONFIG, METRICS, RunFolder

CKPT_META = "tune_meta.json"
TUNE_ONLY = ("base", "runs_root", "trial_cpus")  # trial config entries that are not BaNEL keys


def banel_config(config: dict) -> dict:
    """The validated BaNEL config of a trial: ``config["base"]`` with the trial's dotted keys."""
    cfg = dict(config["base"])
    for k, v in config.items():
        if k not in TUNE_ONLY:
            C.override(cfg, k, v)
    return C.validate(cfg)


def trial_resources(config: dict):
    """A placement group: one bundle for the trial's driver, one for all the actors it starts.

    One actor bundle, not one per actor: actors placed with bundle_index -1 take the first bundle
    with room, so a 0.25-CPU oracle in a 0.5-CPU sampler bundle would leave a trainer no room.
    """
    from ray import tune

    from banel_ray.methods import get
    from banel_ray.runtime.job import cpus_needed

    c = banel_config(config)
    if c["runtime"] == "local":  # the whole run in the trial's own process: one CPU, no actors
        return tune.PlacementGroupFactory([{"CPU": max(1.0, config.get("trial_cpus", 0.25))}])
    cpu = cpus_needed(c)
    gpu = c["sampler.num_actors"] * c["sampler.num_gpus"] + len(get(c["method"]).trainer_roles) * c["trainer.num_gpus"]
    actors = {k: v for k, v in (("CPU", cpu), ("GPU", gpu)) if v > 0}
    return tune.PlacementGroupFactory([{"CPU": config.get("trial_cpus", 0.25)}] + ([actors] if actors else []))


def _round_of(run_dir: Path) -> int:
    run = RunFolder(run_dir)
    st = run.store().runner_state() if run.has_config() else None
    return st["round"] if st else 0


def pack(run_dir: Path, dest: Path, trial_id: str) -> None:
    """Copy what a resume needs (config, metrics, ledger, last round checkpoint) into ``dest``."""
    src_ck, dest_ck = RunFolder(run_dir).checkpoints(), RunFolder(dest).checkpoints()
    latest = (src_ck / LATEST).read_text().strip()
    dest_ck.mkdir(parents=True)
    shutil.copytree(src_ck / latest, dest_ck / latest)
    (dest_ck / LATEST).write_text(latest)
    for f in (CONFIG, METRICS):
        shutil.copy2(run_dir / f, dest / f)
    src, dst = sqlite3.connect(str(run_dir / "ledger.sqlite")), sqlite3.connect(str(dest / "ledger.sqlite"))
    with dst:
        src.backup(dst)  # consistent copy of a WAL database another process has open
    src.close()
    dst.close()
    (dest / CKPT_META).write_text(json.dumps({"trial_id": trial_id, "round": _round_of(run_dir)}))


def _aside(run_dir: Path) -> None:
    """Keep a folder that is not resumed (its ledger holds paid results) as <name>.old<N>."""
    run_dir.rename(run_dir.with_name(f"{run_dir.name}.old{len(list(run_dir.parent.glob(run_dir.name + '.old*')))}"))


def _restore_folder(run_dir: Path, trial_id: str) -> tuple[bool, int]:
    """Prepare ``run_dir`` from Tune's checkpoint if any. Returns (resume?, round Tune has seen)."""
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        if run_dir.exists():  # a restart without checkpoint: start over, keep the old folder aside
            _aside(run_dir)
        return False, 0
    with ckpt.as_directory() as d:
        meta = json.loads((Path(d) / CKPT_META).read_text())
        if meta["trial_id"] == trial_id and run_dir.exists() and _round_of(run_dir) >= meta["round"]:
            return True, meta["round"]  # our own folder is as far along: it has every paid result
        if run_dir.exists():
            _aside(run_dir)
        shutil.copytree(d, run_dir)
    return True, meta["round"]


def banel_trial(config: dict) -> None:
    """Tune function trainable: run BaNEL, ``tune.report`` each round with a checkpoint."""
    from ray import tune

    from banel_ray.algorithms.stop_rules import signals
    from banel_ray.runtime.job import run

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    cfg = banel_config(config)
    uri = remote.join(config["runs_root"], trial_id)  # remote storage: staged here, copied up by job.run
    run_dir = remote.staging_dir(uri) if remote.is_remote(uri) else Path(config["runs_root"]) / trial_id
    cfg["run_dir"] = uri if remote.is_remote(uri) else str(run_dir)
    resume, seen = _restore_folder(run_dir, trial_id)
    base_rate = {}

    def flat(m: dict) -> dict:
        out = signals(m)
        if not base_rate:
            st = RunFolder(run_dir).store().runner_state() or {}
            base_rate["v"] = (st.get("base") or {}).get("rate")
        if base_rate.get("v") is not None:
            out["base_success"] = base_rate["v"]
        return out

    if resume:  # rounds done in the folder but never reported (killed between the two): report now
        for m in RunFolder(run_dir).metrics():
            if seen < m["round"] <= _round_of(run_dir):
                tune.report(flat(m))

    def on_round(m: dict, rd: Path) -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            pack(rd, Path(tmp) / "c", trial_id)
            tune.report(flat(m), checkpoint=tune.Checkpoint.from_directory(str(Path(tmp) / "c")))
        return False

    run(cfg, run_dir, resume=resume, on_round=on_round)
