"""What the MNIST tasks share, written once: the data and its paths, the oracle's MLP and its rule
(class 6 at probability >= ``MIN_PROB``), the sample grid, the training steps their assets share;
and the 4-token code space of ``mnist_0to6`` and ``mnist_0to6_rare`` (codebook quadrants, the
``Classifier`` of decoded codes, the success table of all 64**4 codes)."""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

PAD, BOS, EOS = 0, 1, 2
TARGET = 6
MIN_PROB = 0.99  # reward 1 iff the classifier gives class 6 at least this probability
HIDDEN = 256  # classifier hidden units

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "mnist"
SHARED_MNIST = "../shared/data/mnist/mnist_full_uint8.npz"  # the location, from the repo root

# the 4-token code space
OFFSET = 3  # code index c is token c + OFFSET
SIDE, QUAD, K, V = 14, 7, 4, 64  # 14x14 image, four 7x7 quadrants, 64 patches per quadrant
VOCAB_SIZE = OFFSET + V


# ---- the data ----------------------------------------------------------------------------------


def downsample(x28: np.ndarray) -> np.ndarray:
    """(n, 28, 28) uint8 -> (n, 14, 14) uint8, mean of each 2x2 block."""
    x = np.asarray(x28, dtype=np.float64).reshape(-1, SIDE, 2, SIDE, 2).mean((2, 4))
    return np.round(x).astype(np.uint8)


def load_data(path: Path | None = None) -> dict:
    """The shipped 14x14 data: zeros (training zeros), x_test, y_test (all 10k test images)."""
    with np.load(path or ASSETS / "data.npz") as d:
        return {k: d[k] for k in d.files}


def missing_mnist(path: str) -> bool:
    """True, after one error line, when the full MNIST file that a rebuild reads is not there."""
    if Path(path).is_file():
        return False
    print(f"error: --mnist file not found: {path}", file=sys.stderr)
    return True


# ---- the oracle's classifier ---------------------------------------------------------------------


def digest_of(*arrays: np.ndarray) -> str:
    """A short sha256 of the arrays' bytes: which oracle a table, a prior or a record was made with."""
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()[:16]


def log_p6(logits: np.ndarray) -> np.ndarray:
    """log softmax probability of class 6 (float64), for logits of shape (..., 10)."""
    m = logits.max(-1, keepdims=True)
    return logits[..., TARGET] - (m[..., 0] + np.log(np.exp(logits - m).sum(-1)))


def is_six_logits(logits: np.ndarray) -> np.ndarray:
    """The reward rule on logits: softmax probability of class 6 >= MIN_PROB (float64)."""
    return log_p6(logits) >= math.log(MIN_PROB)


class Mlp:
    """The oracle's classifier: one hidden ReLU layer on the flattened image (float64 numpy; no
    torch needed to pay for a sample). A subclass loads it (``load_mlp``) and names its digest."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def load_mlp(self, d) -> None:
        """The weights from an open ``.npz`` (w1, b1, w2, b2; as ``mlp_arrays`` writes them)."""
        self.w1, self.b1 = d["w1"].astype(np.float64), d["b1"].astype(np.float64)
        self.w2, self.b2 = d["w2"].astype(np.float64), d["b2"].astype(np.float64)

    def logits(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        return np.maximum(x @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2

    def classify(self, images: np.ndarray) -> np.ndarray:
        return self.logits(images).argmax(-1)

    def log_p6(self, images: np.ndarray) -> np.ndarray:
        return log_p6(self.logits(images))

    def is_six(self, images: np.ndarray) -> np.ndarray:
        """The reward rule: softmax probability of class 6 >= MIN_PROB (float64)."""
        return is_six_logits(self.logits(images))


def save_image_grid(
    path: Path,
    panels,
    classifier: Mlp,
    images_of: Callable[[Sequence[Sequence[int]]], tuple[np.ndarray, np.ndarray]],
    side: int,
    note: str,
    text_at: tuple[float, float],
    success=None,
    cols: int = 8,
) -> Path:
    """PNG: one panel of images per (title, completions), the classifier's digit in each corner,
    red where it is a success (``success(completions)``, else the classifier's rule); malformed
    completions grey with an x. ``images_of(completions)`` -> (valid mask, (n, side, side) images)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5.6))
    for ax, (title, comps) in zip(np.atleast_1d(axes), panels):
        valid, imgs = images_of(comps)
        imgs[~valid] = 0.5  # malformed: grey
        cls = classifier.classify(imgs)
        six = (success(comps) if success else classifier.is_six(imgs)) & valid
        rows = math.ceil(len(comps) / cols)
        canvas = np.ones((rows * (side + 1), cols * (side + 1)))
        for i, im in enumerate(imgs):
            r, c = divmod(i, cols)
            canvas[r * (side + 1) : r * (side + 1) + side, c * (side + 1) : c * (side + 1) + side] = 1 - im
            ax.text(
                c * (side + 1) + text_at[0],
                r * (side + 1) + text_at[1],
                "x" if not valid[i] else str(cls[i]),
                color="red" if six[i] else "tab:blue",
                fontsize=7,
            )
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\n{int(six.sum())}/{len(comps)} successes {note}", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- the training steps the assets share (deterministic) -------------------------------------


