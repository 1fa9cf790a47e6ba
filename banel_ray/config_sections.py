"""Every config key, declared once: one frozen dataclass per section, and ``RunConfig`` for the run.

A field is a key: its annotation is the type, its default the default, and ``meta`` holds the
help line, the choices or range and an optional check. ``config.FIELDS`` (what YAML, ``--set``,
Tune search spaces and ``--help`` speak: flat dotted keys) is derived from these classes, and
``config.sections(cfg)`` turns a validated flat config into a ``RunConfig``. A field of section
``negative`` named ``epochs`` is the key ``negative.epochs``; a deeper key names itself
(``meta(..., key="lora.r")`` on ``lora_r``).

A method's settings are its section here (``PgConfig``, ``NpoConfig``, ...): the method class
names the sections it reads (``Method.settings``) and its roles receive them typed.

No ``from __future__ import annotations`` here: the annotations are the keys' types at runtime.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from banel_ray.core.method_registry import METHODS


def meta(
    help: str,
    *,
    choices: tuple | Callable[[], tuple] | None = None,
    lo: float | None = None,
    hi: float | None = None,
    check: Callable[[Any], str | None] | None = None,
    key: str | None = None,
    listed_after: str | None = None,
) -> dict[str, Any]:
    """A key's description, for ``dataclasses.field(metadata=...)``: ``help``; ``choices`` (a tuple,
    or a function read when checked); ``lo``/``hi`` (inclusive range); ``check`` (value -> error text
    or None); ``key``: the dotted name within the section when it is not the attribute's name;
    ``listed_after``: the key it follows in ``FIELDS`` and ``--help`` (default: its place here)."""
    return {
        "help": help,
        "choices": choices,
        "lo": lo,
        "hi": hi,
        "check": check,
        "key": key,
        "listed_after": listed_after,
    }


@dataclass(frozen=True)
class ScoreConfig:
    """``score.*``: the score s of a pool candidate, the log ratio the filter ranks."""

    length_norm: bool = field(
        default=False,
        metadata=meta("divide the log ratio by the token count (off: measured better on the addition task)"),
    )
    numerator: str = field(
        default="generator",
        metadata=meta(
            (
                "the ratio's numerator: generator (log g_t - log p_phi) or prior (log p0 - log p_phi; with "
                "negative.init=prior, p_phi is fitted from p0)"
            ),
            choices=("generator", "prior"),
        ),
    )
    negative_power: float = field(
        default=1.0,
        metadata=meta(
            (
                "kappa of a tempered negative model: s = log g - kappa log p_phi (1: the paper's ratio; below"
                " 1 rejects less for resembling past failures)"
            ),
            lo=0.0,
            hi=1.0,
        ),
    )


@dataclass(frozen=True)
class SupportConfig:
    """``support.*``: drift control that drops pool candidates outside the prior's support."""

    kind: str = field(
        default="none",
        metadata=meta(
            (
                "drift control: token drops pool candidates with a token the prior finds nearly impossible "
                "(log p0(x_t | x_<t) below the threshold) before the filter; drift drops those with a token "
                "g_t makes more than support.max_ratio nats likelier than p0 does; none: off"
            ),
            choices=("none", "token", "drift"),
        ),
    )
    max_ratio: float = field(
        default=4.0,
        metadata=meta(
            ("support.kind=drift: the most any one token's log-probability may rise from p0 to g_t (nats)"), lo=0.0
        ),
    )
    threshold: float = field(
        default=-6.0, metadata=meta("support.kind=token: the per-token log-probability floor under p0")
    )
    quantile: float = field(
        default=0.0,
        metadata=meta(
            (
                "support.kind=token: > 0 reads the floor off the prior's own draws instead (this quantile of "
                "their least likely token), so the prior itself loses that fraction"
            ),
            lo=0.0,
            hi=0.5,
        ),
    )
    calibration: int = field(default=20000, metadata=meta("prior draws the quantile floor is read from", lo=100))


