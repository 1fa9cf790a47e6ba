"""The reward service's accounting with a fake task (unit level): budget, dedupe, errors, rate limit."""

import importlib.util
import sqlite3
import time
from pathlib import Path

import pytest

from banel_ray import reward_plugins as oracles
from banel_ray import tasks
from banel_ray.actors.ledger import SCHEMA_VERSION, Ledger, sample_key
from banel_ray.actors.reward_service import RewardService, TokenBucket
from banel_ray.reward_plugins import CallableTask, FlakyOracle, parity
from banel_ray.tasks.base import Task

from helpers import batch, run_threads


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
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "oracles"


def flaky(tmp_path, budget, spec=None, name="f.sqlite", **kw):
    spec = {"kind": "flaky", "latency_s": 0.0, **(spec or {})}
    kw.setdefault("backoff_s", 0.0)
    return RewardService(CALLABLE, {"oracle": spec}, str(tmp_path / name), budget, **kw)


def max_in_window(starts, window):
    """Most evaluations started in any window of ``window`` seconds (starts: (time, n))."""
    ts = sorted(t for t, n in starts for _ in range(n))
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] < t - window + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


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


def test_two_callers_same_new_sample_pay_once(tmp_path):
    o = flaky(tmp_path, 5, {"latency_s": 0.3})
    res = run_threads(lambda i: o.pay(1, batch([(7, 8)])), 2)
    assert sorted(r.paid for r in res) == [0, 1] and sorted(r.waited for r in res) == [0, 1]
    assert [r.rewards for r in res] == [[1], [1]] and o.oracle.calls == 1 and o.spent() == 1


def test_rate_limit_holds_across_threads(tmp_path):
    rate, burst = 25.0, 2.0
    o = flaky(tmp_path, 100, {"latency_s": 0.01}, rate_limit=rate, burst=burst, max_in_flight=4)
    t = time.monotonic()
    run_threads(lambda i: o.pay(1, batch([(i, j) for j in range(8)])), 5)  # 40 evaluations
    elapsed = time.monotonic() - t
    st = o.stats()
    assert sum(n for _, n in st["starts"]) == 40
    for w in (0.2, 0.5, 1.0):
        assert max_in_window(st["grants"], w) <= burst + rate * w + 1e-6  # the limiter's grants
        assert max_in_window(st["starts"], w) <= burst + rate * w + 1  # calls, +1 thread jitter
    assert elapsed >= (40 - burst) / rate * 0.98


def test_flaky_errors_and_timeouts_are_not_negatives_nor_charged(tmp_path):
    spec = {"latency_s": 0.005, "failure_rate": 0.4, "timeout_rate": 0.15, "hang_s": 0.5, "seed": 3}
    o = flaky(tmp_path, 50, spec, retries=2, timeout_s=0.15, max_in_flight=4)
    r = o.pay(1, batch([(i, 1) for i in range(24)]))
    rows = {row["sample"]: row for row in o.ledger_rows()}
    assert r.errors > 0 and o.stats()["timeouts"] > 0
    for s, rew in zip(r.samples, r.rewards):
        if rows[s]["status"] == "ok":
            assert rew == parity(s) and rows[s]["charged"] == 1
        else:
            assert rew is None and rows[s]["status"] == "error" and rows[s]["reward"] is None
            assert rows[s]["charged"] == 0 and rows[s]["error"]
            # both tries called the oracle, or the last found no free slot (then it made no call,
            # and a call not made is not counted as an attempt; likely on a loaded machine)
            assert rows[s]["attempt"] == 2 or "no oracle slot free" in rows[s]["error"], rows[s]
    ok = sum(row["status"] == "ok" for row in rows.values())
    assert r.paid == ok == o.spent() and r.errors == 24 - ok
    # an uncharged error is evaluated again (and charged then) when asked for again
    o.oracle.failure_rate = o.oracle.timeout_rate = 0.0
    again = o.pay(2, batch([(i, 1) for i in range(24)]))
    assert again.paid == 24 - ok and again.rewards == [parity((i, 1)) for i in range(24)]
    assert o.spent() == 24


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


