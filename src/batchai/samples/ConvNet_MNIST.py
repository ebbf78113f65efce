#!/usr/bin/env python3
"""Train a convolutional network on MNIST: a PyTorch port of Batch AI's CNTK recipe ``ConvNet_MNIST.py``.

    python ConvNet_MNIST.py DATA_DIR OUTPUT_DIR [--epochs N] [--seed S]

DATA_DIR holds ``Train-28x28_cntk_text.txt`` and ``Test-28x28_cntk_text.txt`` in CNTK's text format (make them
with ``python -m batchai.samples.mnist_data``); a model is saved into OUTPUT_DIR after every epoch as
``ConvNet_MNIST_{epoch}.dnn`` (a ``torch.save``-d state_dict). Only torch and the standard library are needed.

The network, the reader's minibatching and the learner follow the CNTK original:

* input scaled by 1/256; conv 5x5x32 relu (padded) -> maxpool 3x3/2 -> conv 3x3x48 relu (not padded) ->
  maxpool 3x3/2 -> conv 3x3x64 relu (not padded) -> dense 96 relu -> dropout 0.5 -> dense 10: 98,778 parameters
  in 10 tensors, Glorot-uniform weights and zero biases (CNTK's layer defaults);
* epochs of 60,000 samples in randomized minibatches of 64 (the last one of an epoch holds the remaining 32);
* momentum SGD with CNTK's per-sample learning rate 0.001 (epochs 1-10), 0.0005 (11-20), 0.0001 after, and
  unit-gain momentum given as a time constant of 0 samples for epochs 1-5 and 1024 samples after;
* softmax cross entropy loss, classification error metric, 40 epochs, then the test set in minibatches of 1024.

Progress goes to stderr (the original merged stdout into stderr) in the shapes CNTK's ProgressPrinter used.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

# torch warns on import when numpy is missing; this script never needs numpy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
from torch import nn  # noqa: E402

IMAGE_HEIGHT = IMAGE_WIDTH = 28
NUM_CHANNELS = 1
INPUT_DIM = NUM_CHANNELS * IMAGE_HEIGHT * IMAGE_WIDTH
NUM_CLASSES = 10
TRAIN_FILE = "Train-28x28_cntk_text.txt"
TEST_FILE = "Test-28x28_cntk_text.txt"
MODEL_NAME = "ConvNet_MNIST_{}.dnn"

EPOCH_SIZE = 60000
MINIBATCH_SIZE = 64
MAX_EPOCHS = 40
TEST_MINIBATCH_SIZE = 1024
INPUT_SCALE = 0.00390625  # 1/256
# Schedules have one entry per epoch; the last entry holds for the rest of training (as CNTK's schedules).
LR_PER_SAMPLE = [0.001] * 10 + [0.0005] * 10 + [0.0001]
MOMENTUM_TIME_CONSTANT = [0] * 5 + [1024]
# The original passes no l2_regularization_weight to its learner, so CNTK's default of 0 applies.
L2_REGULARIZATION_WEIGHT = 0.0
DEFAULT_SEED = 1


def log(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# The CNTK text format reader
# ---------------------------------------------------------------------------------------------------------------

_CHUNK_BYTES = 4 << 20
_NON_INTEGER_TEXT = (b".", b"-", b"+", b":")  # floats, signs or sparse values: not for the fast path


class DataFormatError(Exception):
    """A CNTK text format file that this reader cannot make sense of."""


def _integer_tokens(chunk: torch.Tensor) -> torch.Tensor | None:
    """The values of all the runs of decimal digits in ``chunk`` (uint8); ``None`` if one has four digits or more.

    Vectorised: each byte gets the value of the number ending there (its last three digits), and the values at
    the last digit of each run are kept.
    """
    value = chunk - ord("0")  # uint8: non-digits wrap around to 10 or more
    digit = value < 10
    value *= digit  # non-digits count as 0, so a run's value stops at its start
    end = torch.empty_like(digit)  # the last digit of a run
    torch.gt(digit[:-1], digit[1:], out=end[:-1])
    end[-1] = digit[-1]
    if bool((end[3:] & digit[2:-1] & digit[1:-2] & digit[:-3]).any()):
        return None
    total = value.to(torch.int16)
    total[1:] += 10 * value[:-1]
    total[2:] += 100 * (value[:-2] * digit[1:-1])  # only if the tens position is a digit too
    return total[end]


def _parse_fast(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Read a dense ``|labels`` (one-hot) + ``|features`` file of small integers; ``None`` when it is not one."""
    with path.open("rb") as source:
        head = source.readline()
    labels_at, features_at = head.find(b"|labels"), head.find(b"|features")
    if labels_at < 0 or features_at < 0 or not head.startswith(b"|"):
        return None
    width = NUM_CLASSES + INPUT_DIM
    label_columns = slice(0, NUM_CLASSES) if labels_at < features_at else slice(INPUT_DIM, width)
    feature_columns = slice(NUM_CLASSES, width) if labels_at < features_at else slice(0, INPUT_DIM)
    features: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    buffer = bytearray(_CHUNK_BYTES)
    carry = b""
    with path.open("rb", buffering=0) as source:
        while True:
            view = memoryview(buffer)
            view[: len(carry)] = carry
            read = source.readinto(view[len(carry) :])
            filled = len(carry) + (read or 0)
            if filled == 0:
                break
            if not read:  # end of file: the last line may lack its newline
                chunk_end = filled
                carry = b""
            else:
                chunk_end = buffer.rfind(b"\n", 0, filled) + 1
                if chunk_end == 0:
                    return None  # a line longer than the buffer: not MNIST
                carry = bytes(view[chunk_end:filled])
            view.release()
            if any(buffer.find(text, 0, chunk_end) >= 0 for text in _NON_INTEGER_TEXT):
                return None
            tokens = _integer_tokens(torch.frombuffer(buffer, dtype=torch.uint8, count=chunk_end))
            lines = buffer.count(b"\n", 0, chunk_end) + (buffer[chunk_end - 1] != ord("\n"))
            if tokens is None or tokens.numel() != lines * width:
                return None  # floats, sparse values, blank lines or sequence ids: leave them to the general reader
            rows = tokens.view(lines, width)
            if int(rows[:, feature_columns].max()) > 255:
                return None
            features.append(rows[:, feature_columns].to(torch.uint8))
            labels.append(rows[:, label_columns].argmax(dim=1))
            if not read:
                break
    if not features:
        raise DataFormatError(f"{path}: no samples")
    return torch.cat(features), torch.cat(labels)


