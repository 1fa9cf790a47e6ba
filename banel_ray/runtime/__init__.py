"""How a run executes: the ``Runner`` (one run's lifecycle), the actor runtime (Ray, or in
process) and the job that wires them. No algorithm here (that is ``methods``), and nothing below
imports it: the checkpoint store and the seed streams it uses are in ``core``."""
