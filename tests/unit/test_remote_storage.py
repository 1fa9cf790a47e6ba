"""Issue 24, item 2, without a server: URIs for run folders, Tune storage and compare's output.
``Mirror`` is checked against a ``file://`` URI (pyarrow's local file system, the same code path
as S3 but for the store); ``tests/integration/test_remote_storage_s3.py`` runs it against S3 (moto)."""

import signal
import sqlite3

import pytest

from banel_ray import run as run_cli
from banel_ray.core import remote
from banel_ray.core.checkpoint import CheckpointStore
from tuning import sweep


def test_uris_are_told_apart_from_paths_and_joined_before_their_query():
    assert remote.is_remote("s3://b/run") and remote.is_remote("gs://b/x") and not remote.is_remote("runs/a")
    assert remote.is_uri("file:///tmp/a") and not remote.is_remote("file:///tmp/a")
    assert str(remote.local_path("file:///tmp/a")) == "/tmp/a" and str(remote.local_path("runs/a")) == "runs/a"
    assert remote.join("s3://b/run?endpoint_override=h:1", "x", "y") == "s3://b/run/x/y?endpoint_override=h:1"
    assert remote.join("s3://b/run/", "x") == "s3://b/run/x"


def test_staging_folder_is_one_per_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("BANEL_RAY_STAGING", str(tmp_path))
    a, b = remote.staging_dir("s3://b/run"), remote.staging_dir("s3://b/run?endpoint_override=x")
    assert a == remote.staging_dir("s3://b/run") and a != b and a.parent == tmp_path and "b_run" in a.name


@pytest.mark.parametrize("uri", ["ftp://host/x", "http://host/x"])
def test_unknown_scheme_is_one_line_naming_what_is_allowed(uri):
    msg = remote.problem(uri)
    assert msg.startswith(f"{uri}: unknown storage scheme") and "s3://, gs://, file://" in msg
    assert "\n" not in msg


def _ledger(path, rows: int) -> sqlite3.Connection:
    """A WAL-mode ledger with ``rows`` charged rows, left open (as a live reward service holds it)."""
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS evaluations (key TEXT PRIMARY KEY, sample, status, charged)")
    with db:
        for i in range(rows):
            db.execute("INSERT OR IGNORE INTO evaluations VALUES (?, '', 'ok', 1)", (f"k{i}",))
    return db


def _round(store: CheckpointStore, r: int) -> None:
    tmp = store.begin(r)
    (tmp / "generator").mkdir()
    (tmp / "generator" / "w.bin").write_bytes(b"w" * r)
    store.commit(tmp, r, r, {"round": r, "history": []}, {"generator": {}}, None, False, keep=2, keep_evaluated=False)


def test_mirror_sends_changes_a_consistent_ledger_copy_and_prunes_old_rounds(tmp_path):
    local, dest = tmp_path / "run", tmp_path / "remote" / "run"
    local.mkdir()
    (local / "config.json").write_text("{}")
    (local / ".run.lock").write_text("1")
    db = _ledger(local / "ledger.sqlite", 5)  # committed rows still in the -wal file
    store = CheckpointStore(local / "checkpoints")
    _round(store, 1)
    mirror = remote.Mirror(local, f"file://{dest}")
    assert mirror.push() == 6  # config, ledger, round_0001 (manifest, runner state, a shard file), LATEST
    assert mirror.push() == 0  # nothing changed, nothing sent
    copy = sqlite3.connect(str(dest / "ledger.sqlite"))
    assert copy.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 5
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    copy.close()
    assert not (dest / ".run.lock").exists() and not (dest / "ledger.sqlite-wal").exists()
    _ledger(local / "ledger.sqlite", 8).close()
    for r in (2, 3):  # keep=2: round 1 goes locally, so also remotely
        _round(store, r)
    mirror.push()
    db.close()
    assert (dest / "checkpoints" / "LATEST").read_text() == "round_0003"
    assert sorted(p.name for p in (dest / "checkpoints").glob("round_*")) == ["round_0002", "round_0003"]
    assert not (dest / "checkpoints" / ".tmp_round_0003").exists()
    copy = sqlite3.connect(str(dest / "ledger.sqlite"))
    assert copy.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 8
    copy.close()
    back = tmp_path / "back"
    assert remote.download(f"file://{dest}", back) == 9  # config, ledger, 2 rounds of 3, LATEST
    assert CheckpointStore(back / "checkpoints").runner_state()["round"] == 3


