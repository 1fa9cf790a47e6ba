"""MNIST 0-to-6 on binarised 12x12 pixels (paper §3.1), with an importance-sampled rate.

Image space. MNIST digits are averaged down to 14x14 (``mnist.downsample``), cropped to the
central 12x12 (the border holds 0.2% of the ink) and binarised (a pixel is on iff its 2x2 mean is
at least 128 of 255). An image is a string of 144 pixel tokens in raster order: 2**144 = 2.2e43
images, far too many to enumerate, so the success rate is *estimated* by importance sampling
(``success_rate``: ``banel_ray.measure.tilted`` + ``banel_ray.measure.importance``), with a 95%
interval and diagnostics; the estimator is validated against exact enumeration on the 4-token
task (``tuning.mnist_coverage``, docs/mnist.md).

* Prior p0: a Llama-style causal LM over the 144 pixels (after BOS), trained only on the 5,923
  training zeros; deterministic, shipped in ``assets/mnist/pixels_prior``.
* Oracle (``rule: typical``, the default): reward 1 iff the completion is exactly 144 pixel
  tokens, a 10-class MLP (144-256-10, all ten digits) gives class 6 a softmax probability >= 0.99,
  and the image is at least e^46.05 = 1e20 times likelier under a model of sixes
  (``assets/mnist/pixels_six_model``) than under the shipped zeros prior (the likelihood-ratio
  test: zero-like images the MLP calls 6 cannot pass it). Hence P_p0(success) <= e^-min_llr =
  1e-20 for the shipped prior by construction, and an importance weight p0/p_six on a success is
  at most 1e-20. A success must also be typical of sixes (log p_six >= -50 nats, as 99.5% of test
  sixes are): noise that p0 finds even less likely than p_six does passes the ratio alone.
  ``rule: classifier`` is the MLP alone (base rate about 1e-4). EOS or a special token:
  malformed, reward 0.
* Measuring instrument (never seen by a method): the same model of sixes; the proposals bridge the
  evaluated model to it token by token.
  Per-pixel on-counts of training sixes and zeros (``pixels_instrument.npz``) give an alternative
  ladder of fixed tilts (``pixel_tilt``).

Measured (docs/mnist.md): the prior's rate is about 1e-4, not the paper's 1e-25: the prior draws
zero-like images the classifier calls 6. ``mnist_0to6`` (``tasks/mnist/``) is the 4-token code
task, kept unchanged.
Data: MNIST, Y. LeCun, C. Cortes, C. J. C. Burges, CC BY-SA 3.0 (see assets/mnist/LICENSE-MNIST.md).
``python -m banel_ray.tasks.mnist_pixels oracle|prior|six --out ...`` rebuilds the shipped assets.
"""

from banel_ray.tasks.mnist.common import ASSETS, BOS, EOS, PAD
from banel_ray.tasks.mnist_pixels.common import (
    CROP,
    INSTRUMENT,
    OFF,
    ON,
    ORACLE,
    PIXEL_TOKENS,
    PRIOR_DIR,
    SIDE,
    SIX_MODEL_DIR,
    THRESHOLD,
    VOCAB_SIZE,
    L,
    PixelClassifier,
    binarise,
    images_of,
    load_instrument,
    pixel_tilt,
    save_grid,
    tokens_of,
)
from banel_ray.tasks.mnist_pixels.task import (
    MAX_GAMMA,
    MIN_LLR,
    MIN_SIX_LOGP,
    RULES,
    MnistPixels,
    parse_gammas,
    parse_scales,
)

__all__ = [
    "ASSETS",
    "BOS",
    "CROP",
    "EOS",
    "INSTRUMENT",
    "L",
    "MAX_GAMMA",
    "MIN_LLR",
    "MIN_SIX_LOGP",
    "OFF",
    "ON",
    "ORACLE",
    "PAD",
    "PIXEL_TOKENS",
    "PRIOR_DIR",
    "RULES",
    "SIDE",
    "SIX_MODEL_DIR",
    "THRESHOLD",
    "VOCAB_SIZE",
    "MnistPixels",
    "PixelClassifier",
    "binarise",
    "images_of",
    "load_instrument",
    "parse_gammas",
    "parse_scales",
    "pixel_tilt",
    "save_grid",
    "tokens_of",
]
