"""Issue 24, in process at tiny scale (``runtime=local``): ``--resume auto`` (one command for the
first start and every retry) and ``python -m banel_ray.export`` (a round's generator as a Hugging
Face folder)."""

import signal
import sqlite3

import pytest

from banel_ray import run as run_cli
from banel_ray.runtime import runner as runner_mod

TINY = [
    "task=addition_attack_d8",
    "rounds=3",
    "budget=50",
    "samples_per_round=20",
    "pool_size=40",
    "eval.samples=40",
    "eval.every=2",
    "eval.final_samples=0",
    "negative.epochs=1",
    "generator.epochs=1",
    "sampler.backend=torch",
    "runtime=local",
]


def auto(run_dir, *extra):
    """``python -m banel_ray.run --resume auto --set run_dir=... <TINY>``, in this process."""
    old = signal.getsignal(signal.SIGTERM)  # main() installs its own
    try:
        return run_cli.main(
            ["--resume", "auto", *[a for s in [*TINY, f"run_dir={run_dir}", *extra] for a in ("--set", s)]]
        )
    finally:
        signal.signal(signal.SIGTERM, old)


def ledger(run_dir):
    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    try:
        return db.execute(
            "SELECT key, reward, status, charged, round, version FROM evaluations ORDER BY seq"
        ).fetchall()
    finally:
        db.close()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """An uninterrupted run, started with --resume auto in a folder that does not exist yet."""
    d = tmp_path_factory.mktemp("full") / "run"
    assert auto(d) == 0
    return d


@pytest.mark.parametrize("cut_round", [1, 2])
def test_resume_auto_starts_a_new_run_then_continues_it_paying_nothing_twice(
    tmp_path, full, monkeypatch, capsys, cut_round
):
    """Interrupted after a round paid and before it checkpointed (round 1: there is no checkpoint
    yet, only the config and the ledger), the identical command ends with the uninterrupted ledger."""
    d = tmp_path / "run"

    def interrupt(name, round_):  # Ctrl-C (or a killed pod)
        if (name, round_) == ("mid_oracle", cut_round):
            raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod, "crash_point", interrupt)
    assert auto(d) == 130
    out = capsys.readouterr()
    assert f"--resume auto: a new run in {d}" in out.out and "interrupted" in out.err
    cut = ledger(d)
    assert {r[4] for r in cut} == set(range(1, cut_round + 1))
    assert (d / "checkpoints" / "LATEST").exists() == (cut_round > 1)
    monkeypatch.undo()

    assert auto(d) == 0  # the identical command
    out = capsys.readouterr()
    assert f"--resume auto: continuing the run in {d}" in out.out
    assert (f"resumed after round {cut_round - 1}" in out.out) == (cut_round > 1)
    after = ledger(d)
    assert after[: len(cut)] == cut  # nothing paid was lost or rewritten
    assert len({r[0] for r in after}) == len(after)  # no sample paid twice
    assert after == ledger(full)  # the same samples, rewards, rounds and versions as the run never stopped
    assert sum(r[3] for r in after) == 50
    assert len((d / "metrics.jsonl").read_text().splitlines()) == 3

    assert auto(d) == 0  # once more on a finished run: nothing left to pay for
    assert ledger(d) == ledger(full)


def test_resume_auto_needs_the_run_folder(tmp_path, capsys):
    old = signal.getsignal(signal.SIGTERM)
    try:
        rc = run_cli.main(["--resume", "auto", *[a for s in TINY for a in ("--set", s)]])
    finally:
        signal.signal(signal.SIGTERM, old)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "--resume auto needs the run folder" in err[0] and "run_dir" in err[0]
