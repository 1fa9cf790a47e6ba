"""The NRE ledger: every paid reward evaluation, durable before its result is used.

SQLite in WAL mode with ``synchronous=FULL``: one file in the run folder, readable with any SQLite
client, safe against a killed process. The sample's hash is the primary key, so a sample can be
recorded (and paid for) at most once; a retried call finds its stored reward.

Rows and their ``status``:

- ``pending``: budget reserved (``charged=1``) and committed *before* the oracle is called. The row
  names the call that reserved it (``call_id``, an idempotency key: the Ray task id inside the
  actor, stable across Ray task retries) and the oracle process (``owner``).
- ``ok``: evaluated; ``reward`` is 0 or 1; ``charged=1``.
- ``error``: every attempt failed; ``reward`` is NULL (an error is not a negative); ``charged`` is 1
  or 0 as the oracle's ``charge_errors`` says. An uncharged error row may be reserved again.
- ``lost``: a pending row whose oracle process died mid-call after sending it (``attempt`` >= 1),
  closed without re-evaluation (``pending_rule='charge'``): charged, reward NULL. A pending row that
  was never sent (``attempt`` 0) is released instead (removed: nothing was paid for it).

``attempt`` counts the oracle calls made for the sample, over all calls and processes; it is
incremented (and committed) *before* each call, so a call cut short by a crash is still counted.

One writer: opening a ``Ledger`` takes the lease (table ``lease``: a fencing token, incremented by
every new writer, and its owner). Every write transaction first checks that the token is still its
own; a stale writer (an old reward service still running after a new one opened the file) gets
``StaleWriter`` and changes nothing, and since attempts are counted in a fenced write before each
call, it makes no further oracle call either.

Self-contained file: every write transaction is folded from the write-ahead log into
``ledger.sqlite`` right after its commit (``PRAGMA wal_checkpoint(PASSIVE)``), and fully, log
truncated, after every round and at close; a copy of ``ledger.sqlite`` alone then holds every
committed row (a process killed between a commit and its fold leaves that one transaction in
``ledger.sqlite-wal``, which SQLite applies when the ledger is next opened, here or by ``sqlite3``).
``python -m banel_ray.ledger_export RUN_DIR`` writes the rows as CSV or JSON lines.

``counters`` holds named running totals kept beside the rows (``eval_sent``: evaluation draws sent
to the paid oracle for success-rate estimates; never NREs).

``calls`` holds one row per oracle call sent to a paid endpoint (``oracle.cost_per_call`` > 0):
its purpose (``nre`` or ``eval``), samples, tokens (the token ids sent), ``cost_usd`` and status.
The row is inserted, in the same fenced transaction that counts the samples' attempts, *before*
the call is sent (``sent``), and only if the summed cost stays within ``budget_usd``; so the cap is
never passed, also by concurrent callers or a crash. It becomes ``done`` when the call ends, or
``refunded`` when the endpoint refused the call unbilled (HTTP 429/503, connection refused). The
money spent is the cost of every row that is not ``refunded`` (a call cut short by a crash counts).

``meta`` holds the ledger's identity (``ledger_id``, a random id given when the file is made, or
when an older file is first opened). A run records it in ``<run_dir>/ledger.id`` before its reward
service starts (``adopt``), so a resume tells its own ledger from a missing or replaced one, also
when the run was killed before its first checkpoint (``preflight.identity_problem``); the service
opens only the file with that id (``WrongLedger`` otherwise, before anything is paid).

Schema version 5 (``PRAGMA user_version``); a version-1 file (no ``call_id``/``owner``/``updated``)
is migrated in place with ``ALTER TABLE ... ADD COLUMN`` when opened; version 2 gains the ``lease``
and ``counters`` tables, version 4 the ``calls`` table (empty in an older file: it spent no tracked
USD), version 5 the ``meta`` table.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

SCHEMA_VERSION = 5

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
    time     REAL NOT NULL,
    call_id  TEXT,
    owner    TEXT,
    updated  REAL
);
CREATE TABLE IF NOT EXISTS lease (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    token    INTEGER NOT NULL,
    owner    TEXT,
    time     REAL
);
CREATE TABLE IF NOT EXISTS counters (
    name     TEXT PRIMARY KEY,
    value    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    purpose  TEXT NOT NULL,
    samples  INTEGER NOT NULL,
    tokens   INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    status   TEXT NOT NULL,
    error    TEXT,
    time     REAL NOT NULL,
    updated  REAL,
    owner    TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    name     TEXT PRIMARY KEY,
    value    TEXT NOT NULL
);
"""
LEDGER_ID = "ledger_id"  # the meta row naming this ledger file
# the calls table's columns as read back (ledger.calls, python -m banel_ray.ledger_export --table calls)
CALL_COLUMNS = ("seq", "purpose", "samples", "tokens", "cost_usd", "status", "error", "time", "updated", "owner")
# columns added after version 1: (name, SQL type)
ADDED_COLUMNS = [("call_id", "TEXT"), ("owner", "TEXT"), ("updated", "REAL")]
INDEXES = """
CREATE INDEX IF NOT EXISTS evaluations_status ON evaluations(status);
CREATE INDEX IF NOT EXISTS evaluations_charged ON evaluations(charged);
"""
COLUMNS = "seq, key, sample, reward, status, charged, round, version, attempt, error, time, call_id, owner, updated"

