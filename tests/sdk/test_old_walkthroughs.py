"""The first Python SDK quickstart (seeds 003/004: clusters and jobs directly in a resource group, no
workspaces) against a real server, with azure-mgmt-batchai 0.2.0 (api-version 2017-09-01-preview) and 1.0.1
(2018-03-01), each from its own virtual environment (see conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.conftest import SUB, Server, url
from tests.sdk.conftest import SdkEnv

WALKTHROUGHS = {
    "0.2.0": ("walkthrough_0_2_0.py", "2017-09-01-preview"),
    "1.0.1": ("walkthrough_1_0_1.py", "2018-03-01"),
}
IMAGE = "microsoft/cntk:2.1-gpu-python3.5-cuda8.0-cudnn6.0"
CLUSTER_LINE = re.compile(
    r"^Cluster state: AllocationState\.(steady|resizing) Target: 1; Allocated: [01]; Idle: [01]; "
    r"Unusable: 0; Running: 0; Preparing: [01]; leaving: 0$"
)


@pytest.mark.timeout(1200)  # the first run makes the SDK's virtual environment
@pytest.mark.parametrize("version", list(WALKTHROUGHS))
def test_the_first_quickstart_runs_on_batchai(
    version: str, sdk_env: Callable[[str], SdkEnv], host_server: Server
) -> None:
    script, api_version = WALKTHROUGHS[version]
    result = sdk_env(version).run(script, server=host_server)
    out = result.stdout
    assert result.returncode == 0, f"{script} failed:\n{out}\n{result.stderr[-4000:]}"
    lines = out.splitlines()

    assert lines[0] == f"client: BatchAIManagementClient {api_version}"
    assert sum(bool(CLUSTER_LINE.match(line)) for line in lines) == 1, out
    # the seed prints execution_state.name: the SDK made an ExecutionState of the server's value
    states = [line.split(": ", 1)[1].strip() for line in lines if line.startswith("Job state: ")]
    assert states[-1] == "succeeded" and set(states) <= {"queued", "running", "succeeded"}, states
    assert "check: exit code 0" in lines
    assert "check: provider: Registered" in lines  # batchai provider register, then the SDK's providers.get

    # list_output_files: stdouterr and MODEL, each file with a download link on this server
    links = dict(re.findall(r"^file: (\S+), download url: (\S+)$", out, re.M))
    assert set(links) == {"stdout.txt", "stderr.txt", "execution.log", "ConvNet_MNIST_0.dnn"}, links
    for name, link in links.items():
        assert link.startswith(f"{host_server.endpoint}/download/{name}?"), link
    model_line = next(line for line in lines if line.startswith("check: ConvNet_MNIST_0.dnn: "))
    # 0.2.0's File has name, download_url, last_modified and content_length; 1.0.1's adds is_directory
    directory = ", directory: False" if version == "1.0.1" else ""
    assert re.fullmatch(
        rf"check: ConvNet_MNIST_0\.dnn: [1-9]\d* bytes, modified \d{{4}}-\d\d-\d\dT\S+{directory}", model_line
    )

    # the model was downloaded and is what the stand-in trained from the uploaded files
    assert "check: model: 30 training samples, 10 labels" in lines
    assert "check: stderr: Finished Epoch[1 of 1]: [Training] loss = 0.000000 * 30" in lines
    # the job ran on the host, not in the CNTK image, and its execution log says so
    notes = [line for line in lines if line.startswith("check: execution.log:") and IMAGE in line]
    assert len(notes) == 1 and "host" in notes[0], out
    assert lines[-4:] == [
        "check: jobs left: []",
        "check: clusters left: []",
        "check: group exists after delete: False",
        "walkthrough done",
    ]

    # and the server agrees: the group, and with it the storage account, is gone
    http = host_server.http
    assert http.get(url(f"/subscriptions/{SUB}/resourceGroups/myresourcegroup", "2021-04-01")).status_code == 404
    accounts = http.get(url(f"/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts", "2021-04-01"))
    assert accounts.status_code == 200 and accounts.json()["value"] == []
