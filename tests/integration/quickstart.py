"""The seed quickstart (``../shared/seeds/000_*``) through the real CLI: shared by the fast end-to-end test
(a small data set, one epoch) and the slow accuracy test (full MNIST, two epochs)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from batchai.samples import CONVNET_MNIST_SCRIPT, mnist_data
from tests.conftest import BIN, Server

SHARED_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
Q = ("-g", "batchai.quickstart", "-w", "quickstart")
QE = (*Q, "-e", "quickstart")


@dataclass
class QuickstartRun:
    stderr_stream: str
    model_files: list[dict[str, object]]
    segment: str
    state: str
    final_error: float | None


def run_quickstart(
    server: Server,
    work: Path,
    seed_job_json: str,
    epochs: int,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> QuickstartRun:
    """Every step of the quickstart with ``az`` replaced by ``batchai``; the job.json is the seed's."""
    work.mkdir(parents=True, exist_ok=True)
    mnist_data.prepare(str(SHARED_MNIST), work, limit_train=limit_train, limit_test=limit_test)
    script = CONVNET_MNIST_SCRIPT.read_text()
    (work / "ConvNet_MNIST.py").write_text(
        re.sub(r"^MAX_EPOCHS = \d+$", f"MAX_EPOCHS = {epochs}", script, flags=re.MULTILINE)
    )
    account = "quickstartacct"
    (work / "job.json").write_text(seed_job_json.replace("<YOUR_STORAGE_ACCOUNT>", account))
    ok = server.ok
    ok("group", "create", "-n", "batchai.quickstart", "-l", "eastus")
    ok("workspace", "create", "-g", "batchai.quickstart", "-n", "quickstart")
    # --generate-ssh-keys writes ~/.ssh/id_rsa: here under the work directory, not the user's home
    nc6 = ("-n", "nc6", *Q, "-s", "Standard_NC6", "-i", "UbuntuDSVM", "-t", "1", "--generate-ssh-keys")
    ok("cluster", "create", *nc6, env={"HOME": str(work)})
    ok("storage", "account", "create", "-n", account, "--sku", "Standard_LRS", "-g", "batchai.quickstart")
    acct = ("--account-name", account)
    ok("storage", "share", "create", "-n", "scripts", *acct)
    ok("storage", "share", "create", "-n", "logs", *acct)
    ok("storage", "directory", "create", "-n", "cntk", "-s", "scripts", *acct)
    ok("storage", "file", "upload", "-s", "scripts", "--source", "ConvNet_MNIST.py", "--path", "cntk", *acct, cwd=work)
    ok("storage", "container", "create", "-n", "data", *acct)
    ok(
        "storage",
        "blob",
        "upload-batch",
        "-s",
        ".",
        "--pattern",
        "*28x28_cntk*",
        "--destination",
        "data",
        "--destination-path",
        "mnist_cntk",
        *acct,
        cwd=work,
    )
    ok("experiment", "create", *Q, "-n", "quickstart")
    ok(
        "job",
        "create",
        "-n",
        "cntk_python_1",
        "-c",
        "nc6",
        *QE,
        "-f",
        "job.json",
        "--storage-account-name",
        account,
        cwd=work,
    )
    stream = subprocess.run(
        [str(BIN / "batchai"), "job", "file", "stream", "-j", "cntk_python_1", *QE, "-f", "stderr.txt"],
        capture_output=True,
        text=True,
        timeout=3600,
        env={"BATCHAI_HOME": str(server.home), "PATH": "/usr/bin:/bin"},
    )
    assert stream.returncode == 0, stream.stderr
    files = ok(
        "job",
        "file",
        "list",
        "-j",
        "cntk_python_1",
        "-w",
        "quickstart",
        "-e",
        "quickstart",
        "-g",
        "batchai.quickstart",
        "-d",
        "MODEL",
    )
    segment = ok("job", "show", "-n", "cntk_python_1", *QE, "--query", "jobOutputDirectoryPathSegment")
    state = ok("job", "show", "-n", "cntk_python_1", *QE, "--query", "executionState")
    ok("group", "delete", "-n", "batchai.quickstart", "-y")
    final = re.search(r"^Final Results: Minibatch\[[^\]]*\]: errs = (\d+\.\d+)% \* \d+$", stream.stdout, re.MULTILINE)
    return QuickstartRun(stream.stdout, files, segment, state, float(final.group(1)) if final else None)