@dataclass(frozen=True)
class FilterConfig:
    """``filter.*``: which pool candidates are kept, and the schedule of f or tau."""

    kind: str = field(
        default="quantile",
        metadata=meta("quantile: keep the top 1/f; threshold: keep s >= log tau", choices=("quantile", "threshold")),
    )
    factor: float = field(default=2.0, metadata=meta("filter factor f (quantile filter)", lo=1.0))
    tau: float = field(default=1.0, metadata=meta("ratio threshold tau (threshold filter)", lo=1e-12))
    schedule: str = field(
        default="constant",
        metadata=meta("decay of f or tau over rounds", choices=("constant", "linear", "exponential", "cosine", "step")),
    )
    end: float = field(default=1.0, metadata=meta("final value of f or tau for a decaying schedule", lo=1e-12))
    step_every: int = field(default=2, metadata=meta("step schedule: rounds between steps", lo=1))
    gamma: float = field(default=0.5, metadata=meta("step schedule: factor per step", lo=1e-06))


@dataclass(frozen=True)
class NegativeConfig:
    """``negative.*``: the negative model p_phi fitted on the failures each round (BaNEL)."""

    epochs: int = field(default=5, metadata=meta("epochs fitting the negative model each round", lo=1))
    lr: float = field(default=0.001, metadata=meta("negative-model learning rate", lo=0.0, hi=1.0))
    batch_size: int = field(default=64, metadata=meta("negative-model batch size", lo=1))
    data: str = field(
        default="round", metadata=meta("negatives used: this round's or all so far", choices=("round", "all"))
    )
    init: str = field(
        default="generator",
        metadata=meta("p_phi starts as a copy of g_t (generator) or of p0 (prior)", choices=("generator", "prior")),
    )
    holdout: float = field(
        default=0.1, metadata=meta("fraction of negatives held out for the NLL metric", lo=0.0, hi=0.5)
    )
    exact_alg1: bool = field(
        default=False,
        metadata=meta(
            "distill mode, a task that enumerates its space: also keep each round's p_phi as an Algorithm"
            " 1 region (threshold from p0 draws) and report that posterior's exact rate and KL(posterior "
            "|| g), each round"
        ),
    )
    region_calibration: str = field(
        default="prior",
        metadata=meta(
            "what an Algorithm 1 region's filter-factor threshold keeps 1/f of: p0's draws (prior) or the"
            " current posterior's mass (posterior: exactly where the task enumerates its space, else"
            " on its accepted draws), as Algorithm 2's filter keeps 1/f of g_t's",
            choices=("prior", "posterior"),
        ),
    )
    exclude_failures: bool = field(
        default=False,
        metadata=meta(
            "also reject every string already paid as a failure (Algorithm 1's posterior and proposals,"
            " Algorithm 2's filter): a filter factor's quantile cannot reject a string holding more than"
            " 1/f of the mass, so without this a run can settle on one known failure"
        ),
    )
    proposals: str = field(
        default="rejection",
        metadata=meta(
            "Algorithm 1's proposals: p0's draws that no region rejects (rejection) or drawn exactly from"
            " the posterior (exact: a task that enumerates its space, whose posterior rejection cannot reach)",
            choices=("rejection", "exact"),
        ),
    )
    lora_r: int = field(
        default=0,
        metadata=meta(
            "LoRA rank of the negative model (0: a full copy of g_t is trained)", lo=0, hi=4096, key="lora.r"
        ),
    )
    lora_alpha: float = field(
        default=16.0, metadata=meta("LoRA scaling numerator (scale alpha/r)", lo=0.0, key="lora.alpha")
    )
    lora_dropout: float = field(default=0.0, metadata=meta("LoRA dropout", lo=0.0, hi=0.9, key="lora.dropout"))
    lora_targets: str = field(
        default="q_proj,k_proj,v_proj,o_proj",
        metadata=meta("comma-separated module names that get an adapter (Llama/Qwen names)", key="lora.targets"),
    )