def _parse_general(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read any ``|labels`` / ``|features`` CNTK text file (dense or sparse ``index:value`` labels), slowly."""
    features: list[list[float]] = []
    labels: list[int] = []
    with path.open(encoding="ascii") as source:
        for number, line in enumerate(source, 1):
            fields: dict[str, list[str]] = {}
            for field in line.split("|")[1:]:  # whatever precedes the first '|' is a sequence id
                name, *values = field.split()
                fields[name] = values
            if not fields:
                continue
            try:
                pixels, classes = fields["features"], fields["labels"]
                if len(pixels) != INPUT_DIM:
                    raise DataFormatError(f"{path}:{number}: {len(pixels)} features, expected {INPUT_DIM}")
                features.append([float(value) for value in pixels])
                if any(":" in value for value in classes):
                    sparse = dict(value.split(":") for value in classes)
                    labels.append(int(max(sparse, key=lambda index: float(sparse[index]))))
                else:
                    scores = [float(value) for value in classes]
                    labels.append(scores.index(max(scores)))
            except (KeyError, ValueError) as exc:
                raise DataFormatError(f"{path}:{number}: not a labels/features sample ({exc})") from exc
    if not features:
        raise DataFormatError(f"{path}: no samples")
    return torch.tensor(features, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)


def read_cntk_text(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The features (N x 784, values 0..255) and class indices (N) of a CNTK text format MNIST file."""
    parsed = _parse_fast(path)
    return parsed if parsed is not None else _parse_general(path)


# ---------------------------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------------------------


def build_model() -> nn.Sequential:
    """The CNTK recipe's network; ``pad=True`` in CNTK means "same" padding, pooling is never padded."""
    model = nn.Sequential(
        nn.Conv2d(NUM_CHANNELS, 32, kernel_size=5, padding=2),  # 28x28
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # 13x13
        nn.Conv2d(32, 48, kernel_size=3),  # 11x11
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # 5x5
        nn.Conv2d(48, 64, kernel_size=3),  # 3x3
        nn.ReLU(),
        nn.Flatten(),  # 576, in (channel, row, column) order like CNTK's Dense over a (64, 3, 3) input
        nn.Linear(64 * 3 * 3, 96),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(96, NUM_CLASSES),
    )
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)  # CNTK's default init is glorot_uniform
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(number of parameters, number of parameter tensors)."""
    tensors = list(model.parameters())
    return sum(tensor.numel() for tensor in tensors), len(tensors)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store the convolution kernels channels-last, like ``model.to(memory_format=torch.channels_last)``."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            parameter.data = parameter.data.to(memory_format=torch.channels_last)
    return model


def to_input(features: torch.Tensor) -> torch.Tensor:
    """Raw 0..255 feature rows -> the scaled N x 1 x 28 x 28 input batch, in channels-last layout."""
    images = (features.to(torch.float32) * INPUT_SCALE).view(-1, NUM_CHANNELS, IMAGE_HEIGHT, IMAGE_WIDTH)
    return images.contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


def scheduled(values: Sequence[float], epoch: int) -> float:
    return float(values[min(epoch, len(values) - 1)])


def momentum_per_sample(time_constant: float) -> float:
    return 0.0 if time_constant == 0 else math.exp(-1.0 / time_constant)


def minibatches(count: int, epoch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch of sample indices: ``epoch_size`` samples drawn sweep by sweep from fresh permutations."""
    indices: list[torch.Tensor] = []
    needed = epoch_size
    while needed > 0:
        sweep = torch.randperm(count, generator=generator)[:needed]
        indices.append(sweep)
        needed -= sweep.numel()
    return list(torch.split(torch.cat(indices), MINIBATCH_SIZE))


