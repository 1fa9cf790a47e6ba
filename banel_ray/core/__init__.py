"""Foundations every layer may use and that use nothing of ``banel_ray``: the run folder
(``RunFolder``: its files, read and written in one place), the success-rate record (``Estimate``),
the checkpoint store, the named seed streams, the run-folder lock, crash points, the method
registry (names only) and ``ConfigError``. Nothing here imports a module outside ``core``
(``pyproject.toml``'s layers)."""
