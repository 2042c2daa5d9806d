"""The two-node harness itself: a Dask task and a Ray task really run on node B, B sees
none of the driver's files but reaches the S3 server on A, the host reaches neither
node, and nothing is left once the block ends."""

from __future__ import annotations

import errno
import json
import socket
import time

import psutil
import pytest
from netns import DASK_PORT, RAY_PORT, S3_PORT, netns_list, two_nodes

# The driver, in namespace A: one Dask task on B's worker, one Ray task pinned to node B.
PROBE = r"""
import json, os, socket, sys
marker, bucket, b, dask_worker_b, hidden = sys.argv[1:6]
hidden = json.loads(hidden)
out = {}

import s3fs
s3 = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["S3_ENDPOINT_URL"]})
s3.mkdir(bucket)

def on_the_node(marker, hidden):
    import os, socket
    import s3fs
    from distributed import get_worker
    # the node's own credentials and endpoint: nothing of it travels with the task
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["S3_ENDPOINT_URL"]})
    return {
        "worker": get_worker().address,
        "hostname": socket.gethostname(),
        "cwd": os.getcwd(),
        "endpoint": os.environ["S3_ENDPOINT_URL"],
        "marker_visible": os.path.exists(marker),
        "hidden": {path: os.listdir(path) for path in hidden},
        "buckets": fs.ls(""),
    }

from distributed import Client
with Client(sys.argv[6], timeout="30s") as client:
    on_a = client.submit(on_the_node, marker, hidden, workers=[sys.argv[7]], pure=False).result(timeout=60)
    on_b = client.submit(on_the_node, marker, hidden, workers=[dask_worker_b], pure=False).result(timeout=60)
out["dask"] = {"a": on_a, "b": on_b}

# B's worker is directly reachable from A without any gateway
host, port = dask_worker_b.removeprefix("tcp://").rsplit(":", 1)
with socket.socket() as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_DONTROUTE, 1)
    sock.settimeout(5)
    sock.connect((host, int(port)))
    out["a_reaches_b"] = True

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=sys.argv[8], log_to_driver=False, logging_level="WARNING")
node_b = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == b]

@ray.remote(num_cpus=1)
def where(marker):
    import os
    return {
        "node": ray.get_runtime_context().get_node_id(),
        "ip": ray.util.get_node_ip_address(),
        "cwd": os.getcwd(),
        "endpoint": os.environ.get("S3_ENDPOINT_URL"),
        "marker_visible": os.path.exists(marker),
    }

pinned = where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_b[0], soft=False))
out["ray"] = {"node_b": node_b, "task": ray.get(pinned.remote(marker), timeout=60)}
ray.shutdown()
print(json.dumps(out))
"""

# The Dask workers the scheduler knows, once it has had a moment to notice a lost one.
WORKERS = r"""
import json, sys, time
from distributed import Client
with Client(sys.argv[1], timeout="30s") as client:
    deadline = time.monotonic() + 30
    while len(client.scheduler_info(n_workers=-1)["workers"]) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    print(json.dumps(sorted(client.scheduler_info(n_workers=-1)["workers"])))
"""