@dataclass(frozen=True)
class GeneratorConfig:
    """``generator.*``: the distillation of the kept candidates into g_{t+1} (BaNEL)."""

    epochs: int = field(default=2, metadata=meta("distillation epochs per round", lo=1))
    lr: float = field(default=0.0005, metadata=meta("generator learning rate", lo=0.0, hi=1.0))
    batch_size: int = field(default=64, metadata=meta("generator batch size", lo=1))
    reset: bool = field(default=False, metadata=meta("distil from p0 each round instead of from g_t"))
    kl_coef: float = field(
        default=0.0,
        metadata=meta(
            ("drift control: weight of a per-token KL(g || p0) added to the distillation loss (0: off)"), lo=0.0
        ),
    )
    prior_mix: float = field(
        default=0.0,
        metadata=meta(
            (
                "drift control: add this many fresh p0 draws per kept candidate to each distillation set (0: "
                "off; 0.25: a fifth of the set is the prior)"
            ),
            lo=0.0,
            hi=10.0,
        ),
    )
    distil_from: str = field(
        default="pool",
        metadata=meta(
            (
                "what g_{t+1} is fitted on: pool (the paper: the kept part of a pool drawn from g_t) or exact "
                "(generator.exact_draws drawn exactly from g_t restricted to what the filter keeps over the "
                "whole space; a task that enumerates it, e.g. mnist_0to6_rare)"
            ),
            choices=("pool", "exact"),
        ),
    )
    exact_draws: int = field(
        default=0,
        metadata=meta("distil_from=exact: the distillation set's size (0: as many as the pool's filter keeps)", lo=0),
    )
    schedule: str = field(
        default="constant",
        metadata=meta(
            "decay of generator.lr over rounds (the update size)",
            choices=("constant", "linear", "exponential", "cosine", "step"),
        ),
    )
    lr_end: float = field(default=5e-05, metadata=meta("final generator.lr of a decaying schedule", lo=0.0, hi=1.0))
    step_every: int = field(default=2, metadata=meta("step schedule: rounds between generator.lr steps", lo=1))
    gamma: float = field(default=0.5, metadata=meta("step schedule: generator.lr factor per step", lo=1e-06))


@dataclass(frozen=True)
class SamplerConfig:
    """``sampler.*``: the sampler actors (vLLM or torch) and what each reserves."""

    backend: str = field(
        default="vllm",
        metadata=meta("vllm (default) or torch (plain transformers, no vLLM needed)", choices=("vllm", "torch")),
    )
    num_actors: int = field(default=1, metadata=meta("number of sampler actors", lo=1, hi=1024))
    num_cpus: float = field(default=0.5, metadata=meta("CPUs reserved per sampler actor", lo=0.0))
    num_gpus: float = field(default=0.0, metadata=meta("GPUs per sampler actor", lo=0.0))
    kv_cache_mb: int = field(default=64, metadata=meta("vLLM KV cache size in MiB", lo=1))
    dtype: str = field(
        default="float32",
        metadata=meta("vLLM weights/compute dtype (bfloat16 on GPUs)", choices=("float32", "bfloat16", "float16")),
    )
    gpu_memory_utilization: float = field(
        default=0.0,
        metadata=meta(
            ("vLLM: fraction of the GPU one engine may use (0: vLLM's default); below sampler.num_gpus to share a GPU"),
            lo=0.0,
            hi=1.0,
        ),
    )
    threads: int = field(
        default=1, metadata=meta("torch threads per sampler actor", lo=1, listed_after="trainer.threads")
    )


@dataclass(frozen=True)
class TrainerConfig:
    """``trainer.*``: what each trainer actor reserves and how it computes."""

    num_cpus: float = field(default=0.5, metadata=meta("CPUs reserved per trainer actor", lo=0.0))
    num_gpus: float = field(default=0.0, metadata=meta("GPUs per trainer actor", lo=0.0))
    threads: int = field(
        default=1, metadata=meta("torch threads per trainer, reward-service and evaluator actor", lo=1)
    )
    device: str = field(
        default="cpu",
        metadata=meta(
            ("where trainers compute: cpu, cuda, or auto (cuda when the actor has a GPU: set trainer.num_gpus)"),
            choices=("cpu", "cuda", "auto"),
        ),
    )
    grad_checkpointing: bool = field(
        default=False,
        metadata=meta("recompute activations during backward (LLMs: less training memory, about 30% more compute)"),
    )
    dtype: str = field(
        default="float32",
        metadata=meta("trainer weights dtype; log-likelihoods are summed in float32", choices=("float32", "bfloat16")),
    )


