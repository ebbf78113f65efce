"""The processes of a job and how they find each other: pure functions of the job's spec.

A job runs on ``nodeCount`` nodes. Its toolkit decides how many processes run there and how they are
wired, as Batch AI did:

- PyTorch (Gloo, TCP, NCCL): ``processCount`` processes spread over the nodes in blocks, each with
  ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` and
  ``AZ_BATCHAI_PYTORCH_INIT_METHOD``; the MPI backend goes through mpirun.
- TensorFlow: ``workerCount`` workers (default ``nodeCount``) and ``parameterServerCount`` parameter
  servers (default 1) with ``TF_CONFIG``, ``AZ_BATCHAI_WORKER_HOSTS`` and ``AZ_BATCHAI_PS_HOSTS``; the job
  ends when the workers end (the parameter servers are then stopped).
- Custom MPI, Horovod, and CNTK, Chainer or Caffe with more than one process: one ``mpirun`` on the first
  node, with ``AZ_BATCHAI_MPI_HOST_FILE`` listing every node and its slots.
- The custom toolkit runs its command line once on every node.
- Everything else is one process on the first node.

The job preparation runs once on every node of the job: a node that no process of the toolkit runs on gets
a process that runs only the job preparation (role ``prep``).

Each process writes its own ``stdout``/``stderr`` files, named as Batch AI named them (its recipes stream
these): ``stdout.txt`` for a job of one process (mpirun included); ``stdout-<rank>.txt`` for each process of
a distributed PyTorch job; ``stdout-<node>.txt`` for each node of a multi-node Caffe2 job;
``stdout-wk-<i>.txt`` and ``stdout-ps-<i>.txt`` for the workers and parameter servers of every TensorFlow job,
single-node ones too (the master is worker 0).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

MPI_TOOLKITS = ("customMpiSettings", "horovodSettings")
MPI_WHEN_MANY = ("cntkSettings", "chainerSettings", "caffeSettings")


@dataclass(frozen=True)
class Process:
    """One process of a job. ``rank`` is its task index in the job (0 is the master); ``node`` indexes
    the job's nodes; ``role_index`` is its ``AZ_BATCHAI_TASK_INDEX``."""

    rank: int
    node: int
    role: str  # "master", "worker", "ps", "node" (custom toolkit), "mpirun", "prep" (job preparation only)
    role_index: int
    local_rank: int = 0
    auxiliary: bool = False  # stopped once the other processes have ended (parameter servers)
    suffix: str = ""  # in the names of its output files: stdout{suffix}.txt


