"""Jobs run for real on the local provider: toolkits, environment, preparation, directories, secrets,
terminate, wall clock, priorities, gang scheduling, resize, auto-scale, setup tasks, restarts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from batchai.runtime import supervisor
from tests.conftest import Server, leftovers, process_gone, url, wait_for
from tests.integration import jobkit
from tests.integration.jobkit import Bench, make_bench, outputs

CHECK = """
import json, os, sys
out = os.environ["AZ_BATCHAI_OUTPUT_OUT"]
keys = [k for k in os.environ if k.startswith(("AZ_BATCHAI_", "CUDA_", "MY_", "PYTHONUNBUFFERED"))]
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "env": {k: os.environ[k] for k in keys}, "cwd": os.getcwd()}, f)
print("hello from", os.environ["AZ_BATCHAI_TASK_INDEX"])
print("to stderr", file=sys.stderr)
"""


@pytest.fixture
def bench(server: Server, tmp_path: Path) -> Bench:
    return make_bench(server, "run.rg", tmp_path)


def write_script(bench: Bench, text: str = CHECK, name: str = "check.py") -> Path:
    return jobkit.write_script(bench, text, name)


def result(bench: Bench, name: str) -> dict[str, Any]:
    segment = bench.job(name)["jobOutputDirectoryPathSegment"]
    return dict(json.loads((bench.tmp / "out" / segment / "outputs" / "result.json").read_text()))


TOOLKITS: dict[str, Callable[[str], dict[str, Any]]] = {
    "cntkSettings": lambda s: {"pythonScriptFilePath": s, "commandLineArgs": "a1 $MY_VAR"},
    "pyTorchSettings": lambda s: {"pythonScriptFilePath": s, "commandLineArgs": "a1 $MY_VAR"},
    "tensorFlowSettings": lambda s: {
        "pythonScriptFilePath": s,
        "masterCommandLineArgs": "a1 $MY_VAR",
        "workerCommandLineArgs": "worker",
    },
    "chainerSettings": lambda s: {"pythonScriptFilePath": s, "commandLineArgs": "a1 $MY_VAR"},
    "caffe2Settings": lambda s: {"pythonScriptFilePath": s, "commandLineArgs": "a1 $MY_VAR"},
    "caffeSettings": lambda s: {"pythonScriptFilePath": s, "commandLineArgs": "a1 $MY_VAR"},
    "customToolkitSettings": lambda s: {"commandLine": f"python3 {s} a1 $MY_VAR"},
}


def test_each_toolkit_gets_its_arguments_and_environment(bench: Bench) -> None:
    bench.cluster(target=2)
    script = write_script(bench)
    env = [{"name": "MY_VAR", "value": "v-$AZ_BATCHAI_TASK_INDEX"}]
    for key, settings in TOOLKITS.items():
        name = key.replace("Settings", "").lower()
        props: dict[str, Any] = {key: settings(str(script))}
        bench.submit(name, environmentVariables=env, outputDirectories=outputs(bench), **props)
    for key in TOOLKITS:
        name = key.replace("Settings", "").lower()
        props = bench.wait_job(name)
        assert props["executionState"] == "succeeded", (name, props.get("executionInfo"))
        assert props["executionInfo"]["exitCode"] == 0
        got = result(bench, name)
        assert got["argv"] == ["a1", "v-0"], name
        env_seen = got["env"]
        for var in (
            "AZ_BATCHAI_MOUNT_ROOT",
            "AZ_BATCHAI_JOB_MOUNT_ROOT",
            "AZ_BATCHAI_JOB_TEMP",
            "AZ_BATCHAI_JOB_TEMP_DIR",
            "AZ_BATCHAI_SHARED_JOB_TEMP",
            "AZ_BATCHAI_STDOUTERR_DIR",
        ):
            assert Path(env_seen[var]).is_absolute(), var
        assert env_seen["AZ_BATCHAI_NUM_GPUS"] == "0" and env_seen["CUDA_VISIBLE_DEVICES"] == ""
        assert env_seen["AZ_BATCHAI_TASK_INDEX"] == "0" and env_seen["PYTHONUNBUFFERED"] == "1"
        assert env_seen["AZ_BATCHAI_OUTPUT_OUT"].endswith(props["jobOutputDirectoryPathSegment"] + "/outputs")
        assert got["cwd"] == env_seen["AZ_BATCHAI_JOB_TEMP"]
        out_dir = Path(env_seen["AZ_BATCHAI_STDOUTERR_DIR"])
        # A TensorFlow job's files are worker 0's, as Batch AI named them (single-node ones too).
        own = "-wk-0" if key == "tensorFlowSettings" else ""
        assert (out_dir / f"stdout{own}.txt").read_text() == "hello from 0\n"
        assert (out_dir / f"stderr{own}.txt").read_text() == "to stderr\n"
        assert "started" in (out_dir / "execution.log").read_text()
    assert bench.job("tensorflow")["toolType"] == "tensorflow"


def test_missing_script_fails_with_a_clear_error(bench: Bench) -> None:
    bench.cluster()
    bench.submit("missing", pyTorchSettings={"pythonScriptFilePath": str(bench.tmp / "nope.py")})
    props = bench.wait_job("missing")
    assert props["executionState"] == "failed"
    error = props["executionInfo"]["errors"][0]
    assert error["code"] == "ScriptNotFound" and "nope.py" in error["message"]
    # The job's execution log says why it did not start, as every job's log says how it went.
    assert "could not start" in (bench.stdouterr("missing") / "execution.log").read_text()


def test_the_job_preparation_may_make_what_the_toolkit_needs(bench: Bench) -> None:
    """As Batch AI's recipes do (a `git clone` or `pip install` in jobPreparation): the script and the toolkit's
    program are looked for once the preparation has run, and a job whose preparation did not make them still
    fails saying what is missing."""
    bench.cluster()
    script, tools = bench.tmp / "made" / "train.py", bench.tmp / "tools"
    prep = f"mkdir -p {script.parent} {tools} && echo 'print(\"trained\")' > {script}"
    bench.submit("made", pyTorchSettings={"pythonScriptFilePath": str(script)}, jobPreparation={"commandLine": prep})
    props = bench.wait_job("made")
    assert props["executionState"] == "succeeded", props["executionInfo"]
    assert (bench.stdouterr("made") / "stdout.txt").read_text() == "trained\n"
    never = bench.tmp / "never.py"
    bench.submit("unmade", pyTorchSettings={"pythonScriptFilePath": str(never)}, jobPreparation={"commandLine": "true"})
    props = bench.wait_job("unmade")
    assert props["executionState"] == "failed" and props["executionInfo"]["exitCode"] == 2
    assert f"({never}) does not exist on the node" in props["executionInfo"]["errors"][0]["message"]
    # A toolkit program the preparation installs (here: puts on PATH): CNTK BrainScript's cntk.
    fake = f"mkdir -p {tools} && printf '#!/bin/sh\\necho cntk \"$@\"\\n' > {tools}/cntk && chmod +x {tools}/cntk"
    brainscript = {"configFilePath": "/cfg/ConvNet.cntk", "commandLineArgs": "x=1"}  # no languageType: BrainScript
    path = [{"name": "PATH", "value": f"{tools}:$PATH"}]
    bench.submit("cntk", cntkSettings=brainscript, jobPreparation={"commandLine": fake}, environmentVariables=path)
    props = bench.wait_job("cntk")
    assert props["executionState"] == "succeeded", props["executionInfo"]
    assert bench.job("cntk")["cntkSettings"]["languageType"] == "BrainScript"
    assert (bench.stdouterr("cntk") / "stdout.txt").read_text() == "cntk configFile=/cfg/ConvNet.cntk x=1\n"


def test_a_program_that_is_not_there_fails_as_bash_says(bench: Bench) -> None:
    # A plain command line starts without a shell; one that cannot start runs through bash, which says why.
    bench.cluster()
    bench.submit("nowhere", customToolkitSettings={"commandLine": "no-such-program-here --epochs 2"})
    props = bench.wait_job("nowhere")
    assert props["executionState"] == "failed" and props["executionInfo"]["exitCode"] == 127
    error = props["executionInfo"]["errors"][0]
    assert "no-such-program-here" in error["message"] and "not found" in error["message"]


def test_failure_quotes_the_last_lines_of_stderr(bench: Bench) -> None:
    bench.cluster()
    bench.submit("boom", customToolkitSettings={"commandLine": "echo first >&2; echo 'the real reason' >&2; exit 3"})
    props = bench.wait_job("boom")
    assert props["executionState"] == "failed" and props["executionInfo"]["exitCode"] == 3
    error = props["executionInfo"]["errors"][0]
    assert "code 3" in error["message"] and "the real reason" in error["message"]
    assert error["details"][0]["name"] == "stderr"


def test_a_job_killed_by_a_signal_says_so_and_its_stderr_holds_only_its_own_output(bench: Bench) -> None:
    # Through the shell (a command line of several commands) and without one (a plain command line).
    bench.cluster()
    kill_self = f"{sys.executable} -c 'import os; os.kill(os.getpid(), 9)'"
    bench.submit("shell", customToolkitSettings={"commandLine": f"echo last words >&2; {kill_self}"})
    props = bench.wait_job("shell")
    assert props["executionState"] == "failed" and props["executionInfo"]["exitCode"] == 137
    message = props["executionInfo"]["errors"][0]["message"]
    assert "killed by SIGKILL" in message and "out-of-memory" in message and "last words" in message
    # Bash's report of a killed child ("task-0.sh: line 5: 123 Killed ( ...the wrapper's body... )") is not
    # the job's output.
    assert (bench.stdouterr("shell") / "stderr.txt").read_text() == "last words\n"
    sleep = ["sleep", f"600.{os.getpid()}"]  # (no other test's)
    bench.submit("plain", customToolkitSettings={"commandLine": " ".join(sleep)})
    bench.wait_job("plain", states=("running",))
    sleeper = wait_for(lambda: next((p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == sleep), None))
    sleeper.terminate()
    props = bench.wait_job("plain")
    assert props["executionState"] == "failed" and props["executionInfo"]["exitCode"] == 143
    assert "killed by SIGTERM" in props["executionInfo"]["errors"][0]["message"]


def test_job_preparation_input_and_output_directories(bench: Bench) -> None:
    bench.cluster()
    data = bench.tmp / "data"
    data.mkdir()
    (data / "in.txt").write_text("input!")
    command = "cat $AZ_BATCHAI_INPUT_DATA/in.txt > $AZ_BATCHAI_OUTPUT_MODEL/copy.txt; cat $AZ_BATCHAI_JOB_TEMP/prep.txt"
    bench.submit(
        "dirs",
        jobPreparation={"commandLine": "echo prepared; echo ready > prep.txt"},
        inputDirectories=[{"id": "DATA", "path": str(data)}],
        outputDirectories=[{"id": "MODEL", "pathPrefix": str(bench.tmp / "out"), "pathSuffix": "models"}],
        customToolkitSettings={"commandLine": command},
    )
    props = bench.wait_job("dirs")
    assert props["executionState"] == "succeeded", props.get("executionInfo")
    model_dir = bench.tmp / "out" / props["jobOutputDirectoryPathSegment"] / "models"
    assert (model_dir / "copy.txt").read_text() == "input!"
    stdouterr = bench.stdouterr("dirs")
    assert (stdouterr / "stdout-job_prep.txt").read_text() == "prepared\n"
    assert (stdouterr / "stdout.txt").read_text() == "ready\n"
    # Files are listed with signed links that download without a token, and expire.
    files = bench.files("dirs", "MODEL")
    assert set(files) == {"copy.txt"} and files["copy.txt"]["properties"]["contentLength"] == 6
    assert httpx.get(files["copy.txt"]["downloadUrl"]).content == b"input!"
    tampered = files["copy.txt"]["downloadUrl"].replace("sig=", "sig=0")
    assert httpx.get(tampered).status_code == 403
    logs = bench.files("dirs")
    assert {"stdout.txt", "stderr.txt", "stdout-job_prep.txt", "execution.log"} <= set(logs)


def test_failing_job_preparation_fails_the_job(bench: Bench) -> None:
    bench.cluster()
    bench.submit(
        "prep",
        jobPreparation={"commandLine": "echo nope >&2; exit 7"},
        customToolkitSettings={"commandLine": "echo should-not-run"},
    )
    props = bench.wait_job("prep")
    assert props["executionState"] == "failed" and props["executionInfo"]["exitCode"] == 7
    assert (bench.stdouterr("prep") / "stdout.txt").read_text() == ""
    assert (bench.stdouterr("prep") / "stderr-job_prep.txt").read_text() == "nope\n"


def test_secrets_reach_the_job_but_never_the_api_or_logs(bench: Bench) -> None:
    bench.cluster()
    secret = "s3cr3t-token-value"
    expected = bench.tmp / "expected"
    expected.write_text(secret)
    bench.submit(
        "secret",
        secrets=[{"name": "MY_SECRET", "value": secret}],
        customToolkitSettings={"commandLine": f'test "$MY_SECRET" = "$(cat {expected})"'},
    )
    props = bench.wait_job("secret")
    assert props["executionState"] == "succeeded"
    for response in (
        bench.server.http.get(url(bench.job_path("secret"))),
        bench.server.http.get(url(f"{bench.ws}/experiments/exp/jobs")),
    ):
        assert secret not in response.text
    assert props["secrets"] == [{"name": "MY_SECRET"}]
    assert secret not in (bench.server.home / "test-server.log").read_text()
    for path in bench.stdouterr("secret").iterdir():
        assert secret not in path.read_text(), path


def pid_of(marker: Path) -> int:
    return int(wait_for(lambda: marker.exists() and marker.read_text().strip(), message=f"{marker}"))


def test_terminate_stops_the_process_tree(bench: Bench) -> None:
    bench.cluster()
    marker, daemon_marker = bench.tmp / "child.pid", bench.tmp / "daemon.pid"
    # A child in the job's session, and a daemon outside it (a session of its own, its parent gone).
    daemon = f"( setsid bash -c 'echo $$ > {daemon_marker}; exec sleep 300' < /dev/null > /dev/null 2>&1 & )"
    bench.submit("long", customToolkitSettings={"commandLine": f"sleep 300 & echo $! > {marker}; {daemon}; wait"})
    bench.wait_job("long", ("running",))
    child, daemon_pid = pid_of(marker), pid_of(daemon_marker)
    bench.terminate("long")
    props = bench.wait_job("long")
    assert props["executionState"] == "failed"
    assert props["executionInfo"]["errors"][0]["code"] == "JobTerminated"
    assert process_gone(child)
    assert process_gone(daemon_pid)
    # A job that ignores SIGTERM is killed after the grace period.
    marker2 = bench.tmp / "stubborn.pid"
    bench.submit(
        "stubborn",
        customToolkitSettings={"commandLine": f"trap '' TERM; echo $$ > {marker2}; while true; do sleep 0.1; done"},
    )
    pid = pid_of(marker2)
    bench.terminate("stubborn")
    assert bench.wait_job("stubborn", timeout=30)["executionState"] == "failed"
    assert process_gone(pid)


def test_terminate_gives_a_job_behind_a_shell_its_grace_period(bench: Bench) -> None:
    """A command line with shell syntax runs under bash: when bash ends on SIGTERM, the job's own process still
    has the grace period to save its work (as a training script does on SIGTERM) before it is killed."""
    bench.cluster()
    ready, saved = bench.tmp / "ready", bench.tmp / "saved"
    script = bench.tmp / "trainer.py"
    script.write_text(
        "import signal, sys, time\n"
        "def save(*_):\n"
        "    time.sleep(1)  # writing a checkpoint\n"
        f"    open({str(saved)!r}, 'w').write('checkpoint')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, save)\n"
        f"open({str(ready)!r}, 'w').write('ready')\n"
        "time.sleep(120)\n"
    )
    bench.submit(
        "trainer", customToolkitSettings={"commandLine": f"cd $AZ_BATCHAI_JOB_TEMP && {sys.executable} {script}"}
    )
    wait_for(ready.exists, message="the trainer to be ready")
    bench.terminate("trainer")
    props = bench.wait_job("trainer")
    assert props["executionInfo"]["errors"][0]["code"] == "JobTerminated"
    assert saved.read_text() == "checkpoint"


def test_max_wall_clock_time_is_enforced(bench: Bench) -> None:
    bench.cluster()
    bench.submit("slow", constraints={"maxWallClockTime": "PT1S"}, customToolkitSettings={"commandLine": "sleep 300"})
    props = bench.wait_job("slow", timeout=30)
    assert props["executionState"] == "failed"
    error = props["executionInfo"]["errors"][0]
    assert error["code"] == "MaxWallClockTimeExceeded" and "PT1S" in error["message"]


def test_priority_order_high_normal_low(bench: Bench) -> None:
    bench.cluster()
    order = bench.tmp / "order.txt"
    gate = bench.tmp / "gate"
    bench.submit("blocker", customToolkitSettings={"commandLine": f"while [ ! -e {gate} ]; do sleep 0.05; done"})
    bench.wait_job("blocker", ("running",))
    for name, priority in (("low1", "low"), ("normal1", "normal"), ("high1", "high"), ("normal2", "normal")):
        bench.submit(
            name, schedulingPriority=priority, customToolkitSettings={"commandLine": f"echo {name} >> {order}"}
        )
    assert all(bench.job(n)["executionState"] == "queued" for n in ("low1", "normal1", "high1", "normal2"))
    gate.touch()
    for name in ("low1", "normal1", "high1", "normal2"):
        assert bench.wait_job(name)["executionState"] == "succeeded"
    assert order.read_text().split() == ["high1", "normal1", "normal2", "low1"]


def test_two_node_job_waits_until_both_nodes_are_free(bench: Bench) -> None:
    bench.cluster(target=2)
    bench.wait_nodes(idle=2)
    gate = bench.tmp / "gate"
    bench.submit("one", customToolkitSettings={"commandLine": f"while [ ! -e {gate} ]; do sleep 0.05; done"})
    bench.wait_job("one", ("running",))
    seen = bench.tmp / "seen"
    seen.mkdir()
    # A custom toolkit's command runs on the master node (as in Batch AI), with the host file of both nodes.
    command = f"touch {seen}/$AZ_BATCHAI_TASK_INDEX-$AZ_BATCHAI_NODE_NAME && cp $AZ_BATCHAI_MPI_HOST_FILE {seen}/hosts"
    bench.submit("two", node_count=2, customToolkitSettings={"commandLine": command})
    counts = bench.cluster_state()["nodeStateCounts"]
    assert counts["idleNodeCount"] == 1 and counts["runningNodeCount"] == 1
    assert bench.job("two")["executionState"] == "queued"
    gate.touch()
    assert bench.wait_job("two")["executionState"] == "succeeded"
    assert sorted(p.name for p in seen.iterdir()) == ["0-node-0", "hosts"]
    assert (seen / "hosts").read_text() == "127.0.0.1 slots=2\n"  # local nodes share this host's address
    out = bench.stdouterr("two")
    assert (out / "stdout.txt").exists() and not (out / "stdout-wk-1.txt").exists()


def gated(bench: Bench, name: str, gate: Path) -> None:
    bench.submit(name, customToolkitSettings={"commandLine": f"while [ ! -e {gate} ]; do sleep 0.05; done"})


@pytest.mark.parametrize("option", ["requeue", "terminate", "waitforjobcompletion"])
def test_resize_down_honours_the_deallocation_option(bench: Bench, option: str) -> None:
    bench.cluster(target=1, option=option)
    gate = bench.tmp / "gate"
    gated(bench, "busy", gate)
    bench.wait_job("busy", ("running",))
    response = bench.server.http.patch(
        url(f"{bench.ws}/clusters/c"),
        json={"properties": {"scaleSettings": {"manual": {"targetNodeCount": 0, "nodeDeallocationOption": option}}}},
    )
    assert response.status_code == 200
    if option == "requeue":
        assert bench.wait_job("busy", ("queued",))["executionState"] == "queued"
        bench.wait_nodes(total=0)
        gate.touch()
        bench.server.http.patch(
            url(f"{bench.ws}/clusters/c"),
            json={
                "properties": {"scaleSettings": {"manual": {"targetNodeCount": 1, "nodeDeallocationOption": option}}}
            },
        )
        assert bench.wait_job("busy")["executionState"] == "succeeded"
    elif option == "terminate":
        props = bench.wait_job("busy")
        assert props["executionState"] == "failed"
        assert props["executionInfo"]["errors"][0]["code"] == "NodeDeallocated"
        bench.wait_nodes(total=0)
    else:
        state = wait_for(
            lambda: bench.cluster_state()["nodeStateCounts"]["leavingNodeCount"] == 1 or None,
            message="the node to be leaving",
        )
        assert state
        assert bench.job("busy")["executionState"] == "running"
        gate.touch()
        assert bench.wait_job("busy")["executionState"] == "succeeded"
        bench.wait_nodes(total=0)


def test_auto_scale_grows_while_jobs_wait_and_shrinks_when_idle(bench: Bench) -> None:
    bench.cluster(auto=(0, 2))
    bench.wait_nodes(total=0)
    gate = bench.tmp / "gate"
    gated(bench, "a", gate)
    gated(bench, "b", gate)
    wait_for(lambda: bench.cluster_state()["nodeStateCounts"]["runningNodeCount"] == 2, message="two nodes running")
    gate.touch()
    for name in ("a", "b"):
        assert bench.wait_job(name)["executionState"] == "succeeded"
    bench.wait_nodes(total=0, timeout=20)


def test_an_auto_scale_cluster_starts_with_its_initial_nodes_for_a_while(bench: Bench) -> None:
    """``initialNodeCount`` (az's ``--target`` beside ``--min``/``--max``): allocated and set up at creation,
    then left to auto-scale once no job has needed them for the hold (3 s here, 5 minutes by default)."""
    bench.server.env["BATCHAI_AUTO_SCALE_INITIAL_SECONDS"] = "3"
    bench.server.restart()
    runs = bench.tmp / "setup-runs"
    auto = {"minimumNodeCount": 0, "maximumNodeCount": 2, "initialNodeCount": 2}
    setup = {"commandLine": f"echo $AZ_BATCHAI_NODE_NAME >> {runs}", "stdOutErrPathPrefix": str(bench.tmp)}
    body = {
        "properties": {
            "vmSize": "STANDARD_NC6",
            "scaleSettings": {"autoScale": auto},
            "nodeSetup": {"setupTask": setup},
        }
    }
    assert bench.server.http.put(url(f"{bench.ws}/clusters/c"), json=body).status_code == 200
    bench.wait_nodes(idle=2, total=2)
    assert sorted(runs.read_text().split()) == ["node-0", "node-1"]
    bench.wait_nodes(total=0)


def test_a_job_s_node_list_names_the_nodes_it_ran_on(bench: Bench) -> None:
    bench.cluster(target=2)
    bench.wait_nodes(idle=2)
    gate = bench.tmp / "gate"
    bench.submit("first", customToolkitSettings={"commandLine": f"while [ ! -e {gate} ]; do sleep 0.05; done"})
    bench.wait_job("first", states=("running",))
    bench.submit("second")  # on the other node
    assert bench.wait_job("second")["executionState"] == "succeeded"
    held = bench.tmp / "held"
    # It waits for "first" to free its node; its command runs on its first node, and it holds both.
    bench.submit(
        "waiting", node_count=2, customToolkitSettings={"commandLine": f"while [ ! -e {held} ]; do sleep 0.05; done"}
    )

    def logins(job: str) -> list[Any]:
        response = bench.server.http.post(url(bench.job_path(job) + "/listRemoteLoginInformation"))
        return [(n["nodeId"], n["ipAddress"]) for n in response.json()["value"]]

    assert logins("first") == [("node-0", "127.0.0.1")] and logins("second") == [("node-1", "127.0.0.1")]
    assert logins("waiting") == []  # not started: no node yet
    gate.touch()
    assert bench.wait_job("first")["executionState"] == "succeeded"
    assert logins("first") == [("node-0", "127.0.0.1")]  # still, once it has ended
    bench.wait_job("waiting", states=("running",))
    assert logins("waiting") == [("node-0", "127.0.0.1"), ("node-1", "127.0.0.1")]
    held.touch()
    assert bench.wait_job("waiting")["executionState"] == "succeeded"


def test_a_node_empties_its_job_temp_dir_for_each_new_job(bench: Bench) -> None:
    """As Batch AI did: $AZ_BATCHAI_JOB_TEMP_DIR is emptied of earlier jobs when a node starts a new one, so job
    temp files do not pile up; what a job was told to write there (its stdouterr here) stays."""
    bench.cluster(target=1)
    bench.wait_nodes(idle=1)
    scratch = "echo scratch > $AZ_BATCHAI_JOB_TEMP/scratch.txt; mkdir $AZ_BATCHAI_JOB_TEMP/data"
    bench.submit(
        "first", stdOutErrPathPrefix="$AZ_BATCHAI_JOB_TEMP_DIR", customToolkitSettings={"commandLine": scratch}
    )
    assert bench.wait_job("first")["executionState"] == "succeeded"
    (node_dir,) = (bench.server.home / "nodes").glob("*/node-0")
    (first_dir,) = [d for d in (node_dir / "jobs").iterdir() if d.name.isdigit()]
    first_log = node_dir / "jobs" / bench.job("first")["jobOutputDirectoryPathSegment"] / "stdouterr" / "stdout.txt"
    assert (first_dir / "wd" / "scratch.txt").read_text() == "scratch\n"  # kept until the next job
    assert first_log.exists()
    first_inode = first_dir.stat().st_ino

    bench.submit("second", customToolkitSettings={"commandLine": "ls $AZ_BATCHAI_JOB_TEMP_DIR"})
    assert bench.wait_job("second")["executionState"] == "succeeded"
    wait_for(lambda: not first_dir.exists(), message="the first job's temp directory to go")
    (second_dir,) = [d for d in (node_dir / "jobs").iterdir() if d.name.isdigit()]  # the second job's, only
    assert second_dir != first_dir
    assert first_log.exists()  # not a job's temp directory: left alone

    # The node made the next job's directory from the first's, emptied (job_dirs): nothing of it is left.
    bench.submit("third", customToolkitSettings={"commandLine": "ls -A; echo end"})
    assert bench.wait_job("third")["executionState"] == "succeeded"
    wait_for(lambda: not second_dir.exists(), message="the second job's temp directory to go")
    (third_dir,) = [d for d in (node_dir / "jobs").iterdir() if d.name.isdigit()]
    assert third_dir.stat().st_ino == first_inode
    assert [spare.name for spare in (node_dir / "spare").iterdir()] == [second_dir.name]  # the next one's
    assert (bench.stdouterr("third") / "stdout.txt").read_text() == "end\n"  # its wd was empty


def test_deleting_a_job_removes_its_shared_job_temp_dir(bench: Bench) -> None:
    """$AZ_BATCHAI_SHARED_JOB_TEMP stays while the job exists (its nodes may share files there) and goes with
    the job; other jobs' directories stay, and so does the job's output."""
    bench.cluster(target=1)
    bench.wait_nodes(idle=1)
    write = 'echo shared > "$AZ_BATCHAI_SHARED_JOB_TEMP/data.txt"; echo "$AZ_BATCHAI_SHARED_JOB_TEMP"'
    for name in ("kept", "deleted"):
        bench.submit(name, customToolkitSettings={"commandLine": write})
        assert bench.wait_job(name)["executionState"] == "succeeded"

    def shared_dir(name: str) -> Path:
        stdout = bench.tmp / "logs" / bench.job(name)["jobOutputDirectoryPathSegment"] / "stdouterr" / "stdout.txt"
        return Path(stdout.read_text().strip())

    kept, deleted = shared_dir("kept"), shared_dir("deleted")
    assert kept != deleted and (deleted / "data.txt").read_text() == "shared\n"
    output = bench.tmp / "logs" / bench.job("deleted")["jobOutputDirectoryPathSegment"]
    assert bench.server.http.delete(url(bench.job_path("deleted"))).status_code == 200
    assert not deleted.exists()
    assert (kept / "data.txt").exists() and output.exists()
    # Deleting the cluster takes its directory on this host, nodes and shared storage alike; output stays.
    cluster_dir = kept.parents[2]
    assert cluster_dir.parent == bench.server.home / "nodes" and (cluster_dir / "node-0").is_dir()
    assert bench.server.http.delete(url(f"{bench.ws}/clusters/c")).status_code == 200
    wait_for(lambda: not cluster_dir.exists(), message="the cluster's directory to go")
    assert output.exists()


def test_failing_setup_task_makes_nodes_unusable_and_the_cluster_reports_it(bench: Bench) -> None:
    prefix = bench.tmp / "setup-logs"
    bench.cluster(
        target=1,
        nodeSetup={
            "setupTask": {"commandLine": "echo setting up; echo broken >&2; exit 4", "stdOutErrPathPrefix": str(prefix)}
        },
    )
    props = wait_for(
        lambda: (p := bench.cluster_state())["nodeStateCounts"]["unusableNodeCount"] == 1 and p,
        message="the node to become unusable",
    )
    error = props["errors"][0]
    assert error["code"] == "SetupTaskFailed" and "exit code 4" in error["message"]
    suffix = props["nodeSetup"]["setupTask"]["stdOutErrPathSuffix"]
    assert uuid.UUID(suffix.rsplit("/", 1)[1])  # a GUID at its end, as Batch AI's
    assert (prefix / suffix / "node-0" / "stdout.txt").read_text() == "setting up\n"
    # A good setup task runs once per node and leaves it idle.
    bench.cluster(
        "good",
        target=2,
        nodeSetup={
            "setupTask": {
                "commandLine": f"echo $AZ_BATCHAI_NODE_NAME >> {bench.tmp}/setup-runs",
                "stdOutErrPathPrefix": str(prefix),
            }
        },
    )
    bench.wait_nodes("good", idle=2)
    assert sorted((bench.tmp / "setup-runs").read_text().split()) == ["node-0", "node-1"]


def test_what_a_setup_task_starts_runs_until_its_node_goes(bench: Bench) -> None:
    """A setup task may start services for the node's jobs (as a start task on Batch AI could): they outlive
    the setup task, in its session or out of it, and are stopped when the node is removed."""
    child, daemon = bench.tmp / "child.pid", bench.tmp / "daemon.pid"
    services = (
        f"sleep 300 > /dev/null 2>&1 & echo $! > {child}; "
        f"( setsid bash -c 'echo $$ > {daemon}; exec sleep 300' < /dev/null > /dev/null 2>&1 & )"
    )
    bench.cluster(target=1, nodeSetup={"setupTask": {"commandLine": services, "stdOutErrPathPrefix": str(bench.tmp)}})
    bench.wait_nodes(idle=1)
    pids = pid_of(child), pid_of(daemon)
    # A job on the node: it ran after the setup task ended, and the services still run when it is done.
    bench.submit("after", customToolkitSettings={"commandLine": f"kill -0 {pids[0]} {pids[1]}"})
    assert bench.wait_job("after")["executionState"] == "succeeded"
    assert not any(process_gone(pid) for pid in pids)
    response = bench.server.http.patch(
        url(f"{bench.ws}/clusters/c"), json={"properties": {"scaleSettings": {"manual": {"targetNodeCount": 0}}}}
    )
    assert response.status_code == 200
    bench.wait_nodes(total=0)
    wait_for(lambda: all(process_gone(pid) for pid in pids), message="the node's services to be stopped")


def test_cluster_mounts_appear_under_the_mount_root(bench: Bench) -> None:
    http = bench.server.http
    account = "runmount1"
    assert http.put(
        url(
            f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{bench.group}/"
            f"providers/Microsoft.Storage/storageAccounts/{account}"
        ),
        json={},
    ).status_code in (200, 201)
    assert http.put(f"/storage/{account}/shares/common").status_code == 201
    assert http.put(f"/storage/{account}/shares/common/files/hello.txt", content=b"shared").status_code == 201
    # A script uploaded to a share runs straight from the mount, as with Azure's fileMode 0777 (the az docs'
    # cluster.json runs its setup task so).
    script = b"#!/bin/bash\necho set up > $AZ_BATCHAI_MOUNT_ROOT/afs/setup-ran.txt\n"
    assert http.put(f"/storage/{account}/shares/common/files/setup.sh", content=script).status_code == 201
    bench.cluster(
        target=1,
        nodeSetup={
            "setupTask": {"commandLine": "$AZ_BATCHAI_MOUNT_ROOT/afs/setup.sh", "stdOutErrPathPrefix": str(bench.tmp)},
            "mountVolumes": {
                "azureFileShares": [
                    {"azureFileUrl": f"https://{account}.file.core.windows.net/common", "relativeMountPath": "afs"}
                ]
            },
        },
    )
    bench.wait_nodes(idle=1)
    assert http.get(f"/storage/{account}/shares/common/files/setup-ran.txt").content == b"set up\n"
    bench.submit(
        "reads", customToolkitSettings={"commandLine": 'test "$(cat $AZ_BATCHAI_MOUNT_ROOT/afs/hello.txt)" = shared'}
    )
    assert bench.wait_job("reads")["executionState"] == "succeeded"


def test_the_server_killed_mid_job_reattaches_and_the_job_finishes(bench: Bench) -> None:
    bench.cluster()
    gate = bench.tmp / "gate"
    command = f"echo before; while [ ! -e {gate} ]; do sleep 0.05; done; echo after; echo err-line >&2"
    bench.submit("survivor", customToolkitSettings={"commandLine": command})
    bench.wait_job("survivor", ("running",))
    stdout = bench.stdouterr("survivor") / "stdout.txt"
    wait_for(lambda: stdout.exists() and stdout.read_text() == "before\n", message="the job's process to run")
    bench.server.restart(kill=True)
    assert bench.job("survivor")["executionState"] == "running"
    gate.touch()
    props = bench.wait_job("survivor")
    assert props["executionState"] == "succeeded", props.get("executionInfo")
    assert (bench.stdouterr("survivor") / "stdout.txt").read_text() == "before\nafter\n"
    assert (bench.stdouterr("survivor") / "stderr.txt").read_text() == "err-line\n"


def test_a_process_started_but_never_recorded_is_found_after_a_restart(bench: Bench) -> None:
    """The server died after starting a process and before writing its pid down: the restarted server finds
    it by its pid file, so the job neither fails as lost nor leaves the process running unseen."""
    import sqlite3

    bench.cluster()
    gate = bench.tmp / "gate"
    bench.submit("unrecorded", customToolkitSettings={"commandLine": f"while [ ! -e {gate} ]; do sleep 0.05; done"})
    bench.wait_job("unrecorded", ("running",))
    database = bench.server.home / "batchai.db"

    def recorded() -> bool:
        with sqlite3.connect(database) as db:
            return db.execute("SELECT pid FROM tasks").fetchone()[0] is not None

    wait_for(recorded, message="the task's pid to be recorded")
    bench.server.stop(kill=True)
    with sqlite3.connect(database) as db:  # as if the server had died before recording the process
        db.execute("UPDATE tasks SET pid = NULL, pid_start = NULL, started_at = NULL, info = '{}'")
    bench.server.start()
    assert bench.job("unrecorded")["executionState"] == "running"
    gate.touch()
    props = bench.wait_job("unrecorded")
    assert props["executionState"] == "succeeded", props.get("executionInfo")


def test_a_job_whose_process_never_started_runs_again_after_a_restart(bench: Bench) -> None:
    """The server died after marking a job running and before starting its process: nothing of the job ran,
    so the restarted server queues it again (it does not fail it as lost), and it runs."""
    import sqlite3

    bench.cluster()
    gate = bench.tmp / "gate"
    bench.submit("unstarted", customToolkitSettings={"commandLine": f"while [ ! -e {gate} ]; do sleep 0.05; done"})
    bench.wait_job("unstarted", ("running",))
    database = bench.server.home / "batchai.db"

    def recorded() -> tuple[int, str] | None:
        with sqlite3.connect(database) as db:
            pid, info = db.execute("SELECT pid, info FROM tasks").fetchone()
        return (pid, info) if pid is not None else None

    pid, info = wait_for(recorded, message="the task's pid to be recorded")
    bench.server.stop(kill=True)
    # As if its process had never started: no process, no pid file, nothing recorded.
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid))
    Path(json.loads(info)["exit_file"]).with_suffix(".pid").unlink()
    with sqlite3.connect(database) as db:
        db.execute("UPDATE tasks SET pid = NULL, pid_start = NULL, started_at = NULL, info = '{}'")
    bench.server.start()
    gate.touch()
    props = bench.wait_job("unstarted")
    assert props["executionState"] == "succeeded", props.get("executionInfo")
    log = (bench.stdouterr("unstarted") / "execution.log").read_text()
    assert log.count("Job started on") == 2 and "attempt 2." in log
    server_log = (bench.server.home / "test-server.log").read_text()
    assert "requeued: its processes had not started when the server stopped" in server_log


def _crash_during_job(bench: Bench, *, launcher_too: bool) -> dict[str, Any]:
    """Kill the server, then the job's whole process group (and the launcher, which would otherwise
    record how the job ended), as a crash would; restart and return the job once it has ended."""
    bench.cluster()
    marker = bench.tmp / "victim.pid"
    bench.submit("victim", customToolkitSettings={"commandLine": f"echo $$ > {marker}; exec sleep 300"})
    pid = pid_of(marker)
    bench.server.stop(kill=True)
    doomed = [pid]
    if launcher_too:
        (launcher,) = [p for p in leftovers(bench.server.home) if "batchai.runtime.launcher" in p.info["cmdline"]]
        launcher.kill()
        doomed.append(launcher.pid)
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    wait_for(lambda: all(process_gone(p) for p in doomed), message="the job's processes to die")
    if not launcher_too:  # the launcher records the end (in the pid file) as it reaps the process
        nodes = bench.server.home / "nodes"
        wait_for(
            lambda: any(supervisor.recorded(p.with_suffix(".exit"))[0] for p in nodes.glob("*/*/jobs/*/task-*.pid")),
            message="the end recorded",
        )
    restarted_at = time.time()
    bench.server.start()
    props = bench.wait_job("victim")
    assert props["executionState"] == "failed"
    return {**props, "restarted_at": restarted_at}


def test_a_job_whose_processes_vanished_while_the_server_was_down_fails(bench: Bench) -> None:
    props = _crash_during_job(bench, launcher_too=True)
    assert props["executionInfo"]["errors"][0]["code"] == "JobProcessesLost"


def test_a_job_killed_while_the_server_was_down_fails_with_its_exit_code(bench: Bench) -> None:
    props = _crash_during_job(bench, launcher_too=False)  # the launcher, still running, records the end
    assert props["executionInfo"]["exitCode"] == 128 + signal.SIGKILL
    # It ended when it was killed, before the server started again, not when the server first looked.
    ended = datetime.fromisoformat(props["executionInfo"]["endTime"])
    assert ended.timestamp() < props["restarted_at"]


def test_a_job_outlives_a_sigterm_of_everything_with_its_exit_code_recorded(bench: Bench) -> None:
    """``pkill -f batchai`` (or a service manager stopping the server) sends SIGTERM to the server and to the
    launcher. The launcher carries on while what it started runs, so that the job's end is recorded as it
    happens, and a server started later finds the job's exit code, not a job lost."""
    bench.cluster()
    marker, gate, script = bench.tmp / "job.pid", bench.tmp / "gate", bench.tmp / "job.py"
    # A plain command (no shell around it): only the launcher, its parent, learns its exit code.
    script.write_text(
        "import os, sys, time\n"
        "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
        "while not os.path.exists(sys.argv[2]):\n    time.sleep(0.05)\n"
        "sys.exit(7)\n"
    )
    bench.submit("outlives", customToolkitSettings={"commandLine": f"{sys.executable} {script} {marker} {gate}"})
    pid_of(marker)
    (launcher,) = [p for p in leftovers(bench.server.home) if "batchai.runtime.launcher" in p.info["cmdline"]]
    launcher.terminate()
    bench.server.stop()
    gate.touch()
    wait_for(lambda: process_gone(launcher.pid), message="the launcher to end once the job has")
    bench.server.start()
    props = bench.wait_job("outlives")
    assert props["executionState"] == "failed"
    assert props["executionInfo"]["exitCode"] == 7, props["executionInfo"]
    assert props["executionInfo"]["errors"][0]["code"] == "JobFailed"


