"""Sample training scripts and their data, re-created from Batch AI's recipes.

``ConvNet_MNIST.py`` is a standalone PyTorch port of the CNTK recipe of the same name (it needs only torch);
``mnist_data`` turns the MNIST IDX files into the CNTK text format that script reads.
"""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
CONVNET_MNIST_SCRIPT = SAMPLES_DIR / "ConvNet_MNIST.py"

__all__ = ["CONVNET_MNIST_SCRIPT", "SAMPLES_DIR"]
