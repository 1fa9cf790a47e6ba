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

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from banel_ray.tasks.base import Task

PAD, BOS, EOS = 0, 1, 2
OFFSET = 3  # code index c is token c + OFFSET
SIDE, QUAD, K, V = 14, 7, 4, 64  # 14x14 image, four 7x7 quadrants, 64 patches per quadrant
VOCAB_SIZE = OFFSET + V
TARGET = 6
MIN_PROB = 0.99  # reward 1 iff the classifier gives class 6 at least this probability
HIDDEN = 256  # classifier hidden units

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "mnist"
SHARED_MNIST = "../shared/data/mnist/mnist_full_uint8.npz"  # the location, from the repo root
PRIOR_ARCH = dict(hidden=64, layers=2, heads=2, intermediate=256, max_positions=8)


# ---- images and codes ------------------------------------------------------------------------


def downsample(x28: np.ndarray) -> np.ndarray:
    """(n, 28, 28) uint8 -> (n, 14, 14) uint8, mean of each 2x2 block."""
    x = np.asarray(x28, dtype=np.float64).reshape(-1, SIDE, 2, SIDE, 2).mean((2, 4))
    return np.round(x).astype(np.uint8)


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


def load_data(path: Path | None = None) -> dict:
    """The shipped 14x14 data: zeros (training zeros), x_test, y_test (all 10k test images)."""
    with np.load(path or ASSETS / "data.npz") as d:
        return {k: d[k] for k in d.files}


# ---- the classifier (the oracle) ----------------------------------------------------------------------------


