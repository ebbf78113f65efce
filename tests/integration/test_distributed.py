"""Distributed jobs on 2 nodes, on the local provider and on a real 3-node Ray cluster: PyTorch DDP
(Gloo, CPU) against a single process, TensorFlow's TF_CONFIG and host lists, an mpirun job; then, on
Ray, a node killed mid-job and a server restarted mid-job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from batchai.providers.ray_cluster import name_prefix
from tests.conftest import SUB, Server, assert_nothing_left, free_port, leftovers, process_gone, url, wait_for
from tests.integration.jobkit import Bench, make_bench, outputs, write_script
from tests.raykit import RAY_ENV, RayCluster, machine_apart

DDP = """
import json, os, sys
import torch
import torch.distributed as dist

world = int(os.environ.get("WORLD_SIZE", "1"))
rank = int(os.environ.get("RANK", "0"))
generator = torch.Generator().manual_seed(0)
x = torch.randn(64, 5, dtype=torch.float64, generator=generator)
noise = 0.1 * torch.randn(64, 1, dtype=torch.float64, generator=generator)
y = x @ torch.arange(1.0, 6.0, dtype=torch.float64).unsqueeze(1) + noise
torch.manual_seed(1)
model = torch.nn.Linear(5, 1, dtype=torch.float64)
if world > 1:
    init = os.environ["AZ_BATCHAI_PYTORCH_INIT_METHOD"]
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    model = torch.nn.parallel.DistributedDataParallel(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
xs, ys = x[rank::world], y[rank::world]
for step in range(30):
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(xs), ys)
    loss.backward()
    optimizer.step()
with torch.no_grad():
    final = torch.nn.functional.mse_loss(model(x), y).item()