@pytest.mark.parametrize("what", ["resource group", "workspace", "experiment", "job"])
def test_a_delete_the_server_stopped_halfway_is_finished_after_a_restart(bench: Bench, what: str) -> None:
    """A delete asks the jobs inside to stop, waits for them, then removes the rows. A server killed while it
    waits leaves the resource marked deleting (shown so, and not to be changed); the restarted server finishes
    the delete once the jobs have ended, rather than leaving it half deleted showing Succeeded."""
    bench.cluster()
    # It ignores SIGTERM: the delete waits the grace period (3 s in tests) for it, time to kill the server.
    marker = bench.tmp / "stubborn.pid"
    command = f"trap '' TERM; echo $$ > {marker}; sleep 60 & wait; sleep 60"
    bench.submit("stubborn", customToolkitSettings={"commandLine": command})
    pid_of(marker)
    group = bench.ws.split("/providers/")[0]
    paths = {
        "resource group": (group, "2021-04-01"),
        "workspace": (bench.ws, "2018-05-01"),
        "experiment": (f"{bench.ws}/experiments/exp", "2018-05-01"),
        "job": (bench.job_path("stubborn"), "2018-05-01"),
    }
    path, version = paths[what]
    http = bench.server.http
    with httpx.Client(base_url=bench.server.endpoint, headers=http.headers, timeout=60) as other:

        def delete() -> None:
            with contextlib.suppress(httpx.HTTPError):  # (the server is killed while it answers)
                other.delete(url(path, version))

        thread = threading.Thread(target=delete)
        thread.start()
        wait_for(
            lambda: http.get(url(path, version)).json()["properties"]["provisioningState"].lower() == "deleting",
            message=f"the {what} to show deleting",
        )
        body = {"location": "eastus"} if what in ("resource group", "workspace") else {}
        if what != "job":
            error = http.put(url(path, version), json=body)
            assert error.status_code == 409, error.text
            assert error.json()["error"]["code"] == f"{what.title().replace(' ', '')}BeingDeleted"
        bench.server.stop(kill=True)
        thread.join(timeout=60)
    bench.server.start()
    http = bench.server.http
    wait_for(lambda: http.get(url(path, version)).status_code == 404, timeout=60, message=f"the {what} to go")
    assert http.get(url(bench.job_path("stubborn"))).status_code == 404
    if what in ("resource group", "workspace"):  # its cluster went with it
        assert http.get(url(f"{bench.ws}/clusters/c")).status_code == 404


