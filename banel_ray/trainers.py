"""Trainer actors: the negative model p_phi_t and the generator g_t.

``NegativeTrainer`` fits p_phi_t (a full copy of g_t, or a LoRA adapter on a copy) by maximum
likelihood on the round's failures and scores fresh candidates with s(x) = log g_t(x) - log p_phi_t(x);
in sequential mode it keeps every past p_phi (Algorithm 1) and rejects candidates before they are
paid for.
``GeneratorTrainer`` filters the scored pool and distils what is left into g_{t+1}. Both use
``banel_ray.models`` for every log-likelihood, so the ratio's two terms share one numerical path.
"""
from __future__ import annotations

import time

import numpy as np
import ray

from banel_ray import algorithm as alg
from banel_ray import tasks
from banel_ray.models import (copy_model, load_model, load_state, lora_copy, mean_nll, merge_lora,
                              sequence_logprobs, set_threads, state_dict, trainable_params, train_mle)


class _Base:
    def __init__(self, task_name: str, task_options: dict, prior_dir: str, seed: int = 0,
                 threads: int = 1, run_dir: str | None = None, device: str = "cpu",
                 dtype: str = "float32", grad_checkpointing: bool = False):
        from banel_ray.checkpoint import load_checkpoint

        set_threads(threads)
        self.task = tasks.build(task_name, task_options)
        self.prior = load_model(prior_dir, dtype=dtype, device=device)  # p0, frozen
        if grad_checkpointing:  # recompute activations in backward: LLM training memory (copies inherit it)
            self.prior.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.gen = copy_model(self.prior)   # g_t
        self.gen_version = 0
        self.seed = seed
        self._restore(load_checkpoint(run_dir))  # resume, or a restart after a crash

    def _restore(self, ck) -> None:
        from banel_ray.checkpoint import latest_generator

        found = latest_generator(ck)
        if found:
            self.set_generator(*found)

    def _pairs(self, samples):
        return [(self.task.prompt, tuple(s)) for s in samples]

    def _logp(self, model, samples):
        return sequence_logprobs(model, self._pairs(samples), pad_id=self.task.pad_id)

    def set_generator(self, version: int, weights: dict) -> int:
        if version != self.gen_version:
            load_state(self.gen, weights)
            self.gen_version = version
        return self.gen_version

    def success_rate(self) -> dict | None:
        """g_t's success rate computed by the task (exact enumeration), or None if it has none."""
        return self.task.success_rate(self.gen)


