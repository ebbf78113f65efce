"""The seed quickstart end to end through the real server and CLI, on a small slice of the real MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Server
from tests.integration.quickstart import SHARED_MNIST, run_quickstart


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"no MNIST files in {SHARED_MNIST}")
def test_the_quickstart_runs_end_to_end(server: Server, tmp_path: Path, seed_job_json: str) -> None:
    pytest.importorskip("torch")
    run = run_quickstart(server, tmp_path / "work", seed_job_json, epochs=1, limit_train=512, limit_test=256)
    assert run.state == "succeeded", run.stderr_stream
    assert "Training 98778 parameters in 10 parameter tensors." in run.stderr_stream
    assert "Finished Epoch[1 of 1]: [Training] loss = " in run.stderr_stream
    assert run.final_error is not None
    # As the seed lists them: the model files only ({pathPrefix}/{segment}/outputs, beside stdouterr).
    assert [(f["name"], f["fileType"]) for f in run.model_files] == [("ConvNet_MNIST_0.dnn", "file")]
    assert run.segment.startswith(
        "00000000-0000-0000-0000-000000000000/batchai.quickstart/workspaces/quickstart/"
        "experiments/quickstart/jobs/cntk_python_1/"
    )
    assert server.ok("group", "exists", "-n", "batchai.quickstart") is False
