"""Real training: the ConvNet_MNIST sample, run as a batchai job through the quickstart on full MNIST,
reaches the CNTK recipe's accuracy in two epochs (about 2% after one epoch and 1.3% after two)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.integration.quickstart import SHARED_MNIST, run_quickstart

MAX_TEST_ERROR = 1.5  # percent


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"no MNIST files in {SHARED_MNIST}")
def test_two_epochs_as_a_job_reach_low_test_error(server: Server, tmp_path: Path, seed_job_json: str) -> None:
    pytest.importorskip("torch")
    started = time.monotonic()
    run = run_quickstart(server, tmp_path / "work", seed_job_json, epochs=2)
    elapsed = time.monotonic() - started
    print(run.stderr_stream)
    print(f"quickstart with two epochs on full MNIST: {elapsed:.0f}s, test error {run.final_error}%")
    assert run.state == "succeeded"
    assert sorted(str(f["name"]) for f in run.model_files) == [  # the model files only, as the seed lists them
        "ConvNet_MNIST_0.dnn",
        "ConvNet_MNIST_1.dnn",
    ]
    assert run.final_error is not None and run.final_error <= MAX_TEST_ERROR
