"""Which command lines run without a shell: exactly those bash would run as they are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchai.runtime import launch


def _plan(prep: str | None = None, hostfile: str | None = None) -> launch.LaunchPlan:
    return launch.LaunchPlan(
        env={},
        links=[],
        directories=[],
        unmanaged=[],
        stdouterr=Path("/x"),
        job_temp=Path("/x"),
        prep_command=prep,
        command="",
        stdout_name="stdout.txt",
        stderr_name="stderr.txt",
        mpi_hostfile=hostfile,
    )


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("/usr/bin/python3 -c pass", ["/usr/bin/python3", "-c", "pass"]),
        ("  python train.py --epochs=2 --lr 0.1  ", ["python", "train.py", "--epochs=2", "--lr", "0.1"]),
        ("python a,b:c@d%e+f", ["python", "a,b:c@d%e+f"]),
    ],
)
def test_plain_commands_run_as_written(command: str, argv: list[str]) -> None:
    assert launch.plain_argv(_plan(), command) == argv


@pytest.mark.parametrize(
    "command",
    [
        "python $AZ_BATCHAI_INPUT_DATA/train.py",  # a variable
        "python 'a b'",  # quotes
        'python "a b"',
        "python *.py",  # a glob
        "python x > out",  # a redirection
        "python x; echo done",  # two commands
        "python x\necho done",
        "python x && echo done",
        "echo hello",  # builtins and keywords
        "exit 3",
        "cd /tmp",
        "time python x",
        "A=1 python x",  # an assignment
        "%1",  # a job of the shell
        "python ~/x",  # a tilde
        "python {a,b}",  # braces
        "",
    ],
)
def test_anything_bash_would_change_goes_through_bash(command: str) -> None:
    assert launch.plain_argv(_plan(), command) is None


def test_a_job_preparation_or_an_mpi_host_file_needs_the_script() -> None:
    assert launch.plain_argv(_plan(prep="pip install x"), "python x") is None
    assert launch.plain_argv(_plan(hostfile="h slots=1\n"), "python x") is None