def _connect_without_gateway(host: str, port: int) -> int:
    """Connect from this (the host's) namespace, to directly connected networks only
    (SO_DONTROUTE: nothing is sent to the default gateway); 0 or the errno."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_DONTROUTE, 1)
        sock.settimeout(2)
        try:
            sock.connect((host, port))
        except TimeoutError:
            return errno.ETIMEDOUT
        except OSError as exc:
            return exc.errno or -1
        return 0


@pytest.mark.timeout(240)
def test_two_nodes_harness(tmp_path):
    marker = tmp_path / "driver-only.txt"
    marker.write_text("only the driver's machine has this file\n")
    t0 = time.monotonic()
    with two_nodes(tmp_path) as cluster:
        started = time.monotonic() - t0
        names = {cluster.ns_a, cluster.ns_b}
        assert names <= set(netns_list())
        assert cluster.ray_nodes.keys() == cluster.dask_workers.keys() == {"a", "b"}

        t1 = time.monotonic()
        probe = cluster.python_a(
            PROBE, marker, "probe-bucket", cluster.b, cluster.dask_workers["b"], json.dumps(cluster.hidden),
            cluster.dask_address, cluster.dask_workers["a"], cluster.ray_address,
            cwd=tmp_path, timeout=180,
        )  # fmt: skip
        probed = time.monotonic() - t1
        assert probe.returncode == 0, probe.stderr[-4000:]
        out = json.loads(probe.stdout.strip().splitlines()[-1])

        # (a) the Dask task ran on B's worker: B's address, B's own folder, no driver file, S3 on A reachable
        on_b = out["dask"]["b"]
        assert on_b["worker"] == cluster.dask_workers["b"]
        assert on_b["worker"].removeprefix("tcp://").rsplit(":", 1)[0] == cluster.b
        assert on_b["hostname"] == socket.gethostname()  # same kernel: only the network tells the nodes apart
        assert on_b["cwd"] == "/tmp/node-b"
        assert on_b["marker_visible"] is False
        assert on_b["hidden"] and all(entries == [] for entries in on_b["hidden"].values()), on_b["hidden"]
        assert on_b["endpoint"] == cluster.s3_endpoint == f"http://{cluster.a}:{S3_PORT}"
        assert "probe-bucket" in on_b["buckets"]
        # ... and the head's worker is a plain process on the host's files
        on_a = out["dask"]["a"]
        assert on_a["worker"].removeprefix("tcp://").rsplit(":", 1)[0] == cluster.a
        assert on_a["marker_visible"] is True
        assert out["a_reaches_b"] is True

        # (b) the Ray task pinned to B ran on B
        assert out["ray"]["node_b"] == [cluster.ray_nodes["b"]]
        task = out["ray"]["task"]
        assert task["node"] == cluster.ray_nodes["b"] and task["ip"] == cluster.b
        assert task["marker_visible"] is False
        assert task["endpoint"] == cluster.s3_endpoint
        assert task["cwd"].startswith("/tmp/")  # B's own /tmp

        # (c) the host's namespace has neither address and reaches neither node (no link, no route of ours)
        host_addresses = psutil.net_if_addrs()
        assert not [
            a.address for addrs in host_addresses.values() for a in addrs if a.address in (cluster.a, cluster.b)
        ]
        assert not set(cluster.veths) & set(host_addresses)
        worker_b_port = int(cluster.dask_workers["b"].rsplit(":", 1)[1])
        for host, port in (
            (cluster.a, S3_PORT),
            (cluster.a, DASK_PORT),
            (cluster.a, RAY_PORT),
            (cluster.b, worker_b_port),
        ):
            assert _connect_without_gateway(host, port) in (errno.ENETUNREACH, errno.EHOSTUNREACH), (host, port)

        # what listens where: Dask and S3 on the node's address; Ray's wildcard sockets reach only the namespace
        listeners = cluster.listeners()
        for node, ns, ip in (("a", cluster.ns_a, cluster.a), ("b", cluster.ns_b, cluster.b)):
            assert {x for x in cluster.addresses(node) if not x.startswith("fe80:")} == {"127.0.0.1", "::1", ip}
            mine = [x for x in listeners if x.namespace == ns]
            assert mine, f"nothing listens in {ns}"
            for x in mine:
                ray_process = x.process in ("gcs_server", "raylet") or x.process.startswith("ray::")
                assert x.ip == ip or (x.wildcard and ray_process), x
        table = "\n".join(f"  {x.namespace[:10]} {x.proto} {x.ip}:{x.port} {x.process}" for x in listeners)
        print(f"listening:\n{table}")

        pids = {"a": cluster.pids_a(), "b": cluster.pids_b()}
        procs = [psutil.Process(pid) for node_pids in pids.values() for pid in node_pids]
        assert len(pids["b"]) >= 5, pids  # mount anchor, raylet + agents, Dask nanny + worker

        # node B dies at once (all its processes, Ray's included); the head carries on alone
        killed = cluster.kill_node_b()
        assert set(pids["b"]) <= set(killed) and cluster.pids_b() == []
        assert not [p.pid for p in procs if p.pid in killed and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        left = cluster.python_a(WORKERS, cluster.dask_address, cwd=tmp_path, timeout=60)
        assert left.returncode == 0, left.stderr[-2000:]
        assert json.loads(left.stdout.strip().splitlines()[-1]) == [cluster.dask_workers["a"]]
        assert set(cluster.pids_a()) >= set(pids["a"]) - {p.pid for p in procs if not p.is_running()}
    total = time.monotonic() - t0

    # everything is gone: the namespaces (and with them the veth pair) and every process
    assert not names & set(netns_list())
    assert not [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not cluster.ray_tmp.exists()
    print(f"timings: start {started:.1f} s, probe {probed:.1f} s, total {total:.1f} s; {cluster.timings}")
