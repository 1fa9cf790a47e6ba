"""Run configuration: one table of dotted keys, YAML files and ``--set key.path=value``.

Every key has a type, a range or choice list and a help line (``FIELDS``); bad input raises
``ConfigError`` with one line naming the key and what is allowed. Validation runs once, before
any actor starts. A run's config is a flat dict of dotted keys (what YAML, ``--set`` and Tune
search spaces speak); ``sections`` turns it into typed, frozen records per prefix
(``negative``, ``filter``, ...) that each actor receives at construction.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from banel_ray.core.errors import ConfigError  # defined in core so lower layers can raise it too
from banel_ray.core.method_registry import METHODS


@dataclass(frozen=True)
class Field:
    default: Any
    type: type
    help: str
    choices: tuple | Callable[[], tuple] | None = None
    lo: float | None = None
    hi: float | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error text or None


F = Field
FIELDS: dict[str, Field] = {
    "task": F("addition_attack", str, "task name (addition_attack, gsm_hard) or a module:Class path"),
    "task_options": F({}, dict, "keyword arguments for the task (e.g. max_digits, solver, prior)"),
    "seed": F(0, int, "seed for sampling, training and splits", lo=0),
    "runtime": F(
        "ray",
        str,
        "where the roles run: ray (actors; a local instance or a cluster) or local "
        "(one process, no Ray: notebooks, debuggers, machines without Ray)",
        choices=("ray", "local"),
    ),
    "run_dir": F(
        "",
        str,
        "output folder, or a URI (s3://, gs://: staged locally, copied there every round); empty: runs/<task>-<time>",
    ),
    "method": F(
        "banel",
        str,
        "the algorithm: " + ", ".join(f"{k} ({v[1]})" for k, v in METHODS.items()),
        choices=lambda: tuple(METHODS),  # read when checked: a method registered later is allowed
    ),
    "mode": F(
        "distill",
        str,
        "BaNEL only: distill (Algorithm 2) or sequential (Algorithm 1; the same as method=banel_sequential)",
        choices=("distill", "sequential"),
    ),
    "rounds": F(6, int, "maximum number of rounds", lo=1, hi=10_000),
    "budget": F(1500, int, "hard cap on reward evaluations (NREs)", lo=1),
    "samples_per_round": F(250, int, "m: candidates sent to the oracle each round", lo=1),
    "pool_size": F(1000, int, "fresh candidates drawn (no NREs) for the filter/distillation step", lo=1),
    "use_positives": F(False, bool, "also train on successes (the paper drops them)"),
    "score.length_norm": F(
        False, bool, "divide the log ratio by the token count (off: measured better on the addition task)"
    ),
    "score.numerator": F(
        "generator",
        str,
        "the ratio's numerator: generator (log g_t - log p_phi) or prior (log p0 - log p_phi; "
        "with negative.init=prior, p_phi is fitted from p0)",
        choices=("generator", "prior"),
    ),
    "score.negative_power": F(
        1.0,
        float,
        "kappa of a tempered negative model: s = log g - kappa log p_phi (1: the paper's ratio; "
        "below 1 rejects less for resembling past failures)",
        lo=0.0,
        hi=1.0,
    ),
    "support.kind": F(
        "none",
        str,
        "drift control: token drops pool candidates with a token the prior finds nearly impossible "
        "(log p0(x_t | x_<t) below the threshold) before the filter; drift drops those with a token "
        "g_t makes more than support.max_ratio nats likelier than p0 does; none: off",
        choices=("none", "token", "drift"),
    ),
    "support.max_ratio": F(
        4.0,
        float,
        "support.kind=drift: the most any one token's log-probability may rise from p0 to g_t (nats)",
        lo=0.0,
    ),
    "support.threshold": F(-6.0, float, "support.kind=token: the per-token log-probability floor under p0"),
    "support.quantile": F(
        0.0,
        float,
        "support.kind=token: > 0 reads the floor off the prior's own draws instead (this quantile of "
        "their least likely token), so the prior itself loses that fraction",
        lo=0.0,
        hi=0.5,
    ),
    "support.calibration": F(20000, int, "prior draws the quantile floor is read from", lo=100),
    "filter.kind": F(
        "quantile", str, "quantile: keep the top 1/f; threshold: keep s >= log tau", choices=("quantile", "threshold")
    ),
    "filter.factor": F(2.0, float, "filter factor f (quantile filter)", lo=1.0),
    "filter.tau": F(1.0, float, "ratio threshold tau (threshold filter)", lo=1e-12),
    "filter.schedule": F(
        "constant",
        str,
        "decay of f or tau over rounds",
        choices=("constant", "linear", "exponential", "cosine", "step"),
    ),
    "filter.end": F(1.0, float, "final value of f or tau for a decaying schedule", lo=1e-12),
    "filter.step_every": F(2, int, "step schedule: rounds between steps", lo=1),
    "filter.gamma": F(0.5, float, "step schedule: factor per step", lo=1e-6),
    "negative.epochs": F(5, int, "epochs fitting the negative model each round", lo=1),
    "negative.lr": F(1e-3, float, "negative-model learning rate", lo=0.0, hi=1.0),
    "negative.batch_size": F(64, int, "negative-model batch size", lo=1),
    "negative.data": F("round", str, "negatives used: this round's or all so far", choices=("round", "all")),
    "negative.init": F(
        "generator", str, "p_phi starts as a copy of g_t (generator) or of p0 (prior)", choices=("generator", "prior")
    ),
    "negative.holdout": F(0.1, float, "fraction of negatives held out for the NLL metric", lo=0.0, hi=0.5),
    "negative.exact_alg1": F(
        False,
        bool,
        "distill mode, a task that enumerates its space: also keep each round's p_phi as an Algorithm 1 region "
        "(threshold from p0 draws) and report that posterior's exact rate and KL(posterior || g), each round",
    ),
    "negative.lora.r": F(0, int, "LoRA rank of the negative model (0: a full copy of g_t is trained)", lo=0, hi=4096),
    "negative.lora.alpha": F(16.0, float, "LoRA scaling numerator (scale alpha/r)", lo=0.0),
    "negative.lora.dropout": F(0.0, float, "LoRA dropout", lo=0.0, hi=0.9),
    "negative.lora.targets": F(
        "q_proj,k_proj,v_proj,o_proj", str, "comma-separated module names that get an adapter (Llama/Qwen names)"
    ),
    "generator.epochs": F(2, int, "distillation epochs per round", lo=1),
    "generator.lr": F(5e-4, float, "generator learning rate", lo=0.0, hi=1.0),
    "generator.batch_size": F(64, int, "generator batch size", lo=1),
    "generator.reset": F(False, bool, "distil from p0 each round instead of from g_t"),
    "generator.kl_coef": F(
        0.0, float, "drift control: weight of a per-token KL(g || p0) added to the distillation loss (0: off)", lo=0.0
    ),
    "generator.prior_mix": F(
        0.0,
        float,
        "drift control: add this many fresh p0 draws per kept candidate to each distillation set "
        "(0: off; 0.25: a fifth of the set is the prior)",
        lo=0.0,
        hi=10.0,
    ),
    "generator.schedule": F(
        "constant",
        str,
        "decay of generator.lr over rounds (the update size)",
        choices=("constant", "linear", "exponential", "cosine", "step"),
    ),
    "generator.lr_end": F(5e-5, float, "final generator.lr of a decaying schedule", lo=0.0, hi=1.0),
    "generator.step_every": F(2, int, "step schedule: rounds between generator.lr steps", lo=1),
    "generator.gamma": F(0.5, float, "step schedule: generator.lr factor per step", lo=1e-6),
    "sampler.backend": F(
        "vllm", str, "vllm (default) or torch (plain transformers, no vLLM needed)", choices=("vllm", "torch")
    ),
    "sampler.num_actors": F(1, int, "number of sampler actors", lo=1, hi=1024),
    "sampler.num_cpus": F(0.5, float, "CPUs reserved per sampler actor", lo=0.0),
    "sampler.num_gpus": F(0.0, float, "GPUs per sampler actor", lo=0.0),
    "sampler.kv_cache_mb": F(64, int, "vLLM KV cache size in MiB", lo=1),
    "sampler.dtype": F(
        "float32", str, "vLLM weights/compute dtype (bfloat16 on GPUs)", choices=("float32", "bfloat16", "float16")
    ),
    "sampler.gpu_memory_utilization": F(
        0.0,
        float,
        "vLLM: fraction of the GPU one engine may use (0: vLLM's default); below sampler.num_gpus to share a GPU",
        lo=0.0,
        hi=1.0,
    ),
    "trainer.num_cpus": F(0.5, float, "CPUs reserved per trainer actor", lo=0.0),
    "trainer.num_gpus": F(0.0, float, "GPUs per trainer actor", lo=0.0),
    "trainer.threads": F(1, int, "torch threads per trainer, reward-service and evaluator actor", lo=1),
    "sampler.threads": F(1, int, "torch threads per sampler actor", lo=1),
    "trainer.device": F(
        "cpu",
        str,
        "where trainers compute: cpu, cuda, or auto (cuda when the actor has a GPU: set trainer.num_gpus)",
        choices=("cpu", "cuda", "auto"),
    ),
    "trainer.grad_checkpointing": F(
        False, bool, "recompute activations during backward (LLMs: less training memory, about 30% more compute)"
    ),
    "trainer.dtype": F(
        "float32", str, "trainer weights dtype; log-likelihoods are summed in float32", choices=("float32", "bfloat16")
    ),
    "oracle.num_cpus": F(0.25, float, "CPUs reserved for the oracle actor", lo=0.0),
    "oracle.rate_limit": F(0.0, float, "max reward evaluations per second, cluster-wide (0: unlimited)", lo=0.0),
    "oracle.burst": F(1.0, float, "token-bucket size of the rate limit", lo=1.0),
    "oracle.max_in_flight": F(4, int, "oracle calls running at once, all callers together", lo=1),
    "oracle.timeout_s": F(
        60.0,
        float,
        "time limit of one oracle call; a call past it is a failed attempt but keeps its in-flight slot "
        "until it ends (0: none, a hanging oracle then hangs the run)",
        lo=0.0,
    ),
    "oracle.retries": F(
        3,
        int,
        "attempts per oracle call before a sample is recorded as failed; an oracle that always fails is "
        "called oracle.retries x oracle.max_failed_rounds times per sample before the run stops (default "
        "3 x 3 = 9; with oracle.charge_errors, oracle.retries): lower them for an API that bills failures",
        lo=1,
    ),
    "oracle.backoff_s": F(
        0.2,
        float,
        "retry backoff: after failed attempt k a call waits a random time in [0, backoff_s * 2**(k-1)] "
        "(full jitter, so many callers do not retry in step), at most oracle.backoff_max_s (0: no wait)",
        lo=0.0,
    ),
    "oracle.backoff_max_s": F(30.0, float, "the longest one retry backoff may be", lo=0.0),
    "oracle.retry_after_max_s": F(
        60.0,
        float,
        "an HTTP 429/503 answer's Retry-After (seconds or a date) is honoured up to this many seconds "
        "(a longer ask waits this long); no further call is sent before it",
        lo=0.0,
    ),
    "oracle.tokens_per_minute": F(
        0.0,
        float,
        "max tokens sent to the oracle per minute, cluster-wide (0: unlimited); a call's tokens are the "
        "token ids of its samples (the sum of their lengths), paced at tokens_per_minute/60 a second",
        lo=0.0,
    ),
    "oracle.cost_per_call": F(
        0.0,
        float,
        "USD one oracle call costs (0: not tracked): each call sent is recorded in the ledger's calls "
        "table with this cost, reserved before it is sent; a 429/503 refusal is not charged",
        lo=0.0,
    ),
    "oracle.budget_usd": F(
        0.0,
        float,
        "hard cap on the summed oracle.cost_per_call of all calls (0: none): a call that would pass it "
        "is not sent (its samples stay unpaid) and the run stops",
        lo=0.0,
    ),
    "oracle.charge_errors": F(False, bool, "a failed evaluation costs one NRE (and is not retried later)"),
    "oracle.max_failed_rounds": F(
        3,
        int,
        "a round in which every evaluation failed trains nothing and is tried again with the same samples "
        "(those failed uncharged are sent again, oracle.retries attempts each); after this many in a row the run "
        "stops (exit 3, resumable)",
        lo=1,
    ),
    "oracle.pending_rule": F(
        "reevaluate",
        str,
        "evaluations in flight when the oracle died: re-evaluate once more (no second charge), or charge "
        "those sent as lost (never sent again) and release those never sent",
        choices=("reevaluate", "charge"),
    ),
    "eval.samples": F(20000, int, "samples per success-rate estimate (not NREs)", lo=0),
    "eval.paid_budget": F(
        0,
        int,
        "evaluation draws success-rate estimates may send to a task's paid oracle over the whole run "
        "(counted, rate-limited, never NREs); 0: a task without a free evaluator needs eval.samples: 0",
        lo=0,
    ),
    "eval.num_cpus": F(0.25, float, "CPUs reserved for the evaluator actor", lo=0.0),
    "eval.final_samples": F(
        0,
        int,
        "fresh draws that evaluate the final generator (and a stop rule's round) after the run, not "
        "NREs (0: none; -1: the task's own size, e.g. 100,000 for the addition attack; the "
        "measurement configs set it)",
        lo=-1,
    ),
    "stop.rule": F(
        "",
        str,
        "a positive-free stop rule by name (banel_ray.algorithms.stop_rules.DEFAULT_RULES; empty: none): "
        "the round it fires at keeps its checkpoint and gets a fresh-sample evaluation",
    ),
    "stop.live": F(False, bool, "stop the run at the round stop.rule fires (else run on and only mark it)"),
    "eval.every": F(0, int, "evaluate every k rounds (0: only base and final)", lo=0),
    "checkpoint.dir": F(
        "",
        str,
        "where round checkpoints live (empty: <run_dir>/checkpoints); on a "
        "multi-node cluster a folder every node shares",
    ),
    "checkpoint.keep": F(2, int, "latest round checkpoints kept", lo=1),
    "checkpoint.keep_evaluated": F(
        True, bool, "also keep the checkpoint of every evaluated round (so any reported round can be re-evaluated)"
    ),
    # baselines on the same actors and NRE budget (banel_ray/methods; docs/baselines.md)
    "pg.lr": F(3e-4, float, "policy-gradient baselines: AdamW learning rate", lo=0.0, hi=1.0),
    "pg.epochs": F(1, int, "policy-gradient baselines: passes over each round's paid samples", lo=1),
    "pg.batch_size": F(64, int, "policy-gradient baselines: mini-batch size", lo=1),
    "pg.normalize": F(True, bool, "policy-gradient baselines: scale advantages to unit std"),
    "rnd.coef": F(1.0, float, "rnd: weight of the normalised novelty bonus", lo=0.0),
    "rnd.lr": F(1e-3, float, "rnd: predictor learning rate", lo=0.0, hi=1.0),
    "rnd.epochs": F(5, int, "rnd: predictor passes over each round's samples", lo=1),
    "rnd.hidden": F(128, int, "rnd: hidden width of target and predictor", lo=1),
    "count.coef": F(1.0, float, "count: bonus coef / sqrt(pseudo-count)", lo=0.0),
    "wr.pos_weight": F(0.1, float, "w_reinforce: weight lambda of the successes (failures weigh 1)", lo=0.0),
    "count.bits": F(8, int, "count: SimHash code length k", lo=1, hi=62),
    "npo.beta": F(
        0.1,
        float,
        "npo: inverse temperature beta; each failure's gradient weight is 2 sigmoid(beta (log g - log p0)) "
        "in (0, 2), bounded (beta -> 0: nsr)",
        lo=1e-6,
    ),
    "logging.backends": F(
        ["tensorboard"],
        list,
        "where per-round metrics go besides metrics.jsonl: tensorboard (<run_dir>/tensorboard, x axis NREs), "
        "mlflow (config as params, metrics with step = round, the closing summary; a resumed run "
        "continues the same MLflow run), wandb (the same into a W&B run, offline in <run_dir>/wandb "
        "unless logging.wandb_mode says otherwise); a list, or one name or comma-separated names",
        choices=("tensorboard", "mlflow", "wandb"),
    ),
    "logging.mlflow_uri": F(
        "", str, "MLflow tracking URI (empty: a local file store, <run_dir>/mlruns; http(s)://... a server)"
    ),
    "logging.mlflow_experiment": F("banel_ray", str, "MLflow experiment the run is logged under"),
    "logging.wandb_project": F("banel_ray", str, "W&B project the run is logged under"),
    "logging.wandb_mode": F(
        "",
        str,
        "W&B mode: offline (no account, no network; `wandb sync` uploads later), online, disabled; "
        "empty: WANDB_MODE, else offline",
        choices=("", "offline", "online", "disabled"),
    ),
    "ray.address": F("", str, "Ray address; empty: join a running cluster if any, else start one"),
    "ray.num_cpus": F(0, int, "CPUs for a local Ray instance (0: all)", lo=0),
}


def defaults() -> dict[str, Any]:
    return {k: copy.deepcopy(f.default) for k, f in FIELDS.items()}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in FIELDS:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def nest(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for k, v in flat.items():
        cur = out
        parts = k.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
    return out


def _shown(choice: Any) -> str:
    """A choice as messages name it (the empty string as '')."""
    return str(choice) if choice != "" else "''"


def _coerce(key: str, value: Any) -> Any:
    f = FIELDS.get(key)
    if f is None:
        near = sorted(k for k in FIELDS if k.split(".")[0] == key.split(".", maxsplit=1)[0]) or sorted(FIELDS)
        raise ConfigError(f"unknown key '{key}'; allowed: {', '.join(near)}")
    t = f.type
    if t is list:
        return _coerce_list(key, f, value)
    if t is float and isinstance(value, str):  # YAML 1.1 reads '1e-3' (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok = (isinstance(value, t) and not (t is int and isinstance(value, bool))) or (
        t is float and isinstance(value, int) and not isinstance(value, bool)
    )
    if not ok:
        raise ConfigError(f"'{key}' must be {t.__name__}, got {value!r}")
    if t is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"'{key}' must be a finite number, got {value!r}")
    choices = f.choices() if callable(f.choices) else f.choices
    if choices and value not in choices:
        raise ConfigError(f"'{key}' must be one of {', '.join(map(_shown, choices))}, got {value!r}")
    if f.lo is not None and value < f.lo or f.hi is not None and value > f.hi:
        rng = f"in [{f.lo}, {f.hi}]" if f.hi is not None else f">= {f.lo}"
        raise ConfigError(f"'{key}' must be {rng}, got {value!r}")
    return value


def _coerce_list(key: str, f: Field, value: Any) -> list:
    """A list key: a list, or one name or comma-separated names (``--set logging.backends=mlflow``);
    each item one of the choices, duplicates dropped."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    choices = f.choices() if callable(f.choices) else f.choices
    allowed = f"a list of {', '.join(map(str, choices))}" if choices else "a list"
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"'{key}' must be {allowed}, got {value!r}")
    for v in value:
        if choices and v not in choices:
            raise ConfigError(f"'{key}' must be {allowed}, got {v!r}")
    return list(dict.fromkeys(value))


