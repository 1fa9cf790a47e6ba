"""The method registry: name -> (where its class lives, one line for ``--help``).

Adding a method is one file under ``banel_ray/methods/`` and one line here. The classes are
imported only when a run asks for them, so this table is cheap to read (config validation does).
It holds names and strings only, so it sits in ``core``, below ``config`` (which checks a method's
name) and ``methods`` (whose ``get`` imports the class): no import circle between the two.
"""

METHODS: dict[str, tuple[str, str]] = {
    "banel": ("banel_ray.methods.banel:BanelDistill", "BaNEL with distillation, the paper's Algorithm 2"),
    "banel_sequential": (
        "banel_ray.methods.banel:BanelSequential",
        "BaNEL's Algorithm 1: regions kept, rejection before paying",
    ),
    "random": ("banel_ray.methods.random_search:RandomSearch", "best of budget from the prior"),
    "reinforce": ("banel_ray.methods.policy_gradient:Reinforce", "REINFORCE on the task reward"),
    "rnd": ("banel_ray.methods.policy_gradient:ReinforceRnd", "REINFORCE + RND novelty bonus"),
    "count": ("banel_ray.methods.policy_gradient:ReinforceCount", "REINFORCE + SimHash count bonus"),
    "nsr": ("banel_ray.methods.nsr:NegativeSampleReinforcement", "negative-sample reinforcement (Zhu et al. 2025)"),
    "w_reinforce": (
        "banel_ray.methods.w_reinforce:WeightedReinforce",
        "W-REINFORCE: NSR + successes at weight wr.pos_weight",
    ),
    "npo": ("banel_ray.methods.npo:NegativePreferenceOptimization", "NPO: bounded NSR (Zhang et al. 2024)"),
}
