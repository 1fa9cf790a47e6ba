"""The gsm_hard task: shipped data, answer extraction and numeric comparison on real rows, and
option checks (tests/integration/test_gsm_hard_tokenizer.py: the chat prompt and rewards through a
tokenizer made offline)."""

import pytest

from banel_ray import config as C
from banel_ray.tasks import gsm_hard as G


def fmt_commas(x: float) -> str:
    return f"{x:,.0f}" if x == int(x) else f"{x:,.2f}"


def test_shipped_data_is_the_full_set_with_its_licence():
    rows = G.load_questions()
    assert len(rows) == 1319
    assert (G.DATA.parent / "LICENSE-Apache-2.0-PAL-repo").is_file()
    assert sum(r["target"] < 0 for r in rows) == 146
    assert sum(r["target"] != int(r["target"]) for r in rows) == 303
    assert rows[143]["target"] == 7500.0 and rows[510]["target"] == 4219328.6


@pytest.mark.parametrize("q", [143, 205, 1012, 942, 1248, 510, 0, 1])
def test_checker_on_the_papers_questions_and_negative_targets(q):
    t = G.load_questions()[q]["target"]
    ok = [
        f"So the total is {t:.2f}. The answer is {fmt_commas(t)}.",
        f"Step 1 ... step 2 gives $ {fmt_commas(t)}",  # last number, finished
        f"#### {t!r}",
        f"\\boxed{{{fmt_commas(t)}}}",
    ]
    for text in ok:
        assert G.is_correct(G.extract_answer(text, finished=True), t), text
    wrong = [
        f"The answer is {t + 1:.0f}.",
        f"The answer is {-t if t else 1:.2f}",
        f"The answer is {t:.2f}. Actually the answer is {t + 3:.2f}.",
    ]  # the last marker counts
    for text in wrong:
        assert not G.is_correct(G.extract_answer(text, finished=True), t), text


def test_non_integer_targets_rounding_and_float_noise():
    rows = G.load_questions()
    noisy = next(r["target"] for r in rows if abs(r["target"] - 3244047.1) < 1e-6)  # 3244047.0999999996
    assert G.is_correct("3244047.1", noisy)
    third = next(r["target"] for r in rows if abs(r["target"] - 14053029.666666666) < 1e-6)
    assert G.is_correct("14053029.67", third) and G.is_correct("14053029.6667", third)
    assert not G.is_correct("14053030", third) and not G.is_correct("14053029.6", third)
    tiny = next(r["target"] for r in rows if abs(r["target"] - 0.0016791648) < 1e-12)
    assert G.is_correct("0.0016791648", tiny) and not G.is_correct("0.0", tiny)
    assert not G.is_correct("0.002", tiny)
    assert G.is_correct("-9867630", rows[0]["target"]) and not G.is_correct("9867630", rows[0]["target"])
    assert G.is_correct(G.extract_answer("she loses \u2212$9,867,630 a day", True), rows[0]["target"])


def test_unfinished_completion_needs_an_explicit_answer():
    assert G.extract_answer("first 7500 then 12", finished=False) is None
    assert G.extract_answer("first 7500 then 12", finished=True) == "12"
    assert G.extract_answer("The answer is 7500. Now 12", finished=False) == "7500"
    assert G.extract_answer("no digits here", finished=True) is None
    assert not G.is_correct(None, 0.0)


@pytest.mark.parametrize(
    "sets,needle",
    [
        (["task=gsm_hard", "task_options.question=1319"], "'task_options.question' must be an integer in [0, 1318]"),
        (["task=gsm_hard", "task_options.question=abc"], "'task_options.question'"),
        (["task=gsm_hard", "task_options.max_new_tokens=0"], "'task_options.max_new_tokens'"),
        (["task=gsm_hard", "task_options.model=/nonexistent"], "'task_options.model'"),
        (["task=gsm_hard", "task_options.questions=3"], "unknown key 'task_options.questions'"),
    ],
)
def test_bad_options_are_one_line_errors(sets, needle):
    with pytest.raises(C.ConfigError) as e:
        C.load(None, sets)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_good_options_validate():
    cfg = C.load(None, ["task=gsm_hard", "task_options.question=205"])
    assert cfg["task"] == "gsm_hard" and cfg["task_options"] == {"question": 205}
