"""The Runner with in-process actors (no Ray): rounds, checkpoints, kill-and-resume, and resumed
policy-gradient state, on the shipped addition models at tiny scale (seconds each: they train, so
the integration tier)."""

import json
import sqlite3

import pytest

from banel_ray import config as C
from banel_ray import tasks
from banel_ray.runtime import runner as runner_mod
from banel_ray.runtime.actors import LocalRuntime
from banel_ray.runtime.runner import Runner

TINY = [
    "task=addition_attack_d8",  # the numbers below were measured on the 8-digit task's models
    "rounds=3",
    "budget=50",
    "samples_per_round=20",
    "pool_size=40",
    "eval.samples=40",
    "eval.every=2",
    "negative.epochs=1",
    "generator.epochs=1",
    "sampler.backend=torch",
    "runtime=local",
]


@pytest.fixture(scope="module")
def prior_dir():
    return tasks.build("addition_attack_d8", {}).prepare(progress=lambda s: None)


def run_local(prior_dir, run_dir, *sets, resume=False):
    cfg = C.load(None, TINY + [f"run_dir={run_dir}", *sets])
    r = Runner.build(cfg, run_dir, LocalRuntime(), prior_dir, log=lambda s: None)
    try:
        return r.run(resume=resume)
    finally:
        r.shutdown()


def ledger(run_dir):
    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    try:
        return db.execute(
            "SELECT sample, reward, status, charged, round, version FROM evaluations ORDER BY seq"
        ).fetchall()
    finally:
        db.close()


def test_rounds_pay_within_budget_and_each_role_writes_its_shard(tmp_path, prior_dir):
    s = run_local(prior_dir, tmp_path / "r")
    rows = ledger(tmp_path / "r")
    hist = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert s["nres"] == 50 == len(rows) and len({r[0] for r in rows}) == 50
    assert [m["nres"] for m in hist] == [20, 40, 50] and [m["sampler_versions"] for m in hist] == [[1], [2], [3]]
    assert {(r[4], r[5]) for r in rows} == {(1, 0), (2, 1), (3, 2)}  # samples carry their version
    assert [bool(m.get("eval")) for m in hist] == [False, True, True] and s["base"]["n"] == 40
    assert s["successes"] == sum(r[1] == 1 for r in rows) and s["eval_draws"] == 3 * 40
    ck = tmp_path / "r" / "checkpoints"
    man = json.loads((ck / "round_0003" / "manifest.json").read_text())
    assert (ck / "LATEST").read_text() == "round_0003" and man["version"] == 3 and man["complete"]
    assert (
        set(man["shards"]) == {"negative", "generator"} and man["generator_weights"] == "generator/weights.safetensors"
    )
    assert (ck / "round_0003" / "generator" / "weights.safetensors").exists()
    assert sorted(p.name for p in ck.glob("round_*")) == ["round_0002", "round_0003"]  # last 2 (+ evaluated)
    # the ledger is one self-contained file after the run (its write-ahead log folded in)
    assert (
        not (tmp_path / "r" / "ledger.sqlite-wal").exists()
        or (tmp_path / "r" / "ledger.sqlite-wal").stat().st_size == 0
    )


class Killed(Exception):
    pass


