"""MNIST 0-to-6: shipped data, the classifier (the oracle), the exact estimator (pure checks;
tests/integration/test_mnist_models.py runs the models)."""

import numpy as np
import pytest
import torch

from banel_ray.tasks import mnist as M

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def task():
    return M.MnistZeroToSix()


def tokens(codes):
    return [tuple(int(c) + M.OFFSET for c in row) for row in np.atleast_2d(codes)]


def test_shipped_data_loads_with_the_mnist_counts():
    d = M.load_data()
    assert d["zeros"].shape == (5923, 14, 14) and d["zeros"].dtype == np.uint8
    assert d["x_test"].shape == (10000, 14, 14) and d["y_test"].shape == (10000,)
    assert np.bincount(d["y_test"], minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert d["zeros"].max() > 200 and d["zeros"][:, 6:8, 6:8].mean() < d["zeros"][:, 2:4, 5:9].mean()  # a ring
    assert (M.ASSETS / "LICENSE-MNIST.md").read_text().count("CC BY-SA 3.0")


def test_codes_round_trip_and_downsampling():
    x = np.zeros((1, 28, 28), dtype=np.uint8)
    x[0, :2, :2] = 200
    assert M.downsample(x)[0, 0, 0] == 200 and M.downsample(x).sum() == 200
    o = M.Classifier()
    codes = np.array([[0, 5, 63, 17], [1, 2, 3, 4]])
    assert (M.encode(np.round(M.decode(codes, o.codebook) * 255), o.codebook) == codes).all()
    valid, got = M.codes_of(tokens(codes) + [(M.BOS, 4, 5, 6), (4, 5, 6), (4, 5, 6, 7, M.EOS)])
    assert valid.tolist() == [True, True, False, False, False] and (got[:2] == codes).all()


def test_configs_and_bad_options(capsys):
    from banel_ray import config as C
    from banel_ray.run import CONFIG_DIR, main

    paper = C.load(str(CONFIG_DIR / "mnist_paper.yaml"))
    assert (paper["task"], paper["samples_per_round"], paper["rounds"], paper["filter.factor"]) == (
        "mnist_0to6",
        250,
        30,
        2.0,
    )
    assert paper["negative.epochs"] >= 50 and paper["filter.kind"] == "quantile"
    assert C.load(str(CONFIG_DIR / "mnist_quick.yaml"))["task"] == "mnist_0to6"
    assert main(["--config", str(CONFIG_DIR / "mnist_quick.yaml"), "--set", "task_options.digits=9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "task_options.digits" in err and "prior_epochs" in err


def test_code_completions_read_the_exact_tables_c_order():
    """Entry [i1..i4] of code_logprobs' table is the tokens i1+OFFSET .. i4+OFFSET (all_logprobs)."""
    from banel_ray.tasks.mnist.common import OFFSET, K, V
    from banel_ray.tasks.mnist.task import MnistZeroToSix

    codes = [(1, 2, 3, 63), (0, 0, 0, 0), (63, 0, 5, 9)]
    flat = [int(np.ravel_multi_index(c, (V,) * K)) for c in codes]
    got = MnistZeroToSix.code_completions(None, flat)
    assert got == [tuple(x + OFFSET for x in c) for c in codes]
