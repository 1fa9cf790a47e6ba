"""Foundations every layer may use and that use nothing of ``banel_ray``: the checkpoint store,
the named seed streams, the run-folder lock, crash points, the method registry (names only) and
``ConfigError``. Nothing here imports a module outside ``core`` (``pyproject.toml``'s layers)."""
