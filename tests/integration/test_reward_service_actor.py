"""The reward service as a Ray actor (real Ray, tiny scale): one budget, rate limit and concurrency cap for
all callers; a flaky oracle's accounting; a killed actor restarts with its ledger intact and the
retried call finishes the dead attempt's work without charging twice."""

import sqlite3
import sys
import time

import pytest
import ray

from banel_ray.actors.reward_service import RewardService
from banel_ray.reward_plugins import parity
from banel_ray.runtime.actors import ROLES

import helpers
from helpers import batch, run_threads

CALLABLE = "banel_ray.reward_plugins:CallableTask"


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    for mod in (sys.modules[__name__], helpers):  # tests/ is not on the workers' path
        ray.cloudpickle.register_pickle_by_value(mod)
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


def actor(path, budget, spec=None, **kw):
    spec = {"kind": "flaky", "latency_s": 0.0, **(spec or {})}
    kw.setdefault("backoff_s", 0.0)
    cls = ray.remote(**ROLES["reward_service"])(RewardService)
    return cls.options(num_cpus=0).remote(CALLABLE, {"oracle": spec}, str(path), budget, **kw)


@ray.remote(num_cpus=0)
def remote_caller(oracle, samples):
    return ray.get(oracle.pay.remote(1, batch(samples)))


def max_in_window(starts, window):
    ts = sorted(t for t, n in starts for _ in range(n))
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] < t - window + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_concurrent_callers_share_one_budget_and_pay_each_sample_once(tmp_path):
    o = actor(tmp_path / "l.sqlite", 15, {"latency_s": 0.02}, max_in_flight=3)
    # 8 callers (6 threads of the driver, 2 Ray tasks), overlapping batches: 22 distinct samples
    sets = [[(j,) for j in range(2 * i, 2 * i + 8)] for i in range(8)]
    refs = [remote_caller.remote(o, sets[6]), remote_caller.remote(o, sets[7])]
    res = run_threads(lambda i: ray.get(o.pay.remote(1, batch(sets[i]))), 6) + ray.get(refs)
    st = ray.get(o.stats.remote())
    rows = ray.get(o.ledger_rows.remote())
    assert ray.get(o.spent.remote()) == 15 == len(rows) and ray.get(o.remaining.remote()) == 0
    assert sum(r.paid for r in res) == 15 and st["evaluations"] == 15  # each sample sent once
    assert st["max_in_flight_seen"] <= 3
    assert len({r["sample"] for r in rows}) == 15 and all(r["status"] == "ok" for r in rows)
    for r in res:
        assert all(rew is None or rew == parity(s) for s, rew in zip(r.samples, r.rewards))
    ray.kill(o)


def test_call_rate_never_exceeds_the_limit(tmp_path):
    rate, burst = 10.0, 1.0
    o = actor(tmp_path / "l.sqlite", 100, {"latency_s": 0.05}, rate_limit=rate, burst=burst, max_in_flight=4)
    ray.get(o.spent.remote())
    t = time.monotonic()
    run_threads(lambda i: ray.get(o.pay.remote(1, batch([(i, j) for j in range(6)]))), 4)  # 24 NREs
    elapsed = time.monotonic() - t
    st = ray.get(o.stats.remote())
    assert sum(n for _, n in st["starts"]) == 24
    for w in (0.25, 0.5, 1.0, 2.0):
        assert max_in_window(st["grants"], w) <= burst + rate * w + 1e-6  # the limiter's grants
        assert max_in_window(st["starts"], w) <= burst + rate * w + 1  # calls, +1 thread jitter
    assert elapsed >= (24 - burst) / rate * 0.98
    ray.kill(o)


@pytest.mark.parametrize("charge", [False, True])
def test_flaky_oracle_accounting(tmp_path, charge):
    spec = {"latency_s": 0.01, "failure_rate": 0.35, "timeout_rate": 0.15, "hang_s": 0.6, "seed": 11}
    o = actor(tmp_path / "l.sqlite", 30, spec, retries=2, timeout_s=0.2, charge_errors=charge, max_in_flight=4)
    res = run_threads(lambda i: ray.get(o.pay.remote(1, batch([(i, j) for j in range(i, i + 8)]))), 4)
    rows = {r["sample"]: r for r in ray.get(o.ledger_rows.remote())}
    st = ray.get(o.stats.remote())
    ok = [r for r in rows.values() if r["status"] == "ok"]
    err = [r for r in rows.values() if r["status"] == "error"]
    assert err and st["timeouts"] > 0 and len(ok) + len(err) == len(rows)
    assert all(r["reward"] is None and r["charged"] == int(charge) for r in err)  # an error is not a 0
    assert all(r["reward"] == parity(r["sample"]) for r in ok)
    spent = ray.get(o.spent.remote())
    assert spent == len(ok) + (len(err) if charge else 0) <= 30
    assert sum(r.paid for r in res) == spent and sum(r.errors for r in res) == len(err)
    for r in res:
        for s, rew in zip(r.samples, r.rewards):
            assert rew == (rows[s]["reward"] if s in rows and rows[s]["status"] == "ok" else None)
    ray.kill(o)


def _count(path, status):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM evaluations WHERE status=?", (status,)).fetchone()[0]
    finally:
        db.close()


