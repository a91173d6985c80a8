"""A sweep on a real Ray cluster, not Ray's in-process mode: the test starts a head node and a worker node with
``ray start`` on 127.0.0.1 (one CPU each, free ports, their own temp dir), joins them by address, and checks that
the jobs ran on both nodes and wrote the same files as the local process pool.

The nodes run in their own sessions and are stopped by killing those sessions' processes, never with ``ray
stop``, which stops every Ray process of the user on the machine.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from interp.sweeps import Job, expand_grid, run_dir, run_jobs

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'ftmech[ray]'")

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # a private test cluster


def write_point(*, out_dir: Path, seed: int, scale: float) -> str | None:
    """Deterministic in its kwargs; returns the Ray node it ran on (None outside Ray)."""
    value = float(np.random.default_rng(seed).normal(size=100).sum() * scale)
    (out_dir / "result.json").write_text(json.dumps({"seed": seed, "value": value}))
    time.sleep(0.5)  # long enough that one node's single CPU cannot take every job
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _session_pids(session: int) -> list[int]:
    """The processes of a session (what ``ray start`` spawned, Ray's workers included)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it exited meanwhile
        if int(fields[3]) == session and fields[0] != "Z":  # a zombie is dead, only not yet waited for
            pids.append(int(stat.parent.name))
    return pids


def _stop_sessions(sessions: list[int], timeout: float = 10.0) -> None:
    """SIGKILL every process of ``sessions`` (the cluster is thrown away with its temp dir)."""
    deadline = time.time() + timeout
    while pids := [pid for session in sessions for pid in _session_pids(session)]:
        if time.time() > deadline:
            pytest.fail(f"Ray processes {pids} outlived SIGKILL for {timeout} s")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


@pytest.fixture
def ray_cluster(monkeypatch) -> Iterator[str]:
    """The address of a two-node cluster (a head and a worker node, one CPU each) on 127.0.0.1."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the test stops its Ray nodes through /proc (Linux only)")
    for name, value in RAY_ENV.items():
        monkeypatch.setenv(name, value)
    temp = tempfile.mkdtemp(prefix="ftray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    gcs, dashboard, agent_head, agent_worker = _free_ports(4)
    address = f"127.0.0.1:{gcs}"
    node = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--temp-dir", temp, "--block"]
    node += ["--disable-usage-stats", "--object-store-memory", str(100 * 2**20)]
    head = [
        *("--head", "--port", str(gcs), "--include-dashboard", "false", "--dashboard-port", str(dashboard)),
        *("--dashboard-agent-listen-port", str(agent_head)),
    ]
    worker = ["--address", address, "--dashboard-agent-listen-port", str(agent_worker)]
    nodes: list[subprocess.Popen] = []
    try:
        for args in (head, worker):
            with open(Path(temp) / f"node{len(nodes)}.log", "w") as log:
                nodes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "ray.scripts.scripts", "start", *args, *node],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        env={**os.environ, **RAY_ENV},
                    )
                )
            if args is head:
                _wait_for_port(gcs, nodes[0], temp)
        _wait_for_nodes(address, 2, temp)
        yield address
    finally:
        _stop_sessions([process.pid for process in nodes])
        for process in nodes:
            process.wait(timeout=10)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen, temp: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ray start --head exited with {process.returncode}: {_logs(temp)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"the Ray head did not listen on {port} within {timeout} s: {_logs(temp)}")


def _wait_for_nodes(address: str, n: int, temp: str, timeout: float = 40.0) -> None:
    ray.init(address=address, logging_level="warning")
    try:
        deadline = time.time() + timeout
        while sum(node["Alive"] for node in ray.nodes()) < n:
            if time.time() > deadline:
                pytest.fail(f"{n} Ray nodes did not join within {timeout} s: {_logs(temp)}")
            time.sleep(0.3)
    finally:
        ray.shutdown()


def _logs(temp: str) -> str:
    return " | ".join(p.read_text()[-400:] for p in sorted(Path(temp).glob("node*.log")))


def test_a_sweep_on_a_two_node_ray_cluster_writes_the_local_pools_files(ray_cluster, tmp_path):
    outputs, nodes = {}, {}
    for executor, address in (("local", None), ("ray", ray_cluster)):
        root = tmp_path / executor
        jobs = [
            Job(
                key=f"p{point['seed']}",
                fn=f"{__name__}:write_point",
                out_dir=run_dir(root, "point", point),
                kwargs=point,
            )
            for point in expand_grid({"seed": [0, 1, 2, 3], "scale": [0.5]})
        ]
        results = run_jobs(jobs, workers=1, executor=executor, ray_address=address, progress=False)
        assert [r.status for r in results] == ["ok"] * 4, [r.error for r in results]
        outputs[executor] = {
            str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("result.json"))
        }
        nodes[executor] = {r.value for r in results}
    assert len(outputs["local"]) == 4 and outputs["local"] == outputs["ray"]
    assert nodes["local"] == {None} and len(nodes["ray"]) == 2  # both nodes ran jobs
    assert not ray.is_initialized()  # the sweep left the cluster it joined