keys = ["MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "AZ_BATCHAI_TASK_INDEX"]
keys += ["AZ_BATCHAI_NODE_NAME", "AZ_BATCHAI_NUM_GPUS", "CUDA_VISIBLE_DEVICES"]
seen = {k: os.environ.get(k) for k in keys}
if os.environ.get("AZ_BATCHAI_MPI_HOST_FILE"):
    seen["hosts"] = open(os.environ["AZ_BATCHAI_MPI_HOST_FILE"]).read()
print(f"rank {rank} of {world} loss {final!r}", json.dumps(seen))
if rank == 0:
    with open(os.path.join(os.environ["AZ_BATCHAI_OUTPUT_OUT"], "loss.json"), "w") as f:
        json.dump({"loss": final, "world": world}, f)
if world > 1:
    dist.destroy_process_group()
"""

TF = """
import json, os, socket, sys, time

config = json.loads(os.environ["TF_CONFIG"])
task = config["task"]
host, port = config["cluster"][task["type"]][task["index"]].rsplit(":", 1)
if task["type"] == "ps":
    server = socket.create_server((host, int(port)))
    while True:  # a parameter server serves until batchai stops it
        connection, _ = server.accept()
        connection.sendall(f"ps {task['index']}".encode())
        connection.close()
replies = []
for address in config["cluster"]["ps"]:
    ps_host, ps_port = address.rsplit(":", 1)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((ps_host, int(ps_port)), timeout=5) as connection:
                replies.append(connection.recv(100).decode())
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
result = {
    "argv": sys.argv[1:],
    "config": config,
    "ps_hosts": os.environ["AZ_BATCHAI_PS_HOSTS"],
    "worker_hosts": os.environ["AZ_BATCHAI_WORKER_HOSTS"],
    "task_index": os.environ["AZ_BATCHAI_TASK_INDEX"],
    "replies": replies,
}
with open(os.path.join(os.environ["AZ_BATCHAI_OUTPUT_OUT"], f"worker-{task['index']}.json"), "w") as f:
    json.dump(result, f)
print("worker", task["index"], "done")
"""

ALLREDUCE = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size, value, sum;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    value = rank + 1;
    MPI_Allreduce(&value, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("rank %d of %d sum %d\n", rank, size, sum);
    MPI_Finalize();
    return 0;
}
"""

GATED = "import os, pathlib, time\nwhile not pathlib.Path(os.environ['GATE']).exists():\n    time.sleep(0.05)\n"


@pytest.fixture(scope="module")
def ray_nodes() -> Iterator[RayCluster]:
    cluster = RayCluster(3)
    try:
        yield cluster
    finally:
        cluster.shutdown()


def start_server(home: Path, env: dict[str, str]) -> Server:
    home.mkdir()
    server = Server(home=home, port=free_port(), env=env)
    server.start()
    return server


@pytest.fixture(params=["local", "ray"])
def dist(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    """A 2-node cluster 'c' on the local provider or on the Ray cluster."""
    env: dict[str, str] = {}
    ray: RayCluster | None = None
    if request.param == "ray":
        ray = request.getfixturevalue("ray_nodes")
        env = {**RAY_ENV, "BATCHAI_RAY_ADDRESS": ray.address}
    server = start_server(tmp_path / "home", env)
    try:
        bench = make_bench(server, "dist.rg", tmp_path)
        bench.cluster(target=2, option="terminate")
        bench.wait_nodes(idle=2, timeout=90)
        yield bench
    finally:
        server.stop()
        if ray is not None:
            ray.kill_agents(name_prefix(server.home))
            wait_for(lambda: not leftovers(server.home), timeout=15, message="the agents' processes to end")
        assert_nothing_left(server.home)


def script(bench: Bench, name: str, text: str) -> Path:
    return write_script(bench, text, name)


def out_dir(bench: Bench, name: str) -> Path:
    return bench.tmp / "out" / str(bench.job(name)["jobOutputDirectoryPathSegment"]) / "outputs"


GLOO = [{"name": "GLOO_SOCKET_IFNAME", "value": "lo"}]


def test_pytorch_ddp_matches_a_single_process(dist: Bench) -> None:
    ddp = script(dist, "ddp.py", DDP)
    settings = {"pythonScriptFilePath": str(ddp), "communicationBackend": "gloo"}
    dist.submit(
        "ddp", node_count=2, pyTorchSettings=settings, outputDirectories=outputs(dist), environmentVariables=GLOO
    )
    dist.submit("single", pyTorchSettings={"pythonScriptFilePath": str(ddp)}, outputDirectories=outputs(dist))
    for name in ("ddp", "single"):
        props = dist.wait_job(name, timeout=120)
        assert props["executionState"] == "succeeded", props
    both = json.loads((out_dir(dist, "ddp") / "loss.json").read_text())
    alone = json.loads((out_dir(dist, "single") / "loss.json").read_text())
    assert both["world"] == 2 and alone["world"] == 1
    assert abs(both["loss"] - alone["loss"]) < 1e-9 * max(1.0, alone["loss"]), (both, alone)

    logs = dist.stdouterr("ddp")
    # Each rank's output in its own file, named by its rank as Batch AI's PyTorch recipes stream it.
    master, worker = (logs / "stdout-0.txt").read_text(), (logs / "stdout-1.txt").read_text()
    assert not (logs / "stdout.txt").exists()
    assert master.startswith("rank 0 of 2") and worker.startswith("rank 1 of 2")
    env0, env1 = (json.loads(text.split(" ", 6)[6]) for text in (master, worker))
    assert env0["MASTER_ADDR"] == env1["MASTER_ADDR"] == "127.0.0.1" and env0["MASTER_PORT"] == env1["MASTER_PORT"]
    assert (env0["RANK"], env1["RANK"], env0["WORLD_SIZE"], env0["LOCAL_RANK"], env1["LOCAL_RANK"]) == (
        "0",
        "1",
        "2",
        "0",
        "0",
    )
    assert {env0["AZ_BATCHAI_NODE_NAME"], env1["AZ_BATCHAI_NODE_NAME"]} == {"node-0", "node-1"}
    # Every process of a distributed job has the MPI host file (Batch AI gave it to all jobs' processes);
    # the single-process job runs without one, as a plain command.
    assert env0["hosts"] == env1["hosts"] == "127.0.0.1 slots=2\n"
    assert "hosts" not in json.loads((dist.stdouterr("single") / "stdout.txt").read_text().split(" ", 6)[6])
    # A worker's file streams like stdout.txt does.
    where = ("-g", "dist.rg", "-w", "ws", "-e", "exp", "-j", "ddp")
    stream = dist.server.cli("job", "file", "stream", *where, "-f", "stdout-1.txt")
    assert stream.code == 0 and "rank 1 of 2" in stream.stdout, stream.stderr


def test_tensorflow_gets_its_cluster_spec(dist: Bench) -> None:
    tf = script(dist, "tf.py", TF)
    settings = {
        "pythonScriptFilePath": str(tf),
        # As Batch AI's recipes: the master's arguments go to worker 0, the workers' to the others.
        "masterCommandLineArgs": "--job_name=worker --task_index=$AZ_BATCHAI_TASK_INDEX --chief",
        "workerCommandLineArgs": "--job_name=worker --task_index=$AZ_BATCHAI_TASK_INDEX",
        "parameterServerCommandLineArgs": "--job_name=ps --task_index=$AZ_BATCHAI_TASK_INDEX",
        "workerCount": 2,
        "parameterServerCount": 1,
    }
    dist.submit("tf", node_count=2, tensorFlowSettings=settings, outputDirectories=outputs(dist))
    props = dist.wait_job("tf", timeout=90)
    assert props["executionState"] == "succeeded", props
    results = [json.loads((out_dir(dist, "tf") / f"worker-{i}.json").read_text()) for i in (0, 1)]
    cluster = results[0]["config"]["cluster"]
    assert len(cluster["worker"]) == 2 and len(cluster["ps"]) == 1
    assert len({*cluster["worker"], *cluster["ps"]}) == 3  # every process has its own address
    for index, result in enumerate(results):
        assert result["config"]["cluster"] == cluster
        assert result["config"]["task"] == {"type": "worker", "index": index}
        assert result["worker_hosts"] == ",".join(cluster["worker"])
        assert result["ps_hosts"] == ",".join(cluster["ps"])
        assert result["task_index"] == str(index)
        assert result["argv"] == ["--job_name=worker", f"--task_index={index}", *(["--chief"] if index == 0 else [])]
        assert result["replies"] == ["ps 0"]  # it reached the parameter server at its address
    logs = dist.stdouterr("tf")
    # Named as Batch AI's TensorFlow recipes stream them: the master is worker 0.
    names = {p.name for p in logs.iterdir()}
    assert {"stdout-wk-0.txt", "stdout-wk-1.txt", "stdout-ps-0.txt"} <= names and "stdout.txt" not in names
    assert (logs / "stdout-wk-0.txt").read_text() == "worker 0 done\n"


def test_local_nodes_share_the_host_s_gpus_and_mpi_ranks_see_the_job_s(tmp_path: Path) -> None:
    """The GPUs are faked (there are none here): an ``nvidia-smi`` on the server's PATH that lists four."""
    tools = tmp_path / "tools"
    tools.mkdir()
    fake = tools / "nvidia-smi"
    fake.write_text("#!/bin/sh\n" + "".join(f"echo 'GPU {i}: Fake GPU (UUID: GPU-{i})'\n" for i in range(4)))
    fake.chmod(0o755)
    server = start_server(tmp_path / "home", {"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"})
    try:
        bench = make_bench(server, "gpu.rg", tmp_path)
        bench.cluster(target=2, option="terminate")
        bench.wait_nodes(idle=2, timeout=90)
        show = 'echo "$AZ_BATCHAI_NODE_NAME $AZ_BATCHAI_NUM_GPUS $CUDA_VISIBLE_DEVICES"'
        # A process on each node (Caffe2 on two nodes): each node has its half of the host's GPUs.
        each = script(bench, "each.py", f"import os; os.system({show!r})\n")
        bench.submit("each", node_count=2, caffe2Settings={"pythonScriptFilePath": str(each)})
        assert bench.wait_job("each", timeout=60)["executionState"] == "succeeded"
        logs = bench.stdouterr("each")
        seen = {(logs / f"stdout-{n}.txt").read_text().strip() for n in (0, 1)}
        assert seen == {"node-0 2 0,1", "node-1 2 2,3"}
        # mpirun starts the ranks of both nodes here: a rank's local rank indexes the job's GPUs, node 0's
        # ranks node 0's and node 1's ranks node 1's (one rank per GPU, as Horovod runs).
        rank = 'echo "$OMPI_COMM_WORLD_RANK $OMPI_COMM_WORLD_LOCAL_RANK $CUDA_VISIBLE_DEVICES"'
        bench.submit("ranks", node_count=2, customMpiSettings={"commandLine": rank, "processCount": 4})
        props = bench.wait_job("ranks", timeout=60)
        assert props["executionState"] == "succeeded", props["executionInfo"]
        lines = sorted((bench.stdouterr("ranks") / "stdout.txt").read_text().split("\n")[:-1])
        gpu_of = {int(r): devices.split(",")[int(local)] for r, local, devices in (line.split() for line in lines)}
        assert gpu_of == {0: "0", 1: "1", 2: "2", 3: "3"}
    finally:
        server.stop()


def test_mpi_job_runs_its_processes_through_mpirun(dist: Bench) -> None:
    source = script(dist, "allreduce.c", ALLREDUCE)
    binary = dist.tmp / "scripts" / "allreduce"
    subprocess.run([shutil.which("mpicc") or "mpicc", "-o", str(binary), str(source)], check=True)
    command = f'echo "hosts: $(tr "\\n" " " < $AZ_BATCHAI_MPI_HOST_FILE)"; exec {binary}'
    dist.submit("mpi", node_count=2, customMpiSettings={"commandLine": command, "processCount": 2})
    props = dist.wait_job("mpi", timeout=90)
    assert props["executionState"] == "succeeded", props
    out = (dist.stdouterr("mpi") / "stdout.txt").read_text()
    assert "rank 0 of 2 sum 3" in out and "rank 1 of 2 sum 3" in out, out
    assert "hosts: 127.0.0.1 slots=2" in out, out


# One write per line: the ranks' unbuffered output meets in mpirun's stdout.
RANKS = """
import os, sys
rank, size = os.environ["OMPI_COMM_WORLD_RANK"], os.environ["OMPI_COMM_WORLD_SIZE"]
sys.stdout.write(f"rank {rank} of {size}\\n")
"""


@pytest.mark.parametrize("dist", ["local"], indirect=True)  # the launch is the MPI test's, run on Ray above
@pytest.mark.parametrize("toolkit", ["horovodSettings", "cntkSettings", "chainerSettings"])
def test_python_toolkits_with_many_processes_run_through_mpirun(dist: Bench, toolkit: str) -> None:
    ranks = script(dist, "ranks.py", RANKS)
    settings: dict[str, Any] = {toolkit: {"pythonScriptFilePath": str(ranks), "processCount": 2}}
    dist.submit("py", node_count=2, **settings)
    props = dist.wait_job("py", timeout=90)
    assert props["executionState"] == "succeeded", props
    out = (dist.stdouterr("py") / "stdout.txt").read_text()
    assert sorted(out.splitlines()) == ["rank 0 of 2", "rank 1 of 2"], out


def test_job_preparation_runs_once_per_node(dist: Bench) -> None:
    counter = dist.tmp / "prepared"
    counter.mkdir()
    ddp = script(dist, "ddp.py", DDP)
    dist.submit(
        "four",
        node_count=2,
        pyTorchSettings={"pythonScriptFilePath": str(ddp), "processCount": 4, "communicationBackend": "gloo"},
        jobPreparation={"commandLine": f"touch {counter}/$AZ_BATCHAI_NODE_NAME; sleep 0.5"},
        outputDirectories=outputs(dist),
        environmentVariables=GLOO,
    )
    props = dist.wait_job("four", timeout=120)
    assert props["executionState"] == "succeeded", props
    assert sorted(p.name for p in counter.iterdir()) == ["node-0", "node-1"]
    logs = dist.stdouterr("four")
    ranks = {name: (logs / name).read_text().split(" loss")[0] for name in ("stdout-0.txt", "stdout-3.txt")}
    assert ranks == {"stdout-0.txt": "rank 0 of 4", "stdout-3.txt": "rank 3 of 4"}
    local = json.loads((logs / "stdout-3.txt").read_text().split(" ", 6)[6])
    assert local["LOCAL_RANK"] == "1" and local["AZ_BATCHAI_NODE_NAME"] == "node-1"
    # A Ray machine's GPUs (two, as Ray counts them) are its node's; this host has none for local nodes.
    on_ray = "BATCHAI_RAY_ADDRESS" in dist.server.env
    assert (local["AZ_BATCHAI_NUM_GPUS"], local["CUDA_VISIBLE_DEVICES"]) == (("2", "0,1") if on_ray else ("0", ""))


def test_mpirun_starts_once_every_node_is_prepared(dist: Bench) -> None:
    counter = dist.tmp / "prepared"
    counter.mkdir()
    dist.submit(
        "mpiprep",
        node_count=2,
        # Every rank checks both nodes' preparation; the second node's takes a while.
        customMpiSettings={"commandLine": f"test -e {counter}/node-0 -a -e {counter}/node-1", "processCount": 2},
        jobPreparation={
            "commandLine": f"[ $AZ_BATCHAI_NODE_NAME = node-0 ] || sleep 1; touch {counter}/$AZ_BATCHAI_NODE_NAME; "
            "echo prepared $AZ_BATCHAI_NODE_NAME"
        },
    )
    props = dist.wait_job("mpiprep", timeout=90)
    assert props["executionState"] == "succeeded", props
    logs = dist.stdouterr("mpiprep")
    assert (logs / "stdout-job_prep.txt").read_text() == "prepared node-0\n"
    assert (logs / "stdout-job_prep-node-1.txt").read_text() == "prepared node-1\n"
    assert not (logs / "stdout-node-1.txt").exists()  # the helper process writes only the preparation's output


@pytest.mark.parametrize("dist", ["local"], indirect=True)
def test_a_node_whose_preparation_fails_fails_the_mpi_job(dist: Bench) -> None:
    dist.submit(
        "badprep",
        node_count=2,
        customMpiSettings={"commandLine": "true", "processCount": 2},
        jobPreparation={"commandLine": "[ $AZ_BATCHAI_NODE_NAME = node-0 ] || { echo no disk >&2; exit 3; }"},
    )
    props = dist.wait_job("badprep", timeout=90)
    assert props["executionState"] == "failed" and props["executionInfo"]["exitCode"] == 3, props
    error = props["executionInfo"]["errors"][0]
    # Which task reports it first varies (the helper, or mpirun that waited for it): either names the node.
    assert "job preparation on node-1 failed with exit code 3" in error["message"], error
    assert (dist.stdouterr("badprep") / "stderr-job_prep-node-1.txt").read_text().startswith("no disk\n")


def test_a_terminated_job_reports_the_exit_code_of_its_stopped_process(dist: Bench) -> None:
    """A job terminated while it runs ends with its process's exit code, 128 + SIGTERM, on Ray as on the local
    provider: the node's agent stops a process it started itself, and must not lose that process's exit status
    (reaped behind its Popen, it read as 0)."""
    started = dist.tmp / "started"
    dist.submit("long", customToolkitSettings={"commandLine": f"echo $$ > {started}; exec sleep 600"})
    wait_for(lambda: started.exists() and started.read_text().strip(), message="the job's process to start")
    dist.terminate("long")
    props = dist.wait_job("long", timeout=60)
    assert props["executionState"] == "failed"
    assert props["executionInfo"]["errors"][0]["code"] == "JobTerminated"
    assert props["executionInfo"]["exitCode"] == 143, props["executionInfo"]


def test_a_job_s_nodes_are_free_for_the_next_job_only_once_what_it_left_running_is_gone(dist: Bench) -> None:
    """What a job leaves running that ignores SIGTERM is killed after the grace period; the next job on its nodes
    starts only once that is gone (dead and reaped), on Ray as on the local provider: it must have the nodes
    (their GPUs, their memory) to itself."""
    marker = dist.tmp / "lingering.pid"
    dist.submit(
        "first",
        node_count=2,
        customToolkitSettings={
            "commandLine": f"(trap '' TERM; echo $BASHPID > {marker}; exec sleep 300) & "
            f"while [ ! -s {marker} ]; do sleep 0.01; done"
        },
    )
    dist.submit("second", node_count=2, customToolkitSettings={"commandLine": f"! kill -0 $(cat {marker}) 2>/dev/null"})
    first, second = dist.wait_job("first", timeout=60), dist.wait_job("second", timeout=60)
    assert first["executionState"] == "succeeded", first.get("executionInfo")
    assert second["executionState"] == "succeeded", second.get("executionInfo")
    assert process_gone(int(marker.read_text()))


# -- Ray only: faults and restarts -----------------------------------------------------------------------
def test_a_command_runs_on_the_node_it_names(dist: Bench, service_port: int) -> None:
    """execOnNode (az's 'node exec') through the node's provider: the launcher here, the node's agent on Ray;
    and forwardPort (its --address) to a port of the node, at the node's address."""
    marker = dist.tmp / "ran-on"
    command = f'echo "$AZ_BATCHAI_NODE_NAME" > {marker}; cd "$AZ_BATCHAI_MOUNT_ROOT/.." && basename "$PWD"; exit 5'
    answer = dist.server.http.post(
        url(f"{dist.ws}/clusters/c/execOnNode"), json={"nodeId": "node-1", "command": command}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    assert {k: answer.json()[k] for k in ("nodeId", "exitCode", "timedOut", "stdout")} == {
        "nodeId": "node-1",
        "exitCode": 5,
        "timedOut": False,
        "stdout": "node-1\n",
    }
    assert marker.read_text() == "node-1\n"
    address = f"{dist.server.endpoint.replace('http', 'ws', 1)}{dist.ws}/clusters/c/forwardPort"
    query = f"?api-version=2018-05-01&nodeId=node-1&host=localhost&port={service_port}"
    with connect(address + query, additional_headers={"Authorization": f"Bearer {dist.server.token}"}) as relay:
        relay.send(b"to node-1")
        assert relay.recv(timeout=30) == b"TO NODE-1"


@pytest.fixture
def on_ray(ray_nodes: RayCluster, tmp_path: Path) -> Iterator[tuple[Bench, RayCluster]]:
    server = start_server(tmp_path / "home", {**RAY_ENV, "BATCHAI_RAY_ADDRESS": ray_nodes.address})
    try:
        yield make_bench(server, "ray.rg", tmp_path), ray_nodes
    finally:
        server.stop()
        ray_nodes.kill_agents(name_prefix(server.home))  # their watchdogs end what still runs
        wait_for(lambda: not leftovers(server.home), timeout=15, message="the agents' processes to end")
        assert_nothing_left(server.home)


def node_of(bench: Bench, job: str, rank: int) -> str:
    """The Ray node id a job's process runs on (once started), from the server's database."""
    import sqlite3

    query = "SELECT tasks.info FROM tasks JOIN jobs ON jobs.id = tasks.job_id WHERE jobs.name = ? AND tasks.[index] = ?"

    def recorded() -> str | None:
        with sqlite3.connect(bench.server.home / "batchai.db") as db:
            rows = db.execute(query, (job, rank)).fetchall()
        return json.loads(rows[0][0]).get("where") if rows else None

    return str(wait_for(recorded, message=f"task {rank} of {job} to start"))


def submit_gated(bench: Bench, name: str, gate: Path, node_count: int = 1, after: str = "") -> None:
    """A PyTorch job on ``node_count`` nodes whose processes wait until ``gate`` exists; returns once the
    server has recorded every process as started."""
    waiting = script(bench, f"{name}.py", GATED + after)
    bench.submit(
        name,
        node_count=node_count,
        pyTorchSettings={"pythonScriptFilePath": str(waiting)},
        environmentVariables=[{"name": "GATE", "value": str(gate)}],
    )
    for rank in range(node_count):
        node_of(bench, name, rank)  # started and recorded


def test_a_lost_node_fails_the_job_and_names_the_node(on_ray: tuple[Bench, RayCluster]) -> None:
    bench, ray = on_ray
    bench.cluster(target=2, option="terminate")
    bench.wait_nodes(idle=2, timeout=90)
    submit_gated(bench, "doomed", bench.tmp / "never", node_count=2)
    victim = node_of(bench, "doomed", 1)
    ray.remove_node(victim)
    props = bench.wait_job("doomed", timeout=60)
    assert props["executionState"] == "failed"
    error = props["executionInfo"]["errors"][0]
    assert error["code"] == "NodeLost" and victim[:12] in error["message"] and "node-" in error["message"], error
    ray.add_node()  # the next tests want three machines again
    state = bench.wait_nodes(idle=2, timeout=90)
    assert state["currentNodeCount"] == 2  # the lost node was replaced by a free machine


def test_a_lost_node_requeues_the_job_when_the_cluster_says_so(on_ray: tuple[Bench, RayCluster]) -> None:
    bench, ray = on_ray
    bench.cluster(target=1, option="requeue")
    bench.wait_nodes(idle=1, timeout=90)
    gate = bench.tmp / "gate"
    submit_gated(bench, "again", gate)
    first = node_of(bench, "again", 0)
    ray.remove_node(first)
    # Requeued, it starts again on the machine that replaced the lost one.
    wait_for(lambda: node_of(bench, "again", 0) != first, timeout=60, message="the job to start again elsewhere")
    gate.touch()
    props = bench.wait_job("again", timeout=60)
    assert props["executionState"] == "succeeded", props
    log = (bench.stdouterr("again") / "execution.log").read_text()
    assert "requeued" in log and "attempt 2" in log, log
    ray.add_node()


def test_a_job_whose_node_s_agent_dies_is_requeued(on_ray: tuple[Bench, RayCluster]) -> None:
    """The node's agent dies while the job runs (a crash, Ray's OOM killer), its machine staying in Ray's view:
    its watchdog ends the job's processes, and the setup task's daemons with them. The node is lost as if its
    machine had gone: the job is requeued (not failed as processes lost) and a new node takes its place."""
    bench, ray = on_ray
    bench.cluster(target=1, option="requeue")
    bench.wait_nodes(idle=1, timeout=90)
    gate = bench.tmp / "gate"
    submit_gated(bench, "orphan", gate)
    machine = node_of(bench, "orphan", 0)
    agent = ray.ray.get_actor(f"{name_prefix(bench.server.home)}-agent-{machine[:16]}", namespace="batchai")
    os.kill(ray.ray.get(agent.ping.remote()), signal.SIGKILL)
    log = bench.stdouterr("orphan") / "execution.log"
    wait_for(lambda: "attempt 2" in log.read_text(), timeout=60, message="the job to start again")
    assert machine in [n["NodeID"] for n in ray.ray.nodes() if n["Alive"]]  # the machine never left Ray's view
    gate.touch()
    props = bench.wait_job("orphan", timeout=60)
    assert props["executionState"] == "succeeded", props
    assert "The job was requeued: node node-0 (Ray node" in log.read_text(), log.read_text()
    state = bench.wait_nodes(idle=1, timeout=90)  # a new node, set up afresh
    (error,) = [e for e in state["errors"] if e["code"] == "NodeLost"]
    assert "The batchai agent on node node-0" in error["message"] and machine[:12] in error["message"], error


def test_a_cluster_short_of_ray_machines_says_why_it_stays_resizing(on_ray: tuple[Bench, RayCluster]) -> None:
    """As Batch AI reported a resize it could not finish in the cluster's errors: a cluster that wants more
    nodes than Ray has free machines says so (how many it needs and has, how many machines Ray has), and the
    error goes once the nodes come."""
    bench, ray = on_ray
    machines = len([n for n in ray.ray.nodes() if n["Alive"] and n["Resources"].get("batchai")])
    bench.cluster("a", target=machines - 1)
    bench.wait_nodes("a", idle=machines - 1, timeout=90)
    bench.cluster("b", target=2)  # one machine is left for it

    def short() -> tuple[dict[str, Any], dict[str, Any]] | None:
        props = bench.cluster_state("b")
        errors = [e for e in props.get("errors") or [] if e["code"] == "InsufficientRayNodes"]
        return (props, errors[0]) if errors and props["currentNodeCount"] == 1 else None

    props, error = wait_for(short, timeout=60, message="cluster b to say why it waits")
    assert props["allocationState"] == "resizing" and len(props["errors"]) == 1, props
    assert error["message"].startswith(
        f"The cluster needs 2 node(s) and has 1: the Ray cluster has {machines} machine(s) offering the 'batchai' "
        f"resource and none is free (1 in this cluster, {machines - 1} held by other clusters"
    ), error
    assert {d["name"]: d["value"] for d in error["details"]} == {
        "targetNodeCount": "2",
        "currentNodeCount": "1",
        "rayMachines": str(machines),
        "rayMachinesHeldElsewhere": str(machines - 1),
    }
    where = ("-g", bench.group, "-w", "ws", "-n", "b")
    shown = bench.server.cli("cluster", "show", *where, "--query", "errors[0].code", "-o", "tsv")
    assert (shown.code, shown.stdout.strip()) == (0, "InsufficientRayNodes"), shown.stderr
    time.sleep(1)  # the engine looks again and again: the error is kept up to date, not repeated
    assert bench.cluster_state("b")["errors"] == [error]
    # Cluster a gives a machine back: b takes it and no longer waits.
    scale = {"manual": {"targetNodeCount": machines - 2, "nodeDeallocationOption": "requeue"}}
    response = bench.server.http.patch(url(f"{bench.ws}/clusters/a"), json={"properties": {"scaleSettings": scale}})
    assert response.status_code == 200, response.text
    props = bench.wait_nodes("b", idle=2, timeout=90)
    assert "errors" not in props, props["errors"]


def test_a_job_whose_nodes_ray_will_not_give_yet_is_requeued(on_ray: tuple[Bench, RayCluster]) -> None:
    bench, ray = on_ray
    bench.cluster(target=1, option="terminate")
    bench.wait_nodes(idle=1, timeout=90)
    import sqlite3

    with sqlite3.connect(bench.server.home / "batchai.db") as db:
        machine = json.loads(db.execute("SELECT info FROM nodes").fetchone()[0])["ray_node_id"]
    from ray.util.placement_group import placement_group, remove_placement_group

    # Another Ray workload holds the machine's batchai unit: the job cannot get its node yet.
    other = placement_group([{"batchai": 1}], bundle_label_selector=[{"ray.io/node-id": machine}])
    ray.ray.get(other.ready(), timeout=30)
    try:
        bench.submit("patient")
        log = bench.stdouterr("patient") / "execution.log"
        wait_for(lambda: log.exists() and "requeued" in log.read_text(), timeout=60, message="the job to be requeued")
    finally:
        remove_placement_group(other)
    props = bench.wait_job("patient", timeout=60)
    assert props["executionState"] == "succeeded", props
    assert "NodesNotAvailable" not in json.dumps(props.get("executionInfo"))


def test_a_job_waiting_for_its_ray_nodes_holds_up_no_other(on_ray: tuple[Bench, RayCluster]) -> None:
    bench, ray = on_ray
    bench.cluster(target=2, option="terminate")
    bench.wait_nodes(idle=2, timeout=90)
    import sqlite3

    def machine_of(node: str) -> str:
        with sqlite3.connect(bench.server.home / "batchai.db") as db:
            info = db.execute("SELECT info FROM nodes WHERE name = ?", (node,)).fetchone()[0]
        return str(json.loads(info)["ray_node_id"])

    from ray.util.placement_group import placement_group, remove_placement_group

    held = placement_group([{"batchai": 1}], bundle_label_selector=[{"ray.io/node-id": machine_of("node-0")}])
    ray.ray.get(held.ready(), timeout=30)
    try:
        bench.submit("patient")  # on node-0 (the first free node), whose machine Ray does not give for now
        bench.wait_job("patient", states=("running",), timeout=30)
        with sqlite3.connect(bench.server.home / "batchai.db") as db:
            on = db.execute(
                "SELECT nodes.name FROM tasks JOIN jobs ON jobs.id = tasks.job_id"
                " JOIN nodes ON nodes.id = tasks.node_id WHERE jobs.name = 'patient'"
            ).fetchone()
        assert on == ("node-0",)
        bench.submit("quick")  # on node-1, meanwhile
        assert bench.wait_job("quick", timeout=60)["executionState"] == "succeeded"
        # It ran while the patient job still waited for its node (Ray gives up on that after 10 s).
        log = bench.stdouterr("patient") / "execution.log"
        assert not log.exists() or "requeued" not in log.read_text()
    finally:
        remove_placement_group(held)
    assert bench.wait_job("patient", timeout=60)["executionState"] == "succeeded"


def test_a_restarted_server_reattaches_to_jobs_on_ray(on_ray: tuple[Bench, RayCluster]) -> None:
    bench, _ = on_ray
    bench.cluster(target=2, option="terminate")
    bench.wait_nodes(idle=2, timeout=90)
    # Usages count the Ray machines that can be nodes (not this host's cores), and the two in use.
    import ray

    machines = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("batchai")]  # type: ignore[no-untyped-call]
    usages = bench.server.http.get(url(f"/subscriptions/{SUB}/providers/Microsoft.BatchAI/locations/eastus/usages"))
    assert (usages.json()["value"][0]["currentValue"], usages.json()["value"][0]["limit"]) == (2, len(machines))
    gate = bench.tmp / "gate"
    submit_gated(bench, "survivor", gate, node_count=2, after="print('finished after the restart')\n")
    bench.server.stop(kill=True)
    gate.touch()  # the job ends while no server watches
    bench.server.start()
    props = bench.wait_job("survivor", timeout=60)
    assert props["executionState"] == "succeeded", props
    logs = bench.stdouterr("survivor")
    assert "finished after the restart" in (logs / "stdout-0.txt").read_text()
    assert "finished after the restart" in (logs / "stdout-1.txt").read_text()


def test_an_idle_agent_leaves_and_a_new_one_serves_the_next_job(ray_nodes: RayCluster, tmp_path: Path) -> None:
    env = {**RAY_ENV, "BATCHAI_RAY_ADDRESS": ray_nodes.address, "BATCHAI_RAY_AGENT_IDLE_SECONDS": "2"}
    server = start_server(tmp_path / "home", env)
    prefix = name_prefix(server.home)

    def agents() -> list[str]:
        from ray.util import list_named_actors

        return [a["name"] for a in list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]

    try:
        bench = make_bench(server, "idle.rg", tmp_path)
        bench.cluster(target=1)
        bench.wait_nodes(idle=1, timeout=90)
        bench.submit("first", customToolkitSettings={"commandLine": "echo one"})
        assert bench.wait_job("first", timeout=60)["executionState"] == "succeeded"
        wait_for(lambda: not agents(), timeout=30, message="the idle agent to leave")
        bench.submit("second", customToolkitSettings={"commandLine": "echo two"})
        assert bench.wait_job("second", timeout=60)["executionState"] == "succeeded"
        assert (bench.stdouterr("second") / "stdout.txt").read_text() == "two\n"
        assert "attempt 2" not in (bench.stdouterr("second") / "execution.log").read_text()  # the first start
        assert len(agents()) == 1  # started again for the job
    finally:
        server.stop()
        ray_nodes.kill_agents(prefix)
        wait_for(lambda: not leftovers(server.home), timeout=15, message="the agents' processes to end")
        assert_nothing_left(server.home)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_a_machine_that_does_not_share_the_server_s_files_is_unusable(ray_nodes: RayCluster, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**RAY_ENV, "BATCHAI_RAY_ADDRESS": ray_nodes.address, "BATCHAI_RAY_RESOURCE": "apart"}
    server = Server(home=home, port=free_port(), env=env)
    # Its own view of the server's nodes directory, as a machine without the shared filesystem has.
    with machine_apart(ray_nodes, home / "nodes", "apart"):
        try:
            server.start()
            bench = make_bench(server, "apart.rg", tmp_path)
            bench.cluster(target=1)
            props = wait_for(
                lambda: (p := bench.cluster_state())["nodeStateCounts"]["unusableNodeCount"] == 1 and p,
                timeout=120,
                message="the node on the machine apart to be unusable",
            )
            assert "does not share the server's filesystem" in props["errors"][0]["message"], props["errors"]
        finally:
            server.stop()
            ray_nodes.kill_agents(name_prefix(home))
    assert_nothing_left(home)


def test_an_unreachable_ray_cluster_is_reported_not_waited_on(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", {**RAY_ENV, "BATCHAI_RAY_ADDRESS": f"127.0.0.1:{free_port()}"})
    try:
        bench = make_bench(server, "down.rg", tmp_path)
        bench.cluster(target=1)

        def reported() -> list[dict[str, Any]]:
            return [e for e in bench.cluster_state().get("errors") or [] if e["code"] == "ProviderUnavailable"]

        error = wait_for(reported, timeout=60, message="the cluster to report Ray unreachable")[0]
        assert "cannot be reached" in error["message"]
        bench.submit("waits")  # the API still answers; the job waits for nodes
        assert bench.job("waits")["executionState"] == "queued"
    finally:
        server.stop()
        assert_nothing_left(server.home)
