"""A stand-in for Batch AI's ConvNet_MNIST.py that "trains" in a moment: the walkthroughs upload it as
``ConvNet_MNIST.py`` and run it through ``cntkSettings.pythonScriptFilePath``, as the seed runs the real one.

Usage (the seed's ``commandLineArgs``): ``python ConvNet_MNIST.py $AZ_BATCHAI_INPUT_SAMPLE $AZ_BATCHAI_OUTPUT_MODEL``.
It reads the two CNTK text files from the input directory, prints its progress on stderr (as CNTK does) and a
summary on stdout, and writes ``ConvNet_MNIST_0.dnn`` (JSON: what it read) into the model directory.
Standard library only: it runs with whatever Python the node has.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

MODEL_FILE = "ConvNet_MNIST_0.dnn"


def labels(path: Path) -> list[int]:
    """The label of each sample of a CNTK text file (``|labels <one-hot> |features <pixels>``)."""
    out = []
    for line in path.read_text().splitlines():
        one_hot = line.split("|labels", 1)[1].split("|features", 1)[0].split()
        out.append(one_hot.index("1"))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} DATA_DIR MODEL_DIR", file=sys.stderr)
        return 2
    data, model_dir = Path(argv[1]), Path(argv[2])
    if os.environ.get("AZ_BATCHAI_OUTPUT_MODEL") != str(model_dir):
        print(
            f"AZ_BATCHAI_OUTPUT_MODEL is {os.environ.get('AZ_BATCHAI_OUTPUT_MODEL')!r}, not {argv[2]!r}",
            file=sys.stderr,
        )
        return 3
    train = labels(data / "Train-28x28_cntk_text.txt")
    test = labels(data / "Test-28x28_cntk_text.txt")
    print(f"Training on {len(train)} samples, testing on {len(test)}.", file=sys.stderr)
    print(f"Finished Epoch[1 of 1]: [Training] loss = 0.000000 * {len(train)}", file=sys.stderr)
    print(f"Final Results: Minibatch[1-1]: errs = 0.00% * {len(test)}", file=sys.stderr)
    model = {"train_samples": len(train), "test_samples": len(test), "labels": dict(sorted(Counter(train).items()))}
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / MODEL_FILE).write_text(json.dumps(model, sort_keys=True))
    print(f"Model saved to {model_dir / MODEL_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
