"""The run folder's one owner (``core/run_folder.py``), the typed estimate every reader shares
(``core/estimate.py``), and the end-of-run evaluation on the job's own task (no second prepare)."""

import json

import pytest

from banel_ray.core.estimate import EXACT, IMPORTANCE, SAMPLED, Estimate, kind_of
from banel_ray.core.run_folder import RunFolder, RunFolderError

# ---- estimates as run folders under results/ hold them (copied whole, key order kept) -------------

# results/drift-addition/d8_seq_s1/evals/round_0030.json: Algorithm 1 through its regions
SAMPLED_EVAL = {
    "k": 0,
    "n": 1,
    "rate": 0.0,
    "lo": 0.0,
    "hi": 0.975,
    "round": 30,
    "version": 0,
    "fresh": True,
    "seed_tag": 30000030,
    "drawn_from_prior": 150000,
    "accepted_share": 6.666666666666667e-06,
    "seconds": 526.4929732370001,
    "patterns": {},
    "modes": {"other": {"share": 1.0, "n": 1, "k": 0, "p_success": 0.0}},
}
# results/compare-regime/runs_banel_lr1e-3/banel-s11/summary.json: base_fresh, the shipped measurement
REFERENCE = {
    "hi": 0.00036864281880047395,
    "k": 331,
    "lo": 0.00029630296719025597,
    "n": 1000000,
    "rate": 0.000331,
    "reference": True,
    "samples": 1000000,
    "source": "/work/main/banel_ray/assets/addition_prior_d5_s200/regime.json",
}
# results/when-banel-wins/runs/q0.001_s1_e0.001/random_s0/summary.json: final_fresh
EXACT_FRESH = {
    "rate": 0.0019979702304511403,
    "lo": 0.0019979702304511403,
    "hi": 0.0019979702304511403,
    "log10_rate": -2.699410987004489,
    "method": "exact over 262,144 strings",
    "valid_mass": 0.996966848532263,
    "exact": True,
    "feature_rate": 0.000997970229451138,
    "floor_rate": 0.0010000000010000022,
    "t_eval": 2.4066001060418785e-05,
    "fresh": True,
    "round": 10,
}
# results/mnist_rare/check_s0/summary.json: final_fresh, the sampled estimate beside the exact one
EXACT_WITH_SAMPLED = {
    "successes": [],
    "patterns": {},
    "modes": {"all": {"share": 1.0, "n": 2000, "k": 0, "p_success": 0.0}},
    "eval_well_formed": 1.0,
    "eval_mean_length": 4.0,
    "eval_class_0": 1.0,
    "eval_class_6": 0.0,
    "eval_success": 0.0,
    "rate": 2.8764603352884146e-25,
    "lo": 2.8764603352884146e-25,
    "hi": 2.8764603352884146e-25,
    "log10_rate": -24.541141610264983,
    "method": "exact over 16,777,216 codes",
    "valid_mass": 0.9999999258112966,
    "exact": True,
    "n_success_codes": 29344,
    "sampled": {"k": 0, "n": 2000, "rate": 0.0, "lo": 0.0, "hi": 0.0018427397934059364},
    "t_eval": 37.37603496700467,
    "fresh": True,
    "round": 6,
}
# results/mnist-pixels-compare/runs/random-s1/evals/round_0030.json
IMPORTANCE_EVAL = {
    "n": 20000,
    "hits": 3912,
    "hits_per_component": [0, 0, 153, 1385, 2374],
    "interval": "gamma",
    "level": 0.95,
    "rate": 7.964611014878845e-23,
    "lo": 6.55566043235995e-23,
    "hi": 9.813805458615768e-23,
    "log10_rate": -22.098835429934024,
    "rel_se": 0.09465902382763143,
    "ess": 110.26326350462563,
    "max_weight_share": 0.02917183329167495,
    "component_share": [0.0, 0.0, 0.451657, 0.486442, 0.0619],
    "reliable": True,
    "intervals": {
        "gamma": [6.55566043235995e-23, 9.813805458615768e-23],
        "lognormal": [6.615926365209968e-23, 9.588230750557362e-23],
        "normal": [6.486950452220326e-23, 9.442271577537364e-23],
    },
    "method": "importance sampling over 2^144 images",
    "components": [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [1.25, 0.0], [1.5, 0.0]],
    "exact": False,
    "t_estimate": 1306.9191914470002,
    "certain_lo": 3.1012011154496825e-28,
    "distinct_hits": 3912,
    "certain_hi": 9.999999999999992e-21,
    "round": 30,
    "version": 0,
    "fresh": True,
    "seconds": 1310.7571764129998,
    "note": "final weights = the prior's (no update made): the prior's estimate",
}
# algorithms.exact_posterior.posterior_estimate's record (Algorithm 1's posterior, exactly)
POSTERIOR = {
    "rate": 0.02,
    "lo": 0.019,
    "hi": 0.02,
    "log10_rate": -1.7,
    "log10_accepted_mass": -0.3,
    "accepted_codes": 1200,
    "method": "exact: p0 restricted to the codes no region rejects",
    "exact": True,
}