def parse_set(item: str) -> tuple[str, Any]:
    """``key.path=value``; the value is parsed as YAML (so 3, 2.5, true, [1,2] work)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key.path=value, got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if value is None:
        value = ""
    if key.strip().startswith("task_options."):
        return key.strip(), value
    if FIELDS.get(key.strip()) and FIELDS[key.strip()].type is list and isinstance(value, str):
        value = raw  # 'a,b' stays names, split by _coerce_list
    if FIELDS.get(key.strip()) and FIELDS[key.strip()].type is str and not isinstance(value, str):
        value = raw  # '--set run_dir=123' stays a string
    return key.strip(), value


def coerce(key: str, value: Any) -> Any:
    """``value`` checked and converted for ``key`` (ConfigError naming the key otherwise)."""
    return _coerce(key, value)


def override(cfg: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """The one way to set a key: ``task_options.<name>`` layers into the task's options, any
    other key is checked against ``FIELDS``. Returns ``cfg`` (changed in place)."""
    if key.startswith("task_options."):
        cfg["task_options"] = dict(cfg.get("task_options") or {}, **{key.split(".", 1)[1]: value})
    else:
        cfg[key] = _coerce(key, value)
    return cfg


def _key_lines(node, prefix: str = "") -> dict[str, int]:
    """The line (1-based) of each key of a composed YAML mapping, named as ``_flatten`` names them."""
    out: dict[str, int] = {}
    for k, v in node.value if isinstance(node, yaml.MappingNode) else []:
        key = f"{prefix}{k.value}"
        if isinstance(v, yaml.MappingNode) and key not in FIELDS:
            out.update(_key_lines(v, key + "."))
        else:
            out[key] = k.start_mark.line + 1
    return out


def read_yaml(config_file: str, lines: dict | None = None) -> dict[str, Any]:
    """A YAML config file as flat dotted keys (ConfigError for a missing or malformed file, naming
    the line); ``lines`` receives each key's line, so a bad value can be pointed at too."""
    p = Path(config_file)
    if not p.is_file():
        raise ConfigError(f"config file not found: {config_file}")
    text = p.read_text()
    try:
        data = yaml.safe_load(text) or {}
        if lines is not None:
            lines.update(_key_lines(yaml.compose(text, Loader=yaml.SafeLoader)))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(getattr(e, "problem", None) or e).split())  # one line
        raise ConfigError(f"config file {config_file} is not valid YAML{where}: {what}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {config_file} must hold a mapping of keys, not {type(data).__name__}")
    return _flatten(data)


