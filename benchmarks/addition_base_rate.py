"""Base success rate of the shipped addition-attack prior, and the solver's accuracy by query kind.

    .venv/bin/python benchmarks/addition_base_rate.py [--samples 200000]

Prints the prior's success rate with its Clopper-Pearson interval, its well-formed and
leading-zero fractions, the patterns of its successes, the solver's in-distribution accuracy and
its failure rate on queries whose first operand has a leading zero.
"""

import argparse
import time
from collections import Counter

import numpy as np

from banel_ray.algorithms import stats as alg
from banel_ray.models import load_model, sample, set_threads
from banel_ray.tasks.addition import AdditionAttack, random_operands


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=200_000)
    a = p.parse_args()
    set_threads(2)
    t = AdditionAttack()
    s_t = time.time()
    s = sample(load_model(t.prior_dir()), t.prompt, a.samples, t.max_new_tokens, t.eos_id, seed=424242, batch_size=4096)
    r = t.rewards(s)
    k, n = sum(r), len(r)
    lo, hi = alg.clopper_pearson(k, n)
    print(f"base rate {k}/{n} = {k / n:.2e} [{lo:.2e}, {hi:.2e}] ({time.time() - s_t:.0f}s)")
    print("prior diagnostics", t.diagnostics(s))
    print("success patterns", Counter(t.pattern(x) for x, y in zip(s, r) if y).most_common(10))
    ops = random_operands(np.random.default_rng(7), 20000, t.max_digits)
    ans = t.solver_answers([(str(x), str(y)) for x, y in ops])
    print("solver in-distribution accuracy (20k)", np.mean([v == str(x + y) for v, (x, y) in zip(ans, ops)]))
    lz = [("0" + str(x)[:7], str(y)) for x, y in ops[:5000]]
    ans = t.solver_answers(lz)
    print("P(fail | leading zero on a) (5k)", np.mean([v != str(int(x) + int(y)) for v, (x, y) in zip(ans, lz)]))


if __name__ == "__main__":
    main()