def toolkit(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The job's toolkit key (e.g. ``pyTorchSettings``) and its settings."""
    for key, settings in spec.items():
        if key.endswith("Settings") and key != "containerSettings" and isinstance(settings, dict):
            return key, settings
    raise ValueError("the job has no toolkit settings")


def process_count(spec: dict[str, Any]) -> int:
    _, settings = toolkit(spec)
    return int(settings.get("processCount") or spec["nodeCount"])


def kind(spec: dict[str, Any]) -> str:
    """How the job is launched: ``single``, ``per-node``, ``pytorch``, ``tensorflow`` or ``mpi``."""
    key, settings = toolkit(spec)
    nodes = int(spec["nodeCount"])
    if key in MPI_TOOLKITS:
        return "mpi"
    if key == "caffe2Settings" and nodes > 1:
        return "per-node"
    if key == "pyTorchSettings":
        if process_count(spec) <= 1:
            return "single"
        return "mpi" if (settings.get("communicationBackend") or "").lower() == "mpi" else "pytorch"
    if key == "tensorFlowSettings":
        distributed = (
            nodes > 1
            or int(settings.get("workerCount") or 1) > 1
            or int(settings.get("parameterServerCount") or 0) > 0
            or bool(settings.get("parameterServerCommandLineArgs"))
        )
        return "tensorflow" if distributed else "single"
    if key in MPI_WHEN_MANY and process_count(spec) > 1:
        return "mpi"
    return "single"


def blocks(count: int, nodes: int) -> list[int]:
    """How many of ``count`` processes each of ``nodes`` nodes runs, filled in blocks of equal size."""
    per_node = math.ceil(count / nodes)
    return [max(0, min(per_node, count - i * per_node)) for i in range(nodes)]


def _spread(count: int, nodes: int, role: str, suffix: str) -> list[Process]:
    """``count`` processes of ``role`` over the nodes in blocks; ``suffix`` names their files, with ``{i}``
    for their index."""
    processes: list[Process] = []
    for node, size in enumerate(blocks(count, nodes)):
        for local in range(size):
            i = len(processes)
            processes.append(Process(i, node, role, i, local, suffix=suffix.format(i=i)))
    return processes


def tensorflow_counts(spec: dict[str, Any]) -> tuple[int, int]:
    _, settings = toolkit(spec)
    workers = int(settings.get("workerCount") or spec["nodeCount"])
    servers = settings.get("parameterServerCount")
    return workers, int(1 if servers is None else servers)


def layout(spec: dict[str, Any]) -> list[Process]:
    """Every process of the job, in rank order: the toolkit's, then one that runs only the job preparation
    on each node that has none of them."""
    processes = _toolkit_layout(spec)
    if (spec.get("jobPreparation") or {}).get("commandLine"):
        used = {p.node for p in processes}
        for node in range(int(spec["nodeCount"])):
            if node not in used:
                processes.append(Process(len(processes), node, "prep", node, suffix=f"-node-{node}"))
    return processes


def _toolkit_layout(spec: dict[str, Any]) -> list[Process]:
    nodes = int(spec["nodeCount"])
    how = kind(spec)
    if how == "per-node":
        return [Process(i, i, "node", i, suffix=f"-{i}") for i in range(nodes)]
    if how == "pytorch":
        return _spread(process_count(spec), nodes, "worker", "-{i}")
    if how == "tensorflow":
        workers, servers = tensorflow_counts(spec)
        processes = _spread(workers, nodes, "worker", "-wk-{i}")
        on_node = [sum(1 for p in processes if p.node == n) for n in range(nodes)]
        for i in range(servers):
            node = (nodes - 1 - i) % nodes  # parameter servers start from the last node
            processes.append(Process(workers + i, node, "ps", i, on_node[node], auxiliary=True, suffix=f"-ps-{i}"))
            on_node[node] += 1
        return processes
    if how == "mpi":
        return [Process(0, 0, "mpirun", 0)]
    # A TensorFlow job of one process is worker 0 too, by the name of its files.
    return [Process(0, 0, "master", 0, suffix="-wk-0" if toolkit(spec)[0] == "tensorFlowSettings" else "")]


def reaches_other_nodes(spec: dict[str, Any], process: Process) -> bool:
    """Whether the process may start work on the job's other nodes: ``mpirun``, or the one process of a
    multi-node job (a custom toolkit's command runs on the master node only, as in Batch AI, and starts the
    rest itself, e.g. with ``mpirun``). It gets ``AZ_BATCHAI_MPI_HOST_FILE`` and waits for every node's
    job preparation."""
    return process.role == "mpirun" or (process.role == "master" and int(spec["nodeCount"]) > 1)


def ports_needed(spec: dict[str, Any], processes: list[Process]) -> dict[int, int]:
    """How many ports each node must provide: the rendezvous of PyTorch, one per TensorFlow process."""
    how = kind(spec)
    if how == "pytorch":
        return {0: 1}
    if how == "tensorflow":
        needed: dict[int, int] = {}
        for process in processes:
            needed[process.node] = needed.get(process.node, 0) + 1
        return needed
    return {}


def mpi_hostfile(spec: dict[str, Any], hosts: list[str]) -> str:
    """An OpenMPI host file: one line per distinct host with the slots of the nodes on it."""
    slots: dict[str, int] = {}
    for host, count in zip(hosts, blocks(process_count(spec), len(hosts)), strict=True):
        if count:
            slots[host] = slots.get(host, 0) + count
    return "".join(f"{host} slots={count}\n" for host, count in slots.items())


def environment(
    spec: dict[str, Any], processes: list[Process], hosts: list[str], ports: dict[int, list[int]]
) -> dict[int, dict[str, str]]:
    """The wiring variables of each process (by rank), given its nodes' addresses and free ports."""
    how = kind(spec)
    env: dict[int, dict[str, str]] = {p.rank: {"AZ_BATCHAI_TASK_INDEX": str(p.role_index)} for p in processes}
    if how == "pytorch":
        address, port = hosts[0], ports[0][0]
        backend = str(toolkit(spec)[1].get("communicationBackend") or "gloo").lower()
        for p in processes:
            env[p.rank].update(
                {
                    "MASTER_ADDR": address,
                    "MASTER_PORT": str(port),
                    "WORLD_SIZE": str(len(processes)),
                    "RANK": str(p.rank),
                    "LOCAL_RANK": str(p.local_rank),
                    "AZ_BATCHAI_PYTORCH_INIT_METHOD": f"tcp://{address}:{port}",
                    "AZ_BATCHAI_PYTORCH_BACKEND": backend,
                }
            )
    elif how == "tensorflow":
        taken: dict[int, int] = {}
        endpoint: dict[int, str] = {}
        for p in processes:
            index = taken.get(p.node, 0)
            taken[p.node] = index + 1
            endpoint[p.rank] = f"{hosts[p.node]}:{ports[p.node][index]}"
        workers = [endpoint[p.rank] for p in processes if p.role == "worker"]
        servers = [endpoint[p.rank] for p in processes if p.role == "ps"]
        cluster = {"worker": workers, **({"ps": servers} if servers else {})}
        for p in processes:
            env[p.rank].update(
                {
                    "AZ_BATCHAI_WORKER_HOSTS": ",".join(workers),
                    "AZ_BATCHAI_PS_HOSTS": ",".join(servers),
                    "TF_CONFIG": json.dumps(
                        {"cluster": cluster, "task": {"type": p.role, "index": p.role_index}, "environment": "cloud"}
                    ),
                }
            )
    elif how == "mpi":
        # mpirun as root refuses to start without these (OpenMPI); they change nothing otherwise.
        env[0].update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
    return env