def _workspace_elsewhere(bench: Bench) -> tuple[str, dict[str, Any]]:
    """A second workspace of the bench's group with a 1-node cluster ``elsewhere``: its id, and the cluster's body."""
    http = bench.server.http
    other = bench.ws.replace("/workspaces/ws", "/workspaces/other")
    assert http.put(url(other), json={"location": "eastus"}).status_code == 200
    cluster = {"properties": {"vmSize": "STANDARD_NC6", "scaleSettings": {"manual": {"targetNodeCount": 1}}}}
    assert http.put(url(f"{other}/clusters/elsewhere"), json=cluster).status_code == 200
    return other, cluster


def _job_on(bench: Bench, cluster_id: str, command: str) -> dict[str, Any]:
    return {
        "properties": {
            "cluster": {"id": cluster_id},
            "nodeCount": 1,
            "stdOutErrPathPrefix": str(bench.tmp / "logs"),
            "customToolkitSettings": {"commandLine": command},
        }
    }


def test_nothing_is_made_under_what_is_being_deleted(bench: Bench) -> None:
    """While a workspace (or its group) is being deleted, nothing new goes in it: a job in one of its experiments
    (even on a cluster elsewhere), an experiment, a cluster, a workspace in the group, a change of tags (409
    <Kind>BeingDeleted). Such a job would outlive the delete's first step, which asked the jobs inside to stop."""
    bench.cluster()
    http = bench.server.http
    other, cluster = _workspace_elsewhere(bench)
    marker = bench.tmp / "stubborn.pid"
    command = f"trap '' TERM; echo $$ > {marker}; sleep 60 & wait; sleep 60"
    bench.submit("stubborn", customToolkitSettings={"commandLine": command})
    pid_of(marker)
    group = bench.ws.split("/providers/")[0]
    job = _job_on(bench, f"{other}/clusters/elsewhere", "sleep 60")
    for deleted, version in ((bench.ws, "2018-05-01"), (group, "2021-04-01")):
        with httpx.Client(base_url=bench.server.endpoint, headers=http.headers, timeout=60) as client:
            target = url(deleted, version)
            thread = threading.Thread(target=client.delete, args=(target,))
            thread.start()
            wait_for(
                lambda: http.get(target).json()["properties"]["provisioningState"].lower() == "deleting",  # noqa: B023
                message="the delete to begin",
            )
            kind = "Workspace" if deleted == bench.ws else "ResourceGroup"
            refused = [
                http.put(url(f"{bench.ws}/experiments/exp/jobs/late"), json=job),
                http.put(url(f"{bench.ws}/experiments/exp2")),
                http.put(url(f"{bench.ws}/clusters/c2"), json=cluster),
                http.patch(url(deleted, version), json={"tags": {"a": "b"}}),
            ]
            if deleted == group:
                refused.append(http.put(url(bench.ws.replace("/ws", "/ws3")), json={"location": "eastus"}))
            for response in refused:
                assert response.status_code == 409, response.text
                assert response.json()["error"]["code"] == f"{kind}BeingDeleted", response.text
            thread.join(timeout=60)
        if deleted == bench.ws:  # again, with a group holding the workspace: it was made anew
            assert http.put(url(bench.ws), json={"location": "eastus"}).status_code == 200
            assert http.put(url(f"{bench.ws}/experiments/exp")).status_code == 200
            bench.cluster()
            marker.unlink()
            bench.submit("stubborn", customToolkitSettings={"commandLine": command})
            pid_of(marker)
    assert http.get(url(group, "2021-04-01")).status_code == 404