@pytest.mark.parametrize("point", ["mid_oracle:2", "mid_checkpoint:2"])
def test_killed_and_resumed_in_process_equals_uninterrupted(tmp_path, prior_dir, monkeypatch, point):
    full = run_local(prior_dir, tmp_path / "full")

    def crash(name, round_):
        if f"{name}:{round_}" == point:
            raise Killed(point)

    monkeypatch.setattr(runner_mod, "crash_point", crash)
    monkeypatch.setattr("banel_ray.core.checkpoint.crash_point", crash)
    with pytest.raises(Killed):
        run_local(prior_dir, tmp_path / "cut")
    monkeypatch.undo()
    s = run_local(prior_dir, tmp_path / "cut", resume=True)
    assert ledger(tmp_path / "cut") == ledger(tmp_path / "full")  # same samples, rewards, rounds, versions
    assert s["nres"] == full["nres"] and s["final"]["k"] == full["final"]["k"]
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("method", ["reinforce", "rnd", "count"])
def test_resumed_policy_gradient_continues_its_optimiser_and_bonus(tmp_path, prior_dir, method):
    """Resumed after round 2, rounds 3 and 4 draw exactly what an uninterrupted run draws: the
    weights, the AdamW moments and the bonus state all came back (round 3's update would differ
    with a fresh optimiser or bonus, and round 4's samples with it)."""
    sets = [
        f"method={method}",
        "eval.samples=0",
        "pg.lr=0.003",
        "rnd.coef=5",
        "count.coef=5",
        "rounds=4",
        "budget=80",
        "task=callable",
        "task_options.base=addition_attack",
        "task_options.oracle=banel_ray.reward_plugins:parity",
    ]  # a dense reward: every update moves
    run_local(prior_dir, tmp_path / "full", *sets)
    run_local(prior_dir, tmp_path / "part", *sets, "rounds=2")
    man = json.loads((tmp_path / "part" / "checkpoints" / "round_0002" / "manifest.json").read_text())
    assert set(man["shards"]) == {"policy"}
    shard = tmp_path / "part" / "checkpoints" / "round_0002" / "policy"
    assert (shard / "optimizer.safetensors").exists() and (shard / "policy.json").exists()
    cfg = C.load(None, TINY + [f"run_dir={tmp_path / 'part'}", *sets])
    r = Runner.build(cfg, tmp_path / "part", LocalRuntime(), prior_dir, log=lambda s: None)
    try:
        r.run(resume=True)
    finally:
        r.shutdown()
    assert ledger(tmp_path / "part") == ledger(tmp_path / "full")


def test_a_sequential_run_keeps_regions_and_never_distils(tmp_path, prior_dir):
    s = run_local(prior_dir, tmp_path / "seq", "mode=sequential", "rounds=2", "eval.every=0")
    hist = [json.loads(x) for x in (tmp_path / "seq" / "metrics.jsonl").read_text().splitlines()]
    assert hist[0]["pre_oracle_acceptance"] == 1.0 and hist[1]["regions"] == 2
    assert [m["sampler_versions"] for m in hist] == [[0], [0]] and s["method"] == "banel_sequential"
    man = json.loads((tmp_path / "seq" / "checkpoints" / "round_0002" / "manifest.json").read_text())
    assert set(man["shards"]) == {"negative"} and man["generator_weights"] is None
    assert len(list((tmp_path / "seq" / "checkpoints" / "round_0002" / "negative").glob("region_*"))) == 2
    # its fresh evaluation is of the accepted distribution (p0 through both regions), not of p0
    from banel_ray.evaluate import evaluate_round

    cfg = C.load(None, TINY + [f"run_dir={tmp_path / 'seq'}", "mode=sequential", "rounds=2", "eval.every=0"])
    (tmp_path / "seq" / "config.json").write_text(json.dumps(cfg))  # what banel_ray.run writes
    est = evaluate_round(tmp_path / "seq", 2, 100)
    assert est["n"] == 100 and est["drawn_from_prior"] > 100 and 0 < est["accepted_share"] < 0.6
    assert "drawn_from_prior" not in evaluate_round(tmp_path / "seq", 0, 50)  # round 0 is p0 itself


def test_posterior_calibration_without_enumeration_reads_thresholds_off_accepted_draws(
    tmp_path, prior_dir, monkeypatch
):
    """negative.region_calibration=posterior on a task that cannot enumerate its space: each region's
    threshold is read off draws that every earlier region accepts (the posterior's), pool_size of
    them, not off p0's draws, which the earlier regions would partly reject."""
    from banel_ray.actors.trainers import NegativeTrainer, regions_accept

    seen = []
    add_region = NegativeTrainer.add_region

    def record(self, factor, log_tau, *calib):
        pairs = [(self.task.prompt, tuple(s)) for b in calib for s in b.samples]
        ok = regions_accept(self.prior, self.regions, pairs, self.task.pad_id, self.score_cfg.length_norm)
        seen.append((len(pairs), float(ok.mean()) if pairs else 1.0))
        return add_region(self, factor, log_tau, *calib)

    monkeypatch.setattr(NegativeTrainer, "add_region", record)
    sets = ("mode=sequential", "eval.every=0", "rounds=2", "eval.samples=0")
    run_local(prior_dir, tmp_path / "post", *sets, "negative.region_calibration=posterior")
    # (calibrated on p0 instead, the same run's second pool has draws region 1 rejects: checked by hand)
    assert [n for n, _ in seen] == [40, 40] and [a for _, a in seen] == [1.0, 1.0]


