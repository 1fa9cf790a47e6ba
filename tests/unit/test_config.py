"""Configuration and bad input: one line naming the key and what is allowed, exit 2, no actor started."""

import dataclasses
import pickle

import pytest

from banel_ray import config as C


def test_defaults_validate_and_set_overrides():
    cfg = C.load(None, ["filter.factor=4", "rounds=3", "generator.reset=true", "run_dir=123"])
    assert cfg["filter.factor"] == 4.0 and isinstance(cfg["filter.factor"], float)
    assert cfg["rounds"] == 3 and cfg["generator.reset"] is True
    assert cfg["run_dir"] == "123"


def test_exponent_without_dot_is_a_float():
    # YAML 1.1 reads '1e-3' as a string; a float key must still take it
    cfg = C.load(None, ["generator.lr=1e-3", "negative.lr=2E-4"])
    assert cfg["generator.lr"] == 1e-3 and cfg["negative.lr"] == 2e-4
    with pytest.raises(C.ConfigError, match="generator.lr"):
        C.load(None, ["generator.lr=fast"])


def test_yaml_nested_and_dotted(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("filter: {factor: 8}\nnegative.epochs: 3\ntask_options: {max_digits: 8}\n")
    cfg = C.load(str(p), ["task_options.max_digits=8"])
    assert cfg["filter.factor"] == 8.0 and cfg["negative.epochs"] == 3
    assert cfg["task_options"] == {"max_digits": 8}


@pytest.mark.parametrize(
    "sets,needle",
    [
        (["filter.facter=2"], "unknown key 'filter.facter'; allowed: filter.end, filter.factor"),
        (["rounds=abc"], "'rounds' must be int, got 'abc'"),
        (["filter.factor=0.5"], "'filter.factor' must be >= 1.0, got 0.5"),
        (["mode=greedy"], "'mode' must be one of distill, sequential"),
        (["method=ppo"], "'method' must be one of banel, banel_sequential"),
        (["mode=sequential", "method=rnd"], "'mode' sequential is BaNEL's Algorithm 1"),
        (["filter.factor=nan"], "'filter.factor' must be a finite number"),
        (["generator.lr=inf"], "'generator.lr' must be a finite number"),
        (["task=nope"], "unknown task 'nope'; allowed: addition_attack"),
        (["task_options.digits=3"], "unknown key 'task_options.digits' for task addition_attack"),
        (["task_options.solver=/no/such/dir"], "'task_options.solver' folder not found"),
        (["rounds"], "--set expects key.path=value"),
        (["oracle.budget_usd=5"], "'oracle.budget_usd' needs 'oracle.cost_per_call' > 0"),
        (["oracle.budget_usd=0.5", "oracle.cost_per_call=1"], "is below one call's 'oracle.cost_per_call' 1"),
        (["oracle.cost_per_call=-0.1"], "'oracle.cost_per_call' must be >= 0.0"),
        (["oracle.tokens_per_minute=lots"], "'oracle.tokens_per_minute' must be float"),
        (["oracle.retry_after_max_s=-1"], "'oracle.retry_after_max_s' must be >= 0.0"),
        (
            ["generator.distil_from=exact"],
            "needs a task that enumerates its space (mnist_0to6, mnist_0to6_rare, synthetic)",
        ),
        (["generator.distil_from=exact", "method=reinforce"], "'generator.distil_from' exact is for method banel"),
        (["generator.distil_from=fit"], "'generator.distil_from' must be one of pool, exact"),
        (
            ["generator.distil_from=exact", "task=mnist_0to6_rare", "support.kind=token"],
            "applies no support control; set support.kind=none",
        ),
        (["negative.proposals=exact"], "'negative.proposals' exact is for Algorithm 1 (method banel_sequential)"),
        (["negative.proposals=exact", "mode=sequential"], "'negative.proposals' exact needs a task that enumerates"),
        (["negative.proposals=gibbs"], "'negative.proposals' must be one of rejection, exact"),
        (["negative.region_calibration=posterior"], "applies to Algorithm 1's regions: method banel_sequential"),
        (
            ["negative.region_calibration=posterior", "mode=sequential", "filter.kind=threshold"],
            "sets a filter factor's threshold; set filter.kind=quantile",
        ),
    ],
)
def test_bad_values_name_the_key(sets, needle):
    with pytest.raises(C.ConfigError) as e:
        C.load(None, sets)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(C.ConfigError, match="config file not found"):
        C.load(str(tmp_path / "none.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(C.ConfigError, match="must hold a mapping"):
        C.load(str(bad))


def test_sequential_mode_is_an_alias_of_the_method():
    a = C.load(None, ["mode=sequential"])
    b = C.load(None, ["method=banel_sequential"])
    assert a["method"] == b["method"] == "banel_sequential" and a["mode"] == b["mode"] == "sequential"
    assert C.load(None, [])["method"] == "banel" and C.load(None, [])["mode"] == "distill"


def test_typed_sections_carry_the_validated_values():
    rc = C.sections(C.load(None, ["negative.epochs=7", "negative.lora.r=4", "filter.factor=3"]))
    assert rc.negative.epochs == 7 and rc.negative.lora_r == 4 and rc.filter.factor == 3.0
    assert rc.rounds == 6 and rc.task == "addition_attack"
    with pytest.raises(dataclasses.FrozenInstanceError):
        rc.negative.epochs = 1
    assert (
        type(rc.negative).__name__ == "NegativeConfig" and type(rc.negative).__module__ == "banel_ray.config_sections"
    )
    assert pickle.loads(pickle.dumps(rc.negative)) == rc.negative  # travels to actors
    back = pickle.loads(pickle.dumps(rc))  # the whole RunConfig too
    assert back == rc and isinstance(back, C.RunConfig) and back.negative.lora_r == 4 and back.sampler == rc.sampler


def test_every_key_is_one_dataclass_field():
    """FIELDS is derived from config_sections: each key is exactly one field of RunConfig or of one
    section dataclass, with that field's type and default."""
    seen = {}
    for key, section, f in C.declared():
        assert key not in seen, key
        seen[key] = (section, f.name)
        cls = C.SECTIONS[section] if section else C.RunConfig
        assert f in dataclasses.fields(cls)
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        assert C.FIELDS[key].default == default and C.FIELDS[key].type is f.type, key
        assert C.FIELDS[key].help == f.metadata["help"]
    assert set(seen) == set(C.FIELDS) and len(seen) == len(C.FIELDS)
    attrs = [(s, n) for s, n in seen.values()]
    assert len(set(attrs)) == len(attrs)  # no two keys share an attribute
    assert seen["negative.lora.r"] == ("negative", "lora_r") and seen["seed"] == ("", "seed")
    assert C.sections(C.defaults()) == C.RunConfig()  # the defaults agree both ways
    # the sections are RunConfig's dataclass-typed fields, and nothing else is a section
    assert list(C.SECTIONS) == [f.name for f in dataclasses.fields(C.RunConfig) if dataclasses.is_dataclass(f.type)]


def test_fields_follow_a_changed_dataclass_default():
    """A default changed on the dataclass is the default FIELDS (and so YAML, --set, --help) sees."""
    import banel_ray.config_sections as S

    npo = dataclasses.fields(S.NpoConfig)[0]
    old = npo.default
    try:
        npo.default = 0.25
        assert C._fields()["npo.beta"].default == 0.25
    finally:
        npo.default = old
    assert C._fields()["npo.beta"].default == old == C.FIELDS["npo.beta"].default


def test_override_layers_task_options_and_checks_keys():
    cfg = C.defaults()
    C.override(cfg, "task_options.max_digits", 8)
    C.override(cfg, "task_options.prior_steps", 600)
    assert cfg["task_options"] == {"max_digits": 8, "prior_steps": 600}
    with pytest.raises(C.ConfigError, match="unknown key 'nope'"):
        C.override(cfg, "nope", 1)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("rounds: 3\nfilter:\n  factor: [4\nbudget: 5\n", "is not valid YAML at line 4, column 7: expected ',' or ']'"),
        ("rounds: 3\n\tbudget: 5\n", "is not valid YAML at line 2, column 1"),
        ("rounds: 3\nfilter:\n  factr: 4\n", "line 3: unknown key 'filter.factr'; allowed: filter.end"),
        ("rounds: 3\nnegative.epochs: many\n", "line 2: 'negative.epochs' must be int, got 'many'"),
        ("# a comment\nbudget: -4\n", "line 2: 'budget' must be >= 1, got -4"),
    ],
)
def test_a_yaml_config_error_names_its_line(tmp_path, text, needle):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(C.ConfigError) as e:
        C.load(str(p))
    assert needle in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("path", sorted((C.Path(C.__file__).parent / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    assert C.load(str(path))["rounds"] >= 1


def test_the_default_job_is_the_regime_task_with_a_fresh_final():
    """The default job shows the effect in the paper's regime (issue 21, item 8): the regime task,
    no support floor, the KL anchor, and a fresh final large enough for its interval to clear the
    base (3.3e-4 x 6,000 draws is 2 successes; the final holds about 140)."""
    cfg = C.load(str(C.Path(C.__file__).parent / "configs" / "quick.yaml"))
    assert cfg["task"] == "addition_attack" and cfg["support.kind"] == "none"
    assert cfg["generator.kl_coef"] > 0 and cfg["eval.final_samples"] >= 6000
    assert cfg["rounds"] * cfg["samples_per_round"] == cfg["budget"]


# ---- issue 24: experiment tracking (logging.backends) --------------------------------------------------


def test_logging_backends_config_and_a_missing_package_is_one_line(monkeypatch):
    import importlib.util

    assert C.load(None, ["logging.backends=mlflow"])["logging.backends"] == ["mlflow"]
    assert C.load(None, ["logging.backends=[mlflow, mlflow]"])["logging.backends"] == ["mlflow"]
    assert C.defaults()["logging.backends"] == ["tensorboard"]
    assert C.load(None, ["logging.backends=tensorboard,wandb"])["logging.backends"] == ["tensorboard", "wandb"]
    with pytest.raises(
        C.ConfigError, match="'logging.backends' must be a list of tensorboard, mlflow, wandb, got 'comet'"
    ):
        C.load(None, ["logging.backends=[tensorboard, comet]"])
    with pytest.raises(
        C.ConfigError, match="'logging.wandb_mode' must be one of '', offline, online, disabled, got 'cloud'"
    ):
        C.load(None, ["logging.wandb_mode=cloud"])
    real = importlib.util.find_spec
    gone = {"mlflow", "wandb"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in gone else real(name, *a))
    with pytest.raises(C.ConfigError) as e:
        C.load(None, ["logging.backends=mlflow"])
    assert str(e.value) == (
        "'logging.backends' mlflow needs the mlflow package, which is not installed: pip install mlflow-skinny==3.18.0"
    )
    with pytest.raises(C.ConfigError) as e:
        C.load(None, ["logging.backends=tensorboard,wandb"])
    assert str(e.value) == (
        "'logging.backends' wandb needs the wandb package, which is not installed: pip install wandb==0.31.0"
    )


def test_a_method_declares_its_settings_once_as_sections():
    """A method names the section dataclasses it reads (``settings``); its roles get exactly those,
    typed, from the run's RunConfig."""
    from types import SimpleNamespace

    from banel_ray import methods

    for name in methods.names():
        cls = methods.get(name)
        assert all(s in C.SECTIONS.values() for s in cls.settings), name
    assert set(methods.get("npo").settings) == {C.SECTIONS["pg"], C.SECTIONS["npo"]}
    rc = C.sections(C.load(None, ["method=npo", "npo.beta=0.5", "pg.lr=0.01"]))
    m = methods.get("npo")(SimpleNamespace(rc=rc, rt=None))
    got = m.setting_sections()
    assert set(got) == {"pg", "npo"} and got["npo"].beta == 0.5 and got["pg"].lr == 0.01
    assert C.section_name(C.SECTIONS["negative"]) == "negative"


def test_exact_distillation_is_allowed_where_the_task_enumerates():
    cfg = C.load(None, ["generator.distil_from=exact", "task=mnist_0to6_rare", "generator.exact_draws=4000"])
    assert cfg["generator.distil_from"] == "exact" and cfg["generator.exact_draws"] == 4000
    assert C.sections(cfg).generator.distil_from == "exact"
