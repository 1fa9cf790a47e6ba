"""Models for every role (Hugging Face causal LMs): files, log-likelihoods, decoding.

``io`` builds, saves and loads models; ``logprobs`` is the one numerical path for scores and
losses; ``decode`` samples and answers greedily; ``exact_rate`` enumerates small output spaces.
"""

from banel_ray.models.decode import greedy_batch, sample
from banel_ray.models.io import (
    DTYPES,
    WEIGHTS_FILE,
    build_llama,
    copy_model,
    load_model,
    load_optimizer_tensors,
    load_state,
    lora_copy,
    merge_lora,
    optimizer_tensors,
    resolve_device,
    save_model,
    set_threads,
    state_dict,
    trainable_params,
)
from banel_ray.models.logprobs import (
    LOGIT_BUDGET,
    Pair,
    batch_slices,
    cosine_lr,
    max_token_log_ratio,
    mean_nll,
    micro_batches,
    pad_pairs,
    sequence_logprobs,
    sequence_logprobs_and_min,
    token_logprobs,
    train_mle,
    vocab_size,
    weighted_nll_step,
)

__all__ = [
    "DTYPES",
    "WEIGHTS_FILE",
    "LOGIT_BUDGET",
    "Pair",
    "batch_slices",
    "build_llama",
    "copy_model",
    "cosine_lr",
    "greedy_batch",
    "load_model",
    "load_optimizer_tensors",
    "load_state",
    "lora_copy",
    "mean_nll",
    "merge_lora",
    "micro_batches",
    "optimizer_tensors",
    "pad_pairs",
    "resolve_device",
    "sample",
    "save_model",
    "sequence_logprobs",
    "sequence_logprobs_and_min",
    "max_token_log_ratio",
    "set_threads",
    "state_dict",
    "token_logprobs",
    "train_mle",
    "trainable_params",
    "vocab_size",
    "weighted_nll_step",
]
