"""The map of issue 26 on a tiny grid: two cells, BaNEL and random search, one seed, two rounds on
a 256-string space. Run folders, exact finals, the report; a rerun skips the finished cells."""

import csv
import json

from tuning import planted_map

TINY = [
    *("--methods", "banel,random", "--seeds", "0", "--s", "1", "--e", "0"),
    *("--set", "rounds=2", "--set", "budget=100", "--set", "samples_per_round=25", "--set", "pool_size=50"),
    *("--set", "negative.epochs=2", "--set", "task_options.alphabet=4", "--set", "task_options.length=4"),
    *("--set", "task_options.prior_epochs=1"),
]


def test_a_tiny_map_writes_exact_runs_and_a_rerun_skips_finished_cells(tmp_path, capsys):
    out = tmp_path / "map"
    tiny = [*TINY, "--set", f"task_options.cache_dir={tmp_path / 'cache'}", "--out", str(out)]
    assert planted_map.main([*tiny, "--q", "1e-2", "--parallel", "2"]) == 0
    first = sorted((out / "runs").glob("*/*/summary.json"))
    assert [p.parent.name for p in first] == ["banel_s0", "random_s0"]
    stamps = {p: p.stat().st_mtime_ns for p in first}
    capsys.readouterr()

    # a second cell added: only its two runs start, the finished cell's are left alone
    assert planted_map.main([*tiny, "--q", "1e-2,1e-3"]) == 0
    said = capsys.readouterr().out
    assert "2 cells x 2 arms x 1 seeds: 2 runs to do" in said
    assert "start q0.01_s1_e0" not in said and "start q0.001_s1_e0/banel_s0" in said
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert len(list((out / "runs").glob("*/*/summary.json"))) == 4
    assert planted_map.main([*tiny, "--q", "1e-2,1e-3"]) == 0
    assert "0 runs to do" in capsys.readouterr().out

    # every final rate exact; the report from the run folders alone
    priors = json.loads((out / "priors.json").read_text())
    assert sorted(priors) == ["q0.001_s1_e0", "q0.01_s1_e0"]
    assert abs(priors["q0.001_s1_e0"]["base"] - 1e-3) < 1e-5  # s = 1, e = 0: the base is q
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert len(rows) == 4 and all(r["exact"] == "True" for r in rows)
    for r in rows:
        summary = json.loads((out / "runs" / r["cell"] / f"{r['arm']}_s0" / "summary.json").read_text())
        assert summary["final"]["exact"] and summary["nres"] <= 100
        assert abs(float(r["base"]) - priors[r["cell"]]["base"]) < 1e-6 * priors[r["cell"]]["base"]
    assert all(float(r["ratio"]) == 1.0 for r in rows if r["arm"] == "random")  # p0 never changes
    assert all(abs(float(r["q_exact"]) - priors[r["cell"]]["q"]) < 1e-9 for r in rows)  # the prior's exact q
    table = (out / "table.md").read_text()
    assert "| 0.01 | 1 | 0 |" in table and "| 0.001 | 1 | 0 |" in table and "vs random" in table
    assert (out / "heatmap_vs_best.png").stat().st_size > 0 and (out / "heatmap_vs_random.png").exists()
    assert planted_map.main(["--out", str(out), "--report-only"]) == 0
    assert capsys.readouterr().out.strip().startswith("| q | s | e |")