def test_a_delete_left_half_done_stops_jobs_it_never_asked(bench: Bench) -> None:
    """A workspace left marked deleting by a stopped server, holding a job that its delete never asked to stop
    (made as the delete began): the restarted server stops it and finishes the delete, rather than waiting for
    the job to end by itself (here in ten minutes; at worst at its maxWallClockTime, days later)."""
    import sqlite3

    http = bench.server.http
    other, _ = _workspace_elsewhere(bench)
    marker = bench.tmp / "late.pid"
    job = _job_on(bench, f"{other}/clusters/elsewhere", f"echo $$ > {marker}; sleep 600")
    assert http.put(url(bench.job_path("late")), json=job).status_code == 200
    pid = pid_of(marker)
    bench.server.stop(kill=True)
    with sqlite3.connect(bench.server.home / "batchai.db") as db:  # the first step's mark, the job not asked
        db.execute("UPDATE workspaces SET provisioning_state = 'deleting' WHERE key = 'ws'")
    bench.server.start()
    http = bench.server.http
    wait_for(lambda: http.get(url(bench.ws)).status_code == 404, timeout=30, message="the workspace to go")
    wait_for(lambda: process_gone(pid), message="the job's process to stop")
    assert http.get(url(f"{other}/clusters/elsewhere")).status_code == 200