class NegativeTrainer(_Base):
    def __init__(self, *a, **k):
        self.neg = None
        self.negatives: list[tuple[int, ...]] = []     # all negatives so far (negative.data=all)
        self.regions: list[tuple[dict, float]] = []   # sequential mode: (p_phi weights, log tau)
        super().__init__(*a, **k)

    def _restore(self, ck) -> None:
        super()._restore(ck)
        if ck:
            self.set_state({"regions": ck[2], "negatives": ck[0].get("negatives", [])})

    def fit(self, round_: int, paid: dict, epochs: int, lr: float, batch_size: int,
            data: str = "round", holdout: float = 0.1, lora: dict | None = None) -> dict:
        """Fit p_phi_t on failures (reward 0). Successes and unpaid/failed evaluations are never used.

        ``lora`` ({r, alpha, dropout, targets}, r > 0): train a LoRA adapter on a copy of g_t
        instead of all its weights, then merge it, so scoring and regions see a plain model.
        """
        import resource

        t = time.perf_counter()
        negs = list(dict.fromkeys(tuple(s) for s, r in zip(paid["samples"], paid["rewards"]) if r == 0))
        self.negatives += negs
        train_set = list(dict.fromkeys(self.negatives)) if data == "all" else negs
        tr, ho = alg.split_holdout(len(train_set), holdout, self.seed + round_)
        tr_pairs = self._pairs([train_set[i] for i in tr])
        ho_pairs = self._pairs([train_set[i] for i in ho])
        use_lora = bool(lora and lora.get("r", 0) > 0)
        self.neg = None  # free the last round's p_phi before copying g_t
        self.neg = lora_copy(self.gen, **lora) if use_lora else copy_model(self.gen)
        n_train = trainable_params(self.neg)
        losses = train_mle(self.neg, tr_pairs, epochs, lr, batch_size, self.seed + 7919 * round_,
                           pad_id=self.task.pad_id)
        self.neg = merge_lora(self.neg)
        return {"neg_count": len(train_set), "neg_train_nll": losses[-1] if losses else float("nan"),
                "neg_trainable_params": n_train,
                "neg_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "neg_heldout_nll": mean_nll(self.neg, ho_pairs, pad_id=self.task.pad_id),
                "gen_heldout_nll": mean_nll(self.gen, ho_pairs, pad_id=self.task.pad_id),
                "t_fit_actor": time.perf_counter() - t}

    def score(self, length_norm: bool, *batches: dict) -> dict:
        """Scores of pool candidates under g_t and p_phi_t; the samples travel on with them."""
        samples = [tuple(s) for b in batches for s in b["samples"]]
        lg, lengths = self._logp(self.gen, samples)
        ln, _ = self._logp(self.neg, samples)
        return {"samples": samples, "scores": alg.sequence_scores(lg, ln, lengths, length_norm)}

    # ---- Algorithm 1 (sequential) ----------------------------------------------------------------
    def add_region(self, length_norm: bool, factor: float | None, log_tau: float | None,
                   *calib: dict) -> dict:
        """Freeze p_phi_t as a rejection region. With a filter factor, its threshold is the score
        quantile that keeps 1/f of a calibration pool from p0 (so each region rejects 1 - 1/f)."""
        samples = [tuple(s) for b in calib for s in b["samples"]]
        if factor is not None:
            s = self._region_scores(self.neg, samples, length_norm)
            k = alg.keep_count(len(s), factor)
            log_tau = float(np.sort(s)[::-1][k - 1]) if len(s) else 0.0
        self.regions.append((state_dict(self.neg), float(log_tau)))
        return {"regions": len(self.regions), "region_log_tau": float(log_tau)}

    def _region_scores(self, model, samples, length_norm):
        l0, lengths = self._logp(self.prior, samples)
        ln, _ = self._logp(model, samples)
        return alg.sequence_scores(l0, ln, lengths, length_norm)

    def accept(self, length_norm: bool, limit: int, *batches: dict):
        """Keep (up to ``limit``) candidates that no past region rejects; costs no NREs.

        Returns (batch, (kept, passed)): two refs with num_returns=2; the driver reads only counts.
        """
        samples = [tuple(s) for b in batches for s in b["samples"]]
        version = batches[0]["version"] if batches else 0
        if self.regions and samples:
            rows = []
            m = copy_model(self.prior)
            for weights, log_tau in self.regions:
                load_state(m, weights)
                rows.append(self._region_scores(m, samples, length_norm) - log_tau)
            mask = alg.sequential_accept(np.stack(rows), 0.0)
            samples = [s for s, k in zip(samples, mask) if k]
        passed = len(samples)
        samples = samples[:limit]
        return {"samples": samples, "version": version}, (len(samples), passed)

    def get_state(self) -> dict:
        return {"regions": self.regions, "negatives": self.negatives}

    def set_state(self, state: dict) -> None:
        self.regions = [(w, float(t)) for w, t in state.get("regions", [])]
        self.negatives = [tuple(s) for s in state.get("negatives", [])]


class GeneratorTrainer(_Base):
    def weights(self) -> dict:
        return state_dict(self.gen)

    def distil(self, round_: int, version: int, kind: str, value: float, epochs: int, lr: float,
               batch_size: int, reset: bool, scored: dict, paid: dict | None = None,
               use_positives: bool = False):
        """Filter the scored pool (top 1/f, or s >= log tau) and fit g_{t+1} on what is kept.

        Returns (new weights, metrics): two object refs when called with num_returns=2.
        """
        t = time.perf_counter()
        s = np.asarray(scored["scores"])
        mask = alg.quantile_filter(s, value) if kind == "quantile" else alg.threshold_filter(s, np.log(value))
        kept = [x for x, k in zip(scored["samples"], mask) if k]
        if use_positives and paid:
            kept += [tuple(x) for x, r in zip(paid["samples"], paid["rewards"]) if r == 1]
        if reset:
            self.gen = copy_model(self.prior)
        losses = train_mle(self.gen, self._pairs(kept), epochs, lr, batch_size,
                           self.seed + 104729 * (round_ + 1), pad_id=self.task.pad_id) if kept else []
        self.gen_version = version
        q = np.quantile(s, [0.1, 0.5, 0.9]) if len(s) else [np.nan] * 3
        metrics = {"acceptance": float(mask.mean()) if len(mask) else 0.0, "kept": len(kept),
                   "score_pos_frac": float((s >= 0).mean()) if len(s) else 0.0,  # what tau = 1 keeps
                   "score_q10": float(q[0]), "score_q50": float(q[1]), "score_q90": float(q[2]),
                   "distil_loss": losses[-1] if losses else float("nan"),
                   "t_distil_actor": time.perf_counter() - t}
        if kept:
            lg, _ = self._logp(self.gen, kept)
            l0, _ = self._logp(self.prior, kept)
            metrics["kl_to_prior"] = alg.kl_estimate(lg, l0)
        return state_dict(self.gen), metrics


NegativeTrainerActor = ray.remote(max_restarts=2, max_task_retries=2)(NegativeTrainer)
GeneratorTrainerActor = ray.remote(max_restarts=2, max_task_retries=2)(GeneratorTrainer)
