"""The processes of distributed jobs and their wiring (runtime.distributed), without running anything."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchai.runtime import distributed, launch
from batchai.runtime.distributed import Process


def spec(node_count: int, **toolkit: Any) -> dict[str, Any]:
    return {"nodeCount": node_count, "stdOutErrPathPrefix": "/logs", **toolkit}


def test_pytorch_spreads_its_processes_over_the_nodes_in_blocks() -> None:
    job = spec(2, pyTorchSettings={"pythonScriptFilePath": "t.py", "processCount": 3})
    assert distributed.layout(job) == [
        Process(0, 0, "worker", 0, 0, suffix="-0"),  # stdout-0.txt: each rank's output by its rank
        Process(1, 0, "worker", 1, 1, suffix="-1"),
        Process(2, 1, "worker", 2, 0, suffix="-2"),
    ]
    env = distributed.environment(job, distributed.layout(job), ["10.0.0.1", "10.0.0.2"], {0: [2345]})
    assert env[2]["RANK"] == "2" and env[2]["LOCAL_RANK"] == "0" and env[2]["WORLD_SIZE"] == "3"
    assert env[1]["AZ_BATCHAI_PYTORCH_INIT_METHOD"] == "tcp://10.0.0.1:2345"
    assert env[1]["AZ_BATCHAI_PYTORCH_BACKEND"] == "gloo"  # the default, as --dist-backend takes it
    assert {e["MASTER_ADDR"] for e in env.values()} == {"10.0.0.1"}


def test_tensorflow_has_workers_and_parameter_servers_with_their_own_ports() -> None:
    job = spec(2, tensorFlowSettings={"pythonScriptFilePath": "t.py", "workerCount": 2, "parameterServerCount": 1})
    processes = distributed.layout(job)
    assert [(p.role, p.role_index, p.node, p.suffix) for p in processes] == [
        ("worker", 0, 0, "-wk-0"),
        ("worker", 1, 1, "-wk-1"),
        ("ps", 0, 1, "-ps-0"),
    ]
    assert processes[2].auxiliary and distributed.ports_needed(job, processes) == {0: 1, 1: 2}
    env = distributed.environment(job, processes, ["a", "b"], {0: [1000], 1: [2000, 2001]})
    config = json.loads(env[2]["TF_CONFIG"])
    assert config["cluster"] == {"worker": ["a:1000", "b:2000"], "ps": ["b:2001"]}
    assert config["task"] == {"type": "ps", "index": 0}
    assert env[1]["AZ_BATCHAI_WORKER_HOSTS"] == "a:1000,b:2000" and env[1]["AZ_BATCHAI_PS_HOSTS"] == "b:2001"


def test_a_single_node_tensorflow_job_is_one_master() -> None:
    job = spec(1, tensorFlowSettings={"pythonScriptFilePath": "t.py", "masterCommandLineArgs": "m"})
    assert distributed.layout(job) == [Process(0, 0, "master", 0, suffix="-wk-0")]  # stdout-wk-0.txt, as Batch AI


@pytest.mark.parametrize(
    "toolkit",
    [
        {"customMpiSettings": {"commandLine": "hello", "processCount": 4}},
        {"horovodSettings": {"pythonScriptFilePath": "t.py", "processCount": 4}},
        {"cntkSettings": {"pythonScriptFilePath": "t.py", "processCount": 4}},
        {"chainerSettings": {"pythonScriptFilePath": "t.py", "processCount": 4}},
        {"pyTorchSettings": {"pythonScriptFilePath": "t.py", "processCount": 4, "communicationBackend": "MPI"}},
    ],
)
def test_mpi_jobs_are_one_mpirun_with_a_host_file(toolkit: dict[str, Any]) -> None:
    job = spec(2, **toolkit)
    assert distributed.layout(job) == [Process(0, 0, "mpirun", 0)]
    assert distributed.mpi_hostfile(job, ["10.0.0.1", "10.0.0.2"]) == "10.0.0.1 slots=2\n10.0.0.2 slots=2\n"
    # Nodes on one machine share a line: OpenMPI refuses a host named twice.
    assert distributed.mpi_hostfile(job, ["127.0.0.1", "127.0.0.1"]) == "127.0.0.1 slots=4\n"


def test_mpirun_command_line_starts_the_toolkit(tmp_path: Any) -> None:
    fake = tmp_path / "mpirun"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    (tmp_path / "t.py").write_text("")
    job = spec(2, horovodSettings={"pythonScriptFilePath": "$DIR/t.py", "processCount": 4})
    env = {"PATH": str(tmp_path), "DIR": str(tmp_path), "AZ_BATCHAI_MPI_HOST_FILE": "/h"}
    command = launch.toolkit_command(job, env, "/py", Process(0, 0, "mpirun", 0))
    assert command.startswith(f'{fake} -np 4 --hostfile "$AZ_BATCHAI_MPI_HOST_FILE"')
    assert command.endswith(f"/py {tmp_path}/t.py") and "-x DIR" in command


def test_mpi_jobs_fail_clearly_without_mpirun() -> None:
    job = spec(1, customMpiSettings={"commandLine": "hello", "processCount": 2})
    with pytest.raises(launch.LaunchError) as error:
        launch.toolkit_command(job, {"PATH": "/nonexistent"}, "/py", Process(0, 0, "mpirun", 0))
    assert error.value.code == "ToolkitNotInstalled" and "mpirun" in error.value.message


def test_checks_of_the_node_wait_for_the_job_preparation_when_asked(tmp_path: Any) -> None:
    job = spec(1, customMpiSettings={"commandLine": "hello", "processCount": 2})
    checks: list[str] = []
    command = launch.toolkit_command(job, {"PATH": "/nonexistent"}, "/py", Process(0, 0, "mpirun", 0), checks)
    assert command.startswith("mpirun -np 2 ") and len(checks) == 1 and "command -v mpirun" in checks[0]
    missing = spec(1, pyTorchSettings={"pythonScriptFilePath": str(tmp_path / "later.py")})
    checks = []
    assert launch.toolkit_command(missing, {}, "/py", Process(0, 0, "master", 0), checks).endswith("later.py")
    assert checks == [
        f"if [ ! -f {tmp_path}/later.py ]; then echo 'batchai: The script '\"'\"'{tmp_path}/later.py'\"'\"' "
        f"({tmp_path}/later.py) does not exist on the node.' >&2; exit 2; fi"
    ]


def test_the_custom_toolkit_runs_on_the_master_node_and_may_reach_the_others() -> None:
    job = spec(3, customToolkitSettings={"commandLine": "echo"})
    assert distributed.layout(job) == [Process(0, 0, "master", 0)]
    assert distributed.reaches_other_nodes(job, Process(0, 0, "master", 0))  # gets the host file, waits for preps
    assert not distributed.reaches_other_nodes(
        spec(1, customToolkitSettings={"commandLine": "echo"}), Process(0, 0, "master", 0)
    )
    assert distributed.mpi_hostfile(job, ["a", "b", "a"]) == "a slots=2\nb slots=1\n"


def test_every_node_of_the_job_runs_its_preparation() -> None:
    prep = {"jobPreparation": {"commandLine": "pip install horovod"}}
    mpi = spec(3, customMpiSettings={"commandLine": "hello", "processCount": 3}, **prep)
    assert distributed.layout(mpi) == [
        Process(0, 0, "mpirun", 0),
        Process(1, 1, "prep", 1, suffix="-node-1"),
        Process(2, 2, "prep", 2, suffix="-node-2"),
    ]
    # A toolkit process on every node already runs it there; without a preparation nothing is added.
    pytorch = spec(2, pyTorchSettings={"pythonScriptFilePath": "t.py"}, **prep)
    assert [p.role for p in distributed.layout(pytorch)] == ["worker", "worker"]
    custom = spec(2, customToolkitSettings={"commandLine": "x"}, **prep)
    assert [p.role for p in distributed.layout(custom)] == ["master", "prep"]
    assert [p.role for p in distributed.layout({**mpi, "jobPreparation": None})] == ["mpirun"]
    # A process that only prepares its node runs no toolkit command and writes only the preparation's output.
    assert launch.toolkit_command(mpi, {}, "/py", Process(1, 1, "prep", 1)) == ""


def test_mpirun_waits_for_every_node_s_preparation(tmp_path: Any) -> None:
    mpi = spec(2, customMpiSettings={"commandLine": "hello", "processCount": 2}, jobPreparation={"commandLine": "p"})
    slots = [launch.NodeSlot(f"node-{i}", tmp_path / f"node-{i}", tmp_path / "shared", i) for i in range(2)]
    other = launch.prep_marker(launch.job_temp_dir(slots[1].node_dir, 7), 1)

    def plan(process: Process, awaits: tuple[Any, ...] = ()) -> launch.LaunchPlan:
        return launch.plan(
            job_id=7, spec=mpi, segment="s", cluster_spec={}, slot=slots[process.node], process=process,
            wiring={}, base_env={}, awaits=awaits, resolve=lambda v: tmp_path, file_server=lambda a, b: tmp_path,
            default_python="/py",
        )  # fmt: skip

    master = plan(Process(0, 0, "mpirun", 0), (("node-1", other),))
    body = launch.script_body(master, "mpirun hello")
    assert body.index("bash -c p") < body.index(f"while [ ! -e {other} ]") < body.index("mpirun hello")
    assert "job preparation on node-1 failed" in body
    helper = plan(Process(1, 1, "prep", 1))
    assert (helper.stdout_name, helper.stderr_name) == ("stdout-job_prep-node-1.txt", "stderr-job_prep-node-1.txt")
    assert helper.prep_marker == other and launch.script_body(helper, "").rstrip().endswith("fi")


@pytest.mark.parametrize(
    ("nodes", "toolkit", "names"),
    [
        # As Batch AI named them (its recipes stream these files).
        (1, {"cntkSettings": {"pythonScriptFilePath": "t.py"}}, [""]),
        (1, {"pyTorchSettings": {"pythonScriptFilePath": "t.py"}}, [""]),
        (2, {"customToolkitSettings": {"commandLine": "x"}}, [""]),
        (2, {"horovodSettings": {"pythonScriptFilePath": "t.py", "processCount": 2}}, [""]),
        (2, {"pyTorchSettings": {"pythonScriptFilePath": "t.py"}}, ["-0", "-1"]),
        (2, {"caffe2Settings": {"pythonScriptFilePath": "t.py"}}, ["-0", "-1"]),
        (1, {"tensorFlowSettings": {"pythonScriptFilePath": "t.py"}}, ["-wk-0"]),
        (2, {"tensorFlowSettings": {"pythonScriptFilePath": "t.py"}}, ["-wk-0", "-wk-1", "-ps-0"]),
    ],
)
def test_output_files_are_named_as_batch_ai_named_them(
    nodes: int, toolkit: dict[str, Any], names: list[str], tmp_path: Any
) -> None:
    job = spec(nodes, jobPreparation={"commandLine": "p"}, **toolkit)
    processes = [p for p in distributed.layout(job) if p.role != "prep"]
    assert [p.suffix for p in processes] == names
    slots = [launch.NodeSlot(f"node-{i}", tmp_path / f"node-{i}", tmp_path / "shared", i) for i in range(nodes)]

    def plan(process: Process) -> launch.LaunchPlan:
        return launch.plan(
            job_id=7, spec=job, segment="s", cluster_spec={}, slot=slots[process.node], process=process,
            wiring={}, base_env={}, resolve=lambda v: tmp_path, file_server=lambda a, b: tmp_path,
            default_python="/py",
        )  # fmt: skip

    plans = [plan(p) for p in processes]
    assert [(p.stdout_name, p.stderr_name) for p in plans] == [(f"stdout{n}.txt", f"stderr{n}.txt") for n in names]
    # The job preparation's output is named by its node, whatever the toolkit.
    assert plans[0].prep_output == ("stdout-job_prep.txt", "stderr-job_prep.txt")
    last = "stdout-job_prep.txt" if processes[-1].node == 0 else "stdout-job_prep-node-1.txt"
    assert plans[-1].prep_output[0] == last


def test_blocks_fill_the_first_nodes_first() -> None:
    assert distributed.blocks(4, 2) == [2, 2]
    assert distributed.blocks(3, 2) == [2, 1]
    assert distributed.blocks(1, 3) == [1, 0, 0]