@pytest.mark.parametrize("moment", ["while it releases the nodes", "once it answered"])
def test_a_cluster_delete_the_server_stopped_before_its_nodes_were_released(bench: Bench, moment: str) -> None:
    """A cluster's rows go first, its nodes are released after the commit: a setup task stopped (up to the
    grace period when it ignores SIGTERM), a daemon it left SIGKILLed by a timer the grace period after the
    answer. A server killed in between leaves no row naming them: the next one releases what no row names
    (processes, work areas) as it starts."""
    import psutil

    marker = bench.tmp / "setup.pid"
    if moment == "once it answered":  # a daemon the setup task leaves, which ignores SIGTERM
        command = f"(trap '' TERM; echo $BASHPID > {marker}; exec sleep 600) & sleep 0.2; exit 0"
    else:  # the setup task itself ignores SIGTERM (its child too)
        command = f"trap '' TERM; (echo $BASHPID > {marker}; exec sleep 600) & wait"
    setup = {"commandLine": command, "stdOutErrPathPrefix": str(bench.tmp / "logs")}
    bench.cluster(nodeSetup={"setupTask": setup})
    pid = pid_of(marker)
    if moment == "once it answered":
        bench.wait_nodes(idle=1)
    path = f"{bench.ws}/clusters/c"
    http = bench.server.http
    nodes = bench.server.home / "nodes"
    assert list(nodes.glob("*/node-0"))
    if moment == "once it answered":
        assert http.delete(url(path)).status_code == 200
    else:
        with httpx.Client(base_url=bench.server.endpoint, headers=http.headers, timeout=60) as client:

            def delete() -> None:
                with contextlib.suppress(httpx.HTTPError):  # (the server is killed while it answers)
                    client.delete(url(path))

            thread = threading.Thread(target=delete)
            thread.start()
            # The rows are gone; the request still stops the setup task, which ignores SIGTERM.
            wait_for(lambda: http.get(url(path)).status_code == 404, message="the cluster's rows to go")
            assert thread.is_alive()
            bench.server.stop(kill=True)
            thread.join(timeout=60)
    if moment == "once it answered":
        bench.server.stop(kill=True)
    assert not process_gone(pid), "the test needs the server killed before the process was"
    bench.server.start()
    try:
        wait_for(lambda: process_gone(pid), timeout=15, message="what the setup task left to be stopped")
        assert not [p for p in nodes.iterdir() if p.is_dir()], list(nodes.iterdir())
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    bench.cluster()  # the same id again (SQLite reuses it): a clean node
    bench.wait_nodes(idle=1)


