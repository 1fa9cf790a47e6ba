"""The reward service in real time (threads, a local HTTP server, a child process): rate limits
across threads, hung and timed-out calls, a driver that exited, the example oracles run end to end
(the accounting with fake oracles is in tests/unit/test_reward_service.py)."""

import sys
import time

import pytest

from banel_ray import reward_plugins as oracles
from banel_ray import tasks
from banel_ray.actors.reward_service import RewardService
from banel_ray.reward_plugins import parity
from banel_ray.tasks.base import Task

from helpers import batch, example_module, flaky, run_threads

CALLABLE = "banel_ray.reward_plugins:CallableTask"


class Parity(Task):
    """Reward 1 iff the sum of the tokens is odd; counts calls."""

    calls = 0
    free_evaluation = True

    def __init__(self, **_):
        pass

    def rewards(self, completions):
        Parity.calls += len(completions)
        return [sum(c) % 2 for c in completions]


@pytest.fixture
def oracle(tmp_path, monkeypatch):
    monkeypatch.setitem(tasks.BUILTIN, "parity", f"{__name__}:Parity")
    Parity.calls = 0
    return lambda budget, **kw: RewardService("parity", {}, str(tmp_path / "l.sqlite"), budget, backoff_s=0.0, **kw)


def max_in_window(starts, window):
    """Most evaluations started in any window of ``window`` seconds (starts: (time, n))."""
    ts = sorted(t for t, n in starts for _ in range(n))
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] < t - window + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


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

    # no evaluation is sent before a grant covers it: the k-th start comes after the k-th grant.
    # (A bound on starts per window would not hold on a loaded machine, where a granted thread
    # may be scheduled late and its start fall in a window with later ones; CI saw 9 in 0.2 s.)
    def each(events):
        return sorted(t for t, n in events for _ in range(n))

    assert all(s >= g for s, g in zip(each(st["starts"]), each(st["grants"]), strict=True))
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
            # each try that called the oracle counts one attempt; a try that found no free slot
            # made no call and counts none (likely on a loaded machine, on either try)
            assert 1 <= rows[s]["attempt"] <= 2 or "no oracle slot free" in rows[s]["error"], rows[s]
    # no call goes uncounted: the ledger's attempts are exactly the samples sent to the oracle
    assert sum(row["attempt"] for row in rows.values()) == o.stats()["evaluations"]
    ok = sum(row["status"] == "ok" for row in rows.values())
    assert r.paid == ok == o.spent() and r.errors == 24 - ok
    # an uncharged error is evaluated again (and charged then) when asked for again
    o.oracle.failure_rate = o.oracle.timeout_rate = 0.0
    again = o.pay(2, batch([(i, 1) for i in range(24)]))
    assert again.paid == 24 - ok and again.rewards == [parity((i, 1)) for i in range(24)]
    assert o.spent() == 24


def test_a_service_whose_driver_has_exited_sends_no_further_call(oracle, tmp_path):
    """On Ray a killed run's reward service lives on for seconds and, before, kept calling the
    oracle for the rest of its pay call. Given its driver's token it sends nothing once the driver
    has exited: the call's rows stay pending, their attempt uncounted (never sent), and a later
    service (the resumed run) evaluates them, charging nothing twice."""
    import subprocess

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


def test_http_oracle_against_local_server(tmp_path):
    ex = example_module("http_oracle")
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


def test_examples_run(capsys):
    example_module("sample_oracle").main()
    example_module("batch_oracle").main()
    example_module("http_oracle").main([])
    out = capsys.readouterr().out
    assert "paid 5" in out and "calls of sizes" in out and "rewards [1, 0, 1, 0]" in out


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
