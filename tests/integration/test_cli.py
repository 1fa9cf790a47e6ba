"""The command line refuses bad input in one line with exit 2, before anything starts; --help answers."""

import subprocess
import sys

import pytest

from helpers import assert_one_line_error


def _run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "banel_ray.run", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "budgett=5"], "unknown key 'budgett'"),
        (["--set", "budget=-1"], "'budget' must be >= 1"),
        (["--set", "sampler.backend=tensorrt"], "'sampler.backend' must be one of vllm, torch"),
        (["--set", "task=mnist_9"], "unknown task 'mnist_9'"),
        (["--config", "missing.yaml"], "config file not found: missing.yaml"),
        (["--resume", "no_such_run"], "not a run folder"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_cli_bad_input_one_line_exit_2(tmp_path, args, needle):
    r = _run(*args, "--set", f"run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(r, needle)
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()  # stopped before anything was written or started


def test_cli_help_lists_keys(tmp_path):
    r = _run("--help", cwd=tmp_path)
    assert r.returncode == 0
    for key in ("filter.factor", "negative.epochs", "sampler.backend", "--resume"):
        assert key in r.stdout


def test_evaluate_and_select_refuse_bad_input_in_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "banel_ray.evaluate", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(r, "is not a run folder (no config.json)")
    r = subprocess.run(
        [sys.executable, "-m", "tuning.select", "--experiment", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(r, "--experiment: folder not found")