def test_a_service_whose_driver_has_exited_sends_no_further_call(oracle, tmp_path):
    """On Ray a killed run's reward service lives on for seconds and, before, kept calling the
    oracle for the rest of its pay call. Given its driver's token it sends nothing once the driver
    has exited: the call's rows stay pending, their attempt uncounted (never sent), and a later
    service (the resumed run) evaluates them, charging nothing twice."""
    import subprocess
    import sys

    from banel_ray.actors.reward_service import DriverGone
    from banel_ray.core import liveness

    drv = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        o = oracle(10, driver=liveness.token(drv.pid))
        assert o.pay(1, batch([(1,), (2,)])).paid == 2 and Parity.calls == 2  # the driver runs: calls go out
    finally:
        drv.kill()
    tok = o.driver
    for _ in range(200):  # SIGKILL lands in a moment; the exited child stays a zombie until reaped
        if not liveness.alive(tok):
            break
        time.sleep(0.025)
    assert not liveness.alive(tok)  # exited: a zombie, not yet reaped, is not alive either
    drv.wait()
    with pytest.raises(DriverGone, match="has exited; reward service .* sends no further oracle call"):
        o.pay(2, batch([(3,), (4,), (5,)]))
    assert Parity.calls == 2  # nothing sent
    rows = {r["sample"]: r for r in o.ledger_rows()}
    assert [rows[(k,)]["status"] for k in (3, 4, 5)] == ["pending"] * 3
    assert [rows[(k,)]["attempt"] for k in (3, 4, 5)] == [0] * 3 and o.spent() == 5
    o.ledger.close()
    again = oracle(10)  # the resumed run's service: pending rows evaluated once, charged once
    assert again.resolve_pending() == 3 and Parity.calls == 5 and again.spent() == 5
    assert again.accounting()["oracle_evaluations"] == 5  # every call counted, none uncounted
    again.ledger.close()
    blind = oracle(10, driver=tok)  # a driver not seen alive at the start (another pid namespace): not checked
    assert blind.driver is None and blind.pay(3, batch([(9,)])).paid == 1 and Parity.calls == 6


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
def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sample_oracle_sync_async_and_per_sample_failures():
    ex = _example("sample_oracle")
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
    ex = _example("batch_oracle")
    b = oracles.build({"kind": "batch", "fn": ex.rewards, "batch_size": 4})
    assert b.batch_size == 4 and b.rewards([(1, 2, 1), ()]) == [1, None]
    assert isinstance(oracles.build("banel_ray.reward_plugins:parity"), oracles.SampleOracle)
    assert isinstance(oracles.build("http://127.0.0.1:1/x"), oracles.HttpOracle)
    assert isinstance(oracles.build({"kind": "class", "cls": "banel_ray.reward_plugins:FlakyOracle"}), FlakyOracle)
    with pytest.raises(ValueError):
        oracles.build({"kind": "carrier-pigeon"})


def test_http_oracle_against_local_server(tmp_path):
    ex = _example("http_oracle")
    srv, url = ex.serve()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert oracles.HttpOracle(url, timeout_s=5).rewards([(5, 1), (1, 5)]) == [1, 0]
        o = RewardService(
            CALLABLE,
            {"oracle": {"kind": "http", "url": url, "timeout_s": 5, "batch_size": 2}},
            str(tmp_path / "h.sqlite"),
            10,
            backoff_s=0.0,
        )
        ex.Handler.fail_next, ex.Handler.requests = 1, 0  # a 503 first: retried
        r = o.pay(1, batch([(5, 1), (1, 5), (9, 2, 3)]))
        assert r.rewards == [1, 0, 1] and r.paid == 3 and r.errors == 0
        assert ex.Handler.requests == 3
        with pytest.raises(OSError):  # nothing listens there
            oracles.HttpOracle("http://127.0.0.1:1/rewards", timeout_s=0.5).rewards([(1,)])
        bad = RewardService(
            CALLABLE,
            {"oracle": {"kind": "http", "url": "http://127.0.0.1:1/r"}},
            str(tmp_path / "b.sqlite"),
            10,
            retries=2,
            backoff_s=0.0,
        )
        r = bad.pay(1, batch([(1,)]))
        assert r.rewards == [None] and r.errors == 1 and bad.spent() == 0
    finally:
        srv.shutdown()
        srv.server_close()


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


def test_examples_run(capsys):
    _example("sample_oracle").main()
    _example("batch_oracle").main()
    _example("http_oracle").main([])
    out = capsys.readouterr().out
    assert "paid 5" in out and "calls of sizes" in out and "rewards [1, 0, 1, 0]" in out


# ---- issue 15: hung calls, one writer, paid estimates ------------------------------------------------
def test_timed_out_calls_keep_their_slot_until_they_really_end(tmp_path):
    """Calls past timeout_s are failed attempts, but the oracle never sees more than max_in_flight
    calls at once (abandoned calls used to free their slot and pile up)."""
    spec = {"timeout_rate": 1.0, "hang_s": 0.4, "latency_s": 0.0}
    o = flaky(tmp_path, 50, spec, retries=3, timeout_s=0.05, max_in_flight=2)
    r = o.pay(1, batch([(i,) for i in range(8)]))  # 8 one-sample chunks, 3 attempts each, all hanging
    assert r.rewards == [None] * 8 and r.errors == 8 and o.spent() == 0
    assert o.oracle.max_in_flight <= 2  # what the user's oracle saw, hung calls included
    assert o.stats()["max_in_flight_seen"] <= 2 and o.stats()["timeouts"] >= 8
    errors = {row["error"] for row in o.ledger_rows()}
    assert all(e.startswith("TimeoutError") for e in errors)
    assert any("no oracle slot free" in e for e in errors)  # a caller that found every slot held
    assert o.ledger.attempts() == o.stats()["calls"] == o.oracle.calls  # every call made is counted, no more


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
