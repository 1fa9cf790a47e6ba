"""The addition task's language and reward rule, which the plug-in (``task.py``) and the asset
builders (``assets.py``) share: the vocabulary, query parsing, the one reward criterion
(``answer_is_wrong``), the modes and patterns of a query, and the digest that names a solver."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PAD, BOS, EOS = 0, 1, 2
CHARS = "0123456789+="
VOCAB = ["<pad>", "<bos>", "<eos>"] + list(CHARS)
TOK = {c: i + 3 for i, c in enumerate(CHARS)}
VOCAB_SIZE = 16  # 15 used, rounded up

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def encode(text: str) -> tuple[int, ...]:
    return tuple(TOK[c] for c in text)


def decode(ids: Sequence[int]) -> str:
    return "".join(VOCAB[i] if 3 <= i < len(VOCAB) else ("?" if i >= len(VOCAB) else "") for i in ids if i != EOS)


def random_operands(rng: np.random.Generator, n: int, max_digits: int) -> list[tuple[int, int]]:
    """Operands with lengths uniform in 1..max_digits and no leading zeros (the training law)."""
    out = []
    lens = rng.integers(1, max_digits + 1, size=(n, 2))
    for la, lb in lens:
        a = int(rng.integers(10 ** (la - 1) if la > 1 else 0, 10**la))
        b = int(rng.integers(10 ** (lb - 1) if lb > 1 else 0, 10**lb))
        out.append((a, b))
    return out


def parse_query(ids: Sequence[int], max_digits: int) -> tuple[str, str] | None:
    """(a, b) digit strings if the completion is a well-formed query ending in EOS, else None."""
    if not ids or ids[-1] != EOS:
        return None
    m = re.fullmatch(rf"(\d{{1,{max_digits}}})\+(\d{{1,{max_digits}}})=", decode(ids[:-1]))
    return (m.group(1), m.group(2)) if m else None


def carry_chain(a: str, b: str) -> int:
    """Length of the longest run of consecutive carries when adding a and b."""
    x, y = a[::-1], b[::-1]
    best = run = carry = 0
    for i in range(max(len(x), len(y))):
        s = int(x[i] if i < len(x) else 0) + int(y[i] if i < len(y) else 0) + carry
        carry = int(s >= 10)
        run = run + 1 if carry else 0
        best = max(best, run)
    return best


REWARDS = ("exact", "numeric")


def answer_is_wrong(answer: str, a: str, b: str, reward: str) -> bool:
    """The one reward criterion of the addition attack (the task, its benchmark and the docs all
    call this). ``exact``: the answer must be exactly the canonical decimal sum the solver was
    trained to write (``str(int(a) + int(b))``), so "01594001" for ``97+01593904=`` is wrong.
    ``numeric``: any digit string with the right value is right (the reward before 2026-12)."""
    if reward == "exact":
        return answer != str(int(a) + int(b))
    if reward == "numeric":
        return not answer.isdigit() or int(answer) != int(a) + int(b)
    raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {reward!r}")


ANSWER_ORDERS = ("normal", "reversed")


def written_answer(total: int, reversed_: bool) -> str:
    """The digit string a solver is trained to write for ``total`` (reversed: least significant first)."""
    text = str(total)
    return text[::-1] if reversed_ else text


def has_leading_zero(a: str, b: str) -> bool:
    return (len(a) > 1 and a[0] == "0") or (len(b) > 1 and b[0] == "0")


def padding_mode(a: str, b: str) -> str:
    """The default task's modes: both operands padded with a leading zero, one, or neither (plain).
    With the reversed solver only padded queries ever fail."""
    pa, pb = len(a) > 1 and a[0] == "0", len(b) > 1 and b[0] == "0"
    return "both_padded" if pa and pb else ("one_padded" if pa or pb else "plain")


def mode_of(a: str, b: str, max_digits: int) -> str:
    """One coarse category per well-formed query, for the regime measurements and the per-round
    mechanism metrics: leading_zero (the paper's main failure mode), carry_chain (a long run of
    carries), other."""
    if has_leading_zero(a, b):
        return "leading_zero"
    if carry_chain(a, b) >= max(4, max_digits // 2):
        return "carry_chain"
    return "other"


def pattern_of(a: str, b: str, max_digits: int) -> str:
    """A short label for why a query might fool the solver (for the success report)."""
    tags = []
    if (len(a) > 1 and a[0] == "0") or (len(b) > 1 and b[0] == "0"):
        tags.append("leading-zero")
    c = carry_chain(a, b)
    if c >= max(4, max_digits // 2):
        tags.append(f"carry-chain-{c}")
    if max(len(a), len(b)) == max_digits:
        tags.append("max-length")
    return "+".join(tags) or "other"


def weights_digest(model_dir) -> str:
    """A short sha256 of a model folder's weights: which solver a measurement was made with."""
    import hashlib

    return hashlib.sha256((Path(model_dir) / "model.safetensors").read_bytes()).hexdigest()[:16]