@pytest.mark.parametrize(
    "d, kind",
    [
        (SAMPLED_EVAL, SAMPLED),
        (REFERENCE, SAMPLED),
        (EXACT_FRESH, EXACT),
        (EXACT_WITH_SAMPLED, EXACT),
        (IMPORTANCE_EVAL, IMPORTANCE),
        (POSTERIOR, EXACT),
    ],
)
def test_every_kind_of_estimate_reads_and_writes_back_the_same_json(d, kind):
    e = Estimate.from_dict(d)
    assert e.kind == kind == kind_of(d) and e.computed == (kind != SAMPLED)
    assert (e.rate, e.lo, e.hi) == (d["rate"], d["lo"], d["hi"])
    back = e.to_dict()
    assert back == d and list(back) == list(d)
    assert json.dumps(back, indent=2) == json.dumps(d, indent=2)  # byte for byte, as the files hold it
    assert Estimate.from_dict(back) == e


def test_the_typed_fields_of_each_kind():
    s = Estimate.from_dict(SAMPLED_EVAL)
    assert (s.k, s.n, s.draws, s.round, s.fresh, s.reference) == (0, 1, 1, 30, True, False)
    assert s.get("drawn_from_prior") == 150000 and s.ess is None and s.method is None
    assert Estimate.from_dict(REFERENCE).reference and Estimate.from_dict(REFERENCE).round is None
    x = Estimate.from_dict(EXACT_WITH_SAMPLED)
    assert x.method == "exact over 16,777,216 codes" and x.draws == 0 and x.n is None
    assert x.sampled.kind == SAMPLED and (x.sampled.k, x.sampled.n) == (0, 2000)
    i = Estimate.from_dict(IMPORTANCE_EVAL)
    assert (i.n, i.ess, i.reliable, i.get("certain_lo")) == (20000, 110.26326350462563, True, 3.1012011154496825e-28)
    assert Estimate.read(None) is None and Estimate.read({}) is None
    with pytest.raises(ValueError, match="kind"):
        Estimate(0.1, 0.0, 0.2, kind="guessed")


def test_an_estimate_made_in_code_writes_todays_records():
    from banel_ray.algorithms import stats

    e = stats.sampled(3, 1000)
    assert list(e.to_dict()) == ["k", "n", "rate", "lo", "hi"] and e.to_dict()["rate"] == 0.003
    exact = Estimate(1e-9, 1e-9, 1e-9, kind=EXACT, method="exact over 16 codes", sampled=e)
    assert exact.to_dict() == {
        "rate": 1e-9,
        "lo": 1e-9,
        "hi": 1e-9,
        "method": "exact over 16 codes",
        "exact": True,
        "sampled": e.to_dict(),
    }


# ---- the run folder --------------------------------------------------------------------------------


