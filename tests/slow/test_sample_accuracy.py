"""Real training: the ConvNet_MNIST sample reaches the CNTK recipe's accuracy on full MNIST in two epochs."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchai.samples import CONVNET_MNIST_SCRIPT
from batchai.samples import mnist_data as md

SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
EPOCHS = 2
MAX_TEST_ERROR = 1.5  # percent


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not (SHARED_MNIST / md.TRAIN_IMAGES).is_file(), reason=f"no MNIST in {SHARED_MNIST}")
def test_two_epochs_reach_low_test_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    started = time.monotonic()
    md.prepare(str(SHARED_MNIST), tmp_path / "data")
    prepared = time.monotonic()
    run = subprocess.run(
        [sys.executable, str(CONVNET_MNIST_SCRIPT), str(tmp_path / "data"), str(tmp_path / "model"),
         "--epochs", str(EPOCHS)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    finished = time.monotonic()
    print(run.stderr)
    assert run.returncode == 0, run.stderr
    epochs = re.findall(r"^Finished Epoch\[\d+ of 2\]: .* (\d+\.\d+)s \(", run.stderr, re.MULTILINE)
    assert len(epochs) == EPOCHS
    final = re.search(r"^Final Results: Minibatch\[1-11\]: errs = (\d+\.\d+)% \* 10000$", run.stderr, re.MULTILINE)
    assert final, run.stderr
    error = float(final.group(1))
    print(
        f"data preparation {prepared - started:.1f}s, training run {finished - prepared:.1f}s "
        f"(epochs {', '.join(s + 's' for s in epochs)}), test error {error:.2f}%"
    )
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [f"ConvNet_MNIST_{e}.dnn" for e in range(EPOCHS)]
    assert error <= MAX_TEST_ERROR
