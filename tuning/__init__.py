"""Ray Tune sweeps over BaNEL runs, a study of positive-free stop rules (docs/tuning.md) and the
coverage study of the importance-sampling estimator against exact rates (``mnist_coverage``, docs/mnist.md)."""
