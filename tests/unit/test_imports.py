"""``core.imports.import_attr``: the one ``module:attribute`` lookup (tasks, reward plug-ins, methods)
and the trust rule for run folders applied where the import happens (pure, milliseconds)."""

import json
import sys
from collections import OrderedDict

import pytest

from banel_ray import methods, tasks, trust
from banel_ray import run as run_cli
from banel_ray.core import imports
from banel_ray.core.errors import ConfigError
from banel_ray.core.method_registry import METHODS
from banel_ray.reward_plugins import spec

# a module that leaves a mark when imported: a refused spec must not run it
MARKED = """
import pathlib

from banel_ray.tasks.base import Task

pathlib.Path(__file__).with_suffix(".ran").write_text("imported")


class Planted(Task):
    free_evaluation = True  # a local reward: estimates may use it

    def __init__(self):
        pass


def fn(sample):
    return 1
"""


@pytest.fixture
def marked(tmp_path, monkeypatch):
    """A fresh importable module ``planted_<n>`` in tmp_path; returns (name, the mark it leaves)."""
    name = f"planted_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(MARKED)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, tmp_path / f"{name}.ran"
    sys.modules.pop(name, None)


def test_a_good_spec_is_the_object_it_names_dotted_attributes_too(monkeypatch):
    assert imports.import_attr("json:dumps") is json.dumps
    assert imports.import_attr("collections:OrderedDict.fromkeys") == OrderedDict.fromkeys
    assert imports.import_attr("banel_ray.core.errors:ConfigError") is ConfigError
    # the three lookups that were written three times go through it
    assert tasks.resolve("callable") is imports.import_attr("banel_ray.reward_plugins:CallableTask")
    monkeypatch.setitem(METHODS, "dumps", ("json:dumps", "a registered method, here any attribute"))
    assert methods.get("dumps") is json.dumps
    assert spec.build("banel_ray.reward_plugins:parity").rewards([(1,), (2,)]) == [1, 0]


@pytest.mark.parametrize("bad", ["json.dumps", "json", "json:", ":dumps", "json:dumps:x", "my-pkg:f", " json:dumps", 3])
def test_a_malformed_spec_is_one_config_error_and_imports_nothing(bad):
    with pytest.raises(ConfigError) as e:
        imports.import_attr(bad)
    assert str(e.value) == f"cannot import {bad!r}: expected 'module:attribute' (e.g. my_pkg.my_module:MyClass)"
    assert not imports.is_spec(bad) or bad == " json:dumps"  # trust.py strips blanks: it sees more, never less


def test_a_missing_module_or_attribute_is_one_config_error_naming_it():
    with pytest.raises(ConfigError) as e:
        imports.import_attr("no_such_module_here:f")
    assert str(e.value) == (
        "cannot import 'no_such_module_here:f' (ModuleNotFoundError: No module named 'no_such_module_here')"
    )
    with pytest.raises(ConfigError) as e:
        imports.import_attr("json:nope")
    assert str(e.value) == "cannot import 'json:nope' (AttributeError: module 'json' has no attribute 'nope')"
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        imports.import_attr("collections:OrderedDict.nope")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError):  # a ConfigError is a ValueError, as reward_plugins' resolve raised
        imports.import_attr("json")


def test_registries_keep_their_own_errors():
    with pytest.raises(KeyError, match="unknown method 'ppo'"):
        methods.get("ppo")
    with pytest.raises(ConfigError, match="expected 'module:attribute'"):
        tasks.resolve("no_such_task")  # neither registered nor a module:Class path
    assert spec.check_spec("no_such_module_here:f").startswith(
        "cannot import 'no_such_module_here:f' (ModuleNotFoundError: No module named 'no_such_module_here'); allowed:"
    )


def test_inside_only_a_spec_outside_the_allowed_set_is_refused_before_its_module_runs(marked):
    name, mark = marked
    with imports.only({"json:dumps"}):
        assert imports.import_attr("json:dumps") is json.dumps
        with pytest.raises(ConfigError) as e:
            imports.import_attr(f"{name}:fn")
    assert str(e.value).startswith(f"cannot import '{name}:fn': a run folder names it and a run folder is data")
    assert "--trust-run-folder" in str(e.value)
    assert not mark.exists() and name not in sys.modules  # refused before anything was imported
    with imports.only(None):  # --trust-run-folder: anything
        assert imports.import_attr(f"{name}:fn")((1,)) == 1
    assert mark.exists()


def test_trust_finds_exactly_the_specs_import_attr_would_import():
    """What the resume check scans for (trust.code_refs) is the grammar import_attr accepts: a
    string it does not flag is one import_attr refuses to import."""
    cfg = {"task": "my_pkg.tasks:MyTask", "task_options": {"oracle": {"fn": "evil:x-y", "cls": "a.b:C.d"}}}
    assert trust.code_refs(cfg) == {"task": "my_pkg.tasks:MyTask", "task_options.oracle.cls": "a.b:C.d"}
    with pytest.raises(ConfigError, match="expected 'module:attribute'"):
        imports.import_attr("evil:x-y")  # not flagged, and never imported
    assert trust.allowed_code(["my_pkg.tasks:MyTask"]) == trust.shipped() | {"my_pkg.tasks:MyTask"}
    assert trust.untrusted(cfg, ["my_pkg.tasks:MyTask"]) == {"task_options.oracle.cls": "a.b:C.d"}


def test_a_resumed_folder_is_read_under_the_trust_rule(tmp_path, marked, monkeypatch):
    """run.resumed_config reads the folder's config inside imports.only: with the up-front check
    (check_code) switched off, the folder's own code is still refused where it would be imported,
    and runs once it is named again or the folder is trusted."""
    name, mark = marked
    rd = tmp_path / "run"
    rd.mkdir()
    (rd / "config.json").write_text(json.dumps({"task": f"{name}:Planted", "task_options": {}}))
    monkeypatch.setattr(run_cli, "check_code", lambda *a, **k: None)
    with pytest.raises(ConfigError, match=f"unknown task '{name}:Planted'"):
        run_cli.resumed_config(rd, run_cli.parse_args(["--resume", str(rd)]))
    assert not mark.exists() and name not in sys.modules
    again = run_cli.parse_args(["--resume", str(rd), "--set", f"task={name}:Planted"])
    assert run_cli.resumed_config(rd, again)["task"] == f"{name}:Planted" and mark.exists()
    trusted = run_cli.parse_args(["--resume", str(rd), "--trust-run-folder"])
    assert run_cli.resumed_config(rd, trusted)["task"] == f"{name}:Planted"
