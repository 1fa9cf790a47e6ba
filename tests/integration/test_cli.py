"""The command line refuses bad input in one line with exit 2, before anything starts; --help answers."""

import subprocess
import sys
import time

import pytest

from helpers import assert_one_line_error, hold_in_another_process


def _run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "banel_ray.run", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "budgett=5"], "unknown key 'budgett'"),
        (["--set", "budget=-1"], "'budget' must be >= 1"),
        (["--set", "sampler.backend=tensorrt"], "'sampler.backend' must be one of vllm, torch"),
        (["--set", "task=mnist_9"], "unknown task 'mnist_9'"),
        (["--config", "missing.yaml"], "config file not found: missing.yaml"),
        (["--resume", "no_such_run"], "not a run folder"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--set", "filter.factor=.nan"], "'filter.factor' must be a finite number"),
        (["--set", "negative.lr=-.inf"], "'negative.lr' must be a finite number"),
        (["--set", "oracle.budget_usd=5"], "'oracle.budget_usd' needs 'oracle.cost_per_call' > 0"),
        (
            ["--set", "logging.backends=comet"],
            "'logging.backends' must be a list of tensorboard, mlflow, wandb, got 'comet'",
        ),
        (
            ["--set", "task=callable", "--set", "task_options.base=addition_attack"]
            + ["--set", "task_options.oracle=no_such_module:reward", "--set", "eval.samples=0"],
            "cannot import 'no_such_module:reward'",
        ),
        (  # a paid plug-in oracle and success-rate estimates: refused, not called 20,000 times
            ["--set", "task=callable", "--set", "task_options.base=addition_attack"]
            + ["--set", "task_options.oracle=banel_ray.reward_plugins:parity", "--set", "budget=40"],
            "no free evaluator",
        ),
        (  # ... and a final evaluation it could not score: refused now, not after the budget is spent
            ["--set", "task=callable", "--set", "task_options.base=addition_attack", "--set", "eval.samples=0"]
            + ["--set", "task_options.oracle=banel_ray.reward_plugins:parity", "--set", "eval.final_samples=-1"],
            "'eval.final_samples' is -1 but task callable has no free evaluator",
        ),
    ],
)
def test_cli_bad_input_one_line_exit_2(tmp_path, args, needle):
    r = _run(*args, "--set", f"run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(r, needle)
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()  # stopped before anything was written or started


def test_cli_help_lists_keys(tmp_path):
    r = _run("--help", cwd=tmp_path)
    assert r.returncode == 0
    for key in ("filter.factor", "negative.epochs", "sampler.backend", "--resume"):
        assert key in r.stdout


@pytest.mark.parametrize(
    "run_dir,needle",
    [("/proc/self/banel_run", "cannot be written"), ("{tmp}/afile/run", "is a file, not a folder")],
)
def test_cli_unwritable_run_folder_one_line_exit_2(tmp_path, run_dir, needle):
    (tmp_path / "afile").write_text("x")
    r = _run("--set", f"run_dir={run_dir.format(tmp=tmp_path)}", cwd=tmp_path)
    assert_one_line_error(r, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def _names(pids) -> set[str]:
    out = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                out.add(f.read().strip())
        except OSError:
            pass
    return out


def test_cli_run_dir_that_cannot_be_made_is_refused_before_ray_starts(tmp_path):
    """/proc lets root pass every permission check and refuses only the mkdir itself: the run
    folder is made and written for real (then removed) before the task's models or Ray start.
    The command's process tree is watched while it runs: no Ray process (``gcs_server``,
    ``raylet``: a local instance starts them first and keeps them for seconds) ever appears."""
    from helpers import descendants

    t0 = time.monotonic()
    p = subprocess.Popen(  # the default runtime: a local Ray instance
        [sys.executable, "-m", "banel_ray.run", "--set", "run_dir=/proc/banel_run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    seen = set()
    while p.poll() is None and time.monotonic() - t0 < 120:
        seen |= _names(descendants(p.pid) - {p.pid})
        time.sleep(0.05)
    out, err = p.communicate(timeout=60)
    took = time.monotonic() - t0
    r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    assert not seen & {"gcs_server", "raylet", "ray::IDLE"}, seen
    assert_one_line_error(r, "run_dir /proc/banel_run cannot be written (cannot make /proc/banel_run")
    assert "Traceback" not in r.stderr and "Ray instance" not in r.stderr
    assert r.stdout == ""  # not even "[banel_ray] task ...: preparing models"
    assert took < 20, took  # a local Ray takes longer than this to start and stop on 2 cores
    assert sorted(tmp_path.iterdir()) == []


def _snapshot(d):
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.rglob("*"))}


def _run_folder(d, **cfg):
    """A run folder as a run leaves it (the parts a resume reads first), config keys overridden."""
    import json

    from banel_ray import config as C

    d.mkdir()
    (d / "config.json").write_text(json.dumps(dict(C.defaults(), run_dir=str(d), **cfg)))
    ck = d / "checkpoints" / "round_0001"
    ck.mkdir(parents=True)
    (ck / "manifest.json").write_text(json.dumps({"round": 1, "version": 1, "complete": True, "shards": {}}))
    (ck / "runner.json").write_text(json.dumps({"round": 1, "version": 1, "history": [], "seen": []}))
    (d / "checkpoints" / "LATEST").write_text("round_0001")
    from banel_ray.actors.ledger import Ledger

    Ledger(d / "ledger.sqlite").close()


@pytest.mark.parametrize(
    "damage,needle",
    [
        (lambda d: (d / "config.json").write_text("[1, 2]"), "damaged (not a mapping of keys)"),
        (lambda d: (d / "config.json").write_text('{"budget": 5'), "damaged (JSONDecodeError)"),
        (lambda d: (d / "ledger.sqlite").write_bytes(b"x" * 4096), "not a readable SQLite ledger"),
        (lambda d: (d / "checkpoints" / "LATEST").write_text("round_0007"), "missing or damaged"),
        (lambda d: (d / "checkpoints" / "round_0001" / "runner.json").write_text("{"), "missing or damaged"),
    ],
)
def test_cli_damaged_run_folder_one_line_exit_2_nothing_written(tmp_path, damage, needle):
    d = tmp_path / "run"
    _run_folder(d)
    damage(d)
    before = _snapshot(d)
    r = _run("--resume", str(d), cwd=tmp_path)
    assert_one_line_error(r, needle)
    assert _snapshot(d) == before


def _spent(d, n):
    """The run folder's checkpoint records ``n`` NREs spent and its ledger holds them."""
    import json

    from banel_ray.actors.ledger import Ledger, sample_key

    (d / "checkpoints" / "round_0001" / "runner.json").write_text(
        json.dumps({"round": 1, "version": 1, "history": [{"round": 1, "nres": n}], "seen": []})
    )
    led = Ledger(d / "ledger.sqlite")
    led.record([{"key": sample_key([i]), "sample": [i], "reward": 0, "round": 1} for i in range(n)])
    led.close()


def test_cli_resume_without_the_ledger_is_refused_before_anything_is_paid(tmp_path):
    """Before: the checkpoint was restored and a fresh, empty ledger paid for every sample again."""
    d = tmp_path / "run"
    _run_folder(d)
    _spent(d, 20)
    (d / "ledger.sqlite").unlink()
    before = _snapshot(d)
    r = _run("--resume", str(d), cwd=tmp_path)
    assert_one_line_error(r, "ledger.sqlite is missing but the checkpoint")
    assert "records 20 NREs spent" in r.stderr and "put the run's ledger.sqlite back" in r.stderr
    assert _snapshot(d) == before  # no ledger created, nothing paid


@pytest.mark.parametrize("damage", ["deleted", "replaced"])
def test_cli_resume_whose_ledger_went_before_the_first_checkpoint_is_refused(tmp_path, damage):
    """A run killed before its first checkpoint has no record of its spend but its ledger: the
    ledger's id, recorded in ledger.id before anything was paid, is what tells it is gone."""
    import json

    from banel_ray import config as C
    from banel_ray.actors.ledger import Ledger, adopt, sample_key

    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(dict(C.defaults(), run_dir=str(d))))
    lid = adopt(d)
    led = Ledger(d / "ledger.sqlite", ledger_id=lid)
    led.record([{"key": sample_key([i]), "sample": [i], "reward": 0, "round": 1} for i in range(20)])
    led.close()
    (d / "ledger.sqlite").unlink()
    if damage == "replaced":
        Ledger(d / "ledger.sqlite").close()  # an empty ledger in its place: before, the run paid all again
    before = _snapshot(d)
    r = _run("--resume", str(d), cwd=tmp_path)
    what = "is missing" if damage == "deleted" else "is not this run's ledger"
    assert_one_line_error(r, f"--resume: {d / 'ledger.sqlite'} {what}")
    assert f"records that this run made ledger {lid}" in r.stderr and "put the run's ledger.sqlite back" in r.stderr
    assert _snapshot(d) == before  # nothing created, nothing paid


def test_cli_a_yaml_error_in_the_config_names_its_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("rounds: 3\nfilter:\n  factor: [4\nbudget: 5\n")
    r = _run("--config", "bad.yaml", "--set", f"run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(r, "bad.yaml is not valid YAML at line 4, column 7")
    assert "Traceback" not in r.stderr and not (tmp_path / "run").exists()


def test_cli_resume_with_a_budget_below_what_was_spent_is_refused(tmp_path):
    d = tmp_path / "run"
    _run_folder(d)
    _spent(d, 20)
    before = _snapshot(d)
    r = _run("--resume", str(d), "--set", "budget=10", cwd=tmp_path)
    assert_one_line_error(r, "budget 10 is below the 20 NREs this run has already spent")
    assert _snapshot(d) == before


def test_cli_fresh_run_in_a_folder_holding_a_run_is_refused(tmp_path):
    d = tmp_path / "run"
    _run_folder(d)
    before = _snapshot(d)
    r = _run("--set", f"run_dir={d}", cwd=tmp_path)
    assert_one_line_error(r, "already holds a run")
    assert _snapshot(d) == before


def test_cli_a_run_folder_another_process_holds_is_refused_until_that_process_dies(tmp_path):
    """A real process holds the folder's lock (as a live run does): a second --resume, or a start
    in the same folder, is refused in one line; once the holder is SIGKILLed the OS has dropped it."""
    import os
    import signal

    from banel_ray.preflight import run_dir_problem

    d = tmp_path / "run"
    _run_folder(d)
    p = hold_in_another_process(d)
    try:
        before = _snapshot(d)
        r = _run("--resume", str(d), cwd=tmp_path)
        assert_one_line_error(r, f"run_dir {d} is in use by process {p.pid}")
        assert f"kill {p.pid}" in r.stderr
        r = _run("--set", f"run_dir={d}", cwd=tmp_path)
        assert_one_line_error(r, f"is in use by process {p.pid}")
        assert _snapshot(d) == before
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    assert run_dir_problem(d, True) is None  # resumable again, with no clean-up


EVIL = """
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("the run folder's code ran")
from banel_ray.tasks.base import Task
class Evil(Task):
    @staticmethod
    def check_options(options):
        return "evil task refused to run"
"""


def test_resume_never_imports_code_the_run_folder_names_unless_named_again(tmp_path):
    """A downloaded run folder whose config names code: refused (nothing imported) unless the user
    names that code again or passes --trust-run-folder."""
    import os

    (tmp_path / "evil_task.py").write_text(EVIL)
    d = tmp_path / "run"
    _run_folder(d, task="evil_task:Evil")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "banel_ray.run", "--resume", str(d), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )

    r = run()
    assert_one_line_error(r, "names code (task=evil_task:Evil)")
    assert "--trust-run-folder" in r.stderr and not (tmp_path / "IMPORTED").exists()
    r = run("--set", "task_options.evaluator=other_mod:reward")  # naming other code trusts only that
    assert_one_line_error(r, "names code (task=evil_task:Evil)")
    assert not (tmp_path / "IMPORTED").exists()
    r = run("--set", "task=evil_task:Evil")  # the user names it again: imported
    assert_one_line_error(r, "evil task refused to run")
    assert (tmp_path / "IMPORTED").exists()
    (tmp_path / "IMPORTED").unlink()
    r = run("--trust-run-folder")
    assert_one_line_error(r, "evil task refused to run")
    assert (tmp_path / "IMPORTED").exists()


def test_evaluate_and_export_never_use_what_a_run_folder_names_unless_trusted(tmp_path):
    """evaluate and export read a run folder without resuming it: its code is not imported, and
    evaluate (which scores samples) does not send them to the folder's oracle URL, unless the user
    passes --trust-run-folder."""
    import os

    (tmp_path / "evil_task.py").write_text(EVIL)
    d, web = tmp_path / "run", tmp_path / "web"
    _run_folder(d, task="evil_task:Evil")
    _run_folder(web, task_options={"oracle": "https://collector.example/score"})
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")

    def run(module, *args):
        return subprocess.run(
            [sys.executable, "-m", f"banel_ray.{module}", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )

    for module, extra in (("evaluate", []), ("export", ["--out", str(tmp_path / "out")])):
        r = run(module, str(d), *extra)
        assert_one_line_error(r, "names code (evil_task:Evil)")
        assert "--trust-run-folder" in r.stderr and not (tmp_path / "IMPORTED").exists()
    assert_one_line_error(run("evaluate", str(web)), "sets task_options.oracle, which can send samples elsewhere")
    run("evaluate", str(d), "--trust-run-folder")  # trusted: the folder's code is imported
    assert (tmp_path / "IMPORTED").exists()


def test_resume_refuses_a_folders_keys_that_send_data_or_write_elsewhere_unless_named_again(tmp_path):
    """checkpoint.dir elsewhere, an HTTP oracle's url and headers_env (trust.SENSITIVE) from a run
    folder: refused in one line before anything starts, unless named again or --trust-run-folder."""
    import json

    d, other = tmp_path / "run", tmp_path / "elsewhere"
    _run_folder(d, **{"checkpoint.dir": str(other), "runtime": "local"})

    def run(folder, *args):
        return subprocess.run(
            [sys.executable, "-m", "banel_ray.run", "--resume", str(folder), "--print-config", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )

    r = run(d)
    assert_one_line_error(r, "sets checkpoint.dir, which can send data")
    assert "--set KEY=VALUE" in r.stderr and "--trust-run-folder" in r.stderr and not other.exists()
    r = run(d, "--set", f"checkpoint.dir={tmp_path / 'third'}")  # the user's own value: accepted
    assert r.returncode == 0, r.stderr
    for ok in (["--set", f"checkpoint.dir={other}"], ["--trust-run-folder"]):
        r = run(d, *ok)
        assert r.returncode == 0 and f"dir: {other}" in r.stdout, r.stderr
    assert not other.exists()
    h = tmp_path / "http"
    oracle = {"kind": "http", "url": "https://oracle.example/r", "headers_env": {"Authorization": "HOME"}}
    _run_folder(h, task="callable", task_options={"base": "addition_attack", "oracle": oracle})
    r = run(h)
    assert_one_line_error(r, "sets task_options.oracle.url, task_options.oracle.headers_env")
    assert "--set task_options.oracle=..." in r.stderr
    r = run(h, "--set", f"task_options.oracle={json.dumps(oracle)}")  # named again: past the gate
    assert_one_line_error(r, "has no free evaluator")  # (the next check: a paid oracle needs one)


def test_evaluate_and_select_refuse_bad_input_in_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "banel_ray.evaluate", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(r, "is not a run folder (no config.json)")
    r = subprocess.run(
        [sys.executable, "-m", "tuning.select", "--experiment", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(r, "--experiment: folder not found")
