"""MNIST 0-to-6 in the paper's regime end to end: a tiny run reports importance-sampled rates with
intervals and diagnostics in every evaluation record, and saves the sample grid."""

import json

from banel_ray.tasks import mnist_pixels as P


def test_tiny_pixel_run_reports_estimated_rates_with_intervals(tmp_path):
    from banel_ray import config as C
    from banel_ray import report
    from banel_ray.run import main

    rd = tmp_path / "pixels"
    rc = main(
        [
            "--config",
            str(C.Path(P.__file__).parents[2] / "configs" / "mnist_pixels_quick.yaml"),
            "--set",
            "rounds=2",
            "--set",
            "samples_per_round=20",
            "--set",
            "pool_size=40",
            "--set",
            "eval.samples=40",
            "--set",
            "eval.every=0",
            "--set",
            "negative.epochs=1",
            "--set",
            "generator.epochs=1",
            "--set",
            "task_options.is_samples=400",
            "--set",
            "sampler.backend=torch",
            "--set",
            "runtime=local",
            "--set",
            f"run_dir={rd}",
        ]
    )
    assert rc == 0
    s = json.loads((rd / "summary.json").read_text())
    for k in ("base", "final"):
        e = s[k]
        assert not e["exact"] and e["method"].startswith("importance sampling")
        assert 0 <= e["lo"] <= e["rate"] <= e["hi"] <= 1 and e["n"] == 400
        for d in ("ess", "max_weight_share", "hits_per_component", "component_share", "reliable"):
            assert d in e
        assert e["sampled"]["n"] == 40
    assert s["final"]["rate"] != s["base"]["rate"] or s["final"]["hits"] == 0  # a new generator, fresh draws
    # the computed rates are the headline (a sampled fresh estimate of a 1e-22 rate sees nothing)
    assert s["final_fresh"]["rate"] == s["final"]["rate"] and s["final_fresh"]["fresh"]
    assert s["base_fresh"]["rate"] == s["base"]["rate"] and s["base"]["rate"] <= 1e-19
    assert s["improvement_final_fresh"] == s["final"]["rate"] / s["base"]["rate"]
    assert s["final"]["eval_llr_mean"] < s["final"]["eval_llr_max"]  # the rule's statistic, per evaluation
    # a sharper estimate of the final generator afterwards (more draws): compare reads the larger one
    from banel_ray import compare, evaluate

    assert evaluate.main([str(rd), "--samples", "600"]) == 0
    later = json.loads((rd / "evals" / "round_0002.json").read_text())
    assert later["n"] == 600 and later["fresh"] and later["method"] == s["final"]["method"]
    assert later["rate"] != s["final"]["rate"] or later["hits"] == 0  # more draws: another estimate
    (rec,) = compare.collect(tmp_path)
    assert rec["final_fresh"]["n"] == 600 and rec["base_fresh"]["n"] == 400
    assert (rd / "samples.png").stat().st_size > 10_000
    assert "importance sampling over 2^144 images" in report.closing_table(s)
    assert len(report.read_metrics(rd)) == 2