class Classifier:
    """Codebook + MLP classifier (float64 numpy; no torch needed to pay for a sample)."""

    def __init__(self, path: Path | None = None):
        with np.load(path or ASSETS / "oracle.npz") as d:
            self.codebook = d["codebook"].astype(np.float32)
            self.w1, self.b1 = d["w1"].astype(np.float64), d["b1"].astype(np.float64)
            self.w2, self.b2 = d["w2"].astype(np.float64), d["b2"].astype(np.float64)
        self.digest = hashlib.sha256(
            b"".join(np.ascontiguousarray(a).tobytes() for a in (self.codebook, self.w1, self.b1, self.w2, self.b2))
        ).hexdigest()[:16]

    def logits(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        return np.maximum(x @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2

    def classify(self, images: np.ndarray) -> np.ndarray:
        return self.logits(images).argmax(-1)

    def classify_codes(self, codes: np.ndarray) -> np.ndarray:
        return self.classify(decode(codes, self.codebook))

    @staticmethod
    def _is_six(logits: np.ndarray) -> np.ndarray:
        """The reward rule on logits: softmax probability of class 6 >= MIN_PROB (float64)."""
        m = logits.max(-1, keepdims=True)
        log_p6 = logits[..., TARGET] - (m[..., 0] + np.log(np.exp(logits - m).sum(-1)))
        return log_p6 >= math.log(MIN_PROB)

    def is_six(self, images: np.ndarray) -> np.ndarray:
        return self._is_six(self.logits(images))

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
            out[a] = self._is_six(z).reshape((V,) * (K - 1))
        return out


class MnistZeroToSix(Task):
    name = "mnist_0to6"
    free_evaluation = True  # local rewards: success-rate estimates cost nothing
    grid_samples = 64

    def __init__(self, prior: str = "", cache_dir: str = "", prior_epochs: int = 100, threads: int = 1):
        self.prior_path = prior
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "banel_ray")
        self.prior_epochs = int(prior_epochs)
        self.threads = int(threads)
        self.prompt = (BOS,)
        self.eos_id, self.pad_id = EOS, PAD
        self.max_new_tokens = K
        self._classifier = None
        self._success = None

    @property
    def classifier(self) -> Classifier:
        if self._classifier is None:
            self._classifier = Classifier()
        return self._classifier

    # ---- models -------------------------------------------------------------------------------
    def prior_dir(self, progress=print) -> Path:
        """The shipped prior when it was trained with these settings, else a cache entry."""
        if self.prior_path:
            return Path(self.prior_path)
        shipped = ASSETS / "prior"
        info = shipped / "banel_ray.json"
        if info.exists() and json.loads(info.read_text()).get("epochs") == self.prior_epochs:
            return shipped
        out = self.cache_dir / f"mnist_prior_e{self.prior_epochs}_{self.classifier.digest}"
        if not (out / "model.safetensors").exists():
            progress(f"[mnist] training the prior on zeros ({self.prior_epochs} epochs, cached in {out})")
            train_prior(out, self.prior_epochs, progress=progress, threads=self.threads)
        return out

    def prepare(self, progress=print) -> str:
        self.success_table(progress)
        return str(self.prior_dir(progress))

    def success_table(self, progress=print) -> np.ndarray:
        """Boolean (V,)*4 table: which codes the oracle calls a six. Shipped for the shipped
        oracle (assets/mnist/six_codes.npz), else computed once (about a minute) and cached."""
        if self._success is None:
            shipped = ASSETS / "six_codes.npz"
            path = self.cache_dir / f"mnist_six_codes_{self.classifier.digest}.npz"
            for p in (shipped, path):
                if p.exists():
                    with np.load(p) as d:
                        if str(d["digest"]) == self.classifier.digest:
                            self._success = np.unpackbits(d["bits"])[: V**K].reshape((V,) * K).astype(bool)
                            return self._success
            progress(f"[mnist] classifying all {V**K:,} codes once (a few minutes; cached in {path})")
            self._success = self.classifier.six_table()
            save_six_codes(path, self._success, self.classifier.digest)
        return self._success

    # ---- reward and exact rate ------------------------------------------------------------------
    def rewards(self, completions: Sequence[Sequence[int]]) -> list[int]:
        valid, codes = codes_of(completions)
        out = np.zeros(len(completions), dtype=np.int64)
        if valid.any():
            out[valid] = self.classifier.is_six(decode(codes[valid], self.classifier.codebook))
        return out.tolist()

    def code_logprobs(self, model) -> np.ndarray:
        """log p(x) of every code, shape (V,)*4 (one pass over the 64**3 prefixes)."""
        from banel_ray.models import set_threads
        from banel_ray.models.exact_rate import all_logprobs

        set_threads(self.threads)
        return all_logprobs(model, self.prompt, range(OFFSET, VOCAB_SIZE), K)

    def success_codes(self) -> np.ndarray:
        return self.success_table()

    def success_rate(self, model, samples: int | None = None) -> dict:  # exact: no draws
        from banel_ray.models.exact_rate import exact_estimate

        logp = self.code_logprobs(model)
        est = exact_estimate(logp, self.success_table(), f"exact over {V**K:,} codes")
        est["n_success_codes"] = int(self.success_table().sum())
        return est

    # ---- reporting ------------------------------------------------------------------------------
    def render(self, completion: Sequence[int]) -> str:
        valid, codes = codes_of([completion])
        return "-".join(map(str, codes[0])) if valid[0] else "malformed:" + ",".join(map(str, completion))

    def pattern(self, completion: Sequence[int]) -> str:
        valid, codes = codes_of([completion])
        return f"class-{int(self.classifier.classify_codes(codes)[0])}" if valid[0] else "malformed"

    def diagnostics(self, completions: Sequence[Sequence[int]]) -> dict:
        valid, codes = codes_of(completions)
        n = max(len(completions), 1)
        d = {
            "well_formed": float(valid.sum()) / n,
            "mean_length": float(np.mean([len(c) for c in completions])) if completions else 0.0,
        }
        if valid.any():
            cls = self.classifier.classify_codes(codes[valid])
            d["class_0"] = float((cls == 0).sum()) / n
            d["class_6"] = float((cls == TARGET).sum()) / n
            d["success"] = float(self.classifier.is_six(decode(codes[valid], self.classifier.codebook)).sum()) / n
        return d

    def save_sample_grid(self, path: Path, posterior: Sequence[Sequence[int]], seed: int = 0) -> Path:
        """PNG: prior samples (left) beside the given posterior samples (right), class in corner."""
        from banel_ray.models import load_model, sample

        prior = sample(load_model(self.prior_dir()), self.prompt, len(posterior), K, EOS, seed=seed)
        return save_grid(
            path, [("prior p0 (zeros only)", prior), ("BaNEL generator (end of run)", posterior)], self.classifier
        )


def save_six_codes(path: Path, success: np.ndarray, digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{time.time_ns()}.tmp.npz")
    np.savez_compressed(tmp, bits=np.packbits(success.ravel()), digest=np.array(digest))
    tmp.replace(path)


def save_grid(path: Path, panels, classifier: Classifier, cols: int = 8) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5.6))
    for ax, (title, comps) in zip(np.atleast_1d(axes), panels):
        valid, codes = codes_of(comps)
        imgs = decode(codes, classifier.codebook)
        imgs[~valid] = 0.5  # malformed: grey
        cls, six = classifier.classify(imgs), classifier.is_six(imgs) & valid
        rows = math.ceil(len(comps) / cols)
        canvas = np.ones((rows * (SIDE + 1), cols * (SIDE + 1)))
        for i, im in enumerate(imgs):
            r, c = divmod(i, cols)
            canvas[r * (SIDE + 1) : r * (SIDE + 1) + SIDE, c * (SIDE + 1) : c * (SIDE + 1) + SIDE] = 1 - im
            ax.text(
                c * (SIDE + 1) + 0.5,
                r * (SIDE + 1) + 2.5,
                "x" if not valid[i] else str(cls[i]),
                color="red" if six[i] else "tab:blue",
                fontsize=7,
            )
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\n{int(six.sum())}/{len(comps)} successes (red: p(6) >= {MIN_PROB})", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- rebuilding the shipped assets (deterministic) -------------------------------------------


