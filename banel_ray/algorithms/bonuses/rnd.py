"""Random network distillation (Burda, Edwards, Storkey & Klimov 2018, arXiv 1810.12894).

Algorithm: a target network f (random, frozen) and a predictor f_hat (trained) map a sequence's
features (``features.one_hot_positions``) to a vector; the novelty bonus of x is the prediction
error ||f_hat(x) - f(x)||^2, divided by a running standard deviation of all bonuses seen (as in
the paper, so ``rnd.coef`` is in units of typical novelty). Each round the bonus of the paid
samples is added to their task reward for REINFORCE (``reinforce``), then f_hat is trained on them
(mean squared error, ``rnd.epochs`` passes), so revisited sequences lose their bonus.

Defaults (config keys): rnd.coef 1.0, rnd.lr 1e-3, rnd.epochs 5, rnd.hidden 128; output 64 dims.
"""

from __future__ import annotations

import numpy as np


class RunningStd:
    """Welford's running variance of every value seen."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, xs) -> None:
        for x in np.asarray(xs, dtype=np.float64).ravel():
            self.n += 1
            d = x - self.mean
            self.mean += d / self.n
            self.m2 += d * (x - self.mean)

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.n)) if self.n > 1 else 1.0

    def state(self) -> dict:
        return {"n": self.n, "mean": self.mean, "m2": self.m2}

    def load(self, state: dict) -> None:
        self.n, self.mean, self.m2 = int(state["n"]), float(state["mean"]), float(state["m2"])


class RND:
    def __init__(self, dim_in: int, hidden: int = 128, dim_out: int = 64, lr: float = 1e-3, seed: int = 0):
        import torch
        from torch import nn

        torch.manual_seed(seed)
        self.target = nn.Sequential(nn.Linear(dim_in, hidden), nn.ReLU(), nn.Linear(hidden, dim_out))
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.predictor = nn.Sequential(
            nn.Linear(dim_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, dim_out)
        )
        self.opt = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        self.gen = torch.Generator().manual_seed(seed)
        self.scale = RunningStd()

    def tensors(self) -> dict:
        """What changes as it learns (predictor, its optimiser, the RNG) as tensors for a
        checkpoint; the frozen target is rebuilt from the seed."""
        from banel_ray.models import optimizer_tensors

        out = {f"predictor.{k}": v.detach().clone() for k, v in self.predictor.state_dict().items()}
        out.update({f"opt.{k}": v for k, v in optimizer_tensors(self.opt).items()})
        out["rng"] = self.gen.get_state()
        return out

    def load_tensors(self, t: dict) -> None:
        from banel_ray.models import load_optimizer_tensors

        self.predictor.load_state_dict({k[len("predictor.") :]: v for k, v in t.items() if k.startswith("predictor.")})
        load_optimizer_tensors(self.opt, {k[len("opt.") :]: v for k, v in t.items() if k.startswith("opt.")})
        self.gen.set_state(t["rng"])

    def _errors(self, x):
        return ((self.predictor(x) - self.target(x)) ** 2).mean(-1)

    def raw_bonus(self, feats: np.ndarray) -> np.ndarray:
        """Prediction error per sample (no normalisation)."""
        import torch

        with torch.no_grad():
            return self._errors(torch.from_numpy(np.asarray(feats, dtype=np.float32))).double().numpy()

    def bonus(self, feats: np.ndarray) -> np.ndarray:
        """Prediction error divided by the running standard deviation of all errors seen so far."""
        raw = self.raw_bonus(feats)
        self.scale.update(raw)
        return raw / max(self.scale.std, 1e-8)

    def update(self, feats: np.ndarray, epochs: int = 5, batch_size: int = 64) -> float:
        """Train the predictor on these features; returns the last epoch's mean error."""
        import torch

        x = torch.from_numpy(np.asarray(feats, dtype=np.float32))
        last = float("nan")
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=self.gen)
            tot = 0.0
            for s in range(0, len(x), batch_size):
                loss = self._errors(x[order[s : s + batch_size]]).mean()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                tot += float(loss.detach()) * len(order[s : s + batch_size])
            last = tot / max(len(x), 1)
        return last
