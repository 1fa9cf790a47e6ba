"""Bad input is refused before anything starts: estimates that would call a paid oracle, oracle
specs that cannot work, run folders that cannot be written or are damaged; and run folders are
data (the code a resumed config names is not imported unless named again)."""

import json
import sqlite3

import pytest

from banel_ray import config as C
from banel_ray import trust
from banel_ray.preflight import run_dir_problem

CALLABLE = ["task=callable", "task_options.base=addition_attack"]
PARITY = "task_options.oracle=banel_ray.reward_plugins:parity"


def error(sets):
    with pytest.raises(C.ConfigError) as e:
        C.load(None, sets)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_estimates_never_call_a_paid_oracle_unless_a_budget_allows_it():
    msg = error(CALLABLE + [PARITY, "budget=40"])  # eval.samples defaults to 20,000
    assert "no free evaluator" in msg and "eval.paid_budget" in msg and "eval.samples: 0" in msg
    assert C.load(None, CALLABLE + [PARITY, "eval.samples=0"])
    assert C.load(None, CALLABLE + [PARITY, "eval.paid_budget=100"])
    assert C.load(None, CALLABLE + [PARITY, "task_options.evaluator=banel_ray.reward_plugins:parity"])
    assert C.load(None, ["task=addition_attack"])  # a built-in task's rewards are free


@pytest.mark.parametrize("final", ["1000", "-1"])
def test_a_final_evaluation_a_paid_task_cannot_score_is_refused_before_anything_is_paid(final):
    """Before: the run paid its whole budget, then failed in its final fresh-sample evaluation
    (the evaluator never calls a paid oracle)."""
    sets = CALLABLE + [PARITY, "eval.samples=0", f"eval.final_samples={final}"]
    msg = error(sets)
    assert f"'eval.final_samples' is {final} but task callable has no free evaluator" in msg
    assert "task_options.evaluator" in msg and "eval.final_samples: 0" in msg
    assert "eval.final_samples" in error(sets + ["eval.samples=40", "eval.paid_budget=100"])  # in-run only
    assert C.load(None, sets + ["task_options.evaluator=banel_ray.reward_plugins:parity"])
    assert C.load(None, CALLABLE + [PARITY, "eval.samples=0", "eval.final_samples=0"])
    assert C.load(None, ["task=addition_attack", "eval.final_samples=-1"])  # a built-in task's rewards are free


def test_a_plain_task_class_is_not_assumed_free():
    from banel_ray.tasks.base import Task

    class Paid(Task):
        pass

    assert not Paid.evaluation_is_free({}) and not Task.free_evaluation


@pytest.mark.parametrize(
    "sets,needle",
    [
        (["task_options.oracle=no_such_module:reward"], "cannot import 'no_such_module:reward'"),
        (["task_options.oracle={kind: sample, fn: 'banel_ray.reward_plugins:nope'}"], "cannot import"),
        (["task_options.oracle={kind: carrier_pigeon}"], "unknown oracle kind 'carrier_pigeon'"),
        (["task_options.oracle={kind: http, url: 'ftp://x/y'}"], "needs an http(s) URL"),
        (["task_options.oracle={kind: http, url: 'http://h/r', verify: false}"], "unknown key 'verify'"),
        (["task_options.oracle={kind: batch}"], "kind batch needs 'fn'"),
        (["task_options.oracle=42"], "allowed:"),
        ([], "needs 'task_options.oracle'"),
        ([PARITY, "task_options.base=no_task"], "unknown task 'task_options.base'"),
        ([PARITY, "task_options.evaluator=nowhere:fn"], "'task_options.evaluator': cannot import"),
    ],
)
def test_unusable_oracle_specs_are_one_line_errors(sets, needle):
    assert needle in error(CALLABLE + ["eval.samples=0"] + sets)


