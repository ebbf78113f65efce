"""``batchai job file list|stream|download`` and ``job wait`` against jobs that really run."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.conftest import BIN, Server, wait_for


def setup(server: Server, tmp_path: Path) -> tuple[str, ...]:
    server.ok("group", "create", "-n", "files.rg")
    server.ok("workspace", "create", "-g", "files.rg", "-n", "ws")
    server.ok("experiment", "create", "-g", "files.rg", "-w", "ws", "-n", "exp")
    server.ok("cluster", "create", "-n", "c", "-g", "files.rg", "-w", "ws", "-s", "local", "-t", "1")
    return ("-g", "files.rg", "-w", "ws", "-e", "exp")


def job_file(tmp_path: Path, command: str, **extra: object) -> str:
    path = tmp_path / f"job-{abs(hash(command))}.json"
    path.write_text(
        json.dumps(
            {
                "properties": {
                    "nodeCount": 1,
                    "stdOutErrPathPrefix": str(tmp_path / "logs"),
                    "customToolkitSettings": {"commandLine": command},
                    **extra,
                }
            }
        )
    )
    return str(path)


def test_stream_follows_the_file_until_the_job_ends(server: Server, tmp_path: Path) -> None:
    e = setup(server, tmp_path)
    gate = tmp_path / "gate"
    command = f"echo line-1 >&2; while [ ! -e {gate} ]; do sleep 0.05; done; echo line-2 >&2; echo line-3 >&2"
    server.ok("job", "create", "-n", "talker", "-c", "c", *e, "-f", job_file(tmp_path, command))
    environ = {"BATCHAI_HOME": str(server.home), "PATH": "/usr/bin:/bin"}
    stream = subprocess.Popen(
        [str(BIN / "batchai"), "job", "file", "stream", "-j", "talker", *e, "-f", "stderr.txt"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
    )
    try:
        assert stream.stdout is not None
        first = stream.stdout.readline()
        assert first == b"line-1\n"
        gate.touch()
        rest, err = stream.communicate(timeout=60)
    finally:
        if stream.poll() is None:
            stream.kill()
            stream.wait()
    assert stream.returncode == 0, err
    assert rest == b"line-2\nline-3\n"
    assert b"File found with URL" in err


def test_stream_and_wait_ride_out_a_server_restart(server: Server, tmp_path: Path) -> None:
    """A server restarted while ``job file stream`` and ``job wait`` follow a job: both keep trying (as az's
    client retried), then carry on where they were, each line of the file printed once."""
    e = setup(server, tmp_path)
    gate = tmp_path / "gate"
    command = f"echo line-1; while [ ! -e {gate} ]; do sleep 0.05; done; echo line-2; exit 3"
    server.ok("job", "create", "-n", "restarted", "-c", "c", *e, "-f", job_file(tmp_path, command))
    environ = {"BATCHAI_HOME": str(server.home), "PATH": "/usr/bin:/bin"}
    follow = ["-j", "restarted", *e]
    stream_err, wait_err = tmp_path / "stream.err", tmp_path / "wait.err"
    with stream_err.open("wb") as stream_errors, wait_err.open("wb") as wait_errors:
        stream = subprocess.Popen(
            [str(BIN / "batchai"), "job", "file", "stream", *follow, "-f", "stdout.txt", "--interval", "0.1"],
            stdout=subprocess.PIPE,
            stderr=stream_errors,
            env=environ,
        )
        waiter = subprocess.Popen(
            [str(BIN / "batchai"), "job", "wait", "-n", "restarted", *e, "--interval", "0.1"],
            stdout=subprocess.DEVNULL,
            stderr=wait_errors,
            env=environ,
        )
    try:
        assert stream.stdout is not None
        assert stream.stdout.readline() == b"line-1\n"
        server.stop()
        # Down until both have found it gone.
        wait_for(lambda: all(b"trying again" in f.read_bytes() for f in (stream_err, wait_err)), message="retries")
        server.start()
        gate.touch()
        rest, _ = stream.communicate(timeout=60)
        waiter.wait(timeout=60)
    finally:
        for process in (stream, waiter):
            if process.poll() is None:
                process.kill()
                process.wait()
    err, waited = stream_err.read_bytes(), wait_err.read_bytes()
    assert stream.returncode == 0, err
    assert rest == b"line-2\n"
    assert b"trying again for 120 s" in err and b"answers again" in err, err
    assert waiter.returncode == 3, waited  # the job's exit code, as without the restart
    assert b"Job state: failed" in waited, waited


def test_list_download_and_wait(server: Server, tmp_path: Path) -> None:
    e = setup(server, tmp_path)
    command = (
        "mkdir -p $AZ_BATCHAI_OUTPUT_MODEL/sub; echo weights > $AZ_BATCHAI_OUTPUT_MODEL/model.bin; "
        "echo deep > $AZ_BATCHAI_OUTPUT_MODEL/sub/x.txt; echo done"
    )
    spec = job_file(tmp_path, command, outputDirectories=[{"id": "MODEL", "pathPrefix": str(tmp_path / "out")}])
    server.ok("job", "create", "-n", "maker", "-c", "c", *e, "-f", spec)
    waited = server.cli("job", "wait", "-n", "maker", *e, "--interval", "0.1")
    assert waited.code == 0 and "Job state: succeeded" in waited.stderr  # az's progress lines
    assert "Job submitted at" in waited.stderr and "execution took" in waited.stderr
    # Times as az wrote them there: Python's str() of a datetime.
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\+00:00"
    assert re.search(rf"Job completed at {stamp}; execution took \d+:\d\d:\d\d", waited.stderr), waited.stderr
    # As in az: a file the ended job never wrote is a warning, not an error; other flags are az's too.
    absent = server.cli("job", "file", "stream", "-j", "maker", *e, "-f", "never.txt", "--interval", "0.1")
    assert absent.code == 0 and absent.stdout == ""
    assert 'The file "never.txt" not found for the completed job.' in absent.stderr
    defaults = {"AZURE_DEFAULTS_GROUP": "files.rg"}  # az's configured default group
    listed = server.ok("job", "file", "list", "-j", "maker", "-w", "ws", "-e", "exp", "-d", "MODEL", env=defaults)
    assert "model.bin" in {f["name"] for f in listed}
    files = server.ok("job", "file", "list", "-j", "maker", *e, "-d", "MODEL")
    by_name = {f["name"]: f for f in files}
    assert by_name["model.bin"]["fileType"] == "file" and by_name["model.bin"]["contentLength"] == 8
    assert by_name["sub"]["fileType"] == "directory"
    az_file = ["contentLength", "downloadUrl", "fileType", "lastModified", "name"]  # the SDK's File, as az showed it
    assert sorted(by_name["model.bin"]) == sorted(by_name["sub"]) == az_file
    assert by_name["model.bin"]["lastModified"].endswith("+00:00")
    nested = server.ok("job", "file", "list", "-j", "maker", *e, "-d", "MODEL", "-p", "sub")
    assert [f["name"] for f in nested] == ["x.txt"]
    table = server.cli("job", "file", "list", "-j", "maker", *e, "-d", "MODEL", "-o", "table")
    assert "model.bin" in table.stdout and "Name" in table.stdout
    dest = tmp_path / "downloaded"
    server.ok("job", "file", "download", "-j", "maker", *e, "-d", "MODEL", "--dest", str(dest))
    assert (dest / "model.bin").read_text() == "weights\n"
    assert (dest / "sub" / "x.txt").read_text() == "deep\n"  # with the folders below, as download-batch does
    one = tmp_path / "one"
    server.ok("job", "file", "download", "-j", "maker", *e, "-d", "MODEL", "-f", "model.bin", "--dest", str(one))
    assert [p.name for p in one.iterdir()] == ["model.bin"]
    assert "no file 'x.txt'" in server.fails("job", "file", "download", "-j", "maker", *e, "-d", "MODEL", "-f", "x.txt")
    logs = {f["name"] for f in server.ok("job", "file", "list", "-j", "maker", *e)}
    assert {"stdout.txt", "stderr.txt", "execution.log"} <= logs
    assert "OutputDirectoryNotFound" in server.fails("job", "file", "list", "-j", "maker", *e, "-d", "NOPE")
    # A failing job: wait exits with its exit code.
    server.ok("job", "create", "-n", "bad", "-c", "c", *e, "-f", job_file(tmp_path, "exit 5"))
    failed = server.cli("job", "wait", "-n", "bad", *e, "--interval", "0.1")
    assert failed.code == 5 and 'The job "bad" in resource group' in failed.stderr
    again = job_file(tmp_path, "true")
    assert "already exists" in server.fails("job", "create", "-n", "bad", "-c", "c", *e, "-f", again)
    wait_for(lambda: server.ok("job", "show", "-n", "bad", *e, "--query", "executionState") == "failed")
