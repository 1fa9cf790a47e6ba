"""The gsm_hard task through a tokenizer trained offline (the tiny Llama of tests/llm_fixtures.py,
a session fixture that trains its tokenizer): the chat prompt and the rewards. The data and the
answer checks are in tests/unit/test_gsm_hard.py."""

from banel_ray.tasks import gsm_hard as G


def test_task_prompt_and_rewards_through_a_tokenizer(tiny_llm):
    task = G.GsmHard(question=510, model=str(tiny_llm), max_new_tokens=16)
    tok = task.tokenizer
    text = tok.decode(task.prompt)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    assert "Gerald and Julia divided $7032231" in text and G.INSTRUCTION in text
    assert task.eos_id == tok.convert_tokens_to_ids("<|im_end|>") and task.pad_id == 0

    def ids(s, end=True):
        return tuple(tok(s, add_special_tokens=False)["input_ids"]) + ((task.eos_id,) if end else ())

    right, wrong = ids("4219328.6 - 10 ... The answer is 4,219,328.60."), ids("The answer is 4219329.")
    cut = ids("3/5 of 7032231 is 4219338.6, minus 10 is 4219328.6", end=False)  # no marker, no EOS
    assert task.rewards([right, wrong, cut, ids("")]) == [1, 0, 0, 0]
    assert task.pattern(right) == "answer=4219328.60" and task.pattern(cut) == "no-answer"
    assert task.render(cut).endswith("…") and not task.render(right).endswith("…")
    d = task.diagnostics([right, cut])
    assert d["finished"] == 0.5 and d["answered"] == 0.5
