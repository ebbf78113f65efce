"""The CLI where users slip: a command group without its command, ``--home`` against $BATCHAI_HOME, a prompt
with and without a terminal, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import BIN, SUB, Server, wait_for
from tests.integration.test_cli_job_files import job_file, setup


def run(
    *args: str, env: dict[str, str], input: str | None = None, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHAI_", "AZURE_"))}
    return subprocess.run(
        [str(BIN / "batchai"), *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        input=input,
        stdin=stdin,
    )


def test_a_group_without_its_command_shows_its_help(tmp_path: Path) -> None:
    for args in ([], ["job"], ["storage", "blob"]):
        shown = run(*args, env={"BATCHAI_HOME": str(tmp_path)})
        assert shown.returncode == 0 and shown.stderr == "", shown.stderr
        assert shown.stdout.startswith(f"Usage: batchai {' '.join(args)}".rstrip() + " [OPTIONS] COMMAND")
        assert "Commands:" in shown.stdout


def test_home_given_on_the_command_line_beats_batchai_home(shared_server: Server, tmp_path: Path) -> None:
    elsewhere = {"BATCHAI_HOME": str(tmp_path / "nothing-here")}
    shared_server.ok("group", "create", "-n", "home.rg")
    listed = run("--home", str(shared_server.home), "group", "list", "--query", "[].name", env=elsewhere)
    assert listed.returncode == 0 and "home.rg" in json.loads(listed.stdout), listed.stderr
    status = run("--home", str(shared_server.home), "server", "status", env=elsewhere)
    assert status.returncode == 0 and json.loads(status.stdout)["home"] == str(shared_server.home)
    assert run("server", "status", env=elsewhere).returncode == 3  # and $BATCHAI_HOME when no --home is given


def test_a_prompt_needs_a_terminal_and_no_cancels(shared_server: Server) -> None:
    shared_server.ok("group", "create", "-n", "prompt.rg")
    env = {"BATCHAI_HOME": str(shared_server.home)}
    piped = run("group", "delete", "-n", "prompt.rg", env=env, input="y\n")
    assert (piped.returncode, piped.stderr) == (
        1,
        "ERROR: Unable to prompt for confirmation as no tty available. Use --yes.\n",
    )
    controller, terminal = os.openpty()
    try:
        os.write(controller, b"n\n")
        answered = run("group", "delete", "-n", "prompt.rg", env=env, stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert answered.returncode == 1 and answered.stderr.endswith("ERROR: the operation was cancelled\n")
    assert shared_server.ok("group", "show", "-n", "prompt.rg")["name"] == "prompt.rg"  # nothing deleted


def test_ctrl_c_ends_a_command_with_code_130(server: Server, tmp_path: Path) -> None:
    e = setup(server, tmp_path)
    # (and a job.json that misses a required path is told which)
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"properties": {"nodeCount": 1, "customToolkitSettings": {"commandLine": "true"}}}))
    assert "properties.stdOutErrPathPrefix is required" in server.fails(
        "job", "create", "-n", "x", "-c", "c", *e, "-f", str(bare)
    )
    server.ok("job", "create", "-n", "long", "-c", "c", *e, "-f", job_file(tmp_path, "echo started >&2; sleep 300"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHAI_", "AZURE_"))}
    stream = subprocess.Popen(
        [str(BIN / "batchai"), "job", "file", "stream", "-j", "long", *e, "-f", "stderr.txt"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**environ, "BATCHAI_HOME": str(server.home)},
    )
    try:
        assert stream.stdout is not None
        wait_for(lambda: stream.stdout.readline() == b"started\n", message="the stream to follow the job")  # type: ignore[union-attr]
        stream.send_signal(signal.SIGINT)
        _, err = stream.communicate(timeout=30)
    finally:
        if stream.poll() is None:
            stream.kill()
            stream.wait()
    assert stream.returncode == 130
    assert err.decode().strip().splitlines()[-1] == "ERROR: interrupted"
    server.ok("job", "terminate", "-n", "long", *e, "-y")


def test_a_bad_cluster_name_creates_no_auto_storage(shared_server: Server) -> None:
    shared_server.ok("group", "create", "-n", "auto.rg")
    shared_server.ok("workspace", "create", "-g", "auto.rg", "-n", "ws")
    error = shared_server.fails(
        "cluster",
        "create",
        "-n",
        "bad name!",
        "-g",
        "auto.rg",
        "-w",
        "ws",
        "-s",
        "local",
        "-t",
        "1",
        "--use-auto-storage",
    )
    assert "(InvalidResourceName) The cluster name 'bad name!' is invalid" in error
    assert "batchaiautostorage" not in shared_server.ok("group", "list", "--query", "[].name")


def test_a_job_for_a_cluster_sized_to_zero_is_told_so(shared_server: Server, tmp_path: Path) -> None:
    shared_server.ok("group", "create", "-n", "zero.rg")
    shared_server.ok("workspace", "create", "-g", "zero.rg", "-n", "ws")
    shared_server.ok("experiment", "create", "-g", "zero.rg", "-w", "ws", "-n", "exp")
    shared_server.ok("cluster", "create", "-n", "none", "-g", "zero.rg", "-w", "ws", "-s", "local", "-t", "0")
    spec = job_file(tmp_path, "true")
    error = shared_server.fails(
        "job", "create", "-n", "j", "-c", "none", "-g", "zero.rg", "-w", "ws", "-e", "exp", "-f", spec
    )
    assert "cluster 'none' is sized to hold none: resize it" in error


def test_show_of_what_is_not_there_exits_3_as_az_does(shared_server: Server) -> None:
    """az's ``show`` commands exit 3 on a 404 (scripts test existence with them); other failures exit 1."""
    shared_server.ok("group", "create", "-n", "show.rg", "-l", "eastus")
    for args in (
        ("group", "show", "-n", "no.such.rg"),
        ("workspace", "show", "-g", "show.rg", "-n", "nows"),
        ("cluster", "show", "-g", "show.rg", "-w", "nows", "-n", "c"),
        ("job", "show", "-g", "show.rg", "-w", "nows", "-e", "e", "-n", "j"),
        ("storage", "account", "show", "-g", "show.rg", "-n", "nosuchaccount"),
    ):
        result = shared_server.cli(*args)
        assert result.code == 3, (args, result.code, result.stderr)
        assert "not found" in result.stderr.lower() or "could not be found" in result.stderr.lower(), result.stderr
    assert shared_server.cli("workspace", "list", "-g", "no.such.rg").code == 1