def build_data(mnist_full: Path, out: Path) -> dict:
    with np.load(mnist_full) as d:
        x_train, y_train, x_test, y_test = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, zeros=downsample(x_train[y_train == 0]), x_test=downsample(x_test), y_test=y_test.astype(np.uint8)
    )
    return {"zeros": int((y_train == 0).sum()), "test": len(y_test)}


def kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """Lloyd's algorithm with k-means++ seeding (torch, deterministic for a given seed)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    X = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    centres = [X[int(torch.randint(len(X), (1,), generator=g))]]
    d2 = ((X - centres[0]) ** 2).sum(1)
    for _ in range(k - 1):
        centres.append(X[int(torch.multinomial(d2, 1, generator=g))])
        d2 = torch.minimum(d2, ((X - centres[-1]) ** 2).sum(1))
    C = torch.stack(centres)
    for _ in range(iters):
        a = torch.cdist(X, C).argmin(1)
        for j in range(k):
            m = a == j
            if bool(m.any()):
                C[j] = X[m].mean(0)
    return C.numpy()


def build_oracle(mnist_full: Path, out: Path, epochs: int = 15, seed: int = 0, progress=print) -> dict:
    """Codebook (k-means per quadrant, no labels) and the MLP classifier of decoded images."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    with np.load(mnist_full) as d:
        x_train, y_train, x_test, y_test = downsample(d["x_train"]), d["y_train"], downsample(d["x_test"]), d["y_test"]
    t0 = time.time()
    p = patches(x_train)
    codebook = np.stack([kmeans(p[:, q], V, 25, seed + q) for q in range(K)]).astype(np.float32)
    progress(f"[mnist] codebook {codebook.shape} ({time.time() - t0:.0f}s)")
    rec_tr = decode(encode(x_train, codebook), codebook).reshape(len(x_train), -1).astype(np.float32)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(SIDE * SIDE, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    X, Y = torch.from_numpy(rec_tr), torch.from_numpy(y_train.astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), 128):
            b = perm[i : i + 128]
            loss = torch.nn.functional.cross_entropy(net(X[b]), Y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        progress(f"[mnist] classifier epoch {ep + 1}/{epochs} loss {float(loss):.4f} ({time.time() - t0:.0f}s)")
    w = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, codebook=codebook, w1=w["0.weight"].T.copy(), b1=w["0.bias"], w2=w["2.weight"].T.copy(), b2=w["2.bias"]
    )
    o = Classifier(out)
    info = {
        "decoded_test_accuracy": float((o.classify_codes(encode(x_test, codebook)) == y_test).mean()),
        "raw_test_accuracy": float((o.classify(x_test / 255.0) == y_test).mean()),
        "epochs": epochs,
        "seed": seed,
        "hidden": HIDDEN,
        "digest": o.digest,
        "seconds": round(time.time() - t0, 1),
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True))
    progress(f"[mnist] classifying all {V**K:,} codes (a few minutes)")
    save_six_codes(out.with_name("six_codes.npz"), o.six_table(), o.digest)
    return info


