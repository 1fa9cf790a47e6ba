"""The pixel space of ``mnist_0to6_pixels``, which its plug-in (``task.py``) and its asset builders
(``assets.py``) share: binarised 12x12 images as 144 tokens, the pixel classifier (the oracle's
MLP), the measuring instrument's per-pixel counts and tilt, the sample grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from banel_ray.tasks.mnist.common import ASSETS, Mlp, digest_of, save_image_grid

SIDE = 12  # the central 12x12 of the 14x14 image
CROP = slice(1, 13)
L = SIDE * SIDE  # 144 pixel tokens
THRESHOLD = 128  # a pixel is on iff its 14x14 value (a 2x2 mean of the 28x28 image) is >= this
OFF, ON = 3, 4  # pixel tokens
PIXEL_TOKENS = (OFF, ON)
VOCAB_SIZE = 5
PRIOR_DIR = ASSETS / "pixels_prior"
SIX_MODEL_DIR = ASSETS / "pixels_six_model"
ORACLE = ASSETS / "pixels_oracle.npz"
INSTRUMENT = ASSETS / "pixels_instrument.npz"


# ---- images ----------------------------------------------------------------------------------


def binarise(x14: np.ndarray) -> np.ndarray:
    """(n, 14, 14) uint8 -> (n, 12, 12) bool: the central crop, on iff >= THRESHOLD."""
    return np.asarray(x14)[:, CROP, CROP] >= THRESHOLD


def tokens_of(images: np.ndarray) -> list[tuple[int, ...]]:
    """(n, 12, 12) bool -> completions (144 pixel tokens each)."""
    flat = np.asarray(images, dtype=bool).reshape(len(images), L)
    return [tuple(row) for row in np.where(flat, ON, OFF).tolist()]


def images_of(completions: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(valid mask, (n, 12, 12) float images in {0, 1}; rows of malformed completions are 0)."""
    n = len(completions)
    valid = np.zeros(n, dtype=bool)
    out = np.zeros((n, L), dtype=np.float64)
    for i, c in enumerate(completions):
        if len(c) == L:
            row = np.asarray(c)
            if ((row == OFF) | (row == ON)).all():
                valid[i] = True
                out[i] = row == ON
    return valid, out.reshape(n, SIDE, SIDE)


# ---- the classifier (the oracle) ---------------------------------------------------------------


class PixelClassifier(Mlp):
    """MLP on the binary 12x12 image (float64 numpy; no torch needed to pay for a sample)."""

    def __init__(self, path: Path | None = None):
        with np.load(path or ORACLE) as d:
            self.load_mlp(d)
        self.digest = digest_of(self.w1, self.b1, self.w2, self.b2)


def load_instrument(path: Path | None = None) -> dict:
    """Per-pixel on-counts of the training sixes and zeros (the proposals' tilt; never a method's)."""
    with np.load(path or INSTRUMENT) as d:
        return {k: d[k] for k in d.files}


def pixel_tilt(instrument: dict, smoothing: float = 1.0, clip: float = 4.0) -> np.ndarray:
    """(144, 2) additive logits [off, on] per pixel: the six-versus-zero log-odds of 'on'.

    Added (times a scale lambda) to a model's logits while sampling, it pulls each pixel towards
    what sixes have and zeros do not; ``clip`` bounds the pull of pixels no zero ever sets."""

    def logit(on, n):
        p = (on + smoothing) / (n + 2 * smoothing)
        return np.log(p) - np.log1p(-p)

    w = logit(instrument["six_on"], float(instrument["n_six"])) - logit(
        instrument["zero_on"], float(instrument["n_zero"])
    )
    w = np.clip(w.astype(np.float64), -clip, clip)
    return np.stack([np.zeros_like(w), w], axis=1)


def save_grid(path: Path, panels, classifier: PixelClassifier, success=None, cols: int = 8) -> Path:
    """PNG of pixel samples, one panel per (title, completions), the MLP's class in the corner,
    red where ``success`` (the task's rule; default: the classifier's alone)."""
    return save_image_grid(
        path,
        panels,
        classifier,
        images_of,
        SIDE,
        "(red), digit: the MLP's class",
        (0.3, 2.0),
        success=success,
        cols=cols,
    )
