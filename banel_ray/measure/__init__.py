"""Rare success rates by importance sampling: the estimator (``importance``, pure numpy/scipy) and
the tilted proposals of a causal LM that feed it (``tilted``). Above ``models``, beside
``algorithms``: tasks use it to compute their rates."""