def zero_pairs(classifier: Classifier) -> tuple[list, list]:
    """(prompt, completion) pairs of the prior's training codes and of the test zeros.

    The 2% of training zeros whose code the oracle does not call a 0 (0.5% it calls a 6) are left
    out: a prior that copied them would start with a success rate of 5e-3, which sampling can see.
    """
    data = load_data()
    codes = encode(data["zeros"], classifier.codebook)
    codes = codes[classifier.classify_codes(codes) == 0]
    test = encode(data["x_test"][data["y_test"] == 0], classifier.codebook)
    as_pairs = lambda rows: [((BOS,), tuple(int(c) + OFFSET for c in row)) for row in rows]  # noqa: E731
    return as_pairs(codes), as_pairs(test)


def train_prior(
    out: Path,
    epochs: int,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 3,
    progress=print,
    threads: int = 1,
    classifier: Classifier | None = None,
):
    """The prior: a small Llama fitted to the codes of the training zeros (nothing else)."""
    import torch

    from banel_ray.models import build_llama, mean_nll, save_model, set_threads, train_mle

    set_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    classifier = classifier or Classifier()
    t0 = time.time()
    pairs, test0 = zero_pairs(classifier)
    model = build_llama(VOCAB_SIZE, seed=seed, **PRIOR_ARCH)
    losses = train_mle(
        model,
        pairs,
        epochs,
        lr,
        batch_size,
        seed,
        progress=(lambda e, n, l: progress(f"[mnist prior] epoch {e}/{n} NLL {l:.4f} ({time.time() - t0:.0f}s)"))
        if progress
        else None,
    )
    info = {
        "label": "mnist_prior",
        "epochs": epochs,
        "zeros": len(pairs),
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "arch": PRIOR_ARCH,
        "train_nll": losses[-1],
        "test_zero_nll": mean_nll(model, test0),
        "oracle_digest": classifier.digest,
        "seconds": round(time.time() - t0, 1),
    }
    save_model(model, out, info)
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m banel_ray.tasks.mnist",
        description="Rebuild the MNIST 0-to-6 assets (deterministic, one thread).",
    )
    p.add_argument(
        "which",
        choices=["data", "oracle", "prior"],
        help="data: 14x14 zeros + test set (.npz); oracle: codebook + classifier (.npz, with six_codes.npz "
        "beside it); "
        "prior: the zeros-only Llama (HF folder)",
    )
    p.add_argument("--out", required=True)
    p.add_argument(
        "--mnist",
        default=str(SHARED_MNIST),
        help="full MNIST uint8 .npz (x_train, y_train, x_test, y_test); data and oracle only",
    )
    p.add_argument("--epochs", type=int, default=0, help="oracle: 15, prior: 100 when 0")
    a = p.parse_args(argv)
    say = lambda s: print(s, flush=True)  # noqa: E731
    if a.which in ("data", "oracle") and not Path(a.mnist).is_file():
        print(f"error: --mnist file not found: {a.mnist}", file=sys.stderr)
        return 2
    if a.which == "data":
        print(json.dumps(build_data(Path(a.mnist), Path(a.out))))
    elif a.which == "oracle":
        print(json.dumps(build_oracle(Path(a.mnist), Path(a.out), epochs=a.epochs or 15, progress=say)))
    else:
        train_prior(Path(a.out), a.epochs or 100, progress=say)
        print((Path(a.out) / "banel_ray.json").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
