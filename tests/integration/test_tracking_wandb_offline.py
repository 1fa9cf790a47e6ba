"""Issue 24: W&B tracking (``logging.backends=wandb``), offline: no account, no server, no network.

A short in-process run writes an offline W&B run whose id is kept in ``wandb_run.json``;
``--resume`` continues that id; and what W&B recorded is read back from its own transaction log
(the ``run-<id>.wandb`` file that ``wandb sync`` uploads): every round's metrics at step = round,
with the values of ``metrics.jsonl``, the config, and the closing summary.

The ``.wandb`` file is the LevelDB log format with W&B's ``Record`` protobufs
(wandb/wandb: core/internal/transactionlog/writer.go writes it with core/pkg/leveldb/record.go,
IEEE CRC; ``wandb.proto.wandb_internal_pb2.Record`` parses each record).
"""

import json
import struct
import zlib

import pytest

from banel_ray.report import console, tracking

from helpers import run_main, sets, small_run_sets

BLOCK, HEADER = 32 * 1024, 7
FULL, LAST = 1, 4


def records(path):
    """Every ``Record`` of one ``.wandb`` file: a 7-byte file header (``:W&B``, magic 0xBEE1, a
    version byte), then 32 KiB blocks of chunks, each a CRC-32 of type and payload, a length, a
    type (1 full, 2 first, 3 middle, 4 last) and the payload; a block's tail too short for a chunk
    header is zero padding."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic) == (b":W&B", 0xBEE1), path
    out, pos, parts = [], HEADER, b""
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        crc, n, kind = struct.unpack("<IHB", data[pos : pos + HEADER]) if room >= HEADER else (0, 0, 0)
        if (crc, n, kind) == (0, 0, 0):  # the zeroed rest of a block
            pos += room
            continue
        payload = data[pos + HEADER : pos + HEADER + n]
        assert zlib.crc32(bytes([kind]) + payload) == crc, f"{path}: chunk at {pos} is corrupt"
        parts += payload
        pos += HEADER + n
        if kind in (FULL, LAST):
            r = pb.Record()
            r.ParseFromString(parts)
            out.append(r)
            parts = b""
    return out


def offline_runs(run_dir):
    """[(run record, [Record, ...])] of every offline W&B run folder in ``run_dir``, oldest first."""
    runs = []
    for f in (run_dir / "wandb").glob("offline-run-*/run-*.wandb"):
        rs = records(f)
        (run,) = [r.run for r in rs if r.WhichOneof("record_type") == "run"]
        runs.append((run, rs))
    return sorted(runs, key=lambda x: (x[0].start_time.seconds, x[0].start_time.nanos))


def history(rs) -> list[dict]:
    """The logged rows of one run (``{key: value}`` with ``_step``), in the order logged."""
    out = []
    for r in rs:
        if r.WhichOneof("record_type") == "history":
            out.append({i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
    return out


def summary(rs) -> dict:
    out = {}
    for r in rs:
        if r.WhichOneof("record_type") == "summary":
            out.update({u.key or ".".join(u.nested_key): json.loads(u.value_json) for u in r.summary.update})
    return out


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline and quiet, its own folders (settings, cache, artifacts) under tmp_path."""
    for var, sub in (("WANDB_DIR", "home"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_an_offline_wandb_run_holds_every_round_and_a_resume_continues_the_same_run(tmp_path, offline):
    rd = tmp_path / "run"
    track = ["runtime=local", "logging.backends=wandb", f"run_dir={rd}"]
    assert run_main(*sets(*small_run_sets(rounds=2), *track)) == 0
    run_id = json.loads((rd / "wandb_run.json").read_text())["id"]
    (first, rs), *others = offline_runs(rd)
    assert not others and first.run_id == run_id and first.project == "banel_ray"
    config = {u.key: json.loads(u.value_json) for u in first.config.update}
    assert config["sampler"]["backend"] == "torch" and config["logging"]["backends"] == ["wandb"]  # nested
    rows = console.read_metrics(rd)
    assert [m["round"] for m in rows] == [1, 2] and [h["_step"] for h in history(rs)] == [1, 2]
    for h, m in zip(history(rs), rows):  # every numeric metric of the round, with metrics.jsonl's value
        want = tracking._scalars(m, depth=0)
        assert len(want) > 20 and {k: h[k] for k in want} == want, m["round"]
    done = json.loads((rd / "summary.json").read_text())
    assert summary(rs)["summary.nres"] == done["nres"] == 80 and summary(rs)["summary.rounds"] == 2
    assert rs[-1].WhichOneof("record_type") == "exit" and rs[-1].exit.exit_code == 0  # finished

    # one more round: the same W&B run id, round 3 at step 3 (offline, a second folder of that run)
    assert run_main("--resume", str(rd), *sets("rounds=3")) == 0
    assert json.loads((rd / "wandb_run.json").read_text())["id"] == run_id
    runs = offline_runs(rd)
    assert [r.run_id for r, _ in runs] == [run_id, run_id]
    rows = console.read_metrics(rd)
    logged = [h for _, rs in runs for h in history(rs)]
    assert [h["_step"] for h in logged] == [m["round"] for m in rows] == [1, 2, 3]
    assert [h["nres"] for h in logged] == [m["nres"] for m in rows] == [40, 80, 100]
    assert summary(runs[1][1])["summary.nres"] == 100
