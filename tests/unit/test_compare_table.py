"""``python -m banel_ray.compare``: the table's arithmetic and the run scheduler (faked runs)."""

import math
from pathlib import Path

from banel_ray import compare


def _rec(method, seed, base, best, final, found=0):
    est = lambda k: {"k": k, "n": 1000, "rate": k / 1000, "lo": 0.0, "hi": 1.0}  # noqa: E731
    return {
        "dir": f"{method}-{seed}",
        "method": method,
        "seed": seed,
        "budget": 100,
        "base": est(base),
        "best": est(best),
        "final": est(final),
        "best_round": 3,
        "nres": 100,
        "rounds": 3,
        "successes": found,
        "time_s": 10.0,
        "curve": [(3, 100, best / 1000)],
    }


def test_summary_rows_are_computed_from_the_records():
    recs = [
        _rec("banel", 0, 4, 40, 8, found=5),
        _rec("banel", 1, 6, 20, 6, found=1),
        _rec("rnd", 0, 4, 4, 4),
        _rec("rnd", 1, 6, 12, 6),
    ]
    rows = {r["method"]: r for r in compare.summarize(recs)}
    assert list(rows) == ["pretrained", "banel", "rnd"]  # METHODS order, pretrained first
    pre = rows["pretrained"]
    assert pre["seeds"] == 2 and math.isclose(pre["rate_mean"], 10 / 2000)  # each seed's base once
    assert pre["ci_lo"] < pre["rate_mean"] < pre["ci_hi"]
    b = rows["banel"]
    assert math.isclose(b["rate_mean"], 0.03) and math.isclose(b["rate_median"], 0.03)
    assert math.isclose(b["rate_std"], math.sqrt(2) * 0.01)
    assert math.isclose(b["improvement"], 0.03 / 0.005)  # mean best / mean base
    assert math.isclose(b["ratio_mean"], (10 + 20 / 6) / 2)  # per-seed best/base
    assert math.isclose(b["final_ratio_mean"], 1.5) and b["successes_paid"] == 3.0
    # 95% t-interval with 1 degree of freedom: mean +- 12.706 * sd / sqrt(2)
    assert math.isclose(b["ci_hi"] - b["rate_mean"], 12.7062 * 0.01, rel_tol=1e-4)
    assert math.isclose(rows["rnd"]["improvement"], 0.008 / 0.005)


def test_a_failed_run_is_resumed_from_its_checkpoint(tmp_path, monkeypatch):
    """The scheduler alone (child processes faked): a run that dies (e.g. OOM-killed) is started
    again with --resume, once per --retries; a run that keeps failing is reported, exit 1."""
    import argparse

    cmds = []

    class FakeProc:
        def __init__(self, cmd, **_):
            cmds.append(cmd)
            rd = (
                Path(cmd[cmd.index("--resume") + 1])
                if "--resume" in cmd
                else Path(next(c for c in cmd if c.startswith("run_dir=")).split("=", 1)[1])
            )
            (rd / "checkpoints").mkdir(parents=True, exist_ok=True)
            (rd / "checkpoints" / "LATEST").write_text("round_0001")
            # random succeeds at once, rnd when resumed, count never
            ok = rd.name == "random-s0" or (rd.name == "rnd-s0" and "--resume" in cmd)
            if ok:
                (rd / "summary.json").write_text("{}")
            self.rc = 0 if ok else 1

        def poll(self):
            return self.rc

    monkeypatch.setattr(compare.subprocess, "Popen", FakeProc)
    args = argparse.Namespace(config=None, set=[], parallel=2, retries=1, progress_every=1000)
    lines = []
    rc = compare.run_all(args, ["random", "rnd", "count"], [0], tmp_path, log=lines.append)
    text = "\n".join(lines)
    assert rc == 1
    assert "rnd seed 0: failed (exit 1), retry 1 of 1" in text and "rnd seed 0: resuming" in text
    assert "rnd seed 0: done" in text and "random seed 0: done" in text
    assert "count seed 0: FAILED (exit 1)" in text and "failed: count s0" in text
    assert sum("--resume" in c for c in cmds) == 2  # rnd once, count once; random never
