"""The reward service's accounting with a fake task (unit level): budget, dedupe, errors, rate limit."""

import sqlite3
import time

import pytest

from banel_ray import reward_plugins as oracles
from banel_ray import tasks
from banel_ray.actors.ledger import SCHEMA_VERSION, Ledger, sample_key
from banel_ray.actors.reward_service import RewardService, TokenBucket
from banel_ray.reward_plugins import CallableTask, FlakyOracle, parity
from banel_ray.tasks.base import Task

from helpers import batch, example_module, flaky, run_threads


class Parity(Task):
    """Reward 1 iff the sum of the tokens is odd; counts calls; can fail on demand."""

    calls = 0
    fail_next = 0
    free_evaluation = True  # a local reward: the evaluator may use it

    def __init__(self, **_):
        pass

    def rewards(self, completions):
        if Parity.fail_next:
            Parity.fail_next -= 1
            raise RuntimeError("oracle down")
        Parity.calls += len(completions)
        return [sum(c) % 2 for c in completions]


@pytest.fixture
def oracle(tmp_path, monkeypatch):
    monkeypatch.setitem(tasks.BUILTIN, "parity", f"{__name__}:Parity")
    Parity.calls, Parity.fail_next = 0, 0
    return lambda budget, **kw: RewardService("parity", {}, str(tmp_path / "l.sqlite"), budget, backoff_s=0.0, **kw)


def test_budget_is_a_hard_cap_and_duplicates_are_free(oracle):
    o = oracle(5)
    r = o.pay(1, batch([(1,), (2,), (1,), (3,)]))
    assert r.paid == 3 and r.rewards == [1, 0, 1, 1] and Parity.calls == 3
    r = o.pay(2, batch([(1,), (4,), (5,), (6,), (7,)], version=1))
    assert r.paid == 2 and r.rewards == [1, 0, 1, None, None]
    assert o.spent() == 5 and Parity.calls == 5
    rows = o.ledger_rows()
    assert [r["sample"] for r in rows] == [(1,), (2,), (3,), (4,), (5,)]
    assert [r["version"] for r in rows] == [0, 0, 0, 1, 1]
    assert o.pay(3, batch([(8,)])).rewards == [None]


def test_oracle_error_is_not_a_negative_and_not_charged(oracle):
    o = oracle(10, retries=2)
    Parity.fail_next = 2
    r = o.pay(1, batch([(1,), (2,)]))
    assert r.rewards == [None, None] and r.errors == 2 and r.paid == 0
    assert o.spent() == 0
    assert {row["status"] for row in o.ledger_rows()} == {"error"}


def test_retry_recovers(oracle):
    o = oracle(10, retries=3)
    Parity.fail_next = 1
    r = o.pay(1, batch([(1,), (2,)]))
    assert r.rewards == [1, 0] and o.ledger_rows()[0]["attempt"] == 2


def test_evaluations_are_the_evaluators_and_never_nres(oracle, monkeypatch):
    from banel_ray.actors.evaluator import Evaluator

    o = oracle(3)
    ev = Evaluator("parity", {}, threads=0)
    r = ev.estimate(batch([(1,), (2,), (3,), (5,)]), batch([(7,)]))
    assert r.k == 4 and r.n == 5 and r.patterns == {"success": 4} and r.successes[0] == (1,)
    assert ev.stats()["eval_calls"] == 1 and ev.stats()["eval_draws"] == 5
    assert o.spent() == 0 and o.ledger_rows() == []