@dataclass(frozen=True)
class OracleConfig:
    """``oracle.*``: the reward service: rate limits, retries, costs and failure rules."""

    num_cpus: float = field(default=0.25, metadata=meta("CPUs reserved for the oracle actor", lo=0.0))
    rate_limit: float = field(
        default=0.0, metadata=meta("max reward evaluations per second, cluster-wide (0: unlimited)", lo=0.0)
    )
    burst: float = field(default=1.0, metadata=meta("token-bucket size of the rate limit", lo=1.0))
    max_in_flight: int = field(default=4, metadata=meta("oracle calls running at once, all callers together", lo=1))
    timeout_s: float = field(
        default=60.0,
        metadata=meta(
            (
                "time limit of one oracle call; a call past it is a failed attempt but keeps its in-flight "
                "slot until it ends (0: none, a hanging oracle then hangs the run)"
            ),
            lo=0.0,
        ),
    )
    retries: int = field(
        default=3,
        metadata=meta(
            (
                "attempts per oracle call before a sample is recorded as failed; an oracle that always fails "
                "is called oracle.retries x oracle.max_failed_rounds times per sample before the run stops "
                "(default 3 x 3 = 9; with oracle.charge_errors, oracle.retries): lower them for an API that "
                "bills failures"
            ),
            lo=1,
        ),
    )
    backoff_s: float = field(
        default=0.2,
        metadata=meta(
            (
                "retry backoff: after failed attempt k a call waits a random time in [0, backoff_s * "
                "2**(k-1)] (full jitter, so many callers do not retry in step), at most oracle.backoff_max_s "
                "(0: no wait)"
            ),
            lo=0.0,
        ),
    )
    backoff_max_s: float = field(default=30.0, metadata=meta("the longest one retry backoff may be", lo=0.0))
    retry_after_max_s: float = field(
        default=60.0,
        metadata=meta(
            (
                "an HTTP 429/503 answer's Retry-After (seconds or a date) is honoured up to this many seconds"
                " (a longer ask waits this long); no further call is sent before it"
            ),
            lo=0.0,
        ),
    )
    tokens_per_minute: float = field(
        default=0.0,
        metadata=meta(
            (
                "max tokens sent to the oracle per minute, cluster-wide (0: unlimited); a call's tokens are "
                "the token ids of its samples (the sum of their lengths), paced at tokens_per_minute/60 a "
                "second"
            ),
            lo=0.0,
        ),
    )
    cost_per_call: float = field(
        default=0.0,
        metadata=meta(
            (
                "USD one oracle call costs (0: not tracked): each call sent is recorded in the ledger's calls"
                " table with this cost, reserved before it is sent; a 429/503 refusal is not charged"
            ),
            lo=0.0,
        ),
    )
    budget_usd: float = field(
        default=0.0,
        metadata=meta(
            (
                "hard cap on the summed oracle.cost_per_call of all calls (0: none): a call that would pass "
                "it is not sent (its samples stay unpaid) and the run stops"
            ),
            lo=0.0,
        ),
    )
    charge_errors: bool = field(
        default=False, metadata=meta("a failed evaluation costs one NRE (and is not retried later)")
    )
    max_failed_rounds: int = field(
        default=3,
        metadata=meta(
            (
                "a round in which every evaluation failed trains nothing and is tried again with the same "
                "samples (those failed uncharged are sent again, oracle.retries attempts each); after this "
                "many in a row the run stops (exit 3, resumable)"
            ),
            lo=1,
        ),
    )
    pending_rule: str = field(
        default="reevaluate",
        metadata=meta(
            (
                "evaluations in flight when the oracle died: re-evaluate once more (no second charge), or "
                "charge those sent as lost (never sent again) and release those never sent"
            ),
            choices=("reevaluate", "charge"),
        ),
    )


@dataclass(frozen=True)
class EvalConfig:
    """``eval.*``: fresh-sample success-rate estimates (never NREs)."""

    samples: int = field(default=20000, metadata=meta("samples per success-rate estimate (not NREs)", lo=0))
    paid_budget: int = field(
        default=0,
        metadata=meta(
            (
                "evaluation draws success-rate estimates may send to a task's paid oracle over the whole run "
                "(counted, rate-limited, never NREs); 0: a task without a free evaluator needs eval.samples: "
                "0"
            ),
            lo=0,
        ),
    )
    num_cpus: float = field(default=0.25, metadata=meta("CPUs reserved for the evaluator actor", lo=0.0))
    final_samples: int = field(
        default=0,
        metadata=meta(
            (
                "fresh draws that evaluate the final generator (and a stop rule's round) after the run, not "
                "NREs (0: none; -1: the task's own size, e.g. 100,000 for the addition attack; the "
                "measurement configs set it)"
            ),
            lo=-1,
        ),
    )
    every: int = field(
        default=0, metadata=meta("evaluate every k rounds (0: only base and final)", lo=0, listed_after="stop.live")
    )


