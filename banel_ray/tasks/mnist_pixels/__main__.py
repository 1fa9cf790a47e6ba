"""``python -m banel_ray.tasks.mnist_pixels``: the asset-building CLI (``cli.py``)."""

import sys

from banel_ray.tasks.mnist_pixels.cli import main

if __name__ == "__main__":
    sys.exit(main())
