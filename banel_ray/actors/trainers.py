"""BaNEL's trainer roles: the negative model p_phi_t and the generator g_t.

``NegativeTrainer`` fits p_phi_t (a full copy of g_t, or a LoRA adapter on a copy) by maximum
likelihood on the round's failures and scores fresh candidates with s(x) = log g_t(x) - log p_phi_t(x);
in sequential mode it keeps every past p_phi (Algorithm 1) and rejects candidates before they are
paid for. ``GeneratorTrainer`` filters the scored pool and distils what is left into g_{t+1}.
Both use ``banel_ray.models`` for every log-likelihood, so the ratio's two terms share one
numerical path. Each writes its own checkpoint shard and restores itself from the last one.
"""

from __future__ import annotations

import json
import time

import numpy as np

from banel_ray import tasks
from banel_ray.algorithms import banel as alg
from banel_ray.algorithms import exact_posterior
from banel_ray.core import checkpoint as ckpt
from banel_ray.core import seeds
from banel_ray.models import (
    copy_model,
    load_model,
    load_state,
    lora_copy,
    max_token_log_ratio,
    mean_nll,
    merge_lora,
    sequence_logprobs,
    sequence_logprobs_and_min,
    set_threads,
    state_dict,
    train_mle,
    trainable_params,
)
from banel_ray.records import PaidBatch, SampleBatch, ScoredPool


class TrainerRole:
    """What every trainer holds: the task, the frozen prior p0 and the generator g_t it serves.

    ``trainer``: the ``trainer.*`` section (threads, device, dtype, gradient checkpointing);
    ``checkpoints``: the run's checkpoint folder, read at start (resume, or a restart).
    """

    role = "trainer"

    def __init__(
        self,
        task_name: str,
        task_options: dict,
        prior_dir: str,
        seed: int = 0,
        trainer=None,
        checkpoints: str | None = None,
    ):
        from banel_ray.config_sections import TrainerConfig

        t = trainer if trainer is not None else TrainerConfig()
        set_threads(t.threads)
        self.task = tasks.build(task_name, task_options)
        self.prior = load_model(prior_dir, dtype=t.dtype, device=t.device)  # p0, frozen
        if t.grad_checkpointing:  # recompute activations in backward: LLM training memory (copies inherit it)
            self.prior.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.generator = copy_model(self.prior)  # g_t
        self.generator_version = 0
        self.seed = seed
        self.store = ckpt.CheckpointStore(checkpoints) if checkpoints else None
        if self.store and self.store.latest():
            self.restore()

    def restore(self) -> None:
        """Take g_t from the last complete checkpoint (subclasses add their own shard)."""
        found = self.store.generator()
        if found:
            self.set_generator(*found)

    def sees(self, path: str, token: str) -> bool:
        return ckpt.sees(path, token)

    def _pairs(self, samples):
        return [(self.task.prompt, tuple(s)) for s in samples]

    def _logp(self, model, samples):
        return sequence_logprobs(model, self._pairs(samples), pad_id=self.task.pad_id)

    def set_generator(self, version: int, weights: dict) -> int:
        if version != self.generator_version:
            load_state(self.generator, weights)
            self.generator_version = version
            self._gen_table = None
        return self.generator_version

    def _generator_table(self):
        """log g of every string of an enumerable space, computed once per generator version."""
        if getattr(self, "_gen_table", None) is None:
            self._gen_table = self.task.code_logprobs(self.generator)
        return self._gen_table

    def success_rate(self) -> dict | None:
        """g_t's success rate computed by the task (exact enumeration), or None if it has none."""
        return self.task.success_rate(self.generator)


