"""The map's grid, commands and comparisons (tuning/planted_map.py, planted_report.py), without runs."""

import math
from pathlib import Path

import pytest
import yaml

from banel_ray import config as C
from tuning import planted_map as M
from tuning import planted_report as R


def test_grid_expands_qs_and_values_survive_yaml():
    cells = M.grid("1e-2,1e-4", "0.1,1", "0,qs")
    assert len(cells) == 8 and M.Cell(1e-4, 0.1, 1e-4 * 0.1) in cells
    for c in cells:
        parsed = dict(C.parse_set(x) for x in c.sets())
        assert parsed == {"task_options.q": c.q, "task_options.s": c.s, "task_options.e": c.e}
    assert yaml.safe_load(M.yaml_float(1e-05)) == 1e-05
    with pytest.raises(C.ConfigError, match="--methods: unknown arm 'ppo'"):
        M.arms("banel,ppo")
    with pytest.raises(C.ConfigError, match="--q must be comma-separated numbers"):
        M.grid("x", "1", "0")


def test_a_new_run_gets_its_cell_and_a_started_one_is_resumed(tmp_path):
    cell = M.Cell(1e-3, 0.5, 0.0)
    cmd = M.command(tmp_path, cell, "count", 2, Path("c.yaml"), ["rounds=2"])
    assert cmd[-2:] == ["--set", f"run_dir={tmp_path / 'runs' / 'q0.001_s0.5_e0' / 'count_s2'}"]
    assert "method=count" in cmd and "task_options.q=0.001" in cmd and "seed=2" in cmd
    d = M.run_dir(tmp_path, cell, "count", 2)
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    assert M.command(tmp_path, cell, "count", 2, Path("c.yaml"), [])[-2:] == ["--resume", str(d)]
    assert M.pending(tmp_path, [cell], ["count"], [2]) == [(cell, "count", 2)]
    (d / "summary.json").write_text("{}")
    assert M.pending(tmp_path, [cell], ["count"], [2]) == []


def test_banel_over_the_best_baseline():
    def runs(*ratios):
        return {i: {"ratio": r} for i, r in enumerate(ratios)}

    cell = {"arms": {"banel": runs(4.0, 16.0), "reinforce": runs(2.0, 2.0), "random": runs(1.0, 1.0)}}
    assert R.best_baseline(cell) == "reinforce"
    cmp = R.compare(cell, "reinforce")
    assert cmp["value"] == pytest.approx(4.0) and (cmp["lo"], cmp["hi"]) == (2.0, 8.0)
    assert R.compare(cell, "npo") is None and math.isnan(R.gmean([0.0]))
    cell.update(q=1e-3, s=0.5, e=0.0, m=250, base=5e-4, q_exact=9.98e-4)
    row = R.table({"c": cell}, ["banel", "reinforce", "random"]).splitlines()[2]
    assert row.startswith("| 0.001 | 0.5 | 0 | 0.000998 | 5.000e-04 | 0.125 | 8x [4x, 16x] n=2 |")
    assert row.endswith("| 4x [2x, 8x] vs reinforce, 2/2 seeds ahead |")
    cell["arms"]["banel"] = runs(4.0, 1.0)  # ahead on one seed of two, behind in the mean
    assert R.compare(cell, "reinforce")["ahead"] == 1
    assert R.tally({"c": cell}).splitlines()[0] == (
        "e = 0: BaNEL ahead of the best baseline in 0 of 1 cells (geometric mean over seeds); on every seed in 0: none"
    )
    cell["arms"]["banel"] = runs(4.0, 16.0)
    assert "in 1 of 1 cells" in R.tally({"c": cell}) and "q=0.001 s=0.5 (0.12/round)" in R.tally({"c": cell})