def test_output_files_page_through_next_links(bench: Bench) -> None:
    """listOutputFiles by pages of maxresults: each page looks only at its own entries; following nextLink
    gives every file and folder once, in name order, and never a FIFO or a link."""
    bench.cluster()
    command = (
        "cd $AZ_BATCHAI_OUTPUT_OUT && for i in $(seq -w 1 23); do echo $i > f$i.txt; done && mkdir d "
        "&& mkfifo f10.fifo && ln -s /etc f11.link"
    )
    bench.submit("many", customToolkitSettings={"commandLine": command}, outputDirectories=outputs(bench))
    assert bench.wait_job("many")["executionState"] == "succeeded"
    link: str | None = url(bench.job_path("many") + "/listOutputFiles") + "&outputdirectoryid=OUT&maxresults=10"
    pages = []
    while link:
        response = bench.server.http.post(link)
        assert response.status_code == 200, response.text
        pages.append([f["name"] for f in response.json()["value"]])
        link = response.json().get("nextLink")
    expected = sorted([f"f{i:02d}.txt" for i in range(1, 24)] + ["d"])
    assert [name for names in pages for name in names] == expected
    # 26 names in the folder: pages of 10, the second shorter by the FIFO and the link it held.
    assert [len(names) for names in pages] == [10, 8, 6]