def test_killed_actor_restarts_with_its_ledger_and_budget_intact(tmp_path):
    path = tmp_path / "l.sqlite"
    o = actor(path, 6, {"latency_s": 0.5}, max_in_flight=1)
    ray.get(o.spent.remote())
    samples = [(1,), (2,), (3,), (4,)]
    ref = o.pay.remote(1, batch(samples), call_id="round-1")  # 4 calls of 0.5 s, one at a time
    deadline = time.time() + 20
    while _count(path, "ok") < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert _count(path, "ok") >= 1 and _count(path, "pending") >= 1
    ray.kill(o, no_restart=False)  # mid-call: rows pending, budget reserved
    res = ray.get(ref, timeout=60)  # Ray retries the task (same call_id) on the restarted actor
    st = ray.get(o.stats.remote())
    assert st["pending_at_start"] >= 1  # a new process, which found the reservations
    assert res.rewards == [1, 0, 1, 0] and res.paid == 4 and res.recovered == st["pending_at_start"]
    rows = ray.get(o.ledger_rows.remote())
    assert [r["sample"] for r in rows] == samples and all(r["status"] == "ok" for r in rows)
    assert ray.get(o.spent.remote()) == 4 and ray.get(o.remaining.remote()) == 2
    again = ray.get(o.pay.remote(2, batch(samples + [(5,), (6,), (7,)])))
    assert again.paid == 2 and again.reused == 4 and again.unpaid == 1
    assert ray.get(o.spent.remote()) == 6
    ray.kill(o)


def test_killed_actor_with_charge_rule_never_resends_a_pending_sample(tmp_path):
    path = tmp_path / "l.sqlite"
    o = actor(path, 6, {"latency_s": 0.5}, max_in_flight=1, pending_rule="charge")
    ray.get(o.spent.remote())
    ref = o.pay.remote(1, batch([(1,), (2,), (3,), (4,)]), call_id="round-1")
    deadline = time.time() + 20
    while _count(path, "ok") < 1 and time.time() < deadline:
        time.sleep(0.05)
    ray.kill(o, no_restart=False)
    res = ray.get(ref, timeout=60)
    st = ray.get(o.stats.remote())
    rows = ray.get(o.ledger_rows.remote())
    lost = [r for r in rows if r["status"] == "lost"]
    # sent before the kill: lost (charged, never re-sent); never sent: released, and sent only now
    assert lost and len(lost) == st["lost_at_start"] and all(r["attempt"] >= 1 for r in lost)
    assert st["pending_at_start"] == st["lost_at_start"] + st["released_at_start"]
    assert st["evaluations"] == st["released_at_start"]  # nothing sent twice
    assert all(r["reward"] is None and r["charged"] == 1 for r in lost)
    assert res.paid == 4 == ray.get(o.spent.remote())  # the same Ray task: its charges, marked
    by_sample = {r["sample"]: r["reward"] for r in rows}
    assert res.rewards == [by_sample[s] for s in [(1,), (2,), (3,), (4,)]] and res.rewards[0] == 1
    ray.kill(o)


# ---- issue 15: hung calls, one writer, an HTTP oracle behind the actor ------------------------------
def inside(handle, fn):
    """fn(the actor's RewardService), run inside the actor."""
    return ray.get(handle.__ray_call__.remote(fn))


def test_hung_calls_hold_their_slots_and_every_call_is_counted(tmp_path):
    spec = {"timeout_rate": 1.0, "hang_s": 0.5}
    o = actor(tmp_path / "l.sqlite", 50, spec, retries=2, timeout_s=0.05, max_in_flight=2)
    res = run_threads(lambda i: ray.get(o.pay.remote(1, batch([(i, j) for j in range(3)]))), 4)
    assert all(r.rewards == [None] * 3 and r.paid == 0 for r in res)
    assert inside(o, lambda s: s.oracle.max_in_flight) <= 2  # what the user's oracle saw
    calls, attempts = inside(o, lambda s: (s.oracle.calls, s.ledger.attempts()))
    assert calls == attempts > 0
    ray.kill(o)


def test_a_new_service_fences_the_old_one_on_the_same_ledger(tmp_path):
    """The resumed run's service takes the lease; the old actor (its driver gone) can no longer write."""
    path = tmp_path / "l.sqlite"
    old = actor(path, 10)
    assert ray.get(old.pay.remote(1, batch([(1,)]))).paid == 1
    new = actor(path, 10)
    ray.get(new.spent.remote())  # started: the lease is the new one's
    with pytest.raises(ray.exceptions.RayTaskError, match="StaleWriter"):
        ray.get(old.pay.remote(2, batch([(2,), (3,)])))
    assert inside(old, lambda s: s.oracle.calls) == 1  # refused before calling its oracle
    assert ray.get(new.pay.remote(2, batch([(2,), (3,)]))).paid == 2 and ray.get(new.spent.remote()) == 3
    rows = ray.get(new.ledger_rows.remote())
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"}
    ray.kill(old)
    ray.kill(new)


def test_an_http_oracle_behind_the_actor_refuses_a_redirect_to_another_host(tmp_path):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Other(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            data = json.dumps({"rewards": [1]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *a):
            pass

    class Redirect(Other):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{other.server_address[1]}/rewards")
            self.send_header("Content-Length", "0")
            self.end_headers()

    other, first = ThreadingHTTPServer(("127.0.0.1", 0), Other), ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for srv in (other, first):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{first.server_address[1]}/rewards"
        cls = ray.remote(**ROLES["reward_service"])(RewardService)
        o = cls.options(num_cpus=0).remote(
            CALLABLE,
            {"oracle": {"kind": "http", "url": url, "headers": {"Authorization": "Bearer s"}}},
            str(tmp_path / "h.sqlite"),
            10,
            retries=2,
            backoff_s=0.0,
        )
        r = ray.get(o.pay.remote(1, batch([(1,), (2,)])))
        rows = ray.get(o.ledger_rows.remote())
        assert r.rewards == [None, None] and ray.get(o.spent.remote()) == 0 and seen == []
        assert all("another host" in row["error"] for row in rows)
        ray.kill(o)
    finally:
        for srv in (other, first):
            srv.shutdown()
            srv.server_close()
