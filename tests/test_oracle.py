"""The oracle's accounting with a fake task (unit level): budget, dedupe, errors, rate limit."""
import threading

import pytest

from banel_ray import tasks
from banel_ray.ledger import Ledger, sample_key
from banel_ray.oracle import RewardOracle, TokenBucket
from banel_ray.tasks.base import Task


class Parity(Task):
    """Reward 1 iff the sum of the tokens is odd; counts calls; can fail on demand."""
    calls = 0
    fail_next = 0

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
    return lambda budget, **kw: RewardOracle("parity", {}, str(tmp_path / "l.sqlite"), budget,
                                             backoff_s=0.0, **kw)


def batch(samples, version=0):
    return {"samples": samples, "version": version}


def test_budget_is_a_hard_cap_and_duplicates_are_free(oracle):
    o = oracle(5)
    r = o.evaluate(1, batch([(1,), (2,), (1,), (3,)]))
    assert r["paid"] == 3 and r["rewards"] == [1, 0, 1, 1] and Parity.calls == 3
    r = o.evaluate(2, batch([(1,), (4,), (5,), (6,), (7,)], version=1))
    assert r["paid"] == 2 and r["rewards"] == [1, 0, 1, None, None]
    assert o.spent() == 5 and Parity.calls == 5
    rows = o.ledger_rows()
    assert [r["sample"] for r in rows] == [(1,), (2,), (3,), (4,), (5,)]
    assert [r["version"] for r in rows] == [0, 0, 0, 1, 1]
    assert o.evaluate(3, batch([(8,)]))["rewards"] == [None]


def test_oracle_error_is_not_a_negative_and_not_charged(oracle):
    o = oracle(10, retries=2)
    Parity.fail_next = 2
    r = o.evaluate(1, batch([(1,), (2,)]))
    assert r["rewards"] == [None, None] and r["errors"] == 2 and r["paid"] == 0
    assert o.spent() == 0
    assert {row["status"] for row in o.ledger_rows()} == {"error"}


def test_retry_recovers(oracle):
    o = oracle(10, retries=3)
    Parity.fail_next = 1
    r = o.evaluate(1, batch([(1,), (2,)]))
    assert r["rewards"] == [1, 0] and o.ledger_rows()[0]["attempt"] == 2


def test_free_evaluations_are_not_nres(oracle):
    o = oracle(3)
    r = o.evaluate_free(batch([(1,), (2,), (3,), (5,)]))
    assert r["k"] == 3 and r["n"] == 4
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
