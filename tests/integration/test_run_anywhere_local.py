"""Issue 24 and 23, in process at tiny scale (``runtime=local``), on real runs: ``--resume auto``
(one command for the first start and every retry), a run without matplotlib, a full disk mid-run,
and ``python -m banel_ray.export`` (a round's generator as a Hugging Face folder); the checks that
need no run are in tests/unit/test_run_anywhere.py."""

import errno
import os
import signal
import sqlite3
import sys

import pytest

from banel_ray import run as run_cli
from banel_ray.report import console, plots
from banel_ray.runtime import runner as runner_mod

from helpers import TINY_RUN as TINY
from helpers import run_main

main = run_main


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


def test_without_matplotlib_the_run_completes_and_skips_its_plots_with_one_warning(tmp_path, full, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    d = tmp_path / "run"
    assert auto(d) == 0  # before, it paid the whole budget, then failed at the plot
    out = capsys.readouterr().out
    assert out.count("warning: matplotlib is not installed") == 1 and plots.SKIPPED in out
    assert (d / "summary.json").exists() and not (d / "success_vs_nres.png").exists()
    assert (full / "success_vs_nres.png").exists()  # drawn where matplotlib is there
    assert ledger(d) == ledger(full)


@pytest.mark.parametrize("where", ["metrics", "checkpoint"])
def test_a_full_disk_mid_run_is_one_line_with_the_resume_command_and_the_resume_pays_nothing_twice(
    tmp_path, full, monkeypatch, capsys, where
):
    """A patched write raises ENOSPC in round 2, after the round paid: round 2's metrics line (no
    file name, as a plain ``write``), or its checkpoint (a file name)."""
    d = tmp_path / "run"
    cls, name = (console.MetricsWriter, "write") if where == "metrics" else (runner_mod.CheckpointStore, "commit")
    real = getattr(cls, name)

    def full_disk(self, *a, **k):
        round_ = a[0]["round"] if where == "metrics" else a[1]
        if round_ == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([str(a[0])] if where == "checkpoint" else []))
        return real(self, *a, **k)

    monkeypatch.setattr(cls, name, full_disk)
    assert auto(d) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    place = str(d / "checkpoints" / ".tmp_round_0002") if where == "checkpoint" else f"a write in {d}"
    assert lines == [
        f"error: the run stopped: {place}: No space left on device (ENOSPC); what was paid is kept in "
        f"{d / 'ledger.sqlite'}; once there is room, resume with  python -m banel_ray.run --resume {d}"
    ]
    cut = ledger(d)
    assert {r[4] for r in cut} == {1, 2}  # round 2 was paid before the write failed
    monkeypatch.undo()

    assert main("--resume", str(d)) == 0  # the command the line gives
    after = ledger(d)
    assert after[: len(cut)] == cut  # the ledger stayed intact
    assert after == ledger(full) and len({r[0] for r in after}) == len(after) == 50  # nothing paid twice


def test_export_writes_a_folder_transformers_loads_with_the_checkpoints_likelihoods(tmp_path, full, capsys):
    import json

    import torch
    from transformers import AutoModelForCausalLM

    from banel_ray import export, tasks
    from banel_ray.core.checkpoint import CheckpointStore
    from banel_ray.models import load_model, load_state, sequence_logprobs

    assert export.main([str(full), "--out", str(tmp_path / "final")]) == 0
    assert "round 3 of" in capsys.readouterr().out
    names = {p.name for p in (tmp_path / "final").iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "banel_ray.json"} <= names
    assert not (tmp_path / "final.tmp").exists()
    info = json.loads((tmp_path / "final" / "banel_ray.json").read_text())
    assert info["round"] == 3 and info["generator_version"] == 3 and info["task"] == "addition_attack_d8"

    task = tasks.build("addition_attack_d8", {})
    prior_dir = task.prepare(progress=lambda s: None)
    db = sqlite3.connect(str(full / "ledger.sqlite"))
    samples = [tuple(json.loads(s)) for (s,) in db.execute("SELECT sample FROM evaluations ORDER BY seq LIMIT 8")]
    db.close()
    pairs = [(task.prompt, s) for s in samples]

    def loglik(model):
        with torch.no_grad():
            return sequence_logprobs(model, pairs, pad_id=task.pad_id)[0]

    exported = AutoModelForCausalLM.from_pretrained(str(tmp_path / "final")).eval()
    ckpt = load_model(prior_dir)
    version, weights = CheckpointStore(full / "checkpoints").generator()
    load_state(ckpt, weights)
    assert version == 3
    assert abs(loglik(exported) - loglik(ckpt)).max() < 1e-5
    assert abs(loglik(exported) - loglik(load_model(prior_dir))).max() > 1e-3  # trained weights, not the prior

    assert export.main([str(full), "--round", "0", "--out", str(tmp_path / "prior")]) == 0
    prior = AutoModelForCausalLM.from_pretrained(str(tmp_path / "prior")).eval()
    assert abs(loglik(prior) - loglik(load_model(prior_dir))).max() < 1e-5


def test_export_refuses_bad_input_in_one_line(tmp_path, full, capsys):
    from banel_ray import export

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    cases = [
        ([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o1")], "is not a run folder (no config.json)"),
        ([str(full), "--round", "1", "--out", str(tmp_path / "o2")], "round 1 of"),  # dropped by checkpoint.keep
        ([str(full), "--round", "9", "--out", str(tmp_path / "o3")], "allowed: --round 0 (the prior), 2, 3"),
        ([str(full), "--out", str(tmp_path / "busy")], f"--out {tmp_path / 'busy'} is not empty"),
        ([str(full), "--out", "/proc/banel_export"], "cannot be written"),
        ([str(full), "--round", "-1", "--out", str(tmp_path / "o4")], "--round -1"),
    ]
    for argv, needle in cases:
        assert export.main(argv) == 2, argv
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and needle in err[0] and err[0].startswith("error: "), (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # nothing written
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]


# ---- python -m banel_ray.export of an LLM task: the tokenizer goes too ----------------------------


def test_export_carries_the_tokenizer_where_the_task_has_one(tmp_path, tiny_llm):
    """An LLM task's prior (here the tiny GSM-Hard Llama) has a tokenizer: the folder gets it too."""
    import json

    from transformers import AutoTokenizer

    from banel_ray import config as C
    from banel_ray import export

    run = tmp_path / "run"
    run.mkdir()
    opts = {"model": str(tiny_llm), "question": 510, "max_new_tokens": 16}
    (run / "config.json").write_text(json.dumps(dict(C.defaults(), task="gsm_hard", task_options=opts)))
    assert export.main([str(run), "--round", "0", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    text = "The answer is 12.5."
    got = AutoTokenizer.from_pretrained(str(tmp_path / "out"))(text)["input_ids"]
    assert got == AutoTokenizer.from_pretrained(str(tiny_llm))(text)["input_ids"] and len(got) > 1
