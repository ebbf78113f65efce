"""The seed's Python SDK walkthrough (CNTK job with the Azure Python SDK) against a real server, with
azure-mgmt-batchai 7.0.0 and 2.0.0, each from its own virtual environment (see conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.conftest import SUB, Server, url
from tests.sdk.conftest import SdkEnv

WALKTHROUGHS = {
    "7.0.0": ("walkthrough_7_0_0.py", "BatchAI"),
    "2.0.0": ("walkthrough_2_0_0.py", "BatchAIManagementClient"),
}
IMAGE = "microsoft/cntk:2.1-gpu-python3.5-cuda8.0-cudnn6.0"
CLUSTER_LINE = re.compile(
    r"^Cluster state: (AllocationState\.)?(steady|resizing) Target: 1; Allocated: [01]; Idle: [01]; "
    r"Unusable: 0; Running: 0; Preparing: [01]; Leaving: 0$"
)


@pytest.mark.timeout(1200)  # the first run makes the SDK's virtual environment
@pytest.mark.parametrize("version", list(WALKTHROUGHS))
def test_the_seed_walkthrough_runs_on_batchai(
    version: str, sdk_env: Callable[[str], SdkEnv], host_server: Server
) -> None:
    script, client_class = WALKTHROUGHS[version]
    result = sdk_env(version).run(script, server=host_server)
    out = result.stdout
    assert result.returncode == 0, f"{script} failed:\n{out}\n{result.stderr[-4000:]}"
    lines = out.splitlines()

    assert lines[0] == f"client: {client_class}"
    assert sum(bool(CLUSTER_LINE.match(line)) for line in lines) == 1, out
    states = [re.sub(r"^ExecutionState\.", "", line.split(": ", 1)[1].strip()) for line in lines if "Job state" in line]
    assert states[-1] == "succeeded" and set(states) <= {"queued", "running", "succeeded"}, states
    assert "check: exit code 0" in lines
    assert "check: provider: Registered" in lines  # batchai provider register, then the SDK's providers.get

    # list_output_files: stdouterr and MODEL, each file with a download link on this server
    links = dict(re.findall(r"^file: (\S+), download url: (\S+)$", out, re.M))
    assert set(links) == {"stdout.txt", "stderr.txt", "execution.log", "ConvNet_MNIST_0.dnn"}, links
    for name, link in links.items():
        assert link.startswith(f"{host_server.endpoint}/download/{name}?"), link

    # the model was downloaded and is what the stand-in trained from the uploaded files
    assert "check: model: 30 training samples, 10 labels" in lines
    assert "check: stderr: Finished Epoch[1 of 1]: [Training] loss = 0.000000 * 30" in lines
    # the job ran on the host, not in the CNTK image, and its execution log says so
    notes = [line for line in lines if line.startswith("check: execution.log:") and IMAGE in line]
    assert len(notes) == 1 and "host" in notes[0], out
    assert lines[-2:] == ["check: group exists after delete: False", "walkthrough done"]

    # and the server agrees: the group, and with it the storage account, is gone
    http = host_server.http
    assert http.get(url(f"/subscriptions/{SUB}/resourceGroups/myresourcegroup", "2021-04-01")).status_code == 404
    accounts = http.get(url(f"/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts", "2021-04-01"))
    assert accounts.status_code == 200 and accounts.json()["value"] == []
