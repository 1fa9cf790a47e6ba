"""generator.distil_from=exact through the real runner (in process, torch sampler) on a 256-string
planted-feature space: each round's distillation set is drawn from the exact filter target, and
the run records that target and the step's own distillation error beside Algorithm 1's posterior
(negative.exact_alg1). The pure parts: tests/unit/test_exact_posterior.py; the trainer's target
against a pool filter and brute force: tests/integration/test_exact_posterior_sampling.py."""

import json
import math

import numpy as np

from banel_ray import config as C
from banel_ray import tasks
from banel_ray.core.run_folder import RunFolder
from banel_ray.runtime.actors import LocalRuntime
from banel_ray.runtime.runner import Runner

SETS = [
    *("task=synthetic", "task_options.alphabet=4", "task_options.length=4", "task_options.prior_epochs=1"),
    *("task_options.q=0.01", "task_options.s=1", "rounds=2", "budget=100", "samples_per_round=25"),
    *("pool_size=50", "negative.epochs=2", "eval.samples=0", "eval.every=1", "eval.final_samples=0"),
    *("sampler.backend=torch", "runtime=local", "score.length_norm=false", "negative.exact_alg1=true"),
]


def run(tmp_path, *sets):
    cache = f"task_options.cache_dir={tmp_path / 'cache'}"
    cfg = C.load(None, [*SETS, cache, f"run_dir={tmp_path / 'run'}", *sets])
    prior = tasks.build("synthetic", cfg["task_options"]).prepare(progress=lambda s: None)
    r = Runner.build(cfg, tmp_path / "run", LocalRuntime(), prior, log=lambda s: None)
    try:
        r.run()
    finally:
        r.shutdown()
    RunFolder(tmp_path / "run").write_config(cfg)  # what job.run writes first: evaluate reads it
    return [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if x.strip()]


def test_an_exact_distillation_run_fits_draws_of_the_exact_target_and_reports_its_error(tmp_path):
    recs = [r for r in run(tmp_path, "generator.distil_from=exact", "generator.exact_draws=300") if "round" in r]
    assert [r["round"] for r in recs] == [1, 2]
    for r in recs:
        assert r["target_draws"] == r["distil_set"] == 300  # fitted on exact draws, not the pool's 25 kept
        assert r["kept"] == 25
        assert 0 < r["target_codes"] < 256 and 0 <= r["target_exact_rate"] <= 1
        assert math.isfinite(r["kl_target_to_generator"]) and r["kl_target_to_generator"] >= 0
        assert 0 < r["generator_target_mass"] <= 1 and "alg1_exact_rate" in r
        assert r["eval"]["exact"]  # the generator's own rate, by enumeration


def test_a_pool_run_measures_the_same_step_error_without_changing_what_it_fits(tmp_path, monkeypatch):
    from banel_ray.evaluate import RunEvaluation
    from banel_ray.tasks.synthetic.task import Synthetic

    recs = [r for r in run(tmp_path) if "round" in r]
    assert all(r["target_draws"] == 0 and r["kl_target_to_generator"] >= 0 for r in recs)
    assert all(r["kept"] == r["distil_set"] == 25 for r in recs)  # the top half of the pool of 50, as before
    # evaluate --grid of a distill run samples its generator (no regions, nothing enumerated)
    grids = []
    monkeypatch.setattr(Synthetic, "grid_samples", 30)
    monkeypatch.setattr(Synthetic, "save_sample_grid", lambda self, path, drawn: grids.append(drawn) or path)
    assert RunEvaluation(tmp_path / "run").sample_grid(2) == tmp_path / "run" / "samples.png"
    assert len(grids[0]) == 30 and all(isinstance(x, tuple) and len(x) <= 4 for x in grids[0])
    monkeypatch.setattr(Synthetic, "grid_samples", 0)
    assert RunEvaluation(tmp_path / "run").sample_grid(2) is None  # a task without a grid: nothing written


