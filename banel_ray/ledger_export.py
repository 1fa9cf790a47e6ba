"""``python -m banel_ray.ledger_export RUN_DIR``: every paid evaluation of a run as CSV or JSON lines.

One row per ledger row, in payment order: ``seq``, ``sample`` (token ids, space-separated in CSV, a
list in JSON), ``reward`` (1, 0, or empty/null: not evaluated), ``status`` (ok, error, pending,
lost), ``charged`` (1: counted as an NRE), ``round``, ``version`` (generator weights that drew it),
``attempt`` (oracle calls made for it), ``error``, ``time`` (UTC, ISO 8601), ``call_id``, ``owner``.
``--table calls``: the calls sent to a paid oracle instead (one row per call: ``seq``, ``purpose``,
``samples``, ``tokens``, ``cost_usd``, ``status`` sent/done/refunded, ``error``, ``time``,
``updated``, ``owner``), for reconciling ``oracle.cost_per_call`` with the provider's bill.

The ledger is opened read-only, so this is safe while a run is writing it. Examples::

    python -m banel_ray.ledger_export runs/addition_attack-20261127-120000 > ledger.csv
    python -m banel_ray.ledger_export runs/addition_attack-20261127-120000 --format jsonl --out ledger.jsonl
    python -m banel_ray.ledger_export runs/addition_attack-20261127-120000 --table calls > calls.csv
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import sqlite3
import sys
from pathlib import Path

from banel_ray.actors.ledger import CALL_COLUMNS
from banel_ray.cli import Parser, fail

COLUMNS = (
    "seq",
    "sample",
    "reward",
    "status",
    "charged",
    "round",
    "version",
    "attempt",
    "error",
    "time",
    "call_id",
    "owner",
)
TABLES = {"evaluations": COLUMNS, "calls": CALL_COLUMNS}


def _iso(t) -> str | None:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat() if t is not None else None


def read_rows(path: Path, table: str = "evaluations") -> list[dict]:
    """Rows of ``table`` (evaluations or calls) as plain values (``sample`` a list of ints, times ISO
    8601). Raises ``sqlite3.Error`` for a file that is not a ledger; a ledger written before the
    calls table existed (schema 3) has no calls: an empty list."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        db.execute("SELECT 1 FROM sqlite_master").fetchall()
    except sqlite3.OperationalError:  # a write-ahead log without its index: open it normally
        db = sqlite3.connect(str(path), timeout=30.0)
    cols = TABLES[table]
    try:
        if table == "calls" and not db.execute("SELECT 1 FROM sqlite_master WHERE name='calls'").fetchone():
            db.execute("SELECT 1 FROM evaluations LIMIT 1").fetchall()  # a ledger, from before schema 4
            return []
        cur = db.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY seq")
        rows = [dict(zip(cols, r)) for r in cur]
    finally:
        db.close()
    for r in rows:
        if "sample" in r:
            r["sample"] = json.loads(r["sample"])
        for k in ("time", "updated"):
            if k in r:
                r[k] = _iso(r[k])
    return rows


def write(rows: list[dict], fmt: str, out, columns: tuple = COLUMNS) -> None:
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(r) + "\n")
        return
    w = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "sample": " ".join(map(str, r["sample"]))} if "sample" in r else r)


def main(argv=None) -> int:
    p = Parser(prog="python -m banel_ray.ledger_export", description=__doc__.split("\n\n")[0].strip())
    p.add_argument("run", metavar="RUN_DIR", help="a run folder (or its ledger.sqlite)")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="csv (default) or jsonl")
    p.add_argument("--out", metavar="FILE", help="write here instead of to standard output")
    p.add_argument(
        "--table",
        choices=tuple(TABLES),
        default="evaluations",
        help="evaluations (default: one row per paid sample) or calls (one row per call sent to a paid oracle)",
    )
    args = p.parse_args(argv)
    path = Path(args.run)
    path = path / "ledger.sqlite" if path.is_dir() else path
    if not path.is_file():
        return fail(f"no ledger at {path}; allowed: a run folder holding ledger.sqlite, or the file itself")
    try:
        rows = read_rows(path, args.table)
        cols = TABLES[args.table]
    except sqlite3.Error as e:
        return fail(f"{path} is not a readable ledger ({e})")
    if args.out:
        try:
            with open(args.out, "w", newline="") as f:
                write(rows, args.format, f, cols)
        except OSError as e:
            return fail(f"cannot write {args.out} ({e.strerror or e})")
        print(f"{len(rows)} rows -> {args.out}", file=sys.stderr)
    else:
        try:
            write(rows, args.format, sys.stdout, cols)
            sys.stdout.flush()
        except BrokenPipeError:  # the reader stopped early (`| head`): what it read is what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return 141  # 128 + SIGPIPE, as a shell tool cut short by its reader
    return 0


if __name__ == "__main__":
    sys.exit(main())
