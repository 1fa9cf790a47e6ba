"""Test tiers: ``tests/unit`` (pure and fast: no model trained for more than a moment, no process,
server or Ray started; at most 60 s in all on 2 cores) and ``tests/integration`` (what trains or
starts things: in-process runs, real Ray actors, a real vLLM engine, subprocess CLIs, local
servers, clocks). Opt-in slow tests are marked ``slow`` (run with ``-m slow``)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers.py, llm_fixtures.py

from llm_fixtures import tiny_llm  # noqa: E402,F401 - a session fixture shared by the LLM tests