@dataclass(frozen=True)
class StopConfig:
    """``stop.*``: a positive-free stop rule."""

    rule: str = field(
        default="",
        metadata=meta(
            "a positive-free stop rule by name (banel_ray.algorithms.stop_rules.DEFAULT_RULES; empty: "
            "none): the round it fires at keeps its checkpoint and gets a fresh-sample evaluation"
        ),
    )
    live: bool = field(
        default=False, metadata=meta("stop the run at the round stop.rule fires (else run on and only mark it)")
    )


@dataclass(frozen=True)
class CheckpointConfig:
    """``checkpoint.*``: where round checkpoints live and which are kept."""

    dir: str = field(
        default="",
        metadata=meta(
            "where round checkpoints live (empty: <run_dir>/checkpoints); on a multi-node cluster a "
            "folder every node shares"
        ),
    )
    keep: int = field(default=2, metadata=meta("latest round checkpoints kept", lo=1))
    keep_evaluated: bool = field(
        default=True,
        metadata=meta("also keep the checkpoint of every evaluated round (so any reported round can be re-evaluated)"),
    )


@dataclass(frozen=True)
class PgConfig:
    """``pg.*``: the policy-gradient baselines (reinforce, rnd, count, nsr, w_reinforce, npo)."""

    lr: float = field(default=0.0003, metadata=meta("policy-gradient baselines: AdamW learning rate", lo=0.0, hi=1.0))
    epochs: int = field(
        default=1, metadata=meta("policy-gradient baselines: passes over each round's paid samples", lo=1)
    )
    batch_size: int = field(default=64, metadata=meta("policy-gradient baselines: mini-batch size", lo=1))
    normalize: bool = field(default=True, metadata=meta("policy-gradient baselines: scale advantages to unit std"))


@dataclass(frozen=True)
class RndConfig:
    """``rnd.*``: the RND novelty bonus of method ``rnd``."""

    coef: float = field(default=1.0, metadata=meta("rnd: weight of the normalised novelty bonus", lo=0.0))
    lr: float = field(default=0.001, metadata=meta("rnd: predictor learning rate", lo=0.0, hi=1.0))
    epochs: int = field(default=5, metadata=meta("rnd: predictor passes over each round's samples", lo=1))
    hidden: int = field(default=128, metadata=meta("rnd: hidden width of target and predictor", lo=1))


@dataclass(frozen=True)
class CountConfig:
    """``count.*``: the SimHash count bonus of method ``count``."""

    coef: float = field(default=1.0, metadata=meta("count: bonus coef / sqrt(pseudo-count)", lo=0.0))
    bits: int = field(
        default=8, metadata=meta("count: SimHash code length k", lo=1, hi=62, listed_after="wr.pos_weight")
    )


@dataclass(frozen=True)
class WrConfig:
    """``wr.*``: method ``w_reinforce``."""

    pos_weight: float = field(
        default=0.1, metadata=meta("w_reinforce: weight lambda of the successes (failures weigh 1)", lo=0.0)
    )


@dataclass(frozen=True)
class NpoConfig:
    """``npo.*``: method ``npo``."""

    beta: float = field(
        default=0.1,
        metadata=meta(
            (
                "npo: inverse temperature beta; each failure's gradient weight is 2 sigmoid(beta (log g - log"
                " p0)) in (0, 2), bounded (beta -> 0: nsr)"
            ),
            lo=1e-06,
        ),
    )