def test_an_output_file_whose_name_no_link_carries_is_left_out_not_the_whole_list(bench: Bench) -> None:
    """A job may name a file with a '\\' (which download links cannot carry): the other files are still listed."""
    bench.cluster()
    command = 'cd $AZ_BATCHAI_OUTPUT_OUT && echo a > ok.txt && echo b > "back\\\\slash.txt"'
    bench.submit("odd", customToolkitSettings={"commandLine": command}, outputDirectories=outputs(bench))
    assert bench.wait_job("odd")["executionState"] == "succeeded"
    out = bench.tmp / "out" / bench.job("odd")["jobOutputDirectoryPathSegment"] / "outputs"
    assert sorted(p.name for p in out.iterdir()) == ["back\\slash.txt", "ok.txt"]
    assert list(bench.files("odd", "OUT")) == ["ok.txt"]


def test_a_node_is_free_for_the_next_job_only_once_the_last_one_s_processes_are_gone(bench: Bench) -> None:
    """What a job leaves running (here ignoring SIGTERM: killed after the grace period, 3 s in tests) holds its
    node until it is gone, so that the next job has the node (its GPUs, its memory) to itself; the job's end
    time is still when its own process ended."""
    bench.cluster()
    marker = bench.tmp / "lingering.pid"
    bench.submit(
        "first",
        customToolkitSettings={
            "commandLine": f"(trap '' TERM; echo $BASHPID > {marker}; exec sleep 300) & "
            f"while [ ! -s {marker} ]; do sleep 0.01; done"  # (its trap is set before the job ends)
        },
    )
    bench.submit("second", customToolkitSettings={"commandLine": f"! kill -0 $(cat {marker}) 2>/dev/null"})
    first, second = bench.wait_job("first"), bench.wait_job("second", timeout=60)
    assert first["executionState"] == second["executionState"] == "succeeded", second.get("executionInfo")
    ended = datetime.fromisoformat(first["executionInfo"]["endTime"].replace("Z", "+00:00"))
    started = datetime.fromisoformat(second["executionInfo"]["startTime"].replace("Z", "+00:00"))
    assert (started - ended).total_seconds() > 2, (ended, started)  # the grace period passed in between
    assert process_gone(pid_of(marker))


