"""The algorithms as pure code (no Ray): BaNEL's scores and filters (``banel``), policy-gradient
losses (``reinforce``), novelty bonuses (``bonuses``) and the shared statistics (``stats``)."""