@dataclass(frozen=True)
class LoggingConfig:
    """``logging.*``: where per-round metrics go besides metrics.jsonl."""

    backends: list = field(
        default_factory=lambda: ["tensorboard"],
        metadata=meta(
            (
                "where per-round metrics go besides metrics.jsonl: tensorboard (<run_dir>/tensorboard, x axis"
                " NREs), mlflow (config as params, metrics with step = round, the closing summary; a resumed "
                "run continues the same MLflow run), wandb (the same into a W&B run, offline in "
                "<run_dir>/wandb unless logging.wandb_mode says otherwise); a list, or one name or "
                "comma-separated names"
            ),
            choices=("tensorboard", "mlflow", "wandb"),
        ),
    )
    mlflow_uri: str = field(
        default="",
        metadata=meta("MLflow tracking URI (empty: a local file store, <run_dir>/mlruns; http(s)://... a server)"),
    )
    mlflow_experiment: str = field(default="banel_ray", metadata=meta("MLflow experiment the run is logged under"))
    wandb_project: str = field(default="banel_ray", metadata=meta("W&B project the run is logged under"))
    wandb_mode: str = field(
        default="",
        metadata=meta(
            (
                "W&B mode: offline (no account, no network; `wandb sync` uploads later), online, disabled; "
                "empty: WANDB_MODE, else offline"
            ),
            choices=("", "offline", "online", "disabled"),
        ),
    )


@dataclass(frozen=True)
class RayConfig:
    """``ray.*``: the Ray instance a run joins or starts."""

    address: str = field(default="", metadata=meta("Ray address; empty: join a running cluster if any, else start one"))
    num_cpus: int = field(default=0, metadata=meta("CPUs for a local Ray instance (0: all)", lo=0))


@dataclass(frozen=True)
class RunConfig:
    """A run's whole config, typed: the top-level keys, then one frozen section per prefix
    (``rc.negative.epochs`` is the key ``negative.epochs``). Its fields are the declaration
    ``config.FIELDS`` is derived from, in this order."""

    task: str = field(
        default="addition_attack", metadata=meta("task name (addition_attack, gsm_hard) or a module:Class path")
    )
    task_options: dict = field(
        default_factory=lambda: {}, metadata=meta("keyword arguments for the task (e.g. max_digits, solver, prior)")
    )
    seed: int = field(default=0, metadata=meta("seed for sampling, training and splits", lo=0))
    runtime: str = field(
        default="ray",
        metadata=meta(
            (
                "where the roles run: ray (actors; a local instance or a cluster) or local (one process, no "
                "Ray: notebooks, debuggers, machines without Ray)"
            ),
            choices=("ray", "local"),
        ),
    )
    run_dir: str = field(
        default="",
        metadata=meta(
            "output folder, or a URI (s3://, gs://: staged locally, copied there every round); empty: "
            "runs/<task>-<time>"
        ),
    )
    method: str = field(
        default="banel",
        metadata=meta(
            "the algorithm: " + ", ".join(f"{k} ({v[1]})" for k, v in METHODS.items()),
            choices=lambda: tuple(METHODS),  # read when checked: a method registered later is allowed
        ),
    )
    mode: str = field(
        default="distill",
        metadata=meta(
            "BaNEL only: distill (Algorithm 2) or sequential (Algorithm 1; the same as method=banel_sequential)",
            choices=("distill", "sequential"),
        ),
    )
    rounds: int = field(default=6, metadata=meta("maximum number of rounds", lo=1, hi=10000))
    budget: int = field(default=1500, metadata=meta("hard cap on reward evaluations (NREs)", lo=1))
    samples_per_round: int = field(default=250, metadata=meta("m: candidates sent to the oracle each round", lo=1))
    pool_size: int = field(
        default=1000, metadata=meta("fresh candidates drawn (no NREs) for the filter/distillation step", lo=1)
    )
    use_positives: bool = field(default=False, metadata=meta("also train on successes (the paper drops them)"))
    score: ScoreConfig = field(default_factory=ScoreConfig)
    support: SupportConfig = field(default_factory=SupportConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    negative: NegativeConfig = field(default_factory=NegativeConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    pg: PgConfig = field(default_factory=PgConfig)
    rnd: RndConfig = field(default_factory=RndConfig)
    count: CountConfig = field(default_factory=CountConfig)
    wr: WrConfig = field(default_factory=WrConfig)
    npo: NpoConfig = field(default_factory=NpoConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ray: RayConfig = field(default_factory=RayConfig)