def test_a_name_with_a_slash_is_refused_as_such_and_group_names_may_be_unicode(shared_server: Server) -> None:
    assert shared_server.fails("group", "create", "-n", "a/b", "-l", "eastus") == (
        "ERROR: (InvalidResourceName) A resource name cannot contain '/'."
    )
    answer = shared_server.http.put(f"/subscriptions/{SUB}/resourceGroups/x%2Fy?api-version=2021-04-01", json={})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidResourceName"
    # As ARM's, a resource group's name may hold any letters and digits; found again case-insensitively.
    assert shared_server.ok("group", "create", "-n", "Grüße.rg", "-l", "eastus")["name"] == "Grüße.rg"
    assert shared_server.ok("group", "show", "-n", "GRÜßE.RG")["name"] == "Grüße.rg"
    assert shared_server.ok("workspace", "create", "-g", "grüße.rg", "-n", "w")["resourceGroup"] == "Grüße.rg"
    shared_server.ok("group", "delete", "-n", "grüße.rg", "-y")


def test_global_options_may_come_before_the_command_as_az_takes_them(shared_server: Server) -> None:
    shared_server.ok("group", "create", "-n", "globals.rg", "-l", "eastus")
    early = shared_server.cli("--debug", "-o", "tsv", "group", "--query", "[?name=='globals.rg'].name", "list")
    assert early.code == 0 and early.stdout == "globals.rg\n", early.stderr
    assert "Response: 200" in early.stderr and "<redacted>" in early.stderr  # --debug took effect
    table = shared_server.cli("--output=table", "group", "show", "-n", "globals.rg")
    assert table.code == 0 and table.stdout.splitlines()[0].split() == ["Location", "Name"], table.stdout
    # A global option given before the command is checked as it is after it.
    assert shared_server.fails("--query", "[", "group", "list").startswith("ERROR: argument --query: invalid")