def test_a_new_method_is_one_file_and_one_registry_line(tmp_path, prior_dir, monkeypatch):
    """CONTRIBUTING.md's example method (examples/methods/longest_first.py), registered by the test."""
    from pathlib import Path

    from banel_ray.core.method_registry import METHODS

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples" / "methods"))
    monkeypatch.setitem(METHODS, "longest_first", ("longest_first:LongestFirst", "pay the longest of 2m"))
    s = run_local(prior_dir, tmp_path / "lf", "method=longest_first", "eval.samples=0", "rounds=2")
    rows = ledger(tmp_path / "lf")
    base = run_local(prior_dir, tmp_path / "rs", "method=random", "eval.samples=0", "rounds=2")
    mean_len = lambda rs: sum(len(json.loads(r[0])) for r in rs) / len(rs)
    assert s["method"] == "longest_first" and s["nres"] == base["nres"] == 40
    assert mean_len(rows) > mean_len(ledger(tmp_path / "rs")) + 1  # it paid for the longest draws
    assert {r[5] for r in rows} == {0}  # it learns nothing: the samplers keep p0


def test_in_process_run_pays_for_what_the_ray_run_paid(tmp_path, prior_dir):
    """LocalRuntime and RayRuntime are the same run: the ledger of this in-process run equals the
    one the Ray version wrote before the Runner refactor (tests/integration/golden.json)."""
    from helpers import golden, ledger_rows

    cfg = C.load(
        None,
        [
            "rounds=3",
            "budget=100",
            "samples_per_round=40",
            "pool_size=120",
            "eval.samples=300",
            "eval.every=1",
            "negative.epochs=2",
            "generator.epochs=1",
            "sampler.backend=torch",
            "runtime=local",
            "task=addition_attack_v1",  # the settings the golden ledgers were written with
            f"run_dir={tmp_path / 'r'}",
        ],
    )
    prior_v1 = tasks.build("addition_attack_v1", {}).prepare(progress=lambda s: None)
    r = Runner.build(cfg, tmp_path / "r", LocalRuntime(), prior_v1, log=lambda s: None)
    try:
        r.run()
    finally:
        r.shutdown()
    assert ledger_rows(tmp_path / "r") == golden("distill_torch")


# ---- issue 15: a failing oracle, paid estimates, every call counted -----------------------------------
ORACLE_RUN = ["task=callable", "task_options.base=addition_attack", "eval.samples=0", "oracle.retries=1"]


def test_rounds_where_every_evaluation_failed_train_nothing_and_stop_the_run_resumably(tmp_path, prior_dir):
    from banel_ray.actors.reward_service import OracleDown

    down = ["task_options.oracle={kind: flaky, latency_s: 0, failure_rate: 1.0}", "oracle.max_failed_rounds=2"]
    logs = []
    cfg = C.load(None, TINY + ORACLE_RUN + down + [f"run_dir={tmp_path / 'r'}"])
    r = Runner.build(cfg, tmp_path / "r", LocalRuntime(), prior_dir, log=logs.append)
    try:
        with pytest.raises(OracleDown, match="every evaluation failed in 2 rounds in a row"):
            r.run()
        assert r.round == 0 and r.version == 0 and r.samplers.versions() == [0]  # nothing learnt
    finally:
        r.shutdown()
    assert sum("err  20" in line for line in logs) == 2  # the progress line shows the errors
    assert not (tmp_path / "r" / "checkpoints" / "LATEST").exists()
    assert not (tmp_path / "r" / "metrics.jsonl").exists() or not (tmp_path / "r" / "metrics.jsonl").read_text()
    rows = ledger(tmp_path / "r")
    assert len(rows) == 20 and {(x[2], x[3], x[1]) for x in rows} == {("error", 0, None)}  # uncharged, no reward
    # the oracle is fixed: the resumed run pays exactly what a run with a working oracle pays
    ok = ["task_options.oracle=banel_ray.reward_plugins:parity"]
    full = run_local(prior_dir, tmp_path / "full", *ORACLE_RUN, *ok)
    s = run_local(prior_dir, tmp_path / "r", *ORACLE_RUN, *ok, resume=True)
    assert ledger(tmp_path / "r") == ledger(tmp_path / "full") and s["nres"] == full["nres"] == 50
    assert s["oracle_errors"] == 0 and s["oracle_evaluations"] == 50 + 2 * 20  # both failed tries counted too