def test_algorithm_1s_sample_grid_is_drawn_exactly_from_its_posterior_in_the_run_and_after(tmp_path, monkeypatch):
    from banel_ray.actors.trainers import regions_accept
    from banel_ray.evaluate import RunEvaluation
    from banel_ray.models import load_model
    from banel_ray.tasks.synthetic.task import Synthetic

    grids = []
    monkeypatch.setattr(Synthetic, "grid_samples", 40)
    monkeypatch.setattr(Synthetic, "save_sample_grid", lambda self, path, drawn: grids.append(drawn) or path)
    run(tmp_path, "mode=sequential", "negative.exact_alg1=false")
    assert len(grids) == 1 and len(grids[0]) == 40  # the run's own grid: the negative trainer's exact draws

    ev = RunEvaluation(tmp_path / "run")
    regions = ev.regions(2)
    assert len(regions) == 2
    assert ev.sample_grid(2) == tmp_path / "run" / "samples.png"
    drawn = grids[1]
    assert len(drawn) == 40 and drawn == [tuple(s) for s in grids[0]]  # same posterior, same seed
    keep = regions_accept(
        load_model(ev.prior_dir), regions, [(ev.task.prompt, s) for s in drawn], ev.task.pad_id, False
    )
    # the sampler's scoring path agrees with the enumeration's (ties on a threshold aside); p0's
    # own draws would pass both regions about a quarter of the time
    assert np.mean(keep) >= 0.9


def test_algorithm_1_calibrated_on_its_posterior_keeps_half_of_it_each_round_drawing_from_it_exactly(tmp_path):
    """negative.region_calibration=posterior: each region's threshold keeps 1/f of the posterior's
    mass (not of p0's, which let one region reject nearly all of it on mnist_0to6_rare), and
    negative.proposals=exact proposes from that posterior however little p0 mass it holds."""
    sets = ("mode=sequential", "negative.exact_alg1=false", "negative.region_calibration=posterior")
    recs = [r for r in run(tmp_path, *sets, "negative.proposals=exact", "rounds=3") if "round" in r]
    mass = [r["pre_oracle_acceptance"] for r in recs]  # the posterior's p0 mass before each round
    assert 0.98 < mass[0] <= 1.0 and recs[0]["paid"] > 0
    for before, after in zip(mass, mass[1:]):
        assert after >= before / 2 * (1 - 1e-9)  # a region never keeps less than 1/f of the posterior
    assert mass[1] <= mass[0] / 2 + 0.05  # round 1's region, fitted on real negatives, keeps about half
    assert all(math.isfinite(r["region_log_tau"]) for r in recs)


def test_excluding_paid_failures_never_proposes_or_distils_one_again(tmp_path):
    """negative.exclude_failures: Algorithm 1's exact posterior leaves out every string paid as a
    failure, so each round pays for every distinct string it draws (without it, the tiny space's
    third round draws only strings paid before); Algorithm 2's pool filter keeps the top 1/f of
    the candidates that are not known failures."""
    sets = ("mode=sequential", "negative.exact_alg1=false", "negative.region_calibration=posterior")
    recs = [r for r in run(tmp_path, *sets, "negative.proposals=exact", "negative.exclude_failures=true", "rounds=3")]
    recs = [r for r in recs if "round" in r]
    found = 0  # distinct successes paid so far: the only strings drawn again (they are not failures)
    for r in recs:
        assert round(r["distinct_frac"] * 25) - found <= r["paid"] <= round(r["distinct_frac"] * 25)
        found += r["successes"]
    assert all(r["paid"] > 0 for r in recs)
    recs = [r for r in run(tmp_path / "a2", "negative.exclude_failures=true") if "round" in r]
    for r in recs:
        left = round(50 * (1 - r["known_failures_rejected"]))
        assert 0 < r["known_failures_rejected"] < 1 and r["kept"] == math.ceil(left / 2)
