"""MNIST 0-to-6 in the paper's regime: binary 12x12 pixels, the instrument, the configs (pure checks;
tests/integration/test_mnist_pixels_models.py runs the classifier, the prior and the rate hook)."""

import numpy as np
import pytest
import torch

from banel_ray.tasks import mnist as M
from banel_ray.tasks import mnist_pixels as P

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def task():
    return P.MnistPixels()


def test_binarise_crop_and_tokens_round_trip():
    x = np.zeros((2, 14, 14), dtype=np.uint8)
    x[0, 1, 1] = 128  # on (>= 128), top-left of the crop
    x[0, 0, 0] = 255  # outside the crop
    x[1, 12, 12] = 127  # off
    b = P.binarise(x)
    assert b.shape == (2, 12, 12) and b[0, 0, 0] and b.sum() == 1
    toks = P.tokens_of(b)
    assert len(toks[0]) == P.L and set(toks[0]) == {P.OFF, P.ON} and set(toks[1]) == {P.OFF}
    valid, img = P.images_of(toks + [toks[0][:-1], toks[0][:-1] + (P.EOS,), (P.BOS,) + toks[0][1:]])
    assert valid.tolist() == [True, True, False, False, False] and (img[:2] == b).all()


def test_instrument_tilt_points_from_zeros_to_sixes(task):
    ins = P.load_instrument()
    assert int(ins["n_zero"]) == 5923 and int(ins["n_six"]) == 5918
    w = task.tilt[:, 1] - task.tilt[:, 0]
    d = M.load_data()
    six = P.binarise(d["x_test"][d["y_test"] == 6]).reshape(-1, P.L)
    zero = P.binarise(d["x_test"][d["y_test"] == 0]).reshape(-1, P.L)
    assert (six @ w).mean() > (zero @ w).mean() + 10  # held-out sixes score far above zeros


def test_configs_and_bad_options(capsys):
    from banel_ray import config as C
    from banel_ray.run import CONFIG_DIR, main

    paper = C.load(str(CONFIG_DIR / "mnist_pixels_paper.yaml"))
    assert (paper["task"], paper["samples_per_round"], paper["rounds"], paper["filter.factor"]) == (
        "mnist_0to6_pixels",
        250,
        30,
        2.0,
    )
    assert paper["negative.epochs"] >= 50 and paper["eval.every"] == 5
    assert C.load(str(CONFIG_DIR / "mnist_paper.yaml"))["task"] == "mnist_0to6"  # the 4-token variant stays
    for bad, word in (
        ("task_options.is_gammas=0.5,1", "start with 0"),
        ("task_options.is_gammas=0,4", "[0, 3]"),
        ("task_options.is_samples=3", "is_samples"),
        ("task_options.rule=argmax", "typical, classifier"),
        ("task_options.min_llr=lots", "min_llr"),
        ("task_options.min_six_logp=lots", "min_six_logp"),
    ):
        assert main(["--config", str(CONFIG_DIR / "mnist_pixels_quick.yaml"), "--set", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and word in err
