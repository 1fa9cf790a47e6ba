"""The planted-feature prior's building (deterministic): the tiny Llama fitted to a law's strings
(``train_prior``) and the one edit that sets its first-position rate of the marker (``set_first_rate``)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from banel_ray.tasks.synthetic.common import BOS, OFFSET, Q_TRAIN, RECIPE, TRAIN_STRINGS, draw_law

PRIOR_ARCH = dict(hidden=64, layers=2, heads=2, intermediate=128, max_positions=16)


def train_prior(out: Path, alphabet: int, length: int, seed: int, epochs: int, threads: int = 1, progress=print):
    """The tiny Llama fitted to TRAIN_STRINGS strings of the law (the marker at rate Q_TRAIN)."""
    import torch

    from banel_ray.models import build_llama, save_model, set_threads, train_mle

    set_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    t0 = time.time()
    data = draw_law(np.random.default_rng([seed, 1]), TRAIN_STRINGS, alphabet, length, seed, Q_TRAIN)
    pairs = [((BOS,), tuple(int(t) + OFFSET for t in row)) for row in data]
    model = build_llama(OFFSET + alphabet, seed=seed, **PRIOR_ARCH)
    losses = train_mle(model, pairs, epochs, 3e-3, 256, seed)
    info = {"label": "synthetic_base", "alphabet": alphabet, "length": length, "seed": seed, "epochs": epochs}
    info.update(train_nll=losses[-1], q_train=Q_TRAIN, recipe=RECIPE, seconds=round(time.time() - t0, 1))
    progress(f"[synthetic] prior trained: NLL {losses[-1]:.4f} per token ({info['seconds']}s)")
    model.eval()
    return save_model(model, out, info)


def set_first_rate(model, marker: int, q: float) -> float:
    """Move the marker's first-position logit so that P(first token = marker) = q, by adding to
    its output row a multiple of the first position's (normed) hidden state: the first position's
    logits change in that one entry only. Returns the probability after the edit."""
    import torch

    with torch.no_grad():
        ids = torch.tensor([[BOS]])
        out = model(input_ids=ids, output_hidden_states=True)
        h = out.hidden_states[-1][0, 0].double()  # after the final norm: logits = lm_head(h)
        logits = out.logits[0, 0].double()
        others = torch.cat([logits[:marker], logits[marker + 1 :]])
        shift = math.log(q / (1 - q)) + float(torch.logsumexp(others, 0)) - float(logits[marker])
        w = model.lm_head.weight
        w[marker] += (shift * h / h.dot(h)).to(w.dtype)
        return float(torch.softmax(model(input_ids=ids).logits[0, 0].double(), 0)[marker])
