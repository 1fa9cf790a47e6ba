"""The ledger file: one writer (lease and fencing), attempts counted before calls, a run's own
ledger, and the export command in process (tests/integration/test_ledger_processes.py kills a
writer and runs the export as a module)."""

import json
import sqlite3
from pathlib import Path

import pytest

from banel_ray import ledger_export
from banel_ray.actors.ledger import Ledger, StaleWriter, WrongLedger, adopt, sample_key

ROOT = Path(__file__).resolve().parents[2]


def reserve(led, samples, call="c"):
    return led.reserve([(sample_key(s), s, 1, 0) for s in samples], 100, call, led.owner, lambda k: False)


def test_a_new_writer_fences_the_old_one(tmp_path):
    old = Ledger(tmp_path / "l.sqlite", owner="old")
    reserve(old, [(1,)])
    new = Ledger(tmp_path / "l.sqlite", owner="new")
    assert new.lease()["token"] == old.token + 1 and new.lease()["owner"] == "new"
    for write in (
        lambda: reserve(old, [(2,)]),
        lambda: old.count_attempts([sample_key((1,))]),
        lambda: old.complete([{"key": sample_key((1,)), "reward": 1, "error": None}]),
        lambda: old.close_pending("x"),
        lambda: old.take_counter("eval_sent", 5, 10),
    ):
        with pytest.raises(StaleWriter, match="lease 1 of old was taken by new"):
            write()
    rows = new.rows()
    assert [(r["sample"], r["status"], r["attempt"]) for r in rows] == [((1,), "pending", 0)]  # untouched
    assert new.counter("eval_sent") == 0
    reserve(new, [(2,)])  # the lease holder writes
    assert new.spent() == 2


