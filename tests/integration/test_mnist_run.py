"""MNIST 0-to-6 end to end: a tiny run on real Ray actors reports exact rates and saves the grid."""

import json

import pytest

from banel_ray.tasks import mnist as M


def test_tiny_run_reports_exact_rates_and_saves_the_sample_grid(tmp_path):
    """python -m banel_ray.run on the MNIST task: real Ray actors, exact rates (the torch sampler
    keeps it short; the measured runs in docs/mnist.md use vLLM)."""
    import ray

    from banel_ray import config as C
    from banel_ray import report
    from banel_ray.run import main

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        rd = tmp_path / "mnist"
        rc = main(
            [
                "--config",
                str(C.Path(M.__file__).parents[2] / "configs" / "mnist_quick.yaml"),
                "--set",
                "rounds=2",
                "--set",
                "samples_per_round=40",
                "--set",
                "pool_size=120",
                "--set",
                "eval.samples=100",
                "--set",
                "eval.every=0",
                "--set",
                "negative.epochs=2",
                "--set",
                "generator.epochs=1",
                "--set",
                "sampler.backend=torch",
                "--set",
                f"run_dir={rd}",
            ]
        )
    finally:
        ray.shutdown()
    assert rc == 0
    s = json.loads((rd / "summary.json").read_text())
    for k in ("base", "final"):
        e = s[k]
        assert e["exact"] and e["lo"] == e["rate"] == e["hi"] and 0 < e["rate"] < 1
        assert e["sampled"]["n"] == 100 and "codes" in e["method"]
    assert s["improvement_final"] == pytest.approx(s["final"]["rate"] / s["base"]["rate"])
    assert s["final"]["rate"] != s["base"]["rate"]  # the generator moved
    assert 40 < s["nres"] <= 80 and s["nres"] == s["ledger_rows"]  # a repeated sample is paid once
    assert (rd / "samples.png").stat().st_size > 10_000 and s["sample_grid"]
    assert "exact over 16,777,216 codes" in report.closing_table(s)
    assert (rd / "success_vs_nres.png").exists() and len(report.read_metrics(rd)) == 2
