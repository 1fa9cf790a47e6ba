"""How a run executes: the ``Runner`` (one run's lifecycle), the actor runtime (Ray, or in
process), checkpoints and the named seed streams. No algorithm here: that is ``methods``."""
