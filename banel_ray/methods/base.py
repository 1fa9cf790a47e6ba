"""What a method is: the part of a round that differs between algorithms.

The runner proposes, pays, evaluates and checkpoints the same way for every method; a ``Method``
says how it proposes (``propose``: draws from the samplers by default), what it learns from a
paid round (``learn``: returns an ``Update`` of the samplers' weights, or None), which trainer
roles it owns (``start``; they write its checkpoint shards) and how its generator is sampled for
an evaluation. A new method is one file here and one line in ``core/method_registry.py``; CONTRIBUTING.md
shows a complete small one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from banel_ray.core import seeds
from banel_ray.records import Update


def split(n: int, k: int) -> list[int]:
    """n draws shared by k samplers as evenly as possible."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


class SamplerPool:
    """The sampler actors of a run: seeded draws split across them, weight updates to all."""

    def __init__(self, rt, handles: list, seed: int):
        self.rt, self.handles, self.seed = rt, list(handles), seed

    def draw(self, n: int, tag: int) -> list:
        """References to ``SampleBatch``es of n draws in all, seeded by the stream ``tag``."""
        s = seeds.draw(self.seed, tag)
        return [
            h.sample.remote(k, seeds.per_sampler(s, i))
            for i, (h, k) in enumerate(zip(self.handles, split(n, len(self.handles))))
            if k > 0
        ]

    def versions(self) -> list[int]:
        return self.rt.get([h.version.remote() for h in self.handles])

    def load(self, version: int, weights_ref) -> list:
        return [h.load_weights.remote(version, weights_ref) for h in self.handles]


@dataclass
class Context:
    """What a method is given: the run's config (flat and typed), the runtime that spawns and
    waits, the task, the prior's folder, the samplers and the checkpoint folder its roles restore
    from."""

    cfg: dict
    rc: Any  # config.RunConfig
    rt: Any  # runtime.actors.LocalRuntime or RayRuntime
    task: Any
    prior_dir: str
    samplers: SamplerPool
    checkpoints: str
    log: Callable[[str], None] = print

    def trainer_kwargs(self) -> dict:
        """Constructor arguments every trainer role shares."""
        return dict(
            task_name=self.rc.task,
            task_options=self.rc.task_options,
            prior_dir=self.prior_dir,
            seed=self.rc.seed,
            trainer=self.rc.trainer,
            checkpoints=self.checkpoints,
        )

    def spawn_trainer(self, cls, **kwargs):
        t = self.rc.trainer
        return self.rt.spawn(
            cls, "trainer", num_cpus=t.num_cpus, num_gpus=t.num_gpus, **self.trainer_kwargs(), **kwargs
        )


class Method:
    """Base class: propose from the samplers, learn nothing (random search is this)."""

    name = "method"
    settings: tuple[type, ...] = ()  # the config sections it reads (config_sections dataclasses): its settings
    trainer_roles: tuple[str, ...] = ()  # the trainer actors ``start`` spawns (CPU accounting)
    generator_role: str | None = None  # the trainer role whose shard holds the samplers' weights

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.rt = ctx.rt
        self.trainers: dict[str, Any] = {}  # role -> handle; each writes a checkpoint shard

    def setting_sections(self) -> dict[str, Any]:
        """This run's typed section of each class in ``settings``, by section name (``{"pg": rc.pg}``):
        keyword arguments for the roles that read them."""
        from banel_ray.config import section_name

        return {section_name(cls): getattr(self.ctx.rc, section_name(cls)) for cls in self.settings}

    def start(self) -> None:
        """Spawn this method's trainer roles (they restore themselves from the last checkpoint)."""

    def propose(self, round_: int) -> list:
        """References to the batches paid for in round ``round_`` (0-based)."""
        return self.ctx.samplers.draw(self.ctx.rc.samples_per_round, seeds.PROPOSE + round_)

    def prefetch(self, round_: int) -> None:
        """Queue work that depends only on g_t while the round is paid for (BaNEL's pool)."""

    def learn(self, round_: int, paid_ref, version: int, metrics: dict) -> Update | None:
        """Learn from the round's paid batch; ``version`` is the next generator version. Metrics
        go into ``metrics``; new weights for the samplers come back as an ``Update``."""
        return None

    def eval_draws(self, n: int, tag: int) -> list:
        """References to n draws of the current generator (posterior) for an evaluation."""
        return self.ctx.samplers.draw(n, tag)

    def grid_draws(self, n: int, tag: int) -> list:
        """References to n draws of the final generator (posterior) for the task's sample grid."""
        return self.eval_draws(n, tag)

    def computed_rate(self):
        """A reference to the task's computed rate of the current generator, or None."""
        return None

    def weights_ref(self):
        """A reference to the current generator weights (for samplers restarted later), or None."""
        return None

    def shutdown(self) -> None:
        for h in self.trainers.values():
            self.rt.kill(h)
