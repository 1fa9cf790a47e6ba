"""Each baseline on real Ray actors at tiny scale: the same budget, ledger and versions as BaNEL."""

import sqlite3

import pytest

from banel_ray import config as C

from helpers import golden, ledger_rows

# ---- each baseline on real actors: same budget, same ledger --------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


# random (no trainer) and rnd (the policy-gradient trainer with a bonus) by default; reinforce and
# count run the same actor code with another bonus, opt-in (-m slow) to keep this file short
@pytest.mark.parametrize(
    "method",
    ["random", "rnd", pytest.param("reinforce", marks=pytest.mark.slow), pytest.param("count", marks=pytest.mark.slow)],
)
def test_baseline_obeys_budget_and_ledger(tmp_path, ray_local, method):
    from banel_ray import report
    from banel_ray.runtime.job import run

    rd = tmp_path / method
    cfg = C.load(
        None,
        [
            f"method={method}",
            "rounds=3",
            "budget=60",
            "samples_per_round=25",
            "eval.samples=0",
            "sampler.backend=torch",
            f"run_dir={rd}",
            "pg.lr=0.001",
            "task=addition_attack_v1",  # the settings the golden ledgers were written with
        ],
    )
    s = run(cfg, rd)
    hist = report.read_metrics(rd)
    db = sqlite3.connect(str(rd / "ledger.sqlite"))
    rows = db.execute("SELECT key, status, charged, round, version FROM evaluations").fetchall()
    assert s["method"] == method
    assert s["nres"] == 60 and len(rows) == s["nres"] == s["ledger_rows"] == sum(m["paid"] for m in hist)
    assert len({r[0] for r in rows}) == len(rows) and all(r[1] == "ok" and r[2] == 1 for r in rows)
    assert [m["nres"] for m in hist] == [25, 50, 60]  # the budget binds inside round 3
    if method == "random":  # nothing learned: the samplers keep p0
        assert [m["sampler_versions"] for m in hist] == [[0], [0], [0]]
        assert {r[4] for r in rows} == {0}
    else:  # a new policy every round; each paid sample carries the version that drew it
        assert [m["sampler_versions"] for m in hist] == [[1], [2], [3]]
        assert {(r[3], r[4]) for r in rows} == {(1, 0), (2, 1), (3, 2)}
        assert all("kl_to_prior" in m and "bonus_mean" in m for m in hist)
    if method in ("rnd", "count"):
        assert hist[0]["bonus_mean"] > 0
    assert (rd / "summary.json").exists() and (rd / "checkpoints" / "LATEST").exists()
    assert ledger_rows(rd) == golden(f"baseline_{method}")  # as before the Runner refactor
