"""The one argument-parser helper every command uses: bad arguments are one line and exit 2."""

from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
    """``argparse`` with the project's error convention (no usage dump, no traceback)."""

    def __init__(self, *a, **k):
        k.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*a, **k)

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def fail(message: str) -> int:
    """Print a one-line error; the exit code for bad input."""
    print(f"error: {message}", file=sys.stderr)
    return 2
