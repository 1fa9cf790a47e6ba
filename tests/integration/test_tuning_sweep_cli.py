"""Sweep files: a bad key is named in one error, and ``python -m tuning.sweep`` with a missing sweep
file is one line and exit 2 (a child process; the pure checks are in tests/unit/test_tuning_rules.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from banel_ray import config as C

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_file_errors_name_the_key(tmp_path):
    from tuning.sweep import load_sweep

    bad = {
        "searh: {}": "unknown sweep key 'searh'",
        "search: {filter.facter: [2]}": "unknown key 'filter.facter'",
        "search: {filter.factor: [0.5]}": "'filter.factor' must be >= 1.0",
        "scheduler: hyper": "'scheduler' must be one of fifo, asha, pbt",
        "stop_rules: [soon]": "unknown stop rule 'soon'",
        "pbt: {mutations: {generator.lr: [-1]}}": "'generator.lr' must be in [0.0, 1.0]",
    }
    for text, needle in bad.items():
        p = tmp_path / "s.yaml"
        p.write_text(text + "\n")
        with pytest.raises(C.ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            load_sweep(str(p), [])
    r = subprocess.run(
        [sys.executable, "-m", "tuning.sweep", "--config", str(tmp_path / "none.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert r.returncode == 2 and r.stderr.strip() == f"error: sweep file not found: {tmp_path / 'none.yaml'}"
