"""A tiny random Llama with a tokenizer trained offline on GSM-Hard text (shared by the LLM tests)."""

import pytest


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    from banel_ray.llm import make_tiny_llm
    from banel_ray.tasks.gsm_hard import INSTRUCTION, load_questions

    texts = [r["input"] for r in load_questions()] + [INSTRUCTION, "The answer is 12.5."] * 50
    # head_dim 64 (vLLM CPU attention needs >= 32), long enough for a question plus completion
    return make_tiny_llm(
        tmp_path_factory.mktemp("tiny") / "llm", texts, vocab_size=768, hidden=128, layers=2, heads=2, max_positions=512
    )
