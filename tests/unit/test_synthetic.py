"""The planted-feature task (issue 26): planting on a known table, the first-rate edit, the option
checks (tests/integration/test_synthetic_prior.py trains the prior and checks the rule and the
exact rates against brute force)."""

import math

import numpy as np
import pytest
import torch

from banel_ray import config as C
from banel_ray import tasks
from banel_ray.models import build_llama
from banel_ray.tasks import synthetic as S
from banel_ray.tasks.synthetic import assets as SA

torch.set_num_threads(1)


def test_plant_on_a_known_table():
    logp = np.log(np.full((3, 3), 1 / 9))
    success, info = S.plant(logp, s=1.0, e=0.0, seed=0)
    assert success[-1].all() and not success[:-1].any() and info["base"] == pytest.approx(1 / 3)
    success, info = S.plant(logp, s=1 / 3, e=2 / 9, seed=0)
    assert success[-1].sum() == 1 and success[:-1].sum() == 2 and info["base"] == pytest.approx(1 / 3)


def test_first_rate_edit_is_exact_on_a_random_model():
    model = build_llama(8, hidden=64, layers=1, heads=2, intermediate=64, max_positions=8, seed=3)
    for q in (1e-2, 1e-5):
        got = SA.set_first_rate(model, 7, q)
        assert got == pytest.approx(q, rel=1e-4)


def test_options_are_checked_in_one_line():
    check = S.Synthetic.check_options
    assert check({"q": 1e-3, "s": 1, "e": 0.0, "seed": 3}) is None
    assert check({"q": 0.9}) == "'task_options.q' must be a number in [1e-06, 0.5], got 0.9"
    assert check({"s": 0}).startswith("'task_options.s' must be a number in")
    assert check({"e": "0.1"}).startswith("'task_options.e' must be a number in [0, 0.5]")
    assert check({"seed": 1.5}).startswith("'task_options.seed' must be an integer")
    assert "at most 1,048,576" in check({"alphabet": 16, "length": 8})
    assert tasks.resolve("synthetic") is S.Synthetic
    with pytest.raises(C.ConfigError, match=r"'task_options.q' must be a number in \[1e-06, 0.5\], got 0.7"):
        C.load(None, ["task=synthetic", "task_options.q=0.7", "runtime=local", "sampler.backend=torch"])
    assert not math.isnan(C.load(None, ["task=synthetic", "task_options.q=1.0e-4"])["task_options"]["q"])
