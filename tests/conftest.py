"""Test tiers: ``tests/unit`` (no Ray: pure code and in-process actors, seconds) and
``tests/integration`` (real Ray actors, a real vLLM engine, subprocess CLIs). Opt-in slow tests
are marked ``slow`` (run with ``-m slow``)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers.py, llm_fixtures.py

from llm_fixtures import tiny_llm  # noqa: E402,F401 - a session fixture shared by the LLM tests