def test_a_task_module_that_fails_to_import_is_a_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "broken_task.py").write_text("this is not python\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "unknown task 'broken_task:T'" in error(["task=broken_task:T"])


# ---- the run folder ----------------------------------------------------------------------------------


def test_run_folders_that_cannot_be_written(tmp_path):
    (tmp_path / "afile").write_text("x")
    assert "is a file" in run_dir_problem(tmp_path / "afile", False)
    assert "is a file, not a folder" in run_dir_problem(tmp_path / "afile" / "run", False)
    assert "cannot be written" in run_dir_problem("/proc/self/banel_run", False)
    assert "cannot make /proc/banel_run" in run_dir_problem("/proc/banel_run", False)  # root passes os.access
    assert run_dir_problem(tmp_path / "new" / "run", False) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # the probe made and removed "new/run"


def make_run(d, rounds=1):
    """A run folder as a finished run leaves it (the parts preflight reads)."""
    ck = d / "checkpoints" / "round_0001"
    ck.mkdir(parents=True)
    (ck / "manifest.json").write_text(json.dumps({"round": rounds, "complete": True}))
    (ck / "runner.json").write_text(json.dumps({"round": rounds}))
    (d / "checkpoints" / "LATEST").write_text("round_0001")
    (d / "config.json").write_text("{}")
    db = sqlite3.connect(d / "ledger.sqlite")
    db.execute("CREATE TABLE evaluations (key TEXT, sample TEXT, status TEXT, charged INTEGER)")
    db.commit()
    db.close()
    (d / "metrics.jsonl").write_text('{"round": 1}\n{"round": 2, "nre')  # last line torn by a kill


def test_a_fresh_run_does_not_start_in_a_folder_holding_a_run(tmp_path):
    make_run(tmp_path)
    assert "already holds a run" in run_dir_problem(tmp_path, False)
    assert f"--resume {tmp_path}" in run_dir_problem(tmp_path, False)
    assert run_dir_problem(tmp_path, True) is None  # intact (a torn last metrics line is redone)


@pytest.mark.parametrize(
    "damage,needle",
    [
        (lambda d: (d / "checkpoints" / "LATEST").write_text("round_0009"), "missing or damaged"),
        (lambda d: (d / "checkpoints" / "round_0001" / "runner.json").write_text("{"), "missing or damaged"),
        (lambda d: (d / "checkpoints" / "round_0001" / "manifest.json").write_text("[]"), "missing or damaged"),
        (lambda d: (d / "ledger.sqlite").write_bytes(b"garbage" * 100), "not a readable SQLite ledger"),
        (lambda d: (d / "metrics.jsonl").write_text('{"round": 1\n{"round": 2}\n'), "line 1 is not JSON"),
    ],
)
def test_a_damaged_run_folder_is_named(tmp_path, damage, needle):
    make_run(tmp_path)
    damage(tmp_path)
    msg = run_dir_problem(tmp_path, True)
    assert msg and needle in msg and "\n" not in msg


def _paid_ledger(d, n):
    """A real ledger holding ``n`` paid rows."""
    from banel_ray.actors.ledger import Ledger, sample_key

    (d / "ledger.sqlite").unlink(missing_ok=True)
    led = Ledger(d / "ledger.sqlite")
    led.record([{"key": sample_key([i]), "sample": [i], "reward": 0, "round": 1} for i in range(n)])
    led.close()


def test_a_resume_whose_ledger_lost_what_the_checkpoint_spent_is_refused(tmp_path):
    """Without the ledger (or with an older copy) a resumed run would pay for those samples again."""
    make_run(tmp_path)
    state = {"round": 1, "history": [{"round": 1, "nres": 20}]}
    (tmp_path / "checkpoints" / "round_0001" / "runner.json").write_text(json.dumps(state))
    _paid_ledger(tmp_path, 20)
    assert run_dir_problem(tmp_path, True) is None
    _paid_ledger(tmp_path, 12)
    msg = run_dir_problem(tmp_path, True)
    assert "holds 12 paid evaluations" in msg and "records 20 NREs spent" in msg and "\n" not in msg
    assert "put the run's ledger.sqlite back" in msg
    (tmp_path / "ledger.sqlite").unlink()
    msg = run_dir_problem(tmp_path, True)
    assert "ledger.sqlite is missing" in msg and "would pay for them again" in msg and "\n" not in msg
    assert not (tmp_path / "ledger.sqlite").exists()  # looked at, not created


def test_a_budget_lowered_on_resume_below_what_was_spent_is_refused(tmp_path):
    make_run(tmp_path)
    _paid_ledger(tmp_path, 20)
    msg = run_dir_problem(tmp_path, True, budget=19)
    assert "budget 19 is below the 20 NREs this run has already spent" in msg and "--set budget=20" in msg
    assert run_dir_problem(tmp_path, True, budget=20) is None


def test_a_ledger_missing_or_replaced_before_the_first_checkpoint_is_refused(tmp_path):
    """A run killed before its first checkpoint has no record of its spend but its ledger; the
    ledger's id, recorded in ledger.id before anything was paid, tells its own ledger from none or
    another one, for a resume and for a new run in that folder."""
    from banel_ray.actors.ledger import adopt
    from banel_ray.preflight import LEDGER_ID_FILE, ledger_id

    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text("{}")
    lid = adopt(d)  # what a run does before its reward service starts
    assert (d / LEDGER_ID_FILE).read_text().strip() == lid == ledger_id(d / "ledger.sqlite")
    assert adopt(d) == lid  # the same ledger on every start
    _paid_ledger(d, 0)  # another ledger (a new id) in its place
    _paid_ledger(d, 7)
    assert ledger_id(d / "ledger.sqlite") != lid
    for resume in (True, False):
        msg = run_dir_problem(d, resume)
        assert msg and "\n" not in msg, msg
        assert f"is not this run's ledger (its id is {ledger_id(d / 'ledger.sqlite')})" in msg
        assert f"records that this run made ledger {lid}" in msg and "put the run's ledger.sqlite back" in msg
    (d / "ledger.sqlite").unlink()
    before = sorted(p.name for p in d.iterdir())
    msg = run_dir_problem(d, True)
    assert msg.startswith(f"--resume: {d / 'ledger.sqlite'} is missing but {d / LEDGER_ID_FILE} records")
    assert "\n" not in msg and f"(the copy whose id is {lid}" in msg
    assert run_dir_problem(d, False).startswith(f"run_dir {d}: {d / 'ledger.sqlite'} is missing")
    assert sorted(p.name for p in d.iterdir()) == before  # looked at, nothing created
    (d / LEDGER_ID_FILE).unlink()  # a folder from before ledger ids: no record, nothing to compare
    assert run_dir_problem(d, True) is None


# ---- run folders are data --------------------------------------------------------------------------


def test_code_named_by_a_config_is_found_however_nested():
    cfg = {
        "task": "my_pkg.tasks:MyTask",
        "task_options": {
            "oracle": {"kind": "class", "cls": "evil:Oracle", "inner": [{"fn": "deep.mod:f"}]},
            "base": "addition_attack",
            "url": "https://example.org/rewards",
            "note": "ratio 1:2",
        },
    }
    assert trust.code_refs(cfg) == {
        "task": "my_pkg.tasks:MyTask",
        "task_options.oracle.cls": "evil:Oracle",
        "task_options.oracle.inner[0].fn": "deep.mod:f",
    }
    assert set(trust.untrusted(cfg, [])) == {"task", "task_options.oracle.cls", "task_options.oracle.inner[0].fn"}
    named = ["my_pkg.tasks:MyTask", {"kind": "class", "cls": "evil:Oracle"}]
    assert trust.untrusted(cfg, named) == {"task_options.oracle.inner[0].fn": "deep.mod:f"}
    shipped = {"task": "callable", "task_options": {"oracle": "banel_ray.reward_plugins:parity"}}
    assert trust.untrusted(shipped, []) == {} and trust.naming_sets(shipped) == []
    assert trust.naming_sets(cfg)[0] == "task=my_pkg.tasks:MyTask"


def test_keys_that_send_read_secrets_or_write_elsewhere_count_only_when_named_again():
    """trust.SENSITIVE: a resumed folder's non-default checkpoint.dir, HTTP url, headers_env (or a
    bare URL oracle) are listed unless the command line gives the same value."""
    from banel_ray import config as C

    http = {"kind": "http", "url": "https://evil.example/r", "headers_env": {"Authorization": "AWS_SECRET"}}
    cfg = dict(C.defaults(), **{"checkpoint.dir": "/elsewhere", "task_options": {"oracle": http}})
    assert trust.sensitive(C.defaults()) == {}
    online = dict(C.defaults(), **{"logging.wandb_mode": "online"})  # would send to W&B with the user's key
    assert trust.sensitive(online) == {"logging.wandb_mode": "online"}
    assert set(trust.unnamed_sensitive(cfg, C.defaults())) == {
        "checkpoint.dir",
        "task_options.oracle.url",
        "task_options.oracle.headers_env",
    }
    mine = dict(C.defaults(), **{"checkpoint.dir": "/elsewhere", "task_options": {"oracle": dict(http)}})
    assert trust.unnamed_sensitive(cfg, mine) == []
    mine["checkpoint.dir"] = "/other"  # a different value is not the folder's value named again
    assert trust.unnamed_sensitive(cfg, mine) == ["checkpoint.dir"]
    bare = dict(C.defaults(), task_options={"oracle": "http://evil.example/r"})
    assert trust.unnamed_sensitive(bare, C.defaults()) == ["task_options.oracle"]
    sets = trust.naming_sets(cfg)  # what compare passes to resume its own runs
    assert "checkpoint.dir=/elsewhere" in sets and any(s.startswith("task_options=") for s in sets)


# ---- every check before Ray starts (issue 24, item 7) --------------------------------------------


@pytest.fixture
def no_ray(monkeypatch):
    """ray.init fails the test: a refused run must not start (or join) any Ray instance."""
    import ray

    calls = []

    def init(*a, **k):
        calls.append((a, k))
        raise AssertionError("ray.init was called")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield calls
    assert not calls and not ray.is_initialized()


def test_a_bad_run_dir_is_refused_before_any_ray_process_starts(no_ray, tmp_path, capsys):
    from banel_ray import run
    from banel_ray.runtime import job

    # the command line (the default runtime is a local Ray instance)
    assert run.main(["--set", "run_dir=/proc/banel_run"]) == 2
    err = capsys.readouterr()
    assert err.err.startswith("error: run_dir /proc/banel_run cannot be written") and err.out == ""
    # --resume auto: the same check, the same line
    assert run.main(["--resume", "auto", "--set", "run_dir=/proc/banel_run"]) == 2
    assert "cannot be written" in capsys.readouterr().err
    # the Python entry point (what Tune trials and notebooks call)
    with pytest.raises(C.ConfigError, match="cannot be written"):
        job.run(C.load(None, []), "/proc/banel_run")
    assert "preparing models" not in capsys.readouterr().out


def test_too_few_cpus_for_a_local_instance_of_known_size_is_refused_before_ray_starts(no_ray, tmp_path, capsys):
    from banel_ray.runtime import job

    # every key the size check reads, named (not left to the defaults or the environment)
    cfg = C.load(None, ["runtime=ray", "ray.address=", "ray.num_cpus=1", "sampler.num_actors=4", "sampler.num_cpus=1"])
    with pytest.raises(C.ConfigError, match=r"the actors need [\d.]+ CPUs but the local Ray instance has 1"):
        job.run(cfg, tmp_path / "run")
    assert "preparing models" not in capsys.readouterr().out  # before the task's models, too
    assert not (tmp_path / "run").exists()
