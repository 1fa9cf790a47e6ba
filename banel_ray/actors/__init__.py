"""The roles, as plain classes (no Ray in them; ``runtime.actors`` runs them on Ray or in process):
``sampler`` (draws from g_t), ``reward_service`` (the NRE budget and the ledger, around the reward
plug-in), ``evaluator`` (success-rate estimates, never NREs), ``trainers`` (BaNEL's negative model
and generator) and ``policy_trainer`` (the policy-gradient baselines)."""