def test_latest_goes_up_after_the_round_it_names(tmp_path, monkeypatch):
    local = tmp_path / "run"
    store = CheckpointStore(local / "checkpoints")
    _round(store, 1)
    mirror = remote.Mirror(local, f"file://{tmp_path / 'remote'}")
    sent = []
    monkeypatch.setattr(mirror, "_upload", lambda src, dest: sent.append(dest.rsplit("/", 1)[1]))
    mirror.push()
    assert sent[-1] == "LATEST" and {"manifest.json", "runner.json", "w.bin"} <= set(sent[:-1])


def _main(argv):
    old = signal.getsignal(signal.SIGTERM)
    try:
        return run_cli.main(argv)
    finally:
        signal.signal(signal.SIGTERM, old)


def test_a_bad_run_dir_uri_is_one_line_and_exit_2_before_anything_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BANEL_RAY_STAGING", str(tmp_path / "staging"))
    assert _main(["--set", "run_dir=ftp://host/run", "--set", "runtime=local"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run_dir ftp://host/run: unknown storage scheme") and "\n" not in err
    assert _main(["--resume", "ftp://host/run"]) == 2
    assert "unknown storage scheme" in capsys.readouterr().err
    # remote run_dir with checkpoint.dir elsewhere: the checkpoints would not be copied
    assert _main(["--set", "run_dir=s3://b/run", "--set", "checkpoint.dir=/tmp/ck", "--set", "runtime=local"]) == 2
    assert "checkpoint.dir" in capsys.readouterr().err
    assert not (tmp_path / "staging").exists()


def test_tune_storage_uri_passes_through_unchanged(tmp_path, monkeypatch):
    uri = "s3://bucket/sweeps?endpoint_override=127.0.0.1:9000&scheme=http"
    assert sweep.experiment({"storage": uri, "name": "a"}) == (
        uri,
        "a",
        "s3://bucket/sweeps/a?endpoint_override=127.0.0.1:9000&scheme=http",
    )
    assert sweep._under(sweep.experiment({"storage": "gs://b/s", "name": "a"})[2], "runs") == "gs://b/s/a/runs"
    assert sweep.experiment({}, restore="s3://bucket/sweeps/a") == ("s3://bucket/sweeps", "a", "s3://bucket/sweeps/a")
    monkeypatch.chdir(tmp_path)
    assert sweep.experiment({"name": "a"}) == (str(tmp_path / "sweeps"), "a", tmp_path / "sweeps" / "a")
    assert sweep.experiment({"storage": f"file://{tmp_path}/x", "name": "a"})[2] == tmp_path / "x" / "a"
    assert sweep.storage_problem({"storage": "ftp://h/x"}, None).startswith("storage: ftp://h/x: unknown storage")
    assert "no tuner.pkl" in sweep.storage_problem({}, str(tmp_path))


def test_resume_keeps_the_copy_that_remembers_more_paid_evaluations(tmp_path, monkeypatch):
    """``storage.stage`` with a ``file://`` URI standing in for a bucket (the same pyarrow calls)."""
    from banel_ray.runtime import storage

    monkeypatch.setenv("BANEL_RAY_STAGING", str(tmp_path / "staging"))
    bucket = tmp_path / "bucket"
    uri = f"file://{bucket}"
    bucket.mkdir()
    (bucket / "config.json").write_text('{"from": "bucket"}')
    _ledger(bucket / "ledger.sqlite", 4).close()
    local = storage.stage(uri, resume=True, log=lambda m: None)  # nothing here: pulled
    assert (local / "config.json").read_text() == '{"from": "bucket"}' and storage._paid(local) == 4
    _ledger(local / "ledger.sqlite", 6).close()  # this machine went on and paid more than the last copy
    (local / "config.json").write_text('{"from": "local"}')
    assert storage.stage(uri, resume=True, log=lambda m: None) == local
    assert (local / "config.json").read_text() == '{"from": "local"}' and storage._paid(local) == 6
    _ledger(bucket / "ledger.sqlite", 9).close()  # the run went on elsewhere: the bucket knows more
    assert storage._paid(storage.stage(uri, resume=True, log=lambda m: None)) == 9
    aside = list((tmp_path / "staging").glob("*.replaced-*"))
    assert len(aside) == 1 and storage._paid(aside[0]) == 6  # the older local ledger is kept, not deleted