def test_ledger_is_durable_and_unique(tmp_path):
    led = Ledger(tmp_path / "x.sqlite")
    row = {"key": sample_key((1, 2)), "sample": (1, 2), "reward": 0}
    led.record([row])
    led.record([row])  # a retried write cannot pay twice
    led.close()
    again = Ledger(tmp_path / "x.sqlite")
    assert again.spent() == 1 and again.rows()[0]["sample"] == (1, 2)
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_token_bucket_limits_rate():
    now = [0.0]
    bucket = TokenBucket(10.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    bucket.take(51)
    assert now[0] == pytest.approx(5.0)  # 1 burst token + 50 at 10/s


# ---- concurrency, reservations, restarts (in process, threads) ------------------------------------

CALLABLE = "banel_ray.reward_plugins:CallableTask"


def test_concurrent_callers_never_exceed_budget_and_pay_once(tmp_path):
    o = flaky(tmp_path, 12, {"latency_s": 0.01}, max_in_flight=3)
    # 8 callers, overlapping batches: 20 distinct samples in all, each asked for by 2-4 callers
    res = run_threads(lambda i: o.pay(1, batch([(j,) for j in range(2 * i, 2 * i + 6)])), 8)
    rows = o.ledger_rows()
    assert o.spent() == 12 == len(rows) and sum(r.paid for r in res) == 12
    assert all(n == 1 for n in o.oracle.seen.values())  # each sample sent to the oracle once
    assert o.oracle.max_in_flight <= 3 and o.stats()["max_in_flight_seen"] <= 3
    for r in res:
        for s, rew in zip(r.samples, r.rewards):
            assert rew is None or rew == parity(s)
    assert sum(rew is not None for r in res for rew in r.rewards) >= 12
    assert all(r["status"] == "ok" for r in rows)


def test_charge_errors_charges_each_failed_sample_once(tmp_path):
    o = flaky(tmp_path, 50, {"failure_rate": 1.0}, retries=3, charge_errors=True)
    r = o.pay(1, batch([(1,), (2,), (3,)]))
    assert r.rewards == [None] * 3 and r.errors == 3 and r.paid == 3 == o.spent()
    assert o.oracle.calls == 9  # one sample per call, 3 attempts each; one NRE each
    again = o.pay(2, batch([(1,), (2,)]))  # charged errors are final: not sent again
    assert again.paid == 0 and o.oracle.calls == 9 and o.spent() == 3


def test_budget_exhaustion_with_errors_leaves_room_for_retries(tmp_path):
    o = flaky(tmp_path, 2, {"failure_rate": 1.0}, retries=1)
    assert o.pay(1, batch([(1,), (2,), (3,)])).unpaid == 1 and o.spent() == 0
    o.oracle.failure_rate = 0.0
    r = o.pay(2, batch([(3,), (2,), (1,)]))
    assert r.paid == 2 and r.rewards == [1, 0, None] and o.spent() == 2


def test_timeout_abandons_a_hung_call(tmp_path):
    o = flaky(tmp_path, 5, {"timeout_rate": 1.0, "hang_s": 2.0}, retries=2, timeout_s=0.1)
    t = time.perf_counter()
    r = o.pay(1, batch([(1,)]))
    assert time.perf_counter() - t < 1.0
    assert r.rewards == [None] and o.ledger_rows()[0]["error"].startswith("TimeoutError")
    assert o.stats()["timeouts"] == 2 and o.spent() == 0


def _dead_process_reservations(path, samples, budget=10):
    """What a process killed mid-call leaves: pending, charged rows."""
    led = Ledger(path)
    plan = led.reserve([(sample_key(s), s, 1, 0) for s in samples], budget, "dead-call", "dead-owner", lambda k: False)
    led.close()
    return plan


def test_restart_reevaluates_pending_rows_without_charging_twice(tmp_path):
    path = tmp_path / "f.sqlite"
    _dead_process_reservations(path, [(1,), (2,), (3,)])
    o = flaky(tmp_path, 4, name="f.sqlite")
    assert o.stats()["pending_at_start"] == 3 and o.spent() == 3 and o.remaining() == 1
    r = o.pay(2, batch([(2,), (4,), (5,)]))
    assert r.recovered == 1 and r.paid == 2 and r.unpaid == 1 and r.rewards == [0, 0, None]
    assert o.spent() == 4
    assert o.resolve_pending() == 2 and o.spent() == 4
    rows = {row["sample"]: row for row in o.ledger_rows()}
    assert {s: rows[s]["status"] for s in rows} == {(1,): "ok", (2,): "ok", (3,): "ok", (4,): "ok"}
    assert rows[(1,)]["round"] == 1 and rows[(2,)]["attempt"] == 1


def test_restart_with_charge_rule_marks_sent_pending_rows_lost_and_releases_the_rest(tmp_path):
    path = tmp_path / "f.sqlite"
    _dead_process_reservations(path, [(1,), (2,)])
    led = Ledger(path)
    led.count_attempts([sample_key((1,))])  # (1,) was sent before the crash, (2,) never was
    led.close()
    o = flaky(tmp_path, 4, name="f.sqlite", pending_rule="charge")
    st = o.stats()
    assert (st["pending_at_start"], st["lost_at_start"], st["released_at_start"]) == (2, 1, 1)
    r = o.pay(2, batch([(1,), (3,)]))
    assert r.rewards == [None, 1] and r.paid == 1 and o.spent() == 2 and o.oracle.calls == 1
    assert [row["status"] for row in o.ledger_rows()] == ["lost", "ok"]
    with pytest.raises(ValueError):
        flaky(tmp_path, 4, pending_rule="nope")


def test_liveness_names_a_process_by_host_pid_and_start_time(tmp_path):
    import os
    import socket

    from banel_ray.core import liveness

    me = liveness.token()
    assert liveness.alive(me) and liveness.alive(None) and liveness.alive("")
    host, pid, start = me.split(":")
    assert host == socket.gethostname() and int(pid) == os.getpid() and start
    parent = liveness.token(os.getppid())
    assert liveness.alive(parent)
    assert not liveness.alive(parent.rsplit(":", 1)[0] + ":1")  # the pid, given to a later process
    assert liveness.alive(f"another-host-{host}:{os.getppid()}:1")  # another host: not known, alive
    assert not liveness.alive(f"{host}:{2**22 + 12345}:")  # no such process


def test_a_retried_call_reports_the_same_paid_count(tmp_path):
    o = flaky(tmp_path, 10)
    first = o.pay(1, batch([(1,), (2,)]), call_id="task-1")
    again = o.pay(1, batch([(1,), (2,)]), call_id="task-1")  # e.g. a Ray task retry
    other = o.pay(1, batch([(1,), (2,)]))
    assert first.paid == again.paid == 2 and other.paid == 0 and other.reused == 2
    assert o.oracle.calls == 2


def test_version1_ledger_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE evaluations (seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT UNIQUE NOT NULL, sample TEXT NOT NULL, reward INTEGER, status TEXT NOT NULL,
        charged INTEGER NOT NULL, round INTEGER, version INTEGER, attempt INTEGER, error TEXT,
        time REAL NOT NULL);""")
    db.execute(
        "INSERT INTO evaluations (key, sample, reward, status, charged, round, version, attempt, time) "
        "VALUES (?, '[5]', 1, 'ok', 1, 1, 0, 1, 0.0)",
        (sample_key((5,)),),
    )
    db.commit()
    db.close()
    o = flaky(tmp_path, 3, name="old.sqlite")
    assert o.ledger.schema_version() == SCHEMA_VERSION
    r = o.pay(2, batch([(5,), (6,)]))
    assert r.rewards == [1, 0] and r.paid == 1 and o.spent() == 2 and o.oracle.calls == 1
    assert {"call_id", "owner", "updated"} <= set(o.ledger_rows()[0])


def test_version3_ledger_gains_the_calls_table_and_spent_no_usd(tmp_path):
    """A ledger written before the ``calls`` table (schema 3) resumes with paid-call tracking on:
    its rows stay, it had spent 0 USD, and new calls are recorded and capped."""
    path = tmp_path / "v3.sqlite"
    old = Ledger(path, owner="old")
    old.record([{"key": sample_key((5,)), "sample": (5,), "reward": 1, "round": 1}])
    old.db.execute("DROP TABLE calls")
    old.db.execute("PRAGMA user_version=3")
    old.close()
    o = flaky(tmp_path, 3, name="v3.sqlite", cost_per_call=0.5, budget_usd=1.0)
    assert o.ledger.schema_version() == SCHEMA_VERSION == 5 and o.cost_usd() == 0.0
    r = o.pay(2, batch([(5,), (6,), (7,)]))
    assert r.rewards[0] == 1 and r.paid == 2 and o.cost_usd() == 1.0 and not o.can_afford_call()
    assert [c["status"] for c in o.ledger.calls()] == ["done", "done"] and o.spent() == 3


def test_invalid_rewards_are_errors(tmp_path, monkeypatch):
    o = RewardService(
        CALLABLE,
        {"oracle": {"kind": "batch", "fn": lambda s: [2, "x", None, 1]}},
        str(tmp_path / "l.sqlite"),
        10,
        retries=1,
        backoff_s=0.0,
    )
    r = o.pay(1, batch([(1,), (2,), (3,), (4,)]))
    assert r.rewards == [None, None, None, 1] and r.errors == 3 and o.spent() == 1
    assert "invalid reward 2" in o.ledger_rows()[0]["error"]


# ---- plug-in kinds ----------------------------------------------------------------------------------


def test_sample_oracle_sync_async_and_per_sample_failures():
    ex = example_module("sample_oracle")
    assert oracles.build(ex.reward).rewards([(3, 4), (1,)]) == [1, 0]
    a = oracles.build({"kind": "sample", "fn": ex.reward_async})
    assert a.is_async and a.batch_size == 1 and a.rewards([(7,), (1,), (14,)]) == [1, 0, 1]

    def boom(s):
        if s == (2,):
            raise KeyError("no")
        return 1

    out = oracles.SampleOracle(boom).rewards([(1,), (2,)])
    assert out[0] == 1 and isinstance(out[1], KeyError)
    with pytest.raises(KeyError):
        oracles.SampleOracle(boom).rewards([(2,)])


def test_batch_oracle_and_specs():
    ex = example_module("batch_oracle")
    b = oracles.build({"kind": "batch", "fn": ex.rewards, "batch_size": 4})
    assert b.batch_size == 4 and b.rewards([(1, 2, 1), ()]) == [1, None]
    assert isinstance(oracles.build("banel_ray.reward_plugins:parity"), oracles.SampleOracle)
    assert isinstance(oracles.build("http://127.0.0.1:1/x"), oracles.HttpOracle)
    assert isinstance(oracles.build({"kind": "class", "cls": "banel_ray.reward_plugins:FlakyOracle"}), FlakyOracle)
    with pytest.raises(ValueError):
        oracles.build({"kind": "carrier-pigeon"})


def test_callable_task_delegates_to_its_base(tmp_path):
    t = tasks.build(CALLABLE, {"oracle": "banel_ray.reward_plugins:parity", "base": "addition_attack"})
    assert isinstance(t, CallableTask) and t.prompt == t.base.prompt and t.eos_id == t.base.eos_id
    assert t.render((1, 2)) == t.base.render((1, 2)) and t.rewards([(1,), (2,)]) == [1, 0]
    bare = CallableTask(oracle=parity, evaluator={"kind": "sample", "fn": lambda s: 1})
    assert bare.evaluation_rewards([(2,)]) == [1]
    with pytest.raises(ValueError):
        bare.prepare()
    paid_only = CallableTask(oracle=parity)  # no evaluator: estimates never call the paid oracle
    assert not paid_only.free_evaluation and bare.free_evaluation
    with pytest.raises(RuntimeError, match="never call the paid"):
        paid_only.evaluation_rewards([(1,)])


# ---- issue 15: hung calls, one writer, paid estimates ------------------------------------------------


def test_every_oracle_call_is_counted_in_the_ledger(tmp_path):
    spec = {"failure_rate": 0.5, "seed": 4}
    o = flaky(tmp_path, 30, spec, retries=3)
    o.pay(1, batch([(i, 2) for i in range(12)]))
    assert o.oracle.calls == o.stats()["calls"] == o.ledger.attempts() == o.accounting()["oracle_evaluations"]
    assert o.accounting()["oracle_errors"] == sum(r["status"] == "error" for r in o.ledger_rows())


def test_the_default_timeout_is_finite():
    from banel_ray.config import FIELDS, SECTIONS

    assert 0 < FIELDS["oracle.timeout_s"].default < float("inf") and SECTIONS["oracle"]().timeout_s > 0


def test_a_stale_reward_service_is_refused_and_calls_its_oracle_no_more(tmp_path):
    from banel_ray.actors.ledger import StaleWriter

    old = flaky(tmp_path, 10, name="one.sqlite")
    old.pay(1, batch([(1,)]))
    new = flaky(tmp_path, 10, name="one.sqlite")  # a resumed run's service opens the same ledger
    with pytest.raises(StaleWriter):
        old.pay(2, batch([(2,), (3,)]))
    assert old.oracle.calls == 1  # refused before calling its oracle
    assert new.pay(2, batch([(2,), (3,)])).paid == 2 and new.spent() == 3
    assert [r["owner"] for r in new.ledger_rows()] == [old.owner, new.owner, new.owner]
    assert new.lease()["owner"] == new.owner


def test_paid_estimates_are_capped_counted_and_rate_limited(tmp_path):
    spec = {"failure_rate": 0.2, "seed": 1}
    o = flaky(tmp_path, 10, spec, rate_limit=200.0, burst=1.0)
    first = o.estimate(batch([(i, 7) for i in range(30)]), budget=50)
    second = o.estimate(batch([(i, 8) for i in range(30)]), budget=50)
    assert first.paid_oracle == 30 and second.paid_oracle == 20  # capped over the whole run
    assert o.estimate(batch([(1, 9)]), budget=50).paid_oracle == 0 and o.eval_remaining(50) == 0
    assert first.n + first.errors == 30 and first.errors > 0  # a failed draw is left out, not a 0
    assert first.k == sum(parity(s) for s in first.successes) and o.spent() == 0 and o.ledger_rows() == []
    assert o.oracle.calls == 50 == o.accounting()["eval_paid"] == sum(n for _, n in o.stats()["grants"])
    reopened = flaky(tmp_path, 10, spec)  # the cap is in the ledger: a resumed run keeps it
    assert reopened.eval_remaining(50) == 0