def test_a_cluster_delete_stops_its_nodes_setup_tasks_together(bench: Bench) -> None:
    """Setup tasks that ignore SIGTERM hold a cluster's delete for the grace period (3 s here): all of its
    nodes' at once, not one grace period after another."""
    marks, ready = bench.tmp / "terms", bench.tmp / "ready"
    # Each SIGTERM the setup task gets is marked with its node (a stop may signal its group and it alike), and the
    # time from bash itself: a `date` the trap ran would be in the group the next SIGTERM goes to.
    command = (
        f"trap 'echo $AZ_BATCHAI_NODE_NAME $EPOCHREALTIME >> {marks}' TERM; echo $AZ_BATCHAI_NODE_NAME >> {ready}; "
        "while true; do sleep 0.1; done"
    )
    bench.cluster(target=3, nodeSetup={"setupTask": {"commandLine": command, "stdOutErrPathPrefix": str(bench.tmp)}})
    wait_for(lambda: ready.exists() and len(ready.read_text().split()) == 3, message="the three setup tasks to run")
    assert bench.server.http.delete(url(f"{bench.ws}/clusters/c")).status_code == 200
    first: dict[str, float] = {}
    for line in marks.read_text().splitlines():
        node, when = line.split()
        first.setdefault(node, float(when))
    assert sorted(first) == ["node-0", "node-1", "node-2"], first
    spread = max(first.values()) - min(first.values())
    assert spread < 2.0, f"the first SIGTERMs {spread:.1f} s apart: the nodes were stopped one by one"


def test_a_workspace_delete_that_its_group_s_delete_overtook_answers_as_for_what_is_gone(bench: Bench) -> None:
    """A workspace's delete and its group's, under way together, both wait for the same stubborn job; whichever
    removes the rows first, the other finds them gone and answers as for what is gone (204), not 404 for the
    group the other just removed."""
    bench.cluster()
    http = bench.server.http
    marker = bench.tmp / "stubborn.pid"
    bench.submit("stubborn", customToolkitSettings={"commandLine": f"trap '' TERM; echo $$ > {marker}; sleep 60"})
    pid_of(marker)
    group = bench.ws.split("/providers/")[0]
    answers: dict[str, int] = {}
    with httpx.Client(base_url=bench.server.endpoint, headers=http.headers, timeout=60) as client:

        def delete(target: str) -> None:
            answers[target] = client.delete(target).status_code

        workspace, whole = url(bench.ws), url(group, "2021-04-01")
        threads = [threading.Thread(target=delete, args=(target,)) for target in (whole, workspace)]
        threads[0].start()  # the group's first: it is likelier to end first
        wait_for(lambda: http.get(workspace).json()["properties"]["provisioningState"] == "deleting")
        threads[1].start()
        for thread in threads:
            thread.join(timeout=60)
    assert answers[whole] == 200
    assert answers[workspace] in (200, 204), answers
    assert http.get(whole).status_code == 404
