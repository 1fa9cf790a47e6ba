"""``CallableTask``: a task whose NRE oracle is a plug-in (a function, a batch function, an HTTP
endpoint), with the prior and the reporting of another task or of your own.

In a config::

    task: banel_ray.reward_plugins:CallableTask
    task_options:
      base: addition_attack                 # prior, prompt, rendering, diagnostics come from here
      base_options: {max_digits: 8}
      oracle: {kind: http, url: "http://127.0.0.1:8000/rewards", timeout_s: 10}
      evaluator: {kind: sample, fn: "my_pkg.cheap:reward"}   # optional, for success-rate estimates

Without ``base``, give ``prior`` (a Hugging Face folder) and the prompt/EOS/pad ids. Or subclass
any ``Task`` and return your plug-in from ``reward_plugin()``: the reward service pays through it
when a task has one, else through the task's ``rewards`` method.

Success-rate estimates (the evaluator role: not NREs) call ``evaluator``, never the paid oracle.
Without an evaluator, set ``eval.samples: 0``, or allow estimates from the paid oracle with
``eval.paid_budget`` (draws over the whole run; the reward service counts and rate-limits them).
A run with neither is refused before it starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from banel_ray.reward_plugins.base import _as_int_rewards
from banel_ray.reward_plugins.spec import build, check_spec
from banel_ray.tasks.base import Task


class CallableTask(Task):
    name = "callable"

    def __init__(
        self,
        oracle,
        base: str | None = None,
        base_options: dict | None = None,
        evaluator=None,
        prior: str = "",
        prompt: Sequence[int] = (),
        eos_id: int = 2,
        pad_id: int = 0,
        max_new_tokens: int = 32,
    ):
        from banel_ray import tasks

        self.oracle = build(oracle)
        self.evaluator = build(evaluator) if evaluator is not None else None
        self.base = tasks.build(base, base_options) if base else None
        if self.base is not None:
            self.name = f"{self.base.name}+oracle"
            self.prompt, self.eos_id, self.pad_id = self.base.prompt, self.base.eos_id, self.base.pad_id
            self.max_new_tokens = self.base.max_new_tokens
        else:
            self.prompt, self.eos_id, self.pad_id = tuple(prompt), int(eos_id), int(pad_id)
            self.max_new_tokens = int(max_new_tokens)
        self.prior = prior

    @classmethod
    def evaluation_is_free(cls, options: dict) -> bool:
        return options.get("evaluator") is not None

    @staticmethod
    def check_options(options: dict) -> str | None:
        """One line for a missing or unusable oracle/evaluator spec or base task (imports the code
        they name, builds nothing)."""
        from banel_ray import tasks

        if options.get("oracle") is None:
            return (
                "task callable needs 'task_options.oracle': a module:function path, an http(s):// URL "
                "or a mapping with kind sample|batch|http|flaky|class"
            )
        for key in ("oracle", "evaluator"):
            if options.get(key) is not None:
                msg = check_spec(options[key])
                if msg:
                    return f"'task_options.{key}': {msg}"
        base = options.get("base")
        if base:
            try:
                tasks.resolve(base)
            except Exception:  # noqa: BLE001 - any failure to find it
                return f"unknown task 'task_options.base' {base!r}; allowed: {', '.join(tasks.BUILTIN)} or a module:Class path"
        elif not options.get("prior"):
            return "task callable needs 'task_options.base' (a task for the prior) or 'task_options.prior' (a folder)"
        return None

    def prepare(self, progress=print) -> str:
        if self.base is not None:
            return self.base.prepare(progress=progress)
        if not self.prior:
            raise ValueError("CallableTask needs 'base' (a task) or 'prior' (a Hugging Face folder)")
        return self.prior

    def rewards(self, completions):
        """The oracle, strictly: 1/0 per sample; raises if any sample could not be evaluated."""
        return _as_int_rewards(self.oracle.rewards([tuple(c) for c in completions]))

    def reward_plugin(self):
        return self.oracle

    @property
    def free_evaluation(self) -> bool:
        return self.evaluator is not None

    def evaluation_rewards(self, completions):
        if self.evaluator is None:
            raise RuntimeError(
                "CallableTask has no evaluator: success-rate estimates never call the paid "
                "oracle (give task_options.evaluator or set eval.samples: 0)"
            )
        return _as_int_rewards(self.evaluator.rewards([tuple(c) for c in completions]))

    def render(self, completion):
        return self.base.render(completion) if self.base is not None else super().render(completion)

    def pattern(self, completion):
        return self.base.pattern(completion) if self.base is not None else super().pattern(completion)

    def diagnostics(self, completions):
        return self.base.diagnostics(completions) if self.base is not None else super().diagnostics(completions)
