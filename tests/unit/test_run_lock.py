"""The one line a run prints when another process took its ledger (the advisory lock itself, held
by real processes, is in tests/integration/test_run_lock_processes.py)."""


def test_a_stale_writer_stops_the_command_line_in_one_line(tmp_path, monkeypatch, capsys):
    """Another reward service took the ledger's lease: one line and exit 2, also when Ray wraps it."""
    from ray.exceptions import RayTaskError

    from banel_ray import run as cli
    from banel_ray.actors.ledger import StaleWriter

    stale = StaleWriter(
        "ledger x/ledger.sqlite: lease 1 of a was taken by b (lease 2); this writer may no longer write"
    )
    trace = "Traceback (most recent call last):\n  ...\nStaleWriter: " + str(stale)
    wrapped = RayTaskError("RewardService.pay", trace, stale).as_instanceof_cause()  # what ray.get raises

    monkeypatch.setattr(cli.signal, "signal", lambda *a: None)  # main's SIGTERM handler: not in pytest
    for err in (stale, wrapped):

        def fail(*a, err=err, **k):
            raise err

        monkeypatch.setattr(cli, "run", fail)
        rd = tmp_path / "r"
        assert cli.main(["--set", f"run_dir={rd}", "--set", "eval.samples=0"]) == 2
        lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert len(lines) == 1 and "lease 1 of a was taken by b" in lines[0]
        assert f"stop the other, then --resume {rd}" in lines[0]
