"""The default task: an adversarial attack on a digit-addition transformer (paper §3.2).

* Solver (the model under attack): a small Llama trained on ``a+b=`` -> ``sum`` with operands of
  1..``max_digits`` digits and **no leading zeros**. It answers greedily. The default task's solver
  writes the sum least-significant digit first (``answer_order``), which makes it near perfect in
  distribution (0 errors in 200,000); ``solver_answers`` always returns normal digit order.
* Attacker prior p0: a small Llama pre-trained to generate the same query strings ``a+b=``,
  stopped early (``prior_steps``; 200 for the default task) so that it still pads an operand with
  a leading zero now and then: the rare, learnable feature the paper's BaNEL found.
* Reward (``reward``, one criterion for the task, its measurements and the docs: ``answer_is_wrong``):
  1 iff the query is well formed (two operands of 1..max_digits digit characters, leading zeros
  allowed) and the solver's greedy answer is not exactly the canonical decimal sum it was trained
  to write (``exact``, the default); ``numeric`` accepts any digit string with the right value.
* Variants: ``addition_attack_numeric`` (numeric reward, a looser 100-step prior),
  ``addition_attack_d8`` (the 8-digit default of 20 November - 2 December, base 1.3e-2) and
  ``addition_attack_v1`` (the task before December: 3,000-step prior, numeric reward).

Both models are trained deterministically (fixed seeds, fresh synthetic batches, one thread) and
cached as HF folders; checkpoints shipped in ``banel_ray/assets`` seed the cache so a first run
does not spend an hour training the solver. ``python -m banel_ray.tasks.addition --help`` rebuilds them.
"""

from banel_ray.tasks.addition.common import (
    ANSWER_ORDERS,
    ASSETS,
    BOS,
    CHARS,
    EOS,
    PAD,
    REWARDS,
    TOK,
    VOCAB,
    VOCAB_SIZE,
    answer_is_wrong,
    carry_chain,
    decode,
    encode,
    has_leading_zero,
    mode_of,
    padding_mode,
    parse_query,
    pattern_of,
    random_operands,
    weights_digest,
    written_answer,
)
from banel_ray.tasks.addition.task import (
    VARIANTS,
    AdditionAttack,
    AdditionAttackD8,
    AdditionAttackNumeric,
    AdditionAttackV1,
)

__all__ = [
    "ANSWER_ORDERS",
    "ASSETS",
    "BOS",
    "CHARS",
    "EOS",
    "PAD",
    "REWARDS",
    "TOK",
    "VARIANTS",
    "VOCAB",
    "VOCAB_SIZE",
    "AdditionAttack",
    "AdditionAttackD8",
    "AdditionAttackNumeric",
    "AdditionAttackV1",
    "answer_is_wrong",
    "carry_chain",
    "decode",
    "encode",
    "has_leading_zero",
    "mode_of",
    "padding_mode",
    "parse_query",
    "pattern_of",
    "random_operands",
    "weights_digest",
    "written_answer",
]
