"""Configuration and bad input: one line naming the key and what is allowed, exit 2, no actor started."""
import subprocess
import sys
from pathlib import Path

import pytest

from banel_ray import config as C
from helpers import assert_one_line_error


def test_defaults_validate_and_set_overrides():
    cfg = C.load(None, ["filter.factor=4", "rounds=3", "generator.reset=true", "run_dir=123"])
    assert cfg["filter.factor"] == 4.0 and isinstance(cfg["filter.factor"], float)
    assert cfg["rounds"] == 3 and cfg["generator.reset"] is True
    assert cfg["run_dir"] == "123"


def test_exponent_without_dot_is_a_float():
    # YAML 1.1 reads '1e-3' as a string; a float key must still take it
    cfg = C.load(None, ["generator.lr=1e-3", "negative.lr=2E-4"])
    assert cfg["generator.lr"] == 1e-3 and cfg["negative.lr"] == 2e-4
    with pytest.raises(C.ConfigError, match="generator.lr"):
        C.load(None, ["generator.lr=fast"])


def test_yaml_nested_and_dotted(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("filter: {factor: 8}\nnegative.epochs: 3\ntask_options: {max_digits: 8}\n")
    cfg = C.load(str(p), ["task_options.max_digits=8"])
    assert cfg["filter.factor"] == 8.0 and cfg["negative.epochs"] == 3
    assert cfg["task_options"] == {"max_digits": 8}


@pytest.mark.parametrize("sets,needle", [
    (["filter.facter=2"], "unknown key 'filter.facter'; allowed: filter.end, filter.factor"),
    (["rounds=abc"], "'rounds' must be int, got 'abc'"),
    (["filter.factor=0.5"], "'filter.factor' must be >= 1.0, got 0.5"),
    (["mode=greedy"], "'mode' must be one of distill, sequential"),
    (["task=nope"], "unknown task 'nope'; allowed: addition_attack"),
    (["task_options.digits=3"], "unknown key 'task_options.digits' for task addition_attack"),
    (["task_options.solver=/no/such/dir"], "'task_options.solver' folder not found"),
    (["rounds"], "--set expects key.path=value"),
])
def test_bad_values_name_the_key(sets, needle):
    with pytest.raises(C.ConfigError) as e:
        C.load(None, sets)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(C.ConfigError, match="config file not found"):
        C.load(str(tmp_path / "none.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(C.ConfigError, match="must hold a mapping"):
        C.load(str(bad))


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "banel_ray.run", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["--set", "budgett=5"], "unknown key 'budgett'"),
    (["--set", "budget=-1"], "'budget' must be >= 1"),
    (["--set", "sampler.backend=tensorrt"], "'sampler.backend' must be one of vllm, torch"),
    (["--set", "task=mnist_9"], "unknown task 'mnist_9'"),
    (["--config", "missing.yaml"], "config file not found: missing.yaml"),
    (["--resume", "no_such_run"], "not a run folder"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
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