@pytest.mark.parametrize(
    "sets, per_sample",
    [
        ([], 9),  # the defaults: oracle.retries 3 x oracle.max_failed_rounds 3
        (["oracle.retries=2", "oracle.max_failed_rounds=2"], 4),
        (["oracle.retries=1", "oracle.max_failed_rounds=1"], 1),
        (["oracle.charge_errors=true"], 3),  # a failed sample is charged once and never sent again
    ],
)
def test_an_always_failing_oracle_is_called_retries_times_max_failed_rounds_per_sample(
    tmp_path, prior_dir, sets, per_sample
):
    """For an API that bills failed calls: how often the run calls it for one sample before it stops."""
    from banel_ray.actors.reward_service import OracleDown

    down = ["task_options.oracle={kind: flaky, latency_s: 0, failure_rate: 1.0}", "oracle.backoff_s=0"]
    cfg = C.load(None, TINY + ORACLE_RUN[:3] + down + sets + [f"run_dir={tmp_path / 'r'}"])
    assert C.FIELDS["oracle.retries"].default * C.FIELDS["oracle.max_failed_rounds"].default == 9
    r = Runner.build(cfg, tmp_path / "r", LocalRuntime(), prior_dir, log=lambda s: None)
    try:
        with pytest.raises(OracleDown):
            r.run()
        plugin = r.reward.instance.oracle  # the user's oracle object itself (batch_size 1: one sample a call)
    finally:
        r.shutdown()
    assert len(plugin.seen) == len({x[0] for x in ledger(tmp_path / "r")}) > 0
    assert set(plugin.seen.values()) == {per_sample} and plugin.calls == per_sample * len(plugin.seen)


def test_paid_estimates_stay_within_eval_paid_budget_and_every_oracle_call_is_counted(tmp_path, prior_dir):
    paid = ["task_options.oracle={kind: flaky, latency_s: 0}", "eval.samples=40", "eval.paid_budget=100"]
    cfg = C.load(None, TINY + ORACLE_RUN[:2] + paid + [f"run_dir={tmp_path / 'r'}"])
    r = Runner.build(cfg, tmp_path / "r", LocalRuntime(), prior_dir, log=lambda s: None)
    try:
        s = r.run()
        plugin = r.reward.instance.oracle  # the user's oracle object itself
    finally:
        r.shutdown()
    hist = report_metrics(tmp_path / "r")
    assert s["base"]["n"] == 40 and hist[1]["eval"]["n"] == 40 and s["final"]["n"] == 20  # 100 in all, then none
    assert s["eval_paid"] == 100 and s["eval_draws"] == 0 and s["nres"] == 50
    assert plugin.calls == s["oracle_evaluations"] + s["eval_paid"] == 50 + 100  # no call uncounted