def test_a_run_folder_round_trip(tmp_path):
    rf = RunFolder(tmp_path / "run")
    rf.path.mkdir()
    assert not rf.has_config() and not rf.finished() and rf.metrics() == [] and rf.summary() is None
    cfg = {"task": "addition_attack", "seed": 3, "budget": 50}
    rf.write_config(cfg, "budget: 50\n")
    assert rf.config(require=("task",)) == cfg and rf.has_config()
    assert rf.config_path.read_text() == json.dumps(cfg, indent=2, sort_keys=True)  # as job.run wrote it
    assert (rf.path / "config.yaml").read_text() == "budget: 50\n"
    rf.append_metrics({"round": 1, "nres": 20})
    rf.append_metrics({"round": 2, "nres": 40, "eval": SAMPLED_EVAL})
    assert [m["round"] for m in rf.metrics()] == [1, 2] and rf.metrics()[1]["eval"] == SAMPLED_EVAL
    with open(rf.path / "metrics.jsonl", "a") as f:
        f.write('{"round": 3, "nr')  # a kill mid-write
    assert [m["round"] for m in rf.metrics()] == [1, 2]
    rf.write_metrics(rf.metrics()[:1])  # a resume drops what its checkpoint does not cover
    assert (rf.path / "metrics.jsonl").read_text() == '{"round": 1, "nres": 20}\n'
    summary = {"rounds": 2, "final_fresh": EXACT_FRESH}
    rf.write_summary(summary)
    assert rf.finished() and rf.summary() == summary
    assert (rf.path / "summary.json").read_text() == json.dumps(summary, indent=2)
    assert rf.eval_rounds() == [] and rf.latest_eval() is None and rf.read_eval(30) is None
    assert rf.write_eval(30, SAMPLED_EVAL) == rf.path / "evals" / "round_0030.json"
    rf.write_eval(0, REFERENCE)
    (rf.path / "evals" / "notes.txt").write_text("not an evaluation")
    assert rf.eval_rounds() == [0, 30] and rf.latest_eval() == SAMPLED_EVAL and rf.read_eval(0) == REFERENCE
    assert rf.eval_path(30).read_text() == json.dumps(SAMPLED_EVAL, indent=2)  # as evaluate wrote it
    assert rf.checkpoints() == rf.path / "checkpoints" and str(rf.checkpoints("/shared/ck")) == "/shared/ck"
    assert rf.store().root == rf.path / "checkpoints" and not rf.has_checkpoint()
    assert not [p.name for p in rf.path.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave no temp file


def test_a_config_that_is_missing_or_damaged_is_one_line(tmp_path):
    rf = RunFolder(tmp_path)
    with pytest.raises(RunFolderError, match=r"is not a run folder \(no config.json\)"):
        rf.config()
    for text, why in [("[1, 2]", "not a mapping of keys"), ('{"budget": 5', "JSONDecodeError")]:
        rf.config_path.write_text(text)
        with pytest.raises(RunFolderError, match=f"config.json is damaged \\({why}\\)"):
            rf.config()
    rf.config_path.write_text('{"budget": 5}')
    assert rf.config() == {"budget": 5}
    with pytest.raises(RunFolderError, match=r"damaged \(not a run's config\)"):
        rf.config(require=("task",))


def _est(k, n=1000, **extra):
    return {"k": k, "n": n, "rate": k / n, "lo": 0.0, "hi": 1.0, **extra}


def test_a_larger_later_fresh_evaluation_replaces_the_runs_own(tmp_path):
    """compare reads evals/round_NNNN.json when it drew more than the run's final evaluation."""
    rf = RunFolder(tmp_path)
    own = _est(5, 20_000, round=30, fresh=True)
    assert rf.largest_eval(own) is own  # no later evaluation
    rf.write_eval(30, _est(50, 100_000, round=30, fresh=True))
    assert rf.largest_eval(own)["n"] == 100_000
    rf.write_eval(30, _est(1, 10_000, round=30, fresh=True))  # smaller: the run's own stays
    assert rf.largest_eval(own) is own
    assert rf.largest_eval(_est(5, 20_000, round=29, fresh=True))["n"] == 20_000
    assert rf.largest_eval(None) is None
    rf.write_eval(30, _est(0, 3, round=30, fresh=True, drawn_from_prior=128_000))  # Algorithm 1's, fixed
    assert rf.largest_eval(own)["drawn_from_prior"] == 128_000
    computed = dict(IMPORTANCE_EVAL, n=4000)
    rf.write_eval(30, _est(50, 100_000, round=30, fresh=True))  # a computed rate is replaced only by a computed one
    assert rf.largest_eval(computed) is computed
    rf.write_eval(30, IMPORTANCE_EVAL)
    assert rf.largest_eval(computed) == IMPORTANCE_EVAL


# ---- the end of a run: the job's config, task and prior, nothing read or prepared again -----------


class StubTask:
    final_samples = 300

    def __init__(self):
        self.prepared = 0

    def prepare(self, progress=None):
        self.prepared += 1
        return "prepared-again"

    def reference_rate(self):
        return None


def test_the_end_of_run_evaluation_reuses_the_jobs_config_and_task(tmp_path, monkeypatch):
    """Before: each of the (up to three) fresh evaluations read config.json again, built the task
    and prepared it. Now one evaluation object holds the job's own; the folder has no config.json
    here, and the task's prepare fails the test if it is called."""
    from banel_ray import evaluate
    from banel_ray.runtime import job

    calls = []

    def sampled(self, round_, samples, batch=25_000, progress=None):
        calls.append((self, round_, samples, self.prior_dir))
        return _est(round_ + 1, samples, round=round_, fresh=True)

    monkeypatch.setattr(evaluate.RunEvaluation, "sampled", sampled)
    rf = RunFolder(tmp_path)
    for r in (1, 2, 3):
        rf.append_metrics({"round": r, **({"stop_rule_fired": True} if r == 2 else {})})
    cfg = {"task": "stub", "task_options": {}, "seed": 0, "eval.final_samples": -1, "trainer.threads": 1}
    task = StubTask()
    summary = {"rounds": 3, "wall_s": 1.0, "final": _est(3), "base": _est(1)}
    assert job.fresh_finals(cfg, rf, task, summary, "the-jobs-prior")
    assert task.prepared == 0 and not rf.has_config()
    assert [(c[1], c[2], c[3]) for c in calls] == [
        (3, 300, "the-jobs-prior"),
        (0, 300, "the-jobs-prior"),
        (2, 300, "the-jobs-prior"),
    ]
    ev = calls[0][0]
    assert all(c[0] is ev for c in calls) and ev.task is task and ev.cfg is cfg
    saved = rf.summary()
    assert (saved["final_fresh"]["round"], saved["base_fresh"]["round"], saved["stop_fresh"]["round"]) == (3, 0, 2)
    assert saved["improvement_final_fresh"] == pytest.approx(4.0) and saved["stop_round"] == 2


def test_a_standalone_evaluation_reads_and_prepares_once(tmp_path, monkeypatch):
    from banel_ray import evaluate, tasks

    task = StubTask()
    built = []
    monkeypatch.setattr(tasks, "build", lambda name, options: built.append(name) or task)
    RunFolder(tmp_path).write_config({"task": "stub", "task_options": {}, "seed": 0})
    ev = evaluate.RunEvaluation(tmp_path)
    assert [ev.prior_dir, ev.prior_dir] == ["prepared-again"] * 2 and task.prepared == 1 and built == ["stub"]
