"""The walkthroughs' stand-in for the seed's sample package (BatchAIQuickStart.zip): two small MNIST-shaped
CNTK text files and a ConvNet_MNIST.py that trains in a moment (``convnet_mnist_standin.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FILES = ["Train-28x28_cntk_text.txt", "Test-28x28_cntk_text.txt", "ConvNet_MNIST.py"]
TRAIN_SAMPLES = 30
TEST_SAMPLES = 10


def _sample(index: int) -> str:
    label = index % 10
    one_hot = " ".join("1" if digit == label else "0" for digit in range(10))
    pixels = " ".join(str((index * 7 + pixel) % 256) for pixel in range(28 * 28))
    return f"|labels {one_hot} |features {pixels}\n"


def unpack(directory: Path) -> None:
    """Write the package's files into ``directory`` (as unzipping BatchAIQuickStart.zip would)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / FILES[0]).write_text("".join(_sample(i) for i in range(TRAIN_SAMPLES)))
    (directory / FILES[1]).write_text("".join(_sample(i) for i in range(TEST_SAMPLES)))
    shutil.copyfile(Path(__file__).with_name("convnet_mnist_standin.py"), directory / FILES[2])


def check_model(content: bytes) -> str:
    """Raise if a downloaded model is not what the stand-in trains from these files; a summary if it is."""
    model = json.loads(content)
    expected = {
        "train_samples": TRAIN_SAMPLES,
        "test_samples": TEST_SAMPLES,
        "labels": {str(d): TRAIN_SAMPLES // 10 for d in range(10)},
    }
    if model != expected:
        raise AssertionError(f"unexpected model: {model}")
    return f"{model['train_samples']} training samples, {len(model['labels'])} labels"
