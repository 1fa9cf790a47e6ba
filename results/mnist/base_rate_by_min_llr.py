"""One set of importance draws of the shipped pixel prior, its rate under several min_llr (the
rule's other clauses as shipped: MLP p(6) >= 0.99 and log p_six >= min_six_logp).

The same draws, weights and MLP verdicts serve every threshold; the share of test sixes each
threshold accepts is printed beside it (docs/mnist.md, the oracle's table).

    .venv/bin/python results/mnist/base_rate_by_min_llr.py IS_SEED DRAWS >> results/mnist/base_rate_by_min_llr.jsonl
"""

import json
import sys
import time

import numpy as np

from banel_ray.measure import importance
from banel_ray.measure.tilted import component_logprobs, position_logprobs, tilted_sample, weights_seed
from banel_ray.models import load_model, set_threads
from banel_ray.tasks import mnist as M
from banel_ray.tasks import mnist_pixels as P

THRESHOLDS = (0.0, 10.0, 20.0, 30.0, 40.0, P.MIN_LLR)


def main(seed: int, n: int) -> None:
    set_threads(1)
    task = P.MnistPixels(is_samples=n, is_seed=seed)
    prior, six = load_model(task.prior_dir()), task.six_model
    comps = [(0.0, 0.0)] + [(g, 0.0) for g in task.is_gammas if g > 0]
    k = len(comps)
    counts = [n // k + (1 if i < n % k else 0) for i in range(k)]
    base = weights_seed(prior, seed)  # the draws task.success_rate(prior) makes
    t0 = time.time()
    draws = [
        tilted_sample(
            prior, task.prompt, c, P.PIXEL_TOKENS, task.tilt, s, (base + 7919 * i) % 2**63, guide=six, gamma=g
        )
        for i, (c, (g, s)) in enumerate(zip(counts, comps))
    ]
    x = np.concatenate(draws)
    strata = np.repeat(np.arange(k), counts)
    lsm, gsm = position_logprobs(prior, task.prompt, x), position_logprobs(six, task.prompt, x)
    log_p, log_q = component_logprobs(lsm, x, P.PIXEL_TOKENS, task.tilt, comps, gsm)
    six_lp = np.take_along_axis(gsm, x[..., None], -1)[..., 0].sum(1)
    llr = six_lp - np.take_along_axis(lsm, x[..., None], -1)[..., 0].sum(1)
    typical = six_lp >= task.min_six_logp  # the rule's third clause
    valid, images = P.images_of([tuple(r) for r in x.tolist()])
    mlp = valid & task.classifier.is_six(images)
    d = M.load_data()
    sixes = P.binarise(d["x_test"][d["y_test"] == M.TARGET])
    six6, zero6 = task.log_likelihoods(P.tokens_of(sixes))
    llr6, mlp6 = six6 - zero6, task.classifier.is_six(sixes) & (six6 >= task.min_six_logp)
    for t in THRESHOLDS:
        e = importance.estimate(log_p, log_q, counts, strata, mlp & typical & (llr >= t))
        out = {
            key: e[key]
            for key in ("rate", "lo", "hi", "hits", "ess", "max_weight_share", "reliable", "hits_per_component")
        }
        out.update(min_llr=t, test_sixes_pass=float((mlp6 & (llr6 >= t)).mean()), seed=seed, n=n)
        out["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(out, default=float), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