class NegativeTrainer(TrainerRole):
    """``negative``, ``score``, ``support``: those config sections."""

    role = "negative"

    def __init__(self, *a, negative=None, score=None, support=None, **k):
        from banel_ray.config_sections import NegativeConfig, ScoreConfig, SupportConfig

        self.cfg = negative if negative is not None else NegativeConfig()
        self.score_cfg = score if score is not None else ScoreConfig()
        self.support_cfg = support if support is not None else SupportConfig()
        self.negative_model = None
        self.negatives: list[tuple[int, ...]] = []  # all negatives so far (negative.data=all)
        self.regions: list[tuple[dict, float]] = []  # sequential mode: (p_phi weights, log tau)
        self._exact = None  # posterior_rate's cache: (log p0 table, accepted mask, regions applied)
        self._gen_table = None  # log g of every string (enumerable tasks), reset when g changes
        self._target = None  # the last exact Algorithm 2 target: (log g_t table, kept mask)
        self._phi_table = None  # (p_phi, its log p table) from exact_target, reused when p_phi becomes a region
        self._region_tables: dict = {}  # region index -> its table, where already computed
        self._excluded_count = 0  # negatives the cached posterior leaves out (exclude_failures)
        super().__init__(*a, **k)
        self.support_threshold = self._support_threshold()

    def _support_threshold(self) -> float | None:
        """The per-token floor of the support control: a constant, or read off the prior's own
        draws (deterministic, so a restarted trainer finds the same floor)."""
        c = self.support_cfg
        if c.kind == "none":
            return None
        if c.kind == "drift":
            return float(c.max_ratio)
        if c.quantile <= 0:
            return float(c.threshold)
        from banel_ray.models import sample

        draws = sample(
            self.prior,
            self.task.prompt,
            c.calibration,
            self.task.max_new_tokens,
            self.task.eos_id,
            seed=seeds.support_calibration(self.seed),
        )
        _, least, _ = sequence_logprobs_and_min(self.prior, self._pairs(draws), pad_id=self.task.pad_id)
        return alg.support_threshold(least, c.quantile)

    def _lora(self) -> dict | None:
        c = self.cfg
        if c.lora_r <= 0:
            return None
        return {
            "r": c.lora_r,
            "alpha": c.lora_alpha,
            "dropout": c.lora_dropout,
            "targets": [t.strip() for t in c.lora_targets.split(",") if t.strip()],
        }

    def fit(self, round_: int, paid: PaidBatch) -> dict:
        """Fit p_phi_t on failures (reward 0). Successes and unpaid/failed evaluations are never used.

        With ``negative.lora.r`` > 0, a LoRA adapter on a copy of g_t is trained instead of all
        its weights, then merged, so scoring and regions see a plain model.
        """
        import resource

        c = self.cfg
        t = time.perf_counter()
        negs = paid.failures()
        self.negatives += negs
        train_set = list(dict.fromkeys(self.negatives)) if c.data == "all" else negs
        tr, ho = alg.split_holdout(len(train_set), c.holdout, seeds.holdout(self.seed, round_))
        tr_pairs = self._pairs([train_set[i] for i in tr])
        ho_pairs = self._pairs([train_set[i] for i in ho])
        lora = self._lora()
        self.negative_model = None  # free the last round's p_phi before copying g_t (or p0)
        start = self.prior if c.init == "prior" else self.generator
        self.negative_model = lora_copy(start, **lora) if lora else copy_model(start)
        n_train = trainable_params(self.negative_model)
        losses = train_mle(
            self.negative_model,
            tr_pairs,
            c.epochs,
            c.lr,
            c.batch_size,
            seeds.negative_fit(self.seed, round_),
            pad_id=self.task.pad_id,
        )
        self.negative_model = merge_lora(self.negative_model)
        return {
            "neg_count": len(train_set),
            "neg_train_nll": losses[-1] if losses else float("nan"),
            "neg_trainable_params": n_train,
            "neg_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "neg_heldout_nll": mean_nll(self.negative_model, ho_pairs, pad_id=self.task.pad_id),
            "gen_heldout_nll": mean_nll(self.generator, ho_pairs, pad_id=self.task.pad_id),
            "t_fit_actor": time.perf_counter() - t,
        }

    def score(self, *batches: SampleBatch) -> ScoredPool:
        """Scores of pool candidates, log g_t - kappa log p_phi_t (or log p0 - ...); the samples
        travel on with them, with each one's least likely token under p0 (for the diagnostics).
        The support control sets -inf where p0 finds a token nearly impossible (``token``) or where
        g_t has raised a token too far above p0 (``drift``)."""
        samples = [tuple(s) for b in batches for s in b.samples]
        numerator = self.prior if self.score_cfg.numerator == "prior" else self.generator
        lg, lengths = self._logp(numerator, samples)
        ln, _ = self._logp(self.negative_model, samples)
        scores = alg.sequence_scores(
            lg, ln, lengths, self.score_cfg.length_norm, getattr(self.score_cfg, "negative_power", 1.0)
        )
        info = {}
        least = None
        if samples:
            _, least, _ = sequence_logprobs_and_min(self.prior, self._pairs(samples), pad_id=self.task.pad_id)
        if self.support_threshold is not None and samples:
            if self.support_cfg.kind == "drift":
                ratio = max_token_log_ratio(self.generator, self.prior, self._pairs(samples), pad_id=self.task.pad_id)
                inside = alg.drift_mask(ratio, self.support_threshold)
                info = {"drift_max_ratio_q50": float(np.median(ratio))}
            else:
                inside = alg.support_mask(least, self.support_threshold)
            scores = alg.apply_support(scores, inside)
            info.update(support_threshold=self.support_threshold, support_rejected=float(1 - inside.mean()))
        if self.cfg.exclude_failures and self.negatives and samples:
            paid = self._known_failures(samples)
            scores = np.where(paid, -np.inf, scores)
            info["known_failures_rejected"] = float(paid.mean())
        return ScoredPool(samples=samples, scores=scores, info=info, prior_min=least)

    # ---- Algorithm 1 (sequential) ----------------------------------------------------------------
    def add_region(self, factor: float | None, log_tau: float | None, *calib: SampleBatch) -> dict:
        """Freeze p_phi_t as a rejection region. With a filter factor, its threshold is the score
        quantile that keeps 1/f of a calibration pool (so each region rejects 1 - 1/f of it): p0's
        draws, or with ``negative.region_calibration=posterior`` the current posterior's whole mass
        where the task enumerates its space (else ``calib`` holds the posterior's draws)."""
        samples = [tuple(s) for b in calib for s in b.samples]
        exact_tau = self._posterior_quantile(factor) if factor is not None else None
        if exact_tau is not None:
            log_tau = exact_tau
        elif factor is not None:
            s = self._region_scores(self.negative_model, samples)
            k = alg.keep_count(len(s), factor)
            log_tau = float(np.sort(s)[::-1][k - 1]) if len(s) else 0.0
        self.regions.append((state_dict(self.negative_model), float(log_tau)))
        if self._phi_table is not None and self._phi_table[0] is self.negative_model:  # scored once already
            self._region_tables[len(self.regions) - 1] = self._phi_table[1]
        self._phi_table = None
        return {"regions": len(self.regions), "region_log_tau": float(log_tau)}

    def _posterior_quantile(self, factor: float) -> float | None:
        """With ``negative.region_calibration=posterior`` on a task that enumerates its space, the
        threshold above which the current posterior (p0 restricted to what no region rejects) keeps
        1/f of its mass under p_phi_t's region score: the rule Algorithm 2's filter applies to g_t,
        so an exact distillation would reproduce these regions. None otherwise."""
        if self.cfg.region_calibration != "posterior":
            return None
        if self._fresh_posterior() is None:
            return None
        logp0, mask, _ = self._exact
        if self._phi_table is not None and self._phi_table[0] is self.negative_model:
            ln = self._phi_table[1]
        else:
            ln = self.task.code_logprobs(self.negative_model)
            self._phi_table = (self.negative_model, ln)  # add_region keeps it as the region's table
        return exact_posterior.posterior_threshold(
            logp0, mask, ln, factor, self.task.max_new_tokens, self.score_cfg.length_norm
        )

    def _region_scores(self, model, samples):
        l0, lengths = self._logp(self.prior, samples)
        ln, _ = self._logp(model, samples)
        return alg.sequence_scores(l0, ln, lengths, self.score_cfg.length_norm)

    def accept(self, limit: int, *batches: SampleBatch):
        """Keep (up to ``limit``) candidates that no past region rejects; costs no NREs.

        Returns (batch, (kept, passed)): two refs with num_returns=2; the driver reads only counts.
        """
        samples = [tuple(s) for b in batches for s in b.samples]
        version = batches[0].version if batches else 0
        if self.regions and samples:
            mask = regions_accept(
                self.prior, self.regions, self._pairs(samples), self.task.pad_id, self.score_cfg.length_norm
            )
            samples = [s for s, k in zip(samples, mask) if k]
        if self.cfg.exclude_failures and self.negatives:
            samples = [s for s, paid in zip(samples, self._known_failures(samples)) if not paid]
        passed = len(samples)
        samples = samples[:limit]
        return SampleBatch(samples=samples, version=version), (len(samples), passed)

    def add_region_from_prior(self, round_: int, factor: float | None, log_tau: float | None, n: int) -> dict:
        """``add_region`` calibrated on ``n`` fresh draws of p0 (a distill run's samplers serve g_t):
        the round's p_phi as an Algorithm 1 region, for ``distillation_report``."""
        from banel_ray.models import sample

        if factor is not None and self._posterior_quantile(factor) is not None:
            return self.add_region(factor, log_tau)  # calibrated on the posterior, exactly
        draws = sample(
            self.prior,
            self.task.prompt,
            n,
            self.task.max_new_tokens,
            self.task.eos_id,
            seed=seeds.region_calibration(self.seed, round_),
        )
        return self.add_region(factor, log_tau, SampleBatch(samples=draws, version=0))

    def exact_target(self, round_: int, factor: float | None, log_tau: float | None, n: int):
        """Algorithm 2's filter over the whole space (``exact_posterior.exact_filter``): the target
        q(x) proportional to g_t(x) where s(x) passes, and ``n`` strings drawn exactly from it for
        ``generator.distil_from=exact`` (none when n = 0: a measurement only). The target is kept
        for ``distillation_report``, which measures KL(q || g_{t+1}): the distillation step's own
        error. Returns (SampleBatch, metrics): two refs with num_returns=2."""
        lg = self._generator_table()
        if lg is None:
            raise ValueError(f"task {type(self.task).__name__} does not enumerate its space")
        num = lg if self.score_cfg.numerator != "prior" else self.task.code_logprobs(self.prior)
        ln = self.task.code_logprobs(self.negative_model)
        self._phi_table = (self.negative_model, ln)
        lengths = np.full(np.shape(lg), self.task.max_new_tokens, dtype=np.float64)
        scores = alg.sequence_scores(
            num, ln, lengths, self.score_cfg.length_norm, getattr(self.score_cfg, "negative_power", 1.0)
        )
        excluded = self._excluded_codes()
        if excluded is not None:  # the pool filter's limit: the top 1/f of g's mass off the known failures
            scores = np.array(scores, dtype=np.float64)
            scores.ravel()[excluded] = -np.inf
            mask, log_tau = exact_posterior.exact_filter(
                np.where(np.isfinite(scores), lg, -np.inf), scores, factor, log_tau
            )
            mask &= np.isfinite(scores)
        else:
            mask, log_tau = exact_posterior.exact_filter(lg, scores, factor, log_tau)
        self._target = (lg, mask)
        rng = np.random.default_rng(seeds.generator_update(self.seed, round_) + 11)
        draws = self.task.code_completions(exact_posterior.draw_codes(lg, mask, n, rng))
        est = exact_posterior.posterior_estimate(lg, mask, self.task.success_codes())
        metrics = {
            "target_log_tau": log_tau,
            "target_codes": int(np.count_nonzero(mask)),
            "target_exact_rate": est["rate"],
            "target_draws": len(draws),
        }
        return SampleBatch(samples=draws, version=self.generator_version), metrics

    def distillation_report(self) -> dict:
        """Distillation error measured exactly, for the generator g this role now holds (g_{t+1}):
        with regions (negative.exact_alg1), Algorithm 1's posterior built from this run's negatives,
        its rate and KL(posterior || g) (``exact_posterior.distillation_error``); after
        ``exact_target``, KL(target || g), the loss of this round's own distillation step. Empty
        where the task does not enumerate its space."""
        out: dict = {}
        if self.regions:
            est = self.posterior_rate()
            if est is None:
                return {}
            logp0, mask, _ = self._exact
            out = {
                "alg1_exact_rate": est["rate"],
                "alg1_accepted_codes": est["accepted_codes"],
                **exact_posterior.distillation_error(logp0, mask, self._generator_table()),
            }
        if self._target is not None:  # Algorithm 2's own step: KL(exact filtered g_t || g_{t+1})
            err = exact_posterior.distillation_error(*self._target, self._generator_table())
            out["kl_target_to_generator"] = err["kl_posterior_to_generator"]
            out["generator_target_mass"] = err["generator_accepted_mass"]
            self._target = None
        return out

    def posterior_rate(self) -> dict | None:
        """Algorithm 1's rate computed exactly where the task enumerates its space (None elsewhere).
        Regions never change once added, so the accepted mask is kept between calls and each call
        scores only the regions added since the last."""
        est, self._exact = exact_posterior_rate(
            self.task,
            self.prior,
            self.regions,
            self.score_cfg.length_norm,
            self._exact,
            self._region_tables,
            self._excluded_codes(),
        )
        self._region_tables = {}
        self._excluded_count = len(self.negatives)
        return est

    def _known_failures(self, samples) -> np.ndarray:
        """Mask of ``samples`` already paid as failures (``negative.exclude_failures``)."""
        known = set(self.negatives)
        return np.array([s in known for s in samples], dtype=bool)

    def _fresh_posterior(self):
        """posterior_rate's state, recomputed only when a region, or (with exclude_failures) a
        negative, was added since it was computed."""
        stale = self._exact is None or self._exact[2] != len(self.regions)
        if stale or (self.cfg.exclude_failures and self._excluded_count != len(self.negatives)):
            self.posterior_rate()
        return self._exact

    def _excluded_codes(self):
        """Flat indices of every string paid as a failure so far, with ``negative.exclude_failures``
        on a task that enumerates its space (None otherwise)."""
        if not self.cfg.exclude_failures or not self.negatives:
            return None
        try:
            return self.task.code_indices(self.negatives)
        except NotImplementedError:
            return None

    def posterior_draws(self, n: int, seed: int) -> SampleBatch | None:
        """``n`` strings drawn exactly from Algorithm 1's posterior (p0 restricted to what no region
        rejects) where the task enumerates its space; None where it does not. A sample grid needs
        this: late regions leave p0 too little mass (1e-20 on mnist_0to6_rare) to reach by rejection."""
        if self._fresh_posterior() is None or self._exact[1] is None:
            return None
        logp0, mask, _ = self._exact
        idx = exact_posterior.draw_codes(logp0, mask, n, np.random.default_rng(seed))
        return SampleBatch(samples=self.task.code_completions(idx), version=0)

    # ---- checkpoint shard ------------------------------------------------------------------------
    def save_shard(self, folder: str) -> dict:
        """Negatives so far and every region (sequential mode), into ``folder``."""
        from pathlib import Path

        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        for i, (w, _) in enumerate(self.regions):
            ckpt.save_tensors(d / f"region_{i:04d}.safetensors", w)
        ckpt.write_json(
            d / "negative.json",
            {"negatives": [list(x) for x in self.negatives], "region_log_taus": [t for _, t in self.regions]},
        )
        ckpt.fsync_dir(d)
        return {"negatives": len(self.negatives), "regions": len(self.regions)}

    def restore(self) -> None:
        super().restore()
        d = self.store.shard(self.role)
        if d is None:
            return
        st = json.loads((d / "negative.json").read_text())
        self.negatives = [tuple(s) for s in st["negatives"]]
        self.regions = [
            (ckpt.load_tensors(d / f"region_{i:04d}.safetensors"), float(t))
            for i, t in enumerate(st["region_log_taus"])
        ]


