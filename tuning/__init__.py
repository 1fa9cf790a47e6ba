"""Ray Tune sweeps over BaNEL runs and a study of positive-free stop rules (docs/tuning.md)."""