def load(
    config_file: str | None = None, sets: list[str] | None = None, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``base`` (default: the defaults) <- YAML file <- --set items, validated. A flat dict."""
    cfg = copy.deepcopy(base) if base is not None else defaults()
    lines: dict[str, int] = {}
    for k, v in read_yaml(config_file, lines).items() if config_file else []:
        try:
            override(cfg, k, v)
        except ConfigError as e:
            raise ConfigError(f"config file {config_file} line {lines.get(k, '?')}: {e}") from None
    for k, v in [parse_set(item) for item in sets or []]:
        override(cfg, k, v)
    return validate(cfg)


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Cross-key checks and the task (its name and its options), without starting anything."""
    import inspect

    from banel_ray import tasks

    for k, v in cfg.items():
        _coerce(k, v)
    try:
        cls = tasks.resolve(cfg["task"])
    except Exception:  # noqa: BLE001 - not found, or its module fails to import
        raise ConfigError(
            f"unknown task '{cfg['task']}'; allowed: {', '.join(tasks.BUILTIN)} "
            f"or a module:Class path to a Task subclass"
        ) from None
    params = inspect.signature(cls.__init__).parameters
    for k in cfg["task_options"]:
        if k not in params:
            allowed = [p for p in params if p != "self"]
            raise ConfigError(f"unknown key 'task_options.{k}' for task {cfg['task']}; allowed: {', '.join(allowed)}")
    msg = cls.check_options(cfg["task_options"])  # a task's own one-line option checks
    if msg:
        raise ConfigError(msg)
    for k in ("solver", "prior"):
        path = cfg["task_options"].get(k)
        if path and not Path(path).is_dir():
            raise ConfigError(f"'task_options.{k}' folder not found: {path}")
    if cfg["trainer.device"] == "cuda" and cfg["trainer.num_gpus"] <= 0:
        raise ConfigError("'trainer.device' cuda needs 'trainer.num_gpus' > 0 (Ray hides GPUs from actors without one)")
    # mode: sequential is the older spelling of method: banel_sequential; both are kept in step
    if cfg["mode"] == "sequential" and cfg["method"] == "banel":
        cfg["method"] = "banel_sequential"
    elif cfg["method"] == "banel_sequential":
        cfg["mode"] = "sequential"
    elif cfg["mode"] != "distill":
        raise ConfigError(
            f"'mode' sequential is BaNEL's Algorithm 1 (method banel or banel_sequential), not method {cfg['method']}"
        )
    if cfg["stop.rule"]:
        from banel_ray.algorithms.stop_rules import rule_by_name

        try:
            rule_by_name(cfg["stop.rule"])
        except KeyError as e:
            raise ConfigError(str(e.args[0])) from None
    usd, per_call = cfg["oracle.budget_usd"], cfg["oracle.cost_per_call"]
    if usd > 0 and per_call <= 0:
        raise ConfigError("'oracle.budget_usd' needs 'oracle.cost_per_call' > 0 (what each oracle call costs, USD)")
    if usd > 0 and round(usd * 1e6) < round(per_call * 1e6):
        raise ConfigError(
            f"'oracle.budget_usd' {usd:g} is below one call's 'oracle.cost_per_call' {per_call:g}: no call could be made"
        )
    if cfg["filter.schedule"] == "exponential" and cfg["filter.end"] <= 0:
        raise ConfigError("'filter.end' must be > 0 for the exponential schedule")
    if cfg["generator.schedule"] == "exponential" and min(cfg["generator.lr"], cfg["generator.lr_end"]) <= 0:
        raise ConfigError("'generator.lr' and 'generator.lr_end' must be > 0 for the exponential schedule")
    if cfg["filter.kind"] == "quantile" and cfg["filter.schedule"] != "constant" and cfg["filter.end"] < 1:
        raise ConfigError("'filter.end' must be >= 1 when it is a filter factor (filter.kind=quantile)")
    from banel_ray.report import tracking

    msg = tracking.missing_package(cfg["logging.backends"])  # before anything is started or paid
    if msg:
        raise ConfigError(msg)
    from banel_ray import preflight  # checks that need the task class: evaluation cost, required options

    msg = preflight.task_problem(cfg, cls)
    if msg:
        raise ConfigError(msg)
    return cfg


# ---- typed sections -------------------------------------------------------------------------------


def _section_class(prefix: str):
    names = [
        (k[len(prefix) + 1 :].replace(".", "_"), f.type, f.default)
        for k, f in FIELDS.items()
        if k.startswith(prefix + ".")
    ]
    cls = dataclasses.make_dataclass(
        "".join(p.capitalize() for p in prefix.split("_")) + "Config",
        [
            (n, t, dataclasses.field(default_factory=lambda d=d: copy.deepcopy(d)))
            if isinstance(d, (list, dict))
            else (n, t, dataclasses.field(default=copy.deepcopy(d)))
            for n, t, d in names
        ],
        frozen=True,
    )
    cls.__module__ = __name__
    cls.__doc__ = f"The validated ``{prefix}.*`` keys (see ``FIELDS``)."
    return cls


SECTION_NAMES = tuple(dict.fromkeys(k.split(".")[0] for k in FIELDS if "." in k))
SECTIONS = {name: _section_class(name) for name in SECTION_NAMES}
globals().update({cls.__name__: cls for cls in SECTIONS.values()})  # picklable by name


@dataclass(frozen=True)
class RunConfig:
    """A validated run config as typed records: top-level keys as attributes, and one frozen
    record per section (``rc.negative.epochs``, ``rc.filter.factor``, ``rc.negative.lora_r``)."""

    flat: dict
    sections: dict

    def __getattr__(self, name: str):
        if name in ("flat", "sections"):
            raise AttributeError(name)
        if name in self.sections:
            return self.sections[name]
        if name in self.flat:
            return self.flat[name]
        raise AttributeError(f"no config key or section {name!r}")


def sections(cfg: dict[str, Any]) -> RunConfig:
    """Typed view of a validated flat config (one frozen record per prefix)."""
    recs = {}
    for name, cls in SECTIONS.items():
        pre = name + "."
        recs[name] = cls(**{k[len(pre) :].replace(".", "_"): v for k, v in cfg.items() if k.startswith(pre)})
    return RunConfig(flat=dict(cfg), sections=recs)


def help_table() -> str:
    rows = []
    for k, f in FIELDS.items():
        choices = f.choices() if callable(f.choices) else f.choices
        extra = f" {{{'|'.join(map(_shown, choices))}}}" if choices else ""
        rows.append(f"  {k:<24} {f.default!r:<18} {f.help}{extra}")
    return "\n".join(rows)