def train(
    model: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    output_dir: Path,
    epochs: int,
    epoch_size: int,
    l2_weight: float,
    generator: torch.Generator,
) -> None:
    # CNTK's momentum_sgd with a per-sample learning rate and unit-gain momentum updates, for a minibatch of
    # B samples with gradient sum g = sum_i dloss_i/dw:
    #     g += l2_weight * B * w             (LearnerBase::PreProcess scales the L2 weight by B, because the
    #                                         learning rate is per sample)
    #     v = m_B * v + (1 - m_B) * g        (unit gain; m_B = exp(-B / time_constant), its per-sample value ** B)
    #     w -= lr_per_sample * v
    # which is torch's SGD on the SUMMED minibatch loss with lr = lr_per_sample, momentum = dampening = m_B and
    # weight_decay = l2_weight * B (torch adds weight_decay * w to the gradient before the momentum, as CNTK).
    # Both are set per minibatch as B shrinks at the end of an epoch.
    optimizer = torch.optim.SGD(model.parameters(), lr=LR_PER_SAMPLE[0], momentum=0.0)
    # CNTK's smoothed gradient starts at zero (torch would start it at the first gradient) ...
    for parameter in model.parameters():
        optimizer.state[parameter]["momentum_buffer"] = torch.zeros_like(parameter)
    loss_function = nn.CrossEntropyLoss(reduction="sum")
    reported: dict[str, float] = {}
    count = features.shape[0]
    for epoch in range(epochs):
        lr = scheduled(LR_PER_SAMPLE, epoch)
        momentum = momentum_per_sample(scheduled(MOMENTUM_TIME_CONSTANT, epoch))
        for name, value in (("Learning rate per 1 samples", lr), ("Momentum per 1 samples", momentum)):
            if reported.get(name) != value:  # CNTK's learner reports a parameter whenever its value changes
                log(f"{name}: {value}")
                reported[name] = value
        if momentum and epoch and not scheduled(MOMENTUM_TIME_CONSTANT, epoch - 1):
            # ... and it still follows the gradient while momentum is 0 (v = 0 * v + 1 * g), which torch's SGD
            # does not track: carry the last minibatch's gradient over, as CNTK would have it (exactly so
            # without L2; with it, that one carried gradient lacks its weight-decay term).
            for parameter in model.parameters():
                if parameter.grad is not None:
                    optimizer.state[parameter]["momentum_buffer"] = parameter.grad.detach().clone()
        model.train()
        started = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64)
        errors = torch.zeros((), dtype=torch.int64)
        samples = 0
        for batch in minibatches(count, epoch_size, generator):
            size = batch.numel()
            momentum_mb = momentum**size
            for group in optimizer.param_groups:
                group.update(lr=lr, momentum=momentum_mb, dampening=momentum_mb, weight_decay=l2_weight * size)
            inputs, targets = to_input(features[batch]), labels[batch]
            optimizer.zero_grad(set_to_none=True)
            outputs: torch.Tensor = model(inputs)
            loss: torch.Tensor = loss_function(outputs, targets)
            torch.autograd.backward(loss)
            optimizer.step()
            loss_sum += loss.detach()
            errors += (outputs.detach().argmax(dim=1) != targets).sum()
            samples += size
        elapsed = time.perf_counter() - started
        log(
            f"Finished Epoch[{epoch + 1} of {epochs}]: [Training] loss = {float(loss_sum) / samples:0.6f} * {samples}, "
            f"metric = {100.0 * int(errors) / samples:0.2f}% * {samples} {elapsed:0.3f}s "
            f"({samples / elapsed:5.1f} samples/s);"
        )
        torch.save(model.state_dict(), output_dir / MODEL_NAME.format(epoch))


