"""What the user sees: progress lines, the collapse warning, the closing table, the plot."""

import math

from banel_ray import report
from banel_ray.report.console import fmt_factor

ROUND = {
    "round": 2,
    "nres": 500,
    "paid": 250,
    "successes": 3,
    "acceptance": 0.5,
    "neg_train_nll": 2.0,
    "neg_heldout_nll": 2.1,
    "t_propose_pay": 0.5,
    "t_fit": 3.0,
    "t_distil": 1.5,
    "novel_frac": 1.0,
    "round_well_formed": 0.9,
    "distinct_frac": 1.0,
    "eval": {"k": 20, "n": 1000, "rate": 0.02, "lo": 0.012, "hi": 0.031},
}


def test_progress_line_and_collapse_warning():
    line = report.progress_line(ROUND, 2500)
    assert "NREs    500/2500" in line and "accept 0.500" in line and "success 2.00e-02" in line
    assert "warning" not in line
    assert "warning: only 20%" in report.progress_line(dict(ROUND, novel_frac=0.2), 2500)
    assert "err   0" in line and "err  17" in report.progress_line(dict(ROUND, oracle_errors=17), 2500)


def test_a_torn_last_metrics_line_is_left_out(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"round": 1}\n{"round": 2, "nr')
    assert report.read_metrics(tmp_path) == [{"round": 1}]


def test_closing_table_and_plot(tmp_path):
    base = {"k": 10, "n": 1000, "rate": 0.01, "lo": 0.005, "hi": 0.018}
    s = {
        "task": "t",
        "mode": "distill",
        "run_dir": str(tmp_path),
        "budget": 2500,
        "nres": 500,
        "base": base,
        "final": ROUND["eval"],
        "best": ROUND["eval"],
        "best_round": 2,
        "improvement_final": 2.0,
        "improvement_best": 2.0,
        "successes": 1,
        "found": [{"sample": "007+1=", "pattern": "leading-zero"}],
        "wall_s": 12.0,
        "oracle_evaluations": 530,
        "oracle_errors": 4,
        "eval_draws": 3000,
        "eval_paid": 0,
    }
    table = report.closing_table(s)
    assert "oracle evaluations        530 sent, all attempts (4 samples failed" in table
    assert "evaluation draws          3000 free, 0 sent to the paid oracle" in table
    assert "2.00e-02 [1.20e-02, 3.10e-02] (20/1000)" in table and "2.00x" in table
    assert "leading-zero: 1" in table and "successes paid for        1 distinct" in table
    png = report.plot(
        tmp_path, base, [ROUND, dict(ROUND, nres=750, eval={"k": 0, "n": 1000, "rate": 0.0, "lo": 0.0, "hi": 0.004})]
    )
    assert png.stat().st_size > 10_000


def test_a_run_without_estimates_prints_no_nan_improvement(tmp_path):
    """A plug-in oracle run with eval.samples 0 has no rates: before, 'improvement nanx'."""
    import math

    s = {
        "task": "callable",
        "mode": "distill",
        "run_dir": str(tmp_path),
        "budget": 100,
        "nres": 100,
        "base": None,
        "final": None,
        "best": None,
        "best_round": None,
        "improvement_final": math.nan,
        "improvement_best": math.nan,
        "successes": 0,
        "found": [],
        "wall_s": 3.0,
    }
    table = report.closing_table(s)
    assert "nan" not in table.lower()
    assert "improvement (final/base)  n/a" in table and "improvement (best/base)   n/a" in table


def test_a_base_sample_with_no_success_prints_no_infinite_improvement():
    """In the paper's regime a 1,000-draw base sample usually holds no success: before, 'infx'."""
    assert fmt_factor(math.inf) == "n/a (no success in the base sample)"
    assert fmt_factor(69.5) == "69.5x" and fmt_factor(math.nan) == "n/a"