# what ``reserve`` decides for each distinct key of a call
NEW, RETRY, ADOPT = "new", "retry", "adopt"  # this call evaluates the sample
LIVE = "live"  # another call of this process is evaluating it
STORED = "stored"  # a final row exists (ok, charged error, lost)
UNPAID = "unpaid"  # no budget left
EVALUATE = (NEW, RETRY, ADOPT)


def sample_key(sample: Sequence[int]) -> str:
    """Idempotency key of a sample: sha256 of its token ids."""
    return hashlib.sha256(json.dumps(list(sample), separators=(",", ":")).encode()).hexdigest()


def micro_usd(usd: float) -> int:
    """USD as whole micro-dollars: budget checks add integers, so 0.1 + 0.2 stays within 0.3."""
    return round(float(usd) * 1_000_000)


class OverBudget(RuntimeError):
    """The next oracle call would pass ``oracle.budget_usd``: it is not sent (nothing was written)."""


class StaleWriter(RuntimeError):
    """This ledger's lease was taken by a newer writer: it may no longer write."""


class WrongLedger(RuntimeError):
    """The file at a run's ledger path is not that run's ledger (missing, or another ledger's id):
    opened, it would forget what the run paid for, and the run would pay for it again."""


class Ledger:
    """One connection, guarded by a lock, so threads of a threaded actor may share the ledger.

    Every write is one ``BEGIN IMMEDIATE`` transaction, fenced by the lease, committed (and
    fsynced) on return. Several processes may read the file; one writes it (the lease holder).
    """

    def __init__(self, path: str | Path, owner: str = "", ledger_id: str | None = None, lease: bool = True):
        """``ledger_id``: open only the ledger with that id, which must exist already (a run's
        reward service: a missing or replaced file raises ``WrongLedger`` and nothing is created);
        None: open or create any (a new file gets a new id). ``lease=False``: read and migrate only,
        without taking the lease (every write is then refused)."""
        self.path = Path(path)
        if ledger_id is not None and not self.path.is_file():
            raise WrongLedger(
                f"ledger {self.path} is missing, but this run made ledger {ledger_id} there; "
                f"nothing is paid until the run's ledger.sqlite is back"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self._migrate(new_id=ledger_id is None)
        self.checkpoint()  # a log a killed writer left behind: folded in now
        row = self.db.execute("SELECT value FROM meta WHERE name=?", (LEDGER_ID,)).fetchone()
        self.ledger_id = row[0] if row else None
        if ledger_id is not None and self.ledger_id != ledger_id:
            self.db.close()
            raise WrongLedger(
                f"ledger {self.path} is not this run's ledger (its id is {self.ledger_id or 'none'}, the run's "
                f"is {ledger_id}); nothing is paid until the run's ledger.sqlite is back"
            )
        self.owner = owner
        self.token = self._take_lease(owner) if lease else None

    # ---- schema ------------------------------------------------------------------------------
    def _migrate(self, new_id: bool = True) -> None:
        """The schema, brought up to date; with ``new_id`` a file without an id gets one."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in SCHEMA.strip().split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                have = {r[1] for r in self.db.execute("PRAGMA table_info(evaluations)")}
                for name, typ in ADDED_COLUMNS:
                    if name not in have:
                        self.db.execute(f"ALTER TABLE evaluations ADD COLUMN {name} {typ}")
                for stmt in INDEXES.strip().split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                if new_id:
                    self.db.execute(
                        "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", (LEDGER_ID, uuid.uuid4().hex)
                    )
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _take_lease(self, owner: str) -> int:
        """Become the one writer: the next fencing token, with this owner and the time."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute("SELECT token FROM lease WHERE id=1").fetchone()
                token = (row[0] if row else 0) + 1
                self.db.execute(
                    "INSERT OR REPLACE INTO lease (id, token, owner, time) VALUES (1, ?, ?, ?)",
                    (token, owner, time.time()),
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return token

    def lease(self) -> dict:
        """The current lease: token and owner (``host:pid:id`` of the reward service holding it)."""
        with self.lock:
            row = self.db.execute("SELECT token, owner, time FROM lease WHERE id=1").fetchone()
        return {"token": row[0], "owner": row[1], "time": row[2]} if row else {}

    def schema_version(self) -> int:
        with self.lock:
            return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    # ---- reads -------------------------------------------------------------------------------
    def lookup_rows(self, keys: Iterable[str]) -> dict[str, dict]:
        """Full rows (as dicts, ``sample`` decoded) for the keys already in the ledger."""
        keys = list(dict.fromkeys(keys))
        out = {}
        with self.lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT {COLUMNS} FROM evaluations WHERE key IN ({','.join('?' * len(chunk))})"
                for d in self._dicts(self.db.execute(q, chunk)):
                    out[d["key"]] = d
        return out

    def spent(self) -> int:
        """NREs charged so far, reservations of calls in flight included."""
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM evaluations WHERE charged=1").fetchone()[0])

    def successes(self) -> int:
        """Distinct paid samples with reward 1."""
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM evaluations WHERE status='ok' AND reward=1").fetchone()[0])

    def attempts(self) -> int:
        """Oracle calls made for paid samples, counted per sample over all calls and processes."""
        with self.lock:
            return int(self.db.execute("SELECT COALESCE(SUM(attempt), 0) FROM evaluations").fetchone()[0])

    def errors(self) -> int:
        """Samples whose every attempt failed (status ``error``; not negatives)."""
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM evaluations WHERE status='error'").fetchone()[0])

    def counter(self, name: str) -> int:
        with self.lock:
            row = self.db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def cost_usd(self) -> float:
        """USD charged for oracle calls so far: every call not refunded, those in flight included."""
        with self.lock:
            return micro_usd(self._cost()) / 1_000_000

    def _cost(self) -> float:
        row = self.db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM calls WHERE status != 'refunded'").fetchone()
        return float(row[0])

    def calls(self) -> list[dict]:
        """The ``calls`` table (one row per call sent to a paid oracle), in order."""
        with self.lock:
            cur = self.db.execute(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls ORDER BY seq")
            return [dict(zip(CALL_COLUMNS, r)) for r in cur]

    def pending(self) -> list[dict]:
        with self.lock:
            return self._dicts(
                self.db.execute(f"SELECT {COLUMNS} FROM evaluations WHERE status='pending' ORDER BY seq")
            )

    def rows(self) -> list[dict]:
        with self.lock:
            return self._dicts(self.db.execute(f"SELECT {COLUMNS} FROM evaluations ORDER BY seq"))

    @staticmethod
    def _dicts(cur) -> list[dict]:
        cols = [d[0] for d in cur.description]
        out = []
        for row in cur:
            d = dict(zip(cols, row))
            d["sample"] = tuple(json.loads(d["sample"]))
            out.append(d)
        return out

    # ---- writes ------------------------------------------------------------------------------
    def _tx(self, fn: Callable):
        """``fn`` in one write transaction, refused unless this ledger still holds the lease; the
        commit is folded into the main file at once (a copy of that file alone is complete)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute("SELECT token, owner FROM lease WHERE id=1").fetchone()
                if row is None or row[0] != self.token:
                    raise StaleWriter(
                        f"ledger {self.path}: lease {self.token} of {self.owner or 'this writer'} was taken by "
                        f"{row[1] if row else 'nobody'} (lease {row[0] if row else '-'}); this writer may no longer write"
                    )
                out = fn()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            return out

    def record(self, rows: Sequence[dict]) -> None:
        """Insert final rows in one transaction (committed and fsynced on return); a key already
        present is left as it is, so a retried write cannot pay twice."""
        now = time.time()
        self._tx(
            lambda: self.db.executemany(
                "INSERT OR IGNORE INTO evaluations (key, sample, reward, status, charged, round, "
                "version, attempt, error, time, call_id, owner, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r["key"],
                        json.dumps(list(r["sample"])),
                        r.get("reward"),
                        r.get("status", "ok"),
                        int(r.get("charged", 1)),
                        r.get("round"),
                        r.get("version"),
                        r.get("attempt", 1),
                        r.get("error"),
                        r.get("time", now),
                        r.get("call_id"),
                        r.get("owner"),
                        now,
                    )
                    for r in rows
                ],
            )
        )

    def reserve(
        self, items: Sequence[tuple], budget: int, call_id: str, owner: str, live: Callable[[str], bool]
    ) -> dict[str, str]:
        """Decide, in one transaction, who evaluates each of ``items`` ((key, sample, round,
        version), distinct keys, in order) and reserve budget for the new ones.

        - no row: ``new`` (a pending, charged row is inserted) while budget is left, else ``unpaid``;
        - pending and ``live(key)``: ``live`` (the caller waits for that evaluation);
        - pending and not live (its process died): ``adopt``; the row keeps its single charge and
          is taken over by this call (``call_id``/``owner`` rewritten);
        - uncharged error: ``retry`` (charged again, as pending) while budget is left, else ``unpaid``;
        - anything else: ``stored``.

        Budget is counted inside the transaction, so concurrent reservations never exceed it.
        """

        def run():
            now = time.time()
            rows = self.lookup_rows([it[0] for it in items])
            room = int(budget) - self.spent()
            plan = {}
            for key, sample, round_, version in items:
                row = rows.get(key)
                if row is None:
                    if room > 0:
                        room -= 1
                        self.db.execute(
                            "INSERT INTO evaluations (key, sample, reward, status, charged, round, version, "
                            "attempt, error, time, call_id, owner, updated) "
                            "VALUES (?,?,NULL,'pending',1,?,?,0,NULL,?,?,?,?)",
                            (key, json.dumps(list(sample)), round_, version, now, call_id, owner, now),
                        )
                        plan[key] = NEW
                    else:
                        plan[key] = UNPAID
                elif row["status"] == "pending":
                    if live(key):
                        plan[key] = LIVE
                    else:
                        self.db.execute(
                            "UPDATE evaluations SET call_id=?, owner=?, updated=? WHERE key=?",
                            (call_id, owner, now, key),
                        )
                        plan[key] = ADOPT
                elif row["status"] == "error" and not row["charged"]:
                    if room > 0:
                        room -= 1
                        self.db.execute(
                            "UPDATE evaluations SET status='pending', charged=1, call_id=?, "
                            "owner=?, updated=? WHERE key=?",
                            (call_id, owner, now, key),
                        )
                        plan[key] = RETRY
                    else:
                        plan[key] = UNPAID
                else:
                    plan[key] = STORED
            return plan

        return self._tx(run)

    def count_attempts(self, keys: Sequence[str]) -> None:
        """Count one more oracle call for each pending sample of ``keys``, committed before the call
        is made (so no call goes uncounted, crash or not; a stale writer is refused here, before
        it calls the oracle)."""
        now = time.time()
        self._tx(
            lambda: self.db.executemany(
                "UPDATE evaluations SET attempt=COALESCE(attempt,0)+1, updated=? WHERE key=? AND status='pending'",
                [(now, k) for k in keys],
            )
        )

    def begin_call(
        self, keys: Sequence[str], samples: int, tokens: int, cost_usd: float, budget_usd: float, purpose: str = "nre"
    ) -> int | None:
        """Before an oracle call is sent, in one fenced transaction: count an attempt for each
        pending sample of ``keys`` and, when the call costs money (``cost_usd`` > 0), insert its
        ``calls`` row (status ``sent``). With ``budget_usd`` > 0, a call that would take the summed
        cost past it raises ``OverBudget`` and writes nothing (no attempt counted, nothing charged).
        Returns the call's row (None when it costs nothing)."""
        now = time.time()

        def run():
            seq = None
            if cost_usd > 0:
                if budget_usd > 0 and micro_usd(self._cost()) + micro_usd(cost_usd) > micro_usd(budget_usd):
                    raise OverBudget(
                        f"oracle.budget_usd {budget_usd:g} reached ({self._cost():.6g} USD spent; "
                        f"a call costs {cost_usd:g}): not sent"
                    )
                cur = self.db.execute(
                    "INSERT INTO calls (purpose, samples, tokens, cost_usd, status, time, updated, owner) "
                    "VALUES (?, ?, ?, ?, 'sent', ?, ?, ?)",
                    (purpose, int(samples), int(tokens), float(cost_usd), now, now, self.owner),
                )
                seq = cur.lastrowid
            if keys:
                self.db.executemany(
                    "UPDATE evaluations SET attempt=COALESCE(attempt,0)+1, updated=? WHERE key=? AND status='pending'",
                    [(now, k) for k in keys],
                )
            return seq

        if not keys and cost_usd <= 0:
            return None
        return self._tx(run)

    def end_call(self, seq: int, billed: bool, error: str | None = None) -> None:
        """A sent call ended: ``done`` (charged), or ``refunded`` when the endpoint refused it unbilled."""
        self._tx(
            lambda: self.db.execute(
                "UPDATE calls SET status=?, error=?, updated=? WHERE seq=? AND status='sent'",
                ("done" if billed else "refunded", error, time.time(), seq),
            )
        )

    def release(self, keys: Sequence[str], note: str) -> None:
        """Give back the reservations of samples whose call was never sent (``OverBudget``): a row
        no call was ever made for is removed (as if never reserved); one with earlier attempts
        becomes an uncharged error. Refused samples are not charged."""
        now = time.time()

        def run():
            for k in keys:
                self.db.execute(
                    "DELETE FROM evaluations WHERE key=? AND status='pending' AND COALESCE(attempt,0)=0", (k,)
                )
                self.db.execute(
                    "UPDATE evaluations SET status='error', charged=0, reward=NULL, error=?, updated=? "
                    "WHERE key=? AND status='pending'",
                    (note, now, k),
                )

        self._tx(run)

    def take_counter(self, name: str, n: int, limit: int) -> int:
        """Add up to ``n`` to counter ``name`` without passing ``limit``; returns how much was added
        (a reservation, committed before what it counts is done)."""

        def run():
            row = self.db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
            have = int(row[0]) if row else 0
            grant = max(0, min(int(n), int(limit) - have))
            self.db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", (name, have + grant))
            return grant

        return self._tx(run)

    def complete(self, results: Sequence[dict]) -> None:
        """Close pending rows: each result has key, reward (None: failed), error and charged (for
        failures); attempts were counted before each call (``count_attempts``). Committed on return."""
        now = time.time()
        self._tx(
            lambda: self.db.executemany(
                "UPDATE evaluations SET reward=?, status=?, charged=?, error=?, "
                "time=?, updated=? WHERE key=? AND status='pending'",
                [
                    (
                        r["reward"],
                        "ok" if r["reward"] is not None else "error",
                        1 if r["reward"] is not None else int(r.get("charged", 0)),
                        r.get("error"),
                        now,
                        now,
                        r["key"],
                    )
                    for r in results
                ],
            )
        )

    def close_pending(self, note: str) -> tuple[int, int]:
        """The ``charge`` rule for the pending rows of a process that died mid-call: a row that was
        sent (``attempt`` >= 1, or unknown: NULL in an old file) becomes ``lost`` (charged, reward
        NULL, never sent again); a row never sent (``attempt`` 0) is released as ``release`` does
        (removed, as if never reserved: nothing was paid for it). Returns (lost, released)."""
        now = time.time()

        def run():
            released = self.db.execute("DELETE FROM evaluations WHERE status='pending' AND attempt=0").rowcount
            lost = self.db.execute(
                "UPDATE evaluations SET status='lost', charged=1, reward=NULL, error=?, updated=? "
                "WHERE status='pending'",
                (note, now),
            ).rowcount
            return lost, released

        return self._tx(run)

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the main file, so ``ledger.sqlite`` alone holds every row
        (a copy of that one file is then the whole ledger)."""
        with self.lock:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self.lock:
            try:
                self.checkpoint()
            finally:
                self.db.close()


def adopt(run_dir: str | Path) -> str:
    """The id of ``run_dir``'s ledger, recorded in ``<run_dir>/ledger.id`` before the run's reward
    service starts, so before anything is paid: the ledger is made now if the folder has none
    (and no record of one), an older ledger gets its id, and the record is written (atomically,
    fsynced) after the ledger file it names. ``WrongLedger`` (``preflight.identity_problem``'s
    line) if the folder records a ledger that is missing or not the file there."""
    from banel_ray import preflight

    run_dir = Path(run_dir)
    msg = preflight.identity_problem(run_dir, "run_dir")
    if msg:
        raise WrongLedger(msg)
    led = Ledger(run_dir / preflight.LEDGER_FILE, lease=False)
    try:
        lid = str(led.ledger_id)
    finally:
        led.close()
    marker = run_dir / preflight.LEDGER_ID_FILE
    if preflight.recorded_ledger_id(run_dir) != lid:
        tmp = marker.with_name(f".{marker.name}.tmp")
        with open(tmp, "w") as f:
            f.write(lid + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, marker)
        fd = os.open(run_dir, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a power cut
        finally:
            os.close(fd)
    return lid
