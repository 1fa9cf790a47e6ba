"""End to end on real Ray actors, a real vLLM engine, the shipped addition models, tiny scale."""

import json
import sqlite3
import time

import pytest
import ray

from banel_ray import config as C
from banel_ray import report
from banel_ray.runtime.job import run

from helpers import golden, ledger_rows


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


def tiny(tmp_path, name, *sets):
    base = [
        "rounds=3",
        "budget=100",
        "samples_per_round=40",
        "pool_size=120",
        "eval.samples=300",
        "eval.every=1",
        "negative.epochs=2",
        "generator.epochs=1",
        "task=addition_attack_v1",  # the settings the golden ledgers were written with
        f"run_dir={tmp_path / name}",
    ]
    return C.load(None, base + list(sets))


def ledger(run_dir):
    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    return db.execute(
        "SELECT key, sample, reward, status, charged, round, version FROM evaluations ORDER BY seq"
    ).fetchall()


def test_distill_run_with_vllm_keeps_budget_ledger_and_versions(tmp_path):
    cfg = tiny(tmp_path, "vllm")
    s = run(cfg, tmp_path / "vllm")
    hist = report.read_metrics(tmp_path / "vllm")
    rows = ledger(tmp_path / "vllm")
    assert s["nres"] <= cfg["budget"] and s["nres"] == 100  # the budget binds in round 3
    assert len(rows) == sum(m["paid"] for m in hist) == s["nres"] == s["ledger_rows"]
    assert all(r[3] == "ok" and r[4] == 1 for r in rows)
    assert len({r[0] for r in rows}) == len(rows)  # no sample paid twice
    assert [m["sampler_versions"] for m in hist] == [[1], [2], [3]]  # a new version every round
    assert {(r[5], r[6]) for r in rows} == {(1, 0), (2, 1), (3, 2)}  # samples carry their version
    assert [m["nres"] for m in hist] == [40, 80, 100]
    assert ledger_rows(tmp_path / "vllm") == golden("distill_vllm")  # as before the Runner refactor
    for f in ("summary.json", "metrics.jsonl", "config.yaml", "success_vs_nres.png", "checkpoints/LATEST"):
        assert (tmp_path / "vllm" / f).exists(), f
    assert list((tmp_path / "vllm" / "tensorboard").glob("events.*"))
    summary = json.loads((tmp_path / "vllm" / "summary.json").read_text())
    assert summary["base"]["n"] == 300 and summary["final"]["n"] == 300
    assert 0 <= summary["final"]["lo"] <= summary["final"]["rate"] <= summary["final"]["hi"] <= 1


@pytest.mark.parametrize("method", ["nsr", "w_reinforce", "npo"])
def test_negative_sample_rl_on_ray_actors_keeps_budget_and_ledger(tmp_path, method):
    cfg = tiny(tmp_path, method, f"method={method}", "sampler.backend=torch", "eval.every=0")
    s = run(cfg, tmp_path / method)
    rows, hist = ledger(tmp_path / method), report.read_metrics(tmp_path / method)
    assert s["method"] == method and cfg["runtime"] == "ray"
    assert s["nres"] == len(rows) == sum(m["paid"] for m in hist) == 100  # the budget binds, all in the ledger
    assert all(r[3] == "ok" and r[4] == 1 for r in rows) and len({r[0] for r in rows}) == len(rows)
    assert {r[5] for r in rows} == {1, 2, 3} and [m["sampler_versions"] for m in hist] == [[1], [2], [3]]


def test_sequential_mode_rejects_before_paying(tmp_path):
    cfg = tiny(tmp_path, "seq", "mode=sequential", "sampler.backend=torch", "rounds=2", "eval.every=0")
    s = run(cfg, tmp_path / "seq")
    hist = report.read_metrics(tmp_path / "seq")
    assert hist[0]["pre_oracle_acceptance"] == 1.0  # no region yet
    assert hist[1]["pre_oracle_acceptance"] < 0.9 and hist[1]["regions"] == 2
    assert [m["sampler_versions"] for m in hist] == [[0], [0]]  # Algorithm 1 never distils
    assert s["nres"] == 80 and s["method"] == "banel_sequential"
    assert ledger_rows(tmp_path / "seq") == golden("sequential_torch")  # as before the Runner refactor


def test_resume_continues_without_paying_twice_and_matches_uninterrupted(tmp_path):
    full = run(tiny(tmp_path, "full", "sampler.backend=torch", "eval.samples=0"), tmp_path / "full")
    part = tiny(tmp_path, "part", "sampler.backend=torch", "eval.samples=0", "rounds=2")
    run(part, tmp_path / "part")
    resumed = dict(part, rounds=3)
    s = run(resumed, tmp_path / "part", resume=True)
    a, b = ledger(tmp_path / "full"), ledger(tmp_path / "part")
    assert s["nres"] == full["nres"] == 100
    assert a == b  # same samples, rewards, rounds and versions, each paid once
    assert len(report.read_metrics(tmp_path / "part")) == 3


def test_killed_sampler_is_replaced_and_takes_current_weights(tmp_path):
    from banel_ray.runtime.actors import RayRuntime
    from banel_ray.runtime.runner import Runner
    from banel_ray.tasks import build

    cfg = tiny(tmp_path, "kill", "sampler.backend=torch", "eval.samples=0", "budget=1000")
    prior = build(cfg["task"], {}).prepare()
    drv = Runner.build(cfg, tmp_path / "kill", RayRuntime(), prior)
    try:
        drv.run_round()
        drv.checkpoint(evaluated=False)  # a restarted sampler then serves version 1 from the checkpoint
        sampler = drv.samplers.handles[0]
        m = drv.run_round()  # round 2: the sampler serves version 1, round 2 makes version 2
        assert m["sampler_versions"] == [2]
        ray.kill(sampler, no_restart=False)  # the actor dies; Ray restarts it, which loads version 1
        deadline = time.time() + 120
        while True:  # ray.kill is asynchronous: wait for the new process (pid changes)
            try:
                if ray.get(sampler.version.remote()) == 1:
                    break
            except ray.exceptions.RayActorError:
                pass
            assert time.time() < deadline
            time.sleep(0.2)
        m = drv.run_round()  # the runner hands the restarted sampler the current weights first
        assert m["sampler_versions"] == [3]
        rows = drv.reward.ledger_rows.remote()
        assert {r["version"] for r in ray.get(rows) if r["round"] == 3} == {2}
        # killed in the middle of a sampling call: the call is retried on the restarted actor
        ref = sampler.sample.remote(2000, 5)
        ray.kill(sampler, no_restart=False)
        out = ray.get(ref)
        assert len(out.samples) == 2000
    finally:
        drv.shutdown()