def regions_accept(prior, regions, pairs, pad_id: int, length_norm: bool) -> np.ndarray:
    """Algorithm 1's acceptance of ``pairs`` (prompt, completion): the mask of those no region
    (``(p_phi weights, log tau)``) rejects. log p0 is computed once; each region scores only what
    the earlier ones kept (``alg.sequential_accept_in_turn``). Shared by the trainer's proposals
    and by ``banel_ray.evaluate``."""
    l0, lengths = sequence_logprobs(prior, pairs, pad_id=pad_id)
    m = copy_model(prior)

    def region(weights, log_tau):
        def score(idx):
            load_state(m, weights)
            ln, _ = sequence_logprobs(m, [pairs[i] for i in idx], pad_id=pad_id)
            return alg.sequence_scores(l0[idx], ln, lengths[idx], length_norm) - log_tau

        return score

    return alg.sequential_accept_in_turn(len(pairs), [region(w, t) for w, t in regions])


def exact_posterior_rate(
    task, prior, regions, length_norm: bool, state=None, known: dict | None = None, excluded=None
) -> tuple[dict | None, tuple | None]:
    """Algorithm 1's posterior, p0 restricted to the strings no region rejects, and its success rate
    computed exactly over the task's enumerable space (``algorithms.exact_posterior``); (None, None)
    where the task does not enumerate. ``state`` (returned, passed back): log p0's table, the
    accepted mask and how many regions it covers, so a later call scores only the new regions.
    Shared by the trainer and by ``banel_ray.evaluate``. ``excluded``: flat indices the posterior
    leaves out besides (``negative.exclude_failures``)."""
    if state is None:
        logp0 = task.code_logprobs(prior)
        if logp0 is None:
            return None, None
        state = (logp0, None, 0)
    logp0, mask, done = state
    scorer = copy_model(prior)

    def tables():
        for i, (weights, log_tau) in enumerate(regions[done:], start=done):
            if known and i in known:  # this region's table was computed already (exact_target)
                yield known[i], log_tau
                continue
            load_state(scorer, weights)
            yield task.code_logprobs(scorer), log_tau

    mask = exact_posterior.accepted_mask(logp0, tables(), task.max_new_tokens, length_norm, start=mask)
    if excluded is not None and len(excluded):  # negative.exclude_failures: the paid failures too
        mask.ravel()[np.asarray(excluded, dtype=np.int64)] = False
    outside = max(0.0, 1.0 - float(np.exp(exact_posterior.log_mass(logp0))))
    est = exact_posterior.posterior_estimate(logp0, mask, task.success_codes(), outside_mass=outside)
    return dict(est, regions=len(regions)), (logp0, mask, len(regions))


