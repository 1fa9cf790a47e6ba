"""``python -m banel_ray.tasks.mnist``: the asset-building CLI (``cli.py``)."""

import sys

from banel_ray.tasks.mnist.cli import main

if __name__ == "__main__":
    sys.exit(main())
