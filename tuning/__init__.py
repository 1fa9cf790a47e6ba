"""Ray Tune sweeps over BaNEL runs and a study of positive-free stop rules (design.md §4)."""
