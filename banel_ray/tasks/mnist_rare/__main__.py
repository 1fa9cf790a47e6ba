"""``python -m banel_ray.tasks.mnist_rare``: the prior's CLI (``cli.py``)."""

import sys

from banel_ray.tasks.mnist_rare.cli import main

if __name__ == "__main__":
    sys.exit(main())