def test_attempts_are_counted_before_the_call_and_counters_cap(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    reserve(led, [(1,), (2,)])
    led.count_attempts([sample_key((1,)), sample_key((2,))])
    led.count_attempts([sample_key((2,))])
    assert {r["sample"]: r["attempt"] for r in led.rows()} == {(1,): 1, (2,): 2} and led.attempts() == 3
    led.complete([{"key": sample_key((1,)), "reward": 1, "error": None}])
    led.count_attempts([sample_key((1,))])  # a closed row is not counted again
    assert led.attempts() == 3
    assert led.take_counter("eval_sent", 7, 10) == 7 and led.take_counter("eval_sent", 7, 10) == 3
    assert led.take_counter("eval_sent", 1, 10) == 0 and led.counter("eval_sent") == 10


def test_charge_rule_charges_only_reservations_that_were_sent(tmp_path):
    """pending_rule='charge' after a crash: a reservation sent to the oracle (attempt 1) is charged
    (lost); one never sent (attempt 0) is released, costing nothing, and may be reserved again."""
    dead = Ledger(tmp_path / "l.sqlite", owner="dead")
    reserve(dead, [(1,), (2,)])
    dead.begin_call([sample_key((1,))], samples=1, tokens=1, cost_usd=0.0, budget_usd=0.0)  # (1,) sent
    assert dead.spent() == 2  # both reserved (charged) before the crash
    dead.db.close()  # the process dies: no close, no checkpoint
    led = Ledger(tmp_path / "l.sqlite", owner="recovery")
    assert led.close_pending("died") == (1, 1)
    assert [(r["sample"], r["status"], r["charged"], r["attempt"]) for r in led.rows()] == [((1,), "lost", 1, 1)]
    assert led.spent() == 1 and led.pending() == []
    assert reserve(led, [(1,), (2,)]) == {sample_key((1,)): "stored", sample_key((2,)): "new"}


def test_export_writes_csv_and_json_lines_and_refuses_bad_input(tmp_path, capsys):
    led = Ledger(tmp_path / "ledger.sqlite", owner="me")
    reserve(led, [(3, 4), (5,)])
    led.complete([{"key": sample_key((3, 4)), "reward": 1, "error": None}])
    led.complete([])
    assert ledger_export.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("seq,sample,reward,status,charged,round,version,attempt,error,time")
    assert lines[1].startswith("1,3 4,1,ok,1,1,0,0,,") and lines[2].startswith("2,5,,pending,1,1,0,0,,")
    out = tmp_path / "l.jsonl"
    assert ledger_export.main([str(tmp_path / "ledger.sqlite"), "--format", "jsonl", "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["sample"], r["reward"], r["status"]) for r in rows] == [([3, 4], 1, "ok"), ([5], None, "pending")]
    assert ledger_export.main([str(tmp_path / "nothing")]) == 2
    (tmp_path / "junk").write_text("not a database")
    assert ledger_export.main([str(tmp_path / "junk")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-2].startswith("error: no ledger at") and err[-1].startswith("error: ") and "not a readable" in err[-1]


def test_export_of_the_calls_table_for_a_paid_oracle(tmp_path, capsys):
    led = Ledger(tmp_path / "ledger.sqlite", owner="me")
    reserve(led, [(3, 4), (5,)])
    seq = led.begin_call([sample_key((3, 4))], samples=1, tokens=2, cost_usd=0.25, budget_usd=0.0)
    led.end_call(seq, billed=True)
    seq2 = led.begin_call([sample_key((5,))], samples=1, tokens=1, cost_usd=0.25, budget_usd=0.0)
    led.end_call(seq2, billed=False, error="HTTP 429")
    assert ledger_export.main([str(tmp_path), "--table", "calls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "seq,purpose,samples,tokens,cost_usd,status,error,time,updated,owner"
    assert lines[1].startswith("1,nre,1,2,0.25,done,,") and lines[2].startswith("2,nre,1,1,0.25,refunded,HTTP 429,")
    assert len(lines) == 3 and lines[1].endswith(",me")
    out = tmp_path / "calls.jsonl"
    assert ledger_export.main([str(tmp_path), "--table", "calls", "--format", "jsonl", "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["cost_usd"], r["status"]) for r in rows] == [(0.25, "done"), (0.25, "refunded")]
    db = sqlite3.connect(tmp_path / "ledger.sqlite")  # a ledger from before the calls table: no calls
    db.execute("DROP TABLE calls")
    db.commit()
    db.close()
    assert ledger_export.main([str(tmp_path), "--table", "calls"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "seq,purpose,samples,tokens,cost_usd,status,error,time,updated,owner"
    ]


def test_a_run_opens_only_its_own_ledger(tmp_path):
    """``adopt`` makes the ledger and records its id before the reward service starts; the
    service (``ledger_id``) then opens only that file: a missing one is not made anew (a restarted
    service would otherwise pay again for everything), another ledger is not used; an older ledger
    without an id gets one."""
    d = tmp_path / "run"
    d.mkdir()
    lid = adopt(d)
    assert (d / "ledger.id").read_text() == lid + "\n" and not (d / ".ledger.id.tmp").exists()
    led = Ledger(d / "ledger.sqlite", owner="svc", ledger_id=lid)
    assert led.ledger_id == lid and led.lease()["owner"] == "svc"
    led.record([{"key": sample_key([1]), "sample": [1], "reward": 0, "round": 1}])
    led.close()
    other = Ledger(tmp_path / "other.sqlite")
    assert other.ledger_id and other.ledger_id != lid
    other.close()
    with pytest.raises(
        WrongLedger, match=f"is not this run's ledger \\(its id is {other.ledger_id}, the run's is {lid}\\)"
    ):
        Ledger(tmp_path / "other.sqlite", ledger_id=lid)
    (d / "ledger.sqlite").unlink()
    with pytest.raises(WrongLedger, match="is missing, but this run made ledger"):
        Ledger(d / "ledger.sqlite", ledger_id=lid)
    assert not (d / "ledger.sqlite").exists()  # nothing made in its place
    with pytest.raises(WrongLedger, match="records that this run made ledger"):
        adopt(d)
    # a ledger from before ids (no meta table), in a folder with no record: adopted as it is
    old = tmp_path / "old"
    old.mkdir()
    led = Ledger(old / "ledger.sqlite")
    led.record([{"key": sample_key([2]), "sample": [2], "reward": 1, "round": 1}])
    led.db.execute("DROP TABLE meta")
    led.db.execute("PRAGMA user_version=4")
    led.close()
    lid = adopt(old)
    led = Ledger(old / "ledger.sqlite", ledger_id=lid)
    assert led.rows()[0]["sample"] == (2,)
    led.close()
    # a read-only open (adopt's) takes no lease and writes nothing
    ro = Ledger(old / "ledger.sqlite", lease=False)
    with pytest.raises(StaleWriter):
        ro.record([{"key": sample_key([3]), "sample": [3], "reward": 0, "round": 1}])
    ro.close()