class GeneratorTrainer(TrainerRole):
    """``generator``: the ``generator.*`` section; ``filter_kind``: quantile or threshold."""

    role = "generator"

    def __init__(self, *a, generator=None, filter_kind: str = "quantile", use_positives: bool = False, **k):
        from banel_ray.config_sections import GeneratorConfig

        self.cfg = generator if generator is not None else GeneratorConfig()
        self.filter_kind, self.use_positives = filter_kind, use_positives
        super().__init__(*a, **k)

    def weights(self) -> dict:
        return state_dict(self.generator)

    def distil(
        self,
        round_: int,
        version: int,
        filter_value: float,
        lr: float,
        scored: ScoredPool,
        paid: PaidBatch | None = None,
        target: SampleBatch | None = None,
    ):
        """Filter the scored pool (top 1/f, or s >= log tau) and fit g_{t+1} on what is kept, or on
        ``target`` where given (draws of the exact filtered g_t, ``generator.distil_from=exact``;
        the pool's filter is then only reported).

        Returns (new weights, metrics): two object refs when called with num_returns=2.
        """
        c = self.cfg
        t = time.perf_counter()
        s = np.asarray(scored.scores)
        mask = (
            alg.quantile_filter(s, filter_value)
            if self.filter_kind == "quantile"
            else alg.threshold_filter(s, np.log(filter_value))
        )
        kept = [x for x, k in zip(scored.samples, mask) if k]
        mechanism = self.mechanism(scored, mask)
        distil_set = list(kept) if target is None else [tuple(x) for x in target.samples]
        if self.use_positives and paid is not None:
            distil_set += [tuple(x) for x, r in zip(paid.samples, paid.rewards) if r == 1]
        mix = int(round(getattr(c, "prior_mix", 0.0) * len(kept)))
        if mix and kept:  # fresh p0 draws beside what the filter kept: the prior is never left behind
            from banel_ray.models import sample

            distil_set += sample(
                self.prior,
                self.task.prompt,
                mix,
                self.task.max_new_tokens,
                self.task.eos_id,
                seed=seeds.generator_update(self.seed, round_) + 7,
            )
        if c.reset:
            self.generator = copy_model(self.prior)
        losses = (
            train_mle(
                self.generator,
                self._pairs(distil_set),
                c.epochs,
                lr,
                c.batch_size,
                seeds.generator_update(self.seed, round_),
                pad_id=self.task.pad_id,
                anchor=self.prior if c.kl_coef > 0 else None,
                kl_coef=c.kl_coef,
            )
            if distil_set
            else []
        )
        self.generator_version = version
        fin = s[np.isfinite(s)]
        q = np.quantile(fin, [0.1, 0.5, 0.9]) if len(fin) else [np.nan] * 3
        metrics = {
            "acceptance": float(mask.mean()) if len(mask) else 0.0,
            "kept": len(kept),
            "distil_set": len(distil_set),  # what g_{t+1} was fitted on (kept, positives, prior draws or exact draws)
            "score_pos_frac": float((s >= 0).mean()) if len(s) else 0.0,  # what tau = 1 keeps
            "score_q10": float(q[0]),
            "score_q50": float(q[1]),
            "score_q90": float(q[2]),
            "distil_loss": losses[-1] if losses else float("nan"),
            "t_distil_actor": time.perf_counter() - t,
            "prior_mixed": mix,
            **mechanism,
            **scored.info,
        }
        if kept:
            lg, _ = self._logp(self.generator, kept)
            l0, _ = self._logp(self.prior, kept)
            metrics["kl_to_prior"] = alg.kl_estimate(lg, l0)
        return state_dict(self.generator), metrics

    def mechanism(self, scored: ScoredPool, mask) -> dict:
        """What the filter did, by the task's modes: each mode's share of the pool and of the kept
        set, and the median least-likely-token log p0 of kept and of rejected candidates."""
        mask = np.asarray(mask, dtype=bool)
        modes = [self.task.mode(x) for x in scored.samples]
        out: dict = {}
        for name, sel in (("pool", np.ones(len(modes), dtype=bool)), ("kept", mask)):
            chosen = [m for m, k in zip(modes, sel) if k]
            out[f"{name}_modes"] = {m: chosen.count(m) / len(chosen) for m in sorted(set(chosen))} if chosen else {}
        least = scored.prior_min
        if least is not None and len(least) == len(mask):
            least = np.asarray(least, dtype=np.float64)
            for name, sel in (("kept", mask), ("rejected", ~mask)):
                v = least[sel & np.isfinite(least)]
                out[f"{name}_min_logp0_q50"] = float(np.median(v)) if v.size else float("nan")
        return out

    def save_shard(self, folder: str) -> dict:
        """g_t's weights into ``folder`` (the file the samplers load after a restart)."""
        from pathlib import Path

        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        ckpt.save_tensors(d / "weights.safetensors", state_dict(self.generator))
        ckpt.fsync_dir(d)
        return {"weights": f"{self.role}/weights.safetensors", "version": self.generator_version}