def report_metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["nsr", "w_reinforce", "npo"])
def test_negative_sample_rl_obeys_the_budget_and_the_ledger(tmp_path, prior_dir, method):
    s = run_local(prior_dir, tmp_path / method, f"method={method}", "eval.samples=0", "pg.lr=0.003")
    rows = ledger(tmp_path / method)
    hist = [json.loads(x) for x in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    assert s["method"] == method and s["nres"] == 50 == len(rows) == len({r[0] for r in rows})
    assert [m["sampler_versions"] for m in hist] == [[1], [2], [3]] and all(m["pg_moved"] for m in hist)
    assert {(r[4], r[5]) for r in rows} == {(1, 0), (2, 1), (3, 2)}


def _hist(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def prior_d8():  # shipped in banel_ray/assets: nothing to train
    return tasks.build("addition_attack_d8", {}).prepare(progress=lambda s: None)


def test_npo_in_process_keeps_the_budget_and_moves_the_generator(tmp_path, prior_d8):
    import numpy as np

    from banel_ray.core.checkpoint import CheckpointStore
    from banel_ray.models import load_model, state_dict

    rd = tmp_path / "npo"
    s = run_local(prior_d8, rd, "task=addition_attack_d8", "method=npo", "eval.samples=0", "pg.lr=0.003")
    rows, hist = ledger(rd), _hist(rd)
    assert s["method"] == "npo" and s["nres"] <= 50 and s["nres"] == s["ledger_rows"] == len(rows)
    assert len(rows) == sum(m["paid"] for m in hist) == len({r[0] for r in rows})  # each row paid once
    assert all(r[2] == "ok" and r[3] == 1 for r in rows)
    assert [m["sampler_versions"] for m in hist] == [[1], [2], [3]] and all(m["pg_moved"] for m in hist)
    assert all(0 < m["npo_weight_mean"] < 2 and m["npo_loss"] > 0 for m in hist)
    assert hist[0]["npo_weight_mean"] == pytest.approx(1.0, abs=0.05)  # g_1 = p0 on the first step
    assert hist[-1]["kl_to_prior"] > 0
    version, weights = CheckpointStore(str(rd / "checkpoints")).generator()
    p0 = state_dict(load_model(prior_d8))
    assert version == 3 and any(not np.allclose(p0[k], weights[k]) for k in p0)  # the generator moved


@pytest.mark.parametrize("support", [["support.threshold=-2.7"], ["support.quantile=0.3", "support.calibration=400"]])
def test_the_support_control_drops_candidates_the_prior_finds_nearly_impossible(tmp_path, prior_dir, support):
    run_local(prior_dir, tmp_path / "s", "support.kind=token", *support, "eval.samples=0", "rounds=2")
    h = _hist(tmp_path / "s")
    assert all(0.05 < m["support_rejected"] < 0.95 for m in h)  # a strict floor: many candidates dropped
    assert all(m["kept"] == round(40 * (1 - m["support_rejected"]) / 2 + 0.49) for m in h)  # top 1/f of the rest
    if "support.quantile=0.3" in support:  # the floor read off the prior's own draws, the same every round
        assert len({m["support_threshold"] for m in h}) == 1 and h[0]["support_threshold"] < 0


def test_a_kl_anchor_keeps_the_generator_closer_to_the_prior(tmp_path, prior_dir):
    sets = ["eval.samples=0", "rounds=3", "generator.lr=0.003", "generator.epochs=3"]
    run_local(prior_dir, tmp_path / "free", *sets)
    run_local(prior_dir, tmp_path / "anchored", *sets, "generator.kl_coef=3.0")
    free, anchored = _hist(tmp_path / "free")[-1]["kl_to_prior"], _hist(tmp_path / "anchored")[-1]["kl_to_prior"]
    assert anchored < 0.7 * free, (anchored, free)


def test_the_prior_in_the_numerator_with_p_phi_from_the_prior(tmp_path, prior_dir):
    run_local(prior_dir, tmp_path / "p", "score.numerator=prior", "negative.init=prior", "eval.samples=0", "rounds=3")
    run_local(prior_dir, tmp_path / "g", "eval.samples=0", "rounds=3")
    p, g = _hist(tmp_path / "p"), _hist(tmp_path / "g")
    assert p[0]["score_q50"] == pytest.approx(g[0]["score_q50"])  # round 1: g_1 = p0, the same ratio
    assert p[2]["score_q50"] != pytest.approx(g[2]["score_q50"])  # later the numerator is p0, not g_t
    assert p[2]["gen_heldout_nll"] != pytest.approx(g[2]["gen_heldout_nll"])


def test_the_drift_floor_bounds_each_tokens_rise_over_the_prior(tmp_path, prior_dir):
    sets = ["eval.samples=0", "rounds=3", "generator.lr=0.003", "generator.epochs=3", "support.kind=drift"]
    run_local(prior_dir, tmp_path / "d", *sets, "support.max_ratio=0.3")
    h = _hist(tmp_path / "d")
    assert h[0]["support_rejected"] == 0.0  # round 1: g_1 = p0, no token has moved
    assert h[-1]["support_rejected"] > 0.05 and h[-1]["drift_max_ratio_q50"] > 0  # later: the ones that rose most go
    assert all(m["kept"] == round(40 * (1 - m["support_rejected"]) / 2 + 0.49) for m in h)


def test_prior_draws_mixed_into_distillation_keep_the_generator_closer(tmp_path, prior_dir):
    sets = ["eval.samples=0", "rounds=3", "generator.lr=0.003", "generator.epochs=3"]
    run_local(prior_dir, tmp_path / "free", *sets)
    run_local(prior_dir, tmp_path / "mix", *sets, "generator.prior_mix=2.0")
    free, mix = _hist(tmp_path / "free"), _hist(tmp_path / "mix")
    assert [m["prior_mixed"] for m in mix] == [2 * m["kept"] for m in mix] and free[0]["prior_mixed"] == 0
    # what the mixture is for: the final generator still writes what p0 writes. (The in-run
    # kl_to_prior is measured on the kept set, which the mixed run also fits, so it is not the test.)
    nll_free, nll_mix, nll_p0 = _nll_of_prior_draws(prior_dir, tmp_path / "free", tmp_path / "mix")
    assert nll_p0 < nll_mix < nll_free - 0.05, (nll_p0, nll_mix, nll_free)


def _nll_of_prior_draws(prior_dir, *run_dirs):
    """Mean NLL of 400 fixed p0 draws under each run's final generator, then under p0 itself."""
    from banel_ray.core.checkpoint import CheckpointStore
    from banel_ray.models import load_model, load_state, mean_nll, sample

    task = tasks.build("addition_attack_d8", {})
    p0 = load_model(prior_dir)
    pairs = [(task.prompt, c) for c in sample(p0, task.prompt, 400, task.max_new_tokens, task.eos_id, seed=11)]
    out = []
    for rd in run_dirs:
        g = load_model(prior_dir)
        load_state(g, CheckpointStore(str(rd / "checkpoints")).generator()[1])
        out.append(mean_nll(g, pairs, pad_id=task.pad_id))
    return (*out, mean_nll(p0, pairs, pad_id=task.pad_id))


def test_each_round_reports_the_filter_by_mode(tmp_path, prior_dir):
    run_local(prior_dir, tmp_path / "m", "eval.samples=0", "rounds=2")
    for m in _hist(tmp_path / "m"):
        assert sum(m["pool_modes"].values()) == pytest.approx(1.0) and sum(m["kept_modes"].values()) == pytest.approx(1)
        assert set(m["kept_modes"]) <= set(m["pool_modes"]) and "other" in m["pool_modes"]
        assert m["kept_min_logp0_q50"] < 0 and m["rejected_min_logp0_q50"] < 0


def test_a_tempered_negative_model_changes_what_is_kept(tmp_path, prior_dir):
    run_local(prior_dir, tmp_path / "k", "eval.samples=0", "rounds=2", "score.negative_power=0.0")
    run_local(prior_dir, tmp_path / "g", "eval.samples=0", "rounds=2")
    k, g = _hist(tmp_path / "k"), _hist(tmp_path / "g")
    # kappa 0: the score is log g alone (the most likely candidates), so kept ones are likelier under p0
    assert k[0]["kept_min_logp0_q50"] > g[0]["kept_min_logp0_q50"]
    assert k[0]["score_q50"] < 0 and g[0]["score_q50"] != pytest.approx(k[0]["score_q50"])


def test_generator_reset_distils_from_the_prior_each_round(tmp_path, prior_dir):
    sets = ["eval.samples=0", "rounds=3", "generator.lr=0.003", "generator.epochs=3"]
    run_local(prior_dir, tmp_path / "free", *sets)
    run_local(prior_dir, tmp_path / "reset", *sets, "generator.reset=true")
    free, reset = _hist(tmp_path / "free"), _hist(tmp_path / "reset")
    assert free[0]["kl_to_prior"] == pytest.approx(reset[0]["kl_to_prior"])  # round 1: both start from p0
    # later rounds: one round of training away from p0, not three (drift cannot accumulate in g)
    assert reset[-1]["kl_to_prior"] < 0.9 * free[-1]["kl_to_prior"], (reset, free)  # 0.86 and < 0.7 on two machines


@pytest.mark.parametrize(
    "sets, key, want",
    [
        (["filter.schedule=linear", "filter.factor=4", "filter.end=1.0"], "filter_value", [4.0, 2.5, 1.0]),
        (
            ["generator.schedule=linear", "generator.lr=3e-4", "generator.lr_end=1e-4"],
            "generator_lr",
            [3e-4, 2e-4, 1e-4],
        ),
    ],
)
def test_decay_schedules_move_the_filter_and_the_learning_rate_round_by_round(tmp_path, prior_dir, sets, key, want):
    run_local(prior_dir, tmp_path / "d", "eval.samples=0", "rounds=3", "budget=60", *sets)
    h = _hist(tmp_path / "d")
    assert [m[key] for m in h] == pytest.approx(want)
    if key == "filter_value":  # the quantile filter keeps the top 1/f of the pool: 40/4, 40/2.5, 40/1
        assert [m["kept"] for m in h] == [10, 16, 40]


def test_fresh_finals_and_a_stop_rule_round_never_spend_an_nre(tmp_path, prior_dir):
    from banel_ray.evaluate import evaluate_round
    from banel_ray.runtime.job import run

    rd = tmp_path / "f"
    cfg = C.load(
        None, TINY + [f"run_dir={rd}", "eval.final_samples=300", "stop.rule=fixed: 4 rounds", "rounds=5", "budget=100"]
    )
    s = run(cfg, rd)
    rows = ledger(rd)
    assert s["nres"] == len(rows) == 100  # the fresh evaluations paid nothing
    assert s["final_fresh"]["n"] == 300 and s["final_fresh"]["round"] == 5 and s["final_fresh"]["fresh"]
    assert s["base_fresh"]["reference"] and s["base_fresh"]["n"] == 1_000_000  # the prior's shipped measurement
    b0 = evaluate_round(rd, 0, 300)  # the prior on fresh draws: what a task without a measurement reports
    assert b0["n"] == 300 and b0["round"] == 0 and b0["version"] == 0 and b0["fresh"]
    assert s["stop_round"] == 4 and s["stop_fresh"]["round"] == 4 and s["stop_fresh"]["version"] == 4
    assert (rd / "checkpoints" / "round_0004").exists()  # the stop round keeps its checkpoint
    assert json.loads((rd / "summary.json").read_text())["improvement_final_fresh"] == pytest.approx(
        s["final_fresh"]["rate"] / s["base_fresh"]["rate"] if s["base_fresh"]["rate"] else float("inf")
    )
    again = evaluate_round(rd, 5, 300)  # one command re-checks a reported round: the same draws
    assert (again["k"], again["n"]) == (s["final_fresh"]["k"], s["final_fresh"]["n"])
    assert ledger(rd) == rows


def test_a_resume_whose_ledger_is_gone_is_refused_before_anything_is_paid(tmp_path, prior_dir):
    """Before: the checkpoint came back, the reward service opened a new, empty ledger and the
    resumed run paid again for samples the lost ledger had paid for."""
    from banel_ray.runtime.job import run

    rd = tmp_path / "r"
    run_local(prior_dir, rd, "rounds=1", "eval.samples=0")
    for f in rd.glob("ledger.sqlite*"):
        f.unlink()
    cfg = C.load(None, TINY + [f"run_dir={rd}", "rounds=2", "eval.samples=0"])
    with pytest.raises(C.ConfigError, match="ledger.sqlite is missing but the checkpoint .* records 20 NREs spent"):
        run(cfg, rd, resume=True)
    assert not list(rd.glob("ledger.sqlite*"))  # nothing paid, no new ledger


@pytest.mark.parametrize("damage", ["deleted", "replaced"])
def test_a_ledger_lost_before_the_first_checkpoint_is_refused_and_nothing_is_paid_twice(
    tmp_path, prior_dir, monkeypatch, damage
):
    """Killed in round 1's oracle calls (paid rows, no checkpoint yet), its ledger deleted or
    replaced by another run's: before, the resume started as if nothing was paid and paid again.
    Now it is refused before anything starts, and with the ledger put back it ends with the
    uninterrupted run's ledger."""
    import shutil

    from banel_ray.runtime.job import run

    sets = ["eval.samples=0"]
    full = tmp_path / "full"
    run_local(prior_dir, full, *sets)

    def crash(name, round_):
        if (name, round_) == ("mid_oracle", 1):
            raise Killed(name)

    rd = tmp_path / "r"
    monkeypatch.setattr(runner_mod, "crash_point", crash)
    with pytest.raises(Killed):
        run_local(prior_dir, rd, *sets)
    monkeypatch.undo()
    assert ledger(rd) and not (rd / "checkpoints" / "LATEST").exists()  # paid, never checkpointed
    kept = tmp_path / "kept.sqlite"
    shutil.copy2(rd / "ledger.sqlite", kept)
    if damage == "deleted":
        (rd / "ledger.sqlite").unlink()
    else:
        shutil.copy2(full / "ledger.sqlite", rd / "ledger.sqlite")  # another run's ledger, more rows than this one's
    before = sorted((p.name, p.stat().st_size) for p in rd.iterdir() if p.is_file())
    cfg = C.load(None, TINY + [f"run_dir={rd}", *sets])
    what = "is missing" if damage == "deleted" else "is not this run's ledger"
    with pytest.raises(C.ConfigError, match=f"ledger.sqlite {what}.* records that this run made ledger"):
        run(cfg, rd, resume=True)
    assert sorted((p.name, p.stat().st_size) for p in rd.iterdir() if p.is_file()) == before  # nothing paid
    shutil.copy2(kept, rd / "ledger.sqlite")  # put back, as the refusal asks
    run(cfg, rd, resume=True)
    assert ledger(rd) == ledger(full)


def test_a_run_holds_its_folders_lock_for_its_whole_life(tmp_path, prior_dir):
    """What every entry point (command line, compare, Tune trials) goes through: job.run. Another
    process sees the lock, and whose it is, while rounds run; nobody holds it once the run returned."""
    import os
    import subprocess
    import sys

    from banel_ray.runtime.job import run

    probe = "import sys; from banel_ray.core import runlock; print(runlock.holder(sys.argv[1]))"
    seen = []

    def on_round(m, rd):
        seen.append(subprocess.run([sys.executable, "-c", probe, str(rd)], capture_output=True, text=True).stdout)
        return False

    rd = tmp_path / "r"
    run(C.load(None, TINY + [f"run_dir={rd}", "rounds=1", "eval.samples=0"]), rd, on_round=on_round)
    assert [s.strip() for s in seen] == [str(os.getpid())]
    done = subprocess.run([sys.executable, "-c", probe, str(rd)], capture_output=True, text=True).stdout
    assert done.strip() == "None"


# ---- issue 24: experiment tracking (logging.backends) --------------------------------------------------
def mlflow_run(run_dir):
    from mlflow.tracking import MlflowClient

    saved = json.loads((run_dir / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=saved["tracking_uri"])
    return client, saved["run_id"], client.get_run(saved["run_id"])


def test_mlflow_logs_config_rounds_and_summary_and_a_resume_continues_the_same_run(tmp_path, prior_dir):
    rd = tmp_path / "r"
    track = ["logging.backends=tensorboard,mlflow", "eval.samples=0"]
    run_local(prior_dir, rd, *track, "rounds=2")
    client, run_id, run = mlflow_run(rd)
    assert saved_uri_is_in_the_run_folder(rd)
    assert run.info.status == "FINISHED" and run.data.params["budget"] == "50"
    assert run.data.params["logging.backends"] == '["tensorboard", "mlflow"]'
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "nres")] == [(1, 20.0), (2, 40.0)]
    assert run.data.metrics["summary.nres"] == 40.0 and run.data.metrics["summary.rounds"] == 2.0
    assert any(f.path == "summary.json" for f in client.list_artifacts(run_id))
    assert list((rd / "tensorboard").iterdir())  # TensorBoard beside it, as before
    # resumed with one more round: the same MLflow run, round 3 at step 3, the changed key a tag
    run_local(prior_dir, rd, *track, "rounds=3", resume=True)
    client, again, run = mlflow_run(rd)
    assert again == run_id and run.info.status == "FINISHED"
    steps = [(m.step, m.value) for m in client.get_metric_history(run_id, "nres")]
    assert steps == [(1, 20.0), (2, 40.0), (3, 50.0)] and run.data.metrics["summary.nres"] == 50.0
    assert run.data.params["rounds"] == "2" and run.data.tags["resumed.rounds"] == "3"
    assert len(client.search_runs([run.info.experiment_id])) == 1


def saved_uri_is_in_the_run_folder(rd):
    return json.loads((rd / "mlflow_run.json").read_text())["tracking_uri"] == (rd / "mlruns").resolve().as_uri()
