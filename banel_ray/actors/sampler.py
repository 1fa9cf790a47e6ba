"""The sampler role: draw completions from the current generator g_t, stamped with its weight version.

Two backends behind one interface (``sample``, ``load_weights``, ``version``):

* ``VllmBackend`` (default): an in-process vLLM engine built once; new weights arrive as a state
  dict (through the object store) and are loaded in place with ``reload_weights``, no rebuild.
* ``TorchBackend``: plain transformers forward passes with a KV cache; for tests and comparison.

Both draw at temperature 1 with no top-k/top-p truncation, so log g_t(x) scored by the trainers
is the density of what was actually sampled.
"""

from __future__ import annotations

import os
import time

from banel_ray import tasks
from banel_ray.core import checkpoint as ckpt
from banel_ray.records import SampleBatch


class TorchBackend:
    def __init__(self, model_dir: str, task, seed: int, threads: int = 1, **_):
        from banel_ray.models import load_model, set_threads

        set_threads(threads)
        self.model = load_model(model_dir)
        self.task = task
        self.seed = seed
        self.calls = 0

    def load_weights(self, weights: dict) -> None:
        from banel_ray.models import load_state

        load_state(self.model, weights)

    def sample(self, n: int, seed: int | None) -> list[tuple[int, ...]]:
        from banel_ray.models import sample

        self.calls += 1
        s = self.seed * 1_000_003 + self.calls if seed is None else seed
        return sample(self.model, self.task.prompt, n, self.task.max_new_tokens, self.task.eos_id, s)

    def logprobs(self, completions) -> list[float]:
        from banel_ray.models import sequence_logprobs

        lp, _ = sequence_logprobs(self.model, [(self.task.prompt, tuple(c)) for c in completions])
        return lp.tolist()


class VllmBackend:
    def __init__(
        self,
        model_dir: str,
        task,
        seed: int,
        kv_cache_mb: int = 64,
        threads: int = 1,
        max_model_len: int | None = None,
        dtype: str = "float32",
        gpu_memory_utilization: float = 0.0,
        **_,
    ):
        # In-process engine (no extra engine-core process) with threads governed by Ray's
        # num_cpus, not vLLM's own core binding.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        from vllm import LLM

        self.task = task
        self.max_len = max_model_len or (len(task.prompt) + task.max_new_tokens + 1)
        # vLLM refuses to start an engine while the GPU's free memory is below
        # gpu_memory_utilization x total (default 0.92), even with kv_cache_memory_bytes set: with
        # several samplers on one GPU (sampler.num_gpus < 1) each must ask for its share only.
        extra = {"gpu_memory_utilization": gpu_memory_utilization} if gpu_memory_utilization > 0 else {}
        self.llm = LLM(
            model=model_dir,
            skip_tokenizer_init=True,
            dtype=dtype,
            enforce_eager=True,
            max_model_len=self.max_len,
            kv_cache_memory_bytes=kv_cache_mb << 20,
            seed=seed,
            enable_prefix_caching=False,
            **extra,
        )

    def load_weights(self, weights: dict) -> None:
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": list(weights.items()), "is_checkpoint_format": True}
        )
        self.llm.reset_prefix_cache()

    def _params(self, n_tokens: int, seed: int | None, prompt_logprobs: bool = False):
        from vllm import SamplingParams

        return SamplingParams(
            n=1,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_tokens=n_tokens,
            stop_token_ids=[self.task.eos_id],
            detokenize=False,
            seed=seed,
            prompt_logprobs=0 if prompt_logprobs else None,
            logprobs=None,
        )

    def sample(self, n: int, seed: int | None) -> list[tuple[int, ...]]:
        prompts = [{"prompt_token_ids": list(self.task.prompt)}] * n
        if seed is None:
            params = self._params(self.task.max_new_tokens, None)
        else:  # per-request seeds: reproducible whatever the batch composition
            params = [self._params(self.task.max_new_tokens, seed * 1_000_003 + i) for i in range(n)]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        return [tuple(o.outputs[0].token_ids) for o in outs]

    def logprobs(self, completions) -> list[float]:
        """log g(x) of given completions from vLLM's own forward pass (prompt logprobs)."""
        p = list(self.task.prompt)
        prompts = [{"prompt_token_ids": p + list(c)} for c in completions]
        outs = self.llm.generate(prompts, self._params(1, 0, prompt_logprobs=True), use_tqdm=False)
        res = []
        for o, c in zip(outs, completions):
            lps = o.prompt_logprobs[len(p) :]
            toks = list(c)
            res.append(float(sum(d[t].logprob for d, t in zip(lps, toks))))
        return res


BACKENDS = {"torch": TorchBackend, "vllm": VllmBackend}


class Sampler:
    """One sampler: a backend plus the weight version it currently serves.

    ``checkpoints``: the run's checkpoint folder; a (re)started sampler serves the weights of the
    last complete checkpoint, so a restart after a crash does not fall back to the prior.
    """

    def __init__(
        self,
        backend: str,
        model_dir: str,
        task_name: str,
        task_options: dict,
        seed: int = 0,
        checkpoints: str | None = None,
        **backend_options,
    ):
        self.task = tasks.build(task_name, task_options)
        self.backend = BACKENDS[backend](model_dir, self.task, seed, **backend_options)
        self.weight_version = 0
        found = ckpt.CheckpointStore(checkpoints).generator() if checkpoints else None
        if found:
            self.load_weights(*found)

    def sees(self, path: str, token: str) -> bool:
        return ckpt.sees(path, token)

    def version(self) -> int:
        return self.weight_version

    def load_weights(self, version: int, weights: dict) -> int:
        """Take generator weights ``version`` (a state dict, passed as an object ref)."""
        if version != self.weight_version:
            self.backend.load_weights(weights)
            self.weight_version = version
        return self.weight_version

    def sample(self, n: int, seed: int | None = None) -> SampleBatch:
        t = time.perf_counter()
        samples = self.backend.sample(n, seed) if n > 0 else []
        return SampleBatch(samples=samples, version=self.weight_version, seconds=time.perf_counter() - t)

    def logprobs(self, completions) -> list[float]:
        return self.backend.logprobs(completions)
