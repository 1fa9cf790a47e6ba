"""MNIST 0-to-6 (paper §3.1): a prior that has only seen zeros learns to draw sixes.

Image space. MNIST digits are averaged down to 14x14 and cut into four 7x7 quadrants; each
quadrant is replaced by the nearest of 64 patches (a k-means codebook per quadrant, fitted on the
60k training images without labels). An image is thus a 4-token code, 64**4 = 16,777,216 images
in all: small enough that a model's success rate is computed exactly, by enumerating every code
and summing probabilities with log-sum-exp, as the paper does (no Monte-Carlo, no interval).

* Prior p0: a Llama-style causal LM over the 4 code tokens (after BOS), trained only on the codes
  of training zeros (the 5,793 of 5,923 that the oracle reads as a 0); deterministic, shipped in
  ``assets/mnist/prior``.
* Oracle: a 10-class MLP on the decoded 14x14 image (trained on decoded training images of all
  ten digits). Reward 1 iff the completion is exactly 4 code tokens and the classifier gives
  class 6 a softmax probability >= 0.99. EOS or another special token: malformed, reward 0.
* Exact rate: ``success_rate(model)`` = logsumexp of log p(x) over the success codes; which codes
  those are is fixed by the oracle, shipped as a bit table (or computed once and cached).

Data: MNIST, Y. LeCun, C. Cortes, C. J. C. Burges, CC BY-SA 3.0 (see assets/mnist/LICENSE-MNIST.md).
``python -m banel_ray.tasks.mnist data|oracle|prior --out ...`` rebuilds the shipped assets.
"""

from banel_ray.tasks.mnist.common import (
    ASSETS,
    BOS,
    EOS,
    HIDDEN,
    MIN_PROB,
    OFFSET,
    PAD,
    QUAD,
    SHARED_MNIST,
    SIDE,
    TARGET,
    VOCAB_SIZE,
    Classifier,
    K,
    V,
    codes_of,
    decode,
    downsample,
    encode,
    load_data,
    patches,
    save_grid,
    save_six_codes,
    unpatch,
)
from banel_ray.tasks.mnist.task import MnistZeroToSix

__all__ = [
    "ASSETS",
    "BOS",
    "EOS",
    "HIDDEN",
    "K",
    "MIN_PROB",
    "OFFSET",
    "PAD",
    "QUAD",
    "SHARED_MNIST",
    "SIDE",
    "TARGET",
    "V",
    "VOCAB_SIZE",
    "Classifier",
    "MnistZeroToSix",
    "codes_of",
    "decode",
    "downsample",
    "encode",
    "load_data",
    "patches",
    "save_grid",
    "save_six_codes",
    "unpatch",
]
