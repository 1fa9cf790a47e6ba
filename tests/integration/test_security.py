"""A default local run: nothing it starts listens beyond loopback (``ss -ltnp``, only the sockets of
the run's own processes: the machine is shared), and ``kill PID`` (SIGTERM) stops the run and
every process it started."""

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import alive, descendants, lease_pid, small_run_sets

SETS = small_run_sets(rounds=30, budget=1000)


def listeners(pids: set[int]) -> dict[str, str]:
    """{local address:port: process name} of the TCP sockets listening in ``pids``."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30).stdout
    found = {}
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            name = re.search(r'\(\("([^"]+)"', line)
            found[line.split()[3]] = name.group(1) if name else "?"
    return found


def is_loopback(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0].strip("[]").split("%")[0]
    if host == "*":
        return False
    ip = ipaddress.ip_address(host)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


@pytest.fixture(scope="module")
def observed_run(tmp_path_factory):
    """A local run watched with ss until its reward service holds the ledger (every role has
    started by then) and a few seconds more, then sent SIGTERM."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed: cannot list listening sockets")
    d = tmp_path_factory.mktemp("sec") / "run"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    args = [sys.executable, "-m", "banel_ray.run", *[a for s in [*SETS, f"run_dir={d}"] for a in ("--set", s)]]
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, tree, lines = {}, set(), []
    deadline, up = time.time() + 600, None
    while time.time() < deadline and p.poll() is None:
        tree |= descendants(p.pid)
        seen.update(listeners(tree))
        if up is None and lease_pid(d) in tree:
            up = time.time()
        if up is not None and time.time() > up + 10:
            break
        time.sleep(0.5)
    assert p.poll() is None, "the run ended before it was observed"
    tree |= descendants(p.pid)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    lines = out.splitlines()
    gone_by = time.time() + 30
    while time.time() < gone_by and any(alive(x) for x in tree):
        time.sleep(0.2)
    return {"listeners": seen, "tree": tree, "rc": p.returncode, "out": lines, "run_dir": d}


def test_a_default_local_run_listens_on_loopback_only(observed_run):
    seen = observed_run["listeners"]
    names = set(seen.values())
    assert {"gcs_server", "raylet"} <= names, seen  # Ray's own servers were seen, so the check bites
    wide = {a: n for a, n in seen.items() if not is_loopback(a)}
    assert not wide, f"listening beyond loopback: {wide}"


def test_sigterm_stops_the_run_and_every_process_it_started(observed_run):
    r = observed_run
    assert r["rc"] == 143, r["out"][-20:]
    assert any(f"--resume {r['run_dir']}" in line for line in r["out"]), r["out"][-5:]
    left = [x for x in r["tree"] if alive(x)]
    assert len(r["tree"]) > 3 and not left, f"still running: {left}"


def test_the_loopback_setting_is_put_back_when_the_run_stops_its_instance(monkeypatch):
    """In process (a notebook): a local run's instance is on loopback, and a later ray.init in the
    same process (say, to a real cluster) finds Ray's address selection as it was."""
    import ray
    from ray._private import ray_constants, services

    from banel_ray import config as C
    from banel_ray.runtime import job

    if ray.is_initialized():
        pytest.skip("Ray is already running in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(job.LOOPBACK_VAR, raising=False)
    before = ray_constants.ENABLE_RAY_CLUSTER
    started = job.init_ray(dict(C.defaults(), **{"ray.num_cpus": 1}))
    try:
        assert started and os.environ[job.LOOPBACK_VAR] == "0"
        assert services.get_node_ip_address() == "127.0.0.1"
        assert ray.util.get_node_ip_address() == "127.0.0.1"
    finally:
        job._stop_ray(started)
    assert not ray.is_initialized() and job.LOOPBACK_VAR not in os.environ
    assert ray_constants.ENABLE_RAY_CLUSTER == before
