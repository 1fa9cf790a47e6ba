"""GSM-Hard end to end on real Ray actors and a real vLLM engine, with the tiny offline LLM and a
LoRA negative model: budget, ledger, versions, and base/final success estimates with intervals."""

import json

import pytest
import ray

from banel_ray import config as C
from banel_ray import report
from banel_ray.runtime.job import run


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


def test_gsm_hard_run_with_vllm_and_lora_negatives(tmp_path, tiny_llm):
    rd = tmp_path / "gsm"
    cfg = C.load(
        None,
        [
            "task=gsm_hard",
            f"task_options.model={tiny_llm}",
            "task_options.question=205",
            "task_options.max_new_tokens=16",
            "rounds=2",
            "budget=24",
            "samples_per_round=12",
            "pool_size=16",
            "eval.samples=24",
            "filter.factor=2",
            "negative.epochs=2",
            "negative.batch_size=4",
            "negative.lora.r=4",
            "generator.epochs=1",
            "generator.batch_size=4",
            "sampler.kv_cache_mb=16",
            f"run_dir={rd}",
        ],
    )
    s = run(cfg, rd)
    hist = report.read_metrics(rd)
    assert s["nres"] == 24 and [m["nres"] for m in hist] == [12, 24]
    assert [m["sampler_versions"] for m in hist] == [[1], [2]]
    assert all(0 < m["neg_trainable_params"] < 100_000 for m in hist)  # LoRA, not the full model
    assert all(m["kept"] == 8 for m in hist)  # top 1/f of the pool
    assert all("round_finished" in m and "round_answered" in m for m in hist)
    summary = json.loads((rd / "summary.json").read_text())
    for k in ("base", "final"):
        e = summary[k]
        assert e["n"] == 24 and 0 <= e["lo"] <= e["rate"] <= e["hi"] <= 1 and e["hi"] > 0