def evaluate(model: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Classification error on the test set, in minibatches of 1024; prints CNTK's "Final Results" line."""
    model.eval()
    errors = 0
    minibatch_index = 0
    with torch.inference_mode():
        for batch_features, batch_labels in zip(
            torch.split(features, TEST_MINIBATCH_SIZE), torch.split(labels, TEST_MINIBATCH_SIZE), strict=True
        ):
            outputs: torch.Tensor = model(to_input(batch_features))
            errors += int((outputs.argmax(dim=1) != batch_labels).sum())
            minibatch_index += 1
    total = int(labels.numel())
    log()
    # The original prints minibatch_index + 1 after counting the minibatches (so "[1-11]" for 10 minibatches,
    # as its logs show); kept for fidelity.
    log(f"Final Results: Minibatch[1-{minibatch_index + 1}]: errs = {100.0 * errors / total:0.2f}% * {total}")
    log()
    return errors / total


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may run on
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the Batch AI ConvNet_MNIST sample network with PyTorch.")
    parser.add_argument("data_dir", type=Path, help=f"directory holding {TRAIN_FILE} and {TEST_FILE}")
    parser.add_argument("output_dir", type=Path, help="directory for the per-epoch models (created if missing)")
    parser.add_argument("--epochs", type=positive_int, default=MAX_EPOCHS, help=f"default {MAX_EPOCHS}")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--epoch-size",
        type=positive_int,
        help=f"samples per epoch (default: the size of the training set, {EPOCH_SIZE} for MNIST)",
    )
    parser.add_argument(
        "--l2-weight", type=float, default=L2_REGULARIZATION_WEIGHT, help="CNTK l2_regularization_weight (default 0)"
    )
    parser.add_argument("--threads", type=positive_int, default=default_threads(), help="CPU threads for torch")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    try:
        train_features, train_labels = read_cntk_text(args.data_dir / TRAIN_FILE)
        test_features, test_labels = read_cntk_text(args.data_dir / TEST_FILE)
    except (OSError, DataFormatError) as exc:
        log(f"error: cannot read the data: {exc}")
        return 2
    args.output_dir.mkdir(parents=True, exist_ok=True)

    model = to_channels_last(build_model())
    parameters, tensors = count_parameters(model)
    log(f"Training {parameters} parameters in {tensors} parameter tensors.")
    log()
    epoch_size = args.epoch_size or train_features.shape[0]
    train(model, train_features, train_labels, args.output_dir, args.epochs, epoch_size, args.l2_weight, generator)
    evaluate(model, test_features, test_labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
