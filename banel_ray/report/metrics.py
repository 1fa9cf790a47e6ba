"""Names of the metrics a run writes (``metrics.jsonl`` per round, ``summary.json`` per run),
shared by the runner, the report, ``tuning`` and ``compare`` so they cannot drift apart."""

# per round
ROUND = "round"  # 1-based round number
NRES = "nres"  # NREs charged so far (cumulative)
PAID = "paid"  # NREs charged this round
REUSED = "reused"  # proposals answered from the ledger (free)
ORACLE_ERRORS = "oracle_errors"  # proposals whose evaluation failed this round
COST_USD = "cost_usd"  # USD charged for oracle calls so far (cumulative; only with oracle.cost_per_call)
SUCCESSES = "successes"  # distinct paid samples with reward 1 (this round; summary: in all)
DISTINCT_FRAC = "distinct_frac"  # distinct fraction of the round's proposals
NOVEL_FRAC = "novel_frac"  # fraction of distinct proposals never proposed before
SUCCESSES_SO_FAR = "successes_so_far"  # distinct paid samples with reward 1, all rounds so far
NEGATIVE_MODES = "negative_modes"  # {mode: share} of the round's distinct paid failures
FOUND = "found"  # the successes paid for: [{"sample", "pattern"}]
EVAL = "eval"  # success-rate estimate (every eval.every rounds, and the last)
STOP_FIRED = "stop_rule_fired"  # the round stop.rule fired at (True there only)

# inside an estimate (EVAL, summary base/final/best): its rate, interval and kind are read with
# core.estimate.Estimate; beside them
EVAL_SUCCESSES = "successes"  # the first successes drawn, rendered
FINAL_FRESH = "final_fresh"  # summary: the final generator on a fresh sample (banel_ray.evaluate)
BASE_FRESH = "base_fresh"  # summary: the prior on a fresh sample, or its shipped reference measurement
STOP_FRESH = "stop_fresh"  # summary: the round stop.rule picked, on a fresh sample
EVAL_PATTERNS = "patterns"  # {pattern: count} over every success drawn
EVAL_MODES = "modes"  # {mode: {share, n, k, p_success}} over every draw

# oracle health (per round, and in summary.json)
ORACLE_FAILED = "oracle_failed"  # every evaluation of the round failed: nothing learnt, round tried again
ORACLE_EVALUATIONS = "oracle_evaluations"  # summary: evaluations sent to the oracle for NREs, all attempts
EVAL_PAID = "eval_paid"  # summary: evaluation draws sent to a paid oracle (eval.paid_budget), never NREs
