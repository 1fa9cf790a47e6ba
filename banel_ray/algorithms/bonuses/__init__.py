"""Novelty bonuses for the policy-gradient baselines: RND and SimHash counts on one-hot features."""
