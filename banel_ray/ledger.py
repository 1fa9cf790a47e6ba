"""The NRE ledger: every paid reward evaluation, durable before its result is used.

SQLite in WAL mode with ``synchronous=FULL``: one file in the run folder, readable with any SQLite
client, safe against a killed process. The sample's hash is the primary key, so a sample can be
recorded (and paid for) at most once; a retried call finds its stored reward.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    key      TEXT UNIQUE NOT NULL,
    sample   TEXT NOT NULL,
    reward   INTEGER,
    status   TEXT NOT NULL,
    charged  INTEGER NOT NULL,
    round    INTEGER,
    version  INTEGER,
    attempt  INTEGER,
    error    TEXT,
    time     REAL NOT NULL
);
"""


def sample_key(sample: Sequence[int]) -> str:
    """Idempotency key of a sample: sha256 of its token ids."""
    return hashlib.sha256(json.dumps(list(sample), separators=(",", ":")).encode()).hexdigest()


class Ledger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def lookup(self, keys: Iterable[str]) -> dict[str, tuple[int | None, str]]:
        """Stored (reward, status) for the keys already in the ledger."""
        keys = list(dict.fromkeys(keys))
        out = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i: i + 500]
            q = f"SELECT key, reward, status FROM evaluations WHERE key IN ({','.join('?' * len(chunk))})"
            for k, r, s in self.db.execute(q, chunk):
                out[k] = (r, s)
        return out

    def record(self, rows: Sequence[dict]) -> None:
        """Insert paid evaluations in one transaction (committed and fsynced on return)."""
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR IGNORE INTO evaluations (key, sample, reward, status, charged, round, "
                "version, attempt, error, time) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(r["key"], json.dumps(list(r["sample"])), r.get("reward"), r.get("status", "ok"),
                  int(r.get("charged", 1)), r.get("round"), r.get("version"), r.get("attempt", 1),
                  r.get("error"), r.get("time", now)) for r in rows])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def spent(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM evaluations WHERE charged=1").fetchone()[0])

    def rows(self) -> list[dict]:
        cur = self.db.execute("SELECT seq, key, sample, reward, status, charged, round, version, "
                              "attempt, error, time FROM evaluations ORDER BY seq")
        cols = [d[0] for d in cur.description]
        out = []
        for row in cur:
            d = dict(zip(cols, row))
            d["sample"] = tuple(json.loads(d["sample"]))
            out.append(d)
        return out

    def close(self) -> None:
        self.db.close()