def torch_deterministic(threads: int = 1) -> None:
    """One thread count and deterministic kernels for a rebuild."""
    import torch

    from banel_ray.models import set_threads

    set_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def train_mlp(x: np.ndarray, y: np.ndarray, epochs: int, seed: int, label: str, progress, t0: float) -> dict:
    """The oracle's MLP (``x.shape[1]`` -> HIDDEN -> 10 classes) fitted to images ``x`` (n, d)
    float32 and labels ``y`` by Adam (lr 1e-3) on shuffled batches of 128; the caller sets torch's
    threads and determinism first. Returns its arrays as saved (``mlp_arrays``)."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    X, Y = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), 128):
            b = perm[i : i + 128]
            loss = torch.nn.functional.cross_entropy(net(X[b]), Y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        progress(f"[{label}] classifier epoch {ep + 1}/{epochs} loss {float(loss):.4f} ({time.time() - t0:.0f}s)")
    w = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    return mlp_arrays(w)


def mlp_arrays(state: dict) -> dict:
    """A torch MLP's state (float32 numpy) as ``Mlp.load_mlp`` reads it: w1, b1, w2, b2."""
    return dict(w1=state["0.weight"].T.copy(), b1=state["0.bias"], w2=state["2.weight"].T.copy(), b2=state["2.bias"])


def epoch_progress(progress, label: str, t0: float):
    """``models.train_mle``'s per-epoch callback: one line '[label] epoch e/n NLL ...' (None: silent)."""
    if not progress:
        return None
    return lambda e, n, l: progress(f"[{label}] epoch {e}/{n} NLL {l:.4f} ({time.time() - t0:.0f}s)")


# ---- the 4-token code space (mnist_0to6, mnist_0to6_rare) --------------------------------------


def patches(x14: np.ndarray) -> np.ndarray:
    """(n, 14, 14) images -> (n, 4, 49) float32 in [0, 1], quadrants in reading order."""
    x = np.asarray(x14, dtype=np.float32).reshape(-1, 2, QUAD, 2, QUAD) / 255.0
    return x.transpose(0, 1, 3, 2, 4).reshape(-1, K, QUAD * QUAD)


def unpatch(p: np.ndarray) -> np.ndarray:
    """(n, 4, 49) -> (n, 14, 14)."""
    return p.reshape(-1, 2, 2, QUAD, QUAD).transpose(0, 1, 3, 2, 4).reshape(-1, SIDE, SIDE)


def encode(x14: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Nearest codebook patch per quadrant: (n, 4) int64 code indices."""
    p = patches(x14).astype(np.float64)
    cb = codebook.astype(np.float64)
    # squared distances |p|^2 - 2 p.c + |c|^2, per quadrant: (n, 4, V)
    d = (p**2).sum(-1)[..., None] - 2 * np.einsum("nqd,qvd->nqv", p, cb) + (cb**2).sum(-1)[None]
    return d.argmin(-1)


def decode(codes: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """(n, 4) code indices -> (n, 14, 14) float images in [0, 1]."""
    codes = np.asarray(codes, dtype=np.int64)
    return unpatch(np.stack([codebook[q][codes[:, q]] for q in range(K)], 1))


def codes_of(completions: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(valid mask, (n, 4) code indices; rows of malformed completions are 0)."""
    valid = np.array([len(c) == K and all(OFFSET <= t < VOCAB_SIZE for t in c) for c in completions], dtype=bool)
    codes = np.zeros((len(completions), K), dtype=np.int64)
    for i in np.flatnonzero(valid):
        codes[i] = np.asarray(completions[i]) - OFFSET
    return valid, codes


class Classifier(Mlp):
    """Codebook + MLP classifier of decoded codes (float64 numpy; no torch needed to pay for a sample)."""

    def __init__(self, path: Path | None = None):
        with np.load(path or ASSETS / "oracle.npz") as d:
            self.codebook = d["codebook"].astype(np.float32)
            self.load_mlp(d)
        self.digest = digest_of(self.codebook, self.w1, self.b1, self.w2, self.b2)

    def classify_codes(self, codes: np.ndarray) -> np.ndarray:
        return self.classify(decode(codes, self.codebook))

    def six_table(self) -> np.ndarray:
        """Whether each of the V**4 codes is a success, shape (V,)*4 bool.

        The first layer is linear in the pixels, so it splits over quadrants: per-quadrant
        pre-activations are computed once per patch and summed for every combination.
        """
        w1q = self.w1.reshape(2, QUAD, 2, QUAD, -1).transpose(0, 2, 1, 3, 4).reshape(K, QUAD * QUAD, -1)
        h = [self.codebook[q].astype(np.float64) @ w1q[q] for q in range(K)]  # (V, H) each
        out = np.empty((V,) * K, dtype=bool)
        rest = (h[1][:, None, None, :] + h[2][None, :, None, :] + h[3][None, None, :, :]).reshape(-1, h[0].shape[1])
        for a in range(V):
            z = np.maximum(rest + (h[0][a] + self.b1), 0.0) @ self.w2 + self.b2
            out[a] = is_six_logits(z).reshape((V,) * (K - 1))
        return out


def save_six_codes(path: Path, success: np.ndarray, digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{time.time_ns()}.tmp.npz")
    np.savez_compressed(tmp, bits=np.packbits(success.ravel()), digest=np.array(digest))
    tmp.replace(path)


def save_grid(path: Path, panels, classifier: Classifier, cols: int = 8) -> Path:
    """PNG of 4-token samples, one panel per (title, completions), class in the corner."""

    def images_of(comps):
        valid, codes = codes_of(comps)
        return valid, decode(codes, classifier.codebook)

    return save_image_grid(
        path, panels, classifier, images_of, SIDE, f"(red: p(6) >= {MIN_PROB})", (0.5, 2.5), cols=cols
    )
